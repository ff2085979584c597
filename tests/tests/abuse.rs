//! Hostile peers: each is cut off with the right answer, and a well-behaved
//! connection opened before the abuse, on the same worker, keeps working.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use ringws::proto::error::ProtocolError;
use ringws::proto::frame::OpCode;
use ringws::{BackendKind, Builder, CloseCause};
use ringws_tests::{
    Client, Echo, Events, HttpReply, Msg, TestServer, events, is_disconnect, masked_frame,
    raw_http, read_to_eof, start, tcp, unmasked_frame,
};

const SOON: Duration = Duration::from_secs(5);

/// A server with one worker (abuser and bystander share its loop), a bystander
/// connection that already echoed once, and the event channel.
fn setup(
    backend: BackendKind,
    configure: impl FnOnce(Builder) -> Builder,
) -> (TestServer, Client, Events) {
    let (tx, events) = events();
    // No auto-ping: the bystander idles through each attack, which on a loaded
    // machine outlasts a ping interval (its ping, or the abort of a bystander
    // that did not answer, is lifecycle.rs's business, not abuse's).
    let server = start(
        backend,
        |b| configure(b.workers(1).ping_interval(None)),
        move || Echo::reporting(tx.clone()).with_commands(),
    );
    let mut bystander = Client::connect(server.addr()).unwrap();
    events.open();
    bystander.send_text("before").unwrap();
    bystander.expect_text("before");
    (server, bystander, events)
}

/// The bystander still echoes, and a new connection still works.
#[track_caller]
fn unharmed(addr: SocketAddr, bystander: &mut Client) {
    bystander.send_text("after").unwrap();
    bystander.expect_text("after");
    bystander.send_binary(&[7; 1000]).unwrap();
    assert_eq!(bystander.msg(), Msg::Binary(vec![7; 1000]));
    let mut fresh = Client::connect(addr).unwrap();
    fresh.send_text("fresh").unwrap();
    fresh.expect_text("fresh");
}

fn slowloris_handshake_is_cut_off(backend: BackendKind) {
    let (server, mut bystander, _events) =
        setup(backend, |b| b.handshake_timeout(Duration::from_millis(300)));
    let stream = tcp(server.addr()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        thread::spawn(move || {
            let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ";
            for byte in head.iter().chain(std::iter::repeat(&b'a')) {
                if stop.load(Ordering::Relaxed)
                    || writer.write_all(std::slice::from_ref(byte)).is_err()
                {
                    return;
                }
                // The pace of the attack, not a synchronization.
                thread::sleep(Duration::from_millis(10));
            }
        })
    };
    // Meanwhile, the bystander is served.
    bystander.send_text("during").unwrap();
    bystander.expect_text("during");
    let started = Instant::now();
    stream.set_read_timeout(Some(SOON)).unwrap();
    match read_to_eof(&stream) {
        Ok(bytes) => assert!(
            bytes.is_empty(),
            "unexpected answer {:?}",
            String::from_utf8_lossy(&bytes)
        ),
        Err(e) => assert!(
            is_disconnect(&e),
            "the trickler was not cut off within {SOON:?}: {e}"
        ),
    }
    assert!(started.elapsed() < SOON);
    stop.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    unharmed(server.addr(), &mut bystander);
}

