//! The event log: `events/` holds one record per command, with the command's sequence and
//! timestamp. A list that fits [`MAX_EVENT_RECORD_PAYLOAD_BYTES`] is the record's payload; a
//! longer one is split into parts, written to the parts log `events/parts/` (a journal of its
//! own), and the command's record is a manifest naming them (`journal/FORMAT.md` 10.3).
//!
//! So no command's events can fail to be journaled: every record, whole list, manifest or
//! part, is at most [`MAX_EVENT_RECORD_PAYLOAD_BYTES`], and the writer refuses at open a segment
//! size that cannot hold that. And `events/` keeps exactly one record per command, so every
//! reader that counts, resumes or checkpoints by sequence (recovery, the replicators) stays at
//! command boundaries.
//!
//! Order of writes: a command's parts are appended *and committed* to the parts log before its
//! manifest is appended to `events/`. A crash therefore never leaves a manifest without its
//! parts; it may leave parts without a manifest (the tail of the parts log). Those parts belong
//! to no record: readers never reach them, and regeneration writes the command's parts again,
//! complete, after them.

use std::path::{Path, PathBuf};

use crate::engine::{Event, Seq};
use crate::storage::journal::{format, JournalConfig, JournalError, JournalReader, JournalWriter, RecoveryReport};
use crate::wire::codec::{
    self, CodecError, SplitManifest, EVENTS_PART_RECORD_KIND, EVENTS_RECORD_KIND, EVENTS_SPLIT_RECORD_KIND,
    MAX_EVENT_RECORD_PAYLOAD_BYTES,
};

/// The parts log's directory inside the event log's.
pub const PARTS_DIR_NAME: &str = "parts";

/// Smallest segment size seqd accepts for its journals: twice the largest event-log record,
/// so any record fits an empty segment and a segment wastes at most half of itself at a roll.
pub const MIN_SEGMENT_SIZE_BYTES: u64 = 16 * 1024;
const _: () = assert!(
    MAX_EVENT_RECORD_PAYLOAD_BYTES + format::SEGMENT_HEADER_LEN_BYTES + format::RECORD_HEADER_LEN_BYTES
        <= MIN_SEGMENT_SIZE_BYTES as usize
);

/// Where the parts of split event lists are, for the event log in `events_dir`.
pub fn parts_dir(events_dir: &Path) -> PathBuf {
    events_dir.join(PARTS_DIR_NAME)
}

/// Refuses a segment size that cannot hold the largest event-log record (with a clear error at
/// start-up instead of a "record too large" on the first long event list).
pub fn check_segment_size(segment_size_bytes: u64) -> Result<(), String> {
    if segment_size_bytes < MIN_SEGMENT_SIZE_BYTES {
        return Err(format!(
            "segment_size_bytes {segment_size_bytes} is too small: seqd needs at least {MIN_SEGMENT_SIZE_BYTES} \
             (twice its largest event-log record, {MAX_EVENT_RECORD_PAYLOAD_BYTES} bytes of payload)"
        ));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("event-log record {seq} does not decode: {source}")]
    Codec { seq: Seq, source: CodecError },
    #[error("event-log record {seq} has kind {kind:#x}, not an events record")]
    Kind { seq: Seq, kind: u16 },
    #[error("event-log record {seq}: {reason}")]
    Parts { seq: Seq, reason: String },
}

/// Appends one record per command to `events/`, and the parts of long lists to `events/parts/`.
pub struct EventLogWriter {
    log: JournalWriter,
    /// Opened when the first long list needs it (or at open, if the directory exists), so a
    /// data directory that never split a list has no parts log.
    parts: Option<JournalWriter>,
    parts_config: JournalConfig,
    payload: Vec<u8>,
}

