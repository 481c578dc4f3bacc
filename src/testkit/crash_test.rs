//! The crash test: a child process runs the sequencer on a fixed workload and acknowledges
//! each durable sequence on stdout; the parent SIGKILLs it at random moments, many times, and
//! after each kill checks that:
//! - both journals verify (CRCs, sequence continuity, hash chains);
//! - every acknowledged command is in the input journal, byte for byte what was sent;
//! - recovery (newest snapshot + tail replay, as the daemon starts) reaches the same state
//!   hash as a replay from scratch;
//! - the event log holds, for every command, exactly the events a replay produces.
//!
//! Protocol on the child's stdout: `ready <last_seq>` once recovered, then one durable
//! sequence per line, printed only after `commit` returned it.

use crate::engine::{Command, Event, Seq};
use crate::pipeline::sequencer::{Sequencer, SequencerConfig};
use crate::storage::event_log::EventLogReader;
use crate::storage::journal::{verify, Durability, JournalReader};
use crate::storage::replay::{apply_journal, replay, DataDir, ReplayOptions};
use crate::testkit::workload::{exchange_core_mix, SplitMix64, WorkloadSpec};
use crate::wire::codec;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Small segments so that kills also land on segment rolls.
pub const CRASH_SEGMENT_SIZE_BYTES: u64 = 256 * 1024;
/// The child commits the state as a snapshot this often (in commands).
const SNAPSHOT_EVERY_COMMANDS: u64 = 20_000;
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The workload both sides derive from the seed: setup then exchange-core's mix.
pub fn crash_workload(seed: u64, commands: usize) -> Vec<Command> {
    let workload = exchange_core_mix(WorkloadSpec { accounts: 200, resting_orders: 500, commands, seed });
    workload.setup.into_iter().chain(workload.commands).collect()
}

/// Child mode: recover the data directory, then sequence the rest of the workload in commit
/// groups of 1..=64, printing each durable sequence. Snapshots every 20,000 commands.
pub fn run_child(dir: &Path, durability: Durability, seed: u64, commands: usize) -> Result<(), String> {
    let workload = crash_workload(seed, commands);
    let data_dir = DataDir::new(dir);
    let config = SequencerConfig { segment_size_bytes: CRASH_SEGMENT_SIZE_BYTES, durability };
    let (mut sequencer, _) = Sequencer::open(&data_dir, config).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let mut emit = |line: std::fmt::Arguments<'_>| -> Result<(), String> {
        writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|e| format!("stdout: {e}"))
    };
    emit(format_args!("ready {}", sequencer.engine().last_seq()))?;
    let mut rng = SplitMix64::new(seed ^ sequencer.next_seq());
    let snapshots = data_dir.snapshots();
    while (sequencer.next_seq() as usize) <= workload.len() {
        let group = 1 + rng.below(64);
        for _ in 0..group {
            let Some(command) = workload.get(sequencer.next_seq() as usize - 1) else {
                break;
            };
            let timestamp_ns = sequencer.next_seq() * 1_000;
            sequencer.submit(timestamp_ns, command).map_err(|e| e.to_string())?;
        }
        let durable = sequencer.commit().map_err(|e| e.to_string())?;
        emit(format_args!("{durable}"))?;
        if durable % SNAPSHOT_EVERY_COMMANDS < group {
            snapshots.write(sequencer.engine()).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashSummary {
    pub cycles: u32,
    pub kills: u32,
    /// Highest sequence any child acknowledged.
    pub acked_seq: Seq,
    /// Acknowledged commands missing or altered; the run stops at the first cycle with any.
    pub lost: u64,
    /// Kills after which recovery found and truncated a torn tail.
    pub torn_tails: u32,
    /// Kills after which recovery had to regenerate event records.
    pub events_regenerated: u32,
    /// Recoveries that started from a snapshot.
    pub snapshot_recoveries: u32,
}

/// Parent mode: `cycles` times, start `exe child_args`, wait for `ready`, SIGKILL it after a
/// seeded 1-30 ms, then check the data directory. Each child continues the same directory.
pub fn run_parent(
    exe: &Path,
    child_args: &[String],
    dir: &Path,
    seed: u64,
    commands: usize,
    cycles: u32,
) -> Result<CrashSummary, String> {
    let workload = crash_workload(seed, commands);
    let mut rng = SplitMix64::new(seed);
    let mut summary = CrashSummary::default();
    for cycle in 0..cycles {
        let delay = Duration::from_millis(1 + rng.below(30));
        let outcome = run_one_child(exe, child_args, delay).map_err(|e| format!("cycle {cycle}: {e}"))?;
        if outcome.ready_last_seq < summary.acked_seq {
            summary.lost = summary.acked_seq - outcome.ready_last_seq;
            return Ok(summary);
        }
        summary.acked_seq = summary.acked_seq.max(outcome.acked_seq);
        summary.kills += u32::from(outcome.killed);
        let check = check_data_dir(dir, &workload, summary.acked_seq).map_err(|e| format!("cycle {cycle}: {e}"))?;
        summary.cycles = cycle + 1;
        summary.lost = check.lost;
        summary.torn_tails += u32::from(check.torn_tail);
        summary.events_regenerated += u32::from(check.events_regenerated);
        summary.snapshot_recoveries += u32::from(check.from_snapshot);
        if check.lost > 0 {
            return Ok(summary);
        }
    }
    Ok(summary)
}

struct ChildOutcome {
    ready_last_seq: Seq,
    acked_seq: Seq,
    killed: bool,
}

fn run_one_child(exe: &Path, child_args: &[String], delay: Duration) -> Result<ChildOutcome, String> {
    let mut child = Process::new(exe)
        .args(child_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", exe.display()))?;
    let stdout = child.stdout.take().ok_or("child has no stdout")?;
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let pump = thread::spawn(move || pump_complete_lines(stdout, lines_tx));
    let ready_line = lines_rx.recv_timeout(READY_TIMEOUT).map_err(|_| {
        let _ = child.kill();
        "child did not print ready".to_string()
    })?;
    let ready_last_seq = ready_line
        .strip_prefix("ready ")
        .and_then(|n| n.parse::<Seq>().ok())
        .ok_or_else(|| format!("bad ready line {ready_line:?}"))?;
    thread::sleep(delay);
    let finished_early = child.try_wait().map_err(|e| e.to_string())?;
    // Child::kill sends SIGKILL on unix: no destructor, no flush, no msync runs.
    let killed = finished_early.is_none() && child.kill().is_ok();
    let status = child.wait().map_err(|e| e.to_string())?;
    if !killed && !status.success() {
        return Err(format!("child failed on its own: {status}"));
    }
    pump.join().map_err(|_| "stdout pump panicked")?;
    let mut acked_seq = 0;
    for line in lines_rx.try_iter() {
        acked_seq = acked_seq.max(line.parse::<Seq>().map_err(|_| format!("bad ack line {line:?}"))?);
    }
    Ok(ChildOutcome { ready_last_seq, acked_seq, killed })
}

/// Forwards newline-terminated lines only: a line cut by the kill was never acknowledged.
pub(crate) fn pump_complete_lines(stdout: impl std::io::Read, lines_tx: mpsc::Sender<String>) {
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let Some(complete) = line.strip_suffix('\n') else {
                    return;
                };
                if lines_tx.send(complete.to_string()).is_err() {
                    return;
                }
            }
        }
    }
}

