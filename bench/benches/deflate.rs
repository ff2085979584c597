//! permessage-deflate codec throughput: compress and inflate a 16 KiB JSON-like
//! text message, with and without context takeover, at level 1. (The move
//! from flate2 to zlib's API for the hand-over's windows was measured against
//! the flate2 codec in this file at commit d7ca80b.)

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringws::proto::deflate::{Compressor, Decompressor};

fn message() -> Vec<u8> {
    let mut out = String::new();
    let mut i = 0u32;
    while out.len() < 16 * 1024 {
        out.push_str(&format!(
            "{{\"id\":{i},\"symbol\":\"ABC{}\",\"price\":{}.{:02},\"qty\":{}}},",
            i % 17,
            100 + i % 50,
            i % 100,
            i % 1000
        ));
        i += 1;
    }
    out.truncate(16 * 1024);
    out.into_bytes()
}

fn codec(c: &mut Criterion) {
    let payload = message();
    let mut group = c.benchmark_group("deflate");
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Bytes(payload.len() as u64));
    for (name, no_takeover) in [("takeover", false), ("no_takeover", true)] {
        let mut compressor = Compressor::new(15, 1, no_takeover);
        let mut out = Vec::new();
        group.bench_function(format!("compress/{name}"), |b| {
            b.iter(|| {
                out.clear();
                compressor.compress(black_box(&payload), &mut out);
                out.len()
            })
        });
    }
    // Inflate a message compressed without context takeover, so every iteration
    // decodes the same bytes from a fresh state.
    let mut compressed = Vec::new();
    Compressor::new(15, 1, true).compress(&payload, &mut compressed);
    let mut decompressor = Decompressor::new(true);
    let mut inflated = Vec::new();
    group.bench_function("inflate", |b| {
        b.iter(|| {
            inflated.clear();
            decompressor
                .decompress(black_box(&compressed), &mut inflated, 1 << 20)
                .unwrap();
            decompressor.finish(&mut inflated, 1 << 20).unwrap();
            inflated.len()
        })
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
