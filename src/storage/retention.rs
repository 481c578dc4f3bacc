//! Journal retention: which segments of the input journal and of the event log nothing needs
//! any more, moving them to an archive directory (or deleting them), and the disk figures the
//! operator watches (`seqd journal archive`, README.md, Operations; journal/FORMAT.md, 1 and 5).
//!
//! A segment may go only when every record in it is below the journal's *keep* sequence:
//! - the input journal keeps the newest usable snapshot's seq (recovery starts after it and
//!   checks the snapshot against the chain hash there) and the operator's `--keep-from` floor;
//! - the event log keeps the same and, in addition, every replicator checkpoint + 1 (a mirror
//!   resumes there).
//!
//! The last segment of a journal (the one a writer appends to) never goes, nor the one holding
//! the keep sequence. Segments go oldest first, the directory synced after each, so a crash
//! part-way leaves a journal that starts later and is otherwise whole: the first segment present
//! anchors the chain (FORMAT.md, 5).
//!
//! The parts log of split event lists (`events/parts/`) has seqs of its own, not command seqs;
//! each part's payload starts with its command's seq (FORMAT.md, 10.3). A prefix of its segments
//! may go while every part in it belongs to a command below the event log's keep sequence: such
//! a part is referenced only by a manifest the event log no longer needs, or by none (parts a
//! crash left without their manifest). The first part of a kept command stops the prefix.

use crate::engine::Seq;
use crate::storage::disk::Storage;
use crate::storage::event_log::parts_dir;
use crate::storage::journal::{chain_hash_at, format, ChainPosition, JournalError, JournalReader};
use crate::storage::replay::DataDir;
use crate::storage::snapshots::{SnapshotError, SnapshotStore};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> RetentionError + '_ {
    move |source| RetentionError::Io { path: path.to_path_buf(), source }
}

/// A segment file of a journal directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub first_seq: Seq,
    pub path: PathBuf,
    pub len_bytes: u64,
}

/// The segments of `dir` in seq order (a missing directory has none). Files being prepared
/// (`.seg.tmp`) and anything else are not segments.
pub fn segments(dir: &Path) -> Result<Vec<Segment>, RetentionError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RetentionError::Io { path: dir.to_path_buf(), source: e }),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir))?;
        let Some(first_seq) = entry.file_name().to_str().and_then(format::parse_segment_file_name) else {
            continue;
        };
        let len_bytes = entry.metadata().map_err(io_error(&entry.path()))?.len();
        found.push(Segment { first_seq, path: entry.path(), len_bytes });
    }
    found.sort_by_key(|s| s.first_seq);
    Ok(found)
}

/// The segments of `segments` (in seq order) whose records are all below `keep_seq`: those
/// followed by a segment starting at or before it. Never the last one.
pub fn below(segments: &[Segment], keep_seq: Seq) -> Vec<Segment> {
    segments.windows(2).take_while(|pair| pair[1].first_seq <= keep_seq).map(|pair| pair[0].clone()).collect()
}

/// The seq of the newest snapshot recovery would start from: its header reads, the input
/// journal has the same chain hash at its seq, and its body loads. 0 when there is none.
pub fn newest_usable_snapshot_seq(store: &SnapshotStore, input_dir: &Path) -> Result<Seq, RetentionError> {
    for (seq, path) in store.list()?.into_iter().rev() {
        let Ok(header) = SnapshotStore::read_header(&path) else { continue };
        if header.seq != seq {
            continue;
        }
        match chain_hash_at(input_dir, seq)? {
            ChainPosition::Hash(hash) if hash == header.input_chain_hash => {}
            _ => continue,
        }
        if SnapshotStore::load(&path).is_ok() {
            return Ok(seq);
        }
    }
    Ok(0)
}

/// What must stay: the lowest seq each journal still needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepFrom {
    pub input_seq: Seq,
    pub events_seq: Seq,
}

