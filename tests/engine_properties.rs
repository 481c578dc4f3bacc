//! Property tests of the engine over random command streams.
//!
//! proptest generates a stream of abstract operations (deposits with repeated refs, withdrawal
//! request / approve / reject, transfers within and across trees, limit / market / stop-limit /
//! stop-market orders with every time in force and STP mode, cancels by id and client id,
//! cancel-all, amends, freezes, halts, fee updates, accounts and an asset created mid-stream, and
//! deliberately invalid variants). An interpreter turns each operation into a concrete `Command`
//! against the history so far (so cancels and amends usually name live orders), applies it, and
//! checks after EVERY command:
//!
//! - `check_invariants()` is Ok;
//! - an independent model rebuilt only FROM THE EVENTS agrees with the engine's queries:
//!   per-asset conservation (deposits credited - approved withdrawals == balances + trade fees),
//!   no negative balance, each account's ledger (sum of `Event::Ledger` deltas) equals
//!   `balance_of`, subtree totals, the live orders and their reports, what each account holds
//!   (live orders + pending withdrawals), the book depth per level, the last price;
//! - every trade: maker price, taker limit, quote amount, fees (rounded down, capped at the rate
//!   the order was held for), its ledger entries, no self-trade, price-time priority (maker is the
//!   head of the book), and only the command's own order or a stop it triggered takes;
//! - the order state machine of every execution report, fill totals, FOK all-or-nothing,
//!   post-only never takes, IOC/FOK/market never rest, stops fire only when crossed and never
//!   wait once crossed, self-trade prevention follows the taker's mode;
//! - a rejected command emitted exactly one event and changed nothing but the sequence (balances,
//!   open orders and depth compared with a clone taken before the command, and `state_hash()`
//!   compared with that clone moved to the same sequence by a no-op); where the model can tell,
//!   the reject reason is true and commands that must be accepted (or rejected) are.
//!
//! Finally the concrete stream is replayed into a fresh engine, which must produce the same events
//! and the same `state_hash()`.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use seqd::engine::*;
use std::collections::{BTreeMap, BTreeSet};

/// Asset ids the operations pick from: the two real ones and one that never exists.
const ASSET_CHOICES: [AssetId; 3] = [AssetId(1), AssetId(2), AssetId(7)];
/// Accounts the operations pick from: six created up front, four that `CreateAccount` operations
/// may create, and one that never exists.
const POOL: [AccountId; 11] = [
    AccountId(101),
    AccountId(102),
    AccountId(103),
    AccountId(201),
    AccountId(202),
    AccountId(301),
    AccountId(104),
    AccountId(105),
    AccountId(203),
    AccountId(401),
    AccountId(999),
];
/// Ids `CreateAccount` operations try (0 and 101 are always rejected).
const NEW_ACCOUNTS: [AccountId; 6] =
    [AccountId(104), AccountId(105), AccountId(203), AccountId(401), AccountId(101), AccountId::NONE];
const NEW_PARENTS: [AccountId; 7] =
    [AccountId::NONE, AccountId(101), AccountId(102), AccountId(103), AccountId(201), AccountId(999), AccountId(104)];
const FEES: [u32; 6] = [0, 200, 1_000, 2_500, 10_000, 40_000];

fn spec1() -> SymbolSpec {
    // base 1 (scale 8), quote 2 (scale 6): one lot at one tick = 1 quote minor unit.
    SymbolSpec {
        symbol: SymbolId(1),
        base: AssetId(1),
        quote: AssetId(2),
        tick_size: 10_000,
        lot_size: 10_000,
        min_qty: 20_000,
        min_notional: 300,
        max_order_qty: 400_000,
        maker_fee_ppm: 1_000,
        taker_fee_ppm: 2_500,
        price_band_bps: 1_500,
    }
}

fn spec2() -> SymbolSpec {
    // base 2 (scale 6), quote 1 (scale 8): one lot at one tick = 5 quote minor units.
    SymbolSpec {
        symbol: SymbolId(2),
        base: AssetId(2),
        quote: AssetId(1),
        tick_size: 1_000,
        lot_size: 5_000,
        min_qty: 5_000,
        min_notional: 0,
        max_order_qty: 150_000,
        maker_fee_ppm: 0,
        taker_fee_ppm: 3_000,
        price_band_bps: 0,
    }
}

/// (tick, lot, mid price in ticks) used to build prices for a symbol id (unknown ids use symbol 1's).
fn grid(symbol: SymbolId) -> (i64, i64, i64) {
    match symbol {
        SymbolId(2) => (1_000, 5_000, 60),
        _ => (10_000, 10_000, 100),
    }
}

// ---------------------------------------------------------------------------------------------
// Operations and their strategy
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct PlaceOp {
    acct: usize,
    sym: usize,
    coid: u64,
    side: Side,
    order_type: OrderType,
    tif: TimeInForce,
    stp: StpMode,
    /// Keep the generated (type, tif) even when invalid; otherwise it is coerced to a valid one.
    raw: bool,
    price_off: i64,
    stop_off: i64,
    lots: i64,
    /// 0: price off tick, 1: qty off lot, 2: negative price, 3: zero qty, else untouched.
    mangle: u8,
    budget: i64,
}

#[derive(Clone, Debug)]
enum Op {
    Deposit {
        acct: usize,
        asset: usize,
        amount: i64,
        ext_ref: u64,
    },
    Withdraw {
        acct: usize,
        asset: usize,
        amount: i64,
        client_ref: u64,
    },
    Decide {
        pick: usize,
        approve: bool,
    },
    Transfer {
        from: usize,
        to: usize,
        asset: usize,
        amount: i64,
        client_ref: u64,
    },
    Place(PlaceOp),
    Cancel {
        pick: usize,
        by_owner: bool,
    },
    CancelClient {
        acct: usize,
        coid: u64,
    },
    CancelAll {
        acct: usize,
        sym: usize,
    },
    Amend {
        pick: usize,
        by_owner: bool,
        price_off: Option<i64>,
        qty_mode: u8,
        lots: i64,
    },
    Freeze {
        acct: usize,
        frozen: bool,
    },
    Halt {
        sym: usize,
        halted: bool,
    },
    UpdateSymbol {
        sym: usize,
        maker: usize,
        taker: usize,
        variant: u8,
    },
    CreateAccount {
        acct: usize,
        parent: usize,
        owner: u64,
    },
    /// Creates asset 7 (referenced as unknown until then) mid-stream, after accounts exist.
    CreateAsset {
        scale: u8,
    },
}

fn acct_idx() -> impl Strategy<Value = usize> {
    prop_oneof![30 => 0..6usize, 1 => 6..11usize]
}

fn asset_idx() -> impl Strategy<Value = usize> {
    prop_oneof![12 => 0..2usize, 1 => Just(2usize)]
}

fn sym_idx() -> impl Strategy<Value = usize> {
    prop_oneof![30 => 0..2usize, 1 => Just(2usize)]
}

fn place_op() -> impl Strategy<Value = PlaceOp> {
    let kind = (
        any::<bool>().prop_map(|b| if b { Side::Buy } else { Side::Sell }),
        prop_oneof![
            10 => Just(OrderType::Limit),
            3 => Just(OrderType::Market),
            2 => Just(OrderType::StopLimit),
            2 => Just(OrderType::StopMarket)
        ],
        prop_oneof![
            12 => Just(TimeInForce::Gtc),
            2 => Just(TimeInForce::Ioc),
            2 => Just(TimeInForce::Fok),
            2 => Just(TimeInForce::PostOnly)
        ],
        prop_oneof![Just(StpMode::CancelResting), Just(StpMode::CancelIncoming), Just(StpMode::CancelBoth)],
        prop::bool::weighted(0.08),
    );
    let sizes = (
        -12..=12i64,
        -2..=8i64,
        prop_oneof![1 => 0..=1i64, 20 => 2..=20i64, 2 => 21..=45i64],
        0..40u8,
        prop_oneof![1 => Just(0i64), 8 => 1..40_000i64],
    );
    (acct_idx(), sym_idx(), prop_oneof![3 => Just(0u64), 2 => 1..8u64], kind, sizes).prop_map(
        |(acct, sym, coid, (side, order_type, tif, stp, raw), (price_off, stop_off, lots, mangle, budget))| PlaceOp {
            acct,
            sym,
            coid,
            side,
            order_type,
            tif,
            stp,
            raw,
            price_off,
            stop_off,
            lots,
            mangle,
            budget,
        },
    )
}

fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![1 => -3..=0i64, 12 => 1..=3_000_000i64]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (acct_idx(), asset_idx(), amount(), 0..60u64)
            .prop_map(|(acct, asset, amount, ext_ref)| Op::Deposit { acct, asset, amount, ext_ref }),
        4 => (acct_idx(), asset_idx(), amount(), 0..12u64)
            .prop_map(|(acct, asset, amount, client_ref)| Op::Withdraw { acct, asset, amount, client_ref }),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(pick, approve)| Op::Decide { pick, approve }),
        5 => (acct_idx(), acct_idx(), asset_idx(), amount(), 0..12u64).prop_map(|(from, to, asset, amount, client_ref)| {
            Op::Transfer { from, to, asset, amount: amount / 4, client_ref }
        }),
        60 => place_op().prop_map(Op::Place),
        8 => (any::<usize>(), prop::bool::weighted(0.9)).prop_map(|(pick, by_owner)| Op::Cancel { pick, by_owner }),
        3 => (acct_idx(), 0..6u64).prop_map(|(acct, coid)| Op::CancelClient { acct, coid }),
        2 => (acct_idx(), 0..4usize).prop_map(|(acct, sym)| Op::CancelAll { acct, sym }),
        10 => (
            any::<usize>(),
            prop::bool::weighted(0.9),
            prop_oneof![Just(None), (-12..=12i64).prop_map(Some)],
            0..4u8,
            0..=45i64
        )
            .prop_map(|(pick, by_owner, price_off, qty_mode, lots)| Op::Amend { pick, by_owner, price_off, qty_mode, lots }),
        3 => (acct_idx(), prop::bool::weighted(0.12)).prop_map(|(acct, frozen)| Op::Freeze { acct, frozen }),
        3 => (sym_idx(), prop::bool::weighted(0.08)).prop_map(|(sym, halted)| Op::Halt { sym, halted }),
        2 => (sym_idx(), 0..FEES.len(), 0..FEES.len(), 0..8u8)
            .prop_map(|(sym, maker, taker, variant)| Op::UpdateSymbol { sym, maker, taker, variant }),
        1 => (0..NEW_ACCOUNTS.len(), 0..NEW_PARENTS.len(), 1..=4u64)
            .prop_map(|(acct, parent, owner)| Op::CreateAccount { acct, parent, owner }),
        1 => (0..=19u8).prop_map(|scale| Op::CreateAsset { scale }),
    ]
}

// ---------------------------------------------------------------------------------------------
// The model: everything here is rebuilt from the events alone
// ---------------------------------------------------------------------------------------------

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

#[derive(Clone, Debug)]
struct AccountModel {
    parent: AccountId,
    owner: u64,
    frozen: bool,
}

#[derive(Clone, Debug)]
struct OrderModel {
    cmd: NewOrder,
    last: OrderReport,
    /// An untriggered stop order (not in the book).
    waiting: bool,
    /// Highest fee rate the order may be charged: the symbol's max rate when placed or re-priced.
    fee_cap: u32,
    /// What the order held when it was placed.
    initial_hold: i64,
    /// Time priority in its price level: (sequence, 0 for the command's own order or 1 for a
    /// stop triggered by it, order id). Stops triggered by one command rest after its own order.
    queue_key: (Seq, u8, OrderId),
    traded_qty: i64,
    traded_quote: i64,
    fees: i64,
}

#[derive(Default)]
struct Model {
    scales: BTreeMap<AssetId, u8>,
    symbols: BTreeMap<SymbolId, (SymbolSpec, SymbolStatus)>,
    accounts: BTreeMap<AccountId, AccountModel>,
    deposited: BTreeMap<AssetId, i128>,
    withdrawn: BTreeMap<AssetId, i128>,
    fees: BTreeMap<AssetId, i128>,
    /// Running (available, held) per (account, asset), summed from ledger deltas.
    ledger: BTreeMap<(AccountId, AssetId), (i64, i64)>,
    deposit_refs: BTreeSet<u64>,
    withdrawal_refs: BTreeSet<(AccountId, u64)>,
    transfer_refs: BTreeSet<(AccountId, u64)>,
    pending: BTreeMap<u64, (AccountId, AssetId, i64)>,
    withdrawal_ids: Vec<u64>,
    orders: BTreeMap<OrderId, OrderModel>,
    order_ids: Vec<OrderId>,
    /// What each order holds, from its Hold/Release entries minus what its fills consumed.
    order_held: BTreeMap<OrderId, i64>,
    /// Ledger deltas referencing a trade, by (trade id, account, asset), within one command.
    trade_ledger: BTreeMap<(u64, AccountId, AssetId), (i64, i64)>,
    last_trade_id: u64,
    /// Price of the last trade per symbol.
    last_price: BTreeMap<SymbolId, i64>,
    /// Stops triggered by the current command: they may take, like the command's own order.
    triggered_now: BTreeSet<OrderId>,
    /// (symbol, price) of every trade of the current command so far.
    prices_now: Vec<(SymbolId, i64)>,
    /// The order of the current command now running against the book, if any.
    taker_now: Option<OrderId>,
    /// A resting order that self-trade prevention cancelled for `taker_now`.
    stp_cancelled_resting: Option<OrderId>,
    stats: Stats,
}

#[derive(Default, Debug, Clone)]
struct Stats {
    commands: u64,
    reasons: BTreeMap<String, u64>,
    rejected: u64,
    trades: u64,
    placed: u64,
    triggered: u64,
    amended: u64,
    cancelled: u64,
    expired: u64,
}

fn fee(notional: i64, ppm: u32) -> i64 {
    (notional as i128 * ppm as i128 / 1_000_000) as i64
}

/// Would a stop of `side` at `stop_price` fire at the last trade price (0 = no trade yet)?
fn stop_fires(side: Side, stop_price: i64, last: i64) -> bool {
    last != 0
        && match side {
            Side::Buy => last >= stop_price,
            Side::Sell => last <= stop_price,
        }
}

fn is_live(status: OrderStatus) -> bool {
    matches!(status, OrderStatus::New | OrderStatus::PartiallyFilled)
}

impl Model {
    fn spec(&self, symbol: SymbolId) -> SymbolSpec {
        self.symbols[&symbol].0
    }

    fn notional(&self, symbol: SymbolId, price: i64, qty: i64) -> Result<i64, String> {
        let spec = self.spec(symbol);
        let unit = 10i128.pow(self.scales[&spec.base] as u32);
        let raw = price as i128 * qty as i128;
        ensure!(raw % unit == 0, "notional of {qty} at {price} is not a whole number of quote units");
        Ok((raw / unit) as i64)
    }

    fn root(&self, mut account: AccountId) -> AccountId {
        while self.accounts[&account].parent != AccountId::NONE {
            account = self.accounts[&account].parent;
        }
        account
    }

    fn is_descendant_or_self(&self, mut account: AccountId, ancestor: AccountId) -> bool {
        loop {
            if account == ancestor {
                return true;
            }
            account = self.accounts[&account].parent;
            if account == AccountId::NONE {
                return false;
            }
        }
    }

    fn available(&self, account: AccountId, asset: AssetId) -> i64 {
        self.ledger.get(&(account, asset)).map_or(0, |b| b.0)
    }

    /// The asset an order of `side` on `symbol` holds.
    fn hold_asset(&self, symbol: SymbolId, side: Side) -> AssetId {
        let spec = self.spec(symbol);
        if side == Side::Buy {
            spec.quote
        } else {
            spec.base
        }
    }

    fn expected_initial_hold(&self, r: &OrderReport, cmd: &NewOrder, cap: u32) -> Result<i64, String> {
        Ok(match (r.side, r.order_type.is_market()) {
            (Side::Sell, _) => r.qty,
            (Side::Buy, true) => cmd.quote_budget,
            (Side::Buy, false) => {
                let n = self.notional(r.symbol, r.price, r.qty)?;
                n + fee(n, cap)
            }
        })
    }

