//! What principals receive, over random multi-account streams (issue #9 §1, `docs/PROTOCOL.md`
//! §8 "What a principal receives").
//!
//! proptest generates a stream of operations (deposits, transfers inside a tree, limit, market
//! and stop orders that cross between the trees of different principals, cancels, amends,
//! withdrawals and their decisions, freezes, accounts created mid-stream, and queries). Each
//! command is sent by one of the principals whose grants the gateway would let send it
//! (`Authority` and `Grants::check`, as the gateway checks), applied to an `Engine`, and then, for
//! EVERY principal, the frame it would receive is built with `seqd::gateway::visibility` exactly
//! as the gateway builds it (the answer for the sender, a push for everyone else) and checked:
//!
//! - no field of any event names an account outside the principal's grants: `Ledger.account`,
//!   `Order.account`, `Trade` maker and taker accounts, `Transferred` from and to,
//!   `AccountCreated` account and parent, deposits, withdrawals, status changes; a trade's order
//!   ids name only orders of visible accounts, and a hidden side's fee is 0; a ledger entry's
//!   referenced order is the principal's;
//! - `Rejected` reaches only its sender; reference data reaches everyone;
//! - the frame is exactly the documented rule applied to the command's events (nothing visible is
//!   lost), computed by this file from its own copy of the account tree; an admin gets everything.
//!
//! Query answers pass the same checks: an order of an invisible account answers exactly as an
//! unknown order, and account answers are refused when the gateway's check would refuse them.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use seqd::engine::*;
use seqd::gateway::grants::{AccountDirectory, Grants};
use seqd::gateway::visibility::{answer_for, events_for, Audience};
use seqd::pipeline::{Query, QueryAnswer};
use seqd::protocol::{Authority, GatewayError, Message};
use seqd::testkit::workload::{btc_usdt_spec, BTC, BTC_USDT, LOT, TICK, USDT};
use std::collections::BTreeMap;

/// (account, parent, owner) created before the stream. Three trees: a child's owner is its
/// parent's, and self-trade prevention works by owner, so trades cross between trees.
const TREES: [(AccountId, AccountId, u64); 9] = [
    (AccountId(1), AccountId::NONE, 1),
    (AccountId(11), AccountId(1), 1),
    (AccountId(111), AccountId(11), 1),
    (AccountId(12), AccountId(1), 1),
    (AccountId(2), AccountId::NONE, 2),
    (AccountId(21), AccountId(2), 2),
    (AccountId(22), AccountId(2), 2),
    (AccountId(3), AccountId::NONE, 3),
    (AccountId(31), AccountId(3), 3),
];
/// Accounts `CreateAccount` operations add mid-stream (211 is named by a grant before it exists).
const LATE: [(AccountId, AccountId, u64); 4] = [
    (AccountId(112), AccountId(11), 1),
    (AccountId(121), AccountId(12), 1),
    (AccountId(211), AccountId(21), 2),
    (AccountId(4), AccountId::NONE, 4),
];
/// Accounts the operations pick from: those of `TREES` (in order), then `LATE`, then one that
/// never exists.
const POOL: [AccountId; 14] = [
    AccountId(1),
    AccountId(11),
    AccountId(111),
    AccountId(12),
    AccountId(2),
    AccountId(21),
    AccountId(22),
    AccountId(3),
    AccountId(31),
    AccountId(112),
    AccountId(121),
    AccountId(211),
    AccountId(4),
    AccountId(999),
];
const MID_TICKS: i64 = 3_000_000; // 30,000 USDT

