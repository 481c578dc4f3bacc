//! What a principal may receive: the one filter between the pipeline's results and a
//! connection. Every `Events` frame (the answer to the principal's own command and every push of
//! other commands) is built from `events_for`, and every query answer from `answer_for`; both
//! decide with the principal's grants against the account tree (`docs/PROTOCOL.md` §8, "What a
//! principal receives"). Admins see every account; the rules below then keep everything but
//! other connections' `Rejected`.
//!
//! Per event (account 0 is never a real account, so 0 means "not shown"):
//!
//! | event | kept when | blanked |
//! |-------|-----------|---------|
//! | `Ledger`, `Order`, `DepositCredited` | its account is visible | nothing |
//! | `WithdrawalUpdated`, `AccountStatusChanged` | its account is visible | nothing |
//! | `AccountCreated` | the new account is visible | `parent` (0) when the parent is not visible |
//! | `Transferred` | `from` or `to` is visible | the side not visible (0) |
//! | `Trade` | the maker or the taker account is visible | a side not visible: its account, order and fee (0) |
//! | `Rejected` | the recipient sent the command | - |
//! | `AssetCreated`, `SymbolUpdated` | always (public reference data) | - |
//!
//! Market data (`Depth`, `DepthSnapshot`, `MarketTrade`, `DepthUpdate`) is public and its types
//! carry no account or order id, so it does not pass here (see `feed.rs`).
//!
//! No QUIC and no tokio: the property tests (`tests/visibility.rs`) call it directly.

use super::grants::{DirectoryView, Grants};
use crate::engine::{AccountId, Event, OrderId};
use crate::pipeline::{Query, QueryAnswer};
use crate::protocol::GatewayError;

/// Who receives a command's events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// The connection that sent the command (its answer).
    Sender,
    /// Any other connection (a push, sent only when the filtered list is not empty).
    Observer,
}

/// Events a principal may receive. Only `events_for` makes one, so a connection's writer cannot
/// be handed a list that did not pass the filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Visible(Vec<Event>);

impl Visible {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Event] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Event> {
        self.0
    }
}

/// What `grants` may receive of one command's `events`, in order. Does not allocate when
/// nothing is visible (the common push).
pub fn events_for(grants: &Grants, view: &DirectoryView, events: &[Event], audience: Audience) -> Visible {
    let sees = |account| grants.sees(account, view);
    Visible(events.iter().filter_map(|event| event_for(event, &sees, audience)).collect())
}

/// One event as a principal that `sees` some accounts may receive it: unchanged, with the parts
/// naming invisible accounts zeroed, or `None`.
pub fn event_for(event: &Event, sees: &impl Fn(AccountId) -> bool, audience: Audience) -> Option<Event> {
    let shown = |account: AccountId| if sees(account) { account } else { AccountId::NONE };
    match *event {
        Event::Rejected { .. } => (audience == Audience::Sender).then_some(*event),
        Event::AssetCreated { .. } | Event::SymbolUpdated { .. } => Some(*event),
        Event::Ledger(entry) => sees(entry.account).then_some(*event),
        Event::Order(report) => sees(report.account).then_some(*event),
        Event::DepositCredited { account, .. }
        | Event::WithdrawalUpdated { account, .. }
        | Event::AccountStatusChanged { account, .. } => sees(account).then_some(*event),
        Event::AccountCreated { account, parent, owner } => {
            // parent 0 already means a root; a hidden parent reads the same.
            sees(account).then(|| Event::AccountCreated { account, parent: shown(parent), owner })
        }
        Event::Transferred { from, to, asset, amount, client_ref } => (sees(from) || sees(to))
            .then(|| Event::Transferred { from: shown(from), to: shown(to), asset, amount, client_ref }),
        Event::Trade(mut trade) => {
            let (maker, taker) = (sees(trade.maker_account), sees(trade.taker_account));
            if !maker && !taker {
                return None;
            }
            // Its own side only: who traded against it, with which order and at what fee is the
            // counterparty's business. Symbol, price, quantities, trade id and sides are public
            // (the `MarketTrade` of the same trade carries them).
            if !maker {
                (trade.maker_account, trade.maker_order, trade.maker_fee) = (AccountId::NONE, OrderId::NONE, 0);
            }
            if !taker {
                (trade.taker_account, trade.taker_order, trade.taker_fee) = (AccountId::NONE, OrderId::NONE, 0);
            }
            Some(Event::Trade(trade))
        }
    }
}

