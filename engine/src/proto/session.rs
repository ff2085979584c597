//! One WebSocket connection after its handshake, for either role, without I/O.
//!
//! Decoded frames ([`Event`]s of the [`Decoder`](super::message::Decoder)) go in;
//! what the application gets ([`Inbound`]) and the frame owed to the peer (the
//! pong of a ping, the reply to a close) come out. The [`Session`] owns the close
//! handshake and the connection's permessage-deflate state (inflation bounded by
//! the message limit, the UTF-8 of inflated text), and builds every outgoing
//! frame (RSV1 on compressed messages, the client role's mask).
//!
//! What all connections of one endpoint share is an [`Endpoint`], passed to each
//! call: the role, the decoder rules, the shared-mode codecs, scratch buffers and
//! the client's mask keys. A session itself is a few bytes, plus its own codecs
//! when it negotiated context takeover.

use super::Role;
use super::close::CloseCode;
use super::deflate::{Compressor, Decompressor, Negotiated};
use super::error::ProtocolError;
use super::frame::{
    DecodeRules, EncodedHeader, MAX_CONTROL_PAYLOAD, MaskKeys, OpCode, RSV1, encode_header,
};
use super::mask;
use super::message::{CloseHandshake, ClosePayload, DecoderConfig, Event};
use super::utf8;

pub use carry::{DeflateCarry, DeflateContext};

/// Inflate buffers larger than this are freed after use, so a one-off large
/// message does not pin its memory.
const KEEP_SCRATCH: usize = 1 << 20;

/// What the application gets from one decoded event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// A text message: valid UTF-8, inflated if it was compressed.
    Text(&'a str),
    /// A binary message, inflated if it was compressed.
    Binary(&'a [u8]),
    /// A ping; its pong is in [`Received::reply`] (unless we already sent a close).
    Ping(&'a [u8]),
    /// A pong, solicited or not.
    Pong(&'a [u8]),
    /// The peer's close frame: its code ([`CloseCode::NO_STATUS`] when it carried
    /// none) and reason. Its reply, if we had not closed first, is in
    /// [`Received::reply`].
    Close {
        /// The peer's status code.
        code: CloseCode,
        /// The peer's reason, possibly empty.
        reason: &'a str,
    },
}

/// One event's outcome: what the application gets, and what is owed to the
/// peer now, if anything.
#[derive(Debug)]
pub struct Received<'a> {
    /// For the application.
    pub inbound: Inbound<'a>,
    /// For the peer: the pong of a ping, or the reply to a close (which mirrors
    /// the peer's code and reason). [`Endpoint::reply`] makes it a frame.
    pub reply: Option<Reply<'a>>,
}

/// A frame owed to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// The pong of a ping, with its payload.
    Pong(&'a [u8]),
    /// Our reply to the peer's close frame.
    Close(ClosePayload),
}

/// Where compressed messages are inflated before the application sees them;
/// kept by the caller beside its [`Endpoint`], since what
/// [`Session::receive`] hands out borrows it while the endpoint is used to send.
#[derive(Debug, Default)]
pub struct InflateBuffer(Vec<u8>);

impl InflateBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Frees what a large message left behind. Call it after the events of a
    /// read are handled.
    pub fn release(&mut self) {
        if self.0.capacity() > KEEP_SCRATCH {
            self.0 = Vec::new();
        }
    }

    /// Bytes of memory held.
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

/// One outgoing frame: its header and the payload it refers to. In the client
/// role the payload is masked as it is written ([`Frame::write_to`]).
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    header: EncodedHeader,
    payload: &'a [u8],
    mask: Option<[u8; 4]>,
}

impl<'a> Frame<'a> {
    fn new(rsv: u8, opcode: OpCode, payload: &'a [u8], mask: Option<[u8; 4]>) -> Self {
        Self::fragment(true, rsv, opcode, payload, mask)
    }

    fn fragment(
        fin: bool,
        rsv: u8,
        opcode: OpCode,
        payload: &'a [u8],
        mask: Option<[u8; 4]>,
    ) -> Self {
        Self {
            header: encode_header(fin, rsv, opcode, mask, payload.len() as u64),
            payload,
            mask,
        }
    }

    /// The encoded header.
    pub fn header(&self) -> &[u8] {
        self.header.as_bytes()
    }

    /// The payload as it goes on the wire, for the server role (unmasked). `None`
    /// in the client role: the payload must be masked, so use
    /// [`write_to`](Self::write_to).
    pub fn unmasked_payload(&self) -> Option<&'a [u8]> {
        self.mask.is_none().then_some(self.payload)
    }

    /// Header plus payload, in bytes.
    pub fn len(&self) -> usize {
        self.header.as_bytes().len() + self.payload.len()
    }

    /// Never true: a frame has at least a two-byte header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Appends the whole frame to `out`, masking the payload in the client role.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.len());
        out.extend_from_slice(self.header.as_bytes());
        match self.mask {
            None => out.extend_from_slice(self.payload),
            Some(key) => {
                let start = out.len();
                out.resize(start + self.payload.len(), 0);
                mask::mask_into(&mut out[start..], self.payload, key);
            }
        }
    }
}