/// The connected principals: whole trees, a sub-tree, two roots in different trees, a grant on
/// an account created later, nothing at all, and an admin.
fn principals() -> Vec<Grants> {
    let trader =
        |name: &str, roots: &[AccountId]| Grants { principal: name.into(), admin: false, roots: roots.to_vec() };
    vec![
        trader("tree1", &[AccountId(1)]),
        trader("desk11", &[AccountId(11)]),
        trader("tree2", &[AccountId(2)]),
        trader("mixed", &[AccountId(12), AccountId(3)]),
        trader("late", &[AccountId(211), AccountId(22)]),
        trader("nobody", &[]),
        Grants { principal: "admin".into(), admin: true, roots: vec![] },
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Deposit { account: usize, asset: bool, lots: i64 },
    Transfer { from: usize, to: usize, asset: bool, lots: i64 },
    Place { account: usize, buy: bool, ticks_off: i64, lots: i64, kind: u8 },
    Cancel { account: usize, pick: usize },
    CancelAll { account: usize },
    Amend { account: usize, pick: usize, ticks_off: i64, lots: i64 },
    Withdraw { account: usize, lots: i64 },
    Decide { pick: usize, approve: bool },
    Freeze { account: usize, frozen: bool },
    CreateLate { which: usize },
    QueryOrder { asker: usize, pick: usize },
    QueryAccount { asker: usize, account: usize, what: u8 },
}

fn op() -> impl Strategy<Value = (Op, usize)> {
    // Mostly accounts that exist from the start; sometimes a late one or one that never exists.
    let account = || prop_oneof![8 => 0..TREES.len(), 1 => TREES.len()..POOL.len()];
    let op = prop_oneof![
        2 => (account(), any::<bool>(), 1..2_000i64)
            .prop_map(|(account, asset, lots)| Op::Deposit { account, asset, lots }),
        3 => (account(), account(), any::<bool>(), 1..500i64)
            .prop_map(|(from, to, asset, lots)| Op::Transfer { from, to, asset, lots }),
        12 => (account(), any::<bool>(), -10..10i64, 1..60i64, 0..8u8)
            .prop_map(|(account, buy, ticks_off, lots, kind)| Op::Place { account, buy, ticks_off, lots, kind }),
        3 => (account(), any::<usize>()).prop_map(|(account, pick)| Op::Cancel { account, pick }),
        1 => account().prop_map(|account| Op::CancelAll { account }),
        2 => (account(), any::<usize>(), -20..20i64, 1..60i64)
            .prop_map(|(account, pick, ticks_off, lots)| Op::Amend { account, pick, ticks_off, lots }),
        2 => (account(), 1..300i64).prop_map(|(account, lots)| Op::Withdraw { account, lots }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, approve)| Op::Decide { pick, approve }),
        1 => (account(), any::<bool>()).prop_map(|(account, frozen)| Op::Freeze { account, frozen }),
        1 => (0..LATE.len()).prop_map(|which| Op::CreateLate { which }),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(asker, pick)| Op::QueryOrder { asker, pick }),
        2 => (any::<usize>(), account(), 0..3u8)
            .prop_map(|(asker, account, what)| Op::QueryAccount { asker, account, what }),
    ];
    (op, any::<usize>())
}

/// The test's own copy of the account tree (from `AccountCreated` events) and of which account
/// each order id belongs to (from `Order` events): the independent side of the comparison.
#[derive(Default)]
struct World {
    parents: BTreeMap<AccountId, AccountId>,
    order_accounts: BTreeMap<OrderId, AccountId>,
    pending_withdrawals: Vec<u64>,
}

impl World {
    fn follow(&mut self, events: &[Event]) {
        for event in events {
            match *event {
                Event::AccountCreated { account, parent, .. } => {
                    self.parents.insert(account, parent);
                }
                Event::Order(report) => {
                    self.order_accounts.insert(report.order_id, report.account);
                }
                Event::WithdrawalUpdated { withdrawal_id, status, .. } => {
                    self.pending_withdrawals.retain(|&id| id != withdrawal_id);
                    if status == WithdrawalStatus::Pending {
                        self.pending_withdrawals.push(withdrawal_id);
                    }
                }
                _ => {}
            }
        }
    }

    /// Does `grants` cover `account` (itself or an ancestor is a root)? Account 0 is nobody's.
    fn covers(&self, grants: &Grants, account: AccountId) -> bool {
        if account == AccountId::NONE {
            return false;
        }
        if grants.admin {
            return true;
        }
        let mut current = account;
        loop {
            if grants.roots.contains(&current) {
                return true;
            }
            match self.parents.get(&current) {
                Some(&parent) if parent != AccountId::NONE => current = parent,
                _ => return false,
            }
        }
    }

