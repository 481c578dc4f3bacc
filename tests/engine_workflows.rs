//! Workflow and rejection tests of the business logic (`seqd::engine`).
//!
//! Every command goes through `Venue::apply`, which after each command checks
//! `Engine::check_invariants`, reconciles every account's ledger (the sums of the `Ledger`
//! events' deltas per (account, asset) must equal the balance, and each entry's `*_after` must
//! follow from the ones before), and follows each order's reports through the order state
//! machine. `Venue::reject` also checks that a rejected command emitted exactly one
//! `Event::Rejected` and left the whole state (the engine's `Debug` text, clock excluded) as it
//! was. Expected numbers are worked out by hand in the comments.
//!
//! Units of the test venue: BTC and ETH scale 8, USDT scale 6. Prices are USDT minor units per
//! whole coin; tick 0.01 USDT, lot 0.0001 coin, so one lot at one tick is 1 USDT minor unit and a
//! notional is `price_in_usdt * qty_in_coins` USDT. Fees: maker 0.1 %, taker 0.2 %.

#[path = "common/engine.rs"]
mod common;

use common::{apply_checked_keyed, cents, coins, first_difference, lots, milli, state_without_clock, usdt};
use seqd::engine::Side::{Buy, Sell};
use seqd::engine::*;
use seqd::testkit::samples::gtc_limit;
use std::collections::{BTreeMap, BTreeSet};

const BTC: AssetId = AssetId(1);
const USDT: AssetId = AssetId(2);
const ETH: AssetId = AssetId(3);
const BTC_USDT: SymbolId = SymbolId(1);
const ETH_USDT: SymbolId = SymbolId(2);

/// What `Venue::trader` deposits of each asset.
const START_USDT: i64 = usdt(10_000);
const START_COINS: i64 = coins(10);

fn spec(symbol: SymbolId, base: AssetId) -> SymbolSpec {
    SymbolSpec {
        symbol,
        base,
        quote: USDT,
        tick_size: cents(1),
        lot_size: lots(1),
        min_qty: milli(1),
        min_notional: usdt(1),
        max_order_qty: coins(10),
        maker_fee_ppm: 1_000,
        taker_fee_ppm: 2_000,
        price_band_bps: 0,
    }
}

// ------------------------------------------------------------------------------------------
// Harness
// ------------------------------------------------------------------------------------------

struct Venue {
    engine: Engine,
    seq: Seq,
    accounts: BTreeSet<AccountId>,
    /// Running sums of the ledger's (available_delta, held_delta) per (account, asset).
    ledger: BTreeMap<(AccountId, AssetId), (i64, i64)>,
    /// Last reported status of every order ever seen.
    statuses: BTreeMap<OrderId, OrderStatus>,
    next_deposit_ref: u64,
}

impl Venue {
    fn empty() -> Venue {
        Venue {
            engine: Engine::new(),
            seq: 0,
            accounts: BTreeSet::new(),
            ledger: BTreeMap::new(),
            statuses: BTreeMap::new(),
            next_deposit_ref: 1_000_000,
        }
    }

    /// BTC, USDT and ETH; BTC/USDT and ETH/USDT with `spec`.
    fn new() -> Venue {
        let mut v = Venue::empty();
        v.ok(Command::CreateAsset { asset: BTC, scale: 8 });
        v.ok(Command::CreateAsset { asset: USDT, scale: 6 });
        v.ok(Command::CreateAsset { asset: ETH, scale: 8 });
        v.ok(Command::CreateSymbol(spec(BTC_USDT, BTC)));
        v.ok(Command::CreateSymbol(spec(ETH_USDT, ETH)));
        v
    }

    /// Applies one command with the next sequence and checks everything that must always hold.
    fn apply(&mut self, command: Command) -> Vec<Event> {
        self.apply_keyed(0, command)
    }

    /// `apply` with a request key (0: none).
    fn apply_keyed(&mut self, request_key: u64, command: Command) -> Vec<Event> {
        let events = apply_checked_keyed(&mut self.engine, &mut self.seq, 1_000, request_key, &command);
        for event in &events {
            match *event {
                Event::AccountCreated { account, .. } => {
                    self.accounts.insert(account);
                }
                Event::Ledger(l) => {
                    let sum = self.ledger.entry((l.account, l.asset)).or_default();
                    sum.0 += l.available_delta;
                    sum.1 += l.held_delta;
                    assert_eq!(
                        *sum,
                        (l.available_after, l.held_after),
                        "{l:?} does not follow from the entries before it"
                    );
                }
                Event::Order(r) => self.track_order(&r),
                _ => {}
            }
        }
        self.check_ledger();
        for r in reports(&events) {
            let live = self.engine.order(r.order_id).map(|o| o.status);
            let expected = Some(self.statuses[&r.order_id]).filter(|s| !s.is_terminal());
            assert_eq!(live, expected, "order {} after {command:?}", r.order_id);
        }
        events
    }

    /// Every order's reports follow new -> partially filled -> filled | cancelled | expired.
    fn track_order(&mut self, r: &OrderReport) {
        use OrderTransition::*;
        match self.statuses.get(&r.order_id) {
            None => assert_eq!((r.exec, r.status), (ExecKind::New, OrderStatus::New), "first report {r:?}"),
            Some(&prev) => {
                assert!(!prev.is_terminal(), "report after the end of the order: {r:?}");
                let reachable = [Fill { fully: false }, Fill { fully: true }, Cancel, Expire]
                    .iter()
                    .any(|&t| prev.next(t) == Some(r.status));
                assert!(r.status == prev || reachable, "{prev:?} -> {r:?}");
            }
        }
        match r.exec {
            ExecKind::Cancelled => assert_eq!(r.status, OrderStatus::Cancelled),
            ExecKind::Expired => assert_eq!(r.status, OrderStatus::Expired),
            _ => {}
        }
        self.statuses.insert(r.order_id, r.status);
    }

    /// The reconciliation check: each account's ledger sums to its balances, asset by asset.
    fn check_ledger(&self) {
        for &account in &self.accounts {
            let from_ledger: Vec<(AssetId, i64, i64)> = self
                .ledger
                .range((account, AssetId::NONE)..=(account, AssetId::MAX))
                .filter(|(_, sum)| **sum != (0, 0))
                .map(|(&(_, asset), &(available, held))| (asset, available, held))
                .collect();
            let from_state: Vec<(AssetId, i64, i64)> =
                self.engine.balances(account).unwrap().iter().map(|b| (b.asset, b.available, b.held)).collect();
            assert_eq!(from_ledger, from_state, "ledger of account {account} does not reconcile");
        }
    }

    fn ok(&mut self, command: Command) -> Vec<Event> {
        let events = self.apply(command);
        assert!(!events.iter().any(|e| matches!(e, Event::Rejected { .. })), "{command:?} was rejected: {events:?}");
        events
    }

    /// Applies a command that must be rejected: exactly one event, and no state change.
    fn rejected(&mut self, command: Command) -> RejectReason {
        self.rejected_keyed(0, command)
    }

    /// `rejected` for a command sent with a request key (0: none).
    fn rejected_keyed(&mut self, request_key: u64, command: Command) -> RejectReason {
        let before = state_without_clock(&self.engine);
        let events = self.apply_keyed(request_key, command);
        let after = state_without_clock(&self.engine);
        let reason = match events.as_slice() {
            [Event::Rejected { reason }] => *reason,
            _ => panic!("{command:?} was not rejected with exactly one event: {events:?}"),
        };
        if before != after {
            panic!("rejected {command:?} ({reason:?}) changed the state: {}", first_difference(&before, &after));
        }
        reason
    }

    fn reject(&mut self, command: Command, expected: RejectReason) {
        assert_eq!(self.rejected(command), expected, "{command:?}");
    }

    fn account(&mut self, account: AccountId, parent: AccountId, owner: u64) {
        self.ok(Command::CreateAccount { account, parent, owner });
    }

    fn deposit(&mut self, account: AccountId, asset: AssetId, amount: i64) {
        self.next_deposit_ref += 1;
        self.ok(Command::Deposit { account, asset, amount, external_ref: self.next_deposit_ref });
    }

    /// A root account with START_USDT and START_COINS of every coin the venue has.
    fn trader(&mut self, account: AccountId, owner: u64) {
        self.account(account, AccountId::NONE, owner);
        for (asset, amount) in [(USDT, START_USDT), (BTC, START_COINS), (ETH, START_COINS)] {
            if self.engine.asset_totals(asset).is_some() {
                self.deposit(account, asset, amount);
            }
        }
    }

    /// Places an order that must be accepted; its id is the command's sequence.
    fn place(&mut self, order: NewOrder) -> (OrderId, Vec<Event>) {
        let events = self.ok(Command::PlaceOrder(order));
        (OrderId(self.seq), events)
    }

    /// (available, held)
    fn bal(&self, account: AccountId, asset: AssetId) -> (i64, i64) {
        let b = self.engine.balance_of(account, asset).unwrap();
        (b.available, b.held)
    }

    fn subtree(&self, account: AccountId, asset: AssetId) -> i64 {
        self.engine.subtree_total(account, asset).unwrap()
    }

    /// (bids, asks) as (price, qty, orders), best first.
    #[allow(clippy::type_complexity)]
    fn depth(&self, symbol: SymbolId) -> (Vec<(i64, i64, u32)>, Vec<(i64, i64, u32)>) {
        let (bids, asks) = self.engine.depth(symbol, 100).unwrap();
        let view = |levels: Vec<DepthLevel>| -> Vec<(i64, i64, u32)> {
            levels.iter().map(|l| (l.price, l.qty, l.orders)).collect()
        };
        (view(bids), view(asks))
    }

    fn fees_collected(&self) -> i64 {
        self.engine.asset_totals(USDT).unwrap().fees_collected
    }
}

fn limit(account: AccountId, side: Side, price: i64, qty: i64) -> NewOrder {
    gtc_limit(account, BTC_USDT, side, price, qty)
}

fn with_tif(tif: TimeInForce, order: NewOrder) -> NewOrder {
    NewOrder { tif, ..order }
}

fn market_buy(account: AccountId, qty: i64, quote_budget: i64) -> NewOrder {
    NewOrder { order_type: OrderType::Market, tif: TimeInForce::Ioc, quote_budget, ..limit(account, Buy, 0, qty) }
}

fn market_sell(account: AccountId, qty: i64) -> NewOrder {
    NewOrder { order_type: OrderType::Market, tif: TimeInForce::Ioc, ..limit(account, Sell, 0, qty) }
}

fn stop_limit(account: AccountId, side: Side, stop_price: i64, price: i64, qty: i64) -> NewOrder {
    NewOrder { order_type: OrderType::StopLimit, stop_price, ..limit(account, side, price, qty) }
}

fn stop_market_sell(account: AccountId, stop_price: i64, qty: i64) -> NewOrder {
    NewOrder { order_type: OrderType::StopMarket, stop_price, ..market_sell(account, qty) }
}

fn trades(events: &[Event]) -> Vec<Trade> {
    events.iter().filter_map(|e| if let Event::Trade(t) = e { Some(*t) } else { None }).collect()
}

/// (maker order, taker order, price, qty) of each trade, in order.
fn fills(events: &[Event]) -> Vec<(OrderId, OrderId, i64, i64)> {
    trades(events).iter().map(|t| (t.maker_order, t.taker_order, t.price, t.qty)).collect()
}

fn reports(events: &[Event]) -> Vec<OrderReport> {
    events.iter().filter_map(|e| if let Event::Order(r) = e { Some(*r) } else { None }).collect()
}

/// The last report of an order in these events.
fn report(events: &[Event], order_id: OrderId) -> OrderReport {
    *reports(events).iter().rev().find(|r| r.order_id == order_id).unwrap_or_else(|| panic!("no report of {order_id}"))
}

/// Ids of the orders reported with `exec`, in event order.
fn reported(events: &[Event], exec: ExecKind) -> Vec<OrderId> {
    reports(events).iter().filter(|r| r.exec == exec).map(|r| r.order_id).collect()
}

