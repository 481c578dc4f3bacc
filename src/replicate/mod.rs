//! Replicators: keep the TiDB and ClickHouse mirrors up to date from the event log.
//!
//! A replicator tails the output event log (never memory) from its sink's own checkpoint, turns
//! whole records into a [`Batch`] of rows ([`rows`]), and hands the batch to its [`Sink`], which
//! writes the rows and the new checkpoint so that the effect is exactly once: in one transaction
//! (TiDB) or idempotently, so a re-sent batch collapses (ClickHouse `ReplacingMergeTree`).
//!
//! Nothing here is on the trading path: the processor never waits for a replicator. A database
//! that is down is retried with backoff; on every reconnection the replicator re-reads the
//! checkpoint from the database itself, because a commit whose answer was lost may or may not
//! have happened. Lag (records and milliseconds behind the log) is a metric and a log line.
//!
//! - [`rows`]: events to rows, the catalog of reference data (pure).
//! - [`tidb`]: the TiDB / MySQL-protocol sink.
//! - [`clickhouse`]: the ClickHouse sink.
//! - [`reconcile`]: compares the mirrors with the state rebuilt from the journal.
//! - [`service`]: replicator threads for the daemon and `seqd replicate`; their metrics.

pub mod clickhouse;
pub mod reconcile;
pub mod rows;
pub mod service;
pub mod tidb;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::engine::{Event, Seq};
use crate::storage::event_log::{EventLogError, EventLogReader};
use crate::storage::journal::{JournalError, JournalReader};
pub use rows::{Batch, BatchBuilder, Catalog, RowError};

/// What a mirror holds, read back from it on (re)connection.
#[derive(Clone, Debug, Default)]
pub struct Resume {
    /// Last event-log sequence whose rows are in the mirror (0: none).
    pub last_seq: Seq,
    /// Reference data as of `last_seq`.
    pub catalog: Catalog,
}

/// The cause of a sink error: the database client's error with what the sink was doing (its
/// `source()` the client's own error: [`tidb::TidbError`] keeps the server's error number), or
/// one of the sink's own checks (a message).
pub type SinkCause = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The database is unreachable, restarting, timed out or refused a statement that may
    /// succeed later: reconnect and retry from the mirror's checkpoint.
    #[error(transparent)]
    Transient(SinkCause),
    /// Retrying cannot help (schema newer than this binary, a mirror of another journal).
    #[error(transparent)]
    Fatal(SinkCause),
}

impl SinkError {
    pub fn transient(cause: impl Into<SinkCause>) -> SinkError {
        SinkError::Transient(cause.into())
    }

    pub fn fatal(cause: impl Into<SinkCause>) -> SinkError {
        SinkError::Fatal(cause.into())
    }
}

/// Limits on one batch, chosen by the sink (a TiDB transaction must stay small; ClickHouse
/// wants large inserts).
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    pub max_records: usize,
    /// Stop adding records once the batch has this many fact rows (ledger, order events...).
    pub max_fact_rows: usize,
}

/// A mirror database.
#[allow(async_fn_in_trait)] // used through generics only, on a current-thread runtime
pub trait Sink {
    /// Stable name: the checkpoint key, log and metric label (`tidb`, `clickhouse`).
    fn name(&self) -> &str;
    fn batch_limits(&self) -> BatchLimits;
    /// Connects (again), creates or migrates the schema, and reads back the checkpoint and the
    /// catalog as of it.
    async fn open(&mut self) -> Result<Resume, SinkError>;
    /// Writes the batch's rows and sets the checkpoint to `batch.last_seq`, exactly once in
    /// effect. On error the mirror holds either all of it or none of it (or, for idempotent
    /// sinks, some of it, which a re-send collapses).
    async fn write(&mut self, batch: &Batch) -> Result<(), SinkError>;
}

