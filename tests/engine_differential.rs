//! Differential test of the matcher against a deliberately naive reference.
//!
//! The reference keeps one symbol's resting orders in two sorted `Vec`s and matches by
//! price-time priority with the plainest loop possible. It knows limit orders (GTC, IOC, FOK,
//! post-only), market orders (a buy limited by its quote budget), cancels and amends. Fees are 0,
//! every order comes from a fresh account of its own owner (so self-trade prevention never
//! interferes), funded far beyond what it can spend, so the engine's risk checks never fire.
//!
//! Hundreds of seeded streams go through both; after every command the accept/reject verdict, the
//! trades (price, qty, maker order, taker order, maker side), the depth per price level and every
//! live order's remaining quantity must agree. A failure names the seed and the first mismatching
//! step. `SEQD_DIFF_SEED=<n>` runs a single seed.

use seqd::engine::*;
use seqd::storage::disk::SplitMix64;

const STREAMS: u64 = 400;
const COMMANDS_PER_STREAM: usize = 300;
const BASE: AssetId = AssetId(1);
const QUOTE: AssetId = AssetId(2);
const SYMBOL: SymbolId = SymbolId(1);
const MID_TICKS: i64 = 1_000;
const FUNDING: i64 = 1_000_000_000_000_000;

/// The streams' generator: seqd's SplitMix64, fixed forever, so a seed names the same stream.
struct Rng(SplitMix64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One symbol's grid: base asset scale, tick (quote minor units), lot (base minor units).
#[derive(Clone, Copy, Debug)]
struct Grid {
    base_scale: u8,
    tick: i64,
    lot: i64,
}

impl Grid {
    /// Quote minor units for one lot at one tick.
    fn quote_per_tick_lot(&self) -> i64 {
        let tick_lot = self.tick as i128 * self.lot as i128;
        let unit = 10i128.pow(self.base_scale as u32);
        assert_eq!(tick_lot % unit, 0);
        (tick_lot / unit) as i64
    }
}

const GRIDS: [Grid; 4] = [
    Grid { base_scale: 8, tick: 10_000, lot: 10_000 }, // 1 per tick-lot
    Grid { base_scale: 8, tick: 20_000, lot: 15_000 }, // 3
    Grid { base_scale: 0, tick: 5, lot: 3 },           // 15
    Grid { base_scale: 6, tick: 1_000, lot: 2_000 },   // 2
];

// ---------------------------------------------------------------------------------------------
// The reference matcher (ticks and lots throughout)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct RefOrder {
    id: u64,
    side: Side,
    price: i64,
    qty: i64,
    filled: i64,
    tif: TimeInForce,
    /// Time priority: the sequence of the command that (re)queued it.
    time: u64,
}

impl RefOrder {
    fn remaining(&self) -> i64 {
        self.qty - self.filled
    }
}

/// (price ticks, lots, maker order, taker order, maker side)
type RefTrade = (i64, i64, u64, u64, Side);

#[derive(Default)]
struct Reference {
    /// Best first: highest price, then earliest time.
    bids: Vec<RefOrder>,
    /// Best first: lowest price, then earliest time.
    asks: Vec<RefOrder>,
    qptl: i64,
}

impl Reference {
    fn sort(&mut self) {
        self.bids.sort_by(|a, b| b.price.cmp(&a.price).then(a.time.cmp(&b.time)));
        self.asks.sort_by(|a, b| a.price.cmp(&b.price).then(a.time.cmp(&b.time)));
    }

    fn opposite(&mut self, side: Side) -> &mut Vec<RefOrder> {
        match side {
            Side::Buy => &mut self.asks,
            Side::Sell => &mut self.bids,
        }
    }

    fn crosses(side: Side, limit: Option<i64>, maker_price: i64) -> bool {
        match (side, limit) {
            (_, None) => true,
            (Side::Buy, Some(l)) => maker_price <= l,
            (Side::Sell, Some(l)) => maker_price >= l,
        }
    }

    /// Lots available to a taker at its limit.
    fn available(&mut self, side: Side, limit: Option<i64>) -> i64 {
        self.opposite(side).iter().filter(|m| Self::crosses(side, limit, m.price)).map(|m| m.remaining()).sum()
    }

