//! The streaming UTF-8 validator against simdutf8 on the whole input: same
//! verdict for any chunking, and never a failure before the first invalid byte.
#![no_main]

use ringws::proto::utf8::StreamingUtf8;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [chunk, text @ ..] = data else { return };
    let chunk = usize::from(*chunk % 16) + 1;
    let whole_ok = simdutf8::basic::from_utf8(text).is_ok();
    let valid_up_to = std::str::from_utf8(text).err().map(|e| e.valid_up_to());
    let mut v = StreamingUtf8::new();
    let mut fed = 0;
    let mut streamed_ok = true;
    for piece in text.chunks(chunk) {
        fed += piece.len();
        if v.feed(piece).is_err() {
            assert!(
                valid_up_to.is_some_and(|bad| bad < fed),
                "failed before the first bad byte"
            );
            streamed_ok = false;
            break;
        }
    }
    if streamed_ok {
        streamed_ok = v.finish().is_ok();
    }
    assert_eq!(streamed_ok, whole_ok);
});
