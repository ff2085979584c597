//! One worker: its sockets and their streams in a slab, its clock, topics and
//! buffers, and the entry points its backend drives it through (see
//! [`crate::backend`] for the contract). Each entry point hands the event to
//! the module of its concern (the socket's transport, upgrade, receive,
//! timers, pubsub, commands); [`Worker::end_turn`] closes every loop turn the
//! same way on both backends. Nothing in here is shared with another thread.
//! Here: the state, the read-side entry points and the turn; beside it:
//! [`reading`] (a read through the transport, handshake slots, the read
//! gate), [`flush`] (the write-side entry points, writes and finishes),
//! [`turn`] (clock, commands, shutdown, reports, publishes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

mod carrier;
mod flush;
mod handover;
mod reading;
mod turn;

use super::bridge::NodeTopics;
use super::command::{Command, Inbox};
use super::conn::{Direct, Finish, Http, Link, Phase, ProxyExpected};
use super::dispatch::{self, deliver};
use super::gate::{ReadGate, Reasons};
use super::handler::{Handler, WebSocket};
use super::metrics::Metrics;
#[cfg(test)]
use super::metrics::Source;
pub(crate) use super::metrics::WorkerStats;
use super::pubsub;
use super::seam::{Hangup, Io, Written};
use super::shared::{Counters, Shared};
use super::socket::Conn;
use super::stream::Timer;
use super::timers::{self, Clock, Ticks};
use super::topics::Topics;
use super::{deferred, deflate, receive, upgrade};
use crate::config::Config;
use crate::proto::Role;
use crate::proto::close::CloseCode;
use crate::proto::session::{Endpoint, InflateBuffer};
use crate::transport::mux::Mux;
use crate::transport::outbox::BufferPool;
use crate::transport::tls::TlsConfigCell;
use crate::transport::{Admission, Sealed, Step, Through, Transport};
use crate::types::{CloseCause, ConnId, TlsError};

/// Flush rounds per turn: callbacks run while flushing (on_drain) may queue
/// more; the rest waits for the next turn.
const FLUSH_ROUNDS: usize = 4;

use super::command::Peers;

/// What the backend does after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Turn {
    /// Wait at most this long for events (the next timer tick, or zero if
    /// work is left for the next turn).
    pub wait: Duration,
    /// Shutdown is complete: every connection is gone and reported.
    pub finished: bool,
}

/// One worker's connections and everything they need.
pub(crate) struct Worker<H: Handler> {
    index: usize,
    handler: H,
    conns: Slab<Conn<H::Data>>,
    shared: Shared<H::Data>,
    inflated: InflateBuffer,
    /// The configuration new TLS connections start with (swapped by a reload).
    tls: Option<Arc<TlsConfigCell>>,
    /// Scratch: the plaintext rustls hands out during a handshake (the
    /// upgrade request behind the client's Finished).
    plain: Vec<u8>,
    /// Scratch: where a TLS read's plaintext lies.
    runs: Vec<std::ops::Range<usize>>,
    inbox: Inbox,
    peers: Peers,
    stats: Arc<WorkerStats>,
    clock: Clock,
    ticks: Ticks,
    shutdown: Option<Instant>,
    /// A termination signal taken since the last turn ([`Self::on_signal`]).
    signalled: Option<i32>,
    listening: bool,
    generation: u32,
    /// Scratch: subscribers of a publish, connections to flush.
    keys: Vec<u32>,
    flushing: Vec<usize>,
    /// Connections accepted this turn, whose handshake clock starts at its end.
    stamping: Vec<usize>,
    /// The connections it does not read, and why.
    gate: ReadGate,
    /// TLS handshakes running (see [`Transport::handshaking`]): at most
    /// `max_tls_handshakes`, but for those started past it (see
    /// [`Transport::admit`]).
    tls_handshakes: usize,
    /// A live hand-over under way (the old process's side).
    handing: Option<super::handover::HandOut>,
    /// A hand-over began (accepting stops) and has not failed: its deadline.
    handing_off: Option<Instant>,
    /// Connections handed over by the old process, served at the turn's end.
    adopting: Vec<(std::os::fd::OwnedFd, Vec<u8>, bool)>,
    /// Read the connections a hand-over held still, at the turn's end.
    release_holds: bool,
    /// Publishes from other workers that came behind connections to adopt:
    /// delivered once those are in.
    behind_adoptions: Vec<(Arc<str>, crate::types::PreparedMessage)>,
}

