//! The worker driven by a fake backend and a fake clock: no sockets, no
//! threads, no sleeps. Each test feeds bytes and time through the entry points
//! a real backend uses and reads what the worker wrote and reported.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::config::BackpressurePolicy;
use crate::config::{ProxyMode, ProxyProtocol};
use crate::proto::error::ProtocolError;
use crate::proto::frame::OpCode;
use crate::proto::handshake::UpgradeRequest;
use crate::proto::message::{Decoder, DecoderConfig, Event as FrameEvent};
use crate::proto::session::Session;
use crate::runtime::bridge::tests::{Call, RecordingBridge};
use crate::runtime::command::{self, Mailbox, Wake};
use crate::runtime::deferred::{PendingUpgrade, UpgradeError};
use crate::runtime::seam::FrameParts;
use crate::transport::outbox::Outbox;
use crate::types::{Message, PreparedMessage, RateLimit, RateLimitPolicy, SendStatus, Upgrade};

const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

/// What the handler saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Open(ConnId),
    Message(ConnId, String),
    Drain(ConnId),
    Sent(ConnId, Vec<SendStatus>),
    Close(ConnId, u16, String, CloseCause),
}

/// What the handler saw, the peer address of each upgrade, and the upgrades
/// it deferred (requests for `/defer`).
#[derive(Debug, Clone, Default)]
struct Recorder(
    Rc<RefCell<Vec<Seen>>>,
    Rc<RefCell<Vec<SocketAddr>>>,
    Rc<RefCell<Vec<PendingUpgrade<()>>>>,
);

impl Recorder {
    fn push(&self, seen: Seen) {
        self.0.borrow_mut().push(seen);
    }

    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut self.0.borrow_mut())
    }

    fn closes(&self) -> Vec<(ConnId, u16, String, CloseCause)> {
        self.0
            .borrow()
            .iter()
            .filter_map(|s| match s {
                Seen::Close(id, code, reason, cause) => Some((*id, *code, reason.clone(), *cause)),
                _ => None,
            })
            .collect()
    }
}

/// Echoes text, and obeys `close CODE`, `terminate`, `flood COUNT SIZE`,
/// `subscribe TOPIC`, `unsubscribe TOPIC`, `publish TOPIC TEXT`.
struct TestHandler(Recorder);

impl Handler for TestHandler {
    type Data = ();

    /// `/free` is exempt from the server's rate limit.
    fn on_upgrade(&mut self, request: &UpgradeRequest<'_>, peer: SocketAddr) -> Upgrade<()> {
        self.0.1.borrow_mut().push(peer);
        match request.path() {
            "/free" => Upgrade::accept(()).rate_limit(RateLimit::none()),
            "/defer" => Upgrade::defer(),
            _ => Upgrade::accept(()),
        }
    }

    fn on_upgrade_deferred(&mut self, pending: PendingUpgrade<()>) {
        self.0.2.borrow_mut().push(pending);
    }

    fn on_open(&mut self, ws: &mut WebSocket<'_, ()>) {
        self.0.push(Seen::Open(ws.id()));
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, message: Message<'_>) {
        let Message::Text(text) = message else {
            return;
        };
        self.0.push(Seen::Message(ws.id(), text.to_owned()));
        let words: Vec<&str> = text.split(' ').collect();
        match words.as_slice() {
            ["close", code] => ws.close(CloseCode(code.parse().unwrap()), "asked"),
            ["terminate"] => ws.terminate(),
            ["subscribe", topic] => {
                ws.subscribe(topic);
            }
            ["unsubscribe", topic] => {
                ws.unsubscribe(topic);
            }
            ["publish", topic, text] => ws.publish(topic, Message::Text(text)),
            ["flood", count, size] => {
                let payload = vec![b'x'; size.parse().unwrap()];
                let statuses = (0..count.parse().unwrap())
                    .map(|_| ws.send_binary(&payload))
                    .collect();
                self.0.push(Seen::Sent(ws.id(), statuses));
            }
            _ => {
                ws.send_text(text);
            }
        }
    }

    fn on_drain(&mut self, ws: &mut WebSocket<'_, ()>) {
        self.0.push(Seen::Drain(ws.id()));
    }

    fn on_close(&mut self, id: ConnId, _: (), code: CloseCode, reason: &str, cause: CloseCause) {
        self.0
            .push(Seen::Close(id, code.0, reason.to_owned(), cause));
    }
}

/// A socket of the fake backend.
#[derive(Debug, Default)]
struct FakeSocket {
    /// Everything written to it.
    wire: Vec<u8>,
    /// Bytes it takes before it is full (`None`: unlimited).
    room: Option<usize>,
    write_shut: bool,
    closed: bool,
    /// Reading paused by the rate limit.
    paused: bool,
    /// Pauses and resumes asked for.
    pauses: usize,
    resumes: usize,
}

/// A readiness backend that writes into memory.
#[derive(Debug, Default)]
struct FakeIo {
    sockets: HashMap<usize, FakeSocket>,
    stopped_accepting: bool,
    /// Frames written from where they lay (`write_frame`).
    frames_written: usize,
    /// Of those, frames whose header lay right before the payload (one
    /// plain write).
    frames_written_whole: usize,
}

impl FakeSocket {
    /// Takes what room there is of `slices`, in order.
    fn take(&mut self, slices: &[&[u8]]) -> Written {
        let socket = self;
        let mut written = 0;
        for slice in slices {
            let take = socket
                .room
                .map_or(slice.len(), |room| room.min(slice.len()));
            socket.wire.extend_from_slice(&slice[..take]);
            written += take;
            if let Some(room) = socket.room.as_mut() {
                *room -= take;
            }
            if take < slice.len() {
                return Written::Now {
                    bytes: written,
                    blocked: true,
                };
            }
        }
        Written::Now {
            bytes: written,
            blocked: false,
        }
    }
}

impl Io for FakeIo {
    fn writes_later(&self) -> bool {
        false
    }

    fn write(&mut self, key: usize, outbox: &mut Outbox) -> Written {
        let mut slices = [std::io::IoSlice::new(&[]); crate::transport::outbox::MAX_IOVECS];
        let count = outbox.io_slices(&mut slices);
        let slices: Vec<&[u8]> = slices[..count].iter().map(|s| &**s).collect();
        self.sockets.entry(key).or_default().take(&slices)
    }

    fn write_frame(&mut self, key: usize, frame: FrameParts<'_>) -> Option<Written> {
        self.frames_written += 1;
        let socket = self.sockets.entry(key).or_default();
        Some(match frame.whole {
            Some(whole) => {
                assert_eq!(whole, [frame.header, frame.payload].concat());
                self.frames_written_whole += 1;
                socket.take(&[whole])
            }
            None => socket.take(&[frame.header, frame.payload]),
        })
    }

    fn shutdown_write(&mut self, key: usize) {
        self.sockets.entry(key).or_default().write_shut = true;
    }

    fn close(&mut self, key: usize) -> bool {
        self.sockets.entry(key).or_default().closed = true;
        true
    }

    fn pause_reading(&mut self, key: usize) {
        let socket = self.sockets.entry(key).or_default();
        assert!(!socket.paused, "paused twice");
        socket.paused = true;
        socket.pauses += 1;
    }

    fn resume_reading(&mut self, key: usize) {
        let socket = self.sockets.entry(key).or_default();
        assert!(socket.paused, "resumed while not paused");
        socket.paused = false;
        socket.resumes += 1;
    }

    fn stop_accepting(&mut self) {
        self.stopped_accepting = true;
    }
}

#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A worker, its fake backend and clock, and a client-side view of each
/// connection.
struct Harness {
    worker: Worker<TestHandler>,
    io: FakeIo,
    seen: Recorder,
    mailbox: Mailbox,
    waker: Arc<CountingWaker>,
    start: Instant,
    now: Instant,
    /// Per connection: the client's endpoint and session, and how far its wire
    /// has been read.
    clients: HashMap<usize, (Endpoint, Session, Decoder, usize)>,
}

fn config() -> Config {
    Config {
        handshake_timeout: Duration::from_secs(2),
        ping_interval: None,
        pong_timeout: Duration::from_secs(2),
        close_timeout: Duration::from_secs(2),
        ..Config::default()
    }
}

impl Harness {
    fn new(config: Config) -> Self {
        Self::with_node(config, None)
    }

