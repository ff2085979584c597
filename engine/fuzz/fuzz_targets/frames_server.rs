//! Frame decoder and message state machine, server role.
#![no_main]

#[path = "frames_common.rs"]
mod frames_common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    frames_common::check(ringws::proto::Role::Server, data);
});
