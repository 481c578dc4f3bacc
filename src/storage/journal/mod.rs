//! Append-only, memory-mapped, hash-chained journal for the sequencer.
//!
//! A journal is a directory of preallocated segment files named after their first seq.
//! One [`JournalWriter`] appends records with strictly consecutive seqs and commits them
//! per a [`Durability`] policy; any number of [`JournalReader`]s replay or tail the journal,
//! in this process or another. [`verify`] checks everything offline. `journal/FORMAT.md` (repo
//! root) is the byte-level specification.
//!
//! ```no_run
//! # use seqd::storage::journal::*;
//! # fn main() -> Result<(), JournalError> {
//! let cfg = JournalConfig::new("/var/lib/seqd/journal", 256 << 20, Durability::Fsync);
//! let (mut writer, report) = JournalWriter::open(cfg)?;
//! let seq = writer.next_seq();
//! writer.append(seq, 1_700_000_000_000_000_000, 1, b"order")?;
//! let durable_seq = writer.commit()?; // group commit: one msync for all appends since the last commit
//! # let _ = (report, durable_seq);
//! let mut reader = JournalReader::open("/var/lib/seqd/journal".as_ref(), 1)?;
//! while let Some(record) = reader.next()? {
//!     println!("{} {} bytes", record.seq, record.payload.len());
//! }
//! # Ok(()) }
//! ```
//!
//! Crash consistency in one paragraph: records are written through the map with their
//! `len|crc` word last; recovery keeps every record up to the first invalid slot, zeroes a
//! torn tail, and refuses (`JournalError::Corrupt`) anything a crash cannot produce: a bad
//! record followed by a valid one, junk in a segment with a successor, a seq gap, a bad
//! header CRC, or a broken hash chain. After the durable watermark (`SYNCED`: up to where the
//! journal was synced) a power cut can leave all of those, so there they are a torn tail and
//! the journal is cut at the first one.

mod error;
pub mod format;
mod position;
mod reader;
mod recover;
mod segment;
mod watermark;
mod writer;

pub use error::JournalError;
pub use format::RecordRef;
pub use position::{chain_hash_at, truncate_after, ChainPosition};
pub use reader::JournalReader;
pub use recover::{verify, RecoveryReport, VerifyReport};
pub use segment::lock_dir;
pub use writer::{Durability, JournalConfig, JournalWriter};
