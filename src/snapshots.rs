//! Snapshot files: the whole engine state at a sequence, checksummed, written atomically.
//!
//! A snapshot is `snapshot-<seq, 20 digits>.snap`:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 8 | magic `SEQDSNAP` |
//! | 8 | 4 | snapshot format version (u32 LE) = 1 |
//! | 12 | 4 | reserved, 0 |
//! | 16 | 8 | sequence of the last command applied (u64 LE) |
//! | 24 | 8 | body length in bytes (u64 LE) |
//! | 32 | 32 | BLAKE3 of the body |
//! | 64 | n | body: `Engine::encode_state` (its hash is the state hash) |
//!
//! It is written to a `.tmp` file, synced, renamed and the directory synced, so a crash leaves
//! either the old set or the new set of snapshots, never a half file under a real name.

use crate::engine::{Engine, Seq, StateDecodeError};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SEQDSNAP";
const VERSION: u32 = 1;
const HEADER_LEN_BYTES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("snapshot {path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error("snapshot {path} does not decode: {source}")]
    Decode { path: PathBuf, source: StateDecodeError },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io { path: path.to_path_buf(), source }
}

/// The snapshot directory of a data directory.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    pub fn new(dir: impl Into<PathBuf>) -> SnapshotStore {
        SnapshotStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_for(&self, seq: Seq) -> PathBuf {
        self.dir.join(format!("snapshot-{seq:020}.snap"))
    }

    /// Writes the engine's state as the snapshot of its last sequence; returns the path.
    pub fn write(&self, engine: &Engine) -> Result<PathBuf, SnapshotError> {
        fs::create_dir_all(&self.dir).map_err(io_error(&self.dir))?;
        let mut body = Vec::with_capacity(1 << 16);
        engine.encode_state(&mut body);
        let mut header = [0u8; HEADER_LEN_BYTES];
        header[0..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        header[16..24].copy_from_slice(&engine.last_seq().to_le_bytes());
        header[24..32].copy_from_slice(&(body.len() as u64).to_le_bytes());
        header[32..64].copy_from_slice(blake3::hash(&body).as_bytes());

        let path = self.path_for(engine.last_seq());
        let tmp = path.with_extension("tmp");
        let mut file = fs::File::create(&tmp).map_err(io_error(&tmp))?;
        file.write_all(&header)
            .and_then(|_| file.write_all(&body))
            .and_then(|_| file.sync_all())
            .map_err(io_error(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_error(&path))?;
        fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io_error(&self.dir))?;
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

    /// Reads and checks one snapshot file.
    pub fn load(path: &Path) -> Result<Engine, SnapshotError> {
        let bytes = fs::read(path).map_err(io_error(path))?;
        let damaged = |reason: &str| SnapshotError::Damaged { path: path.to_path_buf(), reason: reason.to_string() };
        if bytes.len() < HEADER_LEN_BYTES || &bytes[0..8] != MAGIC {
            return Err(damaged("no snapshot header"));
        }
        if u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) != VERSION {
            return Err(damaged("unsupported snapshot version"));
        }
        let seq = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
        let body_len = u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes"));
        let body = &bytes[HEADER_LEN_BYTES..];
        if body.len() as u64 != body_len {
            return Err(damaged("body length does not match the header"));
        }
        if blake3::hash(body).as_bytes() != &bytes[32..64] {
            return Err(damaged("checksum mismatch"));
        }
        let engine =
            Engine::decode_state(body).map_err(|source| SnapshotError::Decode { path: path.to_path_buf(), source })?;
        if engine.last_seq() != seq {
            return Err(damaged("sequence in header and body differ"));
        }
        Ok(engine)
    }

    /// The newest snapshot that loads, skipping (with a warning) any that do not.
    pub fn load_newest(&self) -> Result<Option<Engine>, SnapshotError> {
        for (_, path) in self.list()?.into_iter().rev() {
            match Self::load(&path) {
                Ok(engine) => return Ok(Some(engine)),
                Err(e) => tracing::warn!("skipping snapshot: {e}"),
            }
        }
        Ok(None)
    }

    /// Deletes all but the newest `keep` snapshots; returns how many were deleted.
    pub fn prune(&self, keep: usize) -> Result<usize, SnapshotError> {
        let all = self.list()?;
        let excess = all.len().saturating_sub(keep.max(1));
        for (_, path) in &all[..excess] {
            fs::remove_file(path).map_err(io_error(path))?;
        }
        Ok(excess)
    }
}
