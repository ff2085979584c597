//! The provided-buffer ring the kernel receives into.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

/// The buffer group of the provided receive buffers.
pub(super) const BUFFER_GROUP: u16 = 0;

/// `IOU_PBUF_RING_INC` of `<linux/io_uring.h>`: incrementally consumed provided
/// buffers (since Linux 6.12).
const IOU_PBUF_RING_INC: u16 = 2;

/// The provided-buffer ring: `count` buffers of `size` bytes the kernel fills
/// with received data; each is given back right after its data is parsed.
///
/// The kernel takes buffers in ring order, so a ring holding every buffer
/// would rotate each receive through the whole pool (16 MiB by default) and
/// land it in memory long out of cache: the kernel's copy and the unmasking
/// then run at memory speed. Instead the ring holds only the hot set, as many
/// buffers as recent turns needed plus some headroom; the others wait in a
/// LIFO stack, and each top-up hands the kernel the most recently used ones.
/// A turn that runs short (ENOBUFS) doubles the hot set; it shrinks slowly back
/// to what the load needs, and buffers left unused for a second give their
/// pages back, so a burst leaves no resident memory behind.
pub(super) struct BufRing {
    /// The ring of buffer descriptors, shared with the kernel (mmap'd, page aligned).
    entries: *mut BufRingEntry,
    entries_len: usize,
    /// The buffers themselves, `count * size` bytes (pages untouched until a
    /// buffer is first used).
    data: Box<[u8]>,
    size: usize,
    mask: u16,
    tail: u16,
    /// Incremental consumption (Linux 6.12+): the kernel packs consecutive receives
    /// into one buffer; `consumed[bid]` is where the next receive into it starts.
    incremental: bool,
    consumed: Vec<u32>,
    /// Buffers not in the ring, the most recently used last.
    spare: Vec<u16>,
    /// Buffers in the ring (published or about to be), partly filled ones included.
    in_ring: usize,
    /// How many buffers the ring is topped up to.
    hot: usize,
    /// Buffers the kernel finished since the last top-up.
    used: usize,
    /// A receive found no buffer since the last top-up.
    starved: bool,
    /// Sends in flight reading from each buffer (`Io::write_frame`).
    holds: Vec<u16>,
    /// Finished by the kernel while held: spare once the last send completes.
    retired: Vec<bool>,
    /// Buffers with a hold, at most `max_held`, so that slow readers cannot
    /// take the whole pool.
    held: usize,
    /// Whose pages may be resident (handed to the kernel since their last trim).
    resident: Vec<bool>,
    /// The fewest spare buffers since the last trim: those below it on the
    /// stack went unused.
    low_water: usize,
    last_trim: Instant,
}

impl BufRing {
    /// The smallest hot set, in bytes (at least one buffer).
    const MIN_HOT: usize = 1 << 20;
    /// Kept in the ring beyond what the last batch used, in bytes (at least
    /// one buffer).
    const HEADROOM: usize = 512 << 10;

    pub(super) fn new(ring: &IoUring, count: u16, size: usize) -> io::Result<Self> {
        let entries_len = usize::from(count) * std::mem::size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping with no address hint; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                entries_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Zeroed memory from the allocator is lazily mapped: only the buffers of
        // the hot set ever become resident. The smallest hot set (the first
        // buffers handed out) is faulted in now: a fixed cost per worker, not
        // page faults on the receive path.
        let mut data = vec![0u8; usize::from(count) * size].into_boxed_slice();
        let first = (Self::MIN_HOT.div_ceil(size).max(1) * size).min(data.len());
        for page in data[..first].chunks_mut(4096) {
            // SAFETY: a volatile write of a zero byte to memory this function owns,
            // so the compiler cannot drop the store to a (lazily) zeroed page.
            unsafe { std::ptr::write_volatile(page.as_mut_ptr(), 0) };
        }
        let mut ring_buf = Self {
            entries: ptr.cast(),
            entries_len,
            data,
            size,
            mask: count - 1,
            tail: 0,
            incremental: true,
            consumed: vec![0; usize::from(count)],
            // The lowest ids on top, so the first hot set is the start of the pool.
            spare: (0..count).rev().collect(),
            in_ring: 0,
            hot: 0,
            used: 0,
            starved: false,
            holds: vec![0; usize::from(count)],
            retired: vec![false; usize::from(count)],
            held: 0,
            resident: vec![false; usize::from(count)],
            low_water: usize::from(count),
            last_trim: Instant::now(),
        };
        // SAFETY: the mapping lives as long as `ring_buf`, which the backend drops
        // after the ring (field order), so the kernel never sees it unmapped.
        let registered = unsafe {
            ring.submitter().register_buf_ring_with_flags(
                ptr as u64,
                count,
                BUFFER_GROUP,
                IOU_PBUF_RING_INC,
            )
        };
        if let Err(e) = registered {
            log::debug!(
                "incrementally consumed buffers unavailable ({e}); whole buffers per receive"
            );
            ring_buf.incremental = false;
            // SAFETY: as above.
            unsafe {
                ring.submitter().register_buf_ring_with_flags(
                    ptr as u64,
                    count,
                    BUFFER_GROUP,
                    0,
                )?;
            }
        }
        ring_buf.publish();
        Ok(ring_buf)
    }

