//! A stream's sends: data frames (queued, or written or sealed from where they
//! lie when large: [`Direct`]), prepared frames of a publish, control frames
//! and the replies the session owes; each checked against the backpressure
//! limit and its policy.

use bytes::Bytes;

use super::{Direct, Finish, Link, Phase, SharedFrames};
use crate::config::BackpressurePolicy;
use crate::proto::close::CloseCode;
use crate::proto::frame::OpCode;
use crate::proto::session::{Frame, Reply};
use crate::runtime::seam::{FrameParts, Written, unsent};
use crate::runtime::shared::{Counters, Shared};
use crate::types::{CloseCause, PreparedMessage, SendStatus};

/// Smallest frame written from where it lies instead of copied into the send
/// queue: below it a copy costs less than a write of its own, and the small
/// messages of a turn are better sent together in one.
pub(crate) const DIRECT_MIN: usize = 16 << 10;

/// Longest frame header of the server role: 2 bytes, 8 of length, no mask.
const MAX_HEADER: usize = 10;

/// Largest frame sealed straight into the ciphertext queue: as much as one
/// flush encrypts, so that the queue stays as small as a flush leaves it.
const SEAL_MAX: usize = 256 << 10;

impl<U> Link<U> {
    /// Queues the frame the session owes the peer (a pong, a close reply).
    pub fn reply(&mut self, shared: &mut Shared<U>, reply: &Reply<'_>) {
        let frame = shared.endpoint.reply(reply);
        if matches!(reply, Reply::Pong(_))
            && self.past_limit(shared.config.max_backpressure, frame.len())
        {
            // A peer that pings and does not read: its pongs would grow the
            // queue without bound. (A close reply always goes: it is the last.)
            shared.counters.dropped_sends += 1;
            self.start_close(
                shared,
                CloseCode::POLICY_VIOLATION,
                "backpressure: the peer does not read",
                CloseCause::Backpressure,
            );
            return;
        }
        self.outbox.push_frame(&mut shared.pool, &frame);
        self.mark(&mut shared.flush);
        if matches!(reply, Reply::Pong(_)) {
            shared.counters.pongs_out += 1;
        }
    }

    /// Queues a ping or pong. Control frames count against the backpressure
    /// limit like any other (a peer that never reads must not grow the queue
    /// with them), but do not close the connection: past the limit they are
    /// dropped, and an unanswered ping times out as it would.
    pub fn send_control(
        &mut self,
        shared: &mut Shared<U>,
        opcode: OpCode,
        payload: &[u8],
    ) -> SendStatus {
        if self.finish == Finish::Abort || self.phase == Phase::Ended {
            shared.counters.dropped_sends += 1;
            return SendStatus::Dropped;
        }
        let Some(frame) = self.session.control(&mut shared.endpoint, opcode, payload) else {
            shared.counters.dropped_sends += 1;
            return SendStatus::Dropped;
        };
        if self.past_limit(shared.config.max_backpressure, frame.len()) {
            self.stalled = true;
            shared.counters.dropped_sends += 1;
            return SendStatus::Dropped;
        }
        self.outbox.push_frame(&mut shared.pool, &frame);
        self.mark(&mut shared.flush);
        match opcode {
            OpCode::Ping => shared.counters.pings_out += 1,
            _ => shared.counters.pongs_out += 1,
        }
        self.status()
    }

    /// Sends a data message; compressed where permessage-deflate was
    /// negotiated, `compress` allows it and it reaches the threshold. A large
    /// one sent while nothing is queued goes through `direct` (when the
    /// callback runs on received data): on a plain connection out from where
    /// it lies, with only what the socket did not take copied; over TLS sealed
    /// from where it lies into the ciphertext queue. Otherwise it is copied
    /// into the send queue.
    pub fn send_message(
        &mut self,
        shared: &mut Shared<U>,
        direct: Option<Direct<'_>>,
        opcode: OpCode,
        payload: &[u8],
        compress: bool,
    ) -> SendStatus {
        if !self.can_send() {
            shared.counters.dropped_sends += 1;
            return SendStatus::Dropped;
        }
        let compress = compress && payload.len() >= shared.config.deflate_threshold;
        let frame = self
            .session
            .message(&mut shared.endpoint, opcode, payload, compress);
        if compress {
            count_deflate(&mut shared.counters, payload.len(), &frame);
        }
        if self.past_limit(shared.config.max_backpressure, frame.len()) {
            return self.refuse(shared);
        }
        // Only an uncompressed frame carries the caller's payload itself.
        let as_given = frame
            .unmasked_payload()
            .is_some_and(|p| std::ptr::eq(p, payload));
        let large = frame.len() >= DIRECT_MIN && self.outbox.is_empty();
        match direct {
            Some(Direct::Socket { io, framed }) if large && as_given => {
                let mut header = [0u8; MAX_HEADER];
                let header = &mut header[..frame.header().len()];
                header.copy_from_slice(frame.header());
                // The message being echoed as it came: its frame already lies
                // whole in the receive buffer.
                let whole = framed.filter(|framed| {
                    framed.len() == header.len() + payload.len()
                        && framed[..header.len()] == *header
                        && std::ptr::eq(&framed[header.len()..], payload)
                });
                let parts = FrameParts {
                    header,
                    payload,
                    whole,
                };
                if let Some(written) = io.write_frame(self.key(), parts) {
                    return self.sent_direct(shared, header, payload, written);
                }
            }
            Some(Direct::Records(mut sealer))
                if large && frame.len() <= SEAL_MAX && sealer.idle() =>
            {
                // The server role's payload is never masked.
                if let Some(body) = frame.unmasked_payload() {
                    if sealer.seal(&[frame.header(), body], &mut shared.pool) {
                        return self.queued(shared);
                    }
                }
            }
            _ => {}
        }
        self.outbox.push_frame(&mut shared.pool, &frame);
        self.queued(shared)
    }

