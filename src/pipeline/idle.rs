//! How a pipeline thread waits when its ring is empty.

use std::time::Duration;

/// Spinning gives the lowest latency and burns a core: use it only on a dedicated (isolated)
/// core, and on a 2-core machine for at most one thread. `Yield` gives the core away between
/// polls. `Backoff` spins briefly, then yields, then sleeps 50 µs: right for small machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WaitStrategy {
    Spin,
    Yield,
    #[default]
    Backoff,
}

impl std::str::FromStr for WaitStrategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spin" => Ok(WaitStrategy::Spin),
            "yield" => Ok(WaitStrategy::Yield),
            "backoff" => Ok(WaitStrategy::Backoff),
            other => Err(format!("unknown wait strategy {other:?} (spin, yield or backoff)")),
        }
    }
}

const BACKOFF_SPINS: u32 = 200;
const BACKOFF_YIELDS: u32 = 20;
const BACKOFF_SLEEP: Duration = Duration::from_micros(50);

/// Per-thread waiting state: counts idle polls since the last work.
pub(crate) struct Idler {
    strategy: WaitStrategy,
    idle_polls: u32,
}

impl Idler {
    pub(crate) fn new(strategy: WaitStrategy) -> Idler {
        Idler { strategy, idle_polls: 0 }
    }

    /// Called after a poll found work.
    pub(crate) fn reset(&mut self) {
        self.idle_polls = 0;
    }

    /// Called after a poll found nothing.
    pub(crate) fn idle(&mut self) {
        self.idle_polls = self.idle_polls.saturating_add(1);
        match self.strategy {
            WaitStrategy::Spin => std::hint::spin_loop(),
            WaitStrategy::Yield => std::thread::yield_now(),
            WaitStrategy::Backoff if self.idle_polls < BACKOFF_SPINS => std::hint::spin_loop(),
            WaitStrategy::Backoff if self.idle_polls < BACKOFF_SPINS + BACKOFF_YIELDS => std::thread::yield_now(),
            WaitStrategy::Backoff => std::thread::sleep(BACKOFF_SLEEP),
        }
    }
}
