//! The engine's limits (`seqd::engine::limits`): each is reached through commands, the next
//! command over it is rejected with its own reason and changes nothing, and the commands whose
//! work the limits bound (cancel-all, a stop cascade, a sweep) stay within
//! `EVENTS_PER_COMMAND_MAX`. Also: amounts that would overflow are rejected, never wrapped.
//!
//! Setups of many commands go through `Bench::bulk`, which checks only that each is accepted;
//! the invariants are checked once at the end of each setup (checking them after each of a
//! million commands would take hours).
//!
//! Units: BTC scale 8, USDT scale 6, tick 0.01 USDT, lot 0.0001 BTC: one lot at one tick is one
//! USDT minor unit. No fees and no minimum notional, so small orders are cheap to fund.

use seqd::engine::limits::*;
use seqd::engine::Side::{Buy, Sell};
use seqd::engine::*;
use seqd::testkit::samples::gtc_limit;

const BTC: AssetId = AssetId(1);
const USDT: AssetId = AssetId(2);
const SYMBOL: SymbolId = SymbolId(1);
const TICK: i64 = 10_000;
const LOT: i64 = 10_000;

fn spec(symbol: SymbolId) -> SymbolSpec {
    SymbolSpec {
        symbol,
        base: BTC,
        quote: USDT,
        tick_size: TICK,
        lot_size: LOT,
        min_qty: LOT,
        min_notional: 0,
        max_order_qty: LOT * 1_000_000,
        maker_fee_ppm: 0,
        taker_fee_ppm: 0,
        price_band_bps: 0,
    }
}

fn limit(account: AccountId, side: Side, price_ticks: i64, lots: i64) -> NewOrder {
    gtc_limit(account, SYMBOL, side, price_ticks * TICK, lots * LOT)
}

fn stop_market_sell(account: AccountId, stop_ticks: i64, lots: i64) -> NewOrder {
    NewOrder {
        order_type: OrderType::StopMarket,
        tif: TimeInForce::Ioc,
        price: 0,
        stop_price: stop_ticks * TICK,
        ..limit(account, Sell, 0, lots)
    }
}

struct Bench {
    engine: Engine,
    seq: Seq,
    events: Vec<Event>,
    next_ref: u64,
}

impl Bench {
    fn empty() -> Bench {
        Bench { engine: Engine::new(), seq: 0, events: Vec::new(), next_ref: 0 }
    }

    /// BTC, USDT and the BTC/USDT symbol.
    fn new() -> Bench {
        let mut b = Bench::empty();
        b.ok(Command::CreateAsset { asset: BTC, scale: 8 });
        b.ok(Command::CreateAsset { asset: USDT, scale: 6 });
        b.ok(Command::CreateSymbol(spec(SYMBOL)));
        b
    }

    fn apply(&mut self, command: Command) -> &[Event] {
        self.seq += 1;
        self.events.clear();
        self.engine.apply(self.seq, self.seq, &command, &mut self.events);
        &self.events
    }

    /// Applies a command that must be accepted; checks the invariants.
    fn ok(&mut self, command: Command) -> Vec<Event> {
        let events = self.apply(command).to_vec();
        assert!(!events.iter().any(|e| matches!(e, Event::Rejected { .. })), "{command:?}: {events:?}");
        self.engine.check_invariants().unwrap();
        events
    }

    /// Applies commands that must all be accepted, then checks the invariants once.
    fn bulk(&mut self, commands: impl IntoIterator<Item = Command>) {
        for command in commands {
            let events = self.apply(command);
            assert!(!matches!(events, [Event::Rejected { .. }]), "{command:?}: {events:?}");
        }
        self.engine.check_invariants().unwrap();
    }

    /// Applies a command that must be rejected with `reason`, as its only event, and change
    /// nothing: the canonical state (the clock aside) encodes to the same bytes.
    fn reject(&mut self, command: Command, reason: RejectReason) {
        let before = state_without_clock(&self.engine);
        let events = self.apply(command).to_vec();
        assert_eq!(events, vec![Event::Rejected { reason }], "{command:?}");
        assert!(state_without_clock(&self.engine) == before, "rejected {command:?} changed the state");
    }

