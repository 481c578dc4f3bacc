//! `seqd journal truncate DIR --before SEQ`: the operator's way past a poison command (one
//! whose processing panics the engine, so that recovery refuses to start). It cuts the input
//! journal before SEQ, and with it the derived data that would contradict the cut: the event
//! log's records from SEQ on and the snapshots taken at SEQ or later.
//!
//! Why this loses nothing that was promised: results leave the daemon only after the processor
//! has applied the command, and the processor stopped at the poison command, so neither it nor
//! any later command was ever answered. Each step leaves a valid data directory (later segments
//! are deleted from the last one back, then the cut segment's tail is zeroed), so a crash in
//! the middle is repaired by running the command again.

use seqd::engine::Seq;
use seqd::storage::journal::{self, format, JournalError, JournalReader};
use seqd::storage::replay::DataDir;
use seqd::wire::codec;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::ExitCode;

/// Commands printed before "... and N more".
const CUT_COMMANDS_SHOWN: u64 = 20;
/// Zeros written per call when blanking the cut tail of a segment.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

pub fn truncate(dir: &Path, before: Seq) -> ExitCode {
    match truncate_data_dir(&DataDir::new(dir), before) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn truncate_data_dir(data_dir: &DataDir, before: Seq) -> Result<(), String> {
    if before == 0 {
        return Err("--before must be at least 1 (sequences start at 1)".into());
    }
    if !data_dir.input().is_dir() {
        return Err(format!("{} holds no input journal", data_dir.input().display()));
    }
    // Both writers' locks, held to the end: a running daemon (or any writer) makes this refuse.
    let _input_lock = lock(&data_dir.input())?;
    let _events_lock = if data_dir.events().is_dir() { Some(lock(&data_dir.events())?) } else { None };

    let input = journal::verify(&data_dir.input()).map_err(|e| format!("the input journal is not intact: {e}"))?;
    if let Some(first_seq) = input.first_seq.filter(|&first| before < first) {
        return Err(format!("the input journal starts at {first_seq}: nothing before {before} is here to keep"));
    }
    if input.last_seq < before {
        println!("the input journal ends at {}: nothing at or after {before} to cut", input.last_seq);
    } else {
        show_cut_commands(&data_dir.input(), before, input.last_seq)?;
    }

    // Derived data first, then the system of record: a crash in between leaves an event log
    // behind the input journal, which recovery regenerates.
    if data_dir.events().is_dir() {
        let events = journal::verify(&data_dir.events()).map_err(|e| format!("the event log is not intact: {e}"))?;
        if events.last_seq >= before {
            cut_journal(&data_dir.events(), before)?;
            println!(
                "event log: removed records {before}..={}; a mirror that replicated them must be rebuilt \
                 (its checkpoint is past the cut)",
                events.last_seq
            );
        }
    }
    for (seq, path) in data_dir.snapshots().list().map_err(|e| e.to_string())? {
        if seq >= before {
            fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("removed snapshot {}", path.display());
        }
    }
    if input.last_seq >= before {
        cut_journal(&data_dir.input(), before)?;
        println!("input journal: removed commands {before}..={}; it now ends at {}", input.last_seq, before - 1);
    }
    Ok(())
}

/// Takes the writer lock of a journal directory (journal/FORMAT.md, section 1), as a writer
/// does; held by a running daemon, it is refused with a hint.
pub(crate) fn lock(dir: &Path) -> Result<File, String> {
    journal::lock_dir(dir).map_err(|e| match e {
        JournalError::Locked { .. } => {
            format!("{} is held by a running writer (is seqd running?): stop it first", dir.display())
        }
        other => other.to_string(),
    })
}

/// Prints the commands that will be cut (the first few), so the log keeps what was removed.
fn show_cut_commands(input_dir: &Path, before: Seq, last_seq: Seq) -> Result<(), String> {
    println!("cutting commands {before}..={last_seq}, never answered:");
    let mut reader = JournalReader::open(input_dir, before).map_err(|e| e.to_string())?;
    for _ in 0..CUT_COMMANDS_SHOWN {
        let Some(record) = reader.next().map_err(|e| e.to_string())? else { break };
        match codec::decode_input(record.kind, record.payload) {
            Ok((_, command)) => println!("    {}: {command:?}", record.seq),
            Err(e) => println!("    {}: undecodable command: {e}", record.seq),
        }
    }
    let shown = (last_seq - before + 1).min(CUT_COMMANDS_SHOWN);
    if last_seq - before + 1 > shown {
        println!("    ... and {} more", last_seq - before + 1 - shown);
    }
    Ok(())
}

/// Removes every record at or after `before` from a verified journal that holds `before`:
/// deletes the later segments (last first), then zeroes the cut segment from the record
/// `before` on. The segment that held `before` stays, possibly with no record left.
fn cut_journal(dir: &Path, before: Seq) -> Result<(), String> {
    let mut segments: Vec<(Seq, std::path::PathBuf)> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .filter_map(|entry| {
            let first_seq = entry.file_name().to_str().and_then(format::parse_segment_file_name)?;
            Some((first_seq, entry.path()))
        })
        .collect();
    segments.sort();
    let Some(cut_index) = segments.iter().rposition(|(first_seq, _)| *first_seq <= before) else {
        return Err(format!("{}: no segment holds {before}", dir.display()));
    };
    for (_, path) in segments[cut_index + 1..].iter().rev() {
        fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
        sync_dir(dir)?;
    }
    zero_from(&segments[cut_index].1, before)
}

/// Zeroes a segment from the record `before` to its last non-zero byte (the rest is zero), so
/// the record before it is the segment's last and the writer continues there.
fn zero_from(path: &Path, before: Seq) -> Result<(), String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut offset = format::SEGMENT_HEADER_LEN_BYTES;
    let cut_offset = loop {
        match format::decode_slot(&bytes, offset) {
            format::Slot::Record { record, .. } if record.seq == before => break offset,
            format::Slot::Record { len_bytes, .. } => offset += len_bytes,
            _ => return Err(format!("{}: record {before} not found", path.display())),
        }
    };
    let end = bytes.iter().rposition(|&b| b != 0).map_or(cut_offset, |i| i + 1).max(cut_offset);
    let file = OpenOptions::new().write(true).open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let zeros = vec![0u8; ZERO_CHUNK_BYTES.min(end - cut_offset)];
    let mut at = cut_offset;
    while at < end {
        let len = zeros.len().min(end - at);
        file.write_all_at(&zeros[..len], at as u64).map_err(|e| format!("{}: {e}", path.display()))?;
        at += len;
    }
    file.sync_data().map_err(|e| format!("{}: {e}", path.display()))
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("{}: {e}", dir.display()))
}
