//! The client event loop: one per thread, over its share of the connections.
//! Frames to send are precomputed and masked once, so masking never limits the
//! load; replies are decoded in place with ringws's own client-role decoder and
//! handled by a client-role [`Session`] per connection (pongs, the close reply,
//! inflation of compressed messages), all sharing the thread's [`Endpoint`].
//! A WebSocket has a TCP connection of its own (HTTP/1.1), or is a stream of
//! an HTTP/2 connection that carries several (`--http2`, RFC 8441).
//!
//! Here: what a run is given and what it measures. The run loop is in
//! `run`, a WebSocket's state and the HTTP/1.1 path in `conn`, what the
//! scenarios do with an open WebSocket in `workload`, HTTP/2 connections in
//! `h2conn`.

mod conn;
mod h2conn;
mod h2streams;
mod run;
mod sock;
mod tx;
mod wheel;
mod workload;

pub use run::run;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringws::proto::Role;
use ringws::proto::deflate::Negotiated;
use ringws::proto::frame::OpCode;
use ringws::proto::session::{Endpoint, Session};

use crate::series::{self, Recorder, Sample};

/// Where to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    /// Offer permessage-deflate (and require it).
    pub deflate: bool,
    /// `wss://`: how to speak TLS to it.
    pub tls: Option<crate::tls::TlsTarget>,
}

/// What the client offers with `--deflate`: it never keeps context, so its
/// precomputed compressed frames stay valid.
const DEFLATE_OFFER: &str =
    "permessage-deflate; client_no_context_takeover; client_max_window_bits";

/// Compression level of the precomputed frames.
const LEVEL: u32 = 6;

/// Largest server frame and message (inflated too) the client accepts.
const MAX_MESSAGE: usize = 64 << 20;

/// Precomputed frames: `frames[i]` is a masked frame whose payload is `payloads[i]`.
#[derive(Debug)]
pub struct Payloads {
    pub frames: Vec<Vec<u8>>,
    pub payloads: Vec<Vec<u8>>,
}

impl Payloads {
    /// `variants` payloads with sizes spread over `min..=max`, text or binary.
    /// With `deflate`, every frame is compressed (RSV1) once, here, by a
    /// client-role session without context takeover: the client offers
    /// client_no_context_takeover, so the same bytes are valid on every
    /// connection and at every position.
    pub fn new(min: usize, max: usize, text: bool, variants: usize, deflate: bool) -> Self {
        let mut frames = Vec::with_capacity(variants);
        let mut payloads = Vec::with_capacity(variants);
        let mut endpoint = Endpoint::new(Role::Client, MAX_MESSAGE, MAX_MESSAGE, LEVEL);
        let mut session = if deflate {
            let negotiated = Negotiated {
                server_no_context_takeover: false,
                client_no_context_takeover: true,
                server_max_window_bits: 15,
                client_max_window_bits: 15,
            };
            Session::with_deflate(Role::Client, &negotiated, LEVEL)
        } else {
            Session::new()
        };
        for i in 0..variants {
            let size = if variants == 1 || max == min {
                min
            } else {
                min + (max - min) * i / (variants - 1)
            };
            // Distinct content per variant, so a mixed-up echo is caught.
            let payload: Vec<u8> = (0..size).map(|j| b'a' + ((i * 7 + j) % 26) as u8).collect();
            let opcode = if text { OpCode::Text } else { OpCode::Binary };
            let message = session.message(&mut endpoint, opcode, &payload, deflate);
            let mut frame = Vec::with_capacity(message.len());
            message.write_to(&mut frame);
            frames.push(frame);
            payloads.push(payload);
        }
        Self { frames, payloads }
    }
}

/// What each connection does once open.
#[derive(Debug, Clone)]
pub enum Workload {
    /// Nothing: connect, upgrade, stay open until the end.
    Idle,
    /// Ping every interval; count pongs and missed pongs.
    Ping { every: Duration },
    /// Echo: `in_flight` messages outstanding each (closed loop), or a fixed rate
    /// per connection with latency from the intended send time (open loop).
    Echo {
        in_flight: usize,
        rate: Option<f64>,
        payloads: Arc<Payloads>,
    },
    /// Read broadcast messages (binary: the send time in µs since the run's
    /// epoch, a sequence number, [`BROADCAST_MARK`], padding); the first
    /// `publishers` connections also publish at `rate` messages per second each.
    /// Other messages (a chat's text, say) are ignored.
    Broadcast {
        publishers: usize,
        rate: f64,
        size: usize,
    },
}

