//! Startup recovery and offline verification.
//!
//! Both run the same scan ([`scan_journal`]) so `verify` and `JournalWriter::open` can never
//! disagree about what is valid. The scan is read-only; `open` then applies the repair.
//!
//! Classification of the first byte that is not a valid record in a segment:
//! - nothing but zeros after it: clean end of data;
//! - a record that passes its CRC anywhere later in the same segment: corruption
//!   (a crash only ever damages the record being written, which is the last one);
//! - non-zero bytes, in a segment that has a successor: corruption (a segment is complete
//!   before the next one is created);
//! - non-zero bytes in the last segment: torn tail, truncated by `open`.
//!
//! Power loss adds one rule: damage at or after the durable watermark (`SYNCED`, see
//! `watermark.rs`) lies in bytes that were never synced, whose pages a power cut can persist
//! in any order. Whatever would be corruption there (a hole with valid records after it, junk
//! before a later segment, a bad later header) is a torn tail instead: the journal is cut at
//! the damage, later segments deleted.

use std::path::{Path, PathBuf};

use super::error::JournalError;
use super::format::{
    self, SegmentHeader, Slot, HDR_FIRST_SEQ_OFFSET, HDR_PREV_CHAIN_HASH, RECORD_ALIGN_BYTES, SEGMENT_HEADER_LEN_BYTES,
};
use super::segment::{self, SegmentFile};
use super::watermark::{self, Watermark};
use crate::storage::disk::Storage;

/// What `JournalWriter::open` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Seq of the last record kept, 0 if the journal has no records.
    pub last_seq: u64,
    /// File and byte offset from which a torn tail was zeroed (offset 0: the file was a torn,
    /// header-less segment and was deleted).
    pub truncated_tail: Option<(PathBuf, u64)>,
    /// Segment files in the journal after recovery (including a newly created first segment).
    pub segments: usize,
}

/// Result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub segments: usize,
    pub records: u64,
    /// First seq of the first segment, `None` if there is no segment.
    pub first_seq: Option<u64>,
    /// Seq of the last valid record, 0 if there is none.
    pub last_seq: u64,
    /// Chain hash of the last segment over its valid records (all zeros if no segment).
    /// Equals `JournalWriter::chain_hash()` of a writer that has committed everything.
    pub chain_hash: [u8; 32],
    /// A torn tail that `JournalWriter::open` would truncate: file and offset.
    pub torn_tail: Option<(PathBuf, u64)>,
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let first_seq = self.first_seq.map_or_else(|| "-".to_string(), |s| s.to_string());
        write!(
            f,
            "segments={} records={} first_seq={first_seq} last_seq={} chain_hash={}",
            self.segments,
            self.records,
            self.last_seq,
            blake3::Hash::from_bytes(self.chain_hash).to_hex()
        )?;
        if let Some((file, offset)) = &self.torn_tail {
            write!(f, " torn_tail={}@{offset}", file.display())?;
        }
        Ok(())
    }
}

/// Checks every header CRC, record CRC, seq continuity and the hash chain, read-only.
///
/// A torn tail is not an error (it is reported in `torn_tail`); anything a crash cannot
/// produce is `JournalError::Corrupt` naming the first bad file and offset.
pub fn verify(dir: &Path) -> Result<VerifyReport, JournalError> {
    let scan = scan_journal(dir)?;
    let records = scan.segments.iter().map(|s| s.record_count).sum();
    let last_seq = scan.segments.iter().rev().find_map(|s| s.last_seq()).unwrap_or(0);
    let torn_tail = scan.torn.as_ref().map(|t| (t.path().to_path_buf(), t.offset() as u64));
    Ok(VerifyReport {
        segments: scan.segments.len(),
        records,
        first_seq: scan.segments.first().map(|s| s.first_seq),
        last_seq,
        chain_hash: scan.segments.last().map(|s| s.chain_hash).unwrap_or([0u8; 32]),
        torn_tail,
    })
}

/// One valid segment, as scanned.
#[derive(Debug, Clone)]
pub(crate) struct ScannedSegment {
    pub path: PathBuf,
    pub first_seq: u64,
    pub record_count: u64,
    pub chain_hash: [u8; 32],
}

impl ScannedSegment {
    fn last_seq(&self) -> Option<u64> {
        (self.record_count > 0).then(|| self.first_seq + self.record_count - 1)
    }
}

