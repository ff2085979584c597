//! WebSockets over HTTP/2 (RFC 8441, extended CONNECT) and plain requests
//! over HTTP/2, against real servers on both backends and both transports:
//! plain TCP with prior knowledge, and TLS with ALPN `h2`. The client is
//! `ringws_tests::h2::H2Client`.
//!
//! Echo over one stream and over fifty on one connection, negotiation
//! (subprotocol, permessage-deflate), a deferred upgrade, `on_http` and the
//! metrics route over HTTP/2 with bodies larger than the initial window, a
//! client's RST_STREAM, a stream without window stalling alone, WebSocket
//! protocol violations inside a stream, the hostile cases (too many streams,
//! rapid reset, CONTINUATION floods, control-frame floods, window overflow,
//! malformed requests), shutdown, and HTTP/1.1 beside HTTP/2.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::mpsc::{self, Sender};
use std::thread;
use std::time::{Duration, Instant};

use ringws::proto::deflate::DeflateConfig;
use ringws::proto::frame::OpCode;
use ringws::proto::handshake::{HttpVersion, UpgradeRequest};
use ringws::{
    BackendKind, Builder, CloseCause, ConnId, DeflateMode, Handler, Http2, Message, PendingUpgrade,
    Upgrade, WebSocket,
};
use ringws_tests::h2::{self, Event, H2Client, WsOptions, error, kind, literal_block, setting};
use ringws_tests::transport::{Transport, transport};
use ringws_tests::{
    Client, ConnectOptions, Echo, Events, HttpReply, Msg, ServerEvent, Stream, TIMEOUT, TestServer,
    backend_tests, events, flood_payload, pattern_bytes, raw_http, start, unmasked_frame,
};

/// Generous bound for "the server reacts soon".
const SOON: Duration = Duration::from_secs(5);

/// HTTP/2 on: by ALPN on TLS listeners (the default) and by prior knowledge
/// on plain ones.
fn h2_on(builder: Builder) -> Builder {
    builder.http2(Http2 {
        prior_knowledge: true,
        ..Http2::default()
    })
}

/// HTTP/2 on with these settings (prior knowledge too).
fn h2_with(builder: Builder, http2: Http2) -> Builder {
    builder.http2(Http2 {
        prior_knowledge: true,
        ..http2
    })
}

/// A server with HTTP/2 on, the [`Echo`] handler with commands, reporting.
fn echo_server(
    backend: BackendKind,
    configure: impl FnOnce(Builder) -> Builder,
) -> (TestServer, Events) {
    let (tx, events) = events();
    let server = start(
        backend,
        |b| configure(h2_on(b.ping_interval(None))),
        move || Echo::reporting(tx.clone()).with_commands(),
    );
    (server, events)
}

/// The value of counter `name` in the server's metrics (with or without
/// `_total`), if it is there.
fn metric(server: &TestServer, name: &str) -> Option<u64> {
    server.metrics().lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = rest.strip_prefix("_total").unwrap_or(rest);
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            return None;
        }
        rest.rsplit(' ').next()?.parse().ok()
    })
}

/// Waits until every counter has its value (the workers publish once per
/// loop turn); panics with what they are if they do not within [`TIMEOUT`].
#[track_caller]
fn wait_metrics(server: &TestServer, expected: &[(&str, u64)]) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let now: Vec<(&str, Option<u64>)> = expected
            .iter()
            .map(|(n, _)| (*n, metric(server, n)))
            .collect();
        if now
            .iter()
            .zip(expected)
            .all(|((_, got), (_, want))| *got == Some(*want))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "metrics {now:?}, expected {expected:?}:\n{}",
            server.metrics()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// The id of the WebSocket opened on `path` (each test's paths differ).
#[track_caller]
fn opened(events: &Events, path: &str) -> ConnId {
    events.wait(&format!("on_open of {path}"), |e| match e {
        ServerEvent::Open { id, path: p, .. } if p == path => Some(*id),
        _ => None,
    })
}

/// What on_close got for each of `ids` (code, cause), in the order of `ids`,
/// whatever the order they came in.
#[track_caller]
fn closes_of(events: &Events, ids: &[ConnId]) -> Vec<(u16, CloseCause)> {
    let mut found: Vec<Option<(u16, CloseCause)>> = vec![None; ids.len()];
    while found.iter().any(Option::is_none) {
        let (id, code, _, cause) = events.any_close();
        if let Some(i) = ids.iter().position(|x| *x == id) {
            found[i] = Some((code, cause));
        }
    }
    found.into_iter().map(Option::unwrap).collect()
}

/// Reads `stream` until the server is done with it (END_STREAM or a
/// reset); a message before that is an error.
#[track_caller]
fn expect_stream_done(client: &mut H2Client, stream: u32) {
    match client.recv_ws(stream) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) => {}
        other => panic!("stream {stream}: expected its end, got {other:?}"),
    }
}

/// A connection that must end with GOAWAY carrying an error code, then close.
#[track_caller]
fn expect_goaway_and_close(client: &mut H2Client, what: &str) -> u32 {
    let goaway = client
        .expect_goaway()
        .unwrap_or_else(|e| panic!("{what}: no GOAWAY: {e}"));
    assert_ne!(goaway.code, error::NO_ERROR, "{what}: {goaway:?}");
    client
        .expect_closed()
        .unwrap_or_else(|e| panic!("{what}: the connection stays open after {goaway:?}: {e}"));
    goaway.code
}

// ---------------------------------------------------------------------------
// Echo
// ---------------------------------------------------------------------------

