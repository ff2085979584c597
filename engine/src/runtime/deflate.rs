//! permessage-deflate in the runtime: what a worker offers for each
//! [`DeflateMode`], and the protocol session an accepted upgrade gets. The
//! codecs themselves are in [`crate::proto::session`].

use crate::config::{Config, DeflateMode};
use crate::proto::Role;
use crate::proto::deflate::{DeflateConfig, Negotiated};
use crate::proto::session::Session;

/// What the worker negotiates, if anything.
pub(crate) fn offer(config: &Config) -> Option<DeflateConfig> {
    let level = config.deflate_level;
    match config.deflate {
        DeflateMode::Off => None,
        // No context takeover either way: the worker's codecs serve everyone.
        DeflateMode::Shared => Some(DeflateConfig {
            max_window_bits: 15,
            request_no_context_takeover: true,
            no_context_takeover: true,
            level,
        }),
        DeflateMode::Dedicated { window_bits } => Some(DeflateConfig {
            max_window_bits: window_bits,
            request_no_context_takeover: false,
            no_context_takeover: false,
            level,
        }),
    }
}

/// The session of a connection that negotiated `negotiated` (or nothing).
pub(crate) fn session(config: &Config, negotiated: Option<&Negotiated>) -> Session {
    match (negotiated, config.deflate) {
        (None, _) | (Some(_), DeflateMode::Off) => Session::new(),
        (Some(n), DeflateMode::Shared) => Session::with_shared_deflate(n.server_max_window_bits),
        (Some(n), DeflateMode::Dedicated { .. }) => {
            Session::with_deflate(Role::Server, n, config.deflate_level)
        }
    }
}
