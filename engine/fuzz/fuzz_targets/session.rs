//! proto::session for either role, with permessage-deflate off, on the
//! session's own codecs or on the endpoint's shared ones, under a fuzzed message
//! limit. The received stream is either the raw input or built by a peer session
//! of the other role from a script in the input (so that compressed messages,
//! fragments, bombs and closes are reached), then fed in fuzzed chunks through
//! `Decoder::decode` + `Session::receive`, while the session sends messages,
//! pings and closes of its own between chunks.
//!
//! Checks: no panic; nothing after an error or after the peer's close; inflated
//! messages within the limit and text valid UTF-8; a close reply exactly when we
//! had not closed; no data once a close was received or sent; everything we sent
//! (replies included) decodes cleanly, as sent, with a decoder of the other role;
//! a shared decompressor still serves a new session after whatever happened.
#![no_main]

use ringws::proto::Role;
use ringws::proto::close::CloseCode;
use ringws::proto::deflate::Negotiated;
use ringws::proto::frame::OpCode;
use ringws::proto::message::Decoder;
use ringws::proto::session::{Endpoint, Inbound, InflateBuffer, Session};

const LIMITS: [usize; 6] = [16, 125, 1000, 4096, 8192, 1 << 16];
/// Codes we may send in a close frame.
const CODES: [u16; 6] = [1000, 1001, 1008, 1011, 3000, 4999];

/// Reads the input front to back; past its end every byte is 0.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
}

fn got(inbound: Inbound<'_>) -> Got {
    match inbound {
        Inbound::Text(t) => Got::Text(t.to_owned()),
        Inbound::Binary(b) => Got::Binary(b.to_vec()),
        Inbound::Ping(p) => Got::Ping(p.to_vec()),
        Inbound::Pong(p) => Got::Pong(p.to_vec()),
        Inbound::Close { code, reason } => Got::Close(code.0, reason.to_owned()),
    }
}

fn opposite(role: Role) -> Role {
    match role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    Own,
    Shared,
}

/// Our session, and a session for the peer, as negotiated.
fn sessions(mode: Mode, role: Role, n: &Negotiated, level: u32) -> (Session, Session) {
    match mode {
        Mode::Off => (Session::new(), Session::new()),
        Mode::Own => (
            Session::with_deflate(role, n, level),
            Session::with_deflate(opposite(role), n, level),
        ),
        Mode::Shared => {
            let ours = match role {
                Role::Server => n.server_max_window_bits,
                Role::Client => n.client_max_window_bits,
            };
            (
                Session::with_shared_deflate(ours),
                Session::with_deflate(opposite(role), n, level),
            )
        }
    }
}

/// The peer's stream, built from a script by a session of the other role.
fn scripted(peer: &mut Endpoint, session: &mut Session, script: &mut Input<'_>) -> Vec<u8> {
    let mut wire = Vec::new();
    while !script.0.is_empty() {
        let op = script.byte();
        let len = usize::from(script.byte());
        let compress = op & 0x20 != 0;
        // A long run of one byte (up to 8 KiB, beyond the limits up to 4096): a
        // bomb once compressed. Not larger: compressing (instrumented zlib-rs,
        // small windows sliding often) is most of the target's time already.
        let payload: Vec<u8> = if op & 0x40 != 0 {
            vec![script.byte(); len * 32]
        } else {
            script.take(len).to_vec()
        };
        // Text is valid UTF-8 unless asked otherwise (then inflation must catch it).
        let text: Vec<u8> = if op & 0x10 != 0 {
            payload.clone()
        } else {
            String::from_utf8_lossy(&payload).into_owned().into_bytes()
        };
        let fragments = usize::from(op >> 7) * (len % 5 + 2);
        match op % 8 {
            0 | 1 => {
                let (opcode, body) = match op % 8 {
                    0 => (OpCode::Text, &text),
                    _ => (OpCode::Binary, &payload),
                };
                if fragments > 0 {
                    session.write_fragmented(peer, opcode, body, compress, fragments, &mut wire);
                } else {
                    session
                        .message(peer, opcode, body, compress)
                        .write_to(&mut wire);
                }
            }
            2 | 3 => {
                let opcode = if op % 8 == 2 {
                    OpCode::Ping
                } else {
                    OpCode::Pong
                };
                if let Some(frame) = session.control(peer, opcode, &payload) {
                    frame.write_to(&mut wire);
                }
            }
            4 => {
                let code = CloseCode(CODES[len % CODES.len()]);
                let reason = String::from_utf8_lossy(&payload);
                if let Some(frame) = session.close(peer, code, &reason) {
                    frame.write_to(&mut wire);
                }
            }
            // Raw bytes in between: a broken or truncated frame, or garbage.
            _ => wire.extend_from_slice(&payload[..payload.len().min(64)]),
        }
    }
    wire
}

