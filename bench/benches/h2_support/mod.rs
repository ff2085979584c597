//! What the HTTP/2 benches share (`h2.rs`, `h2_memory.rs`): a client that
//! writes the bytes both servers read (frames, and HPACK as a browser
//! encodes it: Huffman strings, incremental indexing), the WebSocket layer's
//! stand-in both servers call (an echo), and the two servers: our codec as
//! the worker drives it (`ringws::h2_bench`) and the `h2` crate driven from
//! a worker-like loop over in-memory I/O, polled with a no-op waker until a
//! pass makes no progress (no waker does any work for it).

#![allow(dead_code)]

use std::cell::RefCell;
use std::io;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use ringws::h2_bench::{Answer, Carrier, Limits, Pool, Seen};
use ringws::proto::mask::apply_mask;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Both servers' limits: the engine's defaults but a 16 MiB connection
/// window (the 16 KiB echo reads 1.6 MB per round on one connection).
pub const LIMITS: Limits = Limits {
    max_concurrent_streams: 100,
    initial_window_size: 65_535,
    connection_window: 16 << 20,
};

/// Streams per connection in the echo and memory scenarios.
pub const STREAMS: u32 = 100;

/// The client's windows for what the server sends: the largest (RFC 9113),
/// so that rounds need no WINDOW_UPDATE; a server is rebuilt (untimed)
/// before the connection's is spent.
pub const CLIENT_WINDOW: u32 = (1 << 31) - 1;

// ---------------------------------------------------------------- frames

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Appends a frame; returns the offset of its stream id.
pub fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> usize {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    let at = out.len();
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    at
}

/// The client's connection preface: the magic, its SETTINGS (no push, the
/// largest stream window), the connection's window to the largest, and the
/// ACK of the server's SETTINGS.
pub fn preface() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    let mut settings = Vec::new();
    for (id, value) in [(0x2u16, 0u32), (0x4, CLIENT_WINDOW)] {
        settings.extend_from_slice(&id.to_be_bytes());
        settings.extend_from_slice(&value.to_be_bytes());
    }
    frame(&mut out, SETTINGS, 0, 0, &settings);
    frame(
        &mut out,
        WINDOW_UPDATE,
        0,
        0,
        &(CLIENT_WINDOW - 65_535).to_be_bytes(),
    );
    frame(&mut out, SETTINGS, ACK, 0, &[]);
    out
}

// ---------------------------------------------------------------- HPACK

/// RFC 7541 Appendix A.
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

// RFC 7541 Appendix B: each symbol's code (right-aligned) and length in bits.
const HUFFMAN_CODES: [u32; 257] = [0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7, 0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec, 0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3, 0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb, 0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa, 0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18, 0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc, 0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22, 0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26, 0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7, 0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78, 0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc, 0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9, 0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf, 0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3, 0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef, 0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde, 0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec, 0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef, 0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1, 0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec, 0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed, 0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2, 0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5, 0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3, 0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4, 0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea, 0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee, 0x3fffffff];
const HUFFMAN_LENGTHS: [u8; 257] = [13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30];


