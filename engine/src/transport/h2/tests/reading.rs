//! The frame layer: the preface, frames cut anywhere, control frames and
//! their answers, connection errors.

use super::*;
use crate::transport::h2::frame::setting;

#[test]
fn start_sends_settings_with_extended_connect_and_the_connection_window() {
    let mut conn = Conn::new(Settings::default());
    let sent = conn.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(
        (sent[0].kind, sent[0].flags, sent[0].stream),
        (kind::SETTINGS, 0, 0)
    );
    let params: Vec<(u16, u32)> = sent[0]
        .payload
        .chunks(6)
        .map(|p| {
            (
                u16::from_be_bytes([p[0], p[1]]),
                u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
            )
        })
        .collect();
    assert!(params.contains(&(setting::ENABLE_CONNECT_PROTOCOL, 1)));
    assert!(params.contains(&(setting::MAX_CONCURRENT_STREAMS, 100)));
    assert!(!params.iter().any(|&(id, _)| id == setting::ENABLE_PUSH));
    assert_eq!(sent[1].kind, kind::WINDOW_UPDATE);
    assert_eq!((sent[1].stream, sent[1].u32_at(0)), (0, (1 << 20) - 65_535));
}

#[test]
fn the_preface_and_first_settings_may_be_cut_at_every_byte() {
    let input = [
        &PREFACE[..],
        &settings(&[(setting::INITIAL_WINDOW_SIZE, 1000)]),
        &ping(*b"12345678"),
    ]
    .concat();
    for cut in 0..=input.len() {
        let mut conn = Conn::new(Settings::default());
        conn.sent();
        let mut evs = conn.feed(&input[..cut]);
        evs.extend(conn.feed(&input[cut..]));
        assert!(evs.is_empty(), "cut {cut}: {evs:?}");
        let sent = conn.sent();
        assert_eq!(sent.len(), 2, "cut {cut}");
        assert_eq!((sent[0].kind, sent[0].flags), (kind::SETTINGS, flag::ACK));
        assert_eq!((sent[1].kind, sent[1].flags), (kind::PING, flag::ACK));
        assert_eq!(sent[1].payload, b"12345678");
    }
}

