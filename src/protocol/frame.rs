//! Framing: cutting a byte stream into frames, and writing frames.
//!
//! ```text
//! offset size type meaning
//!  0     4    u32  length: bytes after this field (12 + payload length)
//!  4     1    u8   version (1)
//!  5     1    u8   msg_type
//!  6     2    u16  flags (0; reserved)
//!  8     8    u64  request_id (0 = push from the server)
//! 16     n         payload
//! ```
//!
//! A QUIC stream is a byte stream: a read may return part of a frame or several frames.
//! [`FrameDecoder`] takes whatever arrived and hands out complete frames, holding at most one
//! partial frame (at most `max_frame_bytes`), so a peer cannot make it buffer without bound.

use super::error::{EncodeError, FrameError};

/// Size of the length field at the start of every frame.
pub const LENGTH_FIELD_BYTES: usize = 4;
/// Header bytes after the length field: version, msg_type, flags, request_id.
pub const HEADER_AFTER_LENGTH_BYTES: usize = 1 + 1 + 2 + 8;
/// Whole header, length field included; the payload starts at this offset.
pub const HEADER_BYTES: usize = LENGTH_FIELD_BYTES + HEADER_AFTER_LENGTH_BYTES;
/// Default maximum size of a whole frame (length field included).
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 64 * 1024;
/// Smallest allowed maximum: every single-item message (an `Error` with the longest message,
/// a `Welcome` with the longest principal, one event or order) must fit in one frame.
pub const MIN_MAX_FRAME_BYTES: u32 = 1024;

/// One complete frame. `payload` borrows the decoder's buffer or the caller's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub version: u8,
    pub msg_type: u8,
    pub flags: u16,
    pub request_id: u64,
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Splits a whole frame whose length was already checked (at least `HEADER_BYTES` long).
    fn from_checked_bytes(bytes: &'a [u8]) -> Frame<'a> {
        let header = &bytes[LENGTH_FIELD_BYTES..HEADER_BYTES];
        Frame {
            version: header[0],
            msg_type: header[1],
            flags: u16::from_le_bytes([header[2], header[3]]),
            request_id: u64::from_le_bytes(header[4..12].try_into().expect("8 bytes")),
            payload: &bytes[HEADER_BYTES..],
        }
    }

    /// Size of the whole frame on the wire.
    pub fn frame_bytes(&self) -> usize {
        HEADER_BYTES + self.payload.len()
    }
}