    fn trader(&mut self, account: AccountId, owner: u64, usdt: i64, btc: i64) {
        self.ok(Command::CreateAccount { account, parent: AccountId::NONE, owner });
        for (asset, amount) in [(USDT, usdt), (BTC, btc)].into_iter().filter(|(_, amount)| *amount > 0) {
            self.next_ref += 1;
            self.ok(Command::Deposit { account, asset, amount, external_ref: self.next_ref });
        }
    }

    fn place(&mut self, order: NewOrder) -> Vec<Event> {
        self.ok(Command::PlaceOrder(order))
    }
}

/// The canonical encoding with `last_seq` and `last_timestamp_ns` (bytes 13..29) blanked.
fn state_without_clock(engine: &Engine) -> Vec<u8> {
    let mut bytes = Vec::new();
    engine.encode_state(&mut bytes);
    bytes[13..29].fill(0);
    bytes
}

fn count(events: &[Event], exec: ExecKind) -> usize {
    events.iter().filter(|e| matches!(e, Event::Order(r) if r.exec == exec)).count()
}

fn trades(events: &[Event]) -> usize {
    events.iter().filter(|e| matches!(e, Event::Trade(_))).count()
}

#[test]
fn too_many_assets() {
    let mut b = Bench::empty();
    b.bulk((1..=ASSETS_MAX as u32).map(|asset| Command::CreateAsset { asset: AssetId(asset), scale: 2 }));
    b.reject(Command::CreateAsset { asset: AssetId(100_000), scale: 2 }, RejectReason::TooManyAssets);
    // The existing-id check comes first: it says more.
    b.reject(Command::CreateAsset { asset: AssetId(1), scale: 2 }, RejectReason::AssetExists);
}

#[test]
fn too_many_symbols() {
    let mut b = Bench::new();
    b.bulk((2..=SYMBOLS_MAX as u32).map(|symbol| Command::CreateSymbol(spec(SymbolId(symbol)))));
    b.reject(Command::CreateSymbol(spec(SymbolId(100_000))), RejectReason::TooManySymbols);
}

#[test]
fn too_many_accounts() {
    let mut b = Bench::new();
    b.bulk((1..=ACCOUNTS_MAX as u64).map(|account| Command::CreateAccount {
        account: AccountId(account),
        parent: AccountId::NONE,
        owner: account,
    }));
    b.reject(
        Command::CreateAccount { account: AccountId(u64::MAX), parent: AccountId::NONE, owner: 1 },
        RejectReason::TooManyAccounts,
    );
}

/// A trader at its open-order limit is refused one more order that could stay live (not an
/// IOC, which ends in its command), and one `CancelAll` then cancels every order within the
/// event bound.
#[test]
fn too_many_open_orders_then_cancel_all_cancels_them_all() {
    let mut b = Bench::new();
    b.trader(AccountId(1), 1, 1_000_000_000, 0);
    b.trader(AccountId(2), 2, 0, 100_000_000);
    // Bids at 1..=100 ticks, 100 orders each: 1 USDT minor unit per lot per tick.
    let price = |i: usize| (i % 100) as i64 + 1;
    b.bulk((0..ACCOUNT_OPEN_ORDERS_MAX).map(|i| Command::PlaceOrder(limit(AccountId(1), Buy, price(i), 1))));
    assert_eq!(b.engine.open_orders(AccountId(1)).unwrap().len(), ACCOUNT_OPEN_ORDERS_MAX);
    let held = b.engine.balance_of(AccountId(1), USDT).unwrap().held;

    b.reject(Command::PlaceOrder(limit(AccountId(1), Buy, 50, 1)), RejectReason::TooManyOpenOrders);
    let stop =
        NewOrder { order_type: OrderType::StopLimit, stop_price: 200 * TICK, ..limit(AccountId(1), Buy, 200, 1) };
    b.reject(Command::PlaceOrder(stop), RejectReason::TooManyOpenOrders);
    // An IOC never stays live, so it is not counted: it takes 1 lot of a seller's ask at 101.
    b.place(limit(AccountId(2), Sell, 101, 1));
    let ioc = NewOrder { tif: TimeInForce::Ioc, ..limit(AccountId(1), Buy, 101, 1) };
    assert_eq!(trades(&b.place(ioc)), 1);

    let events = b.ok(Command::CancelAll { account: AccountId(1), symbol: SymbolId::ALL });
    assert_eq!(count(&events, ExecKind::Cancelled), ACCOUNT_OPEN_ORDERS_MAX);
    assert_eq!(events.len(), 2 * ACCOUNT_OPEN_ORDERS_MAX, "a release and a report per order");
    assert!(events.len() <= EVENTS_PER_COMMAND_MAX);
    assert!(b.engine.open_orders(AccountId(1)).unwrap().is_empty());
    assert_eq!(b.engine.balance_of(AccountId(1), USDT).unwrap().held, 0);
    assert!(held > 0);
    // Room again.
    b.place(limit(AccountId(1), Buy, 50, 1));
}

