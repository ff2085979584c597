//! The backend's half of the seam: what a worker asks of the sockets. The
//! whole contract, both halves, is described in [`crate::backend`].

use crate::transport::outbox::Outbox;

/// What became of a write a worker asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// Done now: `bytes` went out; `blocked` if the socket took no more (the
    /// backend reports writability later with `Worker::on_writable`).
    Now { bytes: usize, blocked: bool },
    /// Submitted; the backend reports the result with `Worker::on_sent`. Also
    /// the answer while an earlier write is still in flight.
    Later,
    /// The socket failed; the connection is over.
    Failed,
}

/// How a connection's byte stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hangup {
    /// The peer shut down its side (EOF); it may still read.
    Eof,
    /// A reset or another socket error.
    Error,
}

/// What a worker needs of its backend: writes, shutdowns, closes and the
/// listeners. Implemented by each backend (and by the tests' fake).
pub(crate) trait Io {
    /// Whether `write` hands the queue to the kernel to be read after it
    /// returns (completion backends): the worker then seals the staged bytes
    /// first, so that later sends cannot move them.
    fn writes_later(&self) -> bool;

    /// Writes as much of `outbox` (the connection's whole queue, read with
    /// `Outbox::io_slices`) as the socket takes, or submits it.
    fn write(&mut self, key: usize, outbox: &mut Outbox) -> Written;

    /// Writes one frame straight from where it lies: asked only while
    /// nothing of `key` is queued or in flight, so it goes ahead of nothing.
    /// `None` if the backend cannot send from there (the worker then queues a
    /// copy). A readiness backend writes now; a completion backend may submit
    /// it if it can keep the payload in place until the send completes, and
    /// then reports it with `Worker::on_frame_sent`.
    fn write_frame(&mut self, key: usize, frame: FrameParts<'_>) -> Option<Written>;

    /// Shuts down the write side of `key` (the queue is empty).
    fn shutdown_write(&mut self, key: usize);

    /// Closes the socket of `key`. True if it is gone now (the worker then
    /// forgets the connection at once); false if the backend will call
    /// `Worker::on_released` once nothing of it is in flight.
    fn close(&mut self, key: usize) -> bool;

    /// Stops reading `key` (its rate limit is spent) until
    /// [`resume_reading`](Self::resume_reading): bytes wait in the kernel, and
    /// TCP pushes back on the peer. Data already received may still be
    /// delivered.
    fn pause_reading(&mut self, key: usize);

    /// Reads `key` again, including whatever arrived while it was paused.
    fn resume_reading(&mut self, key: usize);

    /// Stops accepting new connections (shutdown has begun).
    fn stop_accepting(&mut self);

    /// Gets the socket of `key` ready to leave (a live hand-over), its
    /// reading paused: `Ready` when [`detach`](Self::detach) can take it now,
    /// `Later` while something of it is in flight (the worker asks again next
    /// turn), `Never` if it cannot go.
    fn prepare_detach(&mut self, key: usize) -> Prepared;

    /// Takes the socket of `key` out of the backend without closing it (a
    /// live hand-over), after [`prepare_detach`](Self::prepare_detach) said
    /// `Ready`: nothing of it is read or written here any more. `None` if it
    /// cannot (the worker then closes the connection with 1012).
    fn detach(&mut self, key: usize) -> Option<std::os::fd::OwnedFd>;

    /// Serves `fd`, a connected socket another process handed over, as
    /// `key`, reading it from the next turn on (what arrived before is in
    /// it). False if the backend cannot (the descriptor is closed).
    fn adopt(&mut self, key: usize, fd: std::os::fd::OwnedFd) -> bool;
}

/// Whether a socket can leave the backend now ([`Io::prepare_detach`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prepared {
    Ready,
    Later,
    Never,
}

/// What of a frame (`header`, then `payload`) is left after `written` bytes.
pub(crate) fn unsent<'a>(
    header: &'a [u8],
    payload: &'a [u8],
    written: usize,
) -> (&'a [u8], &'a [u8]) {
    let header_rest = &header[written.min(header.len())..];
    let payload_rest = &payload[written.saturating_sub(header.len()).min(payload.len())..];
    (header_rest, payload_rest)
}

/// A frame to write from where it lies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameParts<'a> {
    pub header: &'a [u8],
    pub payload: &'a [u8],
    /// Header and payload as one slice, when the header lies right before
    /// the payload (an echo of a message framed in the receive buffer): one
    /// plain send instead of a vectored one.
    pub whole: Option<&'a [u8]>,
}
