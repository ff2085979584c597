//! The epoll backend, through mio. Edge-triggered readiness is turned into the
//! same worker calls the io_uring backend makes from completions.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener as StdListener};
use std::os::fd::{IntoRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use super::signals::SignalFd;

use crate::runtime::command::Wake;
use crate::runtime::handler::Handler;
use crate::runtime::seam::{FrameParts, Hangup, Io, Prepared, Written};
use crate::runtime::worker::{Worker, shrink_idle};
use crate::transport::outbox::{MAX_IOVECS, Outbox};

/// Tokens above this are listeners and the waker; below are slab keys.
const WAKER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);
const LISTENER_BASE: usize = usize::MAX - 1024;

impl Wake for Waker {
    fn wake(&self) {
        // A failed wake means the poll is gone: the worker has exited.
        let _ = Waker::wake(self);
    }
}

/// A worker's epoll loop, before it runs.
pub(crate) struct EpollBackend {
    poll: Poll,
    listeners: Vec<TcpListener>,
    waker: Arc<Waker>,
    signals: Option<SignalFd>,
}

impl EpollBackend {
    /// `signals`: termination signals to watch (worker 0 of `Server::run`).
    pub fn new(listeners: Vec<StdListener>, signals: Option<SignalFd>) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        if let Some(signals) = &signals {
            poll.registry().register(
                &mut SourceFd(&signals.raw_fd()),
                SIGNALS,
                Interest::READABLE,
            )?;
        }
        let mut mio_listeners = Vec::with_capacity(listeners.len());
        for (i, listener) in listeners.into_iter().enumerate() {
            listener.set_nonblocking(true)?;
            let mut listener = TcpListener::from_std(listener);
            poll.registry().register(
                &mut listener,
                Token(LISTENER_BASE + i),
                Interest::READABLE,
            )?;
            mio_listeners.push(listener);
        }
        Ok(Self {
            poll,
            listeners: mio_listeners,
            waker,
            signals,
        })
    }

    pub fn waker(&self) -> Arc<dyn Wake> {
        self.waker.clone()
    }

    /// Runs the worker until it has shut down.
    pub fn run<H: Handler>(self, mut worker: Worker<H>) -> io::Result<()> {
        let Self {
            mut poll,
            listeners,
            waker: _waker,
            signals,
        } = self;
        let config = worker.config();
        let read_budget = config.read_budget;
        let mut recv = vec![0u8; config.recv_buffer_size];
        let mut io = Sockets {
            registry: poll.registry().try_clone()?,
            listeners: listeners.into_iter().map(Some).collect(),
            streams: Vec::new(),
            resumed: Vec::new(),
        };
        let mut events = Events::with_capacity(1024);
        // Connections to read, with whether the peer has closed or failed (then
        // read to the end: no further edge will come). Those that used their
        // read budget with data left are served next turn.
        let mut readable: Vec<(usize, bool)> = Vec::new();
        let mut still_readable: Vec<(usize, bool)> = Vec::new();
        let mut wait = Duration::ZERO;
        loop {
            let timeout = if readable.is_empty() {
                wait
            } else {
                Duration::ZERO
            };
            if let Err(e) = poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            for event in events.iter() {
                match event.token() {
                    // Commands are run at the end of the turn.
                    WAKER => {}
                    SIGNALS => {
                        if let Some(signal) = signals.as_ref().and_then(SignalFd::drain) {
                            worker.on_signal(signal);
                        }
                    }
                    Token(t) if t >= LISTENER_BASE => io.accept_all(t - LISTENER_BASE, &mut worker),
                    Token(key) => {
                        if event.is_writable() {
                            worker.on_writable(key);
                        }
                        let ended = event.is_read_closed() || event.is_error();
                        if event.is_readable() || ended {
                            readable.push((key, ended));
                        }
                    }
                }
            }
            // Every readable connection gets up to `read_budget` reads per turn, so
            // one fast sender cannot starve the others.
            for (key, ended) in readable.drain(..) {
                if io
                    .streams
                    .get(key)
                    .is_none_or(|s| s.as_ref().is_none_or(|s| s.paused))
                {
                    // Gone, or its rate limit is spent; resuming reads it
                    // again, so this edge is not lost.
                    continue;
                }
                let mut reads = 0;
                // Looked up per read: the worker writes through `io` while it
                // handles the data.
                while let Some(Some(stream)) = io.streams.get_mut(key) {
                    match stream.tcp.read(&mut recv) {
                        Ok(0) => {
                            worker.on_hangup(key, Hangup::Eof);
                            break;
                        }
                        Ok(n) => {
                            worker.on_data(key, &mut recv[..n], &mut io);
                            reads += 1;
                            if worker.reading_paused(key) {
                                // Its rate limit is spent: the rest waits in
                                // the socket (resuming reads it).
                                break;
                            }
                            // A short read drained the socket; edge-triggered epoll
                            // reports the next arrival, unless the peer's FIN or
                            // RST came with this data: then read on to see it.
                            if n < recv.len() && !ended {
                                break;
                            }
                            if reads == read_budget {
                                still_readable.push((key, ended));
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            worker.on_hangup(key, Hangup::Error);
                            break;
                        }
                    }
                }
            }
            std::mem::swap(&mut readable, &mut still_readable);
            let turn = worker.end_turn(Instant::now(), &mut io);
            // Edge-triggered epoll does not report again what arrived while a
            // connection was paused: read the resumed ones next turn.
            readable.append(&mut io.resumed);
            // Lists grown by a burst (thousands of connections readable at once)
            // give their memory back once it is over.
            shrink_idle(&mut readable);
            shrink_idle(&mut still_readable);
            if turn.finished {
                return Ok(());
            }
            wait = turn.wait;
        }
    }
}

