//! RFC 7541 Appendix C: single representations (C.2), requests (C.3 raw,
//! C.4 Huffman) and responses (C.5 raw, C.6 Huffman), with the dynamic
//! table's contents and size after each.

use super::{decode, dynamic, fields, hex};
use crate::transport::h2::hpack::decoder::Decoder;

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
