//! Following the leader of a seqd cluster: the policy as a pure state machine. It knows the
//! addresses, the current target and how long the client has been looking for a leader; the
//! caller (`cluster.rs`) owns the sockets and the clock and feeds it what happened (connected, a
//! request answered, `Error 931` naming a leader or not, a connection lost or never made). Each
//! event returns the next [`Action`]: connect somewhere after a delay, or give up. No I/O and no
//! clock here (`now` is passed in), so every path is unit-tested without a network.
//!
//! The policy (docs/PROTOCOL.md §17):
//! - Start at the first address. Before any connection has succeeded, try each address once, in
//!   order, and give up when none answers (a wrong list fails fast, as a single address does).
//! - `Error 931` naming a leader (`leader=<host:port>`): go there, at once the first few times
//!   in a failover (as many redirects as there are addresses), then with the backoff, so two
//!   nodes naming each other during an election cannot make the client spin.
//! - `Error 931` with `leader=?` (election running), or a lost connection, a refused or timed-out
//!   connect, or `Error 930` (node stopping): go to the next configured address; one not tried
//!   yet in this failover at once, else after the backoff (50 ms doubling up to 1 s). The node
//!   that failed counts as tried.
//! - A failover ends when a request is answered; one that lasts `failover_timeout` (default
//!   10 s) gives up (the caller then reports its last error).

use std::time::{Duration, Instant};

/// How long a client looks for a leader before giving up (elections take about
/// `election_timeout_ms` to 2 x that; 10 s covers several).
pub const FAILOVER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// The first pause before an address already tried in the failover; it doubles each time.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// The longest pause between two attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Most addresses a client may be given (each is tried in turn).
pub const ADDRESSES_MAX: usize = 64;
/// The longest address accepted, in bytes: a 253-byte DNS name, `:` and a port (with room for
/// brackets of an IPv6 literal). A longer leader hint is treated as unknown.
pub const ADDRESS_MAX_BYTES: usize = 263;

/// What an `Error 931` message says about the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaderHint {
    /// The leader's client address, as configured in its `[[cluster.nodes]] client_address`.
    Named(String),
    /// No leader is known yet (`leader=?`: an election is running), or the message named none.
    Unknown,
}

/// Reads the leader from a `NotLeader` (931) message: `not the leader: leader=<host:port>` or
/// `not the leader: leader=?`. The value runs from `leader=` to the next whitespace or the end.
pub fn leader_hint(message: &str) -> LeaderHint {
    let Some(at) = message.rfind("leader=") else { return LeaderHint::Unknown };
    let value = message[at + "leader=".len()..].split_whitespace().next().unwrap_or("");
    if value.is_empty() || value == "?" || value.len() > ADDRESS_MAX_BYTES {
        LeaderHint::Unknown
    } else {
        LeaderHint::Named(value.to_owned())
    }
}

/// Splits a comma-separated list of addresses (`a:1,b:2`), dropping blanks.
pub fn address_list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowConfig {
    pub failover_timeout: Duration,
    pub backoff_first: Duration,
    pub backoff_max: Duration,
}

impl Default for FollowConfig {
    fn default() -> Self {
        FollowConfig {
            failover_timeout: FAILOVER_TIMEOUT_DEFAULT,
            backoff_first: BACKOFF_FIRST,
            backoff_max: BACKOFF_MAX,
        }
    }
}

/// What the client does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Connect to `address` once `delay` has passed (zero: at once).
    Connect { address: String, delay: Duration },
    /// Stop looking: the failover took `failover_timeout`, or no address answered the first
    /// connect. The caller reports the last error it saw.
    GiveUp,
}

/// One search for a working node, from the first failure until a request is answered.
#[derive(Debug)]
struct Failover {
    started: Instant,
    /// Addresses connected to (or attempted) during this failover; at most
    /// `2 * ADDRESSES_MAX` are remembered (a hint not remembered counts as tried).
    tried: Vec<String>,
    /// Named leaders followed during this failover.
    redirects: usize,
    /// The next pause before an address already tried.
    backoff: Duration,
}

