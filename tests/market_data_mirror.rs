//! Differential test of the public market data (`seqd::gateway::market_data`) against the engine.
//!
//! Seeded random command streams over three symbols (one created mid-stream) go through
//! `Engine::apply`: limit orders with every time in force, market orders (buys bounded by a
//! budget), stop-limit and stop-market orders that later fire, amends of price and size, cancels
//! by id and client id, cancel-all of one or every symbol, self-trade prevention between the
//! accounts of one owner, halts, and invalid commands. Each command's events go to the mirror,
//! and after EVERY command:
//!
//! - the mirror's depth of every symbol equals `engine.depth(symbol, ..)`, level by level;
//! - a subscriber's book (`L2Book`, started from the mirror's snapshot and fed only the emitted
//!   `MarketTrade`/`DepthUpdate` messages) equals it too: `md_seq` has no gap, every update
//!   changes its level (changes within a command are coalesced), nothing else is emitted, and
//!   the book is never crossed after any single message;
//! - the emitted trades are the command's `Trade` events, in order, with the taker's side;
//! - a second mirror, rebuilt from the engine (`MarketData::from_engine`, as after a restart) at
//!   random points and then fed the same events, agrees as well.
//!
//! A second test does the same over exchange-core's amend-heavy workload (`seqd::testkit::workload`).
//! A failure names the seed and the step. `SEQD_MD_SEED=<n>` runs one seed.

use seqd::engine::*;
use seqd::gateway::market_data::MarketData;
use seqd::protocol::{BookEvent, L2Book, Message};
use seqd::testkit::samples::gtc_limit;
use seqd::testkit::workload::{exchange_core_mix, SplitMix64, WorkloadSpec};
use std::collections::BTreeMap;

const STREAMS: u64 = 300;
const COMMANDS_PER_STREAM: usize = 600;
const FUNDING: i64 = 1_000_000_000_000_000;
/// Accounts orders come from: 1 and its child 2 share owner 1 (self-trade prevention applies).
const TRADERS: [AccountId; 5] = [AccountId(1), AccountId(2), AccountId(3), AccountId(4), AccountId(5)];

fn symbol_spec(symbol: SymbolId) -> SymbolSpec {
    match symbol {
        // base scale 8, quote scale 6: one lot at one tick is 1 quote minor unit.
        SymbolId(1) => SymbolSpec {
            symbol: SymbolId(1),
            base: AssetId(1),
            quote: AssetId(2),
            tick_size: 10_000,
            lot_size: 10_000,
            min_qty: 10_000,
            min_notional: 0,
            max_order_qty: 10_000 * 50,
            maker_fee_ppm: 1_000,
            taker_fee_ppm: 2_000,
            price_band_bps: 0,
        },
        // base scale 6, quote scale 8: 5 quote minor units per tick and lot.
        SymbolId(2) => SymbolSpec {
            symbol: SymbolId(2),
            base: AssetId(2),
            quote: AssetId(1),
            tick_size: 1_000,
            lot_size: 5_000,
            min_qty: 5_000,
            min_notional: 0,
            max_order_qty: 5_000 * 50,
            maker_fee_ppm: 0,
            taker_fee_ppm: 0,
            price_band_bps: 2_000,
        },
        _ => SymbolSpec {
            symbol,
            base: AssetId(1),
            quote: AssetId(2),
            tick_size: 50_000,
            lot_size: 100_000,
            min_qty: 100_000,
            min_notional: 0,
            max_order_qty: 100_000 * 50,
            maker_fee_ppm: 0,
            taker_fee_ppm: 500,
            price_band_bps: 0,
        },
    }
}

const MID_TICKS: i64 = 1_000;

struct Rng(SplitMix64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    fn offset(&mut self, spread: i64) -> i64 {
        self.below(2 * spread as u64 + 1) as i64 - spread
    }
}

