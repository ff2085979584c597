//! The frames of an open connection: decoded in place from the receive buffer,
//! handed to the protocol session, and its outcome to the handler's callbacks
//! (with the pong or close reply queued first).

use super::conn::{Conn, Finish};
use super::handler::{Handler, WebSocket};
use super::shared::Shared;
use crate::proto::session::{Inbound, InflateBuffer};
use crate::types::{CloseCause, Message};

/// Largest reassembly buffer a connection keeps between messages.
const KEEP_REASSEMBLY: usize = 1 << 20;

/// Decodes `data` (unmasking it in place) and runs the callbacks, until the
/// buffer is consumed or the connection stops reading frames.
pub(crate) fn frames<H: Handler>(
    handler: &mut H,
    shared: &mut Shared<H::Data>,
    inflated: &mut InflateBuffer,
    conn: &mut Conn<H::Data>,
    data: &mut [u8],
) {
    let Conn { link, decoder, .. } = conn;
    let config = *shared.endpoint.decoder_config(&link.session);
    let mut pos = 0;
    while pos < data.len() && link.reading_frames() {
        let (used, event) = match decoder.decode(&config, &mut data[pos..]) {
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
        match received.inbound {
            Inbound::Text(text) => {
                shared.counters.messages_in += 1;
                handler.on_message(&mut WebSocket::new(link, shared), Message::Text(text));
            }
            Inbound::Binary(bytes) => {
                shared.counters.messages_in += 1;
                handler.on_message(&mut WebSocket::new(link, shared), Message::Binary(bytes));
            }
            Inbound::Ping(payload) => handler.on_ping(&mut WebSocket::new(link, shared), payload),
            Inbound::Pong(payload) => handler.on_pong(&mut WebSocket::new(link, shared), payload),
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
