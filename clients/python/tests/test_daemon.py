"""The SDK against the real daemon (`seqd run`, see conftest.py): every command, query, push and
market-data path, and errors with their codes."""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal

import pytest
from conftest import Daemon
from venue import BTC, BTC_USDT, TRADER1_ACCOUNT, TRADER2_ACCOUNT, USDT, reference_of, set_up_venue

from seqd import (
    Client,
    ConnectionClosed,
    Exec,
    GatewayCode,
    GatewayError,
    OrderStatus,
    Rejected,
    RejectReason,
    Side,
    Stp,
    SymbolStatus,
    Synced,
    TimeInForce,
    WithdrawalStatus,
)
from seqd.codec import (
    AccountCreated,
    AccountStatusChanged,
    DepositCredited,
    DepthUpdate,
    Ledger,
    OrderReport,
    SymbolUpdated,
    Trade,
    Transferred,
    WithdrawalUpdated,
)

TIMEOUT_S = 10


def balance_of(balances: list, asset: int) -> tuple[int, int]:  # type: ignore[type-arg]
    for b in balances:
        if b.asset == asset:
            return b.available, b.held
    return 0, 0


async def test_handshake_names_the_principal_and_the_limits(daemon: Daemon, admin: Client) -> None:
    assert admin.welcome is not None
    assert admin.welcome.protocol_version == 2
    assert admin.principal == "admin"
    # systemd/seqd.example.toml (the embedded default): 65 536 bytes, 1 024 in flight, 100 000/s.
    assert (admin.welcome.max_frame_bytes, admin.welcome.max_in_flight) == (65_536, 1_024)
    assert admin.welcome.rate_per_sec == 100_000 and admin.welcome.burst == 100_000
    assert await admin.ping() >= 0
    trader = await daemon.client("trader1")
    assert trader.principal == "trader1"
    await trader.close()


