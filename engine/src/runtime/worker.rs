//! One worker: its connections in a slab, its timers, its topics. Backends own
//! the sockets and the wait; they drive the worker through the `on_*` methods
//! and flush what it queued. Nothing in here is shared with another thread.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use slab::Slab;

use super::command::{Command, Mailbox};
use super::conn::{AfterFlush, Conn, Extra, Finish, NO_PING, Phase, Session, SharedFrames};
use super::outbox::{BufferPool, Outbox};
use super::pubsub::Topics;
use crate::api::{
    CloseCause, ConnId, Handler, HttpRequest, HttpResponse, Message, PreparedMessage, Upgrade,
    WebSocket,
};
use crate::config::{Config, DeflateMode};
use crate::proto::close::CloseCode;
use crate::proto::deflate::{self, Compressor, Decompressor, DeflateConfig};
use crate::proto::error::ProtocolError;
use crate::proto::frame::OpCode;
use crate::proto::frame::{DecodeRules, RSV1};
use crate::proto::handshake::{
    HandshakeError, HeaderStorage, UpgradeRequest, parse_request, write_reject_response,
};
use crate::proto::message::{Decoder, DecoderConfig, Event};
use crate::proto::utf8;

/// Counters kept without atomics during a turn and published once per turn.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub accepted: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
}

/// A worker's figures, readable from any thread.
#[derive(Debug, Default)]
pub(crate) struct WorkerStats {
    pub connections: AtomicU64,
    pub accepted: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
}

/// The worker state a [`WebSocket`] handle reaches besides its own connection.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: Arc<Config>,
    pub topics: Topics,
    /// Publishes made during callbacks, delivered after them.
    pub publishes: Vec<(Arc<str>, Bytes)>,
    /// Connections with something to flush or finish this turn.
    pub flush: Vec<usize>,
    pub counters: Counters,
    /// Spare send buffers.
    pub pool: BufferPool,
    /// The worker's compressors (permessage-deflate, shared mode).
    pub deflate: Option<SharedDeflate>,
    /// Scratch space for compressing a message.
    pub deflated: Vec<u8>,
}

impl Shared {
    pub fn subscribe<U>(&mut self, session: &mut Session<U>, topic: &str) -> bool {
        if self.is_subscribed(session, topic) {
            return false;
        }
        let id = self.topics.subscribe(topic, session.key());
        session.topics.get_or_insert_default().push(id);
        true
    }

    pub fn unsubscribe<U>(&mut self, session: &mut Session<U>, topic: &str) -> bool {
        let Some(id) = self.topics.id(topic) else {
            return false;
        };
        let Some(topics) = session.topics.as_mut() else {
            return false;
        };
        let Some(pos) = topics.iter().position(|&t| t == id) else {
            return false;
        };
        topics.swap_remove(pos);
        if topics.is_empty() {
            session.topics = None;
        }
        self.topics.unsubscribe(id, session.key());
        true
    }

    pub fn is_subscribed<U>(&self, session: &Session<U>, topic: &str) -> bool {
        self.topics
            .id(topic)
            .is_some_and(|id| session.topics.as_ref().is_some_and(|t| t.contains(&id)))
    }

    pub fn publish(&mut self, topic: &str, message: PreparedMessage) {
        self.publishes.push((topic.into(), message.frame));
    }

    fn unsubscribe_all<U>(&mut self, session: &mut Session<U>) {
        for id in session.topics.take().map(|t| *t).unwrap_or_default() {
            self.topics.unsubscribe(id, session.key());
        }
    }
}

/// Shared-mode permessage-deflate: one compressor per negotiated window size
/// (without context takeover, so any connection can use it), made on first use.
#[derive(Debug)]
pub(crate) struct SharedDeflate {
    level: u32,
    by_window: [Option<Compressor>; 7],
}

impl SharedDeflate {
    fn new(level: u32) -> Self {
        Self {
            level,
            by_window: Default::default(),
        }
    }

    /// The compressor for a window of `bits` (9..=15).
    pub fn compressor(&mut self, bits: u8) -> &mut Compressor {
        let bits = bits.clamp(9, 15);
        let level = self.level;
        self.by_window[usize::from(bits) - 9]
            .get_or_insert_with(|| Compressor::new(bits, level, true))
    }
}

