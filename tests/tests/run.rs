//! `Server::run`: worker 0 on the calling thread, the others on their own;
//! it returns once the server has shut down, by the handle or, with
//! `shutdown_on_signals`, on SIGTERM or SIGINT read by worker 0 from a
//! signalfd. Signals here go to the run thread alone (`tgkill`): a signal to
//! the test process would reach a harness thread, which does not block it.

use std::time::Duration;

use ringws::{BackendKind, Server, StartError};
use ringws_tests::{Client, Echo, backend_tests, events, run_on_thread, sigterm_blocked};

/// Opens clients until one lands on each of the two workers; the thread name
/// of the worker each landed on beside it.
fn one_on_each_worker(
    addr: std::net::SocketAddr,
    events: &ringws_tests::Events,
) -> Vec<(Client, String)> {
    let mut clients: Vec<(Client, String)> = Vec::new();
    for _ in 0..64 {
        let client = Client::connect(addr).expect("connect");
        let (_, worker) = events.open_on_worker();
        if !clients.iter().any(|(_, w)| *w == worker) {
            clients.push((client, worker));
        }
        if clients.len() == 2 {
            return clients;
        }
    }
    panic!("64 connections all landed on one worker");
}

fn worker_0_runs_on_the_caller_s_thread_until_the_handle_shuts_it_down(backend: BackendKind) {
    let (tx, events) = events();
    let server = run_on_thread(
        backend,
        "caller",
        |b| b.workers(2),
        move || Echo::reporting(tx.clone()),
    );
    let mut clients = one_on_each_worker(server.addr, &events);
    let mut workers: Vec<&str> = clients.iter().map(|(_, w)| w.as_str()).collect();
    workers.sort_unstable();
    assert_eq!(workers, ["caller", "ringws-1"]);
    for (client, _) in &mut clients {
        client.send_text("hello").unwrap();
        client.expect_text("hello");
    }
    // shutdown joins worker 1, which waits for its client's close reply.
    let handle = server.handle.clone();
    let stopper = std::thread::spawn(move || handle.shutdown(Duration::from_secs(5)));
    for (client, _) in &mut clients {
        client.expect_close(1001);
        client.close(1001, "").unwrap();
    }
    drop(clients);
    stopper.join().unwrap();
    let (result, blocked) = server.join();
    assert_eq!(result, Ok(()));
    assert!(!blocked, "run without signals left SIGTERM blocked");
}

fn sigterm_to_the_run_thread_shuts_every_worker_down_gracefully(backend: BackendKind) {
    let (tx, events) = events();
    let server = run_on_thread(
        backend,
        "signalled",
        |b| b.workers(2).shutdown_on_signals(Duration::from_secs(5)),
        move || Echo::reporting(tx.clone()),
    );
    let mut clients = one_on_each_worker(server.addr, &events);
    for (client, _) in &mut clients {
        client.send_text("before").unwrap();
        client.expect_text("before");
    }
    // SAFETY: tgkill sends a signal to one thread of this process, the run
    // thread, which has SIGTERM blocked (else the process would end here).
    let sent =
        unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), server.tid, libc::SIGTERM) };
    assert_eq!(sent, 0, "tgkill: {}", std::io::Error::last_os_error());
    // Both workers close gracefully: the one that read the signal and the other.
    for (client, _) in &mut clients {
        client.expect_close(1001);
        client.close(1001, "").unwrap();
    }
    drop(clients);
    let (result, blocked) = server.join();
    assert_eq!(result, Ok(()));
    assert!(!blocked, "run did not give its caller its signal mask back");
}

fn sigint_shuts_a_one_worker_server_down(backend: BackendKind) {
    let server = run_on_thread(
        backend,
        "single",
        |b| b.workers(1).shutdown_on_signals(Duration::from_secs(5)),
        Echo::new,
    );
    let mut client = Client::connect(server.addr).expect("connect");
    client.send_text("one").unwrap();
    client.expect_text("one");
    // SAFETY: as above, to the run thread, which has SIGINT blocked.
    let sent = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), server.tid, libc::SIGINT) };
    assert_eq!(sent, 0, "tgkill: {}", std::io::Error::last_os_error());
    client.expect_close(1001);
    client.close(1001, "").unwrap();
    drop(client);
    assert_eq!(server.join().0, Ok(()));
}

fn start_refuses_shutdown_on_signals(backend: BackendKind) {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .backend(backend)
        .shutdown_on_signals(Duration::from_secs(1))
        .build()
        .unwrap();
    match server.start(Echo::new) {
        Err(StartError::Config(e)) => assert!(e.to_string().contains("Server::run"), "{e}"),
        Err(e) => panic!("another error: {e}"),
        Ok(handle) => {
            handle.shutdown(Duration::ZERO);
            panic!("start accepted shutdown_on_signals");
        }
    }
    assert!(!sigterm_blocked(), "a refused start blocked SIGTERM");
}

backend_tests!(
    worker_0_runs_on_the_caller_s_thread_until_the_handle_shuts_it_down,
    sigterm_to_the_run_thread_shuts_every_worker_down_gracefully,
    sigint_shuts_a_one_worker_server_down,
    start_refuses_shutdown_on_signals,
);
