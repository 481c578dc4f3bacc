//! A fixed, scripted trading session that uses every command kind, with fills, rejections,
//! withdrawals (approved and rejected), a halt, a freeze, an amend and a stop trigger. It is
//! the `seqd demo` session and the source of the golden journals in `journal/golden/`.

use crate::engine::*;
use crate::testkit::workload::{BTC, BTC_USDT, LOT, USDT};

pub const BTC_SCALE: u8 = 8;
pub const USDT_SCALE: u8 = 6;
/// Timestamp of the first command; command `i` (from 0) is stamped `i` microseconds later.
pub const START_TIMESTAMP_NS: u64 = 1_700_000_000_000_000_000;

pub fn usdt(units: i64) -> i64 {
    units * 1_000_000
}

pub fn btc_lots(lots: i64) -> i64 {
    lots * LOT
}

fn order(
    account: AccountId,
    side: Side,
    order_type: OrderType,
    tif: TimeInForce,
    price_usdt: i64,
    lots: i64,
) -> NewOrder {
    NewOrder {
        account,
        symbol: BTC_USDT,
        client_order_id: 0,
        side,
        order_type,
        tif,
        stp: StpMode::CancelIncoming,
        price: usdt(price_usdt),
        stop_price: 0,
        qty: btc_lots(lots),
        quote_budget: 0,
    }
}

fn limit(account: AccountId, side: Side, price_usdt: i64, lots: i64, tif: TimeInForce) -> Command {
    Command::PlaceOrder(order(account, side, OrderType::Limit, tif, price_usdt, lots))
}

fn btc_usdt_spec() -> SymbolSpec {
    SymbolSpec {
        min_notional: usdt(1),
        max_order_qty: btc_lots(100_000),
        price_band_bps: 1_000,
        ..crate::testkit::workload::btc_usdt_spec(1_000, 2_000)
    }
}

/// Builds a command list and knows the sequence each command will get (from 1, in order),
/// so that later commands can name the orders and withdrawals earlier ones create.
struct Script(Vec<Command>);

impl Script {
    /// Appends a command and returns its sequence (which is also the order/withdrawal id).
    fn push(&mut self, command: Command) -> Seq {
        self.0.push(command);
        self.0.len() as Seq
    }
}

