//! The server-side HTTP/2 codec (RFC 9113, RFC 8441) after the client
//! preface, fed a client's frames (requests through a real HPACK encoder,
//! DATA, control frames, raw frames and bytes) in reads cut anywhere, while
//! the harness drives it as the runtime would (responses, data sent back,
//! pauses, resets, releases, GOAWAY); checked against its invariants. The
//! harness is `ringws::fuzzing::h2_frames` (engine feature `fuzzing`),
//! documented there.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringws::fuzzing::h2_frames(data));
