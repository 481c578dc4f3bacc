//! The engine rules `docs/PROTOCOL.md` §16 states for clients, each checked as written where
//! `tests/engine_workflows.rs` does not already: the order of `CreateSymbol`'s checks, the
//! market buy's budget hold, fill-or-kill with self-trade prevention, amend's total quantity,
//! the price band's reference, the stop trigger at the boundary, and the tree depth count.
//!
//! Units: BTC scale 8, USDT scale 6; tick 0.01 USDT, lot 0.0001 BTC (one lot at one tick is 1
//! USDT minor unit); no fees unless a test sets them.

#[path = "common/engine.rs"]
mod common;

use common::{apply_checked, cents, coins, lots, state_without_clock, usdt};
use seqd::engine::Side::{Buy, Sell};
use seqd::engine::*;
use seqd::testkit::samples::gtc_limit;

const BTC: AssetId = AssetId(1);
const USDT: AssetId = AssetId(2);
const BTC_USDT: SymbolId = SymbolId(1);

const START_USDT: i64 = usdt(1_000_000);
const START_BTC: i64 = coins(100);

fn spec() -> SymbolSpec {
    SymbolSpec {
        symbol: BTC_USDT,
        base: BTC,
        quote: USDT,
        tick_size: cents(1),
        lot_size: lots(1),
        min_qty: lots(1),
        min_notional: 0,
        max_order_qty: lots(1_000_000),
        maker_fee_ppm: 0,
        taker_fee_ppm: 0,
        price_band_bps: 0,
    }
}

struct Venue {
    engine: Engine,
    seq: Seq,
}

impl Venue {
    /// BTC, USDT and BTC/USDT with `spec`; accounts 1..=3 with owners 1..=3, funded.
    fn new(spec: SymbolSpec) -> Venue {
        let mut v = Venue { engine: Engine::new(), seq: 0 };
        v.ok(Command::CreateAsset { asset: BTC, scale: 8 });
        v.ok(Command::CreateAsset { asset: USDT, scale: 6 });
        v.ok(Command::CreateSymbol(spec));
        for account in 1..=3 {
            v.ok(Command::CreateAccount { account: AccountId(account), parent: AccountId::NONE, owner: account });
            v.ok(Command::Deposit {
                account: AccountId(account),
                asset: USDT,
                amount: START_USDT,
                external_ref: account * 10,
            });
            v.ok(Command::Deposit {
                account: AccountId(account),
                asset: BTC,
                amount: START_BTC,
                external_ref: account * 10 + 1,
            });
        }
        v
    }

    fn apply(&mut self, command: Command) -> Vec<Event> {
        apply_checked(&mut self.engine, &mut self.seq, 1, &command)
    }

    fn ok(&mut self, command: Command) -> Vec<Event> {
        let events = self.apply(command);
        assert!(!events.iter().any(|e| matches!(e, Event::Rejected { .. })), "{command:?}: {events:?}");
        events
    }

    fn reject(&mut self, command: Command, expected: RejectReason) {
        let before = state_without_clock(&self.engine);
        let events = self.apply(command);
        assert_eq!(events, vec![Event::Rejected { reason: expected }], "{command:?}");
        assert!(state_without_clock(&self.engine) == before, "a rejected {command:?} changed the state");
    }

    fn place(&mut self, order: NewOrder) -> (OrderId, Vec<Event>) {
        let events = self.ok(Command::PlaceOrder(order));
        (OrderId(self.seq), events)
    }

    fn bal(&self, account: AccountId, asset: AssetId) -> (i64, i64) {
        let b = self.engine.balance_of(account, asset).unwrap();
        (b.available, b.held)
    }
}

fn limit(account: AccountId, side: Side, price: i64, qty: i64) -> NewOrder {
    gtc_limit(account, BTC_USDT, side, price, qty)
}

fn report(events: &[Event], order_id: OrderId) -> OrderReport {
    *events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Order(r) if r.order_id == order_id => Some(r),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no report of order {order_id} in {events:?}"))
}

