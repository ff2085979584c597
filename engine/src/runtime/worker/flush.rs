//! Writes: the backend's entry points for their completions (writable, sent,
//! a frame sent from where it lay), and the end of a turn's writes: a stream's
//! send queue, through its socket's transport (sealed into records over TLS),
//! written through the backend; or the socket finished as the stream asked
//! (after the transport's goodbye: TLS close_notify).

use super::*;
use crate::transport::h2::ErrorCode;

impl<H: Handler> Worker<H> {
    /// The socket of `key` may take more after a write that left bytes behind.
    pub fn on_writable(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.drained() || conn.stream.link.finish() != Finish::None {
                conn.stream.link.mark(&mut self.shared.flush);
            }
        }
    }

    /// `written` bytes of `key`'s queue went out; `blocked` if the socket took
    /// no more. Runs `on_drain` once a stalled queue empties, then finishes the
    /// connection if it asked to be.
    pub fn on_sent(&mut self, key: usize, written: usize, blocked: bool, io: &mut impl Io) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.wire().consume(&mut self.shared.pool, written);
        let drained = conn.drained();
        let link = &mut conn.stream.link;
        self.shared.counters.bytes_out += written as u64;
        if blocked {
            link.stall(&mut self.shared.counters);
            return;
        }
        if !drained {
            // More than one write's worth of iovecs (or, over TLS, of plaintext
            // to encrypt): go on next round.
            link.mark(&mut self.shared.flush);
            return;
        }
        if std::mem::take(&mut link.stalled) && link.phase() == Phase::Open {
            self.handler
                .on_drain(&mut WebSocket::new(link, &mut self.shared));
            if !link.outbox.is_empty() {
                return;
            }
        }
        // An HTTP/2 socket's queue has room again: its streams go on.
        self.wake_waiting(key);
        self.finish(key, io);
    }

    /// A frame the backend sent from where it lay (`Io::write_frame`) completed
    /// with `written` bytes out; `unsent` (the rest of its header, then of its
    /// payload) is copied to the front of the queue before the backend lets
    /// go of it. Then as [`Self::on_sent`].
    pub fn on_frame_sent(
        &mut self,
        key: usize,
        written: usize,
        unsent: (&[u8], &[u8]),
        io: &mut impl Io,
    ) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let (header, payload) = unsent;
        let short = !header.is_empty() || !payload.is_empty();
        if short {
            conn.stream
                .link
                .outbox
                .push_front_copy(&mut self.shared.pool, header, payload);
        }
        self.shared.counters.bytes_out += written as u64;
        self.on_sent(key, 0, short, io);
    }

    /// Writes one socket's queue (through its transport), or finishes it.
    pub(super) fn flush(&mut self, key: usize, io: &mut impl Io) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Some((socket, stream)) = conn.socket.transport.carrier() {
            return self.flush_carried(key, socket, stream);
        }
        let Conn { socket, stream } = conn;
        let link = &mut stream.link;
        link.unmark();
        if link.finish() == Finish::Abort {
            return self.close(key, io);
        }
        match socket
            .transport
            .seal(&mut link.outbox, &mut self.shared.pool)
        {
            Sealed::Ready => {}
            // No session to send on: these frames can never go out.
            Sealed::Discard => link.outbox.clear(&mut self.shared.pool),
            Sealed::Failed(error) => link.fail_tls(&mut self.shared, error),
            // A TLS 1.2 key near its record limit: close while the close
            // frame and close_notify can still be sealed.
            Sealed::KeyLimit => link.start_close(
                &mut self.shared,
                CloseCode::GOING_AWAY,
                "TLS key limit",
                CloseCause::Tls(TlsError::KeyLimit),
            ),
        }
        let wire = socket.transport.wire(&mut link.outbox);
        if wire.is_empty() {
            return self.finish(key, io);
        }
        if io.writes_later() {
            wire.seal(&mut self.shared.pool);
        }
        match io.write(key, wire) {
            Written::Now { bytes, blocked } => self.on_sent(key, bytes, blocked, io),
            Written::Later => {}
            Written::Failed => {
                link.hang_up(&mut self.shared, false);
                self.close(key, io);
            }
        }
    }

    /// The queue is empty: does what the stream asked of its socket, after the
    /// transport's goodbye on a graceful end.
    pub(super) fn finish(&mut self, key: usize, io: &mut impl Io) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let finish = conn.stream.link.finish();
        let graceful = matches!(finish, Finish::ShutdownWrite | Finish::Close);
        if graceful {
            // An HTTP/2 socket says GOAWAY before its transport's goodbye.
            if let Some(mux) = conn.socket.transport.mux() {
                if !mux.h2.going_away() {
                    mux.h2.go_away(
                        ErrorCode::NO_ERROR,
                        &mut conn.stream.link.outbox,
                        &mut self.shared.pool,
                    );
                    return conn.stream.link.mark(&mut self.shared.flush);
                }
            }
        }
        if graceful && conn.socket.transport.goodbye(&mut self.shared.pool) {
            return conn.stream.link.mark(&mut self.shared.flush);
        }
        match finish {
            Finish::None => {}
            Finish::ShutdownWrite => {
                conn.stream.link.write_side_shut();
                io.shutdown_write(key);
            }
            Finish::Close | Finish::Abort => self.close(key, io),
        }
    }

    pub(super) fn close(&mut self, key: usize, io: &mut impl Io) {
        if io.close(key) {
            self.on_released(key);
        }
    }
}