    /// A harness whose worker reports to a bridge through `node`.
    fn with_node(config: Config, node: Option<Arc<NodeTopics>>) -> Self {
        let seen = Recorder::default();
        let waker = Arc::new(CountingWaker::default());
        let (mailbox, inbox) = command::queue(waker.clone());
        let peers: Peers = Arc::new(OnceLock::new());
        peers.set(vec![mailbox.clone()]).unwrap();
        let start = Instant::now();
        let worker = Worker::standalone(
            TestHandler(seen.clone()),
            Arc::new(config),
            inbox,
            peers,
            node,
            None,
            start,
        );
        Self {
            worker,
            io: FakeIo::default(),
            seen,
            mailbox,
            waker,
            start,
            now: start,
            clients: HashMap::new(),
        }
    }

    fn turn(&mut self) -> Turn {
        self.worker.end_turn(self.now, &mut self.io)
    }

    /// Moves the fake clock by `ms` and ends a turn.
    fn after(&mut self, ms: u64) -> Turn {
        self.now += Duration::from_millis(ms);
        self.turn()
    }

    /// Runs turns every 10 ms of fake time for `ms`.
    fn run_for(&mut self, ms: u64) {
        for _ in 0..ms / 10 {
            self.after(10);
        }
    }

    /// Accepts a connection (no upgrade yet).
    fn accept(&mut self) -> usize {
        let key = self
            .worker
            .on_accept("127.0.0.1:40000".parse().unwrap(), 0)
            .unwrap();
        self.io.sockets.insert(key, FakeSocket::default());
        let endpoint = Endpoint::new(Role::Client, 1 << 20, 1 << 20, 1);
        self.clients
            .insert(key, (endpoint, Session::new(), Decoder::new(), 0));
        key
    }

    /// Accepts and upgrades a connection; returns its key and id.
    fn open(&mut self) -> (usize, ConnId) {
        self.open_with(REQUEST)
    }

    /// Accepts a connection, sends `request` and expects the 101.
    fn open_with(&mut self, request: &[u8]) -> (usize, ConnId) {
        let key = self.accept();
        self.send_raw(key, request);
        self.turn();
        let wire = &self.io.sockets[&key].wire;
        assert!(
            wire.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(wire)
        );
        let head_len = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        self.clients.get_mut(&key).unwrap().3 = head_len;
        let mut seen = self.seen.0.borrow_mut();
        let at = seen
            .iter()
            .rposition(|s| matches!(s, Seen::Open(_)))
            .expect("on_open");
        let Seen::Open(id) = seen.remove(at) else {
            unreachable!()
        };
        (key, id)
    }

    fn send_raw(&mut self, key: usize, bytes: &[u8]) {
        let mut bytes = bytes.to_vec();
        self.worker.on_data(key, &mut bytes, &mut self.io);
    }

    /// The client's frame of a text message, as it goes on the wire.
    fn text_wire(&mut self, key: usize, text: &str) -> Vec<u8> {
        let (endpoint, session, ..) = self.clients.get_mut(&key).unwrap();
        let mut wire = Vec::new();
        session
            .message(endpoint, OpCode::Text, text.as_bytes(), false)
            .write_to(&mut wire);
        wire
    }

    /// The client sends a text message.
    fn send_text(&mut self, key: usize, text: &str) {
        let wire = self.text_wire(key, text);
        self.send_raw(key, &wire);
    }

    fn send_control(&mut self, key: usize, opcode: OpCode, payload: &[u8]) {
        let (endpoint, session, ..) = self.clients.get_mut(&key).unwrap();
        let mut wire = Vec::new();
        session
            .control(endpoint, opcode, payload)
            .unwrap()
            .write_to(&mut wire);
        self.send_raw(key, &wire);
    }

    fn send_close(&mut self, key: usize, code: u16, reason: &str) {
        let (endpoint, session, ..) = self.clients.get_mut(&key).unwrap();
        let mut wire = Vec::new();
        session
            .close(endpoint, CloseCode(code), reason)
            .unwrap()
            .write_to(&mut wire);
        self.send_raw(key, &wire);
    }

    /// Frames the server wrote to `key` since the last call, as the client decodes them.
    fn frames(&mut self, key: usize) -> Vec<Frame> {
        let wire = &self.io.sockets[&key].wire;
        let (_, _, decoder, read) = self.clients.get_mut(&key).unwrap();
        let mut buf = wire[*read..].to_vec();
        *read = wire.len();
        let config = DecoderConfig::new(Role::Client, 1 << 24);
        let mut pos = 0;
        let mut frames = Vec::new();
        while pos < buf.len() {
            let (n, event) = decoder
                .decode(&config, &mut buf[pos..])
                .expect("server frames decode");
            pos += n;
            frames.extend(event.map(|e| match e {
                FrameEvent::Text(t) => Frame::Text(t.to_owned()),
                FrameEvent::Binary(b) => Frame::Binary(b.len()),
                FrameEvent::Ping(p) => Frame::Ping(p.to_vec()),
                FrameEvent::Pong(p) => Frame::Pong(p.to_vec()),
                FrameEvent::Close(c) => {
                    Frame::Close(c.map_or((1005, String::new()), |c| (c.code.0, c.reason.into())))
                }
                FrameEvent::Compressed { .. } => panic!("no compression here"),
            }));
        }
        frames
    }

    fn socket(&self, key: usize) -> &FakeSocket {
        &self.io.sockets[&key]
    }

    fn elapsed_ms(&self) -> u128 {
        (self.now - self.start).as_millis()
    }
}

/// A frame the server sent, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Frame {
    Text(String),
    Binary(usize),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close((u16, String)),
}

fn close_frame(code: u16, reason: &str) -> Frame {
    Frame::Close((code, reason.to_owned()))
}

#[test]
fn echo_ping_and_the_close_handshake_from_the_peer() {
    let mut h = Harness::new(config());
    let (key, id) = h.open();
    h.send_text(key, "hello");
    h.send_control(key, OpCode::Ping, b"p");
    h.turn();
    assert_eq!(
        h.frames(key),
        [Frame::Text("hello".into()), Frame::Pong(b"p".to_vec())]
    );
    h.send_close(key, 4001, "bye");
    h.turn();
    // The reply mirrors code and reason; the write side is shut after it.
    assert_eq!(h.frames(key), [close_frame(4001, "bye")]);
    assert!(h.socket(key).write_shut && !h.socket(key).closed);
    assert_eq!(
        h.seen.take(),
        [
            Seen::Message(id, "hello".into()),
            Seen::Close(id, 4001, "bye".into(), CloseCause::Peer)
        ]
    );
    // The peer's EOF closes the socket; nothing more is reported.
    h.worker.on_hangup(key, Hangup::Eof);
    h.turn();
    assert!(h.socket(key).closed);
    assert_eq!(h.seen.take(), []);
}

#[test]
fn handshake_timeout_closes_a_silent_connection_without_callbacks() {
    let mut h = Harness::new(config());
    let key = h.accept();
    h.send_raw(key, b"GET /chat HTTP/1.1\r\nHost:");
    h.run_for(1900);
    assert!(!h.socket(key).closed, "not before the deadline");
    h.run_for(300);
    assert!(h.socket(key).closed, "closed after {} ms", h.elapsed_ms());
    assert_eq!(h.seen.take(), []);
}

#[test]
fn a_request_cut_across_reads_is_gathered() {
    let mut h = Harness::new(config());
    let key = h.accept();
    for chunk in REQUEST.chunks(7) {
        h.send_raw(key, chunk);
    }
    h.turn();
    assert!(h.socket(key).wire.starts_with(b"HTTP/1.1 101"));
    assert!(matches!(h.seen.take().as_slice(), [Seen::Open(_)]));
}

#[test]
fn idle_timeout_sends_1001_then_the_close_timeout_ends_it() {
    let mut h = Harness::new(Config {
        idle_timeout: Some(Duration::from_secs(3)),
        ..config()
    });
    let (key, id) = h.open();
    h.run_for(2900);
    assert_eq!(h.frames(key), []);
    h.run_for(200);
    assert_eq!(h.frames(key), [close_frame(1001, "idle timeout")]);
    // No reply: aborted after the close timeout (2 s, plus up to two 500 ms
    // ticks of the coarse timer), reported with the code we sent.
    h.run_for(1900);
    assert!(!h.socket(key).closed);
    h.run_for(1200);
    assert!(h.socket(key).closed);
    assert_eq!(
        h.seen.closes(),
        [(id, 1001, String::new(), CloseCause::Timeout)]
    );
}

