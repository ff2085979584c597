//! permessage-deflate codec throughput: compress and inflate a 16 KiB JSON-like
//! text message, with and without context takeover, at level 1; each beside
//! the same codec on flate2 (`*/flate2`, the engine's codec before it moved to
//! zlib's API for the hand-over's windows: the same zlib-rs underneath), so
//! one run gives the ratio.

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
        let mut compressor = baseline::Compressor::new(15, 1, no_takeover);
        group.bench_function(format!("compress/{name}/flate2"), |b| {
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
    let mut decompressor = baseline::Decompressor::new(true);
    group.bench_function("inflate/flate2", |b| {
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

/// The engine's codec as it was on flate2 (its loops unchanged).
mod baseline {
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

    const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

    pub struct Compressor {
        inner: Compress,
        no_context_takeover: bool,
    }

    impl Compressor {
        pub fn new(window_bits: u8, level: u32, no_context_takeover: bool) -> Self {
            Self {
                inner: Compress::new_with_window_bits(
                    Compression::new(level.min(9)),
                    false,
                    window_bits.clamp(9, 15),
                ),
                no_context_takeover,
            }
        }

        pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
            let start = out.len();
            let mut input = payload;
            loop {
                out.reserve(input.len() / 2 + 64);
                let before = self.inner.total_in();
                if self
                    .inner
                    .compress_vec(input, out, FlushCompress::Sync)
                    .is_err()
                {
                    break;
                }
                input = &input[(self.inner.total_in() - before) as usize..];
                if input.is_empty() && out.len() < out.capacity() {
                    break;
                }
            }
            if out[start..].ends_with(&TAIL) {
                out.truncate(out.len() - TAIL.len());
            }
            if out.len() == start {
                out.push(0x00);
            }
            if self.no_context_takeover {
                self.inner.reset();
            }
        }
    }

    pub struct Decompressor {
        inner: Decompress,
        no_context_takeover: bool,
    }

    impl Decompressor {
        pub fn new(no_context_takeover: bool) -> Self {
            Self {
                inner: Decompress::new_with_window_bits(false, 15),
                no_context_takeover,
            }
        }

        pub fn decompress(
            &mut self,
            mut input: &[u8],
            out: &mut Vec<u8>,
            max: usize,
        ) -> Result<(), &'static str> {
            loop {
                if out.len() > max {
                    return Err("too big");
                }
                if out.len() == out.capacity() {
                    let wanted = input.len().saturating_mul(4).max(4096);
                    out.reserve_exact(wanted.min(max + 1 - out.len()));
                }
                let (before_in, before_out) = (self.inner.total_in(), out.len());
                let status = self
                    .inner
                    .decompress_vec(input, out, FlushDecompress::Sync)
                    .map_err(|_| "invalid")?;
                input = &input[(self.inner.total_in() - before_in) as usize..];
                if out.len() > max {
                    return Err("too big");
                }
                if status == Status::StreamEnd {
                    self.inner.reset(false);
                }
                if input.is_empty() && out.len() < out.capacity() {
                    return Ok(());
                }
                let stuck = self.inner.total_in() == before_in && out.len() == before_out;
                if stuck && out.len() < out.capacity() {
                    return Err("invalid");
                }
            }
        }

        pub fn finish(&mut self, out: &mut Vec<u8>, max: usize) -> Result<(), &'static str> {
            self.decompress(&TAIL, out, max)?;
            if self.no_context_takeover {
                self.inner.reset(false);
            }
            Ok(())
        }
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
