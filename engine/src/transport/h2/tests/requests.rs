//! Requests (RFC 9113 §8, RFC 8441 §4), responses, stream states.

use super::*;

/// A request's fields, owned.
type Fields = [(String, Vec<u8>)];

fn request_fields(evs: &[Ev]) -> (&str, Option<&str>, &Fields) {
    match evs {
        [
            Ev::Request {
                method,
                protocol,
                fields,
                ..
            },
        ] => (method, protocol.as_deref(), fields),
        _ => panic!("not one request: {evs:?}"),
    }
}

#[test]
fn the_rfc_8441_request_is_accepted() {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    let mut buf = client.headers(1, &WS_REQUEST, false);
    let mut reader = conn.h2.read(&mut buf);
    let Ok(Some(Event::Request {
        stream,
        request,
        end_stream,
    })) = reader.next(&mut conn.out, &mut conn.pool, 0)
    else {
        panic!("no request");
    };
    assert_eq!((stream, end_stream), (1, false));
    assert_eq!(request.method(), "CONNECT");
    assert_eq!(request.protocol(), Some("websocket"));
    assert_eq!(request.scheme(), Some("https"));
    assert_eq!(request.path(), Some("/chat"));
    assert_eq!(request.authority(), Some("server.example.com"));
    assert_eq!(request.field("sec-websocket-version"), Some(&b"13"[..]));
    assert_eq!(request.field("absent"), None);
    let fields: Vec<_> = request.fields().collect();
    assert_eq!(
        fields,
        [
            ("sec-websocket-protocol", &b"chat, superchat"[..]),
            ("sec-websocket-version", &b"13"[..])
        ]
    );
    assert_eq!(conn.h2.open_streams(), 1);
}

#[test]
fn plain_requests_and_plain_connect_are_accepted() {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    let get = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/"),
        ("te", "trailers"),
        ("cookie", "a=1"),
    ];
    let evs = conn.feed(&client.headers(1, &get, true));
    assert_eq!(request_fields(&evs).0, "GET");
    assert!(matches!(evs[0], Ev::Request { end: true, .. }));
    let connect = [(":method", "CONNECT"), (":authority", "example.com:443")];
    let evs = conn.feed(&client.headers(3, &connect, false));
    assert_eq!(request_fields(&evs).1, None);
}

#[test]
fn malformed_requests_are_refused_and_never_reach_the_runtime() {
    let ws = |replace: &[(&'static str, &'static str)],
              drop: &[&str]|
     -> Vec<(&'static str, &'static str)> {
        let mut fields: Vec<_> = WS_REQUEST
            .iter()
            .copied()
            .filter(|(n, _)| !drop.contains(n))
            .collect();
        fields.extend_from_slice(replace);
        fields
    };
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("missing :authority", ws(&[], &[":authority"])),
        ("missing :path", ws(&[], &[":path"])),
        ("missing :method", ws(&[], &[":method"])),
        (
            ":protocol without CONNECT",
            vec![
                (":method", "GET"),
                (":protocol", "websocket"),
                (":scheme", "https"),
                (":path", "/"),
                (":authority", "a"),
            ],
        ),
        ("uppercase name", ws(&[("X-Upper", "1")], &[])),
        (
            "connection header",
            ws(&[("connection", "keep-alive")], &[]),
        ),
        ("upgrade header", ws(&[("upgrade", "websocket")], &[])),
        ("te other than trailers", ws(&[("te", "gzip")], &[])),
        (
            "pseudo after regular",
            vec![
                (":method", "CONNECT"),
                (":protocol", "websocket"),
                (":scheme", "https"),
                ("x", "1"),
                (":path", "/"),
                (":authority", "a"),
            ],
        ),
        (
            "duplicate pseudo",
            ws(&[], &[])
                .into_iter()
                .chain([(":path", "/again")])
                .collect(),
        ),
        ("unknown pseudo", ws(&[(":status", "200")], &[])),
        (
            "empty :path",
            vec![(":method", "GET"), (":scheme", "https"), (":path", "")],
        ),
        (
            "CONNECT with :path",
            vec![(":method", "CONNECT"), (":authority", "a"), (":path", "/")],
        ),
        ("value with LF", ws(&[("x", "a\nb")], &[])),
    ];
    for (why, fields) in cases {
        let mut client = Client::new();
        let mut conn = Conn::open(Settings::default());
        let evs = conn.feed(&client.headers(1, &fields, false));
        assert_eq!(
            evs,
            [Ev::Reset(1, ErrorCode::PROTOCOL_ERROR, false)],
            "{why}"
        );
        let sent = conn.sent();
        assert_eq!(sent.len(), 1, "{why}");
        assert_eq!(
            (sent[0].kind, sent[0].stream, sent[0].code()),
            (kind::RST_STREAM, 1, ErrorCode::PROTOCOL_ERROR),
            "{why}"
        );
        assert_eq!(conn.h2.open_streams(), 0, "{why}");
        // The connection goes on, and HPACK is in step with the client.
        let evs = conn.feed(&client.headers(3, &WS_REQUEST, false));
        assert!(
            matches!(evs[..], [Ev::Request { stream: 3, .. }]),
            "{why}: {evs:?}"
        );
    }
}