impl EventLogWriter {
    /// Opens (or creates) the event log in `dir`; recovers both journals' torn tails.
    /// `config` is the event log's own; the parts log shares all of it but the directory.
    pub fn open(config: JournalConfig) -> Result<(EventLogWriter, RecoveryReport), JournalError> {
        check_segment_size(config.segment_size_bytes).map_err(JournalError::InvalidConfig)?;
        let parts_config = JournalConfig { dir: parts_dir(&config.dir), ..config.clone() };
        let (log, report) = JournalWriter::open(config)?;
        let parts = match parts_config.dir.exists() {
            true => Some(JournalWriter::open(parts_config.clone())?.0),
            false => None,
        };
        let payload = Vec::with_capacity(MAX_EVENT_RECORD_PAYLOAD_BYTES);
        Ok((EventLogWriter { log, parts, parts_config, payload }, report))
    }

    /// Appends the record of command `seq` (which must be [`next_seq`](Self::next_seq)). A long
    /// list's parts are committed here; the record itself is durable only after `commit`.
    pub fn append(&mut self, seq: Seq, timestamp_ns: u64, events: &[Event]) -> Result<(), JournalError> {
        self.payload.clear();
        let kind = if codec::event_list_fits_one_record(events) {
            codec::encode_event_record(events, &mut self.payload);
            EVENTS_RECORD_KIND
        } else {
            let manifest = self.append_parts(seq, timestamp_ns, events)?;
            self.payload.clear();
            manifest.encode(&mut self.payload);
            EVENTS_SPLIT_RECORD_KIND
        };
        // Every payload is at most MAX_EVENT_RECORD_PAYLOAD_BYTES and `open` refused a segment
        // that cannot hold one, so this append cannot fail with "record too large": whatever a
        // command produced can be journaled, and the input journal never holds a command whose
        // processing cannot be recorded.
        assert!(self.payload.len() <= MAX_EVENT_RECORD_PAYLOAD_BYTES, "an event-log record is never over the maximum");
        self.log.append(seq, timestamp_ns, kind, &self.payload)
    }

    /// Writes the parts of a list that does not fit one record and commits them, so that the
    /// manifest written next can never be on disk without them.
    fn append_parts(&mut self, seq: Seq, timestamp_ns: u64, events: &[Event]) -> Result<SplitManifest, JournalError> {
        if self.parts.is_none() {
            self.parts = Some(JournalWriter::open(self.parts_config.clone())?.0);
        }
        let parts = self.parts.as_mut().expect("the parts log was just opened");
        let first_part_seq = parts.next_seq();
        let mut hasher = blake3::Hasher::new();
        let mut part_count = 0u32;
        for range in codec::split_event_list(events) {
            self.payload.clear();
            codec::encode_event_part(seq, part_count, &events[range], &mut self.payload);
            assert!(self.payload.len() <= MAX_EVENT_RECORD_PAYLOAD_BYTES, "a part is never over the maximum");
            hasher.update(&self.payload);
            parts.append(parts.next_seq(), timestamp_ns, EVENTS_PART_RECORD_KIND, &self.payload)?;
            // A list of 2^32 parts (128 TiB of events) cannot exist in memory.
            part_count = part_count.checked_add(1).expect("fewer than 2^32 parts");
        }
        parts.commit()?;
        Ok(SplitManifest {
            event_count: events.len() as u64,
            first_part_seq,
            part_count,
            parts_hash: *hasher.finalize().as_bytes(),
        })
    }

    /// Makes the appended records durable per the policy; returns the durable seq.
    pub fn commit(&mut self) -> Result<Seq, JournalError> {
        self.log.commit()
    }

    pub fn next_seq(&self) -> Seq {
        self.log.next_seq()
    }
}

/// Reads the event log from a sequence on, one command at a time, reassembling split lists.
/// Like [`JournalReader`] it can tail a live log: `Ok(None)` means "not written yet".
pub struct EventLogReader {
    parts_dir: PathBuf,
    log: JournalReader,
    /// Positioned after the parts of the last split list read (parts are read in order; a
    /// reader reopens it only to jump over parts no record names).
    parts: Option<JournalReader>,
}

impl EventLogReader {
    pub fn open(events_dir: &Path, from_seq: Seq) -> Result<EventLogReader, JournalError> {
        let log = JournalReader::open(events_dir, from_seq)?;
        Ok(EventLogReader { parts_dir: parts_dir(events_dir), log, parts: None })
    }

