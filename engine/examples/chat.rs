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
//! `--tls-cert FILE --tls-key FILE` (PEM: serve `wss://` instead),
//! `--auth FILE` (only clients with a token may join: the file has one
//! `TOKEN NICK` per line; the client sends `?token=TOKEN` or
//! `Authorization: Bearer TOKEN`).
//!
//! With `--auth`, the upgrade is decided on another thread, as a real service
//! would ask an identity service: `on_upgrade` defers it
//! (`Upgrade::defer`), a pool of authenticator threads checks the token and
//! accepts with the nickname it names, or refuses with 401. The worker goes on
//! serving everyone else meanwhile.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringws::proto::handshake::UpgradeRequest;
use ringws::{
    Handler, HttpRequest, HttpResponse, Message, PendingUpgrade, Portable, Server, TlsConfig,
    Upgrade, WebSocket,
};
use ringws_redis::RedisBridge;

const ROOM: &str = "chat";

/// Authenticator threads in the pool of `--auth`.
const AUTHENTICATORS: usize = 4;

struct Chat {
    /// Publish "NICK joined" when someone joins (off for load tests: with N
    /// clients joining, that is N x N messages).
    announce: bool,
    /// With `--auth`: where upgrades go to be decided.
    authenticate: Option<Sender<PendingUpgrade<String>>>,
}

impl Handler for Chat {
    /// The nickname, from `?nick=` in the URL.
    type Data = String;

    fn on_upgrade(&mut self, request: &UpgradeRequest<'_>, peer: SocketAddr) -> Upgrade<String> {
        if self.authenticate.is_some() {
            // The token is checked on an authenticator thread.
            return Upgrade::defer();
        }
        let nick = request
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("nick=")))
            .map_or_else(|| peer.to_string(), str::to_owned);
        Upgrade::accept(nick)
    }

    fn on_upgrade_deferred(&mut self, pending: PendingUpgrade<String>) {
        if let Some(authenticate) = &self.authenticate {
            // If the pool is gone, the pending upgrade is dropped: 500.
            let _ = authenticate.send(pending);
        }
    }

    fn on_open(&mut self, ws: &mut WebSocket<'_, String>) {
        ws.subscribe(ROOM);
        if self.announce {
            let joined = format!("{} joined", ws.data());
            ws.publish(ROOM, Message::Text(&joined));
        }
    }

    /// A live restart (`--handover`): the nickname travels.
    fn on_handover_out(&mut self, _id: ringws::ConnId, nick: &String) -> Option<Vec<u8>> {
        Some(nick.to_bytes())
    }

    fn on_handover_in(&mut self, _id: ringws::ConnId, bytes: &[u8]) -> Option<String> {
        String::from_bytes(bytes)
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

/// The token a client presents: `?token=` or `Authorization: Bearer`.
fn token(pending: &PendingUpgrade<String>) -> Option<String> {
    let from_query = pending
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
    let from_header = pending
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "));
    from_query.or(from_header).map(str::to_owned)
}

/// The pool that decides the deferred upgrades: each thread takes the next
/// pending upgrade and accepts it with the nickname its token names.
fn start_authenticators(tokens: HashMap<String, String>) -> Sender<PendingUpgrade<String>> {
    let (tx, rx) = mpsc::channel::<PendingUpgrade<String>>();
    let rx: Arc<Mutex<Receiver<PendingUpgrade<String>>>> = Arc::new(Mutex::new(rx));
    let tokens = Arc::new(tokens);
    for i in 0..AUTHENTICATORS {
        let (rx, tokens) = (rx.clone(), tokens.clone());
        std::thread::Builder::new()
            .name(format!("chat-auth-{i}"))
            .spawn(move || {
                loop {
                    let next = rx.lock().map(|rx| rx.recv());
                    let Ok(Ok(pending)) = next else {
                        return;
                    };
                    let nick = token(&pending).and_then(|t| tokens.get(&t).cloned());
                    // A decision that comes after the handshake timeout (or
                    // after the client left) is refused: nothing to do then.
                    let _ = match nick {
                        Some(nick) => pending.accept(nick),
                        None => pending.reject(401, "unknown token\n"),
                    };
                }
            })
            .expect("an authenticator thread");
    }
    tx
}

/// `TOKEN NICK` per line; blank lines and `#` comments skipped.
fn read_tokens(path: &str) -> Result<HashMap<String, String>, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut tokens = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (token, nick) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("{path}: expected `TOKEN NICK`, got {line:?}"))?;
        tokens.insert(token.to_owned(), nick.trim().to_owned());
    }
    Ok(tokens)
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
    let mut auth: Option<String> = None;
    let mut handover: Option<(String, String)> = None;
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
            Long("auth") => auth = Some(parser.value()?.string()?),
            // A live restart (docs/HANDOVER.md): --handover SOCKET NONCE_FILE.
            Long("handover") => {
                handover = Some((parser.value()?.string()?, parser.value()?.string()?))
            }
            Long("help") => {
                println!(
                    "chat [--host 127.0.0.1] [--port 9002] [--workers N] [--redis URL [--prefix P] [--sharded]] [--stats SECONDS] [--no-announce] [--metrics] [--tls-cert CERT.pem --tls-key KEY.pem] [--auth TOKENS] [--handover SOCKET NONCE_FILE]"
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
    let live = handover.is_some();
    if let Some((socket, nonce)) = &handover {
        builder = builder.handover(socket, nonce);
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
    let authenticate = match &auth {
        Some(path) => Some(start_authenticators(read_tokens(path)?)),
        None => None,
    };
    let handle = builder.build()?.start(move || Chat {
        announce,
        authenticate: authenticate.clone(),
    })?;
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
    if live {
        // Until a new process has taken everything over.
        handle.join();
        println!("chat: handed over");
        return Ok(());
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