/// The mailboxes of all workers, set once every worker has started.
pub(crate) type Peers = Arc<OnceLock<Vec<Mailbox>>>;

/// Durations in timer ticks.
#[derive(Debug, Clone, Copy)]
struct Ticks {
    handshake: u32,
    idle: Option<u32>,
    ping: Option<u32>,
    pong: u32,
    close: u32,
}

/// One worker's connections and everything they need.
pub(crate) struct Worker<H: Handler> {
    index: usize,
    handler: H,
    conns: Slab<Conn<H::Data>>,
    shared: Shared,
    decoder_config: DecoderConfig,
    generation: u32,
    commands: Receiver<Command>,
    peers: Peers,
    stats: Arc<WorkerStats>,
    epoch: Instant,
    tick: Duration,
    ticks: Ticks,
    now: u32,
    shutdown: Option<Instant>,
    keys: Vec<u32>,
    /// What this worker negotiates (permessage-deflate), if anything.
    deflate: Option<DeflateConfig>,
    /// The decoder rules of connections that negotiated it (RSV1 allowed).
    deflate_decoder_config: DecoderConfig,
    /// The worker's decompressor (shared mode: no client context takeover).
    inflate: Option<Decompressor>,
    /// Where a compressed message is inflated before its callback.
    inflated: Vec<u8>,
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
    pub fn new(
        index: usize,
        handler: H,
        config: Arc<Config>,
        commands: Receiver<Command>,
        peers: Peers,
        stats: Arc<WorkerStats>,
    ) -> Self {
        let tick = config.tick();
        let to_ticks = |d: Duration| (d.as_nanos().div_ceil(tick.as_nanos()) as u32).max(1);
        let ticks = Ticks {
            handshake: to_ticks(config.handshake_timeout),
            idle: config.idle_timeout.map(to_ticks),
            ping: config.ping_interval.map(to_ticks),
            pong: to_ticks(config.pong_timeout),
            close: to_ticks(config.close_timeout),
        };
        let (mode, level) = (config.deflate, config.deflate_level);
        let deflate = match mode {
            DeflateMode::Off => None,
            // No context takeover either way: the worker's codec serves everyone.
            DeflateMode::Shared => Some(DeflateConfig {
                max_window_bits: 15,
                request_no_context_takeover: true,
                no_context_takeover: true,
                level: config.deflate_level,
            }),
            DeflateMode::Dedicated { window_bits } => Some(DeflateConfig {
                max_window_bits: window_bits,
                request_no_context_takeover: false,
                no_context_takeover: false,
                level: config.deflate_level,
            }),
        };
        let decoder_config = DecoderConfig {
            rules: crate::proto::frame::DecodeRules::new(
                crate::proto::Role::Server,
                config.max_frame_size as u64,
            ),
            max_message_size: config.max_message_size,
        };
        Self {
            index,
            handler,
            conns: Slab::new(),
            shared: Shared {
                config,
                topics: Topics::default(),
                publishes: Vec::new(),
                flush: Vec::new(),
                counters: Counters::default(),
                pool: BufferPool::default(),
                deflate: (mode == DeflateMode::Shared).then(|| SharedDeflate::new(level)),
                deflated: Vec::new(),
            },
            decoder_config,
            generation: 0,
            commands,
            peers,
            stats,
            epoch: Instant::now(),
            tick,
            ticks,
            now: 0,
            shutdown: None,
            keys: Vec::new(),
            deflate,
            deflate_decoder_config: DecoderConfig {
                rules: DecodeRules {
                    allowed_rsv: RSV1,
                    ..decoder_config.rules
                },
                ..decoder_config
            },
            inflate: (mode == DeflateMode::Shared).then(|| Decompressor::new(true)),
            inflated: Vec::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Whether new connections are welcome (not shutting down).
    pub fn accepting(&self) -> bool {
        self.shutdown.is_none()
    }

    /// Shutdown is complete: every connection is gone.
    pub fn finished(&self) -> bool {
        self.shutdown.is_some() && self.conns.is_empty()
    }

    /// How long the backend may wait before the next timer tick.
    pub fn timeout(&self) -> Duration {
        let next = self.epoch + self.tick * (self.now + 1);
        next.saturating_duration_since(Instant::now())
    }

    /// A new TCP connection: its slab key, or `None` when this worker is full or
    /// shutting down (the backend then closes it).
    pub fn on_accept(&mut self, peer: SocketAddr) -> Option<usize> {
        if self.shutdown.is_some()
            || self.conns.len() >= self.shared.config.max_connections_per_worker
        {
            return None;
        }
        self.generation = self.generation.wrapping_add(1);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let id = ConnId::new(self.index, key, self.generation);
        entry.insert(Conn {
            session: Session::new(id, peer),
            decoder: Decoder::new(),
            extra: None,
            last_rx: self.now,
            deadline: self.now + self.ticks.handshake,
            deadline_phase: Phase::Handshake,
            ping_sent: NO_PING,
        });
        self.shared.counters.accepted += 1;
        Some(key)
    }

    /// Bytes received on connection `key`. They are parsed in place: masked
    /// payloads are unmasked inside `data`.
    pub fn on_data(&mut self, key: usize, data: &mut [u8]) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.last_rx = self.now;
        conn.ping_sent = NO_PING;
        self.shared.counters.bytes_in += data.len() as u64;
        match conn.session.phase {
            Phase::Handshake => self.handshake(key, data),
            Phase::Open | Phase::Closing => self.frames(key, data),
            // After the close handshake, whatever the peer sends is discarded.
            Phase::Draining => {}
        }
    }

    /// The peer closed its side (`eof`: it may still read) or the connection
    /// failed. What is queued is still sent to a half-closed peer (our close reply,
    /// say), then the socket is closed.
    pub fn on_hangup(&mut self, key: usize, eof: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let session = &mut conn.session;
        if session.data.is_some() {
            let cause = session.local_cause.unwrap_or(CloseCause::Reset);
            report_close(
                &mut self.handler,
                &mut self.shared,
                session,
                CloseCode::ABNORMAL,
                "",
                cause,
            );
        }
        session.phase = Phase::Draining;
        session.finish = if eof && !session.outbox.is_empty() {
            Finish::CloseAfterFlush
        } else {
            Finish::Abort
        };
        session.mark(&mut self.shared);
    }

    /// The socket of `key` is writable again after a stalled flush.
    pub fn on_writable(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.session.outbox.is_empty() || conn.session.finish != Finish::None {
                conn.session.mark(&mut self.shared);
            }
        }
    }