    /// Matches a taker; returns its unfilled lots.
    fn take(
        &mut self,
        taker: u64,
        side: Side,
        limit: Option<i64>,
        mut lots: i64,
        mut budget: Option<i64>,
        trades: &mut Vec<RefTrade>,
    ) -> i64 {
        let qptl = self.qptl;
        let book = self.opposite(side);
        while lots > 0 && !book.is_empty() {
            let maker = &mut book[0];
            if !Self::crosses(side, limit, maker.price) {
                break;
            }
            let mut n = lots.min(maker.remaining());
            if let Some(b) = budget {
                n = n.min(b / (maker.price * qptl));
                if n == 0 {
                    break;
                }
                budget = Some(b - n * maker.price * qptl);
            }
            trades.push((maker.price, n, maker.id, taker, maker.side));
            maker.filled += n;
            lots -= n;
            if maker.remaining() == 0 {
                book.remove(0);
            }
        }
        lots
    }

    fn rest(&mut self, order: RefOrder) {
        match order.side {
            Side::Buy => self.bids.push(order),
            Side::Sell => self.asks.push(order),
        }
        self.sort();
    }

    /// Applies a limit order; `None` if it must be rejected.
    fn limit(
        &mut self,
        seq: u64,
        side: Side,
        tif: TimeInForce,
        price: i64,
        lots: i64,
        trades: &mut Vec<RefTrade>,
    ) -> Option<()> {
        match tif {
            TimeInForce::PostOnly if self.available(side, Some(price)) > 0 => return None,
            TimeInForce::Fok if self.available(side, Some(price)) < lots => return Some(()),
            _ => {}
        }
        let left = self.take(seq, side, Some(price), lots, None, trades);
        if left > 0 && matches!(tif, TimeInForce::Gtc | TimeInForce::PostOnly) {
            self.rest(RefOrder { id: seq, side, price, qty: lots, filled: lots - left, tif, time: seq });
        }
        Some(())
    }

    fn find(&self, id: u64) -> Option<RefOrder> {
        self.bids.iter().chain(&self.asks).find(|o| o.id == id).copied()
    }

    fn remove(&mut self, id: u64) -> Option<RefOrder> {
        for book in [&mut self.bids, &mut self.asks] {
            if let Some(pos) = book.iter().position(|o| o.id == id) {
                return Some(book.remove(pos));
            }
        }
        None
    }

    /// Applies an amend; `None` if it must be rejected.
    fn amend(&mut self, seq: u64, id: u64, price: i64, qty: i64, trades: &mut Vec<RefTrade>) -> Option<()> {
        let o = self.find(id)?;
        if qty <= o.filled {
            return None;
        }
        if price != o.price && o.tif == TimeInForce::PostOnly && self.available(o.side, Some(price)) > 0 {
            return None;
        }
        if price == o.price && qty <= o.qty {
            for book in [&mut self.bids, &mut self.asks] {
                if let Some(x) = book.iter_mut().find(|x| x.id == id) {
                    x.qty = qty;
                }
            }
            return Some(());
        }
        self.remove(id);
        let left = self.take(id, o.side, Some(price), qty - o.filled, None, trades);
        if left > 0 {
            self.rest(RefOrder { price, qty, filled: qty - left, time: seq, ..o });
        }
        Some(())
    }

    /// (price ticks, lots, orders) per level, best first.
    fn depth(&self, side: Side) -> Vec<(i64, i64, u32)> {
        let book = if side == Side::Buy { &self.bids } else { &self.asks };
        let mut levels: Vec<(i64, i64, u32)> = Vec::new();
        for o in book {
            match levels.last_mut() {
                Some(l) if l.0 == o.price => {
                    l.1 += o.remaining();
                    l.2 += 1;
                }
                _ => levels.push((o.price, o.remaining(), 1)),
            }
        }
        levels
    }
}

// ---------------------------------------------------------------------------------------------
// Driving both
// ---------------------------------------------------------------------------------------------

fn setup(engine: &mut Engine, grid: Grid, seq: &mut u64) {
    let setup_commands = vec![
        Command::CreateAsset { asset: BASE, scale: grid.base_scale },
        Command::CreateAsset { asset: QUOTE, scale: 6 },
        Command::CreateSymbol(SymbolSpec {
            symbol: SYMBOL,
            base: BASE,
            quote: QUOTE,
            tick_size: grid.tick,
            lot_size: grid.lot,
            min_qty: grid.lot,
            min_notional: 0,
            max_order_qty: grid.lot * 1_000_000,
            maker_fee_ppm: 0,
            taker_fee_ppm: 0,
            price_band_bps: 0,
        }),
    ];
    let mut out = Vec::new();
    for cmd in setup_commands {
        *seq += 1;
        out.clear();
        engine.apply(*seq, *seq, &cmd, &mut out);
        assert!(!out.iter().any(|e| matches!(e, Event::Rejected { .. })), "setup rejected {cmd:?}: {out:?}");
    }
}

