//! The same worker on a TLS listener (index 1): handshakes, records,
//! close_notify, handshake slots.

use std::io::{Read, Write};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::*;
use crate::transport::tls::{TlsConfig, TlsConfigCell};
use crate::types::TlsError;

/// A harness whose worker has a plain listener (0) and a TLS one (1), and
/// the roots its clients trust.
fn harness() -> (Harness, RootCertStore) {
    harness_with(|_| {})
}

fn harness_with(tweak: impl FnOnce(&mut Config)) -> (Harness, RootCertStore) {
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let tls = TlsConfig::from_pem(
        pair.cert.pem().as_bytes(),
        pair.key_pair.serialize_pem().as_bytes(),
    )
    .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(pair.cert.der().clone()).unwrap();
    let mut config = config();
    config.addrs = vec!["127.0.0.1:0".parse().unwrap()];
    config.tls_addrs = vec!["127.0.0.1:0".parse().unwrap()];
    config.tls = Some(tls.clone());
    tweak(&mut config);
    let mut h = Harness::new(config);
    h.worker.tls = Some(Arc::new(TlsConfigCell::new(&tls, false)));
    (h, roots)
}

fn client(roots: RootCertStore) -> ClientConnection {
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap()
}

/// A TLS client of one connection of the harness.
struct Peer {
    key: usize,
    tls: ClientConnection,
    /// How far the server's wire has been read.
    read: usize,
}

impl Harness {
    fn accept_tls(&mut self, roots: &RootCertStore) -> Peer {
        let key = self
            .worker
            .on_accept("127.0.0.1:40001".parse().unwrap(), 1)
            .unwrap();
        self.io.sockets.insert(key, FakeSocket::default());
        Peer {
            key,
            tls: client(roots.clone()),
            read: 0,
        }
    }

    /// The client's ClientHello, sent in one read.
    fn send_hello(&mut self, peer: &mut Peer) {
        let mut hello = Vec::new();
        peer.tls.write_tls(&mut hello).unwrap();
        self.send_raw(peer.key, &hello);
    }

    /// Moves bytes both ways until nothing moves; returns the plaintext
    /// the client received.
    fn pump(&mut self, peer: &mut Peer) -> Vec<u8> {
        let mut plain = Vec::new();
        for _ in 0..16 {
            let mut out = Vec::new();
            while peer.tls.wants_write() {
                peer.tls.write_tls(&mut out).unwrap();
            }
            if !out.is_empty() {
                self.send_raw(peer.key, &out);
            }
            self.turn();
            let wire = &self.io.sockets[&peer.key].wire;
            let fresh = wire[peer.read..].to_vec();
            peer.read = wire.len();
            let mut rest = &fresh[..];
            while !rest.is_empty() {
                peer.tls.read_tls(&mut rest).unwrap();
                peer.tls.process_new_packets().unwrap();
                let _ = peer.tls.reader().read_to_end(&mut plain);
            }
            if out.is_empty() && fresh.is_empty() {
                break;
            }
        }
        plain
    }

    /// Upgrades over TLS; returns the id.
    fn open_tls(&mut self, peer: &mut Peer) -> ConnId {
        self.pump(peer);
        assert!(!peer.tls.is_handshaking());
        peer.tls.writer().write_all(REQUEST).unwrap();
        let reply = self.pump(peer);
        assert!(reply.starts_with(b"HTTP/1.1 101"), "{reply:?}");
        let mut seen = self.seen.0.borrow_mut();
        let at = seen
            .iter()
            .rposition(|s| matches!(s, Seen::Open(_)))
            .expect("on_open");
        match seen.remove(at) {
            Seen::Open(id) => id,
            _ => unreachable!(),
        }
    }
}

fn text_frame(text: &str) -> Vec<u8> {
    let (mut endpoint, mut session) = (
        Endpoint::new(Role::Client, 1 << 20, 1 << 20, 1),
        Session::new(),
    );
    let mut wire = Vec::new();
    session
        .message(&mut endpoint, OpCode::Text, text.as_bytes(), false)
        .write_to(&mut wire);
    wire
}

fn client_close(code: u16) -> Vec<u8> {
    let (mut endpoint, mut session) = (
        Endpoint::new(Role::Client, 1 << 20, 1 << 20, 1),
        Session::new(),
    );
    let mut wire = Vec::new();
    session
        .close(&mut endpoint, CloseCode(code), "")
        .unwrap()
        .write_to(&mut wire);
    wire
}

