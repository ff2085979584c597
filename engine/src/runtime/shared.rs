//! The worker state every connection's callbacks reach besides the connection
//! itself: configuration, the protocol endpoint, topics, the flush list, the
//! close reports, counters and spare buffers. Per worker; never shared between
//! threads.

use std::sync::Arc;

use super::command::{Mailbox, Peers};
pub(crate) use super::metrics::Counters;
use super::metrics::Metrics;
use super::topics::Topics;
use crate::config::Config;
use crate::proto::close::CloseCode;
use crate::proto::deflate::DeflateConfig;
use crate::proto::session::Endpoint;
use crate::transport::outbox::BufferPool;
use crate::types::{CloseCause, ConnId, PreparedMessage};

/// A connection that ended after `on_open`: what its `on_close` gets.
#[derive(Debug)]
pub(crate) struct Closed<U> {
    pub id: ConnId,
    pub data: U,
    pub code: CloseCode,
    pub reason: String,
    pub cause: CloseCause,
}

/// The response head of a stream carried by an HTTP/2 socket (an accepted
/// upgrade's 200, a route's or a refusal's status): queued here by the HTTP
/// phase, which sees only the stream, and sent as a HEADERS frame by the
/// worker, which reaches the socket, before any of the stream's DATA.
#[derive(Debug)]
pub(crate) struct Head {
    pub id: ConnId,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The response has no body: the HEADERS frame ends the stream.
    pub end: bool,
}

#[derive(Debug)]
pub(crate) struct Shared<U> {
    pub config: Arc<Config>,
    /// What this worker offers of permessage-deflate, if anything.
    pub deflate: Option<DeflateConfig>,
    /// The protocol state all sessions of the worker share (codecs, scratch).
    pub endpoint: Endpoint,
    pub topics: Topics,
    /// Publishes made during callbacks, delivered after them.
    pub publishes: Vec<(Arc<str>, PreparedMessage)>,
    /// Connections with something to flush or finish this turn.
    pub flush: Vec<usize>,
    /// Streams upgraded this turn (slab keys): their handshake's duration is
    /// taken at the turn's end.
    pub upgraded: Vec<usize>,
    /// Connections that ended this turn, to report to `on_close`.
    pub closed: Vec<Closed<U>>,
    /// Response heads of carried streams, for their sockets' HTTP/2 codecs.
    pub heads: Vec<Head>,
    pub counters: Counters,
    /// The worker's time in ms since it started, as of the last turn's end
    /// (for rate limits).
    pub now_ms: u64,
    /// Shutdown has begun: a connection opened now is closed with 1001 at once.
    pub shutting_down: bool,
    /// Connections whose rate limit asks to stop reading them, this turn.
    pub pausing: Vec<ConnId>,
    /// The server's metrics, for the metrics route.
    pub metrics: Arc<Metrics>,
    /// Spare send buffers.
    pub pool: BufferPool,
    /// Upgrades waiting for a deferred decision (at most
    /// `max_pending_upgrades`).
    pub pending_upgrades: usize,
    /// Every worker's mailbox (this one's among them: a deferred decision
    /// comes back through it), and this worker's index.
    pub peers: Peers,
    pub worker: usize,
}

impl<U> Shared<U> {
    /// This worker's mailbox, once every worker has started.
    pub fn mailbox(&self) -> Option<Mailbox> {
        self.peers
            .get()
            .and_then(|peers| peers.get(self.worker))
            .cloned()
    }
}
