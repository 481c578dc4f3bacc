//! Per-connection flow control: a token-bucket request rate, a cap on commands in flight, and
//! the request ids of those commands (a command whose id is still in flight is refused, so a
//! retried or mistaken id is never executed twice).
//!
//! Pure: the caller passes the time (`now_ns`, a monotonic clock: nanoseconds since any fixed
//! start) so tests drive it with a fake clock. A clock that steps backwards anyway adds no
//! tokens and does not stop later refills.

use super::error::GatewayError;
use rustc_hash::FxHashSet;

const NANOTOKENS_PER_TOKEN: u64 = 1_000_000_000;

/// A connection's limits; announced to the client in `Welcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Commands admitted but not yet answered (`Accepted` or `Error`); 0 = no limit.
    pub max_in_flight: u32,
    /// Sustained requests per second; 0 = no limit.
    pub rate_per_sec: u32,
    /// Bucket size: requests that may be sent at once after an idle period (at least 1).
    pub burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig { max_in_flight: 1024, rate_per_sec: 10_000, burst: 1_000 }
    }
}

/// A token bucket: refills at `rate_per_sec`, holds at most `burst` tokens, starts full.
///
/// Tokens are counted in billionths so a refill of `elapsed_ns * rate_per_sec` is exact in
/// integers at any rate, with no rounding drift between calls.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate_per_sec: u32,
    capacity_nanotokens: u64,
    level_nanotokens: u64,
    last_refill_ns: u64,
}

impl TokenBucket {
    pub fn new(rate_per_sec: u32, burst: u32, now_ns: u64) -> TokenBucket {
        let capacity_nanotokens = u64::from(burst.max(1)) * NANOTOKENS_PER_TOKEN;
        TokenBucket { rate_per_sec, capacity_nanotokens, level_nanotokens: capacity_nanotokens, last_refill_ns: now_ns }
    }

    fn is_unlimited(&self) -> bool {
        self.rate_per_sec == 0
    }

    /// Adds what accrued since the last refill. A clock that went backwards adds nothing and
    /// becomes the new reference: refills go on from there instead of waiting for the clock to
    /// catch up with the old reading.
    fn refill(&mut self, now_ns: u64) {
        let Some(elapsed_ns) = now_ns.checked_sub(self.last_refill_ns) else {
            self.last_refill_ns = now_ns;
            return;
        };
        let accrued = elapsed_ns.saturating_mul(u64::from(self.rate_per_sec));
        self.level_nanotokens = self.level_nanotokens.saturating_add(accrued).min(self.capacity_nanotokens);
        self.last_refill_ns = now_ns;
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now_ns: u64) -> bool {
        if self.is_unlimited() {
            return true;
        }
        self.refill(now_ns);
        if self.level_nanotokens < NANOTOKENS_PER_TOKEN {
            return false;
        }
        self.level_nanotokens -= NANOTOKENS_PER_TOKEN;
        true
    }

    /// Whole tokens available at `now_ns` (`u64::MAX` when unlimited).
    pub fn tokens(&mut self, now_ns: u64) -> u64 {
        if self.is_unlimited() {
            return u64::MAX;
        }
        self.refill(now_ns);
        self.level_nanotokens / NANOTOKENS_PER_TOKEN
    }

    /// Nanoseconds from `now_ns` until a token is available (0 if one is): a retry hint.
    pub fn ns_until_token(&mut self, now_ns: u64) -> u64 {
        if self.is_unlimited() {
            return 0;
        }
        self.refill(now_ns);
        let missing = NANOTOKENS_PER_TOKEN.saturating_sub(self.level_nanotokens);
        missing.div_ceil(u64::from(self.rate_per_sec))
    }
}

/// One connection's flow-control state.
///
/// The gateway calls [`admit_command`](Self::admit_command) before publishing a command and
/// [`command_answered`](Self::command_answered) when it sends that command's `Accepted` or
/// `Error` (including a `Busy` from a full input ring). Other requests (queries,
/// subscriptions, pings) go through [`admit_request`](Self::admit_request): they cost a token
/// but take no in-flight slot.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    config: LimitsConfig,
    bucket: TokenBucket,
    /// Request ids of the admitted commands not yet answered; never more than
    /// `max_in_flight` (when that is 0, bounded only by what the pipeline holds).
    in_flight_ids: FxHashSet<u64>,
}

