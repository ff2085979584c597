//! The one seam to the kernel. A backend owns a worker's sockets and its wait;
//! it turns the kernel's events into calls on [`crate::runtime::worker::Worker`]
//! (`on_accept`, `on_data`, `on_hangup`, `on_writable`, `on_commands`,
//! `on_tick`) and, at the end of every loop turn, writes out what the worker
//! queued (`take_flush`, `flush_start`, `flush_done`) and closes the sockets
//! it asks to close (`release`). The backends never parse WebSocket frames.

pub(crate) mod epoll;
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
