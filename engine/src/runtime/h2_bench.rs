//! Our HTTP/2 codec driven as the worker drives it, opened up for the
//! benchmarks that measure it against the `h2` crate (`bench/benches/h2.rs`,
//! `bench/benches/h2_memory.rs`) and nothing else. Not part of the API.
//!
//! A [`Carrier`] is one HTTP/2 socket as `runtime/worker/carrier.rs` keeps
//! it: the codec, the socket's send queue, and each carried stream's own
//! send queue (where a WebSocket's frames wait), keyed by stream id as
//! `Mux::streams` keys them. [`Carrier::read`] is `feed`: each event to its
//! stream, DATA handed on where it lies and credited back at once
//! (`consumed`); then the response heads (`send_heads`), then each stream
//! that queued something is moved into DATA frames within the peer's windows
//! (`flush_carried`); a stream the socket's queue has no room for waits
//! (`Mux::waiting`). [`Carrier::drain`] writes the socket's queue as the
//! epoll backend does and, each time it empties, flushes the waiting streams
//! again (`wake_waiting`). What the WebSocket layer would do with a request
//! or a payload is the caller's: it sees [`Seen`] and answers through
//! [`Answer`].

use std::io::IoSlice;

use slab::Slab;

use crate::transport::h2::hpack::{huffman, table};
use crate::transport::h2::{ErrorCode, Event, H2, Settings};
use crate::transport::mux::Streams;
use crate::transport::outbox::{BufferPool, MAX_IOVECS, Outbox};

/// HPACK's static table (RFC 7541 Appendix A), index 1 first: for the
/// benches' client encoder.
pub fn hpack_static_table() -> &'static [(&'static str, &'static str)] {
    &table::STATIC
}

/// The Huffman code of `byte` (RFC 7541 Appendix B): (code, length in bits).
pub fn hpack_huffman_code(byte: u8) -> (u32, u8) {
    huffman::code(u16::from(byte))
}

/// The codec's limits (the benches give the `h2` crate the same).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_concurrent_streams: u32,
    pub initial_window_size: u32,
    pub connection_window: u32,
}

/// A worker's buffer pool: one per worker, shared by its sockets and
/// streams.
#[derive(Debug, Default)]
pub struct Pool(BufferPool);

impl Pool {
    /// The worker's timer tick: spare buffers beyond what was out at once
    /// are freed (twice in a row leaves an idle worker none).
    pub fn trim(&mut self) {
        self.0.trim();
    }
}

/// What a read gave one stream.
#[derive(Debug)]
pub enum Seen<'a> {
    /// A new stream's request (validated by the codec).
    Request {
        stream: u32,
        method: &'a str,
        protocol: Option<&'a str>,
        /// `sec-websocket-version`.
        version: Option<&'a [u8]>,
    },
    /// DATA payload bytes, mutable where they lie in the read.
    Data { stream: u32, bytes: &'a mut [u8] },
    /// The peer ended its side.
    End { stream: u32 },
    /// The stream was reset (it is forgotten).
    Reset { stream: u32 },
}

/// The caller's answer to what it [`Seen`], for that stream.
#[derive(Debug)]
pub struct Answer<'a> {
    carried: Option<&'a mut Carried>,
    pool: &'a mut BufferPool,
    flush: &'a mut Vec<usize>,
    key: usize,
    accept: bool,
}

impl Answer<'_> {
    /// Answers the request with `:status 200` (sent after the read, as
    /// `send_heads` does).
    pub fn accept(&mut self) {
        self.accept = true;
    }

    /// Queues `header` and `payload` on the stream (as `WebSocket::send`
    /// queues a frame into the stream's own queue, copying it).
    pub fn send(&mut self, header: &[u8], payload: &[u8]) {
        if let Some(carried) = self.carried.as_deref_mut() {
            carried.queue.push_copy(self.pool, header, payload);
            self.mark();
        }
    }

    /// Our side of the stream ends once its queue is sent (END_STREAM).
    pub fn end(&mut self) {
        if let Some(carried) = self.carried.as_deref_mut() {
            carried.ending = true;
            self.mark();
        }
    }

    fn mark(&mut self) {
        if let Some(carried) = self.carried.as_deref_mut()
            && !carried.marked
        {
            carried.marked = true;
            self.flush.push(self.key);
        }
    }
}

/// A carried stream: its id and its own send queue.
#[derive(Debug)]
struct Carried {
    stream: u32,
    queue: Outbox,
    ending: bool,
    marked: bool,
}

/// Most bytes of DATA the socket's queue takes before it is written (the
/// worker's `CARRIER_QUEUE`).
const CARRIER_QUEUE: usize = 256 << 10;

/// One HTTP/2 socket, as the worker keeps it.
#[derive(Debug)]
pub struct Carrier {
    h2: H2,
    /// The socket's send queue.
    out: Outbox,
    streams: Streams,
    carried: Slab<Carried>,
    /// Streams whose request was accepted: their HEADERS go after the read.
    heads: Vec<u32>,
    /// Streams with something to flush.
    flush: Vec<usize>,
    /// Streams the socket's queue (or the peer's windows) held back.
    waiting: Vec<usize>,
}

impl Carrier {
    /// A socket that just began HTTP/2: the codec with our SETTINGS queued.
    pub fn new(limits: Limits, pool: &mut Pool) -> Self {
        let mut h2 = H2::new(Settings {
            max_concurrent_streams: limits.max_concurrent_streams,
            initial_window_size: limits.initial_window_size,
            connection_window: limits.connection_window,
            ..Settings::default()
        });
        let mut out = Outbox::default();
        h2.start(&mut out, &mut pool.0);
        Self {
            h2,
            out,
            streams: Streams::default(),
            carried: Slab::new(),
            heads: Vec::new(),
            flush: Vec::new(),
            waiting: Vec::new(),
        }
    }

