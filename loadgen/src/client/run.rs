//! The run loop of one client thread: the ramp, readiness events, scheduled
//! sends, timeouts, churn, the measured window, the drain and the end.

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use ringws::proto::Role;
use ringws::proto::close::CloseCode;
use ringws::proto::frame::OpCode;
use ringws::proto::session::Endpoint;

use super::conn::{
    Conn, Link, Phase, RxScratch, Schedule, Sock, Tcp, close_conn, finish_connect, flush,
    open_socket, read_conn, send_now,
};
use super::h2conn::{Ctx, Links};
use super::workload::send_echo;
use super::{
    BROADCAST_MARK, BROADCAST_MIN, Failure, LEVEL, Live, MAX_MESSAGE, MEASURED_PROBE, Plan, Report,
    Workload, classify,
};

const READ_BUF: usize = 64 * 1024;

/// How long the answers still in flight at the end may take.
const DRAIN: Duration = Duration::from_secs(2);

/// A ramping thread sleeps until this many connections are due to open (or
/// [`RAMP_WAIT_MAX`] has passed), and opens them together. A million's ramp
/// is 52 processes at about 150 connections a second each: woken for every
/// connection (or every 5 ms, as before), they spent a timer, a wake-up and a
/// context switch on each, and the connections' handshakes came back one
/// wake-up each rather than together.
const RAMP_BATCH: usize = 4;
const RAMP_WAIT_MAX: Duration = Duration::from_millis(20);

/// How long a thread ramping at `rate` connections a second, `elapsed` into
/// its ramp with `started` opened, sleeps before opening more: until
/// [`RAMP_BATCH`] more are due (the ramp's `due` count reaches `started +
/// RAMP_BATCH`), at most [`RAMP_WAIT_MAX`].
fn ramp_wait(started: usize, rate: f64, elapsed: Duration) -> Duration {
    let batch_due = Duration::from_secs_f64((started + RAMP_BATCH - 1) as f64 / rate);
    batch_due.saturating_sub(elapsed).min(RAMP_WAIT_MAX)
}

