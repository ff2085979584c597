//! The certificates of a server's TLS listeners ([`TlsConfig`]): from PEM files,
//! PEM bytes, several names by SNI ([`SniBuilder`]), or a `rustls::ServerConfig`
//! built by the application. TLS 1.3 and 1.2, ALPN `http/1.1`. The TLS state of
//! each connection lives in the runtime (`runtime::tls`).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a [`TlsConfig`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A PEM file could not be read or parsed.
    #[error("{what}: {message}")]
    Pem {
        /// Which input (a path, or "certificate chain" / "private key").
        what: String,
        /// What went wrong.
        message: String,
    },
    /// The certificate chain is empty.
    #[error("{0}: no certificate in the chain")]
    NoCertificate(String),
    /// rustls refused the key or the configuration.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// An SNI configuration without any certificate.
    #[error("no certificate configured")]
    Empty,
}

/// The TLS settings of a server's TLS listeners (see
/// [`crate::Builder::bind_tls`] and [`crate::ServerHandle::reload_tls`]).
///
/// Made from PEM ([`Self::from_pem_files`], [`Self::from_pem`]), from several
/// certificates chosen by the name the client asks for ([`Self::sni`]), or from
/// a `rustls::ServerConfig` ([`Self::from_rustls`], used as it is but for
/// secret extraction, turned on: set its ALPN to `http/1.1` if the clients
/// offer ALPN, with `h2` first for HTTP/2). The first three offer TLS 1.3 and
/// 1.2 with the `ring` provider, ALPN `h2` (unless [`crate::Http2::tls`] is
/// off) then `http/1.1`, and session resumption by rustls's defaults (a
/// session cache and TLS 1.3 tickets). rustls runs the handshake; the engine's
/// own record layer runs the session after it.
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) server: Arc<rustls::ServerConfig>,
    /// The ALPN list is the engine's own (`http/1.1`), to which the server
    /// adds `h2` when HTTP/2 is on; an application's list is left as it is.
    own_alpn: bool,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn", &self.server.alpn_protocols)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// One certificate chain and its private key, from PEM files (the chain:
    /// the leaf first, then intermediates; the key: PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsConfigError> {
        let certified = load_files(cert_chain.as_ref(), key.as_ref())?;
        Self::with_resolver(Arc::new(Single(certified)))
    }

    /// One certificate chain and its private key, from PEM text.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Self, TlsConfigError> {
        let certified = load_pem(cert_chain, key)?;
        Self::with_resolver(Arc::new(Single(certified)))
    }

    /// Several certificates, chosen by the server name the client sends (SNI).
    pub fn sni() -> SniBuilder {
        SniBuilder::default()
    }

    /// A configuration built by the application, used as it is but for three
    /// settings, changed in a copy when they differ: `enable_secret_extraction`
    /// is turned on, because after the handshake rustls hands the traffic
    /// secrets to the engine's own record layer (ring's AEADs, sealing and
    /// opening in place; rustls's record layer is not used after the
    /// handshake); `max_early_data_size` is set to 0 and `send_half_rtt_data`
    /// to false, because 0-RTT data and data sent before the client's Finished
    /// would bypass that hand-over (and 0-RTT is replayable). A session on a
    /// suite whose keys rustls does not export (outside AES-GCM and
    /// ChaCha20-Poly1305) stays on rustls's record layer.
    pub fn from_rustls(config: impl Into<Arc<rustls::ServerConfig>>) -> Self {
        let mut server = config.into();
        if !server.enable_secret_extraction
            || server.max_early_data_size != 0
            || server.send_half_rtt_data
        {
            let server = Arc::make_mut(&mut server);
            server.enable_secret_extraction = true;
            server.max_early_data_size = 0;
            server.send_half_rtt_data = false;
        }
        Self {
            server,
            own_alpn: false,
        }
    }

    /// The rustls configuration new handshakes use.
    pub fn rustls(&self) -> &Arc<rustls::ServerConfig> {
        &self.server
    }

    fn with_resolver(resolver: Arc<dyn ResolvesServerCert>) -> Result<Self, TlsConfigError> {
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        // After the handshake the engine's own record layer takes the session
        // over with the traffic secrets rustls exports.
        server.enable_secret_extraction = true;
        Ok(Self {
            server: Arc::new(server),
            own_alpn: true,
        })
    }
}

/// Builds a [`TlsConfig`] that serves several certificates by SNI, with an
/// optional fallback for clients that send no name (or an unknown one); without
/// a fallback those handshakes fail.
#[derive(Debug, Default)]
pub struct SniBuilder {
    names: HashMap<String, Arc<CertifiedKey>>,
    fallback: Option<Arc<CertifiedKey>>,
}

