//! Segment files on disk: naming, listing, mapping, creation, directory lock.
//!
//! All `unsafe` of the journal (the two memmap2 constructors) lives in this file.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

use super::error::JournalError;
use super::format::{self, SegmentHeader, SEGMENT_HEADER_LEN_BYTES};

/// Name of the lock file held (flock) by the single writer of a journal directory.
pub const LOCK_FILE_NAME: &str = "LOCK";
/// Suffix of a segment being created; renamed into place once its header is written.
pub const TEMP_SUFFIX: &str = ".tmp";

/// A segment file found in the journal directory (header not yet checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub first_seq: u64,
    pub path: PathBuf,
}

pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format::segment_file_name(first_seq))
}

/// Lists segment files sorted by first seq. Other files (LOCK, *.tmp) are ignored.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, JournalError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| JournalError::io(dir, e))? {
        let entry = entry.map_err(|e| JournalError::io(dir, e))?;
        let name = entry.file_name();
        let Some(first_seq) = name.to_str().and_then(format::parse_segment_file_name) else {
            continue;
        };
        segments.push(SegmentFile {
            first_seq,
            path: entry.path(),
        });
    }
    segments.sort_by_key(|s| s.first_seq);
    Ok(segments)
}

/// Deletes segments that were being created when a writer crashed (never renamed into place,
/// so they never held acknowledged data).
pub fn remove_temp_segments(dir: &Path) -> Result<(), JournalError> {
    for entry in fs::read_dir(dir).map_err(|e| JournalError::io(dir, e))? {
        let entry = entry.map_err(|e| JournalError::io(dir, e))?;
        let is_temp = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(TEMP_SUFFIX))
            .and_then(format::parse_segment_file_name)
            .is_some();
        if is_temp {
            let path = entry.path();
            tracing::warn!(file = %path.display(), "journal: removing unfinished segment");
            fs::remove_file(&path).map_err(|e| JournalError::io(&path, e))?;
        }
    }
    Ok(())
}

/// Takes the exclusive writer lock of `dir`. The lock is released when the file is closed,
/// including when the process is killed, so a crashed writer never leaves a stale lock.
pub fn lock_dir(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| JournalError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(JournalError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(JournalError::io(&path, e)),
    }
}

/// Makes renames/creations/deletions in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| JournalError::io(dir, e))
}

/// Maps a whole segment read-only. Returns `None` for an empty file (nothing to map).
pub fn map_read(path: &Path) -> Result<Option<Mmap>, JournalError> {
    let file = File::open(path).map_err(|e| JournalError::io(path, e))?;
    let len_bytes = file
        .metadata()
        .map_err(|e| JournalError::io(path, e))?
        .len();
    if len_bytes == 0 {
        return Ok(None);
    }
    // SAFETY: memmap2 requires that the file is not truncated while mapped (SIGBUS) and
    // warns that other processes may change the bytes underneath us. The journal never
    // shrinks a segment file (recovery zeroes bytes, or deletes a whole file, which keeps
    // the inode alive while mapped). Concurrent appends by a writer are expected: every
    // byte read through this map is validated (CRC) before it is trusted.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| JournalError::io(path, e))?;
    Ok(Some(map))
}

/// Maps a whole segment read-write (writer and recovery only, under the directory lock).
pub fn map_write(path: &Path) -> Result<MmapMut, JournalError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| JournalError::io(path, e))?;
    map_file_mut(&file, path)
}

fn map_file_mut(file: &File, path: &Path) -> Result<MmapMut, JournalError> {
    // SAFETY: the caller holds the journal directory lock, so this process is the only
    // writer of the file; the journal never shrinks a segment file while it may be mapped
    // (no SIGBUS from truncation). Readers in other processes only read and validate.
    unsafe { MmapMut::map_mut(file) }.map_err(|e| JournalError::io(path, e))
}

/// Creates segment `first_seq` preallocated to `segment_size_bytes`, with its header written,
/// and returns its writable map.
///
/// The file is built under a temporary name and renamed into place, so a reader (or a
/// recovery after a process crash) never sees a segment without a complete header.
/// With `sync`, the header, file size and directory entry are made durable before return.
pub fn create_segment(
    dir: &Path,
    header: &SegmentHeader,
    segment_size_bytes: u64,
    sync: bool,
) -> Result<(PathBuf, MmapMut), JournalError> {
    let final_path = segment_path(dir, header.first_seq);
    if final_path.exists() {
        return Err(JournalError::corrupt(
            &final_path,
            0,
            "segment to be created already exists",
        ));
    }
    let mut temp_name = final_path.clone().into_os_string();
    temp_name.push(TEMP_SUFFIX);
    let temp_path = PathBuf::from(temp_name);

    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp_path)
        .map_err(|e| JournalError::io(&temp_path, e))?;
    // Sparse preallocation: the bytes read as zero, which is the end-of-data marker.
    file.set_len(segment_size_bytes)
        .map_err(|e| JournalError::io(&temp_path, e))?;
    let mut map = map_file_mut(&file, &temp_path)?;
    map[..SEGMENT_HEADER_LEN_BYTES].copy_from_slice(&header.encode());
    if sync {
        map.flush_range(0, SEGMENT_HEADER_LEN_BYTES)
            .map_err(|e| JournalError::io(&temp_path, e))?;
        file.sync_all()
            .map_err(|e| JournalError::io(&temp_path, e))?;
    }
    fs::rename(&temp_path, &final_path).map_err(|e| JournalError::io(&final_path, e))?;
    if sync {
        sync_dir(dir)?;
    }
    Ok((final_path, map))
}
