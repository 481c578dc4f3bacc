//! The single journal writer: append into a memory-mapped segment, commit per durability policy.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use memmap2::MmapMut;

use super::error::JournalError;
use super::format::{self, SegmentHeader, RECORD_HEADER_LEN_BYTES, SEGMENT_HEADER_LEN_BYTES};
use super::recover::{self, RecoveryReport, TailState, TornTail};
use super::segment::{self, PreparedSegment};
use super::watermark::{Watermark, WatermarkFile};
use crate::storage::disk::Storage;

/// What `commit` guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Committed records are in the OS page cache: they survive a crash of this process,
    /// not a kernel crash or power loss. `commit` makes no syscall.
    PageCache,
    /// Committed records are on stable storage (msync of the dirty range, once per commit =
    /// group commit): they survive power loss.
    Fsync,
}

impl FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pagecache" | "page-cache" => Ok(Durability::PageCache),
            "fsync" => Ok(Durability::Fsync),
            other => Err(format!("unknown durability {other:?} (expected pagecache or fsync)")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    pub dir: PathBuf,
    /// Size new segment files are preallocated to. Multiple of 8, at least 128.
    pub segment_size_bytes: u64,
    pub durability: Durability,
    /// Seq of the first record of a brand-new journal; ignored when the journal exists.
    pub first_seq: u64,
    /// The first segment's `prev_chain_hash` in a brand-new journal: zeros for a journal that
    /// starts at seq 1; the chain hash through `first_seq - 1` for one that continues another
    /// (a cluster node seeded from a snapshot). Ignored when the journal exists.
    pub first_prev_chain_hash: [u8; 32],
    /// Where file creations, renames and syncs go (`Storage::Real` but in power-loss tests).
    pub storage: Storage,
}

impl JournalConfig {
    /// Smallest segment that holds a header and one 1-byte record with room to spare.
    pub const MIN_SEGMENT_SIZE_BYTES: u64 = 128;

    /// A config for a journal starting at seq 1.
    pub fn new(dir: impl Into<PathBuf>, segment_size_bytes: u64, durability: Durability) -> JournalConfig {
        JournalConfig {
            dir: dir.into(),
            segment_size_bytes,
            durability,
            first_seq: 1,
            first_prev_chain_hash: [0u8; 32],
            storage: Storage::Real,
        }
    }

    fn validate(&self) -> Result<(), JournalError> {
        if self.segment_size_bytes < Self::MIN_SEGMENT_SIZE_BYTES {
            return Err(JournalError::InvalidConfig(format!(
                "segment_size_bytes {} is below the minimum {}",
                self.segment_size_bytes,
                Self::MIN_SEGMENT_SIZE_BYTES
            )));
        }
        if !self.segment_size_bytes.is_multiple_of(format::RECORD_ALIGN_BYTES as u64) {
            return Err(JournalError::InvalidConfig(format!(
                "segment_size_bytes {} is not a multiple of 8",
                self.segment_size_bytes
            )));
        }
        if usize::try_from(self.segment_size_bytes).is_err() {
            return Err(JournalError::InvalidConfig("segment_size_bytes does not fit in memory".into()));
        }
        if self.first_seq == 0 {
            return Err(JournalError::InvalidConfig("first_seq must be >= 1 (0 means \"no record\")".into()));
        }
        Ok(())
    }
}

/// Whether segments are prefaulted ahead of the writer (`MADV_POPULATE_WRITE`): with
/// `PageCache` only. With `Fsync`, every commit's msync write-protects the pages it wrote, so
/// the writer faults on the next write to a partly written page anyway, and first-touch
/// zeroing is a few percent of a commit; meanwhile, prefaulting a whole segment (each page
/// through the filesystem's `page_mkwrite`) measurably lengthened the tail of concurrent
/// group commits (p99.9 about 2-3x while it ran). Space is reserved in both modes.
fn prefaults(durability: Durability) -> bool {
    durability == Durability::PageCache
}

