//! The TLS transport against rustls's client, in memory: handshakes over every
//! split of the byte stream, records cut by reads, bad input, and what an idle
//! connection keeps.

use std::io::{IoSlice, Read, Write};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, SupportedProtocolVersion};

pub(super) use super::adapter::Upper;
use super::*;
use crate::transport::tls::TlsConfig;
use crate::transport::tls::records::Sealer;

/// Collects what the TLS layer delivers; with `answer`, seals `answer` and
/// then what it got back through the sealer lent with it.
#[derive(Default)]
pub(super) struct Sink {
    pub pool: BufferPool,
    pub got: Vec<u8>,
    answer: Option<Vec<u8>>,
    /// The length of each delivery that came with a sealer.
    sealed_runs: Vec<usize>,
}

impl Upper for Sink {
    fn pool(&mut self) -> &mut BufferPool {
        &mut self.pool
    }

    fn deliver(&mut self, plain: &mut [u8], sealer: Option<Sealer<'_>>) {
        self.got.extend_from_slice(plain);
        if let Some(mut sealer) = sealer {
            self.sealed_runs.push(plain.len());
            if let Some(answer) = &self.answer {
                assert!(sealer.seal(&[answer, plain], &mut self.pool));
            }
        }
    }
}

pub(super) fn server_and_roots() -> (Arc<ServerConfig>, RootCertStore) {
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let config = TlsConfig::from_pem(
        pair.cert.pem().as_bytes(),
        pair.key_pair.serialize_pem().as_bytes(),
    )
    .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(pair.cert.der().clone()).unwrap();
    (config.server, roots)
}

fn client(
    roots: RootCertStore,
    versions: &[&'static SupportedProtocolVersion],
) -> ClientConnection {
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap()
}

/// A server-side [`Tls`] and a rustls client, wired in memory.
pub(super) struct Pair {
    pub server: Tls,
    pub client: ClientConnection,
    pub sink: Sink,
    pub plain: Vec<u8>,
}

impl Pair {
    pub fn new(versions: &[&'static SupportedProtocolVersion]) -> Self {
        let (config, roots) = server_and_roots();
        Self {
            server: Tls::new(config),
            client: client(roots, versions),
            sink: Sink::default(),
            plain: Vec::new(),
        }
    }

    /// What the client has to send, as one byte string.
    pub fn client_bytes(&mut self) -> Vec<u8> {
        let mut bytes = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut bytes).unwrap();
        }
        bytes
    }

    /// Feeds `bytes` to the server in reads of `step` bytes.
    pub fn feed(&mut self, bytes: &mut [u8], step: usize) -> Result<Received, TlsError> {
        let mut last = Ok(Received::Open);
        for chunk in bytes.chunks_mut(step) {
            last = self.server.receive(chunk, &mut self.plain, &mut self.sink);
            if last != Ok(Received::Open) {
                break;
            }
        }
        last
    }

    pub fn client_to_server(&mut self, step: usize) -> Result<Received, TlsError> {
        let mut bytes = self.client_bytes();
        self.feed(&mut bytes, step)
    }

    /// The server's ciphertext, taken off its wire queue.
    pub fn wire(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while !self.server.wire.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let count = self.server.wire.io_slices(&mut slices);
            let n: usize = slices[..count].iter().map(|s| s.len()).sum();
            for slice in &slices[..count] {
                out.extend_from_slice(slice);
            }
            self.server.wire.consume(&mut self.sink.pool, n);
        }
        out
    }

    /// Moves the server's ciphertext to the client; returns the plaintext the
    /// client read.
    pub fn server_to_client(&mut self) -> Vec<u8> {
        let bytes = self.wire();
        let mut rest = &bytes[..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            self.client.read_tls(&mut rest).unwrap();
            self.client.process_new_packets().unwrap();
            // rustls holds a bounded amount of plaintext: read it as it comes.
            let _ = self.client.reader().read_to_end(&mut out);
        }
        out
    }

    pub fn handshake(&mut self, step: usize) {
        for _ in 0..8 {
            assert_eq!(self.client_to_server(step), Ok(Received::Open));
            self.server_to_client();
            if !self.client.is_handshaking() && !self.client.wants_write() {
                break;
            }
        }
        assert!(!self.client.is_handshaking());
    }
}

pub(super) const VERSIONS: [&[&SupportedProtocolVersion]; 2] =
    [&[&rustls::version::TLS13], &[&rustls::version::TLS12]];

#[test]
fn handshake_and_data_over_every_read_size_and_both_versions() {
    for versions in VERSIONS {
        for step in [1, 2, 5, 6, 100, 1 << 20] {
            let mut p = Pair::new(versions);
            p.handshake(step);
            assert_eq!(p.client.alpn_protocol(), Some(&b"http/1.1"[..]));
            assert_eq!(
                p.client.protocol_version(),
                Some(versions[0].version),
                "step {step}"
            );
            let message: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
            p.client.writer().write_all(&message).unwrap();
            p.client.writer().write_all(b"and more").unwrap();
            assert_eq!(p.client_to_server(step), Ok(Received::Open));
            assert_eq!(p.sink.got.len(), message.len() + 8, "step {step}");
            assert!(p.sink.got.starts_with(&message));
            // Nothing is held between records once a read ends on a boundary.
            assert!(!p.server.mid_record());
            assert_eq!(p.server.stash.capacity(), 0);
        }
    }
}

