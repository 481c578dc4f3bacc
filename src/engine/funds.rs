//! Deposits, two-phase withdrawals and transfers.

use super::event::Event;
use super::state::Engine;
use super::types::*;
use super::Verdict;

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
        if self.deposit_refs.contains(&external_ref) {
            return Err(RejectReason::DuplicateDepositRef);
        }
        // Bounding the outstanding supply bounds every balance and subtree total below it.
        if self.totals[asset_idx as usize].supply().checked_add(amount).is_none() {
            return Err(RejectReason::Overflow);
        }
        self.deposit_refs.insert(external_ref);
        self.totals[asset_idx as usize].deposited += amount as i128;
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
        if self.withdrawal_refs.contains(&(account, client_ref)) {
            return Err(RejectReason::DuplicateWithdrawalRef);
        }
        if self.balance(account_idx, asset_idx).available < amount {
            return Err(RejectReason::InsufficientFunds);
        }
        self.withdrawal_refs.insert((account, client_ref));
        let withdrawal =
            super::state::Withdrawal { account, asset, amount, client_ref, status: WithdrawalStatus::Pending };
        self.withdrawals.insert(seq, withdrawal);
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
            self.totals[asset_idx as usize].withdrawn += w.amount as i128;
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
        if self.transfer_refs.contains(&(from, client_ref)) {
            return Err(RejectReason::DuplicateTransferRef);
        }
        let from_root = self.accounts[from_idx as usize].root_idx(from_idx);
        let to_root = self.accounts[to_idx as usize].root_idx(to_idx);
        if from_root != to_root {
            return Err(RejectReason::NotSameTree);
        }
        if self.balance(from_idx, asset_idx).available < amount {
            return Err(RejectReason::InsufficientFunds);
        }
        self.transfer_refs.insert((from, client_ref));
        self.change_balance(from_idx, asset_idx, LedgerKind::Transfer, -amount, 0, RefKind::Transfer, client_ref, out);
        self.change_balance(to_idx, asset_idx, LedgerKind::Transfer, amount, 0, RefKind::Transfer, client_ref, out);
        out.push(Event::Transferred { from, to, asset, amount, client_ref });
        Ok(())
    }
}
