//! Segment files on disk: naming, listing, mapping, creation, directory lock.
//!
//! All `unsafe` of the journal (the two memmap2 constructors and `posix_fallocate`) lives in
//! this file.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use memmap2::{Mmap, MmapMut};

use super::error::JournalError;
use super::format::{self, SegmentHeader, SEGMENT_HEADER_LEN_BYTES};
use crate::storage::disk::Storage;

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
        segments.push(SegmentFile { first_seq, path: entry.path() });
    }
    segments.sort_by_key(|s| s.first_seq);
    Ok(segments)
}

/// Deletes segments that were being created when a writer crashed (never renamed into place,
/// so they never held acknowledged data).
pub fn remove_temp_segments(dir: &Path, storage: &Storage) -> Result<(), JournalError> {
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
            storage.remove_file(&path).map_err(|e| JournalError::io(&path, e))?;
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
        Err(fs::TryLockError::WouldBlock) => Err(JournalError::Locked { dir: dir.to_path_buf() }),
        Err(fs::TryLockError::Error(e)) => Err(JournalError::io(&path, e)),
    }
}

/// Makes renames/creations/deletions in `dir` durable.
pub fn sync_dir(dir: &Path, storage: &Storage) -> Result<(), JournalError> {
    storage.sync_dir(dir).map_err(|e| JournalError::io(dir, e))
}

/// Maps a whole segment read-only. Returns `None` for an empty file (nothing to map).
pub fn map_read(path: &Path) -> Result<Option<Mmap>, JournalError> {
    let file = File::open(path).map_err(|e| JournalError::io(path, e))?;
    let len_bytes = file.metadata().map_err(|e| JournalError::io(path, e))?.len();
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

/// Maps a whole segment read-write (recovery only, under the directory lock).
pub fn map_write(path: &Path) -> Result<MmapMut, JournalError> {
    let file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| JournalError::io(path, e))?;
    map_file_mut(&file, path)
}

fn map_file_mut(file: &File, path: &Path) -> Result<MmapMut, JournalError> {
    // SAFETY: the caller holds the journal directory lock, so this process is the only
    // writer of the file; the journal never shrinks a segment file while it may be mapped
    // (no SIGBUS from truncation). Readers in other processes only read and validate.
    unsafe { MmapMut::map_mut(file) }.map_err(|e| JournalError::io(path, e))
}

/// A segment file made ready ahead of use: created under a temporary name, its disk space
/// reserved and its pages faulted in writable, but without a header, so it is not a segment
/// yet (a crash leaves a `.seg.tmp` that the next writer deletes). [`install_segment`] makes
/// it the segment that starts at a given seq.
#[derive(Debug)]
pub struct PreparedSegment {
    temp_path: PathBuf,
    map: MmapMut,
}

impl PreparedSegment {
    /// Deletes an unused prepared segment (the map is dropped first).
    pub fn discard(self, storage: &Storage) {
        let PreparedSegment { temp_path, map } = self;
        drop(map);
        if let Err(e) = storage.remove_file(&temp_path) {
            tracing::warn!(file = %temp_path.display(), error = %e, "journal: could not remove unused prepared segment");
        }
    }
}

/// Creates `<temp_seq>.seg.tmp` of `segment_size_bytes` and reserves its disk space
/// (`posix_fallocate`), so that a full disk is an error here and never a SIGBUS on a write
/// through the map; with `prefault`, also faults its pages in writable, so that the writer
/// takes no first-touch page fault in it.
///
/// Runs off the writer thread (or at open). `temp_seq` only has to make the temporary name
/// unique and recognisable; the segment's first seq is decided by [`install_segment`].
/// Stops early, deleting the file, when `cancel` is set (the writer is closing).
/// With `sync`, the file's size and allocation are made durable here, while no page is dirty,
/// so that the roll only has to sync the header.
pub fn prepare_segment(
    dir: &Path,
    temp_seq: u64,
    segment_size_bytes: u64,
    sync: bool,
    prefault: bool,
    cancel: &AtomicBool,
    storage: &Storage,
) -> Result<PreparedSegment, JournalError> {
    let temp_path = temp_segment_path(&segment_path(dir, temp_seq));
    let file = storage.create_file(&temp_path).map_err(|e| JournalError::io(&temp_path, e))?;
    let prepared = (|| {
        reserve_space(&file, segment_size_bytes).map_err(|e| JournalError::io(&temp_path, e))?;
        if sync {
            storage.sync_file(&temp_path, &file).map_err(|e| JournalError::io(&temp_path, e))?;
        }
        let map = map_file_mut(&file, &temp_path)?;
        if prefault && !prefault_pages(&map, 0, cancel) {
            return Err(JournalError::io(
                &temp_path,
                std::io::Error::new(std::io::ErrorKind::Interrupted, "segment preparation cancelled"),
            ));
        }
        Ok(map)
    })();
    match prepared {
        Ok(map) => Ok(PreparedSegment { temp_path, map }),
        Err(e) => {
            let _ = storage.remove_file(&temp_path);
            Err(e)
        }
    }
}

