//! SIGTERM and SIGINT as a descriptor a worker waits on beside its sockets
//! (`signalfd`), for [`crate::Server::run`] with
//! [`crate::Builder::shutdown_on_signals`]: the process needs no thread of its
//! own to wait for them, so a one-worker server is a one-thread process, whose
//! syscalls skip the reference count a shared descriptor table costs on each.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The signals that shut the server down.
const SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset and sigaddset only write the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// The calling thread's signal mask before [`block`], to give back.
pub(crate) struct PreviousMask(libc::sigset_t);

/// Blocks SIGTERM and SIGINT on the calling thread, so that they wait in the
/// signalfd instead of ending the process; threads it starts later inherit the
/// mask.
pub(crate) fn block() -> io::Result<PreviousMask> {
    let set = signal_set();
    // SAFETY: pthread_sigmask reads `set` and writes the old mask into a
    // sigset_t we own.
    unsafe {
        let mut previous: libc::sigset_t = std::mem::zeroed();
        match libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut previous) {
            0 => Ok(PreviousMask(previous)),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// Gives the calling thread (the one that called [`block`]) its mask back.
pub(crate) fn restore(previous: PreviousMask) {
    // SAFETY: pthread_sigmask reads the mask we saved.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous.0, std::ptr::null_mut()) };
}

/// A non-blocking signalfd of SIGTERM and SIGINT.
pub(crate) struct SignalFd(OwnedFd);

impl SignalFd {
    pub fn open() -> io::Result<Self> {
        let set = signal_set();
        // SAFETY: signalfd reads the set and returns a new descriptor or -1.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Takes every pending signal; the number of the last one, if any. Reads
    /// on the worker's thread, so a signal sent to that thread alone is seen
    /// as well as one sent to the process.
    pub fn drain(&self) -> Option<i32> {
        let mut last = None;
        loop {
            // SAFETY: an all-zero signalfd_siginfo is valid; read writes at most
            // its size into it.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: `info` is a writable buffer of `size` bytes.
            let read = unsafe { libc::read(self.raw_fd(), (&raw mut info).cast(), size) };
            if read != size as isize {
                // EAGAIN: none left (a signalfd reads whole records only).
                return last;
            }
            last = i32::try_from(info.ssi_signo).ok();
        }
    }
}
