//! `loadgen`: drives any `ws://` server with many connections and tells the truth
//! about latency. See `loadgen --help`.

mod client;
mod embedded;
mod h2;
mod plot;
mod procs;
mod report;
mod series;
mod tls;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use client::{Live, Payloads, Plan, Report, Target, Workload};

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "WebSocket load generator: connect, hold, echo, broadcast, compare, bench"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Scenario(Scenario),
    /// Run one scenario against several servers in turn, with the same flags:
    /// `loadgen compare --url A --url B echo -c 100 -d 5 [--json F] [--plot F.svg]`;
    /// prints one table and draws one chart.
    Compare(CompareArgs),
    /// Start the embedded ringws server and run the standard scenarios.
    Bench(BenchArgs),
}

/// The scenarios, on their own or under `compare`.
#[derive(Subcommand, Debug, Clone)]
enum Scenario {
    /// Ramp to N connections; report connect and upgrade rate and failures by cause.
    Connect(Common),
    /// Keep N connections open, ping each periodically, count live ones and
    /// (with --server-pid) the server's bytes per connection.
    Hold(HoldArgs),
    /// Echo: messages per second, MB/s and latency percentiles, every echo checked.
    Echo(EchoArgs),
    /// N subscribers of a room, one publisher at a rate: fan-out latency and counts.
    Broadcast(BroadcastArgs),
}

#[derive(Args, Debug, Clone)]
struct CompareArgs {
    /// A server to run the scenario against; repeat for each (at least two).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// A name for each server, in the order of the --url (default: the URL).
    #[arg(long)]
    label: Vec<String>,
    /// The PID of each server, in the order of the --url, for its resident
    /// memory per connection.
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// Seconds to wait between two servers' runs (sockets of the last one settle).
    #[arg(long, default_value_t = 1.0)]
    pause: f64,
    /// The scenario and its flags (its --json and --plot are the comparison's).
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct Common {
    /// Server URL, ws://host:port/path or wss://host:port/path. Broadcast takes
    /// several (nodes of a cluster): the publisher on the first, subscribers
    /// spread over all.
    #[arg(long, default_value = "ws://127.0.0.1:9001/")]
    url: Vec<String>,
    /// wss://: accept any server certificate (self-signed test servers).
    #[arg(long)]
    insecure: bool,
    /// wss://: trust the CA certificates of this PEM file.
    #[arg(long)]
    ca: Option<String>,
    /// wss://: resume TLS sessions (default: every connection makes a full
    /// handshake).
    #[arg(long)]
    resume: bool,
    /// Connections.
    #[arg(short = 'c', long, default_value_t = 100)]
    connections: usize,
    /// New connections per second (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    ramp: f64,
    /// Seconds to run after the ramp.
    #[arg(short = 'd', long, default_value_t = 5.0)]
    duration: f64,
    /// Client threads (default: available cores).
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// Source addresses: a range like 127.0.0.1-127.0.0.32 (loopback only), to
    /// get past the ~28k ephemeral ports of one address pair.
    #[arg(long)]
    sources: Option<String>,
    /// Seconds allowed for connect + upgrade (and for the server's answer to a
    /// churned connection's close).
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// After the ramp, close this percentage of the connections every second
    /// (a closing handshake each: what they were owed still arrives) and open
    /// as many anew.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// The server's PID, to sample its resident memory (bytes per connection).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write every figure as JSON to this file, the per-second samples included.
    #[arg(long)]
    json: Option<String>,
    /// Draw the latency distribution, the connection ramp and the per-second
    /// rate, latency and errors into this SVG file.
    #[arg(long)]
    plot: Option<String>,
    /// Offer permessage-deflate (client_no_context_takeover) and send every
    /// message compressed; fail connections the server does not grant it to.
    #[arg(long)]
    deflate: bool,
    /// Client processes (each with its own fd limit; connections, rate and source
    /// addresses are split between them).
    #[arg(long, default_value_t = 1)]
    procs: usize,
    /// Open the WebSockets as streams of HTTP/2 connections (RFC 8441):
    /// ws:// by prior knowledge (the server must take HTTP/2 on its plain
    /// port), wss:// by ALPN h2 (a server that picks otherwise fails). -c
    /// counts WebSockets, --ramp opens WebSockets (streams) per second.
    #[arg(long)]
    http2: bool,
    /// With --http2: WebSockets per TCP connection (-c 1000
    /// --streams-per-conn 100: 10 connections). Streams past the server's
    /// SETTINGS_MAX_CONCURRENT_STREAMS (100 by default) wait for one to end.
    #[arg(long, default_value_t = 100, requires = "http2")]
    streams_per_conn: usize,
}

impl Common {
    /// WebSockets per TCP connection.
    pub(crate) fn per_conn(&self) -> usize {
        if self.http2 { self.streams_per_conn } else { 1 }
    }
}

/// Part `i` of `parts` of `total` WebSockets, `per_conn` to a TCP connection:
/// the TCP connections are what is split (as evenly as can be), each part
/// taking the WebSockets of its own.
pub(crate) fn share_of(total: usize, per_conn: usize, parts: usize, i: usize) -> usize {
    let per_conn = per_conn.max(1);
    let parts = parts.max(1);
    let tcp = total.div_ceil(per_conn);
    let mine = tcp / parts + usize::from(i < tcp % parts);
    let before = i * (tcp / parts) + i.min(tcp % parts);
    let upto = |n: usize| (n * per_conn).min(total);
    upto(before + mine) - upto(before)
}

#[derive(Args, Debug, Clone)]
struct HoldArgs {
    #[command(flatten)]
    common: Common,
    /// Seconds between pings on each connection.
    #[arg(long, default_value_t = 1.0)]
    ping_interval: f64,
}

#[derive(Args, Debug, Clone)]
struct Payload {
    /// Payload size in bytes (or the low end with --size-max).
    #[arg(short = 's', long, default_value_t = 20)]
    size: usize,
    /// Random payload sizes in size..=size-max (64 sizes spread over the range,
    /// 16 above 64 KiB; each message picks one).
    #[arg(long)]
    size_max: Option<usize>,
    /// Text messages instead of binary.
    #[arg(long)]
    text: bool,
}

#[derive(Args, Debug, Clone)]
struct EchoArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    payload: Payload,
    /// Messages in flight per connection (closed loop).
    #[arg(short = 'k', long, default_value_t = 1)]
    in_flight: usize,
    /// Open loop: total messages per second, latency from the intended send time.
    #[arg(short = 'r', long)]
    rate: Option<f64>,
}

