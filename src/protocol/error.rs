//! Error types of the protocol and the gateway's reason codes.
//!
//! Two classes matter to a connection:
//! - [`FrameError`]: framing is lost (the byte stream can no longer be cut into frames). The
//!   connection must be closed with [`FrameError::close_code`].
//! - [`MessageError`]: one frame was cut correctly but its content is unusable. The frame is
//!   answered with an `Error` frame for its `request_id` and the connection goes on, unless
//!   [`MessageError::closes_connection`] says otherwise (an unsupported protocol version).

use crate::codec::CodecError;

/// Reason codes of errors raised by the gateway (never by the engine). They live in 900..=999 so
/// they never clash with `engine::RejectReason` codes (100..=499). Stable: never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
pub enum GatewayError {
    /// A frame or payload does not follow the layout (also: framing lost on a bad length).
    MalformedFrame = 900,
    /// A frame's length exceeds the negotiated maximum; framing is lost.
    FrameTooLarge = 901,
    /// No message of this type exists, or it does not travel in this direction.
    UnknownMessageType = 902,
    /// The frame header or `Hello` names a protocol version the server does not speak.
    UnsupportedVersion = 903,
    /// The first frame of a connection must be `Hello`.
    HelloRequired = 904,
    /// `request_id` 0 on a request (0 is reserved for pushes), a second `Hello`, or an id
    /// already in flight.
    BadRequest = 905,
    /// The principal may not act on or read that account.
    Unauthorized = 910,
    /// Only admin principals may send this command.
    AdminOnly = 911,
    /// The input ring is full; nothing was sequenced, retry later.
    Busy = 920,
    /// The connection's request rate is over its limit; nothing was sequenced.
    RateLimited = 921,
    /// The connection has `max_in_flight` commands without an answer; nothing was sequenced.
    TooManyInFlight = 922,
    /// The server is shutting down; nothing was sequenced.
    ShuttingDown = 930,
    /// A query's subject (account, order, symbol) does not exist or is not visible.
    NotFound = 940,
}

impl GatewayError {
    pub const ALL: [GatewayError; 13] = {
        use GatewayError::*;
        [
            MalformedFrame,
            FrameTooLarge,
            UnknownMessageType,
            UnsupportedVersion,
            HelloRequired,
            BadRequest,
            Unauthorized,
            AdminOnly,
            Busy,
            RateLimited,
            TooManyInFlight,
            ShuttingDown,
            NotFound,
        ]
    };

    pub fn code(self) -> u16 {
        self as u16
    }

    /// Decodes a code; `None` for a code that is not a gateway error.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|e| e.code() == code)
    }

    /// True when the request may succeed if simply sent again later (flow-control refusals).
    pub fn is_retryable(self) -> bool {
        matches!(self, GatewayError::Busy | GatewayError::RateLimited | GatewayError::TooManyInFlight)
    }

    /// A short description, used as the default `Error` message text.
    pub fn description(self) -> &'static str {
        match self {
            GatewayError::MalformedFrame => "malformed frame",
            GatewayError::FrameTooLarge => "frame too large",
            GatewayError::UnknownMessageType => "unknown message type",
            GatewayError::UnsupportedVersion => "unsupported protocol version",
            GatewayError::HelloRequired => "hello required",
            GatewayError::BadRequest => "bad request id or sequence",
            GatewayError::Unauthorized => "unauthorized",
            GatewayError::AdminOnly => "admin only",
            GatewayError::Busy => "busy, retry",
            GatewayError::RateLimited => "rate limited",
            GatewayError::TooManyInFlight => "too many requests in flight",
            GatewayError::ShuttingDown => "shutting down",
            GatewayError::NotFound => "not found",
        }
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.description(), self.code())
    }
}

/// Framing is lost: the stream cannot be cut into frames any more. Close the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length field is smaller than the rest of the header: no frame can be that short.
    #[error("frame length {length} is shorter than the {min} header bytes after it")]
    LengthTooShort { length: u32, min: u32 },
    /// The whole frame (length field included) would exceed the maximum frame size.
    #[error("frame of {frame_bytes} bytes exceeds the maximum of {max_frame_bytes}")]
    TooLarge { frame_bytes: u64, max_frame_bytes: u32 },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({buffered_bytes} bytes buffered)")]
    TruncatedAtClose { buffered_bytes: usize },
}

