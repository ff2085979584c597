//! The HTTP phase of a connection, as decide then complete: a PROXY protocol
//! header where the listener expects one, then the upgrade request (either
//! possibly cut across reads), parsed once; the handler's answer (101 with the
//! negotiated extension, a refusal, a plain route such as `/health` after the
//! server's own metrics route, or a decision deferred to any thread:
//! [`super::deferred`]); then the WebSocket frames that came behind the
//! request. Each step says what became of the bytes ([`Outcome`]).

use super::conn::{Finish, Link, ProxyExpected};
use super::deferred::{self, HELD_MAX};
use super::deflate;
use super::handler::{Handler, WebSocket};
use super::metrics::Format;
use super::ratelimit::Limiter;
use super::receive;
use super::shared::Shared;
use super::stream::Stream;
use crate::proto::close::CloseCode;
use crate::proto::deflate::Negotiated;
use crate::proto::handshake::{
    HandshakeError, HeaderStorage, RequestHead, UpgradeRequest, WriteError, parse_head,
    write_accept_response, write_reject_response,
};
use crate::proto::proxy::{self, ProxyHeader, Start};
use crate::proto::session::InflateBuffer;
use crate::types::{CloseCause, HttpRequest, HttpResponse, Upgrade};

/// What the HTTP phase made of the bytes it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The request is not complete yet (its start is kept for the next read).
    NeedMore,
    /// Answered with a plain HTTP response (a route, a refusal) or dropped:
    /// the connection ends after it.
    Responded,
    /// The upgrade was accepted: the WebSocket is open.
    Opened,
    /// The decision was deferred: the connection waits for it.
    Deciding,
}

/// Bytes received during the handshake: the request is read from them (with
/// what earlier reads left), answered, and any frames behind it are handled
/// (or, while a deferred decision is pending, kept for after it).
pub(crate) fn received<H: Handler>(
    handler: &mut H,
    shared: &mut Shared<H::Data>,
    inflated: &mut InflateBuffer,
    stream: &mut Stream<H::Data>,
    data: &mut [u8],
) -> Outcome {
    if stream.link.pending_mut().is_some() {
        return hold(shared, &mut stream.link, data);
    }
    // The common case has the whole request in one read, parsed where it lies;
    // otherwise it is gathered in the connection's stash.
    let mut stash = stream.link.take_head();
    let buf: &mut [u8] = match stash.as_mut() {
        Some(head) => {
            head.extend_from_slice(data);
            head
        }
        None => data,
    };
    let start = match read_proxy_header(shared, &mut stream.link, buf) {
        ProxyRead::Done(consumed) => consumed,
        ProxyRead::Incomplete => {
            let head = match stash {
                Some(head) => head,
                None => data.to_vec(),
            };
            stream.link.stash_head(head);
            return Outcome::NeedMore;
        }
        ProxyRead::Refused => return Outcome::Responded,
    };
    let rest = &mut buf[start..];
    if rest.is_empty() {
        return Outcome::NeedMore;
    }
    let Some((consumed, outcome)) = read_request(handler, shared, &mut stream.link, rest) else {
        let head = match stash {
            Some(mut head) => {
                head.drain(..start);
                head
            }
            None => data[start..].to_vec(),
        };
        stream.link.stash_head(head);
        return Outcome::NeedMore;
    };
    let behind = &mut rest[consumed..];
    if !behind.is_empty() {
        match outcome {
            // Frames that came with the request: read now (a rare case).
            Outcome::Opened if stream.link.reading_frames() => {
                receive::frames(handler, shared, inflated, stream, behind, None);
            }
            Outcome::Deciding => return hold(shared, &mut stream.link, behind),
            _ => {}
        }
    }
    outcome
}

/// Keeps bytes that came while a deferred decision is pending, for after it
/// (at most [`HELD_MAX`]: past it the client gets 503).
fn hold<U>(shared: &mut Shared<U>, link: &mut Link<U>, data: &[u8]) -> Outcome {
    let Some(pending) = link.pending_mut() else {
        return Outcome::Responded;
    };
    if pending.held.len() + data.len() <= HELD_MAX {
        pending.held.extend_from_slice(data);
        return Outcome::Deciding;
    }
    if let Some(pending) = link.take_pending(shared) {
        if pending.abandon() {
            shared.counters.deferred_refused += 1;
        }
    }
    unavailable(
        link,
        shared,
        "too much data before the upgrade was decided\n",
    );
    Outcome::Responded
}

