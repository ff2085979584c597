//! permessage-deflate (RFC 7692): negotiation of the extension's parameters for
//! both roles, and the per-message codec on flate2 (zlib-rs backend): raw
//! deflate, the `00 00 ff ff` tail stripped on send and restored on receive,
//! context takeover or not, and inflation bounded by the message size limit.
//!
//! [`super::session`] holds a connection's codecs; everything here is sans-I/O.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::error::ProtocolError;
use super::handshake::ExtensionOffer;

/// The extension's registered name.
pub const EXTENSION: &str = "permessage-deflate";

/// The empty stored block a sync flush ends with; stripped on send (RFC 7692
/// section 7.2.1) and appended before inflating (section 7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What this endpoint is willing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Largest LZ77 window (base-2 logarithm, 9..=15) this endpoint compresses
    /// with; smaller saves memory per connection. Default 15.
    pub max_window_bits: u8,
    /// Ask the peer to reset its compressor after every message (it then needs
    /// no inflate state between messages on our side). Default false.
    pub request_no_context_takeover: bool,
    /// Reset our own compressor after every message. Default false.
    pub no_context_takeover: bool,
    /// Compression level, 0..=9. Default 1 (fast).
    pub level: u32,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            max_window_bits: 15,
            request_no_context_takeover: false,
            no_context_takeover: false,
            level: 1,
        }
    }
}

/// The parameters in effect after negotiation, from the server's point of view
/// (`server_*` applies to what the server sends, `client_*` to what it receives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The server's window, 9..=15.
    pub server_max_window_bits: u8,
    /// The client's window, 8..=15.
    pub client_max_window_bits: u8,
}

impl Negotiated {
    /// The `Sec-WebSocket-Extensions` value announcing these parameters.
    pub fn header_value(&self) -> String {
        let mut value = String::from(EXTENSION);
        if self.server_no_context_takeover {
            value.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            value.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            value.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        if self.client_max_window_bits < 15 {
            value.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_max_window_bits
            ));
        }
        value
    }
}

/// The parameters of one offer (or of a server's answer), checked for
/// duplicates, unknown names and out-of-range values.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (a client's "I can take a hint").
    client_max_window_bits: Option<Option<u8>>,
}

fn window_bits(value: Option<&str>, min: u8) -> Option<u8> {
    let bits: u8 = value?.parse().ok()?;
    (min..=15).contains(&bits).then_some(bits)
}

impl Params {
    /// `None` for an invalid offer (RFC 7692 section 5.1: decline it).
    fn parse(offer: &ExtensionOffer<'_>) -> Option<Self> {
        let mut p = Params::default();
        let mut seen = [false; 4];
        for param in offer.params() {
            let index = match param.name.to_ascii_lowercase().as_str() {
                "server_no_context_takeover" => 0,
                "client_no_context_takeover" => 1,
                "server_max_window_bits" => 2,
                "client_max_window_bits" => 3,
                _ => return None,
            };
            if std::mem::replace(&mut seen[index], true) {
                return None;
            }
            match index {
                0 | 1 if param.value.is_some() => return None,
                0 => p.server_no_context_takeover = true,
                1 => p.client_no_context_takeover = true,
                2 => p.server_max_window_bits = Some(window_bits(param.value, 8)?),
                _ => {
                    p.client_max_window_bits = Some(match param.value {
                        None => None,
                        value => Some(window_bits(value, 8)?),
                    })
                }
            }
        }
        Some(p)
    }
}

/// Server role: the first acceptable permessage-deflate offer among the
/// client's, answered with the parameters in effect; `None` when there is none
/// (the connection then runs uncompressed).
pub fn negotiate<'a>(
    offers: impl IntoIterator<Item = ExtensionOffer<'a>>,
    config: &DeflateConfig,
) -> Option<Negotiated> {
    offers
        .into_iter()
        .filter(|offer| offer.name().eq_ignore_ascii_case(EXTENSION))
        .find_map(|offer| {
            let p = Params::parse(&offer)?;
            // zlib cannot compress with a 256-byte window: decline a request for one.
            let server_bits = p
                .server_max_window_bits
                .unwrap_or(15)
                .min(config.max_window_bits);
            if server_bits < 9 {
                return None;
            }
            let client_bits = match p.client_max_window_bits {
                // The client can take a limit: announce ours only if it saves memory.
                Some(None) => config.max_window_bits,
                Some(Some(bits)) => bits,
                None => 15,
            };
            Some(Negotiated {
                server_no_context_takeover: p.server_no_context_takeover
                    || config.no_context_takeover,
                client_no_context_takeover: p.client_no_context_takeover
                    || config.request_no_context_takeover,
                server_max_window_bits: server_bits,
                client_max_window_bits: client_bits,
            })
        })
}

/// Client role: the offer to send in `Sec-WebSocket-Extensions`.
pub fn client_offer(config: &DeflateConfig) -> String {
    let mut value = format!("{EXTENSION}; client_max_window_bits");
    if config.max_window_bits < 15 {
        value = format!(
            "{EXTENSION}; client_max_window_bits={}",
            config.max_window_bits
        );
    }
    if config.request_no_context_takeover {
        value.push_str("; server_no_context_takeover");
    }
    if config.no_context_takeover {
        value.push_str("; client_no_context_takeover");
    }
    value
}

