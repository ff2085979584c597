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
    /// Handed over (`detach`), or taken over (`adopt`).
    detached: bool,
    adopted: bool,
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

    fn prepare_detach(&mut self, _key: usize) -> crate::runtime::seam::Prepared {
        crate::runtime::seam::Prepared::Ready
    }

    /// A descriptor standing for the socket: /dev/null.
    fn detach(&mut self, key: usize) -> Option<std::os::fd::OwnedFd> {
        self.sockets.entry(key).or_default().detached = true;
        std::fs::File::open("/dev/null").ok().map(Into::into)
    }

    fn adopt(&mut self, key: usize, _fd: std::os::fd::OwnedFd) -> bool {
        self.sockets.entry(key).or_default().adopted = true;
        true
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
    h.run_for(1990);
    assert!(!h.socket(key).closed, "not before the deadline");
    // Within a tick (500 ms) after it.
    h.run_for(510);
    assert!(h.socket(key).closed, "closed after {} ms", h.elapsed_ms());
    assert_eq!(h.seen.take(), []);
}

#[test]
fn an_accept_after_a_wait_still_gets_the_whole_handshake_timeout() {
    let mut h = Harness::new(config());
    // The worker slept through most of two ticks (500 ms each): its clock
    // still reads the tick of its last turn when the accept arrives.
    h.now += Duration::from_millis(990);
    let key = h.accept();
    h.send_raw(key, b"GET /chat HTTP/1.1\r\nHost:");
    let accepted = h.now;
    while h.now - accepted < Duration::from_millis(1990) {
        h.after(10);
        assert!(
            !h.socket(key).closed,
            "cut {} ms after the accept, short of the 2 s timeout",
            (h.now - accepted).as_millis()
        );
    }
    h.run_for(520);
    assert!(
        h.socket(key).closed,
        "closed within a tick after the timeout"
    );
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

mod policies;

mod turns;

mod tls;

mod deferred;
