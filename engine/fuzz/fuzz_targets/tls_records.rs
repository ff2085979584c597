//! Our TLS record layer, just handed over after a real handshake, fed records
//! sealed with the session's keys (any type, content, padding; KeyUpdates),
//! raw bytes and flipped bits, cut into reads anywhere, while it sends; checked
//! against a model of its rules. The harness is `ringws::fuzzing::tls_records`
//! (engine feature `fuzzing`), documented there.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringws::fuzzing::tls_records(data));
