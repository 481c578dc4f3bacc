//! Account trees, balances and the ledger. `change_balance` is the one place a balance moves:
//! it keeps balances non-negative, keeps subtree totals along the ancestor path, and emits the
//! ledger entry, so no balance can change without a ledger line.

use super::event::{Event, LedgerEntry};
use super::limits::ACCOUNTS_MAX;
use super::state::{Account, Balance, Engine, MAX_TREE_DEPTH};
use super::types::*;
use super::Verdict;

/// Adds two amounts that are bounded by construction: every balance, hold and subtree total is
/// at most the asset's outstanding supply, which deposits keep within i64 (`Overflow`). Within a
/// command a credit may come before its debit (a trade gives the buyer its base before taking
/// the seller's), but the two accounts of a trade have different owners (self-trade
/// prevention), so they share no ancestor and no subtree total counts the amount twice.
/// Overflow here is an engine bug: stop.
pub(crate) fn bounded_add(a: i64, b: i64) -> i64 {
    a.checked_add(b).unwrap_or_else(|| panic!("amount overflow: {a} + {b} (bounded by the asset supply)"))
}

/// An index into one of the state's tables as stored (u32): the limits keep every table far
/// below 2^32 entries.
pub(crate) fn index_u32(len: usize) -> u32 {
    u32::try_from(len).expect("table sizes are bounded by the limits, far below 2^32")
}

impl Engine {
    pub(crate) fn account_idx(&self, account: AccountId) -> Result<u32, RejectReason> {
        self.account_index.get(&account).copied().ok_or(RejectReason::UnknownAccount)
    }

    /// The account's index if it exists and may trade, withdraw or send funds.
    pub(crate) fn active_account_idx(&self, account: AccountId) -> Result<u32, RejectReason> {
        let idx = self.account_idx(account)?;
        match self.accounts[idx as usize].status {
            AccountStatus::Active => Ok(idx),
            AccountStatus::Frozen => Err(RejectReason::AccountFrozen),
        }
    }

    pub(crate) fn create_account(
        &mut self,
        account: AccountId,
        parent: AccountId,
        owner: u64,
        out: &mut Vec<Event>,
    ) -> Verdict {
        if account == AccountId::NONE {
            return Err(RejectReason::InvalidAccountId);
        }
        if self.account_index.contains_key(&account) {
            return Err(RejectReason::AccountExists);
        }
        if self.accounts.len() >= ACCOUNTS_MAX {
            return Err(RejectReason::TooManyAccounts);
        }
        let ancestors = if parent == AccountId::NONE {
            Vec::new()
        } else {
            let parent_idx = self.account_idx(parent).map_err(|_| RejectReason::UnknownParent)?;
            let parent_account = &self.accounts[parent_idx as usize];
            if parent_account.owner != owner {
                return Err(RejectReason::OwnerMismatch);
            }
            if parent_account.ancestors.len() + 1 > MAX_TREE_DEPTH {
                return Err(RejectReason::TreeTooDeep);
            }
            let mut path = parent_account.ancestors.clone();
            path.push(parent_idx);
            path
        };
        let asset_count = self.assets.len();
        // An ancestor never has fewer asset slots than its descendants, so `ensure_asset_slot`
        // need only look at the account itself (ancestors created before an asset lack its slot).
        for &idx in &ancestors {
            let a = &mut self.accounts[idx as usize];
            if a.balances.len() < asset_count {
                a.balances.resize(asset_count, Balance::default());
                a.subtree_totals.resize(asset_count, 0);
            }
        }
        let previous = self.account_index.insert(account, index_u32(self.accounts.len()));
        assert!(previous.is_none(), "account {account} indexed twice");
        self.accounts.push(Account {
            id: account,
            parent,
            owner,
            status: AccountStatus::Active,
            ancestors,
            balances: vec![Balance::default(); asset_count],
            subtree_totals: vec![0; asset_count],
            open_orders: Vec::new(),
            pending_withdrawals: 0,
        });
        out.push(Event::AccountCreated { account, parent, owner });
        Ok(())
    }

