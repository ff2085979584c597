//! The per-message codec of permessage-deflate: raw deflate with a sync
//! flush per message, the `00 00 ff ff` tail stripped on send and restored
//! on receive, context takeover or not, and inflation bounded by the message
//! size limit. Each direction's window (the history a next message may refer
//! back into) can be read at a message boundary and given to a fresh codec,
//! which then continues the same stream: that is what a live hand-over
//! carries of a connection with context takeover.

use libz_rs_sys::Z_SYNC_FLUSH;

use super::zstream::{Deflater, Inflater, Status};
use crate::proto::error::ProtocolError;

pub use super::zstream::MAX_WINDOW;

/// The empty stored block a sync flush ends with; stripped on send (RFC 7692
/// section 7.2.1) and appended before inflating (section 7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compresses messages for one direction.
#[derive(Debug)]
pub struct Compressor {
    inner: Deflater,
    no_context_takeover: bool,
}

impl Compressor {
    /// A compressor with a window of `window_bits` (9..=15) at `level` (0..=9).
    pub fn new(window_bits: u8, level: u32, no_context_takeover: bool) -> Self {
        Self {
            inner: Deflater::new(level, window_bits),
            no_context_takeover,
        }
    }

    /// A compressor that goes on from another's [`Self::window`]: its next
    /// message may refer back into `history`, which the peer's decompressor
    /// holds as the end of what it inflated. `Err` when `history` is longer
    /// than [`MAX_WINDOW`] or zlib refuses it.
    pub fn with_window(
        window_bits: u8,
        level: u32,
        no_context_takeover: bool,
        history: &[u8],
    ) -> Result<Self, &'static str> {
        if history.len() > MAX_WINDOW {
            return Err("a compressor's window longer than 32 KiB");
        }
        let mut c = Self::new(window_bits, level, no_context_takeover);
        if !history.is_empty() {
            c.inner
                .set_dictionary(history)
                .map_err(|_| "zlib refused a compressor's window")?;
        }
        Ok(c)
    }

    /// The window at a message boundary: the last bytes compressed, up to
    /// 2^window_bits (empty after a reset). A copy, taken for a hand-over;
    /// `Err` if zlib finds its state inconsistent (never seen).
    pub fn window(&self) -> Result<Vec<u8>, &'static str> {
        self.inner
            .window()
            .map_err(|_| "zlib could not give a compressor's window")
    }

    /// Appends the compressed form of `payload` (without the `00 00 ff ff` tail)
    /// to `out`.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let mut input = payload;
        loop {
            out.reserve(input.len() / 2 + 64);
            // Deflate with a sync flush only fails on a corrupted stream state,
            // which this type never produces; treat it as an empty result.
            match self.inner.deflate(input, out, Z_SYNC_FLUSH) {
                Ok((consumed, _)) => input = &input[consumed..],
                Err(_) => break,
            }
            // Done when all input is in and the flush left output room unused.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if out.len() == start {
            // Nothing to flush (an empty message after another): send the one-byte
            // empty block of RFC 7692 section 7.2.3.6, which the receiver's
            // appended tail completes.
            out.push(0x00);
        }
        if self.no_context_takeover {
            self.inner.reset();
        }
    }
}

/// Inflates messages for one direction, never past a size limit.
#[derive(Debug)]
pub struct Decompressor {
    inner: Inflater,
    no_context_takeover: bool,
}

impl Decompressor {
    /// Whether the peer resets its compressor after each message (no
    /// context takeover): then this one keeps nothing between messages.
    pub fn resets(&self) -> bool {
        self.no_context_takeover
    }

    /// A decompressor for a peer that may use any window up to 15 bits.
    pub fn new(no_context_takeover: bool) -> Self {
        Self {
            // The largest window decodes a stream made with any smaller one.
            inner: Inflater::new(15),
            no_context_takeover,
        }
    }

