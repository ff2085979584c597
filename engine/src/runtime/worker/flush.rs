//! The end of a turn's writes: a connection's queue (over TLS, sealed into its
//! wire queue first) written through the backend, or the connection finished
//! as it asked (over TLS a graceful end sends close_notify first).

use super::*;

impl<H: Handler> Worker<H> {
    /// Writes one connection's queue (over TLS: encrypts it first), or
    /// finishes it.
    pub(super) fn flush(&mut self, key: usize, io: &mut impl Io) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Conn { link, tls, .. } = conn;
        link.unmark();
        if link.finish() == Finish::Abort {
            return self.close(key, io);
        }
        let wire = match tls.as_deref_mut() {
            None => &mut link.outbox,
            Some(tls) => {
                // Encrypt only once the last ciphertext is out: while the
                // socket is slow, frames wait in the outbox under its limit.
                if tls.wire.is_empty() && (!link.outbox.is_empty() || tls.owes_key_update()) {
                    match tls.encrypt(&mut link.outbox, &mut self.shared.pool) {
                        Ok(true) => {}
                        // No session to send on: these frames can never go out.
                        Ok(false) => link.outbox.clear(&mut self.shared.pool),
                        Err(error) => link.fail_tls(&mut self.shared, error),
                    }
                }
                if tls.exhausted() {
                    // A TLS 1.2 key near its record limit: close while the
                    // close frame and close_notify can still be sealed.
                    link.start_close(
                        &mut self.shared,
                        CloseCode::GOING_AWAY,
                        "TLS key limit",
                        CloseCause::Tls(TlsError::KeyLimit),
                    );
                }
                &mut tls.wire
            }
        };
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

    /// The queue is empty: does what the connection asked of its socket. Over
    /// TLS, a graceful end sends close_notify first.
    pub(super) fn finish(&mut self, key: usize, io: &mut impl Io) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let finish = conn.link.finish();
        let graceful = matches!(finish, Finish::ShutdownWrite | Finish::Close);
        if graceful {
            if let Some(tls) = conn.tls.as_deref_mut() {
                if tls.close_notify(&mut self.shared.pool) {
                    return conn.link.mark(&mut self.shared.flush);
                }
            }
        }
        match finish {
            Finish::None => {}
            Finish::ShutdownWrite => {
                conn.link.write_side_shut();
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
