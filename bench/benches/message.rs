//! Frames to messages: a read buffer full of small masked frames, decoded in
//! place as a server worker does.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringws::proto::Role;
use ringws::proto::frame::{OpCode, write_frame};
use ringws::proto::message::{Decoder, DecoderConfig, Event};

/// A 64 KiB-ish read buffer of masked frames of `payload` bytes each.
fn stream(opcode: OpCode, payload: usize) -> Vec<u8> {
    let body: Vec<u8> = (0..payload).map(|i| b'a' + (i % 26) as u8).collect();
    let mut out = Vec::new();
    while out.len() < 64 * 1024 {
        write_frame(
            &mut out,
            true,
            opcode,
            &body,
            Some([0x11, 0x22, 0x33, 0x44]),
        );
    }
    out
}

fn decode_buffer(decoder: &mut Decoder, config: &DecoderConfig, buf: &mut [u8]) -> usize {
    let mut pos = 0;
    let mut bytes = 0;
    while pos < buf.len() {
        let (n, event) = decoder
            .decode(config, &mut buf[pos..])
            .expect("valid stream");
        pos += n;
        bytes += match event {
            Some(Event::Text(t)) => t.len(),
            Some(Event::Binary(b)) => b.len(),
            _ => 0,
        };
    }
    bytes
}

fn messages(c: &mut Criterion) {
    let config = DecoderConfig::new(Role::Server, 16 << 20);
    let mut group = c.benchmark_group("messages");
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_secs(1));
    for (name, opcode) in [("binary", OpCode::Binary), ("text", OpCode::Text)] {
        for payload in [16usize, 125, 1024] {
            let original = stream(opcode, payload);
            let mut buf = original.clone();
            group.throughput(Throughput::Bytes(original.len() as u64));
            group.bench_with_input(BenchmarkId::new(name, payload), &payload, |b, _| {
                b.iter(|| {
                    // Decoding unmasks in place; restoring the masked bytes is part of
                    // every iteration (a memcpy, far cheaper than the decode).
                    buf.copy_from_slice(&original);
                    let mut decoder = Decoder::new();
                    black_box(decode_buffer(&mut decoder, &config, &mut buf))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, messages);
criterion_main!(benches);
