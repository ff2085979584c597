//! Support for the integration tests of ringws (the test files are in `tests/`):
//!
//! - [`Client`]: a small blocking WebSocket client on a [`Stream`] (TCP or TLS), built
//!   on ringws's own client role ([`ClientHandshake`], [`Decoder`] with
//!   [`Role::Client`], a client-role [`Session`] for permessage-deflate, masked
//!   [`write_frame`] for everything a test sends as is). Every read and write has
//!   a timeout ([`TIMEOUT`] by default), so no test can hang on a socket.
//! - [`raw_http`], [`raw_head`] and [`HttpReply`]: hand-written HTTP requests.
//! - [`start`]: a server on `127.0.0.1:0` with a chosen backend, wrapped in a
//!   [`TestServer`] that shuts it down when dropped.
//! - [`Echo`]: the reusable handler (echo, plus optional `!commands`), reporting
//!   what happens on the server as [`ServerEvent`]s to an [`Events`] channel.
//! - [`backend_tests!`]: one `#[test]` per backend and transport (plain, TLS)
//!   for each test function; [`transport`] has the TLS side: the test PKI and
//!   [`Stream`], the plain-or-TLS connection every client helper uses.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

pub use ringws;
pub mod h2;
pub mod replay;
pub mod transport;
use ringws::proto::Role;
use ringws::proto::close::CloseCode;
use ringws::proto::deflate::{self, DeflateConfig, Negotiated};
use ringws::proto::frame::{MaskKeys, OpCode, write_frame};
use ringws::proto::handshake::{ClientHandshake, UpgradeRequest};
use ringws::proto::message::Decoder;
use ringws::proto::session::{Endpoint, Inbound, InflateBuffer, Session};
use ringws::{
    BackendKind, Builder, CloseCause, ConnId, Handler, HttpRequest, HttpResponse, Message,
    RateLimit, SendStatus, Server, ServerHandle, StartError, Upgrade, WebSocket,
};
pub use transport::{Stream, Transport, pki, with_transport};

/// The backends every test runs on; [`backend_tests!`] makes one test per
/// backend of this list (keep the two in step).
pub const BACKENDS: &[BackendKind] = &[BackendKind::Epoll, BackendKind::IoUring];

/// Default bound of every blocking wait: socket reads and writes, server events.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// One mebibyte.
pub const MIB: usize = 1 << 20;

/// Largest frame and message (inflated too) the test client accepts.
const CLIENT_MAX_MESSAGE: usize = 64 << 20;

/// Compression level of the test client's permessage-deflate.
const CLIENT_LEVEL: u32 = 6;

/// Size of the client's read buffer.
const READ_CHUNK: usize = 256 << 10;

/// Generates one `#[test]` per backend of [`BACKENDS`] and per transport for
/// each named function `fn name(backend: BackendKind)` of the calling file, in
/// a module named after both, so a failure names them: `epoll::echo_roundtrip`,
/// `io_uring_tls::echo_roundtrip`. Under TLS, [`start`] binds a TLS listener and
/// every client helper speaks TLS to it. A backend this machine cannot run
/// (io_uring missing or disabled) is skipped with a message on stderr.
///
/// ```text
/// ringws_tests::backend_tests! { echo_roundtrip, close_by_peer }
/// ringws_tests::backend_tests! { tls: reload_keeps_open_connections }  // TLS only
/// ```
#[macro_export]
macro_rules! backend_tests {
    (plain: $($name:ident),* $(,)?) => {
        $crate::backend_tests!(@backend epoll, Epoll, Plain; $($name),*);
        $crate::backend_tests!(@backend io_uring, IoUring, Plain; $($name),*);
    };
    (tls: $($name:ident),* $(,)?) => {
        $crate::backend_tests!(@backend epoll_tls, Epoll, Tls; $($name),*);
        $crate::backend_tests!(@backend io_uring_tls, IoUring, Tls; $($name),*);
    };
    ($($name:ident),* $(,)?) => {
        $crate::backend_tests!(@backend epoll, Epoll, Plain; $($name),*);
        $crate::backend_tests!(@backend io_uring, IoUring, Plain; $($name),*);
        $crate::backend_tests!(@backend epoll_tls, Epoll, Tls; $($name),*);
        $crate::backend_tests!(@backend io_uring_tls, IoUring, Tls; $($name),*);
    };
    (@backend $module:ident, $kind:ident, $transport:ident; $($name:ident),*) => {
        mod $module {
            $(
                #[test]
                fn $name() {
                    let backend = $crate::ringws::BackendKind::$kind;
                    if let Err(why) = $crate::backend_available(backend) {
                        eprintln!("SKIPPED {}: {why}", stringify!($name));
                        return;
                    }
                    $crate::with_transport($crate::Transport::$transport, || super::$name(backend))
                }
            )*
        }
    };
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/// A message or control frame received by the [`Client`], owned.
#[derive(Clone, PartialEq, Eq)]
pub enum Msg {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping and its payload.
    Ping(Vec<u8>),
    /// A pong and its payload.
    Pong(Vec<u8>),
    /// A close frame: code and reason, or `None` when it had no code.
    Close(Option<(u16, String)>),
}

impl Msg {
    fn from_inbound(inbound: Inbound<'_>) -> Self {
        match inbound {
            Inbound::Text(t) => Msg::Text(t.to_owned()),
            Inbound::Binary(b) => Msg::Binary(b.to_vec()),
            Inbound::Ping(p) => Msg::Ping(p.to_vec()),
            Inbound::Pong(p) => Msg::Pong(p.to_vec()),
            Inbound::Close { code, .. } if code == CloseCode::NO_STATUS => Msg::Close(None),
            Inbound::Close { code, reason } => Msg::Close(Some((code.0, reason.to_owned()))),
        }
    }

    /// A close frame with this code and reason.
    pub fn close(code: u16, reason: &str) -> Self {
        Msg::Close(Some((code, reason.to_owned())))
    }
}

/// Shows at most 32 bytes of a payload: a failed assertion on a 16 MiB message
/// must not print 16 MiB.
fn short(bytes: &[u8]) -> String {
    if bytes.len() <= 32 {
        format!("{bytes:?}")
    } else {
        format!("{:?}... ({} bytes)", &bytes[..32], bytes.len())
    }
}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Msg::Text(t) if t.len() <= 64 => write!(f, "Text({t:?})"),
            Msg::Text(t) => {
                let mut end = 64;
                while !t.is_char_boundary(end) {
                    end -= 1;
                }
                write!(f, "Text({:?}... ({} bytes))", &t[..end], t.len())
            }
            Msg::Binary(b) => write!(f, "Binary({})", short(b)),
            Msg::Ping(p) => write!(f, "Ping({})", short(p)),
            Msg::Pong(p) => write!(f, "Pong({})", short(p)),
            Msg::Close(c) => write!(f, "Close({c:?})"),
        }
    }
}

