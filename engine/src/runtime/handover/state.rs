//! One open connection as plain data: what a new process needs to serve it
//! on from where the old one stopped. Taken in any state of its read side:
//! what it has read and not yet consumed as a whole frame or message (the
//! decoder's partial header, frame and fragmented message, a TLS record cut
//! by the end of a read, bytes read after its pause) travels ([`ReadSide`]),
//! and what the peer sends next is still in the socket, read by the new
//! process and by it only, after what travelled.
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

use crate::proto::message::carry::CarriedDecoder;
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
/// The largest message in progress carried (its payload so far, and a cut
/// header or control frame); a connection with more reads on to the
/// message's end in the old process and goes then.
pub(crate) const MAX_PARTIAL: usize = 64 << 10;
/// The most bytes carried that were read after the connection's pause (or
/// held by its rate limit) and not yet parsed.
pub(crate) const MAX_HELD: usize = 64 << 10;
/// The largest record (`wire`): it must fit one message of the control
/// socket (`handover::unix::MAX_MESSAGE`, 384 KiB, less a batch's own
/// framing, checked there). The parts that cannot drain (the data, the
/// topics, permessage-deflate's two windows, the read side: the message in
/// progress, what is held, a cut TLS record) add up to about 340 KiB at
/// their bounds, so a connection whose send queues (128 KiB each) take it
/// past this only waits for the socket to drain them.
pub(crate) const MAX_RECORD: usize = (384 << 10) - 8;

/// What a connection has read and not yet consumed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReadSide {
    /// The frame decoder when it is not idle: a cut header, a frame's
    /// payload so far, a fragmented (or compressed, not yet inflated)
    /// message's fragments so far.
    pub decoder: Option<CarriedDecoder>,
    /// Plaintext read and not parsed yet (held back by the rate limit, or
    /// read after the connection was paused): it goes through the decoder
    /// before anything read from the socket.
    pub held: Vec<u8>,
    /// Over TLS, the start of a record cut by the end of a read (the
    /// record layer's next sequence number, carried with the keys, is its).
    pub record: Vec<u8>,
}

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
    /// What it has read and not yet consumed (the record's read side).
    pub read: ReadSide,
}
