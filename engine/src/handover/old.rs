//! The running process's side: its hand-over thread listens on the control
//! socket and, for a new process of the same user that proves it holds the
//! nonce and speaks the same major version, passes the listening sockets,
//! waits until the new process serves them, then has every worker hand its
//! connections over and sends them on in batches.
//!
//! Failure modes: a peer of another user, or without the nonce, is refused
//! and nothing changes; another major version is refused and this process
//! shuts down as a plain restart does (1001 to every connection); a new
//! process that goes away before it is ready changes nothing; one that goes
//! away later loses the connections already sent to it, and this process
//! keeps serving the rest (taken back from the batch not yet sent), no
//! longer accepting, its listening sockets kept here for the next attempt.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use super::proto::{self, ListenerSlot, MAJOR, MINOR, Message, VERSION_REFUSAL};
use super::unix;
use crate::config::Handover;
use crate::runtime::command::{Command, Mailbox};
use crate::runtime::handover::{HandOut, Outgoing, Stage};

/// How often the thread looks at its stop flag while idle.
const POLL: Duration = Duration::from_millis(100);
/// How long a peer has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// A batch is sent once it holds this many bytes of records.
const BATCH_BYTES: usize = 64 << 10;
// One record alone always fits a message of its own.
const _: () = assert!(3 + 4 + crate::runtime::handover::state::MAX_RECORD <= unix::MAX_MESSAGE);

/// What the hand-over thread keeps: the configuration, the nonce, a copy of
/// every listening socket and the workers' mailboxes.
pub(crate) struct Old {
    pub config: Handover,
    pub nonce: Vec<u8>,
    pub listeners: Vec<(ListenerSlot, OwnedFd)>,
    pub mailboxes: Arc<[Mailbox]>,
    pub stop: Arc<AtomicBool>,
}

/// How one peer of the control socket was served.
enum Served {
    /// Refused, or it went away before anything changed: wait for another.
    Refused,
    /// It went away mid-way: wait for another (this process serves on).
    Failed,
    /// Everything went (or the fallback shutdown began): the thread ends.
    Finished,
}

impl Old {
    /// Serves the control socket until a hand-over completes or the server
    /// stops; `listener` is the control socket when already bound.
    pub fn run(self, mut listener: Option<OwnedFd>) {
        while !self.stop.load(Ordering::Relaxed) {
            let Some(bound) = &listener else {
                match unix::listen(&self.config.socket) {
                    Ok(fd) => listener = Some(fd),
                    Err(e) => {
                        log::warn!("ringws: hand-over socket {}: {e}", self.config.socket);
                        std::thread::sleep(POLL);
                    }
                }
                continue;
            };
            let peer = match unix::accept(bound, POLL) {
                Ok(Some(peer)) => peer,
                Ok(None) => continue,
                Err(e) => {
                    log::warn!("ringws: hand-over socket: {e}");
                    std::thread::sleep(POLL);
                    continue;
                }
            };
            match self.serve(&peer, &mut listener) {
                Ok(Served::Finished) => return,
                Ok(Served::Refused | Served::Failed) => {}
                Err(e) => log::warn!("ringws: hand-over failed: {e}"),
            }
        }
    }

    fn serve(&self, peer: &OwnedFd, listener: &mut Option<OwnedFd>) -> io::Result<Served> {
        if !unix::same_user(peer)? {
            log::warn!("ringws: hand-over refused: the peer runs as another user");
            return Ok(Served::Refused);
        }
        unix::set_timeout(peer, Some(HELLO_TIMEOUT))?;
        let (bytes, _fds) = unix::recv(peer)?;
        let (major, minor, adopts, nonce) = match Message::decode(&bytes) {
            Ok(Message::Hello {
                major,
                minor,
                adopts,
                nonce,
            }) => (major, minor, adopts, nonce),
            Ok(other) => {
                log::warn!("ringws: hand-over refused: {other:?} before hello");
                return Ok(Served::Refused);
            }
            Err(e) => {
                log::warn!("ringws: hand-over refused: {e}");
                return Ok(Served::Refused);
            }
        };
        if !proto::same_nonce(&nonce, &self.nonce) {
            log::warn!("ringws: hand-over refused: wrong nonce");
            let _ = unix::send(peer, &Message::Refused("wrong nonce".into()).encode(), &[]);
            return Ok(Served::Refused);
        }
        if major != MAJOR {
            let reason = format!(
                "{VERSION_REFUSAL} hand-over protocol {major}.{minor}; this process speaks {MAJOR}.{MINOR}"
            );
            log::warn!("ringws: hand-over refused ({reason}); shutting down with 1001 instead");
            let _ = unix::send(peer, &Message::Refused(reason).encode(), &[]);
            let deadline = Instant::now() + self.config.deadline;
            for mailbox in self.mailboxes.iter() {
                mailbox.send(Command::Shutdown { deadline });
            }
            // The new process listens on the control socket from now on.
            if let Some(fd) = listener.take() {
                unix::unlisten(&self.config.socket, fd);
            }
            return Ok(Served::Finished);
        }
        // The listening sockets go first; the new process binds the control
        // socket once it is done with this one.
        let slots: Vec<ListenerSlot> = self.listeners.iter().map(|(slot, _)| *slot).collect();
        let fds: Vec<_> = self.listeners.iter().map(|(_, fd)| fd.as_fd()).collect();
        unix::send(peer, &Message::Listeners(slots).encode(), &fds)?;
        if let Some(fd) = listener.take() {
            unix::unlisten(&self.config.socket, fd);
        }
        unix::set_timeout(peer, Some(self.config.deadline))?;
        match unix::recv(peer).map(|(bytes, _)| Message::decode(&bytes)) {
            Ok(Ok(Message::Ready)) => {}
            other => {
                log::warn!("ringws: hand-over: the new process did not start ({other:?})");
                return Ok(Served::Failed);
            }
        }
        Ok(self.hand_over(peer, adopts))
    }

