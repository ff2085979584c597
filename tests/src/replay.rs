//! An Autobahn-like table of frame-level WebSocket cases, for replaying the
//! same client bytes over HTTP/1.1 and over HTTP/2 streams
//! (`tests/tests/http2_replay.rs`): Autobahn's own suite cannot run over
//! HTTP/2 (RFC 8441).
//!
//! Each [`Case`] is a list of masked client frames (built here, so that
//! reserved bits and opcodes can be set) and what RFC 6455 says the server
//! does with them: the messages it echoes, then its close frame. A case that
//! does not end the WebSocket itself ends with the client's close 1000, so
//! every case ends with the server's close and the end of the connection (or
//! stream). [`Split`] says how a case's bytes are cut into HTTP/2 DATA frames.

use std::fmt::Write as _;

use crate::Msg;

/// Opcodes (RFC 6455 section 5.2).
pub mod op {
    /// Continuation frame.
    pub const CONT: u8 = 0x0;
    /// Text frame.
    pub const TEXT: u8 = 0x1;
    /// Binary frame.
    pub const BINARY: u8 = 0x2;
    /// Close frame.
    pub const CLOSE: u8 = 0x8;
    /// Ping frame.
    pub const PING: u8 = 0x9;
    /// Pong frame.
    pub const PONG: u8 = 0xa;
}

/// One masked client frame: FIN, the three RSV bits (`rsv`, 0 to 7), any
/// opcode (reserved ones too), the payload. The masking key depends on the
/// payload's length, so that frames differ in their keys.
pub fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(rsv < 8 && opcode < 16);
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(u8::from(fin) << 7 | rsv << 4 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x3d, 0xa5, 0x17, (payload.len() as u8) ^ 0xc6];
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// A client frame without a mask (RFC 6455 section 5.1: the server fails
/// the WebSocket).
pub fn unmasked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = frame(true, 0, opcode, payload);
    let at = match payload.len() {
        n if n < 126 => 2,
        n if n <= 0xffff => 4,
        _ => 10,
    };
    out[1] &= 0x7f;
    out.splice(at..at + 4, []);
    out[at..].copy_from_slice(payload);
    out
}

/// A final frame with no RSV bit.
fn fin(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, 0, opcode, payload)
}

/// A non-final frame with no RSV bit.
fn part(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(false, 0, opcode, payload)
}

/// A close frame's payload: the code, then the reason's bytes.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    payload
}

/// How the server's close frame must look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closing {
    /// Exactly this close (the server mirrors the client's close).
    Exact(Option<(u16, String)>),
    /// This code, any reason (the server fails the WebSocket).
    Code(u16),
}

/// One case: its frames and what RFC 6455 says follows.
#[derive(Debug, Clone)]
pub struct Case {
    /// Autobahn-like number and a description, e.g. `5.3 ping between fragments`.
    pub name: String,
    /// The client's frames, in order.
    pub frames: Vec<Vec<u8>>,
    /// The messages and control frames the server sends before its close.
    pub messages: Vec<Msg>,
    /// The server's close frame.
    pub closing: Closing,
}

impl Case {
    /// A case that ends with the server failing the WebSocket with `code`.
    fn fails(name: &str, frames: Vec<Vec<u8>>, messages: Vec<Msg>, code: u16) -> Case {
        Case {
            name: name.to_owned(),
            frames,
            messages,
            closing: Closing::Code(code),
        }
    }

    /// A case after which the client closes with 1000, mirrored.
    fn clean(name: &str, mut frames: Vec<Vec<u8>>, messages: Vec<Msg>) -> Case {
        frames.push(fin(op::CLOSE, &close_payload(1000, b"")));
        Case {
            name: name.to_owned(),
            frames,
            messages,
            closing: Closing::Exact(Some((1000, String::new()))),
        }
    }

    /// Whether the server fails the WebSocket (a protocol violation by the
    /// client) rather than mirroring a close.
    pub fn is_violation(&self) -> bool {
        matches!(self.closing, Closing::Code(_))
    }

