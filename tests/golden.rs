//! Golden journals: `journal/golden/vN` were each written once by `seqd journal golden` from the
//! scripted session (`journal/FORMAT.md` §10.4). Every later version must replay each of them to
//! its recorded state hash, must still decode their event logs, and must write exactly the bytes
//! of the newest one for that session. A change to the engine's outcome, the command or event
//! encoding, or the journal format fails here unless the golden files are deliberately versioned
//! (a new `vN` directory, the old ones kept for replay).

use seqd::engine::Event;
use seqd::storage::journal::{verify, JournalReader};
use seqd::storage::replay::{apply_journal, replay, DataDir, ReplayOptions};
use seqd::wire::codec;
use std::path::{Path, PathBuf};

/// Every golden version, oldest first; the last is what this version writes.
const VERSIONS: [&str; 2] = ["v1", "v2"];
const NEWEST: &str = "v2";

fn golden_dir(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("journal/golden").join(version)
}

fn expected(version: &str) -> (u64, String) {
    let text = std::fs::read_to_string(golden_dir(version).join("expected.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    (json["last_seq"].as_u64().unwrap(), json["state_hash"].as_str().unwrap().to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn golden_journals_are_intact_and_replay_to_their_recorded_state() {
    for version in VERSIONS {
        let data_dir = DataDir::new(golden_dir(version));
        assert_eq!(verify(&data_dir.input()).unwrap().last_seq, 41, "{version}");
        assert_eq!(verify(&data_dir.events()).unwrap().last_seq, 41, "{version}");
        let (engine, outcome) = replay(&data_dir, ReplayOptions::default()).unwrap();
        let (last_seq, state_hash) = expected(version);
        assert_eq!(outcome.last_seq, last_seq, "{version}");
        assert_eq!(hex(&outcome.state_hash), state_hash, "{version}");
        engine.check_invariants().unwrap();
    }
}

/// Compares a golden event log with the events the current engine produces for its input,
/// record by record. `adapt` maps a replayed event to what that version could record.
fn compare_event_log(version: &str, adapt: impl Fn(Event) -> Event) {
    let data_dir = DataDir::new(golden_dir(version));
    let mut events_reader = JournalReader::open(&data_dir.events(), 1).unwrap();
    let mut logged = Vec::new();
    let mut compared = 0;
    let mut engine = seqd::engine::Engine::new();
    apply_journal(&mut engine, &data_dir.input(), None, false, |seq, timestamp_ns, events| {
        let record = events_reader.next().unwrap().expect("an event record per command");
        assert_eq!((record.seq, record.timestamp_ns), (seq, timestamp_ns));
        logged.clear();
        codec::decode_event_record(record.payload, &mut logged).unwrap();
        let replayed: Vec<Event> = events.iter().copied().map(&adapt).collect();
        assert_eq!(logged, replayed, "{version}: events of seq {seq}");
        compared += 1;
    })
    .unwrap();
    assert_eq!(compared, 41);
}

#[test]
fn the_newest_golden_event_log_equals_the_replayed_events() {
    compare_event_log(NEWEST, |event| event);
}

/// `v1` order reports had no `stop_price` (an 82-byte body): they still decode, with 0 there,
/// and everything else is what the engine produces today.
#[test]
fn the_v1_event_log_still_decodes_and_differs_only_by_the_stop_price() {
    let stop_reports = std::cell::Cell::new(0);
    compare_event_log("v1", |event| match event {
        Event::Order(report) => {
            stop_reports.set(stop_reports.get() + usize::from(report.stop_price != 0));
            Event::Order(seqd::engine::OrderReport { stop_price: 0, ..report })
        }
        other => other,
    });
    // The session has stop orders, so the versions really differ there.
    assert!(stop_reports.get() > 0);
}

#[test]
fn the_scripted_session_still_writes_the_golden_bytes() {
    let fresh = tempfile::tempdir().unwrap();
    let out = fresh.path().join(NEWEST);
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_seqd"))
        .args(["journal", "golden", out.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    for log in ["input", "events"] {
        let name = "00000000000000000001.seg";
        let golden = std::fs::read(golden_dir(NEWEST).join(log).join(name)).unwrap();
        let written = std::fs::read(out.join(log).join(name)).unwrap();
        assert!(golden == written, "{log} segment differs from the golden file");
    }
    // Only the event log's format changed since v1: the input journal is the same.
    let name = "input/00000000000000000001.seg";
    assert!(std::fs::read(golden_dir("v1").join(name)).unwrap() == std::fs::read(out.join(name)).unwrap());
}
