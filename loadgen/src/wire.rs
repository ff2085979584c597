//! The full result of a run as JSON, histograms and per-second samples
//! included: what a `--procs` child writes for its parent and what an agent
//! sends its controller (`--agents`), complete enough to merge exactly; and
//! the agent protocol's framing: a 4-byte big-endian length, then that many
//! bytes of one JSON object, every read bounded by the length its reader
//! allows.

use std::io::{self, Read, Write};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::client::{FAILURES, Report};
use crate::report::Outcome;
use crate::series::Sample;

/// The agent protocol's version: a controller and an agent that differ
/// refuse each other at hello.
pub const PROTOCOL: u64 = 2;
/// The longest message a controller sends (hello, ping, plan): an agent
/// reads no more, so garbage (an HTTP request, a port scan) is refused at
/// its first four bytes.
pub const MAX_CONTROL: u32 = 1 << 20;
/// The longest message an agent sends: its result, whose size grows with
/// the run's seconds (one sample a second, histograms as their buckets).
pub const MAX_RESULT: u32 = 256 << 20;

/// Writes one message.
pub fn send(w: &mut impl Write, message: &Value) -> io::Result<()> {
    let body = serde_json::to_vec(message)?;
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 4 GiB"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(&body)?;
    w.flush()
}

/// Reads one message of at most `max` bytes, a JSON object; the error says
/// what happened in words (closed, silent past the socket's read timeout,
/// too long, not JSON).
pub fn receive(r: &mut impl Read, max: u32) -> Result<Value, String> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(|e| describe(&e))?;
    let len = u32::from_be_bytes(len);
    if len > max {
        return Err(format!(
            "sent a message of {len} bytes, more than the {max} allowed (not this protocol?)"
        ));
    }
    let mut body = vec![0; len as usize];
    r.read_exact(&mut body).map_err(|e| describe(&e))?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("sent a message that is not JSON: {e}"))?;
    if !value.is_object() {
        return Err("sent a message that is not a JSON object".into());
    }
    Ok(value)
}

/// An I/O error of the protocol's socket in words.
pub fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => "closed the connection".into(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            "sent nothing within the timeout".into()
        }
        _ => e.to_string(),
    }
}

/// CLOCK_REALTIME now, in nanoseconds since the Unix epoch: the clock hosts
/// share (through NTP), so the one an agent's start time is given in.
pub fn realtime_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

pub fn hist_to_json(h: &Histogram<u64>) -> Value {
    Value::Array(
        h.iter_recorded()
            .map(|v| json!([v.value_iterated_to(), v.count_at_value()]))
            .collect(),
    )
}

pub fn hist_from_json(v: &Value) -> Histogram<u64> {
    let mut h = crate::series::histogram();
    for pair in v.as_array().into_iter().flatten() {
        if let (Some(value), Some(count)) = (pair[0].as_u64(), pair[1].as_u64()) {
            let _ = h.record_n(value.max(1), count);
        }
    }
    h
}

/// An outcome as JSON, for [`outcome_from_json`] on the other side.
pub fn outcome_to_json(o: &Outcome) -> Value {
    let r = &o.report;
    let self_load = json!({
        "busiest_thread": r.self_load.busiest_thread,
        "scheduled": r.self_load.scheduled,
        "late": r.self_load.late,
        "max_lag_us": r.self_load.max_lag_us,
    });
    let mut value = json!({
        "name": o.name,
        "connections": o.connections,
        "seconds": o.seconds,
        "elapsed_s": o.elapsed.as_secs_f64(),
        "rss": o.rss,
        "connected": r.connected,
        "failures": r.failures,
        "handshake": hist_to_json(&r.handshake),
        "tls_handshake": hist_to_json(&r.tls_handshake),
        "latency": hist_to_json(&r.latency),
        "pong_latency": hist_to_json(&r.pong_latency),
        "messages": r.messages,
        "bytes": r.bytes,
        "mismatches": r.mismatches,
        "lost": r.lost,
        "pings": r.pings,
        "pongs": r.pongs,
        "published": r.published,
        "missed_pongs": r.missed_pongs,
        "live_at_end": r.live_at_end,
        "dropped": r.dropped,
        "ramp": r.ramp,
        "ramp_secs": r.ramp_secs,
        "churned": r.churned,
        "h2_connections": r.h2_connections,
        "http2": o.http2,
        "series": r.series.iter().map(Sample::to_child_json).collect::<Vec<_>>(),
        "fanout": {
            "published_total": r.fanout.published_total,
            "latency_local": hist_to_json(&r.fanout.latency_local),
            "latency_remote": hist_to_json(&r.fanout.latency_remote),
            "messages_local": r.fanout.messages_local,
            "messages_remote": r.fanout.messages_remote,
            "heard_local": r.fanout.heard_local,
            "heard_remote": r.fanout.heard_remote,
            "silent": r.fanout.silent,
            "sum_first": r.fanout.sum_first,
            "sum_distinct": r.fanout.sum_distinct,
            "out_of_order": r.fanout.out_of_order,
            "gap_local": r.fanout.gap_local,
            "gap_remote": r.fanout.gap_remote,
        },
    });
    // Apart: one more key would take json! past its recursion limit.
    value["going_away"] = json!(r.going_away);
    value["going_away_unanswered"] = json!(r.going_away_unanswered);
    value["self_load"] = self_load;
    value
}

