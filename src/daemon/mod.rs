//! `seqd run`: recovery, the pipeline, the QUIC gateway, metrics, systemd readiness, status
//! and watchdog, and graceful shutdown (stop accepting, drain the rings, make the journal
//! durable, write a snapshot).
//!
//! A supervisor on the gateway's runtime checks the pipeline every 100 ms: a thread that
//! failed (panic, error) or stalled (work queued and no progress for `pipeline.stall_limit_ms`),
//! or a gateway accept loop that ended, stops the watchdog petting and the daemon: one error
//! line, `STOPPING=1` and `STATUS=` naming the cause, and exit code 4. Nothing is drained and
//! no snapshot is written then: the state a failed thread leaves is not trusted.

use crate::config::Config;
use crate::gateway::grants::AccountDirectory;
use crate::gateway::refusals::Refusals;
use crate::gateway::server::{Gateway, GatewayResponder, GatewaySettings, Router};
use crate::gateway::tls;
use crate::pipeline::fault;
use crate::pipeline::health::{self, StallDetector};
use crate::pipeline::{Pipeline, PipelineError, PipelineStats};
use crate::protocol::{GatewayError, LimitsConfig};
use crate::replicate::service::{Replicators, Which};
use crate::replicate::{ReplicatorStats, RunOptions};
use crate::storage::replay::{replay, DataDir, ReplayError, ReplayOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why `seqd run` ended without a clean stop; each has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Could not start: configuration, data directory, certificates, a journal recovery error.
    #[error("{0}")]
    Start(String),
    /// Recovery met a journaled command whose processing panics. Restarting cannot help.
    #[error("{0}")]
    PoisonCommand(String),
    /// A pipeline thread or the gateway failed or stalled while serving.
    #[error("{0}")]
    Failed(String),
}

impl RunError {
    /// 1: could not start; 3: a poison command in the journal (the systemd unit does not
    /// restart on it, `RestartPreventExitStatus=3`); 4: failed while serving (restarted).
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Start(_) => 1,
            RunError::PoisonCommand(_) => 3,
            RunError::Failed(_) => 4,
        }
    }
}

impl From<String> for RunError {
    fn from(message: String) -> RunError {
        RunError::Start(message)
    }
}

/// How often the supervisor looks at the pipeline.
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(100);
/// How often `STATUS=` is refreshed while serving.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait for room in systemd's notification queue, per message.
const NOTIFY_SEND_TIMEOUT: Duration = Duration::from_millis(100);
/// How long a failing daemon waits for its QUIC connections to take the close.
const CLOSE_ON_FAILURE_WAIT: Duration = Duration::from_secs(1);

