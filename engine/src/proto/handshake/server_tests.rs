//! The server handshake's tests (`server.rs`).

use super::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The header lines of a minimal valid request.
const BASE: [&str; 5] = [
    "Host: example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
];

fn request_with(first_line: &str, lines: &[&str]) -> Vec<u8> {
    let mut out = format!("{first_line}\r\n");
    for line in lines {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn request(lines: &[&str]) -> Vec<u8> {
    request_with("GET /chat HTTP/1.1", lines)
}

/// BASE without the header called `name`, plus `extra`.
fn base_without(name: &str, extra: &[&str]) -> Vec<u8> {
    let mut lines: Vec<&str> = BASE
        .iter()
        .copied()
        .filter(|l| {
            !l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .collect();
    lines.extend_from_slice(extra);
    request(&lines)
}

fn check_with(buf: &[u8], limits: &HandshakeLimits) -> Result<Option<usize>, HandshakeError> {
    let mut storage = HeaderStorage::new();
    parse_request(buf, limits, &mut storage).map(|r| r.map(|(_, consumed)| consumed))
}

fn check(buf: &[u8]) -> Result<Option<usize>, HandshakeError> {
    check_with(buf, &HandshakeLimits::default())
}

struct Parsed {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Parsed {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a complete response with httparse, checking Content-Length.
fn parse_http_response(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = resp.parse(bytes).expect("valid HTTP") else {
        panic!("incomplete response: {:?}", String::from_utf8_lossy(bytes));
    };
    assert_eq!(resp.version, Some(1));
    let parsed = Parsed {
        status: resp.code.unwrap(),
        headers: resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8(h.value.to_vec()).unwrap(),
                )
            })
            .collect(),
        body: bytes[head..].to_vec(),
    };
    if let Some(len) = parsed.header("Content-Length") {
        assert_eq!(len.parse::<usize>().unwrap(), parsed.body.len());
    }
    parsed
}

/// Checks the error's status and that its response is valid HTTP with it.
fn assert_rejected(buf: &[u8], expected: HandshakeError, status: u16) -> Parsed {
    let err = check(buf).expect_err("request must be rejected");
    assert_eq!(err, expected);
    assert_eq!(err.status(), status);
    let mut out = Vec::new();
    err.write_response(&mut out);
    let parsed = parse_http_response(&out);
    assert_eq!(parsed.status, status);
    assert!(
        parsed.header("Connection").unwrap().contains("close"),
        "Connection: close"
    );
    assert_eq!(
        parsed.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(parsed.body, format!("{err}\n").as_bytes());
    parsed
}

#[test]
fn valid_request_accessors_borrow_from_input() {
    let buf = request_with(
        "GET /chat/room?id=7&x=y HTTP/1.1",
        &[
            "Host: example.com:8080 ",
            "Origin: https://example.com",
            "User-Agent: test",
            "upgrade: websocket",
            "connection: Upgrade",
            "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
            "sec-websocket-version: 13",
            "X-Custom:  value  ",
        ],
    );
    let mut storage = HeaderStorage::new();
    let (req, consumed) = parse_request(&buf, &HandshakeLimits::default(), &mut storage)
        .unwrap()
        .unwrap();
    assert_eq!(consumed, buf.len());
    assert_eq!(req.method(), "GET");
    assert_eq!(req.target(), "/chat/room?id=7&x=y");
    assert_eq!(req.path(), "/chat/room");
    assert_eq!(req.query(), Some("id=7&x=y"));
    assert_eq!(req.host(), "example.com:8080");
    assert_eq!(req.origin(), Some("https://example.com"));
    assert_eq!(req.key(), KEY);
    assert_eq!(req.header("x-custom"), Some("value"));
    assert_eq!(req.header("USER-AGENT"), Some("test"));
    assert_eq!(req.header("missing"), None);
    assert_eq!(req.headers().count(), 8);
    assert_eq!(req.headers().nth(2), Some(("User-Agent", &b"test"[..])));
    assert_eq!(req.protocols().count(), 0);
    assert_eq!(req.extensions().count(), 0);
    // Borrowed, not copied.
    let range = buf.as_ptr_range();
    assert!(range.contains(&req.host().as_ptr()));
    assert!(range.contains(&req.path().as_ptr()));
}

#[test]
fn path_without_query() {
    let buf = request_with("GET / HTTP/1.1", &BASE);
    let mut storage = HeaderStorage::new();
    let (req, _) = parse_request(&buf, &HandshakeLimits::default(), &mut storage)
        .unwrap()
        .unwrap();
    assert_eq!(req.path(), "/");
    assert_eq!(req.query(), None);
    assert_eq!(req.origin(), None);
}

#[test]
fn incremental_parse_byte_by_byte() {
    let buf = request(&[
        "Host: example.com",
        "Origin: https://example.com",
        "Upgrade: websocket",
        "Connection: keep-alive, Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
    ]);
    for n in 0..buf.len() {
        assert_eq!(check(&buf[..n]), Ok(None), "prefix of {n} bytes");
    }
    assert_eq!(check(&buf), Ok(Some(buf.len())));
}

#[test]
fn pipelined_frame_after_head_is_not_consumed() {
    let head = request(&BASE);
    let mut buf = head.clone();
    // A masked text frame "Hi" right behind the request.
    buf.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'H' ^ 1, b'i' ^ 2]);
    assert_eq!(check(&buf), Ok(Some(head.len())));
}

#[test]
fn non_get_method_is_405_with_allow() {
    let buf = request_with("POST /chat HTTP/1.1", &BASE);
    let resp = assert_rejected(&buf, HandshakeError::MethodNotAllowed, 405);
    assert_eq!(resp.header("Allow"), Some("GET"));
    // Methods are case-sensitive.
    let buf = request_with("get /chat HTTP/1.1", &BASE);
    assert_rejected(&buf, HandshakeError::MethodNotAllowed, 405);
}

#[test]
fn http_1_0_is_400() {
    let buf = request_with("GET /chat HTTP/1.0", &BASE);
    let resp = assert_rejected(&buf, HandshakeError::HttpVersion, 400);
    assert_eq!(resp.body, b"HTTP/1.1 or later required\n");
}

#[test]
fn malformed_http_is_400() {
    let bad_header = request(&["Host: example.com", "Bad Header Line"]);
    assert_rejected(&bad_header, HandshakeError::Malformed, 400);
    let bad_version = request_with("GET /chat HTTP/2.0", &BASE);
    assert_rejected(&bad_version, HandshakeError::Malformed, 400);
    assert_rejected(
        b"\x16\x03\x01\x02\x00\r\n\r\n",
        HandshakeError::Malformed,
        400,
    );
}

#[test]
fn missing_or_duplicate_host_is_400() {
    assert_rejected(&base_without("Host", &[]), HandshakeError::MissingHost, 400);
    let dup = request(&[
        BASE[0],
        "Host: evil.example",
        BASE[1],
        BASE[2],
        BASE[3],
        BASE[4],
    ]);
    assert_rejected(&dup, HandshakeError::DuplicateHost, 400);
}

#[test]
fn plain_http_request_is_426_upgrade_required() {
    let plain = request_with(
        "GET / HTTP/1.1",
        &["Host: example.com", "Accept: text/html"],
    );
    let resp = assert_rejected(&plain, HandshakeError::UpgradeRequired, 426);
    assert_eq!(resp.header("Upgrade"), Some("websocket"));
    assert_eq!(resp.header("Sec-WebSocket-Version"), Some("13"));
    assert!(resp.header("Connection").unwrap().contains("Upgrade"));
    let other_upgrade = base_without("Upgrade", &["Upgrade: h2c"]);
    assert_rejected(&other_upgrade, HandshakeError::UpgradeRequired, 426);
    let superstring = base_without("Upgrade", &["Upgrade: websockets"]);
    assert_rejected(&superstring, HandshakeError::UpgradeRequired, 426);
}

#[test]
fn connection_without_upgrade_token_is_400() {
    let missing = base_without("Connection", &[]);
    assert_rejected(&missing, HandshakeError::MissingConnectionUpgrade, 400);
    let keep_alive = base_without("Connection", &["Connection: keep-alive"]);
    assert_rejected(&keep_alive, HandshakeError::MissingConnectionUpgrade, 400);
}

#[test]
fn connection_keep_alive_upgrade_accepted() {
    let buf = base_without("Connection", &["Connection: keep-alive, Upgrade"]);
    assert_eq!(check(&buf), Ok(Some(buf.len())));
    let buf = base_without("Connection", &["Connection: keep-alive,upgrade ,close"]);
    assert_eq!(check(&buf), Ok(Some(buf.len())));
}

#[test]
fn upgrade_token_case_insensitive() {
    let buf = base_without("Upgrade", &["upgrade: WebSocket"]);
    assert_eq!(check(&buf), Ok(Some(buf.len())));
    let buf = base_without("Upgrade", &["UPGRADE: h2c, WEBSOCKET"]);
    assert_eq!(check(&buf), Ok(Some(buf.len())));
}

#[test]
fn tokens_spread_over_several_header_lines() {
    let buf = request(&[
        "Host: example.com",
        "Upgrade: h2c",
        "Upgrade: websocket",
        "Connection: keep-alive",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]);
    assert_eq!(check(&buf), Ok(Some(buf.len())));
}

#[test]
fn missing_or_duplicate_key_is_400() {
    assert_rejected(
        &base_without("Sec-WebSocket-Key", &[]),
        HandshakeError::MissingKey,
        400,
    );
    let dup = base_without(
        "Sec-WebSocket-Key",
        &[BASE[3], "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="],
    );
    assert_rejected(&dup, HandshakeError::DuplicateKey, 400);
}

#[test]
fn key_not_16_bytes_is_400() {
    use base64::engine::general_purpose::STANDARD;
    let key15 = format!("Sec-WebSocket-Key: {}", STANDARD.encode([7u8; 15]));
    let key17 = format!("Sec-WebSocket-Key: {}", STANDARD.encode([7u8; 17]));
    let key16 = format!("Sec-WebSocket-Key: {}", STANDARD.encode([7u8; 16]));
    for (line, ok) in [
        (key15.as_str(), false),
        (key17.as_str(), false),
        (key16.as_str(), true),
        ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ", false),
        ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==", false),
        ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!Q==", false),
        ("Sec-WebSocket-Key: ", false),
    ] {
        let buf = base_without("Sec-WebSocket-Key", &[line]);
        if ok {
            assert_eq!(check(&buf), Ok(Some(buf.len())), "{line}");
        } else {
            assert_rejected(&buf, HandshakeError::InvalidKey, 400);
        }
    }
}

#[test]
fn version_missing_or_not_13_is_426() {
    let resp = assert_rejected(
        &base_without("Sec-WebSocket-Version", &[]),
        HandshakeError::MissingVersion,
        426,
    );
    assert_eq!(resp.header("Sec-WebSocket-Version"), Some("13"));
    for v in ["8", "12", "14", "13, 8", ""] {
        let line = format!("Sec-WebSocket-Version: {v}");
        let buf = base_without("Sec-WebSocket-Version", &[&line]);
        let resp = assert_rejected(&buf, HandshakeError::UnsupportedVersion, 426);
        assert_eq!(resp.header("Sec-WebSocket-Version"), Some("13"));
    }
    let conflicting = base_without(
        "Sec-WebSocket-Version",
        &["Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"],
    );
    assert_rejected(&conflicting, HandshakeError::UnsupportedVersion, 426);
}

#[test]
fn non_utf8_needed_header_is_400_other_headers_raw() {
    let mut buf = base_without("Host", &[]);
    let at = buf.len() - 2;
    buf.splice(at..at, b"Host: caf\xe9\r\n".iter().copied());
    assert_rejected(&buf, HandshakeError::NonUtf8Header { name: "host" }, 400);

    let mut buf = request(&BASE);
    let at = buf.len() - 2;
    buf.splice(at..at, b"X-Latin1: caf\xe9\r\n".iter().copied());
    let mut storage = HeaderStorage::new();
    let (req, _) = parse_request(&buf, &HandshakeLimits::default(), &mut storage)
        .unwrap()
        .unwrap();
    assert_eq!(req.header("X-Latin1"), None);
    assert!(
        req.headers()
            .any(|(n, v)| n == "X-Latin1" && v == b"caf\xe9")
    );
}

#[test]
fn oversized_head_is_431() {
    let mut lines = BASE.to_vec();
    let filler = format!("X-Filler: {}", "a".repeat(9000));
    lines.push(&filler);
    let buf = request(&lines);
    let resp = assert_rejected(&buf, HandshakeError::HeadTooLarge, 431);
    assert_eq!(resp.status, 431);
    // Detected as soon as the limit is reached, before the head ends.
    assert_eq!(check(&buf[..8192]), Err(HandshakeError::HeadTooLarge));
    assert_eq!(check(&buf[..8191]), Ok(None));

    // A head of exactly `max_bytes` is accepted, one byte less is not.
    let buf = request(&BASE);
    let exact = HandshakeLimits {
        max_bytes: buf.len(),
        ..HandshakeLimits::default()
    };
    assert_eq!(check_with(&buf, &exact), Ok(Some(buf.len())));
    let short = HandshakeLimits {
        max_bytes: buf.len() - 1,
        ..HandshakeLimits::default()
    };
    assert_eq!(check_with(&buf, &short), Err(HandshakeError::HeadTooLarge));
}

#[test]
fn too_many_headers_is_431() {
    let extra: Vec<String> = (0..60).map(|i| format!("X-H{i}: {i}")).collect();
    let mut lines = BASE.to_vec();
    lines.extend(extra.iter().map(String::as_str));
    let buf = request(&lines);
    assert_rejected(&buf, HandshakeError::TooManyHeaders, 431);

    // Exactly at the limit is fine.
    let limits = HandshakeLimits {
        max_headers: lines.len(),
        ..HandshakeLimits::default()
    };
    assert_eq!(check_with(&buf, &limits), Ok(Some(buf.len())));
    // Limits above MAX_HEADERS are clamped.
    let extra: Vec<String> = (0..MAX_HEADERS).map(|i| format!("X-H{i}: {i}")).collect();
    let mut lines = BASE.to_vec();
    lines.extend(extra.iter().map(String::as_str));
    let huge = HandshakeLimits {
        max_bytes: 1 << 20,
        max_headers: usize::MAX,
    };
    assert_eq!(
        check_with(&request(&lines), &huge),
        Err(HandshakeError::TooManyHeaders)
    );
}

#[test]
fn multiple_protocol_headers_merged() {
    let buf = request(&[
        BASE[0],
        BASE[1],
        "Sec-WebSocket-Protocol: v2.chat, chat",
        BASE[2],
        "sec-websocket-protocol:superchat ,, mqtt",
        BASE[3],
        BASE[4],
    ]);
    let mut storage = HeaderStorage::new();
    let (req, _) = parse_request(&buf, &HandshakeLimits::default(), &mut storage)
        .unwrap()
        .unwrap();
    assert_eq!(
        req.protocols().collect::<Vec<_>>(),
        ["v2.chat", "chat", "superchat", "mqtt"]
    );
    assert!(req.offers_protocol("chat"));
    assert!(req.offers_protocol("mqtt"));
    assert!(!req.offers_protocol("Chat"));
    assert!(!req.offers_protocol("v2"));
}

#[test]
fn extension_offers_with_params_quotes_and_several_headers() {
    let buf = request(&[
        BASE[0],
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; server_max_window_bits=\"10\", permessage-deflate",
        BASE[1],
        BASE[2],
        BASE[3],
        BASE[4],
        "Sec-WebSocket-Extensions: x-foo; a=\"1,2\"; b",
    ]);
    let mut storage = HeaderStorage::new();
    let (req, _) = parse_request(&buf, &HandshakeLimits::default(), &mut storage)
        .unwrap()
        .unwrap();
    let offers: Vec<_> = req.extensions().collect();
    assert_eq!(offers.len(), 3);
    assert_eq!(offers[0].name(), "permessage-deflate");
    let params: Vec<_> = offers[0].params().collect();
    assert_eq!(params.len(), 2);
    assert_eq!(params[0].name, "client_max_window_bits");
    assert_eq!(params[0].value, None);
    assert_eq!(params[1].name, "server_max_window_bits");
    assert_eq!(params[1].value, Some("10"));
    assert_eq!(offers[1].name(), "permessage-deflate");
    assert_eq!(offers[1].params().count(), 0);
    assert_eq!(offers[2].name(), "x-foo");
    assert_eq!(offers[2].param("a").unwrap().value, Some("1,2"));
    assert_eq!(offers[2].param("b").unwrap().value, None);
}

#[test]
fn accept_response_for_rfc_sample() {
    let mut out = Vec::new();
    write_accept_response(&mut out, KEY, None, None, &[]).unwrap();
    assert_eq!(
        out,
        b"HTTP/1.1 101 Switching Protocols\r\n\
          Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
}

#[test]
fn accept_response_with_protocol_extensions_and_extra_headers() {
    let buf = request(&[
        BASE[0],
        BASE[1],
        BASE[2],
        BASE[3],
        BASE[4],
        "Sec-WebSocket-Protocol: chat, superchat",
    ]);
    let mut storage = HeaderStorage::new();
    let (req, _) = parse_request(&buf, &HandshakeLimits::default(), &mut storage)
        .unwrap()
        .unwrap();
    let mut out = b"previous".to_vec();
    req.write_accept(
        &mut out,
        Some("superchat"),
        Some("permessage-deflate; server_max_window_bits=10"),
        &[
            ("Set-Cookie", "session=1; HttpOnly"),
            ("X-Server", "ringws"),
        ],
    )
    .unwrap();
    assert!(out.starts_with(b"previous"));
    let resp = parse_http_response(&out[b"previous".len()..]);
    assert_eq!(resp.status, 101);
    assert!(resp.body.is_empty());
    assert_eq!(resp.header("Upgrade"), Some("websocket"));
    assert_eq!(resp.header("Connection"), Some("Upgrade"));
    assert_eq!(
        resp.header("Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(resp.header("Sec-WebSocket-Protocol"), Some("superchat"));
    assert_eq!(
        resp.header("Sec-WebSocket-Extensions"),
        Some("permessage-deflate; server_max_window_bits=10")
    );
    assert_eq!(resp.header("Set-Cookie"), Some("session=1; HttpOnly"));
    assert_eq!(resp.header("X-Server"), Some("ringws"));
}

#[test]
fn accept_rejects_unoffered_protocol() {
    let buf = request(&[
        BASE[0],
        BASE[1],
        BASE[2],
        BASE[3],
        BASE[4],
        "Sec-WebSocket-Protocol: chat",
    ]);
    let mut storage = HeaderStorage::new();
    let (req, _) = parse_request(&buf, &HandshakeLimits::default(), &mut storage)
        .unwrap()
        .unwrap();
    let mut out = Vec::new();
    assert_eq!(
        req.write_accept(&mut out, Some("mqtt"), None, &[]),
        Err(WriteError::ProtocolNotOffered("mqtt".into()))
    );
    assert!(out.is_empty());
    req.write_accept(&mut out, Some("chat"), None, &[]).unwrap();
    assert!(!out.is_empty());
}

#[test]
fn accept_response_header_injection_rejected() {
    type Case<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        &'a [(&'a str, &'a str)],
        WriteError,
    );
    let cases: [Case<'_>; 7] = [
        (
            None,
            None,
            &[("X-A", "1\r\nSet-Cookie: evil=1")],
            WriteError::HeaderValue("X-A".into()),
        ),
        (
            None,
            None,
            &[("X-A", "1\nb")],
            WriteError::HeaderValue("X-A".into()),
        ),
        (
            None,
            None,
            &[("X-A", "1\0")],
            WriteError::HeaderValue("X-A".into()),
        ),
        (
            None,
            None,
            &[("X-A\r\nEvil", "1")],
            WriteError::HeaderName("X-A\r\nEvil".into()),
        ),
        (
            None,
            None,
            &[("sec-websocket-accept", "x")],
            WriteError::ReservedHeader("sec-websocket-accept".into()),
        ),
        (
            Some("chat\r\nX-Evil: 1"),
            None,
            &[],
            WriteError::InvalidProtocol("chat\r\nX-Evil: 1".into()),
        ),
        (
            None,
            Some("permessage-deflate\r\nX-Evil: 1"),
            &[],
            WriteError::HeaderValue("Sec-WebSocket-Extensions".into()),
        ),
    ];
    for (protocol, extensions, extra, expected) in cases {
        let mut out = Vec::new();
        assert_eq!(
            write_accept_response(&mut out, KEY, protocol, extensions, extra),
            Err(expected)
        );
        assert!(out.is_empty(), "nothing written on error");
    }
}

#[test]
fn reject_response_for_upgrade_hook() {
    let mut out = Vec::new();
    write_reject_response(
        &mut out,
        401,
        &[
            ("WWW-Authenticate", "Bearer"),
            ("Content-Type", "text/plain"),
        ],
        b"login first",
    )
    .unwrap();
    assert!(out.starts_with(b"HTTP/1.1 401 Unauthorized\r\n"));
    let resp = parse_http_response(&out);
    assert_eq!(resp.status, 401);
    assert_eq!(resp.header("Connection"), Some("close"));
    assert_eq!(resp.header("WWW-Authenticate"), Some("Bearer"));
    assert_eq!(resp.body, b"login first");

    out.clear();
    write_reject_response(&mut out, 403, &[], b"").unwrap();
    assert!(out.starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
    let resp = parse_http_response(&out);
    assert_eq!(resp.status, 403);
    assert_eq!(resp.header("Content-Length"), Some("0"));

    out.clear();
    write_reject_response(&mut out, 499, &[], b"").unwrap();
    assert_eq!(parse_http_response(&out).status, 499);
}

#[test]
fn reject_response_checks_status_and_injection() {
    let mut out = Vec::new();
    for status in [0, 101, 199, 600, 1000] {
        assert_eq!(
            write_reject_response(&mut out, status, &[], b""),
            Err(WriteError::InvalidStatus(status))
        );
    }
    assert_eq!(
        write_reject_response(&mut out, 403, &[("X-Reason", "no\r\n\r\n<html>")], b""),
        Err(WriteError::HeaderValue("X-Reason".into()))
    );
    assert_eq!(
        write_reject_response(&mut out, 403, &[("Bad:Name", "x")], b""),
        Err(WriteError::HeaderName("Bad:Name".into()))
    );
    assert_eq!(
        write_reject_response(&mut out, 403, &[("Content-Length", "0")], b""),
        Err(WriteError::ReservedHeader("Content-Length".into()))
    );
    assert!(out.is_empty());
}

#[test]
fn every_error_response_is_valid_http() {
    use HandshakeError::*;
    let all = [
        HeadTooLarge,
        TooManyHeaders,
        Malformed,
        MethodNotAllowed,
        HttpVersion,
        MissingHost,
        DuplicateHost,
        UpgradeRequired,
        MissingConnectionUpgrade,
        MissingKey,
        DuplicateKey,
        InvalidKey,
        MissingVersion,
        UnsupportedVersion,
        NonUtf8Header { name: "origin" },
    ];
    for err in all {
        let mut out = Vec::new();
        err.write_response(&mut out);
        let resp = parse_http_response(&out);
        assert_eq!(resp.status, err.status(), "{err:?}");
        assert_eq!(resp.body, format!("{err}\n").as_bytes());
        let needs_version = matches!(err, UpgradeRequired | MissingVersion | UnsupportedVersion);
        assert_eq!(
            resp.header("Sec-WebSocket-Version").is_some(),
            needs_version,
            "{err:?}"
        );
        assert_eq!(
            resp.header("Allow").is_some(),
            err == MethodNotAllowed,
            "{err:?}"
        );
    }
}