fn echo_over_one_stream_and_end_stream_after_the_close(backend: BackendKind) {
    let (server, events) = echo_server(backend, |b| b);
    let mut client = H2Client::connect(server.addr()).unwrap();
    if transport() == Transport::Tls {
        assert_eq!(client.stream().alpn_protocol().as_deref(), Some(&b"h2"[..]));
    }
    assert_eq!(
        client.server_setting(setting::ENABLE_CONNECT_PROTOCOL),
        Some(1)
    );
    assert_eq!(
        client.server_setting(setting::MAX_CONCURRENT_STREAMS),
        Some(100)
    );

    let (ws, response) = client
        .websocket_with(&WsOptions {
            path: "/one".into(),
            ..WsOptions::default()
        })
        .unwrap();
    assert_eq!(response.status, 200);
    // Field names go lowercase over HTTP/2 (RFC 9113 section 8.2.1).
    assert!(
        response
            .headers
            .iter()
            .any(|(n, v)| n == "x-ringws-test" && v == "yes"),
        "{response:?}"
    );
    assert!(
        response.header("sec-websocket-accept").is_none(),
        "{response:?}"
    );
    let id = opened(&events, "/one");

    client.send_ws_text(ws, "hello over h2").unwrap();
    client.expect_ws_text(ws, "hello over h2");
    let binary: Vec<u8> = (0..=255).collect();
    client.send_ws_binary(ws, &binary).unwrap();
    assert_eq!(client.ws_msg(ws), Msg::Binary(binary));
    // 100 KiB: more than the server's stream window, and two ways.
    let big = "x".repeat(100 << 10);
    client.send_ws_text(ws, &big).unwrap();
    client.expect_ws_text(ws, &big);
    client.send_ws(ws, OpCode::Ping, b"are you there").unwrap();
    assert_eq!(client.ws_msg(ws), Msg::Pong(b"are you there".to_vec()));
    let pinged = events.wait("on_ping", |e| match e {
        ServerEvent::Ping { id: i, payload } if *i == id => Some(payload.clone()),
        _ => None,
    });
    assert_eq!(pinged, b"are you there");

    // The close handshake, then the server's END_STREAM; then ours.
    client.send_ws_close(ws, 4000, "bye now").unwrap();
    assert_eq!(client.ws_msg(ws), Msg::close(4000, "bye now"));
    client.expect_end_stream(ws).unwrap();
    let (code, reason, cause) = events.close_of(id);
    assert_eq!(
        (code, reason.as_str(), cause),
        (4000, "bye now", CloseCause::Peer)
    );
    client.send_data(ws, &[], true).unwrap();
    client.ping_roundtrip().unwrap();
    assert_eq!(
        client.reset_code(ws),
        None,
        "our END_STREAM closed the stream cleanly"
    );
    assert!(client.goaway().is_none());

    // The connection goes on: another stream.
    let second = client.websocket("/two").unwrap();
    client.send_ws_text(second, "again").unwrap();
    client.expect_ws_text(second, "again");
    assert_eq!(
        client.close_ws(second, 1000, "").unwrap(),
        Some((1000, String::new()))
    );
}

fn fifty_streams_on_one_connection_echo_interleaved(backend: BackendKind) {
    let (server, events) = echo_server(backend, |b| b.metrics_route("/metrics"));
    let mut client = H2Client::connect(server.addr()).unwrap();
    let streams: Vec<u32> = (0..50)
        .map(|i| client.open_websocket(&format!("/s{i}"), &[], None).unwrap())
        .collect();
    for &s in &streams {
        assert_eq!(client.response(s).unwrap().status, 200, "stream {s}");
    }
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(opened(&events, &format!("/s{i}")));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50, "each stream is a WebSocket of its own");

    for round in 0..4 {
        // Everything sent before anything is read, in one write; read back
        // in another order.
        client.cork();
        for (i, &s) in streams.iter().enumerate() {
            client
                .send_ws_text(s, &format!("stream {i} round {round}"))
                .unwrap();
            client.send_ws_binary(s, &vec![i as u8; 100 * i]).unwrap();
        }
        client.uncork().unwrap();
        for (i, &s) in streams.iter().enumerate().rev() {
            client.expect_ws_text(s, &format!("stream {i} round {round}"));
            assert_eq!(client.ws_msg(s), Msg::Binary(vec![i as u8; 100 * i]));
        }
    }
    wait_metrics(
        &server,
        &[
            ("ringws_accepted", 1),
            ("ringws_http2_connections", 1),
            ("ringws_http2_websockets", 50),
        ],
    );
    for &s in &streams {
        assert_eq!(
            client.close_ws(s, 1000, "").unwrap(),
            Some((1000, String::new()))
        );
    }
    assert!(client.goaway().is_none());
}

// ---------------------------------------------------------------------------
// Negotiation, deferred upgrades
// ---------------------------------------------------------------------------

fn subprotocol_and_deflate_are_negotiated(backend: BackendKind) {
    let (server, _events) = echo_server(backend, |b| b.deflate(DeflateMode::Shared));
    let mut client = H2Client::connect(server.addr()).unwrap();

    // Subprotocol: the handler picks chat.v2 among those offered.
    let (chat, response) = client
        .websocket_with(&WsOptions {
            path: "/chat".into(),
            protocols: vec!["chat.v1".into(), "chat.v2".into()],
            ..WsOptions::default()
        })
        .unwrap();
    assert_eq!(response.header("sec-websocket-protocol"), Some("chat.v2"));
    assert_eq!(response.header("sec-websocket-extensions"), None);
    client.send_ws_text(chat, "plain").unwrap();
    client.expect_ws_text(chat, "plain");

    // None offered: none chosen.
    let (plain, response) = client
        .websocket_with(&WsOptions {
            path: "/plain".into(),
            ..WsOptions::default()
        })
        .unwrap();
    assert_eq!(response.header("sec-websocket-protocol"), None);

    // permessage-deflate on another stream of the same connection.
    let (zipped, response) = client
        .websocket_with(&WsOptions {
            path: "/deflate".into(),
            deflate: Some(DeflateConfig::default()),
            ..WsOptions::default()
        })
        .unwrap();
    let answer = response
        .header("sec-websocket-extensions")
        .unwrap_or_default();
    assert!(answer.starts_with("permessage-deflate"), "{response:?}");
    assert!(client.ws_deflate(zipped));
    let text: String = (0..4000).map(|i| (b'a' + (i % 7) as u8) as char).collect();
    client
        .send_ws_compressed(zipped, true, text.as_bytes(), 1)
        .unwrap();
    client.expect_ws_text(zipped, &text);
    let binary: Vec<u8> = (0..10_000u32).map(|i| (i % 13) as u8).collect();
    client
        .send_ws_compressed(zipped, false, &binary, 3)
        .unwrap();
    assert_eq!(client.ws_msg(zipped), Msg::Binary(binary));
    // The other streams are unaffected.
    client.send_ws_text(plain, "still plain").unwrap();
    client.expect_ws_text(plain, "still plain");
    for s in [chat, plain, zipped] {
        client.close_ws(s, 1000, "").unwrap();
    }
}