#[test]
fn auto_ping_then_pong_deadline() {
    let mut h = Harness::new(Config {
        ping_interval: Some(Duration::from_secs(1)),
        ..config()
    });
    let (answered, _) = h.open();
    let (silent, silent_id) = h.open();
    h.run_for(1100);
    assert_eq!(h.frames(answered), [Frame::Ping(vec![])]);
    assert_eq!(h.frames(silent), [Frame::Ping(vec![])]);
    // One answers every ping for 4 s; the other never does.
    let mut pings = 1;
    h.send_control(answered, OpCode::Pong, b"");
    for _ in 0..40 {
        h.after(100);
        for frame in h.frames(answered) {
            assert_eq!(frame, Frame::Ping(vec![]));
            pings += 1;
            h.send_control(answered, OpCode::Pong, b"");
        }
    }
    // The silent one is aborted without a close frame.
    assert!(h.socket(silent).closed);
    assert_eq!(h.frames(silent), []);
    assert_eq!(
        h.seen.closes(),
        [(silent_id, 1006, String::new(), CloseCause::Timeout)]
    );
    assert!(!h.socket(answered).closed);
    assert!(pings >= 3, "{pings} pings");
}

#[test]
fn local_close_waits_for_the_reply_or_the_close_timeout() {
    let mut h = Harness::new(config());
    let (replying, replying_id) = h.open();
    let (silent, silent_id) = h.open();
    for key in [replying, silent] {
        h.send_text(key, "close 4002");
    }
    h.turn();
    for key in [replying, silent] {
        assert_eq!(h.frames(key), [close_frame(4002, "asked")]);
    }
    h.send_close(replying, 4002, "");
    h.turn();
    assert_eq!(
        h.seen.closes(),
        [(replying_id, 4002, String::new(), CloseCause::Local)]
    );
    h.seen.take();
    h.run_for(3100);
    assert!(h.socket(silent).closed);
    assert_eq!(
        h.seen.closes(),
        [(silent_id, 4002, String::new(), CloseCause::Local)]
    );
}

#[test]
fn backpressure_close_policy_sends_1008() {
    let mut h = Harness::new(Config {
        max_backpressure: 10_000,
        backpressure_policy: BackpressurePolicy::Close,
        ..config()
    });
    let (key, id) = h.open();
    h.io.sockets.get_mut(&key).unwrap().room = Some(0);
    h.send_text(key, "flood 5 4000");
    h.turn();
    let statuses = h
        .seen
        .take()
        .into_iter()
        .find_map(|s| match s {
            Seen::Sent(_, statuses) => Some(statuses),
            _ => None,
        })
        .unwrap();
    use SendStatus::*;
    assert_eq!(statuses, [Sent, Sent, Dropped, Dropped, Dropped]);
    // The socket takes everything again: the queue goes out, ending with 1008.
    h.io.sockets.get_mut(&key).unwrap().room = None;
    h.worker.on_writable(key);
    h.turn();
    let frames = h.frames(key);
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[2], close_frame(1008, "backpressure"));
    h.send_close(key, 1008, "");
    h.turn();
    assert_eq!(
        h.seen.closes(),
        [(id, 1008, String::new(), CloseCause::Backpressure)]
    );
}

#[test]
fn backpressure_drop_policy_keeps_the_connection_and_drains() {
    let mut h = Harness::new(Config {
        max_backpressure: 10_000,
        backpressure_policy: BackpressurePolicy::Drop,
        ..config()
    });
    let (key, id) = h.open();
    h.io.sockets.get_mut(&key).unwrap().room = Some(1000);
    h.send_text(key, "flood 4 4000");
    h.turn();
    use SendStatus::*;
    assert_eq!(
        h.seen.take(),
        [
            Seen::Message(id, "flood 4 4000".into()),
            Seen::Sent(id, vec![Sent, Sent, Dropped, Dropped])
        ]
    );
    // While the socket is full, sends report backpressure.
    h.send_text(key, "flood 1 10");
    h.turn();
    assert_eq!(h.seen.take()[1], Seen::Sent(id, vec![Backpressure]));
    h.io.sockets.get_mut(&key).unwrap().room = None;
    h.worker.on_writable(key);
    h.turn();
    assert_eq!(h.seen.take(), [Seen::Drain(id)]);
    assert_eq!(
        h.frames(key),
        [Frame::Binary(4000), Frame::Binary(4000), Frame::Binary(10)]
    );
    assert!(!h.socket(key).closed);
}

#[test]
fn a_large_message_goes_out_from_where_it_lies_during_the_callback() {
    let mut h = Harness::new(config());
    let (key, id) = h.open();
    let big = "x".repeat(20_000);
    h.send_text(key, &big);
    // Written during on_message, before the turn ends: no copy was queued.
    // The echo's header was framed in the receive buffer, right before the
    // payload: one plain write.
    assert_eq!(h.io.frames_written, 1);
    assert_eq!(h.io.frames_written_whole, 1);
    assert_eq!(h.frames(key), [Frame::Text(big.clone())]);
    // A message from the handler's own buffer goes the same way, its header
    // apart.
    h.send_text(key, "flood 1 30000");
    assert_eq!(h.io.frames_written, 2);
    assert_eq!(h.io.frames_written_whole, 1);
    assert_eq!(h.frames(key), [Frame::Binary(30000)]);
    // Small ones wait for the turn's end and go out together.
    h.send_text(key, "small");
    h.send_text(key, "flood 3 100");
    assert_eq!(h.io.frames_written, 2);
    assert!(h.frames(key).is_empty());
    h.turn();
    assert_eq!(
        h.frames(key),
        [
            Frame::Text("small".into()),
            Frame::Binary(100),
            Frame::Binary(100),
            Frame::Binary(100),
        ]
    );
    let seen = h.seen.take();
    assert!(seen.contains(&Seen::Sent(id, vec![SendStatus::Sent])));
    assert!(seen.contains(&Seen::Sent(id, vec![SendStatus::Sent; 3])));
}

#[test]
fn an_echo_whose_header_came_in_an_earlier_read_goes_out_with_its_header_apart() {
    let mut h = Harness::new(config());
    let (key, _) = h.open();
    let big = "y".repeat(70_000);
    let wire = h.text_wire(key, &big);
    // The 14-byte header cut after 3 bytes: the decoder keeps them, and the
    // rest of the frame lies in the second read without a header before it.
    h.send_raw(key, &wire[..3]);
    h.send_raw(key, &wire[3..]);
    assert_eq!(h.io.frames_written, 1);
    assert_eq!(h.io.frames_written_whole, 0);
    assert_eq!(h.frames(key), [Frame::Text(big.clone())]);
    // Whole in one read, a 64-bit length: framed in place (10 of its 14
    // header bytes rewritten).
    h.send_raw(key, &wire);
    assert_eq!(h.io.frames_written_whole, 1);
    assert_eq!(h.frames(key), [Frame::Text(big)]);
}

#[test]
fn a_direct_write_cut_short_queues_only_the_rest_in_order() {
    let mut h = Harness::new(config());
    let (key, id) = h.open();
    h.io.sockets.get_mut(&key).unwrap().room = Some(5000);
    // Two large sends in one callback: the first goes from where it lies
    // and the socket takes 5000 bytes of it; the second finds the rest of the
    // first queued, so it is queued (copied) behind it.
    h.send_text(key, "flood 2 20000");
    assert_eq!(h.io.frames_written, 1);
    assert_eq!(h.socket(key).wire.len() - h.clients[&key].3, 5000);
    use SendStatus::*;
    assert_eq!(
        h.seen.take(),
        [
            Seen::Message(id, "flood 2 20000".into()),
            Seen::Sent(id, vec![Backpressure, Backpressure])
        ]
    );
    h.io.sockets.get_mut(&key).unwrap().room = None;
    h.worker.on_writable(key);
    h.turn();
    assert_eq!(h.seen.take(), [Seen::Drain(id)]);
    assert_eq!(h.frames(key), [Frame::Binary(20000), Frame::Binary(20000)]);
    assert_eq!(h.io.frames_written, 1);
}

