//! Reports which backend the engine picks, for the backend-selection tests,
//! which run it as a separate process (the environment variable and a seccomp
//! filter are process-wide).
//!
//! `backend_choice [--forbid-io-uring]`: with the flag, io_uring_setup fails with
//! EPERM (as under a container's seccomp policy) before any server starts.
//! Prints `auto=<backend>` and `io_uring=<backend or error>`, one per line.

use std::collections::BTreeMap;

use ringws::{BackendKind, Server};
use ringws_tests::Echo;
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};

fn forbid_io_uring() -> Result<(), Box<dyn std::error::Error>> {
    let rules = BTreeMap::from([(libc::SYS_io_uring_setup, vec![])]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        std::env::consts::ARCH.try_into()?,
    )?;
    let program: BpfProgram = filter.try_into()?;
    seccompiler::apply_filter(&program)?;
    Ok(())
}

fn choose(kind: BackendKind) -> String {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .workers(1)
        .backend(kind)
        .build()
        .expect("valid configuration");
    match server.start(Echo::new) {
        Ok(handle) => {
            let chosen = format!("{:?}", handle.backend());
            handle.shutdown(std::time::Duration::ZERO);
            chosen
        }
        Err(e) => format!("error: {e}"),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--forbid-io-uring") {
        forbid_io_uring().expect("seccomp filter installed");
    }
    println!("auto={}", choose(BackendKind::Auto));
    println!("io_uring={}", choose(BackendKind::IoUring));
}
