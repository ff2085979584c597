//! Received bytes (over TLS: the plaintext of each record) handed to the
//! connection's phase: the upgrade while in the HTTP phase, else the frames,
//! after the rate limit's byte check.

use super::conn::{Direct, Phase};
use super::handler::Handler;
use super::ratelimit::Verdict;
use super::shared::Shared;
use super::stream::Stream;
use super::{receive, upgrade};
use crate::proto::session::InflateBuffer;

/// Hands bytes (plaintext) to the phase of the stream. `gated`: its socket's
/// reading is paused (what was read before the pause took effect waits);
/// `direct` is
/// the backend on a plain socket, the record layer over TLS (see
/// [`receive::frames`]).
pub(crate) fn deliver<H: Handler>(
    handler: &mut H,
    shared: &mut Shared<H::Data>,
    inflated: &mut InflateBuffer,
    stream: &mut Stream<H::Data>,
    gated: bool,
    data: &mut [u8],
    direct: Option<Direct<'_>>,
) {
    match stream.link.phase() {
        Phase::Handshake => {
            upgrade::received(handler, shared, inflated, stream, data);
        }
        Phase::Open | Phase::Closing => {
            let now = shared.now_ms;
            let verdict = stream
                .link
                .limiter()
                .map_or(Verdict::Within, |l| l.bytes(now, data.len()));
            receive::rate_verdict(&mut stream.link, shared, verdict);
            if gated || stream.link.rate_limited() {
                // Read before the pause took effect: after what is held.
                stream.link.hold_bytes(data);
            } else {
                receive::frames(handler, shared, inflated, stream, data, direct);
            }
        }
        // A socket that became HTTP/2 in this read: the rest is its codec's,
        // which it gets at the end of the read.
        Phase::Carrier => stream.link.stash_more(data),
        // After the close handshake, whatever the peer sends is discarded.
        Phase::Ended => {}
    }
}
