//! A subscriber's copy of one symbol's book, kept as `docs/PROTOCOL.md` §12 says: start from a
//! `DepthSnapshot` (or the `Depth` answer to a `QueryDepth` with levels 0: a `Depth` is taken as
//! the whole book), apply each `DepthUpdate` whose `md_seq` is the last one + 1, and report a gap
//! otherwise. Pure: feed it the messages of one symbol.

use super::message::{DepthBook, Message};
use crate::engine::{DepthLevel, Side, SymbolId};
use std::collections::BTreeMap;

/// What one message did to the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BookEvent {
    /// A snapshot (or its last part) arrived: the book is now in sync at this `book_seq`.
    Synced { book_seq: u64 },
    /// The next message in sequence, applied (a trade changes nothing: its effect arrives as
    /// `DepthUpdate`s).
    Applied { md_seq: u64 },
    /// Not applied: the book waits for a snapshot, the message is older than the book, it is the
    /// first part of a split snapshot, or it is about another symbol or not market data.
    Ignored,
    /// `md_seq` skipped past the expected one: the book is stale until the next snapshot
    /// (send `Subscribe` again, or `QueryDepth` with levels 0).
    Gap { expected: u64, got: u64 },
}

/// One symbol's book as a subscriber rebuilds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L2Book {
    symbol: SymbolId,
    /// `md_seq` the book reflects; `None` while waiting for a snapshot.
    md_seq: Option<u64>,
    bids: BTreeMap<i64, (i64, u32)>,
    asks: BTreeMap<i64, (i64, u32)>,
    /// A snapshot split over frames, being reassembled.
    partial: Option<DepthBook>,
}

impl L2Book {
    /// An empty book waiting for its first snapshot.
    pub fn new(symbol: SymbolId) -> L2Book {
        L2Book { symbol, md_seq: None, bids: BTreeMap::new(), asks: BTreeMap::new(), partial: None }
    }

    pub fn symbol(&self) -> SymbolId {
        self.symbol
    }

    /// The `md_seq` the book reflects, if it is in sync.
    pub fn md_seq(&self) -> Option<u64> {
        self.md_seq
    }

    /// Applies a `DepthSnapshot`, `Depth`, `DepthUpdate` or `MarketTrade` of this symbol.
    pub fn on_message(&mut self, message: &Message) -> BookEvent {
        match message {
            Message::DepthSnapshot(book) | Message::Depth(book) if book.symbol == self.symbol => self.on_snapshot(book),
            Message::DepthUpdate(u) if u.symbol == self.symbol => {
                let event = self.next(u.md_seq);
                if matches!(event, BookEvent::Applied { .. }) {
                    let levels = match u.side {
                        Side::Buy => &mut self.bids,
                        Side::Sell => &mut self.asks,
                    };
                    if u.qty == 0 {
                        levels.remove(&u.price);
                    } else {
                        levels.insert(u.price, (u.qty, u.orders));
                    }
                }
                event
            }
            Message::MarketTrade(t) if t.symbol == self.symbol => self.next(t.md_seq),
            _ => BookEvent::Ignored,
        }
    }

    /// Forgets the book until the next snapshot (after a gap the client chose to handle itself).
    pub fn invalidate(&mut self) {
        self.md_seq = None;
        self.partial = None;
    }

    fn next(&mut self, md_seq: u64) -> BookEvent {
        match self.md_seq {
            None => BookEvent::Ignored,
            Some(last) if md_seq <= last => BookEvent::Ignored,
            Some(last) if md_seq == last + 1 => {
                self.md_seq = Some(md_seq);
                BookEvent::Applied { md_seq }
            }
            Some(last) => {
                self.invalidate();
                BookEvent::Gap { expected: last + 1, got: md_seq }
            }
        }
    }

