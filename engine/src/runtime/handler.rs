//! The callback interface the runtime drives: the [`Handler`] trait users
//! implement and the [`WebSocket`] handle their callbacks get.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;

use super::conn::{Direct, Link};
use super::deferred::PendingUpgrade;
use super::pubsub;
use super::shared::Shared;
use crate::proto::close::CloseCode;
use crate::proto::frame::OpCode;
use crate::proto::handshake::UpgradeRequest;
use crate::types::{
    CloseCause, ConnId, HttpRequest, HttpResponse, Message, PreparedMessage, SendStatus, Upgrade,
};

/// The application's callbacks. Each worker thread builds its own handler with
/// the factory given to [`crate::Server::start`], so a handler needs neither `Send`
/// nor `Sync` and may keep per-worker state without locks.
///
/// Every connection that got [`on_open`](Self::on_open) gets exactly one
/// [`on_close`](Self::on_close).
pub trait Handler: 'static {
    /// Per-connection data, set at upgrade and handed back at close.
    type Data: 'static;

    /// Decide on an upgrade request: authenticate, choose a subprotocol, attach
    /// data. `request` borrows the received bytes.
    fn on_upgrade(&mut self, request: &UpgradeRequest<'_>, peer: SocketAddr)
    -> Upgrade<Self::Data>;

    /// `on_upgrade` returned [`Upgrade::defer`]: complete `pending` from any
    /// thread (send it to a pool, ask another service, then `accept` or
    /// `reject`). The default drops it, which answers 500.
    fn on_upgrade_deferred(&mut self, pending: PendingUpgrade<Self::Data>) {
        drop(pending);
    }

    /// The connection is open.
    fn on_open(&mut self, ws: &mut WebSocket<'_, Self::Data>) {
        let _ = ws;
    }

    /// A complete message arrived. It borrows the receive buffer.
    fn on_message(&mut self, ws: &mut WebSocket<'_, Self::Data>, message: Message<'_>);

    /// A ping arrived; the pong was already queued.
    fn on_ping(&mut self, ws: &mut WebSocket<'_, Self::Data>, payload: &[u8]) {
        let _ = (ws, payload);
    }

    /// A pong arrived (solicited or not).
    fn on_pong(&mut self, ws: &mut WebSocket<'_, Self::Data>, payload: &[u8]) {
        let _ = (ws, payload);
    }

    /// The send queue, which had passed the backpressure limit, is empty again.
    fn on_drain(&mut self, ws: &mut WebSocket<'_, Self::Data>) {
        let _ = ws;
    }

    /// The connection ended. `code` and `reason` are the peer's close frame when it
    /// sent one, else the code this side used (1006 when there was none).
    fn on_close(
        &mut self,
        id: ConnId,
        data: Self::Data,
        code: CloseCode,
        reason: &str,
        cause: CloseCause,
    ) {
        let _ = (id, data, code, reason, cause);
    }

    /// A live hand-over (`docs/HANDOVER.md`) is taking connection `id` to a
    /// new process: return the bytes the new process's
    /// [`on_handover_in`](Self::on_handover_in) rebuilds `data` from (see
    /// [`Portable`]). The connection then leaves this process without
    /// `on_close`; its data is dropped here. The default, `None`, carries
    /// nothing: the connection is closed with 1012 (service restart) and
    /// `on_close` follows as for any close.
    fn on_handover_out(&mut self, id: ConnId, data: &Self::Data) -> Option<Vec<u8>> {
        let _ = (id, data);
        None
    }

    /// A connection handed over by the old process arrived, now named `id`:
    /// its data, rebuilt from what the old process's
    /// [`on_handover_out`](Self::on_handover_out) made of it. It is open
    /// already: no `on_open` follows, and `on_close` comes at its end. `None`
    /// refuses it: it is closed with 1012 (the default).
    fn on_handover_in(&mut self, id: ConnId, bytes: &[u8]) -> Option<Self::Data> {
        let _ = (id, bytes);
        None
    }

    /// A plain HTTP request (no WebSocket upgrade). Return a response to serve a
    /// route such as `/health`, or `None` for the default 426 Upgrade Required.
    fn on_http(&mut self, request: &HttpRequest<'_>) -> Option<HttpResponse> {
        let _ = request;
        None
    }
}

/// Per-connection data that can travel to another process in a live
/// hand-over: as bytes and back. A handler whose data implements it carries
/// it with two lines:
///
/// ```
/// # use ringws::{ConnId, Portable};
/// # struct H;
/// # impl H {
/// fn on_handover_out(&mut self, _id: ConnId, data: &String) -> Option<Vec<u8>> {
///     Some(data.to_bytes())
/// }
/// fn on_handover_in(&mut self, _id: ConnId, bytes: &[u8]) -> Option<String> {
///     String::from_bytes(bytes)
/// }
/// # }
/// ```
pub trait Portable: Sized {
    /// The bytes another process rebuilds it from.
    fn to_bytes(&self) -> Vec<u8>;
    /// Rebuilt from [`Self::to_bytes`]'s bytes; `None` if they are not.
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
}

