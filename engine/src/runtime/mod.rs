//! Thread-per-core workers: each owns its connections, timers, topics and
//! buffers; backends drive them through [`worker::Worker`]'s event methods.

pub(crate) mod command;
pub(crate) mod conn;
pub(crate) mod outbox;
pub(crate) mod pubsub;
pub(crate) mod worker;
