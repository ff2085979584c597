//! Our HPACK decoder against loona-hpack's on the same blocks (same fields
//! where loona-hpack is right, the same refusals), and our header-list limits
//! on them. The harness is `ringws::fuzzing::hpack_decode` (engine feature
//! `fuzzing`), documented there.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringws::fuzzing::hpack_decode(data));
