//! A decoder in the middle of a frame or a message, as plain data another
//! process rebuilds it from (a live hand-over, `docs/HANDOVER.md`). The
//! decoder keeps no read buffer: what it has read of a split header, frame
//! or fragmented message lies in its own fields (the payload already
//! unmasked), so those fields are what travels, and the new process's
//! decoder goes on from the next byte of the socket exactly where the old
//! one stopped. A compressed message is inflated only once its last frame
//! is in, so its compressed bytes so far travel the same way.

use super::{ControlStash, DataKind, Decoder, DecoderConfig, PartialFrame};
use crate::proto::Role;
use crate::proto::frame::{self, HeaderStatus, MAX_HEADER_LEN, OpCode, RSV1};

/// The frame whose payload is still arriving: its header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CarriedFrame {
    pub opcode: u8,
    pub fin: bool,
    pub mask: Option<[u8; 4]>,
    /// Payload bytes still to come (more than zero).
    pub remaining: u64,
    /// Position in the payload modulo 4 (the mask key's rotation).
    pub offset: u8,
}

/// What a decoder holds between two reads, when it is not idle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CarriedDecoder {
    /// Bytes of a header cut by the end of a read (fewer than a header).
    pub header: Vec<u8>,
    pub frame: Option<CarriedFrame>,
    /// The fragmented message in progress: 0 none, 1 text, 2 binary.
    pub fragmented: u8,
    /// Bytes charged to the message in progress (its size limit's count).
    pub budget: u64,
    /// The message in progress is compressed (RSV1 on its first frame).
    pub compressed: bool,
    /// The message's payload so far (unmasked; compressed if it is).
    pub message: Vec<u8>,
    /// A control frame's payload so far (at most 125 bytes).
    pub control: Vec<u8>,
}

impl Decoder {
    /// The bytes [`Self::carry`] would carry: none when idle.
    pub(crate) fn partial_len(&self) -> usize {
        if self.is_idle() {
            return 0;
        }
        let in_message =
            self.fragmented.is_some() || self.frame.is_some_and(|f| !f.opcode.is_control());
        let message = if in_message { self.message.len() } else { 0 };
        let control = self.control.as_ref().map_or(0, |c| usize::from(c.len));
        usize::from(self.header_len) + message + control
    }

    /// Its state for another process; `None` when idle (nothing to carry)
    /// or after the peer's close (nothing more is read). Payloads it handed
    /// out earlier are dropped first: only what is still in progress goes.
    pub(crate) fn carry(&mut self) -> Option<CarriedDecoder> {
        self.clear_delivered();
        if self.is_idle() || self.close_received {
            return None;
        }
        // Between messages (a header cut, a control frame alone) the size
        // count and the compressed flag are what the last message left:
        // the next data frame resets them, so they do not travel.
        let in_message =
            self.fragmented.is_some() || self.frame.is_some_and(|f| !f.opcode.is_control());
        let control = match (&self.frame, &self.control) {
            (Some(f), Some(stash)) if f.opcode.is_control() => {
                stash.buf[..usize::from(stash.len)].to_vec()
            }
            _ => Vec::new(),
        };
        Some(CarriedDecoder {
            header: self.header[..usize::from(self.header_len)].to_vec(),
            frame: self.frame.map(|f| CarriedFrame {
                opcode: f.opcode as u8,
                fin: f.fin,
                mask: f.mask,
                remaining: f.remaining,
                offset: f.offset,
            }),
            fragmented: match self.fragmented {
                None => 0,
                Some(DataKind::Text) => 1,
                Some(DataKind::Binary) => 2,
            },
            budget: if in_message { self.budget as u64 } else { 0 },
            compressed: in_message && self.compressed,
            message: if in_message {
                self.message.clone()
            } else {
                Vec::new()
            },
            control,
        })
    }

