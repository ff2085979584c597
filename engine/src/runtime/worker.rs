//! One worker: its connections in a slab, its clock, topics and buffers, and
//! the entry points its backend drives it through (see [`crate::backend`] for
//! the contract). Each entry point hands the event to the module of its
//! concern (upgrade, receive, timers, pubsub, commands); [`Worker::end_turn`]
//! closes every loop turn the same way on both backends. Nothing in here is
//! shared with another thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

use super::bridge::NodeTopics;
use super::command::{Command, Inbox};
use super::conn::{Conn, Direct, Finish, Link, Phase, ProxyExpected, Timer};
use super::dispatch::deliver;
use super::gate::{ReadGate, Reasons};
use super::handler::{Handler, WebSocket};
use super::metrics::Metrics;
#[cfg(test)]
use super::metrics::Source;
pub(crate) use super::metrics::WorkerStats;
use super::pubsub;
use super::seam::{Hangup, Io, Written};
use super::shared::{Counters, Shared};
use super::timers::{self, Clock, Ticks};
use super::topics::Topics;
use super::{deferred, deflate, receive, upgrade};
use crate::config::Config;
use crate::proto::Role;
use crate::proto::close::CloseCode;
use crate::proto::session::{Endpoint, InflateBuffer};
use crate::transport::outbox::BufferPool;
use crate::transport::tls::TlsConfigCell;
use crate::transport::tls::session::{Step, Tls};
use crate::types::{CloseCause, ConnId, TlsError};

/// Flush rounds per turn: callbacks run while flushing (on_drain) may queue
/// more; the rest waits for the next turn.
const FLUSH_ROUNDS: usize = 4;

