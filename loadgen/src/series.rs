//! Per-second samples of a run: how many connections were open, how many
//! opened, messages, pings and errors, and the latency of that second, so a
//! ramp, a stall or a pause shows over time and not only in the totals.
//!
//! Each client thread keeps one [`Recorder`]: plain counters and two
//! histograms for the current second, which the event loop rolls over once
//! per second (not per message: nothing is allocated on the message path,
//! but for a histogram growing to a larger value than it has held, at most
//! once per doubling). A rolled second becomes a [`Sample`] whose histograms are kept as
//! their recorded buckets only ([`Sparse`]), so samples of threads and
//! processes merge exactly (counts add, histograms add bucket by bucket) by
//! their second since the run's epoch, which `--procs` children share.

use std::sync::Arc;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::stream::Outbox;

/// Histogram bounds (µs) of every latency the load generator records.
pub const LOW: u64 = 1;
pub const HIGH: u64 = 60_000_000;
pub const SIGFIG: u8 = 3;

/// A histogram with the load generator's bounds.
///
/// It starts with room for values up to 2 ms (16 KiB of counts) and grows
/// as larger ones are recorded, by 8 KiB each doubling of the largest value,
/// up to [`HIGH`] (the callers clamp to it): sized at [`HIGH`] from the
/// start, every histogram would cost 136 KiB of counts, all resident (they
/// are zeroed when made), and a client thread has eight, most of which
/// never see a value (or no large one). The buckets are the same either
/// way (they depend on the lowest value and the precision only), so every
/// figure, and exact merging, stays as it was.
pub fn histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(LOW, 2 * LOW, SIGFIG).expect("valid bounds");
    h.auto(true);
    h
}

/// What is counted in one second (or over a run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Connections that completed their upgrade.
    pub connects: u64,
    /// Failed connection attempts (any cause).
    pub failures: u64,
    /// Messages received (echoes, broadcast deliveries).
    pub messages: u64,
    pub bytes: u64,
    /// Broadcast messages published.
    pub published: u64,
    pub pings: u64,
    pub pongs: u64,
    /// Pings whose pong had not come when the next was due.
    pub missed: u64,
    /// Echoes that did not match what was sent.
    pub mismatches: u64,
    /// Open connections lost (closed by the server or by an error).
    pub dropped: u64,
    /// Connections closed and reopened on purpose (`--churn`).
    pub churned: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.connects += o.connects;
        self.failures += o.failures;
        self.messages += o.messages;
        self.bytes += o.bytes;
        self.published += o.published;
        self.pings += o.pings;
        self.pongs += o.pongs;
        self.missed += o.missed;
        self.mismatches += o.mismatches;
        self.dropped += o.dropped;
        self.churned += o.churned;
    }

    /// Failures, missed pongs, mismatched echoes and dropped connections.
    pub fn errors(&self) -> u64 {
        self.failures + self.missed + self.mismatches + self.dropped
    }
}

/// The recorded buckets of a histogram: (highest equivalent value, count),
/// ascending by value. Two of them from histograms with the same bounds merge
/// exactly.
///
/// In 32 bits each, half the memory of 64: every second of a run keeps two
/// of these per thread (and merged, in a `--procs` parent), so over a long
/// hold they outweigh much else a process holds. Values are clamped to
/// [`HIGH`] (~2^26) before they are recorded; a bucket's count in one
/// second would need more than four billion events to saturate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sparse(pub Vec<(u32, u32)>);

/// `x` in 32 bits, saturating.
fn narrow(x: u64) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