impl ConnectionLimits {
    pub fn new(config: LimitsConfig, now_ns: u64) -> ConnectionLimits {
        ConnectionLimits {
            config,
            bucket: TokenBucket::new(config.rate_per_sec, config.burst, now_ns),
            in_flight_ids: FxHashSet::default(),
        }
    }

    pub fn config(&self) -> LimitsConfig {
        self.config
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight_ids.len() as u32
    }

    /// Is a command with this request id admitted and not yet answered?
    pub fn is_in_flight(&self, request_id: u64) -> bool {
        self.in_flight_ids.contains(&request_id)
    }

    /// Admits command `request_id` or says which error to answer it with. A refused command
    /// uses neither a token nor an in-flight slot. Checked in this order: an id already in
    /// flight (`BadRequest`: executing it would run a command twice under one id), the
    /// in-flight cap (while the client waits for answers, spending its tokens on refusals
    /// would only delay it further), then the rate.
    pub fn admit_command(&mut self, request_id: u64, now_ns: u64) -> Result<(), GatewayError> {
        if self.is_in_flight(request_id) {
            return Err(GatewayError::BadRequest);
        }
        if self.config.max_in_flight != 0 && self.in_flight() >= self.config.max_in_flight {
            return Err(GatewayError::TooManyInFlight);
        }
        self.admit_request(request_id, now_ns)?;
        self.in_flight_ids.insert(request_id);
        Ok(())
    }

    /// Admits a request that takes no in-flight slot (query, subscription, ping): its id must
    /// not be that of a command in flight (its answers would be mixed up with the command's),
    /// then it takes a token.
    pub fn admit_request(&mut self, request_id: u64, now_ns: u64) -> Result<(), GatewayError> {
        if self.is_in_flight(request_id) {
            return Err(GatewayError::BadRequest);
        }
        if self.bucket.try_take(now_ns) {
            Ok(())
        } else {
            Err(GatewayError::RateLimited)
        }
    }

    /// Command `request_id` got its `Accepted` or `Error`: its id and slot are free again.
    /// An id not in flight is a gateway bug; it is ignored rather than corrupting the count.
    pub fn command_answered(&mut self, request_id: u64) {
        let was_in_flight = self.in_flight_ids.remove(&request_id);
        debug_assert!(was_in_flight, "command {request_id} answered but not in flight");
    }

