//! `seqd journal inspect|verify|golden`, `seqd replay`, `seqd snapshot`: the operator's and
//! auditor's view of a data directory.

use seqd::pipeline::sequencer::{Sequencer, SequencerConfig};
use seqd::storage::event_log::{self, EventLogReader};
use seqd::storage::journal::{self, JournalReader};
use seqd::storage::replay::{replay, DataDir, ReplayOptions};
use seqd::wire::codec::{self, EVENTS_RECORD_KIND, EVENTS_SPLIT_RECORD_KIND};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Which log of a data directory a journal command reads.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Log {
    Input,
    Events,
}

/// `DIR` may be a journal directory itself (it holds `.seg` files) or a data directory.
pub fn journal_dir(dir: &Path, log: Log) -> PathBuf {
    let holds_segments = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().any(|e| e.path().extension().is_some_and(|x| x == "seg")))
        .unwrap_or(false);
    if holds_segments {
        return dir.to_path_buf();
    }
    let data_dir = DataDir::new(dir);
    match log {
        Log::Input => data_dir.input(),
        Log::Events => data_dir.events(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn inspect(dir: &Path, log: Log, from: u64, to: Option<u64>) -> ExitCode {
    let dir = journal_dir(dir, log);
    let mut reader = match JournalReader::open(&dir, from.max(1)) {
        Ok(reader) => reader,
        Err(e) => return fail(&e.to_string()),
    };
    let mut events = Vec::new();
    loop {
        let record = match reader.next_up_to(to.unwrap_or(u64::MAX)) {
            Ok(Some(record)) => record,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => return fail(&e.to_string()),
        };
        let head =
            format!("seq {} ts {} kind {} len {}", record.seq, record.timestamp_ns, record.kind, record.payload.len());
        if record.kind == EVENTS_RECORD_KIND || record.kind == EVENTS_SPLIT_RECORD_KIND {
            let split = record.kind == EVENTS_SPLIT_RECORD_KIND;
            let seq = record.seq;
            // Reassembled like every reader does: a split list from its parts (FORMAT.md 10.3).
            let decoded = match split {
                false => codec::decode_event_record(record.payload, &mut events).map_err(|e| e.to_string()),
                true => read_one(&dir, seq, &mut events),
            };
            let how = match split {
                true => " (split into parts, reassembled)",
                false => "",
            };
            match decoded {
                Ok(()) => {
                    println!("{head}: {} events{how}", events.len());
                    for event in &events {
                        println!("    {event:?}");
                    }
                }
                Err(e) => println!("{head}: undecodable events: {e}"),
            }
        } else {
            match codec::decode_input(record.kind, record.payload) {
                Ok((0, command)) => println!("{head}: {command:?}"),
                Ok((request_key, command)) => println!("{head}: {command:?} (request key {request_key})"),
                Err(e) => println!("{head}: undecodable command: {e}"),
            }
        }
    }
}

/// The events of command `seq` of the event log in `dir`, reassembled.
fn read_one(dir: &Path, seq: u64, events: &mut Vec<seqd::engine::Event>) -> Result<(), String> {
    let mut reader = EventLogReader::open(dir, seq).map_err(|e| e.to_string())?;
    match reader.next_up_to(seq, events) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("record {seq} is not in the event log")),
        Err(e) => Err(e.to_string()),
    }
}