/// What became of the PROXY header a connection may owe.
enum ProxyRead {
    /// Read (or none expected, or none sent where optional): the request
    /// starts this many bytes in.
    Done(usize),
    /// More bytes are needed.
    Incomplete,
    /// Missing, malformed or untrusted: the connection is closed.
    Refused,
}

/// Reads the PROXY header at the start of `buf` where the listener expects
/// one; the connection then has the client's address as its peer.
fn read_proxy_header<U>(shared: &mut Shared<U>, link: &mut Link<U>, buf: &[u8]) -> ProxyRead {
    let expected = link.proxy;
    if expected == ProxyExpected::No {
        return ProxyRead::Done(0);
    }
    let outcome = match (proxy::start(buf), expected) {
        (Start::Unknown, _) => return ProxyRead::Incomplete,
        (Start::Other, ProxyExpected::Optional | ProxyExpected::Refused) => Ok(None),
        (Start::Header, ProxyExpected::Refused) => Err("a PROXY header from an untrusted source"),
        _ => match proxy::parse(buf) {
            Ok(None) => return ProxyRead::Incomplete,
            Ok(Some(found)) => Ok(Some(found)),
            Err(proxy::ProxyError::Missing) => Err("no PROXY header"),
            Err(proxy::ProxyError::TooLong) => Err("PROXY header too long"),
            Err(proxy::ProxyError::Malformed(_)) => Err("malformed PROXY header"),
        },
    };
    match outcome {
        Ok(None) => {
            link.proxy = ProxyExpected::No;
            ProxyRead::Done(0)
        }
        Ok(Some((header, consumed))) => {
            link.proxy = ProxyExpected::No;
            if let ProxyHeader::Proxied { source, .. } = header {
                link.set_peer(source);
            }
            ProxyRead::Done(consumed)
        }
        Err(why) => {
            log::debug!("connection {} from {} closed: {why}", link.id, link.peer());
            shared.counters.proxy_refused += 1;
            // No HTTP answer: the peer is not speaking HTTP to us, or is not
            // who it claims to be.
            link.end(
                shared,
                Finish::Abort,
                CloseCode::ABNORMAL,
                "",
                CloseCause::Reset,
            );
            ProxyRead::Refused
        }
    }
}

/// Answers the request if its head is complete: `Some(bytes it took, what
/// became of it)`.
fn read_request<H: Handler>(
    handler: &mut H,
    shared: &mut Shared<H::Data>,
    link: &mut Link<H::Data>,
    buf: &[u8],
) -> Option<(usize, Outcome)> {
    let limits = shared.config.handshake_limits;
    let mut storage = HeaderStorage::new();
    let (head, consumed) = match parse_head(buf, &limits, &mut storage) {
        Ok(Some(found)) => found,
        Ok(None) => return None,
        Err(error) => {
            refuse(link, shared, error);
            return Some((buf.len(), Outcome::Responded));
        }
    };
    let outcome = match head.upgrade() {
        Ok(request) => decide(handler, shared, link, &request),
        Err(HandshakeError::UpgradeRequired) => {
            route(handler, shared, link, &head);
            Outcome::Responded
        }
        Err(error) => {
            refuse(link, shared, error);
            Outcome::Responded
        }
    };
    Some((consumed, outcome))
}

/// Asks the handler: answers now, or defers the decision.
fn decide<H: Handler>(
    handler: &mut H,
    shared: &mut Shared<H::Data>,
    link: &mut Link<H::Data>,
    request: &UpgradeRequest<'_>,
) -> Outcome {
    let negotiated = shared
        .deflate
        .as_ref()
        .and_then(|offer| crate::proto::deflate::negotiate(request.extensions(), offer));
    match handler.on_upgrade(request, link.peer()) {
        Upgrade::Defer => defer(handler, shared, link, request, negotiated),
        upgrade => {
            let offered = |protocol: &str| request.offers_protocol(protocol);
            let request = Answering {
                key: request.key(),
                offered: &offered,
                negotiated: negotiated.as_ref(),
            };
            answer(handler, shared, link, upgrade, &request)
        }
    }
}

