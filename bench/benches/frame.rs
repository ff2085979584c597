//! Frame header decode and encode.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringws::proto::Role;
use ringws::proto::frame::{DecodeRules, HeaderStatus, OpCode, decode_header, encode_header};

fn headers(c: &mut Criterion) {
    let rules = DecodeRules::new(Role::Server, u64::MAX >> 1);
    let mut group = c.benchmark_group("frame_header");
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_secs(1));
    for (name, len) in [("7bit", 100u64), ("16bit", 1000), ("64bit", 1 << 20)] {
        let header = encode_header(true, 0, OpCode::Binary, Some([1, 2, 3, 4]), len);
        group.throughput(Throughput::Bytes(header.as_bytes().len() as u64));
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(
                || match decode_header(black_box(header.as_bytes()), &rules) {
                    Ok(HeaderStatus::Complete(h)) => h.payload_len,
                    _ => unreachable!(),
                },
            )
        });
        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| encode_header(true, 0, OpCode::Binary, black_box(None), black_box(len)))
        });
    }
    group.finish();
}

criterion_group!(benches, headers);
criterion_main!(benches);
