//! How the tests' connections travel: plain TCP or TLS. [`crate::backend_tests!`]
//! runs each test once per transport; [`crate::start`] then binds a TLS
//! listener with the test PKI's certificate, and every client helper
//! ([`crate::Client`], [`crate::tcp`], [`crate::raw_http`], ...) connects with
//! TLS to the addresses of such servers, from any thread. Certificates are made
//! when the tests run (rcgen), so nothing committed can expire.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use ringws::TlsConfig;
use ringws::rustls::pki_types::{CertificateDer, ServerName};
use ringws::rustls::{self, ClientConfig, ClientConnection, RootCertStore};

use crate::TIMEOUT;

/// The transport of a test's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `ws://`: plain TCP.
    Plain,
    /// `wss://`: TLS (1.3 by default) with the test PKI.
    Tls,
}

thread_local! {
    static TRANSPORT: Cell<Transport> = const { Cell::new(Transport::Plain) };
}

/// Runs `test` with servers started by [`crate::start`] on this thread using
/// `transport`.
pub fn with_transport<T>(transport: Transport, test: impl FnOnce() -> T) -> T {
    let before = TRANSPORT.with(|t| t.replace(transport));
    let result = test();
    TRANSPORT.with(|t| t.set(before));
    result
}

/// The transport servers started on this thread use.
pub fn transport() -> Transport {
    TRANSPORT.with(Cell::get)
}

/// Addresses of running test servers that speak TLS.
static TLS_ADDRS: Mutex<Vec<SocketAddr>> = Mutex::new(Vec::new());

pub(crate) fn register_tls(addrs: &[SocketAddr]) {
    lock(&TLS_ADDRS).extend_from_slice(addrs);
}

pub(crate) fn unregister_tls(addrs: &[SocketAddr]) {
    lock(&TLS_ADDRS).retain(|a| !addrs.contains(a));
}

/// Whether `addr` is a running test server's TLS listener.
pub fn speaks_tls(addr: SocketAddr) -> bool {
    lock(&TLS_ADDRS).contains(&addr)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A certificate authority made for this test run, and what it issued.
pub struct Pki {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    /// The server configuration [`crate::start`] uses: [`Self::server_cert`].
    pub server: TlsConfig,
    /// The certificate for `localhost` and `127.0.0.1` test servers serve.
    pub server_cert: Issued,
    /// A client configuration that trusts the CA (TLS 1.3 and 1.2, ALPN
    /// `http/1.1`).
    pub client: Arc<ClientConfig>,
    /// The same, offering ALPN `h2` only (HTTP/2 clients, [`Stream::connect_h2`]).
    pub client_h2: Arc<ClientConfig>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

/// A certificate chain and key in PEM, and the leaf's DER.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
    /// The leaf certificate, DER (to compare with what a client was shown).
    pub der: Vec<u8>,
}

impl Issued {
    /// A server configuration serving this certificate.
    pub fn config(&self) -> TlsConfig {
        TlsConfig::from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
            .expect("a valid certificate")
    }
}

impl Pki {
    fn new() -> Self {
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "ringws test CA");
        let ca = params.self_signed(&ca_key).expect("the CA certificate");
        let server_cert = issue(&ca, &ca_key, &["localhost", "127.0.0.1"], "ringws test");
        let client = Arc::new(client_config(roots(&ca), None));
        let client_h2 = Arc::new(with_alpn(client_config(roots(&ca), None), &[b"h2"]));
        Self {
            ca,
            ca_key,
            server: server_cert.config(),
            server_cert,
            client,
            client_h2,
        }
    }

    /// The CA's certificate in PEM, for clients outside this process (a
    /// Python client's `cafile`).
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A client configuration trusting the CA that offers these ALPN
    /// protocols (none: no ALPN extension).
    pub fn client_alpn(&self, protocols: &[&[u8]]) -> Arc<ClientConfig> {
        Arc::new(with_alpn(client_config(roots(&self.ca), None), protocols))
    }

    /// A certificate for these names (DNS names or IP addresses), signed by
    /// the CA; `label` goes into its common name, so two issues differ.
    pub fn issue(&self, names: &[&str], label: &str) -> Issued {
        issue(&self.ca, &self.ca_key, names, label)
    }

    /// A client configuration trusting the CA, limited to `version` if given.
    pub fn client_with(
        &self,
        version: Option<&'static rustls::SupportedProtocolVersion>,
    ) -> Arc<ClientConfig> {
        Arc::new(client_config(roots(&self.ca), version))
    }
}