/// How [`Client::connect_opts`] opens a connection.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Request target; empty means `/`.
    pub path: String,
    /// Subprotocols offered (`Sec-WebSocket-Protocol`).
    pub protocols: Vec<String>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Bytes written right behind the request, in the same write (pipelined frames).
    pub pipelined: Vec<u8>,
    /// Bytes written before the request, in the same write (a PROXY protocol
    /// header).
    pub preamble: Vec<u8>,
    /// Write the request (and the pipelined bytes) one byte per write.
    pub byte_by_byte: bool,
    /// Offer permessage-deflate with these settings.
    pub deflate: Option<DeflateConfig>,
}

/// The server refused the upgrade: its status and whole response head.
#[derive(Debug, Clone)]
pub struct HandshakeFailed {
    /// The HTTP status when the server answered with something else than 101.
    pub status: Option<u16>,
    /// What went wrong.
    pub error: String,
}

impl fmt::Display for HandshakeFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "handshake failed: {}", self.error)
    }
}

impl std::error::Error for HandshakeFailed {}

/// The HTTP status of a refused handshake, if `error` is one.
pub fn refusal_status(error: &io::Error) -> Option<u16> {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<HandshakeFailed>())
        .and_then(|h| h.status)
}

/// Whether an error means the peer closed or reset the connection.
pub fn is_disconnect(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// One read; a timeout is reported as [`io::ErrorKind::TimedOut`].
fn read_some(mut stream: &Stream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"));
            }
            other => return other,
        }
    }
}

/// A connected WebSocket client. Reads and writes block, bounded by timeouts.
///
/// Received frames go through a client-role [`Session`] (inflation of
/// compressed messages, the UTF-8 of inflated text), but the client answers
/// nothing by itself: the pong owed to a ping and the reply to a close are the
/// test's to send (or, deliberately, not to send). What it sends is raw
/// ([`send_frame`](Self::send_frame)), except [`send_compressed`](Self::send_compressed).
#[derive(Debug)]
pub struct Client {
    stream: Stream,
    decoder: Decoder,
    endpoint: Endpoint,
    session: Session,
    inflated: InflateBuffer,
    keys: MaskKeys,
    /// Received bytes not yet decoded: `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    protocol: Option<String>,
    response_head: String,
    /// The permessage-deflate parameters, if negotiated.
    deflate: Option<Negotiated>,
}

impl Client {
    /// Opens a WebSocket connection to `/`.
    pub fn connect(addr: SocketAddr) -> io::Result<Client> {
        Self::connect_opts(addr, &ConnectOptions::default())
    }