async def test_trade_between_two_traders_balances_pushes_depth_and_book(daemon: Daemon, admin: Client) -> None:
    await set_up_venue(admin)
    t1 = await daemon.client("trader1", reference=reference_of(admin))
    t2 = await daemon.client("trader2", reference=reference_of(admin))
    try:
        sub = await t1.subscribe(BTC_USDT)
        assert sub.book.in_sync and sub.book.bids() == [] and sub.book.asks() == []

        bid = await t1.limit(TRADER1_ACCOUNT, BTC_USDT, Side.BUY, Decimal("50000"), Decimal("0.5"), client_order_id=11)
        reports = [e for e in bid.events if isinstance(e, OrderReport)]
        assert [(r.order_id, r.exec, r.status) for r in reports] == [(bid.seq, Exec.NEW, OrderStatus.NEW)]
        assert reports[0].price == 50_000_000_000 and reports[0].qty == 50_000_000

        ask = await t2.limit(TRADER2_ACCOUNT, BTC_USDT, Side.SELL, Decimal("50000"), Decimal("0.2"))
        trades = [e for e in ask.events if isinstance(e, Trade)]
        assert len(trades) == 1
        # trader2 is the taker: the maker's side is hidden from it (PROTOCOL.md §8).
        assert (trades[0].taker_account, trades[0].maker_account, trades[0].maker_order) == (TRADER2_ACCOUNT, 0, 0)
        assert trades[0].qty == 20_000_000 and trades[0].quote_qty == 10_000_000_000

        # trader1 gets the fill of its resting order as a push (request id 0), only its side.
        push = await t1.next_push(TIMEOUT_S)
        assert push.seq == ask.seq
        pushed_trade = next(e for e in push.events if isinstance(e, Trade))
        assert (pushed_trade.maker_account, pushed_trade.taker_account) == (TRADER1_ACCOUNT, 0)
        pushed_order = next(e for e in push.events if isinstance(e, OrderReport))
        assert (pushed_order.order_id, pushed_order.status) == (bid.seq, OrderStatus.PARTIALLY_FILLED)

        b1 = (await t1.balances(TRADER1_ACCOUNT)).balances
        assert balance_of(b1, USDT) == (75_000_000_000, 15_000_000_000)  # 10 000 spent, 15 000 held
        assert balance_of(b1, BTC) == (20_000_000, 0)
        b2 = (await t2.balances(TRADER2_ACCOUNT)).balances
        assert balance_of(b2, BTC) == (980_000_000, 0)
        assert balance_of(b2, USDT) == (10_000_000_000, 0)
        assert t1.reference.amount_decimal(USDT, balance_of(b1, USDT)[0]) == Decimal("75000")

        totals = await t1.subtree_totals(TRADER1_ACCOUNT)
        assert {t.asset: t.total for t in totals.totals} == {BTC: 20_000_000, USDT: 90_000_000_000}

        info = await t1.order(bid.seq)
        assert info.order.remaining_qty == 30_000_000 and info.order.client_order_id == 11
        open_orders = await t1.open_orders(TRADER1_ACCOUNT)
        assert [o.order_id for o in open_orders.orders] == [bid.seq]

        depth = await t2.depth(BTC_USDT)
        assert [(lv.price, lv.qty, lv.orders) for lv in depth.bids] == [(50_000_000_000, 30_000_000, 1)]
        assert depth.asks == []

        # The market-data book follows: resting bid (1), trade (2), bid reduced (3).
        seen = [await sub.next(TIMEOUT_S) for _ in range(4)]
        assert isinstance(seen[0][1], Synced)
        assert [m.md_seq for m, _ in seen[1:]] == [1, 2, 3]
        assert sub.book.md_seq == depth.book_seq == 3
        assert sub.book.bids() == depth.bids and sub.book.asks() == []

        # Cancel by client id: the book empties, the hold comes back.
        cancel = await t1.cancel_by_client_id(TRADER1_ACCOUNT, 11)
        assert any(isinstance(e, OrderReport) and e.status == OrderStatus.CANCELLED for e in cancel.events)
        message, _ = await sub.next(TIMEOUT_S)
        assert isinstance(message, DepthUpdate) and message.qty == 0
        assert sub.book.bids() == []
        assert balance_of((await t1.balances(TRADER1_ACCOUNT)).balances, USDT) == (90_000_000_000, 0)

        await sub.unsubscribe()
        assert not sub.active
    finally:
        await t1.close()
        await t2.close()


async def test_errors_carry_their_codes(daemon: Daemon, admin: Client) -> None:
    await set_up_venue(admin)
    t1 = await daemon.client("trader1", reference=reference_of(admin))
    try:
        with pytest.raises(GatewayError) as unauthorized:
            await t1.balances(TRADER2_ACCOUNT)
        assert unauthorized.value.code == GatewayCode.UNAUTHORIZED == 910
        assert unauthorized.value.name == "UNAUTHORIZED"
        with pytest.raises(GatewayError) as admin_only:
            await t1.create_asset(9, 2)
        assert admin_only.value.code == GatewayCode.ADMIN_ONLY
        with pytest.raises(GatewayError) as not_found:
            await t1.order(999_999)
        assert not_found.value.code == GatewayCode.NOT_FOUND
        with pytest.raises(GatewayError) as unknown_symbol:
            await t1.subscribe(77)
        assert unknown_symbol.value.code == GatewayCode.NOT_FOUND
        # Engine rejections are sequenced: they carry the command's seq.
        with pytest.raises(Rejected) as funds:
            await t1.limit(TRADER1_ACCOUNT, BTC_USDT, Side.BUY, Decimal("50000"), Decimal("3"))
        assert funds.value.code == RejectReason.INSUFFICIENT_FUNDS == 301 and funds.value.seq > 0
        with pytest.raises(Rejected) as tick:
            await t1.limit(TRADER1_ACCOUNT, BTC_USDT, Side.BUY, Decimal("50000.001"), Decimal("0.1"))
        assert tick.value.code == RejectReason.PRICE_NOT_ON_TICK
        # check=False returns the rejection instead of raising it.
        result = await t1.cancel_order(TRADER1_ACCOUNT, 424242, check=False)
        assert result.rejected == RejectReason.UNKNOWN_ORDER
        # The connection goes on after all of these.
        assert await t1.ping() >= 0
    finally:
        await t1.close()