impl KeepFrom {
    /// From the newest usable snapshot's seq (0: none), the operator's floor, if any, and the
    /// replicators' checkpoints (last seq in each mirror).
    pub fn new(snapshot_seq: Seq, floor: Option<Seq>, checkpoints: &[Seq]) -> KeepFrom {
        // The snapshot's own seq stays (its chain hash is checked there); seq 0 is no snapshot.
        let input_seq = snapshot_seq.max(1).min(floor.unwrap_or(Seq::MAX));
        let events_seq = checkpoints.iter().map(|c| c.saturating_add(1)).fold(input_seq, Seq::min);
        KeepFrom { input_seq, events_seq }
    }
}

/// Where archived segments go.
#[derive(Clone, Debug)]
pub enum Disposal {
    /// Moved under this directory, into `input/` and `events/` (same file names).
    MoveTo(PathBuf),
    Delete,
}

/// What one journal gave up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Archived {
    pub segments: usize,
    pub bytes: u64,
    /// The first seq the journal now starts at (its first remaining segment's).
    pub first_seq: Option<Seq>,
}

/// Archives (or deletes) the segments of the journal in `dir` below `keep_seq`, oldest first.
/// The caller holds the journal's writer lock. `name` is the archive subdirectory.
pub fn archive_journal(
    dir: &Path,
    keep_seq: Seq,
    disposal: &Disposal,
    name: &str,
    storage: &Storage,
) -> Result<Archived, RetentionError> {
    let all = segments(dir)?;
    let going = below(&all, keep_seq);
    let target_dir = match disposal {
        Disposal::MoveTo(root) => {
            let target = root.join(name);
            fs::create_dir_all(&target).map_err(io_error(&target))?;
            Some(target)
        }
        Disposal::Delete => None,
    };
    let mut archived = Archived { first_seq: all.get(going.len()).map(|s| s.first_seq), ..Archived::default() };
    for segment in &going {
        match &target_dir {
            Some(target) => {
                move_file(&segment.path, &target.join(segment.path.file_name().unwrap_or_default()), storage)?
            }
            None => storage.remove_file(&segment.path).map_err(io_error(&segment.path))?,
        }
        storage.sync_dir(dir).map_err(io_error(dir))?;
        archived.segments += 1;
        archived.bytes += segment.len_bytes;
    }
    Ok(archived)
}

/// Renames `from` to `to`; across file systems, copies, syncs the copy, then removes `from`
/// (so the segment exists in at least one place at every moment).
fn move_file(from: &Path, to: &Path, storage: &Storage) -> Result<(), RetentionError> {
    if storage.rename(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to).map_err(io_error(to))?;
    fs::File::open(to).and_then(|f| f.sync_all()).map_err(io_error(to))?;
    if let Some(parent) = to.parent() {
        storage.sync_dir(parent).map_err(io_error(parent))?;
    }
    storage.remove_file(from).map_err(io_error(from))
}

/// What each journal of a data directory gave up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchivedDataDir {
    pub input: Archived,
    pub events: Archived,
    /// The parts log of split event lists (`events/parts/`).
    pub parts: Archived,
}

impl ArchivedDataDir {
    pub fn segments(&self) -> usize {
        self.input.segments + self.events.segments + self.parts.segments
    }
}

/// The journals of a data directory: input, event log, then its parts log. The caller holds the
/// input's and the event log's locks (the event-log writer also writes the parts log).
pub fn archive_data_dir(
    data_dir: &DataDir,
    keep: KeepFrom,
    disposal: &Disposal,
) -> Result<ArchivedDataDir, RetentionError> {
    let storage = &data_dir.storage;
    let input = archive_journal(&data_dir.input(), keep.input_seq, disposal, "input", storage)?;
    let events = archive_journal(&data_dir.events(), keep.events_seq, disposal, "events", storage)?;
    let parts_dir = parts_dir(&data_dir.events());
    let parts = match parts_keep_seq(&parts_dir, keep.events_seq)? {
        Some(parts_keep) => archive_journal(&parts_dir, parts_keep, disposal, "events/parts", storage)?,
        None => Archived::default(),
    };
    Ok(ArchivedDataDir { input, events, parts })
}