impl Sparse {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        Self(
            h.iter_recorded()
                .map(|v| {
                    (
                        narrow(h.highest_equivalent(v.value_iterated_to())),
                        narrow(v.count_at_value()),
                    )
                })
                .collect(),
        )
    }

    /// Adds another's buckets (both ascending: a merge, equal values summed).
    pub fn merge(&mut self, other: &Sparse) {
        if other.0.is_empty() {
            return;
        }
        if self.0.is_empty() {
            self.0 = other.0.clone();
            return;
        }
        let mut out = Vec::with_capacity(self.0.len() + other.0.len());
        let (mut a, mut b) = (self.0.iter().peekable(), other.0.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(&&(va, ca)), Some(&&(vb, cb))) => {
                    if va == vb {
                        out.push((va, ca.saturating_add(cb)));
                        a.next();
                        b.next();
                    } else if va < vb {
                        out.push((va, ca));
                        a.next();
                    } else {
                        out.push((vb, cb));
                        b.next();
                    }
                }
                (Some(&&p), None) => {
                    out.push(p);
                    a.next();
                }
                (None, Some(&&p)) => {
                    out.push(p);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.0 = out;
    }

    pub fn count(&self) -> u64 {
        self.0.iter().map(|&(_, c)| u64::from(c)).sum()
    }

    /// The value at quantile `q` (0..=1), as hdrhistogram reports it: the
    /// smallest recorded value with at least `q` of the count at or below it.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let wanted = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &(v, c) in &self.0 {
            seen += u64::from(c);
            if seen >= wanted {
                return Some(v.into());
            }
        }
        self.max()
    }

    pub fn max(&self) -> Option<u64> {
        self.0.last().map(|&(v, _)| v.into())
    }

    pub fn to_json(&self) -> Value {
        Value::Array(self.0.iter().map(|&(v, c)| json!([v, c])).collect())
    }

    /// The buckets of [`Sparse::to_json`]; malformed entries are skipped.
    pub fn from_json(v: &Value) -> Self {
        let mut pairs: Vec<(u32, u32)> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((narrow(p.get(0)?.as_u64()?), narrow(p.get(1)?.as_u64()?))))
            .collect();
        pairs.sort_unstable_by_key(|&(v, _)| v);
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(pairs.len());
        for (v, c) in pairs {
            match merged.last_mut() {
                Some(last) if last.0 == v => last.1 = last.1.saturating_add(c),
                _ => merged.push((v, c)),
            }
        }
        Self(merged)
    }
}

/// One second of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    /// Seconds since the run's epoch: this sample covers `t..t+1`.
    pub t: u64,
    /// Connections open at the end of the second.
    pub open: u64,
    pub counts: Counts,
    /// Message latency (echo round trip, fan-out delay; hold: ping to pong)
    /// of the second, µs.
    pub latency: Sparse,
    /// Connect + upgrade time of the connections opened in the second, µs.
    pub handshake: Sparse,
}

impl Sample {
    /// Adds another part's same second (counts, open, histograms).
    pub fn add(&mut self, o: &Sample) {
        self.open += o.open;
        self.counts.add(&o.counts);
        self.latency.merge(&o.latency);
        self.handshake.merge(&o.handshake);
    }

    /// Messages if there were any, else pongs, else connections opened: what
    /// the scenario does per second.
    pub fn rate(&self) -> u64 {
        let c = &self.counts;
        if c.messages > 0 {
            c.messages
        } else if c.pongs > 0 {
            c.pongs
        } else {
            c.connects
        }
    }

    /// The figures shown and written to `--json` (latency in ms).
    pub fn to_json(&self) -> Value {
        let ms = |s: &Sparse, q: f64| s.quantile(q).map(|v| v as f64 / 1000.0);
        let c = &self.counts;
        json!({
            "t": self.t,
            "open": self.open,
            "connects": c.connects,
            "failures": c.failures,
            "messages": c.messages,
            "bytes": c.bytes,
            "published": c.published,
            "pings": c.pings,
            "pongs": c.pongs,
            "missed_pongs": c.missed,
            "mismatches": c.mismatches,
            "dropped": c.dropped,
            "churned": c.churned,
            "errors": c.errors(),
            "latency_ms": { "p50": ms(&self.latency, 0.5), "p99": ms(&self.latency, 0.99), "max": self.latency.max().map(|v| v as f64 / 1000.0) },
            "handshake_ms": { "p50": ms(&self.handshake, 0.5), "p99": ms(&self.handshake, 0.99) },
        })
    }

    /// Everything, histograms included, for a `--procs` child's result.
    pub fn to_child_json(&self) -> Value {
        let c = &self.counts;
        json!({
            "t": self.t,
            "open": self.open,
            "counts": [c.connects, c.failures, c.messages, c.bytes, c.published, c.pings,
                       c.pongs, c.missed, c.mismatches, c.dropped, c.churned],
            "latency": self.latency.to_json(),
            "handshake": self.handshake.to_json(),
        })
    }

