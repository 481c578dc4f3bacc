//! Sample values of every wire type: one command of every kind, one event of every kind, and
//! the parts they are made of. The codec's and the protocol's tests share them, so a new kind
//! or field is added in one place. Also the plain limit order the engine and daemon tests build.

use crate::engine::*;

/// A symbol specification with a distinct value in every field.
pub fn spec() -> SymbolSpec {
    SymbolSpec {
        symbol: 9,
        base: 1,
        quote: 2,
        tick_size: 3,
        lot_size: 4,
        min_qty: 5,
        min_notional: 6,
        max_order_qty: 7,
        maker_fee_ppm: 8,
        taker_fee_ppm: 9,
        price_band_bps: 10,
    }
}

/// An order report with a value other than 0 in every field that allows one.
pub fn order_report(order_id: OrderId) -> OrderReport {
    OrderReport {
        order_id,
        account: 11,
        symbol: 9,
        client_order_id: 77,
        exec: ExecKind::Trade,
        status: OrderStatus::PartiallyFilled,
        side: Side::Buy,
        order_type: OrderType::StopLimit,
        tif: TimeInForce::PostOnly,
        price: 30_000,
        qty: 10,
        filled_qty: 4,
        remaining_qty: 6,
        filled_quote: 120_000,
        fees_paid: -3,
        stop_price: 29_900,
    }
}

/// A trade with a distinct value in every field.
pub fn trade() -> Trade {
    Trade {
        trade_id: 5,
        symbol: 9,
        price: 30_000,
        qty: 4,
        quote_qty: 120_000,
        maker_order: 3,
        taker_order: 8,
        maker_account: 11,
        taker_account: 12,
        maker_side: Side::Sell,
        maker_fee: 120,
        taker_fee: 240,
    }
}

/// One command of every kind, in kind order, with edge values (`i64::MAX`, `u64::MAX`,
/// `i64::MIN`) where a field allows them. A new command kind belongs here: the codec's and the
/// protocol's tests take their commands from this list.
pub fn every_command() -> Vec<Command> {
    vec![
        Command::CreateAsset { asset: 7, scale: 8 },
        Command::CreateSymbol(spec()),
        Command::UpdateSymbol(spec()),
        Command::SetSymbolStatus { symbol: 9, status: SymbolStatus::Halted },
        Command::CreateAccount { account: 1, parent: 2, owner: 3 },
        Command::SetAccountStatus { account: 1, status: AccountStatus::Frozen },
        Command::Deposit { account: 1, asset: 2, amount: i64::MAX, external_ref: u64::MAX },
        Command::WithdrawRequest { account: 1, asset: 2, amount: 3, client_ref: 4 },
        Command::WithdrawApprove { withdrawal_id: 5 },
        Command::WithdrawReject { withdrawal_id: 6 },
        Command::Transfer { from: 1, to: 2, asset: 3, amount: 4, client_ref: 5 },
        Command::PlaceOrder(NewOrder {
            account: 1,
            symbol: 2,
            client_order_id: 3,
            side: Side::Sell,
            order_type: OrderType::StopMarket,
            tif: TimeInForce::Fok,
            stp: StpMode::CancelBoth,
            price: 4,
            stop_price: 5,
            qty: 6,
            quote_budget: i64::MIN,
        }),
        Command::CancelOrder { account: 1, order_id: 2 },
        Command::CancelByClientId { account: 1, client_order_id: 2 },
        Command::CancelAll { account: 1, symbol: 0 },
        Command::AmendOrder { account: 1, order_id: 2, price: 3, qty: 4 },
    ]
}

/// One event of every kind, in tag order.
pub fn every_event() -> Vec<Event> {
    vec![
        Event::Rejected { reason: RejectReason::InsufficientFunds },
        Event::AssetCreated { asset: 1, scale: 6 },
        Event::SymbolUpdated { spec: spec(), status: SymbolStatus::Trading },
        Event::AccountCreated { account: 11, parent: 10, owner: 1 },
        Event::AccountStatusChanged { account: 11, status: AccountStatus::Active },
        Event::Ledger(LedgerEntry {
            account: 11,
            asset: 2,
            kind: LedgerKind::Fee,
            available_delta: -240,
            held_delta: 0,
            available_after: 1_000,
            held_after: 50,
            ref_kind: RefKind::Trade,
            ref_id: 5,
        }),
        Event::DepositCredited { account: 11, asset: 2, amount: 1_000_000, external_ref: 99 },
        Event::WithdrawalUpdated {
            withdrawal_id: 40,
            account: 11,
            asset: 2,
            amount: 5,
            client_ref: 6,
            status: WithdrawalStatus::Rejected,
        },
        Event::Transferred { from: 10, to: 11, asset: 2, amount: 7, client_ref: 8 },
        Event::Order(order_report(8)),
        Event::Trade(trade()),
    ]
}

/// A good-till-cancelled limit order on `symbol`, no client id, self-trade prevention cancelling
/// the incoming order: the order most tests place (they vary it with struct update syntax).
pub fn gtc_limit(account: AccountId, symbol: SymbolId, side: Side, price: i64, qty: i64) -> NewOrder {
    NewOrder {
        account,
        symbol,
        client_order_id: 0,
        side,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        stp: StpMode::CancelIncoming,
        price,
        stop_price: 0,
        qty,
        quote_budget: 0,
    }
}
