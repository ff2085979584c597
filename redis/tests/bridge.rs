//! The Redis bridge against a real `redis-server` (one per test, on a free
//! port, stopped by PID): several ringws nodes in this process, each with its
//! own bridge, on both backends.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ringws::{BackendKind, Message};
use ringws_redis::{RedisBridge, RedisBridgeBuilder};
use ringws_tests::{Client, Echo, Msg, TestServer, start, wait_until};
use support::{Cluster, Redis, free_port};

const TOPIC: &str = "room";

/// A node: a server with 2 workers whose clients join [`TOPIC`] on open and
/// obey `!pub`, `!sub`, `!unsub`, bridged through `bridge`.
fn node(backend: BackendKind, bridge: RedisBridgeBuilder) -> (TestServer, Arc<RedisBridge>) {
    let bridge = bridge
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .expect("valid bridge settings");
    let for_server = bridge.clone();
    let server = start(
        backend,
        move |b| b.bridge(for_server),
        || Echo::new().with_commands().subscribe_on_open(TOPIC),
    );
    (server, bridge)
}

fn clients(server: &TestServer, count: usize) -> Vec<Client> {
    (0..count)
        .map(|_| Client::connect(server.addr()).unwrap())
        .collect()
}

fn text(s: &str) -> Msg {
    Msg::Text(s.into())
}

fn two_nodes_deliver_each_publish_once_to_every_subscriber(backend: BackendKind) {
    let redis = Redis::start();
    let (a, bridge_a) = node(backend, RedisBridge::builder(redis.url()));
    let (b, bridge_b) = node(backend, RedisBridge::builder(redis.url()));
    let mut on_a = clients(&a, 3);
    let mut on_b = clients(&b, 3);
    // One Redis subscription per node, not per client.
    let channel = bridge_a.channel(TOPIC);
    wait_until("both nodes to subscribe", || {
        redis.numsub(&channel, false) == 2
    });

    on_a[0].send_text(&format!("!pub {TOPIC} hello")).unwrap();
    for (i, c) in on_a.iter_mut().chain(on_b.iter_mut()).enumerate() {
        assert_eq!(c.msg(), text("hello"), "client {i}");
    }
    // B publishes after its clients had "hello", so Redis handed "hello" back
    // to A before this: had A delivered its own echo, A's clients would see a
    // second "hello" first.
    b.publish(TOPIC, Message::Text("marker"));
    for (i, c) in on_a.iter_mut().chain(on_b.iter_mut()).enumerate() {
        assert_eq!(c.msg(), text("marker"), "client {i}");
    }
    // The counters follow Redis's replies and pushes, a little after the clients.
    let settled =
        |s: ringws_redis::BridgeStats| s.echoes == 1 && s.received == 1 && s.published == 1;
    wait_until("both echoes to come back", || {
        settled(bridge_a.stats()) && settled(bridge_b.stats())
    });
    let (sa, sb) = (bridge_a.stats(), bridge_b.stats());
    assert_eq!((sa.published, sa.received), (1, 1), "{sa:?}");
    assert_eq!((sb.published, sb.received), (1, 1), "{sb:?}");
    assert_eq!((sa.dropped, sa.failed, sa.malformed), (0, 0, 0), "{sa:?}");
    assert_eq!(sa.topics, 1);
}

fn three_nodes_get_a_handle_threads_publishes_in_order(backend: BackendKind) {
    const COUNT: u8 = 50;
    let redis = Redis::start();
    let nodes: Vec<_> = (0..3)
        .map(|_| node(backend, RedisBridge::builder(redis.url())))
        .collect();
    let mut subscribers: Vec<Client> = nodes.iter().flat_map(|(n, _)| clients(n, 2)).collect();
    let channel = nodes[0].1.channel(TOPIC);
    wait_until("three nodes to subscribe", || {
        redis.numsub(&channel, false) == 3
    });

    // From a thread that only has a ServerHandle; binary, every byte value.
    let handle = nodes[1].0.handle().clone();
    let payload = |i: u8| vec![i, 0, 0xFF, b'\r', b'\n', i.wrapping_mul(7)];
    std::thread::spawn(move || {
        for i in 0..COUNT {
            handle.publish(TOPIC, Message::Binary(&payload(i)));
        }
    })
    .join()
    .unwrap();
    for (c, client) in subscribers.iter_mut().enumerate() {
        for i in 0..COUNT {
            assert_eq!(
                client.msg(),
                Msg::Binary(payload(i)),
                "client {c}, message {i}"
            );
        }
    }
    // Nothing twice: the next message of everyone is this one.
    subscribers[0]
        .send_text(&format!("!pub {TOPIC} last"))
        .unwrap();
    for (c, client) in subscribers.iter_mut().enumerate() {
        assert_eq!(client.msg(), text("last"), "client {c}");
    }
}

