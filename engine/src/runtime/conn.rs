//! Per-connection state: the phase machine Handshake -> Open -> Closing ->
//! Draining, the receive decoder, and the [`Session`] that callbacks act on.

use std::net::SocketAddr;

use bytes::Bytes;

use super::outbox::Outbox;
use super::worker::Shared;
use crate::api::{CloseCause, ConnId, SendStatus};
use crate::config::BackpressurePolicy;
use crate::proto::Role;
use crate::proto::close::CloseCode;
use crate::proto::deflate::{Compressor, Decompressor};
use crate::proto::frame::{DecodeRules, HeaderStatus, OpCode, RSV1, decode_header, encode_header};
use crate::proto::message::{CloseHandshake, ClosePayload, Decoder};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Reading the upgrade request.
    Handshake,
    /// WebSocket open.
    Open,
    /// We sent a close frame and wait for the peer's.
    Closing,
    /// Done with WebSocket: flush what is queued, shut the write side, wait for
    /// the peer's EOF (or the close timeout), then close the socket.
    Draining,
}

/// What the connection asks of its backend once its queue is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// Keep going.
    None,
    /// Flush, then shut down the write side (graceful end).
    ShutdownWrite,
    /// Flush to a peer that closed its side, then close the socket.
    CloseAfterFlush,
    /// Drop the socket now, queued bytes or not.
    Abort,
}

/// What a backend does with a socket after a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFlush {
    /// Nothing.
    Keep,
    /// Shut down the write side (the queue is empty).
    ShutdownWrite,
    /// Close the socket.
    Close,
}

/// The part of a connection a [`crate::WebSocket`] handle reaches.
#[derive(Debug)]
pub(crate) struct Session<U> {
    pub id: ConnId,
    pub peer: SocketAddr,
    pub outbox: Outbox,
    pub close: CloseHandshake,
    pub phase: Phase,
    pub finish: Finish,
    /// Listed in the worker's flush list this turn.
    pub listed: bool,
    /// A flush left bytes behind: the socket is not keeping up; on_drain fires
    /// when the queue empties.
    pub stalled: bool,
    /// Why we started closing (when we did).
    pub local_cause: Option<CloseCause>,
    /// The code we sent, for on_close when the peer never answers.
    pub local_code: CloseCode,
    /// Set at upgrade, taken at close.
    pub data: Option<U>,
    /// permessage-deflate on the way out, dedicated mode: this connection's
    /// own compressor (context takeover).
    pub compressor: Option<Box<Compressor>>,
    /// permessage-deflate on the way out, shared mode: the window (9..=15) of the
    /// worker's compressor to use, as negotiated; 0 when not in shared mode.
    pub shared_window: u8,
    /// Ids of the topics this connection subscribes to on its worker; boxed
    /// so that a connection that subscribes to nothing pays one pointer.
    #[allow(clippy::box_collection)]
    pub topics: Option<Box<Vec<u32>>>,
}

impl<U> Session<U> {
    pub fn new(id: ConnId, peer: SocketAddr) -> Self {
        Self {
            id,
            peer,
            outbox: Outbox::default(),
            close: CloseHandshake::new(),
            phase: Phase::Handshake,
            finish: Finish::None,
            listed: false,
            stalled: false,
            local_cause: None,
            local_code: CloseCode::ABNORMAL,
            data: None,
            compressor: None,
            shared_window: 0,
            topics: None,
        }
    }

    /// permessage-deflate was negotiated.
    pub fn deflate(&self) -> bool {
        self.shared_window != 0 || self.compressor.is_some()
    }

    pub fn key(&self) -> usize {
        self.id.key()
    }

    pub fn data(&self) -> &U {
        self.data
            .as_ref()
            .expect("user data lives while the connection is open")
    }

    pub fn data_mut(&mut self) -> &mut U {
        self.data
            .as_mut()
            .expect("user data lives while the connection is open")
    }

    /// Puts the connection on the worker's flush list (once per turn).
    pub fn mark(&mut self, shared: &mut Shared) {
        if !self.listed {
            self.listed = true;
            shared.flush.push(self.key());
        }
    }

