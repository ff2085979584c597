//! The io_uring backend's own cases: receive buffers exhausted, a 16 MiB message
//! through 4 KiB provided buffers, 10,000 connections sending at the same moment,
//! and backend selection (auto falling back to epoll, the environment override).

use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;

use ringws::BackendKind;
use ringws_tests::{Client, Echo, MIB, Msg, backend_available, raise_fd_limit, start};

/// Skips (loudly) where io_uring is unavailable; the other tests cover epoll.
fn uring() -> bool {
    match backend_available(BackendKind::IoUring) {
        Ok(()) => true,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            false
        }
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn sixteen_mib_message_through_4_kib_provided_buffers() {
    if !uring() {
        return;
    }
    let server = start(
        BackendKind::IoUring,
        |b| b.workers(1).uring_buffer_size(4096).uring_buffer_count(16),
        Echo::new,
    );
    let mut client = Client::connect(server.addr()).unwrap();
    let binary = pattern(16 * MIB, 7);
    client.send_binary(&binary).unwrap();
    assert!(
        client.recv().unwrap() == Msg::Binary(binary),
        "16 MiB binary echo differs"
    );
    let text = "ε".repeat(8 * MIB); // 16 MiB of two-byte characters
    client.send_text(&text).unwrap();
    assert!(
        client.recv().unwrap() == Msg::Text(text),
        "16 MiB text echo differs"
    );
}

#[test]
fn buffer_ring_exhaustion_loses_nothing() {
    if !uring() {
        return;
    }
    // Four 4 KiB buffers for 40 connections that all send 64 KiB at once: the
    // kernel runs out of buffers again and again; every byte must still arrive.
    let server = start(
        BackendKind::IoUring,
        |b| b.workers(1).uring_buffer_size(4096).uring_buffer_count(4),
        Echo::new,
    );
    let addr = server.addr();
    let barrier = Arc::new(Barrier::new(40));
    let threads: Vec<_> = (0..40u8)
        .map(|i| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut client = Client::connect(addr).unwrap();
                let payload = pattern(64 * 1024, i);
                barrier.wait();
                for _ in 0..4 {
                    client.send_binary(&payload).unwrap();
                }
                for round in 0..4 {
                    let got = client.recv().unwrap();
                    assert!(
                        got == Msg::Binary(payload.clone()),
                        "client {i} round {round}: echo differs"
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client failed");
    }
    // The backend reports each exhaustion through the seam, into the metrics.
    let exhaustions: u64 =
        ringws_tests::wait_for_metric(&server, "ringws_uring_buffer_exhaustions_total");
    assert!(exhaustions > 0, "no ENOBUFS counted");
}

#[test]
fn ten_thousand_connections_send_at_the_same_moment() {
    if !uring() {
        return;
    }
    const CONNECTIONS: usize = 10_000;
    const THREADS: usize = 10;
    // The server's sockets are direct descriptors: only the clients use fds here.
    if let Err(e) = raise_fd_limit(CONNECTIONS as u64 + 200) {
        eprintln!("SKIPPED ten_thousand_connections_send_at_the_same_moment: {e}");
        return;
    }
    let server = start(
        BackendKind::IoUring,
        |b| b.workers(2).backlog(16384),
        Echo::new,
    );
    let addr = server.addr();
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut clients: Vec<Client> = (0..CONNECTIONS / THREADS)
                    .map(|i| {
                        Client::connect(addr).unwrap_or_else(|e| panic!("connect {t}/{i}: {e}"))
                    })
                    .collect();
                // Everyone connected; now all send at once.
                barrier.wait();
                for (i, c) in clients.iter_mut().enumerate() {
                    c.send_text(&format!("{t}/{i}")).unwrap();
                }
                for (i, c) in clients.iter_mut().enumerate() {
                    c.expect_text(&format!("{t}/{i}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }
    assert_eq!(server.stats().accepted, CONNECTIONS as u64);
}

fn backend_choice(args: &[&str], env: Option<&str>) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_backend_choice"));
    command.args(args).env_remove(BackendKind::ENV);
    if let Some(value) = env {
        command.env(BackendKind::ENV, value);
    }
    let output = command.output().expect("backend_choice runs");
    assert!(output.status.success(), "backend_choice failed: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn auto_prefers_io_uring_where_it_works() {
    if !uring() {
        return;
    }
    let out = backend_choice(&[], None);
    assert!(out.contains("auto=IoUring"), "{out}");
    assert!(out.contains("io_uring=IoUring"), "{out}");
}

#[test]
fn auto_falls_back_to_epoll_when_io_uring_is_forbidden() {
    let out = backend_choice(&["--forbid-io-uring"], None);
    assert!(out.contains("auto=Epoll"), "{out}");
    // A forced io_uring backend fails with a clear error instead.
    let forced = out.lines().find(|l| l.starts_with("io_uring=")).unwrap();
    assert!(
        forced.contains("error: backend unavailable: io_uring_setup failed"),
        "{forced}"
    );
}

#[test]
fn environment_variable_overrides_the_backend() {
    let out = backend_choice(&[], Some("epoll"));
    assert!(out.contains("auto=Epoll"), "{out}");
    assert!(out.contains("io_uring=Epoll"), "{out}");
    if uring() {
        let out = backend_choice(&[], Some("io_uring"));
        assert!(out.contains("auto=IoUring"), "{out}");
    }
}
