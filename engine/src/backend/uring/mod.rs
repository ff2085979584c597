//! The io_uring backend: one ring per worker (single issuer, deferred task
//! work), multishot accept straight into the ring's fixed-file table (accepted
//! sockets never enter the process fd table), multishot receive on a
//! provided-buffer ring parsed in place, one send per connection per turn, and
//! every turn's submissions in one `io_uring_enter`.

mod buffers;
mod event_loop;
mod handover;
mod probe;
mod seam;
mod slots;

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use io_uring::IoUring;
use slab::Slab;

use self::buffers::BufRing;
use self::event_loop::Ring;
pub(crate) use self::probe::probe;
use super::signals::SignalFd;
use crate::config::Config;
use crate::runtime::command::Wake;
use crate::runtime::handler::Handler;
use crate::runtime::worker::Worker;

/// The eventfd other threads write to wake the worker.
struct EventFd(OwnedFd);

impl Wake for EventFd {
    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd this struct owns.
        // A failure (counter saturated) still leaves the eventfd readable.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
    }
}

/// A worker's io_uring loop, before it runs.
pub(crate) struct UringBackend {
    // Field order is drop order: the ring goes before the memory it uses.
    ring: IoUring,
    buffers: BufRing,
    handover: slots::Handover,
    listeners: Vec<TcpListener>,
    wake: Arc<EventFd>,
    wake_buf: Box<u64>,
    signals: Option<SignalFd>,
}

impl UringBackend {
    /// Sets up the ring on the calling thread (the ring's single issuer).
    /// `signals`: termination signals to watch (worker 0 of `Server::run`).
    pub fn new(
        listeners: Vec<TcpListener>,
        config: &Config,
        signals: Option<SignalFd>,
    ) -> io::Result<Self> {
        let entries = config.uring_entries;
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(entries * 4)
            .setup_submit_all()
            .build(entries)
            .or_else(|_| {
                // Kernels before 6.1 lack DEFER_TASKRUN.
                IoUring::builder()
                    .setup_coop_taskrun()
                    .setup_cqsize(entries * 4)
                    .build(entries)
            })?;
        ring.submitter().register_ring_fd()?;
        // Direct descriptors: as many as the worker may hold, halved until the kernel
        // accepts the table size (it is bounded by RLIMIT_NOFILE).
        let wanted = u64::try_from(config.max_connections_per_worker + 64).unwrap_or(u64::MAX);
        let mut table = u32::try_from(wanted.min(nofile_limit())).unwrap_or(u32::MAX);
        loop {
            match ring.submitter().register_files_sparse(table) {
                Ok(()) => break,
                Err(e) if table > 1024 => {
                    log::debug!(
                        "fixed-file table of {table} refused ({e}); trying {}",
                        table / 2
                    );
                    table /= 2;
                }
                Err(e) => return Err(e),
            }
        }
        // Half the table kept for connections taken over only where a
        // hand-over is configured: otherwise accepted sockets get it all.
        let handover = if config.handover.is_some() {
            slots::Handover::reserve(&ring, table)
        } else {
            slots::Handover::default()
        };
        let buffers = BufRing::new(&ring, config.uring_buffer_count, config.uring_buffer_size)?;
        // SAFETY: eventfd returns a new descriptor or -1, checked before use.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` is a fresh descriptor nobody else owns.
        let wake = Arc::new(EventFd(unsafe { OwnedFd::from_raw_fd(efd) }));
        Ok(Self {
            ring,
            buffers,
            handover,
            listeners,
            wake,
            wake_buf: Box::new(0),
            signals,
        })
    }

    pub fn waker(&self) -> Arc<dyn Wake> {
        self.wake.clone()
    }

    /// Runs the worker until it has shut down.
    pub fn run<H: Handler>(self, mut worker: Worker<H>) -> io::Result<()> {
        let Self {
            ring,
            buffers,
            handover,
            listeners,
            wake,
            wake_buf,
            signals,
        } = self;
        // The listener's family gives the size of its peers' addresses.
        let listener_v6 = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.is_ipv6()))
            .collect::<io::Result<_>>()?;
        // Declared before `io`, so dropped after it: the kernel never sees the
        // buffers go while the ring lives.
        let mut buffers = buffers;
        let mut io = Ring {
            ring,
            accepting: (0..listeners.len()).collect(),
            listeners,
            listener_v6,
            listening: true,
            wake_fd: wake.0.as_raw_fd(),
            wake_buf,
            signals,
            slots: Vec::new(),
            peers: Slab::new(),
            sends: Slab::new(),
            spare_sends: Vec::new(),
            rearm: Vec::new(),
            delivering: None,
            error: None,
            handover,
        };
        let result = io.run(&mut worker, &mut buffers);
        drop(wake);
        result
    }
}

/// The hard RLIMIT_NOFILE, which bounds a ring's fixed-file table (each ring has
/// its own table of that size, outside the process fd table).
fn nofile_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_max
    } else {
        1024
    }
}
