//! A burst of `ServerHandle::publish` from a thread outside the server: time per
//! publish until every message has reached a subscriber, and the wake-ups it cost
//! (write(2) calls of the process, from /proc/self/io: the handle's eventfd
//! writes; the io_uring backend's own sends are not write calls), and the
//! wakes counted by `ServerHandle::stats`.
//!
//! `cargo bench -p ringws-bench --bench publish -- [--backend io_uring|epoll] [--burst N] [--rounds R]`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringws::proto::handshake::UpgradeRequest;
use ringws::{BackendKind, Handler, Message, Server, Upgrade, WebSocket};

struct Subscriber;

impl Handler for Subscriber {
    type Data = ();
    fn on_upgrade(&mut self, _: &UpgradeRequest<'_>, _: std::net::SocketAddr) -> Upgrade<()> {
        Upgrade::accept(())
    }
    fn on_open(&mut self, ws: &mut WebSocket<'_, ()>) {
        ws.subscribe("burst");
    }
    fn on_message(&mut self, _: &mut WebSocket<'_, ()>, _: Message<'_>) {}
}

fn write_calls() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("syscw: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut backend = BackendKind::IoUring;
    let mut burst = 10_000usize;
    let mut rounds = 15usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--backend" => {
                backend = match args.next().as_deref() {
                    Some("epoll") => BackendKind::Epoll,
                    _ => BackendKind::IoUring,
                }
            }
            "--burst" => burst = args.next().and_then(|v| v.parse().ok()).unwrap_or(burst),
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(rounds),
            _ => {} // cargo bench passes --bench
        }
    }
    let handle = Server::builder()
        .bind("127.0.0.1:0")
        .workers(1)
        .backend(backend)
        // The raw reader below answers no ping.
        .ping_interval(None)
        .build()
        .expect("config")
        .start(|| Subscriber)
        .expect("start");
    let mut stream = TcpStream::connect(handle.local_addr()).expect("connect");
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .expect("upgrade");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("101");
        head.push(byte[0]);
    }
    // The subscription is made in on_open, before the 101 is flushed.
    let payload = [b'x'; 16];
    let frame_len = 2 + payload.len();
    let mut buf = vec![0u8; 1 << 16];
    let mut per_publish = Vec::new();
    let mut writes = Vec::new();
    let wakes_before = handle.stats().wakes;
    for _ in 0..rounds {
        let before = write_calls();
        let start = Instant::now();
        for _ in 0..burst {
            handle.publish("burst", Message::Binary(&payload));
        }
        let mut expected = burst * frame_len;
        while expected > 0 {
            let n = stream.read(&mut buf).expect("read");
            assert!(n > 0, "server closed");
            expected = expected.saturating_sub(n);
        }
        per_publish.push(start.elapsed().as_secs_f64() * 1e9 / burst as f64);
        writes.push(write_calls() - before);
    }
    per_publish.sort_by(f64::total_cmp);
    writes.sort_unstable();
    println!(
        "publish burst: backend {:?}, {burst} publishes x {rounds} rounds: median {:.0} ns per publish (min {:.0}, max {:.0}); write calls per burst median {} (min {}, max {})",
        handle.backend(),
        per_publish[rounds / 2],
        per_publish[0],
        per_publish[rounds - 1],
        writes[rounds / 2],
        writes[0],
        writes[rounds - 1],
    );
    println!(
        "wakes (ServerHandle::stats): {} for {} publishes",
        handle.stats().wakes - wakes_before,
        burst * rounds
    );
    handle.shutdown(Duration::from_secs(1));
}
