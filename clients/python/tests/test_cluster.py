"""Following the leader: the pure `LeaderFollower` policy (no sockets, times passed in), then
`ClusterClient` over fake connections (a leader with a request-key memory, followers answering
931, a node that loses the answer after applying), then against a real `seqd run` (a single node
answers as the leader). The same policy as the Rust client's (src/client/follow.rs)."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from typing import Any

import pytest

import seqd.cluster

from seqd import ClusterClient, ConnectionClosed, GatewayError, Rejected
from seqd.client import CommandResult
from seqd.cluster import (
    ADDRESS_MAX_BYTES,
    ADDRESSES_MAX,
    Connect,
    GiveUp,
    LeaderFollower,
    address_list,
    leader_hint,
    random_request_key,
    split_address,
)
from seqd.codec import AssetCreated, CreateAsset, MsgType, RejectedEvent, Welcome, keyed_command_payload

# --- the policy ------------------------------------------------------------------------------


def settled(addresses: list[str], now: float = 0.0) -> LeaderFollower:
    """A follower connected to the first address, its requests answered (no failover)."""
    f = LeaderFollower(addresses)
    assert f.start(now) == Connect(addresses[0])
    f.on_connected()
    f.on_answered()
    return f


def test_leader_hints_are_read_from_the_931_message() -> None:
    assert leader_hint("not the leader: leader=10.0.0.2:7400") == "10.0.0.2:7400"
    assert leader_hint("not the leader: leader=[::1]:7400") == "[::1]:7400"
    assert leader_hint("not the leader: leader=?") is None
    assert leader_hint("not the leader: leader=") is None
    assert leader_hint("not the leader") is None
    assert leader_hint("leader=a:1 (term 3)") == "a:1"
    assert leader_hint("leader=" + "x" * (ADDRESS_MAX_BYTES + 1)) is None


def test_addresses_are_split_deduplicated_and_bounded() -> None:
    assert address_list("a:1, b:2,,a:1 ,") == ["a:1", "b:2", "a:1"]
    assert LeaderFollower(address_list("a:1, b:2,,a:1 ,")).addresses == ["a:1", "b:2"]
    assert split_address("node-1.example:7400") == ("node-1.example", 7400)
    assert split_address("[::1]:7400") == ("::1", 7400)
    for bad in ["no-port", ":7400", "h:0", "h:65536", "h:x"]:
        with pytest.raises(ValueError):
            split_address(bad)
    with pytest.raises(ValueError):
        LeaderFollower([" ", ""])
    with pytest.raises(ValueError):
        LeaderFollower([f"h:{i}" for i in range(ADDRESSES_MAX + 1)])


def test_the_first_connect_tries_each_address_once_then_gives_up() -> None:
    f = LeaderFollower(["a:1", "b:2", "c:3"])
    assert f.start(0.0) == Connect("a:1")
    assert f.on_unreachable(0.0) == Connect("b:2")
    assert f.on_unreachable(20.0) == Connect("c:3"), "bounded by count, not time"
    assert f.on_unreachable(0.0) == GiveUp()
    single = LeaderFollower(["a:1"])
    assert single.start(0.0) == Connect("a:1")
    assert single.on_unreachable(0.0) == GiveUp()


def test_the_first_connect_may_land_on_a_follower_whose_hint_is_followed_later() -> None:
    f = LeaderFollower(["a:1", "b:2", "c:3"])
    assert f.start(0.0) == Connect("a:1")
    assert f.on_unreachable(0.0) == Connect("b:2")
    f.on_connected()
    assert not f.failing_over, "the failover's clock starts at the first failure after connecting"
    assert f.on_not_leader("c:3", 60.0) == Connect("c:3")


def test_a_named_leader_is_followed_at_once_then_the_list_resumes_after_it() -> None:
    f = settled(["a:1", "b:2", "c:3"])
    assert f.on_not_leader("10.0.0.9:7400", 0.0) == Connect("10.0.0.9:7400")
    assert f.target == "10.0.0.9:7400"
    assert f.on_unreachable(0.0) == Connect("b:2")


def test_unknown_leader_walks_the_list_then_backs_off_doubling_to_the_cap() -> None:
    f = settled(["a:1", "b:2", "c:3"])
    assert f.on_not_leader(None, 0.0) == Connect("b:2")
    assert f.on_not_leader(None, 0.0) == Connect("c:3")
    delays = [f.on_not_leader(None, 0.0) for _ in range(7)]
    assert delays == [
        Connect("a:1", 0.05),
        Connect("b:2", 0.1),
        Connect("c:3", 0.2),
        Connect("a:1", 0.4),
        Connect("b:2", 0.8),
        Connect("c:3", 1.0),
        Connect("a:1", 1.0),
    ]


def test_two_nodes_naming_each_other_get_the_backoff_after_a_few_redirects() -> None:
    f = settled(["a:1", "b:2", "c:3"])
    assert [f.on_not_leader(h, 0.0) for h in ["b:2", "a:1", "b:2", "a:1", "b:2"]] == [
        Connect("b:2"),
        Connect("a:1"),
        Connect("b:2"),
        Connect("a:1", 0.05),
        Connect("b:2", 0.1),
    ]


def test_a_node_naming_itself_counts_as_no_leader() -> None:
    f = settled(["a:1", "b:2"])
    assert f.on_not_leader("a:1", 0.0) == Connect("b:2")


def test_the_failover_gives_up_at_its_deadline_and_the_next_request_gets_another() -> None:
    f = LeaderFollower(["a:1"], failover_timeout=1.0)
    f.start(0.0)
    f.on_connected()
    f.on_answered()
    assert f.on_unreachable(0.0) == Connect("a:1", 0.05)
    assert f.on_unreachable(0.1) == Connect("a:1", 0.1)
    assert f.on_unreachable(0.99) == Connect("a:1", pytest.approx(0.01))  # type: ignore[arg-type]
    assert f.on_unreachable(1.0) == GiveUp()
    assert not f.failing_over, "the next request gets a failover and a deadline of its own"
    assert f.on_unreachable(60.0) == Connect("a:1", 0.05)
    assert f.on_unreachable(61.0) == GiveUp()


def test_after_giving_up_the_target_is_the_connection_still_held() -> None:
    f = LeaderFollower(["a:1", "b:2", "c:3"], failover_timeout=1.0)
    f.start(0.0)
    f.on_connected()
    f.on_answered()
    assert f.on_not_leader(None, 0.0) == Connect("b:2")
    assert f.on_unreachable(0.0) == Connect("c:3")
    assert f.on_unreachable(1.0) == GiveUp()
    assert (f.target, f.connected) == ("a:1", "a:1")
    assert f.on_not_leader(None, 2.0) == Connect("b:2"), "a new failover, from a:1"


def test_request_keys_are_random_non_zero_u64s() -> None:
    keys = {random_request_key() for _ in range(10_000)}
    assert len(keys) == 10_000 and 0 not in keys and max(keys) < 1 << 64
    payload = keyed_command_payload(7, CreateAsset(1, 8))
    assert payload == struct.pack("<QHIB", 7, 1, 1, 8)
    assert int(MsgType.KEYED_COMMAND) == 0x04
    with pytest.raises(ValueError):
        keyed_command_payload(0, CreateAsset(1, 8))


# --- ClusterClient over fake connections -----------------------------------------------------


@dataclass
class Cluster:
    """What the fake nodes share: the leader's address and the engine's request-key memory."""

    leader: str | None
    applied: dict[int, int] = field(default_factory=dict)  # request key -> seq
    seq: int = 0
    commands: list[tuple[str, int]] = field(default_factory=list)  # (address, key) of each send
    lose_answer_at: set[str] = field(default_factory=set)  # apply, then drop the connection
    down: set[str] = field(default_factory=set)


class FakeClient:
    """One connection to a fake node."""

    def __init__(self, cluster: Cluster, address: str) -> None:
        self.cluster = cluster
        self.address = address
        self.closed = False
        self.welcome = Welcome(2, 65_536, 16, 1000, 1000, "admin")

    async def command(self, command: Any, *, check: bool = True, request_key: int = 0) -> CommandResult:
        c = self.cluster
        c.commands.append((self.address, request_key))
        if self.closed:
            raise ConnectionClosed(0, "closed")
        if c.leader != self.address:
            raise GatewayError(931, f"not the leader: leader={c.leader or '?'}")
        c.seq += 1
        if request_key and request_key in c.applied:
            result = CommandResult(c.seq, [RejectedEvent(111)], request_key)
        else:
            c.applied[request_key] = c.seq
            result = CommandResult(c.seq, [AssetCreated(command.asset, command.scale)], request_key)
        if self.address in c.lose_answer_at:
            c.lose_answer_at.discard(self.address)
            self.closed = True
            raise ConnectionClosed(0, "lost")
        return result

    async def _request(self, kind: str, msg_type: int, payload: bytes) -> Any:
        if self.closed:
            raise ConnectionClosed(0, "closed")
        return ("answer of", self.address)

    async def close(self, code: int = 0, reason: str = "") -> None:
        self.closed = True


async def fake_cluster_client(cluster: Cluster, addresses: list[str], failover_timeout: float = 5.0) -> ClusterClient:
    async def dial(address: str) -> Any:
        if address in cluster.down:
            raise ConnectionClosed(None, f"connect to {address} timed out")
        return FakeClient(cluster, address)

    return await ClusterClient.connect_with(addresses, dial, failover_timeout=failover_timeout)


async def test_a_command_goes_to_the_leader_a_follower_names_with_the_same_key() -> None:
    cluster = Cluster(leader="c:3")
    client = await fake_cluster_client(cluster, ["a:1", "b:2", "c:3"])
    result = await client.command(CreateAsset(1, 8), request_key=42)
    assert (result.seq, result.applied_before, client.address, client.resends) == (1, False, "c:3", 1)
    assert cluster.commands == [("a:1", 42), ("c:3", 42)]
    # Queries stay wherever the client is; the next command goes straight to the leader.
    assert await client.ping() >= 0
    await client.command(CreateAsset(2, 8), request_key=43)
    assert cluster.commands[-1] == ("c:3", 43) and client.resends == 1


async def test_a_lost_answer_is_resent_with_its_key_and_comes_back_applied_before() -> None:
    cluster = Cluster(leader="a:1", lose_answer_at={"a:1"})
    client = await fake_cluster_client(cluster, ["a:1", "b:2"])
    result = await client.command(CreateAsset(1, 8), request_key=7)
    # The first send was applied (seq 1) and its answer lost; the resend is the duplicate.
    assert result.applied_before and result.rejected == 111 and result.seq == 2
    assert [key for _, key in cluster.commands] == [7, 7, 7], "a:1, then b:2 (931), then a:1"
    assert cluster.applied == {7: 1}


async def test_applied_before_is_a_result_even_with_check() -> None:
    cluster = Cluster(leader="a:1", applied={9: 1})
    client = await fake_cluster_client(cluster, ["a:1"])
    assert (await client.command(CreateAsset(1, 8), request_key=9)).applied_before
    cluster.applied.clear()

    async def rejected(*_: Any, **__: Any) -> CommandResult:
        return CommandResult(5, [RejectedEvent(100)], 0)

    client.client.command = rejected  # type: ignore[method-assign]
    with pytest.raises(Rejected):
        await client.command(CreateAsset(1, 8))


async def test_without_a_key_a_lost_answer_is_not_resent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seqd.cluster, "KEYED_COMMANDS", False)  # as with a version-1 server
    cluster = Cluster(leader="a:1", lose_answer_at={"a:1"})
    client = await fake_cluster_client(cluster, ["a:1", "b:2"])
    assert not client.keyed
    with pytest.raises(ConnectionClosed, match="outcome is unknown"):
        await client.command(CreateAsset(1, 8))
    assert len(cluster.commands) == 1
    # The next request finds the connection closed and moves to the next address first.
    assert await client._request("single", MsgType.PING, b"") == ("answer of", "b:2")


async def test_the_first_connect_skips_dead_nodes_and_names_every_error() -> None:
    cluster = Cluster(leader="b:2", down={"a:1"})
    client = await fake_cluster_client(cluster, ["a:1", "b:2"])
    assert client.address == "b:2"
    cluster.down.add("b:2")
    with pytest.raises(ConnectionClosed, match="a:1: .*timed out; b:2: .*timed out"):
        await fake_cluster_client(cluster, ["a:1", "b:2"])


async def test_no_leader_anywhere_gives_up_at_the_failover_timeout() -> None:
    cluster = Cluster(leader=None)
    client = await fake_cluster_client(cluster, ["a:1", "b:2"], failover_timeout=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ConnectionClosed, match="failover timeout.*leader=\\?"):
        await client.command(CreateAsset(1, 8), request_key=1)
    assert 0.3 <= loop.time() - started < 3.0
    assert 3 <= len(cluster.commands) <= 10, "a handful of tries, not a spin"


async def test_concurrent_requests_fail_over_once() -> None:
    cluster = Cluster(leader="b:2")
    client = await fake_cluster_client(cluster, ["a:1", "b:2"])
    results = await asyncio.gather(*(client.command(CreateAsset(i, 8), request_key=i + 1) for i in range(5)))
    assert sorted(r.seq for r in results) == [1, 2, 3, 4, 5]
    assert client.address == "b:2"
    assert [a for a, _ in cluster.commands].count("b:2") == 5


# --- against a real daemon -------------------------------------------------------------------


async def test_a_cluster_client_of_one_daemon_skips_a_dead_address(daemon: Any) -> None:
    certs = daemon.certs
    dead = "127.0.0.1:1"  # nothing answers QUIC there
    async with await ClusterClient.connect(
        f"{dead}, {daemon.host}:{daemon.port}",
        ca=str(certs / "ca.pem"),
        cert=str(certs / "admin.pem"),
        key=str(certs / "admin.key"),
        timeout=0.5,
    ) as client:
        assert client.address == f"{daemon.host}:{daemon.port}"
        created = await client.create_asset(1, 8, code="BTC")
        assert created.seq == 1 and not created.applied_before
        assets = await client.list_assets()
        assert [(a.asset, a.code) for a in assets.assets] == [(1, "BTC")]
        assert client.reference.scale(1) == 8
