//! The callback API: the [`Handler`] trait users implement, the [`WebSocket`]
//! handle their callbacks get, and the values that pass between them.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::proto::close::CloseCode;
use crate::proto::error::ProtocolError;
use crate::proto::frame::{OpCode, encode_header};
use crate::proto::handshake::UpgradeRequest;
use crate::runtime::conn::Session;
use crate::runtime::worker::Shared;

/// A connection's identity: worker, slab slot and a generation, so an id held by
/// a [`crate::ServerHandle`] never reaches a later connection in the same slot.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    pub(crate) fn new(worker: usize, key: usize, generation: u32) -> Self {
        Self(((worker as u64) << 56) | ((key as u64 & 0xff_ffff) << 32) | u64::from(generation))
    }
    pub(crate) fn worker(self) -> usize {
        (self.0 >> 56) as usize
    }
    pub(crate) fn key(self) -> usize {
        ((self.0 >> 32) & 0xff_ffff) as usize
    }
    pub(crate) fn generation(self) -> u32 {
        self.0 as u32
    }
    /// The id as one number (for logs and maps).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ConnId({}:{}:{})",
            self.worker(),
            self.key(),
            self.generation()
        )
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.worker(), self.key(), self.generation())
    }
}

/// A received message, borrowed from the receive buffer: valid for the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message, validated UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }
    pub(crate) fn opcode(&self) -> OpCode {
        match self {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
        }
    }
}

/// What a send did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued; it goes out at the end of this loop turn.
    Sent,
    /// Queued, but the socket is not keeping up (bytes of earlier sends are
    /// still waiting for it): slow down until [`Handler::on_drain`]. A send that
    /// would pass [`crate::Config::max_backpressure`] is `Dropped` instead.
    Backpressure,
    /// Not sent: the connection is closing, or the backpressure policy dropped it.
    Dropped,
}

/// Why a connection ended; given to [`Handler::on_close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// The peer sent a close frame.
    Peer,
    /// This side called [`WebSocket::close`] (or [`crate::ServerHandle::close`]) and the
    /// peer answered or the close timeout passed.
    Local,
    /// The peer broke the protocol; it was sent the error's close code.
    Protocol(ProtocolError),
    /// No frame arrived within the idle timeout or the pong deadline.
    Timeout,
    /// The send queue passed its limit under [`crate::BackpressurePolicy::Close`].
    Backpressure,
    /// The server shut down.
    Shutdown,
    /// [`WebSocket::terminate`] aborted the connection.
    Terminated,
    /// The TCP connection ended (or failed) without a close frame.
    Reset,
}

/// The answer of [`Handler::on_upgrade`].
#[derive(Debug)]
pub enum Upgrade<U> {
    /// Accept the WebSocket connection.
    Accept {
        /// The connection's user data, available in every callback.
        data: U,
        /// The subprotocol chosen among those the client offered.
        protocol: Option<String>,
        /// Extra response headers.
        headers: Vec<(String, String)>,
    },
    /// Refuse it with an HTTP response (e.g. 401 or 403).
    Reject(HttpResponse),
}

impl<U> Upgrade<U> {
    /// Accept with this user data.
    pub fn accept(data: U) -> Self {
        Upgrade::Accept {
            data,
            protocol: None,
            headers: Vec::new(),
        }
    }

    /// Refuse with this status and a short text body.
    pub fn reject(status: u16, body: &str) -> Self {
        Upgrade::Reject(HttpResponse::text(status, body))
    }

    /// Choose a subprotocol (it must be one the client offered, or the handshake
    /// fails with 500).
    pub fn protocol(mut self, name: &str) -> Self {
        if let Upgrade::Accept { protocol, .. } = &mut self {
            *protocol = Some(name.to_owned());
        }
        self
    }

    /// Add a header to the response.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match &mut self {
            Upgrade::Accept { headers, .. } => headers.push((name.to_owned(), value.to_owned())),
            Upgrade::Reject(response) => response.headers.push((name.to_owned(), value.to_owned())),
        }
        self
    }
}

/// A plain HTTP response: for a refused upgrade or a route of [`Handler::on_http`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code, 200-599.
    pub status: u16,
    /// Headers besides Connection and Content-Length, which are written for you.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A `text/plain` response.
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

/// A plain HTTP request (no upgrade), for [`Handler::on_http`].
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    pub(crate) headers: &'a [httparse::Header<'a>],
}

impl<'a> HttpRequest<'a> {
    /// The first header of this name (case-insensitive), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    }
}

/// A message encoded once into a frame and shareable among many connections
/// without copying (a reference count per send).
#[derive(Debug, Clone)]
pub struct PreparedMessage {
    pub(crate) frame: Bytes,
}

