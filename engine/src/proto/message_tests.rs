//! Tests of the message layer: every rule of RFC 6455 sections 5.4-5.5 and 7,
//! in both roles, over every way a stream can be cut into reads.

use super::*;
use crate::proto::frame::{RSV1, encode_header, write_frame};
use crate::proto::mask::mask_into;
use proptest::prelude::*;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const SERVER: DecoderConfig = DecoderConfig::new(Role::Server, 1 << 20);
const CLIENT: DecoderConfig = DecoderConfig::new(Role::Client, 1 << 20);

/// An owned copy of an [`Event`], for comparisons after the buffer is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
    Compressed(bool, Vec<u8>),
}

impl From<Event<'_>> for Owned {
    fn from(event: Event<'_>) -> Self {
        match event {
            Event::Text(t) => Owned::Text(t.to_owned()),
            Event::Binary(b) => Owned::Binary(b.to_vec()),
            Event::Ping(p) => Owned::Ping(p.to_vec()),
            Event::Pong(p) => Owned::Pong(p.to_vec()),
            Event::Close(c) => Owned::Close(c.map(|c| (c.code.0, c.reason.to_owned()))),
            Event::Compressed { text, payload } => Owned::Compressed(text, payload.to_vec()),
        }
    }
}

/// A frame as the peer of `config`'s role sends it: masked towards a server.
fn frame(config: &DecoderConfig, fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mask = (config.rules.role == Role::Server).then_some(KEY);
    write_frame(&mut out, fin, opcode, payload, mask);
    out
}

/// Feeds `reads` one by one, as separate receive buffers, and collects the events.
fn decode_reads(config: &DecoderConfig, reads: &[&[u8]]) -> Result<Vec<Owned>, ProtocolError> {
    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    for read in reads {
        let mut buf = read.to_vec();
        let mut pos = 0;
        while pos < buf.len() {
            let (n, event) = decoder.decode(config, &mut buf[pos..])?;
            assert!(n > 0 || event.is_some(), "no progress at {pos}");
            pos += n;
            events.extend(event.map(Owned::from));
        }
        decoder.release_buffers();
    }
    Ok(events)
}

fn decode_one(config: &DecoderConfig, bytes: &[u8]) -> Result<Vec<Owned>, ProtocolError> {
    decode_reads(config, &[bytes])
}

#[test]
fn whole_frame_is_borrowed_from_the_read_buffer() {
    let mut buf = frame(&SERVER, true, OpCode::Text, b"Hello");
    let range = buf.as_ptr_range();
    let mut decoder = Decoder::new();
    let (n, event) = decoder.decode(&SERVER, &mut buf).unwrap();
    assert_eq!(n, 11);
    let Some(Event::Text(text)) = event else {
        panic!("{event:?}")
    };
    assert_eq!(text, "Hello");
    assert!(
        range.contains(&text.as_ptr()),
        "the message must point into the buffer"
    );
    assert_eq!(decoder.buffered_bytes(), 0);
}

#[test]
fn many_frames_in_one_read() {
    let mut stream = Vec::new();
    for i in 0..100u8 {
        stream.extend(frame(&SERVER, true, OpCode::Binary, &[i; 3]));
    }
    let events = decode_one(&SERVER, &stream).unwrap();
    assert_eq!(events.len(), 100);
    assert_eq!(events[42], Owned::Binary(vec![42; 3]));
}

#[test]
fn both_roles_decode_their_peers_frames() {
    for config in [SERVER, CLIENT] {
        let events =
            decode_one(&config, &frame(&config, true, OpCode::Binary, &[1, 2, 3])).unwrap();
        assert_eq!(events, [Owned::Binary(vec![1, 2, 3])]);
    }
    // And reject the other role's masking.
    assert_eq!(
        decode_one(&CLIENT, &frame(&SERVER, true, OpCode::Text, b"x")),
        Err(ProtocolError::MaskedFrame)
    );
    assert_eq!(
        decode_one(&SERVER, &frame(&CLIENT, true, OpCode::Text, b"x")),
        Err(ProtocolError::UnmaskedFrame)
    );
}

