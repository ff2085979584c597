//! Our record layer after rustls's handshake, against a client record layer
//! the tests write themselves ([`Raw`]) and rustls's client.

use super::*;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::{CipherSuite, ConnectionTrafficSecrets};

use crate::transport::tls::records::MAX_FRAGMENT;

/// The suites our record layer runs, by version.
pub(crate) const SUITES: [(&SupportedProtocolVersion, CipherSuite); 6] = [
    (
        &rustls::version::TLS13,
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        &rustls::version::TLS13,
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        &rustls::version::TLS13,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    (
        &rustls::version::TLS12,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        &rustls::version::TLS12,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        &rustls::version::TLS12,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// A rustls client that offers one version and one suite (and can export its
/// secrets, for [`Raw`]).
pub(crate) fn suite_client(
    roots: RootCertStore,
    version: &'static SupportedProtocolVersion,
    suite: CipherSuite,
) -> ClientConnection {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(|s| s.suite() == suite);
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.enable_secret_extraction = true;
    ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap()
}

impl Pair {
    pub fn with_suite(version: &'static SupportedProtocolVersion, suite: CipherSuite) -> Self {
        let (config, roots) = server_and_roots();
        Self {
            server: Tls::new(config),
            client: suite_client(roots, version, suite),
            sink: Sink::default(),
            plain: Vec::new(),
        }
    }

    /// Handshaken, then the client's side taken over by [`Raw`], which writes
    /// records as it likes.
    pub fn raw(version: &'static SupportedProtocolVersion, suite: CipherSuite) -> (Tls, Sink, Raw) {
        let mut p = Self::with_suite(version, suite);
        p.handshake(1 << 20);
        p.server_to_client();
        let tls13 = version.version == rustls::ProtocolVersion::TLSv1_3;
        #[allow(deprecated)]
        let secrets = p.client.dangerous_extract_secrets().unwrap();
        (p.server, p.sink, Raw::new(secrets, tls13))
    }
}

/// One direction of the test's own client record layer, written apart from
/// the one under test (from RFC 8446 §5.2-5.3 and RFC 5288 §3).
struct RawDirection {
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
    /// TLS 1.2 AES-GCM: an explicit nonce in each record.
    explicit: bool,
}

impl RawDirection {
    fn new((seq, secrets): (u64, ConnectionTrafficSecrets), tls13: bool) -> Self {
        let (alg, key, iv, gcm) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
                (&ring::aead::AES_128_GCM, key, iv, true)
            }
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
                (&ring::aead::AES_256_GCM, key, iv, true)
            }
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&ring::aead::CHACHA20_POLY1305, key, iv, false)
            }
            _ => unreachable!(),
        };
        Self {
            key: LessSafeKey::new(UnboundKey::new(alg, key.as_ref()).unwrap()),
            iv: iv.as_ref().try_into().unwrap(),
            seq,
            explicit: gcm && !tls13,
        }
    }

    fn nonce(&self) -> [u8; 12] {
        let mut nonce = self.iv;
        let seq = self.seq.to_be_bytes();
        for i in 0..8 {
            nonce[4 + i] ^= seq[i];
        }
        nonce
    }
}

fn aad12(seq: u64, typ: u8, len: usize) -> Vec<u8> {
    let mut aad = seq.to_be_bytes().to_vec();
    aad.extend_from_slice(&[typ, 3, 3]);
    aad.extend_from_slice(&(len as u16).to_be_bytes());
    aad
}

/// The client's records, sealed and opened by the test.
pub(crate) struct Raw {
    tls13: bool,
    tx: RawDirection,
    rx: RawDirection,
}

impl Raw {
    /// The client's side from the secrets rustls's client exported.
    pub fn new(secrets: rustls::ExtractedSecrets, tls13: bool) -> Self {
        Self {
            tls13,
            tx: RawDirection::new(secrets.tx, tls13),
            rx: RawDirection::new(secrets.rx, tls13),
        }
    }

