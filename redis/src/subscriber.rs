//! The subscribing side: one Redis connection in pub/sub mode per shard that
//! owns a live topic (one connection in all on a standalone Redis), each used
//! in both directions at once. The control thread owns the topics that have
//! local subscribers and writes `SUBSCRIBE` / `UNSUBSCRIBE` (or the sharded
//! `SSUBSCRIBE` / `SUNSUBSCRIBE`, to the shard that owns the channel's slot)
//! and a `PING` every second as the engine reports changes; a reader thread
//! per connection parses what Redis pushes (with the redis crate's parser) and
//! delivers messages from other nodes. When a connection is lost, or a shard
//! says a slot is not (or no longer) its own, the control thread asks for the
//! slot map again and, with backoff, subscribes every live topic that is not
//! subscribed at its owner; the other shards' subscriptions stay as they are.
//!
//! The sockets are ours rather than `redis::Connection`s: the crate's
//! synchronous `PubSub` cannot change its subscriptions while it waits for a
//! message, and waiting with a read timeout would hold a new subscription back
//! by that timeout.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::Value;
use ringws::LocalNode;

use crate::backoff::{Backoff, outage_log_level};
use crate::cluster::{self, Addr, SlotMap};
use crate::envelope;
use crate::{Counters, Settings};

/// Channels per `SUBSCRIBE` when subscribing again after a reconnect.
const CHUNK: usize = 256;
/// How often each subscribing connection pings Redis.
const PING_EVERY: Duration = Duration::from_secs(1);

/// What the control thread is told: by the engine (through the bridge) and by
/// its reader threads.
#[derive(Debug)]
pub(crate) enum Control {
    Subscribe(Box<str>),
    Unsubscribe(Box<str>),
    /// The reader of connection number `.0` saw it end.
    Lost(u64),
    /// Connection `.0`'s shard refused a subscription because another shard
    /// owns the slot (`MOVED`), or the cluster is down.
    Moved(u64),
    /// Connection `.0` reported a channel unsubscribed (`sunsubscribe`): our
    /// own request, or the shard giving the channel's slot away.
    Unsubscribed(u64, Vec<u8>),
    Stop,
}

/// Writes `command channel...` (its reply comes to the reader).
fn write_command(stream: &mut TcpStream, command: &str, channels: &[&[u8]]) -> io::Result<()> {
    let mut packed = redis::cmd(command);
    for channel in channels {
        packed.arg(*channel);
    }
    stream.write_all(&packed.get_packed_command())
}

/// One subscribing connection, to one shard.
struct Link {
    stream: TcpStream,
    reader: Option<JoinHandle<()>>,
    generation: u64,
    /// The live topics subscribed on it.
    topics: HashSet<Box<str>>,
}

