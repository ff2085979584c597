//! Upgrades decided later, on any thread: [`crate::Upgrade::defer`] leaves a
//! connection in its HTTP phase while the application asks another service
//! (say, to check a token). The application gets a [`PendingUpgrade`]: an
//! owned copy of the request and a way back to the worker, which it completes
//! from any thread; the decision travels as a command ([`Command::Decide`])
//! and the worker answers the request then, as if `on_upgrade` had just
//! returned it.
//!
//! Who decides first wins, through one atomic the two sides share: the
//! application's decision, the handshake timeout (503, and the socket closes),
//! or the client going away (its slot is freed at once). A decision that
//! comes too late gets an [`UpgradeError`]. Bytes the client sends while the
//! decision is pending (frames right behind its request) are kept, up to
//! [`HELD_MAX`], and read as frames once it is accepted.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use super::command::{Command, Mailbox};
use crate::proto::deflate::Negotiated;
use crate::proto::handshake::UpgradeRequest;
use crate::types::{ConnId, HttpResponse, Upgrade};

/// Most bytes kept from a client while its upgrade is pending: frames it sent
/// right behind its request. Past it the client is refused (503).
pub(crate) const HELD_MAX: usize = 64 << 10;

/// The pending upgrade waits for a decision.
const PENDING: u8 = 0;
/// The application decided; its decision is on its way to the worker.
const DECIDED: u8 = 1;
/// The handshake timeout passed first: the client got 503.
const EXPIRED: u8 = 2;
/// The client went away first (or the server shut down).
const GONE: u8 = 3;

/// Why a [`PendingUpgrade`] could not be completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// The handshake timeout passed before the decision: the client was
    /// answered `503 Service Unavailable` and its socket closed.
    #[error("the upgrade was not decided within the handshake timeout")]
    Expired,
    /// The client disconnected (or the server stopped) before the decision.
    #[error("the client is gone")]
    Gone,
}

/// An upgrade request whose answer [`crate::Handler::on_upgrade`] deferred
/// ([`Upgrade::defer`]), handed to [`crate::Handler::on_upgrade_deferred`].
/// It owns a copy of what the request said, and is `Send`: complete it from
/// any thread with [`Self::accept`], [`Self::complete`] or [`Self::reject`].
/// The handshake timeout still runs; dropped undecided, it answers
/// `500 Internal Server Error`.
pub struct PendingUpgrade<U> {
    id: ConnId,
    request: OwnedRequest,
    state: Arc<AtomicU8>,
    mailbox: Option<Mailbox>,
    // The data is only passed through: a pending upgrade is `Send` whatever
    // `U` is, and `accept` asks `U: Send` of what it sends.
    _data: PhantomData<fn(U)>,
}

/// What a pending upgrade's request said, owned.
#[derive(Debug, Clone)]
struct OwnedRequest {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    protocols: Vec<String>,
    peer: SocketAddr,
}

impl<U> fmt::Debug for PendingUpgrade<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingUpgrade")
            .field("id", &self.id)
            .field("path", &self.request.path)
            .field("peer", &self.request.peer)
            .finish_non_exhaustive()
    }
}

impl<U> PendingUpgrade<U> {
    /// The connection this upgrade would open.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The request's method (`GET`).
    pub fn method(&self) -> &str {
        &self.request.method
    }

    /// The request's path, without the query.
    pub fn path(&self) -> &str {
        &self.request.path
    }

    /// The query string, without `?`.
    pub fn query(&self) -> Option<&str> {
        self.request.query.as_deref()
    }

    /// The first value of header `name` (any case), if sent and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header, in order (values that are not UTF-8 are left out).
    pub fn headers(&self) -> &[(String, String)] {
        &self.request.headers
    }

    /// The subprotocols the client offered, in its order: the candidates for
    /// [`Upgrade::protocol`].
    pub fn protocols(&self) -> &[String] {
        &self.request.protocols
    }

    /// The client's address (after a PROXY header, the one it gave).
    pub fn peer_addr(&self) -> SocketAddr {
        self.request.peer
    }

    /// Claims the decision: false if the timeout or the client came first.
    fn claim(&self) -> Result<(), UpgradeError> {
        match self
            .state
            .compare_exchange(PENDING, DECIDED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(()),
            Err(EXPIRED) => Err(UpgradeError::Expired),
            Err(_) => Err(UpgradeError::Gone),
        }
    }

    /// Sends `decision` to the worker, once claimed.
    fn send(mut self, decision: Box<dyn Any + Send>) -> Result<(), UpgradeError> {
        self.claim()?;
        let id = self.id;
        match self.mailbox.take() {
            Some(mailbox) if mailbox.send(Command::Decide { id, decision }) => Ok(()),
            _ => Err(UpgradeError::Gone),
        }
    }
}