/// What [`Deferring`]'s `on_upgrade` saw of a request.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    version: HttpVersion,
    method: String,
    key: String,
    host: String,
    path: String,
}

/// Defers every upgrade to a decider; its data is the token accepted.
struct Deferring {
    seen: Sender<Seen>,
    deciders: Sender<PendingUpgrade<String>>,
}

impl Handler for Deferring {
    type Data = String;

    fn on_upgrade(&mut self, request: &UpgradeRequest<'_>, _: SocketAddr) -> Upgrade<String> {
        let _ = self.seen.send(Seen {
            version: request.http_version(),
            method: request.method().to_owned(),
            key: request.key().to_owned(),
            host: request.host().to_owned(),
            path: request.path().to_owned(),
        });
        Upgrade::defer()
    }

    fn on_upgrade_deferred(&mut self, pending: PendingUpgrade<String>) {
        let _ = self.deciders.send(pending);
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, String>, message: Message<'_>) {
        if let Message::Text(text) = message {
            let reply = format!("{}: {text}", ws.data());
            ws.send_text(&reply);
        }
    }
}

fn a_deferred_upgrade_over_http2(backend: BackendKind) {
    let (seen_tx, seen) = mpsc::channel();
    let (decide_tx, pending) = mpsc::channel();
    let (seen_tx, decide_tx) = (Mutex::new(seen_tx), Mutex::new(decide_tx));
    let server = start(backend, h2_on, move || Deferring {
        seen: seen_tx.lock().unwrap().clone(),
        deciders: decide_tx.lock().unwrap().clone(),
    });
    let mut client = H2Client::connect(server.addr()).unwrap();
    let open = |client: &mut H2Client, path: &str, token: &str| {
        client
            .open_websocket_with(&WsOptions {
                path: path.into(),
                headers: vec![("x-token".into(), token.into())],
                ..WsOptions::default()
            })
            .unwrap()
    };
    let good = open(&mut client, "/deferred", "42");
    let bad = open(&mut client, "/refused", "7");
    for path in ["/deferred", "/refused"] {
        let saw: Seen = seen.recv_timeout(TIMEOUT).expect("on_upgrade");
        assert_eq!(
            saw,
            Seen {
                version: HttpVersion::Http2,
                method: "CONNECT".into(),
                key: String::new(),
                host: client.authority().to_owned(),
                path: path.into(),
            }
        );
    }
    // Decided on another thread, in the other order.
    let first: PendingUpgrade<String> = pending.recv_timeout(TIMEOUT).unwrap();
    let second: PendingUpgrade<String> = pending.recv_timeout(TIMEOUT).unwrap();
    let decider = thread::spawn(move || {
        for upgrade in [second, first] {
            let token = upgrade.header("x-token").unwrap_or_default().to_owned();
            let result = if token == "42" {
                upgrade.accept(format!("token {token}"))
            } else {
                upgrade.reject(403, "bad token\n")
            };
            result.expect("decided in time");
        }
    });
    decider.join().unwrap();
    let refused = client.read_response(bad).unwrap();
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(refused.text(), "bad token\n");
    assert_eq!(client.response(good).unwrap().status, 200);
    client.send_ws_text(good, "hi").unwrap();
    client.expect_ws_text(good, "token 42: hi");
    client.close_ws(good, 1000, "").unwrap();
}

fn refused_upgrades_are_responses_with_a_body(backend: BackendKind) {
    let (server, events) = echo_server(backend, |b| b);
    let mut client = H2Client::connect(server.addr()).unwrap();
    // The handler refuses: 401 with its body and header, END_STREAM.
    let s = client.open_websocket("/reject", &[], None).unwrap();
    let response = client.read_response(s).unwrap();
    assert_eq!(response.status, 401, "{response:?}");
    assert_eq!(response.text(), "unauthorized");
    assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        response.header("content-length"),
        Some("12"),
        "{response:?}"
    );
    // Authorization checked by the handler, from the request's fields.
    let s = client
        .open_websocket_with(&WsOptions {
            path: "/auth".into(),
            headers: vec![("authorization".into(), "Bearer wrong".into())],
            ..WsOptions::default()
        })
        .unwrap();
    assert_eq!(client.read_response(s).unwrap().status, 401);
    let (ok, _) = client
        .websocket_with(&WsOptions {
            path: "/auth".into(),
            headers: vec![("authorization".into(), "Bearer secret".into())],
            ..WsOptions::default()
        })
        .unwrap();
    // A subprotocol nobody offered: the server answers 500 itself.
    let s = client.open_websocket("/bad-protocol", &[], None).unwrap();
    let response = client.read_response(s).unwrap();
    assert_eq!(response.status, 500, "{response:?}");
    // The connection serves on.
    client.send_ws_text(ok, "authorized").unwrap();
    client.expect_ws_text(ok, "authorized");
    client.close_ws(ok, 1000, "").unwrap();
    assert!(client.goaway().is_none());
    assert!(
        !events.take_all().iter().any(
            |e| matches!(e, ServerEvent::Open { path, .. } if path == "/reject" || path == "/bad-protocol")
        ),
        "a refused upgrade was opened"
    );
}

// ---------------------------------------------------------------------------
// Plain HTTP over HTTP/2
// ---------------------------------------------------------------------------

