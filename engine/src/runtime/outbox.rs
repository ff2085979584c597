//! A connection's send queue. Small frames written during a loop turn are corked
//! into one staging buffer; shared frames (prepared and published messages) are
//! queued by reference. The whole queue goes out in one vectored write at the
//! end of the turn.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};

/// Most iovecs handed to one write.
pub(crate) const MAX_IOVECS: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Frames queued before `staging`, oldest first; the first may be partly sent.
    chunks: VecDeque<Bytes>,
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
    pub fn push_copy(&mut self, header: &[u8], payload: &[u8]) {
        self.staging.reserve(header.len() + payload.len());
        self.staging.extend_from_slice(header);
        self.staging.extend_from_slice(payload);
        self.len += (header.len() + payload.len()) as u32;
    }

    /// Appends a shared frame without copying it.
    pub fn push_shared(&mut self, frame: Bytes) {
        if frame.is_empty() {
            return;
        }
        self.seal_staging();
        self.len += frame.len() as u32;
        self.chunks.push_back(frame);
    }

    /// Moves staged bytes into the chunk queue, so that they stay where they are
    /// while a completion-based backend sends them (later pushes go to a new
    /// staging buffer).
    pub fn seal(&mut self) {
        self.seal_staging();
    }

    /// Moves staged bytes into the chunk queue so that later chunks follow them.
    fn seal_staging(&mut self) {
        if self.staging.len() > self.staging_sent as usize {
            let mut staged = Bytes::from(std::mem::take(&mut self.staging));
            staged.advance(self.staging_sent as usize);
            self.staging_sent = 0;
            self.chunks.push_back(staged);
        }
    }

    /// Fills `out` with slices of queued bytes, in order; returns how many.
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        for (slot, chunk) in out.iter_mut().zip(&self.chunks) {
            *slot = IoSlice::new(chunk);
            count += 1;
        }
        if count < out.len() && self.staging.len() > self.staging_sent as usize {
            out[count] = IoSlice::new(&self.staging[self.staging_sent as usize..]);
            count += 1;
        }
        count
    }

    /// Forgets `n` bytes that were written; frees the buffers once empty, so an
    /// idle connection holds no send memory.
    pub fn consume(&mut self, mut n: usize) {
        debug_assert!(n <= self.len as usize);
        self.len -= n as u32;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
        self.staging_sent += n as u32;
        if self.len == 0 {
            self.clear();
        }
    }

    /// Drops everything queued and frees the memory.
    pub fn clear(&mut self) {
        self.chunks = VecDeque::new();
        self.staging = Vec::new();
        self.staging_sent = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(outbox: &mut Outbox, step: usize) -> Vec<u8> {
        let mut sent = Vec::new();
        while !outbox.is_empty() {
            let mut slices = [IoSlice::new(&[]); 2];
            let count = outbox.io_slices(&mut slices);
            let flat: Vec<u8> = slices[..count]
                .iter()
                .flat_map(|s| s.iter().copied())
                .collect();
            let n = flat.len().min(step);
            sent.extend_from_slice(&flat[..n]);
            outbox.consume(n);
        }
        sent
    }

    #[test]
    fn order_is_kept_across_copied_and_shared_frames() {
        for step in [1, 3, 7, 1000] {
            let mut o = Outbox::default();
            o.push_copy(b"h1", b"aaa");
            o.push_shared(Bytes::from_static(b"SHARED"));
            o.push_copy(b"h2", b"bb");
            o.push_shared(Bytes::from_static(b"X"));
            assert_eq!(o.len(), 5 + 6 + 4 + 1);
            assert_eq!(drain(&mut o, step), b"h1aaaSHAREDh2bbX", "step {step}");
            assert!(o.is_empty());
        }
    }

    #[test]
    fn partial_writes_resume_and_memory_is_freed() {
        let mut o = Outbox::default();
        o.push_copy(b"", &[1; 100]);
        o.consume(40);
        o.push_shared(Bytes::from(vec![2; 10]));
        assert_eq!(o.len(), 70);
        let rest = drain(&mut o, 13);
        assert_eq!(rest, [vec![1; 60], vec![2; 10]].concat());
        assert_eq!(o.staging.capacity(), 0);
        assert_eq!(o.chunks.capacity(), 0);
    }
}
