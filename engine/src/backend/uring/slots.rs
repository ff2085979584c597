//! What the ring knows of each operation in flight: the tag a completion
//! carries, a connection's slot (its states and its send), the send and peer-name
//! buffers the kernel reads or fills, the received data being delivered, and
//! the fixed-file slots a live hand-over keeps for connections taken over
//! ([`Handover`]; its operations are `uring/handover.rs`).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};

use io_uring::IoUring;

use crate::transport::outbox::MAX_IOVECS;

/// What a completion belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Op {
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
    /// A regular descriptor installed for a connection about to leave.
    Install,
    /// The direct descriptor of a connection that left.
    CloseDetached,
}

impl Op {
    pub(super) const ALL: [Op; 12] = [
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
        Op::Install,
        Op::CloseDetached,
    ];

    pub(super) fn from_u8(value: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|op| *op as u8 == value)
    }
}

/// A submission's user_data: the operation (8 bits), the generation of the
/// connection's slot (24 bits) and an index (32 bits: slab key, listener or
/// pending peer name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tag {
    pub(super) op: Op,
    pub(super) generation: u32,
    pub(super) index: u32,
}

impl Tag {
    pub(super) const GENERATION_MASK: u32 = 0xff_ffff;

    /// An operation on connection `key` in a slot of `generation`.
    pub(super) fn conn(op: Op, generation: u32, key: usize) -> Self {
        Self {
            op,
            generation: generation & Self::GENERATION_MASK,
            index: key as u32,
        }
    }

    /// An operation not tied to a connection's slot.
    pub(super) fn other(op: Op, index: usize) -> Self {
        Self::conn(op, 0, index)
    }

    pub(super) fn encode(self) -> u64 {
        (u64::from(self.op as u8) << 56)
            | (u64::from(self.generation) << 32)
            | u64::from(self.index)
    }

    pub(super) fn decode(data: u64) -> Option<Self> {
        Some(Self {
            op: Op::from_u8((data >> 56) as u8)?,
            generation: (data >> 32) as u32 & Self::GENERATION_MASK,
            index: data as u32,
        })
    }
}

/// A send in flight: its message header and iovecs, at a fixed address until the
/// completion arrives.
pub(super) struct SendBuf {
    pub(super) header: libc::msghdr,
    pub(super) iovecs: [libc::iovec; MAX_IOVECS],
    pub(super) offered: usize,
    /// A frame sent from where it lies (`Io::write_frame`): its header (the
    /// first iovec) and the provided buffer its payload (the second) is in,
    /// held until this send completes.
    pub(super) frame_head: [u8; 10],
    pub(super) held: Option<u16>,
}

/// The received data being handed to the worker: a frame whose payload lies
/// inside it can be sent from there (its buffer held until the send completes).
#[derive(Debug, Clone, Copy)]
pub(super) struct Delivery {
    pub(super) bid: u16,
    pub(super) start: usize,
    pub(super) end: usize,
    /// Sends submitted from it.
    pub(super) sends: u16,
    /// Whether the pool allows holding the buffer.
    pub(super) holdable: bool,
}

/// A connection's side of the ring, indexed by the worker's slab key: 16
/// bytes (its states are bits of one byte), since there is one per connection.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Slot {
    /// Index in the fixed-file table.
    pub(super) fixed: u32,
    pub(super) generation: u32,
    /// A send in flight (its SendBuf index + 1; 0 for none).
    pub(super) send: u32,
    /// [`Slot::IN_USE`] and the other states.
    pub(super) states: u8,
}

impl Slot {
    /// A connection holds the slot (a released slot keeps only its generation,
    /// and must never be armed: its `fixed` index may belong to another).
    pub(super) const IN_USE: u8 = 1;
    /// Multishot receive armed.
    pub(super) const RECEIVING: u8 = 1 << 1;
    /// Not to be re-armed: the rate limit paused reading.
    pub(super) const PAUSED: u8 = 1 << 2;
    /// A shutdown in flight. It may run later on a kernel worker and look the
    /// fixed slot up only then, so the close waits for it: otherwise it could
    /// hit a new connection accepted into the freed slot.
    pub(super) const SHUTTING: u8 = 1 << 3;
    pub(super) const CLOSING: u8 = 1 << 4;
    pub(super) const CLOSE_SUBMITTED: u8 = 1 << 5;
    pub(super) const CLOSED: u8 = 1 << 6;
    /// A regular descriptor is being installed for it (a hand-over).
    pub(super) const INSTALLING: u8 = 1 << 7;

