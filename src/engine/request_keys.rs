//! The request-key window: what makes a client's retry safe (`Engine::apply_keyed`).
//!
//! It keeps (acting account, request key, sequence) of the newest `REQUEST_KEYS_KEPT` keyed
//! commands the engine applied, oldest first, and forgets the oldest when a new one would pass
//! the limit. The queue is the state (encoded in its order, `snapshot.rs`); the set beside it
//! only answers "is this pair remembered?" in O(1) and is never iterated, so nothing depends on
//! hash order.

use super::limits::REQUEST_KEYS_KEPT;
use super::types::{AccountId, Seq};
use rustc_hash::FxHashSet;
use std::collections::VecDeque;

/// One remembered keyed command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RequestKey {
    /// `Command::acting_account` of the command (`AccountId::NONE` for an admin command that
    /// names no account).
    pub account: AccountId,
    /// The client's key: never 0 (0 means "no key").
    pub key: u64,
    /// Sequence of the command that was applied under this key.
    pub seq: Seq,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RequestKeys {
    /// Oldest first; sequences strictly increasing. At most `REQUEST_KEYS_KEPT` entries.
    window: VecDeque<RequestKey>,
    /// The (account, key) pairs of `window` (derived, for lookup; never iterated).
    index: FxHashSet<(AccountId, u64)>,
}

impl RequestKeys {
    pub fn contains(&self, account: AccountId, key: u64) -> bool {
        self.index.contains(&(account, key))
    }

    pub fn len(&self) -> usize {
        self.window.len()
    }

    pub fn is_empty(&self) -> bool {
        self.window.is_empty()
    }

    /// The window, oldest first: the canonical order.
    pub fn iter(&self) -> impl Iterator<Item = &RequestKey> + '_ {
        self.window.iter()
    }

    /// Remembers a pair that is not remembered yet, then forgets the oldest entries beyond
    /// `kept` (`REQUEST_KEYS_KEPT` except in the tests of the eviction itself). The queue and
    /// the set change together, and a pair is never kept twice (asserted: the caller looked it
    /// up first, and the sequence only grows).
    pub fn remember(&mut self, entry: RequestKey, kept: usize) {
        debug_assert!(kept <= REQUEST_KEYS_KEPT);
        assert!(entry.key != 0, "request key 0 means no key and is never remembered");
        assert!(
            self.window.back().is_none_or(|newest| newest.seq < entry.seq),
            "request key of command {} remembered after a later one",
            entry.seq
        );
        let inserted = self.index.insert((entry.account, entry.key));
        assert!(inserted, "request key {} of account {} remembered twice", entry.key, entry.account);
        self.window.push_back(entry);
        while self.window.len() > kept {
            let oldest = self.window.pop_front().expect("a window over its limit is not empty");
            let removed = self.index.remove(&(oldest.account, oldest.key));
            assert!(removed, "forgotten request key {} of account {} was not indexed", oldest.key, oldest.account);
        }
    }

    /// Invariant 7 for the window: within the limit, sequences strictly increasing up to
    /// `last_seq`, no key 0, and the set holds exactly the window's pairs. `Err` describes the
    /// first disagreement.
    pub fn check(&self, last_seq: Seq) -> Result<(), String> {
        if self.window.len() > REQUEST_KEYS_KEPT {
            return Err(format!("{} request keys kept, more than {REQUEST_KEYS_KEPT}", self.window.len()));
        }
        // Equal sizes and every window pair in the set: the set is exactly the window's pairs,
        // and the window holds no pair twice (the set would then be smaller).
        if self.index.len() != self.window.len() {
            return Err(format!("{} request keys kept, {} indexed", self.window.len(), self.index.len()));
        }
        let mut previous_seq = 0;
        for entry in &self.window {
            if entry.key == 0 || entry.seq <= previous_seq || entry.seq > last_seq {
                return Err(format!("request key entry {entry:?} after seq {previous_seq} (last seq {last_seq})"));
            }
            if !self.index.contains(&(entry.account, entry.key)) {
                return Err(format!("request key {} of account {} is not indexed", entry.key, entry.account));
            }
            previous_seq = entry.seq;
        }
        Ok(())
    }

    /// Test support: a window whose set disagrees with its queue.
    #[cfg(test)]
    pub fn forget_index(&mut self) {
        self.index.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(account: u64, key: u64, seq: Seq) -> RequestKey {
        RequestKey { account: AccountId(account), key, seq }
    }

    #[test]
    fn the_oldest_is_forgotten_first_and_the_set_follows() {
        let mut keys = RequestKeys::default();
        for seq in 1..=5 {
            keys.remember(entry(seq % 2, 100 + seq, seq), 3);
        }
        let kept: Vec<u64> = keys.iter().map(|e| e.key).collect();
        assert_eq!(kept, [103, 104, 105]);
        assert!(!keys.contains(AccountId(1), 101) && !keys.contains(AccountId(0), 102));
        assert!(keys.contains(AccountId(1), 103) && keys.contains(AccountId(0), 104));
        // The pair is scoped by account: the same key of another account is another pair.
        assert!(!keys.contains(AccountId(0), 103));
        assert_eq!(keys.check(5), Ok(()));
        assert!(keys.check(4).is_err(), "an entry after the last sequence");
    }

    #[test]
    #[should_panic(expected = "remembered twice")]
    fn a_pair_is_never_kept_twice() {
        let mut keys = RequestKeys::default();
        keys.remember(entry(1, 7, 1), 10);
        keys.remember(entry(1, 7, 2), 10);
    }

    #[test]
    fn a_set_that_disagrees_with_the_window_is_found() {
        let mut keys = RequestKeys::default();
        keys.remember(entry(1, 7, 1), 10);
        keys.forget_index();
        assert!(keys.check(1).is_err());
    }
}