    fn on_snapshot(&mut self, part: &DepthBook) -> BookEvent {
        let whole = match self.partial.take() {
            Some(mut book) if book.book_seq == part.book_seq => {
                book.bids.extend_from_slice(&part.bids);
                book.asks.extend_from_slice(&part.asks);
                book.more = part.more;
                book
            }
            _ => part.clone(), // the first part, or a new snapshot replacing an unfinished one
        };
        if whole.more {
            self.partial = Some(whole);
            return BookEvent::Ignored;
        }
        let level = |l: &DepthLevel| (l.price, (l.qty, l.orders));
        self.bids = whole.bids.iter().map(level).collect();
        self.asks = whole.asks.iter().map(level).collect();
        self.md_seq = Some(whole.book_seq);
        BookEvent::Synced { book_seq: whole.book_seq }
    }

    /// Up to `levels` best levels per side: (bids best first, asks best first).
    pub fn depth(&self, levels: usize) -> (Vec<DepthLevel>, Vec<DepthLevel>) {
        let view = |(&price, &(qty, orders)): (&i64, &(i64, u32))| DepthLevel { price, qty, orders };
        (self.bids.iter().rev().take(levels).map(view).collect(), self.asks.iter().take(levels).map(view).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::TradeId;
    use crate::protocol::{DepthUpdate, MarketTrade};

    fn update(md_seq: u64, side: Side, price: i64, qty: i64, orders: u32) -> Message {
        Message::DepthUpdate(DepthUpdate { symbol: SymbolId(1), md_seq, side, price, qty, orders })
    }

    fn snapshot(book_seq: u64, more: bool, bids: Vec<DepthLevel>, asks: Vec<DepthLevel>) -> Message {
        Message::DepthSnapshot(DepthBook { symbol: SymbolId(1), book_seq, more, bids, asks })
    }

    #[test]
    fn updates_apply_in_sequence_and_a_gap_waits_for_a_snapshot() {
        let mut book = L2Book::new(SymbolId(1));
        assert_eq!(book.on_message(&update(1, Side::Buy, 10, 5, 1)), BookEvent::Ignored, "no snapshot yet");
        let level = |price, qty, orders| DepthLevel { price, qty, orders };
        assert_eq!(book.on_message(&snapshot(4, true, vec![level(10, 5, 1)], vec![])), BookEvent::Ignored);
        assert_eq!(
            book.on_message(&snapshot(4, false, vec![level(9, 2, 1)], vec![level(11, 3, 2)])),
            BookEvent::Synced { book_seq: 4 }
        );
        assert_eq!(book.depth(10), (vec![level(10, 5, 1), level(9, 2, 1)], vec![level(11, 3, 2)]));
        assert_eq!(book.on_message(&update(4, Side::Buy, 10, 1, 1)), BookEvent::Ignored, "older than the book");
        let trade = Message::MarketTrade(MarketTrade {
            symbol: SymbolId(1),
            md_seq: 5,
            trade_id: TradeId(1),
            timestamp_ns: 0,
            price: 11,
            qty: 1,
            quote_qty: 11,
            taker_side: Side::Buy,
        });
        assert_eq!(book.on_message(&trade), BookEvent::Applied { md_seq: 5 });
        assert_eq!(book.on_message(&update(6, Side::Sell, 11, 0, 0)), BookEvent::Applied { md_seq: 6 });
        assert_eq!(book.depth(1), (vec![level(10, 5, 1)], vec![]));
        assert_eq!(book.on_message(&update(8, Side::Buy, 10, 1, 1)), BookEvent::Gap { expected: 7, got: 8 });
        assert_eq!(book.md_seq(), None);
        assert_eq!(book.on_message(&update(9, Side::Buy, 10, 1, 1)), BookEvent::Ignored);
        assert_eq!(book.on_message(&snapshot(9, false, vec![], vec![])), BookEvent::Synced { book_seq: 9 });
        assert_eq!(book.on_message(&update(10, Side::Buy, 7, 1, 1)), BookEvent::Applied { md_seq: 10 });
        assert_eq!(book.depth(5), (vec![level(7, 1, 1)], vec![]));
    }
}
