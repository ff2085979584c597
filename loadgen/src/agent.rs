//! `loadgen agent --listen ADDR`: a client host's side of `--agents`. It
//! serves one controller at a time (another is told it is busy) and stays up
//! for the next: hello (the protocol's version), clock pings, the plan (the
//! scenario's arguments and this agent's part of them), then at the planned
//! instant the run, each second it completes and a tick a second while it
//! goes, and the result at its end; a controller gone mid-run stops it. Every message it reads is bounded (`wire::MAX_CONTROL`) and every
//! wait for the controller before the run is bounded (`CONTROL_TIMEOUT`): a
//! controller that sends garbage or stalls is dropped with the reason.

use std::ffi::OsString;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser};
use serde_json::{Value, json};

use crate::series::Sample;
use crate::wire::{self, MAX_CONTROL, PROTOCOL};
use crate::{Cli, Command, Result, Scenario, stream};

/// In an agent's `--procs` children: the agent's part of the whole run,
/// `index/count`, taken before the child's own part.
const AGENT_PART: &str = "LOADGEN_AGENT_PART";

/// How long the agent waits for each of the controller's messages before the
/// run (and for each of its own writes to go out).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// The furthest ahead (and behind) of the agent's clock a start may be: a
/// start further off is a wrong clock or a wrong plan, not a wait.
const MAX_LEAD: Duration = Duration::from_secs(60);
/// Mid-run, the controller sends a heartbeat a second: this long without
/// one (or its socket closed) and it is taken for gone.
const CONTROLLER_SILENCE: Duration = Duration::from_secs(15);
/// Processes an agent may be asked for.
const MAX_PROCS: usize = 1024;

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The address to take controllers on, e.g. 0.0.0.0:7700.
    #[arg(long)]
    listen: String,
}

/// The agent's part (`index`, `count`) in an agent's `--procs` child.
pub fn part_from_env() -> Option<(usize, usize)> {
    let spec = std::env::var(AGENT_PART).ok()?;
    let (i, n) = spec.split_once('/')?;
    let (i, n) = (i.parse().ok()?, n.parse().ok()?);
    (i < n).then_some((i, n))
}

/// Serves controllers until killed.
pub fn serve(a: &AgentArgs) -> Result<()> {
    let listener = TcpListener::bind(&a.listen)
        .map_err(|e| format!("agent: cannot listen on {}: {e}", a.listen))?;
    eprintln!(
        "loadgen agent: listening on {} (protocol {PROTOCOL})",
        listener.local_addr()?
    );
    stream::enable();
    let busy = Arc::new(AtomicBool::new(false));
    for conn in listener.incoming() {
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                // Out of fds or the like: say it and keep serving.
                eprintln!("loadgen agent: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        if busy.swap(true, Ordering::SeqCst) {
            eprintln!("loadgen agent: refused {peer}: a session is running");
            let _ = stream.set_write_timeout(Some(CONTROL_TIMEOUT));
            let _ = wire::send(
                &mut stream,
                &json!({"type": "error", "message": "busy: another controller's run is going on"}),
            );
            continue;
        }
        let busy = Free(busy.clone());
        std::thread::spawn(move || {
            eprintln!("loadgen agent: session with {peer}");
            let ended = session(stream);
            // Free for the next controller before saying so (and also if
            // the session panicked: `Free` clears it when dropped).
            drop(busy);
            match ended {
                Ok(()) => eprintln!("loadgen agent: session with {peer} done"),
                Err(e) => eprintln!("loadgen agent: session with {peer} dropped: {e}"),
            }
        });
    }
    Ok(())
}

/// Clears the agent's busy flag when dropped: at a session's end, or when
/// its thread unwinds from a panic, so that one bad session does not leave
/// the agent answering "busy" for ever.
struct Free(Arc<AtomicBool>);

