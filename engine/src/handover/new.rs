//! The new process's side: at start it asks the process listening on the
//! control socket for its listening sockets ([`take_over`]); once its own
//! workers serve them it says so, then gives each connection that arrives
//! to one of its workers, and in the end listens on the control socket
//! itself, for the next restart.

use std::collections::VecDeque;
use std::io;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::old::Old;
use super::proto::{ListenerSlot, MAJOR, MINOR, Message, ProtoError, VERSION_REFUSAL};
use super::unix;
use crate::config::Handover;
use crate::runtime::command::{Command, Mailbox};

/// What the old process handed over at start: the control connection and
/// its listening sockets.
#[derive(Debug)]
pub(crate) struct Taken {
    control: OwnedFd,
    listeners: Vec<(ListenerSlot, OwnedFd)>,
}

/// What asking the running process gave.
#[derive(Debug)]
pub(crate) enum Asked {
    /// Nobody listens on the control socket: this is the first process.
    Nobody,
    /// It speaks another major version: it shuts down (1001), and this
    /// process binds its own listening sockets beside it.
    OtherVersion(String),
    /// Its listening sockets, and its connections to come.
    Taken(Taken),
}

/// Asks the process listening on the control socket for its listening
/// sockets. An error when the peer is another user, refuses the nonce,
/// or speaks nonsense.
pub(crate) fn take_over(config: &Handover, nonce: &[u8], adopts: bool) -> io::Result<Asked> {
    let Some(control) = unix::connect(&config.socket)? else {
        return Ok(Asked::Nobody);
    };
    if !unix::same_user(&control)? {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "another user listens on the hand-over socket",
        ));
    }
    unix::set_timeout(&control, Some(config.deadline))?;
    let hello = Message::Hello {
        major: MAJOR,
        minor: MINOR,
        adopts,
        nonce: nonce.to_vec(),
    };
    unix::send(&control, &hello.encode(), &[])?;
    let (bytes, fds) = unix::recv(&control)?;
    match Message::decode(&bytes) {
        Ok(Message::Listeners(slots)) if slots.len() == fds.len() => Ok(Asked::Taken(Taken {
            control,
            listeners: slots.into_iter().zip(fds).collect(),
        })),
        Ok(Message::Refused(reason)) if reason.starts_with(VERSION_REFUSAL) => {
            Ok(Asked::OtherVersion(reason))
        }
        Ok(Message::Refused(reason)) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("the running process refused the hand-over: {reason}"),
        )),
        Err(ProtoError::Gone) => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the running process went away during the hand-over",
        )),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("hand-over: unexpected answer {other:?}"),
        )),
    }
}

impl Taken {
    /// The listening sockets handed over for configured address `index`, in
    /// the old process's worker order.
    pub fn listeners_of(&mut self, index: usize) -> VecDeque<TcpListener> {
        let (mine, rest) = std::mem::take(&mut self.listeners)
            .into_iter()
            .partition(|(slot, _)| usize::from(slot.index) == index);
        self.listeners = rest;
        mine.into_iter()
            .map(|(_, fd)| TcpListener::from(fd))
            .collect()
    }

    /// Listening sockets no configured address of this process takes.
    pub fn leftover(&self) -> usize {
        self.listeners.len()
    }

    /// Says the workers serve the listeners, then adopts the connections as
    /// they come (to the workers in turn), then serves the control socket as
    /// `old` (for the next restart).
    pub fn receive(self, mailboxes: Arc<[Mailbox]>, old: Old) {
        let Taken { control, .. } = self;
        let result = receive(&control, &mailboxes);
        // Every connection that came is in a mailbox ahead of this: read
        // them all from now on.
        for mailbox in mailboxes.iter() {
            mailbox.send(Command::HandOverComplete);
        }
        match result {
            Ok((handed, refused, adopted)) => log::info!(
                "ringws: hand-over received: {adopted} connections ({handed} handed over, {refused} closed with 1012 by the old process)"
            ),
            Err(e) => log::warn!("ringws: hand-over cut short: {e}"),
        }
        drop(control);
        old.run(None);
    }
}

fn receive(control: &OwnedFd, mailboxes: &[Mailbox]) -> io::Result<(u64, u64, u64)> {
    unix::send(control, &Message::Ready.encode(), &[])?;
    // The old process sends as its workers hand over, until its deadline.
    unix::set_timeout(control, None)?;
    let mut next = 0;
    let mut adopted = 0;
    loop {
        let (bytes, fds) = unix::recv(control)?;
        match Message::decode(&bytes) {
            Ok(Message::Batch(states)) if states.len() == fds.len() => {
                for (fd, state) in fds.into_iter().zip(states) {
                    let mailbox = &mailboxes[next % mailboxes.len()];
                    next += 1;
                    adopted += 1;
                    mailbox.send(Command::Adopt {
                        fd,
                        state,
                        hold: true,
                    });
                }
            }
            Ok(Message::Done { handed, refused }) => return Ok((handed, refused, adopted)),
            other => {
                // The descriptors that came with it are closed here.
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected message {other:?} with {} sockets", fds.len()),
                ));
            }
        }
    }
}
