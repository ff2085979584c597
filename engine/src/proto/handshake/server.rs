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
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    /// The header lines of a minimal valid request.
    const BASE: [&str; 5] = [
        "Host: example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];

    fn request_with(first_line: &str, lines: &[&str]) -> Vec<u8> {
        let mut out = format!("{first_line}\r\n");
        for line in lines {
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    fn request(lines: &[&str]) -> Vec<u8> {
        request_with("GET /chat HTTP/1.1", lines)
    }

    /// BASE without the header called `name`, plus `extra`.
    fn base_without(name: &str, extra: &[&str]) -> Vec<u8> {
        let mut lines: Vec<&str> = BASE
            .iter()
            .copied()
            .filter(|l| {
                !l.to_ascii_lowercase()
                    .starts_with(&format!("{}:", name.to_ascii_lowercase()))
            })
            .collect();
        lines.extend_from_slice(extra);
        request(&lines)
    }

    fn check_with(buf: &[u8], limits: &HandshakeLimits) -> Result<Option<usize>, HandshakeError> {
        let mut storage = HeaderStorage::new();
        parse_request(buf, limits, &mut storage).map(|r| r.map(|(_, consumed)| consumed))
    }

    fn check(buf: &[u8]) -> Result<Option<usize>, HandshakeError> {
        check_with(buf, &HandshakeLimits::default())
    }

    struct Parsed {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Parsed {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// Parses a complete response with httparse, checking Content-Length.
    fn parse_http_response(bytes: &[u8]) -> Parsed {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = resp.parse(bytes).expect("valid HTTP") else {
            panic!("incomplete response: {:?}", String::from_utf8_lossy(bytes));
        };
        assert_eq!(resp.version, Some(1));
        let parsed = Parsed {
            status: resp.code.unwrap(),
            headers: resp
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8(h.value.to_vec()).unwrap(),
                    )
                })
                .collect(),
            body: bytes[head..].to_vec(),
        };
        if let Some(len) = parsed.header("Content-Length") {
            assert_eq!(len.parse::<usize>().unwrap(), parsed.body.len());
        }
        parsed
    }

    /// Checks the error's status and that its response is valid HTTP with it.
    fn assert_rejected(buf: &[u8], expected: HandshakeError, status: u16) -> Parsed {
        let err = check(buf).expect_err("request must be rejected");
        assert_eq!(err, expected);
        assert_eq!(err.status(), status);
        let mut out = Vec::new();
        err.write_response(&mut out);
        let parsed = parse_http_response(&out);
        assert_eq!(parsed.status, status);
        assert!(
            parsed.header("Connection").unwrap().contains("close"),
            "Connection: close"
        );
        assert_eq!(
            parsed.header("Content-Type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(parsed.body, format!("{err}\n").as_bytes());
        parsed
    }

    #[test]
    fn valid_request_accessors_borrow_from_input() {
        let buf = request_with(
            "GET /chat/room?id=7&x=y HTTP/1.1",
            &[
                "Host: example.com:8080 ",
                "Origin: https://example.com",
                "User-Agent: test",
                "upgrade: websocket",
                "connection: Upgrade",
                "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
                "sec-websocket-version: 13",
                "X-Custom:  value  ",
            ],
        );
        let mut storage = HeaderStorage::new();
        let (req, consumed) = parse_request(&buf, &HandshakeLimits::default(), &mut storage)
            .unwrap()
            .unwrap();
        assert_eq!(consumed, buf.len());
        assert_eq!(req.method(), "GET");
        assert_eq!(req.target(), "/chat/room?id=7&x=y");
        assert_eq!(req.path(), "/chat/room");
        assert_eq!(req.query(), Some("id=7&x=y"));
        assert_eq!(req.host(), "example.com:8080");
        assert_eq!(req.origin(), Some("https://example.com"));
        assert_eq!(req.key(), KEY);
        assert_eq!(req.header("x-custom"), Some("value"));
        assert_eq!(req.header("USER-AGENT"), Some("test"));
        assert_eq!(req.header("missing"), None);
        assert_eq!(req.headers().count(), 8);
        assert_eq!(req.headers().nth(2), Some(("User-Agent", &b"test"[..])));
        assert_eq!(req.protocols().count(), 0);
        assert_eq!(req.extensions().count(), 0);
        // Borrowed, not copied.
        let range = buf.as_ptr_range();
        assert!(range.contains(&req.host().as_ptr()));
        assert!(range.contains(&req.path().as_ptr()));
    }

    #[test]
    fn path_without_query() {
        let buf = request_with("GET / HTTP/1.1", &BASE);
        let mut storage = HeaderStorage::new();
        let (req, _) = parse_request(&buf, &HandshakeLimits::default(), &mut storage)
            .unwrap()
            .unwrap();
        assert_eq!(req.path(), "/");
        assert_eq!(req.query(), None);
        assert_eq!(req.origin(), None);
    }

    #[test]
    fn incremental_parse_byte_by_byte() {
        let buf = request(&[
            "Host: example.com",
            "Origin: https://example.com",
            "Upgrade: websocket",
            "Connection: keep-alive, Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        ]);
        for n in 0..buf.len() {
            assert_eq!(check(&buf[..n]), Ok(None), "prefix of {n} bytes");
        }
        assert_eq!(check(&buf), Ok(Some(buf.len())));
    }

    #[test]
    fn pipelined_frame_after_head_is_not_consumed() {
        let head = request(&BASE);
        let mut buf = head.clone();
        // A masked text frame "Hi" right behind the request.
        buf.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'H' ^ 1, b'i' ^ 2]);
        assert_eq!(check(&buf), Ok(Some(head.len())));
    }

    #[test]
    fn non_get_method_is_405_with_allow() {
        let buf = request_with("POST /chat HTTP/1.1", &BASE);
        let resp = assert_rejected(&buf, HandshakeError::MethodNotAllowed, 405);
        assert_eq!(resp.header("Allow"), Some("GET"));
        // Methods are case-sensitive.
        let buf = request_with("get /chat HTTP/1.1", &BASE);
        assert_rejected(&buf, HandshakeError::MethodNotAllowed, 405);
    }

    #[test]
    fn http_1_0_is_400() {
        let buf = request_with("GET /chat HTTP/1.0", &BASE);
        let resp = assert_rejected(&buf, HandshakeError::HttpVersion, 400);
        assert_eq!(resp.body, b"HTTP/1.1 or later required\n");
    }

    #[test]
    fn malformed_http_is_400() {
        let bad_header = request(&["Host: example.com", "Bad Header Line"]);
        assert_rejected(&bad_header, HandshakeError::Malformed, 400);
        let bad_version = request_with("GET /chat HTTP/2.0", &BASE);
        assert_rejected(&bad_version, HandshakeError::Malformed, 400);
        assert_rejected(
            b"\x16\x03\x01\x02\x00\r\n\r\n",
            HandshakeError::Malformed,
            400,
        );
    }

    #[test]
    fn missing_or_duplicate_host_is_400() {
        assert_rejected(&base_without("Host", &[]), HandshakeError::MissingHost, 400);
        let dup = request(&[
            BASE[0],
            "Host: evil.example",
            BASE[1],
            BASE[2],
            BASE[3],
            BASE[4],
        ]);
        assert_rejected(&dup, HandshakeError::DuplicateHost, 400);
    }

    #[test]
    fn plain_http_request_is_426_upgrade_required() {
        let plain = request_with(
            "GET / HTTP/1.1",
            &["Host: example.com", "Accept: text/html"],
        );
        let resp = assert_rejected(&plain, HandshakeError::UpgradeRequired, 426);
        assert_eq!(resp.header("Upgrade"), Some("websocket"));
        assert_eq!(resp.header("Sec-WebSocket-Version"), Some("13"));
        assert!(resp.header("Connection").unwrap().contains("Upgrade"));
        let other_upgrade = base_without("Upgrade", &["Upgrade: h2c"]);
        assert_rejected(&other_upgrade, HandshakeError::UpgradeRequired, 426);
        let superstring = base_without("Upgrade", &["Upgrade: websockets"]);
        assert_rejected(&superstring, HandshakeError::UpgradeRequired, 426);
    }

    #[test]
    fn connection_without_upgrade_token_is_400() {
        let missing = base_without("Connection", &[]);
        assert_rejected(&missing, HandshakeError::MissingConnectionUpgrade, 400);
        let keep_alive = base_without("Connection", &["Connection: keep-alive"]);
        assert_rejected(&keep_alive, HandshakeError::MissingConnectionUpgrade, 400);
    }

    #[test]
    fn connection_keep_alive_upgrade_accepted() {
        let buf = base_without("Connection", &["Connection: keep-alive, Upgrade"]);
        assert_eq!(check(&buf), Ok(Some(buf.len())));
        let buf = base_without("Connection", &["Connection: keep-alive,upgrade ,close"]);
        assert_eq!(check(&buf), Ok(Some(buf.len())));
    }

    #[test]
    fn upgrade_token_case_insensitive() {
        let buf = base_without("Upgrade", &["upgrade: WebSocket"]);
        assert_eq!(check(&buf), Ok(Some(buf.len())));
        let buf = base_without("Upgrade", &["UPGRADE: h2c, WEBSOCKET"]);
        assert_eq!(check(&buf), Ok(Some(buf.len())));
    }

    #[test]
    fn tokens_spread_over_several_header_lines() {
        let buf = request(&[
            "Host: example.com",
            "Upgrade: h2c",
            "Upgrade: websocket",
            "Connection: keep-alive",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ]);
        assert_eq!(check(&buf), Ok(Some(buf.len())));
    }

    #[test]
    fn missing_or_duplicate_key_is_400() {
        assert_rejected(
            &base_without("Sec-WebSocket-Key", &[]),
            HandshakeError::MissingKey,
            400,
        );
        let dup = base_without(
            "Sec-WebSocket-Key",
            &[BASE[3], "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="],
        );
        assert_rejected(&dup, HandshakeError::DuplicateKey, 400);
    }

    #[test]
    fn key_not_16_bytes_is_400() {
        use base64::engine::general_purpose::STANDARD;
        let key15 = format!("Sec-WebSocket-Key: {}", STANDARD.encode([7u8; 15]));
        let key17 = format!("Sec-WebSocket-Key: {}", STANDARD.encode([7u8; 17]));
        let key16 = format!("Sec-WebSocket-Key: {}", STANDARD.encode([7u8; 16]));
        for (line, ok) in [
            (key15.as_str(), false),
            (key17.as_str(), false),
            (key16.as_str(), true),
            ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ", false),
            ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==", false),
            ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!Q==", false),
            ("Sec-WebSocket-Key: ", false),
        ] {
            let buf = base_without("Sec-WebSocket-Key", &[line]);
            if ok {
                assert_eq!(check(&buf), Ok(Some(buf.len())), "{line}");
            } else {
                assert_rejected(&buf, HandshakeError::InvalidKey, 400);
            }
        }
    }

    #[test]
    fn version_missing_or_not_13_is_426() {
        let resp = assert_rejected(
            &base_without("Sec-WebSocket-Version", &[]),
            HandshakeError::MissingVersion,
            426,
        );
        assert_eq!(resp.header("Sec-WebSocket-Version"), Some("13"));
        for v in ["8", "12", "14", "13, 8", ""] {
            let line = format!("Sec-WebSocket-Version: {v}");
            let buf = base_without("Sec-WebSocket-Version", &[&line]);
            let resp = assert_rejected(&buf, HandshakeError::UnsupportedVersion, 426);
            assert_eq!(resp.header("Sec-WebSocket-Version"), Some("13"));
        }
        let conflicting = base_without(
            "Sec-WebSocket-Version",
            &["Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"],
        );
        assert_rejected(&conflicting, HandshakeError::UnsupportedVersion, 426);
    }

    #[test]
    fn non_utf8_needed_header_is_400_other_headers_raw() {
        let mut buf = base_without("Host", &[]);
        let at = buf.len() - 2;
        buf.splice(at..at, b"Host: caf\xe9\r\n".iter().copied());
        assert_rejected(&buf, HandshakeError::NonUtf8Header { name: "host" }, 400);

        let mut buf = request(&BASE);
        let at = buf.len() - 2;
        buf.splice(at..at, b"X-Latin1: caf\xe9\r\n".iter().copied());
        let mut storage = HeaderStorage::new();
        let (req, _) = parse_request(&buf, &HandshakeLimits::default(), &mut storage)
            .unwrap()
            .unwrap();
        assert_eq!(req.header("X-Latin1"), None);
        assert!(
            req.headers()
                .any(|(n, v)| n == "X-Latin1" && v == b"caf\xe9")
        );
    }

    #[test]
    fn oversized_head_is_431() {
        let mut lines = BASE.to_vec();
        let filler = format!("X-Filler: {}", "a".repeat(9000));
        lines.push(&filler);
        let buf = request(&lines);
        let resp = assert_rejected(&buf, HandshakeError::HeadTooLarge, 431);
        assert_eq!(resp.status, 431);
        // Detected as soon as the limit is reached, before the head ends.
        assert_eq!(check(&buf[..8192]), Err(HandshakeError::HeadTooLarge));
        assert_eq!(check(&buf[..8191]), Ok(None));

        // A head of exactly `max_bytes` is accepted, one byte less is not.
        let buf = request(&BASE);
        let exact = HandshakeLimits {
            max_bytes: buf.len(),
            ..HandshakeLimits::default()
        };
        assert_eq!(check_with(&buf, &exact), Ok(Some(buf.len())));
        let short = HandshakeLimits {
            max_bytes: buf.len() - 1,
            ..HandshakeLimits::default()
        };
        assert_eq!(check_with(&buf, &short), Err(HandshakeError::HeadTooLarge));
    }

    #[test]
    fn too_many_headers_is_431() {
        let extra: Vec<String> = (0..60).map(|i| format!("X-H{i}: {i}")).collect();
        let mut lines = BASE.to_vec();
        lines.extend(extra.iter().map(String::as_str));
        let buf = request(&lines);
        assert_rejected(&buf, HandshakeError::TooManyHeaders, 431);

        // Exactly at the limit is fine.
        let limits = HandshakeLimits {
            max_headers: lines.len(),
            ..HandshakeLimits::default()
        };
        assert_eq!(check_with(&buf, &limits), Ok(Some(buf.len())));
        // Limits above MAX_HEADERS are clamped.
        let extra: Vec<String> = (0..MAX_HEADERS).map(|i| format!("X-H{i}: {i}")).collect();
        let mut lines = BASE.to_vec();
        lines.extend(extra.iter().map(String::as_str));
        let huge = HandshakeLimits {
            max_bytes: 1 << 20,
            max_headers: usize::MAX,
        };
        assert_eq!(
            check_with(&request(&lines), &huge),
            Err(HandshakeError::TooManyHeaders)
        );
    }

    #[test]
    fn multiple_protocol_headers_merged() {
        let buf = request(&[
            BASE[0],
            BASE[1],
            "Sec-WebSocket-Protocol: v2.chat, chat",
            BASE[2],
            "sec-websocket-protocol:superchat ,, mqtt",
            BASE[3],
            BASE[4],
        ]);
        let mut storage = HeaderStorage::new();
        let (req, _) = parse_request(&buf, &HandshakeLimits::default(), &mut storage)
            .unwrap()
            .unwrap();
        assert_eq!(
            req.protocols().collect::<Vec<_>>(),
            ["v2.chat", "chat", "superchat", "mqtt"]
        );
        assert!(req.offers_protocol("chat"));
        assert!(req.offers_protocol("mqtt"));
        assert!(!req.offers_protocol("Chat"));
        assert!(!req.offers_protocol("v2"));
    }

    #[test]
    fn extension_offers_with_params_quotes_and_several_headers() {
        let buf = request(&[
            BASE[0],
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; server_max_window_bits=\"10\", permessage-deflate",
            BASE[1],
            BASE[2],
            BASE[3],
            BASE[4],
            "Sec-WebSocket-Extensions: x-foo; a=\"1,2\"; b",
        ]);
        let mut storage = HeaderStorage::new();
        let (req, _) = parse_request(&buf, &HandshakeLimits::default(), &mut storage)
            .unwrap()
            .unwrap();
        let offers: Vec<_> = req.extensions().collect();
        assert_eq!(offers.len(), 3);
        assert_eq!(offers[0].name(), "permessage-deflate");
        let params: Vec<_> = offers[0].params().collect();
        assert_eq!(params.len(), 2);
        assert_eq!(params[0].name, "client_max_window_bits");
        assert_eq!(params[0].value, None);
        assert_eq!(params[1].name, "server_max_window_bits");
        assert_eq!(params[1].value, Some("10"));
        assert_eq!(offers[1].name(), "permessage-deflate");
        assert_eq!(offers[1].params().count(), 0);
        assert_eq!(offers[2].name(), "x-foo");
        assert_eq!(offers[2].param("a").unwrap().value, Some("1,2"));
        assert_eq!(offers[2].param("b").unwrap().value, None);
    }

    #[test]
    fn accept_response_for_rfc_sample() {
        let mut out = Vec::new();
        write_accept_response(&mut out, KEY, None, None, &[]).unwrap();
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    #[test]
    fn accept_response_with_protocol_extensions_and_extra_headers() {
        let buf = request(&[
            BASE[0],
            BASE[1],
            BASE[2],
            BASE[3],
            BASE[4],
            "Sec-WebSocket-Protocol: chat, superchat",
        ]);
        let mut storage = HeaderStorage::new();
        let (req, _) = parse_request(&buf, &HandshakeLimits::default(), &mut storage)
            .unwrap()
            .unwrap();
        let mut out = b"previous".to_vec();
        req.write_accept(
            &mut out,
            Some("superchat"),
            Some("permessage-deflate; server_max_window_bits=10"),
            &[
                ("Set-Cookie", "session=1; HttpOnly"),
                ("X-Server", "ringws"),
            ],
        )
        .unwrap();
        assert!(out.starts_with(b"previous"));
        let resp = parse_http_response(&out[b"previous".len()..]);
        assert_eq!(resp.status, 101);
        assert!(resp.body.is_empty());
        assert_eq!(resp.header("Upgrade"), Some("websocket"));
        assert_eq!(resp.header("Connection"), Some("Upgrade"));
        assert_eq!(
            resp.header("Sec-WebSocket-Accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        assert_eq!(resp.header("Sec-WebSocket-Protocol"), Some("superchat"));
        assert_eq!(
            resp.header("Sec-WebSocket-Extensions"),
            Some("permessage-deflate; server_max_window_bits=10")
        );
        assert_eq!(resp.header("Set-Cookie"), Some("session=1; HttpOnly"));
        assert_eq!(resp.header("X-Server"), Some("ringws"));
    }

    #[test]
    fn accept_rejects_unoffered_protocol() {
        let buf = request(&[
            BASE[0],
            BASE[1],
            BASE[2],
            BASE[3],
            BASE[4],
            "Sec-WebSocket-Protocol: chat",
        ]);
        let mut storage = HeaderStorage::new();
        let (req, _) = parse_request(&buf, &HandshakeLimits::default(), &mut storage)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        assert_eq!(
            req.write_accept(&mut out, Some("mqtt"), None, &[]),
            Err(WriteError::ProtocolNotOffered("mqtt".into()))
        );
        assert!(out.is_empty());
        req.write_accept(&mut out, Some("chat"), None, &[]).unwrap();
        assert!(!out.is_empty());
    }

    #[test]
    fn accept_response_header_injection_rejected() {
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            &'a [(&'a str, &'a str)],
            WriteError,
        );
        let cases: [Case<'_>; 7] = [
            (
                None,
                None,
                &[("X-A", "1\r\nSet-Cookie: evil=1")],
                WriteError::HeaderValue("X-A".into()),
            ),
            (
                None,
                None,
                &[("X-A", "1\nb")],
                WriteError::HeaderValue("X-A".into()),
            ),
            (
                None,
                None,
                &[("X-A", "1\0")],
                WriteError::HeaderValue("X-A".into()),
            ),
            (
                None,
                None,
                &[("X-A\r\nEvil", "1")],
                WriteError::HeaderName("X-A\r\nEvil".into()),
            ),
            (
                None,
                None,
                &[("sec-websocket-accept", "x")],
                WriteError::ReservedHeader("sec-websocket-accept".into()),
            ),
            (
                Some("chat\r\nX-Evil: 1"),
                None,
                &[],
                WriteError::InvalidProtocol("chat\r\nX-Evil: 1".into()),
            ),
            (
                None,
                Some("permessage-deflate\r\nX-Evil: 1"),
                &[],
                WriteError::HeaderValue("Sec-WebSocket-Extensions".into()),
            ),
        ];
        for (protocol, extensions, extra, expected) in cases {
            let mut out = Vec::new();
            assert_eq!(
                write_accept_response(&mut out, KEY, protocol, extensions, extra),
                Err(expected)
            );
            assert!(out.is_empty(), "nothing written on error");
        }
    }

    #[test]
    fn reject_response_for_upgrade_hook() {
        let mut out = Vec::new();
        write_reject_response(
            &mut out,
            401,
            &[
                ("WWW-Authenticate", "Bearer"),
                ("Content-Type", "text/plain"),
            ],
            b"login first",
        )
        .unwrap();
        assert!(out.starts_with(b"HTTP/1.1 401 Unauthorized\r\n"));
        let resp = parse_http_response(&out);
        assert_eq!(resp.status, 401);
        assert_eq!(resp.header("Connection"), Some("close"));
        assert_eq!(resp.header("WWW-Authenticate"), Some("Bearer"));
        assert_eq!(resp.body, b"login first");

        out.clear();
        write_reject_response(&mut out, 403, &[], b"").unwrap();
        assert!(out.starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
        let resp = parse_http_response(&out);
        assert_eq!(resp.status, 403);
        assert_eq!(resp.header("Content-Length"), Some("0"));

        out.clear();
        write_reject_response(&mut out, 499, &[], b"").unwrap();
        assert_eq!(parse_http_response(&out).status, 499);
    }

    #[test]
    fn reject_response_checks_status_and_injection() {
        let mut out = Vec::new();
        for status in [0, 101, 199, 600, 1000] {
            assert_eq!(
                write_reject_response(&mut out, status, &[], b""),
                Err(WriteError::InvalidStatus(status))
            );
        }
        assert_eq!(
            write_reject_response(&mut out, 403, &[("X-Reason", "no\r\n\r\n<html>")], b""),
            Err(WriteError::HeaderValue("X-Reason".into()))
        );
        assert_eq!(
            write_reject_response(&mut out, 403, &[("Bad:Name", "x")], b""),
            Err(WriteError::HeaderName("Bad:Name".into()))
        );
        assert_eq!(
            write_reject_response(&mut out, 403, &[("Content-Length", "0")], b""),
            Err(WriteError::ReservedHeader("Content-Length".into()))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn every_error_response_is_valid_http() {
        use HandshakeError::*;
        let all = [
            HeadTooLarge,
            TooManyHeaders,
            Malformed,
            MethodNotAllowed,
            HttpVersion,
            MissingHost,
            DuplicateHost,
            UpgradeRequired,
            MissingConnectionUpgrade,
            MissingKey,
            DuplicateKey,
            InvalidKey,
            MissingVersion,
            UnsupportedVersion,
            NonUtf8Header { name: "origin" },
        ];
        for err in all {
            let mut out = Vec::new();
            err.write_response(&mut out);
            let resp = parse_http_response(&out);
            assert_eq!(resp.status, err.status(), "{err:?}");
            assert_eq!(resp.body, format!("{err}\n").as_bytes());
            let needs_version =
                matches!(err, UpgradeRequired | MissingVersion | UnsupportedVersion);
            assert_eq!(
                resp.header("Sec-WebSocket-Version").is_some(),
                needs_version,
                "{err:?}"
            );
            assert_eq!(
                resp.header("Allow").is_some(),
                err == MethodNotAllowed,
                "{err:?}"
            );
        }
    }
}