    /// The case's bytes, all frames.
    pub fn bytes(&self) -> Vec<u8> {
        self.frames.concat()
    }

    /// Checks `outcome` against RFC 6455's: the messages, the close, then the
    /// end of the connection or stream.
    pub fn check(&self, outcome: &Outcome) -> Result<(), String> {
        let fail = |why: &str| Err(format!("{}: {why}; got {outcome:?}", self.name));
        if let Some(error) = &outcome.error {
            return fail(&format!("error {error}"));
        }
        let Some((close, before)) = outcome.received.split_last() else {
            return fail("nothing received");
        };
        if before != self.messages.as_slice() {
            return fail(&format!("expected the messages {:?}", self.messages));
        }
        let close_ok = match (&self.closing, close) {
            (Closing::Exact(want), Msg::Close(got)) => want == got,
            (Closing::Code(code), Msg::Close(Some((got, _)))) => code == got,
            _ => false,
        };
        if !close_ok {
            return fail(&format!("expected the close {:?}", self.closing));
        }
        if !outcome.ended {
            return fail("the connection (or stream) does not end after the close");
        }
        Ok(())
    }
}

/// What a server did with a case: what it sent up to and including its
/// close frame, and whether the connection (or stream) ended right after.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Messages and control frames, the close last (if one came).
    pub received: Vec<Msg>,
    /// The connection (HTTP/1.1) or stream (HTTP/2) ended after the close.
    pub ended: bool,
    /// What went wrong instead (a timeout, a reset, a protocol error).
    pub error: Option<String>,
}

/// How a case's bytes are cut into DATA frames over HTTP/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Each WebSocket frame in its own DATA frames (cut by the frame size
    /// and the windows only).
    Whole,
    /// Each WebSocket frame cut into DATA frames of this many bytes.
    Each(usize),
    /// All the case's WebSocket frames together: several in one DATA frame.
    Joined,
}

impl Split {
    /// The pieces to send in turn, each cut into DATA frames of at most
    /// [`Self::data_size`] bytes (the client's `send_data` cuts further at
    /// 16,384 bytes and at the windows).
    pub fn pieces(self, case: &Case) -> Vec<Vec<u8>> {
        match self {
            Split::Whole | Split::Each(_) => case.frames.clone(),
            Split::Joined => vec![case.bytes()],
        }
    }

    /// The most bytes a DATA frame carries.
    pub fn data_size(self) -> usize {
        match self {
            Split::Each(n) => n,
            Split::Whole | Split::Joined => usize::MAX,
        }
    }

    /// Whether the case is replayed so cut: a megabyte in 1-byte DATA frames
    /// would only measure the client.
    pub fn applies(self, case: &Case) -> bool {
        let len = case.frames.iter().map(Vec::len).sum::<usize>();
        match self {
            Split::Each(1) => len <= 4 << 10,
            Split::Each(n) if n < 1024 => len <= 70 << 10,
            _ => true,
        }
    }
}

/// Text of `len` ASCII bytes.
fn ascii(len: usize) -> String {
    (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}

/// Binary of `len` bytes.
fn bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// The case table.
pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    framing(&mut cases);
    pings(&mut cases);
    reserved(&mut cases);
    fragments(&mut cases);
    utf8(&mut cases);
    closes(&mut cases);
    cases
}

/// 1.x: text and binary messages of sizes around the length encodings.
fn framing(cases: &mut Vec<Case>) {
    for len in [0, 125, 126, 127, 128, 65_535, 65_536, 1 << 20] {
        let text = ascii(len);
        cases.push(Case::clean(
            &format!("1.1 text of {len} bytes"),
            vec![fin(op::TEXT, text.as_bytes())],
            vec![Msg::Text(text)],
        ));
        let data = bytes(len);
        cases.push(Case::clean(
            &format!("1.2 binary of {len} bytes"),
            vec![fin(op::BINARY, &data)],
            vec![Msg::Binary(data)],
        ));
    }
}

