//! The one byte cursor of seqd: `ByteReader` reads little-endian fields from a slice and fails
//! with a typed error naming the offset; `ByteWriter` appends them to a vector.
//!
//! Every encoding seqd owns is little-endian with fixed-width integers and no padding: the
//! journal and event log (`journal/FORMAT.md`), the client protocol (`docs/PROTOCOL.md`) and the
//! canonical state encoding (`engine/snapshot.rs`). So the cursor has one byte order and is not
//! generic over it.
//!
//! Its users add their own field kinds (strings, bounded counts, lengths with a flag) on top and
//! turn `ReadError` into their own error type with `From`, so `?` works on every read. It uses
//! nothing of seqd, so the engine (the snapshot encoding) may use it as well as `wire` and
//! `protocol`: see ARCHITECTURE.md "Layout".

/// Why a read failed, with the offset (from the start of the slice) of the field that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("truncated at byte {at}: {needed} more bytes needed")]
    Truncated { at: usize, needed: usize },
    #[error("invalid value {value} for field {field} at byte {at}")]
    BadValue { field: &'static str, value: u8, at: usize },
    #[error("{extra} bytes after the end")]
    Trailing { extra: usize },
}

/// Reads little-endian fields from a slice; every read checks the length.
#[derive(Clone, Debug)]
pub struct ByteReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> ByteReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        ByteReader { bytes, at: 0 }
    }

    /// Offset of the next byte to read.
    pub fn position(&self) -> usize {
        self.at
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// Ok when at least `n` bytes are left, without reading them.
    pub fn ensure(&self, n: usize) -> Result<(), ReadError> {
        match n.checked_sub(self.remaining()) {
            Some(needed) if needed > 0 => Err(ReadError::Truncated { at: self.at, needed }),
            _ => Ok(()),
        }
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        self.ensure(n)?;
        let taken = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(taken)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, ReadError> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16, ReadError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, ReadError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, ReadError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, ReadError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn i128(&mut self) -> Result<i128, ReadError> {
        Ok(i128::from_le_bytes(self.array()?))
    }

    /// A boolean byte: exactly 0 or 1.
    pub fn bool(&mut self, field: &'static str) -> Result<bool, ReadError> {
        self.enum_u8(field, |value| match value {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        })
    }

    /// An enum byte decoded by one of the engine's `from_u8` functions.
    pub fn enum_u8<T>(&mut self, field: &'static str, decode: fn(u8) -> Option<T>) -> Result<T, ReadError> {
        let at = self.at;
        let value = self.u8()?;
        decode(value).ok_or(ReadError::BadValue { field, value, at })
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.at..];
        self.at = self.bytes.len();
        rest
    }

    /// Ok when everything was read: bytes left over are an error, not an extension.
    pub fn finish(&self) -> Result<(), ReadError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(ReadError::Trailing { extra }),
        }
    }
}

/// Appends little-endian fields to a byte vector; each method returns the writer, so fields
/// chain: `ByteWriter(out).u64(seq).u32(count)`.
pub struct ByteWriter<'a>(pub &'a mut Vec<u8>);

impl ByteWriter<'_> {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn i128(&mut self, v: i128) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_little_endian() {
        let mut out = Vec::new();
        ByteWriter(&mut out).u8(1).u16(0x0302).u32(7).u64(u64::MAX).i64(-2).i128(-3).bytes(b"ab");
        assert_eq!(out[..3], [1, 2, 3]);
        assert_eq!(out.len(), 1 + 2 + 4 + 8 + 8 + 16 + 2);
        let mut r = ByteReader::new(&out);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(0x0302));
        assert_eq!(r.u32(), Ok(7));
        assert_eq!(r.u64(), Ok(u64::MAX));
        assert_eq!(r.i64(), Ok(-2));
        assert_eq!(r.i128(), Ok(-3));
        assert_eq!(r.finish(), Err(ReadError::Trailing { extra: 2 }));
        assert_eq!(r.bytes(2), Ok(&b"ab"[..]));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn reads_past_the_end_are_errors_with_the_offset_and_read_nothing() {
        let mut r = ByteReader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Ok(0x0201));
        assert_eq!(r.u32(), Err(ReadError::Truncated { at: 2, needed: 3 }));
        assert_eq!(r.bytes(usize::MAX), Err(ReadError::Truncated { at: 2, needed: usize::MAX - 1 }));
        assert_eq!(r.position(), 2);
        assert_eq!(r.ensure(1), Ok(()));
        assert_eq!(r.rest(), &[3]);
        assert_eq!(r.u8(), Err(ReadError::Truncated { at: 3, needed: 1 }));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn bad_enum_and_bool_bytes_are_errors_with_the_offset() {
        let mut r = ByteReader::new(&[1, 2, 9]);
        assert_eq!(r.bool("flag"), Ok(true));
        assert_eq!(r.bool("more"), Err(ReadError::BadValue { field: "more", value: 2, at: 1 }));
        let odd = |v: u8| (v % 2 == 1).then_some(v);
        assert_eq!(r.enum_u8("odd", odd), Ok(9));
    }
}
