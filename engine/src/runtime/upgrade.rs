//! The HTTP phase of a connection: a PROXY protocol header where the listener
//! expects one, then the upgrade request (either possibly cut across reads),
//! parsed once; the handler's answer (101 with the negotiated extension, a
//! refusal, or a plain route such as `/health`, after the server's own metrics
//! route); then the WebSocket frames that came behind the request.

use super::conn::{Conn, Finish, Link, ProxyExpected};
use super::deflate;
use super::handler::{Handler, WebSocket};
use super::metrics::Format;
use super::ratelimit::Limiter;
use super::receive;
use super::shared::Shared;
use crate::proto::close::CloseCode;
use crate::proto::handshake::{
    HandshakeError, HeaderStorage, RequestHead, UpgradeRequest, parse_head, write_reject_response,
};
use crate::proto::proxy::{self, ProxyHeader, Start};
use crate::proto::session::InflateBuffer;
use crate::types::{CloseCause, HttpRequest, HttpResponse, Upgrade};

/// Bytes received during the handshake: the request is read from them (with
/// what earlier reads left), answered, and any frames behind it are handled.
pub(crate) fn received<H: Handler>(
    handler: &mut H,
    shared: &mut Shared<H::Data>,
    inflated: &mut InflateBuffer,
    conn: &mut Conn<H::Data>,
    data: &mut [u8],
) {
    // The common case has the whole request in one read, parsed where it lies;
    // otherwise it is gathered in the connection's stash.
    let mut stash = conn.link.take_head();
    let buf: &mut [u8] = match stash.as_mut() {
        Some(head) => {
            head.extend_from_slice(data);
            head
        }
        None => data,
    };
    let start = match read_proxy_header(shared, &mut conn.link, buf) {
        ProxyRead::Done(consumed) => consumed,
        ProxyRead::Incomplete => {
            let head = match stash {
                Some(head) => head,
                None => data.to_vec(),
            };
            return conn.link.stash_head(head);
        }
        ProxyRead::Refused => return,
    };
    let rest = &mut buf[start..];
    if rest.is_empty() {
        return;
    }
    match read_request(handler, shared, &mut conn.link, rest) {
        None => {
            let head = match stash {
                Some(mut head) => {
                    head.drain(..start);
                    head
                }
                None => data[start..].to_vec(),
            };
            conn.link.stash_head(head);
        }
        Some(consumed) => {
            if consumed < rest.len() && conn.link.reading_frames() {
                // Frames that came with the request: queued (a rare case).
                receive::frames(handler, shared, inflated, conn, &mut rest[consumed..], None);
            }
        }
    }
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
                link.peer = source;
            }
            ProxyRead::Done(consumed)
        }
        Err(why) => {
            log::debug!("connection {} from {} closed: {why}", link.id, link.peer);
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

/// Answers the request if its head is complete: `Some(bytes it took)`.
fn read_request<H: Handler>(
    handler: &mut H,
    shared: &mut Shared<H::Data>,
    link: &mut Link<H::Data>,
    buf: &[u8],
) -> Option<usize> {
    let limits = shared.config.handshake_limits;
    let mut storage = HeaderStorage::new();
    let (head, consumed) = match parse_head(buf, &limits, &mut storage) {
        Ok(Some(found)) => found,
        Ok(None) => return None,
        Err(error) => {
            refuse(link, shared, error);
            return Some(buf.len());
        }
    };
    match head.upgrade() {
        Ok(request) => accept(handler, shared, link, &request),
        Err(HandshakeError::UpgradeRequired) => route(handler, shared, link, &head),
        Err(error) => refuse(link, shared, error),
    }
    Some(consumed)
}

/// Asks the handler; writes the 101 and opens the connection, or refuses.
fn accept<H: Handler>(
    handler: &mut H,
    shared: &mut Shared<H::Data>,
    link: &mut Link<H::Data>,
    request: &UpgradeRequest<'_>,
) {
    let negotiated = shared
        .deflate
        .as_ref()
        .and_then(|offer| crate::proto::deflate::negotiate(request.extensions(), offer));
    let (data, protocol, headers, rate_limit) = match handler.on_upgrade(request, link.peer) {
        Upgrade::Accept {
            data,
            protocol,
            headers,
            rate_limit,
        } => (data, protocol, headers, rate_limit),
        Upgrade::Reject(response) => {
            shared.counters.rejected.push(response.status);
            return respond(link, shared, &response);
        }
    };
    let extensions = negotiated.map(|n| n.header_value());
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mut out = Vec::new();
    if let Err(e) = request.write_accept(
        &mut out,
        protocol.as_deref(),
        extensions.as_deref(),
        &headers,
    ) {
        log::warn!(
            "upgrade of {} refused: the handler's answer is invalid: {e}",
            link.id
        );
        shared.counters.rejected.push(500);
        return respond(
            link,
            shared,
            &HttpResponse::text(500, "invalid upgrade response\n"),
        );
    }
    link.outbox.push_copy(&mut shared.pool, &out, b"");
    link.mark(&mut shared.flush);
    link.open(data, deflate::session(&shared.config, negotiated.as_ref()));
    let limit = rate_limit.unwrap_or(shared.config.rate_limit);
    link.set_limiter(Limiter::new(&limit, shared.now_ms));
    shared.counters.upgraded += 1;
    handler.on_open(&mut WebSocket::new(link, shared));
    if shared.shutting_down {
        link.start_close(
            shared,
            CloseCode::GOING_AWAY,
            "server shutdown",
            CloseCause::Shutdown,
        );
    }
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
