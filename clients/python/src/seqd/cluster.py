"""A client of a seqd cluster that follows the leader (docs/PROTOCOL.md §17).

Only the leader sequences commands; a follower answers every command with `GatewayError` 931
`not the leader: leader=<host:port>` (or `leader=?` during an election). `ClusterClient` knows
several node addresses, connects to the first that answers, and sends each command, under a
random request key, until a node sequences it: to the leader a follower names, or to the next
address when a connection is lost. A command whose answer was lost is sent again with the same
key, so it is applied at most once: the later answer then has `applied_before` (the engine's
`DuplicateRequest`, 111), a result, not an error. Queries are answered by any node from its own
applied state (the answer's `seq` says how far it is) and are sent again after a lost connection.

The policy is `LeaderFollower`, a pure state machine (no sockets, no clock: `now` is passed in),
the same as the Rust client's (src/client/follow.rs):

- Start at the first address. Until a connection has succeeded, try each address once, in
  order, and give up when none answers.
- 931 naming a leader: go there, at once for the first redirects of a failover (as many as there
  are addresses), then after the backoff, so two nodes naming each other cannot make it spin.
- 931 with `leader=?`, a lost connection, a failed connect, or 930 (node stopping): the next
  configured address; at once if this failover has not tried it, else after the backoff (50 ms
  doubling to 1 s). The node that failed counts as tried.
- A failover ends when a request is answered; one that lasts `failover_timeout` (default 10 s)
  gives up with `ConnectionClosed`.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .client import CONNECT_TIMEOUT_S, Client, CommandResult, Push, Subscription, _Api
from .codec import Command
from .errors import ConnectionClosed, GatewayCode, GatewayError, ProtocolError, Rejected
from .money import ReferenceData

#: Whether `ClusterClient` sends commands as `KeyedCommand` (0x04) with a random key (protocol
#: version 2). Without a key (a version-1 server) a command whose answer was lost on a dead
#: connection is not sent again: its outcome is unknown (PROTOCOL.md §9).
KEYED_COMMANDS = True

FAILOVER_TIMEOUT_S = 10.0
#: A node silent this long counts as lost (`Client.connect`'s `idle_timeout`): without it a
#: command sent to a leader that died would wait out the server's 30 s idle timeout before the
#: failover could start.
IDLE_TIMEOUT_S = 3.0
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 1.0
#: Most addresses a client may be given.
ADDRESSES_MAX = 64
#: The longest address (a 253-byte DNS name, `:` and a port, room for IPv6 brackets); a longer
#: leader hint counts as unknown.
ADDRESS_MAX_BYTES = 263


def leader_hint(message: str) -> str | None:
    """The leader's address in a 931 message (`... leader=<host:port>`), None when unknown (`?`)."""
    at = message.rfind("leader=")
    if at < 0:
        return None
    words = message[at + len("leader=") :].split()
    value = words[0] if words else ""
    if not value or value == "?" or len(value.encode()) > ADDRESS_MAX_BYTES:
        return None
    return value


def address_list(addresses: str | Sequence[str]) -> list[str]:
    """`"a:1, b:2"` or `["a:1", "b:2"]` as a list; blanks dropped."""
    items = addresses.split(",") if isinstance(addresses, str) else list(addresses)
    return [a.strip() for a in items if a.strip()]