impl SniBuilder {
    /// Serves `name` (a DNS name, matched without regard to case) with this
    /// chain and key from PEM files.
    pub fn add_pem_files(
        mut self,
        name: &str,
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsConfigError> {
        let certified = load_files(cert_chain.as_ref(), key.as_ref())?;
        self.names.insert(name.to_ascii_lowercase(), certified);
        Ok(self)
    }

    /// Serves `name` with this chain and key from PEM text.
    pub fn add_pem(
        mut self,
        name: &str,
        cert_chain: &[u8],
        key: &[u8],
    ) -> Result<Self, TlsConfigError> {
        let certified = load_pem(cert_chain, key)?;
        self.names.insert(name.to_ascii_lowercase(), certified);
        Ok(self)
    }

    /// Serves clients without SNI, or with a name not added, with this chain and
    /// key from PEM text.
    pub fn fallback_pem(mut self, cert_chain: &[u8], key: &[u8]) -> Result<Self, TlsConfigError> {
        self.fallback = Some(load_pem(cert_chain, key)?);
        Ok(self)
    }

    /// The configuration.
    pub fn build(self) -> Result<TlsConfig, TlsConfigError> {
        if self.names.is_empty() && self.fallback.is_none() {
            return Err(TlsConfigError::Empty);
        }
        TlsConfig::with_resolver(Arc::new(ByName {
            names: self.names,
            fallback: self.fallback,
        }))
    }
}

/// The crypto provider of the configurations made here.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_files(cert_chain: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsConfigError> {
    let pem_error = |path: &Path, e: rustls::pki_types::pem::Error| TlsConfigError::Pem {
        what: path.display().to_string(),
        message: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(cert_chain)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(cert_chain, e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
    certify(chain, key_der, &cert_chain.display().to_string())
}

fn load_pem(cert_chain: &[u8], key: &[u8]) -> Result<Arc<CertifiedKey>, TlsConfigError> {
    let pem_error = |what: &str, e: rustls::pki_types::pem::Error| TlsConfigError::Pem {
        what: what.to_owned(),
        message: e.to_string(),
    };
    let chain = CertificateDer::pem_slice_iter(cert_chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("certificate chain", e))?;
    let key_der = PrivateKeyDer::from_pem_slice(key).map_err(|e| pem_error("private key", e))?;
    certify(chain, key_der, "certificate chain")
}

/// Pairs a chain with its signing key, refusing a key that does not match the
/// leaf certificate.
fn certify(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    what: &str,
) -> Result<Arc<CertifiedKey>, TlsConfigError> {
    if chain.is_empty() {
        return Err(TlsConfigError::NoCertificate(what.to_owned()));
    }
    let signing = provider().key_provider.load_private_key(key)?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match()?;
    Ok(Arc::new(certified))
}

/// One certificate for every handshake.
#[derive(Debug)]
struct Single(Arc<CertifiedKey>);

impl ResolvesServerCert for Single {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A certificate per server name, and one for the rest.
#[derive(Debug)]
struct ByName {
    names: HashMap<String, Arc<CertifiedKey>>,
    fallback: Option<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ByName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.names.get(&name.to_ascii_lowercase()))
            .or(self.fallback.as_ref())
            .cloned()
    }
}

/// The configuration new TLS handshakes of a server use, shared by its workers
/// and its handle; [`crate::ServerHandle::reload_tls`] replaces it, and each
/// accepted connection reads it once (connections keep the one they started
/// with).
#[derive(Debug)]
pub(crate) struct TlsConfigCell {
    current: RwLock<Arc<rustls::ServerConfig>>,
    /// HTTP/2 is offered by ALPN (`h2` before `http/1.1`) on the engine's own
    /// configurations.
    h2: bool,
}

impl TlsConfigCell {
    pub fn new(config: &TlsConfig, h2: bool) -> Self {
        Self {
            current: RwLock::new(Self::served(config, h2)),
            h2,
        }
    }

    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn replace(&self, config: &TlsConfig) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Self::served(config, self.h2);
    }

    /// The rustls configuration handshakes use: with `h2` first in the ALPN
    /// list where the list is the engine's and HTTP/2 is on.
    fn served(config: &TlsConfig, h2: bool) -> Arc<rustls::ServerConfig> {
        let mut server = config.server.clone();
        if h2 && config.own_alpn {
            Arc::make_mut(&mut server).alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        server
    }
}
