//! The sans-I/O protocol core of RFC 6455: handshake, frames, masking, UTF-8,
//! messages, close codes, permessage-deflate, the PROXY protocol header ([`proxy`]) and
//! the [`session`] that ties them
//! together for one connection. Nothing here touches a socket.

pub mod close;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;
pub mod proxy;
pub mod session;
pub mod utf8;

/// Which end of the connection this endpoint is. It decides the masking rules:
/// a server requires masked frames and sends unmasked ones, a client the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts connections; receives masked frames.
    Server,
    /// Opens connections; masks every frame it sends.
    Client,
}
