//! Building, starting and steering a server: [`Server::builder`], [`Server::start`]
//! and the cross-thread [`ServerHandle`].

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::backend::epoll::EpollBackend;
use crate::backend::signals::{self, SignalFd};
use crate::backend::uring::UringBackend;
use crate::backend::{self, Chosen};
use crate::config::{
    BackendKind, BackpressurePolicy, Config, ConfigError, DeflateMode, ProxyMode, ProxyProtocol,
};
use crate::proto::close::CloseCode;
use crate::runtime::bridge::{self, Bridge, LocalNode, NodeTopics};
use crate::runtime::command::{self, Command, Mailbox};
use crate::runtime::handler::Handler;
use crate::runtime::metrics::{Format, Metrics, Source};
use crate::runtime::worker::{Worker, WorkerStats};
use crate::transport::tls::{TlsConfig, TlsConfigCell};
use crate::types::{ConnId, Message, PreparedMessage, RateLimit};

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// Binding or setting up a listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The chosen backend is not available.
    #[error("backend unavailable: {0}")]
    Backend(String),
    /// A worker failed to start.
    #[error("worker failed to start: {0}")]
    Worker(io::Error),
}

/// A configured server, not yet running.
#[derive(Debug, Clone)]
pub struct Server {
    config: Config,
    bridge: BridgeSlot,
}

/// Sets up a [`Server`]; every limit has a setter and a documented default (see
/// [`Config`]).
#[derive(Debug, Default)]
pub struct Builder {
    config: Config,
    bridge: BridgeSlot,
    error: Option<ConfigError>,
    /// The addresses the last [`Builder::bind`] added, for
    /// [`Builder::proxy_protocol`].
    last_bind: std::ops::Range<usize>,
}

/// The server's bridge to other nodes, if it has one.
#[derive(Clone, Default)]
struct BridgeSlot(Option<Arc<dyn Bridge>>);

impl std::fmt::Debug for BridgeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(Bridge)"
        } else {
            "None"
        })
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty => $field:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.config.$field = value;
                self
            }
        )*
    };
}

impl Builder {
    /// Adds an address to listen on (`"127.0.0.1:8080"`, `"[::1]:0"`, ...). Port 0
    /// picks a free port, shared by all workers.
    pub fn bind(mut self, addr: impl std::net::ToSocketAddrs + std::fmt::Debug) -> Self {
        let before = self.config.addrs.len();
        if let Err(e) = self.config.add_addrs(addr, false) {
            self.error.get_or_insert(e);
        }
        self.last_bind = before..self.config.addrs.len();
        self
    }

    /// The PROXY protocol on the address(es) of the last [`bind`](Self::bind):
    /// `mode`, believing headers only from the `trusted` networks (CIDRs such
    /// as `"10.0.0.0/8"` or `"::1/128"`; at least one when on). Plain
    /// listeners only: a [`bind_tls`](Self::bind_tls) listener reads no PROXY
    /// header (the header would come before the TLS stream).
    ///
    /// ```
    /// use ringws::{ProxyMode, Server};
    /// let server = Server::builder()
    ///     .bind("127.0.0.1:0")
    ///     .proxy_protocol(ProxyMode::Required, ["127.0.0.1/32"])
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(server.config().proxy[0].mode, ProxyMode::Required);
    /// ```
    pub fn proxy_protocol<I, S>(mut self, mode: ProxyMode, trusted: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut nets = Vec::new();
        for net in trusted {
            let text = net.as_ref();
            match text.parse::<ipnet::IpNet>() {
                Ok(net) => nets.push(net),
                // A bare address is a network of one.
                Err(_) => match text.parse::<std::net::IpAddr>() {
                    Ok(ip) => nets.push(ip.into()),
                    Err(_) => {
                        self.error
                            .get_or_insert(ConfigError::BadAddress(format!("{text:?}")));
                    }
                },
            }
        }
        if self.config.proxy.len() < self.config.addrs.len() {
            self.config
                .proxy
                .resize(self.config.addrs.len(), ProxyProtocol::default());
        }
        for index in self.last_bind.clone() {
            self.config.proxy[index] = ProxyProtocol {
                mode,
                trusted: nets.clone(),
            };
        }
        self
    }