/// Bytes 16..20 of a broadcast probe, after the send time and the sequence number.
pub const BROADCAST_MARK: &[u8; 4] = b"LGBC";
/// The shortest broadcast probe.
pub const BROADCAST_MIN: usize = 20;
/// The top bit of a probe's sequence word: published inside the measured
/// window, so each of its deliveries counts, whenever it arrives (a probe
/// published just before the window and delivered in it does not).
const MEASURED_PROBE: u64 = 1 << 63;

/// A thread's part of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where to connect: connection `i` of this thread goes to
    /// `targets[(first_target + i) % len]` (several only for broadcast, whose
    /// publisher is the first connection of thread 0, on `targets[0]`).
    pub targets: Vec<Target>,
    pub first_target: usize,
    /// WebSockets.
    pub connections: usize,
    /// New WebSockets per second (this thread).
    pub ramp_rate: f64,
    /// Source addresses to spread the connections over.
    pub sources: Vec<IpAddr>,
    pub workload: Workload,
    /// When the measured phase ends (after the ramp).
    pub hold: Duration,
    pub connect_timeout: Duration,
    /// After the ramp, the share of this thread's connections closed (with a
    /// closing handshake) and opened anew each second (`--churn`, 0: none).
    pub churn: f64,
    /// `--http2`: the WebSockets are streams, this many per TCP connection
    /// (`None`: HTTP/1.1, a TCP connection each).
    pub http2: Option<usize>,
    /// A hard stop for the whole run.
    pub deadline: Instant,
    pub epoch: Instant,
    /// Where this thread streams its closed seconds, and its slot there.
    pub seconds: Option<(Arc<crate::stream::Outbox>, usize)>,
}

/// Counters the progress display reads while the run goes.
#[derive(Debug)]
pub struct Live {
    pub open: AtomicU64,
    pub failed: AtomicU64,
    pub messages: AtomicU64,
    pub stop: AtomicBool,
    /// Broadcast: the last sequence number published, once the publisher has
    /// stopped (`u64::MAX` until then).
    pub final_seq: AtomicU64,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            open: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            final_seq: AtomicU64::new(u64::MAX),
        }
    }
}

/// Why a connection attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Refused,
    Timeout,
    Reset,
    BadStatus,
    PortsExhausted,
    Other,
}

pub const FAILURES: [(Failure, &str); 6] = [
    (Failure::Refused, "refused"),
    (Failure::Timeout, "timeout"),
    (Failure::Reset, "reset"),
    (Failure::BadStatus, "bad_status"),
    (Failure::PortsExhausted, "ports_exhausted"),
    (Failure::Other, "other"),
];

fn classify(e: &io::Error) -> Failure {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Failure::Refused,
        Some(libc::EADDRNOTAVAIL) | Some(libc::EADDRINUSE) => Failure::PortsExhausted,
        Some(libc::ECONNRESET) | Some(libc::EPIPE) => Failure::Reset,
        Some(libc::ETIMEDOUT) => Failure::Timeout,
        _ => Failure::Other,
    }
}

/// What a thread measured.
#[derive(Debug)]
pub struct Report {
    pub connected: u64,
    pub failures: [u64; 6],
    /// Connect + upgrade time (TLS handshake included), µs.
    pub handshake: Histogram<u64>,
    /// `wss://`: connect + TLS handshake time, µs (the upgrade is the rest).
    pub tls_handshake: Histogram<u64>,
    /// Echo or broadcast latency, µs.
    pub latency: Histogram<u64>,
    /// Hold: ping to pong round trip, µs.
    pub pong_latency: Histogram<u64>,
    pub messages: u64,
    pub bytes: u64,
    pub mismatches: u64,
    /// Messages sent and never answered by the end.
    pub lost: u64,
    pub pings: u64,
    pub pongs: u64,
    /// Broadcast: messages published inside the measured window.
    pub published: u64,
    pub missed_pongs: u64,
    /// Connections open at the end that answered their last ping in time.
    pub live_at_end: u64,
    /// Connections closed by the server or by errors after opening (a close
    /// with 1001, going away, is counted apart).
    pub dropped: u64,
    /// Connections the server closed with 1001 (a restart or shutdown), and
    /// the echoes they still awaited then (not lost: the server said so).
    pub going_away: u64,
    pub going_away_unanswered: u64,
    /// (seconds since epoch, open connections) samples.
    pub ramp: Vec<(f64, u64)>,
    /// Seconds from the start until the last connection opened (the slowest
    /// thread's).
    pub ramp_secs: f64,
    /// Broadcast: the exactly-once check and the figures per node.
    pub fanout: Fanout,
    /// Connections closed and reopened on purpose (`--churn`), each after a
    /// full closing handshake.
    pub churned: u64,
    /// Whether the load generator itself kept up.
    pub self_load: SelfLoad,
    /// `--http2`: the TCP connections that carried at least one WebSocket.
    pub h2_connections: u64,
    /// Per-second samples of the whole run (ramp and drain included).
    pub series: Vec<Sample>,
    /// This thread's current second.
    pub(crate) rec: Recorder,
    /// Inside the measured window (after the ramp, before the drain): only then
    /// are messages and latencies counted.
    measuring: bool,
}

