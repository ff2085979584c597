//! The publishing thread: takes what the node published off the bounded
//! queue, in order, and sends it to Redis in pipelined batches, reconnecting
//! with backoff: on one connection, or on a Redis Cluster in sharded mode one
//! connection per shard, each publish to the shard that owns its channel's
//! slot. While Redis is away it takes nothing, so the queue fills to its bound
//! and further publishes are dropped (by [`crate::RedisBridge::publish`],
//! counted there).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use redis::Value;
use ringws::PreparedMessage;

use crate::backoff::{Backoff, outage_log_level};
use crate::cluster::{self, Addr, SlotMap};
use crate::envelope;
use crate::{Counters, Settings};

/// Most publishes in one pipelined batch.
const BATCH: usize = 512;
/// Most payload bytes in one batch (a batch takes at least one message).
const BATCH_BYTES: usize = 1 << 20;
/// How often an idle thread looks at the stop flag.
const IDLE: Duration = Duration::from_millis(100);
/// How often an idle connection is checked with a PING, so that a lost one is
/// replaced before the next publish needs it.
const PING_IDLE: Duration = Duration::from_millis(250);
/// How long a stopping bridge still tries to send what is queued.
const FLUSH_AT_STOP: Duration = Duration::from_secs(1);
/// Tries a publish gets when no shard of a changing cluster accepts it.
const MOVED_ATTEMPTS: u8 = 3;

/// One publish waiting for Redis.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub topic: Box<str>,
    pub message: PreparedMessage,
    /// What it counts against the byte bound.
    pub bytes: usize,
    /// Times a cluster shard refused it as not its slot's owner.
    pub attempts: u8,
}

/// What became of one batch.
#[derive(Default)]
struct Sent {
    published: usize,
    /// Refused by Redis, or given up on after [`MOVED_ATTEMPTS`].
    refused: usize,
    /// In flight on a connection that broke.
    lost: usize,
    /// Not accepted by any shard yet, to send again after a new slot map.
    retry: Vec<Outgoing>,
    /// The connection error that ended this batch.
    broken: Option<String>,
}

/// The publishing connections: one per primary that has been published to.
struct Shards {
    map: SlotMap,
    connections: HashMap<Addr, redis::Connection>,
}

impl Shards {
    fn connection(
        &mut self,
        settings: &Settings,
        addr: &Addr,
    ) -> redis::RedisResult<&mut redis::Connection> {
        if !self.connections.contains_key(addr) {
            let timeout = settings.timeout;
            let client = redis::Client::open(cluster::info_at(&settings.info, addr))?;
            let con = client.get_connection_with_timeout(timeout)?;
            con.set_read_timeout(Some(timeout))?;
            con.set_write_timeout(Some(timeout))?;
            self.connections.insert(addr.clone(), con);
        }
        Ok(self.connections.get_mut(addr).expect("inserted above"))
    }

    /// Checks every connection; the first error, if any.
    fn ping(&mut self) -> redis::RedisResult<()> {
        for con in self.connections.values_mut() {
            redis::cmd("PING").query::<String>(con)?;
        }
        Ok(())
    }
}

pub(crate) struct Publisher {
    settings: Arc<Settings>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    queue: Receiver<Outgoing>,
    backoff: Backoff,
    /// The last connection attempt failed (and was logged).
    failing: bool,
    /// The primaries of the last slot map, to ask for the next one.
    known: Vec<Addr>,
}

impl Publisher {
    pub fn new(
        settings: Arc<Settings>,
        counters: Arc<Counters>,
        stop: Arc<AtomicBool>,
        queue: Receiver<Outgoing>,
    ) -> Self {
        let backoff = Backoff::new(settings.backoff_min, settings.backoff_max, settings.node);
        Self {
            settings,
            counters,
            stop,
            queue,
            backoff,
            failing: false,
            known: Vec::new(),
        }
    }