    /// Opens a WebSocket connection to `path`, offering `protocols`, with extra
    /// request headers.
    pub fn connect_with(
        addr: SocketAddr,
        path: &str,
        protocols: &[&str],
        headers: &[(&str, &str)],
    ) -> io::Result<Client> {
        let options = ConnectOptions {
            path: path.to_owned(),
            protocols: protocols.iter().map(|p| (*p).to_owned()).collect(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            ..ConnectOptions::default()
        };
        Self::connect_opts(addr, &options)
    }

    /// Opens a WebSocket connection as `options` say.
    pub fn connect_opts(addr: SocketAddr, options: &ConnectOptions) -> io::Result<Client> {
        Self::connect_over(Stream::connect(addr)?, addr, options)
    }

    /// Upgrades an open `stream` to `addr` as `options` say.
    pub fn connect_over(
        stream: Stream,
        addr: SocketAddr,
        options: &ConnectOptions,
    ) -> io::Result<Client> {
        let path = if options.path.is_empty() {
            "/"
        } else {
            &options.path
        };
        let mut handshake =
            ClientHandshake::new(&addr.to_string(), path).map_err(io::Error::other)?;
        if !options.protocols.is_empty() {
            let protocols: Vec<&str> = options.protocols.iter().map(String::as_str).collect();
            handshake = handshake.protocols(&protocols).map_err(io::Error::other)?;
        }
        for (name, value) in &options.headers {
            handshake = handshake.header(name, value).map_err(io::Error::other)?;
        }
        if let Some(config) = &options.deflate {
            handshake = handshake
                .extensions(&deflate::client_offer(config))
                .map_err(io::Error::other)?;
        }
        let mut request = options.preamble.clone();
        handshake.write_request(&mut request);
        request.extend_from_slice(&options.pipelined);
        if options.byte_by_byte {
            for byte in &request {
                (&stream).write_all(std::slice::from_ref(byte))?;
            }
        } else {
            (&stream).write_all(&request)?;
        }

        let mut buf = vec![0u8; READ_CHUNK];
        let mut have = 0;
        loop {
            if have == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            let n = read_some(&stream, &mut buf[have..])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    HandshakeFailed {
                        status: None,
                        error: "connection closed before the response".into(),
                    },
                ));
            }
            have += n;
            let (protocol, consumed, deflate) = match handshake.parse_response(&buf[..have]) {
                Ok(None) => continue,
                Ok(Some((accepted, consumed))) => {
                    let deflate = match (options.deflate, accepted.extensions().next()) {
                        (Some(config), Some(answer)) => {
                            let n = deflate::client_accept(&answer, &config)
                                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                            Some(n)
                        }
                        _ => None,
                    };
                    (accepted.protocol().map(str::to_owned), consumed, deflate)
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        HandshakeFailed {
                            status: e.status(),
                            error: format!("{e}: {}", String::from_utf8_lossy(&buf[..have])),
                        },
                    ));
                }
            };
            let response_head = String::from_utf8_lossy(&buf[..consumed]).into_owned();
            let session = match &deflate {
                Some(n) => Session::with_deflate(Role::Client, n, CLIENT_LEVEL),
                None => Session::new(),
            };
            return Ok(Client {
                stream,
                decoder: Decoder::new(),
                endpoint: Endpoint::new(
                    Role::Client,
                    CLIENT_MAX_MESSAGE,
                    CLIENT_MAX_MESSAGE,
                    CLIENT_LEVEL,
                ),
                session,
                inflated: InflateBuffer::new(),
                keys: MaskKeys::new(),
                buf,
                start: consumed,
                end: have,
                protocol,
                response_head,
                deflate,
            });
        }
    }

    /// The permessage-deflate parameters in effect, if negotiated.
    pub fn deflate(&self) -> Option<Negotiated> {
        self.deflate
    }

    /// Sends a message compressed with permessage-deflate, in `fragments`
    /// frames (RSV1 on the first only).
    pub fn send_compressed(
        &mut self,
        text: bool,
        payload: &[u8],
        fragments: usize,
    ) -> io::Result<()> {
        assert!(self.session.deflate(), "permessage-deflate negotiated");
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        let mut out = Vec::new();
        self.session.write_fragmented(
            &mut self.endpoint,
            opcode,
            payload,
            true,
            fragments,
            &mut out,
        );
        self.send_raw(&out)
    }

    /// The subprotocol the server chose.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The server's 101 response head.
    pub fn response_head(&self) -> &str {
        &self.response_head
    }

    /// The connection (plain or TLS).
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Sets the read timeout (`None`: block forever; avoid).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }

    /// Sends a text message in one frame.
    pub fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send_frame(true, OpCode::Text, text.as_bytes())
    }

    /// Sends a binary message in one frame.
    pub fn send_binary(&mut self, data: &[u8]) -> io::Result<()> {
        self.send_frame(true, OpCode::Binary, data)
    }

    /// Sends one masked frame.
    pub fn send_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) -> io::Result<()> {
        let mut out = Vec::new();
        write_frame(&mut out, fin, opcode, payload, Some(self.keys.next_key()));
        self.send_raw(&out)
    }

    /// Writes bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        (&self.stream).write_all(bytes)
    }

    /// Sends a ping.
    pub fn ping(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send_frame(true, OpCode::Ping, payload)
    }

    /// Sends a pong.
    pub fn pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send_frame(true, OpCode::Pong, payload)
    }

    /// Sends a close frame with this code and reason.
    pub fn close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.send_frame(true, OpCode::Close, &payload)
    }

    /// Receives the next message or control frame. The end of the stream is
    /// [`io::ErrorKind::UnexpectedEof`]; a timeout [`io::ErrorKind::TimedOut`];
    /// a protocol violation by the server [`io::ErrorKind::InvalidData`].
    pub fn recv(&mut self) -> io::Result<Msg> {
        loop {
            while self.start < self.end {
                let Client {
                    decoder,
                    endpoint,
                    session,
                    inflated,
                    buf,
                    ..
                } = self;
                let config = *endpoint.decoder_config(session);
                let (n, event) = decoder
                    .decode(&config, &mut buf[self.start..self.end])
                    .map_err(|e| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("server broke the protocol: {e}"),
                        )
                    })?;
                // The reply the session owes (pong, close reply) is not sent:
                // answering is the test's business.
                let msg = match event {
                    Some(event) => {
                        let received = session.receive(endpoint, inflated, event).map_err(|e| {
                            io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("server broke the protocol: {e}"),
                            )
                        })?;
                        Some(Msg::from_inbound(received.inbound))
                    }
                    None => None,
                };
                self.inflated.release();
                self.start += n;
                if let Some(msg) = msg {
                    return Ok(msg);
                }
            }
            self.start = 0;
            self.end = 0;
            let n = read_some(&self.stream, &mut self.buf)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "end of stream",
                ));
            }
            self.end = n;
        }
    }

    /// Receives the next message, panicking on an error.
    #[track_caller]
    pub fn msg(&mut self) -> Msg {
        match self.recv() {
            Ok(msg) => msg,
            Err(e) => panic!("receiving failed: {e}"),
        }
    }

    /// Receives the next message and checks it is this text.
    #[track_caller]
    pub fn expect_text(&mut self, text: &str) {
        let msg = self.msg();
        assert_eq!(msg, Msg::Text(text.to_owned()));
    }

    /// Receives the next message and checks it is a close frame with this code;
    /// returns the reason.
    #[track_caller]
    pub fn expect_close(&mut self, code: u16) -> String {
        match self.msg() {
            Msg::Close(Some((c, reason))) if c == code => reason,
            other => panic!("expected a close frame with code {code}, got {other:?}"),
        }
    }

    /// Reads until the server ends the stream (EOF or reset). Bytes after a close
    /// frame are ignored; a message before the end is an error.
    pub fn expect_eof(&mut self) -> io::Result<()> {
        match self.recv() {
            Err(e) if is_disconnect(&e) => Ok(()),
            Err(e) => Err(e),
            Ok(msg) => Err(io::Error::other(format!(
                "expected the end of the stream, got {msg:?}"
            ))),
        }
    }

    /// Closes cleanly: sends a close frame, waits for the server's (skipping
    /// pings and pongs), then for the end of the stream. Returns the server's close.
    pub fn close_handshake(
        &mut self,
        code: u16,
        reason: &str,
    ) -> io::Result<Option<(u16, String)>> {
        self.close(code, reason)?;
        loop {
            match self.recv()? {
                Msg::Close(close) => {
                    self.expect_eof()?;
                    return Ok(close);
                }
                Msg::Ping(_) | Msg::Pong(_) => {}
                other => {
                    return Err(io::Error::other(format!(
                        "expected a close frame, got {other:?}"
                    )));
                }
            }
        }
    }

    /// Aborts the connection with a TCP RST (SO_LINGER 0, then close).
    pub fn reset(self) {
        self.stream.reset();
    }
}