impl<U: Send + 'static> PendingUpgrade<U> {
    /// Accepts with this user data (no subprotocol, no extra headers, the
    /// server's rate limit).
    pub fn accept(self, data: U) -> Result<(), UpgradeError> {
        self.complete(Upgrade::accept(data))
    }

    /// Refuses with this status and a short text body.
    pub fn reject(self, status: u16, body: &str) -> Result<(), UpgradeError> {
        self.complete(Upgrade::reject(status, body))
    }

    /// Answers as `on_upgrade` would have: [`Upgrade::accept`] with its
    /// options, or [`Upgrade::reject`]. ([`Upgrade::defer`] again is taken as
    /// a refusal: 500.)
    pub fn complete(self, upgrade: Upgrade<U>) -> Result<(), UpgradeError> {
        let upgrade = match upgrade {
            Upgrade::Defer => Upgrade::Reject(HttpResponse::text(500, "upgrade deferred twice\n")),
            other => other,
        };
        self.send(Box::new(upgrade))
    }
}

impl<U> Drop for PendingUpgrade<U> {
    fn drop(&mut self) {
        // Left undecided: the client is answered now rather than at the
        // timeout.
        let Some(mailbox) = self.mailbox.take() else {
            return;
        };
        if self.claim().is_ok() {
            let response = HttpResponse::text(500, "upgrade left undecided\n");
            let decision: Box<dyn Any + Send> = Box::new(Undecided(response));
            mailbox.send(Command::Decide {
                id: self.id,
                decision,
            });
        }
    }
}

/// The decision a [`PendingUpgrade`] dropped undecided sends (it cannot name
/// `Upgrade<U>` where `U` is not `Send`).
struct Undecided(HttpResponse);

/// A decision as the worker reads it back from [`Command::Decide`]: the
/// handler's data type, or a refusal.
pub(crate) fn decision<U: 'static>(decision: Box<dyn Any + Send>) -> Upgrade<U> {
    match decision.downcast::<Upgrade<U>>() {
        Ok(upgrade) => *upgrade,
        Err(other) => match other.downcast::<Undecided>() {
            Ok(undecided) => Upgrade::Reject(undecided.0),
            Err(_) => Upgrade::Reject(HttpResponse::text(500, "invalid upgrade decision\n")),
        },
    }
}

/// The worker's side of a pending upgrade, kept with the connection: what it
/// needs to answer the request once decided.
#[derive(Debug)]
pub(crate) struct Pending {
    state: Arc<AtomicU8>,
    /// The client's `Sec-WebSocket-Key`.
    pub key: String,
    /// The subprotocols it offered (a chosen one must be among them).
    pub protocols: Vec<String>,
    /// permessage-deflate as it would be negotiated.
    pub negotiated: Option<Negotiated>,
    /// Bytes received since (frames behind the request).
    pub held: Vec<u8>,
}

impl Pending {
    /// The timeout came: true if it came first (the client is to get 503),
    /// false if a decision is already on its way.
    pub fn expire(&self) -> bool {
        self.state
            .compare_exchange(PENDING, EXPIRED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The client went away (or the server is stopping): a later decision
    /// gets [`UpgradeError::Gone`]. False if a decision came first (it is on
    /// its way, and will find the connection gone).
    pub fn abandon(&self) -> bool {
        self.state
            .compare_exchange(PENDING, GONE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether `protocol` is one the client offered.
    pub fn offers(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p == protocol)
    }
}

/// The two sides of a new pending upgrade for connection `id`: the worker's
/// and the application's.
pub(crate) fn pending<U>(
    id: ConnId,
    request: &UpgradeRequest<'_>,
    peer: SocketAddr,
    negotiated: Option<Negotiated>,
    mailbox: Option<Mailbox>,
) -> (Pending, PendingUpgrade<U>) {
    let state = Arc::new(AtomicU8::new(PENDING));
    let protocols: Vec<String> = request.protocols().map(str::to_owned).collect();
    let owned = OwnedRequest {
        method: request.method().to_owned(),
        path: request.path().to_owned(),
        query: request.query().map(str::to_owned),
        headers: request
            .headers()
            .filter_map(|(name, value)| {
                std::str::from_utf8(value)
                    .ok()
                    .map(|value| (name.to_owned(), value.to_owned()))
            })
            .collect(),
        protocols: protocols.clone(),
        peer,
    };
    let worker_side = Pending {
        state: state.clone(),
        key: request.key().to_owned(),
        protocols,
        negotiated,
        held: Vec::new(),
    };
    let application_side = PendingUpgrade {
        id,
        request: owned,
        state,
        mailbox,
        _data: PhantomData,
    };
    (worker_side, application_side)
}
