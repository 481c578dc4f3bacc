//! `seqd reconcile`: compares a mirror with the state rebuilt from the journal.

use std::collections::{BTreeMap, BTreeSet};

use crate::engine::{AccountId, AssetId, Engine, OrderId, OrderStatus, Seq, Side, SymbolId};
use crate::storage::replay::{replay, DataDir, ReplayError, ReplayOptions};

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

/// What the journal says a mirror at `checkpoint_seq` must hold: the same shape as
/// [`MirrorState`], built from the engine. Ledger sums must equal balances (the sum of an
/// account's entries is its balance), so both come from the engine's balances.
pub fn expected_state(engine: &Engine, checkpoint_seq: Seq) -> MirrorState {
    let mut expected = MirrorState { checkpoint_seq, ..MirrorState::default() };
    let accounts: Vec<AccountId> = engine.account_parents().map(|(account, _)| account).collect();
    for account in accounts {
        for view in engine.balances(account).unwrap_or_default() {
            expected.balances.insert((account, view.asset), (view.available, view.held));
            expected.ledger_sums.insert((account, view.asset), (view.available, view.held));
        }
        for order in engine.open_orders(account).unwrap_or_default() {
            let mirror_order = MirrorOrder {
                account: order.account,
                symbol: order.symbol,
                side: order.side,
                status: order.status,
                price: order.price,
                remaining_qty: order.remaining_qty,
                filled_qty: order.filled_qty,
            };
            expected.open_orders.insert(order.order_id, mirror_order);
        }
    }
    expected
}

/// Every difference between what the journal says and what a mirror holds, one line each.
/// Zero balances and zero ledger sums count as absent on both sides (a mirror keeps the row of
/// a balance that went back to zero; the engine does not list it).
pub fn differences(expected: &MirrorState, mirror: &MirrorState) -> Vec<String> {
    let mut found = Vec::new();
    if expected.checkpoint_seq != mirror.checkpoint_seq {
        found.push(format!(
            "checkpoint: journal state at {} but mirror at {}",
            expected.checkpoint_seq, mirror.checkpoint_seq
        ));
    }
    compare_maps("balance (available, held)", &expected.balances, &mirror.balances, &(0, 0), &mut found);
    compare_maps("ledger sum (available, held)", &expected.ledger_sums, &mirror.ledger_sums, &(0, 0), &mut found);
    for (order_id, order) in &expected.open_orders {
        match mirror.open_orders.get(order_id) {
            None => found.push(format!("open order {order_id}: missing from the mirror (journal: {order:?})")),
            Some(m) if m != order => found.push(format!("open order {order_id}: journal {order:?}, mirror {m:?}")),
            Some(_) => {}
        }
    }
    for (order_id, order) in &mirror.open_orders {
        if !expected.open_orders.contains_key(order_id) {
            found.push(format!("open order {order_id}: open in the mirror ({order:?}) but not in the journal"));
        }
    }
    found
}

fn compare_maps<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    what: &str,
    expected: &BTreeMap<K, V>,
    mirror: &BTreeMap<K, V>,
    zero: &V,
    found: &mut Vec<String>,
) {
    let keys: BTreeSet<&K> = expected.keys().chain(mirror.keys()).collect();
    for key in keys {
        let journal_value = expected.get(key).unwrap_or(zero);
        let mirror_value = mirror.get(key).unwrap_or(zero);
        if journal_value != mirror_value {
            found.push(format!("{what} of {key:?}: journal {journal_value:?}, mirror {mirror_value:?}"));
        }
    }
}

/// The outcome of reconciling one mirror.
#[derive(Clone, Debug)]
pub struct Report {
    pub mirror: String,
    pub checkpoint_seq: Seq,
    pub balances_checked: usize,
    pub open_orders_checked: usize,
    pub differences: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{mirror}: {source}")]
    Mirror { mirror: String, source: SinkError },
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

/// Reads the mirror, rebuilds the state from the journal at the mirror's checkpoint (newest
/// snapshot at or before it, then the input journal), and lists every difference.
pub async fn reconcile<M: Mirror>(data_dir: &DataDir, mirror: &mut M) -> Result<Report, ReconcileError> {
    let name = mirror.name().to_string();
    let state = mirror.read_state().await.map_err(|source| ReconcileError::Mirror { mirror: name.clone(), source })?;
    let engine = if state.checkpoint_seq == 0 {
        Engine::new()
    } else {
        let options = ReplayOptions { use_snapshot: true, to_seq: Some(state.checkpoint_seq), progress: false };
        replay(data_dir, options)?.0
    };
    let expected = expected_state(&engine, state.checkpoint_seq);
    Ok(Report {
        mirror: name,
        checkpoint_seq: state.checkpoint_seq,
        balances_checked: expected.balances.len().max(state.balances.len()),
        open_orders_checked: expected.open_orders.len().max(state.open_orders.len()),
        differences: differences(&expected, &state),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small exchange-core mix: funded accounts and a book with resting orders.
    fn engine_after_script() -> (Engine, Seq) {
        use crate::testkit::workload::{exchange_core_mix, WorkloadSpec};
        let workload = exchange_core_mix(WorkloadSpec { accounts: 20, resting_orders: 50, commands: 500, seed: 3 });
        let mut engine = Engine::new();
        let mut events = Vec::new();
        let commands: Vec<_> = workload.setup.iter().chain(&workload.commands).collect();
        for (i, command) in commands.iter().enumerate() {
            events.clear();
            engine.apply(i as u64 + 1, i as u64, command, &mut events);
        }
        (engine, commands.len() as u64)
    }

    #[test]
    fn an_equal_mirror_has_no_differences_and_any_change_is_reported() {
        let (engine, last_seq) = engine_after_script();
        let expected = expected_state(&engine, last_seq);
        assert!(!expected.balances.is_empty() && !expected.open_orders.is_empty(), "the script leaves state to check");
        let mut mirror = expected.clone();
        mirror.balances.insert((AccountId(999), AssetId(1)), (0, 0)); // a zero row the engine does not list
        assert_eq!(differences(&expected, &mirror), Vec::<String>::new());

        let key = *mirror.balances.keys().next().unwrap();
        mirror.balances.get_mut(&key).unwrap().0 += 1;
        let order_id = *mirror.open_orders.keys().next().unwrap();
        mirror.open_orders.remove(&order_id);
        mirror.ledger_sums.insert((AccountId(777), AssetId(1)), (5, 0));
        mirror.checkpoint_seq -= 1;
        let found = differences(&expected, &mirror);
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(found.iter().any(|d| d.contains(&format!("{key:?}")) && d.starts_with("balance")));
        assert!(found.iter().any(|d| d.contains(&format!("open order {order_id}: missing"))));
        assert!(found.iter().any(|d| d.contains("(777, 1)")));
        assert!(found.iter().any(|d| d.starts_with("checkpoint")));
    }
}