/// A live order as the stream knows it (from the events).
#[derive(Clone, Copy, Debug)]
struct Live {
    account: AccountId,
    symbol: SymbolId,
    client_order_id: u64,
    price: i64,
    qty: i64,
    filled: i64,
}

/// The command stream: a small simulator that names live orders in cancels and amends.
struct Stream {
    rng: Rng,
    symbols: Vec<SymbolId>,
    live: BTreeMap<OrderId, Live>,
    next_client_id: u64,
}

impl Stream {
    fn price(&mut self, engine: &Engine, symbol: SymbolId) -> i64 {
        let spec = symbol_spec(symbol);
        let last = engine.last_price(symbol).unwrap_or(0) / spec.tick_size;
        let around = if last == 0 { MID_TICKS } else { last };
        (around + self.rng.offset(6)).max(1) * spec.tick_size
    }

    fn order(&mut self, engine: &Engine) -> Command {
        let symbol = self.rng.pick(&self.symbols);
        let spec = symbol_spec(symbol);
        let side = if self.rng.chance(50) { Side::Buy } else { Side::Sell };
        let kind = self.rng.below(100);
        let (order_type, tif) = match kind {
            0..=54 => (OrderType::Limit, TimeInForce::Gtc),
            55..=61 => (OrderType::Limit, TimeInForce::Ioc),
            62..=67 => (OrderType::Limit, TimeInForce::Fok),
            68..=75 => (OrderType::Limit, TimeInForce::PostOnly),
            76..=83 => (OrderType::Market, TimeInForce::Ioc),
            84..=93 => (OrderType::StopLimit, if self.rng.chance(80) { TimeInForce::Gtc } else { TimeInForce::Ioc }),
            _ => (OrderType::StopMarket, TimeInForce::Ioc),
        };
        let mut price = if order_type.is_market() { 0 } else { self.price(engine, symbol) };
        let mut stop_price = 0;
        if order_type.is_stop() {
            // Behind the last price, so the stop waits and a later trade fires it.
            let last = engine.last_price(symbol).unwrap_or(0);
            let last = if last == 0 { MID_TICKS * spec.tick_size } else { last };
            let away = (1 + self.rng.below(4) as i64) * spec.tick_size;
            stop_price = match side {
                Side::Buy => last + away,
                Side::Sell => (last - away).max(spec.tick_size),
            };
            if order_type == OrderType::StopLimit {
                price = (stop_price + self.rng.offset(3) * spec.tick_size).max(spec.tick_size);
            }
        }
        let most = if self.rng.chance(10) { 60 } else { 8 };
        let lots = 1 + self.rng.below(most) as i64;
        let client_order_id = if self.rng.chance(30) {
            self.next_client_id += 1;
            self.next_client_id
        } else {
            0
        };
        let quote_budget = if order_type.is_market() && side == Side::Buy {
            (lots * spec.lot_size) as i128 * (MID_TICKS * spec.tick_size) as i128 / 10i128.pow(scale(spec.base))
        } else {
            0
        } as i64;
        Command::PlaceOrder(NewOrder {
            account: self.rng.pick(&TRADERS),
            symbol,
            client_order_id,
            side,
            order_type,
            tif,
            stp: self.rng.pick(&[StpMode::CancelResting, StpMode::CancelIncoming, StpMode::CancelBoth]),
            price,
            stop_price,
            qty: lots * spec.lot_size,
            quote_budget: quote_budget.max(1),
        })
    }

    fn pick_live(&mut self) -> Option<(OrderId, Live)> {
        if self.live.is_empty() {
            return None;
        }
        let index = self.rng.below(self.live.len() as u64) as usize;
        self.live.iter().nth(index).map(|(&id, &order)| (id, order))
    }

