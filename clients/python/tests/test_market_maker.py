"""examples/market_maker.py as a process against the real daemon: trader2 hits its quotes, the
maker re-quotes after each fill, stops after 3 fills (or 60 s) with nothing left open."""

from __future__ import annotations

import asyncio
import json
import sys
from decimal import Decimal
from pathlib import Path

from conftest import Daemon
from venue import BTC, BTC_USDT, TRADER1_ACCOUNT, TRADER2_ACCOUNT, USDT, reference_of, set_up_venue

from seqd import Client, Side, TimeInForce

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "market_maker.py"
FILLS = 3
MAKER_DURATION_S = 60


async def test_market_maker_requotes_on_fills_and_stops(daemon: Daemon, admin: Client) -> None:
    await set_up_venue(admin)
    await admin.deposit(TRADER1_ACCOUNT, BTC, Decimal("1"), external_ref=3)  # the maker sells too
    await admin.deposit(TRADER2_ACCOUNT, USDT, Decimal("100000"), external_ref=4)
    maker = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--host", daemon.host,
        "--port", str(daemon.port),
        "--certs", str(daemon.certs),
        "--principal", "trader1",
        "--account", str(TRADER1_ACCOUNT),
        "--symbol", str(BTC_USDT),
        "--base", f"{BTC}:8",
        "--quote", f"{USDT}:6",
        "--tick", "0.01",
        "--mid", "50000",
        "--spread", "10",
        "--qty", "0.01",
        "--duration", str(MAKER_DURATION_S),
        "--max-fills", str(FILLS),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    taker = await daemon.client("trader2", reference=reference_of(admin))
    try:
        # Take the maker's best quote, alternating sides, each time it has quoted again.
        for i in range(FILLS):
            side = Side.SELL if i % 2 == 0 else Side.BUY
            level = await wait_for_quote(taker, side)
            result = await taker.limit(TRADER2_ACCOUNT, BTC_USDT, side, level, Decimal("0.01"), tif=TimeInForce.IOC)
            report = [e for e in result.events if hasattr(e, "filled_qty")][-1]
            assert report.filled_qty == 1_000_000, f"fill {i} at {level}"
        out, _ = await asyncio.wait_for(maker.communicate(), MAKER_DURATION_S + 30)
    finally:
        if maker.returncode is None:
            maker.kill()
            await maker.wait()
        await taker.close()
    assert maker.returncode == 0
    stats = json.loads(out.decode().strip().splitlines()[-1])
    assert stats["fills"] == FILLS
    assert stats["quotes"] == 2 * FILLS, "a bid and an ask at the start and after each fill but the last"
    # It stopped cleanly: nothing of the maker's left open, and the book is empty.
    assert (await admin.open_orders(TRADER1_ACCOUNT)).orders == []
    depth = await admin.depth(BTC_USDT)
    assert depth.bids == [] and depth.asks == []


async def wait_for_quote(taker: Client, side: Side) -> Decimal:
    """The price of the maker's quote the taker's `side` would hit, once both quotes are up."""
    for _ in range(200):
        depth = await taker.depth(BTC_USDT)
        if depth.bids and depth.asks:
            level = depth.bids[0] if side == Side.SELL else depth.asks[0]
            return taker.reference.price_decimal(BTC_USDT, level.price)
        await asyncio.sleep(0.05)
    raise AssertionError("the market maker did not quote both sides")