#[test]
fn empty_messages() {
    let mut stream = frame(&SERVER, true, OpCode::Text, b"");
    stream.extend(frame(&SERVER, true, OpCode::Binary, b""));
    stream.extend(frame(&SERVER, false, OpCode::Text, b""));
    stream.extend(frame(&SERVER, true, OpCode::Continuation, b""));
    assert_eq!(
        decode_one(&SERVER, &stream).unwrap(),
        [
            Owned::Text(String::new()),
            Owned::Binary(vec![]),
            Owned::Text(String::new())
        ]
    );
}

#[test]
fn fragments_reassemble_into_one_message() {
    for config in [SERVER, CLIENT] {
        let mut stream = frame(&config, false, OpCode::Text, "frag".as_bytes());
        stream.extend(frame(
            &config,
            false,
            OpCode::Continuation,
            "men".as_bytes(),
        ));
        stream.extend(frame(&config, true, OpCode::Continuation, "té".as_bytes()));
        stream.extend(frame(&config, false, OpCode::Binary, &[1]));
        stream.extend(frame(&config, true, OpCode::Continuation, &[2]));
        assert_eq!(
            decode_one(&config, &stream).unwrap(),
            [Owned::Text("fragmenté".into()), Owned::Binary(vec![1, 2])]
        );
    }
}

#[test]
fn control_frames_interleave_with_fragments() {
    let mut stream = frame(&SERVER, false, OpCode::Text, b"a");
    stream.extend(frame(&SERVER, true, OpCode::Ping, b"p1"));
    stream.extend(frame(&SERVER, false, OpCode::Continuation, b"b"));
    stream.extend(frame(&SERVER, true, OpCode::Pong, b"unsolicited"));
    stream.extend(frame(&SERVER, true, OpCode::Continuation, b"c"));
    assert_eq!(
        decode_one(&SERVER, &stream).unwrap(),
        [
            Owned::Ping(b"p1".to_vec()),
            Owned::Pong(b"unsolicited".to_vec()),
            Owned::Text("abc".into())
        ]
    );
}

#[test]
fn continuation_rules() {
    assert_eq!(
        decode_one(&SERVER, &frame(&SERVER, true, OpCode::Continuation, b"x")),
        Err(ProtocolError::UnexpectedContinuation)
    );
    for opcode in [OpCode::Text, OpCode::Binary] {
        let mut stream = frame(&SERVER, false, OpCode::Binary, b"a");
        stream.extend(frame(&SERVER, true, opcode, b"b"));
        assert_eq!(
            decode_one(&SERVER, &stream),
            Err(ProtocolError::ExpectedContinuation)
        );
    }
    // After a finished fragmented message, a continuation is unexpected again.
    let mut stream = frame(&SERVER, false, OpCode::Binary, b"a");
    stream.extend(frame(&SERVER, true, OpCode::Continuation, b"b"));
    stream.extend(frame(&SERVER, true, OpCode::Continuation, b"c"));
    assert_eq!(
        decode_one(&SERVER, &stream),
        Err(ProtocolError::UnexpectedContinuation)
    );
}

#[test]
fn frame_level_errors_surface_from_the_decoder() {
    let bad_rsv = [0x81 | (RSV1 << 4), 0x80, 0, 0, 0, 0];
    assert_eq!(
        decode_one(&SERVER, &bad_rsv),
        Err(ProtocolError::ReservedBits)
    );
    assert_eq!(
        decode_one(&SERVER, &[0x83, 0x80]),
        Err(ProtocolError::ReservedOpcode(3))
    );
    assert_eq!(
        decode_one(&SERVER, &[0x09, 0x80]),
        Err(ProtocolError::FragmentedControlFrame)
    );
    assert_eq!(
        decode_one(&SERVER, &[0x89, 0xfe]),
        Err(ProtocolError::ControlFrameTooLong)
    );
    let huge = [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        decode_one(&SERVER, &huge),
        Err(ProtocolError::InvalidLength)
    );
    // The errors are found in a header split across reads too.
    assert_eq!(
        decode_reads(&SERVER, &[&huge[..2], &huge[2..]]),
        Err(ProtocolError::InvalidLength)
    );
}

