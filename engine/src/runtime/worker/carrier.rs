//! HTTP/2 sockets and the streams they carry (RFC 9113, RFC 8441). A socket
//! whose first bytes are the HTTP/2 preface (by ALPN, or by prior knowledge
//! where allowed) becomes a carrier: its transport is a [`Mux`] (the codec
//! over what it spoke), its own stream is in [`Phase::Carrier`] and its send
//! queue holds the codec's frames. Each request opens a stream of its own in
//! the slab ([`Transport::Carried`]), with its own `ConnId`, link, decoder and
//! timers: the HTTP phase, `on_upgrade` (deferred too), the callbacks and the
//! timers see it as they see any WebSocket. Its DATA is handed to it where it
//! lies; what it sends is moved into DATA frames within the peer's windows
//! when it is flushed ([`Worker::flush_carried`]), and its end becomes
//! END_STREAM or RST_STREAM.

use super::*;
use crate::transport::h2::{ErrorCode, Event, H2, H2Error, Settings};
use crate::transport::mux::Streams;

/// Most bytes of DATA a carrier's send queue takes from its streams before
/// its socket writes them: past it, a slow socket leaves each stream's bytes
/// in the stream's own queue, where its backpressure and `on_drain` see them.
const CARRIER_QUEUE: usize = 256 << 10;

/// What a read of an HTTP/2 socket reaches of its worker.
struct Carrying<'w, H: Handler> {
    conns: &'w mut Slab<Conn<H::Data>>,
    handler: &'w mut H,
    shared: &'w mut Shared<H::Data>,
    inflated: &'w mut InflateBuffer,
    generation: &'w mut u32,
    stamping: &'w mut Vec<usize>,
    index: usize,
    /// The tick, and the handshake deadline of a stream opened now.
    now: u32,
    deadline: u32,
}

/// The codec's limits from the configuration.
pub(super) fn settings(config: &Config) -> Settings {
    let h2 = &config.http2;
    Settings {
        max_concurrent_streams: h2.max_concurrent_streams,
        initial_window_size: h2.initial_window_size,
        connection_window: h2.connection_window,
        max_header_list_size: h2.max_header_list_size,
        header_table_size: h2.header_table_size,
        resets_per_second: h2.resets_per_second,
        control_frames_per_second: h2.control_frames_per_second,
        ..Settings::default()
    }
}

impl<H: Handler> Worker<H> {
    /// The socket `key` began HTTP/2 in the read just done: it gets its
    /// codec (our SETTINGS queued) and the codec reads what came from the
    /// preface on.
    pub(super) fn carry(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut start = conn.stream.link.take_head().unwrap_or_default();
        let mut h2 = H2::new(settings(&self.shared.config));
        h2.start(&mut conn.stream.link.outbox, &mut self.shared.pool);
        conn.socket.transport.carry(h2);
        conn.stream.link.mark(&mut self.shared.flush);
        self.read_carrier(key, &mut start, true);
    }