    /// One record of `typ` holding `plain` (TLS 1.3: then `padding` zeros).
    fn seal_padded(&mut self, typ: u8, plain: &[u8], padding: usize) -> Vec<u8> {
        let d = &mut self.tx;
        let nonce = d.nonce();
        let mut body = plain.to_vec();
        let (outer, aad_of) = if self.tls13 {
            body.push(typ);
            body.extend(std::iter::repeat_n(0, padding));
            (23, None)
        } else {
            (typ, Some(aad12(d.seq, typ, plain.len())))
        };
        let explicit = if d.explicit { 8 } else { 0 };
        let len = (explicit + body.len() + 16) as u16;
        let header = [outer, 3, 3, (len >> 8) as u8, len as u8];
        let aad = aad_of.unwrap_or_else(|| header.to_vec());
        let tag = d
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut body,
            )
            .unwrap();
        d.seq = d.seq.wrapping_add(1);
        let mut record = header.to_vec();
        if d.explicit {
            record.extend_from_slice(&nonce[4..]);
        }
        record.extend_from_slice(&body);
        record.extend_from_slice(tag.as_ref());
        record
    }

    pub fn seal(&mut self, typ: u8, plain: &[u8]) -> Vec<u8> {
        self.seal_padded(typ, plain, 0)
    }

    /// The server's records: (content type, plaintext) each.
    pub fn open_all(&mut self, mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while bytes.len() >= 5 {
            let len = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
            let (record, rest) = bytes.split_at(5 + len);
            bytes = rest;
            let d = &mut self.rx;
            let mut body = record[5..].to_vec();
            let (nonce, aad, skip) = if self.tls13 {
                (d.nonce(), record[..5].to_vec(), 0)
            } else if d.explicit {
                let mut nonce = d.iv;
                nonce[4..].copy_from_slice(&body[..8]);
                (nonce, aad12(d.seq, record[0], len - 24), 8)
            } else {
                (d.nonce(), aad12(d.seq, record[0], len - 16), 0)
            };
            let plain = d
                .key
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&aad),
                    &mut body[skip..],
                )
                .expect("the server's record opens")
                .to_vec();
            d.seq += 1;
            if self.tls13 {
                let end = plain.iter().rposition(|&b| b != 0).unwrap();
                out.push((plain[end], plain[..end].to_vec()));
            } else {
                out.push((record[0], plain));
            }
        }
        out
    }
}

/// Takes the server's wire queue off as bytes.
pub(crate) fn take_wire(server: &mut Tls, pool: &mut BufferPool) -> Vec<u8> {
    let mut out = Vec::new();
    while !server.wire.is_empty() {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let count = server.wire.io_slices(&mut slices);
        let n: usize = slices[..count].iter().map(|s| s.len()).sum();
        for slice in &slices[..count] {
            out.extend_from_slice(slice);
        }
        server.wire.consume(pool, n);
    }
    out
}

pub(crate) fn feed(server: &mut Tls, sink: &mut Sink, bytes: &[u8]) -> Result<Received, TlsError> {
    server.receive(&mut bytes.to_vec(), &mut Vec::new(), sink)
}

#[test]
fn every_suite_of_both_versions_runs_on_our_record_layer() {
    for (version, suite) in SUITES {
        for step in [1, 7, 1 << 20] {
            let mut p = Pair::with_suite(version, suite);
            p.handshake(step);
            assert_eq!(p.client.negotiated_cipher_suite().unwrap().suite(), suite);
            assert!(p.server.records().is_some(), "{suite:?}");
            let message: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
            p.client.writer().write_all(&message).unwrap();
            p.client.writer().write_all(b"and more").unwrap();
            assert_eq!(p.client_to_server(step), Ok(Received::Open), "{suite:?}");
            assert_eq!(p.sink.got.len(), message.len() + 8);
            assert!(p.sink.got.starts_with(&message) && p.sink.got.ends_with(b"and more"));
            assert!(!p.server.mid_record());
            let mut outbox = Outbox::default();
            outbox.push_copy(&mut p.sink.pool, b"hello ", b"world");
            outbox.push_shared(&mut p.sink.pool, bytes::Bytes::from(message.clone()));
            assert_eq!(p.server.encrypt(&mut outbox, &mut p.sink.pool), Ok(true));
            let got = p.server_to_client();
            assert_eq!(&got[..11], b"hello world");
            assert_eq!(&got[11..], &message[..]);
        }
    }
}

