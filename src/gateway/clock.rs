//! The gateway's clock for durations: flow control (`ConnectionLimits`) and log rate limits.

use std::time::Instant;

/// The clock of flow control and log rate limits: nanoseconds since the gateway started, from
/// `Instant`, which never goes backwards. (The wall clock can be stepped back by an operator or
/// NTP; a token bucket fed from it stopped refilling until it caught up.)
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    start: Instant,
}

impl MonotonicClock {
    pub fn start() -> MonotonicClock {
        MonotonicClock { start: Instant::now() }
    }

    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nanoseconds_since_its_start_and_never_goes_back() {
        let before = Instant::now();
        let clock = MonotonicClock::start();
        let mut last = 0;
        for _ in 0..10_000 {
            let now_ns = clock.now_ns();
            assert!(now_ns >= last, "{now_ns} after {last}");
            last = now_ns;
        }
        // From the gateway's start, not the Unix epoch (the wall clock this replaced).
        assert!(last <= u64::try_from(before.elapsed().as_nanos()).unwrap());
    }
}
