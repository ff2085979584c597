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
//! from it, for the metrics written here, in three things [`to_prometheus_text`]
//! rewrites: a counter family is named after its `_total` sample, and there is
//! no `# UNIT` nor `# EOF` line.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::command::Mailbox;
use crate::types::CloseCause;

/// The `cause` label of `ringws_closed_total`, one per [`CloseCause`] kind.
const CAUSES: [&str; 10] = [
    "peer",
    "local",
    "protocol",
    "timeout",
    "backpressure",
    "shutdown",
    "terminated",
    "reset",
    "rate_limit",
    "tls",
];

fn cause_index(cause: CloseCause) -> usize {
    match cause {
        CloseCause::Peer => 0,
        CloseCause::Local => 1,
        CloseCause::Protocol(_) => 2,
        CloseCause::Timeout => 3,
        CloseCause::Backpressure => 4,
        CloseCause::Shutdown => 5,
        CloseCause::Terminated => 6,
        CloseCause::Reset => 7,
        CloseCause::RateLimit => 8,
        CloseCause::Tls(_) => 9,
    }
}

/// The `code` label of `ringws_close_codes_total`: each code RFC 6455 and its
/// registry define (1000..=1015) by itself, the library and application ranges
/// as `3xxx` and `4xxx` (so a peer cannot grow the label set), the rest `other`.
const CODES: usize = 19;

fn code_index(code: u16) -> usize {
    match code {
        1000..=1015 => usize::from(code - 1000),
        3000..=3999 => 16,
        4000..=4999 => 17,
        _ => 18,
    }
}

fn code_label(index: usize) -> String {
    match index {
        0..=15 => (1000 + index).to_string(),
        16 => "3xxx".into(),
        17 => "4xxx".into(),
        _ => "other".into(),
    }
}

/// Upper bounds of the handshake-duration buckets, in milliseconds.
const HANDSHAKE_BUCKETS_MS: [u64; 12] = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

/// The bucket (the last one is +Inf) a handshake of `ms` falls in.
fn bucket_index(ms: u64) -> usize {
    HANDSHAKE_BUCKETS_MS
        .iter()
        .position(|&bound| ms <= bound)
        .unwrap_or(HANDSHAKE_BUCKETS_MS.len())
}

/// HTTP statuses 100..=599, one slot each, for `ringws_rejected_total`.
const STATUSES: usize = 500;