/// Keeps the request for a decision made later, on any thread (see
/// [`super::deferred`]); at most `max_pending_upgrades` wait per worker.
fn defer<H: Handler>(
    handler: &mut H,
    shared: &mut Shared<H::Data>,
    link: &mut Link<H::Data>,
    request: &UpgradeRequest<'_>,
    negotiated: Option<Negotiated>,
) -> Outcome {
    if shared.pending_upgrades >= shared.config.max_pending_upgrades {
        shared.counters.deferred_refused += 1;
        unavailable(link, shared, "too many upgrades waiting for a decision\n");
        return Outcome::Responded;
    }
    let (pending, application) =
        deferred::pending(link.id, request, link.peer(), negotiated, shared.mailbox());
    shared.pending_upgrades += 1;
    shared.counters.deferred += 1;
    link.set_pending(pending);
    handler.on_upgrade_deferred(application);
    Outcome::Deciding
}

/// A deferred upgrade's decision came: the request is answered as if
/// `on_upgrade` had just returned `upgrade`, and the frames kept while it
/// waited are read. `None` if the connection no longer waits (it timed out,
/// or the client went away).
pub(crate) fn decided<H: Handler>(
    handler: &mut H,
    shared: &mut Shared<H::Data>,
    inflated: &mut InflateBuffer,
    stream: &mut Stream<H::Data>,
    upgrade: Upgrade<H::Data>,
) -> Option<Outcome> {
    let pending = stream.link.take_pending(shared)?;
    match upgrade {
        Upgrade::Accept { .. } => shared.counters.deferred_accepted += 1,
        _ => shared.counters.deferred_rejected += 1,
    }
    let offered = |protocol: &str| pending.offers(protocol);
    let request = Answering {
        key: &pending.key,
        offered: &offered,
        negotiated: pending.negotiated.as_ref(),
    };
    let outcome = answer(handler, shared, &mut stream.link, upgrade, &request);
    let mut held = pending.held;
    if outcome == Outcome::Opened && !held.is_empty() && stream.link.reading_frames() {
        receive::frames(handler, shared, inflated, stream, &mut held, None);
    }
    Some(outcome)
}

/// A deferred upgrade was not decided within the handshake timeout: 503, and
/// the socket closes. False if its decision is already on its way.
pub(crate) fn expire<U>(shared: &mut Shared<U>, link: &mut Link<U>) -> bool {
    let Some(pending) = link.pending_mut() else {
        return false;
    };
    if !pending.expire() {
        return false;
    }
    link.take_pending(shared);
    shared.counters.deferred_expired += 1;
    unavailable(link, shared, "the upgrade was not decided in time\n");
    true
}

/// What answering an upgrade request needs of it, whether it is at hand or
/// was kept while its decision was deferred.
struct Answering<'a> {
    /// The client's `Sec-WebSocket-Key`.
    key: &'a str,
    /// Whether the client offered a subprotocol.
    offered: &'a dyn Fn(&str) -> bool,
    negotiated: Option<&'a Negotiated>,
}