#[test]
fn invalid_utf8_in_one_frame_is_1007() {
    let err = decode_one(
        &SERVER,
        &frame(
            &SERVER,
            true,
            OpCode::Text,
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80",
        ),
    )
    .unwrap_err();
    assert_eq!(err, ProtocolError::InvalidUtf8);
    assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
}

#[test]
fn invalid_utf8_fails_fast_in_fragmented_text() {
    // The bad fragment is rejected before the final fragment arrives.
    let mut decoder = Decoder::new();
    let mut first = frame(&SERVER, false, OpCode::Text, b"ok");
    let mut bad = frame(&SERVER, false, OpCode::Continuation, b"\xf4\x90\x80\x80");
    assert!(decoder.decode(&SERVER, &mut first).is_ok());
    assert_eq!(
        decoder.decode(&SERVER, &mut bad),
        Err(ProtocolError::InvalidUtf8)
    );
    // A code point split between fragments is fine.
    let euro = "€".as_bytes();
    let mut stream = frame(&SERVER, false, OpCode::Text, &euro[..1]);
    stream.extend(frame(&SERVER, true, OpCode::Continuation, &euro[1..]));
    assert_eq!(
        decode_one(&SERVER, &stream).unwrap(),
        [Owned::Text("€".into())]
    );
    // A message ending inside a code point fails at its last fragment.
    let mut stream = frame(&SERVER, false, OpCode::Text, b"a");
    stream.extend(frame(&SERVER, true, OpCode::Continuation, &euro[..2]));
    assert_eq!(
        decode_one(&SERVER, &stream),
        Err(ProtocolError::InvalidUtf8)
    );
}

#[test]
fn invalid_utf8_fails_fast_in_a_frame_split_across_reads() {
    // One text frame whose bad bytes arrive in the second of three reads: the error
    // comes with that read, before the rest of the frame is seen.
    let payload = b"valid start \xed\xa0\x80 then more";
    let bytes = frame(&SERVER, true, OpCode::Text, payload);
    let mut decoder = Decoder::new();
    let (a, b) = (10, 24);
    let mut first = bytes[..a].to_vec();
    let mut second = bytes[a..b].to_vec();
    assert_eq!(
        decoder
            .decode(&SERVER, &mut first)
            .map(|(n, e)| (n, e.is_none())),
        Ok((a, true))
    );
    assert_eq!(
        decoder.decode(&SERVER, &mut second),
        Err(ProtocolError::InvalidUtf8)
    );
}

#[test]
fn message_size_limit_applies_before_payload_is_buffered() {
    let config = DecoderConfig {
        rules: DecodeRules::new(Role::Server, 1000),
        max_message_size: 100,
    };
    // One frame over the message limit (but under the frame limit): its header alone
    // is enough to reject it.
    let header = encode_header(true, 0, OpCode::Binary, Some(KEY), 101);
    assert_eq!(
        decode_one(&config, header.as_bytes()),
        Err(ProtocolError::MessageTooBig)
    );
    assert_eq!(
        ProtocolError::MessageTooBig.close_code(),
        CloseCode::MESSAGE_TOO_BIG
    );
    // A frame over the frame limit.
    let header = encode_header(true, 0, OpCode::Binary, Some(KEY), 1001);
    assert_eq!(
        decode_one(&config, header.as_bytes()),
        Err(ProtocolError::FrameTooBig)
    );
    // Fragments adding up past the limit fail at the header of the one that crosses it.
    let mut decoder = Decoder::new();
    let mut first = frame(&config, false, OpCode::Binary, &[0; 60]);
    assert!(decoder.decode(&config, &mut first).is_ok());
    let mut second = encode_header(false, 0, OpCode::Continuation, Some(KEY), 30)
        .as_bytes()
        .to_vec();
    assert_eq!(
        decoder.decode(&config, &mut second),
        Err(ProtocolError::MessageTooBig)
    );
    // Exactly at the limit is fine.
    assert!(decode_one(&config, &frame(&config, true, OpCode::Binary, &[0; 100])).is_ok());
}