fn trade_count(events: &[Event]) -> usize {
    events.iter().filter(|e| matches!(e, Event::Trade(_))).count()
}

#[test]
fn create_symbol_checks_run_in_the_documented_order() {
    use RejectReason::*;
    let mut v = Venue::new(spec());
    let create = |s: SymbolSpec| Command::CreateSymbol(s);
    // 1. symbol 0, before anything else (here the base is unknown too).
    v.reject(create(SymbolSpec { symbol: SymbolId(0), base: AssetId(99), ..spec() }), InvalidSymbolSpec);
    // 2. an existing symbol, before the assets.
    v.reject(create(SymbolSpec { base: AssetId(99), ..spec() }), SymbolExists);
    // 3. the base, then the quote must be assets, before the sizes.
    v.reject(create(SymbolSpec { symbol: SymbolId(2), base: AssetId(99), tick_size: 0, ..spec() }), UnknownAsset);
    v.reject(create(SymbolSpec { symbol: SymbolId(2), quote: AssetId(99), tick_size: 0, ..spec() }), UnknownAsset);
    // 4. every field rule is InvalidSymbolSpec.
    for bad in [
        SymbolSpec { quote: BTC, ..spec() },
        SymbolSpec { tick_size: 0, ..spec() },
        SymbolSpec { lot_size: -1, ..spec() },
        SymbolSpec { min_qty: -1, ..spec() },
        SymbolSpec { min_notional: -1, ..spec() },
        SymbolSpec { max_order_qty: lots(1) - 1, ..spec() },
        SymbolSpec { maker_fee_ppm: 1_000_000, ..spec() },
        SymbolSpec { taker_fee_ppm: 1_000_000, ..spec() },
        // 5. one lot at one tick must be whole quote units: 0.01 USDT x 1 sat is not.
        SymbolSpec { lot_size: 1, min_qty: 1, ..spec() },
    ] {
        v.reject(create(SymbolSpec { symbol: SymbolId(2), ..bad }), InvalidSymbolSpec);
    }
    // The edges that are allowed: fees just under 100 %, min_qty 0, max_order_qty = lot_size.
    v.ok(create(SymbolSpec {
        symbol: SymbolId(2),
        maker_fee_ppm: 999_999,
        taker_fee_ppm: 999_999,
        min_qty: 0,
        max_order_qty: lots(1),
        ..spec()
    }));
    // UpdateSymbol: unknown symbol, then base, quote, tick and lot are fixed.
    v.reject(Command::UpdateSymbol(SymbolSpec { symbol: SymbolId(9), tick_size: 0, ..spec() }), UnknownSymbol);
    v.reject(Command::UpdateSymbol(SymbolSpec { tick_size: cents(2), ..spec() }), InvalidSymbolSpec);
    v.ok(Command::UpdateSymbol(SymbolSpec { min_qty: lots(5), price_band_bps: 50, ..spec() }));
}

#[test]
fn the_largest_asset_scale_is_18() {
    let mut v = Venue::new(spec());
    v.ok(Command::CreateAsset { asset: AssetId(3), scale: MAX_ASSET_SCALE });
    v.reject(Command::CreateAsset { asset: AssetId(4), scale: MAX_ASSET_SCALE + 1 }, RejectReason::InvalidScale);
    assert_eq!(MAX_ASSET_SCALE, 18);
}

