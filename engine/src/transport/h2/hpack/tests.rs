//! Our HPACK decoder against RFC 7541: the examples of Appendix C, every
//! byte through the Huffman code, each error, the table's eviction, and the
//! limits `HeaderDecoder` keeps.

use super::decoder::{Decoder, HpackError, integer};
use super::huffman;
use super::table::DynamicTable;
use super::{Decoded, HeaderDecoder, Target};
use crate::transport::h2::frame::ErrorCode;
use crate::transport::h2::request::Request;

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// RFC 7541 Appendix B as the spec lists it: (code, length) of symbols 0-256.
const SPEC_CODES: [(u32, u8); 257] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
    (0x3fffffff, 30),
];

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn fields(list: &[(&str, &str)]) -> Fields {
    list.iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

fn decode(decoder: &mut Decoder, block: &[u8]) -> Result<Fields, HpackError> {
    let mut got = Vec::new();
    decoder.decode(block, |n, v| {
        got.push((n.to_vec(), v.to_vec()));
        true
    })?;
    Ok(got)
}

/// The dynamic table, newest first, and its size.
fn dynamic(table: &DynamicTable) -> (Fields, usize) {
    let entries = (62..62 + table.len())
        .map(|i| {
            let (n, v) = table.get(i).unwrap();
            (n.to_vec(), v.to_vec())
        })
        .collect();
    (entries, table.size())
}

/// A Huffman encoder built from the spec's pairs, independent of ours.
fn huffman_encode(bytes: &[u8]) -> Vec<u8> {
    let (mut acc, mut bits, mut out) = (0u64, 0u32, Vec::new());
    for &b in bytes {
        let (code, len) = SPEC_CODES[usize::from(b)];
        acc = (acc << len) | u64::from(code);
        bits += u32::from(len);
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        // Padding: the most significant bits of EOS, all 1s.
        out.push(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) as u8);
    }
    out
}

fn huffman_decode(bytes: &[u8]) -> Result<Vec<u8>, HpackError> {
    let mut out = Vec::new();
    huffman::decode(bytes, &mut out).map(|()| out)
}

#[test]
fn the_canonical_code_is_the_spec_s_code() {
    for (symbol, &pair) in SPEC_CODES.iter().enumerate() {
        assert_eq!(huffman::code(symbol as u16), pair, "symbol {symbol}");
    }
}

#[test]
fn every_byte_decodes_through_huffman() {
    for b in 0..=255u8 {
        for run in [1, 2, 3, 7] {
            let text = vec![b; run];
            assert_eq!(huffman_decode(&huffman_encode(&text)), Ok(text), "byte {b}");
        }
    }
    let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    assert_eq!(huffman_decode(&huffman_encode(&all)), Ok(all));
    assert_eq!(huffman_decode(&[]), Ok(Vec::new()));
}

#[test]
fn huffman_padding_and_eos_are_checked() {
    // "a" is 00011: 3 bits of 1s pad it.
    assert_eq!(huffman_decode(&[0b0001_1111]), Ok(b"a".to_vec()));
    // Padding that is not all 1s.
    assert_eq!(huffman_decode(&[0b0001_1110]), Err(huffman::INVALID));
    assert_eq!(huffman_decode(&[0b0001_1011]), Err(huffman::INVALID));
    // Padding of 8 bits and more: a whole byte of 1s, after "a" and alone.
    assert_eq!(huffman_decode(&[0b0001_1111, 0xff]), Err(huffman::INVALID));
    assert_eq!(huffman_decode(&[0xff]), Err(huffman::INVALID));
    assert_eq!(huffman_decode(&[0xff, 0xff]), Err(huffman::INVALID));
    // EOS (30 1s) in the string, alone or after "a", then padded.
    assert_eq!(
        huffman_decode(&[0xff, 0xff, 0xff, 0xff]),
        Err(huffman::INVALID)
    );
    let after_a = huffman_encode(b"a");
    let mut eos = vec![after_a[0] & 0b1111_1000 | 0b111];
    eos.extend([0xff, 0xff, 0xff, 0xff]);
    assert_eq!(huffman_decode(&eos), Err(huffman::INVALID));
}

