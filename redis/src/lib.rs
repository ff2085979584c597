//! Pub/sub across [ringws] nodes through Redis: a [`ringws::Bridge`]
//! that gives each node one Redis subscription per topic (never one per
//! client) and one `PUBLISH` per local publish.
//!
//! ```no_run
//! use ringws::Server;
//! use ringws_redis::RedisBridge;
//! # use ringws::{Handler, Message, Upgrade, WebSocket};
//! # struct Chat;
//! # impl Handler for Chat {
//! #     type Data = ();
//! #     fn on_upgrade(&mut self, _: &ringws::proto::handshake::UpgradeRequest<'_>, _: std::net::SocketAddr) -> Upgrade<()> { Upgrade::accept(()) }
//! #     fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, m: Message<'_>) { ws.publish("chat", m) }
//! # }
//!
//! let bridge = RedisBridge::builder("redis://127.0.0.1:6379/")
//!     .prefix("myapp:")
//!     .build()?;
//! let handle = Server::builder()
//!     .bind("127.0.0.1:9002")
//!     .bridge(bridge.clone())
//!     .build()?
//!     .start(|| Chat)?;
//! println!("{:?}", bridge.stats());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it works
//!
//! Two threads per bridge, so no worker ever waits on Redis:
//!
//! - **publisher**: one connection for `PUBLISH` (or `SPUBLISH`; one per shard
//!   on a Redis Cluster). A publish on
//!   the node is delivered locally at once and queued here (a bounded queue:
//!   [`RedisBridgeBuilder::max_queued`], [`RedisBridgeBuilder::max_queued_bytes`]);
//!   the thread sends what is queued in pipelined batches.
//! - **subscriber**: one connection in pub/sub mode (one per shard on a Redis
//!   Cluster). The engine says when the
//!   node's first subscriber of a topic appears and when its last one leaves
//!   (counted across workers); the thread sends `SUBSCRIBE` / `UNSUBSCRIBE`
//!   (or `SSUBSCRIBE` / `SUNSUBSCRIBE`) for the channel `prefix + topic`. A
//!   message from another node is encoded into a frame once and delivered to
//!   the node's subscribers on every worker.
//!
//! Each message carries an envelope: a version byte, text or binary, the
//! publishing node's random id, then the payload as it is (binary-safe). A
//! node skips its own messages when Redis hands them back, so its local
//! subscribers get each publish once. Byte by byte, so that other programs can
//! publish to ringws clients too: `0xB1`, the kind (`1` text, which must be
//! UTF-8, or `2` binary), the node id (8 bytes, big endian), the payload. A message on our channels that is not an
//! envelope (or a text message that is not UTF-8) is counted as
//! [`BridgeStats::malformed`] and dropped.
//!
//! # Faults
//!
//! - **Redis unreachable at start:** the node serves its local traffic; both
//!   connections keep retrying with backoff
//!   ([`RedisBridgeBuilder::backoff`]).
//! - **Redis lost mid-run:** both reconnect with backoff; the subscriber
//!   subscribes again to every topic that has local subscribers then. The
//!   subscriber connection pings Redis every second and gives up on it after
//!   [`RedisBridgeBuilder::timeout`] of silence, so a vanished host is noticed
//!   too.
//! - **Publishes during an outage** wait in the queue up to its bound and are
//!   sent once Redis is back, after one backoff ceiling (plus jitter and
//!   100 ms) so that the other nodes, which try Redis at least that often,
//!   have subscribed again; past the bound they are dropped and counted
//!   ([`BridgeStats::dropped`]). A batch sent on a connection that broke before
//!   Redis confirmed it is not sent again (it may or may not have arrived) and
//!   is counted in [`BridgeStats::failed`].
//! - **A slow Redis** slows the bridge threads only: a worker's publish is a
//!   non-blocking push into the queue.
//!
//! # The guarantee
//!
//! **At most once across nodes, in order per publishing node and topic.** A
//! subscriber on another node gets a message published on this node at most
//! once, and the messages it gets from this node on one topic come in the
//! order the node published them (one queue, one connection, and Redis keeps
//! the order per channel). Nothing is sent twice to make up for a fault:
//! what is published while the publishing connection is down beyond the
//! queue's bound, what was in flight when it broke, and what Redis delivers
//! while a node's subscription is down (Redis pub/sub keeps nothing) is lost
//! for the other nodes, and the counters say how much of it this node knew
//! about. Local subscribers get every local publish, whatever Redis does.
//! `tests/bridge.rs` checks each part of this against a real `redis-server`.
//!
//! # Sharded pub/sub and Redis Cluster
//!
//! [`RedisBridgeBuilder::sharded`] uses Redis 7's `SPUBLISH` / `SSUBSCRIBE`,
//! whose channels live on the shard that owns their hash slot instead of being
//! broadcast to every node of a Redis Cluster. The URL names any node of the
//! cluster, the seed:
//!
//! - The bridge reads the slot map (`CLUSTER SLOTS`) from the seed, or from
//!   any primary of the last map when the seed is down. A channel's slot is
//!   CRC16 (XMODEM) of the channel name, or of its first non-empty `{hash
//!   tag}`, mod 16384: give topics a common tag to keep them on one shard.
//! - **Subscribing:** one connection per shard that owns a live topic; each
//!   channel is `SSUBSCRIBE`d at its owner and `SUNSUBSCRIBE`d there when its
//!   last local subscriber leaves.
//! - **Publishing:** each message goes to the shard that owns its channel, one
//!   pipeline per shard and batch, in the node's order within each topic.
//! - **Changes:** a lost shard connection, a `MOVED` (or `CLUSTERDOWN`)
//!   refusal, or a shard dropping a subscription because it gave the slot
//!   away (a reshard or a failover) makes the bridge read the map again and,
//!   with the backoff, subscribe the topics concerned at their new owner; the
//!   other shards' subscriptions stay up. A publish refused with `MOVED` was
//!   not published, so it is sent to the new owner, up to 3 tries in all,
//!   then counted in [`BridgeStats::failed`]; one in flight on a connection
//!   that breaks is not sent again. The guarantee above holds per topic, since
//!   a topic lives on one shard at a time.
//! - [`BridgeStats::subscriber_connected`] is true when every live topic is
//!   subscribed at its owner; `publisher_connected` when the last map was read
//!   and the last batch went through.
//!
//! On a Redis without cluster support (a standalone Redis 7), sharded mode
//! uses that one endpoint. The classic mode never reads a slot map: Redis
//! Cluster forwards classic pub/sub to every node, so one endpoint serves.
//! `tests/bridge.rs` runs a real cluster of three primaries (`redis-cli
//! --cluster create`) and tests delivery on every shard, the unsubscribe at
//! the owner (`PUBSUB SHARDNUMSUB`), a shard restarted mid-run, and a slot
//! moved to another shard.

