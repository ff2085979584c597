//! Pings due, in a timer wheel: one slot per tick over one ping interval, each
//! slot the connections (slab key, serial) to ping then. Pushing and taking
//! cost the same whatever the number of connections (a heap of a million
//! would compare and move its entries, cache miss after cache miss, at every
//! ping), an entry is 8 bytes, and the pings of one tick go out together, in
//! one wakeup. A ping's round trip is timed from its send time, which it
//! carries, so the tick's rounding does not show in the figures.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// What is due later: open-loop sends and publishes in a heap of (due, slab
/// key, serial), pings in a wheel.
pub(super) struct Schedule {
    pub(super) heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    pub(super) pings: Option<PingWheel>,
}

impl Schedule {
    /// Empty, with a ping wheel for pings `every` so often.
    pub(super) fn new(every: Option<Duration>, start: Instant) -> Self {
        Self {
            heap: BinaryHeap::new(),
            pings: every.map(|every| PingWheel::new(every, start)),
        }
    }

    /// When the next scheduled thing is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        let heap = self.heap.peek().map(|Reverse((at, _, _))| *at);
        let pings = self.pings.as_ref().and_then(|w| w.next_due());
        match (heap, pings) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn clear(&mut self) {
        self.heap.clear();
        if let Some(w) = &mut self.pings {
            w.clear();
        }
    }
}

/// Ticks per ping interval: the wheel's resolution (so at most this many
/// slots, whatever the interval), but no tick shorter than [`MIN_TICK`].
const TICKS_PER_INTERVAL: u32 = 1024;
const MIN_TICK: Duration = Duration::from_millis(1);

pub(super) struct PingWheel {
    tick: Duration,
    start: Instant,
    /// Slot `t % slots.len()` holds what is due at tick `t`.
    slots: Vec<Vec<(u32, u32)>>,
    /// The first tick not yet taken.
    cursor: u64,
    /// Entries further ahead than the slots reach from the cursor, by tick:
    /// pushed while the thread lags (the cursor moves only when it takes
    /// what is due, so a ping one interval after a late `now` lies past the
    /// last slot). Put in a slot it would wrap round and go out early; here
    /// it waits until the cursor catches up. Empty unless a thread stalled.
    beyond: Vec<(u64, u32, u32)>,
    /// Entries in all slots and in `beyond`.
    len: usize,
}

impl PingWheel {
    /// A wheel for pings every `every` (no entry is ever further ahead).
    pub(super) fn new(every: Duration, start: Instant) -> Self {
        let tick = (every / TICKS_PER_INTERVAL).max(MIN_TICK);
        // One interval ahead, rounded up, and the current tick.
        let slots = (every.as_nanos() / tick.as_nanos()) as usize + 2;
        Self {
            tick,
            start,
            slots: vec![Vec::new(); slots],
            cursor: 0,
            beyond: Vec::new(),
            len: 0,
        }
    }

