//! Read-only views of the state (answered at a known sequence, never journaled). The invariant
//! checker is in `invariants.rs`.

use super::book::NIL;
use super::command::SymbolSpec;
use super::event::OrderReport;
use super::state::{AssetTotals, Balance, Engine, Withdrawal};
use super::types::*;
use super::units::Ticks;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceView {
    pub asset: AssetId,
    pub available: i64,
    pub held: i64,
}

/// One aggregated price level: price in quote minor units per whole base unit, qty in base minor units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthLevel {
    pub price: i64,
    pub qty: i64,
    pub orders: u32,
}

/// An asset as clients see it: id, decimal places, code (empty if created without one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssetView {
    pub asset: AssetId,
    pub scale: u8,
    pub code: Code,
}

/// A symbol as clients see it: its whole spec, status and code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymbolView {
    pub spec: SymbolSpec,
    pub status: SymbolStatus,
    pub code: Code,
}

impl Engine {
    /// Every asset, by id (at most `ASSETS_MAX`).
    pub fn asset_views(&self) -> Vec<AssetView> {
        let mut views: Vec<AssetView> =
            self.assets.iter().map(|a| AssetView { asset: a.id, scale: a.scale, code: a.code }).collect();
        views.sort_unstable_by_key(|v| v.asset);
        views
    }

    /// Every symbol, by id (at most `SYMBOLS_MAX`).
    pub fn symbol_views(&self) -> Vec<SymbolView> {
        let mut views: Vec<SymbolView> =
            self.symbols.iter().map(|s| SymbolView { spec: s.spec, status: s.status, code: s.code }).collect();
        views.sort_unstable_by_key(|v| v.spec.symbol);
        views
    }

    /// A withdrawal the state still holds: every pending one and the newest decided ones
    /// (`limits::WITHDRAWALS_DECIDED_KEPT`); older decided ones are only in the event log.
    pub fn withdrawal(&self, withdrawal_id: u64) -> Option<Withdrawal> {
        self.withdrawals.get(&withdrawal_id).copied()
    }

    /// Balances of an account by asset id (assets never touched are left out).
    pub fn balances(&self, account: AccountId) -> Option<Vec<BalanceView>> {
        let idx = self.account_idx(account).ok()?;
        let mut views: Vec<BalanceView> = self.accounts[idx as usize]
            .balances
            .iter()
            .enumerate()
            .filter(|(_, b)| b.available != 0 || b.held != 0)
            .map(|(asset_idx, b)| BalanceView {
                asset: self.assets[asset_idx].id,
                available: b.available,
                held: b.held,
            })
            .collect();
        views.sort_by_key(|v| v.asset);
        Some(views)
    }

    pub fn balance_of(&self, account: AccountId, asset: AssetId) -> Option<Balance> {
        Some(self.balance(self.account_idx(account).ok()?, self.asset_idx(asset).ok()?))
    }

    /// Total (available + held) of the account and all its descendants: O(1).
    pub fn subtree_total(&self, account: AccountId, asset: AssetId) -> Option<i64> {
        let account = &self.accounts[self.account_idx(account).ok()? as usize];
        Some(account.subtree_totals.get(self.asset_idx(asset).ok()? as usize).copied().unwrap_or(0))
    }

    /// Every account with its parent (0 for a root), in no particular order.
    pub fn account_parents(&self) -> impl Iterator<Item = (AccountId, AccountId)> + '_ {
        self.accounts.iter().map(|a| (a.id, a.parent))
    }

    /// Subtree totals of an account for every asset it or a descendant holds, by asset id.
    pub fn subtree_totals(&self, account: AccountId) -> Option<Vec<(AssetId, i64)>> {
        let account = &self.accounts[self.account_idx(account).ok()? as usize];
        let mut totals: Vec<(AssetId, i64)> = account
            .subtree_totals
            .iter()
            .enumerate()
            .filter(|(_, total)| **total != 0)
            .map(|(asset_idx, total)| (self.assets[asset_idx].id, *total))
            .collect();
        totals.sort_unstable();
        Some(totals)
    }

    pub fn asset_totals(&self, asset: AssetId) -> Option<AssetTotals> {
        Some(self.totals[self.asset_idx(asset).ok()? as usize])
    }

    pub fn last_price(&self, symbol: SymbolId) -> Option<i64> {
        let s = &self.symbols[self.symbol_idx(symbol).ok()? as usize];
        // A last price is a maker's price, given in quote units (0 before the first trade).
        Some(s.spec.ticks_to_price(s.last_price_ticks).expect("a maker's price converts back"))
    }

    /// Best bid and best ask prices (quote minor units per whole base unit), without allocating.
    pub fn best_prices(&self, symbol: SymbolId) -> Option<(Option<i64>, Option<i64>)> {
        let s = &self.symbols[self.symbol_idx(symbol).ok()? as usize];
        let price = |ticks| s.spec.ticks_to_price(ticks).expect("a resting price was given in quote units");
        Some((s.book.best_bid_ticks().map(price), s.book.best_ask_ticks().map(price)))
    }

    /// A live order (resting or waiting stop); ended orders are only in the event log.
    pub fn order(&self, order_id: OrderId) -> Option<OrderReport> {
        let slot = *self.order_index.get(&order_id)?;
        Some(self.report(slot, ExecKind::New))
    }

    /// Live orders of an account, oldest first.
    pub fn open_orders(&self, account: AccountId) -> Option<Vec<OrderReport>> {
        let idx = self.account_idx(account).ok()?;
        let mut reports: Vec<OrderReport> =
            self.accounts[idx as usize].open_orders.iter().map(|&slot| self.report(slot, ExecKind::New)).collect();
        reports.sort_by_key(|r| r.order_id);
        Some(reports)
    }

    /// Up to `levels` best levels per side: (bids best first, asks best first).
    pub fn depth(&self, symbol: SymbolId, levels: usize) -> Option<(Vec<DepthLevel>, Vec<DepthLevel>)> {
        let s = &self.symbols[self.symbol_idx(symbol).ok()? as usize];
        let view = |(price, level): (Ticks, &super::book::Level)| DepthLevel {
            price: s.spec.ticks_to_price(price).expect("a resting price was given in quote units"),
            // Bids' lots are bounded by the quote they hold, not by base: in an extreme spec their
            // base quantity can pass i64, and is then reported as i64::MAX.
            qty: s.spec.lots_to_qty(level.total_lots).unwrap_or(i64::MAX),
            orders: level.count,
        };
        let bids = s.book.bids.iter_best_first().take(levels).map(view).collect();
        let asks = s.book.asks.iter_best_first().take(levels).map(view).collect();
        Some((bids, asks))
    }

    /// Every symbol id, ascending.
    pub fn symbol_ids(&self) -> Vec<SymbolId> {
        let mut ids: Vec<SymbolId> = self.symbols.iter().map(|s| s.spec.symbol).collect();
        ids.sort_unstable();
        ids
    }

    /// The orders resting in a symbol's book (waiting stops are not in it): bids best level
    /// first, then asks best level first, each level in time priority.
    pub fn book_orders(&self, symbol: SymbolId) -> Option<Vec<OrderReport>> {
        let s = &self.symbols[self.symbol_idx(symbol).ok()? as usize];
        let mut reports = Vec::new();
        for (_, level) in s.book.bids.iter_best_first().chain(s.book.asks.iter_best_first()) {
            let mut slot = level.head;
            while slot != NIL {
                reports.push(self.report(slot, ExecKind::New));
                slot = self.orders.get(slot).next;
            }
        }
        Some(reports)
    }
}
