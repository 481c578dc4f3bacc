//! What the journal and the snapshots do to files to make them durable, and a simulated disk
//! that a test can make lose every write not yet synced (a power cut).
//!
//! Only the operations that create, name, remove or sync files go through [`Storage`]; the
//! bytes themselves are written as before (through the journal's memory maps, or `write`), so
//! the append path is unchanged: no call per record, and under `PageCache` durability not even
//! one per commit. `Storage::Real` calls straight through to the OS.
//!
//! `Storage::Simulated` does the same real I/O in a temporary directory and also keeps what a
//! disk would hold after a power cut: per file, the bytes as of its last sync, and the
//! directory operations (create, rename, remove) not yet made durable by a directory sync.
//! [`SimDisk::crash_image`] writes, deterministically from a seed, one disk image a power cut
//! could leave:
//! - every 4 KiB page whose current bytes differ from its last synced bytes independently
//!   survives (written back by the kernel before the cut), is lost (the synced bytes), or is
//!   torn (each 512-byte sector from either; a sector is the unit a disk writes atomically);
//! - a file whose length changed since its last sync has either length;
//! - directory operations are applied in order (a journaling file system commits metadata in
//!   order): a random prefix of those issued since the last directory sync survives.
//!
//! A test can also ask for the image to be taken just before the N-th sync
//! ([`SimDisk::crash_before_sync`]), which reaches the points inside a roll or a snapshot write.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use memmap2::MmapMut;

/// SplitMix64: tiny, fast, and fixed forever, so a seed names the same workload (and the same
/// crash image) in every version (a crate's generator may change its stream between releases).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the tiny modulo bias is irrelevant for workloads.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Where durability operations go. `Real` by default.
#[derive(Clone, Default)]
pub enum Storage {
    /// The OS, directly.
    #[default]
    Real,
    /// Real I/O plus a record of what is durable, for power-loss tests.
    Simulated(Arc<SimDisk>),
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Storage::Real => write!(f, "Real"),
            Storage::Simulated(disk) => write!(f, "Simulated({})", disk.root.display()),
        }
    }
}

impl PartialEq for Storage {
    fn eq(&self, other: &Storage) -> bool {
        match (self, other) {
            (Storage::Real, Storage::Real) => true,
            (Storage::Simulated(a), Storage::Simulated(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Storage {}

impl Storage {
    /// Creates (or truncates) `path` for reading and writing.
    pub fn create_file(&self, path: &Path) -> io::Result<File> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        if let Storage::Simulated(disk) = self {
            disk.created(path, &file)?;
        }
        Ok(file)
    }

    /// fsync of a whole file (data and size).
    pub fn sync_file(&self, path: &Path, file: &File) -> io::Result<()> {
        if let Storage::Simulated(disk) = self {
            disk.before_sync()?;
            disk.synced(path, None)?;
        }
        file.sync_all()
    }

    /// msync(MS_SYNC) of `[offset, offset + len_bytes)` of a map of `path`.
    pub fn sync_map(&self, path: &Path, map: &MmapMut, offset: usize, len_bytes: usize) -> io::Result<()> {
        if let Storage::Simulated(disk) = self {
            disk.before_sync()?;
            disk.synced(path, Some((offset, len_bytes)))?;
        }
        map.flush_range(offset, len_bytes)
    }

    /// Makes the creations, renames and removals in `dir` durable.
    pub fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if let Storage::Simulated(disk) = self {
            disk.before_sync()?;
            disk.dir_synced();
        }
        File::open(dir).and_then(|d| d.sync_all())
    }

    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)?;
        if let Storage::Simulated(disk) = self {
            disk.lock().pending.push(NameOp::Rename { from: from.to_path_buf(), to: to.to_path_buf() });
        }
        Ok(())
    }

    pub fn remove_file(&self, path: &Path) -> io::Result<()> {
        if let Storage::Simulated(disk) = self {
            disk.removing(path);
        }
        fs::remove_file(path)
    }
}

/// A disk that remembers what a power cut would keep. See the module documentation.
pub struct SimDisk {
    /// Only files under this directory are simulated; images keep paths relative to it.
    root: PathBuf,
    state: Mutex<SimState>,
}

/// A file as the simulation knows it (inode numbers can be reused after a removal).
type FileId = u64;

#[derive(Debug, Clone)]
enum NameOp {
    Create { path: PathBuf, id: FileId },
    Rename { from: PathBuf, to: PathBuf },
    Remove { path: PathBuf },
}

#[derive(Default)]
struct SimState {
    next_id: FileId,
    /// Live inode number -> file.
    live: HashMap<u64, FileId>,
    /// Bytes of each file as of its last sync (absent: never synced, nothing on disk).
    synced: HashMap<FileId, Vec<u8>>,
    /// Names durable as of the last directory sync.
    names: HashMap<PathBuf, FileId>,
    /// Directory operations since then, in order.
    pending: Vec<NameOp>,
    syncs: u64,
    /// Take the image just before this sync (1-based), with this seed, into this directory.
    crash_plan: Option<(u64, u64, PathBuf)>,
    crashed: bool,
}

impl SimDisk {
    /// A simulated disk for the files under `root` (which should be new and empty).
    pub fn new(root: impl Into<PathBuf>) -> Arc<SimDisk> {
        Arc::new(SimDisk { root: root.into(), state: Mutex::new(SimState::default()) })
    }