fn on_http_and_metrics_over_http2(backend: BackendKind) {
    let (server, _events) = echo_server(backend, |b| b.metrics_route("/metrics"));
    let mut client = H2Client::connect(server.addr()).unwrap();
    // 200 KiB: more than the stream's and the connection's initial window
    // (65,535), so it comes only as the client grants more.
    const SIZE: usize = 200 << 10;
    let big = client.request("GET", &format!("/bytes/{SIZE}")).unwrap();
    let health = client.request("GET", "/health").unwrap();
    let response = client.read_response(big).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-length"),
        Some(SIZE.to_string().as_str())
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(
        response.body == pattern_bytes(SIZE),
        "the body differs: {response:?}"
    );
    let response = client.read_response(health).unwrap();
    assert_eq!((response.status, response.text().as_str()), (200, "ok\n"));

    // The same connection goes on: the metrics route, a WebSocket.
    let ws = client.websocket("/after").unwrap();
    let metrics = client.get("/metrics").unwrap();
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain"),
        "{metrics:?}"
    );
    let text = metrics.text();
    for name in [
        "ringws_http2_connections",
        "ringws_http2_streams",
        "ringws_http2_websockets",
        "ringws_http2_refused_streams",
        "ringws_http2_errors",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    client.send_ws_text(ws, "after the GETs").unwrap();
    client.expect_ws_text(ws, "after the GETs");
    client.close_ws(ws, 1000, "").unwrap();
    // Four streams: three GETs and a WebSocket.
    wait_metrics(
        &server,
        &[
            ("ringws_http2_connections", 1),
            ("ringws_http2_streams", 4),
            ("ringws_http2_websockets", 1),
        ],
    );
}

// ---------------------------------------------------------------------------
// Streams apart
// ---------------------------------------------------------------------------

fn a_client_reset_is_an_abnormal_close_of_that_stream_only(backend: BackendKind) {
    let (server, events) = echo_server(backend, |b| b);
    let mut client = H2Client::connect(server.addr()).unwrap();
    let a = client.websocket("/a").unwrap();
    let b = client.websocket("/b").unwrap();
    let id_a = opened(&events, "/a");
    let id_b = opened(&events, "/b");
    client.send_ws_text(a, "before").unwrap();
    client.expect_ws_text(a, "before");
    client.rst_stream(a, error::CANCEL).unwrap();
    let (code, _, cause) = events.close_of(id_a);
    assert_eq!(code, 1006, "cause {cause:?}");
    for i in 0..10 {
        client.send_ws_text(b, &format!("b {i}")).unwrap();
        client.expect_ws_text(b, &format!("b {i}"));
    }
    assert!(client.goaway().is_none());
    assert!(
        !events
            .take_all()
            .iter()
            .any(|e| matches!(e, ServerEvent::Close { id, .. } if *id == id_b)),
        "b was closed too"
    );
    client.close_ws(b, 1000, "").unwrap();
    assert_eq!(events.close_of(id_b).0, 1000);
}

fn a_lost_connection_closes_every_stream_with_1006(backend: BackendKind) {
    let (server, events) = echo_server(backend, |b| b);
    let mut client = H2Client::connect(server.addr()).unwrap();
    let paths: Vec<String> = (0..5).map(|i| format!("/lost{i}")).collect();
    for path in &paths {
        let s = client.websocket(path).unwrap();
        client.send_ws_text(s, "hi").unwrap();
        client.expect_ws_text(s, "hi");
    }
    let ids: Vec<ConnId> = paths.iter().map(|p| opened(&events, p)).collect();
    client.reset();
    for (id, (code, cause)) in ids.iter().zip(closes_of(&events, &ids)) {
        assert_eq!(code, 1006, "{id}: cause {cause:?}");
    }
    wait_metrics(&server, &[("ringws_http2_websockets", 5)]);
    ringws_tests::wait_until("the connection gone", || server.stats().connections == 0);
}

fn a_stream_without_window_stalls_alone(backend: BackendKind) {
    const COUNT: usize = 20;
    const SIZE: usize = 10_000;
    let (server, events) = echo_server(backend, |b| b);
    let mut client = H2Client::connect(server.addr()).unwrap();
    let a = client.websocket("/a").unwrap();
    let b = client.websocket("/b").unwrap();
    let id_a = opened(&events, "/a");
    opened(&events, "/b");
    client.hold_window(a);
    // 200,000 bytes for a stream whose window is 65,535.
    client
        .send_ws_text(a, &format!("!flood {COUNT} {SIZE}"))
        .unwrap();
    let (_, _, dropped, _) = events.flood();
    assert_eq!(dropped, 0);
    // The other stream echoes while a is stalled.
    for i in 0..20 {
        client.send_ws_text(b, &format!("b {i}")).unwrap();
        client.expect_ws_text(b, &format!("b {i}"));
    }
    // A send on the stalled stream queues behind what waits for window.
    client.send_ws_text(a, "!flood 1 10").unwrap();
    let (sent, backpressure, dropped, buffered) = events.flood();
    assert_eq!(
        (sent, backpressure, dropped),
        (0, 1, 0),
        "buffered {buffered}"
    );
    assert!(buffered >= COUNT * SIZE - 65_535, "{buffered} bytes queued");
    client.ping_roundtrip().unwrap();
    let stalled = client.received_bytes(a);
    assert!(stalled <= 65_535, "{stalled} bytes came past the window");
    assert!(
        !events
            .take_all()
            .iter()
            .any(|e| matches!(e, ServerEvent::Drain { .. })),
        "drained while stalled"
    );
    // Window again: everything comes, in order, and the queue drains.
    client.release_window(a).unwrap();
    for seq in 0..COUNT as u64 {
        assert!(
            client.ws_msg(a) == Msg::Binary(flood_payload(seq, SIZE)),
            "message {seq}"
        );
    }
    assert_eq!(
        client.ws_msg(a),
        Msg::Binary(flood_payload(COUNT as u64, 10))
    );
    events.drain_of(id_a);
    client.send_ws_text(b, "b after").unwrap();
    client.expect_ws_text(b, "b after");
    for s in [a, b] {
        client.close_ws(s, 1000, "").unwrap();
    }
}

// ---------------------------------------------------------------------------
// The WebSocket protocol inside a stream
// ---------------------------------------------------------------------------

