//! One WebSocket's state (what the scenarios drive) and the HTTP/1.1 path:
//! connect, upgrade, read and decode, send (the socket is in `sock`).

use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::time::Instant;

use mio::Poll;
use ringws::proto::Role;
use ringws::proto::close::CloseCode;
use ringws::proto::deflate::{self, DeflateConfig};
use ringws::proto::handshake::{ClientHandshake, ExtensionOffer};
use ringws::proto::message::Decoder;
use ringws::proto::session::{Endpoint, Inbound, InflateBuffer, Session};

pub(super) use super::sock::{Sock, open_socket, tls_failed};
pub(super) use super::tx::Tx;
pub(super) use super::wheel::Schedule;
use super::workload::{on_message, on_open};
use super::{DEFLATE_OFFER, Failure, Heard, LEVEL, Live, Plan, Report, Target, classify};
use crate::series;

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// HTTP/1.1: connecting; HTTP/2: waiting for its stream to open.
    Connecting,
    /// The upgrade (or extended CONNECT) is sent, its answer awaited.
    Upgrading,
    Open,
    /// Closed by us on purpose (`--churn`); awaiting the server's close (its
    /// deadline is in the thread's `Deadlines` (in `run.rs`)).
    Closing,
}

/// One WebSocket: all the scenarios see of it, and what carries it.
///
/// A million of these live in the load generator, so an idle one holds no
/// heap memory and only what every connection needs is inline: what is
/// needed only for a while (the upgrade, a frame split across reads, bytes
/// the socket did not take and echoes awaited, broadcast bookkeeping) is
/// boxed or allocated then and freed after (`conn_size` in the tests keeps the size in check).
pub(super) struct Conn {
    /// Tells this connection from an earlier one under the same slab key.
    pub(super) serial: u32,
    pub(super) phase: Phase,
    pub(super) ping_outstanding: bool,
    /// Its failure was already counted.
    pub(super) reported: bool,
    /// The server closed it with 1001 (going away).
    pub(super) going_away: bool,
    /// Index of its target: 0 is the publisher's node.
    pub(super) node: u16,
    /// When its connect began, µs since the run's epoch (see [`micros32`]).
    pub(super) started: u32,
    /// Receive state between reads: `None` while no frame is split across
    /// reads (nearly always), and the thread's spare decoder decodes.
    pub(super) decoder: Option<Box<Decoder>>,
    /// The protocol after the upgrade: pongs, the close reply, the outgoing
    /// frames, and with permessage-deflate the decompressor (its compressor is
    /// never made: compressed frames are precomputed).
    pub(super) session: Session,
    pub(super) tx: Tx,
    /// Broadcast probes received (boxed: only subscribers have it).
    pub(super) heard: Option<Box<Heard>>,
    pub(super) link: Link,
}

/// What carries a WebSocket.
pub(super) enum Link {
    /// HTTP/1.1: a TCP connection of its own.
    Tcp(Tcp),
    /// HTTP/2: a stream of one of the thread's HTTP/2 connections.
    Stream(StreamLink),
}

/// An HTTP/1.1 WebSocket's connection.
pub(super) struct Tcp {
    pub(super) sock: Sock,
    /// While upgrading: the request's key and the answer read so far.
    pub(super) upgrade: Option<Box<Upgrade>>,
}

/// The upgrade under way: freed once answered.
pub(super) struct Upgrade {
    pub(super) handshake: ClientHandshake,
    pub(super) head: Vec<u8>,
}

/// An HTTP/2 WebSocket's stream.
#[derive(Debug)]
pub(super) struct StreamLink {
    /// Its connection's key.
    pub(super) conn: usize,
    /// The stream id, 0 until the stream is opened.
    pub(super) id: u32,
    /// What it may still send (the server's stream window).
    pub(super) window: i64,
    /// DATA received since its last WINDOW_UPDATE.
    pub(super) unacked: u32,
}

