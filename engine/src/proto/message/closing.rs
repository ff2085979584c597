//! The close handshake of one connection (RFC 6455 section 7.1.2-7.1.3) and
//! close frames' payloads: parsed from the wire, and built on the stack.

use super::CloseFrame;
use crate::proto::close::{self, CloseCode};
use crate::proto::error::ProtocolError;
use crate::proto::{frame, utf8};

/// Parses a close frame's payload: nothing, or a valid code and a UTF-8 reason.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame<'_>>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::InvalidClosePayload),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            let reason = utf8::validate(reason).map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

/// The close handshake of one connection (RFC 6455 section 7): who sent a close
/// frame, what to answer, and whether data may still be sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CloseHandshake {
    sent: bool,
    received: bool,
}

impl CloseHandshake {
    /// Both sides open.
    pub const fn new() -> Self {
        Self {
            sent: false,
            received: false,
        }
    }

    /// We start closing: returns the close frame payload to send (code and
    /// reason), or `None` if a close frame was already sent.
    pub fn initiate(&mut self, code: CloseCode, reason: &str) -> Option<ClosePayload> {
        if self.sent {
            return None;
        }
        self.sent = true;
        Some(ClosePayload::new(code, reason))
    }

    /// The peer's close frame arrived: returns the reply to send, mirroring its
    /// code and reason (an empty close is answered with an empty close), or
    /// `None` if we already sent ours, in which case the handshake is complete.
    pub fn receive(&mut self, frame: Option<CloseFrame<'_>>) -> Option<ClosePayload> {
        self.received = true;
        if self.sent {
            return None;
        }
        self.sent = true;
        Some(match frame {
            Some(close) => ClosePayload::new(close.code, close.reason),
            None => ClosePayload::empty(),
        })
    }

    /// Whether data frames may still be sent: not after our close frame.
    pub fn can_send_data(&self) -> bool {
        !self.sent
    }

    /// Whether we sent a close frame.
    pub fn close_sent(&self) -> bool {
        self.sent
    }

    /// Whether the peer's close frame arrived.
    pub fn close_received(&self) -> bool {
        self.received
    }

    /// Both close frames exchanged: the TCP connection may be closed (the server
    /// closes first, section 7.1.1).
    pub fn is_complete(&self) -> bool {
        self.sent && self.received
    }
}

/// A close frame payload on the stack: a code and a reason of at most 123 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClosePayload {
    bytes: [u8; frame::MAX_CONTROL_PAYLOAD],
    len: u8,
}

impl ClosePayload {
    /// Code and reason; the reason is cut at a character boundary to fit.
    pub fn new(code: CloseCode, reason: &str) -> Self {
        let mut bytes = [0u8; frame::MAX_CONTROL_PAYLOAD];
        let len = close::encode_close_payload(code, reason, &mut bytes);
        Self {
            bytes,
            len: len as u8,
        }
    }

    /// A close frame without a status code.
    pub const fn empty() -> Self {
        Self {
            bytes: [0; frame::MAX_CONTROL_PAYLOAD],
            len: 0,
        }
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for ClosePayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match parse_close_payload(self.as_bytes()) {
            Ok(Some(close)) => write!(f, "ClosePayload({}, {:?})", close.code, close.reason),
            _ => write!(f, "ClosePayload({:?})", self.as_bytes()),
        }
    }
}
