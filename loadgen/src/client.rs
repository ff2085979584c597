//! The client event loop: one per thread, over its share of the connections.
//! Frames to send are precomputed and masked once, so masking never limits the
//! load; replies are decoded in place with ringws's own client-role decoder and
//! handled by a client-role [`Session`] per connection (pongs, the close reply,
//! inflation of compressed messages), all sharing the thread's [`Endpoint`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use ringws::proto::Role;
use ringws::proto::close::CloseCode;
use ringws::proto::deflate::{self, DeflateConfig, Negotiated};
use ringws::proto::frame::OpCode;
use ringws::proto::handshake::ClientHandshake;
use ringws::proto::message::Decoder;
use ringws::proto::session::{Endpoint, Inbound, InflateBuffer, Session};
use ringws::rustls::ClientConnection;
use socket2::{Domain, Protocol, Socket, Type};

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
    pub connections: usize,
    /// New connections per second (this thread).
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
    /// A hard stop for the whole run.
    pub deadline: Instant,
    pub epoch: Instant,
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
    /// Per-second samples of the whole run (ramp and drain included).
    pub series: Vec<Sample>,
    /// This thread's current second.
    pub(crate) rec: Recorder,
    /// Inside the measured window (after the ramp, before the drain): only then
    /// are messages and latencies counted.
    measuring: bool,
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

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Connecting,
    Upgrading,
    Open,
    /// Closed by us on purpose (`--churn`) at this time; awaiting the
    /// server's close.
    Closing(Instant),
}

struct Conn {
    /// Tells this connection from an earlier one under the same slab key.
    serial: u32,
    stream: TcpStream,
    /// `wss://`: the TLS session over `stream`; `tx.out` and reads are plaintext.
    tls: Option<Box<ClientConnection>>,
    /// The TLS handshake is done (and timed).
    tls_done: bool,
    phase: Phase,
    started: Instant,
    handshake: Option<Box<ClientHandshake>>,
    head: Vec<u8>,
    decoder: Decoder,
    /// The protocol after the upgrade: pongs, the close reply, the outgoing
    /// frames, and with permessage-deflate the decompressor (its compressor is
    /// never made: compressed frames are precomputed).
    session: Session,
    tx: Tx,
    ping_outstanding: bool,
    writable: bool,
    /// Its failure was already counted.
    reported: bool,
    /// Index of its target: 0 is the publisher's node.
    node: usize,
    /// Broadcast probes received.
    heard: Option<Heard>,
    /// The server closed it with 1001 (going away).
    going_away: bool,
}

/// The sending side of a connection.
struct Tx {
    out: Vec<u8>,
    out_pos: usize,
    /// (payload variant, intended send time) of echoes awaited, oldest first.
    inflight: VecDeque<(u32, Instant)>,
    next_variant: u32,
    /// The measured phase is over: answer nothing more.
    stopped: bool,
}

/// Scheduled sends (open loop), pings and publishes: (due, slab key, serial).
type Schedule = BinaryHeap<Reverse<(Instant, usize, u32)>>;

const READ_BUF: usize = 64 * 1024;

/// Largest server frame and message (inflated too) the client accepts.
const MAX_MESSAGE: usize = 64 << 20;

/// How long the answers still in flight at the end may take.
const DRAIN: Duration = Duration::from_secs(2);

/// Runs one thread's plan to its end.
pub fn run(plan: Plan, live: Arc<Live>) -> Report {
    let mut report = Report::new();
    if let Err(e) = run_inner(&plan, &live, &mut report) {
        eprintln!("loadgen: client thread failed: {e}");
    }
    report.rec.roll(plan.epoch.elapsed().as_secs());
    report.series = std::mem::take(&mut report.rec).finish();
    report
}

