//! The worker's loop on the ring: submissions, completions, and the life of
//! each connection's slot from accept to release.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::squeue::Entry;
use io_uring::types::{Fd, Fixed, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode};
use slab::Slab;

use super::buffers::{BUFFER_GROUP, BufRing};
use super::slots::{Delivery, Op, PeerName, SendBuf, Slot, Tag};
use crate::backend::signals::SignalFd;
use crate::runtime::handler::Handler;
use crate::runtime::seam::{Hangup, unsent};
use crate::runtime::worker::{Worker, shrink_idle};
use crate::transport::outbox::MAX_IOVECS;

/// `SOCKET_URING_OP_GETSOCKOPT` of `<linux/io_uring.h>` (since Linux 6.7).
const SOCKET_URING_OP_GETSOCKOPT: u32 = 2;

/// The ring and everything in flight on it: the backend's half of the seam.
pub(super) struct Ring {
    pub(super) ring: IoUring,
    pub(super) listeners: Vec<TcpListener>,
    pub(super) listener_v6: Vec<bool>,
    /// Listeners whose multishot accept must be (re-)armed.
    pub(super) accepting: Vec<usize>,
    pub(super) listening: bool,
    pub(super) wake_fd: RawFd,
    pub(super) wake_buf: Box<u64>,
    pub(super) signals: Option<SignalFd>,
    pub(super) slots: Vec<Slot>,
    /// Peer-name requests of accepted connections not yet handed to the worker.
    pub(super) peers: Slab<Box<PeerName>>,
    pub(super) sends: Slab<Box<SendBuf>>,
    /// Send buffers between uses; boxed because their addresses go to the kernel
    /// and must not move when they change hands.
    #[allow(clippy::vec_box)]
    pub(super) spare_sends: Vec<Box<SendBuf>>,
    /// Connections whose receive must be re-armed at the end of the turn.
    pub(super) rearm: Vec<usize>,
    /// Set while received data is with the worker.
    pub(super) delivering: Option<Delivery>,
    /// The first submission failure; the loop stops with it.
    pub(super) error: Option<io::Error>,
    /// A live hand-over's slots and descriptors.
    pub(super) handover: super::slots::Handover,
}

impl Ring {
    pub(super) fn run<H: Handler>(
        &mut self,
        worker: &mut Worker<H>,
        buffers: &mut BufRing,
    ) -> io::Result<()> {
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
    pub(super) fn push(&mut self, entry: Entry) {
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

    pub(super) fn arm_recv(&mut self, key: usize) {
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
            Op::Install => self.installed(key, tag.generation, result),
            Op::CloseDetached => self.handover.give_back(tag.index),
            // Cancel and the close of a refused socket need no follow-up.
            Op::Cancel | Op::CloseRefused => {}
        }
    }

    pub(super) fn live_slot(&mut self, key: usize, generation: u32) -> Option<&mut Slot> {
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
    pub(super) fn submit_send(
        &mut self,
        key: usize,
        generation: u32,
        buf: Box<SendBuf>,
        entry: Entry,
    ) {
        let index = self.sends.insert(buf);
        self.slots[key].send = index as u32 + 1;
        self.push(entry.user_data(Tag::conn(Op::Send, generation, key).encode()));
    }

    /// A send buffer, reused if one is spare.
    pub(super) fn send_buf(&mut self) -> Box<SendBuf> {
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
    pub(super) fn submit_close(&mut self, key: usize) {
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
        if done == Slot::CLOSING | Slot::CLOSED && slot.send == 0 && !slot.is(Slot::INSTALLING) {
            self.handover.give_back(slot.fixed);
            self.handover.forget(key);
            let slot = &mut self.slots[key];
            *slot = Slot {
                generation: slot.generation.wrapping_add(1) & Tag::GENERATION_MASK,
                ..Slot::default()
            };
            worker.on_released(key);
        }
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
