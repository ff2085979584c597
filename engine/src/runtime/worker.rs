//! One worker: its connections in a slab, its clock, topics and buffers, and
//! the entry points its backend drives it through (see [`crate::backend`] for
//! the contract). Each entry point hands the event to the module of its
//! concern (upgrade, receive, timers, pubsub, commands); [`Worker::end_turn`]
//! closes every loop turn the same way on both backends. Nothing in here is
//! shared with another thread.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use slab::Slab;

use super::command::{Command, Inbox, Mailbox};
use super::conn::{Conn, Finish, Link, Phase};
use super::handler::{Handler, WebSocket};
use super::outbox::BufferPool;
use super::pubsub::{self, Topics};
use super::seam::{Hangup, Io, Written};
use super::shared::{Counters, Shared};
use super::timers::{self, Clock, Ticks, Timer};
use super::tls::{Received, Tls, Upper};
use super::{deflate, receive, upgrade};
use crate::config::Config;
use crate::proto::Role;
use crate::proto::close::CloseCode;
use crate::proto::session::{Endpoint, InflateBuffer};
use crate::tls::TlsConfigCell;
use crate::types::{CloseCause, ConnId, TlsError};

/// Flush rounds per turn: callbacks run while flushing (on_drain) may queue
/// more; the rest waits for the next turn.
const FLUSH_ROUNDS: usize = 4;

/// A worker's figures, readable from any thread.
#[derive(Debug, Default)]
pub(crate) struct WorkerStats {
    pub connections: AtomicU64,
    pub accepted: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub commands: AtomicU64,
}