/// Declares the plain per-turn counters, their atomic mirrors and their metric
/// names, from one list.
macro_rules! counters {
    ($($field:ident => $name:literal, $help:literal;)*) => {
        /// Counters kept without atomics during a turn and published once per turn.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub $field: u64,)*
            /// Connections ended after `on_open`, by cause and by close code.
            closed_by_cause: [u64; CAUSES.len()],
            closed_by_code: [u64; CODES],
            /// Handshakes by duration bucket, and their total duration (ms).
            handshakes: [u64; HANDSHAKE_BUCKETS_MS.len() + 1],
            handshake_ms: u64,
            /// Statuses of upgrades refused this turn (rare: a list, not a table).
            pub rejected: Vec<u16>,
            /// Whether a close or a handshake was counted since the last
            /// publish: most turns have neither, and skip those tables.
            tabled: bool,
        }

        /// A worker's figures, readable from any thread.
        #[derive(Debug)]
        pub(crate) struct WorkerStats {
            /// Connections open now (a gauge, stored, not added).
            pub connections: AtomicU64,
            $(pub $field: AtomicU64,)*
            closed_by_cause: [AtomicU64; CAUSES.len()],
            closed_by_code: [AtomicU64; CODES],
            handshakes: [AtomicU64; HANDSHAKE_BUCKETS_MS.len() + 1],
            handshake_ms: AtomicU64,
            rejected: Box<[AtomicU64]>,
        }

        impl Default for WorkerStats {
            fn default() -> Self {
                Self {
                    connections: AtomicU64::new(0),
                    $($field: AtomicU64::new(0),)*
                    closed_by_cause: Default::default(),
                    closed_by_code: Default::default(),
                    handshakes: Default::default(),
                    handshake_ms: AtomicU64::new(0),
                    rejected: (0..STATUSES).map(|_| AtomicU64::new(0)).collect(),
                }
            }
        }

        impl WorkerStats {
            /// Adds the turn's counters and zeroes them; only non-zero ones
            /// touch an atomic.
            pub fn publish(&self, connections: usize, c: &mut Counters) {
                self.connections.store(connections as u64, Ordering::Relaxed);
                $(add(&self.$field, &mut c.$field);)*
                if std::mem::take(&mut c.tabled) {
                    for (atomic, value) in self.closed_by_cause.iter().zip(&mut c.closed_by_cause) {
                        add(atomic, value);
                    }
                    for (atomic, value) in self.closed_by_code.iter().zip(&mut c.closed_by_code) {
                        add(atomic, value);
                    }
                    for (atomic, value) in self.handshakes.iter().zip(&mut c.handshakes) {
                        add(atomic, value);
                    }
                    add(&self.handshake_ms, &mut c.handshake_ms);
                }
                for status in c.rejected.drain(..) {
                    if let Some(slot) = usize::from(status).checked_sub(100).and_then(|i| self.rejected.get(i)) {
                        slot.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }

        /// Every plain counter: metric name (without `_total`), help, value.
        const SIMPLE: &[(&str, &str, fn(&WorkerStats) -> &AtomicU64)] = &[
            $(($name, $help, |s| &s.$field),)*
        ];
    };
}

counters! {
    accepted => "ringws_accepted", "TCP connections accepted.";
    upgraded => "ringws_upgraded", "WebSocket upgrades accepted (101 sent).";
    messages_in => "ringws_messages_received", "Data messages received.";
    messages_out => "ringws_messages_sent", "Data messages queued for sending.";
    bytes_in => "ringws_received_bytes", "Bytes read from sockets.";
    bytes_out => "ringws_sent_bytes", "Bytes written to sockets.";
    pings_in => "ringws_pings_received", "Pings received.";
    pings_out => "ringws_pings_sent", "Pings sent (auto-pings and WebSocket::ping).";
    pongs_in => "ringws_pongs_received", "Pongs received.";
    pongs_out => "ringws_pongs_sent", "Pongs sent (answers to pings).";
    missed_pongs => "ringws_missed_pongs", "Connections aborted because nothing followed an auto-ping within the pong timeout.";
    backpressure => "ringws_backpressure_events", "Times a connection's socket stopped taking bytes with some still queued.";
    dropped_sends => "ringws_dropped_sends", "Sends dropped: past the backpressure limit, or on a closing connection.";
    deflate_in => "ringws_deflate_input_bytes", "Outgoing payload bytes given to permessage-deflate.";
    deflate_out => "ringws_deflate_output_bytes", "Compressed bytes permessage-deflate made of them.";
    inflate_in => "ringws_inflate_input_bytes", "Compressed payload bytes received.";
    inflate_out => "ringws_inflate_output_bytes", "Bytes they inflated to.";
    publishes => "ringws_publishes", "Messages published (WebSocket::publish and ServerHandle::publish), once each.";
    deliveries => "ringws_deliveries", "Published messages queued to a subscriber.";
    commands => "ringws_commands", "Commands from other threads run (publishes, sends, closes, shutdowns).";
    buffer_exhausted => "ringws_uring_buffer_exhaustions", "io_uring receives stopped because the provided-buffer ring was empty (ENOBUFS).";
    rate_limit_pauses => "ringws_rate_limit_pauses", "Times reading a connection was paused by its rate limit.";
    proxy_refused => "ringws_proxy_refused", "Connections closed for a missing, malformed or untrusted PROXY protocol header.";
}

fn add(atomic: &AtomicU64, value: &mut u64) {
    if *value != 0 {
        atomic.fetch_add(std::mem::take(value), Ordering::Relaxed);
    }
}

impl Counters {
    /// A connection that was opened ended with `code` for `cause`.
    pub fn closed(&mut self, code: u16, cause: CloseCause) {
        self.closed_by_cause[cause_index(cause)] += 1;
        self.closed_by_code[code_index(code)] += 1;
        self.tabled = true;
    }

    /// A handshake took `ms` from accept to the 101.
    pub fn handshake(&mut self, ms: u64) {
        self.handshakes[bucket_index(ms)] += 1;
        self.handshake_ms += ms;
        self.tabled = true;
    }
}

/// Everything a scrape reads: every worker's stats, their mailboxes (for the
/// wake count) and what the [`crate::ServerHandle`] counts itself.
#[derive(Debug)]
pub(crate) struct Source {
    pub backend: &'static str,
    pub workers: Arc<[Arc<WorkerStats>]>,
    pub mailboxes: Arc<std::sync::OnceLock<Vec<Mailbox>>>,
    /// Publishes made through the handle.
    pub handle_publishes: AtomicU64,
}

/// The exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `text/plain; version=0.0.4`.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics where the `Accept` header asks for it, else the text format.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The server's metrics, shared by the handle and every worker.
#[derive(Debug)]
pub(crate) struct Metrics {
    source: Arc<Source>,
    registry: Registry,
}

impl Metrics {
    pub fn new(source: Source) -> Self {
        let source = Arc::new(source);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape(source.clone())));
        Self { source, registry }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The current figures in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, nor can the collector.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        match format {
            Format::OpenMetrics => out,
            Format::Prometheus => to_prometheus_text(&out),
        }
    }
}

