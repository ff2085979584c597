//! `--http2`: every scenario over WebSockets that are streams of HTTP/2
//! connections (RFC 8441), against a ringws server in this process that takes
//! HTTP/2 by prior knowledge (and by ALPN over TLS), on both backends.

mod common;

use std::process::Command;

use ringws::{BackendKind, Http2, Server, TlsConfig};
use serde_json::Value;

use common::{EchoOrRoom, Running, failures, loadgen};

fn h2_server(backend: BackendKind, http2: Http2) -> Running {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .workers(2)
        .backend(backend)
        .http2(http2)
        .build()
        .unwrap();
    Running(server.start(|| EchoOrRoom).unwrap())
}

fn prior_knowledge() -> Http2 {
    Http2 {
        prior_knowledge: true,
        ..Http2::default()
    }
}

/// No failure, no lost or mismatched message, no drop, and the WebSockets
/// carried by `tcp` connections.
fn clean(v: &Value, connected: u64, tcp: u64) {
    assert_eq!(v["connected"], connected, "{v}");
    assert_eq!(failures(v), 0, "{v}");
    assert_eq!(v["mismatches"], 0, "{v}");
    assert_eq!(v["lost"], 0, "{v}");
    assert_eq!(v["dropped"], 0, "{v}");
    assert_eq!(v["transport"], "h2", "{v}");
    assert_eq!(v["tcp_connections"], tcp, "{v}");
}

#[test]
fn echo_and_hold_over_http2_on_both_backends() {
    for backend in [BackendKind::Epoll, BackendKind::IoUring] {
        let s = h2_server(backend, prior_knowledge());
        let url = format!("ws://{}/", s.0.local_addr());
        let v = loadgen(&[
            "echo",
            "--http2",
            "--streams-per-conn",
            "10",
            "-c",
            "50",
            "-d",
            "0.5",
            "--url",
            &url,
        ]);
        clean(&v, 50, 5);
        assert_eq!(v["streams_per_connection"], 10);
        assert!(v["messages"].as_u64().unwrap() > 100, "{backend:?} {v}");
        let v = loadgen(&[
            "hold",
            "--http2",
            "--streams-per-conn",
            "10",
            "-c",
            "50",
            "-d",
            "1",
            "--ping-interval",
            "0.2",
            "--url",
            &url,
        ]);
        clean(&v, 50, 5);
        assert_eq!(v["missed_pongs"], 0, "{backend:?} {v}");
        assert_eq!(v["live_at_end"], 50, "{backend:?} {v}");
        assert!(v["pongs"].as_u64().unwrap() >= 50, "{backend:?} {v}");
    }
}

#[test]
fn every_scenario_over_http2() {
    let s = h2_server(BackendKind::Epoll, prior_knowledge());
    let url = format!("ws://{}/", s.0.local_addr());
    let chat = format!("ws://{}/chat", s.0.local_addr());
    let h2 = ["--http2", "--url", &url];
    let v = loadgen(&[&["connect", "-c", "250", "-d", "0.2"][..], &h2].concat());
    clean(&v, 250, 3);
    // Large and random sizes, several in flight: DATA split by the frame
    // size and held back by the windows.
    let v = loadgen(
        &[
            &["echo", "-c", "12", "--streams-per-conn", "6", "-k", "4"][..],
            &["-s", "10", "--size-max", "70000", "-d", "0.5"],
            &h2,
        ]
        .concat(),
    );
    clean(&v, 12, 2);
    assert!(v["messages"].as_u64().unwrap() > 20, "{v}");
    // Open loop, two client threads and two processes.
    let v = loadgen(
        &[
            &[
                "echo",
                "-c",
                "40",
                "--streams-per-conn",
                "10",
                "--rate",
                "1000",
            ][..],
            &["--text", "-d", "1", "-t", "2"],
            &h2,
        ]
        .concat(),
    );
    clean(&v, 40, 4);
    let rate = v["messages_per_s"].as_f64().unwrap();
    assert!((800.0..=1200.0).contains(&rate), "{rate}");
    let v = loadgen(
        &[
            &[
                "echo",
                "-c",
                "30",
                "--streams-per-conn",
                "10",
                "--procs",
                "2",
            ][..],
            &["-d", "0.5"],
            &h2,
        ]
        .concat(),
    );
    clean(&v, 30, 3);
    // One publisher, subscribers on three connections, exactly once.
    let v = loadgen(&[
        "broadcast",
        "--http2",
        "--streams-per-conn",
        "10",
        "--url",
        &chat,
        "-c",
        "30",
        "--rate",
        "20",
        "-d",
        "1",
    ]);
    clean(&v, 30, 3);
    assert_eq!(v["fanout"]["exactly_once"], true, "{v}");
    assert_eq!(v["messages"], v["expected_deliveries"], "{v}");
}

