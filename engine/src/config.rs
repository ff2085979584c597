//! Server configuration: every limit has a documented default and a setter, and
//! an invalid combination is an error when the server is built, not a panic.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::proto::handshake::HandshakeLimits;
use crate::transport::tls::TlsConfig;
use crate::types::RateLimit;

/// Which kernel interface the workers use for I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// io_uring where it is available (and has every operation the backend
    /// uses), epoll otherwise, with one log line saying why.
    #[default]
    Auto,
    /// io_uring; building the server fails where it is unavailable.
    IoUring,
    /// epoll, through mio.
    Epoll,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::IoUring => "io_uring",
            Self::Epoll => "epoll",
        })
    }
}

impl BackendKind {
    /// Environment variable that overrides the configured backend
    /// (`auto`, `io_uring` or `epoll`), for benchmarks and tests.
    pub const ENV: &'static str = "RINGWS_BACKEND";

    /// Parses `auto`, `io_uring` (or `io-uring`, `uring`) and `epoll`.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(Self::Auto),
            "io_uring" | "io-uring" | "uring" => Some(Self::IoUring),
            "epoll" => Some(Self::Epoll),
            _ => None,
        }
    }
}

/// What happens when a send would push a connection's queue past
/// [`Config::max_backpressure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackpressurePolicy {
    /// Close the connection with 1008 (policy violation): a consumer that cannot
    /// keep up is cut off, and memory stays bounded.
    #[default]
    Close,
    /// Drop the message and report [`crate::SendStatus::Dropped`]; the
    /// connection stays open.
    Drop,
}

/// Whether a listener expects a PROXY protocol header (v1 or v2) before the
/// HTTP request, as load balancers send it (nginx `proxy_protocol on`, HAProxy
/// `send-proxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyMode {
    /// No header is read; a connection that sends one fails its handshake.
    #[default]
    Off,
    /// A trusted source may send a header; connections without one are served
    /// with their own address. A header from an untrusted source closes the
    /// connection.
    Optional,
    /// Every connection must come from a trusted source and start with a
    /// header; others are closed.
    Required,
}

/// A listener's PROXY protocol settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxyProtocol {
    /// Off, optional or required.
    pub mode: ProxyMode,
    /// The networks (the load balancers) whose headers are believed.
    pub trusted: Vec<ipnet::IpNet>,
}

impl ProxyProtocol {
    /// Whether `peer` may send a header: in a trusted network (an IPv4 peer
    /// seen on an IPv6 socket as `::ffff:a.b.c.d` counts as its IPv4 address).
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        let mapped = match peer {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4),
            std::net::IpAddr::V4(_) => None,
        };
        self.trusted
            .iter()
            .any(|net| net.contains(&peer) || mapped.is_some_and(|ip| net.contains(&ip)))
    }
}

/// permessage-deflate (RFC 7692), in the manner of uWebSockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeflateMode {
    /// Not offered: connections run uncompressed.
    #[default]
    Off,
    /// No context takeover in either direction: one compressor and one
    /// decompressor per worker, no compression state per connection between
    /// messages; a published message is compressed once per worker.
    Shared,
    /// Context takeover, a compressor and a decompressor per connection: better
    /// ratios, more memory per connection (the window is `1 << window_bits`
    /// bytes each way, plus zlib's own state).
    Dedicated {
        /// The server's LZ77 window, 9..=15.
        window_bits: u8,
    },
}

