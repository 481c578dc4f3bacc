//! A node's Raft state on disk, under `<data>/raft/`:
//!
//! - `log/`: the Raft log, a journal of the same segment format as the input journal
//!   (journal/FORMAT.md: CRC32C per record, hash chain across segments) whose record `seq` is
//!   the entry's index and `timestamp_ns` its term; `kind` is the entry type + 1 and the
//!   payload a reserved zero byte followed by the entry's data (`cluster::entry`).
//! - `meta`: term, vote, commit and the log's start (the index and term of the last entry
//!   compacted away), 48 bytes + CRC32C, replaced atomically (write, fsync, rename, fsync dir).
//!
//! Entries are appended and committed under the configured durability before the messages
//! that depend on them are sent (`node`); term and vote are synced before any message of the
//! new term leaves. raft-rs reads the log through its `MemStorage`, which this store loads at
//! start and keeps in step with the files.

use crate::storage::journal::{self, Durability, JournalConfig, JournalError, JournalReader, JournalWriter};
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::Storage as _;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const META_FILE: &str = "meta";
const META_MAGIC: &[u8; 8] = b"SEQDRFT1";
const META_BYTES: usize = 8 + 5 * 8 + 4;

#[derive(Debug, thiserror::Error)]
pub enum RaftStoreError {
    #[error("raft log: {0}")]
    Journal(#[from] JournalError),
    #[error("raft state file {path}: {reason}")]
    Meta { path: PathBuf, reason: String },
    #[error("raft log {dir}: record {index} at offset-less position: {reason}")]
    Record { dir: PathBuf, index: u64, reason: String },
    #[error("raft storage: {0}")]
    Raft(#[from] raft::Error),
}

/// What `meta` holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RaftMeta {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
    /// The log starts after this entry (0: at 1).
    pub snapshot_index: u64,
    pub snapshot_term: u64,
}

impl RaftMeta {
    fn encode(&self) -> [u8; META_BYTES] {
        let mut out = [0u8; META_BYTES];
        out[..8].copy_from_slice(META_MAGIC);
        for (i, v) in [self.term, self.vote, self.commit, self.snapshot_index, self.snapshot_term].iter().enumerate() {
            out[8 + i * 8..16 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out[..META_BYTES - 4]);
        out[META_BYTES - 4..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<RaftMeta, String> {
        if bytes.len() != META_BYTES || &bytes[..8] != META_MAGIC {
            return Err(format!("not a raft state file ({} bytes)", bytes.len()));
        }
        let crc = u32::from_le_bytes(bytes[META_BYTES - 4..].try_into().expect("4 bytes"));
        if crc != crc32c::crc32c(&bytes[..META_BYTES - 4]) {
            return Err("checksum mismatch".into());
        }
        let field = |i: usize| u64::from_le_bytes(bytes[8 + i * 8..16 + i * 8].try_into().expect("8 bytes"));
        Ok(RaftMeta {
            term: field(0),
            vote: field(1),
            commit: field(2),
            snapshot_index: field(3),
            snapshot_term: field(4),
        })
    }
}

/// The node's Raft storage: the files and raft-rs's view of them.
pub struct RaftStore {
    dir: PathBuf,
    log_config: JournalConfig,
    log: Option<JournalWriter>,
    meta: RaftMeta,
    voters: Vec<u64>,
    /// What raft-rs reads: every entry of the log since `meta.snapshot_index`.
    pub mem: MemStorage,
}

impl RaftStore {
    /// Opens (or creates) `<data>/raft`. A new store starts with `voters` as its membership.
    pub fn open(
        data_root: &Path,
        segment_size_bytes: u64,
        durability: Durability,
        voters: &[u64],
    ) -> Result<RaftStore, RaftStoreError> {
        let dir = data_root.join("raft");
        fs::create_dir_all(&dir).map_err(|e| meta_error(&dir, e.to_string()))?;
        let meta_path = dir.join(META_FILE);
        let meta = match fs::read(&meta_path) {
            Ok(bytes) => RaftMeta::decode(&bytes).map_err(|reason| meta_error(&meta_path, reason))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RaftMeta::default(),
            Err(e) => return Err(meta_error(&meta_path, e.to_string())),
        };
        let log_dir = dir.join("log");
        let log_config = JournalConfig {
            first_seq: meta.snapshot_index + 1,
            ..JournalConfig::new(&log_dir, segment_size_bytes, durability)
        };
        let (log, _report) = JournalWriter::open(log_config.clone())?;
        let mem = MemStorage::new_with_conf_state(ConfState::from((voters.to_vec(), vec![])));
        let mut store = RaftStore { dir, log_config, log: Some(log), meta, voters: voters.to_vec(), mem };
        store.load()?;
        Ok(store)
    }

    /// Fills `mem` from the files: the log's start, its entries and the hard state.
    fn load(&mut self) -> Result<(), RaftStoreError> {
        let mut core = self.mem.wl();
        if self.meta.snapshot_index > 0 {
            let mut snapshot = Snapshot::default();
            let metadata = snapshot.mut_metadata();
            metadata.index = self.meta.snapshot_index;
            metadata.term = self.meta.snapshot_term;
            *metadata.mut_conf_state() = ConfState::from((self.voters.clone(), vec![]));
            core.apply_snapshot(snapshot)?;
        }
        let log_dir = self.log_config.dir.clone();
        let mut reader = JournalReader::open(&log_dir, self.meta.snapshot_index + 1)?;
        let mut entries = Vec::new();
        while let Some(record) = reader.next()? {
            entries.push(entry_of_record(&log_dir, record)?);
        }
        core.append(&entries)?;
        let last_index = self.meta.snapshot_index + entries.len() as u64;
        // The commit point is written lazily (only with term and vote): it is re-learned from
        // the leader. It can never pass the log's end.
        let hard_state = HardState {
            term: self.meta.term,
            vote: self.meta.vote,
            commit: self.meta.commit.min(last_index).max(self.meta.snapshot_index),
            ..Default::default()
        };
        core.set_hardstate(hard_state);
        Ok(())
    }

    pub fn meta(&self) -> RaftMeta {
        self.meta
    }

    /// The index of the log's last entry.
    pub fn last_index(&self) -> u64 {
        self.log.as_ref().expect("the log is open").next_seq() - 1
    }

    /// Appends entries from a `Ready` (a conflicting tail is cut first), to the files and to
    /// `mem`. Durable only after `commit`.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), RaftStoreError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.last_index() {
            // A new leader overwrites entries this node had but that were never committed.
            self.log = None;
            journal::truncate_after(&self.log_config.dir, first.index - 1, &self.log_config.storage)?;
            let (log, _report) = JournalWriter::open(self.log_config.clone())?;
            self.log = Some(log);
        }
        let log = self.log.as_mut().expect("the log is open");
        let mut payload = Vec::with_capacity(256);
        for entry in entries {
            payload.clear();
            payload.push(0);
            payload.extend_from_slice(&entry.data);
            let kind = entry.get_entry_type() as u16 + 1;
            log.append(entry.index, entry.term, kind, &payload)?;
        }
        self.mem.wl().append(entries)?;
        Ok(())
    }

    /// Makes the appended entries durable under the policy.
    pub fn commit(&mut self) -> Result<(), RaftStoreError> {
        self.log.as_mut().expect("the log is open").commit()?;
        Ok(())
    }

    /// Records a new hard state. A change of term or vote is written and synced before this
    /// returns; a commit alone is kept in memory (raft-rs re-learns it after a restart).
    pub fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), RaftStoreError> {
        let changed = hard_state.term != self.meta.term || hard_state.vote != self.meta.vote;
        self.meta.commit = hard_state.commit;
        if changed {
            self.meta.term = hard_state.term;
            self.meta.vote = hard_state.vote;
            self.write_meta()?;
        }
        self.mem.wl().set_hardstate(hard_state.clone());
        Ok(())
    }