/// Closes `stream` with a TCP RST instead of a FIN.
pub fn reset(stream: Stream) {
    stream.reset();
}

/// A complete masked client frame, for raw writes.
pub fn masked_frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(
        &mut out,
        fin,
        opcode,
        payload,
        Some(MaskKeys::new().next_key()),
    );
    out
}

/// A complete frame without a mask (forbidden from a client).
pub fn unmasked_frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, fin, opcode, payload, None);
    out
}

// ---------------------------------------------------------------------------
// Raw HTTP
// ---------------------------------------------------------------------------

/// A connection to `addr` with [`TIMEOUT`] on reads and writes: TLS (with the
/// handshake done) to a TLS test server, else plain TCP.
pub fn tcp(addr: SocketAddr) -> io::Result<Stream> {
    Stream::connect(addr)
}

/// Reads from `stream` until EOF; a reset after some bytes ends the read too.
pub fn read_to_eof(stream: &Stream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        match read_some(stream, &mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if is_disconnect(&e) && !out.is_empty() => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

/// Sends `request` as is and returns everything the server answers, up to EOF.
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = tcp(addr)?;
    stream.write_all(request)?;
    read_to_eof(&stream)
}

/// Sends `request` and reads the response head (through the blank line); the
/// connection stays open. Returns the stream and the head plus any bytes read
/// behind it.
pub fn raw_head(addr: SocketAddr, request: &[u8]) -> io::Result<(Stream, Vec<u8>)> {
    let mut stream = tcp(addr)?;
    stream.write_all(request)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = read_some(&stream, &mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF inside the response head",
            ));
        }
        out.extend_from_slice(&buf[..n]);
    }
    Ok((stream, out))
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Header fields in order.
    pub headers: Vec<(String, String)>,
    /// Everything after the head.
    pub body: Vec<u8>,
}

impl HttpReply {
    /// Parses a complete response; panics if it is not one.
    #[track_caller]
    pub fn parse(bytes: &[u8]) -> HttpReply {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(bytes) {
            Ok(httparse::Status::Complete(head)) => HttpReply {
                status: response.code.expect("status code"),
                headers: response
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect(),
                body: bytes[head..].to_vec(),
            },
            other => panic!(
                "not a complete HTTP response ({other:?}): {:?}",
                String::from_utf8_lossy(bytes)
            ),
        }
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

// ---------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------

/// A running server that is shut down (without grace) when dropped.
#[derive(Debug)]
pub struct TestServer {
    handle: ServerHandle,
    addr: SocketAddr,
}

impl TestServer {
    /// The listening address of the test's transport: the first TLS one under
    /// TLS, else the first plain one.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The handle.
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }
}

impl Deref for TestServer {
    type Target = ServerHandle;

