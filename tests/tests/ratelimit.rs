//! Per-connection rate limits over real sockets: the pause policy (reading
//! stops, TCP pushes back, nothing is lost) and the close policy (1008), each
//! beside a connection that must not be slowed. Judged by counts and order,
//! never by durations.

use std::time::Duration;

use ringws::{BackendKind, CloseCause, RateLimit, RateLimitPolicy};
use ringws_tests::{Client, ConnectOptions, Echo, Msg, events, start};

/// Messages the limited client sends at once.
const BURSTY: usize = 60;

/// Round trips of the connection that must not be slowed.
const ROUND_TRIPS: usize = 100;

fn unlimited(addr: std::net::SocketAddr) -> Client {
    Client::connect_opts(
        addr,
        &ConnectOptions {
            path: "/unlimited".into(),
            ..ConnectOptions::default()
        },
    )
    .unwrap()
}

fn pause_holds_back_one_connection_and_loses_nothing(backend: BackendKind) {
    // 60 messages at 20/s after a burst of 5: about 2.75 s to get through.
    let server = start(
        backend,
        |b| {
            b.rate_limit(RateLimit::none().messages(20, 5))
                .metrics_route("/metrics")
        },
        Echo::new,
    );
    let mut limited = Client::connect(server.addr()).unwrap();
    let mut wire = Vec::new();
    for i in 0..BURSTY {
        wire.extend(ringws_tests::masked_frame(
            true,
            ringws::proto::frame::OpCode::Text,
            format!("m{i}").as_bytes(),
        ));
    }
    limited.send_raw(&wire).unwrap();
    // Meanwhile another connection (exempted by on_upgrade) is served at once.
    let mut other = unlimited(server.addr());
    for i in 0..ROUND_TRIPS {
        other.send_text(&format!("r{i}")).unwrap();
        other.expect_text(&format!("r{i}"));
    }
    // By then the limited one has had only part of its echoes.
    limited
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut received = 0;
    while let Ok(msg) = limited.recv() {
        assert_eq!(msg, Msg::Text(format!("m{received}")));
        received += 1;
    }
    assert!(
        received < BURSTY,
        "{ROUND_TRIPS} round trips of the other connection ended after all {BURSTY} echoes"
    );
    // Every message comes through, in order.
    limited
        .set_read_timeout(Some(ringws_tests::TIMEOUT))
        .unwrap();
    for i in received..BURSTY {
        limited.expect_text(&format!("m{i}"));
    }
    let pauses = ringws_tests::wait_for_metric(&server, "ringws_rate_limit_pauses_total");
    assert!(pauses >= 1, "{pauses} pauses");
    limited.close_handshake(1000, "").unwrap();
}

fn close_policy_sends_1008_and_spares_the_others(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(
        backend,
        |b| {
            b.rate_limit(
                RateLimit::none()
                    .messages(20, 5)
                    .policy(RateLimitPolicy::Close),
            )
        },
        move || Echo::reporting(tx.clone()),
    );
    let mut polite = Client::connect(server.addr()).unwrap();
    let polite_id = events.open();
    let mut abusive = Client::connect(server.addr()).unwrap();
    let abusive_id = events.open();
    polite.send_text("before").unwrap();
    polite.expect_text("before");
    let mut wire = Vec::new();
    for i in 0..10 {
        wire.extend(ringws_tests::masked_frame(
            true,
            ringws::proto::frame::OpCode::Text,
            format!("m{i}").as_bytes(),
        ));
    }
    abusive.send_raw(&wire).unwrap();
    // The burst is echoed, then the close; the rest is discarded.
    for i in 0..5 {
        abusive.expect_text(&format!("m{i}"));
    }
    assert_eq!(abusive.expect_close(1008), "rate limit exceeded");
    abusive.close(1008, "").unwrap();
    abusive.expect_eof().unwrap();
    let (code, _, cause) = events.close_of(abusive_id);
    assert_eq!((code, cause), (1008, CloseCause::RateLimit));
    // The other connection is untouched.
    polite.send_text("after").unwrap();
    polite.expect_text("after");
    polite.close_handshake(1000, "").unwrap();
    assert_eq!(events.close_of(polite_id).2, CloseCause::Peer);
}

fn bytes_pause_on_a_big_message(backend: BackendKind) {
    // 256 KiB at 512 KiB/s after a burst of 64 KiB: reading stops for about
    // 0.4 s, then the message is echoed whole.
    let server = start(
        backend,
        |b| b.rate_limit(RateLimit::none().bytes(512 << 10, 64 << 10)),
        Echo::new,
    );
    let mut client = Client::connect(server.addr()).unwrap();
    let big = vec![7u8; 256 << 10];
    for _ in 0..3 {
        client.send_binary(&big).unwrap();
    }
    for _ in 0..3 {
        assert_eq!(client.recv().unwrap(), Msg::Binary(big.clone()));
    }
    client.close_handshake(1000, "").unwrap();
}

ringws_tests::backend_tests! {
    pause_holds_back_one_connection_and_loses_nothing,
    close_policy_sends_1008_and_spares_the_others,
    bytes_pause_on_a_big_message,
}
