//! The io_uring backend: one ring per worker (single issuer, deferred task
//! work), multishot accept straight into the ring's fixed-file table (accepted
//! sockets never enter the process fd table), multishot receive on a
//! provided-buffer ring parsed in place, one send per connection per turn, and
//! every turn's submissions in one `io_uring_enter`.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::squeue::Entry;
use io_uring::types::{BufRingEntry, Fd, Fixed, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, opcode};
use slab::Slab;

use super::signals::SignalFd;
use crate::config::Config;
use crate::runtime::command::Wake;
use crate::runtime::handler::Handler;
use crate::runtime::seam::{FrameParts, Hangup, Io, Written, unsent};
use crate::runtime::worker::{Worker, shrink_idle};
use crate::transport::outbox::{MAX_IOVECS, Outbox};

/// What a completion belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Op {
    Accept = 1,
    PeerName,
    Recv,
    Send,
    Shutdown,
    Close,
    CloseRefused,
    Wake,
    Cancel,
    Signal,
}

impl Op {
    const ALL: [Op; 10] = [
        Op::Accept,
        Op::PeerName,
        Op::Recv,
        Op::Send,
        Op::Shutdown,
        Op::Close,
        Op::CloseRefused,
        Op::Wake,
        Op::Cancel,
        Op::Signal,
    ];

    fn from_u8(value: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|op| *op as u8 == value)
    }
}

/// A submission's user_data: the operation (8 bits), the generation of the
/// connection's slot (24 bits) and an index (32 bits: slab key, listener or
/// pending peer name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tag {
    op: Op,
    generation: u32,
    index: u32,
}

impl Tag {
    const GENERATION_MASK: u32 = 0xff_ffff;

    /// An operation on connection `key` in a slot of `generation`.
    fn conn(op: Op, generation: u32, key: usize) -> Self {
        Self {
            op,
            generation: generation & Self::GENERATION_MASK,
            index: key as u32,
        }
    }

    /// An operation not tied to a connection's slot.
    fn other(op: Op, index: usize) -> Self {
        Self::conn(op, 0, index)
    }

    fn encode(self) -> u64 {
        (u64::from(self.op as u8) << 56)
            | (u64::from(self.generation) << 32)
            | u64::from(self.index)
    }

    fn decode(data: u64) -> Option<Self> {
        Some(Self {
            op: Op::from_u8((data >> 56) as u8)?,
            generation: (data >> 32) as u32 & Self::GENERATION_MASK,
            index: data as u32,
        })
    }
}

/// The buffer group of the provided receive buffers.
const BUFFER_GROUP: u16 = 0;

/// `IOU_PBUF_RING_INC` of `<linux/io_uring.h>`: incrementally consumed provided
/// buffers (since Linux 6.12).
const IOU_PBUF_RING_INC: u16 = 2;

/// `SOCKET_URING_OP_GETSOCKOPT` of `<linux/io_uring.h>` (since Linux 6.7).
const SOCKET_URING_OP_GETSOCKOPT: u32 = 2;

/// Checks that io_uring works here and has every operation this backend uses.
/// `Err` carries a one-line reason (for the fallback log line or the error of a
/// forced io_uring backend).
///
/// The probe's ring is set up on a thread of its own: when a ring closes, the
/// kernel's exit work signals each thread that set it up (task work with
/// TWA_SIGNAL), and a blocking call with a timeout that the signal finds on the
/// caller's thread (a read with `SO_RCVTIMEO`, a timed connect) would fail with
/// EINTR, which it does not restart.
pub(crate) fn probe() -> Result<(), String> {
    std::thread::Builder::new()
        .name("ringws-probe".into())
        .spawn(probe_on_this_thread)
        .map_err(|e| format!("no thread to probe io_uring on: {e}"))?
        .join()
        .unwrap_or_else(|_| Err("the io_uring probe panicked".into()))
}

fn probe_on_this_thread() -> Result<(), String> {
    let ring = IoUring::new(8).map_err(|e| format!("io_uring_setup failed: {e}"))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("io_uring probe failed: {e}"))?;
    let needed = [
        ("accept", opcode::AcceptMulti::CODE),
        ("recv", opcode::RecvMulti::CODE),
        ("send", opcode::Send::CODE),
        ("sendmsg", opcode::SendMsg::CODE),
        ("shutdown", opcode::Shutdown::CODE),
        ("close", opcode::Close::CODE),
        ("read", opcode::Read::CODE),
        ("async_cancel", opcode::AsyncCancel::CODE),
        ("poll_add", opcode::PollAdd::CODE),
        ("uring_cmd", opcode::UringCmd16::CODE),
    ];
    for (name, code) in needed {
        if !probe.is_supported(code) {
            return Err(format!("io_uring lacks the {name} operation"));
        }
    }
    Ok(())
}

