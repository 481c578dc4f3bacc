//! Checked little-endian field access for message payloads.
//!
//! `codec::Reader` trusts a length checked up front, which fits fixed-size commands; message
//! payloads carry counts and strings, so every read here checks the remaining length and
//! returns an error instead of panicking.

use super::error::{EncodeError, PayloadError};
use crate::wire::codec::Writer;

pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, at: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], PayloadError> {
        if self.remaining() < n {
            return Err(PayloadError::Truncated { at: self.at, needed: n - self.remaining() });
        }
        let taken = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PayloadError> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, PayloadError> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, PayloadError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, PayloadError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, PayloadError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, PayloadError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A boolean byte: exactly 0 or 1.
    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, PayloadError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(PayloadError::BadValue { field, value: u64::from(value) }),
        }
    }

    /// An enum byte decoded by one of the engine's `from_u8` functions.
    pub(crate) fn enum_u8<T>(&mut self, field: &'static str, decode: fn(u8) -> Option<T>) -> Result<T, PayloadError> {
        let value = self.u8()?;
        decode(value).ok_or(PayloadError::BadValue { field, value: u64::from(value) })
    }

    /// A u16 item count, checked against the bytes left so a lying count cannot make the
    /// decoder allocate more than the payload could hold.
    pub(crate) fn count_u16(&mut self, item_bytes: usize) -> Result<usize, PayloadError> {
        let count = self.u16()? as usize;
        let needed = count * item_bytes;
        if needed > self.remaining() {
            return Err(PayloadError::Truncated { at: self.at, needed: needed - self.remaining() });
        }
        Ok(count)
    }

    /// A u16 byte length then that many bytes of UTF-8, at most `max_bytes`.
    pub(crate) fn string(&mut self, field: &'static str, max_bytes: usize) -> Result<String, PayloadError> {
        let len = self.u16()? as usize;
        if len > max_bytes {
            return Err(PayloadError::TooLong { field, len, max: max_bytes });
        }
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| PayloadError::BadUtf8 { field })
    }

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.at..];
        self.at = self.bytes.len();
        rest
    }

    /// Every message has an exact length: bytes left over are an error, not an extension.
    pub(crate) fn finish(&self) -> Result<(), PayloadError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(PayloadError::TrailingBytes { extra }),
        }
    }
}

/// Appends a u16 byte length and the string, refusing strings over `max_bytes`.
pub(crate) fn put_string(out: &mut Vec<u8>, field: &'static str, s: &str, max_bytes: usize) -> Result<(), EncodeError> {
    if s.len() > max_bytes {
        return Err(EncodeError::StringTooLong { field, len: s.len(), max: max_bytes });
    }
    Writer(out).u16(s.len() as u16);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Appends a u16 list count, refusing lists that do not fit it.
pub(crate) fn put_count_u16(out: &mut Vec<u8>, field: &'static str, len: usize) -> Result<(), EncodeError> {
    let count = u16::try_from(len).map_err(|_| EncodeError::ListTooLong { field, len, max: u16::MAX as usize })?;
    Writer(out).u16(count);
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
        let mut c = Cursor::new(&[1, 2, 3]);
        assert_eq!(c.u16(), Ok(0x0201));
        assert_eq!(c.u32(), Err(PayloadError::Truncated { at: 2, needed: 3 }));
        assert_eq!(c.u8(), Ok(3));
        assert_eq!(c.finish(), Ok(()));
        assert_eq!(Cursor::new(&[5, 0, 1]).count_u16(1), Err(PayloadError::Truncated { at: 2, needed: 4 }));
        assert_eq!(Cursor::new(&[2]).bool("more"), Err(PayloadError::BadValue { field: "more", value: 2 }));
    }

    #[test]
    fn strings_are_bounded_and_utf8() {
        let mut out = Vec::new();
        put_string(&mut out, "s", "héllo", 10).unwrap();
        assert_eq!(Cursor::new(&out).string("s", 10), Ok("héllo".to_owned()));
        assert_eq!(Cursor::new(&out).string("s", 3), Err(PayloadError::TooLong { field: "s", len: 6, max: 3 }));
        assert_eq!(Cursor::new(&[2, 0, 0xff, 0xfe]).string("s", 10), Err(PayloadError::BadUtf8 { field: "s" }));
        assert!(put_string(&mut out, "s", "toolong", 3).is_err());
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
    }
}