    /// The documented rule (PROTOCOL.md §8), written again from the table.
    fn expected(&self, grants: &Grants, events: &[Event], audience: Audience) -> Vec<Event> {
        let sees = |account| self.covers(grants, account);
        let shown = |account| if sees(account) { account } else { AccountId::NONE };
        let mut out = Vec::new();
        for event in events {
            let kept = match *event {
                Event::Rejected { .. } => (audience == Audience::Sender).then_some(*event),
                Event::AssetCreated { .. } | Event::SymbolUpdated { .. } => Some(*event),
                Event::Ledger(e) => sees(e.account).then_some(*event),
                Event::Order(r) => sees(r.account).then_some(*event),
                Event::DepositCredited { account, .. }
                | Event::WithdrawalUpdated { account, .. }
                | Event::AccountStatusChanged { account, .. } => sees(account).then_some(*event),
                Event::AccountCreated { account, parent, owner } => {
                    sees(account).then_some(Event::AccountCreated { account, parent: shown(parent), owner })
                }
                Event::Transferred { from, to, asset, amount, client_ref } => (sees(from) || sees(to))
                    .then_some(Event::Transferred { from: shown(from), to: shown(to), asset, amount, client_ref }),
                Event::Trade(t) => (sees(t.maker_account) || sees(t.taker_account)).then(|| {
                    let mut t = t;
                    if !sees(t.maker_account) {
                        (t.maker_account, t.maker_order, t.maker_fee) = (AccountId::NONE, OrderId::NONE, 0);
                    }
                    if !sees(t.taker_account) {
                        (t.taker_account, t.taker_order, t.taker_fee) = (AccountId::NONE, OrderId::NONE, 0);
                    }
                    Event::Trade(t)
                }),
            };
            out.extend(kept);
        }
        out
    }

    /// The property itself: nothing in `events` names an account (or an order of an account)
    /// outside `grants`. 0 is the "not shown" marker.
    fn check_no_leak(&self, grants: &Grants, events: &[Event], audience: Audience) -> Result<(), TestCaseError> {
        let who = &grants.principal;
        let visible = |account: AccountId| account == AccountId::NONE || self.covers(grants, account);
        let order_visible =
            |order: OrderId| order == OrderId::NONE || self.order_accounts.get(&order).is_some_and(|&a| visible(a));
        for event in events {
            let named: Vec<AccountId> = match *event {
                Event::Rejected { .. } => {
                    prop_assert_eq!(audience, Audience::Sender, "{} got another's rejection", who);
                    vec![]
                }
                Event::AssetCreated { .. } | Event::SymbolUpdated { .. } => vec![],
                Event::Ledger(e) => {
                    if e.ref_kind == RefKind::Order {
                        prop_assert!(
                            order_visible(OrderId(e.ref_id)),
                            "{} got a ledger entry of a hidden order: {:?}",
                            who,
                            e
                        );
                    }
                    vec![e.account]
                }
                Event::Order(r) => vec![r.account],
                Event::DepositCredited { account, .. }
                | Event::WithdrawalUpdated { account, .. }
                | Event::AccountStatusChanged { account, .. } => vec![account],
                Event::AccountCreated { account, parent, .. } => vec![account, parent],
                Event::Transferred { from, to, .. } => {
                    prop_assert!(
                        from != AccountId::NONE || to != AccountId::NONE,
                        "{} got a transfer with no side",
                        who
                    );
                    vec![from, to]
                }
                Event::Trade(t) => {
                    prop_assert!(order_visible(t.maker_order) && order_visible(t.taker_order), "{}: {:?}", who, t);
                    for (account, order, fee) in
                        [(t.maker_account, t.maker_order, t.maker_fee), (t.taker_account, t.taker_order, t.taker_fee)]
                    {
                        if account == AccountId::NONE {
                            prop_assert_eq!(
                                (order, fee),
                                (OrderId::NONE, 0),
                                "{}: a hidden side shows its order or fee",
                                who
                            );
                        }
                    }
                    prop_assert!(
                        t.maker_account != AccountId::NONE || t.taker_account != AccountId::NONE,
                        "{} got a trade it was not in",
                        who
                    );
                    vec![t.maker_account, t.taker_account]
                }
            };
            for account in named {
                prop_assert!(visible(account), "{} received account {} in {:?}", who, account, event);
            }
        }
        Ok(())
    }
}

