//! The data of one Raft log entry: a batch of sequenced commands, stamped once by the leader
//! (sequence, timestamp, the client's request key), so every node applies byte-identical input.
//! Layout (docs/CLUSTER.md, "The Raft log"), little-endian:
//!
//! ```text
//! version u8 = 1 | count u16 (1..=ENTRY_COMMANDS_MAX)
//! count x { seq u64 | timestamp_ns u64 | request_key u64 | kind u16 | length u16 | payload }
//! ```
//!
//! `kind` and `payload` are the command's journal record kind and payload (journal/FORMAT.md
//! §10), so a command is encoded once, by the journal's own codec. Sequences inside an entry
//! are consecutive. An entry with empty data is Raft's own (a new leader's first entry).

use crate::cursor::{ByteReader, ByteWriter, ReadError};
use crate::engine::{Command, Seq};
use crate::wire::codec::{self, CodecError};

/// Commands in one entry at most: the leader proposes what its inbox holds, up to this.
pub const ENTRY_COMMANDS_MAX: usize = 1024;

const ENTRY_VERSION: u8 = 1;

/// One command of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequencedCommand {
    pub seq: Seq,
    pub timestamp_ns: u64,
    pub request_key: u64,
    pub command: Command,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("entry data: {0}")]
    Read(#[from] ReadError),
    #[error("entry data: version {0} is not 1")]
    Version(u8),
    #[error("entry data: {0} commands (1..={ENTRY_COMMANDS_MAX})")]
    Count(u16),
    #[error("entry data: sequence {got} where {expected} was due")]
    Gap { expected: Seq, got: Seq },
    #[error("entry data: {0}")]
    Codec(#[from] CodecError),
}

/// Appends the entry data of `commands` (1..=ENTRY_COMMANDS_MAX, consecutive sequences).
pub fn encode(commands: &[SequencedCommand], out: &mut Vec<u8>) {
    assert!((1..=ENTRY_COMMANDS_MAX).contains(&commands.len()), "an entry holds 1..={ENTRY_COMMANDS_MAX} commands");
    ByteWriter(out).u8(ENTRY_VERSION).u16(commands.len() as u16);
    for (i, c) in commands.iter().enumerate() {
        assert_eq!(c.seq, commands[0].seq + i as u64, "an entry's sequences are consecutive");
        ByteWriter(out).u64(c.seq).u64(c.timestamp_ns).u64(c.request_key);
        // Kind and length are known once the payload is written after them: placeholders,
        // filled in place (no second buffer, no copy).
        let kind_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let kind = codec::encode_command(&c.command, out);
        let length = u16::try_from(out.len() - kind_at - 4).expect("a command payload is far below 64 KiB");
        out[kind_at..kind_at + 2].copy_from_slice(&kind.to_le_bytes());
        out[kind_at + 2..kind_at + 4].copy_from_slice(&length.to_le_bytes());
    }
}

/// Decodes entry data into `out` (cleared first). Every field is checked: an entry that fails
/// here was corrupted or written by something else, and the node stops.
pub fn decode(data: &[u8], out: &mut Vec<SequencedCommand>) -> Result<(), EntryError> {
    out.clear();
    let mut r = ByteReader::new(data);
    let count = read_header(&mut r)?;
    for _ in 0..count {
        let (seq, timestamp_ns, request_key) = (r.u64()?, r.u64()?, r.u64()?);
        if let Some(previous) = out.last() {
            if seq != previous.seq + 1 {
                return Err(EntryError::Gap { expected: previous.seq + 1, got: seq });
            }
        }
        let kind = r.u16()?;
        let length = r.u16()?;
        let command = codec::decode_command(kind, r.bytes(usize::from(length))?)?;
        out.push(SequencedCommand { seq, timestamp_ns, request_key, command });
    }
    r.finish()?;
    Ok(())
}

/// The first sequence and the number of commands of non-empty entry data, from its header and
/// first command only.
pub fn first_seq_and_count(data: &[u8]) -> Result<(Seq, u64), EntryError> {
    let mut r = ByteReader::new(data);
    let count = read_header(&mut r)?;
    Ok((r.u64()?, u64::from(count)))
}

/// Reads and checks the version and the count; returns the count.
fn read_header(r: &mut ByteReader) -> Result<u16, EntryError> {
    let version = r.u8()?;
    if version != ENTRY_VERSION {
        return Err(EntryError::Version(version));
    }
    let count = r.u16()?;
    if count == 0 || usize::from(count) > ENTRY_COMMANDS_MAX {
        return Err(EntryError::Count(count));
    }
    Ok(count)
}

/// The last sequence and its timestamp in non-empty entry data (decodes the commands).
pub fn last_stamp(data: &[u8]) -> Result<(Seq, u64), EntryError> {
    let mut commands = Vec::new();
    decode(data, &mut commands)?;
    let last = commands.last().expect("decode refuses an empty entry");
    Ok((last.seq, last.timestamp_ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::samples;

    #[test]
    fn every_command_round_trips_in_one_entry() {
        let commands: Vec<SequencedCommand> = samples::every_command()
            .into_iter()
            .enumerate()
            .map(|(i, command)| SequencedCommand {
                seq: 41 + i as u64,
                timestamp_ns: 1_000 + i as u64,
                request_key: i as u64 * 7,
                command,
            })
            .collect();
        let mut data = Vec::new();
        encode(&commands, &mut data);
        let mut decoded = Vec::new();
        decode(&data, &mut decoded).unwrap();
        assert_eq!(decoded, commands);
        let last = commands.last().unwrap();
        assert_eq!(last_stamp(&data).unwrap(), (last.seq, last.timestamp_ns));
    }

    #[test]
    fn damaged_entries_are_refused() {
        let command = samples::every_command()[0];
        let one = |seq| SequencedCommand { seq, timestamp_ns: 5, request_key: 0, command };
        let mut data = Vec::new();
        encode(&[one(7), one(8)], &mut data);
        let mut out = Vec::new();
        assert!(matches!(decode(&data[..data.len() - 1], &mut out), Err(EntryError::Read(_))));
        let mut bad_version = data.clone();
        bad_version[0] = 2;
        assert_eq!(decode(&bad_version, &mut out), Err(EntryError::Version(2)));
        let mut gap = data.clone();
        let second_seq_at = 3 + (8 + 8 + 8 + 2 + 2) + (data.len() - 3) / 2 - (8 + 8 + 8 + 2 + 2);
        gap[second_seq_at] = 9;
        assert_eq!(decode(&gap, &mut out), Err(EntryError::Gap { expected: 8, got: 9 }));
        let mut trailing = data.clone();
        trailing.push(0);
        assert!(decode(&trailing, &mut out).is_err());
        assert_eq!(decode(&[1, 0, 0], &mut out), Err(EntryError::Count(0)));
    }
}