async def test_every_order_type_and_amend(daemon: Daemon, admin: Client) -> None:
    await set_up_venue(admin)
    t1 = await daemon.client("trader1", reference=reference_of(admin))
    t2 = await daemon.client("trader2", reference=reference_of(admin))
    a1, a2 = TRADER1_ACCOUNT, TRADER2_ACCOUNT
    try:
        asks = [await t2.limit(a2, BTC_USDT, Side.SELL, Decimal(p), Decimal("0.1")) for p in ("100", "101", "102")]
        # Post-only that would take: 410.
        with pytest.raises(Rejected) as post_only:
            await t1.limit(a1, BTC_USDT, Side.BUY, Decimal("100"), Decimal("0.1"), tif=TimeInForce.POST_ONLY)
        assert post_only.value.code == RejectReason.POST_ONLY_WOULD_TAKE
        # FOK for more than the book holds at its price: expires unfilled.
        fok = await t1.limit(a1, BTC_USDT, Side.BUY, Decimal("100"), Decimal("0.2"), tif=TimeInForce.FOK)
        assert [e.status for e in fok.events if isinstance(e, OrderReport)][-1] == OrderStatus.EXPIRED
        # IOC takes what is there at its price and expires the rest.
        ioc = await t1.limit(a1, BTC_USDT, Side.BUY, Decimal("100"), Decimal("0.2"), tif=TimeInForce.IOC)
        last = [e for e in ioc.events if isinstance(e, OrderReport)][-1]
        assert (last.filled_qty, last.status) == (10_000_000, OrderStatus.EXPIRED)
        # A market buy with a budget of 20.2 USDT: 0.1 at 101 (10.1 USDT), then lots of 0.0001
        # at 102 while the budget pays for one more (0.099 for 10.098 USDT).
        market = await t1.market(a1, BTC_USDT, Side.BUY, Decimal("0.2"), quote_budget=Decimal("20.2"))
        last = [e for e in market.events if isinstance(e, OrderReport)][-1]
        assert last.filled_qty == 10_000_000 + 9_900_000  # 0.1 at 101 and 0.099 at 102 = 20.198
        assert last.filled_quote == 10_100_000 + 10_098_000
        # The last trade price is now 102: a sell stop at 90 waits; a buy stop-limit at 110 waits.
        stop_sell = await t2.stop_market(a2, BTC_USDT, Side.SELL, Decimal("90"), Decimal("0.05"))
        stop_buy = await t1.stop_limit(a1, BTC_USDT, Side.BUY, Decimal("110"), Decimal("111"), Decimal("0.05"))
        live = {o.order_id: o for o in (await t1.open_orders(a1)).orders}
        assert stop_buy.seq in live
        # Protocol version 2: the order report carries the stop price (USDT has scale 6).
        assert live[stop_buy.seq].stop_price == 110_000_000
        # A stop already crossed: 412.
        with pytest.raises(Rejected) as immediate:
            await t1.stop_limit(a1, BTC_USDT, Side.BUY, Decimal("100"), Decimal("100"), Decimal("0.05"))
        assert immediate.value.code == RejectReason.STOP_WOULD_TRIGGER_IMMEDIATELY
        # A stop cannot be amended (413); a resting order can: new price and total quantity.
        with pytest.raises(Rejected) as amend_stop:
            await t1.amend_order(a1, BTC_USDT, stop_buy.seq, Decimal("111"), Decimal("0.04"))
        assert amend_stop.value.code == RejectReason.AMEND_NOT_ALLOWED
        bid = await t1.limit(a1, BTC_USDT, Side.BUY, Decimal("95"), Decimal("0.1"))
        amended = await t1.amend_order(a1, BTC_USDT, bid.seq, Decimal("96"), Decimal("0.3"))
        report = next(e for e in amended.events if isinstance(e, OrderReport))
        assert (report.exec, report.price, report.qty) == (Exec.AMENDED, 96_000_000, 30_000_000)
        # Self-trade prevention: trader2 crossing its own ask with cancel-resting cancels that ask.
        own = await t2.limit(a2, BTC_USDT, Side.SELL, Decimal("97"), Decimal("0.1"))
        stp = await t2.limit(a2, BTC_USDT, Side.BUY, Decimal("97"), Decimal("0.1"), stp=Stp.CANCEL_RESTING)
        cancelled = [e for e in stp.events if isinstance(e, OrderReport) and e.order_id == own.seq]
        assert cancelled and cancelled[-1].status == OrderStatus.CANCELLED
        # The sell stop fires when a trade prints at or below 90: trader2 sells into trader1's
        # 96 bid (0.3) and then a bid at 90, and the stop-market sell is triggered.
        await t2.cancel_order(a2, stp.seq)  # its bid rests at 97; trader2's stop stays
        await t2.limit(a2, BTC_USDT, Side.SELL, Decimal("96"), Decimal("0.3"))
        await t1.limit(a1, BTC_USDT, Side.BUY, Decimal("90"), Decimal("0.2"))
        fired = await t2.limit(a2, BTC_USDT, Side.SELL, Decimal("90"), Decimal("0.1"))
        stop_reports = [e for e in fired.events if isinstance(e, OrderReport) and e.order_id == stop_sell.seq]
        assert [r.exec for r in stop_reports][:1] == [Exec.TRIGGERED]
        assert stop_reports[-1].filled_qty == 5_000_000
        assert asks[0].seq not in {o.order_id for o in (await t2.open_orders(a2)).orders}
        # cancel_all on a symbol ends every live order of trader1's, the waiting stop included.
        done = await t1.cancel_all(a1, BTC_USDT)
        ended = {e.order_id for e in done.events if isinstance(e, OrderReport)}
        assert stop_buy.seq in ended
        assert (await t1.open_orders(a1)).orders == []
    finally:
        await t1.close()
        await t2.close()


