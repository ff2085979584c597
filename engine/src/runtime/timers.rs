//! The worker's clock and each connection's timers: handshake, idle, auto-ping
//! and pong deadline, close. The clock moves only when the backend passes in
//! the time; every connection is swept once per tick (uWebSockets' coarse
//! timer: O(1) per connection per tick, no timer entry per message).

use std::time::{Duration, Instant};

use super::conn::{Finish, Link, Phase};
use super::shared::Shared;
use super::stream::{Stream, Timer};
use super::upgrade;
use crate::config::Config;
use crate::proto::close::CloseCode;
use crate::proto::frame::OpCode;
use crate::types::CloseCause;

/// The configured durations, in ticks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticks {
    handshake: u32,
    idle: Option<u32>,
    ping: Option<u32>,
    pong: u32,
    close: u32,
    /// How long an HTTP/2 socket carrying no stream stays open.
    carrier_idle: u32,
}

/// How long an HTTP/2 socket carrying no stream stays open without an idle
/// timeout: long enough for a page's scripts to open their WebSockets on the
/// connection that loaded it.
const CARRIER_IDLE: Duration = Duration::from_secs(60);

impl Ticks {
    /// The handshake deadline of a connection accepted during tick `now`:
    /// the tick the accept fell in counts for nothing, so the deadline passes
    /// no sooner than the whole timeout after the accept.
    pub fn handshake_deadline(&self, now: u32) -> u32 {
        now + self.handshake + 1
    }

    pub fn new(config: &Config) -> Self {
        let tick = config.tick();
        let to_ticks = |d: Duration| (d.as_nanos().div_ceil(tick.as_nanos()) as u32).max(1);
        Self {
            handshake: to_ticks(config.handshake_timeout),
            idle: config.idle_timeout.map(to_ticks),
            ping: config.ping_interval.map(to_ticks),
            pong: to_ticks(config.pong_timeout),
            close: to_ticks(config.close_timeout),
            carrier_idle: to_ticks(config.idle_timeout.unwrap_or(CARRIER_IDLE)),
        }
    }
}

/// Time in ticks since the worker started, as the backend last told it.
#[derive(Debug)]
pub(crate) struct Clock {
    epoch: Instant,
    tick: Duration,
    now: u32,
}

impl Clock {
    pub fn new(epoch: Instant, tick: Duration) -> Self {
        Self {
            epoch,
            tick,
            now: 0,
        }
    }

    /// The current tick.
    pub fn now(&self) -> u32 {
        self.now
    }

    /// The tick that `now` falls in (the clock itself does not move).
    pub fn tick_of(&self, now: Instant) -> u32 {
        (now.saturating_duration_since(self.epoch).as_nanos() / self.tick.as_nanos()) as u32
    }

    /// Moves to the tick of `now`; true if it is a new one.
    pub fn advance(&mut self, now: Instant) -> bool {
        let tick = self.tick_of(now);
        let moved = tick > self.now;
        self.now = self.now.max(tick);
        moved
    }

    /// Milliseconds from the worker's start to `now` (finer than a tick).
    pub fn millis(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// How long after `now` the next tick begins.
    pub fn until_next_tick(&self, now: Instant) -> Duration {
        let next = self.epoch + self.tick * (self.now + 1);
        next.saturating_duration_since(now)
    }
}

/// One stream's timers at tick `now`; `gated`: its socket's reading is
/// paused; `carrying`: its socket carries HTTP/2 streams.
pub(crate) fn sweep<U>(
    stream: &mut Stream<U>,
    gated: bool,
    carrying: bool,
    now: u32,
    ticks: &Ticks,
    shared: &mut Shared<U>,
) {
    let Stream {
        link,
        decoder,
        timer,
    } = stream;
    if now.wrapping_sub(timer.last_rx) >= 2 {
        // Quiet for a whole tick: its receive memory goes back.
        decoder.release_buffers();
    }
    if link.deadline_phase != link.phase() {
        link.deadline_phase = link.phase();
        timer.deadline = now + ticks.close;
    }
    match link.phase() {
        Phase::Handshake => {
            // A deferred upgrade still undecided gets 503; one whose decision
            // is on its way waits for it.
            if now >= timer.deadline
                && !upgrade::expire(shared, link)
                && link.pending_mut().is_none()
            {
                abort_silent(link, shared);
            }
        }
        Phase::Carrier => {
            // Its streams have timers of their own; without any, a quiet
            // HTTP/2 socket is ended (GOAWAY first).
            if !carrying && now.wrapping_sub(timer.last_rx) >= ticks.carrier_idle {
                link.end(
                    shared,
                    Finish::ShutdownWrite,
                    CloseCode::ABNORMAL,
                    "",
                    CloseCause::Timeout,
                );
            }
        }
        Phase::Open if gated || link.rate_limited() => {
            // We chose not to read it: whatever the peer sent waits in the
            // socket, so its silence proves nothing.
            timer.received(now);
        }
        Phase::Open => {
            let silent = now.wrapping_sub(timer.last_rx);
            if timer.ping_sent != Timer::NO_PING && now.wrapping_sub(timer.ping_sent) >= ticks.pong
            {
                // No frame since the ping: the peer is presumed dead.
                shared.counters.missed_pongs += 1;
                abort_silent(link, shared);
            } else if ticks.idle.is_some_and(|idle| silent >= idle) {
                link.start_close(
                    shared,
                    CloseCode::GOING_AWAY,
                    "idle timeout",
                    CloseCause::Timeout,
                );
            } else if timer.ping_sent == Timer::NO_PING
                && ticks.ping.is_some_and(|ping| silent >= ping)
            {
                link.send_control(shared, OpCode::Ping, b"");
                timer.ping_sent = now;
            }
        }
        Phase::Closing | Phase::Ended => {
            if now >= timer.deadline {
                let (code, cause) = (link.local_code(), link.cause_or(CloseCause::Timeout));
                link.end(shared, Finish::Abort, code, "", cause);
            }
        }
    }
}

/// Drops a peer that said nothing in time, without a close frame.
fn abort_silent<U>(link: &mut Link<U>, shared: &mut Shared<U>) {
    link.end(
        shared,
        Finish::Abort,
        CloseCode::ABNORMAL,
        "",
        CloseCause::Timeout,
    );
}
