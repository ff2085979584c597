//! Upgrades decided later on other threads (`Upgrade::defer`), against real
//! servers on both backends and both transports: a pool of deciders
//! accepting and refusing, the handshake timeout, a client gone while its
//! upgrade is pending, the per-worker limit, and the metrics.

use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ringws::proto::handshake::UpgradeRequest;
use ringws::{BackendKind, Handler, Message, PendingUpgrade, Upgrade, UpgradeError, WebSocket};
use ringws_tests::{Client, ConnectOptions, Stream, backend_tests, refusal_status, start};

/// Defers every upgrade to `deciders`; its data is the token the client sent.
struct Deferring {
    deciders: Sender<PendingUpgrade<String>>,
}

impl Handler for Deferring {
    type Data = String;

    fn on_upgrade(&mut self, _: &UpgradeRequest<'_>, _: SocketAddr) -> Upgrade<String> {
        Upgrade::defer()
    }

    fn on_upgrade_deferred(&mut self, pending: PendingUpgrade<String>) {
        let _ = self.deciders.send(pending);
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, String>, message: Message<'_>) {
        // Echoes, prefixed with the token the upgrade was accepted for.
        if let Message::Text(text) = message {
            let reply = format!("{}: {text}", ws.data());
            ws.send_text(&reply);
        }
    }
}

/// A server whose every upgrade waits for a decision, and the queue of the
/// pending upgrades.
fn deferring_server(
    backend: BackendKind,
    configure: impl FnOnce(ringws::Builder) -> ringws::Builder,
) -> (ringws_tests::TestServer, Receiver<PendingUpgrade<String>>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let server = start(backend, configure, move || Deferring {
        deciders: tx.lock().unwrap().clone(),
    });
    (server, rx)
}

/// What a decider thinks of a token: even numbers pass.
fn decide(pending: PendingUpgrade<String>) {
    let token = pending.header("x-token").unwrap_or_default().to_owned();
    let result = match token.parse::<u32>() {
        Ok(n) if n % 2 == 0 => pending.accept(format!("token {n}")),
        _ => pending.reject(403, "bad token\n"),
    };
    result.expect("decided in time");
}

fn connect_with_token(addr: SocketAddr, token: u32) -> std::io::Result<Client> {
    let options = ConnectOptions {
        path: "/auth".into(),
        headers: vec![("X-Token".into(), token.to_string())],
        ..ConnectOptions::default()
    };
    Client::connect_opts(addr, &options)
}

fn a_pool_of_four_threads_decides_a_thousand_upgrades(backend: BackendKind) {
    let (server, pending) = deferring_server(backend, |b| b);
    let pending = Arc::new(Mutex::new(pending));
    // The deciders: four threads taking pending upgrades as they come.
    let deciders: Vec<_> = (0..4)
        .map(|_| {
            let pending = pending.clone();
            thread::spawn(move || {
                loop {
                    let next = pending
                        .lock()
                        .unwrap()
                        .recv_timeout(Duration::from_secs(20));
                    match next {
                        Ok(upgrade) => decide(upgrade),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    // The clients: eight threads of 125 upgrades each, tokens 0..1000.
    let addr = server.addr();
    let clients: Vec<_> = (0..8u32)
        .map(|t| {
            thread::spawn(move || {
                let (mut accepted, mut refused) = (0, 0);
                for token in (t * 125)..((t + 1) * 125) {
                    match connect_with_token(addr, token) {
                        Ok(mut client) => {
                            assert_eq!(token % 2, 0, "token {token} was accepted");
                            client.send_text("hi").unwrap();
                            client.expect_text(&format!("token {token}: hi"));
                            accepted += 1;
                        }
                        Err(e) => {
                            assert_eq!(refusal_status(&e), Some(403), "token {token}: {e}");
                            assert_eq!(token % 2, 1, "token {token} was refused");
                            refused += 1;
                        }
                    }
                }
                (accepted, refused)
            })
        })
        .collect();
    let (mut accepted, mut refused) = (0, 0);
    for client in clients {
        let (a, r) = client.join().expect("every client got its answer");
        accepted += a;
        refused += r;
    }
    assert_eq!((accepted, refused), (500, 500));
    drop(server);
    for decider in deciders {
        decider.join().unwrap();
    }
}

fn an_undecided_upgrade_gets_503_at_the_handshake_timeout(backend: BackendKind) {
    let (server, pending) =
        deferring_server(backend, |b| b.handshake_timeout(Duration::from_millis(300)));
    let started = Instant::now();
    let error = connect_with_token(server.addr(), 2).expect_err("no decision");
    assert_eq!(refusal_status(&error), Some(503), "{error}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Deciding now is too late, and says so.
    let late = pending.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(late.accept("late".into()), Err(UpgradeError::Expired));
    let metrics = server.handle().metrics();
    assert!(
        metrics.contains("ringws_deferred_upgrades_expired_total{backend="),
        "{metrics}"
    );
}

fn a_client_gone_while_pending_frees_its_slot(backend: BackendKind) {
    let (server, pending) = deferring_server(backend, |b| b.workers(1).max_pending_upgrades(1));
    let addr = server.addr();
    // The first client asks and goes away before the decision.
    let first = thread::spawn(move || {
        let stream = Stream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let _ = Client::connect_over(stream, addr, &ConnectOptions::default());
    });
    let abandoned = pending.recv_timeout(Duration::from_secs(5)).unwrap();
    first.join().unwrap();
    // The slot comes free once the worker sees the client gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    let second = thread::spawn(move || connect_with_token(addr, 4));
    let next = loop {
        match pending.recv_timeout(Duration::from_millis(50)) {
            Ok(next) => break next,
            Err(_) => assert!(Instant::now() < deadline, "the second upgrade never came"),
        }
    };
    decide(next);
    let mut client = second.join().unwrap().expect("the slot was free");
    client.send_text("in").unwrap();
    client.expect_text("token 4: in");
    assert_eq!(abandoned.accept("gone".into()), Err(UpgradeError::Gone));
}

fn past_the_limit_a_deferred_upgrade_gets_503(backend: BackendKind) {
    let (server, pending) = deferring_server(backend, |b| b.workers(1).max_pending_upgrades(2));
    let addr = server.addr();
    let waiting: Vec<_> = (0..2)
        .map(|i| thread::spawn(move || connect_with_token(addr, 10 + 2 * i)))
        .collect();
    let first = pending.recv_timeout(Duration::from_secs(5)).unwrap();
    let second = pending.recv_timeout(Duration::from_secs(5)).unwrap();
    let error = connect_with_token(addr, 6).expect_err("past the limit");
    assert_eq!(refusal_status(&error), Some(503), "{error}");
    decide(first);
    decide(second);
    for client in waiting {
        client.join().unwrap().expect("the waiting ones open");
    }
    let metrics = server.handle().metrics();
    for name in [
        "ringws_upgrades_deferred_total",
        "ringws_deferred_upgrades_accepted_total",
        "ringws_deferred_upgrades_refused_total",
    ] {
        assert!(
            metrics.contains(&format!("{name}{{backend=")),
            "{name}: {metrics}"
        );
    }
}

backend_tests!(
    a_pool_of_four_threads_decides_a_thousand_upgrades,
    an_undecided_upgrade_gets_503_at_the_handshake_timeout,
    a_client_gone_while_pending_frees_its_slot,
    past_the_limit_a_deferred_upgrade_gets_503,
);