    /// Serves the server's metrics at this plain-HTTP path (e.g. `"/metrics"`),
    /// before `on_http` sees the request: Prometheus text, or OpenMetrics when
    /// the `Accept` header asks for it. See [`ServerHandle::metrics`].
    pub fn metrics_route(mut self, path: &str) -> Self {
        self.config.metrics_route = Some(path.to_owned());
        self
    }

    /// The rate limit of every connection (default none); `on_upgrade` may
    /// choose another per connection with [`crate::Upgrade::rate_limit`].
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.config.rate_limit = limit;
        self
    }

    /// Adds an address to listen on with TLS (`wss://`), served with the
    /// certificates of [`Self::tls`]. One server can have plain and TLS
    /// listeners (`bind("[::]:80")` and `bind_tls("[::]:443")`).
    pub fn bind_tls(mut self, addr: impl std::net::ToSocketAddrs + std::fmt::Debug) -> Self {
        if let Err(e) = self.config.add_addrs(addr, true) {
            self.error.get_or_insert(e);
        }
        self
    }

    /// The certificates of the [`Self::bind_tls`] listeners; replaceable while
    /// running with [`ServerHandle::reload_tls`].
    pub fn tls(mut self, config: TlsConfig) -> Self {
        self.config.tls = Some(config);
        self
    }

    setters! {
        /// Worker threads (default: available cores).
        workers: usize => workers;
        /// Pin worker `i` to core `i` (default off).
        pin_workers: bool => pin_workers;
        /// The I/O backend (default auto; `RINGWS_BACKEND` overrides).
        backend: BackendKind => backend;
        /// Listen backlog (default 4096).
        backlog: i32 => backlog;
        /// Time allowed for the upgrade request (default 10 s).
        handshake_timeout: Duration => handshake_timeout;
        /// Largest frame payload (default 16 MiB).
        max_frame_size: usize => max_frame_size;
        /// Largest message (default 16 MiB).
        max_message_size: usize => max_message_size;
        /// Close after this long without a received byte (default none).
        idle_timeout: Option<Duration> => idle_timeout;
        /// Ping after this long without a received byte (default 30 s).
        ping_interval: Option<Duration> => ping_interval;
        /// Abort when nothing arrives this long after an auto-ping (default 10 s).
        pong_timeout: Duration => pong_timeout;
        /// Wait this long for the peer's close reply (default 5 s).
        close_timeout: Duration => close_timeout;
        /// Most bytes queued per connection (default 17 MiB).
        max_backpressure: usize => max_backpressure;
        /// What to do past `max_backpressure` (default close with 1008).
        backpressure_policy: BackpressurePolicy => backpressure_policy;
        /// Connections per worker (default 1,000,000).
        max_connections_per_worker: usize => max_connections_per_worker;
        /// TLS handshakes run at once per worker; later ones wait (default 1024).
        max_tls_handshakes: usize => max_tls_handshakes;
        /// Per-worker receive buffer (default 64 KiB).
        recv_buffer_size: usize => recv_buffer_size;
        /// Reads per connection per turn (default 4).
        read_budget: u32 => read_budget;
        /// io_uring: bytes per provided receive buffer (default 256 KiB).
        uring_buffer_size: usize => uring_buffer_size;
        /// io_uring: provided buffers per worker, a power of two (default 64).
        uring_buffer_count: u16 => uring_buffer_count;
        /// io_uring: submission queue entries per ring (default 4096).
        uring_entries: u32 => uring_entries;
        /// permessage-deflate (default off).
        deflate: DeflateMode => deflate;
        /// Messages shorter than this are sent uncompressed (default 64 bytes).
        deflate_threshold: usize => deflate_threshold;
        /// Compression level 0..=9 (default 1).
        deflate_level: u32 => deflate_level;
    }

    /// With [`Server::run`]: SIGTERM and SIGINT shut the server down as
    /// [`ServerHandle::shutdown`] with `grace` does, and `run` returns. The
    /// signals are blocked on the thread that calls `run` (and so on the
    /// workers it starts) and read by worker 0 from a signalfd beside its
    /// sockets, so no thread waits for them; threads the application started
    /// before must block them too, or a signal sent to the process may reach
    /// one of those and end the process. Default off. [`Server::start`]
    /// refuses it (its caller keeps the thread, so it waits for signals itself).
    pub fn shutdown_on_signals(mut self, grace: Duration) -> Self {
        self.config.shutdown_on_signals = Some(grace);
        self
    }

    /// Largest upgrade request head in bytes (default 8 KiB; 431 beyond).
    pub fn max_handshake_bytes(mut self, bytes: usize) -> Self {
        self.config.handshake_limits.max_bytes = bytes;
        self
    }

    /// Most header fields in an upgrade request (default 64, at most 128).
    pub fn max_headers(mut self, count: usize) -> Self {
        self.config.handshake_limits.max_headers = count;
        self
    }

    /// Carries pub/sub to other nodes through `bridge` (a message broker such
    /// as `ringws-redis`): the node subscribes to a topic when its first local
    /// subscriber appears and unsubscribes when the last one leaves, every
    /// publish on this node also goes to the bridge, and what other nodes
    /// publish reaches the local subscribers. Default: none, this node alone.
    pub fn bridge(mut self, bridge: Arc<dyn Bridge>) -> Self {
        self.bridge = BridgeSlot(Some(bridge));
        self
    }

    /// Validates the configuration.
    pub fn build(self) -> Result<Server, ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.config.validate()?;
        Ok(Server {
            config: self.config,
            bridge: self.bridge,
        })
    }
}