/// The parts-log seq of the first part whose command is at or after `events_keep_seq` (the
/// parts log keeps it and everything after); `None` when the parts log is empty or holds no
/// such part yet (then nothing of it goes: its last segment never does anyway, and a part of a
/// kept command may still be on its way). Reads only up to that part.
pub fn parts_keep_seq(parts_dir: &Path, events_keep_seq: Seq) -> Result<Option<Seq>, RetentionError> {
    let Some(first) = segments(parts_dir)?.first().map(|s| s.first_seq) else {
        return Ok(None);
    };
    let mut reader = JournalReader::open(parts_dir, first)?;
    while let Some(record) = reader.next()? {
        // A part's payload starts with its command's seq (FORMAT.md, 10.3); a record too short
        // to hold one is not a part this build wrote: keep everything from it on.
        let command_seq = match record.payload.get(..8) {
            Some(bytes) => u64::from_le_bytes(bytes.try_into().expect("8 bytes")),
            None => return Ok(Some(record.seq)),
        };
        if command_seq >= events_keep_seq {
            return Ok(Some(record.seq));
        }
    }
    Ok(None)
}

/// Disk figures of a data directory, for the free-disk warning and the metrics
/// (`seqd_disk_free_bytes`, journal bytes and segments).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Free bytes for an unprivileged writer on the data directory's file system.
    pub disk_free_bytes: u64,
    /// Size of that file system (for a free ratio: `seqd_disk_size_bytes`).
    pub disk_size_bytes: u64,
    pub input_bytes: u64,
    pub input_segments: usize,
    pub events_bytes: u64,
    pub events_segments: usize,
}

/// Measures `data_dir` (a directory listing and one `statvfs`; cheap enough for a scrape).
pub fn disk_usage(data_dir: &DataDir) -> Result<DiskUsage, RetentionError> {
    let input = segments(&data_dir.input())?;
    let events = segments(&data_dir.events())?;
    let stat = statvfs(&data_dir.root)?;
    Ok(DiskUsage {
        disk_free_bytes: stat.free_bytes,
        disk_size_bytes: stat.size_bytes,
        input_bytes: input.iter().map(|s| s.len_bytes).sum(),
        input_segments: input.len(),
        events_bytes: events.iter().map(|s| s.len_bytes).sum(),
        events_segments: events.len(),
    })
}

/// `statvfs(path)`: blocks available to unprivileged users times the fragment size.
pub fn free_bytes(path: &Path) -> Result<u64, RetentionError> {
    statvfs(path).map(|stat| stat.free_bytes)
}

/// A file system's size and what an unprivileged writer can still use.
struct FileSystemSpace {
    size_bytes: u64,
    free_bytes: u64,
}

