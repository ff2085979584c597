//! `--agents HOST:PORT,...`: the controller's side. It connects to every
//! agent (`loadgen agent`), measures each one's clock offset, sends each its
//! part of the plan with one start instant (in the agent's own clock), reads
//! their ticks while they run and merges their results into one report,
//! one `--json` and one plot, the total and each agent. An agent that dies
//! or goes silent is reported (which, when, why) and the others go on; the
//! exit status says it.

use std::ffi::OsString;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{FAILURES, Failure, Report};
use crate::report::{self, Outcome};
use crate::series::{self, Sample};
use crate::wire::{self, MAX_CONTROL, MAX_RESULT, PROTOCOL};
use crate::{Result, Scenario, plot, procs};

/// Connecting to an agent and each of its answers before the run.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// An agent ticks every second while it runs: this long without a word and
/// it is taken for dead.
const SILENCE: Duration = Duration::from_secs(15);
/// Round trips to measure an agent's clock offset; the one with the
/// smallest round trip is kept.
const PINGS: u64 = 5;
/// Seconds an agent may stream past the run's own bound (its duration, ramp,
/// connect timeout and the client's 30 s of grace).
const SLACK_SECONDS: f64 = 60.0;
/// From sending the plans to the start: time for every agent to get its
/// plan and parse it, added to the longest round trip.
const LEAD: Duration = Duration::from_secs(1);

/// One agent, connected.
struct Agent {
    addr: String,
    stream: TcpStream,
    /// Its clock minus ours, ns (NTP-style, from the best round trip).
    offset_ns: i64,
    /// That round trip, ns.
    rtt_ns: i64,
    /// The connections it was asked for.
    planned: usize,
}

/// How an agent's part ended.
enum End {
    /// Its result, as sent (parsed twice: its own line and the total).
    Result(Value),
    /// It reported an error, closed the connection or went silent, `at`
    /// after the start.
    Failed { why: String, at: Duration },
}

/// What an agent said while it ran: its last tick (for the progress lines)
/// and the seconds it completed, as they came.
#[derive(Clone, Default)]
struct Tick {
    t: u64,
    open: Option<u64>,
    /// Its completed seconds, at most `cap` of them.
    seconds: Vec<Sample>,
    /// Seconds past `cap`, not kept.
    over: u64,
}