impl Portable for () {
    fn to_bytes(&self) -> Vec<u8> {
        Vec::new()
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.is_empty().then_some(())
    }
}

impl Portable for Vec<u8> {
    fn to_bytes(&self) -> Vec<u8> {
        self.clone()
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(bytes.to_vec())
    }
}

impl Portable for String {
    fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

impl Portable for u64 {
    fn to_bytes(&self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }
}

/// The handle on one open connection inside a callback. It is `!Send`: it lives
/// on the connection's worker thread, for the duration of the callback.
pub struct WebSocket<'a, U> {
    link: &'a mut Link<U>,
    shared: &'a mut Shared<U>,
    /// The socket or the record layer, while the callback runs on received
    /// data: a large message can go out from where it lies (see
    /// `Link::send_message`).
    direct: Option<Direct<'a>>,
    _not_send: PhantomData<*const ()>,
}

impl<U> fmt::Debug for WebSocket<'_, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("id", &self.link.id)
            .field("peer", &self.link.peer())
            .finish_non_exhaustive()
    }
}

impl<'a, U> WebSocket<'a, U> {
    pub(crate) fn new(link: &'a mut Link<U>, shared: &'a mut Shared<U>) -> Self {
        Self::receiving(link, shared, None)
    }

    /// The handle for a callback on received data; `direct` is the backend
    /// when the connection is plain, its record layer over TLS.
    pub(crate) fn receiving(
        link: &'a mut Link<U>,
        shared: &'a mut Shared<U>,
        direct: Option<Direct<'a>>,
    ) -> Self {
        Self {
            link,
            shared,
            direct,
            _not_send: PhantomData,
        }
    }

    /// The connection's id, valid across threads through [`crate::ServerHandle`].
    pub fn id(&self) -> ConnId {
        self.link.id
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.link.peer()
    }

    /// The connection's data.
    pub fn data(&self) -> &U {
        self.link.data()
    }

    /// The connection's data, mutably.
    pub fn data_mut(&mut self) -> &mut U {
        self.link.data_mut()
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) -> SendStatus {
        self.send(Message::Text(text))
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> SendStatus {
        self.send(Message::Binary(data))
    }

    /// Sends a message: copied into the connection's send queue, or, when it
    /// is large and nothing is queued, written from where it lies (the
    /// received message being echoed, say) with only what the socket does not
    /// take copied.
    pub fn send(&mut self, message: Message<'_>) -> SendStatus {
        self.send_data(message, true)
    }

    /// Sends a message without compressing it, even where permessage-deflate
    /// was negotiated (already-compressed data, latency-critical messages).
    pub fn send_uncompressed(&mut self, message: Message<'_>) -> SendStatus {
        self.send_data(message, false)
    }

    fn send_data(&mut self, message: Message<'_>, compress: bool) -> SendStatus {
        let direct = self.direct.as_mut().map(Direct::reborrow);
        self.link.send_message(
            self.shared,
            direct,
            message.opcode(),
            message.as_bytes(),
            compress,
        )
    }

    /// Sends a prepared message without copying it (where the connection does
    /// not compress it).
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> SendStatus {
        self.link
            .send_prepared(self.shared, message, &mut Default::default())
    }

    /// Sends a ping (payload cut to 125 bytes).
    pub fn ping(&mut self, payload: &[u8]) -> SendStatus {
        self.link.send_control(self.shared, OpCode::Ping, payload)
    }

    /// Starts the closing handshake: sends a close frame; [`Handler::on_close`]
    /// follows when the peer answers (or after the close timeout).
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        self.link.close(self.shared, code, reason);
    }

    /// Aborts the connection at once, without a close frame.
    pub fn terminate(&mut self) {
        self.link.terminate(self.shared);
    }

    /// Bytes queued for this connection, not counting the kernel's socket buffer.
    pub fn buffered_amount(&self) -> usize {
        self.link.outbox.len()
    }

    /// Subscribes to a topic. Returns false if already subscribed.
    pub fn subscribe(&mut self, topic: &str) -> bool {
        pubsub::join(&mut self.shared.topics, self.link, topic)
    }

    /// Unsubscribes from a topic. Returns false if not subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        pubsub::leave(&mut self.shared.topics, self.link, topic)
    }

    /// Whether this connection is subscribed to `topic`.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        pubsub::is_member(&self.shared.topics, self.link, topic)
    }

    /// Publishes to every subscriber of `topic` on every worker, this connection
    /// included if subscribed. The frame is encoded once and shared.
    pub fn publish(&mut self, topic: &str, message: Message<'_>) {
        self.publish_prepared(topic, &PreparedMessage::new(message));
    }

    /// Publishes a prepared message.
    pub fn publish_prepared(&mut self, topic: &str, message: &PreparedMessage) {
        self.shared.publishes.push((topic.into(), message.clone()));
    }
}