/// An outcome from [`outcome_to_json`]'s JSON; missing figures read as zero.
pub fn outcome_from_json(v: &Value) -> Outcome {
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let mut report = Report::empty();
    report.connected = n("connected");
    for (i, slot) in report.failures.iter_mut().enumerate().take(FAILURES.len()) {
        *slot = v["failures"][i].as_u64().unwrap_or(0);
    }
    report.handshake = hist_from_json(&v["handshake"]);
    report.tls_handshake = hist_from_json(&v["tls_handshake"]);
    report.latency = hist_from_json(&v["latency"]);
    report.pong_latency = hist_from_json(&v["pong_latency"]);
    report.messages = n("messages");
    report.bytes = n("bytes");
    report.mismatches = n("mismatches");
    report.lost = n("lost");
    report.pings = n("pings");
    report.pongs = n("pongs");
    report.published = n("published");
    report.missed_pongs = n("missed_pongs");
    report.live_at_end = n("live_at_end");
    report.dropped = n("dropped");
    report.going_away = n("going_away");
    report.going_away_unanswered = n("going_away_unanswered");
    report.ramp_secs = v["ramp_secs"].as_f64().unwrap_or(0.0);
    report.churned = n("churned");
    let s = &v["self_load"];
    report.self_load = crate::client::SelfLoad {
        busiest_thread: s["busiest_thread"].as_f64().unwrap_or(0.0),
        scheduled: s["scheduled"].as_u64().unwrap_or(0),
        late: s["late"].as_u64().unwrap_or(0),
        max_lag_us: s["max_lag_us"].as_u64().unwrap_or(0),
    };
    report.h2_connections = n("h2_connections");
    report.series = v["series"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Sample::from_child_json)
        .collect();
    let f = &v["fanout"];
    let fan = |k: &str| f[k].as_u64().unwrap_or(0);
    report.fanout.published_total = fan("published_total");
    report.fanout.latency_local = hist_from_json(&f["latency_local"]);
    report.fanout.latency_remote = hist_from_json(&f["latency_remote"]);
    report.fanout.messages_local = fan("messages_local");
    report.fanout.messages_remote = fan("messages_remote");
    report.fanout.heard_local = fan("heard_local");
    report.fanout.heard_remote = fan("heard_remote");
    report.fanout.silent = fan("silent");
    report.fanout.sum_first = fan("sum_first");
    report.fanout.sum_distinct = fan("sum_distinct");
    report.fanout.out_of_order = fan("out_of_order");
    report.fanout.gap_local = fan("gap_local");
    report.fanout.gap_remote = fan("gap_remote");
    report.ramp = v["ramp"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p[0].as_f64()?, p[1].as_u64()?)))
        .collect();
    let rss = v["rss"]
        .as_array()
        .and_then(|a| Some((a.first()?.as_u64()?, a.get(1)?.as_u64()?)));
    Outcome {
        name: v["name"].as_str().unwrap_or("").to_owned(),
        connections: n("connections") as usize,
        seconds: v["seconds"].as_f64().unwrap_or(1.0),
        report,
        rss,
        // Checked: an agent's answer comes over the network.
        elapsed: Duration::try_from_secs_f64(v["elapsed_s"].as_f64().unwrap_or(0.0))
            .unwrap_or_default(),
        fanout: None,
        http2: v["http2"].as_u64().map(|n| n as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn messages_round_trip() {
        let mut buf = Vec::new();
        send(&mut buf, &json!({"type": "ping", "id": 3})).unwrap();
        send(&mut buf, &json!({"type": "tick", "t": 1})).unwrap();
        let mut r = &buf[..];
        assert_eq!(receive(&mut r, MAX_CONTROL).unwrap()["id"], 3);
        assert_eq!(receive(&mut r, MAX_CONTROL).unwrap()["t"], 1);
        let closed = receive(&mut r, MAX_CONTROL).unwrap_err();
        assert_eq!(closed, "closed the connection");
    }

    #[test]
    fn garbage_and_long_messages_are_refused_unread() {
        // An HTTP request's first four bytes read as a length of ~1.2 GB.
        let mut http = &b"GET / HTTP/1.1\r\n\r\n"[..];
        let e = receive(&mut http, MAX_CONTROL).unwrap_err();
        assert!(e.contains("more than the 1048576 allowed"), "{e}");
        let mut not_json = &framed(b"hello")[..];
        assert!(
            receive(&mut not_json, MAX_CONTROL)
                .unwrap_err()
                .contains("not JSON")
        );
        let mut not_object = &framed(b"[1, 2]")[..];
        assert!(
            receive(&mut not_object, MAX_CONTROL)
                .unwrap_err()
                .contains("not a JSON object")
        );
        // Cut short: the length promised more than came.
        let mut short = &framed(b"{\"type\": \"hello\"}")[..10];
        assert_eq!(
            receive(&mut short, MAX_CONTROL).unwrap_err(),
            "closed the connection"
        );
    }

    #[test]
    fn a_streamed_second_and_a_heartbeat_round_trip_and_cut_are_refused() {
        let mut sample = Sample {
            t: 4,
            open: 9,
            ..Sample::default()
        };
        sample.counts.messages = 1234;
        sample.latency = crate::series::Sparse(vec![(100, 3), (2047, 1)]);
        sample.handshake = crate::series::Sparse(vec![(500, 9)]);
        let mut buf = Vec::new();
        send(
            &mut buf,
            &json!({"type": "second", "sample": sample.to_child_json()}),
        )
        .unwrap();
        send(&mut buf, &json!({"type": "alive"})).unwrap();
        let mut r = &buf[..];
        let m = receive(&mut r, MAX_RESULT).unwrap();
        assert_eq!(m["type"], "second");
        assert_eq!(Sample::from_child_json(&m["sample"]), Some(sample));
        assert_eq!(receive(&mut r, MAX_CONTROL).unwrap()["type"], "alive");
        // Cut anywhere inside (the length or the body): refused, not misread.
        let first = 4 + u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        for cut in [2, 4, 10, first - 1] {
            let mut short = &buf[..cut];
            assert_eq!(
                receive(&mut short, MAX_RESULT).unwrap_err(),
                "closed the connection",
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn outcome_survives_the_wire() {
        let mut report = Report::empty();
        report.connected = 7;
        report.messages = 1000;
        // Closes with 1001 (a restart): restart-live.sh counts them.
        report.going_away = 3;
        report.going_away_unanswered = 1;
        report.dropped = 2;
        report.latency.record(1234).unwrap();
        report.latency.record(99_000).unwrap();
        let o = Outcome {
            name: "echo".into(),
            connections: 7,
            seconds: 3.0,
            report,
            rss: Some((1, 2)),
            elapsed: Duration::from_millis(3500),
            fanout: None,
            http2: None,
        };
        let back = outcome_from_json(&outcome_to_json(&o));
        assert_eq!(back.report.connected, 7);
        assert_eq!(back.report.messages, 1000);
        assert_eq!(back.report.going_away, 3);
        assert_eq!(back.report.going_away_unanswered, 1);
        assert_eq!(back.report.dropped, 2);
        assert_eq!(back.report.latency.len(), 2);
        assert_eq!(back.report.latency.max(), o.report.latency.max());
        assert_eq!(back.rss, Some((1, 2)));
        // A hostile elapsed time does not panic.
        let bad = outcome_from_json(&json!({"elapsed_s": -1.0, "connected": 1}));
        assert_eq!(bad.elapsed, Duration::ZERO);
        assert_eq!(bad.report.connected, 1);
    }
}