/// Turns a prepared segment into segment `header.first_seq`: writes the header, then renames
/// the file into place, so a reader (or a recovery after a process crash) never sees a
/// segment without a complete header. With `sync`, the header and the directory entry are
/// durable before return (the size and allocation already are, see [`prepare_segment`]).
pub fn install_segment(
    dir: &Path,
    prepared: PreparedSegment,
    header: &SegmentHeader,
    sync: bool,
    storage: &Storage,
) -> Result<(PathBuf, MmapMut), JournalError> {
    let final_path = segment_path(dir, header.first_seq);
    if final_path.exists() {
        return Err(JournalError::corrupt(&final_path, 0, "segment to be created already exists"));
    }
    let PreparedSegment { temp_path, mut map } = prepared;
    map[..SEGMENT_HEADER_LEN_BYTES].copy_from_slice(&header.encode());
    if sync {
        // msync(MS_SYNC) of the header page: a data sync of that range, including the
        // unwritten-extent conversion of its block.
        storage.sync_map(&temp_path, &map, 0, SEGMENT_HEADER_LEN_BYTES).map_err(|e| JournalError::io(&temp_path, e))?;
    }
    storage.rename(&temp_path, &final_path).map_err(|e| JournalError::io(&final_path, e))?;
    if sync {
        sync_dir(dir, storage)?;
    }
    Ok((final_path, map))
}

/// Maps the recovered last segment for appending at `data_end_offset`: reserves the disk
/// space of the whole file (a segment written by an older version may be sparse; existing
/// bytes are unchanged) and, with `prefault`, faults in the pages from `data_end_offset` on.
pub fn reopen_segment(path: &Path, data_end_offset: usize, prefault: bool) -> Result<MmapMut, JournalError> {
    let file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| JournalError::io(path, e))?;
    let len_bytes = file.metadata().map_err(|e| JournalError::io(path, e))?.len();
    reserve_space(&file, len_bytes).map_err(|e| JournalError::io(path, e))?;
    let map = map_file_mut(&file, path)?;
    if prefault {
        prefault_pages(&map, data_end_offset, &AtomicBool::new(false));
    }
    Ok(map)
}

/// `<segment path>.tmp`.
fn temp_segment_path(final_path: &Path) -> PathBuf {
    let mut temp_name = final_path.as_os_str().to_owned();
    temp_name.push(TEMP_SUFFIX);
    PathBuf::from(temp_name)
}

/// Allocates disk blocks for `[0, len_bytes)` of `file`, extending it to `len_bytes` if
/// shorter. Allocated blocks read as zero; existing data is never changed. A full disk is an
/// error here (ENOSPC) instead of a SIGBUS on a later write through the map.
#[cfg(target_os = "linux")]
fn reserve_space(file: &File, len_bytes: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if len_bytes == 0 {
        return Ok(());
    }
    let len = libc::off_t::try_from(len_bytes).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: plain FFI call on a file descriptor owned by `file`, open for the whole call;
    // no memory is passed. posix_fallocate returns the error number instead of setting errno.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

/// Elsewhere: sparse preallocation only (no reservation).
#[cfg(not(target_os = "linux"))]
fn reserve_space(file: &File, len_bytes: u64) -> std::io::Result<()> {
    if file.metadata()?.len() < len_bytes {
        file.set_len(len_bytes)?;
    }
    Ok(())
}

/// Pages faulted in per `madvise` call, so that a cancellation is seen quickly.
const PREFAULT_CHUNK_BYTES: usize = 8 << 20;

/// Faults `map[from..]` in writable with `MADV_POPULATE_WRITE`: allocates the page-cache
/// pages and maps them writable "as if written" without writing anything, so it changes no
/// byte and is safe on a range another thread may be writing. Best effort: on failure (e.g. a
/// kernel older than 5.14) the writer takes the page faults itself, which is only slower
/// (the disk space is reserved anyway). Returns `false` if stopped by `cancel`.
fn prefault_pages(map: &MmapMut, from: usize, cancel: &AtomicBool) -> bool {
    let mut offset = from;
    while offset < map.len() {
        if cancel.load(Ordering::Relaxed) {
            return false;
        }
        let len_bytes = PREFAULT_CHUNK_BYTES.min(map.len() - offset);
        #[cfg(target_os = "linux")]
        if let Err(e) = map.advise_range(memmap2::Advice::PopulateWrite, offset, len_bytes) {
            tracing::debug!(error = %e, "journal: MADV_POPULATE_WRITE failed; pages will be faulted on first write");
            return true;
        }
        offset += len_bytes;
    }
    true
}