def split_address(address: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` as (host, port); ValueError for anything else."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address {address!r} is not host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


def random_request_key() -> int:
    """A random non-zero 64-bit request key (from the operating system's random source)."""
    while True:
        key = secrets.randbits(64)
        if key:
            return key


@dataclass(frozen=True)
class Connect:
    """Connect to `address` after `delay` seconds."""

    address: str
    delay: float = 0.0


@dataclass(frozen=True)
class GiveUp:
    """Stop looking: the failover timed out, or no address answered the first connect."""


Action = Connect | GiveUp


@dataclass
class _Failover:
    started: float
    tried: list[str]
    redirects: int = 0
    backoff: float = BACKOFF_FIRST_S


@dataclass
class LeaderFollower:
    """The leader-following policy (see the module documentation). Times are seconds on a
    monotonic clock, passed in."""

    addresses: list[str]
    failover_timeout: float = FAILOVER_TIMEOUT_S
    backoff_first: float = BACKOFF_FIRST_S
    backoff_max: float = BACKOFF_MAX_S
    target: str = ""
    #: The address of the last connection made (where the client stays if a failover fails).
    connected: str = ""
    connected_once: bool = False
    _cursor: int = 0
    _failover: _Failover | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        unique: list[str] = []
        for address in address_list(self.addresses):
            if len(address.encode()) > ADDRESS_MAX_BYTES:
                raise ValueError(f"address {address[:16]!r}... is longer than {ADDRESS_MAX_BYTES} bytes")
            if address not in unique:
                unique.append(address)
        if not unique:
            raise ValueError("no address given")
        if len(unique) > ADDRESSES_MAX:
            raise ValueError(f"{len(unique)} addresses; at most {ADDRESSES_MAX}")
        self.addresses = unique
        self.target = self.connected = unique[0]

    @property
    def failing_over(self) -> bool:
        return self._failover is not None

    def start(self, now: float) -> Action:
        """The first connection: to the first address."""
        self.connected_once = False
        self._failover = None
        self._cursor = 0
        return self._go(self.addresses[0], now, redirect=False)

    def on_connected(self) -> None:
        self.connected = self.target
        if not self.connected_once:
            # The first connect is over: a failover starts at the first failure after it.
            self.connected_once = True
            self._failover = None

    def on_answered(self) -> None:
        """A request was answered: the target works, any failover is over."""
        self._failover = None

    def on_not_leader(self, hint: str | None, now: float) -> Action:
        """The target refused a command with 931; `hint` is `leader_hint` of its message."""
        # A node naming itself is stale (it just lost the leadership): as good as unknown.
        if hint is not None and hint != self.target:
            return self._go(hint, now, redirect=True)
        return self._go_next(now)

    def on_unreachable(self, now: float) -> Action:
        """The connection was lost, could not be made or timed out, or the node is stopping (930)."""
        if not self.connected_once:
            tried = self._failover.tried if self._failover is not None else []
            for index, address in enumerate(self.addresses):
                if address not in tried:
                    self._cursor = index
                    return self._go(address, now, redirect=False)
            return GiveUp()
        return self._go_next(now)

    def _go_next(self, now: float) -> Action:
        n = len(self.addresses)
        tried = self._failover.tried if self._failover is not None else []
        order = [(self._cursor + step) % n for step in range(1, n + 1)]
        untried = [i for i in order if self.addresses[i] not in tried]
        self._cursor = untried[0] if untried else order[0]
        return self._go(self.addresses[self._cursor], now, redirect=False)

    def _go(self, address: str, now: float, redirect: bool) -> Action:
        if self._failover is None:
            # The node that just failed counts as tried (the first connect has none).
            self._failover = _Failover(now, [self.target] if self.connected_once else [], 0, self.backoff_first)
        f = self._failover
        deadline = f.started + self.failover_timeout
        # The first connect is bounded by the address count (each once), not by time.
        if self.connected_once and now >= deadline:
            # This request fails, on the connection the client still has; the next request
            # starts a failover of its own from there.
            self._failover = None
            self.target = self.connected
            if self.connected in self.addresses:
                self._cursor = self.addresses.index(self.connected)
            return GiveUp()
        remembered = len(f.tried) < 2 * ADDRESSES_MAX
        if redirect:
            f.redirects += 1
            fresh = f.redirects <= len(self.addresses)
        else:
            fresh = remembered and address not in f.tried
        delay = 0.0
        if not fresh and self.connected_once:
            delay = min(f.backoff, max(0.0, deadline - now))  # the last attempt is at the deadline
            f.backoff = min(f.backoff * 2, self.backoff_max)
        if remembered and address not in f.tried:
            f.tried.append(address)
        if address in self.addresses:
            self._cursor = self.addresses.index(address)
        self.target = address
        return Connect(address, delay)


#: Opens a connection to an address (`ClusterClient.connect` uses `Client.connect`).
Dial = Callable[[str], Awaitable[Client]]

_UNREACHABLE = (ConnectionClosed, OSError, ProtocolError, ValueError, asyncio.TimeoutError)


class ClusterClient(_Api):
    """A client of the nodes of a cluster (or of one daemon) that follows the leader. It has
    every command and query method of `Client`; commands return `CommandResult` whose
    `applied_before` tells a resend that found its first send applied. Subscriptions and pushes
    are those of the current connection (`client`) and do not move on a failover: subscribe
    again after one (`on_failover` is called with the new connection)."""

    def __init__(
        self,
        follower: LeaderFollower,
        dial: Dial,
        *,
        reference: ReferenceData | None = None,
        on_failover: Callable[[Client], None] | None = None,
    ) -> None:
        self.follower = follower
        self.reference = reference if reference is not None else ReferenceData()
        self.on_failover = on_failover
        #: Requests sent again after a 931 or a lost connection, since the start.
        self.resends = 0
        self._dial = dial
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    @classmethod
    async def connect(
        cls,
        addresses: str | Sequence[str],
        *,
        ca: str,
        cert: str,
        key: str,
        server_name: str = "localhost",
        timeout: float = CONNECT_TIMEOUT_S,
        failover_timeout: float = FAILOVER_TIMEOUT_S,
        idle_timeout: float = IDLE_TIMEOUT_S,
        reference: ReferenceData | None = None,
        on_push: Callable[[Push], None] | None = None,
        on_failover: Callable[[Client], None] | None = None,
    ) -> ClusterClient:
        """Connects to the first of `addresses` (`"host:port,host:port"` or a list) that answers,
        each within `timeout`; raises `ConnectionClosed` naming each one's error when none does.
        The other arguments are `Client.connect`'s; `failover_timeout` bounds each request's
        search for a node that takes it; a node silent for `idle_timeout` counts as lost."""
        shared = reference if reference is not None else ReferenceData()

        async def dial(address: str) -> Client:
            host, port = split_address(address)
            return await Client.connect(
                host,
                port,
                ca=ca,
                cert=cert,
                key=key,
                server_name=server_name,
                timeout=timeout,
                idle_timeout=idle_timeout,
                reference=shared,
                on_push=on_push,
            )

        return await cls.connect_with(
            addresses, dial, failover_timeout=failover_timeout, reference=shared, on_failover=on_failover
        )

    @classmethod
    async def connect_with(
        cls,
        addresses: str | Sequence[str],
        dial: Dial,
        *,
        failover_timeout: float = FAILOVER_TIMEOUT_S,
        reference: ReferenceData | None = None,
        on_failover: Callable[[Client], None] | None = None,
    ) -> ClusterClient:
        """As `connect`, with a function that opens one connection (tests, custom transports)."""
        follower = LeaderFollower(address_list(addresses), failover_timeout=failover_timeout)
        cluster = cls(follower, dial, reference=reference, on_failover=on_failover)
        await cluster._follow(follower.start(time.monotonic()), "")
        return cluster

    @property
    def client(self) -> Client:
        """The current connection (replaced on a failover)."""
        assert self._client is not None
        return self._client

    @property
    def address(self) -> str:
        """The address of the node connected to."""
        return self.follower.connected

    @property
    def keyed(self) -> bool:
        """Whether commands carry a request key (then a lost answer is sent again)."""
        welcome = self.client.welcome
        return KEYED_COMMANDS and welcome is not None and welcome.protocol_version >= 2

    @property
    def closed(self) -> bool:
        return self._client is None or self._client.closed

    async def close(self, code: int = 0, reason: str = "") -> None:
        if self._client is not None:
            await self._client.close(code, reason)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def __aenter__(self) -> ClusterClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- commands and queries, following the leader -----------------------------------------

    async def command(self, command: Command, *, check: bool = True, request_key: int = 0) -> CommandResult:
        """Sends a command until a node sequences it: to the leader a follower names, to the next
        node when the connection is lost. `request_key` (default: a random one when `keyed`) is
        kept across resends; give your own to send the same command again later, e.g. after this
        raised. Raises `GatewayError` (other than 930 and 931), `Rejected` with `check` (never
        for `applied_before`), and `ConnectionClosed` when the failover found no leader within
        `failover_timeout` (then the command may or may not have been applied: with a key, send
        it again with the same key to find out)."""
        key = request_key or (random_request_key() if self.keyed else 0)
        while True:
            client = await self._current()
            try:
                result = await client.command(command, check=False, request_key=key)
            except GatewayError as e:
                if e.code == GatewayCode.NOT_LEADER:
                    follow_hint = functools.partial(self.follower.on_not_leader, leader_hint(e.message))
                    await self._recover(client, follow_hint, str(e))
                elif e.code == GatewayCode.SHUTTING_DOWN:
                    await self._recover(client, self.follower.on_unreachable, str(e))
                else:
                    raise
            except ConnectionClosed as e:
                if not key:
                    raise ConnectionClosed(
                        e.code,
                        f"{e.reason}; the command's outcome is unknown (sent without a request key, PROTOCOL.md §9)",
                    ) from e
                await self._recover(client, self.follower.on_unreachable, str(e))
            else:
                self.follower.on_answered()
                if check and result.rejected is not None and not result.applied_before:
                    raise Rejected(result.rejected, result.seq)
                return result
            self.resends += 1

    async def _request(self, kind: str, msg_type: int, payload: bytes) -> Any:
        """A query (or ping) on the current node, sent again on another if the connection is lost."""
        while True:
            client = await self._current()
            try:
                answer = await client._request(kind, msg_type, payload)
            except GatewayError as e:
                if e.code != GatewayCode.SHUTTING_DOWN:
                    raise
                await self._recover(client, self.follower.on_unreachable, str(e))
            except ConnectionClosed as e:
                await self._recover(client, self.follower.on_unreachable, str(e))
            else:
                self.follower.on_answered()
                return answer
            self.resends += 1

    # --- the current connection's market data and pushes ----------------------------------

    async def subscribe(self, symbol: int, *, auto_resync: bool = True) -> Subscription:
        return await self.client.subscribe(symbol, auto_resync=auto_resync)

    async def unsubscribe(self, symbol: int) -> None:
        await self.client.unsubscribe(symbol)

    async def next_push(self, timeout: float | None = None) -> Push:
        return await self.client.next_push(timeout)

    def pushes(self) -> AsyncIterator[Push]:
        return self.client.pushes()

    # --- failover ----------------------------------------------------------------------------

    async def _current(self) -> Client:
        """The current connection; one the server closed meanwhile is replaced first."""
        client = self.client
        if client.closed:
            await self._recover(client, self.follower.on_unreachable, f"{self.address}: connection closed")
        return self.client

    async def _recover(self, failed: Client, event: Callable[[float], Action], why: str) -> None:
        """Moves off `failed` as the follower says, once: concurrent requests that failed on
        the same connection find it replaced and simply send again."""
        async with self._lock:
            if self._client is failed:
                await self._follow(event(time.monotonic()), f"{self.address}: {why}")

    async def _follow(self, action: Action, last_error: str) -> None:
        """Carries out `action` and what follows until a connection is up, or raises
        `ConnectionClosed` when the follower gives up."""
        errors: list[str] = []
        while True:
            if isinstance(action, GiveUp):
                if not self.follower.connected_once:
                    raise ConnectionClosed(None, "; ".join(errors))
                raise ConnectionClosed(
                    None,
                    f"no node took the request within {self.follower.failover_timeout} s (failover timeout); "
                    f"last: {last_error}",
                )
            if action.delay > 0:
                await asyncio.sleep(action.delay)
            try:
                client = await self._dial(action.address)
            except _UNREACHABLE as e:
                last_error = f"{action.address}: {e}"
                if not self.follower.connected_once:
                    errors.append(last_error)
                action = self.follower.on_unreachable(time.monotonic())
                continue
            first = not self.follower.connected_once
            self.follower.on_connected()
            old, self._client = self._client, client
            if old is not None:
                # Closed in the background: the failover does not wait for the old node.
                task = asyncio.ensure_future(old.close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            if not first and self.on_failover is not None:
                self.on_failover(client)
            return


__all__ = [
    "FAILOVER_TIMEOUT_S",
    "IDLE_TIMEOUT_S",
    "KEYED_COMMANDS",
    "Action",
    "ClusterClient",
    "Connect",
    "GiveUp",
    "LeaderFollower",
    "address_list",
    "leader_hint",
    "random_request_key",
    "split_address",
]
