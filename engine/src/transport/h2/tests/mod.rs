//! Unit tests of the HTTP/2 codec: a test-side client frame writer (HPACK
//! by loona-hpack's `Encoder`) and frame reader, and a harness that feeds an
//! [`H2`] and collects what it reports and writes, as owned values.

mod abuse;
mod flow;
mod joining;
mod reading;
mod requests;

use std::io::IoSlice;

use super::frame::{FrameHead, HEADER_LEN, flag, kind};
use super::{ErrorCode, Event, H2, H2Error, PREFACE, Settings};
use crate::transport::outbox::{BufferPool, MAX_IOVECS, Outbox};

/// A frame as bytes.
pub(super) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let head = FrameHead {
        len: payload.len() as u32,
        kind,
        flags,
        stream,
    };
    [&head.encode()[..], payload].concat()
}

pub(super) fn settings(params: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> = params
        .iter()
        .flat_map(|&(id, v)| [&id.to_be_bytes()[..], &v.to_be_bytes()[..]].concat())
        .collect();
    frame(kind::SETTINGS, 0, 0, &payload)
}

pub(super) fn data(stream: u32, bytes: &[u8], end: bool) -> Vec<u8> {
    frame(
        kind::DATA,
        if end { flag::END_STREAM } else { 0 },
        stream,
        bytes,
    )
}

pub(super) fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(kind::WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

pub(super) fn rst(stream: u32, code: ErrorCode) -> Vec<u8> {
    frame(kind::RST_STREAM, 0, stream, &code.0.to_be_bytes())
}

pub(super) fn ping(payload: [u8; 8]) -> Vec<u8> {
    frame(kind::PING, 0, 0, &payload)
}

/// The RFC 8441 §5 example request: a WebSocket over an extended CONNECT.
pub(super) const WS_REQUEST: [(&str, &str); 7] = [
    (":method", "CONNECT"),
    (":protocol", "websocket"),
    (":scheme", "https"),
    (":path", "/chat"),
    (":authority", "server.example.com"),
    ("sec-websocket-protocol", "chat, superchat"),
    ("sec-websocket-version", "13"),
];

/// The test client: HPACK state of its own, frames as bytes.
pub(super) struct Client {
    pub encoder: loona_hpack::Encoder<'static>,
}

impl Client {
    pub fn new() -> Self {
        Self {
            encoder: loona_hpack::Encoder::new(),
        }
    }

    pub fn block(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        self.encoder
            .encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    /// HEADERS with END_HEADERS (and END_STREAM if `end`).
    pub fn headers(&mut self, stream: u32, fields: &[(&str, &str)], end: bool) -> Vec<u8> {
        let block = self.block(fields);
        let flags = flag::END_HEADERS | if end { flag::END_STREAM } else { 0 };
        frame(kind::HEADERS, flags, stream, &block)
    }
}

/// A frame the server wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sent {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Sent {
    pub fn u32_at(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }

    /// RST_STREAM's and GOAWAY's error code.
    pub fn code(&self) -> ErrorCode {
        match self.kind {
            kind::RST_STREAM => ErrorCode(self.u32_at(0)),
            kind::GOAWAY => ErrorCode(self.u32_at(4)),
            _ => panic!("no error code in {self:?}"),
        }
    }
}

/// Parses the server's bytes into frames (whole ones only).
pub(super) fn parse(mut bytes: &[u8]) -> Vec<Sent> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let head = FrameHead::parse(bytes[..HEADER_LEN].try_into().unwrap());
        let end = HEADER_LEN + head.len as usize;
        frames.push(Sent {
            kind: head.kind,
            flags: head.flags,
            stream: head.stream,
            payload: bytes[HEADER_LEN..end].to_vec(),
        });
        bytes = &bytes[end..];
    }
    frames
}

pub(super) fn drain(out: &mut Outbox, pool: &mut BufferPool) -> Vec<u8> {
    let mut bytes = Vec::new();
    while !out.is_empty() {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let count = out.io_slices(&mut slices);
        let n: usize = slices[..count].iter().map(|s| s.len()).sum();
        for s in &slices[..count] {
            bytes.extend_from_slice(s);
        }
        out.consume(pool, n);
    }
    bytes
}

/// What a read reported, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ev {
    Request {
        stream: u32,
        method: String,
        protocol: Option<String>,
        fields: Vec<(String, Vec<u8>)>,
        end: bool,
    },
    Data(u32, Vec<u8>),
    End(u32),
    Reset(u32, ErrorCode, bool),
    Window(u32),
    GoAway(u32, ErrorCode),
    Error(H2Error),
}

