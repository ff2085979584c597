//! The HTTP phase of a connection, as decide then complete: a PROXY protocol
//! header where the listener expects one, then the upgrade request (either
//! possibly cut across reads), parsed once; the handler's answer (101 with the
//! negotiated extension, a refusal, a plain route such as `/health` after the
//! server's own metrics route, or a decision deferred to any thread:
//! [`super::deferred`]); then the WebSocket frames that came behind the
//! request. Each step says what became of the bytes ([`Outcome`]). A socket
//! that opens with the HTTP/2 preface becomes a carrier of streams instead;
//! each of its streams comes back here with its request ([`requested`]), and
//! is answered with a response head for its socket's codec rather than bytes.

use super::conn::{Finish, Http, Link, ProxyExpected};
use super::deferred::{self, HELD_MAX};
use super::deflate;
use super::handler::{Handler, WebSocket};
use super::metrics::Format;
use super::ratelimit::Limiter;
use super::receive;
use super::shared::{Head, Shared};
use super::stream::Stream;
use crate::proto::close::CloseCode;
use crate::proto::deflate::Negotiated;
use crate::proto::handshake::{
    HandshakeError, HeaderStorage, UpgradeRequest, WriteError, extended_connect, parse_head,
    write_accept_response, write_reject_response,
};
use crate::proto::proxy::{self, ProxyHeader, Start};
use crate::proto::session::InflateBuffer;
use crate::transport::h2::{PREFACE, Request};
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
    /// The socket speaks HTTP/2: it carries streams from now on.
    Http2,
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
    let http = stream.link.http;
    let preface = PREFACE.starts_with(&rest[..rest.len().min(PREFACE.len())]);
    let read = match http {
        Http::V1 | Http::V2Stream => read_request(handler, shared, &mut stream.link, rest),
        // The preface, whole: the socket carries streams from here on, and
        // its codec reads these bytes from the start.
        _ if preface && rest.len() >= PREFACE.len() => {
            shared.counters.http2_connections += 1;
            stream.link.carry(rest.to_vec());
            return Outcome::Http2;
        }
        _ if preface => None,
        Http::V2Allowed => read_request(handler, shared, &mut stream.link, rest),
        Http::V2Required => {
            // It chose HTTP/2 by ALPN and does not speak it.
            log::debug!(
                "connection {} from {} closed: no HTTP/2 preface after ALPN h2",
                stream.link.id,
                stream.link.peer()
            );
            stream.link.end(
                shared,
                Finish::Abort,
                CloseCode::ABNORMAL,
                "",
                CloseCause::Reset,
            );
            return Outcome::Responded;
        }
    };
    let Some((consumed, outcome)) = read else {
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
            route(handler, shared, link, &HttpRequest::new(&head));
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
    let written = if link.carried() {
        accept_carried(
            link,
            shared,
            protocol.as_deref(),
            extensions,
            headers,
            request,
        )
    } else {
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
        if written.is_ok() {
            link.outbox.push_copy(&mut shared.pool, &out, b"");
            link.mark(&mut shared.flush);
        }
        written
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

/// An accepted upgrade of a carried stream: its `200` head (RFC 8441 section
/// 5: the subprotocol and extensions as over HTTP/1.1, no accept key) goes to
/// its socket's codec.
fn accept_carried<U>(
    link: &mut Link<U>,
    shared: &mut Shared<U>,
    protocol: Option<&str>,
    extensions: Option<String>,
    headers: Vec<(String, String)>,
    request: &Answering<'_>,
) -> Result<(), WriteError> {
    if let Some(p) = protocol {
        if !(request.offered)(p) {
            return Err(WriteError::ProtocolNotOffered(p.to_owned()));
        }
    }
    let mut fields = Vec::with_capacity(headers.len() + 2);
    if let Some(p) = protocol {
        fields.push(("sec-websocket-protocol".to_owned(), p.to_owned()));
    }
    if let Some(e) = extensions {
        fields.push(("sec-websocket-extensions".to_owned(), e));
    }
    fields.extend(headers);
    shared.heads.push(Head {
        id: link.id,
        status: 200,
        headers: fields,
        end: false,
    });
    link.mark(&mut shared.flush);
    Ok(())
}

/// A plain HTTP request: the metrics route if it is that, else the handler's
/// route, else 426 Upgrade Required.
fn route<H: Handler>(
    handler: &mut H,
    shared: &mut Shared<H::Data>,
    link: &mut Link<H::Data>,
    request: &HttpRequest<'_>,
) {
    if shared.config.metrics_route.as_deref() == Some(request.path) {
        return respond(link, shared, &metrics_response(shared, request));
    }
    match handler.on_http(request) {
        Some(response) => respond(link, shared, &response),
        None => refuse(link, shared, HandshakeError::UpgradeRequired),
    }
}

/// A request on a stream carried by an HTTP/2 socket (validated by its
/// codec): an extended CONNECT for `websocket` goes to `on_upgrade` as an
/// HTTP/1.1 upgrade would (RFC 8441), anything else to the routes.
/// `end_stream`: the request has no body (a WebSocket's must have one).
pub(crate) fn requested<H: Handler>(
    handler: &mut H,
    shared: &mut Shared<H::Data>,
    stream: &mut Stream<H::Data>,
    request: &Request,
    end_stream: bool,
) -> Outcome {
    let link = &mut stream.link;
    // The fields as the HTTP/1.1 path sees them, `host` from `:authority`.
    let authority = request.authority().unwrap_or("");
    let mut fields: Vec<httparse::Header<'_>> = Vec::with_capacity(request.fields().count() + 1);
    if request.field("host").is_none() && !authority.is_empty() {
        fields.push(httparse::Header {
            name: "host",
            value: authority.as_bytes(),
        });
    }
    fields.extend(
        request
            .fields()
            .map(|(name, value)| httparse::Header { name, value }),
    );
    let path = request.path().unwrap_or("");
    match (request.method(), request.protocol()) {
        ("CONNECT", Some(protocol)) if protocol.eq_ignore_ascii_case("websocket") => {
            if end_stream {
                refuse(link, shared, HandshakeError::Malformed);
                return Outcome::Responded;
            }
            match extended_connect(path, authority, &fields) {
                Ok(upgrade) => {
                    shared.counters.http2_websockets += 1;
                    decide(handler, shared, link, &upgrade)
                }
                Err(error) => {
                    refuse(link, shared, error);
                    Outcome::Responded
                }
            }
        }
        ("CONNECT", _) => {
            reject(
                link,
                shared,
                &HttpResponse::text(501, "only CONNECT with :protocol websocket is served\n"),
            );
            Outcome::Responded
        }
        (method, _) => {
            route(
                handler,
                shared,
                link,
                &HttpRequest::from_parts(method, path, &fields),
            );
            Outcome::Responded
        }
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
    if link.carried() {
        let mut response = HttpResponse::text(error.status(), &format!("{error}\n"));
        if error.status() == 426 {
            response
                .headers
                .push(("sec-websocket-version".into(), "13".into()));
        }
        return respond_carried(link, shared, &response);
    }
    let mut out = Vec::new();
    error.write_response(&mut out);
    end_with(link, shared, &out);
}

/// A carried stream's response: its head to the socket's codec, its body
/// (sent as DATA within the peer's windows) in its queue; the stream ends
/// after it.
fn respond_carried<U>(link: &mut Link<U>, shared: &mut Shared<U>, response: &HttpResponse) {
    if !(200..=599).contains(&response.status) {
        log::warn!(
            "invalid HTTP response from the handler: status {}",
            response.status
        );
        return respond_carried(link, shared, &HttpResponse::text(500, "invalid response\n"));
    }
    let mut headers = response.headers.clone();
    headers.push(("content-length".into(), response.body.len().to_string()));
    shared.heads.push(Head {
        id: link.id,
        status: response.status,
        headers,
        end: response.body.is_empty(),
    });
    link.outbox.push_copy(&mut shared.pool, &response.body, b"");
    link.end(
        shared,
        Finish::ShutdownWrite,
        CloseCode::ABNORMAL,
        "",
        CloseCause::Reset,
    );
}

/// Answers with the handler's HTTP response (500 if it is invalid).
fn respond<U>(link: &mut Link<U>, shared: &mut Shared<U>, response: &HttpResponse) {
    if link.carried() {
        return respond_carried(link, shared, response);
    }
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