    /// The decoder another process carried over, checked against this
    /// process's limits (`config`, the connection's own: RSV1 only where
    /// permessage-deflate was agreed). Every field is checked as the old
    /// decoder would have left it, and a text message's bytes so far are
    /// validated again (which also rebuilds the UTF-8 check's state): a
    /// state it could not have reached is refused with the reason.
    pub(crate) fn carried(
        c: &CarriedDecoder,
        config: &DecoderConfig,
    ) -> Result<Self, &'static str> {
        let fragmented = match c.fragmented {
            0 => None,
            1 => Some(DataKind::Text),
            2 => Some(DataKind::Binary),
            _ => return Err("fragmented message kind"),
        };
        let mut d = Decoder::new();
        if !c.header.is_empty() {
            // A header is cut only between frames, and only short of whole.
            if c.header.len() >= MAX_HEADER_LEN || c.frame.is_some() {
                return Err("partial frame header");
            }
            match frame::decode_header(&c.header, &config.rules) {
                Ok(HeaderStatus::Incomplete(_)) => {}
                _ => return Err("partial frame header"),
            }
            d.header[..c.header.len()].copy_from_slice(&c.header);
            d.header_len = c.header.len() as u8;
        }
        let budget = usize::try_from(c.budget).map_err(|_| "message size")?;
        if budget > config.max_message_size || c.message.len() > budget {
            return Err("message size over this process's limit");
        }
        let mut data_frame = None;
        if let Some(f) = c.frame {
            let opcode = OpCode::from_u8(f.opcode).map_err(|_| "frame opcode")?;
            if f.remaining == 0 || f.offset > 3 || (f.mask.is_none() && f.offset != 0) {
                return Err("partial frame");
            }
            // Masked from a client, unmasked from a server, as the old
            // decoder's rules let through (the new one unmasks by this).
            let masked = config.rules.role == Role::Server;
            if f.mask.is_some() != masked {
                return Err("partial frame's masking");
            }
            if opcode.is_control() {
                // Subtracted, not added: `remaining` is the record's u64.
                if !f.fin || c.control.len() > 125 || f.remaining > 125 - c.control.len() as u64 {
                    return Err("partial control frame");
                }
                let mut stash = ControlStash {
                    buf: [0; 125],
                    len: c.control.len() as u8,
                };
                stash.buf[..c.control.len()].copy_from_slice(&c.control);
                d.control = Some(Box::new(stash));
            } else {
                // Where the frame's opcode agrees with the message state: a
                // first frame starts a fragmented message unless it is
                // final; a continuation needs one.
                let agrees = match (opcode, fragmented) {
                    (OpCode::Continuation, kind) => kind.is_some(),
                    (_, None) => f.fin,
                    (OpCode::Text, Some(kind)) => !f.fin && kind == DataKind::Text,
                    (_, Some(kind)) => !f.fin && kind == DataKind::Binary,
                };
                // Its whole payload was charged when its header came.
                let charged = (c.message.len() as u64).saturating_add(f.remaining);
                if !agrees || charged > c.budget {
                    return Err("partial data frame");
                }
                data_frame = Some(opcode);
            }
            d.frame = Some(PartialFrame {
                opcode,
                fin: f.fin,
                mask: f.mask,
                remaining: f.remaining,
                offset: f.offset,
            });
        }
        if !c.control.is_empty() && d.control.is_none() {
            return Err("control payload without its frame");
        }
        let in_message = fragmented.is_some() || data_frame.is_some();
        if !in_message && (budget != 0 || !c.message.is_empty() || c.compressed) {
            return Err("message bytes without a message");
        }
        if c.compressed && config.rules.allowed_rsv & RSV1 == 0 {
            return Err("a compressed message without permessage-deflate");
        }
        d.fragmented = fragmented;
        d.budget = budget;
        d.compressed = c.compressed;
        let kind = match data_frame {
            Some(opcode) => Some(d.data_kind(opcode)),
            None => fragmented,
        };
        if kind == Some(DataKind::Text) && !c.compressed {
            // The old decoder checked these bytes as they came: a failure
            // here means the record is not what it wrote.
            d.utf8
                .feed(&c.message)
                .map_err(|_| "text message's UTF-8")?;
        }
        d.message = c.message.clone();
        if d.is_idle() {
            return Err("an idle decoder carried");
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Role;
    use crate::proto::message::Event;

    fn config() -> DecoderConfig {
        let mut c = DecoderConfig::new(Role::Server, 1 << 20);
        c.rules.allowed_rsv = RSV1;
        c
    }

    /// A masked client frame.
    fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        out
    }

    /// Feeds `bytes` and returns the events as owned values.
    fn feed(d: &mut Decoder, bytes: &[u8]) -> Vec<String> {
        let mut buf = bytes.to_vec();
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < buf.len() {
            let (used, event) = d.decode(&config(), &mut buf[pos..]).unwrap();
            pos += used;
            match event {
                Some(Event::Text(t)) => out.push(format!("text {t}")),
                Some(Event::Binary(b)) => out.push(format!("binary {}", b.len())),
                Some(Event::Ping(p)) => out.push(format!("ping {}", p.len())),
                Some(Event::Compressed { text, payload }) => {
                    out.push(format!("compressed {text} {payload:?}"))
                }
                Some(other) => out.push(format!("{other:?}")),
                None => {}
            }
        }
        out
    }