fn websocket_frames_inside_a_stream(backend: BackendKind) {
    let (server, events) = echo_server(backend, |b| b);
    let mut client = H2Client::connect(server.addr()).unwrap();

    // A fragmented message with a ping between its fragments.
    let frag = client.websocket("/fragments").unwrap();
    client
        .send_ws_frame(frag, false, OpCode::Text, b"frag")
        .unwrap();
    client.send_ws(frag, OpCode::Ping, b"mid").unwrap();
    client
        .send_ws_frame(frag, false, OpCode::Continuation, b"men")
        .unwrap();
    client
        .send_ws_frame(frag, true, OpCode::Continuation, b"ted")
        .unwrap();
    assert_eq!(client.ws_msg(frag), Msg::Pong(b"mid".to_vec()));
    client.expect_ws_text(frag, "fragmented");

    // Violations: each closes its own stream with the right code.
    let cases: [(&str, Vec<u8>, u16); 4] = [
        (
            "/utf8",
            ringws_tests::masked_frame(true, OpCode::Text, &[b'a', 0xff, 0xfe]),
            1007,
        ),
        (
            "/close-code",
            ringws_tests::masked_frame(true, OpCode::Close, &999u16.to_be_bytes()),
            1002,
        ),
        (
            "/big-control",
            ringws_tests::masked_frame(true, OpCode::Ping, &[0; 126]),
            1002,
        ),
        (
            "/unmasked",
            unmasked_frame(true, OpCode::Text, b"naked"),
            1002,
        ),
    ];
    for (path, bytes, code) in cases {
        let s = client.websocket(path).unwrap();
        let id = opened(&events, path);
        client.send_data(s, &bytes, false).unwrap();
        client.expect_ws_close(s, code);
        expect_stream_done(&mut client, s);
        let (got, _, cause) = events.close_of(id);
        assert_eq!(got, code, "{path}: on_close with {got} ({cause:?})");
        // The fragmented stream still echoes: the violations were the
        // streams', not the connection's.
        client.send_ws_text(frag, path).unwrap();
        client.expect_ws_text(frag, path);
    }
    assert!(client.goaway().is_none());
    client.close_ws(frag, 1000, "").unwrap();
}

// ---------------------------------------------------------------------------
// Hostile peers
// ---------------------------------------------------------------------------

fn streams_past_the_limit_are_refused(backend: BackendKind) {
    let (server, _events) = echo_server(backend, |b| {
        h2_with(
            b,
            Http2 {
                max_concurrent_streams: 3,
                ..Http2::default()
            },
        )
        .metrics_route("/metrics")
    });
    let mut client = H2Client::connect(server.addr()).unwrap();
    assert_eq!(
        client.server_setting(setting::MAX_CONCURRENT_STREAMS),
        Some(3)
    );
    let open: Vec<u32> = (0..3)
        .map(|i| client.websocket(&format!("/w{i}")).unwrap())
        .collect();
    let extra = client.open_websocket("/one-too-many", &[], None).unwrap();
    assert_eq!(client.expect_reset(extra).unwrap(), error::REFUSED_STREAM);
    // A GET past the limit too.
    let get = client.request("GET", "/health").unwrap();
    assert_eq!(client.expect_reset(get).unwrap(), error::REFUSED_STREAM);
    for &s in &open {
        client.send_ws_text(s, "still here").unwrap();
        client.expect_ws_text(s, "still here");
    }
    // One closed, one more fits.
    client.close_ws(open[0], 1000, "").unwrap();
    client.ping_roundtrip().unwrap();
    let next = client.websocket("/next").unwrap();
    client.send_ws_text(next, "in").unwrap();
    client.expect_ws_text(next, "in");
    assert!(client.goaway().is_none());
    wait_metrics(&server, &[("ringws_http2_refused_streams", 2)]);
}

fn rapid_reset_gets_goaway(backend: BackendKind) {
    let (server, events) = echo_server(backend, |b| b);
    let mut client = H2Client::connect(server.addr()).unwrap();
    // Within the budget (100 a second, as large a burst): served.
    client.cork();
    for _ in 0..40 {
        let s = client.open_websocket("/reset", &[], None).unwrap();
        client.rst_stream(s, error::CANCEL).unwrap();
    }
    client.uncork().unwrap();
    client.ping_roundtrip().unwrap();
    assert!(client.goaway().is_none(), "{:?}", client.goaway());
    let ws = client.websocket("/calm").unwrap();
    client.send_ws_text(ws, "fine").unwrap();
    client.expect_ws_text(ws, "fine");
    // Past it: GOAWAY(ENHANCE_YOUR_CALM), and the connection ends.
    client.cork();
    for _ in 0..200 {
        let s = client.open_websocket("/reset", &[], None).unwrap();
        client.rst_stream(s, error::CANCEL).unwrap();
    }
    // Writing may fail once the server has had enough.
    let _ = client.uncork();
    let code = expect_goaway_and_close(&mut client, "rapid reset");
    assert_eq!(code, error::ENHANCE_YOUR_CALM);
    // The WebSocket that was open ended abnormally.
    let id = opened(&events, "/calm");
    assert_eq!(events.close_of(id).0, 1006);
    wait_metrics(&server, &[("ringws_http2_errors", 1)]);
    // The server serves the next connection.
    let mut next = H2Client::connect(server.addr()).unwrap();
    let ws = next.websocket("/next").unwrap();
    next.send_ws_text(ws, "ok").unwrap();
    next.expect_ws_text(ws, "ok");
}

