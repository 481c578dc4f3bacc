//! Public market data (`docs/PROTOCOL.md` §12), kept on the responder side: per symbol an L2
//! book (price -> total quantity and order count, per side) and the `md_seq` counter.
//!
//! It is rebuilt from nothing but the engine's output events, the same ones the responder
//! delivers, so it never asks the processor. Pure: no I/O, no clock, no hash-map iteration
//! (orders are looked up by id in an `FxHashMap`; everything visited in order is a `BTreeMap`).
//!
//! What the events say and what they leave implicit:
//! - `Order` with `exec` New: a stop order waits off the book; any other order starts to take.
//!   `Triggered`: a stop starts to take. `Amended` with a new price: the order leaves its level
//!   and takes again at the new price; with the same price it changes size in place.
//! - A taking order that is still live when the next order starts taking, or when the
//!   command's events end, has rested: the engine emits no event for that (market, IOC and FOK
//!   orders always end with their own `Expired` or `Filled` report, so they never rest).
//! - `Trade`, `Cancelled`, `Expired` reports of a resting order carry its new remaining
//!   quantity (0 once ended), which changes its level.
//!
//! Each command's output, per symbol in ascending id: its `MarketTrade`s in trade order, then
//! one `DepthUpdate` per price level whose aggregate differs from before the command: first the
//! levels that are gone, then the others (each group bids best first, then asks best first).
//! Changes inside one command are coalesced: a snapshot is only ever taken between commands, so
//! the intermediate levels are never observable. Removals first keep a subscriber's book
//! uncrossed after every single message: until the last removal its levels are a subset of the
//! old book's, from then on a subset of the new book's.

use crate::engine::{DepthLevel, Engine, Event, ExecKind, OrderId, OrderReport, Side, SymbolId};
use crate::protocol::{DepthBook, DepthUpdate, MarketTrade, Message};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

/// One price level's aggregate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Level {
    qty: i64,
    orders: u32,
}

/// A symbol's public state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PublicBook {
    /// `md_seq` of the last message emitted for the symbol (0 before the first).
    md_seq: u64,
    bids: BTreeMap<i64, Level>,
    asks: BTreeMap<i64, Level>,
}

impl PublicBook {
    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<i64, Level> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    fn side(&self, side: Side) -> &BTreeMap<i64, Level> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn depth(&self, levels: usize) -> (Vec<DepthLevel>, Vec<DepthLevel>) {
        let view = |(&price, level): (&i64, &Level)| DepthLevel { price, qty: level.qty, orders: level.orders };
        (self.bids.iter().rev().take(levels).map(view).collect(), self.asks.iter().take(levels).map(view).collect())
    }
}

/// Where an order's remaining quantity sits (in the book, or taking during this command).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Placed {
    id: OrderId,
    symbol: SymbolId,
    side: Side,
    price: i64,
    remaining: i64,
}

impl Placed {
    fn of(r: &OrderReport) -> Placed {
        Placed { id: r.order_id, symbol: r.symbol, side: r.side, price: r.price, remaining: r.remaining_qty }
    }
}

/// Key of a changed level: iterates per symbol, bids best first, then asks best first.
type LevelKey = (SymbolId, u8, i64);

fn level_key(symbol: SymbolId, side: Side, price: i64) -> LevelKey {
    match side {
        Side::Buy => (symbol, 0, -price),
        Side::Sell => (symbol, 1, price),
    }
}

/// The public books of every symbol and their `md_seq` counters.
#[derive(Clone, Debug, Default)]
pub struct MarketData {
    books: BTreeMap<SymbolId, PublicBook>,
    /// Orders resting in a book, by id (looked up, never iterated).
    resting: FxHashMap<OrderId, Placed>,
    /// The order taking liquidity right now, within the command being applied.
    taker: Option<Placed>,
    /// Levels the command being applied changed, with their aggregate before it.
    touched: BTreeMap<LevelKey, Level>,
    /// The command's trades, numbered once the command is done.
    trades: Vec<MarketTrade>,
}

