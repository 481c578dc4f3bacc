//! The background snapshotter (`seqd-snapshotter`): the daemon's copy of `seqd snapshot`, run
//! off the processor every `snapshots.every_commands` durable commands.

use crate::pipeline::fault;
use crate::pipeline::PipelineStats;
use crate::storage::replay::{replay, DataDir, ReplayError, ReplayOptions};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The snapshotter's figures for the metrics endpoint.
#[derive(Debug, Default)]
pub struct SnapshotStats {
    /// When the newest snapshot was written (Unix seconds; at start, the newest file's mtime,
    /// so its age is true after a restart); 0 if there is none.
    pub last_success_unix_s: AtomicU64,
    /// Sequence of the newest snapshot.
    pub last_seq: AtomicU64,
    /// How long the last successful background snapshot took (replay + write), nanoseconds.
    pub last_duration_ns: AtomicU64,
    pub written: AtomicU64,
    pub failed: AtomicU64,
}

impl SnapshotStats {
    /// Figures as of the snapshots already in `data_dir` (the newest one's sequence and mtime).
    pub fn from_disk(data_dir: &DataDir) -> SnapshotStats {
        let stats = SnapshotStats::default();
        if let Some((seq, path)) = data_dir.snapshots().list().ok().and_then(|mut all| all.pop()) {
            stats.last_seq.store(seq, Ordering::Relaxed);
            let written = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            stats.last_success_unix_s.store(written.map_or(0, unix_s), Ordering::Relaxed);
        }
        stats
    }

    /// Records a snapshot written now at `seq`.
    pub fn written_at(&self, seq: u64, took: Duration) {
        self.last_seq.store(seq, Ordering::Relaxed);
        self.last_success_unix_s.store(unix_s(SystemTime::now()), Ordering::Relaxed);
        self.last_duration_ns.store(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.written.fetch_add(1, Ordering::Relaxed);
    }
}

fn unix_s(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Every `every_commands` durable commands, rebuilds a replica of the state from the newest
/// snapshot and the journal (on its own thread, never touching the processor) and writes it as
/// the next snapshot. A failed attempt (for example a read racing the journal's tail) is
/// logged and retried on the next round; a panic, or a command that panics in the replica, is
/// a bug and fails the pipeline.
pub(super) fn spawn_snapshotter(
    data_dir: DataDir,
    every_commands: u64,
    keep: usize,
    stats: Arc<PipelineStats>,
    figures: Arc<SnapshotStats>,
    stop: Arc<AtomicBool>,
) -> Option<JoinHandle<()>> {
    if every_commands == 0 {
        return None;
    }
    let watched = stats.clone();
    let body = move || {
        let mut last_seq =
            data_dir.snapshots().list().ok().and_then(|all| all.last().map(|(seq, _)| *seq)).unwrap_or(0);
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(200));
            let durable = stats.durable_seq.load(Ordering::Acquire);
            if durable < last_seq + every_commands {
                continue;
            }
            let started = Instant::now();
            let options = ReplayOptions { use_snapshot: true, to_seq: Some(durable), progress: false };
            let replica = match replay(&data_dir, options) {
                Err(e @ ReplayError::Panicked { .. }) => {
                    return stats.fail("snapshotter", &format!("replay failed: {e}"))
                }
                replica => replica,
            };
            let written = replica
                .map_err(|e| e.to_string())
                .and_then(|(engine, _)| data_dir.snapshots().write(&engine).map_err(|e| e.to_string()))
                .and_then(|path| data_dir.snapshots().prune(keep).map(|_| path).map_err(|e| e.to_string()));
            match written {
                Ok(path) => {
                    last_seq = durable;
                    figures.written_at(durable, started.elapsed());
                    tracing::info!(seq = durable, snapshot = %path.display(), "background snapshot written");
                }
                Err(e) => {
                    figures.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("background snapshot at {durable} failed, will retry: {e}")
                }
            }
        }
    };
    let supervised = move || {
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            watched.fail("snapshotter", &format!("panicked: {}", fault::panic_message(&*payload)));
        }
    };
    Some(std::thread::Builder::new().name("seqd-snapshotter".into()).spawn(supervised).expect("spawn the snapshotter"))
}
