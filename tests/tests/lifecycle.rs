//! A connection's life over real sockets: the close handshake from either side,
//! abort, the handshake, idle and pong timers, backpressure under both policies,
//! and graceful shutdown.

use std::net::Shutdown;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ringws::proto::error::ProtocolError;
use ringws::proto::frame::OpCode;
use ringws::{BackendKind, BackpressurePolicy, CloseCause};
use ringws_tests::{
    Client, Echo, MIB, Msg, ServerEvent, TIMEOUT, events, flood_payload, is_disconnect,
    read_to_eof, start, tcp, unmasked_frame,
};

/// Generous bound for "the server reacts to a timer of a few hundred ms".
const SOON: Duration = Duration::from_secs(5);

fn close_initiated_by_the_client(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(backend, |b| b, move || Echo::reporting(tx.clone()));
    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();
    client.send_text("before closing").unwrap();
    client.expect_text("before closing");
    let reply = client.close_handshake(1000, "done").unwrap();
    assert_eq!(
        reply,
        Some((1000, "done".to_owned())),
        "the server mirrors the code and the reason"
    );
    let (code, reason, cause) = events.close_of(id);
    assert_eq!(
        (code, reason.as_str(), cause),
        (1000, "done", CloseCause::Peer)
    );

    // An application code and an empty close frame are echoed too.
    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();
    assert_eq!(
        client.close_handshake(4321, "").unwrap().map(|c| c.0),
        Some(4321)
    );
    assert_eq!(events.close_of(id).0, 4321);
}

fn close_initiated_by_the_server(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(
        backend,
        |b| b,
        move || Echo::reporting(tx.clone()).with_commands(),
    );
    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();
    client.send_text("!close 4001 going away").unwrap();
    assert_eq!(client.expect_close(4001), "going away");
    // Data sent after the server's close frame is not echoed.
    client.send_text("too late").unwrap();
    client.close(4001, "").unwrap();
    client.expect_eof().unwrap();
    let (code, _, cause) = events.close_of(id);
    assert_eq!((code, cause), (4001, CloseCause::Local));
}

fn unanswered_server_close_times_out(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(
        backend,
        |b| b.close_timeout(Duration::from_millis(300)),
        move || Echo::reporting(tx.clone()).with_commands(),
    );
    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();
    client.send_text("!close 1000 bye").unwrap();
    client.expect_close(1000);
    // No reply: the server drops the connection after the close timeout.
    client.set_read_timeout(Some(SOON)).unwrap();
    client.expect_eof().unwrap();
    let (_, _, cause) = events.close_of(id);
    assert_eq!(cause, CloseCause::Local);
}

fn terminate_aborts_without_close_frame(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(
        backend,
        |b| b,
        move || Echo::reporting(tx.clone()).with_commands(),
    );
    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();
    client.send_text("!terminate").unwrap();
    match client.recv() {
        Err(e) if is_disconnect(&e) => {}
        other => panic!("expected the end of the stream without a close frame, got {other:?}"),
    }
    let (code, _, cause) = events.close_of(id);
    assert_eq!(code, 1006);
    assert_eq!(
        cause,
        CloseCause::Terminated,
        "on_close must say the handler terminated the connection"
    );
}

fn handshake_timeout_closes_silent_connections(backend: BackendKind) {
    let server = start(
        backend,
        // Long enough for a TLS handshake and upgrade on a loaded machine,
        // well inside SOON.
        |b| b.handshake_timeout(Duration::from_secs(1)),
        Echo::new,
    );
    let started = Instant::now();
    let stream = tcp(server.addr()).unwrap();
    stream.set_read_timeout(Some(SOON)).unwrap();
    match read_to_eof(&stream) {
        Ok(bytes) => assert!(
            bytes.is_empty(),
            "nothing is sent on a handshake timeout: {bytes:?}"
        ),
        Err(e) => assert!(is_disconnect(&e), "expected EOF within {SOON:?}, got {e}"),
    }
    assert!(started.elapsed() < SOON);

    // A complete request in time still upgrades.
    let mut client = Client::connect(server.addr()).unwrap();
    client.send_text("in time").unwrap();
    client.expect_text("in time");
}

fn idle_timeout_closes_with_1001(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(
        backend,
        |b| {
            b.idle_timeout(Some(Duration::from_millis(300)))
                .ping_interval(None)
        },
        move || Echo::reporting(tx.clone()),
    );
    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();
    client.set_read_timeout(Some(SOON)).unwrap();
    client.expect_close(1001);
    client.close(1001, "").unwrap();
    client.expect_eof().unwrap();
    let (_, _, cause) = events.close_of(id);
    assert_eq!(cause, CloseCause::Timeout);
}

