//! Frames to messages: reassembly of fragments, control frames, close frames and
//! the close handshake, with the payload unmasked in place.
//!
//! [`Decoder::decode`] takes the bytes of one read. A message whose frame lies whole
//! in that buffer is handed out as a slice *of the buffer* (unmasked in place, never
//! copied). Only what is split (a header cut by the end of a read, a frame whose
//! payload spans reads, a fragmented message) is accumulated in the decoder.

use super::Role;
use super::close::CloseCode;
use super::error::ProtocolError;
use super::frame::{self, DecodeRules, FrameHeader, HeaderStatus, MAX_HEADER_LEN, OpCode, RSV1};
use super::mask;
use super::utf8::{self, StreamingUtf8};

/// Bytes charged to a fragmented message's size budget for every fragment after the
/// first, so a flood of tiny or empty fragments reaches the message size limit
/// instead of running forever.
pub const FRAGMENT_OVERHEAD: usize = 16;

/// Receive limits and rules of one endpoint; shared by all its connections, so it
/// is passed to every call rather than stored per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Frame-level rules: role, extension bits, maximum frame size.
    pub rules: DecodeRules,
    /// Largest message: payload bytes plus [`FRAGMENT_OVERHEAD`] per extra fragment.
    pub max_message_size: usize,
}

impl DecoderConfig {
    /// Default limit of a frame and of a message: 16 MiB.
    pub const DEFAULT_MAX_SIZE: usize = 16 << 20;

    /// A configuration for `role` with both size limits set to `max_size`.
    pub const fn new(role: Role, max_size: usize) -> Self {
        Self {
            rules: DecodeRules::new(role, max_size as u64),
            max_message_size: max_size,
        }
    }
}

/// A close frame's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code.
    pub code: CloseCode,
    /// The reason, valid UTF-8, possibly empty.
    pub reason: &'a str,
}

