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
use ringws::proto::handshake::parse_extensions;
use ringws::proto::session::{Endpoint, InflateBuffer};

use super::conn::{
    self, Conn, Link, Phase, Schedule, Sock, StreamLink, accept_deflate, opened, receive,
};
use super::{DEFLATE_OFFER, Failure, Live, Plan, Report, classify};
use crate::h2::{self, Event, H2};

/// One HTTP/2 connection.
pub(super) struct H2Conn {
    sock: Sock,
    h2: H2,
    /// How much of `h2.out` is written.
    out_pos: usize,
    started: Instant,
    connected: bool,
    /// The server's SETTINGS came: streams may open.
    ready: bool,
    /// The server sent GOAWAY: no stream opens any more.
    goaway: bool,
    /// Some WebSocket opened on it (it counts as carrying them).
    carried: bool,
    /// WebSockets waiting for a stream, oldest first.
    waiting: VecDeque<usize>,
    /// The WebSocket of each stream opened, at (id - 1) / 2; `GONE` once
    /// the stream is over.
    streams: Vec<usize>,
    /// Streams open now.
    open: usize,
    /// WebSockets waiting or on a stream.
    attached: usize,
}

const GONE: usize = usize::MAX;

/// What handling an HTTP/2 connection's events needs of the thread.
pub(super) struct Ctx<'a> {
    pub(super) plan: &'a Plan,
    pub(super) report: &'a mut Report,
    pub(super) live: &'a Live,
    pub(super) endpoint: &'a mut Endpoint,
    pub(super) inflated: &'a mut InflateBuffer,
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
fn say(once: &Once, what: impl FnOnce() -> String) {
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
            open_waiting(c, conns, &self.blocks[node]);
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
            match c.sock.connected() {
                Ok(true) => {
                    c.connected = true;
                    c.h2.start();
                }
                Ok(false) => {}
                Err(e) => result = Err(classify(&e)),
            }
        }
        if result.is_ok() && c.connected && event.is_writable() {
            c.sock.writable = true;
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

/// One event of connection `c`.
fn on_frame(
    c: &mut H2Conn,
    event: Event<'_>,
    conns: &mut slab::Slab<Conn>,
    blocks: &[Vec<u8>],
    per_conn: usize,
    ctx: &mut Ctx<'_>,
) -> Result<(), Failure> {
    let ws_of = |c: &H2Conn, id: u32| {
        let k = *c.streams.get((id as usize).wrapping_sub(1) / 2)?;
        (k != GONE).then_some(k)
    };
    match event {
        Event::Ready => {
            if !c.h2.connect_protocol {
                static SAID: Once = Once::new();
                say(&SAID, || {
                    "--http2: the server did not enable extended CONNECT \
                     (SETTINGS_ENABLE_CONNECT_PROTOCOL): no WebSockets over its HTTP/2"
                        .into()
                });
                return Err(Failure::BadStatus);
            }
            if (c.h2.max_streams as usize) < per_conn {
                static SAID: Once = Once::new();
                let max = c.h2.max_streams;
                say(&SAID, || {
                    format!(
                        "--http2: the server allows {max} streams per connection, \
                         --streams-per-conn is {per_conn}: the rest wait for a stream to end"
                    )
                });
            }
            c.ready = true;
            let node = c
                .waiting
                .front()
                .and_then(|k| conns.get(*k))
                .map_or(0, |w| w.node);
            open_waiting(c, conns, &blocks[node]);
        }
        Event::StreamWindow(delta) => {
            for &k in &c.streams {
                if let Some(Conn {
                    link: Link::Stream(s),
                    ..
                }) = conns.get_mut(k)
                {
                    s.window += delta;
                }
            }
            pump_all(c, conns);
        }
        Event::ConnectionWindow => pump_all(c, conns),
        Event::WindowUpdate { stream, increment } => {
            if let Some(k) = ws_of(c, stream)
                && let Some(ws) = conns.get_mut(k)
            {
                if let Link::Stream(s) = &mut ws.link {
                    s.window += i64::from(increment);
                }
                pump(ws, &mut c.h2);
            }
        }
        Event::Headers { stream, end_stream } => {
            // Decoded whatever comes of it: the HPACK table follows every block.
            let response = c.h2.response().map_err(|_| Failure::Other)?;
            let Some(k) = ws_of(c, stream) else {
                return Ok(());
            };
            let ws = &mut conns[k];
            if ws.phase != Phase::Upgrading {
                return Ok(());
            }
            let extension = response
                .extensions
                .as_deref()
                .and_then(|v| parse_extensions(v).next());
            let session = match response.status {
                200 if !end_stream => accept_deflate(ctx.plan, extension),
                _ => None,
            };
            let Some(session) = session else {
                ctx.report.fail(Failure::BadStatus, ctx.live);
                ws.reported = true;
                if !end_stream {
                    c.h2.reset(stream, h2::CANCEL);
                }
                end(c, conns, k, Failure::BadStatus, ctx);
                return Ok(());
            };
            ws.session = session;
            if !std::mem::replace(&mut c.carried, true) {
                ctx.report.h2_connections += 1;
            }
            let (plan, report, live) = (ctx.plan, &mut *ctx.report, ctx.live);
            opened(k, ws, plan, report, live, ctx.schedule, ctx.now);
            pump(ws, &mut c.h2);
        }
        Event::Data {
            stream,
            data,
            flow,
            end_stream,
        } => {
            let Some(k) = ws_of(c, stream) else {
                return Ok(());
            };
            let ws = &mut conns[k];
            let Link::Stream(s) = &mut ws.link else {
                return Ok(());
            };
            s.unacked += flow;
            if !end_stream {
                c.h2.credit(stream, &mut s.unacked);
            }
            let open = matches!(ws.phase, Phase::Open | Phase::Closing(_));
            let (plan, live, now) = (ctx.plan, ctx.live, ctx.now);
            let closed = open
                && receive(
                    ws,
                    data,
                    ctx.endpoint,
                    ctx.inflated,
                    plan,
                    ctx.report,
                    live,
                    now,
                );
            pump(ws, &mut c.h2);
            if closed || end_stream {
                // Our side ends too, after what is queued (the close's
                // reply); what the window holds back is given up.
                let queued = ws.tx.out_pos < ws.tx.out.len();
                if queued {
                    c.h2.reset(stream, h2::CANCEL);
                } else {
                    c.h2.end_stream(stream);
                }
                end(c, conns, k, Failure::Reset, ctx);
            }
        }
        Event::Reset { stream, code } => {
            if let Some(k) = ws_of(c, stream) {
                let why = if code == 0x7 {
                    Failure::Refused
                } else {
                    Failure::Reset
                };
                end(c, conns, k, why, ctx);
            }
        }
        Event::GoAway { last_stream, code } => {
            if code != 0 {
                static SAID: Once = Once::new();
                say(&SAID, || {
                    format!("--http2: the server sent GOAWAY {}", h2::error_name(code))
                });
            }
            c.goaway = true;
            // Streams past the last one it took, and those not yet opened,
            // will not be served.
            let refused: Vec<usize> = c
                .waiting
                .iter()
                .copied()
                .chain(
                    c.streams
                        .iter()
                        .enumerate()
                        .filter(|(i, k)| **k != GONE && (2 * *i as u32 + 1) > last_stream)
                        .map(|(_, k)| *k),
                )
                .collect();
            for k in refused {
                end(c, conns, k, Failure::Refused, ctx);
            }
        }
    }
    Ok(())
}

/// WebSocket `k` of `c` is over: counted and forgotten; a stream it freed
/// lets a waiting one open.
fn end(c: &mut H2Conn, conns: &mut slab::Slab<Conn>, k: usize, why: Failure, ctx: &mut Ctx<'_>) {
    let Some(ws) = conns.try_remove(k) else {
        return;
    };
    let id = match &ws.link {
        Link::Stream(s) => s.id,
        Link::Tcp(_) => 0,
    };
    detach(c, k, id);
    conn::closed(&ws, why, ctx.report, ctx.live);
}

/// Forgets WebSocket `k` (on stream `id`, 0 if it had none yet).
fn detach(c: &mut H2Conn, k: usize, id: u32) {
    if id == 0 {
        c.waiting.retain(|w| *w != k);
    } else if let Some(slot) = c.streams.get_mut((id as usize - 1) / 2) {
        *slot = GONE;
        c.open -= 1;
    }
    c.attached -= 1;
}

/// Opens streams for the waiting WebSockets as far as the server allows.
fn open_waiting(c: &mut H2Conn, conns: &mut slab::Slab<Conn>, block: &[u8]) {
    while c.ready && !c.goaway && c.open < c.h2.max_streams as usize {
        let Some(k) = c.waiting.pop_front() else {
            return;
        };
        let Some(ws) = conns.get_mut(k) else { continue };
        let Link::Stream(s) = &mut ws.link else {
            continue;
        };
        s.id = c.h2.open(block);
        s.window = c.h2.initial_window();
        debug_assert_eq!(c.streams.len(), (s.id as usize - 1) / 2);
        c.streams.push(k);
        c.open += 1;
        ws.phase = Phase::Upgrading;
    }
}

/// Frames what WebSocket `ws` has queued as DATA, as far as the windows allow.
fn pump(ws: &mut Conn, h2: &mut H2) {
    let Link::Stream(s) = &mut ws.link else {
        return;
    };
    let tx = &mut ws.tx;
    if s.id == 0 || tx.out_pos == tx.out.len() {
        return;
    }
    tx.out_pos += h2.data(s.id, &mut s.window, &tx.out[tx.out_pos..]);
    if tx.out_pos == tx.out.len() {
        tx.out.clear();
        tx.out_pos = 0;
    }
}

fn pump_all(c: &mut H2Conn, conns: &mut slab::Slab<Conn>) {
    for &k in &c.streams {
        if let Some(ws) = conns.get_mut(k) {
            pump(ws, &mut c.h2);
        }
    }
}

fn flush(c: &mut H2Conn) -> io::Result<()> {
    c.sock.write(&mut c.h2.out, &mut c.out_pos)
}
