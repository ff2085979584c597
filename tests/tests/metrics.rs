//! The metrics a running server exposes, after known traffic, checked exactly
//! as the Prometheus project's own parser (the `prometheus_client` Python
//! package, set up by `scripts/metrics-parser.sh`) reads them: the text format
//! from the route and from `ServerHandle::metrics`, and OpenMetrics where the
//! `Accept` header asks for it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ringws::proto::deflate::DeflateConfig;
use ringws::{BackendKind, DeflateMode, Message};
use ringws_tests::{Client, ConnectOptions, Echo, HttpReply, raw_http, refusal_status, start};

/// The interpreter with `prometheus_client`: `RINGWS_METRICS_PYTHON`, else the
/// one `scripts/metrics-parser.sh` sets up (which is run if needed).
fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("RINGWS_METRICS_PYTHON") {
        return path.into();
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(root.join("scripts/metrics-parser.sh"))
        .current_dir(&root)
        .output()
        .expect("run scripts/metrics-parser.sh");
    assert!(
        out.status.success(),
        "scripts/metrics-parser.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    if path.is_absolute() {
        path
    } else {
        root.join(path)
    }
}

/// Every sample as the real parser read it: `name{sorted labels}` to value,
/// each family's type checked on the way.
fn parse(text: &str, format: &str) -> BTreeMap<String, String> {
    let mut child = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/metrics/parse.py"))
        .arg(format)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the parser");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the {format} parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut samples = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let [kind, name, labels, value] = line.split('|').collect::<Vec<_>>()[..] else {
            panic!("parser output {line:?}");
        };
        if name.ends_with("_total") {
            assert_eq!(kind, "counter", "{name}");
        }
        samples.insert(format!("{name}{{{labels}}}"), value.to_owned());
    }
    samples
}

fn scrape(addr: std::net::SocketAddr, accept: Option<&str>) -> (HttpReply, String) {
    let mut request = String::from("GET /metrics HTTP/1.1\r\nHost: test\r\n");
    if let Some(accept) = accept {
        request.push_str(&format!("Accept: {accept}\r\n"));
    }
    request.push_str("\r\n");
    let reply = HttpReply::parse(&raw_http(addr, request.as_bytes()).unwrap());
    let body = reply.text();
    (reply, body)
}

fn known_traffic_is_counted_exactly(backend: BackendKind) {
    let server = start(
        backend,
        |b| b.metrics_route("/metrics").ping_interval(None),
        Echo::new,
    );
    let addr = server.addr();
    // Three connections, two messages each (one of 1000 bytes), one ping.
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(addr).unwrap()).collect();
    for client in &mut clients {
        client.send_text("hello").unwrap();
        client.expect_text("hello");
        client.send_binary(&[1u8; 1000]).unwrap();
        assert_eq!(
            client.recv().unwrap(),
            ringws_tests::Msg::Binary(vec![1; 1000])
        );
    }
    clients[0].ping(b"p").unwrap();
    assert_eq!(
        clients[0].recv().unwrap(),
        ringws_tests::Msg::Pong(b"p".to_vec())
    );
    // Two refusals: 401 from the handler, 426 for plain HTTP off any route.
    let refused = Client::connect_opts(
        addr,
        &ConnectOptions {
            path: "/reject".into(),
            ..ConnectOptions::default()
        },
    )
    .unwrap_err();
    assert_eq!(refusal_status(&refused), Some(401));
    let reply =
        HttpReply::parse(&raw_http(addr, b"GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n").unwrap());
    assert_eq!(reply.status, 426);
    // Closes: two by the peer with 1000 and 4001, one reset.
    clients[0].close_handshake(1000, "").unwrap();
    clients[1].close_handshake(4001, "").unwrap();
    clients.pop().unwrap().reset();
    ringws_tests::wait_until("every connection closed", || {
        server.stats().connections == 0
    });

    let expected_any_scrape = [
        ("ringws_upgraded_total{backend=B}", "3"),
        ("ringws_messages_received_total{backend=B}", "6"),
        ("ringws_messages_sent_total{backend=B}", "6"),
        ("ringws_pings_received_total{backend=B}", "1"),
        ("ringws_pongs_sent_total{backend=B}", "1"),
        ("ringws_pings_sent_total{backend=B}", "0"),
        ("ringws_missed_pongs_total{backend=B}", "0"),
        ("ringws_rejected_total{backend=B,status=401}", "1"),
        ("ringws_rejected_total{backend=B,status=426}", "1"),
        ("ringws_closed_total{backend=B,cause=peer}", "2"),
        ("ringws_closed_total{backend=B,cause=reset}", "1"),
        ("ringws_closed_total{backend=B,cause=timeout}", "0"),
        ("ringws_close_codes_total{backend=B,code=1000}", "1"),
        ("ringws_close_codes_total{backend=B,code=4xxx}", "1"),
        ("ringws_close_codes_total{backend=B,code=1006}", "1"),
        ("ringws_dropped_sends_total{backend=B}", "0"),
        ("ringws_deflate_input_bytes_total{backend=B}", "0"),
        ("ringws_handshake_duration_seconds_count{backend=B}", "3"),
        (
            "ringws_handshake_duration_seconds_bucket{backend=B,le=+Inf}",
            "3",
        ),
    ];
    let name = match backend {
        BackendKind::IoUring => "io_uring",
        _ => "epoll",
    };
    let check = |samples: &BTreeMap<String, String>, what: &str| {
        for (key, value) in expected_any_scrape {
            let key = key.replace("backend=B", &format!("backend={name}"));
            assert_eq!(
                samples.get(&key).map(String::as_str),
                Some(value),
                "{key} in {what}: {samples:#?}"
            );
        }
    };

    // From the handle: no scrape connection, so every count is exact.
    let samples = parse(&server.metrics(), "prometheus");
    check(&samples, "ServerHandle::metrics");
    // Five connections accepted: the three clients and the two refusals.
    assert_eq!(
        samples[&format!("ringws_accepted_total{{backend={name}}}")],
        "5"
    );
    // Bytes in: each client sent 11 + 1008 bytes of frames besides its
    // request, plus the ping and the close frames; checked as at least that.
    let bytes_in: u64 = samples[&format!("ringws_received_bytes_total{{backend={name}}}")]
        .parse()
        .unwrap();
    assert!(bytes_in > 3 * (11 + 1008), "{bytes_in}");

    // Through the route, in both formats.
    let (reply, body) = scrape(addr, None);
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    check(&parse(&body, "prometheus"), "the text format");
    let (reply, body) = scrape(
        addr,
        Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    check(&parse(&body, "openmetrics"), "OpenMetrics");
}

