//! Running replicators on their own threads, in the daemon or in `seqd replicate`.
//!
//! Each replicator gets one thread with a current-thread tokio runtime: a slow database stalls
//! nothing but its own replicator, and nothing here shares a core budget with the gateway's
//! runtime beyond what the OS scheduler gives it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::{ClickHouseSection, ReplicateSection, TidbSection};

use super::clickhouse::{ClickHouseConfig, ClickHouseSink};
use super::tidb::{TidbConfig, TidbSink};
use super::{run, ReplicateError, ReplicatorStats, RunOptions, Sink};

/// Which mirrors to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// Those with `enabled = true` in the configuration.
    Enabled,
    Tidb,
    ClickHouse,
    /// Both, whatever `enabled` says.
    Both,
}

impl std::str::FromStr for Which {
    type Err = String;
    fn from_str(s: &str) -> Result<Which, String> {
        match s {
            "enabled" => Ok(Which::Enabled),
            "tidb" => Ok(Which::Tidb),
            "clickhouse" => Ok(Which::ClickHouse),
            "both" | "all" => Ok(Which::Both),
            _ => Err(format!("unknown sink {s:?}: tidb, clickhouse, both or enabled")),
        }
    }
}

impl Which {
    pub fn tidb(self, section: &ReplicateSection) -> bool {
        matches!(self, Which::Tidb | Which::Both) || (self == Which::Enabled && section.tidb.enabled)
    }
    pub fn clickhouse(self, section: &ReplicateSection) -> bool {
        matches!(self, Which::ClickHouse | Which::Both) || (self == Which::Enabled && section.clickhouse.enabled)
    }
}

pub fn tidb_sink(section: &TidbSection) -> TidbSink {
    let mut config = TidbConfig::new(section.url.clone());
    config.max_records = section.max_records;
    config.max_fact_rows = section.max_fact_rows;
    TidbSink::new(config)
}

pub fn clickhouse_sink(section: &ClickHouseSection) -> ClickHouseSink {
    let mut config = ClickHouseConfig::new(section.url.clone(), section.database.clone());
    config.user = section.user.clone();
    config.password = section.password.clone();
    config.max_records = section.max_records;
    config.max_fact_rows = section.max_fact_rows;
    ClickHouseSink::new(config)
}

/// The running replicators.
pub struct Replicators {
    stop: Arc<AtomicBool>,
    threads: Vec<(String, JoinHandle<Result<(), ReplicateError>>)>,
    stats: Vec<Arc<ReplicatorStats>>,
}

impl Replicators {
    /// Starts the chosen replicators tailing `events_dir`. `options` is used for each (its
    /// `events_dir` is replaced).
    pub fn start(section: &ReplicateSection, which: Which, events_dir: &Path, options: &RunOptions) -> Replicators {
        let mut replicators =
            Replicators { stop: Arc::new(AtomicBool::new(false)), threads: Vec::new(), stats: Vec::new() };
        let mut options = options.clone();
        options.events_dir = events_dir.to_path_buf();
        if which.tidb(section) {
            let tidb = section.tidb.clone();
            replicators.spawn("tidb", &options, move || tidb_sink(&tidb));
        }
        if which.clickhouse(section) {
            let clickhouse = section.clickhouse.clone();
            replicators.spawn("clickhouse", &options, move || clickhouse_sink(&clickhouse));
        }
        replicators
    }

