//! Target `tls_differential`: rustls's own record layer against ours, both
//! ways, on every suite ours runs (the input's first byte picks it, and for
//! TLS 1.3 the certificate). A rustls `ClientConnection` seals what it is
//! given to write (cut into records of a fragment size the input picks) and
//! our server opens it; our server seals (flushes of the outbox, frames sealed
//! from the delivery callback, KeyUpdates, close_notify) and the rustls client
//! opens it. The client's KeyUpdates (`refresh_traffic_keys`, update_requested)
//! move both sides to new keys mid-stream.
//!
//! Checked: no panic, no error on either side (everything here is legal), the
//! plaintext identical both ways and in order, whatever the reads; close_notify
//! seen by each side exactly when the other sent it.

use super::{Cert, Input, Server, Suite, client, client_bytes, client_read, handshake, pattern};
use super::{pick_suite, size};
use crate::transport::tls::session::Received;

/// Most operations of one input.
const MAX_OPS: usize = 256;
/// Most bytes each side sends in one input.
const MAX_SENT: usize = 2 << 20;
/// KeyUpdates the client may ask for in one input: both rustls and our
/// record layer allow 32 between records of data, and this stays within
/// that whatever the order of the data.
const KEY_UPDATES: usize = 32;

/// One input's session.
struct Run {
    tls13: bool,
    server: Server,
    client: rustls::ClientConnection,
    /// The client's ciphertext not yet read by the server.
    pending: Vec<u8>,
    /// Plaintext each side sent, and what the client read.
    client_sent: Vec<u8>,
    server_sent: Vec<u8>,
    client_read: Vec<u8>,
    key_updates: usize,
    client_closed: bool,
    server_saw_close: bool,
    server_closed: bool,
    client_saw_close: bool,
}

/// Runs one input (see the module's documentation).
pub fn tls_differential(data: &[u8]) {
    let mut input = Input(data);
    let (suite, cert) = pick_suite(&mut input);
    // rustls cuts what it writes into records of at most this many bytes,
    // header and expansion included (32 to 16389; none: 16 KiB of data).
    let fragment = match input.byte() {
        0..128 => None,
        b => Some((32 + usize::from(b - 128) * 130).min(16_389)),
    };
    let mut run = Run::new(suite, cert, fragment);
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        run.step(&mut input);
    }
    run.finish();
}

impl Run {
    fn new(suite: &'static Suite, cert: Cert, fragment: Option<usize>) -> Self {
        let mut client = client(suite, cert, |config| config.max_fragment_size = fragment);
        let mut server = Server::new(cert);
        handshake(&mut server, &mut client);
        Self {
            tls13: suite.tls13(),
            server,
            client,
            pending: Vec::new(),
            client_sent: Vec::new(),
            server_sent: Vec::new(),
            client_read: Vec::new(),
            key_updates: 0,
            client_closed: false,
            server_saw_close: false,
            server_closed: false,
            client_saw_close: false,
        }
    }

