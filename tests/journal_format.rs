//! Writer and reader behaviour on healthy journals.

#[path = "common/journal.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use seqd::storage::journal::{verify, Durability, JournalConfig, JournalError, JournalReader, JournalWriter};

#[test]
fn round_trip_across_many_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, report) = JournalWriter::open(config(dir.path())).unwrap();
    assert_eq!(report.last_seq, 0);
    assert_eq!(report.truncated_tail, None);
    assert_eq!(report.segments, 1);
    append_until(&mut writer, 2_000, 7);
    assert_eq!(writer.durable_seq(), 2_000);
    let writer_chain_hash = writer.chain_hash();
    drop(writer);

    let segments = segment_files(dir.path()).len();
    assert!(segments > 50, "expected many rolls, got {segments} segments");
    assert_eq!(read_and_check(dir.path(), 1), 2_000);
    assert_eq!(read_and_check(dir.path(), 1_234), 2_000);
    assert_eq!(read_and_check(dir.path(), 2_000), 2_000);

    let verified = verify(dir.path()).unwrap();
    assert_eq!(verified.records, 2_000);
    assert_eq!(verified.first_seq, Some(1));
    assert_eq!(verified.last_seq, 2_000);
    assert_eq!(verified.segments, segments);
    assert_eq!(verified.torn_tail, None);
    assert_eq!(verified.chain_hash, writer_chain_hash);

    // Reopen continues the same journal and the same hash chain.
    let (mut writer, report) = JournalWriter::open(config(dir.path())).unwrap();
    assert_eq!(report.last_seq, 2_000);
    assert_eq!(report.truncated_tail, None);
    assert_eq!(writer.next_seq(), 2_001);
    assert_eq!(writer.durable_seq(), 2_000);
    assert_eq!(writer.chain_hash(), writer_chain_hash);
    append_until(&mut writer, 2_500, 3);
    let writer_chain_hash = writer.chain_hash();
    drop(writer);
    assert_eq!(read_and_check(dir.path(), 1), 2_500);
    assert_eq!(verify(dir.path()).unwrap().chain_hash, writer_chain_hash);
}

#[test]
fn segment_files_are_named_by_first_seq_and_preallocated() {
    let dir = tempfile::tempdir().unwrap();
    build_journal(dir.path(), 300);
    let files = segment_files(dir.path());
    assert_eq!(files[0].file_name().unwrap(), "00000000000000000001.seg");
    for file in &files {
        assert_eq!(std::fs::metadata(file).unwrap().len(), SMALL_SEGMENT_BYTES);
        let first_seq: u64 = file.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        assert_eq!(records_in(file)[0].seq, first_seq);
    }
}

#[test]
fn reader_from_middle_of_a_segment_and_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    build_journal(dir.path(), 100);
    let mut reader = JournalReader::open(dir.path(), 57).unwrap();
    assert_eq!(reader.next_seq(), 57);
    assert_eq!(reader.next().unwrap().unwrap().seq, 57);

    // A reader positioned beyond the data waits for it.
    let mut reader = JournalReader::open(dir.path(), 105).unwrap();
    assert!(reader.next().unwrap().is_none());
    let (mut writer, _) = JournalWriter::open(config(dir.path())).unwrap();
    append_until(&mut writer, 110, 100);
    assert_eq!(reader.next().unwrap().unwrap().seq, 105);
}

#[test]
fn roll_in_the_middle_of_a_burst_loses_nothing() {
    for durability in [Durability::PageCache, Durability::Fsync] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = JournalConfig::new(dir.path(), SMALL_SEGMENT_BYTES, durability);
        let (mut writer, _) = JournalWriter::open(cfg.clone()).unwrap();
        // One burst, one commit: the burst spans many segments.
        for seq in 1..=500 {
            append_seq(&mut writer, seq);
        }
        assert!(segment_files(dir.path()).len() > 10);
        assert_eq!(writer.commit().unwrap(), 500);
        let chain_hash = writer.chain_hash();
        drop(writer);
        let (writer, report) = JournalWriter::open(cfg).unwrap();
        assert_eq!(report.last_seq, 500, "{durability:?}");
        assert_eq!(writer.chain_hash(), chain_hash);
        drop(writer);
        assert_eq!(read_and_check(dir.path(), 1), 500);
        assert_eq!(verify(dir.path()).unwrap().records, 500);
    }
}

#[test]
fn uncommitted_page_cache_appends_survive_writer_drop() {
    // PageCache durability: bytes written through the map are in the page cache as soon as
    // they are written, so a process crash (here: drop without commit) keeps them.
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, _) = JournalWriter::open(config(dir.path())).unwrap();
    for seq in 1..=50 {
        append_seq(&mut writer, seq);
    }
    drop(writer);
    let (_, report) = JournalWriter::open(config(dir.path())).unwrap();
    assert_eq!(report.last_seq, 50);
}

