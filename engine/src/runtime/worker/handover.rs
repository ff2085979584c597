//! A live hand-over's worker entry points (`docs/HANDOVER.md`). The old
//! process's side: each turn, every open connection, in any state of its
//! read side, is taken out of the slab and its backend (its socket not
//! closed: from then on this process never reads or writes it) and sent
//! with its snapshot to the hand-over thread; one that cannot be carried is
//! closed with 1012. The new process's side: a connection that arrives is
//! rebuilt from its snapshot, given to the backend, and served on: what it
//! had queued goes out first, its decoder goes on where the old one
//! stopped, and what it had read after its pause is parsed before what the
//! peer sent meanwhile, which is still in its socket.

use std::os::fd::OwnedFd;

use super::*;
use crate::proto::message::Decoder;
use crate::proto::session::Session;
use crate::runtime::handover::state::{MAX_HELD, MAX_OUTBOX, MAX_PARTIAL, ReadSide, Snapshot};
use crate::runtime::handover::{HandOut, Outgoing, Stage, wire};
use crate::runtime::ratelimit::Limiter;
use crate::runtime::seam::Prepared;
use crate::transport::NotNow;

/// Connections handed over per turn (the others wait, held still, for the
/// next): bounds a turn's length.
const PER_TURN: usize = 4096;

/// What became of one connection this turn.
enum Carry {
    /// Handed over (or closed with 1012, or not ours to hand: closing).
    Settled,
    /// Not at a point where it can go yet (its queue full, its handshake
    /// under way, a message in progress over what is carried): the next
    /// turn looks again.
    Wait,
}

impl<H: Handler> Worker<H> {
    /// A hand-over begins (the new process has the listeners): accepting
    /// stops at this turn's end, and every turn until `out.deadline` hands
    /// what it can over. The worker stays until the hand-over thread says
    /// the new process has everything ([`Self::hand_over_done`]): until then
    /// a failure can still bring connections back to it.
    pub(super) fn begin_hand_over(&mut self, out: HandOut) {
        if self.handing.is_some() || self.shutdown.is_some() {
            // Already stopping: nothing is handed over.
            let _ = out.sink.send(Outgoing::Paused { worker: self.index });
            let _ = out.sink.send(Outgoing::Done {
                worker: self.index,
                handed: 0,
                refused: 0,
            });
            return;
        }
        self.handing_off = Some(out.deadline);
        self.handing = Some(out);
    }

    /// Every worker has paused: hand the connections over.
    pub(super) fn hand_over_go(&mut self) {
        if let Some(out) = &mut self.handing {
            out.stage = Stage::Going;
        }
    }

    /// The new process has everything: the worker ends once what it still
    /// holds (closing with 1012, or left past the deadline) is gone.
    pub(super) fn hand_over_done(&mut self) {
        if let Some(deadline) = self.handing_off {
            let grace = self.shared.config.close_timeout;
            self.shutdown.get_or_insert(deadline + grace);
        }
    }

    /// The new process went away mid-way: serve what is left as before (no
    /// longer accepting: the listening sockets live on in the hand-over
    /// thread, for the next new process).
    pub(super) fn hand_over_failed(&mut self) {
        self.handing_off = None;
        self.release_holds = true;
        if let Some(out) = self.handing.take() {
            // The hand-over thread counts every worker out before it gives
            // back what it still held.
            let _ = out.sink.send(Outgoing::Done {
                worker: self.index,
                handed: out.handed,
                refused: out.refused,
            });
            log::warn!(
                "ringws: worker {}: hand-over failed; serving the {} connections left",
                self.index,
                self.conns.len()
            );
        }
    }