pub(crate) use super::command::Peers;

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
    /// Connections upgraded this turn, whose handshake time is taken at its end.
    upgraded: Vec<usize>,
    /// The connections it does not read, and why.
    gate: ReadGate,
    /// TLS handshakes running (see [`Tls::handshaking`]): at most
    /// `max_tls_handshakes`, but for those started past it (see [`Tls::hold`]).
    tls_handshakes: usize,
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
                closed: Vec::new(),
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
            upgraded: Vec::new(),
            gate: ReadGate::default(),
            tls_handshakes: 0,
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
        let tls = match &self.tls {
            Some(cell) if self.shared.config.is_tls_listener(listener) => {
                Some(Box::new(Tls::new(cell.current())))
            }
            _ => None,
        };
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
            tls,
        ));
        conn.link.proxy = proxy;
        self.shared.counters.accepted += 1;
        self.stamping.push(key);
        Some(key)
    }

    /// Bytes received on connection `key`. They are parsed in place: masked
    /// payloads are unmasked inside `data`; over TLS, records are decrypted
    /// inside it first. On a plain connection, callbacks may write a large
    /// message through `io` from where it lies (`Io::write_frame`).
    pub fn on_data(&mut self, key: usize, data: &mut [u8], io: &mut impl Io) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.timer.received(self.clock.now());
        self.shared.counters.bytes_in += data.len() as u64;
        let Some(mut tls) = conn.tls.take() else {
            let (handler, shared, inflated) =
                (&mut self.handler, &mut self.shared, &mut self.inflated);
            let direct = Some(Direct::socket(io as &mut dyn Io));
            return deliver(
                handler,
                shared,
                inflated,
                &mut self.upgraded,
                conn,
                data,
                direct,
            );
        };
        // At the limit of handshakes running, a new one waits (its bytes held,
        // its gate closed) for `start_waiting_handshakes`.
        let at_limit = self.tls_handshakes >= self.shared.config.max_tls_handshakes;
        if tls.unstarted() && (tls.mid_record() || at_limit) && conn.link.phase() != Phase::Ended {
            let link = &mut conn.link;
            if tls.hold(data) {
                if self
                    .gate
                    .close(link.id, &mut link.gate, Reasons::HANDSHAKE_SLOT)
                {
                    io.pause_reading(key);
                }
                conn.tls = Some(tls);
                return;
            }
            // Not held (too much to hold, or not TLS): it starts now, after
            // what was held (its entry in the gate's queue is dropped later).
            let mut held = tls.take_held();
            if !held.is_empty() {
                held.extend_from_slice(data);
                if self.gate.open(&mut link.gate, Reasons::HANDSHAKE_SLOT) {
                    io.resume_reading(key);
                }
                return self.receive_tls(key, tls, &mut held);
            }
        }
        self.receive_tls(key, tls, data);
    }

    /// Ciphertext of connection `key` (its `tls` taken out of it) through the
    /// record layer to the connection's phase, step by step; counts the
    /// handshakes running.
    fn receive_tls(&mut self, key: usize, mut tls: Box<Tls>, data: &mut [u8]) {
        let Self {
            conns,
            handler,
            shared,
            inflated,
            upgraded,
            plain,
            runs,
            ..
        } = self;
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        let running = tls.handshaking();
        if conn.link.phase() != Phase::Ended {
            let mut reader = tls.read(data, plain, runs);
            loop {
                match reader.next(&mut shared.pool) {
                    Ok(Some(Step::Plaintext {
                        bytes,
                        runs,
                        mut sealer,
                    })) => {
                        for run in runs {
                            let direct = sealer.as_mut().map(|s| Direct::Records(s.reborrow()));
                            let plaintext = &mut bytes[run.clone()];
                            deliver(handler, shared, inflated, upgraded, conn, plaintext, direct);
                        }
                    }
                    // The stream ended without a close frame, as an EOF would
                    // end it; what is queued and our close_notify still go out.
                    Ok(Some(Step::PeerClosed)) => {
                        conn.link.closed_by_tls_peer(shared);
                        break;
                    }
                    Ok(None) => break,
                    Err(error) => {
                        conn.link.fail_tls(shared, error);
                        break;
                    }
                }
            }
            if !tls.wire.is_empty() {
                conn.link.mark(&mut shared.flush);
            }
        }
        match (running, tls.handshaking()) {
            (false, true) => self.tls_handshakes += 1,
            (true, false) => self.tls_handshakes -= 1,
            _ => {}
        }
        // `conn` is still in the slab: only `on_released` takes it out.
        self.conns[key].tls = Some(tls);
    }

    /// Starts the waiting TLS handshakes that the limit now allows, oldest
    /// first: their gates open and what they held re-enters.
    fn start_waiting_handshakes(&mut self, io: &mut impl Io) {
        while self.tls_handshakes < self.shared.config.max_tls_handshakes {
            let Some(id) = self.gate.next(Reasons::HANDSHAKE_SLOT) else {
                break;
            };
            // Gone (a timeout, a reset), or started at once since: skipped.
            let Some(conn) = conn_of(&mut self.conns, id) else {
                continue;
            };
            let link = &mut conn.link;
            if !link.gate.contains(Reasons::HANDSHAKE_SLOT) {
                continue;
            }
            let resume = self.gate.open(&mut link.gate, Reasons::HANDSHAKE_SLOT);
            self.reenter(id.key(), io);
            if resume {
                io.resume_reading(id.key());
            }
        }
        self.gate.shrink();
    }

    /// What a connection read before its gate closed, through the path fresh
    /// bytes take: the ciphertext held while its TLS handshake waited for a
    /// slot goes through the record layer; the plaintext held while its rate
    /// limit was spent goes to its frames (not back through `dispatch`: its
    /// bytes were charged when they came).
    fn reenter(&mut self, key: usize, io: &mut impl Io) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(mut tls) = conn.tls.take_if(|tls| tls.unstarted()) {
            let mut held = tls.take_held();
            return self.receive_tls(key, tls, &mut held);
        }
        let mut held = conn.link.take_held();
        if !held.is_empty() && conn.link.reading_frames() {
            // Over TLS, every byte goes through the record layer.
            let direct = match conn.tls {
                None => Some(Direct::socket(&mut *io as &mut dyn Io)),
                Some(_) => None,
            };
            receive::frames(
                &mut self.handler,
                &mut self.shared,
                &mut self.inflated,
                conn,
                &mut held,
                direct,
            );
        }
    }

    /// Whether reading `key` is paused (its gate is closed: its rate limit,
    /// or its TLS handshake waiting to start): a backend that reads in a loop
    /// stops there.
    pub fn reading_paused(&mut self, key: usize) -> bool {
        self.conns
            .get(key)
            .is_some_and(|conn| conn.link.reading_paused())
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
            if eof
                && conn
                    .tls
                    .as_ref()
                    .is_some_and(|tls| tls.mid_record() && !tls.unstarted())
            {
                conn.link.fail_tls(&mut self.shared, TlsError::Truncated);
            } else {
                conn.link.hang_up(&mut self.shared, eof);
            }
        }
    }

    /// The socket of `key` may take more after a write that left bytes behind.
    pub fn on_writable(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.drained() || conn.link.finish() != Finish::None {
                conn.link.mark(&mut self.shared.flush);
            }
        }
    }

    /// `written` bytes of `key`'s queue went out; `blocked` if the socket took
    /// no more. Runs `on_drain` once a stalled queue empties, then finishes the
    /// connection if it asked to be.
    pub fn on_sent(&mut self, key: usize, written: usize, blocked: bool, io: &mut impl Io) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.wire().consume(&mut self.shared.pool, written);
        let drained = conn.drained();
        let link = &mut conn.link;
        self.shared.counters.bytes_out += written as u64;
        if blocked {
            link.stall(&mut self.shared.counters);
            return;
        }
        if !drained {
            // More than one write's worth of iovecs (or, over TLS, of plaintext
            // to encrypt): go on next round.
            link.mark(&mut self.shared.flush);
            return;
        }
        if std::mem::take(&mut link.stalled) && link.phase() == Phase::Open {
            self.handler
                .on_drain(&mut WebSocket::new(link, &mut self.shared));
            if !link.outbox.is_empty() {
                return;
            }
        }
        self.finish(key, io);
    }

    /// A frame the backend sent from where it lay (`Io::write_frame`) completed
    /// with `written` bytes out; `unsent` (the rest of its header, then of its
    /// payload) is copied to the front of the queue before the backend lets
    /// go of it. Then as [`Self::on_sent`].
    pub fn on_frame_sent(
        &mut self,
        key: usize,
        written: usize,
        unsent: (&[u8], &[u8]),
        io: &mut impl Io,
    ) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let (header, payload) = unsent;
        let short = !header.is_empty() || !payload.is_empty();
        if short {
            conn.link
                .outbox
                .push_front_copy(&mut self.shared.pool, header, payload);
        }
        self.shared.counters.bytes_out += written as u64;
        self.on_sent(key, 0, short, io);
    }

    /// The backend has closed the socket of `key`: forget the connection.
    pub fn on_released(&mut self, key: usize) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        if conn.tls.as_ref().is_some_and(|tls| tls.handshaking()) {
            self.tls_handshakes -= 1;
        }
        let link = &mut conn.link;
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
    }

    /// Ends a loop turn, the same on every backend: times the handshakes,
    /// runs the commands from other threads, moves the clock to `now` (timers,
    /// shutdown deadline), resumes the rate-limited connections whose tokens
    /// are back, reports the connections that ended, delivers publishes,
    /// flushes every connection with something queued through `io`, pauses
    /// those whose tokens ran out, and publishes the counters.
    pub fn end_turn(&mut self, now: Instant, io: &mut impl Io) -> Turn {
        self.shared.now_ms = self.clock.millis(now);
        self.time_handshakes();
        self.shut_down_on_signal(now);
        self.run_commands();
        self.advance(now);
        self.start_waiting_handshakes(io);
        let resume = self.resume_paused(io);
        if self.listening && self.shutdown.is_some() {
            io.stop_accepting();
            self.listening = false;
        }
        for _ in 0..FLUSH_ROUNDS {
            self.report_closed();
            self.pump();
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
        let tick = self.clock.until_next_tick(now);
        Turn {
            wait: if left {
                Duration::ZERO
            } else {
                resume.map_or(tick, |resume| resume.min(tick))
            },
            finished: self.shutdown.is_some() && self.conns.is_empty(),
        }
    }

    // ---- the turn's steps ----

    /// Starts the handshake clock of the connections accepted this turn and
    /// stops it for those upgraded: durations at the resolution of a turn, from
    /// the time the backend passes in.
    fn time_handshakes(&mut self) {
        let now = self.shared.now_ms as u32;
        for key in self.stamping.drain(..) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.timer.start_handshake_clock(now);
            }
        }
        for key in self.upgraded.drain(..) {
            if let Some(conn) = self.conns.get_mut(key) {
                let ms = conn.timer.handshake_ms(now);
                self.shared.counters.handshake(u64::from(ms));
            }
        }
        shrink_idle(&mut self.stamping);
        shrink_idle(&mut self.upgraded);
    }

    /// Asks the backend to stop reading the connections whose rate limit was
    /// spent this turn; returns how long until the first may resume.
    fn apply_pauses(&mut self, io: &mut impl Io) -> Option<Duration> {
        let now = self.shared.now_ms;
        let mut soonest: Option<u64> = None;
        for id in self.shared.pausing.drain(..) {
            let Some(conn) = conn_of(&mut self.conns, id) else {
                continue;
            };
            let link = &mut conn.link;
            if !link.gate.contains(Reasons::RATE_LIMIT) {
                self.shared.counters.rate_limit_pauses += 1;
                if self.gate.close(id, &mut link.gate, Reasons::RATE_LIMIT) {
                    io.pause_reading(id.key());
                }
            }
            if let Some(wait) = conn.link.limiter().and_then(|l| l.resume_after(now)) {
                soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
            }
        }
        // At least a millisecond: a zero wait would spin until the clock moves.
        soonest.map(|ms| Duration::from_millis(ms.max(1)))
    }

    /// For each connection paused by its rate limit whose tokens are back:
    /// what it held re-enters, then its gate opens (unless that spent the
    /// tokens again). Returns how long until the next one may resume.
    fn resume_paused(&mut self, io: &mut impl Io) -> Option<Duration> {
        let now = self.shared.now_ms;
        let mut soonest: Option<u64> = None;
        for _ in 0..self.gate.waiting(Reasons::RATE_LIMIT) {
            let Some(id) = self.gate.next(Reasons::RATE_LIMIT) else {
                break;
            };
            // Gone: its key may belong to a new connection by now.
            let Some(conn) = conn_of(&mut self.conns, id) else {
                continue;
            };
            if !conn.link.gate.contains(Reasons::RATE_LIMIT) {
                continue;
            }
            // An ended connection has no limiter left: it is read again, so
            // that the peer's EOF is seen.
            if let Some(wait) = conn.link.limiter().and_then(|l| l.resume_after(now)) {
                soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                self.gate.requeue(Reasons::RATE_LIMIT, id);
                continue;
            }
            self.reenter(id.key(), io);
            let Some(conn) = conn_of(&mut self.conns, id) else {
                continue;
            };
            let link = &mut conn.link;
            if link.limiter().is_some_and(|l| l.paused()) {
                // Spent again on what it held: it stays paused.
                if let Some(wait) = link.limiter().and_then(|l| l.resume_after(now)) {
                    soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                }
                self.gate.requeue(Reasons::RATE_LIMIT, id);
                continue;
            }
            if self.gate.open(&mut link.gate, Reasons::RATE_LIMIT) {
                io.resume_reading(id.key());
            }
        }
        soonest.map(Duration::from_millis)
    }

    fn run_commands(&mut self) {
        let Self {
            inbox,
            conns,
            shared,
            keys,
            handler,
            inflated,
            upgraded,
            ..
        } = self;
        let mut shutdown = None;
        let count = inbox.drain(|command| match command {
            Command::Decide { id, decision } => {
                if let Some(conn) = conn_of(conns, id) {
                    let upgrade = deferred::decision(decision);
                    let outcome = upgrade::decided(handler, shared, inflated, conn, upgrade);
                    if outcome == Some(upgrade::Outcome::Opened) {
                        upgraded.push(id.key());
                    }
                }
            }
            Command::Publish { topic, message } => {
                pubsub::deliver(conns, shared, keys, &topic, &message);
            }
            Command::Send { id, message } => {
                if let Some(link) = open_link(conns, id) {
                    link.send_prepared(shared, &message, &mut Default::default());
                }
            }
            Command::Close { id, code, reason } => {
                if let Some(link) = open_link(conns, id) {
                    link.close(shared, code, &reason);
                }
            }
            Command::Shutdown { deadline } => shutdown = Some(deadline),
        });
        shared.counters.commands += count;
        if let Some(deadline) = shutdown {
            self.begin_shutdown(deadline);
        }
    }

    /// Moves the clock; past the shutdown deadline aborts everything; on a new
    /// tick sweeps every connection's timers.
    fn advance(&mut self, now: Instant) {
        let Self {
            conns,
            shared,
            ticks,
            clock,
            ..
        } = self;
        if self.shutdown.is_some_and(|deadline| now >= deadline) {
            for (_, conn) in conns.iter_mut() {
                let code = conn.link.local_code();
                conn.link
                    .end(shared, Finish::Abort, code, "", CloseCause::Shutdown);
            }
        }
        if !clock.advance(now) {
            return;
        }
        shared.pool.trim();
        shared.endpoint.release_buffers();
        let tick = clock.now();
        for (_, conn) in conns.iter_mut() {
            timers::sweep(conn, tick, ticks, shared);
        }
    }

    /// After [`Self::on_signal`]: the same shutdown as
    /// [`crate::ServerHandle::shutdown`] would start, sent to every worker
    /// (this one included, so that it runs with this turn's commands).
    fn shut_down_on_signal(&mut self, now: Instant) {
        let Some(signal) = self.signalled.take() else {
            return;
        };
        let grace = self.shared.config.shutdown_on_signals.unwrap_or_default();
        log::info!(
            "ringws: signal {signal}, shutting down within {} ms",
            grace.as_millis()
        );
        let deadline = now + grace;
        if let Some(peers) = self.peers.get() {
            for peer in peers {
                peer.send(Command::Shutdown { deadline });
            }
        }
    }

    fn begin_shutdown(&mut self, deadline: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        self.shutdown = Some(deadline);
        let Self { conns, shared, .. } = self;
        shared.shutting_down = true;
        for (_, conn) in conns.iter_mut() {
            let link = &mut conn.link;
            match link.phase() {
                // Its upgrade is still answered (then closed with 1001), or it
                // is dropped at the deadline.
                Phase::Handshake => {}
                Phase::Open => link.start_close(
                    shared,
                    CloseCode::GOING_AWAY,
                    "server shutdown",
                    CloseCause::Shutdown,
                ),
                Phase::Closing | Phase::Ended => {}
            }
        }
    }

    /// The one place `on_close` is called: for every connection that ended
    /// since the last report, exactly once per `on_open`.
    fn report_closed(&mut self) {
        let mut closed = std::mem::take(&mut self.shared.closed);
        for c in closed.drain(..) {
            self.shared.counters.closed(c.code.0, c.cause);
            self.handler
                .on_close(c.id, c.data, c.code, &c.reason, c.cause);
        }
        self.shared.closed = closed;
    }

    /// Delivers publishes made during callbacks, here, on the other workers,
    /// and (with a bridge) on the other nodes.
    fn pump(&mut self) {
        while !self.shared.publishes.is_empty() {
            for (topic, message) in std::mem::take(&mut self.shared.publishes) {
                self.shared.counters.publishes += 1;
                pubsub::deliver(
                    &mut self.conns,
                    &mut self.shared,
                    &mut self.keys,
                    &topic,
                    &message,
                );
                if let Some(peers) = self.peers.get() {
                    for (i, peer) in peers.iter().enumerate() {
                        if i != self.index {
                            peer.send(Command::Publish {
                                topic: topic.clone(),
                                message: message.clone(),
                            });
                        }
                    }
                }
                if let Some(node) = self.shared.topics.node() {
                    node.bridge().publish(&topic, &message);
                }
            }
        }
    }

    /// Writes one connection's queue (over TLS: encrypts it first), or
    /// finishes it.
    fn flush(&mut self, key: usize, io: &mut impl Io) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Conn { link, tls, .. } = conn;
        link.unmark();
        if link.finish() == Finish::Abort {
            return self.close(key, io);
        }
        let wire = match tls.as_deref_mut() {
            None => &mut link.outbox,
            Some(tls) => {
                // Encrypt only once the last ciphertext is out: while the
                // socket is slow, frames wait in the outbox under its limit.
                if tls.wire.is_empty() && (!link.outbox.is_empty() || tls.owes_key_update()) {
                    match tls.encrypt(&mut link.outbox, &mut self.shared.pool) {
                        Ok(true) => {}
                        // No session to send on: these frames can never go out.
                        Ok(false) => link.outbox.clear(&mut self.shared.pool),
                        Err(error) => link.fail_tls(&mut self.shared, error),
                    }
                }
                if tls.exhausted() {
                    // A TLS 1.2 key near its record limit: close while the
                    // close frame and close_notify can still be sealed.
                    link.start_close(
                        &mut self.shared,
                        CloseCode::GOING_AWAY,
                        "TLS key limit",
                        CloseCause::Tls(TlsError::KeyLimit),
                    );
                }
                &mut tls.wire
            }
        };
        if wire.is_empty() {
            return self.finish(key, io);
        }
        if io.writes_later() {
            wire.seal(&mut self.shared.pool);
        }
        match io.write(key, wire) {
            Written::Now { bytes, blocked } => self.on_sent(key, bytes, blocked, io),
            Written::Later => {}
            Written::Failed => {
                link.hang_up(&mut self.shared, false);
                self.close(key, io);
            }
        }
    }

    /// The queue is empty: does what the connection asked of its socket. Over
    /// TLS, a graceful end sends close_notify first.
    fn finish(&mut self, key: usize, io: &mut impl Io) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let finish = conn.link.finish();
        let graceful = matches!(finish, Finish::ShutdownWrite | Finish::Close);
        if graceful {
            if let Some(tls) = conn.tls.as_deref_mut() {
                if tls.close_notify(&mut self.shared.pool) {
                    return conn.link.mark(&mut self.shared.flush);
                }
            }
        }
        match finish {
            Finish::None => {}
            Finish::ShutdownWrite => {
                conn.link.write_side_shut();
                io.shutdown_write(key);
            }
            Finish::Close | Finish::Abort => self.close(key, io),
        }
    }

    fn close(&mut self, key: usize, io: &mut impl Io) {
        if io.close(key) {
            self.on_released(key);
        }
    }

    /// Publishes the turn's counters for [`crate::ServerHandle::stats`].
    fn publish_stats(&mut self) {
        self.stats
            .publish(self.conns.len(), &mut self.shared.counters);
    }
}

/// The open connection `id` still names, if any (the generation must match).
fn open_link<U>(conns: &mut Slab<Conn<U>>, id: ConnId) -> Option<&mut Link<U>> {
    let conn = conns.get_mut(id.key())?;
    (conn.link.id == id && conn.link.phase() == Phase::Open).then_some(&mut conn.link)
}

/// The connection `id` still names, in any phase.
fn conn_of<U>(conns: &mut Slab<Conn<U>>, id: ConnId) -> Option<&mut Conn<U>> {
    conns.get_mut(id.key()).filter(|conn| conn.link.id == id)
}

/// Frees an empty list's memory if a burst made it large.
pub(crate) fn shrink_idle<T>(list: &mut Vec<T>) {
    if list.is_empty() && list.capacity() > 1024 {
        list.shrink_to(64);
    }
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
