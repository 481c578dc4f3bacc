//! The business logic: a pure, deterministic state machine.
//!
//! `Engine::apply(seq, timestamp_ns, &command, &mut events)` (or `apply_keyed`, the same with a
//! client's request key) is the only way state changes. It does no I/O, reads no clock and no
//! randomness, and never iterates a hash map, so two replicas fed the same commands reach the
//! same `state_hash()`. Every handler validates first and mutates after: a rejected command
//! emits exactly one `Event::Rejected` and changes nothing.

mod accounts;
mod book;
mod command;
mod event;
mod funds;
mod invariants;
pub mod limits;
mod matching;
mod orders;
mod query;
mod reference;
mod request_keys;
mod snapshot;
mod state;
mod types;
mod units;

pub use book::{Book, Level, Order, NIL};
pub use command::{Command, NewOrder, SymbolSpec};
pub use event::{Event, LedgerEntry, OrderReport, Trade};
pub use invariants::{Invariant, InvariantError};
pub use limits::{EVENTS_PER_COMMAND_MAX, REQUEST_KEYS_KEPT};
pub use query::{AssetView, BalanceView, DepthLevel, SymbolView};
pub use snapshot::{
    StateDecodeError, STATE_ENCODING_VERSION, STATE_ENCODING_VERSION_WITHOUT_CODES,
    STATE_ENCODING_VERSION_WITHOUT_REQUEST_KEYS,
};
pub use state::{Account, AssetTotals, Balance, Engine, Symbol, Withdrawal, MAX_ASSET_SCALE, MAX_TREE_DEPTH, PPM};
pub use types::*;
pub use units::{Lots, Ticks};

use request_keys::RequestKey;

/// A handler's verdict: `Err` only before anything was changed.
pub(crate) type Verdict = Result<(), RejectReason>;

impl Engine {
    /// An empty state (the same as `Engine::default()`).
    pub fn new() -> Engine {
        Engine::default()
    }

    /// Applies one sequenced command, appending its events to `out` (which is not cleared).
    ///
    /// `seq` must be `last_seq() + 1`: the journal numbers commands without gaps (its reader
    /// refuses a gap) and a snapshot restores `last_seq`, so anything else is a pipeline bug that
    /// would give orders and withdrawals other ids than on a replica.
    ///
    /// Debug builds then audit the command's ledger entries and check the invariants
    /// (`invariants::check_after_command`: every command while the state is small, a
    /// deterministic sample beyond).
    pub fn apply(&mut self, seq: Seq, timestamp_ns: u64, command: &Command, out: &mut Vec<Event>) {
        self.apply_keyed_keeping(seq, timestamp_ns, 0, command, out, limits::REQUEST_KEYS_KEPT);
    }

    /// Applies one sequenced command sent with the client's `request_key`: a retry of a
    /// command whose answer was lost must never be applied twice.
    ///
    /// Key 0 is no key: exactly `apply`. Otherwise, if (`command.acting_account()`,
    /// `request_key`) is in the window of remembered keys, the command is not applied: its only
    /// event is `Rejected { DuplicateRequest }` and, like every rejected command, it changes
    /// nothing but the clock (`last_seq`, `last_timestamp_ns`). Else it is applied as `apply`
    /// would; if it was not rejected, the pair is remembered (the oldest pair beyond
    /// `REQUEST_KEYS_KEPT` is forgotten). A rejected command is not remembered, so a
    /// `DuplicateRequest` always means "the command first sent with this key was applied",
    /// and a retry of a rejected one is judged again (it was never applied, so applying it
    /// now applies it once).
    pub fn apply_keyed(
        &mut self,
        seq: Seq,
        timestamp_ns: u64,
        request_key: u64,
        command: &Command,
        out: &mut Vec<Event>,
    ) {
        self.apply_keyed_keeping(seq, timestamp_ns, request_key, command, out, limits::REQUEST_KEYS_KEPT);
    }