/// Runs `s` on its `--agents` and reports; fails when an agent failed (the
/// others' results are reported all the same) or the run's verdict does.
pub fn run(s: &Scenario, args: &[OsString]) -> Result<()> {
    let c = s.common();
    let n = c.agents.len();
    let mut agents = Vec::with_capacity(n);
    for addr in &c.agents {
        agents.push(connect(addr).map_err(|e| format!("agent {addr}: {e}"))?);
    }
    let longest_rtt = agents.iter().map(|a| a.rtt_ns).max().unwrap_or(0);
    let start_ns = wire::realtime_ns() + LEAD.as_nanos() as i64 + 2 * longest_rtt;
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or("--agents: the arguments must be UTF-8 to be sent")?;
    for (i, agent) in agents.iter_mut().enumerate() {
        let plan = json!({
            "type": "plan",
            "args": args,
            "index": i,
            "count": n,
            "procs": c.procs,
            "start_at_ns": start_ns + agent.offset_ns,
        });
        let answer = wire::send(&mut agent.stream, &plan)
            .map_err(|e| wire::describe(&e))
            .and_then(|()| wire::receive(&mut agent.stream, MAX_CONTROL));
        match answer {
            Ok(m) if m["type"] == "accepted" => {
                agent.planned = m["connections"].as_u64().unwrap_or(0) as usize;
            }
            Ok(m) if m["type"] == "error" => {
                return Err(
                    format!("agent {}: refused the plan: {}", agent.addr, m["message"]).into(),
                );
            }
            Ok(m) => return Err(format!("agent {}: answered {}", agent.addr, m["type"]).into()),
            Err(why) => return Err(format!("agent {}: {why}", agent.addr).into()),
        }
    }
    eprintln!(
        "loadgen: {} over {n} agents, starting in {:.1} s",
        s.name(),
        (start_ns - wire::realtime_ns()) as f64 / 1e9
    );
    let wait = start_ns - wire::realtime_ns();
    if wait > 0 {
        std::thread::sleep(Duration::from_nanos(wait as u64));
    }
    let started = Instant::now();
    let rss_before = c.server_pid.and_then(report::rss_bytes);
    let cpu = s.cpu_before();
    let ticks = Arc::new(Mutex::new(vec![Tick::default(); n]));
    // The most seconds kept of an agent: its run cannot last longer.
    let ramp_secs = if c.ramp > 0.0 {
        c.connections as f64 / c.ramp
    } else {
        0.0
    };
    let cap = (c.duration + ramp_secs + c.connect_timeout + SLACK_SECONDS).ceil() as usize;
    let readers: Vec<_> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let stream = a.stream.try_clone();
            let ticks = ticks.clone();
            let addr = a.addr.clone();
            std::thread::spawn(move || {
                let end = match stream {
                    Ok(stream) => follow(stream, i, &ticks, started, cap),
                    Err(e) => End::Failed {
                        why: e.to_string(),
                        at: started.elapsed(),
                    },
                };
                // Said as it happens: the others go on.
                if let End::Failed { why, at } = &end {
                    eprintln!(
                        "loadgen: agent {addr} failed {:.1} s into the run: {why}; the others go on",
                        at.as_secs_f64()
                    );
                }
                end
            })
        })
        .collect();
    let mut rss_held = None;
    let mut last_line = Instant::now();
    let mut last_beat = Instant::now();
    while !readers.iter().all(|r| r.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        if last_beat.elapsed() >= Duration::from_secs(1) {
            // A heartbeat to each agent still running: one that hears none
            // (this process gone) stops its run.
            last_beat = Instant::now();
            for (a, r) in agents.iter_mut().zip(&readers) {
                if !r.is_finished() {
                    let _ = wire::send(&mut a.stream, &json!({"type": "alive"}));
                }
            }
        }
        if let Some(rss) = c.server_pid.and_then(report::rss_bytes) {
            rss_held = Some(rss);
        }
        if last_line.elapsed() >= Duration::from_secs(5) {
            last_line = Instant::now();
            let ticks = ticks.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let parts: Vec<String> = agents
                .iter()
                .zip(&ticks)
                .map(|(a, t)| match t.open.or(t.seconds.last().map(|s| s.open)) {
                    Some(open) => format!("{} {} s {open} open", a.addr, t.t),
                    None => format!("{} {} s", a.addr, t.t),
                })
                .collect();
            eprintln!("loadgen: agents: {}", parts.join("; "));
        }
    }
    let ends: Vec<End> = readers
        .into_iter()
        .map(|r| {
            r.join().unwrap_or(End::Failed {
                why: "its reader panicked".into(),
                at: started.elapsed(),
            })
        })
        .collect();
    let heard = std::mem::take(&mut *ticks.lock().unwrap_or_else(|e| e.into_inner()));
    let mut total: Option<Outcome> = None;
    // Each agent's part: its result, or (failed) what it streamed before.
    let mut parts: Vec<Option<Outcome>> = Vec::with_capacity(n);
    for ((agent, end), heard) in agents.iter().zip(&ends).zip(&heard) {
        if heard.over > 0 {
            eprintln!(
                "loadgen: agent {} streamed {} seconds past the {cap} kept",
                agent.addr, heard.over
            );
        }
        let mut part = match end {
            End::Result(v) => {
                let part = wire::outcome_from_json(v);
                let differ = heard
                    .seconds
                    .iter()
                    .filter(|s| {
                        let series = &part.report.series;
                        series
                            .binary_search_by_key(&s.t, |x| x.t)
                            .map_or(true, |i| series[i] != **s)
                    })
                    .count();
                if differ > 0 {
                    eprintln!(
                        "loadgen: agent {}: {differ} of its {} streamed seconds differ from its result's; the result's are used",
                        agent.addr,
                        heard.seconds.len()
                    );
                }
                part
            }
            End::Failed { .. } if !heard.seconds.is_empty() => {
                partial(&heard.seconds, agent.planned, s)
            }
            End::Failed { .. } => {
                parts.push(None);
                continue;
            }
        };
        part.name = agent.addr.clone();
        match &mut total {
            None => total = Some(copy(&part)),
            Some(t) => procs::merge(t, &part),
        }
        if matches!(end, End::Failed { .. }) {
            part.name = format!("{} (partial)", agent.addr);
        }
        parts.push(Some(part));
    }
    let streamed: Vec<usize> = heard.iter().map(|h| h.seconds.len()).collect();
    let partials = parts
        .iter()
        .zip(&ends)
        .filter(|(p, e)| p.is_some() && matches!(e, End::Failed { .. }))
        .count();
    let failures: Vec<String> = agents
        .iter()
        .zip(&ends)
        .filter_map(|(a, e)| match e {
            End::Failed { why, at } => Some(format!(
                "agent {} failed {:.1} s into the run: {why}",
                a.addr,
                at.as_secs_f64()
            )),
            End::Result(_) => None,
        })
        .collect();
    let Some(mut total) = total else {
        return Err(format!("no agent finished its part: {}", failures.join("; ")).into());
    };
    total.name = match partials {
        0 => format!("{} over {n} agents", s.name()),
        k => format!("{} over {n} agents ({k} partial)", s.name()),
    };
    total.connections = c.connections;
    total.elapsed = started.elapsed();
    total.rss = rss_before.zip(rss_held);
    s.attach_check(&mut total, cpu);
    let verdict = total.verdict();
    if let Some(path) = &c.plot {
        let mut all = vec![total_for_plot(&total)];
        all.extend(parts.iter().flatten().map(copy));
        plot::draw(path, &all)?;
    }
    if let Some(path) = &c.json {
        write_json(path, &total, &agents, &parts, &ends, &streamed)?;
    }
    let json_written = total.finish(&None);
    println!(
        "agents: {n}, clock offsets NTP-style (agent minus controller, best of {PINGS} round trips)"
    );
    for ((agent, part), end) in agents.iter().zip(&parts).zip(&ends) {
        println!("  {}", agent_line(agent, part.as_ref(), end));
    }
    json_written?;
    if !failures.is_empty() {
        return Err(format!(
            "{} of {n} agents failed (the others' results are above): {}",
            failures.len(),
            failures.join("; ")
        )
        .into());
    }
    verdict.map_err(Into::into)
}

