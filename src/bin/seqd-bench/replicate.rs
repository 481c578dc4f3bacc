//! `seqd-bench replicate`: the replicators against the real servers on loopback.
//!
//! 1. Catch-up: an event log of the exchange-core mix is written first, then each mirror is
//!    filled from an empty database as fast as its sink goes: `mysql_rows_per_sec` counts ledger
//!    rows into MariaDB/TiDB (the bar's unit), `clickhouse_rows_per_sec` every row into ClickHouse.
//! 2. Steady input: the sequencer writes commands at a fixed rate with wall-clock stamps while
//!    both replicators tail the log; `lag_p99_ms` is the 99th percentile over records of commit
//!    time minus sequencing stamp (the worse of the two mirrors).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use seqd::config::{ClickHouseSection, ReplicateSection, TidbSection};
use seqd::engine::Command;
use seqd::pipeline::sequencer::{Sequencer, SequencerConfig};
use seqd::replicate::service::{clickhouse_sink, tidb_sink, Replicators, Which};
use seqd::replicate::{now_ns, run, ReplicatorStats, RunOptions, Sink};
use seqd::storage::journal::Durability;
use seqd::storage::replay::DataDir;
use seqd::testkit::workload::{exchange_core_mix, WorkloadSpec};

pub struct ReplicateOptions {
    pub commands: usize,
    pub tidb_url: String,
    pub clickhouse_url: String,
    pub database: String,
    /// Commands per second in the steady-input phase.
    pub rate_per_sec: u64,
    pub steady_secs: u64,
    pub json: bool,
}

