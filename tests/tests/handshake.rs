//! The opening handshake over real sockets: what is accepted, what is refused
//! with which status, handler routes and subprotocols, and odd but valid ways
//! of sending the request.

use std::io::{Read, Write};

use ringws::BackendKind;
use ringws::proto::frame::OpCode;
use ringws_tests::{
    Client, ConnectOptions, Echo, HttpReply, Msg, ServerEvent, events, masked_frame, raw_head,
    raw_http, refusal_status, start,
};

/// The key of RFC 6455 section 1.3 and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A request with this request line and these header lines.
fn request(request_line: &str, headers: &[&str]) -> Vec<u8> {
    let mut out = format!("{request_line}\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A valid upgrade request for `path` plus `extra` header lines.
fn upgrade(path: &str, extra: &[&str]) -> Vec<u8> {
    let mut headers = vec![
        "Host: localhost".to_owned(),
        "Upgrade: websocket".to_owned(),
        "Connection: Upgrade".to_owned(),
        format!("Sec-WebSocket-Key: {KEY}"),
        "Sec-WebSocket-Version: 13".to_owned(),
    ];
    headers.extend(extra.iter().map(|h| (*h).to_owned()));
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    request(&format!("GET {path} HTTP/1.1"), &headers)
}

fn valid_upgrade_gets_101_with_accept(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let (mut stream, head) = raw_head(server.addr(), &upgrade("/", &[])).unwrap();
    let reply = HttpReply::parse(&head);
    assert_eq!(reply.status, 101, "{reply:?}");
    assert_eq!(reply.header("Sec-WebSocket-Accept"), Some(ACCEPT));
    assert!(
        reply
            .header("Upgrade")
            .unwrap()
            .eq_ignore_ascii_case("websocket")
    );
    assert!(
        reply
            .header("Connection")
            .unwrap()
            .to_ascii_lowercase()
            .contains("upgrade")
    );
    assert_eq!(
        reply.header("X-Ringws-Test"),
        Some("yes"),
        "handler header missing"
    );
    assert_eq!(
        reply.header("Sec-WebSocket-Protocol"),
        None,
        "no protocol was offered"
    );
    assert!(reply.body.is_empty(), "nothing may follow the 101 yet");
    // The connection speaks WebSocket now: an unmasked server frame comes back.
    stream
        .write_all(&masked_frame(true, OpCode::Text, b"hi"))
        .unwrap();
    let mut echo = [0u8; 4];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"\x81\x02hi");
}

fn invalid_requests_are_refused_with_the_right_status(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let key = format!("Sec-WebSocket-Key: {KEY}");
    let key = key.as_str();
    let base = [
        "Host: localhost",
        "Upgrade: websocket",
        "Connection: Upgrade",
    ];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        base.iter().chain(extra).copied().collect()
    }
    /// What, request, status, and a header that must be present with this value.
    type Case<'a> = (&'a str, Vec<u8>, u16, Option<(&'a str, &'a str)>);
    let cases: Vec<Case<'_>> = vec![
        (
            "missing key",
            request(
                "GET / HTTP/1.1",
                &with(&base, &["Sec-WebSocket-Version: 13"]),
            ),
            400,
            None,
        ),
        (
            "key not 16 bytes",
            request(
                "GET / HTTP/1.1",
                &with(
                    &base,
                    &["Sec-WebSocket-Key: c2hvcnQ=", "Sec-WebSocket-Version: 13"],
                ),
            ),
            400,
            None,
        ),
        (
            "bad version",
            request(
                "GET / HTTP/1.1",
                &with(&base, &[key, "Sec-WebSocket-Version: 8"]),
            ),
            426,
            Some(("Sec-WebSocket-Version", "13")),
        ),
        (
            "missing version",
            request("GET / HTTP/1.1", &with(&base, &[key])),
            426,
            Some(("Sec-WebSocket-Version", "13")),
        ),
        (
            "POST",
            request(
                "POST / HTTP/1.1",
                &with(&base, &[key, "Sec-WebSocket-Version: 13"]),
            ),
            405,
            Some(("Allow", "GET")),
        ),
        (
            "HTTP/1.0",
            request(
                "GET / HTTP/1.0",
                &with(&base, &[key, "Sec-WebSocket-Version: 13"]),
            ),
            400,
            None,
        ),
        (
            "plain GET",
            request("GET / HTTP/1.1", &["Host: localhost"]),
            426,
            Some(("Sec-WebSocket-Version", "13")),
        ),
        (
            "missing Host",
            request(
                "GET / HTTP/1.1",
                &[
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    key,
                    "Sec-WebSocket-Version: 13",
                ],
            ),
            400,
            None,
        ),
        (
            "Connection without Upgrade",
            request(
                "GET / HTTP/1.1",
                &[
                    "Host: localhost",
                    "Upgrade: websocket",
                    "Connection: keep-alive",
                    key,
                    "Sec-WebSocket-Version: 13",
                ],
            ),
            400,
            None,
        ),
        ("garbage", b"NOT HTTP AT ALL\r\n\r\n".to_vec(), 400, None),
    ];
    for (what, bytes, status, header) in cases {
        let reply = HttpReply::parse(&raw_http(server.addr(), &bytes).unwrap());
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        if let Some((name, value)) = header {
            assert_eq!(reply.header(name), Some(value), "{what}: {reply:?}");
        }
        assert_eq!(
            reply.header("Content-Length").and_then(|l| l.parse().ok()),
            Some(reply.body.len()),
            "{what}: the body must match Content-Length"
        );
        assert!(
            !reply.body.is_empty(),
            "{what}: an error response explains itself"
        );
    }
    // The server is still fine.
    let mut client = Client::connect(server.addr()).unwrap();
    client.send_text("still up").unwrap();
    client.expect_text("still up");
}