/// What a frame (or the last frame of a message) delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message, validated as UTF-8.
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping: answer with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong, solicited or not.
    Pong(&'a [u8]),
    /// The peer's close frame; `None` when it carried no status code. Nothing is
    /// decoded after it.
    Close(Option<CloseFrame<'a>>),
    /// A complete message whose first frame had RSV1 set: compressed with
    /// permessage-deflate (only where [`DecodeRules::allowed_rsv`] admits RSV1).
    /// The payload is the compressed bytes; a text message's UTF-8 is checked
    /// after inflating, not here.
    Compressed {
        /// A text message (else binary).
        text: bool,
        /// The compressed payload, without the `00 00 ff ff` tail.
        payload: &'a [u8],
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataKind {
    Text,
    Binary,
}

/// A step of [`Decoder::decode_framed`]: the bytes consumed, the event they
/// completed, and that message framed as the server sends it.
pub type FramedStep<'a> = (usize, Option<Event<'a>>, Option<&'a [u8]>);

/// A frame whose header has been read and whose payload is still arriving.
#[derive(Debug, Clone, Copy)]
struct PartialFrame {
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    /// Payload bytes still to come.
    remaining: u64,
    /// Position in the payload modulo 4, for the mask key rotation.
    offset: u8,
}

/// A control frame's payload being assembled (at most 125 bytes).
#[derive(Debug)]
struct ControlStash {
    buf: [u8; 125],
    len: u8,
}

/// Per-connection receive state: a few dozen bytes while idle, plus buffers only
/// while something is split.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes of a header cut by the end of a read.
    header: [u8; MAX_HEADER_LEN],
    header_len: u8,
    frame: Option<PartialFrame>,
    /// Kind of the fragmented message in progress, if any.
    fragmented: Option<DataKind>,
    /// Bytes charged to the current data message.
    budget: usize,
    /// The current data message is compressed (RSV1 on its first frame).
    compressed: bool,
    /// Payload of a data message split across frames or reads.
    message: Vec<u8>,
    /// Payload of a control frame split across reads; boxed so that it costs a
    /// pointer, not a buffer, while unused.
    control: Option<Box<ControlStash>>,
    utf8: StreamingUtf8,
    /// `message` was handed out and must be cleared on the next call.
    delivered_message: bool,
    close_received: bool,
}

impl Decoder {
    /// A decoder at the start of a connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the peer's close frame has been received.
    pub fn close_received(&self) -> bool {
        self.close_received
    }

    /// Whether nothing is pending: no partial header, frame or message.
    pub fn is_idle(&self) -> bool {
        self.header_len == 0 && self.frame.is_none() && self.fragmented.is_none()
    }

    /// Heap bytes held for split frames and messages.
    pub fn buffered_bytes(&self) -> usize {
        self.message.capacity()
            + self
                .control
                .as_ref()
                .map_or(0, |_| size_of::<ControlStash>())
    }

    /// Frees a reassembly buffer larger than `keep` bytes when no message is in
    /// progress, so a one-off large message does not pin its memory while a
    /// busy connection reuses a buffer of its working size without allocating.
    /// Call it after the last [`decode`](Self::decode) of a read.
    pub fn trim_buffers(&mut self, keep: usize) {
        self.clear_delivered();
        if self.fragmented.is_none() && self.frame.is_none() && self.message.capacity() > keep {
            self.message = Vec::new();
        }
    }

    /// Frees the reassembly buffers when no message is in progress, so an idle
    /// connection holds no receive memory. Call it after the last
    /// [`decode`](Self::decode) of a read, or, to reuse the buffer across the
    /// messages of a busy connection, when the connection goes quiet (see
    /// [`trim_buffers`](Self::trim_buffers)); a message in progress keeps its
    /// buffer.
    pub fn release_buffers(&mut self) {
        self.clear_delivered();
        if self.fragmented.is_none() && self.frame.is_none() {
            self.message = Vec::new();
            self.control = None;
        }
    }

    /// Drops what earlier calls handed out: a reassembled message, and a control
    /// payload that is no longer in progress.
    fn clear_delivered(&mut self) {
        if self.delivered_message {
            self.message.clear();
            self.delivered_message = false;
        }
        if self.frame.is_none() {
            self.control = None;
        }
    }

    /// Decodes from the start of `buf`, the next bytes received from the peer.
    ///
    /// Returns how many bytes were consumed and the event they completed, if any.
    /// Call it again on the rest of the buffer until all of it is consumed; every
    /// call on a non-empty buffer consumes at least one byte or yields an event.
    /// Masked payloads are unmasked in place, so `buf` is modified.
    ///
    /// After an error the connection must be closed with
    /// [`ProtocolError::close_code`]; the decoder is not meant to be used again.
    pub fn decode<'a>(
        &'a mut self,
        config: &DecoderConfig,
        buf: &'a mut [u8],
    ) -> Result<(usize, Option<Event<'a>>), ProtocolError> {
        self.decode_framed(config, buf, usize::MAX)
            .map(|(used, event, _)| (used, event))
    }

    /// [`decode`](Self::decode), and for a data message that lies whole in
    /// `buf` as one masked frame, if the server's frame of it is at least
    /// `frame_from` bytes, that frame: the server's header is written over
    /// the end of the peer's (its length and mask key, dead once read), so
    /// header and payload lie together and an echo goes out in one plain
    /// write. The event's payload is the framed slice's tail.
    pub fn decode_framed<'a>(
        &'a mut self,
        config: &DecoderConfig,
        buf: &'a mut [u8],
        frame_from: usize,
    ) -> Result<FramedStep<'a>, ProtocolError> {
        self.clear_delivered();
        if self.close_received {
            // Nothing may follow a close frame; whatever does is discarded unread.
            return Ok((buf.len(), None, None));
        }
        if buf.is_empty() {
            return Ok((0, None, None));
        }
        if let Some(partial) = self.frame {
            let (used, event) = self.continue_frame(partial, buf)?;
            return Ok((used, event, None));
        }
        let (header, used) = match self.read_header(&config.rules, buf)? {
            Some(found) => found,
            None => return Ok((buf.len(), None, None)),
        };
        self.start_frame(config, &header)?;
        if ((buf.len() - used) as u64) < header.payload_len {
            self.frame = Some(PartialFrame {
                opcode: header.opcode,
                fin: header.fin,
                mask: header.mask,
                remaining: header.payload_len,
                offset: 0,
            });
            let partial = self.frame.expect("just set");
            let rest = &mut buf[used..];
            let (n, event) = self.continue_frame(partial, rest)?;
            debug_assert!(event.is_none() && n == rest.len());
            return Ok((used + n, None, None));
        }
        let payload_len = header.payload_len as usize;
        let frame = &mut buf[..used + payload_len];
        if let Some(key) = header.mask {
            mask::apply_mask(&mut frame[used..], key, 0);
        }
        let reframed = reframe(&header, used, frame, frame_from);
        let frame: &'a [u8] = frame;
        let event = self.complete_frame(&header, &frame[used..])?;
        Ok((
            used + payload_len,
            event,
            reframed.map(|start| &frame[start..]),
        ))
    }

    /// Reads a header from the stash of a previous read plus `buf`, or from `buf`.
    /// `None` means every byte of `buf` went into the stash.
    fn read_header(
        &mut self,
        rules: &DecodeRules,
        buf: &[u8],
    ) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let have = usize::from(self.header_len);
        if have == 0 {
            return match frame::decode_header(buf, rules)? {
                HeaderStatus::Complete(header) => Ok(Some((header, header.header_len))),
                HeaderStatus::Incomplete(_) => {
                    self.header[..buf.len()].copy_from_slice(buf);
                    self.header_len = buf.len() as u8;
                    Ok(None)
                }
            };
        }
        let take = (MAX_HEADER_LEN - have).min(buf.len());
        self.header[have..have + take].copy_from_slice(&buf[..take]);
        match frame::decode_header(&self.header[..have + take], rules)? {
            HeaderStatus::Complete(header) => {
                self.header_len = 0;
                Ok(Some((header, header.header_len - have)))
            }
            HeaderStatus::Incomplete(_) => {
                self.header_len = (have + take) as u8;
                Ok(None)
            }
        }
    }

    /// Applies the message-level rules to a new frame: continuation order and the
    /// message size budget, checked before any payload byte is kept.
    fn start_frame(
        &mut self,
        config: &DecoderConfig,
        header: &FrameHeader,
    ) -> Result<(), ProtocolError> {
        let rsv1 = header.rsv & RSV1 != 0;
        let charge = match header.opcode {
            // RSV1 means "compressed", which only the first frame of a data
            // message may say (RFC 7692 section 6).
            OpCode::Close | OpCode::Ping | OpCode::Pong if rsv1 => {
                return Err(ProtocolError::ReservedBits);
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => return Ok(()),
            OpCode::Continuation => {
                if self.fragmented.is_none() {
                    return Err(ProtocolError::UnexpectedContinuation);
                }
                if rsv1 {
                    return Err(ProtocolError::ReservedBits);
                }
                FRAGMENT_OVERHEAD as u64
            }
            OpCode::Text | OpCode::Binary => {
                if self.fragmented.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                self.budget = 0;
                self.compressed = rsv1;
                if !header.fin {
                    self.fragmented = Some(if header.opcode == OpCode::Text {
                        DataKind::Text
                    } else {
                        DataKind::Binary
                    });
                }
                0
            }
        };
        let total = (self.budget as u64)
            .saturating_add(header.payload_len)
            .saturating_add(charge);
        if total > config.max_message_size as u64 {
            return Err(ProtocolError::MessageTooBig);
        }
        self.budget = total as usize;
        Ok(())
    }

    /// The kind of data a data frame with this opcode belongs to.
    fn data_kind(&self, opcode: OpCode) -> DataKind {
        match (opcode, self.fragmented) {
            (OpCode::Text, _) => DataKind::Text,
            (OpCode::Continuation, Some(kind)) => kind,
            _ => DataKind::Binary,
        }
    }

    /// A frame whose whole payload was in the read buffer (already unmasked).
    fn complete_frame<'a>(
        &'a mut self,
        header: &FrameHeader,
        payload: &'a [u8],
    ) -> Result<Option<Event<'a>>, ProtocolError> {
        if header.opcode.is_control() {
            return self.control_event(header.opcode, payload).map(Some);
        }
        let unfragmented = header.fin && header.opcode != OpCode::Continuation;
        if unfragmented && self.compressed {
            return Ok(Some(Event::Compressed {
                text: header.opcode == OpCode::Text,
                payload,
            }));
        }
        if unfragmented {
            // The common case: one frame, one message, borrowed from the buffer.
            return Ok(Some(match header.opcode {
                OpCode::Text => {
                    Event::Text(utf8::validate(payload).map_err(|_| ProtocolError::InvalidUtf8)?)
                }
                _ => Event::Binary(payload),
            }));
        }
        let kind = self.data_kind(header.opcode);
        self.append_fragment(kind, payload)?;
        if header.fin {
            return self.finish_message(kind).map(Some);
        }
        Ok(None)
    }

    /// Takes the next bytes of a frame whose payload spans reads.
    fn continue_frame<'a>(
        &'a mut self,
        mut partial: PartialFrame,
        buf: &'a mut [u8],
    ) -> Result<(usize, Option<Event<'a>>), ProtocolError> {
        let n = partial.remaining.min(buf.len() as u64) as usize;
        let chunk = &mut buf[..n];
        if let Some(key) = partial.mask {
            mask::apply_mask(chunk, key, usize::from(partial.offset));
        }
        partial.offset = ((usize::from(partial.offset) + n) & 3) as u8;
        partial.remaining -= n as u64;
        let done = partial.remaining == 0;
        self.frame = if done { None } else { Some(partial) };
        if partial.opcode.is_control() {
            let stash = self.control.get_or_insert_with(|| {
                Box::new(ControlStash {
                    buf: [0; 125],
                    len: 0,
                })
            });
            let at = usize::from(stash.len);
            stash.buf[at..at + chunk.len()].copy_from_slice(chunk);
            stash.len += chunk.len() as u8;
            if !done {
                return Ok((n, None));
            }
            let event = self.control_event_from_stash(partial.opcode)?;
            return Ok((n, Some(event)));
        }
        let kind = self.data_kind(partial.opcode);
        self.append_fragment(kind, chunk)?;
        if done && partial.fin {
            return Ok((n, Some(self.finish_message(kind)?)));
        }
        Ok((n, None))
    }

    fn control_event_from_stash(&mut self, opcode: OpCode) -> Result<Event<'_>, ProtocolError> {
        let payload = self
            .control
            .as_ref()
            .map_or(&[][..], |c| &c.buf[..usize::from(c.len)]);
        control_event(opcode, payload, &mut self.close_received)
    }

    fn control_event<'a>(
        &'a mut self,
        opcode: OpCode,
        payload: &'a [u8],
    ) -> Result<Event<'a>, ProtocolError> {
        control_event(opcode, payload, &mut self.close_received)
    }

    /// Checks and stores the next piece of a split data message.
    fn append_fragment(&mut self, kind: DataKind, piece: &[u8]) -> Result<(), ProtocolError> {
        if kind == DataKind::Text && !self.compressed {
            self.utf8
                .feed(piece)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        self.message.extend_from_slice(piece);
        Ok(())
    }

    /// The last piece of a split message has arrived: hand out the whole message.
    fn finish_message(&mut self, kind: DataKind) -> Result<Event<'_>, ProtocolError> {
        self.fragmented = None;
        self.budget = 0;
        self.delivered_message = true;
        if std::mem::take(&mut self.compressed) {
            return Ok(Event::Compressed {
                text: kind == DataKind::Text,
                payload: &self.message,
            });
        }
        Ok(match kind {
            DataKind::Text => {
                self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                // Every piece was checked as it came; this second pass over the
                // assembled message yields the &str without unsafe code.
                Event::Text(utf8::validate(&self.message).map_err(|_| ProtocolError::InvalidUtf8)?)
            }
            DataKind::Binary => Event::Binary(&self.message),
        })
    }
}

