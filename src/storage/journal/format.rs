//! On-disk layout: constants, segment header and record encode/decode.
//!
//! Everything here is pure (no I/O) so it can be unit tested byte by byte.
//! `FORMAT.md` at the crate root is the normative description; keep the two in sync.

use std::fmt;

/// First 8 bytes of every segment file.
pub const MAGIC: [u8; 8] = *b"SEQDJRNL";
/// Bumped on any incompatible layout change.
pub const FORMAT_VERSION: u16 = 1;

pub const SEGMENT_HEADER_LEN_BYTES: usize = 64;
pub const RECORD_HEADER_LEN_BYTES: usize = 32;
/// Records start on 8-byte boundaries; the 8-byte `len|crc` word doubles as the end marker.
pub const RECORD_ALIGN_BYTES: usize = 8;
/// Zero-padded decimal digits in a segment file name (`u64::MAX` has 20 digits).
pub const SEGMENT_NAME_DIGITS: usize = 20;
pub const SEGMENT_EXTENSION: &str = "seg";

// Segment header field offsets.
const HDR_MAGIC: usize = 0;
const HDR_VERSION: usize = 8;
const HDR_FLAGS: usize = 10;
const HDR_CRC: usize = 12;
const HDR_FIRST_SEQ: usize = 16;
/// Offset of `prev_chain_hash` in the segment header (public: named in corruption errors).
pub const HDR_PREV_CHAIN_HASH: usize = 24;
/// Offset of `first_seq` in the segment header (public: named in corruption errors).
pub const HDR_FIRST_SEQ_OFFSET: usize = HDR_FIRST_SEQ;
const HDR_RESERVED: usize = 56;

// Record header field offsets (relative to the record start).
const REC_LEN: usize = 0;
const REC_CRC: usize = 4;
const REC_SEQ: usize = 8;
const REC_TIMESTAMP: usize = 16;
const REC_KIND: usize = 24;
const REC_RESERVED: usize = 26;
const REC_RESERVED2: usize = 28;
/// CRC coverage starts at `seq` (the `len|crc` word is excluded).
const REC_CRC_START: usize = REC_SEQ;

/// One journal record, borrowed from a mapped segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub seq: u64,
    pub timestamp_ns: u64,
    pub kind: u16,
    pub payload: &'a [u8],
}

/// Decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub first_seq: u64,
    pub prev_chain_hash: [u8; 32],
}

/// Why a segment header is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    TooShort { len_bytes: usize },
    BadMagic,
    UnsupportedVersion(u16),
    UnknownFlags(u16),
    BadCrc { stored: u32, computed: u32 },
    NonZeroReserved,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::TooShort { len_bytes } => {
                write!(f, "file is {len_bytes} bytes, shorter than the {SEGMENT_HEADER_LEN_BYTES}-byte segment header")
            }
            HeaderError::BadMagic => write!(f, "bad magic (expected \"SEQDJRNL\")"),
            HeaderError::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            HeaderError::UnknownFlags(v) => write!(f, "unknown header flags {v:#06x}"),
            HeaderError::BadCrc { stored, computed } => {
                write!(f, "header CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            HeaderError::NonZeroReserved => write!(f, "non-zero reserved header bytes"),
        }
    }
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN_BYTES] {
        let mut bytes = [0u8; SEGMENT_HEADER_LEN_BYTES];
        bytes[HDR_MAGIC..HDR_MAGIC + 8].copy_from_slice(&MAGIC);
        bytes[HDR_VERSION..HDR_VERSION + 2].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        // flags stay 0; reserved bytes stay 0
        bytes[HDR_FIRST_SEQ..HDR_FIRST_SEQ + 8].copy_from_slice(&self.first_seq.to_le_bytes());
        bytes[HDR_PREV_CHAIN_HASH..HDR_PREV_CHAIN_HASH + 32].copy_from_slice(&self.prev_chain_hash);
        let crc = header_crc(&bytes);
        bytes[HDR_CRC..HDR_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Decodes and validates the first 64 bytes of `file_bytes`.
    pub fn decode(file_bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let Some(bytes) = file_bytes.get(..SEGMENT_HEADER_LEN_BYTES) else {
            return Err(HeaderError::TooShort { len_bytes: file_bytes.len() });
        };
        if bytes[HDR_MAGIC..HDR_MAGIC + 8] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        // Check the CRC before interpreting the other fields: a torn header should be
        // reported as a CRC failure, not as a confusing "unsupported version".
        let stored = read_u32(bytes, HDR_CRC);
        let computed = header_crc(bytes);
        if stored != computed {
            return Err(HeaderError::BadCrc { stored, computed });
        }
        let version = read_u16(bytes, HDR_VERSION);
        if version != FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        let flags = read_u16(bytes, HDR_FLAGS);
        if flags != 0 {
            return Err(HeaderError::UnknownFlags(flags));
        }
        if bytes[HDR_RESERVED..].iter().any(|&b| b != 0) {
            return Err(HeaderError::NonZeroReserved);
        }
        let mut prev_chain_hash = [0u8; 32];
        prev_chain_hash.copy_from_slice(&bytes[HDR_PREV_CHAIN_HASH..HDR_PREV_CHAIN_HASH + 32]);
        Ok(SegmentHeader { first_seq: read_u64(bytes, HDR_FIRST_SEQ), prev_chain_hash })
    }
}

/// CRC32C of the 64 header bytes with the CRC field treated as zero.
fn header_crc(header: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&header[..HDR_CRC]);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc32c::crc32c_append(crc, &header[HDR_CRC + 4..SEGMENT_HEADER_LEN_BYTES])
}