/// 2.x: pings and pongs.
fn pings(cases: &mut Vec<Case>) {
    cases.push(Case::clean(
        "2.1 empty ping",
        vec![fin(op::PING, b"")],
        vec![Msg::Pong(Vec::new())],
    ));
    let payload = bytes(125);
    cases.push(Case::clean(
        "2.4 ping of 125 bytes",
        vec![fin(op::PING, &payload)],
        vec![Msg::Pong(payload)],
    ));
    cases.push(Case::fails(
        "2.5 ping of 126 bytes",
        vec![fin(op::PING, &bytes(126))],
        vec![],
        1002,
    ));
    cases.push(Case::clean(
        "2.6 unsolicited pong, then text",
        vec![fin(op::PONG, b"unsolicited"), fin(op::TEXT, b"after pong")],
        vec![Msg::Text("after pong".into())],
    ));
    let frames = (0..10u8).map(|i| fin(op::PING, &[b'p', i])).collect();
    let pongs = (0..10u8).map(|i| Msg::Pong(vec![b'p', i])).collect();
    cases.push(Case::clean("2.10 ten pings in a row", frames, pongs));
}

/// 3.x reserved bits, 4.x reserved opcodes.
fn reserved(cases: &mut Vec<Case>) {
    for rsv in 1..8 {
        cases.push(Case::fails(
            &format!("3.{rsv} text with RSV bits {rsv:03b}"),
            vec![frame(true, rsv, op::TEXT, b"reserved")],
            vec![],
            1002,
        ));
    }
    cases.push(Case::fails(
        "3.8 echo, then a ping with RSV1",
        vec![fin(op::TEXT, b"before"), frame(true, 4, op::PING, b"")],
        vec![Msg::Text("before".into())],
        1002,
    ));
    cases.push(Case::fails(
        "3.9 unmasked text",
        vec![unmasked(op::TEXT, b"naked")],
        vec![],
        1002,
    ));
    cases.push(Case::fails(
        "3.10 echo, then an unmasked binary of 200 bytes",
        vec![fin(op::TEXT, b"masked"), unmasked(op::BINARY, &bytes(200))],
        vec![Msg::Text("masked".into())],
        1002,
    ));
    for opcode in (3..8).chain(11..16) {
        cases.push(Case::fails(
            &format!("4.{opcode} reserved opcode {opcode}"),
            vec![fin(opcode, b"x")],
            vec![],
            1002,
        ));
    }
}