/// The worker's sockets: the backend's half of the seam.
struct Sockets {
    registry: Registry,
    /// By index of the configured addresses; `None` once closed at shutdown.
    listeners: Vec<Option<TcpListener>>,
    /// Indexed by the worker's slab key.
    streams: Vec<Option<Stream>>,
    /// Connections whose reading resumed this turn, to read next turn.
    resumed: Vec<(usize, bool)>,
}

/// An accepted connection.
struct Stream {
    tcp: TcpStream,
    /// Not read while its rate limit is spent.
    paused: bool,
}

impl Sockets {
    fn accept_all<H: Handler>(&mut self, index: usize, worker: &mut Worker<H>) {
        let Some(Some(listener)) = self.listeners.get_mut(index) else {
            // Closed at shutdown; a late event.
            return;
        };
        loop {
            let (mut stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // Per-connection failures (aborted before accept, fd limit reached)
                // must not stop the worker; EMFILE clears as connections close.
                Err(e) => {
                    log::debug!("accept failed: {e}");
                    return;
                }
            };
            let Some(key) = worker.on_accept(peer, index) else {
                drop(stream);
                continue;
            };
            // TCP_NODELAY comes from the listener (Linux copies it to accepted
            // sockets): no setsockopt per connection.
            if let Err(e) = self.registry.register(
                &mut stream,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::warn!("cannot register connection: {e}");
                worker.on_released(key);
                continue;
            }
            if self.streams.len() <= key {
                self.streams.resize_with(key + 1, || None);
            }
            self.streams[key] = Some(Stream {
                tcp: stream,
                paused: false,
            });
        }
    }
}

impl Io for Sockets {
    fn writes_later(&self) -> bool {
        false
    }

    /// One vectored write of the queue.
    fn write(&mut self, key: usize, outbox: &mut Outbox) -> Written {
        let Some(Some(Stream { tcp: stream, .. })) = self.streams.get_mut(key) else {
            return Written::Failed;
        };
        // The common case, a turn's frames staged together, goes by send(2)
        // (no writev vector to import) and without filling a vector first.
        if let Some(one) = outbox.as_one_slice() {
            return outcome(stream.write(one), one.len());
        }
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let count = outbox.io_slices(&mut slices);
        let offered: usize = slices[..count].iter().map(|s| s.len()).sum();
        let result = match &slices[..count] {
            [one] => stream.write(one),
            many => stream.write_vectored(many),
        };
        outcome(result, offered)
    }