    /// A frame written through [`Io::write_frame`]: what the socket did not
    /// take is queued (a copy), as a short write of the queue would leave it.
    fn sent_direct(
        &mut self,
        shared: &mut Shared<U>,
        header: &[u8],
        payload: &[u8],
        written: Written,
    ) -> SendStatus {
        match written {
            Written::Now { bytes, blocked } => {
                shared.counters.bytes_out += bytes as u64;
                let (header_rest, payload_rest) = unsent(header, payload, bytes);
                if !header_rest.is_empty() || !payload_rest.is_empty() {
                    self.outbox
                        .push_copy(&mut shared.pool, header_rest, payload_rest);
                }
                if blocked {
                    self.stall(&mut shared.counters);
                }
            }
            // In flight; the backend reports it with `Worker::on_frame_sent`.
            Written::Later => {}
            Written::Failed => {
                self.hang_up(shared, false);
                self.mark(&mut shared.flush);
                return SendStatus::Dropped;
            }
        }
        if self.outbox.is_empty() {
            shared.counters.messages_out += 1;
            self.status()
        } else {
            self.queued(shared)
        }
    }

    /// Queues a prepared message: by reference where the connection does not
    /// compress; for the worker's shared compressors, compressed once per
    /// window and kept in `cache`; else compressed by the connection itself.
    pub fn send_prepared(
        &mut self,
        shared: &mut Shared<U>,
        message: &PreparedMessage,
        cache: &mut SharedFrames,
    ) -> SendStatus {
        let compressible = message.payload().len() >= shared.config.deflate_threshold;
        if !self.session.deflate() || !compressible {
            return self.send_shared(shared, message.frame.clone());
        }
        let Some(window) = self.session.shared_window() else {
            return self.send_message(shared, None, message.opcode, message.payload(), true);
        };
        let slot = &mut cache[usize::from(window) - 9];
        let frame = match slot {
            Some(frame) => frame.clone(),
            None => {
                let frame = self.session.message(
                    &mut shared.endpoint,
                    message.opcode,
                    message.payload(),
                    true,
                );
                count_deflate(&mut shared.counters, message.payload().len(), &frame);
                let mut bytes = Vec::with_capacity(frame.len());
                frame.write_to(&mut bytes);
                slot.insert(Bytes::from(bytes)).clone()
            }
        };
        self.send_shared(shared, frame)
    }

    /// Queues an encoded frame by reference.
    fn send_shared(&mut self, shared: &mut Shared<U>, frame: Bytes) -> SendStatus {
        if !self.can_send() {
            shared.counters.dropped_sends += 1;
            return SendStatus::Dropped;
        }
        if self.past_limit(shared.config.max_backpressure, frame.len()) {
            return self.refuse(shared);
        }
        self.outbox.push_shared(&mut shared.pool, frame);
        self.queued(shared)
    }

    /// The socket took no more: sends report backpressure until `on_drain`.
    pub fn stall(&mut self, counters: &mut Counters) {
        if !self.stalled {
            counters.backpressure += 1;
        }
        self.stalled = true;
    }

    /// Whether a data message can be sent now.
    fn can_send(&self) -> bool {
        self.session.can_send_data() && self.finish != Finish::Abort && self.phase != Phase::Ended
    }

    /// Whether `len` more bytes would take the send queue past the
    /// backpressure limit (data, pings and the pongs owed alike).
    fn past_limit(&self, max_backpressure: usize, len: usize) -> bool {
        self.outbox.len() + len > max_backpressure
    }

    /// A send past the backpressure limit: dropped, and under the close policy
    /// the connection closes with 1008.
    fn refuse(&mut self, shared: &mut Shared<U>) -> SendStatus {
        self.stalled = true;
        shared.counters.dropped_sends += 1;
        if shared.config.backpressure_policy == BackpressurePolicy::Close {
            self.start_close(
                shared,
                CloseCode::POLICY_VIOLATION,
                "backpressure",
                CloseCause::Backpressure,
            );
        }
        SendStatus::Dropped
    }

    fn queued(&mut self, shared: &mut Shared<U>) -> SendStatus {
        self.mark(&mut shared.flush);
        shared.counters.messages_out += 1;
        self.status()
    }

    fn status(&self) -> SendStatus {
        if self.stalled {
            SendStatus::Backpressure
        } else {
            SendStatus::Sent
        }
    }
}

/// Counts a message given to the compressor: `before` payload bytes, the
/// frame's payload after (the same when it was not worth compressing).
fn count_deflate(counters: &mut Counters, before: usize, frame: &Frame<'_>) {
    // RSV1 marks a compressed message.
    if frame.header()[0] & 0x40 != 0 {
        counters.deflate_in += before as u64;
        counters.deflate_out += (frame.len() - frame.header().len()) as u64;
    }
}