/// HTTP/2 (RFC 9113) on the listeners, so that WebSockets can ride it as
/// streams (RFC 8441, extended CONNECT) and plain routes answer over it: a
/// browser that loads a page over HTTP/2 opens its `wss://` WebSockets on the
/// same connection. The limits bound what one hostile connection can cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2 {
    /// Offered by ALPN on the TLS listeners (`h2`, then `http/1.1`) where the
    /// certificates' configuration is the engine's own ([`TlsConfig`] from PEM
    /// or SNI); an application's `rustls::ServerConfig` keeps its own ALPN
    /// list (with `h2` in it, HTTP/2 is served). Default on.
    pub tls: bool,
    /// Plain listeners take HTTP/2 by prior knowledge: a connection that
    /// starts with the HTTP/2 preface (after its PROXY header, if any) speaks
    /// HTTP/2 (`h2c`), for load balancers' hops. Default off.
    pub prior_knowledge: bool,
    /// Streams one connection may have open; beyond it a new stream is
    /// refused (RST_STREAM REFUSED_STREAM). Default 100.
    pub max_concurrent_streams: u32,
    /// Each stream's receive window: what a peer may send on one stream
    /// before we read it (a stream whose reading is paused by its rate limit
    /// holds at most this). Default 65,535.
    pub initial_window_size: u32,
    /// The connection's receive window (all streams together). Default 1 MiB.
    pub connection_window: u32,
    /// Largest header list a request may carry (RFC 9113 size: name, value
    /// and 32 per field). Default 16 KiB.
    pub max_header_list_size: u32,
    /// The HPACK dynamic table the peer may use for its requests. Default 4 KiB.
    pub header_table_size: u32,
    /// Streams reset (by the peer, or by us for its errors) per second, with
    /// as large a burst; past it the connection gets GOAWAY
    /// (ENHANCE_YOUR_CALM): the rapid-reset attack (CVE-2023-44487). Default 100.
    pub resets_per_second: u32,
    /// Frames that cost work and carry nothing (SETTINGS, PING, empty DATA,
    /// empty CONTINUATION, PRIORITY, WINDOW_UPDATE) per second, with as large
    /// a burst; past it GOAWAY (ENHANCE_YOUR_CALM). Default 1,000.
    pub control_frames_per_second: u32,
}

impl Default for Http2 {
    fn default() -> Self {
        Self {
            tls: true,
            prior_knowledge: false,
            max_concurrent_streams: 100,
            initial_window_size: 65_535,
            connection_window: 1 << 20,
            max_header_list_size: 16 << 10,
            header_table_size: 4096,
            resets_per_second: 100,
            control_frames_per_second: 1000,
        }
    }
}

