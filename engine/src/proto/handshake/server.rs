//! Server role: parsing and validating the client's upgrade request
//! (RFC 6455 section 4.2.1) and writing the answer (section 4.2.2).

use std::fmt::{self, Write as _};
use std::mem::MaybeUninit;

use base64::Engine as _;

use super::header::{
    self, CountingWriter, ExtensionOffer, VecWriter, WriteError, has_token, list_items,
    push_decimal, push_header, push_status_line, str_values, trim_ows,
};
use super::{HandshakeLimits, MAX_HEADERS, WEBSOCKET_VERSION, accept_key};

/// Caller-provided slots for the header fields of one request.
///
/// [`parse_request`] records the headers it finds here instead of allocating;
/// the returned [`UpgradeRequest`] borrows them. Creating one is free (the
/// slots start uninitialised), so make a fresh one for every parse attempt:
///
/// ```
/// # use ringws::proto::handshake::{parse_request, HandshakeLimits, HeaderStorage};
/// # let buf = b"GET / HTTP/1.1\r\n";
/// let mut storage = HeaderStorage::new();
/// let parsed = parse_request(buf, &HandshakeLimits::default(), &mut storage);
/// assert!(matches!(parsed, Ok(None)));
/// ```
pub struct HeaderStorage<'a> {
    slots: [MaybeUninit<httparse::Header<'a>>; MAX_HEADERS],
}

impl HeaderStorage<'_> {
    /// Empty storage for up to [`MAX_HEADERS`] header fields.
    pub const fn new() -> Self {
        Self {
            slots: [MaybeUninit::uninit(); MAX_HEADERS],
        }
    }
}

impl Default for HeaderStorage<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HeaderStorage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderStorage").finish_non_exhaustive()
    }
}