fn continuation_floods_get_goaway(backend: BackendKind) {
    let (server, _events) = echo_server(backend, |b| b);
    // One header block growing past the header list limit (16 KiB): 40
    // CONTINUATIONs of 1 KiB, never END_HEADERS.
    let mut client = H2Client::connect(server.addr()).unwrap();
    let s = client.take_stream_id();
    let start = client.header_block(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "localhost"),
        (":path", "/"),
    ]);
    let filler = "v".repeat(1000);
    let mut flood = h2::frame(kind::HEADERS, 0, s, &start);
    for i in 0..40 {
        let name = format!("x-flood-{i}");
        let block = literal_block(&[(name.as_str(), filler.as_str())]);
        flood.extend(h2::frame(kind::CONTINUATION, 0, s, &block));
    }
    let _ = client.send_raw(&flood);
    expect_goaway_and_close(&mut client, "a header block of 40 KiB");

    // Many small CONTINUATIONs: a block that stays small.
    let mut client = H2Client::connect(server.addr()).unwrap();
    let s = client.take_stream_id();
    let mut flood = h2::frame(kind::HEADERS, 0, s, &start_block(&mut client));
    for _ in 0..1000 {
        // One field of an empty name and value per frame: 3 bytes.
        flood.extend(h2::frame(kind::CONTINUATION, 0, s, &[0, 0, 0]));
    }
    let _ = client.send_raw(&flood);
    expect_goaway_and_close(&mut client, "1000 CONTINUATIONs of 3 bytes");

    // Empty ones.
    let mut client = H2Client::connect(server.addr()).unwrap();
    let s = client.take_stream_id();
    let mut flood = h2::frame(kind::HEADERS, 0, s, &start_block(&mut client));
    for _ in 0..1500 {
        flood.extend(h2::frame(kind::CONTINUATION, 0, s, &[]));
    }
    let _ = client.send_raw(&flood);
    expect_goaway_and_close(&mut client, "1500 empty CONTINUATIONs");

    // The server is fine.
    let mut client = H2Client::connect(server.addr()).unwrap();
    let ws = client.websocket("/after").unwrap();
    client.send_ws_text(ws, "ok").unwrap();
    client.expect_ws_text(ws, "ok");
}

/// The start of a GET's header block.
fn start_block(client: &mut H2Client) -> Vec<u8> {
    client.header_block(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "localhost"),
        (":path", "/"),
    ])
}

fn control_frame_floods_get_goaway(backend: BackendKind) {
    let (server, _events) = echo_server(backend, |b| b);
    // Within the budget (1000 a second): 200 PINGs, all answered.
    let mut client = H2Client::connect(server.addr()).unwrap();
    let mut pings = Vec::new();
    for i in 0..200u64 {
        pings.extend(h2::frame(kind::PING, 0, 0, &i.to_be_bytes()));
    }
    client.send_raw(&pings).unwrap();
    for i in 0..200u64 {
        let payload = client
            .wait_for("a PING ACK", |e| match e {
                Event::Ping { ack: true, payload } => Some(*payload),
                _ => None,
            })
            .unwrap();
        assert_eq!(payload, i.to_be_bytes());
    }
    assert!(client.goaway().is_none());
    drop(client);

    for (what, frame) in [
        ("a SETTINGS flood", h2::frame(kind::SETTINGS, 0, 0, &[])),
        ("a PING flood", h2::frame(kind::PING, 0, 0, &[7; 8])),
        (
            "a WINDOW_UPDATE flood",
            h2::frame(kind::WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes()),
        ),
        // PRIORITY on a stream never opened: allowed, and costs work.
        (
            "a PRIORITY flood",
            h2::frame(kind::PRIORITY, 0, 101, &[0, 0, 0, 0, 16]),
        ),
    ] {
        let mut client = H2Client::connect(server.addr()).unwrap();
        let flood: Vec<u8> = (0..1500).flat_map(|_| frame.iter().copied()).collect();
        let _ = client.send_raw(&flood);
        let code = expect_goaway_and_close(&mut client, what);
        assert_eq!(code, error::ENHANCE_YOUR_CALM, "{what}");
    }
}

fn window_overflow_is_a_flow_control_error(backend: BackendKind) {
    let (server, _events) = echo_server(backend, |b| b);
    // The connection's window: 65,535 + 2^31 - 1.
    let mut client = H2Client::connect(server.addr()).unwrap();
    client.window_update(0, h2::MAX_WINDOW).unwrap();
    let code = expect_goaway_and_close(&mut client, "the connection's window overflowing");
    assert_eq!(code, error::FLOW_CONTROL_ERROR);

    // A stream's: the stream is reset, or the connection goes.
    let mut client = H2Client::connect(server.addr()).unwrap();
    let ws = client.websocket("/overflow").unwrap();
    let other = client.websocket("/other").unwrap();
    client.window_update(ws, h2::MAX_WINDOW).unwrap();
    let code = client
        .wait_for("RST_STREAM or GOAWAY", |e| match e {
            Event::RstStream { stream, code } if *stream == ws => Some(*code),
            Event::GoAway(goaway) => Some(goaway.code),
            _ => None,
        })
        .unwrap();
    assert_eq!(code, error::FLOW_CONTROL_ERROR);
    if client.goaway().is_none() {
        client.send_ws_text(other, "still").unwrap();
        client.expect_ws_text(other, "still");
    } else {
        client.expect_closed().unwrap();
    }
}

/// DATA past the window the server granted: a flow-control error (of the
/// stream, or of the connection). The server's stream window is 1 KiB (the
/// least it takes) here, and one DATA frame of 2,000 bytes passes it before
/// the server could grant more.
fn data_past_the_window_is_a_flow_control_error(backend: BackendKind) {
    let (server, _events) = echo_server(backend, |b| {
        h2_with(
            b,
            Http2 {
                initial_window_size: 1024,
                ..Http2::default()
            },
        )
    });
    let mut client = H2Client::connect(server.addr()).unwrap();
    assert_eq!(
        client.server_setting(setting::INITIAL_WINDOW_SIZE),
        Some(1024)
    );
    let ws = client.websocket("/greedy").unwrap();
    let other = client.websocket("/other").unwrap();
    // Within the window, 1 KiB at a time: the server grants more.
    let fits = "f".repeat(3000);
    client.send_ws_text(other, &fits).unwrap();
    client.expect_ws_text(other, &fits);
    // Past it.
    let message = ringws_tests::masked_frame(true, OpCode::Binary, &[1; 2000 - 8]);
    assert_eq!(message.len(), 2000);
    let _ = client.send_frame(kind::DATA, 0, ws, &message);
    let code = client
        .wait_for("RST_STREAM or GOAWAY", |e| match e {
            Event::RstStream { stream, code } if *stream == ws => Some(*code),
            Event::GoAway(goaway) => Some(goaway.code),
            _ => None,
        })
        .unwrap();
    assert_eq!(code, error::FLOW_CONTROL_ERROR);
    if client.goaway().is_none() {
        client.send_ws_text(other, "still").unwrap();
        client.expect_ws_text(other, "still");
    } else {
        client.expect_closed().unwrap();
    }
}