    /// Bytes received on HTTP/2 socket `key` (ciphertext over TLS; the
    /// plaintext itself when `plaintext`), through its codec to its streams.
    pub(super) fn read_carrier(&mut self, key: usize, data: &mut [u8], plaintext: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.stream.link.phase() == Phase::Ended {
            return;
        }
        let Transport::Mux(mut boxed) =
            std::mem::replace(&mut conn.socket.transport, Transport::Plain)
        else {
            return;
        };
        let deadline = self.ticks.handshake_deadline(self.clock.now());
        let Self {
            conns,
            handler,
            shared,
            inflated,
            plain,
            runs,
            generation,
            stamping,
            index,
            clock,
            ..
        } = self;
        let mut cx = Carrying {
            conns,
            handler,
            shared,
            inflated,
            generation,
            stamping,
            index: *index,
            now: clock.now(),
            deadline,
        };
        let mux = &mut *boxed;
        let mut failed: Option<H2Error> = None;
        let mut ended: Option<Result<(), TlsError>> = None;
        if plaintext {
            failed = feed(
                &mut cx,
                key,
                &mut mux.h2,
                &mut mux.streams,
                &mut mux.waiting,
                data,
            )
            .err();
        } else {
            let mut reading = mux.below.read(data, plain, runs);
            while failed.is_none() {
                match reading.next(&mut cx.shared.pool) {
                    Ok(Some(Step::Plaintext { bytes, runs, .. })) => {
                        for run in runs {
                            let bytes = &mut bytes[run.clone()];
                            let fed = feed(
                                &mut cx,
                                key,
                                &mut mux.h2,
                                &mut mux.streams,
                                &mut mux.waiting,
                                bytes,
                            );
                            if let Err(error) = fed {
                                failed = Some(error);
                                break;
                            }
                        }
                    }
                    Ok(Some(Step::PeerClosed)) => {
                        ended = Some(Ok(()));
                        break;
                    }
                    Ok(None) => break,
                    Err(error) => {
                        ended = Some(Err(error));
                        break;
                    }
                }
            }
        }
        let children: Vec<usize> = if failed.is_some() || ended.is_some() {
            mux.streams.keys().collect()
        } else {
            Vec::new()
        };
        let pending = mux.below.pending();
        let Some(conn) = cx.conns.get_mut(key) else {
            return;
        };
        conn.socket.transport = Transport::Mux(boxed);
        let link = &mut conn.stream.link;
        if let Some(error) = failed {
            // GOAWAY is queued: it goes out, then the socket closes.
            log::debug!(
                "HTTP/2 connection {} from {} failed: {} ({:?})",
                link.id,
                link.peer(),
                error.reason,
                error.code
            );
            cx.shared.counters.http2_errors += 1;
            link.end(
                cx.shared,
                Finish::ShutdownWrite,
                CloseCode::ABNORMAL,
                "",
                CloseCause::Reset,
            );
        }
        match ended {
            Some(Ok(())) => link.closed_by_tls_peer(cx.shared),
            Some(Err(error)) => link.fail_tls(cx.shared, error),
            None => {}
        }
        if !link.outbox.is_empty() || pending {
            link.mark(&mut cx.shared.flush);
        }
        // Its streams end with it (1006 to the WebSockets).
        for child in children {
            if let Some(conn) = cx.conns.get_mut(child) {
                conn.stream.link.hang_up(cx.shared, false);
            }
        }
        self.send_heads();
    }

    /// Sends the response heads the HTTP phase queued for carried streams:
    /// each a HEADERS frame on its socket, before any of its DATA.
    pub(super) fn send_heads(&mut self) {
        for head in std::mem::take(&mut self.shared.heads) {
            let Some(conn) = conn_of(&mut self.conns, head.id) else {
                continue;
            };
            let Some((socket, stream)) = conn.socket.transport.carrier() else {
                continue;
            };
            let Some(carrier) = self.conns.get_mut(socket) else {
                continue;
            };
            let Conn {
                socket: carrier_socket,
                stream: carrier_stream,
            } = carrier;
            let Some(mux) = carrier_socket.transport.mux() else {
                continue;
            };
            let headers: Vec<(&str, &str)> = head
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            mux.h2.respond(
                stream,
                head.status,
                &headers,
                head.end,
                &mut carrier_stream.link.outbox,
                &mut self.shared.pool,
            );
            carrier_stream.link.mark(&mut self.shared.flush);
        }
    }

    /// Flushes carried stream `key` (HTTP/2 stream `stream` of socket
    /// `socket`): its queue into DATA frames within the peer's windows and
    /// the room of its socket's queue, then what its end asks (END_STREAM,
    /// RST_STREAM, its release).
    pub(super) fn flush_carried(&mut self, key: usize, socket: usize, stream: u32) {
        let Some((child, carrier)) = self.conns.get2_mut(key, socket) else {
            // Its socket is gone: so is it.
            return self.on_released(key);
        };
        let link = &mut child.stream.link;
        link.unmark();
        let out = &mut carrier.stream.link.outbox;
        let Some(mux) = carrier.socket.transport.mux() else {
            return self.on_released(key);
        };
        let pool = &mut self.shared.pool;
        let finish = link.finish();
        if finish == Finish::Abort {
            mux.h2.reset(stream, ErrorCode::CANCEL, out, pool);
            carrier.stream.link.mark(&mut self.shared.flush);
            return self.on_released(key);
        }
        let ending = matches!(finish, Finish::ShutdownWrite | Finish::Close);
        let room = CARRIER_QUEUE.saturating_sub(out.len());
        let before = out.len();
        mux.h2
            .send_data(stream, &mut link.outbox, ending, out, pool, room);
        if out.len() != before {
            carrier.stream.link.mark(&mut self.shared.flush);
        }
        if !link.outbox.is_empty() {
            // The peer's windows or the socket's queue hold it back: flushed
            // again when either opens.
            link.stall(&mut self.shared.counters);
            let key = key as u32;
            if !mux.waiting.contains(&key) {
                mux.waiting.push(key);
            }
            return;
        }
        if std::mem::take(&mut link.stalled) && link.phase() == Phase::Open {
            self.handler
                .on_drain(&mut WebSocket::new(link, &mut self.shared));
            if !link.outbox.is_empty() {
                return link.mark(&mut self.shared.flush);
            }
        }
        match link.finish() {
            Finish::None => {}
            // END_STREAM went with the last DATA: the peer's end (or the
            // close timeout) releases it.
            Finish::ShutdownWrite => link.write_side_shut(),
            Finish::Close | Finish::Abort => self.on_released(key),
        }
    }