#[test]
fn shutdown_closes_with_1001_and_aborts_the_rest_at_the_deadline() {
    let mut h = Harness::new(config());
    let (polite, polite_id) = h.open();
    let (silent, silent_id) = h.open();
    let handshaking = h.accept();
    h.mailbox.send(Command::Shutdown {
        deadline: h.now + Duration::from_millis(500),
    });
    let turn = h.turn();
    assert!(h.io.stopped_accepting && !turn.finished);
    for key in [polite, silent] {
        assert_eq!(h.frames(key), [close_frame(1001, "server shutdown")]);
    }
    // A handshake under way, and one the kernel handed over late, still get
    // their 101, then 1001 at once: a restart fails no handshake.
    let late = h.accept();
    for key in [handshaking, late] {
        h.send_raw(key, REQUEST);
    }
    h.turn();
    for key in [handshaking, late] {
        let head_len = {
            let wire = &h.socket(key).wire;
            assert!(wire.starts_with(b"HTTP/1.1 101"));
            wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4
        };
        h.clients.get_mut(&key).unwrap().3 = head_len;
        assert_eq!(h.frames(key), [close_frame(1001, "server shutdown")]);
        h.send_close(key, 1001, "");
        h.worker.on_hangup(key, Hangup::Eof);
    }
    h.turn();
    h.seen.take();
    h.send_close(polite, 1001, "");
    h.worker.on_hangup(polite, Hangup::Eof);
    h.turn();
    assert!(!h.socket(silent).closed);
    h.run_for(500);
    assert!(h.socket(silent).closed);
    assert_eq!(
        h.seen.closes(),
        [
            (polite_id, 1001, String::new(), CloseCause::Shutdown),
            (silent_id, 1001, String::new(), CloseCause::Shutdown)
        ]
    );
    assert!(h.turn().finished);
}

#[test]
fn every_cause_is_reported_once_per_open() {
    let mut h = Harness::new(config());
    let mut expected = Vec::new();
    // Peer close, local close, terminate, reset, EOF mid-stream.
    let (k, id) = h.open();
    h.send_close(k, 1000, "peer");
    expected.push((id, 1000, "peer".to_owned(), CloseCause::Peer));
    let (k, id) = h.open();
    h.send_text(k, "close 1000");
    h.turn();
    h.send_close(k, 1000, "");
    expected.push((id, 1000, String::new(), CloseCause::Local));
    let (k, id) = h.open();
    h.send_text(k, "terminate");
    expected.push((id, 1006, String::new(), CloseCause::Terminated));
    let (k, id) = h.open();
    h.worker.on_hangup(k, Hangup::Error);
    expected.push((id, 1006, String::new(), CloseCause::Reset));
    let (k, id) = h.open();
    h.worker.on_hangup(k, Hangup::Eof);
    expected.push((id, 1006, String::new(), CloseCause::Reset));
    // Protocol errors of each kind, with their close codes.
    let errors: [(&[u8], ProtocolError); 4] = [
        (b"\x81\x05hello", ProtocolError::UnmaskedFrame),
        (b"\x83\x80\0\0\0\0", ProtocolError::ReservedOpcode(3)),
        (b"\x81\x82\0\0\0\0\xc3\x28", ProtocolError::InvalidUtf8),
        (b"\x80\x80\0\0\0\0", ProtocolError::UnexpectedContinuation),
    ];
    for (wire, error) in errors {
        let (k, id) = h.open();
        h.send_raw(k, wire);
        h.turn();
        let code = error.close_code().0;
        assert_eq!(h.frames(k), [close_frame(code, &error.to_string())]);
        expected.push((id, code, error.to_string(), CloseCause::Protocol(error)));
    }
    h.turn();
    // Whatever else happens to them, nothing is reported twice.
    for key in 0..16 {
        h.worker.on_hangup(key, Hangup::Error);
        h.worker.on_released(key);
    }
    h.run_for(3000);
    assert_eq!(h.seen.closes(), expected);
}

#[test]
fn commands_from_other_threads_run_at_the_end_of_the_turn_with_one_wake() {
    let mut h = Harness::new(config());
    let (a, a_id) = h.open();
    let (b, _) = h.open();
    h.send_text(a, "subscribe news");
    h.send_text(b, "subscribe news");
    h.turn();
    h.seen.take();
    let wakes = h.waker.0.load(Ordering::Relaxed);
    for i in 0..100 {
        h.mailbox.send(Command::Publish {
            topic: "news".into(),
            message: PreparedMessage::text(&format!("item {i}")),
        });
    }
    h.mailbox.send(Command::Send {
        id: a_id,
        message: PreparedMessage::text("just for a"),
    });
    h.mailbox.send(Command::Close {
        id: a_id,
        code: CloseCode(4000),
        reason: "bye".into(),
    });
    assert_eq!(
        h.waker.0.load(Ordering::Relaxed),
        wakes + 1,
        "one wake for the burst"
    );
    assert_eq!(h.frames(a), [], "nothing before the turn ends");
    h.turn();
    let frames = h.frames(a);
    assert_eq!(frames.len(), 102);
    assert_eq!(frames[99], Frame::Text("item 99".into()));
    assert_eq!(frames[100], Frame::Text("just for a".into()));
    assert_eq!(frames[101], close_frame(4000, "bye"));
    assert_eq!(h.frames(b).len(), 100);
    // A stale id (the connection is gone) is ignored.
    h.send_close(a, 4000, "");
    h.worker.on_hangup(a, Hangup::Eof);
    h.turn();
    h.mailbox.send(Command::Send {
        id: a_id,
        message: PreparedMessage::text("late"),
    });
    h.turn();
    assert_eq!(h.worker.stats.commands.load(Ordering::Relaxed), 103);
}

#[test]
fn a_queue_longer_than_a_turn_asks_for_an_immediate_next_turn() {
    let mut h = Harness::new(config());
    let (key, _) = h.open();
    h.send_text(key, "subscribe burst");
    h.turn();
    for i in 0..1000 {
        h.mailbox.send(Command::Publish {
            topic: "burst".into(),
            message: PreparedMessage::text(&format!("{i}")),
        });
    }
    // Each publish is its own chunk; a turn writes a bounded number of them.
    let turn = h.turn();
    let first = h.frames(key).len();
    assert!(first < 1000, "{first} frames in one turn");
    assert_eq!(
        turn.wait,
        Duration::ZERO,
        "the rest must not wait for a tick"
    );
    let mut total = first;
    for _ in 0..100 {
        let turn = h.turn();
        total += h.frames(key).len();
        if total == 1000 {
            assert!(turn.wait > Duration::ZERO, "idle again");
            return;
        }
        assert_eq!(turn.wait, Duration::ZERO);
    }
    panic!("only {total} of 1000 frames");
}

#[test]
fn a_split_message_s_buffer_is_reused_then_freed_when_quiet() {
    let mut h = Harness::new(config());
    let (key, id) = h.open();
    let text = "x".repeat(3000);
    let wire = h.text_wire(key, &text);
    // Cut across two reads: the decoder reassembles it in a buffer of its own.
    let (first, second) = wire.split_at(1000);
    h.send_raw(key, first);
    h.send_raw(key, second);
    h.turn();
    assert_eq!(h.seen.take(), [Seen::Message(id, text)]);
    let held = h.worker.conns[key].decoder.buffered_bytes();
    assert!(held >= 3000, "kept for the next split message: {held}");
    // A tick later it is still there; after a whole quiet tick it is gone.
    h.run_for(500);
    assert!(h.worker.conns[key].decoder.buffered_bytes() > 0);
    h.run_for(1000);
    assert_eq!(h.worker.conns[key].decoder.buffered_bytes(), 0);
}

#[test]
fn a_bridge_hears_first_and_last_subscriber_and_local_publishes_only() {
    let bridge = Arc::new(RecordingBridge::default());
    let node = Arc::new(NodeTopics::new(bridge.clone()));
    let mut h = Harness::with_node(config(), Some(node));
    let (a, _) = h.open();
    let (b, _) = h.open();
    h.send_text(a, "subscribe news");
    h.send_text(b, "subscribe news");
    h.turn();
    assert_eq!(bridge.take(), [Call::Subscribe("news".into())]);

    // A publish from a callback: delivered here, handed to the bridge once.
    h.send_text(a, "publish news hello");
    h.turn();
    assert_eq!(h.frames(a), [Frame::Text("hello".into())]);
    assert_eq!(h.frames(b), [Frame::Text("hello".into())]);
    assert_eq!(
        bridge.take(),
        [Call::Publish("news".into(), b"hello".to_vec())]
    );

    // What comes from another node (or worker) as a command is delivered and
    // not handed back to the bridge.
    h.mailbox.send(Command::Publish {
        topic: "news".into(),
        message: PreparedMessage::text("from afar"),
    });
    h.turn();
    assert_eq!(h.frames(a), [Frame::Text("from afar".into())]);
    assert_eq!(h.frames(b), [Frame::Text("from afar".into())]);
    assert_eq!(bridge.take(), []);

    // The last subscriber leaving, by unsubscribing or by ending, unsubscribes the node.
    h.send_text(a, "unsubscribe news");
    h.turn();
    assert_eq!(bridge.take(), []);
    h.worker.on_hangup(b, Hangup::Error);
    h.turn();
    assert_eq!(bridge.take(), [Call::Unsubscribe("news".into())]);
}