/// A fresh funded account with an owner of its own, for the next order: no two orders of the
/// stream can ever be a self-trade.
fn fresh_account(engine: &mut Engine, seq: &mut u64) -> Result<AccountId, String> {
    let account = *seq + 1;
    let mut out = Vec::new();
    for cmd in [
        Command::CreateAccount { account: AccountId(account), parent: AccountId::NONE, owner: account },
        Command::Deposit { account: AccountId(account), asset: BASE, amount: FUNDING, external_ref: account * 2 },
        Command::Deposit { account: AccountId(account), asset: QUOTE, amount: FUNDING, external_ref: account * 2 + 1 },
    ] {
        *seq += 1;
        out.clear();
        engine.apply(*seq, *seq, &cmd, &mut out);
        if out.iter().any(|e| matches!(e, Event::Rejected { .. })) {
            return Err(format!("funding rejected {cmd:?}: {out:?}"));
        }
    }
    Ok(AccountId(account))
}

fn engine_trades(events: &[Event], grid: Grid) -> Vec<RefTrade> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Trade(t) => {
                assert_eq!(t.price % grid.tick, 0, "trade price off tick");
                assert_eq!(t.qty % grid.lot, 0, "trade qty off lot");
                Some((t.price / grid.tick, t.qty / grid.lot, t.maker_order.0, t.taker_order.0, t.maker_side))
            }
            _ => None,
        })
        .collect()
}

/// (price, qty, orders) per level, bids then asks.
type DepthSides = (Vec<(i64, i64, u32)>, Vec<(i64, i64, u32)>);

fn engine_depth(engine: &Engine, grid: Grid) -> DepthSides {
    let (bids, asks) = engine.depth(SYMBOL, usize::MAX).expect("symbol exists");
    let conv = |levels: Vec<DepthLevel>| {
        levels.into_iter().map(|l| (l.price / grid.tick, l.qty / grid.lot, l.orders)).collect()
    };
    (conv(bids), conv(asks))
}

/// Live orders as (id, side, price ticks, remaining lots), sorted by id.
fn engine_live(engine: &Engine, grid: Grid, accounts: &[AccountId]) -> Vec<(u64, Side, i64, i64)> {
    let mut v: Vec<_> = accounts
        .iter()
        .flat_map(|&a| engine.open_orders(a).expect("account exists"))
        .map(|r| (r.order_id.0, r.side, r.price / grid.tick, r.remaining_qty / grid.lot))
        .collect();
    v.sort_by_key(|x| x.0);
    v
}

fn reference_live(reference: &Reference) -> Vec<(u64, Side, i64, i64)> {
    let mut v: Vec<_> =
        reference.bids.iter().chain(&reference.asks).map(|o| (o.id, o.side, o.price, o.remaining())).collect();
    v.sort_by_key(|x| x.0);
    v
}

