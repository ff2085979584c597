//! Target `h2_frames`: the server-side HTTP/2 codec
//! ([`H2`](crate::transport::h2::H2)) after the client preface, fed what
//! the input makes of a client: frames built right (requests through a real
//! HPACK encoder, DATA padded or not, WINDOW_UPDATE, RST_STREAM, SETTINGS,
//! PING, PRIORITY, GOAWAY, header blocks split into CONTINUATION frames)
//! and raw frames and bytes, in reads cut where the input says; while the
//! server drives it as the runtime would: a response for each request, the
//! data consumed, data sent back, streams paused, resumed, reset, released,
//! ended, GOAWAY.
//!
//! Checked: no panic; nothing read after a connection error, which writes
//! one GOAWAY and nothing after it; at most SETTINGS_MAX_CONCURRENT_STREAMS
//! streams open; our receive window on the connection never negative and no
//! window past 2^31-1; what a read writes bounded by what it read; events
//! only for streams the runtime was told of (no data after the peer's end
//! or a reset); send_data never moves more than send_capacity said;
//! everything written parses as frames, every response block decodes, and
//! no DATA goes before its stream's HEADERS or after its END_STREAM or
//! RST_STREAM.

use std::collections::{HashMap, HashSet};

use super::Input;
use crate::transport::h2::{ErrorCode, Event, H2, PREFACE, Settings};
use crate::transport::outbox::{BufferPool, MAX_IOVECS, Outbox};

/// Most operations of one input, and most bytes the client sends.
const MAX_OPS: usize = 256;
/// The largest flow-control window (RFC 9113 §6.9.1).
const MAX_WINDOW: i64 = (1 << 31) - 1;
const MAX_STREAM: usize = 1 << 20;
/// What a read may write beyond three bytes per byte read: a WINDOW_UPDATE
/// batch and a GOAWAY.
const ANSWER_SLACK: usize = 64;

const HEADERS: u8 = 0x1;
const DATA: u8 = 0x0;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The fields of a request the input picks: the RFC 8441 one, a GET, or
/// fields of the input's own (often malformed).
fn request_fields(input: &mut Input<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let base: &[(&str, &str)] = match input.byte() % 4 {
        0 | 1 => &[
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "https"),
            (":path", "/chat"),
            (":authority", "example.com"),
            ("sec-websocket-version", "13"),
        ],
        2 => &[(":method", "GET"), (":scheme", "https"), (":path", "/")],
        _ => &[],
    };
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = base
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    for _ in 0..input.byte() % 4 {
        let len = usize::from(input.byte() % 12);
        let name = input.take(len).to_vec();
        let len = usize::from(input.byte() % 24);
        let value = input.take(len).to_vec();
        fields.push((name, value));
    }
    fields
}

