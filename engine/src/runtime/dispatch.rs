//! Received bytes (over TLS: the plaintext of each record) handed to the
//! connection's phase: the upgrade while in the HTTP phase, else the frames,
//! after the rate limit's byte check.

use super::conn::{Conn, Direct, Phase};
use super::handler::Handler;
use super::ratelimit::Verdict;
use super::shared::Shared;
use super::{receive, upgrade};
use crate::proto::session::InflateBuffer;

/// Hands bytes (plaintext) to the phase of the connection.
/// `upgraded` collects the connections whose upgrade it completed; `direct`
/// is the backend on a plain connection, the record layer over TLS (see
/// [`receive::frames`]).
pub(crate) fn deliver<H: Handler>(
    handler: &mut H,
    shared: &mut Shared<H::Data>,
    inflated: &mut InflateBuffer,
    upgraded: &mut Vec<usize>,
    conn: &mut Conn<H::Data>,
    data: &mut [u8],
    direct: Option<Direct<'_>>,
) {
    match conn.link.phase() {
        Phase::Handshake => {
            let outcome = upgrade::received(handler, shared, inflated, conn, data);
            if outcome == upgrade::Outcome::Opened {
                upgraded.push(conn.link.key());
            }
        }
        Phase::Open | Phase::Closing => {
            let now = shared.now_ms;
            let verdict = conn
                .link
                .limiter()
                .map_or(Verdict::Within, |l| l.bytes(now, data.len()));
            receive::rate_verdict(&mut conn.link, shared, verdict);
            if conn.link.reading_paused() {
                // Read before the pause took effect: after what is held.
                conn.link.hold_bytes(data);
            } else {
                receive::frames(handler, shared, inflated, conn, data, direct);
            }
        }
        // After the close handshake, whatever the peer sends is discarded.
        Phase::Ended => {}
    }
}
