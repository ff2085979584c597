//! Our HTTP/2 codec (`transport::h2`, driven as the worker drives it:
//! `ringws::h2_bench`) against the `h2` crate (hyperium's, the one hyper
//! uses) driven from a worker-like single-threaded loop over in-memory I/O
//! and a no-op waker. Both read the same bytes, written once per bench by
//! the client in `h2_support` (HPACK as a browser encodes it), do the same
//! work (the echo: unmask, reply, credit the windows) and write the same
//! DATA and `:status 200`s, checked before timing.
//!
//! - `echo/20B`: one read of 100 DATA frames of 26 bytes (a masked 20-byte
//!   WebSocket frame), one per open stream; each answered with a 22-byte
//!   DATA. Per message.
//! - `echo/16KiB`: the same with DATA frames of 16,384 bytes (a masked
//!   frame of 16,376 payload bytes), answered with 16,380-byte DATA.
//! - `open/indexed` and `open/literal`: a read with one extended CONNECT
//!   (RFC 8441) answered with `:status 200`, then a read with the client's
//!   END_STREAM answered with ours. `indexed`: every field found in the
//!   dynamic table (a browser's second WebSocket on the connection);
//!   `literal`: the connection's first request, Huffman-coded literals with
//!   incremental indexing. Per stream opened and closed.
//!
//! `cargo bench -p ringws-bench --bench h2`

mod h2_support;

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use h2_support::{
    CLIENT_WINDOW, DATA, END_HEADERS, END_STREAM, Encoder, H2, HEADERS, Ours, STREAMS, WS_REQUEST,
    Wrote, data_by_stream, echo_read, echo_replies, frame, open_streams, wrote,
};

/// Most rounds on one connection before it is rebuilt (untimed).
const MAX_ROUNDS: u64 = 50_000;

/// Times `iters` rounds, on connections built by `setup` (untimed), each
/// used for at most `per_conn` rounds.
fn timed<S>(
    iters: u64,
    per_conn: u64,
    mut setup: impl FnMut() -> S,
    mut round: impl FnMut(&mut S),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let mut server = setup();
        let n = (iters - done).min(per_conn);
        let start = Instant::now();
        for _ in 0..n {
            round(&mut server);
        }
        total += start.elapsed();
        done += n;
    }
    total
}

fn echo_ours(input: &[u8]) -> Ours {
    let mut ours = Ours::new();
    ours.receive(&open_streams(&mut Encoder::default(), 1, STREAMS));
    assert_eq!(ours.carrier.carried(), STREAMS as usize);
    ours.input = input.to_vec();
    ours
}

fn echo_h2(input: &[u8]) -> H2 {
    let mut h2 = H2::new();
    h2.receive(&open_streams(&mut Encoder::default(), 1, STREAMS));
    assert_eq!(h2.streams.len(), STREAMS as usize);
    *h2.input_mut() = input.to_vec();
    h2
}

/// A decoder for a server's header blocks (a connection's: blocks decoded
/// in order).
fn hpack() -> loona_hpack::Decoder<'static> {
    loona_hpack::Decoder::new()
}

/// Both servers' output over setup and `rounds` rounds, parsed.
fn check(name: &str, ours: &[u8], h2: &[u8]) {
    let ours = wrote(ours, &mut hpack());
    let h2 = wrote(h2, &mut hpack());
    println!("{name}: ours wrote {ours:?}");
    println!("{name}: h2   wrote {h2:?}");
    assert_eq!(ours.data_bytes, h2.data_bytes, "{name}: DATA bytes");
    assert_eq!(ours.end_streams, h2.end_streams, "{name}: END_STREAMs");
    assert_eq!(ours.status_200, h2.status_200, "{name}: 200s");
    for w in [&ours, &h2] {
        assert!(
            w.other_status == 0 && w.resets == 0 && w.goaways == 0,
            "{name}"
        );
    }
}

fn echo(c: &mut Criterion) {
    let mut group = c.benchmark_group("h2/echo");
    for (name, payload) in [("20B", 20usize), ("16KiB", 16_376)] {
        let input = echo_read(payload);
        let reply = payload + if payload < 126 { 2 } else { 4 };
        let per_conn =
            (u64::from(CLIENT_WINDOW) / (u64::from(STREAMS) * reply as u64) - 1).min(MAX_ROUNDS);
        // The same bytes out of both, and the right ones: each stream's
        // payload back on it, unmasked, once a round (three rounds checked).
        let expected = echo_replies(payload, 1);
        let mut ours = echo_ours(&input);
        let mut h2 = echo_h2(&input);
        for _ in 0..3 {
            ours.sink.keep = Some(Vec::new());
            h2.io.0.borrow_mut().sink.keep = Some(Vec::new());
            ours.round();
            h2.again();
            let o = ours.sink.keep.take().unwrap();
            let h = h2.io.0.borrow_mut().sink.keep.take().unwrap();
            assert!(data_by_stream(&o) == expected, "{name}: ours' DATA");
            assert!(data_by_stream(&h) == expected, "{name}: h2's DATA");
            let (o, h) = (wrote(&o, &mut hpack()), wrote(&h, &mut hpack()));
            assert_eq!(o.data_bytes, STREAMS as usize * reply, "{name}: ours");
            assert_eq!(h.data_bytes, STREAMS as usize * reply, "{name}: h2");
            assert!(o.resets + o.goaways + h.resets + h.goaways == 0, "{name}");
            println!("echo/{name}: a round: ours wrote {o:?}");
            println!("echo/{name}: a round: h2   wrote {h:?}");
        }
        group.throughput(Throughput::Elements(u64::from(STREAMS)));
        group.bench_function(BenchmarkId::new("ours", name), |b| {
            b.iter_custom(|iters| timed(iters, per_conn, || echo_ours(&input), Ours::round))
        });
        group.bench_function(BenchmarkId::new("h2", name), |b| {
            b.iter_custom(|iters| timed(iters, per_conn, || echo_h2(&input), H2::again))
        });
    }
    group.finish();
}

