//! A worker's turn, opened up for the criterion benchmark of the engine's own
//! work per echoed message (`bench/benches/turn.rs`) and nothing else: the
//! worker as a backend drives it, with an echo handler, its connections
//! upgraded, each fed one masked frame per turn through `on_data` as the epoll
//! backend feeds it (the bytes copied into a receive buffer first, as the
//! kernel's read would), then the turn's end, where the echoes are flushed.
//! Writes go to a sink that takes every byte and keeps only the count: no
//! sockets and no system calls, so what is timed is the user-space part of an
//! echo that `perf` shows among the kernel's TCP work. Not part of the API.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::command::{self, Wake};
use super::handler::{Handler, WebSocket};
use super::metrics::{Metrics, Source};
use super::seam::{FrameParts, Io, Prepared, Written};
use super::worker::Worker;
use crate::config::Config;
use crate::proto::Role;
use crate::proto::frame::OpCode;
use crate::proto::handshake::UpgradeRequest;
use crate::proto::session::{Endpoint, Session};
use crate::transport::outbox::Outbox;
use crate::types::{Message, Upgrade};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

/// The length of the 101 that answers [`REQUEST`].
const SWITCHING_PROTOCOLS_LEN: usize = 129;

/// The echo example's handler.
struct Echo;

impl Handler for Echo {
    type Data = ();

    fn on_upgrade(&mut self, _request: &UpgradeRequest<'_>, _peer: SocketAddr) -> Upgrade<()> {
        Upgrade::accept(())
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, message: Message<'_>) {
        ws.send(message);
    }
}

/// A readiness backend whose sockets take everything at once.
#[derive(Debug, Default)]
struct Sink {
    written: usize,
}

impl Io for Sink {
    fn writes_later(&self) -> bool {
        false
    }

    fn write(&mut self, _key: usize, outbox: &mut Outbox) -> Written {
        let bytes = outbox.len();
        self.written += bytes;
        Written::Now {
            bytes,
            blocked: false,
        }
    }

    fn write_frame(&mut self, _key: usize, frame: FrameParts<'_>) -> Option<Written> {
        let bytes = frame.header.len() + frame.payload.len();
        self.written += bytes;
        Some(Written::Now {
            bytes,
            blocked: false,
        })
    }

    fn shutdown_write(&mut self, _key: usize) {}

    fn close(&mut self, _key: usize) -> bool {
        true
    }

    fn pause_reading(&mut self, _key: usize) {}

    fn resume_reading(&mut self, _key: usize) {}

    fn stop_accepting(&mut self) {}

    fn prepare_detach(&mut self, _key: usize) -> Prepared {
        Prepared::Never
    }

    fn detach(&mut self, _key: usize) -> Option<std::os::fd::OwnedFd> {
        None
    }

    fn adopt(&mut self, _key: usize, _fd: std::os::fd::OwnedFd) -> bool {
        false
    }
}

/// Nobody waits on the worker's mailbox here.
struct NoWake;

impl Wake for NoWake {
    fn wake(&self) {}
}

/// One worker echoing on `conns` upgraded connections.
pub struct EchoTurns {
    worker: Worker<Echo>,
    io: Sink,
    keys: Vec<usize>,
    /// One masked binary frame as the client sends it.
    frame: Vec<u8>,
    /// The receive buffer each frame is read into.
    recv: Vec<u8>,
}

impl std::fmt::Debug for EchoTurns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoTurns")
            .field("connections", &self.keys.len())
            .field("frame", &self.frame.len())
            .finish_non_exhaustive()
    }
}

impl EchoTurns {
    /// `conns` connections, each echoing a binary message of `payload` bytes
    /// per round, with the server's default configuration.
    pub fn new(conns: usize, payload: usize) -> Self {
        let (_mailbox, inbox) = command::queue(Arc::new(NoWake));
        let peers = Arc::new(OnceLock::new());
        let metrics = Arc::new(Metrics::new(Source {
            backend: "epoll",
            workers: vec![Arc::default()].into(),
            mailboxes: peers.clone(),
            handle_publishes: Default::default(),
        }));
        let config = Arc::new(Config::default());
        let mut worker = Worker::new(
            0,
            Echo,
            config,
            inbox,
            peers,
            None,
            metrics,
            None,
            Instant::now(),
        );
        let mut io = Sink::default();
        let peer: SocketAddr = "127.0.0.1:40000".parse().expect("an address");
        let keys: Vec<usize> = (0..conns)
            .map(|_| {
                let key = worker.on_accept(peer, 0).expect("room for the connection");
                worker.on_data(key, &mut REQUEST.to_vec(), &mut io);
                key
            })
            .collect();
        worker.end_turn(Instant::now(), &mut io);
        // Every connection got its 101 (129 bytes with this request's key).
        assert_eq!(
            io.written,
            conns * SWITCHING_PROTOCOLS_LEN,
            "every connection upgraded"
        );
        Self {
            worker,
            io,
            keys,
            frame: masked_frame(payload),
            recv: vec![0; 64 << 10],
        }
    }

    /// One turn: a frame read on every connection, then the turn's end.
    /// Returns the bytes the echoes took on the wire.
    pub fn round(&mut self) -> usize {
        let before = self.io.written;
        let len = self.frame.len();
        for &key in &self.keys {
            self.recv[..len].copy_from_slice(&self.frame);
            self.worker
                .on_data(key, &mut self.recv[..len], &mut self.io);
        }
        self.worker.end_turn(Instant::now(), &mut self.io);
        self.io.written - before
    }
}

/// A client's masked binary frame of `payload` bytes, framed by the client
/// role's session as the load generator frames it.
fn masked_frame(payload: usize) -> Vec<u8> {
    let mut endpoint = Endpoint::new(Role::Client, 1 << 24, 1 << 24, 1);
    let bytes: Vec<u8> = (0..payload).map(|i| i as u8).collect();
    let mut frame = Vec::new();
    Session::new()
        .message(&mut endpoint, OpCode::Binary, &bytes, false)
        .write_to(&mut frame);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each round echoes every connection's message, framed as the server
    /// frames it: unmasked, so 2 header bytes + payload at 20 B, 4 at 16 KiB.
    #[test]
    fn every_round_echoes_every_message() {
        let mut small = EchoTurns::new(10, 20);
        assert_eq!(small.round(), 10 * 22);
        assert_eq!(small.round(), 10 * 22);
        let mut large = EchoTurns::new(3, 16 << 10);
        assert_eq!(large.round(), 3 * (4 + (16 << 10)));
    }
}