#[test]
fn wss_upgrades_echoes_and_ends_with_close_notify() {
    let (mut h, roots) = harness();
    let mut peer = h.accept_tls(&roots);
    let id = h.open_tls(&mut peer);
    peer.tls
        .writer()
        .write_all(&text_frame("over tls"))
        .unwrap();
    let echoed = h.pump(&mut peer);
    assert_eq!(echoed, b"\x81\x08over tls");
    assert_eq!(h.seen.take(), [Seen::Message(id, "over tls".into())]);
    // The server closes: its close frame, then close_notify, then FIN.
    peer.tls
        .writer()
        .write_all(&text_frame("close 1000"))
        .unwrap();
    let close = h.pump(&mut peer);
    assert!(close.ends_with(b"\x88\x07\x03\xe8asked"), "{close:?}");
    peer.tls.writer().write_all(&client_close(1000)).unwrap();
    h.pump(&mut peer);
    assert!(h.socket(peer.key).write_shut);
    let mut buf = [0u8; 1];
    assert!(
        matches!(peer.tls.reader().read(&mut buf), Ok(0)),
        "close_notify"
    );
    // The plain listener of the same worker stays plain.
    let (_, plain_id) = h.open();
    assert_ne!(plain_id, id);
}

#[test]
fn a_peers_close_notify_gets_ours_back_before_the_socket_closes() {
    let (mut h, roots) = harness();
    let mut peer = h.accept_tls(&roots);
    let id = h.open_tls(&mut peer);
    peer.tls.send_close_notify();
    h.pump(&mut peer);
    let mut buf = [0u8; 1];
    assert!(
        matches!(peer.tls.reader().read(&mut buf), Ok(0)),
        "our close_notify came back"
    );
    assert!(h.socket(peer.key).closed);
    assert!(
        h.seen
            .take()
            .iter()
            .any(|s| matches!(s, Seen::Close(closed, 1006, _, _) if *closed == id))
    );
}

#[test]
fn a_tls12_key_near_its_record_limit_closes_with_1001_and_close_notify() {
    let (mut h, roots) = harness();
    let mut peer = h.accept_tls(&roots);
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
    peer.tls = ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
        .unwrap();
    let id = h.open_tls(&mut peer);
    let records = h.worker.conns[peer.key]
        .socket
        .transport
        .tls_mut()
        .unwrap()
        .records()
        .unwrap();
    let (_, tx) = records.seqs();
    records.set_tx_limit(tx + crate::transport::tls::records::CLOSE_RESERVE + 1);
    peer.tls
        .writer()
        .write_all(&text_frame("last words"))
        .unwrap();
    let got = h.pump(&mut peer);
    // The echo, then the close frame under the records kept for it.
    assert!(got.starts_with(b"\x81\x0alast words"), "{got:?}");
    assert!(got.ends_with(b"\x88\x0f\x03\xe9TLS key limit"), "{got:?}");
    assert!(
        h.seen
            .take()
            .contains(&Seen::Message(id, "last words".into()))
    );
    peer.tls.writer().write_all(&client_close(1001)).unwrap();
    h.pump(&mut peer);
    let mut buf = [0u8; 1];
    assert!(
        matches!(peer.tls.reader().read(&mut buf), Ok(0)),
        "close_notify"
    );
}

#[test]
fn plain_http_on_the_tls_listener_gets_400_and_is_closed() {
    let (mut h, roots) = harness();
    let peer = h.accept_tls(&roots);
    h.send_raw(peer.key, REQUEST);
    h.turn();
    let socket = h.socket(peer.key);
    assert!(socket.wire.starts_with(b"HTTP/1.1 400 Bad Request"));
    assert!(socket.closed);
    assert!(h.seen.take().is_empty());
}

#[test]
fn a_tls_handshake_that_never_finishes_is_cut_by_the_handshake_timeout() {
    let (mut h, roots) = harness();
    let mut peer = h.accept_tls(&roots);
    let mut hello = Vec::new();
    peer.tls.write_tls(&mut hello).unwrap();
    // Half a ClientHello, then silence.
    h.send_raw(peer.key, &hello[..hello.len() / 2]);
    h.turn();
    assert!(!h.socket(peer.key).closed);
    h.run_for(1990);
    assert!(!h.socket(peer.key).closed, "not before the timeout");
    h.run_for(510);
    assert!(h.socket(peer.key).closed);
    assert!(h.seen.take().is_empty());
}

