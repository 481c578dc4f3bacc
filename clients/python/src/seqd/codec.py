"""The seqd wire format (docs/PROTOCOL.md, journal/FORMAT.md §10): a pure codec, no I/O.

Commands and events are dataclasses whose fields are the wire fields in wire order; each class
carries its `struct` layout. Messages are decoded through a table per protocol version
(`DECODERS[version][msg_type]`), so a later version adds its types without touching version 1's.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import astuple, dataclass, field, fields
from enum import IntEnum
from typing import Any, ClassVar, Union

from .errors import ProtocolError

#: The protocol versions this SDK speaks; `Hello` offers the highest.
SUPPORTED_VERSIONS = (1, 2)
PROTOCOL_VERSION = max(SUPPORTED_VERSIONS)
ALPN = "seqd/1"

HEADER = struct.Struct("<IBBHQ")  # length, version, msg_type, flags, request_id
HEADER_BYTES = HEADER.size  # 16: the length field plus the 12 bytes it counts
FRAME_BYTES_DEFAULT = 65_536
FRAME_BYTES_MIN = 1_024
PRINCIPAL_BYTES_MAX = 256
ERROR_MESSAGE_BYTES_MAX = 512

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1


# --- enums (journal/FORMAT.md §10.1, §10.2) ---------------------------------------------------


class Side(IntEnum):
    BUY = 0
    SELL = 1


class OrderType(IntEnum):
    LIMIT = 0
    MARKET = 1
    STOP_LIMIT = 2
    STOP_MARKET = 3


class TimeInForce(IntEnum):
    GTC = 0
    IOC = 1
    FOK = 2
    POST_ONLY = 3


class Stp(IntEnum):
    """Self-trade prevention: what happens when an order meets one of the same owner."""

    CANCEL_RESTING = 0
    CANCEL_INCOMING = 1
    CANCEL_BOTH = 2


class SymbolStatus(IntEnum):
    TRADING = 0
    HALTED = 1


class AccountStatus(IntEnum):
    ACTIVE = 0
    FROZEN = 1


class LedgerKind(IntEnum):
    DEPOSIT = 0
    WITHDRAWAL = 1
    TRADE = 2
    FEE = 3
    TRANSFER = 4
    HOLD = 5
    RELEASE = 6
    ADJUSTMENT = 7


class RefKind(IntEnum):
    ORDER = 0
    TRADE = 1
    DEPOSIT = 2
    WITHDRAWAL = 3
    TRANSFER = 4
    CLIENT_REF = 5


class WithdrawalStatus(IntEnum):
    PENDING = 0
    APPROVED = 1
    REJECTED = 2


class Exec(IntEnum):
    NEW = 0
    TRADE = 1
    CANCELLED = 2
    EXPIRED = 3
    AMENDED = 4
    TRIGGERED = 5


class OrderStatus(IntEnum):
    NEW = 0
    PARTIALLY_FILLED = 1
    FILLED = 2
    CANCELLED = 3
    EXPIRED = 4
    REJECTED = 5


# --- fixed layouts ----------------------------------------------------------------------------


class _Fixed:
    """A record of fixed layout: the dataclass fields in order, packed by `LAYOUT`.

    Fields typed with an IntEnum are converted (and an unknown byte is a ProtocolError)."""

    LAYOUT: ClassVar[struct.Struct]
    ENUMS: ClassVar[dict[str, type[IntEnum]]] = {}

    def pack(self) -> bytes:
        try:
            return self.LAYOUT.pack(*(int(v) for v in astuple(self)))  # type: ignore[call-overload]
        except struct.error as e:
            raise ValueError(f"{type(self).__name__}: a field is out of range: {e}") from None

    @classmethod
    def unpack(cls, body: bytes | memoryview) -> Any:
        if len(body) != cls.LAYOUT.size:
            raise ProtocolError(f"{cls.__name__}: {len(body)} bytes, expected {cls.LAYOUT.size}")
        values = list(cls.LAYOUT.unpack(body))
        for i, f in enumerate(fields(cls)):  # type: ignore[arg-type]
            enum = cls.ENUMS.get(f.name)
            if enum is not None:
                try:
                    values[i] = enum(values[i])
                except ValueError:
                    raise ProtocolError(f"{cls.__name__}.{f.name}: invalid value {values[i]}") from None
        return cls(*values)


@dataclass(frozen=True)
class SymbolSpec(_Fixed):
    """A symbol's specification (64 bytes): prices in quote minor units per whole base unit,
    quantities in base minor units, fees in parts per million, the price band in basis points."""

    symbol: int
    base: int
    quote: int
    tick_size: int
    lot_size: int
    min_qty: int
    min_notional: int
    max_order_qty: int
    maker_fee_ppm: int = 0
    taker_fee_ppm: int = 0
    price_band_bps: int = 0
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<IIIqqqqqIII")


# --- commands (journal/FORMAT.md §10.1) ---------------------------------------------------------


class Command(_Fixed):
    KIND: ClassVar[int]


@dataclass(frozen=True)
class CreateAsset(Command):
    asset: int
    scale: int
    KIND: ClassVar[int] = 1
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<IB")


@dataclass(frozen=True)
class CreateSymbol(Command):
    spec: SymbolSpec
    KIND: ClassVar[int] = 2
    LAYOUT: ClassVar[struct.Struct] = SymbolSpec.LAYOUT

    def pack(self) -> bytes:
        return self.spec.pack()

    @classmethod
    def unpack(cls, body: bytes | memoryview) -> Any:
        return cls(SymbolSpec.unpack(body))


@dataclass(frozen=True)
class UpdateSymbol(CreateSymbol):
    KIND: ClassVar[int] = 3


@dataclass(frozen=True)
class SetSymbolStatus(Command):
    symbol: int
    status: SymbolStatus
    KIND: ClassVar[int] = 4
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<IB")
    ENUMS: ClassVar[dict[str, type[IntEnum]]] = {"status": SymbolStatus}


@dataclass(frozen=True)
class CreateAccount(Command):
    account: int
    parent: int
    owner: int
    KIND: ClassVar[int] = 5
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QQQ")


@dataclass(frozen=True)
class SetAccountStatus(Command):
    account: int
    status: AccountStatus
    KIND: ClassVar[int] = 6
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QB")
    ENUMS: ClassVar[dict[str, type[IntEnum]]] = {"status": AccountStatus}


@dataclass(frozen=True)
class Deposit(Command):
    account: int
    asset: int
    amount: int
    external_ref: int
    KIND: ClassVar[int] = 7
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QIqQ")


@dataclass(frozen=True)
class WithdrawRequest(Command):
    account: int
    asset: int
    amount: int
    client_ref: int
    KIND: ClassVar[int] = 8
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QIqQ")


@dataclass(frozen=True)
class WithdrawApprove(Command):
    withdrawal_id: int
    KIND: ClassVar[int] = 9
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<Q")


@dataclass(frozen=True)
class WithdrawReject(Command):
    withdrawal_id: int
    KIND: ClassVar[int] = 10
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<Q")


@dataclass(frozen=True)
class Transfer(Command):
    from_account: int
    to_account: int
    asset: int
    amount: int
    client_ref: int
    KIND: ClassVar[int] = 11
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QQIqQ")


@dataclass(frozen=True)
class PlaceOrder(Command):
    account: int
    symbol: int
    client_order_id: int
    side: Side
    order_type: OrderType
    tif: TimeInForce
    stp: Stp
    price: int
    stop_price: int
    qty: int
    quote_budget: int
    KIND: ClassVar[int] = 12
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QIQBBBBqqqq")
    ENUMS: ClassVar[dict[str, type[IntEnum]]] = {
        "side": Side,
        "order_type": OrderType,
        "tif": TimeInForce,
        "stp": Stp,
    }


@dataclass(frozen=True)
class CancelOrder(Command):
    account: int
    order_id: int
    KIND: ClassVar[int] = 13
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QQ")


@dataclass(frozen=True)
class CancelByClientId(Command):
    account: int
    client_order_id: int
    KIND: ClassVar[int] = 14
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QQ")


@dataclass(frozen=True)
class CancelAll(Command):
    account: int
    symbol: int = 0  # 0 = every symbol
    KIND: ClassVar[int] = 15
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QI")


@dataclass(frozen=True)
class AmendOrder(Command):
    """`qty` is the order's new TOTAL quantity, filled part included (PROTOCOL.md §16.4)."""

    account: int
    order_id: int
    price: int
    qty: int
    KIND: ClassVar[int] = 16
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QQqq")


