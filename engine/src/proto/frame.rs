//! Frame headers (RFC 6455 section 5.2): decoded from `&[u8]` without copying,
//! encoded into a caller's buffer without allocating.

use super::Role;
use super::error::ProtocolError;
use super::mask;

/// The longest frame header: 2 bytes, a 64-bit length and a mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// Largest payload of a control frame (section 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// RSV1, as a bit in [`FrameHeader::rsv`] and [`DecodeRules::allowed_rsv`].
pub const RSV1: u8 = 0b100;
/// RSV2, as a bit in [`FrameHeader::rsv`].
pub const RSV2: u8 = 0b010;
/// RSV3, as a bit in [`FrameHeader::rsv`].
pub const RSV3: u8 = 0b001;

/// Frame opcodes defined by RFC 6455; the others are reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// Continues a fragmented message.
    Continuation = 0x0,
    /// Starts a text message (UTF-8).
    Text = 0x1,
    /// Starts a binary message.
    Binary = 0x2,
    /// Close control frame.
    Close = 0x8,
    /// Ping control frame.
    Ping = 0x9,
    /// Pong control frame.
    Pong = 0xA,
}

impl OpCode {
    /// Decodes the low nibble of the first header byte.
    pub fn from_u8(value: u8) -> Result<Self, ProtocolError> {
        Ok(match value {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }

    /// Close, ping and pong are control frames.
    #[inline]
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A decoded frame header. The payload follows `header_len` bytes after its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// RSV1-3 as the bits [`RSV1`], [`RSV2`], [`RSV3`].
    pub rsv: u8,
    /// What the frame carries.
    pub opcode: OpCode,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
    /// Length of the header itself, 2 to 14 bytes.
    pub header_len: usize,
}

/// What the decoder accepts: the role decides the masking rule, the extensions
/// decide which RSV bits may be set, and the limit bounds a single frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeRules {
    /// This endpoint's role: a server requires masked frames, a client unmasked ones.
    pub role: Role,
    /// RSV bits a negotiated extension gives a meaning (permessage-deflate: RSV1).
    pub allowed_rsv: u8,
    /// Largest payload of a single frame; longer frames fail with 1009 before any
    /// payload byte is read.
    pub max_frame_size: u64,
}

impl DecodeRules {
    /// Rules for `role` with no extension and the given frame size limit.
    pub const fn new(role: Role, max_frame_size: u64) -> Self {
        Self {
            role,
            allowed_rsv: 0,
            max_frame_size,
        }
    }
}

/// Outcome of decoding a header from a buffer that may hold only part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderStatus {
    /// The whole header was present.
    Complete(FrameHeader),
    /// The buffer holds a valid beginning; at least this many more bytes are needed.
    Incomplete(usize),
}

