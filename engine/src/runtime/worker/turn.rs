//! The turn's other steps: the handshake clock, commands from other threads,
//! the clock and the timers, shutdown, close reports, publishes, and the
//! counters published for the handle.

use super::*;

impl<H: Handler> Worker<H> {
    /// Starts the handshake clock of the connections accepted this turn and
    /// stops it for those upgraded: durations at the resolution of a turn, from
    /// the time the backend passes in. The handshake deadline is set here too:
    /// the clock read at the accept is the previous turn's, a tick or more old
    /// after a wait, and a deadline counted from it could cut the handshake
    /// short of its timeout.
    pub(super) fn time_handshakes(&mut self, now: Instant) {
        let ms = self.shared.now_ms as u32;
        let deadline = self.ticks.handshake_deadline(self.clock.tick_of(now));
        for key in self.stamping.drain(..) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.stream.timer.start_handshake_clock(ms);
                conn.stream.timer.deadline = deadline;
            }
        }
        for key in self.shared.upgraded.drain(..) {
            if let Some(conn) = self.conns.get_mut(key) {
                let took = conn.stream.timer.handshake_ms(ms);
                self.shared.counters.handshake(u64::from(took));
            }
        }
        shrink_idle(&mut self.stamping);
        shrink_idle(&mut self.shared.upgraded);
    }

    pub(super) fn run_commands(&mut self) {
        let Self {
            inbox,
            conns,
            shared,
            keys,
            handler,
            inflated,
            adopting,
            behind_adoptions,
            ..
        } = self;
        let mut shutdown = None;
        let mut hand_over = None;
        let mut failed = false;
        let mut done = false;
        let mut go = false;
        let mut complete = false;
        let count = inbox.drain(|command| match command {
            Command::Decide { id, decision } => {
                if let Some(conn) = conn_of(conns, id) {
                    let upgrade = deferred::decision(decision);
                    upgrade::decided(handler, shared, inflated, &mut conn.stream, upgrade);
                }
            }
            // Behind a connection handed over (adopted at the end of this
            // step): it is one of the subscribers, so it waits for it.
            Command::Publish { topic, message } if !adopting.is_empty() => {
                behind_adoptions.push((topic, message));
            }
            Command::Publish { topic, message } => {
                pubsub::deliver(conns, shared, keys, &topic, &message);
            }
            Command::Send { id, message } => {
                if let Some(link) = open_link(conns, id) {
                    link.send_prepared(shared, &message, &mut Default::default());
                }
            }
            Command::Close { id, code, reason } => {
                if let Some(link) = open_link(conns, id) {
                    link.close(shared, code, &reason);
                }
            }
            Command::Shutdown { deadline } => shutdown = Some(deadline),
            Command::HandOver(out) => hand_over = Some(out),
            Command::HandOverFailed => failed = true,
            Command::HandOverDone => done = true,
            Command::HandOverGo => go = true,
            Command::HandOverComplete => complete = true,
            Command::Adopt { fd, state, hold } => adopting.push((fd, state, hold)),
        });
        shared.counters.commands += count;
        if let Some(out) = hand_over {
            self.begin_hand_over(out);
        }
        if failed {
            self.hand_over_failed();
        }
        if done {
            self.hand_over_done();
        }
        if go {
            self.hand_over_go();
        }
        if complete {
            self.release_holds = true;
        }
        if let Some(deadline) = shutdown {
            self.begin_shutdown(deadline);
        }
    }

    /// Moves the clock; past the shutdown deadline aborts everything; on a new
    /// tick sweeps every connection's timers.
    pub(super) fn advance(&mut self, now: Instant) {
        let Self {
            conns,
            shared,
            ticks,
            clock,
            ..
        } = self;
        if self.shutdown.is_some_and(|deadline| now >= deadline) {
            for (_, conn) in conns.iter_mut() {
                let code = conn.stream.link.local_code();
                conn.stream
                    .link
                    .end(shared, Finish::Abort, code, "", CloseCause::Shutdown);
            }
        }
        if !clock.advance(now) {
            return;
        }
        shared.pool.trim();
        shared.endpoint.release_buffers();
        let tick = clock.now();
        for (_, conn) in conns.iter_mut() {
            let carrying = conn.socket.transport.carries_streams();
            let gated = conn.socket.gated();
            conn.socket.transport.release_idle();
            timers::sweep(&mut conn.stream, gated, carrying, tick, ticks, shared);
        }
    }

    /// After [`Self::on_signal`]: the same shutdown as
    /// [`crate::ServerHandle::shutdown`] would start, sent to every worker
    /// (this one included, so that it runs with this turn's commands).
    pub(super) fn shut_down_on_signal(&mut self, now: Instant) {
        let Some(signal) = self.signalled.take() else {
            return;
        };
        let grace = self.shared.config.shutdown_on_signals.unwrap_or_default();
        log::info!(
            "ringws: signal {signal}, shutting down within {} ms",
            grace.as_millis()
        );
        let deadline = now + grace;
        if let Some(peers) = self.peers.get() {
            for peer in peers {
                peer.send(Command::Shutdown { deadline });
            }
        }
    }

    pub(super) fn begin_shutdown(&mut self, deadline: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        self.shutdown = Some(deadline);
        let Self { conns, shared, .. } = self;
        shared.shutting_down = true;
        let mut carriers = Vec::new();
        for (key, conn) in conns.iter_mut() {
            let link = &mut conn.stream.link;
            match link.phase() {
                // Its upgrade is still answered (then closed with 1001), or it
                // is dropped at the deadline.
                Phase::Handshake => {}
                // GOAWAY: no new stream; it ends when its streams have.
                Phase::Carrier => carriers.push(key),
                Phase::Open => link.start_close(
                    shared,
                    CloseCode::GOING_AWAY,
                    "server shutdown",
                    CloseCause::Shutdown,
                ),
                Phase::Closing | Phase::Ended => {}
            }
        }
        for key in carriers {
            self.go_away(key);
        }
    }

    /// The one place `on_close` is called: for every connection that ended
    /// since the last report, exactly once per `on_open`.
    pub(super) fn report_closed(&mut self) {
        let mut closed = std::mem::take(&mut self.shared.closed);
        for c in closed.drain(..) {
            self.shared.counters.closed(c.code.0, c.cause);
            self.handler
                .on_close(c.id, c.data, c.code, &c.reason, c.cause);
        }
        self.shared.closed = closed;
    }

    /// Delivers publishes made during callbacks, here, on the other workers,
    /// and (with a bridge) on the other nodes.
    pub(super) fn pump(&mut self) {
        while !self.shared.publishes.is_empty() {
            for (topic, message) in std::mem::take(&mut self.shared.publishes) {
                self.shared.counters.publishes += 1;
                pubsub::deliver(
                    &mut self.conns,
                    &mut self.shared,
                    &mut self.keys,
                    &topic,
                    &message,
                );
                if let Some(peers) = self.peers.get() {
                    for (i, peer) in peers.iter().enumerate() {
                        if i != self.index {
                            peer.send(Command::Publish {
                                topic: topic.clone(),
                                message: message.clone(),
                            });
                        }
                    }
                }
                if let Some(node) = self.shared.topics.node() {
                    node.bridge().publish(&topic, &message);
                }
            }
        }
    }

    /// Publishes the turn's counters for [`crate::ServerHandle::stats`].
    pub(super) fn publish_stats(&mut self) {
        self.stats
            .publish(self.conns.len(), &mut self.shared.counters);
    }
}