/// Rewrites OpenMetrics text (as written by [`Metrics::render`]) into the
/// Prometheus text format 0.0.4.
fn to_prometheus_text(openmetrics: &str) -> String {
    let mut counters: Vec<&str> = Vec::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.push(name);
            }
        }
    }
    let mut out = String::with_capacity(openmetrics.len() + 8 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Reads the atomics at each scrape.
#[derive(Debug)]
struct Scrape(Arc<Source>);

impl Scrape {
    fn sum(&self, read: impl Fn(&WorkerStats) -> u64) -> u64 {
        self.0.workers.iter().map(|w| read(w)).sum()
    }
}

fn load(atomic: &AtomicU64) -> u64 {
    atomic.load(Ordering::Relaxed)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let backend = self.0.backend;
        let base = [("backend", backend)];

        let mut family = encoder.encode_descriptor(
            "ringws_connections",
            "Connections open now, handshakes included.",
            None,
            MetricType::Gauge,
        )?;
        for (i, w) in self.0.workers.iter().enumerate() {
            let labels = vec![("backend", backend.to_owned()), ("worker", i.to_string())];
            let gauge = ConstGauge::new(load(&w.connections) as i64);
            gauge.encode(family.encode_family(&labels)?)?;
        }

        for &(name, help, field) in SIMPLE {
            let mut total = self.sum(|w| load(field(w)));
            if name == "ringws_publishes" {
                total += load(&self.0.handle_publishes);
            }
            let counter = ConstCounter::new(total);
            let mut family = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(family.encode_family(&base)?)?;
        }

        let wakes: u64 = self
            .0
            .mailboxes
            .get()
            .map_or(0, |m| m.iter().map(Mailbox::wakes).sum());
        let counter = ConstCounter::new(wakes);
        let mut family = encoder.encode_descriptor(
            "ringws_wakes",
            "Wake-ups the cross-thread commands cost (one per batch).",
            None,
            counter.metric_type(),
        )?;
        counter.encode(family.encode_family(&base)?)?;

        let mut family = encoder.encode_descriptor(
            "ringws_rejected",
            "Upgrade requests refused, by HTTP status.",
            None,
            MetricType::Counter,
        )?;
        for status in 0..STATUSES {
            let count = self.sum(|w| load(&w.rejected[status]));
            if count > 0 {
                let labels = vec![
                    ("backend", backend.to_owned()),
                    ("status", (status + 100).to_string()),
                ];
                ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "ringws_closed",
            "WebSocket connections ended (after on_open), by cause.",
            None,
            MetricType::Counter,
        )?;
        for (i, cause) in CAUSES.iter().enumerate() {
            let count = self.sum(|w| load(&w.closed_by_cause[i]));
            let labels = vec![
                ("backend", backend.to_owned()),
                ("cause", (*cause).to_owned()),
            ];
            ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
        }

        let mut family = encoder.encode_descriptor(
            "ringws_close_codes",
            "WebSocket connections ended, by the close code on_close got (3xxx and 4xxx summed per range).",
            None,
            MetricType::Counter,
        )?;
        for i in 0..CODES {
            let count = self.sum(|w| load(&w.closed_by_code[i]));
            if count > 0 {
                let labels = vec![("backend", backend.to_owned()), ("code", code_label(i))];
                ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "ringws_handshake_duration",
            "Time from accept to the 101 response, at the resolution of a loop turn.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        // Per-bucket counts: the encoder makes them cumulative, and writes
        // the bound f64::MAX as +Inf.
        let mut count = 0;
        let mut buckets = Vec::with_capacity(HANDSHAKE_BUCKETS_MS.len() + 1);
        for i in 0..=HANDSHAKE_BUCKETS_MS.len() {
            let in_bucket = self.sum(|w| load(&w.handshakes[i]));
            count += in_bucket;
            let bound = HANDSHAKE_BUCKETS_MS
                .get(i)
                .map_or(f64::MAX, |&ms| ms as f64 / 1000.0);
            buckets.push((bound, in_bucket));
        }
        let sum = self.sum(|w| load(&w.handshake_ms)) as f64 / 1000.0;
        family
            .encode_family(&base)?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                sum, count, &buckets, None,
            )?;
        Ok(())
    }
}

/// A Prometheus sample line, to compare with.
#[cfg(test)]
fn sample(name: &str, labels: &str, value: u64) -> String {
    format!("{name}{{{labels}}} {value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(workers: usize) -> Metrics {
        Metrics::new(Source {
            backend: "epoll",
            workers: (0..workers).map(|_| Arc::default()).collect(),
            mailboxes: Arc::default(),
            handle_publishes: AtomicU64::new(0),
        })
    }

    #[test]
    fn counters_are_summed_over_workers_and_zeroed_when_published() {
        let m = metrics(2);
        let mut c = Counters {
            accepted: 3,
            ..Counters::default()
        };
        c.closed(1000, CloseCause::Peer);
        c.closed(4321, CloseCause::RateLimit);
        c.handshake(0);
        c.handshake(7);
        c.rejected.push(401);
        m.source().workers[0].publish(5, &mut c);
        assert_eq!(c.accepted, 0);
        assert!(c.rejected.is_empty());
        let mut c = Counters {
            accepted: 2,
            ..Counters::default()
        };
        c.rejected.push(401);
        m.source().workers[1].publish(1, &mut c);
        let text = m.render(Format::Prometheus);
        for line in [
            sample("ringws_accepted_total", "backend=\"epoll\"", 5),
            sample("ringws_connections", "backend=\"epoll\",worker=\"0\"", 5),
            sample("ringws_connections", "backend=\"epoll\",worker=\"1\"", 1),
            sample(
                "ringws_rejected_total",
                "backend=\"epoll\",status=\"401\"",
                2,
            ),
            sample(
                "ringws_closed_total",
                "backend=\"epoll\",cause=\"rate_limit\"",
                1,
            ),
            sample(
                "ringws_close_codes_total",
                "backend=\"epoll\",code=\"4xxx\"",
                1,
            ),
            sample(
                "ringws_close_codes_total",
                "backend=\"epoll\",code=\"1000\"",
                1,
            ),
            sample(
                "ringws_handshake_duration_seconds_bucket",
                "le=\"0.01\",backend=\"epoll\"",
                2,
            ),
            sample(
                "ringws_handshake_duration_seconds_bucket",
                "le=\"0.001\",backend=\"epoll\"",
                1,
            ),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(text.contains("# TYPE ringws_accepted_total counter\n"));
        assert!(
            text.contains(
                "ringws_handshake_duration_seconds_bucket{le=\"+Inf\",backend=\"epoll\"} 2\n"
            ),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
        let om = m.render(Format::OpenMetrics);
        assert!(om.contains("# TYPE ringws_accepted counter\n"));
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn accept_header_picks_the_format() {
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Prometheus);
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(code_label(code_index(1011)), "1011");
        assert_eq!(code_label(code_index(3500)), "3xxx");
        assert_eq!(code_label(code_index(65535)), "other");
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(10_001), HANDSHAKE_BUCKETS_MS.len());
    }
}