/// 5.x: fragmentation.
fn fragments(cases: &mut Vec<Case>) {
    cases.push(Case::clean(
        "5.1 text in two fragments",
        vec![part(op::TEXT, b"frag"), fin(op::CONT, b"mented")],
        vec![Msg::Text("fragmented".into())],
    ));
    let text = ascii(1000);
    let mut frames = vec![part(op::TEXT, &text.as_bytes()[..10])];
    for chunk in text.as_bytes()[10..990].chunks(10) {
        frames.push(part(op::CONT, chunk));
    }
    frames.push(fin(op::CONT, &text.as_bytes()[990..]));
    cases.push(Case::clean(
        "5.2 text in 100 fragments",
        frames,
        vec![Msg::Text(text)],
    ));
    cases.push(Case::clean(
        "5.3 binary in three fragments",
        vec![
            part(op::BINARY, &[1, 2]),
            part(op::CONT, &[]),
            fin(op::CONT, &[3]),
        ],
        vec![Msg::Binary(vec![1, 2, 3])],
    ));
    cases.push(Case::clean(
        "5.4 ping between fragments",
        vec![
            part(op::TEXT, b"frag"),
            fin(op::PING, b"mid"),
            fin(op::CONT, b"mented"),
        ],
        vec![Msg::Pong(b"mid".to_vec()), Msg::Text("fragmented".into())],
    ));
    let text = "fragments of one byte: \u{3ba}\u{1f600}";
    let mut frames = vec![part(op::TEXT, &text.as_bytes()[..1])];
    let last = text.len() - 1;
    for i in 1..last {
        frames.push(part(op::CONT, &text.as_bytes()[i..=i]));
    }
    frames.push(fin(op::CONT, &text.as_bytes()[last..]));
    cases.push(Case::clean(
        "5.5 fragments of one byte each",
        frames,
        vec![Msg::Text(text.into())],
    ));
    // A megabyte in 16 fragments of 64 KiB, a ping after each: the stream's
    // window (65,535 bytes) is credited many times within one message.
    let data = bytes(1 << 20);
    let mut frames = Vec::new();
    let mut pongs = Vec::new();
    for (i, chunk) in data.chunks(64 << 10).enumerate() {
        let opcode = if i == 0 { op::BINARY } else { op::CONT };
        frames.push(frame(i == 15, 0, opcode, chunk));
        if i < 15 {
            frames.push(fin(op::PING, &[i as u8]));
            pongs.push(Msg::Pong(vec![i as u8]));
        }
    }
    pongs.push(Msg::Binary(data));
    cases.push(Case::clean(
        "5.12 a megabyte in 16 fragments, pings between",
        frames,
        pongs,
    ));
    cases.push(Case::fails(
        "5.6 continuation without a start",
        vec![fin(op::CONT, b"orphan")],
        vec![],
        1002,
    ));
    cases.push(Case::fails(
        "5.7 non-final continuation without a start",
        vec![part(op::CONT, b"orphan")],
        vec![],
        1002,
    ));
    cases.push(Case::fails(
        "5.8 new text while fragmented",
        vec![part(op::TEXT, b"first"), fin(op::TEXT, b"second")],
        vec![],
        1002,
    ));
    cases.push(Case::fails(
        "5.9 new binary while fragmented",
        vec![part(op::BINARY, b"first"), part(op::BINARY, b"second")],
        vec![],
        1002,
    ));
    cases.push(Case::fails(
        "5.10 fragmented ping",
        vec![part(op::PING, b"frag"), fin(op::CONT, b"ment")],
        vec![],
        1002,
    ));
    cases.push(Case::fails(
        "5.11 echo, then a fragmented close",
        vec![
            fin(op::TEXT, b"ok"),
            part(op::CLOSE, &close_payload(1000, b"")),
        ],
        vec![Msg::Text("ok".into())],
        1002,
    ));
}