/// The state all sessions of one endpoint (a server worker, a client thread)
/// share: pass the same one to every call of their sessions.
#[derive(Debug)]
pub struct Endpoint {
    role: Role,
    plain: DecoderConfig,
    /// The decoder rules of sessions that negotiated permessage-deflate (RSV1).
    compressed: DecoderConfig,
    /// Compression level of the codecs made here and in sessions.
    level: u32,
    /// Shared mode: one compressor per window (9..=15), made on first use.
    compressors: [Option<Compressor>; 7],
    /// Shared mode: one decompressor, made on first use.
    decompressor: Option<Decompressor>,
    /// Where an outgoing message is compressed.
    deflated: Vec<u8>,
    /// Our close frame's payload.
    close: ClosePayload,
    /// Client role: the mask keys.
    keys: MaskKeys,
}

impl Endpoint {
    /// An endpoint for `role`: frames up to `max_frame_size`, messages up to
    /// `max_message_size` (after inflation too), codecs at `level` (0..=9).
    pub fn new(role: Role, max_frame_size: usize, max_message_size: usize, level: u32) -> Self {
        let plain = DecoderConfig {
            rules: DecodeRules::new(role, max_frame_size as u64),
            max_message_size,
        };
        let compressed = DecoderConfig {
            rules: DecodeRules {
                allowed_rsv: RSV1,
                ..plain.rules
            },
            ..plain
        };
        Self {
            role,
            plain,
            compressed,
            level,
            compressors: Default::default(),
            decompressor: None,
            deflated: Vec::new(),
            close: ClosePayload::empty(),
            keys: MaskKeys::new(),
        }
    }

    /// The role of this endpoint's sessions.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The decoder rules for `session`: RSV1 is allowed where it negotiated
    /// permessage-deflate.
    pub fn decoder_config(&self, session: &Session) -> &DecoderConfig {
        if session.deflate() {
            &self.compressed
        } else {
            &self.plain
        }
    }

    /// Frees scratch memory a large message left behind.
    pub fn release_buffers(&mut self) {
        if self.deflated.capacity() > KEEP_SCRATCH {
            self.deflated = Vec::new();
        }
    }

    /// The frame of a reply [`Session::receive`] asked for.
    pub fn reply<'r>(&mut self, reply: &'r Reply<'_>) -> Frame<'r> {
        let mask = self.mask();
        match reply {
            Reply::Pong(payload) => Frame::new(0, OpCode::Pong, payload, mask),
            Reply::Close(payload) => Frame::new(0, OpCode::Close, payload.as_bytes(), mask),
        }
    }

    fn mask(&mut self) -> Option<[u8; 4]> {
        (self.role == Role::Client).then(|| self.keys.next_key())
    }

    fn shared_compressor(&mut self, bits: u8) -> &mut Compressor {
        let bits = bits.clamp(9, 15);
        let level = self.level;
        self.compressors[usize::from(bits) - 9]
            .get_or_insert_with(|| Compressor::new(bits, level, true))
    }
}

/// A session's own codecs (permessage-deflate with context takeover).
#[derive(Debug)]
struct OwnCodecs {
    /// Made on first use: a session that never sends a compressed message
    /// holds no compressor.
    compressor: Option<Compressor>,
    window: u8,
    level: u32,
    no_context_takeover: bool,
    /// The peer's compressor's window (8..=15): how far back its messages
    /// may refer (what a hand-over carries of our decompressor's window).
    peer_window: u8,
    decompressor: Decompressor,
}

impl OwnCodecs {
    fn compressor(&mut self) -> &mut Compressor {
        let (window, level, reset) = (self.window, self.level, self.no_context_takeover);
        self.compressor
            .get_or_insert_with(|| Compressor::new(window, level, reset))
    }
}

