//! Replay, snapshots and the journal CLI on a real data directory written by the sequencer.

use seqd::engine::{AccountId, AssetId, Engine};
use seqd::pipeline::sequencer::{Sequencer, SequencerConfig};
use seqd::storage::journal::Durability;
use seqd::storage::replay::{replay, DataDir, ReplayOptions};
use seqd::testkit::workload::{self, SplitMix64, WorkloadSpec};
use std::process::Command as Process;

const COMMANDS: usize = 30_000;

/// An exchange-core mix written through the sequencer.
fn write_data_dir(dir: &std::path::Path) -> Engine {
    let config = SequencerConfig { segment_size_bytes: 256 * 1024, durability: Durability::PageCache };
    workload::write_data_dir(
        dir,
        config,
        WorkloadSpec { accounts: 100, resting_orders: 300, commands: COMMANDS, seed: 5 },
    )
}

#[test]
fn snapshot_plus_tail_equals_full_replay_at_random_cut_points() {
    let dir = tempfile::tempdir().unwrap();
    let live = write_data_dir(dir.path());
    let data_dir = DataDir::new(dir.path());
    let (_, full) = replay(&data_dir, ReplayOptions::default()).unwrap();
    assert_eq!(full.state_hash, live.state_hash());
    assert_eq!(full.last_seq, live.last_seq());

    let mut rng = SplitMix64::new(99);
    let store = data_dir.snapshots();
    for _ in 0..6 {
        let cut = 1 + rng.below(full.last_seq - 1);
        let (prefix, outcome) = replay(&data_dir, ReplayOptions { to_seq: Some(cut), ..Default::default() }).unwrap();
        assert_eq!(outcome.last_seq, cut);
        store.write(&prefix).unwrap();
        let (_, resumed) = replay(&data_dir, ReplayOptions { use_snapshot: true, ..Default::default() }).unwrap();
        assert_eq!(resumed.state_hash, full.state_hash, "snapshot at {cut}");
        assert!(resumed.snapshot_seq.is_some());
        store.prune(1).unwrap();
    }
}

#[test]
fn a_damaged_snapshot_is_skipped_and_the_sequencer_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let live = write_data_dir(dir.path());
    let data_dir = DataDir::new(dir.path());
    let (half, _) =
        replay(&data_dir, ReplayOptions { to_seq: Some(live.last_seq() / 2), ..Default::default() }).unwrap();
    let good = data_dir.snapshots().write(&half).unwrap();
    let (later, _) =
        replay(&data_dir, ReplayOptions { to_seq: Some(live.last_seq() - 10), ..Default::default() }).unwrap();
    let bad = data_dir.snapshots().write(&later).unwrap();
    let mut bytes = std::fs::read(&bad).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&bad, bytes).unwrap();

    let (_, outcome) = replay(&data_dir, ReplayOptions { use_snapshot: true, ..Default::default() }).unwrap();
    assert_eq!(outcome.snapshot_seq, Some(half.last_seq()), "falls back past {} to {}", bad.display(), good.display());
    assert_eq!(outcome.state_hash, live.state_hash());

    let (sequencer, recovery) = Sequencer::open(&data_dir, SequencerConfig::default()).unwrap();
    assert_eq!(sequencer.next_seq(), live.last_seq() + 1);
    assert_eq!(sequencer.engine().state_hash(), live.state_hash());
    assert_eq!(recovery.event_records_regenerated, 0);
}

#[test]
fn cli_verify_names_the_corrupt_file_and_offset_and_replay_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let live = write_data_dir(dir.path());
    let seqd = env!("CARGO_BIN_EXE_seqd");
    let run = |args: &[&str]| Process::new(seqd).args(args).env("RUST_LOG", "warn").output().unwrap();
    let path = dir.path().to_str().unwrap();

    let replayed = run(&["replay", path, "--json"]);
    assert!(replayed.status.success());
    let stdout = String::from_utf8(replayed.stdout).unwrap();
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(json["last_seq"].as_u64(), Some(live.last_seq()));
    assert_eq!(json["state_hash"].as_str(), Some(live.state_hash_hex().as_str()));
    assert!(run(&["journal", "verify", path]).status.success());
    assert!(run(&["journal", "verify", path, "--log", "events"]).status.success());

    // Flip one payload bit of a record in the middle of the first input segment.
    let segment = dir.path().join("input/00000000000000000001.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let offset = 64 + 96 * 500 + 40;
    bytes[offset] ^= 0x10;
    std::fs::write(&segment, bytes).unwrap();
    let verified = run(&["journal", "verify", path]);
    assert!(!verified.status.success());
    let message = String::from_utf8(verified.stderr).unwrap();
    assert!(message.contains("00000000000000000001.seg") && message.contains("offset"), "{message}");
    assert!(!run(&["replay", path]).status.success(), "replay must refuse a corrupt journal");
}