/// Several client messages in one read, as a fast sender's arrive.
fn texts(h: &mut Harness, key: usize, texts: &[&str]) -> Vec<u8> {
    texts
        .iter()
        .flat_map(|text| h.text_wire(key, text))
        .collect()
}

#[test]
fn rate_limit_pause_stops_reading_until_the_tokens_are_back() {
    let mut h = Harness::new(Config {
        rate_limit: RateLimit::none().messages(10, 2),
        ..config()
    });
    let (key, _) = h.open();
    let free_request = String::from_utf8(REQUEST.to_vec())
        .unwrap()
        .replace("/chat", "/free");
    let (free, _) = h.open_with(free_request.as_bytes());
    h.seen.take();
    // Four messages in one read: the burst of two goes to the handler, the
    // rest is held, and the socket is paused.
    let wire = texts(&mut h, key, &["a", "b", "c", "d"]);
    h.send_raw(key, &wire);
    let turn = h.turn();
    assert_eq!(
        h.frames(key),
        [Frame::Text("a".into()), Frame::Text("b".into())]
    );
    assert!(h.socket(key).paused);
    assert!(
        turn.wait <= Duration::from_millis(100),
        "woken when a token is back: {:?}",
        turn.wait
    );
    // The connection exempted by on_upgrade is not limited at all.
    let wire = texts(&mut h, free, &["1", "2", "3", "4", "5"]);
    h.send_raw(free, &wire);
    h.turn();
    assert_eq!(h.frames(free).len(), 5);
    assert!(!h.socket(free).paused && h.socket(free).pauses == 0);
    // At 10/s one more message every 100 ms, in order; then read again.
    h.run_for(90);
    assert_eq!(h.frames(key), []);
    h.run_for(20);
    assert_eq!(h.frames(key), [Frame::Text("c".into())]);
    assert!(h.socket(key).paused);
    h.run_for(100);
    assert_eq!(h.frames(key), [Frame::Text("d".into())]);
    assert!(!h.socket(key).paused);
    assert_eq!((h.socket(key).pauses, h.socket(key).resumes), (1, 1));
    assert!(!h.socket(key).closed);
    h.worker.end_turn(h.now, &mut h.io);
    assert_eq!(h.worker.stats.rate_limit_pauses.load(Ordering::Relaxed), 1);
}

#[test]
fn rate_limit_pause_of_bytes_outlasts_the_pong_timeout_without_an_abort() {
    let mut h = Harness::new(Config {
        rate_limit: RateLimit::none().bytes(1000, 1000),
        ping_interval: Some(Duration::from_millis(500)),
        pong_timeout: Duration::from_millis(500),
        ..config()
    });
    let (key, id) = h.open();
    // 4 KB read at once: 3 s of debt at 1000 bytes/s.
    let big = "x".repeat(4000);
    h.send_text(key, &big);
    h.turn();
    assert!(h.socket(key).paused);
    h.run_for(2500);
    assert!(h.socket(key).paused && !h.socket(key).closed);
    h.run_for(700);
    assert!(!h.socket(key).paused && !h.socket(key).closed);
    assert_eq!(h.seen.closes(), []);
    h.send_close(key, 1000, "");
    h.turn();
    assert_eq!(
        h.seen.closes(),
        [(id, 1000, String::new(), CloseCause::Peer)]
    );
}

#[test]
fn rate_limit_close_sends_1008_and_discards_the_rest() {
    let mut h = Harness::new(Config {
        rate_limit: RateLimit::none()
            .messages(10, 2)
            .policy(RateLimitPolicy::Close),
        ..config()
    });
    let (key, id) = h.open();
    let (other, _) = h.open();
    let wire = texts(&mut h, key, &["a", "b", "c", "d"]);
    h.send_raw(key, &wire);
    h.send_text(other, "unhurt");
    h.turn();
    assert_eq!(
        h.frames(key),
        [
            Frame::Text("a".into()),
            Frame::Text("b".into()),
            close_frame(1008, "rate limit exceeded")
        ]
    );
    assert_eq!(h.frames(other), [Frame::Text("unhurt".into())]);
    assert!(!h.socket(key).paused);
    h.send_close(key, 1008, "");
    h.turn();
    assert_eq!(
        h.seen.closes(),
        [(id, 1008, String::new(), CloseCause::RateLimit)]
    );
}

/// A listener on which every connection from 127.0.0.0/8 must send a PROXY
/// header (`mode`), with the metrics route on.
fn proxy_config(mode: ProxyMode, trusted: &str) -> Config {
    Config {
        addrs: vec!["127.0.0.1:0".parse().unwrap()],
        proxy: vec![ProxyProtocol {
            mode,
            trusted: vec![trusted.parse().unwrap()],
        }],
        ..config()
    }
}

#[test]
fn proxy_header_gives_the_client_address_even_cut_byte_by_byte() {
    let mut h = Harness::new(proxy_config(ProxyMode::Required, "127.0.0.0/8"));
    let key = h.accept();
    let mut wire = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\n".to_vec();
    wire.extend_from_slice(REQUEST);
    for byte in wire.chunks(1) {
        h.send_raw(key, byte);
    }
    h.turn();
    assert!(h.socket(key).wire.starts_with(b"HTTP/1.1 101"));
    assert_eq!(*h.seen.1.borrow(), ["203.0.113.9:5555".parse().unwrap()]);
}

