//! The values that pass between the application and the engine: connection
//! ids, received messages, send outcomes, close causes, upgrade answers, rate
//! limits, plain HTTP requests and responses, prepared messages. Nothing here
//! refers to the runtime, so every layer may use them.

use std::fmt;

use bytes::Bytes;

use crate::proto::error::ProtocolError;
use crate::proto::frame::{OpCode, encode_header};
use crate::proto::handshake::RequestHead;

/// A WebSocket's identity: it names the stream, not the socket under it (over
/// HTTP/1.1 one socket carries one stream). Its worker, the stream's slot in
/// that worker's slab and a generation, so an id held by a
/// [`crate::ServerHandle`] never reaches a later WebSocket in the same slot.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    pub(crate) fn new(worker: usize, key: usize, generation: u32) -> Self {
        Self(((worker as u64) << 56) | ((key as u64 & 0xff_ffff) << 32) | u64::from(generation))
    }
    pub(crate) fn worker(self) -> usize {
        (self.0 >> 56) as usize
    }
    pub(crate) fn key(self) -> usize {
        ((self.0 >> 32) & 0xff_ffff) as usize
    }
    pub(crate) fn generation(self) -> u32 {
        self.0 as u32
    }
    /// The id as one number (for logs and maps).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ConnId({}:{}:{})",
            self.worker(),
            self.key(),
            self.generation()
        )
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.worker(), self.key(), self.generation())
    }
}

/// A received message, borrowed from the receive buffer: valid for the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message, validated UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }
    pub(crate) fn opcode(&self) -> OpCode {
        match self {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
        }
    }
}

/// What a send did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued; it goes out at the end of this loop turn.
    Sent,
    /// Queued, but the socket is not keeping up (bytes of earlier sends are
    /// still waiting for it): slow down until [`crate::Handler::on_drain`]. A send that
    /// would pass [`crate::Config::max_backpressure`] is `Dropped` instead.
    Backpressure,
    /// Not sent: the connection is closing, or the backpressure policy dropped it.
    Dropped,
}

/// Why a connection ended; given to [`crate::Handler::on_close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// The peer sent a close frame.
    Peer,
    /// This side called [`crate::WebSocket::close`] (or [`crate::ServerHandle::close`]) and the
    /// peer answered or the close timeout passed.
    Local,
    /// The peer broke the protocol; it was sent the error's close code.
    Protocol(ProtocolError),
    /// No frame arrived within the idle timeout or the pong deadline.
    Timeout,
    /// The send queue passed its limit under [`crate::BackpressurePolicy::Close`].
    Backpressure,
    /// The server shut down.
    Shutdown,
    /// [`crate::WebSocket::terminate`] aborted the connection.
    Terminated,
    /// The TCP connection ended (or failed) without a close frame. Over TLS, a
    /// close_notify without a close frame ends the stream the same way.
    Reset,
    /// The peer passed its rate limit under [`crate::RateLimitPolicy::Close`]
    /// (close code 1008).
    RateLimit,
    /// The TLS layer failed (see [`TlsError`]); an alert was sent where TLS has one.
    Tls(TlsError),
}

/// A token bucket: `per_second` tokens come back each second, and at most
/// `burst` are kept, so a quiet connection may then spend `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    /// Tokens returned per second.
    pub per_second: u64,
    /// Most tokens kept (and the number a new connection starts with).
    pub burst: u64,
}

/// What happens to a connection past its [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateLimitPolicy {
    /// Stop reading its socket until the tokens are back: TCP pushes back on
    /// the client and nothing it sent is lost. What was already read is still
    /// delivered (at most one turn's reads), and repaid before reading resumes.
    #[default]
    Pause,
    /// Close it with 1008 (policy violation); the message past the limit and
    /// every later one are discarded.
    Close,
}