fn roots(ca: &rcgen::Certificate) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone()).expect("the CA is a valid root");
    roots
}

fn issue(ca: &rcgen::Certificate, ca_key: &KeyPair, names: &[&str], label: &str) -> Issued {
    let key = KeyPair::generate().expect("a key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = names
        .iter()
        .map(|name| match name.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*name).try_into().expect("a DNS name")),
        })
        .collect();
    params.distinguished_name.push(DnType::CommonName, label);
    let cert = params
        .signed_by(&key, ca, ca_key)
        .expect("a signed certificate");
    Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

fn client_config(
    roots: RootCertStore,
    version: Option<&'static rustls::SupportedProtocolVersion>,
) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match version {
        Some(v) => vec![v],
        None => vec![&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .expect("supported versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

fn with_alpn(mut config: ClientConfig, protocols: &[&[u8]]) -> ClientConfig {
    config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
    config
}

/// The test run's PKI, made on first use.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(Pki::new)
}

/// A client connection, plain or TLS, read and written through `&Stream` like
/// a `&TcpStream`. Reads and writes have [`TIMEOUT`].
pub struct Stream {
    tcp: TcpStream,
    /// Shared with the stream's clones ([`Stream::try_clone`]); never locked
    /// across a blocking read.
    tls: Option<Arc<Mutex<TlsState>>>,
}

/// A TLS stream's session and the ciphertext read but not yet taken by it.
struct TlsState {
    conn: ClientConnection,
    cipher: Vec<u8>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("tcp", &self.tcp)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Stream {
    /// Connects to `addr`: with TLS (handshake completed) if it is a test
    /// server's TLS listener, else plain.
    pub fn connect(addr: SocketAddr) -> io::Result<Stream> {
        if speaks_tls(addr) {
            Self::connect_tls(addr, pki().client.clone(), "localhost")
        } else {
            Ok(Stream {
                tcp: tcp_stream(addr)?,
                tls: None,
            })
        }
    }

    /// Connects for HTTP/2: with TLS offering ALPN `h2` only (and checks the
    /// server chose it) if `addr` is a test server's TLS listener, else plain
    /// (for a listener taking HTTP/2 by prior knowledge).
    pub fn connect_h2(addr: SocketAddr) -> io::Result<Stream> {
        if !speaks_tls(addr) {
            return Self::connect(addr);
        }
        let stream = Self::connect_tls(addr, pki().client_h2.clone(), "localhost")?;
        match stream.alpn_protocol() {
            Some(p) if p == b"h2" => Ok(stream),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the server chose ALPN {:?}, not h2",
                    other.map(|p| String::from_utf8_lossy(&p).into_owned())
                ),
            )),
        }
    }

    /// Connects with TLS using `config`, asking for `server_name` (SNI), and
    /// completes the handshake.
    pub fn connect_tls(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        server_name: &str,
    ) -> io::Result<Stream> {
        let tcp = tcp_stream(addr)?;
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        Self::from_tls_parts(tcp, conn)
    }

    /// A TLS stream over `tcp` for `conn`, whose handshake is completed here
    /// (the test may have written its first flight itself, cut into records
    /// as it likes).
    pub fn from_tls_parts(tcp: TcpStream, mut conn: ClientConnection) -> io::Result<Stream> {
        // Tests send messages of many MiB in one write.
        conn.set_buffer_limit(None);
        while conn.is_handshaking() {
            conn.complete_io(&mut &tcp)?;
        }
        Ok(Stream {
            tcp,
            tls: Some(Arc::new(Mutex::new(TlsState {
                conn,
                cipher: Vec::new(),
            }))),
        })
    }

    /// A second handle on the same connection (for a writer thread).
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(Stream {
            tcp: self.tcp.try_clone()?,
            tls: self.tls.clone(),
        })
    }

    /// Wraps a plain TCP stream.
    pub fn plain(tcp: TcpStream) -> Stream {
        Stream { tcp, tls: None }
    }

    /// The socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Whether this is a TLS connection.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A TCP half-close (or full shutdown), without close_notify: what
    /// `TcpStream::shutdown` does on a plain connection.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.tcp.shutdown(how)
    }

    /// Sends TLS close_notify (nothing on a plain connection).
    pub fn close_notify(&self) -> io::Result<()> {
        if let Some(tls) = &self.tls {
            let conn = &mut lock(tls).conn;
            conn.send_close_notify();
            while conn.wants_write() {
                conn.write_tls(&mut &self.tcp)?;
            }
        }
        Ok(())
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Sets the read timeout.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp.set_read_timeout(timeout)
    }

    /// The server's leaf certificate (TLS only).
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        let tls = self.tls.as_ref()?;
        let state = lock(tls);
        state
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c: &CertificateDer<'_>| c.to_vec())
    }

    /// The TLS version negotiated (TLS only).
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        lock(self.tls.as_ref()?).conn.protocol_version()
    }

    /// The ALPN protocol negotiated (TLS only).
    pub fn alpn_protocol(&self) -> Option<Vec<u8>> {
        lock(self.tls.as_ref()?)
            .conn
            .alpn_protocol()
            .map(<[u8]>::to_vec)
    }

    /// `plaintext` as TLS records, encrypted but not sent (TLS only): for tests
    /// that cut a record or send it in pieces.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let conn = &mut lock(self.tls.as_ref().expect("a TLS stream")).conn;
        conn.writer().write_all(plaintext).expect("buffered");
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).expect("into memory");
        }
        out
    }

    /// Asks the server for a KeyUpdate (TLS 1.3 KeyUpdate with
    /// update_requested, moving our own key): queued, it goes out first with
    /// the next [`Self::seal`] or write (TLS only).
    pub fn request_key_update(&self) -> io::Result<()> {
        let conn = &mut lock(self.tls.as_ref().expect("a TLS stream")).conn;
        conn.refresh_traffic_keys()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }

    /// Whether the server's close_notify has been read (TLS only): after the
    /// stream read its end, a clean TLS end rather than a bare FIN.
    pub fn received_close_notify(&self) -> bool {
        let conn = &mut lock(self.tls.as_ref().expect("a TLS stream")).conn;
        matches!(conn.reader().read(&mut [0u8; 1]), Ok(0))
    }

    /// Aborts with a TCP RST (SO_LINGER 0, then close).
    pub fn reset(self) {
        let _ = socket2::SockRef::from(&self.tcp).set_linger(Some(Duration::ZERO));
        drop(self);
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return (&self.tcp).read(buf);
        };
        loop {
            {
                let mut state = lock(tls);
                let TlsState { conn, cipher } = &mut *state;
                loop {
                    match conn.reader().read(buf) {
                        Ok(n) => return Ok(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                    if cipher.is_empty() {
                        break;
                    }
                    // rustls takes ciphertext while its plaintext buffer has room.
                    let mut rest = &cipher[..];
                    let took = conn.read_tls(&mut rest)?;
                    let used = cipher.len() - rest.len();
                    cipher.drain(..used);
                    if took == 0 {
                        // close_notify came: nothing more is read.
                        cipher.clear();
                    }
                    conn.process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    while conn.wants_write() {
                        conn.write_tls(&mut &self.tcp)?;
                    }
                }
            }
            // Nothing to decrypt: read ciphertext without holding the lock.
            let mut more = vec![0u8; 16 << 10];
            let n = (&self.tcp).read(&mut more)?;
            if n == 0 {
                return Ok(0);
            }
            lock(tls).cipher.extend_from_slice(&more[..n]);
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return (&self.tcp).write(buf);
        };
        let conn = &mut lock(tls).conn;
        conn.writer().write_all(buf)?;
        while conn.wants_write() {
            conn.write_tls(&mut &self.tcp)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self).flush()
    }
}

fn tcp_stream(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}
