//! Operations on a real data directory and the real `seqd` binary: journal retention (`seqd
//! journal archive`), the commands that refuse a directory a live writer holds, and the
//! daemon's start-up logs (address in use, no colour codes off a terminal, JSON lines).

use seqd::engine::Engine;
use seqd::pipeline::sequencer::{Sequencer, SequencerConfig};
use seqd::storage::event_log::EventLogReader;
use seqd::storage::journal::{self, Durability};
use seqd::storage::replay::{replay, DataDir, ReplayOptions};
use seqd::storage::retention::segments;
use seqd::testkit::workload::{self, exchange_core_mix, WorkloadSpec};
use std::path::Path;
use std::process::{Command as Process, Output};

const COMMANDS: usize = 20_000;
/// Small segments, so that the journals have many (the smallest the event log accepts).
const SEGMENT_SIZE_BYTES: u64 = 64 * 1024;

fn config() -> SequencerConfig {
    SequencerConfig { segment_size_bytes: SEGMENT_SIZE_BYTES, durability: Durability::PageCache }
}

/// An exchange-core mix written through the sequencer; returns its engine.
/// These tests take journal locks (`flock`) while others spawn `seqd`. A child forked by one test
/// holds copies of the other tests' descriptors until it execs, and with them their locks, for
/// an instant: a lock released by a dropped sequencer can still look held. One test at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_data_dir(dir: &Path) -> Engine {
    workload::write_data_dir(
        dir,
        config(),
        WorkloadSpec { accounts: 100, resting_orders: 300, commands: COMMANDS, seed: 7 },
    )
}

