//! The per-message hot path allocates nothing after warm-up, on both backends:
//! receive, unmask, callback, send, flush. A counting global allocator counts
//! every allocation of the process while a client echoes messages through an
//! embedded echo server; the client itself allocates nothing in that window.
//!
//! Its own test binary without the test harness (`harness = false`): the
//! harness's threads would allocate in the window.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ringws::proto::frame::{MaskKeys, OpCode, write_frame};
use ringws::proto::handshake::UpgradeRequest;
use ringws::{BackendKind, Handler, Message, Server, Upgrade, WebSocket};

/// Counts allocations and reallocations, then defers to the system allocator.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments; the
// counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Echo;

impl Handler for Echo {
    type Data = ();
    fn on_upgrade(&mut self, _: &UpgradeRequest<'_>, _: SocketAddr) -> Upgrade<()> {
        Upgrade::accept(())
    }
    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, message: Message<'_>) {
        ws.send(message);
    }
}

/// A client that echoes precomputed frames and reads the answers into a buffer
/// made beforehand: no allocation per message.
struct Client {
    stream: TcpStream,
    frame: Vec<u8>,
    reply: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr, size: usize) -> Self {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .write_all(
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .expect("upgrade");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("101");
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"));
        let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let mut frame = Vec::new();
        write_frame(
            &mut frame,
            true,
            OpCode::Binary,
            &payload,
            Some(MaskKeys::new().next_key()),
        );
        // The server's unmasked echo: header without the mask key.
        let mut expected = Vec::new();
        write_frame(&mut expected, true, OpCode::Binary, &payload, None);
        let reply = vec![0; expected.len()];
        let mut client = Self {
            stream,
            frame,
            reply,
        };
        client.echo(1);
        assert_eq!(client.reply, expected, "the echo");
        client
    }

    /// `count` round trips, one message in flight.
    fn echo(&mut self, count: usize) {
        for _ in 0..count {
            self.stream.write_all(&self.frame).expect("send");
            self.stream.read_exact(&mut self.reply).expect("echo");
        }
    }
}

fn hot_path_allocates_nothing(backend: BackendKind) {
    let handle = Server::builder()
        .bind("127.0.0.1:0")
        .workers(1)
        .backend(backend)
        .ping_interval(None)
        .build()
        .expect("config")
        .start(|| Echo)
        .expect("start");
    let addr = handle.local_addr();
    for size in [20, 16 << 10, 100 << 10] {
        let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(addr, size)).collect();
        // Warm-up: pools, scratch buffers and queues reach their working size.
        for client in &mut clients {
            client.echo(200);
        }
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..10 {
            for client in &mut clients {
                client.echo(50);
            }
        }
        let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
        assert_eq!(
            allocated, 0,
            "{backend:?}, {size} B messages: {allocated} allocations in 2,000 echoes"
        );
        println!("{backend:?}, {size} B: 0 allocations in 2,000 echoes after warm-up");
    }
    handle.shutdown(Duration::from_secs(1));
}

fn main() {
    for backend in [BackendKind::Epoll, BackendKind::IoUring] {
        if let Err(why) = ringws_tests::backend_available(backend) {
            eprintln!("SKIPPED {backend:?}: {why}");
            continue;
        }
        hot_path_allocates_nothing(backend);
    }
}