/// Total on-disk size of a record with `payload_len_bytes` of payload (header + payload + padding).
pub fn record_len_bytes(payload_len_bytes: usize) -> usize {
    align_up(RECORD_HEADER_LEN_BYTES + payload_len_bytes)
}

/// Largest payload that fits in an otherwise empty segment of `segment_size_bytes`.
pub fn max_payload_len_bytes(segment_size_bytes: u64) -> usize {
    let room = segment_size_bytes.saturating_sub((SEGMENT_HEADER_LEN_BYTES + RECORD_HEADER_LEN_BYTES) as u64);
    // `len` is a u32 on disk.
    room.min(u32::MAX as u64) as usize
}

pub fn align_up(len_bytes: usize) -> usize {
    len_bytes.div_ceil(RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES
}

/// Encodes the 32-byte record header, including `len` and the CRC over header tail + payload.
///
/// Callers must have checked `1 <= payload.len() <= u32::MAX`.
pub fn encode_record_header(seq: u64, timestamp_ns: u64, kind: u16, payload: &[u8]) -> [u8; RECORD_HEADER_LEN_BYTES] {
    let mut header = [0u8; RECORD_HEADER_LEN_BYTES];
    header[REC_LEN..REC_LEN + 4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[REC_SEQ..REC_SEQ + 8].copy_from_slice(&seq.to_le_bytes());
    header[REC_TIMESTAMP..REC_TIMESTAMP + 8].copy_from_slice(&timestamp_ns.to_le_bytes());
    header[REC_KIND..REC_KIND + 2].copy_from_slice(&kind.to_le_bytes());
    // reserved (u16) and reserved2 (u32) stay zero.
    let crc = record_crc(&header[REC_CRC_START..], payload);
    header[REC_CRC..REC_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    header
}

fn record_crc(header_tail: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header_tail), payload)
}

/// What is found at a record-aligned offset inside a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot<'a> {
    /// A complete record whose CRC, reserved fields and padding check out.
    Record { record: RecordRef<'a>, len_bytes: usize },
    /// The `len|crc` word is zero (or the file ends here with only zero bytes): no more data.
    End,
    /// Neither: a torn write or corruption. The caller decides which, from what follows.
    Invalid(InvalidRecord),
}

/// Why the bytes at an offset are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidRecord {
    /// Fewer than 32 bytes (or the declared payload) remain before end of file.
    Truncated,
    /// `len` is 0 but `crc` is not, i.e. not the all-zero end marker.
    ZeroLength,
    BadCrc {
        stored: u32,
        computed: u32,
    },
    NonZeroReserved,
    NonZeroPadding,
}

impl fmt::Display for InvalidRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidRecord::Truncated => write!(f, "record extends past end of file"),
            InvalidRecord::ZeroLength => write!(f, "record has payload length 0 (not allowed) and a non-zero CRC"),
            InvalidRecord::BadCrc { stored, computed } => {
                write!(f, "record CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            InvalidRecord::NonZeroReserved => write!(f, "record reserved fields are not zero"),
            InvalidRecord::NonZeroPadding => write!(f, "record padding is not zero"),
        }
    }
}

