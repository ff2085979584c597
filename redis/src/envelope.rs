//! What goes into a Redis message: a small header (format version, text or
//! binary, the publishing node's id) and the payload as it is, so any bytes
//! pass. The node id lets a node skip its own messages when Redis hands them
//! back.

use ringws::Message;
use ringws::proto::frame::OpCode;

/// The first byte of every envelope: the format and its version.
const MAGIC: u8 = 0xB1;
const TEXT: u8 = 1;
const BINARY: u8 = 2;
/// Magic, kind, node id.
pub(crate) const HEADER_LEN: usize = 2 + 8;

/// Writes the envelope of a message from `node` into `out` (cleared first).
pub(crate) fn encode(node: u64, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(HEADER_LEN + payload.len());
    out.push(MAGIC);
    out.push(if opcode == OpCode::Text { TEXT } else { BINARY });
    out.extend_from_slice(&node.to_be_bytes());
    out.extend_from_slice(payload);
}

/// A decoded envelope, borrowing the Redis payload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Envelope<'a> {
    pub node: u64,
    pub message: Message<'a>,
}

/// Why a Redis message on one of our channels was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Malformed {
    #[error("shorter than the envelope header")]
    Short,
    #[error("not a ringws envelope (or another version)")]
    Magic,
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("a text message that is not UTF-8")]
    Utf8,
    #[error("larger than the bridge's max_message_size")]
    TooLarge,
}

/// Reads an envelope; text must be valid UTF-8, since it goes to clients as a
/// text frame.
pub(crate) fn decode(bytes: &[u8]) -> Result<Envelope<'_>, Malformed> {
    if bytes.len() < HEADER_LEN {
        return Err(Malformed::Short);
    }
    if bytes[0] != MAGIC {
        return Err(Malformed::Magic);
    }
    let node = u64::from_be_bytes(bytes[2..HEADER_LEN].try_into().expect("8 bytes"));
    let payload = &bytes[HEADER_LEN..];
    let message = match bytes[1] {
        TEXT => Message::Text(std::str::from_utf8(payload).map_err(|_| Malformed::Utf8)?),
        BINARY => Message::Binary(payload),
        other => return Err(Malformed::Kind(other)),
    };
    Ok(Envelope { node, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_binary_safe() {
        let mut out = Vec::new();
        let payload: Vec<u8> = (0..=255).collect();
        encode(0xDEAD_BEEF_0000_0001, OpCode::Binary, &payload, &mut out);
        assert_eq!(out.len(), HEADER_LEN + 256);
        assert_eq!(
            decode(&out),
            Ok(Envelope {
                node: 0xDEAD_BEEF_0000_0001,
                message: Message::Binary(&payload)
            })
        );
        encode(7, OpCode::Text, "héllo\r\n\0".as_bytes(), &mut out);
        assert_eq!(
            decode(&out),
            Ok(Envelope {
                node: 7,
                message: Message::Text("héllo\r\n\0")
            })
        );
        encode(7, OpCode::Text, b"", &mut out);
        assert_eq!(decode(&out).unwrap().message, Message::Text(""));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert_eq!(decode(b""), Err(Malformed::Short));
        assert_eq!(decode(b"hello world!"), Err(Malformed::Magic));
        let mut out = Vec::new();
        encode(1, OpCode::Text, &[0xFF, 0xFE], &mut out);
        assert_eq!(decode(&out), Err(Malformed::Utf8));
        out[1] = 9;
        assert_eq!(decode(&out), Err(Malformed::Kind(9)));
    }
}