/// A per-connection limit on what the peer sends: messages per second and
/// bytes per second (as read from the socket), each a [`TokenBucket`]. The
/// default limits nothing.
///
/// ```
/// use ringws::{RateLimit, RateLimitPolicy};
/// let limit = RateLimit::none()
///     .messages(100, 20)
///     .bytes(1 << 20, 4 << 20)
///     .policy(RateLimitPolicy::Close);
/// assert!(!limit.is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimit {
    /// Messages received (data messages, not control frames).
    pub messages: Option<TokenBucket>,
    /// Bytes read from the socket.
    pub bytes: Option<TokenBucket>,
    /// Past either limit.
    pub policy: RateLimitPolicy,
}

impl RateLimit {
    /// No limit.
    pub const fn none() -> Self {
        Self {
            messages: None,
            bytes: None,
            policy: RateLimitPolicy::Pause,
        }
    }

    /// Limits messages to `per_second`, with a burst of `burst`.
    pub const fn messages(mut self, per_second: u64, burst: u64) -> Self {
        self.messages = Some(TokenBucket { per_second, burst });
        self
    }

    /// Limits bytes to `per_second`, with a burst of `burst`.
    pub const fn bytes(mut self, per_second: u64, burst: u64) -> Self {
        self.bytes = Some(TokenBucket { per_second, burst });
        self
    }

    /// What to do past the limit.
    pub const fn policy(mut self, policy: RateLimitPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// True if it limits nothing.
    pub const fn is_none(&self) -> bool {
        self.messages.is_none() && self.bytes.is_none()
    }

    /// Every bucket needs a positive rate and burst.
    pub(crate) fn is_valid(&self) -> bool {
        [self.messages, self.bytes].into_iter().flatten().all(|b| {
            b.per_second > 0 && b.burst > 0 && b.per_second <= 1 << 40 && b.burst <= 1 << 40
        })
    }
}

/// Why the TLS layer of a connection failed: [`CloseCause::Tls`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The first bytes were not a TLS record: a plain HTTP or WebSocket request
    /// on a TLS port (answered with a plain-text 400), or other bytes.
    #[error("not TLS: plain bytes on a TLS port")]
    NotTls,
    /// The handshake failed: a malformed or unacceptable ClientHello, no common
    /// version or cipher suite, no certificate for the name asked, or an alert
    /// from the peer.
    #[error("TLS handshake failed")]
    Handshake,
    /// After the handshake, a record that is malformed, too long, or fails to
    /// decrypt.
    #[error("bad TLS record")]
    Record,
    /// The byte stream ended inside a TLS record.
    #[error("stream ended inside a TLS record")]
    Truncated,
    /// A TLS 1.2 key came near its record limit (AES-GCM's confidentiality
    /// bound; TLS 1.2 has no key update): the connection was closed with 1001
    /// and close_notify.
    #[error("TLS 1.2 key at its record limit")]
    KeyLimit,
}

/// The answer of [`crate::Handler::on_upgrade`].
#[derive(Debug)]
pub enum Upgrade<U> {
    /// Accept the WebSocket connection.
    Accept {
        /// The connection's user data, available in every callback.
        data: U,
        /// The subprotocol chosen among those the client offered.
        protocol: Option<String>,
        /// Extra response headers.
        headers: Vec<(String, String)>,
        /// This connection's rate limit; `None` keeps the server's
        /// ([`crate::Config::rate_limit`]).
        rate_limit: Option<RateLimit>,
    },
    /// Refuse it with an HTTP response (e.g. 401 or 403).
    Reject(HttpResponse),
    /// Decide later, on any thread: [`crate::Handler::on_upgrade_deferred`]
    /// gets a [`crate::PendingUpgrade`] to complete (see [`Upgrade::defer`]).
    Defer,
}

impl<U> Upgrade<U> {
    /// Accept with this user data.
    pub fn accept(data: U) -> Self {
        Upgrade::Accept {
            data,
            protocol: None,
            headers: Vec::new(),
            rate_limit: None,
        }
    }