    pub(crate) fn set_account_status(
        &mut self,
        account: AccountId,
        status: AccountStatus,
        out: &mut Vec<Event>,
    ) -> Verdict {
        let idx = self.account_idx(account)?;
        self.accounts[idx as usize].status = status;
        out.push(Event::AccountStatusChanged { account, status });
        Ok(())
    }

    /// The balance of (account, asset); zero if never touched.
    pub(crate) fn balance(&self, account_idx: u32, asset_idx: u32) -> Balance {
        self.accounts[account_idx as usize].balances.get(asset_idx as usize).copied().unwrap_or_default()
    }

    /// Makes sure the account and its ancestors have a slot for the asset (assets created after
    /// an account are added lazily, once). Relies on ancestors having at least as many slots as
    /// the account (kept by `create_account`).
    fn ensure_asset_slot(&mut self, account_idx: u32, asset_idx: u32) {
        let needed = asset_idx as usize + 1;
        if self.accounts[account_idx as usize].balances.len() >= needed {
            return;
        }
        let ancestors = std::mem::take(&mut self.accounts[account_idx as usize].ancestors);
        for &idx in ancestors.iter().chain(std::iter::once(&account_idx)) {
            let a = &mut self.accounts[idx as usize];
            if a.balances.len() < needed {
                a.balances.resize(needed, Balance::default());
            }
            if a.subtree_totals.len() < needed {
                a.subtree_totals.resize(needed, 0);
            }
        }
        self.accounts[account_idx as usize].ancestors = ancestors;
    }

    /// Moves one balance by the given deltas and writes the ledger entry. Callers validate
    /// first; a negative result here is a bug in the engine, so it stops the processor rather
    /// than corrupt the books.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn change_balance(
        &mut self,
        account_idx: u32,
        asset_idx: u32,
        kind: LedgerKind,
        available_delta: i64,
        held_delta: i64,
        ref_kind: RefKind,
        ref_id: u64,
        out: &mut Vec<Event>,
    ) {
        if available_delta == 0 && held_delta == 0 {
            return;
        }
        self.ensure_asset_slot(account_idx, asset_idx);
        let account = &mut self.accounts[account_idx as usize];
        let balance = &mut account.balances[asset_idx as usize];
        balance.available = bounded_add(balance.available, available_delta);
        balance.held = bounded_add(balance.held, held_delta);
        assert!(
            balance.available >= 0 && balance.held >= 0,
            "negative balance: account {} asset #{asset_idx} {balance:?} after {kind:?}",
            account.id
        );
        let entry = LedgerEntry {
            account: account.id,
            asset: self.assets[asset_idx as usize].id,
            kind,
            available_delta,
            held_delta,
            available_after: balance.available,
            held_after: balance.held,
            ref_kind,
            ref_id,
        };
        let total_delta = bounded_add(available_delta, held_delta);
        if total_delta != 0 {
            let total = &mut account.subtree_totals[asset_idx as usize];
            *total = bounded_add(*total, total_delta);
            // The subtree includes the account itself (O(1) to check; the whole path is
            // checked by `check_invariants`).
            assert!(*total >= balance.total(), "subtree total {} below own balance {balance:?}", *total);
            let ancestor_count = account.ancestors.len();
            for i in 0..ancestor_count {
                let ancestor_idx = self.accounts[account_idx as usize].ancestors[i];
                let total = &mut self.accounts[ancestor_idx as usize].subtree_totals[asset_idx as usize];
                *total = bounded_add(*total, total_delta);
            }
        }
        out.push(Event::Ledger(entry));
    }

    /// Moves `amount` from available to held (Hold) or back (Release, negative amount).
    pub(crate) fn hold(
        &mut self,
        account_idx: u32,
        asset_idx: u32,
        amount: i64,
        ref_kind: RefKind,
        ref_id: u64,
        out: &mut Vec<Event>,
    ) {
        let kind = if amount >= 0 { LedgerKind::Hold } else { LedgerKind::Release };
        // `amount` is a hold or the negation of one, so it is never i64::MIN.
        assert_ne!(amount, i64::MIN, "a hold of i64::MIN");
        self.change_balance(account_idx, asset_idx, kind, -amount, amount, ref_kind, ref_id, out);
    }
}