    /// Seq of the command the next successful `next` returns.
    pub fn next_seq(&self) -> Seq {
        self.log.next_seq()
    }

    /// The next command's `(seq, timestamp_ns)`, its events in `events` (cleared first); `None`
    /// if its record is not written yet.
    pub fn next(&mut self, events: &mut Vec<Event>) -> Result<Option<(Seq, u64)>, EventLogError> {
        self.next_up_to(Seq::MAX, events)
    }

    /// Like `next`, but `None` rather than a command with seq > `max_seq`.
    pub fn next_up_to(&mut self, max_seq: Seq, events: &mut Vec<Event>) -> Result<Option<(Seq, u64)>, EventLogError> {
        events.clear();
        let Some(record) = self.log.next_up_to(max_seq)? else {
            return Ok(None);
        };
        let (seq, timestamp_ns) = (record.seq, record.timestamp_ns);
        match record.kind {
            EVENTS_RECORD_KIND => codec::decode_event_record(record.payload, events)
                .map_err(|source| EventLogError::Codec { seq, source })?,
            EVENTS_SPLIT_RECORD_KIND => {
                let manifest =
                    SplitManifest::decode(record.payload).map_err(|source| EventLogError::Codec { seq, source })?;
                self.read_parts(seq, timestamp_ns, &manifest, events)?;
            }
            kind => return Err(EventLogError::Kind { seq, kind }),
        }
        Ok(Some((seq, timestamp_ns)))
    }

