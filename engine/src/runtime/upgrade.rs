//! The HTTP phase of a connection: the upgrade request (possibly cut across
//! reads), parsed once; the handler's answer (101 with the negotiated
//! extension, a refusal, or a plain route such as `/health`); then the
//! WebSocket frames that came behind the request.

use super::conn::{Conn, Finish, Link};
use super::deflate;
use super::handler::{Handler, WebSocket};
use super::receive;
use super::shared::Shared;
use crate::proto::close::CloseCode;
use crate::proto::handshake::{
    HandshakeError, HeaderStorage, RequestHead, UpgradeRequest, parse_head, write_reject_response,
};
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
    match read_request(handler, shared, &mut conn.link, buf) {
        None => conn.link.stash_head(match stash {
            Some(head) => head,
            None => data.to_vec(),
        }),
        Some(consumed) => {
            if consumed < buf.len() && conn.link.reading_frames() {
                receive::frames(handler, shared, inflated, conn, &mut buf[consumed..]);
            }
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
    let (data, protocol, headers) = match handler.on_upgrade(request, link.peer) {
        Upgrade::Accept {
            data,
            protocol,
            headers,
        } => (data, protocol, headers),
        Upgrade::Reject(response) => return respond(link, shared, &response),
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
        return respond(
            link,
            shared,
            &HttpResponse::text(500, "invalid upgrade response\n"),
        );
    }
    link.outbox.push_copy(&mut shared.pool, &out, b"");
    link.mark(&mut shared.flush);
    link.open(data, deflate::session(&shared.config, negotiated.as_ref()));
    handler.on_open(&mut WebSocket::new(link, shared));
}

/// A plain HTTP request: the handler's route, else 426 Upgrade Required.
fn route<H: Handler>(
    handler: &mut H,
    shared: &mut Shared<H::Data>,
    link: &mut Link<H::Data>,
    head: &RequestHead<'_>,
) {
    match handler.on_http(&HttpRequest::new(head)) {
        Some(response) => respond(link, shared, &response),
        None => refuse(link, shared, HandshakeError::UpgradeRequired),
    }
}

/// Answers an invalid request with its error's status.
fn refuse<U>(link: &mut Link<U>, shared: &mut Shared<U>, error: HandshakeError) {
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
