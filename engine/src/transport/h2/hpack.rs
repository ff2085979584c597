//! HPACK (RFC 7541) for one server connection: loona-hpack's decoder under
//! our limits for the peer's header blocks, and a stateless encoder of our
//! own for responses.
//!
//! Decoding: every block must go through the decoder, even one we refuse,
//! because its dynamic-table updates are the connection's shared state
//! (RFC 9113 §4.3). The decoded fields are counted as RFC 9113 counts a
//! header list (name + value + 32 each); past SETTINGS_MAX_HEADER_LIST_SIZE
//! nothing more is stored (the table is still updated) and the block is
//! reported as too large. A block whose field count alone proves it too
//! large is refused before decoding, as a connection error: each field,
//! however small on the wire, costs the decoder work (a Huffman string
//! builds its decoding table), so decoding it anyway would let 16 KiB of
//! two-byte fields buy milliseconds of CPU.
//!
//! Encoding: indexed static-table fields, or literals *without indexing*
//! (indexed names where the static table has them), never Huffman. Nothing
//! enters the peer's decoder's dynamic table, so the blocks of different
//! streams can be sent in any order and the peer's SETTINGS_HEADER_TABLE_SIZE
//! never matters.

use loona_hpack::Decoder;

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

/// The peer's header blocks, decoded under our limits.
pub(crate) struct HeaderDecoder {
    inner: Decoder<'static>,
    max_list: usize,
}

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
        let mut inner = Decoder::new();
        inner.set_max_allowed_table_size(table_size as usize);
        Self {
            inner,
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
        let fields = count_fields(block).ok_or(H2Error::new(
            ErrorCode::COMPRESSION_ERROR,
            "HPACK block truncated",
        ))?;
        if fields.saturating_mul(32) > self.max_list.saturating_add(32 * 64) {
            return Err(H2Error::calm("header block of too many fields"));
        }
        if target == Target::Request {
            request.begin();
        }
        let mut size = 0usize;
        let mut outcome = Decoded::Ok;
        let max_list = self.max_list;
        let result = self.inner.decode_with_cb(block, |name, value| {
            size = size.saturating_add(name.len() + value.len() + 32);
            if size > max_list {
                outcome = Decoded::TooLarge;
            }
            if outcome != Decoded::Ok {
                return;
            }
            let checked = match target {
                Target::Request => request.push(&name, &value),
                Target::Trailers if name.starts_with(b":") => Err("pseudo-header in trailers"),
                Target::Trailers => check_regular(&name, &value),
                Target::Discard => Ok(()),
            };
            if let Err(why) = checked {
                outcome = Decoded::Malformed(why);
            }
        });
        if result.is_err() {
            return Err(H2Error::new(
                ErrorCode::COMPRESSION_ERROR,
                "HPACK decoding failed",
            ));
        }
        if outcome == Decoded::Ok && target == Target::Request {
            if let Err(why) = request.finish() {
                outcome = Decoded::Malformed(why);
            }
        }
        Ok(outcome)
    }
}

/// Reads an HPACK integer of an `n`-bit prefix at `at` (RFC 7541 §5.1);
/// returns it (saturated) and the position after it.
fn integer(block: &[u8], at: usize, n: u8) -> Option<(usize, usize)> {
    let mask = (1u16 << n) as u8 - 1;
    let first = *block.get(at)? & mask;
    if first < mask {
        return Some((usize::from(first), at + 1));
    }
    let mut value = usize::from(mask);
    let mut shift = 0u32;
    let mut i = at + 1;
    loop {
        let b = *block.get(i)?;
        i += 1;
        if shift < 35 {
            value = value.saturating_add(usize::from(b & 0x7f) << shift);
        }
        shift += 7;
        if b & 0x80 == 0 {
            return Some((value, i));
        }
    }
}

/// Position after a string literal at `at`.
fn skip_string(block: &[u8], at: usize) -> Option<usize> {
    let (len, at) = integer(block, at, 7)?;
    let end = at.checked_add(len)?;
    (end <= block.len()).then_some(end)
}

/// The number of fields a block represents, read from its structure alone
/// (no string decoded, no table looked up); None if it is cut short (the
/// decoder would refuse it too).
fn count_fields(block: &[u8]) -> Option<usize> {
    let mut at = 0;
    let mut fields = 0usize;
    while at < block.len() {
        let b = block[at];
        if b & 0x80 != 0 {
            at = integer(block, at, 7)?.1;
            fields += 1;
            continue;
        }
        if b & 0xe0 == 0x20 {
            at = integer(block, at, 5)?.1;
            continue;
        }
        let prefix = if b & 0x40 != 0 { 6 } else { 4 };
        let (index, after) = integer(block, at, prefix)?;
        at = if index == 0 {
            skip_string(block, after)?
        } else {
            after
        };
        at = skip_string(block, at)?;
        fields += 1;
    }
    Some(fields)
}

/// Names of the static table (RFC 7541 Appendix A) from index 15 on, where
/// each name appears once; `:status` (8) is handled on its own.
const STATIC_NAMES: [&str; 47] = [
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
];

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
        match STATIC_NAMES.iter().position(|&n| n == lower) {
            Some(i) => put_integer(out, 0x00, 4, i + 15),
            None => {
                out.push(0x00);
                put_string(out, lower.as_bytes());
            }
        }
        put_string(out, value.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip_through_the_walker() {
        for n in [4u8, 5, 6, 7] {
            for value in [
                0usize,
                1,
                14,
                15,
                30,
                31,
                62,
                63,
                126,
                127,
                128,
                1000,
                1 << 20,
            ] {
                let mut out = Vec::new();
                put_integer(&mut out, 0, n, value);
                assert_eq!(integer(&out, 0, n), Some((value, out.len())), "{n} {value}");
            }
        }
        // An integer cut short, or a string longer than the block.
        assert_eq!(integer(&[0x7f, 0x80], 0, 7), None);
        assert_eq!(count_fields(&[0x00, 0x05, b'a']), None);
    }

    #[test]
    fn the_walker_counts_what_the_decoder_decodes() {
        let mut encoder = loona_hpack::Encoder::new();
        let fields: Vec<(Vec<u8>, Vec<u8>)> = (0..40)
            .map(|i| {
                (
                    format!("x-field-{}", i % 7).into_bytes(),
                    format!("v{i}").into_bytes(),
                )
            })
            .collect();
        let mut block = vec![0x3f, 0xe1, 0x1f]; // a size update to 4096 first
        block.extend(encoder.encode(fields.iter().map(|(n, v)| (&n[..], &v[..]))));
        assert_eq!(count_fields(&block), Some(40));
        assert_eq!(Decoder::new().decode(&block).map(|l| l.len()), Ok(40));
    }
}
