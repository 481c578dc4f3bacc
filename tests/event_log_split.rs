//! Issue #9 §2: no command's events can fail to be journaled. A `CancelAll` of many resting
//! orders produces an event list larger than a segment; it is split into parts
//! (`journal/FORMAT.md` 10.3), the daemon keeps serving, restarts, and its state equals an
//! offline replay. A crash in the middle of writing the parts is recovered to a complete log.

#[path = "common/daemon.rs"]
mod daemon;

use daemon::{balances, limit, runtime, set_up_venue, venue_spec, Daemon};
use seqd::engine::{AccountId, AssetId, Command, Engine, Event, ExecKind, Side, SymbolId};
use seqd::pipeline::sequencer::{Sequencer, SequencerConfig};
use seqd::storage::event_log::{parts_dir, EventLogReader, MIN_SEGMENT_SIZE_BYTES};
use seqd::storage::journal::{Durability, JournalReader};
use seqd::storage::replay::{apply_journal, DataDir};
use seqd::wire::codec::{EVENTS_SPLIT_RECORD_KIND, MAX_EVENT_RECORD_PAYLOAD_BYTES};
use std::path::Path;
use std::process::Command as Process;

/// Resting orders whose cancellation makes an event list (an order report and a release per
/// order, 142 bytes) larger than the smallest segment (16 KiB) and than the 64 KiB of the first tests: 85 KB.
const RESTING_ORDERS: i64 = 600;

fn seqd(args: &[&str]) -> std::process::Output {
    Process::new(env!("CARGO_BIN_EXE_seqd")).args(args).env("RUST_LOG", "error").output().unwrap()
}

/// `seqd replay DIR --json [extra]`: (last seq, state hash).
fn offline_replay(dir: &Path, extra: &[&str]) -> (u64, String) {
    let out = seqd(&[&["replay", dir.to_str().unwrap(), "--json"], extra].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let json: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    (json["last_seq"].as_u64().unwrap(), json["state_hash"].as_str().unwrap().to_string())
}

/// Every command's events in the event log (reassembled) equal what a replay of the input
/// produces; returns how many records are split.
fn assert_event_log_matches_replay(data_dir: &DataDir) -> usize {
    let mut reader = EventLogReader::open(&data_dir.events(), 1).unwrap();
    let mut raw = JournalReader::open(&data_dir.events(), 1).unwrap();
    let (mut logged, mut compared, mut split) = (Vec::new(), 0u64, 0);
    let mut engine = Engine::new();
    apply_journal(&mut engine, &data_dir.input(), None, false, |seq, timestamp_ns, events| {
        let head = reader.next(&mut logged).unwrap().unwrap_or_else(|| panic!("no event record {seq}"));
        assert_eq!(head, (seq, timestamp_ns));
        assert_eq!(logged, events, "events of seq {seq}");
        split += usize::from(raw.next().unwrap().unwrap().kind == EVENTS_SPLIT_RECORD_KIND);
        compared += 1;
    })
    .unwrap();
    assert!(reader.next(&mut logged).unwrap().is_none(), "the event log has a record past the input");
    assert_eq!(compared, engine.last_seq());
    split
}

fn cancelled(events: &[Event]) -> usize {
    events.iter().filter(|e| matches!(e, Event::Order(o) if o.exec == ExecKind::Cancelled)).count()
}

#[test]
fn a_cancel_all_larger_than_a_segment_is_journaled_served_and_replayed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("seqd.toml");
    let small_segments = seqd::config::DEFAULT_CONFIG_TOML
        .replace("segment_size_bytes = 67108864", &format!("segment_size_bytes = {MIN_SEGMENT_SIZE_BYTES}"));
    assert_ne!(small_segments, seqd::config::DEFAULT_CONFIG_TOML, "the default config names its segment size");
    std::fs::write(&config, small_segments).unwrap();
    let data = dir.path().join("data");
    let start = || Daemon::start_with(&data, &["--config", config.to_str().unwrap()]);

    let daemon = start();
    let (cancel_seq, after_cancel) = runtime().block_on(async {
        let mut admin = daemon.client("admin").await;
        set_up_venue(&mut admin).await;
        let mut trader1 = daemon.client("trader1").await;
        for i in 0..RESTING_ORDERS {
            let outcome = trader1.command(limit(1, Side::Buy, 29_000_000_000 - i * 10_000, 10_000)).await.unwrap();
            assert_eq!(outcome.rejected(), None);
        }
        let cancel =
            trader1.command(Command::CancelAll { account: AccountId(1), symbol: SymbolId::ALL }).await.unwrap();
        assert_eq!(cancelled(&cancel.events), RESTING_ORDERS as usize, "every resting order is cancelled");
        // The venue keeps serving after it.
        let next = trader1.command(limit(1, Side::Buy, 28_000_000_000, 10_000)).await.unwrap();
        assert_eq!((next.seq, next.rejected()), (cancel.seq + 1, None));
        let seen = balances(&mut trader1, 1).await;
        admin.close().await;
        trader1.close().await;
        (cancel.seq, seen)
    });
    daemon.stop();

    // The restart recovers (the old code failed here: "journal record too large").
    let daemon = start();
    runtime().block_on(async {
        let mut trader1 = daemon.client("trader1").await;
        assert_eq!(balances(&mut trader1, 1).await, after_cancel);
        let next = trader1.command(limit(1, Side::Buy, 28_000_000_000, 10_000)).await.unwrap();
        assert_eq!((next.seq, next.rejected()), (cancel_seq + 2, None));
        trader1.close().await;
    });
    daemon.stop();

    // The state the restarted daemon snapshotted at its stop equals a replay from scratch.
    let (scratch_seq, scratch_hash) = offline_replay(&data, &["--no-snapshot"]);
    assert_eq!(scratch_seq, cancel_seq + 2);
    assert_eq!(offline_replay(&data, &[]), (scratch_seq, scratch_hash));
    // The event log holds the split list, whole, and `seqd journal verify` checks it.
    let data_dir = DataDir::new(&data);
    assert_eq!(assert_event_log_matches_replay(&data_dir), 1, "exactly the CancelAll is split");
    let verify = seqd(&["journal", "verify", data.to_str().unwrap(), "--log", "events"]);
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{stdout}{}", String::from_utf8_lossy(&verify.stderr));
    assert!(stdout.contains("1 of them split into parts"), "{stdout}");
    // `seqd journal inspect` shows the split list whole.
    let seq = cancel_seq.to_string();
    let inspect =
        seqd(&["journal", "inspect", data.to_str().unwrap(), "--log", "events", "--from", &seq, "--to", &seq]);
    let stdout = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.status.success());
    let head = stdout.lines().next().unwrap_or_default();
    let whole = format!("{} events (split into parts, reassembled)", 2 * RESTING_ORDERS);
    assert!(head.starts_with(&format!("seq {cancel_seq} ")) && head.ends_with(&whole), "{head}");
    assert_eq!(stdout.lines().count(), 1 + 2 * RESTING_ORDERS as usize);
}