    /// Reassembles a split list: every part present, in order, of this command, with this
    /// timestamp, and together matching the manifest's count and hash.
    fn read_parts(
        &mut self,
        seq: Seq,
        timestamp_ns: u64,
        manifest: &SplitManifest,
        events: &mut Vec<Event>,
    ) -> Result<(), EventLogError> {
        let bad = |reason: String| EventLogError::Parts { seq, reason };
        let positioned = self.parts.as_ref().is_some_and(|r| r.next_seq() == manifest.first_part_seq);
        if !positioned {
            self.parts = Some(JournalReader::open(&self.parts_dir, manifest.first_part_seq)?);
        }
        let parts = self.parts.as_mut().expect("the parts reader was just opened");
        let mut hasher = blake3::Hasher::new();
        for index in 0..manifest.part_count {
            let part_seq = manifest.first_part_seq + index as u64;
            let Some(part) = parts.next()? else {
                return Err(bad(format!("part {index} (parts-log seq {part_seq}) is missing")));
            };
            if part.kind != EVENTS_PART_RECORD_KIND || part.timestamp_ns != timestamp_ns {
                return Err(bad(format!("parts-log seq {part_seq} is not part {index} of this record")));
            }
            hasher.update(part.payload);
            let header =
                codec::decode_event_part(part.payload, events).map_err(|e| bad(format!("part {index}: {e}")))?;
            if header.seq != seq || header.index != index {
                return Err(bad(format!(
                    "parts-log seq {part_seq} is part {} of command {}, not part {index} of this one",
                    header.index, header.seq
                )));
            }
        }
        if events.len() as u64 != manifest.event_count {
            return Err(bad(format!(
                "{} events in the parts, the manifest says {}",
                events.len(),
                manifest.event_count
            )));
        }
        if *hasher.finalize().as_bytes() != manifest.parts_hash {
            return Err(bad("the parts do not match the manifest's hash".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::{
        AccountId, AssetId, Command, Engine, NewOrder, OrderType, Side, StpMode, SymbolId, SymbolSpec, TimeInForce,
    };
    use crate::storage::journal::Durability;

    /// A venue, `orders` resting buys of account 1, then their `CancelAll`: a list of
    /// 142 bytes per order (a report and a release), split above about 230 orders.
    pub(crate) fn cancel_all_session(orders: i64) -> Vec<Command> {
        let mut commands = vec![
            Command::CreateAsset { asset: AssetId(1), scale: 8 },
            Command::CreateAsset { asset: AssetId(2), scale: 6 },
            Command::CreateSymbol(SymbolSpec {
                symbol: SymbolId(1),
                base: AssetId(1),
                quote: AssetId(2),
                tick_size: 10_000,
                lot_size: 10_000,
                min_qty: 10_000,
                min_notional: 0,
                max_order_qty: 100_000_000_000,
                maker_fee_ppm: 0,
                taker_fee_ppm: 0,
                price_band_bps: 0,
            }),
            Command::CreateAccount { account: AccountId(1), parent: AccountId::NONE, owner: 1 },
            Command::Deposit { account: AccountId(1), asset: AssetId(2), amount: 100_000_000_000, external_ref: 1 },
        ];
        commands.extend((0..orders).map(|i| {
            Command::PlaceOrder(NewOrder {
                account: AccountId(1),
                symbol: SymbolId(1),
                client_order_id: 0,
                side: Side::Buy,
                order_type: OrderType::Limit,
                tif: TimeInForce::Gtc,
                stp: StpMode::CancelIncoming,
                price: 29_000_000_000 - i * 10_000,
                stop_price: 0,
                qty: 10_000,
                quote_budget: 0,
            })
        }));
        commands.push(Command::CancelAll { account: AccountId(1), symbol: SymbolId::ALL });
        commands
    }

    /// Applies `commands` and writes their events through an `EventLogWriter` in `dir`;
    /// returns every command's events.
    pub(crate) fn write_log(dir: &Path, commands: &[Command]) -> Vec<Vec<Event>> {
        let (mut writer, _) =
            EventLogWriter::open(JournalConfig::new(dir, MIN_SEGMENT_SIZE_BYTES, Durability::PageCache)).unwrap();
        let mut engine = Engine::new();
        let mut all = Vec::new();
        for (i, command) in commands.iter().enumerate() {
            let (seq, timestamp_ns) = (i as Seq + 1, 1_000 + i as u64);
            let mut events = Vec::new();
            engine.apply(seq, timestamp_ns, command, &mut events);
            writer.append(seq, timestamp_ns, &events).unwrap();
            all.push(events);
        }
        writer.commit().unwrap();
        all
    }

    #[test]
    fn whole_and_split_lists_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_log(dir.path(), &cancel_all_session(1_000));
        assert!(!codec::event_list_fits_one_record(written.last().unwrap()), "the CancelAll is split");
        let parts = crate::storage::journal::verify(&parts_dir(dir.path())).unwrap();
        assert!(parts.records >= 5, "{} parts", parts.records);
        // The small segments rolled: the split list spans several of them.
        assert!(parts.segments >= 2, "{} parts segments", parts.segments);
        let mut reader = EventLogReader::open(dir.path(), 1).unwrap();
        let mut events = Vec::new();
        for (i, expected) in written.iter().enumerate() {
            let head = reader.next(&mut events).unwrap().expect("a record per command");
            assert_eq!(head, (i as Seq + 1, 1_000 + i as u64));
            assert_eq!(&events, expected, "seq {}", i + 1);
        }
        assert_eq!(reader.next(&mut events).unwrap(), None);
        // A reader opened at the split record reassembles it too.
        let last = written.len() as Seq;
        let mut reader = EventLogReader::open(dir.path(), last).unwrap();
        assert_eq!(reader.next(&mut events).unwrap().map(|h| h.0), Some(last));
        assert_eq!(&events, written.last().unwrap());
    }

    #[test]
    fn a_log_without_long_lists_has_no_parts_log() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), &cancel_all_session(3));
        assert!(!parts_dir(dir.path()).exists());
    }

    #[test]
    fn a_record_whose_parts_are_missing_is_an_error_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), &cancel_all_session(1_000));
        // Replace the parts log by an empty one: the manifest names parts that are not there.
        std::fs::remove_dir_all(parts_dir(dir.path())).unwrap();
        let mut reader = EventLogReader::open(dir.path(), 1).unwrap();
        let mut events = Vec::new();
        let error = loop {
            match reader.next(&mut events) {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the split record read without its parts"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(error.contains("part 0") && error.contains("missing"), "{error}");
    }
}
