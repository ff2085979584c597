//! Every scenario of the load generator, run as the real binary with small
//! counts against a ringws server in this process; the figures it writes as
//! JSON must be complete and error-free.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};

use ringws::{Bridge, DeflateMode, LocalNode, PreparedMessage, Server};
use serde_json::Value;

use common::{EchoOrRoom, Running, failures, loadgen, server};

/// The same server with permessage-deflate in `mode`.
fn deflate_server(mode: DeflateMode) -> Running {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .workers(2)
        .deflate(mode)
        .build()
        .unwrap();
    Running(server.start(|| EchoOrRoom).unwrap())
}

#[test]
fn connect_opens_every_connection() {
    let s = server();
    let url = format!("ws://{}/", s.0.local_addr());
    let v = loadgen(&["connect", "--url", &url, "-c", "50", "-d", "0.2", "-t", "2"]);
    assert_eq!(v["connected"], 50);
    assert_eq!(failures(&v), 0);
    assert!(v["handshake_ms"]["p50"].as_f64().unwrap() > 0.0);
    assert!(v["connections_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn connect_counts_refusals() {
    // A port nobody listens on: every attempt is refused, and counted as such.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/");
    let v = loadgen(&["connect", "--url", &url, "-c", "5", "-d", "0.1", "-t", "1"]);
    assert_eq!(v["connected"], 0);
    assert_eq!(v["failures"]["refused"], 5);
}

#[test]
fn hold_pings_every_connection() {
    let s = server();
    let url = format!("ws://{}/", s.0.local_addr());
    let pid = std::process::id().to_string();
    let v = loadgen(&[
        "hold",
        "--url",
        &url,
        "-c",
        "40",
        "-d",
        "1",
        "--ping-interval",
        "0.2",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(v["connected"], 40);
    assert_eq!(v["missed_pongs"], 0);
    assert_eq!(v["live_at_end"], 40);
    assert!(v["pongs"].as_u64().unwrap() >= 40, "{v}");
    assert!(v["server_rss"]["bytes_per_connection"].is_number());
}

#[test]
fn echo_closed_loop_checks_every_byte() {
    let s = server();
    let url = format!("ws://{}/", s.0.local_addr());
    let v = loadgen(&[
        "echo",
        "--url",
        &url,
        "-c",
        "10",
        "-k",
        "4",
        "-s",
        "10",
        "--size-max",
        "3000",
        "-d",
        "0.5",
    ]);
    assert_eq!(v["connected"], 10);
    assert!(v["messages"].as_u64().unwrap() > 100, "{v}");
    assert_eq!(v["mismatches"], 0);
    assert_eq!(v["lost"], 0);
    assert!(v["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
}

/// Precomputed compressed frames out, compressed echoes inflated and checked
/// byte for byte, with the server's shared and dedicated codecs.
#[test]
fn echo_with_deflate_checks_every_byte() {
    for mode in [
        DeflateMode::Shared,
        DeflateMode::Dedicated { window_bits: 12 },
    ] {
        let s = deflate_server(mode);
        let url = format!("ws://{}/", s.0.local_addr());
        for text in [false, true] {
            let mut args = vec![
                "echo",
                "--url",
                &url,
                "--deflate",
                "-c",
                "4",
                "-k",
                "2",
                "-s",
                "10",
                "--size-max",
                "20000",
                "-d",
                "0.3",
            ];
            if text {
                args.push("--text");
            }
            let v = loadgen(&args);
            assert_eq!(v["connected"], 4, "{mode:?} {v}");
            assert_eq!(failures(&v), 0, "{mode:?} {v}");
            assert!(v["messages"].as_u64().unwrap() > 20, "{mode:?} {v}");
            assert_eq!(v["mismatches"], 0, "{mode:?} {v}");
            assert_eq!(v["lost"], 0, "{mode:?} {v}");
            assert_eq!(v["dropped"], 0, "{mode:?} {v}");
        }
    }
}

#[test]
fn echo_open_loop_keeps_the_rate() {
    let s = server();
    let url = format!("ws://{}/", s.0.local_addr());
    let v = loadgen(&[
        "echo", "--url", &url, "-c", "10", "--rate", "500", "--text", "-d", "1",
    ]);
    let rate = v["messages_per_s"].as_f64().unwrap();
    assert!((400.0..=600.0).contains(&rate), "{rate}");
    assert_eq!(v["mismatches"], 0);
}

#[test]
fn echo_over_two_processes_merges_results() {
    let s = server();
    let url = format!("ws://{}/", s.0.local_addr());
    let v = loadgen(&[
        "echo", "--url", &url, "-c", "20", "--procs", "2", "-d", "0.3",
    ]);
    assert_eq!(v["connected"], 20);
    assert_eq!(v["connections"], 20);
    assert!(v["messages"].as_u64().unwrap() > 0);
    assert_eq!(v["mismatches"], 0);
}

#[test]
fn broadcast_reaches_every_subscriber() {
    let s = server();
    let url = format!("ws://{}/chat", s.0.local_addr());
    let v = loadgen(&[
        "broadcast",
        "--url",
        &url,
        "-c",
        "20",
        "--rate",
        "20",
        "-d",
        "1",
    ]);
    assert_eq!(v["connected"], 20);
    // One publisher at 20/s for 1 s, delivered to 20 subscribers.
    let delivered = v["messages"].as_u64().unwrap();
    assert!((300..=500).contains(&delivered), "{delivered}");
    // Deliveries are counted by when their probe was published, so they match
    // the publishes times the subscribers exactly, edges of the window included.
    let expected = v["expected_deliveries"].as_u64().unwrap();
    assert_eq!(delivered, expected);
    assert!(v["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
}

/// The per-second samples of a run: ascending seconds, counts that add up
/// to at least the measured window's, the open gauge reaching every connection.
fn check_series(v: &Value, connections: u64) -> &Vec<Value> {
    let series = v["series"].as_array().expect("series");
    assert!(!series.is_empty(), "{v}");
    let ts: Vec<u64> = series.iter().map(|s| s["t"].as_u64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "{ts:?}");
    let max_open = series.iter().map(|s| s["open"].as_u64().unwrap()).max();
    assert_eq!(max_open, Some(connections), "{series:?}");
    let sum = |k: &str| series.iter().map(|s| s[k].as_u64().unwrap()).sum::<u64>();
    assert!(sum("connects") >= connections);
    assert!(sum("messages") >= v["messages"].as_u64().unwrap());
    assert_eq!(sum("errors"), 0, "{series:?}");
    series
}

#[test]
fn every_scenario_records_per_second_samples() {
    let s = server();
    let url = format!("ws://{}/", s.0.local_addr());
    let v = loadgen(&["echo", "--url", &url, "-c", "10", "-d", "2.5", "-t", "2"]);
    let series = check_series(&v, 10);
    assert!(series.len() >= 3, "{series:?}");
    // A full second of echoes has its own latency percentiles.
    let busy = series
        .iter()
        .find(|s| s["messages"].as_u64().unwrap() > 100)
        .expect("a busy second");
    assert!(busy["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    assert!(
        busy["latency_ms"]["p99"].as_f64().unwrap() >= busy["latency_ms"]["p50"].as_f64().unwrap()
    );
    let v = loadgen(&[
        "hold",
        "--url",
        &url,
        "-c",
        "30",
        "-d",
        "1.5",
        "--ping-interval",
        "0.25",
    ]);
    let series = check_series(&v, 30);
    let pongs: u64 = series.iter().map(|s| s["pongs"].as_u64().unwrap()).sum();
    assert_eq!(pongs, v["pongs"].as_u64().unwrap());
    assert!(series.iter().any(|s| s["handshake_ms"]["p99"].is_number()));
    // Pings carry their send time: the pong's round trip, in all and per second.
    assert!(v["pong_ms"]["p50"].as_f64().unwrap() > 0.0, "{v}");
    assert!(series.iter().any(|s| s["latency_ms"]["p99"].is_number()));
}

#[test]
fn per_second_samples_merge_across_processes() {
    let s = server();
    let url = format!("ws://{}/", s.0.local_addr());
    let v = loadgen(&[
        "echo", "--url", &url, "-c", "20", "--procs", "2", "-d", "2", "-t", "1",
    ]);
    assert_eq!(v["connected"], 20);
    // Both processes' connections in the same seconds (one epoch for all).
    check_series(&v, 20);
}

#[test]
fn broadcast_over_processes_is_exactly_once() {
    let s = server();
    let url = format!("ws://{}/chat", s.0.local_addr());
    let v = loadgen(&[
        "broadcast",
        "--url",
        &url,
        "-c",
        "30",
        "--rate",
        "10",
        "-d",
        "1.5",
        "--procs",
        "3",
    ]);
    assert_eq!(v["connected"], 30);
    let f = &v["fanout"];
    assert_eq!(f["exactly_once"], true, "{f}");
    assert_eq!(f["out_of_order"], 0, "{f}");
    // Sent and received on one clock: a loopback delivery takes well under a second.
    let p99 = v["latency_ms"]["p99"].as_f64().unwrap();
    assert!(p99 > 0.0 && p99 < 1000.0, "{p99}");
}

#[test]
fn churn_closes_and_reopens_without_losing_anything() {
    let s = server();
    let url = format!("ws://{}/", s.0.local_addr());
    // 10% of 40 per second for 2 s: about 8 closing handshakes and as many
    // new connections, while every connection echoes at 50/s.
    let v = loadgen(&[
        "echo",
        "--url",
        &url,
        "-c",
        "40",
        "-r",
        "2000",
        "-d",
        "2",
        "--churn",
        "10",
        "-s",
        "8",
        "--size-max",
        "3000",
    ]);
    let churned = v["churned"].as_u64().unwrap();
    assert!((4..=16).contains(&churned), "{churned}");
    assert_eq!(failures(&v), 0, "{v}");
    assert_eq!(v["mismatches"], 0);
    assert_eq!(v["lost"], 0);
    assert_eq!(v["dropped"], 0);
    assert!(v["connected"].as_u64().unwrap() >= 40 + churned);
    let series = v["series"].as_array().unwrap();
    let churned_per_s: u64 = series.iter().map(|s| s["churned"].as_u64().unwrap()).sum();
    assert_eq!(churned_per_s, churned);
    let v = loadgen(&[
        "hold",
        "--url",
        &url,
        "-c",
        "40",
        "-d",
        "2",
        "--ping-interval",
        "0.2",
        "--churn",
        "10",
    ]);
    assert!(v["churned"].as_u64().unwrap() >= 4, "{v}");
    assert_eq!(v["missed_pongs"], 0);
    assert_eq!(v["dropped"], 0);
    assert_eq!(v["live_at_end"], 40);
}

#[test]
fn a_churn_just_before_the_end_still_reopens() {
    let s = server();
    let url = format!("ws://{}/", s.0.local_addr());
    // Four connections churned every 100 ms, the last of them within a
    // millisecond of the end: the run waits for their replacements to open
    // (it used to end with them still connecting, short of 40, in most runs).
    for _ in 0..3 {
        let v = loadgen(&[
            "hold",
            "--url",
            &url,
            "-c",
            "40",
            "-d",
            "1.0005",
            "--ping-interval",
            "0.2",
            "--churn",
            "100",
        ]);
        assert!(v["churned"].as_u64().unwrap() >= 20, "{v}");
        assert_eq!(v["dropped"], 0, "{v}");
        assert_eq!(v["live_at_end"], 40, "{v}");
    }
}

#[test]
fn compare_runs_the_scenario_on_each_server() {
    let (a, b) = (server(), server());
    let dir = std::env::temp_dir().join(format!("loadgen-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, svg) = (dir.join("c.json"), dir.join("c.svg"));
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "compare", "--pause", "0", "--label", "first", "--label", "second",
        ])
        .arg("--url")
        .arg(format!("ws://{}/", a.0.local_addr()))
        .arg("--url")
        .arg(format!("ws://{}/", b.0.local_addr()))
        .args(["echo", "-c", "5", "-d", "0.5", "--procs", "2", "--json"])
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("compare: echo on 2 servers"), "{stdout}");
    for label in ["first ", "second "] {
        assert!(
            stdout.lines().any(|l| l.starts_with(label)),
            "{label} in {stdout}"
        );
    }
    let all: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2);
    for (v, name) in all.iter().zip(["first", "second"]) {
        assert_eq!(v["scenario"], name);
        assert_eq!(v["connected"], 5);
        assert_eq!(v["mismatches"], 0);
        assert!(!v["series"].as_array().unwrap().is_empty());
    }
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("per second"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_options_fail_with_a_message() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&["compare", "--url", "ws://127.0.0.1:1/", "echo"]);
    assert!(e.contains("at least two servers"), "{e}");
    let e = run(&[
        "compare",
        "--url",
        "ws://127.0.0.1:1/",
        "--url",
        "ws://127.0.0.1:2/",
        "echo",
        "--url",
        "ws://127.0.0.1:3/",
    ]);
    assert!(e.contains("before the scenario"), "{e}");
    let e = run(&[
        "compare",
        "--url",
        "ws://127.0.0.1:1/",
        "--url",
        "http://b/",
        "hold",
    ]);
    assert!(e.contains("http://b/: only ws:// and wss://"), "{e}");
    let e = run(&["hold", "--ping-interval", "0"]);
    assert!(e.contains("--ping-interval"), "{e}");
    let e = run(&["echo", "--churn", "150"]);
    assert!(e.contains("--churn"), "{e}");
    let e = run(&["connect", "-c", "0"]);
    assert!(e.contains("at least 1"), "{e}");
}

/// Nodes of one process joined without a broker: each publish goes straight
/// to the other nodes' subscribers (what a Redis bridge does over the network).
#[derive(Default)]
struct Nodes(Mutex<Vec<LocalNode>>);

struct LoopBridge {
    nodes: Arc<Nodes>,
    me: Mutex<Option<usize>>,
}

impl Bridge for LoopBridge {
    fn start(&self, node: LocalNode) {
        let mut nodes = self.nodes.0.lock().unwrap();
        *self.me.lock().unwrap() = Some(nodes.len());
        nodes.push(node);
    }
    fn subscribe(&self, _: &str) {}
    fn unsubscribe(&self, _: &str) {}
    fn publish(&self, topic: &str, message: &PreparedMessage) {
        let me = *self.me.lock().unwrap();
        for (i, node) in self.nodes.0.lock().unwrap().iter().enumerate() {
            if Some(i) != me {
                node.deliver(topic, message.clone());
            }
        }
    }
}

fn cluster(count: usize) -> Vec<Running> {
    let nodes = Arc::new(Nodes::default());
    (0..count)
        .map(|_| {
            let bridge = Arc::new(LoopBridge {
                nodes: nodes.clone(),
                me: Mutex::new(None),
            });
            let server = Server::builder()
                .bind("127.0.0.1:0")
                .workers(2)
                .bridge(bridge)
                .build()
                .unwrap();
            Running(server.start(|| EchoOrRoom).unwrap())
        })
        .collect()
}

#[test]
fn broadcast_across_nodes_checks_exactly_once_per_node() {
    let nodes = cluster(2);
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| format!("ws://{}/chat", n.0.local_addr()))
        .collect();
    let v = loadgen(&[
        "broadcast",
        "--url",
        &urls[0],
        "--url",
        &urls[1],
        "-c",
        "20",
        "--rate",
        "20",
        "-d",
        "1",
        "-t",
        "2",
    ]);
    assert_eq!(v["connected"], 20);
    let f = &v["fanout"];
    assert_eq!(f["nodes"], 2);
    assert_eq!(f["exactly_once"], true, "{f}");
    assert_eq!(f["missing"], 0);
    assert_eq!(f["subscribers_local"], 10);
    assert_eq!(f["subscribers_remote"], 10);
    assert!(f["published_total"].as_u64().unwrap() >= 15, "{f}");
    assert!(f["latency_ms_remote"]["p50"].as_f64().unwrap() > 0.0);
    assert!(f["deliveries_per_s_remote"].as_f64().unwrap() > 0.0);
}

#[test]
fn broadcast_fails_when_a_node_misses_messages() {
    // Two nodes that are not joined: the subscribers on the second hear nothing.
    let a = server();
    let b = server();
    let urls = [
        format!("ws://{}/chat", a.0.local_addr()),
        format!("ws://{}/chat", b.0.local_addr()),
    ];
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["broadcast", "--url", &urls[0], "--url", &urls[1]])
        .args(["-c", "4", "--rate", "20", "-d", "0.5"])
        .output()
        .expect("loadgen runs");
    assert!(
        !output.status.success(),
        "a split cluster must fail the check"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("NOT exactly once"), "{stdout}");
}

#[test]
fn bench_runs_every_scenario_and_plots() {
    let dir = std::env::temp_dir().join(format!("loadgen-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("bench.json");
    let svg = dir.join("bench.svg");
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "bench",
            "-d",
            "0.3",
            "--scale",
            "0.02",
            "--backend",
            "epoll",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8(output.stdout).unwrap();
    for row in ["connect", "echo", "open-loop", "broadcast", "hold"] {
        assert!(table.contains(row), "{row} missing from:\n{table}");
    }
    let all: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 7);
    for v in all.as_array().unwrap() {
        assert_eq!(failures(v), 0, "{v}");
        assert_eq!(v["mismatches"], 0, "{v}");
    }
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let _ = std::fs::remove_dir_all(&dir);
}
