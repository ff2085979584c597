//! Our HPACK decoder against RFC 7541: the examples of Appendix C
//! (`appendix_c`), every byte through the Huffman code (`huffman`), each
//! error, the table's eviction, and the limits `HeaderDecoder` keeps.

mod appendix_c;
mod huffman;

use super::decoder::{Decoder, HpackError, integer};
use super::table::DynamicTable;
use super::{Decoded, HeaderDecoder, Target};
use crate::transport::h2::frame::ErrorCode;
use crate::transport::h2::request::Request;

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

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
