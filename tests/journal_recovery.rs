//! Recovery and verification: torn tails, corruption, forgery.

#[path = "common/journal.rs"]
mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use seqd::storage::journal::format::{SegmentHeader, HDR_FIRST_SEQ_OFFSET, HDR_PREV_CHAIN_HASH};
use seqd::storage::journal::{verify, JournalWriter};

/// Picks a last seq whose payload is not a multiple of 8 (so it has padding) and whose
/// length's low byte is non-zero (so keeping only byte 0 leaves a non-zero `len` word).
fn last_seq_with_padded_payload(from: u64) -> u64 {
    (from..).find(|&s| !payload(s).len().is_multiple_of(8) && !payload(s).len().is_multiple_of(256)).unwrap()
}

/// Base journal for torn-tail tests plus the location of its last record.
fn torn_tail_base(dir: &Path) -> (u64, PathBuf, RecordLoc) {
    let last_seq = last_seq_with_padded_payload(60);
    build_journal(dir, last_seq);
    let last_file = segment_files(dir).pop().unwrap();
    let last = *records_in(&last_file).last().unwrap();
    assert_eq!(last.seq, last_seq);
    (last_seq, last_file, last)
}

/// After recovery, appending continues at `expected_last_seq + 1` and everything verifies.
fn assert_appending_continues(dir: &Path, expected_last_seq: u64) {
    let (mut writer, _) = JournalWriter::open(config(dir)).unwrap();
    assert_eq!(writer.next_seq(), expected_last_seq + 1);
    append_until(&mut writer, expected_last_seq + 3, 2);
    drop(writer);
    assert_eq!(read_and_check(dir, 1), expected_last_seq + 3);
    let report = verify(dir).unwrap();
    assert_eq!(report.last_seq, expected_last_seq + 3);
    assert_eq!(report.torn_tail, None);
}

#[test]
fn torn_tail_zeroed_from_every_byte_of_the_last_record() {
    let base = tempfile::tempdir().unwrap();
    let (last_seq, last_file, last) = torn_tail_base(base.path());
    let payload_end = 32 + last.payload_len;
    assert!(last.len_bytes > payload_end, "test needs a padded record");
    for k in 0..last.len_bytes {
        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        let file = work.path().join(last_file.file_name().unwrap());
        modify_file(&file, |bytes| bytes[last.offset + k..].fill(0));

        // k == 0: the record is entirely gone, a clean end. k past the payload: only
        // (already zero) padding was touched. Otherwise: a torn record.
        let (expected_last, expected_torn) = match k {
            0 => (last_seq - 1, None),
            k if k >= payload_end => (last_seq, None),
            _ => (last_seq - 1, Some((file.clone(), last.offset as u64))),
        };
        let verified = verify(work.path()).unwrap();
        assert_eq!(verified.torn_tail, expected_torn, "k={k}");
        assert_eq!(verified.last_seq, expected_last, "k={k}");

        let (writer, report) = JournalWriter::open(config(work.path())).unwrap();
        assert_eq!(report.last_seq, expected_last, "k={k}");
        assert_eq!(report.truncated_tail, expected_torn, "k={k}");
        drop(writer);
        // The junk is gone from disk: the tail is zero from the record offset on.
        if expected_last < last_seq {
            assert!(fs::read(&file).unwrap()[last.offset..].iter().all(|&b| b == 0), "k={k}");
        }
        assert_appending_continues(work.path(), expected_last);
    }
}

#[test]
fn torn_tail_file_cut_at_every_byte_of_the_last_record() {
    let base = tempfile::tempdir().unwrap();
    let (last_seq, last_file, last) = torn_tail_base(base.path());
    for k in 0..last.len_bytes {
        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        let file = work.path().join(last_file.file_name().unwrap());
        fs::OpenOptions::new().write(true).open(&file).unwrap().set_len((last.offset + k) as u64).unwrap();

        let expected_torn = (k > 0).then(|| (file.clone(), last.offset as u64));
        let (writer, report) = JournalWriter::open(config(work.path())).unwrap();
        assert_eq!(report.last_seq, last_seq - 1, "k={k}");
        assert_eq!(report.truncated_tail, expected_torn, "k={k}");
        drop(writer);
        // The short file is never grown: the next record that does not fit rolls.
        assert_eq!(fs::metadata(&file).unwrap().len(), (last.offset + k) as u64);
        assert_appending_continues(work.path(), last_seq - 1);
    }
}

