//! Building, starting and steering a server: [`Server::builder`], [`Server::start`]
//! and the cross-thread [`ServerHandle`].

mod builder;
mod handle;
mod launch;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

pub use self::builder::Builder;
pub use self::handle::{ServerHandle, Stats};
use crate::config::{Config, ConfigError};
use crate::runtime::bridge::Bridge;

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// Binding or setting up a listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The chosen backend is not available.
    #[error("backend unavailable: {0}")]
    Backend(String),
    /// A worker failed to start.
    #[error("worker failed to start: {0}")]
    Worker(io::Error),
    /// The live hand-over's control socket or nonce file
    /// ([`Builder::handover`]) failed.
    #[error("live hand-over: {0}")]
    Handover(io::Error),
}

/// A configured server, not yet running.
#[derive(Debug, Clone)]
pub struct Server {
    config: Config,
    bridge: BridgeSlot,
}

/// The server's bridge to other nodes, if it has one.
#[derive(Clone, Default)]
struct BridgeSlot(Option<Arc<dyn Bridge>>);

impl std::fmt::Debug for BridgeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(Bridge)"
        } else {
            "None"
        })
    }
}
