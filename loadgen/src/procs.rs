//! `--procs N`: the run split over N processes of this same program, each with
//! its own fd limit (and its own share of connections, rate and source
//! addresses), their results merged. A child learns its part from the
//! environment and writes its full result, histograms included, as JSON.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::Common;
use crate::client::{FAILURES, Report};
use crate::report::Outcome;
use crate::series::Sample;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const CHILD: &str = "LOADGEN_CHILD";
const CHILD_JSON: &str = "LOADGEN_CHILD_JSON";
/// The parent's epoch, CLOCK_MONOTONIC nanoseconds (one clock for every
/// process of the machine): children time broadcast probes and number their
/// per-second samples from it.
const EPOCH: &str = "LOADGEN_EPOCH_NS";

/// CLOCK_MONOTONIC now, in nanoseconds (the clock `Instant` reads on Linux).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The run's epoch: the parent's in a `--procs` child, else now.
pub fn epoch() -> Instant {
    let now = Instant::now();
    let mono = monotonic_ns();
    let Some(parent) = std::env::var(EPOCH)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return now;
    };
    let behind = Duration::from_nanos(mono.saturating_sub(parent));
    now.checked_sub(behind).unwrap_or(now)
}

/// This process's part of a `--procs` run.
#[derive(Debug, Clone)]
pub struct Child {
    pub index: usize,
    pub count: usize,
    json: PathBuf,
}

/// The parent's PID, for a child to notice that it is gone.
const PARENT: &str = "LOADGEN_PARENT_PID";

impl Child {
    /// This process's part, if it is a `--procs` child. A child dies with its
    /// parent (a parent killed mid-run leaves no child running).
    pub fn from_env() -> Option<Self> {
        let spec = std::env::var(CHILD).ok()?;
        // SAFETY: prctl(PR_SET_PDEATHSIG) only sets this process's own
        // death signal.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        let parent = std::env::var(PARENT)
            .ok()
            .and_then(|p| p.parse::<u32>().ok());
        if parent.is_some_and(|p| p != std::os::unix::process::parent_id()) {
            // The parent died before the death signal was set.
            std::process::exit(1);
        }
        let (index, count) = spec.split_once('/')?;
        Some(Self {
            index: index.parse().ok()?,
            count: count.parse().ok()?,
            json: std::env::var_os(CHILD_JSON)?.into(),
        })
    }
}

/// Narrows the options to a child's share.
pub fn share(c: &mut Common, child: Option<&Child>) {
    let Some(child) = child else { return };
    let (i, n) = (child.index, child.count.max(1));
    c.connections = crate::share_of(c.connections, c.per_conn(), n, i);
    c.ramp /= n as f64;
    if let Some(spec) = &c.sources
        && let Ok(all) = crate::parse_sources(&Some(spec.clone()))
        && !all.is_empty()
    {
        let a = (i * all.len() / n).min(all.len() - 1);
        let b = ((i + 1) * all.len() / n).clamp(a + 1, all.len());
        c.sources = Some(format!("{}-{}", all[a], all[b - 1]));
    }
    // The cores shared among the processes: a thread per core in all, not
    // per process (more threads than cores only wake more often, each
    // with less to do per wakeup).
    if c.threads.is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        c.threads = Some((cores / n).max(1));
    }
    c.procs = 1;
    c.json = None;
    c.plot = None;
}

/// Runs `c.procs` children with this process's own arguments (and `env`
/// added to their environment) and merges them.
pub fn run_children(name: &str, c: &Common, env: &[(&str, String)]) -> Result<Outcome> {
    let exe = std::env::current_exe()?;
    let dir = std::env::temp_dir().join(format!("loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let epoch_ns = monotonic_ns();
    let mut children = Vec::new();
    for i in 0..c.procs {
        let json = dir.join(format!("child-{i}.json"));
        let spawned = Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .env(CHILD, format!("{i}/{}", c.procs))
            .env(CHILD_JSON, &json)
            .env(EPOCH, epoch_ns.to_string())
            .env(PARENT, std::process::id().to_string())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn();
        match spawned {
            Ok(child) => children.push((child, json)),
            Err(e) => {
                // None left running: the ones started are ours to stop.
                for (mut child, _) in children {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("cannot start child process {i}: {e}").into());
            }
        }
    }
    eprintln!("loadgen: {name} over {} processes", c.procs);
    let mut merged: Option<Outcome> = None;
    // Every child is waited for (each is bounded by its own deadline), so a
    // failed one leaves no other running; the first failure is the error.
    let mut failed: Option<String> = None;
    for (i, (mut child, json)) in children.into_iter().enumerate() {
        let status = match child.wait() {
            Ok(status) => status,
            Err(e) => {
                failed.get_or_insert(format!("child process {i}: {e}"));
                continue;
            }
        };
        if !status.success() {
            failed.get_or_insert(format!("child process {i} of {} failed: {status}", c.procs));
            continue;
        }
        let outcome = match read_child(&json) {
            Ok(o) => o,
            Err(e) => {
                failed.get_or_insert(format!("child process {i}: unreadable result: {e}"));
                continue;
            }
        };
        match &mut merged {
            None => merged = Some(outcome),
            Some(m) => {
                m.report.merge(&outcome.report);
                // Ramps are sampled every 100 ms from each child's start: add them up
                // sample by sample.
                for (i, &(t, n)) in outcome.report.ramp.iter().enumerate() {
                    match m.report.ramp.get_mut(i) {
                        Some(slot) => slot.1 += n,
                        None => m.report.ramp.push((t, n)),
                    }
                }
                m.connections += outcome.connections;
                m.rss = match (m.rss, outcome.rss) {
                    (Some((b1, h1)), Some((b2, h2))) => Some((b1.min(b2), h1.max(h2))),
                    (a, b) => a.or(b),
                };
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(why) = failed {
        return Err(why.into());
    }
    let mut outcome = merged.ok_or("no child processes")?;
    outcome.name = name.to_owned();
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

fn hist_to_json(h: &Histogram<u64>) -> Value {
    Value::Array(
        h.iter_recorded()
            .map(|v| json!([v.value_iterated_to(), v.count_at_value()]))
            .collect(),
    )
}

fn hist_from_json(v: &Value) -> Histogram<u64> {
    let mut h = crate::series::histogram();
    for pair in v.as_array().into_iter().flatten() {
        if let (Some(value), Some(count)) = (pair[0].as_u64(), pair[1].as_u64()) {
            let _ = h.record_n(value.max(1), count);
        }
    }
    h
}

/// A child's result, complete enough to merge.
pub fn write_child(child: &Child, o: &Outcome) -> Result<()> {
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
    value["self_load"] = self_load;
    std::fs::write(&child.json, serde_json::to_vec(&value)?)?;
    Ok(())
}

fn read_child(path: &PathBuf) -> Result<Outcome> {
    let v: Value = serde_json::from_slice(&std::fs::read(path)?)?;
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
    Ok(Outcome {
        name: v["name"].as_str().unwrap_or("").to_owned(),
        connections: n("connections") as usize,
        seconds: v["seconds"].as_f64().unwrap_or(1.0),
        report,
        rss,
        elapsed: Duration::from_secs_f64(v["elapsed_s"].as_f64().unwrap_or(0.0)),
        fanout: None,
        http2: v["http2"].as_u64().map(|n| n as usize),
    })
}
