//! What of a session's permessage-deflate a live hand-over carries to
//! another process, and the session rebuilt there. Without context takeover
//! only the parameters travel; with it, each direction's window too (the
//! last up to 32 KiB of uncompressed history), which fresh codecs are
//! primed with so the stream goes on: the peer's next message may refer
//! back into what our old decompressor had inflated, and our next one into
//! what our old compressor had compressed (which the peer's decompressor
//! holds). The codecs are at a message boundary whenever the connection
//! leaves, a message in progress or not: a compressed message is inflated
//! only once whole (its bytes so far travel with the decoder's state), and
//! compressed whole when sent.

use super::{CloseHandshake, Decompressor, OwnCodecs, Session};
use crate::proto::deflate::{Compressor, MAX_WINDOW};

/// What of a session's permessage-deflate another process can take over
/// (a live hand-over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeflateCarry {
    /// No permessage-deflate.
    Off,
    /// On the endpoint's shared codecs, with our compressor's window.
    Shared(u8),
    /// On codecs of its own.
    Own {
        /// Our compressor's window, 9..=15.
        window: u8,
        /// Its level, 0..=9.
        level: u32,
        /// Context takeover either way, and the windows kept.
        context: DeflateContext,
    },
}

/// The context of a session's own codecs: the negotiated parameters the
/// new process needs besides our window and level, and the windows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeflateContext {
    /// The peer's compressor's window, 8..=15.
    pub peer_window: u8,
    /// We reset our compressor after every message (no context takeover).
    pub resets: bool,
    /// The peer resets its compressor after every message.
    pub peer_resets: bool,
    /// Our compressor's window: the last bytes it compressed, at most
    /// 2^window (empty where it resets, or has compressed nothing).
    pub sent: Vec<u8>,
    /// Our decompressor's window: the last bytes it inflated, at most
    /// 2^peer_window (empty where the peer resets).
    pub received: Vec<u8>,
}

impl Session {
    /// Why its permessage-deflate cannot be carried, if it cannot: only a
    /// session whose close handshake has not begun is carried. Cheap: the
    /// worker asks before anything else of the connection is captured.
    pub fn carry_refusal(&self) -> Option<&'static str> {
        (self.close.close_sent() || self.close.close_received())
            .then_some("its close handshake has begun")
    }

    /// Its permessage-deflate as another process can take it over (the
    /// windows copied: up to 2 x 32 KiB), or why it cannot. The codecs are
    /// between messages whenever it is called (see the module's note).
    pub fn deflate_carry(&self) -> Result<DeflateCarry, &'static str> {
        if let Some(reason) = self.carry_refusal() {
            return Err(reason);
        }
        Ok(match (&self.own, self.shared_window) {
            (None, 0) => DeflateCarry::Off,
            (None, window) => DeflateCarry::Shared(window),
            (Some(own), _) => {
                let sent = match (&own.compressor, own.no_context_takeover) {
                    (Some(c), false) => c.window()?,
                    _ => Vec::new(),
                };
                let received = if own.decompressor.resets() {
                    Vec::new()
                } else {
                    let mut w = own.decompressor.window()?;
                    // The peer cannot refer further back than its window (zlib
                    // compresses with 2^9 where 2^8 was negotiated): the rest
                    // need not travel.
                    let reach = 1usize << own.peer_window.clamp(9, 15);
                    w.drain(..w.len().saturating_sub(reach));
                    w
                };
                DeflateCarry::Own {
                    window: own.window,
                    level: own.level,
                    context: DeflateContext {
                        peer_window: own.peer_window,
                        resets: own.no_context_takeover,
                        peer_resets: own.decompressor.resets(),
                        sent,
                        received,
                    },
                }
            }
        })
    }

    /// The session another process carried over (see
    /// [`Self::deflate_carry`]), for the server role; `Err` when a window
    /// is refused (longer than 32 KiB, or kept where the parameters say it
    /// resets).
    pub fn carried(carry: &DeflateCarry) -> Result<Self, &'static str> {
        Ok(match carry {
            DeflateCarry::Off => Self::new(),
            DeflateCarry::Shared(window) => Self::with_shared_deflate(*window),
            DeflateCarry::Own {
                window,
                level,
                context: c,
            } => {
                if c.sent.len() > MAX_WINDOW || c.received.len() > MAX_WINDOW {
                    return Err("a permessage-deflate window longer than 32 KiB");
                }
                if (c.resets && !c.sent.is_empty()) || (c.peer_resets && !c.received.is_empty()) {
                    return Err("a permessage-deflate window where no context is kept");
                }
                let (window, level) = ((*window).clamp(9, 15), (*level).min(9));
                // A compressor with history is made now (a dictionary goes in
                // before its first message); one without, on first use.
                let compressor = if c.sent.is_empty() {
                    None
                } else {
                    Some(Compressor::with_window(window, level, c.resets, &c.sent)?)
                };
                Self {
                    close: CloseHandshake::new(),
                    shared_window: 0,
                    own: Some(Box::new(OwnCodecs {
                        compressor,
                        window,
                        level,
                        no_context_takeover: c.resets,
                        peer_window: c.peer_window.clamp(8, 15),
                        decompressor: Decompressor::with_window(c.peer_resets, &c.received)?,
                    })),
                }
            }
        })
    }
}
