//! The end of a turn's writes: a stream's send queue, through its socket's
//! transport (sealed into records over TLS), written through the backend; or
//! the socket finished as the stream asked (after the transport's goodbye:
//! TLS close_notify).

use super::*;

impl<H: Handler> Worker<H> {
    /// Writes one socket's queue (through its transport), or finishes it.
    pub(super) fn flush(&mut self, key: usize, io: &mut impl Io) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
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
