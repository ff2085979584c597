//! The backend's half of the seam: [`Io`] for the ring.

use io_uring::opcode;
use io_uring::types::Fixed;

use super::event_loop::Ring;
use super::slots::{Op, Slot, Tag};
use crate::runtime::seam::{FrameParts, Io, Prepared, Written};
use crate::transport::outbox::{MAX_IOVECS, Outbox};

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

    /// A regular descriptor installed for the direct one, once the
    /// receive is cancelled and nothing is in flight (`uring/handover.rs`).
    fn prepare_detach(&mut self, key: usize) -> Prepared {
        self.prepare_leaving(key)
    }

    fn detach(&mut self, key: usize) -> Option<std::os::fd::OwnedFd> {
        self.leave(key)
    }

    fn adopt(&mut self, key: usize, fd: std::os::fd::OwnedFd) -> bool {
        self.take(key, fd)
    }
}