pub fn verify(dir: &Path, log: Log) -> ExitCode {
    let dir = journal_dir(dir, log);
    let parts_dir = event_log::parts_dir(&dir);
    let result = (|| -> Result<(), String> {
        let first_seq = verify_journal(&dir)?;
        if !(matches!(log, Log::Events) || parts_dir.is_dir()) {
            return Ok(());
        }
        // The event log: also its parts log, and every split list against its manifest.
        if parts_dir.is_dir() {
            verify_journal(&parts_dir)?;
        }
        let (lists, split) = verify_event_lists(&dir, first_seq)?;
        println!("{}: {lists} event lists readable, {split} of them split into parts", dir.display());
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Reads every command's events from `first_seq` on (reassembling split lists); returns the
/// number of lists and of split lists.
fn verify_event_lists(dir: &Path, first_seq: u64) -> Result<(u64, u64), String> {
    let mut reader = EventLogReader::open(dir, first_seq).map_err(|e| e.to_string())?;
    let mut raw = JournalReader::open(dir, first_seq).map_err(|e| e.to_string())?;
    let (mut lists, mut split) = (0u64, 0u64);
    let mut events = Vec::new();
    while reader.next(&mut events).map_err(|e| e.to_string())?.is_some() {
        let record = raw.next().map_err(|e| e.to_string())?.ok_or("the event log changed while verifying")?;
        split += u64::from(record.kind == EVENTS_SPLIT_RECORD_KIND);
        lists += 1;
    }
    Ok((lists, split))
}

/// Verifies one journal and prints its summary; returns its first seq.
fn verify_journal(dir: &Path) -> Result<u64, String> {
    let report = journal::verify(dir).map_err(|e| e.to_string())?;
    println!(
        "{}: intact: {} segments, {} records, seq {}..={}, chain hash {}",
        dir.display(),
        report.segments,
        report.records,
        report.first_seq.unwrap_or(0),
        report.last_seq,
        hex(&report.chain_hash)
    );
    if let Some((file, offset)) = &report.torn_tail {
        println!(
            "torn tail (an unfinished last record) at {} offset {offset}: recovery will truncate it",
            file.display()
        );
    }
    Ok(report.first_seq.unwrap_or(1))
}

pub fn replay_command(dir: &Path, to: Option<u64>, json: bool, no_snapshot: bool) -> ExitCode {
    let started = Instant::now();
    let options = ReplayOptions { use_snapshot: !no_snapshot, to_seq: to, progress: true };
    match replay(&DataDir::new(dir), options) {
        Ok((_, outcome)) => {
            let seconds = started.elapsed().as_secs_f64();
            if json {
                let line = serde_json::json!({
                    "last_seq": outcome.last_seq,
                    "state_hash": hex(&outcome.state_hash),
                    "snapshot_seq": outcome.snapshot_seq,
                    "commands_replayed": outcome.commands_replayed,
                    "seconds": seconds,
                });
                println!("{line}");
            } else {
                println!(
                    "replayed {} commands (from snapshot {:?}) in {seconds:.3} s: last seq {}, state hash {}",
                    outcome.commands_replayed,
                    outcome.snapshot_seq,
                    outcome.last_seq,
                    hex(&outcome.state_hash)
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

/// The data directory `dir` with its input journal's writer lock (held while the file lives),
/// or why not: not a data directory, or a live writer holds it.
fn lock_data_dir(dir: &Path) -> Result<(DataDir, std::fs::File), String> {
    let data_dir = DataDir::new(dir);
    if !data_dir.input().is_dir() {
        return Err(format!("{} is not a data directory (no input/)", dir.display()));
    }
    let lock = super::truncate::lock(&data_dir.input())?;
    Ok((data_dir, lock))
}

/// Rebuilds the state offline (newest snapshot + journal) and writes a new snapshot; the
/// daemon's processor is never involved, so taking one never stalls trading.
pub fn snapshot(dir: &Path, keep: usize) -> ExitCode {
    // The input journal's writer lock, held to the end: a live daemon owns the directory (and
    // writes its own snapshots), and no daemon may start while this one is being written.
    let (data_dir, _input_lock) = match lock_data_dir(dir) {
        Ok(locked) => locked,
        Err(e) => return fail(&e),
    };
    let options = ReplayOptions { use_snapshot: true, to_seq: None, progress: true };
    let (engine, outcome) = match replay(&data_dir, options) {
        Ok(done) => done,
        Err(e) => return fail(&e.to_string()),
    };
    let store = data_dir.snapshots();
    match store.write(&engine).and_then(|path| Ok((path, store.prune(keep)?))) {
        Ok((path, pruned)) => {
            println!(
                "wrote {} at seq {} (state hash {}); pruned {pruned}",
                path.display(),
                outcome.last_seq,
                hex(&outcome.state_hash)
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

/// Writes the scripted session as a journal in `dir` (for `journal/golden/`), with fixed
/// timestamps, and prints the expected outcome as JSON.
pub fn golden(dir: &Path, segment_size_bytes: u64) -> ExitCode {
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false) {
        return fail(&format!(
            "{} is not empty: golden journals are written once, into a new directory",
            dir.display()
        ));
    }
    let config = SequencerConfig { segment_size_bytes, durability: journal::Durability::Fsync };
    let result = (|| -> Result<serde_json::Value, String> {
        let (mut sequencer, _) = Sequencer::open(&DataDir::new(dir), config).map_err(|e| e.to_string())?;
        for (i, command) in seqd::testkit::scenario::scripted_session().iter().enumerate() {
            sequencer.submit(seqd::testkit::scenario::timestamp_ns(i), command).map_err(|e| e.to_string())?;
        }
        sequencer.commit().map_err(|e| e.to_string())?;
        let engine = sequencer.engine();
        Ok(serde_json::json!({ "last_seq": engine.last_seq(), "state_hash": engine.state_hash_hex() }))
    })();
    match result {
        Ok(expected) => {
            println!("{expected}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// Where `seqd journal archive` puts what it removes, and what it must keep.
pub struct ArchiveArgs {
    pub to: Option<PathBuf>,
    pub delete: bool,
    pub keep_from: Option<u64>,
    /// The daemon's configuration: its enabled mirrors' checkpoints are read from them.
    pub config: Option<PathBuf>,
}

/// Moves (or deletes) the input-journal and event-log segments of data directory `dir` that the
/// newest usable snapshot, `--keep-from` and the configured mirrors' checkpoints no longer
/// need (storage/retention.rs). Refuses while a daemon holds the directory.
pub fn archive(dir: &Path, args: &ArchiveArgs) -> ExitCode {
    use seqd::storage::retention::{archive_data_dir, newest_usable_snapshot_seq, Disposal, KeepFrom};
    let disposal = match (&args.to, args.delete) {
        (Some(to), false) => Disposal::MoveTo(to.clone()),
        (None, true) => Disposal::Delete,
        _ => return fail("say where the segments go: --to ARCHIVE_DIR, or --delete"),
    };
    // Both writers' locks, held to the end: the daemon (or a truncate) must not run meanwhile.
    let (data_dir, _input_lock) = match lock_data_dir(dir) {
        Ok(locked) => locked,
        Err(e) => return fail(&e),
    };
    let _events_lock = match data_dir.events().is_dir().then(|| super::truncate::lock(&data_dir.events())) {
        Some(Err(e)) => return fail(&e),
        lock => lock,
    };
    let checkpoints = match &args.config {
        Some(config) => match super::replicate::mirror_checkpoints(config) {
            Ok(checkpoints) => checkpoints,
            Err(e) => return fail(&format!("mirror checkpoints: {e}")),
        },
        None => Vec::new(),
    };
    let snapshot_seq = match newest_usable_snapshot_seq(&data_dir.snapshots(), &data_dir.input()) {
        Ok(seq) => seq,
        Err(e) => return fail(&e.to_string()),
    };
    let keep =
        KeepFrom::new(snapshot_seq, args.keep_from, &checkpoints.iter().map(|(_, seq)| *seq).collect::<Vec<_>>());
    for (name, seq) in &checkpoints {
        println!("mirror {name}: checkpoint {seq}");
    }
    println!(
        "newest usable snapshot: seq {snapshot_seq}; keeping input from seq {}, events from seq {}",
        keep.input_seq, keep.events_seq
    );
    match archive_data_dir(&data_dir, keep, &disposal) {
        Ok(archived) => {
            let what = if args.delete { "deleted" } else { "archived" };
            for (name, done) in
                [("input", archived.input), ("events", archived.events), ("events/parts", archived.parts)]
            {
                let starts = done.first_seq.map_or("-".to_string(), |seq| seq.to_string());
                println!("{name}: {what} {} segments ({} bytes); starts at seq {starts}", done.segments, done.bytes);
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}