fn run_inner(plan: &Plan, live: &Live, report: &mut Report) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let mut conns: slab::Slab<Conn> = slab::Slab::with_capacity(plan.connections);
    let mut buf = vec![0u8; READ_BUF];
    // Shared by this thread's sessions: decoder rules, compression scratch, mask keys.
    let mut endpoint = Endpoint::new(Role::Client, MAX_MESSAGE, MAX_MESSAGE, LEVEL);
    // Where compressed server messages are inflated.
    let mut inflated = InflateBuffer::new();
    // Scheduled sends (open loop) and pings: (due, key).
    let mut schedule: Schedule = BinaryHeap::new();
    // Each connection's serial: a slab key is reused after a close, so what
    // was scheduled for the old connection must not fire for the new one.
    let mut next_serial = 0u32;
    let ramp_start = Instant::now();
    let mut started = 0usize;
    let mut ramp_done: Option<Instant> = None;
    let mut last_sample = Instant::now();
    let mut next_source = 0usize;
    let mut draining: Option<Instant> = None;
    // --churn: connections closed on purpose and to be opened anew, the
    // fraction of one still owed, and where the next pick starts.
    let mut reopen = 0usize;
    let mut churn_owed = 0f64;
    let mut churn_cursor = 0usize;

    loop {
        let now = Instant::now();
        report.rec.roll((now - plan.epoch).as_secs());
        if now >= plan.deadline || live.stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(done) = ramp_done {
            let end = done + plan.hold;
            if now >= end {
                report.measuring = false;
            }
            // A broadcast subscriber thread keeps reading until the publisher
            // has stopped (in another process, it cannot know: two drains).
            let (broadcast, publisher) = match plan.workload {
                Workload::Broadcast { publishers, .. } => (true, publishers > 0),
                _ => (false, false),
            };
            let may_stop = !broadcast
                || publisher
                || live.final_seq.load(Ordering::Acquire) != u64::MAX
                || now >= end + 2 * DRAIN;
            if now >= end && may_stop && draining.is_none() {
                if publisher {
                    let last = report.fanout.published_total.wrapping_sub(1);
                    live.final_seq.store(last, Ordering::Release);
                }
                // Stop sending; give the answers in flight a moment to arrive.
                draining = Some(now + DRAIN);
                schedule.clear();
                for (_, conn) in conns.iter_mut() {
                    conn.tx.stopped = true;
                }
            }
            let final_seq = live.final_seq.load(Ordering::Acquire);
            // Settled: every connection open (no handshake, opening or closing,
            // under way) and nothing it is owed outstanding.
            let settled = || {
                conns.iter().all(|(_, c)| {
                    c.phase == Phase::Open
                        && c.tx.inflight.is_empty()
                        && !c.ping_outstanding
                        && (!broadcast
                            || (final_seq != u64::MAX
                                && c.heard.is_some_and(|h| h.last >= final_seq)))
                })
            };
            if draining.is_some_and(|d| now >= d || settled()) {
                break;
            }
        }
        // Ramp: start the connections that are due.
        let due = if plan.ramp_rate.is_finite() && plan.ramp_rate > 0.0 {
            ((now - ramp_start).as_secs_f64() * plan.ramp_rate) as usize + 1
        } else {
            plan.connections
        };
        // Churned connections are replaced at once (they count past the plan),
        // the drain included: a churn just before the end still reopens, so the
        // run ends with as many connections as it held.
        while started < plan.connections.min(due) + reopen
            && (draining.is_none() || ramp_done.is_some())
        {
            started += 1;
            let source = plan
                .sources
                .get(next_source % plan.sources.len().max(1))
                .copied();
            next_source += 1;
            let node = (plan.first_target + started - 1) % plan.targets.len();
            match open_socket(plan.targets[node].addr, source) {
                Ok(mut stream) => {
                    let entry = conns.vacant_entry();
                    let key = entry.key();
                    poll.registry().register(
                        &mut stream,
                        Token(key),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    let tls = match plan.targets[node].tls.as_ref().map(|t| t.connection()) {
                        Some(Ok(tls)) => Some(Box::new(tls)),
                        Some(Err(e)) => {
                            report.fail(classify(&e), live);
                            continue;
                        }
                        None => None,
                    };
                    next_serial = next_serial.wrapping_add(1);
                    entry.insert(Conn {
                        serial: next_serial,
                        stream,
                        tls,
                        tls_done: false,
                        phase: Phase::Connecting,
                        started: Instant::now(),
                        handshake: None,
                        head: Vec::new(),
                        decoder: Decoder::new(),
                        session: Session::new(),
                        tx: Tx {
                            out: Vec::new(),
                            out_pos: 0,
                            inflight: VecDeque::new(),
                            next_variant: key as u32,
                            // Opened in the drain: it holds, sends nothing.
                            stopped: draining.is_some(),
                        },
                        ping_outstanding: false,
                        writable: false,
                        reported: false,
                        node,
                        heard: None,
                        going_away: false,
                    });
                }
                Err(e) => report.fail(classify(&e), live),
            }
        }

        let mut timeout = Duration::from_millis(50);
        if let Some(Reverse((at, _, _))) = schedule.peek() {
            timeout = timeout.min(at.saturating_duration_since(now));
        }
        if started < plan.connections && plan.ramp_rate.is_finite() {
            timeout = timeout.min(Duration::from_millis(5));
        }
        if let Err(e) = poll.poll(&mut events, Some(timeout))
            && e.kind() != io::ErrorKind::Interrupted
        {
            return Err(e);
        }
        let now = Instant::now();
        report.rec.roll((now - plan.epoch).as_secs());
        for event in events.iter() {
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            let mut ok = true;
            if conn.phase == Phase::Connecting && (event.is_writable() || event.is_error()) {
                let target = &plan.targets[conn.node];
                ok = finish_connect(conn, target, report, live);
            }
            if ok && event.is_writable() {
                conn.writable = true;
                ok = flush(conn).is_ok();
            }
            if ok && (event.is_readable() || event.is_read_closed()) {
                ok = read_conn(
                    key,
                    conn,
                    &mut buf,
                    &mut endpoint,
                    &mut inflated,
                    plan,
                    report,
                    live,
                    &mut schedule,
                    now,
                );
            }
            if !ok {
                close_conn(&mut conns, key, &poll, report, live);
            }
        }
        // Scheduled work: open-loop sends, pings, publishes.
        while let Some(&Reverse((at, key, serial))) = schedule.peek() {
            if at > now {
                break;
            }
            schedule.pop();
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            if conn.phase != Phase::Open || conn.serial != serial {
                continue;
            }
            match &plan.workload {
                Workload::Echo {
                    rate: Some(rate),
                    payloads,
                    ..
                } => {
                    send_echo(&mut conn.tx, payloads, at);
                    schedule.push(Reverse((
                        at + Duration::from_secs_f64(1.0 / rate),
                        key,
                        serial,
                    )));
                }
                Workload::Ping { every } => {
                    if conn.ping_outstanding {
                        report.missed_pongs += 1;
                        report.rec.now.missed += 1;
                    }
                    let stamp = ((now - plan.epoch).as_micros() as u64).to_be_bytes();
                    if let Some(ping) = conn.session.control(&mut endpoint, OpCode::Ping, &stamp) {
                        ping.write_to(&mut conn.tx.out);
                    }
                    conn.ping_outstanding = true;
                    report.pings += 1;
                    report.rec.now.pings += 1;
                    schedule.push(Reverse((at + *every, key, serial)));
                }
                Workload::Broadcast { rate, size, .. } => {
                    let mut payload = vec![b'x'; (*size).max(BROADCAST_MIN)];
                    payload[..8]
                        .copy_from_slice(&((now - plan.epoch).as_micros() as u64).to_be_bytes());
                    let word = report.fanout.published_total
                        | if report.measuring { MEASURED_PROBE } else { 0 };
                    payload[8..16].copy_from_slice(&word.to_be_bytes());
                    payload[16..20].copy_from_slice(BROADCAST_MARK);
                    report.fanout.published_total += 1;
                    report.rec.now.published += 1;
                    conn.session
                        .message(&mut endpoint, OpCode::Binary, &payload, false)
                        .write_to(&mut conn.tx.out);
                    if report.measuring {
                        report.published += 1;
                    }
                    schedule.push(Reverse((
                        at + Duration::from_secs_f64(1.0 / rate),
                        key,
                        serial,
                    )));
                }
                _ => {}
            }
            if flush(conn).is_err() {
                close_conn(&mut conns, key, &poll, report, live);
            }
        }
        // Every 100 ms (scans of all connections stay off the per-event path):
        // connect and upgrade timeouts, the end of the ramp, a ramp sample.
        if now - last_sample >= Duration::from_millis(100) {
            last_sample = now;
            let expired: Vec<usize> = conns
                .iter()
                .filter(|(_, c)| match c.phase {
                    Phase::Connecting | Phase::Upgrading => now - c.started > plan.connect_timeout,
                    Phase::Closing(since) => now - since > plan.connect_timeout,
                    Phase::Open => false,
                })
                .map(|(k, _)| k)
                .collect();
            for key in expired {
                let Some(mut conn) = conns.try_remove(key) else {
                    continue;
                };
                let _ = poll.registry().deregister(&mut conn.stream);
                if matches!(conn.phase, Phase::Closing(_)) {
                    // The server never answered our close: the connection is lost.
                    report.dropped += 1;
                    report.rec.now.dropped += 1;
                    report.lost += conn.tx.inflight.len() as u64;
                    live.open.fetch_sub(1, Ordering::Relaxed);
                    report.rec.open = report.rec.open.saturating_sub(1);
                } else {
                    report.fail(Failure::Timeout, live);
                }
            }
            // --churn: close a share of the open connections (a closing
            // handshake each: what they were owed still arrives) and open as
            // many anew.
            if plan.churn > 0.0 && ramp_done.is_some() && draining.is_none() {
                churn_owed += plan.churn * plan.connections as f64 * 0.1;
                let n = churn_owed as usize;
                churn_owed -= n as f64;
                let picked: Vec<usize> = conns
                    .iter()
                    .filter(|(k, c)| *k >= churn_cursor && c.phase == Phase::Open)
                    .chain(
                        conns
                            .iter()
                            .filter(|(k, c)| *k < churn_cursor && c.phase == Phase::Open),
                    )
                    .map(|(k, _)| k)
                    .take(n)
                    .collect();
                for key in picked {
                    let Some(conn) = conns.get_mut(key) else {
                        continue;
                    };
                    churn_cursor = key + 1;
                    if let Some(close) = conn.session.close(&mut endpoint, CloseCode::NORMAL, "") {
                        close.write_to(&mut conn.tx.out);
                    }
                    conn.phase = Phase::Closing(now);
                    conn.tx.stopped = true;
                    reopen += 1;
                    if flush(conn).is_err() {
                        // Broken before the close went out: lost, not churned.
                        conn.phase = Phase::Open;
                        close_conn(&mut conns, key, &poll, report, live);
                    }
                }
            }
            let open = conns.iter().filter(|(_, c)| c.phase == Phase::Open).count();
            if ramp_done.is_none() && started >= plan.connections && open == conns.len() {
                ramp_done = Some(now);
                report.measuring = true;
            }
        }
    }

    // The end: count the living, close everyone politely.
    let broadcast = matches!(plan.workload, Workload::Broadcast { .. });
    for (_, conn) in conns.iter_mut() {
        if let Phase::Closing(_) = conn.phase {
            // Churned, its close not answered by the end.
            report.lost += conn.tx.inflight.len() as u64;
            continue;
        }
        if conn.phase != Phase::Open {
            continue;
        }
        if broadcast {
            let f = &mut report.fanout;
            match conn.heard {
                Some(h) => {
                    if conn.node == 0 {
                        f.heard_local += 1;
                        f.gap_local = f.gap_local.max(h.gap);
                    } else {
                        f.heard_remote += 1;
                        f.gap_remote = f.gap_remote.max(h.gap);
                    }
                    f.sum_first += h.first;
                    f.sum_distinct += h.distinct;
                }
                None => f.silent += 1,
            }
        }
        report.lost += conn.tx.inflight.len() as u64;
        if !conn.ping_outstanding {
            report.live_at_end += 1;
        }
        if let Some(close) = conn.session.close(&mut endpoint, CloseCode::NORMAL, "") {
            close.write_to(&mut conn.tx.out);
        }
        let _ = flush(conn);
    }
    Ok(())
}