/// One connection's protocol state after the handshake.
#[derive(Debug)]
pub struct Session {
    close: CloseHandshake,
    /// permessage-deflate on the endpoint's shared codecs (no context takeover
    /// either way): our compressor's window, 9..=15; 0 otherwise.
    shared_window: u8,
    /// permessage-deflate on codecs of its own (context takeover).
    own: Option<Box<OwnCodecs>>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A session without extensions.
    pub fn new() -> Self {
        Self {
            close: CloseHandshake::new(),
            shared_window: 0,
            own: None,
        }
    }

    /// A session with permessage-deflate as `negotiated`, on codecs of its own
    /// (context takeover as negotiated), for an endpoint of `role`; its
    /// compressor works at `level` and is made when first needed.
    pub fn with_deflate(role: Role, negotiated: &Negotiated, level: u32) -> Self {
        let n = negotiated;
        let (window, no_context_takeover, peer_window, peer_resets) = match role {
            Role::Server => (
                n.server_max_window_bits,
                n.server_no_context_takeover,
                n.client_max_window_bits,
                n.client_no_context_takeover,
            ),
            Role::Client => (
                n.client_max_window_bits,
                n.client_no_context_takeover,
                n.server_max_window_bits,
                n.server_no_context_takeover,
            ),
        };
        Self {
            close: CloseHandshake::new(),
            shared_window: 0,
            own: Some(Box::new(OwnCodecs {
                compressor: None,
                window,
                level,
                no_context_takeover,
                peer_window,
                decompressor: Decompressor::new(peer_resets),
            })),
        }
    }

    /// A session with permessage-deflate on the endpoint's shared codecs, which
    /// needs no context takeover in either direction; `window` is what our
    /// compressor may use (9..=15).
    pub fn with_shared_deflate(window: u8) -> Self {
        Self {
            close: CloseHandshake::new(),
            shared_window: window.clamp(9, 15),
            own: None,
        }
    }

    /// Whether permessage-deflate was negotiated.
    pub fn deflate(&self) -> bool {
        self.shared_window != 0 || self.own.is_some()
    }

    /// The window of the endpoint's shared compressor this session sends with:
    /// a compressed frame made for one such session serves every session with the
    /// same window. `None` when it compresses on its own codecs or not at all.
    pub fn shared_window(&self) -> Option<u8> {
        (self.shared_window != 0).then_some(self.shared_window)
    }

    /// The close handshake's state.
    pub fn close_state(&self) -> &CloseHandshake {
        &self.close
    }

    /// Whether data frames may still be sent (not after our close frame).
    pub fn can_send_data(&self) -> bool {
        self.close.can_send_data()
    }

