//! [`Builder`]: a [`Server`]'s configuration, one setter per limit.

use std::sync::Arc;
use std::time::Duration;

use super::{BridgeSlot, Server};
use crate::config::{
    BackendKind, BackpressurePolicy, Config, ConfigError, DeflateMode, Http2, ProxyMode,
    ProxyProtocol,
};
use crate::runtime::bridge::Bridge;
use crate::transport::tls::TlsConfig;
use crate::types::RateLimit;

/// Sets up a [`Server`]; every limit has a setter and a documented default (see
/// [`Config`]).
#[derive(Debug, Default)]
pub struct Builder {
    config: Config,
    bridge: BridgeSlot,
    error: Option<ConfigError>,
    /// The addresses the last [`Builder::bind`] added, for
    /// [`Builder::proxy_protocol`].
    last_bind: std::ops::Range<usize>,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty => $field:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.config.$field = value;
                self
            }
        )*
    };
}

impl Builder {
    /// Adds an address to listen on (`"127.0.0.1:8080"`, `"[::1]:0"`, ...). Port 0
    /// picks a free port, shared by all workers.
    pub fn bind(mut self, addr: impl std::net::ToSocketAddrs + std::fmt::Debug) -> Self {
        let before = self.config.addrs.len();
        if let Err(e) = self.config.add_addrs(addr, false) {
            self.error.get_or_insert(e);
        }
        self.last_bind = before..self.config.addrs.len();
        self
    }

    /// The PROXY protocol on the address(es) of the last [`bind`](Self::bind):
    /// `mode`, believing headers only from the `trusted` networks (CIDRs such
    /// as `"10.0.0.0/8"` or `"::1/128"`; at least one when on). Plain
    /// listeners only: a [`bind_tls`](Self::bind_tls) listener reads no PROXY
    /// header (the header would come before the TLS stream).
    ///
    /// ```
    /// use ringws::{ProxyMode, Server};
    /// let server = Server::builder()
    ///     .bind("127.0.0.1:0")
    ///     .proxy_protocol(ProxyMode::Required, ["127.0.0.1/32"])
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(server.config().proxy[0].mode, ProxyMode::Required);
    /// ```
    pub fn proxy_protocol<I, S>(mut self, mode: ProxyMode, trusted: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut nets = Vec::new();
        for net in trusted {
            let text = net.as_ref();
            match text.parse::<ipnet::IpNet>() {
                Ok(net) => nets.push(net),
                // A bare address is a network of one.
                Err(_) => match text.parse::<std::net::IpAddr>() {
                    Ok(ip) => nets.push(ip.into()),
                    Err(_) => {
                        self.error
                            .get_or_insert(ConfigError::BadAddress(format!("{text:?}")));
                    }
                },
            }
        }
        if self.config.proxy.len() < self.config.addrs.len() {
            self.config
                .proxy
                .resize(self.config.addrs.len(), ProxyProtocol::default());
        }
        for index in self.last_bind.clone() {
            self.config.proxy[index] = ProxyProtocol {
                mode,
                trusted: nets.clone(),
            };
        }
        self
    }

    /// Serves the server's metrics at this plain-HTTP path (e.g. `"/metrics"`),
    /// before `on_http` sees the request: Prometheus text, or OpenMetrics when
    /// the `Accept` header asks for it. See [`ServerHandle::metrics`].
    ///
    /// [`ServerHandle::metrics`]: crate::ServerHandle::metrics
    pub fn metrics_route(mut self, path: &str) -> Self {
        self.config.metrics_route = Some(path.to_owned());
        self
    }

