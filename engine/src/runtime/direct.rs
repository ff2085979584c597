//! Where a large frame sent from a callback on received data goes without
//! first being copied into the send queue: a plain socket (written from where
//! the frame lies) or the TLS record layer (sealed from where it lies).

use super::seam::Io;
use crate::transport::tls::records::Sealer;

/// Where a large frame sent from a callback on received data can go without
/// first being copied into the send queue.
pub(crate) enum Direct<'a> {
    /// A plain connection's socket: written from where the frame lies.
    Socket {
        io: &'a mut dyn Io,
        /// The message being delivered, framed as the server sends it, in
        /// the receive buffer (`Decoder::decode_framed`): echoed, it goes out
        /// in one plain write.
        framed: Option<&'a [u8]>,
    },
    /// A TLS connection's record layer: sealed straight into its ciphertext
    /// queue (the one copy TLS itself needs).
    Records(Sealer<'a>),
}

impl<'a> Direct<'a> {
    /// A plain connection's socket, with no message framed.
    pub fn socket(io: &'a mut dyn Io) -> Self {
        Direct::Socket { io, framed: None }
    }

    /// Reborrowed for one callback, leaving it for the next.
    pub fn reborrow(&mut self) -> Direct<'_> {
        match self {
            Direct::Socket { io, framed } => Direct::Socket {
                io: &mut **io,
                framed: *framed,
            },
            Direct::Records(sealer) => Direct::Records(sealer.reborrow()),
        }
    }

    /// Reborrowed for the callback on one message, which `framed` holds
    /// framed for sending back if it can.
    pub fn delivering<'b>(&'b mut self, framed: Option<&'b [u8]>) -> Direct<'b> {
        match self {
            Direct::Socket { io, .. } => Direct::Socket {
                io: &mut **io,
                framed,
            },
            Direct::Records(sealer) => Direct::Records(sealer.reborrow()),
        }
    }
}
