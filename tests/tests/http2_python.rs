//! WebSockets over HTTP/2 with an independent client: the Python `h2`
//! package (tests/h2/ws_streams.py) opens 1000 WebSocket streams on one
//! connection, echoes a message on each and closes each with 1000; the
//! server must have seen 1000 WebSockets on 1 TCP connection. On both
//! backends, over plain TCP (prior knowledge) and TLS (ALPN h2, the test CA
//! given to Python as a PEM file).
//!
//! The interpreter comes from `RINGWS_H2_PYTHON`, which
//! `scripts/h2-python.sh` sets up (a virtualenv under target/ with `h2` from
//! PyPI); without it the tests are skipped, saying so.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ringws::{BackendKind, Http2};
use ringws_tests::transport::{Transport, transport};
use ringws_tests::{Echo, TIMEOUT, TestServer, backend_tests, pki, start};

const STREAMS: usize = 1000;

/// How long the Python client may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The interpreter with `h2`, or `None` (the test is skipped).
fn python() -> Option<PathBuf> {
    std::env::var_os("RINGWS_H2_PYTHON").map(PathBuf::from)
}

/// The test CA in a PEM file, for Python's `cafile`.
fn ca_file() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("h2-test-ca-{}.pem", std::process::id()));
    std::fs::write(&path, pki().ca_pem()).expect("write the CA's PEM");
    path
}

/// A number in the client's one-line JSON summary.
fn number(summary: &str, key: &str) -> Option<u64> {
    let at = summary.find(&format!("\"{key}\": "))? + key.len() + 4;
    let digits: String = summary[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The value of counter `name` (with or without `_total`).
fn metric(server: &TestServer, name: &str) -> Option<u64> {
    server.metrics().lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = rest.strip_prefix("_total").unwrap_or(rest);
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            return None;
        }
        rest.rsplit(' ').next()?.parse().ok()
    })
}

/// Runs the client with `args`, bounded by [`CLIENT_TIMEOUT`]; its exit
/// status, stdout and stderr.
fn run_client(python: &PathBuf, args: &[String]) -> (Option<i32>, String, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/h2/ws_streams.py");
    let mut child = Command::new(python)
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python client");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + CLIENT_TIMEOUT + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the client") {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}

fn a_thousand_websockets_on_one_connection(backend: BackendKind) {
    let Some(python) = python() else {
        eprintln!(
            "SKIPPED: RINGWS_H2_PYTHON is not set (RINGWS_H2_PYTHON=\"$(bash scripts/h2-python.sh)\" sets it up)"
        );
        return;
    };
    let server = start(
        backend,
        |b| {
            b.http2(Http2 {
                prior_knowledge: true,
                max_concurrent_streams: STREAMS as u32,
                ..Http2::default()
            })
            .ping_interval(None)
        },
        Echo::new,
    );
    let addr = server.addr();
    let mut args = vec![
        "--host".to_owned(),
        addr.ip().to_string(),
        "--port".to_owned(),
        addr.port().to_string(),
        "--streams".to_owned(),
        STREAMS.to_string(),
        "--timeout".to_owned(),
        CLIENT_TIMEOUT.as_secs().to_string(),
    ];
    let ca = (transport() == Transport::Tls).then(ca_file);
    if let Some(ca) = &ca {
        args.extend([
            "--tls".to_owned(),
            "--cafile".to_owned(),
            ca.display().to_string(),
            "--server-name".to_owned(),
            "localhost".to_owned(),
        ]);
    }
    let (status, summary, stderr) = run_client(&python, &args);
    if let Some(ca) = ca {
        let _ = std::fs::remove_file(ca);
    }
    assert_eq!(status, Some(0), "the client failed: {summary}\n{stderr}");
    for key in ["accepted", "echoed", "closed_1000", "ended"] {
        assert_eq!(
            number(&summary, key),
            Some(STREAMS as u64),
            "{key}: {summary}"
        );
    }
    assert_eq!(number(&summary, "errors"), Some(0), "{summary}");
    if transport() == Transport::Tls {
        assert!(summary.contains("\"alpn\": \"h2\""), "{summary}");
    }
    // On the server: 1000 WebSockets, one TCP connection.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let seen = (
            metric(&server, "ringws_accepted"),
            metric(&server, "ringws_http2_connections"),
            metric(&server, "ringws_http2_websockets"),
        );
        if seen == (Some(1), Some(1), Some(STREAMS as u64)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "(accepted, HTTP/2 connections, HTTP/2 WebSockets) = {seen:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

backend_tests!(a_thousand_websockets_on_one_connection);
