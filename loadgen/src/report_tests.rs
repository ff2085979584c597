use super::*;

fn outcome(name: &str, messages: u64, latencies: &[u64], rss: Option<(u64, u64)>) -> Outcome {
    let mut report = Report::empty();
    report.connected = 10;
    report.messages = messages;
    for &v in latencies {
        report.latency.record(v).unwrap();
    }
    Outcome {
        name: name.to_owned(),
        connections: 10,
        seconds: 2.0,
        report,
        rss,
        elapsed: Duration::from_secs(3),
        fanout: None,
        http2: None,
    }
}

fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
        .split_whitespace()
        .collect()
}

#[test]
fn compare_table_rates_against_the_first_server() {
    let a = outcome(
        "ringws",
        2000,
        &[1000, 1000, 3000],
        Some((1 << 20, (1 << 20) + 5000)),
    );
    let mut b = outcome("other-server", 1000, &[2000, 2000, 9000], None);
    b.report.mismatches = 2;
    b.report.dropped = 1;
    let table = compare_table("echo", &[a, b]);
    assert!(table.starts_with("compare: echo on 2 servers\n"), "{table}");
    let header = row(&table, "server");
    assert_eq!(header[..4], ["server", "conns", "rate/s", "rate"]);
    let first = row(&table, "ringws");
    // 2000 messages over 2 s; x1.00 against itself; p99 3 ms; 500 bytes each.
    assert_eq!(first[1], "10");
    assert_eq!(first[2], "1000");
    assert_eq!(first[3], "x1.00");
    assert_eq!(first[5], "3.001");
    assert_eq!(first[6], "x1.00");
    assert_eq!(first[9], "0");
    assert_eq!(first[10], "500");
    let second = row(&table, "other-server");
    assert_eq!(second[2], "500");
    assert_eq!(second[3], "x0.50");
    assert_eq!(second[6], "x3.00");
    assert_eq!(second[9], "3");
    assert_eq!(second[10], "-");
}

#[test]
fn http2_runs_say_how_many_tcp_connections_carried_them() {
    let mut o = outcome("echo", 0, &[], None);
    o.report.connected = 1000;
    assert_eq!(o.carried_line(), None);
    assert_eq!(o.to_json()["tcp_connections"], 1000);
    o.http2 = Some(100);
    o.report.h2_connections = 10;
    assert_eq!(
        o.carried_line().unwrap(),
        "1,000 WebSockets over 10 HTTP/2 connections (100 streams per connection asked for)"
    );
    let v = o.to_json();
    assert_eq!(v["tcp_connections"], 10);
    assert_eq!(v["transport"], "h2");
    assert_eq!(v["streams_per_connection"], 100);
    assert_eq!(thousands(1_234_567), "1,234,567");
    assert_eq!(thousands(12), "12");
}

#[test]
fn compare_table_without_latency_shows_dashes() {
    let table = compare_table(
        "connect",
        &[outcome("a", 0, &[], None), outcome("b", 0, &[], None)],
    );
    let a = row(&table, "a ");
    assert_eq!(a[4..9], ["-", "-", "-", "-", "-"]);
}