/// A venue, `RESTING_ORDERS` resting buys, their `CancelAll` (split) and one more order.
fn session() -> Vec<Command> {
    let mut commands = vec![
        Command::CreateAsset { asset: AssetId(1), scale: 8 },
        Command::CreateAsset { asset: AssetId(2), scale: 6 },
        Command::CreateSymbol(venue_spec(0, 0)),
        Command::CreateAccount { account: AccountId(1), parent: AccountId::NONE, owner: 1 },
        Command::Deposit { account: AccountId(1), asset: AssetId(2), amount: 100_000_000_000, external_ref: 1 },
    ];
    commands.extend((0..RESTING_ORDERS).map(|i| limit(1, Side::Buy, 29_000_000_000 - i * 10_000, 10_000)));
    commands.push(Command::CancelAll { account: AccountId(1), symbol: SymbolId::ALL });
    commands.push(limit(1, Side::Buy, 28_000_000_000, 10_000));
    commands
}

const SEGMENT_BYTES: u64 = 1 << 20;

/// Offsets of the records of the one-segment journal in `dir` by seq (walking FORMAT.md §3).
fn record_offsets(dir: &Path) -> (std::path::PathBuf, Vec<(u64, usize)>) {
    let mut segments: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    assert_eq!(segments.len(), 1, "the test keeps each journal in one segment");
    let path = segments.pop().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (mut offsets, mut at) = (Vec::new(), 64);
    while at + 8 <= bytes.len() && bytes[at..at + 8] != [0; 8] {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        offsets.push((u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap()), at));
        at += (32 + len).div_ceil(8) * 8;
    }
    (path, offsets)
}

