//! Thread-per-core workers: each owns its connections, timers, topics and
//! buffers; its backend drives it through [`worker::Worker`]'s entry points.
//! The bytes a connection's socket carries are its transport's
//! ([`crate::transport`]: the send queue, TLS) below this layer.
//!
//! One module per concern, in the order of the data flow: [`upgrade`] (the
//! HTTP phase, decided now or later: [`deferred`]), [`dispatch`] (received
//! bytes to the phase), [`receive`] (frames to callbacks), [`socket`] (a
//! socket: its transport, its read gate, the stream it carries), [`stream`]
//! (a WebSocket stream: link, decoder, timers), [`conn`] (a stream's
//! lifecycle and sends), [`gate`] (why a socket's reading is paused),
//! [`ratelimit`], [`timers`], [`topics`], [`pubsub`], [`bridge`] (pub/sub
//! across nodes), [`deflate`], [`metrics`] (counters and their exposition),
//! [`command`] (cross-thread), [`handler`] (the callback interface),
//! [`shared`] (the worker state callbacks reach), [`seam`] (what the worker
//! asks of its backend) and [`worker`] (the loop's entry points and the steps
//! of a turn).

pub(crate) mod bridge;
pub(crate) mod command;
pub(crate) mod conn;
pub(crate) mod deferred;
pub(crate) mod deflate;
pub(crate) mod direct;
pub(crate) mod dispatch;
pub(crate) mod gate;
#[doc(hidden)]
pub mod h2_bench;
pub(crate) mod handler;
pub(crate) mod handover;
pub(crate) mod metrics;
pub(crate) mod peer;
pub(crate) mod pubsub;
pub(crate) mod ratelimit;
pub(crate) mod receive;
pub(crate) mod seam;
#[doc(hidden)]
pub mod send_bench;
pub(crate) mod shared;
pub(crate) mod socket;
pub(crate) mod stream;
pub(crate) mod timers;
pub(crate) mod topics;
#[doc(hidden)]
pub mod turn_bench;
pub(crate) mod upgrade;
pub(crate) mod worker;