/// Connects, says hello and measures the clock offset.
fn connect(addr: &str) -> std::result::Result<Agent, String> {
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .next()
        .ok_or("cannot resolve")?;
    let mut stream = TcpStream::connect_timeout(&sock, CONNECT_TIMEOUT)
        .map_err(|e| format!("cannot connect: {e}"))?;
    let io = |e: std::io::Error| wire::describe(&e);
    stream.set_nodelay(true).map_err(io)?;
    stream.set_read_timeout(Some(CONNECT_TIMEOUT)).map_err(io)?;
    stream
        .set_write_timeout(Some(CONNECT_TIMEOUT))
        .map_err(io)?;
    wire::send(&mut stream, &json!({"type": "hello", "version": PROTOCOL})).map_err(io)?;
    let hello = wire::receive(&mut stream, MAX_CONTROL)?;
    if hello["type"] == "error" {
        return Err(format!("refused: {}", hello["message"]));
    }
    if hello["type"] != "hello" || hello["version"].as_u64() != Some(PROTOCOL) {
        return Err(format!(
            "not a loadgen agent of protocol {PROTOCOL} (answered {hello})"
        ));
    }
    let mut best: Option<(i64, i64)> = None;
    for id in 0..PINGS {
        // The round trip on the monotonic clock (a wall-clock step during
        // the pings would give a negative one, kept as the best); the wall
        // clock only for the instant the agent's reading is compared to.
        let t0 = wire::realtime_ns();
        let sent = Instant::now();
        wire::send(&mut stream, &json!({"type": "ping", "id": id})).map_err(io)?;
        let pong = wire::receive(&mut stream, MAX_CONTROL)?;
        let rtt = i64::try_from(sent.elapsed().as_nanos()).unwrap_or(i64::MAX);
        let agent_ns = pong["agent_ns"]
            .as_i64()
            .filter(|_| pong["type"] == "pong" && pong["id"] == id)
            .ok_or_else(|| format!("answered a ping with {pong}"))?;
        let offset = agent_ns.saturating_sub(t0).saturating_sub(rtt / 2);
        if best.is_none_or(|(r, _)| rtt < r) {
            best = Some((rtt, offset));
        }
    }
    let (rtt_ns, offset_ns) = best.ok_or("no clock measure")?;
    stream.set_read_timeout(Some(SILENCE)).map_err(io)?;
    Ok(Agent {
        addr: addr.to_owned(),
        stream,
        offset_ns,
        rtt_ns,
        planned: 0,
    })
}