    /// Carried stream `key` was released (`on_released`): its socket's codec
    /// forgets it (RST_STREAM if its peer may still send), and a socket going
    /// away with no stream left ends.
    pub(super) fn forget_carried(&mut self, socket: usize, stream: u32) {
        let Some(carrier) = self.conns.get_mut(socket) else {
            return;
        };
        let Conn {
            socket: carrier_socket,
            stream: carrier_stream,
        } = carrier;
        let Some(mux) = carrier_socket.transport.mux() else {
            return;
        };
        mux.streams.remove(stream);
        mux.h2.release(
            stream,
            &mut carrier_stream.link.outbox,
            &mut self.shared.pool,
        );
        let link = &mut carrier_stream.link;
        if mux.h2.going_away() && mux.carried() == 0 && link.phase() == Phase::Carrier {
            link.end(
                &mut self.shared,
                Finish::ShutdownWrite,
                CloseCode::ABNORMAL,
                "",
                CloseCause::Shutdown,
            );
        }
        link.mark(&mut self.shared.flush);
    }

    /// The streams HTTP/2 socket `key` carried, after it went away: each ends
    /// (1006 to an open WebSocket) and is released.
    pub(super) fn release_carried_by(&mut self, mux: &Mux) {
        for child in mux.streams.keys().collect::<Vec<_>>() {
            self.on_released(child);
        }
    }

    /// The windows or the socket's queue opened: the streams they held back
    /// are flushed again.
    pub(super) fn wake_waiting(&mut self, key: usize) {
        let Some(mux) = self
            .conns
            .get_mut(key)
            .and_then(|conn| conn.socket.transport.mux())
        else {
            return;
        };
        for child in std::mem::take(&mut mux.waiting) {
            if let Some(conn) = self.conns.get_mut(child as usize) {
                conn.stream.link.mark(&mut self.shared.flush);
            }
        }
    }

    /// Shutdown on an HTTP/2 socket: GOAWAY (no new stream); it ends once its
    /// streams have (each WebSocket is closed with 1001 as any is).
    pub(super) fn go_away(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Conn { socket, stream } = conn;
        let Some(mux) = socket.transport.mux() else {
            return;
        };
        mux.h2.go_away(
            ErrorCode::NO_ERROR,
            &mut stream.link.outbox,
            &mut self.shared.pool,
        );
        if mux.carried() == 0 {
            stream.link.end(
                &mut self.shared,
                Finish::ShutdownWrite,
                CloseCode::ABNORMAL,
                "",
                CloseCause::Shutdown,
            );
        }
        stream.link.mark(&mut self.shared.flush);
    }

    /// Pauses or resumes reading carried stream `key` (its rate limit): the
    /// stream's receive window is withheld, so only it stalls. False if it is
    /// not a carried stream (the backend pauses the socket instead).
    pub(super) fn gate_carried(&mut self, key: usize, pause: bool) -> bool {
        let Some((socket, stream)) = self
            .conns
            .get(key)
            .and_then(|conn| conn.socket.transport.carrier())
        else {
            return false;
        };
        let Some(carrier) = self.conns.get_mut(socket) else {
            return true;
        };
        let Conn {
            socket: carrier_socket,
            stream: carrier_stream,
        } = carrier;
        if let Some(mux) = carrier_socket.transport.mux() {
            if pause {
                mux.h2.pause(stream);
            } else {
                mux.h2.resume(
                    stream,
                    &mut carrier_stream.link.outbox,
                    &mut self.shared.pool,
                );
                carrier_stream.link.mark(&mut self.shared.flush);
            }
        }
        true
    }
}

