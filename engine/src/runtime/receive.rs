//! The frames of an open connection: decoded in place from the receive buffer,
//! handed to the protocol session, and its outcome to the handler's callbacks
//! (with the pong or close reply queued first).

use super::conn::{DIRECT_MIN, Direct, Finish, Link};
use super::handler::{Handler, WebSocket};
use super::ratelimit::Verdict;
use super::shared::Shared;
use super::stream::Stream;
use crate::proto::close::CloseCode;
use crate::proto::message::Event;
use crate::proto::session::{Inbound, InflateBuffer};
use crate::types::{CloseCause, Message};

/// Largest reassembly buffer a connection keeps between messages.
const KEEP_REASSEMBLY: usize = 1 << 20;

/// Decodes `data` (unmasking it in place) and runs the callbacks, until the
/// buffer is consumed or the connection stops reading frames. `direct` is the
/// backend on a plain connection, the record layer over TLS, for sends from
/// where the data lies.
pub(crate) fn frames<H: Handler>(
    handler: &mut H,
    shared: &mut Shared<H::Data>,
    inflated: &mut InflateBuffer,
    stream: &mut Stream<H::Data>,
    data: &mut [u8],
    mut direct: Option<Direct<'_>>,
) {
    let Stream { link, decoder, .. } = stream;
    let config = *shared.endpoint.decoder_config(&link.session);
    // Only a plain socket writes a message framed in place, and only a large
    // one goes out from where it lies (`Link::send_message`).
    let frame_from = match direct {
        Some(Direct::Socket { .. }) => DIRECT_MIN,
        _ => usize::MAX,
    };
    let mut pos = 0;
    while pos < data.len() && link.reading_frames() {
        if hold(link, shared, &data[pos..]) {
            break;
        }
        let (used, event, framed) =
            match decoder.decode_framed(&config, &mut data[pos..], frame_from) {
                Ok(step) => step,
                Err(error) => {
                    link.fail(shared, error);
                    break;
                }
            };
        pos += used;
        let Some(event) = event else {
            continue;
        };
        let compressed = match &event {
            Event::Compressed { payload, .. } => Some(payload.len()),
            _ => None,
        };
        let received = match link.session.receive(&mut shared.endpoint, inflated, event) {
            Ok(received) => received,
            Err(error) => {
                link.fail(shared, error);
                break;
            }
        };
        if let Some(reply) = &received.reply {
            link.reply(shared, reply);
        }
        if let Some(before) = compressed {
            shared.counters.inflate_in += before as u64;
            shared.counters.inflate_out += match &received.inbound {
                Inbound::Text(text) => text.len(),
                Inbound::Binary(bytes) => bytes.len(),
                _ => 0,
            } as u64;
        }
        match received.inbound {
            Inbound::Text(text) => {
                shared.counters.messages_in += 1;
                if admit(link, shared) {
                    handler.on_message(
                        &mut WebSocket::receiving(
                            link,
                            shared,
                            direct.as_mut().map(|d| d.delivering(framed)),
                        ),
                        Message::Text(text),
                    );
                }
            }
            Inbound::Binary(bytes) => {
                shared.counters.messages_in += 1;
                if admit(link, shared) {
                    handler.on_message(
                        &mut WebSocket::receiving(
                            link,
                            shared,
                            direct.as_mut().map(|d| d.delivering(framed)),
                        ),
                        Message::Binary(bytes),
                    );
                }
            }
            Inbound::Ping(payload) => {
                shared.counters.pings_in += 1;
                handler.on_ping(
                    &mut WebSocket::receiving(link, shared, direct.as_mut().map(Direct::reborrow)),
                    payload,
                );
            }
            Inbound::Pong(payload) => {
                shared.counters.pongs_in += 1;
                handler.on_pong(
                    &mut WebSocket::receiving(link, shared, direct.as_mut().map(Direct::reborrow)),
                    payload,
                );
            }
            Inbound::Close { code, reason } => {
                let cause = link.cause_or(CloseCause::Peer);
                link.end(shared, Finish::ShutdownWrite, code, reason, cause);
            }
        }
    }
    // The reassembly buffer stays for the connection's next split message; the
    // timer sweep frees it once the connection is quiet.
    decoder.trim_buffers(KEEP_REASSEMBLY);
    inflated.release();
}

/// Under the pause policy with the tokens spent: keeps `rest` (not yet
/// parsed) for when they are back, and asks for the socket to be paused.
fn hold<U>(link: &mut Link<U>, shared: &mut Shared<U>, rest: &[u8]) -> bool {
    let now = shared.now_ms;
    let Some(newly) = link.limiter().and_then(|l| l.hold(now)) else {
        return false;
    };
    if newly {
        shared.pausing.push(link.id);
    }
    link.hold_bytes(rest);
    true
}

/// Charges one message to the connection's rate limit: true if it goes to the
/// handler: under the close policy, past the limit, the connection closes with
/// 1008 and this and every later message is discarded.
fn admit<U>(link: &mut Link<U>, shared: &mut Shared<U>) -> bool {
    let now = shared.now_ms;
    let Some(limiter) = link.limiter() else {
        return true;
    };
    let verdict = limiter.message(now);
    rate_verdict(link, shared, verdict)
}

/// Acts on a rate-limit verdict: true if the data goes on to the handler.
pub(crate) fn rate_verdict<U>(
    link: &mut Link<U>,
    shared: &mut Shared<U>,
    verdict: Verdict,
) -> bool {
    match verdict {
        Verdict::Within => true,
        Verdict::Close => {
            link.start_close(
                shared,
                CloseCode::POLICY_VIOLATION,
                "rate limit exceeded",
                CloseCause::RateLimit,
            );
            false
        }
        Verdict::Discard => false,
    }
}
