//! Helpers shared by the journal integration tests.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use seqd::storage::journal::format::{self, Slot, SEGMENT_HEADER_LEN_BYTES};
use seqd::storage::journal::{Durability, JournalConfig, JournalError, JournalReader, JournalWriter};

pub const SMALL_SEGMENT_BYTES: u64 = 4096;

pub fn config(dir: &Path) -> JournalConfig {
    JournalConfig::new(dir, SMALL_SEGMENT_BYTES, Durability::PageCache)
}

/// Varied length (1..=300 bytes), never containing a zero byte, derived from `seq`.
pub fn payload(seq: u64) -> Vec<u8> {
    let len = 1 + (seq.wrapping_mul(2_654_435_761) % 300) as usize;
    (0..len).map(|i| ((seq as usize * 31 + i * 7) % 255 + 1) as u8).collect()
}

pub fn kind(seq: u64) -> u16 {
    (seq % 5) as u16 + 1
}

pub fn timestamp_ns(seq: u64) -> u64 {
    1_700_000_000_000_000_000 + seq * 1_000
}

pub fn append_seq(writer: &mut JournalWriter, seq: u64) {
    writer.append(seq, timestamp_ns(seq), kind(seq), &payload(seq)).expect("append");
}

/// Appends records `writer.next_seq()..` until `last_seq`, committing every `group` records.
pub fn append_until(writer: &mut JournalWriter, last_seq: u64, group: u64) {
    while writer.next_seq() <= last_seq {
        let seq = writer.next_seq();
        append_seq(writer, seq);
        if seq.is_multiple_of(group) {
            writer.commit().expect("commit");
        }
    }
    writer.commit().expect("commit");
}

/// Creates a journal with records 1..=last_seq in small segments.
pub fn build_journal(dir: &Path, last_seq: u64) {
    let (mut writer, _) = JournalWriter::open(config(dir)).expect("open");
    append_until(&mut writer, last_seq, 5);
}

/// Reads every record from `from_seq`, asserting seq order and content.
pub fn read_and_check(dir: &Path, from_seq: u64) -> u64 {
    let mut reader = JournalReader::open(dir, from_seq).expect("reader");
    let mut expected = from_seq;
    while let Some(record) = reader.next().expect("read") {
        assert_eq!(record.seq, expected);
        assert_eq!(record.payload, payload(record.seq).as_slice(), "payload of seq {}", record.seq);
        assert_eq!(record.kind, kind(record.seq));
        assert_eq!(record.timestamp_ns, timestamp_ns(record.seq));
        expected += 1;
    }
    expected - 1
}

pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
}

#[derive(Debug, Clone, Copy)]
pub struct RecordLoc {
    pub offset: usize,
    pub seq: u64,
    pub len_bytes: usize,
    pub payload_len: usize,
    pub timestamp_ns: u64,
    pub kind: u16,
}

/// Valid records of one segment file, in order.
pub fn records_in(path: &Path) -> Vec<RecordLoc> {
    let bytes = fs::read(path).expect("read segment");
    let mut offset = SEGMENT_HEADER_LEN_BYTES;
    let mut out = Vec::new();
    while let Slot::Record { record, len_bytes } = format::decode_slot(&bytes, offset) {
        out.push(RecordLoc {
            offset,
            seq: record.seq,
            len_bytes,
            payload_len: record.payload.len(),
            timestamp_ns: record.timestamp_ns,
            kind: record.kind,
        });
        offset += len_bytes;
    }
    out
}

pub fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).expect("mkdir");
    for entry in fs::read_dir(src).expect("read_dir") {
        let entry = entry.expect("entry");
        fs::copy(entry.path(), dst.join(entry.file_name())).expect("copy");
    }
}

pub fn modify_file(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(path).expect("read");
    f(&mut bytes);
    fs::write(path, bytes).expect("write");
}

/// Rewrites the record at `loc` with new seq/payload and a correct CRC (a deliberate forgery).
pub fn forge_record(path: &Path, loc: RecordLoc, seq: u64, payload: &[u8]) {
    assert_eq!(payload.len(), loc.payload_len);
    modify_file(path, |bytes| {
        let header = format::encode_record_header(seq, loc.timestamp_ns, loc.kind, payload);
        bytes[loc.offset..loc.offset + 32].copy_from_slice(&header);
        bytes[loc.offset + 32..loc.offset + 32 + payload.len()].copy_from_slice(payload);
    });
}

/// Asserts `result` is `Corrupt` naming `file` and `offset`; returns the reason.
pub fn expect_corrupt<T: std::fmt::Debug>(result: Result<T, JournalError>, file: &Path, offset: usize) -> String {
    match result {
        Err(JournalError::Corrupt { file: got_file, offset: got_offset, reason }) => {
            assert_eq!(got_file, file, "corrupt file ({reason})");
            assert_eq!(got_offset, offset as u64, "corrupt offset ({reason})");
            reason
        }
        other => panic!("expected Corrupt at {}:{offset}, got {other:?}", file.display()),
    }
}
