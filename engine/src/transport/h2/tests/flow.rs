//! Flow control both ways (RFC 9113 §6.9) and send_data.

use super::*;
use crate::transport::h2::frame::setting;

fn updates(sent: &[Sent]) -> Vec<(u32, u32)> {
    sent.iter()
        .filter(|f| f.kind == kind::WINDOW_UPDATE)
        .map(|f| (f.stream, f.u32_at(0)))
        .collect()
}

fn data_frames(sent: &[Sent]) -> Vec<(u32, usize, bool)> {
    sent.iter()
        .filter(|f| f.kind == kind::DATA)
        .map(|f| (f.stream, f.payload.len(), f.flags & flag::END_STREAM != 0))
        .collect()
}

#[test]
fn send_data_stops_at_the_window_and_resumes_after_window_update() {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    // Before the response: no DATA.
    conn.feed(&client.headers(1, &WS_REQUEST, false));
    let (n, queue) = conn.send(1, &[7; 10], false, usize::MAX);
    assert_eq!((n, queue.len()), (0, 10));
    conn.respond(1, false);
    conn.sent();
    assert_eq!(conn.h2.send_capacity(1), 65_535);
    let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let (n, mut queue) = conn.send(1, &payload, true, usize::MAX);
    assert_eq!(n, 65_535);
    assert_eq!(queue.len(), 100_000 - 65_535);
    assert_eq!(conn.h2.send_capacity(1), 0);
    let sent = conn.sent();
    let frames = data_frames(&sent);
    assert!(
        frames
            .iter()
            .all(|&(s, len, end)| s == 1 && len <= 16_384 && !end),
        "{frames:?}"
    );
    let mut got: Vec<u8> = sent.iter().flat_map(|f| f.payload.clone()).collect();
    // The stream's window grows, not the connection's: still stalled.
    assert_eq!(conn.feed(&window_update(1, 50_000)), [Ev::Window(1)]);
    assert_eq!(conn.h2.send_capacity(1), 0);
    assert_eq!(conn.feed(&window_update(0, 50_000)), [Ev::Window(0)]);
    assert_eq!(conn.h2.send_capacity(1), 50_000);
    let n = conn
        .h2
        .send_data(1, &mut queue, true, &mut conn.out, &mut conn.pool, 1000);
    assert_eq!(n, 1000, "the budget limits");
    let n = conn.h2.send_data(
        1,
        &mut queue,
        true,
        &mut conn.out,
        &mut conn.pool,
        usize::MAX,
    );
    assert_eq!(n, 100_000 - 65_535 - 1000);
    assert!(queue.is_empty());
    let sent = conn.sent();
    got.extend(sent.iter().flat_map(|f| f.payload.clone()));
    assert_eq!(got, payload);
    assert!(
        data_frames(&sent).last().unwrap().2,
        "the last DATA ends the stream"
    );
    // Ended: nothing more, the queue is cleared.
    let (n, queue) = conn.send(1, b"late", false, usize::MAX);
    assert_eq!((n, queue.len()), (0, 0));
}

#[test]
fn an_empty_queue_with_end_sends_an_empty_end_stream() {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    conn.websocket(&mut client, 1);
    conn.sent();
    let (n, _) = conn.send(1, b"", true, usize::MAX);
    assert_eq!(n, 0);
    assert_eq!(data_frames(&conn.sent()), [(1, 0, true)]);
    // A stream gone: the queue is cleared.
    let (n, queue) = conn.send(3, b"abc", false, usize::MAX);
    assert_eq!((n, queue.len()), (0, 0));
}