/// Writes the server's header for a whole, uncompressed, masked data
/// message over the tail of its own header (`frame[..used]`, all of it
/// read from this buffer), if the server's frame is `frame_from` bytes or
/// more; returns where the server's frame starts.
fn reframe(
    header: &FrameHeader,
    used: usize,
    frame: &mut [u8],
    frame_from: usize,
) -> Option<usize> {
    let data = matches!(header.opcode, OpCode::Text | OpCode::Binary);
    if !data || !header.fin || header.rsv != 0 || header.mask.is_none() {
        return None;
    }
    if used != header.header_len {
        // Part of the header came in an earlier read.
        return None;
    }
    // The peer's header less its mask key: the server's, for the same length.
    let server_len = (used - 4) as u64 + header.payload_len;
    if server_len < frame_from as u64 {
        return None;
    }
    let server = frame::encode_header(true, 0, header.opcode, None, header.payload_len);
    let start = used.checked_sub(server.as_bytes().len())?;
    frame[start..used].copy_from_slice(server.as_bytes());
    Some(start)
}

/// The event of a complete control frame.
fn control_event<'a>(
    opcode: OpCode,
    payload: &'a [u8],
    close_received: &mut bool,
) -> Result<Event<'a>, ProtocolError> {
    Ok(match opcode {
        OpCode::Ping => Event::Ping(payload),
        OpCode::Pong => Event::Pong(payload),
        _ => {
            *close_received = true;
            Event::Close(parse_close_payload(payload)?)
        }
    })
}

mod closing;
pub use closing::{CloseHandshake, ClosePayload, parse_close_payload};

pub(crate) mod carry;

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
