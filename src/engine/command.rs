//! Commands: the only input of the business logic. Fixed-size, `Copy`, no heap data, so a
//! command is cheap to put in a ring slot, a journal record or a protocol frame.

use super::types::*;

/// Reference data of a trading pair. Prices are quote minor units per whole base unit; sizes
/// are base minor units; the fee rates are parts per million of the notional, charged in quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymbolSpec {
    pub symbol: SymbolId,
    pub base: AssetId,
    pub quote: AssetId,
    /// Smallest price step, quote minor units per whole base unit.
    pub tick_size: i64,
    /// Smallest quantity step, base minor units.
    pub lot_size: i64,
    /// Smallest order quantity, base minor units.
    pub min_qty: i64,
    /// Smallest limit-order notional, quote minor units.
    pub min_notional: i64,
    /// Largest order quantity, base minor units.
    pub max_order_qty: i64,
    pub maker_fee_ppm: u32,
    pub taker_fee_ppm: u32,
    /// Largest distance of a limit price from the last trade price, in basis points; 0 = off.
    pub price_band_bps: u32,
}

/// A new order. Which fields matter depends on `order_type`:
/// limit and stop-limit use `price`; stop orders use `stop_price`; a market or stop-market buy
/// spends at most `quote_budget` (fees included) and buys at most `qty`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewOrder {
    pub account: AccountId,
    pub symbol: SymbolId,
    pub client_order_id: u64,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: TimeInForce,
    pub stp: StpMode,
    pub price: i64,
    pub stop_price: i64,
    pub qty: i64,
    pub quote_budget: i64,
}

/// A command fills one slot of the input ring, so its size is watched: 88 bytes since the coded
/// creations (`CreateSymbolWithCode`: a 64-byte spec and a 16-byte code), 72 before. A larger
/// variant must be a deliberate change of this line, measured with the benchmarks.
pub const COMMAND_BYTES: usize = 88;
const _: () = assert!(std::mem::size_of::<Command>() == COMMAND_BYTES);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Admin: a new asset with a fixed number of decimal places (0..=18).
    CreateAsset {
        asset: AssetId,
        scale: u8,
    },
    /// Admin: a new trading pair (created in `Trading` status).
    CreateSymbol(SymbolSpec),
    /// Admin: `CreateAsset` with a code (`Code`), valid and unique among assets. The code is
    /// fixed for the asset's life. A separate command (and journal kind) so that the commands
    /// of journals written before codes existed keep their layout.
    CreateAssetWithCode {
        asset: AssetId,
        scale: u8,
        code: Code,
    },
    /// Admin: `CreateSymbol` with a code, valid and unique among symbols; fixed for its life.
    CreateSymbolWithCode {
        spec: SymbolSpec,
        code: Code,
    },
    /// Admin: change the mutable parameters of a symbol (sizes, fees, band); base, quote,
    /// tick and lot stay as created because resting orders are expressed in them.
    UpdateSymbol(SymbolSpec),
    /// Admin: halt (only cancels accepted) or resume trading.
    SetSymbolStatus {
        symbol: SymbolId,
        status: SymbolStatus,
    },
    /// Admin: an account; `parent` 0 makes a root. A child's owner must equal its parent's.
    CreateAccount {
        account: AccountId,
        parent: AccountId,
        owner: u64,
    },
    /// Admin: freeze (no new orders, withdrawals or outgoing transfers) or unfreeze.
    SetAccountStatus {
        account: AccountId,
        status: AccountStatus,
    },
    /// Admin: credit an external deposit, at most once per `external_ref`.
    Deposit {
        account: AccountId,
        asset: AssetId,
        amount: i64,
        external_ref: u64,
    },
    /// Ask to withdraw: holds the amount. The withdrawal id is this command's sequence.
    WithdrawRequest {
        account: AccountId,
        asset: AssetId,
        amount: i64,
        client_ref: u64,
    },
    /// Admin: debit the held amount of a pending withdrawal.
    WithdrawApprove {
        withdrawal_id: u64,
    },
    /// Admin: release the held amount of a pending withdrawal.
    WithdrawReject {
        withdrawal_id: u64,
    },
    /// Move available funds between two accounts of one tree, once per (from, client_ref).
    Transfer {
        from: AccountId,
        to: AccountId,
        asset: AssetId,
        amount: i64,
        client_ref: u64,
    },
    PlaceOrder(NewOrder),
    CancelOrder {
        account: AccountId,
        order_id: OrderId,
    },
    CancelByClientId {
        account: AccountId,
        client_order_id: u64,
    },
    /// Cancel every live order of the account; `symbol` 0 means all symbols.
    CancelAll {
        account: AccountId,
        symbol: SymbolId,
    },
    /// Set a resting limit order's price and total quantity. Same price and a smaller quantity
    /// keeps time priority; anything else re-queues it (and it may trade).
    AmendOrder {
        account: AccountId,
        order_id: OrderId,
        price: i64,
        qty: i64,
    },
}

impl Command {
    /// The account a command acts for, which scopes its request key (`Engine::apply_keyed`):
    /// the account it names (a transfer's sender), or `AccountId::NONE` for an admin command
    /// that names none (reference data, withdrawal decisions). Two clients acting for different
    /// accounts can then never collide on a key, whatever keys they choose.
    pub fn acting_account(&self) -> AccountId {
        match *self {
            Command::CreateAsset { .. }
            | Command::CreateSymbol(_)
            | Command::CreateAssetWithCode { .. }
            | Command::CreateSymbolWithCode { .. }
            | Command::UpdateSymbol(_)
            | Command::SetSymbolStatus { .. }
            | Command::WithdrawApprove { .. }
            | Command::WithdrawReject { .. } => AccountId::NONE,
            Command::CreateAccount { account, .. }
            | Command::SetAccountStatus { account, .. }
            | Command::Deposit { account, .. }
            | Command::WithdrawRequest { account, .. }
            | Command::CancelOrder { account, .. }
            | Command::CancelByClientId { account, .. }
            | Command::CancelAll { account, .. }
            | Command::AmendOrder { account, .. } => account,
            Command::Transfer { from, .. } => from,
            Command::PlaceOrder(order) => order.account,
        }
    }
}
