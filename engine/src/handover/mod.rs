//! Live restarts (`docs/HANDOVER.md`): a new process takes the running one's
//! listening sockets and open connections over a Unix socket, and the
//! clients notice nothing but a short delay. The protocol's messages are
//! [`proto`], the socket and descriptor passing [`unix`]; the running
//! process's side is [`old`], the new one's [`new`]. What a connection is, as
//! bytes, and the workers' part are `runtime::handover`.

mod new;
mod old;
mod proto;
mod unix;

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

pub(crate) use new::{Asked, Taken, take_over};
pub(crate) use old::Old;
pub(crate) use proto::ListenerSlot;

/// Reads the nonce file: refused when others than its owner may read it,
/// when it is empty, or longer than the protocol carries.
pub(crate) fn read_nonce(path: &std::path::Path) -> io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if meta.mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the hand-over nonce file {} may be read by others (mode {:o}; chmod 600)",
                path.display(),
                meta.mode() & 0o777
            ),
        ));
    }
    let nonce = std::fs::read(path)?;
    if nonce.is_empty() || nonce.len() > proto::MAX_NONCE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the hand-over nonce file must hold 1 to {} bytes",
                proto::MAX_NONCE
            ),
        ));
    }
    Ok(nonce)
}

/// Binds the control socket (a first process, with nobody to take over).
pub(crate) fn listen(socket: &str) -> io::Result<OwnedFd> {
    unix::listen(socket)
}

/// The hand-over thread, stopped with the server.
#[derive(Debug)]
pub(crate) struct Control {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Control {
    /// Runs `body` on the hand-over thread; it watches `stop`.
    pub fn spawn(stop: Arc<AtomicBool>, body: impl FnOnce() + Send + 'static) -> io::Result<Self> {
        let thread = std::thread::Builder::new()
            .name("ringws-handover".into())
            .spawn(body)?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