async def test_reference_data_accounts_and_funds(daemon: Daemon, admin: Client) -> None:
    await set_up_venue(admin)
    t1 = await daemon.client("trader1", reference=reference_of(admin))
    try:
        # A sub-account of trader1's tree (same owner), visible to trader1 through its grant.
        created = await admin.create_account(10, parent=TRADER1_ACCOUNT, owner=TRADER1_ACCOUNT)
        assert any(isinstance(e, AccountCreated) and e.parent == TRADER1_ACCOUNT for e in created.events)
        push = await t1.next_push(TIMEOUT_S)
        assert any(isinstance(e, AccountCreated) and e.account == 10 for e in push.events)

        moved = await t1.transfer(TRADER1_ACCOUNT, 10, USDT, Decimal("1000.5"), client_ref=1)
        transferred = next(e for e in moved.events if isinstance(e, Transferred))
        assert (transferred.from_account, transferred.to_account, transferred.amount) == (1, 10, 1_000_500_000)
        assert {t.asset: t.total for t in (await t1.subtree_totals(TRADER1_ACCOUNT)).totals} == {USDT: 100_000_000_000}
        with pytest.raises(Rejected) as duplicate:
            await t1.transfer(TRADER1_ACCOUNT, 10, USDT, Decimal("1"), client_ref=1)
        assert duplicate.value.code == RejectReason.DUPLICATE_TRANSFER_REF

        # Withdrawals: requested by the trader (held), decided by the admin.
        request = await t1.withdraw_request(10, USDT, Decimal("500"), client_ref=1)
        pending = next(e for e in request.events if isinstance(e, WithdrawalUpdated))
        assert (pending.withdrawal_id, pending.status) == (request.seq, WithdrawalStatus.PENDING)
        assert balance_of((await t1.balances(10)).balances, USDT) == (500_500_000, 500_000_000)
        approved = await admin.withdraw_approve(request.seq)
        assert next(e for e in approved.events if isinstance(e, WithdrawalUpdated)).status == WithdrawalStatus.APPROVED
        again = await t1.withdraw_request(10, USDT, Decimal("100"), client_ref=2)
        rejected = await admin.withdraw_reject(again.seq)
        assert next(e for e in rejected.events if isinstance(e, WithdrawalUpdated)).status == WithdrawalStatus.REJECTED
        assert balance_of((await t1.balances(10)).balances, USDT) == (500_500_000, 0)

        # Freeze: no placing (205); unfreeze: placing again.
        frozen = await admin.freeze_account(TRADER1_ACCOUNT)
        assert any(isinstance(e, AccountStatusChanged) for e in frozen.events)
        with pytest.raises(Rejected) as refused:
            await t1.limit(TRADER1_ACCOUNT, BTC_USDT, Side.BUY, Decimal("1"), Decimal("0.1"))
        assert refused.value.code == RejectReason.ACCOUNT_FROZEN
        await admin.unfreeze_account(TRADER1_ACCOUNT)

        # Halt and resume; an update of the symbol is pushed to every connection.
        await admin.halt_symbol(BTC_USDT)
        with pytest.raises(Rejected) as halted:
            await t1.limit(TRADER1_ACCOUNT, BTC_USDT, Side.BUY, Decimal("1"), Decimal("0.1"))
        assert halted.value.code == RejectReason.SYMBOL_HALTED
        await admin.resume_symbol(BTC_USDT)
        spec = admin.reference.symbol(BTC_USDT)
        wider = admin.symbol_spec(
            BTC_USDT,
            BTC,
            USDT,
            tick_size=spec.tick_size,
            lot_size=spec.lot_size,
            max_order_qty=Decimal("2000"),
            maker_fee_ppm=100,
        )
        await admin.update_symbol(wider)
        await t1.limit(TRADER1_ACCOUNT, BTC_USDT, Side.BUY, Decimal("1"), Decimal("0.1"))
        # trader1 learned the update from the pushes (reference data goes to everyone).
        updates: list[SymbolUpdated] = []
        while len(updates) < 3:
            p = await t1.next_push(TIMEOUT_S)
            updates += [e for e in p.events if isinstance(e, SymbolUpdated)]
        assert [u.status for u in updates] == [SymbolStatus.HALTED, SymbolStatus.TRADING, SymbolStatus.TRADING]
        assert t1.reference.symbol(BTC_USDT).max_order_qty == 200_000_000_000
        assert t1.reference.symbols[BTC_USDT].spec.maker_fee_ppm == 100

        deposit = await admin.deposit(10, BTC, 5, external_ref=99)  # an int: minor units
        assert next(e for e in deposit.events if isinstance(e, DepositCredited)).amount == 5
        assert any(isinstance(e, Ledger) for e in deposit.events)
    finally:
        await t1.close()