/// What the peer must read from our frames.
#[derive(Debug)]
enum Expect {
    Exactly(Got),
    /// Our own close: the reason may be cut to fit a control frame.
    Close(u16, String),
}

struct Us {
    endpoint: Endpoint,
    inflated: InflateBuffer,
    session: Session,
    out: Vec<u8>,
    expect: Vec<Expect>,
    sent: usize,
}

impl Us {
    fn close(&mut self, code: CloseCode, reason: &str) {
        let was_sent = self.session.close_state().close_sent();
        match self.session.close(&mut self.endpoint, code, reason) {
            Some(frame) => {
                assert!(!was_sent, "a second close frame");
                frame.write_to(&mut self.out);
                self.expect.push(Expect::Close(code.0, reason.to_owned()));
            }
            None => assert!(was_sent, "no close frame though none was sent"),
        }
        assert!(!self.session.can_send_data());
    }

    /// Something of our own between two chunks.
    fn act(&mut self, action: u8) {
        let arg = usize::from(action >> 3);
        match action % 8 {
            4 if self.session.can_send_data() => {
                self.sent += 1;
                let body = format!("message {} ", self.sent).repeat(arg + 1);
                let text = action & 0x80 != 0;
                let compress = action & 0x40 != 0;
                let opcode = if text { OpCode::Text } else { OpCode::Binary };
                if action & 0x20 != 0 {
                    let fragments = arg % 4 + 1;
                    let (session, endpoint) = (&mut self.session, &mut self.endpoint);
                    session.write_fragmented(
                        endpoint,
                        opcode,
                        body.as_bytes(),
                        compress,
                        fragments,
                        &mut self.out,
                    );
                } else {
                    let frame =
                        self.session
                            .message(&mut self.endpoint, opcode, body.as_bytes(), compress);
                    frame.write_to(&mut self.out);
                }
                self.expect.push(Expect::Exactly(if text {
                    Got::Text(body)
                } else {
                    Got::Binary(body.into_bytes())
                }));
            }
            5 | 6 => {
                let payload = vec![b'p'; arg * 5];
                let (opcode, expect) = if action % 8 == 5 {
                    (
                        OpCode::Ping,
                        Got::Ping(payload[..payload.len().min(125)].to_vec()),
                    )
                } else {
                    (
                        OpCode::Pong,
                        Got::Pong(payload[..payload.len().min(125)].to_vec()),
                    )
                };
                let can_send = self.session.can_send_data();
                match self.session.control(&mut self.endpoint, opcode, &payload) {
                    Some(frame) => {
                        assert!(can_send);
                        frame.write_to(&mut self.out);
                        self.expect.push(Expect::Exactly(expect));
                    }
                    None => assert!(!can_send),
                }
            }
            7 => {
                let code = CloseCode(CODES[arg % CODES.len()]);
                // Up to 279 bytes of two-byte characters: cut at a char boundary.
                self.close(code, &"é".repeat(arg * 9));
            }
            _ => {}
        }
    }
}

