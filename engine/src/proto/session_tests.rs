use super::*;
use crate::proto::deflate::{DeflateConfig, negotiate};
use crate::proto::handshake::parse_extensions;
use crate::proto::message::Decoder;

const MAX: usize = 1 << 20;

fn server() -> Endpoint {
    Endpoint::new(Role::Server, MAX, MAX, 1)
}

fn client() -> Endpoint {
    Endpoint::new(Role::Client, MAX, MAX, 1)
}

/// What a peer makes of `wire`: every [`Received`] as owned values.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
}

/// Decodes `wire` with a fresh decoder, feeds each event to `session`, and
/// returns the events with the bytes of the replies (`Err` on a protocol error).
fn feed(
    endpoint: &mut Endpoint,
    session: &mut Session,
    wire: &[u8],
) -> Result<(Vec<Got>, Vec<u8>), ProtocolError> {
    let mut decoder = Decoder::new();
    feed_with(endpoint, session, &mut decoder, wire)
}

fn feed_with(
    endpoint: &mut Endpoint,
    session: &mut Session,
    decoder: &mut Decoder,
    wire: &[u8],
) -> Result<(Vec<Got>, Vec<u8>), ProtocolError> {
    let mut buf = wire.to_vec();
    let mut inflated = InflateBuffer::new();
    let mut pos = 0;
    let mut got = Vec::new();
    let mut replies = Vec::new();
    let config = *endpoint.decoder_config(session);
    while pos < buf.len() {
        let (n, event) = decoder.decode(&config, &mut buf[pos..])?;
        pos += n;
        let Some(event) = event else { continue };
        let received = session.receive(endpoint, &mut inflated, event)?;
        if let Some(reply) = &received.reply {
            endpoint.reply(reply).write_to(&mut replies);
        }
        got.push(match received.inbound {
            Inbound::Text(t) => Got::Text(t.to_owned()),
            Inbound::Binary(b) => Got::Binary(b.to_vec()),
            Inbound::Ping(p) => Got::Ping(p.to_vec()),
            Inbound::Pong(p) => Got::Pong(p.to_vec()),
            Inbound::Close { code, reason } => Got::Close(code.0, reason.to_owned()),
        });
    }
    Ok((got, replies))
}

fn wire_of(frame: Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    frame.write_to(&mut out);
    out
}

#[test]
fn ping_is_answered_with_its_payload_in_either_role() {
    let (mut cl, mut sv) = (client(), server());
    let (mut cs, mut ss) = (Session::new(), Session::new());
    let ping = wire_of(cs.control(&mut cl, OpCode::Ping, b"hello").unwrap());
    let (got, pong) = feed(&mut sv, &mut ss, &ping).unwrap();
    assert_eq!(got, [Got::Ping(b"hello".to_vec())]);
    assert_eq!(pong, b"\x8a\x05hello", "the server's pong is unmasked");
    // The client answers the server's ping with a masked pong.
    let ping = wire_of(ss.control(&mut sv, OpCode::Ping, b"abc").unwrap());
    let (got, pong) = feed(&mut cl, &mut cs, &ping).unwrap();
    assert_eq!(got, [Got::Ping(b"abc".to_vec())]);
    assert_eq!(pong[1], 0x80 | 3, "masked, 3 bytes");
    let (got, _) = feed(&mut sv, &mut ss, &pong).unwrap();
    assert_eq!(got, [Got::Pong(b"abc".to_vec())]);
}

#[test]
fn close_reply_mirrors_code_and_reason() {
    let (mut cl, mut sv) = (client(), server());
    let (mut cs, mut ss) = (Session::new(), Session::new());
    let close = wire_of(cs.close(&mut cl, CloseCode(4001), "bye now").unwrap());
    let (got, reply) = feed(&mut sv, &mut ss, &close).unwrap();
    assert_eq!(got, [Got::Close(4001, "bye now".into())]);
    assert_eq!(reply, b"\x88\x09\x0f\xa1bye now");
    assert!(!ss.can_send_data());
    assert!(ss.close_state().is_complete());
    // The client reads the reply: no second reply, handshake complete.
    let (got, reply) = feed(&mut cl, &mut cs, &reply).unwrap();
    assert_eq!(got, [Got::Close(4001, "bye now".into())]);
    assert!(reply.is_empty());
    assert!(cs.close_state().is_complete());
}

#[test]
fn empty_close_gets_an_empty_reply_and_reads_as_1005() {
    let (mut sv, mut ss) = (server(), Session::new());
    let (got, reply) = feed(&mut sv, &mut ss, b"\x88\x80\0\0\0\0").unwrap();
    assert_eq!(got, [Got::Close(1005, String::new())]);
    assert_eq!(reply, b"\x88\x00");
}

