//! The background snapshotter (`seqd-snapshotter`): the daemon's copy of `seqd snapshot`, run
//! off the processor every `snapshots.every_commands` durable commands.

use crate::pipeline::fault;
use crate::pipeline::PipelineStats;
use crate::storage::replay::{replay, DataDir, ReplayError, ReplayOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

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
                    tracing::info!(seq = durable, snapshot = %path.display(), "background snapshot written");
                }
                Err(e) => tracing::warn!("background snapshot at {durable} failed, will retry: {e}"),
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