/// Decodes what we sent with a decoder and a session of the other role.
fn check_sent(role: Role, mut checker: Session, us: &Us) {
    let mut endpoint = Endpoint::new(opposite(role), 1 << 20, 1 << 20, 1);
    let mut inflated = InflateBuffer::new();
    let config = *endpoint.decoder_config(&checker);
    let mut decoder = Decoder::new();
    let mut wire = us.out.clone();
    let mut pos = 0;
    let mut seen = Vec::new();
    while pos < wire.len() {
        let (n, event) = decoder
            .decode(&config, &mut wire[pos..])
            .unwrap_or_else(|e| panic!("our frames do not decode: {e}"));
        pos += n;
        if let Some(event) = event {
            let received = checker
                .receive(&mut endpoint, &mut inflated, event)
                .unwrap_or_else(|e| panic!("our messages do not inflate: {e}"));
            seen.push(got(received.inbound));
        }
    }
    assert_eq!(seen.len(), us.expect.len(), "{seen:?} vs {:?}", us.expect);
    for (seen, expect) in seen.iter().zip(&us.expect) {
        match (seen, expect) {
            (seen, Expect::Exactly(want)) => assert_eq!(seen, want),
            (Got::Close(code, reason), Expect::Close(want, full)) => {
                assert_eq!(code, want);
                assert!(full.starts_with(reason.as_str()) && reason.len() <= 123);
            }
            (seen, expect) => panic!("{seen:?} instead of {expect:?}"),
        }
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let h0 = input.byte();
    let role = if h0 & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let mode = [Mode::Off, Mode::Own, Mode::Shared][usize::from(h0 >> 1) % 3];
    let raw = h0 & 0x08 != 0;
    let h1 = input.byte();
    let max_message = LIMITS[usize::from(h1) % LIMITS.len()];
    let max_frame = match h1 >> 6 {
        0 => max_message,
        1 => max_message / 2 + 1,
        _ => 1 << 20,
    };
    let h2 = input.byte();
    let window = h2 % 7 + 9;
    let level = u32::from(h2 >> 4) % 10;
    let n = Negotiated {
        server_no_context_takeover: mode == Mode::Shared || h0 & 0x10 != 0,
        client_no_context_takeover: mode == Mode::Shared || h0 & 0x20 != 0,
        server_max_window_bits: window,
        client_max_window_bits: window,
    };
    let h3 = input.byte();
    let chunks: Vec<usize> = input
        .take(usize::from(h3 % 8))
        .iter()
        .map(|&c| match c & 0x80 {
            0 => usize::from(c) + 1,
            _ => usize::from(c & 0x7f) * 64 + 1,
        })
        .collect();
    let actions = input.take(usize::from(h3 >> 4) % 8).to_vec();

    let (session, mut peer_session) = sessions(mode, role, &n, level);
    let (_, checker) = sessions(mode, role, &n, level);
    let mut stream = if raw {
        input.0.to_vec()
    } else {
        let mut peer = Endpoint::new(opposite(role), 1 << 20, 1 << 20, level);
        scripted(&mut peer, &mut peer_session, &mut input)
    };

    let mut us = Us {
        endpoint: Endpoint::new(role, max_frame, max_message, level),
        inflated: InflateBuffer::new(),
        session,
        out: Vec::new(),
        expect: Vec::new(),
        sent: 0,
    };
    let config = *us.endpoint.decoder_config(&us.session);
    let mut decoder = Decoder::new();
    let mut closed_by_peer = false;
    let mut start = 0;
    let mut round = 0;
    'feed: while start < stream.len() {
        let len = chunks
            .get(round % chunks.len().max(1))
            .copied()
            .unwrap_or(usize::MAX);
        let end = start.saturating_add(len).min(stream.len());
        let chunk = &mut stream[start..end];
        start = end;
        let mut pos = 0;
        while pos < chunk.len() {
            let (used, event) = match decoder.decode(&config, &mut chunk[pos..]) {
                Ok(x) => x,
                Err(e) => {
                    us.close(e.close_code(), "");
                    break 'feed;
                }
            };
            assert!(used > 0 || event.is_some(), "no progress");
            pos += used;
            let Some(event) = event else { continue };
            assert!(!closed_by_peer, "an event after the peer's close");
            let close_sent = us.session.close_state().close_sent();
            let received = match us
                .session
                .receive(&mut us.endpoint, &mut us.inflated, event)
            {
                Ok(received) => received,
                Err(e) => {
                    us.close(e.close_code(), "");
                    break 'feed;
                }
            };
            match received.inbound {
                Inbound::Text(t) => {
                    assert!(t.len() <= max_message);
                    assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                }
                Inbound::Binary(b) => assert!(b.len() <= max_message),
                Inbound::Ping(p) => {
                    assert!(p.len() <= 125);
                    assert_eq!(received.reply.is_some(), !close_sent);
                    if received.reply.is_some() {
                        us.expect.push(Expect::Exactly(Got::Pong(p.to_vec())));
                    }
                }
                Inbound::Pong(_) => assert!(received.reply.is_none()),
                Inbound::Close { code, reason } => {
                    closed_by_peer = true;
                    assert_eq!(
                        received.reply.is_some(),
                        !close_sent,
                        "one close frame each"
                    );
                    if received.reply.is_some() {
                        let code = if code == CloseCode::NO_STATUS {
                            1005
                        } else {
                            code.0
                        };
                        us.expect
                            .push(Expect::Exactly(Got::Close(code, reason.to_owned())));
                    }
                }
            }
            if let Some(reply) = &received.reply {
                us.endpoint.reply(reply).write_to(&mut us.out);
            }
            if closed_by_peer {
                assert!(!us.session.can_send_data());
                assert!(us.session.close_state().close_received());
            }
        }
        us.inflated.release();
        us.endpoint.release_buffers();
        if let Some(&action) = actions.get(round % actions.len().max(1)) {
            us.act(action);
        }
        round += 1;
    }
    check_sent(role, checker, &us);

    // Whatever happened, a shared decompressor serves the next session cleanly.
    if mode == Mode::Shared && max_message >= 1000 {
        let mut peer = Endpoint::new(opposite(role), 1 << 20, 1 << 20, 1);
        let (mut fresh, mut peer_session) = sessions(mode, role, &n, level);
        let text = "a fresh session on the same endpoint";
        let mut wire = Vec::new();
        peer_session
            .message(&mut peer, OpCode::Text, text.as_bytes(), true)
            .write_to(&mut wire);
        let config = *us.endpoint.decoder_config(&fresh);
        let mut decoder = Decoder::new();
        let (_, event) = decoder.decode(&config, &mut wire).expect("decodes");
        let received = fresh.receive(
            &mut us.endpoint,
            &mut us.inflated,
            event.expect("a message"),
        );
        assert_eq!(received.expect("inflates").inbound, Inbound::Text(text));
    }
});
