//! The sending side of a WebSocket: the bytes it has queued and the echoes
//! it awaits. A held connection (a ping now and then, written straight from
//! the thread's buffer) has neither nearly all the time, so both live in one
//! box made when first needed and freed once empty: the connection itself
//! keeps one pointer for them.

use std::collections::VecDeque;
use std::time::Instant;

/// The sending side of a connection.
pub(super) struct Tx {
    /// Bytes to send and echoes awaited: `None` (no allocation) while there
    /// are neither.
    pending: Option<Box<Pending>>,
    /// Picks the payload variant of the next echo.
    pub(super) next_variant: u32,
    /// The measured phase is over: answer nothing more.
    pub(super) stopped: bool,
}

#[derive(Default)]
struct Pending {
    /// Bytes to send: empty, with no allocation, once they are all written.
    out: Vec<u8>,
    /// How much of `out` is written.
    out_pos: usize,
    /// (payload variant, intended send time) of echoes awaited, oldest first.
    inflight: VecDeque<(u32, Instant)>,
}

impl Tx {
    pub(super) fn new(next_variant: u32, stopped: bool) -> Self {
        Self {
            pending: None,
            next_variant,
            stopped,
        }
    }

    /// Where bytes to send are appended.
    pub(super) fn out(&mut self) -> &mut Vec<u8> {
        &mut self.pending.get_or_insert_default().out
    }

    /// The bytes queued and not written yet.
    pub(super) fn unsent(&self) -> &[u8] {
        self.pending.as_deref().map_or(&[], |p| &p.out[p.out_pos..])
    }

    /// The queue and how much of it is written, for a writer that takes what
    /// it can (`None`: nothing is queued).
    pub(super) fn queue(&mut self) -> Option<(&mut Vec<u8>, &mut usize)> {
        let p = self.pending.as_deref_mut()?;
        (!p.out.is_empty()).then_some((&mut p.out, &mut p.out_pos))
    }

    /// `n` more bytes of the queue are written.
    pub(super) fn sent(&mut self, n: usize) {
        if let Some(p) = self.pending.as_deref_mut() {
            p.out_pos += n;
        }
        self.release();
    }

    /// An echo of `variant` sent at `intended` awaits its answer.
    pub(super) fn await_echo(&mut self, variant: u32, intended: Instant) {
        self.pending
            .get_or_insert_default()
            .inflight
            .push_back((variant, intended));
    }

    /// The oldest echo awaited, now answered.
    pub(super) fn answered(&mut self) -> Option<(u32, Instant)> {
        self.pending.as_deref_mut()?.inflight.pop_front()
    }

    /// Echoes awaited.
    pub(super) fn awaited(&self) -> usize {
        self.pending.as_deref().map_or(0, |p| p.inflight.len())
    }

    /// Frees what is no longer needed: the send buffer once all of it is
    /// written, everything once nothing is queued or awaited either.
    pub(super) fn release(&mut self) {
        let Some(p) = self.pending.as_deref_mut() else {
            return;
        };
        if p.out_pos < p.out.len() {
            return;
        }
        if p.inflight.is_empty() {
            self.pending = None;
        } else if p.out.capacity() > 0 {
            p.out = Vec::new();
            p.out_pos = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_nothing_once_sent_and_answered() {
        let mut tx = Tx::new(0, false);
        assert!(tx.unsent().is_empty() && tx.queue().is_none());
        tx.out().extend_from_slice(b"abcd");
        tx.await_echo(3, Instant::now());
        tx.sent(1);
        assert_eq!(tx.unsent(), b"bcd");
        tx.sent(3);
        assert!(tx.unsent().is_empty());
        assert_eq!(tx.awaited(), 1);
        assert!(tx.pending.as_ref().is_some_and(|p| p.out.capacity() == 0));
        assert_eq!(tx.answered().map(|(v, _)| v), Some(3));
        tx.release();
        assert!(tx.pending.is_none());
        assert_eq!(tx.answered(), None);
    }
}
