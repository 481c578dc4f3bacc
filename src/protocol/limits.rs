//! Per-connection flow control: a token-bucket request rate and a cap on commands in flight.
//!
//! Pure: the caller passes the time (`now_ns`, any monotonic clock) so tests drive it with a
//! fake clock and the gateway reads its clock once per batch of frames.

use super::error::GatewayError;

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

    /// Adds what accrued since the last refill. A clock that went backwards adds nothing.
    fn refill(&mut self, now_ns: u64) {
        let Some(elapsed_ns) = now_ns.checked_sub(self.last_refill_ns) else { return };
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
/// `Error` (including a `Busy` from a full input ring). Queries and subscriptions go through
/// [`admit_request`](Self::admit_request): they cost a token but are answered at once.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    config: LimitsConfig,
    bucket: TokenBucket,
    in_flight: u32,
}

impl ConnectionLimits {
    pub fn new(config: LimitsConfig, now_ns: u64) -> ConnectionLimits {
        ConnectionLimits { config, bucket: TokenBucket::new(config.rate_per_sec, config.burst, now_ns), in_flight: 0 }
    }

    pub fn config(&self) -> LimitsConfig {
        self.config
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Admits a command or says which error to answer it with. A refused command uses neither
    /// a token nor an in-flight slot. In-flight is checked first: while the client is waiting
    /// for answers, spending its tokens on refusals would only delay it further.
    pub fn admit_command(&mut self, now_ns: u64) -> Result<(), GatewayError> {
        if self.config.max_in_flight != 0 && self.in_flight >= self.config.max_in_flight {
            return Err(GatewayError::TooManyInFlight);
        }
        self.admit_request(now_ns)?;
        self.in_flight += 1;
        Ok(())
    }

    /// Admits a request that is answered at once (query, subscription, ping): rate only.
    pub fn admit_request(&mut self, now_ns: u64) -> Result<(), GatewayError> {
        if self.bucket.try_take(now_ns) {
            Ok(())
        } else {
            Err(GatewayError::RateLimited)
        }
    }

    /// An admitted command got its `Accepted` or `Error`. Extra calls are a gateway bug; they
    /// are ignored rather than letting the count wrap and lock the connection.
    pub fn command_answered(&mut self) {
        debug_assert!(self.in_flight > 0, "command answered with nothing in flight");
        self.in_flight = self.in_flight.saturating_sub(1);
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
    fn a_clock_going_backwards_adds_nothing() {
        let mut bucket = TokenBucket::new(1_000, 1, 10 * MS);
        assert!(bucket.try_take(10 * MS));
        assert!(!bucket.try_take(5 * MS));
        assert!(!bucket.try_take(10 * MS + MS / 2));
        assert!(bucket.try_take(11 * MS));
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
        for _ in 0..100_000 {
            assert_eq!(limits.admit_command(0), Ok(()));
        }
        assert_eq!(limits.in_flight(), 100_000);
    }

    #[test]
    fn in_flight_is_capped_and_released_by_answers() {
        let mut limits = ConnectionLimits::new(LimitsConfig { max_in_flight: 2, rate_per_sec: 1_000, burst: 100 }, 0);
        assert_eq!(limits.admit_command(0), Ok(()));
        assert_eq!(limits.admit_command(0), Ok(()));
        assert_eq!(limits.admit_command(0), Err(GatewayError::TooManyInFlight));
        assert_eq!(limits.admit_request(0), Ok(()), "queries are not in flight");
        limits.command_answered();
        assert_eq!(limits.admit_command(0), Ok(()));
        assert_eq!(limits.in_flight(), 2);
        assert_eq!(limits.bucket.tokens(0), 100 - 4, "the refused command used no token");
    }

    #[test]
    fn rate_limited_commands_take_no_in_flight_slot() {
        let mut limits = ConnectionLimits::new(LimitsConfig { max_in_flight: 10, rate_per_sec: 10, burst: 2 }, 0);
        assert_eq!(limits.admit_command(0), Ok(()));
        assert_eq!(limits.admit_command(0), Ok(()));
        assert_eq!(limits.admit_command(0), Err(GatewayError::RateLimited));
        assert_eq!(limits.in_flight(), 2);
        assert_eq!(limits.ns_until_token(0), 100 * MS);
        assert_eq!(limits.admit_command(100 * MS), Ok(()));
    }
}