/// Resting orders and waiting stops of a symbol count together against `SYMBOL_ORDERS_MAX`.
#[test]
fn symbol_orders_full() {
    let mut b = Bench::new();
    let accounts = SYMBOL_ORDERS_MAX.div_ceil(ACCOUNT_OPEN_ORDERS_MAX) as u64;
    for account in 1..=accounts + 1 {
        b.trader(AccountId(account), account, 1_000_000_000, 1_000_000_000);
    }
    // All but one as resting bids at one price (2 ticks), the last one a waiting sell stop
    // (at 1 tick, so trades at 2 do not fire it).
    let orders = (0..SYMBOL_ORDERS_MAX - 1).map(|i| {
        let account = 1 + (i / ACCOUNT_OPEN_ORDERS_MAX) as u64;
        Command::PlaceOrder(limit(AccountId(account), Buy, 2, 1))
    });
    b.bulk(orders);
    b.place(stop_market_sell(AccountId(accounts), 1, 1));
    let free = accounts + 1;
    b.reject(Command::PlaceOrder(limit(AccountId(free), Buy, 2, 1)), RejectReason::SymbolOrdersFull);
    b.reject(Command::PlaceOrder(limit(AccountId(free), Sell, 3, 1)), RejectReason::SymbolOrdersFull);
    b.reject(Command::PlaceOrder(stop_market_sell(AccountId(free), 1, 1)), RejectReason::SymbolOrdersFull);
    // An IOC that trades is fine: it never rests.
    let ioc = NewOrder { tif: TimeInForce::Ioc, ..limit(AccountId(free), Sell, 2, 1) };
    assert_eq!(trades(&b.place(ioc)), 1);
    // Which made room for one.
    b.place(limit(AccountId(free), Buy, 2, 1));
}

/// The largest stop cascade: `SYMBOL_STOPS_MAX` stops at one price, all fired by one trade.
/// Each stop's fill is a match; the command's match budget covers the first trade and all but
/// one stop, so the last stop to fire expires unfilled. The events stay within the bound.
#[test]
fn too_many_stops_and_the_largest_cascade() {
    let mut b = Bench::new();
    b.trader(AccountId(1), 1, 0, 1_000_000_000); // the stops' owner: 10,000 lots of BTC held by its stops
    b.trader(AccountId(2), 2, 0, 1_000_000_000);
    b.trader(AccountId(3), 3, 1_000_000_000_000, 0);
    b.trader(AccountId(4), 4, 0, 1_000_000_000);
    b.bulk((0..SYMBOL_STOPS_MAX).map(|_| Command::PlaceOrder(stop_market_sell(AccountId(1), 100, 1))));
    b.reject(Command::PlaceOrder(stop_market_sell(AccountId(2), 100, 1)), RejectReason::TooManyStops);
    let stop_limit =
        NewOrder { order_type: OrderType::StopLimit, tif: TimeInForce::Gtc, ..limit(AccountId(2), Sell, 90, 1) };
    b.reject(Command::PlaceOrder(NewOrder { stop_price: 100 * TICK, ..stop_limit }), RejectReason::TooManyStops);

    // A bid large enough for every stop, then a sale at 100 fires them all.
    b.place(limit(AccountId(3), Buy, 100, 2 * SYMBOL_STOPS_MAX as i64));
    let events = b.place(limit(AccountId(4), Sell, 100, 1));
    assert!(events.len() <= EVENTS_PER_COMMAND_MAX, "{} events", events.len());
    assert_eq!(count(&events, ExecKind::Triggered), SYMBOL_STOPS_MAX);
    assert_eq!(trades(&events), COMMAND_MATCHES_MAX);
    assert_eq!(COMMAND_MATCHES_MAX, SYMBOL_STOPS_MAX, "the test's arithmetic assumes it");
    let expired: Vec<OrderId> = events
        .iter()
        .filter_map(|e| match e {
            Event::Order(r) if r.exec == ExecKind::Expired => Some(r.order_id),
            _ => None,
        })
        .collect();
    assert_eq!(expired.len(), 1, "the last stop found no match left");
    assert!(b.engine.open_orders(AccountId(1)).unwrap().is_empty());
    assert_eq!(b.engine.balance_of(AccountId(1), BTC).unwrap().held, 0);
    // A fresh command has a fresh budget.
    assert_eq!(trades(&b.place(limit(AccountId(4), Sell, 100, 1))), 1);
}

