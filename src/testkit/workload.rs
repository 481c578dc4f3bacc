//! Seeded command streams for benchmarks and tests.
//!
//! `exchange_core_mix` reproduces exchange-core's published benchmark workload: 1,000 accounts,
//! one symbol, a book pre-filled with about 1,000 resting orders, then 82% move (amend price),
//! 9% GTC, 3% IOC and 6% cancel. The generator runs the real engine as its simulator so that
//! every move and cancel names an order that is live at that point, as in exchange-core.

use crate::engine::*;
use crate::testkit::samples::gtc_limit;
use rustc_hash::FxHashMap;

/// The seeded generator of every workload; it lives with the simulated disk, whose crash
/// images need it in production builds too.
pub use crate::storage::disk::SplitMix64;

pub const BTC: AssetId = AssetId(1);
pub const USDT: AssetId = AssetId(2);
pub const BTC_USDT: SymbolId = SymbolId(1);
/// 0.01 USDT (scale 6) per BTC.
pub const TICK: i64 = 10_000;
/// 0.0001 BTC (scale 8).
pub const LOT: i64 = 10_000;
/// 30,000 USDT per BTC, in ticks.
pub const MID_TICKS: i64 = 3_000_000;

#[derive(Clone, Copy, Debug)]
pub struct WorkloadSpec {
    pub accounts: u64,
    pub resting_orders: usize,
    pub commands: usize,
    pub seed: u64,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec { accounts: 1_000, resting_orders: 1_000, commands: 1_000_000, seed: 1 }
    }
}

/// A generated workload: `setup` (reference data, accounts, deposits, the pre-filled book)
/// brings a fresh engine to the starting point; `commands` is the measured mix.
pub struct Workload {
    pub setup: Vec<Command>,
    pub commands: Vec<Command>,
}

impl Workload {
    /// Applies setup to a fresh engine, numbering commands from 1. Returns the engine and the
    /// next sequence number.
    pub fn prepared_engine(&self) -> (Engine, Seq) {
        let mut engine = Engine::new();
        let mut events = Vec::with_capacity(256);
        for (i, command) in self.setup.iter().enumerate() {
            events.clear();
            engine.apply(i as Seq + 1, 0, command, &mut events);
        }
        (engine, self.setup.len() as Seq + 1)
    }
}

/// Live orders of the simulated book, with O(1) random pick and removal.
#[derive(Default)]
struct LiveOrders {
    ids: Vec<(OrderId, AccountId)>,
    position: FxHashMap<OrderId, usize>,
}

impl LiveOrders {
    fn insert(&mut self, id: OrderId, account: AccountId) {
        self.position.insert(id, self.ids.len());
        self.ids.push((id, account));
    }

    fn remove(&mut self, id: OrderId) {
        if let Some(pos) = self.position.remove(&id) {
            self.ids.swap_remove(pos);
            if let Some(&(moved, _)) = self.ids.get(pos) {
                self.position.insert(moved, pos);
            }
        }
    }

    fn pick(&self, rng: &mut SplitMix64) -> Option<(OrderId, AccountId)> {
        (!self.ids.is_empty()).then(|| self.ids[rng.below(self.ids.len() as u64) as usize])
    }
}

struct Simulator {
    engine: Engine,
    seq: Seq,
    events: Vec<Event>,
    live: LiveOrders,
    rng: SplitMix64,
    spec: WorkloadSpec,
    recorded: Vec<Command>,
}

impl Simulator {
    fn apply(&mut self, command: Command) {
        self.events.clear();
        self.engine.apply(self.seq, 0, &command, &mut self.events);
        self.seq += 1;
        for event in &self.events {
            if let Event::Order(r) = event {
                if r.status.is_terminal() {
                    self.live.remove(r.order_id);
                } else if r.exec == ExecKind::New && r.remaining_qty > 0 {
                    self.live.insert(r.order_id, r.account);
                }
            }
        }
        self.recorded.push(command);
    }

    fn random_account(&mut self) -> AccountId {
        AccountId(1 + self.rng.below(self.spec.accounts))
    }

