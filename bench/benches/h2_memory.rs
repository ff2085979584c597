//! Heap per idle WebSocket over HTTP/2: our codec as the worker keeps a
//! socket and its streams (`ringws::h2_bench::Carrier`) against the `h2`
//! crate with each stream's two handles kept as a worker would. A counting
//! `#[global_allocator]` gives the live bytes (as requested of the
//! allocator: its own overhead is not counted) at three points: before,
//! after `CONNS` connections past their preface, and after each opened
//! `STREAMS` WebSockets (Chromium's request, HPACK as it encodes it) and
//! echoed one 20-byte message on each. The bench's own buffers (the input,
//! the echo's arena) are freed before each count; our worker's buffer pool
//! (one per worker, shared by its sockets) is trimmed twice, as two timer
//! ticks of an idle worker do. The `h2` side's figures include its
//! in-memory pipe (the socket's stand-in, one small `Rc` per connection).
//!
//! `cargo bench -p ringws-bench --bench h2_memory`

mod h2_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use h2_support::{
    Encoder, H2, LIMITS, STREAMS, data_by_stream, echo_read, echo_replies, open_streams, ours_app,
    preface,
};
use ringws::h2_bench::{Carrier, Pool};

/// Connections, each with `STREAMS` WebSockets: 10,000 streams in all.
const CONNS: usize = 100;

/// The echoed message's payload.
const MESSAGE: usize = 20;

/// The system allocator, counting the bytes live and the allocations.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to `System` with the caller's arguments; only
// relaxed counters are added (the bench is single-threaded).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is System's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: as `alloc`.
        unsafe { System.dealloc(p, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `alloc`.
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live heap: bytes and allocations.
#[derive(Debug, Clone, Copy)]
struct Heap {
    bytes: usize,
    blocks: usize,
}

fn heap() -> Heap {
    Heap {
        bytes: LIVE_BYTES.load(Ordering::Relaxed),
        blocks: LIVE_BLOCKS.load(Ordering::Relaxed),
    }
}

impl std::ops::Sub for Heap {
    type Output = Heap;
    fn sub(self, before: Heap) -> Heap {
        Heap {
            bytes: self.bytes - before.bytes,
            blocks: self.blocks - before.blocks,
        }
    }
}

/// What one server's connections held at each point, over `before`.
struct Measured {
    name: &'static str,
    /// `CONNS` connections past the preface, no stream.
    connections: Heap,
    /// The same with `STREAMS` idle WebSockets each, one message echoed.
    with_streams: Heap,
    /// Our pool's spare buffers at that point, before the trims (ours only).
    untrimmed: Option<Heap>,
}

/// The bytes of the reads every connection gets after its preface: the
/// WebSocket requests, then the echo (built once; freed before counting).
fn reads() -> (Vec<u8>, Vec<u8>) {
    (
        open_streams(&mut Encoder::default(), 1, STREAMS),
        echo_read(MESSAGE),
    )
}

/// One read of `bytes` through our carrier as the worker does it (the read
/// buffer is the worker's: freed here), then its socket's queue written;
/// returns what it wrote.
fn ours_read(carrier: &mut Carrier, pool: &mut Pool, bytes: &[u8]) -> Vec<u8> {
    let mut buf = bytes.to_vec();
    carrier
        .read(pool, &mut buf, 0, &mut ours_app)
        .expect("no connection error");
    let mut wrote = Vec::new();
    carrier.drain(pool, &mut |b| wrote.extend_from_slice(b));
    wrote
}

fn ours() -> Measured {
    let (open, echo) = reads();
    let before = heap();
    let mut pool = Pool::default();
    let mut conns = Vec::with_capacity(CONNS);
    for _ in 0..CONNS {
        let mut carrier = Carrier::new(LIMITS, &mut pool);
        drop(ours_read(&mut carrier, &mut pool, &preface()));
        conns.push(carrier);
    }
    pool.trim();
    pool.trim();
    let connections = heap() - before;
    for carrier in &mut conns {
        drop(ours_read(carrier, &mut pool, &open));
        let wrote = ours_read(carrier, &mut pool, &echo);
        assert!(
            data_by_stream(&wrote) == echo_replies(MESSAGE, 1),
            "ours' echo"
        );
        assert_eq!(carrier.carried(), STREAMS as usize);
    }
    let untrimmed = heap() - before;
    pool.trim();
    pool.trim();
    let with_streams = heap() - before;
    drop((conns, pool));
    Measured {
        name: "ours",
        connections,
        with_streams,
        untrimmed: Some(untrimmed),
    }
}

fn h2() -> Measured {
    let (open, echo) = reads();
    let before = heap();
    let mut conns = Vec::with_capacity(CONNS);
    for _ in 0..CONNS {
        let mut h2 = H2::new();
        h2.shed_scaffolding();
        conns.push(h2);
    }
    let connections = heap() - before;
    for h2 in &mut conns {
        h2.receive(&open);
        h2.io.0.borrow_mut().sink.keep = Some(Vec::new());
        h2.receive(&echo);
        let wrote = h2.io.0.borrow_mut().sink.keep.take().unwrap();
        assert!(
            data_by_stream(&wrote) == echo_replies(MESSAGE, 1),
            "h2's echo"
        );
        assert_eq!(h2.streams.len(), STREAMS as usize);
        h2.shed_scaffolding();
    }
    let with_streams = heap() - before;
    drop(conns);
    Measured {
        name: "h2",
        connections,
        with_streams,
        untrimmed: None,
    }
}

fn main() {
    let streams = CONNS * STREAMS as usize;
    println!(
        "h2_memory: {CONNS} connections x {STREAMS} idle WebSocket streams \
         ({streams}), one {MESSAGE}-byte message echoed on each"
    );
    println!("live heap as requested of the allocator (bytes; allocations in brackets)");
    println!();
    println!(
        "{:<6} {:>18} {:>20} {:>22} {:>16}",
        "", "per connection", "per idle stream", "per conn + 100 streams", "total"
    );
    let rows = [ours(), h2()];
    for m in &rows {
        let per_conn = m.connections.bytes as f64 / CONNS as f64;
        let per_stream = (m.with_streams.bytes - m.connections.bytes) as f64 / streams as f64;
        let blocks_per_stream =
            (m.with_streams.blocks - m.connections.blocks) as f64 / streams as f64;
        println!(
            "{:<6} {:>9.0} B [{:>5.1}] {:>11.1} B [{:>5.2}] {:>20.0} B {:>12} B",
            m.name,
            per_conn,
            m.connections.blocks as f64 / CONNS as f64,
            per_stream,
            blocks_per_stream,
            m.with_streams.bytes as f64 / CONNS as f64,
            m.with_streams.bytes,
        );
    }
    let [ours, h2] = &rows;
    let per_stream = |m: &Measured| (m.with_streams.bytes - m.connections.bytes) as f64;
    let per_conn = |m: &Measured| m.connections.bytes as f64;
    println!();
    println!(
        "ours/h2: per connection {:.2}, per idle stream {:.2}, in all {:.2}",
        per_conn(ours) / per_conn(h2),
        per_stream(ours) / per_stream(h2),
        ours.with_streams.bytes as f64 / h2.with_streams.bytes as f64,
    );
    if let Some(untrimmed) = ours.untrimmed {
        println!(
            "ours before the pool's trims: {} B in all ({} B more: the worker's \
             spare send buffers, not the streams')",
            untrimmed.bytes,
            untrimmed.bytes as isize - ours.with_streams.bytes as isize,
        );
    }
}