/// Journal with at least 3 segments, the last holding at least 4 records.
fn corruption_base(dir: &Path) -> Vec<PathBuf> {
    let (mut writer, _) = JournalWriter::open(config(dir)).unwrap();
    append_until(&mut writer, 150, 5);
    while records_in(&segment_files(dir).pop().unwrap()).len() < 4 {
        let last = writer.next_seq();
        append_until(&mut writer, last, 1);
    }
    drop(writer);
    let files = segment_files(dir);
    assert!(files.len() >= 3);
    files
}

/// Byte positions (relative to the record start) covering every header field and the payload.
fn interesting_positions(loc: RecordLoc) -> Vec<usize> {
    let mut positions = vec![0, 1, 2, 3, 4, 7, 8, 15, 16, 23, 24, 25, 26, 27, 28, 31, 32];
    positions.push(32 + loc.payload_len / 2);
    positions.push(32 + loc.payload_len - 1);
    if loc.len_bytes > 32 + loc.payload_len {
        positions.push(32 + loc.payload_len); // padding
    }
    positions
}

#[test]
fn flipped_bit_in_a_middle_record_is_refused_with_file_and_offset() {
    let base = tempfile::tempdir().unwrap();
    let files = corruption_base(base.path());
    // A middle segment (later segments exist) and the last segment (later records exist).
    for segment_index in [1, files.len() - 1] {
        let records = records_in(&files[segment_index]);
        let target = records[records.len() / 2];
        assert!(records.len() >= 3 && target.seq < records.last().unwrap().seq);
        for position in interesting_positions(target) {
            for bit in [0u8, 7] {
                let work = tempfile::tempdir().unwrap();
                copy_dir(base.path(), work.path());
                let file = work.path().join(files[segment_index].file_name().unwrap());
                modify_file(&file, |bytes| bytes[target.offset + position] ^= 1 << bit);
                let reason = expect_corrupt(verify(work.path()), &file, target.offset);
                assert!(!reason.is_empty());
                expect_corrupt(JournalWriter::open(config(work.path())), &file, target.offset);
            }
        }
    }
}

#[test]
fn flipped_bit_in_a_segment_header_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let files = corruption_base(base.path());
    for segment_index in [0, 1, files.len() - 1] {
        for position in [0, 9, 12, 17, 30, 63] {
            let work = tempfile::tempdir().unwrap();
            copy_dir(base.path(), work.path());
            let file = work.path().join(files[segment_index].file_name().unwrap());
            modify_file(&file, |bytes| bytes[position] ^= 0x10);
            let reason = expect_corrupt(verify(work.path()), &file, 0);
            assert!(reason.contains("header"), "{reason}");
            expect_corrupt(JournalWriter::open(config(work.path())), &file, 0);
        }
    }
}

#[test]
fn sequence_gap_with_valid_crc_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let files = corruption_base(base.path());
    let last_file = files.last().unwrap();
    let records = records_in(last_file);
    // In the middle of the last segment and as the very last record.
    for target in [records[records.len() / 2], *records.last().unwrap()] {
        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        let file = work.path().join(last_file.file_name().unwrap());
        forge_record(&file, target, target.seq + 2, &payload(target.seq));
        let reason = expect_corrupt(verify(work.path()), &file, target.offset);
        assert!(reason.contains("sequence gap"), "{reason}");
        expect_corrupt(JournalWriter::open(config(work.path())), &file, target.offset);
    }
}

#[test]
fn junk_after_the_data_of_a_segment_is_corrupt_before_a_successor_and_torn_at_the_tail() {
    let base = tempfile::tempdir().unwrap();
    let files = corruption_base(base.path());
    for (segment_index, is_last) in [(1, false), (files.len() - 1, true)] {
        let work = tempfile::tempdir().unwrap();
        copy_dir(base.path(), work.path());
        let file = work.path().join(files[segment_index].file_name().unwrap());
        let last = *records_in(&file).last().unwrap();
        let data_end = last.offset + last.len_bytes;
        modify_file(&file, |bytes| bytes[data_end + 20] = 0x5A);
        if is_last {
            let expected = Some((file.clone(), data_end as u64));
            assert_eq!(verify(work.path()).unwrap().torn_tail, expected);
            let (_, report) = JournalWriter::open(config(work.path())).unwrap();
            assert_eq!(report.truncated_tail, expected);
            assert_eq!(report.last_seq, last.seq);
        } else {
            let reason = expect_corrupt(verify(work.path()), &file, data_end);
            assert!(reason.contains("followed by a later segment"), "{reason}");
            expect_corrupt(JournalWriter::open(config(work.path())), &file, data_end);
        }
    }
}