/// An HPACK integer with an `prefix`-bit prefix, `flags` in the first byte's
/// high bits (RFC 7541 §5.1).
fn integer(out: &mut Vec<u8>, prefix: u8, flags: u8, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// A string literal, Huffman-coded where that is shorter (as browsers do).
fn string(out: &mut Vec<u8>, s: &[u8]) {
    let bits: usize = s
        .iter()
        .map(|&b| usize::from(HUFFMAN_LENGTHS[b as usize]))
        .sum();
    let len = bits.div_ceil(8);
    if len >= s.len() {
        integer(out, 7, 0, s.len());
        out.extend_from_slice(s);
        return;
    }
    integer(out, 7, 0x80, len);
    let mut acc: u64 = 0;
    let mut have = 0u32;
    for &b in s {
        let n = u32::from(HUFFMAN_LENGTHS[b as usize]);
        acc = (acc << n) | u64::from(HUFFMAN_CODES[b as usize]);
        have += n;
        while have >= 8 {
            have -= 8;
            out.push((acc >> have) as u8);
        }
    }
    if have > 0 {
        // Padded with the EOS code's most significant bits (all ones).
        out.push(((acc << (8 - have)) as u8) | (0xff >> have));
    }
}

/// The client's HPACK encoder, as a browser's: a field found whole in a
/// table is indexed, any other is a literal *with incremental indexing*
/// (its name indexed where a table has it), strings Huffman-coded.
#[derive(Default)]
pub struct Encoder {
    /// The peer decoder's dynamic table as we filled it, newest first
    /// (never evicted here: our blocks stay far below 4,096 bytes).
    dynamic: Vec<(String, String)>,
    size: usize,
}

impl Encoder {
    /// Encodes `fields` against the tables (the first block of a
    /// connection is all literals; the next ones, the same fields, all
    /// indexed).
    pub fn encode(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(name, value) in fields {
            if let Some(i) = STATIC_TABLE.iter().position(|&e| e == (name, value)) {
                integer(&mut out, 7, 0x80, i + 1);
                continue;
            }
            if let Some(i) = self
                .dynamic
                .iter()
                .position(|(n, v)| n == name && v == value)
            {
                integer(&mut out, 7, 0x80, 62 + i);
                continue;
            }
            self.literal(&mut out, name, value, true);
        }
        out
    }

    /// Encodes `fields` as a first block: static matches indexed, the rest
    /// literals with incremental indexing, names from the static table only.
    /// It refers to nothing in the dynamic table, so it may be sent again
    /// and again (each time the decoder inserts, and in time evicts).
    pub fn encode_cold(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut scratch = Self::default();
        for &(name, value) in fields {
            if let Some(i) = STATIC_TABLE.iter().position(|&e| e == (name, value)) {
                integer(&mut out, 7, 0x80, i + 1);
            } else {
                scratch.literal(&mut out, name, value, false);
            }
        }
        out
    }

    fn literal(&mut self, out: &mut Vec<u8>, name: &str, value: &str, dynamic_names: bool) {
        let static_name = STATIC_TABLE.iter().position(|&(n, _)| n == name);
        let dynamic_name = dynamic_names
            .then(|| self.dynamic.iter().position(|(n, _)| n == name))
            .flatten();
        match (static_name, dynamic_name) {
            (Some(i), _) => integer(out, 6, 0x40, i + 1),
            (None, Some(i)) => integer(out, 6, 0x40, 62 + i),
            (None, None) => {
                out.push(0x40);
                string(out, name.as_bytes());
            }
        }
        string(out, value.as_bytes());
        self.size += name.len() + value.len() + 32;
        assert!(self.size <= 4096, "no eviction here");
        self.dynamic.insert(0, (name.to_owned(), value.to_owned()));
    }
}

/// What Chromium sends to open a WebSocket over HTTP/2 (RFC 8441), in its
/// order.
pub const WS_REQUEST: [(&str, &str); 13] = [
    (":method", "CONNECT"),
    (":authority", "localhost:8443"),
    (":scheme", "https"),
    (":path", "/chat"),
    (":protocol", "websocket"),
    ("pragma", "no-cache"),
    ("cache-control", "no-cache"),
    ("origin", "https://localhost:8443"),
    ("sec-websocket-version", "13"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/131.0.0.0 Safari/537.36",
    ),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("accept-language", "en-US,en;q=0.9"),
    (
        "sec-websocket-extensions",
        "permessage-deflate; client_max_window_bits",
    ),
];

/// HEADERS opening `count` streams from `first` (1, 3, 5, ...), each
/// encoded by `encoder`.
pub fn open_streams(encoder: &mut Encoder, first: u32, count: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..count {
        let block = encoder.encode(&WS_REQUEST);
        frame(&mut out, HEADERS, END_HEADERS, first + 2 * i, &block);
    }
    out
}

/// One read of the echo: on each of `STREAMS` streams one DATA frame
/// holding a masked binary WebSocket frame of `payload` bytes.
pub fn echo_read(payload: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let key = [0x37, 0xfa, 0x21, 0x3d];
    for i in 0..STREAMS {
        let mut ws = vec![0x82];
        if payload < 126 {
            ws.push(0x80 | payload as u8);
        } else {
            ws.push(0x80 | 126);
            ws.extend_from_slice(&(payload as u16).to_be_bytes());
        }
        ws.extend_from_slice(&key);
        let start = ws.len();
        ws.extend((0..payload).map(|j| (j as u8).wrapping_add(i as u8)));
        apply_mask(&mut ws[start..], key, 0);
        frame(&mut out, DATA, 0, 1 + 2 * i, &ws);
    }
    out
}

// ---------------------------------------------------------------- the echo

/// A masked client frame's header: its length, the mask key, the payload
/// length. Only whole frames come in these reads.
fn ws_head(bytes: &[u8]) -> (usize, [u8; 4], usize) {
    let (len, at) = match bytes[1] & 0x7f {
        126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
        n => (usize::from(n), 2),
    };
    let key = bytes[at..at + 4].try_into().unwrap();
    assert_eq!(bytes.len(), at + 4 + len, "one whole frame per DATA");
    (at + 4, key, len)
}

/// The server's frame header for `len` payload bytes.
fn ws_reply_head(len: usize) -> ([u8; 4], usize) {
    if len < 126 {
        ([0x82, len as u8, 0, 0], 2)
    } else {
        let l = (len as u16).to_be_bytes();
        ([0x82, 126, l[0], l[1]], 4)
    }
}

/// Whether a request is a WebSocket's (what the upgrade looks at first).
fn websocket(connect: bool, protocol: Option<&str>, version: Option<&[u8]>) -> bool {
    connect && protocol == Some("websocket") && version == Some(b"13")
}

/// The WebSocket layer's stand-in for our codec: a request accepted, a
/// frame unmasked where it lies and sent back (copied into the stream's
/// queue), our side ended after the peer's.
pub fn ours_app(seen: Seen<'_>, answer: &mut Answer<'_>) {
    match seen {
        Seen::Request {
            method,
            protocol,
            version,
            ..
        } => {
            if websocket(method == "CONNECT", protocol, version) {
                answer.accept();
            }
        }
        Seen::Data { bytes, .. } => {
            let (at, key, len) = ws_head(bytes);
            let payload = &mut bytes[at..];
            apply_mask(payload, key, 0);
            let (head, n) = ws_reply_head(len);
            answer.send(&head[..n], payload);
        }
        Seen::End { .. } => answer.end(),
        Seen::Reset { .. } => {}
    }
}

/// The same for the `h2` crate: its DATA comes as shared `Bytes`, so the
/// payload is copied (into a reused arena) and unmasked there.
pub fn h2_echo(data: &[u8], arena: &mut BytesMut) -> Bytes {
    let (at, key, len) = ws_head(data);
    let (head, n) = ws_reply_head(len);
    arena.reserve(n + len);
    arena.extend_from_slice(&head[..n]);
    let start = arena.len();
    arena.extend_from_slice(&data[at..]);
    apply_mask(&mut arena[start..], key, 0);
    arena.split().freeze()
}

// ---------------------------------------------------------------- a sink

/// Where the servers write: counted, and kept when checking.
#[derive(Default)]
pub struct Sink {
    pub bytes: usize,
    pub keep: Option<Vec<u8>>,
}

impl Sink {
    fn write(&mut self, b: &[u8]) {
        self.bytes += b.len();
        if let Some(keep) = &mut self.keep {
            keep.extend_from_slice(b);
        }
    }
}

// ---------------------------------------------------------------- ours

/// Our codec as the worker drives it: the socket's bytes copied into the
/// read buffer (recv's copy), read, answered, flushed, drained.
pub struct Ours {
    pub pool: Pool,
    pub carrier: Carrier,
    /// What the next read receives.
    pub input: Vec<u8>,
    buf: Vec<u8>,
    pub sink: Sink,
}

impl Ours {
    /// A connection past the client's preface.
    pub fn new() -> Self {
        let mut pool = Pool::default();
        let carrier = Carrier::new(LIMITS, &mut pool);
        let mut ours = Self {
            pool,
            carrier,
            input: Vec::new(),
            buf: Vec::new(),
            sink: Sink::default(),
        };
        ours.receive(&preface());
        ours
    }

    pub fn receive(&mut self, bytes: &[u8]) {
        self.input.clear();
        self.input.extend_from_slice(bytes);
        self.round();
    }

    /// One read of `input`.
    pub fn round(&mut self) {
        self.buf.clear();
        self.buf.extend_from_slice(&self.input);
        self.carrier
            .read(&mut self.pool, &mut self.buf, 0, &mut ours_app)
            .expect("no connection error");
        let sink = &mut self.sink;
        self.carrier.drain(&mut self.pool, &mut |b| sink.write(b));
    }
}

impl Default for Ours {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------- h2

/// The in-memory socket under the `h2` crate: it reads `input` from `pos`
/// (Pending once all is read: not EOF) and writes into the sink.
#[derive(Default)]
pub struct Pipe {
    pub input: Vec<u8>,
    pub pos: usize,
    pub sink: Sink,
}

#[derive(Clone, Default)]
pub struct Io(pub Rc<RefCell<Pipe>>);

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut pipe = self.0.borrow_mut();
        let pos = pipe.pos;
        let rest = &pipe.input[pos..];
        if rest.is_empty() {
            return Poll::Pending;
        }
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        pipe.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        self.0.borrow_mut().sink.write(b);
        Poll::Ready(Ok(b.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut pipe = self.0.borrow_mut();
        let mut n = 0;
        for b in bufs {
            pipe.sink.write(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A stream's two handles, as a worker would keep them.
pub struct H2Stream {
    pub recv: h2::RecvStream,
    pub send: h2::SendStream<Bytes>,
}

/// The `h2` crate, server side, with the same limits, driven by a
/// single-threaded loop: each round polls the connection (it reads all it
/// can, answers control frames, writes what is queued) and accepts every
/// request it has, then, if that read anything, polls every stream's data
/// (no waker says which) and sends the replies, then polls the connection
/// again to write them; until a poll of the connection reads nothing.
pub struct H2 {
    pub io: Io,
    pub conn: h2::server::Connection<Io, Bytes>,
    pub streams: slab::Slab<H2Stream>,
    arena: BytesMut,
    ended: Vec<usize>,
}

pub fn h2_builder() -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .enable_connect_protocol()
        .max_concurrent_streams(LIMITS.max_concurrent_streams)
        .initial_window_size(LIMITS.initial_window_size)
        .initial_connection_window_size(LIMITS.connection_window);
    builder
}

impl H2 {
    /// A connection past the handshake (the client's preface read).
    pub fn new() -> Self {
        let io = Io::default();
        io.0.borrow_mut().input = preface();
        let mut cx = Context::from_waker(Waker::noop());
        let mut handshake = pin!(h2_builder().handshake::<Io, Bytes>(io.clone()));
        let conn = match handshake.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(conn)) => conn,
            Poll::Ready(Err(e)) => panic!("handshake: {e}"),
            Poll::Pending => panic!("handshake pending"),
        };
        let mut h2 = Self {
            io,
            conn,
            streams: slab::Slab::new(),
            arena: BytesMut::new(),
            ended: Vec::new(),
        };
        h2.round();
        h2
    }

    pub fn receive(&mut self, bytes: &[u8]) {
        {
            let mut pipe = self.io.0.borrow_mut();
            pipe.input.clear();
            pipe.input.extend_from_slice(bytes);
        }
        self.round();
    }

    /// The input is received again (its bytes as they are now).
    pub fn again(&mut self) {
        self.io.0.borrow_mut().pos = 0;
        self.round();
    }

    pub fn input_mut(&mut self) -> std::cell::RefMut<'_, Vec<u8>> {
        std::cell::RefMut::map(self.io.0.borrow_mut(), |pipe| &mut pipe.input)
    }

    /// One read, polled until no progress.
    pub fn round(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let before = self.io.0.borrow().pos;
            let mut accepted = false;
            loop {
                match self.conn.poll_accept(&mut cx) {
                    Poll::Ready(Some(Ok((request, mut respond)))) => {
                        accepted = true;
                        let (parts, recv) = request.into_parts();
                        let ok = websocket(
                            parts.method == http::Method::CONNECT,
                            parts
                                .extensions
                                .get::<h2::ext::Protocol>()
                                .map(|p| p.as_str()),
                            parts
                                .headers
                                .get("sec-websocket-version")
                                .map(|v| v.as_bytes()),
                        );
                        if ok {
                            let send = respond
                                .send_response(http::Response::new(()), false)
                                .expect("response");
                            self.streams.insert(H2Stream { recv, send });
                        } else {
                            respond.send_reset(h2::Reason::REFUSED_STREAM);
                        }
                    }
                    Poll::Ready(Some(Err(e))) => panic!("h2: {e}"),
                    Poll::Ready(None) | Poll::Pending => break,
                }
            }
            if !accepted && self.io.0.borrow().pos == before {
                break;
            }
            for (key, stream) in &mut self.streams {
                loop {
                    match stream.recv.poll_data(&mut cx) {
                        Poll::Ready(Some(Ok(data))) => {
                            let reply = h2_echo(&data, &mut self.arena);
                            stream
                                .recv
                                .flow_control()
                                .release_capacity(data.len())
                                .expect("release");
                            stream.send.reserve_capacity(reply.len());
                            stream.send.send_data(reply, false).expect("send");
                        }
                        Poll::Ready(Some(Err(_))) => {
                            self.ended.push(key);
                            break;
                        }
                        Poll::Ready(None) => {
                            stream.send.send_data(Bytes::new(), true).expect("end");
                            self.ended.push(key);
                            break;
                        }
                        Poll::Pending => break,
                    }
                }
            }
            for key in self.ended.drain(..) {
                self.streams.remove(key);
            }
        }
    }
}

impl Default for H2 {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------- checking

/// What a server wrote, summed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wrote {
    pub data_bytes: usize,
    pub data_frames: usize,
    pub end_streams: usize,
    pub status_200: usize,
    pub other_status: usize,
    pub resets: usize,
    pub goaways: usize,
}

/// Parses what a server wrote (whole frames), decoding its header blocks in
/// order (the decoder is the connection's).
pub fn wrote(mut bytes: &[u8], decoder: &mut loona_hpack::Decoder<'_>) -> Wrote {
    let mut w = Wrote::default();
    while !bytes.is_empty() {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        let (kind, flags) = (bytes[3], bytes[4]);
        let payload = &bytes[9..9 + len];
        match kind {
            DATA => {
                w.data_frames += 1;
                w.data_bytes += len;
            }
            HEADERS => {
                for (name, value) in decoder.decode(payload).expect("HPACK") {
                    if name == b":status" {
                        if value == b"200" {
                            w.status_200 += 1;
                        } else {
                            w.other_status += 1;
                        }
                    }
                }
            }
            RST_STREAM => w.resets += 1,
            GOAWAY => w.goaways += 1,
            _ => {}
        }
        if matches!(kind, DATA | HEADERS) && flags & END_STREAM != 0 {
            w.end_streams += 1;
        }
        bytes = &bytes[9 + len..];
    }
    w
}