    /// `apply_keyed` keeping at most `keys_kept` request keys: `REQUEST_KEYS_KEPT`, or a small
    /// window in the tests of the eviction.
    fn apply_keyed_keeping(
        &mut self,
        seq: Seq,
        timestamp_ns: u64,
        request_key: u64,
        command: &Command,
        out: &mut Vec<Event>,
        keys_kept: usize,
    ) {
        assert!(
            self.last_seq.checked_add(1) == Some(seq),
            "sequence {seq} does not follow the last applied sequence {}",
            self.last_seq
        );
        // Between commands the match budget is unused (reset below after every command).
        assert_eq!(self.matches_used, 0, "a match budget left over from command {}", self.last_seq);
        self.last_seq = seq;
        self.last_timestamp_ns = timestamp_ns;
        let first_event = out.len();
        let verdict = if request_key == 0 {
            self.dispatch(seq, command, out)
        } else {
            let account = command.acting_account();
            if self.request_keys.contains(account, request_key) {
                Err(RejectReason::DuplicateRequest)
            } else {
                let verdict = self.dispatch(seq, command, out);
                if verdict.is_ok() {
                    self.request_keys.remember(RequestKey { account, key: request_key, seq }, keys_kept);
                }
                verdict
            }
        };
        assert!(self.matches_used <= limits::COMMAND_MATCHES_MAX, "command {seq} overspent its match budget");
        // The match budget is per command; between commands it is always 0 (the default).
        self.matches_used = 0;
        if let Err(reason) = verdict {
            assert_eq!(out.len(), first_event, "a rejected command emitted events: {command:?}");
            out.push(Event::Rejected { reason });
        }
        // The limits bound every command's events (see `limits`); more is an engine bug, and
        // stopping is better than writing a record the journal may not be able to hold.
        assert!(
            out.len() - first_event <= EVENTS_PER_COMMAND_MAX,
            "command {seq} emitted {} events, more than EVENTS_PER_COMMAND_MAX",
            out.len() - first_event
        );
        #[cfg(debug_assertions)]
        self.check_after_command(&out[first_event..]);
    }

    fn dispatch(&mut self, seq: Seq, command: &Command, out: &mut Vec<Event>) -> Verdict {
        match *command {
            Command::CreateAsset { asset, scale } => self.create_asset(asset, scale, Code::EMPTY, out),
            Command::CreateSymbol(spec) => self.create_symbol(&spec, Code::EMPTY, out),
            Command::CreateAssetWithCode { asset, scale, code } => self.create_asset(asset, scale, code, out),
            Command::CreateSymbolWithCode { spec, code } => self.create_symbol(&spec, code, out),
            Command::UpdateSymbol(spec) => self.update_symbol(&spec, out),
            Command::SetSymbolStatus { symbol, status } => self.set_symbol_status(symbol, status, out),
            Command::CreateAccount { account, parent, owner } => self.create_account(account, parent, owner, out),
            Command::SetAccountStatus { account, status } => self.set_account_status(account, status, out),
            Command::Deposit { account, asset, amount, external_ref } => {
                self.deposit(account, asset, amount, external_ref, out)
            }
            Command::WithdrawRequest { account, asset, amount, client_ref } => {
                self.withdraw_request(seq, account, asset, amount, client_ref, out)
            }
            Command::WithdrawApprove { withdrawal_id } => self.withdraw_decide(withdrawal_id, true, out),
            Command::WithdrawReject { withdrawal_id } => self.withdraw_decide(withdrawal_id, false, out),
            Command::Transfer { from, to, asset, amount, client_ref } => {
                self.transfer(from, to, asset, amount, client_ref, out)
            }
            Command::PlaceOrder(order) => self.place_order(seq, &order, out),
            Command::CancelOrder { account, order_id } => self.cancel_order(account, order_id, out),
            Command::CancelByClientId { account, client_order_id } => {
                self.cancel_by_client_id(account, client_order_id, out)
            }
            Command::CancelAll { account, symbol } => self.cancel_all(account, symbol, out),
            Command::AmendOrder { account, order_id, price, qty } => {
                self.amend_order(account, order_id, price, qty, out)
            }
        }
    }