fn unanswered_auto_ping_aborts(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(
        backend,
        |b| {
            b.ping_interval(Some(Duration::from_millis(200)))
                .pong_timeout(Duration::from_millis(300))
        },
        move || Echo::reporting(tx.clone()),
    );
    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();
    client.set_read_timeout(Some(SOON)).unwrap();
    assert_eq!(client.msg(), Msg::Ping(Vec::new()));
    // Say nothing: the peer is presumed dead and dropped without a close frame.
    match client.recv() {
        Err(e) if is_disconnect(&e) => {}
        other => panic!("expected the connection to be aborted, got {other:?}"),
    }
    let (code, _, cause) = events.close_of(id);
    assert_eq!((code, cause), (1006, CloseCause::Timeout));
}

fn answered_auto_ping_keeps_the_connection(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(
        backend,
        |b| {
            b.ping_interval(Some(Duration::from_millis(200)))
                .pong_timeout(Duration::from_millis(300))
        },
        move || Echo::reporting(tx.clone()),
    );
    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();
    client.set_read_timeout(Some(SOON)).unwrap();
    // Five pings: about a second, well past the pong deadline of each.
    for _ in 0..5 {
        match client.msg() {
            Msg::Ping(payload) => client.pong(&payload).unwrap(),
            other => panic!("expected an auto-ping, got {other:?}"),
        }
    }
    client.send_text("still open").unwrap();
    loop {
        match client.msg() {
            Msg::Ping(payload) => client.pong(&payload).unwrap(),
            msg => {
                assert_eq!(msg, Msg::Text("still open".into()));
                break;
            }
        }
    }
    let closes: Vec<_> = events
        .take_all()
        .into_iter()
        .filter(|e| matches!(e, ServerEvent::Close { id: closed, .. } if *closed == id))
        .collect();
    assert!(closes.is_empty(), "the connection was closed: {closes:?}");
}

/// A protocol error from a peer we already sent our close frame to: the
/// connection ends at once, not after the close timeout.
fn protocol_error_while_closing_ends_promptly(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(
        backend,
        |b| b.close_timeout(Duration::from_secs(30)),
        move || Echo::reporting(tx.clone()).with_commands(),
    );
    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();
    client.send_text("!close 1000 bye").unwrap();
    client.expect_close(1000);
    client
        .send_raw(&unmasked_frame(true, OpCode::Text, b"bad"))
        .unwrap();
    let (code, _, cause) = events.close_of(id);
    assert_eq!(code, 1002);
    assert_eq!(cause, CloseCause::Protocol(ProtocolError::UnmaskedFrame));
    // The server shuts its side right away (the close timeout is 30 s).
    client.set_read_timeout(Some(SOON)).unwrap();
    client.expect_eof().unwrap();
}

/// Shutdown with a peer that never answers the close and one that never
/// finished its handshake: both are cut off by the grace deadline at the latest.
fn shutdown_with_unresponsive_peers_returns(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(backend, |b| b, move || Echo::reporting(tx.clone()));
    let mut mute = Client::connect(server.addr()).unwrap();
    let id = events.open();
    let silent = tcp(server.addr()).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let handle = server.handle().clone();
    let started = Instant::now();
    thread::spawn(move || {
        handle.shutdown(Duration::from_millis(500));
        let _ = done_tx.send(());
    });
    mute.expect_close(1001);
    // No reply from `mute`.
    mute.expect_eof().unwrap();
    match read_to_eof(&silent) {
        Ok(bytes) => assert!(bytes.is_empty()),
        Err(e) => assert!(is_disconnect(&e), "{e}"),
    }
    done_rx
        .recv_timeout(SOON)
        .expect("shutdown returns after its grace period");
    assert!(started.elapsed() < SOON);
    let (code, _, cause) = events.close_of(id);
    assert_eq!((code, cause), (1001, CloseCause::Shutdown));
}

/// A peer that sends a message and closes its socket at once (FIN right behind
/// the data, both reaching the socket while the worker is busy) is noticed:
/// on_close comes without waiting for a ping or idle timer.
fn eof_right_behind_a_message_is_noticed(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(
        backend,
        |b| b.workers(1).ping_interval(None),
        move || Echo::reporting(tx.clone()).with_commands(),
    );
    let mut staller = Client::connect(server.addr()).unwrap();
    events.open();
    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();
    staller.send_text("!stall 300").unwrap();
    events.stalled();
    client.send_text("last words").unwrap();
    client.stream().shutdown(Shutdown::Write).unwrap();
    let (code, _, cause) = events.close_of(id);
    assert_eq!((code, cause), (1006, CloseCause::Reset));
}