fn statvfs(path: &Path) -> Result<FileSystemSpace, RetentionError> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| RetentionError::Io { path: path.to_path_buf(), source: io::Error::other(e) })?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is a valid NUL-terminated string and stat points to writable memory of
    // the right type; statvfs fills it completely when it returns 0.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(RetentionError::Io { path: path.to_path_buf(), source: io::Error::last_os_error() });
    }
    // SAFETY: statvfs returned 0, so the struct is initialised.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::useless_conversion)] // narrower than u64 on some targets
    let (blocks, available, fragment_bytes) =
        (u64::from(stat.f_blocks), u64::from(stat.f_bavail), u64::from(stat.f_frsize));
    Ok(FileSystemSpace {
        size_bytes: blocks.saturating_mul(fragment_bytes),
        free_bytes: available.saturating_mul(fragment_bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(firsts: &[Seq]) -> Vec<Segment> {
        firsts
            .iter()
            .map(|&first_seq| Segment { first_seq, path: PathBuf::from(format!("{first_seq}")), len_bytes: 10 })
            .collect()
    }

    fn firsts(segments: &[Segment]) -> Vec<Seq> {
        segments.iter().map(|s| s.first_seq).collect()
    }

    #[test]
    fn the_parts_log_gives_up_only_the_parts_of_commands_below_the_keep_seq() {
        use crate::engine::{AccountId, Command, SymbolId};
        use crate::storage::event_log::tests::{cancel_all_session, write_log};
        use crate::storage::event_log::EventLogReader;
        // Two split lists: 1,000 orders cancelled at once, twice.
        let mut commands = cancel_all_session(1_000);
        let first_split = commands.len() as Seq;
        let orders: Vec<Command> = commands.iter().filter(|c| matches!(c, Command::PlaceOrder(_))).copied().collect();
        commands.extend(orders);
        commands.push(Command::CancelAll { account: AccountId(1), symbol: SymbolId::ALL });
        let second_split = commands.len() as Seq;
        let dir = tempfile::tempdir().unwrap();
        let written = write_log(dir.path(), &commands);
        let parts = parts_dir(dir.path());
        let before = segments(&parts).unwrap();
        assert!(before.len() >= 4, "{} parts segments", before.len());

        // The first split command is kept: its first part stops the prefix at once.
        assert_eq!(parts_keep_seq(&parts, first_split).unwrap(), Some(before[0].first_seq));
        // Nothing at or after the keep seq has parts (yet): nothing of the parts log goes.
        assert_eq!(parts_keep_seq(&parts, second_split + 1).unwrap(), None);

        let keep = parts_keep_seq(&parts, first_split + 1).unwrap().expect("the second list's first part");
        let archived = archive_journal(&parts, keep, &Disposal::Delete, "events/parts", &Storage::Real).unwrap();
        let after = segments(&parts).unwrap();
        assert!(archived.segments >= 1 && after.len() + archived.segments == before.len(), "{archived:?}");
        assert!(after[0].first_seq <= keep, "the segment holding the kept part stays");
        // The kept split record still reads whole; the archived one is gone with its parts.
        let mut events = Vec::new();
        let mut reader = EventLogReader::open(dir.path(), second_split).unwrap();
        assert_eq!(reader.next(&mut events).unwrap().map(|head| head.0), Some(second_split));
        assert_eq!(&events, written.last().unwrap());
        let mut reader = EventLogReader::open(dir.path(), first_split).unwrap();
        assert!(reader.next(&mut events).is_err(), "the first list's parts were archived");
    }

    #[test]
    fn only_segments_wholly_below_the_keep_seq_go_and_never_the_last() {
        let all = segs(&[1, 101, 201, 301]);
        assert_eq!(firsts(&below(&all, 1)), Vec::<Seq>::new());
        assert_eq!(firsts(&below(&all, 100)), Vec::<Seq>::new()); // 100 is in the first
        assert_eq!(firsts(&below(&all, 101)), vec![1]);
        assert_eq!(firsts(&below(&all, 250)), vec![1, 101]);
        assert_eq!(firsts(&below(&all, Seq::MAX)), vec![1, 101, 201]);
        assert_eq!(firsts(&below(&segs(&[1]), Seq::MAX)), Vec::<Seq>::new());
    }

    #[test]
    fn the_event_log_keeps_every_checkpoint_and_the_floor_binds_both() {
        let keep = KeepFrom::new(500, None, &[120, 900]);
        assert_eq!(keep, KeepFrom { input_seq: 500, events_seq: 121 });
        assert_eq!(KeepFrom::new(500, Some(300), &[]), KeepFrom { input_seq: 300, events_seq: 300 });
        assert_eq!(KeepFrom::new(0, None, &[]), KeepFrom { input_seq: 1, events_seq: 1 });
        assert_eq!(KeepFrom::new(500, None, &[Seq::MAX]), KeepFrom { input_seq: 500, events_seq: 500 });
    }
}