#[test]
fn append_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, _) = JournalWriter::open(config(dir.path())).unwrap();
    assert!(matches!(writer.append(2, 0, 0, b"x"), Err(JournalError::SeqMismatch { expected: 1, got: 2 })));
    assert!(matches!(writer.append(1, 0, 0, b""), Err(JournalError::EmptyPayload)));
    let too_big = vec![1u8; SMALL_SEGMENT_BYTES as usize];
    assert!(matches!(writer.append(1, 0, 0, &too_big), Err(JournalError::RecordTooLarge { .. })));
    // The largest payload that fits an empty segment is accepted (and forces a roll).
    writer.append(1, 0, 0, b"small").unwrap();
    let max_payload = vec![9u8; (SMALL_SEGMENT_BYTES - 64 - 32) as usize];
    writer.append(2, 0, 0, &max_payload).unwrap();
    assert_eq!(writer.commit().unwrap(), 2);
    assert_eq!(segment_files(dir.path()).len(), 2);
}

#[test]
fn second_writer_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let (_writer, _) = JournalWriter::open(config(dir.path())).unwrap();
    assert!(matches!(JournalWriter::open(config(dir.path())), Err(JournalError::Locked { .. })));
}

#[test]
fn invalid_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for size in [0, 64, 4_100] {
        let cfg = JournalConfig::new(dir.path(), size, Durability::PageCache);
        assert!(matches!(JournalWriter::open(cfg), Err(JournalError::InvalidConfig(_))), "size {size}");
    }
}

#[test]
fn configurable_first_seq() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig { first_seq: 1_000, ..config(dir.path()) };
    let (mut writer, report) = JournalWriter::open(cfg).unwrap();
    assert_eq!(report.last_seq, 999);
    assert_eq!(writer.next_seq(), 1_000);
    append_until(&mut writer, 1_100, 10);
    drop(writer);
    assert_eq!(read_and_check(dir.path(), 1_000), 1_100);
    assert!(matches!(
        JournalReader::open(dir.path(), 5),
        Err(JournalError::SeqBeforeStart { seq: 5, first_seq: 1_000 })
    ));
    assert_eq!(verify(dir.path()).unwrap().first_seq, Some(1_000));
}

#[test]
fn reader_tails_a_live_writer() {
    const LAST_SEQ: u64 = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let durable = Arc::new(AtomicU64::new(0));
    // Open the writer first so the reader finds the first segment.
    let (mut writer, _) = JournalWriter::open(config(dir.path())).unwrap();
    let writer_durable = Arc::clone(&durable);
    let writer_thread = thread::spawn(move || {
        while writer.next_seq() <= LAST_SEQ {
            let seq = writer.next_seq();
            append_seq(&mut writer, seq);
            if seq % 7 == 0 || seq == LAST_SEQ {
                writer_durable.store(writer.commit().unwrap(), Ordering::Release);
            }
            if seq % 100 == 0 {
                thread::yield_now();
            }
        }
    });

    // One reader reads everything that is there; one stops at the durable seq.
    let mut eager = JournalReader::open(dir.path(), 1).unwrap();
    let mut committed_only = JournalReader::open(dir.path(), 1).unwrap();
    let (mut eager_next, mut committed_next) = (1u64, 1u64);
    let deadline = Instant::now() + Duration::from_secs(60);
    while eager_next <= LAST_SEQ || committed_next <= LAST_SEQ {
        assert!(Instant::now() < deadline, "reader stalled at {eager_next}/{committed_next}");
        let mut progressed = false;
        while let Some(record) = eager.next().unwrap() {
            assert_eq!(record.seq, eager_next);
            assert_eq!(record.payload, payload(record.seq).as_slice());
            eager_next += 1;
            progressed = true;
        }
        let durable_seq = durable.load(Ordering::Acquire);
        while let Some(record) = committed_only.next_up_to(durable_seq).unwrap() {
            assert_eq!(record.seq, committed_next);
            assert!(record.seq <= durable_seq);
            assert_eq!(record.payload, payload(record.seq).as_slice());
            committed_next += 1;
            progressed = true;
        }
        if !progressed {
            thread::sleep(Duration::from_micros(50));
        }
    }
    writer_thread.join().unwrap();
    assert!(eager.next().unwrap().is_none());
}

/// Segments being prepared in the background (`*.seg.tmp`).
fn temp_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().is_some_and(|p| p.ends_with(".seg.tmp")))
        .collect();
    files.sort();
    files
}