#[test]
fn flood_of_empty_fragments_hits_the_message_limit() {
    let config = DecoderConfig::new(Role::Server, 1024);
    let mut stream = frame(&config, false, OpCode::Binary, b"");
    let empty = frame(&config, false, OpCode::Continuation, b"");
    for _ in 0..1024 / FRAGMENT_OVERHEAD + 1 {
        stream.extend_from_slice(&empty);
    }
    assert_eq!(
        decode_one(&config, &stream),
        Err(ProtocolError::MessageTooBig)
    );
}

#[test]
fn budget_restarts_with_each_message() {
    let config = DecoderConfig::new(Role::Server, 100);
    let mut stream = Vec::new();
    for _ in 0..10 {
        stream.extend(frame(&config, false, OpCode::Binary, &[7; 40]));
        stream.extend(frame(&config, true, OpCode::Continuation, &[7; 40]));
    }
    assert_eq!(decode_one(&config, &stream).unwrap().len(), 10);
}

#[test]
fn close_frames() {
    let close = |payload: &[u8]| decode_one(&SERVER, &frame(&SERVER, true, OpCode::Close, payload));
    assert_eq!(close(b""), Ok(vec![Owned::Close(None)]));
    assert_eq!(
        close(b"\x03\xe8bye"),
        Ok(vec![Owned::Close(Some((1000, "bye".into())))])
    );
    assert_eq!(close(b"\x03"), Err(ProtocolError::InvalidClosePayload));
    assert_eq!(
        close(b"\x03\xe8\xff"),
        Err(ProtocolError::InvalidCloseReason)
    );
    assert_eq!(
        ProtocolError::InvalidCloseReason.close_code(),
        CloseCode::INVALID_PAYLOAD
    );
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let payload = code.to_be_bytes();
        assert_eq!(
            close(&payload),
            Err(ProtocolError::InvalidCloseCode(code)),
            "{code}"
        );
    }
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
        4000, 4999,
    ] {
        let payload = code.to_be_bytes();
        assert_eq!(
            close(&payload),
            Ok(vec![Owned::Close(Some((code, String::new())))]),
            "{code}"
        );
    }
}

#[test]
fn nothing_is_decoded_after_close() {
    let mut stream = frame(&SERVER, true, OpCode::Close, b"\x03\xe8");
    stream.extend(frame(&SERVER, true, OpCode::Text, b"late"));
    stream.extend_from_slice(&[0xff; 7]); // even garbage is ignored
    let mut decoder = Decoder::new();
    let (n, event) = decoder.decode(&SERVER, &mut stream).unwrap();
    assert!(matches!(event, Some(Event::Close(Some(_)))));
    assert!(decoder.close_received());
    let total = stream.len();
    let (rest, event) = decoder.decode(&SERVER, &mut stream[n..]).unwrap();
    assert_eq!((n + rest, event), (total, None));
}

#[test]
fn ping_payload_is_returned_for_the_pong() {
    let payload: Vec<u8> = (0..125).collect();
    assert_eq!(
        decode_one(&SERVER, &frame(&SERVER, true, OpCode::Ping, &payload)),
        Ok(vec![Owned::Ping(payload.clone())])
    );
    // Also when the ping is split over reads.
    let bytes = frame(&SERVER, true, OpCode::Ping, &payload);
    assert_eq!(
        decode_reads(
            &SERVER,
            &[&bytes[..1], &bytes[1..9], &bytes[9..70], &bytes[70..]]
        ),
        Ok(vec![Owned::Ping(payload)])
    );
}