#[test]
fn the_delivered_plaintext_is_the_receive_buffer_itself() {
    // What `deliver` gets lies inside the buffer handed to `receive`: the
    // decoder unmasks there, with no copy.
    struct Where {
        pool: BufferPool,
        ranges: Vec<(usize, usize)>,
    }
    impl Upper for Where {
        fn pool(&mut self) -> &mut BufferPool {
            &mut self.pool
        }
        fn deliver(&mut self, plain: &mut [u8], _: Option<Sealer<'_>>) {
            plain[0] ^= 0xff; // mutable
            let start = plain.as_ptr() as usize;
            self.ranges.push((start, start + plain.len()));
        }
    }
    // 20,000 bytes: records of 16,384 and 3,616: the small one is joined to
    // the first, one delivery. 40,000: 16,384 twice and 7,232, three.
    for (size, deliveries) in [(20_000, 1), (40_000, 3), (16_396, 1)] {
        let mut p = Pair::new(&[&rustls::version::TLS13]);
        p.handshake(1 << 20);
        let message: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        p.client.writer().write_all(&message).unwrap();
        let mut bytes = p.client_bytes();
        let (lo, hi) = (
            bytes.as_ptr() as usize,
            bytes.as_ptr() as usize + bytes.len(),
        );
        let mut up = Where {
            pool: BufferPool::default(),
            ranges: Vec::new(),
        };
        assert_eq!(
            p.server.receive(&mut bytes, &mut Vec::new(), &mut up),
            Ok(Received::Open)
        );
        assert_eq!(up.ranges.len(), deliveries, "{size}");
        assert!(up.ranges.iter().all(|&(s, e)| s >= lo && e <= hi));
        let mut got = Vec::new();
        for &(s, e) in &up.ranges {
            let at = s - lo;
            let slice = &mut bytes[at..at + (e - s)];
            slice[0] ^= 0xff; // back as it was delivered
            got.extend_from_slice(slice);
        }
        assert_eq!(got, message, "{size}");
    }
}

#[test]
fn a_key_update_from_the_client_is_followed_and_answered() {
    for (version, suite) in &SUITES[..3] {
        let mut p = Pair::with_suite(version, *suite);
        p.handshake(1 << 20);
        p.server_to_client();
        for round in 0..3 {
            // rustls's client asks for our update too (update_requested).
            p.client.refresh_traffic_keys().unwrap();
            let text = format!("round {round}");
            p.client.writer().write_all(text.as_bytes()).unwrap();
            p.sink.got.clear();
            assert_eq!(p.client_to_server(3), Ok(Received::Open), "{suite:?}");
            assert_eq!(p.sink.got, text.as_bytes());
            // Both keys are new: the data came at rx seq 0, our KeyUpdate
            // went out under the old tx key and the next record is at 0.
            assert_eq!(p.server.records().unwrap().seqs(), (1, 0));
            let mut outbox = Outbox::default();
            outbox.push_copy(&mut p.sink.pool, b"reply ", text.as_bytes());
            assert_eq!(p.server.encrypt(&mut outbox, &mut p.sink.pool), Ok(true));
            assert_eq!(p.server_to_client(), format!("reply {text}").as_bytes());
        }
    }
}

