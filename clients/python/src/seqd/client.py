"""An asyncio client of seqd over QUIC with mutual TLS (docs/PROTOCOL.md)."""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration

from . import codec
from .book import BookEvent, Gap, L2Book, Synced
from .codec import (
    ALPN,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    AccountStatus,
    AnyEvent,
    AssetCreated,
    Command,
    Depth,
    DepthUpdate,
    Events,
    FrameReader,
    MarketTrade,
    MsgType,
    OrderInfo,
    OrderType,
    RejectedEvent,
    Side,
    Stp,
    SymbolSpec,
    SymbolStatus,
    SymbolUpdated,
    TimeInForce,
    Welcome,
)
from .errors import ConnectionClosed, GatewayError, ProtocolError, Rejected, RejectReason, SeqdError
from .money import Amount, ReferenceData

CONNECT_TIMEOUT_S = 5.0
#: How long `close` waits for the peer to see the close before dropping the socket anyway.
CLOSE_WAIT_S = 1.0
#: Pushes kept for a reader that does not consume them; beyond this the oldest are dropped
#: (counted in `Client.pushes_dropped`), so a client that ignores pushes cannot grow without bound.
PUSH_QUEUE_MAX = 100_000
MARKET_QUEUE_MAX = 100_000


@dataclass
class CommandResult:
    """A sequenced command: its `seq` and the events its principal may see (PROTOCOL.md §8).
    `request_key` is the key it was sent with (0: sent without one)."""

    seq: int
    events: list[AnyEvent]
    request_key: int = 0

    @property
    def rejected(self) -> int | None:
        """The engine's reason code when the command was rejected, else None."""
        for e in self.events:
            if isinstance(e, RejectedEvent):
                return e.reason
        return None

    @property
    def applied_before(self) -> bool:
        """An earlier send of this command (the same request key) was applied: this one was
        sequenced as a `DuplicateRequest` (111) rejection and changed nothing (PROTOCOL.md §17).
        Not an error: the command took effect, once."""
        return self.request_key != 0 and self.rejected == RejectReason.DUPLICATE_REQUEST


@dataclass
class Push:
    """Another command's events this principal may see (request id 0)."""

    seq: int
    events: list[AnyEvent]


MarketMessage = Union[Depth, DepthUpdate, MarketTrade]


class _Pending:
    """One request's answer being assembled: a single frame, a multi-frame list, or a command's
    `Accepted` followed by its `Events` frames."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.seq: int | None = None
        self.parts: list[Any] = []


class Subscription:
    """Market data of one symbol: a local L2 book and the messages that built it.

    Iterate it (`async for message, book_event in sub`) to see every `DepthSnapshot`,
    `DepthUpdate` and `MarketTrade` with what it did to `book`. On a gap in `md_seq` the book
    is invalidated and, with `auto_resync`, the client subscribes again at once (§12)."""

    def __init__(self, client: Client, symbol: int, auto_resync: bool) -> None:
        self.client = client
        self.symbol = symbol
        self.book = L2Book(symbol)
        self.auto_resync = auto_resync
        self.gaps = 0
        self.resyncs = 0
        self.dropped = 0
        self.active = True
        self._queue: asyncio.Queue[tuple[MarketMessage, BookEvent] | None] = asyncio.Queue()
        self._synced = asyncio.Event()

    def _on_message(self, message: MarketMessage) -> None:
        event = self.book.on_message(message)
        if isinstance(event, Synced):
            self._synced.set()
        elif isinstance(event, Gap):
            self.gaps += 1
            self._synced.clear()
            if self.auto_resync and self.active:
                self.resyncs += 1
                self.client._send_resubscribe(self.symbol)
        if self._queue.qsize() >= MARKET_QUEUE_MAX:
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait((message, event))

    def _end(self) -> None:
        self.active = False
        self._queue.put_nowait(None)

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Wait until the book holds a whole snapshot (after a subscribe or a resync)."""
        await asyncio.wait_for(self._synced.wait(), timeout)

    async def next(self, timeout: float | None = None) -> tuple[MarketMessage, BookEvent]:
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if item is None:
            self._queue.put_nowait(None)
            raise StopAsyncIteration
        return item

    def __aiter__(self) -> AsyncIterator[tuple[MarketMessage, BookEvent]]:
        return self

    async def __anext__(self) -> tuple[MarketMessage, BookEvent]:
        return await self.next()

    async def unsubscribe(self) -> None:
        await self.client.unsubscribe(self.symbol)