mod backoff;
mod cluster;
mod envelope;
mod publisher;
mod subscriber;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ringws::{Bridge, LocalNode, PreparedMessage};

use crate::publisher::Outgoing;
use crate::subscriber::Control;

/// Why a bridge could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL did not parse, or names something this bridge cannot use.
    #[error("invalid Redis URL {url:?}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Setting(&'static str),
}

/// Figures of a bridge, from [`RedisBridge::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Publishes Redis accepted.
    pub published: u64,
    /// Publishes dropped because the queue was full (Redis down or slow).
    pub dropped: u64,
    /// Publishes lost in flight (the connection broke before Redis confirmed
    /// them) or refused by Redis.
    pub failed: u64,
    /// Publishes waiting in the queue now.
    pub queued: u64,
    /// Messages from other nodes delivered to this node's subscribers.
    pub received: u64,
    /// This node's own messages that came back from Redis, skipped.
    pub echoes: u64,
    /// Messages on this bridge's channels that were not valid envelopes (or
    /// were larger than [`RedisBridgeBuilder::max_message_size`]).
    pub malformed: u64,
    /// Connections (either kind) made again after one was lost.
    pub reconnects: u64,
    /// The publishing connection is up.
    pub publisher_connected: bool,
    /// The subscribing connection (on a Redis Cluster, every one needed) is up
    /// and every live topic is subscribed, at its owner shard.
    pub subscriber_connected: bool,
    /// Topics that have subscribers on this node.
    pub topics: u64,
}