/// Runs one thread's plan to its end.
pub fn run(plan: Plan, live: Arc<Live>) -> Report {
    let mut report = Report::new();
    report.rec.stream_to(plan.seconds.clone());
    let (wall, cpu) = (Instant::now(), thread_cpu());
    if let Err(e) = run_inner(&plan, &live, &mut report) {
        eprintln!("loadgen: client thread failed: {e}");
    }
    report.self_load.busiest_thread =
        (thread_cpu() - cpu).as_secs_f64() / wall.elapsed().as_secs_f64().max(1e-9);
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
    // Inflation and the decoder of every connection between reads.
    let mut scratch = RxScratch::default();
    // The Sec-WebSocket-Key nonces: RFC 6455 wants each random. A fast,
    // non-cryptographic generator (fastrand's wyrand) seeded once per thread
    // from the OS is random enough for a load generator (the key proves
    // nothing here; it only must not repeat or be guessable by the server
    // in advance), at no system call per connection. Mask keys stay the
    // endpoint's, from the OS 64 at a time.
    let seed = getrandom::u64().map_err(|e| io::Error::other(format!("OS random source: {e}")))?;
    let mut keys = fastrand::Rng::with_seed(seed);
    // Connect + upgrade and closing deadlines, oldest first.
    let mut deadlines = Deadlines::default();
    // Scheduled sends (open loop) and pings: (due, key).
    let every = match plan.workload {
        Workload::Ping { every } => Some(every),
        _ => None,
    };
    // The wheel's ticks count from the run's epoch, which `--procs` children
    // share with their parent: every process sends its pings of a tick at the
    // same instant, so a server worker finds several of them in one wake-up
    // instead of waking for each.
    let mut schedule = Schedule::new(every, plan.epoch);
    // The pings due now (reused), and one ping's bytes.
    let mut due_pings: Vec<(u32, u32)> = Vec::new();
    let mut ping_frame: Vec<u8> = Vec::with_capacity(16);
    // Connections open at the plan's rate (else all at once).
    let paced = plan.ramp_rate.is_finite() && plan.ramp_rate > 0.0;
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
    // --http2: the connections carrying the WebSockets (a mio token is one
    // of them then).
    let mut links = plan.http2.map(|per_conn| Links::new(plan, per_conn));
    // What handling an HTTP/2 connection needs of this thread.
    macro_rules! ctx {
        ($now:expr) => {
            Ctx {
                plan,
                report: &mut *report,
                live,
                endpoint: &mut endpoint,
                scratch: &mut scratch,
                schedule: &mut schedule,
                poll: &poll,
                now: $now,
            }
        };
    }

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
                        && c.tx.awaited() == 0
                        && !c.ping_outstanding
                        && (!broadcast
                            || (final_seq != u64::MAX
                                && c.heard.as_ref().is_some_and(|h| h.last >= final_seq)))
                })
            };
            if draining.is_some_and(|d| now >= d || settled()) {
                break;
            }
        }
        // Ramp: start the connections that are due.
        let due = if paced {
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
            // Opened in the drain: it holds, sends nothing.
            let stopped = draining.is_some();
            next_serial = next_serial.wrapping_add(1);
            if let Some(links) = links.as_mut() {
                let key = conns.vacant_key();
                let mut ctx = ctx!(now);
                match links.add(started - 1, key, source, &mut ctx) {
                    Ok((node, link)) => {
                        let Link::Stream(s) = &link else {
                            unreachable!("a stream")
                        };
                        let on = s.conn;
                        conns.insert(Conn::new(next_serial, key, node, stopped, link, plan.epoch));
                        deadlines.push(now + plan.connect_timeout, key, next_serial, false);
                        links.start_waiting(on, &mut conns);
                    }
                    Err(why) => report.fail(why, live),
                }
                continue;
            }
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
                    let link = Link::Tcp(Tcp {
                        sock: Sock::new(stream, tls),
                        upgrade: None,
                    });
                    entry.insert(Conn::new(next_serial, key, node, stopped, link, plan.epoch));
                    deadlines.push(now + plan.connect_timeout, key, next_serial, false);
                }
                Err(e) => report.fail(classify(&e), live),
            }
        }

        let mut timeout = Duration::from_millis(50);
        if let Some(at) = schedule.next_due() {
            timeout = timeout.min(at.saturating_duration_since(now));
        }
        if started < plan.connections && paced {
            timeout = timeout.min(ramp_wait(started, plan.ramp_rate, now - ramp_start));
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
            if let Some(links) = links.as_mut() {
                let mut ctx = ctx!(now);
                links.on_event(key, event, &mut conns, &mut buf, &mut ctx);
                continue;
            }
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            let mut ok = true;
            if conn.phase == Phase::Connecting && (event.is_writable() || event.is_error()) {
                let target = &plan.targets[conn.node as usize];
                ok = finish_connect(conn, target, event.is_error(), &mut keys, report, live);
            } else if event.is_writable() {
                ok = flush(conn).is_ok();
            }
            if ok && (event.is_readable() || event.is_read_closed()) {
                ok = read_conn(
                    key,
                    conn,
                    event.is_read_closed() || event.is_error(),
                    &mut buf,
                    &mut endpoint,
                    &mut scratch,
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
        // Scheduled work: open-loop sends, publishes.
        while let Some(&Reverse((at, key, serial))) = schedule.heap.peek() {
            if at > now {
                break;
            }
            schedule.heap.pop();
            report.self_load.sent(now.saturating_duration_since(at));
            let key = key as usize;
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
                    schedule.heap.push(Reverse((
                        at + Duration::from_secs_f64(1.0 / rate),
                        key as u32,
                        serial,
                    )));
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
                        .write_to(conn.tx.out());
                    if report.measuring {
                        report.published += 1;
                    }
                    schedule.heap.push(Reverse((
                        at + Duration::from_secs_f64(1.0 / rate),
                        key as u32,
                        serial,
                    )));
                }
                _ => {}
            }
            if let Some(links) = links.as_mut() {
                links.send(key, &mut conns, &mut ctx!(now));
            } else if flush(conn).is_err() {
                close_conn(&mut conns, key, &poll, report, live);
            }
        }
        // Pings: those of the ticks due, together.
        // (The wheel is taken out meanwhile: an HTTP/2 send borrows the schedule.)
        if let (Some(mut wheel), Some(every)) = (schedule.pings.take(), every) {
            if let Some(due) = wheel.take_due(now, &mut due_pings) {
                let lag = now.saturating_duration_since(due);
                for _ in 0..due_pings.len() {
                    report.self_load.sent(lag);
                }
            }
            let stamp = ((now - plan.epoch).as_micros() as u64).to_be_bytes();
            wheel.reserve(now + every, due_pings.len());
            for &(key, serial) in &due_pings {
                let key = key as usize;
                let Some(conn) = conns.get_mut(key) else {
                    continue;
                };
                if conn.phase != Phase::Open || conn.serial != serial {
                    continue;
                }
                if conn.ping_outstanding {
                    report.missed_pongs += 1;
                    report.rec.now.missed += 1;
                }
                ping_frame.clear();
                if let Some(ping) = conn.session.control(&mut endpoint, OpCode::Ping, &stamp) {
                    ping.write_to(&mut ping_frame);
                }
                conn.ping_outstanding = true;
                report.pings += 1;
                report.rec.now.pings += 1;
                wheel.push(now + every, key as u32, serial);
                if let Some(links) = links.as_mut() {
                    conn.tx.out().extend_from_slice(&ping_frame);
                    links.send(key, &mut conns, &mut ctx!(now));
                } else if send_now(conn, &ping_frame).is_err() {
                    close_conn(&mut conns, key, &poll, report, live);
                }
            }
            schedule.pings = Some(wheel);
        }
        // Every 100 ms: connect, upgrade and closing timeouts, churn, the end
        // of the ramp. Nothing here visits every connection while they are
        // held: the deadlines are a queue in time order.
        if now - last_sample >= Duration::from_millis(100) {
            last_sample = now;
            let expired = deadlines.expired(now, &conns);
            for key in expired {
                if let Some(links) = links.as_mut() {
                    links.expire(key, &mut conns, &mut ctx!(now));
                    continue;
                }
                let Some(mut conn) = conns.try_remove(key) else {
                    continue;
                };
                if let Link::Tcp(tcp) = &mut conn.link {
                    let _ = poll.registry().deregister(&mut tcp.sock.stream);
                }
                if conn.phase == Phase::Closing {
                    // The server never answered our close: the connection is lost.
                    report.dropped += 1;
                    report.rec.now.dropped += 1;
                    report.lost += conn.tx.awaited() as u64;
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
                        close.write_to(conn.tx.out());
                    }
                    conn.phase = Phase::Closing;
                    deadlines.push(now + plan.connect_timeout, key, conn.serial, true);
                    conn.tx.stopped = true;
                    reopen += 1;
                    if flush(conn).is_err() {
                        // Broken before the close went out: lost, not churned.
                        conn.phase = Phase::Open;
                        close_conn(&mut conns, key, &poll, report, live);
                    }
                }
            }
            // Once all are started, until all are open: a scan, but only
            // for the last handshakes of the ramp.
            if ramp_done.is_none()
                && started >= plan.connections
                && conns.iter().all(|(_, c)| c.phase == Phase::Open)
            {
                ramp_done = Some(now);
                report.measuring = true;
                // What the handshakes used (their requests, answers and keys,
                // all freed by now) goes back to the system rather than
                // staying resident for the whole hold.
                // SAFETY: malloc_trim only returns free heap pages.
                unsafe { libc::malloc_trim(0) };
            }
        }
    }

    // The end: count the living, close everyone politely.
    let broadcast = matches!(plan.workload, Workload::Broadcast { .. });
    for (_, conn) in conns.iter_mut() {
        if conn.phase == Phase::Closing {
            // Churned, its close not answered by the end.
            report.lost += conn.tx.awaited() as u64;
            continue;
        }
        if conn.phase != Phase::Open {
            continue;
        }
        if broadcast {
            let f = &mut report.fanout;
            match conn.heard.as_deref() {
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
        report.lost += conn.tx.awaited() as u64;
        if !conn.ping_outstanding {
            report.live_at_end += 1;
        }
        if let Some(close) = conn.session.close(&mut endpoint, CloseCode::NORMAL, "") {
            close.write_to(conn.tx.out());
        }
        let _ = flush(conn);
    }
    if let Some(links) = links.as_mut() {
        links.flush_all(&mut conns);
    }
    Ok(())
}

/// When connections time out: connect + upgrade (`closing` false) or the
/// server's answer to our close (`closing` true). Every deadline is the same
/// timeout after the moment it is pushed, so pushing keeps the queue in time
/// order and the expired ones are at its front.
#[derive(Default)]
struct Deadlines {
    queue: VecDeque<Deadline>,
}

struct Deadline {
    at: Instant,
    key: u32,
    serial: u32,
    closing: bool,
}

impl Deadlines {
    fn push(&mut self, at: Instant, key: usize, serial: u32, closing: bool) {
        self.queue.push_back(Deadline {
            at,
            key: key as u32,
            serial,
            closing,
        });
    }

    /// The connections whose deadline has passed and that are still where
    /// it applies (opening, or closing); the others' deadlines are dropped.
    ///
    /// A deadline that no longer applies (its connection opened, or is
    /// gone) never applies again, so it is dropped from the front before its
    /// time too: a ramp's queue holds the connections still opening (and
    /// those behind the oldest of them), not the ramp's last connect timeout
    /// of connections, whose memory would count as held ones'.
    fn expired(&mut self, now: Instant, conns: &slab::Slab<Conn>) -> Vec<usize> {
        let mut expired = Vec::new();
        while let Some(d) = self.queue.front() {
            let key = d.key as usize;
            let applies = conns.get(key).is_some_and(|c| {
                c.serial == d.serial
                    && match c.phase {
                        Phase::Connecting | Phase::Upgrading => !d.closing,
                        Phase::Closing => d.closing,
                        Phase::Open => false,
                    }
            });
            if applies {
                if d.at >= now {
                    break;
                }
                expired.push(key);
            }
            self.queue.pop_front();
        }
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            // Held connections keep no deadline memory.
            self.queue = VecDeque::new();
        } else if self.queue.len() * 4 < self.queue.capacity() {
            // Nor what a ramp's peak left.
            self.queue.shrink_to(self.queue.len() * 2);
        }
        expired
    }
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ramp_sleeps_until_a_batch_is_due_and_no_longer_than_the_cap() {
        let ms = Duration::from_millis;
        // 100 a second, the first opened at the start: the 5th is due at
        // 40 ms, past the cap.
        assert_eq!(ramp_wait(1, 100.0, ms(0)), RAMP_WAIT_MAX);
        // 1,000 a second, 4 opened at the start: the 8th is due at 7 ms.
        assert_eq!(ramp_wait(4, 1000.0, ms(0)), ms(7));
        assert_eq!(ramp_wait(4, 1000.0, ms(5)), ms(2));
        // Behind: no sleep at all.
        assert_eq!(ramp_wait(4, 1000.0, ms(30)), Duration::ZERO);
        // 150 a second (a million's process), 151 opened at 1 s: the 155th
        // is due 26.7 ms later, capped at 20.
        assert_eq!(ramp_wait(151, 150.0, ms(1000)), RAMP_WAIT_MAX);
    }
}
