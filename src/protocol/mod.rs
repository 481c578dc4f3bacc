//! The binary client protocol, as a pure codec and state machines: no I/O, no clock, no
//! async runtime. The QUIC gateway feeds it bytes and the time; tests feed it the same without
//! a socket. The wire format is specified in `docs/PROTOCOL.md`.
//!
//! - [`frame`]: the frame header and [`FrameDecoder`], which cuts a byte stream into frames.
//! - [`message`]: [`Message`], every message type with its fixed little-endian payload.
//!   Command payloads and event lists are `codec`'s, byte for byte (`journal/FORMAT.md` §10).
//! - [`encode_frame`], [`encode_frames`]: writing messages, splitting long lists over frames.
//! - [`error`]: [`GatewayError`] reason codes (900..=999) and the error classes: a
//!   [`FrameError`] loses framing (close the connection), a [`MessageError`] spoils one frame
//!   (answer it with `Error` and go on).
//! - [`limits`]: [`ConnectionLimits`], the per-connection rate and in-flight limits.
//! - [`session`]: [`Handshake`], how the server answers `Hello` and what comes before it.
//! - [`authority`]: [`Authority`], which grants a request needs.
//! - [`book`]: [`L2Book`], a subscriber's copy of a symbol's book from market data (§12).
//! - `fuzz_check`: the fuzz target's checks, shared with the corpus test that CI runs.
//!
//! A server reads a connection like this:
//!
//! ```
//! use seqd::protocol::*;
//!
//! fn on_bytes(decoder: &mut FrameDecoder, mut chunk: &[u8], out: &mut Vec<u8>) -> Result<(), u64> {
//!     let max = decoder.max_frame_bytes();
//!     loop {
//!         let frame = match decoder.decode(&mut chunk) {
//!             Ok(Some(frame)) => frame,
//!             Ok(None) => return Ok(()),
//!             Err(lost) => return Err(lost.close_code()), // close the connection with this code
//!         };
//!         let request_id = frame.request_id;
//!         match Message::decode_from_client(&frame) {
//!             Ok(Message::Ping) => encode_frame(request_id, &Message::Pong, max, out).unwrap(),
//!             Ok(_other) => { /* authorize, admit, publish or answer */ }
//!             Err(bad) => {
//!                 let error = Message::error(bad.gateway_error(), &bad.to_string());
//!                 encode_frame(request_id, &error, max, out).unwrap();
//!                 if bad.closes_connection() {
//!                     return Err(u64::from(bad.gateway_error().code()));
//!                 }
//!             }
//!         }
//!     }
//! }
//!
//! let mut hello = Vec::new();
//! encode_frame(1, &Message::Ping, DEFAULT_MAX_FRAME_BYTES, &mut hello).unwrap();
//! let (mut decoder, mut out) = (FrameDecoder::default(), Vec::new());
//! for byte in hello.chunks(1) {
//!     on_bytes(&mut decoder, byte, &mut out).unwrap(); // frames may arrive a byte at a time
//! }
//! assert_eq!(out.len(), HEADER_BYTES); // one Pong frame
//! ```

pub mod authority;
pub mod book;
pub mod encode;
pub mod error;
pub mod frame;
#[doc(hidden)]
pub mod fuzz_check;
pub mod limits;
pub mod message;
pub mod session;
mod wire;

pub use authority::Authority;
pub use book::{BookEvent, L2Book};
pub use encode::{encode_frame, encode_frame_as, encode_frames, encode_frames_as};
pub use error::{EncodeError, FrameError, GatewayError, MessageError, PayloadError};
pub use frame::{Frame, FrameDecoder, DEFAULT_MAX_FRAME_BYTES, HEADER_BYTES, MIN_MAX_FRAME_BYTES};
pub use limits::{ConnectionLimits, LimitsConfig, TokenBucket};
pub use message::{
    msg_type, AssetTotal, DepthBook, DepthUpdate, Direction, MarketTrade, Message, Welcome, MAX_ERROR_MESSAGE_BYTES,
    MAX_PRINCIPAL_BYTES,
};
pub use session::{chosen_version, Handshake, Step};

/// The highest protocol version this build speaks (the `version` byte of every frame header
/// after the handshake, when both sides speak it). PROTOCOL.md §4 lists what each adds.
pub const PROTOCOL_VERSION: u8 = 2;

/// The lowest protocol version this build still serves: a version-1 client gets order reports
/// without `stop_price` (an 82-byte body), as version 1 defines them.
pub const PROTOCOL_VERSION_MIN: u8 = 1;

/// Whether a frame of `version` can be read by this build.
pub fn is_supported_version(version: u8) -> bool {
    (PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION).contains(&version)
}

/// QUIC application close code for an orderly close (the others are `GatewayError` codes).
pub const CLOSE_NORMAL: u64 = 0;