    /// Every worker hands its connections over; they go on in batches.
    fn hand_over(&self, peer: &OwnedFd, adopts: bool) -> Served {
        let started = Instant::now();
        let (sink, items) = mpsc::channel();
        let deadline = started + self.config.deadline;
        for mailbox in self.mailboxes.iter() {
            mailbox.send(Command::HandOver(HandOut {
                sink: sink.clone(),
                deadline,
                adopts,
                stage: Stage::Pausing,
                handed: 0,
                refused: 0,
            }));
        }
        drop(sink);
        let workers = self.mailboxes.len();
        let mut batch = Batch::default();
        let (mut done, mut paused, mut handed, mut refused) = (0, 0, 0, 0);
        let mut failed = false;
        while done < workers {
            let item = if batch.is_empty() || failed {
                match items.recv_timeout(POLL) {
                    Ok(item) => item,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match items.try_recv() {
                    Ok(item) => item,
                    Err(TryRecvError::Empty) => {
                        failed = !self.flush(peer, &mut batch);
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => break,
                }
            };
            match item {
                Outgoing::Conn { fd, state } => {
                    // One message holds the batch: send what it has first
                    // where this record would take it past the limit.
                    if !failed && !batch.is_empty() && !batch.fits(state.len()) {
                        failed = !self.flush(peer, &mut batch);
                    }
                    batch.push(fd, state);
                    if !failed && batch.full() {
                        failed = !self.flush(peer, &mut batch);
                    }
                }
                Outgoing::Paused { worker } => {
                    log::debug!("ringws: hand-over: worker {worker} paused");
                    paused += 1;
                    if paused == workers {
                        // Every worker has stopped reading, and what they
                        // published before is in the mailboxes ahead of this.
                        for mailbox in self.mailboxes.iter() {
                            mailbox.send(Command::HandOverGo);
                        }
                    }
                }
                Outgoing::Done {
                    worker,
                    handed: h,
                    refused: r,
                } => {
                    log::debug!(
                        "ringws: hand-over: worker {worker} done ({h} handed over, {r} closed with 1012)"
                    );
                    done += 1;
                    handed += h;
                    refused += r;
                }
            }
            if failed && !batch.is_empty() {
                self.take_back(&mut batch);
            }
        }
        if !failed && !batch.is_empty() {
            failed = !self.flush(peer, &mut batch);
        }
        if failed {
            self.take_back(&mut batch);
            return Served::Failed;
        }
        let done = Message::Done { handed, refused };
        if let Err(e) = unix::send(peer, &done.encode(), &[]) {
            log::warn!("ringws: hand-over: the last message did not go: {e}");
        }
        // Nothing can come back now: the workers end once what they still
        // hold (closing with 1012) is gone.
        for mailbox in self.mailboxes.iter() {
            mailbox.send(Command::HandOverDone);
        }
        log::info!(
            "ringws: hand-over done in {} ms: {handed} connections handed over, {refused} closed with 1012",
            started.elapsed().as_millis()
        );
        Served::Finished
    }

    /// Sends the batch; false (the batch kept) if the new process is gone,
    /// after telling every worker to stop handing over.
    fn flush(&self, peer: &OwnedFd, batch: &mut Batch) -> bool {
        let message = Message::Batch(std::mem::take(&mut batch.states)).encode();
        match unix::send(peer, &message, &unix::borrow(&batch.fds)) {
            Ok(()) => {
                // Sent: the kernel holds its own references now.
                batch.fds.clear();
                batch.bytes = 0;
                true
            }
            Err(e) => {
                log::warn!("ringws: hand-over: the new process went away ({e}); serving on");
                // Put the states back beside their sockets.
                if let Ok(Message::Batch(states)) = Message::decode(&message) {
                    batch.states = states;
                }
                for mailbox in self.mailboxes.iter() {
                    mailbox.send(Command::HandOverFailed);
                }
                false
            }
        }
    }

    /// Gives the connections of a batch that did not go back to the workers.
    fn take_back(&self, batch: &mut Batch) {
        let states = std::mem::take(&mut batch.states);
        for (i, (fd, state)) in batch.fds.drain(..).zip(states).enumerate() {
            let mailbox = &self.mailboxes[i % self.mailboxes.len()];
            mailbox.send(Command::Adopt {
                fd,
                state,
                hold: false,
            });
        }
        batch.bytes = 0;
    }
}

/// Connections waiting to be sent: sockets and their states, in order.
#[derive(Default)]
struct Batch {
    fds: Vec<OwnedFd>,
    states: Vec<Vec<u8>>,
    bytes: usize,
}

impl Batch {
    fn push(&mut self, fd: OwnedFd, state: Vec<u8>) {
        self.bytes += state.len() + 4;
        self.fds.push(fd);
        self.states.push(state);
    }

    fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// Whether a record of `len` bytes still fits the batch's message
    /// (u8 tag, u16 count, then a u32 length before each record).
    fn fits(&self, len: usize) -> bool {
        3 + self.bytes + 4 + len <= unix::MAX_MESSAGE
    }

    fn full(&self) -> bool {
        self.fds.len() >= unix::MAX_FDS || self.bytes >= BATCH_BYTES
    }
}