/// 6.x: UTF-8.
fn utf8(cases: &mut Vec<Case>) {
    for (name, text) in [
        (
            "6.1 two-byte code points",
            "\u{3ba}\u{1f79}\u{3c3}\u{3bc}\u{3b5}",
        ),
        (
            "6.2 three-byte code points",
            "\u{20ac}\u{ffff}\u{fffd}\u{d7ff}\u{e000}",
        ),
        ("6.3 four-byte code points", "\u{1f600}\u{10000}\u{10ffff}"),
        (
            "6.4 nul and the 1-byte edge",
            "\u{0}\u{7f}\u{80}\u{7ff}\u{800}",
        ),
    ] {
        cases.push(Case::clean(
            name,
            vec![fin(op::TEXT, text.as_bytes())],
            vec![Msg::Text(text.into())],
        ));
    }
    let invalid: [(&str, &[u8]); 13] = [
        ("lone continuation byte", b"\x80"),
        ("overlong '/' in two bytes", b"\xc0\xaf"),
        ("overlong '/' in three bytes", b"\xe0\x80\xaf"),
        ("overlong '/' in four bytes", b"\xf0\x80\x80\xaf"),
        ("overlong U+07FF in three bytes", b"\xe0\x9f\xbf"),
        ("surrogate U+D800", b"\xed\xa0\x80"),
        ("surrogate U+DFFF", b"\xed\xbf\xbf"),
        ("surrogate pair", b"\xed\xa0\x80\xed\xb0\x80"),
        ("U+110000", b"\xf4\x90\x80\x80"),
        ("lead byte F5", b"\xf5\x80\x80\x80"),
        ("bytes FE FF", b"\xfe\xff"),
        ("truncated at the end", b"ok \xe2\x82"),
        (
            "valid text, then invalid",
            b"\xce\xba\xe1\xbd\xb9\xed\xa0\x80edited",
        ),
    ];
    for (i, (what, payload)) in invalid.into_iter().enumerate() {
        cases.push(Case::fails(
            &format!("6.{} invalid: {what}", 10 + i),
            vec![fin(op::TEXT, payload)],
            vec![],
            1007,
        ));
    }
    // A four-byte code point cut at each of its bytes between fragments.
    let cp = "\u{1d11e}".as_bytes();
    for cut in 1..4 {
        let mut first = b"clef ".to_vec();
        first.extend_from_slice(&cp[..cut]);
        let mut second = cp[cut..].to_vec();
        second.extend_from_slice(b" end");
        cases.push(Case::clean(
            &format!("6.30 four-byte code point cut after byte {cut}"),
            vec![part(op::TEXT, &first), fin(op::CONT, &second)],
            vec![Msg::Text("clef \u{1d11e} end".into())],
        ));
    }
    cases.push(Case::clean(
        "6.31 four-byte code point in four fragments",
        vec![
            part(op::TEXT, &cp[..1]),
            part(op::CONT, &cp[1..2]),
            part(op::CONT, &cp[2..3]),
            fin(op::CONT, &cp[3..]),
        ],
        vec![Msg::Text("\u{1d11e}".into())],
    ));
    // Invalid in a middle fragment: failed there (fail fast), so nothing is
    // sent after it.
    cases.push(Case::fails(
        "6.32 invalid in a middle fragment",
        vec![
            part(op::TEXT, "\u{3ba}".as_bytes()),
            part(op::CONT, b"\xed\xa0\x80"),
        ],
        vec![],
        1007,
    ));
    cases.push(Case::fails(
        "6.33 a code point past U+10FFFF cut between fragments",
        vec![part(op::TEXT, b"\xf4"), fin(op::CONT, b"\x90\x80\x80")],
        vec![],
        1007,
    ));
    cases.push(Case::fails(
        "6.34 truncated code point at the last fragment",
        vec![part(op::TEXT, b"ok"), fin(op::CONT, b"\xf0\x9d\x84")],
        vec![],
        1007,
    ));
}

/// 7.x: close frames.
fn closes(cases: &mut Vec<Case>) {
    cases.push(Case {
        name: "7.1 close without a code".into(),
        frames: vec![fin(op::CLOSE, b"")],
        messages: vec![],
        closing: Closing::Exact(None),
    });
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999,
    ] {
        cases.push(Case {
            name: format!("7.2 close with code {code}"),
            frames: vec![fin(op::CLOSE, &close_payload(code, b"bye"))],
            messages: vec![],
            closing: Closing::Exact(Some((code, "bye".into()))),
        });
    }
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65_535] {
        cases.push(Case::fails(
            &format!("7.3 close with invalid code {code}"),
            vec![fin(op::CLOSE, &close_payload(code, b""))],
            vec![],
            1002,
        ));
    }
    cases.push(Case::fails(
        "7.4 close payload of one byte",
        vec![fin(op::CLOSE, &[0x03])],
        vec![],
        1002,
    ));
    cases.push(Case::fails(
        "7.5 close reason not UTF-8",
        vec![fin(op::CLOSE, &close_payload(1000, b"bad \xed\xa0\x80"))],
        vec![],
        1007,
    ));
    let reason = ascii(123);
    cases.push(Case {
        name: "7.6 close with a 123-byte reason".into(),
        frames: vec![fin(op::CLOSE, &close_payload(1000, reason.as_bytes()))],
        messages: vec![],
        closing: Closing::Exact(Some((1000, reason))),
    });
    cases.push(Case {
        name: "7.7 echo, then close".into(),
        frames: vec![
            fin(op::TEXT, b"last words"),
            fin(op::CLOSE, &close_payload(1001, b"")),
        ],
        messages: vec![Msg::Text("last words".into())],
        closing: Closing::Exact(Some((1001, String::new()))),
    });
}

/// One line per failure, for the assertion that lists them all.
pub fn report(failures: &[String]) -> String {
    let mut out = String::new();
    for f in failures {
        let _ = writeln!(out, "  {f}");
    }
    out
}
