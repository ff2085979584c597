//! What the workers count and how it is read: plain [`Counters`] during a turn
//! (no atomics, no locks on the hot path), published once per turn into the
//! worker's [`WorkerStats`] (atomics, readable from any thread), summed over
//! every worker when scraped, and written in the OpenMetrics or the Prometheus
//! text format by [`Metrics::render`].
//!
//! The exposition goes through `prometheus-client` (the Prometheus project's
//! Rust client): a [`Collector`] reads the atomics at each scrape, so nothing is
//! registered per connection and the workers never wait for a scrape. That
//! crate writes OpenMetrics only; the Prometheus text format (0.0.4) differs
//! from it, for the metrics written here, in three things `exposition::to_prometheus_text`
//! rewrites: a counter family is named after its `_total` sample, and there is
//! no `# UNIT` nor `# EOF` line.

//!
//! [`Collector`]: prometheus_client::collector::Collector

mod counters;
mod exposition;

pub(crate) use self::counters::{Counters, WorkerStats};
pub(crate) use self::exposition::{Format, Metrics, Source};