    fn step(&mut self, input: &mut Input<'_>) {
        match input.byte() % 9 {
            0 | 1 => {
                let len = size(input, 70_000);
                let plain = pattern(len, input.byte());
                if !self.client_closed && self.client_sent.len() + len <= MAX_SENT {
                    std::io::Write::write_all(&mut self.client.writer(), &plain)
                        .expect("the client writes (no buffer limit)");
                    self.client_sent.extend_from_slice(&plain);
                }
            }
            2 | 3 => {
                let read = match input.byte() {
                    0 => usize::MAX,
                    b @ 1..64 => usize::from(b),
                    b => usize::from(b - 63) * 150,
                };
                self.deliver_to_server(read);
            }
            4 => {
                let len = size(input, usize::MAX);
                let plain = pattern(len, input.byte());
                let split = usize::from(input.byte()) * 97;
                if !self.server_closed && self.server_sent.len() + len <= MAX_SENT {
                    let (a, b) = plain.split_at(split.min(len));
                    assert_eq!(self.server.send(&[(a, false), (b, true)]), Ok(true));
                    self.server_sent.extend_from_slice(&plain);
                }
            }
            5 => self.deliver_to_client(),
            6 => {
                // Not once the server closed: it would answer after its
                // close_notify (the worker reads nothing more by then).
                if self.tls13
                    && !self.client_closed
                    && !self.server_closed
                    && self.key_updates < KEY_UPDATES
                {
                    self.client
                        .refresh_traffic_keys()
                        .expect("a TLS 1.3 client updates its keys");
                    self.key_updates += 1;
                }
            }
            7 => {
                // A handler's answer to each delivery, sealed from the
                // callback, with the delivered bytes echoed after it.
                let len = size(input, 20_000);
                self.server.up.reply = (len > 0 && !self.server_closed).then(|| pattern(len, 0xa5));
            }
            _ => {
                if input.byte() % 2 == 0 {
                    if !self.client_closed {
                        self.client.send_close_notify();
                        self.client_closed = true;
                    }
                } else if !self.server_closed {
                    // What came before the close is read first, KeyUpdates
                    // answered.
                    self.deliver_to_server(usize::MAX);
                    assert!(self.server.close_notify(), "close_notify queued");
                    self.server_closed = true;
                    self.server.up.reply = None;
                }
            }
        }
    }

    /// Up to `max` bytes of the client's ciphertext to the server, in one read.
    fn deliver_to_server(&mut self, max: usize) {
        self.pending.extend(client_bytes(&mut self.client));
        let n = max.min(self.pending.len());
        if n == 0 {
            return;
        }
        let result = self.server.receive(&self.pending[..n]);
        self.pending.drain(..n);
        match result {
            Ok(Received::Open) => assert!(!self.server_saw_close),
            Ok(Received::PeerClosed) => {
                assert!(
                    self.client_closed,
                    "PeerClosed without the client's close_notify"
                );
                self.server_saw_close = true;
            }
            Err(e) => panic!("our record layer refused rustls's records: {e:?}"),
        }
        let sealed = std::mem::take(&mut self.server.up.sealed);
        self.server_sent.extend_from_slice(&sealed);
        let delivered = &self.server.up.delivered;
        assert!(
            self.client_sent.starts_with(delivered),
            "delivered {} bytes, not what the client sent ({} bytes)",
            delivered.len(),
            self.client_sent.len()
        );
        if self.pending.is_empty() {
            assert!(
                *delivered == self.client_sent,
                "all the client's records read: delivered {} of {} bytes",
                delivered.len(),
                self.client_sent.len()
            );
            assert_eq!(self.server_saw_close, self.client_closed);
        }
    }

    /// The server's ciphertext to the client, all of it.
    fn deliver_to_client(&mut self) {
        let wire = self.server.take_wire();
        let read = client_read(&mut self.client, &wire)
            .unwrap_or_else(|e| panic!("rustls refused our record layer's records: {e}"));
        self.client_read.extend_from_slice(&read.plain);
        if read.closed {
            assert!(
                self.server_closed,
                "the client read a close_notify not sent"
            );
            self.client_saw_close = true;
        }
        assert!(
            self.client_read == self.server_sent,
            "the client read {} bytes, the server sent {}",
            self.client_read.len(),
            self.server_sent.len()
        );
    }

    /// Everything still in flight delivered both ways; then each side's
    /// close_notify, if it did not send one.
    fn finish(mut self) {
        self.deliver_to_server(usize::MAX);
        self.deliver_to_client();
        assert_eq!(self.client_saw_close, self.server_closed);
        if !self.server_closed {
            assert!(self.server.close_notify());
            self.server_closed = true;
            self.deliver_to_client();
            assert!(self.client_saw_close, "the client read our close_notify");
        }
        if !self.client_closed {
            self.client.send_close_notify();
            self.client_closed = true;
            self.deliver_to_server(usize::MAX);
            assert!(
                self.server_saw_close,
                "the server read the client's close_notify"
            );
        }
    }
}