async def test_multi_frame_open_orders_are_joined(daemon: Daemon, admin: Client) -> None:
    await set_up_venue(admin)
    t1 = await daemon.client("trader1", reference=reference_of(admin))
    try:
        # 93 bytes per order: 800 orders need two 64 KiB frames.
        count = 800
        placed = await asyncio.gather(
            *(t1.limit(TRADER1_ACCOUNT, BTC_USDT, Side.BUY, 10_000 * (i + 1), 10_000) for i in range(count))
        )
        orders = (await t1.open_orders(TRADER1_ACCOUNT)).orders
        assert [o.order_id for o in orders] == sorted(r.seq for r in placed)
        depth = await t1.depth(BTC_USDT)
        assert len(depth.bids) == count and depth.bids[0].price == 10_000 * count
        assert len((await t1.depth(BTC_USDT, levels=5)).bids) == 5
        sub = await t1.subscribe(BTC_USDT)
        assert len(sub.book.bids()) == count
    finally:
        await t1.close()


async def test_gap_resubscribes_and_resyncs_the_book(daemon: Daemon, admin: Client) -> None:
    await set_up_venue(admin)
    t1 = await daemon.client("trader1", reference=reference_of(admin))
    try:
        sub = await t1.subscribe(BTC_USDT)
        await t1.limit(TRADER1_ACCOUNT, BTC_USDT, Side.BUY, Decimal("100"), Decimal("0.1"))
        while sub.book.md_seq != 1:
            await sub.next(TIMEOUT_S)
        # Pretend an update was lost: the next one the client sees skips md_seq 2.
        sub._on_message(DepthUpdate(BTC_USDT, 3, Side.BUY, 99_000_000, 1, 1))
        assert sub.gaps == 1 and not sub.book.in_sync
        await t1.limit(TRADER1_ACCOUNT, BTC_USDT, Side.BUY, Decimal("101"), Decimal("0.1"))
        await sub.wait_synced(TIMEOUT_S)
        while sub.book.md_seq != 2:
            await sub.next(TIMEOUT_S)
        depth = await t1.depth(BTC_USDT)
        assert sub.book.bids() == depth.bids and [lv.price for lv in depth.bids] == [101_000_000, 100_000_000]
        assert sub.resyncs == 1
    finally:
        await t1.close()


