//! Close codes (RFC 6455 section 7.4) and the close frame payload.

use std::fmt;

/// A close status code as carried in a close frame.
///
/// Which codes a peer may *send* is decided by [`CloseCode::is_valid_on_wire`]; the
/// constants name the ones with a registered meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a data type the endpoint cannot accept (e.g. binary only).
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: reserved; stands for "no code was present", never sent.
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: reserved; stands for "closed without a close frame", never sent.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: payload inconsistent with its type (invalid UTF-8 in a text message).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message violates the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message is too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting (IANA registry).
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway received an invalid response (IANA registry).
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: reserved; stands for "TLS handshake failed", never sent.
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// Whether a peer may put this code in a close frame.
    ///
    /// Accepted: 1000-1003, 1007-1011, the IANA-registered 1012-1014, and the
    /// application ranges 3000-4999. Rejected (close with 1002): below 1000, the
    /// reserved 1004-1006 and 1015, the unassigned 1016-2999, and 5000 and above.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Longest close reason that fits a control frame: 125 bytes minus the 2-byte code.
pub const MAX_CLOSE_REASON: usize = 123;

/// Writes a close frame payload (code, then reason) into `out` and returns its length.
///
/// The reason is cut at a character boundary to fit [`MAX_CLOSE_REASON`], so the
/// payload always fits a control frame and stays valid UTF-8.
pub fn encode_close_payload(code: CloseCode, reason: &str, out: &mut [u8; 125]) -> usize {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out[..2].copy_from_slice(&code.0.to_be_bytes());
    out[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    2 + end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity_follows_rfc_ranges() {
        let valid: Vec<u16> = (0..=u16::MAX)
            .filter(|&c| CloseCode(c).is_valid_on_wire())
            .collect();
        let expected: Vec<u16> = (1000..=1003)
            .chain(1007..=1014)
            .chain(3000..=4999)
            .collect();
        assert_eq!(valid, expected);
        for reserved in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!CloseCode(reserved).is_valid_on_wire(), "{reserved}");
        }
    }

    #[test]
    fn close_payload_truncates_reason_on_char_boundary() {
        let mut out = [0u8; 125];
        let reason = "é".repeat(100); // 200 bytes
        let n = encode_close_payload(CloseCode::GOING_AWAY, &reason, &mut out);
        assert!(n <= 125);
        assert_eq!(&out[..2], &1001u16.to_be_bytes());
        assert!(std::str::from_utf8(&out[2..n]).is_ok());
        assert_eq!(n, 2 + 122);
    }

    #[test]
    fn close_payload_keeps_short_reason() {
        let mut out = [0u8; 125];
        let n = encode_close_payload(CloseCode::NORMAL, "bye", &mut out);
        assert_eq!(&out[..n], b"\x03\xe8bye");
    }
}
