//! 2,000 concurrent echoing connections: all open at once, each echoes one
//! message, then each closes cleanly.

use std::sync::mpsc;
use std::thread;

use ringws::{BackendKind, CloseCause};
use ringws_tests::{
    Client, Echo, Msg, ServerEvent, TIMEOUT, events, raise_fd_limit, start, wait_until,
};

const CONNECTIONS: usize = 2_000;
const THREADS: usize = 8;

fn two_thousand_concurrent_echo_connections(backend: BackendKind) {
    // Client and server sockets live in this process: 2 per connection plus margin.
    if let Err(e) = raise_fd_limit(4_200) {
        eprintln!("SKIPPED two_thousand_concurrent_echo_connections: {e}");
        return;
    }
    let (tx, events) = events();
    let server = start(
        backend,
        |b| b.workers(2),
        move || Echo::reporting(tx.clone()),
    );
    let addr = server.addr();

    let (ready_tx, ready_rx) = mpsc::channel();
    let mut go = Vec::new();
    let mut threads = Vec::new();
    for t in 0..THREADS {
        let ready_tx = ready_tx.clone();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        go.push(go_tx);
        threads.push(thread::spawn(move || {
            let count = CONNECTIONS / THREADS;
            let mut clients: Vec<Client> = (0..count)
                .map(|i| {
                    Client::connect(addr).unwrap_or_else(|e| panic!("connection {t}/{i}: {e}"))
                })
                .collect();
            ready_tx.send(()).unwrap();
            // Everyone is connected before anyone talks; if the test gave up,
            // the sender is gone and this returns.
            if go_rx.recv_timeout(TIMEOUT).is_err() {
                return;
            }
            for (i, client) in clients.iter_mut().enumerate() {
                client.send_text(&format!("hello from {t}/{i}")).unwrap();
            }
            for (i, client) in clients.iter_mut().enumerate() {
                client.expect_text(&format!("hello from {t}/{i}"));
            }
            for client in clients.iter_mut() {
                let reply = client.close_handshake(1000, "").unwrap();
                assert_eq!(reply.map(|c| c.0), Some(1000));
            }
        }));
    }
    drop(ready_tx);
    for _ in 0..THREADS {
        ready_rx
            .recv_timeout(TIMEOUT * 3)
            .expect("a client thread failed to connect its share");
    }
    wait_until("2,000 open connections in the stats", || {
        server.stats().connections == CONNECTIONS as u64
    });
    for go_tx in &go {
        go_tx.send(()).unwrap();
    }
    for thread in threads {
        thread.join().expect("a client thread failed");
    }

    let mut opened = 0;
    let mut closed = 0;
    while closed < CONNECTIONS {
        match events.next(TIMEOUT) {
            Some(ServerEvent::Open { .. }) => opened += 1,
            Some(ServerEvent::Close { code, cause, .. }) => {
                assert_eq!((code, cause), (1000, CloseCause::Peer));
                closed += 1;
            }
            Some(_) => {}
            None => panic!("{closed} of {CONNECTIONS} on_close reported"),
        }
    }
    assert_eq!(opened, CONNECTIONS);
    let stats = server.stats();
    assert_eq!(stats.accepted, CONNECTIONS as u64);
    assert_eq!(stats.messages_in, CONNECTIONS as u64);
    wait_until("every connection released", || {
        server.stats().connections == 0
    });
}

/// Many connections push large messages at the same time: the receive side
/// runs out of whatever it has per turn (read budget, provided buffers) and
/// must still serve everyone completely.
fn concurrent_large_messages(backend: BackendKind) {
    const CLIENTS: usize = 16;
    const SIZE: usize = 2 << 20;
    let server = start(backend, |b| b.workers(2), Echo::new);
    let addr = server.addr();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            thread::spawn(move || {
                let mut client = Client::connect(addr).unwrap();
                let data: Vec<u8> = (0..SIZE).map(|i| (i * 13 + c) as u8).collect();
                for round in 0..2 {
                    client.send_binary(&data).unwrap();
                    match client.msg() {
                        Msg::Binary(echo) => {
                            assert!(echo == data, "client {c} round {round}: echo differs")
                        }
                        other => panic!("client {c} round {round}: got {other:?}"),
                    }
                }
                client.close_handshake(1000, "").unwrap();
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a client failed");
    }
}

ringws_tests::backend_tests! {
    two_thousand_concurrent_echo_connections,
    concurrent_large_messages,
}