/// Where and how to continue writing in the last valid segment.
#[derive(Debug, Clone)]
pub(crate) struct TailState {
    pub path: PathBuf,
    pub first_seq: u64,
    pub data_end_offset: usize,
    pub next_seq: u64,
    /// Chain hasher fed with `prev_chain_hash` and every record byte up to `data_end_offset`.
    pub chain: blake3::Hasher,
}

/// Damage a crash can legitimately leave at the end of the journal. `later` lists the
/// segments after the damaged one (never-synced ones, after a power cut), deleted by the repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TornTail {
    /// Non-zero bytes in `[offset, junk_end_offset)` of the segment that are not records.
    Bytes { path: PathBuf, offset: usize, junk_end_offset: usize, later: Vec<PathBuf> },
    /// The segment file has no valid header (and no valid record, or it was never synced):
    /// delete it. `first_seq` is taken from its name.
    File { path: PathBuf, first_seq: u64, later: Vec<PathBuf> },
}

impl TornTail {
    pub fn path(&self) -> &Path {
        match self {
            TornTail::Bytes { path, .. } | TornTail::File { path, .. } => path,
        }
    }

    pub fn offset(&self) -> usize {
        match self {
            TornTail::Bytes { offset, .. } => *offset,
            TornTail::File { .. } => 0,
        }
    }

    fn later(&self) -> &[PathBuf] {
        match self {
            TornTail::Bytes { later, .. } | TornTail::File { later, .. } => later,
        }
    }
}

#[derive(Debug)]
pub(crate) struct JournalScan {
    pub segments: Vec<ScannedSegment>,
    pub tail: Option<TailState>,
    pub torn: Option<TornTail>,
}

/// Scans and validates the whole journal, read-only.
pub(crate) fn scan_journal(dir: &Path) -> Result<JournalScan, JournalError> {
    let files = segment::list_segments(dir)?;
    let watermark = watermark::read(dir);
    let mut scan = JournalScan { segments: Vec::with_capacity(files.len()), tail: None, torn: None };
    for (index, file) in files.iter().enumerate() {
        let is_last = index + 1 == files.len();
        let later = || files[index + 1..].iter().map(|f| f.path.clone()).collect::<Vec<_>>();
        let map = segment::map_read(&file.path)?;
        let bytes: &[u8] = map.as_deref().unwrap_or(&[]);
        let header = match check_header(bytes, file, is_last, &scan) {
            Ok(Some(header)) => header,
            Ok(None) => {
                scan.torn = Some(TornTail::File { path: file.path.clone(), first_seq: file.first_seq, later: later() });
                break;
            }
            Err(e) if Watermark::may_be_unsynced(watermark, file.first_seq, 0) => {
                tracing::warn!(error = %e, "journal: damaged segment after the durable watermark (power loss): cutting the journal there");
                scan.torn = Some(TornTail::File { path: file.path.clone(), first_seq: file.first_seq, later: later() });
                break;
            }
            Err(e) => return Err(e),
        };
        let (segment, tail, torn) = scan_segment(bytes, file, &header, is_last, watermark)?;
        scan.segments.push(segment);
        scan.tail = Some(tail);
        scan.torn = torn;
        if let Some(TornTail::Bytes { later: cut, .. }) = scan.torn.as_mut() {
            if !is_last {
                *cut = later();
                break;
            }
        }
    }
    Ok(scan)
}