impl Link {
    /// Closes the socket (which ends the reader's wait too) and joins the reader.
    fn close(mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

pub(crate) struct Subscriber {
    settings: Arc<Settings>,
    counters: Arc<Counters>,
    /// Given to each reader thread, to report a lost connection.
    control_tx: Sender<Control>,
    control: Receiver<Control>,
    node: LocalNode,
    /// Topics with subscribers on this node.
    live: HashSet<Box<str>>,
    backoff: Backoff,
    /// Where channels live, while it is believed right.
    map: Option<SlotMap>,
    /// The primaries of the last map, to ask for the next one.
    known: Vec<Addr>,
    links: HashMap<Addr, Link>,
    /// Shards connected to once, to count reconnects.
    ever_connected: HashSet<Addr>,
    generation: u64,
    /// Some live topic is not subscribed at its owner, or the endpoint is not
    /// connected: [`Self::sync`] is due at `next_sync`.
    dirty: bool,
    next_sync: Instant,
    /// The last sync failed (and was logged).
    failing: bool,
    /// When a shard last refused a subscription.
    last_moved: Option<Instant>,
}

impl Subscriber {
    pub fn new(
        settings: Arc<Settings>,
        counters: Arc<Counters>,
        control_tx: Sender<Control>,
        control: Receiver<Control>,
        node: LocalNode,
    ) -> Self {
        let backoff = Backoff::new(
            settings.backoff_min,
            settings.backoff_max,
            settings.node.rotate_left(17),
        );
        Self {
            settings,
            counters,
            control_tx,
            control,
            node,
            live: HashSet::new(),
            backoff,
            map: None,
            known: Vec::new(),
            links: HashMap::new(),
            ever_connected: HashSet::new(),
            generation: 0,
            dirty: true,
            next_sync: Instant::now(),
            failing: false,
            last_moved: None,
        }
    }

    pub fn run(mut self) {
        let ping_every = (self.settings.timeout / 3).min(PING_EVERY);
        let mut last_ping = Instant::now();
        loop {
            if self.dirty && Instant::now() >= self.next_sync {
                self.sync();
            }
            self.counters
                .subscriber_connected
                .store(!self.dirty, Ordering::Relaxed);
            let mut until = last_ping + ping_every;
            if self.dirty {
                until = until.min(self.next_sync);
            }
            let wait = until.saturating_duration_since(Instant::now());
            match self.control.recv_timeout(wait) {
                Ok(Control::Subscribe(topic)) => {
                    if self.live.insert(topic.clone()) {
                        self.subscribe(topic);
                    }
                }
                Ok(Control::Unsubscribe(topic)) => {
                    if self.live.remove(&topic) {
                        self.unsubscribe(&topic);
                    }
                }
                Ok(Control::Lost(generation)) => {
                    if let Some(addr) = self.addr_of(generation) {
                        log::warn!(
                            "ringws-redis: subscribing connection to {}:{} lost; reconnecting",
                            addr.0,
                            addr.1
                        );
                        self.drop_link(&addr);
                    }
                }
                Ok(Control::Moved(generation)) => {
                    // The refusal does not name the channel: the connection
                    // goes, with its subscriptions, and each of its topics is
                    // subscribed again at its owner.
                    if let Some(addr) = self.addr_of(generation) {
                        log::info!(
                            "ringws-redis: {}:{} refused a subscription (slot moved, or cluster down); refreshing the slot map",
                            addr.0,
                            addr.1
                        );
                        self.map = None;
                        self.drop_link(&addr);
                        // A cluster that is down refuses every subscription:
                        // those rounds back off like failed connections.
                        self.last_moved = Some(Instant::now());
                        self.next_sync = Instant::now() + self.backoff.delay();
                    }
                }
                Ok(Control::Unsubscribed(generation, channel)) => {
                    self.on_unsubscribed(generation, &channel);
                }
                Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    for (_, link) in self.links.drain() {
                        link.close();
                    }
                    self.counters
                        .subscriber_connected
                        .store(false, Ordering::Relaxed);
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if last_ping.elapsed() >= ping_every {
                last_ping = Instant::now();
                // The reply (or its absence) is what each reader's timeout watches.
                let ping = redis::cmd("PING").get_packed_command();
                let failed: Vec<Addr> = self
                    .links
                    .iter_mut()
                    .filter_map(|(addr, link)| {
                        link.stream.write_all(&ping).err().map(|_| addr.clone())
                    })
                    .collect();
                for addr in failed {
                    log::warn!(
                        "ringws-redis: subscribing connection to {}:{} failed; reconnecting",
                        addr.0,
                        addr.1
                    );
                    self.drop_link(&addr);
                }
            }
        }
    }

    /// A new live topic: subscribed at its owner now if that shard is known
    /// and connected, else at the next sync.
    fn subscribe(&mut self, topic: Box<str>) {
        if self.dirty {
            return;
        }
        let channel = self.settings.channel(&topic);
        let Some(owner) = self.map.as_ref().and_then(|m| m.owner(&channel)).cloned() else {
            return self.mark_dirty();
        };
        if !self.links.contains_key(&owner) {
            // A shard not used yet: connecting may wait, so leave it to sync.
            return self.mark_dirty();
        }
        let command = self.subscribe_command();
        let link = self.links.get_mut(&owner).expect("checked above");
        match write_command(&mut link.stream, command, &[&channel]) {
            Ok(()) => {
                link.topics.insert(topic);
            }
            Err(e) => {
                log::warn!("ringws-redis: subscribing connection failed ({e}); reconnecting");
                self.drop_link(&owner);
            }
        }
    }

    fn unsubscribe(&mut self, topic: &str) {
        let command = self.unsubscribe_command();
        let channel = self.settings.channel(topic);
        let Some(addr) = self
            .links
            .iter()
            .find(|(_, link)| link.topics.contains(topic))
            .map(|(addr, _)| addr.clone())
        else {
            return;
        };
        let link = self.links.get_mut(&addr).expect("found above");
        link.topics.remove(topic);
        if let Err(e) = write_command(&mut link.stream, command, &[&channel]) {
            log::warn!("ringws-redis: subscribing connection failed ({e}); reconnecting");
            self.drop_link(&addr);
        }
    }

    /// A `sunsubscribe` we did not ask for means the shard gave the slot away
    /// (a reshard or a failover): the topic is subscribed again at its new
    /// owner. (One we asked for finds the topic off the link already, or, if
    /// it was subscribed again since, costs one idempotent `SSUBSCRIBE`.)
    fn on_unsubscribed(&mut self, generation: u64, channel: &[u8]) {
        let Some(topic) = self.settings.topic(channel) else {
            return;
        };
        let Some(addr) = self.addr_of(generation) else {
            return;
        };
        let link = self.links.get_mut(&addr).expect("found above");
        if self.live.contains(topic) && link.topics.remove(topic) {
            log::info!(
                "ringws-redis: {}:{} dropped the subscription to {topic:?} (its slot moved); refreshing the slot map",
                addr.0,
                addr.1
            );
            self.map = None;
            self.mark_dirty();
        }
    }

    /// Asks for the slot map if it is not known, connects to the owners of
    /// the live topics and subscribes each topic that is not subscribed at
    /// its owner. What fails is tried again after the backoff's delay.
    fn sync(&mut self) {
        match self.try_sync() {
            Ok(()) => {
                if std::mem::replace(&mut self.failing, false) || !self.live.is_empty() {
                    log::info!(
                        "ringws-redis: subscribed at {} ({} topic(s) on {} connection(s))",
                        self.settings.info.addr(),
                        self.live.len(),
                        self.links.len()
                    );
                }
                self.dirty = false;
                // Written is not yet accepted: after a refusal, the backoff
                // starts over only once the shards have stopped refusing.
                let refusing = self
                    .last_moved
                    .is_some_and(|at| at.elapsed() < self.settings.backoff_max * 2);
                if !refusing {
                    self.backoff.reset();
                }
            }
            Err(e) => {
                let delay = self.backoff.delay();
                // Loud once per outage, then quiet until it is over.
                let level = outage_log_level(&mut self.failing);
                log::log!(
                    level,
                    "ringws-redis: cannot subscribe at {} ({e}); retrying with backoff",
                    self.settings.info.addr()
                );
                self.next_sync = Instant::now() + delay;
            }
        }
    }

    fn try_sync(&mut self) -> Result<(), String> {
        if self.map.is_none() || self.settings.sharded {
            // Sharded: a lost shard may have been replaced (failover), so the
            // map is asked for again on every sync.
            let map = self.settings.slot_map(&self.seeds())?;
            self.known = map.primaries();
            self.map = Some(map);
        }
        let map = self.map.clone().expect("set above");
        // What goes where: each live topic to its owner.
        let mut wanted: HashMap<Addr, Vec<Box<str>>> = HashMap::new();
        let mut unowned = 0usize;
        for topic in &self.live {
            match map.owner(&self.settings.channel(topic)) {
                Some(owner) => wanted.entry(owner.clone()).or_default().push(topic.clone()),
                None => unowned += 1,
            }
        }
        if !map.is_cluster() {
            // The one endpoint is connected even with no topics, so that the
            // stats show whether Redis is there.
            for addr in map.primaries() {
                wanted.entry(addr).or_default();
            }
        }
        // Topics subscribed at a shard that no longer owns them move.
        let moved: Vec<(Addr, Box<str>)> = self
            .links
            .iter()
            .flat_map(|(addr, link)| {
                link.topics
                    .iter()
                    .filter(|t| map.owner(&self.settings.channel(t)) != Some(addr))
                    .map(|t| (addr.clone(), t.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let unsubscribe = self.unsubscribe_command();
        for (addr, topic) in moved {
            if let Some(link) = self.links.get_mut(&addr) {
                link.topics.remove(&topic);
                let channel = self.settings.channel(&topic);
                if write_command(&mut link.stream, unsubscribe, &[&channel]).is_err() {
                    self.drop_link(&addr);
                }
            }
        }
        let mut first_error = None;
        for (addr, topics) in wanted {
            if let Err(e) = self.subscribe_at(&addr, &topics) {
                first_error.get_or_insert(format!("{}:{}: {e}", addr.0, addr.1));
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if unowned > 0 {
            self.map = None;
            return Err(format!("no shard owns the slot of {unowned} topic(s)"));
        }
        Ok(())
    }

    /// Connects to `addr` if needed and subscribes there the `topics` that
    /// are not subscribed on its connection yet.
    fn subscribe_at(&mut self, addr: &Addr, topics: &[Box<str>]) -> Result<(), String> {
        if !self.links.contains_key(addr) {
            let stream = self.connect(addr)?;
            let reader = stream.try_clone().map_err(|e| e.to_string())?;
            self.generation += 1;
            let reader = self.spawn_reader(reader, self.generation);
            if !self.ever_connected.insert(addr.clone()) {
                self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            self.links.insert(
                addr.clone(),
                Link {
                    stream,
                    reader,
                    generation: self.generation,
                    topics: HashSet::new(),
                },
            );
        }
        let command = self.subscribe_command();
        let link = self.links.get_mut(addr).expect("inserted above");
        let new: Vec<&Box<str>> = topics
            .iter()
            .filter(|t| !link.topics.contains(*t))
            .collect();
        for chunk in new.chunks(CHUNK) {
            let channels: Vec<Vec<u8>> = chunk.iter().map(|t| self.settings.channel(t)).collect();
            let channels: Vec<&[u8]> = channels.iter().map(Vec::as_slice).collect();
            if let Err(e) = write_command(&mut link.stream, command, &channels) {
                self.drop_link(addr);
                return Err(e.to_string());
            }
            link.topics.extend(chunk.iter().map(|t| (*t).clone()));
        }
        Ok(())
    }

    /// A connection is gone: its topics are subscribed again at the next sync.
    fn drop_link(&mut self, addr: &Addr) {
        if let Some(link) = self.links.remove(addr) {
            link.close();
        }
        self.mark_dirty();
    }

    fn mark_dirty(&mut self) {
        if !self.dirty {
            self.dirty = true;
            self.next_sync = Instant::now();
            self.counters
                .subscriber_connected
                .store(false, Ordering::Relaxed);
        }
    }

    fn addr_of(&self, generation: u64) -> Option<Addr> {
        self.links
            .iter()
            .find(|(_, link)| link.generation == generation)
            .map(|(addr, _)| addr.clone())
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

    fn subscribe_command(&self) -> &'static str {
        if self.settings.sharded {
            "SSUBSCRIBE"
        } else {
            "SUBSCRIBE"
        }
    }

    fn unsubscribe_command(&self) -> &'static str {
        if self.settings.sharded {
            "SUNSUBSCRIBE"
        } else {
            "UNSUBSCRIBE"
        }
    }

    /// A TCP connection to Redis, authenticated if the URL has a password.
    fn connect(&self, (host, port): &Addr) -> Result<TcpStream, String> {
        let timeout = self.settings.timeout;
        let mut last = String::from("no address");
        let mut stream = None;
        for addr in (host.as_str(), *port)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
        {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let mut stream = stream.ok_or(last)?;
        let setup = |s: &TcpStream| -> io::Result<()> {
            s.set_nodelay(true)?;
            // Pings come every second: silence this long means Redis is gone.
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))
        };
        setup(&stream).map_err(|e| e.to_string())?;
        let redis_info = &self.settings.info.redis_settings();
        if let Some(password) = redis_info.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = redis_info.username() {
                auth.arg(user);
            }
            auth.arg(password);
            stream
                .write_all(&auth.get_packed_command())
                .map_err(|e| e.to_string())?;
            match redis::Parser::new().parse_value(&mut stream) {
                Ok(Value::Okay) => {}
                Ok(Value::SimpleString(s)) if s == "OK" => {}
                Ok(other) => return Err(format!("AUTH refused: {other:?}")),
                Err(e) => return Err(format!("AUTH failed: {e}")),
            }
        }
        Ok(stream)
    }

    fn spawn_reader(&self, stream: TcpStream, generation: u64) -> Option<JoinHandle<()>> {
        let reader = Reader {
            settings: self.settings.clone(),
            counters: self.counters.clone(),
            node: self.node.clone(),
            control: self.control_tx.clone(),
            generation,
        };
        match std::thread::Builder::new()
            .name("ringws-redis-read".into())
            .spawn(move || reader.run(stream))
        {
            Ok(thread) => Some(thread),
            Err(e) => {
                log::error!("ringws-redis: cannot start a reader thread: {e}");
                None
            }
        }
    }
}

/// Reads one subscribing connection until it ends.
struct Reader {
    settings: Arc<Settings>,
    counters: Arc<Counters>,
    node: LocalNode,
    control: Sender<Control>,
    /// The connection's number, in what it reports.
    generation: u64,
}

impl Reader {
    fn run(self, stream: TcpStream) {
        let mut input = BufReader::with_capacity(64 << 10, stream);
        let mut parser = redis::Parser::new();
        loop {
            match parser.parse_value(&mut input) {
                Ok(value) => self.on_value(value),
                Err(e) => {
                    log::debug!("ringws-redis: subscribing connection ended: {e}");
                    let _ = self.control.send(Control::Lost(self.generation));
                    return;
                }
            }
        }
    }

    fn on_value(&self, value: Value) {
        let items = match value {
            Value::Array(items) => items,
            Value::ServerError(e) if cluster::is_moved(e.code()) => {
                let _ = self.control.send(Control::Moved(self.generation));
                return;
            }
            Value::ServerError(e) => {
                log::warn!("ringws-redis: Redis refused a subscription command: {e:?}");
                return;
            }
            // PONG outside of subscribed mode, and the like.
            _ => return,
        };
        let bulk = |i: usize| match items.get(i) {
            Some(Value::BulkString(bytes)) => Some(bytes.as_slice()),
            _ => None,
        };
        // Anything else is a confirmation of a (un)subscribe command or a
        // pong: the read itself showed the connection alive.
        match (bulk(0), bulk(1), bulk(2)) {
            (Some(b"message" | b"smessage"), Some(channel), Some(payload)) => {
                self.on_message(channel, payload)
            }
            (Some(b"sunsubscribe"), Some(channel), _) => {
                let _ = self
                    .control
                    .send(Control::Unsubscribed(self.generation, channel.to_vec()));
            }
            _ => {}
        }
    }

    fn on_message(&self, channel: &[u8], payload: &[u8]) {
        let Some(topic) = self.settings.topic(channel) else {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let decoded = if payload.len() > envelope::HEADER_LEN + self.settings.max_message_size {
            Err(envelope::Malformed::TooLarge)
        } else {
            envelope::decode(payload)
        };
        match decoded {
            Ok(envelope) if envelope.node == self.settings.node => {
                self.counters.echoes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(envelope) => {
                // Counted first: a client that has it finds it counted.
                self.counters.received.fetch_add(1, Ordering::Relaxed);
                self.node.deliver_message(topic, envelope.message);
            }
            Err(why) => {
                if self.counters.malformed.fetch_add(1, Ordering::Relaxed) == 0 {
                    log::warn!(
                        "ringws-redis: dropped a message on {topic:?}: {why} (further ones are only counted, BridgeStats::malformed)"
                    );
                }
            }
        }
    }
}
