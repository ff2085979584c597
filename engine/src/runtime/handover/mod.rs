//! A live hand-over's worker side (`docs/HANDOVER.md`): what one open
//! connection is, as plain data another process can rebuild it from
//! ([`state::Snapshot`]), and its bytes on the wire ([`wire`]). The worker
//! takes a connection out of its slab and its backend without closing the
//! socket (`worker/handover.rs`) and hands the descriptor and the snapshot
//! to the process's hand-over thread ([`Outgoing`]); the new process's
//! thread gives each one to a worker, which rebuilds it and serves it on.
//! The Unix-socket protocol between the processes is `crate::handover`.

mod bytes;
pub(crate) mod partial;
pub(crate) mod state;
pub(crate) mod wire;

use std::os::fd::OwnedFd;
use std::sync::mpsc::Sender;
use std::time::Instant;

/// What a worker of the old process hands its hand-over thread.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// One connection: its socket and its snapshot's bytes ([`wire`]).
    Conn { fd: OwnedFd, state: Vec<u8> },
    /// This worker has stopped reading every connection it can hand over
    /// (the switch is atomic for pub/sub: once every worker is paused and
    /// the publishes in flight between them are delivered, nothing is
    /// published here any more).
    Paused { worker: usize },
    /// This worker has nothing more to hand over (its connections are all
    /// handed over, closed, or the deadline passed): `handed` went, `refused`
    /// were closed with 1012.
    Done {
        worker: usize,
        handed: u64,
        refused: u64,
    },
}

/// The steps of a worker's hand-over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Stopping to read its connections (each where it is: its read side
    /// travels).
    Pausing,
    /// Paused; waits for `Command::HandOverGo` (every worker paused).
    Paused,
    /// Handing its connections over.
    Going,
}

/// A worker's hand-over in progress (the old process's side).
#[derive(Debug)]
pub(crate) struct HandOut {
    pub sink: Sender<Outgoing>,
    /// After it, what is left is closed with 1001 as a shutdown does.
    pub deadline: Instant,
    /// The new process can take connections over (else each is closed with
    /// 1012: its backend cannot serve them).
    pub adopts: bool,
    /// Where it is: pausing, paused (waiting for every worker), handing.
    pub stage: Stage,
    pub handed: u64,
    pub refused: u64,
}