#[test]
fn proxy_required_refuses_missing_malformed_and_untrusted() {
    let mut h = Harness::new(proxy_config(ProxyMode::Required, "127.0.0.0/8"));
    // No header: closed without an answer, the next one is served.
    let bare = h.accept();
    h.send_raw(bare, REQUEST);
    let malformed = h.accept();
    h.send_raw(malformed, b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n");
    let good = h.accept();
    h.send_raw(good, b"PROXY UNKNOWN\r\n");
    h.send_raw(good, REQUEST);
    h.turn();
    for key in [bare, malformed] {
        assert!(h.socket(key).closed && h.socket(key).wire.is_empty());
    }
    assert!(h.socket(good).wire.starts_with(b"HTTP/1.1 101"));
    // UNKNOWN keeps the connection's own address.
    assert_eq!(*h.seen.1.borrow(), ["127.0.0.1:40000".parse().unwrap()]);
    // From outside the trusted networks nothing is accepted at all.
    let mut h = Harness::new(proxy_config(ProxyMode::Required, "10.0.0.0/8"));
    assert_eq!(h.worker.on_accept("127.0.0.1:1".parse().unwrap(), 0), None);
    h.turn();
    assert_eq!(h.worker.stats.proxy_refused.load(Ordering::Relaxed), 1);
}

#[test]
fn proxy_optional_serves_both_and_refuses_an_untrusted_header() {
    let mut h = Harness::new(proxy_config(ProxyMode::Optional, "127.0.0.0/8"));
    let (plain, _) = h.open();
    assert!(!h.socket(plain).closed);
    let mut wire = b"PROXY TCP6 2001:db8::1 ::1 4000 80\r\n".to_vec();
    wire.extend_from_slice(REQUEST);
    h.open_with(&wire);
    assert_eq!(
        *h.seen.1.borrow(),
        [
            "127.0.0.1:40000".parse().unwrap(),
            "[2001:db8::1]:4000".parse().unwrap()
        ]
    );
    // Untrusted: a plain request is served, a header closes the connection.
    let mut h = Harness::new(proxy_config(ProxyMode::Optional, "10.0.0.0/8"));
    h.open();
    let key = h.accept();
    h.send_raw(key, &wire);
    h.turn();
    assert!(h.socket(key).closed && h.socket(key).wire.is_empty());
}

#[test]
fn proxy_slowloris_is_bounded_by_the_handshake_timeout() {
    let mut h = Harness::new(proxy_config(ProxyMode::Required, "127.0.0.0/8"));
    let key = h.accept();
    h.send_raw(key, b"PROXY TCP4 1");
    h.run_for(1900);
    assert!(!h.socket(key).closed);
    h.run_for(300);
    assert!(h.socket(key).closed && h.socket(key).wire.is_empty());
}

#[test]
fn the_metrics_route_answers_from_the_published_counters() {
    let mut h = Harness::new(Config {
        metrics_route: Some("/metrics".into()),
        ..config()
    });
    let (key, _) = h.open();
    h.send_text(key, "hello");
    h.send_control(key, OpCode::Ping, b"");
    h.turn();
    let scrape = h.accept();
    h.send_raw(scrape, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    h.turn();
    let reply = String::from_utf8(h.socket(scrape).wire.clone()).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains("Content-Type: text/plain; version=0.0.4"),
        "{reply}"
    );
    for line in [
        "ringws_accepted_total{backend=\"epoll\"} 1",
        "ringws_upgraded_total{backend=\"epoll\"} 1",
        "ringws_messages_received_total{backend=\"epoll\"} 1",
        "ringws_messages_sent_total{backend=\"epoll\"} 1",
        "ringws_pings_received_total{backend=\"epoll\"} 1",
        "ringws_pongs_sent_total{backend=\"epoll\"} 1",
        "ringws_connections{backend=\"epoll\",worker=\"0\"} 1",
        "ringws_handshake_duration_seconds_count{backend=\"epoll\"} 1",
    ] {
        assert!(reply.lines().any(|l| l == line), "{line} in\n{reply}");
    }
    // OpenMetrics where asked; other methods are refused.
    let scrape = h.accept();
    h.send_raw(
        scrape,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
    );
    let post = h.accept();
    h.send_raw(
        post,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    h.turn();
    let reply = String::from_utf8(h.socket(scrape).wire.clone()).unwrap();
    assert!(reply.contains("application/openmetrics-text") && reply.ends_with("# EOF\n"));
    assert!(h.socket(post).wire.starts_with(b"HTTP/1.1 405"));
}

// ---- TLS: the same worker, on a TLS listener (index 1) ----

mod tls {
    use std::io::{Read, Write};

    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore};

    use super::*;
    use crate::transport::tls::{TlsConfig, TlsConfigCell};
    use crate::types::TlsError;

    /// A harness whose worker has a plain listener (0) and a TLS one (1), and
    /// the roots its clients trust.
    fn harness() -> (Harness, RootCertStore) {
        harness_with(|_| {})
    }

    fn harness_with(tweak: impl FnOnce(&mut Config)) -> (Harness, RootCertStore) {
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let tls = TlsConfig::from_pem(
            pair.cert.pem().as_bytes(),
            pair.key_pair.serialize_pem().as_bytes(),
        )
        .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(pair.cert.der().clone()).unwrap();
        let mut config = config();
        config.addrs = vec!["127.0.0.1:0".parse().unwrap()];
        config.tls_addrs = vec!["127.0.0.1:0".parse().unwrap()];
        config.tls = Some(tls.clone());
        tweak(&mut config);
        let mut h = Harness::new(config);
        h.worker.tls = Some(Arc::new(TlsConfigCell::new(&tls)));
        (h, roots)
    }

    fn client(roots: RootCertStore) -> ClientConnection {
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap()
    }

    /// A TLS client of one connection of the harness.
    struct Peer {
        key: usize,
        tls: ClientConnection,
        /// How far the server's wire has been read.
        read: usize,
    }

    impl Harness {
        fn accept_tls(&mut self, roots: &RootCertStore) -> Peer {
            let key = self
                .worker
                .on_accept("127.0.0.1:40001".parse().unwrap(), 1)
                .unwrap();
            self.io.sockets.insert(key, FakeSocket::default());
            Peer {
                key,
                tls: client(roots.clone()),
                read: 0,
            }
        }

        /// The client's ClientHello, sent in one read.
        fn send_hello(&mut self, peer: &mut Peer) {
            let mut hello = Vec::new();
            peer.tls.write_tls(&mut hello).unwrap();
            self.send_raw(peer.key, &hello);
        }

        /// Moves bytes both ways until nothing moves; returns the plaintext
        /// the client received.
        fn pump(&mut self, peer: &mut Peer) -> Vec<u8> {
            let mut plain = Vec::new();
            for _ in 0..16 {
                let mut out = Vec::new();
                while peer.tls.wants_write() {
                    peer.tls.write_tls(&mut out).unwrap();
                }
                if !out.is_empty() {
                    self.send_raw(peer.key, &out);
                }
                self.turn();
                let wire = &self.io.sockets[&peer.key].wire;
                let fresh = wire[peer.read..].to_vec();
                peer.read = wire.len();
                let mut rest = &fresh[..];
                while !rest.is_empty() {
                    peer.tls.read_tls(&mut rest).unwrap();
                    peer.tls.process_new_packets().unwrap();
                    let _ = peer.tls.reader().read_to_end(&mut plain);
                }
                if out.is_empty() && fresh.is_empty() {
                    break;
                }
            }
            plain
        }

        /// Upgrades over TLS; returns the id.
        fn open_tls(&mut self, peer: &mut Peer) -> ConnId {
            self.pump(peer);
            assert!(!peer.tls.is_handshaking());
            peer.tls.writer().write_all(REQUEST).unwrap();
            let reply = self.pump(peer);
            assert!(reply.starts_with(b"HTTP/1.1 101"), "{reply:?}");
            let mut seen = self.seen.0.borrow_mut();
            let at = seen
                .iter()
                .rposition(|s| matches!(s, Seen::Open(_)))
                .expect("on_open");
            match seen.remove(at) {
                Seen::Open(id) => id,
                _ => unreachable!(),
            }
        }
    }

    fn text_frame(text: &str) -> Vec<u8> {
        let (mut endpoint, mut session) = (
            Endpoint::new(Role::Client, 1 << 20, 1 << 20, 1),
            Session::new(),
        );
        let mut wire = Vec::new();
        session
            .message(&mut endpoint, OpCode::Text, text.as_bytes(), false)
            .write_to(&mut wire);
        wire
    }

    fn client_close(code: u16) -> Vec<u8> {
        let (mut endpoint, mut session) = (
            Endpoint::new(Role::Client, 1 << 20, 1 << 20, 1),
            Session::new(),
        );
        let mut wire = Vec::new();
        session
            .close(&mut endpoint, CloseCode(code), "")
            .unwrap()
            .write_to(&mut wire);
        wire
    }

    #[test]
    fn wss_upgrades_echoes_and_ends_with_close_notify() {
        let (mut h, roots) = harness();
        let mut peer = h.accept_tls(&roots);
        let id = h.open_tls(&mut peer);
        peer.tls
            .writer()
            .write_all(&text_frame("over tls"))
            .unwrap();
        let echoed = h.pump(&mut peer);
        assert_eq!(echoed, b"\x81\x08over tls");
        assert_eq!(h.seen.take(), [Seen::Message(id, "over tls".into())]);
        // The server closes: its close frame, then close_notify, then FIN.
        peer.tls
            .writer()
            .write_all(&text_frame("close 1000"))
            .unwrap();
        let close = h.pump(&mut peer);
        assert!(close.ends_with(b"\x88\x07\x03\xe8asked"), "{close:?}");
        peer.tls.writer().write_all(&client_close(1000)).unwrap();
        h.pump(&mut peer);
        assert!(h.socket(peer.key).write_shut);
        let mut buf = [0u8; 1];
        assert!(
            matches!(peer.tls.reader().read(&mut buf), Ok(0)),
            "close_notify"
        );
        // The plain listener of the same worker stays plain.
        let (_, plain_id) = h.open();
        assert_ne!(plain_id, id);
    }

    #[test]
    fn a_peers_close_notify_gets_ours_back_before_the_socket_closes() {
        let (mut h, roots) = harness();
        let mut peer = h.accept_tls(&roots);
        let id = h.open_tls(&mut peer);
        peer.tls.send_close_notify();
        h.pump(&mut peer);
        let mut buf = [0u8; 1];
        assert!(
            matches!(peer.tls.reader().read(&mut buf), Ok(0)),
            "our close_notify came back"
        );
        assert!(h.socket(peer.key).closed);
        assert!(
            h.seen
                .take()
                .iter()
                .any(|s| matches!(s, Seen::Close(closed, 1006, _, _) if *closed == id))
        );
    }

    #[test]
    fn a_tls12_key_near_its_record_limit_closes_with_1001_and_close_notify() {
        let (mut h, roots) = harness();
        let mut peer = h.accept_tls(&roots);
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS12])
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
        peer.tls =
            ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
                .unwrap();
        let id = h.open_tls(&mut peer);
        let records = h.worker.conns[peer.key]
            .tls
            .as_deref_mut()
            .unwrap()
            .records()
            .unwrap();
        let (_, tx) = records.seqs();
        records.set_tx_limit(tx + crate::transport::tls::records::CLOSE_RESERVE + 1);
        peer.tls
            .writer()
            .write_all(&text_frame("last words"))
            .unwrap();
        let got = h.pump(&mut peer);
        // The echo, then the close frame under the records kept for it.
        assert!(got.starts_with(b"\x81\x0alast words"), "{got:?}");
        assert!(got.ends_with(b"\x88\x0f\x03\xe9TLS key limit"), "{got:?}");
        assert!(
            h.seen
                .take()
                .contains(&Seen::Message(id, "last words".into()))
        );
        peer.tls.writer().write_all(&client_close(1001)).unwrap();
        h.pump(&mut peer);
        let mut buf = [0u8; 1];
        assert!(
            matches!(peer.tls.reader().read(&mut buf), Ok(0)),
            "close_notify"
        );
    }

    #[test]
    fn plain_http_on_the_tls_listener_gets_400_and_is_closed() {
        let (mut h, roots) = harness();
        let peer = h.accept_tls(&roots);
        h.send_raw(peer.key, REQUEST);
        h.turn();
        let socket = h.socket(peer.key);
        assert!(socket.wire.starts_with(b"HTTP/1.1 400 Bad Request"));
        assert!(socket.closed);
        assert!(h.seen.take().is_empty());
    }

    #[test]
    fn a_tls_handshake_that_never_finishes_is_cut_by_the_handshake_timeout() {
        let (mut h, roots) = harness();
        let mut peer = h.accept_tls(&roots);
        let mut hello = Vec::new();
        peer.tls.write_tls(&mut hello).unwrap();
        // Half a ClientHello, then silence.
        h.send_raw(peer.key, &hello[..hello.len() / 2]);
        h.turn();
        assert!(!h.socket(peer.key).closed);
        h.run_for(2100);
        assert!(h.socket(peer.key).closed);
        assert!(h.seen.take().is_empty());
    }

    #[test]
    fn tls_failures_of_an_open_connection_are_reported_with_their_cause() {
        let (mut h, roots) = harness();
        // A record that fails to decrypt.
        let mut bad = h.accept_tls(&roots);
        let bad_id = h.open_tls(&mut bad);
        bad.tls.writer().write_all(b"xx").unwrap();
        let mut record = Vec::new();
        bad.tls.write_tls(&mut record).unwrap();
        let last = record.len() - 1;
        record[last] ^= 0x55;
        h.send_raw(bad.key, &record);
        h.turn();
        assert!(h.socket(bad.key).closed);
        // The stream ends inside a record.
        let mut cut = h.accept_tls(&roots);
        let cut_id = h.open_tls(&mut cut);
        cut.tls
            .writer()
            .write_all(&text_frame("never whole"))
            .unwrap();
        let mut record = Vec::new();
        cut.tls.write_tls(&mut record).unwrap();
        h.send_raw(cut.key, &record[..record.len() - 3]);
        h.worker.on_hangup(cut.key, Hangup::Eof);
        h.turn();
        // close_notify without a close frame: like an EOF.
        let mut quiet = h.accept_tls(&roots);
        let quiet_id = h.open_tls(&mut quiet);
        quiet.tls.send_close_notify();
        h.pump(&mut quiet);
        assert_eq!(
            h.seen.closes(),
            [
                (
                    bad_id,
                    1006,
                    TlsError::Record.to_string(),
                    CloseCause::Tls(TlsError::Record)
                ),
                (
                    cut_id,
                    1006,
                    TlsError::Truncated.to_string(),
                    CloseCause::Tls(TlsError::Truncated)
                ),
                (quiet_id, 1006, String::new(), CloseCause::Reset),
            ]
        );
    }

    #[test]
    fn tls_handshakes_past_the_limit_wait_for_one_to_end() {
        let (mut h, roots) = harness_with(|c| c.max_tls_handshakes = 1);
        let mut first = h.accept_tls(&roots);
        let mut second = h.accept_tls(&roots);
        let mut third = h.accept_tls(&roots);
        // The first ClientHello starts a handshake; the second and third are
        // held, their reading paused, and nothing is answered.
        for peer in [&mut first, &mut second, &mut third] {
            let mut hello = Vec::new();
            peer.tls.write_tls(&mut hello).unwrap();
            // Each comes in two reads (for the waiting ones, the second before
            // the pause took effect): both are held, in order.
            let (a, b) = hello.split_at(hello.len() / 2);
            h.send_raw(peer.key, a);
            h.send_raw(peer.key, b);
        }
        h.turn();
        assert!(!h.socket(first.key).wire.is_empty(), "ServerHello");
        for peer in [&second, &third] {
            assert!(h.socket(peer.key).wire.is_empty());
            assert!(h.socket(peer.key).paused);
        }
        assert_eq!(h.worker.tls_handshakes, 1);
        // The first finishes (and upgrades): the second starts, in its turn.
        h.open_tls(&mut first);
        assert!(!h.socket(second.key).wire.is_empty(), "ServerHello");
        assert!(!h.socket(second.key).paused);
        assert!(h.socket(third.key).wire.is_empty());
        // The second is reset mid-handshake: its slot goes to the third at the
        // end of that turn, and its answer goes out in the next, at once.
        h.worker.on_hangup(second.key, Hangup::Error);
        assert_eq!(h.turn().wait, Duration::ZERO);
        assert_eq!(h.worker.tls_handshakes, 1);
        h.turn();
        assert!(!h.socket(third.key).wire.is_empty(), "ServerHello");
        let id = h.open_tls(&mut third);
        assert_eq!(h.worker.tls_handshakes, 0);
        third.tls.writer().write_all(&text_frame("waited")).unwrap();
        assert_eq!(h.pump(&mut third), b"\x81\x06waited");
        assert_eq!(
            h.seen.take().last(),
            Some(&Seen::Message(id, "waited".into()))
        );
    }

    #[test]
    fn a_waiting_connection_that_sends_too_much_starts_at_once() {
        let (mut h, roots) = harness_with(|c| c.max_tls_handshakes = 1);
        let mut first = h.accept_tls(&roots);
        h.send_hello(&mut first);
        let mut eager = h.accept_tls(&roots);
        h.send_hello(&mut eager);
        h.turn();
        assert!(h.socket(eager.key).wire.is_empty() && h.socket(eager.key).paused);
        // 5 KiB more before its turn: it is not held but started, past the
        // limit; its ClientHello is answered (the junk after it then fails it).
        h.send_raw(eager.key, &[0x17; 5 << 10]);
        h.turn();
        assert!(!h.socket(eager.key).paused);
        assert!(!h.socket(eager.key).wire.is_empty(), "answered at once");
    }

    #[test]
    fn plain_text_on_a_tls_port_is_refused_even_while_handshakes_wait() {
        let (mut h, roots) = harness_with(|c| c.max_tls_handshakes = 1);
        let mut first = h.accept_tls(&roots);
        h.send_hello(&mut first);
        let plain = h.accept_tls(&roots);
        h.send_raw(plain.key, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        h.turn();
        assert!(h.socket(plain.key).wire.starts_with(b"HTTP/1.1 400"));
        assert!(!h.socket(plain.key).paused);
    }

    #[test]
    fn large_frames_over_tls_are_sealed_from_where_they_lie_in_order() {
        let (mut h, roots) = harness();
        let mut peer = h.accept_tls(&roots);
        h.open_tls(&mut peer);
        let a = "a".repeat(20_000);
        let b = "b".repeat(20_000);
        let echo = |text: &str| {
            let mut frame = vec![0x81];
            match text.len() {
                len @ 0..126 => frame.push(len as u8),
                len => {
                    frame.push(126);
                    frame.extend_from_slice(&(len as u16).to_be_bytes());
                }
            }
            frame.extend_from_slice(text.as_bytes());
            frame
        };
        for (messages, sealed, queued) in [
            // The first is sealed straight into the ciphertext queue; the next
            // waits behind that ciphertext as a frame, and so does the small one.
            ([a.as_str(), b.as_str(), "c"], 1, [&b[..], "c"].as_slice()),
            // Behind a queued frame a large one is queued too.
            (
                ["c", a.as_str(), b.as_str()],
                0,
                ["c", &a[..], &b[..]].as_slice(),
            ),
        ] {
            let mut flight = Vec::new();
            for message in messages {
                flight.extend_from_slice(&text_frame(message));
            }
            peer.tls.writer().write_all(&flight).unwrap();
            let mut out = Vec::new();
            while peer.tls.wants_write() {
                peer.tls.write_tls(&mut out).unwrap();
            }
            h.send_raw(peer.key, &out);
            let conn = &h.worker.conns[peer.key];
            let in_outbox: usize = queued.iter().map(|m| echo(m).len()).sum();
            assert_eq!(conn.link.outbox.len(), in_outbox, "{messages:?}");
            let wire = conn.tls.as_ref().unwrap().wire.len();
            assert_eq!(wire > 20_000, sealed == 1, "ciphertext queued: {wire}");
            let got = h.pump(&mut peer);
            let want: Vec<u8> = messages.iter().flat_map(|m| echo(m)).collect();
            assert!(got == want, "the echoes, whole and in order");
        }
    }

    #[test]
    fn a_slow_tls_socket_keeps_frames_in_the_outbox_under_the_limit() {
        let (mut h, roots) = harness();
        let mut peer = h.accept_tls(&roots);
        let id = h.open_tls(&mut peer);
        h.seen.take();
        h.io.sockets.get_mut(&peer.key).unwrap().room = Some(0);
        peer.tls
            .writer()
            .write_all(&text_frame("flood 300 4000"))
            .unwrap();
        let mut out = Vec::new();
        peer.tls.write_tls(&mut out).unwrap();
        h.send_raw(peer.key, &out);
        h.turn();
        let conn = &h.worker.conns[peer.key];
        let wire = conn.tls.as_ref().unwrap().wire.len();
        assert!(
            wire <= (256 << 10) + 64 * 30,
            "ciphertext is bounded: {wire}"
        );
        assert!(conn.link.outbox.len() > 900_000, "the rest waits as frames");
        h.io.sockets.get_mut(&peer.key).unwrap().room = None;
        h.worker.on_writable(peer.key);
        let got = h.pump(&mut peer);
        assert_eq!(got.len(), 300 * (4 + 4000));
        assert!(h.seen.take().contains(&Seen::Drain(id)));
    }
}

