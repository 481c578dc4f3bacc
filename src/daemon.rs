//! `seqd run`: recovery, the pipeline, the QUIC gateway, metrics, systemd readiness and
//! watchdog, and graceful shutdown (stop accepting, drain the rings, make the journal durable,
//! write a snapshot).

use crate::config::Config;
use crate::gateway::grants::AccountDirectory;
use crate::gateway::refusals::Refusals;
use crate::gateway::server::{Gateway, GatewayResponder, GatewaySettings, Router};
use crate::gateway::tls;
use crate::pipeline::{Pipeline, PipelineStats};
use crate::protocol::{GatewayError, LimitsConfig};
use crate::replay::{replay, DataDir, ReplayOptions};
use crate::replicate::service::{Replicators, Which};
use crate::replicate::{ReplicatorStats, RunOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs the daemon until SIGTERM or SIGINT. Prints `seqd: listening on ADDR` on stdout once it
/// serves (scripts and tests read the port from it when the configured port is 0).
pub fn run(config: Config) -> Result<(), String> {
    let data_dir = DataDir::new(&config.data.dir);
    std::fs::create_dir_all(&config.data.dir).map_err(|e| format!("data dir {}: {e}", config.data.dir.display()))?;
    let server_config = server_tls(&config)?;
    let pipeline_config = config.pipeline_config().map_err(|e| e.to_string())?;

    let router = Arc::new(Router::default());
    let mut directory = None;
    let (pipeline, recovery) = Pipeline::start_with(&data_dir, pipeline_config, |engine| {
        let mirror = Arc::new(AccountDirectory::from_engine(engine));
        directory = Some(mirror.clone());
        GatewayResponder { router: router.clone(), directory: mirror }
    })
    .map_err(|e| e.to_string())?;
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
    runtime.block_on(serve(&config, server_config, gateway.clone(), Arc::new(observed)))?;
    drop(gateway);
    runtime.shutdown_timeout(Duration::from_secs(5));

    stop_snapshots.store(true, Ordering::Release);
    if let Some(handle) = snapshotter {
        let _ = handle.join();
    }
    tracing::info!("draining the pipeline");
    let engine = pipeline.shutdown()?;
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
    Ok(())
}

/// Every `every_commands` durable commands, rebuilds a replica of the state from the newest
/// snapshot and the journal (on its own thread, never touching the processor) and writes it as
/// the next snapshot. A failed attempt (for example a read racing the journal's tail) is
/// logged and retried on the next round.
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
            let written = replay(&data_dir, options)
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
    Some(std::thread::Builder::new().name("seqd-snapshotter".into()).spawn(body).expect("spawn the snapshotter"))
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
) -> Result<(), String> {
    let stats = observed.pipeline.clone();
    let endpoint = quinn::Endpoint::server(server_config, config.gateway.listen).map_err(|e| format!("listen: {e}"))?;
    let addr = endpoint.local_addr().map_err(|e| e.to_string())?;
    let metrics =
        tokio::net::TcpListener::bind(config.metrics.listen).await.map_err(|e| format!("metrics listen: {e}"))?;
    let metrics_addr = metrics.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(serve_metrics(metrics, observed));
    tokio::spawn(gateway.clone().serve(endpoint.clone()));
    println!("seqd: listening on {addr} (metrics on http://{metrics_addr}/metrics)");
    tracing::info!(%addr, %metrics_addr, "serving");
    systemd_notify("READY=1");
    tokio::spawn(watchdog(stats.clone()));

    wait_for_stop(&stats).await;
    tracing::info!("shutting down: closing connections");
    gateway.stop_accepting();
    endpoint.close(u32::from(GatewayError::ShuttingDown.code()).into(), b"shutting down");
    endpoint.wait_idle().await;
    Ok(())
}

/// SIGTERM, SIGINT, or a failed pipeline thread.
async fn wait_for_stop(stats: &PipelineStats) {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    let mut failure_check = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = terminate.recv() => return,
            _ = tokio::signal::ctrl_c() => return,
            _ = failure_check.tick() => {
                if stats.failed.load(Ordering::Acquire) {
                    tracing::error!("a pipeline thread failed; stopping");
                    return;
                }
            }
        }
    }
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

/// Sends a state line to systemd when run as a `Type=notify` service (no-op otherwise).
fn systemd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let socket = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(socket) => socket,
        Err(e) => return tracing::warn!("sd_notify: {e}"),
    };
    let path = path.to_string_lossy().into_owned();
    let sent = if let Some(abstract_name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
    } else {
        socket.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        tracing::warn!("sd_notify {state}: {e}");
    }
}

/// Pets systemd's watchdog at half its interval while the pipeline is healthy, so a failed
/// pipeline thread lets systemd restart the daemon.
async fn watchdog(stats: Arc<PipelineStats>) {
    let Some(usec) = std::env::var("WATCHDOG_USEC").ok().and_then(|v| v.parse::<u64>().ok()) else { return };
    let mut tick = tokio::time::interval(Duration::from_micros(usec / 2));
    loop {
        tick.tick().await;
        if stats.failed.load(Ordering::Acquire) {
            return;
        }
        systemd_notify("WATCHDOG=1");
    }
}