/// The eventfd other threads write to wake the worker.
struct EventFd(OwnedFd);

impl Wake for EventFd {
    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd this struct owns.
        // A failure (counter saturated) still leaves the eventfd readable.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
    }
}

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
struct BufRing {
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

    fn new(ring: &IoUring, count: u16, size: usize) -> io::Result<Self> {
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
    fn publish(&mut self) {
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
    fn trim(&mut self, now: Instant) {
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
    fn starved(&mut self) {
        self.starved = true;
    }

    /// The `len` bytes a receive completion put into buffer `bid`.
    fn received(&mut self, bid: u16, len: usize) -> &mut [u8] {
        let base = usize::from(bid) * self.size;
        let start = base + self.consumed[usize::from(bid)] as usize;
        let end = (start + len).min(base + self.size);
        &mut self.data[start..end]
    }

    /// After a completion's data is parsed: a buffer the kernel has finished
    /// goes on the spare stack (the next top-up hands it back while it is still
    /// in cache), unless a send still reads from it; one the kernel keeps
    /// filling (incremental mode, `more`) stays.
    fn release(&mut self, bid: u16, len: usize, more: bool) {
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
    fn can_hold(&self, bid: u16) -> bool {
        self.holds[usize::from(bid)] > 0 || self.held < self.max_held()
    }

    /// The most buffers sends may hold at once: half the pool.
    fn max_held(&self) -> usize {
        (usize::from(self.mask) + 1).div_ceil(2)
    }

    /// `sends` sends now read from buffer `bid` (before its release).
    fn hold(&mut self, bid: u16, sends: u16) {
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
    fn unhold(&mut self, bid: u16) {
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

/// A send in flight: its message header and iovecs, at a fixed address until the
/// completion arrives.
struct SendBuf {
    header: libc::msghdr,
    iovecs: [libc::iovec; MAX_IOVECS],
    offered: usize,
    /// A frame sent from where it lies (`Io::write_frame`): its header (the
    /// first iovec) and the provided buffer its payload (the second) is in,
    /// held until this send completes.
    frame_head: [u8; 10],
    held: Option<u16>,
}

/// The received data being handed to the worker: a frame whose payload lies
/// inside it can be sent from there (its buffer held until the send completes).
#[derive(Debug, Clone, Copy)]
struct Delivery {
    bid: u16,
    start: usize,
    end: usize,
    /// Sends submitted from it.
    sends: u16,
    /// Whether the pool allows holding the buffer.
    holdable: bool,
}

/// A connection's side of the ring, indexed by the worker's slab key: 16
/// bytes (its states are bits of one byte), since there is one per connection.
#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    /// Index in the fixed-file table.
    fixed: u32,
    generation: u32,
    /// A send in flight (its SendBuf index + 1; 0 for none).
    send: u32,
    /// [`Slot::IN_USE`] and the other states.
    states: u8,
}

impl Slot {
    /// A connection holds the slot (a released slot keeps only its generation,
    /// and must never be armed: its `fixed` index may belong to another).
    const IN_USE: u8 = 1;
    /// Multishot receive armed.
    const RECEIVING: u8 = 1 << 1;
    /// Not to be re-armed: the rate limit paused reading.
    const PAUSED: u8 = 1 << 2;
    /// A shutdown in flight. It may run later on a kernel worker and look the
    /// fixed slot up only then, so the close waits for it: otherwise it could
    /// hit a new connection accepted into the freed slot.
    const SHUTTING: u8 = 1 << 3;
    const CLOSING: u8 = 1 << 4;
    const CLOSE_SUBMITTED: u8 = 1 << 5;
    const CLOSED: u8 = 1 << 6;

    /// Whether any of `states` is set.
    fn is(&self, state: u8) -> bool {
        self.states & state != 0
    }

    fn set(&mut self, state: u8, on: bool) {
        if on {
            self.states |= state;
        } else {
            self.states &= !state;
        }
    }

    /// Clears `state`, returning whether it was set.
    fn take(&mut self, state: u8) -> bool {
        let was = self.is(state);
        self.set(state, false);
        was
    }
}

/// A sockaddr buffer for the peer-name request of an accepted connection.
struct PeerName {
    fixed: u32,
    /// The listener (its index in `Config::listen_addrs`) that accepted it.
    listener: usize,
    addr: libc::sockaddr_storage,
}

/// A worker's io_uring loop, before it runs.
pub(crate) struct UringBackend {
    // Field order is drop order: the ring goes before the memory it uses.
    ring: IoUring,
    buffers: BufRing,
    listeners: Vec<TcpListener>,
    wake: Arc<EventFd>,
    wake_buf: Box<u64>,
    signals: Option<SignalFd>,
}

impl UringBackend {
    /// Sets up the ring on the calling thread (the ring's single issuer).
    /// `signals`: termination signals to watch (worker 0 of `Server::run`).
    pub fn new(
        listeners: Vec<TcpListener>,
        config: &Config,
        signals: Option<SignalFd>,
    ) -> io::Result<Self> {
        let entries = config.uring_entries;
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(entries * 4)
            .setup_submit_all()
            .build(entries)
            .or_else(|_| {
                // Kernels before 6.1 lack DEFER_TASKRUN.
                IoUring::builder()
                    .setup_coop_taskrun()
                    .setup_cqsize(entries * 4)
                    .build(entries)
            })?;
        ring.submitter().register_ring_fd()?;
        // Direct descriptors: as many as the worker may hold, halved until the kernel
        // accepts the table size (it is bounded by RLIMIT_NOFILE).
        let wanted = u64::try_from(config.max_connections_per_worker + 64).unwrap_or(u64::MAX);
        let mut table = u32::try_from(wanted.min(nofile_limit())).unwrap_or(u32::MAX);
        loop {
            match ring.submitter().register_files_sparse(table) {
                Ok(()) => break,
                Err(e) if table > 1024 => {
                    log::debug!(
                        "fixed-file table of {table} refused ({e}); trying {}",
                        table / 2
                    );
                    table /= 2;
                }
                Err(e) => return Err(e),
            }
        }
        let buffers = BufRing::new(&ring, config.uring_buffer_count, config.uring_buffer_size)?;
        // SAFETY: eventfd returns a new descriptor or -1, checked before use.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` is a fresh descriptor nobody else owns.
        let wake = Arc::new(EventFd(unsafe { OwnedFd::from_raw_fd(efd) }));
        Ok(Self {
            ring,
            buffers,
            listeners,
            wake,
            wake_buf: Box::new(0),
            signals,
        })
    }

    pub fn waker(&self) -> Arc<dyn Wake> {
        self.wake.clone()
    }

    /// Runs the worker until it has shut down.
    pub fn run<H: Handler>(self, mut worker: Worker<H>) -> io::Result<()> {
        let Self {
            ring,
            buffers,
            listeners,
            wake,
            wake_buf,
            signals,
        } = self;
        // The listener's family gives the size of its peers' addresses.
        let listener_v6 = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.is_ipv6()))
            .collect::<io::Result<_>>()?;
        // Declared before `io`, so dropped after it: the kernel never sees the
        // buffers go while the ring lives.
        let mut buffers = buffers;
        let mut io = Ring {
            ring,
            accepting: (0..listeners.len()).collect(),
            listeners,
            listener_v6,
            listening: true,
            wake_fd: wake.0.as_raw_fd(),
            wake_buf,
            signals,
            slots: Vec::new(),
            peers: Slab::new(),
            sends: Slab::new(),
            spare_sends: Vec::new(),
            rearm: Vec::new(),
            delivering: None,
            error: None,
        };
        let result = io.run(&mut worker, &mut buffers);
        drop(wake);
        result
    }
}

/// The ring and everything in flight on it: the backend's half of the seam.
struct Ring {
    ring: IoUring,
    listeners: Vec<TcpListener>,
    listener_v6: Vec<bool>,
    /// Listeners whose multishot accept must be (re-)armed.
    accepting: Vec<usize>,
    listening: bool,
    wake_fd: RawFd,
    wake_buf: Box<u64>,
    signals: Option<SignalFd>,
    slots: Vec<Slot>,
    /// Peer-name requests of accepted connections not yet handed to the worker.
    peers: Slab<Box<PeerName>>,
    sends: Slab<Box<SendBuf>>,
    /// Send buffers between uses; boxed because their addresses go to the kernel
    /// and must not move when they change hands.
    #[allow(clippy::vec_box)]
    spare_sends: Vec<Box<SendBuf>>,
    /// Connections whose receive must be re-armed at the end of the turn.
    rearm: Vec<usize>,
    /// Set while received data is with the worker.
    delivering: Option<Delivery>,
    /// The first submission failure; the loop stops with it.
    error: Option<io::Error>,
}

impl Ring {
    fn run<H: Handler>(&mut self, worker: &mut Worker<H>, buffers: &mut BufRing) -> io::Result<()> {
        self.arm_accepts();
        self.arm_wake();
        self.arm_signals();
        let mut completions: Vec<(u64, i32, u32)> = Vec::with_capacity(1024);
        let mut wait = Duration::ZERO;
        loop {
            let timeout = wait.min(Duration::from_secs(1));
            let ts = Timespec::new()
                .sec(timeout.as_secs())
                .nsec(timeout.subsec_nanos());
            let args = SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                    ) => {}
                Err(e) => return Err(e),
            }
            completions.clear();
            completions.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(data, result, flags) in &completions {
                if let Some(tag) = Tag::decode(data) {
                    self.complete(worker, buffers, tag, result, flags);
                }
            }
            buffers.publish();
            if self.listening {
                self.arm_accepts();
            }
            for key in std::mem::take(&mut self.rearm) {
                self.arm_recv(key);
            }
            let now = Instant::now();
            let turn = worker.end_turn(now, self);
            buffers.trim(now);
            if let Some(e) = self.error.take() {
                return Err(e);
            }
            shrink_idle(&mut completions);
            if turn.finished && self.peers.is_empty() {
                // Closes of the last connections are submitted; let them run.
                let _ = self.ring.submit();
                return Ok(());
            }
            wait = turn.wait;
        }
    }

    /// Queues a submission, making room by submitting when the queue is full.
    fn push(&mut self, entry: Entry) {
        loop {
            // SAFETY: every buffer an entry points to (peer names, send buffers,
            // the wake counter, provided buffers) stays allocated until its
            // completion has been reaped; see the owners of each.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                self.error.get_or_insert(e);
                return;
            }
        }
    }

    fn arm_accepts(&mut self) {
        for i in std::mem::take(&mut self.accepting) {
            let fd = Fd(self.listeners[i].as_raw_fd());
            // No SOCK_CLOEXEC: direct descriptors are not in the fd table at all.
            let entry = opcode::AcceptMulti::new(fd)
                .allocate_file_index(true)
                .build()
                .user_data(Tag::other(Op::Accept, i).encode());
            self.push(entry);
        }
    }

    fn arm_wake(&mut self) {
        let buf: *mut u64 = &mut *self.wake_buf;
        let entry = opcode::Read::new(Fd(self.wake_fd), buf.cast(), 8)
            .build()
            .user_data(Tag::other(Op::Wake, 0).encode());
        self.push(entry);
    }

    /// A poll of the signalfd, read by the worker's thread on completion
    /// (not by the ring, whose read could run on a kernel worker thread, which
    /// does not see a signal sent to this thread).
    fn arm_signals(&mut self) {
        let Some(signals) = &self.signals else {
            return;
        };
        let entry = opcode::PollAdd::new(Fd(signals.raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(Tag::other(Op::Signal, 0).encode());
        self.push(entry);
    }

    fn arm_recv(&mut self, key: usize) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if !slot.is(Slot::IN_USE) || slot.is(Slot::RECEIVING | Slot::CLOSING | Slot::PAUSED) {
            return;
        }
        slot.set(Slot::RECEIVING, true);
        let entry = opcode::RecvMulti::new(Fixed(slot.fixed), BUFFER_GROUP)
            .build()
            .user_data(Tag::conn(Op::Recv, slot.generation, key).encode());
        self.push(entry);
    }

    fn complete<H: Handler>(
        &mut self,
        worker: &mut Worker<H>,
        buffers: &mut BufRing,
        tag: Tag,
        result: i32,
        flags: u32,
    ) {
        let key = tag.index as usize;
        match tag.op {
            Op::Accept => self.accepted(key, result, flags),
            Op::PeerName => self.peer_named(worker, key, result),
            Op::Recv => self.received(worker, buffers, key, tag.generation, result, flags),
            Op::Send => self.sent(worker, buffers, key, tag.generation, result),
            Op::Close => {
                if let Some(slot) = self.live_slot(key, tag.generation) {
                    slot.set(Slot::CLOSED, true);
                }
                self.try_release(worker, key);
            }
            Op::Shutdown => {
                if let Some(slot) = self.live_slot(key, tag.generation) {
                    slot.set(Slot::SHUTTING, false);
                    if slot.is(Slot::CLOSING) {
                        self.submit_close(key);
                    }
                }
            }
            // Commands are run at the end of the turn.
            Op::Wake => self.arm_wake(),
            // A failed poll (cancelled as the ring ends) is not re-armed.
            Op::Signal if result >= 0 => {
                if let Some(signal) = self.signals.as_ref().and_then(SignalFd::drain) {
                    worker.on_signal(signal);
                }
                self.arm_signals();
            }
            Op::Signal => {}
            // Cancel and the close of a refused socket need no follow-up.
            Op::Cancel | Op::CloseRefused => {}
        }
    }

    fn live_slot(&mut self, key: usize, generation: u32) -> Option<&mut Slot> {
        self.slots
            .get_mut(key)
            .filter(|s| s.generation & Tag::GENERATION_MASK == generation)
    }

    /// A multishot accept completion: a new direct descriptor. Its peer address
    /// is asked for before the worker sees it.
    fn accepted(&mut self, listener: usize, result: i32, flags: u32) {
        if result < 0 {
            let error = io::Error::from_raw_os_error(-result);
            match -result {
                libc::ECANCELED => {}
                // Per-connection or resource trouble: keep accepting.
                libc::ECONNABORTED
                | libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EAGAIN
                | libc::EINTR
                | libc::EPERM => {
                    log::debug!("accept failed: {error}");
                    if !cqueue::more(flags) && self.listening {
                        self.accepting.push(listener);
                    }
                }
                _ => log::error!(
                    "ringws: accept on listener {listener} failed, not re-armed: {error}"
                ),
            }
            return;
        }
        if !cqueue::more(flags) && self.listening {
            self.accepting.push(listener);
        }
        let fixed = result as u32;
        let v6 = self.listener_v6.get(listener).copied().unwrap_or(false);
        let pending = self.peers.insert(Box::new(PeerName {
            fixed,
            listener,
            // SAFETY: sockaddr_storage is plain old data; all zeroes is valid.
            addr: unsafe { std::mem::zeroed() },
        }));
        let entry = peer_name_request(&mut self.peers[pending], v6)
            .user_data(Tag::other(Op::PeerName, pending).encode());
        self.push(entry);
    }

    /// The peer address of an accepted socket arrived: hand it to the worker.
    fn peer_named<H: Handler>(&mut self, worker: &mut Worker<H>, pending: usize, result: i32) {
        let Some(peer) = self.peers.try_remove(pending) else {
            return;
        };
        let addr = if result >= 0 {
            sockaddr_to_std(&peer.addr)
        } else {
            None
        };
        let key = addr.and_then(|addr| worker.on_accept(addr, peer.listener));
        let Some(key) = key else {
            // Worker full, shutting down, or the peer is already gone.
            let entry = opcode::Close::new(Fixed(peer.fixed))
                .build()
                .user_data(Tag::other(Op::CloseRefused, 0).encode());
            return self.push(entry);
        };
        if self.slots.len() <= key {
            self.slots.resize(key + 1, Slot::default());
        }
        let slot = &mut self.slots[key];
        let generation = slot.generation;
        *slot = Slot {
            fixed: peer.fixed,
            generation,
            states: Slot::IN_USE,
            ..Slot::default()
        };
        self.arm_recv(key);
    }

    fn received<H: Handler>(
        &mut self,
        worker: &mut Worker<H>,
        buffers: &mut BufRing,
        key: usize,
        generation: u32,
        result: i32,
        flags: u32,
    ) {
        let buffer = cqueue::buffer_select(flags);
        let more = cqueue::more(flags);
        let live = self.live_slot(key, generation).is_some();
        let len = result.max(0) as usize;
        if let Some(bid) = buffer {
            if live && len > 0 {
                let holdable = buffers.can_hold(bid);
                let data = buffers.received(bid, len);
                let start = data.as_ptr() as usize;
                self.delivering = Some(Delivery {
                    bid,
                    start,
                    end: start + data.len(),
                    sends: 0,
                    holdable,
                });
                worker.on_data(key, data, self);
                if let Some(delivery) = self.delivering.take() {
                    buffers.hold(bid, delivery.sends);
                }
            }
            // Parsed (or stale): the buffer goes back to the kernel, once no
            // send reads from it.
            buffers.release(bid, len, cqueue::buffer_more(flags));
        }
        if !live {
            return;
        }
        let slot = &mut self.slots[key];
        if !more {
            slot.set(Slot::RECEIVING, false);
        }
        match result {
            0 => worker.on_hangup(key, Hangup::Eof),
            r if r > 0 => {
                if !more {
                    self.rearm.push(key);
                }
            }
            // Buffers ran out: they are back by the end of this turn; re-arm then.
            r if r == -libc::ENOBUFS => {
                buffers.starved();
                worker.on_buffers_exhausted();
                self.rearm.push(key);
            }
            // Cancelled by a pause; if reading resumed before this arrived,
            // re-arm now (arm_recv skips a paused one).
            r if r == -libc::ECANCELED => self.rearm.push(key),
            _ => worker.on_hangup(key, Hangup::Error),
        }
        self.try_release(worker, key);
    }

    fn sent<H: Handler>(
        &mut self,
        worker: &mut Worker<H>,
        buffers: &mut BufRing,
        key: usize,
        generation: u32,
        result: i32,
    ) {
        let Some(slot) = self.live_slot(key, generation) else {
            return;
        };
        let send = std::mem::take(&mut slot.send) as usize;
        let Some(mut buf) = self.sends.try_remove(send.wrapping_sub(1)) else {
            return self.try_release(worker, key);
        };
        let offered = buf.offered;
        let written = usize::try_from(result).unwrap_or(0);
        let closing = self.slots[key].is(Slot::CLOSING);
        let direct = buf.held.is_some();
        if let Some(bid) = buf.held.take() {
            if result >= 0 && written < offered && !closing {
                // What the socket did not take is copied before the buffer goes.
                // SAFETY: the two iovecs point at `frame_head` (inside `buf`)
                // or into provided buffer `bid`, held until the `unhold`
                // below, so both are live and unchanged.
                let (head, payload) = unsafe {
                    (
                        std::slice::from_raw_parts(
                            buf.iovecs[0].iov_base as *const u8,
                            buf.iovecs[0].iov_len,
                        ),
                        std::slice::from_raw_parts(
                            buf.iovecs[1].iov_base as *const u8,
                            buf.iovecs[1].iov_len,
                        ),
                    )
                };
                worker.on_frame_sent(key, written, unsent(head, payload, written), self);
                buffers.unhold(bid);
                self.spare_sends.push(buf);
                return worker.on_writable(key);
            }
            buffers.unhold(bid);
        }
        self.spare_sends.push(buf);
        if closing {
            return self.try_release(worker, key);
        }
        if result < 0 {
            // The worker aborts it at the end of the turn.
            return worker.on_hangup(key, Hangup::Error);
        }
        if direct {
            return worker.on_frame_sent(key, written, (&[], &[]), self);
        }
        let short = written < offered;
        worker.on_sent(key, written, short, self);
        if short {
            // The socket took part of it: send the rest, in order, next turn.
            worker.on_writable(key);
        }
    }

    /// Keeps `buf` in flight for `key` (its completion returns it) and queues
    /// its send.
    fn submit_send(&mut self, key: usize, generation: u32, buf: Box<SendBuf>, entry: Entry) {
        let index = self.sends.insert(buf);
        self.slots[key].send = index as u32 + 1;
        self.push(entry.user_data(Tag::conn(Op::Send, generation, key).encode()));
    }

    /// A send buffer, reused if one is spare.
    fn send_buf(&mut self) -> Box<SendBuf> {
        match self.spare_sends.pop() {
            Some(mut buf) => {
                buf.held = None;
                buf
            }
            None => Box::new(SendBuf {
                // SAFETY: msghdr and iovec are plain old data; zeroes are valid.
                header: unsafe { std::mem::zeroed() },
                iovecs: [libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }; MAX_IOVECS],
                offered: 0,
                frame_head: [0; 10],
                held: None,
            }),
        }
    }

    /// Closes the direct descriptor once no shutdown on it is in flight.
    fn submit_close(&mut self, key: usize) {
        let slot = &mut self.slots[key];
        if slot.is(Slot::SHUTTING | Slot::CLOSE_SUBMITTED) {
            return;
        }
        slot.set(Slot::CLOSE_SUBMITTED, true);
        let entry = opcode::Close::new(Fixed(slot.fixed))
            .build()
            .user_data(Tag::conn(Op::Close, slot.generation, key).encode());
        self.push(entry);
    }

    /// Forgets a closing connection once nothing of it is in flight.
    fn try_release<H: Handler>(&mut self, worker: &mut Worker<H>, key: usize) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let done = slot.states & (Slot::CLOSING | Slot::CLOSED | Slot::RECEIVING | Slot::SHUTTING);
        if done == Slot::CLOSING | Slot::CLOSED && slot.send == 0 {
            *slot = Slot {
                generation: slot.generation.wrapping_add(1) & Tag::GENERATION_MASK,
                ..Slot::default()
            };
            worker.on_released(key);
        }
    }
}

