//! Read-only views of the state (answered at a known sequence, never journaled) and the
//! invariant checker used by tests, replay audits and debug builds.

use super::book::NIL;
use super::event::OrderReport;
use super::state::{AssetTotals, Balance, Engine};
use super::types::*;

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

/// A broken invariant, described for a person. Any occurrence is an engine bug.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invariant broken: {0}")]
pub struct InvariantError(pub String);

fn broken<T>(message: String) -> Result<T, InvariantError> {
    Err(InvariantError(message))
}

impl Engine {
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
        Some(s.last_price_ticks * s.spec.tick_size)
    }

    /// Best bid and best ask prices (quote minor units per whole base unit), without allocating.
    pub fn best_prices(&self, symbol: SymbolId) -> Option<(Option<i64>, Option<i64>)> {
        let s = &self.symbols[self.symbol_idx(symbol).ok()? as usize];
        let tick = s.spec.tick_size;
        Some((s.book.best_bid_ticks().map(|p| p * tick), s.book.best_ask_ticks().map(|p| p * tick)))
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
        let view = |(price, level): (i64, &super::book::Level)| DepthLevel {
            price: price * s.spec.tick_size,
            // Bids' lots are bounded by the quote they hold, not by base: in an extreme spec their
            // base quantity can pass i64, and is then reported as i64::MAX.
            qty: level.total_lots.saturating_mul(s.spec.lot_size),
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

    /// Checks every invariant of the state; O(size of state). See ARCHITECTURE.md.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        self.check_conservation_and_holds()?;
        self.check_subtree_totals()?;
        self.check_books()
    }

    /// Per asset: balances + fees = deposits - withdrawals; no negative balance; every held
    /// amount is exactly what the account's live orders and pending withdrawals reserve.
    fn check_conservation_and_holds(&self) -> Result<(), InvariantError> {
        let asset_count = self.assets.len();
        let mut reserved = vec![vec![0i128; asset_count]; self.accounts.len()];
        for (&order_id, &slot) in self.order_index.iter().collect::<std::collections::BTreeMap<_, _>>() {
            let o = self.orders.get(slot);
            if o.id != order_id || o.held < 0 || o.status.is_terminal() {
                return broken(format!("order {order_id} is inconsistent: {o:?}"));
            }
            let symbol = &self.symbols[o.symbol_idx as usize];
            let asset_idx = if o.side == Side::Buy { symbol.quote_idx } else { symbol.base_idx };
            reserved[o.account_idx as usize][asset_idx as usize] += i128::from(o.held);
        }
        for (id, w) in self.withdrawals.iter().filter(|(_, w)| w.status == WithdrawalStatus::Pending) {
            let (Ok(a), Ok(s)) = (self.account_idx(w.account), self.asset_idx(w.asset)) else {
                return broken(format!("withdrawal {id} names an unknown account or asset"));
            };
            reserved[a as usize][s as usize] += i128::from(w.amount);
        }
        let mut sums = vec![0i128; asset_count];
        for (idx, account) in self.accounts.iter().enumerate() {
            for asset_idx in 0..asset_count {
                let b = self.balance(idx as u32, asset_idx as u32);
                if b.available < 0 || b.held < 0 {
                    return broken(format!("account {} has a negative balance {b:?}", account.id));
                }
                if i128::from(b.held) != reserved[idx][asset_idx] {
                    return broken(format!(
                        "account {} asset {} holds {} but its orders and withdrawals reserve {}",
                        account.id, self.assets[asset_idx].id, b.held, reserved[idx][asset_idx]
                    ));
                }
                sums[asset_idx] += i128::from(b.available) + i128::from(b.held);
            }
        }
        for (asset_idx, totals) in self.totals.iter().enumerate() {
            if Some(sums[asset_idx] + i128::from(totals.fees_collected))
                != totals.deposited.checked_sub(totals.withdrawn)
            {
                return broken(format!(
                    "asset {} is not conserved: {} + fees {:?}",
                    self.assets[asset_idx].id, sums[asset_idx], totals
                ));
            }
        }
        Ok(())
    }

    /// Each account's subtree total equals its own total plus its descendants'.
    fn check_subtree_totals(&self) -> Result<(), InvariantError> {
        let asset_count = self.assets.len();
        let mut expected = vec![vec![0i128; asset_count]; self.accounts.len()];
        for (idx, account) in self.accounts.iter().enumerate() {
            let totals: Vec<i128> = (0..asset_count)
                .map(|asset_idx| {
                    let b = self.balance(idx as u32, asset_idx as u32);
                    i128::from(b.available) + i128::from(b.held)
                })
                .collect();
            for owner in std::iter::once(idx).chain(account.ancestors.iter().map(|&a| a as usize)) {
                for (sum, total) in expected[owner].iter_mut().zip(&totals) {
                    *sum += total;
                }
            }
        }
        for (idx, account) in self.accounts.iter().enumerate() {
            for (asset_idx, want) in expected[idx].iter().enumerate() {
                let got = account.subtree_totals.get(asset_idx).copied().unwrap_or(0);
                if i128::from(got) != *want {
                    return broken(format!(
                        "account {} subtree total of asset #{asset_idx} is {got}, descendants sum to {want}",
                        account.id
                    ));
                }
            }
        }
        Ok(())
    }

    /// Books are never crossed, and each level's list, count and total match its orders.
    fn check_books(&self) -> Result<(), InvariantError> {
        let mut resting = 0usize;
        for symbol in &self.symbols {
            let book = &symbol.book;
            if let (Some(bid), Some(ask)) = (book.best_bid_ticks(), book.best_ask_ticks()) {
                if bid >= ask {
                    return broken(format!("symbol {} is crossed: bid {bid} >= ask {ask}", symbol.spec.symbol));
                }
            }
            for (side, levels) in [(Side::Buy, &book.bids), (Side::Sell, &book.asks)] {
                let mut previous_price = None;
                for (price, level) in levels.iter_ascending() {
                    if previous_price.is_some_and(|p| p >= price) {
                        return broken(format!("levels of symbol {} are out of order", symbol.spec.symbol));
                    }
                    previous_price = Some(price);
                    let (mut lots, mut count, mut slot, mut prev) = (0i64, 0u32, level.head, NIL);
                    while slot != NIL {
                        let o = self.orders.get(slot);
                        if o.side != side
                            || o.price_ticks != price
                            || !o.resting
                            || o.prev != prev
                            || o.remaining_lots() <= 0
                        {
                            return broken(format!("order {} does not belong at {side:?} {price}: {o:?}", o.id));
                        }
                        lots += o.remaining_lots();
                        count += 1;
                        prev = slot;
                        slot = o.next;
                    }
                    if lots != level.total_lots || count != level.count || prev != level.tail {
                        return broken(format!(
                            "level {side:?} {price} of symbol {} disagrees with its orders",
                            symbol.spec.symbol
                        ));
                    }
                    resting += count as usize;
                }
            }
            for (&(stop, id), side) in
                book.stop_buys.iter().map(|s| (s, Side::Buy)).chain(book.stop_sells.iter().map(|s| (s, Side::Sell)))
            {
                let o = self.order_index.get(&id).map(|&slot| self.orders.get(slot));
                if !o.is_some_and(|o| !o.triggered && o.stop_ticks == stop && o.side == side) {
                    return broken(format!("stop entry ({stop}, {id}) has no waiting stop order"));
                }
            }
        }
        let resting_in_index = self.order_index.values().filter(|&&slot| self.orders.get(slot).resting).count();
        if resting != resting_in_index {
            return broken(format!("{resting} orders in books but {resting_in_index} marked resting"));
        }
        Ok(())
    }
}