#[test]
fn appendix_c2_single_representations() {
    let mut d = Decoder::new(4096);
    let c21 = hex("400a637573746f6d2d6b65790d637573746f6d2d686561646572");
    assert_eq!(
        decode(&mut d, &c21),
        Ok(fields(&[("custom-key", "custom-header")]))
    );
    assert_eq!(
        dynamic(d.table()),
        (fields(&[("custom-key", "custom-header")]), 55)
    );
    let mut d = Decoder::new(4096);
    let c22 = hex("040c2f73616d706c652f70617468");
    assert_eq!(
        decode(&mut d, &c22),
        Ok(fields(&[(":path", "/sample/path")]))
    );
    let c23 = hex("100870617373776f726406736563726574");
    assert_eq!(decode(&mut d, &c23), Ok(fields(&[("password", "secret")])));
    assert_eq!(
        decode(&mut d, &hex("82")),
        Ok(fields(&[(":method", "GET")]))
    );
    assert_eq!(dynamic(d.table()), (Vec::new(), 0));
}

/// C.3 (raw) and C.4 (Huffman): the same three requests.
fn requests(blocks: [&str; 3]) {
    let mut d = Decoder::new(4096);
    let base = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    let authority = (":authority", "www.example.com");
    let no_cache = ("cache-control", "no-cache");
    let custom = ("custom-key", "custom-value");
    assert_eq!(decode(&mut d, &hex(blocks[0])), Ok(fields(&base)));
    assert_eq!(dynamic(d.table()), (fields(&[authority]), 57));
    let second = [&base[..], &[no_cache]].concat();
    assert_eq!(decode(&mut d, &hex(blocks[1])), Ok(fields(&second)));
    assert_eq!(dynamic(d.table()), (fields(&[no_cache, authority]), 110));
    let third = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        authority,
        custom,
    ];
    assert_eq!(decode(&mut d, &hex(blocks[2])), Ok(fields(&third)));
    assert_eq!(
        dynamic(d.table()),
        (fields(&[custom, no_cache, authority]), 164)
    );
}

#[test]
fn appendix_c3_requests_without_huffman() {
    requests([
        "828684410f7777772e6578616d706c652e636f6d",
        "828684be58086e6f2d6361636865",
        "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
    ]);
}

#[test]
fn appendix_c4_requests_with_huffman() {
    requests([
        "828684418cf1e3c2e5f23a6ba0ab90f4ff",
        "828684be5886a8eb10649cbf",
        "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
    ]);
}