    /// Records the commit index raft-rs reported after a ready (memory only, as above).
    pub fn set_commit(&mut self, commit: u64) {
        self.meta.commit = commit;
        self.mem.wl().mut_hard_state().commit = commit;
    }

    /// Drops the log's entries before `index` (kept: `index` and after), in memory and on
    /// disk (whole segments only; the start recorded in `meta` first, so a crash in between
    /// leaves a log that still reads from its recorded start).
    pub fn compact(&mut self, index: u64) -> Result<(), RaftStoreError> {
        let first = self.meta.snapshot_index + 1;
        if index <= first || index > self.last_index() {
            return Ok(());
        }
        let before = index - 1;
        let term = self.mem.term(before)?;
        self.meta.snapshot_index = before;
        self.meta.snapshot_term = term;
        self.write_meta()?;
        self.mem.wl().compact(index)?;
        let segments = crate::storage::retention::segments(&self.log_config.dir)
            .map_err(|e| meta_error(&self.log_config.dir, e.to_string()))?;
        for pair in segments.windows(2) {
            // A segment goes when the next one starts at or before the first entry kept.
            if pair[1].first_seq <= index {
                fs::remove_file(&pair[0].path).map_err(|e| meta_error(&pair[0].path, e.to_string()))?;
            }
        }
        Ok(())
    }

    fn write_meta(&self) -> Result<(), RaftStoreError> {
        write_meta_file(&self.dir, &self.meta)
    }
}

/// After a snapshot install (`catch_up`): the log restarts after entry `index` of `term`, with
/// the commit point there; term and vote are kept.
pub fn reset_to_snapshot(raft_dir: &Path, index: u64, term: u64) -> Result<(), RaftStoreError> {
    let meta_path = raft_dir.join(META_FILE);
    let mut meta = match fs::read(&meta_path) {
        Ok(bytes) => RaftMeta::decode(&bytes).map_err(|reason| meta_error(&meta_path, reason))?,
        Err(_) => RaftMeta::default(),
    };
    let log_dir = raft_dir.join("log");
    match fs::remove_dir_all(&log_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(meta_error(&log_dir, e.to_string())),
    }
    meta.snapshot_index = index;
    meta.snapshot_term = term;
    meta.commit = meta.commit.max(index);
    meta.term = meta.term.max(term);
    write_meta_file(raft_dir, &meta)
}

fn write_meta_file(dir: &Path, meta: &RaftMeta) -> Result<(), RaftStoreError> {
    {
        let path = dir.join(META_FILE);
        let tmp = dir.join(".meta.tmp");
        let write = || -> std::io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&meta.encode())?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| meta_error(&path, e.to_string()))
    }
}