    fn amend(&mut self, engine: &Engine) -> Command {
        let Some((order_id, order)) = self.pick_live() else { return self.order(engine) };
        let spec = symbol_spec(order.symbol);
        let price = match self.rng.below(3) {
            0 => order.price,
            _ => (order.price + self.rng.offset(4) * spec.tick_size).max(spec.tick_size),
        };
        let lots = (order.qty / spec.lot_size + self.rng.offset(3)).max(1);
        let qty = if self.rng.chance(10) { order.filled } else { lots * spec.lot_size };
        Command::AmendOrder { account: order.account, order_id, price, qty }
    }

    fn next(&mut self, engine: &Engine, step: usize) -> Command {
        if step == COMMANDS_PER_STREAM / 3 {
            return Command::CreateSymbol(symbol_spec(SymbolId(3)));
        }
        let roll = self.rng.below(100);
        match roll {
            0..=44 => self.order(engine),
            45..=59 => self.amend(engine),
            60..=67 => match self.pick_live() {
                Some((order_id, order)) => Command::CancelOrder { account: order.account, order_id },
                None => self.order(engine),
            },
            68..=70 => match self.pick_live() {
                Some((_, order)) if order.client_order_id != 0 => {
                    Command::CancelByClientId { account: order.account, client_order_id: order.client_order_id }
                }
                _ => Command::CancelByClientId { account: self.rng.pick(&TRADERS), client_order_id: 999_999 },
            },
            71 => {
                let symbol = if self.rng.chance(50) { SymbolId::ALL } else { self.rng.pick(&self.symbols) };
                Command::CancelAll { account: self.rng.pick(&TRADERS), symbol }
            }
            72..=73 => {
                let symbol = self.rng.pick(&self.symbols);
                let status = if self.rng.chance(50) { SymbolStatus::Halted } else { SymbolStatus::Trading };
                Command::SetSymbolStatus { symbol, status }
            }
            74..=75 => {
                Command::CancelOrder { account: self.rng.pick(&TRADERS), order_id: OrderId(1 + self.rng.below(10_000)) }
            }
            76..=77 => {
                let spec = symbol_spec(self.rng.pick(&self.symbols));
                Command::UpdateSymbol(SymbolSpec { maker_fee_ppm: self.rng.below(3) as u32 * 500, ..spec })
            }
            // Far from the touch: builds depth that only cancels and amends take away.
            _ => {
                let symbol = self.rng.pick(&self.symbols);
                let spec = symbol_spec(symbol);
                let side = if self.rng.chance(50) { Side::Buy } else { Side::Sell };
                let away = (8 + self.rng.below(25) as i64) * if side == Side::Buy { -1 } else { 1 };
                // Arguments are evaluated in order: the same draws as before (account, then qty).
                Command::PlaceOrder(gtc_limit(
                    self.rng.pick(&TRADERS),
                    symbol,
                    side,
                    (MID_TICKS + away) * spec.tick_size,
                    (1 + self.rng.below(5) as i64) * spec.lot_size,
                ))
            }
        }
    }

    /// Follows the events: live orders and their sizes, symbols that appeared.
    fn observe(&mut self, events: &[Event]) {
        for event in events {
            match event {
                Event::Order(r) if r.status.is_terminal() => {
                    self.live.remove(&r.order_id);
                }
                Event::Order(r) => {
                    self.live.insert(
                        r.order_id,
                        Live {
                            account: r.account,
                            symbol: r.symbol,
                            client_order_id: r.client_order_id,
                            price: r.price,
                            qty: r.qty,
                            filled: r.filled_qty,
                        },
                    );
                }
                Event::SymbolUpdated { spec, .. } if !self.symbols.contains(&spec.symbol) => {
                    self.symbols.push(spec.symbol)
                }
                _ => {}
            }
        }
    }
}

fn scale(asset: AssetId) -> u32 {
    if asset == AssetId(1) {
        8
    } else {
        6
    }
}

