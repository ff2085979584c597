//! Messages over real sockets: echo at every length encoding up to the default
//! size limit, fragmentation with control frames in between, ping/pong, and the
//! close codes of protocol violations.

use std::time::Instant;

use ringws::proto::error::ProtocolError;
use ringws::proto::frame::OpCode;
use ringws::{BackendKind, CloseCause};
use ringws_tests::{
    Client, Echo, MIB, Msg, ServerEvent, events, masked_frame, start, unmasked_frame,
};

/// Every length encoding and its edges, up to exactly the default maximum
/// message size (16 MiB), which must pass.
const SIZES: &[usize] = &[0, 1, 125, 126, 65535, 65536, MIB, 16 * MIB];

/// Valid UTF-8 text of exactly `len` bytes, mixing 1- to 4-byte characters so
/// that reads split characters.
fn text_of_len(len: usize) -> String {
    let pattern = ['a', 'é', '€', '😀', 'z', ' '];
    let mut text = String::with_capacity(len);
    let mut i = 0;
    while text.len() < len {
        let c = pattern[i % pattern.len()];
        i += 1;
        if text.len() + c.len_utf8() <= len {
            text.push(c);
        } else {
            text.push('.');
        }
    }
    text
}

fn binary_of_len(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn echo_text_at_every_size(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let mut client = Client::connect(server.addr()).unwrap();
    for &len in SIZES {
        let text = text_of_len(len);
        let started = Instant::now();
        client.send_text(&text).unwrap();
        match client.msg() {
            Msg::Text(echo) => assert!(echo == text, "text echo of {len} bytes differs"),
            other => panic!("text of {len} bytes: got {other:?}"),
        }
        if len >= MIB {
            eprintln!("text echo of {len} bytes took {:?}", started.elapsed());
        }
    }
}

fn echo_binary_at_every_size(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let mut client = Client::connect(server.addr()).unwrap();
    for &len in SIZES {
        let data = binary_of_len(len);
        let started = Instant::now();
        client.send_binary(&data).unwrap();
        match client.msg() {
            Msg::Binary(echo) => assert!(echo == data, "binary echo of {len} bytes differs"),
            other => panic!("binary of {len} bytes: got {other:?}"),
        }
        if len >= MIB {
            eprintln!("binary echo of {len} bytes took {:?}", started.elapsed());
        }
    }
}

fn one_byte_over_the_limit_is_1009(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(backend, |b| b, move || Echo::reporting(tx.clone()));

    // One frame of 16 MiB + 1.
    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();
    client.send_binary(&vec![0x55; 16 * MIB + 1]).unwrap();
    client.expect_close(1009);
    client.expect_eof().unwrap();
    let (code, _, cause) = events.close_of(id);
    assert_eq!(code, 1009);
    assert_eq!(cause, CloseCause::Protocol(ProtocolError::FrameTooBig));

    // A fragmented message over the limit: three fragments of 6 MiB.
    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();
    let fragment = vec![0x66; 6 * MIB];
    client.send_frame(false, OpCode::Binary, &fragment).unwrap();
    client
        .send_frame(false, OpCode::Continuation, &fragment)
        .unwrap();
    // The server may close before reading this one.
    let _ = client.send_frame(true, OpCode::Continuation, &fragment);
    client.expect_close(1009);
    let (code, _, cause) = events.close_of(id);
    assert_eq!(code, 1009);
    assert_eq!(cause, CloseCause::Protocol(ProtocolError::MessageTooBig));
}

fn fragmented_messages_with_control_frames_between(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let mut client = Client::connect(server.addr()).unwrap();

    // Text in 1-byte fragments, so multi-byte characters are split across
    // fragments, with a ping after every 10th fragment.
    let text = "Grüße, 世界! 😀 fragmented text";
    let bytes = text.as_bytes();
    let mut pings = 0;
    for (i, byte) in bytes.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Text
        } else {
            OpCode::Continuation
        };
        client
            .send_frame(i + 1 == bytes.len(), opcode, std::slice::from_ref(byte))
            .unwrap();
        if i % 10 == 9 {
            client.ping(format!("p{pings}").as_bytes()).unwrap();
            pings += 1;
        }
    }
    for p in 0..pings {
        assert_eq!(
            client.msg(),
            Msg::Pong(format!("p{p}").into_bytes()),
            "pongs answer in order"
        );
    }
    client.expect_text(text);

    // Binary in 1000 fragments of 100 bytes, an unsolicited pong and pings inside.
    let data = binary_of_len(100_000);
    for (i, chunk) in data.chunks(100).enumerate() {
        let opcode = if i == 0 {
            OpCode::Binary
        } else {
            OpCode::Continuation
        };
        client.send_frame(i == 999, opcode, chunk).unwrap();
        if i == 500 {
            client.pong(b"unsolicited").unwrap();
            client.ping(b"middle").unwrap();
        }
    }
    assert_eq!(client.msg(), Msg::Pong(b"middle".to_vec()));
    assert_eq!(client.msg(), Msg::Binary(data));

    // An empty first fragment and empty continuations are fine.
    client.send_frame(false, OpCode::Text, b"").unwrap();
    client
        .send_frame(false, OpCode::Continuation, b"ab")
        .unwrap();
    client.send_frame(true, OpCode::Continuation, b"").unwrap();
    client.expect_text("ab");
}