/// A read opening a stream and a read ending it (id patched in place).
struct OpenClose {
    open: Vec<u8>,
    close: Vec<u8>,
    /// The connection's first request (for `indexed`: sent in setup).
    first: Option<Vec<u8>>,
}

impl OpenClose {
    fn new(indexed: bool) -> Self {
        let mut encoder = Encoder::default();
        let (block, first) = if indexed {
            let first = encoder.encode(&WS_REQUEST);
            let block = encoder.encode(&WS_REQUEST);
            (block, Some(first))
        } else {
            (Encoder::encode_cold(&WS_REQUEST), None)
        };
        let mut open = Vec::new();
        frame(&mut open, HEADERS, END_HEADERS, 0, &block);
        let mut close = Vec::new();
        frame(&mut close, DATA, END_STREAM, 0, &[]);
        let first = first.map(|block| {
            let mut bytes = Vec::new();
            frame(&mut bytes, HEADERS, END_HEADERS, 1, &block);
            frame(&mut bytes, DATA, END_STREAM, 1, &[]);
            bytes
        });
        Self { open, close, first }
    }

    fn first_id(&self) -> u32 {
        if self.first.is_some() { 3 } else { 1 }
    }
}

/// Loads `template` with stream id `id` into `input`.
fn load(input: &mut Vec<u8>, template: &[u8], id: u32) {
    input.clear();
    input.extend_from_slice(template);
    input[5..9].copy_from_slice(&id.to_be_bytes());
}

struct Opening<S> {
    server: S,
    next: u32,
}

fn open_ours(oc: &OpenClose) -> Opening<Ours> {
    let mut server = Ours::new();
    if let Some(first) = &oc.first {
        server.receive(first);
    }
    Opening {
        server,
        next: oc.first_id(),
    }
}

fn open_h2(oc: &OpenClose) -> Opening<H2> {
    let mut server = H2::new();
    if let Some(first) = &oc.first {
        server.receive(first);
    }
    Opening {
        server,
        next: oc.first_id(),
    }
}

fn open_close_ours(oc: &OpenClose, s: &mut Opening<Ours>) {
    load(&mut s.server.input, &oc.open, s.next);
    s.server.round();
    load(&mut s.server.input, &oc.close, s.next);
    s.server.round();
    s.next += 2;
}

fn open_close_h2(oc: &OpenClose, s: &mut Opening<H2>) {
    load(&mut s.server.input_mut(), &oc.open, s.next);
    s.server.again();
    load(&mut s.server.input_mut(), &oc.close, s.next);
    s.server.again();
    s.next += 2;
}

fn open(c: &mut Criterion) {
    let mut group = c.benchmark_group("h2/open");
    group.throughput(Throughput::Elements(1));
    for (name, indexed) in [("indexed", true), ("literal", false)] {
        let oc = OpenClose::new(indexed);
        println!("open/{name}: HEADERS block of {} bytes", oc.open.len() - 9);
        // Checked: 200 and END_STREAM for each, both ways, nothing left open.
        let mut ours = open_ours(&oc);
        let mut h2 = open_h2(&oc);
        ours.server.sink.keep = Some(Vec::new());
        h2.server.io.0.borrow_mut().sink.keep = Some(Vec::new());
        for _ in 0..10 {
            open_close_ours(&oc, &mut ours);
            open_close_h2(&oc, &mut h2);
        }
        let o = ours.server.sink.keep.take().unwrap();
        let h = h2.server.io.0.borrow_mut().sink.keep.take().unwrap();
        check(&format!("open/{name}"), &o, &h);
        let w: Wrote = wrote(&o, &mut hpack());
        assert_eq!((w.status_200, w.end_streams), (10, 10));
        assert_eq!(ours.server.carrier.carried(), 0);
        assert_eq!(h2.server.streams.len(), 0);
        group.bench_function(BenchmarkId::new("ours", name), |b| {
            b.iter_custom(|iters| {
                timed(
                    iters,
                    u64::MAX,
                    || open_ours(&oc),
                    |s| open_close_ours(&oc, s),
                )
            })
        });
        group.bench_function(BenchmarkId::new("h2", name), |b| {
            b.iter_custom(|iters| {
                timed(iters, u64::MAX, || open_h2(&oc), |s| open_close_h2(&oc, s))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, echo, open);
criterion_main!(benches);