    /// The rate limit of every connection (default none); `on_upgrade` may
    /// choose another per connection with [`crate::Upgrade::rate_limit`].
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.config.rate_limit = limit;
        self
    }

    /// Adds an address to listen on with TLS (`wss://`), served with the
    /// certificates of [`Self::tls`]. One server can have plain and TLS
    /// listeners (`bind("[::]:80")` and `bind_tls("[::]:443")`).
    pub fn bind_tls(mut self, addr: impl std::net::ToSocketAddrs + std::fmt::Debug) -> Self {
        if let Err(e) = self.config.add_addrs(addr, true) {
            self.error.get_or_insert(e);
        }
        self
    }

    /// The certificates of the [`Self::bind_tls`] listeners; replaceable while
    /// running with [`ServerHandle::reload_tls`].
    ///
    /// [`ServerHandle::reload_tls`]: crate::ServerHandle::reload_tls
    pub fn tls(mut self, config: TlsConfig) -> Self {
        self.config.tls = Some(config);
        self
    }

    setters! {
        /// Worker threads (default: available cores).
        workers: usize => workers;
        /// Pin worker `i` to core `i` (default off).
        pin_workers: bool => pin_workers;
        /// The I/O backend (default auto; `RINGWS_BACKEND` overrides).
        backend: BackendKind => backend;
        /// Listen backlog (default 4096).
        backlog: i32 => backlog;
        /// Time allowed for the upgrade request (default 10 s).
        handshake_timeout: Duration => handshake_timeout;
        /// Largest frame payload (default 16 MiB).
        max_frame_size: usize => max_frame_size;
        /// Largest message (default 16 MiB).
        max_message_size: usize => max_message_size;
        /// Close after this long without a received byte (default none).
        idle_timeout: Option<Duration> => idle_timeout;
        /// Ping after this long without a received byte (default 30 s).
        ping_interval: Option<Duration> => ping_interval;
        /// Abort when nothing arrives this long after an auto-ping (default 10 s).
        pong_timeout: Duration => pong_timeout;
        /// Wait this long for the peer's close reply (default 5 s).
        close_timeout: Duration => close_timeout;
        /// Most bytes queued per connection (default 17 MiB).
        max_backpressure: usize => max_backpressure;
        /// What to do past `max_backpressure` (default close with 1008).
        backpressure_policy: BackpressurePolicy => backpressure_policy;
        /// Connections per worker (default 1,000,000).
        max_connections_per_worker: usize => max_connections_per_worker;
        /// TLS handshakes run at once per worker; later ones wait (default 1024).
        max_tls_handshakes: usize => max_tls_handshakes;
        /// Upgrades waiting for a deferred decision per worker; past it 503 (default 1024).
        max_pending_upgrades: usize => max_pending_upgrades;
        /// Per-worker receive buffer (default 64 KiB).
        recv_buffer_size: usize => recv_buffer_size;
        /// Reads per connection per turn (default 4).
        read_budget: u32 => read_budget;
        /// io_uring: bytes per provided receive buffer (default 256 KiB).
        uring_buffer_size: usize => uring_buffer_size;
        /// io_uring: provided buffers per worker, a power of two (default 64).
        uring_buffer_count: u16 => uring_buffer_count;
        /// io_uring: submission queue entries per ring (default 4096).
        uring_entries: u32 => uring_entries;
        /// permessage-deflate (default off).
        deflate: DeflateMode => deflate;
        /// Messages shorter than this are sent uncompressed (default 64 bytes).
        deflate_threshold: usize => deflate_threshold;
        /// Compression level 0..=9 (default 1).
        deflate_level: u32 => deflate_level;
        /// HTTP/2 and WebSockets over it, RFC 8441 (default: by ALPN on TLS
        /// listeners; by prior knowledge on plain ones with
        /// `Http2 { prior_knowledge: true, .. }`).
        http2: Http2 => http2;
    }

    /// With [`Server::run`]: SIGTERM and SIGINT shut the server down as
    /// [`ServerHandle::shutdown`] with `grace` does, and `run` returns. The
    /// signals are blocked on the thread that calls `run` (and so on the
    /// workers it starts) and read by worker 0 from a signalfd beside its
    /// sockets, so no thread waits for them; threads the application started
    /// before must block them too, or a signal sent to the process may reach
    /// one of those and end the process. Default off. [`Server::start`]
    /// refuses it (its caller keeps the thread, so it waits for signals itself).
    ///
    /// [`ServerHandle::shutdown`]: crate::ServerHandle::shutdown
    pub fn shutdown_on_signals(mut self, grace: Duration) -> Self {
        self.config.shutdown_on_signals = Some(grace);
        self
    }

    /// Live restarts (`docs/HANDOVER.md`): this process listens on the Unix
    /// socket `socket` (a path, or an abstract name written `@name`) for its
    /// successor; started while another process of the server listens
    /// there, it takes over that one's listening sockets and open
    /// connections instead of binding. Both must be given the same
    /// `nonce_file` (readable by their user only). The hand-over's deadline
    /// is [`Builder::handover_deadline`].
    pub fn handover(mut self, socket: &str, nonce_file: impl Into<std::path::PathBuf>) -> Self {
        let deadline = self
            .config
            .handover
            .as_ref()
            .map_or(Duration::from_secs(10), |h| h.deadline);
        self.config.handover = Some(crate::config::Handover {
            socket: socket.to_owned(),
            nonce_file: nonce_file.into(),
            deadline,
        });
        self
    }

    /// How long a hand-over may take before the old process closes what is
    /// left with 1001 (default 10 s; needs [`Builder::handover`] first).
    pub fn handover_deadline(mut self, deadline: Duration) -> Self {
        match self.config.handover.as_mut() {
            Some(h) => h.deadline = deadline,
            None => {
                self.error.get_or_insert(ConfigError::Invalid {
                    name: "handover_deadline",
                    problem: "needs Builder::handover first",
                });
            }
        }
        self
    }

    /// Largest upgrade request head in bytes (default 8 KiB; 431 beyond).
    pub fn max_handshake_bytes(mut self, bytes: usize) -> Self {
        self.config.handshake_limits.max_bytes = bytes;
        self
    }

    /// Most header fields in an upgrade request (default 64, at most 128).
    pub fn max_headers(mut self, count: usize) -> Self {
        self.config.handshake_limits.max_headers = count;
        self
    }

    /// Carries pub/sub to other nodes through `bridge` (a message broker such
    /// as `ringws-redis`): the node subscribes to a topic when its first local
    /// subscriber appears and unsubscribes when the last one leaves, every
    /// publish on this node also goes to the bridge, and what other nodes
    /// publish reaches the local subscribers. Default: none, this node alone.
    pub fn bridge(mut self, bridge: Arc<dyn Bridge>) -> Self {
        self.bridge = BridgeSlot(Some(bridge));
        self
    }

    /// Validates the configuration.
    pub fn build(self) -> Result<Server, ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.config.validate()?;
        Ok(Server {
            config: self.config,
            bridge: self.bridge,
        })
    }
}