#[derive(Args, Debug, Clone)]
struct BroadcastArgs {
    #[command(flatten)]
    common: Common,
    /// Messages per second from the publisher.
    #[arg(short = 'r', long, default_value_t = 10.0)]
    rate: f64,
    /// Payload bytes (at least 20: the send time, a sequence number, a mark).
    #[arg(short = 's', long, default_value_t = 64)]
    size: usize,
    /// Do not fail when a subscriber missed a message (an outage is being
    /// measured); duplicates and reordering still fail.
    #[arg(long)]
    allow_loss: bool,
    /// Report this process's CPU time over the run and per published message
    /// (e.g. redis-server's PID); repeatable.
    #[arg(long)]
    cpu_pid: Vec<u32>,
}

#[derive(Args, Debug, Clone)]
struct BenchArgs {
    /// Backend of the embedded server: auto, io_uring, epoll.
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Server worker threads.
    #[arg(long, default_value_t = 1)]
    server_workers: usize,
    /// Client threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seconds per scenario.
    #[arg(short = 'd', long, default_value_t = 5.0)]
    duration: f64,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    json: Option<String>,
    /// Draw the latency distributions into this SVG file.
    #[arg(long)]
    plot: Option<String>,
    /// Multiply every scenario's connection count (e.g. 0.1 for a quick run).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Serve and drive wss:// (a self-signed certificate made at start).
    #[arg(long)]
    tls: bool,
    /// Every scenario's WebSockets as streams of HTTP/2 connections (the
    /// embedded server takes HTTP/2 by prior knowledge, and by ALPN with --tls).
    #[arg(long)]
    http2: bool,
    /// With --http2: WebSockets per TCP connection.
    #[arg(long, default_value_t = 100, requires = "http2")]
    streams_per_conn: usize,
}