    /// A simulated disk on which every file already under `root` is durable (for example a
    /// crash image on which recovery is about to run, and can itself lose power).
    pub fn with_durable_files(root: impl Into<PathBuf>) -> io::Result<Arc<SimDisk>> {
        let disk = SimDisk::new(root);
        {
            let mut state = disk.lock();
            let mut dirs = vec![disk.root.clone()];
            while let Some(dir) = dirs.pop() {
                for entry in fs::read_dir(&dir)? {
                    let entry = entry?;
                    let meta = entry.metadata()?;
                    if meta.is_dir() {
                        dirs.push(entry.path());
                        continue;
                    }
                    let id = state.next_id;
                    state.next_id += 1;
                    state.live.insert(meta.ino(), id);
                    state.synced.insert(id, fs::read(entry.path())?);
                    state.names.insert(entry.path(), id);
                }
            }
        }
        Ok(disk)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Syncs requested so far (a crash point can be chosen among them).
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// Arranges for [`crash_image`](Self::crash_image) to be taken just before sync number
    /// `sync_number` (1-based) starts; the sync then fails, as it would when the power is cut.
    pub fn crash_before_sync(&self, sync_number: u64, seed: u64, image_dir: &Path) {
        self.lock().crash_plan = Some((sync_number, seed, image_dir.to_path_buf()));
    }

    /// Whether the planned crash happened.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Writes into `image_dir` (new or empty) one state of `root` a power cut now could leave.
    pub fn crash_image(&self, seed: u64, image_dir: &Path) -> io::Result<()> {
        let state = self.lock();
        self.write_image(&state, seed, image_dir)
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_simulated(&self, path: &Path) -> bool {
        path.starts_with(&self.root)
    }

    fn created(&self, path: &Path, file: &File) -> io::Result<()> {
        if !self.is_simulated(path) {
            return Ok(());
        }
        let ino = file.metadata()?.ino();
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.live.insert(ino, id);
        state.pending.push(NameOp::Create { path: path.to_path_buf(), id });
        Ok(())
    }

    fn removing(&self, path: &Path) {
        if !self.is_simulated(path) {
            return;
        }
        let ino = fs::metadata(path).map(|m| m.ino()).ok();
        let mut state = self.lock();
        if let Some(ino) = ino {
            // The inode number may be reused by the next file created.
            state.live.remove(&ino);
        }
        state.pending.push(NameOp::Remove { path: path.to_path_buf() });
    }

    /// Counts a sync; takes the planned image (and fails the sync) when it is the one.
    fn before_sync(&self) -> io::Result<()> {
        let mut state = self.lock();
        if state.crashed {
            return Err(io::Error::other("simulated power cut"));
        }
        state.syncs += 1;
        let Some((at, seed, image_dir)) = state.crash_plan.clone() else {
            return Ok(());
        };
        if state.syncs != at {
            return Ok(());
        }
        self.write_image(&state, seed, &image_dir)?;
        state.crashed = true;
        Err(io::Error::other("simulated power cut"))
    }

    /// Records the current bytes of `range` (or the whole file) of `path` as synced.
    fn synced(&self, path: &Path, range: Option<(usize, usize)>) -> io::Result<()> {
        if !self.is_simulated(path) {
            return Ok(());
        }
        let ino = fs::metadata(path)?.ino();
        let current = fs::read(path)?;
        let mut state = self.lock();
        let Some(&id) = state.live.get(&ino) else {
            return Ok(()); // not created through Storage (e.g. the lock file)
        };
        let synced = state.synced.entry(id).or_default();
        match range {
            None => *synced = current,
            Some((offset, len_bytes)) => {
                let end = (offset + len_bytes).min(current.len());
                if synced.len() < current.len() {
                    synced.resize(current.len(), 0);
                }
                if offset < end {
                    synced[offset..end].copy_from_slice(&current[offset..end]);
                }
            }
        }
        Ok(())
    }

    fn dir_synced(&self) {
        let mut state = self.lock();
        let pending = std::mem::take(&mut state.pending);
        for op in &pending {
            apply_name_op(&mut state.names, op);
        }
    }

    fn write_image(&self, state: &SimState, seed: u64, image_dir: &Path) -> io::Result<()> {
        let mut rng = SplitMix64::new(seed);
        let mut names = state.names.clone();
        let surviving_ops = rng.below(state.pending.len() as u64 + 1) as usize;
        for op in &state.pending[..surviving_ops] {
            apply_name_op(&mut names, op);
        }
        let current = self.current_files(state)?;
        let mut sorted: Vec<_> = names.into_iter().collect();
        sorted.sort();
        for (path, id) in sorted {
            let synced = state.synced.get(&id).map(Vec::as_slice).unwrap_or(&[]);
            let bytes = match current.get(&id) {
                Some(now) => crash_bytes(synced, now, &mut rng),
                None => synced.to_vec(), // removed since: only the synced bytes remain
            };
            let relative = path.strip_prefix(&self.root).map_err(io::Error::other)?;
            let target = image_dir.join(relative);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(&target, bytes)?;
        }
        fs::create_dir_all(image_dir)
    }

    /// The current bytes of every live simulated file, by file id.
    fn current_files(&self, state: &SimState) -> io::Result<HashMap<FileId, Vec<u8>>> {
        let mut files = HashMap::new();
        let mut dirs = vec![self.root.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let meta = entry.metadata()?;
                if meta.is_dir() {
                    dirs.push(entry.path());
                } else if let Some(&id) = state.live.get(&meta.ino()) {
                    files.insert(id, fs::read(entry.path())?);
                }
            }
        }
        Ok(files)
    }
}

fn apply_name_op(names: &mut HashMap<PathBuf, FileId>, op: &NameOp) {
    match op {
        NameOp::Create { path, id } => {
            names.insert(path.clone(), *id);
        }
        NameOp::Rename { from, to } => {
            if let Some(id) = names.remove(from) {
                names.insert(to.clone(), id);
            }
        }
        NameOp::Remove { path } => {
            names.remove(path);
        }
    }
}

/// Page size of the simulated page cache.
pub const SIM_PAGE_BYTES: usize = 4096;
/// Unit a disk writes atomically.
pub const SIM_SECTOR_BYTES: usize = 512;

/// One outcome of a power cut for a file whose last synced bytes are `synced` and whose
/// bytes in the page cache are `now`.
fn crash_bytes(synced: &[u8], now: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let len = if synced.len() == now.len() || rng.below(2) == 0 { now.len() } else { synced.len() };
    let byte = |bytes: &[u8], i: usize| bytes.get(i).copied().unwrap_or(0);
    let mut out = vec![0u8; len];
    for page_start in (0..len).step_by(SIM_PAGE_BYTES) {
        let page_end = (page_start + SIM_PAGE_BYTES).min(len);
        let differs = (page_start..page_end).any(|i| byte(synced, i) != byte(now, i));
        let choice = if differs { rng.below(3) } else { 0 };
        for sector_start in (page_start..page_end).step_by(SIM_SECTOR_BYTES) {
            let sector_end = (sector_start + SIM_SECTOR_BYTES).min(page_end);
            // 0: the page survived; 1: it was lost; 2: torn, sector by sector.
            let take_now = match choice {
                0 => true,
                1 => false,
                _ => rng.below(2) == 0,
            };
            let source = if take_now { now } else { synced };
            for (i, slot) in out.iter_mut().enumerate().take(sector_end).skip(sector_start) {
                *slot = byte(source, i);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_pages_are_kept_and_changed_pages_take_either_version_per_sector() {
        let synced = vec![1u8; 3 * SIM_PAGE_BYTES];
        let mut now = synced.clone();
        now[SIM_PAGE_BYTES..2 * SIM_PAGE_BYTES].fill(2);
        let mut seen_lost = false;
        let mut seen_survived = false;
        for seed in 0..64 {
            let out = crash_bytes(&synced, &now, &mut SplitMix64::new(seed));
            assert_eq!(out.len(), now.len());
            assert!(out[..SIM_PAGE_BYTES].iter().all(|&b| b == 1));
            assert!(out[2 * SIM_PAGE_BYTES..].iter().all(|&b| b == 1));
            for sector in out[SIM_PAGE_BYTES..2 * SIM_PAGE_BYTES].chunks(SIM_SECTOR_BYTES) {
                assert!(sector.iter().all(|&b| b == sector[0]), "a sector is written whole");
            }
            seen_lost |= out[SIM_PAGE_BYTES..2 * SIM_PAGE_BYTES].iter().all(|&b| b == 1);
            seen_survived |= out[SIM_PAGE_BYTES..2 * SIM_PAGE_BYTES].iter().all(|&b| b == 2);
        }
        assert!(seen_lost && seen_survived);
    }

    #[test]
    fn unsynced_creation_may_vanish_and_synced_bytes_always_remain() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(&root).unwrap();
        let disk = SimDisk::new(&root);
        let storage = Storage::Simulated(disk.clone());
        let kept = root.join("kept");
        let file = storage.create_file(&kept).unwrap();
        std::io::Write::write_all(&mut &file, b"durable").unwrap();
        storage.sync_file(&kept, &file).unwrap();
        storage.sync_dir(&root).unwrap();
        let maybe = root.join("maybe");
        storage.create_file(&maybe).unwrap();
        let (mut with, mut without) = (0, 0);
        for seed in 0..32 {
            let image = dir.path().join(format!("image{seed}"));
            disk.crash_image(seed, &image).unwrap();
            assert_eq!(fs::read(image.join("kept")).unwrap(), b"durable");
            if image.join("maybe").exists() {
                with += 1;
            } else {
                without += 1;
            }
        }
        assert!(with > 0 && without > 0, "{with} {without}");
    }
}