    /// Checks, where the model can tell, that the reason given for a rejection is true.
    fn justify_rejection(&self, cmd: &Command, reason: RejectReason) -> Result<(), String> {
        use RejectReason as R;
        let live_order = |id: &OrderId| self.orders.get(id).filter(|m| is_live(m.last.status));
        // Ids the command names.
        let (accounts, symbols, assets): (Vec<AccountId>, Vec<SymbolId>, Vec<AssetId>) = match *cmd {
            Command::Deposit { account, asset, .. } | Command::WithdrawRequest { account, asset, .. } => {
                (vec![account], vec![], vec![asset])
            }
            Command::Transfer { from, to, asset, .. } => (vec![from, to], vec![], vec![asset]),
            Command::PlaceOrder(o) => (vec![o.account], vec![o.symbol], vec![]),
            Command::CancelOrder { account, .. }
            | Command::CancelByClientId { account, .. }
            | Command::AmendOrder { account, .. }
            | Command::SetAccountStatus { account, .. } => (vec![account], vec![], vec![]),
            Command::CancelAll { account, symbol } => {
                (vec![account], vec![symbol].into_iter().filter(|&s| s != SymbolId::ALL).collect(), vec![])
            }
            Command::SetSymbolStatus { symbol, .. } | Command::UpdateSymbol(SymbolSpec { symbol, .. }) => {
                (vec![], vec![symbol], vec![])
            }
            _ => return Ok(()),
        };
        let order_symbol = match *cmd {
            Command::PlaceOrder(o) => Some(o.symbol),
            Command::AmendOrder { order_id, .. } => live_order(&order_id).map(|m| m.last.symbol),
            _ => None,
        };
        match reason {
            R::UnknownAccount => ensure!(accounts.iter().any(|a| !self.accounts.contains_key(a)), "no unknown account"),
            R::UnknownSymbol => ensure!(symbols.iter().any(|s| !self.symbols.contains_key(s)), "no unknown symbol"),
            R::UnknownAsset => ensure!(assets.iter().any(|a| !self.scales.contains_key(a)), "no unknown asset"),
            R::AccountFrozen => {
                ensure!(
                    matches!(
                        cmd,
                        Command::PlaceOrder(_)
                            | Command::WithdrawRequest { .. }
                            | Command::Transfer { .. }
                            | Command::AmendOrder { .. }
                    ),
                    "this command does not care about freezes"
                );
                ensure!(self.accounts.get(&accounts[0]).is_some_and(|a| a.frozen), "the account is not frozen");
            }
            R::SymbolHalted => ensure!(
                order_symbol.is_some_and(|s| self.symbols.get(&s).is_some_and(|x| x.1 == SymbolStatus::Halted)),
                "the symbol is not halted"
            ),
            R::DuplicateDepositRef => {
                let Command::Deposit { external_ref, .. } = *cmd else {
                    return Err("wrong command".into());
                };
                ensure!(self.deposit_refs.contains(&external_ref), "the deposit ref is new");
            }
            _ => {}
        }
        match (*cmd, reason) {
            (Command::WithdrawRequest { account, asset, amount, .. }, R::InsufficientFunds) => {
                ensure!(self.available(account, asset) < amount, "the account has the funds")
            }
            (Command::Transfer { from, asset, amount, .. }, R::InsufficientFunds) => {
                ensure!(self.available(from, asset) < amount, "the account has the funds")
            }
            (Command::PlaceOrder(o), _) if self.symbols.contains_key(&o.symbol) => {
                let spec = self.spec(o.symbol);
                let last = self.last_price.get(&o.symbol).copied().unwrap_or(0);
                let opposite_crosses = |side: Side, price: i64| {
                    self.orders.values().any(|m| {
                        is_live(m.last.status)
                            && !m.waiting
                            && m.last.symbol == o.symbol
                            && m.last.side == side.opposite()
                            && match side {
                                Side::Buy => m.last.price <= price,
                                Side::Sell => m.last.price >= price,
                            }
                    })
                };
                match reason {
                    R::DuplicateClientOrderId => ensure!(
                        o.client_order_id != 0
                            && self.orders.values().any(|m| is_live(m.last.status)
                                && m.last.account == o.account
                                && m.last.client_order_id == o.client_order_id),
                        "no live order of the account has client id {}",
                        o.client_order_id
                    ),
                    R::InsufficientFunds => {
                        let need = match (o.side, o.order_type.is_market()) {
                            (Side::Sell, _) => o.qty,
                            (Side::Buy, true) => o.quote_budget,
                            (Side::Buy, false) => {
                                let n = self.notional(o.symbol, o.price, o.qty)?;
                                n + fee(n, spec.maker_fee_ppm.max(spec.taker_fee_ppm))
                            }
                        };
                        let have = self.available(o.account, self.hold_asset(o.symbol, o.side));
                        ensure!(have < need, "the account has {have} of the {need} the order needs");
                    }
                    R::StopWouldTriggerImmediately => {
                        ensure!(stop_fires(o.side, o.stop_price, last), "the stop would not fire at {last}")
                    }
                    R::PostOnlyWouldTake => {
                        ensure!(opposite_crosses(o.side, o.price), "nothing to take")
                    }
                    R::PriceOutOfBand => {
                        let band = spec.price_band_bps as i128;
                        let (p, l) = (o.price as i128, last as i128);
                        ensure!(
                            band != 0 && l != 0 && (p - l).abs() * 10_000 > l * band,
                            "the price is within the band"
                        )
                    }
                    R::AboveMaxQuantity => {
                        ensure!(o.qty > spec.max_order_qty, "qty within the maximum")
                    }
                    R::BelowMinQuantity => ensure!(o.qty < spec.min_qty, "qty above the minimum"),
                    R::QuantityNotOnLot => ensure!(o.qty % spec.lot_size != 0, "qty on the lot"),
                    R::PriceNotOnTick => ensure!(
                        o.price % spec.tick_size != 0 || o.stop_price % spec.tick_size != 0,
                        "price on the tick"
                    ),
                    R::BelowMinNotional => {
                        ensure!(
                            self.notional(o.symbol, o.price, o.qty)? < spec.min_notional,
                            "notional above the minimum"
                        )
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// What the model knows about the outcome of `cmd` before it is applied:
    /// Some(true) must be accepted, Some(false) must be rejected, None unknown.
    fn expectation(&self, cmd: &Command) -> Option<bool> {
        let active = |a: &AccountId| self.accounts.get(a).is_some_and(|m| !m.frozen);
        let asset_known = |x: &AssetId| self.scales.contains_key(x);
        match cmd {
            Command::Deposit { account, asset, amount, external_ref } => {
                if !self.accounts.contains_key(account)
                    || !asset_known(asset)
                    || *amount <= 0
                    || self.deposit_refs.contains(external_ref)
                {
                    Some(false)
                } else {
                    Some(true)
                }
            }
            Command::WithdrawRequest { account, asset, amount, client_ref } => {
                if !active(account)
                    || !asset_known(asset)
                    || *amount <= 0
                    || self.withdrawal_refs.contains(&(*account, *client_ref))
                {
                    Some(false)
                } else {
                    Some(self.available(*account, *asset) >= *amount)
                }
            }
            Command::WithdrawApprove { withdrawal_id } | Command::WithdrawReject { withdrawal_id } => {
                Some(self.pending.contains_key(withdrawal_id))
            }
            Command::Transfer { from, to, asset, amount, client_ref } => {
                if from == to
                    || !active(from)
                    || !self.accounts.contains_key(to)
                    || !asset_known(asset)
                    || *amount <= 0
                    || self.transfer_refs.contains(&(*from, *client_ref))
                    || self.root(*from) != self.root(*to)
                {
                    Some(false)
                } else {
                    Some(self.available(*from, *asset) >= *amount)
                }
            }
            Command::PlaceOrder(o) => {
                let halted = self.symbols.get(&o.symbol).is_none_or(|s| s.1 == SymbolStatus::Halted);
                let bad_combo = match o.order_type {
                    OrderType::Market | OrderType::StopMarket => o.tif != TimeInForce::Ioc,
                    OrderType::StopLimit => o.tif == TimeInForce::PostOnly,
                    OrderType::Limit => false,
                };
                if !active(&o.account) || halted || bad_combo || o.qty <= 0 {
                    Some(false)
                } else {
                    None
                }
            }
            Command::CancelOrder { account, order_id } => {
                Some(self.orders.get(order_id).is_some_and(|m| is_live(m.last.status) && m.last.account == *account))
            }
            Command::CancelByClientId { account, client_order_id } => Some(self.orders.values().any(|m| {
                is_live(m.last.status)
                    && m.last.account == *account
                    && m.last.client_order_id == *client_order_id
                    && *client_order_id != 0
            })),
            Command::AmendOrder { account, order_id, .. } => match self.orders.get(order_id) {
                Some(m) if is_live(m.last.status) && m.last.account == *account => {
                    if !active(account) || m.waiting || self.symbols[&m.last.symbol].1 == SymbolStatus::Halted {
                        Some(false)
                    } else {
                        None
                    }
                }
                _ => Some(false),
            },
            Command::CancelAll { account, symbol } => Some(
                self.accounts.contains_key(account) && (*symbol == SymbolId::ALL || self.symbols.contains_key(symbol)),
            ),
            Command::SetAccountStatus { account, .. } => Some(self.accounts.contains_key(account)),
            Command::SetSymbolStatus { symbol, .. } => Some(self.symbols.contains_key(symbol)),
            _ => None,
        }
    }

    /// Folds one command's events into the model, checking each as it goes.
    fn observe(&mut self, seq: Seq, cmd: &Command, events: &[Event]) -> Result<(), String> {
        self.stats.commands += 1;
        // Only a cancel-all that finds nothing to cancel may be accepted silently.
        ensure!(!events.is_empty() || matches!(cmd, Command::CancelAll { .. }), "the command emitted no event");
        if events.iter().any(|e| matches!(e, Event::Rejected { .. })) {
            ensure!(events.len() == 1, "a rejected command emitted {} events: {events:?}", events.len());
            self.stats.rejected += 1;
            if let Event::Rejected { reason } = events[0] {
                *self
                    .stats
                    .reasons
                    .entry(format!("{}/{reason:?}", format!("{cmd:?}").split([' ', '(', '{']).next().unwrap_or("")))
                    .or_default() += 1;
            }
            return Ok(());
        }
        self.trade_ledger.clear();
        self.triggered_now.clear();
        self.prices_now.clear();
        self.taker_now = None;
        self.stp_cancelled_resting = None;
        for (i, event) in events.iter().enumerate() {
            self.observe_event(seq, cmd, event).map_err(|m| format!("event #{i} {event:?}: {m}"))?;
        }
        ensure!(self.trade_ledger.is_empty(), "trade ledger entries without a trade: {:?}", self.trade_ledger);
        // Command-specific outcomes.
        match cmd {
            Command::PlaceOrder(_) => ensure!(
                events
                    .iter()
                    .any(|e| matches!(e, Event::Order(r) if r.order_id == OrderId(seq) && r.exec == ExecKind::New)),
                "an accepted order has no New report with id = its sequence"
            ),
            Command::CancelOrder { order_id, .. } => ensure!(
                events
                    .iter()
                    .any(|e| matches!(e, Event::Order(r) if r.order_id == *order_id && r.exec == ExecKind::Cancelled)),
                "an accepted cancel did not cancel its order"
            ),
            Command::Deposit { account, asset, amount, external_ref } => ensure!(
                events.contains(&Event::DepositCredited {
                    account: *account,
                    asset: *asset,
                    amount: *amount,
                    external_ref: *external_ref
                }),
                "an accepted deposit was not credited as asked"
            ),
            Command::CancelAll { account, symbol } => {
                for m in self.orders.values() {
                    ensure!(
                        !(is_live(m.last.status)
                            && m.last.account == *account
                            && (*symbol == SymbolId::ALL || m.last.symbol == *symbol)),
                        "cancel-all left order {} live",
                        m.last.order_id
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn observe_event(&mut self, seq: Seq, cmd: &Command, event: &Event) -> Result<(), String> {
        match *event {
            Event::Rejected { .. } => unreachable!(),
            Event::AssetCreated { asset, scale } => {
                ensure!(self.scales.insert(asset, scale).is_none(), "asset created twice");
            }
            Event::SymbolUpdated { spec, status } => {
                if let Some((old, _)) = self.symbols.get(&spec.symbol) {
                    ensure!(
                        (old.base, old.quote, old.tick_size, old.lot_size)
                            == (spec.base, spec.quote, spec.tick_size, spec.lot_size),
                        "an update changed a fixed field of the symbol"
                    );
                }
                ensure!(
                    (spec.maker_fee_ppm as i64) < 1_000_000 && (spec.taker_fee_ppm as i64) < 1_000_000,
                    "fee rate >= 100%"
                );
                self.symbols.insert(spec.symbol, (spec, status));
            }
            Event::AccountCreated { account, parent, owner } => {
                ensure!(!self.accounts.contains_key(&account) && account != AccountId::NONE, "account created twice");
                if parent != AccountId::NONE {
                    let p = self.accounts.get(&parent).ok_or("parent unknown")?;
                    ensure!(p.owner == owner, "child owner differs from parent's");
                }
                self.accounts.insert(account, AccountModel { parent, owner, frozen: false });
            }
            Event::AccountStatusChanged { account, status } => {
                self.accounts.get_mut(&account).ok_or("unknown account")?.frozen = status == AccountStatus::Frozen;
            }
            Event::Ledger(e) => {
                ensure!(e.available_delta != 0 || e.held_delta != 0, "empty ledger entry");
                ensure!(
                    self.accounts.contains_key(&e.account) && self.scales.contains_key(&e.asset),
                    "ledger entry for unknown account/asset"
                );
                let b = self.ledger.entry((e.account, e.asset)).or_default();
                b.0 += e.available_delta;
                b.1 += e.held_delta;
                ensure!(*b == (e.available_after, e.held_after), "ledger running sum {b:?} != entry's balance after");
                ensure!(b.0 >= 0 && b.1 >= 0, "negative balance {b:?}");
                match e.kind {
                    LedgerKind::Hold | LedgerKind::Release => {
                        ensure!(e.available_delta == -e.held_delta, "a hold/release changed the total");
                        ensure!((e.kind == LedgerKind::Hold) == (e.held_delta > 0), "hold/release sign");
                        if e.ref_kind == RefKind::Order {
                            // The New report follows the placement hold, so the order may be unknown yet.
                            if let Some(m) = self.orders.get(&OrderId(e.ref_id)) {
                                ensure!(m.last.account == e.account, "hold for another account's order");
                            } else {
                                ensure!(e.ref_id == seq, "hold for an unknown order {}", e.ref_id);
                            }
                            *self.order_held.entry(OrderId(e.ref_id)).or_default() += e.held_delta;
                        } else {
                            ensure!(e.ref_kind == RefKind::Withdrawal, "hold with ref kind {:?}", e.ref_kind);
                        }
                    }
                    LedgerKind::Trade | LedgerKind::Fee => {
                        ensure!(e.ref_kind == RefKind::Trade, "trade entry without a trade ref");
                        let t = self.trade_ledger.entry((e.ref_id, e.account, e.asset)).or_default();
                        t.0 += e.available_delta;
                        t.1 += e.held_delta;
                    }
                    LedgerKind::Deposit => ensure!(e.held_delta == 0 && e.available_delta > 0, "deposit entry shape"),
                    LedgerKind::Withdrawal => {
                        ensure!(e.available_delta == 0 && e.held_delta < 0, "withdrawal entry shape")
                    }
                    LedgerKind::Transfer => {
                        ensure!(e.held_delta == 0, "transfer entry touched held")
                    }
                    LedgerKind::Adjustment => return Err("unexpected adjustment".into()),
                }
            }
            Event::DepositCredited { account, asset, amount, external_ref } => {
                ensure!(
                    *cmd == Command::Deposit { account, asset, amount, external_ref },
                    "deposit credited for another command"
                );
                ensure!(self.deposit_refs.insert(external_ref), "deposit ref credited twice");
                *self.deposited.entry(asset).or_default() += amount as i128;
            }
            Event::WithdrawalUpdated { withdrawal_id, account, asset, amount, client_ref, status } => match status {
                WithdrawalStatus::Pending => {
                    ensure!(withdrawal_id == seq, "withdrawal id is not the request's sequence");
                    ensure!(self.withdrawal_refs.insert((account, client_ref)), "withdrawal ref reused");
                    self.pending.insert(withdrawal_id, (account, asset, amount));
                    self.withdrawal_ids.push(withdrawal_id);
                }
                WithdrawalStatus::Approved | WithdrawalStatus::Rejected => {
                    let p = self.pending.remove(&withdrawal_id).ok_or("decided a withdrawal that was not pending")?;
                    ensure!(p == (account, asset, amount), "decided withdrawal differs from its request");
                    if status == WithdrawalStatus::Approved {
                        *self.withdrawn.entry(asset).or_default() += amount as i128;
                    }
                }
            },
            Event::Transferred { from, to, asset, amount, client_ref } => {
                ensure!(
                    *cmd == Command::Transfer { from, to, asset, amount, client_ref },
                    "transfer differs from its command"
                );
                ensure!(self.transfer_refs.insert((from, client_ref)), "transfer ref reused");
            }
            Event::Order(r) => self.observe_report(seq, cmd, r)?,
            Event::Trade(t) => self.observe_trade(seq, cmd, t)?,
        }
        Ok(())
    }

    fn observe_report(&mut self, seq: Seq, cmd: &Command, r: OrderReport) -> Result<(), String> {
        ensure!(r.filled_qty >= 0 && r.filled_qty <= r.qty && r.remaining_qty >= 0, "report sizes out of range");
        if r.exec == ExecKind::New {
            let Command::PlaceOrder(o) = *cmd else {
                return Err("New report for a command that places no order".into());
            };
            ensure!(
                r.order_id == OrderId(seq) && !self.orders.contains_key(&OrderId(seq)),
                "New report with id {} at seq {seq}",
                r.order_id
            );
            ensure!(
                r.status == OrderStatus::New && r.filled_qty == 0 && r.remaining_qty == r.qty,
                "New report not fresh"
            );
            ensure!(
                (r.account, r.symbol, r.client_order_id, r.side, r.order_type, r.tif, r.qty)
                    == (o.account, o.symbol, o.client_order_id, o.side, o.order_type, o.tif, o.qty),
                "New report differs from its command"
            );
            ensure!(r.price == if o.order_type.is_market() { 0 } else { o.price }, "New report price");
            let spec = self.spec(r.symbol);
            let cap = spec.maker_fee_ppm.max(spec.taker_fee_ppm);
            let initial_hold = self.expected_initial_hold(&r, &o, cap)?;
            let held = self.order_held.get(&OrderId(seq)).copied().unwrap_or(0);
            ensure!(held == initial_hold, "order holds {held}, expected {initial_hold}");
            self.orders.insert(
                OrderId(seq),
                OrderModel {
                    cmd: o,
                    last: r,
                    waiting: o.order_type.is_stop(),
                    fee_cap: cap,
                    initial_hold,
                    queue_key: (seq, 0, OrderId(seq)),
                    traded_qty: 0,
                    traded_quote: 0,
                    fees: 0,
                },
            );
            self.order_ids.push(OrderId(seq));
            if !o.order_type.is_stop() {
                self.taker_now = Some(OrderId(seq));
            }
            self.stats.placed += 1;
            return Ok(());
        }
        let caps = self.symbols.get(&r.symbol).map(|s| s.0.maker_fee_ppm.max(s.0.taker_fee_ppm)).unwrap_or(0);
        if r.exec == ExecKind::Cancelled && matches!(cmd, Command::PlaceOrder(_) | Command::AmendOrder { .. }) {
            self.check_stp_cancel(r.order_id)?;
        }
        if r.exec == ExecKind::Expired {
            self.check_expiry(&r)?;
        }
        let m = self.orders.get_mut(&r.order_id).ok_or("report for an unknown order")?;
        let prev = m.last;
        ensure!(is_live(prev.status), "report after the order ended ({:?})", prev.status);
        ensure!(
            (r.account, r.symbol, r.client_order_id, r.side, r.order_type, r.tif)
                == (prev.account, prev.symbol, prev.client_order_id, prev.side, prev.order_type, prev.tif),
            "an order's identity changed"
        );
        ensure!(
            (r.filled_qty, r.filled_quote, r.fees_paid) == (m.traded_qty, m.traded_quote, m.fees),
            "report filled {}/{}/{} but trades sum to {}/{}/{}",
            r.filled_qty,
            r.filled_quote,
            r.fees_paid,
            m.traded_qty,
            m.traded_quote,
            m.fees
        );
        let transition = match r.exec {
            ExecKind::Trade => {
                ensure!(r.filled_qty > prev.filled_qty, "trade report without a fill");
                ensure!(!m.waiting, "a waiting stop traded");
                Some(OrderTransition::Fill { fully: r.filled_qty == r.qty })
            }
            ExecKind::Cancelled => Some(OrderTransition::Cancel),
            ExecKind::Expired => Some(OrderTransition::Expire),
            ExecKind::Amended => {
                let Command::AmendOrder { order_id, price, qty, .. } = *cmd else {
                    return Err("Amended report outside an amend".into());
                };
                ensure!(
                    order_id == r.order_id && r.price == price && r.qty == qty,
                    "amend report differs from its command"
                );
                ensure!(!m.waiting, "a waiting stop was amended");
                let keeps_priority = r.price == prev.price && r.qty <= prev.qty;
                if !keeps_priority {
                    m.fee_cap = caps;
                    m.queue_key = (seq, 0, r.order_id);
                    self.taker_now = Some(r.order_id);
                }
                self.stats.amended += 1;
                None
            }
            ExecKind::Triggered => {
                ensure!(m.waiting, "a stop triggered twice");
                // Stops fire in passes: every stop the last price has crossed at the end of a
                // pass fires, then they run in id order (moving the price), so the trigger
                // price is some price this command traded at, not necessarily the latest.
                let stop = m.cmd.stop_price;
                ensure!(
                    self.prices_now.iter().any(|&(s, p)| s == r.symbol && stop_fires(r.side, stop, p)),
                    "stop at {stop} triggered, but this command traded at {:?}",
                    self.prices_now
                );
                m.waiting = false;
                m.queue_key = (seq, 1, r.order_id);
                self.triggered_now.insert(r.order_id);
                self.stats.triggered += 1;
                self.taker_now = Some(r.order_id);
                self.stp_cancelled_resting = None;
                None
            }
            ExecKind::New => unreachable!(),
        };
        match transition {
            Some(t) => ensure!(
                prev.status.next(t) == Some(r.status),
                "illegal transition {:?} --{t:?}--> {:?}",
                prev.status,
                r.status
            ),
            None => {
                ensure!(r.status == prev.status && r.filled_qty == prev.filled_qty, "status changed by {:?}", r.exec)
            }
        }
        if r.exec != ExecKind::Amended {
            ensure!(r.price == prev.price && r.qty == prev.qty, "price/qty changed by {:?}", r.exec);
        }
        if r.status.is_terminal() {
            ensure!(r.remaining_qty == 0, "ended order reports a remainder");
            let held = self.order_held.get(&r.order_id).copied().unwrap_or(0);
            ensure!(held == 0, "order {} ended still holding {held}", r.order_id);
            if r.side == Side::Buy && r.order_type.is_market() {
                ensure!(r.filled_quote + r.fees_paid <= m.cmd.quote_budget, "market buy spent more than its budget");
            }
            if r.tif == TimeInForce::Fok {
                ensure!(r.filled_qty == 0 || r.filled_qty == r.qty, "a fill-or-kill order ended partially filled");
            }
            match r.status {
                OrderStatus::Cancelled => self.stats.cancelled += 1,
                OrderStatus::Expired => self.stats.expired += 1,
                _ => {}
            }
        } else {
            ensure!(r.remaining_qty == r.qty - r.filled_qty && r.remaining_qty > 0, "live order remainder");
        }
        m.last = r;
        Ok(())
    }

    /// Price-time priority: `head` is the best-placed resting order on its side of its book
    /// (`taker` excluded), i.e. the one a taker must meet first.
    fn check_head_of_book(&self, head: OrderId, taker: OrderId) -> Result<(), String> {
        let h = &self.orders[&head];
        ensure!(is_live(h.last.status) && !h.waiting && !h.last.order_type.is_market(), "order {head} is not resting");
        for (id, o) in &self.orders {
            let resting = is_live(o.last.status) && !o.waiting && !o.last.order_type.is_market();
            if !resting || *id == taker || *id == head || o.last.symbol != h.last.symbol || o.last.side != h.last.side {
                continue;
            }
            let better_price = match h.last.side {
                Side::Sell => o.last.price < h.last.price,
                Side::Buy => o.last.price > h.last.price,
            };
            let earlier = o.last.price == h.last.price && o.queue_key < h.queue_key;
            ensure!(
                !better_price && !earlier,
                "order {head} met ahead of order {id} ({:?} {} queued {:?} vs {:?} {} queued {:?})",
                o.last.side,
                o.last.price,
                o.queue_key,
                h.last.side,
                h.last.price,
                h.queue_key
            );
        }
        Ok(())
    }

    /// An order that expires unfilled must have had nothing left it could take.
    fn check_expiry(&self, r: &OrderReport) -> Result<(), String> {
        let m = &self.orders[&r.order_id];
        ensure!(self.taker_now == Some(r.order_id), "order {} expired outside its own run", r.order_id);
        let left = r.qty - r.filled_qty;
        if left == 0 || r.tif == TimeInForce::Fok {
            return Ok(());
        }
        let head = self
            .orders
            .values()
            .filter(|o| {
                is_live(o.last.status)
                    && !o.waiting
                    && !o.last.order_type.is_market()
                    && o.last.order_id != r.order_id
                    && o.last.symbol == r.symbol
                    && o.last.side == r.side.opposite()
            })
            .min_by_key(|o| (if o.last.side == Side::Sell { o.last.price } else { -o.last.price }, o.queue_key));
        let Some(head) = head else { return Ok(()) };
        let spec = self.spec(r.symbol);
        if r.order_type.is_market() {
            ensure!(r.side == Side::Buy, "a market sell expired with {left} left facing {:?}", head.last);
            let n = self.notional(r.symbol, head.last.price, spec.lot_size)?;
            let lot_cost = n + fee(n, spec.taker_fee_ppm.min(m.fee_cap));
            let budget_left = m.cmd.quote_budget - r.filled_quote - r.fees_paid;
            ensure!(
                lot_cost > budget_left,
                "a market buy expired with {budget_left} of budget left, enough for a lot at {} ({lot_cost})",
                head.last.price
            );
        } else {
            let crosses = match r.side {
                Side::Buy => head.last.price <= r.price,
                Side::Sell => head.last.price >= r.price,
            };
            ensure!(!crosses, "an IOC order expired with {left} left facing a crossing order at {}", head.last.price);
        }
        Ok(())
    }

    /// A cancel inside an order's own command is self-trade prevention; check it follows the
    /// taker's STP mode.
    fn check_stp_cancel(&mut self, cancelled: OrderId) -> Result<(), String> {
        let taker_id = self.taker_now.ok_or("an order was cancelled with no taker running")?;
        let taker = &self.orders[&taker_id];
        let owner = |o: &OrderModel| self.accounts[&o.last.account].owner;
        if cancelled == taker_id {
            match taker.cmd.stp {
                StpMode::CancelResting => return Err("a cancel-resting taker was cancelled".into()),
                StpMode::CancelIncoming => {
                    ensure!(
                        self.stp_cancelled_resting.is_none(),
                        "a cancel-incoming taker also cancelled a resting order"
                    );
                    // It met its own owner's order at the head of the opposite side.
                    let head = self
                        .orders
                        .values()
                        .filter(|o| {
                            is_live(o.last.status)
                                && !o.waiting
                                && !o.last.order_type.is_market()
                                && o.last.symbol == taker.last.symbol
                                && o.last.side == taker.last.side.opposite()
                        })
                        .min_by_key(|o| {
                            (if o.last.side == Side::Sell { o.last.price } else { -o.last.price }, o.queue_key)
                        })
                        .ok_or("a cancel-incoming taker was cancelled facing an empty book")?;
                    ensure!(
                        owner(head) == owner(taker),
                        "a cancel-incoming taker was cancelled facing another owner's order"
                    );
                }
                StpMode::CancelBoth => ensure!(
                    self.stp_cancelled_resting.is_some(),
                    "a cancel-both taker was cancelled without its resting match"
                ),
            }
            return Ok(());
        }
        let resting = &self.orders[&cancelled];
        ensure!(owner(resting) == owner(taker), "STP cancelled another owner's order");
        ensure!(
            resting.last.symbol == taker.last.symbol && resting.last.side == taker.last.side.opposite(),
            "STP cancelled an order the taker could not meet"
        );
        ensure!(taker.cmd.stp != StpMode::CancelIncoming, "a cancel-incoming taker cancelled a resting order");
        let crosses = match taker.last.side {
            _ if taker.last.order_type.is_market() => true,
            Side::Buy => resting.last.price <= taker.last.price,
            Side::Sell => resting.last.price >= taker.last.price,
        };
        ensure!(crosses, "STP cancelled an order beyond the taker's limit");
        ensure!(
            taker.cmd.stp == StpMode::CancelResting || self.stp_cancelled_resting.is_none(),
            "a cancel-both taker cancelled two resting orders"
        );
        self.check_head_of_book(cancelled, taker_id)?;
        self.stp_cancelled_resting = Some(cancelled);
        Ok(())
    }

    fn observe_trade(&mut self, seq: Seq, cmd: &Command, t: Trade) -> Result<(), String> {
        ensure!(t.trade_id == TradeId(self.last_trade_id + 1), "trade id {} after {}", t.trade_id, self.last_trade_id);
        self.last_trade_id = t.trade_id.0;
        self.stats.trades += 1;
        let spec = self.spec(t.symbol);
        ensure!(self.symbols[&t.symbol].1 == SymbolStatus::Trading, "trade on a halted symbol");
        let maker = self.orders.get(&t.maker_order).ok_or("unknown maker")?.clone();
        let taker = self.orders.get(&t.taker_order).ok_or("unknown taker")?.clone();
        for (role, o) in [("maker", &maker), ("taker", &taker)] {
            ensure!(is_live(o.last.status) && !o.waiting, "{role} is not live");
            ensure!(o.last.symbol == t.symbol, "{role} on another symbol");
            ensure!(t.qty <= o.last.remaining_qty, "{role} filled beyond its remainder");
        }
        ensure!(t.maker_order != t.taker_order, "an order traded with itself");
        // Only the command's own order (placed or re-priced) or a stop it triggered takes.
        let own_order = match *cmd {
            Command::PlaceOrder(_) => seq,
            Command::AmendOrder { order_id, .. } => order_id.0,
            _ => 0,
        };
        ensure!(
            t.taker_order == OrderId(own_order) || self.triggered_now.contains(&t.taker_order),
            "order {} took liquidity outside its own command",
            t.taker_order
        );
        ensure!(taker.last.tif != TimeInForce::PostOnly, "a post-only order took liquidity");
        ensure!(self.taker_now == Some(t.taker_order), "the taker is not the order now running");
        self.check_head_of_book(t.maker_order, t.taker_order)?;
        ensure!(t.maker_side == maker.last.side && taker.last.side == maker.last.side.opposite(), "trade sides");
        ensure!(t.maker_account == maker.last.account && t.taker_account == taker.last.account, "trade accounts");
        ensure!(
            self.accounts[&t.maker_account].owner != self.accounts[&t.taker_account].owner,
            "self-trade between accounts of one owner"
        );
        ensure!(!maker.last.order_type.is_market(), "a market order was a maker");
        ensure!(t.price == maker.last.price, "trade price {} is not the maker's price {}", t.price, maker.last.price);
        if !taker.last.order_type.is_market() {
            let crosses = match taker.last.side {
                Side::Buy => t.price <= taker.last.price,
                Side::Sell => t.price >= taker.last.price,
            };
            ensure!(crosses, "trade at {} beyond the taker's limit {}", t.price, taker.last.price);
        }
        ensure!(t.qty > 0 && t.qty % spec.lot_size == 0 && t.price % spec.tick_size == 0, "trade off the grid");
        let quote = self.notional(t.symbol, t.price, t.qty)?;
        ensure!(t.quote_qty == quote, "trade quote {} != {quote}", t.quote_qty);
        let maker_fee = fee(quote, spec.maker_fee_ppm.min(maker.fee_cap));
        let taker_fee = fee(quote, spec.taker_fee_ppm.min(taker.fee_cap));
        ensure!(
            (t.maker_fee, t.taker_fee) == (maker_fee, taker_fee),
            "fees {}/{} != {maker_fee}/{taker_fee}",
            t.maker_fee,
            t.taker_fee
        );
        *self.fees.entry(spec.quote).or_default() += (maker_fee + taker_fee) as i128;
        self.last_price.insert(t.symbol, t.price);
        self.prices_now.push((t.symbol, t.price));

        // The ledger entries of this trade, which precede it.
        let (buyer, seller, buyer_fee, seller_fee) = if t.maker_side == Side::Buy {
            (&maker, &taker, maker_fee, taker_fee)
        } else {
            (&taker, &maker, taker_fee, maker_fee)
        };
        let mut expected: BTreeMap<(u64, AccountId, AssetId), (i64, i64)> = BTreeMap::new();
        expected.insert((t.trade_id.0, buyer.last.account, spec.quote), (0, -(quote + buyer_fee)));
        expected.insert((t.trade_id.0, buyer.last.account, spec.base), (t.qty, 0));
        expected.insert((t.trade_id.0, seller.last.account, spec.base), (0, -t.qty));
        expected.insert((t.trade_id.0, seller.last.account, spec.quote), (quote - seller_fee, 0));
        expected.retain(|_, v| *v != (0, 0));
        let got: BTreeMap<_, _> = self
            .trade_ledger
            .range((t.trade_id.0, AccountId::NONE, AssetId::NONE)..=(t.trade_id.0, AccountId::MAX, AssetId::MAX))
            .map(|(k, v)| (*k, *v))
            .collect();
        ensure!(got == expected, "trade ledger {got:?} != expected {expected:?}");
        for k in expected.keys() {
            self.trade_ledger.remove(k);
        }

        for (id, own_fee, spent) in
            [(buyer.last.order_id, buyer_fee, quote + buyer_fee), (seller.last.order_id, seller_fee, t.qty)]
        {
            let m = self.orders.get_mut(&id).unwrap();
            m.traded_qty += t.qty;
            m.traded_quote += quote;
            m.fees += own_fee;
            let held = self.order_held.entry(id).or_default();
            *held -= spent;
            ensure!(*held >= 0, "order {id} spent more than it held");
        }
        Ok(())
    }

    /// Compares the model with the engine's queries after a command.
    fn check_engine(&self, engine: &Engine) -> Result<(), String> {
        engine.check_invariants().map_err(|e| format!("check_invariants: {e}"))?;

        let assets: Vec<AssetId> = self.scales.keys().copied().collect();
        // Ledger == balances; no negative balance; subtree totals.
        let mut totals: BTreeMap<(AccountId, AssetId), i64> = BTreeMap::new();
        for &account in self.accounts.keys() {
            for &asset in &assets {
                let b = engine.balance_of(account, asset).ok_or("balance_of returned None")?;
                let l = self.ledger.get(&(account, asset)).copied().unwrap_or((0, 0));
                ensure!(
                    (b.available, b.held) == l,
                    "account {account} asset {asset}: balance {b:?} but ledger sums to {l:?}"
                );
                ensure!(b.available >= 0 && b.held >= 0, "negative balance");
                totals.insert((account, asset), b.total());
            }
        }
        for &account in self.accounts.keys() {
            for &asset in &assets {
                let want: i64 = self
                    .accounts
                    .keys()
                    .filter(|&&d| self.is_descendant_or_self(d, account))
                    .map(|d| totals[&(*d, asset)])
                    .sum();
                let got = engine.subtree_total(account, asset).ok_or("subtree_total returned None")?;
                ensure!(got == want, "subtree total of {account} asset {asset}: {got} != {want}");
            }
        }

        // Conservation from the events.
        for &asset in &assets {
            let deposited = self.deposited.get(&asset).copied().unwrap_or(0);
            let withdrawn = self.withdrawn.get(&asset).copied().unwrap_or(0);
            let fees = self.fees.get(&asset).copied().unwrap_or(0);
            let balances: i128 = totals.iter().filter(|((_, x), _)| *x == asset).map(|(_, v)| *v as i128).sum();
            ensure!(
                deposited - withdrawn == balances + fees,
                "asset {asset} not conserved: deposited {deposited} - withdrawn {withdrawn} != balances {balances} + fees {fees}"
            );
            let t = engine.asset_totals(asset).ok_or("asset_totals returned None")?;
            ensure!(
                (t.deposited, t.withdrawn, t.fees_collected as i128) == (deposited, withdrawn, fees),
                "engine asset totals {t:?} differ from the events"
            );
        }

        // Live orders, their holds, and the book.
        let mut held: BTreeMap<(AccountId, AssetId), i64> = BTreeMap::new();
        for &(account, asset, amount) in self.pending.values() {
            *held.entry((account, asset)).or_default() += amount;
        }
        let mut live_by_account: BTreeMap<AccountId, Vec<OrderReport>> = BTreeMap::new();
        let mut depth: BTreeMap<(SymbolId, Side, i64), (i64, u32)> = BTreeMap::new();
        for (id, m) in self.orders.iter().filter(|(_, m)| is_live(m.last.status)) {
            let r = m.last;
            let h = self.order_held.get(id).copied().unwrap_or(0);
            *held.entry((r.account, self.hold_asset(r.symbol, r.side))).or_default() += h;
            live_by_account.entry(r.account).or_default().push(OrderReport { exec: ExecKind::New, ..r });
            if m.waiting {
                ensure!(h == m.initial_hold, "waiting stop {id} holds {h}, placed with {}", m.initial_hold);
                let last = self.last_price.get(&r.symbol).copied().unwrap_or(0);
                ensure!(
                    !stop_fires(r.side, m.cmd.stop_price, last),
                    "stop {id} at {} still waits at last price {last}",
                    m.cmd.stop_price
                );
                continue;
            }
            ensure!(!r.order_type.is_market(), "a market order {id} outlived its command");
            ensure!(
                matches!(r.tif, TimeInForce::Gtc | TimeInForce::PostOnly),
                "a {:?} order {id} rests in the book",
                r.tif
            );
            match r.side {
                Side::Sell => ensure!(h == r.remaining_qty, "resting sell {id} holds {h} for {} left", r.remaining_qty),
                Side::Buy => {
                    let n = self.notional(r.symbol, r.price, r.remaining_qty)?;
                    let n_all = self.notional(r.symbol, r.price, r.qty)?;
                    let (low, high) = (n + fee(n, m.fee_cap), n + fee(n_all, m.fee_cap));
                    ensure!(low <= h && h <= high, "resting buy {id} holds {h}, outside [{low}, {high}]");
                }
            }
            let level = depth.entry((r.symbol, r.side, r.price)).or_default();
            level.0 += r.remaining_qty;
            level.1 += 1;
        }
        for &account in self.accounts.keys() {
            for &asset in &assets {
                let want = held.get(&(account, asset)).copied().unwrap_or(0);
                let got = engine.balance_of(account, asset).unwrap().held;
                ensure!(
                    got == want,
                    "account {account} asset {asset} holds {got}, its orders and withdrawals reserve {want}"
                );
            }
            let mut open = engine.open_orders(account).ok_or("open_orders returned None")?;
            open.iter_mut().for_each(|r| r.exec = ExecKind::New);
            let want = live_by_account.remove(&account).unwrap_or_default();
            ensure!(open == want, "open orders of {account}:\n engine {open:?}\n model  {want:?}");
        }
        ensure!(live_by_account.is_empty(), "live orders of unknown accounts");
        for &symbol in self.symbols.keys() {
            let last = self.last_price.get(&symbol).copied().unwrap_or(0);
            ensure!(
                engine.last_price(symbol) == Some(last),
                "last price of {symbol}: engine {:?}, trades say {last}",
                engine.last_price(symbol)
            );
            let (bids, asks) = engine.depth(symbol, usize::MAX).ok_or("depth returned None")?;
            let model_side = |side: Side| -> Vec<DepthLevel> {
                let mut v: Vec<DepthLevel> = depth
                    .range((symbol, side, i64::MIN)..=(symbol, side, i64::MAX))
                    .map(|(k, l)| DepthLevel { price: k.2, qty: l.0, orders: l.1 })
                    .collect();
                if side == Side::Buy {
                    v.reverse();
                }
                v
            };
            ensure!(
                bids == model_side(Side::Buy),
                "bids of {symbol}: engine {bids:?} model {:?}",
                model_side(Side::Buy)
            );
            ensure!(
                asks == model_side(Side::Sell),
                "asks of {symbol}: engine {asks:?} model {:?}",
                model_side(Side::Sell)
            );
            if let (Some(b), Some(a)) = (bids.first(), asks.first()) {
                ensure!(b.price < a.price, "book {symbol} crossed: {b:?} / {a:?}");
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Stream setup and the interpreter
// ---------------------------------------------------------------------------------------------

fn prefix(two_symbols: bool) -> Vec<Command> {
    let mut v = vec![
        Command::CreateAsset { asset: AssetId(1), scale: 8 },
        Command::CreateAsset { asset: AssetId(2), scale: 6 },
        Command::CreateAsset { asset: AssetId(1), scale: 2 }, // duplicate: rejected
        Command::CreateSymbol(spec1()),
        // tick * lot is not a multiple of 10^8: rejected
        Command::CreateSymbol(SymbolSpec { symbol: SymbolId(3), tick_size: 1, lot_size: 1, ..spec1() }),
    ];
    if two_symbols {
        v.push(Command::CreateSymbol(spec2()));
    }
    for (account, parent, owner) in
        [(101, 0, 1), (102, 101, 1), (103, 102, 1), (201, 0, 2), (202, 201, 2), (301, 0, 3), (204, 201, 1)]
    {
        v.push(Command::CreateAccount { account: AccountId(account), parent: AccountId(parent), owner });
    }
    for (i, &account) in POOL[..6].iter().enumerate() {
        v.push(Command::Deposit { account, asset: AssetId(1), amount: 2_000_000, external_ref: 1_000 + i as u64 });
        v.push(Command::Deposit { account, asset: AssetId(2), amount: 200_000, external_ref: 2_000 + i as u64 });
    }
    v
}

fn symbol_id(idx: usize, two_symbols: bool) -> SymbolId {
    match idx {
        0 => SymbolId(1),
        1 if two_symbols => SymbolId(2),
        1 => SymbolId(1),
        _ => SymbolId(9),
    }
}

/// Amounts in asset 2 (scale 6) are scaled down to match its smaller unit sizes.
fn scaled(asset: AssetId, amount: i64) -> i64 {
    if asset == AssetId(2) {
        amount / 10
    } else {
        amount
    }
}

fn pick_order(model: &Model, pick: usize) -> Option<OrderId> {
    let ids = &model.order_ids;
    if ids.is_empty() || pick % 16 == 15 {
        return None;
    }
    // Most picks name a live order; the rest any order ever placed (usually ended by now).
    let live: Vec<OrderId> =
        model.orders.values().filter(|m| is_live(m.last.status)).map(|m| m.last.order_id).collect();
    if !pick.is_multiple_of(4) && !live.is_empty() {
        return Some(live[(pick / 4) % live.len()]);
    }
    Some(ids[(pick / 4) % ids.len()])
}

fn interpret(op: &Op, model: &Model, engine: &Engine, seq: Seq, two_symbols: bool) -> Command {
    match *op {
        Op::Deposit { acct, asset, amount, ext_ref } => {
            let asset = ASSET_CHOICES[asset];
            Command::Deposit { account: POOL[acct], asset, amount: scaled(asset, amount), external_ref: ext_ref }
        }
        Op::Withdraw { acct, asset, amount, client_ref } => {
            let asset = ASSET_CHOICES[asset];
            Command::WithdrawRequest { account: POOL[acct], asset, amount: scaled(asset, amount / 4), client_ref }
        }
        Op::Decide { pick, approve } => {
            let ids = &model.withdrawal_ids;
            let withdrawal_id = if ids.is_empty() || pick % 8 == 7 {
                seq + 1_000
            } else {
                ids[ids.len() - 1 - pick % ids.len().min(6)]
            };
            if approve {
                Command::WithdrawApprove { withdrawal_id }
            } else {
                Command::WithdrawReject { withdrawal_id }
            }
        }
        Op::Transfer { from, to, asset, amount, client_ref } => {
            let asset = ASSET_CHOICES[asset];
            Command::Transfer { from: POOL[from], to: POOL[to], asset, amount: scaled(asset, amount), client_ref }
        }
        Op::Place(ref p) => {
            let symbol = symbol_id(p.sym, two_symbols);
            let (tick, lot, mid) = grid(symbol);
            let last = engine.last_price(symbol).unwrap_or(0) / tick;
            let reference = if last > 0 { last } else { mid };
            let (mut order_type, mut tif) = (p.order_type, p.tif);
            if !p.raw {
                match order_type {
                    OrderType::Market | OrderType::StopMarket => tif = TimeInForce::Ioc,
                    OrderType::StopLimit if tif == TimeInForce::PostOnly => tif = TimeInForce::Gtc,
                    _ => {}
                }
                if order_type.is_market() && p.tif == TimeInForce::PostOnly && p.lots % 3 == 0 {
                    order_type = OrderType::Limit; // keep post-only limits common
                    tif = TimeInForce::PostOnly;
                }
            }
            let mut price = (mid + p.price_off) * tick;
            let stop_off = if p.side == Side::Buy { p.stop_off } else { -p.stop_off };
            let stop_price = if order_type.is_stop() { (reference + stop_off) * tick } else { 0 };
            let mut qty = p.lots * lot;
            match p.mangle {
                0 => price += 1,
                1 => qty += 1,
                2 => price = -price,
                3 => qty = 0,
                _ => {}
            }
            if order_type.is_market() && p.mangle >= 4 {
                price = 0;
            }
            Command::PlaceOrder(NewOrder {
                account: POOL[p.acct],
                symbol,
                client_order_id: p.coid,
                side: p.side,
                order_type,
                tif,
                stp: p.stp,
                price,
                stop_price,
                qty,
                quote_budget: if p.side == Side::Buy && order_type.is_market() {
                    exact_budget(model, engine, symbol, p).unwrap_or(p.budget)
                } else {
                    0
                },
            })
        }
        Op::Cancel { pick, by_owner } => {
            let order_id = pick_order(model, pick).unwrap_or(OrderId(seq + 7));
            let account = match model.orders.get(&order_id) {
                Some(m) if by_owner => m.last.account,
                _ => POOL[pick % 6],
            };
            Command::CancelOrder { account, order_id }
        }
        Op::CancelClient { acct, coid } => Command::CancelByClientId { account: POOL[acct], client_order_id: coid },
        Op::CancelAll { acct, sym } => {
            let symbol = if sym == 0 { SymbolId::ALL } else { symbol_id(sym - 1, two_symbols) };
            Command::CancelAll { account: POOL[acct], symbol }
        }
        Op::Amend { pick, by_owner, price_off, qty_mode, lots } => {
            let order_id = pick_order(model, pick).unwrap_or(OrderId(seq + 7));
            let (account, symbol, price, qty) = match model.orders.get(&order_id) {
                Some(m) => {
                    (if by_owner { m.last.account } else { POOL[pick % 6] }, m.last.symbol, m.last.price, m.last.qty)
                }
                None => (POOL[pick % 6], SymbolId(1), 1_000_000, 100_000),
            };
            let (tick, lot, mid) = grid(symbol);
            let price = price_off.map_or(price, |off| (mid + off) * tick);
            let qty = match qty_mode {
                0 => qty - lot,
                1 => qty,
                2 => lots * lot,
                _ => qty + lot,
            };
            Command::AmendOrder { account, order_id, price, qty }
        }
        Op::Freeze { acct, frozen } => Command::SetAccountStatus {
            account: POOL[acct],
            status: if frozen { AccountStatus::Frozen } else { AccountStatus::Active },
        },
        Op::Halt { sym, halted } => Command::SetSymbolStatus {
            symbol: symbol_id(sym, two_symbols),
            status: if halted { SymbolStatus::Halted } else { SymbolStatus::Trading },
        },
        Op::UpdateSymbol { sym, maker, taker, variant } => {
            let symbol = symbol_id(sym, two_symbols);
            let mut spec = model.symbols.get(&symbol).map_or(SymbolSpec { symbol, ..spec1() }, |s| s.0);
            spec.maker_fee_ppm = FEES[maker];
            spec.taker_fee_ppm = FEES[taker];
            match variant {
                0 => spec.tick_size *= 2,            // fixed field: rejected
                1 => spec.taker_fee_ppm = 1_000_000, // 100%: rejected
                2 => {
                    spec.min_notional = [0, 300, 1_000][maker % 3];
                    spec.price_band_bps = [0, 500, 1_500][taker % 3];
                }
                _ => {}
            }
            Command::UpdateSymbol(spec)
        }
        Op::CreateAccount { acct, parent, owner } => {
            Command::CreateAccount { account: NEW_ACCOUNTS[acct], parent: NEW_PARENTS[parent], owner }
        }
        Op::CreateAsset { scale } => Command::CreateAsset { asset: AssetId(7), scale },
    }
}

/// For a third of market buys: exactly the cost (fees included) of a few lots at the best ask,
/// the boundary where one lot more is no longer affordable.
fn exact_budget(model: &Model, engine: &Engine, symbol: SymbolId, p: &PlaceOp) -> Option<i64> {
    if p.budget % 3 != 0 || p.lots <= 0 {
        return None;
    }
    let spec = model.symbols.get(&symbol)?.0;
    let best_ask = engine.depth(symbol, 1)?.1.first()?.price;
    let lot_notional = model.notional(symbol, best_ask, spec.lot_size).ok()?;
    let n = lot_notional * (1 + p.budget % p.lots);
    Some(n + fee(n, spec.taker_fee_ppm))
}

/// Balances, open orders and depth answers, per account or symbol.
type QueryViews =
    (Vec<Option<Vec<BalanceView>>>, Vec<Option<Vec<OrderReport>>>, Vec<Option<(Vec<DepthLevel>, Vec<DepthLevel>)>>);
/// Everything a rejected command must not have changed, as seen through the public queries.
fn visible_state(engine: &Engine) -> QueryViews {
    let balances = POOL.iter().map(|&a| engine.balances(a)).collect();
    let orders = POOL.iter().map(|&a| engine.open_orders(a)).collect();
    let depth = [1, 2].iter().map(|&s| engine.depth(SymbolId(s), usize::MAX)).collect();
    (balances, orders, depth)
}

fn timestamp(seq: Seq) -> u64 {
    1_700_000_000_000_000_000 + seq * 1_000
}

/// Runs one stream; on failure returns a description naming the step and its recent history.
fn run(two_symbols: bool, ops: &[Op]) -> Result<(Stats, usize), String> {
    let mut engine = Engine::new();
    let mut model = Model::default();
    let mut commands: Vec<Command> = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    let steps = prefix(two_symbols).into_iter().map(Ok).chain(ops.iter().map(Err));
    for (i, step) in steps.enumerate() {
        let seq = i as Seq + 1;
        let cmd = match step {
            Ok(cmd) => cmd,
            Err(op) => interpret(op, &model, &engine, seq, two_symbols),
        };
        commands.push(cmd);
        let context = |msg: String| {
            let from = commands.len().saturating_sub(8);
            let recent: Vec<String> =
                commands[from..].iter().enumerate().map(|(k, c)| format!("  seq {}: {c:?}", from + k + 1)).collect();
            format!("at seq {seq}, command {cmd:?}: {msg}\nrecent commands:\n{}", recent.join("\n"))
        };
        let expectation = model.expectation(&cmd);
        let before = engine.clone();
        let start = events.len();
        engine.apply(seq, timestamp(seq), &cmd, &mut events);
        let new = &events[start..];
        let rejected = matches!(new, [Event::Rejected { .. }]);
        if let Some(accept) = expectation {
            if accept == rejected {
                return Err(context(format!(
                    "expected {} but got {new:?}",
                    if accept { "acceptance" } else { "rejection" }
                )));
            }
        }
        if let [Event::Rejected { reason }] = new {
            model
                .justify_rejection(&cmd, *reason)
                .map_err(|m| context(format!("rejected with {reason:?}, but {m}")))?;
        }
        model.observe(seq, &cmd, new).map_err(|m| {
            context(format!(
                "{m}\nevents of the command:\n{}",
                new.iter().map(|e| format!("  {e:?}")).collect::<Vec<_>>().join("\n")
            ))
        })?;
        if rejected {
            if visible_state(&before) != visible_state(&engine) {
                return Err(context("a rejected command changed balances, open orders or depth".into()));
            }
            // Only the sequence and timestamp may move: a clone taken before the command, moved to
            // the same sequence by a command that cannot change anything, hashes the same.
            let mut probe = before;
            let mut probe_events = Vec::new();
            probe.apply(
                seq,
                timestamp(seq),
                &Command::CancelOrder { account: AccountId::NONE, order_id: OrderId::NONE },
                &mut probe_events,
            );
            if probe_events != [Event::Rejected { reason: RejectReason::UnknownAccount }] {
                return Err(context(format!("probe command was not rejected: {probe_events:?}")));
            }
            if probe.state_hash() != engine.state_hash() {
                return Err(context("a rejected command changed the state hash beyond the sequence".into()));
            }
        }
        model.check_engine(&engine).map_err(context)?;
    }

    // Determinism: the same stream into a fresh engine gives the same events and state hash.
    let mut replica = Engine::new();
    let mut replica_events = Vec::new();
    for (i, cmd) in commands.iter().enumerate() {
        let seq = i as Seq + 1;
        replica.apply(seq, timestamp(seq), cmd, &mut replica_events);
    }
    if replica_events != events {
        let first = replica_events
            .iter()
            .zip(&events)
            .position(|(a, b)| a != b)
            .unwrap_or(events.len().min(replica_events.len()));
        return Err(format!("replay produced different events from event #{first}"));
    }
    if replica.state_hash() != engine.state_hash() {
        return Err("replay produced a different state hash".into());
    }
    Ok((model.stats, commands.len()))
}

proptest! {
    #![proptest_config(Config {
        cases: 128,
        max_shrink_iters: 4_000,
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn random_streams_keep_every_invariant(
        two_symbols in prop::bool::weighted(0.7),
        ops in prop::collection::vec(op_strategy(), 200..400),
    ) {
        run(two_symbols, &ops).map_err(TestCaseError::fail)?;
    }
}

/// The generator must actually reach the interesting paths, or the property above proves little.
#[test]
fn streams_exercise_matching_triggers_amends_and_rejections() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]));
    let mut total = Stats::default();
    for _ in 0..6 {
        let ops = prop::collection::vec(op_strategy(), 300).new_tree(&mut runner).unwrap().current();
        let (s, _) = run(true, &ops).unwrap_or_else(|e| panic!("{e}"));
        total.commands += s.commands;
        total.rejected += s.rejected;
        total.trades += s.trades;
        total.placed += s.placed;
        total.triggered += s.triggered;
        total.amended += s.amended;
        total.cancelled += s.cancelled;
        total.expired += s.expired;
        for (k, v) in s.reasons {
            *total.reasons.entry(k).or_default() += v;
        }
    }
    eprintln!("coverage over 6 streams: {total:?}");
    assert!(total.trades >= 100, "too few trades: {total:?}");
    assert!(total.triggered >= 5, "too few stop triggers: {total:?}");
    assert!(total.amended >= 20, "too few amends: {total:?}");
    assert!(total.cancelled >= 50 && total.expired >= 20, "too few cancels/expiries: {total:?}");
    assert!(
        total.rejected * 10 >= total.commands && total.rejected * 10 <= total.commands * 6,
        "rejection share off: {total:?}"
    );
}
