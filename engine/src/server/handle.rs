//! [`ServerHandle`]: a running server, steered from any thread, and its
//! [`Stats`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::BridgeSlot;
use crate::config::BackendKind;
use crate::proto::close::CloseCode;
use crate::runtime::bridge;
use crate::runtime::command::{Command, Mailbox};
use crate::runtime::metrics::{Format, Metrics};
use crate::runtime::worker::WorkerStats;
use crate::transport::tls::{TlsConfig, TlsConfigCell};
use crate::types::{ConnId, Message, PreparedMessage};

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) backend: BackendKind,
    pub(super) mailboxes: Arc<[Mailbox]>,
    pub(super) bridge: BridgeSlot,
    pub(super) threads: Mutex<Vec<JoinHandle<()>>>,
    pub(super) stats: Arc<[Arc<WorkerStats>]>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) local_addrs: Vec<SocketAddr>,
    pub(super) tls_addrs: Vec<SocketAddr>,
    pub(super) tls: Option<Arc<TlsConfigCell>>,
    /// Worker 0 runs on the thread in [`Server::run`].
    ///
    /// [`Server::run`]: crate::Server::run
    pub(super) inline: bool,
    /// The live hand-over's thread, if configured.
    pub(super) handover: Mutex<Option<crate::handover::Control>>,
}

/// Steers a running server from any thread.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    pub(super) inner: Arc<Inner>,
}

/// Server-wide figures, summed over the workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections open now (including handshakes in progress).
    pub connections: u64,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Messages received.
    pub messages_in: u64,
    /// Frames queued for sending (messages, pongs, pings).
    pub messages_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Commands from other threads run (publishes, sends, closes, shutdowns).
    pub commands: u64,
    /// Wake-ups those commands cost (one per batch, not per command).
    pub wakes: u64,
}

impl ServerHandle {
    /// The bound address (of the first configured address).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addrs[0]
    }

    /// The backend the workers run: [`BackendKind::IoUring`] or
    /// [`BackendKind::Epoll`] (never `Auto`).
    pub fn backend(&self) -> BackendKind {
        self.inner.backend
    }

    /// Every bound address: the plain ones, then the TLS ones.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.inner.local_addrs
    }

    /// The addresses bound with TLS ([`Builder::bind_tls`]).
    ///
    /// [`Builder::bind_tls`]: crate::Builder::bind_tls
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.inner.tls_addrs
    }

    /// Replaces the certificates (the whole TLS configuration) for new
    /// handshakes on every worker; open connections keep theirs. False if the
    /// server has no TLS listener.
    pub fn reload_tls(&self, config: TlsConfig) -> bool {
        match &self.inner.tls {
            Some(cell) => {
                cell.replace(&config);
                true
            }
            None => false,
        }
    }

    /// Publishes to `topic` on every worker, and through the bridge (if any)
    /// on the other nodes; the frame is encoded once.
    pub fn publish(&self, topic: &str, message: Message<'_>) {
        self.publish_prepared(topic, &PreparedMessage::new(message));
    }

    /// Publishes a prepared message, as [`publish`](Self::publish) does.
    pub fn publish_prepared(&self, topic: &str, message: &PreparedMessage) {
        self.inner
            .metrics
            .source()
            .handle_publishes
            .fetch_add(1, Ordering::Relaxed);
        self.publish_local(topic, message.clone());
        if let Some(bridge) = &self.inner.bridge.0 {
            bridge.publish(topic, message);
        }
    }

    /// Publishes to `topic` on this node's workers only, not through the
    /// bridge: for a message that came from another node.
    pub fn publish_local(&self, topic: &str, message: PreparedMessage) {
        bridge::deliver(&self.inner.mailboxes, topic, message);
    }

    /// Sends a message to one connection. False if its worker is gone; a closed
    /// connection silently drops it.
    pub fn send(&self, id: ConnId, message: Message<'_>) -> bool {
        let message = PreparedMessage::new(message);
        self.mailbox(id)
            .is_some_and(|m| m.send(Command::Send { id, message }))
    }

    /// Starts closing one connection.
    pub fn close(&self, id: ConnId, code: CloseCode, reason: &str) -> bool {
        self.mailbox(id).is_some_and(|m| {
            m.send(Command::Close {
                id,
                code,
                reason: reason.to_owned(),
            })
        })
    }

    /// Stops accepting, sends close 1001 to every connection, flushes everything
    /// queued, waits for the peers' replies until `grace` has passed, aborts the
    /// rest and joins the workers. For a server in [`Server::run`], it joins
    /// the workers on threads of their own; `run` returns once worker 0, on
    /// its caller's thread, is done too.
    ///
    /// [`Server::run`]: crate::Server::run
    pub fn shutdown(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        for mailbox in self.inner.mailboxes.iter() {
            mailbox.send(Command::Shutdown { deadline });
        }
        self.join_threads();
        if !self.inner.inline {
            self.stop_handover();
            self.stop_bridge();
        }
    }

    /// Waits until every worker (on a thread of its own) has exited: after a
    /// [`shutdown`](Self::shutdown) from elsewhere, or once a live hand-over
    /// (`docs/HANDOVER.md`) has taken or closed every connection; then stops
    /// the hand-over thread.
    pub fn join(&self) {
        self.join_threads();
        self.stop_handover();
    }

    /// Stops the hand-over thread, if any.
    pub(super) fn stop_handover(&self) {
        let control = self
            .inner
            .handover
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut control) = control {
            control.stop();
        }
    }

    /// Joins the workers on threads of their own.
    pub(super) fn join_threads(&self) {
        let threads =
            std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }

    /// Tells the bridge that every worker has exited.
    pub(super) fn stop_bridge(&self) {
        if let Some(bridge) = &self.inner.bridge.0 {
            bridge.stop();
        }
    }

    /// Current figures.
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for s in self.inner.stats.iter() {
            total.connections += s.connections.load(Ordering::Relaxed);
            total.accepted += s.accepted.load(Ordering::Relaxed);
            total.messages_in += s.messages_in.load(Ordering::Relaxed);
            total.messages_out += s.messages_out.load(Ordering::Relaxed)
                + s.pings_out.load(Ordering::Relaxed)
                + s.pongs_out.load(Ordering::Relaxed);
            total.bytes_in += s.bytes_in.load(Ordering::Relaxed);
            total.commands += s.commands.load(Ordering::Relaxed);
        }
        total.wakes = self.inner.mailboxes.iter().map(Mailbox::wakes).sum();
        total
    }

    /// The server's metrics in the Prometheus text format (0.0.4), for users
    /// who serve them elsewhere than [`Builder::metrics_route`]. Read from the
    /// figures each worker publishes once per loop turn.
    ///
    /// [`Builder::metrics_route`]: crate::Builder::metrics_route
    pub fn metrics(&self) -> String {
        self.inner.metrics.render(Format::Prometheus)
    }

    /// The same in the OpenMetrics text format (1.0.0).
    pub fn metrics_openmetrics(&self) -> String {
        self.inner.metrics.render(Format::OpenMetrics)
    }

    fn mailbox(&self, id: ConnId) -> Option<&Mailbox> {
        self.inner.mailboxes.get(id.worker())
    }
}
