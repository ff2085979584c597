//! rustls's record layer against ours, both ways, on every suite ours runs:
//! rustls's client seals and our server opens, our server seals and rustls's
//! client opens, with KeyUpdates, records up to and past 16 KiB, both sides'
//! close_notify. The harness is `ringws::fuzzing::tls_differential` (engine
//! feature `fuzzing`), documented there.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringws::fuzzing::tls_differential(data));