/// Connection errors (RFC 9113): GOAWAY with the error's code, then the end.
fn protocol_errors_end_the_connection(backend: BackendKind) {
    let (server, _events) = echo_server(backend, |b| b);
    let get = |client: &mut H2Client| {
        client.header_block(&[
            (":method", "GET"),
            (
                ":scheme",
                if client.stream().is_tls() {
                    "https"
                } else {
                    "http"
                },
            ),
            (":authority", "localhost"),
            (":path", "/health"),
        ])
    };
    type Breaker = fn(&mut H2Client, Vec<u8>) -> std::io::Result<()>;
    let cases: [(&str, &[u32], Breaker); 7] = [
        (
            "HEADERS on an even stream",
            &[error::PROTOCOL_ERROR],
            |c, block| c.send_header_block(2, &block, true),
        ),
        (
            // Stream 3 is closed (implicitly, by 5): STREAM_CLOSED is
            // allowed too (RFC 9113 section 5.1).
            "a stream id going back",
            &[error::PROTOCOL_ERROR, error::STREAM_CLOSED],
            |c, block| {
                c.send_header_block(5, &block, true)?;
                c.read_response(5)?;
                c.send_header_block(3, &block, true)
            },
        ),
        ("DATA on stream 0", &[error::PROTOCOL_ERROR], |c, _| {
            c.send_frame(kind::DATA, 0, 0, b"data")
        }),
        ("SETTINGS on a stream", &[error::PROTOCOL_ERROR], |c, _| {
            c.send_frame(kind::SETTINGS, 0, 1, &[])
        }),
        (
            "SETTINGS_INITIAL_WINDOW_SIZE past 2^31-1",
            &[error::FLOW_CONTROL_ERROR],
            |c, _| c.settings(&[(setting::INITIAL_WINDOW_SIZE, 1 << 31)]),
        ),
        (
            "SETTINGS_ENABLE_PUSH = 2",
            &[error::PROTOCOL_ERROR],
            |c, _| c.settings(&[(setting::ENABLE_PUSH, 2)]),
        ),
        (
            "a frame past SETTINGS_MAX_FRAME_SIZE",
            &[error::FRAME_SIZE_ERROR],
            |c, _| c.send_frame(kind::PING, 0, 0, &vec![0; 16_385]),
        ),
    ];
    for (what, expected, breaker) in cases {
        let mut client = H2Client::connect(server.addr()).unwrap();
        let block = get(&mut client);
        let _ = breaker(&mut client, block);
        let code = expect_goaway_and_close(&mut client, what);
        assert!(
            expected.contains(&code),
            "{what}: {} instead of {:?}",
            h2::error_name(code),
            expected
                .iter()
                .map(|c| h2::error_name(*c))
                .collect::<Vec<_>>()
        );
    }
}

