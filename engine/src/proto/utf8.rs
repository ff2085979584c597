//! UTF-8 validation of text payloads on simdutf8.
//!
//! A text message that arrived whole is checked in one call to [`validate`]. A message
//! split into fragments, or a frame split across reads, goes through
//! [`StreamingUtf8`], which carries at most 3 bytes of an incomplete code point from
//! one chunk to the next and fails as soon as a sequence is certainly invalid, not
//! at the end of the message (Autobahn section 6 checks this).

/// The payload is not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid UTF-8")]
pub struct Utf8Error;

/// Validates a complete text payload and returns it as `&str` without copying.
#[inline]
pub fn validate(bytes: &[u8]) -> Result<&str, Utf8Error> {
    simdutf8::basic::from_utf8(bytes).map_err(|_| Utf8Error)
}

/// Streaming validator for a text message that arrives in chunks.
///
/// Feed every chunk in order with [`feed`](Self::feed), then call
/// [`finish`](Self::finish) at the end of the message. Five bytes of state.
#[derive(Debug, Default, Clone)]
pub struct StreamingUtf8 {
    /// Leading bytes of a code point cut at the end of the previous chunk.
    partial: [u8; 4],
    partial_len: u8,
}

/// Length of the sequence a lead byte starts, or 0 for a byte that cannot lead.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

impl StreamingUtf8 {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Self {
            partial: [0; 4],
            partial_len: 0,
        }
    }

    /// Whether an incomplete code point is pending from the previous chunk.
    pub fn has_partial(&self) -> bool {
        self.partial_len != 0
    }

    /// Checks the next chunk of the message.
    ///
    /// Fails if the bytes seen so far cannot begin any valid UTF-8 text; a code point
    /// cut at the end of the chunk is kept for the next call.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), Utf8Error> {
        if self.partial_len != 0 {
            let have = usize::from(self.partial_len);
            let need = sequence_len(self.partial[0]);
            let take = (need - have).min(chunk.len());
            self.partial[have..have + take].copy_from_slice(&chunk[..take]);
            let filled = have + take;
            match std::str::from_utf8(&self.partial[..filled]) {
                Ok(_) => self.partial_len = 0,
                // Still a valid prefix but the chunk ran out: wait for more.
                Err(e) if e.error_len().is_none() => {
                    self.partial_len = filled as u8;
                    return Ok(());
                }
                Err(_) => return Err(Utf8Error),
            }
            chunk = &chunk[take..];
        }
        // The fast path: most chunks are valid UTF-8 throughout.
        if simdutf8::basic::from_utf8(chunk).is_ok() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(chunk) {
            Ok(_) => Ok(()),
            // error_len() is None only when the tail is a valid but incomplete prefix.
            Err(e) if e.error_len().is_none() => {
                let tail = &chunk[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(Utf8Error),
        }
    }

    /// Ends the message: fails if it stopped inside a code point. Resets the
    /// validator for the next message either way.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let complete = self.partial_len == 0;
        self.reset();
        if complete { Ok(()) } else { Err(Utf8Error) }
    }

    /// Forgets any pending bytes (start of a new message).
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stream(chunks: &[&[u8]]) -> Result<(), Utf8Error> {
        let mut v = StreamingUtf8::new();
        for c in chunks {
            v.feed(c)?;
        }
        v.finish()
    }

    #[test]
    fn whole_text_validates_borrowed() {
        let s = validate("κόσμε".as_bytes()).unwrap();
        assert_eq!(s, "κόσμε");
        assert!(validate(b"\xce\xba\xe1\xbd").is_err());
    }

    #[test]
    fn code_point_split_at_every_position() {
        let text = "a€𝄞ü".as_bytes();
        for cut in 0..=text.len() {
            assert_eq!(
                stream(&[&text[..cut], &text[cut..]]),
                Ok(()),
                "cut at {cut}"
            );
        }
        // One byte per chunk: a 4-byte code point spans four feeds.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(stream(&bytes), Ok(()));
    }

    #[test]
    fn fails_fast_inside_a_chunk() {
        let mut v = StreamingUtf8::new();
        // 0xc0 can never start a sequence: fail on this chunk, not at the end.
        assert_eq!(v.feed(b"hello \xc0"), Err(Utf8Error));
    }

    #[test]
    fn fails_fast_on_impossible_prefix_at_chunk_end() {
        // U+D800 (a surrogate) starts ED A0: invalid as soon as A0 is seen.
        let mut v = StreamingUtf8::new();
        assert_eq!(v.feed(b"ok \xed\xa0"), Err(Utf8Error));
        // F4 90 would encode a code point above U+10FFFF.
        let mut v = StreamingUtf8::new();
        assert_eq!(v.feed(b"\xf4"), Ok(()));
        assert_eq!(v.feed(b"\x90"), Err(Utf8Error));
    }

    #[test]
    fn fails_fast_when_continuation_is_missing_across_chunks() {
        let mut v = StreamingUtf8::new();
        assert_eq!(v.feed(b"\xe2\x82"), Ok(()));
        assert_eq!(v.feed(b"A"), Err(Utf8Error));
    }

    #[test]
    fn truncated_message_fails_at_finish() {
        let mut v = StreamingUtf8::new();
        assert_eq!(v.feed(b"\xf0\x9d\x84"), Ok(()));
        assert!(v.has_partial());
        assert_eq!(v.finish(), Err(Utf8Error));
        // finish resets: the next message starts clean.
        assert_eq!(v.feed(b"x"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn empty_chunks_change_nothing() {
        assert_eq!(
            stream(&[b"", b"\xe2", b"", b"\x82", b"", b"\xac", b""]),
            Ok(())
        );
    }

    proptest! {
        /// Streaming over any chunking agrees with validating the whole input at once,
        /// and an error is reported no later than the chunk holding the first bad byte.
        #[test]
        fn streaming_matches_whole(
            bytes in prop::collection::vec(
                prop_oneof![
                    4 => any::<char>().prop_map(|c| c.to_string().into_bytes()),
                    1 => prop::collection::vec(any::<u8>(), 1..3),
                ],
                0..64,
            ).prop_map(|v| v.concat()),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut v = StreamingUtf8::new();
            let mut start = 0;
            let mut streamed = Ok(());
            let first_bad = std::str::from_utf8(&bytes).err().and_then(|e| {
                e.error_len().map(|_| e.valid_up_to())
            });
            for &end in points.iter().chain(std::iter::once(&bytes.len())) {
                if let Err(e) = v.feed(&bytes[start..end]) {
                    streamed = Err(e);
                    // Failed no earlier than the first bad sequence starts...
                    prop_assert!(first_bad.is_some_and(|bad| bad < end));
                    break;
                }
                // ...and no later than the chunk that makes it certainly invalid: the
                // bad sequence plus, for a cut-off sequence, the byte that cuts it.
                if let Some(bad) = first_bad {
                    let bad_len = std::str::from_utf8(&bytes).unwrap_err().error_len().unwrap();
                    prop_assert!(end <= bad + bad_len);
                }
                start = end;
            }
            if streamed.is_ok() {
                streamed = v.finish();
            }
            prop_assert_eq!(streamed.is_ok(), std::str::from_utf8(&bytes).is_ok());
        }
    }
}