fn the_last_local_unsubscribe_drops_the_node_subscription(backend: BackendKind) {
    let redis = Redis::start();
    let (a, bridge) = node(backend, RedisBridge::builder(redis.url()));
    let mut subscribers = clients(&a, 4);
    let channel = bridge.channel(TOPIC);
    wait_until("the node to subscribe", || {
        redis.numsub(&channel, false) == 1
    });

    for client in subscribers.iter_mut().take(3) {
        client.send_text(&format!("!unsub {TOPIC}")).unwrap();
        client.expect_text(&format!("unsubscribed {TOPIC}"));
    }
    // The bridge handles changes in order: once a later subscription shows in
    // Redis, any unsubscribe before it would show too.
    subscribers[0].send_text("!sub probe").unwrap();
    subscribers[0].expect_text("subscribed probe");
    let probe = bridge.channel("probe");
    wait_until("the probe subscription", || {
        redis.numsub(&probe, false) == 1
    });
    assert_eq!(
        redis.numsub(&channel, false),
        1,
        "one local subscriber is left"
    );
    assert_eq!(bridge.stats().topics, 2);

    // The last one goes away by closing.
    subscribers.remove(3).close_handshake(1000, "").unwrap();
    wait_until("the node to unsubscribe", || {
        redis.numsub(&channel, false) == 0
    });
    subscribers[0].send_text("!unsub probe").unwrap();
    subscribers[0].expect_text("unsubscribed probe");
    wait_until("the probe to go", || redis.numsub(&probe, false) == 0);
    assert_eq!(bridge.stats().topics, 0);
}

fn a_redis_restart_is_survived_and_delivery_resumes(backend: BackendKind) {
    let mut redis = Redis::start();
    let (a, bridge_a) = node(backend, RedisBridge::builder(redis.url()));
    let (b, bridge_b) = node(backend, RedisBridge::builder(redis.url()));
    let mut on_a = clients(&a, 2);
    let mut on_b = clients(&b, 2);
    let channel = bridge_a.channel(TOPIC);
    wait_until("both nodes to subscribe", || {
        redis.numsub(&channel, false) == 2
    });
    on_a[0].send_text(&format!("!pub {TOPIC} before")).unwrap();
    for c in on_a.iter_mut().chain(on_b.iter_mut()) {
        assert_eq!(c.msg(), text("before"));
    }

    redis.kill();
    let down = |s: ringws_redis::BridgeStats| !s.publisher_connected && !s.subscriber_connected;
    wait_until("both bridges to notice", || {
        down(bridge_a.stats()) && down(bridge_b.stats())
    });
    // Local delivery goes on during the outage.
    for i in 0..5 {
        on_a[0]
            .send_text(&format!("!pub {TOPIC} during {i}"))
            .unwrap();
    }
    for c in on_a.iter_mut() {
        for i in 0..5 {
            assert_eq!(c.msg(), text(&format!("during {i}")));
        }
    }

    redis.restart();
    let up = |s: ringws_redis::BridgeStats| s.publisher_connected && s.subscriber_connected;
    wait_until("both bridges to reconnect", || {
        up(bridge_a.stats()) && up(bridge_b.stats())
    });
    wait_until("both nodes to subscribe again", || {
        redis.numsub(&channel, false) == 2
    });
    on_a[0].send_text(&format!("!pub {TOPIC} after")).unwrap();
    for c in on_a.iter_mut() {
        assert_eq!(c.msg(), text("after"));
    }
    // B may have got some of what A queued during the outage (at most once,
    // in order), then "after".
    for c in on_b.iter_mut() {
        during_at_most_once_then_after(c);
    }
    // And the other way.
    b.publish(TOPIC, Message::Text("back"));
    for c in on_a.iter_mut().chain(on_b.iter_mut()) {
        assert_eq!(c.msg(), text("back"));
    }
    // Every publish of A is accounted for (the counters follow Redis's replies).
    wait_until("A's publishes to be counted", || {
        let sa = bridge_a.stats();
        sa.published + sa.failed + sa.dropped == 7
    });
    let (sa, sb) = (bridge_a.stats(), bridge_b.stats());
    assert!(sa.reconnects >= 2, "{sa:?}");
    assert!(sb.reconnects >= 1, "{sb:?}");
}

