//! Echo server: every message comes back as it arrived. The Autobahn target.
//!
//! `cargo run --release -p ringws --example echo -- --port 9001 --workers 2 --backend auto [--metrics]`
//!
//! `--metrics` serves Prometheus metrics at `/metrics` on the same port. SIGTERM
//! or SIGINT shut it down gracefully (close 1001, at most `--grace-ms`, default
//! 5000): `scripts/restart-demo.sh` restarts it under load. With
//! `--tls-cert FILE --tls-key FILE` (PEM) it serves `wss://` instead (and
//! WebSockets over HTTP/2 by ALPN, RFC 8441); `--h2c` takes HTTP/2 by prior
//! knowledge on the plain listener. `--page FILE` serves that HTML file at
//! `GET /` (any other plain request gets 404), so a browser can load a page
//! from this server and open its WebSocket to the same origin
//! (`scripts/browser.sh --http2`). `--handover SOCKET --nonce FILE` turns on
//! live restarts (`docs/HANDOVER.md`): a second echo started with the same
//! two takes this one's listening sockets and open connections, and this one
//! exits (`scripts/restart-demo.sh --live`). `--ping-interval SECS` sets the
//! server's keep-alive: a connection silent that long is pinged (default 30;
//! 0 turns it off).

use std::net::SocketAddr;
use std::sync::Arc;

use ringws::proto::handshake::UpgradeRequest;
use ringws::{
    BackendKind, DeflateMode, Handler, Http2, HttpRequest, HttpResponse, Message, Portable, Server,
    TlsConfig, Upgrade, WebSocket,
};

struct Echo {
    /// `--page`: the HTML served at `GET /`.
    page: Option<Arc<Vec<u8>>>,
}

impl Handler for Echo {
    type Data = ();

    fn on_upgrade(&mut self, _request: &UpgradeRequest<'_>, _peer: SocketAddr) -> Upgrade<()> {
        Upgrade::accept(())
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, message: Message<'_>) {
        ws.send(message);
    }

    /// Nothing is kept beside a connection: it travels as no bytes.
    fn on_handover_out(&mut self, _id: ringws::ConnId, data: &()) -> Option<Vec<u8>> {
        Some(data.to_bytes())
    }

    fn on_handover_in(&mut self, _id: ringws::ConnId, bytes: &[u8]) -> Option<()> {
        <()>::from_bytes(bytes)
    }