struct Venue {
    engine: Engine,
    directory: AccountDirectory,
    principals: Vec<Grants>,
    world: World,
    seq: Seq,
    frames_checked: usize,
    hidden_sides_seen: usize,
}

impl Venue {
    fn new() -> Venue {
        Venue {
            engine: Engine::new(),
            directory: AccountDirectory::default(),
            principals: principals(),
            world: World::default(),
            seq: 0,
            frames_checked: 0,
            hidden_sides_seen: 0,
        }
    }

    /// Sends `command` from one of the principals the gateway would accept it from (`by` picks
    /// which), applies it, and checks the answer and every push.
    fn command(&mut self, command: Command, by: usize) -> Result<Vec<Event>, TestCaseError> {
        let authority = Authority::of_command(&command);
        let allowed: Vec<usize> = (0..self.principals.len())
            .filter(|&p| self.principals[p].check(authority, &self.directory).is_ok())
            .collect();
        self.command_from(command, allowed[by % allowed.len()]) // the admin is always allowed
    }

    /// Sends `command` from principal `sender` (which the gateway must allow to send it).
    fn command_from(&mut self, command: Command, sender: usize) -> Result<Vec<Event>, TestCaseError> {
        let authority = Authority::of_command(&command);
        prop_assert_eq!(self.principals[sender].check(authority, &self.directory), Ok(()));
        self.seq += 1;
        let mut events = Vec::new();
        self.engine.apply(self.seq, self.seq * 1_000, &command, &mut events);
        // The responder's order: the tree mirror follows the events before they are routed.
        self.directory.observe(&events);
        self.world.follow(&events);
        let view = self.directory.view();
        for (p, grants) in self.principals.iter().enumerate() {
            let audience = if p == sender { Audience::Sender } else { Audience::Observer };
            let frame = events_for(grants, &view, &events, audience).into_vec();
            self.world.check_no_leak(grants, &frame, audience)?;
            prop_assert_eq!(
                &frame,
                &self.world.expected(grants, &events, audience),
                "{} after {:?}",
                grants.principal,
                command
            );
            if grants.admin {
                let all: Vec<Event> = events
                    .iter()
                    .filter(|e| audience == Audience::Sender || !matches!(e, Event::Rejected { .. }))
                    .copied()
                    .collect();
                prop_assert_eq!(&frame, &all, "an admin sees everything");
            }
            if audience == Audience::Sender && !events.is_empty() {
                // Everything a trader may send names its own accounts: it sees some of it.
                prop_assert!(!frame.is_empty(), "the sender of {:?} got an empty answer", command);
            }
            self.hidden_sides_seen += frame
                .iter()
                .filter(|e| matches!(e, Event::Trade(t) if t.maker_account == AccountId::NONE || t.taker_account == AccountId::NONE))
                .count();
            self.frames_checked += 1;
        }
        Ok(events)
    }

