//! The client side of HTTP/2 (RFC 9113) as far as WebSockets over its streams
//! need it (RFC 8441), without I/O: [`H2`] is one connection's protocol state.
//! It writes what it sends into [`H2::out`] (the preface and SETTINGS, SETTINGS
//! and PING ACKs, HEADERS, DATA framed within both send windows,
//! WINDOW_UPDATE, RST_STREAM) and turns the bytes read, cut anywhere, into
//! [`Event`]s. DATA payloads are handed out in place, a piece at a time as
//! they arrive (no frame is gathered, no payload copied); only the small
//! control frames and header blocks are gathered.
//!
//! The extended CONNECT's header block is made once per target
//! ([`connect_block`]: literal fields without indexing, so it changes no HPACK
//! state and is valid on every connection); the server's header blocks are
//! decoded with `loona-hpack`'s decoder.

use loona_hpack::Decoder as HpackDecoder;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Every window's size until SETTINGS or WINDOW_UPDATE say otherwise.
pub const DEFAULT_WINDOW: u32 = 65_535;
const MAX_WINDOW: i64 = (1 << 31) - 1;
/// Our receive windows, per stream and for the connection (Chrome's): large,
/// so that our WINDOW_UPDATEs are rare (a server counts them against its
/// budget of control frames) and never what limits the server's sending.
pub const STREAM_WINDOW: u32 = 6 << 20;
pub const CONNECTION_WINDOW: u32 = 15 << 20;
/// The largest frame either side may send until SETTINGS_MAX_FRAME_SIZE (we
/// never raise ours).
const MAX_FRAME: usize = 16_384;
const HEAD: usize = 9;

mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

mod setting {
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
}

/// RST_STREAM's CANCEL: a stream we give up on.
pub const CANCEL: u32 = 0x8;

/// The name of an HTTP/2 error code, for messages.
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

/// Why the server's bytes cannot be read on: the connection is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Error(pub &'static str);

impl std::fmt::Display for H2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// What the server's bytes said.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// The server's first SETTINGS (acknowledged): streams may be opened.
    Ready,
    /// A later SETTINGS changed every stream's send window by this much.
    StreamWindow(i64),
    /// A header block of `stream` is complete: [`H2::response`] decodes it.
    Headers {
        stream: u32,
        end_stream: bool,
    },
    /// DATA payload of `stream`, a piece of one frame (a frame's payload may
    /// come in several). `flow` is what it used of the receive windows: the
    /// connection's is credited here, the caller credits the stream's with
    /// [`H2::credit`]. `end_stream`: the frame's last piece, with END_STREAM.
    Data {
        stream: u32,
        data: &'a mut [u8],
        flow: u32,
        end_stream: bool,
    },
    Reset {
        stream: u32,
        code: u32,
    },
    /// `stream`'s send window grew.
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    /// The connection's send window grew.
    ConnectionWindow,
    GoAway {
        last_stream: u32,
        code: u32,
    },
}

#[derive(Debug, Clone, Copy)]
struct FrameHead {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

/// Where the reader is in the server's bytes.
#[derive(Debug)]
enum Reading {
    /// A frame header, `have` bytes of it so far.
    Head { bytes: [u8; HEAD], have: usize },
    /// A PADDED DATA frame's pad length byte.
    PadLength { head: FrameHead },
    /// A DATA frame's payload: `left` bytes to hand out, then `pad` to skip;
    /// `owed` of the window used by the pad length and padding, reported with
    /// the next piece.
    Data {
        stream: u32,
        left: usize,
        pad: usize,
        owed: u32,
        end_stream: bool,
    },
    /// Bytes to skip (DATA padding).
    Skip { left: usize },
    /// Any other frame's payload, gathered into `H2::payload`.
    Other { head: FrameHead, left: usize },
}

/// The server's response to an extended CONNECT.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// `sec-websocket-extensions`, if any.
    pub extensions: Option<String>,
}

/// One HTTP/2 connection's protocol state, client side.
pub struct H2 {
    /// Bytes to send, in order; the caller writes them out.
    pub out: Vec<u8>,
    reading: Reading,
    payload: Vec<u8>,
    /// The header block being gathered, and whether CONTINUATION is awaited
    /// (its stream and END_STREAM).
    block: Vec<u8>,
    continuation: Option<(u32, bool)>,
    decoder: HpackDecoder<'static>,
    got_settings: bool,
    /// The server's SETTINGS.
    pub max_streams: u32,
    pub connect_protocol: bool,
    peer_initial_window: u32,
    peer_max_frame: usize,
    /// What we may still send on the connection.
    send_window: i64,
    /// DATA received and not yet credited back, connection-wide.
    conn_unacked: u32,
    next_stream: u32,
}

impl std::fmt::Debug for H2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2")
            .field("out", &self.out.len())
            .field("reading", &self.reading)
            .field("send_window", &self.send_window)
            .finish_non_exhaustive()
    }
}

impl Default for H2 {
    fn default() -> Self {
        Self::new()
    }
}