fn malformed_requests_reset_their_stream_only(backend: BackendKind) {
    let (server, events) = echo_server(backend, |b| b.metrics_route("/metrics"));
    let mut client = H2Client::connect(server.addr()).unwrap();
    let good = client.websocket("/good").unwrap();
    let scheme = if client.stream().is_tls() {
        "https"
    } else {
        "http"
    };
    let authority = client.authority().to_owned();
    let connect = |extra: (&'static str, &'static str)| -> Vec<(String, String)> {
        let mut fields: Vec<(String, String)> = [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", scheme),
            (":path", "/bad"),
            (":authority", authority.as_str()),
            ("sec-websocket-version", "13"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
        fields.push((extra.0.to_owned(), extra.1.to_owned()));
        fields
    };
    // What is wrong, the fields, END_STREAM.
    type Case = (&'static str, Vec<(String, String)>, bool);
    let cases: Vec<Case> = vec![
        ("an uppercase field name", connect(("X-Upper", "1")), false),
        (
            "a connection field",
            connect(("connection", "keep-alive")),
            false,
        ),
        ("an upgrade field", connect(("upgrade", "websocket")), false),
        ("te other than trailers", connect(("te", "gzip")), false),
        (
            ":protocol with GET",
            [
                (":method", "GET"),
                (":protocol", "websocket"),
                (":scheme", scheme),
                (":path", "/bad"),
                (":authority", authority.as_str()),
            ]
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
            true,
        ),
        (
            "CONNECT with :protocol without :path",
            connect(("sec-websocket-protocol", "chat"))
                .into_iter()
                .filter(|(n, _)| n != ":path")
                .collect(),
            false,
        ),
        (
            "a pseudo-header after a regular field",
            {
                let mut fields = connect(("x-fine", "1"));
                fields.push((":foo".into(), "bar".into()));
                fields
            },
            false,
        ),
    ];
    for (what, fields, end_stream) in &cases {
        let s = client.take_stream_id();
        let fields: Vec<(&str, &str)> = fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        client.send_headers(s, &fields, *end_stream).unwrap();
        let code = client
            .expect_reset(s)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(code, error::PROTOCOL_ERROR, "{what}");
        // The connection serves on: the open stream echoes, a new one opens.
        client.send_ws_text(good, what).unwrap();
        client.expect_ws_text(good, what);
        assert!(client.goaway().is_none(), "{what}: {:?}", client.goaway());
    }
    let fresh = client.websocket("/fresh").unwrap();
    client.send_ws_text(fresh, "fresh").unwrap();
    client.expect_ws_text(fresh, "fresh");
    // No malformed request reached the handler.
    assert!(
        !events
            .take_all()
            .iter()
            .any(|e| matches!(e, ServerEvent::Open { path, .. } if path == "/bad")),
        "a malformed request was upgraded"
    );
    for s in [good, fresh] {
        client.close_ws(s, 1000, "").unwrap();
    }
    assert_eq!(metric(&server, "ringws_http2_errors").unwrap_or(0), 0);
}

// ---------------------------------------------------------------------------
// Shutdown, HTTP/1.1 beside HTTP/2
// ---------------------------------------------------------------------------

fn shutdown_sends_goaway_and_closes_websockets_with_1001(backend: BackendKind) {
    let (server, events) = echo_server(backend, |b| b);
    let mut client = H2Client::connect(server.addr()).unwrap();
    let streams: Vec<u32> = (0..3)
        .map(|i| client.websocket(&format!("/s{i}")).unwrap())
        .collect();
    let ids: Vec<ConnId> = (0..3).map(|i| opened(&events, &format!("/s{i}"))).collect();
    let (done_tx, done_rx) = mpsc::channel();
    let handle = server.handle().clone();
    let started = Instant::now();
    thread::spawn(move || {
        handle.shutdown(Duration::from_secs(3));
        let _ = done_tx.send(());
    });
    let goaway = client.expect_goaway().unwrap();
    assert_eq!(goaway.code, error::NO_ERROR, "{goaway:?}");
    assert!(goaway.last_stream >= *streams.last().unwrap(), "{goaway:?}");
    for &s in &streams {
        client.expect_ws_close(s, 1001);
        client.send_ws_close_end(s, 1001, "").unwrap();
    }
    for &s in &streams {
        client.expect_end_stream(s).unwrap();
    }
    for closed in closes_of(&events, &ids) {
        assert_eq!(closed, (1001, CloseCause::Shutdown));
    }
    // Every stream done both ways: the connection ends without waiting for
    // the grace period (shutdown itself returns when the grace is over, as
    // over HTTP/1.1).
    client.expect_closed().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the connection outlived its streams: {:?}",
        started.elapsed()
    );
    done_rx.recv_timeout(SOON).expect("shutdown returns");
}

fn http1_is_still_served_beside_http2(backend: BackendKind) {
    let (server, _events) = echo_server(backend, |b| b);
    let addr = server.addr();
    let mut h2 = H2Client::connect(addr).unwrap();
    let ws2 = h2.websocket("/h2").unwrap();
    // HTTP/1.1: ALPN http/1.1 under TLS (Stream::connect's default), the
    // request line on a plain listener taking prior knowledge.
    let mut h1 = Client::connect(addr).unwrap();
    if transport() == Transport::Tls {
        assert_eq!(
            h1.stream().alpn_protocol().as_deref(),
            Some(&b"http/1.1"[..])
        );
        // No ALPN at all: HTTP/1.1 too.
        let stream =
            Stream::connect_tls(addr, ringws_tests::pki().client_alpn(&[]), "localhost").unwrap();
        assert_eq!(stream.alpn_protocol(), None);
        let mut plain = Client::connect_over(stream, addr, &ConnectOptions::default()).unwrap();
        plain.send_text("no alpn").unwrap();
        plain.expect_text("no alpn");
        // Both offered: the server prefers h2.
        let stream = Stream::connect_tls(
            addr,
            ringws_tests::pki().client_alpn(&[&b"http/1.1"[..], &b"h2"[..]]),
            "localhost",
        )
        .unwrap();
        assert_eq!(stream.alpn_protocol().as_deref(), Some(&b"h2"[..]));
    }
    h1.send_text("over HTTP/1.1").unwrap();
    h1.expect_text("over HTTP/1.1");
    let reply =
        HttpReply::parse(&raw_http(addr, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").unwrap());
    assert_eq!((reply.status, reply.text().as_str()), (200, "ok\n"));
    h2.send_ws_text(ws2, "over HTTP/2").unwrap();
    h2.expect_ws_text(ws2, "over HTTP/2");
    h1.close_handshake(1000, "").unwrap();
    h2.close_ws(ws2, 1000, "").unwrap();
}

/// Plain listeners without prior knowledge (the default) do not take the
/// HTTP/2 preface.
fn without_prior_knowledge_the_preface_is_not_http2(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let mut bytes = h2::PREFACE.to_vec();
    bytes.extend(h2::frame(kind::SETTINGS, 0, 0, &[]));
    let answer = raw_http(server.addr(), &bytes).unwrap_or_default();
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    // WebSockets over HTTP/1.1 as ever.
    let mut client = Client::connect(server.addr()).unwrap();
    client.send_text("h1").unwrap();
    client.expect_text("h1");
}

/// HTTP/2 off on TLS (`Http2 { tls: false }`): a client offering h2 and
/// http/1.1 gets http/1.1.
fn with_http2_off_tls_negotiates_http1(backend: BackendKind) {
    let server = start(
        backend,
        |b| {
            b.http2(Http2 {
                tls: false,
                ..Http2::default()
            })
        },
        Echo::new,
    );
    let addr = server.addr();
    let config = ringws_tests::pki().client_alpn(&[&b"h2"[..], &b"http/1.1"[..]]);
    let stream = Stream::connect_tls(addr, config, "localhost").unwrap();
    assert_eq!(stream.alpn_protocol().as_deref(), Some(&b"http/1.1"[..]));
    let mut client = Client::connect_over(stream, addr, &ConnectOptions::default()).unwrap();
    client.send_text("h1").unwrap();
    client.expect_text("h1");
}

backend_tests!(
    echo_over_one_stream_and_end_stream_after_the_close,
    fifty_streams_on_one_connection_echo_interleaved,
    subprotocol_and_deflate_are_negotiated,
    a_deferred_upgrade_over_http2,
    refused_upgrades_are_responses_with_a_body,
    on_http_and_metrics_over_http2,
    a_client_reset_is_an_abnormal_close_of_that_stream_only,
    a_lost_connection_closes_every_stream_with_1006,
    a_stream_without_window_stalls_alone,
    websocket_frames_inside_a_stream,
    streams_past_the_limit_are_refused,
    rapid_reset_gets_goaway,
    continuation_floods_get_goaway,
    control_frame_floods_get_goaway,
    window_overflow_is_a_flow_control_error,
    data_past_the_window_is_a_flow_control_error,
    protocol_errors_end_the_connection,
    malformed_requests_reset_their_stream_only,
    shutdown_sends_goaway_and_closes_websockets_with_1001,
    http1_is_still_served_beside_http2,
);

/// Tests of one transport only (modules of their own for the macro's).
mod plain_only {
    use super::*;

    backend_tests!(plain: without_prior_knowledge_the_preface_is_not_http2);
}

mod tls_only {
    use super::*;

    backend_tests!(tls: with_http2_off_tls_negotiates_http1);
}
