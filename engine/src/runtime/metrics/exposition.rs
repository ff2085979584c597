//! How the figures are read: a scrape sums every worker's [`WorkerStats`] and
//! writes them as OpenMetrics or Prometheus text, with their labels.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::counters::{CAUSES, CODES, HANDSHAKE_BUCKETS_MS, SIMPLE, STATUSES, WorkerStats};
use crate::runtime::command::Mailbox;

fn code_label(index: usize) -> String {
    match index {
        0..=15 => (1000 + index).to_string(),
        16 => "3xxx".into(),
        17 => "4xxx".into(),
        _ => "other".into(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::metrics::counters::{bucket_index, code_index};

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
