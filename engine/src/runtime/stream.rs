//! A WebSocket stream: what one WebSocket owns, whatever socket carries it —
//! its [`Link`] (phase, send queue, protocol session, user data), its frame
//! decoder and its timers. Inbound code ([`super::dispatch`],
//! [`super::upgrade`], [`super::receive`]) and the timer sweep take a stream;
//! the socket below it ([`super::socket`]) owns the transport and the read
//! gate. Over HTTP/1.1 a socket carries one stream; a multiplexing transport
//! (HTTP/2, RFC 8441) will carry several.

use std::net::SocketAddr;

use super::conn::Link;
use crate::proto::message::Decoder;
use crate::types::ConnId;

/// One WebSocket stream: named by its [`ConnId`] (`link.id`).
#[derive(Debug)]
pub(crate) struct Stream<U> {
    pub link: Link<U>,
    pub decoder: Decoder,
    pub timer: Timer,
}

impl<U> Stream<U> {
    pub fn new(id: ConnId, peer: SocketAddr, timer: Timer) -> Self {
        Self {
            link: Link::new(id, peer),
            decoder: Decoder::new(),
            timer,
        }
    }
}

/// One connection's timer state; [`super::timers::sweep`] moves it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer {
    /// Tick of the last byte received.
    pub last_rx: u32,
    /// Tick at which the phase's deadline passes (handshake, close, end).
    pub deadline: u32,
    /// Tick of an auto-ping not yet answered by any frame, or
    /// [`Self::NO_PING`].
    pub ping_sent: u32,
    /// The worker's time in ms (wrapping) when the connection was accepted,
    /// for the handshake-duration metric (a deferred upgrade's wait included).
    pub accepted_ms: u32,
}

impl Timer {
    /// [`Timer::ping_sent`] when no auto-ping is outstanding.
    pub const NO_PING: u32 = u32::MAX;

    /// The timer of a connection accepted at tick `now`, whose handshake must
    /// be done by tick `deadline`.
    pub fn accepted(now: u32, deadline: u32) -> Self {
        Self {
            last_rx: now,
            deadline,
            ping_sent: Self::NO_PING,
            accepted_ms: 0,
        }
    }

    /// Bytes arrived at tick `now`: the peer is alive.
    pub fn received(&mut self, now: u32) {
        self.last_rx = now;
        self.ping_sent = Self::NO_PING;
    }

    /// Starts the handshake clock at `ms` (worker time).
    pub fn start_handshake_clock(&mut self, ms: u32) {
        self.accepted_ms = ms;
    }

    /// Milliseconds from the accept to `ms`, for a connection just upgraded.
    pub fn handshake_ms(&self, ms: u32) -> u32 {
        ms.wrapping_sub(self.accepted_ms)
    }
}