/// Decodes a frame header from the start of `buf`.
///
/// Checks everything the first two bytes can tell as soon as they are present
/// (opcode, RSV bits, mask bit, control frame rules), so a bad frame fails before
/// its extended length arrives.
#[inline]
pub fn decode_header(buf: &[u8], rules: &DecodeRules) -> Result<HeaderStatus, ProtocolError> {
    let [b0, b1, ..] = *buf else {
        return Ok(HeaderStatus::Incomplete(2 - buf.len()));
    };
    let fin = b0 & 0x80 != 0;
    let rsv = (b0 >> 4) & 0b111;
    let opcode = OpCode::from_u8(b0 & 0x0f)?;
    if rsv & !rules.allowed_rsv != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    let masked = b1 & 0x80 != 0;
    match (rules.role, masked) {
        (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
        (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
        _ => {}
    }
    let len7 = b1 & 0x7f;
    if opcode.is_control() {
        if !fin {
            return Err(ProtocolError::FragmentedControlFrame);
        }
        if usize::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(ProtocolError::ControlFrameTooLong);
        }
    }
    let len_bytes = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header_len = 2 + len_bytes + if masked { 4 } else { 0 };
    if buf.len() < header_len {
        // The 64-bit length's top bit is in byte 2: reject it as soon as it is seen.
        if len7 == 127 && buf.len() > 2 && buf[2] & 0x80 != 0 {
            return Err(ProtocolError::InvalidLength);
        }
        return Ok(HeaderStatus::Incomplete(header_len - buf.len()));
    }
    let payload_len = match len7 {
        126 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
        127 => {
            let len = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes checked above"));
            if len >> 63 != 0 {
                return Err(ProtocolError::InvalidLength);
            }
            len
        }
        short => u64::from(short),
    };
    if payload_len > rules.max_frame_size {
        return Err(ProtocolError::FrameTooBig);
    }
    let mask = masked.then(|| {
        let at = 2 + len_bytes;
        [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
    });
    Ok(HeaderStatus::Complete(FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        payload_len,
        header_len,
    }))
}

/// An encoded frame header: up to [`MAX_HEADER_LEN`] bytes, on the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedHeader {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl EncodedHeader {
    /// The header bytes, ready for a write or an iovec.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl AsRef<[u8]> for EncodedHeader {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Encodes a frame header with the shortest length encoding.
///
/// `rsv` holds the bits [`RSV1`], [`RSV2`], [`RSV3`]. A client passes a mask key;
/// a server passes `None`.
#[inline]
pub fn encode_header(
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload_len: u64,
) -> EncodedHeader {
    let mut bytes = [0u8; MAX_HEADER_LEN];
    bytes[0] = (u8::from(fin) << 7) | ((rsv & 0b111) << 4) | opcode as u8;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut len = 2;
    if payload_len < 126 {
        bytes[1] = mask_bit | payload_len as u8;
    } else if payload_len <= u64::from(u16::MAX) {
        bytes[1] = mask_bit | 126;
        bytes[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        len = 4;
    } else {
        bytes[1] = mask_bit | 127;
        bytes[2..10].copy_from_slice(&payload_len.to_be_bytes());
        len = 10;
    }
    if let Some(key) = mask {
        bytes[len..len + 4].copy_from_slice(&key);
        len += 4;
    }
    EncodedHeader {
        bytes,
        len: len as u8,
    }
}

/// Appends a whole frame to `out`: header, then the payload, masked with `mask`
/// if given (client role). One copy of the payload, no other allocation than
/// `out`'s own growth.
pub fn write_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: OpCode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let header = encode_header(fin, 0, opcode, mask, payload.len() as u64);
    out.reserve(header.as_bytes().len() + payload.len());
    out.extend_from_slice(header.as_bytes());
    match mask {
        None => out.extend_from_slice(payload),
        Some(key) => {
            let start = out.len();
            out.resize(start + payload.len(), 0);
            mask::mask_into(&mut out[start..], payload, key);
        }
    }
}

/// Mask keys for the client role, drawn from the OS's secure random source in
/// batches (RFC 6455 section 10.3 wants them unpredictable), so a key costs no
/// system call.
#[derive(Debug)]
pub struct MaskKeys {
    pool: [u8; 256],
    next: usize,
}

impl Default for MaskKeys {
    fn default() -> Self {
        Self::new()
    }
}

impl MaskKeys {
    /// A generator whose first key triggers the first refill.
    pub fn new() -> Self {
        Self {
            pool: [0; 256],
            next: 256,
        }
    }

    /// The next mask key.
    pub fn next_key(&mut self) -> [u8; 4] {
        if self.next == self.pool.len() {
            // getrandom fails only where the OS has no random source at all; a client
            // cannot run there, so this is an environment failure, not peer input.
            getrandom::fill(&mut self.pool).expect("OS random source unavailable");
            self.next = 0;
        }
        let key = self.pool[self.next..self.next + 4]
            .try_into()
            .expect("4 bytes");
        self.next += 4;
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: DecodeRules = DecodeRules::new(Role::Server, 1 << 24);
    const CLIENT: DecodeRules = DecodeRules::new(Role::Client, 1 << 24);

    fn complete(buf: &[u8], rules: &DecodeRules) -> FrameHeader {
        match decode_header(buf, rules) {
            Ok(HeaderStatus::Complete(h)) => h,
            other => panic!("expected a complete header, got {other:?}"),
        }
    }

    #[test]
    fn rfc_examples_decode() {
        // Section 5.7: unmasked "Hello" from a server; masked "Hello" from a client.
        let h = complete(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], &CLIENT);
        assert_eq!(
            (h.fin, h.opcode, h.payload_len, h.header_len),
            (true, OpCode::Text, 5, 2)
        );
        assert_eq!(h.mask, None);
        let h = complete(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f], &SERVER);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(h.header_len, 6);
        // A first fragment, unmasked.
        let h = complete(&[0x01, 0x03], &CLIENT);
        assert!(!h.fin);
        // 256-byte and 64 KiB binary frames use the 16- and 64-bit lengths.
        let h = complete(&[0x82, 0x7e, 0x01, 0x00], &CLIENT);
        assert_eq!((h.payload_len, h.header_len), (256, 4));
        let h = complete(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0], &CLIENT);
        assert_eq!((h.payload_len, h.header_len), (65536, 10));
    }

    #[test]
    fn partial_header_reports_missing_bytes() {
        let full = encode_header(true, 0, OpCode::Binary, Some([1, 2, 3, 4]), 70_000);
        let bytes = full.as_bytes();
        assert_eq!(bytes.len(), 14);
        for cut in 0..bytes.len() {
            match decode_header(&bytes[..cut], &SERVER).unwrap() {
                HeaderStatus::Incomplete(n) => assert!(n >= 1 && cut + n <= 14, "cut {cut}: {n}"),
                HeaderStatus::Complete(_) => panic!("complete at {cut}"),
            }
        }
        assert_eq!(decode_header(&[], &SERVER), Ok(HeaderStatus::Incomplete(2)));
        assert_eq!(
            decode_header(&bytes[..2], &SERVER),
            Ok(HeaderStatus::Incomplete(12))
        );
        assert_eq!(complete(bytes, &SERVER).payload_len, 70_000);
    }

    #[test]
    fn reserved_opcodes_rejected() {
        for op in (0x3..=0x7).chain(0xb..=0xf) {
            assert_eq!(
                decode_header(&[0x80 | op, 0x80], &SERVER),
                Err(ProtocolError::ReservedOpcode(op))
            );
        }
    }

    #[test]
    fn rsv_bits_need_an_extension() {
        for rsv in [RSV1, RSV2, RSV3] {
            let b0 = 0x81 | (rsv << 4);
            assert_eq!(
                decode_header(&[b0, 0x80], &SERVER),
                Err(ProtocolError::ReservedBits)
            );
        }
        let deflate = DecodeRules {
            allowed_rsv: RSV1,
            ..SERVER
        };
        let h = decode_header(&[0xc1, 0x80, 0, 0, 0, 0], &deflate).unwrap();
        assert!(matches!(
            h,
            HeaderStatus::Complete(FrameHeader { rsv: RSV1, .. })
        ));
        assert_eq!(
            decode_header(&[0xa1, 0x80], &deflate),
            Err(ProtocolError::ReservedBits)
        );
    }

    #[test]
    fn masking_rule_depends_on_role() {
        assert_eq!(
            decode_header(&[0x81, 0x00], &SERVER),
            Err(ProtocolError::UnmaskedFrame)
        );
        assert_eq!(
            decode_header(&[0x81, 0x80, 1, 2, 3, 4], &CLIENT),
            Err(ProtocolError::MaskedFrame)
        );
    }

    #[test]
    fn control_frame_rules() {
        for op in [0x8, 0x9, 0xa] {
            // Not FIN.
            assert_eq!(
                decode_header(&[op, 0x80], &SERVER),
                Err(ProtocolError::FragmentedControlFrame)
            );
            // 126 and 127 length markers mean a payload over 125 bytes.
            for len7 in [126, 127] {
                assert_eq!(
                    decode_header(&[0x80 | op, 0x80 | len7], &SERVER),
                    Err(ProtocolError::ControlFrameTooLong)
                );
            }
            let h = complete(&[0x80 | op, 0x80 | 125, 0, 0, 0, 0], &SERVER);
            assert_eq!(h.payload_len, 125);
        }
    }

    #[test]
    fn length_with_top_bit_rejected_early() {
        let mut buf = [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        // Rejected from the first length byte on, before the rest arrives.
        for cut in 3..=buf.len() {
            assert_eq!(
                decode_header(&buf[..cut], &SERVER),
                Err(ProtocolError::InvalidLength)
            );
        }
        buf[2] = 0x7f;
        let rules = DecodeRules::new(Role::Server, u64::MAX);
        assert!(matches!(
            decode_header(&buf, &rules),
            Ok(HeaderStatus::Complete(_))
        ));
    }

    #[test]
    fn frame_over_limit_rejected_before_payload() {
        let rules = DecodeRules::new(Role::Server, 1000);
        let header = encode_header(true, 0, OpCode::Binary, Some([0; 4]), 1001);
        assert_eq!(
            decode_header(header.as_bytes(), &rules),
            Err(ProtocolError::FrameTooBig)
        );
        let header = encode_header(true, 0, OpCode::Binary, Some([0; 4]), 1000);
        assert!(matches!(
            decode_header(header.as_bytes(), &rules),
            Ok(HeaderStatus::Complete(_))
        ));
    }

    #[test]
    fn encode_decode_round_trip_at_length_boundaries() {
        for len in [0u64, 1, 125, 126, 127, 65535, 65536, 1 << 32, (1 << 63) - 1] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let rules = if mask.is_some() { SERVER } else { CLIENT };
                let rules = DecodeRules {
                    max_frame_size: u64::MAX,
                    ..rules
                };
                let enc = encode_header(false, RSV1, OpCode::Binary, mask, len);
                let rules = DecodeRules {
                    allowed_rsv: RSV1,
                    ..rules
                };
                let h = complete(enc.as_bytes(), &rules);
                assert_eq!(
                    (h.fin, h.rsv, h.opcode, h.mask, h.payload_len),
                    (false, RSV1, OpCode::Binary, mask, len)
                );
                assert_eq!(h.header_len, enc.as_bytes().len());
                let expected_len = match len {
                    0..=125 => 2,
                    126..=65535 => 4,
                    _ => 10,
                } + if mask.is_some() { 4 } else { 0 };
                assert_eq!(h.header_len, expected_len, "shortest encoding for {len}");
            }
        }
    }

    #[test]
    fn write_frame_masks_for_clients() {
        let mut out = Vec::new();
        write_frame(
            &mut out,
            true,
            OpCode::Text,
            b"Hello",
            Some([0x37, 0xfa, 0x21, 0x3d]),
        );
        assert_eq!(
            out,
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
        out.clear();
        write_frame(&mut out, true, OpCode::Text, b"Hello", None);
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn mask_keys_vary() {
        let mut keys = MaskKeys::new();
        let drawn: Vec<[u8; 4]> = (0..200).map(|_| keys.next_key()).collect();
        let distinct: std::collections::HashSet<_> = drawn.iter().collect();
        // 200 random 32-bit keys: a collision is a 1-in-200,000 event.
        assert!(distinct.len() >= 199);
    }
}
