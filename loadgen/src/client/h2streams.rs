//! An HTTP/2 connection's streams: what each event of the server's means
//! for them, streams opened as the server allows, DATA framed within the
//! windows, a stream's end.

use std::sync::Once;

use ringws::proto::handshake::parse_extensions;

use super::Failure;
use super::conn::{self, Conn, Link, Phase, accept_deflate, opened, receive};
use super::h2conn::{Ctx, GONE, H2Conn, say};
use crate::h2::{self, Event, H2};

/// One event of connection `c`.
pub(super) fn on_frame(
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
            open_waiting(c, conns, &blocks[usize::from(node)]);
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
            let open = matches!(ws.phase, Phase::Open | Phase::Closing);
            let (plan, live, now) = (ctx.plan, ctx.live, ctx.now);
            let closed = open
                && receive(
                    ws,
                    data,
                    ctx.endpoint,
                    ctx.scratch,
                    plan,
                    ctx.report,
                    live,
                    now,
                );
            pump(ws, &mut c.h2);
            if closed || end_stream {
                // Our side ends too, after what is queued (the close's
                // reply); what the window holds back is given up.
                let queued = !ws.tx.unsent().is_empty();
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
pub(super) fn end(
    c: &mut H2Conn,
    conns: &mut slab::Slab<Conn>,
    k: usize,
    why: Failure,
    ctx: &mut Ctx<'_>,
) {
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
pub(super) fn detach(c: &mut H2Conn, k: usize, id: u32) {
    if id == 0 {
        c.waiting.retain(|w| *w != k);
    } else if let Some(slot) = c.streams.get_mut((id as usize - 1) / 2) {
        *slot = GONE;
        c.open -= 1;
    }
    c.attached -= 1;
}

/// Opens streams for the waiting WebSockets as far as the server allows.
pub(super) fn open_waiting(c: &mut H2Conn, conns: &mut slab::Slab<Conn>, block: &[u8]) {
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
pub(super) fn pump(ws: &mut Conn, h2: &mut H2) {
    let Link::Stream(s) = &mut ws.link else {
        return;
    };
    let tx = &mut ws.tx;
    if s.id == 0 || tx.unsent().is_empty() {
        return;
    }
    let n = h2.data(s.id, &mut s.window, tx.unsent());
    tx.sent(n);
}

pub(super) fn pump_all(c: &mut H2Conn, conns: &mut slab::Slab<Conn>) {
    for &k in &c.streams {
        if let Some(ws) = conns.get_mut(k) {
            pump(ws, &mut c.h2);
        }
    }
}
