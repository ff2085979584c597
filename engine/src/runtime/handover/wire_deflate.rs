//! The record's permessage-deflate context (see [`super`]'s layout): the
//! parameters of a session's own codecs besides its window and level, and
//! each direction's window, bounded at 32 KiB. Present only where the
//! record's deflate kind is 2 (codecs of its own).

use super::{Reader, WireError};
use crate::proto::deflate::MAX_WINDOW;
use crate::proto::session::DeflateContext;

pub(super) fn put(out: &mut Vec<u8>, c: &DeflateContext) {
    out.push(c.peer_window);
    out.push(u8::from(c.resets) | u8::from(c.peer_resets) << 1);
    for window in [&c.sent, &c.received] {
        // `fits` bounds each at 32 KiB: a u16 holds its length.
        out.extend_from_slice(&(window.len() as u16).to_le_bytes());
        out.extend_from_slice(window);
    }
}

/// Whether `c` fits what [`get`] accepts.
pub(super) fn fits(c: &DeflateContext) -> Result<(), WireError> {
    if c.sent.len() > MAX_WINDOW || c.received.len() > MAX_WINDOW {
        return Err(WireError::TooLong("permessage-deflate window"));
    }
    Ok(())
}

pub(super) fn get(r: &mut Reader<'_>) -> Result<DeflateContext, WireError> {
    let [peer_window, flags] = r.array::<2>()?;
    if !(8..=15).contains(&peer_window) || flags > 3 {
        return Err(WireError::Invalid("permessage-deflate context"));
    }
    let mut windows = [Vec::new(), Vec::new()];
    for window in &mut windows {
        let len = usize::from(r.u16()?);
        if len > MAX_WINDOW {
            return Err(WireError::TooLong("permessage-deflate window"));
        }
        *window = r.take(len)?.to_vec();
    }
    let [sent, received] = windows;
    let (resets, peer_resets) = (flags & 1 != 0, flags & 2 != 0);
    // A side that resets after every message keeps no window.
    if (resets && !sent.is_empty()) || (peer_resets && !received.is_empty()) {
        return Err(WireError::Invalid("permessage-deflate context"));
    }
    Ok(DeflateContext {
        peer_window,
        resets,
        peer_resets,
        sent,
        received,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{decode, encode, fits};
    use super::*;
    use crate::proto::session::DeflateCarry;
    use crate::runtime::handover::state::Snapshot;

    fn with_windows(sent: usize, received: usize) -> Snapshot {
        Snapshot {
            peer: "127.0.0.1:9".parse().unwrap(),
            deflate: DeflateCarry::Own {
                window: 10,
                level: 1,
                context: DeflateContext {
                    peer_window: 15,
                    resets: false,
                    peer_resets: false,
                    sent: (0..sent).map(|i| i as u8).collect(),
                    received: (0..received).map(|i| (i * 3) as u8).collect(),
                },
            },
            outbox: vec![],
            stalled: false,
            silent_ms: 0,
            ping_ms: None,
            limiter: None,
            topics: vec![],
            data: vec![],
            tls: None,
            read: Default::default(),
        }
    }

    /// The deflate context comes last but for the read side: its offset.
    fn context_at(s: &Snapshot, bytes: &[u8]) -> usize {
        let DeflateCarry::Own { context, .. } = &s.deflate else {
            unreachable!()
        };
        // The read side follows the context.
        let mut read = Vec::new();
        super::super::partial::put(&mut read, &s.read);
        bytes.len() - read.len() - 2 - 4 - context.sent.len() - context.received.len()
    }

    #[test]
    fn full_windows_survive_the_trip_and_every_cut_is_refused() {
        let s = with_windows(MAX_WINDOW, MAX_WINDOW);
        assert_eq!(fits(&s), Ok(()));
        let bytes = encode(&s);
        assert_eq!(decode(&bytes), Ok(s.clone()));
        for cut in (0..bytes.len())
            .step_by(97)
            .chain(bytes.len() - 80..bytes.len())
        {
            assert_eq!(decode(&bytes[..cut]), Err(WireError::Truncated), "{cut}");
        }
        // No windows (nothing compressed yet): still a context.
        let empty = with_windows(0, 0);
        assert_eq!(decode(&encode(&empty)), Ok(empty));
    }

    #[test]
    fn an_oversized_window_is_refused_both_ways() {
        for (sent, received) in [(MAX_WINDOW + 1, 0), (0, MAX_WINDOW + 1)] {
            let s = with_windows(sent, received);
            let too_long = WireError::TooLong("permessage-deflate window");
            assert_eq!(fits(&s), Err(too_long));
            assert_eq!(decode(&encode(&s)), Err(too_long));
        }
    }

    #[test]
    fn a_bad_context_is_refused() {
        let s = with_windows(100, 200);
        let bytes = encode(&s);
        let at = context_at(&s, &bytes);
        let invalid = Err(WireError::Invalid("permessage-deflate context"));
        for (offset, value) in [(0, 7), (0, 16), (1, 4), (1, 1), (1, 2)] {
            let mut bad = bytes.clone();
            bad[at + offset] = value;
            assert_eq!(decode(&bad), invalid, "byte {offset} = {value}");
        }
    }
}