fn setup() -> Vec<Command> {
    let mut commands = vec![
        Command::CreateAsset { asset: AssetId(1), scale: 8 },
        Command::CreateAsset { asset: AssetId(2), scale: 6 },
        Command::CreateSymbol(symbol_spec(SymbolId(1))),
        Command::CreateSymbol(symbol_spec(SymbolId(2))),
        Command::CreateAccount { account: AccountId(1), parent: AccountId::NONE, owner: 1 },
        Command::CreateAccount { account: AccountId(2), parent: AccountId(1), owner: 1 },
        Command::CreateAccount { account: AccountId(3), parent: AccountId::NONE, owner: 3 },
        Command::CreateAccount { account: AccountId(4), parent: AccountId::NONE, owner: 4 },
        Command::CreateAccount { account: AccountId(5), parent: AccountId::NONE, owner: 5 },
    ];
    for (i, &account) in TRADERS.iter().enumerate() {
        for asset in [1, 2] {
            commands.push(Command::Deposit {
                account,
                asset: AssetId(asset),
                amount: FUNDING,
                external_ref: i as u64 * 2 + asset as u64,
            });
        }
    }
    commands
}

/// A subscriber's books, one per symbol, fed only market-data messages.
struct Subscriber {
    books: BTreeMap<SymbolId, L2Book>,
}

impl Subscriber {
    /// Subscribes to every symbol the mirror knows that it does not follow yet.
    fn subscribe_new(&mut self, mirror: &MarketData, symbols: &[SymbolId]) -> Result<(), String> {
        for &symbol in symbols {
            if self.books.contains_key(&symbol) {
                continue;
            }
            let mut book = L2Book::new(symbol);
            let snapshot = mirror.snapshot(symbol).ok_or(format!("the mirror does not know symbol {symbol}"))?;
            let event = book.on_message(&Message::DepthSnapshot(snapshot.clone()));
            if event != (BookEvent::Synced { book_seq: snapshot.book_seq }) {
                return Err(format!("snapshot of {symbol} gave {event:?}"));
            }
            self.books.insert(symbol, book);
        }
        Ok(())
    }

    fn apply(&mut self, messages: &[Message]) -> Result<(), String> {
        for message in messages {
            let (symbol, update) = match message {
                Message::MarketTrade(t) => (t.symbol, None),
                Message::DepthUpdate(u) => (u.symbol, Some(*u)),
                other => return Err(format!("not market data: {other:?}")),
            };
            let book = self.books.get_mut(&symbol).ok_or(format!("no book for symbol {symbol}"))?;
            if let Some(u) = update {
                let (bids, asks) = book.depth(usize::MAX);
                let levels = if u.side == Side::Buy { bids } else { asks };
                let before = levels.iter().find(|l| l.price == u.price).map_or((0, 0), |l| (l.qty, l.orders));
                if before == (u.qty, u.orders) {
                    return Err(format!("an update that changes nothing: {u:?}"));
                }
                if (u.qty == 0) != (u.orders == 0) || u.qty < 0 {
                    return Err(format!("an impossible level: {u:?}"));
                }
            }
            match book.on_message(message) {
                BookEvent::Applied { .. } => {}
                other => return Err(format!("{message:?} gave {other:?}")),
            }
            let (bids, asks) = book.depth(1);
            if let (Some(bid), Some(ask)) = (bids.first(), asks.first()) {
                if bid.price >= ask.price {
                    return Err(format!("the subscriber's book is crossed after {message:?}: {bid:?} / {ask:?}"));
                }
            }
        }
        Ok(())
    }
}