#[test]
fn respond_output_decodes_to_the_same_fields() {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    conn.feed(&client.headers(1, &WS_REQUEST, false));
    conn.feed(&client.headers(3, &WS_REQUEST, false));
    let headers = [
        ("Sec-WebSocket-Protocol", "chat"),
        ("x-custom", "v"),
        ("Connection", "close"),
        ("content-type", "text/plain"),
        ("bad name", "x"),
        ("x-bad", "a\r\nb"),
    ];
    conn.h2
        .respond(3, 200, &headers, false, &mut conn.out, &mut conn.pool);
    conn.h2
        .respond(1, 404, &[], true, &mut conn.out, &mut conn.pool);
    conn.h2
        .respond(1, 200, &[], true, &mut conn.out, &mut conn.pool); // ended: nothing
    conn.h2
        .respond(9, 200, &[], true, &mut conn.out, &mut conn.pool); // no such stream
    let sent = conn.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    // The encoding is stateless: decoding in the opposite order works.
    let mut decoder = loona_hpack::Decoder::new();
    let second = decoder.decode(&sent[1].payload).unwrap();
    assert_eq!(second, [(b":status".to_vec(), b"404".to_vec())]);
    assert_eq!(
        (sent[1].stream, sent[1].flags),
        (1, flag::END_HEADERS | flag::END_STREAM)
    );
    let first = decoder.decode(&sent[0].payload).unwrap();
    let expect: Vec<(Vec<u8>, Vec<u8>)> = [
        (":status", "200"),
        ("sec-websocket-protocol", "chat"),
        ("x-custom", "v"),
        ("content-type", "text/plain"),
    ]
    .iter()
    .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect();
    assert_eq!(first, expect);
    assert_eq!((sent[0].stream, sent[0].flags), (3, flag::END_HEADERS));
    // An unusual status is a literal.
    let mut conn2 = Conn::open(Settings::default());
    conn2.feed(&Client::new().headers(1, &WS_REQUEST, false));
    conn2
        .h2
        .respond(1, 429, &[], false, &mut conn2.out, &mut conn2.pool);
    let sent = conn2.sent();
    assert_eq!(
        loona_hpack::Decoder::new()
            .decode(&sent[0].payload)
            .unwrap(),
        [(b":status".to_vec(), b"429".to_vec())]
    );
}

#[test]
fn a_large_response_block_takes_continuation_frames() {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    conn.feed(&client.headers(1, &WS_REQUEST, false));
    let big = "v".repeat(40_000);
    conn.h2.respond(
        1,
        200,
        &[("x-big", &big)],
        true,
        &mut conn.out,
        &mut conn.pool,
    );
    let sent = conn.sent();
    assert_eq!(
        sent.iter().map(|f| f.kind).collect::<Vec<_>>(),
        [kind::HEADERS, kind::CONTINUATION, kind::CONTINUATION]
    );
    assert_eq!(sent[0].flags, flag::END_STREAM);
    assert_eq!(sent[1].flags, 0);
    assert_eq!(sent[2].flags, flag::END_HEADERS);
    assert!(sent.iter().all(|f| f.payload.len() <= 16_384));
    let block: Vec<u8> = sent.iter().flat_map(|f| f.payload.clone()).collect();
    let fields = loona_hpack::Decoder::new().decode(&block).unwrap();
    assert_eq!(fields[1], (b"x-big".to_vec(), big.into_bytes()));
}

