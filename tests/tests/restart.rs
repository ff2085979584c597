//! A restart that drops nothing: a second server takes over the port of a
//! running one (both listen with SO_REUSEPORT), the old one shuts down (stops
//! accepting, closes its WebSockets with 1001, exits), and clients connecting
//! and echoing all the while see no refused connection, no reset and no failed
//! handshake; every echo is either answered or its connection closed with 1001.
//!
//! Connections queued on the old listeners when they close move to the new
//! ones only with `net.ipv4.tcp_migrate_req=1` (Linux 5.14+); the test turns it
//! on where it may (it is per network namespace), and is skipped with the
//! reason where it cannot.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ringws::{BackendKind, Server, ServerHandle};
use ringws_tests::{Client, Echo, Msg};

const MIGRATE: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

fn enable_migration() -> Result<(), String> {
    match std::fs::read_to_string(MIGRATE) {
        Ok(v) if v.trim() == "1" => Ok(()),
        Ok(_) => std::fs::write(MIGRATE, "1")
            .map_err(|e| format!("net.ipv4.tcp_migrate_req is 0 and cannot be set: {e}")),
        Err(e) => Err(format!("this kernel has no net.ipv4.tcp_migrate_req: {e}")),
    }
}

fn serve(backend: BackendKind, addr: &str) -> ServerHandle {
    Server::builder()
        .bind(addr)
        .backend(backend)
        .workers(2)
        .ping_interval(None)
        .build()
        .unwrap()
        .start(Echo::new)
        .unwrap()
}

#[derive(Default)]
struct Tally {
    connected: AtomicU64,
    answered: AtomicU64,
    going_away: AtomicU64,
    failures: std::sync::Mutex<Vec<String>>,
}

/// Connects, echoes `rounds` messages, closes; again and again until `stop`.
/// A 1001 close ends a connection early (then it reconnects); anything else
/// unexpected is a failure.
fn load(addr: SocketAddr, rounds: usize, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut client = match Client::connect(addr) {
            Ok(client) => client,
            Err(e) => {
                tally.failures.lock().unwrap().push(format!("connect: {e}"));
                continue;
            }
        };
        tally.connected.fetch_add(1, Ordering::Relaxed);
        let mut closed = false;
        for _ in 0..rounds {
            seq += 1;
            let text = format!("m{seq}");
            if let Err(e) = client.send_text(&text) {
                tally.failures.lock().unwrap().push(format!("send: {e}"));
                closed = true;
                break;
            }
            match client.recv() {
                Ok(Msg::Text(t)) if t == text => {
                    tally.answered.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Msg::Close(Some((1001, _)))) => {
                    tally.going_away.fetch_add(1, Ordering::Relaxed);
                    let _ = client.close(1001, "");
                    closed = true;
                    break;
                }
                other => {
                    tally
                        .failures
                        .lock()
                        .unwrap()
                        .push(format!("echo: {other:?}"));
                    closed = true;
                    break;
                }
            }
        }
        if !closed {
            match client.close_handshake(1000, "") {
                Ok(_) => {}
                // The server's 1001 may cross our close: fine.
                Err(e) if ringws_tests::is_disconnect(&e) => {}
                Err(e) => tally.failures.lock().unwrap().push(format!("close: {e}")),
            }
        }
    }
}

fn takeover_drops_nothing(backend: BackendKind) {
    if let Err(why) = enable_migration() {
        eprintln!("SKIPPED takeover_drops_nothing: {why}");
        return;
    }
    let old = serve(backend, "127.0.0.1:0");
    let addr = old.local_addr();
    // Opened before the new server exists: it is the old one's for sure.
    let mut long = Client::connect(addr).unwrap();
    long.send_text("before").unwrap();
    long.expect_text("before");
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    // Short connections and long ones (that the shutdown must close with 1001).
    let loaders: Vec<_> = [1, 1, 5, 50]
        .into_iter()
        .map(|rounds| {
            let (stop, tally) = (stop.clone(), tally.clone());
            thread::spawn(move || load(addr, rounds, stop, tally))
        })
        .collect();
    let wait_for = |what: &str, n: u64| {
        let deadline = Instant::now() + ringws_tests::TIMEOUT;
        while tally.answered.load(Ordering::Relaxed) < n {
            assert!(Instant::now() < deadline, "no {what} within the timeout");
            thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for("traffic before the restart", 200);
    // The new process binds the same port, then the old one goes.
    let new = serve(backend, &addr.to_string());
    let before = tally.answered.load(Ordering::Relaxed);
    old.shutdown(Duration::from_secs(3));
    // The old server said goodbye with 1001 before it went.
    assert_eq!(long.recv().unwrap(), Msg::close(1001, "server shutdown"));
    wait_for("traffic after the restart", before + 500);
    stop.store(true, Ordering::Relaxed);
    for loader in loaders {
        loader.join().unwrap();
    }
    new.shutdown(Duration::from_secs(1));
    let failures = tally.failures.lock().unwrap();
    eprintln!(
        "{} connections, {} echoes answered, {} closed with 1001, {} failures",
        tally.connected.load(Ordering::Relaxed),
        tally.answered.load(Ordering::Relaxed),
        tally.going_away.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

ringws_tests::backend_tests! {
    takeover_drops_nothing,
}