fn deflate_publishes_and_commands_are_counted(backend: BackendKind) {
    let server = start(
        backend,
        |b| b.deflate(DeflateMode::Shared).ping_interval(None),
        || Echo::new().with_commands(),
    );
    let name = match backend {
        BackendKind::IoUring => "io_uring",
        _ => "epoll",
    };
    let mut client = Client::connect_opts(
        server.addr(),
        &ConnectOptions {
            deflate: Some(DeflateConfig::default()),
            ..ConnectOptions::default()
        },
    )
    .unwrap();
    // 1000 compressible bytes each way.
    let text: String = (0..1000).map(|i| (b'a' + (i % 7) as u8) as char).collect();
    client.send_compressed(true, text.as_bytes(), 1).unwrap();
    client.expect_text(&text);
    // One publish from the handle (a command to each of the two workers),
    // one from a callback (a command to the other worker); one subscriber.
    client.send_text("!sub news").unwrap();
    client.expect_text("subscribed news");
    server.publish("news", Message::Text("from the handle"));
    client.expect_text("from the handle");
    client.send_text("!pub news from a callback").unwrap();
    client.expect_text("from a callback");
    let settled = |text: &str| {
        text.contains(&format!(
            "ringws_deliveries_total{{backend=\"{name}\"}} 2\n"
        )) && text.contains(&format!("ringws_commands_total{{backend=\"{name}\"}} 3\n"))
    };
    ringws_tests::wait_until("the counters published", || settled(&server.metrics()));
    let samples = parse(&server.metrics(), "prometheus");
    let get = |metric: &str| -> u64 {
        samples[&format!("{metric}{{backend={name}}}")]
            .parse()
            .unwrap()
    };
    assert_eq!(get("ringws_publishes_total"), 2);
    assert_eq!(get("ringws_deliveries_total"), 2);
    assert_eq!(get("ringws_commands_total"), 3);
    assert_eq!(get("ringws_inflate_output_bytes_total"), 1000);
    assert_eq!(get("ringws_deflate_input_bytes_total"), 1000);
    for compressed in [
        "ringws_inflate_input_bytes_total",
        "ringws_deflate_output_bytes_total",
    ] {
        let n = get(compressed);
        assert!(n > 0 && n < 1000, "{compressed} {n}");
    }
}

fn the_route_is_off_by_default(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let (reply, _) = scrape(server.addr(), None);
    assert_eq!(reply.status, 426);
}

ringws_tests::backend_tests! {
    known_traffic_is_counted_exactly,
    deflate_publishes_and_commands_are_counted,
    the_route_is_off_by_default,
}