#[test]
fn large_message_in_small_reads_and_buffers_are_released() {
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let bytes = frame(&SERVER, true, OpCode::Binary, &payload);
    let reads: Vec<&[u8]> = bytes.chunks(4096).collect();
    assert_eq!(
        decode_reads(&SERVER, &reads),
        Ok(vec![Owned::Binary(payload)])
    );

    let mut decoder = Decoder::new();
    for read in bytes.chunks(4096) {
        let mut read = read.to_vec();
        let mut pos = 0;
        while pos < read.len() {
            pos += decoder.decode(&SERVER, &mut read[pos..]).unwrap().0;
        }
        decoder.release_buffers();
    }
    assert!(decoder.is_idle());
    assert_eq!(
        decoder.buffered_bytes(),
        0,
        "an idle connection holds no receive buffer"
    );
}

#[test]
fn idle_decoder_is_small() {
    // Per-connection state must stay small for a million connections.
    assert!(
        std::mem::size_of::<Decoder>() <= 128,
        "{}",
        std::mem::size_of::<Decoder>()
    );
}

#[test]
fn close_handshake_replies_once() {
    // Peer initiates: we mirror its code and reason, then may send no more data.
    let mut hs = CloseHandshake::new();
    assert!(hs.can_send_data());
    let reply = hs
        .receive(Some(CloseFrame {
            code: CloseCode(4001),
            reason: "x",
        }))
        .unwrap();
    assert_eq!(reply.as_bytes(), b"\x0f\xa1x");
    assert!(!hs.can_send_data() && hs.is_complete());
    assert_eq!(hs.initiate(CloseCode::NORMAL, ""), None);
    // Empty close is answered with an empty close.
    let mut hs = CloseHandshake::new();
    assert_eq!(hs.receive(None).unwrap().as_bytes(), b"");
    // We initiate: the peer's reply completes it without a second close.
    let mut hs = CloseHandshake::new();
    let sent = hs.initiate(CloseCode::GOING_AWAY, "shutdown").unwrap();
    assert_eq!(sent.as_bytes(), b"\x03\xe9shutdown");
    assert!(!hs.can_send_data() && !hs.is_complete());
    assert_eq!(hs.receive(None), None);
    assert!(hs.is_complete());
}

/// A message of the generated stream: kind, payload, fragment sizes, pings between.
#[derive(Debug, Clone)]
struct GenMessage {
    text: bool,
    payload: Vec<u8>,
    fragments: Vec<usize>,
    ping_between: bool,
}

fn gen_message() -> impl Strategy<Value = GenMessage> {
    (
        any::<bool>(),
        prop_oneof![
            3 => ".{0,40}".prop_map(String::into_bytes),
            1 => prop::collection::vec(any::<u8>(), 0..3000),
        ],
        prop::collection::vec(1usize..500, 0..4),
        any::<bool>(),
    )
        .prop_map(|(text, payload, fragments, ping_between)| GenMessage {
            text: text && std::str::from_utf8(&payload).is_ok(),
            payload,
            fragments,
            ping_between,
        })
}

