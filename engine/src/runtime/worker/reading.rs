//! What the worker reads and what waits: a socket's bytes through its
//! transport, step by step, to its stream's phase; the TLS
//! handshakes waiting for a slot; the read gate's pauses and resumes (rate
//! limit, handshake slot); and what a paused connection held re-entering
//! through one path.

use super::*;

impl<H: Handler> Worker<H> {
    /// Bytes received on socket `key` through its transport to its stream,
    /// step by step (plain: the bytes themselves; TLS: what the records
    /// opened); counts the handshakes running.
    pub(super) fn receive(&mut self, key: usize, data: &mut [u8], io: &mut impl Io) {
        if self
            .conns
            .get_mut(key)
            .is_some_and(|conn| conn.socket.transport.mux().is_some())
        {
            return self.read_carrier(key, data, false);
        }
        let Self {
            conns,
            handler,
            shared,
            inflated,
            plain,
            runs,
            tls_handshakes,
            ..
        } = self;
        let Some(Conn { socket, stream }) = conns.get_mut(key) else {
            return;
        };
        if stream.link.phase() == Phase::Ended {
            // After the close handshake, whatever the peer sends is discarded.
            return;
        }
        let running = socket.transport.handshaking();
        let gated = socket.gated();
        let mut reading = socket.transport.read(data, plain, runs);
        loop {
            match reading.next(&mut shared.pool) {
                Ok(Some(Step::Plaintext {
                    bytes,
                    runs,
                    mut through,
                    http2,
                })) => {
                    if http2 && stream.link.phase() == Phase::Handshake {
                        stream.link.http = Http::V2Required;
                    }
                    for run in runs {
                        let direct = match &mut through {
                            Through::Socket => Some(Direct::socket(&mut *io as &mut dyn Io)),
                            Through::Records(sealer) => Some(Direct::Records(sealer.reborrow())),
                            Through::Queue => None,
                        };
                        let bytes = &mut bytes[run.clone()];
                        deliver(handler, shared, inflated, stream, gated, bytes, direct);
                    }
                }
                // The stream ended without a close frame, as an EOF would
                // end it; what is queued and our close_notify still go out.
                Ok(Some(Step::PeerClosed)) => {
                    stream.link.closed_by_tls_peer(shared);
                    break;
                }
                Ok(None) => break,
                Err(error) => {
                    stream.link.fail_tls(shared, error);
                    break;
                }
            }
        }
        if socket.transport.pending() {
            stream.link.mark(&mut shared.flush);
        }
        match (running, socket.transport.handshaking()) {
            (false, true) => *tls_handshakes += 1,
            (true, false) => *tls_handshakes -= 1,
            _ => {}
        }
        // The preface came: from here on the socket carries HTTP/2 streams.
        if stream.link.phase() == Phase::Carrier {
            self.carry(key);
        }
    }

    /// Starts the waiting TLS handshakes that the limit now allows, oldest
    /// first: their gates open and what they held re-enters.
    pub(super) fn start_waiting_handshakes(&mut self, io: &mut impl Io) {
        while self.tls_handshakes < self.shared.config.max_tls_handshakes {
            let Some(id) = self.gate.next(Reasons::HANDSHAKE_SLOT) else {
                break;
            };
            // Gone (a timeout, a reset), or started at once since: skipped.
            let Some(conn) = conn_of(&mut self.conns, id) else {
                continue;
            };
            if !conn.socket.gate.contains(Reasons::HANDSHAKE_SLOT) {
                continue;
            }
            let resume = self
                .gate
                .open(&mut conn.socket.gate, Reasons::HANDSHAKE_SLOT);
            self.reenter(id.key(), io);
            if resume {
                io.resume_reading(id.key());
            }
        }
        self.gate.shrink();
    }

