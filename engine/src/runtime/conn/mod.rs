//! One WebSocket stream's life as explicit transitions between phases, its
//! send queue, and the [`Link`] that callbacks act on.
//!
//! ```text
//! Handshake --open--> Open --start_close--> Closing
//!     |                 |                      |
//!     +-------end-------+---------end----------+--> Ended --(socket closed)--> released
//! ```
//!
//! [`Link::end`] is the only way into `Ended`; it queues the `on_close` report
//! (once, and only for a connection that was opened) and tells the backend what
//! to do with the socket once the queue is flushed ([`Finish`]). Its sends are
//! [`send`].

mod send;

use std::net::SocketAddr;

use bytes::Bytes;

use super::deferred::Pending;
pub(crate) use super::direct::Direct;
use super::peer::PeerAddr;
use super::ratelimit::Limiter;
use super::shared::{Closed, Shared};
use crate::proto::close::CloseCode;
use crate::proto::error::ProtocolError;
use crate::proto::session::Session;
use crate::transport::outbox::Outbox;
use crate::types::{CloseCause, ConnId, TlsError};
pub(crate) use send::DIRECT_MIN;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Reading the upgrade request.
    Handshake,
    /// Not a WebSocket: the socket speaks HTTP/2 and carries streams (each a
    /// connection of its own in the worker); it ends as any socket does.
    Carrier,
    /// WebSocket open.
    Open,
    /// We sent a close frame and wait for the peer's.
    Closing,
    /// Done with WebSocket: flush what is queued, then do what [`Finish`] says;
    /// whatever the peer still sends is discarded.
    Ended,
}

/// What the connection asks of its backend once its queue is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// Keep the socket.
    None,
    /// Shut down the write side (graceful end), then wait for the peer's EOF
    /// or the close timeout.
    ShutdownWrite,
    /// Close the socket (the peer has closed its side).
    Close,
    /// Close the socket now, queued bytes or not.
    Abort,
}

/// Why we started closing, for the report when the connection ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalClose {
    pub cause: CloseCause,
    pub code: CloseCode,
}

/// The part of a connection a [`crate::WebSocket`] handle reaches.
#[derive(Debug)]
pub(crate) struct Link<U> {
    pub id: ConnId,
    /// The peer's address (the client's, after a PROXY header).
    peer: PeerAddr,
    pub outbox: Outbox,
    /// The WebSocket protocol state: close handshake, permessage-deflate.
    pub session: Session,
    phase: Phase,
    finish: Finish,
    /// Listed in the worker's flush list this turn.
    listed: bool,
    /// A flush left bytes behind: the socket is not keeping up; on_drain fires
    /// when the queue empties.
    pub stalled: bool,
    /// Set when opened, taken when the end is reported.
    data: Option<U>,
    /// A PROXY protocol header is still to be read (handshake only).
    pub proxy: ProxyExpected,
    /// The HTTP it speaks: HTTP/1.1, or HTTP/2 (by prior knowledge or
    /// ALPN) before its first request; or it is a stream carried by an
    /// HTTP/2 socket, whose responses are HEADERS frames, not bytes in its
    /// queue. One byte, where the link has one spare.
    pub http: Http,
    /// The phase its timer's deadline was set for (a new phase gets a new
    /// deadline): the timer's, kept here beside the phase, where a byte is
    /// free, so that the timer is four words.
    pub deadline_phase: Phase,
    /// What only some phases hold, behind one pointer.
    extra: Option<Box<Extra>>,
}

/// What a connection expects of a PROXY protocol header before its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyExpected {
    /// Nothing (the listener does not use it, or the header was read).
    No,
    /// A trusted source: a header may come first.
    Optional,
    /// A trusted source: a header must come first.
    Required,
    /// An untrusted source on an optional listener: a header closes it.
    Refused,
}

/// The HTTP a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Http {
    /// HTTP/1.1 only.
    V1,
    /// The HTTP/2 preface makes it an HTTP/2 socket (prior knowledge, on a
    /// plain listener); else HTTP/1.1.
    V2Allowed,
    /// The client chose HTTP/2 by ALPN: the preface must come.
    V2Required,
    /// A stream carried by an HTTP/2 socket.
    V2Stream,
}

/// State a connection holds only in one phase, kept behind one pointer so that
/// an idle connection pays 8 bytes for all of it.
#[derive(Debug)]
enum Extra {
    /// Handshake: bytes of an upgrade request cut by the end of a read.
    Head(Vec<u8>),
    /// Handshake: an upgrade whose decision was deferred.
    Pending(Pending),
    /// Open: its topics and its rate limit.
    Open(OpenExtra),
}

