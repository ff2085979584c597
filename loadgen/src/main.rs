//! `loadgen`: drives any `ws://` server with many connections and tells the truth
//! about latency. See `loadgen --help`.

mod agent;
mod agents;
mod bench;
mod client;
mod embedded;
mod h2;
mod plot;
mod procs;
mod report;
mod scenario;
mod series;
mod stream;
mod tls;
mod wire;

use std::ffi::OsString;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use bench::{BenchArgs, bench};
use client::Workload;
pub(crate) use scenario::parse_sources;
use scenario::{echo_workload, parse_urls, scenario};

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
    /// Serve controllers on a client host: run the share of a scenario that a
    /// `loadgen <scenario> --agents HOST:PORT,...` sends, one session at a time.
    Agent(agent::AgentArgs),
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
    /// Client threads (default: available cores; with --procs, the cores
    /// shared among the processes, at least one each).
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
    /// Run on these client hosts (`loadgen agent --listen` on each), split
    /// evenly (the remainder to the first): HOST:PORT,HOST:PORT. --url is as
    /// the agents reach the server; --procs is each agent's processes.
    #[arg(long, value_delimiter = ',')]
    agents: Vec<String>,
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
    /// Seconds between pings on each connection (pings are due on ticks of
    /// 1/1024 of this, at least 1 ms).
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
        Command::Agent(a) => agent::serve(&a),
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

    /// Narrows it to a `--procs` child's share (connections, rates, sources);
    /// the child of an agent takes its agent's part first.
    fn share(&mut self, child: Option<&procs::Child>) {
        let Some(child) = child else { return };
        if let Some((i, n)) = agent::part_from_env() {
            self.share_part(i, n);
        }
        self.share_part(child.index, child.count);
        procs::child_settings(self.common_mut(), child);
    }

    /// Narrows it to part `i` of `n`: connections, ramp, sources, the
    /// open-loop rate (the whole run's: each part takes its share) and the
    /// broadcast publisher (one in all: in the first part).
    fn share_part(&mut self, i: usize, n: usize) {
        let total = self.common().connections;
        procs::share_part(self.common_mut(), i, n);
        match self {
            Scenario::Echo(e) => {
                if let Some(rate) = e.rate.as_mut() {
                    *rate *= e.common.connections as f64 / total.max(1) as f64;
                }
            }
            Scenario::Broadcast(b) if i != 0 => b.rate = 0.0,
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

    /// Runs it here or over `--procs` children (started with the scenario's
    /// arguments `args` and `env` added to their environment), with the
    /// broadcast's exactly-once check and CPU samples attached.
    fn measure(&self, args: &[OsString], env: &[(&str, String)]) -> Result<report::Outcome> {
        let c = self.common();
        let cpu = self.cpu_before();
        let mut outcome = if c.procs > 1 {
            procs::run_children(self.name(), c, args, env)?
        } else {
            self.run_here()?
        };
        self.attach_check(&mut outcome, cpu);
        Ok(outcome)
    }

    /// The CPU seconds of the broadcast's `--cpu-pid`s before the run.
    fn cpu_before(&self) -> Vec<Option<f64>> {
        let check = self.check();
        let pids = check.as_ref().map_or(&[][..], |k| &k.cpu_pids[..]);
        pids.iter().map(|&p| report::cpu_seconds(p)).collect()
    }

    /// A broadcast's exactly-once check and the CPU its `--cpu-pid`s used
    /// since `cpu_before`.
    fn attach_check(&self, outcome: &mut report::Outcome, cpu_before: Vec<Option<f64>>) {
        if let Some(check) = self.check() {
            outcome.fanout = Some(report::FanoutCheck {
                nodes: self.common().url.len(),
                allow_loss: check.allow_loss,
                cpu: check
                    .cpu_pids
                    .iter()
                    .zip(cpu_before)
                    .filter_map(|(&pid, before)| Some((pid, report::cpu_seconds(pid)? - before?)))
                    .collect(),
            });
        }
    }
}

/// Runs one scenario here, or in `--procs` child processes whose results are
/// merged; prints the summary, writes JSON and the plot. A child only writes
/// its result for the parent.
fn run_scenario(mut s: Scenario, child: Option<procs::Child>) -> Result<()> {
    s.validate()?;
    s.share(child.as_ref());
    if let Some(child) = child {
        return procs::run_child(&child, || s.run_here());
    }
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if !s.common().agents.is_empty() {
        return agents::run(&s, &args);
    }
    let outcome = s.measure(&args, &[])?;
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
    if !a.scenario.common().agents.is_empty() {
        return Err(
            "compare: --agents is not supported; run the scenario with --agents once per server"
                .into(),
        );
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
        let args: Vec<OsString> = std::env::args_os().skip(1).collect();
        let mut outcome = s.measure(&args, &[(COMPARE_TARGET, i.to_string())])?;
        outcome.name = label;
        if let Err(why) = outcome.verdict() {
            failed.push(format!("{}: {why}", outcome.name));
        }
        outcomes.push(outcome);
    }
    print!("{}", report::compare_table(a.scenario.name(), &outcomes));
    for o in &outcomes {
        println!("{}: {}", o.name, o.report.self_load.line());
    }
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

/// What a broadcast run checks and samples besides the scenario.
#[derive(Debug)]
struct Check {
    allow_loss: bool,
    cpu_pids: Vec<u32>,
}
