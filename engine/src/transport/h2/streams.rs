//! The connection's streams (RFC 9113 §5.1) and their flow-control windows
//! (§6.9). Only streams that are open on at least one side are kept (at most
//! SETTINGS_MAX_CONCURRENT_STREAMS of them): a closed stream is any id at or
//! below the highest the peer opened that is not kept, so closed streams
//! cost no memory. The one exception is a small ring of the ids we reset
//! last: the peer may still have frames for them in flight, which RFC 9113
//! §5.1 says to ignore rather than answer.

use std::collections::HashMap;

/// How many recently reset ids are remembered. Frames for an id reset
/// before the last `RECENT_RESETS` resets are answered as on any closed
/// stream (RST_STREAM(STREAM_CLOSED), counted in the reset budget): a peer
/// that keeps sending on streams long reset is the abuser that budget stops.
const RECENT_RESETS: usize = 32;

/// One stream's state.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    /// What we may still send: the peer's window for this stream.
    pub send_window: i64,
    /// What the peer may still send before we credit more.
    pub recv_window: i64,
    /// Bytes received and consumed (or discarded) not yet credited back.
    pub recv_unacked: u32,
    /// The peer sent END_STREAM (half-closed remote).
    pub remote_closed: bool,
    /// We sent END_STREAM (half-closed local).
    pub local_closed: bool,
    /// We queued the response HEADERS: DATA may follow.
    pub responded: bool,
    /// Reading is paused: no stream WINDOW_UPDATE until resumed.
    pub paused: bool,
    /// What the request's content-length still allows (RFC 9113 §8.1.1).
    pub body_left: Option<u64>,
}

impl Stream {
    pub(crate) fn new(send_window: i64, recv_window: i64, body: Option<u64>) -> Self {
        Self {
            send_window,
            recv_window,
            recv_unacked: 0,
            remote_closed: false,
            local_closed: false,
            responded: false,
            paused: false,
            body_left: body,
        }
    }

    pub(crate) fn closed(&self) -> bool {
        self.remote_closed && self.local_closed
    }
}

/// What a peer's frame on a stream id finds there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// Kept: open on at least one side.
    Open,
    /// Never used (an id above the highest the peer opened, or an even one).
    Idle,
    /// Closed; `recently_reset` by us (its frames in flight are ignored).
    Closed { recently_reset: bool },
}

/// The streams of one connection.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    map: HashMap<u32, Stream>,
    /// The highest stream id the peer opened (or tried to).
    pub last_peer: u32,
    recent: [u32; RECENT_RESETS],
    recent_next: usize,
}

impl Streams {
    pub(crate) fn find(&self, id: u32) -> Found {
        if self.map.contains_key(&id) {
            Found::Open
        } else if id == 0 || id % 2 == 0 || id > self.last_peer {
            Found::Idle
        } else {
            Found::Closed {
                recently_reset: self.recent.contains(&id),
            }
        }
    }

    pub(crate) fn get(&self, id: u32) -> Option<&Stream> {
        self.map.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Stream> {
        self.map.get_mut(&id)
    }

    pub(crate) fn insert(&mut self, id: u32, stream: Stream) {
        self.map.insert(id, stream);
    }

    /// Forgets a stream; `reset`: we sent RST_STREAM for it, so its frames
    /// in flight are to be ignored.
    pub(crate) fn remove(&mut self, id: u32, reset: bool) -> Option<Stream> {
        if reset && id != 0 {
            self.recent[self.recent_next] = id;
            self.recent_next = (self.recent_next + 1) % RECENT_RESETS;
        }
        self.map.remove(&id)
    }

    /// Forgets `id` if both sides are closed.
    pub(crate) fn forget_if_closed(&mut self, id: u32) {
        if self.map.get(&id).is_some_and(Stream::closed) {
            self.map.remove(&id);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Forgets every stream: the connection failed, nothing more is sent on
    /// any of them.
    pub(crate) fn clear(&mut self) {
        self.map = HashMap::new();
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Stream> {
        self.map.values_mut()
    }

    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Stream)> {
        self.map.iter().map(|(&id, s)| (id, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_ids_are_derived_and_resets_remembered_in_a_bounded_ring() {
        let mut s = Streams {
            last_peer: 9,
            ..Streams::default()
        };
        s.insert(9, Stream::new(1, 1, None));
        assert_eq!(s.find(9), Found::Open);
        assert_eq!(s.find(11), Found::Idle);
        assert_eq!(s.find(4), Found::Idle);
        assert_eq!(s.find(0), Found::Idle);
        assert_eq!(
            s.find(7),
            Found::Closed {
                recently_reset: false
            }
        );
        s.remove(9, true);
        assert_eq!(
            s.find(9),
            Found::Closed {
                recently_reset: true
            }
        );
        s.last_peer = 1001;
        for id in (11..11 + 2 * RECENT_RESETS as u32).step_by(2) {
            s.remove(id, true);
        }
        assert_eq!(
            s.find(9),
            Found::Closed {
                recently_reset: false
            }
        );
        assert_eq!(s.len(), 0);
    }
}