    /// Runs queued commands from other threads.
    pub fn on_commands(&mut self) {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Publish { topic, frame }) => self.deliver(&topic, &frame),
                Ok(Command::Send { id, frame }) => {
                    if let Some(session) = session_of(&mut self.conns, id) {
                        session.send_shared(&mut self.shared, frame, &mut SharedFrames::default());
                    }
                }
                Ok(Command::Close { id, code, reason }) => {
                    if let Some(session) = session_of(&mut self.conns, id) {
                        session.close(&mut self.shared, code, &reason);
                    }
                }
                Ok(Command::Shutdown { deadline }) => self.begin_shutdown(deadline),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
    }

    /// Advances the clock; sweeps the connections once per tick (uWebSockets'
    /// coarse timer: O(1) per connection per tick, no per-message timer entries).
    pub fn on_tick(&mut self) {
        let now = (self.epoch.elapsed().as_nanos() / self.tick.as_nanos()) as u32;
        if let Some(deadline) = self.shutdown {
            if Instant::now() >= deadline {
                self.abort_all(CloseCause::Shutdown);
            }
        }
        if now == self.now {
            return;
        }
        self.now = now;
        self.shared.pool.trim();
        let Self {
            conns,
            handler,
            shared,
            ticks,
            ..
        } = self;
        for (_, conn) in conns.iter_mut() {
            sweep(conn, now, ticks, handler, shared);
        }
    }

    /// Delivers publishes made during callbacks, here and on the other workers.
    pub fn pump(&mut self) {
        while !self.shared.publishes.is_empty() {
            let publishes = std::mem::take(&mut self.shared.publishes);
            for (topic, frame) in publishes {
                self.deliver(&topic, &frame);
                if let Some(peers) = self.peers.get() {
                    for (i, peer) in peers.iter().enumerate() {
                        if i != self.index {
                            peer.send(Command::Publish {
                                topic: topic.clone(),
                                frame: frame.clone(),
                            });
                        }
                    }
                }
            }
        }
    }

    /// Moves the connections to flush into `out`.
    pub fn take_flush(&mut self, out: &mut Vec<usize>) {
        out.clear();
        std::mem::swap(out, &mut self.shared.flush);
    }

    /// Starts flushing `key`: what to do, and the queue to write.
    pub fn flush_start(&mut self, key: usize) -> Option<(Finish, &mut Outbox)> {
        let conn = self.conns.get_mut(key)?;
        conn.session.listed = false;
        Some((conn.session.finish, &mut conn.session.outbox))
    }

    /// `written` bytes of `key`'s queue went out; `blocked` if the socket took no
    /// more. Returns what the backend must do with the socket now.
    pub fn flush_done(&mut self, key: usize, written: usize, blocked: bool) -> AfterFlush {
        let Some(conn) = self.conns.get_mut(key) else {
            return AfterFlush::Keep;
        };
        let session = &mut conn.session;
        session.outbox.consume(&mut self.shared.pool, written);
        if blocked {
            session.stalled = true;
            return AfterFlush::Keep;
        }
        if !session.outbox.is_empty() {
            // More than one write's worth of iovecs: go on next turn.
            session.mark(&mut self.shared);
            return AfterFlush::Keep;
        }
        if std::mem::take(&mut session.stalled) && session.phase == Phase::Open {
            let mut ws = WebSocket {
                session,
                shared: &mut self.shared,
                _not_send: std::marker::PhantomData,
            };
            self.handler.on_drain(&mut ws);
            if !session.outbox.is_empty() {
                return AfterFlush::Keep;
            }
        }
        match session.finish {
            Finish::None => AfterFlush::Keep,
            Finish::ShutdownWrite => {
                session.finish = Finish::None;
                AfterFlush::ShutdownWrite
            }
            Finish::CloseAfterFlush | Finish::Abort => AfterFlush::Close,
        }
    }

    /// A write failed: the connection is gone.
    pub fn flush_failed(&mut self, key: usize) {
        self.on_hangup(key, false);
    }

    /// The backend closed the socket of `key`: forget the connection.
    pub fn release(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            if conn.session.data.is_some() {
                let cause = conn.session.local_cause.unwrap_or(CloseCause::Reset);
                report_close(
                    &mut self.handler,
                    &mut self.shared,
                    &mut conn.session,
                    CloseCode::ABNORMAL,
                    "",
                    cause,
                );
            }
            self.shared.unsubscribe_all(&mut conn.session);
            conn.session.outbox.clear(&mut self.shared.pool);
        }
    }

    /// Publishes the turn's counters for [`crate::ServerHandle::stats`].
    pub fn publish_stats(&mut self) {
        let c = std::mem::take(&mut self.shared.counters);
        let s = &self.stats;
        s.connections
            .store(self.conns.len() as u64, Ordering::Relaxed);
        s.accepted.fetch_add(c.accepted, Ordering::Relaxed);
        s.messages_in.fetch_add(c.messages_in, Ordering::Relaxed);
        s.messages_out.fetch_add(c.messages_out, Ordering::Relaxed);
        s.bytes_in.fetch_add(c.bytes_in, Ordering::Relaxed);
    }

    fn deliver(&mut self, topic: &str, frame: &Bytes) {
        let mut keys = std::mem::take(&mut self.keys);
        keys.clear();
        keys.extend_from_slice(self.shared.topics.subscribers(topic));
        // Compressed once per window for every subscriber on the shared compressors.
        let mut compressed = SharedFrames::default();
        for &key in &keys {
            if let Some(conn) = self.conns.get_mut(key as usize) {
                conn.session
                    .send_shared(&mut self.shared, frame.clone(), &mut compressed);
            }
        }
        self.keys = keys;
    }

    fn begin_shutdown(&mut self, deadline: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        self.shutdown = Some(deadline);
        let Self { conns, shared, .. } = self;
        for (_, conn) in conns.iter_mut() {
            let session = &mut conn.session;
            match session.phase {
                Phase::Handshake => {
                    session.finish = Finish::Abort;
                    session.mark(shared);
                }
                Phase::Open => session.start_close(
                    shared,
                    CloseCode::GOING_AWAY,
                    "server shutdown",
                    CloseCause::Shutdown,
                ),
                Phase::Closing | Phase::Draining => {}
            }
        }
    }

    fn abort_all(&mut self, cause: CloseCause) {
        let Self {
            conns,
            handler,
            shared,
            ..
        } = self;
        for (_, conn) in conns.iter_mut() {
            let session = &mut conn.session;
            if session.data.is_some() {
                report_close(handler, shared, session, session.local_code, "", cause);
            }
            session.finish = Finish::Abort;
            session.mark(shared);
        }
    }

    /// Reads the upgrade request; answers it; goes on with any frames behind it.
    fn handshake(&mut self, key: usize, data: &mut [u8]) {
        let limits = self.shared.config.handshake_limits;
        let conn = &mut self.conns[key];
        let stashed = match conn.extra.take().map(|extra| *extra) {
            Some(Extra::Head(head)) => Some(head),
            Some(other) => {
                conn.extra = Some(Box::new(other));
                None
            }
            None => None,
        };
        let Some(mut head) = stashed else {
            // The common case: the whole request in one read, parsed where it lies.
            let mut storage = HeaderStorage::new();
            let consumed = match parse_request(data, &limits, &mut storage) {
                Ok(Some((request, consumed))) => {
                    self.upgrade(key, &request);
                    consumed
                }
                Ok(None) => {
                    conn.extra = Some(Box::new(Extra::Head(data.to_vec())));
                    return;
                }
                Err(error) => return self.refuse(key, data, error),
            };
            if consumed < data.len() {
                self.after_upgrade(key, &mut data[consumed..]);
            }
            return;
        };
        head.extend_from_slice(data);
        let mut storage = HeaderStorage::new();
        let consumed = match parse_request(&head, &limits, &mut storage) {
            Ok(Some((request, consumed))) => {
                self.upgrade(key, &request);
                consumed
            }
            Ok(None) => {
                self.conns[key].extra = Some(Box::new(Extra::Head(head)));
                return;
            }
            Err(error) => return self.refuse(key, &head, error),
        };
        if consumed < head.len() {
            self.after_upgrade(key, &mut head[consumed..]);
        }
    }

    fn after_upgrade(&mut self, key: usize, rest: &mut [u8]) {
        if self.conns[key].session.phase == Phase::Open {
            self.frames(key, rest);
        }
    }

    /// Asks the handler and writes the 101 (or its refusal).
    fn upgrade(&mut self, key: usize, request: &UpgradeRequest<'_>) {
        let Self {
            conns,
            handler,
            shared,
            deflate,
            ..
        } = self;
        let conn = &mut conns[key];
        let negotiated = deflate
            .as_ref()
            .and_then(|config| deflate::negotiate(request.extensions(), config));
        let extensions = negotiated.map(|n| n.header_value());
        let session = &mut conn.session;
        let mut out = Vec::new();
        match handler.on_upgrade(request, session.peer) {
            Upgrade::Accept {
                data,
                protocol,
                headers,
            } => {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                if let Err(e) = request.write_accept(
                    &mut out,
                    protocol.as_deref(),
                    extensions.as_deref(),
                    &headers,
                ) {
                    log::warn!(
                        "upgrade of {} refused: the handler's answer is invalid: {e}",
                        session.id
                    );
                    out.clear();
                    let _ =
                        write_reject_response(&mut out, 500, &[], b"invalid upgrade response\n");
                    return end_http(session, shared, &out);
                }
                session.outbox.push_copy(&mut shared.pool, &out, b"");
                session.mark(shared);
                if let (Some(n), Some(config)) = (negotiated, deflate.as_ref()) {
                    if shared.deflate.is_some() {
                        session.shared_window = n.server_max_window_bits;
                    } else {
                        session.compressor = Some(Box::new(Compressor::new(
                            n.server_max_window_bits,
                            config.level,
                            n.server_no_context_takeover,
                        )));
                        let inflate = Decompressor::new(n.client_no_context_takeover);
                        conn.extra = Some(Box::new(Extra::Inflate(inflate)));
                    }
                }
                session.data = Some(data);
                session.phase = Phase::Open;
                let mut ws = WebSocket {
                    session,
                    shared,
                    _not_send: std::marker::PhantomData,
                };
                handler.on_open(&mut ws);
            }
            Upgrade::Reject(response) => {
                write_http(&mut out, &response);
                end_http(session, shared, &out);
            }
        }
    }

    /// Answers a request that is not a valid upgrade: the handler's HTTP route
    /// for plain requests, else the handshake error's status.
    fn refuse(&mut self, key: usize, head: &[u8], error: HandshakeError) {
        let mut out = Vec::new();
        let mut routed = false;
        if error == HandshakeError::UpgradeRequired {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut request = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(_)) = request.parse(head) {
                let target = request.path.unwrap_or("/");
                let (path, query) = match target.split_once('?') {
                    Some((p, q)) => (p, Some(q)),
                    None => (target, None),
                };
                let http = HttpRequest {
                    method: request.method.unwrap_or("GET"),
                    path,
                    query,
                    headers: request.headers,
                };
                if let Some(response) = self.handler.on_http(&http) {
                    write_http(&mut out, &response);
                    routed = true;
                }
            }
        }
        if !routed {
            error.write_response(&mut out);
        }
        let conn = &mut self.conns[key];
        end_http(&mut conn.session, &mut self.shared, &out);
    }

    /// Decodes frames and runs the callbacks.
    fn frames(&mut self, key: usize, data: &mut [u8]) {
        let Self {
            conns,
            handler,
            shared,
            decoder_config,
            deflate_decoder_config,
            inflate: worker_inflate,
            inflated,
            ..
        } = self;
        let Conn {
            session,
            decoder,
            extra,
            ..
        } = &mut conns[key];
        let deflate = session.deflate();
        let decoder_config = if deflate {
            &*deflate_decoder_config
        } else {
            &*decoder_config
        };
        let mut pos = 0;
        while pos < data.len() {
            let step = match decoder.decode(decoder_config, &mut data[pos..]) {
                Ok((n, event)) => {
                    pos += n;
                    match event {
                        Some(event) => {
                            let inflater = match (deflate, extra.as_deref_mut()) {
                                (false, _) => None,
                                (true, Some(Extra::Inflate(own))) => Some(own),
                                (true, _) => worker_inflate.as_mut(),
                            };
                            dispatch(handler, shared, session, event, inflater, inflated)
                        }
                        None => Ok(()),
                    }
                }
                Err(error) => Err(error),
            };
            match step {
                Ok(()) => {}
                Err(error) => {
                    let code = error.close_code();
                    let reason = error.to_string();
                    if let Some(payload) = session.close.initiate(code, &reason) {
                        session.push_close(shared, &payload);
                    }
                    if session.data.is_some() {
                        report_close(
                            handler,
                            shared,
                            session,
                            code,
                            &reason,
                            CloseCause::Protocol(error),
                        );
                    }
                    session.phase = Phase::Draining;
                    session.finish = Finish::ShutdownWrite;
                    // Our close frame may have gone out already: list the
                    // connection anyway so its write side is shut now.
                    session.mark(shared);
                    break;
                }
            }
            if session.phase == Phase::Draining || session.finish == Finish::Abort {
                break;
            }
        }
        decoder.release_buffers();
    }
}