#[test]
fn streams_past_the_server_limit_wait() {
    let s = h2_server(
        BackendKind::Epoll,
        Http2 {
            max_concurrent_streams: 5,
            ..prior_knowledge()
        },
    );
    let url = format!("ws://{}/", s.0.local_addr());
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["connect", "--http2", "--streams-per-conn", "8", "-c", "8"])
        .args(["-d", "0.1", "--connect-timeout", "1", "--url", &url])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("allows 5 streams per connection"),
        "{stderr}"
    );
    assert!(stdout.contains("connected 5 / 8"), "{stdout}");
    assert!(stdout.contains("timeout 3"), "{stdout}");
}

#[test]
fn wss_speaks_http2_by_alpn() {
    let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let tls = TlsConfig::from_pem(
        pair.cert.pem().as_bytes(),
        pair.key_pair.serialize_pem().as_bytes(),
    )
    .unwrap();
    let server = Server::builder()
        .bind_tls("127.0.0.1:0")
        .tls(tls)
        .workers(2)
        .build()
        .unwrap();
    let s = Running(server.start(|| EchoOrRoom).unwrap());
    let url = format!("wss://{}/", s.0.local_addr());
    let v = loadgen(&[
        "echo",
        "--http2",
        "--insecure",
        "--streams-per-conn",
        "4",
        "-c",
        "8",
        "-s",
        "70000",
        "-k",
        "2",
        "-d",
        "0.5",
        "--url",
        &url,
    ]);
    clean(&v, 8, 2);
    assert!(v["messages"].as_u64().unwrap() > 8, "{v}");
    assert!(v["tls_handshake_ms"]["p50"].as_f64().unwrap() > 0.0, "{v}");
    // The same large echoes over HTTP/1.1 (rustls hands out a record a read:
    // they used to stall).
    let v = loadgen(&[
        "echo",
        "--insecure",
        "-c",
        "4",
        "-s",
        "70000",
        "-k",
        "2",
        "-d",
        "0.5",
        "--url",
        &url,
    ]);
    assert_eq!(v["lost"], 0, "{v}");
    assert_eq!(v["tcp_connections"], 4, "{v}");
    assert!(v["messages"].as_u64().unwrap() > 8, "{v}");
}

#[test]
fn what_http2_cannot_do_fails_clearly() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, e) = run(&["echo", "--http2", "--churn", "10"]);
    assert!(
        !ok && e.contains("--churn is not supported with --http2"),
        "{e}"
    );
    let (ok, _, e) = run(&["echo", "--streams-per-conn", "10"]);
    assert!(!ok && e.contains("--http2"), "{e}");
    // A server that does not take HTTP/2 on its plain port.
    let s = common::server();
    let url = format!("ws://{}/", s.0.local_addr());
    let (_, out, e) = run(&["connect", "--http2", "-c", "3", "-d", "0.1", "--url", &url]);
    assert!(e.contains("does not take HTTP/2 by prior knowledge"), "{e}");
    assert!(out.contains("bad_status 3"), "{out}");
}