#[test]
fn crash_test_cycles_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let output = Process::new(env!("CARGO_BIN_EXE_seqd"))
        .args(["crash-test", "--cycles", "8", "--commands", "100000", "--seed", "3"])
        .args(["--dir", dir.path().to_str().unwrap()])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("crash-test: 8 cycles, 0 acknowledged lost"), "{stdout}");
}

const ACCOUNT: u64 = 7;
const ASSET: u32 = 1;

fn deposit(amount: i64, external_ref: u64) -> seqd::engine::Command {
    seqd::engine::Command::Deposit { account: AccountId(ACCOUNT), asset: AssetId(ASSET), amount, external_ref }
}

/// Tears the last record of a journal (flips its last non-zero byte: a CRC failure, as a
/// power cut leaves it), so that the journal ends one record earlier.
fn tear_last_record(journal_dir: &std::path::Path) {
    let segment = journal_dir.join("00000000000000000001.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let last = bytes.iter().rposition(|&b| b != 0).unwrap();
    bytes[last] ^= 0x5A;
    std::fs::write(&segment, bytes).unwrap();
}

fn balance(sequencer: &Sequencer) -> i64 {
    sequencer.engine().balance_of(AccountId(ACCOUNT), AssetId(ASSET)).unwrap().total()
}

/// Issue #9 §3: a snapshot ahead of a torn journal was skipped at the first start, then loaded
/// at a later start once new commands had reused its sequence numbers, losing a deposit.
#[test]
fn a_snapshot_the_journal_does_not_justify_is_never_loaded_even_after_its_seqs_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    let config = SequencerConfig { segment_size_bytes: 64 * 1024, durability: Durability::PageCache };
    let (mut sequencer, _) = Sequencer::open(&data_dir, config).unwrap();
    sequencer.submit(1_000, &seqd::engine::Command::CreateAsset { asset: AssetId(ASSET), scale: 2 }).unwrap();
    sequencer
        .submit(
            2_000,
            &seqd::engine::Command::CreateAccount { account: AccountId(ACCOUNT), parent: AccountId::NONE, owner: 1 },
        )
        .unwrap();
    sequencer.submit(3_000, &deposit(1_000, 1)).unwrap();
    sequencer.submit(4_000, &deposit(20, 2)).unwrap();
    sequencer.commit().unwrap();
    assert_eq!(balance(&sequencer), 1_020);
    let snapshot = data_dir.snapshots().write(sequencer.engine()).unwrap();
    drop(sequencer);

    // The power cut took seq 4 from both logs but not the snapshot at seq 4.
    tear_last_record(&data_dir.input());
    tear_last_record(&data_dir.events());
    let (mut sequencer, _) = Sequencer::open(&data_dir, config).unwrap();
    assert_eq!((sequencer.engine().last_seq(), balance(&sequencer)), (3, 1_000));
    assert_eq!(sequencer.submit(5_000, &deposit(300, 3)).unwrap(), 4, "the new deposit reuses seq 4");
    sequencer.commit().unwrap();
    assert_eq!(balance(&sequencer), 1_300);
    drop(sequencer);
    // The snapshot was moved aside at the first start (the journal ended before it). Put it
    // back, as an operator restoring a backup (or a version that only skipped it) would: the
    // journal now has a seq 4, but not the one the snapshot was taken after.
    let rejected = data_dir.snapshots().dir().join("rejected").join(snapshot.file_name().unwrap());
    if rejected.exists() {
        std::fs::rename(&rejected, &snapshot).unwrap();
    }

    let (sequencer, _) = Sequencer::open(&data_dir, config).unwrap();
    assert_eq!(balance(&sequencer), 1_300, "the acknowledged deposit of 300 must survive the restart");
    let (_, with) = replay(&data_dir, ReplayOptions { use_snapshot: true, ..Default::default() }).unwrap();
    let (_, without) = replay(&data_dir, ReplayOptions::default()).unwrap();
    assert_eq!(with.state_hash, without.state_hash, "replay with and without snapshots must agree");
    assert_eq!(with.state_hash, sequencer.engine().state_hash());
    assert!(rejected.exists() && !snapshot.exists(), "the contradicted snapshot is moved aside");
}

