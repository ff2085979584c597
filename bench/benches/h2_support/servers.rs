//! The two servers under measure: our codec as the worker drives it
//! (`ringws::h2_bench`) and the `h2` crate driven from a worker-like loop.

use std::cell::{RefCell, RefMut};
use std::io;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use ringws::h2_bench::{Carrier, Pool};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::client::preface;
use super::{LIMITS, Sink, h2_echo, ours_app, websocket};

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

    /// One read of `bytes`.
    pub fn receive(&mut self, bytes: &[u8]) {
        {
            let mut pipe = self.io.0.borrow_mut();
            pipe.input.clear();
            pipe.input.extend_from_slice(bytes);
            pipe.pos = 0;
        }
        self.round();
    }

    /// The input is received again (its bytes as they are now).
    pub fn again(&mut self) {
        self.io.0.borrow_mut().pos = 0;
        self.round();
    }

    /// Frees what is the bench's and would be the worker's, not the
    /// connection's: the input, the echo's arena, the scratch list.
    pub fn shed_scaffolding(&mut self) {
        let mut pipe = self.io.0.borrow_mut();
        pipe.input = Vec::new();
        pipe.pos = 0;
        pipe.sink.keep = None;
        self.arena = BytesMut::new();
        self.ended = Vec::new();
    }

    pub fn input_mut(&mut self) -> RefMut<'_, Vec<u8>> {
        RefMut::map(self.io.0.borrow_mut(), |pipe| &mut pipe.input)
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
                        // An empty DATA (END_STREAM alone) comes as an
                        // empty chunk: no message in it (our codec says
                        // nothing of it but the end).
                        Poll::Ready(Some(Ok(data))) if data.is_empty() => {}
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
