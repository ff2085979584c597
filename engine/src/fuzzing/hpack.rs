//! Target `hpack_decode`: our HPACK decoder against loona-hpack's, block by
//! block on one connection's state, and `HeaderDecoder` (our limits and
//! request validation) on the same blocks.
//!
//! Input: one byte choosing our SETTINGS_HEADER_TABLE_SIZE, one choosing
//! SETTINGS_MAX_HEADER_LIST_SIZE and the blocks' target, then blocks, each a
//! length byte and that many bytes (the last one cut short by the input's
//! end).
//!
//! Checked: no panic; where loona-hpack decodes a block, ours gives the same
//! fields, and where it refuses one, ours does too, except where RFC 7541
//! decides against loona-hpack:
//! - a dynamic table size update after a field: loona-hpack takes it; §4.2
//!   allows one only at the start of a block, so ours refuses it;
//! - a block ending in a size update (a block of size updates alone):
//!   loona-hpack refuses it; RFC 7541 allows it (an update may be a block's
//!   only content), so ours takes it when nothing came before.
//!
//! `HeaderDecoder` fails (COMPRESSION_ERROR) exactly when our decoder does,
//! or refuses a block of too many fields first (ENHANCE_YOUR_CALM); it says
//! too large exactly when the fields pass the list's size. After any refusal the connection would be gone, so the
//! input ends there.

use crate::transport::h2::ErrorCode;
use crate::transport::h2::hpack::decoder::Decoder;
use crate::transport::h2::hpack::{Decoded, HeaderDecoder, Target};
use crate::transport::h2::request::Request;

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

const TABLE_SIZES: [u32; 4] = [0, 64, 256, 4096];
const LIST_SIZES: [u32; 4] = [0, 100, 1000, 16_384];
const TARGETS: [Target; 3] = [Target::Request, Target::Trailers, Target::Discard];

/// The refusals on which we and loona-hpack may differ, by RFC 7541.
const LATE_SIZE_UPDATE: &str = "HPACK table size update after a field";

pub fn hpack_decode(data: &[u8]) {
    let [table_pick, list_pick, rest @ ..] = data else {
        return;
    };
    let table_size = TABLE_SIZES[usize::from(table_pick & 3)];
    let max_list = LIST_SIZES[usize::from(list_pick & 3)];
    let target = TARGETS[usize::from(list_pick >> 2) % 3];
    let mut ours = Decoder::new(table_size as usize);
    let mut limited = HeaderDecoder::new(table_size, max_list);
    let mut reference = loona_hpack::Decoder::new();
    reference.set_max_allowed_table_size(table_size as usize);
    let mut request = Request::default();
    let mut rest = rest;
    while let Some((&len, after)) = rest.split_first() {
        let (block, next) = after.split_at(usize::from(len).min(after.len()));
        rest = next;
        let mut got: Fields = Vec::new();
        let decoded = ours.decode(block, |n, v| {
            got.push((n.to_vec(), v.to_vec()));
            true
        });
        let expected = reference.decode(block);
        match (&decoded, &expected) {
            (Ok(_), Ok(fields)) => assert_eq!(&got, fields, "block {block:02x?}"),
            (Err(why), Ok(_)) => assert_eq!(*why, LATE_SIZE_UPDATE, "block {block:02x?}"),
            (Ok(_), Err(loona_hpack::decoder::DecoderError::SizeUpdateAtEnd)) => {
                assert!(block_is_size_updates(block), "block {block:02x?}");
            }
            (Ok(_), Err(why)) => panic!("loona-hpack refused ({why:?}) {block:02x?}"),
            (Err(_), Err(_)) => {}
        }
        let limited_got = limited.decode(block, target, &mut request);
        match (&decoded, limited_got) {
            (Ok(_), Ok(Decoded::Ok | Decoded::Malformed(_))) => {
                let size: usize = got.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
                assert!(size <= max_list as usize, "block {block:02x?}");
            }
            (Ok(_), Ok(Decoded::TooLarge)) => {
                let size: usize = got.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
                assert!(size > max_list as usize, "block {block:02x?}");
            }
            (Ok(_), Err(e)) => {
                assert_eq!(e.code, ErrorCode::ENHANCE_YOUR_CALM, "block {block:02x?}");
                return;
            }
            (Err(_), Err(e)) => {
                // Too many fields may stop it before it reaches the error.
                let codes = [ErrorCode::COMPRESSION_ERROR, ErrorCode::ENHANCE_YOUR_CALM];
                assert!(codes.contains(&e.code), "block {block:02x?}: {e:?}");
                return;
            }
            (Err(_), Ok(outcome)) => panic!("HeaderDecoder took {block:02x?}: {outcome:?}"),
        }
        if expected.is_err() {
            return;
        }
    }
}

/// Whether a block is size updates alone (001xxxxx, then its integer).
fn block_is_size_updates(block: &[u8]) -> bool {
    let mut at = 0;
    while let Some(&first) = block.get(at) {
        if first & 0xe0 != 0x20 {
            return false;
        }
        match crate::transport::h2::hpack::decoder::integer(block, at, 5) {
            Ok((_, next)) => at = next,
            Err(_) => return false,
        }
    }
    true
}