    /// A decompressor that goes on from another's [`Self::window`]: the
    /// peer's next message may refer back into `history`. `Err` when
    /// `history` is longer than [`MAX_WINDOW`] or zlib refuses it.
    pub fn with_window(no_context_takeover: bool, history: &[u8]) -> Result<Self, &'static str> {
        if history.len() > MAX_WINDOW {
            return Err("a decompressor's window longer than 32 KiB");
        }
        let mut d = Self::new(no_context_takeover);
        if !history.is_empty() {
            d.inner
                .set_dictionary(history)
                .map_err(|_| "zlib refused a decompressor's window")?;
        }
        Ok(d)
    }

    /// The window at a message boundary: the last bytes inflated, up to
    /// 32 KiB (empty after a reset). A copy, taken for a hand-over; `Err`
    /// if zlib finds its state inconsistent (never seen).
    pub fn window(&self) -> Result<Vec<u8>, &'static str> {
        self.inner
            .window()
            .map_err(|_| "zlib could not give a decompressor's window")
    }

    /// Inflates the next piece of a compressed message into `out`; fails with
    /// 1009 as soon as `out` would pass `max` bytes (it never grows beyond
    /// `max + 1`), so a decompression bomb costs no more than the limit.
    pub fn decompress(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), ProtocolError> {
        loop {
            if out.len() > max {
                return Err(ProtocolError::MessageTooBig);
            }
            if out.len() == out.capacity() {
                let wanted = input.len().saturating_mul(4).max(4096);
                out.reserve_exact(wanted.min(max + 1 - out.len()));
            }
            let before_out = out.len();
            let (consumed, status) = self
                .inner
                .inflate(input, out)
                .map_err(|_| ProtocolError::InvalidCompressedData)?;
            input = &input[consumed..];
            if out.len() > max {
                return Err(ProtocolError::MessageTooBig);
            }
            if status == Status::StreamEnd {
                // The sender ended the deflate stream (BFINAL): the next bytes, if
                // any, start a new one.
                self.inner.reset();
            }
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
            let stuck = consumed == 0 && out.len() == before_out;
            if stuck && out.len() < out.capacity() {
                return Err(ProtocolError::InvalidCompressedData);
            }
        }
    }

    /// Forgets the stream state (after an error, so that a shared decompressor
    /// serves the next message cleanly).
    pub fn reset(&mut self) {
        self.inner.reset();
    }

    /// Ends a compressed message: inflates the `00 00 ff ff` tail the sender
    /// stripped, then resets the state if the peer does not take over context.
    pub fn finish(&mut self, out: &mut Vec<u8>, max: usize) -> Result<(), ProtocolError> {
        self.decompress(&TAIL, out, max)?;
        if self.no_context_takeover {
            self.inner.reset();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn inflate(
        d: &mut Decompressor,
        compressed: &[u8],
        max: usize,
    ) -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::new();
        d.decompress(compressed, &mut out, max)?;
        d.finish(&mut out, max)?;
        Ok(out)
    }

    #[test]
    fn rfc7692_sample_inflates() {
        // Section 7.2.3.1: "Hello" compressed, tail stripped.
        let mut d = Decompressor::new(false);
        assert_eq!(
            inflate(&mut d, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100).unwrap(),
            b"Hello"
        );
        // Section 7.2.3.2: the same message again, using the shared window.
        assert_eq!(
            inflate(&mut d, &[0xf2, 0x00, 0x11, 0x00, 0x00], 100).unwrap(),
            b"Hello"
        );
    }

    #[test]
    fn tail_is_stripped_and_round_trip_holds() {
        let mut c = Compressor::new(15, 1, false);
        let mut out = Vec::new();
        c.compress(b"Hello", &mut out);
        assert!(!out.ends_with(&TAIL));
        assert_eq!(
            inflate(&mut Decompressor::new(false), &out, 100).unwrap(),
            b"Hello"
        );
    }

    #[test]
    fn context_takeover_shrinks_repeats_and_no_takeover_does_not() {
        let text = b"a fairly repetitive message a fairly repetitive message 0123456789".repeat(4);
        for (takeover, expect_smaller) in [(true, true), (false, false)] {
            let mut c = Compressor::new(15, 6, !takeover);
            let mut d = Decompressor::new(!takeover);
            let (mut first, mut second) = (Vec::new(), Vec::new());
            c.compress(&text, &mut first);
            c.compress(&text, &mut second);
            assert_eq!(
                second.len() < first.len(),
                expect_smaller,
                "takeover {takeover}"
            );
            assert_eq!(inflate(&mut d, &first, 1 << 20).unwrap(), text);
            assert_eq!(inflate(&mut d, &second, 1 << 20).unwrap(), text);
        }
    }

    #[test]
    fn empty_messages_in_a_row_keep_the_stream_valid() {
        for takeover in [true, false] {
            let mut c = Compressor::new(12, 6, !takeover);
            let mut d = Decompressor::new(!takeover);
            for message in [&b""[..], b"", b"a", b"", b"abc"] {
                let mut compressed = Vec::new();
                c.compress(message, &mut compressed);
                assert!(!compressed.is_empty());
                assert_eq!(
                    inflate(&mut d, &compressed, 100).unwrap(),
                    message,
                    "takeover {takeover}"
                );
            }
        }
    }

    #[test]
    fn bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 10 << 20];
        let mut compressed = Vec::new();
        Compressor::new(15, 9, false).compress(&zeros, &mut compressed);
        assert!(compressed.len() < 20_000, "{}", compressed.len());
        let mut out = Vec::new();
        let limit = 1 << 20;
        let mut d = Decompressor::new(false);
        assert_eq!(
            d.decompress(&compressed, &mut out, limit),
            Err(ProtocolError::MessageTooBig)
        );
        assert!(out.capacity() <= limit + 1, "held {} bytes", out.capacity());
        assert_eq!(ProtocolError::MessageTooBig.close_code().0, 1009);
    }

    #[test]
    fn corrupt_input_is_1007() {
        // BTYPE 11 is reserved: invalid from the first byte.
        let mut d = Decompressor::new(false);
        let err = inflate(&mut d, &[0x07, 0xff, 0xff, 0xff], 100).unwrap_err();
        assert_eq!(err, ProtocolError::InvalidCompressedData);
        assert_eq!(err.close_code().0, 1007);
    }

    /// Messages whose content repeats across them but not within (under
    /// 250 bytes: as far back as a 2^9 window lets zlib refer), so a later
    /// one compresses well only by reference to an earlier one.
    fn repetitive(n: usize) -> Vec<u8> {
        format!(
            "{n}: The quick brown fox jumps over the lazy dog; pack my box with five \
             dozen liquor jugs. Sphinx of black quartz, judge my vow! How vexingly \
             quick daft zebras jump."
        )
        .into_bytes()
    }

    #[test]
    fn a_fresh_codec_given_the_windows_continues_the_stream() {
        for bits in [15, 10, 9] {
            // Our compressor to the peer's decompressor, and the peer's
            // compressor to our decompressor, with context takeover.
            let mut ours = Compressor::new(bits, 6, false);
            let mut peer_in = Decompressor::new(false);
            let mut peer_out = Compressor::new(bits, 6, false);
            let mut our_in = Decompressor::new(false);
            for n in 0..5 {
                let mut c = Vec::new();
                ours.compress(&repetitive(n), &mut c);
                assert_eq!(inflate(&mut peer_in, &c, 1 << 20).unwrap(), repetitive(n));
                let mut c = Vec::new();
                peer_out.compress(&repetitive(n), &mut c);
                assert_eq!(inflate(&mut our_in, &c, 1 << 20).unwrap(), repetitive(n));
            }
            // The hand-over: the windows go to fresh codecs.
            let (sent, received) = (ours.window().unwrap(), our_in.window().unwrap());
            let total: usize = (0..5).map(|n| repetitive(n).len()).sum();
            assert!(sent.len() <= 1 << bits && sent.len() + 262 >= (1 << bits).min(total));
            assert!(received.ends_with(&repetitive(4)), "bits {bits}");
            drop((ours, our_in));
            let mut ours = Compressor::with_window(bits, 6, false, &sent).unwrap();
            let mut our_in = Decompressor::with_window(false, &received).unwrap();
            let fresh_len = {
                let mut c = Vec::new();
                Compressor::new(bits, 6, false).compress(&repetitive(1), &mut c);
                c.len()
            };
            for n in [1, 3, 1] {
                // Ours: back-references into the carried window (shorter
                // than from scratch), valid for the peer's decompressor.
                let mut c = Vec::new();
                ours.compress(&repetitive(n), &mut c);
                assert!(
                    c.len() < fresh_len / 2,
                    "bits {bits}: {} of {fresh_len}",
                    c.len()
                );
                assert_eq!(inflate(&mut peer_in, &c, 1 << 20).unwrap(), repetitive(n));
                // The peer's: refers back into what the old decompressor had
                // inflated, which a decompressor without it cannot decode.
                let mut c = Vec::new();
                peer_out.compress(&repetitive(n), &mut c);
                assert_ne!(
                    inflate(&mut Decompressor::new(false), &c, 1 << 20).ok(),
                    Some(repetitive(n)),
                    "bits {bits}: the message stands alone"
                );
                assert_eq!(inflate(&mut our_in, &c, 1 << 20).unwrap(), repetitive(n));
            }
        }
    }

    #[test]
    fn windows_are_empty_without_context_takeover_and_bounded() {
        let mut c = Compressor::new(12, 6, true);
        let mut d = Decompressor::new(true);
        let mut out = Vec::new();
        c.compress(&repetitive(0), &mut out);
        assert_eq!(inflate(&mut d, &out, 1 << 20).unwrap(), repetitive(0));
        assert!(c.window().unwrap().is_empty() && d.window().unwrap().is_empty());
        // A long message leaves exactly a full window behind on each side.
        let (mut c, mut d) = (Compressor::new(15, 1, false), Decompressor::new(false));
        let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut out = Vec::new();
        c.compress(&big, &mut out);
        assert_eq!(inflate(&mut d, &out, 1 << 20).unwrap(), big);
        assert_eq!(d.window().unwrap(), big[big.len() - MAX_WINDOW..]);
        let sent = c.window().unwrap();
        assert!(big.ends_with(&sent) && sent.len() + 262 >= MAX_WINDOW);
        let too_long = vec![0; MAX_WINDOW + 1];
        assert!(Compressor::with_window(15, 1, false, &too_long).is_err());
        assert!(Decompressor::with_window(false, &too_long).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any message in any window survives the round trip, however the
        /// compressed bytes are cut (a fragmented compressed message).
        #[test]
        fn round_trip_any_chunking(
            messages in prop::collection::vec(
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..3000),
                    "[a-c ]{0,4000}".prop_map(String::into_bytes),
                ],
                1..4,
            ),
            bits in 9u8..=15,
            takeover in any::<bool>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut c = Compressor::new(bits, 6, !takeover);
            let mut d = Decompressor::new(!takeover);
            for message in messages {
                let mut compressed = Vec::new();
                c.compress(&message, &mut compressed);
                let at = cut.index(compressed.len() + 1);
                let mut out = Vec::new();
                d.decompress(&compressed[..at], &mut out, 1 << 20).unwrap();
                d.decompress(&compressed[at..], &mut out, 1 << 20).unwrap();
                d.finish(&mut out, 1 << 20).unwrap();
                prop_assert_eq!(out, message);
            }
        }
    }
}