impl PreparedMessage {
    /// A prepared text message.
    pub fn text(text: &str) -> Self {
        Self::new(Message::Text(text))
    }
    /// A prepared binary message.
    pub fn binary(data: &[u8]) -> Self {
        Self::new(Message::Binary(data))
    }
    /// Encodes `message` into one server frame.
    pub fn new(message: Message<'_>) -> Self {
        let payload = message.as_bytes();
        let header = encode_header(true, 0, message.opcode(), None, payload.len() as u64);
        let mut frame = Vec::with_capacity(header.as_bytes().len() + payload.len());
        frame.extend_from_slice(header.as_bytes());
        frame.extend_from_slice(payload);
        Self {
            frame: frame.into(),
        }
    }
    /// Size of the encoded frame in bytes.
    pub fn frame_len(&self) -> usize {
        self.frame.len()
    }
}

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

    /// A plain HTTP request (no WebSocket upgrade). Return a response to serve a
    /// route such as `/health`, or `None` for the default 426 Upgrade Required.
    fn on_http(&mut self, request: &HttpRequest<'_>) -> Option<HttpResponse> {
        let _ = request;
        None
    }
}

/// The handle on one open connection inside a callback. It is `!Send`: it lives
/// on the connection's worker thread, for the duration of the callback.
pub struct WebSocket<'a, U> {
    pub(crate) session: &'a mut Session<U>,
    pub(crate) shared: &'a mut Shared,
    pub(crate) _not_send: PhantomData<*const ()>,
}

impl<U> fmt::Debug for WebSocket<'_, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("id", &self.session.id)
            .field("peer", &self.session.peer)
            .finish_non_exhaustive()
    }
}

impl<U> WebSocket<'_, U> {
    /// The connection's id, valid across threads through [`crate::ServerHandle`].
    pub fn id(&self) -> ConnId {
        self.session.id
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.session.peer
    }

    /// The connection's data.
    pub fn data(&self) -> &U {
        self.session.data()
    }

    /// The connection's data, mutably.
    pub fn data_mut(&mut self) -> &mut U {
        self.session.data_mut()
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) -> SendStatus {
        self.send(Message::Text(text))
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> SendStatus {
        self.send(Message::Binary(data))
    }

    /// Sends a message (copied into the connection's send queue).
    pub fn send(&mut self, message: Message<'_>) -> SendStatus {
        self.session
            .send_frame(self.shared, message.opcode(), message.as_bytes(), true)
    }

    /// Sends a message without compressing it, even where permessage-deflate
    /// was negotiated (already-compressed data, latency-critical messages).
    pub fn send_uncompressed(&mut self, message: Message<'_>) -> SendStatus {
        self.session
            .send_frame(self.shared, message.opcode(), message.as_bytes(), false)
    }

    /// Sends a prepared message without copying it.
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> SendStatus {
        self.session
            .send_shared(self.shared, message.frame.clone(), &mut Default::default())
    }

    /// Sends a ping (payload cut to 125 bytes).
    pub fn ping(&mut self, payload: &[u8]) -> SendStatus {
        let payload = &payload[..payload.len().min(125)];
        self.session
            .send_frame(self.shared, OpCode::Ping, payload, false)
    }

    /// Starts the closing handshake: sends a close frame; [`Handler::on_close`]
    /// follows when the peer answers (or after the close timeout).
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        self.session.close(self.shared, code, reason);
    }

    /// Aborts the connection at once, without a close frame.
    pub fn terminate(&mut self) {
        self.session.terminate(self.shared);
    }

    /// Bytes queued for this connection, not counting the kernel's socket buffer.
    pub fn buffered_amount(&self) -> usize {
        self.session.outbox.len()
    }

    /// Subscribes to a topic. Returns false if already subscribed.
    pub fn subscribe(&mut self, topic: &str) -> bool {
        self.shared.subscribe(self.session, topic)
    }

    /// Unsubscribes from a topic. Returns false if not subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        self.shared.unsubscribe(self.session, topic)
    }

    /// Whether this connection is subscribed to `topic`.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.shared.is_subscribed(self.session, topic)
    }

    /// Publishes to every subscriber of `topic` on every worker, this connection
    /// included if subscribed. The frame is encoded once and shared.
    pub fn publish(&mut self, topic: &str, message: Message<'_>) {
        self.shared.publish(topic, PreparedMessage::new(message));
    }

    /// Publishes a prepared message.
    pub fn publish_prepared(&mut self, topic: &str, message: &PreparedMessage) {
        self.shared.publish(topic, message.clone());
    }
}