/// Runs one seeded stream; on the first disagreement returns the step and what differed.
fn run_stream(seed: u64) -> Result<usize, String> {
    let mut rng = Rng(SplitMix64::new(seed ^ 0x5EED_0000_D1FF));
    let grid = GRIDS[rng.below(GRIDS.len() as u64) as usize];
    let mut engine = Engine::new();
    let mut seq = 0u64;
    setup(&mut engine, grid, &mut seq);
    let mut reference = Reference { qptl: grid.quote_per_tick_lot(), ..Reference::default() };
    // Every order placed, with its account.
    let mut placed: Vec<(OrderId, AccountId)> = Vec::new();
    let mut accounts: Vec<AccountId> = Vec::new();
    let mut events = Vec::new();
    let mut trade_count = 0;
    // Each stream has its own spread of prices, so some streams are tight (many trades) and some
    // wide (deep books).
    let spread = rng.range(2, 12);

    for step in 0..COMMANDS_PER_STREAM {
        let side = if rng.chance(50) { Side::Buy } else { Side::Sell };
        let price = MID_TICKS + rng.range(-spread, spread);
        let lots = if rng.chance(85) { rng.range(1, 10) } else { rng.range(11, 60) };
        let mut expected_trades = Vec::new();
        let roll = rng.below(100);
        let order_account = |engine: &mut Engine, seq: &mut u64, accounts: &mut Vec<AccountId>| {
            let a = fresh_account(engine, seq)?;
            accounts.push(a);
            *seq += 1;
            Ok::<AccountId, String>(a)
        };
        let owner_of = |id: OrderId| placed.iter().find(|p| p.0 == id).map_or(AccountId(1), |p| p.1);
        let (cmd, accepted) = if roll < 55 {
            let account = order_account(&mut engine, &mut seq, &mut accounts)?;
            let tif = match rng.below(10) {
                0..=5 => TimeInForce::Gtc,
                6 | 7 => TimeInForce::Ioc,
                8 => TimeInForce::Fok,
                _ => TimeInForce::PostOnly,
            };
            let cmd = Command::PlaceOrder(NewOrder {
                account,
                symbol: SYMBOL,
                client_order_id: 0,
                side,
                order_type: OrderType::Limit,
                tif,
                stp: StpMode::CancelResting,
                price: price * grid.tick,
                stop_price: 0,
                qty: lots * grid.lot,
                quote_budget: 0,
            });
            (cmd, reference.limit(seq, side, tif, price, lots, &mut expected_trades).is_some())
        } else if roll < 67 {
            let account = order_account(&mut engine, &mut seq, &mut accounts)?;
            // A market buy spends at most its budget: generous, some random part of its cost,
            // or exactly the cost of a few lots at the best ask (the boundary of affordability).
            let budget = if side == Side::Buy {
                match rng.below(4) {
                    0 | 1 => FUNDING / 10,
                    2 => 1 + rng.range(0, lots * (MID_TICKS + spread) * reference.qptl),
                    _ => {
                        let best = reference.asks.first().map_or(MID_TICKS, |o| o.price);
                        rng.range(1, lots) * best * reference.qptl
                    }
                }
            } else {
                0
            };
            let cmd = Command::PlaceOrder(NewOrder {
                account,
                symbol: SYMBOL,
                client_order_id: 0,
                side,
                order_type: OrderType::Market,
                tif: TimeInForce::Ioc,
                stp: StpMode::CancelResting,
                price: 0,
                stop_price: 0,
                qty: lots * grid.lot,
                quote_budget: budget,
            });
            let budget = (side == Side::Buy).then_some(budget);
            reference.take(seq, side, None, lots, budget, &mut expected_trades);
            (cmd, true)
        } else if roll < 87 {
            seq += 1;
            // Cancel: usually a live order by its owner, sometimes an ended or unknown one.
            let live = reference_live(&reference);
            let order_id = if !live.is_empty() && rng.chance(80) {
                OrderId(live[rng.below(live.len() as u64) as usize].0)
            } else if !placed.is_empty() && rng.chance(80) {
                placed[rng.below(placed.len() as u64) as usize].0
            } else {
                OrderId(seq + 1_000)
            };
            let owner = owner_of(order_id);
            let accepted = reference.remove(order_id.0).is_some();
            (Command::CancelOrder { account: owner, order_id }, accepted)
        } else {
            // Amend a live order: keep or change the price, shrink, keep or grow the quantity.
            seq += 1;
            let live = reference_live(&reference);
            if live.is_empty() {
                continue_with_noop(&mut engine, seq, &mut events)?;
                continue;
            }
            let id = live[rng.below(live.len() as u64) as usize].0;
            let o = reference.find(id).unwrap();
            let new_price = if rng.chance(50) { o.price } else { price };
            let new_qty = match rng.below(4) {
                0 => o.qty - 1,
                1 => o.qty,
                2 => o.qty + rng.range(1, 5),
                _ => rng.range(1, 15),
            }
            .max(1);
            let owner = owner_of(OrderId(id));
            let accepted = reference.amend(seq, id, new_price, new_qty, &mut expected_trades).is_some();
            (
                Command::AmendOrder {
                    account: owner,
                    order_id: OrderId(id),
                    price: new_price * grid.tick,
                    qty: new_qty * grid.lot,
                },
                accepted,
            )
        };

        events.clear();
        engine.apply(seq, seq, &cmd, &mut events);
        let fail = |what: String| format!("step {step} (seq {seq}), command {cmd:?}: {what}\nevents: {events:?}");
        let rejected = matches!(events.as_slice(), [Event::Rejected { .. }]);
        if rejected == accepted {
            return Err(fail(format!("reference {} it", if accepted { "accepts" } else { "rejects" })));
        }
        let got = engine_trades(&events, grid);
        if got != expected_trades {
            return Err(fail(format!("trades differ:\n engine    {got:?}\n reference {expected_trades:?}")));
        }
        trade_count += got.len();
        if !rejected {
            if let Command::PlaceOrder(o) = cmd {
                placed.push((OrderId(seq), o.account));
            }
        }
        let (bids, asks) = engine_depth(&engine, grid);
        let (ref_bids, ref_asks) = (reference.depth(Side::Buy), reference.depth(Side::Sell));
        if bids != ref_bids || asks != ref_asks {
            return Err(fail(format!(
                "books differ:\n engine    bids {bids:?} asks {asks:?}\n reference bids {ref_bids:?} asks {ref_asks:?}"
            )));
        }
        let (live, ref_live) = (engine_live(&engine, grid, &accounts), reference_live(&reference));
        if live != ref_live {
            return Err(fail(format!("live orders differ:\n engine    {live:?}\n reference {ref_live:?}")));
        }
        engine.check_invariants().map_err(|e| fail(e.to_string()))?;
    }
    Ok(trade_count)
}

