//! `wss://`: the client side of TLS on the load generator's non-blocking
//! sockets, with rustls's buffered `ClientConnection` (the server is what is
//! measured; the client only has to keep up).

use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use ringws::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use ringws::rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use ringws::rustls::pki_types::pem::PemObject;
use ringws::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use ringws::rustls::{self, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};

/// How a `wss://` target is reached.
#[derive(Debug, Clone)]
pub struct TlsTarget {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

impl TlsTarget {
    pub fn connection(&self) -> io::Result<ClientConnection> {
        let mut conn = ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(io::Error::other)?;
        // The connection's own send queue bounds what is written.
        conn.set_buffer_limit(None);
        Ok(conn)
    }
}

/// rustls's ring provider with AES-128-GCM offered first, as Chrome, Firefox
/// and Safari offer it (rustls's default puts AES-256-GCM first): the server
/// follows the client's order, so a run negotiates what browser traffic does.
/// The stable sort keeps the order of the rest.
fn provider() -> Arc<CryptoProvider> {
    use rustls::CipherSuite::{
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS13_AES_128_GCM_SHA256,
    };
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            TLS13_AES_128_GCM_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(provider)
}

/// The client configuration: trust `ca` (a PEM file), or nothing at all with
/// `insecure` (any certificate is accepted: for self-signed test servers);
/// with `resume`, connections resume earlier sessions (TLS 1.3 tickets, 1.2
/// session ids) where the server allows. ALPN offers `h2` alone with
/// `http2` (`--http2`: a server that picks otherwise fails), else `http/1.1`.
pub fn client_config(
    insecure: bool,
    ca: Option<&str>,
    resume: bool,
    http2: bool,
) -> Result<Arc<ClientConfig>, Box<dyn std::error::Error>> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let mut config = match (insecure, ca) {
        (true, _) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
            .with_no_client_auth(),
        (false, Some(path)) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("{path}: {e}"))? {
                roots.add(cert.map_err(|e| format!("{path}: {e}"))?)?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        (false, None) => {
            return Err("wss:// needs --ca FILE (the server's CA, PEM) or --insecure".into());
        }
    };
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    // Full handshakes unless asked: the connections of a run share this
    // configuration, and with it rustls's session cache.
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// Accepts any server certificate (signatures are still checked, so the
/// handshake does all of its work).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Reads plaintext: ciphertext from the socket goes through rustls (whose
/// handshake replies are written at once). `Ok(0)` is the end of the stream.
pub fn read(
    tls: &mut ClientConnection,
    stream: &mut TcpStream,
    buf: &mut [u8],
) -> io::Result<usize> {
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if tls.read_tls(stream)? == 0 {
            return Ok(0);
        }
        tls.process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        flush(tls, stream)?;
    }
}

/// Takes plaintext to send (all of it: rustls buffers what the socket does not
/// take yet) and writes what ciphertext the socket takes.
pub fn write(tls: &mut ClientConnection, stream: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    tls.writer().write_all(data)?;
    flush(tls, stream)?;
    Ok(data.len())
}

/// Writes pending ciphertext until the socket is full.
pub fn flush(tls: &mut ClientConnection, stream: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
