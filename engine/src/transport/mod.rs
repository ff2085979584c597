//! Transports: how a socket's bytes become a stream's bytes and back, below
//! the runtime. Sans-I/O byte transforms that never call up: the TLS session
//! ([`tls`]) takes ciphertext and returns what it opened, step by step
//! ([`tls::session::Step`]), and seals queued frames into its wire queue when asked;
//! the plain transport is the identity. The send queue both use is
//! [`outbox`]. Nothing here knows about WebSocket, connections or workers.

pub(crate) mod outbox;
pub(crate) mod tls;