impl FrameError {
    pub fn gateway_error(&self) -> GatewayError {
        match self {
            FrameError::TooLarge { .. } => GatewayError::FrameTooLarge,
            FrameError::LengthTooShort { .. } | FrameError::TruncatedAtClose { .. } => GatewayError::MalformedFrame,
        }
    }

    /// The QUIC application error code to close the connection with.
    pub fn close_code(&self) -> u64 {
        u64::from(self.gateway_error().code())
    }
}

/// Why a payload could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload ends at byte {at}, {needed} more bytes needed")]
    Truncated { at: usize, needed: usize },
    #[error("{extra} bytes after the end of the message")]
    TrailingBytes { extra: usize },
    #[error("invalid value {value} for field {field}")]
    BadValue { field: &'static str, value: u64 },
    #[error("field {field} has {len} bytes, at most {max} allowed")]
    TooLong { field: &'static str, len: usize, max: usize },
    #[error("field {field} is not UTF-8")]
    BadUtf8 { field: &'static str },
    #[error("command or event payload: {0}")]
    Codec(#[from] CodecError),
    #[error("the list holds an event other than an order report")]
    NotAnOrder,
}

/// One frame's content is unusable; the frame boundaries are intact.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("unsupported protocol version {version}")]
    UnsupportedVersion { version: u8 },
    #[error("reserved flags {flags:#06x} are set")]
    ReservedFlags { flags: u16 },
    #[error("unknown message type {msg_type:#04x}")]
    UnknownType { msg_type: u8 },
    #[error("message type {msg_type:#04x} does not travel in this direction")]
    WrongDirection { msg_type: u8 },
    #[error("message type {msg_type:#04x}: {error}")]
    BadPayload { msg_type: u8, error: PayloadError },
}

impl MessageError {
    pub fn gateway_error(&self) -> GatewayError {
        match self {
            MessageError::UnsupportedVersion { .. } => GatewayError::UnsupportedVersion,
            MessageError::UnknownType { .. } | MessageError::WrongDirection { .. } => GatewayError::UnknownMessageType,
            MessageError::ReservedFlags { .. } | MessageError::BadPayload { .. } => GatewayError::MalformedFrame,
        }
    }

    /// True when the peer speaks another protocol version: nothing else it sends can be
    /// trusted, so after the `Error` frame the connection is closed with this code.
    pub fn closes_connection(&self) -> bool {
        matches!(self, MessageError::UnsupportedVersion { .. })
    }
}

/// A message cannot be encoded within the limits (a server or client bug, not a peer's fault).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("frame of {frame_bytes} bytes exceeds the maximum of {max_frame_bytes}")]
    TooLarge { frame_bytes: usize, max_frame_bytes: u32 },
    #[error("list {field} has {len} items, at most {max} fit its count field")]
    ListTooLong { field: &'static str, len: usize, max: usize },
    #[error("field {field} has {len} bytes, at most {max} allowed")]
    StringTooLong { field: &'static str, len: usize, max: usize },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RejectReason;

    #[test]
    fn codes_round_trip_and_do_not_clash_with_engine_reasons() {
        for e in GatewayError::ALL {
            assert_eq!(GatewayError::from_code(e.code()), Some(e));
            assert!((900..1000).contains(&e.code()), "{e:?}");
            assert_eq!(RejectReason::from_code(e.code()), None);
        }
        for r in RejectReason::ALL {
            assert_eq!(GatewayError::from_code(r.code()), None);
        }
        assert_eq!(GatewayError::from_code(0), None);
        assert_eq!(GatewayError::from_code(999), None);
    }

    #[test]
    fn error_classes_map_to_codes() {
        assert_eq!(FrameError::LengthTooShort { length: 3, min: 12 }.close_code(), 900);
        assert_eq!(FrameError::TooLarge { frame_bytes: 1 << 20, max_frame_bytes: 65536 }.close_code(), 901);
        assert_eq!(MessageError::UnknownType { msg_type: 0x7f }.gateway_error(), GatewayError::UnknownMessageType);
        assert!(MessageError::UnsupportedVersion { version: 2 }.closes_connection());
        assert!(!MessageError::UnknownType { msg_type: 0x7f }.closes_connection());
        assert!(GatewayError::Busy.is_retryable());
        assert!(!GatewayError::Unauthorized.is_retryable());
    }
}
