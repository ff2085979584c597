//! UTF-8 validation: whole messages on simdutf8, and the streaming validator over
//! 4 KiB chunks cut at arbitrary points.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringws::proto::utf8::{StreamingUtf8, validate};

fn text(kind: &str, len: usize) -> Vec<u8> {
    let unit = match kind {
        "ascii" => "The quick brown fox jumps over the lazy dog. ",
        _ => "Größe κόσμε 日本語テキスト 🦀 ",
    };
    let mut out = String::new();
    while out.len() < len {
        out.push_str(unit);
    }
    let mut end = len;
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out.into_bytes()
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_secs(1));
    for kind in ["ascii", "multibyte"] {
        for len in [125usize, 64 * 1024] {
            let data = text(kind, len);
            group.throughput(Throughput::Bytes(data.len() as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("whole/{kind}"), len),
                &data,
                |b, d| b.iter(|| validate(black_box(d)).is_ok()),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("std/{kind}"), len),
                &data,
                |b, d| b.iter(|| std::str::from_utf8(black_box(d)).is_ok()),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("streaming_4001/{kind}"), len),
                &data,
                |b, d| {
                    b.iter(|| {
                        let mut v = StreamingUtf8::new();
                        // An odd chunk size cuts code points, exercising the carry.
                        for chunk in d.chunks(4001) {
                            v.feed(black_box(chunk)).unwrap();
                        }
                        v.finish().is_ok()
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, utf8);
criterion_main!(benches);
