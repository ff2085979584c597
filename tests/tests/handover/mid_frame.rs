//! Connections in the middle of a frame at the hand-over: each client writes
//! the start of its bytes (a header and part of a payload, a first fragment
//! and part of the next, a cut header, a ping cut inside a fragmented
//! message, a publish, a compressed message cut in its second fragment;
//! over TLS the last record cut as well), the hand-over happens at once
//! (nothing waits for a frame to end), then the client writes the rest and
//! the new process delivers each message whole, with no close, and
//! publishes the cut publish once. And a connection
//! that cannot go (a message in progress larger than a record carries,
//! which never ends) is still closed with 1001 at the deadline. One its
//! rate limit paused goes too, with what it holds back.

use std::io::Write;
use std::time::Duration;

use ringws::proto::deflate::DeflateConfig;
use ringws::proto::frame::OpCode;
use ringws::{BackendKind, Builder, DeflateMode, RateLimit};
use ringws_tests::{Client, ConnectOptions, Msg, backend_tests, masked_frame, start, wait_until};

use super::{Counting, Rendezvous, SERIAL, metric, open_fds, still_echoes};

/// A masked frame with RSV1 set (the first frame of a compressed message).
fn compressed_frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut frame = masked_frame(fin, opcode, payload);
    frame[0] |= 0x40;
    frame
}