fn open_socket(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        // Spread over source addresses: each has its own ~28k ephemeral ports.
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

fn finish_connect(conn: &mut Conn, target: &Target, report: &mut Report, live: &Live) -> bool {
    if let Ok(Some(e)) | Err(e) = conn.stream.take_error() {
        report.fail(classify(&e), live);
        conn.reported = true;
        return false;
    }
    match conn.stream.peer_addr() {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotConnected => return true,
        Err(e) => {
            report.fail(classify(&e), live);
            conn.reported = true;
            return false;
        }
    }
    let handshake = match ClientHandshake::new(&target.host, &target.path).and_then(|h| {
        if target.deflate {
            h.extensions(DEFLATE_OFFER)
        } else {
            Ok(h)
        }
    }) {
        Ok(h) => h,
        Err(_) => {
            report.fail(Failure::Other, live);
            conn.reported = true;
            return false;
        }
    };
    handshake.write_request(&mut conn.tx.out);
    conn.handshake = Some(Box::new(handshake));
    conn.phase = Phase::Upgrading;
    true
}

fn flush(conn: &mut Conn) -> io::Result<()> {
    if let Some(tls) = conn.tls.as_deref_mut() {
        // rustls takes all of it; its ciphertext goes out as the socket allows.
        if conn.tx.out_pos < conn.tx.out.len() {
            crate::tls::write(tls, &mut conn.stream, &conn.tx.out[conn.tx.out_pos..])?;
        } else {
            crate::tls::flush(tls, &mut conn.stream)?;
        }
        conn.tx.out.clear();
        conn.tx.out_pos = 0;
        return Ok(());
    }
    while conn.tx.out_pos < conn.tx.out.len() {
        match conn.stream.write(&conn.tx.out[conn.tx.out_pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.tx.out_pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.writable = false;
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    conn.tx.out.clear();
    conn.tx.out_pos = 0;
    Ok(())
}

/// The payload variant of a connection's `n`th message: a mix of the counter
/// (so sizes follow no pattern), the same on every run.
fn variant_of(n: u32, variants: usize) -> usize {
    let mut x = n.wrapping_mul(0x9E37_79B9);
    x ^= x >> 16;
    x = x.wrapping_mul(0x85EB_CA6B);
    x ^= x >> 13;
    x as usize % variants.max(1)
}

fn send_echo(tx: &mut Tx, payloads: &Payloads, intended: Instant) {
    let variant = variant_of(tx.next_variant, payloads.frames.len());
    tx.next_variant = tx.next_variant.wrapping_add(1);
    tx.out.extend_from_slice(&payloads.frames[variant]);
    tx.inflight.push_back((variant as u32, intended));
}

#[allow(clippy::too_many_arguments)]
fn read_conn(
    key: usize,
    conn: &mut Conn,
    buf: &mut [u8],
    endpoint: &mut Endpoint,
    inflated: &mut InflateBuffer,
    plan: &Plan,
    report: &mut Report,
    live: &Live,
    schedule: &mut Schedule,
    now: Instant,
) -> bool {
    loop {
        let read = match conn.tls.as_deref_mut() {
            Some(tls) => crate::tls::read(tls, &mut conn.stream, buf),
            None => conn.stream.read(buf),
        };
        if !conn.tls_done && conn.tls.as_ref().is_some_and(|tls| !tls.is_handshaking()) {
            conn.tls_done = true;
            // The same clock reading as the upgrade's, so the upgrade is the rest.
            let _ = report
                .tls_handshake
                .record((now - conn.started).as_micros().max(1) as u64);
        }
        let n = match read {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // rustls refused the session (a certificate not trusted, say):
            // said once, counted as "other".
            Err(e) if e.kind() == io::ErrorKind::InvalidData && !conn.tls_done => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| eprintln!("loadgen: TLS failed: {e}"));
                report.fail(Failure::Other, live);
                conn.reported = true;
                return false;
            }
            Err(_) => return false,
        };
        let mut data = &mut buf[..n];
        if conn.phase == Phase::Upgrading {
            conn.head.extend_from_slice(data);
            let Some(handshake) = conn.handshake.as_ref() else {
                return false;
            };
            let consumed = match handshake.parse_response(&conn.head) {
                Ok(Some((accepted, consumed))) => {
                    if plan.targets[0].deflate {
                        let config = DeflateConfig {
                            no_context_takeover: true,
                            ..DeflateConfig::default()
                        };
                        match accepted
                            .extensions()
                            .next()
                            .map(|a| deflate::client_accept(&a, &config))
                        {
                            Some(Ok(n)) => {
                                conn.session = Session::with_deflate(Role::Client, &n, LEVEL);
                            }
                            // Compression was asked for and not granted.
                            _ => {
                                report.fail(Failure::BadStatus, live);
                                conn.reported = true;
                                return false;
                            }
                        }
                    }
                    consumed
                }
                Ok(None) => continue,
                Err(_) => {
                    report.fail(Failure::BadStatus, live);
                    conn.reported = true;
                    return false;
                }
            };
            let leftover = conn.head.len() - consumed;
            conn.handshake = None;
            conn.head = Vec::new();
            conn.phase = Phase::Open;
            report.connected += 1;
            report.ramp_secs = (now - plan.epoch).as_secs_f64();
            live.open.fetch_add(1, Ordering::Relaxed);
            let took = ((now - conn.started).as_micros() as u64).clamp(series::LOW, series::HIGH);
            let _ = report.handshake.record(took);
            report.rec.now.connects += 1;
            report.rec.open += 1;
            let _ = report.rec.handshake.record(took);
            on_open(key, conn, plan, schedule, now);
            if flush(conn).is_err() {
                return false;
            }
            if leftover == 0 {
                continue;
            }
            // Frames right behind the 101: decode them from the read buffer.
            data = &mut buf[n - leftover..n];
        }
        let mut pos = 0;
        let mut closed = false;
        let mut conn_going_away = false;
        let Conn {
            decoder,
            session,
            tx,
            ping_outstanding,
            node,
            heard,
            ..
        } = &mut *conn;
        let mut rx = Rx {
            node: *node,
            heard,
            plan,
            live,
            now,
        };
        let config = *endpoint.decoder_config(session);
        while pos < data.len() {
            let received = match decoder.decode(&config, &mut data[pos..]) {
                Ok((used, event)) => {
                    pos += used;
                    let Some(event) = event else { continue };
                    session.receive(endpoint, inflated, event)
                }
                Err(e) => Err(e),
            };
            let received = match received {
                Ok(received) => received,
                Err(e) => {
                    // Tell the server why, then drop the connection.
                    if let Some(close) = session.close(endpoint, e.close_code(), "") {
                        close.write_to(&mut tx.out);
                    }
                    closed = true;
                    break;
                }
            };
            // The pong of a ping, the reply to the server's close.
            if let Some(reply) = &received.reply {
                endpoint.reply(reply).write_to(&mut tx.out);
            }
            match received.inbound {
                Inbound::Text(t) => on_message(tx, &mut rx, t.as_bytes(), false, report),
                Inbound::Binary(b) => on_message(tx, &mut rx, b, true, report),
                Inbound::Pong(stamp) => {
                    *ping_outstanding = false;
                    report.pongs += 1;
                    report.rec.now.pongs += 1;
                    // Our pings carry their send time (µs since the epoch).
                    if let Ok(sent) = <[u8; 8]>::try_from(stamp) {
                        let at = (now - plan.epoch).as_micros() as u64;
                        let rtt = at.saturating_sub(u64::from_be_bytes(sent));
                        let rtt = rtt.clamp(series::LOW, series::HIGH);
                        let _ = report.pong_latency.record(rtt);
                        let _ = report.rec.latency.record(rtt);
                    }
                }
                Inbound::Ping(_) => {}
                // Nothing is decoded after a close: answered, the connection ends.
                Inbound::Close { code, .. } => {
                    conn_going_away = code == CloseCode::GOING_AWAY;
                    closed = true;
                    break;
                }
            }
        }
        inflated.release();
        endpoint.release_buffers();
        conn.decoder.release_buffers();
        conn.going_away |= conn_going_away;
        if flush(conn).is_err() || closed {
            return false;
        }
        if n < buf.len() {
            return true;
        }
    }
}

fn on_open(key: usize, conn: &mut Conn, plan: &Plan, schedule: &mut Schedule, now: Instant) {
    if conn.tx.stopped {
        return;
    }
    match &plan.workload {
        Workload::Idle => {}
        Workload::Ping { every } => {
            // Spread the first pings over one interval.
            let offset = every.mul_f64((key % 1000) as f64 / 1000.0);
            schedule.push(Reverse((now + offset, key, conn.serial)));
        }
        Workload::Echo {
            in_flight,
            rate: None,
            payloads,
        } => {
            for _ in 0..*in_flight {
                send_echo(&mut conn.tx, payloads, now);
            }
        }
        Workload::Echo {
            rate: Some(rate), ..
        } => {
            let period = Duration::from_secs_f64(1.0 / rate);
            let offset = period.mul_f64((key % 1000) as f64 / 1000.0);
            schedule.push(Reverse((now + offset, key, conn.serial)));
        }
        Workload::Broadcast {
            publishers, rate, ..
        } => {
            if key < *publishers {
                schedule.push(Reverse((
                    now + Duration::from_secs_f64(1.0 / rate),
                    key,
                    conn.serial,
                )));
            }
        }
    }
}

/// What a received message is judged by, besides the connection's send side.
struct Rx<'a> {
    node: usize,
    heard: &'a mut Option<Heard>,
    plan: &'a Plan,
    live: &'a Live,
    now: Instant,
}

/// A broadcast probe's send time, sequence number, and whether it was
/// published in the measured window, if `payload` is one.
fn probe(payload: &[u8], binary: bool) -> Option<(u64, u64, bool)> {
    if !binary || payload.len() < BROADCAST_MIN || &payload[16..20] != BROADCAST_MARK {
        return None;
    }
    let sent = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
    let word = u64::from_be_bytes(payload[8..16].try_into().expect("8 bytes"));
    Some((sent, word & !MEASURED_PROBE, word & MEASURED_PROBE != 0))
}

fn on_message(tx: &mut Tx, rx: &mut Rx<'_>, payload: &[u8], binary: bool, report: &mut Report) {
    let (plan, live, now) = (rx.plan, rx.live, rx.now);
    let probe = probe(payload, binary);
    if matches!(plan.workload, Workload::Broadcast { .. }) && probe.is_none() {
        // Not ours (a chat's "joined" line, say).
        return;
    }
    // A probe counts by when it was published, so that the deliveries match
    // the publishes counted; anything else by when it arrives.
    let measuring = probe.map_or(report.measuring, |(_, _, measured)| measured);
    if measuring {
        report.messages += 1;
        report.bytes += payload.len() as u64;
    }
    report.rec.now.messages += 1;
    report.rec.now.bytes += payload.len() as u64;
    live.messages.fetch_add(1, Ordering::Relaxed);
    match &plan.workload {
        Workload::Echo { rate, payloads, .. } => {
            let Some((variant, intended)) = tx.inflight.pop_front() else {
                report.mismatch();
                return;
            };
            if payloads.payloads[variant as usize] != payload {
                report.mismatch();
            }
            report.record_latency((now - intended).as_micros() as u64);
            if rate.is_none() && !tx.stopped {
                send_echo(tx, payloads, now);
            }
        }
        Workload::Broadcast { .. } => {
            let Some((sent, seq, _)) = probe else { return };
            let at = (now - plan.epoch).as_micros() as u64;
            let latency = at.saturating_sub(sent).clamp(series::LOW, series::HIGH);
            let _ = report.rec.latency.record(latency);
            let f = &mut report.fanout;
            if measuring {
                let _ = report.latency.record(latency);
                if rx.node == 0 {
                    let _ = f.latency_local.record(latency);
                    f.messages_local += 1;
                } else {
                    let _ = f.latency_remote.record(latency);
                    f.messages_remote += 1;
                }
            }
            match rx.heard {
                None => {
                    *rx.heard = Some(Heard {
                        first: seq,
                        last: seq,
                        distinct: 1,
                        at: now,
                        gap: 0,
                    });
                }
                Some(h) => {
                    if seq <= h.last {
                        f.out_of_order += 1;
                    } else {
                        h.distinct += 1;
                        h.last = seq;
                    }
                    h.gap = h.gap.max((now - h.at).as_micros() as u64);
                    h.at = now;
                }
            }
        }
        _ => {}
    }
}

fn close_conn(
    conns: &mut slab::Slab<Conn>,
    key: usize,
    poll: &Poll,
    report: &mut Report,
    live: &Live,
) {
    if let Some(mut conn) = conns.try_remove(key) {
        let _ = poll.registry().deregister(&mut conn.stream);
        match conn.phase {
            Phase::Open if conn.going_away => {
                report.going_away += 1;
                report.going_away_unanswered += conn.tx.inflight.len() as u64;
                live.open.fetch_sub(1, Ordering::Relaxed);
                report.rec.open = report.rec.open.saturating_sub(1);
            }
            Phase::Open => {
                report.dropped += 1;
                report.rec.now.dropped += 1;
                report.lost += conn.tx.inflight.len() as u64;
                live.open.fetch_sub(1, Ordering::Relaxed);
                report.rec.open = report.rec.open.saturating_sub(1);
            }
            // A churned connection: closed by us, answered by the server's close
            // (the echoes it owed came before that, so none should be left).
            Phase::Closing(_) => {
                report.churned += 1;
                report.rec.now.churned += 1;
                report.lost += conn.tx.inflight.len() as u64;
                live.open.fetch_sub(1, Ordering::Relaxed);
                report.rec.open = report.rec.open.saturating_sub(1);
            }
            _ if !conn.reported => report.fail(Failure::Reset, live),
            _ => {}
        }
    }
}