impl Io for Ring {
    fn writes_later(&self) -> bool {
        true
    }

    /// One send for the connection's whole queue, unless one is in flight (its
    /// completion resumes the queue).
    fn write(&mut self, key: usize, outbox: &mut Outbox) -> Written {
        let Some(&slot) = self.slots.get(key) else {
            return Written::Failed;
        };
        if slot.send != 0 || slot.is(Slot::CLOSING) {
            return Written::Later;
        }
        // The worker sealed the staged bytes (`writes_later`): later sends
        // cannot move them while the kernel reads them.
        let mut buf = self.send_buf();
        let mut slices = [std::io::IoSlice::new(&[]); MAX_IOVECS];
        let count = outbox.io_slices(&mut slices);
        buf.offered = 0;
        for (iov, slice) in buf.iovecs.iter_mut().zip(&slices[..count]) {
            iov.iov_base = slice.as_ptr() as *mut libc::c_void;
            iov.iov_len = slice.len();
            buf.offered += slice.len();
        }
        let entry = if count == 1 {
            opcode::Send::new(
                Fixed(slot.fixed),
                buf.iovecs[0].iov_base as *const u8,
                buf.offered as u32,
            )
            .flags(libc::MSG_NOSIGNAL)
            .build()
        } else {
            buf.header.msg_iov = buf.iovecs.as_mut_ptr();
            buf.header.msg_iovlen = count;
            opcode::SendMsg::new(Fixed(slot.fixed), &raw const buf.header)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build()
        };
        self.submit_send(key, slot.generation, buf, entry);
        Written::Later
    }

