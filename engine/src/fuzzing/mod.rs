//! The harness of the TLS fuzz targets in `engine/fuzz` (feature `fuzzing`; not
//! part of the API): each target is one function here, fed the fuzzer's bytes,
//! so that it sees the crate's internals (the connection's `Tls`, its record
//! layer) and is checked by the crate's lints.
//!
//! - `tls_records`: a server `Tls` just handed over to our record layer,
//!   fed records sealed by the harness's own client record layer (any content
//!   type, content and padding, KeyUpdates followed), raw bytes and flipped
//!   bits, in reads cut anywhere, while it sends; checked against a model of
//!   what the record layer must accept.
//! - `tls_differential`: rustls's client record layer against ours, both
//!   ways, on every suite ours runs.
//! - `h2_frames`: the server-side HTTP/2 codec (`transport::h2`), fed a
//!   client's frames (built right, and raw) in reads cut anywhere while the
//!   harness drives it as the runtime would, checked against its invariants.
//! - `hpack_decode`: our HPACK decoder against loona-hpack's (differential),
//!   and our header-list limits on the same blocks.
//!
//! Each input makes a fresh handshake (rustls connections cannot be cloned),
//! against a server configuration made once.

mod h2;
mod hpack;
mod peer;
mod tls_differential;
mod tls_records;

pub use h2::h2_frames;
pub use hpack::hpack_decode;
pub use tls_differential::tls_differential;
pub use tls_records::tls_records;

use std::io::{IoSlice, Read};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::{
    CipherSuite, ClientConfig, ClientConnection, RootCertStore, ServerConfig,
    SupportedProtocolVersion,
};

use crate::transport::outbox::{BufferPool, MAX_IOVECS, Outbox};
use crate::transport::tls::TlsConfig;
use crate::transport::tls::records::{RecordLayer, Sealer};
use crate::transport::tls::session::adapter::Upper;
use crate::transport::tls::session::{Received, Tls};
use crate::types::TlsError;

/// The server's certificate: TLS 1.2's ECDHE_ECDSA suites need an ECDSA key,
/// its ECDHE_RSA suites an RSA key. Fixed test keys (made once with `openssl
/// req -new` and `openssl ca -selfsign`: CN and SAN `localhost`, CA:FALSE,
/// valid 2000-2099), so that the targets need no certificate generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cert {
    Ecdsa,
    Rsa,
}

/// A suite our record layer runs, with its version and the certificate its
/// key exchange needs (`None`: TLS 1.3, either).
#[derive(Debug)]
struct Suite {
    version: &'static SupportedProtocolVersion,
    suite: CipherSuite,
    cert: Option<Cert>,
}

impl Suite {
    fn tls13(&self) -> bool {
        self.version.version == rustls::ProtocolVersion::TLSv1_3
    }
}

/// Every suite whose keys rustls exports to our record layer.
const SUITES: [Suite; 9] = [
    Suite {
        version: &rustls::version::TLS13,
        suite: CipherSuite::TLS13_AES_128_GCM_SHA256,
        cert: None,
    },
    Suite {
        version: &rustls::version::TLS13,
        suite: CipherSuite::TLS13_AES_256_GCM_SHA384,
        cert: None,
    },
    Suite {
        version: &rustls::version::TLS13,
        suite: CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        cert: None,
    },
    Suite {
        version: &rustls::version::TLS12,
        suite: CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cert: Some(Cert::Ecdsa),
    },
    Suite {
        version: &rustls::version::TLS12,
        suite: CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cert: Some(Cert::Ecdsa),
    },
    Suite {
        version: &rustls::version::TLS12,
        suite: CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cert: Some(Cert::Ecdsa),
    },
    Suite {
        version: &rustls::version::TLS12,
        suite: CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cert: Some(Cert::Rsa),
    },
    Suite {
        version: &rustls::version::TLS12,
        suite: CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cert: Some(Cert::Rsa),
    },
    Suite {
        version: &rustls::version::TLS12,
        suite: CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        cert: Some(Cert::Rsa),
    },
];

