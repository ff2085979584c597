//! What the load generator's tests share: a ringws server in the test's
//! process (echo, or the `/chat` room) and running the real binary.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ringws::proto::handshake::UpgradeRequest;
use ringws::{Handler, Message, Server, ServerHandle, Upgrade, WebSocket};
use serde_json::Value;

/// Echo on every path but `/chat`, which subscribes to the room and publishes
/// every message to it (as the bench's embedded server does).
pub struct EchoOrRoom;

impl Handler for EchoOrRoom {
    type Data = bool;

    fn on_upgrade(&mut self, request: &UpgradeRequest<'_>, _: SocketAddr) -> Upgrade<bool> {
        Upgrade::accept(request.path() == "/chat")
    }

    fn on_open(&mut self, ws: &mut WebSocket<'_, bool>) {
        if *ws.data() {
            ws.subscribe("chat");
        }
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, bool>, message: Message<'_>) {
        if *ws.data() {
            ws.publish("chat", message);
        } else {
            ws.send(message);
        }
    }
}

pub struct Running(pub ServerHandle);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.shutdown(Duration::from_secs(1));
    }
}

#[allow(dead_code)]
pub fn server() -> Running {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .workers(2)
        .build()
        .unwrap();
    Running(server.start(|| EchoOrRoom).unwrap())
}

/// Runs `loadgen ARGS --json FILE` and returns the first scenario's figures.
pub fn loadgen(args: &[&str]) -> Value {
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("loadgen-test-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("loadgen runs");
    assert!(
        output.status.success(),
        "loadgen {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    value[0].clone()
}

pub fn failures(v: &Value) -> u64 {
    v["failures"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum()
}
