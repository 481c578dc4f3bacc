"""A subscriber's copy of one symbol's L2 book (PROTOCOL.md §12): start from a snapshot, apply
each `DepthUpdate` whose `md_seq` is the last one + 1, report a gap otherwise. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from .codec import Depth, DepthUpdate, Level, MarketTrade, Side


@dataclass(frozen=True)
class Synced:
    """A whole snapshot arrived: the book is in sync at `book_seq`."""

    book_seq: int


@dataclass(frozen=True)
class Applied:
    md_seq: int


@dataclass(frozen=True)
class Ignored:
    """Waiting for a snapshot, older than the book, a first part of a split snapshot, or another
    symbol's message."""


@dataclass(frozen=True)
class Gap:
    """`md_seq` skipped past the expected one: the book is stale until the next snapshot."""

    expected: int
    got: int


BookEvent = Union[Synced, Applied, Ignored, Gap]


class L2Book:
    def __init__(self, symbol: int) -> None:
        self.symbol = symbol
        #: The `md_seq` the book reflects; None while it waits for a snapshot.
        self.md_seq: int | None = None
        self._bids: dict[int, tuple[int, int]] = {}
        self._asks: dict[int, tuple[int, int]] = {}
        self._partial: tuple[int, list[Level], list[Level]] | None = None

    @property
    def in_sync(self) -> bool:
        return self.md_seq is not None

    def bids(self) -> list[Level]:
        """Bid levels, best (highest) first."""
        return [Level(p, q, n) for p, (q, n) in sorted(self._bids.items(), reverse=True)]

    def asks(self) -> list[Level]:
        """Ask levels, best (lowest) first."""
        return [Level(p, q, n) for p, (q, n) in sorted(self._asks.items())]

    def best_bid(self) -> Level | None:
        if not self._bids:
            return None
        p = max(self._bids)
        return Level(p, *self._bids[p])

    def best_ask(self) -> Level | None:
        if not self._asks:
            return None
        p = min(self._asks)
        return Level(p, *self._asks[p])

    def invalidate(self) -> None:
        """Forget the book until the next snapshot."""
        self.md_seq = None
        self._partial = None

    def on_message(self, message: Union[Depth, DepthUpdate, MarketTrade]) -> BookEvent:
        if message.symbol != self.symbol:
            return Ignored()
        if isinstance(message, Depth):
            return self._on_snapshot(message)
        if isinstance(message, DepthUpdate):
            event = self._next(message.md_seq)
            if isinstance(event, Applied):
                levels = self._bids if message.side == Side.BUY else self._asks
                if message.qty == 0:
                    levels.pop(message.price, None)
                else:
                    levels[message.price] = (message.qty, message.orders)
            return event
        return self._next(message.md_seq)  # a trade moves md_seq; its levels come as updates

    def _next(self, md_seq: int) -> BookEvent:
        last = self.md_seq
        if last is None or md_seq <= last:
            return Ignored()
        if md_seq == last + 1:
            self.md_seq = md_seq
            return Applied(md_seq)
        self.invalidate()
        return Gap(last + 1, md_seq)

    def _on_snapshot(self, part: Depth) -> BookEvent:
        if self._partial is not None and self._partial[0] == part.book_seq:
            book_seq, bids, asks = self._partial
            bids = bids + part.bids
            asks = asks + part.asks
        else:  # a first part, or a new snapshot replacing an unfinished one
            book_seq, bids, asks = part.book_seq, list(part.bids), list(part.asks)
        if part.more:
            self._partial = (book_seq, bids, asks)
            return Ignored()
        self._partial = None
        self._bids = {lv.price: (lv.qty, lv.orders) for lv in bids}
        self._asks = {lv.price: (lv.qty, lv.orders) for lv in asks}
        self.md_seq = book_seq
        return Synced(book_seq)
