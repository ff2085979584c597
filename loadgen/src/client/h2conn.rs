//! `--http2`: a thread's HTTP/2 connections, each carrying up to
//! `--streams-per-conn` WebSockets as streams (RFC 8441). A WebSocket is a
//! [`Conn`] as over HTTP/1.1 (its decoder, session, sends, scenario state);
//! its bytes go out as DATA of its stream, framed into the connection's
//! buffer within the server's windows, and DATA read is decoded in place,
//! frame piece by frame piece. The framing is `crate::h2`'s.
//!
//! A WebSocket waits for its stream until the server's SETTINGS have come
//! (with SETTINGS_ENABLE_CONNECT_PROTOCOL) and while the connection has as
//! many streams open as the server allows; one opened answers with
//! `:status 200`. Our side of a stream ends (END_STREAM) once the WebSocket's
//! close is answered, or the server ended its side.

use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
use std::sync::Once;
use std::time::Instant;

use mio::{Interest, Poll, Token};
use ringws::proto::session::Endpoint;

use super::conn::{self, Conn, Link, RxScratch, Schedule, Sock, StreamLink};
use super::h2streams::{detach, on_frame, open_waiting, pump, pump_all};
use super::{DEFLATE_OFFER, Failure, Live, Plan, Report, classify};
use crate::h2::{self, H2};

/// One HTTP/2 connection.
pub(super) struct H2Conn {
    pub(super) sock: Sock,
    pub(super) h2: H2,
    /// How much of `h2.out` is written.
    pub(super) out_pos: usize,
    pub(super) started: Instant,
    pub(super) connected: bool,
    /// The server's SETTINGS came: streams may open.
    pub(super) ready: bool,
    /// The server sent GOAWAY: no stream opens any more.
    pub(super) goaway: bool,
    /// Some WebSocket opened on it (it counts as carrying them).
    pub(super) carried: bool,
    /// WebSockets waiting for a stream, oldest first.
    pub(super) waiting: VecDeque<usize>,
    /// The WebSocket of each stream opened, at (id - 1) / 2; `GONE` once
    /// the stream is over.
    pub(super) streams: Vec<usize>,
    /// Streams open now.
    pub(super) open: usize,
    /// WebSockets waiting or on a stream.
    pub(super) attached: usize,
}

pub(super) const GONE: usize = usize::MAX;

/// What handling an HTTP/2 connection's events needs of the thread.
pub(super) struct Ctx<'a> {
    pub(super) plan: &'a Plan,
    pub(super) report: &'a mut Report,
    pub(super) live: &'a Live,
    pub(super) endpoint: &'a mut Endpoint,
    pub(super) scratch: &'a mut RxScratch,
    pub(super) schedule: &'a mut Schedule,
    pub(super) poll: &'a Poll,
    pub(super) now: Instant,
}

/// A thread's HTTP/2 connections.
pub(super) struct Links {
    conns: slab::Slab<H2Conn>,
    /// The extended CONNECT's header block for each target.
    blocks: Vec<Vec<u8>>,
    per_conn: usize,
    /// Connections opened so far (the next one's target follows).
    opened: usize,
    /// Where the WebSockets being added go: a connection, or the failure
    /// of the one that could not be opened or has closed.
    current: Result<usize, Failure>,
}

/// Says `what` once per run.
pub(super) fn say(once: &Once, what: impl FnOnce() -> String) {
    once.call_once(|| eprintln!("loadgen: {}", what()));
}

impl Links {
    pub(super) fn new(plan: &Plan, per_conn: usize) -> Self {
        let blocks = plan
            .targets
            .iter()
            .map(|t| {
                let offer = t.deflate.then_some(DEFLATE_OFFER);
                h2::connect_block(t.tls.is_some(), &t.host, &t.path, offer)
            })
            .collect();
        Self {
            conns: slab::Slab::new(),
            blocks,
            per_conn: per_conn.max(1),
            opened: 0,
            current: Err(Failure::Other),
        }
    }