/// The suite and certificate an input's first byte picks.
fn pick_suite(input: &mut Input<'_>) -> (&'static Suite, Cert) {
    let byte = input.byte();
    let suite = &SUITES[usize::from(byte) % SUITES.len()];
    let cert = suite.cert.unwrap_or(if byte & 0x80 == 0 {
        Cert::Ecdsa
    } else {
        Cert::Rsa
    });
    (suite, cert)
}

/// A server configuration (the engine's own, from PEM) and the roots that
/// trust its certificate.
struct Identity {
    server: Arc<ServerConfig>,
    roots: RootCertStore,
}

fn identity(cert: Cert) -> &'static Identity {
    static ECDSA: OnceLock<Identity> = OnceLock::new();
    static RSA: OnceLock<Identity> = OnceLock::new();
    let (cell, chain, key): (_, &[u8], &[u8]) = match cert {
        Cert::Ecdsa => (
            &ECDSA,
            include_bytes!("certs/ecdsa-cert.pem"),
            include_bytes!("certs/ecdsa-key.pem"),
        ),
        Cert::Rsa => (
            &RSA,
            include_bytes!("certs/rsa-cert.pem"),
            include_bytes!("certs/rsa-key.pem"),
        ),
    };
    cell.get_or_init(|| {
        let config = TlsConfig::from_pem(chain, key).expect("the test certificate loads");
        let mut roots = RootCertStore::empty();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(chain)
            .expect("the test certificate parses");
        roots.add(der).expect("the test certificate is a root");
        Identity {
            server: config.server,
            roots,
        }
    })
}

/// A rustls client offering only `suite`, trusting `cert`; `tune` sets the
/// rest (key log, fragment size). A new configuration each time: no session
/// is resumed, so every input runs the same full handshake.
fn client(suite: &Suite, cert: Cert, tune: impl FnOnce(&mut ClientConfig)) -> ClientConnection {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(|s| s.suite() == suite.suite);
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[suite.version])
        .expect("the suite's version")
        .with_root_certificates(identity(cert).roots.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tune(&mut config);
    let name = ServerName::try_from("localhost").expect("a DNS name");
    let mut client = ClientConnection::new(Arc::new(config), name).expect("a client");
    // The harness moves the bytes as it likes; rustls buffers them meanwhile.
    client.set_buffer_limit(None);
    client
}

/// Reads the fuzzer's bytes front to back; past their end every byte is 0.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Lengths around the limits: a record's plaintext (16 KiB), the records the
/// record layer joins to the one before (4 KiB), the largest record body a
/// TLS 1.3 and a TLS 1.2 peer may send, and a flush's encryption budget.
const EDGE_SIZES: [usize; 16] = [
    0,
    1,
    4095,
    4096,
    4097,
    16_383,
    16_384,
    16_385,
    16_384 + 256,
    16_384 + 2048,
    16_384 + 2049,
    32_768,
    32_769,
    70_000,
    (256 << 10) - 1,
    (256 << 10) + 1,
];

/// A length from the input: small ones spread out, multiples of 257 up to
/// 16 KiB, and the edges (capped at `max`).
fn size(input: &mut Input<'_>, max: usize) -> usize {
    let byte = input.byte();
    let size = match byte {
        0..128 => usize::from(byte),
        128..192 => usize::from(byte - 128) * 257,
        _ => EDGE_SIZES[usize::from(byte - 192) % EDGE_SIZES.len()],
    };
    size.min(max)
}

