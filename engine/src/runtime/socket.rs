//! A socket in a worker's slab: its transport (plain or TLS, from
//! [`crate::transport`]) and its read gate, and the WebSocket stream it
//! carries ([`Stream`]). The worker reads and writes every socket through the
//! same calls ([`Transport::read`], [`Transport::seal`], [`Transport::wire`])
//! and never asks which transport it has.
//!
//! An HTTP/1.1 socket carries exactly one stream, kept beside it in one slab
//! entry ([`Conn`]): an HTTP/1.1 WebSocket pays no indirection for the split.
//! An HTTP/2 socket (its transport a [`crate::transport::mux::Mux`]) carries
//! many: each is an entry of its own whose transport says where it is carried
//! ([`Transport::Carried`]), and the socket's own stream is in the `Carrier`
//! phase, its send queue the codec's frames. A stream's [`crate::ConnId`]
//! names the stream, not the socket.

use std::net::SocketAddr;

use super::gate::Reasons;
use super::stream::{Stream, Timer};
use crate::transport::Transport;
use crate::transport::outbox::Outbox;
use crate::types::ConnId;

/// What a socket owns below its streams.
#[derive(Debug)]
pub(crate) struct Socket {
    /// Plain, or a TLS session: one pointer for a plain socket.
    pub transport: Transport,
    /// Why its reading is paused, if it is (see [`super::gate`]).
    pub gate: Reasons,
}

impl Socket {
    /// Reading is paused by its gate.
    pub fn gated(&self) -> bool {
        !self.gate.is_empty()
    }
}

/// A socket and the stream it carries: one entry of a worker's slab.
#[derive(Debug)]
pub(crate) struct Conn<U> {
    pub socket: Socket,
    pub stream: Stream<U>,
}

impl<U> Conn<U> {
    pub fn new(id: ConnId, peer: SocketAddr, timer: Timer, transport: Transport) -> Self {
        Self {
            socket: Socket {
                transport,
                gate: Reasons::default(),
            },
            stream: Stream::new(id, peer, timer),
        }
    }

    /// The bytes the backend writes: the stream's send queue itself, or over
    /// TLS the ciphertext its frames were sealed into.
    pub fn wire(&mut self) -> &mut Outbox {
        self.socket.transport.wire(&mut self.stream.link.outbox)
    }

    /// Nothing is queued: no frame, no ciphertext.
    pub fn drained(&self) -> bool {
        self.stream.link.outbox.is_empty() && !self.socket.transport.pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::message::Decoder;
    use crate::proto::session::Session;
    use crate::runtime::conn::Link;

    #[test]
    fn connection_state_is_small() {
        // The whole per-connection state of an idle plain WebSocket, besides
        // the kernel's socket; the goal is under 512 bytes including allocator
        // overhead. The socket is its transport (two words: a tag, then the
        // boxed TLS session or HTTP/2 socket, or where a carried stream is
        // carried) and its read gate (one byte, padded to a word); the stream
        // its link, decoder and timer. The split cost nothing (216 bytes, as
        // the flat struct before it: why a connection started closing moved
        // into the open phase's boxed state); HTTP/2 cost the transport's tag
        // (8 bytes), the HTTP a link speaks fitting in a spare byte. The send queue's chunk list is boxed (pooled); the
        // handshake clock has a field of its own (`Timer::accepted_ms`); the
        // deadline's phase sits in the link's spare bytes so that the timer is
        // four words.
        let size = std::mem::size_of::<Conn<()>>();
        eprintln!(
            "Conn<()> = {size} bytes: Socket = {}, Stream<()> = {} (Link<()> = {}, Session = {}, Decoder = {})",
            std::mem::size_of::<Socket>(),
            std::mem::size_of::<Stream<()>>(),
            std::mem::size_of::<Link<()>>(),
            std::mem::size_of::<Session>(),
            std::mem::size_of::<Decoder>()
        );
        assert!(size <= 224, "{size}");
    }
}
