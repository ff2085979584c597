//! The client's HPACK encoder (RFC 7541), as a browser's: what both servers
//! decode in the benches is what Chromium would send, Huffman strings and
//! incremental indexing included (the `loona-hpack` encoder indexes nothing,
//! which would leave every server's dynamic table empty).

use ringws::h2_bench::{hpack_huffman_code, hpack_static_table};

/// An HPACK integer with an `prefix`-bit prefix, `flags` in the first byte's
/// high bits (RFC 7541 §5.1).
fn integer(out: &mut Vec<u8>, prefix: u8, flags: u8, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// A string literal, Huffman-coded where that is shorter (as browsers do).
fn string(out: &mut Vec<u8>, s: &[u8]) {
    let codes: Vec<(u32, u8)> = s.iter().map(|&b| hpack_huffman_code(b)).collect();
    let bits: usize = codes.iter().map(|&(_, n)| usize::from(n)).sum();
    let len = bits.div_ceil(8);
    if len >= s.len() {
        integer(out, 7, 0, s.len());
        out.extend_from_slice(s);
        return;
    }
    integer(out, 7, 0x80, len);
    let mut acc: u64 = 0;
    let mut have = 0u32;
    for &(code, n) in &codes {
        let n = u32::from(n);
        acc = (acc << n) | u64::from(code);
        have += n;
        while have >= 8 {
            have -= 8;
            out.push((acc >> have) as u8);
        }
    }
    if have > 0 {
        // Padded with the EOS code's most significant bits (all ones).
        out.push(((acc << (8 - have)) as u8) | (0xff >> have));
    }
}

/// The client's HPACK encoder, as a browser's: a field found whole in a
/// table is indexed, any other is a literal *with incremental indexing*
/// (its name indexed where a table has it), strings Huffman-coded.
#[derive(Default)]
pub struct Encoder {
    /// The peer decoder's dynamic table as we filled it, newest first
    /// (never evicted here: our blocks stay far below 4,096 bytes).
    dynamic: Vec<(String, String)>,
    size: usize,
}

impl Encoder {
    /// Encodes `fields` against the tables (the first block of a
    /// connection is all literals; the next ones, the same fields, all
    /// indexed).
    pub fn encode(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(name, value) in fields {
            if let Some(i) = hpack_static_table()
                .iter()
                .position(|&e| e == (name, value))
            {
                integer(&mut out, 7, 0x80, i + 1);
                continue;
            }
            if let Some(i) = self
                .dynamic
                .iter()
                .position(|(n, v)| n == name && v == value)
            {
                integer(&mut out, 7, 0x80, 62 + i);
                continue;
            }
            self.literal(&mut out, name, value, true);
        }
        out
    }

    /// Encodes `fields` as a first block: static matches indexed, the rest
    /// literals with incremental indexing, names from the static table only.
    /// It refers to nothing in the dynamic table, so it may be sent again
    /// and again (each time the decoder inserts, and in time evicts).
    pub fn encode_cold(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut scratch = Self::default();
        for &(name, value) in fields {
            if let Some(i) = hpack_static_table()
                .iter()
                .position(|&e| e == (name, value))
            {
                integer(&mut out, 7, 0x80, i + 1);
            } else {
                scratch.literal(&mut out, name, value, false);
            }
        }
        out
    }

    fn literal(&mut self, out: &mut Vec<u8>, name: &str, value: &str, dynamic_names: bool) {
        let static_name = hpack_static_table().iter().position(|&(n, _)| n == name);
        let dynamic_name = dynamic_names
            .then(|| self.dynamic.iter().position(|(n, _)| n == name))
            .flatten();
        match (static_name, dynamic_name) {
            (Some(i), _) => integer(out, 6, 0x40, i + 1),
            (None, Some(i)) => integer(out, 6, 0x40, 62 + i),
            (None, None) => {
                out.push(0x40);
                string(out, name.as_bytes());
            }
        }
        string(out, value.as_bytes());
        self.size += name.len() + value.len() + 32;
        assert!(self.size <= 4096, "no eviction here");
        self.dynamic.insert(0, (name.to_owned(), value.to_owned()));
    }
}