fn plain_http_route_and_426_elsewhere(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let health = HttpReply::parse(
        &raw_http(
            server.addr(),
            &request("GET /health HTTP/1.1", &["Host: x"]),
        )
        .unwrap(),
    );
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(health.text(), "ok\n");
    let with_query = HttpReply::parse(
        &raw_http(
            server.addr(),
            &request("GET /health?verbose=1 HTTP/1.1", &["Host: x"]),
        )
        .unwrap(),
    );
    assert_eq!(with_query.status, 200, "the query is not part of the path");
    let other = HttpReply::parse(
        &raw_http(server.addr(), &request("GET /other HTTP/1.1", &["Host: x"])).unwrap(),
    );
    assert_eq!(other.status, 426, "{other:?}");
    assert_eq!(other.header("Upgrade"), Some("websocket"));
}

fn handler_rejects_with_its_status_and_body(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let reply = HttpReply::parse(&raw_http(server.addr(), &upgrade("/reject", &[])).unwrap());
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(reply.text(), "unauthorized");
    assert_eq!(reply.header("WWW-Authenticate"), Some("Bearer"));
    assert_eq!(reply.header("Sec-WebSocket-Accept"), None);

    let refused = Client::connect_with(server.addr(), "/auth", &[], &[]).unwrap_err();
    assert_eq!(refusal_status(&refused), Some(401), "{refused}");
    let mut client = Client::connect_with(
        server.addr(),
        "/auth",
        &[],
        &[("Authorization", "Bearer secret")],
    )
    .unwrap();
    client.send_text("authorized").unwrap();
    client.expect_text("authorized");
}

fn subprotocol_chosen_by_the_handler(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let client = Client::connect_with(server.addr(), "/", &["chat.v1", "chat.v2"], &[]).unwrap();
    assert_eq!(
        client.protocol(),
        Some("chat.v2"),
        "{}",
        client.response_head()
    );
    let client = Client::connect_with(server.addr(), "/", &["chat.v1"], &[]).unwrap();
    assert_eq!(client.protocol(), None, "{}", client.response_head());

    let (_stream, head) = raw_head(
        server.addr(),
        &upgrade("/", &["Sec-WebSocket-Protocol: chat.v2, chat.v1"]),
    )
    .unwrap();
    let reply = HttpReply::parse(&head);
    assert_eq!(reply.status, 101);
    assert_eq!(reply.header("Sec-WebSocket-Protocol"), Some("chat.v2"));
}