/// Encodes the messages as the peer of `config` would, returning the expected events.
fn encode_stream(config: &DecoderConfig, messages: &[GenMessage]) -> (Vec<u8>, Vec<Owned>) {
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let mut pieces = Vec::new();
        let mut rest = &m.payload[..];
        for &size in &m.fragments {
            let take = size.min(rest.len());
            pieces.push(&rest[..take]);
            rest = &rest[take..];
        }
        pieces.push(rest);
        for (j, piece) in pieces.iter().enumerate() {
            let opcode = match (j, m.text) {
                (0, true) => OpCode::Text,
                (0, false) => OpCode::Binary,
                _ => OpCode::Continuation,
            };
            bytes.extend(frame(config, j + 1 == pieces.len(), opcode, piece));
            if m.ping_between && j + 1 < pieces.len() {
                let ping = [i as u8, j as u8];
                bytes.extend(frame(config, true, OpCode::Ping, &ping));
                expected.push(Owned::Ping(ping.to_vec()));
            }
        }
        expected.push(if m.text {
            Owned::Text(String::from_utf8(m.payload.clone()).unwrap())
        } else {
            Owned::Binary(m.payload.clone())
        });
    }
    bytes.extend(frame(config, true, OpCode::Close, b"\x03\xe8done"));
    expected.push(Owned::Close(Some((1000, "done".into()))));
    (bytes, expected)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// However the stream is cut into reads, both roles decode the same events.
    #[test]
    fn any_chunking_yields_the_same_events(
        messages in prop::collection::vec(gen_message(), 0..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        server in any::<bool>(),
    ) {
        let config = if server { SERVER } else { CLIENT };
        let (bytes, expected) = encode_stream(&config, &messages);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        let reads: Vec<&[u8]> = points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
        prop_assert_eq!(decode_reads(&config, &reads)?, expected);
    }

    /// Arbitrary bytes never panic, in either role, however they are cut.
    #[test]
    fn garbage_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        cut in any::<prop::sample::Index>(),
        server in any::<bool>(),
    ) {
        let config = if server { SERVER } else { CLIENT };
        let at = cut.index(bytes.len() + 1);
        let _ = decode_reads(&config, &[&bytes[..at], &bytes[at..]]);
    }
}

/// A frame with RSV1 set (a compressed message's first frame), as the peer of
/// `config`'s role sends it.
fn rsv1_frame(config: &DecoderConfig, fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mask = (config.rules.role == Role::Server).then_some(KEY);
    let mut out = encode_header(fin, RSV1, opcode, mask, payload.len() as u64)
        .as_bytes()
        .to_vec();
    let start = out.len();
    out.resize(start + payload.len(), 0);
    match mask {
        Some(key) => mask_into(&mut out[start..], payload, key),
        None => out[start..].copy_from_slice(payload),
    }
    out
}

fn with_deflate(config: DecoderConfig) -> DecoderConfig {
    DecoderConfig {
        rules: DecodeRules {
            allowed_rsv: RSV1,
            ..config.rules
        },
        ..config
    }
}

#[test]
fn compressed_messages_are_handed_out_undecoded() {
    for base in [SERVER, CLIENT] {
        let config = with_deflate(base);
        // Not valid UTF-8, but compressed: checked only after inflating.
        let mut stream = rsv1_frame(&config, true, OpCode::Text, b"\xf2\x48\xcd");
        stream.extend(rsv1_frame(&config, false, OpCode::Binary, b"ab"));
        stream.extend(frame(&config, true, OpCode::Ping, b"p"));
        stream.extend(frame(&config, true, OpCode::Continuation, b"cd"));
        stream.extend(frame(&config, true, OpCode::Text, b"plain"));
        assert_eq!(
            decode_one(&config, &stream).unwrap(),
            [
                Owned::Compressed(true, b"\xf2\x48\xcd".to_vec()),
                Owned::Ping(b"p".to_vec()),
                Owned::Compressed(false, b"abcd".to_vec()),
                Owned::Text("plain".into()),
            ]
        );
    }
}

#[test]
fn whole_compressed_frame_is_borrowed() {
    let config = with_deflate(SERVER);
    let mut buf = rsv1_frame(&config, true, OpCode::Binary, b"xyz");
    let range = buf.as_ptr_range();
    let mut decoder = Decoder::new();
    let (_, event) = decoder.decode(&config, &mut buf).unwrap();
    let Some(Event::Compressed {
        text: false,
        payload,
    }) = event
    else {
        panic!("{event:?}")
    };
    assert_eq!(payload, b"xyz");
    assert!(range.contains(&payload.as_ptr()));
}