fn oversized_headers_are_refused(backend: BackendKind) {
    let (server, mut bystander, _events) = setup(backend, |b| b);
    // One huge header line, a complete request.
    let mut request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Huge: ".to_vec();
    request.extend(std::iter::repeat_n(b'h', 100_000));
    request.extend_from_slice(b"\r\n\r\n");
    let reply = HttpReply::parse(&raw_http(server.addr(), &request).unwrap());
    assert_eq!(reply.status, 431);
    // Endless headers that never finish the head.
    let mut request = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..50_000 {
        request.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    let reply = HttpReply::parse(&raw_http(server.addr(), &request).unwrap());
    assert_eq!(reply.status, 431);
    unharmed(server.addr(), &mut bystander);
}

fn huge_frame_lengths_are_refused(backend: BackendKind) {
    let (server, mut bystander, events) = setup(backend, |b| b);
    // 2^63: the top bit of a 64-bit length must be 0 (1002); 2^63 - 1: too big (1009).
    let cases = [
        (1u64 << 63, 1002, ProtocolError::InvalidLength),
        ((1u64 << 63) - 1, 1009, ProtocolError::FrameTooBig),
        (u64::MAX, 1002, ProtocolError::InvalidLength),
    ];
    for (len, code, error) in cases {
        let mut abuser = Client::connect(server.addr()).unwrap();
        let id = events.open();
        let mut header = vec![0x82, 0xff];
        header.extend_from_slice(&len.to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        header.extend_from_slice(&[0; 1000]);
        abuser.send_raw(&header).unwrap();
        abuser.expect_close(code);
        abuser.expect_eof().unwrap();
        let (closed, _, cause) = events.close_of(id);
        assert_eq!(
            (closed, cause),
            (code, CloseCause::Protocol(error)),
            "length {len}"
        );
    }
    unharmed(server.addr(), &mut bystander);
}

fn unmasked_frame_is_refused(backend: BackendKind) {
    let (server, mut bystander, events) = setup(backend, |b| b);
    let mut abuser = Client::connect(server.addr()).unwrap();
    let id = events.open();
    abuser
        .send_raw(&unmasked_frame(true, OpCode::Binary, &[0; 5000]))
        .unwrap();
    abuser.expect_close(1002);
    abuser.expect_eof().unwrap();
    let (_, _, cause) = events.close_of(id);
    assert_eq!(cause, CloseCause::Protocol(ProtocolError::UnmaskedFrame));
    unharmed(server.addr(), &mut bystander);
}

fn reset_in_the_middle_of_a_frame(backend: BackendKind) {
    let (server, mut bystander, events) = setup(backend, |b| b);
    let mut abuser = Client::connect(server.addr()).unwrap();
    let id = events.open();
    let frame = masked_frame(true, OpCode::Binary, &[3; 100_000]);
    abuser.send_raw(&frame[..1014]).unwrap();
    abuser.reset();
    let (code, _, cause) = events.close_of(id);
    assert_eq!((code, cause), (1006, CloseCause::Reset));
    unharmed(server.addr(), &mut bystander);

    // A reset in the middle of the handshake too.
    let stream = tcp(server.addr()).unwrap();
    (&stream)
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgr")
        .unwrap();
    ringws_tests::reset(stream);
    unharmed(server.addr(), &mut bystander);
}

/// The same, with the partial frame and the RST reaching the socket together,
/// while the worker is busy: it must still notice the reset.
fn reset_right_behind_a_partial_frame(backend: BackendKind) {
    let (server, _bystander, events) = setup(backend, |b| b);
    let mut abuser = Client::connect(server.addr()).unwrap();
    let id = events.open();
    let mut staller = Client::connect(server.addr()).unwrap();
    events.open();
    staller.send_text("!stall 300").unwrap();
    events.stalled();
    let frame = masked_frame(true, OpCode::Binary, &[3; 100_000]);
    abuser.send_raw(&frame[..1014]).unwrap();
    abuser.reset();
    let (code, _, cause) = events.close_of(id);
    assert_eq!((code, cause), (1006, CloseCause::Reset));
}

fn fragment_flood_hits_the_message_limit(backend: BackendKind) {
    let (server, mut bystander, events) = setup(backend, |b| b.max_message_size(1024));
    let mut abuser = Client::connect(server.addr()).unwrap();
    let id = events.open();
    let mut flood = masked_frame(false, OpCode::Text, b"a");
    for i in 1..10_000 {
        flood.extend(masked_frame(i == 9_999, OpCode::Continuation, b"a"));
    }
    // The server may stop reading the flood once it has closed; that is fine.
    let _ = abuser.send_raw(&flood);
    abuser.expect_close(1009);
    let (_, _, cause) = events.close_of(id);
    assert_eq!(cause, CloseCause::Protocol(ProtocolError::MessageTooBig));
    unharmed(server.addr(), &mut bystander);
}

fn many_silent_connections_do_not_block_others(backend: BackendKind) {
    let (server, mut bystander, _events) =
        setup(backend, |b| b.handshake_timeout(Duration::from_millis(300)));
    let silent: Vec<_> = (0..200).map(|_| tcp(server.addr()).unwrap()).collect();
    unharmed(server.addr(), &mut bystander);
    for stream in &silent {
        stream.set_read_timeout(Some(SOON)).unwrap();
        match read_to_eof(stream) {
            Ok(bytes) => assert!(bytes.is_empty()),
            Err(e) => assert!(is_disconnect(&e), "a silent connection was not closed: {e}"),
        }
    }
    unharmed(server.addr(), &mut bystander);
}

fn connections_past_the_worker_limit_are_turned_away(backend: BackendKind) {
    // The bystander is one of the two connections allowed.
    let (server, mut bystander, events) = setup(backend, |b| b.max_connections_per_worker(2));
    let mut second = Client::connect(server.addr()).unwrap();
    let second_id = events.open();
    for _ in 0..5 {
        let refused = Client::connect(server.addr());
        assert!(refused.is_err(), "a connection past the limit was accepted");
    }
    second.close_handshake(1000, "").unwrap();
    events.close_of(second_id);
    drop(second);
    ringws_tests::wait_until("a slot to free up", || server.stats().connections == 1);
    unharmed(server.addr(), &mut bystander);
}

/// A worker serves as many connections as its limit says, every one of them
/// (on io_uring each is a slot of the ring's fixed-file table, which is sized
/// for the limit; none of it may be kept back for a hand-over that is not
/// configured), and turns the next one away.
fn a_worker_serves_its_whole_connection_limit(backend: BackendKind) {
    const LIMIT: usize = 200;
    let (server, mut bystander, _events) = setup(backend, |b| b.max_connections_per_worker(LIMIT));
    let mut clients: Vec<Client> = (1..LIMIT)
        .map(|i| {
            Client::connect(server.addr())
                .unwrap_or_else(|e| panic!("connection {} of {LIMIT} refused: {e}", i + 1))
        })
        .collect();
    for (i, client) in clients.iter_mut().enumerate() {
        let text = format!("client {i}");
        client.send_text(&text).unwrap();
        client.expect_text(&text);
    }
    assert_eq!(server.stats().connections, LIMIT as u64);
    assert!(
        Client::connect(server.addr()).is_err(),
        "a connection past the limit was accepted"
    );
    bystander.send_text("still here").unwrap();
    bystander.expect_text("still here");
}

/// Eight threads churn connections that break the protocol and half-close at
/// once (the server answers with a close frame, shuts its write side and closes
/// the socket). Every new connection must upgrade normally: nothing done to a
/// closed connection may reach the one that replaces it.
fn churn_of_failing_connections_never_hits_new_ones(backend: BackendKind) {
    const THREADS: usize = 8;
    const ROUNDS: usize = 1000;
    let (server, mut bystander, _events) =
        setup(backend, |b| b.close_timeout(Duration::from_millis(500)));
    let addr = server.addr();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            thread::spawn(move || {
                let mut refused = Vec::new();
                for round in 0..ROUNDS {
                    let mut abuser = match Client::connect(addr) {
                        Ok(client) => client,
                        Err(e) => {
                            refused.push(format!("round {round}: {e}"));
                            continue;
                        }
                    };
                    abuser
                        .send_raw(&unmasked_frame(true, OpCode::Text, b"x"))
                        .unwrap();
                    abuser.stream().shutdown(std::net::Shutdown::Write).unwrap();
                    // A close 1002 then EOF; whether the close frame reaches a
                    // half-closed peer is close_reply_reaches_a_half_closed_peer's
                    // business.
                    loop {
                        match abuser.recv() {
                            Ok(Msg::Close(Some((1002, _)))) => {}
                            Ok(other) => {
                                panic!("round {round}: expected close 1002, got {other:?}")
                            }
                            Err(e) if is_disconnect(&e) => break,
                            Err(e) => panic!("round {round}: {e}"),
                        }
                    }
                }
                refused
            })
        })
        .collect();
    let refused: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("a churn thread failed"))
        .collect();
    assert!(
        refused.is_empty(),
        "{} of {} new connections were cut before their 101, e.g. {}",
        refused.len(),
        THREADS * ROUNDS,
        refused[0]
    );
    unharmed(server.addr(), &mut bystander);
}