#[test]
fn nothing_is_owed_after_our_close() {
    let (mut cl, mut sv) = (client(), server());
    let (mut cs, mut ss) = (Session::new(), Session::new());
    let ours = ss
        .close(&mut sv, CloseCode::GOING_AWAY, "shutdown")
        .unwrap();
    assert_eq!(wire_of(ours), b"\x88\x0a\x03\xe9shutdown");
    assert!(
        ss.close(&mut sv, CloseCode::NORMAL, "").is_none(),
        "one close frame"
    );
    assert!(ss.control(&mut sv, OpCode::Ping, b"").is_none());
    // The peer's ping after our close gets no pong; its close gets no reply.
    let mut wire = wire_of(cs.control(&mut cl, OpCode::Ping, b"p").unwrap());
    wire.extend(wire_of(cs.close(&mut cl, CloseCode::NORMAL, "").unwrap()));
    let (got, replies) = feed(&mut sv, &mut ss, &wire).unwrap();
    assert_eq!(
        got,
        [Got::Ping(b"p".to_vec()), Got::Close(1000, String::new())]
    );
    assert!(replies.is_empty());
    assert!(ss.close_state().is_complete());
}

#[test]
fn close_reason_is_cut_to_fit_a_control_frame() {
    let (mut sv, mut ss) = (server(), Session::new());
    let reason = "é".repeat(100);
    let frame = ss.close(&mut sv, CloseCode::NORMAL, &reason).unwrap();
    assert_eq!(frame.len(), 2 + 2 + 122);
    let payload = frame.unmasked_payload().unwrap();
    assert!(std::str::from_utf8(&payload[2..]).is_ok());
}

#[test]
fn control_payload_is_cut_to_125_bytes() {
    let (mut sv, mut ss) = (server(), Session::new());
    let frame = ss.control(&mut sv, OpCode::Ping, &[7; 300]).unwrap();
    assert_eq!(frame.unmasked_payload().unwrap().len(), 125);
}

fn negotiated(offer: &str, config: &DeflateConfig) -> Negotiated {
    negotiate(parse_extensions(offer), config).expect("negotiated")
}

/// A client and a server session that negotiated permessage-deflate with
/// context takeover on their own codecs.
fn own_pair(offer: &str) -> (Session, Session) {
    let n = negotiated(offer, &DeflateConfig::default());
    (
        Session::with_deflate(Role::Client, &n, 6),
        Session::with_deflate(Role::Server, &n, 1),
    )
}

#[test]
fn compressed_messages_round_trip_with_context_takeover() {
    let (mut cl, mut sv) = (client(), server());
    let (mut cs, mut ss) = own_pair("permessage-deflate");
    let mut decoder = Decoder::new();
    let text = "compress me, compress me, compress me";
    for _ in 0..3 {
        let frame = cs.message(&mut cl, OpCode::Text, text.as_bytes(), true);
        let wire = wire_of(frame);
        assert_eq!(wire[0], 0x80 | 0x40 | 0x1, "FIN, RSV1, text");
        let (got, _) = feed_with(&mut sv, &mut ss, &mut decoder, &wire).unwrap();
        assert_eq!(got, [Got::Text(text.into())]);
    }
    // Server to client, binary, and an uncompressed message between.
    let mut decoder = Decoder::new();
    let data = vec![42u8; 5000];
    for compress in [true, false, true] {
        let wire = wire_of(ss.message(&mut sv, OpCode::Binary, &data, compress));
        assert_eq!(wire[0] & 0x40 != 0, compress);
        let (got, _) = feed_with(&mut cl, &mut cs, &mut decoder, &wire).unwrap();
        assert_eq!(got, [Got::Binary(data.clone())]);
    }
}

#[test]
fn shared_codecs_serve_many_sessions() {
    let config = DeflateConfig {
        request_no_context_takeover: true,
        no_context_takeover: true,
        ..DeflateConfig::default()
    };
    let n = negotiated("permessage-deflate; client_max_window_bits", &config);
    assert!(n.client_no_context_takeover && n.server_no_context_takeover);
    let mut sv = server();
    let mut sessions: Vec<Session> = (0..3)
        .map(|_| Session::with_shared_deflate(n.server_max_window_bits))
        .collect();
    let mut cl = client();
    for (i, ss) in sessions.iter_mut().enumerate() {
        assert_eq!(ss.shared_window(), Some(15));
        let mut cs = Session::with_deflate(Role::Client, &n, 1);
        let text = format!("message {i} message {i} message {i}");
        let wire = wire_of(cs.message(&mut cl, OpCode::Text, text.as_bytes(), true));
        let (got, _) = feed(&mut sv, ss, &wire).unwrap();
        assert_eq!(got, [Got::Text(text.clone())]);
        let wire = wire_of(ss.message(&mut sv, OpCode::Text, text.as_bytes(), true));
        let (got, _) = feed(&mut cl, &mut cs, &wire).unwrap();
        assert_eq!(got, [Got::Text(text)]);
    }
}

/// A compressed frame of `payload` made by a fresh client-role compressor.
fn compressed_wire(payload: &[u8], opcode: OpCode) -> Vec<u8> {
    let mut cl = client();
    let (mut cs, _) = own_pair("permessage-deflate");
    wire_of(cs.message(&mut cl, opcode, payload, true))
}

