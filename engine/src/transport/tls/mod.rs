//! TLS: the certificates of a server's TLS listeners ([`config`]), one
//! connection's session ([`session`]: rustls's handshake, then the hand-over
//! to our own record layer, [`records`]).

pub(crate) mod config;
pub(crate) mod framing;
pub(crate) mod records;
pub(crate) mod session;

pub(crate) use config::TlsConfigCell;
pub use config::{SniBuilder, TlsConfig, TlsConfigError};