/// The leader-following policy of one client (see the module documentation).
#[derive(Debug)]
pub struct LeaderFollower {
    addresses: Vec<String>,
    config: FollowConfig,
    /// The address connected to, or being connected to.
    target: String,
    /// The address of the last connection made (where the client stays if a failover fails).
    connected: String,
    /// Index in `addresses` of the last configured address targeted: "the next address" is the
    /// one after it, also while the target is a leader named by a hint.
    cursor: usize,
    /// A connection has succeeded once: from then on failures fail over instead of failing.
    connected_once: bool,
    failover: Option<Failover>,
}

impl LeaderFollower {
    /// A follower of `addresses` (blanks dropped, duplicates removed, order kept). Errors: no
    /// address, more than [`ADDRESSES_MAX`], or one longer than [`ADDRESS_MAX_BYTES`].
    pub fn new(addresses: Vec<String>, config: FollowConfig) -> Result<LeaderFollower, String> {
        let mut unique: Vec<String> = Vec::with_capacity(addresses.len());
        for address in addresses {
            let address = address.trim();
            if address.len() > ADDRESS_MAX_BYTES {
                let start: String = address.chars().take(16).collect();
                return Err(format!("address {start:?}... is longer than {ADDRESS_MAX_BYTES} bytes"));
            }
            if !address.is_empty() && !unique.iter().any(|a| a == address) {
                unique.push(address.to_owned());
            }
        }
        if unique.is_empty() {
            return Err("no address given".into());
        }
        if unique.len() > ADDRESSES_MAX {
            return Err(format!("{} addresses; at most {ADDRESSES_MAX}", unique.len()));
        }
        let target = unique[0].clone();
        Ok(LeaderFollower {
            addresses: unique,
            config,
            connected: target.clone(),
            target,
            cursor: 0,
            connected_once: false,
            failover: None,
        })
    }

    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    /// The address connected to (or being connected to).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The address of the last connection made.
    pub fn connected(&self) -> &str {
        &self.connected
    }

    pub fn connected_once(&self) -> bool {
        self.connected_once
    }

    /// Whether a failover is running (something failed and no request has been answered since).
    pub fn failing_over(&self) -> bool {
        self.failover.is_some()
    }

    /// The first connection: to the first address.
    pub fn start(&mut self, now: Instant) -> Action {
        self.connected_once = false;
        self.failover = None;
        self.cursor = 0;
        let first = self.addresses[0].clone();
        self.go(first, now, false)
    }

    /// The connection to the target is up (the handshake is done).
    pub fn on_connected(&mut self) {
        self.connected.clone_from(&self.target);
        if !self.connected_once {
            // The first connect is over: a failover starts at the first failure after it.
            self.connected_once = true;
            self.failover = None;
        }
    }

    /// A request was answered as it should be: the target works, any failover is over.
    pub fn on_answered(&mut self) {
        self.failover = None;
    }

    /// The target refused a command with `Error 931`.
    pub fn on_not_leader(&mut self, hint: &LeaderHint, now: Instant) -> Action {
        match hint {
            // A node naming itself is stale (it just lost the leadership): as good as unknown.
            LeaderHint::Named(leader) if *leader != self.target => self.go(leader.clone(), now, true),
            _ => self.go_next(now),
        }
    }

    /// The connection to the target was lost, could not be made or timed out, or the target is
    /// stopping (`Error 930`).
    pub fn on_unreachable(&mut self, now: Instant) -> Action {
        if !self.connected_once {
            // The first connect: each configured address once, then give up.
            let tried = self.failover.as_ref().map_or(&[][..], |f| &f.tried[..]);
            return match self.addresses.iter().position(|a| !tried.contains(a)) {
                Some(index) => {
                    self.cursor = index;
                    let address = self.addresses[index].clone();
                    self.go(address, now, false)
                }
                None => Action::GiveUp,
            };
        }
        self.go_next(now)
    }

    /// The configured address after the cursor that this failover has not tried, else simply
    /// the one after the cursor (after the backoff).
    fn go_next(&mut self, now: Instant) -> Action {
        let n = self.addresses.len();
        let tried = self.failover.as_ref().map_or(&[][..], |f| &f.tried[..]);
        let untried = (1..=n).map(|step| (self.cursor + step) % n).find(|&i| !tried.contains(&self.addresses[i]));
        self.cursor = untried.unwrap_or((self.cursor + 1) % n);
        let address = self.addresses[self.cursor].clone();
        self.go(address, now, false)
    }

