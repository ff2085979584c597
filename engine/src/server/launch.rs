//! Starting a [`Server`]: its listeners, a backend and a worker per thread,
//! and the [`ServerHandle`] that steers them ([`Server::start`], [`Server::run`]).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::handle::Inner;
use super::{BridgeSlot, Builder, Server, ServerHandle, StartError};
use crate::backend::epoll::EpollBackend;
use crate::backend::signals::{self, SignalFd};
use crate::backend::uring::UringBackend;
use crate::backend::{self, Chosen};
use crate::config::{BackendKind, Config, ConfigError, Handover};
use crate::handover::{self, Asked, Control, ListenerSlot, Old, Taken};
use crate::runtime::bridge::{LocalNode, NodeTopics};
use crate::runtime::command::{self, Mailbox};
use crate::runtime::handler::Handler;
use crate::runtime::metrics::{Metrics, Source};
use crate::runtime::worker::{Worker, WorkerStats};
use crate::transport::tls::TlsConfigCell;

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
            handle.stop_handover();
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
        let mut handover = prepare_handover(&config)?;
        let listeners = bind_all(&config, handover.as_mut().and_then(|h| h.taken.as_mut()))?;
        let kept = match &handover {
            Some(_) => keep_listeners(&config, &listeners).map_err(StartError::Handover)?,
            None => Vec::new(),
        };
        let local_addrs: Vec<SocketAddr> = listeners[0]
            .iter()
            .map(|l| l.local_addr())
            .collect::<Result<_, _>>()
            .map_err(StartError::Worker)?;
        let tls_addrs = local_addrs[config.addrs.len()..].to_vec();
        let tls = config
            .tls
            .as_ref()
            .map(|c| Arc::new(TlsConfigCell::new(c, config.http2.tls)));
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
                handover: Mutex::new(None),
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
        if let Some(prepared) = handover {
            let control = prepared
                .spawn(kept, handle.inner.mailboxes.clone())
                .map_err(StartError::Handover)?;
            *handle
                .inner
                .handover
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(control);
        }
        Ok((handle, inline_worker))
    }
}

/// What a worker is made of: its index and what it shares with the others.
struct WorkerSeed<F> {
    index: usize,
    config: Arc<Config>,
    factory: Arc<F>,
    peers: crate::runtime::command::Peers,
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

/// A live hand-over being set up: the nonce, and what a running process
/// handed over (`None`: nobody to take over; the control socket is bound).
struct PreparedHandover {
    config: Handover,
    nonce: Vec<u8>,
    taken: Option<Taken>,
    bound: Option<OwnedFd>,
}

/// With [`Builder::handover`](super::Builder::handover): reads the nonce,
/// and takes over from the process listening on the control socket, or
/// binds it when nobody does.
fn prepare_handover(config: &Config) -> Result<Option<PreparedHandover>, StartError> {
    let Some(h) = &config.handover else {
        return Ok(None);
    };
    let nonce = handover::read_nonce(&h.nonce_file).map_err(StartError::Handover)?;
    // Both backends take connections over (io_uring into a part of its
    // fixed-file table kept for them).
    let asked = handover::take_over(h, &nonce, true).map_err(StartError::Handover)?;
    let (taken, bound) = match asked {
        Asked::Taken(taken) => (Some(taken), None),
        Asked::Nobody => (
            None,
            Some(handover::listen(&h.socket).map_err(StartError::Handover)?),
        ),
        // The old process is shutting down: the thread binds the control
        // socket once it is free.
        Asked::OtherVersion(reason) => {
            log::warn!("ringws: no hand-over ({reason}); starting beside the running process");
            (None, None)
        }
    };
    Ok(Some(PreparedHandover {
        config: h.clone(),
        nonce,
        taken,
        bound,
    }))
}

impl PreparedHandover {
    /// Starts the hand-over thread: receiving what the old process hands
    /// over first, if anything, then listening for the next new process.
    fn spawn(
        self,
        listeners: Vec<(ListenerSlot, OwnedFd)>,
        mailboxes: Arc<[Mailbox]>,
    ) -> io::Result<Control> {
        let stop = Arc::new(AtomicBool::new(false));
        let old = Old {
            config: self.config,
            nonce: self.nonce,
            listeners,
            mailboxes: mailboxes.clone(),
            stop: stop.clone(),
        };
        match (self.taken, self.bound) {
            (Some(taken), _) => Control::spawn(stop, move || taken.receive(mailboxes, old)),
            (None, bound) => Control::spawn(stop, move || old.run(bound)),
        }
    }
}

/// A copy of every listening socket for the hand-over thread, in the order
/// the protocol sends them (by address, then by worker).
fn keep_listeners(
    config: &Config,
    listeners: &[Vec<TcpListener>],
) -> io::Result<Vec<(ListenerSlot, OwnedFd)>> {
    let mut kept = Vec::new();
    for index in 0..config.addrs.len() + config.tls_addrs.len() {
        for worker in listeners {
            let slot = ListenerSlot {
                tls: index >= config.addrs.len(),
                index: index as u16,
            };
            kept.push((slot, OwnedFd::from(worker[index].try_clone()?)));
        }
    }
    Ok(kept)
}

/// One listener per worker per address, all with SO_REUSEPORT on the same port,
/// so the kernel spreads connections over the workers. Those a running process
/// handed over (`taken`) come first; more workers than it had bind beside them.
fn bind_all(
    config: &Config,
    mut taken: Option<&mut Taken>,
) -> Result<Vec<Vec<TcpListener>>, StartError> {
    let mut per_worker: Vec<Vec<TcpListener>> = (0..config.workers).map(|_| Vec::new()).collect();
    for (index, requested) in config.listen_addrs().enumerate() {
        let mut handed = taken
            .as_deref_mut()
            .map(|t| t.listeners_of(index))
            .unwrap_or_default();
        let mut addr = requested;
        if let Some(first) = handed.front() {
            addr = first
                .local_addr()
                .map_err(|source| StartError::Listen { addr, source })?;
        }
        for listeners in per_worker.iter_mut() {
            let listener = match handed.pop_front() {
                Some(listener) => listener,
                None => listen(addr, config.backlog)
                    .map_err(|source| StartError::Listen { addr, source })?,
            };
            listener
                .set_nonblocking(true)
                .map_err(|source| StartError::Listen { addr, source })?;
            // Port 0: the first bind picked the port; the others share it.
            addr = listener
                .local_addr()
                .map_err(|source| StartError::Listen { addr, source })?;
            listeners.push(listener);
        }
        if !handed.is_empty() {
            // Without net.ipv4.tcp_migrate_req, what is queued on them is reset.
            log::warn!(
                "ringws: {} listening sockets handed over beyond this process's workers are closed",
                handed.len()
            );
        }
    }
    if let Some(left) = taken.map(|t| t.leftover()).filter(|&n| n > 0) {
        log::warn!(
            "ringws: {left} listening sockets handed over for addresses this process does not have are closed"
        );
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
