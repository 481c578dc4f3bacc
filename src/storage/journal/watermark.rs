//! The durable watermark: a small file (`SYNCED`) saying up to where the journal was on
//! stable storage. Recovery uses it to tell what a power cut can leave (damage after it: a torn
//! tail, cut) from what it cannot (damage before it: corruption, refused). FORMAT.md section 6.
//!
//! The file holds two 32-byte slots; a write goes to the slot not holding the newest value,
//! so a write torn by a power cut (or caught half-done by writeback) leaves the other slot:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `SEQDSYNC` |
//! | 8 | 8 | `counter` (u64): the slot with the larger valid counter is the current one |
//! | 16 | 8 | `first_seq` (u64) of a segment |
//! | 24 | 4 | `offset` (u32) in that segment |
//! | 28 | 4 | CRC32C of bytes `[0, 28)` of the slot |
//!
//! Meaning: every byte of every segment with a smaller first seq, and bytes `[0, offset)` of
//! segment `first_seq`, were on stable storage before this value was written. A value is only
//! ever written after the sync that made it true, and never needs a sync of its own: any
//! version of the file that reaches the disk is a true statement.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use super::error::JournalError;
use crate::storage::disk::Storage;

pub const WATERMARK_FILE_NAME: &str = "SYNCED";
const MAGIC: &[u8; 8] = b"SEQDSYNC";
const SLOT_LEN_BYTES: usize = 32;
const FILE_LEN_BYTES: usize = 2 * SLOT_LEN_BYTES;

/// A position in the journal: segment `first_seq`, byte `offset`. Ordered by segment, then offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Watermark {
    pub first_seq: u64,
    pub offset: u64,
}

impl Watermark {
    /// Nothing is known to be durable.
    pub const ZERO: Watermark = Watermark { first_seq: 0, offset: 0 };

    /// Whether the byte at `offset` of segment `first_seq` may not have been on stable storage,
    /// i.e. damage there may be the work of a power cut.
    pub fn may_be_unsynced(watermark: Option<Watermark>, first_seq: u64, offset: usize) -> bool {
        watermark.is_some_and(|w| Watermark { first_seq, offset: offset as u64 } >= w)
    }
}

/// Reads the current watermark of the journal in `dir`. `None` when there is no valid one
/// (a journal written before watermarks existed): recovery then applies the strict rules.
pub fn read(dir: &Path) -> Option<Watermark> {
    let bytes = std::fs::read(dir.join(WATERMARK_FILE_NAME)).ok()?;
    decode_current(&bytes).map(|(_, watermark)| watermark)
}

fn decode_current(bytes: &[u8]) -> Option<(u64, Watermark)> {
    bytes.chunks_exact(SLOT_LEN_BYTES).take(2).filter_map(decode_slot).max_by_key(|(counter, _)| *counter)
}

