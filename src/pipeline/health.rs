//! Is the pipeline alive? Each thread publishes how many ring slots it has finished (an atomic
//! store per batch); the daemon's supervisor compares them with what is queued for each
//! thread. A thread is stalled when work is queued for it and its count has not moved for the
//! stall limit; an idle thread (nothing queued) is never stalled.

use super::PipelineStats;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The watched threads, in the order a stall is blamed: the journaler waits for nobody; the
/// event-log writer and the responder wait for the journaler (durable seq); the processor
/// waits for room in the output ring, that is for the event-log writer and the responder. The
/// first stalled thread in this order is the cause, the later ones are waiting for it.
pub const WATCHED: [&str; 4] = ["journaler", "event-log writer", "responder", "processor"];

/// One thread's counters at one instant: slots finished, and slots queued for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    pub queued: u64,
}

/// A stall found by [`StallDetector::observe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    /// The thread blamed (see [`WATCHED`]).
    pub thread: &'static str,
    /// "no progress for N ms with M queued", and which other threads are stalled behind it.
    pub what: String,
}

/// Reads the progress of every watched thread, in [`WATCHED`] order. Each thread's own count
/// is read before the count it is compared with, so a race can only overstate the queue by
/// work that arrived meanwhile, never report queued work that was already done.
pub fn progress(stats: &PipelineStats) -> [Progress; 4] {
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Acquire);
    let journaler = load(&stats.journaler_slots);
    let event_log = load(&stats.event_log_slots);
    let responder = load(&stats.responder_slots);
    let processor = load(&stats.processor_slots);
    let submitted = load(&stats.submitted_slots);
    let of = |done: u64, upstream: u64| Progress { done, queued: upstream.saturating_sub(done) };
    [of(journaler, submitted), of(event_log, processor), of(responder, processor), of(processor, submitted)]
}

/// Remembers, per watched thread, its last count and since when it has been waiting with
/// work queued and no progress (from the first reading that saw it so).
#[derive(Debug)]
pub struct StallDetector {
    limit: Duration,
    last_done: [u64; 4],
    stuck_since: [Option<Instant>; 4],
}

impl StallDetector {
    pub fn new(limit: Duration) -> StallDetector {
        StallDetector { limit, last_done: [0; 4], stuck_since: [None; 4] }
    }

    /// Takes one reading; returns the stall when a thread has had queued work and no progress
    /// for at least the limit, over consecutive readings.
    pub fn observe(&mut self, readings: [Progress; 4], now: Instant) -> Option<Stall> {
        for (i, reading) in readings.iter().enumerate() {
            let progressed = reading.done != self.last_done[i];
            self.last_done[i] = reading.done;
            self.stuck_since[i] = match self.stuck_since[i] {
                _ if reading.queued == 0 => None,
                Some(since) if !progressed => Some(since),
                _ => Some(now),
            };
        }
        let stuck_ms = |i: usize| self.stuck_since[i].map_or(Duration::ZERO, |since| now.duration_since(since));
        let stalled: Vec<usize> = (0..WATCHED.len()).filter(|&i| stuck_ms(i) >= self.limit).collect();
        let (&first, others) = stalled.split_first()?;
        let mut what =
            format!("made no progress for {} ms with {} queued", stuck_ms(first).as_millis(), readings[first].queued);
        if !others.is_empty() {
            let names: Vec<&str> = others.iter().map(|&i| WATCHED[i]).collect();
            what.push_str(&format!(" (waiting for it: {})", names.join(", ")));
        }
        Some(Stall { thread: WATCHED[first], what })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_millis(1000);

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    fn idle() -> [Progress; 4] {
        [Progress { done: 0, queued: 0 }; 4]
    }

    #[test]
    fn an_idle_pipeline_is_never_stalled() {
        let start = Instant::now();
        let mut detector = StallDetector::new(LIMIT);
        for ms in (0..60_000).step_by(100) {
            assert_eq!(detector.observe(idle(), at(start, ms)), None);
        }
    }

    #[test]
    fn queued_work_with_progress_is_not_a_stall() {
        let start = Instant::now();
        let mut detector = StallDetector::new(LIMIT);
        for step in 0..100u64 {
            let busy = Progress { done: step, queued: 500 };
            assert_eq!(detector.observe([busy; 4], at(start, step * 500)), None);
        }
    }

    #[test]
    fn queued_work_without_progress_for_the_limit_is_a_stall_of_that_thread() {
        let start = Instant::now();
        let mut detector = StallDetector::new(LIMIT);
        let mut readings = idle();
        readings[3] = Progress { done: 7, queued: 3 }; // the processor, stuck at 7
        assert_eq!(detector.observe(readings, at(start, 0)), None); // its count moved from 0 to 7
        assert_eq!(detector.observe(readings, at(start, 0)), None);
        assert_eq!(detector.observe(readings, at(start, 999)), None);
        let stall = detector.observe(readings, at(start, 1000)).expect("a stall");
        assert_eq!(stall.thread, "processor");
        assert_eq!(stall.what, "made no progress for 1000 ms with 3 queued");
    }

    #[test]
    fn the_clock_starts_when_work_is_queued_not_at_the_last_progress() {
        let start = Instant::now();
        let mut detector = StallDetector::new(LIMIT);
        assert_eq!(detector.observe(idle(), at(start, 5000)), None);
        let mut readings = idle();
        readings[0] = Progress { done: 0, queued: 1 };
        assert_eq!(detector.observe(readings, at(start, 5100)), None);
        assert_eq!(detector.observe(readings, at(start, 6000)), None);
        assert_eq!(detector.observe(readings, at(start, 6100)).map(|s| s.thread), Some("journaler"));
    }

    #[test]
    fn the_first_stalled_thread_in_wait_order_is_blamed_and_the_others_named() {
        let start = Instant::now();
        let mut detector = StallDetector::new(LIMIT);
        // A stuck responder fills the output ring; the processor then waits for it.
        let stuck = Progress { done: 10, queued: 64 };
        let readings = [Progress { done: 99, queued: 0 }, Progress { done: 74, queued: 0 }, stuck, stuck];
        assert_eq!(detector.observe(readings, start), None);
        assert_eq!(detector.observe(readings, start), None);
        let stall = detector.observe(readings, at(start, 2000)).expect("a stall");
        assert_eq!(stall.thread, "responder");
        assert_eq!(stall.what, "made no progress for 2000 ms with 64 queued (waiting for it: processor)");
    }

    #[test]
    fn progress_compares_each_thread_with_what_was_queued_for_it() {
        let stats = PipelineStats::default();
        stats.submitted_slots.store(10, Ordering::Release);
        stats.journaler_slots.store(10, Ordering::Release);
        stats.processor_slots.store(8, Ordering::Release);
        stats.event_log_slots.store(8, Ordering::Release);
        stats.responder_slots.store(5, Ordering::Release);
        let queued: Vec<u64> = progress(&stats).iter().map(|p| p.queued).collect();
        assert_eq!(queued, vec![0, 0, 3, 2]);
    }
}