/// RFC 6455 section 5.5.1: a close frame is answered with a close frame, also
/// when the peer half-closed TCP right behind it (it can still read).
fn close_reply_reaches_a_half_closed_peer(backend: BackendKind) {
    const RECV_BUFFER: usize = 4096;
    let (tx, events) = events();
    let server = start(
        backend,
        |b| b.workers(1).recv_buffer_size(RECV_BUFFER),
        move || Echo::reporting(tx.clone()).with_commands(),
    );
    let mut staller = Client::connect(server.addr()).unwrap();
    events.open();
    // Close frame then FIN, arriving together; then the same behind a message
    // that fills the worker's receive buffer exactly (8 + 4080 + 8 bytes).
    for filler in [0, RECV_BUFFER - 16] {
        let mut client = Client::connect(server.addr()).unwrap();
        let id = events.open();
        staller.send_text("!stall 300").unwrap();
        events.stalled();
        if filler > 0 {
            client.send_binary(&vec![1; filler]).unwrap();
        }
        client.close(1000, "").unwrap();
        client.stream().shutdown(Shutdown::Write).unwrap();
        if filler > 0 {
            match client.recv() {
                Ok(Msg::Binary(echo)) => assert_eq!(echo.len(), filler),
                other => panic!("filler {filler}: expected the echo, got {other:?}"),
            }
        }
        match client.recv() {
            Ok(Msg::Close(Some((1000, _)))) => {}
            other => panic!("filler {filler}: expected the close reply, got {other:?}"),
        }
        client.expect_eof().unwrap();
        let (code, _, cause) = events.close_of(id);
        assert_eq!((code, cause), (1000, CloseCause::Peer), "filler {filler}");
        // The staller's stall is over: it still echoes.
        staller.send_text("next").unwrap();
        staller.expect_text("next");
    }
}

/// Reads `count` flood messages and checks they continue the sequence at `next`.
fn read_flood(client: &mut Client, next: &mut u64, count: usize, size: usize) {
    for _ in 0..count {
        match client.msg() {
            Msg::Binary(data) => {
                assert!(
                    data == flood_payload(*next, size),
                    "flood message {next} is corrupt or out of order (got sequence {:?})",
                    data.get(..8)
                );
                *next += 1;
            }
            other => panic!("expected flood message {next}, got {other:?}"),
        }
    }
}

fn backpressure_drop_policy(backend: BackendKind) {
    const LIMIT: usize = MIB;
    const SIZE: usize = 64 << 10;
    let (tx, events) = events();
    let server = start(
        backend,
        |b| {
            b.max_backpressure(LIMIT)
                .backpressure_policy(BackpressurePolicy::Drop)
        },
        move || Echo::reporting(tx.clone()).with_commands(),
    );
    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();

    // 32 MiB in one callback: large messages go straight into the kernel's
    // buffers while they take more, then only what fits under the limit is
    // queued; the rest is dropped.
    client.send_text(&format!("!flood 512 {SIZE}")).unwrap();
    let (sent, backpressure, dropped, buffered) = events.flood();
    let mut queued = sent + backpressure;
    assert!(
        queued > 0 && dropped > 0,
        "sent {sent}, backpressure {backpressure}, dropped {dropped}"
    );
    assert!(
        buffered <= LIMIT,
        "queue of {buffered} bytes past the {LIMIT} limit"
    );
    // The queue empties once the client reads: then on_drain.
    let mut next = 0;
    read_flood(&mut client, &mut next, queued, SIZE);
    events.drain_of(id);

    // Stop reading and keep asking: the kernel buffers fill, then the queue; it
    // never passes the limit.
    let mut stuck = false;
    for _ in 0..200 {
        client.send_text(&format!("!flood 16 {SIZE}")).unwrap();
        let (sent, backpressure, dropped, buffered) = events.flood();
        assert!(
            buffered <= LIMIT,
            "queue of {buffered} bytes past the {LIMIT} limit"
        );
        queued += sent + backpressure;
        if sent + backpressure == 0 && dropped == 16 && buffered > LIMIT / 2 {
            stuck = true;
            break;
        }
    }
    assert!(stuck, "the send queue never filled up");
    // The queue is full: on_drain comes once it empties. Usually that waits
    // for the client to read again, but the client's receive buffer, grown by
    // the reads above, may still be taking bytes when the queue is seen full,
    // and then the queue empties, and on_drain comes, before the client reads
    // (the likely reading of one CI failure on a busy machine: every message
    // arrived, and no on_drain came after this point).
    let drained_early = events.take_all().iter().any(|e| e.is_drain_of(id));

    // Resume reading: a consistent stream of everything that was queued, then
    // on_drain (unless it came already).
    let left = queued - next as usize;
    read_flood(&mut client, &mut next, left, SIZE);
    if !drained_early {
        events.drain_of(id);
    }
    client.send_text("healthy").unwrap();
    client.expect_text("healthy");
}