/// A busy connection expands its keys once, not per read and per flush; a
/// sweep after a tick without use drops them, and the next record expands
/// them again from the same secrets.
#[test]
fn expanded_keys_stay_while_busy_and_go_after_an_idle_sweep() {
    fn echo(p: &mut Pair, text: &str) {
        p.client.writer().write_all(text.as_bytes()).unwrap();
        p.sink.got.clear();
        assert_eq!(p.client_to_server(1 << 20), Ok(Received::Open));
        assert_eq!(p.sink.got, text.as_bytes());
        let mut outbox = Outbox::default();
        outbox.push_copy(&mut p.sink.pool, b"reply ", text.as_bytes());
        assert_eq!(p.server.encrypt(&mut outbox, &mut p.sink.pool), Ok(true));
        assert_eq!(p.server_to_client(), format!("reply {text}").as_bytes());
    }
    for (version, suite) in SUITES {
        let mut p = Pair::with_suite(version, suite);
        p.handshake(1 << 20);
        p.server_to_client();
        echo(&mut p, "one");
        let expanded = |p: &mut Pair| p.server.records().unwrap().keys_expanded();
        assert_eq!(expanded(&mut p), (true, true), "{suite:?}");
        // Used since the last sweep: kept.
        p.server.release_idle();
        assert_eq!(expanded(&mut p), (true, true), "{suite:?}");
        echo(&mut p, "two");
        p.server.release_idle();
        // A whole tick without use: dropped.
        p.server.release_idle();
        assert_eq!(expanded(&mut p), (false, false), "{suite:?}");
        echo(&mut p, "three");
        assert_eq!(expanded(&mut p), (true, true), "{suite:?}");
    }
}

#[test]
fn key_updates_are_bounded_between_records_of_data() {
    let mut p = Pair::new(&[&rustls::version::TLS13]);
    p.handshake(1 << 20);
    p.server_to_client();
    for _ in 0..32 {
        p.client.refresh_traffic_keys().unwrap();
    }
    p.client.writer().write_all(b"data").unwrap();
    assert_eq!(p.client_to_server(1 << 20), Ok(Received::Open));
    assert_eq!(p.sink.got, b"data");
    for _ in 0..33 {
        p.client.refresh_traffic_keys().unwrap();
    }
    assert_eq!(p.client_to_server(1 << 20), Err(TlsError::Record));
}

#[test]
fn our_key_update_answers_update_requested_only() {
    let (mut server, mut sink, mut raw) = Pair::raw(
        &rustls::version::TLS13,
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    );
    let (_, tx_before) = server.records().unwrap().seqs();
    // update_not_requested: the rx key changes, nothing is sent.
    let record = raw.seal(22, &[24, 0, 0, 1, 0]);
    assert_eq!(feed(&mut server, &mut sink, &record), Ok(Received::Open));
    assert_eq!(server.records().unwrap().seqs(), (0, tx_before));
    assert!(server.wire.is_empty());

    let (mut server, mut sink, mut raw) = Pair::raw(
        &rustls::version::TLS13,
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    );
    // update_requested: our KeyUpdate, under the old key.
    let record = raw.seal(22, &[24, 0, 0, 1, 1]);
    assert_eq!(feed(&mut server, &mut sink, &record), Ok(Received::Open));
    let sent = take_wire(&mut server, &mut sink.pool);
    assert_eq!(raw.open_all(&sent), [(22, vec![24, 0, 0, 1, 0])]);
    assert_eq!(server.records().unwrap().seqs(), (0, 0));
}

#[test]
fn handshake_messages_after_the_handshake() {
    let cases: [(&[u8], u8); 5] = [
        (&[24, 0, 0, 1, 2], 47),                 // KeyUpdate with a bad value
        (&[24, 0, 0, 1, 0, 24, 0, 0, 1, 0], 10), // more after a KeyUpdate
        (&[24, 0, 0, 2, 0, 0], 50),              // KeyUpdate of 2 bytes
        (&[4, 0, 0, 0], 10),                     // a NewSessionTicket from a client
        (&[24, 0, 0], 50),                       // a cut message header
    ];
    for (message, alert) in cases {
        let (mut server, mut sink, mut raw) = Pair::raw(
            &rustls::version::TLS13,
            CipherSuite::TLS13_AES_128_GCM_SHA256,
        );
        let record = raw.seal(22, message);
        assert_eq!(
            feed(&mut server, &mut sink, &record),
            Err(TlsError::Record),
            "{message:?}"
        );
        let sent = take_wire(&mut server, &mut sink.pool);
        assert_eq!(raw.open_all(&sent), [(21, vec![2, alert])], "{message:?}");
        // Nothing more is processed or sent.
        assert!(!server.close_notify(&mut sink.pool));
    }
}