/// `len` bytes that differ from one payload (`seed`) and one position to the
/// next, so that a byte delivered out of place shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// What the server's record layer hands up: the plaintext, and (with
/// `reply`) frames sealed from the callback through the lent [`Sealer`], as a
/// handler's echo would be.
#[derive(Debug, Default)]
struct Sink {
    pool: BufferPool,
    delivered: Vec<u8>,
    /// Sealed before each run of plaintext that comes with a sealer, then the
    /// plaintext itself.
    reply: Option<Vec<u8>>,
    /// The plaintext those seals sent, in order, not yet taken by the harness.
    sealed: Vec<u8>,
    /// Ciphertext those seals may have taken at most.
    sealed_wire: usize,
}

impl Upper for Sink {
    fn pool(&mut self) -> &mut BufferPool {
        &mut self.pool
    }

    fn deliver(&mut self, plain: &mut [u8], sealer: Option<Sealer<'_>>) {
        self.delivered.extend_from_slice(plain);
        if let (Some(mut sealer), Some(reply)) = (sealer, &self.reply) {
            if sealer.seal(&[reply, plain], &mut self.pool) {
                let len = reply.len() + plain.len();
                self.sealed.extend_from_slice(reply);
                self.sealed.extend_from_slice(plain);
                self.sealed_wire += RecordLayer::sealed_len(len);
            }
        }
    }
}

/// The server side of a connection, as the worker drives it.
#[derive(Debug)]
struct Server {
    tls: Tls,
    up: Sink,
    /// The worker's scratch for plaintext during the handshake.
    scratch: Vec<u8>,
}

impl Server {
    fn new(cert: Cert) -> Self {
        Self {
            tls: Tls::new(identity(cert).server.clone()),
            up: Sink::default(),
            scratch: Vec::new(),
        }
    }

    /// One read of `bytes` from the socket (the record layer opens them in
    /// place, so they are copied into a buffer of their own, as the backend's).
    fn receive(&mut self, bytes: &[u8]) -> Result<Received, TlsError> {
        let mut buf = bytes.to_vec();
        self.tls.receive(&mut buf, &mut self.scratch, &mut self.up)
    }

    /// Queues `parts` (copied, or shared as a prepared message is) and
    /// flushes until the outbox is empty: what [`Tls::encrypt`] says of each
    /// flush, the last one's if all were `Ok(true)`.
    fn send(&mut self, parts: &[(&[u8], bool)]) -> Result<bool, TlsError> {
        let pool = &mut self.up.pool;
        let mut outbox = Outbox::default();
        for &(part, shared) in parts {
            if shared {
                outbox.push_shared(pool, Bytes::copy_from_slice(part));
            } else {
                outbox.push_copy(pool, part, b"");
            }
        }
        // At least one flush, even of nothing: its answer says whether the
        // session can still send.
        let sent = loop {
            let sent = self.tls.encrypt(&mut outbox, pool);
            if sent != Ok(true) || outbox.is_empty() {
                break sent;
            }
        };
        outbox.clear(pool);
        sent
    }

    fn close_notify(&mut self) -> bool {
        self.tls.close_notify(&mut self.up.pool)
    }

    /// The wire queue, taken off as the backend writes it.
    fn take_wire(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while !self.tls.wire.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let count = self.tls.wire.io_slices(&mut slices);
            let n: usize = slices[..count].iter().map(|s| s.len()).sum();
            for slice in &slices[..count] {
                out.extend_from_slice(slice);
            }
            self.tls.wire.consume(&mut self.up.pool, n);
        }
        out
    }
}

/// What the rustls client read from the server's bytes.
#[derive(Debug, Default)]
struct ClientRead {
    plain: Vec<u8>,
    /// The server's close_notify came.
    closed: bool,
}

/// Hands `bytes` to the rustls client and reads all the plaintext they hold.
fn client_read(client: &mut ClientConnection, bytes: &[u8]) -> Result<ClientRead, rustls::Error> {
    let mut rest = bytes;
    let mut read = ClientRead::default();
    while !rest.is_empty() {
        let n = client
            .read_tls(&mut rest)
            .expect("reading from a slice does not fail");
        // rustls reads nothing after the peer's close_notify.
        assert!(
            n > 0,
            "{} bytes after the server's close_notify",
            rest.len()
        );
        client.process_new_packets()?;
        // rustls holds a bounded amount of plaintext: read it as it comes.
        match client.reader().read_to_end(&mut read.plain) {
            Ok(_) => read.closed = true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("the client's reader failed: {e}"),
        }
    }
    Ok(read)
}