/// Random bytes after the handshake: the server never breaks, and the
/// bystander on the same worker keeps being served.
fn random_garbage_after_the_handshake(backend: BackendKind) {
    let (server, mut bystander, _events) =
        setup(backend, |b| b.close_timeout(Duration::from_millis(500)));
    let addr = server.addr();
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(garbage in proptest::collection::vec(any::<u8>(), 1..2048))| {
        let mut abuser = Client::connect(addr).unwrap();
        abuser.send_raw(&garbage).unwrap();
        // Half-close: the server sees the end of the stream whatever it parsed.
        abuser.stream().shutdown(std::net::Shutdown::Write).unwrap();
        loop {
            match abuser.recv() {
                Ok(_) => {}
                Err(e) => {
                    prop_assert!(is_disconnect(&e), "the server did not end the connection: {}", e);
                    break;
                }
            }
        }
    });
    unharmed(server.addr(), &mut bystander);
}

ringws_tests::backend_tests! {
    slowloris_handshake_is_cut_off,
    oversized_headers_are_refused,
    huge_frame_lengths_are_refused,
    unmasked_frame_is_refused,
    reset_in_the_middle_of_a_frame,
    reset_right_behind_a_partial_frame,
    fragment_flood_hits_the_message_limit,
    many_silent_connections_do_not_block_others,
    connections_past_the_worker_limit_are_turned_away,
    a_worker_serves_its_whole_connection_limit,
    churn_of_failing_connections_never_hits_new_ones,
    random_garbage_after_the_handshake,
}