impl MarketData {
    /// The public state of a recovered engine: every symbol, its resting orders, `md_seq` 0.
    pub fn from_engine(engine: &Engine) -> MarketData {
        let mut data = MarketData::default();
        for symbol in engine.symbol_ids() {
            data.books.insert(symbol, PublicBook::default());
            for report in engine.book_orders(symbol).expect("the symbol exists") {
                data.rest(Placed::of(&report));
            }
        }
        data.touched.clear();
        data
    }

    /// Follows one command's events (`timestamp_ns` is the command's sequenced time) and
    /// appends the market data they cause to `out`: only `MarketTrade` and `DepthUpdate`.
    pub fn apply(&mut self, timestamp_ns: u64, events: &[Event], out: &mut Vec<Message>) {
        self.touched.clear();
        self.trades.clear();
        self.taker = None;
        for event in events {
            match event {
                Event::SymbolUpdated { spec, .. } => {
                    self.books.entry(spec.symbol).or_default();
                }
                Event::Trade(trade) => self.trades.push(MarketTrade::from_trade(0, timestamp_ns, trade)),
                Event::Order(report) => self.on_report(report),
                _ => {}
            }
        }
        self.finish_taker();
        self.emit(out);
    }

    /// Does the symbol exist?
    pub fn contains(&self, symbol: SymbolId) -> bool {
        self.books.contains_key(&symbol)
    }

    /// The symbol's last `md_seq` (0 before its first message); `None` for an unknown symbol.
    pub fn md_seq(&self, symbol: SymbolId) -> Option<u64> {
        Some(self.books.get(&symbol)?.md_seq)
    }

    /// Up to `levels` best levels per side: (bids best first, asks best first).
    pub fn depth(&self, symbol: SymbolId, levels: usize) -> Option<(Vec<DepthLevel>, Vec<DepthLevel>)> {
        Some(self.books.get(&symbol)?.depth(levels))
    }

    /// The whole book with its `book_seq` (one message; `encode_frames` splits it).
    pub fn snapshot(&self, symbol: SymbolId) -> Option<DepthBook> {
        let book = self.books.get(&symbol)?;
        let (bids, asks) = book.depth(usize::MAX);
        Some(DepthBook { symbol, book_seq: book.md_seq, more: false, bids, asks })
    }

    /// Number of orders resting in all books.
    pub fn resting_orders(&self) -> usize {
        self.resting.len()
    }

    fn on_report(&mut self, r: &OrderReport) {
        match r.exec {
            // A stop waits off the book until it is triggered.
            ExecKind::New if r.order_type.is_stop() => {}
            ExecKind::New | ExecKind::Triggered => self.start_taker(r),
            ExecKind::Amended => match self.resting.get(&r.order_id).copied() {
                Some(order) if order.price == r.price => {
                    // Same price: the level changes size, whatever happens to time priority.
                    self.change_level(order.symbol, order.side, order.price, r.remaining_qty - order.remaining, 0);
                    self.resting.insert(order.id, Placed { remaining: r.remaining_qty, ..order });
                }
                Some(order) => {
                    self.leave_book(order);
                    self.start_taker(r);
                }
                // Only resting orders can be amended; if the mirror missed it, follow the report.
                None => self.start_taker(r),
            },
            ExecKind::Trade | ExecKind::Cancelled | ExecKind::Expired => self.on_change(r),
        }
    }

    /// A fill or the end of an order: the taker, a resting order, or a stop that never fired.
    fn on_change(&mut self, r: &OrderReport) {
        let ended = r.status.is_terminal();
        if let Some(taker) = self.taker.as_mut().filter(|t| t.id == r.order_id) {
            if ended {
                self.taker = None;
            } else {
                taker.remaining = r.remaining_qty;
            }
            return;
        }
        let Some(order) = self.resting.get(&r.order_id).copied() else {
            return; // a stop cancelled before its trigger: it was never in the book
        };
        if ended {
            self.leave_book(order);
        } else {
            self.change_level(order.symbol, order.side, order.price, r.remaining_qty - order.remaining, 0);
            self.resting.insert(order.id, Placed { remaining: r.remaining_qty, ..order });
        }
    }

