//! A socket that carries streams: HTTP/2 ([`super::h2`]) over the transport
//! the socket had (plain or TLS), and which of the caller's keys each
//! HTTP/2 stream is. The caller (the runtime) keeps each stream where it
//! keeps everything else and names it here by its key; this module knows no
//! more of it than that.

use std::collections::HashMap;

use super::Transport;
use super::h2::H2;

/// An HTTP/2 socket's transport: the codec, what it runs over, and its
/// streams. Its fields are apart so that a read of `below` can hand what it
/// opened to `h2` and `streams` while it goes on.
#[derive(Debug)]
pub(crate) struct Mux {
    /// What the socket spoke before HTTP/2: plain or TLS.
    pub below: Transport,
    pub h2: H2,
    pub streams: Streams,
    /// Keys of streams with bytes to send that the peer's windows or the
    /// socket's queue held back: flushed again when either opens.
    pub waiting: Vec<u32>,
}

impl Mux {
    pub fn new(below: Transport, h2: H2) -> Self {
        Self {
            below,
            h2,
            streams: Streams::default(),
            waiting: Vec::new(),
        }
    }

    /// How many streams are carried.
    pub fn carried(&self) -> usize {
        self.streams.0.len()
    }
}

/// Each carried stream's key, by HTTP/2 stream id.
#[derive(Debug, Default)]
pub(crate) struct Streams(HashMap<u32, u32>);

impl Streams {
    /// The key of HTTP/2 stream `stream`, if it is carried here.
    pub fn key(&self, stream: u32) -> Option<usize> {
        self.0.get(&stream).map(|&key| key as usize)
    }

    /// Stream `stream` is carried as `key`.
    pub fn insert(&mut self, stream: u32, key: usize) {
        self.0.insert(stream, key as u32);
    }

    /// Stream `stream` is no longer carried; its key, if it was.
    pub fn remove(&mut self, stream: u32) -> Option<usize> {
        self.0.remove(&stream).map(|key| key as usize)
    }

    /// The keys of every stream carried.
    pub fn keys(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.values().map(|&key| key as usize)
    }
}
