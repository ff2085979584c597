//! The subscribing side: one Redis connection in pub/sub mode, used in both
//! directions at once. The control thread owns the topics that have local
//! subscribers and writes `SUBSCRIBE` / `UNSUBSCRIBE` (and a `PING` every
//! second) as the engine reports changes; a reader thread per connection
//! parses what Redis pushes (with the redis crate's parser) and delivers
//! messages from other nodes. When the connection is lost, the control thread
//! reconnects with backoff and subscribes again to every live topic.
//!
//! The socket is ours rather than a `redis::Connection`: the crate's
//! synchronous `PubSub` cannot change its subscriptions while it waits for a
//! message, and waiting with a read timeout would hold a new subscription back
//! by that timeout.

use std::collections::HashSet;
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::Value;
use ringws::LocalNode;

use crate::backoff::Backoff;
use crate::envelope;
use crate::{Counters, Settings};

/// Channels per `SUBSCRIBE` when subscribing again after a reconnect.
const CHUNK: usize = 256;
/// Longest pause between two pings on an idle connection.
const PING_EVERY: Duration = Duration::from_secs(1);

/// What the control thread is told: by the engine (through the bridge) and by
/// its reader threads.
#[derive(Debug)]
pub(crate) enum Control {
    Subscribe(Box<str>),
    Unsubscribe(Box<str>),
    /// The reader of connection number `.0` saw it end.
    Lost(u64),
    Stop,
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
}

/// How serving one connection ended.
enum Ended {
    Lost,
    Stop,
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
        }
    }

    pub fn run(mut self) {
        let mut generation = 0u64;
        let mut ever_connected = false;
        let mut failing = false;
        loop {
            let stream = match self.connect() {
                Ok(stream) => {
                    failing = false;
                    stream
                }
                Err(e) => {
                    let delay = self.backoff.delay();
                    // Loud once per outage, then quiet until it is over.
                    let level = if std::mem::replace(&mut failing, true) {
                        log::Level::Debug
                    } else {
                        log::Level::Warn
                    };
                    log::log!(
                        level,
                        "ringws-redis: cannot subscribe at {} ({e}); retrying with backoff",
                        self.settings.info.addr()
                    );
                    if self.idle(delay) {
                        continue;
                    }
                    return;
                }
            };
            generation += 1;
            if ever_connected {
                self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            ever_connected = true;
            let ended = self.serve(stream, generation);
            self.counters
                .subscriber_connected
                .store(false, Ordering::Relaxed);
            if matches!(ended, Ended::Stop) {
                return;
            }
        }
    }

    /// Runs one connection until it is lost or the bridge stops.
    fn serve(&mut self, mut stream: TcpStream, generation: u64) -> Ended {
        let reader = match stream.try_clone() {
            Ok(reader) => reader,
            Err(e) => {
                log::warn!("ringws-redis: cannot share the subscribing socket: {e}");
                return Ended::Lost;
            }
        };
        let reader = self.spawn_reader(reader, generation);
        let ended = self.subscribe_and_follow(&mut stream, generation);
        // Ends the reader's wait too; then nothing of this connection is left.
        let _ = stream.shutdown(Shutdown::Both);
        if let Some(reader) = reader {
            let _ = reader.join();
        }
        ended
    }

    fn subscribe_and_follow(&mut self, stream: &mut TcpStream, generation: u64) -> Ended {
        let live: Vec<&str> = self.live.iter().map(|t| &**t).collect();
        for chunk in live.chunks(CHUNK) {
            let mut command = redis::cmd(self.subscribe_command());
            for topic in chunk {
                command.arg(self.settings.channel(topic));
            }
            if let Err(e) = stream.write_all(&command.get_packed_command()) {
                log::warn!("ringws-redis: subscribing again failed: {e}");
                return Ended::Lost;
            }
        }
        log::info!(
            "ringws-redis: subscribed at {} ({} topic(s))",
            self.settings.info.addr(),
            self.live.len()
        );
        self.counters
            .subscriber_connected
            .store(true, Ordering::Relaxed);
        self.backoff.reset();
        let ping_every = (self.settings.timeout / 3).min(PING_EVERY);
        let mut last_ping = Instant::now();
        loop {
            let wait = ping_every.saturating_sub(last_ping.elapsed());
            let written = match self.control.recv_timeout(wait) {
                Ok(Control::Subscribe(topic)) => match self.live.insert(topic.clone()) {
                    true => self.write(stream, self.subscribe_command(), &topic),
                    false => Ok(()),
                },
                Ok(Control::Unsubscribe(topic)) => match self.live.remove(&topic) {
                    true => self.write(stream, self.unsubscribe_command(), &topic),
                    false => Ok(()),
                },
                Ok(Control::Lost(lost)) if lost == generation => {
                    log::warn!(
                        "ringws-redis: subscribing connection to {} lost; reconnecting",
                        self.settings.info.addr()
                    );
                    return Ended::Lost;
                }
                // A reader of an earlier connection.
                Ok(Control::Lost(_)) => Ok(()),
                Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => return Ended::Stop,
                Err(RecvTimeoutError::Timeout) => Ok(()),
            };
            if let Err(e) = written {
                log::warn!("ringws-redis: subscribing connection failed ({e}); reconnecting");
                return Ended::Lost;
            }
            if last_ping.elapsed() >= ping_every {
                last_ping = Instant::now();
                // The reply (or its absence) is what the reader's timeout watches.
                if let Err(e) = stream.write_all(&redis::cmd("PING").get_packed_command()) {
                    log::warn!("ringws-redis: subscribing connection failed ({e}); reconnecting");
                    return Ended::Lost;
                }
            }
        }
    }

    fn write(&self, stream: &mut TcpStream, command: &str, topic: &str) -> io::Result<()> {
        let packed = redis::cmd(command)
            .arg(self.settings.channel(topic))
            .get_packed_command();
        stream.write_all(&packed)
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

    /// Follows the engine's changes for `delay` while disconnected; false if
    /// the bridge stopped.
    fn idle(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            let now = Instant::now();
            if now >= until {
                return true;
            }
            match self.control.recv_timeout(until - now) {
                Ok(Control::Subscribe(topic)) => {
                    self.live.insert(topic);
                }
                Ok(Control::Unsubscribe(topic)) => {
                    self.live.remove(&topic);
                }
                Ok(Control::Lost(_)) => {}
                Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => return false,
                Err(RecvTimeoutError::Timeout) => return true,
            }
        }
    }

    /// A TCP connection to Redis, authenticated if the URL has a password.
    fn connect(&self) -> Result<TcpStream, String> {
        let redis::ConnectionAddr::Tcp(host, port) = &self.settings.info.addr() else {
            return Err("not a TCP address".into());
        };
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
        };
        match std::thread::Builder::new()
            .name("ringws-redis-read".into())
            .spawn(move || reader.run(stream, generation))
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
}

impl Reader {
    fn run(self, stream: TcpStream, generation: u64) {
        let mut input = BufReader::with_capacity(64 << 10, stream);
        let mut parser = redis::Parser::new();
        loop {
            match parser.parse_value(&mut input) {
                Ok(value) => self.on_value(value),
                Err(e) => {
                    log::debug!("ringws-redis: subscribing connection ended: {e}");
                    let _ = self.control.send(Control::Lost(generation));
                    return;
                }
            }
        }
    }

    fn on_value(&self, value: Value) {
        let items = match value {
            Value::Array(items) => items,
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
        if let Some(b"message" | b"smessage") = bulk(0)
            && let (Some(channel), Some(payload)) = (bulk(1), bulk(2))
        {
            self.on_message(channel, payload);
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