/// One record per segment: the writer rolls far faster than the helper thread prepares the
/// next segment, so it waits at (nearly) every roll; nothing is lost or reordered.
#[test]
fn rolls_faster_than_background_preparation_lose_nothing() {
    let small_payload = |seq: u64| vec![(seq % 251 + 1) as u8; (seq % 32 + 1) as usize];
    for (durability, last_seq) in [(Durability::PageCache, 3_000u64), (Durability::Fsync, 150)] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = JournalConfig::new(dir.path(), JournalConfig::MIN_SEGMENT_SIZE_BYTES, durability);
        let (mut writer, _) = JournalWriter::open(cfg.clone()).unwrap();
        for seq in 1..=last_seq {
            writer.append(seq, timestamp_ns(seq), kind(seq), &small_payload(seq)).unwrap();
            if seq % 1_000 == 0 {
                writer.commit().unwrap();
            }
        }
        assert_eq!(writer.commit().unwrap(), last_seq);
        let chain_hash = writer.chain_hash();
        assert!(temp_files(dir.path()).len() <= 1, "one segment at a time is prepared ahead");
        drop(writer);
        assert_eq!(temp_files(dir.path()), Vec::<std::path::PathBuf>::new(), "closing deletes it");

        let verified = verify(dir.path()).unwrap();
        assert_eq!(verified.records, last_seq, "{durability:?}");
        assert_eq!(verified.segments as u64, last_seq, "one record per segment");
        assert_eq!(verified.chain_hash, chain_hash);
        let mut reader = JournalReader::open(dir.path(), 1).unwrap();
        for seq in 1..=last_seq {
            let record = reader.next().unwrap().unwrap();
            assert_eq!((record.seq, record.payload), (seq, small_payload(seq).as_slice()));
        }
        assert!(reader.next().unwrap().is_none());
        let (writer, report) = JournalWriter::open(cfg).unwrap();
        assert_eq!(report.last_seq, last_seq);
        assert_eq!(writer.chain_hash(), chain_hash);
    }
}

/// Commits feed the chain hasher in batches; `chain_hash` must still cover exactly the
/// committed records, whatever the group sizes and wherever the rolls fall.
#[test]
fn chain_hash_after_every_commit_matches_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, _) =
        JournalWriter::open(JournalConfig::new(dir.path(), 64 * 1024, Durability::PageCache)).unwrap();
    for group in (0..150u64).map(|i| i * 37 % 150 + 1) {
        let last_seq = writer.next_seq() + group - 1;
        append_until(&mut writer, last_seq, group);
        assert_eq!(writer.chain_hash(), verify(dir.path()).unwrap().chain_hash, "after seq {last_seq}");
    }
    let chain_hash = writer.chain_hash();
    let last_seq = writer.durable_seq();
    assert!(segment_files(dir.path()).len() > 10);
    // Appends without a commit do not change the committed chain hash (unless they roll).
    let segments = segment_files(dir.path()).len();
    append_seq(&mut writer, last_seq + 1);
    if segment_files(dir.path()).len() == segments {
        assert_eq!(writer.chain_hash(), chain_hash);
    }
    drop(writer);
    let (writer, _) = JournalWriter::open(config(dir.path())).unwrap();
    assert_eq!(writer.next_seq(), last_seq + 2);
}

/// Segment files have their disk space allocated before the writer uses them, so a full
/// disk is an error when a segment is prepared, never a SIGBUS on a write through the map;
/// the allocated bytes still read as zero.
#[cfg(target_os = "linux")]
#[test]
fn segment_space_is_reserved_up_front() {
    use std::os::unix::fs::MetadataExt;
    const SEGMENT_BYTES: u64 = 1 << 20;
    let allocated = |path: &std::path::Path| std::fs::metadata(path).unwrap().blocks() * 512;
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig::new(dir.path(), SEGMENT_BYTES, Durability::PageCache);
    let (mut writer, _) = JournalWriter::open(cfg.clone()).unwrap();
    append_until(&mut writer, 10, 5);
    let active = writer.active_segment_path().to_path_buf();
    assert!(allocated(&active) >= SEGMENT_BYTES);
    // The next segment is prepared in the background, allocated too.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let temp = temp_files(dir.path());
        if temp.len() == 1 && allocated(&temp[0]) >= SEGMENT_BYTES {
            break;
        }
        assert!(Instant::now() < deadline, "no prepared segment: {temp:?}");
        thread::sleep(Duration::from_millis(1));
    }
    drop(writer);
    assert!(temp_files(dir.path()).is_empty());

    // A sparse last segment (as written by earlier versions) is allocated when reopened,
    // its bytes unchanged.
    let bytes = std::fs::read(&active).unwrap();
    let data_end = records_in(&active).last().map(|r| r.offset + r.len_bytes).unwrap();
    std::fs::remove_file(&active).unwrap();
    std::fs::write(&active, &bytes[..data_end]).unwrap();
    std::fs::OpenOptions::new().write(true).open(&active).unwrap().set_len(SEGMENT_BYTES).unwrap();
    assert!(allocated(&active) < SEGMENT_BYTES);
    let (writer, report) = JournalWriter::open(cfg.clone()).unwrap();
    assert_eq!(report.last_seq, 10);
    assert!(allocated(&active) >= SEGMENT_BYTES);
    assert_eq!(std::fs::read(&active).unwrap(), bytes);

    // Closing in the middle of a (large) background preparation stops it and deletes it.
    drop(writer);
    let big = JournalConfig::new(dir.path(), 64 << 20, Durability::PageCache);
    drop(JournalWriter::open(big).unwrap());
    assert!(temp_files(dir.path()).is_empty());
    assert_eq!(read_and_check(dir.path(), 1), 10);
}