    /// A query as the gateway would answer it to `asker`: refused by the grants check first,
    /// then through `answer_for`.
    fn query(&mut self, asker: usize, message: Message, query: Query) -> Result<(), TestCaseError> {
        let grants = &self.principals[asker % self.principals.len()];
        let checked = grants.check(Authority::of_message(&message), &self.directory);
        let answer = match query {
            Query::Balances { account } => QueryAnswer::Balances(self.engine.balances(account)),
            Query::SubtreeTotals { account } => QueryAnswer::SubtreeTotals(self.engine.subtree_totals(account)),
            Query::Order { order_id } => QueryAnswer::Order(self.engine.order(order_id)),
            Query::OpenOrders { account } => QueryAnswer::OpenOrders(self.engine.open_orders(account)),
            Query::Depth { .. } => unreachable!("public"),
        };
        let view = self.directory.view();
        let filtered = answer_for(grants, &view, &query, answer.clone());
        match (query, &filtered) {
            (Query::Order { order_id }, _) => {
                prop_assert_eq!(checked, Ok(()), "an order query is checked by its answer");
                let unknown = answer_for(grants, &view, &query, QueryAnswer::Order(None));
                match &filtered {
                    Ok(QueryAnswer::Order(Some(order))) => {
                        prop_assert!(
                            self.world.covers(grants, order.account),
                            "{} read order {}",
                            grants.principal,
                            order_id
                        );
                    }
                    Ok(other) => {
                        prop_assert!(false, "unexpected answer {:?}", other);
                    }
                    Err(_) => {
                        prop_assert_eq!(&filtered, &unknown, "a hidden order must read as an unknown one");
                    }
                }
                if let QueryAnswer::Order(Some(order)) = answer {
                    let visible = self.world.covers(grants, order.account);
                    prop_assert_eq!(filtered.is_ok(), visible);
                }
            }
            (Query::Balances { account } | Query::SubtreeTotals { account } | Query::OpenOrders { account }, _) => {
                let covered = self.world.covers(grants, account);
                // The gateway refuses first; the filter alone refuses the same accounts.
                prop_assert_eq!(checked.is_ok(), covered);
                if !covered {
                    prop_assert_eq!(&filtered, &Err(GatewayError::Unauthorized));
                } else if let Ok(QueryAnswer::OpenOrders(Some(orders))) = &filtered {
                    prop_assert!(orders.iter().all(|o| o.account == account));
                }
            }
            (Query::Depth { .. }, _) => unreachable!(),
        }
        self.frames_checked += 1;
        Ok(())
    }

    fn live_order(&self, account: AccountId, pick: usize) -> OrderId {
        match self.engine.open_orders(account) {
            Some(orders) if !orders.is_empty() => orders[pick % orders.len()].order_id,
            _ => OrderId(pick as u64 % (self.seq + 2)), // probably not this account's: rejected
        }
    }