/// Whether the load generator was the bottleneck: its busiest thread's CPU
/// (a thread near a whole core cannot go faster) and how late its scheduled
/// sends (pings, open-loop echoes, publishes) went out (a schedule slipping
/// means it, or the machine under it, could not keep up).
#[derive(Debug, Default, Clone, Copy)]
pub struct SelfLoad {
    /// CPU time over wall time of the busiest client thread (1.0: a core).
    pub busiest_thread: f64,
    /// Scheduled sends, and those sent more than [`LATE`] after they were due.
    pub scheduled: u64,
    pub late: u64,
    /// The latest a scheduled send went out, µs after it was due.
    pub max_lag_us: u64,
}

/// A scheduled send this late counts as the schedule slipping.
pub const LATE: Duration = Duration::from_millis(100);

impl SelfLoad {
    pub fn merge(&mut self, o: &SelfLoad) {
        self.busiest_thread = self.busiest_thread.max(o.busiest_thread);
        self.scheduled += o.scheduled;
        self.late += o.late;
        self.max_lag_us = self.max_lag_us.max(o.max_lag_us);
    }

    /// A scheduled send, `lag` after it was due.
    pub(crate) fn sent(&mut self, lag: Duration) {
        self.scheduled += 1;
        if lag > LATE {
            self.late += 1;
        }
        self.max_lag_us = self.max_lag_us.max(lag.as_micros() as u64);
    }

    /// Why the load generator was the bottleneck, if it was: a thread at
    /// 90% of a core or more, or more than 1% of the scheduled sends late.
    pub fn bottleneck(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.busiest_thread >= 0.9 {
            why.push(format!(
                "its busiest thread used {:.0}% of a core",
                100.0 * self.busiest_thread
            ));
        }
        if self.late * 100 > self.scheduled {
            why.push(format!(
                "{} of {} scheduled sends went out more than {} ms late",
                self.late,
                self.scheduled,
                LATE.as_millis()
            ));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }

    /// One line for the summary.
    pub fn line(&self) -> String {
        let figures = format!(
            "busiest thread {:.0}% of a core; {} of {} scheduled sends more than {} ms late (latest {:.1} ms)",
            100.0 * self.busiest_thread,
            self.late,
            self.scheduled,
            LATE.as_millis(),
            self.max_lag_us as f64 / 1000.0
        );
        match self.bottleneck() {
            Some(why) => format!("load generator: the BOTTLENECK ({why}): {figures}"),
            None => format!("load generator: not the bottleneck: {figures}"),
        }
    }
}

/// Broadcast figures: deliveries and latency on the publisher's node
/// ("local", `targets[0]`) and on the others ("remote"), and what the
/// exactly-once check needs, as sums that merge across threads and processes.
#[derive(Debug)]
pub struct Fanout {
    /// Sequence numbers published in all (the run's, not only the window's).
    pub published_total: u64,
    pub latency_local: Histogram<u64>,
    pub latency_remote: Histogram<u64>,
    /// Deliveries inside the measured window.
    pub messages_local: u64,
    pub messages_remote: u64,
    /// Subscribers that got at least one probe, per node kind.
    pub heard_local: u64,
    pub heard_remote: u64,
    /// Subscribers open at the end that got no probe at all.
    pub silent: u64,
    /// Sum over the subscribers of the first sequence number each got.
    pub sum_first: u64,
    /// Sum over the subscribers of the distinct probes each got.
    pub sum_distinct: u64,
    /// Probes that came twice or out of order.
    pub out_of_order: u64,
    /// Longest time between two consecutive probes at one subscriber, µs.
    pub gap_local: u64,
    pub gap_remote: u64,
}

impl Fanout {
    fn new() -> Self {
        Self {
            published_total: 0,
            latency_local: series::histogram(),
            latency_remote: series::histogram(),
            messages_local: 0,
            messages_remote: 0,
            heard_local: 0,
            heard_remote: 0,
            silent: 0,
            sum_first: 0,
            sum_distinct: 0,
            out_of_order: 0,
            gap_local: 0,
            gap_remote: 0,
        }
    }