    pub fn from_child_json(v: &Value) -> Option<Self> {
        let n: Vec<u64> = v["counts"]
            .as_array()?
            .iter()
            .map(|x| x.as_u64())
            .collect::<Option<_>>()?;
        if n.len() != 11 {
            return None;
        }
        Some(Self {
            t: v["t"].as_u64()?,
            open: v["open"].as_u64()?,
            counts: Counts {
                connects: n[0],
                failures: n[1],
                messages: n[2],
                bytes: n[3],
                published: n[4],
                pings: n[5],
                pongs: n[6],
                missed: n[7],
                mismatches: n[8],
                dropped: n[9],
                churned: n[10],
            },
            latency: Sparse::from_json(&v["latency"]),
            handshake: Sparse::from_json(&v["handshake"]),
        })
    }
}

/// Adds `other`'s samples to `into`, second by second (both ascending by
/// `t`; a second only one of them has is kept as it is).
pub fn merge(into: &mut Vec<Sample>, other: &[Sample]) {
    for s in other {
        match into.binary_search_by_key(&s.t, |x| x.t) {
            Ok(i) => into[i].add(s),
            Err(i) => into.insert(i, s.clone()),
        }
    }
}

/// The current second of one client thread.
#[derive(Debug)]
pub struct Recorder {
    /// The second being counted (since the epoch).
    second: u64,
    /// Connections open now.
    pub open: u64,
    /// This second's counts: the event loop adds to them directly.
    pub now: Counts,
    pub latency: Histogram<u64>,
    pub handshake: Histogram<u64>,
    samples: Vec<Sample>,
    /// Where closed seconds go as they close too, and this thread's slot
    /// there (an agent, a `--procs` child: they stream them).
    outbox: Option<(Arc<Outbox>, usize)>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            second: 0,
            open: 0,
            now: Counts::default(),
            latency: histogram(),
            handshake: histogram(),
            samples: Vec::new(),
            outbox: None,
        }
    }
}

impl Recorder {
    /// Moves to `second` (since the epoch): closes the current second and any
    /// silent ones in between. Cheap when the second has not changed.
    pub fn roll(&mut self, second: u64) {
        if second <= self.second {
            return;
        }
        let closed = self.samples.len();
        self.close_current();
        // Seconds in which this thread did not run (a stall): nothing counted,
        // the same connections open.
        for t in self.second + 1..second {
            self.samples.push(Sample {
                t,
                open: self.open,
                ..Sample::default()
            });
        }
        self.second = second;
        if let Some((outbox, slot)) = &self.outbox {
            outbox.add(*slot, &self.samples[closed..], second);
        }
    }

    /// Streams closed seconds to `outbox` as producer `slot` too.
    pub fn stream_to(&mut self, outbox: Option<(Arc<Outbox>, usize)>) {
        self.outbox = outbox;
    }

    fn close_current(&mut self) {
        self.samples.push(Sample {
            t: self.second,
            open: self.open,
            counts: std::mem::take(&mut self.now),
            latency: Sparse::from_histogram(&self.latency),
            handshake: Sparse::from_histogram(&self.handshake),
        });
        self.latency.reset();
        self.handshake.reset();
    }