    /// Whether a send of `len` more bytes is allowed; applies the policy if not.
    fn admit(&mut self, shared: &mut Shared, len: usize) -> Option<SendStatus> {
        if !self.close.can_send_data() || self.finish == Finish::Abort {
            return Some(SendStatus::Dropped);
        }
        if self.outbox.len() + len <= shared.config.max_backpressure {
            return None;
        }
        self.stalled = true;
        if shared.config.backpressure_policy == BackpressurePolicy::Close {
            self.start_close(
                shared,
                CloseCode::POLICY_VIOLATION,
                "backpressure",
                CloseCause::Backpressure,
            );
        }
        Some(SendStatus::Dropped)
    }

    fn status(&self) -> SendStatus {
        if self.stalled {
            SendStatus::Backpressure
        } else {
            SendStatus::Sent
        }
    }

    /// Queues one frame, copying the payload; data frames are compressed when
    /// permessage-deflate was negotiated, `compress` allows it and the payload
    /// reaches the threshold.
    pub fn send_frame(
        &mut self,
        shared: &mut Shared,
        opcode: OpCode,
        payload: &[u8],
        compress: bool,
    ) -> SendStatus {
        if opcode.is_control() {
            // Control frames bypass the data limit: they are tiny and keep the
            // connection alive, but not after our close frame.
            if !self.close.can_send_data() {
                return SendStatus::Dropped;
            }
        } else if compress && payload.len() >= shared.config.deflate_threshold {
            let mut deflated = std::mem::take(&mut shared.deflated);
            deflated.clear();
            let compressor = match (&mut self.compressor, self.shared_window) {
                (Some(own), _) => Some(&mut **own),
                (None, 0) => None,
                (None, bits) => shared.deflate.as_mut().map(|d| d.compressor(bits)),
            };
            let compressed = compressor
                .map(|c| c.compress(payload, &mut deflated))
                .is_some();
            let status = compressed.then(|| self.push_frame(shared, RSV1, opcode, &deflated));
            shared.deflated = deflated;
            if let Some(status) = status {
                return status;
            }
        }
        self.push_frame(shared, 0, opcode, payload)
    }

    /// Admits and queues one frame.
    fn push_frame(
        &mut self,
        shared: &mut Shared,
        rsv: u8,
        opcode: OpCode,
        payload: &[u8],
    ) -> SendStatus {
        let header = encode_header(true, rsv, opcode, None, payload.len() as u64);
        let len = header.as_bytes().len() + payload.len();
        if !opcode.is_control() {
            if let Some(refused) = self.admit(shared, len) {
                return refused;
            }
        }
        self.outbox
            .push_copy(&mut shared.pool, header.as_bytes(), payload);
        self.mark(shared);
        shared.counters.messages_out += 1;
        self.status()
    }

    /// Queues an encoded (uncompressed) frame by reference, or, where this
    /// connection compresses, its compressed form: for the worker's shared
    /// compressor, made once per publish and kept in `cache`.
    pub fn send_shared(
        &mut self,
        shared: &mut Shared,
        frame: Bytes,
        cache: &mut SharedFrames,
    ) -> SendStatus {
        let threshold = shared.config.deflate_threshold;
        let frame = match (&mut self.compressor, self.shared_window) {
            (Some(own), _) => compress_frame(own, &frame, threshold),
            (None, 0) => frame,
            (None, bits) => {
                let slot = &mut cache[usize::from(bits) - 9];
                match (slot.as_ref(), shared.deflate.as_mut()) {
                    (Some(done), _) => done.clone(),
                    (None, Some(deflate)) => {
                        let done = compress_frame(deflate.compressor(bits), &frame, threshold);
                        *slot = Some(done.clone());
                        done
                    }
                    (None, None) => frame,
                }
            }
        };
        if let Some(refused) = self.admit(shared, frame.len()) {
            return refused;
        }
        self.outbox.push_shared(frame);
        self.mark(shared);
        shared.counters.messages_out += 1;
        self.status()
    }