/// Writes the 101 and opens the connection, or refuses, as `upgrade` says.
fn answer<H: Handler>(
    handler: &mut H,
    shared: &mut Shared<H::Data>,
    link: &mut Link<H::Data>,
    upgrade: Upgrade<H::Data>,
    request: &Answering<'_>,
) -> Outcome {
    let (data, protocol, headers, rate_limit) = match upgrade {
        Upgrade::Accept {
            data,
            protocol,
            headers,
            rate_limit,
        } => (data, protocol, headers, rate_limit),
        Upgrade::Reject(response) => {
            reject(link, shared, &response);
            return Outcome::Responded;
        }
        // A decision deferred again (only a completion can be): refused.
        Upgrade::Defer => {
            reject(
                link,
                shared,
                &HttpResponse::text(500, "upgrade deferred twice\n"),
            );
            return Outcome::Responded;
        }
    };
    let extensions = request.negotiated.map(|n| n.header_value());
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mut out = Vec::new();
    let written = match protocol.as_deref() {
        Some(p) if !(request.offered)(p) => Err(WriteError::ProtocolNotOffered(p.to_owned())),
        _ => write_accept_response(
            &mut out,
            request.key,
            protocol.as_deref(),
            extensions.as_deref(),
            &headers,
        ),
    };
    if let Err(e) = written {
        log::warn!(
            "upgrade of {} refused: the handler's answer is invalid: {e}",
            link.id
        );
        reject(
            link,
            shared,
            &HttpResponse::text(500, "invalid upgrade response\n"),
        );
        return Outcome::Responded;
    }
    link.outbox.push_copy(&mut shared.pool, &out, b"");
    link.mark(&mut shared.flush);
    link.open(data, deflate::session(&shared.config, request.negotiated));
    let limit = rate_limit.unwrap_or(shared.config.rate_limit);
    link.set_limiter(Limiter::new(&limit, shared.now_ms));
    shared.counters.upgraded += 1;
    shared.upgraded.push(link.key());
    handler.on_open(&mut WebSocket::new(link, shared));
    if shared.shutting_down {
        link.start_close(
            shared,
            CloseCode::GOING_AWAY,
            "server shutdown",
            CloseCause::Shutdown,
        );
    }
    Outcome::Opened
}

/// A plain HTTP request: the metrics route if it is that, else the handler's
/// route, else 426 Upgrade Required.
fn route<H: Handler>(
    handler: &mut H,
    shared: &mut Shared<H::Data>,
    link: &mut Link<H::Data>,
    head: &RequestHead<'_>,
) {
    let request = HttpRequest::new(head);
    if shared.config.metrics_route.as_deref() == Some(request.path) {
        return respond(link, shared, &metrics_response(shared, &request));
    }
    match handler.on_http(&request) {
        Some(response) => respond(link, shared, &response),
        None => refuse(link, shared, HandshakeError::UpgradeRequired),
    }
}

/// The server's metrics, in the format the `Accept` header asks for. Read from
/// every worker's published figures: no worker waits for it.
fn metrics_response<U>(shared: &Shared<U>, request: &HttpRequest<'_>) -> HttpResponse {
    if request.method != "GET" {
        let mut response = HttpResponse::text(405, "method not allowed\n");
        response.headers.push(("Allow".into(), "GET".into()));
        return response;
    }
    let format = Format::from_accept(request.header("accept"));
    HttpResponse {
        status: 200,
        headers: vec![("Content-Type".into(), format.content_type().into())],
        body: shared.metrics.render(format).into_bytes(),
    }
}

/// Answers 503 Service Unavailable, and the connection ends after it.
fn unavailable<U>(link: &mut Link<U>, shared: &mut Shared<U>, body: &str) {
    reject(link, shared, &HttpResponse::text(503, body));
}

/// Refuses the upgrade with `response`, counted by its status.
fn reject<U>(link: &mut Link<U>, shared: &mut Shared<U>, response: &HttpResponse) {
    shared.counters.rejected.push(response.status);
    respond(link, shared, response);
}

/// Answers an invalid request with its error's status.
fn refuse<U>(link: &mut Link<U>, shared: &mut Shared<U>, error: HandshakeError) {
    shared.counters.rejected.push(error.status());
    let mut out = Vec::new();
    error.write_response(&mut out);
    end_with(link, shared, &out);
}

/// Answers with the handler's HTTP response (500 if it is invalid).
fn respond<U>(link: &mut Link<U>, shared: &mut Shared<U>, response: &HttpResponse) {
    let headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mut out = Vec::new();
    if let Err(e) = write_reject_response(&mut out, response.status, &headers, &response.body) {
        log::warn!("invalid HTTP response from the handler: {e}");
        out.clear();
        let _ = write_reject_response(&mut out, 500, &[], b"invalid response\n");
    }
    end_with(link, shared, &out);
}

/// Queues an HTTP response and ends the connection after it.
fn end_with<U>(link: &mut Link<U>, shared: &mut Shared<U>, response: &[u8]) {
    link.outbox.push_copy(&mut shared.pool, response, b"");
    // Never opened: nothing is reported.
    link.end(
        shared,
        Finish::ShutdownWrite,
        CloseCode::ABNORMAL,
        "",
        CloseCause::Reset,
    );
}
