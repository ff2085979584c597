//! A small blocking HTTP/2 client (RFC 9113) for the tests of WebSockets over
//! HTTP/2 (RFC 8441, extended CONNECT) and of plain requests over HTTP/2.
//!
//! [`H2Client`] speaks over a [`Stream`]: TLS with ALPN `h2`
//! ([`Stream::connect_h2`]) to a test server's TLS listener, else plain TCP
//! with prior knowledge. It sends the preface and its SETTINGS, acknowledges
//! the server's SETTINGS and PINGs, grants flow-control window for the DATA it
//! receives (switchable off per stream or altogether), encodes its header
//! blocks with HPACK (`loona-hpack`) and decodes the server's.
//!
//! Every frame read is both returned by [`H2Client::recv_event`] as an
//! [`Event`] and recorded in the state of its stream: the response headers,
//! the body, END_STREAM, RST_STREAM, and for a WebSocket stream the WebSocket
//! messages decoded from its DATA by a client-role [`Decoder`] (and
//! [`Session`], for permessage-deflate) of its own, as [`crate::Client`]
//! decodes a connection's bytes. The higher-level calls
//! ([`H2Client::recv_ws`], [`H2Client::read_response`], ...) read frames until
//! the state they wait for is there, so frames of other streams read on the
//! way are kept for later.
//!
//! What the client sends it sends as asked: masked WebSocket frames
//! ([`write_frame`], as [`crate::Client`] does), and for hostile tests any
//! frame ([`H2Client::send_frame`]), header blocks of any content
//! ([`H2Client::header_block`], [`literal_block`]), CONTINUATION sequences,
//! several frames in one write ([`H2Client::cork`]). Every wait is bounded:
//! each read by the socket's timeout ([`TIMEOUT`]), each wait for a state by
//! [`TIMEOUT`] in all.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use loona_hpack::{Decoder as HpackDecoder, Encoder as HpackEncoder};
use ringws::proto::Role;
use ringws::proto::deflate::{self, DeflateConfig};
use ringws::proto::frame::{MaskKeys, OpCode, write_frame};
use ringws::proto::handshake::parse_extensions;
use ringws::proto::message::Decoder;
use ringws::proto::session::{Endpoint, InflateBuffer, Session};

use crate::{CLIENT_LEVEL, CLIENT_MAX_MESSAGE, Msg, Stream, TIMEOUT, is_disconnect, read_some};

/// The client connection preface (RFC 9113 section 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The initial flow-control window of every stream and of the connection.
pub const DEFAULT_WINDOW: u32 = 65_535;

/// Largest flow-control window (2^31 - 1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

/// Frame types (RFC 9113 section 6).
pub mod kind {
    /// DATA.
    pub const DATA: u8 = 0x0;
    /// HEADERS.
    pub const HEADERS: u8 = 0x1;
    /// PRIORITY.
    pub const PRIORITY: u8 = 0x2;
    /// RST_STREAM.
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS.
    pub const SETTINGS: u8 = 0x4;
    /// PUSH_PROMISE.
    pub const PUSH_PROMISE: u8 = 0x5;
    /// PING.
    pub const PING: u8 = 0x6;
    /// GOAWAY.
    pub const GOAWAY: u8 = 0x7;
    /// WINDOW_UPDATE.
    pub const WINDOW_UPDATE: u8 = 0x8;
    /// CONTINUATION.
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    /// END_STREAM (DATA, HEADERS).
    pub const END_STREAM: u8 = 0x1;
    /// ACK (SETTINGS, PING).
    pub const ACK: u8 = 0x1;
    /// END_HEADERS (HEADERS, CONTINUATION, PUSH_PROMISE).
    pub const END_HEADERS: u8 = 0x4;
    /// PADDED (DATA, HEADERS, PUSH_PROMISE).
    pub const PADDED: u8 = 0x8;
    /// PRIORITY (HEADERS).
    pub const PRIORITY: u8 = 0x20;
}

/// Error codes (RFC 9113 section 7).
pub mod error {
    /// NO_ERROR.
    pub const NO_ERROR: u32 = 0x0;
    /// PROTOCOL_ERROR.
    pub const PROTOCOL_ERROR: u32 = 0x1;
    /// INTERNAL_ERROR.
    pub const INTERNAL_ERROR: u32 = 0x2;
    /// FLOW_CONTROL_ERROR.
    pub const FLOW_CONTROL_ERROR: u32 = 0x3;
    /// SETTINGS_TIMEOUT.
    pub const SETTINGS_TIMEOUT: u32 = 0x4;
    /// STREAM_CLOSED.
    pub const STREAM_CLOSED: u32 = 0x5;
    /// FRAME_SIZE_ERROR.
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    /// REFUSED_STREAM.
    pub const REFUSED_STREAM: u32 = 0x7;
    /// CANCEL.
    pub const CANCEL: u32 = 0x8;
    /// COMPRESSION_ERROR.
    pub const COMPRESSION_ERROR: u32 = 0x9;
    /// CONNECT_ERROR.
    pub const CONNECT_ERROR: u32 = 0xa;
    /// ENHANCE_YOUR_CALM.
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
    /// INADEQUATE_SECURITY.
    pub const INADEQUATE_SECURITY: u32 = 0xc;
    /// HTTP_1_1_REQUIRED.
    pub const HTTP_1_1_REQUIRED: u32 = 0xd;
}

/// SETTINGS identifiers (RFC 9113 section 6.5.2, RFC 8441 section 3).
pub mod setting {
    /// SETTINGS_HEADER_TABLE_SIZE.
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    /// SETTINGS_ENABLE_PUSH.
    pub const ENABLE_PUSH: u16 = 0x2;
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    /// SETTINGS_INITIAL_WINDOW_SIZE.
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    /// SETTINGS_MAX_FRAME_SIZE.
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    /// SETTINGS_MAX_HEADER_LIST_SIZE.
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441).
    pub const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
}

/// The name of an error code, for messages.
pub fn error_name(code: u32) -> &'static str {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    NAMES.get(code as usize).copied().unwrap_or("unknown")
}

/// One frame: the 9-byte header, then `payload`.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + payload.len());
    push_frame(&mut out, kind, flags, stream, payload);
    out
}

fn push_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    assert!(
        payload.len() < 1 << 24,
        "a frame payload of {}",
        payload.len()
    );
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & MAX_WINDOW).to_be_bytes());
    out.extend_from_slice(payload);
}

/// A SETTINGS payload.
pub fn settings_payload(settings: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(6 * settings.len());
    for (id, value) in settings {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    payload
}

/// A header block of literal fields without indexing, names and values as
/// given (no Huffman coding, no dynamic table: a block whose bytes a test
/// controls exactly and that changes no HPACK state).
pub fn literal_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in headers {
        literal_field(&mut block, name.as_bytes(), value.as_bytes());
    }
    block
}

fn literal_field(block: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    // Literal header field without indexing, new name: 0000 0000.
    block.push(0);
    for string in [name, value] {
        // H = 0, the length with a 7-bit prefix.
        block.extend(loona_hpack::encoder::encode_integer(string.len(), 7));
        block.extend_from_slice(string);
    }
}

/// Shows at most 32 bytes.
fn short(bytes: &[u8]) -> String {
    crate::short(bytes)
}

