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
use std::time::Duration;

use io_uring::squeue::Entry;
use io_uring::types::{BufRingEntry, Fd, Fixed, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, opcode};
use slab::Slab;

use crate::api::Handler;
use crate::config::Config;
use crate::runtime::command::Wake;
use crate::runtime::conn::{AfterFlush, Finish};
use crate::runtime::outbox::MAX_IOVECS;
use crate::runtime::worker::Worker;

// What a completion belongs to: the top byte of its user_data.
const OP_ACCEPT: u64 = 1;
const OP_PEER: u64 = 2;
const OP_RECV: u64 = 3;
const OP_SEND: u64 = 4;
const OP_SHUTDOWN: u64 = 5;
const OP_CLOSE: u64 = 6;
const OP_CLOSE_REFUSED: u64 = 7;
const OP_WAKE: u64 = 8;
const OP_CANCEL: u64 = 9;

/// user_data: operation (8 bits), generation of the slot (24 bits), index (32 bits).
fn user_data(op: u64, generation: u32, index: u32) -> u64 {
    (op << 56) | ((u64::from(generation) & 0xff_ffff) << 32) | u64::from(index)
}

fn split_user_data(data: u64) -> (u64, u32, u32) {
    (data >> 56, ((data >> 32) & 0xff_ffff) as u32, data as u32)
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
pub(crate) fn probe() -> Result<(), String> {
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
struct BufRing {
    /// The ring of buffer descriptors, shared with the kernel (mmap'd, page aligned).
    entries: *mut BufRingEntry,
    entries_len: usize,
    /// The buffers themselves, `count * size` bytes.
    data: Box<[u8]>,
    size: usize,
    mask: u16,
    tail: u16,
    /// Incremental consumption (Linux 6.12+): the kernel packs consecutive receives
    /// into one buffer; `consumed[bid]` is where the next receive into it starts.
    incremental: bool,
    consumed: Vec<u32>,
}

impl BufRing {
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
        let mut data = vec![0u8; usize::from(count) * size].into_boxed_slice();
        // Fault the pool in now: a fixed, visible cost per worker instead of page
        // faults on the receive path under load.
        for page in data.chunks_mut(4096) {
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
        for bid in 0..count {
            ring_buf.push(bid);
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
    }

    /// Makes pushed buffers visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field overlays the first entry's reserved field, inside
        // the mapping; the kernel reads it with acquire semantics.
        unsafe {
            let tail = BufRingEntry::tail(self.entries).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// The `len` bytes a receive completion put into buffer `bid`.
    fn received(&mut self, bid: u16, len: usize) -> &mut [u8] {
        let base = usize::from(bid) * self.size;
        let start = base + self.consumed[usize::from(bid)] as usize;
        let end = (start + len).min(base + self.size);
        &mut self.data[start..end]
    }

    /// After a completion's data is parsed: the buffer goes back to the kernel,
    /// unless the kernel keeps filling it (incremental mode, `more`).
    fn release(&mut self, bid: u16, len: usize, more: bool) {
        let consumed = &mut self.consumed[usize::from(bid)];
        if self.incremental && more {
            *consumed += len as u32;
        } else {
            *consumed = 0;
            self.push(bid);
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
}

/// A connection's side of the ring, indexed by the worker's slab key.
#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    /// Index in the fixed-file table.
    fixed: u32,
    generation: u32,
    /// Multishot receive armed.
    receiving: bool,
    /// Re-arm the receive at the end of this turn (it ended without error,
    /// e.g. ENOBUFS).
    rearm: bool,
    /// A send in flight (its SendBuf index + 1; 0 for none).
    send: u32,
    /// A shutdown in flight. It may run later on a kernel worker and look the
    /// fixed slot up only then, so the close waits for it: otherwise it could hit
    /// a new connection accepted into the freed slot.
    shutting: bool,
    closing: bool,
    close_submitted: bool,
    closed: bool,
}

/// A sockaddr buffer for the peer-name request of an accepted connection.
struct PeerName {
    fixed: u32,
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
}

impl UringBackend {
    /// Sets up the ring on the calling thread (the ring's single issuer).
    pub fn new(listeners: Vec<TcpListener>, config: &Config) -> io::Result<Self> {
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
        })
    }

    pub fn waker(&self) -> Arc<dyn Wake> {
        self.wake.clone()
    }

    /// Runs the worker until it has shut down.
    pub fn run<H: Handler>(self, worker: Worker<H>) -> io::Result<()> {
        let Self {
            ring,
            buffers,
            listeners,
            wake,
            wake_buf,
        } = self;
        let mut event_loop = Loop {
            ring,
            buffers,
            listeners,
            wake_fd: wake.0.as_raw_fd(),
            wake_buf,
            slots: Vec::new(),
            peers: Slab::new(),
            sends: Slab::new(),
            spare_sends: Vec::new(),
            rearm: Vec::new(),
            accepting: Vec::new(),
            worker,
        };
        let result = event_loop.run();
        drop(wake);
        result
    }
}

struct Loop<H: Handler> {
    ring: IoUring,
    buffers: BufRing,
    listeners: Vec<TcpListener>,
    wake_fd: RawFd,
    wake_buf: Box<u64>,
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
    /// Listeners whose multishot accept must be (re-)armed.
    accepting: Vec<usize>,
    worker: Worker<H>,
}

impl<H: Handler> Loop<H> {
    fn run(&mut self) -> io::Result<()> {
        self.accepting = (0..self.listeners.len()).collect();
        self.arm_accepts()?;
        self.arm_wake()?;
        let mut completions: Vec<(u64, i32, u32)> = Vec::with_capacity(1024);
        let mut flush: Vec<usize> = Vec::new();
        let mut listening = true;
        loop {
            let timeout = self.worker.timeout().min(Duration::from_secs(1));
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
                self.complete(data, result, flags)?;
            }
            self.buffers.publish();
            self.worker.on_tick();
            if listening && !self.worker.accepting() {
                listening = false;
                for i in 0..self.listeners.len() {
                    self.push(
                        opcode::AsyncCancel::new(user_data(OP_ACCEPT, 0, i as u32))
                            .build()
                            .user_data(user_data(OP_CANCEL, 0, 0)),
                    )?;
                }
                self.accepting.clear();
            }
            if listening {
                self.arm_accepts()?;
            }
            for key in std::mem::take(&mut self.rearm) {
                self.arm_recv(key)?;
            }
            // Callbacks run while flushing (on_drain) may queue more: a few rounds.
            for _ in 0..4 {
                self.worker.pump();
                self.worker.take_flush(&mut flush);
                if flush.is_empty() {
                    break;
                }
                for &key in &flush {
                    self.flush(key)?;
                }
            }
            self.worker.publish_stats();
            completions.clear();
            super::epoll::shrink_idle(&mut completions);
            super::epoll::shrink_idle(&mut flush);
            if self.worker.finished() && self.peers.is_empty() {
                // Closes of the last connections are submitted; let them run.
                let _ = self.ring.submit();
                return Ok(());
            }
        }
    }

    /// Queues a submission, making room by submitting when the queue is full.
    fn push(&mut self, entry: Entry) -> io::Result<()> {
        loop {
            // SAFETY: every buffer an entry points to (peer names, send buffers,
            // the wake counter, provided buffers) stays allocated until its
            // completion has been reaped; see the owners of each.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn arm_accepts(&mut self) -> io::Result<()> {
        for i in std::mem::take(&mut self.accepting) {
            let fd = Fd(self.listeners[i].as_raw_fd());
            // No SOCK_CLOEXEC: direct descriptors are not in the fd table at all.
            let entry = opcode::AcceptMulti::new(fd)
                .allocate_file_index(true)
                .build()
                .user_data(user_data(OP_ACCEPT, 0, i as u32));
            self.push(entry)?;
        }
        Ok(())
    }

    fn arm_wake(&mut self) -> io::Result<()> {
        let buf: *mut u64 = &mut *self.wake_buf;
        let entry = opcode::Read::new(Fd(self.wake_fd), buf.cast(), 8)
            .build()
            .user_data(user_data(OP_WAKE, 0, 0));
        self.push(entry)
    }

    fn arm_recv(&mut self, key: usize) -> io::Result<()> {
        let Some(slot) = self.slots.get_mut(key) else {
            return Ok(());
        };
        if slot.receiving || slot.closing {
            return Ok(());
        }
        slot.receiving = true;
        slot.rearm = false;
        let entry = opcode::RecvMulti::new(Fixed(slot.fixed), BUFFER_GROUP)
            .build()
            .user_data(user_data(OP_RECV, slot.generation, key as u32));
        self.push(entry)
    }

    fn complete(&mut self, data: u64, result: i32, flags: u32) -> io::Result<()> {
        let (op, generation, index) = split_user_data(data);
        match op {
            OP_ACCEPT => self.accepted(index as usize, result, flags),
            OP_PEER => self.peer_named(index as usize, result),
            OP_RECV => self.received(index as usize, generation, result, flags),
            OP_SEND => self.sent(index as usize, generation, result),
            OP_CLOSE => {
                if let Some(slot) = self.live_slot(index as usize, generation) {
                    slot.closed = true;
                }
                self.try_release(index as usize);
                Ok(())
            }
            OP_SHUTDOWN => {
                if let Some(slot) = self.live_slot(index as usize, generation) {
                    slot.shutting = false;
                    if slot.closing {
                        self.submit_close(index as usize)?;
                    }
                }
                Ok(())
            }
            OP_WAKE => {
                self.worker.on_commands();
                self.arm_wake()
            }
            // Cancel and the close of a refused socket need no follow-up.
            _ => Ok(()),
        }
    }

    fn live_slot(&mut self, key: usize, generation: u32) -> Option<&mut Slot> {
        self.slots
            .get_mut(key)
            .filter(|s| s.generation & 0xff_ffff == generation)
    }

    /// A multishot accept completion: a new direct descriptor. Its peer address
    /// is asked for before the worker sees it.
    fn accepted(&mut self, listener: usize, result: i32, flags: u32) -> io::Result<()> {
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
                    if !cqueue::more(flags) && self.worker.accepting() {
                        self.accepting.push(listener);
                    }
                }
                _ => log::error!(
                    "ringws: accept on listener {listener} failed, not re-armed: {error}"
                ),
            }
            return Ok(());
        }
        if !cqueue::more(flags) && self.worker.accepting() {
            self.accepting.push(listener);
        }
        let fixed = result as u32;
        // SO_PEERNAME refuses a buffer longer than the address: ask for exactly the
        // listener family's sockaddr.
        let peer_len = match self.listeners[listener].local_addr() {
            Ok(SocketAddr::V6(_)) => std::mem::size_of::<libc::sockaddr_in6>(),
            _ => std::mem::size_of::<libc::sockaddr_in>(),
        } as u32;
        let pending = self.peers.insert(Box::new(PeerName {
            fixed,
            // SAFETY: sockaddr_storage is plain old data; all zeroes is valid.
            addr: unsafe { std::mem::zeroed() },
        }));
        let peer = &mut self.peers[pending];
        let optval: *mut libc::sockaddr_storage = &mut peer.addr;
        let mut entry = opcode::SetSockOpt::new(
            Fixed(fixed),
            libc::SOL_SOCKET as u32,
            libc::SO_PEERNAME as u32,
            optval.cast(),
            peer_len,
        )
        .build()
        .user_data(user_data(OP_PEER, 0, pending as u32));
        // The crate builds socket get/set commands alike; only cmd_op differs.
        // SAFETY: Entry is repr(C) over the 64-byte io_uring_sqe, whose bytes 8..12
        // hold cmd_op for IORING_OP_URING_CMD.
        unsafe {
            let raw = &mut *(&raw mut entry).cast::<[u8; 64]>();
            raw[8..12].copy_from_slice(&SOCKET_URING_OP_GETSOCKOPT.to_ne_bytes());
        }
        self.push(entry)
    }

    /// The peer address of an accepted socket arrived: hand it to the worker.
    fn peer_named(&mut self, pending: usize, result: i32) -> io::Result<()> {
        let Some(peer) = self.peers.try_remove(pending) else {
            return Ok(());
        };
        let addr = if result >= 0 {
            sockaddr_to_std(&peer.addr)
        } else {
            None
        };
        let key = addr.and_then(|addr| self.worker.on_accept(addr));
        let Some(key) = key else {
            // Worker full, shutting down, or the peer is already gone.
            let entry = opcode::Close::new(Fixed(peer.fixed))
                .build()
                .user_data(user_data(OP_CLOSE_REFUSED, 0, 0));
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
            ..Slot::default()
        };
        self.arm_recv(key)
    }

    fn received(&mut self, key: usize, generation: u32, result: i32, flags: u32) -> io::Result<()> {
        let buffer = cqueue::buffer_select(flags);
        let more = cqueue::more(flags);
        let live = self.live_slot(key, generation).is_some();
        let len = result.max(0) as usize;
        if let Some(bid) = buffer {
            if live && len > 0 {
                let data = self.buffers.received(bid, len);
                self.worker.on_data(key, data);
            }
            // Parsed (or stale): the buffer goes straight back to the kernel.
            self.buffers.release(bid, len, cqueue::buffer_more(flags));
        }
        if !live {
            return Ok(());
        }
        let slot = &mut self.slots[key];
        if !more {
            slot.receiving = false;
        }
        match result {
            0 => self.worker.on_hangup(key, true),
            r if r > 0 => {
                if !more {
                    self.rearm.push(key);
                }
            }
            // Buffers ran out: they are back by the end of this turn; re-arm then.
            r if r == -libc::ENOBUFS => self.rearm.push(key),
            r if r == -libc::ECANCELED => {}
            _ => self.worker.on_hangup(key, false),
        }
        self.try_release(key);
        Ok(())
    }

    fn sent(&mut self, key: usize, generation: u32, result: i32) -> io::Result<()> {
        let Some(slot) = self.live_slot(key, generation) else {
            return Ok(());
        };
        let send = std::mem::take(&mut slot.send) as usize;
        let offered = match self.sends.try_remove(send.wrapping_sub(1)) {
            Some(buf) => {
                let offered = buf.offered;
                self.spare_sends.push(buf);
                offered
            }
            None => 0,
        };
        if self.slots[key].closing {
            self.try_release(key);
            return Ok(());
        }
        if result < 0 {
            self.worker.flush_failed(key);
            return self.begin_close(key);
        }
        let written = result as usize;
        let short = written < offered;
        match self.worker.flush_done(key, written, short) {
            AfterFlush::Keep => {
                if short {
                    // Resume the rest in order, next turn.
                    self.worker.on_writable(key);
                }
                Ok(())
            }
            AfterFlush::ShutdownWrite => self.shutdown_write(key),
            AfterFlush::Close => self.begin_close(key),
        }
    }

    fn shutdown_write(&mut self, key: usize) -> io::Result<()> {
        let slot = &mut self.slots[key];
        if slot.shutting || slot.closing {
            return Ok(());
        }
        slot.shutting = true;
        let entry = opcode::Shutdown::new(Fixed(slot.fixed), libc::SHUT_WR)
            .build()
            .user_data(user_data(OP_SHUTDOWN, slot.generation, key as u32));
        self.push(entry)
    }

    /// One send for the connection's whole queue, unless one is in flight (its
    /// completion resumes the queue).
    fn flush(&mut self, key: usize) -> io::Result<()> {
        let Some(&slot) = self.slots.get(key) else {
            return Ok(());
        };
        let Some((finish, outbox)) = self.worker.flush_start(key) else {
            return Ok(());
        };
        if finish == Finish::Abort {
            return self.begin_close(key);
        }
        if slot.send != 0 || slot.closing {
            return Ok(());
        }
        if outbox.is_empty() {
            return match self.worker.flush_done(key, 0, false) {
                AfterFlush::ShutdownWrite => self.shutdown_write(key),
                AfterFlush::Close => self.begin_close(key),
                AfterFlush::Keep => Ok(()),
            };
        }
        // Staged bytes become an immutable chunk: later sends cannot move them
        // while the kernel reads them.
        outbox.seal();
        let mut buf = self.spare_sends.pop().unwrap_or_else(|| {
            Box::new(SendBuf {
                // SAFETY: msghdr and iovec are plain old data; zeroes are valid.
                header: unsafe { std::mem::zeroed() },
                iovecs: [libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }; MAX_IOVECS],
                offered: 0,
            })
        });
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
        let index = self.sends.insert(buf);
        self.slots[key].send = index as u32 + 1;
        self.push(entry.user_data(user_data(OP_SEND, slot.generation, key as u32)))
    }

    /// Aborts a connection: cancels its receive, closes its descriptor; the
    /// worker forgets it once every operation on it has completed.
    fn begin_close(&mut self, key: usize) -> io::Result<()> {
        let Some(slot) = self.slots.get_mut(key) else {
            return Ok(());
        };
        if slot.closing {
            return Ok(());
        }
        slot.closing = true;
        let (generation, receiving) = (slot.generation, slot.receiving);
        if receiving {
            let target = user_data(OP_RECV, generation, key as u32);
            self.push(
                opcode::AsyncCancel::new(target)
                    .build()
                    .user_data(user_data(OP_CANCEL, 0, 0)),
            )?;
        }
        self.submit_close(key)
    }

    /// Closes the direct descriptor once no shutdown on it is in flight.
    fn submit_close(&mut self, key: usize) -> io::Result<()> {
        let slot = &mut self.slots[key];
        if slot.shutting || slot.close_submitted {
            return Ok(());
        }
        slot.close_submitted = true;
        let entry = opcode::Close::new(Fixed(slot.fixed))
            .build()
            .user_data(user_data(OP_CLOSE, slot.generation, key as u32));
        self.push(entry)
    }

    /// Forgets a closing connection once nothing of it is in flight.
    fn try_release(&mut self, key: usize) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.closing && slot.closed && !slot.receiving && !slot.shutting && slot.send == 0 {
            *slot = Slot {
                generation: slot.generation.wrapping_add(1) & 0xff_ffff,
                ..Slot::default()
            };
            self.worker.release(key);
        }
    }
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