    /// Sequence of the last applied command (0 before the first).
    pub fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// Timestamp the sequencer stamped on the last applied command.
    pub fn last_timestamp_ns(&self) -> u64 {
        self.last_timestamp_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine_at_seq_1() -> Engine {
        let mut engine = Engine::new();
        engine.apply(1, 0, &Command::CreateAsset { asset: AssetId(1), scale: 0 }, &mut Vec::new());
        engine
    }

    #[test]
    fn sequences_follow_each_other() {
        let mut engine = engine_at_seq_1();
        engine.apply(2, 0, &Command::CreateAsset { asset: AssetId(2), scale: 0 }, &mut Vec::new());
        assert_eq!(engine.last_seq(), 2);
    }

    /// An account 1 with 100 of asset 1, at seq 3.
    fn funded() -> Engine {
        let mut engine = engine_at_seq_1();
        let mut events = Vec::new();
        let account = Command::CreateAccount { account: AccountId(1), parent: AccountId::NONE, owner: 1 };
        engine.apply(2, 0, &account, &mut events);
        let deposit = Command::Deposit { account: AccountId(1), asset: AssetId(1), amount: 100, external_ref: 1 };
        engine.apply(3, 0, &deposit, &mut events);
        assert!(!events.iter().any(|e| matches!(e, Event::Rejected { .. })), "{events:?}");
        engine
    }

    fn withdraw(client_ref: u64) -> Command {
        Command::WithdrawRequest { account: AccountId(1), asset: AssetId(1), amount: 10, client_ref }
    }

    /// The canonical encoding with the clock (`last_seq`, `last_timestamp_ns`) blanked.
    fn without_clock(engine: &Engine) -> Vec<u8> {
        let mut bytes = Vec::new();
        engine.encode_state(&mut bytes);
        bytes[13..29].fill(0);
        bytes
    }

    fn keyed(engine: &mut Engine, key: u64, command: &Command) -> Vec<Event> {
        let mut events = Vec::new();
        engine.apply_keyed(engine.last_seq() + 1, engine.last_timestamp_ns() + 5, key, command, &mut events);
        engine.check_invariants().unwrap();
        events
    }

    const DUPLICATE: [Event; 1] = [Event::Rejected { reason: RejectReason::DuplicateRequest }];

    #[test]
    fn a_keyed_command_sent_again_is_rejected_and_changes_nothing_but_the_clock() {
        let mut engine = funded();
        let first = keyed(&mut engine, 77, &withdraw(1));
        assert!(matches!(first[..], [Event::Ledger(_), Event::WithdrawalUpdated { .. }]), "{first:?}");
        let before = without_clock(&engine);
        let (seq, timestamp_ns) = (engine.last_seq(), engine.last_timestamp_ns());
        // The same command, and another command under the same key: neither is applied.
        assert_eq!(keyed(&mut engine, 77, &withdraw(1)), DUPLICATE);
        assert_eq!(keyed(&mut engine, 77, &withdraw(2)), DUPLICATE);
        assert_eq!(without_clock(&engine), before);
        // The clock moves exactly as for any rejected command.
        assert_eq!((engine.last_seq(), engine.last_timestamp_ns()), (seq + 2, timestamp_ns + 10));
        assert_eq!(engine.balance_of(AccountId(1), AssetId(1)).unwrap().held, 10);
        // Another key, or no key, is another command.
        assert!(!matches!(keyed(&mut engine, 78, &withdraw(2))[..], [Event::Rejected { .. }]));
        assert!(!matches!(keyed(&mut engine, 0, &withdraw(3))[..], [Event::Rejected { .. }]));
        assert!(!matches!(keyed(&mut engine, 0, &withdraw(4))[..], [Event::Rejected { .. }]));
        assert_eq!(engine.balance_of(AccountId(1), AssetId(1)).unwrap().held, 40);
    }

    #[test]
    fn the_key_is_scoped_by_the_acting_account() {
        let mut engine = funded();
        let mut events = Vec::new();
        let second = Command::CreateAccount { account: AccountId(2), parent: AccountId::NONE, owner: 2 };
        engine.apply(4, 0, &second, &mut events);
        let cancel_all = |account| Command::CancelAll { account: AccountId(account), symbol: SymbolId::ALL };
        assert_eq!(keyed(&mut engine, 5, &cancel_all(1)), []);
        assert_eq!(keyed(&mut engine, 5, &cancel_all(2)), []);
        // An admin command naming no account acts for `AccountId::NONE`.
        let asset = Command::CreateAsset { asset: AssetId(9), scale: 2 };
        assert_eq!(keyed(&mut engine, 5, &asset).len(), 1);
        let other_asset = Command::CreateAsset { asset: AssetId(10), scale: 2 };
        assert_eq!(keyed(&mut engine, 5, &other_asset), DUPLICATE);
        assert_eq!(keyed(&mut engine, 5, &cancel_all(2)), DUPLICATE);
    }

    /// A rejected command is not remembered: a `DuplicateRequest` always means the first was
    /// applied, and a retry of a rejected one is judged again.
    #[test]
    fn a_rejected_keyed_command_is_not_remembered() {
        let mut engine = funded();
        let too_much =
            Command::WithdrawRequest { account: AccountId(1), asset: AssetId(1), amount: 1_000, client_ref: 1 };
        let before = without_clock(&engine);
        assert_eq!(keyed(&mut engine, 9, &too_much), [Event::Rejected { reason: RejectReason::InsufficientFunds }]);
        assert_eq!(without_clock(&engine), before, "a rejected keyed command changes nothing");
        let deposit = Command::Deposit { account: AccountId(1), asset: AssetId(1), amount: 1_000, external_ref: 2 };
        keyed(&mut engine, 0, &deposit);
        assert!(!matches!(keyed(&mut engine, 9, &too_much)[..], [Event::Rejected { .. }]));
        assert_eq!(keyed(&mut engine, 9, &too_much), DUPLICATE);
    }

    /// Key 0 is `apply`, byte for byte: same events, same state, same (version-1) encoding.
    #[test]
    fn key_zero_is_apply() {
        let (mut plain, mut unkeyed) = (funded(), funded());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        plain.apply(4, 9, &withdraw(1), &mut a);
        unkeyed.apply_keyed(4, 9, 0, &withdraw(1), &mut b);
        assert_eq!(a, b);
        assert_eq!(plain.state_hash(), unkeyed.state_hash());
        let mut bytes = Vec::new();
        unkeyed.encode_state(&mut bytes);
        assert_eq!(bytes[9..13], STATE_ENCODING_VERSION_WITHOUT_CODES.to_le_bytes());
    }

    /// The window forgets the oldest key first (a window of 3 here; `REQUEST_KEYS_KEPT` is
    /// reached the same way in `tests/engine_limits.rs`).
    #[test]
    fn the_oldest_key_is_forgotten_first() {
        let mut engine = funded();
        let cancel_all = Command::CancelAll { account: AccountId(1), symbol: SymbolId::ALL };
        let keyed_keeping_3 = |engine: &mut Engine, key| {
            let mut events = Vec::new();
            engine.apply_keyed_keeping(engine.last_seq() + 1, 0, key, &cancel_all, &mut events, 3);
            engine.check_invariants().unwrap();
            events
        };
        for key in 1..=4 {
            assert_eq!(keyed_keeping_3(&mut engine, key), []);
        }
        assert_eq!(engine.request_keys.len(), 3);
        assert_eq!(keyed_keeping_3(&mut engine, 2), DUPLICATE);
        assert_eq!(keyed_keeping_3(&mut engine, 4), DUPLICATE);
        // Key 1 was forgotten: it is applied again (and key 2 is forgotten in its turn).
        assert_eq!(keyed_keeping_3(&mut engine, 1), []);
        assert_eq!(keyed_keeping_3(&mut engine, 2), []);
        let kept: Vec<u64> = engine.request_keys.iter().map(|e| e.key).collect();
        assert_eq!(kept, [4, 1, 2]);
    }

    #[test]
    #[should_panic(expected = "does not follow")]
    fn a_gap_in_the_sequence_stops() {
        engine_at_seq_1().apply(3, 0, &Command::CreateAsset { asset: AssetId(2), scale: 0 }, &mut Vec::new());
    }

    #[test]
    #[should_panic(expected = "does not follow")]
    fn a_repeated_sequence_stops() {
        engine_at_seq_1().apply(1, 0, &Command::CreateAsset { asset: AssetId(2), scale: 0 }, &mut Vec::new());
    }
}