#[test]
fn missing_middle_segment_is_a_gap() {
    let base = tempfile::tempdir().unwrap();
    let files = corruption_base(base.path());
    fs::remove_file(&files[1]).unwrap();
    let reason = expect_corrupt(verify(base.path()), &files[2], HDR_FIRST_SEQ_OFFSET);
    assert!(reason.contains("sequence gap between segments"), "{reason}");
    expect_corrupt(JournalWriter::open(config(base.path())), &files[2], HDR_FIRST_SEQ_OFFSET);
}

#[test]
fn tampered_record_with_recomputed_crc_breaks_the_hash_chain() {
    let base = tempfile::tempdir().unwrap();
    let files = corruption_base(base.path());
    let clean = verify(base.path()).unwrap();

    // Tamper in segment 0: its own scan passes (CRC recomputed), segment 1's header catches it.
    let work = tempfile::tempdir().unwrap();
    copy_dir(base.path(), work.path());
    let file0 = work.path().join(files[0].file_name().unwrap());
    let target = records_in(&file0)[1];
    let mut tampered = payload(target.seq);
    tampered[0] ^= 0xFF;
    forge_record(&file0, target, target.seq, &tampered);
    let file1 = work.path().join(files[1].file_name().unwrap());
    let reason = expect_corrupt(verify(work.path()), &file1, HDR_PREV_CHAIN_HASH);
    assert!(reason.contains("hash chain"), "{reason}");
    expect_corrupt(JournalWriter::open(config(work.path())), &file1, HDR_PREV_CHAIN_HASH);

    // Tamper in the last segment: nothing later to catch it, but the reported chain hash changes.
    let work = tempfile::tempdir().unwrap();
    copy_dir(base.path(), work.path());
    let last = work.path().join(files.last().unwrap().file_name().unwrap());
    let target = records_in(&last)[0];
    let mut tampered = payload(target.seq);
    tampered[0] ^= 0xFF;
    forge_record(&last, target, target.seq, &tampered);
    let report = verify(work.path()).unwrap();
    assert_eq!(report.last_seq, clean.last_seq);
    assert_ne!(report.chain_hash, clean.chain_hash);
}

#[test]
fn empty_or_zeroed_last_segment_from_a_crashed_roll_is_a_torn_tail() {
    for file_len in [0usize, 10, 64, SMALL_SEGMENT_BYTES as usize] {
        let dir = tempfile::tempdir().unwrap();
        build_journal(dir.path(), 40);
        let before = verify(dir.path()).unwrap();
        let torn = dir.path().join("00000000000000000041.seg");
        fs::write(&torn, vec![0u8; file_len]).unwrap();

        assert_eq!(verify(dir.path()).unwrap().torn_tail, Some((torn.clone(), 0)));
        let (writer, report) = JournalWriter::open(config(dir.path())).unwrap();
        assert_eq!(report.last_seq, 40, "len {file_len}");
        assert_eq!(report.truncated_tail, Some((torn.clone(), 0)));
        assert_eq!(writer.chain_hash(), before.chain_hash);
        drop(writer);
        assert_appending_continues(dir.path(), 40);
    }
}

#[test]
fn zeroed_only_segment_restarts_at_its_first_seq() {
    let dir = tempfile::tempdir().unwrap();
    let torn = dir.path().join("00000000000000000500.seg");
    fs::write(&torn, vec![0u8; 4096]).unwrap();
    let (writer, report) = JournalWriter::open(config(dir.path())).unwrap();
    assert_eq!(report.truncated_tail, Some((torn, 0)));
    assert_eq!(writer.next_seq(), 500);
}