/// Reads the event log from a sequence on, one whole command at a time: a split event list is
/// reassembled from its parts before it reaches a batch, so a batch (and the checkpoint written
/// with it) always ends at a command boundary.
pub struct Tailer {
    reader: EventLogReader,
    events: Vec<Event>,
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Log(#[from] EventLogError),
    #[error(transparent)]
    Rows(#[from] RowError),
}

impl Tailer {
    pub fn open(events_dir: &Path, from_seq: Seq) -> Result<Tailer, TailError> {
        Ok(Tailer { reader: EventLogReader::open(events_dir, from_seq)?, events: Vec::new() })
    }

    /// Seq of the next record to read.
    pub fn next_seq(&self) -> Seq {
        self.reader.next_seq()
    }

    /// Adds the records written so far to `builder`, up to `limits`; returns how many.
    pub fn fill(&mut self, builder: &mut BatchBuilder, limits: BatchLimits) -> Result<usize, TailError> {
        let mut added = 0;
        while builder.batch().records() < limits.max_records && builder.batch().fact_rows() < limits.max_fact_rows {
            let Some((seq, ts_ns)) = self.reader.next(&mut self.events)? else { break };
            builder.add_record(seq, ts_ns, &self.events)?;
            added += 1;
        }
        Ok(added)
    }
}

/// Live figures of one replicator, shared with the metrics endpoint and the bench.
pub struct ReplicatorStats {
    pub name: String,
    /// The mirror's checkpoint (last applied seq) as last written or read back.
    pub checkpoint_seq: AtomicU64,
    /// Newest seq in the event log (the tail of what could be replicated), found by a reader
    /// of its own that runs to the end of the log ([`LogTail`]), not by the tailer, whose
    /// read-ahead stops at a batch's limits.
    pub log_seq: AtomicU64,
    /// Milliseconds between the newest replicated record's stamp and its commit; 0 once the
    /// replicator has found nothing more to read.
    pub lag_ms: AtomicU64,
    /// Sequencing stamp (Unix ns) of the oldest record the tailer has read and the mirror does
    /// not hold yet; 0 when not known (just committed) or caught up.
    pub pending_since_ns: AtomicU64,
    pub batches: AtomicU64,
    pub records: AtomicU64,
    pub fact_rows: AtomicU64,
    pub ledger_rows: AtomicU64,
    pub total_rows: AtomicU64,
    pub errors: AtomicU64,
    /// Set when the replicator's thread ended on an error (fatal sink error, unreadable log).
    pub stopped_on_error: AtomicBool,
    /// Per record: commit time minus sequencing stamp, microseconds.
    pub lag_us: Mutex<Histogram<u64>>,
}

impl ReplicatorStats {
    pub fn new(name: &str) -> Arc<ReplicatorStats> {
        Arc::new(ReplicatorStats {
            name: name.to_string(),
            checkpoint_seq: AtomicU64::new(0),
            log_seq: AtomicU64::new(0),
            lag_ms: AtomicU64::new(0),
            pending_since_ns: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            records: AtomicU64::new(0),
            fact_rows: AtomicU64::new(0),
            ledger_rows: AtomicU64::new(0),
            total_rows: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stopped_on_error: AtomicBool::new(false),
            lag_us: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")),
        })
    }

    fn committed(&self, batch: &Batch, now_ns: u64) {
        self.checkpoint_seq.store(batch.last_seq, Ordering::Release);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.records.fetch_add(batch.records() as u64, Ordering::Relaxed);
        self.fact_rows.fetch_add(batch.fact_rows() as u64, Ordering::Relaxed);
        self.ledger_rows.fetch_add(batch.ledger.len() as u64, Ordering::Relaxed);
        self.total_rows.fetch_add(batch.total_rows() as u64, Ordering::Relaxed);
        let last_ts = batch.record_ts_ns.last().copied().unwrap_or(now_ns);
        self.lag_ms.store(now_ns.saturating_sub(last_ts) / 1_000_000, Ordering::Relaxed);
        let mut histogram = self.lag_us.lock().expect("lag histogram lock");
        for &ts in &batch.record_ts_ns {
            histogram.saturating_record((now_ns.saturating_sub(ts) / 1_000).max(1));
        }
    }

    pub fn stopped_on_error(&self) -> bool {
        self.stopped_on_error.load(Ordering::Acquire)
    }

    /// How far behind the mirror is in time: 0 when it holds every record of the log; else how
    /// long the oldest record it lacks has waited (growing while the database is down), or,
    /// in the instant between a commit and the next read, the last commit's lag.
    pub fn lag_seconds(&self, now_ns: u64) -> f64 {
        if self.lag_records() == 0 {
            return 0.0;
        }
        match self.pending_since_ns.load(Ordering::Relaxed) {
            0 => self.lag_ms.load(Ordering::Relaxed) as f64 / 1e3,
            since_ns => now_ns.saturating_sub(since_ns) as f64 / 1e9,
        }
    }

    /// Records the log holds that the mirror does not (yet).
    pub fn lag_records(&self) -> u64 {
        self.log_seq.load(Ordering::Relaxed).saturating_sub(self.checkpoint_seq.load(Ordering::Acquire))
    }
}

/// How a replicator runs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub events_dir: PathBuf,
    /// Sleep when the log has nothing new.
    pub idle_poll: Duration,
    /// First and largest wait between reconnection attempts.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// On stop, first replicate what the log holds (bounded by `drain_timeout`).
    pub drain_on_stop: bool,
    /// Stop by itself once the mirror has reached this seq (bench, tests, `--until`).
    pub until_seq: Option<Seq>,
    /// Log a lag line at most this often.
    pub log_every: Duration,
}

impl RunOptions {
    pub fn new(events_dir: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            events_dir: events_dir.into(),
            idle_poll: Duration::from_millis(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            drain_on_stop: true,
            until_seq: None,
            log_every: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    #[error("{sink}: {source}")]
    Fatal { sink: String, source: SinkError },
    #[error("{sink}: reading the event log: {source}")]
    Log { sink: String, source: TailError },
}

/// Runs one replicator until `stop` is set (or `until_seq` is reached). Transient database
/// errors are retried forever with backoff; a fatal sink error or an unreadable event log ends
/// the replicator (never the daemon) with an error.
pub async fn run<S: Sink>(
    mut sink: S,
    options: &RunOptions,
    stop: &AtomicBool,
    stats: &ReplicatorStats,
) -> Result<(), ReplicateError> {
    let name = sink.name().to_string();
    let mut backoff = options.backoff_min;
    // The log's tail is read whether or not the database answers: a mirror that cannot be
    // reached is behind by the whole log, not by 0.
    let mut log_tail = LogTail::open(&options.events_dir, 1);
    loop {
        if stop.load(Ordering::Acquire) {
            return Ok(());
        }
        log_tail.advance(stats);
        let resume = match sink.open().await {
            Ok(resume) => resume,
            Err(SinkError::Transient(message)) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sink = %name, error = %message, retry_in_ms = backoff.as_millis() as u64, "replicator cannot reach its database");
                sleep_unless_stopped(backoff, stop).await;
                backoff = (backoff * 2).min(options.backoff_max);
                continue;
            }
            Err(fatal) => return Err(ReplicateError::Fatal { sink: name, source: fatal }),
        };
        stats.checkpoint_seq.store(resume.last_seq, Ordering::Release);
        tracing::info!(sink = %name, checkpoint_seq = resume.last_seq, "replicator resumes after its checkpoint");
        log_tail.skip_to(resume.last_seq + 1);
        match replicate_from(&mut sink, resume, options, stop, stats, &mut log_tail).await {
            Ok(()) => return Ok(()),
            Err(Failure::Transient(message)) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sink = %name, error = %message, "replicator write failed; reconnecting and resuming from the database's checkpoint");
                sleep_unless_stopped(backoff, stop).await;
                backoff = (backoff * 2).min(options.backoff_max);
            }
            Err(Failure::Fatal(source)) => return Err(ReplicateError::Fatal { sink: name, source }),
            Err(Failure::Log(source)) => return Err(ReplicateError::Log { sink: name, source }),
        }
    }
}