    /// One turn of a hand-over: as many connections as can go, then `Done`
    /// once none is left to wait for; past the deadline, 1001 for the rest.
    pub(super) fn hand_over_some(&mut self, now: Instant, io: &mut impl Io) {
        let Some(out) = &self.handing else {
            return;
        };
        if now >= out.deadline {
            let waiting = self.conns.len();
            self.finish_hand_over();
            if waiting > 0 {
                log::warn!(
                    "ringws: worker {}: hand-over deadline passed; closing the {waiting} connections left with 1001",
                    self.index
                );
            }
            self.release_holds = true;
            self.begin_shutdown(now + self.shared.config.close_timeout);
            return;
        }
        if out.stage != Stage::Going {
            return self.hold_still(io);
        }
        // Those that opened since, or whose message in progress was too
        // large to carry and has ended.
        self.gate_idle(io);
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        let mut handed = 0;
        let mut waiting = false;
        for key in keys {
            if handed == PER_TURN {
                waiting = true;
                break;
            }
            match self.hand_over_one(key, io) {
                Carry::Settled => handed += 1,
                Carry::Wait => waiting = true,
            }
        }
        if !waiting {
            self.finish_hand_over();
        }
    }

    /// Stops reading every open connection where it is (its read side
    /// travels, mid-frame or not), then tells the hand-over thread, once,
    /// in the same turn: the pause waits for no frame to end. One whose
    /// message in progress is too large to carry reads on to its end and
    /// goes then; a message it completes after the others have gone is
    /// published here only.
    fn hold_still(&mut self, io: &mut impl Io) {
        self.gate_idle(io);
        let ready = self
            .handing
            .as_ref()
            .is_some_and(|out| out.stage == Stage::Pausing);
        if ready {
            // What this turn's callbacks published goes out first (to the
            // other workers' mailboxes too), ahead of the `HandOverGo` the
            // last `Paused` brings: no subscriber leaves before it.
            self.pump();
        }
        if let Some(out) = &mut self.handing
            && ready
        {
            out.stage = Stage::Paused;
            let _ = out.sink.send(Outgoing::Paused { worker: self.index });
        }
    }