impl Server {
    /// A builder with every default.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts the workers. `factory` builds one handler per worker, on that
    /// worker's thread, so handlers need not be `Send`.
    pub fn start<H, F>(self, factory: F) -> Result<ServerHandle, StartError>
    where
        H: Handler,
        F: Fn() -> H + Send + Sync + 'static,
    {
        if self.config.shutdown_on_signals.is_some() {
            return Err(StartError::Config(ConfigError::Invalid {
                name: "shutdown_on_signals",
                problem: "needs Server::run (start returns, so its caller waits for signals)",
            }));
        }
        let (handle, _) = self.launch(factory, false)?;
        Ok(handle)
    }

    /// Runs the server with worker 0 on the calling thread (the others on
    /// threads of their own) and returns once it has shut down: by
    /// [`ServerHandle::shutdown`] from another thread, or on SIGTERM or SIGINT
    /// with [`Builder::shutdown_on_signals`]. `started` gets the handle once
    /// every worker is ready, before worker 0 runs; clone it to steer the server
    /// from elsewhere. With one worker and signals the whole server is one
    /// thread: no thread of its own waits for signals, and a process of one
    /// thread does not share its descriptor table, so each syscall skips a
    /// reference count on the file it names.
    pub fn run<H, F>(
        self,
        factory: F,
        started: impl FnOnce(&ServerHandle),
    ) -> Result<(), StartError>
    where
        H: Handler,
        F: Fn() -> H + Send + Sync + 'static,
    {
        let previous = match self.config.shutdown_on_signals {
            Some(_) => Some(signals::block().map_err(StartError::Worker)?),
            None => None,
        };
        let result = self.launch(factory, true).map(|(handle, inline)| {
            started(&handle);
            if let Some(inline) = inline {
                inline.run();
            }
            handle.join_threads();
            handle.stop_bridge();
        });
        if let Some(previous) = previous {
            signals::restore(previous);
        }
        result
    }