/// In a `compare --procs` child: which of the servers it runs against.
const COMPARE_TARGET: &str = "LOADGEN_COMPARE_TARGET";

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let child = procs::Child::from_env();
    let result = match cli.command {
        Command::Scenario(s) => run_scenario(s, child),
        Command::Compare(a) => {
            // The servers are compare's --url; one given to the scenario too is
            // a mistake, not a default to override silently.
            let scenario_url = matches
                .subcommand_matches("compare")
                .and_then(|m| m.subcommand())
                .is_some_and(|(_, m)| m.value_source("url") == Some(ValueSource::CommandLine));
            if scenario_url {
                Err(
                    "compare: give the servers as compare --url A --url B, before the scenario"
                        .into(),
                )
            } else {
                compare(a, child)
            }
        }
        Command::Bench(b) => bench(&b),
    };
    if let Err(e) = result {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

impl Scenario {
    fn name(&self) -> &'static str {
        match self {
            Scenario::Connect(_) => "connect",
            Scenario::Hold(_) => "hold",
            Scenario::Echo(_) => "echo",
            Scenario::Broadcast(_) => "broadcast",
        }
    }

    fn common(&self) -> &Common {
        match self {
            Scenario::Connect(c) => c,
            Scenario::Hold(h) => &h.common,
            Scenario::Echo(e) => &e.common,
            Scenario::Broadcast(b) => &b.common,
        }
    }

    fn common_mut(&mut self) -> &mut Common {
        match self {
            Scenario::Connect(c) => c,
            Scenario::Hold(h) => &mut h.common,
            Scenario::Echo(e) => &mut e.common,
            Scenario::Broadcast(b) => &mut b.common,
        }
    }

    /// Narrows it to a `--procs` child's share (connections, rates, sources).
    fn share(&mut self, child: Option<&procs::Child>) {
        let total = self.common().connections;
        procs::share(self.common_mut(), child);
        match self {
            // The open-loop rate is the whole run's: each process takes its share.
            Scenario::Echo(e) => {
                if let Some(rate) = e.rate.as_mut() {
                    *rate *= e.common.connections as f64 / total.max(1) as f64;
                }
            }
            // One publisher in all: in the first process.
            Scenario::Broadcast(b) if child.is_some_and(|c| c.index != 0) => b.rate = 0.0,
            _ => {}
        }
    }

    /// Checks the options that no scenario can run with.
    fn validate(&self) -> Result<()> {
        let c = self.common();
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if c.connections == 0 {
            return Err("-c/--connections must be at least 1".into());
        }
        if c.procs == 0 {
            return Err("--procs must be at least 1".into());
        }
        if !(c.ramp.is_finite() && c.ramp >= 0.0) {
            return Err("--ramp must be 0 or more connections per second".into());
        }
        if !(c.duration.is_finite() && c.duration >= 0.0) {
            return Err("-d/--duration must be 0 or more seconds".into());
        }
        if !positive(c.connect_timeout) {
            return Err("--connect-timeout must be more than 0 seconds".into());
        }
        if !(c.churn.is_finite() && (0.0..=100.0).contains(&c.churn)) {
            return Err("--churn must be a percentage, 0 to 100".into());
        }
        if c.http2 && c.streams_per_conn == 0 {
            return Err("--streams-per-conn must be at least 1".into());
        }
        if c.http2 && c.churn > 0.0 {
            return Err(
                "--churn is not supported with --http2 (a churned stream would \
                        have to reopen on its own connection): run it over HTTP/1.1"
                    .into(),
            );
        }
        match self {
            Scenario::Hold(h) if !positive(h.ping_interval) => {
                Err("--ping-interval must be more than 0 seconds".into())
            }
            Scenario::Echo(e) if e.rate.is_some_and(|r| !positive(r)) => {
                Err("-r/--rate must be more than 0 messages per second".into())
            }
            Scenario::Broadcast(b) if !positive(b.rate) => {
                Err("-r/--rate must be more than 0 messages per second".into())
            }
            _ => Ok(()),
        }
    }

    /// What a broadcast run checks and samples besides the scenario.
    fn check(&self) -> Option<Check> {
        match self {
            Scenario::Broadcast(b) => Some(Check {
                allow_loss: b.allow_loss,
                cpu_pids: b.cpu_pid.clone(),
            }),
            _ => None,
        }
    }

    /// Runs it in this process, over its threads.
    fn run_here(&self) -> Result<report::Outcome> {
        let c = self.common();
        let name = self.name();
        match self {
            Scenario::Connect(_) => scenario(name, c, Workload::Idle),
            Scenario::Hold(h) => {
                let workload = Workload::Ping {
                    every: Duration::from_secs_f64(h.ping_interval),
                };
                scenario(name, c, workload)
            }
            Scenario::Echo(e) => scenario(name, c, echo_workload(e)),
            Scenario::Broadcast(b) => {
                let workload = Workload::Broadcast {
                    publishers: usize::from(b.rate > 0.0),
                    rate: b.rate,
                    size: b.size.max(client::BROADCAST_MIN),
                };
                scenario(name, c, workload)
            }
        }
    }

    /// Runs it here or over `--procs` children (with `env` added to theirs),
    /// with the broadcast's exactly-once check and CPU samples attached.
    fn measure(&self, env: &[(&str, String)]) -> Result<report::Outcome> {
        let c = self.common();
        let check = self.check();
        let pids = check.as_ref().map_or(&[][..], |k| &k.cpu_pids[..]);
        let cpu_before: Vec<_> = pids.iter().map(|&p| report::cpu_seconds(p)).collect();
        let mut outcome = if c.procs > 1 {
            procs::run_children(self.name(), c, env)?
        } else {
            self.run_here()?
        };
        if let Some(check) = &check {
            outcome.fanout = Some(report::FanoutCheck {
                nodes: c.url.len(),
                allow_loss: check.allow_loss,
                cpu: check
                    .cpu_pids
                    .iter()
                    .zip(cpu_before)
                    .filter_map(|(&pid, before)| Some((pid, report::cpu_seconds(pid)? - before?)))
                    .collect(),
            });
        }
        Ok(outcome)
    }
}