#[test]
fn max_concurrent_streams_refuses_the_one_past_it() {
    let mut client = Client::new();
    let settings = Settings {
        max_concurrent_streams: 2,
        ..Settings::default()
    };
    let mut conn = Conn::open(settings);
    conn.websocket(&mut client, 1);
    conn.websocket(&mut client, 3);
    conn.sent();
    let evs = conn.feed(&client.headers(5, &WS_REQUEST, false));
    assert_eq!(evs, [Ev::Reset(5, ErrorCode::REFUSED_STREAM, false)]);
    assert_eq!(conn.sent()[0].code(), ErrorCode::REFUSED_STREAM);
    assert_eq!(conn.h2.open_streams(), 2);
    // One released: the next is accepted (HPACK still in step).
    conn.h2.release(1, &mut conn.out, &mut conn.pool);
    let evs = conn.feed(&client.headers(7, &WS_REQUEST, false));
    assert!(
        matches!(evs[..], [Ev::Request { stream: 7, .. }]),
        "{evs:?}"
    );
}

#[test]
fn an_oversized_header_list_is_refused_and_hpack_stays_in_step() {
    let mut client = Client::new();
    let settings = Settings {
        max_header_list_size: 1000,
        ..Settings::default()
    };
    let mut conn = Conn::open(settings);
    let big = "x".repeat(900);
    // Two fields that enter the client's dynamic table, over the limit together.
    let fields = [&WS_REQUEST[..], &[("x-a", big.as_str()), ("x-b", "small")]].concat();
    let evs = conn.feed(&client.headers(1, &fields, false));
    assert_eq!(evs, [Ev::Reset(1, ErrorCode::REFUSED_STREAM, false)]);
    // The next request refers to the table entries the refused one made.
    let evs =
        conn.feed(&client.headers(3, &[&WS_REQUEST[..], &[("x-b", "small")]].concat(), false));
    let (_, _, got) = request_fields(&evs);
    assert_eq!(got.last(), Some(&("x-b".to_owned(), b"small".to_vec())));
}

#[test]
fn trailers_end_the_stream_and_must_carry_end_stream() {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    conn.websocket(&mut client, 1);
    let evs = conn.feed(
        &[
            data(1, b"body", false),
            client.headers(1, &[("x-trailer", "1")], true),
        ]
        .concat(),
    );
    assert_eq!(evs, [Ev::Data(1, b"body".to_vec()), Ev::End(1)]);
    conn.websocket(&mut client, 3);
    let evs = conn.feed(&client.headers(3, &[("x-trailer", "1")], false));
    assert_eq!(evs, [Ev::Reset(3, ErrorCode::PROTOCOL_ERROR, false)]);
    conn.websocket(&mut client, 5);
    let evs = conn.feed(&client.headers(5, &[(":path", "/")], true));
    assert_eq!(evs, [Ev::Reset(5, ErrorCode::PROTOCOL_ERROR, false)]);
}

#[test]
fn content_length_must_match_the_body() {
    let post = [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", "/"),
        ("content-length", "4"),
    ];
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    conn.feed(&client.headers(1, &post, false));
    assert_eq!(
        conn.feed(&data(1, b"abcd", true)),
        [Ev::Data(1, b"abcd".to_vec()), Ev::End(1)]
    );
    conn.feed(&client.headers(3, &post, false));
    assert_eq!(
        conn.feed(&data(3, b"abcde", false)),
        [Ev::Reset(3, ErrorCode::PROTOCOL_ERROR, false)]
    );
    conn.feed(&client.headers(5, &post, false));
    assert_eq!(
        conn.feed(&data(5, b"abc", true)),
        [
            Ev::Data(5, b"abc".to_vec()),
            Ev::Reset(5, ErrorCode::PROTOCOL_ERROR, false)
        ]
    );
    assert_eq!(
        conn.feed(&client.headers(7, &post, true)),
        [Ev::Reset(7, ErrorCode::PROTOCOL_ERROR, false)]
    );
}