enum Failure {
    Transient(SinkCause),
    Fatal(SinkError),
    Log(TailError),
}

/// One connection's life: tail and write until stopped or a write fails.
async fn replicate_from<S: Sink>(
    sink: &mut S,
    resume: Resume,
    options: &RunOptions,
    stop: &AtomicBool,
    stats: &ReplicatorStats,
    log_tail: &mut LogTail,
) -> Result<(), Failure> {
    let name = sink.name().to_string();
    let limits = sink.batch_limits();
    let mut tailer = Tailer::open(&options.events_dir, resume.last_seq + 1).map_err(Failure::Log)?;
    let mut builder = BatchBuilder::new(resume.catalog);
    let mut last_log = std::time::Instant::now();
    let mut checkpoint = resume.last_seq;
    loop {
        if options.until_seq.is_some_and(|until| checkpoint >= until) {
            return Ok(());
        }
        let stopping = stop.load(Ordering::Acquire);
        tailer.fill(&mut builder, limits).map_err(Failure::Log)?;
        stats.log_seq.fetch_max(tailer.next_seq().saturating_sub(1), Ordering::Relaxed);
        log_tail.advance(stats);
        if builder.batch().is_empty() {
            if stopping {
                return Ok(());
            }
            // Caught up with the log: no lag, whatever the last commit took.
            stats.lag_ms.store(0, Ordering::Relaxed);
            stats.pending_since_ns.store(0, Ordering::Relaxed);
            tokio::time::sleep(options.idle_poll).await;
            continue;
        }
        if stopping && !options.drain_on_stop {
            return Ok(());
        }
        let batch = builder.take();
        if let Some(&oldest_ts_ns) = batch.record_ts_ns.first() {
            stats.pending_since_ns.store(oldest_ts_ns.max(1), Ordering::Relaxed);
        }
        match sink.write(&batch).await {
            Ok(()) => {
                checkpoint = batch.last_seq;
                stats.committed(&batch, now_ns());
                stats.pending_since_ns.store(0, Ordering::Relaxed);
            }
            Err(SinkError::Transient(message)) => return Err(Failure::Transient(message)),
            Err(fatal) => return Err(Failure::Fatal(fatal)),
        }
        if last_log.elapsed() >= options.log_every {
            last_log = std::time::Instant::now();
            tracing::info!(
                sink = %name,
                checkpoint_seq = checkpoint,
                lag_records = stats.lag_records(),
                lag_ms = stats.lag_ms.load(Ordering::Relaxed),
                "replicator progress"
            );
        }
    }
}