fn ping_gets_pong_with_the_same_payload(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(backend, |b| b, move || Echo::reporting(tx.clone()));
    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();
    let longest = vec![0xab; 125];
    for payload in [&b""[..], b"hello", &longest] {
        client.ping(payload).unwrap();
        assert_eq!(client.msg(), Msg::Pong(payload.to_vec()));
        let seen = events.wait("on_ping", |e| match e {
            ServerEvent::Ping {
                id: pinged,
                payload,
            } if *pinged == id => Some(payload.clone()),
            _ => None,
        });
        assert_eq!(seen, payload);
    }
}

fn unsolicited_pong_is_ignored(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(backend, |b| b, move || Echo::reporting(tx.clone()));
    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();
    client.pong(b"nobody asked").unwrap();
    client.send_text("after the pong").unwrap();
    // Nothing answers the pong: the next frame is the echo.
    client.expect_text("after the pong");
    let seen = events.wait("on_pong", |e| match e {
        ServerEvent::Pong {
            id: ponged,
            payload,
        } if *ponged == id => Some(payload.clone()),
        _ => None,
    });
    assert_eq!(seen, b"nobody asked");
}

fn invalid_utf8_is_1007(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(backend, |b| b, move || Echo::reporting(tx.clone()));

    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();
    client
        .send_frame(true, OpCode::Text, &[b'o', b'k', 0xce, 0xba, 0xff])
        .unwrap();
    client.expect_close(1007);
    client.expect_eof().unwrap();
    let (code, _, cause) = events.close_of(id);
    assert_eq!(
        (code, cause),
        (1007, CloseCause::Protocol(ProtocolError::InvalidUtf8))
    );

    // Invalid across fragments: the first fragment ends inside a character that
    // the second does not complete.
    let mut client = Client::connect(server.addr()).unwrap();
    client
        .send_frame(false, OpCode::Text, &[b'a', 0xe2, 0x82])
        .unwrap();
    client.send_frame(true, OpCode::Continuation, b"z").unwrap();
    client.expect_close(1007);
}

fn unmasked_client_frame_is_1002(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(backend, |b| b, move || Echo::reporting(tx.clone()));
    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();
    client
        .send_raw(&unmasked_frame(true, OpCode::Text, b"naked"))
        .unwrap();
    client.expect_close(1002);
    client.expect_eof().unwrap();
    let (code, _, cause) = events.close_of(id);
    assert_eq!(
        (code, cause),
        (1002, CloseCause::Protocol(ProtocolError::UnmaskedFrame))
    );
}