    fn go(&mut self, address: String, now: Instant, redirect: bool) -> Action {
        let (config, connected_once, failed) = (self.config, self.connected_once, &self.target);
        let failover = self.failover.get_or_insert_with(|| Failover {
            started: now,
            // The node that just failed counts as tried (the first connect has none).
            tried: if connected_once { vec![failed.clone()] } else { Vec::new() },
            redirects: 0,
            backoff: config.backoff_first,
        });
        let deadline = failover.started + config.failover_timeout;
        // The first connect is bounded by the address count (each once), not by time.
        if self.connected_once && now >= deadline {
            // This request fails, on the connection the client still has; the next request
            // starts a failover of its own from there.
            self.failover = None;
            self.target.clone_from(&self.connected);
            if let Some(index) = self.addresses.iter().position(|a| *a == self.connected) {
                self.cursor = index;
            }
            return Action::GiveUp;
        }
        let remembered = failover.tried.len() < 2 * ADDRESSES_MAX;
        let fresh = if redirect {
            failover.redirects += 1;
            failover.redirects <= self.addresses.len()
        } else {
            remembered && !failover.tried.contains(&address)
        };
        let delay = if fresh || !self.connected_once {
            Duration::ZERO
        } else {
            let delay = failover.backoff;
            failover.backoff = (failover.backoff * 2).min(config.backoff_max);
            // The last attempt is at the deadline, not after it.
            delay.min(deadline.saturating_duration_since(now))
        };
        if remembered && !failover.tried.contains(&address) {
            failover.tried.push(address.clone());
        }
        if let Some(index) = self.addresses.iter().position(|a| *a == address) {
            self.cursor = index;
        }
        self.target = address.clone();
        Action::Connect { address, delay }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn follower(addresses: &[&str]) -> LeaderFollower {
        LeaderFollower::new(addresses.iter().map(|a| a.to_string()).collect(), FollowConfig::default()).unwrap()
    }

    fn connect(address: &str, delay_ms: u64) -> Action {
        Action::Connect { address: address.into(), delay: Duration::from_millis(delay_ms) }
    }

    /// A follower connected to `a` whose requests were answered (no failover running).
    fn settled(addresses: &[&str], now: Instant) -> LeaderFollower {
        let mut f = follower(addresses);
        assert_eq!(f.start(now), connect(addresses[0], 0));
        f.on_connected();
        f.on_answered();
        f
    }

    #[test]
    fn leader_hints_are_read_from_the_931_message() {
        let named = |s: &str| LeaderHint::Named(s.into());
        assert_eq!(leader_hint("not the leader: leader=10.0.0.2:7400"), named("10.0.0.2:7400"));
        assert_eq!(leader_hint("not the leader: leader=node-2.example:7400"), named("node-2.example:7400"));
        assert_eq!(leader_hint("not the leader: leader=[::1]:7400"), named("[::1]:7400"));
        assert_eq!(leader_hint("not the leader: leader=?"), LeaderHint::Unknown);
        assert_eq!(leader_hint("not the leader: leader="), LeaderHint::Unknown);
        assert_eq!(leader_hint("not the leader"), LeaderHint::Unknown);
        assert_eq!(leader_hint(""), LeaderHint::Unknown);
        assert_eq!(leader_hint("leader=a:1 (term 3)"), named("a:1"), "the value ends at whitespace");
        assert_eq!(leader_hint(&format!("leader={}", "x".repeat(ADDRESS_MAX_BYTES + 1))), LeaderHint::Unknown);
    }

    #[test]
    fn address_lists_split_on_commas_and_the_follower_drops_blanks_and_duplicates() {
        assert_eq!(address_list("a:1, b:2,,a:1 ,"), ["a:1", "b:2", "a:1"]);
        let f = LeaderFollower::new(address_list("a:1, b:2,,a:1 ,"), FollowConfig::default()).unwrap();
        assert_eq!(f.addresses(), ["a:1", "b:2"]);
        assert!(LeaderFollower::new(address_list(" , "), FollowConfig::default()).is_err());
        let many = (0..=ADDRESSES_MAX).map(|i| format!("h:{i}")).collect();
        assert!(LeaderFollower::new(many, FollowConfig::default()).is_err());
        assert!(LeaderFollower::new(vec!["x".repeat(ADDRESS_MAX_BYTES + 1)], FollowConfig::default()).is_err());
        assert!(LeaderFollower::new(vec!["é".repeat(ADDRESS_MAX_BYTES)], FollowConfig::default()).is_err());
    }

    #[test]
    fn the_first_connect_tries_each_address_once_then_gives_up() {
        let now = Instant::now();
        let mut f = follower(&["a:1", "b:2", "c:3"]);
        assert_eq!(f.start(now), connect("a:1", 0));
        assert_eq!(f.on_unreachable(now), connect("b:2", 0));
        assert_eq!(f.on_unreachable(now + 20_000 * MS), connect("c:3", 0), "bounded by count, not time");
        assert_eq!(f.on_unreachable(now), Action::GiveUp);
        // One address: one attempt, as the single-address client always did.
        let mut single = follower(&["a:1"]);
        assert_eq!(single.start(now), connect("a:1", 0));
        assert_eq!(single.on_unreachable(now), Action::GiveUp);
    }

    #[test]
    fn the_first_connect_may_land_on_a_follower_and_follow_its_hint() {
        let now = Instant::now();
        let mut f = follower(&["a:1", "b:2", "c:3"]);
        assert_eq!(f.start(now), connect("a:1", 0));
        assert_eq!(f.on_unreachable(now), connect("b:2", 0));
        f.on_connected();
        assert!(!f.failing_over(), "the failover's clock starts at the first failure after connecting");
        let later = now + 60_000 * MS;
        assert_eq!(f.on_not_leader(&LeaderHint::Named("c:3".into()), later), connect("c:3", 0));
        assert_eq!(f.target(), "c:3");
        f.on_connected();
        f.on_answered();
        assert!(!f.failing_over());
    }

    #[test]
    fn a_named_leader_is_followed_at_once_even_outside_the_list() {
        let now = Instant::now();
        let mut f = settled(&["a:1", "b:2", "c:3"], now);
        assert_eq!(f.on_not_leader(&LeaderHint::Named("10.0.0.9:7400".into()), now), connect("10.0.0.9:7400", 0));
        assert_eq!(f.target(), "10.0.0.9:7400");
        // It dies: the next configured address after the one it came from.
        assert_eq!(f.on_unreachable(now), connect("b:2", 0));
    }

    #[test]
    fn unknown_leader_walks_the_list_then_backs_off_doubling_up_to_the_cap() {
        let t0 = Instant::now();
        let mut f = settled(&["a:1", "b:2", "c:3"], t0);
        let unknown = LeaderHint::Unknown;
        assert_eq!(f.on_not_leader(&unknown, t0), connect("b:2", 0));
        assert_eq!(f.on_not_leader(&unknown, t0), connect("c:3", 0));
        // `a:1`, where the failover began, has been tried already.
        let delays: Vec<Action> = (0..6).map(|_| f.on_not_leader(&unknown, t0)).collect();
        assert_eq!(
            delays,
            [
                connect("a:1", 50),
                connect("b:2", 100),
                connect("c:3", 200),
                connect("a:1", 400),
                connect("b:2", 800),
                connect("c:3", 1000)
            ]
        );
        assert_eq!(f.on_not_leader(&unknown, t0), connect("a:1", 1000), "capped at BACKOFF_MAX");
    }

    #[test]
    fn two_nodes_naming_each_other_get_the_backoff_after_a_few_redirects() {
        let now = Instant::now();
        let mut f = settled(&["a:1", "b:2", "c:3"], now);
        let (to_a, to_b) = (LeaderHint::Named("a:1".into()), LeaderHint::Named("b:2".into()));
        assert_eq!(f.on_not_leader(&to_b, now), connect("b:2", 0));
        assert_eq!(f.on_not_leader(&to_a, now), connect("a:1", 0));
        assert_eq!(f.on_not_leader(&to_b, now), connect("b:2", 0));
        assert_eq!(f.on_not_leader(&to_a, now), connect("a:1", 50), "the fourth redirect of three nodes waits");
        assert_eq!(f.on_not_leader(&to_b, now), connect("b:2", 100));
    }

    #[test]
    fn a_node_naming_itself_counts_as_no_leader() {
        let now = Instant::now();
        let mut f = settled(&["a:1", "b:2"], now);
        assert_eq!(f.on_not_leader(&LeaderHint::Named("a:1".into()), now), connect("b:2", 0));
    }

    #[test]
    fn a_lost_leader_fails_over_to_the_next_address_and_a_single_node_is_retried_with_backoff() {
        let now = Instant::now();
        let mut f = settled(&["a:1", "b:2", "c:3"], now);
        assert_eq!(f.on_unreachable(now), connect("b:2", 0));
        assert_eq!(f.on_unreachable(now), connect("c:3", 0));
        let mut single = settled(&["a:1"], now);
        assert_eq!(single.on_unreachable(now), connect("a:1", 50), "the only node, restarting: after a pause");
        assert_eq!(single.on_unreachable(now), connect("a:1", 100));
        assert_eq!(single.on_unreachable(now), connect("a:1", 200));
    }

    #[test]
    fn the_failover_gives_up_at_its_deadline_and_the_next_request_gets_another() {
        let t0 = Instant::now();
        let config = FollowConfig { failover_timeout: 1000 * MS, ..FollowConfig::default() };
        let mut f = LeaderFollower::new(vec!["a:1".into()], config).unwrap();
        f.start(t0);
        f.on_connected();
        f.on_answered();
        assert_eq!(f.on_unreachable(t0), connect("a:1", 50), "the failover starts at t0");
        assert_eq!(f.on_unreachable(t0 + 100 * MS), connect("a:1", 100));
        assert_eq!(f.on_unreachable(t0 + 990 * MS), connect("a:1", 10), "clamped to the deadline");
        assert_eq!(f.on_unreachable(t0 + 1000 * MS), Action::GiveUp);
        // The next request (still without a leader) gets a failover and a deadline of its own.
        assert!(!f.failing_over());
        assert_eq!(f.on_unreachable(t0 + 1500 * MS), connect("a:1", 50));
        assert_eq!(f.on_unreachable(t0 + 2499 * MS), connect("a:1", 1));
        assert_eq!(f.on_unreachable(t0 + 2500 * MS), Action::GiveUp);
    }

    #[test]
    fn after_giving_up_the_target_is_the_connection_still_held() {
        let t0 = Instant::now();
        let config = FollowConfig { failover_timeout: 1000 * MS, ..FollowConfig::default() };
        let mut f = LeaderFollower::new(vec!["a:1".into(), "b:2".into(), "c:3".into()], config).unwrap();
        f.start(t0);
        f.on_connected();
        f.on_answered();
        // a:1 (connected) says no leader; b:2 and c:3 do not answer; the time runs out.
        assert_eq!(f.on_not_leader(&LeaderHint::Unknown, t0), connect("b:2", 0));
        assert_eq!(f.on_unreachable(t0), connect("c:3", 0));
        assert_eq!(f.target(), "c:3");
        assert_eq!(f.on_unreachable(t0 + 1000 * MS), Action::GiveUp);
        assert_eq!((f.target(), f.connected()), ("a:1", "a:1"));
        // The next 931 from a:1 goes on from a:1, as a new failover.
        assert_eq!(f.on_not_leader(&LeaderHint::Unknown, t0 + 2000 * MS), connect("b:2", 0));
    }

    #[test]
    fn an_answer_ends_the_failover_and_the_next_one_starts_fresh() {
        let t0 = Instant::now();
        let mut f = settled(&["a:1", "b:2"], t0);
        assert_eq!(f.on_unreachable(t0), connect("b:2", 0));
        assert_eq!(f.on_unreachable(t0), connect("a:1", 50));
        assert_eq!(f.on_unreachable(t0), connect("b:2", 100));
        f.on_connected();
        f.on_answered();
        assert!(!f.failing_over());
        // Much later: a new failover, with its own deadline and no backoff yet.
        let later = t0 + 60_000 * MS;
        assert_eq!(f.on_unreachable(later), connect("a:1", 0));
        assert!(f.failing_over());
    }
}
