//! HPACK (RFC 7541) for one server connection: our decoder (`decoder`,
//! `table`, `huffman`) under our limits for the peer's header blocks, and a
//! stateless encoder for responses.
//!
//! Decoding: every block must go through the decoder, even one we refuse,
//! because its dynamic-table updates are the connection's shared state
//! (RFC 9113 §4.3). The decoded fields are counted as RFC 9113 counts a
//! header list (name + value + 32 each); past SETTINGS_MAX_HEADER_LIST_SIZE
//! nothing more is stored (the table is still updated) and the block is
//! reported as too large. Decoding costs time linear in the block's bytes,
//! with one exception bounded here: a two-byte literal can name a dynamic
//! entry of up to the table's size, which is then copied into the table
//! again. So a block of more fields than a header list of the allowed size
//! could hold (each counts at least 32), with some slack, is refused as a
//! connection error (ENHANCE_YOUR_CALM) when decoding reaches that field.
//!
//! Encoding: indexed static-table fields, or literals *without indexing*
//! (indexed names where the static table has them), never Huffman. Nothing
//! enters the peer's decoder's dynamic table, so the blocks of different
//! streams can be sent in any order and the peer's SETTINGS_HEADER_TABLE_SIZE
//! never matters.

pub(crate) mod decoder;
pub(crate) mod huffman;
pub(crate) mod table;
#[cfg(test)]
mod tests;

use self::decoder::Decoder;
use self::table::STATIC;
use super::frame::{ErrorCode, H2Error};
use super::request::{
    CONNECTION_SPECIFIC, Malformed, Request, check_regular, valid_name, valid_value,
};

/// What a decoded block is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A new stream's request: fields stored and validated.
    Request,
    /// Trailers: validated (no pseudo-header), not kept.
    Trailers,
    /// A block we refuse or ignore anyway: decoded for the table only.
    Discard,
}

/// What decoding a block gave, when HPACK itself was fine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoded {
    Ok,
    Malformed(Malformed),
    /// Larger than SETTINGS_MAX_HEADER_LIST_SIZE.
    TooLarge,
}

/// Fields a block may have beyond what a header list of the allowed size
/// holds: room for a list of small fields that the peer counts loosely.
const SLACK_FIELDS: usize = 64;

/// The peer's header blocks, decoded under our limits.
pub(crate) struct HeaderDecoder {
    inner: Decoder,
    max_list: usize,
}

/// The table's contents are the peer's fields (cookies, credentials): kept
/// out of debug output.
impl std::fmt::Debug for HeaderDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderDecoder")
            .field("max_list", &self.max_list)
            .finish_non_exhaustive()
    }
}

impl HeaderDecoder {
    /// `table_size`: our SETTINGS_HEADER_TABLE_SIZE, the most the peer may
    /// make the dynamic table (a size update above it: COMPRESSION_ERROR).
    /// The table starts at the protocol's 4,096 as RFC 7541 §4.2 has it (a
    /// peer that has seen a smaller setting signals the change itself).
    pub(crate) fn new(table_size: u32, max_list: u32) -> Self {
        Self {
            inner: Decoder::new(table_size as usize),
            max_list: max_list as usize,
        }
    }

    /// Decodes one complete block into `request` (for [`Target::Request`]).
    /// Err: an HPACK error (COMPRESSION_ERROR), or too many fields to decode
    /// (ENHANCE_YOUR_CALM, see the module's comment); the connection ends.
    pub(crate) fn decode(
        &mut self,
        block: &[u8],
        target: Target,
        request: &mut Request,
    ) -> Result<Decoded, H2Error> {
        if target == Target::Request {
            request.begin();
        }
        let max_fields = self.max_list / 32 + SLACK_FIELDS;
        let mut fields = 0usize;
        let mut size = 0usize;
        let mut outcome = Decoded::Ok;
        let max_list = self.max_list;
        let finished = self
            .inner
            .decode(block, |name, value| {
                fields += 1;
                if fields > max_fields {
                    return false;
                }
                size = size.saturating_add(name.len() + value.len() + 32);
                if size > max_list {
                    outcome = Decoded::TooLarge;
                }
                if outcome != Decoded::Ok {
                    return true;
                }
                let checked = match target {
                    Target::Request => request.push(name, value),
                    Target::Trailers if name.starts_with(b":") => Err("pseudo-header in trailers"),
                    Target::Trailers => check_regular(name, value),
                    Target::Discard => Ok(()),
                };
                if let Err(why) = checked {
                    outcome = Decoded::Malformed(why);
                }
                true
            })
            .map_err(|why| H2Error::new(ErrorCode::COMPRESSION_ERROR, why))?;
        if !finished {
            return Err(H2Error::calm("header block of too many fields"));
        }
        if outcome == Decoded::Ok && target == Target::Request {
            if let Err(why) = request.finish() {
                outcome = Decoded::Malformed(why);
            }
        }
        Ok(outcome)
    }
}

/// Appends an HPACK integer with an `n`-bit prefix whose other bits are
/// `high` (RFC 7541 §5.1).
fn put_integer(out: &mut Vec<u8>, high: u8, n: u8, mut value: usize) {
    let mask = ((1u16 << n) - 1) as usize;
    if value < mask {
        out.push(high | value as u8);
        return;
    }
    out.push(high | mask as u8);
    value -= mask;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a string literal, raw (no Huffman).
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    put_integer(out, 0, 7, bytes.len());
    out.extend_from_slice(bytes);
}

/// Encodes a response block into `out`: `:status` then `headers`, names
/// lowercased; fields HTTP/2 forbids (connection-specific ones, names that
/// are not tokens, values with CR, LF or NUL or surrounding blanks) are
/// dropped rather than sent malformed. A status outside 100..=999 is sent
/// as 500.
pub(crate) fn encode_response(out: &mut Vec<u8>, status: u16, headers: &[(&str, &str)]) {
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    match status {
        200 => out.push(0x80 | 8),
        204 => out.push(0x80 | 9),
        206 => out.push(0x80 | 10),
        304 => out.push(0x80 | 11),
        400 => out.push(0x80 | 12),
        404 => out.push(0x80 | 13),
        500 => out.push(0x80 | 14),
        _ => {
            // Literal without indexing, name index 8 (`:status`).
            put_integer(out, 0x00, 4, 8);
            let digits = [
                b'0' + (status / 100) as u8,
                b'0' + (status / 10 % 10) as u8,
                b'0' + (status % 10) as u8,
            ];
            put_string(out, &digits);
        }
    }
    for &(name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if !valid_name(lower.as_bytes())
            || !valid_value(value.as_bytes())
            || CONNECTION_SPECIFIC.contains(&lower.as_str())
        {
            continue;
        }
        // From index 15 on, each name appears once in the static table.
        match STATIC[14..].iter().position(|&(n, _)| n == lower) {
            Some(i) => put_integer(out, 0x00, 4, i + 15),
            None => {
                out.push(0x00);
                put_string(out, lower.as_bytes());
            }
        }
        put_string(out, value.as_bytes());
    }
}
