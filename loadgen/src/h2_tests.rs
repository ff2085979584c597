use super::*;

/// A frame as a server writes it.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    head(&mut out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
    out
}

/// The frames in `bytes`: (kind, flags, stream, payload).
fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut all = Vec::new();
    while !bytes.is_empty() {
        let len =
            (usize::from(bytes[0]) << 16) | (usize::from(bytes[1]) << 8) | usize::from(bytes[2]);
        all.push((
            bytes[3],
            bytes[4],
            u32_at(bytes, 5),
            bytes[HEAD..HEAD + len].to_vec(),
        ));
        bytes = &bytes[HEAD + len..];
    }
    all
}

/// Every event of `input` fed in pieces of `step` bytes, DATA as owned bytes.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Data(u32, Vec<u8>, u32, bool),
    Other(String),
}

fn feed(h2: &mut H2, input: &[u8], step: usize) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut owned = input.to_vec();
    for piece in owned.chunks_mut(step) {
        let mut rest: &mut [u8] = piece;
        while let Some(event) = h2.next(&mut rest).unwrap() {
            seen.push(match event {
                Event::Data {
                    stream,
                    data,
                    flow,
                    end_stream,
                } => Seen::Data(stream, data.to_vec(), flow, end_stream),
                other => Seen::Other(format!("{other:?}")),
            });
        }
    }
    seen
}

/// DATA pieces of one stream joined: (bytes, flow, end seen).
fn joined(seen: &[Seen], id: u32) -> (Vec<u8>, u32, bool) {
    let mut all = (Vec::new(), 0, false);
    for s in seen {
        if let Seen::Data(stream, data, flow, end) = s
            && *stream == id
        {
            all.0.extend_from_slice(data);
            all.1 += flow;
            all.2 |= *end;
        }
    }
    all
}

