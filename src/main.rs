//! The `seqd` binary. See README.md for the commands.

use clap::{Parser, Subcommand};
use seqd::journal::Durability;
use std::path::PathBuf;
use std::process::ExitCode;

mod cli_demo;
mod cli_journal;

use cli_journal::Log;

#[derive(Parser)]
#[command(
    name = "seqd",
    version,
    about = "LMAX-style sequencer daemon for trading venues"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
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
    /// Write a snapshot of DIR's state (rebuilt offline) and prune old ones.
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
    /// Write the golden journal of the scripted session into a new DIR; print the expected
    /// last sequence and state hash as JSON.
    Golden {
        dir: PathBuf,
        #[arg(long, default_value_t = 64 * 1024)]
        segment_size_bytes: u64,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Commands::Demo { events } => {
            cli_demo::run(events);
            ExitCode::SUCCESS
        }
        Commands::Journal(JournalCommand::Inspect { dir, log, from, to }) => {
            cli_journal::inspect(&dir, log, from, to)
        }
        Commands::Journal(JournalCommand::Verify { dir, log }) => cli_journal::verify(&dir, log),
        Commands::Journal(JournalCommand::Golden {
            dir,
            segment_size_bytes,
        }) => cli_journal::golden(&dir, segment_size_bytes),
        Commands::Replay {
            dir,
            to,
            json,
            no_snapshot,
        } => cli_journal::replay_command(&dir, to, json, no_snapshot),
        Commands::Snapshot { dir, keep } => cli_journal::snapshot(&dir, keep),
        Commands::CrashTest {
            cycles,
            dir,
            durability,
            seed,
            commands,
            child,
        } => crash_test(cycles, dir, durability, seed, commands, child),
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
        return match seqd::crash_test::run_child(&dir, durability, seed, commands) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("crash-test child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match seqd::crash_test::run_standalone(dir, durability, seed, commands, cycles) {
        Ok(summary) => {
            println!(
                "crash-test: {} cycles, {} acknowledged lost",
                summary.cycles, summary.lost
            );
            if summary.lost == 0 && summary.cycles == cycles {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("crash-test: {e}");
            println!("crash-test: failed: {e}");
            ExitCode::FAILURE
        }
    }
}
