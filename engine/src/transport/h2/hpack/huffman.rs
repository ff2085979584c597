//! HPACK's Huffman code (RFC 7541 §5.2, Appendix B), decoding only (our
//! encoder sends raw strings).
//!
//! The code is canonical: a symbol's code follows from the code lengths alone
//! (codes of one length are consecutive, in symbol order, and each length's
//! first code follows the previous length's last), so the tables are derived
//! at compile time from [`CODE_LENGTHS`] (checked in the tests against the
//! spec's (code, length) pairs). Decoding reads 9 bits at a time through a
//! 512-entry table that answers every code of up to 9 bits (the symbols of
//! nearly all header text), and the rarer longer codes by their length's
//! canonical range. Each symbol costs a lookup, so a string costs time linear
//! in its length and no allocation beyond the caller's buffer.

/// The length in bits of each symbol's code (RFC 7541 Appendix B), symbol
/// 256 being EOS.
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

/// EOS (RFC 7541 §5.2): never a valid symbol of a string.
const EOS: u16 = 256;
/// The longest code.
const MAX_LENGTH: usize = 30;
/// Bits answered by the first lookup.
const SHORT_BITS: u32 = 9;

/// The canonical code by length: the first code of each length, how many
/// codes have it, and where its symbols start in `symbols` (symbols sorted by
/// code length, then value).
struct Canonical {
    first: [u32; MAX_LENGTH + 1],
    count: [u32; MAX_LENGTH + 1],
    offset: [u32; MAX_LENGTH + 1],
    symbols: [u16; 257],
}

const fn canonical() -> Canonical {
    let mut count = [0u32; MAX_LENGTH + 1];
    let mut s = 0;
    while s < 257 {
        count[CODE_LENGTHS[s] as usize] += 1;
        s += 1;
    }
    let mut first = [0u32; MAX_LENGTH + 1];
    let mut offset = [0u32; MAX_LENGTH + 1];
    let mut symbols = [0u16; 257];
    let mut code = 0u32;
    let mut placed = 0u32;
    let mut len = 1;
    while len <= MAX_LENGTH {
        first[len] = code;
        offset[len] = placed;
        let mut s = 0;
        while s < 257 {
            if CODE_LENGTHS[s] as usize == len {
                symbols[placed as usize] = s as u16;
                placed += 1;
            }
            s += 1;
        }
        code = (code + count[len]) << 1;
        len += 1;
    }
    // A complete code: the last code of length 30 is all ones.
    assert!(code == 1 << (MAX_LENGTH + 1));
    Canonical {
        first,
        count,
        offset,
        symbols,
    }
}

const CANONICAL: Canonical = canonical();

/// For each 9-bit window: `length << 8 | symbol` when a code of up to 9 bits
/// begins it, else 0 (a longer code).
const SHORT: [u16; 1 << SHORT_BITS] = short_table();

const fn short_table() -> [u16; 1 << SHORT_BITS] {
    let mut table = [0u16; 1 << SHORT_BITS];
    let mut len = 1;
    while len <= SHORT_BITS as usize {
        let mut i = 0;
        while i < CANONICAL.count[len] {
            let symbol = CANONICAL.symbols[(CANONICAL.offset[len] + i) as usize];
            let code = CANONICAL.first[len] + i;
            let spread = 1u32 << (SHORT_BITS as usize - len);
            let mut j = 0;
            while j < spread {
                table[((code << (SHORT_BITS as usize - len)) + j) as usize] =
                    ((len as u16) << 8) | symbol;
                j += 1;
            }
            i += 1;
        }
        len += 1;
    }
    table
}

/// The code of `symbol`, for the tests' encoder, the benches' client
/// (`crate::h2_bench`) and the check against the spec: (code, length in
/// bits). A search, not for a hot path.
pub(crate) fn code(symbol: u16) -> (u32, u8) {
    let len = CODE_LENGTHS[symbol as usize];
    let c = &CANONICAL;
    let start = c.offset[len as usize] as usize;
    let count = c.count[len as usize] as usize;
    let rank = c.symbols[start..start + count]
        .iter()
        .position(|&s| s == symbol)
        .expect("every symbol has a code");
    (c.first[len as usize] + rank as u32, len)
}

/// A Huffman string that RFC 7541 §5.2 refuses: padding of more than 7 bits
/// or not of 1s (the start of EOS), or EOS itself.
pub(crate) const INVALID: &str = "invalid Huffman string";

/// Decodes `src`, appending to `out`.
pub(crate) fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    // The unread bits are the low `bits` bits of `acc`, oldest highest.
    let mut acc = 0u64;
    let mut bits = 0u32;
    let mut next = src.iter();
    out.reserve(src.len() + src.len() / 2);
    loop {
        while bits <= 56 {
            let Some(&byte) = next.next() else { break };
            acc = (acc << 8) | u64::from(byte);
            bits += 8;
        }
        if bits == 0 {
            return Ok(());
        }
        // bits is 1..=64 here.
        let all_ones = u64::MAX >> (64 - bits);
        let unread = acc & all_ones;
        if bits < 8 && unread == all_ones {
            // Padding: at most 7 bits (so that no byte is wasted), all 1s. No
            // code of up to 29 bits is all 1s, so this is not a symbol cut off.
            return Ok(());
        }
        let (symbol, len) = next_symbol(unread, bits).ok_or(INVALID)?;
        if len > bits || symbol == EOS {
            // A code that runs past the string is padding of the wrong form.
            return Err(INVALID);
        }
        out.push(symbol as u8);
        bits -= len;
    }
}

/// The symbol whose code begins the `bits` bits of `unread` (zeros assumed
/// past them) and its code's length.
fn next_symbol(unread: u64, bits: u32) -> Option<(u16, u32)> {
    let window = |width: u32| -> u32 {
        if bits >= width {
            (unread >> (bits - width)) as u32
        } else {
            (unread << (width - bits)) as u32
        }
    };
    let short = SHORT[window(SHORT_BITS) as usize];
    if short != 0 {
        return Some((short & 0xff, u32::from(short >> 8)));
    }
    let long = window(MAX_LENGTH as u32);
    let c = &CANONICAL;
    for len in SHORT_BITS as usize + 1..=MAX_LENGTH {
        let rank = (long >> (MAX_LENGTH - len)).wrapping_sub(c.first[len]);
        if rank < c.count[len] {
            return Some((c.symbols[(c.offset[len] + rank) as usize], len as u32));
        }
    }
    None
}
