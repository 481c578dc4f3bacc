//! The HTTP endpoint of `seqd run` (`metrics.listen`) and of `seqd replicate`
//! (`--metrics-listen`): `/metrics` (Prometheus text exposition), `/healthz` and `/readyz`.
//! Every metric is documented in docs/METRICS.md; `promtool check metrics` checks a live scrape
//! (tests/metrics.rs).
//!
//! The endpoint is up before recovery starts, so `/readyz` answers 503 while the daemon
//! recovers (and `/metrics` already gives the build and the phase).

use super::snapshotter::SnapshotStats;
use crate::cluster::status::ClusterShared;
use crate::gateway::refusals::Refusals;
use crate::gateway::server::Router;
use crate::pipeline::{health, PipelineStats, APPLY_SAMPLE_EVERY};
use crate::replicate::ReplicatorStats;
use crate::storage::replay::DataDir;
use crate::storage::retention::{disk_usage, segments};
use std::fmt::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the process is doing, for `/readyz` and `seqd_phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Recovering (the daemon) or starting (the replicators): not ready.
    Starting = 0,
    /// Accepting commands (the daemon) or replicating.
    Serving = 1,
    /// A graceful stop is under way: no new commands.
    Stopping = 2,
    /// A pipeline thread failed or stalled: the process is about to exit.
    Failed = 3,
}

impl Phase {
    const ALL: [Phase; 4] = [Phase::Starting, Phase::Serving, Phase::Stopping, Phase::Failed];

    fn label(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Serving => "serving",
            Phase::Stopping => "stopping",
            Phase::Failed => "failed",
        }
    }
}

/// What the daemon's endpoint reports on, known once recovery is done.
pub(super) struct Observed {
    pub pipeline: Arc<PipelineStats>,
    pub router: Arc<Router>,
    pub refusals: Arc<Refusals>,
    pub replicators: Vec<Arc<ReplicatorStats>>,
    pub snapshots: Arc<SnapshotStats>,
    pub data_dir: DataDir,
    /// A cluster node's role and progress (`/cluster`, `seqd_cluster_*`); `None` alone.
    pub cluster: Option<Arc<ClusterShared>>,
}

/// The state the HTTP endpoint serves, shared with whoever runs the process.
pub struct Endpoint {
    /// `run` or `replicate`: the `process` label of `seqd_build_info`.
    process: &'static str,
    phase: AtomicU8,
    started_unix_s: u64,
    daemon: OnceLock<Observed>,
    replicators: OnceLock<Vec<Arc<ReplicatorStats>>>,
}

impl Endpoint {
    fn new(process: &'static str) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            process,
            phase: AtomicU8::new(Phase::Starting as u8),
            started_unix_s: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            daemon: OnceLock::new(),
            replicators: OnceLock::new(),
        })
    }

    /// The endpoint of `seqd run`, in `Starting` until `observe` and `set_phase(Serving)`.
    pub(super) fn for_daemon() -> Arc<Endpoint> {
        Endpoint::new("run")
    }

    /// The endpoint of `seqd replicate`, serving `replicators`' figures.
    pub fn for_replicators(replicators: Vec<Arc<ReplicatorStats>>) -> Arc<Endpoint> {
        let endpoint = Endpoint::new("replicate");
        let _ = endpoint.replicators.set(replicators);
        endpoint
    }

    pub(super) fn observe(&self, observed: Observed) {
        let _ = self.replicators.set(observed.replicators.clone());
        let _ = self.daemon.set(observed);
    }

    pub(super) fn observed(&self) -> Option<&Observed> {
        self.daemon.get()
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    pub fn phase(&self) -> Phase {
        let raw = self.phase.load(Ordering::Acquire);
        Phase::ALL.into_iter().find(|p| *p as u8 == raw).unwrap_or(Phase::Failed)
    }

    /// `/healthz`: the process is up and its threads are alive: no pipeline thread failed (a
    /// stall counts once the supervisor has declared it) and no replicator stopped on an error.
    pub fn healthy(&self) -> bool {
        let pipeline_failed = self.daemon.get().is_some_and(|d| d.pipeline.failure().is_some());
        let replicator_failed = self.replicators.get().is_some_and(|all| all.iter().any(|s| s.stopped_on_error()));
        self.phase() != Phase::Failed && !pipeline_failed && !replicator_failed
    }

    /// `/readyz`: recovered and accepting commands (the daemon), or replicating (`seqd
    /// replicate`): 503 while recovering, after a failure, and once a stop began.
    pub fn ready(&self) -> bool {
        self.phase() == Phase::Serving && self.healthy()
    }

    /// The whole `/metrics` page.
    pub fn metrics_text(&self) -> String {
        let mut text = String::new();
        self.process_text(&mut text);
        if let Some(daemon) = self.daemon.get() {
            pipeline_text(&mut text, &daemon.pipeline);
            gateway_text(&mut text, daemon);
            storage_text(&mut text, &daemon.data_dir, &daemon.snapshots);
            if let Some(cluster) = &daemon.cluster {
                cluster.write_metrics(&mut text);
            }
        }
        if let Some(replicators) = self.replicators.get() {
            text.push_str(&crate::replicate::service::metrics_text(replicators));
        }
        text
    }

    fn process_text(&self, text: &mut String) {
        let info = "seqd_build_info";
        let _ = writeln!(text, "# HELP {info} The running seqd: version and which process (run, replicate); always 1.");
        let _ = writeln!(text, "# TYPE {info} gauge");
        let _ = writeln!(text, "{info}{{version=\"{}\",process=\"{}\"}} 1", env!("CARGO_PKG_VERSION"), self.process);
        family(text, "seqd_start_time_seconds", "gauge", "When the process started, Unix seconds.");
        let _ = writeln!(text, "seqd_start_time_seconds {}", self.started_unix_s);
        family(text, "seqd_phase", "gauge", "1 for the phase the process is in (starting, serving, stopping, failed).");
        let now = self.phase();
        for phase in Phase::ALL {
            let _ = writeln!(text, "seqd_phase{{phase=\"{}\"}} {}", phase.label(), u8::from(phase == now));
        }
        gauge(text, "seqd_ready", "1 when /readyz answers 200.", u64::from(self.ready()));
        gauge(text, "seqd_healthy", "1 when /healthz answers 200.", u64::from(self.healthy()));
    }
}

