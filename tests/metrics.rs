//! The HTTP endpoint of a real `seqd run` and a real `seqd replicate` (docs/METRICS.md): a live
//! scrape passes `promtool check metrics`, the high-water marks are right after a restart before
//! any new traffic, `/healthz` and `/readyz` answer what the process is doing, and the
//! replicator's lag is true both when it is far behind (past its read-ahead) and caught up.
//!
//! `promtool` (Debian package `prometheus`) is installed by tools/test.sh; the promtool check
//! alone is skipped, saying so, where it is absent. The caught-up test uses MariaDB on
//! 127.0.0.1:3306 (tools/services.sh), in a database named by `testkit::test_db` (`seqd_test_<run>_metrics_<n>`) that it drops.

#[path = "common/daemon.rs"]
mod daemon;

use daemon::{limit, runtime, set_up_venue, Daemon};
use seqd::engine::Side;
use seqd::pipeline::sequencer::{Sequencer, SequencerConfig};
use seqd::storage::replay::DataDir;
use seqd::testkit::crash_test::crash_workload;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `GET path`: the status code and the body.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut socket = TcpStream::connect(addr)?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    socket.write_all(format!("GET {path} HTTP/1.1\r\nHost: seqd\r\n\r\n").as_bytes())?;
    let mut response = String::new();
    socket.read_to_string(&mut response)?;
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_string();
    Ok((status, body))
}

fn scrape(addr: SocketAddr) -> String {
    let (status, body) = get(addr, "/metrics").unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample `series` (name with its labels, exactly as exposed).
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in:\n{page}"))
        .parse()
        .unwrap()
}

fn promtool_present() -> bool {
    Process::new("promtool").arg("--version").output().is_ok_and(|out| out.status.success())
}

/// `promtool check metrics` on `page`; panics with its complaints.
fn promtool_check(page: &str) {
    if !promtool_present() {
        eprintln!("SKIPPED the promtool check: promtool is not installed (tools/test.sh installs it)");
        return;
    }
    let mut child = Process::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}");
}

/// Sets up the venue and crosses `trades` orders: 7 + 2 * trades commands, none rejected.
fn load(daemon: &Daemon, trades: usize) -> u64 {
    runtime().block_on(async {
        let mut admin = daemon.client("admin").await;
        set_up_venue(&mut admin).await;
        let mut seller = daemon.client("trader2").await;
        let mut buyer = daemon.client("trader1").await;
        for _ in 0..trades {
            assert_eq!(seller.command(limit(2, Side::Sell, 30_000_000_000, 10_000)).await.unwrap().rejected(), None);
            assert_eq!(buyer.command(limit(1, Side::Buy, 30_000_000_000, 10_000)).await.unwrap().rejected(), None);
        }
        // One rejected on purpose: an unknown asset, counted by reason.
        let outcome = admin
            .command(seqd::engine::Command::CreateAsset { asset: seqd::engine::AssetId(1), scale: 8 })
            .await
            .unwrap();
        assert!(outcome.rejected().is_some());
    });
    7 + 2 * trades as u64 + 1
}

#[test]
fn a_live_scrape_passes_promtool_and_the_marks_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    assert_eq!(get(daemon.metrics_addr, "/healthz").unwrap().0, 200);
    assert_eq!(get(daemon.metrics_addr, "/readyz").unwrap().0, 200);
    assert_eq!(get(daemon.metrics_addr, "/nothing").unwrap().0, 404);
    let commands = load(&daemon, 10);
    let page = scrape(daemon.metrics_addr);
    promtool_check(&page);
    assert_eq!(sample(&page, "seqd_applied_seq"), commands as f64);
    assert_eq!(sample(&page, "seqd_commands_rejected_total{reason=\"asset_exists\"}"), 1.0);
    assert!(sample(&page, "seqd_gateway_round_trip_seconds_count") >= commands as f64, "{page}");
    assert!(sample(&page, "seqd_journal_commit_duration_seconds_count") >= 1.0, "{page}");
    assert!(sample(&page, "seqd_journal_segments{journal=\"input\"}") >= 1.0, "{page}");
    assert!(sample(&page, "seqd_disk_free_bytes") > 0.0, "{page}");
    daemon.stop();

    // A new process: before any traffic, every high-water mark is where the last one stopped.
    let daemon = Daemon::start(dir.path());
    let page = scrape(daemon.metrics_addr);
    for mark in ["seqd_durable_seq", "seqd_applied_seq", "seqd_events_logged_seq", "seqd_delivered_seq"] {
        assert_eq!(sample(&page, mark), commands as f64, "{mark}");
    }
    assert_eq!(sample(&page, "seqd_journal_lag_commands"), 0.0);
    // The graceful stop wrote a snapshot at the last command: its age is known after the restart.
    assert_eq!(sample(&page, "seqd_snapshot_last_seq"), commands as f64);
    let now_s = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as f64;
    let written_s = sample(&page, "seqd_snapshot_last_success_timestamp_seconds");
    assert!(written_s > 0.0 && written_s <= now_s, "{written_s} against {now_s}");
    promtool_check(&page);
    daemon.stop();
}