    /// Every second so far, the current (partial) one included.
    pub fn finish(mut self) -> Vec<Sample> {
        self.close_current();
        if let Some((outbox, slot)) = &self.outbox {
            outbox.add(*slot, &self.samples[self.samples.len() - 1..], u64::MAX);
        }
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(values: &[u64]) -> Sparse {
        let mut h = histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        Sparse::from_histogram(&h)
    }

    #[test]
    fn rollover_closes_each_second_and_fills_stalls() {
        let mut r = Recorder {
            open: 3,
            ..Recorder::default()
        };
        r.now.messages = 5;
        r.latency.record(100).unwrap();
        r.roll(0); // same second: nothing closed
        r.now.messages += 1;
        r.roll(1);
        r.now.messages = 7;
        r.latency.record(2000).unwrap();
        r.open = 4;
        r.roll(4); // seconds 2 and 3: a stall
        r.now.pongs = 9;
        let s = r.finish();
        assert_eq!(s.iter().map(|s| s.t).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert_eq!(s[0].counts.messages, 6);
        assert_eq!(s[0].latency.count(), 1);
        assert_eq!(s[0].open, 3);
        assert_eq!(s[1].counts.messages, 7);
        assert_eq!(s[1].latency.quantile(0.5), recorded(&[2000]).quantile(0.5));
        assert_eq!(s[1].open, 4);
        assert_eq!(s[2].counts, Counts::default());
        assert_eq!(s[2].open, 4);
        assert!(s[3].latency.0.is_empty());
        assert_eq!(s[4].counts.pongs, 9);
        assert_eq!(
            s[4].latency.count(),
            0,
            "the histogram is reset at rollover"
        );
    }

    #[test]
    fn sparse_quantiles_match_hdrhistogram() {
        let values: Vec<u64> = (1..=10_000).map(|i| i * 37 % 90_001 + 1).collect();
        let mut h = histogram();
        for &v in &values {
            h.record(v).unwrap();
        }
        let s = Sparse::from_histogram(&h);
        assert_eq!(s.count(), 10_000);
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                s.quantile(q),
                Some(h.highest_equivalent(h.value_at_quantile(q))),
                "q {q}"
            );
        }
        assert_eq!(s.max(), Some(h.highest_equivalent(h.max())));
        assert_eq!(Sparse::default().quantile(0.5), None);
    }

    /// Growing as values come, a histogram buckets them as one sized for
    /// [`HIGH`] from the start, and takes a larger one's counts when merged.
    #[test]
    fn a_growing_histogram_buckets_as_a_full_one() {
        let mut full = Histogram::<u64>::new_with_bounds(LOW, HIGH, SIGFIG).unwrap();
        let (mut grown, mut small) = (histogram(), histogram());
        for v in [1, 999, 2_047, 2_049, 123_457, 7_654_321, HIGH] {
            full.record(v).unwrap();
            grown.record(v).unwrap();
        }
        small.record(3).unwrap();
        small.add(&grown).unwrap();
        full.record(3).unwrap();
        assert_eq!(
            Sparse::from_histogram(&small),
            Sparse::from_histogram(&full)
        );
        assert_eq!(small.value_at_quantile(0.5), full.value_at_quantile(0.5));
        assert_eq!(small.max(), full.max());
    }

    #[test]
    fn sparse_merge_equals_one_histogram_of_both() {
        let (a, b) = ([5, 5, 900, 40_000], [5, 7, 900, 1_000_000, 3]);
        let mut merged = recorded(&a);
        merged.merge(&recorded(&b));
        let all: Vec<u64> = a.iter().chain(&b).copied().collect();
        assert_eq!(merged, recorded(&all));
        // And through JSON, in any order.
        let mut json = merged.to_json();
        json.as_array_mut().unwrap().reverse();
        assert_eq!(Sparse::from_json(&json), merged);
        assert_eq!(Sparse::from_json(&json!("nonsense")), Sparse::default());
    }

    #[test]
    fn series_merge_by_second_across_processes() {
        let sample = |t, open, messages, lat: &[u64]| Sample {
            t,
            open,
            counts: Counts {
                messages,
                ..Counts::default()
            },
            latency: recorded(lat),
            handshake: Sparse::default(),
        };
        // One process started a second later and ended a second earlier.
        let mut a = vec![
            sample(0, 10, 100, &[10]),
            sample(1, 20, 200, &[20]),
            sample(2, 20, 200, &[30]),
        ];
        let b = vec![sample(1, 5, 50, &[1000]), sample(3, 1, 1, &[])];
        merge(&mut a, &b);
        assert_eq!(a.iter().map(|s| s.t).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(a[1].open, 25);
        assert_eq!(a[1].counts.messages, 250);
        assert_eq!(a[1].latency.count(), 2);
        assert_eq!(a[1].latency.max(), recorded(&[1000]).max());
        assert_eq!(a[3].open, 1);
        // Through a child's JSON and back, unchanged.
        for s in &a {
            assert_eq!(
                Sample::from_child_json(&s.to_child_json()).as_ref(),
                Some(s)
            );
        }
        assert_eq!(Sample::from_child_json(&json!({"t": 1})), None);
    }
}