    fn run(&mut self, op: Op, by: usize) -> Result<(), TestCaseError> {
        let asset = |quote: bool| if quote { USDT } else { BTC };
        let price = |ticks_off: i64| (MID_TICKS + ticks_off) * TICK;
        let command = match op {
            Op::Deposit { account, asset: quote, lots } => Command::Deposit {
                account: POOL[account],
                asset: asset(quote),
                amount: lots * if quote { 1_000_000 } else { LOT },
                external_ref: self.seq + 1,
            },
            Op::Transfer { from, to, asset: quote, lots } => Command::Transfer {
                from: POOL[from],
                to: POOL[to],
                asset: asset(quote),
                amount: lots * if quote { 1_000_000 } else { LOT },
                client_ref: self.seq + 1,
            },
            Op::Place { account, buy, ticks_off, lots, kind } => {
                let side = if buy { Side::Buy } else { Side::Sell };
                let (order_type, tif, stop_price) = match kind {
                    0..=3 => (OrderType::Limit, TimeInForce::Gtc, 0),
                    4 => (OrderType::Limit, TimeInForce::Ioc, 0),
                    5 => (OrderType::Market, TimeInForce::Ioc, 0),
                    _ => (OrderType::StopLimit, TimeInForce::Gtc, price(ticks_off / 2)),
                };
                let market = order_type == OrderType::Market;
                Command::PlaceOrder(NewOrder {
                    account: POOL[account],
                    symbol: BTC_USDT,
                    client_order_id: self.seq + 1,
                    side,
                    order_type,
                    tif,
                    stp: StpMode::CancelIncoming,
                    price: if market { 0 } else { price(ticks_off) },
                    stop_price,
                    qty: if market && buy { 0 } else { lots * LOT },
                    quote_budget: if market && buy { lots * 3_000_000_000 } else { 0 },
                })
            }
            Op::Cancel { account, pick } => {
                Command::CancelOrder { account: POOL[account], order_id: self.live_order(POOL[account], pick) }
            }
            Op::CancelAll { account } => Command::CancelAll { account: POOL[account], symbol: SymbolId::ALL },
            Op::Amend { account, pick, ticks_off, lots } => Command::AmendOrder {
                account: POOL[account],
                order_id: self.live_order(POOL[account], pick),
                price: price(ticks_off),
                qty: lots * LOT,
            },
            Op::Withdraw { account, lots } => Command::WithdrawRequest {
                account: POOL[account],
                asset: BTC,
                amount: lots * LOT,
                client_ref: self.seq + 1,
            },
            Op::Decide { pick, approve } => {
                let pending = &self.world.pending_withdrawals;
                let withdrawal_id = if pending.is_empty() { 1 } else { pending[pick % pending.len()] };
                if approve {
                    Command::WithdrawApprove { withdrawal_id }
                } else {
                    Command::WithdrawReject { withdrawal_id }
                }
            }
            Op::Freeze { account, frozen } => Command::SetAccountStatus {
                account: POOL[account],
                status: if frozen { AccountStatus::Frozen } else { AccountStatus::Active },
            },
            Op::CreateLate { which } => {
                let (account, parent, owner) = LATE[which];
                Command::CreateAccount { account, parent, owner }
            }
            Op::QueryOrder { asker, pick } => {
                let known: Vec<OrderId> = self.world.order_accounts.keys().copied().collect();
                let order_id = if known.is_empty() || pick % 5 == 0 {
                    OrderId(10_000 + pick as u64 % 7)
                } else {
                    known[pick % known.len()]
                };
                return self.query(asker, Message::QueryOrder { order_id }, Query::Order { order_id });
            }
            Op::QueryAccount { asker, account, what } => {
                let account = POOL[account];
                let (message, query) = match what {
                    0 => (Message::QueryBalances { account }, Query::Balances { account }),
                    1 => (Message::QuerySubtreeTotals { account }, Query::SubtreeTotals { account }),
                    _ => (Message::QueryOpenOrders { account }, Query::OpenOrders { account }),
                };
                return self.query(asker, message, query);
            }
        };
        self.command(command, by).map(|_| ())
    }