/// (kind, available_delta, held_delta) of an account's ledger entries in one asset.
fn ledger(events: &[Event], account: AccountId, asset: AssetId) -> Vec<(LedgerKind, i64, i64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Ledger(l) if l.account == account && l.asset == asset => {
                Some((l.kind, l.available_delta, l.held_delta))
            }
            _ => None,
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// Reference data
// ------------------------------------------------------------------------------------------

#[test]
fn reference_data_is_created_updated_halted_and_resumed() {
    use Command::*;
    let mut v = Venue::empty();
    assert_eq!(v.ok(CreateAsset { asset: BTC, scale: 8 }), vec![Event::AssetCreated { asset: BTC, scale: 8 }]);
    v.ok(CreateAsset { asset: USDT, scale: 6 });
    // Scales 0 (points) and 18 are the bounds.
    v.ok(CreateAsset { asset: AssetId(7), scale: 0 });
    v.ok(CreateAsset { asset: AssetId(8), scale: 18 });
    v.reject(CreateAsset { asset: AssetId(9), scale: 19 }, RejectReason::InvalidScale);

    let created = spec(BTC_USDT, BTC);
    assert_eq!(
        v.ok(CreateSymbol(created)),
        vec![Event::SymbolUpdated { spec: created, status: SymbolStatus::Trading }]
    );
    // 0.01 USDT (10^4) * 1 sat is not a multiple of 10^8: a lot at a tick would be a fraction.
    v.reject(
        CreateSymbol(SymbolSpec { symbol: SymbolId(5), lot_size: 1, min_qty: 1, ..created }),
        RejectReason::InvalidSymbolSpec,
    );
    // 1 USDT (10^6) * 100 sats = 10^8 is fine.
    v.ok(CreateSymbol(SymbolSpec { symbol: SymbolId(6), tick_size: usdt(1), lot_size: 100, min_qty: 100, ..created }));

    let updated = SymbolSpec { maker_fee_ppm: 500, taker_fee_ppm: 1_500, min_notional: usdt(5), ..created };
    assert_eq!(
        v.ok(UpdateSymbol(updated)),
        vec![Event::SymbolUpdated { spec: updated, status: SymbolStatus::Trading }]
    );
    // Base, quote, tick and lot are fixed once created.
    v.reject(UpdateSymbol(SymbolSpec { tick_size: cents(2), ..updated }), RejectReason::InvalidSymbolSpec);
    v.reject(UpdateSymbol(SymbolSpec { lot_size: lots(2), ..updated }), RejectReason::InvalidSymbolSpec);
    v.reject(UpdateSymbol(SymbolSpec { quote: AssetId(7), ..updated }), RejectReason::InvalidSymbolSpec);
    v.reject(UpdateSymbol(SymbolSpec { symbol: SymbolId(99), ..updated }), RejectReason::UnknownSymbol);

    const M: AccountId = AccountId(1);
    const T: AccountId = AccountId(2);
    v.trader(M, 1);
    v.trader(T, 2);
    // The update is in force: 0.04 BTC at 100 = 4 USDT is below the new 5 USDT minimum.
    v.reject(PlaceOrder(limit(M, Sell, usdt(100), milli(40))), RejectReason::BelowMinNotional);
    let (m, _) = v.place(limit(M, Sell, usdt(100), coins(1)));

    let halted = v.ok(SetSymbolStatus { symbol: BTC_USDT, status: SymbolStatus::Halted });
    assert_eq!(halted, vec![Event::SymbolUpdated { spec: updated, status: SymbolStatus::Halted }]);
    v.reject(PlaceOrder(limit(T, Buy, usdt(100), coins(1))), RejectReason::SymbolHalted);
    let resumed = v.ok(SetSymbolStatus { symbol: BTC_USDT, status: SymbolStatus::Trading });
    assert_eq!(resumed, vec![Event::SymbolUpdated { spec: updated, status: SymbolStatus::Trading }]);

    let (t, events) = v.place(limit(T, Buy, usdt(100), coins(1)));
    assert_eq!(fills(&events), vec![(m, t, usdt(100), coins(1))]);
    // Notional 100 USDT; the updated fees: maker 0.05 % = 0.05, taker 0.15 % = 0.15 USDT.
    let trade = trades(&events)[0];
    assert_eq!((trade.quote_qty, trade.maker_fee, trade.taker_fee), (100_000_000, 50_000, 150_000));
    assert_eq!(v.bal(M, USDT), (START_USDT + 100_000_000 - 50_000, 0));
    assert_eq!(v.bal(M, BTC), (START_COINS - coins(1), 0));
    // T held 100 + 0.15 (max(0.05 %, 0.15 %)) and spent all of it.
    assert_eq!(v.bal(T, USDT), (START_USDT - 100_150_000, 0));
    assert_eq!(v.bal(T, BTC), (START_COINS + coins(1), 0));
    assert_eq!(v.fees_collected(), 200_000);
    assert_eq!(v.engine.last_price(BTC_USDT), Some(usdt(100)));
}

// ------------------------------------------------------------------------------------------
// Accounts, deposits, withdrawals, transfers
// ------------------------------------------------------------------------------------------

#[test]
fn account_tree_keeps_subtree_totals_through_deposits_transfers_trades_and_withdrawals() {
    // Owner 1:  FUND ─┬─ DESK ── STRAT
    //                 └─ DESK_B
    const FUND: AccountId = AccountId(100);
    const DESK: AccountId = AccountId(110);
    const STRAT: AccountId = AccountId(111);
    const DESK_B: AccountId = AccountId(120);
    const OUTSIDER: AccountId = AccountId(200);
    let mut v = Venue::new();
    let created = v.ok(Command::CreateAccount { account: FUND, parent: AccountId::NONE, owner: 1 });
    assert_eq!(created, vec![Event::AccountCreated { account: FUND, parent: AccountId::NONE, owner: 1 }]);
    v.account(DESK, FUND, 1);
    v.account(STRAT, DESK, 1);
    v.account(DESK_B, FUND, 1);
    v.trader(OUTSIDER, 2);

    v.deposit(FUND, USDT, usdt(1_000));
    v.deposit(DESK, USDT, usdt(200));
    v.deposit(STRAT, USDT, usdt(50));
    v.deposit(DESK_B, USDT, usdt(30));
    // STRAT 50; DESK 200 + 50; DESK_B 30; FUND 1000 + 250 + 30.
    let totals = |v: &Venue| [FUND, DESK, STRAT, DESK_B].map(|a| v.subtree(a, USDT));
    assert_eq!(totals(&v), [usdt(1_280), usdt(250), usdt(50), usdt(30)]);

    // A transfer between cousins moves 20 out of DESK's subtree, none out of FUND's.
    v.ok(Command::Transfer { from: STRAT, to: DESK_B, asset: USDT, amount: usdt(20), client_ref: 1 });
    assert_eq!(totals(&v), [usdt(1_280), usdt(230), usdt(30), usdt(50)]);

    // STRAT sells 0.5 BTC at 100 to the outsider: it gets 50 USDT minus the 0.1 % maker fee (0.05).
    v.deposit(STRAT, BTC, coins(1));
    v.place(limit(STRAT, Sell, usdt(100), milli(500)));
    // Held funds still count in the totals.
    assert_eq!(v.bal(STRAT, BTC), (milli(500), milli(500)));
    assert_eq!(v.subtree(FUND, BTC), coins(1));
    v.place(limit(OUTSIDER, Buy, usdt(100), milli(500)));
    // STRAT 30 + 49.95 = 79.95; DESK 200 + 79.95; DESK_B 50; FUND 1000 + 279.95 + 50.
    assert_eq!(v.bal(STRAT, USDT), (79_950_000, 0));
    assert_eq!(totals(&v), [1_329_950_000, 279_950_000, 79_950_000, usdt(50)]);
    assert_eq!([FUND, DESK, STRAT, DESK_B].map(|a| v.subtree(a, BTC)), [milli(500), milli(500), milli(500), 0]);
    // The outsider's tree is only itself: 10000 - 50 - 0.1 taker fee.
    assert_eq!(v.subtree(OUTSIDER, USDT), START_USDT - 50_100_000);

    // A pending withdrawal only holds; approving it takes the amount out of every ancestor.
    v.ok(Command::WithdrawRequest { account: DESK, asset: USDT, amount: usdt(100), client_ref: 1 });
    let withdrawal_id = v.seq;
    assert_eq!(totals(&v), [1_329_950_000, 279_950_000, 79_950_000, usdt(50)]);
    v.ok(Command::WithdrawApprove { withdrawal_id });
    assert_eq!(totals(&v), [1_229_950_000, 179_950_000, 79_950_000, usdt(50)]);

    // Accounts and subtree totals of unknown ids or assets are absent.
    assert_eq!(v.engine.subtree_total(AccountId(999), USDT), None);
    assert_eq!(v.engine.subtree_total(FUND, AssetId(99)), None);
}

#[test]
fn assets_created_after_accounts_reach_every_ancestor() {
    let mut v = Venue::empty();
    v.ok(Command::CreateAsset { asset: USDT, scale: 6 });
    v.account(AccountId(1), AccountId::NONE, 1); // root, created when one asset existed
    v.account(AccountId(2), AccountId(1), 1); // child, likewise
    v.ok(Command::CreateAsset { asset: BTC, scale: 8 });
    v.deposit(AccountId(1), BTC, coins(1)); // the root now has a BTC slot, the child not
    v.account(AccountId(3), AccountId(2), 1); // grandchild, created knowing BTC
    v.deposit(AccountId(3), BTC, coins(2));
    assert_eq!([1, 2, 3].map(|a| v.subtree(AccountId(a), BTC)), [coins(3), coins(2), coins(2)]);
    v.ok(Command::CreateAsset { asset: ETH, scale: 8 });
    v.account(AccountId(4), AccountId(1), 1);
    v.deposit(AccountId(4), ETH, coins(5));
    assert_eq!([1, 2, 3, 4].map(|a| v.subtree(AccountId(a), ETH)), [coins(5), 0, 0, coins(5)]);
    v.ok(Command::Transfer { from: AccountId(3), to: AccountId(4), asset: BTC, amount: coins(1), client_ref: 1 });
    assert_eq!([1, 2, 3, 4].map(|a| v.subtree(AccountId(a), BTC)), [coins(3), coins(1), coins(1), coins(1)]);
}

#[test]
fn deposit_is_credited_once_per_external_ref() {
    const A: AccountId = AccountId(1);
    const B: AccountId = AccountId(2);
    let mut v = Venue::new();
    v.account(A, AccountId::NONE, 1);
    v.account(B, AccountId::NONE, 2);
    let events = v.ok(Command::Deposit { account: A, asset: USDT, amount: usdt(100), external_ref: 7 });
    let entry = LedgerEntry {
        account: A,
        asset: USDT,
        kind: LedgerKind::Deposit,
        available_delta: usdt(100),
        held_delta: 0,
        available_after: usdt(100),
        held_after: 0,
        ref_kind: RefKind::Deposit,
        ref_id: 7,
    };
    let credited = Event::DepositCredited { account: A, asset: USDT, amount: usdt(100), external_ref: 7 };
    assert_eq!(events, vec![Event::Ledger(entry), credited]);
    // The same external reference is never credited again, whatever the account or amount.
    v.reject(
        Command::Deposit { account: A, asset: USDT, amount: usdt(100), external_ref: 7 },
        RejectReason::DuplicateDepositRef,
    );
    v.reject(
        Command::Deposit { account: B, asset: BTC, amount: coins(1), external_ref: 7 },
        RejectReason::DuplicateDepositRef,
    );
    v.reject(Command::Deposit { account: A, asset: USDT, amount: 0, external_ref: 8 }, RejectReason::InvalidAmount);
    v.reject(Command::Deposit { account: A, asset: USDT, amount: -1, external_ref: 8 }, RejectReason::InvalidAmount);
    // A rejected deposit does not use up its reference.
    v.ok(Command::Deposit { account: A, asset: USDT, amount: usdt(50), external_ref: 8 });
    assert_eq!(v.bal(A, USDT), (usdt(150), 0));
    let totals = v.engine.asset_totals(USDT).unwrap();
    assert_eq!((totals.deposited, totals.withdrawn, totals.supply()), (usdt(150) as i128, 0, usdt(150)));
    // Deposits may go to a frozen account.
    v.ok(Command::SetAccountStatus { account: B, status: AccountStatus::Frozen });
    v.ok(Command::Deposit { account: B, asset: USDT, amount: usdt(1), external_ref: 9 });
    assert_eq!(v.bal(B, USDT), (usdt(1), 0));
}

#[test]
fn withdrawal_is_two_phase() {
    const A: AccountId = AccountId(1);
    let mut v = Venue::new();
    v.account(A, AccountId::NONE, 1);
    v.deposit(A, USDT, usdt(100));

    // Request: holds 30 of 100.
    let events = v.ok(Command::WithdrawRequest { account: A, asset: USDT, amount: usdt(30), client_ref: 1 });
    let first = v.seq;
    assert_eq!(ledger(&events, A, USDT), vec![(LedgerKind::Hold, -usdt(30), usdt(30))]);
    let pending = |id, amount, client_ref, status| Event::WithdrawalUpdated {
        withdrawal_id: id,
        account: A,
        asset: USDT,
        amount,
        client_ref,
        status,
    };
    assert_eq!(events.last(), Some(&pending(first, usdt(30), 1, WithdrawalStatus::Pending)));
    assert_eq!(v.bal(A, USDT), (usdt(70), usdt(30)));
    assert_eq!(v.subtree(A, USDT), usdt(100));
    // Held funds cannot be withdrawn twice: 71 > 70 available.
    v.reject(
        Command::WithdrawRequest { account: A, asset: USDT, amount: usdt(71), client_ref: 2 },
        RejectReason::InsufficientFunds,
    );
    v.reject(
        Command::WithdrawRequest { account: A, asset: USDT, amount: 1, client_ref: 1 },
        RejectReason::DuplicateWithdrawalRef,
    );

    // Approve: debits the held 30.
    let events = v.ok(Command::WithdrawApprove { withdrawal_id: first });
    assert_eq!(ledger(&events, A, USDT), vec![(LedgerKind::Withdrawal, 0, -usdt(30))]);
    assert_eq!(events.last(), Some(&pending(first, usdt(30), 1, WithdrawalStatus::Approved)));
    assert_eq!(v.bal(A, USDT), (usdt(70), 0));
    let totals = v.engine.asset_totals(USDT).unwrap();
    assert_eq!((totals.withdrawn, totals.supply()), (usdt(30) as i128, usdt(70)));
    // A decided withdrawal takes no second decision.
    v.reject(Command::WithdrawApprove { withdrawal_id: first }, RejectReason::WithdrawalNotPending);
    v.reject(Command::WithdrawReject { withdrawal_id: first }, RejectReason::WithdrawalNotPending);

    // Reject: releases the held 20.
    v.ok(Command::WithdrawRequest { account: A, asset: USDT, amount: usdt(20), client_ref: 2 });
    let second = v.seq;
    assert_eq!(v.bal(A, USDT), (usdt(50), usdt(20)));
    let events = v.ok(Command::WithdrawReject { withdrawal_id: second });
    assert_eq!(ledger(&events, A, USDT), vec![(LedgerKind::Release, usdt(20), -usdt(20))]);
    assert_eq!(events.last(), Some(&pending(second, usdt(20), 2, WithdrawalStatus::Rejected)));
    assert_eq!(v.bal(A, USDT), (usdt(70), 0));
    assert_eq!(v.engine.asset_totals(USDT).unwrap().withdrawn, usdt(30) as i128);
    v.reject(Command::WithdrawReject { withdrawal_id: second }, RejectReason::WithdrawalNotPending);
    v.reject(Command::WithdrawApprove { withdrawal_id: second }, RejectReason::WithdrawalNotPending);
    v.reject(Command::WithdrawApprove { withdrawal_id: 424_242 }, RejectReason::UnknownWithdrawal);
    // The client reference of a rejected withdrawal stays used.
    v.reject(
        Command::WithdrawRequest { account: A, asset: USDT, amount: 1, client_ref: 2 },
        RejectReason::DuplicateWithdrawalRef,
    );
}

#[test]
fn transfers_move_funds_within_a_tree_once_per_client_ref() {
    //  ROOT ─┬─ CHILD ── GRANDCHILD
    //        └─ SIBLING            ; OTHER (owner 2) and SAME_OWNER (owner 1) are other trees
    const ROOT: AccountId = AccountId(1);
    const CHILD: AccountId = AccountId(2);
    const GRANDCHILD: AccountId = AccountId(3);
    const SIBLING: AccountId = AccountId(4);
    const OTHER: AccountId = AccountId(5);
    const SAME_OWNER: AccountId = AccountId(6);
    let mut v = Venue::new();
    v.account(ROOT, AccountId::NONE, 1);
    v.account(CHILD, ROOT, 1);
    v.account(GRANDCHILD, CHILD, 1);
    v.account(SIBLING, ROOT, 1);
    v.account(OTHER, AccountId::NONE, 2);
    v.account(SAME_OWNER, AccountId::NONE, 1);
    v.deposit(ROOT, USDT, usdt(1_000));

    let transfer = |from, to, amount, client_ref| Command::Transfer { from, to, asset: USDT, amount, client_ref };
    let events = v.ok(transfer(ROOT, GRANDCHILD, usdt(100), 1));
    assert_eq!(ledger(&events, ROOT, USDT), vec![(LedgerKind::Transfer, -usdt(100), 0)]);
    assert_eq!(ledger(&events, GRANDCHILD, USDT), vec![(LedgerKind::Transfer, usdt(100), 0)]);
    assert_eq!(
        events.last(),
        Some(&Event::Transferred { from: ROOT, to: GRANDCHILD, asset: USDT, amount: usdt(100), client_ref: 1 })
    );
    assert_eq!((v.bal(ROOT, USDT), v.bal(GRANDCHILD, USDT)), ((usdt(900), 0), (usdt(100), 0)));
    assert_eq!([ROOT, CHILD, GRANDCHILD].map(|a| v.subtree(a, USDT)), [usdt(1_000), usdt(100), usdt(100)]);

    // Idempotent by (from, client_ref): a replay of the reference does nothing, whatever it says.
    v.reject(transfer(ROOT, GRANDCHILD, usdt(100), 1), RejectReason::DuplicateTransferRef);
    v.reject(transfer(ROOT, SIBLING, usdt(5), 1), RejectReason::DuplicateTransferRef);
    // Another sender may use the same reference. Cousins are in the same tree.
    v.ok(transfer(GRANDCHILD, SIBLING, usdt(40), 1));
    assert_eq!(
        [ROOT, CHILD, GRANDCHILD, SIBLING].map(|a| v.subtree(a, USDT)),
        [usdt(1_000), usdt(60), usdt(60), usdt(40)]
    );

    // Across trees: rejected, even to a tree of the same owner.
    v.reject(transfer(ROOT, OTHER, usdt(1), 2), RejectReason::NotSameTree);
    v.reject(transfer(ROOT, SAME_OWNER, usdt(1), 2), RejectReason::NotSameTree);
    v.reject(transfer(GRANDCHILD, GRANDCHILD, usdt(1), 2), RejectReason::SameAccount);
    v.reject(transfer(GRANDCHILD, ROOT, usdt(60) + 1, 2), RejectReason::InsufficientFunds);
    v.reject(transfer(GRANDCHILD, ROOT, 0, 2), RejectReason::InvalidAmount);
    v.reject(transfer(GRANDCHILD, AccountId(99), usdt(1), 2), RejectReason::UnknownAccount);
    // Up the tree, all of it.
    v.ok(transfer(GRANDCHILD, ROOT, usdt(60), 2));
    assert_eq!((v.bal(ROOT, USDT), v.bal(GRANDCHILD, USDT)), ((usdt(960), 0), (0, 0)));
    assert_eq!(v.subtree(CHILD, USDT), 0);
    assert_eq!(v.subtree(ROOT, USDT), usdt(1_000));
}

// ------------------------------------------------------------------------------------------
// Orders and matching
// ------------------------------------------------------------------------------------------

#[test]
fn limit_orders_rest_and_cross_with_price_time_priority() {
    const S1: AccountId = AccountId(1);
    const S2: AccountId = AccountId(2);
    const S3: AccountId = AccountId(3);
    const B: AccountId = AccountId(4);
    let mut v = Venue::new();
    for a in [S1, S2, S3, B] {
        v.trader(a, a.0);
    }
    let (s1, _) = v.place(limit(S1, Sell, usdt(101), coins(1)));
    let (s2, _) = v.place(limit(S2, Sell, usdt(100), coins(1)));
    let (s3, _) = v.place(limit(S3, Sell, usdt(100), coins(1)));
    assert_eq!(v.depth(BTC_USDT), (vec![], vec![(usdt(100), coins(2), 2), (usdt(101), coins(1), 1)]));
    assert_eq!(v.bal(S1, BTC), (coins(9), coins(1)));
    let open = v.engine.open_orders(S1).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!((open[0].order_id, open[0].status, open[0].remaining_qty), (s1, OrderStatus::New, coins(1)));

    // Buy 2.5 at 101: the better price first (s2, s3 at 100), at one price the older first
    // (s2 before s3), then 0.5 of s1 at 101.
    let (b, events) = v.place(limit(B, Buy, usdt(101), milli(2_500)));
    assert_eq!(
        fills(&events),
        vec![(s2, b, usdt(100), coins(1)), (s3, b, usdt(100), coins(1)), (s1, b, usdt(101), milli(500))]
    );
    let t = trades(&events);
    assert_eq!(t.iter().map(|t| t.trade_id.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    // Notionals 100, 100, 50.5; maker fees 0.1, 0.1, 0.0505; taker fees 0.2, 0.2, 0.101.
    assert_eq!(
        t.iter().map(|t| (t.quote_qty, t.maker_fee, t.taker_fee)).collect::<Vec<_>>(),
        vec![(100_000_000, 100_000, 200_000), (100_000_000, 100_000, 200_000), (50_500_000, 50_500, 101_000)]
    );
    let r = report(&events, b);
    assert_eq!(
        (r.status, r.filled_qty, r.filled_quote, r.fees_paid),
        (OrderStatus::Filled, milli(2_500), 250_500_000, 501_000)
    );
    // B held 252.5 + 0.505 = 253.005, spent 250.5 + 0.501 = 251.001, got 2.004 back.
    assert_eq!(ledger(&events, B, USDT).first(), Some(&(LedgerKind::Hold, -253_005_000, 253_005_000)));
    assert_eq!(ledger(&events, B, USDT).last(), Some(&(LedgerKind::Release, 2_004_000, -2_004_000)));
    assert_eq!(v.bal(B, USDT), (START_USDT - 251_001_000, 0));
    assert_eq!(v.bal(B, BTC), (START_COINS + milli(2_500), 0));
    assert_eq!(v.bal(S2, USDT), (START_USDT + 99_900_000, 0));
    assert_eq!(v.bal(S3, USDT), (START_USDT + 99_900_000, 0));
    assert_eq!(v.bal(S1, USDT), (START_USDT + 50_449_500, 0));
    assert_eq!(v.bal(S1, BTC), (coins(9), milli(500)));
    // s1 keeps resting with 0.5 left.
    let s1_now = v.engine.order(s1).unwrap();
    assert_eq!(
        (s1_now.status, s1_now.filled_qty, s1_now.remaining_qty),
        (OrderStatus::PartiallyFilled, milli(500), milli(500))
    );
    assert_eq!(v.depth(BTC_USDT), (vec![], vec![(usdt(101), milli(500), 1)]));
    assert_eq!(v.engine.last_price(BTC_USDT), Some(usdt(101)));
    // 0.501 from the taker + 0.2505 from the makers.
    assert_eq!(v.fees_collected(), 751_500);
}

#[test]
fn bids_fill_best_price_first_then_oldest() {
    const B1: AccountId = AccountId(1);
    const B2: AccountId = AccountId(2);
    const B3: AccountId = AccountId(3);
    const S: AccountId = AccountId(4);
    let mut v = Venue::new();
    for a in [B1, B2, B3, S] {
        v.trader(a, a.0);
    }
    let (b1, _) = v.place(limit(B1, Buy, usdt(99), coins(1)));
    let (b2, _) = v.place(limit(B2, Buy, usdt(100), coins(1)));
    let (b3, _) = v.place(limit(B3, Buy, usdt(100), coins(1)));
    let (s, events) = v.place(limit(S, Sell, usdt(99), milli(2_500)));
    assert_eq!(
        fills(&events),
        vec![(b2, s, usdt(100), coins(1)), (b3, s, usdt(100), coins(1)), (b1, s, usdt(99), milli(500))]
    );
    // Proceeds 100 + 100 + 49.5 = 249.5, taker fee 0.2 + 0.2 + 0.099 = 0.499.
    assert_eq!(v.bal(S, USDT), (START_USDT + 249_500_000 - 499_000, 0));
    assert_eq!(v.depth(BTC_USDT), (vec![(usdt(99), milli(500), 1)], vec![]));
}

#[test]
fn partial_fills_keep_the_remainder_live() {
    const M: AccountId = AccountId(1);
    const T1: AccountId = AccountId(2);
    const T2: AccountId = AccountId(3);
    let mut v = Venue::new();
    for a in [M, T1, T2] {
        v.trader(a, a.0);
    }
    let (m, _) = v.place(limit(M, Sell, usdt(100), coins(1)));
    let (t1, events) = v.place(limit(T1, Buy, usdt(100), milli(300)));
    assert_eq!(fills(&events), vec![(m, t1, usdt(100), milli(300))]);
    assert_eq!(report(&events, t1).status, OrderStatus::Filled);
    // m: 0.3 of 1 filled for 30 USDT, maker fee 0.03.
    let r = report(&events, m);
    assert_eq!(
        (r.status, r.filled_qty, r.remaining_qty, r.filled_quote, r.fees_paid),
        (OrderStatus::PartiallyFilled, milli(300), milli(700), usdt(30), 30_000)
    );
    assert_eq!(v.depth(BTC_USDT).1, vec![(usdt(100), milli(700), 1)]);

    // T2 wants 1.5: takes the 0.7 left and rests 0.8.
    let (t2, events) = v.place(limit(T2, Buy, usdt(100), milli(1_500)));
    assert_eq!(fills(&events), vec![(m, t2, usdt(100), milli(700))]);
    assert_eq!(report(&events, m).status, OrderStatus::Filled);
    assert!(v.engine.order(m).is_none());
    assert_eq!(v.engine.open_orders(M).unwrap(), vec![]);
    let r = report(&events, t2);
    assert_eq!((r.status, r.filled_qty, r.remaining_qty), (OrderStatus::PartiallyFilled, milli(700), milli(800)));
    assert_eq!(v.depth(BTC_USDT), (vec![(usdt(100), milli(800), 1)], vec![]));
    // T2 held 150 + 0.3 = 150.3, spent 70 + 0.14; the 80.16 left is exactly 0.8 * 100 + 0.2 %.
    assert_eq!(v.bal(T2, USDT), (START_USDT - 150_300_000, 80_160_000));
    // M sold 1 BTC for 100 USDT, fees 0.03 + 0.07.
    assert_eq!(v.bal(M, USDT), (START_USDT + 99_900_000, 0));
    assert_eq!(v.bal(M, BTC), (coins(9), 0));
}

#[test]
fn fees_are_charged_exactly_and_rounded_down() {
    const M: AccountId = AccountId(1);
    const T: AccountId = AccountId(2);
    const MB: AccountId = AccountId(3);
    const TS: AccountId = AccountId(4);
    let mut v = Venue::new();
    for a in [M, T, MB, TS] {
        v.trader(a, a.0);
    }
    // 0.0123 BTC at 101.01: notional 1.242423 USDT = 1_242_423.
    // Taker fee 0.2 %: 2_484.846 -> 2_484. Maker fee 0.1 %: 1_242.423 -> 1_242.
    let (m, _) = v.place(limit(M, Sell, cents(10_101), lots(123)));
    let (t, events) = v.place(limit(T, Buy, cents(10_101), lots(123)));
    let trade = trades(&events)[0];
    assert_eq!(
        (
            trade.price,
            trade.qty,
            trade.quote_qty,
            trade.maker_fee,
            trade.taker_fee,
            trade.maker_order,
            trade.taker_order
        ),
        (cents(10_101), lots(123), 1_242_423, 1_242, 2_484, m, t)
    );
    assert_eq!((trade.maker_account, trade.taker_account, trade.maker_side), (M, T, Sell));
    // The buyer pays notional and fee out of its hold (1_242_423 + 2_484 = 1_244_907, all of it).
    assert_eq!(
        ledger(&events, T, USDT),
        vec![
            (LedgerKind::Hold, -1_244_907, 1_244_907),
            (LedgerKind::Trade, 0, -1_242_423),
            (LedgerKind::Fee, 0, -2_484),
        ]
    );
    assert_eq!(ledger(&events, T, BTC), vec![(LedgerKind::Trade, lots(123), 0)]);
    // The seller pays its fee out of the proceeds.
    assert_eq!(ledger(&events, M, USDT), vec![(LedgerKind::Trade, 1_242_423, 0), (LedgerKind::Fee, -1_242, 0)]);
    assert_eq!(ledger(&events, M, BTC), vec![(LedgerKind::Trade, 0, -lots(123))]);
    assert_eq!(v.bal(T, USDT), (START_USDT - 1_244_907, 0));
    assert_eq!(v.bal(M, USDT), (START_USDT + 1_241_181, 0));
    assert_eq!(v.fees_collected(), 3_726);

    // A maker buyer holds at the higher rate (100 + 0.2) and pays the maker rate (0.1).
    let (mb, events) = v.place(limit(MB, Buy, usdt(100), coins(1)));
    assert_eq!(ledger(&events, MB, USDT), vec![(LedgerKind::Hold, -100_200_000, 100_200_000)]);
    let (_, events) = v.place(limit(TS, Sell, usdt(100), coins(1)));
    assert_eq!(
        ledger(&events, MB, USDT),
        vec![
            (LedgerKind::Trade, 0, -100_000_000),
            (LedgerKind::Fee, 0, -100_000),
            (LedgerKind::Release, 100_000, -100_000),
        ]
    );
    assert_eq!(report(&events, mb).fees_paid, 100_000);
    assert_eq!(v.bal(MB, USDT), (START_USDT - 100_100_000, 0));
    assert_eq!(v.bal(TS, USDT), (START_USDT + 99_800_000, 0));
    assert_eq!(v.fees_collected(), 3_726 + 300_000);
}

#[test]
fn buy_below_its_limit_releases_the_unused_hold() {
    const M: AccountId = AccountId(1);
    const B1: AccountId = AccountId(2);
    const B2: AccountId = AccountId(3);
    let mut v = Venue::new();
    for a in [M, B1, B2] {
        v.trader(a, a.0);
    }
    // Filled completely: held 110 + 0.22, spent 100 + 0.2, releases 10.02.
    v.place(limit(M, Sell, usdt(100), coins(1)));
    let (_, events) = v.place(limit(B1, Buy, usdt(110), coins(1)));
    assert_eq!(
        ledger(&events, B1, USDT),
        vec![
            (LedgerKind::Hold, -110_220_000, 110_220_000),
            (LedgerKind::Trade, 0, -100_000_000),
            (LedgerKind::Fee, 0, -200_000),
            (LedgerKind::Release, 10_020_000, -10_020_000),
        ]
    );
    assert_eq!(v.bal(B1, USDT), (START_USDT - 100_200_000, 0));

    // Filled in part: 0.4 at 100 costs 40 + 0.08; the 0.6 resting at 110 needs 66 + 0.132;
    // held 110.22 - 40.08 = 70.14, so 4.008 is released.
    v.place(limit(M, Sell, usdt(100), milli(400)));
    let (b2, events) = v.place(limit(B2, Buy, usdt(110), coins(1)));
    assert_eq!(ledger(&events, B2, USDT).last(), Some(&(LedgerKind::Release, 4_008_000, -4_008_000)));
    assert_eq!(v.bal(B2, USDT), (START_USDT - 110_220_000 + 4_008_000, 66_132_000));
    assert_eq!(v.engine.order(b2).unwrap().remaining_qty, milli(600));
    assert_eq!(v.depth(BTC_USDT), (vec![(usdt(110), milli(600), 1)], vec![]));
}

#[test]
fn market_buy_is_bounded_by_its_quote_budget() {
    const M: AccountId = AccountId(1);
    const B: AccountId = AccountId(2);
    const B2: AccountId = AccountId(3);
    const B3: AccountId = AccountId(4);
    let mut v = Venue::new();
    for a in [M, B, B2, B3] {
        v.trader(a, a.0);
    }
    let (m1, _) = v.place(limit(M, Sell, usdt(100), milli(500)));
    let (m2, _) = v.place(limit(M, Sell, usdt(200), coins(1)));
    // Budget 150 for up to 2 BTC. 0.5 at 100 costs 50 + 0.1 = 50.1, leaving 99.9.
    // At 200 a lot (0.0001) costs 0.02 + 0.00004 = 20_040 minor units; 99_900_000 / 20_040 =
    // 4985.02, so 4985 lots = 0.4985 BTC for 99.7 + 0.1994 = 99.8994. 0.0006 is left.
    let (b, events) = v.place(market_buy(B, coins(2), usdt(150)));
    assert_eq!(fills(&events), vec![(m1, b, usdt(100), milli(500)), (m2, b, usdt(200), lots(4_985))]);
    let r = report(&events, b);
    assert_eq!(
        (r.status, r.filled_qty, r.filled_quote, r.fees_paid),
        (OrderStatus::Expired, milli(500) + lots(4_985), 149_700_000, 299_400)
    );
    assert_eq!(ledger(&events, B, USDT).first(), Some(&(LedgerKind::Hold, -usdt(150), usdt(150))));
    assert_eq!(ledger(&events, B, USDT).last(), Some(&(LedgerKind::Release, 600, -600)));
    assert_eq!(v.bal(B, USDT), (START_USDT - 149_999_400, 0));
    assert_eq!(v.bal(B, BTC), (START_COINS + milli(500) + lots(4_985), 0));
    assert_eq!(v.depth(BTC_USDT).1, vec![(usdt(200), coins(1) - lots(4_985), 1)]);

    // Bounded by quantity: 0.1 at 200 costs 20 + 0.04; the rest of 1000 is released.
    let (b2, events) = v.place(market_buy(B2, milli(100), usdt(1_000)));
    assert_eq!(report(&events, b2).status, OrderStatus::Filled);
    assert_eq!(ledger(&events, B2, USDT).last(), Some(&(LedgerKind::Release, 979_960_000, -979_960_000)));
    assert_eq!(v.bal(B2, USDT), (START_USDT - 20_040_000, 0));

    // A budget short of one lot (20_039 < 20_040) buys nothing.
    let (b3, events) = v.place(market_buy(B3, milli(100), 20_039));
    assert_eq!(trades(&events), vec![]);
    assert_eq!(report(&events, b3).status, OrderStatus::Expired);
    assert_eq!(v.bal(B3, USDT), (START_USDT, 0));
}

#[test]
fn market_sell_takes_bids_and_expires_the_rest() {
    const B1: AccountId = AccountId(1);
    const B2: AccountId = AccountId(2);
    const S: AccountId = AccountId(3);
    const S2: AccountId = AccountId(4);
    let mut v = Venue::new();
    for a in [B1, B2, S, S2] {
        v.trader(a, a.0);
    }
    let (b1, _) = v.place(limit(B1, Buy, usdt(100), coins(1)));
    let (b2, _) = v.place(limit(B2, Buy, usdt(99), coins(1)));
    let (s, events) = v.place(market_sell(S, milli(1_500)));
    assert_eq!(fills(&events), vec![(b1, s, usdt(100), coins(1)), (b2, s, usdt(99), milli(500))]);
    assert_eq!(report(&events, s).status, OrderStatus::Filled);
    // 100 - 0.2 + 49.5 - 0.099 = 149.201
    assert_eq!(v.bal(S, USDT), (START_USDT + 149_201_000, 0));
    assert_eq!(v.bal(S, BTC), (START_COINS - milli(1_500), 0));
    assert_eq!(v.depth(BTC_USDT).0, vec![(usdt(99), milli(500), 1)]);

    // 1 BTC into 0.5 of bids: the rest expires and its hold comes back.
    let (s2, events) = v.place(market_sell(S2, coins(1)));
    assert_eq!(fills(&events), vec![(b2, s2, usdt(99), milli(500))]);
    let r = report(&events, s2);
    assert_eq!((r.status, r.filled_qty), (OrderStatus::Expired, milli(500)));
    assert_eq!(ledger(&events, S2, BTC).last(), Some(&(LedgerKind::Release, milli(500), -milli(500))));
    assert_eq!(v.bal(S2, BTC), (START_COINS - milli(500), 0));
    // 49.5 - 0.099
    assert_eq!(v.bal(S2, USDT), (START_USDT + 49_401_000, 0));
    assert_eq!(v.depth(BTC_USDT), (vec![], vec![]));
}

#[test]
fn ioc_remainder_expires() {
    const M: AccountId = AccountId(1);
    const T: AccountId = AccountId(2);
    let mut v = Venue::new();
    v.trader(M, 1);
    v.trader(T, 2);
    let (m, _) = v.place(limit(M, Sell, usdt(100), milli(300)));
    let (t, events) = v.place(with_tif(TimeInForce::Ioc, limit(T, Buy, usdt(100), coins(1))));
    assert_eq!(fills(&events), vec![(m, t, usdt(100), milli(300))]);
    let r = report(&events, t);
    assert_eq!(
        (r.exec, r.status, r.filled_qty, r.remaining_qty),
        (ExecKind::Expired, OrderStatus::Expired, milli(300), 0)
    );
    // 30 + 0.06; nothing rests.
    assert_eq!(v.bal(T, USDT), (START_USDT - 30_060_000, 0));
    assert_eq!(v.depth(BTC_USDT), (vec![], vec![]));
    assert_eq!(v.engine.open_orders(T).unwrap(), vec![]);
}

#[test]
fn fok_fills_completely_or_not_at_all() {
    const M: AccountId = AccountId(1);
    const T: AccountId = AccountId(2);
    let mut v = Venue::new();
    v.trader(M, 1);
    v.trader(T, 2);
    let (m1, _) = v.place(limit(M, Sell, usdt(100), milli(300)));
    let (m2, _) = v.place(limit(M, Sell, usdt(101), milli(300)));
    let book = v.depth(BTC_USDT);

    // 1 BTC up to 101: only 0.6 there.
    let (t, events) = v.place(with_tif(TimeInForce::Fok, limit(T, Buy, usdt(101), coins(1))));
    assert_eq!(trades(&events), vec![]);
    assert_eq!(report(&events, t).status, OrderStatus::Expired);
    assert_eq!(v.bal(T, USDT), (START_USDT, 0));
    assert_eq!(v.depth(BTC_USDT), book);
    // 0.6 at a limit of 100: only 0.3 at or below it.
    let (_, events) = v.place(with_tif(TimeInForce::Fok, limit(T, Buy, usdt(100), milli(600))));
    assert_eq!(trades(&events), vec![]);

    // 0.5 up to 101: 0.3 at 100 and 0.2 at 101 for 30 + 20.2, fees 0.06 + 0.0404.
    let (t, events) = v.place(with_tif(TimeInForce::Fok, limit(T, Buy, usdt(101), milli(500))));
    assert_eq!(fills(&events), vec![(m1, t, usdt(100), milli(300)), (m2, t, usdt(101), milli(200))]);
    assert_eq!(report(&events, t).status, OrderStatus::Filled);
    assert_eq!(v.bal(T, USDT), (START_USDT - 50_300_400, 0));
    assert_eq!(v.depth(BTC_USDT).1, vec![(usdt(101), milli(100), 1)]);
}

#[test]
fn post_only_rests_or_is_rejected() {
    const M: AccountId = AccountId(1);
    const P: AccountId = AccountId(2);
    const S: AccountId = AccountId(3);
    let mut v = Venue::new();
    for a in [M, P, S] {
        v.trader(a, a.0);
    }
    v.place(limit(M, Sell, usdt(100), coins(1)));
    v.reject(
        Command::PlaceOrder(with_tif(TimeInForce::PostOnly, limit(P, Buy, usdt(100), coins(1)))),
        RejectReason::PostOnlyWouldTake,
    );
    let (p, _) = v.place(with_tif(TimeInForce::PostOnly, limit(P, Buy, cents(9_999), coins(1))));
    assert_eq!(v.depth(BTC_USDT).0, vec![(cents(9_999), coins(1), 1)]);
    v.reject(
        Command::PlaceOrder(with_tif(TimeInForce::PostOnly, limit(S, Sell, cents(9_999), coins(1)))),
        RejectReason::PostOnlyWouldTake,
    );
    // It then makes: 99.99 notional, maker fee 0.09999.
    let (s, events) = v.place(limit(S, Sell, cents(9_999), coins(1)));
    assert_eq!(fills(&events), vec![(p, s, cents(9_999), coins(1))]);
    assert_eq!(trades(&events)[0].maker_fee, 99_990);
    assert_eq!(v.bal(P, USDT), (START_USDT - 99_990_000 - 99_990, 0));
}

#[test]
fn self_trade_prevention_in_its_three_modes() {
    // A1 and A2 are two trees of the same owner; X is someone else.
    const A1: AccountId = AccountId(1);
    const A2: AccountId = AccountId(2);
    const X: AccountId = AccountId(3);
    let mut v = Venue::new();
    v.trader(A1, 7);
    v.trader(A2, 7);
    v.trader(X, 8);
    let stp = |mode, order: NewOrder| NewOrder { stp: mode, ..order };

    // Cancel resting: A1's ask goes, the buy trades with X behind it and rests the rest.
    let (a1, _) = v.place(limit(A1, Sell, usdt(100), coins(1)));
    let (x, _) = v.place(limit(X, Sell, usdt(100), coins(1)));
    let (a2, events) = v.place(stp(StpMode::CancelResting, limit(A2, Buy, usdt(100), milli(1_500))));
    assert_eq!(reported(&events, ExecKind::Cancelled), vec![a1]);
    assert_eq!(fills(&events), vec![(x, a2, usdt(100), coins(1))]);
    assert_eq!(v.bal(A1, BTC), (START_COINS, 0));
    // Held 150 + 0.3, spent 100 + 0.2; 50.1 holds the 0.5 resting.
    assert_eq!(v.bal(A2, USDT), (START_USDT - 150_300_000, 50_100_000));
    assert_eq!(v.depth(BTC_USDT), (vec![(usdt(100), milli(500), 1)], vec![]));
    v.ok(Command::CancelOrder { account: A2, order_id: a2 });

    // Cancel incoming: trades with X's older ask, then stops at A1's own and is cancelled.
    let (x2, _) = v.place(limit(X, Sell, usdt(100), milli(400)));
    let (a1b, _) = v.place(limit(A1, Sell, usdt(100), coins(1)));
    let (a2, events) = v.place(stp(StpMode::CancelIncoming, limit(A2, Buy, usdt(100), coins(1))));
    assert_eq!(fills(&events), vec![(x2, a2, usdt(100), milli(400))]);
    let r = report(&events, a2);
    assert_eq!((r.status, r.filled_qty), (OrderStatus::Cancelled, milli(400)));
    assert_eq!(v.engine.order(a1b).unwrap().remaining_qty, coins(1));
    assert_eq!(v.depth(BTC_USDT), (vec![], vec![(usdt(100), coins(1), 1)]));

    // Cancel both: no trade, both orders end.
    let (a2, events) = v.place(stp(StpMode::CancelBoth, limit(A2, Buy, usdt(100), coins(1))));
    assert_eq!(trades(&events), vec![]);
    assert_eq!(reported(&events, ExecKind::Cancelled), vec![a1b, a2]);
    assert_eq!(v.depth(BTC_USDT), (vec![], vec![]));
    assert_eq!(v.bal(A1, BTC), (START_COINS, 0));
    assert_eq!(v.bal(A1, USDT), (START_USDT, 0));
    // A2 bought 1 + 0.4 BTC at 100 as taker: 140 + 0.28.
    assert_eq!(v.bal(A2, USDT), (START_USDT - 140_280_000, 0));
    assert_eq!(v.bal(A2, BTC), (START_COINS + milli(1_400), 0));
}

#[test]
fn stop_limit_and_stop_market_trigger_on_a_trade_in_the_same_apply() {
    const X: AccountId = AccountId(1);
    const Y: AccountId = AccountId(2);
    const T: AccountId = AccountId(3);
    const M: AccountId = AccountId(4);
    const Z: AccountId = AccountId(5);
    const W: AccountId = AccountId(6);
    let mut v = Venue::new();
    for a in [X, Y, T, M, Z, W] {
        v.trader(a, a.0);
    }
    // Last price 100.
    v.place(limit(X, Sell, usdt(100), milli(100)));
    v.place(limit(Y, Buy, usdt(100), milli(100)));

    // Buy stop at 105, limit 106: holds 106 + 0.212 now, stays out of the book.
    let (t, _) = v.place(stop_limit(T, Buy, usdt(105), usdt(106), coins(1)));
    assert_eq!(v.bal(T, USDT), (START_USDT - 106_212_000, 106_212_000));
    assert_eq!(v.depth(BTC_USDT), (vec![], vec![]));
    assert_eq!(v.engine.order(t).unwrap().status, OrderStatus::New);
    v.reject(
        Command::PlaceOrder(stop_limit(T, Buy, usdt(100), usdt(106), coins(1))),
        RejectReason::StopWouldTriggerImmediately,
    );

    let (m, _) = v.place(limit(M, Sell, usdt(106), coins(1)));
    let (x, _) = v.place(limit(X, Sell, usdt(105), milli(100)));
    let (y, events) = v.place(limit(Y, Buy, usdt(105), milli(100)));
    // The trade at 105 fires the stop, which takes M's ask at 106, all in Y's command.
    assert_eq!(fills(&events), vec![(x, y, usdt(105), milli(100)), (m, t, usdt(106), coins(1))]);
    assert_eq!(reported(&events, ExecKind::Triggered), vec![t]);
    assert_eq!(report(&events, t).status, OrderStatus::Filled);
    assert_eq!(v.bal(T, USDT), (START_USDT - 106_212_000, 0));
    assert_eq!(v.bal(T, BTC), (START_COINS + coins(1), 0));
    assert_eq!(v.engine.last_price(BTC_USDT), Some(usdt(106)));

    // Sell stop-market at 95 for 0.5: holds the 0.5 BTC.
    let (z, _) = v.place(stop_market_sell(Z, usdt(95), milli(500)));
    assert_eq!(v.bal(Z, BTC), (START_COINS - milli(500), milli(500)));
    let (w, _) = v.place(limit(W, Buy, usdt(94), coins(1)));
    let (x, _) = v.place(limit(X, Sell, usdt(95), milli(100)));
    let (y, events) = v.place(limit(Y, Buy, usdt(95), milli(100)));
    assert_eq!(fills(&events), vec![(x, y, usdt(95), milli(100)), (w, z, usdt(94), milli(500))]);
    assert_eq!(report(&events, z).status, OrderStatus::Filled);
    // 47 - 0.094
    assert_eq!(v.bal(Z, USDT), (START_USDT + 46_906_000, 0));
    assert_eq!(v.bal(Z, BTC), (START_COINS - milli(500), 0));
    assert_eq!(v.depth(BTC_USDT).0, vec![(usdt(94), milli(500), 1)]);
}

#[test]
fn order_reports_carry_the_stop_price() {
    let mut v = Venue::new();
    v.trader(AccountId(1), 1);
    let (limit_order, events) = v.place(limit(AccountId(1), Buy, usdt(90), coins(1)));
    assert_eq!(report(&events, limit_order).stop_price, 0);
    let (stop, events) = v.place(stop_limit(AccountId(1), Buy, usdt(105), usdt(106), coins(1)));
    assert_eq!((report(&events, stop).stop_price, report(&events, stop).price), (usdt(105), usdt(106)));
    let (stop_market, events) = v.place(stop_market_sell(AccountId(1), usdt(95), milli(500)));
    assert_eq!((report(&events, stop_market).stop_price, report(&events, stop_market).price), (usdt(95), 0));
    // Queries report it too, and so does the end of the order.
    assert_eq!(v.engine.order(stop).unwrap().stop_price, usdt(105));
    let events = v.ok(Command::CancelOrder { account: AccountId(1), order_id: stop });
    assert_eq!(report(&events, stop).stop_price, usdt(105));
}

#[test]
fn several_stops_fire_in_order_id_order_and_cascade() {
    const X: AccountId = AccountId(1);
    const Y: AccountId = AccountId(2);
    const M: AccountId = AccountId(3);
    const A: AccountId = AccountId(4);
    const B: AccountId = AccountId(5);
    const C: AccountId = AccountId(6);
    let mut v = Venue::new();
    for a in [X, Y, M, A, B, C] {
        v.trader(a, a.0);
    }
    v.place(limit(X, Sell, usdt(100), milli(100)));
    v.place(limit(Y, Buy, usdt(100), milli(100)));
    let (m1, _) = v.place(limit(M, Sell, usdt(106), milli(100)));
    let (m2, _) = v.place(limit(M, Sell, usdt(107), milli(100)));
    let (m3, _) = v.place(limit(M, Sell, usdt(108), milli(100)));
    // c is the oldest but its stop (107) is only reached by the others' trades.
    let (c, _) = v.place(stop_limit(C, Buy, usdt(107), usdt(110), milli(100)));
    let (a, _) = v.place(stop_limit(A, Buy, usdt(104), usdt(110), milli(100)));
    let (b, _) = v.place(stop_limit(B, Buy, usdt(102), usdt(110), milli(100)));
    let (x, _) = v.place(limit(X, Sell, usdt(105), milli(100)));
    let (y, events) = v.place(limit(Y, Buy, usdt(105), milli(100)));
    // The trade at 105 fires a and b (stops 104 and 102) in id order: a takes the best ask
    // although b's stop is lower. Their trades reach 107, which fires c.
    assert_eq!(reported(&events, ExecKind::Triggered), vec![a, b, c]);
    assert_eq!(
        fills(&events),
        vec![
            (x, y, usdt(105), milli(100)),
            (m1, a, usdt(106), milli(100)),
            (m2, b, usdt(107), milli(100)),
            (m3, c, usdt(108), milli(100)),
        ]
    );
    // Each held 11 + 0.022 and paid price * 0.1 + 0.2 %.
    assert_eq!(v.bal(A, USDT), (START_USDT - 10_621_200, 0));
    assert_eq!(v.bal(B, USDT), (START_USDT - 10_721_400, 0));
    assert_eq!(v.bal(C, USDT), (START_USDT - 10_821_600, 0));
    assert_eq!(v.engine.last_price(BTC_USDT), Some(usdt(108)));
}

#[test]
fn cancel_by_order_id_and_by_client_order_id() {
    const A: AccountId = AccountId(1);
    const B: AccountId = AccountId(2);
    let mut v = Venue::new();
    v.trader(A, 1);
    v.trader(B, 2);
    let with_client_id = |id, order: NewOrder| NewOrder { client_order_id: id, ..order };
    let (a1, _) = v.place(with_client_id(42, limit(A, Buy, usdt(99), coins(1))));
    let (a2, _) = v.place(with_client_id(43, limit(A, Sell, usdt(101), coins(1))));
    v.reject(
        Command::PlaceOrder(with_client_id(42, limit(A, Buy, usdt(98), coins(1)))),
        RejectReason::DuplicateClientOrderId,
    );
    // Client order ids are per account.
    let (b1, _) = v.place(with_client_id(42, limit(B, Buy, usdt(98), coins(1))));
    // Another account's order looks unknown.
    v.reject(Command::CancelOrder { account: B, order_id: a1 }, RejectReason::UnknownOrder);
    v.reject(Command::CancelByClientId { account: B, client_order_id: 43 }, RejectReason::UnknownOrder);

    let events = v.ok(Command::CancelByClientId { account: A, client_order_id: 42 });
    // Releases 99 + 0.198.
    assert_eq!(ledger(&events, A, USDT), vec![(LedgerKind::Release, 99_198_000, -99_198_000)]);
    let r = report(&events, a1);
    assert_eq!((r.exec, r.status, r.client_order_id), (ExecKind::Cancelled, OrderStatus::Cancelled, 42));
    assert_eq!(v.bal(A, USDT), (START_USDT, 0));

    let events = v.ok(Command::CancelOrder { account: A, order_id: a2 });
    assert_eq!(report(&events, a2).status, OrderStatus::Cancelled);
    assert_eq!(v.bal(A, BTC), (START_COINS, 0));
    v.reject(Command::CancelOrder { account: A, order_id: a2 }, RejectReason::UnknownOrder);
    v.reject(Command::CancelByClientId { account: A, client_order_id: 42 }, RejectReason::UnknownOrder);
    // The client order id of an ended order is free again.
    v.place(with_client_id(42, limit(A, Buy, usdt(97), coins(1))));
    assert_eq!(v.depth(BTC_USDT).0, vec![(usdt(98), coins(1), 1), (usdt(97), coins(1), 1)]);
    assert_eq!(v.engine.order(b1).unwrap().client_order_id, 42);
}

#[test]
fn cancel_all_per_account_and_per_symbol() {
    const A: AccountId = AccountId(1);
    const B: AccountId = AccountId(2);
    let mut v = Venue::new();
    v.trader(A, 1);
    v.trader(B, 2);
    let (a1, _) = v.place(limit(A, Buy, usdt(99), coins(1)));
    let (a2, _) = v.place(NewOrder { symbol: ETH_USDT, ..limit(A, Sell, usdt(50), coins(1)) });
    let (a3, _) = v.place(limit(A, Sell, usdt(101), coins(1)));
    let (a4, _) = v.place(stop_limit(A, Sell, usdt(90), usdt(89), coins(1)));
    let (b1, _) = v.place(limit(B, Buy, usdt(98), coins(1)));
    assert_eq!(v.bal(A, BTC), (START_COINS - coins(2), coins(2)));

    let events = v.ok(Command::CancelAll { account: A, symbol: BTC_USDT });
    assert_eq!(reported(&events, ExecKind::Cancelled), vec![a1, a3, a4]);
    assert_eq!(v.bal(A, USDT), (START_USDT, 0));
    assert_eq!(v.bal(A, BTC), (START_COINS, 0));
    assert_eq!(v.bal(A, ETH), (START_COINS - coins(1), coins(1)));
    assert_eq!(v.engine.open_orders(A).unwrap().iter().map(|o| o.order_id).collect::<Vec<_>>(), vec![a2]);

    let events = v.ok(Command::CancelAll { account: A, symbol: SymbolId::ALL });
    assert_eq!(reported(&events, ExecKind::Cancelled), vec![a2]);
    assert_eq!(v.engine.open_orders(A).unwrap(), vec![]);
    assert_eq!(v.bal(A, ETH), (START_COINS, 0));
    assert_eq!(v.engine.open_orders(B).unwrap().iter().map(|o| o.order_id).collect::<Vec<_>>(), vec![b1]);
    assert_eq!(v.depth(BTC_USDT), (vec![(usdt(98), coins(1), 1)], vec![]));
    // Nothing left to cancel is not an error.
    assert_eq!(v.ok(Command::CancelAll { account: A, symbol: SymbolId::ALL }), vec![]);
    v.reject(Command::CancelAll { account: A, symbol: SymbolId(99) }, RejectReason::UnknownSymbol);
    v.reject(Command::CancelAll { account: AccountId(99), symbol: SymbolId::ALL }, RejectReason::UnknownAccount);
}

#[test]
fn amend_down_keeps_priority_and_reprice_loses_it() {
    const M1: AccountId = AccountId(1);
    const M2: AccountId = AccountId(2);
    const T: AccountId = AccountId(3);
    let mut v = Venue::new();
    for a in [M1, M2, T] {
        v.trader(a, a.0);
    }
    let amend = |account, order_id, price, qty| Command::AmendOrder { account, order_id, price, qty };

    // Quantity down at the same price: stays first, releases 0.4 BTC.
    let (m1, _) = v.place(limit(M1, Sell, usdt(100), coins(1)));
    let (m2, _) = v.place(limit(M2, Sell, usdt(100), coins(1)));
    let events = v.ok(amend(M1, m1, usdt(100), milli(600)));
    assert_eq!(ledger(&events, M1, BTC), vec![(LedgerKind::Release, milli(400), -milli(400))]);
    let r = report(&events, m1);
    assert_eq!((r.exec, r.qty, r.remaining_qty), (ExecKind::Amended, milli(600), milli(600)));
    assert_eq!(v.bal(M1, BTC), (START_COINS - milli(600), milli(600)));
    assert_eq!(v.depth(BTC_USDT).1, vec![(usdt(100), milli(1_600), 2)]);
    let (t, events) = v.place(limit(T, Buy, usdt(100), milli(600)));
    assert_eq!(fills(&events), vec![(m1, t, usdt(100), milli(600))]);

    // A price change loses priority, even when the price comes back.
    let (m3, _) = v.place(limit(M1, Sell, usdt(100), coins(1)));
    v.ok(amend(M2, m2, cents(10_001), coins(1)));
    v.ok(amend(M2, m2, usdt(100), coins(1)));
    let (t, events) = v.place(limit(T, Buy, usdt(100), coins(1)));
    assert_eq!(fills(&events), vec![(m3, t, usdt(100), coins(1))]);

    // So does a quantity up at the same price.
    let (m4, _) = v.place(limit(M1, Sell, usdt(100), coins(1)));
    let events = v.ok(amend(M2, m2, usdt(100), milli(1_200)));
    assert_eq!(ledger(&events, M2, BTC), vec![(LedgerKind::Hold, -milli(200), milli(200))]);
    let (t, events) = v.place(limit(T, Buy, usdt(100), coins(1)));
    assert_eq!(fills(&events), vec![(m4, t, usdt(100), coins(1))]);
    assert_eq!(v.depth(BTC_USDT).1, vec![(usdt(100), milli(1_200), 1)]);

    // Amending below what is filled, or an order that is gone, is refused.
    let (t, _) = v.place(limit(T, Buy, usdt(100), milli(200)));
    assert_eq!(v.engine.order(m2).unwrap().filled_qty, milli(200));
    v.reject(amend(M2, m2, usdt(100), milli(200)), RejectReason::InvalidQuantity);
    v.reject(amend(T, t, usdt(100), milli(200)), RejectReason::UnknownOrder);
    v.reject(amend(M1, m2, usdt(100), coins(1)), RejectReason::UnknownOrder);
}

#[test]
fn amend_that_crosses_trades() {
    const B: AccountId = AccountId(1);
    const S: AccountId = AccountId(2);
    let mut v = Venue::new();
    v.trader(B, 1);
    v.trader(S, 2);
    let (b, _) = v.place(limit(B, Buy, usdt(99), coins(1)));
    let (s, _) = v.place(limit(S, Sell, usdt(100), milli(1_200)));
    // B held 99 + 0.198; at 100 it needs 100 + 0.2, so 1.002 more; it takes 1 BTC at 100 as the
    // taker (fee 0.2) and spends all of it.
    let events = v.ok(Command::AmendOrder { account: B, order_id: b, price: usdt(100), qty: coins(1) });
    assert_eq!(ledger(&events, B, USDT).first(), Some(&(LedgerKind::Hold, -1_002_000, 1_002_000)));
    assert_eq!(reports(&events).first().map(|r| (r.order_id, r.exec)), Some((b, ExecKind::Amended)));
    assert_eq!(fills(&events), vec![(s, b, usdt(100), coins(1))]);
    assert_eq!(trades(&events)[0].taker_fee, 200_000);
    assert_eq!(report(&events, b).status, OrderStatus::Filled);
    assert_eq!(v.bal(B, USDT), (START_USDT - 100_200_000, 0));
    assert_eq!(v.bal(S, USDT), (START_USDT + 99_900_000, 0));
    assert_eq!(v.depth(BTC_USDT), (vec![], vec![(usdt(100), milli(200), 1)]));
    // A post-only order may not be amended into a take.
    let (p, _) = v.place(with_tif(TimeInForce::PostOnly, limit(B, Buy, usdt(99), coins(1))));
    v.reject(
        Command::AmendOrder { account: B, order_id: p, price: usdt(100), qty: coins(1) },
        RejectReason::PostOnlyWouldTake,
    );
}

// ------------------------------------------------------------------------------------------
// Risk controls
// ------------------------------------------------------------------------------------------

#[test]
fn frozen_account_may_cancel_but_not_place_withdraw_or_send() {
    const A: AccountId = AccountId(1);
    const A_SUB: AccountId = AccountId(2);
    let mut v = Venue::new();
    v.trader(A, 1);
    v.account(A_SUB, A, 1);
    v.deposit(A_SUB, USDT, usdt(10));
    let (a1, _) = v.place(limit(A, Buy, usdt(99), coins(1)));

    let events = v.ok(Command::SetAccountStatus { account: A, status: AccountStatus::Frozen });
    assert_eq!(events, vec![Event::AccountStatusChanged { account: A, status: AccountStatus::Frozen }]);
    let frozen = RejectReason::AccountFrozen;
    v.reject(Command::PlaceOrder(limit(A, Sell, usdt(101), coins(1))), frozen);
    v.reject(Command::PlaceOrder(market_sell(A, coins(1))), frozen);
    v.reject(Command::WithdrawRequest { account: A, asset: USDT, amount: usdt(1), client_ref: 1 }, frozen);
    v.reject(Command::Transfer { from: A, to: A_SUB, asset: USDT, amount: usdt(1), client_ref: 1 }, frozen);
    v.reject(Command::AmendOrder { account: A, order_id: a1, price: usdt(98), qty: coins(1) }, frozen);
    // Funds may still come in.
    v.ok(Command::Transfer { from: A_SUB, to: A, asset: USDT, amount: usdt(10), client_ref: 1 });
    // Cancels are allowed: the hold of 99 + 0.198 comes back.
    let events = v.ok(Command::CancelOrder { account: A, order_id: a1 });
    assert_eq!(report(&events, a1).status, OrderStatus::Cancelled);
    assert_eq!(v.bal(A, USDT), (START_USDT + usdt(10), 0));

    v.ok(Command::SetAccountStatus { account: A, status: AccountStatus::Active });
    v.place(limit(A, Sell, usdt(101), coins(1)));
    v.ok(Command::WithdrawRequest { account: A, asset: USDT, amount: usdt(1), client_ref: 1 });
}

#[test]
fn halted_symbol_accepts_only_cancels() {
    const M: AccountId = AccountId(1);
    const T: AccountId = AccountId(2);
    let mut v = Venue::new();
    v.trader(M, 1);
    v.trader(T, 2);
    let (m1, _) = v.place(limit(M, Sell, usdt(100), coins(1)));
    let (m2, _) = v.place(limit(M, Sell, usdt(101), coins(1)));
    let (m3, _) = v.place(limit(M, Sell, usdt(102), coins(1)));
    v.ok(Command::SetSymbolStatus { symbol: BTC_USDT, status: SymbolStatus::Halted });

    let halted = RejectReason::SymbolHalted;
    v.reject(Command::PlaceOrder(limit(T, Buy, usdt(100), coins(1))), halted);
    v.reject(Command::PlaceOrder(market_buy(T, coins(1), usdt(200))), halted);
    v.reject(Command::PlaceOrder(stop_limit(T, Buy, usdt(105), usdt(106), coins(1))), halted);
    v.reject(Command::AmendOrder { account: M, order_id: m1, price: usdt(100), qty: milli(500) }, halted);
    // Other symbols trade on.
    v.place(NewOrder { symbol: ETH_USDT, ..limit(T, Buy, usdt(50), coins(1)) });

    let events = v.ok(Command::CancelOrder { account: M, order_id: m1 });
    assert_eq!(report(&events, m1).status, OrderStatus::Cancelled);
    let events = v.ok(Command::CancelAll { account: M, symbol: BTC_USDT });
    assert_eq!(reported(&events, ExecKind::Cancelled), vec![m2, m3]);
    assert_eq!(v.bal(M, BTC), (START_COINS, 0));

    v.ok(Command::SetSymbolStatus { symbol: BTC_USDT, status: SymbolStatus::Trading });
    let (m4, _) = v.place(limit(M, Sell, usdt(100), coins(1)));
    let (t, events) = v.place(limit(T, Buy, usdt(100), coins(1)));
    assert_eq!(fills(&events), vec![(m4, t, usdt(100), coins(1))]);
}

#[test]
fn price_band_and_max_order_size() {
    const X: AccountId = AccountId(1);
    const Y: AccountId = AccountId(2);
    const T: AccountId = AccountId(3);
    let mut v = Venue::new();
    for a in [X, Y, T] {
        v.trader(a, a.0);
    }
    v.ok(Command::UpdateSymbol(SymbolSpec { price_band_bps: 1_000, ..spec(BTC_USDT, BTC) }));
    // Before the first trade there is no reference price: anything goes.
    let (far, _) = v.place(limit(T, Buy, usdt(10), coins(1)));
    v.ok(Command::CancelOrder { account: T, order_id: far });
    v.place(limit(X, Sell, usdt(100), milli(100)));
    v.place(limit(Y, Buy, usdt(100), milli(100)));
    assert_eq!(v.engine.last_price(BTC_USDT), Some(usdt(100)));

    // 10 % around 100: 90.00 and 110.00 are in, 89.99 and 110.01 out.
    let ioc = |side, price| Command::PlaceOrder(with_tif(TimeInForce::Ioc, limit(T, side, price, coins(1))));
    v.ok(ioc(Buy, usdt(110)));
    v.ok(ioc(Sell, usdt(90)));
    v.reject(ioc(Buy, cents(11_001)), RejectReason::PriceOutOfBand);
    v.reject(ioc(Sell, cents(8_999)), RejectReason::PriceOutOfBand);
    let (bid, _) = v.place(limit(T, Buy, usdt(100), coins(1)));
    v.reject(
        Command::AmendOrder { account: T, order_id: bid, price: cents(11_001), qty: coins(1) },
        RejectReason::PriceOutOfBand,
    );
    v.reject(
        Command::AmendOrder { account: T, order_id: bid, price: cents(8_999), qty: coins(1) },
        RejectReason::PriceOutOfBand,
    );
    v.ok(Command::AmendOrder { account: T, order_id: bid, price: usdt(90), qty: coins(1) });

    // Max order size 10 BTC.
    v.ok(Command::PlaceOrder(with_tif(TimeInForce::Ioc, limit(T, Buy, usdt(100), coins(10)))));
    v.reject(Command::PlaceOrder(limit(T, Buy, usdt(100), coins(10) + lots(1))), RejectReason::AboveMaxQuantity);
    v.reject(
        Command::AmendOrder { account: T, order_id: bid, price: usdt(90), qty: coins(10) + lots(1) },
        RejectReason::AboveMaxQuantity,
    );
    v.ok(Command::UpdateSymbol(SymbolSpec { price_band_bps: 1_000, max_order_qty: coins(5), ..spec(BTC_USDT, BTC) }));
    v.reject(Command::PlaceOrder(limit(T, Buy, usdt(100), coins(10))), RejectReason::AboveMaxQuantity);
    v.ok(Command::PlaceOrder(with_tif(TimeInForce::Ioc, limit(T, Buy, usdt(100), coins(5)))));
}

// ------------------------------------------------------------------------------------------
// Every rejection reason
// ------------------------------------------------------------------------------------------

const RA: AccountId = AccountId(10);
const RA_SUB: AccountId = AccountId(11);
const RB: AccountId = AccountId(20);
const RFROZEN: AccountId = AccountId(30);
/// First account of a chain of MAX_TREE_DEPTH + 1 accounts (the last has MAX_TREE_DEPTH ancestors).
const DEEP: AccountId = AccountId(1_000);

struct Fixture {
    v: Venue,
    /// RA's ask of 1 BTC at 105, client order id 7.
    resting: OrderId,
    /// RB's bid of 1 BTC at 95.
    others: OrderId,
    /// RA's waiting buy stop.
    stop: OrderId,
    approved_withdrawal: u64,
}

/// A venue where every rejection can happen: last price 100 with a 10 % band, live orders,
/// used references, a frozen account, a halted symbol and a full-depth account chain.
fn rejection_fixture() -> Fixture {
    use Command::*;
    let mut v = Venue::new();
    v.trader(RA, 1);
    v.account(RA_SUB, RA, 1);
    v.trader(RB, 2);
    v.trader(RFROZEN, 3);
    v.ok(SetAccountStatus { account: RFROZEN, status: AccountStatus::Frozen });
    v.place(limit(RB, Sell, usdt(100), milli(100)));
    v.place(limit(RA, Buy, usdt(100), milli(100)));
    v.ok(UpdateSymbol(SymbolSpec { price_band_bps: 1_000, ..spec(BTC_USDT, BTC) }));
    let (resting, _) = v.place(NewOrder { client_order_id: 7, ..limit(RA, Sell, usdt(105), coins(1)) });
    let (others, _) = v.place(limit(RB, Buy, usdt(95), coins(1)));
    let (stop, _) = v.place(stop_limit(RA, Buy, usdt(104), usdt(104), milli(100)));
    v.ok(Deposit { account: RA, asset: USDT, amount: usdt(1), external_ref: 77 });
    v.ok(Transfer { from: RA, to: RA_SUB, asset: USDT, amount: usdt(1), client_ref: 5 });
    v.ok(WithdrawRequest { account: RA, asset: USDT, amount: usdt(1), client_ref: 9 });
    let approved_withdrawal = v.seq;
    v.ok(WithdrawApprove { withdrawal_id: approved_withdrawal });
    v.ok(SetSymbolStatus { symbol: ETH_USDT, status: SymbolStatus::Halted });
    v.ok(CreateAssetWithCode { asset: AssetId(60), scale: 2, code: Code::parse("XAU", CodeOf::Asset).unwrap() });
    // `ok` checks that the deepest allowed account (MAX_TREE_DEPTH ancestors) is accepted.
    for depth in 0..=MAX_TREE_DEPTH as u64 {
        let parent = if depth == 0 { AccountId::NONE } else { AccountId(DEEP.0 + depth - 1) };
        v.account(AccountId(DEEP.0 + depth), parent, 9);
    }
    Fixture { v, resting, others, stop, approved_withdrawal }
}

/// (reason, command) rows, at least one per reason.
fn rejection_cases(f: &Fixture) -> Vec<(RejectReason, Command)> {
    use Command::*;
    use RejectReason::*;
    let place = |order: NewOrder| PlaceOrder(order);
    let buy = |price, qty| limit(RA, Buy, price, qty);
    vec![
        (AssetExists, CreateAsset { asset: BTC, scale: 8 }),
        (UnknownAsset, Deposit { account: RA, asset: AssetId(99), amount: 1, external_ref: 1 }),
        (UnknownAsset, CreateAsset { asset: AssetId::NONE, scale: 2 }),
        (InvalidScale, CreateAsset { asset: AssetId(50), scale: MAX_ASSET_SCALE + 1 }),
        (
            InvalidCode,
            CreateAssetWithCode { asset: AssetId(50), scale: 2, code: Code(*b"xau\0\0\0\0\0\0\0\0\0\0\0\0\0") },
        ),
        (
            CodeExists,
            CreateAssetWithCode { asset: AssetId(50), scale: 2, code: Code::parse("XAU", CodeOf::Asset).unwrap() },
        ),
        (SymbolExists, CreateSymbol(spec(ETH_USDT, ETH))),
        (UnknownSymbol, place(NewOrder { symbol: SymbolId(99), ..buy(usdt(100), coins(1)) })),
        (UnknownSymbol, SetSymbolStatus { symbol: SymbolId(99), status: SymbolStatus::Halted }),
        // 0.01 USDT * 1 sat is not a multiple of 10^8.
        (
            InvalidSymbolSpec,
            CreateSymbol(SymbolSpec { symbol: SymbolId(9), lot_size: 1, min_qty: 1, ..spec(SymbolId(9), BTC) }),
        ),
        (InvalidSymbolSpec, CreateSymbol(SymbolSpec { quote: BTC, ..spec(SymbolId(9), BTC) })),
        (SymbolHalted, place(NewOrder { symbol: ETH_USDT, ..buy(usdt(50), coins(1)) })),
        (AccountExists, CreateAccount { account: RA, parent: AccountId::NONE, owner: 1 }),
        (UnknownAccount, Deposit { account: AccountId(404), asset: USDT, amount: 1, external_ref: 1 }),
        (UnknownAccount, PlaceOrder(limit(AccountId(404), Buy, usdt(100), coins(1)))),
        (UnknownParent, CreateAccount { account: AccountId(50), parent: AccountId(404), owner: 1 }),
        (OwnerMismatch, CreateAccount { account: AccountId(50), parent: RA, owner: 2 }),
        (
            TreeTooDeep,
            CreateAccount { account: AccountId(50), parent: AccountId(DEEP.0 + MAX_TREE_DEPTH as u64), owner: 9 },
        ),
        (AccountFrozen, place(limit(RFROZEN, Buy, usdt(100), coins(1)))),
        (InvalidAccountId, CreateAccount { account: AccountId::NONE, parent: AccountId::NONE, owner: 1 }),
        (InvalidAmount, Deposit { account: RA, asset: USDT, amount: 0, external_ref: 1 }),
        (InvalidAmount, WithdrawRequest { account: RA, asset: USDT, amount: -5, client_ref: 1 }),
        (InsufficientFunds, WithdrawRequest { account: RA, asset: USDT, amount: usdt(1_000_000), client_ref: 1 }),
        // RA has 10.1 BTC, 1 of it held by its ask.
        (InsufficientFunds, place(limit(RA, Sell, usdt(100), coins(10)))),
        (Overflow, Deposit { account: RB, asset: USDT, amount: i64::MAX, external_ref: 1 }),
        (DuplicateDepositRef, Deposit { account: RB, asset: BTC, amount: 1, external_ref: 77 }),
        (DuplicateWithdrawalRef, WithdrawRequest { account: RA, asset: USDT, amount: 1, client_ref: 9 }),
        (UnknownWithdrawal, WithdrawApprove { withdrawal_id: 999_999 }),
        (WithdrawalNotPending, WithdrawReject { withdrawal_id: f.approved_withdrawal }),
        (DuplicateTransferRef, Transfer { from: RA, to: RA_SUB, asset: USDT, amount: 1, client_ref: 5 }),
        (SameAccount, Transfer { from: RA, to: RA, asset: USDT, amount: 1, client_ref: 6 }),
        (NotSameTree, Transfer { from: RA, to: RB, asset: USDT, amount: 1, client_ref: 6 }),
        (DuplicateClientOrderId, place(NewOrder { client_order_id: 7, ..buy(usdt(100), coins(1)) })),
        (UnknownOrder, CancelOrder { account: RA, order_id: OrderId(999_999) }),
        (UnknownOrder, CancelOrder { account: RA, order_id: f.others }),
        (UnknownOrder, CancelByClientId { account: RA, client_order_id: 8 }),
        (InvalidPrice, place(buy(0, coins(1)))),
        (InvalidPrice, place(stop_limit(RA, Buy, -cents(1), usdt(104), coins(1)))),
        (PriceNotOnTick, place(buy(usdt(100) + 1, coins(1)))),
        (InvalidQuantity, place(buy(usdt(100), 0))),
        (QuantityNotOnLot, place(buy(usdt(100), coins(1) + 1))),
        (BelowMinQuantity, place(buy(usdt(100), lots(5)))),
        // 0.001 BTC at 100 = 0.1 USDT < 1.
        (BelowMinNotional, place(buy(usdt(100), milli(1)))),
        (AboveMaxQuantity, place(buy(usdt(100), coins(10) + lots(1)))),
        (PriceOutOfBand, place(buy(cents(11_001), coins(1)))),
        (PriceOutOfBand, AmendOrder { account: RA, order_id: f.resting, price: cents(8_999), qty: coins(1) }),
        (PostOnlyWouldTake, place(with_tif(TimeInForce::PostOnly, buy(usdt(105), coins(1))))),
        (InvalidOrderCombination, place(NewOrder { tif: TimeInForce::Gtc, ..market_buy(RA, coins(1), usdt(200)) })),
        (
            InvalidOrderCombination,
            place(with_tif(TimeInForce::PostOnly, stop_limit(RA, Buy, usdt(104), usdt(104), coins(1)))),
        ),
        (StopWouldTriggerImmediately, place(stop_limit(RA, Buy, usdt(100), usdt(104), coins(1)))),
        (StopWouldTriggerImmediately, place(stop_market_sell(RA, usdt(101), coins(1)))),
        (AmendNotAllowed, AmendOrder { account: RA, order_id: f.stop, price: usdt(104), qty: milli(50) }),
        (InvalidBudget, place(market_buy(RA, coins(1), 0))),
    ]
}

/// Runs the rows (all, or those of one reason) on a fresh fixture; returns the reasons produced.
fn run_rejection_cases(only: Option<RejectReason>) -> BTreeSet<RejectReason> {
    let mut f = rejection_fixture();
    let cases: Vec<_> = rejection_cases(&f).into_iter().filter(|(r, _)| only.is_none_or(|o| o == *r)).collect();
    assert!(!cases.is_empty(), "no case produces {only:?}");
    let mut produced = BTreeSet::new();
    for (expected, command) in cases {
        let reason = f.v.rejected(command);
        assert_eq!(reason, expected, "{command:?}");
        produced.insert(reason);
    }
    produced
}

/// The reasons of the engine's limits: reaching them takes thousands to a million commands, so
/// each has its own test in `tests/engine_limits.rs` (same checks: the only event, no change).
const LIMIT_REASONS: [RejectReason; 8] = [
    RejectReason::TooManyAssets,
    RejectReason::TooManySymbols,
    RejectReason::TooManyAccounts,
    RejectReason::ReferenceExpired,
    RejectReason::TooManyPendingWithdrawals,
    RejectReason::TooManyOpenOrders,
    RejectReason::SymbolOrdersFull,
    RejectReason::TooManyStops,
];

/// The reason only a keyed command gets: `rejected::duplicate_request` below.
const KEYED_REASONS: [RejectReason; 1] = [RejectReason::DuplicateRequest];

#[test]
fn every_rejection_reason_is_produced_and_changes_nothing() {
    let mut produced = run_rejection_cases(None);
    assert!(LIMIT_REASONS.iter().chain(&KEYED_REASONS).all(|r| !produced.contains(r)), "listed twice");
    produced.extend(LIMIT_REASONS);
    produced.extend(KEYED_REASONS);
    let all: BTreeSet<RejectReason> = RejectReason::ALL.into_iter().collect();
    assert_eq!(all.len(), RejectReason::ALL.len());
    assert_eq!(produced, all);
}

macro_rules! rejection_tests {
    ($($name:ident => $reason:ident,)*) => {
        $(
            #[test]
            fn $name() {
                assert_eq!(run_rejection_cases(Some(RejectReason::$reason)), BTreeSet::from([RejectReason::$reason]));
            }
        )*
    };
}

mod rejected {
    use super::*;

    /// A keyed command sent again (the same or another command of its account, with the same
    /// key) is rejected and changes nothing; the keyed command sent first was applied once.
    #[test]
    fn duplicate_request() {
        let mut f = rejection_fixture();
        let deposit = Command::Deposit { account: RA, asset: USDT, amount: usdt(5), external_ref: 9_001 };
        let before = f.v.engine.balance_of(RA, USDT).unwrap().available;
        f.v.apply_keyed(0xC0FFEE, deposit);
        assert_eq!(f.v.engine.balance_of(RA, USDT).unwrap().available, before + usdt(5));
        assert_eq!(f.v.rejected_keyed(0xC0FFEE, deposit), RejectReason::DuplicateRequest);
        let other = Command::CancelAll { account: RA, symbol: SymbolId::ALL };
        assert_eq!(f.v.rejected_keyed(0xC0FFEE, other), RejectReason::DuplicateRequest);
        assert_eq!(f.v.engine.balance_of(RA, USDT).unwrap().available, before + usdt(5));
        // The same key of another account is another request.
        let elsewhere = Command::CancelAll { account: RB, symbol: SymbolId::ALL };
        assert!(!f.v.apply_keyed(0xC0FFEE, elsewhere).iter().any(|e| matches!(e, Event::Rejected { .. })));
    }

    rejection_tests! {
        asset_exists => AssetExists,
        unknown_asset => UnknownAsset,
        invalid_scale => InvalidScale,
        invalid_code => InvalidCode,
        code_exists => CodeExists,
        symbol_exists => SymbolExists,
        unknown_symbol => UnknownSymbol,
        invalid_symbol_spec => InvalidSymbolSpec,
        symbol_halted => SymbolHalted,
        account_exists => AccountExists,
        unknown_account => UnknownAccount,
        unknown_parent => UnknownParent,
        owner_mismatch => OwnerMismatch,
        tree_too_deep => TreeTooDeep,
        account_frozen => AccountFrozen,
        invalid_account_id => InvalidAccountId,
        invalid_amount => InvalidAmount,
        insufficient_funds => InsufficientFunds,
        overflow => Overflow,
        duplicate_deposit_ref => DuplicateDepositRef,
        duplicate_withdrawal_ref => DuplicateWithdrawalRef,
        unknown_withdrawal => UnknownWithdrawal,
        withdrawal_not_pending => WithdrawalNotPending,
        duplicate_transfer_ref => DuplicateTransferRef,
        same_account => SameAccount,
        not_same_tree => NotSameTree,
        duplicate_client_order_id => DuplicateClientOrderId,
        unknown_order => UnknownOrder,
        invalid_price => InvalidPrice,
        price_not_on_tick => PriceNotOnTick,
        invalid_quantity => InvalidQuantity,
        quantity_not_on_lot => QuantityNotOnLot,
        below_min_quantity => BelowMinQuantity,
        below_min_notional => BelowMinNotional,
        above_max_quantity => AboveMaxQuantity,
        price_out_of_band => PriceOutOfBand,
        post_only_would_take => PostOnlyWouldTake,
        invalid_order_combination => InvalidOrderCombination,
        stop_would_trigger_immediately => StopWouldTriggerImmediately,
        amend_not_allowed => AmendNotAllowed,
        invalid_budget => InvalidBudget,
    }
}

#[test]
fn harness_state_comparison_sees_every_change_but_the_clock() {
    let mut v = Venue::new();
    v.trader(AccountId(1), 1);
    let (order, _) = v.place(limit(AccountId(1), Buy, usdt(99), coins(1)));
    // Amending a resting order's quantity down changes a level total and a hold, not a balance total.
    let before = state_without_clock(&v.engine);
    v.ok(Command::AmendOrder { account: AccountId(1), order_id: order, price: usdt(99), qty: milli(999) });
    assert_ne!(before, state_without_clock(&v.engine));
    // Freezing changes only a status byte.
    let before = state_without_clock(&v.engine);
    v.ok(Command::SetAccountStatus { account: AccountId(1), status: AccountStatus::Frozen });
    assert_ne!(before, state_without_clock(&v.engine));
    // A rejected command moves only the clock.
    let before = state_without_clock(&v.engine);
    v.reject(
        Command::CancelOrder { account: AccountId(1), order_id: OrderId(order.0 + 1) },
        RejectReason::UnknownOrder,
    );
    assert_eq!(before, state_without_clock(&v.engine));
}