/// The responder panics delivering command 3: the daemon fails, and until it exits its health
/// endpoints say so (503), where before they said 200.
#[test]
fn healthz_and_readyz_turn_503_when_the_pipeline_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Process::new(env!("CARGO_BIN_EXE_seqd"))
        .args(["run", "--data-dir", dir.path().to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "error")
        .env("SEQD_FAULT_RESPONDER_PANIC_AT_SEQ", "3")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let metrics: SocketAddr =
        line.split("metrics on http://").nth(1).unwrap().split('/').next().unwrap().parse().unwrap();
    assert_eq!(get(metrics, "/healthz").unwrap().0, 200);
    assert_eq!(get(metrics, "/readyz").unwrap().0, 200);
    let addr: SocketAddr = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    let daemon_certs = dir.path().join("certs");
    let seen = runtime().block_on(async {
        let read = |name: &str| std::fs::read(daemon_certs.join(name)).unwrap();
        let mut admin =
            seqd::client::Client::connect(addr, &read("ca.pem"), &read("admin.pem"), &read("admin.key")).await.unwrap();
        for asset in 1..=3 {
            // The third never gets an answer; the connection stays open while the daemon fails.
            let _ = tokio::time::timeout(
                Duration::from_millis(500),
                admin.command(seqd::engine::Command::CreateAsset { asset: seqd::engine::AssetId(asset), scale: 2 }),
            )
            .await;
        }
        poll_until_gone(metrics)
    });
    assert_eq!(seen, vec![503, 503], "(healthz, readyz) while failing");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(4), "a pipeline failure exits 4");
}

/// Polls `/healthz` and `/readyz` until the daemon stops answering; returns the last pair of
/// codes it gave (the process answers until it exits).
fn poll_until_gone(metrics: SocketAddr) -> Vec<u16> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        match (get(metrics, "/healthz"), get(metrics, "/readyz")) {
            (Ok((healthz, _)), Ok((readyz, _))) => last = vec![healthz, readyz],
            _ => return last,
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the failed daemon did not exit within 30 s");
}

/// Writes `commands` commands of the crash workload to a data directory (input journal and
/// event log), stamped with the wall clock; returns the last sequence.
fn write_data_dir(dir: &Path, commands: usize) -> u64 {
    let (mut sequencer, _) = Sequencer::open(&DataDir::new(dir), SequencerConfig::default()).unwrap();
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    for command in crash_workload(7, commands) {
        sequencer.submit(now_ns, &command).unwrap();
    }
    sequencer.commit().unwrap()
}

/// A child process that a failing test does not leave behind (SIGTERM and wait on drop).
struct Terminated(Child);