#[test]
fn tls13_inner_content_types() {
    let (mut server, mut sink, mut raw) = Pair::raw(
        &rustls::version::TLS13,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    );
    // Padding is not data; an empty record of data is allowed.
    let mut bytes = raw.seal_padded(23, b"padded", 100);
    bytes.extend(raw.seal(23, b""));
    bytes.extend(raw.seal(23, b"!"));
    assert_eq!(feed(&mut server, &mut sink, &bytes), Ok(Received::Open));
    assert_eq!(sink.got, b"padded!");
    // All padding (no content type), a ChangeCipherSpec inside, an unknown
    // type: unexpected_message.
    for (typ, plain, padding) in [(0u8, &b""[..], 10), (20, &[1][..], 0), (99, &b"x"[..], 0)] {
        let (mut server, mut sink, mut raw) = Pair::raw(
            &rustls::version::TLS13,
            CipherSuite::TLS13_AES_128_GCM_SHA256,
        );
        let record = raw.seal_padded(typ, plain, padding);
        assert_eq!(feed(&mut server, &mut sink, &record), Err(TlsError::Record));
        let sent = take_wire(&mut server, &mut sink.pool);
        assert_eq!(raw.open_all(&sent), [(21, vec![2, 10])], "type {typ}");
    }
}

#[test]
fn alerts_from_the_peer() {
    for (version, suite) in [SUITES[0], SUITES[3]] {
        let tls13 = version.version == rustls::ProtocolVersion::TLSv1_3;
        // A fatal alert ends the session; nothing is owed.
        let (mut server, mut sink, mut raw) = Pair::raw(version, suite);
        let record = raw.seal(21, &[2, 40]);
        assert_eq!(feed(&mut server, &mut sink, &record), Err(TlsError::Record));
        assert!(server.wire.is_empty());
        // close_notify: what follows it is not read.
        let (mut server, mut sink, mut raw) = Pair::raw(version, suite);
        let mut bytes = raw.seal(23, b"before");
        bytes.extend(raw.seal(21, &[1, 0]));
        bytes.extend(raw.seal(23, b"after"));
        assert_eq!(
            feed(&mut server, &mut sink, &bytes),
            Ok(Received::PeerClosed)
        );
        assert_eq!(sink.got, b"before");
        // user_canceled is tolerated, a few times.
        let (mut server, mut sink, mut raw) = Pair::raw(version, suite);
        for _ in 0..4 {
            let record = raw.seal(21, &[1, 90]);
            assert_eq!(feed(&mut server, &mut sink, &record), Ok(Received::Open));
        }
        let record = raw.seal(21, &[1, 90]);
        assert_eq!(feed(&mut server, &mut sink, &record), Err(TlsError::Record));
        // Another warning: fine in 1.2, decode_error in 1.3.
        let (mut server, mut sink, mut raw) = Pair::raw(version, suite);
        let record = raw.seal(21, &[1, 42]);
        if tls13 {
            assert_eq!(feed(&mut server, &mut sink, &record), Err(TlsError::Record));
            let sent = take_wire(&mut server, &mut sink.pool);
            assert_eq!(raw.open_all(&sent), [(21, vec![2, 50])]);
        } else {
            assert_eq!(feed(&mut server, &mut sink, &record), Ok(Received::Open));
        }
        // A malformed alert, and an unknown level.
        for (alert, answer) in [(&[1u8, 0, 0][..], 50u8), (&[7, 0][..], 47)] {
            let (mut server, mut sink, mut raw) = Pair::raw(version, suite);
            let record = raw.seal(21, alert);
            assert_eq!(feed(&mut server, &mut sink, &record), Err(TlsError::Record));
            let sent = take_wire(&mut server, &mut sink.pool);
            assert_eq!(raw.open_all(&sent), [(21, vec![2, answer])], "{alert:?}");
        }
    }
}

