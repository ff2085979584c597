//! Opening handshake benchmarks: parsing and validating a typical browser
//! upgrade request, alone and followed by writing the `101` answer.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringws::proto::handshake::{HandshakeLimits, HeaderStorage, parse_request};

/// What a current desktop browser sends to open a WebSocket.
const BROWSER_REQUEST: &[u8] = b"GET /chat?room=lobby HTTP/1.1\r\n\
Host: ws.example.com\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://www.example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

fn handshake(c: &mut Criterion) {
    let limits = HandshakeLimits::default();
    let mut group = c.benchmark_group("handshake");
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Bytes(BROWSER_REQUEST.len() as u64));

    group.bench_function("parse_validate", |b| {
        b.iter(|| {
            let mut storage = HeaderStorage::new();
            let (req, consumed) = parse_request(black_box(BROWSER_REQUEST), &limits, &mut storage)
                .expect("valid request")
                .expect("complete request");
            black_box((req.key(), req.extensions().count(), consumed));
        });
    });

    let mut out = Vec::with_capacity(256);
    group.bench_function("parse_and_respond", |b| {
        b.iter(|| {
            let mut storage = HeaderStorage::new();
            let (req, _) = parse_request(black_box(BROWSER_REQUEST), &limits, &mut storage)
                .expect("valid request")
                .expect("complete request");
            out.clear();
            req.write_accept(&mut out, None, None, &[])
                .expect("valid response");
            black_box(out.as_slice());
        });
    });

    group.finish();
}

criterion_group!(benches, handshake);
criterion_main!(benches);