fn settings(params: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in params {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(kind::SETTINGS, 0, 0, &p)
}

#[test]
fn start_sends_preface_settings_and_the_connection_window() {
    let mut h2 = H2::new();
    h2.start();
    assert!(h2.out.starts_with(PREFACE));
    let f = frames(&h2.out[PREFACE.len()..]);
    assert_eq!(f.len(), 2);
    assert_eq!((f[0].0, f[0].1, f[0].2), (kind::SETTINGS, 0, 0));
    assert_eq!(
        f[0].3,
        [0, 2, 0, 0, 0, 0, 0, 4, 0, 0x60, 0, 0],
        "no push, a 6 MiB stream window"
    );
    assert_eq!(f[1].0, kind::WINDOW_UPDATE);
    assert_eq!(u32_at(&f[1].3, 0), CONNECTION_WINDOW - DEFAULT_WINDOW);
}

#[test]
fn server_settings_are_applied_and_acknowledged() {
    let mut h2 = H2::new();
    let mut input = settings(&[
        (setting::MAX_CONCURRENT_STREAMS, 100),
        (setting::ENABLE_CONNECT_PROTOCOL, 1),
        (setting::INITIAL_WINDOW_SIZE, 1000),
        (setting::MAX_FRAME_SIZE, 20_000),
    ]);
    input.extend(frame(kind::SETTINGS, flag::ACK, 0, &[]));
    input.extend(frame(kind::PING, 0, 0, b"12345678"));
    input.extend(settings(&[(setting::INITIAL_WINDOW_SIZE, 1500)]));
    for step in [1, 7, input.len()] {
        let mut h2b = H2::new();
        let seen = feed(&mut h2b, &input, step);
        assert_eq!(
            seen,
            [
                Seen::Other("Ready".into()),
                Seen::Other("StreamWindow(500)".into())
            ]
        );
    }
    feed(&mut h2, &input, 3);
    assert_eq!(h2.max_streams, 100);
    assert!(h2.connect_protocol);
    assert_eq!(h2.initial_window(), 1500);
    assert_eq!(h2.peer_max_frame, 20_000);
    let f = frames(&h2.out);
    assert_eq!(
        f,
        [
            (kind::SETTINGS, flag::ACK, 0, vec![]),
            (kind::PING, flag::ACK, 0, b"12345678".to_vec()),
            (kind::SETTINGS, flag::ACK, 0, vec![]),
        ]
    );
}

#[test]
fn data_comes_in_place_in_any_pieces_with_its_flow() {
    let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let mut input = frame(kind::DATA, 0, 1, &payload[..1000]);
    // Padded: the pad length byte, 1000 bytes, 5 of padding.
    let mut padded = vec![5];
    padded.extend_from_slice(&payload[1000..2000]);
    padded.extend_from_slice(&[0; 5]);
    input.extend(frame(kind::DATA, flag::PADDED, 1, &padded));
    input.extend(frame(kind::DATA, 0, 3, &payload[2000..]));
    input.extend(frame(kind::DATA, flag::END_STREAM, 1, &[]));
    // Padding alone, with END_STREAM.
    input.extend(frame(
        kind::DATA,
        flag::PADDED | flag::END_STREAM,
        3,
        &[2, 0, 0],
    ));
    for step in [1, 2, 9, 10, 100, 4096] {
        let mut h2 = H2::new();
        let seen = feed(&mut h2, &input, step);
        assert_eq!(
            joined(&seen, 1),
            (payload[..2000].to_vec(), 1000 + 1006, true),
            "{step}"
        );
        assert_eq!(joined(&seen, 3), (payload[2000..].to_vec(), 1000 + 3, true));
        // END_STREAM only on a frame's last piece.
        let ends = seen
            .iter()
            .filter(|s| matches!(s, Seen::Data(_, _, _, true)))
            .count();
        assert_eq!(ends, 2, "{step}");
        assert!(h2.out.is_empty(), "no window credited before half is used");
    }
}

#[test]
fn windows_are_credited_once_half_is_used() {
    let mut h2 = H2::new();
    let chunk = vec![7u8; MAX_FRAME];
    let mut input = Vec::new();
    // 15 MiB / 2 is 480 frames of 16 KiB exactly.
    let frames_needed = (CONNECTION_WINDOW / 2) as usize / MAX_FRAME;
    for _ in 0..frames_needed {
        input.extend(frame(kind::DATA, 0, 1, &chunk));
    }
    let seen = feed(&mut h2, &input, 65536);
    let f = frames(&h2.out);
    assert_eq!(f.len(), 1, "one connection WINDOW_UPDATE");
    assert_eq!((f[0].0, f[0].2), (kind::WINDOW_UPDATE, 0));
    assert_eq!(u32_at(&f[0].3, 0), (frames_needed * MAX_FRAME) as u32);
    // The stream's: when the caller's count reaches half its window.
    let mut unacked = joined(&seen, 1).1;
    h2.out.clear();
    h2.credit(1, &mut unacked);
    assert_eq!(unacked, 0);
    let f = frames(&h2.out);
    assert_eq!((f[0].0, f[0].2), (kind::WINDOW_UPDATE, 1));
    let mut small = 100;
    h2.out.clear();
    h2.credit(1, &mut small);
    assert!(h2.out.is_empty());
    assert_eq!(small, 100);
}

#[test]
fn data_out_respects_both_windows_and_the_frame_size() {
    let mut h2 = H2::new();
    let src = vec![1u8; 70_000];
    let mut window = h2.initial_window();
    // The connection's window (65,535) stops it first.
    let sent = h2.data(5, &mut window, &src);
    assert_eq!(sent, 65_535);
    assert_eq!(window, 0);
    let f = frames(&h2.out);
    assert_eq!(f.len(), 4);
    assert!(f.iter().all(|f| f.0 == kind::DATA && f.1 == 0 && f.2 == 5));
    assert_eq!(f[0].3.len(), MAX_FRAME);
    assert_eq!(
        f.iter().map(|f| f.3.len()).sum::<usize>(),
        65_535,
        "payload copied once, in order"
    );
    assert_eq!(h2.data(5, &mut window, &src[sent..]), 0);
    // The connection grows; the stream still has no room.
    let mut input = frame(kind::WINDOW_UPDATE, 0, 0, &100_000u32.to_be_bytes());
    input.extend(frame(kind::WINDOW_UPDATE, 0, 5, &10u32.to_be_bytes()));
    let seen = feed(&mut h2, &input, 3);
    assert_eq!(
        seen,
        [
            Seen::Other("ConnectionWindow".into()),
            Seen::Other("WindowUpdate { stream: 5, increment: 10 }".into())
        ]
    );
    window += 10;
    h2.out.clear();
    assert_eq!(h2.data(5, &mut window, &src[sent..]), 10);
    h2.end_stream(5);
    h2.reset(7, CANCEL);
    let f = frames(&h2.out);
    assert_eq!(f[0].3.len(), 10);
    assert_eq!(
        (f[1].0, f[1].1, f[1].2, f[1].3.len()),
        (kind::DATA, 1, 5, 0)
    );
    assert_eq!(
        (f[2].0, f[2].2, u32_at(&f[2].3, 0)),
        (kind::RST_STREAM, 7, 8)
    );
}

#[test]
fn connect_block_decodes_to_the_extended_connect() {
    let long_path = format!("/{}", "p".repeat(300));
    for (https, path, ext) in [
        (false, "/", None),
        (true, long_path.as_str(), Some("permessage-deflate")),
    ] {
        let block = connect_block(https, "127.0.0.1:9001", path, ext);
        let fields: Vec<(String, String)> = HpackDecoder::new()
            .decode(&block)
            .unwrap()
            .into_iter()
            .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        let mut want = vec![
            (":method", "CONNECT"),
            (":scheme", if https { "https" } else { "http" }),
            (":path", path),
            (":authority", "127.0.0.1:9001"),
            (":protocol", "websocket"),
            ("sec-websocket-version", "13"),
        ];
        if let Some(e) = ext {
            want.push(("sec-websocket-extensions", e));
        }
        let want: Vec<(String, String)> = want
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        assert_eq!(fields, want);
    }
}

#[test]
fn headers_open_streams_in_order_with_continuation_when_large() {
    let mut h2 = H2::new();
    let block = connect_block(false, "h", "/", None);
    assert_eq!(h2.open(&block), 1);
    assert_eq!(h2.open(&block), 3);
    let f = frames(&h2.out);
    assert_eq!(f.len(), 2);
    assert_eq!(
        (f[0].0, f[0].1, f[0].2),
        (kind::HEADERS, flag::END_HEADERS, 1)
    );
    assert_eq!(f[1].2, 3);
    assert_eq!(f[0].3, block);
    h2.out.clear();
    let big = vec![0x40u8; MAX_FRAME + 10];
    assert_eq!(h2.open(&big), 5);
    let f = frames(&h2.out);
    assert_eq!((f[0].0, f[0].1), (kind::HEADERS, 0));
    assert_eq!(
        (f[1].0, f[1].1, f[1].3.len()),
        (kind::CONTINUATION, flag::END_HEADERS, 10)
    );
}

#[test]
fn responses_decode_through_padding_priority_and_continuation() {
    let mut enc = loona_hpack::Encoder::new();
    let ok = enc.encode([
        (&b":status"[..], &b"200"[..]),
        (b"sec-websocket-extensions", b"permessage-deflate"),
    ]);
    // Padded, with priority, cut in two by CONTINUATION.
    let mut first = vec![3];
    first.extend_from_slice(&[0, 0, 0, 0, 16]);
    first.extend_from_slice(&ok[..4]);
    first.extend_from_slice(&[0; 3]);
    let mut input = frame(kind::HEADERS, flag::PADDED | flag::PRIORITY, 1, &first);
    input.extend(frame(kind::CONTINUATION, flag::END_HEADERS, 1, &ok[4..]));
    // The encoder's dynamic table is used again by the next block.
    let refused = enc.encode([(&b":status"[..], &b"400"[..])]);
    input.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        3,
        &refused,
    ));
    let mut h2 = H2::new();
    let mut owned = input.clone();
    let mut rest: &mut [u8] = &mut owned;
    let mut responses = Vec::new();
    while let Some(event) = h2.next(&mut rest).unwrap() {
        let Event::Headers { stream, end_stream } = event else {
            panic!("{event:?}");
        };
        responses.push((stream, end_stream, h2.response().unwrap()));
    }
    assert_eq!(
        responses,
        [
            (
                1,
                false,
                Response {
                    status: 200,
                    extensions: Some("permessage-deflate".into())
                }
            ),
            (
                3,
                true,
                Response {
                    status: 400,
                    extensions: None
                }
            ),
        ]
    );
}