    /// The application asks to close.
    pub fn close(&mut self, shared: &mut Shared, code: CloseCode, reason: &str) {
        // A code peers may not send (1005, 1006, ...) becomes 1000.
        let code = if code.is_valid_on_wire() {
            code
        } else {
            CloseCode::NORMAL
        };
        self.start_close(shared, code, reason, CloseCause::Local);
    }

    /// Sends our close frame and waits for the peer's.
    pub fn start_close(
        &mut self,
        shared: &mut Shared,
        code: CloseCode,
        reason: &str,
        cause: CloseCause,
    ) {
        if self.phase != Phase::Open {
            return;
        }
        if let Some(payload) = self.close.initiate(code, reason) {
            self.push_close(shared, &payload);
            self.local_cause = Some(cause);
            self.local_code = code;
            self.phase = Phase::Closing;
        }
    }

    /// Queues a close frame (ours or our reply).
    pub fn push_close(&mut self, shared: &mut Shared, payload: &ClosePayload) {
        let header = encode_header(
            true,
            0,
            OpCode::Close,
            None,
            payload.as_bytes().len() as u64,
        );
        self.outbox
            .push_copy(&mut shared.pool, header.as_bytes(), payload.as_bytes());
        self.mark(shared);
    }

    /// Abort without a close frame.
    pub fn terminate(&mut self, shared: &mut Shared) {
        if self.local_cause.is_none() {
            self.local_cause = Some(CloseCause::Terminated);
        }
        self.finish = Finish::Abort;
        self.mark(shared);
    }
}

/// A published frame compressed once per shared window (9..=15), reused for
/// every subscriber that negotiated that window.
pub(crate) type SharedFrames = [Option<Bytes>; 7];

/// The compressed form of an encoded server data frame (unchanged if it is a
/// control frame or shorter than the threshold).
fn compress_frame(compressor: &mut Compressor, frame: &Bytes, threshold: usize) -> Bytes {
    let rules = DecodeRules::new(Role::Client, u64::MAX >> 1);
    let Ok(HeaderStatus::Complete(header)) = decode_header(frame, &rules) else {
        return frame.clone();
    };
    let payload = &frame[header.header_len..];
    if header.opcode.is_control() || payload.len() < threshold {
        return frame.clone();
    }
    let mut deflated = Vec::with_capacity(payload.len() / 2 + 16);
    compressor.compress(payload, &mut deflated);
    let head = encode_header(header.fin, RSV1, header.opcode, None, deflated.len() as u64);
    let mut out = Vec::with_capacity(head.as_bytes().len() + deflated.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&deflated);
    out.into()
}

/// [`Conn::ping_sent`] when no auto-ping is outstanding.
pub(crate) const NO_PING: u32 = u32::MAX;

/// A connection in a worker's slab.
#[derive(Debug)]
pub(crate) struct Conn<U> {
    pub session: Session<U>,
    pub decoder: Decoder,
    /// What the connection holds only in some phases, behind one pointer.
    pub extra: Option<Box<Extra>>,
    /// Tick of the last byte received.
    pub last_rx: u32,
    /// Tick at which the phase's deadline passes (handshake, close, drain).
    pub deadline: u32,
    /// The phase `deadline` was set for; a new phase gets a new deadline.
    pub deadline_phase: Phase,
    /// Tick at which an auto-ping was sent and not yet answered by any frame,
    /// or [`NO_PING`].
    pub ping_sent: u32,
}

/// State a connection needs only in some phases, kept behind one pointer so an
/// idle connection pays 8 bytes for all of it.
#[derive(Debug)]
pub(crate) enum Extra {
    /// Bytes of an upgrade request cut by the end of a read.
    Head(Vec<u8>),
    /// Its own decompressor (permessage-deflate, dedicated mode; shared mode uses
    /// the worker's).
    Inflate(Decompressor),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_state_is_small() {
        // The whole per-connection state of an idle connection, besides the
        // kernel's socket; the goal is under 512 bytes including allocator overhead.
        let size = std::mem::size_of::<Conn<()>>();
        eprintln!(
            "Conn<()> = {size} bytes, Session<()> = {}, Decoder = {}",
            std::mem::size_of::<Session<()>>(),
            std::mem::size_of::<Decoder>()
        );
        assert!(size <= 240, "{size}");
    }
}