fn meta_error(path: &Path, reason: String) -> RaftStoreError {
    RaftStoreError::Meta { path: path.to_path_buf(), reason }
}

fn entry_of_record(dir: &Path, record: journal::RecordRef<'_>) -> Result<Entry, RaftStoreError> {
    let bad =
        |reason: &str| RaftStoreError::Record { dir: dir.to_path_buf(), index: record.seq, reason: reason.into() };
    let entry_type = match record.kind {
        1 => EntryType::EntryNormal,
        2 => EntryType::EntryConfChange,
        3 => EntryType::EntryConfChangeV2,
        _ => return Err(bad("unknown entry kind")),
    };
    if record.payload.first() != Some(&0) {
        return Err(bad("the reserved byte is not zero"));
    }
    let mut entry = Entry::default();
    entry.set_entry_type(entry_type);
    entry.index = record.seq;
    entry.term = record.timestamp_ns;
    entry.data = record.payload[1..].to_vec().into();
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry { index, term, data: data.to_vec().into(), ..Default::default() }
    }

    #[test]
    fn entries_and_votes_survive_a_reopen_and_a_conflicting_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RaftStore::open(dir.path(), 1 << 16, Durability::PageCache, &[1, 2, 3]).unwrap();
        store.append(&[entry(1, 1, b""), entry(2, 1, b"a"), entry(3, 1, b"b")]).unwrap();
        store.commit().unwrap();
        let mut hs = HardState::default();
        (hs.term, hs.vote, hs.commit) = (2, 3, 2);
        store.set_hard_state(&hs).unwrap();
        // A new leader of term 2 replaces entry 3.
        store.append(&[entry(3, 2, b"c"), entry(4, 2, b"d")]).unwrap();
        store.commit().unwrap();
        drop(store);

        let store = RaftStore::open(dir.path(), 1 << 16, Durability::PageCache, &[1, 2, 3]).unwrap();
        assert_eq!(store.last_index(), 4);
        let state = store.mem.initial_state().unwrap();
        assert_eq!((state.hard_state.term, state.hard_state.vote, state.hard_state.commit), (2, 3, 2));
        assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
        let entries = store.mem.entries(1, 5, None, raft::GetEntriesContext::empty(false)).unwrap();
        let seen: Vec<(u64, u64, Vec<u8>)> = entries.iter().map(|e| (e.index, e.term, e.data.to_vec())).collect();
        assert_eq!(seen, vec![(1, 1, vec![]), (2, 1, b"a".to_vec()), (3, 2, b"c".to_vec()), (4, 2, b"d".to_vec())]);
    }

    #[test]
    fn a_compacted_log_reopens_from_its_recorded_start_and_whole_old_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        // Small segments, so that compaction has whole segments to delete.
        let open = || RaftStore::open(dir.path(), 1024, Durability::PageCache, &[1, 2, 3]).unwrap();
        let mut store = open();
        let entries: Vec<Entry> = (1..=60).map(|i| entry(i, 1 + i / 30, &[i as u8; 40])).collect();
        store.append(&entries).unwrap();
        store.commit().unwrap();
        let segments_before = crate::storage::retention::segments(&dir.path().join("raft/log")).unwrap().len();
        store.compact(45).unwrap();
        assert_eq!(store.mem.first_index().unwrap(), 45);
        let segments_after = crate::storage::retention::segments(&dir.path().join("raft/log")).unwrap();
        assert!(segments_after.len() < segments_before, "{segments_before} -> {}", segments_after.len());
        assert!(segments_after[0].first_seq <= 45);
        drop(store);

        let store = open();
        assert_eq!((store.meta().snapshot_index, store.meta().snapshot_term), (44, 2));
        assert_eq!(store.mem.first_index().unwrap(), 45);
        assert_eq!(store.mem.term(44).unwrap(), 2);
        assert_eq!(store.last_index(), 60);
        let reread = store.mem.entries(45, 61, None, raft::GetEntriesContext::empty(false)).unwrap();
        assert_eq!(reread, entries[44..].to_vec());
    }

    #[test]
    fn a_damaged_state_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RaftStore::open(dir.path(), 1 << 16, Durability::PageCache, &[1]).unwrap();
        store.set_hard_state(&HardState { term: 5, ..Default::default() }).unwrap();
        drop(store);
        let path = dir.path().join("raft/meta");
        let mut bytes = fs::read(&path).unwrap();
        bytes[9] ^= 1;
        fs::write(&path, bytes).unwrap();
        let error = RaftStore::open(dir.path(), 1 << 16, Durability::PageCache, &[1]).err().unwrap();
        assert!(error.to_string().contains("raft/meta") && error.to_string().contains("checksum"), "{error}");
    }
}