    fn deref(&self) -> &ServerHandle {
        &self.handle
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        transport::unregister_tls(self.handle.tls_addrs());
        // Shut down on another thread so a stuck worker cannot hang the test.
        let handle = self.handle.clone();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            handle.shutdown(Duration::ZERO);
            let _ = done_tx.send(());
        });
        if done_rx.recv_timeout(TIMEOUT).is_err() {
            eprintln!("warning: a test server did not shut down within {TIMEOUT:?}");
        }
    }
}

/// `builder` listening on `127.0.0.1:0` with the test's transport (TLS with
/// the test certificate, or plain).
fn bind_for_transport(builder: Builder) -> Builder {
    match transport::transport() {
        Transport::Plain => builder.bind("127.0.0.1:0"),
        Transport::Tls => builder.bind_tls("127.0.0.1:0").tls(pki().server.clone()),
    }
}

/// The address a test connects to on the server of `handle` (whose TLS
/// listeners the test's clients are told of).
fn register_for_transport(handle: &ServerHandle) -> SocketAddr {
    transport::register_tls(handle.tls_addrs());
    match transport::transport() {
        Transport::Tls => handle.tls_addrs()[0],
        Transport::Plain => handle.local_addr(),
    }
}

/// Starts a server on `127.0.0.1:0` with `backend` and 2 workers, after
/// `configure` adjusted the builder; a TLS listener when the test runs over
/// TLS ([`with_transport`]). Panics if it does not start.
pub fn start<H, F>(
    backend: BackendKind,
    configure: impl FnOnce(Builder) -> Builder,
    factory: F,
) -> TestServer
where
    H: Handler,
    F: Fn() -> H + Send + Sync + 'static,
{
    let builder = bind_for_transport(Server::builder().backend(backend).workers(2));
    let server = configure(builder)
        .build()
        .expect("valid test configuration");
    let handle = server.start(factory).expect("the server starts");
    let addr = register_for_transport(&handle);
    let server = TestServer { handle, addr };
    assert_eq!(
        server.backend(),
        backend,
        "the server runs another backend than requested (is {} set?)",
        BackendKind::ENV
    );
    server
}

/// A server in [`Server::run`] on a thread of the test's: worker 0 runs there.
#[derive(Debug)]
pub struct RunningServer {
    /// The handle `run` gave to its `started` callback.
    pub handle: ServerHandle,
    /// The listening address of the test's transport.
    pub addr: SocketAddr,
    /// The kernel's id of the thread in `run` (for a signal sent to it alone).
    pub tid: libc::pid_t,
    /// The thread, named `name`; it ends with what `run` returned and whether
    /// SIGTERM was blocked on it after `run` returned.
    pub thread: std::thread::JoinHandle<(Result<(), String>, bool)>,
}

/// Whether SIGTERM is blocked on the calling thread.
pub fn sigterm_blocked() -> bool {
    // SAFETY: pthread_sigmask with no new set only writes the current mask
    // into a sigset_t we own; sigismember reads it.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
        libc::sigismember(&mask, libc::SIGTERM) == 1
    }
}

/// Runs a server with `backend` on `127.0.0.1:0` (a TLS listener when the
/// test runs over TLS) through [`Server::run`] on a new thread named `name`,
/// after `configure` adjusted the builder; returns once `run` has called its
/// `started` callback.
pub fn run_on_thread<H, F>(
    backend: BackendKind,
    name: &str,
    configure: impl FnOnce(Builder) -> Builder,
    factory: F,
) -> RunningServer
where
    H: Handler,
    F: Fn() -> H + Send + Sync + 'static,
{
    let builder = bind_for_transport(Server::builder().backend(backend));
    let server = configure(builder)
        .build()
        .expect("valid test configuration");
    let (started_tx, started_rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let result = server.run(factory, |handle| {
                let _ = started_tx.send((handle.clone(), tid));
            });
            (result.map_err(|e| e.to_string()), sigterm_blocked())
        })
        .expect("spawn the run thread");
    let (handle, tid) = started_rx
        .recv_timeout(TIMEOUT)
        .expect("Server::run calls started");
    let addr = register_for_transport(&handle);
    assert_eq!(handle.backend(), backend, "the server runs another backend");
    RunningServer {
        handle,
        addr,
        tid,
        thread,
    }
}

impl RunningServer {
    /// Waits for the thread in `run` to end: what `run` returned, and whether
    /// SIGTERM was still blocked on that thread afterwards.
    pub fn join(self) -> (Result<(), String>, bool) {
        transport::unregister_tls(self.handle.tls_addrs());
        let deadline = Instant::now() + TIMEOUT;
        while !self.thread.is_finished() {
            assert!(Instant::now() < deadline, "Server::run did not return");
            std::thread::sleep(Duration::from_millis(5));
        }
        self.thread.join().expect("the run thread panicked")
    }
}

/// Whether this machine can run `backend`: `Err` with the reason when the
/// engine reports it unavailable (io_uring missing or disabled). Probed once
/// per backend and process.
pub fn backend_available(backend: BackendKind) -> Result<(), String> {
    static PROBES: Mutex<Vec<(BackendKind, Result<(), String>)>> = Mutex::new(Vec::new());
    let mut probes = PROBES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, known)) = probes.iter().find(|(b, _)| *b == backend) {
        return known.clone();
    }
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .backend(backend)
        .workers(1)
        .build()
        .expect("valid probe configuration");
    let result = match server.start(Echo::new) {
        Ok(handle) => {
            handle.shutdown(Duration::ZERO);
            Ok(())
        }
        Err(StartError::Backend(why)) => Err(format!("backend {backend:?} unavailable: {why}")),
        Err(e) => panic!("a probe server with backend {backend:?} failed to start: {e}"),
    };
    probes.push((backend, result.clone()));
    result
}