/// Reads `c` up to "after": before it, any of the "during N" messages
/// published in an outage, each at most once and in order.
fn during_at_most_once_then_after(c: &mut Client) {
    let mut next_during = 0;
    loop {
        match c.msg() {
            Msg::Text(t) if t == "after" => return,
            Msg::Text(t) => {
                let i: usize = t
                    .strip_prefix("during ")
                    .unwrap_or_else(|| panic!("unexpected {t:?}"))
                    .parse()
                    .unwrap();
                assert!(i >= next_during, "during {i} twice or out of order");
                next_during = i + 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn redis_unreachable_at_start_serves_locally_then_joins(backend: BackendKind) {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let (a, bridge_a) = node(backend, RedisBridge::builder(url.clone()));
    let mut on_a = clients(&a, 2);
    on_a[0].send_text(&format!("!pub {TOPIC} alone")).unwrap();
    for c in on_a.iter_mut() {
        assert_eq!(c.msg(), text("alone"));
    }
    let s = bridge_a.stats();
    assert!(!s.publisher_connected && !s.subscriber_connected, "{s:?}");

    let redis = Redis::start_on(port);
    let (b, _bridge_b) = node(backend, RedisBridge::builder(url));
    let mut on_b = clients(&b, 1);
    let channel = bridge_a.channel(TOPIC);
    wait_until("both nodes to subscribe", || {
        redis.numsub(&channel, false) == 2
    });
    wait_until("A to connect its publisher", || {
        bridge_a.stats().publisher_connected
    });
    b.publish(TOPIC, Message::Text("joined"));
    // A's own clients had "alone" at once and never again (its echo from
    // Redis is dropped by node id).
    for c in on_a.iter_mut() {
        assert_eq!(c.msg(), text("joined"));
    }
    on_a[1]
        .send_text(&format!("!pub {TOPIC} together"))
        .unwrap();
    for c in on_a.iter_mut() {
        assert_eq!(c.msg(), text("together"));
    }
    // "alone" was queued by A while Redis was away: it reaches B once, at
    // whatever point A's queue is flushed, and the rest in order.
    let mut got = Vec::new();
    while got.last() != Some(&text("together")) {
        got.push(on_b[0].msg());
    }
    let alone = got.iter().filter(|m| **m == text("alone")).count();
    assert!(alone <= 1, "at most once: {got:?}");
    got.retain(|m| *m != text("alone"));
    assert_eq!(got, [text("joined"), text("together")]);
}

fn the_outage_queue_is_bounded_and_drops_are_counted(backend: BackendKind) {
    let port = free_port();
    let (a, bridge) = node(
        backend,
        RedisBridge::builder(format!("redis://127.0.0.1:{port}/")).max_queued(5),
    );
    let mut on_a = clients(&a, 1);
    for i in 0..20 {
        on_a[0].send_text(&format!("!pub {TOPIC} m{i}")).unwrap();
    }
    for i in 0..20 {
        assert_eq!(on_a[0].msg(), text(&format!("m{i}")), "local delivery");
    }
    let s = bridge.stats();
    assert_eq!((s.queued, s.dropped, s.published), (5, 15, 0), "{s:?}");

    let _redis = Redis::start_on(port);
    wait_until("the queue to be sent", || {
        let s = bridge.stats();
        s.published == 5 && s.queued == 0
    });
    assert_eq!(bridge.stats().dropped, 15);
}

fn foreign_and_malformed_messages_are_counted_not_delivered(backend: BackendKind) {
    let redis = Redis::start();
    let (a, bridge) = node(
        backend,
        RedisBridge::builder(redis.url()).max_message_size(1000),
    );
    let mut on_a = clients(&a, 1);
    let channel = bridge.channel(TOPIC);
    wait_until("the node to subscribe", || {
        redis.numsub(&channel, false) == 1
    });
    let mut con = redis.client();
    let publish = |con: &mut redis::Connection, payload: &[u8]| {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query(con)
            .unwrap();
    };
    // The envelope another node (or another program) sends: 0xB1, kind
    // (1 text, 2 binary), the node id (8 bytes, big endian), the payload.
    let envelope = |kind: u8, payload: &[u8]| {
        let mut bytes = vec![0xB1, kind];
        bytes.extend_from_slice(&0x0123_4567_89AB_CDEFu64.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    };
    publish(&mut con, b"not an envelope");
    publish(&mut con, &envelope(1, &[0xC3, 0x28]));
    publish(&mut con, &envelope(7, b"unknown kind"));
    publish(&mut con, &envelope(2, &[7; 1001]));
    publish(&mut con, &envelope(2, &[7; 1000]));
    publish(&mut con, &envelope(1, "from elsewhere é".as_bytes()));
    publish(&mut con, &envelope(2, &[0, 1, 2]));
    assert_eq!(
        on_a[0].msg(),
        Msg::Binary(vec![7; 1000]),
        "the limit is inclusive"
    );
    assert_eq!(on_a[0].msg(), text("from elsewhere é"));
    assert_eq!(on_a[0].msg(), Msg::Binary(vec![0, 1, 2]));
    let s = bridge.stats();
    assert_eq!((s.malformed, s.received), (4, 3), "{s:?}");
    // The node is unharmed.
    on_a[0].send_text(&format!("!pub {TOPIC} still")).unwrap();
    assert_eq!(on_a[0].msg(), text("still"));
}

fn sharded_pub_sub_with_a_prefix(backend: BackendKind) {
    let redis = Redis::start();
    let builder = || {
        RedisBridge::builder(redis.url())
            .sharded(true)
            .prefix("app1:")
    };
    let (a, bridge_a) = node(backend, builder());
    let (b, _bridge_b) = node(backend, builder());
    let mut on_a = clients(&a, 2);
    let mut on_b = clients(&b, 2);
    let channel = bridge_a.channel(TOPIC);
    assert_eq!(channel, b"app1:room");
    wait_until("both nodes to SSUBSCRIBE", || {
        redis.numsub(&channel, true) == 2
    });
    assert_eq!(redis.numsub(&channel, false), 0, "no classic subscription");
    on_b[0].send_text(&format!("!pub {TOPIC} sharded")).unwrap();
    for c in on_a.iter_mut().chain(on_b.iter_mut()) {
        assert_eq!(c.msg(), text("sharded"));
    }
    a.publish(TOPIC, Message::Text("marker"));
    for c in on_a.iter_mut().chain(on_b.iter_mut()) {
        assert_eq!(c.msg(), text("marker"));
    }
    for c in on_a.iter_mut() {
        c.send_text(&format!("!unsub {TOPIC}")).unwrap();
        c.expect_text(&format!("unsubscribed {TOPIC}"));
    }
    wait_until("A to SUNSUBSCRIBE", || redis.numsub(&channel, true) == 1);
}

fn a_refused_publish_is_counted_and_the_connection_kept(backend: BackendKind) {
    let redis = Redis::start();
    let (a, bridge_a) = node(backend, RedisBridge::builder(redis.url()));
    let (b, bridge_b) = node(backend, RedisBridge::builder(redis.url()));
    let mut on_a = clients(&a, 1);
    let mut on_b = clients(&b, 1);
    let channel = bridge_a.channel(TOPIC);
    wait_until("both nodes to subscribe", || {
        redis.numsub(&channel, false) == 2
    });
    wait_until("A to connect its publisher", || {
        bridge_a.stats().publisher_connected
    });
    let acl = |rule: &str| {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg(rule)
            .query(&mut redis.client())
            .expect("ACL SETUSER");
    };
    // Redis answers each PUBLISH with NOPERM: refused, not a broken link.
    acl("-publish");
    for i in 0..3 {
        on_a[0]
            .send_text(&format!("!pub {TOPIC} refused {i}"))
            .unwrap();
        assert_eq!(
            on_a[0].msg(),
            text(&format!("refused {i}")),
            "local delivery"
        );
    }
    wait_until("the refusals to be counted", || {
        bridge_a.stats().failed == 3
    });
    acl("+publish");
    on_a[0].send_text(&format!("!pub {TOPIC} allowed")).unwrap();
    assert_eq!(on_a[0].msg(), text("allowed"));
    assert_eq!(on_b[0].msg(), text("allowed"), "nothing refused arrives");
    let s = bridge_a.stats();
    assert_eq!((s.reconnects, s.dropped), (0, 0), "{s:?}");
    assert!(s.publisher_connected, "{s:?}");
    wait_until("the publish to be counted", || {
        bridge_a.stats().published == 1
    });
    assert_eq!(bridge_b.stats().received, 1);
}

/// A node in sharded mode on `cluster`, seeded with its first node only.
fn cluster_node(backend: BackendKind, cluster: &Cluster) -> (TestServer, Arc<RedisBridge>) {
    node(backend, RedisBridge::builder(cluster.url()).sharded(true))
}

/// One topic per shard, `(topic, index of the owning node)`, by what the
/// cluster itself says of the channels' slots (CLUSTER KEYSLOT, SLOTS).
fn a_topic_per_shard(cluster: &Cluster, bridge: &RedisBridge) -> Vec<(String, usize)> {
    let mut found: Vec<(String, usize)> = Vec::new();
    for i in 0..1000 {
        let topic = format!("t{i}");
        let owner = cluster.owner(&bridge.channel(&topic));
        if found.iter().all(|(_, o)| *o != owner) {
            found.push((topic, owner));
        }
        if found.len() == cluster.nodes.len() {
            return found;
        }
    }
    panic!("no topic per shard among 1000: {found:?}");
}

/// Every client joins every topic.
fn join(clients: &mut [Client], topics: &[(String, usize)]) {
    for client in clients {
        for (topic, _) in topics {
            client.send_text(&format!("!sub {topic}")).unwrap();
            client.expect_text(&format!("subscribed {topic}"));
        }
    }
}

fn sharded_on_a_cluster_each_shard_delivers_once_and_unsubscribes(backend: BackendKind) {
    let cluster = Cluster::start();
    let (a, bridge_a) = cluster_node(backend, &cluster);
    let (b, bridge_b) = cluster_node(backend, &cluster);
    let topics = a_topic_per_shard(&cluster, &bridge_a);
    let mut on_a = clients(&a, 2);
    let mut on_b = clients(&b, 2);
    join(&mut on_a, &topics);
    join(&mut on_b, &topics);
    // Each node's one SSUBSCRIBE per topic, at the shard that owns it.
    for (topic, owner) in &topics {
        let channel = bridge_a.channel(topic);
        wait_until("both nodes to SSUBSCRIBE at the owner", || {
            cluster.nodes[*owner].numsub(&channel, true) == 2
        });
        assert_eq!(cluster.nodes[*owner].numsub(&channel, false), 0);
    }

    // Per topic: A, then B, then A again. Each shard keeps the order of its
    // channel, so a message delivered twice (an echo not skipped) would come
    // before the next one on that topic.
    for (topic, _) in &topics {
        for (round, from_a) in [(1, true), (2, false), (3, true)] {
            let text_of = format!("{topic} {round}");
            if from_a {
                on_a[0]
                    .send_text(&format!("!pub {topic} {text_of}"))
                    .unwrap();
            } else {
                b.publish(topic, Message::Text(&text_of));
            }
            for (i, c) in on_a.iter_mut().chain(on_b.iter_mut()).enumerate() {
                assert_eq!(c.msg(), text(&text_of), "client {i}");
            }
        }
    }
    let shards = topics.len() as u64;
    wait_until("every publish and delivery to be counted", || {
        let (sa, sb) = (bridge_a.stats(), bridge_b.stats());
        (sa.published, sa.received, sb.published, sb.received)
            == (2 * shards, shards, shards, 2 * shards)
    });
    for s in [bridge_a.stats(), bridge_b.stats()] {
        assert_eq!((s.dropped, s.failed, s.malformed), (0, 0, 0), "{s:?}");
        assert!(s.publisher_connected && s.subscriber_connected, "{s:?}");
    }

    // The last local subscriber of a topic leaving drops the node's
    // SSUBSCRIBE at that topic's shard.
    for (topic, owner) in &topics {
        let channel = bridge_a.channel(topic);
        for (clients, left) in [(&mut on_a, 1), (&mut on_b, 0)] {
            for c in clients.iter_mut() {
                c.send_text(&format!("!unsub {topic}")).unwrap();
                c.expect_text(&format!("unsubscribed {topic}"));
            }
            wait_until("the node to SUNSUBSCRIBE at the owner", || {
                cluster.nodes[*owner].numsub(&channel, true) == left
            });
        }
    }
}

fn sharded_on_a_cluster_a_restarted_shard_resumes_delivery(backend: BackendKind) {
    const DURING: usize = 3;
    let mut cluster = Cluster::start();
    let (a, bridge_a) = cluster_node(backend, &cluster);
    let (b, bridge_b) = cluster_node(backend, &cluster);
    let topics = a_topic_per_shard(&cluster, &bridge_a);
    let mut on_a = clients(&a, 2);
    let mut on_b = clients(&b, 2);
    join(&mut on_a, &topics);
    join(&mut on_b, &topics);
    for (topic, owner) in &topics {
        let channel = bridge_a.channel(topic);
        wait_until("both nodes to SSUBSCRIBE at the owner", || {
            cluster.nodes[*owner].numsub(&channel, true) == 2
        });
    }
    let mut published_by_a = 0;
    for (topic, _) in &topics {
        on_a[0].send_text(&format!("!pub {topic} before")).unwrap();
        published_by_a += 1;
        for c in on_a.iter_mut().chain(on_b.iter_mut()) {
            assert_eq!(c.msg(), text("before"));
        }
    }
    // The seed node's shard goes: the bridges must find the map elsewhere.
    let (victim, victim_node) = topics.iter().find(|(_, o)| *o == 0).cloned().unwrap();
    let (other, _) = topics.iter().find(|(_, o)| *o != 0).cloned().unwrap();
    cluster.nodes[victim_node].kill();
    let down = |s: ringws_redis::BridgeStats| !s.subscriber_connected;
    wait_until("both bridges to notice", || {
        down(bridge_a.stats()) && down(bridge_b.stats())
    });
    // The other shards go on delivering meanwhile.
    on_a[0]
        .send_text(&format!("!pub {other} unharmed"))
        .unwrap();
    published_by_a += 1;
    for c in on_a.iter_mut().chain(on_b.iter_mut()) {
        assert_eq!(c.msg(), text("unharmed"));
    }
    // Local delivery of the lost shard's topic goes on too.
    for i in 0..DURING {
        on_a[0]
            .send_text(&format!("!pub {victim} during {i}"))
            .unwrap();
        published_by_a += 1;
    }
    for c in on_a.iter_mut() {
        for i in 0..DURING {
            assert_eq!(c.msg(), text(&format!("during {i}")));
        }
    }

    cluster.nodes[victim_node].restart();
    cluster.wait_ok();
    let channel = bridge_a.channel(&victim);
    wait_until(
        "both nodes to SSUBSCRIBE again at the restarted shard",
        || cluster.nodes[victim_node].numsub(&channel, true) == 2,
    );
    let up = |s: ringws_redis::BridgeStats| s.publisher_connected && s.subscriber_connected;
    wait_until("both bridges to be whole again", || {
        up(bridge_a.stats()) && up(bridge_b.stats())
    });
    on_a[0].send_text(&format!("!pub {victim} after")).unwrap();
    published_by_a += 1;
    for c in on_a.iter_mut() {
        assert_eq!(c.msg(), text("after"));
    }
    // B may have got some of what A published during the outage (at most
    // once, in order), then "after".
    for c in on_b.iter_mut() {
        during_at_most_once_then_after(c);
    }
    // And the other way, on every shard.
    for (topic, _) in &topics {
        b.publish(topic, Message::Text("back"));
        for c in on_a.iter_mut().chain(on_b.iter_mut()) {
            assert_eq!(c.msg(), text("back"), "on {topic}");
        }
    }
    wait_until("A's publishes to be accounted for", || {
        let sa = bridge_a.stats();
        sa.published + sa.failed + sa.dropped == published_by_a
    });
    let (sa, sb) = (bridge_a.stats(), bridge_b.stats());
    assert!(sa.reconnects >= 1, "{sa:?}");
    assert!(sb.reconnects >= 1, "{sb:?}");
}

fn sharded_on_a_cluster_a_resharded_slot_is_followed(backend: BackendKind) {
    let cluster = Cluster::start();
    let (a, bridge_a) = cluster_node(backend, &cluster);
    let (b, bridge_b) = cluster_node(backend, &cluster);
    let topics = a_topic_per_shard(&cluster, &bridge_a);
    let mut on_a = clients(&a, 2);
    let mut on_b = clients(&b, 2);
    join(&mut on_a, &topics);
    join(&mut on_b, &topics);
    let (topic, from) = topics[0].clone();
    let channel = bridge_a.channel(&topic);
    wait_until("both nodes to SSUBSCRIBE at the owner", || {
        cluster.nodes[from].numsub(&channel, true) == 2
    });
    on_a[0].send_text(&format!("!pub {topic} before")).unwrap();
    for c in on_a.iter_mut().chain(on_b.iter_mut()) {
        assert_eq!(c.msg(), text("before"));
    }

    let to = (from + 1) % cluster.nodes.len();
    cluster.move_slot(&channel, to);
    wait_until("both nodes to SSUBSCRIBE at the new owner", || {
        cluster.nodes[to].numsub(&channel, true) == 2
    });
    assert_eq!(cluster.nodes[from].numsub(&channel, true), 0);
    // SPUBLISH follows the slot too (MOVED, a new map, sent again); A, B, A
    // so that a message delivered twice would show before the next.
    for (round, from_a) in [(1, true), (2, false), (3, true)] {
        let text_of = format!("moved {round}");
        if from_a {
            on_a[0]
                .send_text(&format!("!pub {topic} {text_of}"))
                .unwrap();
        } else {
            b.publish(&topic, Message::Text(&text_of));
        }
        for (i, c) in on_a.iter_mut().chain(on_b.iter_mut()).enumerate() {
            assert_eq!(c.msg(), text(&text_of), "client {i}");
        }
    }
    wait_until("every publish to be counted", || {
        (bridge_a.stats().published, bridge_b.stats().published) == (3, 1)
    });
    for s in [bridge_a.stats(), bridge_b.stats()] {
        assert_eq!((s.dropped, s.failed), (0, 0), "{s:?}");
    }
}

ringws_tests::backend_tests! {
    two_nodes_deliver_each_publish_once_to_every_subscriber,
    three_nodes_get_a_handle_threads_publishes_in_order,
    the_last_local_unsubscribe_drops_the_node_subscription,
    a_redis_restart_is_survived_and_delivery_resumes,
    redis_unreachable_at_start_serves_locally_then_joins,
    the_outage_queue_is_bounded_and_drops_are_counted,
    foreign_and_malformed_messages_are_counted_not_delivered,
    sharded_pub_sub_with_a_prefix,
    a_refused_publish_is_counted_and_the_connection_kept,
    sharded_on_a_cluster_each_shard_delivers_once_and_unsubscribes,
    sharded_on_a_cluster_a_restarted_shard_resumes_delivery,
    sharded_on_a_cluster_a_resharded_slot_is_followed,
}
