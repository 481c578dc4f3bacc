"""Decimal conversion by scale and the local L2 book (pure, no daemon)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from seqd import AmountError, Applied, Gap, Ignored, L2Book, ReferenceData, Side, SymbolSpec, Synced, to_minor
from seqd.codec import Depth, DepthUpdate, Level, MarketTrade
from seqd.money import UnknownReference, to_decimal


def test_decimal_amounts_convert_exactly_or_fail() -> None:
    assert to_minor(Decimal("1.5"), 8) == 150_000_000
    assert to_minor("0.000001", 6) == 1
    assert to_minor(Decimal("-2"), 0) == -2
    assert to_minor(42, 6) == 42, "an int is already minor units"
    with pytest.raises(AmountError, match="decimal places"):
        to_minor(Decimal("0.0000001"), 6)
    with pytest.raises(AmountError, match="float"):
        to_minor(1.5, 6)  # type: ignore[arg-type]
    with pytest.raises(AmountError, match="i64"):
        to_minor(Decimal("92233720368.54775808"), 8)  # i64::MAX + 1 minor units
    assert to_minor(Decimal("92233720368.54775807"), 8) == 2**63 - 1
    with pytest.raises(AmountError):
        to_minor("abc", 2)
    with pytest.raises(AmountError):
        to_minor(Decimal("NaN"), 2)
    with pytest.raises(AmountError):
        to_minor(True, 2)  # type: ignore[arg-type]
    # More digits than a default Decimal context keeps: refused, never rounded to a whole number.
    with pytest.raises(AmountError):
        to_minor(Decimal("1.00000000000000000000000000000000001"), 2)
    assert to_decimal(150_000_000, 8) == Decimal("1.5")


def test_reference_data_converts_by_the_symbols_assets() -> None:
    ref = ReferenceData()
    spec = SymbolSpec(
        1, base=1, quote=2, tick_size=10_000, lot_size=10_000, min_qty=0, min_notional=0, max_order_qty=10**11
    )
    with pytest.raises(UnknownReference, match="symbol 1"):
        ref.price(1, Decimal("1"))
    assert ref.price(1, 5) == 5, "minor units need no reference data"
    ref.set_symbol(spec)
    with pytest.raises(UnknownReference, match="asset 2"):
        ref.price(1, Decimal("1"))
    ref.set_asset(1, 8)
    ref.set_asset(2, 6)
    assert ref.price(1, Decimal("50000.25")) == 50_000_250_000
    assert ref.qty(1, Decimal("0.01")) == 1_000_000
    assert ref.price_decimal(1, 50_000_250_000) == Decimal("50000.25")


def snapshot(book_seq: int, bids: list[Level], asks: list[Level], more: bool = False) -> Depth:
    return Depth(1, book_seq, more, bids, asks, snapshot=True)


def update(md_seq: int, side: Side, price: int, qty: int, orders: int = 1) -> DepthUpdate:
    return DepthUpdate(1, md_seq, side, price, qty, orders)


def test_book_applies_updates_in_sequence_and_detects_a_gap() -> None:
    book = L2Book(1)
    assert book.on_message(update(1, Side.BUY, 100, 5)) == Ignored(), "no snapshot yet"
    assert book.on_message(snapshot(3, [Level(100, 5, 1)], [Level(105, 2, 1)])) == Synced(3)
    assert book.on_message(update(3, Side.BUY, 100, 9)) == Ignored(), "already in the snapshot"
    assert book.on_message(update(4, Side.BUY, 101, 1)) == Applied(4)
    assert book.on_message(MarketTrade(1, 5, 1, 0, 105, 2, 210, Side.BUY)) == Applied(5)
    assert book.on_message(update(6, Side.SELL, 105, 0, 0)) == Applied(6)
    assert book.bids() == [Level(101, 1, 1), Level(100, 5, 1)]
    assert book.asks() == []
    assert book.on_message(update(8, Side.SELL, 106, 1)) == Gap(expected=7, got=8)
    assert not book.in_sync
    assert book.on_message(update(9, Side.SELL, 106, 1)) == Ignored(), "stale until a snapshot"
    assert book.on_message(snapshot(9, [], [Level(106, 1, 1)])) == Synced(9)
    assert book.best_ask() == Level(106, 1, 1) and book.best_bid() is None
    assert book.on_message(DepthUpdate(2, 10, Side.BUY, 1, 1, 1)) == Ignored(), "another symbol"


def test_book_joins_a_split_snapshot() -> None:
    book = L2Book(1)
    assert book.on_message(snapshot(4, [Level(100, 1, 1)], [], more=True)) == Ignored()
    assert not book.in_sync
    assert book.on_message(snapshot(4, [Level(99, 1, 1)], [Level(101, 1, 1)])) == Synced(4)
    assert [lv.price for lv in book.bids()] == [100, 99]
    assert [lv.price for lv in book.asks()] == [101]
