//! The HTTP/1.1 opening handshake of RFC 6455 (section 4), for both roles.
//!
//! Everything here is sans-I/O: the parsers take the bytes received so far and
//! either ask for more ([`Ok(None)`](Option::None)) or return the parsed head
//! together with the number of bytes it occupied. Bytes after the head already
//! belong to the WebSocket stream (a peer may pipeline its first frame right
//! behind the handshake), so callers must keep them.
//!
//! # Server role
//!
//! [`parse_request`] parses and validates a client's upgrade request
//! (RFC 6455 section 4.2.1) without allocating: header slots live in a
//! [`HeaderStorage`] on the caller's stack and every accessor of the returned
//! [`UpgradeRequest`] borrows from the input. A rejected request yields a
//! [`HandshakeError`] that knows its HTTP status and can write the complete
//! error response ([`HandshakeError::write_response`]). An accepted one is
//! answered with [`write_accept_response`] (or [`UpgradeRequest::write_accept`],
//! which also checks the chosen subprotocol), and an application that refuses
//! the upgrade itself (authentication, rate limiting, ...) answers with
//! [`write_reject_response`].
//!
//! ```
//! use ringws::proto::handshake::{parse_request, HandshakeLimits, HeaderStorage};
//!
//! let request = b"GET /chat?room=1 HTTP/1.1\r\n\
//!     Host: example.com\r\n\
//!     Upgrade: websocket\r\n\
//!     Connection: Upgrade\r\n\
//!     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!     Sec-WebSocket-Version: 13\r\n\r\n";
//! let limits = HandshakeLimits::default();
//! let mut storage = HeaderStorage::new();
//! let mut out = Vec::new();
//! match parse_request(request, &limits, &mut storage) {
//!     Ok(Some((req, consumed))) => {
//!         assert_eq!(consumed, request.len());
//!         assert_eq!(req.path(), "/chat");
//!         assert_eq!(req.query(), Some("room=1"));
//!         req.write_accept(&mut out, None, None, &[]).unwrap();
//!     }
//!     Ok(None) => { /* read more bytes and call again */ }
//!     Err(err) => err.write_response(&mut out),
//! }
//! assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
//! ```
//!
//! # Client role
//!
//! [`ClientHandshake`] builds the request (RFC 6455 section 4.1) with a fresh
//! random key and validates the server's `101 Switching Protocols` answer,
//! including the `Sec-WebSocket-Accept` proof and that the server picked only a
//! subprotocol and extensions the client offered.
//!
//! ```
//! use ringws::proto::handshake::ClientHandshake;
//!
//! let client = ClientHandshake::new("example.com", "/chat")
//!     .unwrap()
//!     .protocols(&["chat"])
//!     .unwrap();
//! let mut request = Vec::new();
//! client.write_request(&mut request);
//! assert!(request.starts_with(b"GET /chat HTTP/1.1\r\n"));
//! // ... send it, then feed the received bytes to `client.parse_response`.
//! ```

mod client;
mod header;
mod server;

pub use client::{ClientHandshake, ClientHandshakeError, ServerAccepted};
pub use header::{ExtensionOffer, ExtensionParam, WriteError, parse_extensions};
pub use server::{
    HandshakeError, HeaderStorage, HttpVersion, RequestHead, UpgradeRequest, extended_connect,
    parse_head, parse_request, write_accept_response, write_reject_response,
};

use base64::Engine as _;
use sha1::{Digest as _, Sha1};
use std::fmt;

/// The GUID appended to the client's key before hashing (RFC 6455 section 1.3).
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this implementation speaks (`Sec-WebSocket-Version`).
pub const WEBSOCKET_VERSION: &str = "13";

/// Hard upper bound on the number of header fields in a handshake head; the
/// size of the header slot arrays. [`HandshakeLimits::max_headers`] is clamped
/// to it.
pub const MAX_HEADERS: usize = 128;

/// Size limits applied while parsing a handshake head (request or response).
///
/// A head that exceeds either limit is rejected; on the server this becomes a
/// `431 Request Header Fields Too Large`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// Maximum size in bytes of the head, from the request or status line up
    /// to and including the blank line. Default 8192.
    pub max_bytes: usize,
    /// Maximum number of header fields. Default 64; values above
    /// [`MAX_HEADERS`] are treated as [`MAX_HEADERS`].
    pub max_headers: usize,
}

impl HandshakeLimits {
    /// The default limits: 8192 bytes and 64 header fields.
    pub const DEFAULT: Self = Self {
        max_bytes: 8192,
        max_headers: 64,
    };

    /// The effective header count limit (`max_headers` clamped to [`MAX_HEADERS`]).
    pub(crate) fn header_slots(&self) -> usize {
        self.max_headers.min(MAX_HEADERS)
    }
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A `Sec-WebSocket-Accept` value: the base64 of the SHA-1 of the client's key
/// followed by [`WEBSOCKET_GUID`]. Always 28 ASCII bytes; no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AcceptKey([u8; 28]);

impl AcceptKey {
    /// The value as text, e.g. `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("base64 output is ASCII")
    }

    /// The value as bytes.
    pub fn as_bytes(&self) -> &[u8; 28] {
        &self.0
    }
}

impl fmt::Debug for AcceptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AcceptKey").field(&self.as_str()).finish()
    }
}

impl fmt::Display for AcceptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for AcceptKey {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// Computes the `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`
/// (RFC 6455 section 4.2.2): `base64(SHA-1(key + GUID))`.
///
/// `key` is the header value as sent (the base64 text, not the decoded nonce).
///
/// ```
/// use ringws::proto::handshake::accept_key;
/// assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ==").as_str(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> AcceptKey {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WEBSOCKET_GUID.as_bytes());
    let digest = sha.finalize();
    let mut out = [0u8; 28];
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(digest, &mut out)
        .expect("28 bytes is the padded base64 length of a 20-byte digest");
    debug_assert_eq!(written, out.len());
    AcceptKey(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_sample_accept_key() {
        let accept = accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(accept.as_str(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(accept.to_string(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(accept.as_bytes(), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn default_limits() {
        let limits = HandshakeLimits::default();
        assert_eq!(limits.max_bytes, 8192);
        assert_eq!(limits.max_headers, 64);
        let big = HandshakeLimits {
            max_headers: 10_000,
            ..limits
        };
        assert_eq!(big.header_slots(), MAX_HEADERS);
    }
}
