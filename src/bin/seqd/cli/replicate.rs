//! `seqd replicate` (replicators as their own process) and `seqd reconcile`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use seqd::config::Config;
use seqd::daemon::metrics::{self, Endpoint, Phase};
use seqd::replicate::reconcile::{reconcile, Mirror, Report};
use seqd::replicate::service::{clickhouse_sink, tidb_sink, Replicators, Which};
use seqd::replicate::RunOptions;
use seqd::storage::replay::DataDir;

/// Which mirrors, and where they are: the configuration file's `[replicate]` with overrides.
#[derive(clap::Args)]
pub struct MirrorArgs {
    /// The daemon's TOML configuration (default: the embedded one).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override `data.dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// tidb, clickhouse, both, or enabled (those with `enabled = true` in the configuration).
    #[arg(long, default_value = "enabled")]
    sink: Which,
    /// Override `replicate.tidb.url` (mysql://user:password@host:port/database).
    #[arg(long)]
    tidb_url: Option<String>,
    /// Override `replicate.clickhouse.url`.
    #[arg(long)]
    clickhouse_url: Option<String>,
    /// Override `replicate.clickhouse.database`.
    #[arg(long)]
    clickhouse_database: Option<String>,
}

impl MirrorArgs {
    fn load(&self) -> Result<Config, String> {
        let mut config = Config::load(self.config.as_deref()).map_err(|e| e.to_string())?;
        if let Some(dir) = &self.data_dir {
            config.data.dir = dir.clone();
        }
        if let Some(url) = &self.tidb_url {
            config.replicate.tidb.url = url.clone();
        }
        if let Some(url) = &self.clickhouse_url {
            config.replicate.clickhouse.url = url.clone();
        }
        if let Some(database) = &self.clickhouse_database {
            config.replicate.clickhouse.database = database.clone();
        }
        if !self.sink.tidb(&config.replicate) && !self.sink.clickhouse(&config.replicate) {
            return Err("no mirror selected: pass --sink tidb|clickhouse|both or enable one in the config".into());
        }
        Ok(config)
    }
}

/// Tails the event log into the chosen mirrors until SIGTERM/SIGINT, or until every mirror has
/// reached `until`. The event log may be a copy shipped from the sequencer's machine. With
/// `metrics_listen`, serves the replicators' metrics and health (prints `seqd replicate:
/// metrics on http://ADDR/metrics` once it listens).
pub fn replicate(
    args: &MirrorArgs,
    events: Option<PathBuf>,
    until: Option<u64>,
    metrics_listen: Option<std::net::SocketAddr>,
) -> ExitCode {
    let config = match args.load() {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    let events_dir = events.unwrap_or_else(|| DataDir::new(&config.data.dir).events());
    let mut options = RunOptions::new(&events_dir);
    options.until_seq = until;
    let replicators = Replicators::start(&config.replicate, args.sink, &events_dir, &options);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("runtime: {e}")),
    };
    let endpoint = Endpoint::for_replicators(replicators.stats());
    if let Some(addr) = metrics_listen {
        let listener = match runtime.block_on(metrics::bind(addr)) {
            Ok(listener) => listener,
            Err(e) => {
                replicators.stop();
                return fail(&e);
            }
        };
        match listener.local_addr() {
            Ok(bound) => println!("seqd replicate: metrics on http://{bound}/metrics"),
            Err(e) => return fail(&format!("metrics listen: {e}")),
        }
        runtime.spawn(metrics::serve(listener, endpoint.clone()));
    }
    endpoint.set_phase(Phase::Serving);
    runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = terminate.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = tick.tick() => if replicators.all_finished() { break },
            }
        }
    });
    endpoint.set_phase(Phase::Stopping);
    let stats = replicators.stats();
    let mut failed = false;
    for (name, result) in replicators.stop() {
        let checkpoint = stats
            .iter()
            .find(|s| s.name == name)
            .map_or(0, |s| s.checkpoint_seq.load(std::sync::atomic::Ordering::Relaxed));
        match result {
            Ok(()) => println!("{name}: stopped at checkpoint {checkpoint}"),
            Err(e) => {
                failed = true;
                eprintln!("error: {e}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Compares each chosen mirror with the state rebuilt from the journal at the mirror's
/// checkpoint. Exit status 0 only when every mirror agrees.
pub fn reconcile_command(args: &MirrorArgs, json: bool) -> ExitCode {
    let config = match args.load() {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    let data_dir = DataDir::new(&config.data.dir);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("runtime: {e}")),
    };
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    let mut check = |result: Result<Report, String>| match result {
        Ok(report) => reports.push(report),
        Err(e) => errors.push(e),
    };
    if args.sink.tidb(&config.replicate) {
        check(runtime.block_on(reconcile_one(&data_dir, tidb_sink(&config.replicate.tidb))));
    }
    if args.sink.clickhouse(&config.replicate) {
        check(runtime.block_on(reconcile_one(&data_dir, clickhouse_sink(&config.replicate.clickhouse))));
    }
    for report in &reports {
        for difference in &report.differences {
            println!("{}: {difference}", report.mirror);
        }
        println!(
            "{}: checkpoint {}, {} balances and {} open orders checked: {}",
            report.mirror,
            report.checkpoint_seq,
            report.balances_checked,
            report.open_orders_checked,
            if report.differences.is_empty() {
                "agrees".to_string()
            } else {
                format!("{} differences", report.differences.len())
            }
        );
    }
    for e in &errors {
        eprintln!("error: {e}");
    }
    let agree = errors.is_empty() && reports.iter().all(|r| r.differences.is_empty());
    if json {
        let mirrors: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| {
                serde_json::json!({
                    "mirror": r.mirror,
                    "checkpoint_seq": r.checkpoint_seq,
                    "balances_checked": r.balances_checked,
                    "open_orders_checked": r.open_orders_checked,
                    "differences": r.differences.len(),
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "agree": agree, "mirrors": mirrors, "errors": errors }));
    }
    if agree {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn reconcile_one<M: Mirror>(data_dir: &DataDir, mut mirror: M) -> Result<Report, String> {
    reconcile(data_dir, &mut mirror).await.map_err(|e| e.to_string())
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// The checkpoint (last replicated seq) of every mirror enabled in the configuration file,
/// read from the mirror itself. An unreachable mirror is an error: what it still needs is
/// unknown.
pub fn mirror_checkpoints(config: &std::path::Path) -> Result<Vec<(String, u64)>, String> {
    use seqd::replicate::Sink;
    let config = Config::load(Some(config)).map_err(|e| e.to_string())?;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("runtime: {e}"))?;
    let mut checkpoints = Vec::new();
    if Which::Enabled.tidb(&config.replicate) {
        let mut sink = tidb_sink(&config.replicate.tidb);
        let resume = runtime.block_on(sink.open()).map_err(|e| format!("tidb: {e}"))?;
        checkpoints.push((Sink::name(&sink).to_string(), resume.last_seq));
    }
    if Which::Enabled.clickhouse(&config.replicate) {
        let mut sink = clickhouse_sink(&config.replicate.clickhouse);
        let resume = runtime.block_on(sink.open()).map_err(|e| format!("clickhouse: {e}"))?;
        checkpoints.push((Sink::name(&sink).to_string(), resume.last_seq));
    }
    Ok(checkpoints)
}
