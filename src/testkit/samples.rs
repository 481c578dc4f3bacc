//! Sample values of every wire type: one command of every kind, one event of every kind, and
//! the parts they are made of. The codec's and the protocol's tests share them, so a new kind
//! or field is added in one place. Also the plain limit order the engine and daemon tests build.

use crate::engine::*;

/// A symbol specification with a distinct value in every field.
pub fn spec() -> SymbolSpec {
    SymbolSpec {
        symbol: SymbolId(9),
        base: AssetId(1),
        quote: AssetId(2),
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
        account: AccountId(11),
        symbol: SymbolId(9),
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
        trade_id: TradeId(5),
        symbol: SymbolId(9),
        price: 30_000,
        qty: 4,
        quote_qty: 120_000,
        maker_order: OrderId(3),
        taker_order: OrderId(8),
        maker_account: AccountId(11),
        taker_account: AccountId(12),
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
        Command::CreateAsset { asset: AssetId(7), scale: 8 },
        Command::CreateSymbol(spec()),
        Command::UpdateSymbol(spec()),
        Command::SetSymbolStatus { symbol: SymbolId(9), status: SymbolStatus::Halted },
        Command::CreateAccount { account: AccountId(1), parent: AccountId(2), owner: 3 },
        Command::SetAccountStatus { account: AccountId(1), status: AccountStatus::Frozen },
        Command::Deposit { account: AccountId(1), asset: AssetId(2), amount: i64::MAX, external_ref: u64::MAX },
        Command::WithdrawRequest { account: AccountId(1), asset: AssetId(2), amount: 3, client_ref: 4 },
        Command::WithdrawApprove { withdrawal_id: 5 },
        Command::WithdrawReject { withdrawal_id: 6 },
        Command::Transfer { from: AccountId(1), to: AccountId(2), asset: AssetId(3), amount: 4, client_ref: 5 },
        Command::PlaceOrder(NewOrder {
            account: AccountId(1),
            symbol: SymbolId(2),
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
        Command::CancelOrder { account: AccountId(1), order_id: OrderId(2) },
        Command::CancelByClientId { account: AccountId(1), client_order_id: 2 },
        Command::CancelAll { account: AccountId(1), symbol: SymbolId::ALL },
        Command::AmendOrder { account: AccountId(1), order_id: OrderId(2), price: 3, qty: 4 },
        Command::CreateAssetWithCode { asset: AssetId(7), scale: 8, code: Code::parse("BTC", CodeOf::Asset).unwrap() },
        // A code the engine would refuse still round-trips: validity is the engine's rule.
        Command::CreateSymbolWithCode { spec: spec(), code: Code([b'x'; CODE_BYTES]) },
    ]
}

/// One event of every kind, in tag order.
pub fn every_event() -> Vec<Event> {
    vec![
        Event::Rejected { reason: RejectReason::InsufficientFunds },
        Event::AssetCreated { asset: AssetId(1), scale: 6 },
        Event::SymbolUpdated { spec: spec(), status: SymbolStatus::Trading },
        Event::AccountCreated { account: AccountId(11), parent: AccountId(10), owner: 1 },
        Event::AccountStatusChanged { account: AccountId(11), status: AccountStatus::Active },
        Event::Ledger(LedgerEntry {
            account: AccountId(11),
            asset: AssetId(2),
            kind: LedgerKind::Fee,
            available_delta: -240,
            held_delta: 0,
            available_after: 1_000,
            held_after: 50,
            ref_kind: RefKind::Trade,
            ref_id: 5,
        }),
        Event::DepositCredited { account: AccountId(11), asset: AssetId(2), amount: 1_000_000, external_ref: 99 },
        Event::WithdrawalUpdated {
            withdrawal_id: 40,
            account: AccountId(11),
            asset: AssetId(2),
            amount: 5,
            client_ref: 6,
            status: WithdrawalStatus::Rejected,
        },
        Event::Transferred { from: AccountId(10), to: AccountId(11), asset: AssetId(2), amount: 7, client_ref: 8 },
        Event::Order(order_report(OrderId(8))),
        Event::Trade(trade()),
        Event::AssetCode { asset: AssetId(1), code: Code::parse("USDT", CodeOf::Asset).unwrap() },
        Event::SymbolCode { symbol: SymbolId(9), code: Code::parse("BTC/USDT", CodeOf::Symbol).unwrap() },
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