/// Commits feed the chain hasher in batches of this many bytes (16 blake3 chunks, the
/// widest parallel hashing); `chain_hash` adds the committed remainder on a copy.
const HASH_BATCH_BYTES: usize = 16 * 1024;

/// The segment currently appended to.
struct ActiveSegment {
    path: PathBuf,
    first_seq: u64,
    map: MmapMut,
    /// Where the next record starts.
    write_offset: usize,
    /// Bytes `[64, hashed_offset)` have been fed to `chain`.
    hashed_offset: usize,
    /// End of the committed records: `chain_hash` covers `[64, committed_offset)`.
    committed_offset: usize,
    /// Fsync only: bytes before `synced_offset` are on stable storage.
    synced_offset: usize,
    /// blake3(prev_chain_hash || bytes `[64, hashed_offset)`); finalized at roll into the
    /// next header.
    chain: blake3::Hasher,
}

impl ActiveSegment {
    /// Makes `prepared` segment `header.first_seq` (header write and rename only).
    fn install(
        dir: &Path,
        prepared: PreparedSegment,
        header: &SegmentHeader,
        sync: bool,
        storage: &Storage,
    ) -> Result<Self, JournalError> {
        let (path, map) = segment::install_segment(dir, prepared, header, sync, storage)?;
        let mut chain = blake3::Hasher::new();
        chain.update(&header.prev_chain_hash);
        Ok(ActiveSegment {
            path,
            first_seq: header.first_seq,
            map,
            write_offset: SEGMENT_HEADER_LEN_BYTES,
            hashed_offset: SEGMENT_HEADER_LEN_BYTES,
            committed_offset: SEGMENT_HEADER_LEN_BYTES,
            synced_offset: SEGMENT_HEADER_LEN_BYTES,
            chain,
        })
    }

    /// Continues after the last valid record found by recovery. Syncs the recovered records
    /// (under either policy): records recovered from the page cache after a process crash may
    /// not be on disk yet, and `durable_seq` and the watermark must be honest from the start.
    fn reopen(tail: TailState, prefault: bool, storage: &Storage) -> Result<Self, JournalError> {
        let map = segment::reopen_segment(&tail.path, tail.data_end_offset, prefault)?;
        storage.sync_map(&tail.path, &map, 0, tail.data_end_offset).map_err(|e| JournalError::io(&tail.path, e))?;
        Ok(ActiveSegment {
            path: tail.path,
            first_seq: tail.first_seq,
            map,
            write_offset: tail.data_end_offset,
            hashed_offset: tail.data_end_offset,
            committed_offset: tail.data_end_offset,
            synced_offset: tail.data_end_offset,
            chain: tail.chain,
        })
    }

    fn has_room_for(&self, record_len_bytes: usize) -> bool {
        self.map.len() - self.write_offset >= record_len_bytes
    }

    /// Writes one record at `write_offset`. The `len|crc` word goes last, so a concurrent
    /// reader or a crash mid-write sees either nothing (zero word) or a CRC mismatch.
    fn write_record(&mut self, header: &[u8; RECORD_HEADER_LEN_BYTES], payload: &[u8], record_len_bytes: usize) {
        let start = self.write_offset;
        let payload_start = start + RECORD_HEADER_LEN_BYTES;
        let payload_end = payload_start + payload.len();
        let record = &mut self.map[start..start + record_len_bytes];
        record[8..RECORD_HEADER_LEN_BYTES].copy_from_slice(&header[8..]);
        record[RECORD_HEADER_LEN_BYTES..payload_end - start].copy_from_slice(payload);
        // Padding is normally already zero (fresh or recovered file); make sure.
        record[payload_end - start..].fill(0);
        record[..8].copy_from_slice(&header[..8]);
        self.write_offset += record_len_bytes;
    }