#[test]
fn inflation_stops_at_the_message_limit() {
    let bomb = compressed_wire(&vec![0u8; 4 << 20], OpCode::Binary);
    assert!(bomb.len() < 8 << 10, "a bomb: {} bytes", bomb.len());
    let mut sv = Endpoint::new(Role::Server, MAX, 1 << 20, 1);
    let (_, mut ss) = own_pair("permessage-deflate");
    assert_eq!(
        feed(&mut sv, &mut ss, &bomb).unwrap_err(),
        ProtocolError::MessageTooBig
    );
    // The inflate buffer never grows past the limit.
    let mut inflated = InflateBuffer::new();
    let mut decoder = Decoder::new();
    let (_, mut ss) = own_pair("permessage-deflate");
    let config = *sv.decoder_config(&ss);
    let mut buf = bomb.clone();
    let (_, event) = decoder.decode(&config, &mut buf).unwrap();
    let error = ss
        .receive(&mut sv, &mut inflated, event.unwrap())
        .unwrap_err();
    assert_eq!(error, ProtocolError::MessageTooBig);
    assert!(
        inflated.capacity() <= (1 << 20) + 1,
        "{}",
        inflated.capacity()
    );
    inflated.release();
    assert!(inflated.capacity() <= 1 << 20);
}

#[test]
fn inflated_text_must_be_utf8() {
    let wire = compressed_wire(b"ok \xff\xfe not utf-8", OpCode::Text);
    let (mut sv, (_, mut ss)) = (server(), own_pair("permessage-deflate"));
    assert_eq!(
        feed(&mut sv, &mut ss, &wire).unwrap_err(),
        ProtocolError::InvalidUtf8
    );
    // The same bytes as binary are fine.
    let wire = compressed_wire(b"ok \xff\xfe not utf-8", OpCode::Binary);
    let (_, mut ss) = own_pair("permessage-deflate");
    assert!(feed(&mut sv, &mut ss, &wire).is_ok());
}

#[test]
fn garbage_compressed_data_is_refused() {
    let mut sv = server();
    let (_, mut ss) = own_pair("permessage-deflate");
    // RSV1 binary frame, masked with a zero key, payload 0xff 0xff: no valid block.
    let wire = b"\xc2\x82\0\0\0\0\xff\xff";
    assert_eq!(
        feed(&mut sv, &mut ss, wire).unwrap_err(),
        ProtocolError::InvalidCompressedData
    );
}

#[test]
fn a_session_without_the_extension_refuses_compressed_events() {
    let mut sv = server();
    let mut ss = Session::new();
    let event = Event::Compressed {
        text: false,
        payload: b"\x00",
    };
    assert_eq!(
        ss.receive(&mut sv, &mut InflateBuffer::new(), event)
            .unwrap_err(),
        ProtocolError::ReservedBits
    );
    // And its decoder rules refuse RSV1 to begin with.
    let wire = compressed_wire(b"hello", OpCode::Text);
    assert_eq!(
        feed(&mut sv, &mut ss, &wire).unwrap_err(),
        ProtocolError::ReservedBits
    );
}

#[test]
fn fragmented_messages_carry_rsv1_on_the_first_frame_only() {
    let (mut cl, mut sv) = (client(), server());
    let (mut cs, mut ss) = own_pair("permessage-deflate");
    let text = "fragmented and compressed ".repeat(40);
    let mut wire = Vec::new();
    cs.write_fragmented(&mut cl, OpCode::Text, text.as_bytes(), true, 3, &mut wire);
    let mut decoder = Decoder::new();
    let (got, _) = feed_with(&mut sv, &mut ss, &mut decoder, &wire).unwrap();
    assert_eq!(got, [Got::Text(text.clone())]);
    assert_eq!(wire[0], 0x40 | 0x1, "not FIN, RSV1, text");
    // Uncompressed, five fragments.
    let mut wire = Vec::new();
    cs.write_fragmented(&mut cl, OpCode::Binary, b"0123456789", false, 5, &mut wire);
    assert_eq!(wire[0], 0x2, "not FIN, no RSV1, binary");
    let (got, _) = feed_with(&mut sv, &mut ss, &mut decoder, &wire).unwrap();
    assert_eq!(got, [Got::Binary(b"0123456789".to_vec())]);
    // An empty message is one frame.
    let mut wire = Vec::new();
    cs.write_fragmented(&mut cl, OpCode::Text, b"", true, 4, &mut wire);
    let (got, _) = feed_with(&mut sv, &mut ss, &mut decoder, &wire).unwrap();
    assert_eq!(got, [Got::Text(String::new())]);
}

#[test]
fn client_frames_are_masked_with_fresh_keys() {
    let mut cl = client();
    let mut cs = Session::new();
    let a = wire_of(cs.message(&mut cl, OpCode::Binary, b"same", false));
    let b = wire_of(cs.message(&mut cl, OpCode::Binary, b"same", false));
    assert_eq!(a[1] & 0x80, 0x80);
    assert_ne!(a[2..6], b[2..6], "a new key per frame");
    assert!(
        cs.message(&mut cl, OpCode::Binary, b"x", false)
            .unmasked_payload()
            .is_none()
    );
}
