//! The whole business state, held in memory by the single processor thread.
//!
//! Lookups by id go through `FxHashMap`s (unseeded, so identical on every replica), but no code
//! iterates a hash map: anything that must be visited in order (hashing, cancel-all, queries)
//! walks sorted ids or ordered containers.

use super::book::{Book, OrderSlab};
use super::command::SymbolSpec;
use super::types::*;
use super::units::Ticks;
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};

/// Largest number of ancestors an account may have (`limits::TREE_DEPTH_MAX`).
pub const MAX_TREE_DEPTH: usize = super::limits::TREE_DEPTH_MAX;
/// Largest asset scale: 10^18 still fits in an i64.
pub const MAX_ASSET_SCALE: u8 = 18;
/// Fee rates are parts per million of the notional.
pub const PPM: i64 = 1_000_000;

#[derive(Clone, Debug)]
pub struct Asset {
    pub id: AssetId,
    pub scale: u8,
    /// Empty for an asset created without one.
    pub code: Code,
}

/// Per-asset totals behind the conservation check:
/// sum of all balances + `fees_collected` = `deposited` - `withdrawn` = `supply()`.
/// The cumulative sums are i128 so a long-lived venue never overflows them; the outstanding
/// supply is kept within i64, which bounds every balance and subtree total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AssetTotals {
    pub deposited: i128,
    pub withdrawn: i128,
    pub fees_collected: i64,
}

impl AssetTotals {
    /// Minor units held by the venue: everything deposited and not withdrawn.
    pub fn supply(&self) -> i64 {
        // Deposits are refused when the supply would leave i64 (`Overflow`).
        i64::try_from(self.deposited - self.withdrawn).expect("the supply is kept within i64")
    }
}

#[derive(Clone, Debug)]
pub struct Symbol {
    pub spec: SymbolSpec,
    pub status: SymbolStatus,
    pub base_idx: u32,
    pub quote_idx: u32,
    /// Quote minor units exchanged by one lot at a price of one tick (exact by construction).
    pub quote_per_tick_lot: i64,
    /// Price of the last trade in ticks; 0 before the first trade.
    pub last_price_ticks: Ticks,
    pub book: Book,
    /// Empty for a symbol created without one.
    pub code: Code,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balance {
    pub available: i64,
    pub held: i64,
}

impl Balance {
    pub fn total(&self) -> i64 {
        self.available + self.held
    }
}

#[derive(Clone, Debug)]
pub struct Account {
    pub id: AccountId,
    pub parent: AccountId,
    pub owner: u64,
    pub status: AccountStatus,
    /// Indexes of the ancestors, root first, this account excluded (the materialized path).
    pub ancestors: Vec<u32>,
    /// By asset index; grown when an asset is first touched.
    pub balances: Vec<Balance>,
    /// Sum of `total()` over this account and all its descendants, by asset index.
    pub subtree_totals: Vec<i64>,
    /// Slots of this account's live orders (resting or waiting stops), in no particular order.
    pub open_orders: Vec<u32>,
    /// Withdrawals of this account still pending (derived from `Engine::withdrawals`).
    pub pending_withdrawals: usize,
}

impl Account {
    pub fn root_idx(&self, own_idx: u32) -> u32 {
        self.ancestors.first().copied().unwrap_or(own_idx)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Withdrawal {
    pub account: AccountId,
    pub asset: AssetId,
    pub amount: i64,
    pub client_ref: u64,
    pub status: WithdrawalStatus,
}

/// The business state. Create with `Engine::new()`, change only through `Engine::apply` (or
/// `Engine::apply_keyed`).
#[derive(Clone, Debug, Default)]
pub struct Engine {
    pub(crate) assets: Vec<Asset>,
    pub(crate) asset_index: FxHashMap<AssetId, u32>,
    pub(crate) totals: Vec<AssetTotals>,
    pub(crate) symbols: Vec<Symbol>,
    pub(crate) symbol_index: FxHashMap<SymbolId, u32>,
    /// Non-empty asset and symbol codes to their index, for uniqueness (derived; bounded by
    /// `ASSETS_MAX` and `SYMBOLS_MAX`).
    pub(crate) asset_codes: FxHashMap<Code, u32>,
    pub(crate) symbol_codes: FxHashMap<Code, u32>,
    pub(crate) accounts: Vec<Account>,
    pub(crate) account_index: FxHashMap<AccountId, u32>,
    pub(crate) orders: OrderSlab,
    pub(crate) order_index: FxHashMap<OrderId, u32>,
    /// (account index, client order id) of live orders, for uniqueness and cancel-by-client-id.
    pub(crate) client_order_ids: FxHashMap<(u32, u64), OrderId>,
    /// Every pending withdrawal and the newest `WITHDRAWALS_DECIDED_KEPT` decided ones, by id
    /// (the request's sequence).
    pub(crate) withdrawals: BTreeMap<u64, Withdrawal>,
    /// Ids of the decided withdrawals in `withdrawals`, oldest first (derived).
    pub(crate) decided_withdrawals: BTreeSet<u64>,
    /// Reference windows (see `limits`): the references kept, and per window the floor, the
    /// largest reference forgotten; a reference at or below its floor is refused.
    pub(crate) withdrawal_refs: BTreeSet<(AccountId, u64)>,
    pub(crate) withdrawal_ref_floors: BTreeMap<AccountId, u64>,
    pub(crate) deposit_refs: BTreeSet<u64>,
    pub(crate) deposit_ref_floor: Option<u64>,
    pub(crate) transfer_refs: BTreeSet<(AccountId, u64)>,
    pub(crate) transfer_ref_floors: BTreeMap<AccountId, u64>,
    /// (acting account, request key, seq) of the newest `REQUEST_KEYS_KEPT` keyed commands
    /// applied, oldest first (`Engine::apply_keyed`).
    pub(crate) request_keys: super::request_keys::RequestKeys,
    pub(crate) last_seq: Seq,
    pub(crate) last_timestamp_ns: u64,
    /// Id of the last trade; 0 before the first. Trade ids are 1, 2, 3, ...
    pub(crate) last_trade_id: TradeId,
    /// Reused buffers, so cancel-all and stop triggering do not allocate once warm.
    pub(crate) scratch_orders: Vec<OrderId>,
    /// Matches the command being applied has performed (`limits::COMMAND_MATCHES_MAX`).
    pub(crate) matches_used: usize,
    /// Debug builds: the ledger stream summed per (account, asset), for invariant 6. Not state:
    /// never encoded or hashed (a snapshot's balances summarize the ledger before it).
    #[cfg(debug_assertions)]
    pub(crate) ledger_audit: super::invariants::LedgerAudit,
}