    /// Queues buffer `bid` for the kernel (visible after [`Self::publish`]).
    fn push(&mut self, bid: u16) {
        let index = usize::from(self.tail & self.mask);
        let addr = self.data[usize::from(bid) * self.size..].as_ptr() as u64;
        // SAFETY: `index` is below the ring's entry count, inside the mapping.
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(addr);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        self.in_ring += 1;
        self.resident[usize::from(bid)] = true;
    }

    /// After a batch of completions: resizes the hot set to what recent
    /// batches used, tops the ring up to it from the most recently used spare
    /// buffers, and makes them visible to the kernel.
    pub(super) fn publish(&mut self) {
        let count = usize::from(self.mask) + 1;
        let min_hot = Self::MIN_HOT.div_ceil(self.size).max(1);
        let needed = self.used + Self::HEADROOM.div_ceil(self.size).max(1);
        self.hot = if self.starved {
            (self.hot * 2).max(needed)
        } else if needed < self.hot {
            // Shrink by an eighth per batch: a brief lull keeps the set.
            (self.hot - self.hot.div_ceil(8)).max(needed)
        } else {
            needed
        }
        .clamp(min_hot.min(count), count);
        self.used = 0;
        self.starved = false;
        while self.in_ring < self.hot {
            let Some(bid) = self.spare.pop() else { break };
            self.push(bid);
        }
        self.low_water = self.low_water.min(self.spare.len());
        // SAFETY: the tail field overlays the first entry's reserved field, inside
        // the mapping; the kernel reads it with acquire semantics.
        unsafe {
            let tail = BufRingEntry::tail(self.entries).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// Once a second: the pages of buffers unused since the last trim (the
    /// bottom of the spare stack) go back to the kernel.
    pub(super) fn trim(&mut self, now: Instant) {
        if now.duration_since(self.last_trim) < Duration::from_secs(1) {
            return;
        }
        self.last_trim = now;
        let page = 4096;
        for &bid in &self.spare[..self.low_water.min(self.spare.len())] {
            let i = usize::from(bid);
            if !std::mem::take(&mut self.resident[i]) {
                continue;
            }
            // Whole pages inside the buffer only.
            let start = self.data[i * self.size..].as_ptr() as usize;
            let first = start.next_multiple_of(page);
            let end = (start + self.size) / page * page;
            if end > first {
                // SAFETY: the range lies inside `data`, in a spare buffer: not
                // in the ring, not held by a send, not borrowed. Its contents are
                // dead (the next receive overwrites what it reads); after
                // MADV_DONTNEED the pages read as zeroes and fault in on use.
                unsafe {
                    libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_DONTNEED);
                }
            }
        }
        self.low_water = self.spare.len();
    }

    /// A receive found no buffer (ENOBUFS): the next top-up grows the hot set.
    pub(super) fn starved(&mut self) {
        self.starved = true;
    }

    /// The `len` bytes a receive completion put into buffer `bid`.
    pub(super) fn received(&mut self, bid: u16, len: usize) -> &mut [u8] {
        let base = usize::from(bid) * self.size;
        let start = base + self.consumed[usize::from(bid)] as usize;
        let end = (start + len).min(base + self.size);
        &mut self.data[start..end]
    }

    /// After a completion's data is parsed: a buffer the kernel has finished
    /// goes on the spare stack (the next top-up hands it back while it is still
    /// in cache), unless a send still reads from it; one the kernel keeps
    /// filling (incremental mode, `more`) stays.
    pub(super) fn release(&mut self, bid: u16, len: usize, more: bool) {
        let consumed = &mut self.consumed[usize::from(bid)];
        if self.incremental && more {
            *consumed += len as u32;
            return;
        }
        *consumed = 0;
        self.in_ring = self.in_ring.saturating_sub(1);
        self.used += 1;
        if self.holds[usize::from(bid)] > 0 {
            self.retired[usize::from(bid)] = true;
        } else {
            self.spare.push(bid);
        }
    }

    /// Whether another buffer may be held by sends.
    pub(super) fn can_hold(&self, bid: u16) -> bool {
        self.holds[usize::from(bid)] > 0 || self.held < self.max_held()
    }

    /// The most buffers sends may hold at once: half the pool.
    fn max_held(&self) -> usize {
        (usize::from(self.mask) + 1).div_ceil(2)
    }

    /// `sends` sends now read from buffer `bid` (before its release).
    pub(super) fn hold(&mut self, bid: u16, sends: u16) {
        if sends == 0 {
            return;
        }
        let holds = &mut self.holds[usize::from(bid)];
        if *holds == 0 {
            self.held += 1;
        }
        *holds += sends;
    }

    /// A send that read from buffer `bid` completed.
    pub(super) fn unhold(&mut self, bid: u16) {
        let i = usize::from(bid);
        self.holds[i] = self.holds[i].saturating_sub(1);
        if self.holds[i] == 0 {
            self.held = self.held.saturating_sub(1);
            if std::mem::take(&mut self.retired[i]) {
                self.spare.push(bid);
            }
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `new`; the ring is gone by now.
        unsafe {
            libc::munmap(self.entries.cast(), self.entries_len);
        }
    }
}