/// What a power cut leaves when only a prefix of the writes reached the disk: zeros from
/// `offset` to the end of the file (the writer preallocates, so a lost write reads as zeros).
fn zero_from(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset..].fill(0);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_crash_in_the_middle_of_a_split_list_is_recovered_to_a_complete_event_log() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    let config = SequencerConfig { segment_size_bytes: SEGMENT_BYTES, durability: Durability::Fsync };
    let commands = session();
    let cancel_seq = commands.len() as u64 - 1;
    {
        let (mut sequencer, _) = Sequencer::open(&data_dir, config).unwrap();
        for (i, command) in commands.iter().enumerate() {
            sequencer.submit(1_000 + i as u64, command).unwrap();
        }
        sequencer.commit().unwrap();
    }
    let (parts_segment, parts) = record_offsets(&parts_dir(&data_dir.events()));
    assert!(parts.len() >= 3, "the CancelAll is split into several parts: {}", parts.len());

    // The crash: the input holds every command; the parts log only the first two parts of
    // the CancelAll's list; the event log ends before its record.
    let (events_segment, records) = record_offsets(&data_dir.events());
    let manifest_offset = records.iter().find(|(seq, _)| *seq == cancel_seq).unwrap().1;
    zero_from(&events_segment, manifest_offset);
    zero_from(&parts_segment, parts[2].1);

    let (sequencer, recovery) = Sequencer::open(&data_dir, config).unwrap();
    assert_eq!(recovery.events.last_seq, cancel_seq - 1);
    assert_eq!(recovery.event_records_regenerated, 2, "the CancelAll and the order after it");
    drop(sequencer);
    // Complete and correct: the list is whole again (written anew after the two orphaned parts).
    assert_eq!(assert_event_log_matches_replay(&data_dir), 1);
    let (_, parts_after) = record_offsets(&parts_dir(&data_dir.events()));
    assert_eq!(parts_after.len(), 2 + parts.len(), "two orphaned parts, then a complete set");
    // And a second recovery has nothing to do.
    let (_, again) = Sequencer::open(&data_dir, config).unwrap();
    assert_eq!(again.event_records_regenerated, 0);
}

#[test]
fn a_crash_after_every_part_but_before_the_record_is_recovered_too() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    let config = SequencerConfig { segment_size_bytes: SEGMENT_BYTES, durability: Durability::PageCache };
    let commands = session();
    let cancel_seq = commands.len() as u64 - 1;
    {
        let (mut sequencer, _) = Sequencer::open(&data_dir, config).unwrap();
        for (i, command) in commands[..commands.len() - 1].iter().enumerate() {
            sequencer.submit(1_000 + i as u64, command).unwrap();
        }
        sequencer.commit().unwrap();
    }
    let (events_segment, records) = record_offsets(&data_dir.events());
    assert_eq!(records.last().unwrap().0, cancel_seq);
    zero_from(&events_segment, records.last().unwrap().1);

    let (mut sequencer, recovery) = Sequencer::open(&data_dir, config).unwrap();
    assert_eq!(recovery.event_records_regenerated, 1);
    // The pipeline goes on after recovery.
    sequencer.submit(5_000, commands.last().unwrap()).unwrap();
    sequencer.commit().unwrap();
    drop(sequencer);
    assert_eq!(assert_event_log_matches_replay(&data_dir), 1);
}

#[test]
fn a_segment_too_small_for_the_largest_record_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let too_small = MIN_SEGMENT_SIZE_BYTES / 2;
    let config = SequencerConfig { segment_size_bytes: too_small, durability: Durability::PageCache };
    let error = Sequencer::open(&DataDir::new(dir.path()), config).err().expect("refused").to_string();
    assert!(error.contains("too small"), "{error}");
    assert!(!dir.path().join("input").exists(), "refused before creating any file");
    let text = seqd::config::DEFAULT_CONFIG_TOML
        .replace("segment_size_bytes = 67108864", &format!("segment_size_bytes = {too_small}"));
    let error = seqd::config::Config::parse(&text).expect_err("refused").to_string();
    assert!(error.contains("segment_size_bytes") && error.contains("too small"), "{error}");
    // The smallest accepted segment holds the largest record with room to spare.
    assert!(MIN_SEGMENT_SIZE_BYTES as usize >= 2 * MAX_EVENT_RECORD_PAYLOAD_BYTES);
}