    /// Submits header and payload as they lie when the payload is inside the
    /// received data being delivered: its provided buffer is held until the
    /// send completes (`on_frame_sent`), so nothing is copied unless the
    /// socket takes only part. A frame lying whole there (an echo framed in
    /// place) goes as one plain send, else header and payload as a vectored
    /// one. Elsewhere (the caller's own slice), `None`.
    fn write_frame(&mut self, key: usize, frame: FrameParts<'_>) -> Option<Written> {
        let FrameParts {
            header,
            payload,
            whole,
        } = frame;
        let slot = *self.slots.get(key)?;
        let delivery = self.delivering.as_mut()?;
        let inside = |bytes: &[u8]| {
            let start = bytes.as_ptr() as usize;
            start >= delivery.start && start + bytes.len() <= delivery.end
        };
        if !inside(payload) || !delivery.holdable || slot.send != 0 || slot.is(Slot::CLOSING) {
            return None;
        }
        let whole = whole.filter(|whole| inside(whole));
        delivery.sends += 1;
        let bid = delivery.bid;
        let mut buf = self.send_buf();
        buf.iovecs[0] = match whole {
            Some(whole) => libc::iovec {
                iov_base: whole.as_ptr() as *mut libc::c_void,
                iov_len: header.len(),
            },
            None => {
                buf.frame_head[..header.len()].copy_from_slice(header);
                libc::iovec {
                    iov_base: buf.frame_head.as_mut_ptr().cast(),
                    iov_len: header.len(),
                }
            }
        };
        buf.iovecs[1] = libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        };
        buf.offered = header.len() + payload.len();
        buf.held = Some(bid);
        let entry = match whole {
            Some(whole) => opcode::Send::new(Fixed(slot.fixed), whole.as_ptr(), whole.len() as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build(),
            None => {
                buf.header.msg_iov = buf.iovecs.as_mut_ptr();
                buf.header.msg_iovlen = 2;
                opcode::SendMsg::new(Fixed(slot.fixed), &raw const buf.header)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
            }
        };
        self.submit_send(key, slot.generation, buf, entry);
        Some(Written::Later)
    }