impl<H: Handler> std::fmt::Debug for Worker<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("index", &self.index)
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Worker<H> {
    /// A worker whose clock starts at `now`; `node` is the server's bridge
    /// side, if it has a bridge.
    // Each argument is a part the server hands over at start; a struct for
    // them would only be taken apart here.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        handler: H,
        config: Arc<Config>,
        inbox: Inbox,
        peers: Peers,
        node: Option<Arc<NodeTopics>>,
        metrics: Arc<Metrics>,
        tls: Option<Arc<TlsConfigCell>>,
        now: Instant,
    ) -> Self {
        let stats = metrics.source().workers[index].clone();
        let endpoint = Endpoint::new(
            Role::Server,
            config.max_frame_size,
            config.max_message_size,
            config.deflate_level,
        );
        Self {
            index,
            handler,
            conns: Slab::new(),
            shared: Shared {
                deflate: deflate::offer(&config),
                endpoint,
                topics: Topics::new(node),
                publishes: Vec::new(),
                flush: Vec::new(),
                upgraded: Vec::new(),
                closed: Vec::new(),
                heads: Vec::new(),
                counters: Counters::default(),
                now_ms: 0,
                shutting_down: false,
                pausing: Vec::new(),
                metrics,
                pool: BufferPool::default(),
                config: config.clone(),
                pending_upgrades: 0,
                peers: peers.clone(),
                worker: index,
            },
            inflated: InflateBuffer::new(),
            tls,
            plain: Vec::new(),
            runs: Vec::new(),
            inbox,
            peers,
            stats,
            clock: Clock::new(now, config.tick()),
            ticks: Ticks::new(&config),
            shutdown: None,
            signalled: None,
            listening: true,
            generation: 0,
            keys: Vec::new(),
            flushing: Vec::new(),
            stamping: Vec::new(),
            gate: ReadGate::default(),
            tls_handshakes: 0,
            handing: None,
            handing_off: None,
            adopting: Vec::new(),
            release_holds: false,
            behind_adoptions: Vec::new(),
        }
    }

    /// A worker on its own, for tests: one worker's metrics, epoll's name.
    #[cfg(test)]
    pub fn standalone(
        handler: H,
        config: Arc<Config>,
        inbox: Inbox,
        peers: Peers,
        node: Option<Arc<NodeTopics>>,
        tls: Option<Arc<TlsConfigCell>>,
        now: Instant,
    ) -> Self {
        let metrics = Arc::new(Metrics::new(Source {
            backend: "epoll",
            workers: vec![Arc::default()].into(),
            mailboxes: peers.clone(),
            handle_publishes: Default::default(),
        }));
        Self::new(0, handler, config, inbox, peers, node, metrics, tls, now)
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    // ---- the backend's entry points ----

    /// A new TCP connection on listener `listener` (an index of the configured
    /// addresses): its slab key, or `None` when this worker is full or the
    /// listener needs a PROXY header the peer may not send (the backend then
    /// closes it). During a shutdown, a connection the kernel had already
    /// handed over is still served: its upgrade is answered, then closed with
    /// 1001, so a restart fails no handshake.
    pub fn on_accept(&mut self, peer: SocketAddr, listener: usize) -> Option<usize> {
        if self.conns.len() >= self.shared.config.max_connections_per_worker {
            return None;
        }
        let proxy = match self.shared.config.proxy_of(listener) {
            None => ProxyExpected::No,
            Some(p) => match (p.trusts(peer.ip()), p.mode) {
                (true, crate::config::ProxyMode::Required) => ProxyExpected::Required,
                (true, _) => ProxyExpected::Optional,
                (false, crate::config::ProxyMode::Required) => {
                    self.shared.counters.proxy_refused += 1;
                    return None;
                }
                (false, _) => ProxyExpected::Refused,
            },
        };
        let tls = self.shared.config.is_tls_listener(listener);
        let transport = Transport::new(match &self.tls {
            Some(cell) if tls => Some(cell.current()),
            _ => None,
        });
        self.generation = self.generation.wrapping_add(1);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let id = ConnId::new(self.index, key, self.generation);
        let conn = entry.insert(Conn::new(
            id,
            peer,
            Timer::accepted(
                self.clock.now(),
                self.ticks.handshake_deadline(self.clock.now()),
            ),
            transport,
        ));
        conn.stream.link.proxy = proxy;
        if !tls && self.shared.config.http2.prior_knowledge {
            conn.stream.link.http = Http::V2Allowed;
        }
        self.shared.counters.accepted += 1;
        self.stamping.push(key);
        Some(key)
    }

    /// Bytes received on socket `key`. They are parsed in place: masked
    /// payloads are unmasked inside `data`; over TLS, records are decrypted
    /// inside it first. On a plain socket, callbacks may write a large message
    /// through `io` from where it lies (`Io::write_frame`). A transport whose
    /// handshake must wait for a slot holds them instead, its gate closed,
    /// until `start_waiting_handshakes`.
    pub fn on_data(&mut self, key: usize, data: &mut [u8], io: &mut impl Io) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.stream.timer.received(self.clock.now());
        self.shared.counters.bytes_in += data.len() as u64;
        if conn.stream.link.phase() != Phase::Ended {
            let slot_free = self.tls_handshakes < self.shared.config.max_tls_handshakes;
            let Conn { socket, stream } = conn;
            match socket.transport.admit(data, slot_free) {
                Admission::Read => {}
                Admission::Held => {
                    let id = stream.link.id;
                    if self
                        .gate
                        .close(id, &mut socket.gate, Reasons::HANDSHAKE_SLOT)
                    {
                        io.pause_reading(key);
                    }
                    return;
                }
                // Its entry in the gate's queue is dropped when met.
                Admission::ReadHeld(mut held) => {
                    if self.gate.open(&mut socket.gate, Reasons::HANDSHAKE_SLOT) {
                        io.resume_reading(key);
                    }
                    return self.receive(key, &mut held, io);
                }
            }
        }
        self.receive(key, data, io);
    }

    /// Whether reading `key` is paused (its gate is closed: its rate limit,
    /// or its TLS handshake waiting to start): a backend that reads in a loop
    /// stops there.
    pub fn reading_paused(&mut self, key: usize) -> bool {
        self.conns
            .get(key)
            .is_some_and(|conn| conn.socket.gated() || conn.stream.link.rate_limited())
    }

    /// The io_uring backend's provided receive buffers ran out (ENOBUFS): a
    /// receive stopped and is re-armed at the end of the turn.
    pub fn on_buffers_exhausted(&mut self) {
        self.shared.counters.buffer_exhausted += 1;
    }

    /// SIGTERM or SIGINT (`signal`) arrived, with
    /// [`crate::Builder::shutdown_on_signals`]: at the end of this turn every
    /// worker is told to shut down within the grace period.
    pub fn on_signal(&mut self, signal: i32) {
        self.signalled = Some(signal);
    }

    /// The byte stream of `key` ended.
    pub fn on_hangup(&mut self, key: usize, hangup: Hangup) {
        if let Some(conn) = self.conns.get_mut(key) {
            let eof = hangup == Hangup::Eof;
            if eof && conn.socket.transport.cut_short() {
                conn.stream
                    .link
                    .fail_tls(&mut self.shared, TlsError::Truncated);
            } else {
                conn.stream.link.hang_up(&mut self.shared, eof);
            }
            // The streams an HTTP/2 socket carried cannot outlive its bytes.
            if let Some(mux) = conn.socket.transport.mux() {
                for child in mux.streams.keys().collect::<Vec<_>>() {
                    if let Some(conn) = self.conns.get_mut(child) {
                        conn.stream.link.hang_up(&mut self.shared, false);
                    }
                }
            }
        }
    }

    /// The backend has closed the socket of `key`: forget the connection.
    pub fn on_released(&mut self, key: usize) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        if conn.socket.transport.handshaking() {
            self.tls_handshakes -= 1;
        }
        let link = &mut conn.stream.link;
        if link.phase() != Phase::Ended {
            // The socket went away under an open connection.
            let cause = link.cause_or(CloseCause::Reset);
            link.end(
                &mut self.shared,
                Finish::Abort,
                CloseCode::ABNORMAL,
                "",
                cause,
            );
        }
        link.outbox.clear(&mut self.shared.pool);
        // A carried stream leaves its socket's codec; an HTTP/2 socket's
        // streams go with it.
        if let Some((socket, stream)) = conn.socket.transport.carrier() {
            self.forget_carried(socket, stream);
        } else if let Some(mux) = conn.socket.transport.mux() {
            self.release_carried_by(mux);
        }
    }

    /// Ends a loop turn, the same on every backend: times the handshakes,
    /// runs the commands from other threads, moves the clock to `now` (timers,
    /// shutdown deadline), resumes the rate-limited connections whose tokens
    /// are back, reports the connections that ended, delivers publishes,
    /// flushes every connection with something queued through `io`, pauses
    /// those whose tokens ran out, and publishes the counters.
    pub fn end_turn(&mut self, now: Instant, io: &mut impl Io) -> Turn {
        self.shared.now_ms = self.clock.millis(now);
        self.time_handshakes(now);
        self.shut_down_on_signal(now);
        self.run_commands();
        self.advance(now);
        self.adopt_queued(io);
        self.release_held(io);
        self.hand_over_some(now, io);
        self.start_waiting_handshakes(io);
        let resume = self.resume_paused(io);
        if self.listening && (self.shutdown.is_some() || self.handing_off.is_some()) {
            io.stop_accepting();
            self.listening = false;
        }
        for _ in 0..FLUSH_ROUNDS {
            self.report_closed();
            self.pump();
            self.send_heads();
            let mut flushing = std::mem::take(&mut self.flushing);
            flushing.clear();
            std::mem::swap(&mut flushing, &mut self.shared.flush);
            for &key in &flushing {
                self.flush(key, io);
            }
            let done = flushing.is_empty();
            self.flushing = flushing;
            if done {
                break;
            }
        }
        self.report_closed();
        // Slots freed by this turn's closes: the handshakes started now are
        // flushed in the next turn, which comes at once.
        self.start_waiting_handshakes(io);
        let resume = match (resume, self.apply_pauses(io)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.publish_stats();
        shrink_idle(&mut self.flushing);
        shrink_idle(&mut self.shared.flush);
        let left = !self.shared.flush.is_empty() || !self.shared.publishes.is_empty();
        let mut tick = self.clock.until_next_tick(now);
        if self.handing.is_some() {
            // A hand-over's pause and deadline are looked at every few ms.
            tick = tick.min(Duration::from_millis(5));
        }
        Turn {
            wait: if left {
                Duration::ZERO
            } else {
                resume.map_or(tick, |resume| resume.min(tick))
            },
            finished: self.shutdown.is_some() && self.conns.is_empty(),
        }
    }
}

/// The open connection `id` still names, if any (the generation must match).
fn open_link<U>(conns: &mut Slab<Conn<U>>, id: ConnId) -> Option<&mut Link<U>> {
    let conn = conns.get_mut(id.key())?;
    (conn.stream.link.id == id && conn.stream.link.phase() == Phase::Open)
        .then_some(&mut conn.stream.link)
}

/// The connection `id` still names, in any phase.
fn conn_of<U>(conns: &mut Slab<Conn<U>>, id: ConnId) -> Option<&mut Conn<U>> {
    conns
        .get_mut(id.key())
        .filter(|conn| conn.stream.link.id == id)
}

/// Frees an empty list's memory if a burst made it large.
pub(crate) fn shrink_idle<T>(list: &mut Vec<T>) {
    if list.is_empty() && list.capacity() > 1024 {
        list.shrink_to(64);
    }
}

#[cfg(test)]
mod tests;
