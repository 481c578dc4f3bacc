#!/usr/bin/env python3
"""A minimal market maker on seqd: quotes a bid and an ask around a mid, and on every fill of
its quotes cancels what is left and quotes again around the fill's price. Stops after
`--duration` seconds or `--max-fills` fills, cancels its orders and closes the connection.

    python examples/market_maker.py --host 127.0.0.1 --port 7400 --certs data/certs \\
        --principal trader1 --account 1 --symbol 1 --base 1:8 --quote 2:6 --tick 0.01 \\
        --mid 50000 --spread 10 --qty 0.01 --duration 30

Protocol v1 has no reference-data query, so the assets' scales and the tick come from the
command line. The last line it prints is a JSON summary (fills, quotes, cancels)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict, dataclass
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

from seqd import Client, Push, Side, SymbolSpec
from seqd.codec import Trade


@dataclass
class Config:
    account: int
    symbol: int
    mid: Decimal
    spread: Decimal
    qty: Decimal
    tick: Decimal
    duration_s: float
    max_fills: int


@dataclass
class Stats:
    fills: int = 0
    quotes: int = 0
    cancels: int = 0
    last_mid: str = ""


def on_tick(price: Decimal, tick: Decimal) -> Decimal:
    return (price / tick).to_integral_value(rounding=ROUND_FLOOR) * tick


async def quote(client: Client, cfg: Config, mid: Decimal, stats: Stats) -> None:
    half = cfg.spread / 2
    bid = on_tick(mid - half, cfg.tick)
    ask = on_tick(mid + half, cfg.tick)
    if ask <= bid:
        ask = bid + cfg.tick
    await client.limit(cfg.account, cfg.symbol, Side.BUY, bid, cfg.qty)
    await client.limit(cfg.account, cfg.symbol, Side.SELL, ask, cfg.qty)
    stats.quotes += 2
    stats.last_mid = str(mid)


def fills_of(push: Push, account: int) -> list[Trade]:
    """Trades of this push in which our account is the maker (our quote was hit)."""
    return [e for e in push.events if isinstance(e, Trade) and e.maker_account == account]


async def run(client: Client, cfg: Config) -> Stats:
    stats = Stats()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cfg.duration_s
    mid = cfg.mid
    await client.cancel_all(cfg.account, cfg.symbol)
    await quote(client, cfg, mid, stats)
    try:
        while stats.fills < cfg.max_fills:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                push = await client.next_push(timeout=left)
            except asyncio.TimeoutError:
                break
            trades = fills_of(push, cfg.account)
            if not trades:
                continue
            stats.fills += len(trades)
            mid = client.reference.price_decimal(cfg.symbol, trades[-1].price)
            # Re-quote around the last fill: cancel what is left of both quotes first.
            await client.cancel_all(cfg.account, cfg.symbol)
            stats.cancels += 1
            if stats.fills < cfg.max_fills:
                await quote(client, cfg, mid, stats)
    finally:
        if not client.closed:
            await client.cancel_all(cfg.account, cfg.symbol)
            stats.cancels += 1
    return stats


def parse_asset(text: str) -> tuple[int, int]:
    asset, scale = text.split(":")
    return int(asset), int(scale)


async def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7400)
    p.add_argument("--certs", type=Path, required=True, help="directory with ca.pem, PRINCIPAL.pem, PRINCIPAL.key")
    p.add_argument("--principal", default="trader1")
    p.add_argument("--account", type=int, required=True)
    p.add_argument("--symbol", type=int, required=True)
    p.add_argument("--base", type=parse_asset, required=True, help="base asset id:scale, e.g. 1:8")
    p.add_argument("--quote", type=parse_asset, required=True, help="quote asset id:scale, e.g. 2:6")
    p.add_argument("--tick", type=Decimal, required=True, help="the symbol's tick size, in quote units")
    p.add_argument("--mid", type=Decimal, required=True)
    p.add_argument("--spread", type=Decimal, required=True)
    p.add_argument("--qty", type=Decimal, required=True)
    p.add_argument("--duration", type=float, default=30.0, help="seconds")
    p.add_argument("--max-fills", type=int, default=1_000_000)
    p.add_argument("--connect-timeout", type=float, default=5.0)
    args = p.parse_args(argv)

    client = await Client.connect(
        args.host,
        args.port,
        ca=str(args.certs / "ca.pem"),
        cert=str(args.certs / f"{args.principal}.pem"),
        key=str(args.certs / f"{args.principal}.key"),
        timeout=args.connect_timeout,
    )
    (base, base_scale), (quote_asset, quote_scale) = args.base, args.quote
    client.reference.set_asset(base, base_scale)
    client.reference.set_asset(quote_asset, quote_scale)
    # Only base, quote and the tick matter to the conversions and the quoting.
    tick_minor = client.reference.amount(quote_asset, args.tick, "tick")
    client.reference.set_symbol(SymbolSpec(args.symbol, base, quote_asset, tick_minor, 1, 0, 0, 1))
    cfg = Config(args.account, args.symbol, args.mid, args.spread, args.qty, args.tick, args.duration, args.max_fills)
    try:
        stats = await run(client, cfg)
    finally:
        await client.close()
    print(json.dumps(asdict(stats)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