    /// Another order starts taking: the previous taker, if still live, rested before it.
    fn start_taker(&mut self, r: &OrderReport) {
        self.finish_taker();
        if !r.status.is_terminal() {
            self.taker = Some(Placed::of(r));
        }
    }

    fn finish_taker(&mut self) {
        if let Some(taker) = self.taker.take() {
            debug_assert!(taker.price > 0 && taker.remaining > 0, "only a live limit order rests: {taker:?}");
            self.rest(taker);
        }
    }

    fn rest(&mut self, order: Placed) {
        self.change_level(order.symbol, order.side, order.price, order.remaining, 1);
        self.resting.insert(order.id, order);
    }

    fn leave_book(&mut self, order: Placed) {
        self.change_level(order.symbol, order.side, order.price, -order.remaining, -1);
        self.resting.remove(&order.id);
    }

    fn change_level(&mut self, symbol: SymbolId, side: Side, price: i64, qty_delta: i64, orders_delta: i32) {
        let levels = self.books.entry(symbol).or_default().side_mut(side);
        let before = levels.get(&price).copied().unwrap_or_default();
        self.touched.entry(level_key(symbol, side, price)).or_insert(before);
        let after = Level { qty: before.qty + qty_delta, orders: before.orders.wrapping_add_signed(orders_delta) };
        if after.orders == 0 {
            debug_assert_eq!(after.qty, 0, "an empty level holds quantity at {symbol}/{side:?}/{price}");
            levels.remove(&price);
        } else {
            levels.insert(price, after);
        }
    }

    /// Numbers and appends the command's trades and net level changes, symbol by symbol.
    fn emit(&mut self, out: &mut Vec<Message>) {
        let mut symbols: Vec<SymbolId> =
            self.trades.iter().map(|t| t.symbol).chain(self.touched.keys().map(|k| k.0)).collect();
        symbols.sort_unstable();
        symbols.dedup();
        for symbol in symbols {
            let book = self.books.entry(symbol).or_default();
            for trade in self.trades.iter().filter(|t| t.symbol == symbol) {
                book.md_seq += 1;
                out.push(Message::MarketTrade(MarketTrade { md_seq: book.md_seq, ..*trade }));
            }
            for removals in [true, false] {
                for (&(_, side, key), before) in self.touched.range((symbol, 0, i64::MIN)..=(symbol, 1, i64::MAX)) {
                    let (side, price) = if side == 0 { (Side::Buy, -key) } else { (Side::Sell, key) };
                    let after = book.side(side).get(&price).copied().unwrap_or_default();
                    if after != *before && (after.orders == 0) == removals {
                        book.md_seq += 1;
                        out.push(Message::DepthUpdate(DepthUpdate {
                            symbol,
                            md_seq: book.md_seq,
                            side,
                            price,
                            qty: after.qty,
                            orders: after.orders,
                        }));
                    }
                }
            }
        }
    }
}

