//! Client role: writing the opening handshake request (RFC 6455 section 4.1)
//! and validating the server's answer.

use std::fmt;

use base64::Engine as _;

use super::header::{
    self, ExtensionOffer, WriteError, has_token, list_items, push_header, str_values,
};
use super::{AcceptKey, HandshakeLimits, MAX_HEADERS, WEBSOCKET_VERSION, accept_key};

/// Headers [`ClientHandshake::write_request`] writes itself.
const REQUEST_RESERVED: &[&str] = &[
    "Host",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
    "Content-Length",
    "Transfer-Encoding",
];

/// The client side of one opening handshake: the request to send and what the
/// server's answer must contain.
///
/// Built once per connection attempt (it owns its strings):
///
/// ```
/// use ringws::proto::handshake::ClientHandshake;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = ClientHandshake::new("example.com:8080", "/ws?token=abc")?
///     .protocols(&["v2.chat", "chat"])?
///     .extensions("permessage-deflate; client_max_window_bits")?
///     .header("Origin", "https://example.com")?;
/// let mut out = Vec::new();
/// client.write_request(&mut out);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    host: String,
    target: String,
    key: [u8; 24],
    accept: AcceptKey,
    protocols: Vec<String>,
    extensions: Option<String>,
    headers: Vec<(String, String)>,
    limits: HandshakeLimits,
}

