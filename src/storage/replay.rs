//! Replay: rebuild the engine from the newest valid snapshot plus the input journal after it.
//! The same `Engine::apply_keyed` that serves live traffic is fed from the journal (with each
//! record's request key, 0 for none), so a replay of the same records reaches the same state
//! hash on any machine.

use crate::engine::{Engine, Event, Seq};
use crate::storage::disk::Storage;
use crate::storage::journal::{JournalError, JournalReader};
use crate::storage::snapshots::{SnapshotError, SnapshotStore};
use crate::wire::codec::{self, CodecError};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the parts of a data directory live.
#[derive(Clone, Debug)]
pub struct DataDir {
    pub root: PathBuf,
    /// Where the journals' and snapshots' file creations, renames and syncs go.
    pub storage: Storage,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into(), storage: Storage::Real }
    }

    /// A data directory on simulated storage (power-loss tests).
    pub fn with_storage(root: impl Into<PathBuf>, storage: Storage) -> DataDir {
        DataDir { root: root.into(), storage }
    }
    /// The input journal: every sequenced command (the system of record).
    pub fn input(&self) -> PathBuf {
        self.root.join("input")
    }
    /// The output event log: one record per command, same sequence, its events.
    pub fn events(&self) -> PathBuf {
        self.root.join("events")
    }
    pub fn snapshots(&self) -> SnapshotStore {
        SnapshotStore::new(self.root.join("snapshots"), self.input(), self.storage.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("record {seq} of {file} does not decode: {source}")]
    Codec { seq: Seq, file: PathBuf, source: CodecError },
    #[error("the journal ends at {last_seq} but replay was asked to reach {wanted}")]
    ShortJournal { last_seq: Seq, wanted: Seq },
    #[error("command {seq} panicked when applied: {command}: {message}")]
    Panicked { seq: Seq, command: String, message: String },
}

/// What a replay did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayOutcome {
    pub last_seq: Seq,
    pub state_hash: [u8; 32],
    /// Sequence of the snapshot it started from, if any.
    pub snapshot_seq: Option<Seq>,
    pub commands_replayed: u64,
}

/// How a replay starts and where it stops.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplayOptions {
    /// Start from the newest valid snapshot at or before `to_seq` (else from an empty state).
    pub use_snapshot: bool,
    /// Stop after this sequence (else at the end of the journal).
    pub to_seq: Option<Seq>,
    /// Print progress about once a second on stderr when it is a terminal.
    pub progress: bool,
}

/// Rebuilds the engine from `data_dir` and returns it with what was done.
pub fn replay(data_dir: &DataDir, options: ReplayOptions) -> Result<(Engine, ReplayOutcome), ReplayError> {
    // The reader treats a bad record as "not written yet" (it also tails live journals), so an
    // offline replay verifies the whole journal first and then must reach its verified end.
    let verified_last_seq = verify_input(&data_dir.input())?;
    let target = options.to_seq.unwrap_or(verified_last_seq);
    let mut engine = Engine::new();
    let mut snapshot_seq = None;
    if options.use_snapshot {
        // The same rule as the daemon's recovery: only a snapshot the journal agrees with.
        if let Some(snapshot) = data_dir.snapshots().newest_usable(target)? {
            snapshot_seq = Some(snapshot.engine.last_seq());
            engine = snapshot.engine;
        }
    }
    let commands_replayed =
        apply_journal(&mut engine, &data_dir.input(), Some(target), options.progress, |_, _, _| {})?;
    if engine.last_seq() < target {
        return Err(ReplayError::ShortJournal { last_seq: engine.last_seq(), wanted: target });
    }
    let outcome =
        ReplayOutcome { last_seq: engine.last_seq(), state_hash: engine.state_hash(), snapshot_seq, commands_replayed };
    Ok((engine, outcome))
}

/// Checks the input journal (CRCs, sequences, hash chain); returns its last sequence. A
/// missing journal is an empty one. A journal whose segments hold no record yet ends just
/// before its first segment: one restarted after a snapshot (a cluster node that installed
/// its leader's snapshot, `cluster::catch_up`) is the snapshot's state and nothing more.
fn verify_input(input_dir: &Path) -> Result<Seq, ReplayError> {
    if !input_dir.exists() {
        return Ok(0);
    }
    let report = crate::storage::journal::verify(input_dir)?;
    Ok(match (report.records, report.first_seq) {
        (0, Some(first_seq)) => first_seq.saturating_sub(1),
        _ => report.last_seq,
    })
}

/// Applies every input record after the engine's last sequence (up to `to_seq`), calling
/// `on_events(seq, timestamp_ns, events)` after each. Returns the number of commands applied.
pub fn apply_journal(
    engine: &mut Engine,
    input_dir: &Path,
    to_seq: Option<Seq>,
    progress: bool,
    mut on_events: impl FnMut(Seq, u64, &[Event]),
) -> Result<u64, ReplayError> {
    let mut reader = match JournalReader::open(input_dir, engine.last_seq() + 1) {
        Ok(reader) => reader,
        Err(JournalError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut progress = Progress::new(progress);
    let mut events = Vec::with_capacity(256);
    let mut applied = 0u64;
    let max_seq = to_seq.unwrap_or(Seq::MAX);
    while let Some(record) = reader.next_up_to(max_seq)? {
        // A keyed record (a command sent with a request key) replays through `apply_keyed`, so
        // the window of remembered keys is rebuilt as the live run built it.
        let (request_key, command) = codec::decode_input(record.kind, record.payload)
            .map_err(|source| ReplayError::Codec { seq: record.seq, file: input_dir.to_path_buf(), source })?;
        let (seq, timestamp_ns) = (record.seq, record.timestamp_ns);
        events.clear();
        // A command that panics the engine is a bug; refuse it by name instead of dying on it.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::pipeline::fault::before_apply(seq);
            engine.apply_keyed(seq, timestamp_ns, request_key, &command, &mut events)
        }));
        if let Err(payload) = outcome {
            let message = crate::pipeline::fault::panic_message(&*payload);
            return Err(ReplayError::Panicked { seq, command: format!("{command:?}"), message });
        }
        on_events(seq, timestamp_ns, &events);
        applied += 1;
        progress.tick(applied);
    }
    progress.finish(applied);
    Ok(applied)
}

/// Progress on a terminal, silence when piped.
struct Progress {
    enabled: bool,
    started: Instant,
    last_print: Instant,
}

impl Progress {
    fn new(wanted: bool) -> Progress {
        let now = Instant::now();
        Progress { enabled: wanted && std::io::stderr().is_terminal(), started: now, last_print: now }
    }

    fn tick(&mut self, applied: u64) {
        if self.enabled && applied.is_multiple_of(65_536) && self.last_print.elapsed() >= Duration::from_secs(1) {
            self.last_print = Instant::now();
            let rate = applied as f64 / self.started.elapsed().as_secs_f64();
            eprint!("\rreplayed {applied} commands ({rate:.0}/s)");
        }
    }

    fn finish(&self, applied: u64) {
        if self.enabled && self.started.elapsed() >= Duration::from_secs(1) {
            eprintln!("\rreplayed {applied} commands in {:.1} s", self.started.elapsed().as_secs_f64());
        }
    }
}
