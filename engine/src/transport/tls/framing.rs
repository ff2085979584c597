//! Records as bytes on the wire, before any session reads them: where a
//! buffer's records end, how much of a cut one is missing, whether a header
//! announces more than any record may hold, and a held ClientHello's records
//! compacted into one. Pure functions over byte slices.

use super::records::{HEADER, MAX_FRAGMENT};

/// Largest record body a peer may send (TLS 1.2 allows 2 KiB of expansion over
/// the 16 KiB of plaintext).
pub(crate) const MAX_BODY: usize = (16 << 10) + 2048;
/// Most bytes held for a connection waiting for its handshake to start: a
/// ClientHello (a few hundred bytes; ~1.8 KiB with a post-quantum key share).
pub(crate) const HOLD_MAX: usize = 4 << 10;
/// Most bytes kept across reads: a handshake message may span records (rustls
/// joins them in the buffer), up to 64 KiB, plus one record.
pub(crate) const MAX_STASH: usize = (64 << 10) + HEADER + MAX_BODY;

/// How the bytes of `buf` split into records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Records {
    /// They end on a record boundary.
    Whole,
    /// The last record lacks this many bytes (of its header, or of its body
    /// once the header is complete).
    Partial(usize),
    /// A header announces more than any record may hold: the session refuses
    /// it (with `record_overflow`) once it sees the header.
    Oversized,
}

pub(crate) fn walk(buf: &[u8]) -> Records {
    let mut pos = 0;
    while pos < buf.len() {
        let rest = buf.len() - pos;
        if rest < HEADER {
            return Records::Partial(HEADER - rest);
        }
        let body = usize::from(u16::from_be_bytes([buf[pos + 3], buf[pos + 4]]));
        if body > MAX_BODY {
            return Records::Oversized;
        }
        if rest < HEADER + body {
            return Records::Partial(HEADER + body - rest);
        }
        pos += HEADER + body;
    }
    Records::Whole
}

/// Whether the records of `buf` come to a header that announces more than
/// any record may hold.
pub(crate) fn oversized(buf: &[u8]) -> bool {
    walk(buf) == Records::Oversized
}

/// Appends to `stash` from `data` until the records after its first `fed`
/// bytes end on a record boundary with at least one more record (or come to
/// an oversized header, for the session to refuse): the bytes taken, and
/// whether it got there (false: `data` ran out first).
pub(crate) fn top_up(stash: &mut Vec<u8>, fed: usize, data: &[u8]) -> (usize, bool) {
    let mut taken = 0;
    loop {
        let missing = match walk(&stash[fed..]) {
            Records::Oversized => return (taken, true),
            Records::Whole if taken > 0 => return (taken, true),
            // Every record of the stash is complete but rustls wants more (a
            // handshake message spanning records): take the next record.
            Records::Whole => HEADER,
            Records::Partial(missing) => missing,
        };
        // Room for the rest of the record at once (a stash made for a cut
        // header would otherwise grow by doubling up to twice the record).
        stash.reserve_exact(missing);
        let take = missing.min(data.len() - taken);
        stash.extend_from_slice(&data[taken..taken + take]);
        taken += take;
        if take < missing || stash.len() > MAX_STASH {
            return (taken, false);
        }
    }
}

/// The end of the records rustls may have next, from `from` in `buf`: the
/// next whole record (`one`), or every whole record; `from` if none is whole.
pub(crate) fn next_limit(buf: &[u8], from: usize, one: bool) -> usize {
    let mut end = from;
    while let Some(len) = whole_record_len(&buf[end..]) {
        end += len;
        if one {
            break;
        }
    }
    end
}

/// The length of the record `buf` starts with if it is all there.
pub(crate) fn whole_record_len(buf: &[u8]) -> Option<usize> {
    match buf {
        [_, _, _, a, b, ..] => {
            let len = HEADER + usize::from(u16::from_be_bytes([*a, *b]));
            (len - HEADER <= MAX_BODY && buf.len() >= len).then_some(len)
        }
        _ => None,
    }
}

/// The length of the record `buf` starts with, header included, once its
/// header is there (0 before).
pub(crate) fn first_record_len(buf: &[u8]) -> usize {
    match buf {
        [_, _, _, a, b, ..] => HEADER + usize::from(u16::from_be_bytes([*a, *b])).min(MAX_BODY),
        _ => 0,
    }
}

/// Whether `data` may start a TLS handshake: a handshake record, version 3.x,
/// as far as the bytes go.
pub(crate) fn starts_like_a_handshake(data: &[u8]) -> bool {
    data.first() == Some(&super::records::HANDSHAKE) && data.get(1).is_none_or(|&major| major == 3)
}

/// Handshake records held before their handshake may start, compacted: the
/// payloads of the whole records of `held` joined into its first record,
/// then the bytes of a record still cut. `None` if they are not handshake
/// records (type, version, a length from 1 to 2^14: RFC 8446 §5.1 allows no
/// empty handshake fragment) or their payloads would pass [`HOLD_MAX`].
pub(crate) fn compact_handshake(held: &[u8]) -> Option<Vec<u8>> {
    fn header_ok(header: &[u8]) -> bool {
        starts_like_a_handshake(header)
            && match header {
                [_, _, _, a, b, ..] => {
                    let len = usize::from(u16::from_be_bytes([*a, *b]));
                    (1..=MAX_FRAGMENT).contains(&len)
                }
                _ => true,
            }
    }
    // The whole records joined: the first one's header, then every payload.
    let mut joined: Vec<u8> = Vec::with_capacity(held.len().min(HEADER + HOLD_MAX));
    let mut pos = 0;
    while pos < held.len() {
        let rest = &held[pos..];
        if !header_ok(rest) {
            return None;
        }
        let announced = first_record_len(rest).saturating_sub(HEADER);
        if joined.len().saturating_sub(HEADER) + announced > HOLD_MAX {
            return None;
        }
        let Some(len) = whole_record_len(rest) else {
            // A record still cut: kept as it came, after the joined one.
            let mut out = announce_length(joined);
            out.extend_from_slice(rest);
            return Some(out);
        };
        if joined.is_empty() {
            joined.extend_from_slice(&rest[..HEADER]);
        }
        joined.extend_from_slice(&rest[HEADER..len]);
        pos += len;
    }
    Some(announce_length(joined))
}

/// The header of the record `joined` announces what follows it.
pub(crate) fn announce_length(mut joined: Vec<u8>) -> Vec<u8> {
    if let Some(len) = joined.len().checked_sub(HEADER) {
        // At most HOLD_MAX: fits 16 bits.
        joined[3..HEADER].copy_from_slice(&(len as u16).to_be_bytes());
    }
    joined
}
