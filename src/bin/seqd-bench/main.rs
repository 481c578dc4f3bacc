//! `seqd-bench`: benchmarks a script can run from the repo root. Each mode prints progress on
//! stderr and, with `--json`, one JSON object as the last line of stdout.
//!
//!   cargo run --release --bin seqd-bench -- engine --json
//!   cargo build --release --bins && cargo run --release --bin seqd-bench -- e2e --json
//!   cargo build --release --bins && cargo run --release --bin seqd-bench -- e2e --cluster 3 --json
//!   bash tools/services.sh && cargo run --release --bin seqd-bench -- replicate --json

mod e2e;
mod hdr_plot;
mod quic_echo;
mod replicate;

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use seqd::engine::{Command, Engine, Event, Seq};
use seqd::storage::journal::{Durability, JournalConfig, JournalWriter};
use seqd::storage::replay::{replay, DataDir, ReplayOptions};
use seqd::testkit::workload::{exchange_core_mix, WorkloadSpec};
use seqd::wire::codec;
use std::hint::black_box;
use std::path::{Path, PathBuf};
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
    /// Journal append (page cache), group-commit fsync latency, and replay.
    Journal {
        /// Records appended in the append test.
        #[arg(long, default_value_t = 5_000_000)]
        records: u64,
        /// Group commits timed in the fsync test.
        #[arg(long, default_value_t = 2_000)]
        commits: u64,
        /// Commands in the replay test (exchange-core mix).
        #[arg(long, default_value_t = 2_000_000)]
        replay_commands: usize,
        /// Where to write (it must be on the disk being measured); default: the temp directory.
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The daemon end to end over QUIC on loopback: latency one command at a time, pipelined
    /// throughput over several connections, and a bare quinn echo as the floor, in one run.
    /// Starts `seqd run` (built next to this binary) unless --addr is given.
    E2e {
        /// A running daemon to measure instead of starting one.
        #[arg(long, requires = "certs")]
        addr: Option<std::net::SocketAddr>,
        /// With --addr: the directory holding ca.pem, admin.pem and admin.key.
        #[arg(long)]
        certs: Option<PathBuf>,
        /// Data directory of the started daemon (it must be on the disk being measured);
        /// default: a fresh one under the temp directory, removed afterwards.
        #[arg(long, conflicts_with = "addr")]
        data_dir: Option<PathBuf>,
        /// Connections of the throughput test (each on its own account).
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Commands of each throughput pass, over all connections.
        #[arg(long, default_value_t = 400_000)]
        commands: u64,
        /// Commands each connection keeps in flight (at most the gateway's max_in_flight).
        #[arg(long, default_value_t = 128)]
        window: usize,
        /// Throughput passes (fresh connections each); the median is reported.
        #[arg(long, default_value_t = 3)]
        passes: u64,
        /// Timed round trips of the latency test, and as many of the echo.
        #[arg(long, default_value_t = 20_000)]
        latency_commands: u64,
        /// Pace the latency test and the echo at this many round trips per second
        /// (0: back to back).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Journal durability of the started daemon.
        #[arg(long, value_parser = ["page-cache", "fsync"])]
        durability: Option<String>,
        /// Write a latency-by-percentile plot (SVG) of seqd and the echo.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Also start a local cluster of N nodes (`seqd run` with `[cluster]`), run the same
        /// workload through its leader, and measure failover (SIGKILL the leader, time to the
        /// first answered command through the new one); the JSON adds the cluster's figures.
        #[arg(long, conflicts_with_all = ["addr", "data_dir"], value_parser = clap::value_parser!(u64).range(1..=5))]
        cluster: Option<u64>,
        /// With --cluster: the nodes' election timeout (heartbeat: a tenth of it).
        #[arg(long, default_value_t = 1000)]
        election_timeout_ms: u64,
        /// With --cluster: failovers timed (the median is reported).
        #[arg(long, default_value_t = 5)]
        failovers: u32,
        #[arg(long)]
        json: bool,
    },
    /// The replicators into MariaDB/TiDB and ClickHouse on loopback (tools/services.sh starts
    /// them): catch-up rows/s from empty mirrors, then lag under a steady input rate. Uses (and
    /// drops) databases named seqd_bench*.
    Replicate {
        /// Workload commands in the catch-up log.
        #[arg(long, default_value_t = 100_000)]
        commands: usize,
        #[arg(long, default_value = "mysql://root@127.0.0.1:3306/seqd_bench")]
        tidb_url: String,
        #[arg(long, default_value = "http://127.0.0.1:8123")]
        clickhouse_url: String,
        #[arg(long, default_value = "seqd_bench")]
        clickhouse_database: String,
        /// Commands per second written while the replicators tail the log.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// Seconds of steady input.
        #[arg(long, default_value_t = 10)]
        steady_secs: u64,
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    match Cli::parse().mode {
        Mode::Engine { commands, accounts, resting_orders, seed, passes, json } => {
            let spec = WorkloadSpec { accounts, resting_orders, commands, seed };
            bench_engine(spec, passes.max(1), json)
        }
        Mode::Journal { records, commits, replay_commands, dir, json } => {
            let dir =
                dir.unwrap_or_else(|| std::env::temp_dir().join(format!("seqd-bench-journal-{}", std::process::id())));
            bench_journal(&dir, records, commits, replay_commands, json);
            let _ = std::fs::remove_dir_all(&dir);
        }
        Mode::E2e {
            addr,
            certs,
            data_dir,
            connections,
            commands,
            window,
            passes,
            latency_commands,
            rate,
            durability,
            plot,
            cluster,
            election_timeout_ms,
            failovers,
            json,
        } => {
            let options = e2e::E2eOptions {
                addr,
                certs,
                data_dir,
                connections,
                commands,
                latency_commands,
                window,
                passes,
                rate_per_sec: rate,
                durability,
                plot,
                cluster: cluster.map(|nodes| e2e::ClusterBench { nodes, election_timeout_ms, failovers }),
                json,
            };
            if let Err(e) = e2e::run(options) {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
        Mode::Replicate { commands, tidb_url, clickhouse_url, clickhouse_database, rate, steady_secs, json } => {
            let options = replicate::ReplicateOptions {
                commands,
                tidb_url,
                clickhouse_url,
                database: clickhouse_database,
                rate_per_sec: rate.max(1),
                steady_secs,
                json,
            };
            if let Err(e) = replicate::run_bench(options) {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Applies every command once, untimed per command: the throughput figure.
fn throughput_pass(engine: &mut Engine, first_seq: Seq, commands: &[Command], events: &mut Vec<Event>) -> (f64, usize) {
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
fn latency_pass(engine: &mut Engine, first_seq: Seq, commands: &[Command], events: &mut Vec<Event>) -> Histogram<u64> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
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
        let (seconds, event_count) = throughput_pass(&mut engine, first_seq, &workload.commands, &mut events);
        let rate = workload.commands.len() as f64 / seconds;
        eprintln!("pass {pass}: {:.0} commands/s ({seconds:.3} s)", rate);
        let hash = engine.state_hash_hex();
        assert!(state_hash.is_empty() || state_hash == hash, "replays of one workload diverged");
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

/// Payload size of the append test: a command is 5-64 bytes; 64 is the largest (an order).
const APPEND_PAYLOAD_BYTES: usize = 64;
/// Records per commit in the append and fsync tests (a group commit).
const GROUP_RECORDS: u64 = 64;

/// Appends `records` 64-byte records with page-cache durability, committing every 64.
/// Returns records per second (page faults of fresh segment pages included).
fn append_rate(dir: &Path, records: u64) -> f64 {
    let config = JournalConfig::new(dir, 256 << 20, Durability::PageCache);
    let (mut writer, _) = JournalWriter::open(config).expect("journal opens");
    let mut payload = [0u8; APPEND_PAYLOAD_BYTES];
    let started = Instant::now();
    for _ in 0..records {
        let seq = writer.next_seq();
        payload[..8].copy_from_slice(&seq.to_le_bytes());
        writer.append(seq, seq, codec::kind::PLACE_ORDER, &payload).expect("append");
        if seq % GROUP_RECORDS == 0 {
            writer.commit().expect("commit");
        }
    }
    writer.commit().expect("commit");
    records as f64 / started.elapsed().as_secs_f64()
}

/// The floor of appending: copying 96-byte records (64-byte payload + header) into a buffer.
fn memcpy_rate(records: u64) -> f64 {
    let record = [7u8; APPEND_PAYLOAD_BYTES + 32];
    let mut buffer = vec![0u8; 64 << 20];
    let started = Instant::now();
    let mut at = 0;
    for _ in 0..records {
        if at + record.len() > buffer.len() {
            at = 0;
        }
        buffer[at..at + record.len()].copy_from_slice(black_box(&record));
        at += record.len();
    }
    black_box(&buffer);
    records as f64 / started.elapsed().as_secs_f64()
}

/// Latency of each group commit (64 records, one msync) with fsync durability, in µs.
fn fsync_commit_latencies(dir: &Path, commits: u64) -> Histogram<u64> {
    let config = JournalConfig::new(dir, 64 << 20, Durability::Fsync);
    let (mut writer, _) = JournalWriter::open(config).expect("journal opens");
    let payload = [7u8; APPEND_PAYLOAD_BYTES];
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for _ in 0..commits {
        for _ in 0..GROUP_RECORDS {
            let seq = writer.next_seq();
            writer.append(seq, seq, codec::kind::PLACE_ORDER, &payload).expect("append");
        }
        let started = Instant::now();
        writer.commit().expect("commit");
        histogram.saturating_record(started.elapsed().as_micros() as u64);
    }
    histogram
}

/// Writes a workload's commands as an input journal (no events), as a daemon would.
fn write_input_journal(data_dir: &DataDir, commands: &[Command]) {
    let config = JournalConfig::new(data_dir.input(), 256 << 20, Durability::PageCache);
    let (mut writer, _) = JournalWriter::open(config).expect("journal opens");
    let mut payload = Vec::with_capacity(128);
    for command in commands {
        payload.clear();
        let kind = codec::encode_command(command, &mut payload);
        let seq = writer.next_seq();
        writer.append(seq, 0, kind, &payload).expect("append");
    }
    writer.commit().expect("commit");
}

fn bench_journal(dir: &Path, records: u64, commits: u64, replay_commands: usize, json: bool) {
    let append_per_sec = append_rate(&dir.join("append"), records);
    let memcpy_per_sec = memcpy_rate(records);
    let append_mb_per_sec = append_per_sec * (APPEND_PAYLOAD_BYTES + 32) as f64 / 1e6;
    eprintln!("append (page cache, 64 B, commit/64): {append_per_sec:.0} records/s, {append_mb_per_sec:.0} MB/s; memcpy floor {memcpy_per_sec:.0} records/s");
    let _ = std::fs::remove_dir_all(dir.join("append"));

    let fsync = fsync_commit_latencies(&dir.join("fsync"), commits);
    eprintln!(
        "fsync group commit of 64: p50 {} us, p99 {} us, p99.9 {} us, max {} us",
        fsync.value_at_quantile(0.5),
        fsync.value_at_quantile(0.99),
        fsync.value_at_quantile(0.999),
        fsync.max()
    );
    let _ = std::fs::remove_dir_all(dir.join("fsync"));

    let workload = exchange_core_mix(WorkloadSpec { commands: replay_commands, ..WorkloadSpec::default() });
    let commands: Vec<Command> = workload.setup.iter().chain(&workload.commands).copied().collect();
    let data_dir = DataDir::new(dir.join("replay"));
    write_input_journal(&data_dir, &commands);
    let started = Instant::now();
    let verified = seqd::storage::journal::verify(&data_dir.input()).expect("journal verifies");
    let verify_per_sec = verified.records as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let (_, outcome) = replay(&data_dir, ReplayOptions::default()).expect("replay");
    let replay_per_sec = outcome.commands_replayed as f64 / started.elapsed().as_secs_f64();
    let mut engine = Engine::new();
    let mut events = Vec::with_capacity(1024);
    let started = Instant::now();
    let (_, _) = throughput_pass(&mut engine, 1, &commands, &mut events);
    let engine_per_sec = commands.len() as f64 / started.elapsed().as_secs_f64();
    assert_eq!(engine.state_hash(), outcome.state_hash, "replay and direct apply disagree");
    eprintln!(
        "replay (verify + read + decode + apply) of {} commands: {replay_per_sec:.0}/s; verify alone {verify_per_sec:.0} records/s; engine alone {engine_per_sec:.0}/s",
        outcome.commands_replayed
    );
    let _ = std::fs::remove_dir_all(dir.join("replay"));
    if json {
        let out = serde_json::json!({
            "bench": "journal",
            "append_records": records,
            "append_payload_bytes": APPEND_PAYLOAD_BYTES,
            "append_records_per_sec": append_per_sec.round(),
            "append_mb_per_sec": append_mb_per_sec.round(),
            "memcpy_records_per_sec": memcpy_per_sec.round(),
            "fsync_group_records": GROUP_RECORDS,
            "fsync_group_p50_us": fsync.value_at_quantile(0.5),
            "fsync_group_p99_us": fsync.value_at_quantile(0.99),
            "fsync_group_p999_us": fsync.value_at_quantile(0.999),
            "replay_commands": outcome.commands_replayed,
            "replay_commands_per_sec": replay_per_sec.round(),
            "verify_records_per_sec": verify_per_sec.round(),
            "engine_commands_per_sec": engine_per_sec.round(),
        });
        println!("{out}");
    }
}