/// The counters both threads and the workers update.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub published: AtomicU64,
    pub dropped: AtomicU64,
    pub failed: AtomicU64,
    pub queued: AtomicU64,
    pub queued_bytes: AtomicUsize,
    pub received: AtomicU64,
    pub echoes: AtomicU64,
    pub malformed: AtomicU64,
    pub reconnects: AtomicU64,
    pub publisher_connected: AtomicBool,
    pub subscriber_connected: AtomicBool,
    pub topics: AtomicU64,
    /// A drop was logged and no publish has gone through since.
    pub dropping: AtomicBool,
}

/// Settings shared by the bridge's threads.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub info: redis::ConnectionInfo,
    pub prefix: String,
    pub sharded: bool,
    pub node: u64,
    /// Largest payload delivered from another node.
    pub max_message_size: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub timeout: Duration,
}

impl Settings {
    /// The Redis channel of `topic`.
    pub fn channel(&self, topic: &str) -> Vec<u8> {
        let mut channel = Vec::with_capacity(self.prefix.len() + topic.len());
        channel.extend_from_slice(self.prefix.as_bytes());
        channel.extend_from_slice(topic.as_bytes());
        channel
    }

    /// The node of the URL: the Redis, or the cluster node asked first for
    /// the slot map.
    pub fn seed(&self) -> cluster::Addr {
        match self.info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            // `build` admits plain TCP only.
            other => (other.to_string(), 0),
        }
    }

    /// Where each channel lives: in sharded mode, the cluster's slot map
    /// (asked of `seeds` in turn; a Redis without cluster support serves
    /// every channel itself); in classic mode the URL's node, since Redis
    /// Cluster forwards classic pub/sub to every node.
    pub fn slot_map(&self, seeds: &[cluster::Addr]) -> Result<cluster::SlotMap, String> {
        if self.sharded {
            cluster::discover(&self.info, seeds, self.timeout)
        } else {
            Ok(cluster::SlotMap::single(self.seed()))
        }
    }

    /// The topic of a Redis channel, if it is one of ours.
    pub fn topic<'a>(&self, channel: &'a [u8]) -> Option<&'a str> {
        let rest = channel.strip_prefix(self.prefix.as_bytes())?;
        std::str::from_utf8(rest).ok()
    }
}

/// Sets up a [`RedisBridge`].
#[derive(Debug, Clone)]
pub struct RedisBridgeBuilder {
    url: String,
    prefix: String,
    sharded: bool,
    max_queued: usize,
    max_queued_bytes: usize,
    max_message_size: usize,
    backoff: (Duration, Duration),
    timeout: Duration,
    node_id: Option<u64>,
}

impl RedisBridgeBuilder {
    /// Channel names are `prefix + topic` (default `"ringws:"`), so that
    /// several applications can share one Redis.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Redis 7 sharded pub/sub (`SPUBLISH`, `SSUBSCRIBE`) instead of the
    /// classic commands (default off). See the crate docs.
    pub fn sharded(mut self, sharded: bool) -> Self {
        self.sharded = sharded;
        self
    }

    /// Most publishes waiting for Redis (default 10,000); beyond, a publish is
    /// dropped and counted.
    pub fn max_queued(mut self, count: usize) -> Self {
        self.max_queued = count;
        self
    }