fn head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = (len as u32).to_be_bytes();
    let stream = (stream & MAX_WINDOW as u32).to_be_bytes();
    out.extend_from_slice(&[
        len[1], len[2], len[3], kind, flags, stream[0], stream[1], stream[2], stream[3],
    ]);
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl H2 {
    pub fn new() -> Self {
        Self {
            out: Vec::new(),
            reading: Reading::Head {
                bytes: [0; HEAD],
                have: 0,
            },
            payload: Vec::new(),
            block: Vec::new(),
            continuation: None,
            decoder: HpackDecoder::new(),
            got_settings: false,
            max_streams: u32::MAX,
            connect_protocol: false,
            peer_initial_window: DEFAULT_WINDOW,
            peer_max_frame: MAX_FRAME,
            send_window: i64::from(DEFAULT_WINDOW),
            conn_unacked: 0,
            next_stream: 1,
        }
    }

    /// Queues the preface, our SETTINGS (no push, our stream window) and the
    /// connection window's growth.
    pub fn start(&mut self) {
        self.out.extend_from_slice(PREFACE);
        head(&mut self.out, 12, kind::SETTINGS, 0, 0);
        for (id, value) in [
            (setting::ENABLE_PUSH, 0),
            (setting::INITIAL_WINDOW_SIZE, STREAM_WINDOW),
        ] {
            self.out.extend_from_slice(&id.to_be_bytes());
            self.out.extend_from_slice(&value.to_be_bytes());
        }
        self.window_update(0, CONNECTION_WINDOW - DEFAULT_WINDOW);
    }

    /// The send window of a stream opened now.
    pub fn initial_window(&self) -> i64 {
        i64::from(self.peer_initial_window)
    }

    /// Opens the next stream with this header block (HEADERS, CONTINUATION
    /// past the server's frame size; not END_STREAM) and returns its id.
    pub fn open(&mut self, block: &[u8]) -> u32 {
        let stream = self.next_stream;
        self.next_stream += 2;
        let mut chunks = block.chunks(self.peer_max_frame).peekable();
        let mut kind = kind::HEADERS;
        loop {
            let chunk = chunks.next().unwrap_or(&[]);
            let last = chunks.peek().is_none();
            let flags = if last { flag::END_HEADERS } else { 0 };
            head(&mut self.out, chunk.len(), kind, flags, stream);
            self.out.extend_from_slice(chunk);
            kind = kind::CONTINUATION;
            if last {
                return stream;
            }
        }
    }

    /// Frames as much of `src` as DATA on `stream` as its send `window`, the
    /// connection's and the server's frame size allow; returns how much.
    pub fn data(&mut self, stream: u32, window: &mut i64, src: &[u8]) -> usize {
        let mut sent = 0;
        while sent < src.len() {
            let room = (*window).min(self.send_window).max(0) as usize;
            let n = (src.len() - sent).min(room).min(self.peer_max_frame);
            if n == 0 {
                break;
            }
            head(&mut self.out, n, kind::DATA, 0, stream);
            self.out.extend_from_slice(&src[sent..sent + n]);
            sent += n;
            *window -= n as i64;
            self.send_window -= n as i64;
        }
        sent
    }

    /// Ends our side of `stream` (an empty DATA with END_STREAM).
    pub fn end_stream(&mut self, stream: u32) {
        head(&mut self.out, 0, kind::DATA, flag::END_STREAM, stream);
    }

    pub fn reset(&mut self, stream: u32, code: u32) {
        head(&mut self.out, 4, kind::RST_STREAM, 0, stream);
        self.out.extend_from_slice(&code.to_be_bytes());
    }

    fn window_update(&mut self, stream: u32, increment: u32) {
        head(&mut self.out, 4, kind::WINDOW_UPDATE, 0, stream);
        self.out.extend_from_slice(&increment.to_be_bytes());
    }

    /// Credits back `stream`'s window once half of it is used (`unacked`:
    /// what it received since its last WINDOW_UPDATE).
    pub fn credit(&mut self, stream: u32, unacked: &mut u32) {
        if *unacked >= STREAM_WINDOW / 2 {
            self.window_update(stream, *unacked);
            *unacked = 0;
        }
    }

    /// Decodes the last header block ([`Event::Headers`]).
    pub fn response(&mut self) -> Result<Response, H2Error> {
        let mut response = Response::default();
        let block = std::mem::take(&mut self.block);
        let decoded = self.decoder.decode_with_cb(&block, |name, value| {
            if &name[..] == b":status" {
                response.status = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
            } else if name.eq_ignore_ascii_case(b"sec-websocket-extensions") {
                response.extensions = Some(String::from_utf8_lossy(&value).into_owned());
            }
        });
        self.block = block;
        self.block.clear();
        decoded.map_err(|_| H2Error("HPACK: the server's header block does not decode"))?;
        Ok(response)
    }
}

/// An ACK (SETTINGS, PING) carrying `payload`.
fn head_ack(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    head(out, payload.len(), kind, flag::ACK, 0);
    out.extend_from_slice(payload);
}

/// An HPACK integer with an `n`-bit prefix, the first byte's other bits `high`.
fn integer(out: &mut Vec<u8>, high: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    integer(out, 0, 7, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// The extended CONNECT of a WebSocket (RFC 8441 §4) to `path` on
/// `authority`, as literal fields without indexing (names from the static
/// table where it has them, no Huffman coding): it leaves both HPACK tables
/// as they are, so the same bytes open every stream of every connection.
pub fn connect_block(
    https: bool,
    authority: &str,
    path: &str,
    extensions: Option<&str>,
) -> Vec<u8> {
    let mut block = Vec::new();
    // Static table names: 2 :method, 6 :scheme, 4 :path, 1 :authority.
    for (index, value) in [
        (2, "CONNECT"),
        (6, if https { "https" } else { "http" }),
        (4, path),
        (1, authority),
    ] {
        integer(&mut block, 0, 4, index);
        string(&mut block, value);
    }
    let mut fields = vec![(":protocol", "websocket"), ("sec-websocket-version", "13")];
    if let Some(offer) = extensions {
        fields.push(("sec-websocket-extensions", offer));
    }
    for (name, value) in fields {
        block.push(0);
        string(&mut block, name);
        string(&mut block, value);
    }
    block
}

mod read;

#[cfg(test)]
#[path = "h2_tests.rs"]
mod tests;
