//! The epoll backend, through mio. Edge-triggered readiness is turned into the
//! same worker calls the io_uring backend makes from completions.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener as StdListener};
use std::sync::Arc;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::api::Handler;
use crate::runtime::command::Wake;
use crate::runtime::conn::{AfterFlush, Finish};
use crate::runtime::outbox::MAX_IOVECS;
use crate::runtime::worker::Worker;

/// Tokens above this are listeners and the waker; below are slab keys.
const WAKER: Token = Token(usize::MAX);
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
}

impl EpollBackend {
    pub fn new(listeners: Vec<StdListener>) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
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
        })
    }

    pub fn waker(&self) -> Arc<dyn Wake> {
        self.waker.clone()
    }

    /// Runs the worker until it has shut down.
    pub fn run<H: Handler>(self, mut worker: Worker<H>) -> io::Result<()> {
        let Self {
            mut poll,
            mut listeners,
            waker: _waker,
        } = self;
        let config = worker.config();
        let read_budget = config.read_budget;
        let mut recv = vec![0u8; config.recv_buffer_size];
        let mut sockets: Vec<Option<TcpStream>> = Vec::new();
        let mut events = Events::with_capacity(1024);
        // Connections to read, with whether the peer has closed or failed (then
        // read to the end: no further edge will come). Those that used their
        // read budget with data left are served next turn.
        let mut readable: Vec<(usize, bool)> = Vec::new();
        let mut still_readable: Vec<(usize, bool)> = Vec::new();
        let mut flush: Vec<usize> = Vec::new();
        let mut listening = true;

        loop {
            let timeout = if readable.is_empty() {
                Some(worker.timeout())
            } else {
                Some(std::time::Duration::ZERO)
            };
            if let Err(e) = poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => worker.on_commands(),
                    Token(t) if t >= LISTENER_BASE => {
                        if listening {
                            accept_all(
                                &mut listeners[t - LISTENER_BASE],
                                &mut worker,
                                &mut sockets,
                                &poll,
                            )?;
                        }
                    }
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
                let Some(Some(stream)) = sockets.get_mut(key) else {
                    continue;
                };
                let mut reads = 0;
                loop {
                    match stream.read(&mut recv) {
                        Ok(0) => {
                            worker.on_hangup(key, true);
                            break;
                        }
                        Ok(n) => {
                            worker.on_data(key, &mut recv[..n]);
                            reads += 1;
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
                            worker.on_hangup(key, false);
                            break;
                        }
                    }
                }
            }
            std::mem::swap(&mut readable, &mut still_readable);
            worker.on_commands();
            worker.on_tick();
            if listening && !worker.accepting() {
                for listener in &mut listeners {
                    let _ = poll.registry().deregister(listener);
                }
                listeners.clear();
                listening = false;
            }
            // Callbacks run during flushing (on_drain) may queue more: repeat a few
            // rounds, then leave the rest for the next turn.
            for _ in 0..4 {
                worker.pump();
                worker.take_flush(&mut flush);
                if flush.is_empty() {
                    break;
                }
                for &key in &flush {
                    flush_one(key, &mut worker, &mut sockets, &poll);
                }
            }
            worker.publish_stats();
            // Lists grown by a burst (thousands of connections readable at once)
            // give their memory back once it is over.
            shrink_idle(&mut readable);
            shrink_idle(&mut still_readable);
            shrink_idle(&mut flush);
            if worker.finished() {
                return Ok(());
            }
        }
    }
}

/// Frees an empty list's memory if a burst made it large.
pub(crate) fn shrink_idle<T>(list: &mut Vec<T>) {
    if list.is_empty() && list.capacity() > 1024 {
        list.shrink_to(64);
    }
}

fn accept_all<H: Handler>(
    listener: &mut TcpListener,
    worker: &mut Worker<H>,
    sockets: &mut Vec<Option<TcpStream>>,
    poll: &Poll,
) -> io::Result<()> {
    loop {
        let (mut stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            // Per-connection failures (aborted before accept, fd limit reached)
            // must not stop the worker; EMFILE clears as connections close.
            Err(e) => {
                log::debug!("accept failed: {e}");
                return Ok(());
            }
        };
        let Some(key) = worker.on_accept(peer) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        if let Err(e) = poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("cannot register connection: {e}");
            worker.release(key);
            continue;
        }
        if sockets.len() <= key {
            sockets.resize_with(key + 1, || None);
        }
        sockets[key] = Some(stream);
    }
}

/// Writes one connection's queue with one vectored write (or a few, if the
/// kernel takes everything and more is queued), then does what the worker asks.
fn flush_one<H: Handler>(
    key: usize,
    worker: &mut Worker<H>,
    sockets: &mut [Option<TcpStream>],
    poll: &Poll,
) {
    let Some(Some(stream)) = sockets.get_mut(key) else {
        return;
    };
    let Some((finish, outbox)) = worker.flush_start(key) else {
        return;
    };
    if finish == Finish::Abort {
        close(key, worker, sockets, poll);
        return;
    }
    let mut written = 0;
    let mut blocked = false;
    let mut failed = false;
    if !outbox.is_empty() {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let count = outbox.io_slices(&mut slices);
        let offered: usize = slices[..count].iter().map(|s| s.len()).sum();
        match stream.write_vectored(&slices[..count]) {
            // Less than offered: the socket buffer is full; wait for writability.
            Ok(n) => {
                written = n;
                blocked = n < offered;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => blocked = true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => failed = true,
        }
    }
    if failed {
        worker.flush_failed(key);
        close(key, worker, sockets, poll);
        return;
    }
    match worker.flush_done(key, written, blocked) {
        AfterFlush::Keep => {}
        AfterFlush::ShutdownWrite => {
            if let Some(Some(stream)) = sockets.get_mut(key) {
                let _ = stream.shutdown(Shutdown::Write);
            }
        }
        AfterFlush::Close => close(key, worker, sockets, poll),
    }
}

fn close<H: Handler>(
    key: usize,
    worker: &mut Worker<H>,
    sockets: &mut [Option<TcpStream>],
    poll: &Poll,
) {
    if let Some(mut stream) = sockets.get_mut(key).and_then(Option::take) {
        let _ = poll.registry().deregister(&mut stream);
    }
    worker.release(key);
}