    /// Most payload bytes waiting for Redis (default 64 MiB); beyond, a publish
    /// is dropped and counted.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = bytes;
        self
    }

    /// Largest payload accepted from another node (default 16 MiB, the
    /// engine's default message limit); a larger one is dropped and counted in
    /// [`BridgeStats::malformed`], so that it cannot push every local
    /// subscriber past its backpressure limit.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Reconnect delays: from `min`, doubling to `max`, plus up to a quarter of
    /// jitter (default 50 ms to 500 ms: after an outage, Redis is tried again at least twice a second).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = (min, max);
        self
    }

    /// Time allowed to connect, to answer a command, and for the subscribing
    /// connection to show it is alive (it pings every second); default 3 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// This node's id in the envelope (default: random). Nodes sharing a
    /// prefix must have different ids.
    pub fn node_id(mut self, id: u64) -> Self {
        self.node_id = Some(id);
        self
    }

    /// Checks the settings and the URL (`redis://[user:password@]host[:port][/db]`;
    /// no connection is made yet).
    pub fn build(self) -> Result<Arc<RedisBridge>, Error> {
        let url_error = |reason: String| Error::Url {
            url: self.url.clone(),
            reason,
        };
        let client =
            redis::Client::open(self.url.as_str()).map_err(|e| url_error(e.to_string()))?;
        let info = client.get_connection_info().clone();
        if !matches!(info.addr(), redis::ConnectionAddr::Tcp(..)) {
            return Err(url_error(
                "only plain TCP (redis://) is supported, not TLS or Unix sockets".into(),
            ));
        }
        if self.max_queued == 0 {
            return Err(Error::Setting("max_queued must be at least 1"));
        }
        if self.backoff.0.is_zero() {
            return Err(Error::Setting("the backoff floor must be above zero"));
        }
        if self.timeout < Duration::from_millis(100) {
            return Err(Error::Setting("the timeout must be at least 100 ms"));
        }
        let node = match self.node_id {
            Some(id) => id,
            None => {
                let mut bytes = [0u8; 8];
                getrandom::fill(&mut bytes)
                    .map_err(|_| Error::Setting("no randomness for the node id"))?;
                u64::from_ne_bytes(bytes)
            }
        };
        let settings = Settings {
            info,
            prefix: self.prefix,
            sharded: self.sharded,
            node,
            max_message_size: self.max_message_size,
            backoff_min: self.backoff.0,
            backoff_max: self.backoff.1,
            timeout: self.timeout,
        };
        let (outgoing_tx, outgoing_rx) = mpsc::sync_channel(self.max_queued);
        let (control_tx, control_rx) = mpsc::channel();
        Ok(Arc::new(RedisBridge {
            settings: Arc::new(settings),
            counters: Arc::default(),
            max_queued_bytes: self.max_queued_bytes,
            outgoing: outgoing_tx,
            control: control_tx,
            pending: Mutex::new(Some((outgoing_rx, control_rx))),
            stop: Arc::default(),
            threads: Mutex::default(),
        }))
    }
}

/// A [`ringws::Bridge`] over Redis pub/sub. Build it with
/// [`RedisBridge::builder`], give a clone to [`ringws::Builder::bridge`], keep
/// one for [`stats`](Self::stats).
pub struct RedisBridge {
    settings: Arc<Settings>,
    counters: Arc<Counters>,
    max_queued_bytes: usize,
    outgoing: SyncSender<Outgoing>,
    control: Sender<Control>,
    /// The threads' ends of the queues, until `start`.
    #[allow(clippy::type_complexity)]
    pending: Mutex<Option<(Receiver<Outgoing>, Receiver<Control>)>>,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for RedisBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBridge")
            .field("addr", &self.settings.info.addr())
            .field("prefix", &self.settings.prefix)
            .field("sharded", &self.settings.sharded)
            .field("node", &format_args!("{:016x}", self.settings.node))
            .finish_non_exhaustive()
    }
}

