//! Chat room: every client joins the topic "chat"; every message it sends is
//! published to everyone in the room, on every worker, and with `--redis` on
//! every node of the cluster (through `ringws-redis`).
//!
//! `cargo run --release -p ringws --example chat -- --port 9002`
//! `cargo run --release -p ringws --example chat -- --port 9002 --redis redis://127.0.0.1:6379/`
//!
//! Options: `--host H` (default 127.0.0.1), `--port P` (9002), `--workers N`
//! (cores), `--redis URL`, `--prefix P` (Redis channel prefix, default
//! `ringws:`), `--sharded` (SPUBLISH/SSUBSCRIBE; on a Redis Cluster, `--redis` names
//! any node and each channel goes to its shard), `--stats SECONDS` (print the
//! bridge's figures to stderr that often), `--no-announce` (no "joined" lines),
//! `--metrics` (Prometheus metrics at `/metrics` on the same port),
//! `--tls-cert FILE --tls-key FILE` (PEM: serve `wss://` instead).

use std::net::SocketAddr;

use std::time::Duration;

use ringws::proto::handshake::UpgradeRequest;
use ringws::{Handler, HttpRequest, HttpResponse, Message, Server, TlsConfig, Upgrade, WebSocket};
use ringws_redis::RedisBridge;

const ROOM: &str = "chat";

struct Chat {
    /// Publish "NICK joined" when someone joins (off for load tests: with N
    /// clients joining, that is N x N messages).
    announce: bool,
}

impl Handler for Chat {
    /// The nickname, from `?nick=` in the URL.
    type Data = String;

    fn on_upgrade(&mut self, request: &UpgradeRequest<'_>, peer: SocketAddr) -> Upgrade<String> {
        let nick = request
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("nick=")))
            .map_or_else(|| peer.to_string(), str::to_owned);
        Upgrade::accept(nick)
    }

    fn on_open(&mut self, ws: &mut WebSocket<'_, String>) {
        ws.subscribe(ROOM);
        if self.announce {
            let joined = format!("{} joined", ws.data());
            ws.publish(ROOM, Message::Text(&joined));
        }
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, String>, message: Message<'_>) {
        match message {
            Message::Text(text) => {
                let line = format!("{}: {text}", ws.data());
                ws.publish(ROOM, Message::Text(&line));
            }
            // The room is text only; binary messages are relayed as they are.
            Message::Binary(_) => ws.publish(ROOM, message),
        }
    }

    /// `GET /health` for the load balancer.
    fn on_http(&mut self, request: &HttpRequest<'_>) -> Option<HttpResponse> {
        (request.path == "/health").then(|| HttpResponse::text(200, "ok\n"))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Engine and bridge warnings (the io_uring fallback, Redis outages) on
    // stderr; RUST_LOG tunes it.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut host = String::from("127.0.0.1");
    let mut port: u16 = 9002;
    let mut workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut redis: Option<String> = None;
    let mut prefix: Option<String> = None;
    let mut sharded = false;
    let mut stats_every: Option<f64> = None;
    let mut announce = true;
    let mut metrics = false;
    let (mut cert, mut key) = (None, None);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        use lexopt::prelude::*;
        match arg {
            Long("host") => host = parser.value()?.string()?,
            Long("port") => port = parser.value()?.parse()?,
            Long("workers") => workers = parser.value()?.parse()?,
            Long("redis") => redis = Some(parser.value()?.string()?),
            Long("prefix") => prefix = Some(parser.value()?.string()?),
            Long("sharded") => sharded = true,
            Long("stats") => stats_every = Some(parser.value()?.parse()?),
            Long("no-announce") => announce = false,
            Long("metrics") => metrics = true,
            Long("tls-cert") => cert = Some(parser.value()?.string()?),
            Long("tls-key") => key = Some(parser.value()?.string()?),
            Long("help") => {
                println!(
                    "chat [--host 127.0.0.1] [--port 9002] [--workers N] [--redis URL [--prefix P] [--sharded]] [--stats SECONDS] [--no-announce] [--metrics] [--tls-cert CERT.pem --tls-key KEY.pem]"
                );
                return Ok(());
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let mut builder = match (cert, key) {
        (Some(cert), Some(key)) => Server::builder()
            .bind_tls((host.as_str(), port))
            .tls(TlsConfig::from_pem_files(cert, key)?),
        (None, None) => Server::builder().bind((host.as_str(), port)),
        _ => return Err("--tls-cert and --tls-key go together".into()),
    }
    .workers(workers);
    if metrics {
        // Prometheus scrapes http://HOST:PORT/metrics.
        builder = builder.metrics_route("/metrics");
    }
    let bridge = match &redis {
        Some(url) => {
            let mut b = RedisBridge::builder(url.as_str()).sharded(sharded);
            if let Some(prefix) = &prefix {
                b = b.prefix(prefix.as_str());
            }
            let bridge = b.build()?;
            builder = builder.bridge(bridge.clone());
            Some(bridge)
        }
        None => None,
    };
    let handle = builder.build()?.start(move || Chat { announce })?;
    let scheme = if handle.tls_addrs().is_empty() {
        "ws"
    } else {
        "wss"
    };
    match &redis {
        Some(url) => println!(
            "chat: listening on {scheme}://{}; topic {ROOM:?}; cluster through {url}",
            handle.local_addr()
        ),
        None => println!(
            "chat: listening on {scheme}://{}; topic {ROOM:?}",
            handle.local_addr()
        ),
    }
    loop {
        match (stats_every, &bridge) {
            (Some(secs), Some(bridge)) => {
                std::thread::sleep(Duration::from_secs_f64(secs.max(0.1)));
                eprintln!("chat: {:?}", bridge.stats());
            }
            _ => std::thread::park(),
        }
    }
}