#[test]
fn peer_settings_change_stream_windows_and_frame_size() {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    conn.websocket(&mut client, 1);
    let evs = conn.feed(&settings(&[
        (setting::INITIAL_WINDOW_SIZE, 100_000),
        (setting::MAX_FRAME_SIZE, 40_000),
    ]));
    assert_eq!(evs, [Ev::Window(0)]);
    conn.feed(&window_update(0, 200_000));
    assert_eq!(conn.h2.send_capacity(1), 100_000);
    conn.sent();
    conn.send(1, &[1; 50_000], false, usize::MAX);
    assert_eq!(
        data_frames(&conn.sent()),
        [(1, 40_000, false), (1, 10_000, false)]
    );
    // Lowering the initial window may make a window negative (RFC 9113 §6.9.2).
    assert!(
        conn.feed(&settings(&[(setting::INITIAL_WINDOW_SIZE, 0)]))
            .is_empty()
    );
    assert_eq!(conn.h2.send_capacity(1), 0);
    assert_eq!(conn.h2.windows().1, [(1, -50_000, 65_535)]);
    // Past 2^31-1 on a stream: FLOW_CONTROL_ERROR for the connection.
    conn.feed(&window_update(1, 60_000));
    let evs = conn.feed(&settings(&[(setting::INITIAL_WINDOW_SIZE, (1 << 31) - 1)]));
    assert_eq!(error(&evs).code, ErrorCode::FLOW_CONTROL_ERROR);
}

#[test]
fn window_update_errors() {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    conn.websocket(&mut client, 1);
    conn.sent();
    assert_eq!(
        conn.feed(&window_update(1, 0)),
        [Ev::Reset(1, ErrorCode::PROTOCOL_ERROR, false)]
    );
    conn.websocket(&mut client, 3);
    assert_eq!(
        conn.feed(&window_update(3, (1 << 31) - 1)),
        [Ev::Reset(3, ErrorCode::FLOW_CONTROL_ERROR, false)]
    );
    // On a closed stream: ignored.
    assert!(conn.feed(&window_update(1, 5)).is_empty());
    let evs = conn.feed(&window_update(0, 0));
    assert_eq!(error(&evs).code, ErrorCode::PROTOCOL_ERROR);
    let mut conn = Conn::open(Settings::default());
    let evs = conn.feed(&window_update(0, (1 << 31) - 65_535));
    assert_eq!(error(&evs).code, ErrorCode::FLOW_CONTROL_ERROR);
    let mut conn = Conn::open(Settings::default());
    let evs = conn.feed(&frame(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 1]));
    assert_eq!(error(&evs).code, ErrorCode::FRAME_SIZE_ERROR);
}

#[test]
fn consumed_credits_windows_in_batches_and_a_paused_stream_gets_none() {
    let mut client = Client::new();
    // Connection window 65,535: no WINDOW_UPDATE at start, a batch at half.
    let settings = Settings {
        connection_window: 65_535,
        ..Settings::default()
    };
    let mut conn = Conn::open(settings);
    conn.websocket(&mut client, 1);
    conn.sent();
    conn.feed(&data(1, &[0; 16_384], false));
    conn.h2.consumed(1, 16_384, &mut conn.out, &mut conn.pool);
    assert!(conn.sent().is_empty(), "under half a window: batched");
    conn.feed(&data(1, &[0; 16_384], false));
    conn.h2.consumed(1, 16_384, &mut conn.out, &mut conn.pool);
    assert_eq!(updates(&conn.sent()), [(0, 32_768), (1, 32_768)]);
    // Paused: the connection is credited, the stream is not.
    conn.h2.pause(1);
    conn.feed(&data(1, &[0; 16_384], false));
    conn.feed(&data(1, &[0; 16_384], false));
    conn.h2.consumed(1, 32_768, &mut conn.out, &mut conn.pool);
    assert_eq!(updates(&conn.sent()), [(0, 32_768)]);
    // One window more at most: past it, FLOW_CONTROL_ERROR on the stream.
    conn.feed(&data(1, &[0; 16_384], false));
    conn.feed(&data(1, &[0; 16_383], false));
    assert_eq!(
        conn.feed(&data(1, &[0; 2], false)),
        [Ev::Reset(1, ErrorCode::FLOW_CONTROL_ERROR, false)]
    );
    conn.sent();
    // Resumed: what was consumed is credited at once.
    conn.websocket(&mut client, 3);
    conn.sent();
    conn.h2.pause(3);
    conn.feed(&data(3, &[0; 100], false));
    conn.h2.consumed(3, 100, &mut conn.out, &mut conn.pool);
    assert!(updates(&conn.sent()).iter().all(|&(s, _)| s == 0));
    conn.h2.resume(3, &mut conn.out, &mut conn.pool);
    assert_eq!(updates(&conn.sent()), [(3, 100)]);
}

