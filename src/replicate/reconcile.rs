//! `seqd reconcile`: compares a mirror with the state rebuilt from the journal.

use std::collections::BTreeMap;

use crate::engine::{AccountId, AssetId, OrderId, OrderStatus, Seq, Side, SymbolId};

use super::SinkError;

/// An open order as a mirror holds it, in minor units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MirrorOrder {
    pub account: AccountId,
    pub symbol: SymbolId,
    pub side: Side,
    pub status: OrderStatus,
    /// Quote minor units per whole base unit.
    pub price: i64,
    /// Base minor units.
    pub remaining_qty: i64,
    pub filled_qty: i64,
}

/// What a mirror says, at its checkpoint, in minor units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorState {
    pub checkpoint_seq: Seq,
    /// (account, asset) -> (available, held).
    pub balances: BTreeMap<(AccountId, AssetId), (i64, i64)>,
    /// Orders whose status is new or partially filled.
    pub open_orders: BTreeMap<OrderId, MirrorOrder>,
    /// (account, asset) -> (sum of available deltas, sum of held deltas) over the ledger.
    pub ledger_sums: BTreeMap<(AccountId, AssetId), (i64, i64)>,
}

/// A mirror `seqd reconcile` can read.
#[allow(async_fn_in_trait)]
pub trait Mirror {
    fn name(&self) -> &str;
    async fn read_state(&mut self) -> Result<MirrorState, SinkError>;
}