/// The session: a fund (account 1, owner 100) with two strategy sub-accounts (11, 12) trades
/// against a market maker (2, owner 200). Sequence numbers start at 1 in this order.
pub fn scripted_session() -> Vec<Command> {
    let mut s = Script(Vec::new());
    s.push(Command::CreateAsset { asset: BTC, scale: BTC_SCALE });
    s.push(Command::CreateAsset { asset: USDT, scale: USDT_SCALE });
    s.push(Command::CreateSymbol(btc_usdt_spec()));
    s.push(Command::UpdateSymbol(SymbolSpec { min_notional: usdt(5), ..btc_usdt_spec() }));
    s.push(Command::CreateAccount { account: AccountId(1), parent: AccountId::NONE, owner: 100 });
    s.push(Command::CreateAccount { account: AccountId(11), parent: AccountId(1), owner: 100 });
    s.push(Command::CreateAccount { account: AccountId(12), parent: AccountId(1), owner: 100 });
    s.push(Command::CreateAccount { account: AccountId(2), parent: AccountId::NONE, owner: 200 });
    s.push(Command::Deposit { account: AccountId(1), asset: USDT, amount: usdt(1_000_000), external_ref: 9001 });
    s.push(Command::Deposit { account: AccountId(2), asset: BTC, amount: 50 * 100_000_000, external_ref: 9002 });
    // Rejected: the same external reference again.
    s.push(Command::Deposit { account: AccountId(2), asset: BTC, amount: 50 * 100_000_000, external_ref: 9002 });
    s.push(Command::Transfer {
        from: AccountId(1),
        to: AccountId(11),
        asset: USDT,
        amount: usdt(400_000),
        client_ref: 1,
    });
    s.push(Command::Transfer {
        from: AccountId(1),
        to: AccountId(12),
        asset: USDT,
        amount: usdt(100_000),
        client_ref: 2,
    });
    // Rejected: account 2 is in another tree.
    s.push(Command::Transfer { from: AccountId(1), to: AccountId(2), asset: USDT, amount: usdt(1), client_ref: 3 });
    s.push(limit(AccountId(2), Side::Sell, 30_000, 10_000, TimeInForce::Gtc));
    s.push(limit(AccountId(2), Side::Sell, 30_010, 10_000, TimeInForce::Gtc));
    s.push(Command::PlaceOrder(NewOrder {
        client_order_id: 77,
        stop_price: usdt(30_005),
        quote_budget: usdt(20_000),
        ..order(AccountId(11), Side::Buy, OrderType::StopMarket, TimeInForce::Ioc, 0, 5_000)
    }));
    // Takes 1 BTC at 30,000 and 0.5 at 30,010; the last price 30,010 fires the stop buy,
    // which takes the other 0.5 at 30,010.
    s.push(limit(AccountId(11), Side::Buy, 30_010, 15_000, TimeInForce::Ioc));
    let bid = s.push(limit(AccountId(11), Side::Buy, 29_000, 2_000, TimeInForce::Gtc));
    // New price: loses time priority and is held again at the new price.
    s.push(Command::AmendOrder {
        account: AccountId(11),
        order_id: OrderId(bid),
        price: usdt(29_100),
        qty: btc_lots(1_500),
    });
    s.push(Command::PlaceOrder(NewOrder {
        client_order_id: 5,
        ..order(AccountId(12), Side::Buy, OrderType::Limit, TimeInForce::Gtc, 28_000, 100)
    }));
    s.push(Command::CancelByClientId { account: AccountId(12), client_order_id: 5 });
    s.push(Command::PlaceOrder(NewOrder {
        stop_price: usdt(29_050),
        ..order(AccountId(2), Side::Sell, OrderType::StopLimit, TimeInForce::Gtc, 29_000, 1_000)
    }));
    let approved =
        s.push(Command::WithdrawRequest { account: AccountId(11), asset: BTC, amount: 100_000_000, client_ref: 5 });
    s.push(Command::WithdrawApprove { withdrawal_id: approved });
    let rejected =
        s.push(Command::WithdrawRequest { account: AccountId(2), asset: BTC, amount: 100_000_000, client_ref: 6 });
    s.push(Command::WithdrawReject { withdrawal_id: rejected });
    // Rejected: already decided.
    s.push(Command::WithdrawApprove { withdrawal_id: rejected });
    s.push(Command::SetSymbolStatus { symbol: BTC_USDT, status: SymbolStatus::Halted });
    // Rejected: the symbol is halted.
    s.push(limit(AccountId(2), Side::Sell, 29_100, 100, TimeInForce::Gtc));
    s.push(Command::SetSymbolStatus { symbol: BTC_USDT, status: SymbolStatus::Trading });
    // Fill-or-kill into the amended bid at 29,100: fills 0.1 of its 0.15 BTC.
    s.push(limit(AccountId(2), Side::Sell, 29_100, 1_000, TimeInForce::Fok));
    // Rejected: post-only that would take.
    s.push(limit(AccountId(2), Side::Sell, 29_100, 100, TimeInForce::PostOnly));
    s.push(Command::SetAccountStatus { account: AccountId(11), status: AccountStatus::Frozen });
    // Rejected: frozen accounts may not place.
    s.push(limit(AccountId(11), Side::Buy, 29_000, 100, TimeInForce::Gtc));
    // Frozen accounts may cancel.
    s.push(Command::CancelOrder { account: AccountId(11), order_id: OrderId(bid) });
    s.push(Command::SetAccountStatus { account: AccountId(11), status: AccountStatus::Active });
    s.push(limit(AccountId(2), Side::Buy, 29_040, 200, TimeInForce::Gtc));
    s.push(Command::Transfer {
        from: AccountId(11),
        to: AccountId(12),
        asset: BTC,
        amount: btc_lots(200),
        client_ref: 4,
    });
    // A market sell trades at 29,040 and fires the stop sell (stop 29,050), which rests at 29,000.
    s.push(Command::PlaceOrder(order(AccountId(12), Side::Sell, OrderType::Market, TimeInForce::Ioc, 0, 200)));
    s.push(Command::CancelAll { account: AccountId(2), symbol: SymbolId::ALL });
    s.0
}

/// Timestamp of command `index` (0-based) in the scripted session.
pub fn timestamp_ns(index: usize) -> u64 {
    START_TIMESTAMP_NS + index as u64 * 1_000
}
