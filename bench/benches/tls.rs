//! rustls in memory, server side: the buffered `ServerConnection` against the
//! unbuffered `UnbufferedServerConnection` (the one the engine uses), for a
//! full TLS 1.3 handshake and for echoing 20 B and 16 KiB messages (client
//! encrypts, server decrypts and encrypts the echo, client decrypts), with the
//! ring provider, and with aws-lc-rs when built with `--features aws-lc`.
//!
//! ```text
//! cargo bench -p ringws-bench --bench tls [--features aws-lc]
//! ```

use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringws::rustls::crypto::CryptoProvider;
use ringws::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use ringws::rustls::server::UnbufferedServerConnection;
use ringws::rustls::unbuffered::ConnectionState;
use ringws::rustls::{
    self, ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection,
};

fn providers() -> Vec<(&'static str, Arc<CryptoProvider>)> {
    #[allow(unused_mut)]
    let mut list = vec![("ring", Arc::new(rustls::crypto::ring::default_provider()))];
    #[cfg(feature = "aws-lc")]
    list.push((
        "aws-lc-rs",
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    ));
    list
}

fn configs(provider: &Arc<CryptoProvider>) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = CertificateDer::from(pair.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pair.key_pair.serialize_der()));
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

fn client(config: &Arc<ClientConfig>) -> ClientConnection {
    ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap()).unwrap()
}

fn client_out(client: &mut ClientConnection, out: &mut Vec<u8>) {
    out.clear();
    while client.wants_write() {
        client.write_tls(out).unwrap();
    }
}

fn client_in(client: &mut ClientConnection, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        client.read_tls(&mut bytes).unwrap();
        client.process_new_packets().unwrap();
    }
}

/// The buffered server: ciphertext copied into rustls, plaintext read out.
struct Buffered(ServerConnection);

impl Buffered {
    fn receive(&mut self, mut bytes: &[u8], plain: &mut Vec<u8>, out: &mut Vec<u8>) {
        while !bytes.is_empty() {
            self.0.read_tls(&mut bytes).unwrap();
            self.0.process_new_packets().unwrap();
        }
        let _ = self.0.reader().read_to_end(plain);
        while self.0.wants_write() {
            self.0.write_tls(out).unwrap();
        }
    }

    fn send(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        self.0.writer().write_all(plain).unwrap();
        while self.0.wants_write() {
            self.0.write_tls(out).unwrap();
        }
    }
}

/// The unbuffered server: records processed where they lie, encrypted
/// straight into the caller's buffer (as `transport::tls::session` does).
struct Unbuffered(UnbufferedServerConnection);

impl Unbuffered {
    fn receive(&mut self, bytes: &mut [u8], plain: &mut Vec<u8>, out: &mut Vec<u8>) {
        let mut used = 0;
        loop {
            let status = self.0.process_tls_records(&mut bytes[used..]);
            let mut discard = status.discard;
            match status.state.unwrap() {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.unwrap();
                        discard += record.discard;
                        plain.extend_from_slice(record.payload);
                    }
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    let start = out.len();
                    out.resize(start + 8192, 0);
                    let n = encode.encode(&mut out[start..]).unwrap();
                    out.truncate(start + n);
                }
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                _ => {
                    used += discard;
                    debug_assert_eq!(used, bytes.len());
                    return;
                }
            }
            used += discard;
        }
    }

    fn send(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        match self.0.process_tls_records(&mut []).state.unwrap() {
            ConnectionState::WriteTraffic(mut traffic) => {
                let start = out.len();
                out.resize(
                    start + plain.len() + 64 * plain.len().div_ceil(16 << 10).max(1),
                    0,
                );
                let n = traffic.encrypt(plain, &mut out[start..]).unwrap();
                out.truncate(start + n);
            }
            other => panic!("not writable: {other:?}"),
        }
    }
}

/// Runs a handshake between `client` and a server `receive` function.
fn handshake(client: &mut ClientConnection, mut receive: impl FnMut(&mut [u8], &mut Vec<u8>)) {
    let mut to_server = Vec::new();
    let mut to_client = Vec::new();
    while client.is_handshaking() || client.wants_write() {
        client_out(client, &mut to_server);
        to_client.clear();
        receive(&mut to_server, &mut to_client);
        client_in(client, &to_client);
        if to_server.is_empty() && to_client.is_empty() {
            break;
        }
    }
}

fn tls(c: &mut Criterion) {
    let mut group = c.benchmark_group("tls");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for (name, provider) in providers() {
        let (server_config, client_config) = configs(&provider);
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("handshake/buffered/{name}"), |b| {
            b.iter(|| {
                let mut server = Buffered(ServerConnection::new(server_config.clone()).unwrap());
                let mut c = client(&client_config);
                let mut plain = Vec::new();
                handshake(&mut c, |bytes, out| server.receive(bytes, &mut plain, out));
                black_box(server.0.is_handshaking())
            })
        });
        group.bench_function(format!("handshake/unbuffered/{name}"), |b| {
            b.iter(|| {
                let mut server =
                    Unbuffered(UnbufferedServerConnection::new(server_config.clone()).unwrap());
                let mut c = client(&client_config);
                let mut plain = Vec::new();
                handshake(&mut c, |bytes, out| server.receive(bytes, &mut plain, out));
                black_box(c.is_handshaking())
            })
        });
        for size in [20usize, 16 << 10] {
            let message = vec![0x5a; size];
            group.throughput(Throughput::Bytes(size as u64));
            let mut c = client(&client_config);
            let mut server = Buffered(ServerConnection::new(server_config.clone()).unwrap());
            let (mut plain, mut wire, mut out) = (Vec::new(), Vec::new(), Vec::new());
            handshake(&mut c, |bytes, out| server.receive(bytes, &mut plain, out));
            group.bench_function(format!("echo_{size}/buffered/{name}"), |b| {
                b.iter(|| {
                    c.writer().write_all(&message).unwrap();
                    client_out(&mut c, &mut wire);
                    plain.clear();
                    out.clear();
                    server.receive(&wire, &mut plain, &mut out);
                    server.send(&plain, &mut out);
                    client_in(&mut c, &out);
                    let mut echoed = [0u8; 16 << 10];
                    black_box(c.reader().read(&mut echoed).unwrap())
                })
            });
            let mut c = client(&client_config);
            let mut server =
                Unbuffered(UnbufferedServerConnection::new(server_config.clone()).unwrap());
            handshake(&mut c, |bytes, out| server.receive(bytes, &mut plain, out));
            group.bench_function(format!("echo_{size}/unbuffered/{name}"), |b| {
                b.iter(|| {
                    c.writer().write_all(&message).unwrap();
                    client_out(&mut c, &mut wire);
                    plain.clear();
                    out.clear();
                    server.receive(&mut wire, &mut plain, &mut out);
                    server.send(&plain, &mut out);
                    client_in(&mut c, &out);
                    let mut echoed = [0u8; 16 << 10];
                    black_box(c.reader().read(&mut echoed).unwrap())
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, tls);
criterion_main!(benches);
