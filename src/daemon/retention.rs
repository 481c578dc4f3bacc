//! The `seqd-retention` thread: the free-disk check (a warning while the data directory's file
//! system is below `retention.warn_free_bytes`) and, when `retention.mode` asks, the daemon's
//! own `seqd journal archive` every `retention.archive_interval_s` (storage/retention.rs).
//!
//! The daemon holds the journals' locks, so this runs under them: it removes only segments the
//! writers have closed (never the last one) and that no reader still needs: recovery (the newest
//! usable snapshot), the replicators (their committed checkpoints; one that has not committed yet
//! keeps the whole event log) and the configured floor.

use crate::config::RetentionSection;
use crate::replicate::ReplicatorStats;
use crate::storage::replay::DataDir;
use crate::storage::retention::{
    archive_data_dir, disk_usage, newest_usable_snapshot_seq, Disposal, KeepFrom, RetentionError,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);

pub(super) fn spawn_retention(
    data_dir: DataDir,
    section: RetentionSection,
    replicators: Vec<Arc<ReplicatorStats>>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let disposal = match section.mode.as_str() {
        "move" => Some(Disposal::MoveTo(section.archive_dir.clone())),
        "delete" => Some(Disposal::Delete),
        _ => None,
    };
    let body = move || {
        let disk_every = Duration::from_secs(section.disk_check_interval_s);
        let archive_every = Duration::from_secs(section.archive_interval_s);
        let (mut disk_due, mut archive_due) = (Instant::now(), Instant::now() + archive_every);
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(POLL);
            let now = Instant::now();
            if now >= disk_due {
                disk_due = now + disk_every;
                check_disk(&data_dir, section.warn_free_bytes);
            }
            if let Some(disposal) = disposal.as_ref().filter(|_| now >= archive_due) {
                archive_due = now + archive_every;
                let checkpoints: Vec<u64> =
                    replicators.iter().map(|r| r.checkpoint_seq.load(Ordering::Acquire)).collect();
                let floor = (section.keep_from_seq > 0).then_some(section.keep_from_seq);
                if let Err(e) = archive_once(&data_dir, floor, &checkpoints, disposal) {
                    tracing::warn!("journal retention failed, will retry: {e}");
                }
            }
        }
    };
    std::thread::Builder::new().name("seqd-retention".into()).spawn(body).expect("spawn the retention thread")
}

/// The metrics (`seqd_disk_free_bytes`, journal bytes and segments) are read at scrape time by
/// the metrics endpoint; this only warns, in the log an operator reads.
fn check_disk(data_dir: &DataDir, warn_free_bytes: u64) {
    match disk_usage(data_dir) {
        Ok(usage) => {
            if usage.disk_free_bytes < warn_free_bytes {
                tracing::warn!(
                    data_dir = %data_dir.root.display(),
                    free_bytes = usage.disk_free_bytes,
                    warn_free_bytes,
                    input_bytes = usage.input_bytes,
                    events_bytes = usage.events_bytes,
                    "disk space low: a full disk stops the journal and the venue; archive journal segments \
                     (retention.mode, `seqd journal archive`) or add space"
                );
            }
        }
        Err(e) => tracing::warn!("disk check failed: {e}"),
    }
}

fn archive_once(
    data_dir: &DataDir,
    floor: Option<u64>,
    checkpoints: &[u64],
    disposal: &Disposal,
) -> Result<(), RetentionError> {
    let snapshot_seq = newest_usable_snapshot_seq(&data_dir.snapshots(), &data_dir.input())?;
    let keep = KeepFrom::new(snapshot_seq, floor, checkpoints);
    let archived = archive_data_dir(data_dir, keep, disposal)?;
    if archived.segments() > 0 {
        tracing::info!(
            input_segments = archived.input.segments,
            input_bytes = archived.input.bytes,
            events_segments = archived.events.segments,
            events_bytes = archived.events.bytes,
            parts_segments = archived.parts.segments,
            parts_bytes = archived.parts.bytes,
            keep_input_from = keep.input_seq,
            keep_events_from = keep.events_seq,
            "journal segments archived"
        );
    }
    Ok(())
}
