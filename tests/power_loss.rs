//! Power loss, not only SIGKILL: the sequencer runs on a simulated disk (`seqd::storage::disk`) that
//! remembers what was synced; at a random point (between commands, or just before a random
//! sync, which reaches the inside of a roll or a snapshot write) the power is cut: every page
//! not synced survives, is lost or is torn, and unsynced directory operations may be lost,
//! deterministically from the seed. Recovery then runs on that disk image, and for each
//! durability policy what it promises must hold:
//! - `Fsync`: every command whose commit returned is recovered;
//! - both: the recovered state is exactly the replay of a prefix of the commands sent (checked
//!   against an independent replay of the original command list), `replay` with and without
//!   snapshots agree, and the event log matches the input; recovery never refuses.
//!
//! Every other seed, the power is cut a second time during the recovery (its repairs must
//! leave a state the next recovery accepts). After recovery, more commands reuse the lost sequence numbers and a second restart must
//! still equal the replay of the new history (a snapshot of the lost history must not load).
//!
//! `SEQD_POWER_LOSS_SEEDS` sets the number of seeds per policy (default 200).

use seqd::engine::{Command, Engine, Event};
use seqd::pipeline::sequencer::{Sequencer, SequencerConfig};
use seqd::storage::disk::{SimDisk, Storage};
use seqd::storage::journal::{verify, Durability};
use seqd::storage::replay::{replay, DataDir, ReplayOptions};
use seqd::testkit::workload::{exchange_core_mix, SplitMix64, WorkloadSpec};
use std::path::Path;

/// Small segments, so that runs roll often (a roll is where ordering matters most).
const SEGMENT_BYTES: u64 = 16 * 1024;
const MEASURED_COMMANDS: usize = 120;
/// Commands sent after the recovery, reusing the sequence numbers the power cut lost.
const COMMANDS_AFTER_RECOVERY: usize = 8;

