//! `seqd run`: recovery, the pipeline, the QUIC gateway, metrics, systemd readiness, status
//! and watchdog, and graceful shutdown (stop accepting, drain the rings, make the journal
//! durable, write a snapshot).
//!
//! A supervisor on the gateway's runtime checks the pipeline every 100 ms: a thread that
//! failed (panic, error) or stalled (work queued and no progress for `pipeline.stall_limit_ms`),
//! or a gateway accept loop that ended, stops the watchdog petting and the daemon: one error
//! line, `STOPPING=1` and `STATUS=` naming the cause, and exit code 4. Nothing is drained and
//! no snapshot is written then: the state a failed thread leaves is not trusted.
//!
//! Files: `supervisor.rs` (the health loop and the watchdog), `notify.rs` (`sd_notify`),
//! `metrics.rs` (the HTTP endpoint: Prometheus, `/healthz`, `/readyz`; also served by `seqd
//! replicate`), `snapshotter.rs` (background snapshots), `retention.rs` (the free-disk warning
//! and journal archiving); this file starts and stops everything.

pub mod metrics;
mod notify;
mod retention;
mod snapshotter;
mod supervisor;

use metrics::{Endpoint, Observed, Phase};
use notify::{status_line, systemd_notify};
use retention::spawn_retention;
use snapshotter::{spawn_snapshotter, SnapshotStats};
use supervisor::{supervise, Stop};