mod deferred {
    use super::*;
    use crate::runtime::metrics::Format;

    const DEFER: &[u8] = b"GET /defer?token=7 HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
Authorization: Bearer seven\r\n\r\n";

    impl Harness {
        /// Accepts a connection and sends a request whose upgrade the handler
        /// defers: its key and the pending upgrade.
        fn deferred(&mut self) -> (usize, PendingUpgrade<()>) {
            let key = self.accept();
            self.send_raw(key, DEFER);
            self.turn();
            let pending = self.seen.2.borrow_mut().pop().expect("deferred");
            (key, pending)
        }

        fn counter(&self, name: &str) -> u64 {
            let text = self.worker.shared.metrics.render(Format::Prometheus);
            text.lines()
                .find(|line| line.starts_with(&format!("{name}_total{{")))
                .and_then(|line| line.rsplit(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        }
    }

    #[test]
    fn a_deferred_upgrade_opens_when_accepted_and_reads_the_frames_sent_behind_it() {
        let mut h = Harness::new(config());
        let key = h.accept();
        let mut bytes = DEFER.to_vec();
        let frame = h.text_wire(key, "early");
        bytes.extend_from_slice(&frame);
        h.send_raw(key, &bytes);
        h.turn();
        assert!(
            h.socket(key).wire.is_empty(),
            "no answer before the decision"
        );
        let pending = h.seen.2.borrow_mut().pop().expect("deferred");
        // An owned copy of the request, for another thread.
        assert_eq!(pending.method(), "GET");
        assert_eq!(pending.path(), "/defer");
        assert_eq!(pending.query(), Some("token=7"));
        assert_eq!(pending.header("authorization"), Some("Bearer seven"));
        assert_eq!(pending.protocols(), ["chat", "superchat"]);
        assert_eq!(pending.peer_addr(), "127.0.0.1:40000".parse().unwrap());
        let id = pending.id();
        std::thread::spawn(move || pending.complete(Upgrade::accept(()).protocol("superchat")))
            .join()
            .unwrap()
            .unwrap();
        h.turn();
        let wire = String::from_utf8_lossy(&h.socket(key).wire).into_owned();
        assert!(wire.starts_with("HTTP/1.1 101"), "{wire}");
        assert!(
            wire.contains("Sec-WebSocket-Protocol: superchat\r\n"),
            "{wire}"
        );
        let head_len = wire.find("\r\n\r\n").unwrap() + 4;
        h.clients.get_mut(&key).unwrap().3 = head_len;
        assert_eq!(h.frames(key), [Frame::Text("early".into())]);
        assert_eq!(
            h.seen.take(),
            [Seen::Open(id), Seen::Message(id, "early".into())]
        );
        assert_eq!(h.counter("ringws_upgrades_deferred"), 1);
        assert_eq!(h.counter("ringws_deferred_upgrades_accepted"), 1);
        assert_eq!(h.counter("ringws_upgraded"), 1);
    }

    #[test]
    fn a_deferred_upgrade_refused_gets_the_response_and_no_open() {
        let mut h = Harness::new(config());
        let (key, pending) = h.deferred();
        pending.reject(401, "bad token\n").unwrap();
        h.turn();
        let wire = String::from_utf8_lossy(&h.socket(key).wire).into_owned();
        assert!(wire.starts_with("HTTP/1.1 401"), "{wire}");
        assert!(wire.ends_with("bad token\n"), "{wire}");
        assert!(h.socket(key).write_shut);
        assert!(h.seen.take().is_empty());
        assert_eq!(h.counter("ringws_deferred_upgrades_rejected"), 1);
    }

    #[test]
    fn an_undecided_upgrade_gets_503_at_the_handshake_timeout_and_a_late_decision_an_error() {
        let mut h = Harness::new(config());
        let (key, pending) = h.deferred();
        h.run_for(1900);
        assert!(h.socket(key).wire.is_empty(), "still waiting");
        h.run_for(200);
        let wire = String::from_utf8_lossy(&h.socket(key).wire).into_owned();
        assert!(wire.starts_with("HTTP/1.1 503"), "{wire}");
        assert!(h.socket(key).write_shut);
        assert_eq!(pending.accept(()), Err(UpgradeError::Expired));
        assert_eq!(h.counter("ringws_deferred_upgrades_expired"), 1);
        assert_eq!(h.worker.shared.pending_upgrades, 0);
    }

    #[test]
    fn a_client_gone_while_pending_frees_its_slot_at_once() {
        let mut h = Harness::new(Config {
            max_pending_upgrades: 1,
            ..config()
        });
        let (key, first) = h.deferred();
        h.worker.on_hangup(key, Hangup::Error);
        h.turn();
        assert_eq!(h.worker.shared.pending_upgrades, 0);
        assert_eq!(first.accept(()), Err(UpgradeError::Gone));
        assert_eq!(h.counter("ringws_deferred_upgrades_abandoned"), 1);
        // Its slot is free: the next one waits too, and opens.
        let (key, second) = h.deferred();
        assert!(h.socket(key).wire.is_empty());
        second.accept(()).unwrap();
        h.turn();
        assert!(h.socket(key).wire.starts_with(b"HTTP/1.1 101"));
    }

    #[test]
    fn past_max_pending_upgrades_a_deferred_request_gets_503() {
        let mut h = Harness::new(Config {
            max_pending_upgrades: 2,
            ..config()
        });
        let waiting: Vec<_> = (0..2).map(|_| h.deferred()).collect();
        let key = h.accept();
        h.send_raw(key, DEFER);
        h.turn();
        let wire = String::from_utf8_lossy(&h.socket(key).wire).into_owned();
        assert!(wire.starts_with("HTTP/1.1 503"), "{wire}");
        assert!(h.seen.2.borrow().is_empty(), "the handler never got it");
        assert_eq!(h.counter("ringws_deferred_upgrades_refused"), 1);
        for (key, pending) in waiting {
            pending.accept(()).unwrap();
            h.turn();
            assert!(h.socket(key).wire.starts_with(b"HTTP/1.1 101"));
        }
    }

    #[test]
    fn a_pending_upgrade_dropped_undecided_answers_500() {
        let mut h = Harness::new(config());
        let (key, pending) = h.deferred();
        drop(pending);
        h.turn();
        assert!(h.socket(key).wire.starts_with(b"HTTP/1.1 500"));
        assert!(h.seen.take().is_empty());
    }

    #[test]
    fn a_client_that_sends_too_much_while_pending_gets_503() {
        let mut h = Harness::new(config());
        let (key, pending) = h.deferred();
        h.send_raw(key, &vec![0x81; crate::runtime::deferred::HELD_MAX + 1]);
        h.turn();
        assert!(h.socket(key).wire.starts_with(b"HTTP/1.1 503"));
        assert_eq!(pending.accept(()), Err(UpgradeError::Gone));
        assert_eq!(h.worker.shared.pending_upgrades, 0);
    }

    #[test]
    fn a_subprotocol_not_offered_is_refused_with_500_after_a_deferred_decision() {
        let mut h = Harness::new(config());
        let (key, pending) = h.deferred();
        pending
            .complete(Upgrade::accept(()).protocol("other"))
            .unwrap();
        h.turn();
        assert!(h.socket(key).wire.starts_with(b"HTTP/1.1 500"));
    }
}
