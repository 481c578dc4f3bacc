//! Who may do what: principals' grants (from the configuration) checked against a mirror of the
//! account tree. The mirror starts from the recovered engine and follows `AccountCreated`
//! events as the responder delivers them, so the gateway never asks the processor.
//!
//! A principal may act on, and see, an account when one of its granted roots is that account
//! or an ancestor of it. Admin principals may do everything.

use crate::config::PrincipalSection;
use crate::engine::{AccountId, Engine, Event};
use crate::protocol::{Authority, GatewayError};
use rustc_hash::FxHashMap;
use std::sync::{RwLock, RwLockReadGuard};

/// Parent of every known account (0 for a root).
#[derive(Debug, Default)]
pub struct AccountDirectory {
    parents: RwLock<FxHashMap<AccountId, AccountId>>,
}

impl AccountDirectory {
    pub fn from_engine(engine: &Engine) -> AccountDirectory {
        let parents = engine.account_parents().collect();
        AccountDirectory { parents: RwLock::new(parents) }
    }

    /// Follows the events of one command (called on the responder thread).
    pub fn observe(&self, events: &[Event]) {
        for event in events {
            if let Event::AccountCreated { account, parent, .. } = event {
                self.parents.write().expect("directory lock").insert(*account, *parent);
            }
        }
    }

    /// Is `account` inside the subtree rooted at one of `roots`?
    pub fn within(&self, account: AccountId, roots: &[AccountId]) -> bool {
        self.view().within(account, roots)
    }

    /// The tree as it is now, read-locked once for many questions (the responder asks one per
    /// connection and event). Drop it before the next `observe`.
    pub fn view(&self) -> DirectoryView<'_> {
        DirectoryView { parents: self.parents.read().expect("directory lock") }
    }
}

/// A read-locked view of the account tree.
pub struct DirectoryView<'a> {
    parents: RwLockReadGuard<'a, FxHashMap<AccountId, AccountId>>,
}

impl DirectoryView<'_> {
    /// Is `account` inside the subtree rooted at one of `roots`?
    pub fn within(&self, account: AccountId, roots: &[AccountId]) -> bool {
        let mut current = account;
        // The engine caps trees at 32 ancestors; the bound also stops a corrupt cycle.
        for _ in 0..=crate::engine::MAX_TREE_DEPTH + 1 {
            if roots.contains(&current) {
                return true;
            }
            match self.parents.get(&current) {
                Some(&parent) if parent != AccountId::NONE => current = parent,
                _ => return false,
            }
        }
        false
    }
}

/// What one connected principal holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grants {
    pub principal: String,
    pub admin: bool,
    pub roots: Vec<AccountId>,
}

impl Grants {
    /// The grants of a configured principal; `None` if the certificate names no principal.
    pub fn of(principal: &str, configured: &[PrincipalSection]) -> Option<Grants> {
        let section = configured.iter().find(|p| p.name == principal)?;
        Some(Grants { principal: section.name.clone(), admin: section.admin, roots: section.accounts.clone() })
    }

    /// Checks a request's authority. An order's owner is checked by the caller once the
    /// processor has answered (see `may_see_account`).
    pub fn check(&self, authority: Authority, directory: &AccountDirectory) -> Result<(), GatewayError> {
        if self.admin {
            return Ok(());
        }
        match authority {
            Authority::Public | Authority::OrderOwner(_) => Ok(()),
            Authority::Admin => Err(GatewayError::AdminOnly),
            Authority::Account(account) => self.account(account, directory),
            Authority::Accounts(a, b) => self.account(a, directory).and_then(|()| self.account(b, directory)),
        }
    }

    pub fn may_see_account(&self, account: AccountId, directory: &AccountDirectory) -> bool {
        self.sees(account, &directory.view())
    }

    /// `may_see_account` against a view already locked.
    pub fn sees(&self, account: AccountId, view: &DirectoryView) -> bool {
        self.admin || view.within(account, &self.roots)
    }

    fn account(&self, account: AccountId, directory: &AccountDirectory) -> Result<(), GatewayError> {
        if directory.within(account, &self.roots) {
            Ok(())
        } else {
            Err(GatewayError::Unauthorized)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Command;

    fn directory() -> AccountDirectory {
        let mut engine = Engine::new();
        let mut events = Vec::new();
        let tree = [(1, 0, 100), (11, 1, 100), (111, 11, 100), (2, 0, 200)];
        for (seq, (account, parent, owner)) in tree.into_iter().enumerate() {
            engine.apply(
                seq as u64 + 1,
                0,
                &Command::CreateAccount { account: AccountId(account), parent: AccountId(parent), owner },
                &mut events,
            );
        }
        AccountDirectory::from_engine(&engine)
    }

    fn trader(roots: &[AccountId]) -> Grants {
        Grants { principal: "t".into(), admin: false, roots: roots.to_vec() }
    }

    #[test]
    fn a_grant_covers_its_subtree_and_nothing_else() {
        let directory = directory();
        let fund = trader(&[AccountId(11)]);
        assert_eq!(fund.check(Authority::Account(AccountId(11)), &directory), Ok(()));
        assert_eq!(fund.check(Authority::Account(AccountId(111)), &directory), Ok(()));
        assert_eq!(fund.check(Authority::Account(AccountId(1)), &directory), Err(GatewayError::Unauthorized));
        assert_eq!(fund.check(Authority::Account(AccountId(2)), &directory), Err(GatewayError::Unauthorized));
        assert_eq!(fund.check(Authority::Account(AccountId(999)), &directory), Err(GatewayError::Unauthorized));
        assert_eq!(fund.check(Authority::Accounts(AccountId(111), AccountId(11)), &directory), Ok(()));
        assert_eq!(
            fund.check(Authority::Accounts(AccountId(111), AccountId(1)), &directory),
            Err(GatewayError::Unauthorized)
        );
        assert_eq!(fund.check(Authority::Admin, &directory), Err(GatewayError::AdminOnly));
        assert_eq!(fund.check(Authority::Public, &directory), Ok(()));
        let admin = Grants { principal: "a".into(), admin: true, roots: vec![] };
        assert_eq!(admin.check(Authority::Account(AccountId(2)), &directory), Ok(()));
        assert_eq!(admin.check(Authority::Admin, &directory), Ok(()));
    }

    #[test]
    fn accounts_created_later_are_followed_from_events() {
        let directory = directory();
        let fund = trader(&[AccountId(1)]);
        assert!(!fund.may_see_account(AccountId(1111), &directory));
        directory.observe(&[Event::AccountCreated { account: AccountId(1111), parent: AccountId(111), owner: 100 }]);
        assert!(fund.may_see_account(AccountId(1111), &directory));
        assert!(!trader(&[AccountId(2)]).may_see_account(AccountId(1111), &directory));
    }

    #[test]
    fn principals_come_from_the_configuration() {
        let configured = crate::config::Config::load(None).unwrap().principals;
        assert_eq!(Grants::of("trader1", &configured).unwrap().roots, vec![AccountId(1)]);
        assert!(Grants::of("admin", &configured).unwrap().admin);
        assert_eq!(Grants::of("stranger", &configured), None);
    }
}
