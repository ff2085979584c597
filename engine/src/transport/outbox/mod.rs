//! A connection's send queue. Small frames written during a loop turn are corked
//! into one staging buffer; shared frames (prepared and published messages) are
//! queued by reference. The whole queue goes out in one vectored write (or one
//! send SQE) at the end of the turn. Staging buffers come from, and go back to,
//! the worker's [`BufferPool`], so a busy connection does not allocate per turn
//! and an idle one holds nothing.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};

use crate::proto::session::Frame;

/// Most iovecs handed to one write.
pub(crate) const MAX_IOVECS: usize = 64;

/// A worker's spare send buffers. Bounded in count and bytes; LIFO, so the
/// buffer handed out next is the one most recently in cache.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    spare: Vec<Vec<u8>>,
    /// Spare chunk queues: a queue emptied by one connection serves the next,
    /// so a completion backend's per-flush queue costs no allocation.
    #[allow(clippy::vec_box)]
    queues: Vec<Box<VecDeque<Chunk>>>,
    bytes: usize,
    /// Buffers handed out and not given back.
    outstanding: usize,
    /// Most buffers out at once since the last [`BufferPool::trim`].
    peak: usize,
}

impl BufferPool {
    /// Most bytes of spare buffers a worker keeps.
    const MAX_BYTES: usize = 8 << 20;
    /// Buffers larger than this go back to the allocator.
    const MAX_BUFFER: usize = 1 << 20;
    /// Most spare chunk queues kept, and the largest kept (in chunks).
    const MAX_QUEUES: usize = 256;
    const MAX_QUEUE_CHUNKS: usize = 64;

    /// An empty chunk queue, reused if one is spare.
    // Boxed: an outbox holds its queue behind one pointer (see `Outbox::chunks`).
    #[allow(clippy::box_collection)]
    fn take_queue(&mut self) -> Box<VecDeque<Chunk>> {
        self.queues.pop().unwrap_or_default()
    }

    /// Takes an emptied chunk queue back (or frees it).
    #[allow(clippy::box_collection)]
    fn give_queue(&mut self, queue: Box<VecDeque<Chunk>>) {
        let capacity = queue.capacity();
        if capacity == 0
            || capacity > Self::MAX_QUEUE_CHUNKS
            || self.queues.len() >= Self::MAX_QUEUES
        {
            return;
        }
        debug_assert!(queue.is_empty());
        self.queues.push(queue);
    }

    /// An empty buffer with room for at least `min` bytes.
    pub fn take(&mut self, min: usize) -> Vec<u8> {
        self.outstanding += 1;
        self.peak = self.peak.max(self.outstanding);
        match self.spare.pop() {
            Some(mut buf) => {
                self.bytes -= buf.capacity();
                buf.reserve(min);
                buf
            }
            // Exactly what is asked: during a burst of handshakes, thousands of
            // these are out at once, and heap pages once touched stay resident.
            None => Vec::with_capacity(min),
        }
    }

    /// Called once per timer tick: keeps only as many spare buffers as were
    /// out at once during the tick, so a burst (of handshakes, say) leaves no
    /// spare memory behind once the load is steady or idle.
    pub fn trim(&mut self) {
        let keep = self.peak;
        while self.spare.len() > keep {
            if let Some(buf) = self.spare.pop() {
                self.bytes -= buf.capacity();
            }
        }
        self.queues.truncate(keep);
        self.peak = self.outstanding;
    }

    /// Takes a buffer back (or frees it if the pool is full).
    pub fn give(&mut self, mut buf: Vec<u8>) {
        let capacity = buf.capacity();
        if capacity != 0 {
            self.outstanding = self.outstanding.saturating_sub(1);
        }
        if capacity == 0 || capacity > Self::MAX_BUFFER || self.bytes + capacity > Self::MAX_BYTES {
            return;
        }
        buf.clear();
        self.bytes += capacity;
        self.spare.push(buf);
    }
}

/// Bytes queued by reference or by ownership.
#[derive(Debug)]
enum Chunk {
    /// A shared frame (prepared, published).
    Shared(Bytes),
    /// A sealed staging buffer, sent from `pos`.
    Owned { buf: Vec<u8>, pos: usize },
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Shared(b) => b,
            Chunk::Owned { buf, pos } => &buf[*pos..],
        }
    }
}