/// Reads agent `i`'s ticks and seconds until its result, its error, or its
/// end; keeps at most `cap` seconds.
fn follow(
    mut stream: TcpStream,
    i: usize,
    ticks: &Mutex<Vec<Tick>>,
    started: Instant,
    cap: usize,
) -> End {
    loop {
        let m = match wire::receive(&mut stream, MAX_RESULT) {
            Ok(m) => m,
            Err(why) => {
                return End::Failed {
                    why,
                    at: started.elapsed(),
                };
            }
        };
        match m["type"].as_str() {
            Some("tick") => {
                let mut ticks = ticks.lock().unwrap_or_else(|e| e.into_inner());
                ticks[i].t = m["t"].as_u64().unwrap_or(0);
                ticks[i].open = m["open"].as_u64();
            }
            Some("second") => {
                let Some(sample) = Sample::from_child_json(&m["sample"]) else {
                    return End::Failed {
                        why: "sent a second that does not parse".into(),
                        at: started.elapsed(),
                    };
                };
                let mut ticks = ticks.lock().unwrap_or_else(|e| e.into_inner());
                let heard = &mut ticks[i];
                if heard.seconds.len() < cap {
                    series::merge(&mut heard.seconds, std::slice::from_ref(&sample));
                } else {
                    heard.over += 1;
                }
            }
            Some("result") => return End::Result(m["outcome"].clone()),
            Some("error") => {
                return End::Failed {
                    why: format!("reported: {}", m["message"].as_str().unwrap_or("?")),
                    at: started.elapsed(),
                };
            }
            _ => {
                return End::Failed {
                    why: format!("sent {} mid-run", m["type"]),
                    at: started.elapsed(),
                };
            }
        }
    }
}

/// An outcome again (the plot takes a slice of them).
fn copy(o: &Outcome) -> Outcome {
    let mut c = wire::outcome_from_json(&wire::outcome_to_json(o));
    c.name.clone_from(&o.name);
    c
}

fn total_for_plot(total: &Outcome) -> Outcome {
    let mut t = copy(total);
    t.name = "total".into();
    t
}

/// One agent's line: its clock, and its figures or how it failed.
fn agent_line(agent: &Agent, part: Option<&Outcome>, end: &End) -> String {
    let clock = format!(
        "{}: clock offset {:+.3} ms (round trip {:.3} ms)",
        agent.addr,
        agent.offset_ns as f64 / 1e6,
        agent.rtt_ns as f64 / 1e6
    );
    let failed = match end {
        End::Failed { why, at } => format!(
            "FAILED {:.1} s into the run: {why}; PARTIAL, its {} s streamed before: ",
            at.as_secs_f64(),
            part.map_or(0, |o| o.report.series.len())
        ),
        End::Result(_) => String::new(),
    };
    match (part, end) {
        (Some(o), _) => {
            let r = &o.report;
            let errors =
                r.failures.iter().sum::<u64>() + r.mismatches + r.lost + r.dropped + r.missed_pongs;
            let p99 = if r.latency.is_empty() {
                &r.handshake
            } else {
                &r.latency
            };
            format!(
                "{clock}; {failed}connected {} of {}, rate {:.0}/s, p99 {:.2} ms, errors {errors}",
                r.connected,
                agent.planned,
                o.rate(),
                p99.value_at_quantile(0.99) as f64 / 1000.0
            )
        }
        (None, End::Failed { why, at }) => format!(
            "{clock}; FAILED {:.1} s into the run: {why} (its {} connections' results are lost)",
            at.as_secs_f64(),
            agent.planned
        ),
        (None, End::Result(_)) => format!("{clock}; no result"),
    }
}