impl Drop for Free {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// What the controller asked this agent to run.
struct Plan {
    scenario: Scenario,
    /// The scenario's arguments as the controller gave them, for `--procs`
    /// children (which take this agent's part from `AGENT_PART`).
    args: Vec<OsString>,
    index: usize,
    count: usize,
    /// The instant to start at, on this agent's CLOCK_REALTIME.
    start_at_ns: i64,
}

impl Plan {
    fn from_json(v: &Value) -> std::result::Result<Self, String> {
        let args: Vec<String> = v["args"]
            .as_array()
            .ok_or("plan: no args")?
            .iter()
            .map(|a| a.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or("plan: args must be strings")?;
        let field = |k: &str| v[k].as_u64().ok_or(format!("plan: no {k}"));
        let (index, count) = (field("index")? as usize, field("count")? as usize);
        let procs = field("procs")? as usize;
        if count == 0 || index >= count {
            return Err(format!("plan: part {index} of {count}"));
        }
        if !(1..=MAX_PROCS).contains(&procs) {
            return Err(format!("plan: --procs {procs}, not 1 to {MAX_PROCS}"));
        }
        let start_at_ns = v["start_at_ns"].as_i64().ok_or("plan: no start_at_ns")?;
        let off = start_at_ns
            .saturating_sub(wire::realtime_ns())
            .unsigned_abs();
        if off > MAX_LEAD.as_nanos() as u64 {
            return Err(format!(
                "plan: start {:.1} s away from this agent's clock (at most {} s)",
                off as f64 / 1e9,
                MAX_LEAD.as_secs()
            ));
        }
        let cli = Cli::try_parse_from(std::iter::once("loadgen".to_owned()).chain(args.clone()))
            .map_err(|e| format!("plan: {}", e.render().to_string().trim()))?;
        let Command::Scenario(mut scenario) = cli.command else {
            return Err("plan: not a scenario".into());
        };
        scenario.validate().map_err(|e| format!("plan: {e}"))?;
        scenario.share_part(index, count);
        let c = scenario.common_mut();
        c.procs = procs;
        // The controller writes the files and samples its own machine's
        // processes; an agent only runs.
        c.json = None;
        c.plot = None;
        c.server_pid = None;
        c.agents.clear();
        if let Scenario::Broadcast(b) = &mut scenario {
            b.cpu_pid.clear();
        }
        Ok(Self {
            scenario,
            args: args.into_iter().map(OsString::from).collect(),
            index,
            count,
            start_at_ns,
        })
    }
}

/// Says why to the controller (if it still listens), and returns it.
fn refuse(stream: &mut TcpStream, why: String) -> Result<()> {
    let _ = wire::send(stream, &json!({"type": "error", "message": why}));
    Err(why.into())
}

fn session(mut stream: TcpStream) -> Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(CONTROL_TIMEOUT))?;
    stream.set_write_timeout(Some(CONTROL_TIMEOUT))?;
    let hello = wire::receive(&mut stream, MAX_CONTROL)?;
    if hello["type"] != "hello" {
        return refuse(
            &mut stream,
            format!("expected hello, got {}", hello["type"]),
        );
    }
    if hello["version"].as_u64() != Some(PROTOCOL) {
        let why = format!(
            "protocol version {}, this agent speaks {PROTOCOL}",
            hello["version"]
        );
        return refuse(&mut stream, why);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    wire::send(
        &mut stream,
        &json!({"type": "hello", "version": PROTOCOL, "cores": cores}),
    )?;
    let plan = loop {
        let m = wire::receive(&mut stream, MAX_CONTROL)?;
        match m["type"].as_str() {
            Some("ping") => wire::send(
                &mut stream,
                &json!({"type": "pong", "id": m["id"], "agent_ns": wire::realtime_ns()}),
            )?,
            Some("plan") => break m,
            _ => {
                return refuse(
                    &mut stream,
                    format!("expected ping or plan, got {}", m["type"]),
                );
            }
        }
    };
    let plan = match Plan::from_json(&plan) {
        Ok(p) => p,
        Err(why) => return refuse(&mut stream, why),
    };
    let c = plan.scenario.common();
    wire::send(
        &mut stream,
        &json!({"type": "accepted", "connections": c.connections, "procs": c.procs}),
    )?;
    eprintln!(
        "loadgen agent: part {} of {}: {} with {} connections over {} process(es)",
        plan.index + 1,
        plan.count,
        plan.scenario.name(),
        c.connections,
        c.procs
    );
    let wait = plan.start_at_ns - wire::realtime_ns();
    if wait > 0 {
        std::thread::sleep(Duration::from_nanos(wait as u64));
    }
    run(stream, plan)
}

/// Runs the plan: each second it completes (all its processes' and threads'
/// part of it, merged) to the controller as it completes, a tick a second,
/// then the result. A controller gone mid-run (its socket closed or in
/// error, or no heartbeat for `CONTROLLER_SILENCE`) stops it at once: the
/// client threads end at their next turn, closing their connections, and
/// `--procs` children are killed; nothing is kept.
fn run(mut stream: TcpStream, plan: Plan) -> Result<()> {
    *crate::scenario::LIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = None;
    stream::reset();
    let part = format!("{}/{}", plan.index, plan.count);
    let Plan { scenario, args, .. } = plan;
    let started = Instant::now();
    // The controller's heartbeats; this thread ends when they stop.
    let mut heard = stream.try_clone()?;
    heard.set_read_timeout(Some(CONTROLLER_SILENCE))?;
    let listener = std::thread::spawn(move || {
        loop {
            match wire::receive(&mut heard, MAX_CONTROL) {
                Ok(m) if m["type"] == "alive" => {}
                Ok(m) => break format!("it sent {} mid-run", m["type"]),
                Err(why) => break format!("it {why}"),
            }
        }
    });
    let runner = std::thread::spawn(move || {
        scenario
            .measure(&args, &[(AGENT_PART, part)])
            .map_err(|e| e.to_string())
    });
    let mut gone: Option<(String, Instant)> = None;
    let lose = |why: String| {
        eprintln!(
            "loadgen agent: the controller is gone {:.1} s into the run ({why}); stopping the run",
            started.elapsed().as_secs_f64()
        );
        stream::abort();
        Some((why, Instant::now()))
    };
    let mut listener = Some(listener);
    let mut next_tick = 1;
    let mut sent = 0usize;
    while !runner.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        if gone.is_some() {
            continue;
        }
        if let Some(l) = listener.take_if(|l| l.is_finished()) {
            gone = lose(l.join().unwrap_or_else(|_| "its reader panicked".into()));
            continue;
        }
        let t = started.elapsed().as_secs();
        let mut out = stream::take_complete()
            .iter()
            .map(second)
            .collect::<Vec<_>>();
        if t >= next_tick {
            next_tick = t + 1;
            out.push(tick(t));
        }
        for m in &out {
            if let Err(e) = wire::send(&mut stream, m) {
                gone = lose(format!("writing to it: {}", wire::describe(&e)));
                break;
            }
            sent += usize::from(m["type"] == "second");
        }
    }
    let result = runner.join().map_err(|_| "the run panicked")?;
    if let Some((why, at)) = gone {
        eprintln!(
            "loadgen agent: run stopped {:.2} s after the controller went",
            at.elapsed().as_secs_f64()
        );
        return Err(format!("controller gone mid-run ({why}); run stopped, result dropped").into());
    }
    // A long run's result is large: give it time to go out.
    stream.set_write_timeout(Some(Duration::from_secs(120)))?;
    // The last seconds (the run's last, partial one included) before the
    // result, whose series they complete.
    for s in stream::take_complete() {
        wire::send(&mut stream, &second(&s))?;
        sent += 1;
    }
    let message = match result {
        Ok(outcome) => json!({
            "type": "result",
            "outcome": wire::outcome_to_json(&outcome),
            "streamed": sent,
        }),
        Err(why) => json!({"type": "error", "message": why}),
    };
    wire::send(&mut stream, &message)?;
    // Wakes the heartbeat reader (it reads EOF) and lets it go.
    let _ = stream.shutdown(std::net::Shutdown::Read);
    Ok(())
}

/// One completed second of this agent's part, histograms included.
fn second(s: &Sample) -> Value {
    json!({"type": "second", "sample": s.to_child_json()})
}

/// Second `t` of the run: the counters of the run in this process (none
/// with `--procs`, whose children count), so the controller sees it go and
/// knows this agent is alive.
fn tick(t: u64) -> Value {
    let live = crate::scenario::LIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let count = |f: fn(&crate::client::Live) -> u64| live.as_deref().map(f);
    json!({
        "type": "tick",
        "t": t,
        "open": count(|l| l.open.load(Ordering::Relaxed)),
        "failed": count(|l| l.failed.load(Ordering::Relaxed)),
        "messages": count(|l| l.messages.load(Ordering::Relaxed)),
    })
}