#[test]
fn header_only_last_segment_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    build_journal(dir.path(), 40);
    let before = verify(dir.path()).unwrap();
    let header = SegmentHeader { first_seq: 41, prev_chain_hash: before.chain_hash };
    let path = dir.path().join("00000000000000000041.seg");
    let mut bytes = vec![0u8; SMALL_SEGMENT_BYTES as usize];
    bytes[..64].copy_from_slice(&header.encode());
    fs::write(&path, bytes).unwrap();
    // A stray half-created segment from a crashed roll is removed.
    fs::write(dir.path().join("00000000000000000041.seg.tmp"), b"partial").unwrap();

    // A reader at the end of the journal waits on the empty segment (regression: it used to
    // treat the empty segment as its own successor and spin).
    let mut reader = seqd::storage::journal::JournalReader::open(dir.path(), 41).unwrap();
    assert!(reader.next().unwrap().is_none());

    let (mut writer, report) = JournalWriter::open(config(dir.path())).unwrap();
    assert_eq!(report.last_seq, 40);
    assert_eq!(report.truncated_tail, None);
    assert_eq!(writer.active_segment_path(), path);
    // Gone (the helper thread may already be preparing a new file of that name).
    let stray = fs::read(dir.path().join("00000000000000000041.seg.tmp"));
    assert!(!stray.is_ok_and(|bytes| bytes == b"partial"));
    append_until(&mut writer, 45, 10);
    drop(writer);
    assert_eq!(reader.next().unwrap().unwrap().seq, 41);
    assert_eq!(records_in(&path)[0].seq, 41);
    assert_eq!(read_and_check(dir.path(), 1), 45);
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use seqd::storage::journal::{JournalReader, VerifyReport};
    use std::sync::OnceLock;

    const BASE_LAST_SEQ: u64 = 120;

    fn base() -> &'static (tempfile::TempDir, VerifyReport) {
        static BASE: OnceLock<(tempfile::TempDir, VerifyReport)> = OnceLock::new();
        BASE.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            build_journal(dir.path(), BASE_LAST_SEQ);
            let report = verify(dir.path()).unwrap();
            (dir, report)
        })
    }

    fn cfg() -> ProptestConfig {
        ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() }
    }

    proptest! {
        #![proptest_config(cfg())]

        /// Any single changed byte anywhere in any file is noticed by verify, and open()
        /// either refuses or keeps only a correct prefix of the records.
        #[test]
        fn any_single_byte_change_is_detected(file_pick in any::<usize>(), byte_pick in any::<usize>(), xor in 1u8..=255) {
            let (base_dir, clean) = base();
            let work = tempfile::tempdir().unwrap();
            copy_dir(base_dir.path(), work.path());
            let files = segment_files(work.path());
            let file = &files[file_pick % files.len()];
            modify_file(file, |bytes| { let i = byte_pick % bytes.len(); bytes[i] ^= xor; });

            let verified = verify(work.path());
            prop_assert!(!matches!(&verified, Ok(report) if report == clean), "undetected change in {}", file.display());
            if let Ok((writer, report)) = JournalWriter::open(config(work.path())) {
                drop(writer);
                prop_assert!(report.last_seq <= BASE_LAST_SEQ);
                prop_assert_eq!(read_and_check(work.path(), 1), report.last_seq);
            }
        }

        /// Arbitrary file contents never panic verify, open or the reader.
        #[test]
        fn garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..700), with_header in any::<bool>(), len_word in any::<u32>()) {
            let dir = tempfile::tempdir().unwrap();
            let mut bytes = Vec::new();
            if with_header {
                bytes.extend_from_slice(&SegmentHeader { first_seq: 1, prev_chain_hash: [0; 32] }.encode());
                bytes.extend_from_slice(&len_word.to_le_bytes());
            }
            bytes.extend_from_slice(&body);
            fs::write(dir.path().join("00000000000000000001.seg"), &bytes).unwrap();
            let _ = verify(dir.path());
            if let Ok(mut reader) = JournalReader::open(dir.path(), 1) {
                for _ in 0..64 {
                    if !matches!(reader.next(), Ok(Some(_))) { break; }
                }
            }
            let _ = JournalWriter::open(config(dir.path()));
        }

        /// Random payload sizes and commit points round-trip through small segments.
        #[test]
        fn random_appends_round_trip(lens in proptest::collection::vec(1usize..1500, 1..200), commit_every in 1usize..20) {
            let dir = tempfile::tempdir().unwrap();
            let (mut writer, _) = JournalWriter::open(config(dir.path())).unwrap();
            for (i, len) in lens.iter().enumerate() {
                let seq = writer.next_seq();
                let body: Vec<u8> = (0..*len).map(|j| (j as u64 ^ seq) as u8).collect();
                writer.append(seq, seq, (i % 3) as u16, &body).unwrap();
                if i % commit_every == 0 { writer.commit().unwrap(); }
            }
            writer.commit().unwrap();
            let chain_hash = writer.chain_hash();
            drop(writer);
            let mut reader = JournalReader::open(dir.path(), 1).unwrap();
            for (i, len) in lens.iter().enumerate() {
                let record = reader.next().unwrap().unwrap();
                prop_assert_eq!(record.seq, i as u64 + 1);
                prop_assert_eq!(record.payload.len(), *len);
                prop_assert!(record.payload.iter().enumerate().all(|(j, &b)| b == (j as u64 ^ record.seq) as u8));
            }
            prop_assert!(reader.next().unwrap().is_none());
            let report = verify(dir.path()).unwrap();
            prop_assert_eq!(report.records, lens.len() as u64);
            prop_assert_eq!(report.chain_hash, chain_hash);
        }
    }
}