/// A frame received from the server, decoded. A HEADERS frame and its
/// CONTINUATIONs come as one [`Event::Headers`].
#[derive(Clone, PartialEq, Eq)]
pub enum Event {
    /// DATA (padding removed).
    Data {
        /// The stream.
        stream: u32,
        /// The payload.
        data: Vec<u8>,
        /// END_STREAM.
        end_stream: bool,
    },
    /// A complete header block (HEADERS and CONTINUATIONs), decoded.
    Headers {
        /// The stream.
        stream: u32,
        /// The fields in order, pseudo-headers included.
        headers: Vec<(String, String)>,
        /// END_STREAM.
        end_stream: bool,
    },
    /// RST_STREAM.
    RstStream {
        /// The stream.
        stream: u32,
        /// The error code.
        code: u32,
    },
    /// SETTINGS.
    Settings {
        /// An acknowledgement of ours.
        ack: bool,
        /// The parameters (none in an ACK).
        settings: Vec<(u16, u32)>,
    },
    /// PING.
    Ping {
        /// An answer to ours.
        ack: bool,
        /// The opaque data.
        payload: [u8; 8],
    },
    /// GOAWAY.
    GoAway(GoAway),
    /// WINDOW_UPDATE.
    WindowUpdate {
        /// The stream (0: the connection).
        stream: u32,
        /// The increment.
        increment: u32,
    },
    /// Any other frame (PRIORITY, PUSH_PROMISE, unknown types), raw.
    Other {
        /// The type.
        kind: u8,
        /// The flags.
        flags: u8,
        /// The stream.
        stream: u32,
        /// The payload.
        payload: Vec<u8>,
    },
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Data {
                stream,
                data,
                end_stream,
            } => write!(
                f,
                "Data {{ stream: {stream}, data: {}, end_stream: {end_stream} }}",
                short(data)
            ),
            Event::Headers {
                stream,
                headers,
                end_stream,
            } => write!(
                f,
                "Headers {{ stream: {stream}, headers: {headers:?}, end_stream: {end_stream} }}"
            ),
            Event::RstStream { stream, code } => write!(
                f,
                "RstStream {{ stream: {stream}, code: {code} ({}) }}",
                error_name(*code)
            ),
            Event::Settings { ack, settings } => {
                write!(f, "Settings {{ ack: {ack}, settings: {settings:?} }}")
            }
            Event::Ping { ack, payload } => {
                write!(f, "Ping {{ ack: {ack}, payload: {payload:?} }}")
            }
            Event::GoAway(goaway) => write!(f, "{goaway:?}"),
            Event::WindowUpdate { stream, increment } => write!(
                f,
                "WindowUpdate {{ stream: {stream}, increment: {increment} }}"
            ),
            Event::Other {
                kind,
                flags,
                stream,
                payload,
            } => write!(
                f,
                "Other {{ kind: {kind:#x}, flags: {flags:#x}, stream: {stream}, payload: {} }}",
                short(payload)
            ),
        }
    }
}

/// A GOAWAY frame.
#[derive(Clone, PartialEq, Eq)]
pub struct GoAway {
    /// The last stream the server processed or may process.
    pub last_stream: u32,
    /// The error code.
    pub code: u32,
    /// The debug data.
    pub debug: Vec<u8>,
}

impl fmt::Debug for GoAway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GoAway {{ last_stream: {}, code: {} ({}), debug: {:?} }}",
            self.last_stream,
            self.code,
            error_name(self.code),
            String::from_utf8_lossy(&self.debug)
        )
    }
}

/// A response: its header fields and the body received with it.
#[derive(Clone)]
pub struct Response {
    /// `:status`.
    pub status: u16,
    /// Every field of the header block, `:status` included, in order.
    pub headers: Vec<(String, String)>,
    /// The body: the DATA received on the stream (all of it after
    /// [`H2Client::read_response`]; none yet after [`H2Client::response`]).
    pub body: Vec<u8>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &short(&self.body))
            .finish()
    }
}

impl Response {
    /// The first field called `name` (case-insensitive).
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

/// How [`H2Client::open_websocket_with`] opens a WebSocket stream.
#[derive(Debug, Clone, Default)]
pub struct WsOptions {
    /// `:path`; empty means `/`.
    pub path: String,
    /// Subprotocols offered (`sec-websocket-protocol`).
    pub protocols: Vec<String>,
    /// `sec-websocket-extensions`, as is (see also `deflate`).
    pub extensions: Option<String>,
    /// Offer permessage-deflate with these settings (and decode compressed
    /// messages if the server accepts).
    pub deflate: Option<DeflateConfig>,
    /// Further fields, after the others.
    pub headers: Vec<(String, String)>,
}

/// A WebSocket carried by a stream: its decoder and the messages decoded.
struct WsState {
    decoder: Decoder,
    endpoint: Endpoint,
    session: Session,
    inflated: InflateBuffer,
    /// Received bytes not decoded yet.
    buf: Vec<u8>,
    messages: VecDeque<Msg>,
    /// The first protocol violation by the server, after which nothing more is
    /// decoded.
    error: Option<String>,
}

impl WsState {
    fn new(session: Session) -> Self {
        Self {
            decoder: Decoder::new(),
            endpoint: Endpoint::new(
                Role::Client,
                CLIENT_MAX_MESSAGE,
                CLIENT_MAX_MESSAGE,
                CLIENT_LEVEL,
            ),
            session,
            inflated: InflateBuffer::new(),
            buf: Vec::new(),
            messages: VecDeque::new(),
            error: None,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        if self.error.is_some() {
            return;
        }
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while start < self.buf.len() {
            let WsState {
                decoder,
                endpoint,
                session,
                inflated,
                buf,
                ..
            } = self;
            let config = *endpoint.decoder_config(session);
            let step = decoder.decode(&config, &mut buf[start..]);
            let (n, event) = match step {
                Ok(step) => step,
                Err(e) => {
                    self.error = Some(format!("server broke the WebSocket protocol: {e}"));
                    return;
                }
            };
            let msg = match event {
                Some(event) => match session.receive(endpoint, inflated, event) {
                    Ok(received) => Some(Msg::from_inbound(received.inbound)),
                    Err(e) => {
                        self.error = Some(format!("server broke the WebSocket protocol: {e}"));
                        return;
                    }
                },
                None => None,
            };
            self.inflated.release();
            start += n;
            if let Some(msg) = msg {
                self.messages.push_back(msg);
            }
            if n == 0 && start < self.buf.len() {
                // No progress and no event: cannot happen (the decoder
                // consumes a byte or yields an event); never loop on it.
                break;
            }
        }
        self.buf.drain(..start);
    }
}

/// What the client knows of one stream.
#[derive(Default)]
struct StreamState {
    /// Opened as a WebSocket (extended CONNECT).
    websocket: bool,
    /// permessage-deflate offered with these settings.
    deflate: Option<DeflateConfig>,
    /// The first header block received.
    response: Option<Vec<(String, String)>>,
    /// DATA received before or without a WebSocket.
    body: Vec<u8>,
    /// The WebSocket, once the server answered 200.
    ws: Option<Box<WsState>>,
    /// END_STREAM received.
    ended: bool,
    /// END_STREAM sent.
    half_closed: bool,
    /// The RST_STREAM received, if any.
    reset: Option<u32>,
    /// Our window for sending on it.
    send_window: i64,
    /// DATA bytes (flow-controlled length) received and not granted again yet.
    unacked: u32,
    /// Window granting is held for this stream.
    held: bool,
    /// DATA payload bytes received in all.
    received: usize,
}

/// A blocking HTTP/2 client connection; see the [module](self).
pub struct H2Client {
    stream: Stream,
    authority: String,
    encoder: HpackEncoder<'static>,
    decoder: HpackDecoder<'static>,
    keys: MaskKeys,
    /// Received bytes not yet parsed: `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A header block waiting for its CONTINUATIONs: stream, END_STREAM, bytes.
    partial: Option<(u32, bool, Vec<u8>)>,
    next_stream: u32,
    streams: BTreeMap<u32, StreamState>,
    /// The server's settings, latest value per identifier.
    server_settings: BTreeMap<u16, u32>,
    /// Whether the server's first SETTINGS frame has come.
    server_settings_seen: bool,
    /// ACKs of our SETTINGS received.
    settings_acks: usize,
    /// Our window for sending on the connection.
    conn_send_window: i64,
    /// DATA bytes received on the connection and not granted again yet.
    conn_unacked: u32,
    auto_window: bool,
    auto_ping: bool,
    goaway: Option<GoAway>,
    /// The server ended the connection (EOF or reset).
    closed: bool,
    /// Writes gathered by [`Self::cork`].
    corked: Option<Vec<u8>>,
    ping_seq: u64,
}

impl fmt::Debug for H2Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H2Client")
            .field("stream", &self.stream)
            .field("next_stream", &self.next_stream)
            .field("streams", &self.streams.len())
            .field("goaway", &self.goaway)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("timed out after {TIMEOUT:?} waiting for {what}"),
    )
}