#[test]
fn frames_are_encrypted_into_the_wire_queue() {
    for versions in VERSIONS {
        let mut p = Pair::new(versions);
        p.handshake(1 << 20);
        let mut outbox = Outbox::default();
        outbox.push_copy(&mut p.sink.pool, b"hello ", b"world");
        outbox.push_shared(&mut p.sink.pool, bytes::Bytes::from(vec![b'x'; 70_000]));
        assert_eq!(p.server.encrypt(&mut outbox, &mut p.sink.pool), Ok(true));
        assert!(outbox.is_empty());
        let got = p.server_to_client();
        assert_eq!(got.len(), 11 + 70_000);
        assert!(got.starts_with(b"hello world"));
    }
}

#[test]
fn the_record_layer_lends_its_sealer_with_the_plaintext() {
    for versions in VERSIONS {
        let mut p = Pair::new(versions);
        p.handshake(1 << 20);
        // During the handshake rustls has the session: no sealer.
        assert!(p.sink.sealed_runs.is_empty());
        p.sink.answer = Some(b"re: ".to_vec());
        let big: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        p.client.writer().write_all(&big).unwrap();
        assert_eq!(p.client_to_server(1 << 20), Ok(Received::Open));
        assert_eq!(p.sink.got, big);
        assert_eq!(p.sink.sealed_runs.iter().sum::<usize>(), big.len());
        // Sealed from the callback straight into the wire queue: the client
        // reads each answer whole and in order.
        let mut want = Vec::new();
        let mut at = 0;
        for &run in &p.sink.sealed_runs {
            want.extend_from_slice(b"re: ");
            want.extend_from_slice(&big[at..at + run]);
            at += run;
        }
        assert!(p.server_to_client() == want);
    }
}

#[test]
fn one_flush_encrypts_a_bounded_amount() {
    let mut p = Pair::new(&[&rustls::version::TLS13]);
    p.handshake(1 << 20);
    let mut outbox = Outbox::default();
    outbox.push_copy(&mut p.sink.pool, &[7; 1 << 20], b"");
    assert_eq!(p.server.encrypt(&mut outbox, &mut p.sink.pool), Ok(true));
    assert_eq!(outbox.len(), (1 << 20) - ENCRYPT_BUDGET);
    assert!(p.server.wire.len() < ENCRYPT_BUDGET + 20 * super::super::records::MAX_OVERHEAD);
    let mut total = p.server_to_client().len();
    while !outbox.is_empty() {
        p.server.encrypt(&mut outbox, &mut p.sink.pool).unwrap();
        total += p.server_to_client().len();
    }
    assert_eq!(total, 1 << 20);
}

#[test]
fn nothing_is_encrypted_before_the_handshake() {
    let mut p = Pair::new(&[&rustls::version::TLS13]);
    let mut outbox = Outbox::default();
    outbox.push_copy(&mut p.sink.pool, b"early", b"");
    assert_eq!(p.server.encrypt(&mut outbox, &mut p.sink.pool), Ok(false));
    assert!(p.server.wire.is_empty());
}

#[test]
fn plain_http_on_a_tls_port_gets_a_400() {
    let (config, _) = server_and_roots();
    let mut server = Tls::new(config);
    let mut sink = Sink::default();
    let mut request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n".to_vec();
    assert_eq!(
        server.receive(&mut request, &mut Vec::new(), &mut sink),
        Err(TlsError::NotTls)
    );
    let mut pair = Pair {
        server,
        client: client(RootCertStore::empty(), &[&rustls::version::TLS13]),
        sink,
        plain: Vec::new(),
    };
    let reply = pair.wire();
    assert!(
        reply.starts_with(b"HTTP/1.1 400 Bad Request\r\n"),
        "{reply:?}"
    );
    let body_at = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(reply.len() - body_at, 42);
    // Other bytes get no answer.
    let (config, _) = server_and_roots();
    let mut server = Tls::new(config);
    assert_eq!(
        server.receive(&mut [0, 1, 2, 3], &mut Vec::new(), &mut Sink::default()),
        Err(TlsError::NotTls)
    );
    assert!(server.wire.is_empty());
}

#[test]
fn garbage_and_oversized_records_fail_with_an_alert() {
    // A handshake record that is not a ClientHello.
    let (config, _) = server_and_roots();
    let mut server = Tls::new(config);
    let mut sink = Sink::default();
    let mut garbage = b"\x16\x03\x01\x00\x05hello".to_vec();
    assert_eq!(
        server.receive(&mut garbage, &mut Vec::new(), &mut sink),
        Err(TlsError::Handshake)
    );
    // A header announcing more than any record may hold, before the body.
    let (config, _) = server_and_roots();
    let mut server = Tls::new(config);
    assert_eq!(
        server.receive(&mut [0x16, 3, 1, 0xff, 0xff], &mut Vec::new(), &mut sink),
        Err(TlsError::Handshake)
    );
    // After the handshake: a record whose tag does not verify.
    let mut p = Pair::new(&[&rustls::version::TLS13]);
    p.handshake(1 << 20);
    p.client.writer().write_all(b"secret").unwrap();
    let mut record = p.client_bytes();
    let last = record.len() - 1;
    record[last] ^= 1;
    assert_eq!(p.feed(&mut record, 1 << 20), Err(TlsError::Record));
    assert!(p.sink.got.is_empty());
    assert!(!p.server.wire.is_empty(), "bad_record_mac alert");
}