/// Finds the event log's newest sequence for `ReplicatorStats::log_seq`: a journal reader of
/// its own (records checked, payloads not decoded) that runs to the end of the log at most
/// every [`LogTail::EVERY`], so `lag_records` is the true backlog rather than the tailer's
/// read-ahead. It never fails the replicator: the tailer reports an unreadable log.
struct LogTail {
    events_dir: PathBuf,
    /// `None` until the log can be opened, and again after a read error (reopened from
    /// `next_seq` at the next round).
    reader: Option<JournalReader>,
    next_seq: Seq,
    last_run: Option<std::time::Instant>,
}

impl LogTail {
    const EVERY: Duration = Duration::from_millis(100);
    /// Records read per call at most, so a long backlog is scanned over several rounds
    /// instead of holding up the replicator's loop.
    const RECORDS_PER_CALL_MAX: usize = 100_000;

    fn open(events_dir: &Path, from_seq: Seq) -> LogTail {
        LogTail { events_dir: events_dir.to_path_buf(), reader: None, next_seq: from_seq, last_run: None }
    }

    /// Starts reading at `seq` if the reader is behind it (what the mirror holds need not be
    /// read: after the checkpoint, the log must have at least as much).
    fn skip_to(&mut self, seq: Seq) {
        if seq > self.next_seq {
            self.next_seq = seq;
            self.reader = None;
        }
    }