/// Sends `bytes` now: straight from `bytes` when nothing is queued before
/// them (plain TCP), so a ping costs no buffer; whatever the socket does not
/// take is queued.
pub(super) fn send_now(conn: &mut Conn, bytes: &[u8]) -> io::Result<()> {
    if let Link::Tcp(tcp) = &mut conn.link
        && conn.tx.unsent().is_empty()
        && tcp.sock.tls.is_none()
    {
        let written = match tcp.sock.stream.write(bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        if written < bytes.len() {
            conn.tx.out().extend_from_slice(&bytes[written..]);
        }
        return Ok(());
    }
    conn.tx.out().extend_from_slice(bytes);
    flush(conn)
}

impl Conn {
    /// A WebSocket about to be opened over `link`, in a run that began at
    /// `epoch`.
    pub(super) fn new(
        serial: u32,
        key: usize,
        node: usize,
        stopped: bool,
        link: Link,
        epoch: Instant,
    ) -> Self {
        Self {
            serial,
            phase: Phase::Connecting,
            ping_outstanding: false,
            reported: false,
            going_away: false,
            node: node as u16,
            started: micros32(epoch, Instant::now()),
            decoder: None,
            session: Session::new(),
            tx: Tx::new(key as u32, stopped),
            heard: None,
            link,
        }
    }

    /// µs from its connect's start to `now`.
    pub(super) fn since_start(&self, epoch: Instant, now: Instant) -> u64 {
        micros_since(self.started, epoch, now)
    }
}

/// µs from `started` (by [`micros32`]) to `now`.
fn micros_since(started: u32, epoch: Instant, now: Instant) -> u64 {
    u64::from(micros32(epoch, now).wrapping_sub(started))
}

/// `at` as µs since `epoch`, in 32 bits (4 bytes a connection rather than an
/// `Instant`'s 16): it wraps every 71 minutes, and only differences shorter
/// than that (an opening, bounded by the connect timeout) are taken of it,
/// which wrapping subtraction gets right.
pub(super) fn micros32(epoch: Instant, at: Instant) -> u32 {
    at.saturating_duration_since(epoch).as_micros() as u32
}

/// The HTTP/1.1 connect is done (the socket's first readiness event,
/// `error_event` if it was an error): the upgrade request is sent (or the TLS
/// handshake started). `false`: it failed (and is counted), by the socket's
/// error or the first write's.
pub(super) fn finish_connect(
    conn: &mut Conn,
    target: &Target,
    error_event: bool,
    keys: &mut fastrand::Rng,
    report: &mut Report,
    live: &Live,
) -> bool {
    let Link::Tcp(tcp) = &mut conn.link else {
        return false;
    };
    if let Some(e) = tcp.sock.connect_error(error_event) {
        report.fail(classify(&e), live);
        conn.reported = true;
        return false;
    }
    // RFC 6455 wants the key's nonce random: from the thread's generator,
    // seeded from the OS (see `run`), not a getrandom call per connection.
    let nonce = keys.u128(..).to_ne_bytes();
    let handshake =
        match ClientHandshake::with_key(&target.host, &target.path, nonce).and_then(|h| {
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
    handshake.write_request(conn.tx.out());
    tcp.upgrade = Some(Box::new(Upgrade {
        handshake,
        head: Vec::new(),
    }));
    conn.phase = Phase::Upgrading;
    // Written at once: a connect that failed after all (with no error event)
    // shows here, and is counted by its error.
    if let Err(e) = flush(conn) {
        report.fail(classify(&e), live);
        conn.reported = true;
        return false;
    }
    true
}

/// Writes what an HTTP/1.1 WebSocket has to send.
pub(super) fn flush(conn: &mut Conn) -> io::Result<()> {
    match &mut conn.link {
        Link::Tcp(tcp) => {
            let Some((out, pos)) = conn.tx.queue() else {
                return Ok(());
            };
            let written = tcp.sock.write(out, pos);
            conn.tx.release();
            written
        }
        Link::Stream(_) => Ok(()),
    }
}

/// Reads an HTTP/1.1 WebSocket's socket: the upgrade's answer, then frames.
/// `false`: it is done (closed, failed).
///
/// The socket is registered edge-triggered: it must be read until it is
/// drained, and a read shorter than the buffer did drain it (what arrives
/// later raises a new event), so no read is made only to see it fail with
/// EAGAIN. Except when the event said the peer closed or failed (`hangup`):
/// its end (or error) may already be behind the data, with no new event to
/// come, so then it is read to the end.
#[allow(clippy::too_many_arguments)]
pub(super) fn read_conn(
    key: usize,
    conn: &mut Conn,
    hangup: bool,
    buf: &mut [u8],
    endpoint: &mut Endpoint,
    scratch: &mut RxScratch,
    plan: &Plan,
    report: &mut Report,
    live: &Live,
    schedule: &mut Schedule,
    now: Instant,
) -> bool {
    let started = conn.started;
    loop {
        let Link::Tcp(tcp) = &mut conn.link else {
            return false;
        };
        let read = tcp.sock.read(buf);
        if tcp.sock.tls_finished() {
            // The same clock reading as the upgrade's, so the upgrade is the rest.
            let _ = report
                .tls_handshake
                .record(micros_since(started, plan.epoch, now).max(1));
        }
        let n = match read {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // rustls refused the session (a certificate not trusted, say):
            // said once, counted as "other".
            Err(e) if e.kind() == io::ErrorKind::InvalidData && !tcp.sock.tls_done => {
                tls_failed(&e);
                report.fail(Failure::Other, live);
                conn.reported = true;
                return false;
            }
            Err(_) => return false,
        };
        // rustls hands out about one record a read: a short read is no sign
        // that the socket is drained then.
        let drained = n < buf.len() && tcp.sock.tls.is_none() && !hangup;
        let mut data = &mut buf[..n];
        if conn.phase == Phase::Upgrading {
            let Some(upgrade) = tcp.upgrade.as_mut() else {
                return false;
            };
            // Most answers come whole in one read: parsed where they were read.
            let head: &[u8] = if upgrade.head.is_empty() {
                data
            } else {
                upgrade.head.extend_from_slice(data);
                &upgrade.head
            };
            let head_len = head.len();
            let (session, consumed) = match upgrade.handshake.parse_response(head) {
                Ok(Some((accepted, consumed))) => {
                    (accept_deflate(plan, accepted.extensions().next()), consumed)
                }
                Ok(None) => {
                    if upgrade.head.is_empty() {
                        upgrade.head.extend_from_slice(data);
                    }
                    if drained {
                        return true;
                    }
                    continue;
                }
                Err(_) => (None, 0),
            };
            let Some(session) = session else {
                report.fail(Failure::BadStatus, live);
                conn.reported = true;
                return false;
            };
            let leftover = head_len - consumed;
            tcp.upgrade = None;
            conn.session = session;
            opened(key, conn, plan, report, live, schedule, now);
            if flush(conn).is_err() {
                return false;
            }
            if leftover == 0 {
                if drained {
                    return true;
                }
                continue;
            }
            // Frames right behind the 101: decode them from the read buffer.
            data = &mut buf[n - leftover..n];
        }
        let closed = receive(conn, data, endpoint, scratch, plan, report, live, now);
        if flush(conn).is_err() || closed {
            return false;
        }
        if drained {
            return true;
        }
    }
}

/// The session of a WebSocket the server accepted with `extension` as its
/// answer: with `--deflate`, the one negotiated (`None`: compression was
/// asked for and not granted).
pub(super) fn accept_deflate(
    plan: &Plan,
    extension: Option<ExtensionOffer<'_>>,
) -> Option<Session> {
    if !plan.targets[0].deflate {
        return Some(Session::new());
    }
    let config = DeflateConfig {
        no_context_takeover: true,
        ..DeflateConfig::default()
    };
    let negotiated = deflate::client_accept(&extension?, &config).ok()?;
    Some(Session::with_deflate(Role::Client, &negotiated, LEVEL))
}

/// The WebSocket is open (upgraded, or its stream answered 200): counted,
/// and its workload starts.
pub(super) fn opened(
    key: usize,
    conn: &mut Conn,
    plan: &Plan,
    report: &mut Report,
    live: &Live,
    schedule: &mut Schedule,
    now: Instant,
) {
    conn.phase = Phase::Open;
    report.connected += 1;
    report.ramp_secs = (now - plan.epoch).as_secs_f64();
    live.open.fetch_add(1, Ordering::Relaxed);
    let took = conn
        .since_start(plan.epoch, now)
        .clamp(series::LOW, series::HIGH);
    let _ = report.handshake.record(took);
    report.rec.now.connects += 1;
    report.rec.open += 1;
    let _ = report.rec.handshake.record(took);
    on_open(key, conn, plan, schedule, now);
}

/// What one thread's WebSockets use in turn while decoding.
#[derive(Default)]
pub(super) struct RxScratch {
    /// Where compressed server messages are inflated.
    pub(super) inflated: InflateBuffer,
    /// The decoder of every connection that has no frame split across reads:
    /// idle between reads, so one serves them all.
    pub(super) decoder: Decoder,
}

/// Reassembly buffer the thread's spare decoder keeps between reads.
const SPARE_DECODER_KEEP: usize = 64 << 10;

/// Decodes the server's bytes of an open WebSocket and answers them (into
/// its `tx`); `true`: it is closed (the server's close answered, or an
/// error told).
#[allow(clippy::too_many_arguments)]
pub(super) fn receive(
    conn: &mut Conn,
    data: &mut [u8],
    endpoint: &mut Endpoint,
    scratch: &mut RxScratch,
    plan: &Plan,
    report: &mut Report,
    live: &Live,
    now: Instant,
) -> bool {
    let mut pos = 0;
    let mut closed = false;
    let mut conn_going_away = false;
    let mut own = conn.decoder.take();
    let RxScratch {
        inflated,
        decoder: spare,
    } = scratch;
    let decoder: &mut Decoder = match own.as_deref_mut() {
        Some(d) => d,
        None => spare,
    };
    let Conn {
        session,
        tx,
        ping_outstanding,
        node,
        heard,
        ..
    } = &mut *conn;
    let mut rx = super::workload::Rx {
        node: usize::from(*node),
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
                    close.write_to(tx.out());
                }
                closed = true;
                break;
            }
        };
        // The pong of a ping, the reply to the server's close.
        if let Some(reply) = &received.reply {
            endpoint.reply(reply).write_to(tx.out());
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
    // A frame split across reads keeps its decoder with the connection;
    // otherwise it goes back to being the thread's.
    match own {
        Some(mut d) if d.is_idle() => {
            d.release_buffers();
            drop(d);
        }
        Some(d) => conn.decoder = Some(d),
        None if !closed && !spare.is_idle() => {
            conn.decoder = Some(Box::new(std::mem::take(spare)));
        }
        None if spare.close_received() => *spare = Decoder::new(),
        None => spare.trim_buffers(SPARE_DECODER_KEEP),
    }
    conn.going_away |= conn_going_away;
    closed
}

/// Ends an HTTP/1.1 WebSocket: its socket is closed.
pub(super) fn close_conn(
    conns: &mut slab::Slab<Conn>,
    key: usize,
    poll: &Poll,
    report: &mut Report,
    live: &Live,
) {
    if let Some(mut conn) = conns.try_remove(key) {
        if let Link::Tcp(tcp) = &mut conn.link {
            let _ = poll.registry().deregister(&mut tcp.sock.stream);
        }
        closed(&conn, Failure::Reset, report, live);
    }
}

/// Counts a WebSocket that ended: by its phase (one not yet open and not
/// yet counted failed for `why`).
pub(super) fn closed(conn: &Conn, why: Failure, report: &mut Report, live: &Live) {
    match conn.phase {
        Phase::Open if conn.going_away => {
            report.going_away += 1;
            report.going_away_unanswered += conn.tx.awaited() as u64;
            live.open.fetch_sub(1, Ordering::Relaxed);
            report.rec.open = report.rec.open.saturating_sub(1);
        }
        Phase::Open => {
            report.dropped += 1;
            report.rec.now.dropped += 1;
            report.lost += conn.tx.awaited() as u64;
            live.open.fetch_sub(1, Ordering::Relaxed);
            report.rec.open = report.rec.open.saturating_sub(1);
        }
        // A churned connection: closed by us, answered by the server's close
        // (the echoes it owed came before that, so none should be left).
        Phase::Closing => {
            report.churned += 1;
            report.rec.now.churned += 1;
            report.lost += conn.tx.awaited() as u64;
            live.open.fetch_sub(1, Ordering::Relaxed);
            report.rec.open = report.rec.open.saturating_sub(1);
        }
        _ if !conn.reported => report.fail(why, live),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A million of these are held at once: what each costs is kept in check.
    #[test]
    fn conn_size() {
        let sizes = [
            ("Conn", size_of::<Conn>()),
            ("Tcp", size_of::<Tcp>()),
            ("Decoder", size_of::<Decoder>()),
            ("Session", size_of::<Session>()),
            ("Tx", size_of::<Tx>()),
            ("Link", size_of::<Link>()),
            ("Phase", size_of::<Phase>()),
            ("StreamLink", size_of::<StreamLink>()),
        ];
        eprintln!("{sizes:?}");
        // 96 on x86_64 (Linux) in a release build (mio's debug builds add 8
        // bytes to a socket): the slab holds this much per connection, and
        // the rest of a held connection is an 8-byte ping wheel entry.
        let bound = if cfg!(debug_assertions) { 104 } else { 96 };
        assert!(size_of::<Conn>() <= bound, "{sizes:?}");
    }
}