impl Drop for Terminated {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// `seqd replicate --sink tidb` over `data_dir` with `extra` arguments and its metrics endpoint.
fn start_replicate(data_dir: &Path, tidb_url: &str, extra: &[&str]) -> (Terminated, SocketAddr) {
    let mut child = Process::new(env!("CARGO_BIN_EXE_seqd"))
        .args(["replicate", "--sink", "tidb", "--tidb-url", tidb_url, "--metrics-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // Keep reading, so its last lines ("stopped at checkpoint") have somewhere to go.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let addr = line
        .strip_prefix("seqd replicate: metrics on http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (Terminated(child), addr)
}

/// Waits until `check` holds on a scrape (the replicator works on its own thread).
fn scrape_until(addr: SocketAddr, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let page = scrape(addr);
        if check(&page) {
            return page;
        }
        assert!(Instant::now() < deadline, "never {what}:\n{page}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A mirror that cannot be reached holds nothing: the lag is the whole log (12,000 records, more
/// than the 10,000 read-ahead of a batch), not what the tailer happened to read, and it grows
/// in time. The process stays healthy (it retries) and ready.
#[test]
fn replicator_lag_is_the_whole_backlog_past_the_read_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let last_seq = write_data_dir(dir.path(), 12_000);
    assert!(last_seq > 10_000);
    let (child, metrics) = start_replicate(dir.path(), "mysql://root@127.0.0.1:1/seqd_nowhere", &[]);
    let series = "seqd_replicator_lag_records{sink=\"tidb\"}";
    let errors = "seqd_replicator_errors_total{sink=\"tidb\"}";
    let page = scrape_until(metrics, "the whole backlog after a failed connection", |page| {
        sample(page, series) == last_seq as f64 && sample(page, errors) >= 1.0
    });
    assert_eq!(sample(&page, "seqd_replicator_checkpoint_seq{sink=\"tidb\"}"), 0.0);
    assert_eq!(sample(&page, "seqd_replicator_log_seq{sink=\"tidb\"}"), last_seq as f64);
    assert!(sample(&page, "seqd_replicator_lag_seconds{sink=\"tidb\"}") > 0.0, "{page}");
    assert_eq!(get(metrics, "/healthz").unwrap().0, 200);
    assert_eq!(get(metrics, "/readyz").unwrap().0, 200);
    promtool_check(&page);
    drop(child);
}

/// Caught up with MariaDB: no records and no seconds of lag, however long the last batch took.
#[test]
fn replicator_lag_is_zero_once_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let last_seq = write_data_dir(dir.path(), 3_000);
    let database = seqd::testkit::test_db::database_name("metrics");
    let url = format!("mysql://root@127.0.0.1:3306/{database}");
    let (child, metrics) = start_replicate(dir.path(), &url, &[]);
    let checkpoint = "seqd_replicator_checkpoint_seq{sink=\"tidb\"}";
    let page = scrape_until(metrics, "caught up", |page| sample(page, checkpoint) == last_seq as f64);
    assert_eq!(sample(&page, "seqd_replicator_lag_records{sink=\"tidb\"}"), 0.0);
    assert_eq!(sample(&page, "seqd_replicator_lag_seconds{sink=\"tidb\"}"), 0.0);
    assert_eq!(sample(&page, "seqd_replicator_records_total{sink=\"tidb\"}"), last_seq as f64);
    promtool_check(&page);
    drop(child);
    let _ = Process::new("mysql")
        .args(["--protocol=tcp", "-h127.0.0.1", "-P3306", "-uroot", "-e"])
        .arg(format!("DROP DATABASE IF EXISTS `{database}`"))
        .status();
}

/// Every query of the Grafana dashboard is valid PromQL and names only metrics seqd exposes
/// (docs/METRICS.md): `promtool check rules` on the queries as recording rules.
#[test]
fn the_dashboard_queries_parse_and_name_documented_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("docs/grafana/seqd.json").unwrap()).unwrap();
    let documented = std::fs::read_to_string("docs/METRICS.md").unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    for (i, target) in panels.iter().flat_map(|p| p["targets"].as_array().unwrap()).enumerate() {
        let expr = target["expr"].as_str().unwrap();
        for name in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("seqd_")) {
            let base = ["_bucket", "_sum", "_count"].iter().fold(name, |n, suffix| n.strip_suffix(suffix).unwrap_or(n));
            assert!(documented.contains(&format!("`{base}`")), "{name} in the dashboard is not in docs/METRICS.md");
        }
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
    }
    if !promtool_present() {
        eprintln!("SKIPPED promtool check rules: promtool is not installed (tools/test.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard.rules.yml");
    std::fs::write(&path, &rules).unwrap();
    let out = Process::new("promtool").args(["check", "rules"]).arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "{rules}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// While the daemon recovers (made to take 3 s by a test-only fault), its endpoint is already up:
/// `/readyz` 503, `/healthz` 200, `seqd_phase{phase="starting"} 1`; once it serves, `/readyz` 200.
#[test]
fn readyz_is_503_while_recovering_and_200_once_serving() {
    let dir = tempfile::tempdir().unwrap();
    // A free port for the endpoint: its address must be known before the "listening" line.
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut child = Process::new(env!("CARGO_BIN_EXE_seqd"))
        .args(["run", "--data-dir", dir.path().to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", &metrics.to_string()])
        .env("RUST_LOG", "error")
        .env("SEQD_FAULT_RECOVERY_DELAY_MS", "3000")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let readyz = loop {
        if let Ok((code, _)) = get(metrics, "/readyz") {
            break code;
        }
        assert!(Instant::now() < deadline, "the endpoint never came up");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(readyz, 503, "ready while recovering");
    assert_eq!(get(metrics, "/healthz").unwrap().0, 200);
    assert_eq!(sample(&scrape(metrics), "seqd_phase{phase=\"starting\"}"), 1.0);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("seqd: listening on "), "{line}");
    assert_eq!(get(metrics, "/readyz").unwrap().0, 200);
    assert_eq!(sample(&scrape(metrics), "seqd_phase{phase=\"serving\"}"), 1.0);
    let guard = Terminated(child);
    drop(guard);
}