#[test]
fn tls_failures_of_an_open_connection_are_reported_with_their_cause() {
    let (mut h, roots) = harness();
    // A record that fails to decrypt.
    let mut bad = h.accept_tls(&roots);
    let bad_id = h.open_tls(&mut bad);
    bad.tls.writer().write_all(b"xx").unwrap();
    let mut record = Vec::new();
    bad.tls.write_tls(&mut record).unwrap();
    let last = record.len() - 1;
    record[last] ^= 0x55;
    h.send_raw(bad.key, &record);
    h.turn();
    assert!(h.socket(bad.key).closed);
    // The stream ends inside a record.
    let mut cut = h.accept_tls(&roots);
    let cut_id = h.open_tls(&mut cut);
    cut.tls
        .writer()
        .write_all(&text_frame("never whole"))
        .unwrap();
    let mut record = Vec::new();
    cut.tls.write_tls(&mut record).unwrap();
    h.send_raw(cut.key, &record[..record.len() - 3]);
    h.worker.on_hangup(cut.key, Hangup::Eof);
    h.turn();
    // close_notify without a close frame: like an EOF.
    let mut quiet = h.accept_tls(&roots);
    let quiet_id = h.open_tls(&mut quiet);
    quiet.tls.send_close_notify();
    h.pump(&mut quiet);
    assert_eq!(
        h.seen.closes(),
        [
            (
                bad_id,
                1006,
                TlsError::Record.to_string(),
                CloseCause::Tls(TlsError::Record)
            ),
            (
                cut_id,
                1006,
                TlsError::Truncated.to_string(),
                CloseCause::Tls(TlsError::Truncated)
            ),
            (quiet_id, 1006, String::new(), CloseCause::Reset),
        ]
    );
}

#[test]
fn tls_handshakes_past_the_limit_wait_for_one_to_end() {
    let (mut h, roots) = harness_with(|c| c.max_tls_handshakes = 1);
    let mut first = h.accept_tls(&roots);
    let mut second = h.accept_tls(&roots);
    let mut third = h.accept_tls(&roots);
    // The first ClientHello starts a handshake; the second and third are
    // held, their reading paused, and nothing is answered.
    for peer in [&mut first, &mut second, &mut third] {
        let mut hello = Vec::new();
        peer.tls.write_tls(&mut hello).unwrap();
        // Each comes in two reads (for the waiting ones, the second before
        // the pause took effect): both are held, in order.
        let (a, b) = hello.split_at(hello.len() / 2);
        h.send_raw(peer.key, a);
        h.send_raw(peer.key, b);
    }
    h.turn();
    assert!(!h.socket(first.key).wire.is_empty(), "ServerHello");
    for peer in [&second, &third] {
        assert!(h.socket(peer.key).wire.is_empty());
        assert!(h.socket(peer.key).paused);
    }
    assert_eq!(h.worker.tls_handshakes, 1);
    // The first finishes (and upgrades): the second starts, in its turn.
    h.open_tls(&mut first);
    assert!(!h.socket(second.key).wire.is_empty(), "ServerHello");
    assert!(!h.socket(second.key).paused);
    assert!(h.socket(third.key).wire.is_empty());
    // The second is reset mid-handshake: its slot goes to the third at the
    // end of that turn, and its answer goes out in the next, at once.
    h.worker.on_hangup(second.key, Hangup::Error);
    assert_eq!(h.turn().wait, Duration::ZERO);
    assert_eq!(h.worker.tls_handshakes, 1);
    h.turn();
    assert!(!h.socket(third.key).wire.is_empty(), "ServerHello");
    let id = h.open_tls(&mut third);
    assert_eq!(h.worker.tls_handshakes, 0);
    third.tls.writer().write_all(&text_frame("waited")).unwrap();
    assert_eq!(h.pump(&mut third), b"\x81\x06waited");
    assert_eq!(
        h.seen.take().last(),
        Some(&Seen::Message(id, "waited".into()))
    );
}