/// A taker meeting more makers than the match budget fills `COMMAND_MATCHES_MAX` of them and
/// expires (a GTC order too: it still crosses, so it cannot rest); a FOK that would need more
/// expires unfilled.
#[test]
fn the_match_budget_ends_a_sweep() {
    let mut b = Bench::new();
    let makers = COMMAND_MATCHES_MAX + 5;
    b.trader(AccountId(1), 1, 0, 1_000_000_000);
    b.trader(AccountId(2), 2, 0, 1_000_000_000);
    b.trader(AccountId(3), 3, 1_000_000_000_000, 0);
    let maker = |i: usize| 1 + (i / ACCOUNT_OPEN_ORDERS_MAX) as u64;
    b.bulk((0..makers).map(|i| Command::PlaceOrder(limit(AccountId(maker(i)), Sell, 100, 1))));

    let fok = NewOrder { tif: TimeInForce::Fok, ..limit(AccountId(3), Buy, 100, makers as i64) };
    let events = b.place(fok);
    assert_eq!((trades(&events), count(&events, ExecKind::Expired)), (0, 1));

    let events = b.place(limit(AccountId(3), Buy, 100, makers as i64));
    assert_eq!(trades(&events), COMMAND_MATCHES_MAX);
    assert_eq!(count(&events, ExecKind::Expired), 1);
    assert!(events.len() <= EVENTS_PER_COMMAND_MAX);
    assert!(b.engine.open_orders(AccountId(3)).unwrap().is_empty(), "the remainder did not rest");
    assert_eq!(b.engine.depth(SYMBOL, 1).unwrap().1[0].orders, 5);
    // The rest fill in the next command.
    assert_eq!(trades(&b.place(limit(AccountId(3), Buy, 100, 5))), 5);
}

