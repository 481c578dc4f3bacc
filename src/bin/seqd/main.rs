//! The `seqd` binary. See README.md for the commands.

use clap::{Parser, Subcommand};
use seqd::storage::journal::Durability;
use std::path::PathBuf;
use std::process::ExitCode;

mod cli;

use cli::journal::Log;

#[derive(Parser)]
#[command(name = "seqd", version, about = "LMAX-style sequencer daemon for trading venues")]
struct Cli {
    /// Log lines on stderr: `text` (colours only on a terminal) or `json` (one object a line).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the daemon: recover DATA_DIR, serve QUIC clients, journal and apply their commands.
    /// With no --config, the embedded default (systemd/seqd.example.toml) is used.
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override `data.dir` (and put dev certificates under it) without writing a config.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Override `gateway.listen` (port 0 picks a free port, printed on stdout).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Override `metrics.listen`.
        #[arg(long)]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Override `journal.durability`.
        #[arg(long, value_parser = ["page-cache", "fsync"])]
        durability: Option<String>,
    },
    /// Talk to a running daemon as a principal (certificate `<certs>/<principal>.pem`).
    Client {
        #[command(flatten)]
        options: cli::client::ClientOptions,
        #[command(subcommand)]
        request: cli::client::ClientCommand,
    },
    /// Inspect a cluster of seqd nodes (the `[cluster]` section of a node's config).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Run a scripted trading session through the engine and print its trades, balances,
    /// subtree totals, book and state hash.
    Demo {
        /// Print every event, not only the summary.
        #[arg(long)]
        events: bool,
    },
    /// Inspect, verify or create journals.
    #[command(subcommand)]
    Journal(JournalCommand),
    /// Rebuild the state from DIR (newest snapshot + input journal); print the state hash.
    Replay {
        dir: PathBuf,
        /// Stop after this sequence.
        #[arg(long)]
        to: Option<u64>,
        /// Last line: one JSON object with `last_seq` and `state_hash`.
        #[arg(long)]
        json: bool,
        /// Replay the whole journal from an empty state, ignoring snapshots.
        #[arg(long)]
        no_snapshot: bool,
    },
    /// Write a snapshot of DIR's state (rebuilt offline) and prune old ones. Refuses while a
    /// daemon holds DIR.
    Snapshot {
        dir: PathBuf,
        /// Snapshots to keep.
        #[arg(long, default_value_t = 3)]
        keep: usize,
    },
    /// SIGKILL a sequencing child process many times and check nothing acknowledged is lost.
    CrashTest {
        #[arg(long, default_value_t = 100)]
        cycles: u32,
        /// Data directory (default: a fresh one under the temp directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// page-cache or fsync.
        #[arg(long, default_value = "page-cache")]
        durability: Durability,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Commands in the workload the children work through.
        #[arg(long, default_value_t = 1_500_000)]
        commands: usize,
        /// Internal: run as the child that is killed.
        #[arg(long, hide = true)]
        child: bool,
        /// Kill the whole daemon (`seqd run`) under client load instead of a sequencing child
        /// (--commands does not apply; --durability is written into the daemon's config).
        #[arg(long)]
        daemon: bool,
    },
    /// Replicate the event log into the mirrors (TiDB, ClickHouse) as a separate process, until
    /// SIGTERM, or until each mirror has reached --until.
    Replicate {
        #[command(flatten)]
        mirrors: cli::replicate::MirrorArgs,
        /// The event log directory (default: `<data.dir>/events`), e.g. a copy shipped from the
        /// sequencer's machine.
        #[arg(long)]
        events: Option<PathBuf>,
        /// Stop once every mirror's checkpoint has reached this sequence.
        #[arg(long)]
        until: Option<u64>,
        /// Serve /metrics, /healthz and /readyz here (docs/METRICS.md); port 0 picks a free
        /// port, printed on stdout. Off when absent.
        #[arg(long)]
        metrics_listen: Option<std::net::SocketAddr>,
    },
    /// Compare the mirrors with the state rebuilt from the journal at each mirror's checkpoint
    /// (balances, open orders, ledger sums per account); exit 0 only when they agree.
    Reconcile {
        #[command(flatten)]
        mirrors: cli::replicate::MirrorArgs,
        /// Last line: one JSON object with `agree` and per-mirror counts.
        #[arg(long)]
        json: bool,
    },
    /// Write a development CA, a server certificate for localhost and client certificates
    /// (principals admin, trader1, trader2) into DIR; print the paths written.
    DevCerts {
        dir: PathBuf,
        /// Replace the certificates of a DIR that already holds a CA.
        #[arg(long)]
        force: bool,
        /// Also write certificates for cluster nodes 1..=N (`node-<id>.pem`, `node-<id>.key`),
        /// for `[cluster] certs_dir`.
        #[arg(long, default_value_t = 0)]
        nodes: u64,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Every node's role, term, leader, indexes and lag behind the leader.
    ///
    /// Asks every node of FILE's `[[cluster.nodes]]` for `GET /cluster` on its metrics_address
    /// and prints one row per node: role, term, leader, commit and applied index, applied
    /// sequence, lag behind the leader's log and the leader's last contact. A node that does
    /// not answer is `unreachable`, with the error. Exits 0 only when a node answers as the
    /// leader.
    Status {
        /// A node's configuration (any node's: its `[cluster]` section lists them all).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// One JSON document with every node's answer (or error) instead of the table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Print records in human-readable form. DIR is a data directory or a journal directory.
    Inspect {
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "input")]
        log: Log,
        #[arg(long, default_value_t = 1)]
        from: u64,
        #[arg(long)]
        to: Option<u64>,
    },
    /// Check every CRC, the sequence and the hash chain; exit 0 only when intact.
    Verify {
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "input")]
        log: Log,
    },
    /// Cut the data directory DIR's input journal before SEQ (the way past a command that
    /// panics the engine and makes recovery refuse to start), with the event-log records and
    /// snapshots at or after SEQ. Refuses while a daemon holds DIR. See README.md, Operations.
    Truncate {
        dir: PathBuf,
        /// The first sequence to remove (the poison command's, as recovery names it).
        #[arg(long)]
        before: u64,
    },
    /// Move (--to ARCHIVE_DIR) or delete (--delete) the input-journal and event-log segments
    /// of data directory DIR wholly below the newest usable snapshot, --keep-from SEQ, and the
    /// checkpoints of the mirrors enabled in --config. Refuses while a daemon holds DIR.
    Archive {
        dir: PathBuf,
        #[arg(long, conflicts_with = "delete")]
        to: Option<PathBuf>,
        #[arg(long)]
        delete: bool,
        /// Keep both journals from this sequence on (e.g. a follower's or an external
        /// consumer's position).
        #[arg(long)]
        keep_from: Option<u64>,
        /// The daemon's configuration: the checkpoints of its enabled mirrors are kept.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write the golden journal of the scripted session into a new DIR; print the expected
    /// last sequence and state hash as JSON.
    Golden {
        dir: PathBuf,
        #[arg(long, default_value_t = 64 * 1024)]
        segment_size_bytes: u64,
    },
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`). Colour codes only when stderr is a
/// terminal: under systemd they would land in the journal as escape sequences.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Commands::Demo { events } => {
            cli::demo::run(events);
            ExitCode::SUCCESS
        }
        Commands::Cluster(ClusterCommand::Status { config, json }) => cli::cluster::status(&config, json),
        Commands::Journal(JournalCommand::Inspect { dir, log, from, to }) => cli::journal::inspect(&dir, log, from, to),
        Commands::Journal(JournalCommand::Verify { dir, log }) => cli::journal::verify(&dir, log),
        Commands::Journal(JournalCommand::Truncate { dir, before }) => cli::truncate::truncate(&dir, before),
        Commands::Journal(JournalCommand::Archive { dir, to, delete, keep_from, config }) => {
            cli::journal::archive(&dir, &cli::journal::ArchiveArgs { to, delete, keep_from, config })
        }
        Commands::Journal(JournalCommand::Golden { dir, segment_size_bytes }) => {
            cli::journal::golden(&dir, segment_size_bytes)
        }
        Commands::Replay { dir, to, json, no_snapshot } => cli::journal::replay_command(&dir, to, json, no_snapshot),
        Commands::Snapshot { dir, keep } => cli::journal::snapshot(&dir, keep),
        Commands::CrashTest { daemon: true, cycles, dir, durability, seed, .. } => {
            seqd::testkit::crash_test_daemon::run_cli(dir, durability, seed, cycles)
        }
        Commands::CrashTest { cycles, dir, durability, seed, commands, child, daemon: false } => {
            crash_test(cycles, dir, durability, seed, commands, child)
        }
        Commands::Run { config, data_dir, listen, metrics_listen, durability } => {
            run(config, data_dir, listen, metrics_listen, durability)
        }
        Commands::Replicate { mirrors, events, until, metrics_listen } => {
            cli::replicate::replicate(&mirrors, events, until, metrics_listen)
        }
        Commands::Reconcile { mirrors, json } => cli::replicate::reconcile_command(&mirrors, json),
        Commands::Client { options, request } => cli::client::run(options, request),
        Commands::DevCerts { dir, force, nodes } => {
            match seqd::gateway::tls::dev_certs_with_nodes(&dir, force, nodes) {
                Ok(certs) => {
                    certs.paths().iter().for_each(|path| println!("{}", path.display()));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn crash_test(
    cycles: u32,
    dir: Option<PathBuf>,
    durability: Durability,
    seed: u64,
    commands: usize,
    child: bool,
) -> ExitCode {
    if child {
        let Some(dir) = dir else {
            eprintln!("error: the child needs --dir");
            return ExitCode::FAILURE;
        };
        return match seqd::testkit::crash_test::run_child(&dir, durability, seed, commands) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("crash-test child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let outcome =
        seqd::testkit::crash_test::run_standalone(dir, durability, seed, commands, cycles).map(|s| (s.cycles, s.lost));
    seqd::testkit::crash_test::report(outcome, cycles)
}

fn run(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    metrics_listen: Option<std::net::SocketAddr>,
    durability: Option<String>,
) -> ExitCode {
    let config_path = config;
    let mut config = match seqd::config::Config::load(config_path.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(dir) = data_dir {
        config.gateway.certs_dir = dir.join("certs");
        config.data.dir = dir;
    }
    if let Some(listen) = listen {
        config.gateway.listen = listen;
    }
    if let Some(listen) = metrics_listen {
        config.metrics.listen = listen;
    }
    if let Some(durability) = durability {
        config.journal.durability = durability;
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %config_path.as_deref().map_or("(embedded default)".into(), |p| p.display().to_string()),
        data_dir = %config.data.dir.display(),
        durability = %config.journal.durability,
        listen = %config.gateway.listen,
        metrics_listen = %config.metrics.listen,
        "starting seqd"
    );
    match seqd::daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