#[test]
fn a_waiting_connection_that_sends_too_much_starts_at_once() {
    let (mut h, roots) = harness_with(|c| c.max_tls_handshakes = 1);
    let mut first = h.accept_tls(&roots);
    h.send_hello(&mut first);
    let mut eager = h.accept_tls(&roots);
    h.send_hello(&mut eager);
    h.turn();
    assert!(h.socket(eager.key).wire.is_empty() && h.socket(eager.key).paused);
    // 5 KiB more before its turn: it is not held but started, past the
    // limit; its ClientHello is answered (the junk after it then fails it).
    h.send_raw(eager.key, &[0x17; 5 << 10]);
    h.turn();
    assert!(!h.socket(eager.key).paused);
    assert!(!h.socket(eager.key).wire.is_empty(), "answered at once");
}

#[test]
fn plain_text_on_a_tls_port_is_refused_even_while_handshakes_wait() {
    let (mut h, roots) = harness_with(|c| c.max_tls_handshakes = 1);
    let mut first = h.accept_tls(&roots);
    h.send_hello(&mut first);
    let plain = h.accept_tls(&roots);
    h.send_raw(plain.key, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    h.turn();
    assert!(h.socket(plain.key).wire.starts_with(b"HTTP/1.1 400"));
    assert!(!h.socket(plain.key).paused);
}

#[test]
fn large_frames_over_tls_are_sealed_from_where_they_lie_in_order() {
    let (mut h, roots) = harness();
    let mut peer = h.accept_tls(&roots);
    h.open_tls(&mut peer);
    let a = "a".repeat(20_000);
    let b = "b".repeat(20_000);
    let echo = |text: &str| {
        let mut frame = vec![0x81];
        match text.len() {
            len @ 0..126 => frame.push(len as u8),
            len => {
                frame.push(126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(text.as_bytes());
        frame
    };
    for (messages, sealed, queued) in [
        // The first is sealed straight into the ciphertext queue; the next
        // waits behind that ciphertext as a frame, and so does the small one.
        ([a.as_str(), b.as_str(), "c"], 1, [&b[..], "c"].as_slice()),
        // Behind a queued frame a large one is queued too.
        (
            ["c", a.as_str(), b.as_str()],
            0,
            ["c", &a[..], &b[..]].as_slice(),
        ),
    ] {
        let mut flight = Vec::new();
        for message in messages {
            flight.extend_from_slice(&text_frame(message));
        }
        peer.tls.writer().write_all(&flight).unwrap();
        let mut out = Vec::new();
        while peer.tls.wants_write() {
            peer.tls.write_tls(&mut out).unwrap();
        }
        h.send_raw(peer.key, &out);
        let conn = &h.worker.conns[peer.key];
        let in_outbox: usize = queued.iter().map(|m| echo(m).len()).sum();
        assert_eq!(conn.stream.link.outbox.len(), in_outbox, "{messages:?}");
        let wire = conn.socket.transport.tls().unwrap().wire.len();
        assert_eq!(wire > 20_000, sealed == 1, "ciphertext queued: {wire}");
        let got = h.pump(&mut peer);
        let want: Vec<u8> = messages.iter().flat_map(|m| echo(m)).collect();
        assert!(got == want, "the echoes, whole and in order");
    }
}

#[test]
fn a_slow_tls_socket_keeps_frames_in_the_outbox_under_the_limit() {
    let (mut h, roots) = harness();
    let mut peer = h.accept_tls(&roots);
    let id = h.open_tls(&mut peer);
    h.seen.take();
    h.io.sockets.get_mut(&peer.key).unwrap().room = Some(0);
    peer.tls
        .writer()
        .write_all(&text_frame("flood 300 4000"))
        .unwrap();
    let mut out = Vec::new();
    peer.tls.write_tls(&mut out).unwrap();
    h.send_raw(peer.key, &out);
    h.turn();
    let conn = &h.worker.conns[peer.key];
    let wire = conn.socket.transport.tls().unwrap().wire.len();
    assert!(
        wire <= (256 << 10) + 64 * 30,
        "ciphertext is bounded: {wire}"
    );
    assert!(
        conn.stream.link.outbox.len() > 900_000,
        "the rest waits as frames"
    );
    h.io.sockets.get_mut(&peer.key).unwrap().room = None;
    h.worker.on_writable(peer.key);
    let got = h.pump(&mut peer);
    assert_eq!(got.len(), 300 * (4 + 4000));
    assert!(h.seen.take().contains(&Seen::Drain(id)));
}
