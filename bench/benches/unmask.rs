//! Throughput of every masking path in `ringws::proto::mask`, against the
//! byte-at-a-time definition, plus the dispatcher (`apply_mask`) and the
//! client-side copy-and-mask (`mask_into`).
//!
//! Buffers start 6 bytes past a 64-byte boundary; set `UNMASK_MISALIGN=<n>`
//! to measure another start (0 = cache-line aligned).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringws::proto::mask::{MaskFn, apply_mask, available_paths, mask_into, selected_path};

const SIZES: [usize; 5] = [16, 125, 1024, 65536, 1 << 20];
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Where each buffer starts relative to a 64-byte boundary. Fixed so that
/// every path sees the same alignment (a fresh `Vec` lands anywhere mod 64,
/// which skews results by cache-line splits); 6 is where a client frame's
/// payload starts after its 2-byte header and 4-byte key.
fn misalign() -> usize {
    std::env::var("UNMASK_MISALIGN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
        % 64
}

/// A `size`-byte window of `storage` starting `misalign()` bytes past a
/// 64-byte boundary.
fn window(storage: &mut [u8], size: usize) -> &mut [u8] {
    let start = storage.as_ptr().align_offset(64) + misalign();
    &mut storage[start..start + size]
}

fn unmask(c: &mut Criterion) {
    eprintln!(
        "apply_mask dispatches to: {}; buffers start {} bytes past a 64-byte boundary",
        selected_path(),
        misalign()
    );
    let mut paths = available_paths();
    paths.push(("dispatch", apply_mask as MaskFn));

    let mut group = c.benchmark_group("unmask");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        // Non-constant contents so nothing can be folded away.
        let src: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        let mut storage = vec![0u8; size + 128];
        let buf = window(&mut storage, size);
        buf.copy_from_slice(&src);
        for &(name, f) in &paths {
            group.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                // Offset 1 so the rotated-key setup is exercised too.
                b.iter(|| f(black_box(&mut *buf), black_box(KEY), black_box(1)));
            });
        }
        let mut dst_storage = vec![0u8; size + 128];
        let dst = window(&mut dst_storage, size);
        group.bench_with_input(BenchmarkId::new("mask_into", size), &size, |b, _| {
            b.iter(|| mask_into(black_box(&mut *dst), black_box(&*buf), black_box(KEY)));
        });
    }
    group.finish();
}

criterion_group!(benches, unmask);
criterion_main!(benches);