/// Why the server's answer to the opening handshake was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientHandshakeError {
    /// The response head is not complete within
    /// [`HandshakeLimits::max_bytes`].
    #[error("response head too large")]
    HeadTooLarge,
    /// More header fields than [`HandshakeLimits::max_headers`].
    #[error("too many response header fields")]
    TooManyHeaders,
    /// Not a syntactically valid HTTP/1.x response head.
    #[error("malformed HTTP response")]
    Malformed,
    /// The server did not switch protocols: it answered with another status
    /// (e.g. 403 or 426); its body, if any, follows the head.
    #[error("server answered {status} {reason} instead of 101 Switching Protocols")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The reason phrase the server sent.
        reason: String,
    },
    /// No `Upgrade` header containing `websocket`.
    #[error("the Upgrade header of the response must contain \"websocket\"")]
    MissingUpgrade,
    /// No `Connection` header containing `Upgrade`.
    #[error("the Connection header of the response must contain \"Upgrade\"")]
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Accept` header.
    #[error("missing Sec-WebSocket-Accept header")]
    MissingAccept,
    /// `Sec-WebSocket-Accept` does not match the key sent (or is duplicated).
    #[error("Sec-WebSocket-Accept does not match the key sent")]
    InvalidAccept,
    /// The server selected a subprotocol the client did not offer.
    #[error("the server selected subprotocol {0:?}, which was not offered")]
    UnofferedProtocol(String),
    /// The server selected more than one subprotocol.
    #[error("the server selected more than one subprotocol")]
    MultipleProtocols,
    /// The server accepted an extension the client did not offer.
    #[error("the server accepted extension {0:?}, which was not offered")]
    UnofferedExtension(String),
    /// `Sec-WebSocket-Accept`, `Sec-WebSocket-Protocol` or
    /// `Sec-WebSocket-Extensions` is not valid UTF-8.
    #[error("the {name} header of the response is not valid UTF-8")]
    NonUtf8Header {
        /// The header's name (lower case).
        name: &'static str,
    },
}

impl ClientHandshakeError {
    /// The HTTP status of a non-101 answer ([`Status`](Self::Status)).
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl ClientHandshake {
    /// A handshake for `ws://{host}{path_and_query}` with a fresh random
    /// `Sec-WebSocket-Key` (16 bytes from the operating system's generator).
    ///
    /// `host` is the `Host` header value (with the port if not the default);
    /// `path_and_query` must start with `/` and be visible ASCII (percent-encode
    /// anything else).
    ///
    /// # Errors
    ///
    /// [`WriteError::InvalidHost`], [`WriteError::InvalidTarget`], or
    /// [`WriteError::Random`] if no random bytes are available.
    pub fn new(host: &str, path_and_query: &str) -> Result<Self, WriteError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(WriteError::Random)?;
        Self::with_key(host, path_and_query, nonce)
    }

    /// Like [`new`](Self::new) with a caller-chosen 16-byte nonce instead of a
    /// fresh one from the OS: for tests, and for clients that draw their nonces
    /// from a generator of their own (a load generator opening millions of
    /// connections). RFC 6455 section 4.1 wants the nonce randomly selected for
    /// each connection: a fixed or predictable one is for tests only.
    ///
    /// # Errors
    ///
    /// [`WriteError::InvalidHost`] or [`WriteError::InvalidTarget`].
    pub fn with_key(host: &str, path_and_query: &str, nonce: [u8; 16]) -> Result<Self, WriteError> {
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(WriteError::InvalidHost(host.to_owned()));
        }
        if !path_and_query.starts_with('/') || !path_and_query.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(WriteError::InvalidTarget(path_and_query.to_owned()));
        }
        let mut key = [0u8; 24];
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(nonce, &mut key)
            .expect("24 bytes is the padded base64 length of 16 bytes");
        debug_assert_eq!(written, key.len());
        Ok(Self {
            host: host.to_owned(),
            target: path_and_query.to_owned(),
            key,
            accept: accept_key(&key),
            protocols: Vec::new(),
            extensions: None,
            headers: Vec::new(),
            limits: HandshakeLimits::default(),
        })
    }

    /// Offers these subprotocols (`Sec-WebSocket-Protocol`), most preferred
    /// first, replacing any offered before. An empty list offers none.
    ///
    /// # Errors
    ///
    /// [`WriteError::InvalidProtocol`] if one is not an HTTP token.
    pub fn protocols(mut self, protocols: &[&str]) -> Result<Self, WriteError> {
        if let Some(bad) = protocols.iter().find(|p| !header::is_token(p)) {
            return Err(WriteError::InvalidProtocol((*bad).to_owned()));
        }
        self.protocols = protocols.iter().map(|p| (*p).to_owned()).collect();
        Ok(self)
    }

    /// Offers extensions: `value` is the raw `Sec-WebSocket-Extensions` value,
    /// e.g. `permessage-deflate; client_max_window_bits`. Replaces any earlier
    /// value.
    ///
    /// # Errors
    ///
    /// [`WriteError::HeaderValue`] if it contains a control character.
    pub fn extensions(mut self, value: &str) -> Result<Self, WriteError> {
        if !header::is_safe_value(value) {
            return Err(WriteError::HeaderValue(
                "Sec-WebSocket-Extensions".to_owned(),
            ));
        }
        self.extensions = Some(value.to_owned());
        Ok(self)
    }

    /// Adds an extra request header, e.g. `Origin`, `Authorization` or
    /// `User-Agent`.
    ///
    /// # Errors
    ///
    /// [`WriteError::HeaderName`] or [`WriteError::HeaderValue`] (header
    /// injection), or [`WriteError::ReservedHeader`] for a header the
    /// handshake writes itself (`Host`, `Upgrade`, `Connection`,
    /// `Sec-WebSocket-*`, ...).
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, WriteError> {
        header::check_header(name, value, REQUEST_RESERVED)?;
        self.headers.push((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// Sets the size limits applied to the server's response head (default
    /// [`HandshakeLimits::DEFAULT`]).
    pub fn limits(mut self, limits: HandshakeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The `Sec-WebSocket-Key` value sent.
    pub fn key(&self) -> &str {
        std::str::from_utf8(&self.key).expect("base64 output is ASCII")
    }

    /// The `Sec-WebSocket-Accept` value the server must answer with.
    pub fn expected_accept(&self) -> &str {
        self.accept.as_str()
    }

    /// Appends the request to `out`: `GET {path_and_query} HTTP/1.1`, `Host`,
    /// `Upgrade: websocket`, `Connection: Upgrade`, `Sec-WebSocket-Key`,
    /// `Sec-WebSocket-Version: 13`, then `Sec-WebSocket-Protocol`,
    /// `Sec-WebSocket-Extensions` and extra headers if set.
    pub fn write_request(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        push_header(out, "Host", self.host.as_bytes());
        out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
        push_header(out, "Sec-WebSocket-Key", &self.key);
        push_header(out, "Sec-WebSocket-Version", WEBSOCKET_VERSION.as_bytes());
        if let Some((first, rest)) = self.protocols.split_first() {
            out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
            out.extend_from_slice(first.as_bytes());
            for p in rest {
                out.extend_from_slice(b", ");
                out.extend_from_slice(p.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        if let Some(e) = &self.extensions {
            push_header(out, "Sec-WebSocket-Extensions", e.as_bytes());
        }
        for (name, value) in &self.headers {
            push_header(out, name, value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Parses and validates the server's answer from the bytes received so
    /// far.
    ///
    /// Returns `Ok(None)` while the head is incomplete (call again with the
    /// whole buffer once more bytes arrived). Once complete, returns the
    /// accepted response and the number of bytes its head occupied: anything
    /// after it is already WebSocket data.
    ///
    /// # Errors
    ///
    /// A [`ClientHandshakeError`]: size limits, HTTP syntax, a status other
    /// than 101 ([`ClientHandshakeError::Status`]), missing `Upgrade` or
    /// `Connection` tokens, a missing or wrong `Sec-WebSocket-Accept`, or a
    /// subprotocol or extension the client did not offer.
    pub fn parse_response<'a>(
        &self,
        buf: &'a [u8],
    ) -> Result<Option<(ServerAccepted<'a>, usize)>, ClientHandshakeError> {
        let limits = &self.limits;
        let capped = &buf[..buf.len().min(limits.max_bytes)];
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers[..limits.header_slots()]);
        let consumed = match resp.parse(capped) {
            Ok(httparse::Status::Complete(consumed)) => consumed,
            Ok(httparse::Status::Partial) if buf.len() >= limits.max_bytes => {
                return Err(ClientHandshakeError::HeadTooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ClientHandshakeError::TooManyHeaders);
            }
            Err(_) => return Err(ClientHandshakeError::Malformed),
        };
        let Some(status) = resp.code else {
            return Err(ClientHandshakeError::Malformed);
        };
        if status != 101 {
            return Err(ClientHandshakeError::Status {
                status,
                reason: resp.reason.unwrap_or("").to_owned(),
            });
        }
        let len = resp.headers.len();
        let accepted = ServerAccepted {
            headers,
            len,
            protocol: None,
        };
        self.validate(accepted)
            .map(|accepted| Some((accepted, consumed)))
    }

    /// Applies RFC 6455 section 4.1 (client requirements 1 to 6) to a 101
    /// response.
    fn validate<'a>(
        &self,
        mut accepted: ServerAccepted<'a>,
    ) -> Result<ServerAccepted<'a>, ClientHandshakeError> {
        let mut upgrade = false;
        let mut connection = false;
        let mut accept = None;
        let mut accepts = 0u32;
        let mut protocol = None;
        for h in accepted.fields() {
            let name = h.name;
            let utf8 = |lower: &'static str| {
                std::str::from_utf8(h.value)
                    .map_err(|_| ClientHandshakeError::NonUtf8Header { name: lower })
            };
            if name.eq_ignore_ascii_case("upgrade") {
                upgrade |= has_token(h.value, "websocket");
            } else if name.eq_ignore_ascii_case("connection") {
                connection |= has_token(h.value, "upgrade");
            } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
                accepts += 1;
                accept = Some(header::trim_ows(utf8("sec-websocket-accept")?));
            } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
                for p in list_items(utf8("sec-websocket-protocol")?) {
                    if protocol.replace(p).is_some() {
                        return Err(ClientHandshakeError::MultipleProtocols);
                    }
                }
            } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
                for offer in header::parse_extensions(utf8("sec-websocket-extensions")?) {
                    if !self.offered_extension(offer.name()) {
                        return Err(ClientHandshakeError::UnofferedExtension(
                            offer.name().to_owned(),
                        ));
                    }
                }
            }
        }
        if !upgrade {
            return Err(ClientHandshakeError::MissingUpgrade);
        }
        if !connection {
            return Err(ClientHandshakeError::MissingConnectionUpgrade);
        }
        match (accept, accepts) {
            (None, _) => return Err(ClientHandshakeError::MissingAccept),
            (Some(value), 1) if value.as_bytes() == self.accept.as_bytes() => {}
            (Some(_), _) => return Err(ClientHandshakeError::InvalidAccept),
        }
        if let Some(p) = protocol {
            if !self.protocols.iter().any(|offered| offered == p) {
                return Err(ClientHandshakeError::UnofferedProtocol(p.to_owned()));
            }
        }
        accepted.protocol = protocol;
        Ok(accepted)
    }

    /// Whether an extension called `name` was offered (ASCII case-insensitive).
    fn offered_extension(&self, name: &str) -> bool {
        self.extensions.as_deref().is_some_and(|value| {
            header::parse_extensions(value).any(|o| o.name().eq_ignore_ascii_case(name))
        })
    }
}

/// A validated `101 Switching Protocols` answer. Accessors borrow from the
/// bytes given to [`ClientHandshake::parse_response`].
#[derive(Clone)]
pub struct ServerAccepted<'a> {
    headers: [httparse::Header<'a>; MAX_HEADERS],
    len: usize,
    protocol: Option<&'a str>,
}

impl<'a> ServerAccepted<'a> {
    /// The header fields present.
    fn fields(&self) -> &[httparse::Header<'a>] {
        &self.headers[..self.len]
    }

    /// The subprotocol the server selected (one the client offered), if any.
    pub fn protocol(&self) -> Option<&'a str> {
        self.protocol
    }

    /// The extensions the server accepted, with their parameters, across all
    /// `Sec-WebSocket-Extensions` lines, in order. Each was offered by the
    /// client.
    pub fn extensions(&self) -> impl Iterator<Item = ExtensionOffer<'a>> + '_ {
        str_values(self.fields(), "sec-websocket-extensions").flat_map(header::parse_extensions)
    }

    /// The value of the first header called `name` (ASCII case-insensitive),
    /// trimmed; `None` if there is none or its value is not UTF-8.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        header::first_value(self.fields(), name)
    }

    /// Every header field in order, with its raw value.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.fields().iter().map(|h| (h.name, h.value))
    }
}

