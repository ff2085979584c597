//! The read gate: why a connection's reading is paused, for one or more
//! reasons at once (its rate limit is spent; its TLS handshake waits for a
//! slot; later others), kept with the connection ([`Reasons`], one byte in
//! `Link`). The backend is asked to pause a connection once, when its first
//! reason comes, and to resume it once, when its last goes
//! ([`ReadGate::close`], [`ReadGate::open`] say which). The connections
//! waiting for each reason are queued oldest first, so that a reason's
//! waiters are served in order and each turn looks only at those that may go
//! on; an entry whose reason went meanwhile (the connection ended, say) is
//! dropped when met. What a paused connection had read before the pause took
//! effect re-enters through one path, the worker's `reenter`.

use std::collections::VecDeque;

use crate::types::ConnId;

/// Why a connection's reading is paused; empty while it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Reasons(u8);

impl Reasons {
    /// Its rate limit is spent, until the tokens are back.
    pub const RATE_LIMIT: Self = Self(1);
    /// Its TLS handshake waits for a slot (`max_tls_handshakes`).
    pub const HANDSHAKE_SLOT: Self = Self(2);
    /// A live hand-over holds it still (`runtime::handover`): no queue, the
    /// hand-over lifts it from every connection at once.
    pub const HANDOVER: Self = Self(4);

    /// Read: no reason holds it.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, reason: Self) -> bool {
        self.0 & reason.0 != 0
    }

    /// The reasons other than `reason`.
    pub fn without(self, reason: Self) -> Self {
        Self(self.0 & !reason.0)
    }

    fn queue(reason: Self) -> usize {
        match reason {
            Self::RATE_LIMIT => 0,
            _ => 1,
        }
    }
}

/// The connections a worker does not read, by reason.
#[derive(Debug, Default)]
pub(crate) struct ReadGate {
    waiting: [VecDeque<ConnId>; 2],
}

impl ReadGate {
    /// Closes connection `id`'s gate for `reason` (its reasons are
    /// `reasons`): true if it was open, and the backend is to pause reading.
    pub fn close(&mut self, id: ConnId, reasons: &mut Reasons, reason: Reasons) -> bool {
        let was_open = reasons.is_empty();
        if !reasons.contains(reason) {
            reasons.0 |= reason.0;
            self.waiting[Reasons::queue(reason)].push_back(id);
        }
        was_open
    }

    /// Closes it for `reason` without queueing it (a reason lifted from every
    /// connection at once): true if it was open.
    pub fn close_unqueued(reasons: &mut Reasons, reason: Reasons) -> bool {
        let was_open = reasons.is_empty();
        reasons.0 |= reason.0;
        was_open
    }

    /// Opens it for `reason`: true if that was its last reason, and the
    /// backend is to read it again.
    pub fn open(&mut self, reasons: &mut Reasons, reason: Reasons) -> bool {
        if !reasons.contains(reason) {
            return false;
        }
        reasons.0 &= !reason.0;
        reasons.is_empty()
    }

    /// The oldest connection waiting for `reason` (it may have gone, or had
    /// the reason lifted meanwhile: the caller checks).
    pub fn next(&mut self, reason: Reasons) -> Option<ConnId> {
        self.waiting[Reasons::queue(reason)].pop_front()
    }

    /// Puts `id` back at the end of `reason`'s queue: it still waits.
    pub fn requeue(&mut self, reason: Reasons, id: ConnId) {
        self.waiting[Reasons::queue(reason)].push_back(id);
    }

    /// How many wait for `reason` (some perhaps no longer).
    pub fn waiting(&self, reason: Reasons) -> usize {
        self.waiting[Reasons::queue(reason)].len()
    }

    /// Frees what a burst of pauses left behind.
    pub fn shrink(&mut self) {
        for queue in &mut self.waiting {
            if queue.is_empty() && queue.capacity() > 1024 {
                queue.shrink_to(64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_is_asked_once_per_pause_whatever_the_reasons() {
        let mut gate = ReadGate::default();
        let id = ConnId::new(0, 7, 1);
        let mut reasons = Reasons::default();
        assert!(gate.close(id, &mut reasons, Reasons::HANDSHAKE_SLOT));
        assert!(!gate.close(id, &mut reasons, Reasons::RATE_LIMIT));
        assert!(
            !gate.close(id, &mut reasons, Reasons::RATE_LIMIT),
            "once per reason"
        );
        assert_eq!(gate.waiting(Reasons::RATE_LIMIT), 1);
        assert!(
            !gate.open(&mut reasons, Reasons::HANDSHAKE_SLOT),
            "one reason left"
        );
        assert!(
            !gate.open(&mut reasons, Reasons::HANDSHAKE_SLOT),
            "not twice"
        );
        assert!(gate.open(&mut reasons, Reasons::RATE_LIMIT));
        assert!(reasons.is_empty());
    }

    #[test]
    fn each_reason_serves_its_waiters_oldest_first() {
        let mut gate = ReadGate::default();
        let ids: Vec<ConnId> = (0..3).map(|k| ConnId::new(0, k, 1)).collect();
        let mut reasons = [Reasons::default(); 3];
        for (id, reasons) in ids.iter().zip(&mut reasons) {
            gate.close(*id, reasons, Reasons::HANDSHAKE_SLOT);
        }
        gate.close(ids[2], &mut reasons[2], Reasons::RATE_LIMIT);
        assert_eq!(gate.next(Reasons::HANDSHAKE_SLOT), Some(ids[0]));
        gate.requeue(Reasons::HANDSHAKE_SLOT, ids[0]);
        assert_eq!(gate.next(Reasons::HANDSHAKE_SLOT), Some(ids[1]));
        assert_eq!(gate.next(Reasons::HANDSHAKE_SLOT), Some(ids[2]));
        assert_eq!(gate.next(Reasons::HANDSHAKE_SLOT), Some(ids[0]));
        assert_eq!(gate.next(Reasons::RATE_LIMIT), Some(ids[2]));
        assert_eq!(gate.next(Reasons::RATE_LIMIT), None);
    }
}