/// Polls `condition` every few milliseconds until it holds; panics (naming
/// `what`) if it does not within [`TIMEOUT`]. For state with no event to wait on,
/// such as [`ServerHandle::stats`].
#[track_caller]
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The value of the sample `name` (without labels beyond `backend`) in the
/// server's metrics text, once it has been published (the workers publish once
/// per loop turn): polls until it is non-zero or [`TIMEOUT`] passes, then
/// returns what it last read.
pub fn wait_for_metric(server: &ServerHandle, name: &str) -> u64 {
    let read = || {
        server
            .metrics()
            .lines()
            .find_map(|line| {
                let rest = line.strip_prefix(name)?;
                rest.starts_with('{')
                    .then(|| rest.rsplit(' ').next()?.parse().ok())
                    .flatten()
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let value = read();
        if value > 0 || Instant::now() >= deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Raises the soft limit of open files to at least `wanted` (up to the hard
/// limit). Returns the soft limit now in force, or an error if the hard limit is
/// below `wanted`.
pub fn raise_fd_limit(wanted: u64) -> Result<u64, String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own and pass by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(format!("getrlimit: {}", io::Error::last_os_error()));
    }
    // rlim_t is u64 on 64-bit Linux, narrower elsewhere.
    #[allow(clippy::useless_conversion)]
    let (soft, hard) = (u64::from(limit.rlim_cur), u64::from(limit.rlim_max));
    if soft >= wanted {
        return Ok(soft);
    }
    if hard < wanted {
        return Err(format!(
            "the hard limit of open files is {hard}, below {wanted}"
        ));
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit only reads the struct, which lives across the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(format!("setrlimit: {}", io::Error::last_os_error()));
    }
    Ok(hard)
}

// ---------------------------------------------------------------------------
// Server events
// ---------------------------------------------------------------------------

/// What the [`Echo`] handler saw, for the test thread to assert on.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// `on_open`: the id, the peer, the worker thread's name and the request path.
    Open {
        /// The connection.
        id: ConnId,
        /// `ws.peer_addr()`.
        peer: SocketAddr,
        /// Name of the worker thread, e.g. `ringws-0`.
        worker: String,
        /// The request path.
        path: String,
    },
    /// `on_close`.
    Close {
        /// The connection.
        id: ConnId,
        /// The close code given to on_close.
        code: u16,
        /// The reason given to on_close.
        reason: String,
        /// Why the connection ended.
        cause: CloseCause,
    },
    /// `on_drain`.
    Drain {
        /// The connection.
        id: ConnId,
    },
    /// `on_ping`.
    Ping {
        /// The connection.
        id: ConnId,
        /// The ping's payload.
        payload: Vec<u8>,
    },
    /// `on_pong`.
    Pong {
        /// The connection.
        id: ConnId,
        /// The pong's payload.
        payload: Vec<u8>,
    },
    /// A `!stall` command started: the worker is blocked from now on.
    Stalled {
        /// The connection that asked.
        id: ConnId,
    },
    /// The outcome of a `!flood` command.
    Flood {
        /// The connection.
        id: ConnId,
        /// Sends that returned [`SendStatus::Sent`].
        sent: usize,
        /// Sends that returned [`SendStatus::Backpressure`] (queued too).
        backpressure: usize,
        /// Sends that returned [`SendStatus::Dropped`].
        dropped: usize,
        /// `buffered_amount()` after the sends.
        buffered: usize,
    },
}

impl ServerEvent {
    /// Whether this is `on_drain` of connection `id`.
    pub fn is_drain_of(&self, id: ConnId) -> bool {
        matches!(self, ServerEvent::Drain { id: drained } if *drained == id)
    }
}

/// The receiving end of the handlers' reports.
#[derive(Debug)]
pub struct Events {
    rx: Receiver<ServerEvent>,
}

/// A channel for [`ServerEvent`]s: give the sender to [`Echo::reporting`].
pub fn events() -> (Sender<ServerEvent>, Events) {
    let (tx, rx) = mpsc::channel();
    (tx, Events { rx })
}

impl Events {
    /// The next event within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<ServerEvent> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Waits up to [`TIMEOUT`] for an event `pick` accepts, discarding the
    /// others; panics (naming `what`) on timeout.
    #[track_caller]
    pub fn wait<T>(&self, what: &str, mut pick: impl FnMut(&ServerEvent) -> Option<T>) -> T {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(event) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("no {what} reported within {TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("no {what} reported before every handler was dropped")
                }
            }
        }
    }

    /// The id of the next connection opened.
    #[track_caller]
    pub fn open(&self) -> ConnId {
        self.wait("on_open", |e| match e {
            ServerEvent::Open { id, .. } => Some(*id),
            _ => None,
        })
    }

    /// The next open: id and worker thread name.
    #[track_caller]
    pub fn open_on_worker(&self) -> (ConnId, String) {
        self.wait("on_open", |e| match e {
            ServerEvent::Open { id, worker, .. } => Some((*id, worker.clone())),
            _ => None,
        })
    }

    /// What on_close got for `id`: code, reason, cause.
    #[track_caller]
    pub fn close_of(&self, id: ConnId) -> (u16, String, CloseCause) {
        self.wait(&format!("on_close of {id}"), |e| match e {
            ServerEvent::Close {
                id: closed,
                code,
                reason,
                cause,
            } if *closed == id => Some((*code, reason.clone(), *cause)),
            _ => None,
        })
    }

    /// The next on_close of any connection: id, code, reason, cause.
    #[track_caller]
    pub fn any_close(&self) -> (ConnId, u16, String, CloseCause) {
        self.wait("on_close", |e| match e {
            ServerEvent::Close {
                id,
                code,
                reason,
                cause,
            } => Some((*id, *code, reason.clone(), *cause)),
            _ => None,
        })
    }

    /// Waits for on_drain of `id`.
    #[track_caller]
    pub fn drain_of(&self, id: ConnId) {
        self.wait(&format!("on_drain of {id}"), |e| {
            e.is_drain_of(id).then_some(())
        })
    }

    /// The next `!flood` outcome: (sent, backpressure, dropped, buffered).
    #[track_caller]
    pub fn flood(&self) -> (usize, usize, usize, usize) {
        self.wait("flood result", |e| match e {
            ServerEvent::Flood {
                sent,
                backpressure,
                dropped,
                buffered,
                ..
            } => Some((*sent, *backpressure, *dropped, *buffered)),
            _ => None,
        })
    }

    /// Waits for a `!stall` to begin.
    #[track_caller]
    pub fn stalled(&self) {
        self.wait("stall", |e| {
            matches!(e, ServerEvent::Stalled { .. }).then_some(())
        })
    }

    /// Takes every event already reported.
    pub fn take_all(&self) -> Vec<ServerEvent> {
        self.rx.try_iter().collect()
    }
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

/// Per-connection data of [`Echo`].
#[derive(Debug)]
pub struct ConnState {
    /// The request path.
    pub path: String,
    /// Sequence number of the next `!flood` message.
    pub seq: u64,
}

/// The test handler: echoes every message and reports to an [`Events`] channel.
///
/// Upgrade routes: `/reject` answers 401 (body `unauthorized`, header
/// `WWW-Authenticate: Bearer`); `/auth` needs `Authorization: Bearer secret`
/// (else 401); `/bad-protocol` accepts with a subprotocol nobody offered (the
/// server must answer 500); `/unlimited` lifts the server's rate limit for that
/// connection. Elsewhere, `chat.v2` is chosen if offered, and every
/// 101 carries `X-Ringws-Test: yes`. Plain HTTP: `GET /health` answers 200 `ok`,
/// `GET /bytes/N` 200 with the `N` bytes of [`pattern_bytes`].
///
/// With [`with_commands`](Self::with_commands), text messages starting with `!`
/// are commands instead of being echoed:
/// - `!close CODE REASON`: `ws.close(CODE, REASON)`
/// - `!terminate`: `ws.terminate()`
/// - `!sub TOPIC` / `!unsub TOPIC`: (un)subscribe, answered `subscribed TOPIC` /
///   `unsubscribed TOPIC`
/// - `!pub TOPIC TEXT`: `ws.publish(TOPIC, TEXT)`
/// - `!stall MS`: reports [`ServerEvent::Stalled`], then blocks the worker
///   thread for MS milliseconds (so that several things reach its sockets
///   before it looks again)
/// - `!flood COUNT SIZE`: sends COUNT binary messages of SIZE bytes made by
///   [`flood_payload`] with consecutive sequence numbers (a dropped send does not
///   use a number), then reports [`ServerEvent::Flood`].
#[derive(Debug, Clone, Default)]
pub struct Echo {
    events: Option<Sender<ServerEvent>>,
    commands: bool,
    subscribe_on_open: Option<String>,
    send_on_open: (usize, usize),
}

impl Echo {
    /// A plain echo that reports nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// An echo that reports to `events`.
    pub fn reporting(events: Sender<ServerEvent>) -> Self {
        Self {
            events: Some(events),
            ..Self::default()
        }
    }

    /// Interprets `!` commands.
    pub fn with_commands(mut self) -> Self {
        self.commands = true;
        self
    }

    /// Subscribes every connection to `topic` in on_open.
    pub fn subscribe_on_open(mut self, topic: &str) -> Self {
        self.subscribe_on_open = Some(topic.to_owned());
        self
    }

    /// Sends `count` texts of `size` bytes in on_open: `msg 0 `, `msg 1 `, ...
    /// padded with dots.
    pub fn send_on_open(mut self, count: usize, size: usize) -> Self {
        self.send_on_open = (count, size);
        self
    }

    fn report(&self, event: ServerEvent) {
        if let Some(events) = &self.events {
            // The test may be gone already (a server outliving its test).
            let _ = events.send(event);
        }
    }

    fn command(&mut self, ws: &mut WebSocket<'_, ConnState>, command: &str) {
        let mut words = command.splitn(3, ' ');
        let verb = words.next().unwrap_or("");
        let arg1 = words.next().unwrap_or("");
        let rest = words.next().unwrap_or("");
        match verb {
            "close" => ws.close(CloseCode(arg1.parse().expect("close code")), rest),
            "terminate" => ws.terminate(),
            "sub" => {
                ws.subscribe(arg1);
                ws.send_text(&format!("subscribed {arg1}"));
            }
            "unsub" => {
                ws.unsubscribe(arg1);
                ws.send_text(&format!("unsubscribed {arg1}"));
            }
            "pub" => ws.publish(arg1, Message::Text(rest)),
            "stall" => {
                let ms: u64 = arg1.parse().expect("stall milliseconds");
                self.report(ServerEvent::Stalled { id: ws.id() });
                // Blocks the whole worker, as a slow handler would.
                std::thread::sleep(Duration::from_millis(ms));
            }
            "flood" => {
                let count: usize = arg1.parse().expect("flood count");
                let size: usize = rest.parse().expect("flood size");
                let (mut sent, mut backpressure, mut dropped) = (0, 0, 0);
                for _ in 0..count {
                    let seq = ws.data().seq;
                    match ws.send_binary(&flood_payload(seq, size)) {
                        SendStatus::Sent => sent += 1,
                        SendStatus::Backpressure => backpressure += 1,
                        SendStatus::Dropped => {
                            dropped += 1;
                            continue;
                        }
                    }
                    ws.data_mut().seq += 1;
                }
                let id = ws.id();
                let buffered = ws.buffered_amount();
                self.report(ServerEvent::Flood {
                    id,
                    sent,
                    backpressure,
                    dropped,
                    buffered,
                });
            }
            other => panic!("unknown test command {other:?}"),
        }
    }
}

/// A `!flood` message: the sequence number (8 bytes, big endian), then bytes
/// derived from it, `size` bytes in all (at least 8).
pub fn flood_payload(seq: u64, size: usize) -> Vec<u8> {
    let mut payload = Vec::with_capacity(size.max(8));
    payload.extend_from_slice(&seq.to_be_bytes());
    payload.extend((8..size).map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8));
    payload
}

