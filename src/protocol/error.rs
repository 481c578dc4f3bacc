//! Error types of the protocol and the gateway's reason codes.
//!
//! Two classes matter to a connection:
//! - [`FrameError`]: framing is lost (the byte stream can no longer be cut into frames). The
//!   connection must be closed with [`FrameError::close_code`].
//! - [`MessageError`]: one frame was cut correctly but its content is unusable. The frame is
//!   answered with an `Error` frame for its `request_id` and the connection goes on, unless
//!   [`MessageError::closes_connection`] says otherwise (an unsupported protocol version).

use crate::wire::codec::CodecError;

/// Declares `GatewayError` with its codes and descriptions, and `GatewayError::ALL` from the
/// same list, so a variant cannot be added without being in `ALL` (and without a description).
macro_rules! gateway_errors {
    ($($(#[$vmeta:meta])* $variant:ident = $code:literal => $description:literal,)+) => {
        /// Reason codes of errors raised by the gateway (never by the engine). They live in
        /// 900..=999 so they never clash with `engine::RejectReason` codes (100..=499). Stable:
        /// never reused.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u16)]
        pub enum GatewayError { $($(#[$vmeta])* $variant = $code,)+ }

        impl GatewayError {
            /// Every gateway error, in code order (generated with the enum, so it cannot miss one).
            pub const ALL: [GatewayError; [$($code),+].len()] = [$(GatewayError::$variant),+];

            /// A short description, used as the default `Error` message text.
            pub fn description(self) -> &'static str {
                match self { $(GatewayError::$variant => $description,)+ }
            }
        }
    };
}

gateway_errors! {
    /// A frame or payload does not follow the layout (also: framing lost on a bad length).
    MalformedFrame = 900 => "malformed frame",
    /// A frame's length exceeds the negotiated maximum; framing is lost.
    FrameTooLarge = 901 => "frame too large",
    /// No message of this type exists, or it does not travel in this direction.
    UnknownMessageType = 902 => "unknown message type",
    /// The frame header or `Hello` names a protocol version the server does not speak.
    UnsupportedVersion = 903 => "unsupported protocol version",
    /// The first frame of a connection must be `Hello`.
    HelloRequired = 904 => "hello required",
    /// `request_id` 0 on a request (0 is reserved for pushes), a second `Hello`, or an id
    /// already in flight.
    BadRequest = 905 => "bad request id or sequence",
    /// The principal may not act on or read that account.
    Unauthorized = 910 => "unauthorized",
    /// Only admin principals may send this command.
    AdminOnly = 911 => "admin only",
    /// The input ring is full; nothing was sequenced, retry later.
    Busy = 920 => "busy, retry",
    /// The connection's request rate is over its limit; nothing was sequenced.
    RateLimited = 921 => "rate limited",
    /// The connection has `max_in_flight` commands without an answer; nothing was sequenced.
    TooManyInFlight = 922 => "too many requests in flight",
    /// The server is shutting down; nothing was sequenced.
    ShuttingDown = 930 => "shutting down",
    /// A cluster node that is not the leader (§17): the message names the leader's address.
    NotLeader = 931 => "not the leader",
    /// A query's subject (account, order, symbol) does not exist or is not visible.
    NotFound = 940 => "not found",
}

impl GatewayError {
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
        let codes: Vec<u16> = GatewayError::ALL.iter().map(|e| e.code()).collect();
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "codes are unique and listed in order");
        assert_eq!(codes.len(), 14);
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