#[test]
fn a_market_buy_holds_its_whole_budget_and_releases_what_it_did_not_spend() {
    let mut v = Venue::new(spec());
    v.place(limit(AccountId(1), Sell, usdt(100), lots(5_000))); // 0.5 BTC at 100
    let buy = NewOrder {
        order_type: OrderType::Market,
        tif: TimeInForce::Ioc,
        quote_budget: usdt(80),
        ..limit(AccountId(2), Buy, 0, lots(10_000)) // up to 1 BTC
    };
    let (id, events) = v.place(buy);
    // The budget is held first, in full.
    let first_ledger = events.iter().find_map(|e| if let Event::Ledger(l) = e { Some(*l) } else { None }).unwrap();
    assert_eq!(
        (first_ledger.account, first_ledger.kind, first_ledger.held_delta),
        (AccountId(2), LedgerKind::Hold, usdt(80))
    );
    // 80 USDT buys 0.5 BTC at 100 = 50 USDT (the book has no more); the other 30 are released.
    let r = report(&events, id);
    assert_eq!((r.status, r.filled_qty, r.filled_quote), (OrderStatus::Expired, lots(5_000), usdt(50)));
    assert_eq!(v.bal(AccountId(2), USDT), (START_USDT - usdt(50), 0));
    // Other time-in-force values are not allowed for market orders.
    for tif in [TimeInForce::Gtc, TimeInForce::Fok, TimeInForce::PostOnly] {
        v.reject(Command::PlaceOrder(NewOrder { tif, ..buy }), RejectReason::InvalidOrderCombination);
    }
}

#[test]
fn fill_or_kill_meeting_its_own_order_expires_unless_the_mode_cancels_resting() {
    // Accounts 1 and 3 share no owner; account 2's own order sits at the front of the book.
    for (mode, expected_fill) in
        [(StpMode::CancelIncoming, false), (StpMode::CancelBoth, false), (StpMode::CancelResting, true)]
    {
        let mut v = Venue::new(spec());
        let (own, _) = v.place(limit(AccountId(2), Sell, usdt(100), lots(1_000)));
        let (other, _) = v.place(limit(AccountId(3), Sell, usdt(100), lots(1_000)));
        let fok = NewOrder { tif: TimeInForce::Fok, stp: mode, ..limit(AccountId(2), Buy, usdt(100), lots(1_000)) };
        let (id, events) = v.place(fok);
        let r = report(&events, id);
        if expected_fill {
            // Its own order is cancelled and does not count; the other one fills it.
            assert_eq!(report(&events, own).status, OrderStatus::Cancelled, "{mode:?}");
            assert_eq!((r.status, trade_count(&events)), (OrderStatus::Filled, 1), "{mode:?}");
            assert!(v.engine.order(other).is_none());
        } else {
            // Expired with nothing filled, and nothing cancelled, even with cancel-both.
            assert_eq!((r.status, r.filled_qty, trade_count(&events)), (OrderStatus::Expired, 0, 0), "{mode:?}");
            assert!(v.engine.order(own).is_some() && v.engine.order(other).is_some(), "{mode:?}");
        }
    }
    // Enough quantity before its own order: it fills without meeting it.
    let mut v = Venue::new(spec());
    v.place(limit(AccountId(3), Sell, usdt(100), lots(1_000)));
    let (own, _) = v.place(limit(AccountId(2), Sell, usdt(100), lots(1_000)));
    let fok = NewOrder { tif: TimeInForce::Fok, ..limit(AccountId(2), Buy, usdt(100), lots(1_000)) };
    let (id, events) = v.place(fok);
    assert_eq!(report(&events, id).status, OrderStatus::Filled);
    assert!(v.engine.order(own).is_some());
}

#[test]
fn amend_quantity_is_the_new_total_filled_included() {
    let mut v = Venue::new(spec());
    let (bid, _) = v.place(limit(AccountId(1), Buy, usdt(100), lots(10)));
    v.place(limit(AccountId(2), Sell, usdt(100), lots(3))); // fills 3 of the 10
    let amend = |qty| Command::AmendOrder { account: AccountId(1), order_id: bid, price: usdt(100), qty };
    // A total of 3 leaves nothing: refused.
    v.reject(amend(lots(3)), RejectReason::InvalidQuantity);
    // A total of 5: 3 filled, 2 remain, and it keeps its place (same price, less quantity).
    let events = v.ok(amend(lots(5)));
    let r = report(&events, bid);
    assert_eq!((r.exec, r.qty, r.filled_qty, r.remaining_qty), (ExecKind::Amended, lots(5), lots(3), lots(2)));
    assert_eq!(v.bal(AccountId(1), USDT).1, usdt(100) * 2 / 10_000, "the hold covers the 2 lots left");
}

