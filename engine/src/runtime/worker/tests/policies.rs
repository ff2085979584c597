//! What the worker enforces on input: rate limits, the PROXY protocol header,
//! and the metrics route.

use super::*;

/// Several client messages in one read, as a fast sender's arrive.
fn texts(h: &mut Harness, key: usize, texts: &[&str]) -> Vec<u8> {
    texts
        .iter()
        .flat_map(|text| h.text_wire(key, text))
        .collect()
}

#[test]
fn rate_limit_pause_stops_reading_until_the_tokens_are_back() {
    let mut h = Harness::new(Config {
        rate_limit: RateLimit::none().messages(10, 2),
        ..config()
    });
    let (key, _) = h.open();
    let free_request = String::from_utf8(REQUEST.to_vec())
        .unwrap()
        .replace("/chat", "/free");
    let (free, _) = h.open_with(free_request.as_bytes());
    h.seen.take();
    // Four messages in one read: the burst of two goes to the handler, the
    // rest is held, and the socket is paused.
    let wire = texts(&mut h, key, &["a", "b", "c", "d"]);
    h.send_raw(key, &wire);
    let turn = h.turn();
    assert_eq!(
        h.frames(key),
        [Frame::Text("a".into()), Frame::Text("b".into())]
    );
    assert!(h.socket(key).paused);
    assert!(
        turn.wait <= Duration::from_millis(100),
        "woken when a token is back: {:?}",
        turn.wait
    );
    // The connection exempted by on_upgrade is not limited at all.
    let wire = texts(&mut h, free, &["1", "2", "3", "4", "5"]);
    h.send_raw(free, &wire);
    h.turn();
    assert_eq!(h.frames(free).len(), 5);
    assert!(!h.socket(free).paused && h.socket(free).pauses == 0);
    // At 10/s one more message every 100 ms, in order; then read again.
    h.run_for(90);
    assert_eq!(h.frames(key), []);
    h.run_for(20);
    assert_eq!(h.frames(key), [Frame::Text("c".into())]);
    assert!(h.socket(key).paused);
    h.run_for(100);
    assert_eq!(h.frames(key), [Frame::Text("d".into())]);
    assert!(!h.socket(key).paused);
    assert_eq!((h.socket(key).pauses, h.socket(key).resumes), (1, 1));
    assert!(!h.socket(key).closed);
    h.worker.end_turn(h.now, &mut h.io);
    assert_eq!(h.worker.stats.rate_limit_pauses.load(Ordering::Relaxed), 1);
}

#[test]
fn rate_limit_pause_of_bytes_outlasts_the_pong_timeout_without_an_abort() {
    let mut h = Harness::new(Config {
        rate_limit: RateLimit::none().bytes(1000, 1000),
        ping_interval: Some(Duration::from_millis(500)),
        pong_timeout: Duration::from_millis(500),
        ..config()
    });
    let (key, id) = h.open();
    // 4 KB read at once: 3 s of debt at 1000 bytes/s.
    let big = "x".repeat(4000);
    h.send_text(key, &big);
    h.turn();
    assert!(h.socket(key).paused);
    h.run_for(2500);
    assert!(h.socket(key).paused && !h.socket(key).closed);
    h.run_for(700);
    assert!(!h.socket(key).paused && !h.socket(key).closed);
    assert_eq!(h.seen.closes(), []);
    h.send_close(key, 1000, "");
    h.turn();
    assert_eq!(
        h.seen.closes(),
        [(id, 1000, String::new(), CloseCause::Peer)]
    );
}

#[test]
fn rate_limit_close_sends_1008_and_discards_the_rest() {
    let mut h = Harness::new(Config {
        rate_limit: RateLimit::none()
            .messages(10, 2)
            .policy(RateLimitPolicy::Close),
        ..config()
    });
    let (key, id) = h.open();
    let (other, _) = h.open();
    let wire = texts(&mut h, key, &["a", "b", "c", "d"]);
    h.send_raw(key, &wire);
    h.send_text(other, "unhurt");
    h.turn();
    assert_eq!(
        h.frames(key),
        [
            Frame::Text("a".into()),
            Frame::Text("b".into()),
            close_frame(1008, "rate limit exceeded")
        ]
    );
    assert_eq!(h.frames(other), [Frame::Text("unhurt".into())]);
    assert!(!h.socket(key).paused);
    h.send_close(key, 1008, "");
    h.turn();
    assert_eq!(
        h.seen.closes(),
        [(id, 1008, String::new(), CloseCause::RateLimit)]
    );
}

/// A listener on which every connection from 127.0.0.0/8 must send a PROXY
/// header (`mode`), with the metrics route on.
fn proxy_config(mode: ProxyMode, trusted: &str) -> Config {
    Config {
        addrs: vec!["127.0.0.1:0".parse().unwrap()],
        proxy: vec![ProxyProtocol {
            mode,
            trusted: vec![trusted.parse().unwrap()],
        }],
        ..config()
    }
}

