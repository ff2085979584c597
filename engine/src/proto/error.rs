//! The one error type of the frame and message layers: each variant names a
//! precise violation and maps to the close code the peer is sent.

use super::close::CloseCode;

/// A violation of RFC 6455 (or of a configured limit) by the peer.
///
/// Every variant maps to the close code of RFC 6455 section 7.4 through
/// [`ProtocolError::close_code`]; its `Display` text is a short reason fit for the
/// close frame (always under 123 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Opcodes 0x3-0x7 and 0xB-0xF are reserved.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// RSV1-3 set while no negotiated extension gives them a meaning.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// A client sent a frame without a mask (section 5.1).
    #[error("client frame not masked")]
    UnmaskedFrame,
    /// A server sent a masked frame (section 5.1).
    #[error("server frame masked")]
    MaskedFrame,
    /// Control frames carry at most 125 bytes (section 5.5).
    #[error("control frame longer than 125 bytes")]
    ControlFrameTooLong,
    /// Control frames must not be fragmented (section 5.5).
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// The most significant bit of a 64-bit length must be 0 (section 5.2).
    #[error("frame length with the top bit set")]
    InvalidLength,
    /// A frame longer than the configured maximum frame size.
    #[error("frame too big")]
    FrameTooBig,
    /// A message longer than the configured maximum message size (fragment
    /// overhead included).
    #[error("message too big")]
    MessageTooBig,
    /// A continuation frame with no fragmented message to continue.
    #[error("continuation frame without a message")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is incomplete.
    #[error("new message inside a fragmented message")]
    ExpectedContinuation,
    /// A text message (or fragment) that is not valid UTF-8.
    #[error("invalid UTF-8 in text message")]
    InvalidUtf8,
    /// A close frame with a 1-byte payload: a code needs two.
    #[error("close frame with a 1-byte payload")]
    InvalidClosePayload,
    /// A close code peers must not send.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// The reason of a close frame is not valid UTF-8.
    #[error("invalid UTF-8 in close reason")]
    InvalidCloseReason,
    /// A compressed message (permessage-deflate) that does not inflate.
    #[error("invalid compressed data")]
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code to send to the peer for this violation.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::InvalidCloseReason | Self::InvalidCompressedData => {
                CloseCode::INVALID_PAYLOAD
            }
            Self::FrameTooBig | Self::MessageTooBig => CloseCode::MESSAGE_TOO_BIG,
            Self::ReservedOpcode(_)
            | Self::ReservedBits
            | Self::UnmaskedFrame
            | Self::MaskedFrame
            | Self::ControlFrameTooLong
            | Self::FragmentedControlFrame
            | Self::InvalidLength
            | Self::UnexpectedContinuation
            | Self::ExpectedContinuation
            | Self::InvalidClosePayload
            | Self::InvalidCloseCode(_) => CloseCode::PROTOCOL_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_follow_section_7_4() {
        assert_eq!(ProtocolError::InvalidUtf8.close_code(), CloseCode(1007));
        assert_eq!(
            ProtocolError::InvalidCloseReason.close_code(),
            CloseCode(1007)
        );
        assert_eq!(ProtocolError::MessageTooBig.close_code(), CloseCode(1009));
        assert_eq!(ProtocolError::FrameTooBig.close_code(), CloseCode(1009));
        assert_eq!(
            ProtocolError::ReservedOpcode(3).close_code(),
            CloseCode(1002)
        );
        assert_eq!(
            ProtocolError::InvalidCloseCode(1005).close_code(),
            CloseCode(1002)
        );
    }

    #[test]
    fn reasons_fit_a_close_frame() {
        let all = [
            ProtocolError::ReservedOpcode(0xf),
            ProtocolError::ReservedBits,
            ProtocolError::UnmaskedFrame,
            ProtocolError::MaskedFrame,
            ProtocolError::ControlFrameTooLong,
            ProtocolError::FragmentedControlFrame,
            ProtocolError::InvalidLength,
            ProtocolError::FrameTooBig,
            ProtocolError::MessageTooBig,
            ProtocolError::UnexpectedContinuation,
            ProtocolError::ExpectedContinuation,
            ProtocolError::InvalidUtf8,
            ProtocolError::InvalidClosePayload,
            ProtocolError::InvalidCloseCode(65535),
            ProtocolError::InvalidCloseReason,
            ProtocolError::InvalidCompressedData,
        ];
        for e in all {
            let text = e.to_string();
            assert!(!text.is_empty() && text.len() <= super::super::close::MAX_CLOSE_REASON);
        }
    }
}