/// Transfer and withdrawal references: a window of the largest per sending account, a floor
/// below which a reference is refused as expired (it may have been used), duplicates in the
/// window refused as before, larger references accepted.
#[test]
fn reference_expired() {
    use Command::*;
    let mut b = Bench::new();
    b.trader(AccountId(1), 1, 1_000_000_000, 0);
    b.ok(CreateAccount { account: AccountId(2), parent: AccountId(1), owner: 1 });
    let kept = ACCOUNT_TRANSFER_REFS_KEPT as u64;
    b.bulk((1..=kept + 1).map(|client_ref| Transfer {
        from: AccountId(1),
        to: AccountId(2),
        asset: USDT,
        amount: 1,
        client_ref,
    }));
    // Ref 1 was the smallest: forgotten, so the floor is 1.
    b.reject(
        Transfer { from: AccountId(1), to: AccountId(2), asset: USDT, amount: 1, client_ref: 1 },
        RejectReason::ReferenceExpired,
    );
    b.reject(
        Transfer { from: AccountId(1), to: AccountId(2), asset: USDT, amount: 1, client_ref: 0 },
        RejectReason::ReferenceExpired,
    );
    b.reject(
        Transfer { from: AccountId(1), to: AccountId(2), asset: USDT, amount: 1, client_ref: 2 },
        RejectReason::DuplicateTransferRef,
    );
    b.ok(Transfer { from: AccountId(1), to: AccountId(2), asset: USDT, amount: 1, client_ref: kept + 10 });
    // The window is per sending account: account 2 may use ref 1.
    b.ok(Transfer { from: AccountId(2), to: AccountId(1), asset: USDT, amount: 1, client_ref: 1 });
    // Out of order within the window is fine: kept + 5 is above the floor (now 2).
    b.ok(Transfer { from: AccountId(1), to: AccountId(2), asset: USDT, amount: 1, client_ref: kept + 5 });
    b.reject(
        Transfer { from: AccountId(1), to: AccountId(2), asset: USDT, amount: 1, client_ref: 3 },
        RejectReason::ReferenceExpired,
    );

    let kept = ACCOUNT_WITHDRAWAL_REFS_KEPT as u64;
    for client_ref in 1..=kept + 1 {
        b.ok(WithdrawRequest { account: AccountId(1), asset: USDT, amount: 1, client_ref });
        let id = b.seq;
        b.ok(WithdrawApprove { withdrawal_id: id });
    }
    b.reject(
        WithdrawRequest { account: AccountId(1), asset: USDT, amount: 1, client_ref: 1 },
        RejectReason::ReferenceExpired,
    );
    b.reject(
        WithdrawRequest { account: AccountId(1), asset: USDT, amount: 1, client_ref: 2 },
        RejectReason::DuplicateWithdrawalRef,
    );
    b.ok(WithdrawRequest { account: AccountId(1), asset: USDT, amount: 1, client_ref: kept + 2 });

    // The windows' floors are state: they survive a snapshot, and change the hash only once set.
    let mut bytes = Vec::new();
    b.engine.encode_state(&mut bytes);
    let restored = Engine::decode_state(&bytes).unwrap();
    assert_eq!(restored.state_hash(), b.engine.state_hash());
    let mut restored = restored;
    let mut events = Vec::new();
    let expired = Transfer { from: AccountId(1), to: AccountId(2), asset: USDT, amount: 1, client_ref: 1 };
    restored.apply(b.seq + 1, 0, &expired, &mut events);
    assert_eq!(events, vec![Event::Rejected { reason: RejectReason::ReferenceExpired }]);
}

/// Deposits have one venue-wide window (`DEPOSIT_REFS_KEPT`), with the same rule.
#[test]
fn deposit_references_expire_below_the_floor() {
    use Command::*;
    let mut b = Bench::new();
    b.ok(CreateAccount { account: AccountId(1), parent: AccountId::NONE, owner: 1 });
    let kept = DEPOSIT_REFS_KEPT as u64;
    b.bulk((1..=kept + 1).map(|external_ref| Deposit { account: AccountId(1), asset: USDT, amount: 1, external_ref }));
    b.reject(
        Deposit { account: AccountId(1), asset: USDT, amount: 1, external_ref: 1 },
        RejectReason::ReferenceExpired,
    );
    b.reject(
        Deposit { account: AccountId(1), asset: USDT, amount: 1, external_ref: 2 },
        RejectReason::DuplicateDepositRef,
    );
    b.ok(Deposit { account: AccountId(1), asset: USDT, amount: 1, external_ref: kept + 2 });
    assert_eq!(b.engine.balance_of(AccountId(1), USDT).unwrap().available, kept as i64 + 2);
}

