//! Catch-up by snapshot, and the Raft log's compaction that makes it necessary.
//!
//! Every node's snapshotter writes engine snapshots (`snapshots/`, FORMAT.md §11) as on a single
//! node. The consensus thread maps the newest one (sequence S) to the last Raft entry whose
//! commands are all at or below S, and offers it to raft-rs as the log's snapshot
//! ([`NodeStorage`]); the Raft log is then compacted behind it, keeping `log_entries_kept`
//! entries. A follower whose next entry the leader no longer has receives that snapshot file.
//!
//! The follower cannot swap the state of a running pipeline, so it stages the file
//! (`raft/install/`: the snapshot, then a `ready` marker with its index and term, each synced)
//! and re-executes itself. Before anything opens the data directory, [`install_staged`] makes
//! the directory start at S: the input journal, the event log and the other snapshots are
//! removed, the input journal is re-created to continue at S + 1 with the chain hash the
//! snapshot is bound to (so the snapshot is usable and every later record chains as on the
//! other nodes), the event log starts at S + 1, and the Raft log after the snapshot's index.
//! Every step can be repeated, and the marker goes last, so a crash part-way installs again.
//! The event log of a node seeded this way starts at S + 1: replicators should tail a node
//! that holds the whole range they still need (docs/CLUSTER.md).

use crate::engine::Seq;
use crate::storage::event_log::EventLogWriter;
use crate::storage::journal::{Durability, JournalConfig, JournalWriter};
use crate::storage::replay::DataDir;
use crate::storage::snapshots::SnapshotStore;
use raft::eraftpb::{Entry, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const INSTALL_DIR: &str = "install";
const STAGED_SNAPSHOT: &str = "snapshot.snap";
const READY_MARKER: &str = "ready";

/// The snapshot raft-rs may send: an engine snapshot file and the entry it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferedSnapshot {
    pub path: PathBuf,
    pub seq: Seq,
    pub index: u64,
    pub term: u64,
}

/// raft-rs's storage on a cluster node: the in-memory log (`MemStorage`, kept in step with
/// the files by `raft_store`) and the snapshot on offer, read from its file when asked.
#[derive(Clone)]
pub struct NodeStorage {
    pub mem: MemStorage,
    pub offered: Arc<Mutex<Option<OfferedSnapshot>>>,
    pub voters: Vec<u64>,
}

impl Storage for NodeStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let offered = self.offered.lock().expect("offer lock").clone();
        let Some(offered) = offered.filter(|o| o.index >= request_index) else {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        };
        let data = match fs::read(&offered.path) {
            Ok(data) => data,
            Err(e) => {
                tracing::warn!(path = %offered.path.display(), "cluster: the offered snapshot is gone: {e}");
                return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
            }
        };
        let mut snapshot = Snapshot { data: data.into(), ..Default::default() };
        let metadata = snapshot.mut_metadata();
        metadata.index = offered.index;
        metadata.term = offered.term;
        *metadata.mut_conf_state() = raft::eraftpb::ConfState::from((self.voters.clone(), vec![]));
        Ok(snapshot)
    }
}

/// Writes a snapshot received from the leader to `<data>/raft/install/` for [`install_staged`]
/// after the restart. The file is checked first (header, body hash, decoding): a damaged one
/// is refused and the node goes on as it was.
pub fn stage(data_root: &Path, snapshot: &Snapshot) -> Result<Seq, String> {
    let dir = data_root.join("raft").join(INSTALL_DIR);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = dir.join(STAGED_SNAPSHOT);
    write_synced(&file, &snapshot.data)?;
    let engine = SnapshotStore::load(&file).map_err(|e| format!("the leader's snapshot: {e}"))?;
    let metadata = snapshot.get_metadata();
    let marker = format!("{} {} {}\n", metadata.index, metadata.term, engine.last_seq());
    write_synced(&dir.join(READY_MARKER), marker.as_bytes())?;
    fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(engine.last_seq())
}

/// Finishes a staged install (see the module's documentation); `Ok(None)` when none is staged.
/// Runs before the pipeline opens the data directory.
pub fn install_staged(
    data_dir: &DataDir,
    segment_size_bytes: u64,
    durability: Durability,
) -> Result<Option<Seq>, String> {
    let raft_dir = data_dir.root.join("raft");
    let dir = raft_dir.join(INSTALL_DIR);
    let marker = match fs::read_to_string(dir.join(READY_MARKER)) {
        Ok(marker) => marker,
        Err(_) => {
            let _ = fs::remove_dir_all(&dir); // a stage that never finished
            return Ok(None);
        }
    };
    let fields: Vec<u64> = marker.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    let &[index, term, seq] = fields.as_slice() else {
        return Err(format!("{}: unreadable marker {marker:?}", dir.join(READY_MARKER).display()));
    };
    let staged = dir.join(STAGED_SNAPSHOT);
    let header = SnapshotStore::read_header(&staged).map_err(|e| e.to_string())?;
    tracing::warn!(
        seq,
        index,
        term,
        "cluster: installing the leader's snapshot; this node's journals restart after it"
    );
    for journal in [data_dir.input(), data_dir.events()] {
        remove_dir(&journal)?;
    }
    let store = data_dir.snapshots();
    for (_, path) in store.list().map_err(|e| e.to_string())? {
        fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    fs::create_dir_all(store.dir()).map_err(|e| format!("{}: {e}", store.dir().display()))?;
    fs::copy(&staged, store.path_for(seq)).map_err(|e| format!("{}: {e}", staged.display()))?;
    fs::File::open(store.path_for(seq)).and_then(|f| f.sync_all()).map_err(|e| e.to_string())?;
    let continued = |dir: PathBuf, prev_chain_hash: [u8; 32]| JournalConfig {
        first_seq: seq + 1,
        first_prev_chain_hash: prev_chain_hash,
        ..JournalConfig::new(dir, segment_size_bytes, durability)
    };
    drop(JournalWriter::open(continued(data_dir.input(), header.input_chain_hash)).map_err(|e| e.to_string())?);
    drop(EventLogWriter::open(continued(data_dir.events(), [0u8; 32])).map_err(|e| e.to_string())?);
    super::raft_store::reset_to_snapshot(&raft_dir, index, term).map_err(|e| e.to_string())?;
    fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(Some(seq))
}

fn remove_dir(dir: &Path) -> Result<(), String> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut file = fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| format!("{}: {e}", path.display()))
}