fn protocol_not_offered_is_a_500(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let reply = HttpReply::parse(
        &raw_http(
            server.addr(),
            &upgrade("/bad-protocol", &["Sec-WebSocket-Protocol: chat.v1"]),
        )
        .unwrap(),
    );
    assert_eq!(reply.status, 500, "{reply:?}");
    let reply = HttpReply::parse(&raw_http(server.addr(), &upgrade("/bad-protocol", &[])).unwrap());
    assert_eq!(reply.status, 500, "{reply:?}");
}

fn oversized_headers_are_a_431(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let big = format!("X-Big: {}", "a".repeat(9000));
    let reply = HttpReply::parse(&raw_http(server.addr(), &upgrade("/", &[&big])).unwrap());
    assert_eq!(reply.status, 431, "{reply:?}");

    let many: Vec<String> = (0..100).map(|i| format!("X-H{i}: v")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let reply = HttpReply::parse(&raw_http(server.addr(), &upgrade("/", &many)).unwrap());
    assert_eq!(reply.status, 431, "{reply:?}");

    // A configured limit applies too.
    let small = start(backend, |b| b.max_handshake_bytes(256), Echo::new);
    let header = format!("X-Pad: {}", "b".repeat(300));
    let reply = HttpReply::parse(&raw_http(small.addr(), &upgrade("/", &[&header])).unwrap());
    assert_eq!(reply.status, 431, "{reply:?}");
}

fn request_in_one_byte_writes_still_upgrades(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let options = ConnectOptions {
        byte_by_byte: true,
        ..ConnectOptions::default()
    };
    let mut client = Client::connect_opts(server.addr(), &options).unwrap();
    client.send_text("slowly but surely").unwrap();
    client.expect_text("slowly but surely");
}

fn frames_pipelined_behind_the_request_are_processed(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let mut pipelined = masked_frame(true, OpCode::Text, b"early");
    pipelined.extend(masked_frame(true, OpCode::Ping, b"p"));
    pipelined.extend(masked_frame(true, OpCode::Binary, &[1, 2, 3]));
    let options = ConnectOptions {
        pipelined,
        ..ConnectOptions::default()
    };
    let mut client = Client::connect_opts(server.addr(), &options).unwrap();
    client.expect_text("early");
    assert_eq!(client.msg(), Msg::Pong(b"p".to_vec()));
    assert_eq!(client.msg(), Msg::Binary(vec![1, 2, 3]));

    // The same, written one byte at a time.
    let options = ConnectOptions {
        pipelined: masked_frame(true, OpCode::Text, b"trickled"),
        byte_by_byte: true,
        ..ConnectOptions::default()
    };
    let mut client = Client::connect_opts(server.addr(), &options).unwrap();
    client.expect_text("trickled");
}

fn peer_address_is_reported(backend: BackendKind) {
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let (tx, events) = events();
    let server = start(
        backend,
        |b| if ipv6 { b.bind("[::1]:0") } else { b },
        move || Echo::reporting(tx.clone()),
    );
    let mut addrs = server.local_addrs().to_vec();
    if !ipv6 {
        eprintln!("no IPv6 loopback here: IPv4 only");
    }
    assert_eq!(addrs.len(), if ipv6 { 2 } else { 1 });
    addrs.push(server.addr());
    for addr in addrs {
        let mut client = Client::connect(addr).unwrap();
        let peer = events.wait("on_open", |e| match e {
            ServerEvent::Open { peer, .. } => Some(*peer),
            _ => None,
        });
        assert_eq!(
            peer,
            client.stream().local_addr().unwrap(),
            "connected to {addr}"
        );
        client.send_text("where am I").unwrap();
        client.expect_text("where am I");
    }
}

ringws_tests::backend_tests! {
    valid_upgrade_gets_101_with_accept,
    invalid_requests_are_refused_with_the_right_status,
    plain_http_route_and_426_elsewhere,
    handler_rejects_with_its_status_and_body,
    subprotocol_chosen_by_the_handler,
    protocol_not_offered_is_a_500,
    oversized_headers_are_a_431,
    request_in_one_byte_writes_still_upgrades,
    frames_pipelined_behind_the_request_are_processed,
    peer_address_is_reported,
}
