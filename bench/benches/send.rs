//! The send path: a message queued (copied into the connection's send queue)
//! and flushed, against the same message written from where it lies: header and
//! payload in one writev (a large message from the handler's own buffer), or
//! framed in place in one send (an echoed message, its header written over the
//! peer's in the receive buffer), at 20 B and 16 KiB. Two sinks: /dev/null (the engine's own work plus the
//! syscall) and a TCP loopback connection drained by a thread (the kernel's
//! copy and wake-up as well).
//!
//! `cargo bench -p ringws-bench --bench send`

use std::fs::File;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringws::proto::frame::{OpCode, write_frame};
use ringws::send_bench::SendPath;

/// A loopback TCP connection whose far end a thread reads and discards.
struct Drained {
    stream: TcpStream,
    stop: Arc<AtomicBool>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Drained {
    fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        stream.set_nodelay(true).unwrap();
        let (mut far, _) = listener.accept().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let reader = thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            while !stopping.load(Ordering::Relaxed) {
                match far.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        });
        Self {
            stream,
            stop,
            reader: Some(reader),
        }
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn send_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("send");
    for size in [20usize, 16 << 10] {
        let payload = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        let mut null = File::options().write(true).open("/dev/null").unwrap();
        let mut path = SendPath::new();
        group.bench_with_input(
            BenchmarkId::new("queue+flush/null", size),
            &payload,
            |b, p| {
                b.iter(|| {
                    path.queue(p);
                    path.flush(&mut null).unwrap()
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("direct/null", size), &payload, |b, p| {
            b.iter(|| path.write_direct(p, &mut null).unwrap())
        });
        let mut framed = Vec::new();
        write_frame(&mut framed, true, OpCode::Binary, &payload, None);
        group.bench_with_input(
            BenchmarkId::new("direct-framed/null", size),
            &framed,
            |b, f| b.iter(|| path.write_framed(f, &mut null).unwrap()),
        );
        let mut tcp = Drained::new();
        group.bench_with_input(
            BenchmarkId::new("queue+flush/tcp", size),
            &payload,
            |b, p| {
                b.iter(|| {
                    path.queue(p);
                    path.flush(&mut tcp.stream).unwrap()
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("direct/tcp", size), &payload, |b, p| {
            b.iter(|| {
                let n = path.write_direct(p, &mut tcp.stream).unwrap();
                // A full socket leaves a rest queued: send it, as on_writable would.
                n + path.flush(&mut tcp.stream).unwrap()
            })
        });
        group.bench_with_input(
            BenchmarkId::new("direct-framed/tcp", size),
            &framed,
            |b, f| {
                b.iter(|| {
                    let n = path.write_framed(f, &mut tcp.stream).unwrap();
                    n + path.flush(&mut tcp.stream).unwrap()
                })
            },
        );
        assert_eq!(path.queued(), 0);
    }
    // A turn's worth of small messages queued, then one flush.
    let payload = [0x5au8; 20];
    let mut null = File::options().write(true).open("/dev/null").unwrap();
    let mut path = SendPath::new();
    group.throughput(Throughput::Elements(64));
    group.bench_function("queue64+flush/null/20", |b| {
        b.iter(|| {
            for _ in 0..64 {
                path.queue(&payload);
            }
            path.flush(&mut null).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, send_path);
criterion_main!(benches);
