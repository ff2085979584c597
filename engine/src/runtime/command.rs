//! Messages between threads: what a [`crate::ServerHandle`] or another worker asks
//! of a worker, delivered through a channel plus a backend-specific wake-up.

use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Instant;

use bytes::Bytes;

use crate::api::ConnId;
use crate::proto::close::CloseCode;

/// Wakes a worker blocked in its backend's wait.
pub(crate) trait Wake: Send + Sync {
    fn wake(&self);
}

#[derive(Debug)]
pub(crate) enum Command {
    /// Deliver an encoded frame to this worker's subscribers of `topic`.
    Publish { topic: Arc<str>, frame: Bytes },
    /// Send an encoded frame to one connection.
    Send { id: ConnId, frame: Bytes },
    /// Close one connection gracefully.
    Close {
        id: ConnId,
        code: CloseCode,
        reason: String,
    },
    /// Stop accepting, close everything, exit by the deadline.
    Shutdown { deadline: Instant },
}

/// The sending side of a worker's command queue.
#[derive(Clone)]
pub(crate) struct Mailbox {
    pub tx: Sender<Command>,
    pub waker: Arc<dyn Wake>,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mailbox")
    }
}

impl Mailbox {
    /// Queues a command and wakes the worker. False if the worker has exited.
    pub fn send(&self, command: Command) -> bool {
        if self.tx.send(command).is_err() {
            return false;
        }
        self.waker.wake();
        true
    }
}