/// The bytes the client sends for one operation.
fn client_op(
    input: &mut Input<'_>,
    encoder: &mut loona_hpack::Encoder<'_>,
    next_id: &mut u32,
) -> Vec<u8> {
    let op = input.byte();
    // A stream near the last one opened (often open), or any id.
    let stream = match input.byte() % 4 {
        0 => u32::from(input.byte()),
        _ => next_id
            .saturating_sub(2 * u32::from(input.byte() % 4))
            .max(1),
    };
    match op % 12 {
        0..=2 => {
            let fields = request_fields(input);
            let block = encoder.encode(fields.iter().map(|(n, v)| (&n[..], &v[..])));
            let id = *next_id;
            *next_id += 2;
            let end = if input.byte() & 1 == 1 { END_STREAM } else { 0 };
            let split = usize::from(input.byte()).min(block.len());
            if split == 0 || split == block.len() {
                return frame(HEADERS, END_HEADERS | end, id, &block);
            }
            let mut bytes = frame(HEADERS, end, id, &block[..split]);
            bytes.extend(frame(CONTINUATION, END_HEADERS, id, &block[split..]));
            bytes
        }
        3..=5 => {
            let len = super::size(input, 40_000);
            let end = if input.byte() & 1 == 1 { END_STREAM } else { 0 };
            let pad = input.byte();
            if pad < 32 {
                let mut payload = vec![pad];
                payload.extend(super::pattern(len.min(16_000), pad));
                payload.extend(vec![0; usize::from(pad)]);
                return frame(DATA, end | 0x8, stream, &payload);
            }
            frame(DATA, end, stream, &super::pattern(len.min(16_384), pad))
        }
        6 => {
            let increment = match input.byte() % 4 {
                0 => 0,
                1 => 0x7fff_ffff,
                _ => u32::from(input.u16()) * 4,
            };
            frame(
                0x8,
                0,
                if input.byte() & 1 == 0 { 0 } else { stream },
                &increment.to_be_bytes(),
            )
        }
        7 => frame(
            RST_STREAM,
            0,
            stream,
            &u32::from(input.byte() % 14).to_be_bytes(),
        ),
        8 => {
            let mut payload = Vec::new();
            for _ in 0..input.byte() % 3 {
                payload.extend(u16::from(input.byte() % 9).to_be_bytes());
                let value = match input.byte() % 4 {
                    0 => u32::from(input.u16()),
                    1 => 16_384 + u32::from(input.u16()),
                    2 => 1 << 31,
                    _ => u32::from(input.byte() % 2),
                };
                payload.extend(value.to_be_bytes());
            }
            frame(0x4, input.byte() & 1, 0, &payload)
        }
        9 => frame(0x6, input.byte() & 1, 0, input.take(8)),
        10 => {
            // A raw frame: any type, flags, stream, payload.
            let kind = input.byte() % 12;
            let flags = input.byte();
            let len = usize::from(input.byte() % 40);
            frame(kind, flags, stream, input.take(len))
        }
        _ => {
            let len = usize::from(input.byte() % 32);
            input.take(len).to_vec()
        }
    }
}

/// What the server wrote, parsed and checked frame by frame.
#[derive(Debug, Default)]
struct Written {
    /// Streams whose HEADERS went out, and whether our side ended.
    responded: HashMap<u32, bool>,
    reset: HashSet<u32>,
    /// A header block is being continued on this stream.
    continuing: Option<u32>,
    block: Vec<u8>,
    /// A GOAWAY with an error code went out: nothing may follow.
    failed: bool,
}

impl Written {
    fn check(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            assert!(!self.failed, "a frame after an error's GOAWAY");
            assert!(bytes.len() >= 9, "a cut frame header");
            let len =
                usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
            let (kind, flags) = (bytes[3], bytes[4]);
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
            let payload = &bytes[9..9 + len];
            bytes = &bytes[9 + len..];
            if let Some(id) = self.continuing {
                assert_eq!(
                    (kind, stream),
                    (CONTINUATION, id),
                    "a frame inside our header block"
                );
            }
            match kind {
                HEADERS | CONTINUATION => {
                    if kind == HEADERS {
                        assert!(
                            !self.responded.contains_key(&stream),
                            "a second response on {stream}"
                        );
                        assert!(!self.reset.contains(&stream));
                        self.responded.insert(stream, flags & END_STREAM != 0);
                        self.block.clear();
                    }
                    self.block.extend_from_slice(payload);
                    self.continuing = (flags & END_HEADERS == 0).then_some(stream);
                    if flags & END_HEADERS != 0 {
                        let fields = loona_hpack::Decoder::new()
                            .decode(&self.block)
                            .expect("our block decodes");
                        assert_eq!(fields.first().map(|f| &f.0[..]), Some(&b":status"[..]));
                    }
                }
                DATA => {
                    assert!(
                        !self.reset.contains(&stream),
                        "DATA after our RST_STREAM on {stream}"
                    );
                    let ended = self
                        .responded
                        .get_mut(&stream)
                        .expect("DATA before HEADERS");
                    assert!(!*ended, "DATA after END_STREAM on {stream}");
                    *ended = flags & END_STREAM != 0;
                }
                RST_STREAM => {
                    self.reset.insert(stream);
                }
                GOAWAY => {
                    let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                    self.failed = code != ErrorCode::NO_ERROR.0;
                }
                _ => {}
            }
        }
    }
}

fn drain(out: &mut Outbox, pool: &mut BufferPool) -> Vec<u8> {
    let mut bytes = Vec::new();
    while !out.is_empty() {
        let mut slices = [std::io::IoSlice::new(&[]); MAX_IOVECS];
        let count = out.io_slices(&mut slices);
        for s in &slices[..count] {
            bytes.extend_from_slice(s);
        }
        let n: usize = slices[..count].iter().map(|s| s.len()).sum();
        out.consume(pool, n);
    }
    bytes
}

