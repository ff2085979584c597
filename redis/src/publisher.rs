//! The publishing thread: takes what the node published off the bounded
//! queue, in order, and sends it to Redis in pipelined batches on one
//! connection, reconnecting with backoff. While Redis is away it takes
//! nothing, so the queue fills to its bound and further publishes are dropped
//! (by [`crate::RedisBridge::publish`], counted there).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use ringws::PreparedMessage;

use crate::backoff::Backoff;
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

/// One publish waiting for Redis.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub topic: Box<str>,
    pub message: PreparedMessage,
    /// What it counts against the byte bound.
    pub bytes: usize,
}

pub(crate) struct Publisher {
    settings: Arc<Settings>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    queue: Receiver<Outgoing>,
    backoff: Backoff,
    /// The last connection attempt failed (and was logged).
    failing: bool,
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
        }
    }

    pub fn run(mut self) {
        let mut connection: Option<redis::Connection> = None;
        let mut batch: Vec<Outgoing> = Vec::with_capacity(BATCH);
        let mut envelope = Vec::new();
        let mut ever_connected = false;
        let mut stopping_since: Option<Instant> = None;
        let mut last_used = Instant::now();
        loop {
            if self.stop.load(Ordering::Acquire) {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if connection.is_none() || since.elapsed() > FLUSH_AT_STOP {
                    break;
                }
            }
            let Some(con) = connection.as_mut() else {
                // On failure, `connect` has waited out the backoff.
                let after_outage = self.failing;
                if let Some(con) = self.connect() {
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
                    connection = Some(con);
                }
                continue;
            };
            if batch.is_empty() && !self.take_batch(&mut batch) {
                if stopping_since.is_some() {
                    break;
                }
                if last_used.elapsed() >= PING_IDLE {
                    last_used = Instant::now();
                    if let Err(e) = redis::cmd("PING").query::<String>(con) {
                        log::warn!("ringws-redis: publishing connection lost ({e}); reconnecting");
                        self.counters
                            .publisher_connected
                            .store(false, Ordering::Relaxed);
                        connection = None;
                    }
                }
                continue;
            }
            last_used = Instant::now();
            match self.send(con, &batch, &mut envelope) {
                Ok(refused) => {
                    let sent = (batch.len() - refused) as u64;
                    self.counters.published.fetch_add(sent, Ordering::Relaxed);
                    self.counters
                        .failed
                        .fetch_add(refused as u64, Ordering::Relaxed);
                    self.counters.dropping.store(false, Ordering::Relaxed);
                    self.backoff.reset();
                }
                Err(e) => {
                    // Sent or not, it is not sent again: at most once.
                    log::warn!(
                        "ringws-redis: publishing connection lost ({e}); {} publish(es) in flight are lost, reconnecting",
                        batch.len()
                    );
                    self.counters
                        .failed
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    self.counters
                        .publisher_connected
                        .store(false, Ordering::Relaxed);
                    connection = None;
                }
            }
            batch.clear();
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

    /// Sends one batch as a pipeline; the number Redis refused, or the error
    /// that broke the connection.
    fn send(
        &self,
        con: &mut redis::Connection,
        batch: &[Outgoing],
        envelope: &mut Vec<u8>,
    ) -> redis::RedisResult<usize> {
        let command = if self.settings.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        let mut pipe = redis::pipe();
        for outgoing in batch {
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
        let replies: Vec<redis::Value> = pipe.query(con)?;
        let refused = replies
            .iter()
            .filter(|reply| matches!(reply, redis::Value::ServerError(_)))
            .count();
        if refused > 0 {
            log::warn!("ringws-redis: Redis refused {refused} publish(es): {replies:?}");
        }
        Ok(refused + batch.len().saturating_sub(replies.len()))
    }

    fn connect(&mut self) -> Option<redis::Connection> {
        let timeout = self.settings.timeout;
        let result = redis::Client::open(self.settings.info.clone()).and_then(|client| {
            let con = client.get_connection_with_timeout(timeout)?;
            con.set_read_timeout(Some(timeout))?;
            con.set_write_timeout(Some(timeout))?;
            Ok(con)
        });
        match result {
            Ok(con) => {
                self.failing = false;
                log::info!("ringws-redis: publishing to {}", self.settings.info.addr());
                Some(con)
            }
            Err(e) => {
                let delay = self.backoff.delay();
                // Loud once per outage, then quiet until it is over.
                let level = if std::mem::replace(&mut self.failing, true) {
                    log::Level::Debug
                } else {
                    log::Level::Warn
                };
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
