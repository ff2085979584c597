//! A peer that never reads and floods control traffic (pings; over TLS also
//! KeyUpdate requests) must not grow the server's memory: pongs count against
//! the backpressure limit (past it the connection closes with 1008), and one
//! KeyUpdate answers any number of requests. For 10 s (after 2 s of warm-up),
//! on both backends and both transports at once, the process's resident memory
//! and its live heap (a counting allocator) each grow by less than 1 MiB, and
//! a bystander on each server still echoes.
//!
//! Its own test binary without the test harness (`harness = false`): the
//! process's memory is the measurement, so no other test may run beside it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use ringws::proto::close::CloseCode;
use ringws::proto::frame::OpCode;
use ringws::proto::handshake::UpgradeRequest;
use ringws::{BackendKind, CloseCause, ConnId, Handler, Message, Upgrade, WebSocket};
use ringws_tests::{
    Client, TestServer, Transport, backend_available, masked_frame, start, with_transport,
};

/// Counts the bytes the process holds on its heap, then defers to the system
/// allocator.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments; the
// counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as above; `ptr` and `layout` come from this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// How long the hostile clients run before the measurement starts: every
/// receive buffer and queue has reached its size by then.
const WARM: Duration = Duration::from_secs(2);
/// How long they are held while the memory is watched.
const HOLD: Duration = Duration::from_secs(10);
/// The bound on the growth over that time.
const MAX_GROWTH: i64 = 1 << 20;
/// The servers' backpressure limit.
const LIMIT: usize = 64 << 10;

fn rss() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: i64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib << 10
}

/// An echo server that reports only opens and closes (one event per ping
/// would make the test's own queue grow).
struct Quiet(Sender<(ConnId, Option<CloseCause>)>);

impl Handler for Quiet {
    type Data = ();

    fn on_upgrade(&mut self, _: &UpgradeRequest<'_>, _: SocketAddr) -> Upgrade<()> {
        Upgrade::accept(())
    }

    fn on_open(&mut self, ws: &mut WebSocket<'_, ()>) {
        let _ = self.0.send((ws.id(), None));
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, message: Message<'_>) {
        ws.send(message);
    }

    fn on_close(&mut self, id: ConnId, _: (), _: CloseCode, _: &str, cause: CloseCause) {
        let _ = self.0.send((id, Some(cause)));
    }
}

/// Pings as fast as the socket takes them, never reading; over TLS a
/// KeyUpdate request before each burst. Stops at `until` or when the server
/// ends the connection. What the socket did not take waits (the client's
/// memory stays one burst).
fn flood(client: Client, tls: bool, until: Instant) {
    let burst: Vec<u8> = (0..256)
        .flat_map(|i: u32| masked_frame(true, OpCode::Ping, &i.to_be_bytes()))
        .collect();
    let stream = client.stream();
    let mut tcp = stream.tcp();
    tcp.set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut pending: Vec<u8> = Vec::new();
    while Instant::now() < until {
        if pending.is_empty() {
            pending = if tls {
                if stream.request_key_update().is_err() {
                    break;
                }
                stream.seal(&burst)
            } else {
                burst.clone()
            };
        }
        match tcp.write(&pending) {
            Ok(0) => break,
            Ok(n) => {
                pending.drain(..n);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
}

struct Case {
    what: String,
    server: TestServer,
    events: Receiver<(ConnId, Option<CloseCause>)>,
}

impl Case {
    /// The next connection opened.
    fn opened(&self) -> ConnId {
        match self.events.recv_timeout(Duration::from_secs(10)) {
            Ok((id, None)) => id,
            other => panic!("{}: expected an open, got {other:?}", self.what),
        }
    }

    /// Waits for the close of `id`.
    fn closed(&self, id: ConnId, within: Duration) -> CloseCause {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok((closed, Some(cause))) if closed == id => return cause,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("{}: {id} was not closed within {within:?}", self.what)
    }
}

fn main() {
    let only = std::env::var("HOSTILE_ONLY").unwrap_or_default();
    let mut cases = Vec::new();
    for backend in [BackendKind::Epoll, BackendKind::IoUring] {
        if let Err(why) = backend_available(backend) {
            eprintln!("SKIPPED {backend:?}: {why}");
            continue;
        }
        for transport in [Transport::Plain, Transport::Tls] {
            let what = format!("{backend:?} {transport:?}");
            if !what.contains(&only) {
                continue;
            }
            let (tx, events) = mpsc::channel();
            let server = with_transport(transport, || {
                start(
                    backend,
                    |b| {
                        // Small provided buffers: all of them are in use (and
                        // resident) within the warm-up.
                        b.max_backpressure(LIMIT)
                            .ping_interval(None)
                            .close_timeout(Duration::from_secs(30))
                            .uring_buffer_size(64 << 10)
                            .uring_buffer_count(8)
                    },
                    move || Quiet(tx.clone()),
                )
            });
            cases.push(Case {
                what,
                server,
                events,
            });
        }
    }
    // Warm up: each server has echoed, and every thread has run.
    for case in &cases {
        let mut client = Client::connect(case.server.addr()).unwrap();
        let id = case.opened();
        client.send_text("warm").unwrap();
        client.expect_text("warm");
        client.close(1000, "").unwrap();
        case.closed(id, Duration::from_secs(10));
    }
    let start = Instant::now();
    let until = start + WARM + HOLD;
    let mut hostile = Vec::new();
    let mut flooders = Vec::new();
    for case in &cases {
        let client = Client::connect(case.server.addr()).unwrap();
        hostile.push(case.opened());
        let tls = case.what.ends_with("Tls");
        flooders.push(thread::spawn(move || flood(client, tls, until)));
    }
    thread::sleep(WARM.saturating_sub(start.elapsed()));
    let (rss_before, heap_before) = (rss(), LIVE.load(Ordering::Relaxed));
    let (mut rss_peak, mut heap_peak) = (rss_before, heap_before);
    while Instant::now() < until {
        rss_peak = rss_peak.max(rss());
        heap_peak = heap_peak.max(LIVE.load(Ordering::Relaxed));
        thread::sleep(Duration::from_millis(20));
    }
    for flooder in flooders {
        flooder.join().unwrap();
    }
    let (rss_growth, heap_growth) = (rss_peak - rss_before, heap_peak - heap_before);
    eprintln!(
        "hostile control, {} servers, {HOLD:?} after {WARM:?}: RSS {} KiB, peak {} KiB (+{} KiB); \
         heap {} KiB, peak {} KiB (+{} KiB)",
        cases.len(),
        rss_before >> 10,
        rss_peak >> 10,
        rss_growth >> 10,
        heap_before >> 10,
        heap_peak >> 10,
        heap_growth >> 10,
    );
    for (case, id) in cases.iter().zip(hostile) {
        // The flooder was closed for not reading its pongs (1006 to on_close:
        // it never answered the close frame either).
        let cause = case.closed(id, Duration::from_secs(60));
        assert_eq!(cause, CloseCause::Backpressure, "{}", case.what);
        // Nobody else was harmed.
        let mut bystander = Client::connect(case.server.addr()).unwrap();
        bystander.send_text("unharmed").unwrap();
        bystander.expect_text("unharmed");
        eprintln!(
            "{}: the flooder was closed for backpressure; a bystander echoes",
            case.what
        );
    }
    assert!(
        heap_growth < MAX_GROWTH,
        "the heap grew by {} KiB under hostile control traffic",
        heap_growth >> 10
    );
    assert!(
        rss_growth < MAX_GROWTH,
        "RSS grew by {} KiB under hostile control traffic",
        rss_growth >> 10
    );
    eprintln!("hostile_control: passed");
}