/// The server as the runtime drives it.
struct Server {
    h2: H2,
    settings: Settings,
    out: Outbox,
    pool: BufferPool,
    written: Written,
    /// Streams the runtime knows (a Request came, no Reset yet), and
    /// whether the peer's side is still open.
    known: HashMap<u32, bool>,
    paused: HashSet<u32>,
    failed: bool,
    now: u64,
}

impl Server {
    fn flush(&mut self) {
        let bytes = drain(&mut self.out, &mut self.pool);
        self.written.check(&bytes);
    }

    fn read(&mut self, bytes: &[u8], respond_end: bool) {
        let mut buf = bytes.to_vec();
        let mut consumed = Vec::new();
        let mut requests = Vec::new();
        let before = self.out.len();
        let mut reader = self.h2.read(&mut buf);
        loop {
            match reader.next(&mut self.out, &mut self.pool, self.now) {
                Ok(None) => break,
                Err(_) => {
                    assert!(!self.failed, "an error after an error");
                    self.failed = true;
                    break;
                }
                Ok(Some(event)) => match event {
                    Event::Request {
                        stream,
                        end_stream,
                        request,
                    } => {
                        assert!(!request.method().is_empty());
                        assert!(
                            self.known.insert(stream, !end_stream).is_none(),
                            "a second request on {stream}"
                        );
                        requests.push(stream);
                    }
                    Event::Data { stream, bytes } => {
                        assert!(!bytes.is_empty(), "empty Data");
                        assert_eq!(self.known.get(&stream), Some(&true), "Data on {stream}");
                        consumed.push((stream, bytes.len()));
                    }
                    Event::End { stream } => {
                        assert_eq!(
                            self.known.insert(stream, false),
                            Some(true),
                            "End on {stream}"
                        );
                    }
                    Event::Reset { stream, .. } => {
                        self.known.remove(&stream);
                    }
                    Event::Window { .. } | Event::GoAway { .. } => {}
                },
            }
        }
        let written = self.out.len() - before;
        assert!(
            written <= 3 * bytes.len() + ANSWER_SLACK,
            "{written} bytes written for {} read",
            bytes.len()
        );
        if self.failed {
            // Nothing more is read.
            let mut again = PREFACE.to_vec();
            let mut reader = self.h2.read(&mut again);
            assert!(
                reader
                    .next(&mut self.out, &mut self.pool, self.now)
                    .is_err()
            );
            self.flush();
            return;
        }
        for (stream, n) in consumed {
            self.h2.consumed(stream, n, &mut self.out, &mut self.pool);
        }
        for stream in requests {
            self.h2.respond(
                stream,
                200,
                &[("sec-websocket-protocol", "chat")],
                respond_end,
                &mut self.out,
                &mut self.pool,
            );
        }
        self.check();
        self.flush();
    }

    fn check(&self) {
        assert!(self.h2.open_streams() <= self.settings.max_concurrent_streams as usize);
        let (conn_send, streams) = self.h2.windows();
        assert!(conn_send <= MAX_WINDOW);
        assert!(
            self.h2.conn_recv_window() >= 0,
            "our connection window below 0"
        );
        for (id, send, recv) in streams {
            assert!(
                send <= MAX_WINDOW && recv <= MAX_WINDOW,
                "{id}: {send} {recv}"
            );
        }
    }

