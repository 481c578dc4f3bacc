//! Snapshot files: the whole engine state at a sequence, checksummed, bound to the input
//! journal it was taken from, written atomically. `journal/FORMAT.md` section 11 is the
//! byte-level description; [`SnapshotStore::newest_usable`] is the one rule for which snapshot
//! a recovery, a replay or a new snapshot starts from.
//!
//! A snapshot is `snapshot-<seq, 20 digits>.snap`: a 96-byte header (magic `SEQDSNAP`, version
//! 2, header CRC32C, seq, body length, BLAKE3 of the body, the input journal's chain hash at
//! seq), then the body (`Engine::encode_state`; its hash is the state hash).
//!
//! It is written to a `.tmp` file, synced, renamed and the directory synced, so a crash leaves
//! either the old set or the new set of snapshots, never a half file under a real name.

use crate::engine::{Engine, Seq, StateDecodeError};
use crate::storage::disk::Storage;
use crate::storage::journal::{self, ChainPosition, JournalError};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SEQDSNAP";
/// 2: the header binds the snapshot to its input journal (chain hash at its seq).
const VERSION: u32 = 2;
const HEADER_LEN_BYTES: usize = 96;
const HDR_VERSION: usize = 8;
const HDR_CRC: usize = 12;
const HDR_SEQ: usize = 16;
const HDR_BODY_LEN: usize = 24;
const HDR_BODY_HASH: usize = 32;
const HDR_INPUT_CHAIN_HASH: usize = 64;
/// Where snapshots the input journal contradicts are moved, under the snapshot directory.
pub const REJECTED_DIR_NAME: &str = "rejected";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("snapshot {path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error("snapshot {path} does not decode: {source}")]
    Decode { path: PathBuf, source: StateDecodeError },
    #[error("cannot snapshot seq {seq}: the input journal {input} does not hold it ({position:?})")]
    NotJournaled { seq: Seq, input: PathBuf, position: ChainPosition },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io { path: path.to_path_buf(), source }
}

/// The header of a snapshot file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// Sequence of the last command applied.
    pub seq: Seq,
    pub body_len_bytes: u64,
    pub body_hash: [u8; 32],
    /// The input journal's chain hash through record `seq` (all zeros at seq 0).
    pub input_chain_hash: [u8; 32],
}

impl SnapshotHeader {
    fn encode(&self) -> [u8; HEADER_LEN_BYTES] {
        let mut bytes = [0u8; HEADER_LEN_BYTES];
        bytes[0..8].copy_from_slice(MAGIC);
        bytes[HDR_VERSION..HDR_VERSION + 4].copy_from_slice(&VERSION.to_le_bytes());
        bytes[HDR_SEQ..HDR_SEQ + 8].copy_from_slice(&self.seq.to_le_bytes());
        bytes[HDR_BODY_LEN..HDR_BODY_LEN + 8].copy_from_slice(&self.body_len_bytes.to_le_bytes());
        bytes[HDR_BODY_HASH..HDR_BODY_HASH + 32].copy_from_slice(&self.body_hash);
        bytes[HDR_INPUT_CHAIN_HASH..HDR_INPUT_CHAIN_HASH + 32].copy_from_slice(&self.input_chain_hash);
        let crc = header_crc(&bytes);
        bytes[HDR_CRC..HDR_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Result<SnapshotHeader, &'static str> {
        let Some(bytes) = bytes.get(..HEADER_LEN_BYTES) else {
            return Err("shorter than a snapshot header");
        };
        if &bytes[0..8] != MAGIC {
            return Err("no snapshot header");
        }
        if u32::from_le_bytes(bytes[HDR_VERSION..HDR_VERSION + 4].try_into().expect("4 bytes")) != VERSION {
            return Err("unsupported snapshot version (version 1 snapshots are not bound to a journal)");
        }
        if u32::from_le_bytes(bytes[HDR_CRC..HDR_CRC + 4].try_into().expect("4 bytes")) != header_crc(bytes) {
            return Err("header checksum mismatch");
        }
        let array = |at: usize| -> [u8; 32] { bytes[at..at + 32].try_into().expect("32 bytes") };
        Ok(SnapshotHeader {
            seq: u64::from_le_bytes(bytes[HDR_SEQ..HDR_SEQ + 8].try_into().expect("8 bytes")),
            body_len_bytes: u64::from_le_bytes(bytes[HDR_BODY_LEN..HDR_BODY_LEN + 8].try_into().expect("8 bytes")),
            body_hash: array(HDR_BODY_HASH),
            input_chain_hash: array(HDR_INPUT_CHAIN_HASH),
        })
    }
}

/// CRC32C of the header with its CRC field taken as zero.
fn header_crc(header: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&header[..HDR_CRC]);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc32c::crc32c_append(crc, &header[HDR_CRC + 4..HEADER_LEN_BYTES])
}

