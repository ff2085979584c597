//! The send path, opened up for the criterion benchmarks (`bench/benches/send.rs`)
//! and nothing else: a connection's send queue and protocol session, queueing
//! frames the way `WebSocket::send` does and flushing them with the epoll
//! backend's write, or writing a frame from where it lies as its direct path
//! does (header and payload apart, or an echo framed in the receive buffer).
//! Not part of the API.

use std::io::{self, IoSlice, Write};

use crate::proto::Role;
use crate::proto::frame::OpCode;
use crate::proto::session::{Endpoint, Session};
use crate::transport::outbox::{BufferPool, MAX_IOVECS, Outbox};

/// One server-role connection's send side.
#[derive(Debug)]
pub struct SendPath {
    endpoint: Endpoint,
    session: Session,
    outbox: Outbox,
    pool: BufferPool,
}

impl Default for SendPath {
    fn default() -> Self {
        Self::new()
    }
}

impl SendPath {
    pub fn new() -> Self {
        Self {
            endpoint: Endpoint::new(Role::Server, 16 << 20, 16 << 20, 1),
            session: Session::new(),
            outbox: Outbox::default(),
            pool: BufferPool::default(),
        }
    }

    /// Queues a binary message, copying it (the path of every message below
    /// the direct-write size, and of all on io_uring without a held buffer).
    pub fn queue(&mut self, payload: &[u8]) {
        let frame = self
            .session
            .message(&mut self.endpoint, OpCode::Binary, payload, false);
        self.outbox.push_frame(&mut self.pool, &frame);
    }

    /// Bytes queued.
    pub fn queued(&self) -> usize {
        self.outbox.len()
    }

    /// Writes the queue to `sink` as the epoll backend does (send(2) for one
    /// slice, writev(2) for more) until it is empty; returns the bytes written.
    pub fn flush(&mut self, sink: &mut impl Write) -> io::Result<usize> {
        let mut total = 0;
        while !self.outbox.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let count = self.outbox.io_slices(&mut slices);
            let n = match &slices[..count] {
                [one] => sink.write(one)?,
                many => sink.write_vectored(many)?,
            };
            self.outbox.consume(&mut self.pool, n);
            total += n;
        }
        Ok(total)
    }

    /// Writes a binary message from where it lies, header and payload in one
    /// writev(2), as the direct path does; returns the bytes written (the
    /// rest, if any, is queued as a copy).
    pub fn write_direct(&mut self, payload: &[u8], sink: &mut impl Write) -> io::Result<usize> {
        let frame = self
            .session
            .message(&mut self.endpoint, OpCode::Binary, payload, false);
        let mut header = [0u8; 10];
        let header = &mut header[..frame.header().len()];
        header.copy_from_slice(frame.header());
        let n = sink.write_vectored(&[IoSlice::new(header), IoSlice::new(payload)])?;
        let (header_rest, payload_rest) = super::seam::unsent(header, payload, n);
        if !header_rest.is_empty() || !payload_rest.is_empty() {
            self.outbox
                .push_copy(&mut self.pool, header_rest, payload_rest);
        }
        Ok(n)
    }

    /// Writes an echo framed in place (`frame`: the server's header and the
    /// payload lying together, as `Decoder::decode_framed` leaves a received
    /// message) in one send(2), as the direct path does; returns the bytes
    /// written (the rest, if any, is queued as a copy).
    pub fn write_framed(&mut self, frame: &[u8], sink: &mut impl Write) -> io::Result<usize> {
        let n = sink.write(frame)?;
        if n < frame.len() {
            self.outbox.push_copy(&mut self.pool, &frame[n..], &[]);
        }
        Ok(n)
    }
}