/// Why an upgrade request was refused. Each variant maps to an HTTP status
/// ([`status`](Self::status)) and can write the complete response
/// ([`write_response`](Self::write_response)); its `Display` text is the short
/// reason sent as the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head is not complete within [`HandshakeLimits::max_bytes`]. 431.
    #[error("request header fields too large")]
    HeadTooLarge,
    /// More header fields than [`HandshakeLimits::max_headers`]. 431.
    #[error("too many request header fields")]
    TooManyHeaders,
    /// Not a syntactically valid HTTP/1.x request head. 400.
    #[error("malformed HTTP request")]
    Malformed,
    /// The method is not `GET`. 405, with `Allow: GET`.
    #[error("method not allowed: the WebSocket handshake is a GET request")]
    MethodNotAllowed,
    /// HTTP/1.0: the handshake needs HTTP/1.1 or later. 400.
    #[error("HTTP/1.1 or later required")]
    HttpVersion,
    /// No `Host` header. 400.
    #[error("missing Host header")]
    MissingHost,
    /// More than one `Host` header. 400.
    #[error("duplicate Host header")]
    DuplicateHost,
    /// No `Upgrade` header containing `websocket`: not a WebSocket request.
    /// 426, with `Upgrade: websocket` and `Sec-WebSocket-Version: 13`.
    #[error("upgrade required: this is a WebSocket endpoint")]
    UpgradeRequired,
    /// The `Connection` header is missing or lacks the `Upgrade` option. 400.
    #[error("the Connection header must contain \"Upgrade\"")]
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Key` header. 400.
    #[error("missing Sec-WebSocket-Key header")]
    MissingKey,
    /// More than one `Sec-WebSocket-Key` header. 400.
    #[error("duplicate Sec-WebSocket-Key header")]
    DuplicateKey,
    /// `Sec-WebSocket-Key` is not the base64 encoding of exactly 16 bytes. 400.
    #[error("Sec-WebSocket-Key must be the base64 encoding of 16 bytes")]
    InvalidKey,
    /// No `Sec-WebSocket-Version` header. 426, with `Sec-WebSocket-Version: 13`.
    #[error("missing Sec-WebSocket-Version header")]
    MissingVersion,
    /// A `Sec-WebSocket-Version` other than 13. 426, with
    /// `Sec-WebSocket-Version: 13`.
    #[error("unsupported WebSocket version (only 13 is supported)")]
    UnsupportedVersion,
    /// A header exposed as text (`Host`, `Origin`, `Sec-WebSocket-Key`,
    /// `Sec-WebSocket-Protocol`, `Sec-WebSocket-Extensions`) is not valid
    /// UTF-8. 400.
    #[error("the {name} header is not valid UTF-8")]
    NonUtf8Header {
        /// The header's name (lower case).
        name: &'static str,
    },
}

impl HandshakeError {
    /// The HTTP status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::HeadTooLarge | Self::TooManyHeaders => 431,
            Self::MethodNotAllowed => 405,
            Self::UpgradeRequired | Self::MissingVersion | Self::UnsupportedVersion => 426,
            Self::Malformed
            | Self::HttpVersion
            | Self::MissingHost
            | Self::DuplicateHost
            | Self::MissingConnectionUpgrade
            | Self::MissingKey
            | Self::DuplicateKey
            | Self::InvalidKey
            | Self::NonUtf8Header { .. } => 400,
        }
    }

    /// Appends the complete HTTP/1.1 error response to `out`: status line,
    /// `Connection: close`, `Content-Type: text/plain; charset=utf-8`,
    /// `Content-Length`, the headers the status calls for (`Allow: GET` for
    /// 405; `Upgrade: websocket` and `Sec-WebSocket-Version: 13` for a
    /// non-WebSocket request; `Sec-WebSocket-Version: 13` for a version
    /// mismatch) and the short reason plus `"\n"` as the body.
    ///
    /// The connection should be closed once the response is sent.
    pub fn write_response(&self, out: &mut Vec<u8>) {
        push_status_line(out, self.status());
        match self {
            // An `Upgrade` header must be named in `Connection` (RFC 9110 section 7.8).
            Self::UpgradeRequired => push_header(out, "Connection", b"Upgrade, close"),
            _ => push_header(out, "Connection", b"close"),
        }
        push_header(out, "Content-Type", b"text/plain; charset=utf-8");
        match self {
            Self::MethodNotAllowed => push_header(out, "Allow", b"GET"),
            Self::UpgradeRequired => {
                push_header(out, "Upgrade", b"websocket");
                push_header(out, "Sec-WebSocket-Version", WEBSOCKET_VERSION.as_bytes());
            }
            Self::MissingVersion | Self::UnsupportedVersion => {
                push_header(out, "Sec-WebSocket-Version", WEBSOCKET_VERSION.as_bytes());
            }
            _ => {}
        }
        let mut counter = CountingWriter(0);
        // Neither writer can fail.
        let _ = writeln!(counter, "{self}");
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, counter.0);
        out.extend_from_slice(b"\r\n\r\n");
        let _ = writeln!(VecWriter(out), "{self}");
    }
}

/// A validated WebSocket upgrade request. Every accessor borrows from the
/// bytes given to [`parse_request`].
#[derive(Debug, Clone, Copy)]
pub struct UpgradeRequest<'a> {
    method: &'a str,
    target: &'a str,
    host: &'a str,
    key: &'a str,
    origin: Option<&'a str>,
    headers: &'a [httparse::Header<'a>],
    version: HttpVersion,
}

/// The HTTP that carried an upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    /// HTTP/1.1 `GET` with `Upgrade: websocket` (RFC 6455): the WebSocket
    /// has the TCP connection (or TLS session) to itself.
    Http11,
    /// HTTP/2 extended `CONNECT` with `:protocol: websocket` (RFC 8441): the
    /// WebSocket is one stream of an HTTP/2 connection that may carry others.
    Http2,
}

/// A complete HTTP request head, parsed but not yet validated as an upgrade:
/// what [`parse_head`] returns, so that a plain request (a route such as
/// `/health`) is served from the same parse.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    method: &'a str,
    target: &'a str,
    version: u8,
    headers: &'a [httparse::Header<'a>],
}

impl<'a> RequestHead<'a> {
    /// The request method.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The whole request target as sent, e.g. `/health?full=1`.
    pub fn target(&self) -> &'a str {
        self.target
    }

    /// The header fields in order.
    pub fn headers(&self) -> &'a [httparse::Header<'a>] {
        self.headers
    }

    /// Validates the head as a WebSocket upgrade request (RFC 6455 section
    /// 4.2.1); the errors are those of [`parse_request`] after the parse.
    pub fn upgrade(&self) -> Result<UpgradeRequest<'a>, HandshakeError> {
        validate(self.method, self.target, self.version, self.headers)
    }
}

/// Parses a request head from the bytes received so far, without validating it
/// as an upgrade ([`RequestHead::upgrade`] does that).
///
/// Returns `Ok(None)` while the head (up to the blank line) is incomplete; call
/// again with more bytes (parsing restarts from the beginning of `buf`, so give
/// it the whole buffer, and a fresh [`HeaderStorage`]; the work per call is
/// bounded by [`HandshakeLimits::max_bytes`]). Once complete, returns the head
/// and the number of bytes it occupied: anything after it belongs to the
/// WebSocket stream.
///
/// # Errors
///
/// Size limits (431) and HTTP syntax (400).
pub fn parse_head<'a>(
    buf: &'a [u8],
    limits: &HandshakeLimits,
    storage: &'a mut HeaderStorage<'a>,
) -> Result<Option<(RequestHead<'a>, usize)>, HandshakeError> {
    // Never look past the limit: a head that is not complete within it is too large.
    let capped = &buf[..buf.len().min(limits.max_bytes)];
    let mut req = httparse::Request::new(&mut []);
    let consumed =
        match req.parse_with_uninit_headers(capped, &mut storage.slots[..limits.header_slots()]) {
            Ok(httparse::Status::Complete(consumed)) => consumed,
            Ok(httparse::Status::Partial) if buf.len() >= limits.max_bytes => {
                return Err(HandshakeError::HeadTooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
            Err(_) => return Err(HandshakeError::Malformed),
        };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HandshakeError::Malformed);
    };
    let headers: &'a mut [httparse::Header<'a>] = std::mem::take(&mut req.headers);
    let head = RequestHead {
        method,
        target,
        version,
        headers,
    };
    Ok(Some((head, consumed)))
}

/// Parses and validates an upgrade request from the bytes received so far:
/// [`parse_head`], then [`RequestHead::upgrade`].
///
/// # Errors
///
/// A [`HandshakeError`] describing the first rule the request breaks, in this
/// order: size limits (431), HTTP syntax (400), method (405), HTTP version
/// (400), UTF-8 of the headers exposed as text (400), `Host` (400),
/// `Upgrade` (426), `Connection` (400), `Sec-WebSocket-Version` (426),
/// `Sec-WebSocket-Key` (400).
pub fn parse_request<'a>(
    buf: &'a [u8],
    limits: &HandshakeLimits,
    storage: &'a mut HeaderStorage<'a>,
) -> Result<Option<(UpgradeRequest<'a>, usize)>, HandshakeError> {
    match parse_head(buf, limits, storage)? {
        Some((head, consumed)) => head.upgrade().map(|req| Some((req, consumed))),
        None => Ok(None),
    }
}

/// Applies RFC 6455 section 4.2.1 to a complete request head.
fn validate<'a>(
    method: &'a str,
    target: &'a str,
    version: u8,
    headers: &'a [httparse::Header<'a>],
) -> Result<UpgradeRequest<'a>, HandshakeError> {
    if method != "GET" {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if version < 1 {
        return Err(HandshakeError::HttpVersion);
    }

    let mut host = None;
    let mut hosts = 0u32;
    let mut key = None;
    let mut keys = 0u32;
    let mut ws_version = None;
    let mut origin = None;
    let mut upgrade = false;
    let mut connection = false;
    for h in headers {
        let Some(field) = Field::classify(h.name) else {
            continue;
        };
        let raw = h.value;
        // The headers exposed as text must be UTF-8; the others are only
        // searched for ASCII tokens.
        let text = || {
            std::str::from_utf8(raw)
                .map(trim_ows)
                .map_err(|_| HandshakeError::NonUtf8Header {
                    name: field.lower_name(),
                })
        };
        match field {
            Field::Host => {
                hosts += 1;
                host = Some(text()?);
            }
            Field::Origin => {
                let value = text()?;
                origin = origin.or(Some(value));
            }
            Field::Key => {
                keys += 1;
                key = Some(text()?);
            }
            // Parsed on demand by the accessors.
            Field::Protocol | Field::Extensions => {
                text()?;
            }
            Field::Upgrade => upgrade |= has_token(raw, "websocket"),
            Field::Connection => connection |= has_token(raw, "upgrade"),
            Field::Version => {
                let value = raw.trim_ascii();
                // Several lines are only acceptable if they all say the same.
                ws_version = match ws_version {
                    Some(v) if v != value => Some(&b""[..]),
                    _ => Some(value),
                };
            }
        }
    }

    let host = match (host, hosts) {
        (None, _) => return Err(HandshakeError::MissingHost),
        (Some(_), 2..) => return Err(HandshakeError::DuplicateHost),
        (Some(host), _) => host,
    };
    if !upgrade {
        return Err(HandshakeError::UpgradeRequired);
    }
    if !connection {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    match ws_version {
        None => return Err(HandshakeError::MissingVersion),
        Some(v) if v != WEBSOCKET_VERSION.as_bytes() => {
            return Err(HandshakeError::UnsupportedVersion);
        }
        Some(_) => {}
    }
    let key = match (key, keys) {
        (None, _) => return Err(HandshakeError::MissingKey),
        (Some(_), 2..) => return Err(HandshakeError::DuplicateKey),
        (Some(key), _) => key,
    };
    if !is_valid_key(key) {
        return Err(HandshakeError::InvalidKey);
    }
    Ok(UpgradeRequest {
        method,
        target,
        host,
        key,
        origin,
        headers,
        version: HttpVersion::Http11,
    })
}

/// Applies RFC 8441 section 5 to an HTTP/2 extended CONNECT whose
/// `:protocol` is `websocket`: `:path` is the target, `:authority` the host,
/// `sec-websocket-version` must be 13; there is no key (the stream is the
/// proof of the handshake). `headers` are the request's regular fields.
///
/// # Errors
///
/// UTF-8 of the fields exposed as text (400), `sec-websocket-version`
/// missing or not 13 (426).
pub fn extended_connect<'a>(
    path: &'a str,
    authority: &'a str,
    headers: &'a [httparse::Header<'a>],
) -> Result<UpgradeRequest<'a>, HandshakeError> {
    let mut ws_version = None;
    let mut origin = None;
    for h in headers {
        let Some(field) = Field::classify(h.name) else {
            continue;
        };
        let text = || {
            std::str::from_utf8(h.value)
                .map(trim_ows)
                .map_err(|_| HandshakeError::NonUtf8Header {
                    name: field.lower_name(),
                })
        };
        match field {
            Field::Origin => origin = origin.or(Some(text()?)),
            Field::Protocol | Field::Extensions => {
                text()?;
            }
            Field::Version => {
                let value = h.value.trim_ascii();
                ws_version = match ws_version {
                    Some(v) if v != value => Some(&b""[..]),
                    _ => Some(value),
                };
            }
            // HTTP/1.1's upgrade fields mean nothing here (the codec refuses
            // the connection-specific ones); a key is not used.
            Field::Host | Field::Upgrade | Field::Connection | Field::Key => {}
        }
    }
    match ws_version {
        None => return Err(HandshakeError::MissingVersion),
        Some(v) if v != WEBSOCKET_VERSION.as_bytes() => {
            return Err(HandshakeError::UnsupportedVersion);
        }
        Some(_) => {}
    }
    Ok(UpgradeRequest {
        method: "CONNECT",
        target: path,
        host: authority,
        key: "",
        origin,
        headers,
        version: HttpVersion::Http2,
    })
}

/// The request header fields the handshake interprets.
#[derive(Clone, Copy)]
enum Field {
    Host,
    Origin,
    Upgrade,
    Connection,
    Key,
    Version,
    Protocol,
    Extensions,
}

impl Field {
    /// Recognises a header name (ASCII case-insensitive). The names have
    /// distinct lengths, so one comparison at most per header.
    fn classify(name: &str) -> Option<Self> {
        let field = match name.len() {
            4 => Self::Host,
            6 => Self::Origin,
            7 => Self::Upgrade,
            10 => Self::Connection,
            17 => Self::Key,
            21 => Self::Version,
            22 => Self::Protocol,
            24 => Self::Extensions,
            _ => return None,
        };
        header::name_eq(name, field.lower_name()).then_some(field)
    }

    /// The header name in lower case.
    fn lower_name(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Origin => "origin",
            Self::Upgrade => "upgrade",
            Self::Connection => "connection",
            Self::Key => "sec-websocket-key",
            Self::Version => "sec-websocket-version",
            Self::Protocol => "sec-websocket-protocol",
            Self::Extensions => "sec-websocket-extensions",
        }
    }
}

/// Whether `key` is the canonical padded base64 of exactly 16 bytes.
fn is_valid_key(key: &str) -> bool {
    let mut nonce = [0u8; 18];
    key.len() == 24
        && matches!(
            base64::engine::general_purpose::STANDARD.decode_slice(key, &mut nonce),
            Ok(16)
        )
}

impl<'a> UpgradeRequest<'a> {
    /// The request method: `GET` over HTTP/1.1, `CONNECT` over HTTP/2.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// Which HTTP carried the request: a WebSocket of its own connection
    /// (HTTP/1.1), or a stream of an HTTP/2 connection (RFC 8441).
    pub fn http_version(&self) -> HttpVersion {
        self.version
    }

    /// The whole request target as sent, e.g. `/chat?room=1`.
    pub fn target(&self) -> &'a str {
        self.target
    }

    /// The request target without its query, e.g. `/chat`.
    pub fn path(&self) -> &'a str {
        self.target
            .split_once('?')
            .map_or(self.target, |(path, _)| path)
    }

    /// The query (after `?`, without it), if the target has one.
    pub fn query(&self) -> Option<&'a str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The `Host` header value (over HTTP/2, `:authority`).
    pub fn host(&self) -> &'a str {
        self.host
    }

    /// The first `Origin` header value, if any (browsers always send it; the
    /// application should check it against the origins it trusts).
    pub fn origin(&self) -> Option<&'a str> {
        self.origin
    }

    /// The `Sec-WebSocket-Key` header value (validated: base64 of 16 bytes);
    /// empty over HTTP/2, which has none.
    pub fn key(&self) -> &'a str {
        self.key
    }

    /// The value of the first header called `name` (ASCII case-insensitive),
    /// trimmed; `None` if there is none or its value is not UTF-8 (see
    /// [`headers`](Self::headers) for raw values).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        header::first_value(self.headers, name)
    }

    /// Every header field in order, with its raw value.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a> {
        self.headers.iter().map(|h| (h.name, h.value))
    }

    /// The subprotocols offered in `Sec-WebSocket-Protocol`, across all such
    /// header lines, in order of the client's preference.
    pub fn protocols(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        str_values(self.headers, "sec-websocket-protocol").flat_map(list_items)
    }

    /// Whether the client offered subprotocol `protocol` (exact match).
    pub fn offers_protocol(&self, protocol: &str) -> bool {
        self.protocols().any(|p| p == protocol)
    }

    /// The extensions offered in `Sec-WebSocket-Extensions`, across all such
    /// header lines, in order of the client's preference.
    pub fn extensions(&self) -> impl Iterator<Item = ExtensionOffer<'a>> + use<'a> {
        str_values(self.headers, "sec-websocket-extensions").flat_map(header::parse_extensions)
    }

    /// Appends the `101 Switching Protocols` answer to this request to `out`:
    /// [`write_accept_response`] with this request's key, after checking that
    /// `protocol`, if any, is one the client offered.
    ///
    /// # Errors
    ///
    /// [`WriteError::ProtocolNotOffered`], or any error of
    /// [`write_accept_response`]. Nothing is written then.
    pub fn write_accept(
        &self,
        out: &mut Vec<u8>,
        protocol: Option<&str>,
        extensions: Option<&str>,
        extra_headers: &[(&str, &str)],
    ) -> Result<(), WriteError> {
        if let Some(p) = protocol {
            if !self.offers_protocol(p) {
                return Err(WriteError::ProtocolNotOffered(p.to_owned()));
            }
        }
        write_accept_response(out, self.key, protocol, extensions, extra_headers)
    }
}

/// Headers [`write_accept_response`] writes itself.
const ACCEPT_RESERVED: &[&str] = &[
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Accept",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
    "Content-Length",
    "Transfer-Encoding",
];

/// Appends a `101 Switching Protocols` response to `out`: `Upgrade: websocket`,
/// `Connection: Upgrade`, `Sec-WebSocket-Accept` computed from `key` (the
/// client's `Sec-WebSocket-Key` value), then `Sec-WebSocket-Protocol` and
/// `Sec-WebSocket-Extensions` if given, then `extra_headers`.
///
/// `protocol` must be one the client offered; [`UpgradeRequest::write_accept`]
/// checks that.
///
/// # Errors
///
/// Nothing is written if `protocol` is not an HTTP token
/// ([`WriteError::InvalidProtocol`]), `extensions` or an extra header value
/// contains a control character ([`WriteError::HeaderValue`]), an extra header
/// name is not a token ([`WriteError::HeaderName`]) or is one the handshake
/// writes itself ([`WriteError::ReservedHeader`]).
pub fn write_accept_response(
    out: &mut Vec<u8>,
    key: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
    extra_headers: &[(&str, &str)],
) -> Result<(), WriteError> {
    if let Some(p) = protocol {
        if !header::is_token(p) {
            return Err(WriteError::InvalidProtocol(p.to_owned()));
        }
    }
    if let Some(e) = extensions {
        if !header::is_safe_value(e) {
            return Err(WriteError::HeaderValue(
                "Sec-WebSocket-Extensions".to_owned(),
            ));
        }
    }
    header::check_headers(extra_headers, ACCEPT_RESERVED)?;

    let accept = accept_key(key.as_bytes());
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    );
    push_header(out, "Sec-WebSocket-Accept", accept.as_bytes());
    if let Some(p) = protocol {
        push_header(out, "Sec-WebSocket-Protocol", p.as_bytes());
    }
    if let Some(e) = extensions {
        push_header(out, "Sec-WebSocket-Extensions", e.as_bytes());
    }
    for &(name, value) in extra_headers {
        push_header(out, name, value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Headers [`write_reject_response`] writes itself.
const REJECT_RESERVED: &[&str] = &["Connection", "Content-Length", "Transfer-Encoding"];

/// Appends a response refusing the upgrade to `out`, for an application that
/// turns a valid request down itself (e.g. 401 or 403 after checking
/// credentials or the origin): the status line with the standard reason
/// phrase, `Connection: close`, `Content-Length`, `headers` (add a
/// `Content-Type` if `body` is not empty) and `body`.
///
/// # Errors
///
/// Nothing is written if `status` is outside 200..=599
/// ([`WriteError::InvalidStatus`]) or a header is malformed, would inject
/// headers, or is one this function writes itself (`Connection`,
/// `Content-Length`, `Transfer-Encoding`).
pub fn write_reject_response(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), WriteError> {
    if !(200..=599).contains(&status) {
        return Err(WriteError::InvalidStatus(status));
    }
    header::check_headers(headers, REJECT_RESERVED)?;
    push_status_line(out, status);
    push_header(out, "Connection", b"close");
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, body.len());
    out.extend_from_slice(b"\r\n");
    for &(name, value) in headers {
        push_header(out, name, value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(())
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
