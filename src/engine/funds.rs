//! Deposits, two-phase withdrawals and transfers.

use super::event::Event;
use super::limits::*;
use super::state::Engine;
use super::types::*;
use super::Verdict;
use std::collections::{BTreeMap, BTreeSet};

/// May `reference` be used in a window that keeps it (`kept`) or not, with this floor?
fn check_ref(kept: bool, floor: Option<u64>, reference: u64, duplicate: RejectReason) -> Verdict {
    if kept {
        return Err(duplicate);
    }
    // Refs in the window are all above the floor; one at or below it may have been forgotten.
    if floor.is_some_and(|floor| reference <= floor) {
        return Err(RejectReason::ReferenceExpired);
    }
    Ok(())
}

/// Records `reference` of `account` in a per-account window, forgetting the account's smallest
/// reference (which becomes its floor) when it holds more than `kept_max`.
fn remember_account_ref(
    refs: &mut BTreeSet<(AccountId, u64)>,
    floors: &mut BTreeMap<AccountId, u64>,
    account: AccountId,
    reference: u64,
    kept_max: usize,
) {
    // `check_ref` refused a reference the window keeps.
    assert!(refs.insert((account, reference)), "reference {reference} of account {account} kept twice");
    let mut own = refs.range((account, 0)..=(account, u64::MAX));
    // Counting walks at most `kept_max + 1` entries.
    if own.clone().count() > kept_max {
        let oldest = *own.next().expect("the window holds more than kept_max");
        refs.remove(&oldest);
        floors.insert(account, oldest.1);
    }
}

impl Engine {
    /// Forgets the smallest deposit references while more than `kept_max` are kept, raising
    /// the floor to the largest one forgotten.
    pub(crate) fn forget_deposit_refs_over(&mut self, kept_max: usize) {
        while self.deposit_refs.len() > kept_max {
            self.deposit_ref_floor = self.deposit_refs.pop_first();
        }
    }

    /// Records a decision and forgets the oldest decided withdrawals over `kept_max`.
    fn remember_decided_withdrawal(&mut self, withdrawal_id: u64, kept_max: usize) {
        assert!(self.decided_withdrawals.insert(withdrawal_id), "withdrawal {withdrawal_id} decided twice");
        self.forget_decided_withdrawals_over(kept_max);
    }

    /// Forgets the oldest decided withdrawals while more than `kept_max` are kept. Pending
    /// withdrawals are never forgotten: they are the only ones that can still move money.
    fn forget_decided_withdrawals_over(&mut self, kept_max: usize) {
        while self.decided_withdrawals.len() > kept_max {
            let oldest = self.decided_withdrawals.pop_first().expect("more than kept");
            let forgotten = self.withdrawals.remove(&oldest);
            assert!(forgotten.is_some_and(|w| w.status != WithdrawalStatus::Pending), "forgot withdrawal {oldest}");
        }
    }

    fn check_account_ref(&self, account: AccountId, reference: u64, transfer: bool) -> Verdict {
        if transfer {
            let kept = self.transfer_refs.contains(&(account, reference));
            let floor = self.transfer_ref_floors.get(&account).copied();
            check_ref(kept, floor, reference, RejectReason::DuplicateTransferRef)
        } else {
            let kept = self.withdrawal_refs.contains(&(account, reference));
            let floor = self.withdrawal_ref_floors.get(&account).copied();
            check_ref(kept, floor, reference, RejectReason::DuplicateWithdrawalRef)
        }
    }
}

impl Engine {
    pub(crate) fn deposit(
        &mut self,
        account: AccountId,
        asset: AssetId,
        amount: i64,
        external_ref: u64,
        out: &mut Vec<Event>,
    ) -> Verdict {
        let account_idx = self.account_idx(account)?;
        let asset_idx = self.asset_idx(asset)?;
        if amount <= 0 {
            return Err(RejectReason::InvalidAmount);
        }
        let kept = self.deposit_refs.contains(&external_ref);
        check_ref(kept, self.deposit_ref_floor, external_ref, RejectReason::DuplicateDepositRef)?;
        // Bounding the outstanding supply bounds every balance and subtree total below it.
        if self.totals[asset_idx as usize].supply().checked_add(amount).is_none() {
            return Err(RejectReason::Overflow);
        }
        assert!(self.deposit_refs.insert(external_ref), "deposit reference {external_ref} kept twice");
        self.forget_deposit_refs_over(DEPOSIT_REFS_KEPT);
        self.totals[asset_idx as usize].deposited += i128::from(amount);
        self.change_balance(
            account_idx,
            asset_idx,
            LedgerKind::Deposit,
            amount,
            0,
            RefKind::Deposit,
            external_ref,
            out,
        );
        out.push(Event::DepositCredited { account, asset, amount, external_ref });
        Ok(())
    }