/// A server connection with its outbox, fed bytes as a worker would.
pub(super) struct Conn {
    pub h2: H2,
    pub out: Outbox,
    pub pool: BufferPool,
    pub now: u64,
    /// Call `consumed` for each Data event (as a runtime that delivers at once).
    pub auto_consume: bool,
}

impl Conn {
    /// A started connection (our preface queued and dropped).
    pub fn new(settings: Settings) -> Self {
        let mut conn = Self {
            h2: H2::new(settings),
            out: Outbox::default(),
            pool: BufferPool::default(),
            now: 0,
            auto_consume: false,
        };
        conn.h2.start(&mut conn.out, &mut conn.pool);
        conn
    }

    /// A connection past the client preface and an empty SETTINGS (its
    /// ACK and our preface dropped).
    pub fn open(settings: Settings) -> Self {
        let mut conn = Self::new(settings);
        let evs = conn.feed(&[&PREFACE[..], &self::settings(&[])].concat());
        assert!(evs.is_empty(), "{evs:?}");
        conn.sent();
        conn
    }

    /// Feeds one read; returns the events (an error last).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Ev> {
        let mut buf = bytes.to_vec();
        let mut evs = Vec::new();
        let mut consumed = Vec::new();
        let mut reader = self.h2.read(&mut buf);
        loop {
            match reader.next(&mut self.out, &mut self.pool, self.now) {
                Ok(None) => break,
                Err(e) => {
                    evs.push(Ev::Error(e));
                    break;
                }
                Ok(Some(ev)) => evs.push(match ev {
                    Event::Request {
                        stream,
                        request,
                        end_stream,
                    } => Ev::Request {
                        stream,
                        method: request.method().to_owned(),
                        protocol: request.protocol().map(str::to_owned),
                        fields: request
                            .fields()
                            .map(|(n, v)| (n.to_owned(), v.to_vec()))
                            .collect(),
                        end: end_stream,
                    },
                    Event::Data { stream, bytes } => {
                        consumed.push((stream, bytes.len()));
                        Ev::Data(stream, bytes.to_vec())
                    }
                    Event::End { stream } => Ev::End(stream),
                    Event::Reset {
                        stream,
                        code,
                        by_peer,
                    } => Ev::Reset(stream, code, by_peer),
                    Event::Window { stream } => Ev::Window(stream),
                    Event::GoAway { last_stream, code } => Ev::GoAway(last_stream, code),
                }),
            }
        }
        if self.auto_consume {
            for (stream, n) in consumed {
                self.h2.consumed(stream, n, &mut self.out, &mut self.pool);
            }
        }
        evs
    }

    /// The frames written since the last call.
    pub fn sent(&mut self) -> Vec<Sent> {
        parse(&drain(&mut self.out, &mut self.pool))
    }

    /// Opens stream `id` with the RFC 8441 request and responds 200.
    pub fn websocket(&mut self, client: &mut Client, id: u32) {
        let evs = self.feed(&client.headers(id, &WS_REQUEST, false));
        assert!(
            matches!(evs[..], [Ev::Request { stream, .. }] if stream == id),
            "{evs:?}"
        );
        self.h2
            .respond(id, 200, &[], false, &mut self.out, &mut self.pool);
    }

    pub fn respond(&mut self, id: u32, end: bool) {
        self.h2
            .respond(id, 200, &[], end, &mut self.out, &mut self.pool);
    }

    /// `send_data` of `bytes` (a queue of its own), with `budget`.
    pub fn send(&mut self, id: u32, bytes: &[u8], end: bool, budget: usize) -> (usize, Outbox) {
        let mut queue = Outbox::default();
        queue.push_copy(&mut self.pool, bytes, b"");
        let n = self
            .h2
            .send_data(id, &mut queue, end, &mut self.out, &mut self.pool, budget);
        (n, queue)
    }
}

/// The one GOAWAY among `sent`, and its error code.
pub(super) fn goaway(sent: &[Sent]) -> Option<ErrorCode> {
    let mut goaways = sent.iter().filter(|f| f.kind == kind::GOAWAY);
    let code = goaways.next().map(Sent::code);
    assert!(goaways.next().is_none(), "one GOAWAY: {sent:?}");
    code
}

/// The last event, which must be a connection error.
pub(super) fn error(evs: &[Ev]) -> H2Error {
    match evs.last() {
        Some(Ev::Error(e)) => *e,
        other => panic!("no error: {other:?} in {evs:?}"),
    }
}