#[test]
fn proxy_header_gives_the_client_address_even_cut_byte_by_byte() {
    let mut h = Harness::new(proxy_config(ProxyMode::Required, "127.0.0.0/8"));
    let key = h.accept();
    let mut wire = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\n".to_vec();
    wire.extend_from_slice(REQUEST);
    for byte in wire.chunks(1) {
        h.send_raw(key, byte);
    }
    h.turn();
    assert!(h.socket(key).wire.starts_with(b"HTTP/1.1 101"));
    assert_eq!(*h.seen.1.borrow(), ["203.0.113.9:5555".parse().unwrap()]);
}

#[test]
fn proxy_required_refuses_missing_malformed_and_untrusted() {
    let mut h = Harness::new(proxy_config(ProxyMode::Required, "127.0.0.0/8"));
    // No header: closed without an answer, the next one is served.
    let bare = h.accept();
    h.send_raw(bare, REQUEST);
    let malformed = h.accept();
    h.send_raw(malformed, b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n");
    let good = h.accept();
    h.send_raw(good, b"PROXY UNKNOWN\r\n");
    h.send_raw(good, REQUEST);
    h.turn();
    for key in [bare, malformed] {
        assert!(h.socket(key).closed && h.socket(key).wire.is_empty());
    }
    assert!(h.socket(good).wire.starts_with(b"HTTP/1.1 101"));
    // UNKNOWN keeps the connection's own address.
    assert_eq!(*h.seen.1.borrow(), ["127.0.0.1:40000".parse().unwrap()]);
    // From outside the trusted networks nothing is accepted at all.
    let mut h = Harness::new(proxy_config(ProxyMode::Required, "10.0.0.0/8"));
    assert_eq!(h.worker.on_accept("127.0.0.1:1".parse().unwrap(), 0), None);
    h.turn();
    assert_eq!(h.worker.stats.proxy_refused.load(Ordering::Relaxed), 1);
}

#[test]
fn proxy_optional_serves_both_and_refuses_an_untrusted_header() {
    let mut h = Harness::new(proxy_config(ProxyMode::Optional, "127.0.0.0/8"));
    let (plain, _) = h.open();
    assert!(!h.socket(plain).closed);
    let mut wire = b"PROXY TCP6 2001:db8::1 ::1 4000 80\r\n".to_vec();
    wire.extend_from_slice(REQUEST);
    h.open_with(&wire);
    assert_eq!(
        *h.seen.1.borrow(),
        [
            "127.0.0.1:40000".parse().unwrap(),
            "[2001:db8::1]:4000".parse().unwrap()
        ]
    );
    // Untrusted: a plain request is served, a header closes the connection.
    let mut h = Harness::new(proxy_config(ProxyMode::Optional, "10.0.0.0/8"));
    h.open();
    let key = h.accept();
    h.send_raw(key, &wire);
    h.turn();
    assert!(h.socket(key).closed && h.socket(key).wire.is_empty());
}

#[test]
fn proxy_slowloris_is_bounded_by_the_handshake_timeout() {
    let mut h = Harness::new(proxy_config(ProxyMode::Required, "127.0.0.0/8"));
    let key = h.accept();
    h.send_raw(key, b"PROXY TCP4 1");
    h.run_for(1990);
    assert!(!h.socket(key).closed);
    h.run_for(510);
    assert!(h.socket(key).closed && h.socket(key).wire.is_empty());
}

#[test]
fn the_metrics_route_answers_from_the_published_counters() {
    let mut h = Harness::new(Config {
        metrics_route: Some("/metrics".into()),
        ..config()
    });
    let (key, _) = h.open();
    h.send_text(key, "hello");
    h.send_control(key, OpCode::Ping, b"");
    h.turn();
    let scrape = h.accept();
    h.send_raw(scrape, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    h.turn();
    let reply = String::from_utf8(h.socket(scrape).wire.clone()).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains("Content-Type: text/plain; version=0.0.4"),
        "{reply}"
    );
    for line in [
        "ringws_accepted_total{backend=\"epoll\"} 1",
        "ringws_upgraded_total{backend=\"epoll\"} 1",
        "ringws_messages_received_total{backend=\"epoll\"} 1",
        "ringws_messages_sent_total{backend=\"epoll\"} 1",
        "ringws_pings_received_total{backend=\"epoll\"} 1",
        "ringws_pongs_sent_total{backend=\"epoll\"} 1",
        "ringws_connections{backend=\"epoll\",worker=\"0\"} 1",
        "ringws_handshake_duration_seconds_count{backend=\"epoll\"} 1",
    ] {
        assert!(reply.lines().any(|l| l == line), "{line} in\n{reply}");
    }
    // OpenMetrics where asked; other methods are refused.
    let scrape = h.accept();
    h.send_raw(
        scrape,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
    );
    let post = h.accept();
    h.send_raw(
        post,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    h.turn();
    let reply = String::from_utf8(h.socket(scrape).wire.clone()).unwrap();
    assert!(reply.contains("application/openmetrics-text") && reply.ends_with("# EOF\n"));
    assert!(h.socket(post).wire.starts_with(b"HTTP/1.1 405"));
}