    fn tick_of(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.start).as_nanos() / self.tick.as_nanos()) as u64
    }

    /// Connection `key` (`serial`) is to be pinged at `at` (rounded down to
    /// its tick, never before the cursor).
    pub(super) fn push(&mut self, at: Instant, key: u32, serial: u32) {
        let tick = self.tick_of(at).max(self.cursor);
        let n = self.slots.len() as u64;
        if tick < self.cursor + n {
            self.slots[(tick % n) as usize].push((key, serial));
        } else {
            self.beyond.push((tick, key, serial));
        }
        self.len += 1;
    }

    /// Room, exactly, for `n` entries more due at `at`: the pings taken
    /// together are pushed back together, into one slot, which then holds no
    /// more than them (a slot grown by doubling would keep up to twice, and
    /// keep its largest ever, a connection's entry costing 16 bytes or more
    /// rather than 8).
    pub(super) fn reserve(&mut self, at: Instant, n: usize) {
        let tick = self.tick_of(at).max(self.cursor);
        let len = self.slots.len() as u64;
        if tick < self.cursor + len {
            self.slots[(tick % len) as usize].reserve_exact(n);
        }
    }

    /// When the next ping is due, if any.
    pub(super) fn next_due(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let n = self.slots.len() as u64;
        (self.cursor..self.cursor + n)
            .find(|t| !self.slots[(t % n) as usize].is_empty())
            .or_else(|| self.beyond.iter().map(|&(t, _, _)| t).min())
            .map(|t| self.start + self.tick * t as u32)
    }

    /// Moves what is due by `now` into `due` (emptied first), in tick order
    /// (unless more than one turn late); the time the earliest of them was
    /// due, if any.
    pub(super) fn take_due(&mut self, now: Instant, due: &mut Vec<(u32, u32)>) -> Option<Instant> {
        due.clear();
        if self.len == 0 {
            self.cursor = self.cursor.max(self.tick_of(now) + 1);
            return None;
        }
        let last = self.tick_of(now);
        let n = self.slots.len() as u64;
        // Past one turn, every slot is due: one turn is enough.
        let first = self.cursor.max((last + 1).saturating_sub(n));
        let mut earliest = None;
        for t in first..=last {
            let slot = &mut self.slots[(t % n) as usize];
            if !slot.is_empty() && earliest.is_none() {
                earliest = Some(self.start + self.tick * t as u32);
            }
            // The slot's memory goes too (see `reserve`).
            due.extend_from_slice(slot);
            *slot = Vec::new();
        }
        self.cursor = self.cursor.max(last + 1);
        if !self.beyond.is_empty() {
            self.catch_up(last, due, &mut earliest);
        }
        self.len -= due.len();
        earliest
    }

    /// After the cursor moved: what waited beyond the slots is due (to
    /// `due`) or goes into its slot once the slots reach it.
    fn catch_up(&mut self, last: u64, due: &mut Vec<(u32, u32)>, earliest: &mut Option<Instant>) {
        let n = self.slots.len() as u64;
        let mut i = 0;
        while i < self.beyond.len() {
            let (tick, key, serial) = self.beyond[i];
            if tick <= last {
                let at = self.start + self.tick * tick as u32;
                *earliest = Some(earliest.map_or(at, |e| e.min(at)));
                due.push((key, serial));
            } else if tick < self.cursor + n {
                self.slots[(tick % n) as usize].push((key, serial));
            } else {
                i += 1;
                continue;
            }
            self.beyond.swap_remove(i);
        }
    }

    /// Forgets every entry (the drain: no more pings).
    pub(super) fn clear(&mut self) {
        for slot in &mut self.slots {
            *slot = Vec::new();
        }
        self.beyond = Vec::new();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_in_order_and_only_when_due() {
        let start = Instant::now();
        let mut w = PingWheel::new(Duration::from_secs(1), start);
        let ms = |n| start + Duration::from_millis(n);
        w.push(ms(500), 1, 0);
        w.push(ms(10), 2, 0);
        w.push(ms(999), 3, 0);
        assert_eq!(w.next_due(), Some(ms(10)));
        let mut due = Vec::new();
        w.take_due(ms(9), &mut due);
        assert!(due.is_empty());
        w.take_due(ms(600), &mut due);
        assert_eq!(due, vec![(2, 0), (1, 0)]);
        // Rescheduled one interval on: still fits.
        w.push(ms(1500), 2, 1);
        w.take_due(ms(3000), &mut due);
        assert_eq!(due, vec![(3, 0), (2, 1)]);
        assert_eq!(w.next_due(), None);
        // Pushed in the past: due at once.
        w.push(ms(100), 4, 0);
        w.take_due(ms(3001), &mut due);
        assert_eq!(due, vec![(4, 0)]);
    }

    /// A held connection's entry costs 8 bytes: a slot holds what was
    /// reserved for it and nothing once taken.
    #[test]
    fn slots_hold_no_more_than_their_entries() {
        let start = Instant::now();
        let mut w = PingWheel::new(Duration::from_secs(1), start);
        let ms = |n| start + Duration::from_millis(n);
        let mut due = Vec::new();
        w.reserve(ms(500), 5);
        for key in 0..5 {
            w.push(ms(500), key, 0);
        }
        let slot = |w: &PingWheel| w.slots.iter().map(Vec::capacity).sum::<usize>();
        assert_eq!(slot(&w), 5);
        w.take_due(ms(600), &mut due);
        assert_eq!(due.len(), 5);
        assert_eq!(slot(&w), 0);
    }

    /// A thread that stalled past a tick pushes a ping one interval after its
    /// late clock, further than the slots reach from the cursor: it must not
    /// wrap round into an earlier slot (it went out at once before) but wait
    /// for its time.
    #[test]
    fn a_ping_pushed_while_lagging_goes_out_at_its_time_not_early() {
        let start = Instant::now();
        let mut w = PingWheel::new(Duration::from_secs(1), start);
        let ms = |n| start + Duration::from_millis(n);
        let mut due = Vec::new();
        w.take_due(ms(0), &mut due);
        w.push(ms(100), 1, 0);
        // The thread stalls 500 ms: the cursor is still near 0 when it pushes
        // connection 2's next ping for 1,500 ms.
        w.push(ms(1500), 2, 0);
        assert_eq!(w.take_due(ms(600), &mut due), Some(ms(100)));
        assert_eq!(due, vec![(1, 0)]);
        w.take_due(ms(1400), &mut due);
        assert!(due.is_empty(), "pinged {due:?} before its time");
        let at = w.next_due().expect("the lagging ping is still there");
        assert!(at > ms(1490) && at <= ms(1500), "due at {:?}", at - start);
        w.take_due(ms(1500), &mut due);
        assert_eq!(due, vec![(2, 0)]);
        assert_eq!(w.next_due(), None);
        // Beyond the slots and already due when the thread comes back.
        w.push(ms(2000), 3, 0);
        w.push(ms(4000), 4, 0);
        w.take_due(ms(4000), &mut due);
        assert_eq!(due, vec![(3, 0), (4, 0)]);
        assert_eq!(w.next_due(), None);
    }
}