/// The mailboxes of all workers, set once every worker has started.
pub(crate) type Peers = Arc<OnceLock<Vec<Mailbox>>>;

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
    /// Scratch: the plaintext of one TLS record (so at most 16 KiB).
    plain: Vec<u8>,
    inbox: Inbox,
    peers: Peers,
    stats: Arc<WorkerStats>,
    clock: Clock,
    ticks: Ticks,
    shutdown: Option<Instant>,
    listening: bool,
    generation: u32,
    /// Scratch: subscribers of a publish, connections to flush.
    keys: Vec<u32>,
    flushing: Vec<usize>,
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
    /// A worker whose clock starts at `now`.
    // Each argument is a part the server hands over at start; a struct for
    // them would only be taken apart here.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        handler: H,
        config: Arc<Config>,
        inbox: Inbox,
        peers: Peers,
        stats: Arc<WorkerStats>,
        tls: Option<Arc<TlsConfigCell>>,
        now: Instant,
    ) -> Self {
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
                topics: Topics::default(),
                publishes: Vec::new(),
                flush: Vec::new(),
                closed: Vec::new(),
                counters: Counters::default(),
                pool: BufferPool::default(),
                config: config.clone(),
            },
            inflated: InflateBuffer::new(),
            tls,
            plain: Vec::new(),
            inbox,
            peers,
            stats,
            clock: Clock::new(now, config.tick()),
            ticks: Ticks::new(&config),
            shutdown: None,
            listening: true,
            generation: 0,
            keys: Vec::new(),
            flushing: Vec::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    // ---- the backend's entry points ----

    /// A new TCP connection on the backend's listener `listener` (the index in
    /// `Config::listen_addrs`): its slab key, or `None` when this worker is full
    /// or shutting down (the backend then closes it).
    pub fn on_accept(&mut self, listener: usize, peer: SocketAddr) -> Option<usize> {
        if self.shutdown.is_some()
            || self.conns.len() >= self.shared.config.max_connections_per_worker
        {
            return None;
        }
        let tls = match &self.tls {
            Some(cell) if self.shared.config.is_tls_listener(listener) => {
                match Tls::new(cell.current()) {
                    Ok(tls) => Some(Box::new(tls)),
                    Err(e) => {
                        log::error!("ringws: cannot start a TLS connection: {e}");
                        return None;
                    }
                }
            }
            _ => None,
        };
        self.generation = self.generation.wrapping_add(1);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let id = ConnId::new(self.index, key, self.generation);
        entry.insert(Conn::new(
            id,
            peer,
            Timer::accepted(self.clock.now(), &self.ticks),
            tls,
        ));
        self.shared.counters.accepted += 1;
        Some(key)
    }

    /// Bytes received on connection `key`. They are parsed in place: masked
    /// payloads are unmasked inside `data`; over TLS, records are decrypted
    /// inside it first.
    pub fn on_data(&mut self, key: usize, data: &mut [u8]) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.timer.received(self.clock.now());
        self.shared.counters.bytes_in += data.len() as u64;
        let (handler, shared, inflated) = (&mut self.handler, &mut self.shared, &mut self.inflated);
        let Some(mut tls) = conn.tls.take() else {
            return deliver(handler, shared, inflated, conn, data);
        };
        if conn.link.phase() != Phase::Ended {
            let mut up = Plaintext {
                handler,
                shared,
                inflated,
                conn,
            };
            let received = tls.receive(data, &mut self.plain, &mut up);
            let Plaintext { shared, conn, .. } = up;
            match received {
                Ok(Received::Open) => {}
                // The stream ended without a close frame, as an EOF would end it.
                Ok(Received::PeerClosed) => conn.link.hang_up(shared, true),
                Err(error) => conn.link.fail_tls(shared, error),
            }
            if !tls.wire.is_empty() {
                conn.link.mark(&mut shared.flush);
            }
        }
        conn.tls = Some(tls);
    }

    /// The byte stream of `key` ended.
    pub fn on_hangup(&mut self, key: usize, hangup: Hangup) {
        if let Some(conn) = self.conns.get_mut(key) {
            let eof = hangup == Hangup::Eof;
            if eof && conn.tls.as_ref().is_some_and(|tls| tls.mid_record()) {
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
        if blocked {
            link.stalled = true;
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

    /// The backend has closed the socket of `key`: forget the connection.
    pub fn on_released(&mut self, key: usize) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
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

    /// Ends a loop turn, the same on every backend: runs the commands from
    /// other threads, moves the clock to `now` (timers, shutdown deadline),
    /// reports the connections that ended, delivers publishes, flushes every
    /// connection with something queued through `io`, and publishes the
    /// counters.
    pub fn end_turn(&mut self, now: Instant, io: &mut impl Io) -> Turn {
        self.run_commands();
        self.advance(now);
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
        self.publish_stats();
        shrink_idle(&mut self.flushing);
        shrink_idle(&mut self.shared.flush);
        let left = !self.shared.flush.is_empty() || !self.shared.publishes.is_empty();
        Turn {
            wait: if left {
                Duration::ZERO
            } else {
                self.clock.until_next_tick(now)
            },
            finished: self.shutdown.is_some() && self.conns.is_empty(),
        }
    }

    // ---- the turn's steps ----

    fn run_commands(&mut self) {
        let Self {
            inbox,
            conns,
            shared,
            keys,
            ..
        } = self;
        let mut shutdown = None;
        let count = inbox.drain(|command| match command {
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
            timers::sweep(&mut conn.link, &mut conn.timer, tick, ticks, shared);
        }
    }

    fn begin_shutdown(&mut self, deadline: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        self.shutdown = Some(deadline);
        let Self { conns, shared, .. } = self;
        for (_, conn) in conns.iter_mut() {
            let link = &mut conn.link;
            match link.phase() {
                Phase::Handshake => link.end(
                    shared,
                    Finish::Abort,
                    CloseCode::ABNORMAL,
                    "",
                    CloseCause::Shutdown,
                ),
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
            self.handler
                .on_close(c.id, c.data, c.code, &c.reason, c.cause);
        }
        self.shared.closed = closed;
    }

    /// Delivers publishes made during callbacks, here and on the other workers.
    fn pump(&mut self) {
        while !self.shared.publishes.is_empty() {
            for (topic, message) in std::mem::take(&mut self.shared.publishes) {
                pubsub::deliver(
                    &mut self.conns,
                    &mut self.shared,
                    &mut self.keys,
                    &topic,
                    &message,
                );
                let Some(peers) = self.peers.get() else {
                    continue;
                };
                for (i, peer) in peers.iter().enumerate() {
                    if i != self.index {
                        peer.send(Command::Publish {
                            topic: topic.clone(),
                            message: message.clone(),
                        });
                    }
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
                if tls.wire.is_empty() && !link.outbox.is_empty() {
                    match tls.encrypt(&mut link.outbox, &mut self.shared.pool) {
                        Ok(true) => {}
                        // No session to send on: these frames can never go out.
                        Ok(false) => link.outbox.clear(&mut self.shared.pool),
                        Err(error) => link.fail_tls(&mut self.shared, error),
                    }
                }
                &mut tls.wire
            }
        };
        if wire.is_empty() {
            return self.finish(key, io);
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
        let c = std::mem::take(&mut self.shared.counters);
        let s = &self.stats;
        s.connections
            .store(self.conns.len() as u64, Ordering::Relaxed);
        s.accepted.fetch_add(c.accepted, Ordering::Relaxed);
        s.messages_in.fetch_add(c.messages_in, Ordering::Relaxed);
        s.messages_out.fetch_add(c.messages_out, Ordering::Relaxed);
        s.bytes_in.fetch_add(c.bytes_in, Ordering::Relaxed);
        s.commands.fetch_add(c.commands, Ordering::Relaxed);
    }
}

/// Where a TLS connection's plaintext goes: the connection's phase.
struct Plaintext<'a, H: Handler> {
    handler: &'a mut H,
    shared: &'a mut Shared<H::Data>,
    inflated: &'a mut InflateBuffer,
    conn: &'a mut Conn<H::Data>,
}

impl<H: Handler> Upper for Plaintext<'_, H> {
    fn pool(&mut self) -> &mut BufferPool {
        &mut self.shared.pool
    }

    fn deliver(&mut self, plain: &mut [u8]) {
        deliver(self.handler, self.shared, self.inflated, self.conn, plain);
    }
}

/// Hands bytes (plaintext) to the phase of the connection.
fn deliver<H: Handler>(
    handler: &mut H,
    shared: &mut Shared<H::Data>,
    inflated: &mut InflateBuffer,
    conn: &mut Conn<H::Data>,
    data: &mut [u8],
) {
    match conn.link.phase() {
        Phase::Handshake => upgrade::received(handler, shared, inflated, conn, data),
        Phase::Open | Phase::Closing => receive::frames(handler, shared, inflated, conn, data),
        // After the close handshake, whatever the peer sends is discarded.
        Phase::Ended => {}
    }
}

/// The open connection `id` still names, if any (the generation must match).
fn open_link<U>(conns: &mut Slab<Conn<U>>, id: ConnId) -> Option<&mut Link<U>> {
    let conn = conns.get_mut(id.key())?;
    (conn.link.id == id && conn.link.phase() == Phase::Open).then_some(&mut conn.link)
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