class _QuicProtocol(QuicConnectionProtocol):
    client: Client | None = None

    def quic_event_received(self, event: quic_events.QuicEvent) -> None:
        client = self.client
        if client is None:
            return
        if isinstance(event, quic_events.StreamDataReceived):
            client._on_stream_data(event.stream_id, event.data, event.end_stream)
        elif isinstance(event, quic_events.ConnectionTerminated):
            client._on_terminated(event.error_code, event.reason_phrase)


@dataclass
class ConnectParams:
    """Everything `Client.connect` was given, kept so a reconnect (and, with protocol v2, a
    move to a new leader) can open the same kind of connection elsewhere."""

    host: str
    port: int
    ca: str
    cert: str
    key: str
    server_name: str = "localhost"
    timeout_s: float = CONNECT_TIMEOUT_S
    idle_timeout_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Api:
    """The requests of the protocol as methods, on a transport's `_request` and `command`: shared
    by `Client` (one connection) and `ClusterClient` (the nodes of a cluster, following the
    leader)."""

    reference: ReferenceData

    def _request(self, kind: str, msg_type: int, payload: bytes) -> Awaitable[Any]:
        raise NotImplementedError

    async def command(self, command: Command, *, check: bool = True, request_key: int = 0) -> CommandResult:
        raise NotImplementedError

    async def ping(self) -> float:
        """Round trip in seconds."""
        start = time.monotonic()
        await self._request("single", MsgType.PING, b"")
        return time.monotonic() - start

    # --- queries ----------------------------------------------------------------------------

    async def balances(self, account: int) -> codec.Balances:
        return await self._request("list", MsgType.QUERY_BALANCES, codec.account_query_payload(account))  # type: ignore[no-any-return]

    async def subtree_totals(self, account: int) -> codec.SubtreeTotals:
        return await self._request("list", MsgType.QUERY_SUBTREE_TOTALS, codec.account_query_payload(account))  # type: ignore[no-any-return]

    async def order(self, order_id: int) -> OrderInfo:
        """A live order; `GatewayError` 940 when it is not live or not visible."""
        return await self._request("single", MsgType.QUERY_ORDER, codec.account_query_payload(order_id))  # type: ignore[no-any-return]

    async def open_orders(self, account: int) -> codec.OpenOrders:
        return await self._request("list", MsgType.QUERY_OPEN_ORDERS, codec.account_query_payload(account))  # type: ignore[no-any-return]

    async def depth(self, symbol: int, levels: int = 0) -> Depth:
        """The book by price level, `levels` per side (0 = all)."""
        return await self._request("list", MsgType.QUERY_DEPTH, codec.depth_query_payload(symbol, levels))  # type: ignore[no-any-return]

    async def list_assets(self) -> codec.Assets:
        """Version 2: every asset with its scale and code; also teaches `reference` the scales."""
        assets: codec.Assets = await self._request("list", MsgType.LIST_ASSETS, b"")
        for a in assets.assets:
            self.reference.set_asset(a.asset, a.scale)
        return assets

    async def list_symbols(self) -> codec.Symbols:
        """Version 2: every symbol with its spec, status and code."""
        symbols: codec.Symbols = await self._request("list", MsgType.LIST_SYMBOLS, b"")
        for x in symbols.symbols:
            self.reference.set_symbol(x.spec, x.status)
        return symbols

    async def withdrawal(self, withdrawal_id: int) -> codec.WithdrawalInfo:
        """Version 2: a withdrawal's state; `GatewayError` 940 when unknown or not visible."""
        return await self._request("single", MsgType.QUERY_WITHDRAWAL, struct.pack("<Q", withdrawal_id))  # type: ignore[no-any-return]

    # --- commands: reference data (admin) ---------------------------------------------------

    async def create_asset(self, asset: int, scale: int, code: str | None = None) -> CommandResult:
        """With `code` (`BTC`), the version-2 `CreateAssetWithCode`."""
        if code is None:
            return await self.command(codec.CreateAsset(asset, scale))
        return await self.command(codec.CreateAssetWithCode(asset, scale, code))

    def symbol_spec(
        self,
        symbol: int,
        base: int,
        quote: int,
        *,
        tick_size: Amount,
        lot_size: Amount,
        min_qty: Amount = 0,
        min_notional: Amount = 0,
        max_order_qty: Amount,
        maker_fee_ppm: int = 0,
        taker_fee_ppm: int = 0,
        price_band_bps: int = 0,
    ) -> SymbolSpec:
        """A spec with prices (tick, min notional) in the quote asset and quantities in the base
        asset: Decimals converted by their scales, ints taken as minor units."""
        ref = self.reference
        return SymbolSpec(
            symbol,
            base,
            quote,
            ref.amount(quote, tick_size, "tick_size"),
            ref.amount(base, lot_size, "lot_size"),
            ref.amount(base, min_qty, "min_qty"),
            ref.amount(quote, min_notional, "min_notional"),
            ref.amount(base, max_order_qty, "max_order_qty"),
            maker_fee_ppm,
            taker_fee_ppm,
            price_band_bps,
        )

    async def create_symbol(self, spec: SymbolSpec, code: str | None = None) -> CommandResult:
        """With `code` (`BTC/USDT`), the version-2 `CreateSymbolWithCode`."""
        if code is None:
            return await self.command(codec.CreateSymbol(spec))
        return await self.command(codec.CreateSymbolWithCode(spec, code))

    async def update_symbol(self, spec: SymbolSpec) -> CommandResult:
        return await self.command(codec.UpdateSymbol(spec))

    async def halt_symbol(self, symbol: int) -> CommandResult:
        return await self.command(codec.SetSymbolStatus(symbol, SymbolStatus.HALTED))

    async def resume_symbol(self, symbol: int) -> CommandResult:
        return await self.command(codec.SetSymbolStatus(symbol, SymbolStatus.TRADING))

    # --- commands: accounts and funds -------------------------------------------------------

    async def create_account(self, account: int, parent: int = 0, owner: int | None = None) -> CommandResult:
        """`owner` defaults to the account itself for a root (a tree shares its root's owner)."""
        return await self.command(codec.CreateAccount(account, parent, account if owner is None else owner))

    async def freeze_account(self, account: int) -> CommandResult:
        return await self.command(codec.SetAccountStatus(account, AccountStatus.FROZEN))

    async def unfreeze_account(self, account: int) -> CommandResult:
        return await self.command(codec.SetAccountStatus(account, AccountStatus.ACTIVE))

    async def deposit(self, account: int, asset: int, amount: Amount, external_ref: int) -> CommandResult:
        return await self.command(codec.Deposit(account, asset, self.reference.amount(asset, amount), external_ref))

    async def withdraw_request(self, account: int, asset: int, amount: Amount, client_ref: int) -> CommandResult:
        """The withdrawal's id is the returned `seq`."""
        return await self.command(
            codec.WithdrawRequest(account, asset, self.reference.amount(asset, amount), client_ref)
        )

    async def withdraw_approve(self, withdrawal_id: int) -> CommandResult:
        return await self.command(codec.WithdrawApprove(withdrawal_id))

    async def withdraw_reject(self, withdrawal_id: int) -> CommandResult:
        return await self.command(codec.WithdrawReject(withdrawal_id))

    async def transfer(
        self, from_account: int, to_account: int, asset: int, amount: Amount, client_ref: int
    ) -> CommandResult:
        amount_minor = self.reference.amount(asset, amount)
        return await self.command(codec.Transfer(from_account, to_account, asset, amount_minor, client_ref))

    # --- commands: orders --------------------------------------------------------------------

    async def place_order(
        self,
        account: int,
        symbol: int,
        side: Side,
        order_type: OrderType,
        *,
        qty: Amount,
        price: Amount = 0,
        stop_price: Amount = 0,
        quote_budget: Amount = 0,
        tif: TimeInForce = TimeInForce.GTC,
        stp: Stp = Stp.CANCEL_INCOMING,
        client_order_id: int = 0,
        check: bool = True,
    ) -> CommandResult:
        """Any order (PROTOCOL.md §16.3). The order's id is the returned `seq`."""
        ref = self.reference
        order = codec.PlaceOrder(
            account,
            symbol,
            client_order_id,
            Side(side),
            OrderType(order_type),
            TimeInForce(tif),
            Stp(stp),
            ref.price(symbol, price),
            ref.price(symbol, stop_price),
            ref.qty(symbol, qty),
            ref.quote_amount(symbol, quote_budget),
        )
        return await self.command(order, check=check)

    async def limit(
        self, account: int, symbol: int, side: Side, price: Amount, qty: Amount, **kw: Any
    ) -> CommandResult:
        return await self.place_order(account, symbol, side, OrderType.LIMIT, price=price, qty=qty, **kw)

    async def market(
        self, account: int, symbol: int, side: Side, qty: Amount, *, quote_budget: Amount = 0, **kw: Any
    ) -> CommandResult:
        """Market orders are IOC; a buy spends at most `quote_budget`."""
        kw.setdefault("tif", TimeInForce.IOC)
        return await self.place_order(account, symbol, side, OrderType.MARKET, qty=qty, quote_budget=quote_budget, **kw)

    async def stop_limit(
        self, account: int, symbol: int, side: Side, stop_price: Amount, price: Amount, qty: Amount, **kw: Any
    ) -> CommandResult:
        return await self.place_order(
            account, symbol, side, OrderType.STOP_LIMIT, stop_price=stop_price, price=price, qty=qty, **kw
        )

    async def stop_market(
        self,
        account: int,
        symbol: int,
        side: Side,
        stop_price: Amount,
        qty: Amount,
        *,
        quote_budget: Amount = 0,
        **kw: Any,
    ) -> CommandResult:
        kw.setdefault("tif", TimeInForce.IOC)
        return await self.place_order(
            account,
            symbol,
            side,
            OrderType.STOP_MARKET,
            stop_price=stop_price,
            qty=qty,
            quote_budget=quote_budget,
            **kw,
        )

    async def cancel_order(self, account: int, order_id: int, *, check: bool = True) -> CommandResult:
        return await self.command(codec.CancelOrder(account, order_id), check=check)

    async def cancel_by_client_id(self, account: int, client_order_id: int, *, check: bool = True) -> CommandResult:
        return await self.command(codec.CancelByClientId(account, client_order_id), check=check)

    async def cancel_all(self, account: int, symbol: int = 0) -> CommandResult:
        return await self.command(codec.CancelAll(account, symbol))

    async def amend_order(
        self, account: int, symbol: int, order_id: int, price: Amount, qty: Amount, *, check: bool = True
    ) -> CommandResult:
        """`qty` is the new TOTAL quantity, filled part included (§16.4); `symbol` only gives the
        scales for Decimal amounts."""
        ref = self.reference
        amend = codec.AmendOrder(account, order_id, ref.price(symbol, price), ref.qty(symbol, qty))
        return await self.command(amend, check=check)