    /// Streams carried.
    pub fn carried(&self) -> usize {
        self.carried.len()
    }

    /// Reads plaintext `bytes` of the socket through the codec, each event
    /// to `app`, then answers and flushes as the worker does after a read.
    /// Err: a connection error (GOAWAY queued).
    pub fn read(
        &mut self,
        pool: &mut Pool,
        bytes: &mut [u8],
        now_ms: u64,
        app: &mut impl FnMut(Seen<'_>, &mut Answer<'_>),
    ) -> Result<(), String> {
        let Self {
            h2,
            out,
            streams,
            carried,
            heads,
            flush,
            waiting,
        } = self;
        let pool = &mut pool.0;
        let mut reader = h2.read(bytes);
        loop {
            let event = reader
                .next(out, pool, now_ms)
                .map_err(|error| format!("{error:?}"))?;
            match event {
                None => break,
                Some(Event::Request {
                    stream,
                    request,
                    end_stream: _,
                }) => {
                    let key = carried.insert(Carried {
                        stream,
                        queue: Outbox::default(),
                        ending: false,
                        marked: false,
                    });
                    streams.insert(stream, key);
                    let mut answer = Answer {
                        carried: carried.get_mut(key),
                        pool,
                        flush,
                        key,
                        accept: false,
                    };
                    app(
                        Seen::Request {
                            stream,
                            method: request.method(),
                            protocol: request.protocol(),
                            version: request.field("sec-websocket-version"),
                        },
                        &mut answer,
                    );
                    if answer.accept {
                        heads.push(stream);
                    } else {
                        streams.remove(stream);
                        carried.remove(key);
                        reader
                            .codec()
                            .reset(stream, ErrorCode::REFUSED_STREAM, out, pool);
                    }
                }
                Some(Event::Data { stream, bytes }) => {
                    let n = bytes.len();
                    if let Some(key) = streams.key(stream) {
                        let mut answer = Answer {
                            carried: carried.get_mut(key),
                            pool,
                            flush,
                            key,
                            accept: false,
                        };
                        app(Seen::Data { stream, bytes }, &mut answer);
                    }
                    reader.codec().consumed(stream, n, out, pool);
                }
                Some(Event::End { stream }) => {
                    if let Some(key) = streams.key(stream) {
                        let mut answer = Answer {
                            carried: carried.get_mut(key),
                            pool,
                            flush,
                            key,
                            accept: false,
                        };
                        app(Seen::End { stream }, &mut answer);
                    }
                }
                Some(Event::Reset { stream, .. }) => {
                    if let Some(key) = streams.remove(stream) {
                        let mut gone = carried.remove(key);
                        gone.queue.clear(pool);
                        // Its key may be reused: nothing may flush it now.
                        flush.retain(|&k| k != key);
                        waiting.retain(|&k| k != key);
                        let mut answer = Answer {
                            carried: None,
                            pool,
                            flush,
                            key,
                            accept: false,
                        };
                        app(Seen::Reset { stream }, &mut answer);
                    }
                }
                // The windows opened: what they held back is flushed again.
                Some(Event::Window { .. }) => {
                    for key in waiting.drain(..) {
                        if let Some(c) = carried.get_mut(key)
                            && !c.marked
                        {
                            c.marked = true;
                            flush.push(key);
                        }
                    }
                }
                Some(Event::GoAway { .. }) => {}
            }
        }
        // send_heads
        for stream in heads.drain(..) {
            h2.respond(stream, 200, &[], false, out, pool);
        }
        self.flush_marked(pool);
        Ok(())
    }

    /// `flush_carried`, for each stream marked: its queue into DATA frames
    /// within the windows and the room left in the socket's queue; what is
    /// left waits. A stream ended and sent is released.
    fn flush_marked(&mut self, pool: &mut BufferPool) {
        for key in self.flush.drain(..) {
            let Some(c) = self.carried.get_mut(key) else {
                continue;
            };
            c.marked = false;
            let room = CARRIER_QUEUE.saturating_sub(self.out.len());
            self.h2
                .send_data(c.stream, &mut c.queue, c.ending, &mut self.out, pool, room);
            if !c.queue.is_empty() {
                if !self.waiting.contains(&key) {
                    self.waiting.push(key);
                }
            } else if c.ending {
                // Released: the codec forgets it (RST_STREAM if the peer
                // may still send).
                let stream = c.stream;
                self.streams.remove(stream);
                self.carried.remove(key);
                self.h2.release(stream, &mut self.out, pool);
            }
        }
    }

    /// Writes the socket's queue to `sink` as the epoll backend's write
    /// does (its slices, then consumed); each time it is empty, the streams
    /// it held back are flushed into it again (`on_sent`'s `wake_waiting`),
    /// until nothing is left. Returns the bytes written.
    pub fn drain(&mut self, pool: &mut Pool, sink: &mut impl FnMut(&[u8])) -> usize {
        let mut total = 0;
        loop {
            while !self.out.is_empty() {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let count = self.out.io_slices(&mut slices);
                let mut n = 0;
                for slice in &slices[..count] {
                    sink(slice);
                    n += slice.len();
                }
                self.out.consume(&mut pool.0, n);
                total += n;
            }
            if self.waiting.is_empty() {
                return total;
            }
            for key in self.waiting.drain(..) {
                if let Some(c) = self.carried.get_mut(key) {
                    c.marked = true;
                    self.flush.push(key);
                }
            }
            self.flush_marked(&mut pool.0);
        }
    }
}