struct DataDirCheck {
    lost: u64,
    torn_tail: bool,
    events_regenerated: bool,
    from_snapshot: bool,
}

fn check_data_dir(dir: &Path, workload: &[Command], acked_seq: Seq) -> Result<DataDirCheck, String> {
    let data_dir = DataDir::new(dir);
    let recovery = check_recovery(&data_dir)?;
    let lost = count_lost_commands(&data_dir.input(), workload, acked_seq)?;
    check_event_log(&data_dir)?;
    Ok(DataDirCheck {
        lost,
        torn_tail: recovery.torn_tail,
        events_regenerated: recovery.events_regenerated,
        from_snapshot: recovery.from_snapshot,
    })
}

/// What recovering a killed data directory found.
pub(crate) struct RecoveryCheck {
    /// A torn tail was found (by `verify`) or truncated (by recovery) in either log.
    pub(crate) torn_tail: bool,
    pub(crate) events_regenerated: bool,
    pub(crate) from_snapshot: bool,
    pub(crate) last_seq: Seq,
}

/// Both logs verify; recovery (newest snapshot + tail, exactly as a restarting daemon does it,
/// including repairing torn tails and regenerating missing event records) reaches the same
/// sequence and state hash as a replay from scratch.
pub(crate) fn check_recovery(data_dir: &DataDir) -> Result<RecoveryCheck, String> {
    let torn_tail = verify(&data_dir.input()).map_err(|e| format!("verify input: {e}"))?.torn_tail.is_some();
    verify(&data_dir.events()).map_err(|e| format!("verify events: {e}"))?;
    let parts = crate::storage::event_log::parts_dir(&data_dir.events());
    if parts.is_dir() {
        verify(&parts).map_err(|e| format!("verify events/parts: {e}"))?;
    }

    // Recover exactly as a restarting daemon does, then compare with a replay from scratch.
    let config = SequencerConfig { segment_size_bytes: CRASH_SEGMENT_SIZE_BYTES, durability: Durability::PageCache };
    let (sequencer, recovery) = Sequencer::open(data_dir, config).map_err(|e| format!("recovery: {e}"))?;
    let recovered_hash = sequencer.engine().state_hash();
    let recovered_seq = sequencer.engine().last_seq();
    drop(sequencer);
    let (_, scratch) = replay(data_dir, ReplayOptions::default()).map_err(|e| format!("replay: {e}"))?;
    if scratch.state_hash != recovered_hash || scratch.last_seq != recovered_seq {
        return Err(format!(
            "recovered state (seq {recovered_seq}, snapshot {:?}) differs from a replay from scratch (seq {})",
            recovery.snapshot_seq, scratch.last_seq
        ));
    }
    Ok(RecoveryCheck {
        torn_tail: torn_tail || recovery.input.truncated_tail.is_some() || recovery.events.truncated_tail.is_some(),
        events_regenerated: recovery.event_records_regenerated > 0,
        from_snapshot: recovery.snapshot_seq.is_some(),
        last_seq: recovered_seq,
    })
}