/// The symbol a market-data message is about (`None` for other messages).
pub fn symbol_of(message: &Message) -> Option<SymbolId> {
    match message {
        Message::MarketTrade(t) => Some(t.symbol),
        Message::DepthUpdate(u) => Some(u.symbol),
        Message::DepthSnapshot(b) | Message::Depth(b) => Some(b.symbol),
        Message::Unsubscribed { symbol } => Some(*symbol),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{AccountId, AssetId, Command, SymbolSpec};
    use crate::testkit::samples::gtc_limit;

    fn venue() -> (Engine, u64) {
        let mut engine = Engine::new();
        let setup = [
            Command::CreateAsset { asset: AssetId(1), scale: 8 },
            Command::CreateAsset { asset: AssetId(2), scale: 6 },
            Command::CreateSymbol(SymbolSpec {
                max_order_qty: 100_000_000,
                ..crate::testkit::workload::btc_usdt_spec(0, 0)
            }),
            Command::CreateAccount { account: AccountId(1), parent: AccountId::NONE, owner: 1 },
            Command::CreateAccount { account: AccountId(2), parent: AccountId::NONE, owner: 2 },
            Command::Deposit { account: AccountId(1), asset: AssetId(2), amount: 1_000_000_000_000, external_ref: 1 },
            Command::Deposit { account: AccountId(2), asset: AssetId(1), amount: 1_000_000_000, external_ref: 2 },
        ];
        let mut events = Vec::new();
        for (i, command) in setup.iter().enumerate() {
            engine.apply(i as u64 + 1, 0, command, &mut events);
        }
        (engine, setup.len() as u64 + 1)
    }

    fn limit(account: u64, side: Side, price: i64, qty: i64) -> Command {
        Command::PlaceOrder(gtc_limit(AccountId(account), SymbolId(1), side, price, qty))
    }

    #[test]
    fn a_cross_emits_the_trade_then_the_net_level_changes() {
        let (mut engine, mut seq) = venue();
        let mut data = MarketData::from_engine(&engine);
        let mut out = Vec::new();
        let mut run = |engine: &mut Engine, data: &mut MarketData, command: Command| {
            let mut events = Vec::new();
            engine.apply(seq, 77, &command, &mut events);
            seq += 1;
            out.clear();
            data.apply(77, &events, &mut out);
            out.clone()
        };
        let bid = run(&mut engine, &mut data, limit(1, Side::Buy, 30_000_000_000, 50_000));
        assert_eq!(
            bid,
            vec![Message::DepthUpdate(DepthUpdate {
                symbol: SymbolId(1),
                md_seq: 1,
                side: Side::Buy,
                price: 30_000_000_000,
                qty: 50_000,
                orders: 1
            })]
        );
        // A sell through the bid: one trade, the bid level shrinks, the rest of the sell rests.
        let sell = run(&mut engine, &mut data, limit(2, Side::Sell, 29_990_000_000, 80_000));
        assert_eq!(sell.len(), 3, "{sell:?}");
        let Message::MarketTrade(trade) = sell[0] else { panic!("{sell:?}") };
        assert_eq!(
            (trade.md_seq, trade.price, trade.qty, trade.taker_side, trade.timestamp_ns),
            (2, 30_000_000_000, 50_000, Side::Sell, 77)
        );
        assert_eq!(
            &sell[1..],
            &[
                Message::DepthUpdate(DepthUpdate {
                    symbol: SymbolId(1),
                    md_seq: 3,
                    side: Side::Buy,
                    price: 30_000_000_000,
                    qty: 0,
                    orders: 0
                }),
                Message::DepthUpdate(DepthUpdate {
                    symbol: SymbolId(1),
                    md_seq: 4,
                    side: Side::Sell,
                    price: 29_990_000_000,
                    qty: 30_000,
                    orders: 1
                }),
            ]
        );
        assert_eq!(data.depth(SymbolId(1), 10), engine.depth(SymbolId(1), 10));
        assert_eq!(data.md_seq(SymbolId(1)), Some(4));
        // A rejected command and a command that changes no book emit nothing.
        assert!(run(&mut engine, &mut data, limit(1, Side::Buy, 1, 50_000)).is_empty());
        assert!(run(
            &mut engine,
            &mut data,
            Command::CreateAccount { account: AccountId(3), parent: AccountId::NONE, owner: 3 }
        )
        .is_empty());
        assert_eq!(data.md_seq(SymbolId(1)), Some(4));
    }

    #[test]
    fn a_seeded_mirror_starts_from_the_engine_books() {
        let (mut engine, mut seq) = venue();
        let mut events = Vec::new();
        for (account, side, price) in
            [(1, Side::Buy, 29_000_000_000), (1, Side::Buy, 29_000_000_000), (2, Side::Sell, 31_000_000_000)]
        {
            engine.apply(seq, 0, &limit(account, side, price, 20_000), &mut events);
            seq += 1;
        }
        let data = MarketData::from_engine(&engine);
        assert_eq!(data.depth(SymbolId(1), usize::MAX), engine.depth(SymbolId(1), usize::MAX));
        assert_eq!(data.resting_orders(), 3);
        let snapshot = data.snapshot(SymbolId(1)).unwrap();
        assert_eq!((snapshot.book_seq, snapshot.bids[0].orders, snapshot.asks.len()), (0, 2, 1));
        assert!(data.contains(SymbolId(1)) && !data.contains(SymbolId(2)));
    }
}