fn backpressure_close_policy(backend: BackendKind) {
    const LIMIT: usize = MIB;
    const SIZE: usize = 64 << 10;
    let (tx, events) = events();
    let server = start(
        backend,
        |b| {
            b.max_backpressure(LIMIT)
                .backpressure_policy(BackpressurePolicy::Close)
        },
        move || Echo::reporting(tx.clone()).with_commands(),
    );
    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();
    // More than the kernel's buffers and the limit together.
    client.send_text(&format!("!flood 512 {SIZE}")).unwrap();
    let (sent, backpressure, dropped, _) = events.flood();
    assert!(dropped > 0);
    let mut next = 0;
    read_flood(&mut client, &mut next, sent + backpressure, SIZE);
    client.expect_close(1008);
    client.close(1008, "").unwrap();
    client.expect_eof().unwrap();
    let (_, _, cause) = events.close_of(id);
    assert_eq!(cause, CloseCause::Backpressure);
}

fn graceful_shutdown_flushes_then_closes_1001(backend: BackendKind) {
    const CLIENTS: usize = 3;
    const MESSAGES: usize = 1000;
    const SIZE: usize = 4096;
    let (tx, events) = events();
    let server = start(
        backend,
        |b| b,
        move || Echo::reporting(tx.clone()).send_on_open(MESSAGES, SIZE),
    );
    let mut ids = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(Client::connect(server.addr()).unwrap());
        ids.push(events.open());
    }
    // Megabytes are queued per client and nobody has read yet.
    let (done_tx, done_rx) = mpsc::channel();
    let handle = server.handle().clone();
    thread::spawn(move || {
        handle.shutdown(Duration::from_secs(5));
        let _ = done_tx.send(());
    });
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            thread::spawn(move || {
                for i in 0..MESSAGES {
                    match client.msg() {
                        Msg::Text(text) => {
                            assert!(
                                text.starts_with(&format!("msg {i} ")),
                                "message {i} out of order"
                            );
                            assert_eq!(text.len(), SIZE);
                        }
                        other => panic!("expected message {i}, got {other:?}"),
                    }
                }
                client.expect_close(1001);
                client.close(1001, "").unwrap();
                client.expect_eof().unwrap();
            })
        })
        .collect();
    for reader in readers {
        reader
            .join()
            .expect("a client missed messages or the close");
    }
    done_rx.recv_timeout(TIMEOUT).expect("shutdown returns");
    // The workers have exited: every report is in the channel, in any order.
    let closes = events.take_all();
    for id in ids {
        let close = closes.iter().find_map(|e| match e {
            ServerEvent::Close {
                id: closed,
                code,
                cause,
                ..
            } if *closed == id => Some((*code, *cause)),
            _ => None,
        });
        assert_eq!(
            close,
            Some((1001, CloseCause::Shutdown)),
            "on_close of {id}"
        );
    }
    assert!(
        Client::connect(server.addr()).is_err(),
        "a shut down server accepts no connection"
    );
}

ringws_tests::backend_tests! {
    close_initiated_by_the_client,
    close_initiated_by_the_server,
    unanswered_server_close_times_out,
    terminate_aborts_without_close_frame,
    eof_right_behind_a_message_is_noticed,
    close_reply_reaches_a_half_closed_peer,
    handshake_timeout_closes_silent_connections,
    idle_timeout_closes_with_1001,
    unanswered_auto_ping_aborts,
    answered_auto_ping_keeps_the_connection,
    backpressure_drop_policy,
    backpressure_close_policy,
    graceful_shutdown_flushes_then_closes_1001,
    protocol_error_while_closing_ends_promptly,
    shutdown_with_unresponsive_peers_returns,
}
