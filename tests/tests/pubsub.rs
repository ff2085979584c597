//! Publish/subscribe across workers and the cross-thread [`ringws::ServerHandle`]:
//! publish, send and close by id, and ids that outlive their connection.

use std::collections::BTreeSet;

use ringws::proto::close::CloseCode;
use ringws::{BackendKind, CloseCause, Message};
use ringws_tests::{Client, Echo, Msg, events, start, wait_until};

const TOPIC: &str = "room";

fn publish_reaches_every_subscriber_once_across_workers(backend: BackendKind) {
    const N: usize = 20;
    let (tx, events) = events();
    let server = start(
        backend,
        |b| b.workers(2),
        move || {
            Echo::reporting(tx.clone())
                .with_commands()
                .subscribe_on_open(TOPIC)
        },
    );
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    let mut workers = BTreeSet::new();
    for _ in 0..N {
        // on_open (which subscribes) runs before the 101 goes out, so the next
        // open reported is this client's.
        clients.push(Client::connect(server.addr()).unwrap());
        let (id, worker) = events.open_on_worker();
        ids.push(id);
        workers.insert(worker);
    }
    // SO_REUSEPORT spreads 20 connections over both workers (all on one: 2^-19).
    assert_eq!(workers.len(), 2, "every connection landed on {workers:?}");

    // A client publishes: everyone, the publisher included, gets it once.
    clients[0]
        .send_text(&format!("!pub {TOPIC} pub:hello"))
        .unwrap();
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.msg(), Msg::Text("pub:hello".into()), "client {i}");
    }
    // The handle publishes: the next message of every client is this one, so
    // nobody got the first one twice.
    server.publish(TOPIC, Message::Text("from the handle"));
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(
            client.msg(),
            Msg::Text("from the handle".into()),
            "client {i}"
        );
    }
    server.publish(TOPIC, Message::Binary(&[1, 2, 3]));
    for client in clients.iter_mut() {
        assert_eq!(client.msg(), Msg::Binary(vec![1, 2, 3]));
    }

    // Unsubscribing stops delivery. The marker is sent after the publish through
    // the same worker's queue, so it arrives after the publish would have.
    clients[1].send_text(&format!("!unsub {TOPIC}")).unwrap();
    clients[1].expect_text(&format!("unsubscribed {TOPIC}"));
    server.publish(TOPIC, Message::Text("after unsubscribe"));
    assert!(server.send(ids[1], Message::Text("marker")));
    clients[1].expect_text("marker");
    for (i, client) in clients.iter_mut().enumerate().filter(|(i, _)| *i != 1) {
        assert_eq!(
            client.msg(),
            Msg::Text("after unsubscribe".into()),
            "client {i}"
        );
    }

    // A closed subscriber is forgotten; the others still get publishes.
    clients.remove(2).close_handshake(1000, "").unwrap();
    events.close_of(ids[2]);
    clients[0]
        .send_text(&format!("!pub {TOPIC} pub:last"))
        .unwrap();
    for (i, client) in clients.iter_mut().enumerate().filter(|(i, _)| *i != 1) {
        assert_eq!(client.msg(), Msg::Text("pub:last".into()), "client {i}");
    }
    assert!(server.send(ids[1], Message::Text("marker 2")));
    clients[1].expect_text("marker 2");
}

fn handle_sends_and_closes_by_id(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(
        backend,
        |b| b.workers(2),
        move || Echo::reporting(tx.clone()),
    );
    let mut client = Client::connect(server.addr()).unwrap();
    let id = events.open();
    assert!(server.send(id, Message::Text("hello from another thread")));
    client.expect_text("hello from another thread");
    assert!(server.send(id, Message::Binary(&[9; 100_000])));
    assert_eq!(client.msg(), Msg::Binary(vec![9; 100_000]));
    // The connection still echoes.
    client.send_text("echo").unwrap();
    client.expect_text("echo");

    assert!(server.close(id, CloseCode(4000), "bye"));
    assert_eq!(client.expect_close(4000), "bye");
    client.close(4000, "").unwrap();
    client.expect_eof().unwrap();
    let (code, _, cause) = events.close_of(id);
    assert_eq!((code, cause), (4000, CloseCause::Local));
}

fn stale_id_reaches_nobody(backend: BackendKind) {
    let (tx, events) = events();
    // One worker, so the new connection reuses the old one's slot.
    let server = start(
        backend,
        |b| b.workers(1),
        move || Echo::reporting(tx.clone()),
    );
    let mut old = Client::connect(server.addr()).unwrap();
    let old_id = events.open();
    old.close_handshake(1000, "").unwrap();
    events.close_of(old_id);
    drop(old);
    // The slot is freed once the server has closed the socket.
    wait_until("the old connection to be released", || {
        server.stats().connections == 0
    });

    let mut new = Client::connect(server.addr()).unwrap();
    let new_id = events.open();
    assert_ne!(old_id, new_id);
    assert_eq!(
        old_id.as_u64() >> 32,
        new_id.as_u64() >> 32,
        "{old_id} and {new_id} should share worker and slot, only the generation differs"
    );
    server.send(old_id, Message::Text("for the old connection"));
    server.close(old_id, CloseCode(4000), "for the old connection");
    assert!(server.send(new_id, Message::Text("for the new connection")));
    // Commands to one worker run in order: had the stale ones reached the new
    // connection, they would come first.
    new.expect_text("for the new connection");
    new.send_text("still open").unwrap();
    new.expect_text("still open");
}

ringws_tests::backend_tests! {
    publish_reaches_every_subscriber_once_across_workers,
    handle_sends_and_closes_by_id,
    stale_id_reaches_nobody,
}
