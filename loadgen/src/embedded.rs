//! The server `bench` measures: ringws in this process, on a free loopback port.
//! Path `/chat` joins the broadcast room (binary messages are published to it);
//! every other path echoes. HTTP/1.1 and HTTP/2 (prior knowledge on the plain
//! port, ALPN h2 with TLS) both serve WebSockets.

use std::net::SocketAddr;
use std::time::Duration;

use ringws::proto::handshake::UpgradeRequest;
use ringws::{
    BackendKind, Handler, Http2, Message, Server, ServerHandle, TlsConfig, Upgrade, WebSocket,
};

pub const ROOM: &str = "chat";

struct Bench;

impl Handler for Bench {
    /// Whether the connection is in the room.
    type Data = bool;

    fn on_upgrade(&mut self, request: &UpgradeRequest<'_>, _peer: SocketAddr) -> Upgrade<bool> {
        Upgrade::accept(request.path() == "/chat")
    }

    fn on_open(&mut self, ws: &mut WebSocket<'_, bool>) {
        if *ws.data() {
            ws.subscribe(ROOM);
        }
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, bool>, message: Message<'_>) {
        if *ws.data() {
            ws.publish(ROOM, message);
        } else {
            ws.send(message);
        }
    }
}

/// Starts the embedded server with `workers` threads; with `tls`, on a TLS
/// listener with a self-signed certificate for 127.0.0.1 made here.
pub fn start(
    backend: BackendKind,
    workers: usize,
    tls: bool,
) -> Result<ServerHandle, Box<dyn std::error::Error>> {
    let builder = if tls {
        let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
        Server::builder()
            .bind_tls("127.0.0.1:0")
            .tls(TlsConfig::from_pem(
                pair.cert.pem().as_bytes(),
                pair.key_pair.serialize_pem().as_bytes(),
            )?)
    } else {
        Server::builder().bind("127.0.0.1:0")
    };
    let server = builder
        .workers(workers)
        .backend(backend)
        .ping_interval(Some(Duration::from_secs(60)))
        // WebSockets over HTTP/2 (`--http2`): by ALPN on TLS, by prior
        // knowledge on the plain port (HTTP/1.1 is served there as ever).
        .http2(Http2 {
            prior_knowledge: true,
            ..Http2::default()
        })
        .build()?;
    Ok(server.start(|| Bench)?)
}