#[test]
fn close_notify_ends_the_session_and_ours_is_sent_once() {
    let mut p = Pair::new(&[&rustls::version::TLS13]);
    p.handshake(1 << 20);
    p.client.writer().write_all(b"last words").unwrap();
    p.client.send_close_notify();
    assert_eq!(p.client_to_server(1 << 20), Ok(Received::PeerClosed));
    assert_eq!(p.sink.got, b"last words");
    // We may still send (the close reply of a half-closed peer), then ours.
    let mut outbox = Outbox::default();
    outbox.push_copy(&mut p.sink.pool, b"reply", b"");
    assert_eq!(p.server.encrypt(&mut outbox, &mut p.sink.pool), Ok(true));
    assert!(p.server.close_notify(&mut p.sink.pool));
    assert_eq!(p.server_to_client(), b"reply");
    assert!(p.client.received_close_notify_or_eof());

    let mut p = Pair::new(&[&rustls::version::TLS12]);
    p.handshake(1 << 20);
    assert!(p.server.close_notify(&mut p.sink.pool));
    assert!(!p.server.close_notify(&mut p.sink.pool));
    p.server_to_client();
    assert!(p.client.received_close_notify_or_eof());
}

pub(super) trait ClosedByPeer {
    fn received_close_notify_or_eof(&mut self) -> bool;
}

impl ClosedByPeer for ClientConnection {
    fn received_close_notify_or_eof(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader().read(&mut buf), Ok(0))
    }
}

#[test]
fn a_cut_record_is_kept_only_until_it_is_complete() {
    let mut p = Pair::new(&[&rustls::version::TLS13]);
    p.handshake(1 << 20);
    p.client.writer().write_all(&[1; 3000]).unwrap();
    let mut record = p.client_bytes();
    let (head, tail) = record.split_at_mut(1000);
    assert_eq!(p.feed(head, 1 << 20), Ok(Received::Open));
    assert!(p.server.mid_record());
    assert!(p.server.stash.capacity() >= 1000);
    assert_eq!(p.feed(tail, 1 << 20), Ok(Received::Open));
    assert!(!p.server.mid_record());
    assert_eq!(p.server.stash.capacity(), 0);
    assert_eq!(p.sink.got, [1; 3000]);
}

#[test]
fn an_idle_session_is_small() {
    for versions in VERSIONS {
        let mut p = Pair::new(versions);
        p.handshake(1 << 20);
        p.server_to_client();
        assert!(p.server.wire.is_empty());
        assert_eq!(p.server.stash.capacity(), 0);
        // rustls is gone: our record layer holds the keys as bytes.
        assert!(p.server.records().is_some());
        // Two sweeps without a read or a flush: no expanded key is left.
        p.server.release_idle();
        p.server.release_idle();
        assert_eq!(p.server.records().unwrap().keys_expanded(), (false, false));
    }
    let tls = std::mem::size_of::<Tls>();
    let records = std::mem::size_of::<RecordLayer>();
    let schedule = std::mem::size_of::<
        rustls::kernel::KernelConnection<rustls::server::ServerConnectionData>,
    >();
    eprintln!(
        "Tls {tls} B + record layer {records} B (+ TLS 1.3: rustls's key schedule {schedule} B \
         and its state)"
    );
    assert!(tls <= 96, "{tls}");
    assert!(records <= 224, "{records}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Whatever a peer sends, cut however, the TLS layer answers with an error
    /// or waits, never panics, and keeps at most one stash's worth.
    #[test]
    fn arbitrary_input_never_panics_and_stays_bounded(
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
        header in proptest::collection::vec(proptest::prelude::any::<u8>(), 4),
        cuts in proptest::collection::vec(1usize..700, 1..8),
    ) {
        let (config, _) = server_and_roots();
        let mut server = Tls::new(config);
        let mut sink = Sink::default();
        // A handshake record type first, so that input reaches rustls.
        let mut bytes = vec![crate::transport::tls::records::HANDSHAKE];
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&body);
        let mut rest = &mut bytes[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at_mut((*cut).min(rest.len()));
            if server.receive(now, &mut Vec::new(), &mut sink).is_err() {
                break;
            }
            proptest::prop_assert!(server.stash.len() <= MAX_STASH);
            rest = later;
        }
        proptest::prop_assert!(sink.got.is_empty(), "no plaintext before a handshake");
    }
}

mod carry;
mod record_layer;

pub(super) use record_layer::{Raw, SUITES, feed, take_wire};