/// Runs the daemon until SIGTERM or SIGINT (`Ok`), or until a pipeline thread fails or stalls.
/// Prints `seqd: listening on ADDR` on stdout once it serves (scripts and tests read the port
/// from it when the configured port is 0).
pub fn run(config: Config) -> Result<(), RunError> {
    #[cfg(feature = "fault-injection")]
    tracing::warn!("this is a test build: SEQD_FAULT_* environment variables inject faults (src/pipeline/fault.rs)");
    let data_dir = DataDir::new(&config.data.dir);
    std::fs::create_dir_all(&config.data.dir).map_err(|e| format!("data dir {}: {e}", config.data.dir.display()))?;
    let server_config = server_tls(&config)?;
    let pipeline_config = config.pipeline_config().map_err(|e| e.to_string())?;

    let router = Arc::new(Router::default());
    let mut directory = None;
    systemd_notify(&status_line("recovering"));
    let (pipeline, recovery) = Pipeline::start_with(&data_dir, pipeline_config, |engine| {
        let mirror = Arc::new(AccountDirectory::from_engine(engine));
        directory = Some(mirror.clone());
        GatewayResponder { router: router.clone(), directory: mirror }
    })
    .map_err(|e| refuse(&config, e))?;
    tracing::info!(
        last_seq = recovery.input.last_seq,
        snapshot = ?recovery.snapshot_seq,
        replayed = recovery.commands_replayed,
        "recovered"
    );
    let settings = GatewaySettings {
        max_frame_bytes: config.gateway.max_frame_bytes,
        limits: LimitsConfig {
            max_in_flight: config.gateway.max_in_flight,
            rate_per_sec: config.gateway.rate_per_sec,
            burst: config.gateway.rate_per_sec.max(1),
        },
        principals: config.principals.clone(),
    };
    let directory = directory.expect("the responder was built");
    let gateway = Arc::new(Gateway::new(settings, router.clone(), directory, pipeline.submitter()));
    let stats = pipeline.stats();
    let stop_snapshots = Arc::new(AtomicBool::new(false));
    let snapshotter = spawn_snapshotter(
        data_dir.clone(),
        config.snapshots.every_commands,
        config.snapshots.keep,
        stats.clone(),
        stop_snapshots.clone(),
    );

    // The replicators tail the event log on their own threads; they never hold up the pipeline.
    let events_dir = data_dir.events();
    let replicators = Replicators::start(&config.replicate, Which::Enabled, &events_dir, &RunOptions::new(&events_dir));
    let observed = Observed {
        pipeline: stats.clone(),
        router: router.clone(),
        refusals: gateway.refusals.clone(),
        replicators: replicators.stats(),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("seqd-gateway")
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let stop = runtime.block_on(serve(&config, server_config, gateway.clone(), Arc::new(observed)))?;
    drop(gateway);
    stop_snapshots.store(true, Ordering::Release);
    if let Stop::Failed(reason) = stop {
        // No drain (a stuck thread would hold it forever), no snapshot (the engine a failed
        // thread leaves is not trusted): what is durable is in the journal, and the next
        // start recovers from there. The threads end with the process.
        runtime.shutdown_timeout(CLOSE_ON_FAILURE_WAIT);
        return Err(RunError::Failed(format!("pipeline failed: {reason}")));
    }
    runtime.shutdown_timeout(Duration::from_secs(5));

    if let Some(handle) = snapshotter {
        let _ = handle.join();
    }
    tracing::info!("draining the pipeline");
    let engine = pipeline.shutdown().map_err(|e| RunError::Failed(format!("pipeline failed: {e}")))?;
    // The mirrors' checkpoints are in the databases: what they have not replicated yet is
    // caught up at the next start, so there is nothing to drain here.
    for (name, result) in replicators.stop() {
        if let Err(e) = result {
            tracing::warn!(sink = %name, error = %e, "replicator had stopped with an error");
        }
    }
    let path = data_dir.snapshots().write(&engine).map_err(|e| e.to_string())?;
    data_dir.snapshots().prune(config.snapshots.keep).map_err(|e| e.to_string())?;
    tracing::info!(seq = engine.last_seq(), snapshot = %path.display(), "stopped");
    systemd_notify(&status_line(&format!("stopped at seq {}", engine.last_seq())));
    Ok(())
}

/// The error for a pipeline that did not start. A poison command gets the operator's way out.
fn refuse(config: &Config, error: PipelineError) -> RunError {
    let Some(seq) = error.poison_seq() else {
        return RunError::Start(error.to_string());
    };
    let message = format!(
        "recovery refused: {error}. This is a bug in seqd: keep a copy of the data directory for \
         the report. Command {seq} and every later one were never answered (the processor stopped \
         there); to start without them, stop here and run `seqd journal truncate {} --before {seq}` \
         (README.md, Operations)",
        config.data.dir.display()
    );
    tracing::error!("{message}");
    systemd_notify(&status_line(&format!("refused to start: command {seq} panics when applied")));
    RunError::PoisonCommand(message)
}

/// Every `every_commands` durable commands, rebuilds a replica of the state from the newest
/// snapshot and the journal (on its own thread, never touching the processor) and writes it as
/// the next snapshot. A failed attempt (for example a read racing the journal's tail) is
/// logged and retried on the next round; a panic, or a command that panics in the replica, is
/// a bug and fails the pipeline.
fn spawn_snapshotter(
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

/// The server's TLS configuration from `certs_dir`. A missing file is an error naming it;
/// development certificates are generated only when the configuration asks
/// (`gateway.dev_certs`, set by the embedded default), and serving with them is always logged.
fn server_tls(config: &Config) -> Result<quinn::ServerConfig, String> {
    let dir = &config.gateway.certs_dir;
    let (server_config, origin) =
        tls::load_server_config(dir, config.gateway.dev_certs).map_err(|e| format!("TLS certificates: {e}"))?;
    if config.gateway.dev_certs {
        let generated = origin == tls::ServerCertificates::GeneratedForDevelopment;
        tracing::warn!(
            dir = %dir.display(),
            generated,
            "serving with DEVELOPMENT certificates (gateway.dev_certs = true); never in production"
        );
    }
    Ok(server_config)
}

/// Why the serving loop ended.
#[derive(Debug)]
enum Stop {
    /// SIGTERM or SIGINT: the graceful path.
    Signal,
    /// A pipeline thread failed or stalled, or the gateway's accept loop ended.
    Failed(String),
}

/// What the metrics endpoint reports on.
struct Observed {
    pipeline: Arc<PipelineStats>,
    router: Arc<Router>,
    refusals: Arc<Refusals>,
    replicators: Vec<Arc<ReplicatorStats>>,
}

async fn serve(
    config: &Config,
    server_config: quinn::ServerConfig,
    gateway: Arc<Gateway>,
    observed: Arc<Observed>,
) -> Result<Stop, String> {
    let endpoint = quinn::Endpoint::server(server_config, config.gateway.listen).map_err(|e| format!("listen: {e}"))?;
    let addr = endpoint.local_addr().map_err(|e| e.to_string())?;
    let metrics =
        tokio::net::TcpListener::bind(config.metrics.listen).await.map_err(|e| format!("metrics listen: {e}"))?;
    let metrics_addr = metrics.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(serve_metrics(metrics, observed.clone()));
    let accept_loop = tokio::spawn(gateway.clone().serve(endpoint.clone()));
    println!("seqd: listening on {addr} (metrics on http://{metrics_addr}/metrics)");
    tracing::info!(%addr, %metrics_addr, "serving");
    systemd_notify("READY=1");

    let stall_limit = Duration::from_millis(config.pipeline.stall_limit_ms);
    let stop = supervise(&observed, stall_limit, accept_loop).await;
    systemd_notify("STOPPING=1");
    gateway.stop_accepting();
    endpoint.close(u32::from(GatewayError::ShuttingDown.code()).into(), b"shutting down");
    match &stop {
        Stop::Signal => {
            tracing::info!("shutting down: closing connections");
            systemd_notify(&status_line("stopping: draining the pipeline"));
            endpoint.wait_idle().await;
        }
        Stop::Failed(reason) => {
            systemd_notify(&status_line(&format!("failed: {reason}")));
            let _ = tokio::time::timeout(CLOSE_ON_FAILURE_WAIT, endpoint.wait_idle()).await;
        }
    }
    Ok(stop)
}

/// Until SIGTERM or SIGINT, or a failure: checks the pipeline every `SUPERVISE_INTERVAL`, pets
/// systemd's watchdog while it is healthy and keeps `STATUS=` current. The watchdog is petted
/// from this loop only, so a failed or stalled pipeline, or a blocked gateway runtime, stops
/// the petting and systemd restarts the daemon.
async fn supervise(observed: &Observed, stall_limit: Duration, mut accept_loop: tokio::task::JoinHandle<()>) -> Stop {
    let stats = &*observed.pipeline;
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    let mut tick = tokio::time::interval(SUPERVISE_INTERVAL);
    let mut stalls = StallDetector::new(stall_limit);
    let watchdog_interval = watchdog_interval();
    let (mut last_pet, mut last_status) = (Instant::now(), None::<(Instant, String)>);
    loop {
        tokio::select! {
            _ = terminate.recv() => return Stop::Signal,
            _ = tokio::signal::ctrl_c() => return Stop::Signal,
            ended = &mut accept_loop => {
                let what = match ended {
                    Ok(()) => "ended".to_string(),
                    Err(e) => format!("ended: {e}"),
                };
                stats.fail("gateway accept loop", &what);
                return Stop::Failed(stats.failure().unwrap_or("gateway accept loop ended").to_string());
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if let Some(stall) = stalls.observe(health::progress(stats), now) {
                    stats.fail(stall.thread, &stall.what);
                }
                if let Some(reason) = stats.failure() {
                    return Stop::Failed(reason.to_string());
                }
                if watchdog_interval.is_some_and(|interval| now.duration_since(last_pet) >= interval) {
                    systemd_notify("WATCHDOG=1");
                    last_pet = now;
                }
                let status = status_line(&format!(
                    "serving: seq {}, {} connections",
                    stats.durable_seq.load(Ordering::Acquire),
                    observed.router.connections()
                ));
                let due = last_status.as_ref().is_none_or(|(at, sent)| *sent != status && now.duration_since(*at) >= STATUS_INTERVAL);
                if due {
                    systemd_notify(&status);
                    last_status = Some((now, status));
                }
            }
        }
    }
}

fn status_line(status: &str) -> String {
    format!("STATUS={status}")
}

/// Prometheus text exposition of the pipeline's and the replicators' counters.
fn metrics_text(observed: &Observed) -> String {
    let (stats, router) = (&*observed.pipeline, &*observed.router);
    let durable = stats.durable_seq.load(Ordering::Acquire);
    let applied = stats.applied_seq.load(Ordering::Acquire);
    let logged = stats.events_logged_seq.load(Ordering::Acquire);
    let delivered = stats.delivered_seq.load(Ordering::Acquire);
    let mut text = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, value: u64| {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
    };
    metric("seqd_durable_seq", "Highest input sequence that is durable.", "counter", durable);
    metric("seqd_applied_seq", "Highest sequence applied by the processor.", "counter", applied);
    metric("seqd_events_logged_seq", "Highest sequence written to the event log.", "counter", logged);
    metric("seqd_delivered_seq", "Highest sequence delivered to clients.", "counter", delivered);
    metric(
        "seqd_journal_lag_commands",
        "Applied but not yet durable commands.",
        "gauge",
        applied.saturating_sub(durable),
    );
    metric("seqd_connections", "Open client connections.", "gauge", router.connections() as u64);
    metric(
        "seqd_pipeline_failed",
        "1 if a pipeline thread failed.",
        "gauge",
        stats.failed.load(Ordering::Acquire) as u64,
    );
    text.push_str(&observed.refusals.metrics_text());
    text.push_str(&crate::replicate::service::metrics_text(&observed.replicators));
    text
}

async fn serve_metrics(listener: tokio::net::TcpListener, observed: Arc<Observed>) {
    while let Ok((mut socket, _)) = listener.accept().await {
        let body = metrics_text(&observed);
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}

/// systemd's notification socket (`NOTIFY_SOCKET`), opened once.
struct Notifier {
    socket: std::os::unix::net::UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
}

impl Notifier {
    fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?.to_string_lossy().into_owned();
        let addr = match path.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            }
            None => std::os::unix::net::SocketAddr::from_pathname(&path),
        };
        let opened = addr.and_then(|addr| {
            let socket = std::os::unix::net::UnixDatagram::unbound()?;
            // A full receive queue (a slow reader) must not hold up the supervisor for long.
            socket.set_write_timeout(Some(NOTIFY_SEND_TIMEOUT))?;
            Ok(Notifier { socket, addr })
        });
        opened.map_err(|e| tracing::warn!("sd_notify: {path}: {e}")).ok()
    }
}

/// Sends a state line to systemd when run as a `Type=notify` service (no-op otherwise).
fn systemd_notify(state: &str) {
    static NOTIFIER: OnceLock<Option<Notifier>> = OnceLock::new();
    let Some(notifier) = NOTIFIER.get_or_init(Notifier::from_env) else { return };
    if let Err(e) = notifier.socket.send_to_addr(state.as_bytes(), &notifier.addr) {
        tracing::warn!("sd_notify {state}: {e}");
    }
}

/// Half of systemd's watchdog timeout (`WATCHDOG_USEC`), when the watchdog is on for this
/// process (`WATCHDOG_PID`, if set, is ours).
fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok()?.parse::<u64>().ok()?;
    let for_us =
        std::env::var("WATCHDOG_PID").ok().is_none_or(|pid| pid.parse::<u32>().ok() == Some(std::process::id()));
    (for_us && usec > 0).then(|| Duration::from_micros(usec / 2))
}
