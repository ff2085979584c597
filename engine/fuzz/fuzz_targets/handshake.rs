//! The upgrade request parser (server role) and the response parser (client
//! role) on arbitrary bytes: never a panic; every outcome yields a well-formed
//! HTTP response; the consumed count stays within the input.
#![no_main]

use ringws::proto::handshake::{ClientHandshake, HandshakeLimits, HeaderStorage, parse_request};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let limits = HandshakeLimits {
        max_bytes: 2048,
        max_headers: 16,
    };
    let mut storage = HeaderStorage::new();
    let mut out = Vec::new();
    match parse_request(data, &limits, &mut storage) {
        Ok(Some((request, consumed))) => {
            assert!(consumed <= data.len());
            let _ = (
                request.path(),
                request.query(),
                request.origin(),
                request.host(),
            );
            let _ = request.headers().count();
            for offer in request.extensions() {
                let _ = (offer.name(), offer.params().count());
            }
            let protocol = request.protocols().next();
            request
                .write_accept(&mut out, protocol, None, &[])
                .expect("offered protocol accepted");
            assert!(out.starts_with(b"HTTP/1.1 101 "));
        }
        Ok(None) => assert!(data.len() <= limits.max_bytes),
        Err(error) => {
            error.write_response(&mut out);
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut response = httparse::Response::new(&mut headers);
            let parsed = response.parse(&out).expect("our error response parses");
            assert!(parsed.is_complete());
            assert_eq!(response.code, Some(error.status()));
        }
    }

    // Client role: the same bytes as a server's answer.
    let client = ClientHandshake::with_key("example.com", "/", [7; 16]).expect("valid request");
    if let Ok(Some((accepted, consumed))) = client.parse_response(data) {
        assert!(consumed <= data.len());
        let _ = (accepted.protocol(), accepted.extensions().count());
    }
});
