//! A dead or stuck pipeline stops the daemon and systemd sees it; a command that panics the
//! engine is refused by name at recovery until an operator cuts it out of the journal.
//!
//! Each test runs the real `seqd run` binary with systemd's notification socket pointed at a
//! datagram socket of the test, and arms a fault through the test-only `fault-injection`
//! feature (src/pipeline/fault.rs; test builds have it, `cargo build` does not).

#[path = "common/daemon.rs"]
mod daemon;

use daemon::{balances, connect, listening_addr, runtime, set_up_venue, SeqdProcess, USDT};
use seqd::client::Client;
use seqd::engine::{AccountId, AssetId, Command};
use seqd::pipeline::sequencer::{Sequencer, SequencerConfig};
use seqd::storage::journal::{verify, Durability};
use seqd::storage::replay::DataDir;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitStatus, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a failing daemon may take to exit (debug builds on a loaded 2-core machine).
const EXIT_WITHIN: Duration = Duration::from_secs(30);
/// Exit codes of `seqd run` (src/daemon/mod.rs `RunError`).
const EXIT_POISON: i32 = 3;
const EXIT_FAILED: i32 = 4;
/// `set_up_venue` sends seven commands: the next one is 8.
const FIRST_AFTER_SETUP: u64 = 8;

/// Stands in for systemd: a thread receives what the daemon sends to `NOTIFY_SOCKET` as it
/// comes (the socket's queue is short).
struct Notify {
    received: Arc<Mutex<Vec<String>>>,
    path: PathBuf,
}

impl Notify {
    fn bind(dir: &Path) -> Notify {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(len) = socket.recv(&mut buffer) {
                sink.lock().unwrap().push(String::from_utf8_lossy(&buffer[..len]).into_owned());
            }
        });
        Notify { received, path }
    }

    /// Every message received since the last call, in order.
    fn messages(&self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(200)); // let the reader catch up
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

