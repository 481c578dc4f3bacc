//! Limits on everything a command can touch, in one place.
//!
//! They are constants of the state machine, not configuration: every replica and every replay
//! must enforce the same values, or the same journal would lead to different states. Going over
//! a limit is a reject reason (before anything changes), never a failure. Together they bound the
//! work and the events of any single command (`EVENTS_PER_COMMAND_MAX`), so no valid command can
//! produce an event record the journal cannot hold, and they bound the state kept per account.
//! Changing a value changes the outcome of some journals: it is a new engine version, like any
//! change of rules (`journal/FORMAT.md` §10.4).

/// Assets. Every account keeps a balance slot per asset it touches, so this bounds an account's
/// memory; a venue lists tens to hundreds of assets.
pub const ASSETS_MAX: usize = 1_024;

/// Symbols (trading pairs). Bounds the reference data and the per-symbol books a snapshot holds.
pub const SYMBOLS_MAX: usize = 4_096;

/// Accounts, sub-accounts included. Bounds the account table, and with the per-account limits
/// below everything kept per account.
pub const ACCOUNTS_MAX: usize = 1_000_000;

/// Ancestors an account may have (a root has 0). Every balance change walks the ancestor path to
/// keep subtree totals, so this bounds the work of one ledger entry.
pub const TREE_DEPTH_MAX: usize = 32;

/// Live orders of one account: resting orders plus stops waiting for their trigger. `CancelAll`
/// cancels at most this many orders (two events each); a market maker quoting a few hundred
/// levels on a few dozen symbols stays far below it.
pub const ACCOUNT_OPEN_ORDERS_MAX: usize = 10_000;

/// Live orders of one symbol: resting in its book plus stops waiting for their trigger (a
/// triggered stop-limit may rest, so both count). Bounds a book's memory and a snapshot's size.
pub const SYMBOL_ORDERS_MAX: usize = 1_000_000;

/// Stops waiting for their trigger on one symbol (both sides). A trade can fire every one of them
/// in the same command (a cascade), so this bounds the orders one command can trigger.
pub const SYMBOL_STOPS_MAX: usize = 10_000;

/// Matches one command may perform: fills, plus resting orders cancelled by self-trade
/// prevention, counted over the incoming order and every stop it triggers. A taker that meets a
/// crossing order when none are left ends like an IOC: its remainder expires (whatever its time
/// in force); a fill-or-kill order that would need more than are left expires unfilled. A taker
/// sweeping ten thousand orders in one command is far beyond any real book.
pub const COMMAND_MATCHES_MAX: usize = 10_000;

/// Deposit references (`external_ref`) remembered, for the whole venue. Deposits are credited at
/// most once per reference; the window keeps the largest references seen, and a reference at or
/// below the largest one forgotten (the floor) is refused (`ReferenceExpired`), so a reference can
/// never be applied twice. A depositing system that numbers its deposits with a counter never
/// meets the floor unless a deposit arrives a million deposits late.
pub const DEPOSIT_REFS_KEPT: usize = 1_000_000;

/// Withdrawal references (`client_ref`) remembered per account, with the same window rule as
/// deposits (per account: the largest references, and a floor).
pub const ACCOUNT_WITHDRAWAL_REFS_KEPT: usize = 256;

/// Transfer references (`client_ref`) remembered per sending account, same rule.
pub const ACCOUNT_TRANSFER_REFS_KEPT: usize = 256;

/// Pending (requested, not yet decided) withdrawals of one account. Each holds funds and waits
/// for an admin, so a trader cannot make the admins' queue, or the state, grow without bound.
pub const ACCOUNT_PENDING_WITHDRAWALS_MAX: usize = 256;

/// Decided (approved or rejected) withdrawals remembered, for the whole venue; the oldest are
/// forgotten first. Deciding a forgotten one again is refused as `UnknownWithdrawal`: a decision
/// is never applied twice, because only pending withdrawals move money and those are all kept.
pub const WITHDRAWALS_DECIDED_KEPT: usize = 1_000_000;

/// Request keys remembered, for the whole venue: (acting account, request key) of the newest
/// `REQUEST_KEYS_KEPT` keyed commands the engine applied, the oldest forgotten first. A keyed
/// command whose pair is remembered is not applied again (`DuplicateRequest`), so a client that
/// lost an answer (a failover, a dropped connection) may resend with the same key. A client's
/// retry comes within seconds; a million applied keyed commands is minutes of a busy venue, and
/// about 40 MB of state (24 bytes an entry in order, plus the lookup set).
pub const REQUEST_KEYS_KEPT: usize = 1_000_000;

/// Events one match can emit: six ledger entries (the buyer's quote and fee, the seller's base,
/// the buyer's base, the seller's quote and fee), the trade, and for each side either a
/// partial-fill report, or the release of what a fully filled order still holds and its final
/// report (2 + 2). A self-trade cancellation emits only a release and a report (2).
pub const EVENTS_PER_MATCH_MAX: usize = 6 + 1 + 2 + 2;

/// Events of a command beside its matches, per order it starts or triggers: a placement emits a
/// hold and a `New` report (or an amend a hold change and an `Amended` report); a triggered stop
/// a `Triggered` report; each taker ends with at most a release and a final report.
pub const EVENTS_PER_TAKER_MAX: usize = 2 + 2;

/// The largest number of events any single command can emit.
///
/// - `CancelAll`: a release and a report per live order: `2 * ACCOUNT_OPEN_ORDERS_MAX`.
/// - `PlaceOrder` / `AmendOrder`: the incoming order and each stop it triggers (at most
///   `SYMBOL_STOPS_MAX`, since triggered stops never wait again and no stop is placed by a
///   cascade) each add `EVENTS_PER_TAKER_MAX`; every match adds at most `EVENTS_PER_MATCH_MAX`
///   and there are at most `COMMAND_MATCHES_MAX`.
/// - Every other command emits at most 3 (a transfer: two ledger entries and `Transferred`).
///
/// With the values above: max(20_000, 4 * 10_001 + 11 * 10_000) = 150_004 events, at most
/// 14 MB encoded (`codec::EVENT_RECORD_BYTES_MAX`; an event is at most 93 bytes).
pub const EVENTS_PER_COMMAND_MAX: usize = max(
    2 * ACCOUNT_OPEN_ORDERS_MAX,
    EVENTS_PER_TAKER_MAX * (1 + SYMBOL_STOPS_MAX) + EVENTS_PER_MATCH_MAX * COMMAND_MATCHES_MAX,
);

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_bound_is_what_the_comment_says() {
        assert_eq!(EVENTS_PER_COMMAND_MAX, 150_004);
    }
}