fn seqd(args: &[&str]) -> Output {
    Process::new(env!("CARGO_BIN_EXE_seqd")).args(args).env("RUST_LOG", "info").output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn first_seqs(dir: &Path) -> Vec<u64> {
    segments(dir).unwrap().iter().map(|s| s.first_seq).collect()
}

/// Everything from `from_seq` on reads back, in order, to `last_seq`.
fn events_read_from(events_dir: &Path, from_seq: u64, last_seq: u64) {
    let mut reader = EventLogReader::open(events_dir, from_seq).unwrap();
    let mut events = Vec::new();
    let mut expected = from_seq;
    while let Some((seq, _)) = reader.next(&mut events).unwrap() {
        assert_eq!(seq, expected);
        expected += 1;
    }
    assert_eq!(expected, last_seq + 1);
}

#[test]
fn archive_moves_only_what_the_snapshot_and_a_mirror_no_longer_need_and_recovery_still_works() {
    let _one_at_a_time = serial();
    let dir = tempfile::tempdir().unwrap();
    let archive = tempfile::tempdir().unwrap();
    let live = write_data_dir(dir.path());
    let data_dir = DataDir::new(dir.path());
    let (input_before, events_before) = (first_seqs(&data_dir.input()), first_seqs(&data_dir.events()));
    assert!(input_before.len() >= 4 && events_before.len() >= 8, "{input_before:?} {events_before:?}");

    // A snapshot at two thirds; a mirror (its checkpoint given as --keep-from) at one third.
    let snapshot_seq = live.last_seq() * 2 / 3;
    let mirror_checkpoint = live.last_seq() / 3;
    let (at_snapshot, _) =
        replay(&data_dir, ReplayOptions { to_seq: Some(snapshot_seq), ..Default::default() }).unwrap();
    data_dir.snapshots().write(&at_snapshot).unwrap();

    let keep_from = (mirror_checkpoint + 1).to_string();
    let to = archive.path().to_str().unwrap();
    let out = seqd(&["journal", "archive", dir.path().to_str().unwrap(), "--to", to, "--keep-from", &keep_from]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));

    // What is left starts at or below the keep seq, and everything archived is wholly below it.
    for (name, before) in [("input", &input_before), ("events", &events_before)] {
        let (left, gone) = (first_seqs(&dir.path().join(name)), first_seqs(&archive.path().join(name)));
        assert!(!gone.is_empty(), "{name}: nothing archived: {}", text(&out.stdout));
        assert!(left[0] <= mirror_checkpoint + 1, "{name} starts at {}", left[0]);
        assert!(left[0] > *gone.last().unwrap());
        let mut all = gone.clone();
        all.extend(&left);
        assert_eq!(&all, before, "{name}: every segment is in one place or the other");
    }

    // Verify, replay (from the snapshot) and the mirror's resumption all work on what is left.
    for log in ["input", "events"] {
        let out = seqd(&["journal", "verify", dir.path().to_str().unwrap(), "--log", log]);
        assert!(out.status.success(), "verify {log}: {}{}", text(&out.stdout), text(&out.stderr));
    }
    let (_, outcome) = replay(&data_dir, ReplayOptions { use_snapshot: true, ..Default::default() }).unwrap();
    assert_eq!((outcome.last_seq, outcome.state_hash), (live.last_seq(), live.state_hash()));
    assert_eq!(outcome.snapshot_seq, Some(snapshot_seq));
    events_read_from(&data_dir.events(), mirror_checkpoint + 1, live.last_seq());
    assert!(EventLogReader::open(&data_dir.events(), 1).is_err(), "a reader below the archive must not skip ahead");

    // Without the floor, the snapshot alone decides; the event log is archived up to it too.
    let out = seqd(&["journal", "archive", dir.path().to_str().unwrap(), "--delete"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    for name in ["input", "events"] {
        let left = first_seqs(&dir.path().join(name));
        assert!(left[0] <= snapshot_seq && left[0] > mirror_checkpoint + 1, "{name} starts at {}", left[0]);
    }

    // The sequencer recovers (same state, nothing regenerated) and goes on writing.
    let (mut sequencer, recovery) = Sequencer::open(&data_dir, config()).unwrap();
    assert_eq!(sequencer.engine().state_hash(), live.state_hash());
    assert_eq!(recovery.snapshot_seq, Some(snapshot_seq));
    assert_eq!(recovery.event_records_regenerated, 0);
    let workload = exchange_core_mix(WorkloadSpec { accounts: 100, resting_orders: 300, commands: 500, seed: 8 });
    for (i, command) in workload.commands.iter().enumerate() {
        sequencer.submit(10_000_000 + i as u64, command).unwrap();
    }
    sequencer.commit().unwrap();
    let last_seq = sequencer.engine().last_seq();
    let hash = sequencer.engine().state_hash();
    drop(sequencer);
    let (_, outcome) = replay(&data_dir, ReplayOptions { use_snapshot: true, ..Default::default() }).unwrap();
    assert_eq!((outcome.last_seq, outcome.state_hash), (last_seq, hash));
    events_read_from(&data_dir.events(), snapshot_seq, last_seq);
}

#[test]
fn archive_without_a_snapshot_keeps_everything() {
    let _one_at_a_time = serial();
    let dir = tempfile::tempdir().unwrap();
    write_data_dir(dir.path());
    let before = first_seqs(&dir.path().join("input"));
    let out = seqd(&["journal", "archive", dir.path().to_str().unwrap(), "--delete"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(first_seqs(&dir.path().join("input")), before);
    let out = seqd(&["journal", "archive", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--to ARCHIVE_DIR, or --delete"), "{}", text(&out.stderr));
}

#[test]
fn snapshot_and_archive_refuse_a_directory_a_writer_holds() {
    let _one_at_a_time = serial();
    let dir = tempfile::tempdir().unwrap();
    write_data_dir(dir.path());
    let data_dir = DataDir::new(dir.path());
    let snapshots_before = data_dir.snapshots().list().unwrap();
    let _held = journal::lock_dir(&data_dir.input()).unwrap(); // as a running daemon holds it
    for args in [
        vec!["snapshot", dir.path().to_str().unwrap()],
        vec!["journal", "archive", dir.path().to_str().unwrap(), "--delete"],
    ] {
        let out = seqd(&args);
        assert!(!out.status.success(), "{args:?} ran on a held directory");
        assert!(text(&out.stderr).contains("is seqd running?"), "{args:?}: {}", text(&out.stderr));
    }
    assert_eq!(data_dir.snapshots().list().unwrap(), snapshots_before);
}

#[test]
fn an_address_in_use_is_named_before_recovery_and_logs_carry_no_colour_codes() {
    let _one_at_a_time = serial();
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let run = |format: &str| {
        seqd(&[
            "--log-format",
            format,
            "run",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            &addr,
            "--metrics-listen",
            "127.0.0.1:0",
        ])
    };
    let out = run("text");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("gateway.listen {addr}")) && stderr.contains("in use"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in a log that is not a terminal: {stderr}");
    assert!(!stderr.contains("recovering"), "recovery ran before the port was bound: {stderr}");
    let starting = stderr.lines().find(|l| l.contains("starting seqd")).unwrap_or_else(|| panic!("{stderr}"));
    for field in [format!("version=\"{}\"", env!("CARGO_PKG_VERSION")), format!("data_dir={}", dir.path().display())] {
        assert!(starting.contains(&field), "{field} missing from {starting}");
    }

    let out = run("json");
    let stderr = text(&out.stderr);
    let log_lines: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("error: ")).collect();
    assert!(log_lines.iter().any(|l| l.contains("\"message\":\"starting seqd\"")), "{stderr}");
    for line in log_lines {
        assert!(line.starts_with('{') && line.ends_with('}') && line.contains("\"level\":"), "not a JSON line: {line}");
    }
}

#[test]
fn the_daemon_archives_by_its_retention_policy_and_warns_of_low_disk() {
    let _one_at_a_time = serial();
    let dir = tempfile::tempdir().unwrap();
    let live = write_data_dir(dir.path());
    let data_dir = DataDir::new(dir.path());
    let (at_snapshot, _) =
        replay(&data_dir, ReplayOptions { to_seq: Some(live.last_seq() / 2), ..Default::default() }).unwrap();
    data_dir.snapshots().write(&at_snapshot).unwrap();
    let input_before = first_seqs(&data_dir.input());

    // Every key the test relies on, so that the embedded defaults cannot change its meaning.
    let config = dir.path().join("seqd.toml");
    let toml = format!(
        "[data]\ndir = {data:?}\n[journal]\nsegment_size_bytes = {SEGMENT_SIZE_BYTES}\n\
         [snapshots]\nevery_commands = 0\n\
         [gateway]\nlisten = \"127.0.0.1:0\"\ncerts_dir = {certs:?}\ndev_certs = true\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\
         [retention]\nmode = \"delete\"\narchive_interval_s = 1\ndisk_check_interval_s = 1\n\
         warn_free_bytes = 9223372036854775807\n",
        data = dir.path().display().to_string(),
        certs = dir.path().join("certs").display().to_string(),
    );
    std::fs::write(&config, toml).unwrap();
    let log = dir.path().join("seqd.log");
    let mut child = Process::new(env!("CARGO_BIN_EXE_seqd"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert!(line.starts_with("seqd: listening on "), "{line:?}: {}", std::fs::read_to_string(&log).unwrap());

    // The first round is one interval after the start; give a loaded machine ample time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // A listing can fail while the daemon removes the segment it names: that is a change too.
    let unchanged = || segments(&data_dir.input()).is_ok_and(|s| s[0].first_seq == input_before[0]);
    while unchanged() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("disk space low"), "{stderr}");
    assert!(stderr.contains("journal segments archived"), "{stderr}");
    let left = first_seqs(&data_dir.input());
    assert!(left[0] > input_before[0] && left[0] <= live.last_seq() / 2, "input starts at {}", left[0]);
    assert!(first_seqs(&data_dir.events())[0] > 1);

    let (_, outcome) = replay(&data_dir, ReplayOptions { use_snapshot: true, ..Default::default() }).unwrap();
    assert_eq!((outcome.last_seq, outcome.state_hash), (live.last_seq(), live.state_hash()));
}

/// A ClickHouse database of this test's own (tools/services.sh's server, or
/// SEQD_TEST_CLICKHOUSE_URL), dropped at the end.
struct ClickHouseDb {
    url: String,
    name: String,
}

impl ClickHouseDb {
    fn new() -> ClickHouseDb {
        let url = std::env::var("SEQD_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".to_string());
        ClickHouseDb { url, name: seqd::testkit::test_db::database_name("ops_ch") }
    }
}

impl Drop for ClickHouseDb {
    fn drop(&mut self) {
        let client = clickhouse::Client::default().with_url(&self.url).with_validation(false);
        let sql = format!("DROP DATABASE IF EXISTS `{}`", self.name);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        if let Err(e) = runtime.block_on(client.query(&sql).execute()) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

#[test]
fn a_mirror_resumes_past_archived_segments_and_still_reconciles() {
    let _one_at_a_time = serial();
    let dir = tempfile::tempdir().unwrap();
    let live = write_data_dir(dir.path());
    let data_dir = DataDir::new(dir.path());
    let db = ClickHouseDb::new();
    let config = dir.path().join("seqd.toml");
    let toml = format!(
        "[data]\ndir = {data:?}\n[replicate.clickhouse]\nenabled = true\nurl = {url:?}\ndatabase = {name:?}\n\
         max_records = 500\n",
        data = dir.path().display().to_string(),
        url = db.url,
        name = db.name,
    );
    std::fs::write(&config, toml).unwrap();
    let config = config.to_str().unwrap();

    // The mirror stops at a third (small batches, so it stops near it); the snapshot is at two
    // thirds.
    let checkpoint = live.last_seq() / 3;
    let out = seqd(&["replicate", "--config", config, "--until", &checkpoint.to_string()]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let (at_snapshot, _) =
        replay(&data_dir, ReplayOptions { to_seq: Some(live.last_seq() * 2 / 3), ..Default::default() }).unwrap();
    data_dir.snapshots().write(&at_snapshot).unwrap();

    // The archive reads the mirror's checkpoint from ClickHouse itself and keeps the event log
    // from just after it (the mirror may have replicated a little past --until: whole batches).
    let out = seqd(&["journal", "archive", dir.path().to_str().unwrap(), "--delete", "--config", config]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let mirrored: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("mirror clickhouse: checkpoint "))
        .unwrap_or_else(|| panic!("{stdout}"))
        .parse()
        .unwrap();
    assert!(mirrored >= checkpoint && mirrored < live.last_seq(), "{stdout}");
    let events_first = first_seqs(&data_dir.events())[0];
    assert!(events_first > 1 && events_first <= mirrored + 1, "events start at {events_first}: {stdout}");
    assert!(first_seqs(&data_dir.input())[0] > events_first, "the input journal goes up to the snapshot");

    // The mirror resumes where it was, past the archived segments, to the end; and agrees.
    let out = seqd(&["replicate", "--config", config, "--until", &live.last_seq().to_string()]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let out = seqd(&["reconcile", "--config", config]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("checkpoint {}", live.last_seq())), "{}", text(&out.stdout));
}