/// A `seqd run` process with its stderr in a file.
struct Seqd {
    process: SeqdProcess,
    addr: Option<SocketAddr>,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Seqd {
    /// Starts the daemon on `data_dir` (stall limit 1 s, watchdog every 100 ms) with the given
    /// extra environment; `addr` is `None` when it exited before serving.
    fn start(data_dir: &Path, notify: &Notify, env: &[(&str, String)]) -> Seqd {
        let root = data_dir.parent().unwrap();
        let config = root.join("seqd.toml");
        let text = seqd::config::DEFAULT_CONFIG_TOML.replace("stall_limit_ms = 5000", "stall_limit_ms = 1000");
        assert_ne!(text, seqd::config::DEFAULT_CONFIG_TOML, "the default configuration names stall_limit_ms");
        std::fs::write(&config, text).unwrap();
        let runs = std::fs::read_dir(root).unwrap().count();
        let log = root.join(format!("seqd-{runs}.log"));
        let mut env = env.to_vec();
        env.push(("NOTIFY_SOCKET", notify.path.to_str().unwrap().to_string()));
        env.push(("WATCHDOG_USEC", "200000".to_string()));
        let (process, line) = SeqdProcess::spawn(data_dir, &["--config", config.to_str().unwrap()], &env, Some(&log));
        Seqd { process, addr: listening_addr(&line), data_dir: data_dir.to_path_buf(), log }
    }

    async fn client(&self, principal: &str) -> Client {
        connect(self.addr.expect("the daemon serves"), &self.data_dir.join("certs"), principal).await
    }

    /// Waits for the process to exit on its own, at most `EXIT_WITHIN`.
    fn wait_exit(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.process.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < EXIT_WITHIN,
                "seqd is still running {EXIT_WITHIN:?} after the fault:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(self) {
        let status = self.process.terminate();
        assert!(status.success(), "seqd run exited with {status}:\n{}", std::fs::read_to_string(&self.log).unwrap());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

fn deposit(external_ref: u64) -> Command {
    Command::Deposit { account: AccountId(1), asset: AssetId(USDT), amount: 1_000_000, external_ref }
}

/// systemd saw the daemon serve and be petted while healthy, then `STOPPING=1` and a `STATUS=`
/// naming `cause`, and no watchdog pet after either.
fn assert_failure_notified(messages: &[String], cause: &str) {
    assert!(messages.iter().any(|m| m == "READY=1"), "{messages:?}");
    assert!(messages.iter().any(|m| m.starts_with("STATUS=serving: seq ")), "{messages:?}");
    let failed = messages
        .iter()
        .position(|m| m.starts_with("STATUS=failed: ") && m.contains(cause))
        .unwrap_or_else(|| panic!("no STATUS=failed naming {cause:?} in {messages:?}"));
    let stopping = messages.iter().position(|m| m == "STOPPING=1").unwrap_or_else(|| panic!("{messages:?}"));
    assert!(messages[..stopping].iter().any(|m| m == "WATCHDOG=1"), "never petted while healthy: {messages:?}");
    assert!(
        !messages[stopping.min(failed)..].iter().any(|m| m == "WATCHDOG=1"),
        "petted after the failure: {messages:?}"
    );
}

/// `seqd <args>` to completion.
fn seqd_cli(args: &[&str], env: &[(&str, String)]) -> Output {
    Process::new(env!("CARGO_BIN_EXE_seqd"))
        .args(args)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap()
}

/// `seqd replay DIR --json [extra]`: (last_seq, state_hash, snapshot_seq).
fn replay(dir: &Path, extra: &[&str]) -> (u64, String, Option<u64>) {
    let mut args = vec!["replay", dir.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = seqd_cli(&args, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    (
        json["last_seq"].as_u64().unwrap(),
        json["state_hash"].as_str().unwrap().to_string(),
        json["snapshot_seq"].as_u64(),
    )
}

#[test]
fn a_processor_panic_stops_the_daemon_and_systemd_sees_why() {
    let dir = tempfile::tempdir().unwrap();
    let notify = Notify::bind(dir.path());
    let fault = [("SEQD_FAULT_PANIC_AT_SEQ", FIRST_AFTER_SETUP.to_string())];
    let mut seqd = Seqd::start(&dir.path().join("data"), &notify, &fault);
    runtime().block_on(async {
        let mut admin = seqd.client("admin").await;
        set_up_venue(&mut admin).await;
        tokio::time::sleep(Duration::from_millis(300)).await; // a few watchdog pets while healthy
        let poisoned = tokio::time::timeout(EXIT_WITHIN, admin.command(deposit(99))).await;
        assert!(!matches!(poisoned, Ok(Ok(_))), "the command that panicked was answered: {poisoned:?}");
    });
    let status = seqd.wait_exit();
    let log = seqd.log();
    assert_eq!(status.code(), Some(EXIT_FAILED), "{log}");
    assert!(log.contains("pipeline failed: processor panicked applying command 8 (Deposit {"), "{log}");
    assert!(log.contains("injected fault: command 8 panics"), "{log}");
    assert_failure_notified(&notify.messages(), "processor panicked applying command 8");
}

#[test]
fn a_responder_panic_stops_the_daemon_and_a_restart_serves_what_was_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let notify = Notify::bind(dir.path());
    let fault = [("SEQD_FAULT_RESPONDER_PANIC_AT_SEQ", FIRST_AFTER_SETUP.to_string())];
    let mut seqd = Seqd::start(&data, &notify, &fault);
    runtime().block_on(async {
        let mut admin = seqd.client("admin").await;
        set_up_venue(&mut admin).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let unanswered = tokio::time::timeout(EXIT_WITHIN, admin.command(deposit(99))).await;
        assert!(!matches!(unanswered, Ok(Ok(_))), "answered by a responder that panicked: {unanswered:?}");
    });
    let status = seqd.wait_exit();
    let log = seqd.log();
    assert_eq!(status.code(), Some(EXIT_FAILED), "{log}");
    assert!(log.contains("pipeline failed: responder panicked: injected fault: the responder panics at 8"), "{log}");
    assert_failure_notified(&notify.messages(), "responder panicked");

    // Not a poison command: the deposit was journaled and applied, and recovery replays it.
    let seqd = Seqd::start(&data, &notify, &[]);
    runtime().block_on(async {
        let mut admin = seqd.client("admin").await;
        let usdt = balances(&mut admin, 1).await.into_iter().find(|b| b.asset == AssetId(USDT)).unwrap();
        assert_eq!(usdt.available, 100_000_000_000 + 1_000_000);
    });
    seqd.stop();
    // A graceful stop says so too.
    let messages = notify.messages();
    let stopping = messages.iter().position(|m| m == "STOPPING=1").unwrap_or_else(|| panic!("{messages:?}"));
    assert_eq!(messages[stopping + 1], "STATUS=stopping: draining the pipeline", "{messages:?}");
    assert_eq!(messages.last().map(String::as_str), Some("STATUS=stopped at seq 8"), "{messages:?}");
    assert!(!messages.iter().any(|m| m.starts_with("STATUS=failed")), "{messages:?}");
}

#[test]
fn a_journaler_stalled_under_load_stops_the_daemon_and_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let notify = Notify::bind(dir.path());
    let fault = [("SEQD_FAULT_STALL_JOURNALER_AT_SEQ", "20".to_string())];
    let mut seqd = Seqd::start(&dir.path().join("data"), &notify, &fault);
    runtime().block_on(async {
        let mut admin = seqd.client("admin").await;
        set_up_venue(&mut admin).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Load: batches of deposits sent without waiting for answers, until the daemon is gone.
        let load = async {
            for batch in 0u64.. {
                let messages: Vec<_> =
                    (0..50).map(|i| seqd::protocol::Message::Command(deposit(batch * 50 + i))).collect();
                if admin.send_batch(&messages).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let _ = tokio::time::timeout(EXIT_WITHIN, load).await;
    });
    let status = seqd.wait_exit();
    let log = seqd.log();
    assert_eq!(status.code(), Some(EXIT_FAILED), "{log}");
    assert!(log.contains("pipeline failed: journaler made no progress for "), "{log}");
    assert!(log.contains(" queued"), "{log}");
    assert_failure_notified(&notify.messages(), "journaler made no progress for ");
}

#[test]
fn recovery_refuses_a_poison_command_by_name_until_the_journal_is_cut_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let notify = Notify::bind(dir.path());
    // The fault stands for an engine bug: every process that applies command 8 panics.
    let fault = [("SEQD_FAULT_PANIC_AT_SEQ", FIRST_AFTER_SETUP.to_string())];
    let mut seqd = Seqd::start(&data, &notify, &fault);
    runtime().block_on(async {
        let mut admin = seqd.client("admin").await;
        set_up_venue(&mut admin).await;
        let _ = tokio::time::timeout(EXIT_WITHIN, admin.command(deposit(99))).await;
    });
    assert_eq!(seqd.wait_exit().code(), Some(EXIT_FAILED), "{}", seqd.log());
    let _ = notify.messages();

    // A restart meets the same command in the journal: it refuses, with its own exit code,
    // naming the sequence, the command and the panic, and the way out.
    for _ in 0..2 {
        let mut refused = Seqd::start(&data, &notify, &fault);
        assert_eq!(refused.addr, None, "started on a poison command");
        let log = refused.log();
        assert_eq!(refused.wait_exit().code(), Some(EXIT_POISON), "{log}");
        assert!(log.contains("recovery refused: command 8 panicked when applied: Deposit {"), "{log}");
        assert!(log.contains("external_ref: 99"), "{log}");
        assert!(log.contains("injected fault: command 8 panics"), "{log}");
        assert!(log.contains(&format!("seqd journal truncate {data_arg} --before 8")), "{log}");
        let messages = notify.messages();
        assert!(messages.iter().any(|m| m == "STATUS=refused to start: command 8 panics when applied"), "{messages:?}");
        assert!(!messages.iter().any(|m| m == "READY=1"), "{messages:?}");
    }
    // Offline replay refuses it the same way.
    let out = seqd_cli(&["replay", data_arg], &fault);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("command 8 panicked when applied"));

    let reference = replay(&data, &["--no-snapshot", "--to", "7"]);
    let cut = seqd_cli(&["journal", "truncate", data_arg, "--before", "8"], &[]);
    let cut_out = String::from_utf8_lossy(&cut.stdout);
    assert!(cut.status.success(), "{cut_out}{}", String::from_utf8_lossy(&cut.stderr));
    assert!(cut_out.contains("8: Deposit {"), "{cut_out}");
    assert!(cut_out.contains("input journal: removed commands 8..="), "{cut_out}");

    // The same fault armed: recovery no longer reaches a command 8, and the daemon serves.
    let seqd = Seqd::start(&data, &notify, &fault);
    assert!(seqd.addr.is_some(), "did not start after the cut:\n{}", seqd.log());
    let locked = seqd_cli(&["journal", "truncate", data_arg, "--before", "5"], &[]);
    assert!(!locked.status.success(), "truncated under a running daemon");
    assert!(String::from_utf8_lossy(&locked.stderr).contains("is seqd running?"));
    runtime().block_on(async {
        let mut admin = seqd.client("admin").await;
        let usdt = balances(&mut admin, 1).await.into_iter().find(|b| b.asset == AssetId(USDT)).unwrap();
        assert_eq!(usdt.available, 100_000_000_000, "the cut deposit is not in the state");
    });
    seqd.stop();

    // The daemon's final state (its shutdown snapshot) equals an offline replay of the cut
    // journal, and the state before the poison command.
    let from_snapshot = replay(&data, &[]);
    assert_eq!(from_snapshot.2, Some(7), "the daemon wrote its shutdown snapshot at 7");
    assert_eq!(from_snapshot, (reference.0, reference.1.clone(), Some(7)));
    assert_eq!(replay(&data, &["--no-snapshot"]).1, reference.1);
}

#[test]
fn truncate_cuts_both_logs_across_segments_and_the_writer_continues_after_the_cut() {
    const COMMANDS: u64 = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    // 5,000 small commands (one asset, then rejected deposits) in the smallest segments allowed
    // we use (64 KiB): about 1,000 a segment.
    let config = SequencerConfig { segment_size_bytes: 1 << 16, durability: Durability::Fsync };
    let (mut sequencer, _) = Sequencer::open(&DataDir::new(&original), config).unwrap();
    sequencer.submit(1, &Command::CreateAsset { asset: AssetId(USDT), scale: 6 }).unwrap();
    for i in 2..=COMMANDS {
        sequencer.submit(i, &deposit(i)).unwrap();
    }
    sequencer.commit().unwrap();
    drop(sequencer);
    let segments = |dir: &Path| -> Vec<u64> {
        let mut firsts: Vec<u64> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter_map(|e| seqd::storage::journal::format::parse_segment_file_name(e.file_name().to_str()?))
            .collect();
        firsts.sort();
        firsts
    };
    let input_segments = segments(&DataDir::new(&original).input());
    assert!(input_segments.len() >= 4, "{input_segments:?}");
    // A cut at a segment's first record, and one in the middle of a segment.
    for before in [input_segments[2], input_segments[1] + 1] {
        let copy = dir.path().join(format!("cut-{before}"));
        copy_dir(&original, &copy);
        let out = seqd_cli(&["journal", "truncate", copy.to_str().unwrap(), "--before", &before.to_string()], &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let data_dir = DataDir::new(&copy);
        assert_eq!(verify(&data_dir.input()).unwrap().last_seq, before - 1);
        assert_eq!(verify(&data_dir.events()).unwrap().last_seq, before - 1);
        assert!(segments(&data_dir.input()).iter().all(|&first| first <= before));
        let expected = replay(&original, &["--no-snapshot", "--to", &(before - 1).to_string()]);
        assert_eq!(replay(&copy, &["--no-snapshot"]), expected);

        // The writer opens the cut journal and appends after it: the chain stays intact.
        let (mut sequencer, _) = Sequencer::open(&data_dir, config).unwrap();
        assert_eq!(sequencer.submit(10_000, &deposit(10_000)).unwrap(), before);
        sequencer.commit().unwrap();
        drop(sequencer);
        assert_eq!(verify(&data_dir.input()).unwrap().last_seq, before);
        assert_eq!(verify(&data_dir.events()).unwrap().last_seq, before);

        // Nothing at or after `before + 1` now: nothing to cut, nothing changes.
        let again =
            seqd_cli(&["journal", "truncate", copy.to_str().unwrap(), "--before", &(before + 1).to_string()], &[]);
        assert!(again.status.success());
        assert_eq!(verify(&data_dir.input()).unwrap().last_seq, before);
    }
    let refused = seqd_cli(&["journal", "truncate", original.to_str().unwrap(), "--before", "0"], &[]);
    assert!(!refused.status.success());
    assert_eq!(verify(&DataDir::new(&original).input()).unwrap().last_seq, COMMANDS);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