async def test_connect_timeout_and_refused_certificates(daemon: Daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A UDP port nobody answers: the handshake never completes and connect gives up in time.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(ConnectionClosed, match="timed out"):
            await Client.connect(
                "127.0.0.1",
                silent.getsockname()[1],
                ca=str(daemon.certs / "ca.pem"),
                cert=str(daemon.certs / "admin.pem"),
                key=str(daemon.certs / "admin.key"),
                timeout=0.5,
            )
        assert loop.time() - start < 5
    finally:
        silent.close()
    # The wrong CA: the client refuses the server's certificate (TLS alert 42, bad certificate).
    with pytest.raises(ConnectionClosed, match="handshake failed: unable to get local issuer"):
        await Client.connect(
            daemon.host,
            daemon.port,
            ca=str(daemon.certs / "admin.pem"),
            cert=str(daemon.certs / "admin.pem"),
            key=str(daemon.certs / "admin.key"),
            timeout=3,
        )
    # The server name the certificate does not hold is refused too.
    with pytest.raises(ConnectionClosed, match="handshake failed: hostname 'example.com' doesn't match"):
        await Client.connect(
            daemon.host,
            daemon.port,
            ca=str(daemon.certs / "ca.pem"),
            cert=str(daemon.certs / "admin.pem"),
            key=str(daemon.certs / "admin.key"),
            server_name="example.com",
            timeout=3,
        )
    # A certificate not for client authentication (the server's own) is refused by the server.
    with pytest.raises(ConnectionClosed, match="client authentication"):
        await Client.connect(
            daemon.host,
            daemon.port,
            ca=str(daemon.certs / "ca.pem"),
            cert=str(daemon.certs / "server.pem"),
            key=str(daemon.certs / "server.key"),
            timeout=3,
        )
    # The right ones work.
    client = await daemon.client("admin")
    await client.close()


async def test_close_fails_waiting_requests_and_shutdown_is_reported(daemon: Daemon) -> None:
    client = await daemon.client("admin")
    closes = []
    client.on_close = lambda c, e: closes.append(e.code)
    await client.close()
    assert client.closed and closes == [0]
    with pytest.raises(ConnectionClosed):
        await client.ping()
    # The server stopping closes the connection; the client sees it and ends its iterators.
    other = await daemon.client("trader1")
    waiting = asyncio.ensure_future(other.next_push())
    assert daemon.stop() == 0
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(waiting, TIMEOUT_S)
    assert closed.value.code == GatewayCode.SHUTTING_DOWN
    assert other.closed
    await other.close()


def write_client_certificate(certs, name: str, out_dir) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A client certificate for `name`, signed by the development CA (its key is in DATA/certs)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((certs / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_path, key_path = out_dir / f"{name}.pem", out_dir / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


async def test_an_unknown_principal_is_closed_with_910(daemon: Daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cert, key = write_client_certificate(daemon.certs, "mallory", tmp_path)
    with pytest.raises(ConnectionClosed) as closed:
        await Client.connect(daemon.host, daemon.port, ca=str(daemon.certs / "ca.pem"), cert=cert, key=key, timeout=5)
    assert closed.value.code == GatewayCode.UNAUTHORIZED
    # A configured principal with a certificate made the same way is served.
    cert, key = write_client_certificate(daemon.certs, "trader2", tmp_path)
    client = await Client.connect(daemon.host, daemon.port, ca=str(daemon.certs / "ca.pem"), cert=cert, key=key)
    assert client.principal == "trader2"
    await client.close()


async def test_reconnect_opens_a_new_connection_with_the_same_reference_data(daemon: Daemon, admin: Client) -> None:
    await admin.create_asset(BTC, 8)
    closes: list[int | None] = []
    admin.on_close = lambda c, e: closes.append(e.code)
    fresh = await admin.reconnect()
    try:
        assert admin.closed and closes == [0]
        assert fresh is not admin and not fresh.closed and fresh.principal == "admin"
        assert fresh.reference is admin.reference and fresh.reference.scale(BTC) == 8
        await fresh.create_account(5)
        assert (await fresh.balances(5)).balances == []
    finally:
        await fresh.close()


async def test_codes_reference_data_and_withdrawal_queries_of_version_2(daemon: Daemon, admin: Client) -> None:
    await set_up_venue(admin)
    created = await admin.create_asset(9, 8, code="ETH")
    assert [type(e).__name__ for e in created.events] == ["AssetCreated", "AssetCode"]
    spec = admin.symbol_spec(9, 9, USDT, tick_size=Decimal("0.01"), lot_size=Decimal("0.0001"), max_order_qty=Decimal("100"))
    await admin.create_symbol(spec, code="ETH/USDT")
    with pytest.raises(Rejected) as taken:
        await admin.create_asset(10, 2, code="ETH")
    assert taken.value.code == RejectReason.CODE_EXISTS
    with pytest.raises(Rejected) as invalid:
        await admin.create_asset(10, 2, code="eth")
    assert invalid.value.code == RejectReason.INVALID_CODE

    t1 = await daemon.client("trader1")
    try:
        assets = await t1.list_assets()
        assert [(a.asset, a.code) for a in assets.assets] == [(BTC, ""), (USDT, ""), (9, "ETH")]
        symbols = await t1.list_symbols()
        eth_usdt = next(x for x in symbols.symbols if x.code == "ETH/USDT")
        assert (eth_usdt.spec, eth_usdt.status) == (spec, SymbolStatus.TRADING)

        request = await t1.withdraw_request(TRADER1_ACCOUNT, USDT, Decimal("5"), client_ref=1)
        info = await t1.withdrawal(request.seq)
        assert (info.account, info.amount, info.status) == (TRADER1_ACCOUNT, 5_000_000, WithdrawalStatus.PENDING)
        with pytest.raises(GatewayError) as hidden:
            await (await daemon.client("trader2")).withdrawal(request.seq)
        assert hidden.value.code == GatewayCode.NOT_FOUND
    finally:
        await t1.close()