    pub fn merge(&mut self, o: &Fanout) {
        self.published_total = self.published_total.max(o.published_total);
        let _ = self.latency_local.add(&o.latency_local);
        let _ = self.latency_remote.add(&o.latency_remote);
        self.messages_local += o.messages_local;
        self.messages_remote += o.messages_remote;
        self.heard_local += o.heard_local;
        self.heard_remote += o.heard_remote;
        self.silent += o.silent;
        self.sum_first += o.sum_first;
        self.sum_distinct += o.sum_distinct;
        self.out_of_order += o.out_of_order;
        self.gap_local = self.gap_local.max(o.gap_local);
        self.gap_remote = self.gap_remote.max(o.gap_remote);
    }

    /// Probes some subscriber should have got and did not: each subscriber
    /// must get every probe from the first it got to the last published.
    pub fn missing(&self) -> u64 {
        let heard = self.heard_local + self.heard_remote;
        (heard * self.published_total)
            .saturating_sub(self.sum_first)
            .saturating_sub(self.sum_distinct)
    }

    /// Every subscriber got every probe from its first on, once, in order.
    pub fn exactly_once(&self) -> bool {
        self.missing() == 0 && self.out_of_order == 0 && self.silent == 0
    }
}

/// What one subscriber got of the broadcast probes.
#[derive(Debug, Clone, Copy)]
struct Heard {
    first: u64,
    last: u64,
    distinct: u64,
    at: Instant,
    gap: u64,
}

impl Report {
    /// A report with nothing counted yet.
    pub fn empty() -> Self {
        Self::new()
    }

    fn new() -> Self {
        Self {
            connected: 0,
            failures: [0; 6],
            handshake: series::histogram(),
            tls_handshake: series::histogram(),
            latency: series::histogram(),
            pong_latency: series::histogram(),
            messages: 0,
            bytes: 0,
            mismatches: 0,
            lost: 0,
            pings: 0,
            pongs: 0,
            published: 0,
            missed_pongs: 0,
            live_at_end: 0,
            dropped: 0,
            going_away: 0,
            going_away_unanswered: 0,
            ramp: Vec::new(),
            ramp_secs: 0.0,
            fanout: Fanout::new(),
            churned: 0,
            self_load: SelfLoad::default(),
            h2_connections: 0,
            series: Vec::new(),
            rec: Recorder::default(),
            measuring: false,
        }
    }

    /// Adds another thread's report.
    pub fn merge(&mut self, other: &Report) {
        self.connected += other.connected;
        for (a, b) in self.failures.iter_mut().zip(other.failures) {
            *a += b;
        }
        let _ = self.handshake.add(&other.handshake);
        let _ = self.tls_handshake.add(&other.tls_handshake);
        let _ = self.latency.add(&other.latency);
        let _ = self.pong_latency.add(&other.pong_latency);
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.mismatches += other.mismatches;
        self.lost += other.lost;
        self.pings += other.pings;
        self.pongs += other.pongs;
        self.published += other.published;
        self.missed_pongs += other.missed_pongs;
        self.live_at_end += other.live_at_end;
        self.dropped += other.dropped;
        self.going_away += other.going_away;
        self.going_away_unanswered += other.going_away_unanswered;
        self.ramp_secs = self.ramp_secs.max(other.ramp_secs);
        self.fanout.merge(&other.fanout);
        self.churned += other.churned;
        self.self_load.merge(&other.self_load);
        self.h2_connections += other.h2_connections;
        series::merge(&mut self.series, &other.series);
    }

    fn fail(&mut self, why: Failure, live: &Live) {
        self.failures[FAILURES.iter().position(|(f, _)| *f == why).unwrap_or(5)] += 1;
        self.rec.now.failures += 1;
        live.failed.fetch_add(1, Ordering::Relaxed);
    }

    fn mismatch(&mut self) {
        self.mismatches += 1;
        self.rec.now.mismatches += 1;
    }

    fn record_latency(&mut self, micros: u64) {
        let v = micros.clamp(series::LOW, series::HIGH);
        let _ = self.latency.record(v);
        let _ = self.rec.latency.record(v);
    }
}