#[test]
fn close_notify_from_our_record_layer_reaches_rustls() {
    for (version, suite) in SUITES {
        let mut p = Pair::with_suite(version, suite);
        p.handshake(1 << 20);
        p.server_to_client();
        assert!(p.server.close_notify(&mut p.sink.pool));
        assert!(!p.server.close_notify(&mut p.sink.pool), "once");
        p.server_to_client();
        assert!(p.client.received_close_notify_or_eof(), "{suite:?}");
    }
}

#[test]
fn records_that_fail_to_open_get_the_right_alert() {
    for (version, suite) in SUITES {
        let tls13 = version.version == rustls::ProtocolVersion::TLSv1_3;
        let explicit = !tls13 && !format!("{suite:?}").contains("CHACHA");
        type Tamper = fn(&mut Vec<u8>);
        let mut cases: Vec<(&str, Tamper, u8)> = vec![
            ("tag", |r| *r.last_mut().unwrap() ^= 1, 20),
            ("body", |r| r[12] ^= 0x80, 20),
            ("length", |r| r.truncate(5 + 15), 20),
        ];
        if tls13 {
            // The outer type of every record after the handshake is 23.
            cases.push(("outer type", |r| r[0] = 22, 10));
        } else {
            // The type is authenticated.
            cases.push(("type", |r| r[0] = 22, 20));
        }
        if explicit {
            cases.push(("explicit nonce", |r| r[6] ^= 1, 20));
        }
        for (what, tamper, alert) in cases {
            let (mut server, mut sink, mut raw) = Pair::raw(version, suite);
            let mut record = raw.seal(23, &[9; 100]);
            tamper(&mut record);
            if what == "length" {
                let len = (record.len() - 5) as u16;
                record[3..5].copy_from_slice(&len.to_be_bytes());
            }
            assert_eq!(
                feed(&mut server, &mut sink, &record),
                Err(TlsError::Record),
                "{suite:?} {what}"
            );
            assert!(sink.got.is_empty(), "{suite:?} {what}");
            let sent = take_wire(&mut server, &mut sink.pool);
            assert_eq!(
                raw.open_all(&sent),
                [(21, vec![2, alert])],
                "{suite:?} {what}"
            );
        }
        // More than 16 KiB of plaintext in one record: record_overflow.
        let (mut server, mut sink, mut raw) = Pair::raw(version, suite);
        let record = raw.seal(23, &vec![1; MAX_FRAGMENT + 1]);
        assert_eq!(feed(&mut server, &mut sink, &record), Err(TlsError::Record));
        let sent = take_wire(&mut server, &mut sink.pool);
        assert_eq!(raw.open_all(&sent), [(21, vec![2, 22])], "{suite:?}");
        // A ChangeCipherSpec record after the handshake.
        let (mut server, mut sink, mut raw) = Pair::raw(version, suite);
        assert_eq!(
            feed(&mut server, &mut sink, &[20, 3, 3, 0, 1, 1]),
            Err(TlsError::Record)
        );
        let sent = take_wire(&mut server, &mut sink.pool);
        assert_eq!(raw.open_all(&sent), [(21, vec![2, 10])], "{suite:?}");
    }
}