/// Reads plaintext `bytes` of HTTP/2 socket `key` through its codec: each
/// event to the stream it names. A connection error ends the read (GOAWAY is
/// queued).
fn feed<H: Handler>(
    cx: &mut Carrying<'_, H>,
    key: usize,
    h2: &mut H2,
    streams: &mut Streams,
    waiting: &mut Vec<u32>,
    bytes: &mut [u8],
) -> Result<(), H2Error> {
    let mut reader = h2.read(bytes);
    loop {
        let Some(carrier) = cx.conns.get_mut(key) else {
            return Ok(());
        };
        let peer = carrier.stream.link.peer();
        let now_ms = cx.shared.now_ms;
        let event = reader.next(&mut carrier.stream.link.outbox, &mut cx.shared.pool, now_ms)?;
        match event {
            None => return Ok(()),
            Some(Event::Request {
                stream,
                request,
                end_stream,
            }) => {
                if !open_stream(cx, key, peer, streams, stream, request, end_stream) {
                    cx.shared.counters.http2_refused_streams += 1;
                    let carrier = &mut cx.conns[key];
                    reader.codec().reset(
                        stream,
                        ErrorCode::REFUSED_STREAM,
                        &mut carrier.stream.link.outbox,
                        &mut cx.shared.pool,
                    );
                }
            }
            Some(Event::Data { stream, bytes }) => {
                let n = bytes.len();
                if let Some(conn) = streams.key(stream).and_then(|k| cx.conns.get_mut(k)) {
                    conn.stream.timer.received(cx.now);
                    let gated = conn.socket.gated();
                    dispatch::deliver(
                        cx.handler,
                        cx.shared,
                        cx.inflated,
                        &mut conn.stream,
                        gated,
                        bytes,
                        None,
                    );
                }
                let carrier = &mut cx.conns[key];
                reader.codec().consumed(
                    stream,
                    n,
                    &mut carrier.stream.link.outbox,
                    &mut cx.shared.pool,
                );
            }
            Some(Event::End { stream }) => {
                if let Some(conn) = streams.key(stream).and_then(|k| cx.conns.get_mut(k)) {
                    peer_ended(&mut conn.stream.link, cx.shared);
                }
            }
            Some(Event::Reset {
                stream,
                code,
                by_peer,
            }) => {
                log::trace!("HTTP/2 stream {stream} reset ({code:?}, by the peer: {by_peer})");
                if !by_peer {
                    cx.shared.counters.http2_refused_streams += 1;
                }
                if let Some(conn) = streams.key(stream).and_then(|k| cx.conns.get_mut(k)) {
                    conn.stream.link.hang_up(cx.shared, false);
                }
            }
            Some(Event::Window { stream: 0 }) => {
                for child in waiting.drain(..) {
                    if let Some(conn) = cx.conns.get_mut(child as usize) {
                        conn.stream.link.mark(&mut cx.shared.flush);
                    }
                }
            }
            Some(Event::Window { stream }) => {
                if let Some(conn) = streams.key(stream).and_then(|k| cx.conns.get_mut(k)) {
                    conn.stream.link.mark(&mut cx.shared.flush);
                }
            }
            // It opens nothing more; its streams go on.
            Some(Event::GoAway { last_stream, code }) => {
                log::debug!("HTTP/2 peer {peer} goes away ({code:?}, last stream {last_stream})");
            }
        }
    }
}

/// A request on a new stream: the stream gets its entry in the slab (a
/// connection of its own, carried by socket `key`) and goes through the HTTP
/// phase. False if the worker is full (the stream is refused).
fn open_stream<H: Handler>(
    cx: &mut Carrying<'_, H>,
    key: usize,
    peer: SocketAddr,
    streams: &mut Streams,
    stream: u32,
    request: &crate::transport::h2::Request,
    end_stream: bool,
) -> bool {
    if cx.conns.len() >= cx.shared.config.max_connections_per_worker {
        return false;
    }
    *cx.generation = cx.generation.wrapping_add(1);
    let entry = cx.conns.vacant_entry();
    let child = entry.key();
    let id = ConnId::new(cx.index, child, *cx.generation);
    let transport = Transport::Carried {
        socket: key as u32,
        stream,
    };
    let conn = entry.insert(Conn::new(
        id,
        peer,
        Timer::accepted(cx.now, cx.deadline),
        transport,
    ));
    conn.stream.link.http = Http::V2Stream;
    cx.stamping.push(child);
    streams.insert(stream, child);
    cx.shared.counters.http2_streams += 1;
    upgrade::requested(cx.handler, cx.shared, &mut conn.stream, request, end_stream);
    if end_stream {
        peer_ended(&mut conn.stream.link, cx.shared);
    }
    true
}

/// The peer ended its side of a stream (END_STREAM): a WebSocket that has
/// not closed ends as at a TCP EOF (1006); a stream already answered and
/// ended is released once what it queued is out.
fn peer_ended<U>(link: &mut Link<U>, shared: &mut Shared<U>) {
    if link.phase() == Phase::Ended {
        link.end(
            shared,
            Finish::Close,
            CloseCode::ABNORMAL,
            "",
            CloseCause::Reset,
        );
    } else {
        link.hang_up(shared, true);
    }
}
