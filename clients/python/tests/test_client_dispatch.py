"""The client's handling of server frames, fed as bytes without a network: answers matched by
request id, multi-frame answers joined, pushes, errors, framing loss and the version check."""

from __future__ import annotations

import asyncio
import struct

import pytest

from seqd import Client, ConnectionClosed, ConnectParams, GatewayError, ProtocolError
from seqd.client import _Pending
from seqd.codec import Balance, Depth, Level, MsgType, Welcome, encode_frame


def make_client() -> Client:
    client = Client(ConnectParams("127.0.0.1", 1, "ca", "cert", "key"))
    client._stream_id = 0
    client._on_welcome(Welcome(1, 65_536, 2, 100, 100, "admin"))
    return client


def expect(client: Client, request_id: int, kind: str) -> asyncio.Future[object]:
    pending = _Pending(kind)
    client._pending[request_id] = pending
    return pending.future


def balances_frame(request_id: int, more: bool, items: list[tuple[int, int, int]]) -> bytes:
    payload = struct.pack("<QQBH", 1, 9, more, len(items)) + b"".join(struct.pack("<Iqq", *i) for i in items)
    return encode_frame(1, MsgType.BALANCES, request_id, payload)


async def test_multi_frame_answers_are_joined_and_matched_by_id() -> None:
    client = make_client()
    first = expect(client, 5, "list")
    second = expect(client, 6, "list")
    stream = (
        balances_frame(5, True, [(1, 10, 0)])
        + balances_frame(6, False, [(3, 1, 1)])  # another request's answer in between
        + balances_frame(5, False, [(2, 20, 5)])
    )
    client._on_stream_data(0, stream[:7], False)
    client._on_stream_data(0, stream[7:], False)
    assert (await first).balances == [Balance(1, 10, 0), Balance(2, 20, 5)]  # type: ignore[attr-defined]
    assert (await second).balances == [Balance(3, 1, 1)]  # type: ignore[attr-defined]


async def test_a_split_depth_joins_bids_with_bids_and_asks_with_asks() -> None:
    client = make_client()
    answer = expect(client, 1, "list")

    def depth_frame(more: bool, bids: list[int], asks: list[int]) -> bytes:
        payload = struct.pack("<IQB", 1, 4, more)
        payload += struct.pack("<H", len(bids)) + b"".join(struct.pack("<qqI", p, 1, 1) for p in bids)
        payload += struct.pack("<H", len(asks)) + b"".join(struct.pack("<qqI", p, 1, 1) for p in asks)
        return encode_frame(1, MsgType.DEPTH, 1, payload)

    client._on_stream_data(0, depth_frame(True, [10, 9], []) + depth_frame(True, [8], [11]), False)
    assert not answer.done()
    client._on_stream_data(0, depth_frame(False, [], [12]), False)
    assert await answer == Depth(
        1, 4, False, [Level(10, 1, 1), Level(9, 1, 1), Level(8, 1, 1)], [Level(11, 1, 1), Level(12, 1, 1)]
    )


async def test_an_error_frame_raises_with_its_code_and_the_connection_goes_on() -> None:
    client = make_client()
    refused = expect(client, 3, "list")
    payload = struct.pack("<HH", 921, 4) + b"slow"
    client._on_stream_data(0, encode_frame(1, MsgType.ERROR, 3, payload), False)
    with pytest.raises(GatewayError) as error:
        await refused
    assert (error.value.code, error.value.name, error.value.message, error.value.retryable) == (
        921,
        "RATE_LIMITED",
        "slow",
        True,
    )
    assert not client.closed


async def test_pushes_and_an_undecodable_push() -> None:
    client = make_client()
    seen = []
    client.on_push = seen.append
    events = struct.pack("<QBI", 42, 0, 1) + struct.pack("<BHIB", 2, 5, 7, 3)  # AssetCreated 7, scale 3
    client._on_stream_data(0, encode_frame(1, MsgType.EVENTS, 0, events), False)
    push = await client.next_push(1)
    assert push.seq == 42 and seen == [push]
    assert client.reference.scale(7) == 3, "scales are learned from pushes"
    client._on_stream_data(0, encode_frame(1, MsgType.EVENTS, 0, events[:-1]), False)
    assert client.undecodable_frames == 1 and not client.closed


async def test_lost_framing_closes_and_fails_what_waits() -> None:
    client = make_client()
    waiting = expect(client, 1, "single")
    client._on_stream_data(0, struct.pack("<I", 65_533), False)  # 4 + 65 533 > 65 536
    with pytest.raises(ConnectionClosed) as closed:
        await waiting
    assert closed.value.code == 901
    with pytest.raises(ConnectionClosed):
        await client.next_push(1)

    client = make_client()
    client._on_stream_data(0, encode_frame(1, MsgType.PONG, 1, b"")[:10], True)  # ends inside a frame
    assert client._closed is not None and client._closed.code == 900


async def test_a_frame_of_another_version_closes_with_903() -> None:
    client = make_client()
    client._on_stream_data(0, encode_frame(2, MsgType.PONG, 1, b""), False)
    assert client._closed is not None and client._closed.code == 903


def test_a_welcome_choosing_an_unknown_version_is_refused() -> None:
    client = Client(ConnectParams("127.0.0.1", 1, "ca", "cert", "key"))
    with pytest.raises(ProtocolError, match="version 3"):
        client._on_welcome(Welcome(3, 65_536, 0, 0, 0, "admin"))


async def test_in_flight_commands_wait_for_a_free_slot() -> None:
    client = make_client()  # max_in_flight 2
    sent: list[bytes] = []
    client._send = lambda msg_type, rid, payload: sent.append(payload)  # type: ignore[method-assign, assignment, misc, return-value]
    from seqd.codec import CancelAll

    tasks = [asyncio.ensure_future(client.command(CancelAll(1))) for _ in range(3)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(sent) == 2, "the third waits for a slot"
    accepted = struct.pack("<Q", 7)
    events = struct.pack("<QBI", 7, 0, 0)
    client._on_stream_data(
        0, encode_frame(1, MsgType.ACCEPTED, 1, accepted) + encode_frame(1, MsgType.EVENTS, 1, events), False
    )
    result = await tasks[0]
    assert result.seq == 7 and result.events == [] and result.rejected is None
    await asyncio.sleep(0)
    assert len(sent) == 3
    for t in tasks[1:]:
        t.cancel()
