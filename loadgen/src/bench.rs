//! `bench`: the embedded ringws server under the standard scenarios.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use crate::client::Workload;
use crate::scenario::{echo_workload, scenario};
use crate::{
    BroadcastArgs, Common, EchoArgs, HoldArgs, Payload, Result, Scenario, embedded, plot, report,
};

#[derive(Args, Debug, Clone)]
pub(crate) struct BenchArgs {
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

/// The main job: the embedded server under the standard scenarios.
pub(crate) fn bench(b: &BenchArgs) -> Result<()> {
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
        agents: Vec::new(),
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
    for o in &outcomes {
        println!("{}: {}", o.name, o.report.self_load.line());
    }
    if let Some(path) = &b.json {
        report::write_json(path, &outcomes)?;
    }
    if let Some(path) = &b.plot {
        plot::draw(path, &outcomes)?;
    }
    Ok(())
}