#[derive(Debug, Default)]
struct OpenExtra {
    /// Ids of the topics it subscribes to on its worker.
    topics: Vec<u32>,
    limiter: Option<Limiter>,
    /// Bytes read but not parsed while the rate limit is spent (at most what
    /// the backend read before the pause took effect).
    held: Vec<u8>,
    /// Why we started closing (Open -> Closing), for the report at the end:
    /// here, not in the link, because only a closing connection has one.
    local: Option<LocalClose>,
}

impl<U> Link<U> {
    pub fn new(id: ConnId, peer: SocketAddr) -> Self {
        Self {
            id,
            peer: PeerAddr::from(peer),
            outbox: Outbox::default(),
            session: Session::new(),
            phase: Phase::Handshake,
            finish: Finish::None,
            listed: false,
            stalled: false,
            data: None,
            proxy: ProxyExpected::No,
            http: Http::V1,
            deadline_phase: Phase::Handshake,
            extra: None,
        }
    }

    pub fn key(&self) -> usize {
        self.id.key()
    }

    /// A stream carried by an HTTP/2 socket.
    pub fn carried(&self) -> bool {
        self.http == Http::V2Stream
    }

    /// The peer's address (the client's, after a PROXY header).
    pub fn peer(&self) -> SocketAddr {
        self.peer.into()
    }

    /// Replaces the peer's address with the one a PROXY header gave.
    pub fn set_peer(&mut self, peer: SocketAddr) {
        self.peer = PeerAddr::from(peer);
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn finish(&self) -> Finish {
        self.finish
    }

    /// Open or closing: frames are still read and callbacks still run.
    pub fn reading_frames(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Closing) && self.finish != Finish::Abort
    }

    /// The code we sent when we started closing (1006 if we did not).
    pub fn local_code(&self) -> CloseCode {
        self.local().map_or(CloseCode::ABNORMAL, |l| l.code)
    }

    /// Why we started closing, else `cause`.
    pub fn cause_or(&self, cause: CloseCause) -> CloseCause {
        self.local().map_or(cause, |l| l.cause)
    }

    pub fn data(&self) -> &U {
        self.data
            .as_ref()
            .expect("user data lives while the connection is open")
    }

    pub fn data_mut(&mut self) -> &mut U {
        self.data
            .as_mut()
            .expect("user data lives while the connection is open")
    }

    /// Takes the stashed start of an upgrade request.
    pub fn take_head(&mut self) -> Option<Vec<u8>> {
        match self.extra.take().map(|extra| *extra) {
            Some(Extra::Head(head)) => Some(head),
            other => {
                self.extra = other.map(Box::new);
                None
            }
        }
    }

    /// Keeps the start of an upgrade request until more arrives.
    pub fn stash_head(&mut self, head: Vec<u8>) {
        self.extra = Some(Box::new(Extra::Head(head)));
    }

    /// Handshake -> Carrier: the socket speaks HTTP/2 from `start` (its
    /// preface and what followed in the same read), which is kept for the
    /// HTTP/2 codec the worker gives the socket at the end of the read.
    pub fn carry(&mut self, start: Vec<u8>) {
        debug_assert_eq!(self.phase, Phase::Handshake);
        self.phase = Phase::Carrier;
        self.stash_head(start);
    }

    /// Bytes of a socket that just became HTTP/2 in the same read: after
    /// what [`Self::carry`] kept.
    pub fn stash_more(&mut self, bytes: &[u8]) {
        match self.extra.as_deref_mut() {
            Some(Extra::Head(head)) => head.extend_from_slice(bytes),
            _ => self.stash_head(bytes.to_vec()),
        }
    }

    /// Waits for a deferred decision on its upgrade (see `deferred`).
    pub fn set_pending(&mut self, pending: Pending) {
        self.extra = Some(Box::new(Extra::Pending(pending)));
    }

    /// The deferred upgrade waiting for a decision, if any.
    pub fn pending_mut(&mut self) -> Option<&mut Pending> {
        match self.extra.as_deref_mut() {
            Some(Extra::Pending(pending)) => Some(pending),
            _ => None,
        }
    }

    /// Takes the deferred upgrade (decided, timed out or abandoned): its slot
    /// is free.
    pub fn take_pending(&mut self, shared: &mut Shared<U>) -> Option<Pending> {
        match self.extra.take().map(|extra| *extra) {
            Some(Extra::Pending(pending)) => {
                shared.pending_upgrades -= 1;
                Some(pending)
            }
            other => {
                self.extra = other.map(Box::new);
                None
            }
        }
    }

