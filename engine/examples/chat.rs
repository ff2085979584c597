//! Chat room: every client joins the topic "chat"; every message it sends is
//! published to everyone in the room, on every worker.
//!
//! `cargo run --release -p ringws --example chat -- --port 9002 [--metrics]`
//! (`--metrics`: Prometheus metrics at `/metrics` on the same port)

use std::net::SocketAddr;

use ringws::proto::handshake::UpgradeRequest;
use ringws::{Handler, Message, Server, Upgrade, WebSocket};

const ROOM: &str = "chat";

struct Chat;

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
        let joined = format!("{} joined", ws.data());
        ws.publish(ROOM, Message::Text(&joined));
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
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Engine warnings (e.g. the io_uring fallback) on stderr; RUST_LOG tunes it.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let port: u16 = match std::env::args().skip_while(|a| a != "--port").nth(1) {
        Some(p) => p.parse()?,
        None => 9002,
    };
    let metrics = std::env::args().any(|a| a == "--metrics");
    let mut builder = Server::builder().bind(("127.0.0.1", port));
    if metrics {
        // Prometheus scrapes http://127.0.0.1:PORT/metrics.
        builder = builder.metrics_route("/metrics");
    }
    let handle = builder.build()?.start(|| Chat)?;
    println!("chat: listening on {}; topic {ROOM:?}", handle.local_addr());
    loop {
        std::thread::park();
    }
}