    /// Feeds records written since the last call to the chain hasher.
    /// Commit: the records written so far are committed. Feeds them to the chain hasher in
    /// whole [`HASH_BATCH_BYTES`] batches only (the rest waits for the next commit): blake3 is
    /// about 3x faster on large aligned inputs (parallel chunk hashing) than on the few KiB
    /// of a typical group commit at arbitrary offsets.
    fn commit_pending(&mut self) {
        self.committed_offset = self.write_offset;
        // Hasher input position of segment offset `o`: 32 bytes of prev_chain_hash, then
        // bytes from offset 64 on, i.e. `o - 32`.
        let batch_end = (self.write_offset - 32) / HASH_BATCH_BYTES * HASH_BATCH_BYTES + 32;
        if batch_end > self.hashed_offset {
            self.chain.update(&self.map[self.hashed_offset..batch_end]);
            self.hashed_offset = batch_end;
        }
    }

    /// Roll: feeds every record written to the chain hasher.
    fn hash_all(&mut self) {
        if self.write_offset > self.hashed_offset {
            self.chain.update(&self.map[self.hashed_offset..self.write_offset]);
            self.hashed_offset = self.write_offset;
        }
    }

    /// blake3(prev_chain_hash || records up to `committed_offset`), or up to `hashed_offset`
    /// after `hash_all`.
    fn chain_hash(&self) -> [u8; 32] {
        if self.committed_offset <= self.hashed_offset {
            return *self.chain.finalize().as_bytes();
        }
        let mut chain = self.chain.clone();
        chain.update(&self.map[self.hashed_offset..self.committed_offset]);
        *chain.finalize().as_bytes()
    }

    /// Position up to which this segment is synced.
    fn synced_watermark(&self) -> Watermark {
        Watermark { first_seq: self.first_seq, offset: self.synced_offset as u64 }
    }

    /// msync of everything written since the last sync: one syscall.
    fn sync_pending(&mut self, storage: &Storage) -> Result<(), JournalError> {
        if self.write_offset > self.synced_offset {
            let len_bytes = self.write_offset - self.synced_offset;
            storage
                .sync_map(&self.path, &self.map, self.synced_offset, len_bytes)
                .map_err(|e| JournalError::io(&self.path, e))?;
            self.synced_offset = self.write_offset;
        }
        Ok(())
    }
}

/// The next segment, prepared on a helper thread while the active one fills, so that a roll
/// only writes a header and renames a file: the writer never waits for file creation, disk
/// allocation or page faults, unless it fills segments faster than they are prepared (then
/// it waits at the roll; records are never affected).
struct NextSegment {
    thread: Option<JoinHandle<Result<PreparedSegment, JournalError>>>,
    cancel: Arc<AtomicBool>,
    storage: Storage,
}

/// What became of a segment closed under `PageCache`.
enum RetiredSync {
    /// Synced (with its name): the watermark may move to this, `(next segment, 0)`.
    Synced(Watermark),
    /// Not synced: the watermark must not move past it.
    Failed,
}

/// A segment a roll just closed, and the first seq of the one after it.
struct Retired {
    path: PathBuf,
    map: MmapMut,
    next_first_seq: u64,
}

impl Retired {
    /// Syncs the closed segment and its directory entry; every earlier segment was synced the
    /// same way (in order) or at open, so `(next segment, 0)` is then a true watermark.
    fn sync(self, dir: &Path, storage: &Storage) -> RetiredSync {
        let synced = storage.sync_map(&self.path, &self.map, 0, self.map.len()).and_then(|()| storage.sync_dir(dir));
        match synced {
            Ok(()) => RetiredSync::Synced(Watermark { first_seq: self.next_first_seq, offset: 0 }),
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "journal: could not sync a closed segment; the durable watermark stays behind it");
                RetiredSync::Failed
            }
        }
    }
}