/// Writes `SYNCED` (FORMAT.md section 6.1) saying that the journal is durable up to
/// `offset` of segment `first_seq`, in both slots.
fn set_watermark(dir: &Path, first_seq: u64, offset: u32) {
    let mut slot = Vec::with_capacity(32);
    slot.extend_from_slice(b"SEQDSYNC");
    slot.extend_from_slice(&1u64.to_le_bytes());
    slot.extend_from_slice(&first_seq.to_le_bytes());
    slot.extend_from_slice(&offset.to_le_bytes());
    let crc = crc32c::crc32c(&slot);
    slot.extend_from_slice(&crc.to_le_bytes());
    fs::write(dir.join("SYNCED"), [slot.clone(), slot].concat()).unwrap();
}

/// A power cut persists unsynced pages in any order: a hole with valid records after it, in
/// a segment followed by later ones, is a torn tail when it lies after the durable watermark
/// (the journal is cut there, later segments deleted) and corruption when it lies before.
#[test]
fn a_hole_after_the_durable_watermark_is_cut_and_before_it_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let files = corruption_base(base.path());
    let middle = &files[1];
    let records = records_in(middle);
    let target = records[records.len() / 2];
    let first_seq_of = |path: &Path| records_in(path)[0].seq;

    // After the watermark (it points at the start of the middle segment's records).
    let work = tempfile::tempdir().unwrap();
    copy_dir(base.path(), work.path());
    let file = work.path().join(middle.file_name().unwrap());
    modify_file(&file, |bytes| bytes[target.offset + 40] ^= 0x10);
    set_watermark(work.path(), first_seq_of(middle), 64);
    let verified = verify(work.path()).unwrap();
    assert_eq!(verified.torn_tail, Some((file.clone(), target.offset as u64)));
    assert_eq!(verified.last_seq, target.seq - 1);
    let (writer, report) = JournalWriter::open(config(work.path())).unwrap();
    assert_eq!(report.last_seq, target.seq - 1);
    assert_eq!(report.truncated_tail, Some((file.clone(), target.offset as u64)));
    drop(writer);
    assert_eq!(segment_files(work.path()), vec![work.path().join(files[0].file_name().unwrap()), file.clone()]);
    assert!(fs::read(&file).unwrap()[target.offset..].iter().all(|&b| b == 0), "records after the hole dropped");
    assert_appending_continues(work.path(), target.seq - 1);

    // The same damage before the watermark (it points past the damaged record).
    let work = tempfile::tempdir().unwrap();
    copy_dir(base.path(), work.path());
    let file = work.path().join(middle.file_name().unwrap());
    modify_file(&file, |bytes| bytes[target.offset + 40] ^= 0x10);
    set_watermark(work.path(), first_seq_of(middle), (target.offset + target.len_bytes) as u32);
    expect_corrupt(verify(work.path()), &file, target.offset);
    expect_corrupt(JournalWriter::open(config(work.path())), &file, target.offset);
}

/// A clean close syncs and moves the watermark to the end, so that damage to anything a
/// closed writer wrote is refused, under `PageCache` too.
#[test]
fn a_clean_close_moves_the_watermark_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    build_journal(dir.path(), 40);
    let last_file = segment_files(dir.path()).pop().unwrap();
    let last = *records_in(&last_file).last().unwrap();
    let (first_seq, offset) = read_watermark(dir.path());
    assert_eq!((first_seq, offset as usize), (records_in(&last_file)[0].seq, last.offset + last.len_bytes));
}