    /// One write of header and payload, from where they lie: send(2) when
    /// they lie together, else a vectored write.
    fn write_frame(&mut self, key: usize, frame: FrameParts<'_>) -> Option<Written> {
        let Some(Some(Stream { tcp: stream, .. })) = self.streams.get_mut(key) else {
            return Some(Written::Failed);
        };
        let offered = frame.header.len() + frame.payload.len();
        let result = match frame.whole {
            Some(whole) => stream.write(whole),
            None => {
                stream.write_vectored(&[IoSlice::new(frame.header), IoSlice::new(frame.payload)])
            }
        };
        Some(outcome(result, offered))
    }

    fn shutdown_write(&mut self, key: usize) {
        if let Some(Some(stream)) = self.streams.get_mut(key) {
            let _ = stream.tcp.shutdown(Shutdown::Write);
        }
    }

    fn close(&mut self, key: usize) -> bool {
        if let Some(mut stream) = self.streams.get_mut(key).and_then(Option::take) {
            let _ = self.registry.deregister(&mut stream.tcp);
        }
        true
    }

    fn pause_reading(&mut self, key: usize) {
        if let Some(Some(stream)) = self.streams.get_mut(key) {
            stream.paused = true;
        }
    }

    fn resume_reading(&mut self, key: usize) {
        if let Some(Some(stream)) = self.streams.get_mut(key) {
            if std::mem::take(&mut stream.paused) {
                // Read until EAGAIN, as after a hangup: an edge (data, or the
                // peer's FIN) may have come and gone while paused.
                self.resumed.push((key, true));
            }
        }
    }

    /// Closes the listeners: with `net.ipv4.tcp_migrate_req`, connections
    /// queued on them move to another listener of the port (a new process
    /// taking over) instead of being reset.
    fn stop_accepting(&mut self) {
        for listener in self.listeners.iter_mut().filter_map(Option::take) {
            let mut listener = listener;
            let _ = self.registry.deregister(&mut listener);
        }
    }

    /// Nothing is in flight on a readiness backend.
    fn prepare_detach(&mut self, key: usize) -> Prepared {
        match self.streams.get(key) {
            Some(Some(_)) => Prepared::Ready,
            _ => Prepared::Never,
        }
    }

    /// Deregisters the socket and hands its descriptor out: a read or write
    /// event still on its way finds no stream at `key` and is dropped.
    fn detach(&mut self, key: usize) -> Option<OwnedFd> {
        let mut stream = self.streams.get_mut(key).and_then(Option::take)?;
        let _ = self.registry.deregister(&mut stream.tcp);
        let fd = stream.tcp.into_raw_fd();
        // SAFETY: `into_raw_fd` gave up the descriptor it owned; nothing
        // else owns or closes it.
        Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
    }

    /// Registers a connected socket as `key` and reads it next turn: bytes
    /// that arrived before the registration raise no edge of their own.
    fn adopt(&mut self, key: usize, fd: OwnedFd) -> bool {
        let tcp = std::net::TcpStream::from(fd);
        if tcp.set_nonblocking(true).is_err() {
            return false;
        }
        let mut tcp = TcpStream::from_std(tcp);
        if let Err(e) = self.registry.register(
            &mut tcp,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("cannot register a connection handed over: {e}");
            return false;
        }
        if self.streams.len() <= key {
            self.streams.resize_with(key + 1, || None);
        }
        self.streams[key] = Some(Stream { tcp, paused: false });
        self.resumed.push((key, true));
        true
    }
}

/// What a vectored write of `offered` bytes came to.
fn outcome(result: io::Result<usize>, offered: usize) -> Written {
    match result {
        // Less than offered: the socket buffer is full; wait for writability.
        Ok(n) => Written::Now {
            bytes: n,
            blocked: n < offered,
        },
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Written::Now {
            bytes: 0,
            blocked: true,
        },
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Written::Now {
            bytes: 0,
            blocked: false,
        },
        Err(_) => Written::Failed,
    }
}