    pub fn run(mut self) {
        let mut shards: Option<Shards> = None;
        let mut batch: Vec<Outgoing> = Vec::with_capacity(BATCH);
        let mut envelope = Vec::new();
        let mut ever_connected = false;
        let mut stopping_since: Option<Instant> = None;
        let mut last_used = Instant::now();
        loop {
            if self.stop.load(Ordering::Acquire) {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if shards.is_none() || since.elapsed() > FLUSH_AT_STOP {
                    break;
                }
            }
            let Some(connected) = shards.as_mut() else {
                // On failure, `connect` has waited out the backoff.
                let after_outage = self.failing;
                if let Some(connected) = self.connect() {
                    if after_outage {
                        // What queued up during the outage would be lost on
                        // nodes whose subscription is not back yet (Redis
                        // keeps nothing): give them one backoff ceiling, in
                        // which each of them tries again.
                        self.wait(self.settle());
                    }
                    if ever_connected {
                        self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    ever_connected = true;
                    self.counters
                        .publisher_connected
                        .store(true, Ordering::Relaxed);
                    shards = Some(connected);
                }
                continue;
            };
            if batch.is_empty() && !self.take_batch(&mut batch) {
                if stopping_since.is_some() {
                    break;
                }
                if last_used.elapsed() >= PING_IDLE {
                    last_used = Instant::now();
                    if let Err(e) = connected.ping() {
                        log::warn!("ringws-redis: publishing connection lost ({e}); reconnecting");
                        self.counters
                            .publisher_connected
                            .store(false, Ordering::Relaxed);
                        shards = None;
                    }
                }
                continue;
            }
            last_used = Instant::now();
            let sent = self.send(connected, std::mem::take(&mut batch), &mut envelope);
            self.counters
                .published
                .fetch_add(sent.published as u64, Ordering::Relaxed);
            // Sent or not, what was in flight on a broken connection is not
            // sent again: at most once.
            self.counters
                .failed
                .fetch_add((sent.refused + sent.lost) as u64, Ordering::Relaxed);
            if sent.published > 0 {
                self.counters.dropping.store(false, Ordering::Relaxed);
            }
            if let Some(e) = &sent.broken {
                log::warn!(
                    "ringws-redis: publishing connection lost ({e}); {} publish(es) in flight are lost, reconnecting",
                    sent.lost
                );
            }
            let moved = !sent.retry.is_empty();
            if sent.broken.is_some() || moved {
                // The cluster changed or a shard went away: ask for the slot
                // map again. Publishes that no shard accepted yet are tried
                // again first, in their order, after the backoff's delay.
                self.counters
                    .publisher_connected
                    .store(false, Ordering::Relaxed);
                shards = None;
                if moved {
                    log::debug!(
                        "ringws-redis: {} publish(es) found their shard moved or unreachable; refreshing the slot map",
                        sent.retry.len()
                    );
                    let delay = self.backoff.delay();
                    self.wait(delay);
                }
            } else {
                self.backoff.reset();
            }
            batch = sent.retry;
        }
        self.counters
            .publisher_connected
            .store(false, Ordering::Relaxed);
    }

    /// Waits for a first publish, then takes what else is queued, up to a
    /// batch. False if nothing came within [`IDLE`].
    fn take_batch(&self, batch: &mut Vec<Outgoing>) -> bool {
        let first = match self.queue.recv_timeout(IDLE) {
            Ok(first) => first,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return false,
        };
        let mut bytes = first.bytes;
        batch.push(first);
        while batch.len() < BATCH && bytes < BATCH_BYTES {
            match self.queue.try_recv() {
                Ok(next) => {
                    bytes += next.bytes;
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        self.counters
            .queued
            .fetch_sub(batch.len() as u64, Ordering::Relaxed);
        self.counters
            .queued_bytes
            .fetch_sub(bytes, Ordering::Relaxed);
        true
    }

    /// Sends one batch, one pipeline per shard, each publish to the shard
    /// that owns its channel's slot (in a batch's order within each shard, so
    /// in order per topic).
    fn send(&self, shards: &mut Shards, batch: Vec<Outgoing>, envelope: &mut Vec<u8>) -> Sent {
        let command = if self.settings.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        let mut sent = Sent::default();
        let mut groups: Vec<(Addr, Vec<Outgoing>)> = Vec::new();
        for outgoing in batch {
            let channel = self.settings.channel(&outgoing.topic);
            match shards.map.owner(&channel) {
                Some(owner) => match groups.iter_mut().find(|(addr, _)| addr == owner) {
                    Some((_, group)) => group.push(outgoing),
                    None => groups.push((owner.clone(), vec![outgoing])),
                },
                // No shard owns the slot right now: ask for the map again.
                None => sent.retry.push(outgoing),
            }
        }
        // Each shard on its own connection: one that is down or broken holds
        // back only the topics it owns.
        for (addr, group) in groups {
            let con = match shards.connection(&self.settings, &addr) {
                Ok(con) => con,
                Err(e) => {
                    // Not sent: it may be tried again without breaking at most once.
                    log::debug!("ringws-redis: cannot publish to {}:{}: {e}", addr.0, addr.1);
                    sent.retry.extend(group);
                    continue;
                }
            };
            let mut pipe = redis::pipe();
            for outgoing in &group {
                envelope::encode(
                    self.settings.node,
                    outgoing.message.opcode(),
                    outgoing.message.payload(),
                    envelope,
                );
                pipe.cmd(command)
                    .arg(self.settings.channel(&outgoing.topic))
                    .arg(envelope.as_slice());
            }
            // Refusals come back one per publish, not as the pipeline's error.
            match pipe
                .ignore_errors()
                .query::<Vec<redis::RedisResult<Value>>>(con)
            {
                Ok(replies) => {
                    sent.refused += group.len().saturating_sub(replies.len());
                    for (outgoing, reply) in group.into_iter().zip(replies) {
                        match reply {
                            Err(e) if e.code().is_some_and(cluster::is_moved) => {
                                sent.retry.push(outgoing)
                            }
                            Err(e) => {
                                if sent.refused == 0 {
                                    log::warn!("ringws-redis: Redis refused a publish: {e}");
                                }
                                sent.refused += 1;
                            }
                            Ok(_) => sent.published += 1,
                        }
                    }
                }
                Err(e) => {
                    sent.lost += group.len();
                    sent.broken = Some(format!("{}:{}: {e}", addr.0, addr.1));
                    shards.connections.remove(&addr);
                }
            }
        }
        // Bounded: a publish the cluster keeps moving is given up on.
        let (retry, given_up): (Vec<Outgoing>, Vec<Outgoing>) = sent
            .retry
            .into_iter()
            .map(|mut outgoing| {
                outgoing.attempts += 1;
                outgoing
            })
            .partition(|outgoing| outgoing.attempts < MOVED_ATTEMPTS);
        if !given_up.is_empty() {
            log::warn!(
                "ringws-redis: {} publish(es) found no shard owning their slot after {MOVED_ATTEMPTS} tries; counted as failed",
                given_up.len()
            );
        }
        sent.refused += given_up.len();
        sent.retry = retry;
        sent
    }

    /// The slot map (from any known node) and, for a standalone Redis, the
    /// connection to it; a cluster's shards are connected to when a publish
    /// needs them, so that one being down holds back only its own topics.
    fn connect(&mut self) -> Option<Shards> {
        let result = self.settings.slot_map(&self.seeds()).and_then(|map| {
            let mut shards = Shards {
                map,
                connections: HashMap::new(),
            };
            if !shards.map.is_cluster() {
                for addr in shards.map.primaries() {
                    shards
                        .connection(&self.settings, &addr)
                        .map_err(|e| e.to_string())?;
                }
            }
            Ok(shards)
        });
        match result {
            Ok(shards) => {
                self.failing = false;
                self.known = shards.map.primaries();
                log::info!(
                    "ringws-redis: publishing to {} ({})",
                    self.settings.info.addr(),
                    if shards.map.is_cluster() {
                        format!("a cluster of {} shard(s)", self.known.len())
                    } else {
                        "one endpoint".to_string()
                    }
                );
                Some(shards)
            }
            Err(e) => {
                let delay = self.backoff.delay();
                // Loud once per outage, then quiet until it is over.
                let level = outage_log_level(&mut self.failing);
                log::log!(
                    level,
                    "ringws-redis: cannot reach {} to publish ({e}); retrying with backoff",
                    self.settings.info.addr()
                );
                self.wait(delay);
                None
            }
        }
    }

    /// Where to ask for the slot map: the URL's node, then every primary seen.
    fn seeds(&self) -> Vec<Addr> {
        let mut seeds = vec![self.settings.seed()];
        for addr in &self.known {
            if !seeds.contains(addr) {
                seeds.push(addr.clone());
            }
        }
        seeds
    }

    /// How long every other node takes at most to try Redis again: the backoff
    /// ceiling with its jitter, and a margin for the subscription itself.
    fn settle(&self) -> Duration {
        self.settings.backoff_max * 5 / 4 + Duration::from_millis(100)
    }

    /// Sleeps up to `delay`, waking early when the bridge stops.
    fn wait(&self, delay: Duration) {
        let until = Instant::now() + delay;
        while !self.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            if now >= until {
                return;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(20)));
        }
    }
}
