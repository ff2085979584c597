//! The engine's own work per echoed message: a worker's turn as the epoll
//! backend drives it (`ringws::turn_bench`), every connection fed one masked
//! frame, then the turn's end, where the echoes are flushed into a sink that
//! takes every byte. No system calls: this is the user-space part of an echo
//! that `scripts/profile.sh --count` reports among the kernel's TCP work, the
//! part where servers differ at small messages.
//!
//! - `echo/100x20B`: 100 connections, a 20-byte binary message each per
//!   turn (`compare.sh`'s `tput-100-20`, every connection readable at once).
//! - `echo/1x20B`: one connection per turn (a turn's fixed cost on one
//!   message).
//! - `echo/100x16KiB`: 100 connections, 16 KiB each.
//!
//! Per message. `cargo bench -p ringws-bench --bench turn`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringws::turn_bench::EchoTurns;

fn turns(c: &mut Criterion) {
    let mut group = c.benchmark_group("echo");
    for (conns, size, name) in [
        (100, 20, "100x20B"),
        (1, 20, "1x20B"),
        (100, 16 << 10, "100x16KiB"),
    ] {
        let mut turns = EchoTurns::new(conns, size);
        group.throughput(Throughput::Elements(conns as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| turns.round())
        });
    }
    group.finish();
}

criterion_group!(benches, turns);
criterion_main!(benches);