fn other_protocol_violations_are_1002(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let ping = |fin: bool, payload: &[u8]| masked_frame(fin, OpCode::Ping, payload);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("reserved opcode", vec![0x83, 0x80, 1, 2, 3, 4]),
        ("RSV1 without extension", vec![0xc1, 0x80, 1, 2, 3, 4]),
        ("ping longer than 125", ping(true, &[0; 126])),
        ("fragmented ping", ping(false, b"x")),
        (
            "continuation without a message",
            masked_frame(true, OpCode::Continuation, b"x"),
        ),
        (
            "new message inside a fragmented one",
            [
                masked_frame(false, OpCode::Text, b"a"),
                masked_frame(true, OpCode::Text, b"b"),
            ]
            .concat(),
        ),
        (
            "close code 1005 on the wire",
            masked_frame(true, OpCode::Close, &1005u16.to_be_bytes()),
        ),
        (
            "close with a 1-byte payload",
            masked_frame(true, OpCode::Close, &[3]),
        ),
    ];
    for (what, bytes) in cases {
        let mut client = Client::connect(server.addr()).unwrap();
        client.send_raw(&bytes).unwrap();
        match client.recv() {
            Ok(Msg::Close(Some((1002, _)))) => {}
            other => panic!("{what}: expected close 1002, got {other:?}"),
        }
    }
}

/// A message whose first 8 bytes are its sequence number and the rest a pattern of it.
fn numbered(seq: u64, size: usize) -> Vec<u8> {
    let mut data: Vec<u8> = (0..size).map(|i| (i as u64 ^ seq) as u8).collect();
    data[..8].copy_from_slice(&seq.to_be_bytes());
    data
}

/// Large echoes go out from where they lie (the receive buffer) while nothing
/// is queued; a client that does not read makes those writes short, so the
/// rest is queued behind them: every echo must still arrive whole and in order,
/// small ones between them included. A client reset with such writes in flight
/// harms nobody else.
fn large_echoes_to_a_late_reader_arrive_whole_and_in_order(backend: BackendKind) {
    const COUNT: u64 = 96;
    const SIZE: usize = 64 << 10;
    let server = start(backend, |b| b.workers(1), Echo::new);
    let mut late = Client::connect(server.addr()).unwrap();
    for seq in 0..COUNT {
        late.send_binary(&numbered(seq, SIZE)).unwrap();
        if seq % 8 == 0 {
            late.send_text(&format!("small {seq}")).unwrap();
        }
    }
    // A second one sends as much, then resets without reading anything.
    let mut gone = Client::connect(server.addr()).unwrap();
    for seq in 0..COUNT {
        gone.send_binary(&numbered(seq, SIZE)).unwrap();
    }
    gone.reset();
    for seq in 0..COUNT {
        match late.msg() {
            Msg::Binary(data) => assert!(
                data == numbered(seq, SIZE),
                "echo {seq} is corrupt or out of order (got sequence {:?})",
                data.get(..8)
            ),
            other => panic!("expected echo {seq}, got {other:?}"),
        }
        if seq % 8 == 0 {
            late.expect_text(&format!("small {seq}"));
        }
    }
    let mut fresh = Client::connect(server.addr()).unwrap();
    fresh.send_binary(&numbered(7, SIZE)).unwrap();
    assert!(fresh.msg() == Msg::Binary(numbered(7, SIZE)));
}

ringws_tests::backend_tests! {
    echo_text_at_every_size,
    large_echoes_to_a_late_reader_arrive_whole_and_in_order,
    echo_binary_at_every_size,
    one_byte_over_the_limit_is_1009,
    fragmented_messages_with_control_frames_between,
    ping_gets_pong_with_the_same_payload,
    unsolicited_pong_is_ignored,
    invalid_utf8_is_1007,
    unmasked_client_frame_is_1002,
    other_protocol_violations_are_1002,
}