    fn local(&self) -> Option<LocalClose> {
        self.open_extra().and_then(|open| open.local)
    }

    fn open_extra(&self) -> Option<&OpenExtra> {
        match self.extra.as_deref() {
            Some(Extra::Open(open)) => Some(open),
            _ => None,
        }
    }

    /// The open phase's state, made on first use.
    fn open_extra_mut(&mut self) -> &mut OpenExtra {
        if !matches!(self.extra.as_deref(), Some(Extra::Open(_))) {
            self.extra = Some(Box::new(Extra::Open(OpenExtra::default())));
        }
        match self.extra.as_deref_mut() {
            Some(Extra::Open(open)) => open,
            _ => unreachable!("just set"),
        }
    }

    /// Ids of the topics this connection subscribes to.
    pub fn topics(&self) -> &[u32] {
        self.open_extra().map_or(&[], |open| &open.topics)
    }

    /// The topic ids, made on first use.
    pub fn topics_mut(&mut self) -> &mut Vec<u32> {
        &mut self.open_extra_mut().topics
    }

    /// Takes every topic id, and the rate limiter with them: the connection
    /// has ended (the pointer is freed).
    pub fn take_topics(&mut self) -> Vec<u32> {
        match self.extra.take().map(|extra| *extra) {
            Some(Extra::Open(open)) => open.topics,
            other => {
                self.extra = other.map(Box::new);
                Vec::new()
            }
        }
    }

    /// Sets the connection's rate limiter (`None`: unlimited, no memory).
    pub fn set_limiter(&mut self, limiter: Option<Limiter>) {
        match limiter {
            Some(limiter) => self.open_extra_mut().limiter = Some(limiter),
            None => {
                if let Some(Extra::Open(open)) = self.extra.as_deref_mut() {
                    open.limiter = None;
                }
            }
        }
    }

    /// The rate limiter, if the connection has one.
    pub fn limiter(&mut self) -> Option<&mut Limiter> {
        match self.extra.as_deref_mut() {
            Some(Extra::Open(open)) => open.limiter.as_mut(),
            _ => None,
        }
    }

    /// Keeps bytes to parse once the rate limit allows (after what it holds).
    pub fn hold_bytes(&mut self, bytes: &[u8]) {
        self.open_extra_mut().held.extend_from_slice(bytes);
    }

    /// Whether bytes read while its reading was paused wait to be parsed.
    pub fn holds_bytes(&self) -> bool {
        self.open_extra().is_some_and(|open| !open.held.is_empty())
    }

    /// The bytes held (read while its reading was paused), not parsed yet.
    pub fn held(&self) -> &[u8] {
        self.open_extra().map_or(&[], |open| &open.held)
    }

    /// Takes the bytes held back by the rate limit.
    pub fn take_held(&mut self) -> Vec<u8> {
        match self.extra.as_deref_mut() {
            Some(Extra::Open(open)) => std::mem::take(&mut open.held),
            _ => Vec::new(),
        }
    }

    /// Its rate limit was spent: what it receives waits (its socket's gate
    /// closes at the turn's end).
    pub fn rate_limited(&self) -> bool {
        self.open_extra()
            .and_then(|open| open.limiter.as_ref())
            .is_some_and(Limiter::paused)
    }

    /// Puts the connection on the worker's flush list (once per turn).
    pub fn mark(&mut self, flush: &mut Vec<usize>) {
        if !self.listed {
            self.listed = true;
            flush.push(self.key());
        }
    }

    /// Taken off the flush list: the backend is writing it now.
    pub fn unmark(&mut self) {
        self.listed = false;
    }

    // ---- transitions ----

    /// Handshake -> Open: the upgrade was accepted with this data and session.
    pub fn open(&mut self, data: U, session: Session) {
        debug_assert_eq!(self.phase, Phase::Handshake);
        self.session = session;
        self.data = Some(data);
        self.phase = Phase::Open;
    }

    /// Open -> Closing: queues our close frame; the peer's reply (or the close
    /// timeout) ends the connection.
    pub fn start_close(
        &mut self,
        shared: &mut Shared<U>,
        code: CloseCode,
        reason: &str,
        cause: CloseCause,
    ) {
        if self.phase != Phase::Open {
            return;
        }
        if let Some(frame) = self.session.close(&mut shared.endpoint, code, reason) {
            self.outbox.push_frame(&mut shared.pool, &frame);
            self.mark(&mut shared.flush);
        }
        self.open_extra_mut().local = Some(LocalClose { cause, code });
        self.phase = Phase::Closing;
    }