/// Validates a segment header against its file name and the previous segment.
/// `Ok(None)` means the (last) file is a torn, header-less segment.
fn check_header(
    bytes: &[u8],
    file: &SegmentFile,
    is_last: bool,
    scan: &JournalScan,
) -> Result<Option<SegmentHeader>, JournalError> {
    let header = match SegmentHeader::decode(bytes) {
        Ok(header) => header,
        Err(why) => {
            // A roll that crashed before its header reached disk leaves zeros (or nothing);
            // that is a torn tail only if no record in the file validates.
            let after = scan_after_data(bytes, SEGMENT_HEADER_LEN_BYTES);
            if is_last && after.next_valid_record_offset.is_none() {
                return Ok(None);
            }
            return Err(JournalError::corrupt(&file.path, 0, format!("bad segment header: {why}")));
        }
    };
    if header.first_seq == 0 {
        return Err(JournalError::corrupt(
            &file.path,
            HDR_FIRST_SEQ_OFFSET,
            "first_seq 0 is not allowed (seqs start at 1)",
        ));
    }
    if header.first_seq != file.first_seq {
        let reason = format!("header first_seq {} does not match the file name", header.first_seq);
        return Err(JournalError::corrupt(&file.path, HDR_FIRST_SEQ_OFFSET, reason));
    }
    if let Some(prev) = scan.tail.as_ref() {
        if header.first_seq != prev.next_seq {
            let reason = format!(
                "sequence gap between segments: expected first_seq {}, header has {}",
                prev.next_seq, header.first_seq
            );
            return Err(JournalError::corrupt(&file.path, HDR_FIRST_SEQ_OFFSET, reason));
        }
    }
    if let Some(prev) = scan.segments.last() {
        if header.prev_chain_hash != prev.chain_hash {
            let reason = format!(
                "hash chain broken: prev_chain_hash does not match the chain hash of {} (a record there was altered)",
                prev.path.display()
            );
            return Err(JournalError::corrupt(&file.path, HDR_PREV_CHAIN_HASH, reason));
        }
    }
    Ok(Some(header))
}

/// Walks the records of one segment with a valid header and classifies what follows them.
fn scan_segment(
    bytes: &[u8],
    file: &SegmentFile,
    header: &SegmentHeader,
    is_last: bool,
    watermark: Option<Watermark>,
) -> Result<(ScannedSegment, TailState, Option<TornTail>), JournalError> {
    let unsynced = |offset| Watermark::may_be_unsynced(watermark, header.first_seq, offset);
    let records = scan_records(bytes, &file.path, header.first_seq, unsynced)?;
    let torn = classify_after_data(bytes, &file.path, &records, is_last, unsynced(records.data_end_offset))?;

    let mut chain = blake3::Hasher::new();
    chain.update(&header.prev_chain_hash);
    chain.update(&bytes[SEGMENT_HEADER_LEN_BYTES..records.data_end_offset]);
    let segment = ScannedSegment {
        path: file.path.clone(),
        first_seq: header.first_seq,
        record_count: records.record_count,
        chain_hash: *chain.finalize().as_bytes(),
    };
    let tail = TailState {
        path: file.path.clone(),
        first_seq: header.first_seq,
        data_end_offset: records.data_end_offset,
        next_seq: records.next_seq,
        chain,
    };
    Ok((segment, tail, torn))
}

struct RecordsScan {
    /// Offset of the first slot that is not a valid record.
    data_end_offset: usize,
    next_seq: u64,
    record_count: u64,
    /// What stopped the walk: `None` for a clean end marker.
    stop: Option<format::InvalidRecord>,
}

/// Walks valid records from the header on; a valid record with the wrong seq is corruption,
/// or where `unsynced(offset)`, the end of the data (the rest is classified as damage).
fn scan_records(
    bytes: &[u8],
    path: &Path,
    first_seq: u64,
    unsynced: impl Fn(usize) -> bool,
) -> Result<RecordsScan, JournalError> {
    let mut offset = SEGMENT_HEADER_LEN_BYTES;
    let mut next_seq = first_seq;
    let mut record_count = 0u64;
    loop {
        match format::decode_slot(bytes, offset) {
            Slot::Record { record, len_bytes } => {
                if record.seq != next_seq {
                    if unsynced(offset) {
                        let stop = Some(format::InvalidRecord::Truncated);
                        return Ok(RecordsScan { data_end_offset: offset, next_seq, record_count, stop });
                    }
                    let reason = format!("sequence gap: expected seq {next_seq}, found {}", record.seq);
                    return Err(JournalError::corrupt(path, offset, reason));
                }
                let Some(after) = next_seq.checked_add(1) else {
                    return Err(JournalError::corrupt(path, offset, "seq overflows u64"));
                };
                next_seq = after;
                record_count += 1;
                offset += len_bytes;
            }
            Slot::End => return Ok(RecordsScan { data_end_offset: offset, next_seq, record_count, stop: None }),
            Slot::Invalid(why) => {
                return Ok(RecordsScan { data_end_offset: offset, next_seq, record_count, stop: Some(why) })
            }
        }
    }
}