impl H2Client {
    /// Connects to `addr` (TLS with ALPN `h2` to a test server's TLS listener,
    /// else plain with prior knowledge) and does the connection preface: ours
    /// and the server's SETTINGS, which is acknowledged.
    pub fn connect(addr: SocketAddr) -> io::Result<H2Client> {
        let mut client = Self::over(Stream::connect_h2(addr)?, addr);
        client.handshake()?;
        Ok(client)
    }

    /// A client on an open `stream` to `addr` that has sent nothing yet (see
    /// [`Self::handshake`]).
    pub fn over(stream: Stream, addr: SocketAddr) -> H2Client {
        H2Client {
            stream,
            authority: addr.to_string(),
            encoder: HpackEncoder::new(),
            decoder: HpackDecoder::new(),
            keys: MaskKeys::new(),
            buf: vec![0; 64 << 10],
            start: 0,
            end: 0,
            partial: None,
            next_stream: 1,
            streams: BTreeMap::new(),
            server_settings: BTreeMap::new(),
            server_settings_seen: false,
            settings_acks: 0,
            conn_send_window: i64::from(DEFAULT_WINDOW),
            conn_unacked: 0,
            auto_window: true,
            auto_ping: true,
            goaway: None,
            closed: false,
            corked: None,
            ping_seq: 0,
        }
    }

    /// Sends the preface and our SETTINGS (no push), then waits for the
    /// server's SETTINGS, which must be its first frame.
    pub fn handshake(&mut self) -> io::Result<()> {
        let mut out = PREFACE.to_vec();
        push_frame(
            &mut out,
            kind::SETTINGS,
            0,
            0,
            &settings_payload(&[(setting::ENABLE_PUSH, 0)]),
        );
        self.write(&out)?;
        match self.recv_event()? {
            Event::Settings { ack: false, .. } => Ok(()),
            other => Err(invalid(format!(
                "the server's first frame is not SETTINGS: {other:?}"
            ))),
        }
    }

    /// The connection.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Aborts the connection with a TCP RST (SO_LINGER 0, then close).
    pub fn reset(self) {
        self.stream.reset();
    }

    /// The `:authority` sent.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// A setting of the server's, as last announced.
    pub fn server_setting(&self, id: u16) -> Option<u32> {
        self.server_settings.get(&id).copied()
    }

    /// ACKs of our SETTINGS received so far.
    pub fn settings_acks(&self) -> usize {
        self.settings_acks
    }

    /// The GOAWAY received, if any.
    pub fn goaway(&self) -> Option<&GoAway> {
        self.goaway.as_ref()
    }

    /// Whether the server ended the connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The id the next stream opened will have.
    pub fn next_stream_id(&self) -> u32 {
        self.next_stream
    }

    /// Takes the next stream id (for a stream opened by hand).
    pub fn take_stream_id(&mut self) -> u32 {
        let id = self.next_stream;
        self.next_stream += 2;
        self.streams.entry(id).or_insert_with(|| StreamState {
            send_window: i64::from(
                self.server_settings
                    .get(&setting::INITIAL_WINDOW_SIZE)
                    .copied()
                    .unwrap_or(DEFAULT_WINDOW),
            ),
            ..StreamState::default()
        });
        id
    }

    /// Grants window for received DATA (on by default): a WINDOW_UPDATE each
    /// time half a window has been received, on the stream and on the
    /// connection. Off, the server's sends stall once the windows are used.
    pub fn set_auto_window(&mut self, on: bool) {
        self.auto_window = on;
    }

    /// Answers the server's PINGs (on by default).
    pub fn set_auto_ping(&mut self, on: bool) {
        self.auto_ping = on;
    }

    /// Stops granting window to `stream` (the connection's is still granted):
    /// the server's sends on it stall after 65,535 bytes.
    pub fn hold_window(&mut self, stream: u32) {
        self.state(stream).held = true;
    }

    /// Grants `stream` the window held back since [`Self::hold_window`], and
    /// grants it again from now on.
    pub fn release_window(&mut self, stream: u32) -> io::Result<()> {
        let state = self.state(stream);
        state.held = false;
        let unacked = std::mem::take(&mut state.unacked);
        if unacked > 0 {
            self.window_update(stream, unacked)?;
        }
        Ok(())
    }

    /// The window we have for sending on `stream`.
    pub fn send_window(&self, stream: u32) -> i64 {
        self.streams.get(&stream).map_or(0, |s| s.send_window)
    }

    /// The window we have for sending on the connection.
    pub fn conn_send_window(&self) -> i64 {
        self.conn_send_window
    }

    /// DATA payload bytes received on `stream`.
    pub fn received_bytes(&self, stream: u32) -> usize {
        self.streams.get(&stream).map_or(0, |s| s.received)
    }

    /// The RST_STREAM code received for `stream`, if any.
    pub fn reset_code(&self, stream: u32) -> Option<u32> {
        self.streams.get(&stream).and_then(|s| s.reset)
    }

    /// Whether the server ended `stream` (END_STREAM).
    pub fn stream_ended(&self, stream: u32) -> bool {
        self.streams.get(&stream).is_some_and(|s| s.ended)
    }

    fn state(&mut self, stream: u32) -> &mut StreamState {
        let initial = i64::from(
            self.server_settings
                .get(&setting::INITIAL_WINDOW_SIZE)
                .copied()
                .unwrap_or(DEFAULT_WINDOW),
        );
        self.streams.entry(stream).or_insert_with(|| StreamState {
            send_window: initial,
            ..StreamState::default()
        })
    }

    // -----------------------------------------------------------------------
    // Writing
    // -----------------------------------------------------------------------

    /// Gathers what is written from now on until [`Self::uncork`], which
    /// writes it at once (frames arriving together). A send that has to wait
    /// for window writes what was gathered first.
    pub fn cork(&mut self) {
        self.corked.get_or_insert_with(Vec::new);
    }

    /// Writes what was gathered since [`Self::cork`].
    pub fn uncork(&mut self) -> io::Result<()> {
        match self.corked.take() {
            Some(bytes) if !bytes.is_empty() => (&self.stream).write_all(&bytes),
            _ => Ok(()),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.corked {
            Some(corked) => {
                corked.extend_from_slice(bytes);
                Ok(())
            }
            None => (&self.stream).write_all(bytes),
        }
    }

    /// Writes what the client answers by itself (SETTINGS and PING ACKs,
    /// WINDOW_UPDATEs). A failure is not the reading caller's: the server may
    /// have closed the connection already, with frames still to be read.
    fn write_auto(&mut self, bytes: &[u8]) {
        let _ = self.write(bytes);
    }

    /// Writes bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write(bytes)
    }