#[test]
fn rsv1_only_on_the_first_data_frame() {
    let config = with_deflate(SERVER);
    let mut stream = frame(&config, false, OpCode::Binary, b"a");
    stream.extend(rsv1_frame(&config, true, OpCode::Continuation, b"b"));
    assert_eq!(
        decode_one(&config, &stream),
        Err(ProtocolError::ReservedBits)
    );
    for opcode in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
        let bytes = rsv1_frame(&config, true, opcode, b"");
        assert_eq!(
            decode_one(&config, &bytes),
            Err(ProtocolError::ReservedBits),
            "{opcode:?}"
        );
    }
    // Without the extension, RSV1 is refused outright.
    assert_eq!(
        decode_one(&SERVER, &rsv1_frame(&SERVER, true, OpCode::Text, b"x")),
        Err(ProtocolError::ReservedBits)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Compressed and plain messages, fragmented or not, split at any point:
    /// the same events as in one read.
    #[test]
    fn compressed_any_chunking(
        messages in prop::collection::vec(
            (any::<bool>(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..600), 0usize..3),
            1..5,
        ),
        cut in any::<prop::sample::Index>(),
        server in any::<bool>(),
    ) {
        let config = with_deflate(if server { SERVER } else { CLIENT });
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        for (text, compressed, payload, pieces) in messages {
            let opcode = if text { OpCode::Text } else { OpCode::Binary };
            if !compressed && text {
                // Plain text must be UTF-8; use a hex rendering of the bytes.
                let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
                bytes.extend(frame(&config, true, opcode, hex.as_bytes()));
                expected.push(Owned::Text(hex));
                continue;
            }
            let step = payload.len() / (pieces + 1) + 1;
            let chunks: Vec<&[u8]> = if payload.is_empty() { vec![&[][..]] } else { payload.chunks(step).collect() };
            for (i, chunk) in chunks.iter().enumerate() {
                let fin = i + 1 == chunks.len();
                bytes.extend(match (i, compressed) {
                    (0, true) => rsv1_frame(&config, fin, opcode, chunk),
                    (0, false) => frame(&config, fin, opcode, chunk),
                    _ => frame(&config, fin, OpCode::Continuation, chunk),
                });
            }
            expected.push(if compressed {
                Owned::Compressed(text, payload)
            } else {
                Owned::Binary(payload)
            });
        }
        let at = cut.index(bytes.len() + 1);
        prop_assert_eq!(decode_reads(&config, &[&bytes[..at], &bytes[at..]])?, expected);
    }
}

/// What `decode_framed` hands out for one read: the event (owned) and the
/// framed message, if any.
fn decode_framed_one(config: &DecoderConfig, mut buf: Vec<u8>) -> (Owned, Option<Vec<u8>>) {
    let mut decoder = Decoder::new();
    let len = buf.len();
    let (n, event, framed) = decoder.decode_framed(config, &mut buf, 0).unwrap();
    assert_eq!(n, len);
    (
        Owned::from(event.expect("one event")),
        framed.map(<[u8]>::to_vec),
    )
}

/// The frame a server sends for `payload`.
fn server_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, true, opcode, payload, None);
    out
}

#[test]
fn a_whole_masked_message_is_framed_as_the_server_sends_it() {
    // Lengths of each encoding: 7-bit, 16-bit and 64-bit.
    for len in [0, 5, 125, 126, 20_000, 65_535, 65_536, 100_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        for opcode in [OpCode::Binary, OpCode::Text] {
            let payload = if opcode == OpCode::Text {
                vec![b'a'; len]
            } else {
                payload.clone()
            };
            let mut buf = frame(&SERVER, true, opcode, &payload);
            let range = buf.as_ptr_range();
            let mut decoder = Decoder::new();
            let (_, event, framed) = decoder.decode_framed(&SERVER, &mut buf, 0).unwrap();
            let framed = framed.expect("framed");
            assert!(range.contains(&framed.as_ptr()), "framed in the buffer");
            assert_eq!(framed, server_frame(opcode, &payload), "len {len}");
            // The event's payload is the framed slice's tail, not a copy.
            let message = match event {
                Some(Event::Binary(bytes)) => bytes,
                Some(Event::Text(text)) => text.as_bytes(),
                other => panic!("{other:?}"),
            };
            assert!(std::ptr::eq(&framed[framed.len() - len..], message));
        }
    }
}