/// `PageCache`: syncs closed segments, in order, on a thread of its own, so that neither the
/// writer nor the preparation of the next segment ever waits for the disk; the writer picks
/// up the newest outcome at a later roll.
struct Syncer {
    sender: Option<std::sync::mpsc::Sender<Retired>>,
    /// Newest outcome not yet picked up; a failure stays (it must stop the watermark).
    latest: Arc<std::sync::Mutex<Option<RetiredSync>>>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    fn spawn(dir: &Path, storage: &Storage) -> Option<Syncer> {
        let (sender, receiver) = std::sync::mpsc::channel::<Retired>();
        let latest = Arc::new(std::sync::Mutex::new(None));
        let (dir, storage, published) = (dir.to_path_buf(), storage.clone(), Arc::clone(&latest));
        let body = move || {
            for retired in receiver {
                let outcome = retired.sync(&dir, &storage);
                let mut latest = published.lock().unwrap_or_else(|p| p.into_inner());
                if !matches!(*latest, Some(RetiredSync::Failed)) {
                    *latest = Some(outcome);
                }
            }
        };
        let thread = std::thread::Builder::new().name("journal-sync".into()).spawn(body).ok()?;
        Some(Syncer { sender: Some(sender), latest, thread: Some(thread) })
    }

    /// Queues `retired`; returns the newest outcome since the last call (`None`: none yet).
    fn submit(&self, retired: Retired) -> Option<RetiredSync> {
        let sent = self.sender.as_ref().is_some_and(|sender| sender.send(retired).is_ok());
        if !sent {
            return Some(RetiredSync::Failed);
        }
        self.latest.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Drop for Syncer {
    /// Lets the queued syncs finish before the directory lock is released.
    fn drop(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl NextSegment {
    /// Starts preparing `<temp_seq>.seg.tmp`. `retired` (the map of the segment just closed)
    /// is unmapped on the helper thread too: unmapping a large populated map takes a while.
    /// `None` if no thread could be started: the next roll then prepares on the writer thread.
    fn spawn(
        dir: &Path,
        temp_seq: u64,
        segment_size_bytes: u64,
        durability: Durability,
        retired: Option<MmapMut>,
        storage: &Storage,
    ) -> Option<NextSegment> {
        if matches!(storage, Storage::Simulated(_)) {
            // Power-loss tests: prepare at the roll, on the writer thread, so that the order
            // of file operations (and so a crash point chosen by number) is deterministic.
            return None;
        }
        let (sync, prefault) = (durability == Durability::Fsync, prefaults(durability));
        let cancel = Arc::new(AtomicBool::new(false));
        let thread_cancel = Arc::clone(&cancel);
        let dir = dir.to_path_buf();
        let thread_storage = storage.clone();
        let spawned = std::thread::Builder::new().name("journal-prepare".into()).spawn(move || {
            drop(retired);
            segment::prepare_segment(
                &dir,
                temp_seq,
                segment_size_bytes,
                sync,
                prefault,
                &thread_cancel,
                &thread_storage,
            )
        });
        match spawned {
            Ok(thread) => Some(NextSegment { thread: Some(thread), cancel, storage: storage.clone() }),
            Err(e) => {
                tracing::warn!(error = %e, "journal: no helper thread; the next segment will be prepared at roll");
                None
            }
        }
    }

    /// Waits until the segment is prepared.
    fn wait(mut self) -> Result<PreparedSegment, JournalError> {
        let thread = self.thread.take().expect("joined once");
        thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Drop for NextSegment {
    /// Writer closing: stop the preparation and delete its file, before the directory lock
    /// is released (so it can never race with the next writer's startup).
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.cancel.store(true, Ordering::Relaxed);
            if let Ok(Ok(prepared)) = thread.join() {
                prepared.discard(&self.storage);
            }
        }
    }
}

/// Appends records to a journal directory. One writer per directory (enforced by a lock file).
pub struct JournalWriter {
    dir: PathBuf,
    segment_size_bytes: u64,
    durability: Durability,
    storage: Storage,
    active: ActiveSegment,
    next_seq: u64,
    durable_seq: u64,
    poisoned: bool,
    /// The segment that the next roll installs, being prepared. Declared before `_lock`:
    /// fields drop in order, so the helper thread is stopped while the lock is still held.
    next: Option<NextSegment>,
    /// Up to where the journal is known to be on stable storage (`SYNCED`).
    watermark: WatermarkFile,
    /// `PageCache`: a closed segment could not be synced; the watermark must not move past
    /// it (until the next open syncs everything).
    watermark_stuck: bool,
    /// `PageCache`: syncs closed segments in the background. Before `_lock` (drop order).
    syncer: Option<Syncer>,
    /// Held for the writer's lifetime; the OS releases it if the process dies.
    _lock: File,
}

impl std::fmt::Debug for JournalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalWriter")
            .field("dir", &self.dir)
            .field("active_segment", &self.active.path)
            .field("write_offset", &self.active.write_offset)
            .field("next_seq", &self.next_seq)
            .field("durable_seq", &self.durable_seq)
            .field("durability", &self.durability)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl JournalWriter {
    /// Opens (or creates) the journal in `cfg.dir`, runs recovery, and positions the writer
    /// after the last valid record. Refuses to open a corrupt journal.
    pub fn open(cfg: JournalConfig) -> Result<(JournalWriter, RecoveryReport), JournalError> {
        cfg.validate()?;
        std::fs::create_dir_all(&cfg.dir).map_err(|e| JournalError::io(&cfg.dir, e))?;
        let lock = segment::lock_dir(&cfg.dir)?;
        segment::remove_temp_segments(&cfg.dir, &cfg.storage)?;

        let scan = recover::scan_journal(&cfg.dir)?;
        let truncated_tail =
            scan.torn.as_ref().map(|torn| recover::repair_torn_tail(torn, &cfg.storage)).transpose()?;
        let sync = cfg.durability == Durability::Fsync;
        let mut segments = scan.segments.len();
        let mut watermark = WatermarkFile::open(&cfg.dir, &cfg.storage)?;
        let (active, next_seq) = match scan.tail {
            Some(tail) => {
                let next_seq = tail.next_seq;
                // Everything recovered is made durable, so the watermark can cover it.
                sync_segments_from(&cfg.dir, watermark.current(), tail.first_seq, &cfg.storage)?;
                let active = ActiveSegment::reopen(tail, prefaults(cfg.durability), &cfg.storage)?;
                watermark
                    .set(Watermark { first_seq: active.first_seq, offset: active.write_offset as u64 }, &cfg.storage)?;
                (active, next_seq)
            }
            None => {
                // New journal, or the only file was a torn header-less segment: start afresh
                // at the seq that file was named after.
                let first_seq = match &scan.torn {
                    Some(TornTail::File { first_seq, .. }) => *first_seq,
                    _ => cfg.first_seq,
                };
                let header = SegmentHeader { first_seq, prev_chain_hash: cfg.first_prev_chain_hash };
                segments += 1;
                let never = AtomicBool::new(false);
                let prefault = prefaults(cfg.durability);
                let prepared = segment::prepare_segment(
                    &cfg.dir,
                    first_seq,
                    cfg.segment_size_bytes,
                    sync,
                    prefault,
                    &never,
                    &cfg.storage,
                )?;
                let active = ActiveSegment::install(&cfg.dir, prepared, &header, sync, &cfg.storage)?;
                // Fsync: the header and its name are on disk. PageCache: not even the header.
                let synced = Watermark { first_seq, offset: if sync { SEGMENT_HEADER_LEN_BYTES as u64 } else { 0 } };
                let lower = watermark.current().min(Watermark { first_seq, offset: 0 });
                watermark.set(if sync { synced } else { lower }, &cfg.storage)?;
                (active, first_seq)
            }
        };
        let next = NextSegment::spawn(&cfg.dir, next_seq, cfg.segment_size_bytes, cfg.durability, None, &cfg.storage);
        let background = cfg.durability == Durability::PageCache && !matches!(cfg.storage, Storage::Simulated(_));
        let syncer = if background { Syncer::spawn(&cfg.dir, &cfg.storage) } else { None };
        let last_seq = next_seq - 1;
        let writer = JournalWriter {
            dir: cfg.dir,
            segment_size_bytes: cfg.segment_size_bytes,
            durability: cfg.durability,
            storage: cfg.storage,
            active,
            next_seq,
            durable_seq: last_seq,
            poisoned: false,
            next,
            watermark,
            watermark_stuck: false,
            syncer,
            _lock: lock,
        };
        let report = RecoveryReport { last_seq, truncated_tail, segments };
        tracing::info!(dir = %writer.dir.display(), last_seq, segments, "journal: opened");
        Ok((writer, report))
    }

    /// Appends one record. `seq` must equal [`next_seq`](Self::next_seq); the payload must be
    /// 1 byte or more. Not durable until [`commit`](Self::commit). Rolls to a new segment
    /// when the record does not fit; otherwise makes no syscall and no allocation.
    pub fn append(&mut self, seq: u64, timestamp_ns: u64, kind: u16, payload: &[u8]) -> Result<(), JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        if seq != self.next_seq {
            return Err(JournalError::SeqMismatch { expected: self.next_seq, got: seq });
        }
        if payload.is_empty() {
            return Err(JournalError::EmptyPayload);
        }
        let max_payload_len_bytes = format::max_payload_len_bytes(self.segment_size_bytes);
        if payload.len() > max_payload_len_bytes {
            return Err(JournalError::RecordTooLarge { payload_len_bytes: payload.len(), max_payload_len_bytes });
        }
        let Some(after) = seq.checked_add(1) else {
            return Err(JournalError::SeqMismatch { expected: self.next_seq, got: seq });
        };
        let record_len_bytes = format::record_len_bytes(payload.len());
        if !self.active.has_room_for(record_len_bytes) {
            self.roll().inspect_err(|_| self.poisoned = true)?;
        }
        let header = format::encode_record_header(seq, timestamp_ns, kind, payload);
        self.active.write_record(&header, payload, record_len_bytes);
        self.next_seq = after;
        Ok(())
    }

    /// Makes every appended record durable per the policy and returns the durable seq
    /// (0 if the journal has no records). Fsync: one msync for all records since the last
    /// commit (group commit).
    pub fn commit(&mut self) -> Result<u64, JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        self.active.commit_pending();
        if self.durability == Durability::Fsync {
            self.active.sync_pending(&self.storage).inspect_err(|_| self.poisoned = true)?;
            self.watermark.advance(self.active.synced_watermark());
        }
        self.durable_seq = self.next_seq - 1;
        Ok(self.durable_seq)
    }

    /// Closes the active segment and starts the next one, named after `next_seq`: installs
    /// the segment prepared in the background (waiting for it if it is not ready yet) and
    /// starts preparing the one after.
    fn roll(&mut self) -> Result<(), JournalError> {
        self.active.hash_all();
        let sync = self.durability == Durability::Fsync;
        if sync {
            // The old segment must be complete on disk before the new file can exist there:
            // recovery treats junk in a segment that has a successor as corruption.
            self.active.sync_pending(&self.storage)?;
        }
        let header = SegmentHeader { first_seq: self.next_seq, prev_chain_hash: self.chain_hash() };
        let prepared = match self.next.take().map(NextSegment::wait) {
            Some(Ok(prepared)) => prepared,
            Some(Err(e)) => {
                // E.g. the disk was full then; it may not be now. A second failure is returned.
                tracing::warn!(error = %e, "journal: background segment preparation failed; retrying at roll");
                self.prepare_now()?
            }
            None => self.prepare_now()?,
        };
        let active = ActiveSegment::install(&self.dir, prepared, &header, sync, &self.storage)?;
        let retired = std::mem::replace(&mut self.active, active);
        let retired_map = if sync {
            // The old segment, the new header and its name are on disk.
            self.watermark.advance(self.active.synced_watermark());
            Some(retired.map)
        } else {
            let retired = Retired { path: retired.path, map: retired.map, next_first_seq: self.next_seq };
            let outcome = match &self.syncer {
                Some(syncer) => syncer.submit(retired),
                // Power-loss tests (no threads: a deterministic order of syncs), or no thread.
                None => Some(retired.sync(&self.dir, &self.storage)),
            };
            self.page_cache_synced(outcome);
            None
        };
        self.next = NextSegment::spawn(
            &self.dir,
            self.next_seq,
            self.segment_size_bytes,
            self.durability,
            retired_map,
            &self.storage,
        );
        tracing::debug!(file = %self.active.path.display(), "journal: rolled segment");
        Ok(())
    }

    /// `PageCache`: moves the watermark past a closed segment the helper synced, or stops
    /// moving it (that segment may not be on disk).
    fn page_cache_synced(&mut self, outcome: Option<RetiredSync>) {
        match outcome {
            Some(RetiredSync::Synced(watermark)) if !self.watermark_stuck => self.watermark.advance(watermark),
            Some(RetiredSync::Failed) => self.watermark_stuck = true,
            _ => {}
        }
    }

    /// Prepares the next segment on the writer thread (no helper thread, or it failed).
    fn prepare_now(&self) -> Result<PreparedSegment, JournalError> {
        let sync = self.durability == Durability::Fsync;
        let never = AtomicBool::new(false);
        let prefault = prefaults(self.durability);
        segment::prepare_segment(
            &self.dir,
            self.next_seq,
            self.segment_size_bytes,
            sync,
            prefault,
            &never,
            &self.storage,
        )
    }

    /// Seq the next `append` must carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Last seq returned by `commit` (or recovered by `open`); 0 if none.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// Chain hash of the active segment over the records committed so far (records
    /// appended but not committed are not included). Matches `VerifyReport::chain_hash`.
    pub fn chain_hash(&self) -> [u8; 32] {
        self.active.chain_hash()
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Path of the segment currently appended to.
    pub fn active_segment_path(&self) -> &Path {
        &self.active.path
    }
}

impl Drop for JournalWriter {
    /// A clean close makes everything written durable (one sync under `PageCache` too) and
    /// moves the watermark to the end, so that later damage before it is seen as corruption.
    fn drop(&mut self) {
        if self.poisoned {
            return;
        }
        if self.durability == Durability::PageCache {
            // Its header was never synced either.
            self.active.synced_offset = 0;
        }
        let closed = sync_segments_from(&self.dir, self.watermark.current(), self.active.first_seq, &self.storage)
            .and_then(|()| self.active.sync_pending(&self.storage));
        match closed {
            Ok(()) => self.watermark.advance(self.active.synced_watermark()),
            Err(e) => tracing::warn!(error = %e, "journal: could not sync at close"),
        }
    }
}

/// fsyncs every segment file from the watermark's segment up to (not including) `active_first_seq`:
/// those a `PageCache` writer (or one that crashed) may have left unsynced. Cheap for files
/// that are already on disk (no dirty page, nothing to write).
fn sync_segments_from(
    dir: &Path,
    watermark: Watermark,
    active_first_seq: u64,
    storage: &Storage,
) -> Result<(), JournalError> {
    for file in segment::list_segments(dir)? {
        if file.first_seq < watermark.first_seq || file.first_seq >= active_first_seq {
            continue;
        }
        let handle = File::open(&file.path).map_err(|e| JournalError::io(&file.path, e))?;
        storage.sync_file(&file.path, &handle).map_err(|e| JournalError::io(&file.path, e))?;
    }
    segment::sync_dir(dir, storage)
}