    fn shutdown_write(&mut self, key: usize) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.is(Slot::SHUTTING | Slot::CLOSING) {
            return;
        }
        slot.set(Slot::SHUTTING, true);
        let entry = opcode::Shutdown::new(Fixed(slot.fixed), libc::SHUT_WR)
            .build()
            .user_data(Tag::conn(Op::Shutdown, slot.generation, key).encode());
        self.push(entry);
    }

    /// Cancels the connection's receive and closes its descriptor; the worker
    /// forgets it once every operation on it has completed.
    fn close(&mut self, key: usize) -> bool {
        let Some(slot) = self.slots.get_mut(key) else {
            return true;
        };
        if slot.is(Slot::CLOSING) {
            return false;
        }
        slot.set(Slot::CLOSING, true);
        let (generation, receiving) = (slot.generation, slot.is(Slot::RECEIVING));
        if receiving {
            let target = Tag::conn(Op::Recv, generation, key).encode();
            self.push(
                opcode::AsyncCancel::new(target)
                    .build()
                    .user_data(Tag::other(Op::Cancel, 0).encode()),
            );
        }
        self.submit_close(key);
        false
    }

    /// Cancels the connection's multishot receive; data already completed is
    /// still delivered.
    fn pause_reading(&mut self, key: usize) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.is(Slot::PAUSED | Slot::CLOSING) {
            return;
        }
        slot.set(Slot::PAUSED, true);
        if slot.is(Slot::RECEIVING) {
            let target = Tag::conn(Op::Recv, slot.generation, key).encode();
            self.push(
                opcode::AsyncCancel::new(target)
                    .build()
                    .user_data(Tag::other(Op::Cancel, 0).encode()),
            );
        }
    }

    fn resume_reading(&mut self, key: usize) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.take(Slot::PAUSED) {
            self.arm_recv(key);
        }
    }

    /// Cancels the accepts and closes the listeners: with
    /// `net.ipv4.tcp_migrate_req`, connections queued on them move to another
    /// listener of the port (a new process taking over) instead of being reset.
    fn stop_accepting(&mut self) {
        self.listening = false;
        self.accepting.clear();
        for i in 0..self.listeners.len() {
            self.push(
                opcode::AsyncCancel::new(Tag::other(Op::Accept, i).encode())
                    .build()
                    .user_data(Tag::other(Op::Cancel, 0).encode()),
            );
        }
        // The in-flight accepts hold their own reference until cancelled.
        self.listeners.clear();
    }
}