/// The body of [`Echo`]'s `GET /bytes/N`: `N` bytes, byte `i` being
/// `i % 251` (a prime, so that no power-of-two chunking lines up with it).
pub fn pattern_bytes(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// The upgrade routes of [`Echo`].
fn route_upgrade(request: &UpgradeRequest<'_>) -> Upgrade<ConnState> {
    let data = ConnState {
        path: request.path().to_owned(),
        seq: 0,
    };
    match request.path() {
        "/reject" => Upgrade::reject(401, "unauthorized").header("WWW-Authenticate", "Bearer"),
        "/auth" if request.header("Authorization") != Some("Bearer secret") => {
            Upgrade::reject(401, "unauthorized")
        }
        "/bad-protocol" => Upgrade::accept(data).protocol("not-offered"),
        "/unlimited" => Upgrade::accept(data).rate_limit(RateLimit::none()),
        _ => {
            let mut upgrade = Upgrade::accept(data).header("X-Ringws-Test", "yes");
            if request.offers_protocol("chat.v2") {
                upgrade = upgrade.protocol("chat.v2");
            }
            upgrade
        }
    }
}

impl Handler for Echo {
    type Data = ConnState;

    fn on_upgrade(
        &mut self,
        request: &UpgradeRequest<'_>,
        _peer: SocketAddr,
    ) -> Upgrade<ConnState> {
        route_upgrade(request)
    }

    fn on_open(&mut self, ws: &mut WebSocket<'_, ConnState>) {
        if let Some(topic) = &self.subscribe_on_open {
            ws.subscribe(topic);
        }
        let (count, size) = self.send_on_open;
        for i in 0..count {
            let mut text = format!("msg {i} ");
            if text.len() < size {
                text.extend(std::iter::repeat_n('.', size - text.len()));
            }
            ws.send_text(&text);
        }
        let worker = std::thread::current().name().unwrap_or("?").to_owned();
        self.report(ServerEvent::Open {
            id: ws.id(),
            peer: ws.peer_addr(),
            worker,
            path: ws.data().path.clone(),
        });
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, ConnState>, message: Message<'_>) {
        if self.commands
            && let Message::Text(text) = message
            && let Some(command) = text.strip_prefix('!')
        {
            return self.command(ws, command);
        }
        ws.send(message);
    }

    fn on_ping(&mut self, ws: &mut WebSocket<'_, ConnState>, payload: &[u8]) {
        self.report(ServerEvent::Ping {
            id: ws.id(),
            payload: payload.to_vec(),
        });
    }

    fn on_pong(&mut self, ws: &mut WebSocket<'_, ConnState>, payload: &[u8]) {
        self.report(ServerEvent::Pong {
            id: ws.id(),
            payload: payload.to_vec(),
        });
    }

    fn on_drain(&mut self, ws: &mut WebSocket<'_, ConnState>) {
        self.report(ServerEvent::Drain { id: ws.id() });
    }

    fn on_close(
        &mut self,
        id: ConnId,
        _data: ConnState,
        code: CloseCode,
        reason: &str,
        cause: CloseCause,
    ) {
        self.report(ServerEvent::Close {
            id,
            code: code.0,
            reason: reason.to_owned(),
            cause,
        });
    }

    fn on_http(&mut self, request: &HttpRequest<'_>) -> Option<HttpResponse> {
        if request.path == "/health" {
            return Some(HttpResponse::text(200, "ok\n"));
        }
        let size: usize = request.path.strip_prefix("/bytes/")?.parse().ok()?;
        Some(HttpResponse {
            status: 200,
            headers: vec![("Content-Type".into(), "application/octet-stream".into())],
            body: pattern_bytes(size),
        })
    }
}