/// The request-key window (`REQUEST_KEYS_KEPT`, venue-wide) forgets the oldest key first: after
/// one more keyed command than it keeps, the first key is new again and the second is still
/// refused. Keyed `CancelAll`s of an account with nothing open: applied, no events.
#[test]
fn request_keys_are_forgotten_oldest_first() {
    let mut b = Bench::new();
    b.ok(Command::CreateAccount { account: AccountId(1), parent: AccountId::NONE, owner: 1 });
    let cancel_all = Command::CancelAll { account: AccountId(1), symbol: SymbolId::ALL };
    let keyed = |b: &mut Bench, key: u64| {
        b.seq += 1;
        b.events.clear();
        b.engine.apply_keyed(b.seq, b.seq, key, &cancel_all, &mut b.events);
        b.events.clone()
    };
    for key in 1..=REQUEST_KEYS_KEPT as u64 + 1 {
        assert_eq!(keyed(&mut b, key), [], "key {key}");
    }
    b.engine.check_invariants().unwrap();
    let before = state_without_clock(&b.engine);
    let duplicate = [Event::Rejected { reason: RejectReason::DuplicateRequest }];
    assert_eq!(keyed(&mut b, 2), duplicate);
    assert_eq!(keyed(&mut b, REQUEST_KEYS_KEPT as u64 + 1), duplicate);
    assert!(state_without_clock(&b.engine) == before, "a duplicate changed the state");
    // Key 1 was forgotten: applied again, which forgets key 2 (then applied again: forgets 3).
    assert_eq!(keyed(&mut b, 1), []);
    assert_eq!(keyed(&mut b, 2), []);
    assert_eq!(keyed(&mut b, 4), duplicate);
    assert_eq!(keyed(&mut b, 1), duplicate);
    b.engine.check_invariants().unwrap();
    // The full window survives a snapshot.
    let mut bytes = Vec::new();
    b.engine.encode_state(&mut bytes);
    let mut restored = Engine::decode_state(&bytes).unwrap();
    let mut events = Vec::new();
    restored.apply_keyed(b.seq + 1, 0, 4, &cancel_all, &mut events);
    assert_eq!(events, duplicate);
}

#[test]
fn too_many_pending_withdrawals() {
    use Command::*;
    let mut b = Bench::new();
    b.trader(AccountId(1), 1, 1_000_000, 0);
    let max = ACCOUNT_PENDING_WITHDRAWALS_MAX as u64;
    b.bulk((1..=max).map(|client_ref| WithdrawRequest { account: AccountId(1), asset: USDT, amount: 1, client_ref }));
    let first = b.seq - max + 1;
    b.reject(
        WithdrawRequest { account: AccountId(1), asset: USDT, amount: 1, client_ref: max + 1 },
        RejectReason::TooManyPendingWithdrawals,
    );
    // Deciding one makes room; the pending count is derived state and survives a snapshot.
    b.ok(WithdrawReject { withdrawal_id: first });
    let mut bytes = Vec::new();
    b.engine.encode_state(&mut bytes);
    b.engine = Engine::decode_state(&bytes).unwrap();
    b.ok(WithdrawRequest { account: AccountId(1), asset: USDT, amount: 1, client_ref: max + 1 });
    b.reject(
        WithdrawRequest { account: AccountId(1), asset: USDT, amount: 1, client_ref: max + 2 },
        RejectReason::TooManyPendingWithdrawals,
    );
}

// ------------------------------------------------------------------------------------------
// Overflow: rejected, never wrapped (these tests run with overflow checks, so a wrap panics)
// ------------------------------------------------------------------------------------------

/// A symbol where one lot at one tick is one quote unit and an order may be as large as an i64.
fn wide_spec() -> SymbolSpec {
    SymbolSpec { max_order_qty: i64::MAX / LOT * LOT, ..spec(SYMBOL) }
}

#[test]
fn huge_deposits_are_rejected_not_wrapped() {
    use Command::*;
    let mut b = Bench::new();
    b.ok(CreateAccount { account: AccountId(1), parent: AccountId::NONE, owner: 1 });
    b.ok(CreateAccount { account: AccountId(2), parent: AccountId::NONE, owner: 2 });
    b.ok(Deposit { account: AccountId(1), asset: USDT, amount: i64::MAX - 5, external_ref: 1 });
    b.ok(Deposit { account: AccountId(2), asset: USDT, amount: 5, external_ref: 2 });
    // The supply is exactly i64::MAX: one more unit anywhere is an overflow.
    b.reject(Deposit { account: AccountId(2), asset: USDT, amount: 1, external_ref: 3 }, RejectReason::Overflow);
    b.reject(Deposit { account: AccountId(1), asset: USDT, amount: i64::MAX, external_ref: 3 }, RejectReason::Overflow);
    // Withdrawing makes room again.
    b.ok(WithdrawRequest { account: AccountId(2), asset: USDT, amount: 5, client_ref: 1 });
    let id = b.seq;
    b.ok(WithdrawApprove { withdrawal_id: id });
    b.ok(Deposit { account: AccountId(2), asset: USDT, amount: 5, external_ref: 3 });
    assert_eq!(b.engine.asset_totals(USDT).unwrap().supply(), i64::MAX);
}

