//! The client: the bytes both servers read (its preface, the WebSocket
//! requests, the echo's DATA), each built once, outside the timing.

use std::collections::BTreeMap;

use ringws::proto::mask::apply_mask;

use super::hpack::Encoder;
use super::{ACK, CLIENT_WINDOW, DATA, END_HEADERS, HEADERS, SETTINGS, STREAMS, WINDOW_UPDATE};

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
        ws.extend(echo_payload(i, payload));
        apply_mask(&mut ws[start..], key, 0);
        frame(&mut out, DATA, 0, 1 + 2 * i, &ws);
    }
    out
}

/// The `i`th stream's payload in the echo (a different one per stream, so
/// that a reply on the wrong stream shows).
fn echo_payload(i: u32, payload: usize) -> impl Iterator<Item = u8> {
    (0..payload).map(move |j| (j as u8).wrapping_add(i as u8))
}

/// What a server must send back for `rounds` reads of [`echo_read`]: on
/// each stream, by id, the unmasked payload framed by the server (no mask,
/// FIN, binary), once a round.
pub fn echo_replies(payload: usize, rounds: usize) -> BTreeMap<u32, Vec<u8>> {
    (0..STREAMS)
        .map(|i| {
            let mut reply = vec![0x82];
            if payload < 126 {
                reply.push(payload as u8);
            } else {
                reply.push(126);
                reply.extend_from_slice(&(payload as u16).to_be_bytes());
            }
            reply.extend(echo_payload(i, payload));
            (1 + 2 * i, reply.repeat(rounds))
        })
        .collect()
}