    fn best(&self) -> (i64, i64) {
        let (bid, ask) = self.engine.best_prices(BTC_USDT).expect("symbol exists");
        (bid.map_or(MID_TICKS - 1, |p| p / TICK), ask.map_or(MID_TICKS + 1, |p| p / TICK))
    }

    fn order(&mut self, side: Side, tif: TimeInForce, price_ticks: i64) -> Command {
        let lots = 1 + self.rng.below(10) as i64;
        let order = gtc_limit(self.random_account(), BTC_USDT, side, price_ticks.max(1) * TICK, lots * LOT);
        Command::PlaceOrder(NewOrder { tif, stp: StpMode::CancelResting, ..order })
    }

    /// A passive order a few ticks behind the touch on a random side.
    fn passive_order(&mut self) -> Command {
        let (bid, ask) = self.best();
        let depth = 1 + self.rng.below(50) as i64;
        if self.rng.below(2) == 0 {
            self.order(Side::Buy, TimeInForce::Gtc, bid.min(ask - 1) - depth + 1)
        } else {
            self.order(Side::Sell, TimeInForce::Gtc, ask.max(bid + 1) + depth - 1)
        }
    }

    /// An order that crosses the spread by a few ticks.
    fn aggressive_order(&mut self, tif: TimeInForce) -> Command {
        let (bid, ask) = self.best();
        let through = self.rng.below(3) as i64;
        if self.rng.below(2) == 0 {
            self.order(Side::Buy, tif, ask + through)
        } else {
            self.order(Side::Sell, tif, bid - through)
        }
    }

    /// Moves a live order a few ticks, staying on its side of the spread (as exchange-core's
    /// move does most of the time); falls back to a passive order if the book is empty.
    fn move_order(&mut self) -> Command {
        let Some((order_id, account)) = self.live.pick(&mut self.rng) else {
            return self.passive_order();
        };
        let report = self.engine.order(order_id).expect("live order is in the engine");
        let (bid, ask) = self.best();
        let delta = self.rng.below(7) as i64 - 3;
        let current = report.price / TICK;
        let price_ticks = match report.side {
            Side::Buy => (current + delta).min(ask - 1),
            Side::Sell => (current + delta).max(bid + 1),
        };
        Command::AmendOrder { account, order_id, price: price_ticks.max(1) * TICK, qty: report.qty }
    }

    fn cancel_order(&mut self) -> Command {
        match self.live.pick(&mut self.rng) {
            Some((order_id, account)) => Command::CancelOrder { account, order_id },
            None => self.passive_order(),
        }
    }
}

/// The BTC/USDT symbol of the workloads and benchmarks: tick 0.01 USDT, lot 0.0001 BTC, at most
/// 0.1 BTC an order, no minimum notional, no price band; fees in parts per million.
pub fn btc_usdt_spec(maker_fee_ppm: u32, taker_fee_ppm: u32) -> SymbolSpec {
    SymbolSpec {
        symbol: BTC_USDT,
        base: BTC,
        quote: USDT,
        tick_size: TICK,
        lot_size: LOT,
        min_qty: LOT,
        min_notional: 0,
        max_order_qty: 1_000 * LOT,
        maker_fee_ppm,
        taker_fee_ppm,
        price_band_bps: 0,
    }
}

fn setup_commands(spec: &WorkloadSpec) -> Vec<Command> {
    let mut setup = vec![
        Command::CreateAsset { asset: BTC, scale: 8 },
        Command::CreateAsset { asset: USDT, scale: 6 },
        Command::CreateSymbol(btc_usdt_spec(200, 500)),
    ];
    for account in 1..=spec.accounts {
        setup.push(Command::CreateAccount { account: AccountId(account), parent: AccountId::NONE, owner: account });
        setup.push(Command::Deposit {
            account: AccountId(account),
            asset: BTC,
            amount: 100_000_000_000,
            external_ref: account * 2,
        });
        setup.push(Command::Deposit {
            account: AccountId(account),
            asset: USDT,
            amount: 10_000_000_000_000,
            external_ref: account * 2 + 1,
        });
    }
    setup
}

