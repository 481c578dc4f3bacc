"""The codec against byte vectors written out from docs/PROTOCOL.md (§15 and the layout tables of
§8) and journal/FORMAT.md §10, not from this codec's own output."""

from __future__ import annotations

import struct

import pytest

from seqd import codec
from seqd.codec import (
    Accepted,
    CancelOrder,
    Depth,
    DepthUpdate,
    Events,
    FrameReader,
    FramingLost,
    Level,
    MarketTrade,
    MsgType,
    OrderReport,
    PlaceOrder,
    RejectedEvent,
    Side,
    Trade,
    Welcome,
)
from seqd.errors import ProtocolError


def hexbytes(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# PROTOCOL.md §15, byte for byte.
PING_1 = hexbytes("0c 00 00 00  01  03  00 00  01 00 00 00 00 00 00 00")
CANCEL_7_42 = hexbytes(
    """1e 00 00 00  01 02 00 00  02 00 00 00 00 00 00 00
       0d 00
       07 00 00 00 00 00 00 00  2a 00 00 00 00 00 00 00"""
)
ACCEPTED_1000 = hexbytes("14 00 00 00  01 82 00 00  02 00 00 00 00 00 00 00  e8 03 00 00 00 00 00 00")
EVENTS_REJECTED_401 = hexbytes(
    """1e 00 00 00  01 83 00 00  02 00 00 00 00 00 00 00  e8 03 00 00 00 00 00 00  00  01 00 00 00
       01 02 00 91 01"""
)


def test_ping_frame_matches_the_documented_bytes() -> None:
    assert codec.encode_frame(1, MsgType.PING, 1, b"") == PING_1


def test_cancel_order_command_matches_the_documented_bytes() -> None:
    payload = codec.command_payload(CancelOrder(account=7, order_id=42))
    assert codec.encode_frame(1, MsgType.COMMAND, 2, payload) == CANCEL_7_42
    assert codec.decode_command(CANCEL_7_42[16:]) == CancelOrder(7, 42)


def test_accepted_and_rejected_events_decode_from_the_documented_bytes() -> None:
    frames = FrameReader().feed(ACCEPTED_1000 + EVENTS_REJECTED_401)
    assert [(f.version, f.msg_type, f.flags, f.request_id) for f in frames] == [(1, 0x82, 0, 2), (1, 0x83, 0, 2)]
    assert codec.decode_message(1, frames[0].msg_type, frames[0].payload) == Accepted(1000)
    events = codec.decode_message(1, frames[1].msg_type, frames[1].payload)
    assert events == Events(seq=1000, more=False, events=[RejectedEvent(401)])


def test_frame_reader_reassembles_frames_split_anywhere() -> None:
    stream = ACCEPTED_1000 + EVENTS_REJECTED_401 + PING_1
    for cut in range(1, len(stream)):
        reader = FrameReader()
        frames = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert [f.msg_type for f in frames] == [0x82, 0x83, 0x03], cut
        assert not reader.inside_frame
    reader = FrameReader()
    reader.feed(PING_1[:5])
    assert reader.inside_frame, "a stream ending here ends inside a frame (900)"


def test_frame_reader_loses_framing_on_a_bad_length_before_the_rest_arrives() -> None:
    with pytest.raises(FramingLost) as short:
        FrameReader().feed(struct.pack("<I", 11))
    assert short.value.close_code == 900
    with pytest.raises(FramingLost) as large:
        FrameReader(max_frame_bytes=1024).feed(struct.pack("<I", 1021))  # 4 + 1021 > 1024
    assert large.value.close_code == 901
    assert FrameReader(max_frame_bytes=1024).feed(struct.pack("<I", 1020)) == []  # exactly 1024 waits


def test_every_command_kind_has_its_documented_size() -> None:
    # journal/FORMAT.md §10.1: the payload bytes of each kind.
    sizes = {
        1: 5,
        2: 64,
        3: 64,
        4: 5,
        5: 24,
        6: 9,
        7: 28,
        8: 28,
        9: 8,
        10: 8,
        11: 36,
        12: 56,
        13: 16,
        14: 16,
        15: 12,
        16: 32,
        17: 21,
        18: 80,
    }
    assert {kind: cls.LAYOUT.size for kind, cls in codec.COMMANDS.items()} == sizes


def test_place_order_layout() -> None:
    order = PlaceOrder(
        account=1,
        symbol=2,
        client_order_id=3,
        side=Side.SELL,
        order_type=codec.OrderType.STOP_LIMIT,
        tif=codec.TimeInForce.POST_ONLY,
        stp=codec.Stp.CANCEL_BOTH,
        price=-1,
        stop_price=5,
        qty=6,
        quote_budget=7,
    )
    expected = hexbytes(
        """0c 00
           01 00 00 00 00 00 00 00  02 00 00 00  03 00 00 00 00 00 00 00
           01 02 03 02
           ff ff ff ff ff ff ff ff  05 00 00 00 00 00 00 00
           06 00 00 00 00 00 00 00  07 00 00 00 00 00 00 00"""
    )
    assert codec.command_payload(order) == expected
    assert codec.decode_command(expected) == order


def test_an_invalid_enum_byte_or_a_wrong_length_is_not_a_command() -> None:
    good = codec.command_payload(codec.SetSymbolStatus(1, codec.SymbolStatus.HALTED))
    assert good == hexbytes("04 00 01 00 00 00 01")
    with pytest.raises(ProtocolError):
        codec.decode_command(good[:-1] + b"\x02")
    with pytest.raises(ProtocolError):
        codec.decode_command(good + b"\x00")
    with pytest.raises(ProtocolError):
        codec.decode_command(hexbytes("11 00"))  # kind 17


def test_an_out_of_range_field_is_refused_before_sending() -> None:
    with pytest.raises(ValueError):
        codec.CreateAsset(asset=1, scale=256).pack()
    with pytest.raises(ValueError):
        codec.Deposit(1, 1, 2**63, 1).pack()


def test_welcome_decodes_and_refuses_trailing_bytes() -> None:
    payload = hexbytes("01  00 00 01 00  00 04 00 00  a0 86 01 00  a0 86 01 00  05 00") + b"admin"
    assert codec.decode_message(1, 0x81, payload) == Welcome(1, 65536, 1024, 100_000, 100_000, "admin")
    with pytest.raises(ProtocolError, match="after the last field"):
        codec.decode_message(1, 0x81, payload + b"\x00")


def test_error_message_decodes() -> None:
    payload = hexbytes("8e 03  0c 00") + b"unauthorized"
    assert codec.decode_message(1, 0x84, payload) == codec.Error(910, "unauthorized")
    with pytest.raises(ProtocolError, match="UTF-8"):
        codec.decode_message(1, 0x84, hexbytes("8e 03  01 00 ff"))


def test_balances_and_a_bad_bool() -> None:
    payload = hexbytes(
        """01 00 00 00 00 00 00 00  09 00 00 00 00 00 00 00  00  02 00
           01 00 00 00  0a 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00
           02 00 00 00  ff ff ff ff ff ff ff ff  03 00 00 00 00 00 00 00"""
    )
    balances = codec.decode_message(1, 0x90, payload)
    assert balances == codec.Balances(1, 9, False, [codec.Balance(1, 10, 0), codec.Balance(2, -1, 3)])
    with pytest.raises(ProtocolError, match="bool"):
        codec.decode_message(1, 0x90, payload[:16] + b"\x02" + payload[17:])
    with pytest.raises(ProtocolError, match="too short"):
        codec.decode_message(1, 0x90, payload[:-1])


def test_depth_layout_bids_then_asks() -> None:
    payload = hexbytes(
        """01 00 00 00  07 00 00 00 00 00 00 00  01  01 00
           64 00 00 00 00 00 00 00  05 00 00 00 00 00 00 00  02 00 00 00
           02 00
           65 00 00 00 00 00 00 00  01 00 00 00 00 00 00 00  01 00 00 00
           66 00 00 00 00 00 00 00  03 00 00 00 00 00 00 00  01 00 00 00"""
    )
    depth = codec.decode_message(1, 0xA0, payload)
    assert depth == Depth(1, 7, True, [Level(100, 5, 2)], [Level(101, 1, 1), Level(102, 3, 1)], snapshot=True)
    assert codec.decode_message(1, 0x94, payload) == Depth(1, 7, True, depth.bids, depth.asks, snapshot=False)


def test_market_trade_and_depth_update() -> None:
    trade = hexbytes(
        """01 00 00 00  05 00 00 00 00 00 00 00  09 00 00 00 00 00 00 00  00 01 00 00 00 00 00 00
           64 00 00 00 00 00 00 00  02 00 00 00 00 00 00 00  c8 00 00 00 00 00 00 00  01"""
    )
    assert len(trade) == 53
    assert codec.decode_message(1, 0xA1, trade) == MarketTrade(1, 5, 9, 256, 100, 2, 200, Side.SELL)
    update = hexbytes(
        "01 00 00 00  06 00 00 00 00 00 00 00  00  64 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  00 00 00 00"
    )
    assert len(update) == 33
    assert codec.decode_message(1, 0xA2, update) == DepthUpdate(1, 6, Side.BUY, 100, 0, 0)
    with pytest.raises(ProtocolError, match="side"):
        codec.decode_message(1, 0xA2, update[:12] + b"\x02" + update[13:])


def order_body(stop_price: bool = True) -> bytes:
    body = struct.pack("<QQIQBBBBBBqqqqqq", 8, 1, 1, 77, 1, 1, 0, 0, 0, 0, 500, 10, 4, 6, 2000, 3)
    return body + (struct.pack("<q", 0) if stop_price else b"")


def test_order_report_long_and_short_bodies() -> None:
    assert len(order_body()) == 90
    event = struct.pack("<BH", 10, 90) + order_body()
    info = codec.decode_message(1, 0x92, struct.pack("<Q", 8) + event)
    assert isinstance(info, codec.OrderInfo)
    assert info.order.filled_qty == 4 and info.order.exec == codec.Exec.TRADE
    assert info.order.status == codec.OrderStatus.PARTIALLY_FILLED
    # FORMAT.md §10.2: an 82-byte body (before stop_price) reads stop_price 0.
    short = OrderReport.unpack(order_body(stop_price=False))
    assert short == info.order


def test_open_orders_hold_only_order_events() -> None:
    event = struct.pack("<BH", 10, 90) + order_body()
    payload = struct.pack("<QQBI", 1, 9, 0, 2) + event + event
    orders = codec.decode_message(1, 0x93, payload)
    assert isinstance(orders, codec.OpenOrders) and len(orders.orders) == 2
    with pytest.raises(ProtocolError, match="Order"):
        codec.decode_message(1, 0x93, struct.pack("<QQBI", 1, 9, 0, 1) + struct.pack("<BHH", 1, 2, 401))


def test_trade_event_size_and_unknown_tags_are_skipped() -> None:
    trade = Trade(1, 1, 100, 2, 200, 5, 6, 1, 2, Side.BUY, 0, 1)
    encoded = codec.encode_event(trade)
    assert len(encoded) == 3 + 85
    unknown = struct.pack("<BH", 200, 3) + b"xyz"
    events = codec.decode_event_list(memoryview(encoded + unknown), 2)
    assert events == [trade, codec.UnknownEvent(200, b"xyz")]
    with pytest.raises(ProtocolError, match="count"):
        codec.decode_event_list(memoryview(encoded), 2)


def test_every_event_tag_has_its_documented_size() -> None:
    # journal/FORMAT.md §10.2 body sizes.
    sizes = {1: 2, 2: 5, 3: 65, 4: 24, 5: 9, 6: 54, 7: 28, 8: 37, 9: 36, 10: 90, 11: 85, 12: 20, 13: 20}
    assert {tag: cls.LAYOUT.size for tag, cls in codec.EVENTS.items()} == sizes


def test_an_unknown_message_type_or_version_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="0x02"):
        codec.decode_message(1, 0x02, b"")  # a client-to-server type
    with pytest.raises(ProtocolError, match="version 9"):
        codec.decode_message(9, 0x85, b"")


def test_hello_and_queries() -> None:
    assert codec.encode_frame(1, MsgType.HELLO, 1, codec.hello_payload(1)) == hexbytes(
        "0d 00 00 00 01 01 00 00 01 00 00 00 00 00 00 00 01"
    )
    assert codec.depth_query_payload(3, 10) == hexbytes("03 00 00 00 0a 00")
    assert codec.account_query_payload(258) == hexbytes("02 01 00 00 00 00 00 00")
    assert codec.symbol_payload(1) == hexbytes("01 00 00 00")
