//! One open connection as plain data: what a new process needs to serve it
//! on from where the old one stopped. Taken at a frame boundary (the decoder
//! idle, nothing held back by a rate limit), so what the peer sends next
//! is still in the socket, read by the new process and by it only.
//!
//! What is carried: the peer's address, permessage-deflate's parameters
//! and, with context takeover, each direction's window (the last up to
//! 32 KiB the codec compressed or inflated: fresh codecs are primed with
//! them), the send queue not yet written, the timers (as milliseconds before the hand-over), the rate
//! limiter's buckets, the topics (by name: the new process subscribes
//! again, its bridge too), the application's bytes for its data, and over
//! TLS our record layer's keys, IVs and sequence numbers both ways (with the
//! next keys of one KeyUpdate each way, for TLS 1.3) and its ciphertext not
//! yet written.

use std::net::SocketAddr;

use crate::proto::session::DeflateCarry;
use crate::runtime::ratelimit::CarriedLimiter;
use crate::transport::CarriedRecords;

/// The largest send queue carried; a fuller one waits for the socket to
/// take some (or for the deadline).
pub(crate) const MAX_OUTBOX: usize = 128 << 10;
/// The largest application data carried.
pub(crate) const MAX_DATA: usize = 64 << 10;
/// Most topics per connection, and the longest name.
pub(crate) const MAX_TOPICS: usize = 256;
pub(crate) const MAX_TOPIC_LEN: usize = 256;
/// The longest record (`wire`): every bound at once would pass it (send
/// queue and TLS ciphertext, 128 KiB each, beside the topics, the data and
/// permessage-deflate's windows), so a longer one waits for the socket to
/// take some of its queues. It fits one control-socket message with its
/// batch's framing (`crate::handover::unix::MAX_MESSAGE`, checked there).
pub(crate) const MAX_RECORD: usize = 376 << 10;

/// One connection, ready to travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub peer: SocketAddr,
    pub deflate: DeflateCarry,
    /// Frames queued and not yet written, as bytes for the wire.
    pub outbox: Vec<u8>,
    /// The queue had passed the backpressure limit: `on_drain` is owed.
    pub stalled: bool,
    /// Milliseconds since the last byte arrived.
    pub silent_ms: u32,
    /// Milliseconds since the auto-ping nothing has answered yet, if any.
    pub ping_ms: Option<u32>,
    pub limiter: Option<CarriedLimiter>,
    pub topics: Vec<String>,
    /// What `Handler::on_handover_out` made of the connection's data.
    pub data: Vec<u8>,
    /// Over TLS: the record layer's state, and the ciphertext not yet
    /// written (it goes before what `outbox` is sealed into).
    pub tls: Option<(CarriedRecords, Vec<u8>)>,
}