#[test]
fn end_stream_paths_and_release_semantics() {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    // Both sides end: the stream is gone by itself.
    conn.websocket(&mut client, 1);
    assert_eq!(conn.feed(&data(1, b"", true)), [Ev::End(1)]);
    conn.h2.end_stream(1, &mut conn.out, &mut conn.pool);
    assert_eq!(conn.h2.open_streams(), 0);
    let sent = conn.sent();
    let last = sent.last().unwrap();
    assert_eq!(
        (last.kind, last.flags, last.payload.len()),
        (kind::DATA, flag::END_STREAM, 0)
    );
    conn.h2.release(1, &mut conn.out, &mut conn.pool);
    assert!(
        conn.sent().is_empty(),
        "release of a finished stream sends nothing"
    );
    // Our side ended, the peer's open: RST_STREAM(NO_ERROR).
    conn.websocket(&mut client, 3);
    conn.h2.end_stream(3, &mut conn.out, &mut conn.pool);
    conn.sent();
    conn.h2.release(3, &mut conn.out, &mut conn.pool);
    conn.h2.release(3, &mut conn.out, &mut conn.pool);
    let sent = conn.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].kind, sent[0].code()),
        (kind::RST_STREAM, ErrorCode::NO_ERROR)
    );
    // Our side open: RST_STREAM(CANCEL); the peer's frames in flight are ignored.
    conn.websocket(&mut client, 5);
    conn.sent();
    conn.h2.release(5, &mut conn.out, &mut conn.pool);
    assert_eq!(conn.sent()[0].code(), ErrorCode::CANCEL);
    assert!(
        conn.feed(
            &[
                data(5, b"late", false),
                client.headers(5, &[("x", "1")], true)
            ]
            .concat()
        )
        .is_empty()
    );
    assert!(conn.sent().is_empty());
    // reset() sends the code asked and forgets the stream.
    conn.websocket(&mut client, 7);
    conn.sent();
    conn.h2
        .reset(7, ErrorCode::INTERNAL_ERROR, &mut conn.out, &mut conn.pool);
    assert_eq!(conn.sent()[0].code(), ErrorCode::INTERNAL_ERROR);
    assert_eq!(conn.h2.send_capacity(7), 0);
    // A response that ends the stream after the peer ended: gone.
    assert!(matches!(
        conn.feed(&client.headers(9, &WS_REQUEST, true))[..],
        [Ev::Request { end: true, .. }]
    ));
    conn.respond(9, true);
    assert_eq!(conn.h2.open_streams(), 0);
}

#[test]
fn data_on_a_closed_side_is_a_stream_error() {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    conn.websocket(&mut client, 1);
    assert_eq!(conn.feed(&data(1, b"", true)), [Ev::End(1)]);
    conn.sent();
    assert_eq!(
        conn.feed(&data(1, b"more", false)),
        [Ev::Reset(1, ErrorCode::STREAM_CLOSED, false)]
    );
    assert_eq!(conn.sent()[0].code(), ErrorCode::STREAM_CLOSED);
    // A stream closed on both sides long ago (not reset by us).
    conn.websocket(&mut client, 3);
    conn.feed(&data(3, b"", true));
    conn.h2.end_stream(3, &mut conn.out, &mut conn.pool);
    conn.sent();
    assert!(conn.feed(&data(3, b"x", false)).is_empty());
    assert_eq!(conn.sent()[0].code(), ErrorCode::STREAM_CLOSED);
}

#[test]
fn go_away_refuses_new_streams_and_lets_open_ones_go_on() {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    conn.websocket(&mut client, 1);
    conn.sent();
    conn.h2
        .go_away(ErrorCode::NO_ERROR, &mut conn.out, &mut conn.pool);
    conn.h2
        .go_away(ErrorCode::NO_ERROR, &mut conn.out, &mut conn.pool);
    let sent = conn.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].kind, sent[0].u32_at(0), sent[0].code()),
        (kind::GOAWAY, 1, ErrorCode::NO_ERROR)
    );
    assert!(conn.h2.going_away());
    assert_eq!(
        conn.feed(&client.headers(3, &WS_REQUEST, false)),
        [Ev::Reset(3, ErrorCode::REFUSED_STREAM, false)]
    );
    assert_eq!(
        conn.feed(&data(1, b"still", false)),
        [Ev::Data(1, b"still".to_vec())]
    );
}