/// Incremental frame decoder for one direction of one stream.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame_bytes: u32,
    /// The frame being assembled; never longer than `max_frame_bytes`.
    partial: Vec<u8>,
    /// `partial` holds a whole frame already handed out; it is dropped on the next call.
    handed_out: bool,
    /// Set once framing is lost. The stream cannot be resynchronised, so it stays set.
    failed: Option<FrameError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl FrameDecoder {
    /// A decoder refusing frames larger than `max_frame_bytes` (length field included).
    ///
    /// Panics if `max_frame_bytes < MIN_MAX_FRAME_BYTES`: that is a configuration error.
    pub fn new(max_frame_bytes: u32) -> FrameDecoder {
        assert!(
            max_frame_bytes >= MIN_MAX_FRAME_BYTES,
            "max_frame_bytes {max_frame_bytes} is below the minimum {MIN_MAX_FRAME_BYTES}"
        );
        FrameDecoder { max_frame_bytes, partial: Vec::new(), handed_out: false, failed: None }
    }

    pub fn max_frame_bytes(&self) -> u32 {
        self.max_frame_bytes
    }

    /// Bytes of an incomplete frame held between calls.
    pub fn buffered_bytes(&self) -> usize {
        if self.handed_out {
            0
        } else {
            self.partial.len()
        }
    }

    /// Takes bytes from the front of `input` and returns the next complete frame, or `None`
    /// once `input` is used up without completing one (the partial frame is kept). Call it in a
    /// loop until `None`: it consumes at most one frame per call.
    ///
    /// A frame lying whole in `input` is returned without copying. After an error, framing is
    /// lost: every later call returns the same error and the connection must be closed.
    pub fn decode<'s, 'i: 's>(&'s mut self, input: &mut &'i [u8]) -> Result<Option<Frame<'s>>, FrameError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.handed_out {
            self.partial.clear();
            self.handed_out = false;
        }
        if self.partial.is_empty() {
            if let Some(frame_bytes) = self.whole_frame_len(input)? {
                let whole: &'i [u8] = std::mem::take(input);
                let (frame, rest) = whole.split_at(frame_bytes);
                *input = rest;
                return Ok(Some(Frame::from_checked_bytes(frame)));
            }
        }
        self.fill_partial_to(LENGTH_FIELD_BYTES, input);
        if self.partial.len() < LENGTH_FIELD_BYTES {
            return Ok(None);
        }
        let length_field: [u8; LENGTH_FIELD_BYTES] = self.partial[..LENGTH_FIELD_BYTES].try_into().expect("4 bytes");
        let frame_bytes = self.check_length(&length_field)?;
        self.fill_partial_to(frame_bytes, input);
        if self.partial.len() < frame_bytes {
            return Ok(None);
        }
        self.handed_out = true;
        Ok(Some(Frame::from_checked_bytes(&self.partial)))
    }

    /// Call when the peer has finished its side of the stream: an incomplete frame left over
    /// is an error (the peer stopped mid-frame).
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        match self.buffered_bytes() {
            0 => Ok(()),
            buffered_bytes => Err(FrameError::TruncatedAtClose { buffered_bytes }),
        }
    }

    /// The size of the first frame of `input` if `input` holds all of it (fast path).
    fn whole_frame_len(&mut self, input: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(length_field) = input.get(..LENGTH_FIELD_BYTES) else { return Ok(None) };
        let frame_bytes = self.check_length(length_field.try_into().expect("4 bytes"))?;
        Ok((input.len() >= frame_bytes).then_some(frame_bytes))
    }

    /// Validates a length field and returns the whole frame size; records a framing error.
    fn check_length(&mut self, length_field: &[u8; LENGTH_FIELD_BYTES]) -> Result<usize, FrameError> {
        let length = u32::from_le_bytes(*length_field);
        let frame_bytes = LENGTH_FIELD_BYTES as u64 + u64::from(length);
        let error = if (length as usize) < HEADER_AFTER_LENGTH_BYTES {
            FrameError::LengthTooShort { length, min: HEADER_AFTER_LENGTH_BYTES as u32 }
        } else if frame_bytes > u64::from(self.max_frame_bytes) {
            FrameError::TooLarge { frame_bytes, max_frame_bytes: self.max_frame_bytes }
        } else {
            return Ok(frame_bytes as usize);
        };
        self.failed = Some(error.clone());
        Err(error)
    }

    /// Moves bytes from `input` into `partial` until it holds `target` bytes or input ends.
    fn fill_partial_to(&mut self, target: usize, input: &mut &[u8]) {
        let wanted = target.saturating_sub(self.partial.len()).min(input.len());
        let available = std::mem::take(input);
        let (taken, rest) = available.split_at(wanted);
        self.partial.extend_from_slice(taken);
        *input = rest;
    }
}

/// Appends a frame header with a placeholder length; returns the frame's start offset, to be
/// passed to [`end_frame`] once the payload is written after it.
pub(crate) fn begin_frame(out: &mut Vec<u8>, version: u8, msg_type: u8, request_id: u64) -> usize {
    debug_assert!(super::is_supported_version(version), "version {version} is not spoken");
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_FIELD_BYTES]);
    out.push(version);
    out.push(msg_type);
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&request_id.to_le_bytes());
    start
}