/// Splits `chunk` after its first `at` bytes (0 < `at` < its length): a
/// shared one by reference; an owned one by copying the shorter side into a
/// buffer of its own.
fn split_chunk(chunk: Chunk, at: usize, pool: &mut BufferPool) -> (Chunk, Chunk) {
    match chunk {
        Chunk::Shared(mut bytes) => {
            let front = bytes.split_to(at);
            (Chunk::Shared(front), Chunk::Shared(bytes))
        }
        Chunk::Owned { mut buf, pos } => {
            let cut = pos + at;
            if at <= buf.len() - cut {
                let mut front = pool.take(at);
                front.extend_from_slice(&buf[pos..cut]);
                (
                    Chunk::Owned { buf: front, pos: 0 },
                    Chunk::Owned { buf, pos: cut },
                )
            } else {
                let mut rest = pool.take(buf.len() - cut);
                rest.extend_from_slice(&buf[cut..]);
                buf.truncate(cut);
                (
                    Chunk::Owned { buf, pos },
                    Chunk::Owned { buf: rest, pos: 0 },
                )
            }
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Queued before `staging`, oldest first; the first may be partly sent.
    /// Boxed, so a connection with nothing queued by reference pays one
    /// pointer; the box comes from, and goes back to, the pool.
    #[allow(clippy::box_collection)]
    chunks: Option<Box<VecDeque<Chunk>>>,
    /// Copied frames, after every chunk.
    staging: Vec<u8>,
    /// Bytes of `staging` already sent (when every chunk is gone). u32 keeps the
    /// idle connection small; the backpressure limit is below 4 GiB.
    staging_sent: u32,
    len: u32,
}

impl Outbox {
    /// Bytes waiting to be sent.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a frame by copying header and payload.
    pub fn push_copy(&mut self, pool: &mut BufferPool, header: &[u8], payload: &[u8]) {
        let len = header.len() + payload.len();
        if self.staging.capacity() == 0 {
            self.staging = pool.take(len);
        }
        self.staging.extend_from_slice(header);
        self.staging.extend_from_slice(payload);
        self.len += len as u32;
    }

    /// Puts a copy of `header` and `payload` ahead of everything queued: the
    /// unsent rest of a frame that was written from where it lay, before any
    /// of the queue could go.
    pub fn push_front_copy(&mut self, pool: &mut BufferPool, header: &[u8], payload: &[u8]) {
        debug_assert_eq!(self.staging_sent, 0, "nothing queued went before it");
        let mut buf = pool.take(header.len() + payload.len());
        buf.extend_from_slice(header);
        buf.extend_from_slice(payload);
        self.len += buf.len() as u32;
        self.chunks
            .get_or_insert_with(|| pool.take_queue())
            .push_front(Chunk::Owned { buf, pos: 0 });
    }

    /// Appends a frame built by the protocol session, copying it once.
    pub fn push_frame(&mut self, pool: &mut BufferPool, frame: &Frame<'_>) {
        let len = frame.len();
        if self.staging.capacity() == 0 {
            self.staging = pool.take(len);
        }
        frame.write_to(&mut self.staging);
        self.len += len as u32;
    }

    /// Lets `fill` write up to `max` bytes straight into the staging buffer (TLS
    /// encrypts into it) and keeps the `Ok(n)` bytes it reports written.
    pub fn fill_with<E>(
        &mut self,
        pool: &mut BufferPool,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        if self.staging.capacity() == 0 {
            self.staging = pool.take(max);
        }
        let start = self.staging.len();
        self.staging.resize(start + max, 0);
        let result = fill(&mut self.staging[start..]);
        let written = result.as_ref().map_or(0, |&n| n.min(max));
        self.staging.truncate(start + written);
        self.len += written as u32;
        if self.len == 0 {
            self.clear(pool);
        }
        result
    }

    /// Lets `append` extend the staging buffer (room for `min` bytes reserved;
    /// TLS seals records in place there) and keeps what it appended.
    pub fn append_with(
        &mut self,
        pool: &mut BufferPool,
        min: usize,
        append: impl FnOnce(&mut Vec<u8>),
    ) {
        if self.staging.capacity() == 0 {
            self.staging = pool.take(min);
        }
        let start = self.staging.len();
        append(&mut self.staging);
        debug_assert!(self.staging.len() >= start, "append only");
        self.len += self.staging.len().saturating_sub(start) as u32;
        if self.len == 0 {
            self.clear(pool);
        }
    }

    /// Appends a shared frame without copying it.
    pub fn push_shared(&mut self, pool: &mut BufferPool, frame: Bytes) {
        if frame.is_empty() {
            return;
        }
        self.seal(pool);
        self.len += frame.len() as u32;
        self.chunks
            .get_or_insert_with(|| pool.take_queue())
            .push_back(Chunk::Shared(frame));
    }

    /// Moves staged bytes into the chunk queue, so that they stay where they are
    /// while a completion-based backend sends them (later pushes go to a new
    /// staging buffer).
    pub fn seal(&mut self, pool: &mut BufferPool) {
        if self.staging.len() > self.staging_sent as usize {
            let buf = std::mem::take(&mut self.staging);
            let pos = std::mem::take(&mut self.staging_sent) as usize;
            self.chunks
                .get_or_insert_with(|| pool.take_queue())
                .push_back(Chunk::Owned { buf, pos });
        }
    }

    /// The queued bytes as one slice, when they lie in one piece (the staging
    /// buffer, no chunk before it: a turn's small frames): a writer then needs
    /// no vector of slices.
    pub fn as_one_slice(&self) -> Option<&[u8]> {
        if self
            .chunks
            .as_ref()
            .is_some_and(|chunks| !chunks.is_empty())
        {
            return None;
        }
        Some(&self.staging[self.staging_sent as usize..])
    }

    /// Fills `out` with slices of queued bytes, in order; returns how many.
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        for (slot, chunk) in out
            .iter_mut()
            .zip(self.chunks.iter().flat_map(|c| c.iter()))
        {
            *slot = IoSlice::new(chunk.bytes());
            count += 1;
        }
        if count < out.len() && self.staging.len() > self.staging_sent as usize {
            out[count] = IoSlice::new(&self.staging[self.staging_sent as usize..]);
            count += 1;
        }
        count
    }

    /// Appends a copy of the first `n` queued bytes (or all, if fewer) to
    /// `dst`, across chunks, leaving the queue as it is: a caller that moves
    /// them elsewhere (HTTP/2 DATA frames) then [`Self::consume`]s them.
    /// Returns how many were copied.
    pub fn copy_front(&self, n: usize, dst: &mut Vec<u8>) -> usize {
        let mut left = n.min(self.len());
        let chunks = self.chunks.iter().flat_map(|c| c.iter()).map(Chunk::bytes);
        let staged = std::iter::once(&self.staging[self.staging_sent as usize..]);
        for bytes in chunks.chain(staged) {
            if left == 0 {
                break;
            }
            let take = left.min(bytes.len());
            dst.extend_from_slice(&bytes[..take]);
            left -= take;
        }
        n.min(self.len()) - left
    }

    /// Moves the first `n` queued bytes (or all, if fewer) to the end of
    /// `dst`, copying as little as it can: whole chunks and the staging
    /// buffer change hands; a chunk cut at `n` is split by copying its
    /// shorter side (a shared one by reference). HTTP/2 DATA frames take a
    /// carried WebSocket's frames this way, so a large message is not
    /// copied again between its stream's queue and its socket's.
    pub fn move_front(&mut self, pool: &mut BufferPool, n: usize, dst: &mut Outbox) {
        let mut left = n.min(self.len());
        while left > 0 {
            let piece = match self.chunks.as_mut().and_then(|c| c.pop_front()) {
                Some(chunk) => chunk,
                None => {
                    let pos = std::mem::take(&mut self.staging_sent) as usize;
                    Chunk::Owned {
                        buf: std::mem::take(&mut self.staging),
                        pos,
                    }
                }
            };
            let available = piece.bytes().len();
            let piece = if available <= left {
                piece
            } else {
                let (front, rest) = split_chunk(piece, left, pool);
                self.chunks
                    .get_or_insert_with(|| pool.take_queue())
                    .push_front(rest);
                front
            };
            let moved = piece.bytes().len();
            left -= moved;
            self.len -= moved as u32;
            dst.push_chunk(pool, piece);
        }
        if self.len == 0 {
            self.clear(pool);
        }
    }

    /// Appends a chunk after everything queued.
    fn push_chunk(&mut self, pool: &mut BufferPool, chunk: Chunk) {
        let len = chunk.bytes().len();
        if len == 0 {
            if let Chunk::Owned { buf, .. } = chunk {
                pool.give(buf);
            }
            return;
        }
        self.seal(pool);
        self.len += len as u32;
        self.chunks
            .get_or_insert_with(|| pool.take_queue())
            .push_back(chunk);
    }

    /// Forgets `n` bytes that were written, returning finished buffers to the
    /// pool; once empty, the outbox holds no memory.
    pub fn consume(&mut self, pool: &mut BufferPool, mut n: usize) {
        debug_assert!(n <= self.len as usize);
        self.len -= n as u32;
        while n > 0 {
            let Some(chunks) = self.chunks.as_mut() else {
                break;
            };
            let Some(front) = chunks.front_mut() else {
                break;
            };
            let available = front.bytes().len();
            if n < available {
                match front {
                    Chunk::Shared(b) => b.advance(n),
                    Chunk::Owned { pos, .. } => *pos += n,
                }
                return;
            }
            n -= available;
            if let Some(Chunk::Owned { buf, .. }) = chunks.pop_front() {
                pool.give(buf);
            }
        }
        self.staging_sent += n as u32;
        if self.len == 0 {
            self.clear(pool);
        }
    }

    /// Drops everything queued; buffers go back to the pool.
    pub fn clear(&mut self, pool: &mut BufferPool) {
        if let Some(mut chunks) = self.chunks.take() {
            for chunk in chunks.drain(..) {
                if let Chunk::Owned { buf, .. } = chunk {
                    pool.give(buf);
                }
            }
            pool.give_queue(chunks);
        }
        pool.give(std::mem::take(&mut self.staging));
        self.staging_sent = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests;