    /// Every cut of a stream of frames, carried at the cut and rebuilt,
    /// gives the events the uncut stream gives.
    #[test]
    fn a_decoder_carried_at_any_byte_goes_on_where_it_was() {
        let text = "héllo wörld, a text cut inside its code points".repeat(3);
        let mut stream = frame(false, false, 1, &text.as_bytes()[..50]);
        stream.extend(frame(true, false, 9, b"ping in between"));
        stream.extend(frame(true, false, 0, &text.as_bytes()[50..]));
        stream.extend(frame(true, false, 2, &[7; 300]));
        stream.extend(frame(true, true, 1, b"squeezed"));
        stream.extend(frame(false, true, 2, b"part one "));
        stream.extend(frame(true, false, 0, b"part two"));
        let whole = feed(&mut Decoder::new(), &stream);
        assert_eq!(whole.len(), 5);
        for cut in 0..stream.len() {
            let mut d = Decoder::new();
            let mut events = feed(&mut d, &stream[..cut]);
            let mut d = match d.carry() {
                None => {
                    assert!(d.is_idle(), "cut at {cut}");
                    Decoder::new()
                }
                Some(carried) => Decoder::carried(&carried, &config())
                    .unwrap_or_else(|e| panic!("cut at {cut}: {e}")),
            };
            events.extend(feed(&mut d, &stream[cut..]));
            assert_eq!(events, whole, "cut at {cut}");
        }
    }

    #[test]
    fn impossible_states_are_refused() {
        let mut d = Decoder::new();
        let bytes = frame(false, false, 1, "abcdé".as_bytes());
        feed(&mut d, &bytes[..bytes.len() - 1]);
        let good = d.carry().unwrap();
        assert!(Decoder::carried(&good, &config()).is_ok());
        let small = DecoderConfig::new(Role::Server, 4);
        assert!(Decoder::carried(&good, &small).is_err());
        let bad = |f: &dyn Fn(&mut CarriedDecoder)| {
            let mut c = good.clone();
            f(&mut c);
            Decoder::carried(&c, &config()).unwrap_err()
        };
        bad(&|c| c.fragmented = 3);
        bad(&|c| c.fragmented = 0);
        bad(&|c| c.message = vec![0xff]);
        bad(&|c| c.budget = 1);
        bad(&|c| c.frame.as_mut().unwrap().remaining = 0);
        bad(&|c| c.frame.as_mut().unwrap().offset = 4);
        bad(&|c| c.frame.as_mut().unwrap().opcode = 3);
        bad(&|c| c.frame.as_mut().unwrap().opcode = 2);
        bad(&|c| c.header = vec![0x81]);
        bad(&|c| c.control = vec![1]);
        // Unmasked from a client: the old decoder refuses such a frame.
        bad(&|c| {
            let f = c.frame.as_mut().unwrap();
            f.mask = None;
            f.offset = 0;
        });
        // A ping cut after one byte whose remaining length would wrap a
        // u64 sum past the 125-byte check (it panicked on the next read).
        let ping = frame(true, false, 9, b"ping!");
        let mut p = Decoder::new();
        feed(&mut p, &ping[..7]);
        let cut_ping = p.carry().unwrap();
        assert!(Decoder::carried(&cut_ping, &config()).is_ok());
        for remaining in [u64::MAX, u64::MAX - 1, 125] {
            let mut c = cut_ping.clone();
            c.frame.as_mut().unwrap().remaining = remaining;
            assert!(Decoder::carried(&c, &config()).is_err(), "{remaining}");
        }
        let plain = DecoderConfig::new(Role::Server, 1 << 20);
        let mut squeezed = good.clone();
        squeezed.compressed = true;
        assert!(Decoder::carried(&squeezed, &config()).is_ok());
        assert!(Decoder::carried(&squeezed, &plain).is_err());
        let idle = CarriedDecoder::default();
        assert!(Decoder::carried(&idle, &config()).is_err());
        // A header that is already whole is not a cut one.
        let header = CarriedDecoder {
            header: frame(true, false, 2, b"")[..6].to_vec(),
            ..CarriedDecoder::default()
        };
        assert!(Decoder::carried(&header, &config()).is_err());
    }
}
