//! A live hand-over on io_uring (`docs/HANDOVER.md`). A connection's socket
//! is a direct descriptor, outside the process's fd table: before it
//! leaves, once its receive is cancelled and nothing of it is in flight, the
//! kernel installs a regular descriptor for it (`IORING_OP_FIXED_FD_INSTALL`),
//! which is what goes; the direct one is then closed. A connection taken
//! over is registered into the half of the fixed-file table the kernel does
//! not allocate accepted sockets from (`IORING_REGISTER_FILE_ALLOC_RANGE`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::opcode;
use io_uring::types::Fixed;

use super::event_loop::Ring;
use super::slots::{Op, Slot, Tag};
use crate::runtime::seam::Prepared;

impl Ring {
    /// Makes connection `key` ready to leave: its receive must be cancelled
    /// (the worker paused it) and nothing of it in flight; then a regular
    /// descriptor is installed for it.
    pub(super) fn prepare_leaving(&mut self, key: usize) -> Prepared {
        if self.handover.installed.contains_key(&key) {
            return Prepared::Ready;
        }
        let Some(slot) = self.slots.get_mut(key) else {
            return Prepared::Never;
        };
        if !slot.is(Slot::IN_USE) || slot.is(Slot::CLOSING) {
            return Prepared::Never;
        }
        if slot.is(Slot::RECEIVING | Slot::SHUTTING | Slot::INSTALLING) || slot.send != 0 {
            return Prepared::Later;
        }
        slot.set(Slot::INSTALLING, true);
        let entry = opcode::FixedFdInstall::new(Fixed(slot.fixed), 0)
            .build()
            .user_data(Tag::conn(Op::Install, slot.generation, key).encode());
        self.push(entry);
        Prepared::Later
    }

    /// The regular descriptor of `key` was installed (`result`).
    pub(super) fn installed(&mut self, key: usize, generation: u32, result: i32) {
        let live = self.live_slot(key, generation).map(|slot| {
            slot.set(Slot::INSTALLING, false);
            slot.is(Slot::IN_USE) && !slot.is(Slot::CLOSING)
        });
        if result < 0 {
            log::warn!(
                "io_uring: no regular descriptor for a connection to hand over: {}",
                std::io::Error::from_raw_os_error(-result)
            );
            return;
        }
        // SAFETY: the kernel installed `result` in this process's fd table
        // for us; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(result) };
        if live == Some(true) {
            self.handover.installed.insert(key, fd);
        }
    }

    /// Connection `key` leaves with its regular descriptor; its direct one
    /// is closed and its slot forgotten.
    pub(super) fn leave(&mut self, key: usize) -> Option<OwnedFd> {
        let fd = self.handover.installed.remove(&key)?;
        let slot = &mut self.slots[key];
        let fixed = slot.fixed;
        *slot = Slot {
            generation: slot.generation.wrapping_add(1) & Tag::GENERATION_MASK,
            ..Slot::default()
        };
        let entry = opcode::Close::new(Fixed(fixed))
            .build()
            .user_data(Tag::other(Op::CloseDetached, fixed as usize).encode());
        self.push(entry);
        Some(fd)
    }

    /// Serves `fd` (a connection taken over) as `key`: registered into one
    /// of the slots kept for it, then received on.
    pub(super) fn take(&mut self, key: usize, fd: OwnedFd) -> bool {
        // A socket that came from a readiness loop is non-blocking; io_uring
        // would answer a receive on it with EAGAIN instead of waiting.
        let tcp = std::net::TcpStream::from(fd);
        if tcp.set_nonblocking(false).is_err() {
            return false;
        }
        let fd = OwnedFd::from(tcp);
        let Some(fixed) = self.handover.alloc() else {
            return false;
        };
        if let Err(e) = self
            .ring
            .submitter()
            .register_files_update(fixed, &[fd.as_raw_fd()])
        {
            log::warn!("io_uring: cannot register a connection taken over: {e}");
            self.handover.give_back(fixed);
            return false;
        }
        // The table holds the file now.
        drop(fd);
        if self.slots.len() <= key {
            self.slots.resize(key + 1, Slot::default());
        }
        let slot = &mut self.slots[key];
        let generation = slot.generation;
        *slot = Slot {
            fixed,
            generation,
            states: Slot::IN_USE,
            ..Slot::default()
        };
        self.arm_recv(key);
        true
    }
}