    /// Stops reading each open connection where it is: what it has read
    /// and not consumed travels with it (what a completion backend delivers
    /// after the pause is held, and travels too). Only one whose message in
    /// progress (or whose bytes held) outgrew what a record carries reads
    /// on, to the message's end.
    fn gate_idle(&mut self, io: &mut impl Io) {
        let mut reopen = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            let stream = &conn.stream;
            if stream.link.phase() != Phase::Open || stream.link.carried() {
                continue;
            }
            if stream.decoder.partial_len() <= MAX_PARTIAL && stream.link.held().len() <= MAX_HELD {
                if ReadGate::close_unqueued(&mut conn.socket.gate, Reasons::HANDOVER) {
                    io.pause_reading(key);
                }
            } else {
                // Read on to the message's end (reopened if held).
                reopen.push(key);
            }
        }
        for key in reopen {
            self.reopen(key, io);
        }
    }

    /// Reads `key` again: what it received while held is parsed first.
    fn reopen(&mut self, key: usize, io: &mut impl Io) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.socket.gate.contains(Reasons::HANDOVER)
            && self.gate.open(&mut conn.socket.gate, Reasons::HANDOVER)
        {
            io.resume_reading(key);
            self.reenter(key, io);
        }
    }

    /// Reads again every connection a hand-over held still: in the new
    /// process once everything has arrived, in the old one after a failure.
    pub(super) fn release_held(&mut self, io: &mut impl Io) {
        if !std::mem::take(&mut self.release_holds) {
            return;
        }
        let held: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.socket.gate.contains(Reasons::HANDOVER))
            .map(|(key, _)| key)
            .collect();
        for key in held {
            self.reopen(key, io);
        }
    }

    /// Tells the hand-over thread this worker has nothing more for it; an
    /// HTTP/2 socket left gets GOAWAY (its streams were closed with 1012).
    fn finish_hand_over(&mut self) {
        let Some(out) = self.handing.take() else {
            return;
        };
        let _ = out.sink.send(Outgoing::Done {
            worker: self.index,
            handed: out.handed,
            refused: out.refused,
        });
        let carriers: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.stream.link.phase() == Phase::Carrier)
            .map(|(key, _)| key)
            .collect();
        for key in carriers {
            self.go_away(key);
        }
    }

    /// Hands connection `key` over if it can go now.
    fn hand_over_one(&mut self, key: usize, io: &mut impl Io) -> Carry {
        let Some(conn) = self.conns.get_mut(key) else {
            return Carry::Settled;
        };
        let link = &mut conn.stream.link;
        match link.phase() {
            Phase::Handshake => return Carry::Wait,
            // Ending here anyway, or an HTTP/2 socket (its streams decide).
            Phase::Closing | Phase::Ended | Phase::Carrier => return Carry::Settled,
            Phase::Open => {}
        }
        if link.carried() {
            return self.refuse(io, key, "a WebSocket over HTTP/2 (RFC 8441)");
        }
        if self.handing.as_ref().is_some_and(|out| !out.adopts) {
            return self.refuse(io, key, "the new process cannot take connections over");
        }
        if let Some(reason) = link.session.carry_refusal() {
            return self.refuse(io, key, reason);
        }
        if conn.stream.decoder.close_received()
            || conn.stream.decoder.partial_len() > MAX_PARTIAL
            || link.held().len() > MAX_HELD
            || !conn.socket.gate.contains(Reasons::HANDOVER)
            // Paused by its rate limit too: it goes with what it holds and
            // its buckets (the new process pauses it again while the tokens
            // are spent, when it parses what it holds).
            || !conn
                .socket
                .gate
                .without(Reasons::HANDOVER)
                .without(Reasons::RATE_LIMIT)
                .is_empty()
            || link.outbox.len() > MAX_OUTBOX
        {
            return Carry::Wait;
        }
        // The codecs' windows are those of a message boundary even with a
        // message in progress: a compressed message is inflated only once
        // whole (its bytes so far travel with the read side), and one is
        // compressed whole when sent.
        let deflate = match link.session.deflate_carry() {
            Ok(deflate) => deflate,
            Err(reason) => return self.refuse(io, key, reason),
        };
        let now_ms = self.shared.now_ms;
        let limiter = link.limiter().map(|l| l.carry(now_ms));
        match io.prepare_detach(key) {
            Prepared::Ready => {}
            Prepared::Later => return Carry::Wait,
            Prepared::Never => {
                return self.refuse(io, key, "its socket cannot leave the backend");
            }
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return Carry::Settled;
        };
        // Over TLS this derives the next keys of a KeyUpdate: the last
        // check before the application is asked.
        let tls = match conn.socket.transport.hand_over() {
            Ok(tls) => tls,
            Err(NotNow::Wait) => return Carry::Wait,
            Err(NotNow::Refuse(reason)) => return self.refuse(io, key, reason),
        };
        if tls
            .as_ref()
            .is_some_and(|(_, wire)| wire.len() > MAX_OUTBOX)
        {
            // Its ciphertext queue is full: once the socket takes some.
            return Carry::Wait;
        }
        let link = &mut conn.stream.link;
        let Some(data) = self.handler.on_handover_out(link.id, link.data()) else {
            return self.refuse(
                io,
                key,
                "the application does not carry its data (Handler::on_handover_out)",
            );
        };
        let topics = link
            .topics()
            .iter()
            .filter_map(|&id| self.shared.topics.name(id).map(str::to_owned))
            .collect();
        let tick_ms = self.shared.config.tick().as_millis() as u32;
        let now = self.clock.now();
        let timer = conn.stream.timer;
        let mut outbox = Vec::with_capacity(link.outbox.len());
        link.outbox.copy_front(link.outbox.len(), &mut outbox);
        // The read side as it is: the decoder's partial state, what was read
        // after the pause, a TLS record cut by the end of a read.
        let read = ReadSide {
            decoder: conn.stream.decoder.carry(),
            held: link.held().to_vec(),
            record: conn.socket.transport.partial_record().to_vec(),
        };
        let snapshot = Snapshot {
            peer: link.peer(),
            deflate,
            outbox,
            stalled: link.stalled,
            silent_ms: now.wrapping_sub(timer.last_rx).saturating_mul(tick_ms),
            ping_ms: (timer.ping_sent != Timer::NO_PING)
                .then(|| now.wrapping_sub(timer.ping_sent).saturating_mul(tick_ms)),
            limiter,
            topics,
            data,
            tls,
            read,
        };
        if let Err(e) = wire::fits(&snapshot) {
            return self.refuse(io, key, &e.to_string());
        }
        let state = wire::encode(&snapshot);
        if wire::fits_whole(&state).is_err() {
            // Its send queues are full: once the socket takes some.
            return Carry::Wait;
        }
        let Some(fd) = io.detach(key) else {
            return self.refuse(
                io,
                key,
                "this backend cannot hand its sockets over (io_uring)",
            );
        };
        // The socket is no longer this process's: forget the connection
        // without closing it or reporting it to on_close.
        let mut conn = self.conns.remove(key);
        let link = &mut conn.stream.link;
        let ids = link.take_topics();
        self.shared.topics.leave_all(ids, key);
        link.outbox.clear(&mut self.shared.pool);
        self.shared.counters.handover_out += 1;
        if let Some(out) = &mut self.handing {
            out.handed += 1;
            let _ = out.sink.send(Outgoing::Conn { fd, state });
        }
        Carry::Settled
    }

    /// Closes `key` with 1012 (service restart): it cannot be carried.
    fn refuse(&mut self, io: &mut impl Io, key: usize, reason: &str) -> Carry {
        // Read again: the peer's close reply is awaited.
        self.reopen(key, io);
        if let Some(conn) = self.conns.get_mut(key) {
            let link = &mut conn.stream.link;
            log::info!(
                "ringws: hand-over: {:?} closed with 1012: {reason}",
                link.id
            );
            let mut text = format!("restart: {reason}");
            text.truncate(crate::proto::close::MAX_CLOSE_REASON);
            link.start_close(
                &mut self.shared,
                CloseCode::SERVICE_RESTART,
                &text,
                CloseCause::Shutdown,
            );
            self.shared.counters.handover_refused += 1;
            if let Some(out) = &mut self.handing {
                out.refused += 1;
            }
        }
        Carry::Settled
    }

    /// Connections handed over by the old process, served from this turn's
    /// end on (see [`Self::adopt_one`]).
    pub(super) fn adopt_queued(&mut self, io: &mut impl Io) {
        for (fd, state, hold) in std::mem::take(&mut self.adopting) {
            self.adopt_one(fd, &state, hold, io);
        }
        for (topic, message) in std::mem::take(&mut self.behind_adoptions) {
            pubsub::deliver(
                &mut self.conns,
                &mut self.shared,
                &mut self.keys,
                &topic,
                &message,
            );
        }
    }

    /// Rebuilds one connection from `bytes` and serves `fd` as it. One that
    /// cannot be served is closed: with 1012 after what it had queued when
    /// the application refuses it, aborted when its snapshot is bad (its
    /// byte stream's position is unknown) or the worker is full.
    fn adopt_one(&mut self, fd: OwnedFd, bytes: &[u8], hold: bool, io: &mut impl Io) {
        let snapshot = wire::decode(bytes);
        // The rate limiter and the session (permessage-deflate's codecs,
        // primed with the windows carried), or why they cannot be rebuilt.
        let limiter = match &snapshot {
            Ok(s) => match s.limiter {
                None => Ok(None),
                Some(l) => Limiter::carried(l, self.shared.now_ms)
                    .map(Some)
                    .ok_or("rate limiter out of range"),
            }
            .and_then(|limiter| Ok((limiter, Session::carried(&s.deflate)?))),
            Err(_) => Ok((None, Session::new())),
        };
        if self.conns.len() >= self.shared.config.max_connections_per_worker {
            self.shared.counters.handover_refused += 1;
            log::warn!("ringws: hand-over: a connection arrived at a full worker; aborted");
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        let key = self.conns.vacant_entry().key();
        let id = ConnId::new(self.index, key, self.generation);
        let now = self.clock.now();
        let tick_ms = (self.shared.config.tick().as_millis() as u32).max(1);
        let peer = snapshot
            .as_ref()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |s| s.peer);
        let transport = match &snapshot {
            Ok(s) => Transport::handed_over(
                s.tls.as_ref().map(|(records, wire)| (records, &wire[..])),
                &s.read.record,
                &mut self.shared.pool,
            ),
            Err(_) => Ok(Transport::Plain),
        };
        let (transport, bad_tls) = match transport {
            Ok(transport) => (transport, None),
            Err(e) => (Transport::Plain, Some(e)),
        };
        let mut conn = Conn::new(id, peer, Timer::accepted(now, now), transport);
        let failure = match (&snapshot, limiter) {
            (Err(e), _) => Some(format!("bad snapshot: {e}")),
            (Ok(_), Err(e)) => Some(format!("bad snapshot: {e}")),
            (Ok(_), Ok(_)) if bad_tls.is_some() => {
                Some(format!("bad snapshot: {}", bad_tls.unwrap_or_default()))
            }
            (Ok(s), Ok((limiter, session))) => {
                // Both checked before the application sees the connection:
                // one it took would otherwise be dropped without a word.
                let taken = self
                    .carried_decoder(s, &session)
                    .map_err(|reason| {
                        format!("its message in progress cannot go on here: {reason}")
                    })
                    .and_then(|decoder| match self.handler.on_handover_in(id, &s.data) {
                        Some(data) => Ok((decoder, data)),
                        None => {
                            Err("the application refused its data (Handler::on_handover_in)".into())
                        }
                    });
                let stream = &mut conn.stream;
                match taken {
                    Err(reason) => {
                        // What was queued goes, then the 1012.
                        stream
                            .link
                            .outbox
                            .push_copy(&mut self.shared.pool, &[], &s.outbox);
                        stream.link.fail_handover(&mut self.shared);
                        Some(reason)
                    }
                    Ok((decoder, data)) => {
                        stream.timer.last_rx = now.saturating_sub(s.silent_ms / tick_ms);
                        if let Some(ms) = s.ping_ms {
                            stream.timer.ping_sent = now.saturating_sub(ms / tick_ms);
                        }
                        let link = &mut stream.link;
                        link.open(data, session);
                        link.deadline_phase = Phase::Open;
                        link.stalled = s.stalled;
                        link.set_limiter(limiter);
                        if !s.outbox.is_empty() {
                            link.outbox.push_copy(&mut self.shared.pool, &[], &s.outbox);
                            link.mark(&mut self.shared.flush);
                        }
                        // Parsed, after the decoder's state, before the socket.
                        if !s.read.held.is_empty() {
                            link.hold_bytes(&s.read.held);
                        }
                        stream.decoder = decoder;
                        None
                    }
                }
            }
        };
        if snapshot.is_err() || bad_tls.is_some() {
            conn.stream.link.terminate(&mut self.shared);
        }
        self.conns.insert(conn);
        if !io.adopt(key, fd) {
            // The descriptor is closed; nothing of it reached the peer.
            self.conns.remove(key);
            self.shared.counters.handover_refused += 1;
            log::warn!("ringws: hand-over: the backend cannot serve a connection handed over");
            return;
        }
        if let Some(reason) = failure {
            self.shared.counters.handover_refused += 1;
            log::warn!("ringws: hand-over: {id:?} closed: {reason}");
            return;
        }
        let conn = &mut self.conns[key];
        if let Ok(s) = &snapshot {
            for topic in &s.topics {
                pubsub::join(&mut self.shared.topics, &mut conn.stream.link, topic);
            }
        }
        self.shared.counters.handover_in += 1;
        if hold {
            // Its held bytes are parsed when the hand-over completes
            // (`release_held`): a message they complete is published then.
            if ReadGate::close_unqueued(&mut conn.socket.gate, Reasons::HANDOVER) {
                io.pause_reading(key);
            }
        } else if conn.stream.link.holds_bytes() {
            // Taken back after a failure: served on at once.
            self.reenter(key, io);
        }
    }

    /// The decoder a snapshot carried, rebuilt against this process's
    /// limits for the connection and its `session` (a fresh one if it was
    /// idle).
    fn carried_decoder(&self, s: &Snapshot, session: &Session) -> Result<Decoder, &'static str> {
        let Some(carried) = &s.read.decoder else {
            return Ok(Decoder::new());
        };
        let config = self.shared.endpoint.decoder_config(session);
        Decoder::carried(carried, config)
    }
}