impl RedisBridge {
    /// A builder for the Redis at `url`, with every default.
    pub fn builder(url: impl Into<String>) -> RedisBridgeBuilder {
        RedisBridgeBuilder {
            url: url.into(),
            prefix: "ringws:".into(),
            sharded: false,
            max_queued: 10_000,
            max_queued_bytes: 64 << 20,
            max_message_size: 16 << 20,
            backoff: (Duration::from_millis(50), Duration::from_millis(500)),
            timeout: Duration::from_secs(3),
            node_id: None,
        }
    }

    /// A bridge to `url` with every default.
    pub fn new(url: &str) -> Result<Arc<Self>, Error> {
        Self::builder(url).build()
    }

    /// This node's id in the envelope.
    pub fn node_id(&self) -> u64 {
        self.settings.node
    }

    /// The Redis channel a topic maps to.
    pub fn channel(&self, topic: &str) -> Vec<u8> {
        self.settings.channel(topic)
    }

    /// Current figures.
    pub fn stats(&self) -> BridgeStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BridgeStats {
            published: load(&c.published),
            dropped: load(&c.dropped),
            failed: load(&c.failed),
            queued: load(&c.queued),
            received: load(&c.received),
            echoes: load(&c.echoes),
            malformed: load(&c.malformed),
            reconnects: load(&c.reconnects),
            publisher_connected: c.publisher_connected.load(Ordering::Relaxed),
            subscriber_connected: c.subscriber_connected.load(Ordering::Relaxed),
            topics: load(&c.topics),
        }
    }

    fn drop_publish(&self, why: &str) {
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        if !self.counters.dropping.swap(true, Ordering::Relaxed) {
            log::warn!("ringws-redis: dropping publishes ({why}); see BridgeStats::dropped");
        }
    }
}

impl Bridge for RedisBridge {
    fn start(&self, node: LocalNode) {
        let Some((outgoing, control)) = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            log::error!("ringws-redis: a bridge serves one server; this one is started already");
            return;
        };
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        let publisher = publisher::Publisher::new(
            self.settings.clone(),
            self.counters.clone(),
            self.stop.clone(),
            outgoing,
        );
        let subscriber = subscriber::Subscriber::new(
            self.settings.clone(),
            self.counters.clone(),
            self.control.clone(),
            control,
            node,
        );
        for (name, run) in [
            (
                "ringws-redis-pub",
                Box::new(move || publisher.run()) as Box<dyn FnOnce() + Send>,
            ),
            ("ringws-redis-sub", Box::new(move || subscriber.run())),
        ] {
            match std::thread::Builder::new().name(name.into()).spawn(run) {
                Ok(thread) => threads.push(thread),
                Err(e) => log::error!("ringws-redis: cannot start {name}: {e}"),
            }
        }
    }

    fn subscribe(&self, topic: &str) {
        self.counters.topics.fetch_add(1, Ordering::Relaxed);
        let _ = self.control.send(Control::Subscribe(topic.into()));
    }

    fn unsubscribe(&self, topic: &str) {
        self.counters.topics.fetch_sub(1, Ordering::Relaxed);
        let _ = self.control.send(Control::Unsubscribe(topic.into()));
    }

    fn publish(&self, topic: &str, message: &PreparedMessage) {
        let bytes = topic.len() + message.payload().len();
        let queued = self
            .counters
            .queued_bytes
            .fetch_add(bytes, Ordering::Relaxed);
        if queued + bytes > self.max_queued_bytes {
            self.counters
                .queued_bytes
                .fetch_sub(bytes, Ordering::Relaxed);
            return self.drop_publish("the queue's byte bound is reached");
        }
        let outgoing = Outgoing {
            topic: topic.into(),
            message: message.clone(),
            bytes,
            attempts: 0,
        };
        // Counted before the send: the publisher may take it at once.
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        match self.outgoing.try_send(outgoing) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                self.counters
                    .queued_bytes
                    .fetch_sub(bytes, Ordering::Relaxed);
                self.drop_publish("the queue is full");
            }
        }
    }

    fn stop(&self) {
        if self.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.control.send(Control::Stop);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Drop for RedisBridge {
    fn drop(&mut self) {
        Bridge::stop(&*self);
    }
}