/// Runs one scenario here, or in `--procs` child processes whose results are
/// merged; prints the summary, writes JSON and the plot. A child only writes
/// its result for the parent.
fn run_scenario(mut s: Scenario, child: Option<procs::Child>) -> Result<()> {
    s.validate()?;
    s.share(child.as_ref());
    if let Some(child) = child {
        let outcome = s.run_here()?;
        return procs::write_child(&child, &outcome);
    }
    let outcome = s.measure(&[])?;
    let c = s.common();
    if let Some(path) = &c.plot {
        plot::draw(path, std::slice::from_ref(&outcome))?;
    }
    outcome.finish(&c.json)
}

/// `compare`: the scenario against each server in turn; one table, one chart,
/// one JSON array. Fails if a broadcast was not exactly once on some server.
fn compare(a: CompareArgs, child: Option<procs::Child>) -> Result<()> {
    if a.urls.len() < 2 {
        return Err("compare: give at least two servers (--url A --url B)".into());
    }
    if !a.label.is_empty() && a.label.len() != a.urls.len() {
        return Err(format!(
            "compare: {} --label for {} --url: give one per server or none",
            a.label.len(),
            a.urls.len()
        )
        .into());
    }
    if !a.server_pids.is_empty() && a.server_pids.len() != a.urls.len() {
        return Err(format!(
            "compare: {} --server-pid for {} --url: give one per server or none",
            a.server_pids.len(),
            a.urls.len()
        )
        .into());
    }
    if a.scenario.common().server_pid.is_some() {
        return Err(
            "compare: give the servers' PIDs as compare --server-pid, one per --url".into(),
        );
    }
    if !(a.pause.is_finite() && a.pause >= 0.0) {
        return Err("compare: --pause must be 0 or more seconds".into());
    }
    // Every URL is checked before the first run.
    parse_urls(&a.urls)?;
    let for_target = |i: usize| {
        let mut s = a.scenario.clone();
        let c = s.common_mut();
        c.url = vec![a.urls[i].clone()];
        c.server_pid = a.server_pids.get(i).copied();
        s
    };
    if let Some(child) = child {
        let i: usize = std::env::var(COMPARE_TARGET)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&i| i < a.urls.len())
            .ok_or("compare: a child process without its server")?;
        return run_scenario(for_target(i), Some(child));
    }
    a.scenario.validate()?;
    let mut outcomes = Vec::new();
    let mut failed = Vec::new();
    for i in 0..a.urls.len() {
        if i > 0 {
            std::thread::sleep(Duration::from_secs_f64(a.pause));
        }
        let s = for_target(i);
        let label = a.label.get(i).cloned().unwrap_or_else(|| a.urls[i].clone());
        eprintln!("loadgen compare: {} against {label} ...", s.name());
        let mut outcome = s.measure(&[(COMPARE_TARGET, i.to_string())])?;
        outcome.name = label;
        if let Err(why) = outcome.verdict() {
            failed.push(format!("{}: {why}", outcome.name));
        }
        outcomes.push(outcome);
    }
    print!("{}", report::compare_table(a.scenario.name(), &outcomes));
    let c = a.scenario.common();
    if let Some(path) = &c.json {
        report::write_json(path, &outcomes)?;
    }
    if let Some(path) = &c.plot {
        plot::draw(path, &outcomes)?;
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; ").into())
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn parse_urls(urls: &[String]) -> Result<Vec<(Target, bool)>> {
    if urls.is_empty() {
        return Err("no --url".into());
    }
    urls.iter().map(|u| parse_url(u)).collect()
}

/// The target of `url`, and whether it is `wss://`.
fn parse_url(url: &str) -> Result<(Target, bool)> {
    let (rest, secure) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => return Err(format!("{url}: only ws:// and wss:// URLs are supported").into()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {authority}"))?;
    Ok((
        Target {
            deflate: false,
            addr,
            host: authority.to_owned(),
            path: path.to_owned(),
            tls: None,
        },
        secure,
    ))
}

/// The TLS side of a `wss://` target: the server name is the URL's host.
fn tls_target(target: &Target, c: &Common) -> Result<tls::TlsTarget> {
    let host = match target.host.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => target.host.as_str(),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ringws::rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host}: {e}"))?;
    Ok(tls::TlsTarget {
        config: tls::client_config(c.insecure, c.ca.as_deref(), c.resume, c.http2)?,
        name,
    })
}

pub(crate) fn parse_sources(spec: &Option<String>) -> Result<Vec<IpAddr>> {
    let Some(spec) = spec else {
        return Ok(Vec::new());
    };
    let (first, last) = spec.split_once('-').unwrap_or((spec, spec));
    let first: std::net::Ipv4Addr = first.parse()?;
    let last: std::net::Ipv4Addr = last.parse()?;
    if !first.is_loopback() || !last.is_loopback() || u32::from(last) < u32::from(first) {
        return Err("sources must be a loopback range like 127.0.0.1-127.0.0.32".into());
    }
    Ok((u32::from(first)..=u32::from(last))
        .map(|ip| IpAddr::from(std::net::Ipv4Addr::from(ip)))
        .collect())
}

/// Runs one scenario over its threads, with a progress display, and merges the
/// threads' reports.
fn scenario(name: &str, c: &Common, workload: Workload) -> Result<report::Outcome> {
    let pid = c.server_pid;
    let mut targets = Vec::new();
    for (mut target, secure) in parse_urls(&c.url)? {
        target.deflate = c.deflate;
        if secure {
            target.tls = Some(tls_target(&target, c)?);
        }
        targets.push(target);
    }
    if targets.len() > 1 && !matches!(workload, Workload::Broadcast { .. }) {
        return Err("only broadcast takes several --url".into());
    }
    let mut threads = c
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    if c.http2 {
        // Every thread drives whole HTTP/2 connections.
        threads = threads.min(c.connections.div_ceil(c.per_conn())).max(1);
    }
    let sources = parse_sources(&c.sources)?;
    let live = Arc::new(Live::default());
    let epoch = procs::epoch();
    let ramp_secs = if c.ramp > 0.0 {
        c.connections as f64 / c.ramp
    } else {
        0.0
    };
    let deadline =
        epoch + Duration::from_secs_f64(ramp_secs + c.duration + c.connect_timeout + 30.0);
    let rss_before = pid.and_then(report::rss_bytes);
    let mut handles = Vec::new();
    for t in 0..threads {
        let share = share_of(c.connections, c.per_conn(), threads, t);
        let workload = match (&workload, t) {
            // One publisher in all: the first connection of thread 0 (of the
            // first process).
            (
                Workload::Broadcast {
                    publishers,
                    rate,
                    size,
                },
                0,
            ) => Workload::Broadcast {
                publishers: *publishers,
                rate: *rate,
                size: *size,
            },
            (Workload::Broadcast { rate, size, .. }, _) => Workload::Broadcast {
                publishers: 0,
                rate: *rate,
                size: *size,
            },
            (w, _) => w.clone(),
        };
        let plan = Plan {
            targets: targets.clone(),
            first_target: t,
            connections: share,
            ramp_rate: if c.ramp > 0.0 {
                c.ramp / threads as f64
            } else {
                f64::INFINITY
            },
            sources: sources.clone(),
            workload,
            hold: Duration::from_secs_f64(c.duration),
            connect_timeout: Duration::from_secs_f64(c.connect_timeout),
            churn: c.churn / 100.0,
            http2: c.http2.then_some(c.per_conn()),
            deadline,
            epoch,
        };
        let live = live.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || client::run(plan, live))?,
        );
    }
    let progress = report::Progress::new(name, c.connections as u64);
    // The server's memory while every connection is held, sampled to the end
    // (the last sample is the settled state: bursts of the ramp are over).
    let mut rss_held = None;
    let mut ramp = Vec::new();
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        progress.update(&live);
        ramp.push((
            epoch.elapsed().as_secs_f64(),
            live.open.load(Ordering::Relaxed),
        ));
        if let Some(rss) = pid.and_then(report::rss_bytes) {
            rss_held = Some(rss);
        }
    }
    progress.finish();
    let mut total: Option<Report> = None;
    for h in handles {
        let r = h.join().map_err(|_| "client thread panicked")?;
        match &mut total {
            Some(t) => t.merge(&r),
            None => total = Some(r),
        }
    }
    let mut total = total.ok_or("no threads")?;
    total.ramp = ramp;
    live.stop.store(true, Ordering::Relaxed);
    Ok(report::Outcome {
        name: name.to_owned(),
        connections: c.connections,
        seconds: c.duration,
        report: total,
        rss: rss_before.zip(rss_held),
        elapsed: epoch.elapsed(),
        fanout: None,
        http2: c.http2.then_some(c.per_conn()),
    })
}