/// The input journal lost a tail the event log kept: the event log is derived data, so it is
/// cut back to the input's end (not refused) and follows the new commands.
#[test]
fn an_event_log_ahead_of_the_input_journal_is_cut_back_and_regenerated() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    let config = SequencerConfig { segment_size_bytes: 64 * 1024, durability: Durability::PageCache };
    let (mut sequencer, _) = Sequencer::open(&data_dir, config).unwrap();
    sequencer.submit(1_000, &seqd::engine::Command::CreateAsset { asset: AssetId(ASSET), scale: 2 }).unwrap();
    sequencer
        .submit(
            2_000,
            &seqd::engine::Command::CreateAccount { account: AccountId(ACCOUNT), parent: AccountId::NONE, owner: 1 },
        )
        .unwrap();
    sequencer.submit(3_000, &deposit(1_000, 1)).unwrap();
    sequencer.submit(4_000, &deposit(20, 2)).unwrap();
    sequencer.commit().unwrap();
    drop(sequencer);

    tear_last_record(&data_dir.input());
    let (mut sequencer, recovery) = Sequencer::open(&data_dir, config).unwrap();
    assert_eq!(recovery.events_cut_from_seq, Some(4));
    assert_eq!(seqd::storage::journal::verify(&data_dir.events()).unwrap().last_seq, 3);
    sequencer.submit(5_000, &deposit(300, 3)).unwrap();
    sequencer.commit().unwrap();
    assert_eq!(balance(&sequencer), 1_300);
    drop(sequencer);

    // The event record of seq 4 is the new deposit's.
    let mut reader = seqd::storage::journal::JournalReader::open(&data_dir.events(), 4).unwrap();
    let record = reader.next().unwrap().unwrap();
    let mut events = Vec::new();
    seqd::wire::codec::decode_event_record(record.payload, &mut events).unwrap();
    assert!(events.iter().any(|e| matches!(e, seqd::engine::Event::DepositCredited { amount: 300, .. })), "{events:?}");
}

/// Keyed commands (`Sequencer::submit_keyed`, kind-19 records) replay to the live state,
/// window of request keys included: a third of the commands carry a new key, a third resend an
/// earlier (key, command) as a client's retry would (refused 111 when the first was applied).
/// Full replay, snapshot plus tail, and a reopened sequencer all reach the live hash, and the
/// reopened engine still refuses a remembered key.
#[test]
fn keyed_commands_replay_to_the_same_state_and_window() {
    use seqd::engine::{Event, RejectReason};
    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    let config = SequencerConfig { segment_size_bytes: 256 * 1024, durability: Durability::PageCache };
    let (mut sequencer, _) = Sequencer::open(&data_dir, config).unwrap();
    let w = workload::exchange_core_mix(WorkloadSpec { accounts: 20, resting_orders: 60, commands: 3_000, seed: 8 });
    let mut rng = SplitMix64::new(31);
    let mut sent: Vec<(u64, seqd::engine::Command)> = Vec::new();
    for (i, command) in w.setup.iter().chain(&w.commands).enumerate() {
        let (key, command) = match rng.below(3) {
            0 => (0, *command),
            1 => {
                let key = rng.next_u64() | 1;
                sent.push((key, *command));
                (key, *command)
            }
            _ if !sent.is_empty() => sent[rng.below(sent.len() as u64) as usize],
            _ => (0, *command),
        };
        sequencer.submit_keyed(1_000 + i as u64, &command, key).unwrap();
    }
    sequencer.commit().unwrap();
    let live = sequencer.engine().clone();
    drop(sequencer);
    let mut live_bytes = Vec::new();
    live.encode_state(&mut live_bytes);
    assert_eq!(live_bytes[9..13], seqd::engine::STATE_ENCODING_VERSION.to_le_bytes(), "the window is state");

    // The journal holds the retries, and replay refuses them as the live run did.
    let mut duplicates = 0;
    let mut replayed = Engine::new();
    seqd::storage::replay::apply_journal(&mut replayed, &data_dir.input(), None, false, |_, _, events| {
        duplicates += usize::from(events == [Event::Rejected { reason: RejectReason::DuplicateRequest }]);
    })
    .unwrap();
    assert!(duplicates > 20, "{duplicates} retries refused");
    assert_eq!(replayed.state_hash(), live.state_hash());

    let (_, full) = replay(&data_dir, ReplayOptions::default()).unwrap();
    assert_eq!(full.state_hash, live.state_hash());
    let (prefix, _) =
        replay(&data_dir, ReplayOptions { to_seq: Some(live.last_seq() / 2), ..Default::default() }).unwrap();
    data_dir.snapshots().write(&prefix).unwrap();
    let (_, resumed) = replay(&data_dir, ReplayOptions { use_snapshot: true, ..Default::default() }).unwrap();
    assert_eq!(resumed.snapshot_seq, Some(live.last_seq() / 2));
    assert_eq!(resumed.state_hash, live.state_hash());

    let (mut reopened, _) = Sequencer::open(&data_dir, config).unwrap();
    assert_eq!(reopened.engine().state_hash(), live.state_hash());
    // The newest key sent was applied or rejected; resent now, it is refused only if applied.
    let (key, command) = *sent
        .iter()
        .rev()
        .find(|(key, command)| {
            let mut probe = live.clone();
            let mut events = Vec::new();
            probe.apply_keyed(live.last_seq() + 1, 0, *key, command, &mut events);
            events == [Event::Rejected { reason: RejectReason::DuplicateRequest }]
        })
        .expect("some keyed command was applied");
    let without_clock = |engine: &Engine| {
        let mut bytes = Vec::new();
        engine.encode_state(&mut bytes);
        bytes[13..29].fill(0);
        bytes
    };
    let before = without_clock(reopened.engine());
    reopened.submit_keyed(u64::MAX / 2, &command, key).unwrap();
    assert_eq!(reopened.engine().last_seq(), live.last_seq() + 1);
    assert!(without_clock(reopened.engine()) == before, "a retry after the restart changed the state");
}

