//! What the HTTP/2 benches share (`h2.rs`, `h2_memory.rs`): a client that
//! writes the bytes both servers read (frames, and HPACK as a browser
//! encodes it: Huffman strings, incremental indexing), the WebSocket layer's
//! stand-in both servers call (an echo), and the two servers: our codec as
//! the worker drives it (`ringws::h2_bench`) and the `h2` crate driven from
//! a worker-like loop over in-memory I/O, polled with a no-op waker until a
//! pass makes no progress (no waker does any work for it).

// Each bench binary compiles this module and uses a part of it.
#![allow(dead_code, unused_imports)]

mod client;
mod hpack;
mod servers;

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use ringws::h2_bench::{Answer, Limits, Seen};
use ringws::proto::mask::apply_mask;

pub use client::{WS_REQUEST, echo_read, echo_replies, frame, open_streams, preface};
pub use hpack::Encoder;
pub use servers::{H2, Ours};

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

// Frame types and flags (RFC 9113 §6).
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

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

/// The DATA payloads a server wrote, by stream, each stream's in order.
pub fn data_by_stream(mut bytes: &[u8]) -> BTreeMap<u32, Vec<u8>> {
    let mut data: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    while !bytes.is_empty() {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        if bytes[3] == DATA && len > 0 {
            let stream = u32::from_be_bytes(bytes[5..9].try_into().unwrap()) & 0x7fff_ffff;
            data.entry(stream)
                .or_default()
                .extend_from_slice(&bytes[9..9 + len]);
        }
        bytes = &bytes[9 + len..];
    }
    data
}