#[test]
fn a_bad_preface_is_a_protocol_error_with_goaway() {
    let mut conn = Conn::new(Settings::default());
    conn.sent();
    let evs = conn.feed(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(error(&evs).code, ErrorCode::PROTOCOL_ERROR);
    assert_eq!(goaway(&conn.sent()), Some(ErrorCode::PROTOCOL_ERROR));
    // Reading stopped for good: the same error, nothing written.
    assert_eq!(
        error(&conn.feed(&PREFACE[..])).code,
        ErrorCode::PROTOCOL_ERROR
    );
    assert!(conn.sent().is_empty());
}

#[test]
fn the_first_frame_must_be_settings() {
    for first in [
        ping([0; 8]),
        frame(kind::SETTINGS, flag::ACK, 0, &[]),
        window_update(0, 10),
    ] {
        let mut conn = Conn::new(Settings::default());
        let evs = conn.feed(&[&PREFACE[..], &first].concat());
        assert_eq!(error(&evs).code, ErrorCode::PROTOCOL_ERROR);
    }
}

#[test]
fn frames_cut_at_every_byte_give_the_same_events() {
    let mut client = Client::new();
    let mut input = client.headers(1, &WS_REQUEST, false);
    input.extend(data(1, b"hello", false));
    input.extend(ping(*b"abcdefgh"));
    // Padded DATA: pad length 3, "world", 3 bytes of padding.
    input.extend(frame(
        kind::DATA,
        flag::PADDED | flag::END_STREAM,
        1,
        b"\x03world\0\0\0",
    ));
    for cut in 0..=input.len() {
        for second in [cut, (cut + 7).min(input.len())] {
            let mut conn = Conn::open(Settings::default());
            let mut evs = conn.feed(&input[..cut]);
            evs.extend(conn.feed(&input[cut..second]));
            evs.extend(conn.feed(&input[second..]));
            // Join the Data events of each stream.
            let mut payload = Vec::new();
            let mut others = Vec::new();
            for ev in evs {
                match ev {
                    Ev::Data(1, bytes) => {
                        assert!(!bytes.is_empty(), "empty Data reported");
                        payload.extend(bytes);
                    }
                    ev => others.push(ev),
                }
            }
            assert_eq!(payload, b"helloworld", "cut {cut}/{second}");
            assert!(
                matches!(others[0], Ev::Request { stream: 1, .. }),
                "{others:?}"
            );
            assert_eq!(others[1..], [Ev::End(1)], "cut {cut}/{second}");
            let sent = conn.sent();
            assert!(
                sent.iter()
                    .any(|f| f.kind == kind::PING && f.payload == b"abcdefgh")
            );
        }
    }
}

#[test]
fn a_padded_data_frame_too_short_for_its_padding_is_a_protocol_error() {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    conn.websocket(&mut client, 1);
    let evs = conn.feed(&frame(kind::DATA, flag::PADDED, 1, b"\x05ab"));
    assert_eq!(error(&evs).code, ErrorCode::PROTOCOL_ERROR);
    let evs = Conn::open(Settings::default()).feed(&frame(kind::DATA, flag::PADDED, 1, b""));
    assert_eq!(error(&evs).code, ErrorCode::PROTOCOL_ERROR);
}

#[test]
fn a_frame_above_our_max_frame_size_is_a_frame_size_error() {
    let mut conn = Conn::open(Settings::default());
    let mut head = frame(kind::DATA, 0, 1, &[]);
    head[..3].copy_from_slice(&[0, 0x40, 0x01]); // 16,385
    let evs = conn.feed(&head);
    assert_eq!(error(&evs).code, ErrorCode::FRAME_SIZE_ERROR);
    assert_eq!(goaway(&conn.sent()), Some(ErrorCode::FRAME_SIZE_ERROR));
}

#[test]
fn settings_are_validated() {
    let cases: [(Vec<u8>, ErrorCode); 6] = [
        (
            frame(kind::SETTINGS, 0, 0, &[0; 5]),
            ErrorCode::FRAME_SIZE_ERROR,
        ),
        (
            frame(kind::SETTINGS, flag::ACK, 0, &[0; 6]),
            ErrorCode::FRAME_SIZE_ERROR,
        ),
        (frame(kind::SETTINGS, 0, 1, &[]), ErrorCode::PROTOCOL_ERROR),
        (
            settings(&[(setting::ENABLE_PUSH, 2)]),
            ErrorCode::PROTOCOL_ERROR,
        ),
        (
            settings(&[(setting::INITIAL_WINDOW_SIZE, 1 << 31)]),
            ErrorCode::FLOW_CONTROL_ERROR,
        ),
        (
            settings(&[(setting::MAX_FRAME_SIZE, 16_383)]),
            ErrorCode::PROTOCOL_ERROR,
        ),
    ];
    for (input, code) in cases {
        let mut conn = Conn::open(Settings::default());
        assert_eq!(error(&conn.feed(&input)).code, code, "{input:?}");
        assert_eq!(goaway(&conn.sent()), Some(code));
    }
    let mut conn = Conn::open(Settings::default());
    let evs = conn.feed(&settings(&[
        (setting::MAX_FRAME_SIZE, 16_777_215),
        (0x99, 7),
        (setting::ENABLE_PUSH, 0),
    ]));
    assert!(evs.is_empty());
    assert_eq!(
        conn.sent(),
        [Sent {
            kind: kind::SETTINGS,
            flags: flag::ACK,
            stream: 0,
            payload: vec![]
        }]
    );
}

#[test]
fn ping_is_answered_and_its_ack_is_not() {
    let mut conn = Conn::open(Settings::default());
    assert!(conn.feed(&ping(*b"pingpong")).is_empty());
    assert_eq!(
        conn.sent(),
        [Sent {
            kind: kind::PING,
            flags: flag::ACK,
            stream: 0,
            payload: b"pingpong".to_vec()
        }]
    );
    assert!(
        conn.feed(&frame(kind::PING, flag::ACK, 0, b"pingpong"))
            .is_empty()
    );
    assert!(conn.sent().is_empty());
    assert_eq!(
        error(&conn.feed(&frame(kind::PING, 0, 0, b"short"))).code,
        ErrorCode::FRAME_SIZE_ERROR
    );
    let mut conn = Conn::open(Settings::default());
    assert_eq!(
        error(&conn.feed(&frame(kind::PING, 0, 1, &[0; 8]))).code,
        ErrorCode::PROTOCOL_ERROR
    );
}

#[test]
fn the_peers_goaway_is_reported_and_unknown_frames_ignored() {
    let mut conn = Conn::open(Settings::default());
    let mut payload = 7u32.to_be_bytes().to_vec();
    payload.extend(ErrorCode::ENHANCE_YOUR_CALM.0.to_be_bytes());
    payload.extend(b"debug data");
    let evs = conn.feed(
        &[
            frame(0xfa, 0xff, 3, b"whatever"),
            frame(kind::GOAWAY, 0, 0, &payload),
        ]
        .concat(),
    );
    assert_eq!(evs, [Ev::GoAway(7, ErrorCode::ENHANCE_YOUR_CALM)]);
    assert!(conn.h2.going_away());
    assert!(conn.sent().is_empty());
}

#[test]
fn push_promise_priority_and_idle_streams() {
    let mut client = Client::new();
    let block = client.block(&[(":method", "GET")]);
    let push = frame(
        kind::PUSH_PROMISE,
        flag::END_HEADERS,
        1,
        &[&2u32.to_be_bytes()[..], &block].concat(),
    );
    assert_eq!(
        error(&Conn::open(Settings::default()).feed(&push)).code,
        ErrorCode::PROTOCOL_ERROR
    );
    // PRIORITY is ignored, on any stream but 0.
    let mut conn = Conn::open(Settings::default());
    assert!(
        conn.feed(&frame(kind::PRIORITY, 0, 5, &[0, 0, 0, 1, 16]))
            .is_empty()
    );
    assert_eq!(
        error(&conn.feed(&frame(kind::PRIORITY, 0, 0, &[0, 0, 0, 1, 16]))).code,
        ErrorCode::PROTOCOL_ERROR
    );
    // Frames other than HEADERS and PRIORITY on an idle stream.
    for input in [
        data(1, b"x", false),
        window_update(1, 1),
        rst(3, ErrorCode::CANCEL),
    ] {
        assert_eq!(
            error(&Conn::open(Settings::default()).feed(&input)).code,
            ErrorCode::PROTOCOL_ERROR
        );
    }
}

#[test]
fn a_header_block_is_not_interrupted() {
    let mut client = Client::new();
    let block = client.block(&WS_REQUEST);
    let (a, b) = block.split_at(10);
    let start = frame(kind::HEADERS, 0, 1, a);
    for between in [
        ping([0; 8]),
        data(1, b"x", false),
        frame(kind::CONTINUATION, flag::END_HEADERS, 3, b),
    ] {
        let mut conn = Conn::open(Settings::default());
        let evs = conn.feed(&[start.clone(), between].concat());
        assert_eq!(error(&evs).code, ErrorCode::PROTOCOL_ERROR);
    }
    let evs =
        Conn::open(Settings::default()).feed(&frame(kind::CONTINUATION, flag::END_HEADERS, 1, b));
    assert_eq!(error(&evs).code, ErrorCode::PROTOCOL_ERROR);
    // HEADERS + CONTINUATION, each cut anywhere: one request.
    let input = [start, frame(kind::CONTINUATION, flag::END_HEADERS, 1, b)].concat();
    for cut in 0..=input.len() {
        let mut conn = Conn::open(Settings::default());
        let mut evs = conn.feed(&input[..cut]);
        evs.extend(conn.feed(&input[cut..]));
        assert!(
            matches!(
                &evs[..],
                [Ev::Request {
                    stream: 1,
                    end: false,
                    ..
                }]
            ),
            "{evs:?}"
        );
    }
}

#[test]
fn stream_ids_increase_and_closed_streams_are_remembered() {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    conn.websocket(&mut client, 5);
    // Lower than the last: a closed stream (never opened).
    let evs = conn.feed(&client.headers(3, &WS_REQUEST, false));
    assert_eq!(error(&evs).code, ErrorCode::STREAM_CLOSED);
    let mut conn = Conn::open(Settings::default());
    let evs = conn.feed(&client.headers(2, &WS_REQUEST, false));
    assert_eq!(error(&evs).code, ErrorCode::PROTOCOL_ERROR);
    let evs = Conn::open(Settings::default()).feed(&client.headers(0, &WS_REQUEST, false));
    assert_eq!(error(&evs).code, ErrorCode::PROTOCOL_ERROR);
}

#[test]
fn an_hpack_error_is_a_compression_error() {
    let mut conn = Conn::open(Settings::default());
    // Index 70: past the static table, and the dynamic table is empty.
    let evs = conn.feed(&frame(kind::HEADERS, flag::END_HEADERS, 1, &[0x80 | 70]));
    assert_eq!(error(&evs).code, ErrorCode::COMPRESSION_ERROR);
    // A table size update above our SETTINGS_HEADER_TABLE_SIZE (4,096): 4,097.
    let mut conn = Conn::open(Settings::default());
    let evs = conn.feed(&frame(
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &[0x3f, 0xe2, 0x1f, 0x82],
    ));
    assert_eq!(error(&evs).code, ErrorCode::COMPRESSION_ERROR);
    assert_eq!(goaway(&conn.sent()), Some(ErrorCode::COMPRESSION_ERROR));
    // 4,096 itself is fine.
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    let block = [&[0x3f, 0xe1, 0x1f][..], &client.block(&WS_REQUEST)].concat();
    let evs = conn.feed(&frame(kind::HEADERS, flag::END_HEADERS, 1, &block));
    assert!(matches!(&evs[..], [Ev::Request { .. }]), "{evs:?}");
}