/// Generates exchange-core's mix from a seed. Same spec, same commands, in every version.
pub fn exchange_core_mix(spec: WorkloadSpec) -> Workload {
    let setup = setup_commands(&spec);
    let mut sim = Simulator {
        engine: Engine::new(),
        seq: 1,
        events: Vec::with_capacity(256),
        live: LiveOrders::default(),
        rng: SplitMix64::new(spec.seed),
        spec,
        recorded: Vec::with_capacity(spec.commands),
    };
    for command in &setup {
        sim.apply(*command);
    }
    while sim.live.ids.len() < spec.resting_orders {
        let command = sim.passive_order();
        sim.apply(command);
    }
    let prefill_end = sim.recorded.len();
    for _ in 0..spec.commands {
        let roll = sim.rng.below(100);
        let command = match roll {
            0..=81 => sim.move_order(),
            // Keep the book near its target size: GTC joins the book while it is small and
            // takes from it while it is large.
            82..=90 if sim.live.ids.len() < spec.resting_orders => sim.passive_order(),
            82..=90 => sim.aggressive_order(TimeInForce::Gtc),
            91..=93 => sim.aggressive_order(TimeInForce::Ioc),
            _ => sim.cancel_order(),
        };
        sim.apply(command);
    }
    let mut recorded = sim.recorded;
    let commands = recorded.split_off(prefill_end);
    Workload { setup: recorded, commands }
}

/// Writes `spec`'s exchange-core mix (setup, then commands) through a sequencer into the empty
/// data directory `dir`, committing every 100 commands, with timestamps `1_000 + i`, and
/// returns the state it reached: the data directory the replay and operations tests start from.
pub fn write_data_dir(
    dir: &std::path::Path,
    config: crate::pipeline::sequencer::SequencerConfig,
    spec: WorkloadSpec,
) -> Engine {
    use crate::pipeline::sequencer::Sequencer;
    let data_dir = crate::storage::replay::DataDir::new(dir);
    let (mut sequencer, recovery) = Sequencer::open(&data_dir, config).expect("open the sequencer");
    assert_eq!(recovery.input.last_seq, 0, "a fresh data directory");
    let workload = exchange_core_mix(spec);
    for (i, command) in workload.setup.iter().chain(&workload.commands).enumerate() {
        sequencer.submit(1_000 + i as u64, command).expect("submit");
        if i % 100 == 0 {
            sequencer.commit().expect("commit");
        }
    }
    sequencer.commit().expect("commit");
    sequencer.engine().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_workload_and_book_stays_near_target() {
        let spec = WorkloadSpec { accounts: 50, resting_orders: 200, commands: 5_000, seed: 7 };
        let a = exchange_core_mix(spec);
        let b = exchange_core_mix(spec);
        assert_eq!(a.commands, b.commands);
        let c = exchange_core_mix(WorkloadSpec { seed: 8, ..spec });
        assert_ne!(a.commands, c.commands);

        let (mut engine, mut seq) = a.prepared_engine();
        let mut events = Vec::new();
        let (mut moves, mut rejected) = (0, 0);
        for command in &a.commands {
            events.clear();
            engine.apply(seq, 0, command, &mut events);
            seq += 1;
            moves += matches!(command, Command::AmendOrder { .. }) as usize;
            rejected += events.iter().filter(|e| matches!(e, Event::Rejected { .. })).count();
        }
        engine.check_invariants().unwrap();
        let share = moves as f64 / a.commands.len() as f64;
        assert!((0.79..0.85).contains(&share), "move share {share}");
        assert_eq!(rejected, 0, "the generated workload should be valid");
        let (bids, asks) = engine.depth(BTC_USDT, usize::MAX).unwrap();
        let resting: u32 = bids.iter().chain(&asks).map(|l| l.orders).sum();
        assert!((100..400).contains(&resting), "book drifted to {resting} orders");
    }
}
