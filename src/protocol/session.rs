//! The server's view of a connection's handshake (`docs/PROTOCOL.md` §4, §5, §6): which
//! well-formed client message is answered how, before authorization and limits.
//!
//! Pure: the gateway feeds it each decoded message with its request id and does what the
//! returned [`Step`] says.

use super::error::GatewayError;
use super::message::{Message, Welcome};
use super::PROTOCOL_VERSION;

/// What the server does with one well-formed client message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this answer (`Welcome` or `Error`) with the message's request id; the connection
    /// goes on.
    Answer(Message),
    /// Send `Error { error }` with the message's request id, then close the connection with
    /// `error`'s code: the peer cannot be understood.
    Close(GatewayError, &'static str),
    /// A request after the handshake, with a non-zero id: authorize, admit and run it.
    Request(Message),
}

/// Whether `Hello` has been answered with `Welcome`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handshake {
    welcomed: bool,
}

impl Handshake {
    pub fn is_welcomed(&self) -> bool {
        self.welcomed
    }

    /// Whether a frame of `frame_version` may be read on a connection of `connection_version`:
    /// before `Welcome` any version this build speaks (the decoder checks that), after it only
    /// the chosen one (§3, §4). `Some(error)`: answer it, then close the connection.
    pub fn check_frame_version(&self, frame_version: u8, connection_version: u8) -> Option<(GatewayError, String)> {
        (self.welcomed && frame_version != connection_version).then(|| {
            let detail = format!("a version-{frame_version} frame on a version-{connection_version} connection");
            (GatewayError::UnsupportedVersion, detail)
        })
    }

    /// Classifies one message. `welcome` gives the connection's `Welcome` (its version field
    /// is replaced by the chosen version); it is called only for the `Hello` that is accepted.
    pub fn on_message(&mut self, request_id: u64, message: Message, welcome: impl FnOnce() -> Welcome) -> Step {
        if !self.welcomed {
            return self.before_welcome(request_id, message, welcome);
        }
        if request_id == 0 {
            return Step::Answer(Message::error(GatewayError::BadRequest, "request id 0 is reserved for pushes"));
        }
        match message {
            Message::Hello { .. } => Step::Answer(Message::error(GatewayError::BadRequest, "second Hello")),
            request => Step::Request(request),
        }
    }

    fn before_welcome(&mut self, request_id: u64, message: Message, welcome: impl FnOnce() -> Welcome) -> Step {
        let Message::Hello { protocol_version } = message else {
            return Step::Close(GatewayError::HelloRequired, "the first request must be Hello");
        };
        if request_id == 0 {
            // The handshake has not happened: the client may send Hello again.
            return Step::Answer(Message::error(GatewayError::BadRequest, "request id 0 is reserved for pushes"));
        }
        match chosen_version(protocol_version) {
            Some(version) => {
                self.welcomed = true;
                Step::Answer(Message::Welcome(Welcome { protocol_version: version, ..welcome() }))
            }
            None => Step::Close(GatewayError::UnsupportedVersion, "Hello version 0 does not exist"),
        }
    }
}

/// The version of a connection whose client speaks up to `client_highest`: the highest both
/// speak; `None` when there is none (version 0).
pub fn chosen_version(client_highest: u8) -> Option<u8> {
    match client_highest {
        0 => None,
        v => Some(v.min(PROTOCOL_VERSION)),
    }
}
