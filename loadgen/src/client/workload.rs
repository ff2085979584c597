//! What the scenarios do with an open WebSocket, whatever carries it: the
//! first sends and schedules, and judging each message received.

use std::cmp::Reverse;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::conn::{Conn, Schedule, Tx};
use super::{
    BROADCAST_MARK, BROADCAST_MIN, Heard, Live, MEASURED_PROBE, Payloads, Plan, Report, Workload,
};
use crate::series;

/// The payload variant of a connection's `n`th message: a mix of the counter
/// (so sizes follow no pattern), the same on every run.
fn variant_of(n: u32, variants: usize) -> usize {
    let mut x = n.wrapping_mul(0x9E37_79B9);
    x ^= x >> 16;
    x = x.wrapping_mul(0x85EB_CA6B);
    x ^= x >> 13;
    x as usize % variants.max(1)
}

pub(super) fn send_echo(tx: &mut Tx, payloads: &Payloads, intended: Instant) {
    let variant = variant_of(tx.next_variant, payloads.frames.len());
    tx.next_variant = tx.next_variant.wrapping_add(1);
    tx.out().extend_from_slice(&payloads.frames[variant]);
    tx.await_echo(variant as u32, intended);
}

pub(super) fn on_open(
    key: usize,
    conn: &mut Conn,
    plan: &Plan,
    schedule: &mut Schedule,
    now: Instant,
) {
    if conn.tx.stopped {
        return;
    }
    match &plan.workload {
        Workload::Idle => {}
        Workload::Ping { every } => {
            // Spread the first pings over one interval.
            let offset = every.mul_f64((key % 1000) as f64 / 1000.0);
            if let Some(wheel) = &mut schedule.pings {
                wheel.push(now + offset, key as u32, conn.serial);
            }
        }
        Workload::Echo {
            in_flight,
            rate: None,
            payloads,
        } => {
            for _ in 0..*in_flight {
                send_echo(&mut conn.tx, payloads, now);
            }
        }
        Workload::Echo {
            rate: Some(rate), ..
        } => {
            let period = Duration::from_secs_f64(1.0 / rate);
            let offset = period.mul_f64((key % 1000) as f64 / 1000.0);
            schedule
                .heap
                .push(Reverse((now + offset, key as u32, conn.serial)));
        }
        Workload::Broadcast {
            publishers, rate, ..
        } => {
            if key < *publishers {
                schedule.heap.push(Reverse((
                    now + Duration::from_secs_f64(1.0 / rate),
                    key as u32,
                    conn.serial,
                )));
            }
        }
    }
}

/// What a received message is judged by, besides the connection's send side.
pub(super) struct Rx<'a> {
    pub(super) node: usize,
    pub(super) heard: &'a mut Option<Box<Heard>>,
    pub(super) plan: &'a Plan,
    pub(super) live: &'a Live,
    pub(super) now: Instant,
}

/// A broadcast probe's send time, sequence number, and whether it was
/// published in the measured window, if `payload` is one.
fn probe(payload: &[u8], binary: bool) -> Option<(u64, u64, bool)> {
    if !binary || payload.len() < BROADCAST_MIN || &payload[16..20] != BROADCAST_MARK {
        return None;
    }
    let sent = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
    let word = u64::from_be_bytes(payload[8..16].try_into().expect("8 bytes"));
    Some((sent, word & !MEASURED_PROBE, word & MEASURED_PROBE != 0))
}

pub(super) fn on_message(
    tx: &mut Tx,
    rx: &mut Rx<'_>,
    payload: &[u8],
    binary: bool,
    report: &mut Report,
) {
    let (plan, live, now) = (rx.plan, rx.live, rx.now);
    let probe = probe(payload, binary);
    if matches!(plan.workload, Workload::Broadcast { .. }) && probe.is_none() {
        // Not ours (a chat's "joined" line, say).
        return;
    }
    // A probe counts by when it was published, so that the deliveries match
    // the publishes counted; anything else by when it arrives.
    let measuring = probe.map_or(report.measuring, |(_, _, measured)| measured);
    if measuring {
        report.messages += 1;
        report.bytes += payload.len() as u64;
    }
    report.rec.now.messages += 1;
    report.rec.now.bytes += payload.len() as u64;
    live.messages.fetch_add(1, Ordering::Relaxed);
    match &plan.workload {
        Workload::Echo { rate, payloads, .. } => {
            let Some((variant, intended)) = tx.answered() else {
                report.mismatch();
                return;
            };
            if payloads.payloads[variant as usize] != payload {
                report.mismatch();
            }
            report.record_latency((now - intended).as_micros() as u64);
            if rate.is_none() && !tx.stopped {
                send_echo(tx, payloads, now);
            } else {
                // Open loop: nothing awaited until the next send, so no
                // memory held for it either.
                tx.release();
            }
        }
        Workload::Broadcast { .. } => {
            let Some((sent, seq, _)) = probe else { return };
            let at = (now - plan.epoch).as_micros() as u64;
            let latency = at.saturating_sub(sent).clamp(series::LOW, series::HIGH);
            let _ = report.rec.latency.record(latency);
            let f = &mut report.fanout;
            if measuring {
                let _ = report.latency.record(latency);
                if rx.node == 0 {
                    let _ = f.latency_local.record(latency);
                    f.messages_local += 1;
                } else {
                    let _ = f.latency_remote.record(latency);
                    f.messages_remote += 1;
                }
            }
            match rx.heard {
                None => {
                    *rx.heard = Some(Box::new(Heard {
                        first: seq,
                        last: seq,
                        distinct: 1,
                        at: now,
                        gap: 0,
                    }));
                }
                Some(h) => {
                    if seq <= h.last {
                        f.out_of_order += 1;
                    } else {
                        h.distinct += 1;
                        h.last = seq;
                    }
                    h.gap = h.gap.max((now - h.at).as_micros() as u64);
                    h.at = now;
                }
            }
        }
        _ => {}
    }
}