use crate::cluster::node::{Recovered, Refusal};
use crate::cluster::{ClusterNode, StartArgs};
use crate::config::{ClusterSection, Config};
use crate::gateway::grants::AccountDirectory;
use crate::gateway::server::{not_leader, Gateway, GatewayResponder, GatewaySettings, Router};
use crate::gateway::tls;
use crate::pipeline::{Pipeline, PipelineError};
use crate::protocol::{GatewayError, LimitsConfig, Message};
use crate::replicate::service::{Replicators, Which};
use crate::replicate::RunOptions;
use crate::storage::replay::DataDir;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

    // The runtime and the ports first: an address in use stops the start-up now, not after a
    // long recovery. The HTTP endpoint serves at once, so `/readyz` says 503 while recovering;
    // QUIC connections wait in the socket's queue until serving starts.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("seqd-gateway")
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let Ports { endpoint: quic, metrics: metrics_listener } = bind_ports(&runtime, &config, server_config)?;
    let endpoint = Endpoint::for_daemon();
    let metrics_addr = metrics_listener.local_addr().map_err(|e| e.to_string())?;
    runtime.spawn(metrics::serve(metrics_listener, endpoint.clone()));

    let router = Arc::new(Router::default());
    let mut directory = None;
    let mut recovered = None;
    systemd_notify(&status_line("recovering"));
    tracing::info!(
        data_dir = %config.data.dir.display(),
        "recovering: the newest usable snapshot, then the input journal after it"
    );
    crate::pipeline::fault::before_recovery();
    if config.cluster.is_some() {
        // A snapshot a follower received from the leader before it restarted (cluster::catch_up).
        let durability = config.durability().map_err(|e| e.to_string())?;
        if let Some(seq) =
            crate::cluster::catch_up::install_staged(&data_dir, config.journal.segment_size_bytes, durability)
                .map_err(|e| format!("installing the leader's snapshot: {e}"))?
        {
            tracing::warn!(seq, "cluster: this node now starts from the leader's snapshot");
        }
    }
    let (pipeline, recovery) = Pipeline::start_with(&data_dir, pipeline_config, |engine| {
        let mirror = Arc::new(AccountDirectory::from_engine(engine));
        directory = Some(mirror.clone());
        recovered = Some(Recovered { seq: engine.last_seq(), timestamp_ns: engine.last_timestamp_ns() });
        GatewayResponder { router: router.clone(), directory: mirror }
    })
    .map_err(|e| {
        endpoint.set_phase(Phase::Failed);
        refuse(&config, e)
    })?;
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
    let stats = pipeline.stats();
    let cluster = match &config.cluster {
        Some(cluster) => {
            let recovered = recovered.expect("the responder was built");
            Some(start_cluster_node(&config, cluster, recovered, &pipeline, &router).inspect_err(|_| {
                endpoint.set_phase(Phase::Failed);
                stats.fail("consensus", "did not start");
            })?)
        }
        None => None,
    };
    let submitter = match &cluster {
        Some(node) => pipeline.submitter().with_route(node.route()),
        None => pipeline.submitter(),
    };
    let gateway = Arc::new(Gateway::new(settings, router.clone(), directory, submitter));
    let stop_snapshots = Arc::new(AtomicBool::new(false));
    let snapshot_stats = Arc::new(SnapshotStats::from_disk(&data_dir));
    let snapshotter = spawn_snapshotter(
        data_dir.clone(),
        config.snapshots.every_commands,
        config.snapshots.keep,
        stats.clone(),
        snapshot_stats.clone(),
        stop_snapshots.clone(),
    );

    // The replicators tail the event log on their own threads; they never hold up the pipeline.
    let events_dir = data_dir.events();
    let replicators = Replicators::start(&config.replicate, Which::Enabled, &events_dir, &RunOptions::new(&events_dir));
    let retention =
        spawn_retention(data_dir.clone(), config.retention.clone(), replicators.stats(), stop_snapshots.clone());
    endpoint.observe(Observed {
        pipeline: stats.clone(),
        router: router.clone(),
        refusals: gateway.refusals.clone(),
        replicators: replicators.stats(),
        snapshots: snapshot_stats,
        data_dir: data_dir.clone(),
        cluster: cluster.as_ref().map(ClusterNode::shared),
    });

    let serving = Serving { quic, gateway: gateway.clone(), endpoint, metrics_addr };
    let stop = runtime.block_on(serve(&config, serving))?;
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
    let _ = retention.join();
    if let Some(node) = cluster {
        // Its submitter goes with it, so the pipeline can drain.
        node.stop();
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
/// Starts the consensus thread and the node transport over the recovered pipeline. Commands
/// it will never see committed as its own are answered `NotLeader` through the router.
fn start_cluster_node(
    config: &Config,
    cluster: &ClusterSection,
    recovered: Recovered,
    pipeline: &Pipeline,
    router: &Arc<Router>,
) -> Result<ClusterNode, RunError> {
    let router = router.clone();
    let refuse = Box::new(move |origin, refusal| {
        let message = match refusal {
            Refusal::NotLeader(leader) => not_leader(leader.as_deref()),
            Refusal::Busy => Message::error(GatewayError::Busy, "the cluster cannot commit now; retry"),
        };
        router.refuse(origin, message)
    });
    let node = ClusterNode::start(StartArgs {
        cluster,
        data_root: &config.data.dir,
        segment_size_bytes: config.journal.segment_size_bytes,
        durability: config.durability().map_err(|e| e.to_string())?,
        recovered,
        submitter: pipeline.submitter(),
        stats: pipeline.stats(),
        refuse,
    })?;
    tracing::info!(
        node = cluster.node_id,
        nodes = cluster.nodes.len(),
        node_address = %cluster.this_node().node_address,
        "cluster node started"
    );
    Ok(node)
}

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

/// The QUIC endpoint and the metrics listener, bound.
struct Ports {
    endpoint: quinn::Endpoint,
    metrics: tokio::net::TcpListener,
}

/// Binds both ports on `runtime`; an error names the address (`address in use` alone does not
/// say which of the two).
fn bind_ports(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    server_config: quinn::ServerConfig,
) -> Result<Ports, String> {
    let _context = runtime.enter();
    let (listen, metrics_listen) = (config.gateway.listen, config.metrics.listen);
    let endpoint = quinn::Endpoint::server(server_config, listen)
        .map_err(|e| format!("gateway.listen {listen} (QUIC, UDP): {e}"))?;
    let metrics = std::net::TcpListener::bind(metrics_listen)
        .and_then(|listener| {
            listener.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(listener)
        })
        .map_err(|e| format!("metrics.listen {metrics_listen} (HTTP, TCP): {e}"))?;
    Ok(Ports { endpoint, metrics })
}

/// What `serve` runs: the bound QUIC endpoint, and the HTTP endpoint already serving.
struct Serving {
    quic: quinn::Endpoint,
    gateway: Arc<Gateway>,
    endpoint: Arc<Endpoint>,
    metrics_addr: std::net::SocketAddr,
}

async fn serve(config: &Config, serving: Serving) -> Result<Stop, String> {
    let Serving { quic: endpoint, gateway, endpoint: http, metrics_addr } = serving;
    let addr = endpoint.local_addr().map_err(|e| e.to_string())?;
    let accept_loop = tokio::spawn(gateway.clone().serve(endpoint.clone()));
    println!("seqd: listening on {addr} (metrics on http://{metrics_addr}/metrics)");
    tracing::info!(%addr, %metrics_addr, "serving");
    systemd_notify("READY=1");
    http.set_phase(Phase::Serving);

    let stall_limit = Duration::from_millis(config.pipeline.stall_limit_ms);
    let observed = http.observed().ok_or("serving before recovery")?;
    let stop = supervise(observed, stall_limit, accept_loop).await;
    http.set_phase(if matches!(stop, Stop::Failed(_)) { Phase::Failed } else { Phase::Stopping });
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