/// The open connection `id` still names, if any (the generation must match).
fn session_of<U>(conns: &mut Slab<Conn<U>>, id: ConnId) -> Option<&mut Session<U>> {
    let conn = conns.get_mut(id.key())?;
    (conn.session.id == id && conn.session.phase == Phase::Open).then_some(&mut conn.session)
}

/// Hands one decoded event to the handler.
fn dispatch<H: Handler>(
    handler: &mut H,
    shared: &mut Shared,
    session: &mut Session<H::Data>,
    event: Event<'_>,
    inflater: Option<&mut Decompressor>,
    inflated: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    macro_rules! ws {
        () => {
            &mut WebSocket {
                session: &mut *session,
                shared: &mut *shared,
                _not_send: std::marker::PhantomData,
            }
        };
    }
    match event {
        Event::Text(text) => {
            shared.counters.messages_in += 1;
            handler.on_message(ws!(), Message::Text(text));
        }
        Event::Binary(data) => {
            shared.counters.messages_in += 1;
            handler.on_message(ws!(), Message::Binary(data));
        }
        Event::Ping(payload) => {
            session.send_frame(shared, OpCode::Pong, payload, false);
            handler.on_ping(ws!(), payload);
        }
        Event::Pong(payload) => handler.on_pong(ws!(), payload),
        Event::Close(frame) => {
            if let Some(reply) = session.close.receive(frame) {
                session.push_close(shared, &reply);
            }
            let (code, reason) = frame.map_or((CloseCode::NO_STATUS, ""), |f| (f.code, f.reason));
            let cause = session.local_cause.unwrap_or(CloseCause::Peer);
            report_close(handler, shared, session, code, reason, cause);
            session.phase = Phase::Draining;
            session.finish = Finish::ShutdownWrite;
            session.mark(shared);
        }
        Event::Compressed { text, payload } => {
            // Without the extension the decoder refuses RSV1 before this point.
            let Some(inflater) = inflater else {
                return Err(ProtocolError::ReservedBits);
            };
            let max = shared.config.max_message_size;
            inflated.clear();
            let result = inflater
                .decompress(payload, inflated, max)
                .and_then(|()| inflater.finish(inflated, max));
            if let Err(error) = result {
                inflater.reset();
                return Err(error);
            }
            shared.counters.messages_in += 1;
            let message = if text {
                Message::Text(utf8::validate(inflated).map_err(|_| ProtocolError::InvalidUtf8)?)
            } else {
                Message::Binary(inflated)
            };
            handler.on_message(ws!(), message);
            // A one-off large message does not pin its buffer.
            if inflated.capacity() > 1 << 20 {
                *inflated = Vec::new();
            }
        }
    }
    Ok(())
}

