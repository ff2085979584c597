//! What a worker counts: [`Counters`] during a turn, published into its
//! [`WorkerStats`]; the close, handshake and status tables and their indexes.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::types::CloseCause;

/// The `cause` label of `ringws_closed_total`, one per [`CloseCause`] kind.
pub(super) const CAUSES: [&str; 10] = [
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
pub(super) const CODES: usize = 19;

pub(super) fn code_index(code: u16) -> usize {
    match code {
        1000..=1015 => usize::from(code - 1000),
        3000..=3999 => 16,
        4000..=4999 => 17,
        _ => 18,
    }
}

/// Upper bounds of the handshake-duration buckets, in milliseconds.
pub(super) const HANDSHAKE_BUCKETS_MS: [u64; 12] =
    [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

/// The bucket (the last one is +Inf) a handshake of `ms` falls in.
pub(super) fn bucket_index(ms: u64) -> usize {
    HANDSHAKE_BUCKETS_MS
        .iter()
        .position(|&bound| ms <= bound)
        .unwrap_or(HANDSHAKE_BUCKETS_MS.len())
}

/// HTTP statuses 100..=599, one slot each, for `ringws_rejected_total`.
pub(super) const STATUSES: usize = 500;

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
            pub(super) closed_by_cause: [AtomicU64; CAUSES.len()],
            pub(super) closed_by_code: [AtomicU64; CODES],
            pub(super) handshakes: [AtomicU64; HANDSHAKE_BUCKETS_MS.len() + 1],
            pub(super) handshake_ms: AtomicU64,
            pub(super) rejected: Box<[AtomicU64]>,
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
        pub(super) const SIMPLE: &[(&str, &str, fn(&WorkerStats) -> &AtomicU64)] = &[
            $(($name, $help, |s| &s.$field),)*
        ];
    };
}

counters! {
    accepted => "ringws_accepted", "TCP connections accepted.";
    upgraded => "ringws_upgraded", "WebSocket upgrades accepted (101 sent).";
    deferred => "ringws_upgrades_deferred", "Upgrades whose decision on_upgrade deferred (Upgrade::defer).";
    deferred_accepted => "ringws_deferred_upgrades_accepted", "Deferred upgrades accepted (101 sent).";
    deferred_rejected => "ringws_deferred_upgrades_rejected", "Deferred upgrades refused by the application (or dropped undecided: 500).";
    deferred_expired => "ringws_deferred_upgrades_expired", "Deferred upgrades not decided within the handshake timeout (503 sent).";
    deferred_gone => "ringws_deferred_upgrades_abandoned", "Deferred upgrades whose client went away (or the server stopped) first.";
    deferred_refused => "ringws_deferred_upgrades_refused", "Deferred upgrades answered 503 at once: max_pending_upgrades reached, or the client sent too much before the decision.";
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
    http2_connections => "ringws_http2_connections", "Connections that spoke HTTP/2 (by ALPN or prior knowledge).";
    http2_streams => "ringws_http2_streams", "HTTP/2 streams opened by requests (WebSockets and plain routes).";
    http2_websockets => "ringws_http2_websockets", "WebSocket upgrades requested over HTTP/2 streams (extended CONNECT, RFC 8441).";
    http2_refused_streams => "ringws_http2_refused_streams", "HTTP/2 streams refused or reset by the server (limits, stream errors, a full worker).";
    http2_errors => "ringws_http2_errors", "HTTP/2 connections ended by a connection error (GOAWAY with an error code).";
    handover_out => "ringws_handover_out", "Connections handed over live to a new process (docs/HANDOVER.md).";
    handover_in => "ringws_handover_in", "Connections taken over live from an old process.";
    handover_refused => "ringws_handover_refused", "Connections a hand-over could not carry, closed with 1012 (service restart); the reason is logged.";
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

/// A Prometheus sample line, to compare with.
#[cfg(test)]
fn sample(name: &str, labels: &str, value: u64) -> String {
    format!("{name}{{{labels}}} {value}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::runtime::metrics::{Format, Metrics, Source};

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
}