#[test]
fn records_cut_anywhere_across_reads() {
    for (version, suite) in [SUITES[1], SUITES[4], SUITES[5]] {
        let (mut server, mut sink, mut raw) = Pair::raw(version, suite);
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        for (i, size) in [1usize, 300, MAX_FRAGMENT, 0, 5000].into_iter().enumerate() {
            let plain = vec![i as u8 + 1; size];
            bytes.extend(raw.seal(23, &plain));
            expected.extend(plain);
        }
        // Every cut of the stream, fed in reads of every size in turn.
        let mut pos = 0;
        let mut reads = [1usize, 4, 5, 6, 21, 1000, 16_400].iter().cycle();
        while pos < bytes.len() {
            let n = (*reads.next().unwrap()).min(bytes.len() - pos);
            assert_eq!(
                feed(&mut server, &mut sink, &bytes[pos..pos + n]),
                Ok(Received::Open)
            );
            pos += n;
        }
        assert_eq!(sink.got, expected, "{suite:?}");
    }
}

#[test]
fn the_confidentiality_limit_moves_to_the_next_key_or_ends_tls12() {
    let mut p = Pair::new(&[&rustls::version::TLS13]);
    p.handshake(1 << 20);
    p.server_to_client();
    let (_, tx) = p.server.records().unwrap().seqs();
    p.server.records().unwrap().set_tx_limit(tx + 2);
    let mut outbox = Outbox::default();
    outbox.push_copy(&mut p.sink.pool, &[3; 5 * MAX_FRAGMENT], b"");
    assert_eq!(p.server.encrypt(&mut outbox, &mut p.sink.pool), Ok(true));
    // Two records under the old key, a KeyUpdate at the limit, the other
    // three under the new key, counted from 0.
    assert_eq!(p.server.records().unwrap().seqs().1, 3);
    assert_eq!(p.server_to_client(), [3; 5 * MAX_FRAGMENT]);

    // TLS 1.2 cannot: past the last record the session ends (the worker has
    // asked for the close long before: see the conformance tests).
    let mut p = Pair::new(&[&rustls::version::TLS12]);
    p.handshake(1 << 20);
    let (_, tx) = p.server.records().unwrap().seqs();
    p.server.records().unwrap().set_tx_limit(tx + 1);
    let mut outbox = Outbox::default();
    outbox.push_copy(&mut p.sink.pool, &[3; 2 * MAX_FRAGMENT], b"");
    assert_eq!(
        p.server.encrypt(&mut outbox, &mut p.sink.pool),
        Err(TlsError::Record)
    );
}

#[test]
fn the_receive_sequence_number_never_wraps() {
    let (mut server, mut sink, mut raw) = Pair::raw(
        &rustls::version::TLS13,
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    );
    server.records().unwrap().set_rx_seq(u64::MAX - 1);
    raw.tx.seq = u64::MAX - 1;
    let record = raw.seal(23, b"last");
    assert_eq!(feed(&mut server, &mut sink, &record), Ok(Received::Open));
    let record = raw.seal(23, b"one too many");
    assert_eq!(feed(&mut server, &mut sink, &record), Err(TlsError::Record));
    assert_eq!(sink.got, b"last");
}

#[test]
fn tls12_renegotiation_is_refused_once() {
    let (mut server, mut sink, mut raw) = Pair::raw(
        &rustls::version::TLS12,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    );
    let hello = raw.seal(22, &[1, 0, 0, 0]);
    assert_eq!(feed(&mut server, &mut sink, &hello), Ok(Received::Open));
    let sent = take_wire(&mut server, &mut sink.pool);
    assert_eq!(raw.open_all(&sent), [(21, vec![1, 100])]);
    let hello = raw.seal(22, &[1, 0, 0, 0]);
    assert_eq!(feed(&mut server, &mut sink, &hello), Err(TlsError::Record));
}