/// C.5 (raw) and C.6 (Huffman): three responses through a table of 256
/// bytes, set by a size update before the first.
fn responses(blocks: [&str; 3]) {
    let mut d = Decoder::new(4096);
    let first = [
        (":status", "302"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("location", "https://www.example.com"),
    ];
    let mut block = vec![0x3f, 0xe1, 0x01]; // size update to 256
    block.extend(hex(blocks[0]));
    assert_eq!(decode(&mut d, &block), Ok(fields(&first)));
    assert_eq!(d.table().max_size(), 256);
    let table: Vec<_> = first.iter().rev().copied().collect();
    assert_eq!(dynamic(d.table()), (fields(&table), 222));
    let second = [&[(":status", "307")][..], &first[1..]].concat();
    assert_eq!(decode(&mut d, &hex(blocks[1])), Ok(fields(&second)));
    let table = [second[0], first[3], first[2], first[1]];
    assert_eq!(dynamic(d.table()), (fields(&table), 222));
    let cookie = (
        "set-cookie",
        "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
    );
    let date = ("date", "Mon, 21 Oct 2013 20:13:22 GMT");
    let gzip = ("content-encoding", "gzip");
    let third = [
        (":status", "200"),
        ("cache-control", "private"),
        date,
        ("location", "https://www.example.com"),
        gzip,
        cookie,
    ];
    assert_eq!(decode(&mut d, &hex(blocks[2])), Ok(fields(&third)));
    assert_eq!(dynamic(d.table()), (fields(&[cookie, gzip, date]), 215));
}

#[test]
fn appendix_c5_responses_without_huffman() {
    responses([
        concat!(
            "4803333032580770726976617465611d4d6f6e2c203231204f63742032303133",
            "2032303a31333a323120474d546e1768747470733a2f2f7777772e6578616d70",
            "6c652e636f6d",
        ),
        "4803333037c1c0bf",
        concat!(
            "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d",
            "54c05a04677a69707738666f6f3d4153444a4b48514b425a584f5157454f5049",
            "5541585157454f49553b206d61782d6167653d333630303b2076657273696f6e",
            "3d31",
        ),
    ]);
}

#[test]
fn appendix_c6_responses_with_huffman() {
    responses([
        concat!(
            "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a6",
            "2d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3",
        ),
        "4883640effc1c0bf",
        concat!(
            "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab",
            "77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f",
            "9587316065c003ed4ee5b1063d5007",
        ),
    ]);
}

#[test]
fn integers_are_bounded() {
    // RFC 7541 C.1: 10 and 1337 in a 5-bit prefix, 42 in 8 bits.
    assert_eq!(integer(&[0x0a], 0, 5), Ok((10, 1)));
    assert_eq!(integer(&[0x1f, 0x9a, 0x0a], 0, 5), Ok((1337, 3)));
    assert_eq!(integer(&[0x2a], 0, 7), Ok((42, 1)));
    // Four continuation bytes: the most allowed.
    let max = integer(&[0x7f, 0xff, 0xff, 0xff, 0x7f], 0, 7);
    assert_eq!(max, Ok((127 + (1 << 28) - 1, 5)));
    // A fifth, even a redundant zero, is refused; and none past the block.
    assert!(integer(&[0x7f, 0x80, 0x80, 0x80, 0x80, 0x00], 0, 7).is_err());
    assert!(integer(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 0, 7).is_err());
    assert!(integer(&[0x7f, 0x80], 0, 7).is_err());
    assert!(integer(&[], 0, 7).is_err());
}

#[test]
fn malformed_blocks_are_refused() {
    let refused = |block: &[u8]| decode(&mut Decoder::new(4096), block).is_err();
    assert!(refused(&[0x80]), "index 0");
    assert!(refused(&[0xbe]), "index 62 of an empty dynamic table");
    assert!(
        refused(&[0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
        "integer too long"
    );
    assert!(
        refused(&[0x40 | 62, 0x01, b'v']),
        "literal name index past the tables"
    );
    assert!(refused(&[0x00, 0x05, b'a']), "string past the block");
    assert!(refused(&[0x00, 0x01, b'a', 0x01]), "value cut short");
    assert!(
        refused(&[0x00, 0x81, 0xff, 0x00]),
        "Huffman name of bad padding"
    );
    assert!(refused(&[0x82, 0x20]), "size update after a field");
    assert!(
        refused(&[0x3f, 0xe2, 0x1f]),
        "size update to 4097, past our 4096"
    );
    assert!(
        !refused(&[0x3f, 0xe1, 0x1f, 0x20, 0x82]),
        "size updates first"
    );
    assert!(!refused(&[0x20]), "a block of a size update alone");
    assert!(!refused(&[]), "an empty block");
    // Our setting bounds the update, not the protocol's default.
    assert!(decode(&mut Decoder::new(100), &[0x3f, 0x46]).is_err());
    assert!(decode(&mut Decoder::new(100), &[0x3f, 0x45]).is_ok());
}

/// A literal with incremental indexing of a new name.
fn indexed_literal(name: &str, value: &str) -> Vec<u8> {
    assert!(name.len() < 127 && value.len() < 127);
    let mut block = vec![0x40, name.len() as u8];
    block.extend(name.as_bytes());
    block.push(value.len() as u8);
    block.extend(value.as_bytes());
    block
}

#[test]
fn the_table_evicts_oldest_first_and_empties_on_a_size_of_0() {
    let mut d = Decoder::new(4096);
    // Entries of 32 + 1 + 7 = 40 bytes in a table of 100: two fit.
    decode(&mut d, &[0x3f, 0x45]).unwrap();
    for value in ["value-1", "value-2", "value-3"] {
        decode(&mut d, &indexed_literal("n", value)).unwrap();
    }
    assert_eq!(
        dynamic(d.table()),
        (fields(&[("n", "value-3"), ("n", "value-2")]), 80)
    );
    // Index 62 is the newest; 64 is gone.
    assert_eq!(
        decode(&mut d, &[0xbe, 0xbf]),
        Ok(fields(&[("n", "value-3"), ("n", "value-2")]))
    );
    assert!(decode(&mut d, &[0xc0]).is_err());
    // A smaller size evicts down to it; 0 empties the table.
    decode(&mut d, &[0x3f, 0x0a]).unwrap(); // 41
    assert_eq!(dynamic(d.table()), (fields(&[("n", "value-3")]), 40));
    decode(&mut d, &[0x20]).unwrap();
    assert_eq!(dynamic(d.table()), (Vec::new(), 0));
    // Nothing enters a table of 0, and the decoder stays in step.
    assert_eq!(
        decode(&mut d, &indexed_literal("n", "v")),
        Ok(fields(&[("n", "v")]))
    );
    assert_eq!(d.table().len(), 0);
}

#[test]
fn a_field_larger_than_the_table_empties_it() {
    let mut d = Decoder::new(4096);
    decode(&mut d, &[0x3f, 0x45]).unwrap(); // 100
    decode(&mut d, &indexed_literal("n", "short")).unwrap();
    assert_eq!(d.table().len(), 1);
    let big = "v".repeat(68); // 32 + 1 + 68 = 101
    assert_eq!(
        decode(&mut d, &indexed_literal("n", &big)),
        Ok(fields(&[("n", &big)]))
    );
    assert_eq!(dynamic(d.table()), (Vec::new(), 0));
    // Exactly the table's size fits.
    decode(&mut d, &indexed_literal("n", &big[1..])).unwrap();
    assert_eq!(d.table().size(), 100);
}

#[test]
fn an_indexed_name_survives_the_eviction_of_its_entry() {
    let mut d = Decoder::new(4096);
    decode(&mut d, &[0x3f, 0x45]).unwrap(); // 100: one 40-byte entry, two
    decode(&mut d, &indexed_literal("name", "1234")).unwrap();
    // Name 62 ("name"), a 30-byte value: 66 bytes, so that 40 + 66 > 100
    // evicts the entry the name was read from.
    let value = "x".repeat(30);
    let mut block = vec![0x40 | 62, value.len() as u8];
    block.extend(value.as_bytes());
    assert_eq!(decode(&mut d, &block), Ok(fields(&[("name", &value)])));
    assert_eq!(dynamic(d.table()), (fields(&[("name", &value)]), 66));
}

fn header_decoder(max_list: u32) -> HeaderDecoder {
    HeaderDecoder::new(4096, max_list)
}

#[test]
fn a_list_past_the_limit_is_too_large_and_still_indexed() {
    let mut hd = header_decoder(200);
    let mut request = Request::default();
    // 100 + 32 each: the second field passes 200.
    let value = "v".repeat(99);
    let block = [
        indexed_literal("a", &value),
        indexed_literal("b", &value),
        indexed_literal("c", "small"),
    ]
    .concat();
    for target in [Target::Request, Target::Trailers, Target::Discard] {
        let mut hd2 = header_decoder(200);
        let got = hd2.decode(&block, target, &mut request);
        assert_eq!(got.map_err(|e| e.code), Ok(Decoded::TooLarge), "{target:?}");
        assert_eq!(hd2.inner.table().len(), 3, "{target:?}");
    }
    assert_eq!(
        hd.decode(&block, Target::Discard, &mut request)
            .map_err(|e| e.code),
        Ok(Decoded::TooLarge)
    );
    // The table entries are there for the next block: c, b, a.
    let got = hd.decode(&[0x82, 0xbe], Target::Trailers, &mut request);
    assert_eq!(
        got.map_err(|e| e.code),
        Ok(Decoded::Malformed("pseudo-header in trailers"))
    );
    let got = hd.decode(&[0xc0], Target::Trailers, &mut request);
    assert_eq!(got.map_err(|e| e.code), Ok(Decoded::Ok));
}

#[test]
fn requests_are_validated_and_hpack_errors_are_compression_errors() {
    let mut hd = header_decoder(16_384);
    let mut request = Request::default();
    // :method GET, :scheme https, :path /, :authority a
    let good = [0x82, 0x87, 0x84, 0x01, 0x01, b'a'];
    assert_eq!(
        hd.decode(&good, Target::Request, &mut request)
            .map_err(|e| e.code),
        Ok(Decoded::Ok)
    );
    assert_eq!(request.method(), "GET");
    assert_eq!(request.authority(), Some("a"));
    let upper = [&good[..], &[0x00, 0x01, b'X', 0x00]].concat();
    let got = hd.decode(&upper, Target::Request, &mut request);
    assert!(matches!(got, Ok(Decoded::Malformed(_))), "{got:?}");
    let got = hd.decode(&[0x80], Target::Discard, &mut request);
    assert_eq!(got.map_err(|e| e.code), Err(ErrorCode::COMPRESSION_ERROR));
}

#[test]
fn a_block_of_too_many_fields_is_refused_while_a_full_list_is_not() {
    let max_list = 1024u32;
    let limit = max_list as usize / 32 + 64;
    let mut request = Request::default();
    // `limit` one-byte indexed fields: too large, but decoded.
    let got = header_decoder(max_list).decode(&vec![0x82; limit], Target::Request, &mut request);
    assert_eq!(got.map_err(|e| e.code), Ok(Decoded::TooLarge));
    let got =
        header_decoder(max_list).decode(&vec![0x82; limit + 1], Target::Discard, &mut request);
    assert_eq!(got.map_err(|e| e.code), Err(ErrorCode::ENHANCE_YOUR_CALM));
}

#[test]
fn our_encoder_s_integers_decode() {
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
            super::put_integer(&mut out, 0, n, value);
            assert_eq!(integer(&out, 0, n), Ok((value, out.len())), "{n} {value}");
        }
    }
}