/// Decides whether the bytes after the last valid record are a clean end, a torn tail, or corruption.
fn classify_after_data(
    bytes: &[u8],
    path: &Path,
    records: &RecordsScan,
    is_last: bool,
    unsynced: bool,
) -> Result<Option<TornTail>, JournalError> {
    let offset = records.data_end_offset;
    let after = scan_after_data(bytes, offset);
    let Some(junk_end_offset) = after.junk_end_offset else {
        return Ok(None);
    };
    let what = match records.stop {
        Some(why) => format!("invalid record ({why})"),
        None => "end-of-data marker followed by non-zero bytes".to_string(),
    };
    let mut damage = None;
    if let Some(valid_offset) = after.next_valid_record_offset {
        damage = Some(format!("{what}, followed by a valid record at offset {valid_offset}"));
    } else if !is_last {
        damage = Some(format!("{what} in a segment that is followed by a later segment"));
    }
    let junk_end_offset = match damage {
        None => junk_end_offset,
        Some(reason) if !unsynced => return Err(JournalError::corrupt(path, offset, reason)),
        Some(reason) => {
            tracing::warn!(file = %path.display(), offset, %reason, "journal: damage after the durable watermark (power loss): cutting the journal there");
            last_nonzero_end(bytes, offset)
        }
    };
    Ok(Some(TornTail::Bytes { path: path.to_path_buf(), offset, junk_end_offset, later: Vec::new() }))
}

/// End of the last non-zero 8-byte word of `bytes[from..]` (`from` if all zero).
fn last_nonzero_end(bytes: &[u8], from: usize) -> usize {
    let last = bytes[from..].iter().rposition(|&b| b != 0).map_or(from, |i| from + i + 1);
    format::align_up(last).min(bytes.len())
}

struct AfterData {
    /// End of the last non-zero 8-byte word at or after the scan start, if any.
    junk_end_offset: Option<usize>,
    /// First 8-aligned offset at which a complete, CRC-valid record starts.
    next_valid_record_offset: Option<usize>,
}

/// Scans `[start, len)` at 8-byte steps for non-zero bytes and for records that validate.
///
/// One pass, touching mostly-zero memory: cheap even for a large preallocated tail.
fn scan_after_data(bytes: &[u8], start: usize) -> AfterData {
    let mut junk_end_offset = None;
    let mut offset = start;
    while offset < bytes.len() {
        let word_end = (offset + RECORD_ALIGN_BYTES).min(bytes.len());
        if bytes[offset..word_end].iter().any(|&b| b != 0) {
            // A real record never starts with a zero word (payload length >= 1).
            if matches!(format::decode_slot(bytes, offset), Slot::Record { .. }) {
                return AfterData { junk_end_offset: Some(word_end), next_valid_record_offset: Some(offset) };
            }
            junk_end_offset = Some(word_end);
        }
        offset += RECORD_ALIGN_BYTES;
    }
    AfterData { junk_end_offset, next_valid_record_offset: None }
}

/// Applies a torn-tail repair found by [`scan_journal`]; returns what the report should say.
pub(crate) fn repair_torn_tail(torn: &TornTail, storage: &Storage) -> Result<(PathBuf, u64), JournalError> {
    // Later segments first, newest first: a crash during the repair leaves a prefix.
    for path in torn.later().iter().rev() {
        storage.remove_file(path).map_err(|e| JournalError::io(path, e))?;
        tracing::warn!(file = %path.display(), "journal: removed a never-synced segment after a torn tail");
    }
    if let Some(dir) = torn.later().first().and_then(|path| path.parent()) {
        segment::sync_dir(dir, storage)?;
    }
    match torn {
        TornTail::Bytes { path, offset, junk_end_offset, .. } => {
            // Zero only up to the last non-zero byte: the rest of the file already reads as
            // zero, and writing it would allocate the whole sparse tail.
            let mut map = segment::map_write(path)?;
            map[*offset..*junk_end_offset].fill(0);
            storage.sync_map(path, &map, *offset, junk_end_offset - offset).map_err(|e| JournalError::io(path, e))?;
            tracing::warn!(file = %path.display(), offset, "journal: truncated torn tail");
        }
        TornTail::File { path, .. } => {
            storage.remove_file(path).map_err(|e| JournalError::io(path, e))?;
            if let Some(dir) = path.parent() {
                segment::sync_dir(dir, storage)?;
            }
            tracing::warn!(file = %path.display(), offset = 0, "journal: removed torn segment without a valid header");
        }
    }
    Ok((torn.path().to_path_buf(), torn.offset() as u64))
}
