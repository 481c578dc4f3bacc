//! Golden journals: `journal/golden/v1` was written once by `seqd journal golden` from the
//! scripted session. Every later version must replay it to the recorded state hash, and must
//! still write exactly these bytes for that session. A change to the engine's outcome, the
//! command or event encoding, or the journal format fails here unless the golden files are
//! deliberately versioned (a new `vN` directory, the old one kept for replay).

use seqd::codec;
use seqd::journal::{verify, JournalReader};
use seqd::replay::{apply_journal, replay, DataDir, ReplayOptions};
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("journal/golden/v1")
}

fn expected() -> (u64, String) {
    let text = std::fs::read_to_string(golden_dir().join("expected.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    (json["last_seq"].as_u64().unwrap(), json["state_hash"].as_str().unwrap().to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn golden_journal_is_intact_and_replays_to_the_recorded_state() {
    let data_dir = DataDir::new(golden_dir());
    assert_eq!(verify(&data_dir.input()).unwrap().last_seq, 41);
    assert_eq!(verify(&data_dir.events()).unwrap().last_seq, 41);
    let (engine, outcome) = replay(&data_dir, ReplayOptions::default()).unwrap();
    let (last_seq, state_hash) = expected();
    assert_eq!(outcome.last_seq, last_seq);
    assert_eq!(hex(&outcome.state_hash), state_hash);
    engine.check_invariants().unwrap();
}

#[test]
fn golden_event_log_equals_the_replayed_events() {
    let data_dir = DataDir::new(golden_dir());
    let mut events_reader = JournalReader::open(&data_dir.events(), 1).unwrap();
    let mut logged = Vec::new();
    let mut compared = 0;
    let mut engine = seqd::engine::Engine::new();
    apply_journal(&mut engine, &data_dir.input(), None, false, |seq, timestamp_ns, events| {
        let record = events_reader.next().unwrap().expect("an event record per command");
        assert_eq!((record.seq, record.timestamp_ns), (seq, timestamp_ns));
        logged.clear();
        codec::decode_event_record(record.payload, &mut logged).unwrap();
        assert_eq!(logged, events, "events of seq {seq}");
        compared += 1;
    })
    .unwrap();
    assert_eq!(compared, 41);
}

#[test]
fn the_scripted_session_still_writes_the_golden_bytes() {
    let fresh = tempfile::tempdir().unwrap();
    let out = fresh.path().join("v1");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_seqd"))
        .args(["journal", "golden", out.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    for log in ["input", "events"] {
        let name = "00000000000000000001.seg";
        let golden = std::fs::read(golden_dir().join(log).join(name)).unwrap();
        let written = std::fs::read(out.join(log).join(name)).unwrap();
        assert!(golden == written, "{log} segment differs from the golden file");
    }
}