CODE_BYTES = 16


def code_bytes(code: str) -> bytes:
    """A code (`BTC`, `BTC/USDT`) as its 16 wire bytes, zero-padded. The engine checks its form
    (PROTOCOL.md §16.1: 1-16 of A-Z 0-9 . _ - and, for a symbol, /; else reason 109)."""
    raw = code.encode("ascii")
    if not 1 <= len(raw) <= CODE_BYTES:
        raise ValueError(f"code {code!r}: 1 to {CODE_BYTES} ASCII bytes")
    return raw.ljust(CODE_BYTES, b"\0")


def code_text(raw: bytes | memoryview) -> str:
    """The text of a code's 16 bytes; all zeros (no code) is the empty string."""
    return bytes(raw).rstrip(b"\0").decode("ascii", errors="replace")


@dataclass(frozen=True)
class CreateAssetWithCode(Command):
    """Version 2: `CreateAsset` with a code (kind 17)."""

    asset: int
    scale: int
    code: str
    KIND: ClassVar[int] = 17
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<IB16s")

    def pack(self) -> bytes:
        return self.LAYOUT.pack(self.asset, self.scale, code_bytes(self.code))

    @classmethod
    def unpack(cls, body: bytes | memoryview) -> Any:
        if len(body) != cls.LAYOUT.size:
            raise ProtocolError(f"{cls.__name__}: {len(body)} bytes, expected {cls.LAYOUT.size}")
        asset, scale, raw = cls.LAYOUT.unpack(body)
        return cls(asset, scale, code_text(raw))


