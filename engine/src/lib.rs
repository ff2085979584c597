//! ringws: a thread-per-core WebSocket (RFC 6455) server engine for Linux.
//!
//! - [`proto`]: the sans-I/O protocol core, byte slices in and out, for the
//!   server and the client role.
//! - [`Server`], [`Handler`], [`WebSocket`]: the embeddable server. Each worker
//!   thread owns its connections, timers, topics and buffers; a [`ServerHandle`]
//!   reaches them from any thread.
//!
//! ```no_run
//! use ringws::{Handler, Message, Server, Upgrade, WebSocket};
//! use ringws::proto::handshake::UpgradeRequest;
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     type Data = ();
//!     fn on_upgrade(&mut self, _: &UpgradeRequest<'_>, _: std::net::SocketAddr) -> Upgrade<()> {
//!         Upgrade::accept(())
//!     }
//!     fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, message: Message<'_>) {
//!         ws.send(message);
//!     }
//! }
//!
//! let server = Server::builder().bind("127.0.0.1:9001").build().unwrap();
//! let handle = server.start(|| Echo).unwrap();
//! println!("listening on {}", handle.local_addr());
//! # handle.shutdown(std::time::Duration::from_secs(1));
//! ```

pub(crate) mod backend;
mod config;
/// The TLS fuzz targets' harness (feature `fuzzing`): not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handover;
pub mod proto;
pub(crate) mod runtime;
#[doc(hidden)]
pub use runtime::h2_bench;
#[doc(hidden)]
pub use runtime::send_bench;
#[doc(hidden)]
pub use runtime::turn_bench;
mod server;
mod transport;
mod types;

pub use config::{
    BackendKind, BackpressurePolicy, Config, ConfigError, DeflateMode, Handover, Http2, ProxyMode,
    ProxyProtocol,
};
pub use ipnet::IpNet;
pub use runtime::bridge::{Bridge, LocalNode};
pub use runtime::deferred::{PendingUpgrade, UpgradeError};
pub use runtime::handler::{Handler, Portable, WebSocket};
/// The rustls this crate is built with, for [`TlsConfig::from_rustls`].
pub use rustls;
pub use server::{Builder, Server, ServerHandle, StartError, Stats};
pub use transport::tls::{SniBuilder, TlsConfig, TlsConfigError};
pub use types::{
    CloseCause, ConnId, HttpRequest, HttpResponse, Message, PreparedMessage, RateLimit,
    RateLimitPolicy, SendStatus, TlsError, TokenBucket, Upgrade,
};
