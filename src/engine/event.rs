//! Events: the only output of the business logic. Like commands they are fixed-size and
//! `Copy`; `apply` appends them to a caller-owned buffer so the hot path does not allocate.
//!
//! An event's identity is (sequence of its command, index in that command's events).

use super::types::*;

/// One balance change of one (account, asset). The ledger of an account is the list of these;
/// the sums of `available_delta` and `held_delta` equal the balance (the reconciliation check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    pub account: AccountId,
    pub asset: AssetId,
    pub kind: LedgerKind,
    pub available_delta: i64,
    pub held_delta: i64,
    pub available_after: i64,
    pub held_after: i64,
    pub ref_kind: RefKind,
    pub ref_id: u64,
}

/// An execution report: the order as it is after this change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderReport {
    pub order_id: OrderId,
    pub account: AccountId,
    pub symbol: SymbolId,
    pub client_order_id: u64,
    pub exec: ExecKind,
    pub status: OrderStatus,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: TimeInForce,
    /// Limit price (0 for market orders), quote minor units per whole base unit.
    pub price: i64,
    /// Trigger price of a stop order (0 for other orders), quote minor units per whole base unit.
    pub stop_price: i64,
    /// Base minor units.
    pub qty: i64,
    pub filled_qty: i64,
    pub remaining_qty: i64,
    /// Quote minor units spent or received so far, fees excluded.
    pub filled_quote: i64,
    /// Quote minor units of fees paid so far.
    pub fees_paid: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trade {
    pub trade_id: TradeId,
    pub symbol: SymbolId,
    pub price: i64,
    pub qty: i64,
    /// Quote minor units exchanged, fees excluded.
    pub quote_qty: i64,
    pub maker_order: OrderId,
    pub taker_order: OrderId,
    pub maker_account: AccountId,
    pub taker_account: AccountId,
    pub maker_side: Side,
    pub maker_fee: i64,
    pub taker_fee: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The command changed nothing, for this reason. It is then the command's only event.
    Rejected {
        reason: RejectReason,
    },
    AssetCreated {
        asset: AssetId,
        scale: u8,
    },
    /// A symbol was created or updated; carries the spec now in force.
    SymbolUpdated {
        spec: crate::engine::SymbolSpec,
        status: SymbolStatus,
    },
    /// The code an asset was created with (after its `AssetCreated`; only for a non-empty code).
    AssetCode {
        asset: AssetId,
        code: Code,
    },
    /// The code a symbol was created with (after its first `SymbolUpdated`; only for a
    /// non-empty code). Later `SymbolUpdated` events of the symbol do not repeat it.
    SymbolCode {
        symbol: SymbolId,
        code: Code,
    },
    AccountCreated {
        account: AccountId,
        parent: AccountId,
        owner: u64,
    },
    AccountStatusChanged {
        account: AccountId,
        status: AccountStatus,
    },
    Ledger(LedgerEntry),
    DepositCredited {
        account: AccountId,
        asset: AssetId,
        amount: i64,
        external_ref: u64,
    },
    WithdrawalUpdated {
        withdrawal_id: u64,
        account: AccountId,
        asset: AssetId,
        amount: i64,
        client_ref: u64,
        status: WithdrawalStatus,
    },
    Transferred {
        from: AccountId,
        to: AccountId,
        asset: AssetId,
        amount: i64,
        client_ref: u64,
    },
    Order(OrderReport),
    Trade(Trade),
}