class Client(_Api):
    """One connection to seqd. Create it with `await Client.connect(...)`; close it with
    `await client.close()` or `async with`."""

    def __init__(
        self,
        params: ConnectParams,
        reference: ReferenceData | None = None,
        on_push: Callable[[Push], None] | None = None,
        on_close: Callable[[Client, ConnectionClosed], None] | None = None,
    ) -> None:
        self.params = params
        self.reference = reference if reference is not None else ReferenceData()
        self.on_push = on_push
        self.on_close = on_close
        self.welcome: Welcome | None = None
        self.version = PROTOCOL_VERSION  # frames before Welcome carry 1; see _on_welcome
        self.pushes_dropped = 0
        #: Server frames that could not be decoded and answered no waiting request.
        self.undecodable_frames = 0
        self._protocol: _QuicProtocol | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._stream_id: int | None = None
        self._reader = FrameReader()
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._subs: dict[int, Subscription] = {}
        self._pushes: asyncio.Queue[Push | None] = asyncio.Queue()
        self._closed: ConnectionClosed | None = None
        self._in_flight: asyncio.Semaphore | None = None
        self._last_error: GatewayError | None = None
        self._keep_alive: asyncio.Task[None] | None = None

    # --- connecting and closing ------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        ca: str,
        cert: str,
        key: str,
        server_name: str = "localhost",
        timeout: float = CONNECT_TIMEOUT_S,
        idle_timeout: float | None = None,
        reference: ReferenceData | None = None,
        on_push: Callable[[Push], None] | None = None,
        on_close: Callable[[Client, ConnectionClosed], None] | None = None,
    ) -> Client:
        """Connects, checks the server certificate against `ca` for `server_name`, presents
        `cert`/`key` (PEM files; the common name is the principal), and completes Hello/Welcome,
        all within `timeout` seconds. Any failure leaves nothing open.

        With `idle_timeout` (seconds), a server silent that long counts as gone: the connection
        closes (`ConnectionClosed`) and the client pings every third of it to keep a quiet but
        healthy connection open. Without it, aioquic's 60 s and the server's 30 s apply."""
        params = ConnectParams(host, port, ca, cert, key, server_name, timeout, idle_timeout)
        client = cls(params, reference, on_push, on_close)
        try:
            await asyncio.wait_for(client._open(), timeout)
        except asyncio.TimeoutError:
            await client._abort()
            raise ConnectionClosed(None, f"connect to {host}:{port} timed out after {timeout} s") from None
        except BaseException:
            await client._abort()
            raise
        return client

    async def reconnect(self) -> Client:
        """A new connection with the same parameters and reference data (this one is closed).
        Subscriptions and in-flight requests do not carry over: after a reconnect, find out what
        happened to unanswered commands from the state (PROTOCOL.md §9) and subscribe again."""
        await self.close()
        p = self.params
        return await Client.connect(
            p.host,
            p.port,
            ca=p.ca,
            cert=p.cert,
            key=p.key,
            server_name=p.server_name,
            timeout=p.timeout_s,
            idle_timeout=p.idle_timeout_s,
            reference=self.reference,
            on_push=self.on_push,
            on_close=self.on_close,
        )

    async def _open(self) -> None:
        p = self.params
        config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], server_name=p.server_name)
        if p.idle_timeout_s is not None:
            config.idle_timeout = p.idle_timeout_s
        config.load_verify_locations(cafile=p.ca)
        config.load_cert_chain(p.cert, p.key)
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(p.host, p.port, type=socket.SOCK_DGRAM)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind(("::", 0, 0, 0) if family == socket.AF_INET6 else ("0.0.0.0", 0))
            from aioquic.quic.connection import QuicConnection

            connection = QuicConnection(configuration=config)
            transport, protocol = await loop.create_datagram_endpoint(lambda: _QuicProtocol(connection), sock=sock)
        except BaseException:
            sock.close()
            raise
        self._transport = transport
        self._protocol = protocol
        protocol.client = self
        protocol.connect(addr)
        try:
            await protocol.wait_connected()
        except ConnectionError:
            # aioquic raises a bare ConnectionError; the close event says why (a certificate
            # refused by either side, a wrong server name, an ALPN the server does not speak).
            event = protocol._quic._close_event
            code = event.error_code if event is not None else None
            reason = event.reason_phrase if event is not None else ""
            raise ConnectionClosed(code, f"QUIC/TLS handshake failed: {reason}") from None
        self._stream_id = protocol._quic.get_next_available_stream_id()
        welcome = await self._request("hello", MsgType.HELLO, codec.hello_payload(PROTOCOL_VERSION))
        self._on_welcome(welcome)
        if p.idle_timeout_s is not None:
            self._keep_alive = asyncio.ensure_future(self._ping_every(p.idle_timeout_s / 3))

    async def _ping_every(self, interval_s: float) -> None:
        """QUIC PINGs: the server's acknowledgements keep the idle timer of a healthy connection
        from expiring, and their absence lets it expire on a dead one."""
        uid = itertools.count(1)
        while self._closed is None and self._protocol is not None:
            self._protocol._quic.send_ping(next(uid))
            self._protocol.transmit()
            await asyncio.sleep(interval_s)

    def _on_welcome(self, welcome: Welcome) -> None:
        if welcome.protocol_version not in SUPPORTED_VERSIONS:
            raise ProtocolError(
                f"the server chose protocol version {welcome.protocol_version}; this SDK speaks {SUPPORTED_VERSIONS}"
            )
        self.welcome = welcome
        self.version = welcome.protocol_version
        self._reader.max_frame_bytes = welcome.max_frame_bytes
        if welcome.max_in_flight:
            self._in_flight = asyncio.Semaphore(welcome.max_in_flight)

    @property
    def principal(self) -> str:
        assert self.welcome is not None
        return self.welcome.principal

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def close(self, code: int = 0, reason: str = "") -> None:
        """Closes the connection with `code` (0 = normal) and fails whatever is still waiting."""
        if self._protocol is not None and self._closed is None:
            self._protocol.close(error_code=code, reason_phrase=reason)
        self._finish(ConnectionClosed(code, reason or "closed by the client"))
        await self._abort()

    async def _abort(self) -> None:
        protocol, transport = self._protocol, self._transport
        self._protocol = None
        self._transport = None
        if protocol is not None:
            protocol.client = None
            protocol.close()
            try:
                await asyncio.wait_for(protocol.wait_closed(), CLOSE_WAIT_S)
            except (asyncio.TimeoutError, Exception):
                pass
        if transport is not None:
            transport.close()
        self._finish(ConnectionClosed(0, "closed by the client"))

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _finish(self, closed: ConnectionClosed) -> None:
        """Fails every waiting request and ends every iterator, once."""
        if self._closed is not None:
            return
        self._closed = closed
        if self._keep_alive is not None:
            self._keep_alive.cancel()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(closed)
        self._pending.clear()
        for sub in self._subs.values():
            sub._end()
        self._pushes.put_nowait(None)
        if self.on_close is not None:
            self.on_close(self, closed)

    def _on_terminated(self, code: int, reason: str) -> None:
        if self._last_error is not None and not reason:
            reason = str(self._last_error)
        self._finish(ConnectionClosed(code, reason or "closed by the server"))

    def _fail(self, error: ProtocolError, close_code: int) -> None:
        """The server's stream cannot be read any more: close with `close_code` (§14)."""
        if self._protocol is not None and self._closed is None:
            self._protocol.close(error_code=close_code, reason_phrase=str(error)[:100])
        self._finish(ConnectionClosed(close_code, str(error)))

    # --- frames ----------------------------------------------------------------------------

    def _send(self, msg_type: int, request_id: int, payload: bytes) -> None:
        if self._closed is not None:
            raise self._closed
        assert self._protocol is not None and self._stream_id is not None
        # Hello always travels in a version-1 frame (PROTOCOL.md §4).
        version = 1 if msg_type == MsgType.HELLO else self.version
        frame = codec.encode_frame(version, msg_type, request_id, payload)
        self._protocol._quic.send_stream_data(self._stream_id, frame)
        self._protocol.transmit()

    def _request(self, kind: str, msg_type: int, payload: bytes) -> asyncio.Future[Any]:
        request_id = next(self._ids)
        pending = _Pending(kind)
        self._pending[request_id] = pending
        try:
            self._send(msg_type, request_id, payload)
        except BaseException:
            del self._pending[request_id]
            raise
        return pending.future

    def _on_stream_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        if stream_id != self._stream_id:
            return
        try:
            frames = self._reader.feed(data)
        except codec.FramingLost as e:
            self._fail(e, e.close_code)
            return
        for frame in frames:
            if self._closed is not None:
                return
            self._on_frame(frame)
        if end_stream and self._reader.inside_frame:
            self._fail(ProtocolError("the stream ended inside a frame"), 900)

    def _on_frame(self, frame: codec.Frame) -> None:
        if frame.version != self.version:
            # A peer speaking another version cannot be understood (§3): close with 903.
            self._fail(ProtocolError(f"a frame of version {frame.version} on a version-{self.version} connection"), 903)
            return
        try:
            if frame.flags != 0:
                raise ProtocolError(f"a frame with flags {frame.flags}")
            message = codec.decode_message(frame.version, frame.msg_type, frame.payload)
        except ProtocolError as e:
            # The frame is well delimited, so the stream goes on; its request (if any) fails.
            if frame.request_id in self._pending:
                self._complete(frame.request_id, e)
            else:
                self.undecodable_frames += 1
            return
        if frame.request_id == 0:
            self._on_push(message)
            return
        pending = self._pending.get(frame.request_id)
        if pending is None:
            return  # an answer to a request abandoned (cancelled) by its caller
        if isinstance(message, codec.Error):
            self._complete(frame.request_id, GatewayError(message.code, message.message, frame.request_id))
            return
        self._on_answer(frame.request_id, pending, message)

    def _complete(self, request_id: int, result: Any) -> None:
        pending = self._pending.pop(request_id)
        if pending.future.done():
            return
        if isinstance(result, BaseException):
            pending.future.set_exception(result)
        else:
            pending.future.set_result(result)

    def _on_answer(self, request_id: int, pending: _Pending, message: codec.ServerMessage) -> None:
        kind = pending.kind
        if kind == "command":
            if isinstance(message, codec.Accepted):
                pending.seq = message.seq
            elif isinstance(message, Events):
                self._learn(message.events)
                pending.parts.extend(message.events)
                if not message.more:
                    self._complete(request_id, CommandResult(message.seq, pending.parts))
            else:
                self._complete(request_id, ProtocolError(f"unexpected answer to a command: {message}"))
        elif kind == "subscribe":
            if isinstance(message, Depth) and message.snapshot:
                sub = self._subs.get(message.symbol)
                if sub is not None:
                    sub._on_message(message)
                if not message.more:
                    self._complete(request_id, message.book_seq)
            else:
                self._complete(request_id, ProtocolError(f"unexpected answer to Subscribe: {message}"))
        elif kind == "list":
            pending.parts.append(message)
            if not getattr(message, "more", False):
                self._complete(request_id, _join(pending.parts))
        elif kind == "unsubscribe":
            if isinstance(message, codec.Unsubscribed):
                sub = self._subs.pop(message.symbol, None)
                if sub is not None:
                    sub._end()
            self._complete(request_id, message)
        else:  # a single-frame answer: Welcome, Pong, OrderInfo
            self._complete(request_id, message)

    def _on_push(self, message: codec.ServerMessage) -> None:
        if isinstance(message, Events):
            self._learn(message.events)
            push = Push(message.seq, message.events)
            if self.on_push is not None:
                self.on_push(push)
            if self._pushes.qsize() >= PUSH_QUEUE_MAX:
                self._pushes.get_nowait()
                self.pushes_dropped += 1
            self._pushes.put_nowait(push)
        elif isinstance(message, (Depth, DepthUpdate, MarketTrade)):
            sub = self._subs.get(message.symbol)
            if sub is not None:
                sub._on_message(message)
        elif isinstance(message, codec.Error):
            # A connection-level error (request id 0), e.g. before the server closes: kept so
            # the close that follows can say why.
            self._last_error = GatewayError(message.code, message.message, 0)

    def _learn(self, events: list[AnyEvent]) -> None:
        """Reference data seen in any event list (PROTOCOL.md §8: always sent to everyone)."""
        for e in events:
            if isinstance(e, AssetCreated):
                self.reference.set_asset(e.asset, e.scale)
            elif isinstance(e, SymbolUpdated):
                self.reference.set_symbol(e.spec, e.status)

    # --- pushes ----------------------------------------------------------------------------

    async def next_push(self, timeout: float | None = None) -> Push:
        """The next push (another command's events this principal may see)."""
        item = await asyncio.wait_for(self._pushes.get(), timeout)
        if item is None:
            self._pushes.put_nowait(None)
            assert self._closed is not None
            raise self._closed
        return item

    async def pushes(self) -> AsyncIterator[Push]:
        """Every push until the connection closes."""
        while True:
            try:
                yield await self.next_push()
            except ConnectionClosed:
                return

    # --- generic requests -------------------------------------------------------------------

    async def command(self, command: Command, *, check: bool = True, request_key: int = 0) -> CommandResult:
        """Sends a command and waits until it is durable and its events have arrived.

        Raises `GatewayError` when the gateway refused it (nothing sequenced) and, with `check`,
        `Rejected` when the engine rejected it (sequenced, nothing changed). Waits for a free
        slot when `max_in_flight` commands are unanswered, so it never draws 922.

        With a non-zero `request_key` (protocol version 2, a server with request keys) it
        travels as a `KeyedCommand`: sent again with the same key, it is applied at most once,
        and the answer to the later send has `applied_before` (never raised as `Rejected`)."""
        if request_key:
            msg_type, payload = MsgType.KEYED_COMMAND, codec.keyed_command_payload(request_key, command)
        else:
            msg_type, payload = MsgType.COMMAND, codec.command_payload(command)
        semaphore = self._in_flight
        if semaphore is not None:
            await semaphore.acquire()
        try:
            result: CommandResult = await self._request("command", msg_type, payload)
        finally:
            if semaphore is not None:
                semaphore.release()
        result.request_key = request_key
        if check and result.rejected is not None and not result.applied_before:
            raise Rejected(result.rejected, result.seq)
        return result

    # --- market data ------------------------------------------------------------------------

    async def subscribe(self, symbol: int, *, auto_resync: bool = True) -> Subscription:
        """Subscribes and returns once the first snapshot is in the subscription's book."""
        sub = self._subs.get(symbol)
        if sub is None:
            sub = Subscription(self, symbol, auto_resync)
            self._subs[symbol] = sub
        try:
            await self._request("subscribe", MsgType.SUBSCRIBE, codec.symbol_payload(symbol))
        except BaseException:
            if self._subs.get(symbol) is sub and not sub.book.in_sync:
                del self._subs[symbol]
            raise
        return sub

    def _send_resubscribe(self, symbol: int) -> None:
        """After a gap: a new snapshot; the book ignores updates until it arrives."""
        if self._closed is not None:
            return
        future = self._request("subscribe", MsgType.SUBSCRIBE, codec.symbol_payload(symbol))
        future.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)

    async def unsubscribe(self, symbol: int) -> None:
        await self._request("unsubscribe", MsgType.UNSUBSCRIBE, codec.symbol_payload(symbol))


