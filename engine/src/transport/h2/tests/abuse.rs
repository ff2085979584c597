//! Abuse: floods and oversized blocks end the connection with
//! GOAWAY(ENHANCE_YOUR_CALM); memory stays bounded.

use super::*;

fn calm(conn: &mut Conn, evs: &[Ev]) {
    assert_eq!(error(evs).code, ErrorCode::ENHANCE_YOUR_CALM, "{evs:?}");
    assert_eq!(goaway(&conn.sent()), Some(ErrorCode::ENHANCE_YOUR_CALM));
    assert!(conn.h2.going_away());
}

#[test]
fn rapid_reset_flood_is_stopped() {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    let mut input = Vec::new();
    for i in 0..101u32 {
        let id = 2 * i + 1;
        input.extend(client.headers(id, &WS_REQUEST, false));
        input.extend(rst(id, ErrorCode::CANCEL));
    }
    let evs = conn.feed(&input);
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e, Ev::Reset(_, _, true)))
            .count(),
        100
    );
    calm(&mut conn, &evs);
    // Under the rate it goes on: 100 per second.
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    for i in 0..300u32 {
        conn.now = u64::from(i) * 10;
        let id = 2 * i + 1;
        let evs = conn.feed(
            &[
                client.headers(id, &WS_REQUEST, false),
                rst(id, ErrorCode::CANCEL),
            ]
            .concat(),
        );
        assert_eq!(evs.len(), 2, "{i}: {evs:?}");
    }
}

#[test]
fn resets_we_are_made_to_send_count_too() {
    // CVE-2025-8671: frames that make us reset a stream (here WINDOW_UPDATE
    // of 0), and the runtime's resets for its peer's errors.
    let mut client = Client::new();
    let settings = Settings {
        resets_per_second: 10,
        ..Settings::default()
    };
    let mut conn = Conn::open(settings);
    let mut input = Vec::new();
    for i in 0..11u32 {
        let id = 2 * i + 1;
        input.extend(client.headers(id, &WS_REQUEST, false));
        input.extend(window_update(id, 0));
    }
    let evs = conn.feed(&input);
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e, Ev::Reset(_, ErrorCode::PROTOCOL_ERROR, false)))
            .count(),
        10
    );
    calm(&mut conn, &evs);
    let mut client = Client::new();
    let mut conn = Conn::open(settings);
    // CANCEL is the runtime's own choice: not counted.
    for i in 0..20u32 {
        let code = if i % 2 == 0 {
            ErrorCode::PROTOCOL_ERROR
        } else {
            ErrorCode::CANCEL
        };
        let id = 2 * i + 1;
        assert_eq!(conn.feed(&client.headers(id, &WS_REQUEST, false)).len(), 1);
        conn.h2.reset(id, code, &mut conn.out, &mut conn.pool);
    }
    conn.feed(&client.headers(41, &WS_REQUEST, false));
    conn.h2
        .reset(41, ErrorCode::PROTOCOL_ERROR, &mut conn.out, &mut conn.pool);
    conn.sent();
    let evs = conn.feed(&ping([0; 8]));
    calm(&mut conn, &evs);
}

#[test]
fn settings_and_ping_floods_are_stopped() {
    for flood in [
        ping([1; 8]),
        settings(&[]),
        frame(kind::PRIORITY, 0, 3, &[0, 0, 0, 1, 1]),
        window_update(0, 1),
        frame(0x42, 0, 0, b""),
    ] {
        let mut conn = Conn::open(Settings::default());
        let input: Vec<u8> = (0..1_001).flat_map(|_| flood.clone()).collect();
        let evs = conn.feed(&input);
        // `open` spent one token on its SETTINGS.
        let sent = conn.sent();
        let answers = sent.iter().filter(|f| f.kind != kind::GOAWAY).count();
        assert!(answers <= 999, "{answers}");
        assert_eq!(error(&evs).code, ErrorCode::ENHANCE_YOUR_CALM);
        assert_eq!(goaway(&sent), Some(ErrorCode::ENHANCE_YOUR_CALM));
    }
}

#[test]
fn empty_data_frames_are_counted() {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    conn.websocket(&mut client, 1);
    let input: Vec<u8> = (0..1_000).flat_map(|_| data(1, b"", false)).collect();
    let evs = conn.feed(&input);
    calm(&mut conn, &evs);
}

#[test]
fn continuation_flood_is_bounded() {
    let mut client = Client::new();
    // Many empty CONTINUATION frames: the frame cap.
    let mut conn = Conn::open(Settings::default());
    let mut input = frame(kind::HEADERS, 0, 1, &client.block(&WS_REQUEST));
    for _ in 0..100 {
        input.extend(frame(kind::CONTINUATION, 0, 1, b""));
    }
    let evs = conn.feed(&input);
    calm(&mut conn, &evs);
    // Big CONTINUATION frames: the block's size bound, checked at each
    // frame's header (nothing past the bound is buffered).
    let mut conn = Conn::open(Settings::default());
    let mut input = frame(kind::HEADERS, 0, 1, &client.block(&WS_REQUEST));
    let filler = [0x40u8; 16_384];
    for _ in 0..3 {
        input.extend(frame(kind::CONTINUATION, 0, 1, &filler));
    }
    let evs = conn.feed(&input);
    calm(&mut conn, &evs);
}

#[test]
fn a_block_of_too_many_fields_is_refused_before_decoding() {
    let mut conn = Conn::open(Settings::default());
    // 8,000 one-byte indexed fields (":method: GET"): a 256,000-byte list.
    let block = vec![0x82u8; 8_000];
    let evs = conn.feed(&frame(kind::HEADERS, flag::END_HEADERS, 1, &block));
    calm(&mut conn, &evs);
}

#[test]
fn an_error_is_reported_once_and_memory_is_freed() {
    let mut conn = Conn::open(Settings::default());
    let evs = conn.feed(&[&frame(kind::HEADERS, 0, 1, &[0; 100])[..], &ping([0; 8])].concat());
    assert_eq!(error(&evs).code, ErrorCode::PROTOCOL_ERROR);
    assert_eq!(goaway(&conn.sent()), Some(ErrorCode::PROTOCOL_ERROR));
    assert_eq!(
        error(&conn.feed(&ping([0; 8]))).code,
        ErrorCode::PROTOCOL_ERROR
    );
    assert!(conn.sent().is_empty());
    assert_eq!(conn.h2.block.capacity(), 0);
}

#[test]
fn after_a_connection_error_no_stream_sends_anything() {
    let mut client = Client::new();
    let mut conn = Conn::open(Settings::default());
    conn.websocket(&mut client, 1);
    conn.sent();
    // A frame larger than our SETTINGS_MAX_FRAME_SIZE: FRAME_SIZE_ERROR.
    let evs = conn.feed(&frame(kind::DATA, 0, 1, &vec![0; 16_385]));
    assert_eq!(error(&evs).code, ErrorCode::FRAME_SIZE_ERROR);
    assert_eq!(goaway(&conn.sent()), Some(ErrorCode::FRAME_SIZE_ERROR));
    // The stream the runtime still has: nothing more goes out on it.
    conn.respond(1, false);
    let (moved, _) = conn.send(1, b"late", true, usize::MAX);
    assert_eq!(moved, 0);
    conn.h2
        .reset(1, ErrorCode::CANCEL, &mut conn.out, &mut conn.pool);
    conn.h2.release(1, &mut conn.out, &mut conn.pool);
    assert!(conn.sent().is_empty());
}