    /// Starts the workers: all on threads of their own, or with `inline`
    /// worker 0 set up on the calling thread and handed back to run there.
    fn launch<H, F>(
        self,
        factory: F,
        inline: bool,
    ) -> Result<(ServerHandle, Option<ReadyWorker<F>>), StartError>
    where
        H: Handler,
        F: Fn() -> H + Send + Sync + 'static,
    {
        let config = Arc::new(self.config);
        let bridge = self.bridge.0;
        let node = bridge.clone().map(|b| Arc::new(NodeTopics::new(b)));
        let chosen = backend::choose(config.effective_backend()).map_err(StartError::Backend)?;
        let listeners = bind_all(&config)?;
        let local_addrs: Vec<SocketAddr> = listeners[0]
            .iter()
            .map(|l| l.local_addr())
            .collect::<Result<_, _>>()
            .map_err(StartError::Worker)?;
        let tls_addrs = local_addrs[config.addrs.len()..].to_vec();
        let tls = config.tls.as_ref().map(|c| Arc::new(TlsConfigCell::new(c)));
        let factory = Arc::new(factory);
        let peers = Arc::new(OnceLock::new());
        let stats: Arc<[Arc<WorkerStats>]> = (0..config.workers).map(|_| Arc::default()).collect();
        let metrics = Arc::new(Metrics::new(Source {
            backend: match chosen {
                Chosen::Epoll => "epoll",
                Chosen::Uring => "io_uring",
            },
            workers: stats.clone(),
            mailboxes: peers.clone(),
            handle_publishes: AtomicU64::new(0),
        }));
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<(usize, Mailbox)>>();
        // The spawned workers and the calling thread meet here.
        let spawned = config.workers - usize::from(inline);
        let barrier = Arc::new(Barrier::new(spawned + 1));
        let mut threads = Vec::with_capacity(spawned);
        let mut inline_worker = None;
        for (index, worker_listeners) in listeners.into_iter().enumerate() {
            let seed = WorkerSeed {
                index,
                config: config.clone(),
                factory: factory.clone(),
                peers: peers.clone(),
                node: node.clone(),
                metrics: metrics.clone(),
                tls: tls.clone(),
            };
            if inline && index == 0 {
                // Set up here now (the others wait at the barrier for the
                // mailboxes, this one's included); run after the barrier.
                let signals = config
                    .shutdown_on_signals
                    .map(|_| SignalFd::open())
                    .transpose();
                let opened = signals
                    .and_then(|signals| open_backend(chosen, worker_listeners, &config, signals));
                match opened {
                    Ok(backend) => {
                        let (mailbox, inbox) = command::queue(backend.waker());
                        let _ = ready_tx.send(Ok((index, mailbox)));
                        inline_worker = Some(ReadyWorker {
                            seed,
                            backend,
                            inbox,
                        });
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
                continue;
            }
            let ready = ready_tx.clone();
            let barrier = barrier.clone();
            let core = config
                .pin_workers
                .then(|| cores.get(index % cores.len().max(1)).copied())
                .flatten();
            let thread = std::thread::Builder::new()
                .name(format!("ringws-{index}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    let backend = match open_backend(chosen, worker_listeners, &seed.config, None) {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            // Still meet the others at the barrier, then leave.
                            barrier.wait();
                            return;
                        }
                    };
                    let (mailbox, inbox) = command::queue(backend.waker());
                    let _ = ready.send(Ok((index, mailbox)));
                    drop(ready);
                    barrier.wait();
                    ReadyWorker {
                        seed,
                        backend,
                        inbox,
                    }
                    .run();
                })
                .map_err(StartError::Worker)?;
            threads.push(thread);
        }
        drop(ready_tx);
        let mut mailboxes: Vec<Option<Mailbox>> = vec![None; config.workers];
        let mut failure = None;
        for _ in 0..config.workers {
            match ready_rx.recv() {
                Ok(Ok((index, mailbox))) => mailboxes[index] = Some(mailbox),
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some(io::Error::other("worker exited during start")),
            }
        }
        let mailboxes: Vec<Mailbox> = mailboxes.into_iter().flatten().collect();
        let _ = peers.set(mailboxes.clone());
        let mailboxes: Arc<[Mailbox]> = mailboxes.into();
        // Before the workers run, so that `start` comes before any other call.
        if let Some(bridge) = &bridge
            && failure.is_none()
        {
            bridge.start(LocalNode::new(mailboxes.clone()));
        }
        barrier.wait();
        let handle = ServerHandle {
            inner: Arc::new(Inner {
                backend: match chosen {
                    Chosen::Epoll => BackendKind::Epoll,
                    Chosen::Uring => BackendKind::IoUring,
                },
                mailboxes,
                bridge: BridgeSlot(bridge),
                threads: Mutex::new(threads),
                stats,
                metrics,
                local_addrs,
                tls_addrs,
                tls,
                inline,
            }),
        };
        if let Some(e) = failure {
            // The inline worker (if it started) never runs: the others exit.
            drop(inline_worker);
            handle.shutdown(Duration::ZERO);
            if inline {
                // `shutdown` leaves the bridge to `run`, which does not get here.
                handle.stop_bridge();
            }
            return Err(StartError::Worker(e));
        }
        Ok((handle, inline_worker))
    }
}