/// What `grants` may receive of a query's answer: the answer, or the error the same query about
/// a subject that does not exist gets, so an invisible one is indistinguishable from it.
/// - `Balances`, `SubtreeTotals`, `OpenOrders` of an account not visible: 910 (the gateway's
///   check already answers 910 for such an account, whether it exists or not); unknown: 940.
/// - `OrderInfo` of an order whose account is not visible: 940, as for an unknown order.
/// - `Depth`: public.
pub fn answer_for(
    grants: &Grants,
    view: &DirectoryView,
    query: &Query,
    answer: QueryAnswer,
) -> Result<QueryAnswer, GatewayError> {
    let sees = |account| grants.sees(account, view);
    let account_answer = |account: AccountId, known: bool| {
        if !sees(account) {
            Err(GatewayError::Unauthorized)
        } else if !known {
            Err(GatewayError::NotFound)
        } else {
            Ok(())
        }
    };
    match (*query, answer) {
        (Query::Balances { account }, QueryAnswer::Balances(balances)) => {
            account_answer(account, balances.is_some())?;
            Ok(QueryAnswer::Balances(balances))
        }
        (Query::SubtreeTotals { account }, QueryAnswer::SubtreeTotals(totals)) => {
            // The subtree of a visible account is visible: its totals are the principal's.
            account_answer(account, totals.is_some())?;
            Ok(QueryAnswer::SubtreeTotals(totals))
        }
        (Query::OpenOrders { account }, QueryAnswer::OpenOrders(orders)) => {
            account_answer(account, orders.is_some())?;
            // Every order of the account is the account's; the filter still checks each.
            let orders = orders.map(|orders| orders.into_iter().filter(|o| sees(o.account)).collect());
            Ok(QueryAnswer::OpenOrders(orders))
        }
        (Query::Order { .. }, QueryAnswer::Order(Some(order))) if sees(order.account) => {
            Ok(QueryAnswer::Order(Some(order)))
        }
        (Query::Depth { .. }, QueryAnswer::Depth(Some(book))) => Ok(QueryAnswer::Depth(Some(book))),
        // An unknown or invisible order or symbol, or an answer that does not match its query.
        _ => Err(GatewayError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::*;
    use crate::gateway::grants::AccountDirectory;

    /// Accounts 1 > 11 > 111 and 2; trader `t1` holds [1], `fund` holds [11], `t2` holds [2].
    fn directory() -> AccountDirectory {
        let directory = AccountDirectory::default();
        directory.observe(&[
            Event::AccountCreated { account: AccountId(1), parent: AccountId::NONE, owner: 1 },
            Event::AccountCreated { account: AccountId(11), parent: AccountId(1), owner: 1 },
            Event::AccountCreated { account: AccountId(111), parent: AccountId(11), owner: 1 },
            Event::AccountCreated { account: AccountId(2), parent: AccountId::NONE, owner: 2 },
        ]);
        directory
    }

    fn trader(roots: &[AccountId]) -> Grants {
        Grants { principal: "t".into(), admin: false, roots: roots.to_vec() }
    }

    fn admin() -> Grants {
        Grants { principal: "admin".into(), admin: true, roots: vec![] }
    }

    fn seen(grants: &Grants, events: &[Event], audience: Audience) -> Vec<Event> {
        let directory = directory();
        let view = directory.view();
        events_for(grants, &view, events, audience).into_vec()
    }

    fn ledger(account: AccountId) -> Event {
        Event::Ledger(LedgerEntry {
            account,
            asset: AssetId(1),
            kind: LedgerKind::Deposit,
            available_delta: 5,
            held_delta: 0,
            available_after: 5,
            held_after: 0,
            ref_kind: RefKind::Deposit,
            ref_id: 9,
        })
    }

    fn order(account: AccountId) -> Event {
        Event::Order(OrderReport {
            order_id: OrderId(40),
            account,
            symbol: SymbolId(1),
            client_order_id: 7,
            exec: ExecKind::New,
            status: OrderStatus::New,
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            price: 100,
            qty: 3,
            filled_qty: 0,
            remaining_qty: 3,
            filled_quote: 0,
            fees_paid: 0,
            stop_price: 0,
        })
    }

    fn trade(maker_account: AccountId, taker_account: AccountId) -> Trade {
        Trade {
            trade_id: TradeId(3),
            symbol: SymbolId(1),
            price: 100,
            qty: 2,
            quote_qty: 200,
            maker_order: OrderId(40),
            taker_order: OrderId(41),
            maker_account,
            taker_account,
            maker_side: Side::Buy,
            maker_fee: 1,
            taker_fee: 2,
        }
    }

    #[test]
    fn account_events_reach_only_principals_that_see_their_account() {
        let events = [
            ledger(AccountId(111)),
            ledger(AccountId(2)),
            order(AccountId(11)),
            order(AccountId(2)),
            Event::DepositCredited { account: AccountId(2), asset: AssetId(1), amount: 5, external_ref: 1 },
            Event::DepositCredited { account: AccountId(1), asset: AssetId(1), amount: 5, external_ref: 2 },
            Event::WithdrawalUpdated {
                withdrawal_id: 4,
                account: AccountId(2),
                asset: AssetId(1),
                amount: 5,
                client_ref: 1,
                status: WithdrawalStatus::Pending,
            },
            Event::AccountStatusChanged { account: AccountId(1), status: AccountStatus::Frozen },
            Event::AccountStatusChanged { account: AccountId(111), status: AccountStatus::Frozen },
        ];
        for audience in [Audience::Sender, Audience::Observer] {
            assert_eq!(
                seen(&trader(&[AccountId(1)]), &events, audience),
                vec![events[0], events[2], events[5], events[7], events[8]]
            );
            assert_eq!(seen(&trader(&[AccountId(11)]), &events, audience), vec![events[0], events[2], events[8]]);
            assert_eq!(
                seen(&trader(&[AccountId(2)]), &events, audience),
                vec![events[1], events[3], events[4], events[6]]
            );
            assert_eq!(seen(&trader(&[]), &events, audience), Vec::<Event>::new());
            assert_eq!(seen(&admin(), &events, audience), events.to_vec());
        }
        // An account the tree does not know (yet) is seen only by a grant naming it.
        assert_eq!(seen(&trader(&[AccountId(1)]), &[ledger(AccountId(3))], Audience::Sender), Vec::<Event>::new());
        assert_eq!(
            seen(&trader(&[AccountId(3)]), &[ledger(AccountId(3))], Audience::Sender),
            vec![ledger(AccountId(3))]
        );
    }

    #[test]
    fn a_trade_shows_a_trader_its_own_side_only() {
        let event = Event::Trade(trade(AccountId(1), AccountId(2)));
        let hidden_taker = Event::Trade(Trade {
            taker_account: AccountId::NONE,
            taker_order: OrderId::NONE,
            taker_fee: 0,
            ..trade(AccountId(1), AccountId(2))
        });
        let hidden_maker = Event::Trade(Trade {
            maker_account: AccountId::NONE,
            maker_order: OrderId::NONE,
            maker_fee: 0,
            ..trade(AccountId(1), AccountId(2))
        });
        for audience in [Audience::Sender, Audience::Observer] {
            assert_eq!(seen(&trader(&[AccountId(1)]), &[event], audience), vec![hidden_taker]);
            assert_eq!(seen(&trader(&[AccountId(2)]), &[event], audience), vec![hidden_maker]);
            assert_eq!(seen(&trader(&[AccountId(1), AccountId(2)]), &[event], audience), vec![event]);
            assert_eq!(seen(&trader(&[AccountId(11)]), &[event], audience), Vec::<Event>::new());
            assert_eq!(seen(&admin(), &[event], audience), vec![event]);
        }
        // A trade between two accounts of one tree: a sub-tree grant sees only its side.
        let inside = Event::Trade(trade(AccountId(111), AccountId(1)));
        let Event::Trade(t) = seen(&trader(&[AccountId(11)]), &[inside], Audience::Observer)[0] else { unreachable!() };
        assert_eq!((t.maker_account, t.maker_order, t.maker_fee), (AccountId(111), OrderId(40), 1));
        assert_eq!((t.taker_account, t.taker_order, t.taker_fee), (AccountId::NONE, OrderId::NONE, 0));
        assert_eq!(
            (t.trade_id, t.symbol, t.price, t.qty, t.quote_qty, t.maker_side),
            (TradeId(3), SymbolId(1), 100, 2, 200, Side::Buy)
        );
        assert_eq!(seen(&trader(&[AccountId(1)]), &[inside], Audience::Observer), vec![inside]);
    }

    #[test]
    fn a_transfer_shows_only_the_visible_sides() {
        let transfer = |from, to| Event::Transferred { from, to, asset: AssetId(1), amount: 5, client_ref: 8 };
        let event = transfer(AccountId(1), AccountId(111));
        assert_eq!(seen(&trader(&[AccountId(1)]), &[event], Audience::Sender), vec![event]);
        assert_eq!(
            seen(&trader(&[AccountId(11)]), &[event], Audience::Observer),
            vec![transfer(AccountId::NONE, AccountId(111))]
        );
        assert_eq!(seen(&trader(&[AccountId(2)]), &[event], Audience::Observer), Vec::<Event>::new());
        let upward = transfer(AccountId(111), AccountId(1));
        assert_eq!(
            seen(&trader(&[AccountId(11)]), &[upward], Audience::Observer),
            vec![transfer(AccountId(111), AccountId::NONE)]
        );
        assert_eq!(seen(&admin(), &[upward], Audience::Observer), vec![upward]);
    }

    #[test]
    fn a_new_account_hides_a_parent_outside_the_grants() {
        let created = Event::AccountCreated { account: AccountId(11), parent: AccountId(1), owner: 1 };
        assert_eq!(seen(&trader(&[AccountId(1)]), &[created], Audience::Observer), vec![created]);
        assert_eq!(
            seen(&trader(&[AccountId(11)]), &[created], Audience::Observer),
            vec![Event::AccountCreated { account: AccountId(11), parent: AccountId::NONE, owner: 1 }]
        );
        assert_eq!(seen(&trader(&[AccountId(2)]), &[created], Audience::Observer), Vec::<Event>::new());
        assert_eq!(seen(&admin(), &[created], Audience::Observer), vec![created]);
    }

    #[test]
    fn a_rejection_goes_to_its_sender_only_and_reference_data_to_everyone() {
        let rejected = Event::Rejected { reason: RejectReason::InsufficientFunds };
        assert_eq!(seen(&trader(&[AccountId(1)]), &[rejected], Audience::Sender), vec![rejected]);
        assert_eq!(seen(&trader(&[AccountId(1)]), &[rejected], Audience::Observer), Vec::<Event>::new());
        assert_eq!(seen(&admin(), &[rejected], Audience::Observer), Vec::<Event>::new());
        let asset = Event::AssetCreated { asset: AssetId(3), scale: 2 };
        let symbol =
            Event::SymbolUpdated { spec: crate::testkit::workload::btc_usdt_spec(0, 0), status: SymbolStatus::Halted };
        for grants in [trader(&[]), trader(&[AccountId(2)]), admin()] {
            assert_eq!(seen(&grants, &[asset, symbol], Audience::Observer), vec![asset, symbol]);
        }
    }

    #[test]
    fn an_invisible_order_reads_exactly_as_an_unknown_one() {
        let directory = directory();
        let view = directory.view();
        let Event::Order(report) = order(AccountId(2)) else { unreachable!() };
        let query = Query::Order { order_id: report.order_id };
        let t1 = trader(&[AccountId(1)]);
        let unknown = answer_for(&t1, &view, &query, QueryAnswer::Order(None));
        let invisible = answer_for(&t1, &view, &query, QueryAnswer::Order(Some(report)));
        assert_eq!((unknown, invisible), (Err(GatewayError::NotFound), Err(GatewayError::NotFound)));
        let visible = QueryAnswer::Order(Some(report));
        assert_eq!(answer_for(&trader(&[AccountId(2)]), &view, &query, visible.clone()), Ok(visible.clone()));
        assert_eq!(answer_for(&admin(), &view, &query, visible.clone()), Ok(visible));
    }

    #[test]
    fn account_answers_need_a_visible_account() {
        let directory = directory();
        let view = directory.view();
        let balances = QueryAnswer::Balances(Some(vec![BalanceView { asset: AssetId(1), available: 5, held: 0 }]));
        let of = |account| Query::Balances { account };
        assert_eq!(
            answer_for(&trader(&[AccountId(1)]), &view, &of(AccountId(111)), balances.clone()),
            Ok(balances.clone())
        );
        assert_eq!(
            answer_for(&trader(&[AccountId(11)]), &view, &of(AccountId(1)), balances.clone()),
            Err(GatewayError::Unauthorized)
        );
        assert_eq!(
            answer_for(&trader(&[AccountId(1)]), &view, &of(AccountId(2)), balances.clone()),
            Err(GatewayError::Unauthorized)
        );
        assert_eq!(
            answer_for(&admin(), &view, &of(AccountId(5)), QueryAnswer::Balances(None)),
            Err(GatewayError::NotFound)
        );
        let totals = QueryAnswer::SubtreeTotals(Some(vec![(AssetId(1), 5)]));
        let subtree = Query::SubtreeTotals { account: AccountId(11) };
        assert_eq!(answer_for(&trader(&[AccountId(11)]), &view, &subtree, totals.clone()), Ok(totals.clone()));
        assert_eq!(answer_for(&trader(&[AccountId(111)]), &view, &subtree, totals), Err(GatewayError::Unauthorized));
        let Event::Order(mine) = order(AccountId(11)) else { unreachable!() };
        let Event::Order(theirs) = order(AccountId(2)) else { unreachable!() };
        let open = Query::OpenOrders { account: AccountId(11) };
        assert_eq!(
            answer_for(&trader(&[AccountId(1)]), &view, &open, QueryAnswer::OpenOrders(Some(vec![mine, theirs]))),
            Ok(QueryAnswer::OpenOrders(Some(vec![mine])))
        );
        assert_eq!(
            answer_for(&trader(&[AccountId(2)]), &view, &open, QueryAnswer::OpenOrders(Some(vec![mine]))),
            Err(GatewayError::Unauthorized)
        );
        let depth = QueryAnswer::Depth(Some((vec![], vec![])));
        let book = Query::Depth { symbol: SymbolId(1), levels: 0 };
        assert_eq!(answer_for(&trader(&[]), &view, &book, depth.clone()), Ok(depth));
        assert_eq!(answer_for(&trader(&[]), &view, &book, QueryAnswer::Depth(None)), Err(GatewayError::NotFound));
    }
}