#[test]
fn without_secret_extraction_rustls_keeps_the_session() {
    for versions in VERSIONS {
        let (config, roots) = server_and_roots();
        let mut config = (*config).clone();
        config.enable_secret_extraction = false;
        let mut p = Pair {
            server: Tls::new(Arc::new(config)),
            client: client(roots, versions),
            sink: Sink::default(),
            plain: Vec::new(),
        };
        p.handshake(7);
        assert!(p.server.records().is_none());
        p.client.writer().write_all(&[4; 20_000]).unwrap();
        assert_eq!(p.client_to_server(1000), Ok(Received::Open));
        assert_eq!(p.sink.got, [4; 20_000]);
        let mut outbox = Outbox::default();
        outbox.push_copy(&mut p.sink.pool, b"on rustls", b"");
        assert_eq!(p.server.encrypt(&mut outbox, &mut p.sink.pool), Ok(true));
        assert!(p.server.close_notify(&mut p.sink.pool));
        assert_eq!(p.server_to_client(), b"on rustls");
        assert!(p.client.received_close_notify_or_eof());
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// After the handshake, whatever a peer sends to our record layer (records
    /// of any type sealed with the right key and holding anything, or bytes
    /// that are no record), cut however, is answered with an error or taken,
    /// never a panic, and the stash stays bounded.
    #[test]
    fn arbitrary_records_never_panic(
        tls13 in proptest::prelude::any::<bool>(),
        records in proptest::collection::vec(
            (proptest::prelude::any::<u8>(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), proptest::prelude::any::<bool>()),
            1..6,
        ),
        cuts in proptest::collection::vec(1usize..300, 1..6),
    ) {
        let (version, suite) = if tls13 { SUITES[0] } else { SUITES[3] };
        let (mut server, mut sink, mut raw) = Pair::raw(version, suite);
        let mut bytes = Vec::new();
        for (typ, plain, sealed) in &records {
            if *sealed {
                // Types 20 to 24 most of the time, any other now and then.
                let typ = if *typ < 200 { 20 + typ % 5 } else { *typ };
                bytes.extend(raw.seal(typ, plain));
            } else {
                bytes.extend_from_slice(plain);
            }
        }
        let mut rest = &bytes[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at((*cut).min(rest.len()));
            if feed(&mut server, &mut sink, now) != Ok(Received::Open) {
                break;
            }
            proptest::prop_assert!(server.stash.len() <= MAX_STASH);
            rest = later;
        }
    }
}

#[test]
fn resumed_sessions_run_on_our_record_layer_too() {
    for versions in VERSIONS {
        let (config, roots) = server_and_roots();
        let mut client_config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        client_config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client_config = Arc::new(client_config);
        let connect = || {
            ClientConnection::new(
                client_config.clone(),
                ServerName::try_from("localhost").unwrap(),
            )
            .unwrap()
        };
        for round in 0..2 {
            let mut p = Pair {
                server: Tls::new(config.clone()),
                client: connect(),
                sink: Sink::default(),
                plain: Vec::new(),
            };
            p.handshake(1 << 20);
            p.server_to_client();
            let resumed = p.client.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            assert_eq!(resumed, round == 1, "{versions:?} round {round}");
            assert!(p.server.records().is_some());
            p.client.writer().write_all(b"again").unwrap();
            assert_eq!(p.client_to_server(3), Ok(Received::Open));
            assert_eq!(p.sink.got, b"again");
            let mut outbox = Outbox::default();
            outbox.push_copy(&mut p.sink.pool, b"back", b"");
            assert_eq!(p.server.encrypt(&mut outbox, &mut p.sink.pool), Ok(true));
            assert_eq!(p.server_to_client(), b"back");
        }
    }
}

#[test]
fn an_application_config_gets_secret_extraction_for_the_record_layer() {
    let (config, roots) = server_and_roots();
    let mut own = (*config).clone();
    own.enable_secret_extraction = false;
    let own = Arc::new(own);
    let tls = TlsConfig::from_rustls(own.clone());
    assert!(tls.rustls().enable_secret_extraction);
    assert!(
        !own.enable_secret_extraction,
        "the application's copy is left alone"
    );
    let mut p = Pair {
        server: Tls::new(tls.rustls().clone()),
        client: client(roots, VERSIONS[0]),
        sink: Sink::default(),
        plain: Vec::new(),
    };
    p.handshake(1 << 20);
    assert!(p.server.records().is_some());
}
