//! Whether io_uring works here, with every operation the backend uses.

use io_uring::{IoUring, Probe, opcode};

/// Checks that io_uring works here and has every operation this backend uses.
/// `Err` carries a one-line reason (for the fallback log line or the error of a
/// forced io_uring backend).
///
/// The probe's ring is set up on a thread of its own: when a ring closes, the
/// kernel's exit work signals each thread that set it up (task work with
/// TWA_SIGNAL), and a blocking call with a timeout that the signal finds on the
/// caller's thread (a read with `SO_RCVTIMEO`, a timed connect) would fail with
/// EINTR, which it does not restart.
pub(crate) fn probe() -> Result<(), String> {
    std::thread::Builder::new()
        .name("ringws-probe".into())
        .spawn(probe_on_this_thread)
        .map_err(|e| format!("no thread to probe io_uring on: {e}"))?
        .join()
        .unwrap_or_else(|_| Err("the io_uring probe panicked".into()))
}

fn probe_on_this_thread() -> Result<(), String> {
    let ring = IoUring::new(8).map_err(|e| format!("io_uring_setup failed: {e}"))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("io_uring probe failed: {e}"))?;
    let needed = [
        ("accept", opcode::AcceptMulti::CODE),
        ("recv", opcode::RecvMulti::CODE),
        ("send", opcode::Send::CODE),
        ("sendmsg", opcode::SendMsg::CODE),
        ("shutdown", opcode::Shutdown::CODE),
        ("close", opcode::Close::CODE),
        ("read", opcode::Read::CODE),
        ("async_cancel", opcode::AsyncCancel::CODE),
        ("poll_add", opcode::PollAdd::CODE),
        ("uring_cmd", opcode::UringCmd16::CODE),
    ];
    for (name, code) in needed {
        if !probe.is_supported(code) {
            return Err(format!("io_uring lacks the {name} operation"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    /// A blocking read with a timeout, on a connected socket with nothing to
    /// read: `true` if EINTR cut it short.
    fn timed_read_is_interrupted() -> bool {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _peer = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap();
        match stream.read(&mut [0; 8]) {
            Err(e) => e.kind() == io::ErrorKind::Interrupted,
            Ok(n) => panic!("read {n} bytes from a silent peer"),
        }
    }

    #[test]
    fn probing_leaves_the_calling_thread_uninterrupted() {
        // The test's premise: a ring closed on this thread interrupts its next
        // timed read (if this kernel stops doing so, the test below proves nothing).
        drop(IoUring::new(8).expect("io_uring on the test machine"));
        assert!(
            timed_read_is_interrupted(),
            "premise: a closed ring interrupts"
        );
        for _ in 0..3 {
            probe().expect("io_uring on the test machine");
            assert!(
                !timed_read_is_interrupted(),
                "probe() interrupted the caller"
            );
        }
    }
}