@dataclass(frozen=True)
class CreateSymbolWithCode(Command):
    """Version 2: `CreateSymbol` with a code (kind 18)."""

    spec: SymbolSpec
    code: str
    KIND: ClassVar[int] = 18
    LAYOUT: ClassVar[struct.Struct] = struct.Struct(f"<{SymbolSpec.LAYOUT.size}s16s")

    def pack(self) -> bytes:
        return self.spec.pack() + code_bytes(self.code)

    @classmethod
    def unpack(cls, body: bytes | memoryview) -> Any:
        if len(body) != cls.LAYOUT.size:
            raise ProtocolError(f"{cls.__name__}: {len(body)} bytes, expected {cls.LAYOUT.size}")
        spec_size = SymbolSpec.LAYOUT.size
        return cls(SymbolSpec.unpack(body[:spec_size]), code_text(body[spec_size:]))


COMMANDS: dict[int, type[Command]] = {
    c.KIND: c
    for c in (
        CreateAsset,
        CreateSymbol,
        UpdateSymbol,
        SetSymbolStatus,
        CreateAccount,
        SetAccountStatus,
        Deposit,
        WithdrawRequest,
        WithdrawApprove,
        WithdrawReject,
        Transfer,
        PlaceOrder,
        CancelOrder,
        CancelByClientId,
        CancelAll,
        AmendOrder,
        CreateAssetWithCode,
        CreateSymbolWithCode,
    )
}


# --- events (journal/FORMAT.md §10.2) -----------------------------------------------------------


class Event(_Fixed):
    TAG: ClassVar[int]


@dataclass(frozen=True)
class RejectedEvent(Event):
    reason: int
    TAG: ClassVar[int] = 1
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<H")


@dataclass(frozen=True)
class AssetCreated(Event):
    asset: int
    scale: int
    TAG: ClassVar[int] = 2
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<IB")


@dataclass(frozen=True)
class SymbolUpdated(Event):
    spec: SymbolSpec
    status: SymbolStatus
    TAG: ClassVar[int] = 3
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<64sB")

    @classmethod
    def unpack(cls, body: bytes | memoryview) -> Any:
        if len(body) != 65:
            raise ProtocolError(f"SymbolUpdated: {len(body)} bytes, expected 65")
        try:
            status = SymbolStatus(body[64])
        except ValueError:
            raise ProtocolError(f"SymbolUpdated.status: invalid value {body[64]}") from None
        return cls(SymbolSpec.unpack(body[:64]), status)

    def pack(self) -> bytes:
        return self.spec.pack() + bytes([self.status])


