//! A journal's chain hash at a given seq (what binds a snapshot to the journal it was taken
//! from), and cutting a journal back to a seq (what repairs an event log that is ahead of its
//! input journal).

use std::path::{Path, PathBuf};

use super::error::JournalError;
use super::format::{self, SegmentHeader, Slot, SEGMENT_HEADER_LEN_BYTES};
use super::recover;
use super::segment::{self, SegmentFile};
use super::watermark::{Watermark, WatermarkFile};
use crate::storage::disk::Storage;

/// What the journal holds at a seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainPosition {
    /// The chain hash through the record at that seq (FORMAT.md section 5).
    Hash([u8; 32]),
    /// The journal ends before that seq: its last record is `last_seq` (0: none).
    Beyond { last_seq: u64 },
    /// The journal starts after that seq (older segments archived): it cannot tell.
    Before { first_seq: u64 },
}

/// The chain hash of the journal in `dir` through the record at `seq`:
/// `BLAKE3(prev_chain_hash || bytes [64, end of record seq))` of the segment holding `seq`,
/// which for the last record of a segment is the next segment's `prev_chain_hash`; for
/// `seq = first_seq - 1` of a segment, that segment's `prev_chain_hash` (all zeros at 0).
///
/// Reads at most one segment; checks CRCs and seq continuity on the way, not the rest of the
/// chain (`verify` and recovery do). A missing directory is an empty journal.
pub fn chain_hash_at(dir: &Path, seq: u64) -> Result<ChainPosition, JournalError> {
    let segments = match segment::list_segments(dir) {
        Ok(segments) => segments,
        Err(JournalError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let Some(first) = segments.first() else {
        return Ok(ChainPosition::Beyond { last_seq: 0 });
    };
    if seq.checked_add(1).is_some_and(|next| next < first.first_seq) {
        return Ok(ChainPosition::Before { first_seq: first.first_seq });
    }
    // The segment starting right after `seq` stores the hash in its header, if it has one.
    if let Some(next) = segments.iter().find(|s| Some(s.first_seq) == seq.checked_add(1)) {
        if let Ok(header) = read_header(next) {
            return Ok(ChainPosition::Hash(header.prev_chain_hash));
        }
    }
    let holder = segments.iter().rev().find(|s| s.first_seq <= seq).unwrap_or(first);
    let map = segment::map_read(&holder.path)?;
    let bytes: &[u8] = map.as_deref().unwrap_or(&[]);
    let header = SegmentHeader::decode(bytes)
        .map_err(|why| JournalError::corrupt(&holder.path, 0, format!("bad segment header: {why}")))?;
    let mut offset = SEGMENT_HEADER_LEN_BYTES;
    let mut last_seq = header.first_seq.saturating_sub(1);
    while let Slot::Record { record, len_bytes } = format::decode_slot(bytes, offset) {
        if record.seq != last_seq + 1 {
            let reason = format!("sequence gap: expected seq {}, found {}", last_seq + 1, record.seq);
            return Err(JournalError::corrupt(&holder.path, offset, reason));
        }
        last_seq = record.seq;
        offset += len_bytes;
        if record.seq == seq {
            let mut chain = blake3::Hasher::new();
            chain.update(&header.prev_chain_hash);
            chain.update(&bytes[SEGMENT_HEADER_LEN_BYTES..offset]);
            return Ok(ChainPosition::Hash(*chain.finalize().as_bytes()));
        }
    }
    Ok(ChainPosition::Beyond { last_seq })
}

fn read_header(file: &SegmentFile) -> Result<SegmentHeader, JournalError> {
    let map = segment::map_read(&file.path)?;
    SegmentHeader::decode(map.as_deref().unwrap_or(&[]))
        .map_err(|why| JournalError::corrupt(&file.path, 0, format!("bad segment header: {why}")))
}

/// Drops every record after `keep_last_seq` from the journal in `dir` (which no writer may
/// hold open); returns the file and offset from which records were dropped, if any.
///
/// Later segments are deleted newest first, then the rest of the segment holding
/// `keep_last_seq` is zeroed from its end backwards: a crash at any point leaves a valid
/// journal (a longer prefix, or one with a torn tail) that a second call finishes cutting.
pub fn truncate_after(
    dir: &Path,
    keep_last_seq: u64,
    storage: &Storage,
) -> Result<Option<(PathBuf, u64)>, JournalError> {
    let _lock = segment::lock_dir(dir)?;
    segment::remove_temp_segments(dir, storage)?;
    let scan = recover::scan_journal(dir)?;
    if let Some(torn) = &scan.torn {
        recover::repair_torn_tail(torn, storage)?;
    }
    let files = segment::list_segments(dir)?;
    let mut removed_first = None;
    for (index, file) in files.iter().enumerate().rev() {
        if index == 0 || file.first_seq <= keep_last_seq {
            break;
        }
        storage.remove_file(&file.path).map_err(|e| JournalError::io(&file.path, e))?;
        removed_first = Some((file.path.clone(), 0u64));
    }
    if removed_first.is_some() {
        segment::sync_dir(dir, storage)?;
    }
    let Some(holder) = files.iter().rev().find(|f| f.path.exists()) else {
        return Ok(None);
    };
    let mut map = segment::map_write(&holder.path)?;
    let mut offset = SEGMENT_HEADER_LEN_BYTES;
    let mut cut_offset = None;
    while let Slot::Record { record, len_bytes } = format::decode_slot(&map, offset) {
        if record.seq > keep_last_seq && cut_offset.is_none() {
            cut_offset = Some(offset);
        }
        offset += len_bytes;
    }
    let Some(cut_offset) = cut_offset else {
        return Ok(removed_first);
    };
    let data_end_offset = offset;
    // Bytes about to be rewritten must not stay under the watermark.
    let mut watermark = WatermarkFile::open(dir, storage)?;
    let cut = Watermark { first_seq: holder.first_seq, offset: cut_offset as u64 };
    watermark.set(cut.min(watermark.current()), storage)?;
    let mut end = data_end_offset;
    while end > cut_offset {
        let start = (end - 1) / ZERO_STEP_BYTES * ZERO_STEP_BYTES;
        let start = start.max(cut_offset);
        map[start..end].fill(0);
        end = start;
    }
    storage
        .sync_map(&holder.path, &map, cut_offset, data_end_offset - cut_offset)
        .map_err(|e| JournalError::io(&holder.path, e))?;
    tracing::warn!(file = %holder.path.display(), offset = cut_offset, keep_last_seq, "journal: dropped records after seq");
    Ok(Some((holder.path.clone(), cut_offset as u64)))
}

/// Zeroing proceeds backwards in page-sized steps.
const ZERO_STEP_BYTES: usize = 4096;
