//! The `seqd` binary. See README.md for the commands.

use clap::{Parser, Subcommand};

mod cli_demo;

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
    /// Run a scripted trading session through the engine and print its events, balances,
    /// subtree totals, book and state hash.
    Demo {
        /// Print every event, not only the summary.
        #[arg(long)]
        events: bool,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Commands::Demo { events } => cli_demo::run(events),
    }
}