/// Keeps sequences dense when a step has nothing to do: a command that is always rejected.
fn continue_with_noop(engine: &mut Engine, seq: u64, events: &mut Vec<Event>) -> Result<(), String> {
    events.clear();
    engine.apply(seq, seq, &Command::CancelOrder { account: AccountId::NONE, order_id: OrderId(u64::MAX) }, events);
    if events.as_slice() != [Event::Rejected { reason: RejectReason::UnknownAccount }] {
        return Err(format!("seq {seq}: a cancel for no account was not rejected: {events:?}"));
    }
    Ok(())
}

#[test]
fn engine_matches_naive_reference() {
    let seeds: Vec<u64> = match std::env::var("SEQD_DIFF_SEED") {
        Ok(s) => vec![s.parse().expect("SEQD_DIFF_SEED is a number")],
        Err(_) => (0..STREAMS).collect(),
    };
    let mut trades = 0;
    for &seed in &seeds {
        match run_stream(seed) {
            Ok(n) => trades += n,
            Err(e) => panic!("differential mismatch with seed {seed} (rerun with SEQD_DIFF_SEED={seed}):\n{e}"),
        }
    }
    eprintln!("{} streams x {COMMANDS_PER_STREAM} commands agreed; {trades} trades compared", seeds.len());
    // The comparison means little if the streams do not trade.
    assert!(trades as u64 >= seeds.len() as u64 * 20, "only {trades} trades in {} streams", seeds.len());
}

/// The reference itself, on a hand-checked case, so a broken reference cannot agree with a
/// broken engine by accident.
#[test]
fn reference_matches_by_price_then_time() {
    let mut r = Reference { qptl: 1, ..Reference::default() };
    let mut t = Vec::new();
    r.limit(1, Side::Sell, TimeInForce::Gtc, 101, 5, &mut t).unwrap();
    r.limit(2, Side::Sell, TimeInForce::Gtc, 100, 2, &mut t).unwrap();
    r.limit(3, Side::Sell, TimeInForce::Gtc, 100, 3, &mut t).unwrap();
    r.limit(4, Side::Buy, TimeInForce::Gtc, 99, 1, &mut t).unwrap();
    assert!(t.is_empty());
    assert!(r.limit(5, Side::Buy, TimeInForce::PostOnly, 100, 1, &mut t).is_none());
    r.limit(6, Side::Buy, TimeInForce::Fok, 100, 6, &mut t).unwrap(); // only 5 at <= 100: no fill
    assert!(t.is_empty());
    r.limit(7, Side::Buy, TimeInForce::Ioc, 101, 6, &mut t).unwrap();
    assert_eq!(t, vec![(100, 2, 2, 7, Side::Sell), (100, 3, 3, 7, Side::Sell), (101, 1, 1, 7, Side::Sell)]);
    t.clear();
    // Amend: shrinking keeps priority, re-pricing loses it.
    r.limit(8, Side::Sell, TimeInForce::Gtc, 102, 2, &mut t).unwrap();
    r.limit(9, Side::Sell, TimeInForce::Gtc, 102, 2, &mut t).unwrap();
    r.amend(10, 8, 102, 1, &mut t).unwrap();
    r.amend(11, 1, 102, 4, &mut t).unwrap(); // 1 now queues behind 8 and 9
    let budget = 102 * 3 + 50; // a market buy that can afford only 3 lots at 102
    r.take(12, Side::Buy, None, 10, Some(budget), &mut t);
    assert_eq!(t, vec![(102, 1, 8, 12, Side::Sell), (102, 2, 9, 12, Side::Sell)]);
    assert_eq!(r.depth(Side::Sell), vec![(102, 3, 1)]);
    assert_eq!(r.depth(Side::Buy), vec![(99, 1, 1)]);
    assert!(r.amend(13, 1, 102, 0, &mut t).is_none());
}