/// `data` as a permessage-deflate payload: one stored (uncompressed)
/// deflate block, not final, as a sync flush leaves it, less the
/// `00 00 ff ff` the receiver appends.
fn deflated(data: &[u8]) -> Vec<u8> {
    let len = data.len() as u16;
    let mut out = vec![0];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// One client's bytes, where they are cut, and what it gets back.
struct Cut {
    deflate: bool,
    bytes: Vec<u8>,
    at: usize,
    expect: Vec<Msg>,
}

fn cuts() -> Vec<Cut> {
    let long = "a long message trickling in, ".repeat(100);
    let mut fragments = masked_frame(false, OpCode::Text, b"the first fragment, ");
    let first = fragments.len();
    fragments.extend(masked_frame(
        true,
        OpCode::Continuation,
        b"and the last one",
    ));
    let mut pinged = masked_frame(false, OpCode::Text, "abc é".as_bytes());
    pinged.extend(masked_frame(true, OpCode::Ping, b"are you there"));
    let inside_ping = pinged.len() - 3;
    pinged.extend(masked_frame(true, OpCode::Continuation, b" def"));
    let squeezed = deflated(b"compressed, then cut in its second fragment");
    let mut compressed = compressed_frame(false, OpCode::Text, &squeezed[..20]);
    let second = compressed.len();
    compressed.extend(masked_frame(true, OpCode::Continuation, &squeezed[20..]));
    vec![
        // A header and a third of the payload.
        Cut {
            deflate: false,
            bytes: masked_frame(true, OpCode::Text, long.as_bytes()),
            at: 8 + 1000,
            expect: vec![Msg::Text(long.clone())],
        },
        // A first fragment, and the next one's header and 4 bytes.
        Cut {
            deflate: false,
            bytes: fragments,
            at: first + 6 + 4,
            expect: vec![Msg::Text("the first fragment, and the last one".into())],
        },
        // Three bytes of a header.
        Cut {
            deflate: false,
            bytes: masked_frame(true, OpCode::Binary, &[7; 300]),
            at: 3,
            expect: vec![Msg::Binary(vec![7; 300])],
        },
        // A ping cut inside a fragmented text message (and a code point).
        Cut {
            deflate: false,
            bytes: pinged,
            at: inside_ping,
            expect: vec![
                Msg::Pong(b"are you there".to_vec()),
                Msg::Text("abc é def".into()),
            ],
        },
        // A publish cut in its frame: completed, and published, by the new
        // process only, once.
        Cut {
            deflate: false,
            bytes: masked_frame(true, OpCode::Text, b"!pub carried across"),
            at: 9,
            expect: vec![],
        },
        // A compressed message, cut in its second fragment: its compressed
        // bytes so far travel, and it is inflated in the new process.
        Cut {
            deflate: true,
            bytes: compressed,
            at: second + 6 + 5,
            expect: vec![Msg::Text(
                "compressed, then cut in its second fragment".into(),
            )],
        },
    ]
}

/// Writes `bytes[..at]`; over TLS as two records, the second cut 7 bytes
/// before its end (the rest returned, to be written first later).
fn write_start(client: &mut Client, bytes: &[u8], at: usize) -> Vec<u8> {
    if !client.stream().is_tls() {
        client.send_raw(&bytes[..at]).unwrap();
        return Vec::new();
    }
    let half = at / 2;
    let mut records = client.stream().seal(&bytes[..half]);
    let second = client.stream().seal(&bytes[half..at]);
    let keep = 7.min(second.len());
    records.extend_from_slice(&second[..second.len() - keep]);
    client.stream().tcp().write_all(&records).unwrap();
    second[second.len() - keep..].to_vec()
}

fn clients_mid_frame_finish_their_messages_in_the_new_process(backend: BackendKind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _ = env_logger::builder().is_test(true).try_init();
    let fds_before = open_fds();
    let meet = Rendezvous::new("the shared secret");
    let handler = Counting { carry: true };
    let configure = |b: Builder| {
        meet.configure(b)
            .deflate(DeflateMode::Shared)
            .ping_interval(None)
    };
    let old = start(backend, configure, move || handler);
    let addr = old.addr();
    let cuts = cuts();
    let mut clients = Vec::new();
    for cut in &cuts {
        let options = ConnectOptions {
            deflate: cut.deflate.then(DeflateConfig::default),
            ..ConnectOptions::default()
        };
        let mut client = Client::connect_opts(addr, &options).unwrap();
        assert_eq!(client.deflate().is_some(), cut.deflate);
        still_echoes(&mut client, "before");
        clients.push(client);
    }
    // A subscriber to what the cut publish says.
    let mut subscriber = Client::connect(addr).unwrap();
    subscriber.send_text("!sub news").unwrap();
    subscriber.expect_text("subscribed");
    let mut rests = Vec::new();
    for (client, cut) in clients.iter_mut().zip(&cuts) {
        rests.push(write_start(client, &cut.bytes, cut.at));
    }
    // The old process reads what came (no event tells when it has).
    std::thread::sleep(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let new = start(backend, configure, move || handler);
    old.join();
    // Nothing waited for a frame to end (the deadline is 10 s).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let handed = cuts.len() as u64 + 1;
    assert_eq!(metric(&old, "ringws_handover_out"), handed);
    assert_eq!(metric(&old, "ringws_handover_refused"), 0);
    wait_until("the new server counts them", || {
        metric(&new, "ringws_handover_in") == handed
    });
    for ((client, cut), rest) in clients.iter_mut().zip(&cuts).zip(&rests) {
        if !rest.is_empty() {
            client.stream().tcp().write_all(rest).unwrap();
        }
        client.send_raw(&cut.bytes[cut.at..]).unwrap();
        for expected in &cut.expect {
            assert_eq!(&client.msg(), expected);
        }
        // Served on: and its count travelled ("before", the message cut).
        still_echoes(client, "after");
        client.send_text("!count").unwrap();
        client.expect_text("4");
    }
    // The publish went once, from the new process: the next thing the
    // subscriber gets is a publish made after it.
    subscriber.expect_text("carried across");
    new.publish("news", ringws::Message::Text("end"));
    subscriber.expect_text("end");
    drop(subscriber);
    drop(clients);
    drop(old);
    drop(new);
    wait_until("every descriptor closed", || open_fds() <= fds_before);
}

/// A connection that cannot go is still closed at the deadline: here one
/// whose message in progress is larger than a record carries (a header
/// announcing 300 KiB, and 200 KiB of it), which never ends; it reads on in
/// the old process, which closes it with 1001 at the deadline as a plain
/// restart would, while the other went at once.
fn the_deadline_closes_what_is_left_with_1001(backend: BackendKind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let meet = Rendezvous::new("the shared secret");
    let handler = Counting { carry: true };
    let configure = |b: Builder| {
        meet.configure(b)
            .handover_deadline(std::time::Duration::from_millis(300))
    };
    let old = start(backend, configure, move || handler);
    let addr = old.addr();
    let mut whole = Client::connect(addr).unwrap();
    let mut cut = Client::connect(addr).unwrap();
    still_echoes(&mut whole, "before");
    let frame = masked_frame(true, OpCode::Binary, &vec![1; 300 << 10]);
    // 14 bytes of header (a 64-bit length), then 200 KiB of payload.
    cut.send_raw(&frame[..14 + (200 << 10)]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let new = start(backend, configure, move || handler);
    assert_eq!(cut.expect_close(1001), "server shutdown");
    // Its frame never ends: it goes away instead of answering.
    drop(cut);
    old.join();
    assert_eq!(metric(&old, "ringws_handover_out"), 1);
    still_echoes(&mut whole, "after");
    assert_eq!(metric(&new, "ringws_handover_in"), 1);
}

/// A connection paused by its rate limit goes at once with the messages it
/// holds back and its buckets (the token comes back after a second, the
/// deadline is half a second): the new process echoes them, in order, once
/// its tokens are back.
fn a_connection_its_rate_limit_paused_goes_with_what_it_holds(backend: BackendKind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _ = env_logger::builder().is_test(true).try_init();
    let meet = Rendezvous::new("the shared secret");
    let handler = Counting { carry: true };
    let configure = |b: Builder| {
        meet.configure(b)
            .handover_deadline(Duration::from_millis(500))
            .rate_limit(RateLimit::none().messages(1, 1))
    };
    let old = start(backend, configure, move || handler);
    let mut client = Client::connect(old.addr()).unwrap();
    let mut burst = Vec::new();
    for text in ["one", "two", "three"] {
        burst.extend(masked_frame(true, OpCode::Text, text.as_bytes()));
    }
    client.send_raw(&burst).unwrap();
    client.expect_text("one");
    // "two" and "three" are held back: a token comes back in a second.
    std::thread::sleep(Duration::from_millis(100));
    let new = start(backend, configure, move || handler);
    old.join();
    assert_eq!(metric(&old, "ringws_handover_out"), 1);
    // The new process publishes its counters once the hand-over is complete.
    wait_until("the new server counts it", || {
        metric(&new, "ringws_handover_in") == 1
    });
    client.expect_text("two");
    client.expect_text("three");
}

backend_tests! {
    a_connection_its_rate_limit_paused_goes_with_what_it_holds,
    clients_mid_frame_finish_their_messages_in_the_new_process,
    the_deadline_closes_what_is_left_with_1001,
}
