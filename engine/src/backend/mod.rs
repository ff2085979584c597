//! The one seam to the kernel. A backend owns a worker's sockets and its wait;
//! the worker owns everything else. This page is the whole contract.
//!
//! # What a backend calls (the worker's entry points)
//!
//! | call | when |
//! | --- | --- |
//! | `Worker::on_accept(peer, listener)` | a connection was accepted on listener `listener` (its index in `Config::listen_addrs`: the plain addresses, then the TLS ones); returns its key, or `None` (close it) |
//! | `Worker::on_data(key, &mut bytes, io)` | bytes arrived; the worker parses (decrypts, unmasks) them in place; callbacks may write large frames through `io` |
//! | `Worker::on_hangup(key, Hangup)` | EOF or a socket error on `key` |
//! | `Worker::on_writable(key)` | the socket may take more after a write that left bytes behind |
//! | `Worker::on_sent(key, written, blocked, io)` | a submitted write completed (completion backends) |
//! | `Worker::on_frame_sent(key, written, unsent, io)` | a frame submitted by `write_frame` completed; `unsent` is the rest of its header and payload, copied before the backend lets go of it |
//! | `Worker::on_released(key)` | a socket the worker asked to close is gone and nothing of it is in flight |
//! | `Worker::on_buffers_exhausted()` | io_uring: a receive ended with ENOBUFS (counted in the metrics) |
//! | `Worker::on_signal(signal)` | worker 0 of `Server::run` with `shutdown_on_signals`: SIGTERM or SIGINT read from the signalfd the backend waits on (`signals::SignalFd`) |
//! | `Worker::reading_paused(key)` | a query, not an event: a backend reading `key` in a loop stops once its read gate closed (its rate limit, or its TLS handshake waiting for a slot) |
//! | `Worker::end_turn(now, io) -> Turn` | once per loop turn, after the events: see below |
//!
//! Time enters only through `end_turn(now, ..)`: the backend reads the clock,
//! the worker never does, so a test drives it with a fake clock. A wake-up from
//! another thread needs no call: commands are drained in every `end_turn`.
//!
//! # What the worker calls (the backend's [`Io`](crate::runtime::seam::Io))
//!
//! `write(key, outbox)` answers `Written::Now { bytes, blocked }` (readiness:
//! the write happened), `Written::Later` (completion: submitted, `on_sent`
//! follows) or `Written::Failed`; `write_frame(key, header, payload)`, asked
//! during `on_data` only while nothing of `key` is queued or in flight, writes
//! one frame from where it lies (epoll: now; io_uring: submitted when the
//! payload is in the provided buffer being delivered, which stays held until
//! `on_frame_sent`) or answers `None` (the worker queues a copy); `shutdown_write(key)`; `close(key)`, true if
//! the socket is gone now, else `on_released` follows; `pause_reading(key)` and
//! `resume_reading(key)` (a rate limit, or a TLS handshake waiting for a slot: no `on_data` for `key` in between,
//! except what was received before the pause; whatever arrived meanwhile,
//! EOF included, is delivered after the resume); `stop_accepting()` (close the
//! listeners, so that with `net.ipv4.tcp_migrate_req` their queued connections
//! move to another process on the port); for a live hand-over
//! (`docs/HANDOVER.md`), `prepare_detach(key)` (`Ready`, or `Later` while
//! something of it is in flight; io_uring installs a regular descriptor for
//! the direct one then), `detach(key)` (the socket leaves the backend
//! unclosed: nothing of it is read or written there again) and `adopt(key,
//! fd)` (a connected socket another process handed over).
//!
//! # A loop turn, the same on both backends
//!
//! 1. Wait for events, at most `Turn::wait`.
//! 2. Feed them to the entry points above.
//! 3. `end_turn(now, io)`: the worker runs the commands from other threads,
//!    moves its clock (timers, shutdown deadline), reports the connections that
//!    ended (`on_close`, from that one place), delivers publishes, flushes
//!    every connection with something queued through `io` (a few rounds, for
//!    what `on_drain` queues), pauses and resumes reading for rate limits, and
//!    publishes its counters.
//! 4. Stop when `Turn::finished`.
//!
//! The backends never parse WebSocket frames. [`epoll`] writes synchronously
//! and closes at once; [`uring`] submits everything of a turn in one
//! `io_uring_enter` and reports writes and closes by completion.

pub(crate) mod epoll;
pub(crate) mod signals;
pub(crate) mod uring;

use crate::config::BackendKind;

/// The backend the workers will run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chosen {
    Epoll,
    Uring,
}

/// Picks the backend for `kind`: `Auto` tries io_uring and falls back to epoll
/// with one log line; `IoUring` fails with the reason instead.
pub(crate) fn choose(kind: BackendKind) -> Result<Chosen, String> {
    match kind {
        BackendKind::Epoll => Ok(Chosen::Epoll),
        BackendKind::IoUring => uring::probe().map(|()| Chosen::Uring),
        BackendKind::Auto => match uring::probe() {
            Ok(()) => Ok(Chosen::Uring),
            Err(reason) => {
                log::warn!("ringws: io_uring unavailable ({reason}); using epoll");
                Ok(Chosen::Epoll)
            }
        },
    }
}