/// A snapshot recovery can start from, with where it came from.
#[derive(Debug)]
pub struct UsableSnapshot {
    pub engine: Engine,
    pub path: PathBuf,
}

/// The snapshot directory of a data directory, and the input journal its snapshots are bound to.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    input_dir: PathBuf,
    storage: Storage,
}

impl SnapshotStore {
    /// Snapshots in `dir`, of the state of the input journal in `input_dir`.
    pub fn new(dir: impl Into<PathBuf>, input_dir: impl Into<PathBuf>, storage: Storage) -> SnapshotStore {
        SnapshotStore { dir: dir.into(), input_dir: input_dir.into(), storage }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where contradicted snapshots are moved.
    pub fn rejected_dir(&self) -> PathBuf {
        self.dir.join(REJECTED_DIR_NAME)
    }

    /// The file name of the snapshot of `seq` in this store.
    pub fn path_for(&self, seq: Seq) -> PathBuf {
        self.dir.join(format!("snapshot-{seq:020}.snap"))
    }

    /// The input journal's chain hash through `seq`, if the journal holds it.
    fn input_chain_hash(&self, seq: Seq) -> Result<ChainPosition, SnapshotError> {
        if seq == 0 {
            // The empty state is the replay of the empty prefix of any journal.
            return Ok(ChainPosition::Hash([0u8; 32]));
        }
        Ok(journal::chain_hash_at(&self.input_dir, seq)?)
    }

    /// Writes the engine's state as the snapshot of its last sequence, bound to the input
    /// journal's record at that sequence (which must be in the journal); returns the path.
    pub fn write(&self, engine: &Engine) -> Result<PathBuf, SnapshotError> {
        let seq = engine.last_seq();
        let input_chain_hash = match self.input_chain_hash(seq)? {
            ChainPosition::Hash(hash) => hash,
            position => return Err(SnapshotError::NotJournaled { seq, input: self.input_dir.clone(), position }),
        };
        fs::create_dir_all(&self.dir).map_err(io_error(&self.dir))?;
        let mut body = Vec::with_capacity(1 << 16);
        engine.encode_state(&mut body);
        let header = SnapshotHeader {
            seq,
            body_len_bytes: body.len() as u64,
            body_hash: *blake3::hash(&body).as_bytes(),
            input_chain_hash,
        };

        let path = self.path_for(seq);
        let tmp = path.with_extension("tmp");
        let mut file = self.storage.create_file(&tmp).map_err(io_error(&tmp))?;
        file.write_all(&header.encode())
            .and_then(|_| file.write_all(&body))
            .and_then(|_| self.storage.sync_file(&tmp, &file))
            .map_err(io_error(&tmp))?;
        self.storage.rename(&tmp, &path).map_err(io_error(&path))?;
        self.storage.sync_dir(&self.dir).map_err(io_error(&self.dir))?;
        Ok(path)
    }

    /// Snapshot files by sequence, oldest first (a missing directory has none).
    pub fn list(&self) -> Result<Vec<(Seq, PathBuf)>, SnapshotError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(SnapshotError::Io { path: self.dir.clone(), source: e }),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error(&self.dir))?;
            let name = entry.file_name();
            let seq =
                name.to_str().and_then(|n| n.strip_prefix("snapshot-")?.strip_suffix(".snap")?.parse::<Seq>().ok());
            if let Some(seq) = seq {
                found.push((seq, entry.path()));
            }
        }
        found.sort();
        Ok(found)
    }

    /// Reads and checks the header of one snapshot file.
    pub fn read_header(path: &Path) -> Result<SnapshotHeader, SnapshotError> {
        let mut bytes = [0u8; HEADER_LEN_BYTES];
        let mut file = fs::File::open(path).map_err(io_error(path))?;
        let read = std::io::Read::read(&mut file, &mut bytes).map_err(io_error(path))?;
        let mut filled = read;
        while filled < HEADER_LEN_BYTES {
            match std::io::Read::read(&mut file, &mut bytes[filled..]).map_err(io_error(path))? {
                0 => break,
                n => filled += n,
            }
        }
        SnapshotHeader::decode(&bytes[..filled])
            .map_err(|reason| SnapshotError::Damaged { path: path.to_path_buf(), reason: reason.to_string() })
    }

    /// Reads and checks one snapshot file (checksums and decoding; not its journal binding).
    pub fn load(path: &Path) -> Result<Engine, SnapshotError> {
        let bytes = fs::read(path).map_err(io_error(path))?;
        let damaged = |reason: &str| SnapshotError::Damaged { path: path.to_path_buf(), reason: reason.to_string() };
        let header = SnapshotHeader::decode(&bytes).map_err(damaged)?;
        let body = &bytes[HEADER_LEN_BYTES..];
        if body.len() as u64 != header.body_len_bytes {
            return Err(damaged("body length does not match the header"));
        }
        if blake3::hash(body).as_bytes() != &header.body_hash {
            return Err(damaged("checksum mismatch"));
        }
        let engine =
            Engine::decode_state(body).map_err(|source| SnapshotError::Decode { path: path.to_path_buf(), source })?;
        if engine.last_seq() != header.seq {
            return Err(damaged("sequence in header and body differ"));
        }
        Ok(engine)
    }

    /// THE rule for which snapshot a state is rebuilt from (daemon recovery, `seqd replay`,
    /// `seqd snapshot`, the background snapshotter): the newest snapshot at or before
    /// `max_seq` that loads and that the input journal agrees with (it holds the snapshot's
    /// seq, with the chain hash the snapshot recorded). Newest first:
    /// - a snapshot whose header does not read, or whose body does not load, is skipped with a
    ///   warning (an older one, or the journal from its start, still gives the right state);
    /// - a snapshot the journal contradicts (the journal ends before its seq, or has another
    ///   chain hash there) is a state the journal does not justify: it is moved to
    ///   `rejected/` with an error naming both, and never considered again;
    /// - a snapshot older than the journal's first segment cannot be checked and is skipped.
    ///
    /// Snapshots newer than `max_seq` are checked too (and moved aside when contradicted),
    /// but not used.
    pub fn newest_usable(&self, max_seq: Seq) -> Result<Option<UsableSnapshot>, SnapshotError> {
        for (seq, path) in self.list()?.into_iter().rev() {
            let header = match Self::read_header(&path) {
                Ok(header) if header.seq == seq => header,
                Ok(header) => {
                    tracing::warn!(snapshot = %path.display(), header_seq = header.seq, "skipping snapshot: its name and header disagree");
                    continue;
                }
                Err(e) => {
                    tracing::warn!("skipping snapshot: {e}");
                    continue;
                }
            };
            match self.input_chain_hash(seq)? {
                ChainPosition::Hash(hash) if hash == header.input_chain_hash => {}
                ChainPosition::Before { first_seq } => {
                    tracing::warn!(snapshot = %path.display(), seq, journal_first_seq = first_seq, "skipping snapshot older than the input journal");
                    continue;
                }
                position => {
                    self.reject(&path, &header, position)?;
                    continue;
                }
            }
            if seq > max_seq {
                continue;
            }
            match Self::load(&path) {
                Ok(engine) => return Ok(Some(UsableSnapshot { engine, path })),
                Err(e) => tracing::warn!("skipping snapshot: {e}"),
            }
        }
        Ok(None)
    }

    /// Moves a snapshot the input journal contradicts to `rejected/`, with an error log.
    fn reject(&self, path: &Path, header: &SnapshotHeader, position: ChainPosition) -> Result<(), SnapshotError> {
        let snapshot_chain_hash = hex(&header.input_chain_hash);
        let journal = match position {
            ChainPosition::Hash(hash) => format!("has chain hash {} at seq {}", hex(&hash), header.seq),
            ChainPosition::Beyond { last_seq } => format!("ends at seq {last_seq}"),
            ChainPosition::Before { first_seq } => format!("starts at seq {first_seq}"),
        };
        let rejected_dir = self.rejected_dir();
        fs::create_dir_all(&rejected_dir).map_err(io_error(&rejected_dir))?;
        let target = rejected_dir.join(path.file_name().unwrap_or_default());
        self.storage.rename(path, &target).map_err(io_error(&target))?;
        self.storage.sync_dir(&self.dir).map_err(io_error(&self.dir))?;
        tracing::error!(
            snapshot = %path.display(),
            seq = header.seq,
            snapshot_chain_hash,
            input_journal = %self.input_dir.display(),
            journal = %journal,
            moved_to = %target.display(),
            "snapshot rejected: the input journal does not justify it (journal {journal})"
        );
        Ok(())
    }

    /// Deletes all but the newest `keep` snapshots; returns how many were deleted.
    pub fn prune(&self, keep: usize) -> Result<usize, SnapshotError> {
        let all = self.list()?;
        let excess = all.len().saturating_sub(keep.max(1));
        for (_, path) in &all[..excess] {
            self.storage.remove_file(path).map_err(io_error(path))?;
        }
        Ok(excess)
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    blake3::Hash::from_bytes(*bytes).to_hex().to_string()
}
