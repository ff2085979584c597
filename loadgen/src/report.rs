//! Progress display, the summary table and the JSON output.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::client::{FAILURES, Live, Report};
use crate::series::Sample;

/// One scenario's result.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    pub connections: usize,
    /// The measured phase, seconds.
    pub seconds: f64,
    pub report: Report,
    /// The server's resident memory before the run and at its end, with every
    /// connection held.
    pub rss: Option<(u64, u64)>,
    pub elapsed: Duration,
    /// Broadcast: how to judge and show the fan-out.
    pub fanout: Option<FanoutCheck>,
    /// `--http2`: the WebSockets per TCP connection asked for.
    pub http2: Option<usize>,
}

/// What a `broadcast` run reports beyond the table.
#[derive(Debug, Clone)]
pub struct FanoutCheck {
    /// URLs (nodes) the subscribers were spread over.
    pub nodes: usize,
    /// Missed messages do not fail the run.
    pub allow_loss: bool,
    /// (PID, CPU seconds it used during the run).
    pub cpu: Vec<(u32, f64)>,
}

/// User + system CPU time of a process so far, from /proc/PID/stat.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| ticks as f64 / per_second as f64)
}

impl Outcome {
    /// Messages per second; for scenarios without messages (connect, hold),
    /// connections opened per second during the ramp.
    pub fn rate(&self) -> f64 {
        let r = &self.report;
        if r.messages == 0 && r.ramp_secs > 0.0 {
            return r.connected as f64 / r.ramp_secs;
        }
        r.messages as f64 / self.seconds.max(1e-9)
    }

    /// The latency the table shows: messages', or for scenarios without
    /// messages, connect + upgrade.
    fn shown(&self) -> &hdrhistogram::Histogram<u64> {
        if self.report.latency.is_empty() {
            &self.report.handshake
        } else {
            &self.report.latency
        }
    }