/// A data directory restarted after a snapshot, as a cluster node that installed its leader's
/// snapshot has it (`cluster::catch_up`): the snapshot at S, an input journal that starts at
/// S + 1 chained to the snapshot's hash and holds no record yet (and an event log that starts at
/// S + 1). It replays to the snapshot's state, and the sequencer continues it.
#[test]
fn a_journal_restarted_after_a_snapshot_replays_to_the_snapshot_and_continues() {
    use seqd::storage::journal::{JournalConfig, JournalWriter};
    use seqd::storage::snapshots::SnapshotStore;
    let source = tempfile::tempdir().unwrap();
    let live = write_data_dir(source.path());
    let seeded = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(seeded.path());
    let snapshot = SnapshotStore::new(source.path().join("snapshots"), source.path().join("input"), Default::default())
        .write(&live)
        .unwrap();
    let header = SnapshotStore::read_header(&snapshot).unwrap();
    std::fs::create_dir_all(data_dir.snapshots().dir()).unwrap();
    std::fs::copy(&snapshot, data_dir.snapshots().path_for(live.last_seq())).unwrap();
    let config = JournalConfig {
        first_seq: live.last_seq() + 1,
        first_prev_chain_hash: header.input_chain_hash,
        ..JournalConfig::new(data_dir.input(), 256 * 1024, Durability::PageCache)
    };
    drop(JournalWriter::open(config.clone()).unwrap());
    // The event log restarts at S + 1 too (its own chain).
    let events = JournalConfig { dir: data_dir.events(), first_prev_chain_hash: [0; 32], ..config };
    drop(seqd::storage::event_log::EventLogWriter::open(events).unwrap());

    let (_, outcome) = replay(&data_dir, ReplayOptions { use_snapshot: true, ..Default::default() }).unwrap();
    assert_eq!((outcome.last_seq, outcome.state_hash), (live.last_seq(), live.state_hash()));
    assert_eq!(outcome.snapshot_seq, Some(live.last_seq()));

    let config = SequencerConfig { segment_size_bytes: 256 * 1024, durability: Durability::PageCache };
    let (mut sequencer, recovery) = Sequencer::open(&data_dir, config).unwrap();
    assert_eq!(recovery.snapshot_seq, Some(live.last_seq()));
    let seq = sequencer.submit(live.last_timestamp_ns(), &deposit(5, 9_999_999)).unwrap();
    sequencer.commit().unwrap();
    assert_eq!(seq, live.last_seq() + 1);
    drop(sequencer);
    let (_, after) = replay(&data_dir, ReplayOptions { use_snapshot: true, ..Default::default() }).unwrap();
    assert_eq!(after.last_seq, seq);
}