/// Acknowledged sequences whose command is missing or not what the workload sent.
fn count_lost_commands(input_dir: &Path, workload: &[Command], acked_seq: Seq) -> Result<u64, String> {
    let mut reader = JournalReader::open(input_dir, 1).map_err(|e| e.to_string())?;
    let mut last_seq = 0;
    let mut wrong = 0;
    while let Some(record) = reader.next().map_err(|e| e.to_string())? {
        let sent = workload.get(record.seq as usize - 1);
        let decoded = codec::decode_command(record.kind, record.payload).ok();
        if decoded.as_ref() != sent && record.seq <= acked_seq {
            wrong += 1;
        }
        last_seq = record.seq;
    }
    Ok(wrong + acked_seq.saturating_sub(last_seq))
}

/// Every event record equals the events a replay of its command produces.
pub(crate) fn check_event_log(data_dir: &DataDir) -> Result<(), String> {
    let mut events_reader = EventLogReader::open(&data_dir.events(), 1).map_err(|e| e.to_string())?;
    let mut logged: Vec<Event> = Vec::new();
    let mut mismatch = None;
    let mut engine = crate::engine::Engine::new();
    apply_journal(&mut engine, &data_dir.input(), None, false, |seq, _, events| {
        if mismatch.is_some() {
            return;
        }
        let ok = matches!(events_reader.next(&mut logged), Ok(Some((logged_seq, _))) if logged_seq == seq);
        if !ok || logged != events {
            mismatch = Some(seq);
        }
    })
    .map_err(|e| e.to_string())?;
    match mismatch {
        Some(seq) => Err(format!("event log record {seq} differs from the replayed events")),
        None => Ok(()),
    }
}

/// Prints the summary line `crash-test: N cycles, L acknowledged lost` (scripts and CI read
/// it) and turns the outcome into the exit status: success only when every cycle ran and
/// nothing acknowledged was lost. Shared by the sequencer and the daemon modes.
pub fn report(outcome: Result<(u32, u64), String>, cycles_wanted: u32) -> std::process::ExitCode {
    match outcome {
        Ok((cycles, lost)) => {
            println!("crash-test: {cycles} cycles, {lost} acknowledged lost");
            if lost == 0 && cycles == cycles_wanted {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("crash-test: {e}");
            println!("crash-test: failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `seqd crash-test`: runs the parent against this very executable; prints the summary line.
pub fn run_standalone(
    dir: Option<PathBuf>,
    durability: Durability,
    seed: u64,
    commands: usize,
    cycles: u32,
) -> Result<CrashSummary, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let temp;
    let dir = match dir {
        Some(dir) => dir,
        None => {
            temp = tempfile_dir()?;
            temp.clone()
        }
    };
    let durability_name = match durability {
        Durability::PageCache => "page-cache",
        Durability::Fsync => "fsync",
    };
    let child_args: Vec<String> = [
        "crash-test",
        "--child",
        "--dir",
        dir.to_str().ok_or("non-UTF-8 path")?,
        "--durability",
        durability_name,
        "--seed",
        &seed.to_string(),
        "--commands",
        &commands.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let started = Instant::now();
    let summary = run_parent(&exe, &child_args, &dir, seed, commands, cycles)?;
    eprintln!(
        "{} kills, {} torn tails truncated, {} event-log catch-ups, {} recoveries from a snapshot, acknowledged up to seq {}, {:.1} s",
        summary.kills,
        summary.torn_tails,
        summary.events_regenerated,
        summary.snapshot_recoveries,
        summary.acked_seq,
        started.elapsed().as_secs_f64()
    );
    Ok(summary)
}

pub(crate) fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("seqd-crash-test-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}