@dataclass(frozen=True)
class AccountCreated(Event):
    account: int
    parent: int
    owner: int
    TAG: ClassVar[int] = 4
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QQQ")


@dataclass(frozen=True)
class AccountStatusChanged(Event):
    account: int
    status: AccountStatus
    TAG: ClassVar[int] = 5
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QB")
    ENUMS: ClassVar[dict[str, type[IntEnum]]] = {"status": AccountStatus}


@dataclass(frozen=True)
class Ledger(Event):
    account: int
    asset: int
    kind: LedgerKind
    available_delta: int
    held_delta: int
    available_after: int
    held_after: int
    ref_kind: RefKind
    ref_id: int
    TAG: ClassVar[int] = 6
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QIBqqqqBQ")
    ENUMS: ClassVar[dict[str, type[IntEnum]]] = {"kind": LedgerKind, "ref_kind": RefKind}


@dataclass(frozen=True)
class DepositCredited(Event):
    account: int
    asset: int
    amount: int
    external_ref: int
    TAG: ClassVar[int] = 7
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QIqQ")


@dataclass(frozen=True)
class WithdrawalUpdated(Event):
    withdrawal_id: int
    account: int
    asset: int
    amount: int
    client_ref: int
    status: WithdrawalStatus
    TAG: ClassVar[int] = 8
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QQIqQB")
    ENUMS: ClassVar[dict[str, type[IntEnum]]] = {"status": WithdrawalStatus}


@dataclass(frozen=True)
class Transferred(Event):
    from_account: int
    to_account: int
    asset: int
    amount: int
    client_ref: int
    TAG: ClassVar[int] = 9
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QQIqQ")


@dataclass(frozen=True)
class OrderReport(Event):
    """An order as it is now (event tag 10): `price` is 0 for market and stop-market orders,
    `stop_price` 0 for non-stop orders."""

    order_id: int
    account: int
    symbol: int
    client_order_id: int
    exec: Exec
    status: OrderStatus
    side: Side
    order_type: OrderType
    tif: TimeInForce
    reserved: int
    price: int
    qty: int
    filled_qty: int
    remaining_qty: int
    filled_quote: int
    fees_paid: int
    stop_price: int = 0
    TAG: ClassVar[int] = 10
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QQIQBBBBBBqqqqqqq")
    # Event logs written before stop_price existed hold 82 bytes (FORMAT.md §10.2).
    SHORT_LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QQIQBBBBBBqqqqqq")
    ENUMS: ClassVar[dict[str, type[IntEnum]]] = {
        "exec": Exec,
        "status": OrderStatus,
        "side": Side,
        "order_type": OrderType,
        "tif": TimeInForce,
    }

    @classmethod
    def unpack(cls, body: bytes | memoryview) -> Any:
        if len(body) == cls.SHORT_LAYOUT.size:
            body = bytes(body) + bytes(8)
        return super().unpack(body)


@dataclass(frozen=True)
class Trade(Event):
    """A trade; the side a principal does not see has its order, account and fee zeroed."""

    trade_id: int
    symbol: int
    price: int
    qty: int
    quote_qty: int
    maker_order: int
    taker_order: int
    maker_account: int
    taker_account: int
    maker_side: Side
    maker_fee: int
    taker_fee: int
    TAG: ClassVar[int] = 11
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<QIqqqQQQQBqq")
    ENUMS: ClassVar[dict[str, type[IntEnum]]] = {"maker_side": Side}


class _CodeEvent(Event):
    """An id (u32) and a 16-byte code."""

    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<I16s")

    def pack(self) -> bytes:
        return self.LAYOUT.pack(astuple(self)[0], code_bytes(astuple(self)[1]))

    @classmethod
    def unpack(cls, body: bytes | memoryview) -> Any:
        if len(body) != cls.LAYOUT.size:
            raise ProtocolError(f"{cls.__name__}: {len(body)} bytes, expected {cls.LAYOUT.size}")
        id_, raw = cls.LAYOUT.unpack(body)
        return cls(id_, code_text(raw))


@dataclass(frozen=True)
class AssetCode(_CodeEvent):
    """Version 2 (tag 12): the code a coded asset was created with, after its AssetCreated."""

    asset: int
    code: str
    TAG: ClassVar[int] = 12


