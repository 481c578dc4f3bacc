//! A fixed-bucket log2 latency histogram for the hot path: recording is two relaxed atomic adds
//! (the bucket and the sum), no lock, no allocation. Buckets are powers of two nanoseconds from
//! 1.024 µs to ~68.7 s (one more for larger values), coarse (a factor of 2) but enough for an
//! operator's percentiles and alerts; the benches keep the precise figures.
//!
//! Exposed in the Prometheus histogram format (`_bucket{le=...}` cumulative, `_sum`, `_count`)
//! in seconds, the base unit.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bit length of the smallest bucket's bound: values below 2^10 ns (1.024 µs) go there.
const FIRST_BITS: u32 = 10;
/// Bit length of the largest finite bound: 2^36 ns, about 68.7 s.
const LAST_BITS: u32 = 36;
/// Finite buckets, plus one for larger values (`le="+Inf"`).
const BUCKETS: usize = (LAST_BITS - FIRST_BITS + 2) as usize;

pub struct Log2Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Default for Log2Histogram {
    fn default() -> Self {
        Log2Histogram { buckets: std::array::from_fn(|_| AtomicU64::new(0)), sum_ns: AtomicU64::new(0) }
    }
}

impl std::fmt::Debug for Log2Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log2Histogram").field("count", &self.count()).finish_non_exhaustive()
    }
}

impl Log2Histogram {
    /// Records one observation of `ns` nanoseconds.
    pub fn record_ns(&self, ns: u64) {
        self.buckets[bucket_index(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Records a duration (saturating at u64 nanoseconds, ~584 years).
    pub fn record(&self, elapsed: std::time::Duration) {
        self.record_ns(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Appends the histogram as a Prometheus family `name` (which should end in `_seconds`).
    /// `labels` is empty or `key="value",...` without braces.
    pub fn write_family(&self, text: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} histogram");
        self.write_series(text, name, labels);
    }

    /// Appends the series of one label set (the family's `# HELP`/`# TYPE` written by the caller).
    pub fn write_series(&self, text: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = match bucket_bound_ns(i) {
                Some(ns) => format!("{}", ns as f64 / 1e9),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(text, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}");
        }
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let sum_seconds = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(text, "{name}_sum{braces} {sum_seconds}\n{name}_count{braces} {cumulative}");
    }
}

/// The bucket of `ns`: the first whose bound (2^bits ns) is above it.
fn bucket_index(ns: u64) -> usize {
    let bits = u64::BITS - ns.leading_zeros();
    (bits.max(FIRST_BITS) - FIRST_BITS).min(BUCKETS as u32 - 1) as usize
}

/// The exclusive upper bound of bucket `i` in nanoseconds; `None` for the last (+Inf).
fn bucket_bound_ns(i: usize) -> Option<u64> {
    (i + 1 < BUCKETS).then(|| 1u64 << (FIRST_BITS + i as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_lands_in_the_first_bucket_whose_bound_is_above_it() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(1023), 0);
        assert_eq!(bucket_index(1024), 1);
        assert_eq!(bucket_index(2047), 1);
        assert_eq!(bucket_index(2048), 2);
        assert_eq!(bucket_index((1 << 36) - 1), BUCKETS - 2);
        assert_eq!(bucket_index(1 << 36), BUCKETS - 1);
        assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
        for ns in [0, 1, 1023, 1024, 5_000, 1 << 20, (1 << 36) - 1] {
            assert!(ns < bucket_bound_ns(bucket_index(ns)).unwrap(), "{ns}");
        }
    }

    #[test]
    fn the_exposition_is_cumulative_with_sum_and_count_in_seconds() {
        let histogram = Log2Histogram::default();
        histogram.record_ns(500); // first bucket
        histogram.record_ns(1_500); // second
        histogram.record_ns(u64::MAX / 2); // +Inf
        let mut text = String::new();
        histogram.write_family(&mut text, "x_seconds", "Test.", "");
        assert!(text.starts_with("# HELP x_seconds Test.\n# TYPE x_seconds histogram\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"0.000001024\"} 1\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"0.000002048\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"68.719476736\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("x_seconds_count 3\n"), "{text}");
        assert_eq!(histogram.count(), 3);
        let mut labelled = String::new();
        histogram.write_series(&mut labelled, "x_seconds", "sink=\"a\"");
        assert!(labelled.contains("x_seconds_bucket{sink=\"a\",le=\"+Inf\"} 3\n"), "{labelled}");
        assert!(labelled.contains("x_seconds_count{sink=\"a\"} 3\n"), "{labelled}");
    }
}