    fn on_http(&mut self, request: &HttpRequest<'_>) -> Option<HttpResponse> {
        // Without --page, plain requests get the default 426 Upgrade Required.
        let page = self.page.as_ref()?;
        if request.method != "GET" || request.path != "/" {
            return Some(HttpResponse::text(404, "not found\n"));
        }
        Some(HttpResponse {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "text/html; charset=utf-8".into()),
                ("Cache-Control".into(), "no-store".into()),
            ],
            body: page.to_vec(),
        })
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Engine warnings (e.g. the io_uring fallback) on stderr; RUST_LOG tunes it.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut port = 9001u16;
    let mut host = String::from("127.0.0.1");
    let mut workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut backend = BackendKind::Auto;
    let mut stats = false;
    let mut metrics = false;
    let mut grace_ms = 5000u64;
    let mut deflate = DeflateMode::Off;
    let mut uring_buffer: Option<usize> = None;
    let mut uring_count: Option<u16> = None;
    let mut tls_cert: Option<String> = None;
    let mut tls_key: Option<String> = None;
    let mut h2c = false;
    let mut page: Option<Arc<Vec<u8>>> = None;
    let mut handover: Option<String> = None;
    let mut nonce: Option<String> = None;
    let mut handover_ms: Option<u64> = None;
    // The server's own keep-alive: a connection silent this long is pinged.
    let mut keepalive: Option<Option<std::time::Duration>> = None;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        use lexopt::prelude::*;
        match arg {
            Long("port") => port = parser.value()?.parse()?,
            Long("host") => host = parser.value()?.string()?,
            Long("workers") => workers = parser.value()?.parse()?,
            Long("backend") => {
                let name = parser.value()?.string()?;
                backend = BackendKind::parse(&name).ok_or(format!("unknown backend {name:?}"))?;
            }
            Long("stats") => stats = true,
            Long("metrics") => metrics = true,
            Long("grace-ms") => grace_ms = parser.value()?.parse()?,
            Long("deflate") => {
                let mode = parser.value()?.string()?;
                deflate = match mode.split_once(':') {
                    None if mode == "shared" => DeflateMode::Shared,
                    None if mode == "off" => DeflateMode::Off,
                    None if mode == "dedicated" => DeflateMode::Dedicated { window_bits: 15 },
                    Some(("dedicated", bits)) => DeflateMode::Dedicated {
                        window_bits: bits.parse()?,
                    },
                    _ => {
                        return Err(format!(
                            "--deflate takes off, shared or dedicated[:BITS], not {mode:?}"
                        )
                        .into());
                    }
                };
            }
            Long("uring-buffer-size") => uring_buffer = Some(parser.value()?.parse()?),
            Long("uring-buffer-count") => uring_count = Some(parser.value()?.parse()?),
            Long("tls-cert") => tls_cert = Some(parser.value()?.string()?),
            Long("tls-key") => tls_key = Some(parser.value()?.string()?),
            Long("h2c") => h2c = true,
            Long("handover") => handover = Some(parser.value()?.string()?),
            Long("nonce") => nonce = Some(parser.value()?.string()?),
            Long("handover-deadline-ms") => handover_ms = Some(parser.value()?.parse()?),
            Long("ping-interval") => {
                let secs: f64 = parser.value()?.parse()?;
                let every = std::time::Duration::try_from_secs_f64(secs)
                    .map_err(|e| format!("--ping-interval {secs}: {e}"))?;
                keepalive = Some((!every.is_zero()).then_some(every));
            }
            Long("page") => {
                let path = parser.value()?.string()?;
                let html = std::fs::read(&path).map_err(|e| format!("--page {path}: {e}"))?;
                page = Some(Arc::new(html));
            }
            Long("help") => {
                println!(
                    "echo [--host 127.0.0.1] [--port 9001] [--workers N] [--backend auto|io_uring|epoll] [--stats] [--metrics] [--grace-ms MS] [--ping-interval SECS (0: off)] [--uring-buffer-size BYTES] [--uring-buffer-count N] [--deflate off|shared|dedicated[:BITS]] [--tls-cert CERT.pem --tls-key KEY.pem] [--h2c] [--page FILE.html] [--handover SOCKET --nonce FILE [--handover-deadline-ms MS]]"
                );
                return Ok(());
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let mut builder = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Server::builder()
            .bind_tls((host.as_str(), port))
            .tls(TlsConfig::from_pem_files(cert, key)?),
        (None, None) => Server::builder().bind((host.as_str(), port)),
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    builder = builder
        .workers(workers)
        .backend(backend)
        .deflate(deflate)
        .http2(Http2 {
            prior_knowledge: h2c,
            ..Http2::default()
        });
    if let Some(every) = keepalive {
        builder = builder.ping_interval(every);
    }
    if let Some(size) = uring_buffer {
        builder = builder.uring_buffer_size(size);
    }
    if let Some(count) = uring_count {
        builder = builder.uring_buffer_count(count);
    }
    if metrics {
        // Prometheus scrapes http://HOST:PORT/metrics.
        builder = builder.metrics_route("/metrics");
    }
    match (&handover, &nonce) {
        (Some(socket), Some(nonce)) => {
            builder = builder.handover(socket, nonce);
            if let Some(ms) = handover_ms {
                builder = builder.handover_deadline(std::time::Duration::from_millis(ms));
            }
        }
        (None, None) => {}
        _ => return Err("--handover and --nonce go together".into()),
    }
    // SIGTERM and SIGINT: a graceful shutdown (close 1001, at most the grace),
    // read by worker 0 beside its sockets, so with one worker the server is
    // this one thread.
    let server = builder
        .shutdown_on_signals(std::time::Duration::from_millis(grace_ms))
        .build()?;
    server.run(
        move || Echo { page: page.clone() },
        |handle| {
            let scheme = if handle.tls_addrs().is_empty() {
                "ws"
            } else {
                "wss"
            };
            println!(
                "echo: listening on {scheme}://{} with {workers} workers ({} backend)",
                handle.local_addr(),
                handle.backend()
            );
            // With --stats, prints the server's counters every 200 ms.
            if stats {
                let handle = handle.clone();
                std::thread::spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_millis(200));
                        let s = handle.stats();
                        println!(
                            "stats: connections={} messages_in={} messages_out={} bytes_in={}",
                            s.connections, s.messages_in, s.messages_out, s.bytes_in
                        );
                    }
                });
            }
        },
    )?;
    // A restart: a new process already listens on the port (SO_REUSEPORT);
    // this one stopped accepting, closed with 1001 and exited within the grace.
    println!("echo: stopped");
    Ok(())
}