    /// Whether any of `states` is set.
    pub(super) fn is(&self, state: u8) -> bool {
        self.states & state != 0
    }

    pub(super) fn set(&mut self, state: u8, on: bool) {
        if on {
            self.states |= state;
        } else {
            self.states &= !state;
        }
    }

    /// Clears `state`, returning whether it was set.
    pub(super) fn take(&mut self, state: u8) -> bool {
        let was = self.is(state);
        self.set(state, false);
        was
    }
}

/// A sockaddr buffer for the peer-name request of an accepted connection.
pub(super) struct PeerName {
    pub(super) fixed: u32,
    /// The listener (its index in `Config::listen_addrs`) that accepted it.
    pub(super) listener: usize,
    pub(super) addr: libc::sockaddr_storage,
}

/// `IORING_REGISTER_FILE_ALLOC_RANGE` of `<linux/io_uring.h>` (Linux 6.0).
const IORING_REGISTER_FILE_ALLOC_RANGE: libc::c_long = 25;

/// `struct io_uring_file_index_range`.
#[repr(C)]
struct FileIndexRange {
    off: u32,
    len: u32,
    resv: u64,
}

/// The hand-over's part of the ring: the fixed-file slots kept for
/// connections taken over, and the regular descriptors installed for those
/// about to leave.
#[derive(Debug, Default)]
pub(super) struct Handover {
    /// Slots `base..end` are ours (none when equal).
    base: u32,
    end: u32,
    next: u32,
    free: Vec<u32>,
    /// By slab key.
    pub(super) installed: HashMap<usize, OwnedFd>,
}

impl Handover {
    /// Keeps the upper half of a fixed-file table of `table` entries for
    /// connections taken over; the kernel allocates accepted sockets from
    /// the rest. Without the kernel's support, nothing is kept (a connection
    /// handed to this ring is then refused). The table is as large as
    /// RLIMIT_NOFILE's hard limit allows (up to 64 more than
    /// `max_connections_per_worker`), so a worker takes over at most half of
    /// that, and accepts at most the other half. Called only where a
    /// hand-over is configured.
    pub(super) fn reserve(ring: &IoUring, table: u32) -> Self {
        let ours = table / 2;
        if ours == 0 {
            return Self::default();
        }
        let range = FileIndexRange {
            off: 0,
            len: table - ours,
            resv: 0,
        };
        // SAFETY: io_uring_register with the ring's own descriptor and a
        // pointer to a live io_uring_file_index_range, as the kernel expects
        // for this opcode (nr_args 0); it only reads the struct.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                ring.as_raw_fd(),
                IORING_REGISTER_FILE_ALLOC_RANGE,
                &raw const range,
                0,
            )
        };
        if ret < 0 {
            log::debug!(
                "io_uring: no file allocation range ({}); connections cannot be taken over",
                std::io::Error::last_os_error()
            );
            return Self::default();
        }
        Self {
            base: table - ours,
            end: table,
            next: table - ours,
            ..Self::default()
        }
    }

    pub(super) fn alloc(&mut self) -> Option<u32> {
        self.free.pop().or_else(|| {
            (self.next < self.end).then(|| {
                self.next += 1;
                self.next - 1
            })
        })
    }

    /// A slot closed: ours again if it was ours.
    pub(super) fn give_back(&mut self, fixed: u32) {
        if (self.base..self.end).contains(&fixed) {
            self.free.push(fixed);
        }
    }

    /// The connection at `key` is gone: a descriptor installed for it closes.
    pub(super) fn forget(&mut self, key: usize) {
        self.installed.remove(&key);
    }
}

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