    /// Assets, the symbol (with fees, so a hidden fee is not 0 by chance), the trees, and funds.
    fn set_up(&mut self) -> Result<(), TestCaseError> {
        let mut setup = vec![
            Command::CreateAsset { asset: BTC, scale: 8 },
            Command::CreateAsset { asset: USDT, scale: 6 },
            Command::CreateSymbol(btc_usdt_spec(1_000, 2_000)),
        ];
        for (account, parent, owner) in TREES {
            setup.push(Command::CreateAccount { account, parent, owner });
            setup.push(Command::Deposit { account, asset: BTC, amount: 50 * 100_000_000, external_ref: account.0 * 2 });
            setup.push(Command::Deposit {
                account,
                asset: USDT,
                amount: 2_000_000 * 1_000_000,
                external_ref: account.0 * 2 + 1,
            });
        }
        for command in setup {
            let events = self.command(command, 0)?;
            prop_assert!(!matches!(events[0], Event::Rejected { .. }), "{:?}: {:?}", command, events);
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(Config { cases: 64, ..Config::default() })]

    #[test]
    fn no_principal_receives_data_of_accounts_outside_its_grants(ops in prop::collection::vec(op(), 1..160)) {
        let mut venue = Venue::new();
        venue.set_up()?;
        for (op, by) in ops {
            venue.run(op, by)?;
        }
        prop_assert!(venue.frames_checked > 0);
    }
}

/// The stream above is random; this one is fixed and makes sure the interesting cases happen in
/// one command: a taker (tree2) sweeps resting asks of two other principals (desk11 on 111,
/// mixed on 31), and the price it leaves triggers a stop of account 12 that trades with 31 again.
#[test]
fn a_sweep_and_a_triggered_stop_show_each_principal_only_its_sides() {
    let mut venue = Venue::new();
    venue.set_up().unwrap();
    let place = |account, side, ticks_off: i64, lots, stop: bool| {
        Command::PlaceOrder(NewOrder {
            account,
            symbol: BTC_USDT,
            client_order_id: 0,
            side,
            order_type: if stop { OrderType::StopLimit } else { OrderType::Limit },
            tif: TimeInForce::Gtc,
            stp: StpMode::CancelIncoming,
            price: (MID_TICKS + ticks_off) * TICK,
            stop_price: if stop { (MID_TICKS + ticks_off) * TICK } else { 0 },
            qty: lots * LOT,
            quote_budget: 0,
        })
    };
    let by = venue_index;
    venue.command_from(place(AccountId(111), Side::Sell, 1, 5, false), by("desk11")).unwrap();
    venue.command_from(place(AccountId(31), Side::Sell, 2, 10, false), by("mixed")).unwrap();
    venue.command_from(place(AccountId(12), Side::Buy, 2, 4, true), by("mixed")).unwrap();
    let events = venue.command_from(place(AccountId(21), Side::Buy, 2, 8, false), by("tree2")).unwrap();
    let trades: Vec<Trade> =
        events.iter().filter_map(|e| if let Event::Trade(t) = e { Some(*t) } else { None }).collect();
    let pairs: Vec<(AccountId, AccountId)> = trades.iter().map(|t| (t.maker_account, t.taker_account)).collect();
    assert_eq!(
        pairs,
        vec![(AccountId(111), AccountId(21)), (AccountId(31), AccountId(21)), (AccountId(31), AccountId(12))],
        "{events:?}"
    );
    assert!(trades.iter().all(|t| t.maker_fee > 0 && t.taker_fee > 0), "fees are charged, so hiding them shows");

    let view = venue.directory.view();
    // Each principal's (maker, taker) pairs of the trades it receives.
    let seen = |name: &str, audience| -> Vec<(AccountId, AccountId)> {
        let grants = &venue.principals[by(name)];
        let frame = events_for(grants, &view, &events, audience).into_vec();
        frame
            .iter()
            .filter_map(|e| if let Event::Trade(t) = e { Some((t.maker_account, t.taker_account)) } else { None })
            .collect()
    };
    assert_eq!(
        seen("tree2", Audience::Sender),
        vec![(AccountId::NONE, AccountId(21)), (AccountId::NONE, AccountId(21))]
    );
    assert_eq!(seen("desk11", Audience::Observer), vec![(AccountId(111), AccountId::NONE)]);
    assert_eq!(
        seen("tree1", Audience::Observer),
        vec![(AccountId(111), AccountId::NONE), (AccountId::NONE, AccountId(12))]
    );
    assert_eq!(
        seen("mixed", Audience::Observer),
        vec![(AccountId(31), AccountId::NONE), (AccountId(31), AccountId(12))]
    );
    assert_eq!(seen("late", Audience::Observer), Vec::<(AccountId, AccountId)>::new());
    assert_eq!(seen("nobody", Audience::Observer), Vec::<(AccountId, AccountId)>::new());
    assert_eq!(seen("admin", Audience::Observer), pairs);
    // The sender's answer holds its own order and ledger, nothing of 111, 31 or 12.
    let answer = events_for(&venue.principals[by("tree2")], &view, &events, Audience::Sender).into_vec();
    assert!(answer.iter().any(|e| matches!(e, Event::Order(r) if r.account == AccountId(21))));
    assert!(answer.iter().all(|e| match e {
        Event::Order(r) => r.account == AccountId(21),
        Event::Ledger(l) => l.account == AccountId(21),
        Event::Trade(t) => t.maker_order == OrderId::NONE && t.maker_fee == 0,
        _ => false,
    }));
}

fn venue_index(name: &str) -> usize {
    principals().iter().position(|g| g.principal == name).unwrap()
}