    /// Adds this thread's `index`th WebSocket (key `key` in `conns`, where
    /// the caller inserts what this returns): on a new connection for every
    /// `per_conn`th. `Err`: its connection could not be opened.
    pub(super) fn add(
        &mut self,
        index: usize,
        key: usize,
        source: Option<IpAddr>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(usize, Link), Failure> {
        if index.is_multiple_of(self.per_conn) {
            let node = (ctx.plan.first_target + self.opened) % ctx.plan.targets.len();
            self.opened += 1;
            self.current = self.connect(node, source, ctx);
        }
        let link = self.current?;
        let c = &mut self.conns[link];
        c.waiting.push_back(key);
        c.attached += 1;
        let node = (ctx.plan.first_target + self.opened - 1) % ctx.plan.targets.len();
        Ok((
            node,
            Link::Stream(StreamLink {
                conn: link,
                id: 0,
                window: 0,
                unacked: 0,
            }),
        ))
    }

    /// Opens the streams that may open now on `link` (after `add`, once the
    /// caller has inserted the WebSocket).
    pub(super) fn start_waiting(&mut self, link: usize, conns: &mut slab::Slab<Conn>) {
        if let Some(c) = self.conns.get_mut(link) {
            let node = conns
                .get(c.waiting.front().copied().unwrap_or(GONE))
                .map_or(0, |w| w.node);
            open_waiting(c, conns, &self.blocks[usize::from(node)]);
            let _ = flush(c);
        }
    }

    fn connect(
        &mut self,
        node: usize,
        source: Option<IpAddr>,
        ctx: &mut Ctx<'_>,
    ) -> Result<usize, Failure> {
        let target = &ctx.plan.targets[node];
        let mut stream = conn::open_socket(target.addr, source).map_err(|e| classify(&e))?;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        ctx.poll
            .registry()
            .register(
                &mut stream,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| classify(&e))?;
        let tls = match target.tls.as_ref().map(|t| t.connection()) {
            Some(Ok(tls)) => Some(Box::new(tls)),
            Some(Err(e)) => return Err(classify(&e)),
            None => None,
        };
        entry.insert(H2Conn {
            sock: Sock::new(stream, tls),
            h2: H2::new(),
            out_pos: 0,
            started: Instant::now(),
            connected: false,
            ready: false,
            goaway: false,
            carried: false,
            waiting: VecDeque::new(),
            streams: Vec::new(),
            open: 0,
            attached: 0,
        });
        Ok(key)
    }

    /// A readiness event of connection `key`.
    pub(super) fn on_event(
        &mut self,
        key: usize,
        event: &mio::event::Event,
        conns: &mut slab::Slab<Conn>,
        buf: &mut [u8],
        ctx: &mut Ctx<'_>,
    ) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let mut result = Ok(());
        if !c.connected && (event.is_writable() || event.is_error()) {
            match c.sock.connect_error(event.is_error()) {
                None => {
                    c.connected = true;
                    c.h2.start();
                }
                Some(e) => result = Err(classify(&e)),
            }
        }
        if result.is_ok() && c.connected && event.is_writable() {
            result = flush(c).map_err(|_| Failure::Reset);
        }
        if result.is_ok() && (event.is_readable() || event.is_read_closed()) {
            result = self.read(key, conns, buf, ctx);
        }
        if let Err(why) = result {
            self.close(key, why, conns, ctx);
        }
    }