    /// Writes one frame as given (no flow-control accounting, no checks).
    pub fn send_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        self.write(&frame(kind, flags, stream, payload))
    }

    /// Sends SETTINGS with these parameters.
    pub fn settings(&mut self, settings: &[(u16, u32)]) -> io::Result<()> {
        self.send_frame(kind::SETTINGS, 0, 0, &settings_payload(settings))
    }

    /// Sends a PING.
    pub fn ping(&mut self, payload: [u8; 8]) -> io::Result<()> {
        self.send_frame(kind::PING, 0, 0, &payload)
    }

    /// Sends a PING and reads until its ACK: every frame the server sent
    /// before the ACK has been read (and recorded) when this returns, so the
    /// server has processed every frame sent before.
    pub fn ping_roundtrip(&mut self) -> io::Result<()> {
        self.ping_seq += 1;
        let payload = (0x5049_4e47_0000_0000 | self.ping_seq).to_be_bytes();
        self.ping(payload)?;
        self.wait_for("the PING's ACK", |e| {
            matches!(e, Event::Ping { ack: true, payload: p } if *p == payload).then_some(())
        })
    }

    /// Sends WINDOW_UPDATE.
    pub fn window_update(&mut self, stream: u32, increment: u32) -> io::Result<()> {
        self.send_frame(kind::WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
    }

    /// Sends RST_STREAM.
    pub fn rst_stream(&mut self, stream: u32, code: u32) -> io::Result<()> {
        self.send_frame(kind::RST_STREAM, 0, stream, &code.to_be_bytes())
    }

    /// Sends GOAWAY.
    pub fn send_goaway(&mut self, last_stream: u32, code: u32) -> io::Result<()> {
        let mut payload = last_stream.to_be_bytes().to_vec();
        payload.extend_from_slice(&code.to_be_bytes());
        self.send_frame(kind::GOAWAY, 0, 0, &payload)
    }

    /// `headers` HPACK-encoded with the connection's encoder (whose dynamic
    /// table the server's decoder mirrors: send what this returns, or the
    /// connection's compression state is lost). Names and values go as given.
    pub fn header_block(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        self.encoder
            .encode(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    /// Sends a header block on `stream`: HEADERS, then CONTINUATIONs if it is
    /// larger than the server's frame size.
    pub fn send_header_block(
        &mut self,
        stream: u32,
        block: &[u8],
        end_stream: bool,
    ) -> io::Result<()> {
        let max = self.max_frame_size();
        let mut chunks = block.chunks(max).peekable();
        let first = chunks.next().unwrap_or(&[]);
        let mut out = Vec::with_capacity(block.len() + 9 * (1 + block.len() / max));
        let end = if end_stream { flag::END_STREAM } else { 0 };
        let last = chunks.peek().is_none();
        push_frame(
            &mut out,
            kind::HEADERS,
            end | if last { flag::END_HEADERS } else { 0 },
            stream,
            first,
        );
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            push_frame(
                &mut out,
                kind::CONTINUATION,
                if last { flag::END_HEADERS } else { 0 },
                stream,
                chunk,
            );
        }
        if end_stream {
            self.state(stream).half_closed = true;
        }
        self.write(&out)
    }

    /// Sends `headers` (encoded with the connection's encoder) on `stream`.
    pub fn send_headers(
        &mut self,
        stream: u32,
        headers: &[(&str, &str)],
        end_stream: bool,
    ) -> io::Result<()> {
        self.state(stream);
        let block = self.header_block(headers);
        self.send_header_block(stream, &block, end_stream)
    }

    fn max_frame_size(&self) -> usize {
        self.server_setting(setting::MAX_FRAME_SIZE)
            .unwrap_or(16_384) as usize
    }

    fn scheme(&self) -> &'static str {
        if self.stream.is_tls() {
            "https"
        } else {
            "http"
        }
    }

    /// Sends a request (HEADERS with END_STREAM) on a new stream and returns
    /// its id.
    pub fn request(&mut self, method: &str, path: &str) -> io::Result<u32> {
        let id = self.take_stream_id();
        let authority = self.authority.clone();
        let scheme = self.scheme();
        self.send_headers(
            id,
            &[
                (":method", method),
                (":scheme", scheme),
                (":authority", &authority),
                (":path", path),
            ],
            true,
        )?;
        Ok(id)
    }

    /// GETs `path` and reads the whole response.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        let id = self.request("GET", path)?;
        self.read_response(id)
    }

    /// The header fields of an extended CONNECT for `options` (pseudo-headers
    /// first).
    pub fn websocket_headers(&self, options: &WsOptions) -> Vec<(String, String)> {
        let path = if options.path.is_empty() {
            "/"
        } else {
            &options.path
        };
        let mut headers: Vec<(String, String)> = vec![
            (":method".into(), "CONNECT".into()),
            (":protocol".into(), "websocket".into()),
            (":scheme".into(), self.scheme().into()),
            (":path".into(), path.into()),
            (":authority".into(), self.authority.clone()),
            ("sec-websocket-version".into(), "13".into()),
        ];
        if !options.protocols.is_empty() {
            headers.push((
                "sec-websocket-protocol".into(),
                options.protocols.join(", "),
            ));
        }
        let mut extensions: Vec<String> = options.extensions.iter().cloned().collect();
        if let Some(config) = &options.deflate {
            extensions.push(deflate::client_offer(config));
        }
        if !extensions.is_empty() {
            headers.push(("sec-websocket-extensions".into(), extensions.join(", ")));
        }
        headers.extend(options.headers.iter().cloned());
        headers
    }

    /// Opens a WebSocket stream (extended CONNECT) to `path`, offering these
    /// subprotocols and extensions; returns the stream id without waiting for
    /// the answer ([`Self::response`]).
    pub fn open_websocket(
        &mut self,
        path: &str,
        protocols: &[&str],
        extensions: Option<&str>,
    ) -> io::Result<u32> {
        self.open_websocket_with(&WsOptions {
            path: path.into(),
            protocols: protocols.iter().map(|p| (*p).to_owned()).collect(),
            extensions: extensions.map(str::to_owned),
            ..WsOptions::default()
        })
    }

    /// Opens a WebSocket stream as `options` say; returns its id.
    pub fn open_websocket_with(&mut self, options: &WsOptions) -> io::Result<u32> {
        let headers = self.websocket_headers(options);
        let id = self.take_stream_id();
        let state = self.state(id);
        state.websocket = true;
        state.deflate = options.deflate;
        let fields: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        self.send_headers(id, &fields, false)?;
        Ok(id)
    }

    /// Opens a WebSocket stream to `path` and waits for the server to accept
    /// it (`:status 200`); an error with the response otherwise.
    pub fn websocket(&mut self, path: &str) -> io::Result<u32> {
        self.websocket_with(&WsOptions {
            path: path.into(),
            ..WsOptions::default()
        })
        .map(|(id, _)| id)
    }

    /// Opens a WebSocket stream as `options` say and waits for the server to
    /// accept it; returns the id and the response.
    pub fn websocket_with(&mut self, options: &WsOptions) -> io::Result<(u32, Response)> {
        let id = self.open_websocket_with(options)?;
        let response = self.response(id)?;
        if response.status != 200 {
            let response = self.read_response(id).unwrap_or(response);
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("the server refused WebSocket stream {id}: {response:?}"),
            ));
        }
        Ok((id, response))
    }

    /// Sends `data` on `stream` in DATA frames within the flow-control
    /// windows (reading the server's WINDOW_UPDATEs while they are used up)
    /// and the server's frame size; END_STREAM on the last if `end`.
    pub fn send_data(&mut self, stream: u32, data: &[u8], end: bool) -> io::Result<()> {
        self.state(stream);
        let deadline = Instant::now() + TIMEOUT;
        let mut rest = data;
        loop {
            if rest.is_empty() {
                if end || data.is_empty() {
                    self.write(&frame(
                        kind::DATA,
                        if end { flag::END_STREAM } else { 0 },
                        stream,
                        &[],
                    ))?;
                    if end {
                        self.state(stream).half_closed = true;
                    }
                }
                return Ok(());
            }
            let window = self.conn_send_window.min(self.state(stream).send_window);
            if window <= 0 {
                if let Some(corked) = &mut self.corked {
                    // What was gathered goes now, so that the server can
                    // grant more; gathering goes on after.
                    let bytes = std::mem::take(corked);
                    (&self.stream).write_all(&bytes)?;
                }
                if let Some(code) = self.reset_code(stream) {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        format!("stream {stream} was reset ({})", error_name(code)),
                    ));
                }
                if Instant::now() >= deadline {
                    return Err(timed_out(&format!("window to send on stream {stream}")));
                }
                self.recv_event()?;
                continue;
            }
            let n = rest.len().min(window as usize).min(self.max_frame_size());
            let last = n == rest.len();
            let flags = if last && end { flag::END_STREAM } else { 0 };
            self.write(&frame(kind::DATA, flags, stream, &rest[..n]))?;
            self.conn_send_window -= n as i64;
            let state = self.state(stream);
            state.send_window -= n as i64;
            if last && end {
                state.half_closed = true;
                return Ok(());
            }
            rest = &rest[n..];
            if rest.is_empty() {
                return Ok(());
            }
        }
    }

    /// Sends `data` on `stream` in DATA frames of at most `size` bytes each
    /// (fewer where the windows or the server's frame size cut them), without
    /// END_STREAM: a WebSocket frame cut at chosen offsets.
    pub fn send_data_in(&mut self, stream: u32, data: &[u8], size: usize) -> io::Result<()> {
        assert!(size > 0, "DATA frames of at least one byte");
        for piece in data.chunks(size) {
            self.send_data(stream, piece, false)?;
        }
        Ok(())
    }

    /// Sends one masked WebSocket frame on `stream` (FIN set).
    pub fn send_ws(&mut self, stream: u32, opcode: OpCode, payload: &[u8]) -> io::Result<()> {
        self.send_ws_frame(stream, true, opcode, payload)
    }

    /// Sends one masked WebSocket frame on `stream`.
    pub fn send_ws_frame(
        &mut self,
        stream: u32,
        fin: bool,
        opcode: OpCode,
        payload: &[u8],
    ) -> io::Result<()> {
        let mut out = Vec::new();
        write_frame(&mut out, fin, opcode, payload, Some(self.keys.next_key()));
        self.send_data(stream, &out, false)
    }

    /// Sends a text message on `stream`.
    pub fn send_ws_text(&mut self, stream: u32, text: &str) -> io::Result<()> {
        self.send_ws(stream, OpCode::Text, text.as_bytes())
    }

    /// Sends a binary message on `stream`.
    pub fn send_ws_binary(&mut self, stream: u32, data: &[u8]) -> io::Result<()> {
        self.send_ws(stream, OpCode::Binary, data)
    }

    /// Sends a close frame with this code and reason on `stream` (the
    /// stream stays open our way).
    pub fn send_ws_close(&mut self, stream: u32, code: u16, reason: &str) -> io::Result<()> {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.send_ws(stream, OpCode::Close, &payload)
    }

    /// Sends a close frame with this code and reason on `stream`, with
    /// END_STREAM: our side of the stream ends with it (the reply to the
    /// server's close, or [`Self::close_ws`]'s first step).
    pub fn send_ws_close_end(&mut self, stream: u32, code: u16, reason: &str) -> io::Result<()> {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        let mut out = Vec::new();
        write_frame(
            &mut out,
            true,
            OpCode::Close,
            &payload,
            Some(self.keys.next_key()),
        );
        self.send_data(stream, &out, true)
    }

    /// Sends a message compressed with permessage-deflate on `stream`, in
    /// `fragments` frames (RSV1 on the first only), as
    /// [`crate::Client::send_compressed`] does.
    pub fn send_ws_compressed(
        &mut self,
        stream: u32,
        text: bool,
        payload: &[u8],
        fragments: usize,
    ) -> io::Result<()> {
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        let mut out = Vec::new();
        {
            let ws = self
                .streams
                .get_mut(&stream)
                .and_then(|s| s.ws.as_mut())
                .ok_or_else(|| io::Error::other(format!("stream {stream} is no open WebSocket")))?;
            assert!(ws.session.deflate(), "permessage-deflate negotiated");
            ws.session.write_fragmented(
                &mut ws.endpoint,
                opcode,
                payload,
                true,
                fragments,
                &mut out,
            );
        }
        self.send_data(stream, &out, false)
    }

    /// Whether permessage-deflate is in effect on `stream`.
    pub fn ws_deflate(&self, stream: u32) -> bool {
        self.streams
            .get(&stream)
            .and_then(|s| s.ws.as_ref())
            .is_some_and(|ws| ws.session.deflate())
    }

    // -----------------------------------------------------------------------
    // Reading
    // -----------------------------------------------------------------------

    /// Reads one frame (a whole header block for HEADERS and its
    /// CONTINUATIONs), records it and returns it. The end of the connection is
    /// [`io::ErrorKind::UnexpectedEof`] (or the reset's error); a silence of
    /// [`TIMEOUT`] [`io::ErrorKind::TimedOut`]; a frame the client cannot
    /// parse [`io::ErrorKind::InvalidData`].
    pub fn recv_event(&mut self) -> io::Result<Event> {
        loop {
            let (kind, flags, stream, payload) = self.read_frame()?;
            if let Some((partial_stream, end_stream, mut block)) = self.partial.take() {
                if kind != kind::CONTINUATION || stream != partial_stream {
                    return Err(invalid(format!(
                        "frame type {kind:#x} on stream {stream} inside the header block of stream {partial_stream}"
                    )));
                }
                block.extend_from_slice(&payload);
                if flags & flag::END_HEADERS == 0 {
                    self.partial = Some((partial_stream, end_stream, block));
                    continue;
                }
                return self.headers_done(stream, end_stream, &block);
            }
            let event = match kind {
                kind::DATA => {
                    let data = unpad(flags, &payload)?.to_vec();
                    let event = Event::Data {
                        stream,
                        data,
                        end_stream: flags & flag::END_STREAM != 0,
                    };
                    self.absorb(&event, payload.len())?;
                    event
                }
                kind::HEADERS => {
                    let mut block = unpad(flags, &payload)?;
                    if flags & flag::PRIORITY != 0 {
                        block = block
                            .get(5..)
                            .ok_or_else(|| invalid("HEADERS shorter than its priority"))?;
                    }
                    let end_stream = flags & flag::END_STREAM != 0;
                    if flags & flag::END_HEADERS == 0 {
                        self.partial = Some((stream, end_stream, block.to_vec()));
                        continue;
                    }
                    let block = block.to_vec();
                    return self.headers_done(stream, end_stream, &block);
                }
                kind::RST_STREAM => {
                    let code = be32(&payload, "RST_STREAM")?;
                    Event::RstStream { stream, code }
                }
                kind::SETTINGS => {
                    if payload.len() % 6 != 0 {
                        return Err(invalid(format!("SETTINGS of {} bytes", payload.len())));
                    }
                    let settings = payload
                        .chunks(6)
                        .map(|c| {
                            (
                                u16::from_be_bytes([c[0], c[1]]),
                                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                            )
                        })
                        .collect();
                    Event::Settings {
                        ack: flags & flag::ACK != 0,
                        settings,
                    }
                }
                kind::PING => Event::Ping {
                    ack: flags & flag::ACK != 0,
                    payload: payload
                        .as_slice()
                        .try_into()
                        .map_err(|_| invalid(format!("PING of {} bytes", payload.len())))?,
                },
                kind::GOAWAY => {
                    if payload.len() < 8 {
                        return Err(invalid(format!("GOAWAY of {} bytes", payload.len())));
                    }
                    Event::GoAway(GoAway {
                        last_stream: be32(&payload[..4], "GOAWAY")? & MAX_WINDOW,
                        code: be32(&payload[4..8], "GOAWAY")?,
                        debug: payload[8..].to_vec(),
                    })
                }
                kind::WINDOW_UPDATE => Event::WindowUpdate {
                    stream,
                    increment: be32(&payload, "WINDOW_UPDATE")? & MAX_WINDOW,
                },
                kind::CONTINUATION => {
                    return Err(invalid(format!(
                        "CONTINUATION on stream {stream} outside a header block"
                    )));
                }
                _ => Event::Other {
                    kind,
                    flags,
                    stream,
                    payload,
                },
            };
            if !matches!(event, Event::Data { .. }) {
                self.absorb(&event, 0)?;
            }
            return Ok(event);
        }
    }

    fn headers_done(&mut self, stream: u32, end_stream: bool, block: &[u8]) -> io::Result<Event> {
        let fields = self
            .decoder
            .decode(block)
            .map_err(|e| invalid(format!("HPACK error in the server's block: {e:?}")))?;
        let headers = fields
            .into_iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(&n).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        let event = Event::Headers {
            stream,
            headers,
            end_stream,
        };
        self.absorb(&event, 0)?;
        Ok(event)
    }

    /// Reads the next frame's header and payload.
    fn read_frame(&mut self) -> io::Result<(u8, u8, u32, Vec<u8>)> {
        loop {
            let have = &self.buf[self.start..self.end];
            if have.len() >= 9 {
                let len = u32::from_be_bytes([0, have[0], have[1], have[2]]) as usize;
                if have.len() >= 9 + len {
                    let kind = have[3];
                    let flags = have[4];
                    let stream =
                        u32::from_be_bytes([have[5], have[6], have[7], have[8]]) & MAX_WINDOW;
                    let payload = have[9..9 + len].to_vec();
                    self.start += 9 + len;
                    return Ok((kind, flags, stream, payload));
                }
                if 9 + len > self.buf.len() {
                    self.buf.resize(9 + len, 0);
                }
            }
            // Make room: move what is left to the front.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                let len = self.buf.len();
                self.buf.resize(len * 2, 0);
            }
            let n = match read_some(&self.stream, &mut self.buf[self.end..]) {
                Ok(n) => n,
                Err(e) => {
                    if is_disconnect(&e) {
                        self.closed = true;
                    }
                    return Err(e);
                }
            };
            if n == 0 {
                self.closed = true;
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    if self.end > self.start {
                        "the server closed the connection inside a frame"
                    } else {
                        "the server closed the connection"
                    },
                ));
            }
            self.end += n;
        }
    }

    /// Records `event`; answers SETTINGS and PING, grants window for DATA
    /// (`flow_len`: the payload's length with its padding).
    fn absorb(&mut self, event: &Event, flow_len: usize) -> io::Result<()> {
        match event {
            Event::Settings { ack: true, .. } => self.settings_acks += 1,
            Event::Settings {
                ack: false,
                settings,
            } => {
                for &(id, value) in settings {
                    if id == setting::INITIAL_WINDOW_SIZE {
                        let old = i64::from(self.server_setting(id).unwrap_or(DEFAULT_WINDOW));
                        let delta = i64::from(value) - old;
                        for state in self.streams.values_mut() {
                            state.send_window += delta;
                        }
                    }
                    self.server_settings.insert(id, value);
                }
                self.server_settings_seen = true;
                self.write_auto(&frame(kind::SETTINGS, flag::ACK, 0, &[]));
            }
            Event::Ping {
                ack: false,
                payload,
            } if self.auto_ping => {
                let payload = *payload;
                self.write_auto(&frame(kind::PING, flag::ACK, 0, &payload));
            }
            Event::WindowUpdate {
                stream: 0,
                increment,
            } => {
                self.conn_send_window += i64::from(*increment);
            }
            Event::WindowUpdate { stream, increment } => {
                self.state(*stream).send_window += i64::from(*increment);
            }
            Event::RstStream { stream, code } => {
                self.state(*stream).reset = Some(*code);
            }
            Event::GoAway(goaway) => self.goaway = Some(goaway.clone()),
            Event::Headers {
                stream,
                headers,
                end_stream,
            } => {
                let state = self.state(*stream);
                if state.response.is_none() {
                    let status = headers
                        .iter()
                        .find(|(n, _)| n == ":status")
                        .map(|(_, v)| v.as_str());
                    if state.websocket && status == Some("200") {
                        let mut ws = WsState::new(Session::new());
                        let answer = headers
                            .iter()
                            .find(|(n, _)| n == "sec-websocket-extensions")
                            .map(|(_, v)| v.as_str());
                        match (
                            state.deflate,
                            answer.and_then(|a| parse_extensions(a).next()),
                        ) {
                            (Some(config), Some(offer)) => {
                                match deflate::client_accept(&offer, &config) {
                                    Ok(negotiated) => {
                                        ws.session = Session::with_deflate(
                                            Role::Client,
                                            &negotiated,
                                            CLIENT_LEVEL,
                                        );
                                    }
                                    Err(e) => {
                                        ws.error =
                                            Some(format!("bad permessage-deflate answer: {e}"))
                                    }
                                }
                            }
                            (None, Some(offer)) => {
                                ws.error =
                                    Some(format!("an extension nobody offered: {}", offer.name()));
                            }
                            _ => {}
                        }
                        state.ws = Some(Box::new(ws));
                    }
                    state.response = Some(headers.clone());
                }
                if *end_stream {
                    state.ended = true;
                }
            }
            Event::Data {
                stream,
                data,
                end_stream,
            } => {
                let auto = self.auto_window;
                let state = self.state(*stream);
                state.received += data.len();
                match &mut state.ws {
                    Some(ws) => ws.feed(data),
                    None => state.body.extend_from_slice(data),
                }
                if *end_stream {
                    state.ended = true;
                }
                let flow = flow_len as u32;
                state.unacked += flow;
                let mut grant_stream = 0;
                if auto
                    && !state.held
                    && !state.ended
                    && state.reset.is_none()
                    && state.unacked >= DEFAULT_WINDOW / 2
                {
                    grant_stream = std::mem::take(&mut state.unacked);
                }
                self.conn_unacked += flow;
                let mut grant_conn = 0;
                if auto && self.conn_unacked >= DEFAULT_WINDOW / 2 {
                    grant_conn = std::mem::take(&mut self.conn_unacked);
                }
                if grant_conn > 0 || grant_stream > 0 {
                    let mut out = Vec::new();
                    if grant_conn > 0 {
                        push_frame(
                            &mut out,
                            kind::WINDOW_UPDATE,
                            0,
                            0,
                            &grant_conn.to_be_bytes(),
                        );
                    }
                    if grant_stream > 0 {
                        push_frame(
                            &mut out,
                            kind::WINDOW_UPDATE,
                            0,
                            *stream,
                            &grant_stream.to_be_bytes(),
                        );
                    }
                    self.write_auto(&out);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Reads frames until `pick` accepts one (each frame read is recorded);
    /// [`io::ErrorKind::TimedOut`] after [`TIMEOUT`].
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> io::Result<T> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if Instant::now() >= deadline {
                return Err(timed_out(what));
            }
            let event = self
                .recv_event()
                .map_err(|e| io::Error::new(e.kind(), format!("{e} (while waiting for {what})")))?;
            if let Some(found) = pick(&event) {
                return Ok(found);
            }
        }
    }

    /// Reads frames until `ready` finds what it waits for in the recorded
    /// state.
    fn wait_state<T>(
        &mut self,
        what: &str,
        mut ready: impl FnMut(&mut Self) -> Option<io::Result<T>>,
    ) -> io::Result<T> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(result) = ready(self) {
                return result;
            }
            if Instant::now() >= deadline {
                return Err(timed_out(what));
            }
            self.recv_event()
                .map_err(|e| io::Error::new(e.kind(), format!("{e} (while waiting for {what})")))?;
        }
    }

    /// Waits for the response head on `stream` (a WebSocket's answer, before
    /// the stream goes on); its body is what came with it so far.
    pub fn response(&mut self, stream: u32) -> io::Result<Response> {
        self.wait_state(&format!("the response on stream {stream}"), |c| {
            let state = c.streams.get(&stream)?;
            if let Some(headers) = &state.response {
                return Some(to_response(headers, &state.body));
            }
            state.reset.map(|code| Err(reset_error(stream, code)))
        })
    }

    /// Waits for the whole response on `stream` (through END_STREAM).
    pub fn read_response(&mut self, stream: u32) -> io::Result<Response> {
        self.wait_state(&format!("the whole response on stream {stream}"), |c| {
            let state = c.streams.get(&stream)?;
            if let Some(code) = state.reset {
                return Some(Err(reset_error(stream, code)));
            }
            match &state.response {
                Some(headers) if state.ended => Some(to_response(headers, &state.body)),
                _ => None,
            }
        })
    }

    /// Waits for a RST_STREAM on `stream`; returns its code. Other frames
    /// are read (and recorded) on the way; END_STREAM on it without a reset
    /// is an error.
    pub fn expect_reset(&mut self, stream: u32) -> io::Result<u32> {
        self.wait_state(&format!("RST_STREAM on stream {stream}"), |c| {
            let state = c.streams.get(&stream)?;
            if let Some(code) = state.reset {
                return Some(Ok(code));
            }
            state.ended.then(|| {
                Err(io::Error::other(format!(
                    "stream {stream} ended (END_STREAM) instead of being reset: {:?}",
                    state.response
                )))
            })
        })
    }

    /// The next WebSocket message or control frame on `stream`.
    /// [`io::ErrorKind::UnexpectedEof`] when the stream ended (END_STREAM)
    /// with no message left, [`io::ErrorKind::ConnectionReset`] when it was
    /// reset, [`io::ErrorKind::InvalidData`] when the server broke the
    /// WebSocket protocol.
    pub fn recv_ws(&mut self, stream: u32) -> io::Result<Msg> {
        self.wait_state(&format!("a WebSocket message on stream {stream}"), |c| {
            let state = c.streams.get_mut(&stream)?;
            if let Some(ws) = &mut state.ws {
                if let Some(msg) = ws.messages.pop_front() {
                    return Some(Ok(msg));
                }
                if let Some(error) = &ws.error {
                    return Some(Err(invalid(format!("stream {stream}: {error}"))));
                }
            }
            if let Some(code) = state.reset {
                return Some(Err(reset_error(stream, code)));
            }
            if state.ended {
                return Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("stream {stream} ended"),
                )));
            }
            None
        })
    }

    /// The next WebSocket message on `stream`, panicking on an error.
    #[track_caller]
    pub fn ws_msg(&mut self, stream: u32) -> Msg {
        match self.recv_ws(stream) {
            Ok(msg) => msg,
            Err(e) => panic!("receiving on stream {stream} failed: {e}"),
        }
    }

    /// Receives the next message on `stream` and checks it is this text.
    #[track_caller]
    pub fn expect_ws_text(&mut self, stream: u32, text: &str) {
        assert_eq!(
            self.ws_msg(stream),
            Msg::Text(text.to_owned()),
            "stream {stream}"
        );
    }

    /// Receives the next message on `stream` and checks it is a close frame
    /// with this code; returns the reason.
    #[track_caller]
    pub fn expect_ws_close(&mut self, stream: u32, code: u16) -> String {
        match self.ws_msg(stream) {
            Msg::Close(Some((c, reason))) if c == code => reason,
            other => {
                panic!("stream {stream}: expected a close frame with code {code}, got {other:?}")
            }
        }
    }

    /// Waits until the server ends `stream` with END_STREAM; a WebSocket
    /// message still unread, or a reset, is an error.
    pub fn expect_end_stream(&mut self, stream: u32) -> io::Result<()> {
        match self.recv_ws(stream) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(()),
            Err(e) => Err(e),
            Ok(msg) => Err(io::Error::other(format!(
                "expected the end of stream {stream}, got {msg:?}"
            ))),
        }
    }

    /// Closes the WebSocket on `stream` cleanly: a close frame with END_STREAM
    /// (our side ends with it), then the server's close frame (pings and
    /// pongs skipped) and its END_STREAM. Returns the server's close.
    pub fn close_ws(
        &mut self,
        stream: u32,
        code: u16,
        reason: &str,
    ) -> io::Result<Option<(u16, String)>> {
        self.send_ws_close_end(stream, code, reason)?;
        loop {
            match self.recv_ws(stream)? {
                Msg::Close(close) => {
                    self.expect_end_stream(stream)?;
                    return Ok(close);
                }
                Msg::Ping(_) | Msg::Pong(_) => {}
                other => {
                    return Err(io::Error::other(format!(
                        "stream {stream}: expected a close frame, got {other:?}"
                    )));
                }
            }
        }
    }

    /// Waits for GOAWAY (other frames are read and recorded on the way).
    /// The connection ending without one is an error.
    pub fn expect_goaway(&mut self) -> io::Result<GoAway> {
        if let Some(goaway) = &self.goaway {
            return Ok(goaway.clone());
        }
        self.wait_for("GOAWAY", |e| match e {
            Event::GoAway(goaway) => Some(goaway.clone()),
            _ => None,
        })
    }

    /// Reads (and records) frames until the server closes the connection:
    /// EOF, or a reset. An error if it stays open for [`TIMEOUT`] or sends
    /// something unparseable.
    pub fn expect_closed(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if self.closed {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(timed_out("the server to close the connection"));
            }
            match self.recv_event() {
                Ok(_) => {}
                Err(e) if self.closed || is_disconnect(&e) => {
                    self.closed = true;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads frames for `period`, recording them; returns those read. A
    /// quiet period is not an error; the connection's end is.
    pub fn read_for(&mut self, period: Duration) -> io::Result<Vec<Event>> {
        let deadline = Instant::now() + period;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // A frame already buffered is taken without waiting.
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            let result = self.recv_event();
            self.stream.set_read_timeout(Some(TIMEOUT))?;
            match result {
                Ok(event) => events.push(event),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
                Err(e) => return Err(e),
            }
        }
        Ok(events)
    }
}

fn to_response(headers: &[(String, String)], body: &[u8]) -> io::Result<Response> {
    let status = headers
        .iter()
        .find(|(n, _)| n == ":status")
        .and_then(|(_, v)| v.parse().ok());
    match status {
        Some(status) => Ok(Response {
            status,
            headers: headers.to_vec(),
            body: body.to_vec(),
        }),
        None => Err(invalid(format!("a response without :status: {headers:?}"))),
    }
}

fn reset_error(stream: u32, code: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        format!("stream {stream} was reset: {code} ({})", error_name(code)),
    )
}