#[test]
fn only_whole_uncompressed_masked_data_messages_are_framed() {
    // Control frames, a fragment, a compressed message: not framed.
    let (event, framed) = decode_framed_one(&SERVER, frame(&SERVER, true, OpCode::Ping, b"p"));
    assert_eq!((event, framed), (Owned::Ping(b"p".to_vec()), None));
    let mut decoder = Decoder::new();
    let mut first = frame(&SERVER, false, OpCode::Binary, b"ab");
    let (_, event, framed) = decoder.decode_framed(&SERVER, &mut first, 0).unwrap();
    assert!(event.is_none() && framed.is_none());
    let mut last = frame(&SERVER, true, OpCode::Continuation, b"cd");
    let (_, event, framed) = decoder.decode_framed(&SERVER, &mut last, 0).unwrap();
    assert_eq!(Owned::from(event.unwrap()), Owned::Binary(b"abcd".to_vec()));
    assert!(framed.is_none());
    let config = with_deflate(SERVER);
    let (event, framed) =
        decode_framed_one(&config, rsv1_frame(&config, true, OpCode::Binary, b"xyz"));
    assert_eq!(
        (event, framed),
        (Owned::Compressed(false, b"xyz".to_vec()), None)
    );
    // A client decodes unmasked frames: no room for a header of its own.
    let (event, framed) = decode_framed_one(&CLIENT, frame(&CLIENT, true, OpCode::Text, b"hi"));
    assert_eq!((event, framed), (Owned::Text("hi".into()), None));
    // A header cut by the end of a read (after 1 byte), a payload split
    // across reads (after 9): reassembled or stashed, not framed.
    for (payload, cut) in [(&b"split header"[..], 1), (&b"split payload"[..], 9)] {
        let whole = frame(&SERVER, true, OpCode::Binary, payload);
        let mut decoder = Decoder::new();
        let (mut head, mut rest) = (whole[..cut].to_vec(), whole[cut..].to_vec());
        let (_, event, framed) = decoder.decode_framed(&SERVER, &mut head, 0).unwrap();
        assert!(event.is_none() && framed.is_none());
        let (_, event, framed) = decoder.decode_framed(&SERVER, &mut rest, 0).unwrap();
        assert_eq!(Owned::from(event.unwrap()), Owned::Binary(payload.to_vec()));
        assert!(framed.is_none());
    }
}

#[test]
fn framing_in_place_leaves_the_next_frame_of_the_read_intact() {
    let mut stream = frame(&SERVER, true, OpCode::Binary, &[7; 300]);
    stream.extend(frame(&SERVER, true, OpCode::Text, b"next"));
    let mut decoder = Decoder::new();
    let (n, _, framed) = decoder.decode_framed(&SERVER, &mut stream, 0).unwrap();
    assert_eq!(framed.unwrap(), server_frame(OpCode::Binary, &[7; 300]));
    let (_, event, framed) = decoder.decode_framed(&SERVER, &mut stream[n..], 0).unwrap();
    assert_eq!(Owned::from(event.unwrap()), Owned::Text("next".into()));
    assert_eq!(framed.unwrap(), server_frame(OpCode::Text, b"next"));
}

#[test]
fn only_frames_of_at_least_frame_from_bytes_are_framed_and_decode_frames_none() {
    let payload = [3u8; 200];
    // The server's frame of 200 bytes: a 4-byte header.
    for (frame_from, framed) in [(204, true), (205, false)] {
        let mut buf = frame(&SERVER, true, OpCode::Binary, &payload);
        let mut decoder = Decoder::new();
        let (_, _, got) = decoder
            .decode_framed(&SERVER, &mut buf, frame_from)
            .unwrap();
        assert_eq!(got.is_some(), framed, "frame_from {frame_from}");
    }
    // `decode` rewrites no header: only the payload is unmasked.
    let sent = frame(&SERVER, true, OpCode::Binary, &payload);
    let mut buf = sent.clone();
    Decoder::new().decode(&SERVER, &mut buf).unwrap();
    assert_eq!(buf[..8], sent[..8]);
    assert_eq!(buf[8..], payload);
}