fn decode_slot(slot: &[u8]) -> Option<(u64, Watermark)> {
    let u64_at = |at: usize| u64::from_le_bytes(slot[at..at + 8].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(slot[28..32].try_into().expect("4 bytes"));
    if &slot[0..8] != MAGIC || crc != crc32c::crc32c(&slot[..28]) {
        return None;
    }
    let offset = u32::from_le_bytes(slot[24..28].try_into().expect("4 bytes"));
    Some((u64_at(8), Watermark { first_seq: u64_at(16), offset: u64::from(offset) }))
}

fn encode_slot(counter: u64, watermark: Watermark) -> [u8; SLOT_LEN_BYTES] {
    let mut slot = [0u8; SLOT_LEN_BYTES];
    slot[0..8].copy_from_slice(MAGIC);
    slot[8..16].copy_from_slice(&counter.to_le_bytes());
    slot[16..24].copy_from_slice(&watermark.first_seq.to_le_bytes());
    // Segment offsets fit in u32 (a record's `len` is a u32 and segments are mapped whole);
    // saturate rather than wrap if a huge segment ever says otherwise (a lower mark is safe).
    let offset = u32::try_from(watermark.offset).unwrap_or(u32::MAX);
    slot[24..28].copy_from_slice(&offset.to_le_bytes());
    let crc = crc32c::crc32c(&slot[..28]);
    slot[28..32].copy_from_slice(&crc.to_le_bytes());
    slot
}

/// The writer's handle on `SYNCED`, mapped: an update is two stores into the page cache.
pub struct WatermarkFile {
    path: PathBuf,
    map: MmapMut,
    counter: u64,
    current: Watermark,
}

impl WatermarkFile {
    /// Opens `dir/SYNCED`, creating it durably (file and directory entry) if it is missing.
    pub fn open(dir: &Path, storage: &Storage) -> Result<WatermarkFile, JournalError> {
        let path = dir.join(WATERMARK_FILE_NAME);
        let existing = std::fs::read(&path).ok().filter(|bytes| bytes.len() == FILE_LEN_BYTES);
        let file = match existing {
            Some(_) => OpenOptions::new().read(true).write(true).open(&path).map_err(|e| JournalError::io(&path, e))?,
            None => {
                // A new file says "nothing is known to be durable" (not "no watermark", which
                // would mean the strict rules of journals older than the watermark).
                let mut file = storage.create_file(&path).map_err(|e| JournalError::io(&path, e))?;
                let zero = encode_slot(0, Watermark::ZERO);
                std::io::Write::write_all(&mut file, &[zero, zero].concat()).map_err(|e| JournalError::io(&path, e))?;
                storage.sync_file(&path, &file).map_err(|e| JournalError::io(&path, e))?;
                storage.sync_dir(dir).map_err(|e| JournalError::io(dir, e))?;
                file
            }
        };
        // SAFETY: the file is fixed-size, never truncated, and written only by the holder of
        // the journal's directory lock (this writer).
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| JournalError::io(&path, e))?;
        let (counter, current) = decode_current(&map).unwrap_or((0, Watermark::ZERO));
        Ok(WatermarkFile { path, map, counter, current })
    }

    pub fn current(&self) -> Watermark {
        self.current
    }

    /// Records `watermark` (which must be true: written after the sync that made it so) in
    /// the page cache. No syscall; it reaches the disk with the kernel's writeback, and any
    /// version that does is true.
    pub fn advance(&mut self, watermark: Watermark) {
        if watermark == self.current {
            return;
        }
        self.counter += 1;
        let slot = (self.counter % 2) as usize * SLOT_LEN_BYTES;
        self.map[slot..slot + SLOT_LEN_BYTES].copy_from_slice(&encode_slot(self.counter, watermark));
        self.current = watermark;
    }

    /// Sets the watermark: in the page cache when it moves forward ([`advance`](Self::advance)),
    /// durably when it moves back ([`set_durably`](Self::set_durably)).
    pub fn set(&mut self, watermark: Watermark, storage: &Storage) -> Result<(), JournalError> {
        if watermark >= self.current {
            self.advance(watermark);
            Ok(())
        } else {
            self.set_durably(watermark, storage)
        }
    }

    /// Sets the watermark and syncs it: needed to LOWER it (before bytes under the old mark
    /// are rewritten), since a lower value must not be lost.
    pub fn set_durably(&mut self, watermark: Watermark, storage: &Storage) -> Result<(), JournalError> {
        // Both slots, so that no older, higher value survives in the other one.
        self.counter += 1;
        let slot = encode_slot(self.counter, watermark);
        self.map[..SLOT_LEN_BYTES].copy_from_slice(&slot);
        self.map[SLOT_LEN_BYTES..].copy_from_slice(&slot);
        self.current = watermark;
        storage.sync_map(&self.path, &self.map, 0, FILE_LEN_BYTES).map_err(|e| JournalError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_valid_slot_wins_and_a_torn_slot_leaves_the_other() {
        let a = Watermark { first_seq: 1, offset: 640 };
        let b = Watermark { first_seq: 1, offset: 4096 };
        let mut bytes = [encode_slot(2, a), encode_slot(3, b)].concat();
        assert_eq!(decode_current(&bytes), Some((3, b)));
        bytes[SLOT_LEN_BYTES + 20] ^= 1;
        assert_eq!(decode_current(&bytes), Some((2, a)));
        bytes[3] ^= 1;
        assert_eq!(decode_current(&bytes), None);
    }

    #[test]
    fn positions_order_by_segment_then_offset() {
        let w = Some(Watermark { first_seq: 100, offset: 640 });
        assert!(!Watermark::may_be_unsynced(w, 1, 1 << 20));
        assert!(!Watermark::may_be_unsynced(w, 100, 639));
        assert!(Watermark::may_be_unsynced(w, 100, 640));
        assert!(Watermark::may_be_unsynced(w, 200, 0));
        assert!(!Watermark::may_be_unsynced(None, 200, 0));
    }
}