impl Http2 {
    /// Whether any listener speaks HTTP/2.
    pub fn enabled(&self) -> bool {
        self.tls || self.prior_knowledge
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No address to bind.
    #[error("no bind address")]
    NoAddress,
    /// An address did not resolve.
    #[error("cannot resolve bind address {0:?}")]
    BadAddress(String),
    /// A value out of its range.
    #[error("{name} {problem}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// The server configuration. Built with [`crate::Server::builder`]; every field has
/// a setter there.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on (plain `ws://`); every worker listens on each
    /// with SO_REUSEPORT.
    pub addrs: Vec<SocketAddr>,
    /// The PROXY protocol settings of each address in [`Self::addrs`] (same
    /// index; missing entries are off). Default off.
    pub proxy: Vec<ProxyProtocol>,
    /// Addresses to listen on with TLS (`wss://`), after [`Self::addrs`].
    pub tls_addrs: Vec<SocketAddr>,
    /// The certificates of the TLS listeners (required with [`Self::tls_addrs`]).
    pub tls: Option<TlsConfig>,
    /// Worker threads. Default: the number of available cores.
    pub workers: usize,
    /// Pin worker `i` to core `i % cores`. Default off.
    pub pin_workers: bool,
    /// I/O backend. Default [`BackendKind::Auto`]; [`BackendKind::ENV`] overrides.
    pub backend: BackendKind,
    /// Listen backlog. Default 4096.
    pub backlog: i32,
    /// Handshake head size and header count. Default 8 KiB and 64 headers.
    pub handshake_limits: HandshakeLimits,
    /// Time allowed from accept to a complete upgrade request. Default 10 s.
    pub handshake_timeout: Duration,
    /// Largest frame payload. Default 16 MiB.
    pub max_frame_size: usize,
    /// Largest message (ws's `maxPayload`). Default 16 MiB.
    pub max_message_size: usize,
    /// Close a connection that received nothing for this long (1001, going
    /// away). Default: none (auto-ping detects dead peers instead).
    pub idle_timeout: Option<Duration>,
    /// Ping a connection that received nothing for this long. Default 30 s.
    pub ping_interval: Option<Duration>,
    /// After an auto-ping, wait this long for any frame before aborting the
    /// connection (reported as [`crate::CloseCause::Timeout`], code 1006: the peer
    /// is presumed dead, so no close frame is sent). Default 10 s.
    pub pong_timeout: Duration,
    /// Time the peer has to answer our close frame before the TCP connection is
    /// dropped. Default 5 s.
    pub close_timeout: Duration,
    /// Most bytes queued for sending per connection (kernel buffers excluded).
    /// Default 16 MiB + 1 MiB, so one maximal message always fits.
    pub max_backpressure: usize,
    /// What to do when a send exceeds [`Self::max_backpressure`]. Default close.
    pub backpressure_policy: BackpressurePolicy,
    /// Connections per worker; further accepts are closed at once. Default 1,000,000.
    pub max_connections_per_worker: usize,
    /// TLS handshakes a worker runs at once. A connection whose first bytes
    /// arrive past it waits, its bytes held and its reading paused, until a
    /// handshake ends (the handshake timeout still runs): rustls's state of a
    /// handshake in flight is a few KiB, so a storm of connections costs at
    /// most this many of them. Default 1024.
    pub max_tls_handshakes: usize,
    /// Upgrades a worker keeps waiting for a decision made later
    /// ([`crate::Upgrade::defer`]); past it a deferred request is answered
    /// 503. Each costs its request's copy and a slot until decided, timed
    /// out (the handshake timeout) or abandoned by the client. Default 1024.
    pub max_pending_upgrades: usize,
    /// Size of each worker's receive buffer. Default 64 KiB.
    pub recv_buffer_size: usize,
    /// Reads per connection per loop turn before others get their turn (epoll).
    /// Default 4.
    pub read_budget: u32,
    /// io_uring: size of each provided receive buffer. Default 256 KiB. Where
    /// the kernel consumes buffers incrementally (6.12+), small receives share
    /// a buffer, so buffers can be large without wasting them; a receive that
    /// reaches a buffer's end is cut there (a frame across two buffers is
    /// reassembled, a copy), so larger buffers cut fewer frames.
    pub uring_buffer_size: usize,
    /// io_uring: provided receive buffers per worker, a power of two up to 32768.
    /// Default 64 (16 MiB per worker with the default size, reserved: only the
    /// hot set the load uses becomes resident).
    pub uring_buffer_count: u16,
    /// io_uring: submission queue entries per worker ring. Default 4096.
    pub uring_entries: u32,
    /// permessage-deflate. Default off.
    pub deflate: DeflateMode,
    /// Messages shorter than this go uncompressed. Default 64 bytes.
    pub deflate_threshold: usize,
    /// Compression level, 0..=9. Default 1 (fastest that compresses).
    pub deflate_level: u32,
    /// The rate limit of every connection, unless `on_upgrade` chooses another
    /// ([`crate::Upgrade::rate_limit`]). Default none.
    pub rate_limit: RateLimit,
    /// The plain-HTTP path the server answers with its metrics (Prometheus text
    /// or OpenMetrics), before `on_http` sees it. Default none.
    pub metrics_route: Option<String>,
    /// [`crate::Server::run`] only: on SIGTERM or SIGINT, shut down as
    /// [`crate::ServerHandle::shutdown`] does, with this grace period. Default
    /// none (the signals do what the process's dispositions say).
    pub shutdown_on_signals: Option<Duration>,
    /// HTTP/2 and WebSockets over it (RFC 8441). Default: by ALPN on TLS
    /// listeners, not on plain ones.
    pub http2: Http2,
    /// Live restarts: hand the listeners and the open connections over to a
    /// new process ([`Handover`], `docs/HANDOVER.md`). Default off.
    pub handover: Option<Handover>,
}

/// Where and how two processes of the same server meet to hand connections
/// over ([`crate::Builder::handover`], `docs/HANDOVER.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The control socket: a filesystem path, or an abstract name (Linux)
    /// written with a leading `@`. The running process listens on it; a new
    /// one connects to it at start.
    pub socket: String,
    /// A file both processes read (and nobody else may): its bytes are the
    /// shared secret the new process proves it holds.
    pub nonce_file: std::path::PathBuf,
    /// How long the old process hands connections over; what is left then
    /// is closed with 1001 as a plain shutdown does. Default 10 s.
    pub deadline: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addrs: Vec::new(),
            proxy: Vec::new(),
            tls_addrs: Vec::new(),
            tls: None,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pin_workers: false,
            backend: BackendKind::Auto,
            backlog: 4096,
            handshake_limits: HandshakeLimits::DEFAULT,
            handshake_timeout: Duration::from_secs(10),
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            idle_timeout: None,
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            max_backpressure: (16 << 20) + (1 << 20),
            backpressure_policy: BackpressurePolicy::Close,
            max_connections_per_worker: 1_000_000,
            max_tls_handshakes: 1024,
            max_pending_upgrades: 1024,
            recv_buffer_size: 64 << 10,
            read_budget: 4,
            uring_buffer_size: 256 << 10,
            uring_buffer_count: 64,
            uring_entries: 4096,
            deflate: DeflateMode::Off,
            deflate_threshold: 64,
            deflate_level: 1,
            rate_limit: RateLimit::none(),
            metrics_route: None,
            shutdown_on_signals: None,
            http2: Http2::default(),
            handover: None,
        }
    }
}

