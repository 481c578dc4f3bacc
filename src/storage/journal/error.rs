//! The single error type of the journal.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The journal holds data that cannot be the result of a crash: refuse to use it.
    /// `offset` is the byte offset in `file` of the first bad record or header field.
    #[error("journal corrupt: {file} at offset {offset}: {reason}")]
    Corrupt { file: PathBuf, offset: u64, reason: String },

    #[error("journal sequence mismatch: expected seq {expected}, got {got}")]
    SeqMismatch { expected: u64, got: u64 },

    #[error("journal record too large: payload of {payload_len_bytes} bytes, at most {max_payload_len_bytes} bytes fit in a segment")]
    RecordTooLarge { payload_len_bytes: usize, max_payload_len_bytes: usize },

    #[error("journal record payload is empty: payloads must be at least 1 byte")]
    EmptyPayload,

    #[error("invalid journal config: {0}")]
    InvalidConfig(String),

    #[error("journal directory {dir} is locked by another writer")]
    Locked { dir: PathBuf },

    #[error("seq {seq} is not in the journal: its first seq is {first_seq}")]
    SeqBeforeStart { seq: u64, first_seq: u64 },

    /// An earlier I/O failure left the on-disk state unknown (e.g. a failed msync may
    /// have dropped dirty pages); retrying could falsely report durability.
    #[error("journal writer is unusable after an earlier I/O error; reopen it to run recovery")]
    Poisoned,
}

impl JournalError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> JournalError {
        JournalError::Io { path: path.to_path_buf(), source }
    }

    pub(crate) fn corrupt(file: &Path, offset: usize, reason: impl Into<String>) -> JournalError {
        JournalError::Corrupt { file: file.to_path_buf(), offset: offset as u64, reason: reason.into() }
    }
}