/// Every check of one step; `Err` describes the first difference.
fn check_step(
    engine: &Engine,
    events: &[Event],
    messages: &[Message],
    mirror: &MarketData,
    subscriber: &mut Subscriber,
    symbols: &[SymbolId],
) -> Result<(), String> {
    let trades: Vec<&Trade> =
        events.iter().filter_map(|e| if let Event::Trade(t) = e { Some(t) } else { None }).collect();
    let published: Vec<_> =
        messages.iter().filter_map(|m| if let Message::MarketTrade(t) = m { Some(*t) } else { None }).collect();
    if trades.len() != published.len() {
        return Err(format!("{} trades but {} MarketTrade messages", trades.len(), published.len()));
    }
    for (trade, public) in trades.iter().zip(&published) {
        let expected =
            (trade.trade_id, trade.symbol, trade.price, trade.qty, trade.quote_qty, trade.maker_side.opposite());
        let got = (public.trade_id, public.symbol, public.price, public.qty, public.quote_qty, public.taker_side);
        if expected != got {
            return Err(format!("trade {expected:?} published as {got:?}"));
        }
    }
    subscriber.apply(messages)?;
    for &symbol in symbols {
        let want = engine.depth(symbol, usize::MAX).ok_or(format!("engine lacks symbol {symbol}"))?;
        let mirrored = mirror.depth(symbol, usize::MAX).ok_or(format!("mirror lacks symbol {symbol}"))?;
        if mirrored != want {
            return Err(format!("symbol {symbol}: mirror depth\n  {mirrored:?}\nengine depth\n  {want:?}"));
        }
        let book = &subscriber.books[&symbol];
        if book.depth(usize::MAX) != want {
            return Err(format!(
                "symbol {symbol}: subscriber book\n  {:?}\nengine\n  {want:?}",
                book.depth(usize::MAX)
            ));
        }
        if book.md_seq() != mirror.md_seq(symbol) {
            return Err(format!(
                "symbol {symbol}: subscriber at {:?}, mirror at {:?}",
                book.md_seq(),
                mirror.md_seq(symbol)
            ));
        }
        let (bids, asks) = mirror.depth(symbol, 3).unwrap();
        if (bids.as_slice(), asks.as_slice()) != (&want.0[..want.0.len().min(3)], &want.1[..want.1.len().min(3)]) {
            return Err(format!("symbol {symbol}: the top 3 levels differ"));
        }
    }
    Ok(())
}

#[derive(Default, Debug)]
struct Coverage {
    trades: usize,
    updates: usize,
    triggered: usize,
    amended: usize,
    stp_cancels: usize,
    max_levels: usize,
}

fn run_stream(seed: u64, coverage: &mut Coverage) -> Result<(), String> {
    let mut engine = Engine::new();
    let mut seq = 0;
    let mut events = Vec::new();
    for command in setup() {
        seq += 1;
        events.clear();
        engine.apply(seq, seq, &command, &mut events);
        if let Some(Event::Rejected { reason }) = events.first() {
            return Err(format!("setup {command:?} rejected: {reason:?}"));
        }
    }
    let mut rng = Rng(SplitMix64::new(seed));
    let mut mirror = MarketData::from_engine(&engine);
    let mut restarted = MarketData::from_engine(&engine);
    let mut stream = Stream {
        rng: Rng(SplitMix64::new(seed ^ 0xA5A5)),
        symbols: vec![SymbolId(1), SymbolId(2)],
        live: BTreeMap::new(),
        next_client_id: 0,
    };
    let mut subscriber = Subscriber { books: BTreeMap::new() };
    subscriber.subscribe_new(&mirror, &stream.symbols)?;
    let (mut messages, mut ignored) = (Vec::new(), Vec::new());
    for step in 0..COMMANDS_PER_STREAM {
        let command = stream.next(&engine, step);
        seq += 1;
        events.clear();
        engine.apply(seq, seq * 1_000, &command, &mut events);
        stream.observe(&events);
        messages.clear();
        mirror.apply(seq * 1_000, &events, &mut messages);
        ignored.clear();
        restarted.apply(seq * 1_000, &events, &mut ignored);
        let context = |e: String| format!("seed {seed} step {step} seq {seq}: {command:?}\n{e}\nevents: {events:#?}");
        subscriber.subscribe_new(&mirror, &stream.symbols).map_err(context)?;
        check_step(&engine, &events, &messages, &mirror, &mut subscriber, &stream.symbols).map_err(context)?;
        for &symbol in &stream.symbols {
            if restarted.depth(symbol, usize::MAX) != mirror.depth(symbol, usize::MAX) {
                return Err(context(format!("symbol {symbol}: the mirror rebuilt from the engine differs")));
            }
        }
        if rng.chance(3) {
            restarted = MarketData::from_engine(&engine);
        }
        if restarted.resting_orders() != mirror.resting_orders() {
            return Err(context("resting order counts differ".into()));
        }
        for event in &events {
            match event {
                Event::Order(r) if r.exec == ExecKind::Triggered => coverage.triggered += 1,
                Event::Order(r) if r.exec == ExecKind::Amended => coverage.amended += 1,
                Event::Order(r) if r.exec == ExecKind::Cancelled && matches!(command, Command::PlaceOrder(_)) => {
                    coverage.stp_cancels += 1
                }
                _ => {}
            }
        }
        coverage.trades += messages.iter().filter(|m| matches!(m, Message::MarketTrade(_))).count();
        coverage.updates += messages.iter().filter(|m| matches!(m, Message::DepthUpdate(_))).count();
        for &symbol in &stream.symbols {
            let (bids, asks) = engine.depth(symbol, usize::MAX).unwrap();
            coverage.max_levels = coverage.max_levels.max(bids.len() + asks.len());
        }
    }
    engine.check_invariants().map_err(|e| format!("seed {seed}: {e}"))?;
    Ok(())
}