    /// One thing the runtime does between reads, on a stream it knows.
    fn act(&mut self, input: &mut Input<'_>) {
        let mut ids: Vec<u32> = self.known.keys().copied().collect();
        ids.sort_unstable();
        let op = input.byte();
        let Some(&stream) = ids.get(usize::from(input.byte()) % ids.len().max(1)) else {
            return;
        };
        match op % 8 {
            0..=2 => {
                let capacity = self.h2.send_capacity(stream);
                let mut queue = Outbox::default();
                queue.push_copy(
                    &mut self.pool,
                    &super::pattern(super::size(input, 100_000), op),
                    b"",
                );
                let budget = super::size(input, usize::MAX);
                let moved = self.h2.send_data(
                    stream,
                    &mut queue,
                    op & 8 != 0,
                    &mut self.out,
                    &mut self.pool,
                    budget,
                );
                assert!(moved <= capacity && moved <= budget, "{moved} > {capacity}");
                queue.clear(&mut self.pool);
            }
            3 => {
                self.h2.pause(stream);
                self.paused.insert(stream);
            }
            4 => {
                self.h2.resume(stream, &mut self.out, &mut self.pool);
                self.paused.remove(&stream);
            }
            5 => {
                let code = ErrorCode(u32::from(input.byte() % 14));
                self.h2.reset(stream, code, &mut self.out, &mut self.pool);
                self.known.remove(&stream);
            }
            6 => {
                self.h2.release(stream, &mut self.out, &mut self.pool);
                self.known.remove(&stream);
            }
            _ => match input.byte() % 3 {
                0 => self
                    .h2
                    .go_away(ErrorCode::NO_ERROR, &mut self.out, &mut self.pool),
                _ => self.h2.end_stream(stream, &mut self.out, &mut self.pool),
            },
        }
        self.check();
        self.flush();
    }
}

/// The target: see the module's documentation.
pub fn h2_frames(data: &[u8]) {
    let mut input = Input(data);
    let tight = input.byte();
    let settings = Settings {
        max_concurrent_streams: u32::from(tight % 8) + 1,
        initial_window_size: if tight & 8 != 0 { 1_000 } else { 65_535 },
        connection_window: if tight & 16 != 0 { 65_535 } else { 1 << 20 },
        max_header_list_size: if tight & 32 != 0 { 300 } else { 16_384 },
        resets_per_second: if tight & 64 != 0 { 5 } else { 100 },
        control_frames_per_second: if tight & 128 != 0 { 20 } else { 1_000 },
        ..Settings::default()
    };
    let mut server = Server {
        h2: H2::new(settings),
        settings,
        out: Outbox::default(),
        pool: BufferPool::default(),
        written: Written::default(),
        known: HashMap::new(),
        paused: HashSet::new(),
        failed: false,
        now: 0,
    };
    server.h2.start(&mut server.out, &mut server.pool);
    server.flush();
    let mut encoder = loona_hpack::Encoder::new();
    let mut next_id = 1;
    let mut wire = [&PREFACE[..], &frame(0x4, 0, 0, &[])].concat();
    let mut sent = 0;
    for _ in 0..MAX_OPS {
        if input.is_empty() || server.failed || sent > MAX_STREAM {
            break;
        }
        match input.byte() % 4 {
            0 | 1 => wire.extend(client_op(&mut input, &mut encoder, &mut next_id)),
            2 => {
                // The bytes so far, as reads of the sizes the input picks.
                let mut rest = &wire[..];
                while !rest.is_empty() && !server.failed {
                    let cut = super::size(&mut input, rest.len()).max(1);
                    let (read, tail) = rest.split_at(cut.min(rest.len()));
                    server.read(read, input.byte() & 1 == 1);
                    rest = tail;
                }
                sent += wire.len();
                wire.clear();
            }
            _ => {
                server.now += u64::from(input.byte()) * 4;
                server.act(&mut input);
            }
        }
    }
    if !server.failed && !wire.is_empty() {
        server.read(&wire, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs from a fixed generator: the harness holds up, and reaches
    /// requests, data and errors (the fuzz runs are in scripts/fuzz.sh).
    #[test]
    fn the_target_runs_on_generated_inputs() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..400 {
            let len = (next() % 800) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(first) = data.first_mut() {
                *first = i as u8;
            }
            h2_frames(&data);
        }
    }

    /// A script that opens streams, sends data both ways and resets: the
    /// path through the harness that random bytes rarely take in full.
    #[test]
    fn a_scripted_exchange_runs() {
        // settings byte; then ops: 0 = client op (HEADERS op 0, stream sel 1,
        // request kind 0, no extra fields, no END_STREAM, no split), 2 = read
        // it all, 3 = act.
        let mut data = vec![0x07];
        for _ in 0..4 {
            data.extend([0, 0, 1, 0, 0, 0, 0]);
            data.extend([2, 255, 0]);
            data.extend([0, 3, 1, 0, 10, 0, 1, 64]); // DATA on the last stream
            data.extend([2, 255, 0]);
            data.extend([3, 1, 0, 0, 10, 10]); // send_data
        }
        h2_frames(&data);
    }
}
