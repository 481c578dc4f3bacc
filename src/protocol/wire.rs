//! The protocol's own field kinds on top of the byte cursor (`crate::cursor`): bounded counts
//! and strings. Message payloads carry counts and strings, so every read checks the remaining
//! length and returns an error instead of panicking.

use super::error::{EncodeError, PayloadError};
use crate::cursor::{ByteReader, ByteWriter, ReadError};

impl From<ReadError> for PayloadError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Truncated { at, needed } => PayloadError::Truncated { at, needed },
            ReadError::BadValue { field, value, .. } => PayloadError::BadValue { field, value: u64::from(value) },
            ReadError::Trailing { extra } => PayloadError::TrailingBytes { extra },
        }
    }
}

/// Reads of the protocol's counted fields.
pub(crate) trait PayloadReader {
    /// A u16 item count, checked against the bytes left so a lying count cannot make the
    /// decoder allocate more than the payload could hold.
    fn count_u16(&mut self, item_bytes: usize) -> Result<usize, PayloadError>;
    /// A u16 byte length then that many bytes of UTF-8, at most `max_bytes`.
    fn string(&mut self, field: &'static str, max_bytes: usize) -> Result<String, PayloadError>;
}

impl PayloadReader for ByteReader<'_> {
    fn count_u16(&mut self, item_bytes: usize) -> Result<usize, PayloadError> {
        let count = self.u16()? as usize;
        self.ensure(count * item_bytes)?;
        Ok(count)
    }

    fn string(&mut self, field: &'static str, max_bytes: usize) -> Result<String, PayloadError> {
        let len = self.u16()? as usize;
        if len > max_bytes {
            return Err(PayloadError::TooLong { field, len, max: max_bytes });
        }
        let bytes = self.bytes(len)?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| PayloadError::BadUtf8 { field })
    }
}

/// Appends a u16 byte length and the string, refusing strings over `max_bytes`.
pub(crate) fn put_string(out: &mut Vec<u8>, field: &'static str, s: &str, max_bytes: usize) -> Result<(), EncodeError> {
    if s.len() > max_bytes {
        return Err(EncodeError::StringTooLong { field, len: s.len(), max: max_bytes });
    }
    ByteWriter(out).u16(s.len() as u16).bytes(s.as_bytes());
    Ok(())
}

/// Appends a u16 list count, refusing lists that do not fit it.
pub(crate) fn put_count_u16(out: &mut Vec<u8>, field: &'static str, len: usize) -> Result<(), EncodeError> {
    let count = u16::try_from(len).map_err(|_| EncodeError::ListTooLong { field, len, max: u16::MAX as usize })?;
    ByteWriter(out).u16(count);
    Ok(())
}

/// The longest prefix of `s` of at most `max_bytes` bytes that ends on a char boundary.
pub(crate) fn truncate_utf8(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_errors() {
        let mut c = ByteReader::new(&[1, 2, 3]);
        assert_eq!(c.u16(), Ok(0x0201));
        assert_eq!(c.u32().map_err(PayloadError::from), Err(PayloadError::Truncated { at: 2, needed: 3 }));
        assert_eq!(c.u8(), Ok(3));
        assert_eq!(c.finish(), Ok(()));
        assert_eq!(ByteReader::new(&[5, 0, 1]).count_u16(1), Err(PayloadError::Truncated { at: 2, needed: 4 }));
        let bad_bool = ByteReader::new(&[2]).bool("more").map_err(PayloadError::from);
        assert_eq!(bad_bool, Err(PayloadError::BadValue { field: "more", value: 2 }));
        let trailing = ByteReader::new(&[0, 0]).finish().map_err(PayloadError::from);
        assert_eq!(trailing, Err(PayloadError::TrailingBytes { extra: 2 }));
    }

    #[test]
    fn strings_are_bounded_and_utf8() {
        let mut out = Vec::new();
        put_string(&mut out, "s", "héllo", 10).unwrap();
        assert_eq!(ByteReader::new(&out).string("s", 10), Ok("héllo".to_owned()));
        assert_eq!(ByteReader::new(&out).string("s", 3), Err(PayloadError::TooLong { field: "s", len: 6, max: 3 }));
        assert_eq!(ByteReader::new(&[2, 0, 0xff, 0xfe]).string("s", 10), Err(PayloadError::BadUtf8 { field: "s" }));
        assert!(put_string(&mut out, "s", "toolong", 3).is_err());
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
    }
}
