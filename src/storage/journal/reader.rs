//! Sequential reader for replay and for tailing a live journal.
//!
//! The reader maps one segment at a time read-only. It trusts a record only once its CRC
//! matches, so a record being written concurrently (by a thread or another process) is
//! simply "not there yet": `next` returns `Ok(None)` and a later call retries the same offset.
//! It does not check the hash chain; use `verify` for that.

use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::error::JournalError;
use super::format::{self, RecordRef, SegmentHeader, Slot, SEGMENT_HEADER_LEN_BYTES};
use super::segment;

pub struct JournalReader {
    dir: PathBuf,
    /// Records with a lower seq are skipped.
    from_seq: u64,
    /// `None` until a segment holding `from_seq` exists (empty journal).
    segment: Option<OpenSegment>,
}

struct OpenSegment {
    path: PathBuf,
    first_seq: u64,
    map: Mmap,
    /// Offset of the next slot to decode.
    offset: usize,
    /// Seq the record at `offset` must carry.
    next_seq: u64,
}

/// A record found by `advance`, located by offsets so no borrow outlives the loop.
struct Found {
    seq: u64,
    timestamp_ns: u64,
    kind: u16,
    payload_start: usize,
    payload_end: usize,
}

impl JournalReader {
    /// Opens a reader that yields records with seq >= `from_seq`, in order.
    /// Fails with `SeqBeforeStart` if the journal's first segment starts after `from_seq`.
    /// An empty or missing journal is fine: `next` returns `None` until records appear.
    pub fn open(dir: &Path, from_seq: u64) -> Result<JournalReader, JournalError> {
        let mut reader = JournalReader { dir: dir.to_path_buf(), from_seq, segment: None };
        reader.segment = reader.locate()?;
        Ok(reader)
    }

    /// Seq of the record the next successful `next` will return.
    pub fn next_seq(&self) -> u64 {
        self.segment.as_ref().map_or(self.from_seq, |s| s.next_seq.max(self.from_seq))
    }

    /// Next record, or `Ok(None)` if it is not (completely) written yet; call again later.
    #[allow(clippy::should_implement_trait)] // lending iterator: the record borrows the reader
    pub fn next(&mut self) -> Result<Option<RecordRef<'_>>, JournalError> {
        let Some(found) = self.advance()? else {
            return Ok(None);
        };
        let Some(segment) = self.segment.as_ref() else {
            return Ok(None);
        };
        Ok(Some(RecordRef {
            seq: found.seq,
            timestamp_ns: found.timestamp_ns,
            kind: found.kind,
            payload: &segment.map[found.payload_start..found.payload_end],
        }))
    }

    /// Like `next`, but returns `None` rather than a record with seq > `max_seq`. Lets a
    /// consumer stop at the writer's durable seq instead of reading uncommitted records.
    pub fn next_up_to(&mut self, max_seq: u64) -> Result<Option<RecordRef<'_>>, JournalError> {
        if self.next_seq() > max_seq {
            return Ok(None);
        }
        self.next()
    }

    fn advance(&mut self) -> Result<Option<Found>, JournalError> {
        loop {
            if self.segment.is_none() {
                self.segment = self.locate()?;
            }
            let Some(segment) = self.segment.as_mut() else {
                return Ok(None);
            };
            let slot_offset = segment.offset;
            let why_not_record = match format::decode_slot(&segment.map, slot_offset) {
                Slot::Record { record, len_bytes } => {
                    if record.seq != segment.next_seq {
                        let reason = format!("sequence gap: expected seq {}, found {}", segment.next_seq, record.seq);
                        return Err(JournalError::corrupt(&segment.path, slot_offset, reason));
                    }
                    let payload_start = slot_offset + format::RECORD_HEADER_LEN_BYTES;
                    let found = Found {
                        seq: record.seq,
                        timestamp_ns: record.timestamp_ns,
                        kind: record.kind,
                        payload_start,
                        payload_end: payload_start + record.payload.len(),
                    };
                    segment.offset += len_bytes;
                    segment.next_seq = segment.next_seq.wrapping_add(1);
                    if found.seq >= self.from_seq {
                        return Ok(Some(found));
                    }
                    continue;
                }
                Slot::End => None,
                Slot::Invalid(why) => Some(why),
            };
            if !self.open_successor(why_not_record)? {
                return Ok(None);
            }
        }
    }

    /// At the end of the current segment's data: switch to the next segment if it exists.
    /// The next segment is named after the next seq, so its existence proves this segment
    /// is complete (the writer creates it only after the last record here was written).
    fn open_successor(&mut self, why_not_record: Option<format::InvalidRecord>) -> Result<bool, JournalError> {
        let Some(current) = self.segment.as_ref() else {
            return Ok(false);
        };
        if current.next_seq == current.first_seq {
            // No record here yet: a successor would have this segment's own name.
            return Ok(false);
        }
        let successor_path = segment::segment_path(&self.dir, current.next_seq);
        if !successor_path.exists() {
            return Ok(false); // tail of the journal: not written yet
        }
        if let Some(why) = why_not_record {
            let reason = format!("invalid record ({why}) in a segment that is followed by a later segment");
            return Err(JournalError::corrupt(&current.path, current.offset, reason));
        }
        let next_seq = current.next_seq;
        self.segment = Some(OpenSegment::open(successor_path, next_seq)?);
        Ok(true)
    }

    /// Opens the segment that holds `from_seq` (the last one starting at or before it).
    fn locate(&self) -> Result<Option<OpenSegment>, JournalError> {
        let segments = segment::list_segments(&self.dir).or_else(|e| match e {
            JournalError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            other => Err(other),
        })?;
        let Some(first) = segments.first() else {
            return Ok(None);
        };
        if first.first_seq > self.from_seq {
            return Err(JournalError::SeqBeforeStart { seq: self.from_seq, first_seq: first.first_seq });
        }
        let Some(holder) = segments.iter().rev().find(|s| s.first_seq <= self.from_seq) else {
            return Ok(None);
        };
        OpenSegment::open(holder.path.clone(), holder.first_seq).map(Some)
    }
}

impl OpenSegment {
    fn open(path: PathBuf, expected_first_seq: u64) -> Result<OpenSegment, JournalError> {
        let Some(map) = segment::map_read(&path)? else {
            return Err(JournalError::corrupt(&path, 0, "segment file is empty"));
        };
        let header = SegmentHeader::decode(&map)
            .map_err(|why| JournalError::corrupt(&path, 0, format!("bad segment header: {why}")))?;
        if header.first_seq != expected_first_seq {
            let reason = format!("header first_seq {} does not match the file name", header.first_seq);
            return Err(JournalError::corrupt(&path, format::HDR_FIRST_SEQ_OFFSET, reason));
        }
        Ok(OpenSegment {
            path,
            first_seq: header.first_seq,
            map,
            offset: SEGMENT_HEADER_LEN_BYTES,
            next_seq: header.first_seq,
        })
    }
}