    fn advance(&mut self, stats: &ReplicatorStats) {
        if self.last_run.is_some_and(|at| at.elapsed() < Self::EVERY) {
            return;
        }
        self.last_run = Some(std::time::Instant::now());
        if self.reader.is_none() {
            self.reader = JournalReader::open(&self.events_dir, self.next_seq).ok().or_else(|| {
                // Segments below the one to start from may have been archived (retention):
                // the oldest one left is where the log begins now.
                let oldest = crate::storage::retention::segments(&self.events_dir).ok()?.first()?.first_seq;
                (oldest > self.next_seq).then(|| JournalReader::open(&self.events_dir, oldest).ok()).flatten()
            });
        }
        let Some(reader) = &mut self.reader else { return };
        for _ in 0..Self::RECORDS_PER_CALL_MAX {
            match reader.next() {
                Ok(Some(record)) => {
                    // The oldest record the mirror lacks, when the tailer has not read it
                    // (a database that cannot be reached): the lag in time grows from it.
                    if record.seq == stats.checkpoint_seq.load(Ordering::Acquire) + 1 {
                        let _ = stats.pending_since_ns.compare_exchange(
                            0,
                            record.timestamp_ns.max(1),
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "log tail: read error, reopening next round (the tailer reports real damage)");
                    self.reader = None;
                    return;
                }
            }
        }
        self.next_seq = reader.next_seq();
        stats.log_seq.fetch_max(self.next_seq.saturating_sub(1), Ordering::Relaxed);
    }
}

async fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) {
    let deadline = tokio::time::Instant::now() + duration;
    while tokio::time::Instant::now() < deadline && !stop.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(20).min(duration)).await;
    }
}

/// Wall clock in nanoseconds since the Unix epoch (lag figures only; never in the engine).
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Asserts `found` is `expected` to the byte, naming the first line that differs.
#[cfg(test)]
pub(crate) fn assert_same_text(found: &str, expected: &str) {
    for (line, (found, expected)) in found.lines().zip(expected.lines()).enumerate() {
        assert_eq!(found, expected, "line {}", line + 1);
    }
    assert_eq!(found, expected);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, ExecKind};
    use crate::storage::event_log::tests::{cancel_all_session, write_log};

    /// A split event list reaches the sink as one record of one batch, whatever the limits:
    /// the checkpoint written with a batch is always a command boundary.
    #[test]
    fn the_tailer_reassembles_a_split_command_into_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let commands = cancel_all_session(1_000);
        let written = write_log(dir.path(), &commands);
        let cancel_seq = commands.len() as Seq;
        let cancelled = written
            .last()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, Event::Order(o) if o.exec == ExecKind::Cancelled))
            .count();
        assert_eq!(cancelled, 1_000);

        let mut tailer = Tailer::open(dir.path(), cancel_seq - 1).unwrap();
        let mut builder = BatchBuilder::new(Catalog::default());
        // Catalog of the mirror as of seq cancel_seq - 2: replay the reference data into it.
        let mut engine = Engine::new();
        let mut events = Vec::new();
        for (i, command) in commands[..commands.len() - 2].iter().enumerate() {
            events.clear();
            engine.apply(i as Seq + 1, 1_000 + i as u64, command, &mut events);
            builder.add_record(i as Seq + 1, 1_000 + i as u64, &events).unwrap();
        }
        builder.take();
        // Limits of one record and one fact row: each fill adds exactly one whole command.
        let limits = BatchLimits { max_records: 1, max_fact_rows: 1 };
        assert_eq!(tailer.fill(&mut builder, limits).unwrap(), 1);
        assert_eq!(builder.take().last_seq, cancel_seq - 1);
        assert_eq!(tailer.fill(&mut builder, limits).unwrap(), 1);
        let batch = builder.take();
        assert_eq!((batch.first_seq, batch.last_seq, batch.records()), (cancel_seq, cancel_seq, 1));
        assert_eq!(batch.order_events.len(), 1_000, "every cancellation of the split list, in one batch");
        assert_eq!(tailer.fill(&mut builder, limits).unwrap(), 0);
        assert_eq!(tailer.next_seq(), cancel_seq + 1);
    }
}
