//! ringws: a thread-per-core WebSocket (RFC 6455) server engine for Linux.
//!
//! The [`proto`] module is the sans-I/O protocol core: byte slices in, byte slices
//! out, no sockets. It serves both the server role (the engine) and the client role
//! (the bundled load generator).

pub mod proto;