pub fn run_bench(options: ReplicateOptions) -> Result<(), String> {
    let section = ReplicateSection {
        tidb: TidbSection { enabled: true, url: options.tidb_url.clone(), ..TidbSection::default() },
        clickhouse: ClickHouseSection {
            enabled: true,
            url: options.clickhouse_url.clone(),
            database: options.database.clone(),
            ..ClickHouseSection::default()
        },
    };
    let root = std::env::temp_dir().join(format!("seqd-bench-replicate-{}", std::process::id()));
    let result = bench(&options, &section, &root);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn bench(options: &ReplicateOptions, section: &ReplicateSection, root: &Path) -> Result<(), String> {
    let workload =
        exchange_core_mix(WorkloadSpec { accounts: 1_000, resting_orders: 1_000, commands: options.commands, seed: 1 });
    let commands: Vec<Command> = workload.setup.iter().chain(&workload.commands).copied().collect();

    // 1. Catch-up from empty mirrors.
    let catch_up_dir = DataDir::new(root.join("catch-up"));
    let last_seq = write_log(&catch_up_dir, &commands, None)?;
    eprintln!("event log: {last_seq} records");
    drop_databases(section)?;
    let tidb = catch_up(tidb_sink(&section.tidb), &catch_up_dir, last_seq)?;
    eprintln!(
        "tidb: {} ledger rows ({} rows) in {:.2} s: {:.0} ledger rows/s",
        tidb.ledger_rows,
        tidb.total_rows,
        tidb.secs,
        tidb.ledger_rows as f64 / tidb.secs
    );
    let clickhouse = catch_up(clickhouse_sink(&section.clickhouse), &catch_up_dir, last_seq)?;
    eprintln!(
        "clickhouse: {} rows in {:.2} s: {:.0} rows/s",
        clickhouse.total_rows,
        clickhouse.secs,
        clickhouse.total_rows as f64 / clickhouse.secs
    );

    // 2. Steady input with both replicators tailing.
    drop_databases(section)?;
    let steady_dir = DataDir::new(root.join("steady"));
    let steady_workload = exchange_core_mix(WorkloadSpec {
        accounts: 1_000,
        resting_orders: 1_000,
        commands: (options.rate_per_sec * options.steady_secs) as usize,
        seed: 2,
    });
    let steady: Vec<Command> = steady_workload.setup.iter().chain(&steady_workload.commands).copied().collect();
    let replicators =
        Replicators::start(section, Which::Both, &steady_dir.events(), &RunOptions::new(steady_dir.events()));
    let steady_last = write_log(&steady_dir, &steady, Some(options.rate_per_sec))?;
    let stats = replicators.stats();
    let deadline = Instant::now() + Duration::from_secs(120);
    while stats.iter().any(|s| s.checkpoint_seq.load(Ordering::Acquire) < steady_last) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for (name, result) in replicators.stop() {
        result.map_err(|e| format!("{name}: {e}"))?;
    }
    let lag = |s: &ReplicatorStats| {
        let h = s.lag_us.lock().expect("histogram");
        (h.value_at_quantile(0.5) as f64 / 1000.0, h.value_at_quantile(0.99) as f64 / 1000.0, h.len())
    };
    let (tidb_lag, clickhouse_lag) = (lag(&stats[0]), lag(&stats[1]));
    for (s, (p50, p99, n)) in stats.iter().zip([tidb_lag, clickhouse_lag]) {
        eprintln!(
            "{}: steady {} cmd/s: lag p50 {p50:.1} ms, p99 {p99:.1} ms over {n} records",
            s.name, options.rate_per_sec
        );
    }
    let behind: Vec<String> = stats
        .iter()
        .filter(|s| s.checkpoint_seq.load(Ordering::Acquire) < steady_last)
        .map(|s| s.name.clone())
        .collect();
    if !behind.is_empty() {
        return Err(format!("{behind:?} did not catch up with the steady input within 120 s"));
    }
    if options.json {
        println!(
            "{}",
            serde_json::json!({
                "bench": "replicate",
                "records": last_seq,
                "mysql_ledger_rows": tidb.ledger_rows,
                "mysql_rows_per_sec": (tidb.ledger_rows as f64 / tidb.secs).round(),
                "mysql_all_rows_per_sec": (tidb.total_rows as f64 / tidb.secs).round(),
                "clickhouse_rows": clickhouse.total_rows,
                "clickhouse_rows_per_sec": (clickhouse.total_rows as f64 / clickhouse.secs).round(),
                "steady_commands_per_sec": options.rate_per_sec,
                "lag_p50_ms": tidb_lag.0.max(clickhouse_lag.0),
                "lag_p99_ms": tidb_lag.1.max(clickhouse_lag.1),
                "tidb_lag_p99_ms": tidb_lag.1,
                "clickhouse_lag_p99_ms": clickhouse_lag.1,
            })
        );
    }
    Ok(())
}

/// Writes `commands` through the sequencer; at `rate_per_sec` with wall-clock stamps, or as
/// fast as it goes with synthetic stamps. Returns the last seq.
fn write_log(data_dir: &DataDir, commands: &[Command], rate_per_sec: Option<u64>) -> Result<u64, String> {
    let config = SequencerConfig { segment_size_bytes: 64 << 20, durability: Durability::PageCache };
    let (mut sequencer, _) = Sequencer::open(data_dir, config).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut last = 0;
    for (i, command) in commands.iter().enumerate() {
        let ts = match rate_per_sec {
            Some(rate) => {
                // Commit and pace once a millisecond's worth has been submitted.
                let due = Duration::from_nanos(i as u64 * 1_000_000_000 / rate);
                if (i as u64).is_multiple_of((rate / 1000).max(1)) {
                    sequencer.commit().map_err(|e| e.to_string())?;
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                now_ns()
            }
            None => 1_763_700_000_000_000_000 + i as u64 * 1_000,
        };
        last = sequencer.submit(ts, command).map_err(|e| e.to_string())?;
    }
    sequencer.commit().map_err(|e| e.to_string())?;
    Ok(last)
}

struct CatchUp {
    secs: f64,
    ledger_rows: u64,
    total_rows: u64,
}

fn catch_up<S: Sink>(sink: S, data_dir: &DataDir, last_seq: u64) -> Result<CatchUp, String> {
    let stats = ReplicatorStats::new(sink.name());
    let mut options = RunOptions::new(data_dir.events());
    options.until_seq = Some(last_seq);
    let stop = AtomicBool::new(false);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let started = Instant::now();
    runtime.block_on(run(sink, &options, &stop, &stats)).map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    Ok(CatchUp {
        secs,
        ledger_rows: stats.ledger_rows.load(Ordering::Relaxed),
        total_rows: stats.total_rows.load(Ordering::Relaxed),
    })
}

/// Fresh mirrors: the bench's own databases are dropped (never anything else).
fn drop_databases(section: &ReplicateSection) -> Result<(), String> {
    let database = section.tidb.url.rsplit('/').next().unwrap_or_default();
    if !database.starts_with("seqd_bench") || !section.clickhouse.database.starts_with("seqd_bench") {
        return Err("the bench only drops databases whose names start with seqd_bench".into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let server_url = section.tidb.url.trim_end_matches(database).to_string();
        let pool = mysql_async::Pool::new(server_url.as_str());
        let mut conn = pool.get_conn().await.map_err(|e| format!("mysql: {e}"))?;
        use mysql_async::prelude::Queryable;
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{database}`")).await.map_err(|e| format!("mysql: {e}"))?;
        drop(conn);
        pool.disconnect().await.map_err(|e| format!("mysql: {e}"))?;
        let client = clickhouse::Client::default().with_url(&section.clickhouse.url).with_validation(false);
        client
            .query(&format!("DROP DATABASE IF EXISTS {}", section.clickhouse.database))
            .execute()
            .await
            .map_err(|e| format!("clickhouse: {e}"))
    })
}
