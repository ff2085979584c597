//! `--procs N`: the run split over N processes of this same program, each with
//! its own fd limit (and its own share of connections, rate and source
//! addresses), their results merged. A child learns its part from the
//! environment and writes its full result, histograms included, as JSON;
//! while it runs, each second it completes as a line of JSON on its stdout
//! (merged by second in the parent, which streams them on where it is an
//! agent).

use std::ffi::OsString;
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::Common;
use crate::report::Outcome;
use crate::series::Sample;
use crate::stream::Outbox;

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

/// Narrows the options to part `i` of `n` (a `--procs` child's, an agent's):
/// its connections, ramp and source addresses.
pub fn share_part(c: &mut Common, i: usize, n: usize) {
    let n = n.max(1);
    c.connections = crate::share_of(c.connections, c.per_conn(), n, i);
    c.ramp /= n as f64;
    if let Some(spec) = &c.sources
        && let Ok(all) = crate::parse_sources(&Some(spec.clone()))
        && !all.is_empty()
    {
        let a = (i.saturating_mul(all.len()) / n).min(all.len() - 1);
        let b = (i.saturating_add(1).saturating_mul(all.len()) / n).clamp(a + 1, all.len());
        c.sources = Some(format!("{}-{}", all[a], all[b - 1]));
    }
}

/// What a child runs with besides its part: its share of the cores, no
/// children of its own, no files (the parent writes them).
pub fn child_settings(c: &mut Common, child: &Child) {
    let n = child.count.max(1);
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
    // The parent (or the controller) samples the server.
    c.server_pid = None;
}

/// Adds another part's result (a child's, an agent's) to `m`: histograms,
/// counters and per-second samples add up; ramps sample by sample.
pub fn merge(m: &mut Outcome, outcome: &Outcome) {
    m.report.merge(&outcome.report);
    // The whole run's length (a partial agent's part is shorter).
    m.seconds = m.seconds.max(outcome.seconds);
    // Ramps are sampled every 100 ms from each part's start: add them up
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

/// Runs `c.procs` children with the scenario's arguments `args` (and `env`
/// added to their environment) and merges them.
pub fn run_children(
    name: &str,
    c: &Common,
    args: &[OsString],
    env: &[(&str, String)],
) -> Result<Outcome> {
    let exe = std::env::current_exe()?;
    let dir = std::env::temp_dir().join(format!("loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let epoch_ns = monotonic_ns();
    let mut children = Vec::new();
    for i in 0..c.procs {
        let json = dir.join(format!("child-{i}.json"));
        let spawned = Command::new(&exe)
            .args(args)
            .env(CHILD, format!("{i}/{}", c.procs))
            .env(CHILD_JSON, &json)
            .env(EPOCH, epoch_ns.to_string())
            .env(PARENT, std::process::id().to_string())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
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
    // Each child's seconds, a line each on its stdout, as they complete
    // (read whether or not this process streams them on: a full pipe would
    // stall the child).
    let outbox = crate::stream::start(c.procs);
    let readers: Vec<_> = children
        .iter_mut()
        .enumerate()
        .filter_map(|(i, (child, _))| {
            let out = child.stdout.take()?;
            let outbox = outbox.clone();
            Some(std::thread::spawn(move || read_seconds(out, i, outbox)))
        })
        .collect();
    // Every child is waited for (each is bounded by its own deadline), so a
    // failed one leaves no other running; all of them are killed (by PID)
    // when the run is stopped from outside.
    let mut statuses: Vec<Option<std::io::Result<std::process::ExitStatus>>> =
        children.iter().map(|_| None).collect();
    let mut killed = false;
    while statuses.iter().any(Option::is_none) {
        if !killed && crate::stream::aborted() {
            killed = true;
            for (child, _) in &mut children {
                let _ = child.kill();
            }
        }
        for ((child, _), status) in children.iter_mut().zip(&mut statuses) {
            if status.is_none() {
                match child.try_wait() {
                    Ok(Some(s)) => *status = Some(Ok(s)),
                    Ok(None) => {}
                    Err(e) => *status = Some(Err(e)),
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for r in readers {
        let _ = r.join();
    }
    if let Some(o) = &outbox {
        o.close_all();
    }
    let mut merged: Option<Outcome> = None;
    // The first failure is the error.
    let mut failed: Option<String> = killed.then(|| "stopped: its children were killed".into());
    for (i, ((_, json), status)) in children.into_iter().zip(statuses).enumerate() {
        let status = match status {
            Some(Ok(status)) => status,
            Some(Err(e)) => {
                failed.get_or_insert(format!("child process {i}: {e}"));
                continue;
            }
            None => continue,
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
            Some(m) => merge(m, &outcome),
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

/// The longest line a child writes a second in (its histograms' buckets).
const MAX_LINE: u64 = 16 << 20;

/// Child `slot`'s seconds from its stdout, into `outbox` (if this process
/// streams them), to its end.
fn read_seconds(out: std::process::ChildStdout, slot: usize, outbox: Option<Arc<Outbox>>) {
    let mut out = std::io::BufReader::new(out);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut out).take(MAX_LINE).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let sample = serde_json::from_slice(&line)
            .ok()
            .and_then(|v| Sample::from_child_json(&v));
        if let (Some(o), Some(s)) = (&outbox, sample) {
            let next = s.t + 1;
            o.add(slot, std::slice::from_ref(&s), next);
        }
    }
    if let Some(o) = &outbox {
        o.add(slot, &[], u64::MAX);
    }
}

/// Runs a `--procs` child's part: its seconds go to the parent as they
/// complete, a line of JSON each on stdout, then its result to the file.
pub fn run_child(child: &Child, run: impl FnOnce() -> Result<Outcome>) -> Result<()> {
    crate::stream::enable();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut out = std::io::stdout().lock();
            loop {
                // Read before taking: the last turn takes everything.
                let last = done.load(Ordering::SeqCst);
                for s in crate::stream::take_complete() {
                    let _ = writeln!(out, "{}", s.to_child_json());
                }
                let _ = out.flush();
                if last {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let outcome = run();
    done.store(true, Ordering::SeqCst);
    let _ = writer.join();
    write_child(child, &outcome?)
}

/// A child's result, complete enough to merge.
pub fn write_child(child: &Child, o: &Outcome) -> Result<()> {
    let value = crate::wire::outcome_to_json(o);
    std::fs::write(&child.json, serde_json::to_vec(&value)?)?;
    Ok(())
}

fn read_child(path: &PathBuf) -> Result<Outcome> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
    Ok(crate::wire::outcome_from_json(&v))
}