#[test]
fn huge_price_times_quantity_is_rejected_not_wrapped() {
    let mut b = Bench::new();
    b.ok(Command::UpdateSymbol(wide_spec()));
    b.trader(AccountId(1), 1, i64::MAX, i64::MAX);
    let lots = i64::MAX / LOT;
    let max_ticks = i64::MAX / TICK;
    // Every field is valid on its own; the notionals are far beyond an i64.
    b.reject(Command::PlaceOrder(limit(AccountId(1), Buy, max_ticks, lots)), RejectReason::Overflow);
    b.reject(Command::PlaceOrder(limit(AccountId(1), Sell, max_ticks, lots)), RejectReason::Overflow);
    // The boundary: lots * 10,000 ticks fits an i64 (lots is i64::MAX / 10,000), 10,001 does not.
    b.reject(Command::PlaceOrder(limit(AccountId(1), Buy, 10_001, lots)), RejectReason::Overflow);
    // Amending to such a size is refused the same way.
    b.place(limit(AccountId(1), Buy, 1, 1));
    let id = b.seq;
    let amend =
        Command::AmendOrder { account: AccountId(1), order_id: OrderId(id), price: max_ticks * TICK, qty: lots * LOT };
    b.reject(amend, RejectReason::Overflow);
    b.ok(Command::CancelOrder { account: AccountId(1), order_id: OrderId(id) });
    let events = b.place(limit(AccountId(1), Buy, 10_000, lots));
    let held = b.engine.balance_of(AccountId(1), USDT).unwrap().held;
    assert_eq!(held, 10_000 * lots, "{events:?}");
}

/// Market buys with budgets and prices near the top of i64: the affordable-lots search and the
/// fills stay exact (overflow checks are on in this test build, so a wrap would panic).
#[test]
fn extreme_market_buys_fill_exactly() {
    // Tick 1 and lot 1 BTC: one lot at one tick is one USDT minor unit, and a price may be
    // anything up to i64::MAX. Fees just below 100 %.
    const WHOLE: i64 = 100_000_000;
    let mut b = Bench::new();
    let spec2 = SymbolSpec {
        symbol: SymbolId(2),
        tick_size: 1,
        lot_size: WHOLE,
        min_qty: WHOLE,
        max_order_qty: i64::MAX / WHOLE * WHOLE,
        maker_fee_ppm: 999_999,
        taker_fee_ppm: 999_999,
        ..spec(SymbolId(2))
    };
    b.ok(Command::CreateSymbol(spec2));
    b.trader(AccountId(1), 1, 0, i64::MAX);
    b.trader(AccountId(2), 2, i64::MAX, 0);
    let price = i64::MAX / 4;
    let order = |account, side, price, lots| NewOrder {
        symbol: SymbolId(2),
        price,
        qty: lots * WHOLE,
        ..limit(account, side, 0, 0)
    };
    b.place(order(AccountId(1), Sell, price, 3));
    let market = NewOrder {
        order_type: OrderType::Market,
        tif: TimeInForce::Ioc,
        quote_budget: i64::MAX,
        ..order(AccountId(2), Buy, 0, i64::MAX / WHOLE)
    };
    let events = b.place(market);
    // The most lots k with k * price + fee(k * price) <= i64::MAX, worked out in i128.
    let cost = |k: i128| k * price as i128 + k * price as i128 * 999_999 / 1_000_000;
    let affordable = (0..=3).rev().find(|&k| cost(k) <= i64::MAX as i128).unwrap();
    assert_eq!(affordable, 2);
    let fill = events.iter().find_map(|e| if let Event::Trade(t) = e { Some(*t) } else { None }).unwrap();
    assert_eq!((fill.qty, fill.quote_qty), (2 * WHOLE, 2 * price));
    assert_eq!(fill.taker_fee as i128, cost(2) - 2 * price as i128);
    let buyer = b.engine.balance_of(AccountId(2), USDT).unwrap();
    assert_eq!((buyer.available as i128, buyer.held), (i64::MAX as i128 - cost(2), 0));
}