/// The io_uring socket command asking for the peer's address
/// (`SOCKET_URING_OP_GETSOCKOPT` with `SO_PEERNAME`) of a direct descriptor,
/// into `peer.addr`. SO_PEERNAME refuses a buffer longer than the address, so
/// the length is exactly the family's sockaddr.
fn peer_name_request(peer: &mut PeerName, v6: bool) -> Entry {
    let len = if v6 {
        std::mem::size_of::<libc::sockaddr_in6>()
    } else {
        std::mem::size_of::<libc::sockaddr_in>()
    } as u32;
    let optval: *mut libc::sockaddr_storage = &mut peer.addr;
    // The crate builds socket commands only as SetSockOpt; get and set differ in
    // the command code alone, patched below.
    let mut entry = opcode::SetSockOpt::new(
        Fixed(peer.fixed),
        libc::SOL_SOCKET as u32,
        libc::SO_PEERNAME as u32,
        optval.cast(),
        len,
    )
    .build();
    // SAFETY: Entry is repr(C) over the 64-byte io_uring_sqe (asserted at the
    // end of this file), whose bytes 8..12 hold cmd_op for IORING_OP_URING_CMD.
    unsafe {
        let raw = &mut *(&raw mut entry).cast::<[u8; 64]>();
        raw[8..12].copy_from_slice(&SOCKET_URING_OP_GETSOCKOPT.to_ne_bytes());
    }
    entry
}