/// One JSON array: the total first (with `agents`: each one's address, clock
/// offset, round trip, connections asked for and how it ended), then each
/// agent that finished, with `agent` naming it.
fn write_json(
    path: &str,
    total: &Outcome,
    agents: &[Agent],
    parts: &[Option<Outcome>],
    ends: &[End],
    streamed: &[usize],
) -> Result<()> {
    let about = |a: &Agent, end: &End, part: Option<&Outcome>, streamed: usize| {
        let (status, why, at) = match end {
            End::Result(_) => ("ok", None, None),
            End::Failed { why, at } => ("failed", Some(why.clone()), Some(at.as_secs_f64())),
        };
        json!({
            "address": a.addr,
            "clock_offset_ms": a.offset_ns as f64 / 1e6,
            "round_trip_ms": a.rtt_ns as f64 / 1e6,
            "connections_planned": a.planned,
            "status": status,
            "error": why,
            "failed_after_s": at,
            "partial": part.is_some() && matches!(end, End::Failed { .. }),
            "streamed_seconds": streamed,
        })
    };
    let mut first = total.to_json();
    first["agents"] = (0..agents.len())
        .map(|i| about(&agents[i], &ends[i], parts[i].as_ref(), streamed[i]))
        .collect();
    let mut all = vec![first];
    for i in 0..agents.len() {
        if let Some(o) = &parts[i] {
            let mut v = o.to_json();
            v["agent"] = about(&agents[i], &ends[i], Some(o), streamed[i]);
            all.push(v);
        }
    }
    std::fs::write(path, serde_json::to_string_pretty(&Value::Array(all))?)?;
    Ok(())
}

/// A failed agent's part from the seconds it streamed before: their counts
/// added up and histograms merged (failures of every kind count as `other`:
/// a second has their sum only).
fn partial(seconds: &[Sample], planned: usize, s: &Scenario) -> Outcome {
    let mut r = Report::empty();
    let other = FAILURES
        .iter()
        .position(|(f, _)| *f == Failure::Other)
        .unwrap_or(FAILURES.len() - 1);
    let hold = matches!(s, Scenario::Hold(_));
    for sample in seconds {
        let k = &sample.counts;
        r.connected += k.connects;
        r.failures[other] += k.failures;
        r.messages += k.messages;
        r.bytes += k.bytes;
        r.published += k.published;
        r.pings += k.pings;
        r.pongs += k.pongs;
        r.missed_pongs += k.missed;
        r.mismatches += k.mismatches;
        r.dropped += k.dropped;
        r.churned += k.churned;
        let latency = if hold {
            &mut r.pong_latency
        } else {
            &mut r.latency
        };
        for &(v, count) in &sample.latency.0 {
            let _ = latency.record_n(u64::from(v.max(1)), u64::from(count));
        }
        for &(v, count) in &sample.handshake.0 {
            let _ = r.handshake.record_n(u64::from(v.max(1)), u64::from(count));
        }
    }
    r.series = seconds.to_vec();
    let c = s.common();
    Outcome {
        name: String::new(),
        connections: planned,
        seconds: seconds.len() as f64,
        report: r,
        rss: None,
        elapsed: Duration::from_secs(seconds.len() as u64),
        fanout: None,
        http2: c.http2.then_some(c.per_conn()),
    }
}