/// What a worker is made of: its index and what it shares with the others.
struct WorkerSeed<F> {
    index: usize,
    config: Arc<Config>,
    factory: Arc<F>,
    peers: crate::runtime::worker::Peers,
    node: Option<Arc<NodeTopics>>,
    metrics: Arc<Metrics>,
    tls: Option<Arc<TlsConfigCell>>,
}

/// A worker set up on the thread that will run it (the ring of an io_uring
/// backend has that thread as its single issuer).
struct ReadyWorker<F> {
    seed: WorkerSeed<F>,
    backend: Backend,
    inbox: command::Inbox,
}

impl<F> ReadyWorker<F> {
    /// Runs the worker's loop until it has shut down.
    fn run<H: Handler>(self)
    where
        F: Fn() -> H,
    {
        let Self {
            seed,
            backend,
            inbox,
        } = self;
        let index = seed.index;
        let worker = Worker::new(
            index,
            (seed.factory)(),
            seed.config,
            inbox,
            seed.peers,
            seed.node,
            seed.metrics,
            seed.tls,
            Instant::now(),
        );
        let result = match backend {
            Backend::Epoll(b) => b.run(worker),
            Backend::Uring(b) => b.run(worker),
        };
        if let Err(e) = result {
            log::error!("worker {index} stopped: {e}");
        }
    }
}
/// A worker's backend, set up on the thread that runs it.
enum Backend {
    Epoll(EpollBackend),
    Uring(Box<UringBackend>),
}

impl Backend {
    fn waker(&self) -> Arc<dyn command::Wake> {
        match self {
            Backend::Epoll(b) => b.waker(),
            Backend::Uring(b) => b.waker(),
        }
    }
}

/// Sets up a worker's backend on the calling thread (an io_uring ring's
/// single issuer is the thread that sets it up).
fn open_backend(
    chosen: Chosen,
    listeners: Vec<TcpListener>,
    config: &Config,
    signals: Option<SignalFd>,
) -> io::Result<Backend> {
    match chosen {
        Chosen::Epoll => EpollBackend::new(listeners, signals).map(Backend::Epoll),
        Chosen::Uring => {
            UringBackend::new(listeners, config, signals).map(|b| Backend::Uring(Box::new(b)))
        }
    }
}

/// One listener per worker per address, all with SO_REUSEPORT on the same port,
/// so the kernel spreads connections over the workers.
fn bind_all(config: &Config) -> Result<Vec<Vec<TcpListener>>, StartError> {
    let mut per_worker: Vec<Vec<TcpListener>> = (0..config.workers).map(|_| Vec::new()).collect();
    for requested in config.listen_addrs() {
        let mut addr = requested;
        for listeners in per_worker.iter_mut() {
            let listener = listen(addr, config.backlog)
                .map_err(|source| StartError::Listen { addr, source })?;
            // Port 0: the first bind picked the port; the others share it.
            addr = listener
                .local_addr()
                .map_err(|source| StartError::Listen { addr, source })?;
            listeners.push(listener);
        }
    }
    Ok(per_worker)
}

fn listen(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux.
    socket.set_tcp_nodelay(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

#[derive(Debug)]
struct Inner {
    backend: BackendKind,
    mailboxes: Arc<[Mailbox]>,
    bridge: BridgeSlot,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stats: Arc<[Arc<WorkerStats>]>,
    metrics: Arc<Metrics>,
    local_addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    tls: Option<Arc<TlsConfigCell>>,
    /// Worker 0 runs on the thread in [`Server::run`].
    inline: bool,
}

/// Steers a running server from any thread.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    inner: Arc<Inner>,
}

/// Server-wide figures, summed over the workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections open now (including handshakes in progress).
    pub connections: u64,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Messages received.
    pub messages_in: u64,
    /// Frames queued for sending (messages, pongs, pings).
    pub messages_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Commands from other threads run (publishes, sends, closes, shutdowns).
    pub commands: u64,
    /// Wake-ups those commands cost (one per batch, not per command).
    pub wakes: u64,
}