    fn percentile_ms(&self, q: f64) -> Option<f64> {
        let h = self.shown();
        (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
    }

    fn errors(&self) -> u64 {
        let r = &self.report;
        r.failures.iter().sum::<u64>() + r.mismatches + r.lost + r.dropped + r.missed_pongs
    }

    /// Prints this scenario alone, writes JSON if asked.
    pub fn finish(self, json_path: &Option<String>) -> Result<(), Box<dyn std::error::Error>> {
        let r = &self.report;
        table(std::slice::from_ref(&self));
        println!(
            "connected {} / {}  failures: {}",
            r.connected,
            self.connections,
            FAILURES
                .iter()
                .zip(r.failures)
                .map(|((_, name), n)| format!("{name} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(line) = self.carried_line() {
            println!("{line}");
        }
        if !r.tls_handshake.is_empty() {
            println!(
                "connect+TLS handshake: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                r.tls_handshake.value_at_quantile(0.5) as f64 / 1000.0,
                r.tls_handshake.value_at_quantile(0.99) as f64 / 1000.0,
                r.tls_handshake.max() as f64 / 1000.0
            );
        }
        if !r.handshake.is_empty() {
            let what = if r.tls_handshake.is_empty() {
                "connect+upgrade"
            } else {
                "connect+TLS+upgrade"
            };
            println!(
                "{what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                r.handshake.value_at_quantile(0.5) as f64 / 1000.0,
                r.handshake.value_at_quantile(0.99) as f64 / 1000.0,
                r.handshake.max() as f64 / 1000.0
            );
        }
        if r.pings > 0 {
            println!(
                "pings {} pongs {} missed {}  live at end (answered last ping): {}",
                r.pings, r.pongs, r.missed_pongs, r.live_at_end
            );
        }
        if !r.pong_latency.is_empty() {
            let h = &r.pong_latency;
            println!(
                "ping to pong: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
                h.max() as f64 / 1000.0
            );
        }
        if r.published > 0 {
            // Every connection is a subscriber, the publisher included.
            let expected = r.published * r.connected;
            println!(
                "broadcast: published {}, delivered {} of {} expected ({:.2}%)",
                r.published,
                r.messages,
                expected,
                100.0 * r.messages as f64 / expected.max(1) as f64
            );
        }
        if r.messages > 0 {
            println!(
                "messages {}  mismatched {}  lost {}  dropped connections {}",
                r.messages, r.mismatches, r.lost, r.dropped
            );
        }
        let verdict = self.fanout.as_ref().map(|check| self.print_fanout(check));
        if r.churned > 0 {
            println!("churned (closed and reopened): {} connections", r.churned);
        }
        if let Some(line) = self.series_line() {
            println!("{line}");
        }
        if r.going_away > 0 {
            println!(
                "closed by the server with 1001: {} connections, {} echoes awaited then",
                r.going_away, r.going_away_unanswered
            );
        }
        if let Some((before, held)) = self.rss {
            let per = (held.saturating_sub(before)) as f64 / r.connected.max(1) as f64;
            println!(
                "server RSS: {:.1} MiB before, {:.1} MiB holding the connections: {:.0} bytes per connection",
                before as f64 / 1048576.0,
                held as f64 / 1048576.0,
                per
            );
        }
        println!("{}", r.self_load.line());
        if let Some(path) = json_path {
            write_json(path, std::slice::from_ref(&self))?;
        }
        match verdict {
            Some(Err(why)) => Err(why.into()),
            _ => Ok(()),
        }
    }

    /// The TCP connections that carried the WebSockets.
    pub fn tcp_connections(&self) -> u64 {
        match self.http2 {
            Some(_) => self.report.h2_connections,
            None => self.report.connected,
        }
    }

    /// `--http2`: how many TCP connections carried the WebSockets.
    fn carried_line(&self) -> Option<String> {
        let per = self.http2?;
        let r = &self.report;
        Some(format!(
            "{} WebSockets over {} HTTP/2 connections ({per} streams per connection asked for)",
            thousands(r.connected),
            thousands(self.tcp_connections())
        ))
    }

    /// The fan-out figures, local (the publisher's node) and across nodes, and
    /// the exactly-once verdict.
    fn print_fanout(&self, check: &FanoutCheck) -> Result<(), String> {
        let f = &self.report.fanout;
        let secs = self.seconds.max(1e-9);
        let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "fan-out over {} node(s): {} published, {} subscribers ({} on the publisher's node, {} on others, {} silent)",
            check.nodes,
            f.published_total,
            f.heard_local + f.heard_remote + f.silent,
            f.heard_local,
            f.heard_remote,
            f.silent
        );
        for (name, h, n, gap) in [
            ("local", &f.latency_local, f.messages_local, f.gap_local),
            (
                "across nodes",
                &f.latency_remote,
                f.messages_remote,
                f.gap_remote,
            ),
        ] {
            if h.is_empty() {
                continue;
            }
            println!(
                "  {name:<13} {:>10.0} deliveries/s  latency p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  longest gap {:.1} ms",
                n as f64 / secs,
                ms(h, 0.5),
                ms(h, 0.99),
                h.max() as f64 / 1000.0,
                gap as f64 / 1000.0
            );
        }
        for (pid, cpu) in &check.cpu {
            println!(
                "  cpu of pid {pid}: {:.3} s over the run, {:.1} µs per published message",
                cpu,
                cpu * 1e6 / f.published_total.max(1) as f64
            );
        }
        println!(
            "  exactly once: missing {}, duplicate or out of order {}, silent subscribers {} -> {}",
            f.missing(),
            f.out_of_order,
            f.silent,
            if f.exactly_once() {
                "OK"
            } else {
                "NOT exactly once"
            }
        );
        Self::fanout_verdict(f, check)
    }

    fn fanout_verdict(f: &crate::client::Fanout, check: &FanoutCheck) -> Result<(), String> {
        let missing = f.missing();
        if f.out_of_order > 0 || (!check.allow_loss && (missing > 0 || f.silent > 0)) {
            return Err(format!(
                "broadcast: {missing} missing, {} duplicate or out of order, {} silent subscribers",
                f.out_of_order, f.silent
            ));
        }
        Ok(())
    }

    /// The run's pass/fail beyond the figures: a broadcast's exactly-once check.
    pub fn verdict(&self) -> Result<(), String> {
        match &self.fanout {
            Some(check) => Self::fanout_verdict(&self.report.fanout, check),
            None => Ok(()),
        }
    }

    /// One line about the per-second samples: the range of the rate, the worst
    /// second's p99 and the seconds with errors.
    fn series_line(&self) -> Option<String> {
        let series = &self.report.series;
        if series.is_empty() {
            return None;
        }
        let mut rates: Vec<u64> = series.iter().map(Sample::rate).collect();
        rates.sort_unstable();
        let worst = series
            .iter()
            .filter_map(|s| Some((s.latency.quantile(0.99)?, s.t)))
            .max();
        let with_errors = series.iter().filter(|s| s.counts.errors() > 0).count();
        let mut line = format!(
            "per second ({} s): rate min {} median {} max {}",
            series.len(),
            rates[0],
            rates[rates.len() / 2],
            rates[rates.len() - 1]
        );
        if let Some((p99, t)) = worst {
            line += &format!("; worst p99 {:.2} ms at {t} s", p99 as f64 / 1000.0);
        }
        line += &format!("; seconds with errors {with_errors}");
        Some(line)
    }

    /// The broadcast's fan-out figures as JSON.
    fn fanout_json(&self, check: &FanoutCheck) -> Value {
        let r = &self.report;
        let f = &r.fanout;
        let lat = |h: &hdrhistogram::Histogram<u64>| {
            (!h.is_empty()).then(|| {
                json!({
                    "p50": h.value_at_quantile(0.5) as f64 / 1000.0,
                    "p99": h.value_at_quantile(0.99) as f64 / 1000.0,
                    "max": h.max() as f64 / 1000.0,
                })
            })
        };
        json!({
            "nodes": check.nodes,
            "published_total": f.published_total,
            "subscribers_local": f.heard_local,
            "subscribers_remote": f.heard_remote,
            "silent": f.silent,
            "deliveries_per_s_local": f.messages_local as f64 / self.seconds.max(1e-9),
            "deliveries_per_s_remote": f.messages_remote as f64 / self.seconds.max(1e-9),
            "latency_ms_local": lat(&f.latency_local),
            "latency_ms_remote": lat(&f.latency_remote),
            "longest_gap_ms_local": f.gap_local as f64 / 1000.0,
            "longest_gap_ms_remote": f.gap_remote as f64 / 1000.0,
            "missing": f.missing(),
            "out_of_order": f.out_of_order,
            "exactly_once": f.exactly_once(),
            "cpu": check.cpu.iter().map(|(pid, s)| json!({
                "pid": pid,
                "seconds": s,
                "us_per_publish": s * 1e6 / f.published_total.max(1) as f64,
            })).collect::<Vec<_>>(),
        })
    }

    pub(crate) fn to_json(&self) -> Value {
        let r = &self.report;
        let pct = |q: f64| self.percentile_ms(q);
        json!({
            "scenario": self.name,
            "connections": self.connections,
            "seconds": self.seconds,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "connected": r.connected,
            "transport": if self.http2.is_some() { "h2" } else { "http/1.1" },
            "tcp_connections": self.tcp_connections(),
            "streams_per_connection": self.http2.unwrap_or(1),
            "failures": FAILURES.iter().zip(r.failures).map(|((_, n), c)| (n.to_string(), json!(c))).collect::<serde_json::Map<_, _>>(),
            "handshake_ms": {
                "p50": (!r.handshake.is_empty()).then(|| r.handshake.value_at_quantile(0.5) as f64 / 1000.0),
                "p99": (!r.handshake.is_empty()).then(|| r.handshake.value_at_quantile(0.99) as f64 / 1000.0),
            },
            "pong_ms": (!r.pong_latency.is_empty()).then(|| json!({
                "p50": r.pong_latency.value_at_quantile(0.5) as f64 / 1000.0,
                "p99": r.pong_latency.value_at_quantile(0.99) as f64 / 1000.0,
                "max": r.pong_latency.max() as f64 / 1000.0,
            })),
            "tls_handshake_ms": {
                "p50": (!r.tls_handshake.is_empty()).then(|| r.tls_handshake.value_at_quantile(0.5) as f64 / 1000.0),
                "p99": (!r.tls_handshake.is_empty()).then(|| r.tls_handshake.value_at_quantile(0.99) as f64 / 1000.0),
            },
            "messages": r.messages,
            "messages_per_s": r.messages as f64 / self.seconds.max(1e-9),
            "connections_per_s": (r.ramp_secs > 0.0).then(|| r.connected as f64 / r.ramp_secs),
            "mb_per_s": r.bytes as f64 / self.seconds.max(1e-9) / 1e6,
            "latency_ms": { "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "p99.9": pct(0.999), "max": (!r.latency.is_empty()).then(|| r.latency.max() as f64 / 1000.0) },
            "mismatches": r.mismatches,
            "lost": r.lost,
            "dropped": r.dropped,
            "going_away": r.going_away,
            "going_away_unanswered": r.going_away_unanswered,
            "pings": r.pings,
            "pongs": r.pongs,
            "published": r.published,
            "expected_deliveries": r.published * r.connected,
            "missed_pongs": r.missed_pongs,
            "live_at_end": r.live_at_end,
            "server_rss": self.rss.map(|(b, h)| json!({"before": b, "held": h, "bytes_per_connection": (h.saturating_sub(b)) as f64 / r.connected.max(1) as f64})),
            "ramp": r.ramp,
            "ramp_s": r.ramp_secs,
            "churned": r.churned,
            "load_generator": {
                "bottleneck": r.self_load.bottleneck(),
                "busiest_thread_cpu": r.self_load.busiest_thread,
                "scheduled_sends": r.self_load.scheduled,
                "late_sends": r.self_load.late,
                "max_lag_ms": r.self_load.max_lag_us as f64 / 1000.0,
            },
            "fanout": self.fanout.as_ref().map(|check| self.fanout_json(check)),
            "series": r.series.iter().map(Sample::to_json).collect::<Vec<_>>(),
        })
    }
}

/// The summary table of several scenarios.
pub fn table(outcomes: &[Outcome]) {
    println!(
        "{:<36} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "scenario", "conns", "rate/s", "MB/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
    );
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    for o in outcomes {
        let r = &o.report;
        println!(
            "{:<36} {:>8} {:>11.0} {:>9.2} {:>9} {:>9} {:>9} {:>9} {:>7}",
            o.name,
            r.connected,
            o.rate(),
            r.bytes as f64 / o.seconds.max(1e-9) / 1e6,
            ms(o.percentile_ms(0.5)),
            ms(o.percentile_ms(0.99)),
            ms(o.percentile_ms(0.999)),
            ms((!o.shown().is_empty()).then(|| o.shown().max() as f64 / 1000.0)),
            o.errors()
        );
    }
    println!(
        "rate/s: messages per second (connect, hold: connections opened per second); \
         latency: echo round trip or fan-out delay (connect, hold: connect + upgrade); \
         errors: failed connects, mismatched or lost messages, dropped connections, missed pongs"
    );
}

/// The table of `compare`: one scenario against several servers, each row
/// with its ratio to the first server's rate and p99.
pub fn compare_table(scenario: &str, outcomes: &[Outcome]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    let ratio = |v: Option<f64>, base: Option<f64>| match (v, base) {
        (Some(v), Some(b)) if b > 0.0 => format!("x{:.2}", v / b),
        _ => "-".to_string(),
    };
    let width = outcomes
        .iter()
        .map(|o| o.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let _ = writeln!(out, "compare: {scenario} on {} servers", outcomes.len());
    let _ = writeln!(
        out,
        "{:<width$} {:>8} {:>11} {:>7} {:>9} {:>9} {:>7} {:>9} {:>9} {:>7} {:>9}",
        "server",
        "conns",
        "rate/s",
        "rate",
        "p50 ms",
        "p99 ms",
        "p99",
        "p99.9 ms",
        "max ms",
        "errors",
        "B/conn"
    );
    let base = outcomes.first();
    for o in outcomes {
        let r = &o.report;
        let bytes = o.rss.map(|(before, held)| {
            format!(
                "{:.0}",
                held.saturating_sub(before) as f64 / r.connected.max(1) as f64
            )
        });
        let _ = writeln!(
            out,
            "{:<width$} {:>8} {:>11.0} {:>7} {:>9} {:>9} {:>7} {:>9} {:>9} {:>7} {:>9}",
            o.name,
            r.connected,
            o.rate(),
            ratio(Some(o.rate()), base.map(Outcome::rate)),
            ms(o.percentile_ms(0.5)),
            ms(o.percentile_ms(0.99)),
            ratio(
                o.percentile_ms(0.99),
                base.and_then(|b| b.percentile_ms(0.99))
            ),
            ms(o.percentile_ms(0.999)),
            ms((!o.shown().is_empty()).then(|| o.shown().max() as f64 / 1000.0)),
            o.errors(),
            bytes.as_deref().unwrap_or("-"),
        );
    }
    let _ = writeln!(
        out,
        "rate: against the first server's; latency: echo round trip or fan-out delay \
         (connect, hold: connect + upgrade); B/conn: server RSS per connection (--server-pid)"
    );
    out
}

pub fn write_json(path: &str, outcomes: &[Outcome]) -> Result<(), Box<dyn std::error::Error>> {
    let value = Value::Array(outcomes.iter().map(Outcome::to_json).collect());
    std::fs::write(path, serde_json::to_string_pretty(&value)?)?;
    Ok(())
}

/// A process's resident memory in bytes, from /proc.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

pub fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1024 && b % 1024 == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// A spinner with live counts (hidden when stderr is not a terminal).
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(name: &str, connections: u64) -> Self {
        // A --procs child leaves the display to its parent.
        if std::env::var_os("LOADGEN_CHILD").is_some() {
            return Self {
                bar: ProgressBar::hidden(),
            };
        }
        let bar = ProgressBar::new(connections);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix} [{elapsed_precise}] {bar:30} {pos}/{len} open  {msg}",
            )
            .expect("valid template"),
        );
        bar.set_prefix(name.to_owned());
        Self { bar }
    }

    pub fn update(&self, live: &Live) {
        use std::sync::atomic::Ordering::Relaxed;
        self.bar.set_position(live.open.load(Relaxed));
        self.bar.set_message(format!(
            "{} failed  {} messages",
            live.failed.load(Relaxed),
            live.messages.load(Relaxed)
        ));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