    /// Handles one decoded event. A compressed message is inflated into
    /// `inflated`. An error means the connection must be closed with the error's
    /// [`close_code`](ProtocolError::close_code) (see [`close`](Self::close)).
    pub fn receive<'a>(
        &mut self,
        endpoint: &mut Endpoint,
        inflated: &'a mut InflateBuffer,
        event: Event<'a>,
    ) -> Result<Received<'a>, ProtocolError> {
        let received = |inbound| Received {
            inbound,
            reply: None,
        };
        Ok(match event {
            Event::Text(text) => received(Inbound::Text(text)),
            Event::Binary(data) => received(Inbound::Binary(data)),
            Event::Pong(payload) => received(Inbound::Pong(payload)),
            Event::Ping(payload) => Received {
                inbound: Inbound::Ping(payload),
                reply: self.close.can_send_data().then_some(Reply::Pong(payload)),
            },
            Event::Close(frame) => {
                let (code, reason) =
                    frame.map_or((CloseCode::NO_STATUS, ""), |f| (f.code, f.reason));
                Received {
                    inbound: Inbound::Close { code, reason },
                    reply: self.close.receive(frame).map(Reply::Close),
                }
            }
            Event::Compressed { text, payload } => {
                let decompressor = match (&mut self.own, self.shared_window) {
                    (Some(own), _) => &mut own.decompressor,
                    // The decoder refuses RSV1 where the extension is off; a
                    // caller that used the wrong rules gets the same answer.
                    (None, 0) => return Err(ProtocolError::ReservedBits),
                    (None, _) => endpoint
                        .decompressor
                        .get_or_insert_with(|| Decompressor::new(true)),
                };
                let max = endpoint.plain.max_message_size;
                let out = &mut inflated.0;
                out.clear();
                let result = decompressor
                    .decompress(payload, out, max)
                    .and_then(|()| decompressor.finish(out, max));
                if let Err(error) = result {
                    // A shared decompressor serves the next connection cleanly.
                    decompressor.reset();
                    return Err(error);
                }
                received(if text {
                    Inbound::Text(utf8::validate(out).map_err(|_| ProtocolError::InvalidUtf8)?)
                } else {
                    Inbound::Binary(out)
                })
            }
        })
    }

    /// Our close frame, or `None` if one was already sent (ours or a reply).
    /// The reason is cut to fit a control frame.
    pub fn close<'a>(
        &mut self,
        endpoint: &'a mut Endpoint,
        code: CloseCode,
        reason: &str,
    ) -> Option<Frame<'a>> {
        let payload = self.close.initiate(code, reason)?;
        let mask = endpoint.mask();
        endpoint.close = payload;
        Some(Frame::new(
            0,
            OpCode::Close,
            endpoint.close.as_bytes(),
            mask,
        ))
    }

    /// A ping or pong frame (payload cut to 125 bytes), or `None` after our close
    /// frame. For a close frame use [`close`](Self::close).
    pub fn control<'a>(
        &mut self,
        endpoint: &mut Endpoint,
        opcode: OpCode,
        payload: &'a [u8],
    ) -> Option<Frame<'a>> {
        debug_assert!(matches!(opcode, OpCode::Ping | OpCode::Pong));
        if !self.close.can_send_data() {
            return None;
        }
        let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
        Some(Frame::new(0, opcode, payload, endpoint.mask()))
    }

    /// A data message (`Text` or `Binary`) as one frame, compressed if the
    /// session negotiated permessage-deflate and `compress` asks for it (then the
    /// frame refers to the endpoint's scratch buffer). Whether data may still be
    /// sent is the caller's to check ([`can_send_data`](Self::can_send_data)).
    pub fn message<'a>(
        &mut self,
        endpoint: &'a mut Endpoint,
        opcode: OpCode,
        payload: &'a [u8],
        compress: bool,
    ) -> Frame<'a> {
        let mask = endpoint.mask();
        if compress && self.compress_into(endpoint, payload) {
            return Frame::new(RSV1, opcode, &endpoint.deflated, mask);
        }
        Frame::new(0, opcode, payload, mask)
    }

    /// Appends a data message to `out` as `fragments` frames (at least one):
    /// compressed as [`message`](Self::message) would, RSV1 on the first frame
    /// only, each frame masked in the client role.
    pub fn write_fragmented(
        &mut self,
        endpoint: &mut Endpoint,
        opcode: OpCode,
        payload: &[u8],
        compress: bool,
        fragments: usize,
        out: &mut Vec<u8>,
    ) {
        let compressed = compress && self.compress_into(endpoint, payload);
        let deflated = std::mem::take(&mut endpoint.deflated);
        let body: &[u8] = if compressed { &deflated } else { payload };
        let step = body.len().div_ceil(fragments.max(1)).max(1);
        let mut pieces: Vec<&[u8]> = body.chunks(step).collect();
        if pieces.is_empty() {
            pieces.push(&[]);
        }
        let last = pieces.len() - 1;
        for (i, piece) in pieces.into_iter().enumerate() {
            let (op, rsv) = match i {
                0 => (opcode, if compressed { RSV1 } else { 0 }),
                _ => (OpCode::Continuation, 0),
            };
            Frame::fragment(i == last, rsv, op, piece, endpoint.mask()).write_to(out);
        }
        endpoint.deflated = deflated;
    }

    /// Compresses `payload` into the endpoint's scratch buffer; false if the
    /// session does not compress.
    fn compress_into(&mut self, endpoint: &mut Endpoint, payload: &[u8]) -> bool {
        let mut out = std::mem::take(&mut endpoint.deflated);
        out.clear();
        let done = match (&mut self.own, self.shared_window) {
            (Some(own), _) => {
                own.compressor().compress(payload, &mut out);
                true
            }
            (None, 0) => false,
            (None, window) => {
                endpoint
                    .shared_compressor(window)
                    .compress(payload, &mut out);
                true
            }
        };
        endpoint.deflated = out;
        done
    }
}

#[path = "session_carry.rs"]
mod carry;
#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
