//! Messages between threads: what a [`crate::ServerHandle`] or another worker
//! asks of a worker, through a channel plus one backend-specific wake-up per
//! batch: a sender wakes the worker only if no wake is pending since the
//! worker last drained its queue, so a burst of commands costs one wake.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::Instant;

use crate::proto::close::CloseCode;
use crate::types::{ConnId, PreparedMessage};

/// The mailboxes of all workers, set once every worker has started.
pub(crate) type Peers = Arc<std::sync::OnceLock<Vec<Mailbox>>>;

/// Wakes a worker blocked in its backend's wait.
pub(crate) trait Wake: Send + Sync {
    fn wake(&self);
}

#[derive(Debug)]
pub(crate) enum Command {
    /// Deliver a message to this worker's subscribers of `topic`.
    Publish {
        topic: Arc<str>,
        message: PreparedMessage,
    },
    /// Send an encoded message to one connection.
    Send {
        id: ConnId,
        message: PreparedMessage,
    },
    /// Close one connection gracefully.
    Close {
        id: ConnId,
        code: CloseCode,
        reason: String,
    },
    /// Stop accepting, close everything, exit by the deadline.
    Shutdown { deadline: Instant },
    /// A live hand-over begins: hand every open connection to `out`'s sink
    /// (see `runtime::handover`), then stop.
    HandOver(crate::runtime::handover::HandOut),
    /// The hand-over failed (the new process went away): keep serving what
    /// is left, as before it.
    HandOverFailed,
    /// The new process has everything: end once what is left is gone.
    HandOverDone,
    /// Every worker has paused: hand the connections over.
    HandOverGo,
    /// The new process: every connection handed over has arrived; read them
    /// (until then they are held, so that nothing is published before every
    /// subscriber is here).
    HandOverComplete,
    /// A connection handed over by the old process: its socket and its
    /// snapshot's bytes, to serve from now on.
    Adopt {
        fd: std::os::fd::OwnedFd,
        state: Vec<u8>,
        /// Not read until `HandOverComplete` (the new process); a connection
        /// taken back after a failure is read at once.
        hold: bool,
    },
    /// A deferred upgrade's decision: an `Upgrade<U>` of the worker's handler
    /// (see `deferred::decision`).
    Decide {
        id: ConnId,
        decision: Box<dyn std::any::Any + Send>,
    },
}

/// The sending side of a worker's command queue.
#[derive(Clone)]
pub(crate) struct Mailbox {
    tx: Sender<Command>,
    waker: Arc<dyn Wake>,
    /// A wake is on its way and the worker has not drained since.
    pending: Arc<AtomicBool>,
    /// Wakes sent, for [`crate::Stats`].
    wakes: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mailbox")
    }
}

/// A worker's command queue: the mailbox others send to, the inbox it drains.
pub(crate) fn queue(waker: Arc<dyn Wake>) -> (Mailbox, Inbox) {
    let (tx, rx) = std::sync::mpsc::channel();
    let pending = Arc::new(AtomicBool::new(false));
    let wakes = Arc::default();
    let mailbox = Mailbox {
        tx,
        waker,
        pending: pending.clone(),
        wakes,
    };
    (mailbox, Inbox { rx, pending })
}

impl Mailbox {
    /// Queues a command; wakes the worker unless a wake is already pending.
    /// False if the worker has exited.
    pub fn send(&self, command: Command) -> bool {
        if self.tx.send(command).is_err() {
            return false;
        }
        // AcqRel pairs with the worker's swap in `Inbox::drain`: if this swap
        // sees `true`, the worker has yet to reset the flag and will then see
        // the command just queued.
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.wakes.fetch_add(1, Ordering::Relaxed);
            self.waker.wake();
        }
        true
    }

    /// Wakes sent to this worker so far.
    pub fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::Relaxed)
    }
}

/// The receiving side of a worker's command queue.
#[derive(Debug)]
pub(crate) struct Inbox {
    rx: Receiver<Command>,
    pending: Arc<AtomicBool>,
}

impl Inbox {
    /// Runs `apply` on every queued command; returns how many there were.
    pub fn drain(&mut self, mut apply: impl FnMut(Command)) -> u64 {
        // Reset before reading: a command sent from now on wakes us again.
        if !self.pending.swap(false, Ordering::AcqRel) {
            return 0;
        }
        let mut count = 0;
        loop {
            match self.rx.try_recv() {
                Ok(command) => {
                    count += 1;
                    apply(command);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return count,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn shutdown() -> Command {
        Command::Shutdown {
            deadline: Instant::now(),
        }
    }

    #[test]
    fn a_burst_costs_one_wake_per_drain() {
        let waker = Arc::new(CountingWaker::default());
        let (mailbox, mut inbox) = queue(waker.clone());
        for _ in 0..1000 {
            assert!(mailbox.send(shutdown()));
        }
        assert_eq!(waker.0.load(Ordering::Relaxed), 1);
        assert_eq!(inbox.drain(|_| {}), 1000);
        // Drained: the next command wakes again, once.
        assert_eq!(inbox.drain(|_| {}), 0);
        mailbox.send(shutdown());
        mailbox.send(shutdown());
        assert_eq!(waker.0.load(Ordering::Relaxed), 2);
        assert_eq!(mailbox.wakes(), 2);
        assert_eq!(inbox.drain(|_| {}), 2);
    }

    #[test]
    fn no_command_is_left_behind_by_concurrent_senders() {
        let waker = Arc::new(CountingWaker::default());
        let (mailbox, mut inbox) = queue(waker.clone());
        let senders: Vec<_> = (0..4)
            .map(|_| {
                let mailbox = mailbox.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        mailbox.send(shutdown());
                    }
                })
            })
            .collect();
        let mut received = 0;
        let mut drains_with_work = 0;
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while received < 40_000 {
            assert!(Instant::now() < deadline, "stuck at {received} commands");
            // Only drain when woken: a lost wake would hang here, and a lost
            // command would leave `received` short once every wake is used.
            let before = waker.0.load(Ordering::Acquire);
            if before > drains_with_work {
                let n = inbox.drain(|_| {});
                drains_with_work += 1;
                received += n;
            } else {
                std::thread::yield_now();
            }
        }
        for s in senders {
            s.join().unwrap();
        }
        assert_eq!(received, 40_000);
        assert_eq!(inbox.drain(|_| {}), 0);
    }
}