fn be32(bytes: &[u8], what: &str) -> io::Result<u32> {
    <[u8; 4]>::try_from(bytes)
        .map(u32::from_be_bytes)
        .map_err(|_| invalid(format!("{what} payload of {} bytes", bytes.len())))
}

/// A DATA or HEADERS payload without its padding.
fn unpad(flags: u8, payload: &[u8]) -> io::Result<&[u8]> {
    if flags & flag::PADDED == 0 {
        return Ok(payload);
    }
    let pad = *payload
        .first()
        .ok_or_else(|| invalid("PADDED frame without a pad length"))? as usize;
    if 1 + pad > payload.len() {
        return Err(invalid("padding longer than the frame"));
    }
    Ok(&payload[1..payload.len() - pad])
}

#[cfg(test)]
mod tests {
    //! The client against a scripted server on a socket pair: frames as the
    //! client parses them, and what it answers by itself.

    use std::io::Read;
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    /// A scripted server: accepts one connection, reads the client's preface,
    /// writes `script(&mut encoder)`, then returns everything else the client
    /// wrote until it closed.
    fn scripted(
        script: impl FnOnce(&mut HpackEncoder<'static>) -> Vec<u8> + Send + 'static,
    ) -> (H2Client, thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            socket.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut preface = [0u8; 24];
            socket.read_exact(&mut preface).unwrap();
            assert_eq!(&preface[..], PREFACE);
            let mut encoder = HpackEncoder::new();
            socket.write_all(&script(&mut encoder)).unwrap();
            let mut rest = Vec::new();
            let _ = socket.read_to_end(&mut rest);
            rest
        });
        let stream = Stream::plain(std::net::TcpStream::connect(addr).unwrap());
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        (H2Client::over(stream, addr), server)
    }

    /// Splits what the client wrote into frames (type, flags, stream, payload).
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut out = Vec::new();
        while bytes.len() >= 9 {
            let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
            out.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        assert!(bytes.is_empty(), "a partial frame at the end");
        out
    }

    #[test]
    fn preface_settings_and_a_websocket_stream() {
        let (mut client, server) = scripted(|encoder| {
            let mut out = frame(
                kind::SETTINGS,
                0,
                0,
                &settings_payload(&[
                    (setting::ENABLE_CONNECT_PROTOCOL, 1),
                    (setting::MAX_CONCURRENT_STREAMS, 100),
                ]),
            );
            // Stream 1's answer, its block cut into HEADERS and two
            // CONTINUATIONs, then a server frame "hi" cut across two DATA
            // frames (the second padded), then a close frame with END_STREAM.
            let block = encoder.encode([
                (&b":status"[..], &b"200"[..]),
                (b"sec-websocket-protocol", b"chat.v2"),
            ]);
            push_frame(&mut out, kind::HEADERS, 0, 1, &block[..2]);
            push_frame(&mut out, kind::CONTINUATION, 0, 1, &block[2..5]);
            push_frame(
                &mut out,
                kind::CONTINUATION,
                flag::END_HEADERS,
                1,
                &block[5..],
            );
            push_frame(&mut out, kind::DATA, 0, 1, &[0x81, 0x02, b'h']);
            push_frame(&mut out, kind::DATA, flag::PADDED, 1, &[3, b'i', 0, 0, 0]);
            let mut close = vec![0x88, 0x02];
            close.extend_from_slice(&1000u16.to_be_bytes());
            push_frame(&mut out, kind::DATA, flag::END_STREAM, 1, &close);
            push_frame(&mut out, kind::PING, 0, 0, b"12345678");
            let mut goaway = 1u32.to_be_bytes().to_vec();
            goaway.extend_from_slice(&error::NO_ERROR.to_be_bytes());
            goaway.extend_from_slice(b"bye");
            push_frame(&mut out, kind::GOAWAY, 0, 0, &goaway);
            out
        });
        client.handshake().unwrap();
        assert_eq!(
            client.server_setting(setting::ENABLE_CONNECT_PROTOCOL),
            Some(1)
        );
        let id = client.open_websocket("/chat", &["chat.v2"], None).unwrap();
        assert_eq!(id, 1);
        let response = client.response(id).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("Sec-WebSocket-Protocol"), Some("chat.v2"));
        assert_eq!(client.ws_msg(id), Msg::Text("hi".into()));
        assert_eq!(client.ws_msg(id), Msg::close(1000, ""));
        client.expect_end_stream(id).unwrap();
        client.send_ws_text(id, "x").unwrap();
        let goaway = client.expect_goaway().unwrap();
        assert_eq!(
            (goaway.last_stream, goaway.code, &goaway.debug[..]),
            (1, 0, &b"bye"[..])
        );
        drop(client);

        let written = frames(&server.join().unwrap());
        // SETTINGS (no push), the ACK of the server's, the request, the
        // masked text frame, the PING's ACK.
        assert_eq!(written[0].0, kind::SETTINGS);
        assert_eq!(written[0].3, settings_payload(&[(setting::ENABLE_PUSH, 0)]));
        assert_eq!((written[1].0, written[1].1), (kind::SETTINGS, flag::ACK));
        let (k, flags, stream, block) = &written[2];
        assert_eq!((*k, *flags, *stream), (kind::HEADERS, flag::END_HEADERS, 1));
        let fields: Vec<(String, String)> = HpackDecoder::new()
            .decode(block)
            .unwrap()
            .into_iter()
            .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get(":method"), Some("CONNECT"));
        assert_eq!(get(":protocol"), Some("websocket"));
        assert_eq!(get(":scheme"), Some("http"));
        assert_eq!(get(":path"), Some("/chat"));
        assert_eq!(get("sec-websocket-version"), Some("13"));
        assert_eq!(get("sec-websocket-protocol"), Some("chat.v2"));
        assert!(
            fields[..5].iter().all(|(n, _)| n.starts_with(':')),
            "{fields:?}"
        );
        let (k, _, stream, data) = &written[3];
        assert_eq!((*k, *stream), (kind::DATA, 1));
        assert_eq!(data[0], 0x81);
        assert_eq!(data[1], 0x80 | 1, "masked, one byte");
        assert_eq!(data[6] ^ data[2], b'x');
        // The PING was read after the text was sent.
        assert_eq!(written[4], (kind::PING, flag::ACK, 0, b"12345678".to_vec()));
    }

    #[test]
    fn window_is_granted_at_half_and_held_per_stream() {
        let (mut client, server) = scripted(|encoder| {
            let mut out = frame(kind::SETTINGS, 0, 0, &[]);
            for stream in [1, 3] {
                let block = encoder.encode([(&b":status"[..], &b"200"[..])]);
                push_frame(&mut out, kind::HEADERS, flag::END_HEADERS, stream, &block);
            }
            // 40,000 bytes on each stream.
            for stream in [1, 3] {
                for _ in 0..4 {
                    push_frame(&mut out, kind::DATA, 0, stream, &[7; 10_000]);
                }
            }
            push_frame(&mut out, kind::PING, flag::ACK, 0, &[0; 8]);
            out
        });
        client.handshake().unwrap();
        let a = client.request("GET", "/a").unwrap();
        let b = client.request("GET", "/b").unwrap();
        client.hold_window(b);
        client
            .wait_for("the PING ACK", |e| {
                matches!(e, Event::Ping { ack: true, .. }).then_some(())
            })
            .unwrap();
        assert_eq!(client.received_bytes(a), 40_000);
        assert_eq!(client.received_bytes(b), 40_000);
        client.release_window(b).unwrap();
        drop(client);
        let updates: Vec<(u32, u32)> = frames(&server.join().unwrap())
            .into_iter()
            .filter(|f| f.0 == kind::WINDOW_UPDATE)
            .map(|f| (f.2, u32::from_be_bytes(f.3[..4].try_into().unwrap())))
            .collect();
        // Stream 1 at 40,000 bytes; the connection at 40,000 and 80,000 (in
        // 40,000 steps: granted when half a window had come); stream 3 only
        // when released.
        assert_eq!(
            updates,
            [(0, 40_000), (1, 40_000), (0, 40_000), (3, 40_000)]
        );
    }

    #[test]
    fn literal_blocks_decode_as_given() {
        let block = literal_block(&[("X-Upper", "1"), ("connection", "keep-alive")]);
        let fields = HpackDecoder::new().decode(&block).unwrap();
        assert_eq!(
            fields,
            [
                (b"X-Upper".to_vec(), b"1".to_vec()),
                (b"connection".to_vec(), b"keep-alive".to_vec())
            ]
        );
    }
}