def _join(parts: list[Any]) -> Any:
    """The frames of one multi-frame answer as one message (PROTOCOL.md §6)."""
    first = parts[0]
    if len(parts) == 1:
        return first
    if isinstance(first, codec.Balances):
        return codec.Balances(first.account, first.seq, False, [b for p in parts for b in p.balances])
    if isinstance(first, codec.SubtreeTotals):
        return codec.SubtreeTotals(first.account, first.seq, False, [t for p in parts for t in p.totals])
    if isinstance(first, codec.OpenOrders):
        return codec.OpenOrders(first.account, first.seq, False, [o for p in parts for o in p.orders])
    if isinstance(first, codec.Assets):
        return codec.Assets(first.seq, False, [a for p in parts for a in p.assets])
    if isinstance(first, codec.Symbols):
        return codec.Symbols(first.seq, False, [x for p in parts for x in p.symbols])
    if isinstance(first, Depth):
        bids = [lv for p in parts for lv in p.bids]
        asks = [lv for p in parts for lv in p.asks]
        return Depth(first.symbol, first.book_seq, False, bids, asks, first.snapshot)
    raise ProtocolError(f"{type(first).__name__} is not a multi-frame answer")


__all__ = [
    "CONNECT_TIMEOUT_S",
    "Client",
    "CommandResult",
    "ConnectParams",
    "Push",
    "SeqdError",
    "Subscription",
]