@dataclass(frozen=True)
class SymbolCode(_CodeEvent):
    """Version 2 (tag 13): the code a coded symbol was created with."""

    symbol: int
    code: str
    TAG: ClassVar[int] = 13


@dataclass(frozen=True)
class UnknownEvent:
    """An event tag this SDK does not know, skipped by its length (FORMAT.md §10.2)."""

    tag: int
    body: bytes


EVENTS: dict[int, type[Event]] = {
    e.TAG: e
    for e in (
        RejectedEvent,
        AssetCreated,
        SymbolUpdated,
        AccountCreated,
        AccountStatusChanged,
        Ledger,
        DepositCredited,
        WithdrawalUpdated,
        Transferred,
        OrderReport,
        Trade,
        AssetCode,
        SymbolCode,
    )
}

AnyEvent = Union[Event, UnknownEvent]


def encode_event(event: Event) -> bytes:
    body = event.pack()
    return struct.pack("<BH", event.TAG, len(body)) + body


def decode_event_list(buf: memoryview, count: int) -> list[AnyEvent]:
    """`count` events, each `tag: u8, length: u16, body`, filling `buf` exactly."""
    events: list[AnyEvent] = []
    pos = 0
    for _ in range(count):
        if pos + 3 > len(buf):
            raise ProtocolError("event list: count larger than the payload")
        tag = buf[pos]
        (length,) = struct.unpack_from("<H", buf, pos + 1)
        body = buf[pos + 3 : pos + 3 + length]
        if len(body) != length:
            raise ProtocolError("event list: an event runs past the payload")
        cls = EVENTS.get(tag)
        events.append(cls.unpack(body) if cls else UnknownEvent(tag, bytes(body)))
        pos += 3 + length
    if pos != len(buf):
        raise ProtocolError(f"event list: {len(buf) - pos} bytes after the last event")
    return events


# --- messages (PROTOCOL.md §7, §8) --------------------------------------------------------------


class MsgType(IntEnum):
    HELLO = 0x01
    COMMAND = 0x02
    PING = 0x03
    KEYED_COMMAND = 0x04  # version 2, a server with request keys (PROTOCOL.md §17)
    QUERY_BALANCES = 0x10
    QUERY_SUBTREE_TOTALS = 0x11
    QUERY_ORDER = 0x12
    QUERY_OPEN_ORDERS = 0x13
    QUERY_DEPTH = 0x14
    LIST_ASSETS = 0x15
    LIST_SYMBOLS = 0x16
    QUERY_WITHDRAWAL = 0x17
    SUBSCRIBE = 0x20
    UNSUBSCRIBE = 0x21
    WELCOME = 0x81
    ACCEPTED = 0x82
    EVENTS = 0x83
    ERROR = 0x84
    PONG = 0x85
    BALANCES = 0x90
    SUBTREE_TOTALS = 0x91
    ORDER_INFO = 0x92
    OPEN_ORDERS = 0x93
    DEPTH = 0x94
    ASSETS = 0x95
    SYMBOLS = 0x96
    WITHDRAWAL_INFO = 0x97
    DEPTH_SNAPSHOT = 0xA0
    MARKET_TRADE = 0xA1
    DEPTH_UPDATE = 0xA2
    UNSUBSCRIBED = 0xA3


# Client to server: (msg_type, payload bytes).


def hello_payload(version: int = PROTOCOL_VERSION) -> bytes:
    return struct.pack("<B", version)


def command_payload(command: Command) -> bytes:
    return struct.pack("<H", command.KIND) + command.pack()


def keyed_command_payload(request_key: int, command: Command) -> bytes:
    """`KeyedCommand`: the request key (u64, non-zero), then exactly a `Command`'s payload."""
    if not 0 < request_key < 1 << 64:
        raise ValueError(f"a request key is a non-zero u64, not {request_key}")
    return struct.pack("<Q", request_key) + command_payload(command)


def account_query_payload(account: int) -> bytes:
    return struct.pack("<Q", account)


def depth_query_payload(symbol: int, levels: int) -> bytes:
    return struct.pack("<IH", symbol, levels)


def symbol_payload(symbol: int) -> bytes:
    return struct.pack("<I", symbol)