/// Decodes the slot at `offset` (must be 8-byte aligned) of a segment's bytes.
///
/// Never panics, whatever `bytes` holds.
pub fn decode_slot(bytes: &[u8], offset: usize) -> Slot<'_> {
    let rest = bytes.get(offset..).unwrap_or(&[]);
    if rest.len() < RECORD_ALIGN_BYTES {
        // Not even room for an end marker: this is the end of the file.
        return if rest.iter().all(|&b| b == 0) { Slot::End } else { Slot::Invalid(InvalidRecord::Truncated) };
    }
    let payload_len = read_u32(rest, REC_LEN) as usize;
    let stored_crc = read_u32(rest, REC_CRC);
    if payload_len == 0 {
        // Payloads are at least 1 byte, so len == 0 can only be the end marker.
        return if stored_crc == 0 { Slot::End } else { Slot::Invalid(InvalidRecord::ZeroLength) };
    }
    let Some(len_bytes) = RECORD_HEADER_LEN_BYTES.checked_add(payload_len).map(align_up) else {
        return Slot::Invalid(InvalidRecord::Truncated);
    };
    if rest.len() < len_bytes {
        return Slot::Invalid(InvalidRecord::Truncated);
    }
    let payload_end = RECORD_HEADER_LEN_BYTES + payload_len;
    let payload = &rest[RECORD_HEADER_LEN_BYTES..payload_end];
    let computed = record_crc(&rest[REC_CRC_START..RECORD_HEADER_LEN_BYTES], payload);
    if computed != stored_crc {
        return Slot::Invalid(InvalidRecord::BadCrc { stored: stored_crc, computed });
    }
    if read_u16(rest, REC_RESERVED) != 0 || read_u32(rest, REC_RESERVED2) != 0 {
        return Slot::Invalid(InvalidRecord::NonZeroReserved);
    }
    // Padding is not under the CRC; require zeros so every byte of a record is checked.
    if rest[payload_end..len_bytes].iter().any(|&b| b != 0) {
        return Slot::Invalid(InvalidRecord::NonZeroPadding);
    }
    let record = RecordRef {
        seq: read_u64(rest, REC_SEQ),
        timestamp_ns: read_u64(rest, REC_TIMESTAMP),
        kind: read_u16(rest, REC_KIND),
        payload,
    };
    Slot::Record { record, len_bytes }
}

/// Parses a segment file name `NNNNNNNNNNNNNNNNNNNN.seg` into its first seq.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:0width$}.{SEGMENT_EXTENSION}", width = SEGMENT_NAME_DIGITS)
}

// Callers guarantee `at + N <= bytes.len()`; the slice-to-array conversion cannot fail then.
fn read_u16(bytes: &[u8], at: usize) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&bytes[at..at + 2]);
    u16::from_le_bytes(b)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_bytes(seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut bytes = encode_record_header(seq, 77, 3, payload).to_vec();
        bytes.extend_from_slice(payload);
        bytes.resize(record_len_bytes(payload.len()), 0);
        bytes
    }

    #[test]
    fn crc32c_is_castagnoli() {
        // Standard check value for CRC-32C, quoted in FORMAT.md.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn record_sizes() {
        assert_eq!(record_len_bytes(64), 96);
        assert_eq!(record_len_bytes(1), 40);
        assert_eq!(record_len_bytes(8), 40);
        assert_eq!(record_len_bytes(9), 48);
    }

    #[test]
    fn header_round_trip_and_every_bit_flip_is_rejected() {
        let header = SegmentHeader { first_seq: 42, prev_chain_hash: [7u8; 32] };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        for bit in 0..SEGMENT_HEADER_LEN_BYTES * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&flipped).is_err(), "bit {bit} flip accepted");
        }
        assert_eq!(SegmentHeader::decode(&bytes[..10]), Err(HeaderError::TooShort { len_bytes: 10 }));
    }

    #[test]
    fn record_round_trip_and_every_bit_flip_is_rejected() {
        let payload = b"hello journal!!"; // 15 bytes -> 1 byte of padding
        let bytes = record_bytes(9, payload);
        match decode_slot(&bytes, 0) {
            Slot::Record { record, len_bytes } => {
                assert_eq!(len_bytes, 48);
                assert_eq!(record, RecordRef { seq: 9, timestamp_ns: 77, kind: 3, payload });
            }
            other => panic!("unexpected {other:?}"),
        }
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(!matches!(decode_slot(&flipped, 0), Slot::Record { .. }), "bit {bit} flip accepted");
        }
    }

    #[test]
    fn zero_word_is_end_marker() {
        assert_eq!(decode_slot(&[0u8; 64], 0), Slot::End);
        assert_eq!(decode_slot(&[0u8; 3], 0), Slot::End);
        assert_eq!(decode_slot(&[0u8; 64], 64), Slot::End);
        assert_eq!(decode_slot(&[0, 0, 0, 0, 1, 0, 0, 0], 0), Slot::Invalid(InvalidRecord::ZeroLength));
        assert_eq!(decode_slot(&[0, 0, 1], 0), Slot::Invalid(InvalidRecord::Truncated));
    }

    #[test]
    fn huge_len_does_not_panic() {
        let mut bytes = [0u8; 40];
        bytes[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_slot(&bytes, 0), Slot::Invalid(InvalidRecord::Truncated));
    }

    #[test]
    fn segment_names() {
        assert_eq!(segment_file_name(1), "00000000000000000001.seg");
        assert_eq!(parse_segment_file_name("00000000000000000001.seg"), Some(1));
        assert_eq!(parse_segment_file_name("18446744073709551615.seg"), Some(u64::MAX));
        assert_eq!(parse_segment_file_name("99999999999999999999.seg"), None);
        assert_eq!(parse_segment_file_name("1.seg"), None);
        assert_eq!(parse_segment_file_name("00000000000000000001.seg.tmp"), None);
    }
}