/// Client role: checks the server's answer to [`client_offer`].
pub fn client_accept(
    answer: &ExtensionOffer<'_>,
    config: &DeflateConfig,
) -> Result<Negotiated, String> {
    if !answer.name().eq_ignore_ascii_case(EXTENSION) {
        return Err(format!("unexpected extension {}", answer.name()));
    }
    let p = Params::parse(answer).ok_or("invalid permessage-deflate parameters")?;
    let client_bits = match p.client_max_window_bits {
        Some(Some(bits)) if bits <= config.max_window_bits => bits,
        Some(_) => return Err("client_max_window_bits beyond what was offered".into()),
        None => config.max_window_bits,
    };
    if client_bits < 9 {
        return Err("a client window of 256 bytes is not supported".into());
    }
    Ok(Negotiated {
        server_no_context_takeover: p.server_no_context_takeover,
        client_no_context_takeover: p.client_no_context_takeover || config.no_context_takeover,
        server_max_window_bits: p.server_max_window_bits.unwrap_or(15),
        client_max_window_bits: client_bits,
    })
}

/// Compresses messages for one direction.
#[derive(Debug)]
pub struct Compressor {
    inner: Compress,
    no_context_takeover: bool,
}

impl Compressor {
    /// A compressor with a window of `window_bits` (9..=15) at `level` (0..=9).
    pub fn new(window_bits: u8, level: u32, no_context_takeover: bool) -> Self {
        Self {
            inner: Compress::new_with_window_bits(
                Compression::new(level.min(9)),
                false,
                window_bits.clamp(9, 15),
            ),
            no_context_takeover,
        }
    }

    /// Appends the compressed form of `payload` (without the `00 00 ff ff` tail)
    /// to `out`.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let mut input = payload;
        loop {
            out.reserve(input.len() / 2 + 64);
            let before = self.inner.total_in();
            // Deflate with a sync flush only fails on a corrupted stream state,
            // which this type never produces; treat it as an empty result.
            if self
                .inner
                .compress_vec(input, out, FlushCompress::Sync)
                .is_err()
            {
                break;
            }
            input = &input[(self.inner.total_in() - before) as usize..];
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
    inner: Decompress,
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
            inner: Decompress::new_with_window_bits(false, 15),
            no_context_takeover,
        }
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
            let (before_in, before_out) = (self.inner.total_in(), out.len());
            let status = self
                .inner
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| ProtocolError::InvalidCompressedData)?;
            input = &input[(self.inner.total_in() - before_in) as usize..];
            if out.len() > max {
                return Err(ProtocolError::MessageTooBig);
            }
            if status == Status::StreamEnd {
                // The sender ended the deflate stream (BFINAL): the next bytes, if
                // any, start a new one.
                self.inner.reset(false);
            }
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
            let stuck = self.inner.total_in() == before_in && out.len() == before_out;
            if stuck && out.len() < out.capacity() {
                return Err(ProtocolError::InvalidCompressedData);
            }
        }
    }

    /// Forgets the stream state (after an error, so that a shared decompressor
    /// serves the next message cleanly).
    pub fn reset(&mut self) {
        self.inner.reset(false);
    }

    /// Ends a compressed message: inflates the `00 00 ff ff` tail the sender
    /// stripped, then resets the state if the peer does not take over context.
    pub fn finish(&mut self, out: &mut Vec<u8>, max: usize) -> Result<(), ProtocolError> {
        self.decompress(&TAIL, out, max)?;
        if self.no_context_takeover {
            self.inner.reset(false);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::handshake::parse_extensions;
    use proptest::prelude::*;

    fn server(offers: &str) -> Option<Negotiated> {
        negotiate(parse_extensions(offers), &DeflateConfig::default())
    }

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

    #[test]
    fn negotiation_takes_the_first_acceptable_offer() {
        assert_eq!(
            server("permessage-deflate"),
            Some(Negotiated {
                server_no_context_takeover: false,
                client_no_context_takeover: false,
                server_max_window_bits: 15,
                client_max_window_bits: 15,
            })
        );
        // A browser's offer.
        let n = server("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(n.header_value(), "permessage-deflate");
        // Every parameter, with and without quotes.
        let n = server(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=\"12\"",
        )
        .unwrap();
        assert_eq!(
            n.header_value(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=12"
        );
        // Invalid offers are declined and the next one is taken.
        for invalid in [
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; unknown_param",
            // zlib cannot compress with a 256-byte window.
            "permessage-deflate; server_max_window_bits=8",
        ] {
            assert_eq!(server(invalid), None, "{invalid}");
            let n = server(&format!(
                "{invalid}, permessage-deflate; server_max_window_bits=11"
            ))
            .unwrap();
            assert_eq!(n.server_max_window_bits, 11, "{invalid}");
        }
        assert_eq!(server("x-webkit-deflate-frame"), None);
    }

    #[test]
    fn client_offer_and_answer_round_trip() {
        let config = DeflateConfig {
            max_window_bits: 12,
            ..DeflateConfig::default()
        };
        let offer = client_offer(&config);
        assert_eq!(offer, "permessage-deflate; client_max_window_bits=12");
        let answer = negotiate(parse_extensions(&offer), &DeflateConfig::default()).unwrap();
        let header = answer.header_value();
        let accepted = client_accept(&parse_extensions(&header).next().unwrap(), &config).unwrap();
        assert_eq!(accepted, answer);
        // A server may not raise the client's window past the offer.
        let bad = parse_extensions("permessage-deflate; client_max_window_bits=15")
            .next()
            .unwrap();
        assert!(client_accept(&bad, &config).is_err());
        let bad = parse_extensions("permessage-deflate; bogus")
            .next()
            .unwrap();
        assert!(client_accept(&bad, &config).is_err());
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