impl fmt::Debug for ServerAccepted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerAccepted")
            .field("protocol", &self.protocol)
            .field("headers", &self.fields())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{HeaderStorage, parse_request};
    use super::*;

    const NONCE: [u8; 16] = *b"the sample nonce";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn client() -> ClientHandshake {
        ClientHandshake::with_key("example.com", "/chat", NONCE).unwrap()
    }

    fn response(lines: &[&str]) -> Vec<u8> {
        let mut out = String::from("HTTP/1.1 101 Switching Protocols\r\n");
        for line in lines {
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    const OK_LINES: [&str; 3] = [
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
    ];

    fn ok_response_with(extra: &[&str]) -> Vec<u8> {
        let mut lines = OK_LINES.to_vec();
        lines.extend_from_slice(extra);
        response(&lines)
    }

    fn check(client: &ClientHandshake, buf: &[u8]) -> Result<Option<usize>, ClientHandshakeError> {
        client
            .parse_response(buf)
            .map(|r| r.map(|(_, consumed)| consumed))
    }

    #[test]
    fn request_format_with_fixed_key() {
        let client = client()
            .protocols(&["chat", "superchat"])
            .unwrap()
            .extensions("permessage-deflate; client_max_window_bits")
            .unwrap()
            .header("Origin", "http://example.com")
            .unwrap();
        assert_eq!(client.key(), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(client.expected_accept(), ACCEPT);
        let mut out = Vec::new();
        client.write_request(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /chat HTTP/1.1\r\n\
             Host: example.com\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: chat, superchat\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
             Origin: http://example.com\r\n\r\n"
        );
    }

    #[test]
    fn random_keys_are_16_bytes_and_differ() {
        let a = ClientHandshake::new("h", "/").unwrap();
        let b = ClientHandshake::new("h", "/").unwrap();
        assert_ne!(a.key(), b.key());
        let nonce = base64::engine::general_purpose::STANDARD
            .decode(a.key())
            .unwrap();
        assert_eq!(nonce.len(), 16);
        assert_eq!(a.expected_accept(), accept_key(a.key().as_bytes()).as_str());
    }

    #[test]
    fn round_trip_through_server_parser_with_protocol_and_extension() {
        let client = ClientHandshake::new("localhost:9001", "/echo?x=1")
            .unwrap()
            .protocols(&["v2.chat", "chat"])
            .unwrap()
            .extensions("permessage-deflate; client_max_window_bits, x-other")
            .unwrap()
            .header("Origin", "http://localhost")
            .unwrap();
        let mut request = Vec::new();
        client.write_request(&mut request);

        // Server side.
        let mut storage = HeaderStorage::new();
        let (req, consumed) = parse_request(&request, &HandshakeLimits::default(), &mut storage)
            .unwrap()
            .unwrap();
        assert_eq!(consumed, request.len());
        assert_eq!(req.path(), "/echo");
        assert_eq!(req.query(), Some("x=1"));
        assert_eq!(req.host(), "localhost:9001");
        assert_eq!(req.origin(), Some("http://localhost"));
        assert_eq!(req.key(), client.key());
        assert_eq!(req.protocols().collect::<Vec<_>>(), ["v2.chat", "chat"]);
        let offers: Vec<_> = req.extensions().collect();
        assert_eq!(offers.len(), 2);
        assert_eq!(offers[0].name(), "permessage-deflate");
        assert_eq!(
            offers[0].params().next().unwrap().name,
            "client_max_window_bits"
        );
        let mut answer = Vec::new();
        req.write_accept(
            &mut answer,
            Some("chat"),
            Some("permessage-deflate; client_max_window_bits=15"),
            &[],
        )
        .unwrap();
        // The server's first frame may follow its answer directly.
        let head_len = answer.len();
        answer.extend_from_slice(&[0x81, 0x02, b'h', b'i']);

        // Client side.
        let (accepted, consumed) = client.parse_response(&answer).unwrap().unwrap();
        assert_eq!(consumed, head_len);
        assert_eq!(accepted.protocol(), Some("chat"));
        let ext: Vec<_> = accepted.extensions().collect();
        assert_eq!(ext.len(), 1);
        assert_eq!(ext[0].name(), "permessage-deflate");
        assert_eq!(
            ext[0].param("client_max_window_bits").unwrap().value,
            Some("15")
        );
        assert_eq!(
            accepted.header("sec-websocket-accept"),
            Some(client.expected_accept())
        );
        assert_eq!(accepted.headers().count(), 5);
    }

    #[test]
    fn round_trip_without_protocol_or_extension() {
        let client = ClientHandshake::new("example.com", "/").unwrap();
        let mut request = Vec::new();
        client.write_request(&mut request);
        let mut storage = HeaderStorage::new();
        let (req, _) = parse_request(&request, &HandshakeLimits::default(), &mut storage)
            .unwrap()
            .unwrap();
        let mut answer = Vec::new();
        req.write_accept(&mut answer, None, None, &[]).unwrap();
        let (accepted, consumed) = client.parse_response(&answer).unwrap().unwrap();
        assert_eq!(consumed, answer.len());
        assert_eq!(accepted.protocol(), None);
        assert_eq!(accepted.extensions().count(), 0);
    }

    #[test]
    fn wrong_or_missing_accept_rejected() {
        let client = client();
        let wrong = response(&[
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ]);
        assert_eq!(
            check(&client, &wrong),
            Err(ClientHandshakeError::InvalidAccept)
        );
        let duplicated = ok_response_with(&["Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="]);
        assert_eq!(
            check(&client, &duplicated),
            Err(ClientHandshakeError::InvalidAccept)
        );
        let missing = response(&OK_LINES[..2]);
        assert_eq!(
            check(&client, &missing),
            Err(ClientHandshakeError::MissingAccept)
        );
        // The accept value is case-sensitive base64.
        let lower = response(&[
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Accept: s3pplmbitxaq9kygzzhzrbk+xoo=",
        ]);
        assert_eq!(
            check(&client, &lower),
            Err(ClientHandshakeError::InvalidAccept)
        );
    }

    #[test]
    fn non_101_status_rejected_with_status() {
        let client = client();
        let buf = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden";
        let err = check(&client, buf).unwrap_err();
        assert_eq!(
            err,
            ClientHandshakeError::Status {
                status: 403,
                reason: "Forbidden".into()
            }
        );
        assert_eq!(err.status(), Some(403));
        assert!(err.to_string().contains("403"));
        let ok = b"HTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(check(&client, ok).unwrap_err().status(), Some(200));
        assert_eq!(ClientHandshakeError::MissingAccept.status(), None);
    }

    #[test]
    fn missing_upgrade_or_connection_rejected() {
        let client = client();
        let no_upgrade = response(&[OK_LINES[1], OK_LINES[2]]);
        assert_eq!(
            check(&client, &no_upgrade),
            Err(ClientHandshakeError::MissingUpgrade)
        );
        let wrong_upgrade = response(&["Upgrade: h2c", OK_LINES[1], OK_LINES[2]]);
        assert_eq!(
            check(&client, &wrong_upgrade),
            Err(ClientHandshakeError::MissingUpgrade)
        );
        let no_connection = response(&[OK_LINES[0], OK_LINES[2]]);
        assert_eq!(
            check(&client, &no_connection),
            Err(ClientHandshakeError::MissingConnectionUpgrade)
        );
        let case = response(&[
            "upgrade: WebSocket",
            "connection: keep-alive, UPGRADE",
            OK_LINES[2],
        ]);
        assert!(check(&client, &case).unwrap().is_some());
    }

    #[test]
    fn unoffered_or_multiple_protocols_rejected() {
        let none_offered = client();
        let buf = ok_response_with(&["Sec-WebSocket-Protocol: chat"]);
        assert_eq!(
            check(&none_offered, &buf),
            Err(ClientHandshakeError::UnofferedProtocol("chat".into()))
        );
        let offered = client().protocols(&["superchat", "chat"]).unwrap();
        assert_eq!(check(&offered, &buf), Ok(Some(buf.len())));
        let other = ok_response_with(&["Sec-WebSocket-Protocol: mqtt"]);
        assert_eq!(
            check(&offered, &other),
            Err(ClientHandshakeError::UnofferedProtocol("mqtt".into()))
        );
        let two = ok_response_with(&["Sec-WebSocket-Protocol: chat, superchat"]);
        assert_eq!(
            check(&offered, &two),
            Err(ClientHandshakeError::MultipleProtocols)
        );
        let two_lines = ok_response_with(&[
            "Sec-WebSocket-Protocol: chat",
            "Sec-WebSocket-Protocol: chat",
        ]);
        assert_eq!(
            check(&offered, &two_lines),
            Err(ClientHandshakeError::MultipleProtocols)
        );
    }

    #[test]
    fn unoffered_extension_rejected() {
        let buf = ok_response_with(&["Sec-WebSocket-Extensions: permessage-deflate"]);
        assert_eq!(
            check(&client(), &buf),
            Err(ClientHandshakeError::UnofferedExtension(
                "permessage-deflate".into()
            ))
        );
        let offered = client()
            .extensions("permessage-deflate; client_max_window_bits")
            .unwrap();
        assert_eq!(check(&offered, &buf), Ok(Some(buf.len())));
        let other = ok_response_with(&[
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover",
            "Sec-WebSocket-Extensions: x-unknown",
        ]);
        assert_eq!(
            check(&offered, &other),
            Err(ClientHandshakeError::UnofferedExtension("x-unknown".into()))
        );
    }

    #[test]
    fn response_split_at_every_byte_boundary() {
        let client = client().protocols(&["chat"]).unwrap();
        let buf = ok_response_with(&["Sec-WebSocket-Protocol: chat", "Server: ringws"]);
        for n in 0..buf.len() {
            assert_eq!(check(&client, &buf[..n]), Ok(None), "prefix of {n} bytes");
        }
        assert_eq!(check(&client, &buf), Ok(Some(buf.len())));
    }

    #[test]
    fn oversized_or_malformed_response_rejected() {
        let client = client();
        let filler = format!("X-Filler: {}", "a".repeat(9000));
        let big = ok_response_with(&[&filler]);
        assert_eq!(
            check(&client, &big),
            Err(ClientHandshakeError::HeadTooLarge)
        );
        let small = client.clone().limits(HandshakeLimits {
            max_bytes: 8192,
            max_headers: 3,
        });
        let four = ok_response_with(&["Server: x"]);
        assert_eq!(
            check(&small, &four),
            Err(ClientHandshakeError::TooManyHeaders)
        );
        assert_eq!(
            check(&client, b"HTTP/1.1 101 Switching\r\nBad Header\r\n\r\n"),
            Err(ClientHandshakeError::Malformed)
        );
        let mut non_utf8 = OK_LINES.to_vec().join("\r\n").into_bytes();
        non_utf8.splice(
            0..0,
            b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Protocol: \xff\r\n"
                .iter()
                .copied(),
        );
        non_utf8.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            check(&client, &non_utf8),
            Err(ClientHandshakeError::NonUtf8Header {
                name: "sec-websocket-protocol"
            })
        );
    }

    #[test]
    fn builder_rejects_header_injection_and_bad_input() {
        assert_eq!(
            client().header("X-A", "1\r\nHost: evil").unwrap_err(),
            WriteError::HeaderValue("X-A".into())
        );
        assert_eq!(
            client().header("X A", "1").unwrap_err(),
            WriteError::HeaderName("X A".into())
        );
        assert_eq!(
            client().header("sec-websocket-key", "x").unwrap_err(),
            WriteError::ReservedHeader("sec-websocket-key".into())
        );
        assert_eq!(
            client().protocols(&["chat", "bad proto"]).unwrap_err(),
            WriteError::InvalidProtocol("bad proto".into())
        );
        assert_eq!(
            client()
                .extensions("permessage-deflate\r\nX: y")
                .unwrap_err(),
            WriteError::HeaderValue("Sec-WebSocket-Extensions".into())
        );
        for host in ["", "exa mple.com", "example.com\r\nX: y"] {
            assert_eq!(
                ClientHandshake::with_key(host, "/", NONCE).unwrap_err(),
                WriteError::InvalidHost(host.into())
            );
        }
        for target in ["", "chat", "/a b", "/a\r\nX: y", "/caf\u{e9}"] {
            assert_eq!(
                ClientHandshake::with_key("h", target, NONCE).unwrap_err(),
                WriteError::InvalidTarget(target.into())
            );
        }
    }
}