def encode_frame(version: int, msg_type: int, request_id: int, payload: bytes) -> bytes:
    return HEADER.pack(12 + len(payload), version, msg_type, 0, request_id) + payload


def decode_command(payload: bytes | memoryview) -> Command:
    """A Command payload (kind, then its fields); used by tests and tools."""
    if len(payload) < 2:
        raise ProtocolError("Command: no kind")
    (kind,) = struct.unpack_from("<H", payload)
    cls = COMMANDS.get(kind)
    if cls is None:
        raise ProtocolError(f"Command: unknown kind {kind}")
    return cls.unpack(memoryview(payload)[2:])  # type: ignore[no-any-return]


# Server to client.


@dataclass(frozen=True)
class Welcome:
    protocol_version: int
    max_frame_bytes: int
    max_in_flight: int
    rate_per_sec: int
    burst: int
    principal: str


@dataclass(frozen=True)
class Accepted:
    seq: int


@dataclass(frozen=True)
class Events:
    seq: int
    more: bool
    events: list[AnyEvent]


@dataclass(frozen=True)
class Error:
    code: int
    message: str


@dataclass(frozen=True)
class Pong:
    pass


@dataclass(frozen=True)
class Balance:
    asset: int
    available: int
    held: int


@dataclass(frozen=True)
class Balances:
    account: int
    seq: int
    more: bool
    balances: list[Balance]


@dataclass(frozen=True)
class AssetTotal:
    asset: int
    total: int


@dataclass(frozen=True)
class SubtreeTotals:
    account: int
    seq: int
    more: bool
    totals: list[AssetTotal]


@dataclass(frozen=True)
class OrderInfo:
    seq: int
    order: OrderReport


@dataclass(frozen=True)
class OpenOrders:
    account: int
    seq: int
    more: bool
    orders: list[OrderReport]


@dataclass(frozen=True)
class Level:
    price: int
    qty: int
    orders: int


@dataclass(frozen=True)
class Depth:
    """`Depth` (answer to QueryDepth) or, with `snapshot` set, `DepthSnapshot`."""

    symbol: int
    book_seq: int
    more: bool
    bids: list[Level]
    asks: list[Level]
    snapshot: bool = False


@dataclass(frozen=True)
class MarketTrade:
    symbol: int
    md_seq: int
    trade_id: int
    timestamp_ns: int
    price: int
    qty: int
    quote_qty: int
    taker_side: Side


@dataclass(frozen=True)
class DepthUpdate:
    symbol: int
    md_seq: int
    side: Side
    price: int
    qty: int
    orders: int


@dataclass(frozen=True)
class Unsubscribed:
    symbol: int


@dataclass(frozen=True)
class AssetInfo:
    asset: int
    scale: int
    code: str


@dataclass(frozen=True)
class Assets:
    """Version 2: every asset (answer to ListAssets)."""

    seq: int
    more: bool
    assets: list[AssetInfo]


@dataclass(frozen=True)
class SymbolInfo:
    spec: SymbolSpec
    status: SymbolStatus
    code: str


@dataclass(frozen=True)
class Symbols:
    """Version 2: every symbol (answer to ListSymbols)."""

    seq: int
    more: bool
    symbols: list[SymbolInfo]


@dataclass(frozen=True)
class WithdrawalInfo:
    """Version 2: a withdrawal's state (answer to QueryWithdrawal)."""

    seq: int
    withdrawal_id: int
    account: int
    asset: int
    amount: int
    client_ref: int
    status: WithdrawalStatus


ServerMessage = Union[
    Welcome,
    Accepted,
    Events,
    Error,
    Pong,
    Balances,
    SubtreeTotals,
    OrderInfo,
    OpenOrders,
    Depth,
    MarketTrade,
    DepthUpdate,
    Unsubscribed,
    Assets,
    Symbols,
    WithdrawalInfo,
]


@dataclass(frozen=True)
class Frame:
    version: int
    msg_type: int
    flags: int
    request_id: int
    payload: bytes = field(repr=False)