/// Calls on_close once, with the user data handed back.
fn report_close<H: Handler>(
    handler: &mut H,
    shared: &mut Shared,
    session: &mut Session<H::Data>,
    code: CloseCode,
    reason: &str,
    cause: CloseCause,
) {
    shared.unsubscribe_all(session);
    // No callback may reach this connection again: frames that still arrive
    // (a completion-based backend may deliver some before the socket is gone)
    // are discarded.
    session.phase = Phase::Draining;
    if let Some(data) = session.data.take() {
        handler.on_close(session.id, data, code, reason, cause);
    }
}

/// One connection's timers at tick `now`.
fn sweep<H: Handler>(
    conn: &mut Conn<H::Data>,
    now: u32,
    ticks: &Ticks,
    handler: &mut H,
    shared: &mut Shared,
) {
    let session = &mut conn.session;
    if conn.deadline_phase != session.phase {
        conn.deadline_phase = session.phase;
        conn.deadline = now + ticks.close;
    }
    match session.phase {
        Phase::Handshake => {
            if now >= conn.deadline {
                session.finish = Finish::Abort;
                session.mark(shared);
            }
        }
        Phase::Open => {
            let silent = now.wrapping_sub(conn.last_rx);
            if conn.ping_sent != NO_PING && now.wrapping_sub(conn.ping_sent) >= ticks.pong {
                // No frame since the ping: the peer is presumed dead.
                report_close(
                    handler,
                    shared,
                    session,
                    CloseCode::ABNORMAL,
                    "",
                    CloseCause::Timeout,
                );
                session.finish = Finish::Abort;
                session.mark(shared);
                return;
            }
            if ticks.idle.is_some_and(|idle| silent >= idle) {
                session.start_close(
                    shared,
                    CloseCode::GOING_AWAY,
                    "idle timeout",
                    CloseCause::Timeout,
                );
            } else if conn.ping_sent == NO_PING && ticks.ping.is_some_and(|ping| silent >= ping) {
                session.send_frame(shared, OpCode::Ping, b"", false);
                conn.ping_sent = now;
            }
        }
        Phase::Closing | Phase::Draining => {
            if now >= conn.deadline {
                if session.data.is_some() {
                    let cause = session.local_cause.unwrap_or(CloseCause::Timeout);
                    report_close(handler, shared, session, session.local_code, "", cause);
                }
                session.finish = Finish::Abort;
                session.mark(shared);
            }
        }
    }
}

/// Serializes a handler's HTTP response (falls back to 500 if it is invalid).
fn write_http(out: &mut Vec<u8>, response: &HttpResponse) {
    let headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    if let Err(e) = write_reject_response(out, response.status, &headers, &response.body) {
        log::warn!("invalid HTTP response from the handler: {e}");
        out.clear();
        let _ = write_reject_response(out, 500, &[], b"invalid response\n");
    }
}

/// Queues an HTTP response and ends the connection after it.
fn end_http<U>(session: &mut Session<U>, shared: &mut Shared, response: &[u8]) {
    session.outbox.push_copy(&mut shared.pool, response, b"");
    session.phase = Phase::Draining;
    session.finish = Finish::ShutdownWrite;
    session.mark(shared);
}