    pub(crate) fn withdraw_request(
        &mut self,
        seq: Seq,
        account: AccountId,
        asset: AssetId,
        amount: i64,
        client_ref: u64,
        out: &mut Vec<Event>,
    ) -> Verdict {
        let account_idx = self.active_account_idx(account)?;
        let asset_idx = self.asset_idx(asset)?;
        if amount <= 0 {
            return Err(RejectReason::InvalidAmount);
        }
        self.check_account_ref(account, client_ref, false)?;
        if self.accounts[account_idx as usize].pending_withdrawals >= ACCOUNT_PENDING_WITHDRAWALS_MAX {
            return Err(RejectReason::TooManyPendingWithdrawals);
        }
        if self.balance(account_idx, asset_idx).available < amount {
            return Err(RejectReason::InsufficientFunds);
        }
        remember_account_ref(
            &mut self.withdrawal_refs,
            &mut self.withdrawal_ref_floors,
            account,
            client_ref,
            ACCOUNT_WITHDRAWAL_REFS_KEPT,
        );
        self.accounts[account_idx as usize].pending_withdrawals += 1;
        let withdrawal =
            super::state::Withdrawal { account, asset, amount, client_ref, status: WithdrawalStatus::Pending };
        // A withdrawal's id is its request's sequence, and sequences are never reused.
        let previous = self.withdrawals.insert(seq, withdrawal);
        assert!(previous.is_none(), "withdrawal id {seq} used twice");
        self.hold(account_idx, asset_idx, amount, RefKind::Withdrawal, seq, out);
        out.push(Event::WithdrawalUpdated {
            withdrawal_id: seq,
            account,
            asset,
            amount,
            client_ref,
            status: WithdrawalStatus::Pending,
        });
        Ok(())
    }

    /// Approve (debit the held amount) or reject (release it) a pending withdrawal.
    pub(crate) fn withdraw_decide(&mut self, withdrawal_id: u64, approve: bool, out: &mut Vec<Event>) -> Verdict {
        let w = *self.withdrawals.get(&withdrawal_id).ok_or(RejectReason::UnknownWithdrawal)?;
        if w.status != WithdrawalStatus::Pending {
            return Err(RejectReason::WithdrawalNotPending);
        }
        let account_idx = self.account_idx(w.account)?;
        let asset_idx = self.asset_idx(w.asset)?;
        let status = if approve {
            self.totals[asset_idx as usize].withdrawn += i128::from(w.amount);
            self.change_balance(
                account_idx,
                asset_idx,
                LedgerKind::Withdrawal,
                0,
                -w.amount,
                RefKind::Withdrawal,
                withdrawal_id,
                out,
            );
            WithdrawalStatus::Approved
        } else {
            self.hold(account_idx, asset_idx, -w.amount, RefKind::Withdrawal, withdrawal_id, out);
            WithdrawalStatus::Rejected
        };
        self.withdrawals.get_mut(&withdrawal_id).expect("checked above").status = status;
        let pending = &mut self.accounts[account_idx as usize].pending_withdrawals;
        assert!(*pending > 0, "account {} decides a withdrawal it does not count as pending", w.account);
        *pending -= 1;
        self.remember_decided_withdrawal(withdrawal_id, WITHDRAWALS_DECIDED_KEPT);
        out.push(Event::WithdrawalUpdated {
            withdrawal_id,
            account: w.account,
            asset: w.asset,
            amount: w.amount,
            client_ref: w.client_ref,
            status,
        });
        Ok(())
    }

