//! DATA frames of one stream that follow each other whole in a read reach
//! the runtime as one piece (the headers between them closed up in place),
//! with flow control and errors as if they came one by one.

use super::*;

/// A connection with stream 1 open and answered; its windows large enough
/// for the tests' payloads.
fn with_stream() -> (Conn, Client) {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    conn.websocket(&mut client, 1);
    conn.sent();
    (conn, client)
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

#[test]
fn consecutive_data_frames_of_a_stream_come_as_one_piece_whichever_side_is_shorter() {
    for (a, b, c) in [
        (16_384, 8, 0),
        (8, 16_384, 0),
        (100, 100, 100),
        (5, 3000, 7),
    ] {
        let (mut conn, _) = with_stream();
        let parts = [bytes(a, 1), bytes(b, 2), bytes(c, 3)];
        let input: Vec<u8> = parts
            .iter()
            .filter(|p| !p.is_empty())
            .flat_map(|p| data(1, p, false))
            .collect();
        let evs = conn.feed(&input);
        assert_eq!(evs, [Ev::Data(1, parts.concat())], "{a}+{b}+{c}");
    }
}

#[test]
fn joined_data_is_charged_and_credited_as_its_frames() {
    let (mut conn, _) = with_stream();
    conn.auto_consume = true;
    // 3 x 12,000 bytes: past half the stream's window (65,535 / 2) and the
    // connection's (1 MiB / 2 is not reached): one stream WINDOW_UPDATE.
    let input: Vec<u8> = (0..3)
        .flat_map(|i| data(1, &bytes(12_000, i), false))
        .collect();
    let evs = conn.feed(&input);
    assert!(
        matches!(&evs[..], [Ev::Data(1, b)] if b.len() == 36_000),
        "{evs:?}"
    );
    let updates: Vec<(u32, u32)> = conn
        .sent()
        .iter()
        .filter(|f| f.kind == kind::WINDOW_UPDATE)
        .map(|f| (f.stream, f.u32_at(0)))
        .collect();
    assert_eq!(updates, [(1, 36_000)]);
    // The stream's window is what it was: 65,535 more may come at once.
    let input: Vec<u8> = [16_384, 16_384, 16_384, 16_383]
        .iter()
        .flat_map(|&n| data(1, &bytes(n, 9), false))
        .collect();
    let evs = conn.feed(&input);
    assert!(
        matches!(&evs[..], [Ev::Data(1, b)] if b.len() == 65_535),
        "{evs:?}"
    );
}

#[test]
fn data_of_other_streams_padded_frames_and_frames_cut_by_the_read_are_not_joined() {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    conn.websocket(&mut client, 1);
    conn.websocket(&mut client, 3);
    conn.sent();
    let (x, y) = (bytes(50, 1), bytes(60, 2));
    // Another stream between.
    let input = [data(1, &x, false), data(3, &y, false), data(1, &y, false)].concat();
    assert_eq!(
        conn.feed(&input),
        [
            Ev::Data(1, x.clone()),
            Ev::Data(3, y.clone()),
            Ev::Data(1, y.clone())
        ]
    );
    // A padded frame after: its pad length byte is not data.
    let mut padded = vec![4u8];
    padded.extend_from_slice(&y);
    padded.extend_from_slice(&[0; 4]);
    let input = [
        data(1, &x, false),
        frame(kind::DATA, flag::PADDED, 1, &padded),
    ]
    .concat();
    assert_eq!(
        conn.feed(&input),
        [Ev::Data(1, x.clone()), Ev::Data(1, y.clone())]
    );
    // The second frame cut by the end of the read: its first part comes
    // apart, the rest with the next read.
    let input = [data(1, &x, false), data(1, &y, false)].concat();
    let cut = input.len() - 10;
    assert_eq!(
        conn.feed(&input[..cut]),
        [Ev::Data(1, x.clone()), Ev::Data(1, y[..50].to_vec())]
    );
    assert_eq!(conn.feed(&input[cut..]), [Ev::Data(1, y[50..].to_vec())]);
}

#[test]
fn end_stream_ends_the_joined_piece() {
    let (mut conn, _) = with_stream();
    let (x, y) = (bytes(30, 1), bytes(40, 2));
    let input = [data(1, &x, false), data(1, &y, true)].concat();
    assert_eq!(
        conn.feed(&input),
        [Ev::Data(1, [x, y].concat()), Ev::End(1)]
    );
}

#[test]
fn an_error_on_a_later_frame_comes_after_the_data_before_it() {
    // The second frame overflows the stream's window: a stream error
    // (RST_STREAM FLOW_CONTROL_ERROR) after the first frame's data.
    let mut client = Client::new();
    let mut conn = Conn::open(Settings {
        initial_window_size: 1000,
        ..Settings::default()
    });
    conn.feed(&settings(&[])); // (acknowledges nothing; our SETTINGS ACK below)
    conn.feed(&frame(kind::SETTINGS, flag::ACK, 0, &[]));
    conn.websocket(&mut client, 1);
    conn.sent();
    let (x, y) = (bytes(600, 1), bytes(600, 2));
    let input = [data(1, &x, false), data(1, &y, false)].concat();
    let evs = conn.feed(&input);
    assert_eq!(
        evs,
        [
            Ev::Data(1, x),
            Ev::Reset(1, ErrorCode::FLOW_CONTROL_ERROR, false)
        ]
    );
    let sent = conn.sent();
    assert!(
        sent.iter()
            .any(|f| f.kind == kind::RST_STREAM && f.stream == 1),
        "{sent:?}"
    );
    // A connection error on a later frame (DATA on stream 0) also comes
    // after the data before it.
    let (mut conn, _) = with_stream();
    let x = bytes(20, 3);
    let input = [data(1, &x, false), data(0, &x, false)].concat();
    let evs = conn.feed(&input);
    assert_eq!(evs[0], Ev::Data(1, x));
    assert_eq!(error(&evs).code, ErrorCode::PROTOCOL_ERROR);
}