#[test]
fn resets_goaway_and_bad_frames() {
    let mut input = frame(kind::RST_STREAM, 0, 3, &7u32.to_be_bytes());
    input.extend(frame(kind::GOAWAY, 0, 0, &[0, 0, 0, 9, 0, 0, 0, 11, b'x']));
    input.extend(frame(0x2, 0, 1, &[0, 0, 0, 0, 1]));
    let mut h2 = H2::new();
    assert_eq!(
        feed(&mut h2, &input, 5),
        [
            Seen::Other("Reset { stream: 3, code: 7 }".into()),
            Seen::Other("GoAway { last_stream: 9, code: 11 }".into())
        ]
    );
    assert_eq!(error_name(11), "ENHANCE_YOUR_CALM");
    for bad in [
        frame(kind::PUSH_PROMISE, flag::END_HEADERS, 1, &[0, 0, 0, 2]),
        frame(kind::DATA, 0, 0, b"x"),
        frame(kind::CONTINUATION, flag::END_HEADERS, 1, b"x"),
        frame(kind::PING, 0, 0, b"short"),
        frame(kind::DATA, 0, 1, &vec![0; MAX_FRAME + 1]),
    ] {
        let mut h2 = H2::new();
        let mut owned = bad.clone();
        let mut rest: &mut [u8] = &mut owned;
        let mut result = Ok(None);
        while !rest.is_empty() {
            result = h2.next(&mut rest);
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err(), "{bad:?}");
    }
}