fn family(text: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(text: &mut String, name: &str, help: &str, value: u64) {
    family(text, name, "gauge", help);
    let _ = writeln!(text, "{name} {value}");
}

fn pipeline_text(text: &mut String, stats: &PipelineStats) {
    let load = |mark: &std::sync::atomic::AtomicU64| mark.load(Ordering::Acquire);
    let (durable, applied) = (load(&stats.durable_seq), load(&stats.applied_seq));
    gauge(text, "seqd_durable_seq", "Highest input sequence that is durable.", durable);
    gauge(text, "seqd_applied_seq", "Highest sequence applied by the processor.", applied);
    gauge(text, "seqd_events_logged_seq", "Highest sequence written to the event log.", load(&stats.events_logged_seq));
    gauge(text, "seqd_delivered_seq", "Highest sequence whose result was delivered.", load(&stats.delivered_seq));
    gauge(text, "seqd_journal_lag_commands", "Applied but not yet durable commands.", applied.saturating_sub(durable));
    gauge(
        text,
        "seqd_pipeline_failed",
        "1 once a pipeline thread failed or stalled.",
        u64::from(stats.failure().is_some()),
    );
    ring_text(text, stats);
    stats.apply_latency.write_family(
        text,
        "seqd_apply_duration_seconds",
        &format!("Engine::apply of one command, timed on the processor for one command in {APPLY_SAMPLE_EVERY}."),
        "",
    );
    stats.journal_commit_latency.write_family(
        text,
        "seqd_journal_commit_duration_seconds",
        "The journaler's commit of one batch (group commit: write and, under fsync durability, sync).",
        "",
    );
    stats.round_trip_latency.write_family(
        text,
        "seqd_gateway_round_trip_seconds",
        "Per command: from the gateway receiving it to its result handed to the connection.",
        "",
    );
    let name = "seqd_commands_rejected_total";
    family(text, name, "counter", "Commands the engine rejected, by reason (docs/PROTOCOL.md reject codes).");
    for (reason, count) in stats.rejects.counts() {
        let _ = writeln!(text, "{name}{{reason=\"{}\"}} {count}", snake_case(&format!("{reason:?}")));
    }
}

/// Slots in use in each ring: published and not yet finished by its slowest reader.
fn ring_text(text: &mut String, stats: &PipelineStats) {
    let [journaler, event_log, responder, processor] = health::progress(stats);
    let input = journaler.queued.max(processor.queued);
    let output = event_log.queued.max(responder.queued);
    family(text, "seqd_ring_slots", "gauge", "Slots per ring (pipeline.ring_size).");
    let size = stats.ring_slots.load(Ordering::Relaxed);
    let _ = writeln!(text, "seqd_ring_slots{{ring=\"input\"}} {size}\nseqd_ring_slots{{ring=\"output\"}} {size}");
    family(text, "seqd_ring_occupied_slots", "gauge", "Slots published and not yet finished by every reader.");
    let _ = writeln!(text, "seqd_ring_occupied_slots{{ring=\"input\"}} {input}");
    let _ = writeln!(text, "seqd_ring_occupied_slots{{ring=\"output\"}} {output}");
}

fn gateway_text(text: &mut String, daemon: &Observed) {
    gauge(text, "seqd_gateway_connections", "Open client connections.", daemon.router.connections() as u64);
    text.push_str(&daemon.refusals.metrics_text());
}

/// Journal sizes, free disk and snapshots: read from the file system at scrape time
/// (`storage::retention::disk_usage`: a directory listing and a `statvfs`).
fn storage_text(text: &mut String, data_dir: &DataDir, snapshots: &SnapshotStats) {
    // A failed listing or statvfs leaves the figures out rather than showing 0 (which would
    // page someone); the retention thread logs the error.
    if let Ok(usage) = disk_usage(data_dir) {
        // The parts of long event lists (events/parts/) are event-log segments too.
        let parts = segments(&crate::storage::event_log::parts_dir(&data_dir.events())).unwrap_or_default();
        let parts_bytes: u64 = parts.iter().map(|s| s.len_bytes).sum();
        family(text, "seqd_journal_bytes", "gauge", "Bytes of the journal's segment files (preallocated).");
        let _ = writeln!(text, "seqd_journal_bytes{{journal=\"input\"}} {}", usage.input_bytes);
        let _ = writeln!(text, "seqd_journal_bytes{{journal=\"events\"}} {}", usage.events_bytes + parts_bytes);
        family(text, "seqd_journal_segments", "gauge", "Segment files of the journal.");
        let _ = writeln!(text, "seqd_journal_segments{{journal=\"input\"}} {}", usage.input_segments);
        let _ = writeln!(text, "seqd_journal_segments{{journal=\"events\"}} {}", usage.events_segments + parts.len());
        let free = usage.disk_free_bytes;
        gauge(text, "seqd_disk_free_bytes", "Bytes free for seqd on the data directory's file system.", free);
        gauge(text, "seqd_disk_size_bytes", "Size of the data directory's file system.", usage.disk_size_bytes);
    }
    let load = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
    gauge(
        text,
        "seqd_snapshot_last_success_timestamp_seconds",
        "When the newest snapshot was written, Unix seconds (0: none).",
        load(&snapshots.last_success_unix_s),
    );
    gauge(text, "seqd_snapshot_last_seq", "Sequence of the newest snapshot.", load(&snapshots.last_seq));
    family(text, "seqd_snapshot_last_duration_seconds", "gauge", "How long the last background snapshot took.");
    let _ = writeln!(text, "seqd_snapshot_last_duration_seconds {}", load(&snapshots.last_duration_ns) as f64 / 1e9);
    family(text, "seqd_snapshots_written_total", "counter", "Background snapshots written since the start.");
    let _ = writeln!(text, "seqd_snapshots_written_total {}", load(&snapshots.written));
    family(text, "seqd_snapshot_failures_total", "counter", "Background snapshots that failed (retried).");
    let _ = writeln!(text, "seqd_snapshot_failures_total {}", load(&snapshots.failed));
}

/// `InsufficientFunds` -> `insufficient_funds`, for label values.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Binds the endpoint's listener (before recovery, so a bad address fails the start at once).
pub async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("metrics listen {addr}: {e}"))
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the runtime ends; anything else is 404.
pub async fn serve(listener: tokio::net::TcpListener, endpoint: Arc<Endpoint>) {
    while let Ok((mut socket, _)) = listener.accept().await {
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let read = socket.read(&mut request).await.unwrap_or(0);
            let (status, body) = respond(&endpoint, request_path(&request[..read]));
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}

/// The path of `GET <path> HTTP/1.x`, without a query string; `None` for anything else.
fn request_path(request: &[u8]) -> Option<&str> {
    let line = std::str::from_utf8(request).ok()?.lines().next()?;
    let mut words = line.split(' ');
    let (method, target) = (words.next()?, words.next()?);
    (method == "GET").then(|| target.split('?').next().unwrap_or(target))
}

fn respond(endpoint: &Endpoint, path: Option<&str>) -> (&'static str, String) {
    let verdict = |ok: bool| {
        if ok {
            ("200 OK", "ok\n".to_string())
        } else {
            ("503 Service Unavailable", format!("{}\n", endpoint.phase().label()))
        }
    };
    match path {
        Some("/metrics") => ("200 OK", endpoint.metrics_text()),
        Some("/healthz") => verdict(endpoint.healthy()),
        Some("/readyz") => verdict(endpoint.ready()),
        Some("/cluster") => match endpoint.observed().and_then(|d| d.cluster.as_ref()) {
            Some(cluster) => ("200 OK", cluster.status_json() + "\n"),
            None => ("404 Not Found", "not a cluster node (or still recovering)\n".to_string()),
        },
        Some(_) => ("404 Not Found", "not found: /metrics, /healthz, /readyz, /cluster\n".to_string()),
        None => ("400 Bad Request", "GET only\n".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_is_200_only_while_serving_and_healthz_until_a_failure() {
        let endpoint = Endpoint::for_replicators(vec![ReplicatorStats::new("tidb")]);
        let codes = |e: &Endpoint| (respond(e, Some("/healthz")).0, respond(e, Some("/readyz")).0);
        assert_eq!(codes(&endpoint), ("200 OK", "503 Service Unavailable"), "starting");
        endpoint.set_phase(Phase::Serving);
        assert_eq!(codes(&endpoint), ("200 OK", "200 OK"));
        endpoint.set_phase(Phase::Stopping);
        assert_eq!(codes(&endpoint), ("200 OK", "503 Service Unavailable"));
        endpoint.set_phase(Phase::Failed);
        assert_eq!(codes(&endpoint), ("503 Service Unavailable", "503 Service Unavailable"));
    }

    #[test]
    fn a_replicator_stopped_on_an_error_makes_the_process_unhealthy() {
        let stats = ReplicatorStats::new("clickhouse");
        let endpoint = Endpoint::for_replicators(vec![stats.clone()]);
        endpoint.set_phase(Phase::Serving);
        assert!(endpoint.ready());
        stats.stopped_on_error.store(true, Ordering::Release);
        assert!(!endpoint.healthy() && !endpoint.ready());
    }

    #[test]
    fn requests_are_routed_by_path_and_only_get_is_served() {
        assert_eq!(request_path(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Some("/metrics"));
        assert_eq!(request_path(b"GET /readyz?verbose=1 HTTP/1.1\r\n\r\n"), Some("/readyz"));
        assert_eq!(request_path(b"POST /metrics HTTP/1.1\r\n\r\n"), None);
        assert_eq!(request_path(b"\xff\xfe"), None);
        let endpoint = Endpoint::for_daemon();
        assert_eq!(respond(&endpoint, Some("/nope")).0, "404 Not Found");
        assert_eq!(respond(&endpoint, None).0, "400 Bad Request");
        let page = respond(&endpoint, Some("/metrics")).1;
        assert!(page.contains("seqd_phase{phase=\"starting\"} 1\n"), "{page}");
        assert!(page.contains("process=\"run\"} 1\n"), "{page}");
    }

    #[test]
    fn reject_reasons_become_snake_case_labels() {
        assert_eq!(snake_case("InsufficientFunds"), "insufficient_funds");
        assert_eq!(snake_case("UnknownAsset"), "unknown_asset");
    }
}