/// What a broadcast run checks and samples besides the scenario.
#[derive(Debug)]
struct Check {
    allow_loss: bool,
    cpu_pids: Vec<u32>,
}

fn echo_workload(e: &EchoArgs) -> Workload {
    let max = e
        .payload
        .size_max
        .unwrap_or(e.payload.size)
        .max(e.payload.size);
    // A range of sizes gets 64 of them (16 where they are large), each
    // connection picking among them at random.
    let variants = if max > e.payload.size && max <= 64 << 10 {
        64
    } else {
        16
    };
    let payloads = Arc::new(Payloads::new(
        e.payload.size,
        max,
        e.payload.text,
        variants,
        e.common.deflate,
    ));
    let rate = e.rate.map(|r| r / e.common.connections.max(1) as f64);
    Workload::Echo {
        in_flight: e.in_flight.max(1),
        rate,
        payloads,
    }
}

/// The main job: the embedded server under the standard scenarios.
fn bench(b: &BenchArgs) -> Result<()> {
    let backend = ringws::BackendKind::parse(&b.backend).ok_or("unknown backend")?;
    let server = embedded::start(backend, b.server_workers, b.tls)?;
    let addr: SocketAddr = server.local_addr();
    let scheme = if b.tls { "wss" } else { "ws" };
    let over = if b.http2 {
        format!(
            ", over HTTP/2 ({} streams per connection)",
            b.streams_per_conn
        )
    } else {
        String::new()
    };
    println!(
        "ringws bench: embedded {scheme} server on {addr} ({} worker(s), backend {}), {} client thread(s), {} s per scenario{over}",
        b.server_workers,
        server.backend(),
        b.threads,
        b.duration
    );
    let scaled = |n: usize| ((n as f64 * b.scale).round() as usize).max(1);
    let common = |connections: usize, path: &str| Common {
        url: vec![format!("{scheme}://{addr}{path}")],
        insecure: b.tls,
        ca: None,
        resume: false,
        connections: scaled(connections),
        ramp: 0.0,
        duration: b.duration,
        threads: Some(b.threads),
        sources: None,
        connect_timeout: 10.0,
        churn: 0.0,
        server_pid: None,
        json: None,
        plot: None,
        procs: 1,
        deflate: false,
        http2: b.http2,
        streams_per_conn: b.streams_per_conn.max(1),
    };
    let payload = |size: usize| Payload {
        size,
        size_max: None,
        text: false,
    };
    let mut outcomes = Vec::new();
    outcomes.push(scenario(
        &format!("connect {}", scaled(2000)),
        &Common {
            duration: 0.5,
            ..common(2000, "/")
        },
        Workload::Idle,
    )?);
    for (conns, size) in [(100, 20), (1000, 20), (100, 16 * 1024)] {
        let e = EchoArgs {
            common: common(conns, "/"),
            payload: payload(size),
            in_flight: 1,
            rate: None,
        };
        let mut o = scenario(
            &format!("echo {conns} x {}", report::size(size)),
            &e.common,
            echo_workload(&e),
        )?;
        o.name = format!("echo {} conns x {}", scaled(conns), report::size(size));
        outcomes.push(o);
    }
    let e = EchoArgs {
        common: common(1000, "/"),
        payload: payload(20),
        in_flight: 1,
        rate: Some(20_000.0),
    };
    let open_loop = format!("echo open-loop {} conns @ 20k/s", scaled(1000));
    outcomes.push(scenario(&open_loop, &e.common, echo_workload(&e))?);
    let bc = Scenario::Broadcast(BroadcastArgs {
        common: common(1000, "/chat"),
        rate: 100.0,
        size: 64,
        allow_loss: false,
        cpu_pid: Vec::new(),
    });
    let mut o = bc.run_here()?;
    o.name = format!("broadcast {} subs @ 100/s", scaled(1000));
    outcomes.push(o);
    let h = Scenario::Hold(HoldArgs {
        common: common(5000, "/"),
        ping_interval: 1.0,
    });
    let mut o = h.run_here()?;
    o.name = format!("hold {} conns, ping 1/s", scaled(5000));
    outcomes.push(o);
    server.shutdown(Duration::from_secs(2));
    report::table(&outcomes);
    if let Some(path) = &b.json {
        report::write_json(path, &outcomes)?;
    }
    if let Some(path) = &b.plot {
        plot::draw(path, &outcomes)?;
    }
    Ok(())
}