    fn spawn<S: Sink + 'static>(
        &mut self,
        name: &str,
        options: &RunOptions,
        make_sink: impl FnOnce() -> S + Send + 'static,
    ) {
        let stats = ReplicatorStats::new(name);
        self.stats.push(stats.clone());
        let stop = self.stop.clone();
        let options = options.clone();
        let body = move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
                ReplicateError::Fatal {
                    sink: stats.name.clone(),
                    source: super::SinkError::Fatal(Box::new(RuntimeError(e))),
                }
            })?;
            let result = runtime.block_on(run(make_sink(), &options, &stop, &stats));
            if let Err(e) = &result {
                stats.stopped_on_error.store(true, Ordering::Release);
                tracing::error!(sink = %stats.name, error = %e, "replicator stopped; trading is not affected, the mirror falls behind until it is restarted");
            }
            result
        };
        let handle = std::thread::Builder::new()
            .name(format!("seqd-repl-{name}"))
            .spawn(body)
            .expect("spawn a replicator thread");
        self.threads.push((name.to_string(), handle));
    }

    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    pub fn stats(&self) -> Vec<Arc<ReplicatorStats>> {
        self.stats.clone()
    }

    /// True once every replicator thread has returned (reached `until_seq`, or failed).
    pub fn all_finished(&self) -> bool {
        self.threads.iter().all(|(_, handle)| handle.is_finished())
    }

    /// Asks every replicator to stop after its current write and waits for them.
    pub fn stop(self) -> Vec<(String, Result<(), ReplicateError>)> {
        self.stop.store(true, Ordering::Release);
        self.threads
            .into_iter()
            .map(|(name, handle)| {
                let result = handle.join().unwrap_or_else(|_| {
                    Err(ReplicateError::Fatal { sink: name.clone(), source: super::SinkError::fatal("panicked") })
                });
                (name, result)
            })
            .collect()
    }
}

/// A metric's name, help, type and how to read it from the stats.
type MetricFamily = (&'static str, &'static str, &'static str, fn(&ReplicatorStats) -> u64);

/// Prometheus lines for the replicators (in the daemon's page, or `seqd replicate`'s).
pub fn metrics_text(stats: &[Arc<ReplicatorStats>]) -> String {
    let mut text = String::new();
    let families: [MetricFamily; 9] = [
        ("seqd_replicator_checkpoint_seq", "Last event-log sequence in the mirror.", "gauge", |s| {
            s.checkpoint_seq.load(Ordering::Relaxed)
        }),
        (
            "seqd_replicator_log_seq",
            "Newest sequence in the event log, as the replicator last read it.",
            "gauge",
            |s| s.log_seq.load(Ordering::Relaxed),
        ),
        ("seqd_replicator_lag_records", "Event-log records not yet in the mirror.", "gauge", |s| s.lag_records()),
        ("seqd_replicator_up", "1 while the replicator runs; 0 once it stopped on an error.", "gauge", |s| {
            u64::from(!s.stopped_on_error())
        }),
        ("seqd_replicator_batches_total", "Batches committed.", "counter", |s| s.batches.load(Ordering::Relaxed)),
        ("seqd_replicator_records_total", "Event-log records committed.", "counter", |s| {
            s.records.load(Ordering::Relaxed)
        }),
        ("seqd_replicator_ledger_rows_total", "Ledger rows committed.", "counter", |s| {
            s.ledger_rows.load(Ordering::Relaxed)
        }),
        ("seqd_replicator_rows_total", "Rows committed, all tables.", "counter", |s| {
            s.total_rows.load(Ordering::Relaxed)
        }),
        ("seqd_replicator_errors_total", "Failed connections or writes (each retried).", "counter", |s| {
            s.errors.load(Ordering::Relaxed)
        }),
    ];
    for (name, help, kind, value) in families {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for s in stats {
            text.push_str(&format!("{name}{{sink=\"{}\"}} {}\n", s.name, value(s)));
        }
    }
    let name = "seqd_replicator_lag_seconds";
    text.push_str(&format!(
        "# HELP {name} How long the oldest record not yet in the mirror has waited; 0 when caught up.\n# TYPE {name} gauge\n"
    ));
    let now_ns = super::now_ns();
    for s in stats {
        text.push_str(&format!("{name}{{sink=\"{}\"}} {}\n", s.name, s.lag_seconds(now_ns)));
    }
    text
}

/// A replicator thread could not build its runtime.
#[derive(Debug, thiserror::Error)]
#[error("runtime: {0}")]
struct RuntimeError(#[source] std::io::Error);
