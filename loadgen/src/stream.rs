//! Completed seconds of a run, as they complete, for whoever streams them:
//! an agent to its controller (`--agents`), a `--procs` child to its parent
//! (a line of JSON a second on its stdout). Each producer (a client thread,
//! a child process) adds the seconds it closes and says which second it is
//! in now; a second is complete once every producer is past it, and then
//! taken, merged across producers, exactly as the run's final series merges
//! them (so what was streamed agrees with the result). Only a process that
//! streams ([`enable`]) keeps them. The run in progress can also be stopped
//! from outside ([`abort`]: an agent whose controller went away).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::series::Sample;

static ENABLED: AtomicBool = AtomicBool::new(false);
static ABORT: AtomicBool = AtomicBool::new(false);
static CURRENT: Mutex<Option<Arc<Outbox>>> = Mutex::new(None);

/// Complete seconds kept for a consumer that does not take them, at most (a
/// day of them); the oldest go first.
const MAX_PENDING: usize = 86_400;

/// The seconds of the run in progress, per producer.
#[derive(Debug, Default)]
pub struct Outbox {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Each producer's current second (`u64::MAX` once it has finished):
    /// every second before it is closed there.
    slots: Vec<u64>,
    /// Seconds added and not yet taken, merged across producers.
    pending: BTreeMap<u64, Sample>,
}

impl Outbox {
    pub fn new(producers: usize) -> Self {
        Self {
            state: Mutex::new(State {
                slots: vec![0; producers],
                pending: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Producer `slot` closed `samples` and is in second `now` (`u64::MAX`:
    /// it has finished).
    pub fn add(&self, slot: usize, samples: &[Sample], now: u64) {
        let mut s = self.lock();
        for sample in samples {
            match s.pending.get_mut(&sample.t) {
                Some(have) => have.add(sample),
                None => {
                    s.pending.insert(sample.t, sample.clone());
                }
            }
        }
        if let Some(at) = s.slots.get_mut(slot) {
            *at = (*at).max(now);
        }
        while s.pending.len() > MAX_PENDING {
            s.pending.pop_first();
        }
    }

    /// Every producer has finished (or will add nothing more).
    pub fn close_all(&self) {
        self.lock().slots.iter_mut().for_each(|s| *s = u64::MAX);
    }

    /// The seconds complete now and not taken before, ascending.
    pub fn take_complete(&self) -> Vec<Sample> {
        let mut s = self.lock();
        let done = s.slots.iter().copied().min().unwrap_or(u64::MAX);
        let rest = match done {
            u64::MAX => BTreeMap::new(),
            t => s.pending.split_off(&t),
        };
        std::mem::replace(&mut s.pending, rest)
            .into_values()
            .collect()
    }
}

/// This process streams its seconds (an agent, a `--procs` child).
pub fn enable() {
    ENABLED.store(true, Ordering::SeqCst);
}

/// A new run's outbox for `producers`, the current one, where this process
/// streams (else `None`: nothing is kept).
pub fn start(producers: usize) -> Option<Arc<Outbox>> {
    if !ENABLED.load(Ordering::SeqCst) {
        return None;
    }
    let outbox = Arc::new(Outbox::new(producers));
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(outbox.clone());
    Some(outbox)
}

/// The complete seconds of the current run not taken before.
pub fn take_complete() -> Vec<Sample> {
    let current = CURRENT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    current.map(|o| o.take_complete()).unwrap_or_default()
}

/// Before a run: no outbox, not stopped.
pub fn reset() {
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = None;
    ABORT.store(false, Ordering::SeqCst);
}

/// Stops the run in progress: its client threads end at their next turn (a
/// few ms), `--procs` children are killed.
pub fn abort() {
    ABORT.store(true, Ordering::SeqCst);
}

pub fn aborted() -> bool {
    ABORT.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::Counts;

    fn sample(t: u64, messages: u64) -> Sample {
        Sample {
            t,
            open: 1,
            counts: Counts {
                messages,
                ..Counts::default()
            },
            ..Sample::default()
        }
    }

    #[test]
    fn a_second_is_complete_once_every_producer_is_past_it() {
        let o = Outbox::new(2);
        o.add(0, &[sample(0, 5), sample(1, 6)], 2);
        assert!(o.take_complete().is_empty(), "producer 1 is still in 0");
        o.add(1, &[sample(0, 1)], 1);
        let done = o.take_complete();
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].t, done[0].counts.messages, done[0].open),
            (0, 6, 2)
        );
        assert!(o.take_complete().is_empty(), "taken once");
        o.add(1, &[sample(1, 1), sample(2, 1)], u64::MAX);
        let done = o.take_complete();
        assert_eq!(done.iter().map(|s| s.t).collect::<Vec<_>>(), [1]);
        assert_eq!(done[0].counts.messages, 7);
        o.close_all();
        assert_eq!(o.take_complete()[0].t, 2);
    }
}