    pub(crate) fn transfer(
        &mut self,
        from: AccountId,
        to: AccountId,
        asset: AssetId,
        amount: i64,
        client_ref: u64,
        out: &mut Vec<Event>,
    ) -> Verdict {
        if from == to {
            return Err(RejectReason::SameAccount);
        }
        let from_idx = self.active_account_idx(from)?;
        let to_idx = self.account_idx(to)?;
        let asset_idx = self.asset_idx(asset)?;
        if amount <= 0 {
            return Err(RejectReason::InvalidAmount);
        }
        self.check_account_ref(from, client_ref, true)?;
        let from_root = self.accounts[from_idx as usize].root_idx(from_idx);
        let to_root = self.accounts[to_idx as usize].root_idx(to_idx);
        if from_root != to_root {
            return Err(RejectReason::NotSameTree);
        }
        if self.balance(from_idx, asset_idx).available < amount {
            return Err(RejectReason::InsufficientFunds);
        }
        remember_account_ref(
            &mut self.transfer_refs,
            &mut self.transfer_ref_floors,
            from,
            client_ref,
            ACCOUNT_TRANSFER_REFS_KEPT,
        );
        self.change_balance(from_idx, asset_idx, LedgerKind::Transfer, -amount, 0, RefKind::Transfer, client_ref, out);
        self.change_balance(to_idx, asset_idx, LedgerKind::Transfer, amount, 0, RefKind::Transfer, client_ref, out);
        out.push(Event::Transferred { from, to, asset, amount, client_ref });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Command;

    fn apply(engine: &mut Engine, command: Command) -> Vec<Event> {
        let mut events = Vec::new();
        engine.apply(engine.last_seq() + 1, 0, &command, &mut events);
        events
    }

    /// The windows' forgetting, with small capacities (the real ones take a million commands):
    /// a forgotten decided withdrawal is unknown and cannot be decided again; a pending one is
    /// never forgotten; a forgotten deposit reference is refused as expired.
    #[test]
    fn forgotten_records_are_never_applied_again() {
        use Command::*;
        let mut engine = Engine::new();
        apply(&mut engine, CreateAsset { asset: AssetId(1), scale: 2 });
        apply(&mut engine, CreateAccount { account: AccountId(1), parent: AccountId::NONE, owner: 1 });
        apply(&mut engine, Deposit { account: AccountId(1), asset: AssetId(1), amount: 100, external_ref: 10 });
        let mut ids = Vec::new();
        for client_ref in 1..=3 {
            apply(&mut engine, WithdrawRequest { account: AccountId(1), asset: AssetId(1), amount: 1, client_ref });
            ids.push(engine.last_seq());
        }
        apply(&mut engine, WithdrawApprove { withdrawal_id: ids[0] });
        apply(&mut engine, WithdrawReject { withdrawal_id: ids[1] });
        // Keep one decided withdrawal: the oldest decided (ids[0]) goes, the pending one stays.
        engine.forget_decided_withdrawals_over(1);
        assert!(!engine.withdrawals.contains_key(&ids[0]) && engine.withdrawals.contains_key(&ids[2]));
        let events = apply(&mut engine, WithdrawReject { withdrawal_id: ids[0] });
        assert_eq!(events, vec![Event::Rejected { reason: RejectReason::UnknownWithdrawal }]);
        let events = apply(&mut engine, WithdrawReject { withdrawal_id: ids[1] });
        assert_eq!(events, vec![Event::Rejected { reason: RejectReason::WithdrawalNotPending }]);
        assert_eq!(apply(&mut engine, WithdrawApprove { withdrawal_id: ids[2] }).len(), 2);
        engine.check_invariants().unwrap();

        apply(&mut engine, Deposit { account: AccountId(1), asset: AssetId(1), amount: 1, external_ref: 20 });
        engine.forget_deposit_refs_over(1);
        assert_eq!(engine.deposit_ref_floor, Some(10));
        for (external_ref, reason) in [(10, RejectReason::ReferenceExpired), (20, RejectReason::DuplicateDepositRef)] {
            let events =
                apply(&mut engine, Deposit { account: AccountId(1), asset: AssetId(1), amount: 1, external_ref });
            assert_eq!(events, vec![Event::Rejected { reason }]);
        }
        assert_eq!(
            apply(&mut engine, Deposit { account: AccountId(1), asset: AssetId(1), amount: 1, external_ref: 11 }).len(),
            2
        );
        // The floor and the shorter history survive a snapshot.
        let mut bytes = Vec::new();
        engine.encode_state(&mut bytes);
        let restored = Engine::decode_state(&bytes).unwrap();
        assert_eq!(restored.state_hash(), engine.state_hash());
        assert_eq!(restored.deposit_ref_floor, Some(10));
    }
}