#[test]
fn the_price_band_is_around_the_last_trade_and_absent_before_the_first() {
    let mut v = Venue::new(SymbolSpec { price_band_bps: 100, ..spec() }); // 1 %
                                                                          // No trade yet: no band.
    v.place(limit(AccountId(1), Buy, usdt(1), lots(1)));
    v.place(limit(AccountId(1), Sell, usdt(1_000_000), lots(1)));
    // A trade at 100 sets the reference; 99..=101 are inside, one tick beyond is not.
    v.place(limit(AccountId(2), Sell, usdt(100), lots(1)));
    v.place(limit(AccountId(3), Buy, usdt(100), lots(1)));
    v.place(limit(AccountId(1), Buy, usdt(99), lots(1)));
    v.place(limit(AccountId(1), Sell, usdt(101), lots(1)));
    v.reject(Command::PlaceOrder(limit(AccountId(1), Buy, usdt(99) - cents(1), lots(1))), RejectReason::PriceOutOfBand);
    v.reject(
        Command::PlaceOrder(limit(AccountId(1), Sell, usdt(101) + cents(1), lots(1))),
        RejectReason::PriceOutOfBand,
    );
    // Market orders have no price to check.
    let market_sell =
        NewOrder { order_type: OrderType::Market, tif: TimeInForce::Ioc, ..limit(AccountId(2), Sell, 0, lots(1)) };
    v.place(market_sell);
    // 0 turns the band off.
    v.ok(Command::UpdateSymbol(SymbolSpec { price_band_bps: 0, ..spec() }));
    v.place(limit(AccountId(1), Buy, usdt(2), lots(1)));
}

#[test]
fn a_stop_fires_when_the_last_trade_reaches_its_stop_price() {
    let mut v = Venue::new(spec());
    let stop_buy = |stop_price| NewOrder {
        order_type: OrderType::StopMarket,
        tif: TimeInForce::Ioc,
        stop_price,
        quote_budget: usdt(1_000),
        ..limit(AccountId(1), Buy, 0, lots(1))
    };
    // No trade yet: a stop never fires, so any stop price may wait.
    let (early, _) = v.place(stop_buy(usdt(100)));
    v.place(limit(AccountId(2), Sell, usdt(100), lots(10)));
    // A trade at exactly 100 (>= the stop price of a buy) fires it in the same command.
    let events = v.ok(Command::PlaceOrder(limit(AccountId(3), Buy, usdt(100), lots(1))));
    assert_eq!(report(&events, early).status, OrderStatus::Filled);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Order(r) if r.order_id == early && r.exec == ExecKind::Triggered)));
    // Last price 100 now: a buy stop at 100 would fire at once; at 100.01 it waits.
    v.reject(Command::PlaceOrder(stop_buy(usdt(100))), RejectReason::StopWouldTriggerImmediately);
    let (waiting, _) = v.place(stop_buy(usdt(100) + cents(1)));
    assert!(v.engine.order(waiting).is_some());
}

#[test]
fn a_root_has_depth_0_and_an_account_may_have_max_tree_depth_ancestors() {
    let mut v = Venue::new(spec());
    const ROOT: AccountId = AccountId(100);
    v.ok(Command::CreateAccount { account: ROOT, parent: AccountId::NONE, owner: 9 });
    for depth in 1..=MAX_TREE_DEPTH as u64 {
        v.ok(Command::CreateAccount {
            account: AccountId(ROOT.0 + depth),
            parent: AccountId(ROOT.0 + depth - 1),
            owner: 9,
        });
    }
    let deepest = AccountId(ROOT.0 + MAX_TREE_DEPTH as u64);
    v.reject(Command::CreateAccount { account: AccountId(999), parent: deepest, owner: 9 }, RejectReason::TreeTooDeep);
    assert_eq!(MAX_TREE_DEPTH, 32);
}