#[test]
fn the_connection_window_is_enforced_and_padding_credited_at_once() {
    let mut client = Client::new();
    let settings = Settings {
        connection_window: 65_535,
        initial_window_size: 1 << 20,
        ..Settings::default()
    };
    let mut conn = Conn::open(settings);
    conn.websocket(&mut client, 1);
    conn.sent();
    // Padding: 200 bytes of 16,384 never reach the runtime, credited now.
    let mut payload = vec![199u8];
    payload.extend([5u8; 16_184]);
    payload.extend([0u8; 199]);
    let evs = conn.feed(&frame(kind::DATA, flag::PADDED, 1, &payload));
    assert_eq!(evs, [Ev::Data(1, vec![5; 16_184])]);
    assert_eq!(conn.h2.conn_recv_window(), 65_535 - 16_384);
    for _ in 0..2 {
        assert_eq!(conn.feed(&data(1, &[0; 16_384], false)).len(), 1);
    }
    // 65,535 - 3 * 16,384 = 16,383 left (the padding's 200 bytes wait in
    // the batch): one byte too many.
    let evs = conn.feed(&data(1, &[0; 16_384], false));
    assert_eq!(error(&evs).code, ErrorCode::FLOW_CONTROL_ERROR);
    assert_eq!(goaway(&conn.sent()), Some(ErrorCode::FLOW_CONTROL_ERROR));
}

#[test]
fn data_for_a_stream_we_reset_is_charged_and_given_back() {
    let mut client = Client::new();
    let settings = Settings {
        connection_window: 65_535,
        ..Settings::default()
    };
    let mut conn = Conn::open(settings);
    conn.websocket(&mut client, 1);
    conn.h2
        .reset(1, ErrorCode::CANCEL, &mut conn.out, &mut conn.pool);
    conn.sent();
    assert!(conn.feed(&data(1, &[0; 16_384], false)).is_empty());
    assert!(conn.feed(&data(1, &[0; 16_384], false)).is_empty());
    // Credited back by the codec itself: a WINDOW_UPDATE on the connection.
    assert_eq!(updates(&conn.sent()), [(0, 32_768)]);
    assert_eq!(conn.h2.conn_recv_window(), 65_535);
}

#[test]
fn our_smaller_initial_window_applies_once_acknowledged() {
    let mut client = Client::new();
    let settings = Settings {
        initial_window_size: 1_000,
        ..Settings::default()
    };
    let mut conn = Conn::open(settings);
    // Before the ACK the client may assume 65,535.
    conn.websocket(&mut client, 1);
    assert_eq!(conn.feed(&data(1, &[1; 5_000], false)).len(), 1);
    conn.feed(&frame(kind::SETTINGS, flag::ACK, 0, &[]));
    // 65,535 - 5,000 - 64,535: the stream is 4,000 over; nothing more fits.
    assert_eq!(conn.h2.windows().1, [(1, 65_535, -4_000)]);
    conn.websocket(&mut client, 3);
    assert_eq!(conn.feed(&data(3, &[1; 1_000], false)).len(), 1);
    assert_eq!(
        conn.feed(&data(3, &[1; 1], false)),
        [Ev::Reset(3, ErrorCode::FLOW_CONTROL_ERROR, false)]
    );
}