    /// Gives this connection its own rate limit instead of the server's
    /// ([`RateLimit::none`] lifts it).
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        if let Upgrade::Accept { rate_limit, .. } = &mut self {
            *rate_limit = Some(limit);
        }
        self
    }

    /// Refuse with this status and a short text body.
    pub fn reject(status: u16, body: &str) -> Self {
        Upgrade::Reject(HttpResponse::text(status, body))
    }

    /// Decide later: the request is kept (the connection stays in its HTTP
    /// phase, its handshake timeout running) and
    /// [`crate::Handler::on_upgrade_deferred`] gets a
    /// [`crate::PendingUpgrade`], `Send`, with an owned copy of the request,
    /// which any thread completes with `accept`, `complete` or `reject`. At
    /// most [`crate::Config::max_pending_upgrades`] per worker; past it the
    /// request is answered 503.
    pub fn defer() -> Self {
        Upgrade::Defer
    }

    /// Choose a subprotocol (it must be one the client offered, or the handshake
    /// fails with 500).
    pub fn protocol(mut self, name: &str) -> Self {
        if let Upgrade::Accept { protocol, .. } = &mut self {
            *protocol = Some(name.to_owned());
        }
        self
    }

    /// Add a header to the response.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match &mut self {
            Upgrade::Accept { headers, .. } => headers.push((name.to_owned(), value.to_owned())),
            Upgrade::Reject(response) => response.headers.push((name.to_owned(), value.to_owned())),
            Upgrade::Defer => {}
        }
        self
    }
}

/// A plain HTTP response: for a refused upgrade or a route of [`crate::Handler::on_http`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code, 200-599.
    pub status: u16,
    /// Headers besides Connection and Content-Length, which are written for you.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A `text/plain` response.
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

/// A plain HTTP request (no upgrade), for [`crate::Handler::on_http`].
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    pub(crate) headers: &'a [httparse::Header<'a>],
}

impl<'a> HttpRequest<'a> {
    /// The request of a parsed head.
    pub(crate) fn new(head: &RequestHead<'a>) -> Self {
        Self::from_parts(head.method(), head.target(), head.headers())
    }

    /// A request from its method, target (path and query) and fields (over
    /// HTTP/2: its `:method`, `:path`, and its fields with `host` from
    /// `:authority`).
    pub(crate) fn from_parts(
        method: &'a str,
        target: &'a str,
        headers: &'a [httparse::Header<'a>],
    ) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        Self {
            method,
            path,
            query,
            headers,
        }
    }

    /// The first header of this name (case-insensitive), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    }
}

/// A message encoded once into a frame and shareable among many connections
/// without copying (a reference count per send).
#[derive(Debug, Clone)]
pub struct PreparedMessage {
    pub(crate) frame: Bytes,
    /// Kept so that a connection which compresses reads the payload from here
    /// instead of decoding the frame back.
    pub(crate) opcode: OpCode,
    pub(crate) header_len: u8,
}

impl PreparedMessage {
    /// A prepared text message.
    pub fn text(text: &str) -> Self {
        Self::new(Message::Text(text))
    }
    /// A prepared binary message.
    pub fn binary(data: &[u8]) -> Self {
        Self::new(Message::Binary(data))
    }
    /// Encodes `message` into one server frame.
    pub fn new(message: Message<'_>) -> Self {
        let payload = message.as_bytes();
        let header = encode_header(true, 0, message.opcode(), None, payload.len() as u64);
        let mut frame = Vec::with_capacity(header.as_bytes().len() + payload.len());
        frame.extend_from_slice(header.as_bytes());
        frame.extend_from_slice(payload);
        Self {
            frame: frame.into(),
            opcode: message.opcode(),
            header_len: header.as_bytes().len() as u8,
        }
    }
    /// The message's payload (after the frame header).
    pub fn payload(&self) -> &[u8] {
        &self.frame[usize::from(self.header_len)..]
    }
    /// Text or binary.
    pub fn opcode(&self) -> OpCode {
        self.opcode
    }
    /// Size of the encoded frame in bytes.
    pub fn frame_len(&self) -> usize {
        self.frame.len()
    }
}
