"""A small BTC/USDT venue for the integration tests (as tests/common/daemon.rs sets one up):
BTC (asset 1, scale 8), USDT (asset 2, scale 6), BTC/USDT (symbol 1, tick 0.01 USDT, lot
0.0001 BTC), account 1 (trader1's) with 100 000 USDT and account 2 (trader2's) with 10 BTC."""

from __future__ import annotations

from decimal import Decimal

from seqd import Client, ReferenceData

BTC = 1
USDT = 2
BTC_USDT = 1
TRADER1_ACCOUNT = 1
TRADER2_ACCOUNT = 2


async def set_up_venue(admin: Client, taker_fee_ppm: int = 0) -> None:
    await admin.create_asset(BTC, 8)
    await admin.create_asset(USDT, 6)
    # The scales were learned from the AssetCreated events: the spec can be given in decimals.
    spec = admin.symbol_spec(
        BTC_USDT,
        BTC,
        USDT,
        tick_size=Decimal("0.01"),
        lot_size=Decimal("0.0001"),
        min_qty=Decimal("0.0001"),
        max_order_qty=Decimal("1000"),
        taker_fee_ppm=taker_fee_ppm,
    )
    await admin.create_symbol(spec)
    await admin.create_account(TRADER1_ACCOUNT)
    await admin.create_account(TRADER2_ACCOUNT)
    await admin.deposit(TRADER1_ACCOUNT, USDT, Decimal("100000"), external_ref=1)
    await admin.deposit(TRADER2_ACCOUNT, BTC, Decimal("10"), external_ref=2)


def reference_of(admin: Client) -> ReferenceData:
    """What a client connected after the set-up must be told (protocol v1 cannot query it)."""
    ref = ReferenceData()
    for asset, scale in admin.reference.asset_scales.items():
        ref.set_asset(asset, scale)
    for info in admin.reference.symbols.values():
        ref.set_symbol(info.spec, info.status)
    return ref