/// Patches the length of the frame started at `start`. If the frame is over the maximum it is
/// removed from `out` again, so `out` only ever holds whole, valid frames.
pub(crate) fn end_frame(out: &mut Vec<u8>, start: usize, max_frame_bytes: u32) -> Result<(), EncodeError> {
    let frame_bytes = out.len() - start;
    if frame_bytes > max_frame_bytes as usize {
        out.truncate(start);
        return Err(EncodeError::TooLarge { frame_bytes, max_frame_bytes });
    }
    let length = (frame_bytes - LENGTH_FIELD_BYTES) as u32;
    out[start..start + LENGTH_FIELD_BYTES].copy_from_slice(&length.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_frame(msg_type: u8, request_id: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let start = begin_frame(&mut out, 1, msg_type, request_id);
        out.extend_from_slice(payload);
        end_frame(&mut out, start, DEFAULT_MAX_FRAME_BYTES).unwrap();
        out
    }

    #[test]
    fn header_layout_is_as_documented() {
        let bytes = raw_frame(0x02, 0x0102_0304_0506_0708, &[0xAA, 0xBB]);
        assert_eq!(
            bytes,
            [14, 0, 0, 0, 1, 0x02, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1, 0xAA, 0xBB],
            "length 12 + 2, version 1, type 2, flags 0, request id LE, payload"
        );
    }

    #[test]
    fn whole_frames_are_returned_without_buffering() {
        let mut bytes = raw_frame(1, 5, b"abc");
        bytes.extend(raw_frame(2, 6, b""));
        let mut decoder = FrameDecoder::default();
        let mut input = &bytes[..];
        let first = decoder.decode(&mut input).unwrap().unwrap();
        assert_eq!((first.msg_type, first.request_id, first.payload), (1, 5, &b"abc"[..]));
        assert_eq!(decoder.buffered_bytes(), 0);
        let second = decoder.decode(&mut input).unwrap().unwrap();
        assert_eq!((second.msg_type, second.request_id, second.payload), (2, 6, &b""[..]));
        assert!(input.is_empty());
        assert_eq!(decoder.decode(&mut input), Ok(None));
        assert_eq!(decoder.finish(), Ok(()));
    }

    #[test]
    fn the_length_is_checked_before_the_frame_is_buffered() {
        let mut decoder = FrameDecoder::new(MIN_MAX_FRAME_BYTES);
        let mut input = &(MIN_MAX_FRAME_BYTES - 3).to_le_bytes()[..];
        let error = decoder.decode(&mut input).unwrap_err();
        assert_eq!(error, FrameError::TooLarge { frame_bytes: 1025, max_frame_bytes: 1024 });
        assert_eq!(decoder.decode(&mut &[0u8; 8][..]), Err(error), "framing stays lost");

        let mut decoder = FrameDecoder::default();
        let mut input = &(MIN_MAX_FRAME_BYTES - 4).to_le_bytes()[..];
        assert_eq!(decoder.decode(&mut input), Ok(None), "exactly the maximum is fine");
        assert_eq!(decoder.buffered_bytes(), 4);
        assert_eq!(decoder.finish(), Err(FrameError::TruncatedAtClose { buffered_bytes: 4 }));
    }

    #[test]
    fn lengths_shorter_than_the_header_are_framing_errors() {
        for length in 0..HEADER_AFTER_LENGTH_BYTES as u32 {
            let mut decoder = FrameDecoder::default();
            let mut input = &length.to_le_bytes()[..];
            assert_eq!(decoder.decode(&mut input), Err(FrameError::LengthTooShort { length, min: 12 }));
        }
    }

    #[test]
    fn an_oversized_encoded_frame_is_removed_from_the_output() {
        let mut out = vec![9];
        let start = begin_frame(&mut out, 1, 1, 1);
        out.resize(start + 2000, 0);
        assert_eq!(
            end_frame(&mut out, start, 1024),
            Err(EncodeError::TooLarge { frame_bytes: 2000, max_frame_bytes: 1024 })
        );
        assert_eq!(out, [9]);
    }
}