    /// Nanoseconds until a request would pass the rate limit: a retry hint for `RateLimited`.
    pub fn ns_until_token(&mut self, now_ns: u64) -> u64 {
        self.bucket.ns_until_token(now_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_full_bucket_allows_a_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(1_000, 5, 0);
        assert_eq!((0..10).filter(|_| bucket.try_take(0)).count(), 5, "burst of 5");
        assert!(!bucket.try_take(MS - 1), "one token per ms at 1000/s");
        assert_eq!(bucket.ns_until_token(MS - 1), 1);
        assert!(bucket.try_take(MS));
        assert!(!bucket.try_take(MS));
        assert_eq!(bucket.tokens(1_000 * MS), 5, "refill stops at the burst size");
    }

    #[test]
    fn fractional_refills_add_up_exactly() {
        let mut bucket = TokenBucket::new(3, 1, 0);
        assert!(bucket.try_take(0));
        // 1/3 s in three uneven steps: 333_333_333 ns * 3/s = 999_999_999 nanotokens, then 1 more ns.
        for now_ns in [100_000_000, 250_000_000, 333_333_333] {
            assert!(!bucket.try_take(now_ns));
        }
        assert!(bucket.try_take(333_333_334));
    }

    #[test]
    fn a_clock_going_backwards_adds_nothing_and_does_not_freeze_refills() {
        let mut bucket = TokenBucket::new(1_000, 1, 10 * MS);
        assert!(bucket.try_take(10 * MS));
        // The clock steps back 5 ms: nothing accrues for the step.
        assert!(!bucket.try_take(5 * MS));
        assert!(!bucket.try_take(5 * MS + MS / 2));
        // One ms after the step a token is back; the old code waited for the clock to pass
        // 11 ms again, so a step back of an hour froze the connection for an hour.
        assert!(bucket.try_take(6 * MS));
        assert!(!bucket.try_take(6 * MS));
        assert!(bucket.try_take(7 * MS));
    }

    #[test]
    fn a_connection_keeps_its_rate_after_a_large_clock_step_back() {
        const HOUR: u64 = 3_600_000 * MS;
        let config = LimitsConfig { max_in_flight: 0, rate_per_sec: 1_000, burst: 1 };
        let mut limits = ConnectionLimits::new(config, 2 * HOUR);
        assert_eq!(limits.admit_request(1, 2 * HOUR), Ok(()));
        assert_eq!(limits.admit_request(2, HOUR), Err(GatewayError::RateLimited));
        assert_eq!(limits.admit_request(3, HOUR + MS), Ok(()), "refills resume from the new reading");
    }

    #[test]
    fn huge_gaps_and_rates_do_not_overflow() {
        let mut bucket = TokenBucket::new(u32::MAX, u32::MAX, 0);
        assert!(bucket.try_take(u64::MAX));
        assert_eq!(bucket.tokens(u64::MAX), u64::from(u32::MAX) - 1);
    }

    #[test]
    fn rate_zero_is_unlimited() {
        let mut limits = ConnectionLimits::new(LimitsConfig { max_in_flight: 0, rate_per_sec: 0, burst: 0 }, 0);
        for request_id in 1..=100_000 {
            assert_eq!(limits.admit_command(request_id, 0), Ok(()));
        }
        assert_eq!(limits.in_flight(), 100_000);
    }

    #[test]
    fn in_flight_is_capped_and_released_by_answers() {
        let mut limits = ConnectionLimits::new(LimitsConfig { max_in_flight: 2, rate_per_sec: 1_000, burst: 100 }, 0);
        assert_eq!(limits.admit_command(1, 0), Ok(()));
        assert_eq!(limits.admit_command(2, 0), Ok(()));
        assert_eq!(limits.admit_command(3, 0), Err(GatewayError::TooManyInFlight));
        assert_eq!(limits.admit_request(4, 0), Ok(()), "queries are not in flight");
        limits.command_answered(1);
        assert_eq!(limits.admit_command(3, 0), Ok(()));
        assert_eq!(limits.in_flight(), 2);
        assert_eq!(limits.bucket.tokens(0), 100 - 4, "the refused command used no token");
    }

    #[test]
    fn rate_limited_commands_take_no_in_flight_slot() {
        let mut limits = ConnectionLimits::new(LimitsConfig { max_in_flight: 10, rate_per_sec: 10, burst: 2 }, 0);
        assert_eq!(limits.admit_command(1, 0), Ok(()));
        assert_eq!(limits.admit_command(2, 0), Ok(()));
        assert_eq!(limits.admit_command(3, 0), Err(GatewayError::RateLimited));
        assert_eq!(limits.in_flight(), 2);
        assert!(!limits.is_in_flight(3));
        assert_eq!(limits.ns_until_token(0), 100 * MS);
        assert_eq!(limits.admit_command(3, 100 * MS), Ok(()));
    }

    #[test]
    fn an_id_in_flight_is_refused_until_its_answer_and_costs_nothing() {
        let mut limits = ConnectionLimits::new(LimitsConfig { max_in_flight: 10, rate_per_sec: 10, burst: 3 }, 0);
        assert_eq!(limits.admit_command(7, 0), Ok(()));
        assert_eq!(limits.admit_command(7, 0), Err(GatewayError::BadRequest), "a command reusing it");
        assert_eq!(limits.admit_request(7, 0), Err(GatewayError::BadRequest), "a query reusing it");
        assert_eq!(limits.in_flight(), 1);
        assert_eq!(limits.bucket.tokens(0), 2, "the refusals took no token");
        limits.command_answered(7);
        assert!(!limits.is_in_flight(7));
        assert_eq!(limits.admit_command(7, 0), Ok(()), "free again once answered");
    }
}