    /// Any phase -> Ended. Reports the end to `on_close` (once, if the
    /// connection was opened) with `code`, `reason` and `cause`, leaves its
    /// topics, and asks the backend for `finish` after the flush (an abort
    /// already asked for stays an abort).
    pub fn end(
        &mut self,
        shared: &mut Shared<U>,
        finish: Finish,
        code: CloseCode,
        reason: &str,
        cause: CloseCause,
    ) {
        self.phase = Phase::Ended;
        if self.finish != Finish::Abort {
            self.finish = finish;
        }
        if let Some(pending) = self.take_pending(shared) {
            // Ended before its decision: the client went away (or the server
            // is stopping); a decision now gets `UpgradeError::Gone`.
            if pending.abandon() {
                shared.counters.deferred_gone += 1;
            }
        }
        let ids = self.take_topics();
        shared.topics.leave_all(ids, self.key());
        if let Some(data) = self.data.take() {
            shared.closed.push(Closed {
                id: self.id,
                data,
                code,
                reason: reason.to_owned(),
                cause,
            });
        }
        self.mark(&mut shared.flush);
    }

    /// The peer broke the protocol: our close frame with the error's code, then
    /// the end.
    pub fn fail(&mut self, shared: &mut Shared<U>, error: ProtocolError) {
        let code = error.close_code();
        let reason = error.to_string();
        if let Some(frame) = self.session.close(&mut shared.endpoint, code, &reason) {
            self.outbox.push_frame(&mut shared.pool, &frame);
        }
        self.end(
            shared,
            Finish::ShutdownWrite,
            code,
            &reason,
            CloseCause::Protocol(error),
        );
    }

    /// The byte stream ended: what is queued still goes to a peer that only
    /// shut down its side (our close reply, say), then the socket is closed.
    pub fn hang_up(&mut self, shared: &mut Shared<U>, eof: bool) {
        let finish = if eof && !self.outbox.is_empty() {
            Finish::Close
        } else {
            Finish::Abort
        };
        let cause = self.cause_or(CloseCause::Reset);
        self.end(shared, finish, CloseCode::ABNORMAL, "", cause);
    }

    /// The peer's close_notify (TLS): nothing more comes, as after an EOF, but
    /// the stream still takes what is queued and then our close_notify (the
    /// flush sends it before the socket closes, as for any graceful end).
    pub fn closed_by_tls_peer(&mut self, shared: &mut Shared<U>) {
        let cause = self.cause_or(CloseCause::Reset);
        self.end(shared, Finish::Close, CloseCode::ABNORMAL, "", cause);
    }

    /// The TLS layer failed: what is queued for the wire (rustls's alert, or
    /// the refusal of a plain HTTP request) goes out, then the socket closes.
    pub fn fail_tls(&mut self, shared: &mut Shared<U>, error: TlsError) {
        let cause = self.cause_or(CloseCause::Tls(error));
        self.outbox.clear(&mut shared.pool);
        self.end(
            shared,
            Finish::Close,
            CloseCode::ABNORMAL,
            &error.to_string(),
            cause,
        );
    }

    /// A connection handed over whose data the application refused: our
    /// close frame (1012) after what it had queued, then the end. It was
    /// never opened here, so nothing is reported.
    pub fn fail_handover(&mut self, shared: &mut Shared<U>) {
        let code = CloseCode::SERVICE_RESTART;
        let reason = "service restart";
        if let Some(frame) = self.session.close(&mut shared.endpoint, code, reason) {
            self.outbox.push_frame(&mut shared.pool, &frame);
        }
        self.end(
            shared,
            Finish::ShutdownWrite,
            code,
            reason,
            CloseCause::Shutdown,
        );
    }

    /// Aborts at once, without a close frame.
    pub fn terminate(&mut self, shared: &mut Shared<U>) {
        let cause = self.cause_or(CloseCause::Terminated);
        self.end(shared, Finish::Abort, CloseCode::ABNORMAL, "", cause);
    }

    /// The write side was shut down after the flush: wait for the peer's EOF.
    pub fn write_side_shut(&mut self) {
        if self.finish == Finish::ShutdownWrite {
            self.finish = Finish::None;
        }
    }

    // ---- sending ----

    /// The application asks to close (a code peers may not send becomes 1000).
    pub fn close(&mut self, shared: &mut Shared<U>, code: CloseCode, reason: &str) {
        let code = if code.is_valid_on_wire() {
            code
        } else {
            CloseCode::NORMAL
        };
        self.start_close(shared, code, reason, CloseCause::Local);
    }
}

/// A published frame compressed once per shared window (9..=15), reused for
/// every subscriber that negotiated that window.
pub(crate) type SharedFrames = [Option<Bytes>; 7];
