//! Chat room: every client joins the topic "chat"; every message it sends is
//! published to everyone in the room, on every worker.
//!
//! `cargo run --release -p ringws --example chat -- --port 9002`
//!
//! With `--tls-cert FILE --tls-key FILE` (PEM) it serves `wss://` instead.

use std::net::SocketAddr;

use ringws::proto::handshake::UpgradeRequest;
use ringws::{Handler, Message, Server, TlsConfig, Upgrade, WebSocket};

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
    let mut port = 9002u16;
    let (mut cert, mut key) = (None, None);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        use lexopt::prelude::*;
        match arg {
            Long("port") => port = parser.value()?.parse()?,
            Long("tls-cert") => cert = Some(parser.value()?.string()?),
            Long("tls-key") => key = Some(parser.value()?.string()?),
            Long("help") => {
                println!("chat [--port 9002] [--tls-cert CERT.pem --tls-key KEY.pem]");
                return Ok(());
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let builder = match (cert, key) {
        (Some(cert), Some(key)) => Server::builder()
            .bind_tls(("127.0.0.1", port))
            .tls(TlsConfig::from_pem_files(cert, key)?),
        (None, None) => Server::builder().bind(("127.0.0.1", port)),
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    let handle = builder.build()?.start(|| Chat)?;
    let scheme = if handle.tls_addrs().is_empty() {
        "ws"
    } else {
        "wss"
    };
    println!(
        "chat: listening on {scheme}://{}; topic {ROOM:?}",
        handle.local_addr()
    );
    loop {
        std::thread::park();
    }
}
