//! A scenario run in this process: the URLs parsed, the threads planned and
//! started (HTTP/2 connections split whole between them), their reports
//! merged.

use std::net::{IpAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::{self, Live, Payloads, Plan, Report, Target, Workload};
use crate::{Common, EchoArgs, Result, procs, report, share_of, stream, tls};

/// The counters of the run going on in this process, for an agent's
/// per-second ticks to its controller (None before the first run).
pub(crate) static LIVE: Mutex<Option<Arc<Live>>> = Mutex::new(None);

pub(crate) fn parse_urls(urls: &[String]) -> Result<Vec<(Target, bool)>> {
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
pub(crate) fn tls_target(target: &Target, c: &Common) -> Result<tls::TlsTarget> {
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
pub(crate) fn scenario(name: &str, c: &Common, workload: Workload) -> Result<report::Outcome> {
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
    *LIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(live.clone());
    let epoch = procs::epoch();
    let ramp_secs = if c.ramp > 0.0 {
        c.connections as f64 / c.ramp
    } else {
        0.0
    };
    let deadline =
        epoch + Duration::from_secs_f64(ramp_secs + c.duration + c.connect_timeout + 30.0);
    let rss_before = pid.and_then(report::rss_bytes);
    let outbox = stream::start(threads);
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
            seconds: outbox.clone().map(|o| (o, t)),
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
        if stream::aborted() {
            live.stop.store(true, Ordering::Relaxed);
        }
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
    if let Some(o) = &outbox {
        o.close_all();
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

pub(crate) fn echo_workload(e: &EchoArgs) -> Workload {
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