    /// Reads what the server sent and hands it to the streams.
    fn read(
        &mut self,
        key: usize,
        conns: &mut slab::Slab<Conn>,
        buf: &mut [u8],
        ctx: &mut Ctx<'_>,
    ) -> Result<(), Failure> {
        let c = &mut self.conns[key];
        loop {
            let read = c.sock.read(buf);
            if c.sock.tls_finished() {
                let took = (ctx.now - c.started).as_micros().max(1) as u64;
                let _ = ctx.report.tls_handshake.record(took);
                let alpn = c.sock.tls.as_ref().and_then(|t| t.alpn_protocol());
                if alpn != Some(b"h2") {
                    static SAID: Once = Once::new();
                    say(&SAID, || {
                        format!(
                            "--http2: the server chose {} by ALPN, not h2: it does not serve HTTP/2 over TLS",
                            alpn.map_or("nothing".into(), |p| String::from_utf8_lossy(p)
                                .into_owned())
                        )
                    });
                    return Err(Failure::BadStatus);
                }
            }
            let n = match read {
                Ok(0) => return Err(Failure::Reset),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::InvalidData && !c.sock.tls_done => {
                    conn::tls_failed(&e);
                    return Err(Failure::Other);
                }
                Err(_) => return Err(Failure::Reset),
            };
            if !c.ready && buf[..n].starts_with(b"HTTP/1.") {
                static SAID: Once = Once::new();
                say(&SAID, || {
                    "--http2: the server answered the HTTP/2 preface in HTTP/1.1: it does not \
                     take HTTP/2 by prior knowledge on this port (ringws: Http2 { prior_knowledge: \
                     true, .. }; the echo example: --h2c)"
                        .into()
                });
                return Err(Failure::BadStatus);
            }
            let mut input = &mut buf[..n];
            loop {
                let event = match c.h2.next(&mut input) {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(e) => {
                        static SAID: Once = Once::new();
                        say(&SAID, || {
                            format!("--http2: the server's HTTP/2 is wrong: {e}")
                        });
                        return Err(Failure::Other);
                    }
                };
                on_frame(c, event, conns, &self.blocks, self.per_conn, ctx)?;
            }
            // rustls hands out about one record a read: only WouldBlock
            // says the socket is drained.
            if n < buf.len() && c.sock.tls.is_none() {
                break;
            }
        }
        flush(c).map_err(|_| Failure::Reset)
    }

    /// WebSocket `key` has more to send: framed and written now.
    pub(super) fn send(&mut self, key: usize, conns: &mut slab::Slab<Conn>, ctx: &mut Ctx<'_>) {
        let Some(ws) = conns.get_mut(key) else { return };
        let Link::Stream(s) = &ws.link else { return };
        let link = s.conn;
        let Some(c) = self.conns.get_mut(link) else {
            return;
        };
        pump(ws, &mut c.h2);
        if flush(c).is_err() {
            self.close(link, Failure::Reset, conns, ctx);
        }
    }

    /// WebSocket `key` took too long to open: its stream is cancelled, and
    /// its connection closed if it carries nothing else.
    pub(super) fn expire(&mut self, key: usize, conns: &mut slab::Slab<Conn>, ctx: &mut Ctx<'_>) {
        let Some(ws) = conns.try_remove(key) else {
            return;
        };
        ctx.report.fail(Failure::Timeout, ctx.live);
        let Link::Stream(s) = &ws.link else { return };
        let link = s.conn;
        let Some(c) = self.conns.get_mut(link) else {
            return;
        };
        if s.id != 0 {
            c.h2.reset(s.id, h2::CANCEL);
        }
        detach(c, key, s.id);
        if c.attached == 0 {
            self.close(link, Failure::Timeout, conns, ctx);
        } else if flush(c).is_err() {
            self.close(link, Failure::Reset, conns, ctx);
        }
    }

    /// Closes connection `key`: each of its WebSockets ends (one not yet
    /// open fails for `why`).
    fn close(&mut self, key: usize, why: Failure, conns: &mut slab::Slab<Conn>, ctx: &mut Ctx<'_>) {
        let Some(mut c) = self.conns.try_remove(key) else {
            return;
        };
        let _ = ctx.poll.registry().deregister(&mut c.sock.stream);
        if self.current == Ok(key) {
            self.current = Err(why);
        }
        for k in c.waiting.iter().chain(&c.streams) {
            if let Some(ws) = conns.try_remove(*k) {
                conn::closed(&ws, why, ctx.report, ctx.live);
            }
        }
    }

    /// The end of the run: what the WebSockets queued (their closes) goes out.
    pub(super) fn flush_all(&mut self, conns: &mut slab::Slab<Conn>) {
        for (_, c) in self.conns.iter_mut() {
            pump_all(c, conns);
            let _ = flush(c);
        }
    }
}

pub(super) fn flush(c: &mut H2Conn) -> io::Result<()> {
    c.sock.write(&mut c.h2.out, &mut c.out_pos)
}