impl ServerHandle {
    /// The bound address (of the first configured address).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addrs[0]
    }

    /// The backend the workers run: [`BackendKind::IoUring`] or
    /// [`BackendKind::Epoll`] (never `Auto`).
    pub fn backend(&self) -> BackendKind {
        self.inner.backend
    }

    /// Every bound address: the plain ones, then the TLS ones.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.inner.local_addrs
    }

    /// The addresses bound with TLS ([`Builder::bind_tls`]).
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.inner.tls_addrs
    }

    /// Replaces the certificates (the whole TLS configuration) for new
    /// handshakes on every worker; open connections keep theirs. False if the
    /// server has no TLS listener.
    pub fn reload_tls(&self, config: TlsConfig) -> bool {
        match &self.inner.tls {
            Some(cell) => {
                cell.replace(&config);
                true
            }
            None => false,
        }
    }

    /// Publishes to `topic` on every worker, and through the bridge (if any)
    /// on the other nodes; the frame is encoded once.
    pub fn publish(&self, topic: &str, message: Message<'_>) {
        self.publish_prepared(topic, &PreparedMessage::new(message));
    }

    /// Publishes a prepared message, as [`publish`](Self::publish) does.
    pub fn publish_prepared(&self, topic: &str, message: &PreparedMessage) {
        self.inner
            .metrics
            .source()
            .handle_publishes
            .fetch_add(1, Ordering::Relaxed);
        self.publish_local(topic, message.clone());
        if let Some(bridge) = &self.inner.bridge.0 {
            bridge.publish(topic, message);
        }
    }

    /// Publishes to `topic` on this node's workers only, not through the
    /// bridge: for a message that came from another node.
    pub fn publish_local(&self, topic: &str, message: PreparedMessage) {
        bridge::deliver(&self.inner.mailboxes, topic, message);
    }

    /// Sends a message to one connection. False if its worker is gone; a closed
    /// connection silently drops it.
    pub fn send(&self, id: ConnId, message: Message<'_>) -> bool {
        let message = PreparedMessage::new(message);
        self.mailbox(id)
            .is_some_and(|m| m.send(Command::Send { id, message }))
    }

    /// Starts closing one connection.
    pub fn close(&self, id: ConnId, code: CloseCode, reason: &str) -> bool {
        self.mailbox(id).is_some_and(|m| {
            m.send(Command::Close {
                id,
                code,
                reason: reason.to_owned(),
            })
        })
    }

    /// Stops accepting, sends close 1001 to every connection, flushes everything
    /// queued, waits for the peers' replies until `grace` has passed, aborts the
    /// rest and joins the workers. For a server in [`Server::run`], it joins
    /// the workers on threads of their own; `run` returns once worker 0, on
    /// its caller's thread, is done too.
    pub fn shutdown(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        for mailbox in self.inner.mailboxes.iter() {
            mailbox.send(Command::Shutdown { deadline });
        }
        self.join_threads();
        if !self.inner.inline {
            self.stop_bridge();
        }
    }

    /// Joins the workers on threads of their own.
    fn join_threads(&self) {
        let threads =
            std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }

    /// Tells the bridge that every worker has exited.
    fn stop_bridge(&self) {
        if let Some(bridge) = &self.inner.bridge.0 {
            bridge.stop();
        }
    }

    /// Current figures.
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for s in self.inner.stats.iter() {
            total.connections += s.connections.load(Ordering::Relaxed);
            total.accepted += s.accepted.load(Ordering::Relaxed);
            total.messages_in += s.messages_in.load(Ordering::Relaxed);
            total.messages_out += s.messages_out.load(Ordering::Relaxed)
                + s.pings_out.load(Ordering::Relaxed)
                + s.pongs_out.load(Ordering::Relaxed);
            total.bytes_in += s.bytes_in.load(Ordering::Relaxed);
            total.commands += s.commands.load(Ordering::Relaxed);
        }
        total.wakes = self.inner.mailboxes.iter().map(Mailbox::wakes).sum();
        total
    }

    /// The server's metrics in the Prometheus text format (0.0.4), for users
    /// who serve them elsewhere than [`Builder::metrics_route`]. Read from the
    /// figures each worker publishes once per loop turn.
    pub fn metrics(&self) -> String {
        self.inner.metrics.render(Format::Prometheus)
    }

    /// The same in the OpenMetrics text format (1.0.0).
    pub fn metrics_openmetrics(&self) -> String {
        self.inner.metrics.render(Format::OpenMetrics)
    }

    fn mailbox(&self, id: ConnId) -> Option<&Mailbox> {
        self.inner.mailboxes.get(id.worker())
    }
}
