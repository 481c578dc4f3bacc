//! The business logic: a pure, deterministic state machine.
//!
//! `Engine::apply(seq, timestamp_ns, &command, &mut events)` is the only way state changes. It
//! does no I/O, reads no clock and no randomness, and never iterates a hash map, so two replicas
//! fed the same commands reach the same `state_hash()`. Every handler validates first and
//! mutates after: a rejected command emits exactly one `Event::Rejected` and changes nothing.

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
mod snapshot;
mod state;
mod types;

pub use book::{Book, Level, Order, NIL};
pub use command::{Command, NewOrder, SymbolSpec};
pub use event::{Event, LedgerEntry, OrderReport, Trade};
pub use invariants::{Invariant, InvariantError};
pub use limits::EVENTS_PER_COMMAND_MAX;
pub use query::{BalanceView, DepthLevel};
pub use snapshot::{StateDecodeError, STATE_ENCODING_VERSION};
pub use state::{Account, AssetTotals, Balance, Engine, Symbol, Withdrawal, MAX_ASSET_SCALE, MAX_TREE_DEPTH, PPM};
pub use types::*;

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
        let verdict = self.dispatch(seq, command, out);
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
            Command::CreateAsset { asset, scale } => self.create_asset(asset, scale, out),
            Command::CreateSymbol(spec) => self.create_symbol(&spec, out),
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