fn seeds() -> u64 {
    std::env::var("SEQD_POWER_LOSS_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

fn timestamp_ns(index: usize) -> u64 {
    1_700_000_000_000_000_000 + index as u64 * 1_000
}

/// The state after the first `count` commands, computed without any journal.
fn independent_replay(commands: &[Command], count: usize) -> Engine {
    let mut engine = Engine::new();
    let mut events: Vec<Event> = Vec::new();
    for (index, command) in commands[..count].iter().enumerate() {
        events.clear();
        engine.apply(index as u64 + 1, timestamp_ns(index), command, &mut events);
    }
    engine
}

fn config(durability: Durability) -> SequencerConfig {
    SequencerConfig { segment_size_bytes: SEGMENT_BYTES, durability }
}

/// Where the power was cut and what had been acknowledged by then.
struct Crash {
    /// Highest seq a returned `commit` made durable.
    acked_seq: u64,
    submitted: usize,
}

/// Runs commands on a simulated disk under `root` until the planned power cut; leaves the
/// disk image in `image`.
fn run_until_power_cut(durability: Durability, seed: u64, commands: &[Command], root: &Path, image: &Path) -> Crash {
    std::fs::create_dir_all(root).unwrap();
    let disk = SimDisk::new(root);
    let data_dir = DataDir::with_storage(root, Storage::Simulated(disk.clone()));
    let mut rng = SplitMix64::new(seed ^ 0x5EED);
    let cut_at_command = rng.below(commands.len() as u64 + 1) as usize;
    // About one sync per commit under Fsync (plus rolls and snapshots): a sync number in that
    // range, or the cut between commands happens first.
    let cut_at_sync = 1 + rng.below(commands.len() as u64 / 2);
    disk.crash_before_sync(cut_at_sync, seed, image);
    let commit_every = 1 + rng.below(8) as usize;
    let snapshot_every = 5 + rng.below(40) as usize;
    let mut crash = Crash { acked_seq: 0, submitted: 0 };

    let opened = Sequencer::open(&data_dir, config(durability));
    let Ok((mut sequencer, _)) = opened else {
        assert!(disk.crashed(), "seed {seed}: open failed without a power cut");
        return crash;
    };
    for (index, command) in commands.iter().enumerate() {
        if index == cut_at_command {
            break;
        }
        // A submit that fails (its event-log append hit the power cut) has already appended
        // the command to the input journal: it counts as submitted.
        crash.submitted = index + 1;
        if sequencer.submit(timestamp_ns(index), command).is_err() {
            break;
        }
        if index % commit_every == 0 {
            match sequencer.commit() {
                Ok(durable) => crash.acked_seq = durable,
                Err(_) => break,
            }
        }
        // Snapshots of the live state, committed or not: a snapshot can be ahead of what the
        // power cut leaves of the journal.
        if index % snapshot_every == snapshot_every - 1 {
            let store = data_dir.snapshots();
            if store.write(sequencer.engine()).and_then(|_| store.prune(2)).is_err() {
                break;
            }
        }
        if disk.crashed() {
            break;
        }
    }
    if !disk.crashed() {
        disk.crash_image(seed, image).unwrap();
    }
    // The power is off: whatever the dropped writers do next is not on the image.
    drop(sequencer);
    crash
}

/// What the seeds exercised (so that a change that makes every run trivial fails the test).
#[derive(Default, Debug)]
struct Seen {
    /// Recoveries that lost submitted commands (a power cut took unsynced records).
    lost_unsynced: u32,
    /// Recoveries that started from a snapshot.
    from_snapshot: u32,
    /// Recoveries that moved a snapshot aside because the journal contradicted it.
    rejected_snapshot: u32,
    /// Recoveries that cut back an event log ahead of the input.
    events_cut: u32,
    /// Recoveries that truncated a torn tail of the input journal.
    input_torn: u32,
}

fn check_recovery(durability: Durability, seed: u64, seen: &mut Seen) {
    let workload =
        exchange_core_mix(WorkloadSpec { accounts: 12, resting_orders: 20, commands: MEASURED_COMMANDS, seed });
    let commands: Vec<Command> = workload.setup.iter().chain(&workload.commands).copied().collect();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    let crash = run_until_power_cut(durability, seed, &commands, &dir.path().join("live"), &image);
    // Every other seed, the power is cut again during the recovery itself.
    let image = if seed % 2 == 1 { cut_power_during_recovery(durability, seed, &image, dir.path()) } else { image };

    let data_dir = DataDir::new(&image);
    let (sequencer, recovery) = Sequencer::open(&data_dir, config(durability))
        .unwrap_or_else(|e| panic!("seed {seed} {durability:?}: recovery refused: {e}"));
    let recovered = sequencer.engine().last_seq() as usize;
    let context = format!(
        "seed {seed} {durability:?}: recovered {recovered} of {} submitted, {} acknowledged; {recovery:?}",
        crash.submitted, crash.acked_seq
    );
    assert!(recovered <= crash.submitted, "{context}");
    seen.lost_unsynced += u32::from(recovered < crash.submitted);
    seen.from_snapshot += u32::from(recovery.snapshot_seq.is_some());
    seen.rejected_snapshot += u32::from(data_dir.snapshots().rejected_dir().exists());
    seen.events_cut += u32::from(recovery.events_cut_from_seq.is_some());
    seen.input_torn += u32::from(recovery.input.truncated_tail.is_some());
    if durability == Durability::Fsync {
        assert!(recovered as u64 >= crash.acked_seq, "{context}: an acknowledged command was lost");
    }
    let expected = independent_replay(&commands, recovered);
    assert_eq!(sequencer.engine().state_hash(), expected.state_hash(), "{context}");
    drop(sequencer);
    assert_replays_agree(&data_dir, recovered as u64, &expected, &context);

    // New commands take the lost sequence numbers; a second restart must follow them.
    let (mut sequencer, _) = Sequencer::open(&data_dir, config(durability)).unwrap();
    let resumed = (recovered + COMMANDS_AFTER_RECOVERY).min(commands.len());
    for (index, command) in commands.iter().enumerate().take(resumed).skip(recovered) {
        sequencer.submit(timestamp_ns(index), command).unwrap();
    }
    sequencer.commit().unwrap();
    drop(sequencer);
    let (sequencer, _) = Sequencer::open(&data_dir, config(durability)).unwrap();
    let expected = independent_replay(&commands, resumed);
    assert_eq!(sequencer.engine().state_hash(), expected.state_hash(), "{context}: after resuming");
    drop(sequencer);
    assert_replays_agree(&data_dir, resumed as u64, &expected, &context);
}

/// Runs recovery on a copy of `image` on a simulated disk and cuts the power at one of its
/// first syncs (or right after it); returns the new image.
fn cut_power_during_recovery(durability: Durability, seed: u64, image: &Path, scratch: &Path) -> std::path::PathBuf {
    let recovering = scratch.join("recovering");
    copy_tree(image, &recovering);
    let disk = SimDisk::with_durable_files(&recovering).unwrap();
    let second_image = scratch.join("second-image");
    let mut rng = SplitMix64::new(seed ^ 0xC0FFEE);
    disk.crash_before_sync(1 + rng.below(16), seed.wrapping_add(1), &second_image);
    let data_dir = DataDir::with_storage(&recovering, Storage::Simulated(disk.clone()));
    let recovered = Sequencer::open(&data_dir, config(durability));
    if !disk.crashed() {
        disk.crash_image(seed.wrapping_add(1), &second_image).unwrap();
    }
    drop(recovered);
    second_image
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// `seqd replay` with and without snapshots reach the expected state; both logs verify and
/// end at the same seq.
fn assert_replays_agree(data_dir: &DataDir, last_seq: u64, expected: &Engine, context: &str) {
    let (_, with) = replay(data_dir, ReplayOptions { use_snapshot: true, ..Default::default() }).unwrap();
    let (_, without) = replay(data_dir, ReplayOptions { use_snapshot: false, ..Default::default() }).unwrap();
    assert_eq!(with.last_seq, last_seq, "{context}");
    assert_eq!(with.state_hash, expected.state_hash(), "{context}: replay from a snapshot");
    assert_eq!(without.state_hash, expected.state_hash(), "{context}: replay from scratch");
    assert_eq!(verify(&data_dir.events()).unwrap().last_seq, last_seq, "{context}: event log");
}

fn check_seeds(durability: Durability) {
    let mut seen = Seen::default();
    for seed in 0..seeds() {
        check_recovery(durability, seed, &mut seen);
    }
    eprintln!("{durability:?}: {} seeds, {seen:?}", seeds());
    if seeds() >= 100 {
        assert!(seen.lost_unsynced > 0 && seen.from_snapshot > 0 && seen.input_torn > 0, "{seen:?}");
        assert!(seen.rejected_snapshot > 0, "no seed produced a snapshot ahead of the journal: {seen:?}");
    }
}

#[test]
fn fsync_keeps_every_acknowledged_command_and_recovers_a_prefix_after_power_loss() {
    check_seeds(Durability::Fsync);
}

#[test]
fn page_cache_recovers_a_prefix_after_power_loss_and_never_refuses_unsynced_damage() {
    check_seeds(Durability::PageCache);
}
