//! permessage-deflate (RFC 7692): negotiation of the extension's parameters for
//! both roles (here), and the per-message codec ([`Compressor`],
//! [`Decompressor`], in `codec.rs`) on zlib-rs: raw deflate, the `00 00 ff ff`
//! tail stripped on send and restored on receive, context takeover or not,
//! inflation bounded by the message size limit, and each direction's window
//! read and restored for a live hand-over. `zstream.rs` is the safe wrapper
//! of zlib's stream API the codec calls.
//!
//! [`super::session`] holds a connection's codecs; everything here is sans-I/O.

mod codec;
mod zstream;

pub use codec::{Compressor, Decompressor, MAX_WINDOW};

use super::handshake::ExtensionOffer;

/// The extension's registered name.
pub const EXTENSION: &str = "permessage-deflate";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::handshake::parse_extensions;

    fn server(offers: &str) -> Option<Negotiated> {
        negotiate(parse_extensions(offers), &DeflateConfig::default())
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
}