/// The current `(first_seq, offset)` of `SYNCED` (the slot with the larger counter).
fn read_watermark(dir: &Path) -> (u64, u32) {
    let bytes = fs::read(dir.join("SYNCED")).unwrap();
    let slots: Vec<(u64, u64, u32)> = bytes
        .chunks(32)
        .map(|s| {
            let u64_at = |at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
            (u64_at(8), u64_at(16), u32::from_le_bytes(s[24..28].try_into().unwrap()))
        })
        .collect();
    let (_, first_seq, offset) = *slots.iter().max_by_key(|(counter, _, _)| *counter).unwrap();
    (first_seq, offset)
}

/// `chain_hash_at` (what a snapshot is bound to) agrees with the chain stored in the headers
/// and with `verify`, and says where the journal ends.
#[test]
fn chain_hash_at_matches_the_headers_and_verify() {
    use seqd::storage::journal::{chain_hash_at, ChainPosition};
    let dir = tempfile::tempdir().unwrap();
    build_journal(dir.path(), 120);
    let files = segment_files(dir.path());
    assert!(files.len() >= 3);
    let report = verify(dir.path()).unwrap();
    assert_eq!(chain_hash_at(dir.path(), report.last_seq).unwrap(), ChainPosition::Hash(report.chain_hash));
    assert_eq!(chain_hash_at(dir.path(), 0).unwrap(), ChainPosition::Hash([0u8; 32]));
    assert_eq!(chain_hash_at(dir.path(), 121).unwrap(), ChainPosition::Beyond { last_seq: 120 });
    for pair in files.windows(2) {
        let next_header = SegmentHeader::decode(&fs::read(&pair[1]).unwrap()).unwrap();
        let last_of_previous = records_in(&pair[0]).last().unwrap().seq;
        // The last record of a segment: what the next header stores; the one before: not.
        let records = records_in(&pair[0]);
        let second_last = records[records.len() - 2].seq;
        assert_ne!(chain_hash_at(dir.path(), second_last).unwrap(), ChainPosition::Hash(next_header.prev_chain_hash));
        assert_eq!(
            chain_hash_at(dir.path(), last_of_previous).unwrap(),
            ChainPosition::Hash(next_header.prev_chain_hash)
        );
    }
}

/// Under `PageCache` a closed segment is synced off the writer thread and the watermark moves
/// past it: a crash image taken while the writer runs (copied from the page cache) refuses
/// damage in an early segment, and cuts a hole in the last one.
#[test]
fn page_cache_watermark_follows_closed_segments() {
    let live = tempfile::tempdir().unwrap();
    let (mut writer, _) = JournalWriter::open(config(live.path())).unwrap();
    append_until(&mut writer, 150, 5);
    // The closed segments are synced in the background; the watermark moves at later rolls.
    let second_first_seq = records_in(&segment_files(live.path())[1])[0].seq;
    while read_watermark(live.path()).0 < second_first_seq
        || records_in(&segment_files(live.path()).pop().unwrap()).len() < 4
    {
        assert!(writer.next_seq() < 1_000_000, "the watermark never moved past the first segment");
        let next = writer.next_seq();
        append_until(&mut writer, next, 1);
    }
    let files = segment_files(live.path());
    assert!(files.len() >= 4, "{files:?}");
    let image = tempfile::tempdir().unwrap();
    copy_dir(live.path(), image.path());
    drop(writer);

    let first = image.path().join(files[0].file_name().unwrap());
    let target = records_in(&first)[2];
    let work = tempfile::tempdir().unwrap();
    copy_dir(image.path(), work.path());
    let file = work.path().join(first.file_name().unwrap());
    modify_file(&file, |bytes| bytes[target.offset + 40] ^= 0x10);
    expect_corrupt(JournalWriter::open(config(work.path())), &file, target.offset);

    let last = image.path().join(files.last().unwrap().file_name().unwrap());
    let records = records_in(&last);
    assert!(records.len() >= 3);
    let target = records[records.len() - 3];
    let work = tempfile::tempdir().unwrap();
    copy_dir(image.path(), work.path());
    let file = work.path().join(last.file_name().unwrap());
    modify_file(&file, |bytes| bytes[target.offset + 40] ^= 0x10);
    let (_, report) = JournalWriter::open(config(work.path())).unwrap();
    assert_eq!(report.truncated_tail, Some((file, target.offset as u64)));
    assert_eq!(report.last_seq, target.seq - 1);
}