/// What the rustls client has to send.
fn client_bytes(client: &mut ClientConnection) -> Vec<u8> {
    let mut bytes = Vec::new();
    while client.wants_write() {
        client
            .write_tls(&mut bytes)
            .expect("writing to a Vec does not fail");
    }
    bytes
}

/// Runs the handshake between `server` and `client` in memory, up to the
/// hand-over to our record layer (and the client's reading of the session
/// tickets that follow the server's Finished in TLS 1.3).
fn handshake(server: &mut Server, client: &mut ClientConnection) {
    for _ in 0..8 {
        let bytes = client_bytes(client);
        assert_eq!(server.receive(&bytes), Ok(Received::Open), "handshake");
        let wire = server.take_wire();
        let read = client_read(client, &wire).expect("the client completes the handshake");
        assert!(read.plain.is_empty() && !read.closed);
        if !client.is_handshaking() && !client.wants_write() {
            break;
        }
    }
    assert!(!client.is_handshaking(), "the handshake completes");
    assert!(
        server.tls.on_own_records(),
        "rustls hands the session over to our record layer"
    );
    assert!(server.up.delivered.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few inputs from a fixed generator, through both targets:
    /// the harness itself holds up (the fuzz runs are in scripts/fuzz.sh).
    #[test]
    fn the_targets_run_on_generated_inputs() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..200 {
            let len = (next() % 600) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(first) = data.first_mut() {
                *first = i as u8;
            }
            tls_records(&data);
            tls_differential(&data);
        }
    }

    /// The inputs with which `tls_records` found bugs, as it found them.
    #[test]
    fn inputs_that_found_bugs() {
        // A TLS 1.3 record announcing more than a record may hold, its header
        // cut across two reads: after the error, the session stayed on our
        // record layer, which went on sealing (and would have opened what
        // followed).
        tls_records(&[
            0x00, 0xc4, 0xda, 0x01, 0x18, 0x30, 0xda, 0x01, 0x18, 0xda, 0x04, 0x04, 0x15, 0xc2,
            0x15, 0xc2, 0x96,
        ]);
        // TLS 1.2: a record whose version read 3,2 was opened (the version is
        // in the additional data, as 3,3).
        tls_records(&[0x06, 0x2a, 0x06, 0x06, 0x06, 0x00, 0x02, 0x00, 0x07, 0x00]);
        // A record whose header is cut (3 bytes, then 2) and whose body comes
        // in reads of 5550 bytes: the stash grew by doubling, to 22,220 bytes
        // for a record of 16,669 (found as a longer input; this one is made).
        tls_records(&[
            0x03, 0x00, 0xc8, 0x01, 0x07, 0x03, 0x07, 0x02, 0x07, 0x64, 0x07, 0x64, 0x07, 0x64,
            0x07, 0x64,
        ]);
        // A renegotiation attempt after our close_notify: not answered (no
        // record is sealed after it), which the model first expected.
        tls_records(&[0xfb, 0x04, 0x00, 0x28]);
    }

    #[test]
    fn every_suite_hands_over_with_either_certificate() {
        for suite in &SUITES {
            for cert in [Cert::Ecdsa, Cert::Rsa] {
                if suite.cert.is_some_and(|needed| needed != cert) {
                    continue;
                }
                let mut server = Server::new(cert);
                let mut client = client(suite, cert, |_| {});
                handshake(&mut server, &mut client);
                assert_eq!(
                    client.negotiated_cipher_suite().map(|s| s.suite()),
                    Some(suite.suite)
                );
            }
        }
    }
}