    /// What a connection read before its gate closed, through the path fresh
    /// bytes take: the ciphertext held while its TLS handshake waited for a
    /// slot goes through the record layer; the plaintext held while its rate
    /// limit was spent goes to its frames (not back through `dispatch`: its
    /// bytes were charged when they came).
    pub(super) fn reenter(&mut self, key: usize, io: &mut impl Io) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(mut held) = conn.socket.transport.take_held() {
            return self.receive(key, &mut held, io);
        }
        let mut held = conn.stream.link.take_held();
        if !held.is_empty() && conn.stream.link.reading_frames() {
            // Only a plain socket writes from where the bytes lie: over TLS,
            // the record layer lends itself with what it opens, not later.
            let direct = conn
                .socket
                .transport
                .direct()
                .then(|| Direct::socket(&mut *io as &mut dyn Io));
            receive::frames(
                &mut self.handler,
                &mut self.shared,
                &mut self.inflated,
                &mut conn.stream,
                &mut held,
                direct,
            );
        }
    }

    /// Asks the backend to stop reading the connections whose rate limit was
    /// spent this turn; returns how long until the first may resume.
    pub(super) fn apply_pauses(&mut self, io: &mut impl Io) -> Option<Duration> {
        let now = self.shared.now_ms;
        let mut soonest: Option<u64> = None;
        let mut pausing = std::mem::take(&mut self.shared.pausing);
        for id in pausing.drain(..) {
            let Some(conn) = conn_of(&mut self.conns, id) else {
                continue;
            };
            let wait = conn.stream.link.limiter().and_then(|l| l.resume_after(now));
            if let Some(wait) = wait {
                soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
            }
            if !conn.socket.gate.contains(Reasons::RATE_LIMIT) {
                self.shared.counters.rate_limit_pauses += 1;
                if self
                    .gate
                    .close(id, &mut conn.socket.gate, Reasons::RATE_LIMIT)
                    && !self.gate_carried(id.key(), true)
                {
                    io.pause_reading(id.key());
                }
            }
        }
        self.shared.pausing = pausing;
        // At least a millisecond: a zero wait would spin until the clock moves.
        soonest.map(|ms| Duration::from_millis(ms.max(1)))
    }

    /// For each connection paused by its rate limit whose tokens are back:
    /// what it held re-enters, then its gate opens (unless that spent the
    /// tokens again). Returns how long until the next one may resume.
    pub(super) fn resume_paused(&mut self, io: &mut impl Io) -> Option<Duration> {
        let now = self.shared.now_ms;
        let mut soonest: Option<u64> = None;
        for _ in 0..self.gate.waiting(Reasons::RATE_LIMIT) {
            let Some(id) = self.gate.next(Reasons::RATE_LIMIT) else {
                break;
            };
            // Gone: its key may belong to a new connection by now.
            let Some(conn) = conn_of(&mut self.conns, id) else {
                continue;
            };
            if !conn.socket.gate.contains(Reasons::RATE_LIMIT) {
                continue;
            }
            // An ended connection has no limiter left: it is read again, so
            // that the peer's EOF is seen.
            if let Some(wait) = conn.stream.link.limiter().and_then(|l| l.resume_after(now)) {
                soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                self.gate.requeue(Reasons::RATE_LIMIT, id);
                continue;
            }
            self.reenter(id.key(), io);
            let Some(conn) = conn_of(&mut self.conns, id) else {
                continue;
            };
            let link = &mut conn.stream.link;
            if link.rate_limited() {
                // Spent again on what it held: it stays paused.
                if let Some(wait) = link.limiter().and_then(|l| l.resume_after(now)) {
                    soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                }
                self.gate.requeue(Reasons::RATE_LIMIT, id);
                continue;
            }
            if self.gate.open(&mut conn.socket.gate, Reasons::RATE_LIMIT)
                && !self.gate_carried(id.key(), false)
            {
                io.resume_reading(id.key());
            }
        }
        soonest.map(Duration::from_millis)
    }
}