impl Config {
    /// Checks every value; the server refuses to start on an error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn check(ok: bool, name: &'static str, problem: &'static str) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid { name, problem })
            }
        }
        if self.addrs.is_empty() && self.tls_addrs.is_empty() {
            return Err(ConfigError::NoAddress);
        }
        check(
            self.tls_addrs.is_empty() || self.tls.is_some(),
            "tls",
            "must be set for bind_tls addresses",
        )?;
        check(
            self.tls.is_none() || !self.tls_addrs.is_empty(),
            "tls",
            "is set but no address is bound with bind_tls",
        )?;
        check(
            (1..=256).contains(&self.workers),
            "workers",
            "must be 1 to 256",
        )?;
        check(self.backlog > 0, "backlog", "must be positive")?;
        check(
            self.handshake_limits.max_bytes >= 64,
            "max_handshake_bytes",
            "must be at least 64",
        )?;
        check(
            self.handshake_limits.max_headers >= 4,
            "max_headers",
            "must be at least 4",
        )?;
        check(
            !self.handshake_timeout.is_zero(),
            "handshake_timeout",
            "must be positive",
        )?;
        check(
            self.max_frame_size >= 125,
            "max_frame_size",
            "must be at least 125 bytes",
        )?;
        check(
            self.max_message_size >= 125,
            "max_message_size",
            "must be at least 125 bytes",
        )?;
        check(
            self.idle_timeout.is_none_or(|t| !t.is_zero()),
            "idle_timeout",
            "must be positive",
        )?;
        check(
            self.ping_interval.is_none_or(|t| !t.is_zero()),
            "ping_interval",
            "must be positive",
        )?;
        check(
            !self.pong_timeout.is_zero(),
            "pong_timeout",
            "must be positive",
        )?;
        check(
            !self.close_timeout.is_zero(),
            "close_timeout",
            "must be positive",
        )?;
        check(
            (1024..=(1 << 31)).contains(&self.max_backpressure),
            "max_backpressure",
            "must be 1 KiB to 2 GiB",
        )?;
        check(
            (1..=(1 << 24)).contains(&self.max_connections_per_worker),
            "max_connections_per_worker",
            "must be 1 to 16,777,216",
        )?;
        check(
            self.max_tls_handshakes > 0,
            "max_tls_handshakes",
            "must be positive",
        )?;
        check(
            self.max_pending_upgrades > 0,
            "max_pending_upgrades",
            "must be positive",
        )?;
        check(
            (4096..=(16 << 20)).contains(&self.recv_buffer_size),
            "recv_buffer_size",
            "must be 4 KiB to 16 MiB",
        )?;
        check(self.read_budget >= 1, "read_budget", "must be at least 1")?;
        check(
            (512..=(1 << 20)).contains(&self.uring_buffer_size),
            "uring_buffer_size",
            "must be 512 bytes to 1 MiB",
        )?;
        check(
            self.uring_buffer_count.is_power_of_two() && self.uring_buffer_count <= 32768,
            "uring_buffer_count",
            "must be a power of two up to 32768",
        )?;
        check(
            self.uring_entries.is_power_of_two() && (64..=32768).contains(&self.uring_entries),
            "uring_entries",
            "must be a power of two from 64 to 32768",
        )?;
        if let DeflateMode::Dedicated { window_bits } = self.deflate {
            check(
                (9..=15).contains(&window_bits),
                "deflate window_bits",
                "must be 9 to 15",
            )?;
        }
        check(self.deflate_level <= 9, "deflate_level", "must be 0 to 9")?;
        check(
            self.rate_limit.is_valid(),
            "rate_limit",
            "rates and bursts must be 1 to 2^40",
        )?;
        check(
            self.metrics_route
                .as_deref()
                .is_none_or(|p| p.starts_with('/') && !p.contains('?')),
            "metrics_route",
            "must be a path starting with / (no query)",
        )?;
        check(
            (1..=1 << 20).contains(&self.http2.max_concurrent_streams),
            "http2 max_concurrent_streams",
            "must be 1 to 1,048,576",
        )?;
        check(
            (1024..=(1 << 31) - 1).contains(&self.http2.initial_window_size)
                && (65_535..=(1 << 31) - 1).contains(&self.http2.connection_window),
            "http2 windows",
            "must be 1 KiB (65,535 for the connection) to 2^31-1",
        )?;
        check(
            (256..=1 << 20).contains(&self.http2.max_header_list_size)
                && self.http2.header_table_size <= 1 << 16,
            "http2 header limits",
            "must be 256 B to 1 MiB (the table at most 64 KiB)",
        )?;
        check(
            self.http2.resets_per_second > 0 && self.http2.control_frames_per_second > 0,
            "http2 budgets",
            "must be positive",
        )?;
        check(
            self.proxy.len() <= self.addrs.len(),
            "proxy_protocol",
            "names more listeners than there are addresses",
        )?;
        check(
            self.proxy
                .iter()
                .all(|p| p.mode == ProxyMode::Off || !p.trusted.is_empty()),
            "proxy_protocol",
            "needs at least one trusted network when on",
        )?;
        Ok(())
    }

    /// The backend after the [`BackendKind::ENV`] override.
    pub fn effective_backend(&self) -> BackendKind {
        std::env::var(BackendKind::ENV)
            .ok()
            .and_then(|v| BackendKind::parse(&v))
            .unwrap_or(self.backend)
    }

    /// Resolves and adds bind addresses, plain or TLS.
    pub(crate) fn add_addrs(
        &mut self,
        addr: impl ToSocketAddrs + std::fmt::Debug,
        tls: bool,
    ) -> Result<(), ConfigError> {
        let resolved = addr
            .to_socket_addrs()
            .map_err(|_| ConfigError::BadAddress(format!("{addr:?}")))?;
        let list = if tls {
            &mut self.tls_addrs
        } else {
            &mut self.addrs
        };
        let before = list.len();
        list.extend(resolved);
        if list.len() == before {
            return Err(ConfigError::BadAddress(format!("{addr:?}")));
        }
        Ok(())
    }

    /// The PROXY protocol settings of listener `index` (an index of [`Self::addrs`]).
    pub(crate) fn proxy_of(&self, index: usize) -> Option<&ProxyProtocol> {
        self.proxy.get(index).filter(|p| p.mode != ProxyMode::Off)
    }

    /// Every address to listen on: the plain ones, then the TLS ones. A
    /// worker's listener `i` is the `i`th of these.
    pub(crate) fn listen_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.addrs.iter().chain(&self.tls_addrs).copied()
    }

    /// Whether a worker's listener `index` (see [`Self::listen_addrs`]) speaks TLS.
    pub(crate) fn is_tls_listener(&self, index: usize) -> bool {
        index >= self.addrs.len()
    }

    /// The coarse timer tick: a quarter of the shortest timeout, within 10 ms..1 s.
    pub(crate) fn tick(&self) -> Duration {
        let shortest = [
            Some(self.handshake_timeout),
            self.idle_timeout,
            self.ping_interval,
            Some(self.pong_timeout),
            Some(self.close_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(Duration::from_secs(1));
        (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        Config {
            addrs: vec!["127.0.0.1:0".parse().unwrap()],
            ..Config::default()
        }
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = valid();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.max_message_size, 16 << 20);
        assert_eq!(c.handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.handshake_limits.max_bytes, 8192);
    }

    #[test]
    fn invalid_values_are_errors() {
        assert_eq!(Config::default().validate(), Err(ConfigError::NoAddress));
        type Breaks = fn(&mut Config);
        let cases: [(&str, Breaks); 8] = [
            ("workers", |c| c.workers = 0),
            ("handshake_timeout", |c| {
                c.handshake_timeout = Duration::ZERO
            }),
            ("max_frame_size", |c| c.max_frame_size = 10),
            ("ping_interval", |c| c.ping_interval = Some(Duration::ZERO)),
            ("max_backpressure", |c| c.max_backpressure = 0),
            ("max_connections_per_worker", |c| {
                c.max_connections_per_worker = 0
            }),
            ("max_tls_handshakes", |c| c.max_tls_handshakes = 0),
            ("max_pending_upgrades", |c| c.max_pending_upgrades = 0),
        ];
        for (name, breaks) in cases {
            let mut c = valid();
            breaks(&mut c);
            match c.validate() {
                Err(ConfigError::Invalid { name: n, .. }) => assert_eq!(n, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn tls_addresses_need_a_tls_config_and_the_reverse() {
        let mut c = Config::default();
        c.add_addrs("127.0.0.1:0", true).unwrap();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid { name: "tls", .. })
        ));
        let mut c = valid();
        let pem = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        c.tls = Some(
            TlsConfig::from_pem(
                pem.cert.pem().as_bytes(),
                pem.key_pair.serialize_pem().as_bytes(),
            )
            .unwrap(),
        );
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid { name: "tls", .. })
        ));
        c.add_addrs("127.0.0.1:0", true).unwrap();
        assert_eq!(c.validate(), Ok(()));
        assert!(!c.is_tls_listener(0));
        assert!(c.is_tls_listener(1));
    }

    #[test]
    fn backend_names_parse() {
        assert_eq!(BackendKind::parse("EPOLL"), Some(BackendKind::Epoll));
        assert_eq!(BackendKind::parse("io_uring"), Some(BackendKind::IoUring));
        assert_eq!(BackendKind::parse("auto"), Some(BackendKind::Auto));
        assert_eq!(BackendKind::parse("kqueue"), None);
    }

    #[test]
    fn tick_follows_the_shortest_timeout() {
        let mut c = valid();
        c.handshake_timeout = Duration::from_millis(200);
        assert_eq!(c.tick(), Duration::from_millis(50));
        c.handshake_timeout = Duration::from_millis(1);
        assert_eq!(c.tick(), Duration::from_millis(10));
    }
}
