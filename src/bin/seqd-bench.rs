//! `seqd-bench`: benchmarks a script can run from the repo root. Each mode prints progress on
//! stderr and, with `--json`, one JSON object as the last line of stdout.
//!
//!   cargo run --release --bin seqd-bench -- engine --json

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use seqd::engine::{Command, Engine, Event, Seq};
use seqd::workload::{exchange_core_mix, WorkloadSpec};
use std::hint::black_box;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "seqd benchmarks")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// The business-logic processor alone on exchange-core's workload.
    Engine {
        /// Measured commands per pass.
        #[arg(long, default_value_t = 3_000_000)]
        commands: usize,
        #[arg(long, default_value_t = 1_000)]
        accounts: u64,
        #[arg(long, default_value_t = 1_000)]
        resting_orders: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Throughput passes; the median is reported.
        #[arg(long, default_value_t = 5)]
        passes: usize,
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    match Cli::parse().mode {
        Mode::Engine {
            commands,
            accounts,
            resting_orders,
            seed,
            passes,
            json,
        } => {
            let spec = WorkloadSpec {
                accounts,
                resting_orders,
                commands,
                seed,
            };
            bench_engine(spec, passes.max(1), json)
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Applies every command once, untimed per command: the throughput figure.
fn throughput_pass(
    engine: &mut Engine,
    first_seq: Seq,
    commands: &[Command],
    events: &mut Vec<Event>,
) -> (f64, usize) {
    let mut event_count = 0;
    let started = Instant::now();
    for (i, command) in commands.iter().enumerate() {
        events.clear();
        engine.apply(first_seq + i as Seq, 0, command, events);
        event_count += events.len();
    }
    (started.elapsed().as_secs_f64(), event_count)
}

/// Applies every command with a clock read around each: the latency distribution. The clock
/// costs ~20-40 ns per read here, so these figures include that overhead.
fn latency_pass(
    engine: &mut Engine,
    first_seq: Seq,
    commands: &[Command],
    events: &mut Vec<Event>,
) -> Histogram<u64> {
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
    for (i, command) in commands.iter().enumerate() {
        let started = Instant::now();
        events.clear();
        engine.apply(first_seq + i as Seq, 0, command, events);
        histogram.saturating_record(started.elapsed().as_nanos() as u64);
    }
    histogram
}

/// The floor of touching the input: copy each command into a buffer, same loop shape.
fn copy_baseline(commands: &[Command]) -> f64 {
    let mut sink: Vec<Command> = Vec::with_capacity(1);
    let started = Instant::now();
    for command in commands {
        sink.clear();
        sink.push(*black_box(command));
        black_box(&sink);
    }
    commands.len() as f64 / started.elapsed().as_secs_f64()
}

fn bench_engine(spec: WorkloadSpec, passes: usize, json: bool) {
    eprintln!(
        "generating exchange-core mix: {} commands, {} accounts, {} resting orders, seed {}",
        spec.commands, spec.accounts, spec.resting_orders, spec.seed
    );
    let generated = Instant::now();
    let workload = exchange_core_mix(spec);
    eprintln!("generated in {:.1} s", generated.elapsed().as_secs_f64());

    let mut events = Vec::with_capacity(1024);
    let mut rates = Vec::new();
    let mut seconds_all = Vec::new();
    let mut events_per_command = 0.0;
    let mut state_hash = String::new();
    for pass in 0..passes {
        let (mut engine, first_seq) = workload.prepared_engine();
        let (seconds, event_count) =
            throughput_pass(&mut engine, first_seq, &workload.commands, &mut events);
        let rate = workload.commands.len() as f64 / seconds;
        eprintln!("pass {pass}: {:.0} commands/s ({seconds:.3} s)", rate);
        let hash = engine.state_hash_hex();
        assert!(
            state_hash.is_empty() || state_hash == hash,
            "replays of one workload diverged"
        );
        state_hash = hash;
        events_per_command = event_count as f64 / workload.commands.len() as f64;
        rates.push(rate);
        seconds_all.push(seconds);
    }
    let (mut engine, first_seq) = workload.prepared_engine();
    let histogram = latency_pass(&mut engine, first_seq, &workload.commands, &mut events);
    let copy_rate = copy_baseline(&workload.commands);
    let rate = median(&mut rates);
    let seconds = median(&mut seconds_all);
    eprintln!(
        "median {:.0} commands/s; latency p50 {} ns p99 {} ns p99.9 {} ns max {} ns; copy baseline {:.0}/s",
        rate,
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.max(),
        copy_rate
    );
    if json {
        let out = serde_json::json!({
            "bench": "engine",
            "workload": "exchange-core mix: 82% move, 9% GTC, 3% IOC, 6% cancel",
            "accounts": spec.accounts,
            "resting_orders": spec.resting_orders,
            "seed": spec.seed,
            "commands": workload.commands.len(),
            "passes": passes,
            "seconds": seconds,
            "commands_per_sec": rate.round(),
            "events_per_command": (events_per_command * 100.0).round() / 100.0,
            "p50_ns": histogram.value_at_quantile(0.5),
            "p99_ns": histogram.value_at_quantile(0.99),
            "p999_ns": histogram.value_at_quantile(0.999),
            "max_ns": histogram.max(),
            "copy_baseline_commands_per_sec": copy_rate.round(),
            "state_hash": state_hash,
        });
        println!("{out}");
    }
}