#[test]
fn the_public_books_follow_the_engine_after_every_command() {
    let seeds: Vec<u64> = match std::env::var("SEQD_MD_SEED") {
        Ok(seed) => vec![seed.parse().expect("SEQD_MD_SEED is a number")],
        Err(_) => (1..=STREAMS).collect(),
    };
    let mut coverage = Coverage::default();
    for seed in seeds {
        if let Err(e) = run_stream(seed, &mut coverage) {
            panic!("{e}");
        }
    }
    // The streams must reach the cases the mirror has to infer.
    if std::env::var("SEQD_MD_SEED").is_err() {
        assert!(coverage.trades > 10_000, "{coverage:?}");
        assert!(coverage.triggered > 1_000, "{coverage:?}");
        assert!(coverage.amended > 1_000, "{coverage:?}");
        assert!(coverage.stp_cancels > 100, "{coverage:?}");
        assert!(coverage.max_levels > 25, "{coverage:?}");
    }
    println!("{coverage:?}");
}

#[test]
fn the_public_book_follows_the_exchange_core_workload() {
    let workload = exchange_core_mix(WorkloadSpec { accounts: 100, resting_orders: 500, commands: 30_000, seed: 3 });
    let mut engine = Engine::new();
    let mut events = Vec::new();
    let mut seq = 0;
    let mut mirror = MarketData::from_engine(&engine);
    let mut subscriber = Subscriber { books: BTreeMap::new() };
    let mut messages = Vec::new();
    let mut subscribed = false;
    for command in workload.setup.iter().chain(&workload.commands) {
        seq += 1;
        events.clear();
        engine.apply(seq, seq, command, &mut events);
        messages.clear();
        mirror.apply(seq, &events, &mut messages);
        if !subscribed && mirror.contains(seqd::testkit::workload::BTC_USDT) {
            subscriber.subscribe_new(&mirror, &[seqd::testkit::workload::BTC_USDT]).unwrap();
            subscribed = true;
            continue;
        }
        if subscribed {
            if let Err(e) =
                check_step(&engine, &events, &messages, &mirror, &mut subscriber, &[seqd::testkit::workload::BTC_USDT])
            {
                panic!("seq {seq}: {command:?}\n{e}");
            }
        }
    }
    let (bids, asks) = mirror.depth(seqd::testkit::workload::BTC_USDT, usize::MAX).unwrap();
    assert!(bids.len() + asks.len() > 100, "the workload keeps a deep book");
    assert_eq!(
        MarketData::from_engine(&engine).depth(seqd::testkit::workload::BTC_USDT, usize::MAX),
        Some((bids, asks))
    );
}