/// The hard RLIMIT_NOFILE, which bounds a ring's fixed-file table (each ring has
/// its own table of that size, outside the process fd table).
fn nofile_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_max
    } else {
        1024
    }
}

/// Converts a kernel socket address to a std one (IPv4 and IPv6 only).
fn sockaddr_to_std(addr: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in, which fits.
            let v4 =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(v4.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6, which fits.
            let v6 =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

// The SQE patch above relies on the entry being exactly one io_uring_sqe.
const _: () = assert!(std::mem::size_of::<Entry>() == 64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_keep_generations_apart() {
        for op in Op::ALL {
            for (generation, key) in [(0, 0), (1, 7), (0xff_ffff, u32::MAX as usize)] {
                let tag = Tag::conn(op, generation, key);
                assert_eq!(Tag::decode(tag.encode()), Some(tag));
            }
        }
        // The generation wraps within its 24 bits, so a recycled slot's old
        // completions never match the new connection.
        assert_eq!(Tag::conn(Op::Recv, 0x100_0001, 3).generation, 1);
        assert_ne!(
            Tag::conn(Op::Recv, 1, 3).encode(),
            Tag::conn(Op::Recv, 2, 3).encode()
        );
        assert_eq!(Tag::decode(0), None, "no operation 0");
    }

    /// A blocking read with a timeout, on a connected socket with nothing to
    /// read: `true` if EINTR cut it short.
    fn timed_read_is_interrupted() -> bool {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _peer = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap();
        match stream.read(&mut [0; 8]) {
            Err(e) => e.kind() == io::ErrorKind::Interrupted,
            Ok(n) => panic!("read {n} bytes from a silent peer"),
        }
    }

    #[test]
    fn probing_leaves_the_calling_thread_uninterrupted() {
        // The test's premise: a ring closed on this thread interrupts its next
        // timed read (if this kernel stops doing so, the test below proves nothing).
        drop(IoUring::new(8).expect("io_uring on the test machine"));
        assert!(
            timed_read_is_interrupted(),
            "premise: a closed ring interrupts"
        );
        for _ in 0..3 {
            probe().expect("io_uring on the test machine");
            assert!(
                !timed_read_is_interrupted(),
                "probe() interrupted the caller"
            );
        }
    }

    #[test]
    fn slot_states_are_bits_of_one_byte() {
        let mut slot = Slot::default();
        slot.set(Slot::CLOSING, true);
        slot.set(Slot::CLOSED, true);
        assert!(slot.is(Slot::CLOSING | Slot::RECEIVING));
        assert!(!slot.is(Slot::RECEIVING | Slot::SHUTTING));
        assert!(!slot.take(Slot::PAUSED));
        slot.set(Slot::PAUSED, true);
        assert!(slot.take(Slot::PAUSED) && !slot.is(Slot::PAUSED));
        slot.set(Slot::CLOSING, false);
        assert_eq!(slot.states, Slot::CLOSED);
        assert_eq!(std::mem::size_of::<Slot>(), 16);
    }
}
