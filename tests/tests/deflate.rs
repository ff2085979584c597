//! permessage-deflate (RFC 7692) over real sockets, on both backends and in both
//! memory modes: negotiation, compressed echo both ways, fragmented compressed
//! messages, a decompression bomb, a corrupt stream, publish to compressed
//! subscribers.

use ringws::proto::deflate::DeflateConfig;
use ringws::{BackendKind, DeflateMode};
use ringws_tests::{Client, ConnectOptions, Echo, MIB, Msg, backend_tests, raw_head, start};

const MODES: [DeflateMode; 2] = [
    DeflateMode::Shared,
    DeflateMode::Dedicated { window_bits: 12 },
];

fn connect(addr: std::net::SocketAddr, config: DeflateConfig) -> Client {
    let options = ConnectOptions {
        deflate: Some(config),
        ..ConnectOptions::default()
    };
    Client::connect_opts(addr, &options).expect("upgrade")
}

/// The `Sec-WebSocket-Extensions` of the server's 101 to a raw upgrade request
/// carrying `offer`.
fn raw_extensions(addr: std::net::SocketAddr, offer: &str) -> Option<String> {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: {offer}\r\n\r\n"
    );
    let (_stream, head) = raw_head(addr, request.as_bytes()).expect("a response");
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("Sec-WebSocket-Extensions")
            .then(|| value.trim().to_owned())
    })
}

fn negotiation_follows_the_mode(backend: BackendKind) {
    let shared = start(backend, |b| b.deflate(DeflateMode::Shared), Echo::new);
    let c = connect(shared.addr(), DeflateConfig::default());
    let n = c.deflate().expect("negotiated");
    // Shared mode: no context takeover in either direction.
    assert!(
        n.server_no_context_takeover && n.client_no_context_takeover,
        "{n:?}"
    );

    let dedicated = start(
        backend,
        |b| b.deflate(DeflateMode::Dedicated { window_bits: 11 }),
        Echo::new,
    );
    let c = connect(dedicated.addr(), DeflateConfig::default());
    let n = c.deflate().expect("negotiated");
    assert!(
        !n.server_no_context_takeover && !n.client_no_context_takeover,
        "{n:?}"
    );
    assert_eq!(n.server_max_window_bits, 11);

    let off = start(backend, |b| b, Echo::new);
    let mut c = connect(off.addr(), DeflateConfig::default());
    assert_eq!(c.deflate(), None);
    c.send_text("plain").unwrap();
    c.expect_text("plain");
}

fn browser_offer_is_accepted(backend: BackendKind) {
    for mode in MODES {
        let server = start(backend, |b| b.deflate(mode), Echo::new);
        let answer = raw_extensions(server.addr(), "permessage-deflate; client_max_window_bits");
        let answer = answer.expect("an extension in the 101");
        assert!(answer.starts_with("permessage-deflate"), "{answer}");
        // An invalid offer alone is declined: no extension, plain WebSocket.
        let declined = raw_extensions(
            server.addr(),
            "permessage-deflate; server_max_window_bits=99",
        );
        assert_eq!(declined, None);
    }
}

fn compressed_echo_of_every_size(backend: BackendKind) {
    for mode in MODES {
        let server = start(backend, |b| b.deflate(mode), Echo::new);
        for takeover in [false, true] {
            let config = DeflateConfig {
                no_context_takeover: !takeover,
                ..DeflateConfig::default()
            };
            let mut c = connect(server.addr(), config);
            for size in [0usize, 1, 100, 64 << 10, MIB] {
                let text: String = (0..size).map(|i| (b'a' + (i % 7) as u8) as char).collect();
                c.send_compressed(true, text.as_bytes(), 1).unwrap();
                c.expect_text(&text);
                let binary: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
                c.send_compressed(false, &binary, 1).unwrap();
                assert!(c.msg() == Msg::Binary(binary), "{mode:?} {size}");
                // Uncompressed messages stay allowed.
                c.send_text("plain").unwrap();
                c.expect_text("plain");
            }
        }
    }
}

fn fragmented_compressed_message(backend: BackendKind) {
    for mode in MODES {
        let server = start(backend, |b| b.deflate(mode), Echo::new);
        let mut c = connect(server.addr(), DeflateConfig::default());
        let text = "fragments of a compressed message ".repeat(200);
        c.send_compressed(true, text.as_bytes(), 7).unwrap();
        c.expect_text(&text);
    }
}

fn decompression_bomb_is_1009(backend: BackendKind) {
    for mode in MODES {
        let server = start(
            backend,
            |b| b.deflate(mode).max_message_size(MIB),
            Echo::new,
        );
        let mut c = connect(server.addr(), DeflateConfig::default());
        // 32 MiB of zeros compresses to a few tens of KiB.
        c.send_compressed(false, &vec![0u8; 32 * MIB], 1).unwrap();
        c.expect_close(1009);
    }
}

fn corrupt_stream_is_1007(backend: BackendKind) {
    for mode in MODES {
        let server = start(backend, |b| b.deflate(mode), Echo::new);
        let mut c = connect(server.addr(), DeflateConfig::default());
        // A deflate block of the reserved type 3, sent as a compressed message.
        let mut frame = vec![0xc2, 0x84];
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(&[0x07, 0xff, 0xff, 0xff]);
        c.send_raw(&frame).unwrap();
        c.expect_close(1007);
        // The shared decompressor is unharmed: another connection still works.
        let mut d = connect(server.addr(), DeflateConfig::default());
        d.send_compressed(true, b"still fine, still fine, still fine", 1)
            .unwrap();
        d.expect_text("still fine, still fine, still fine");
    }
}

fn rsv1_on_a_continuation_is_1002(backend: BackendKind) {
    let server = start(backend, |b| b.deflate(DeflateMode::Shared), Echo::new);
    let mut c = connect(server.addr(), DeflateConfig::default());
    // Binary, not FIN, then a continuation with RSV1 set.
    c.send_raw(&[0x02, 0x80, 0, 0, 0, 0, 0xc0, 0x80, 0, 0, 0, 0])
        .unwrap();
    c.expect_close(1002);
}

fn publish_reaches_compressed_and_plain_subscribers(backend: BackendKind) {
    for mode in MODES {
        let server = start(
            backend,
            |b| b.deflate(mode),
            || Echo::new().subscribe_on_open("room"),
        );
        let mut compressed: Vec<Client> = (0..4)
            .map(|_| connect(server.addr(), DeflateConfig::default()))
            .collect();
        let mut plain: Vec<Client> = (0..2)
            .map(|_| Client::connect(server.addr()).unwrap())
            .collect();
        ringws_tests::wait_until("6 connections", || server.stats().connections == 6);
        let news = "breaking news, breaking news, breaking news, breaking news ".repeat(10);
        server.publish("room", ringws::Message::Text(&news));
        for c in compressed.iter_mut().chain(plain.iter_mut()) {
            c.expect_text(&news);
        }
    }
}

backend_tests! {
    negotiation_follows_the_mode,
    browser_offer_is_accepted,
    compressed_echo_of_every_size,
    fragmented_compressed_message,
    decompression_bomb_is_1009,
    corrupt_stream_is_1007,
    rsv1_on_a_continuation_is_1002,
    publish_reaches_compressed_and_plain_subscribers,
}