class _Reader:
    """Reads one payload field by field; any short read or leftover byte is a ProtocolError."""

    def __init__(self, name: str, payload: bytes | memoryview) -> None:
        self.name = name
        self.buf = memoryview(payload)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.buf):
            raise ProtocolError(f"{self.name}: payload too short")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def u8(self) -> int:
        return int(self.unpack("<B")[0])

    def u16(self) -> int:
        return int(self.unpack("<H")[0])

    def u32(self) -> int:
        return int(self.unpack("<I")[0])

    def u64(self) -> int:
        return int(self.unpack("<Q")[0])

    def boolean(self) -> bool:
        b = self.u8()
        if b > 1:
            raise ProtocolError(f"{self.name}: bool byte {b}")
        return b == 1

    def string(self, max_bytes: int) -> str:
        n = self.u16()
        if n > max_bytes:
            raise ProtocolError(f"{self.name}: string of {n} bytes over its maximum {max_bytes}")
        try:
            return str(self.take(n), "utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"{self.name}: bad UTF-8") from None

    def rest(self) -> memoryview:
        out = self.buf[self.pos :]
        self.pos = len(self.buf)
        return out

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise ProtocolError(f"{self.name}: {len(self.buf) - self.pos} bytes after the last field")


def _enum(enum: type[IntEnum], value: int, what: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise ProtocolError(f"{what}: invalid value {value}") from None


def _welcome(r: _Reader) -> Welcome:
    version, max_frame, in_flight, rate, burst = r.unpack("<BIIII")
    return Welcome(version, max_frame, in_flight, rate, burst, r.string(PRINCIPAL_BYTES_MAX))


def _events(r: _Reader) -> Events:
    seq, more, count = r.u64(), r.boolean(), r.u32()
    return Events(seq, more, decode_event_list(r.rest(), count))


def _error(r: _Reader) -> Error:
    return Error(r.u16(), r.string(ERROR_MESSAGE_BYTES_MAX))


def _balances(r: _Reader) -> Balances:
    account, seq, more, count = r.u64(), r.u64(), r.boolean(), r.u16()
    items = [Balance(*r.unpack("<Iqq")) for _ in range(count)]
    return Balances(account, seq, more, items)


def _totals(r: _Reader) -> SubtreeTotals:
    account, seq, more, count = r.u64(), r.u64(), r.boolean(), r.u16()
    items = [AssetTotal(*r.unpack("<Iq")) for _ in range(count)]
    return SubtreeTotals(account, seq, more, items)


def _order_event(r: _Reader) -> OrderReport:
    tag, length = r.u8(), r.u16()
    if tag != OrderReport.TAG:
        raise ProtocolError(f"{r.name}: event tag {tag}, expected an Order (10)")
    return OrderReport.unpack(r.take(length))  # type: ignore[no-any-return]


def _order_info(r: _Reader) -> OrderInfo:
    return OrderInfo(r.u64(), _order_event(r))


def _open_orders(r: _Reader) -> OpenOrders:
    account, seq, more, count = r.u64(), r.u64(), r.boolean(), r.u32()
    orders = [_order_event(r) for _ in range(count)]
    return OpenOrders(account, seq, more, orders)


def _levels(r: _Reader) -> list[Level]:
    return [Level(*r.unpack("<qqI")) for _ in range(r.u16())]


def _depth(snapshot: bool) -> Callable[[_Reader], Depth]:
    def decode(r: _Reader) -> Depth:
        symbol, book_seq, more = r.u32(), r.u64(), r.boolean()
        bids = _levels(r)
        asks = _levels(r)
        return Depth(symbol, book_seq, more, bids, asks, snapshot)

    return decode


def _market_trade(r: _Reader) -> MarketTrade:
    symbol, md_seq, trade_id, ts, price, qty, quote_qty, side = r.unpack("<IQQQqqqB")
    return MarketTrade(symbol, md_seq, trade_id, ts, price, qty, quote_qty, _enum(Side, side, "MarketTrade.taker_side"))


def _depth_update(r: _Reader) -> DepthUpdate:
    symbol, md_seq, side, price, qty, orders = r.unpack("<IQBqqI")
    return DepthUpdate(symbol, md_seq, _enum(Side, side, "DepthUpdate.side"), price, qty, orders)


#: Server-to-client decoders per protocol version.
DECODERS: dict[int, dict[int, Callable[[_Reader], ServerMessage]]] = {
    1: {
        MsgType.WELCOME: _welcome,
        MsgType.ACCEPTED: lambda r: Accepted(r.u64()),
        MsgType.EVENTS: _events,
        MsgType.ERROR: _error,
        MsgType.PONG: lambda r: Pong(),
        MsgType.BALANCES: _balances,
        MsgType.SUBTREE_TOTALS: _totals,
        MsgType.ORDER_INFO: _order_info,
        MsgType.OPEN_ORDERS: _open_orders,
        MsgType.DEPTH: _depth(False),
        MsgType.DEPTH_SNAPSHOT: _depth(True),
        MsgType.MARKET_TRADE: _market_trade,
        MsgType.DEPTH_UPDATE: _depth_update,
        MsgType.UNSUBSCRIBED: lambda r: Unsubscribed(r.u32()),
    }
}


def _assets(r: _Reader) -> Assets:
    seq, more, count = r.u64(), r.boolean(), r.u16()
    items = []
    for _ in range(count):
        asset, scale, raw = r.unpack("<IB16s")
        items.append(AssetInfo(asset, scale, code_text(raw)))
    return Assets(seq, more, items)


def _symbols(r: _Reader) -> Symbols:
    seq, more, count = r.u64(), r.boolean(), r.u16()
    items = []
    for _ in range(count):
        spec = SymbolSpec.unpack(r.take(SymbolSpec.LAYOUT.size))
        status = _enum(SymbolStatus, r.u8(), "Symbols.status")
        items.append(SymbolInfo(spec, status, code_text(r.take(CODE_BYTES))))
    return Symbols(seq, more, items)


def _withdrawal(r: _Reader) -> WithdrawalInfo:
    seq, withdrawal_id, account, asset, amount, client_ref, status = r.unpack("<QQQIqQB")
    status = _enum(WithdrawalStatus, status, "WithdrawalInfo.status")
    return WithdrawalInfo(seq, withdrawal_id, account, asset, amount, client_ref, status)


# Version 2's order reports have a 90-byte body (with `stop_price`, 82 in version 1, PROTOCOL.md
# §4), which every event carries in its own length field; it adds the reference-data and
# withdrawal answers.
DECODERS[2] = {
    **DECODERS[1],
    MsgType.ASSETS: _assets,
    MsgType.SYMBOLS: _symbols,
    MsgType.WITHDRAWAL_INFO: _withdrawal,
}


def decode_message(version: int, msg_type: int, payload: bytes | memoryview) -> ServerMessage:
    """Decodes a server-to-client payload; anything that does not match exactly is a ProtocolError."""
    table = DECODERS.get(version)
    if table is None:
        raise ProtocolError(f"protocol version {version} is not supported")
    decode = table.get(msg_type)
    if decode is None:
        raise ProtocolError(f"unknown server message type 0x{msg_type:02x}")
    r = _Reader(f"message 0x{msg_type:02x}", payload)
    message = decode(r)
    r.end()
    return message


class FramingLost(ProtocolError):
    """The stream can no longer be cut into frames; the connection must be closed with
    `close_code` (900 a bad length or a stream ending inside a frame, 901 a frame too large)."""

    def __init__(self, message: str, close_code: int) -> None:
        super().__init__(message)
        self.close_code = close_code


class FrameReader:
    """Cuts a byte stream into frames (PROTOCOL.md §3): checks each length as soon as its four
    bytes arrive, never holds more than one frame plus what the next read brought."""

    def __init__(self, max_frame_bytes: int = FRAME_BYTES_DEFAULT) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 4:
            (length,) = struct.unpack_from("<I", self._buf)
            if length < 12:
                raise FramingLost(f"framing lost: frame length {length} below 12", 900)
            if 4 + length > self.max_frame_bytes:
                raise FramingLost(f"framing lost: frame of {4 + length} bytes over {self.max_frame_bytes}", 901)
            if len(self._buf) < 4 + length:
                break
            _, version, msg_type, flags, request_id = HEADER.unpack_from(self._buf)
            frames.append(Frame(version, msg_type, flags, request_id, bytes(self._buf[16 : 4 + length])))
            del self._buf[: 4 + length]
        return frames

    @property
    def inside_frame(self) -> bool:
        """True when the stream ended now would end inside a frame (framing lost, 900)."""
        return len(self._buf) > 0
