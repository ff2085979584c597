//! Live restarts (docs/HANDOVER.md): a second server started with the same
//! hand-over socket and nonce takes the first one's listening sockets and
//! open connections; clients that keep echoing through it (over TLS too:
//! our record layer's keys and sequence numbers travel) see no close and no
//! lost, duplicated or reordered message, their per-connection data and
//! topic subscriptions travel along, and both processes' descriptors are
//! all accounted for afterwards, with permessage-deflate too (with context
//! takeover: each direction's window travels). What cannot be carried (data
//! the application does not carry) is closed with 1012 and counted. Clients
//! in the middle of a frame, a fragmented or compressed message or a TLS
//! record go at once, and finish their messages in the new process
//! (`handover/mid_frame.rs`). Both "processes" run in this test process: the
//! kernel passes descriptors
//! between two servers of one process as between two processes.
//!
//! The tests of this file run one at a time: they count the process's
//! descriptors.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use ringws::proto::close::CloseCode;
use ringws::proto::deflate::DeflateConfig;
use ringws::proto::handshake::UpgradeRequest;
use ringws::{
    BackendKind, Builder, ConnId, DeflateMode, Handler, Message, Portable, Upgrade, WebSocket,
};
use ringws_tests::{Client, ConnectOptions, Msg, backend_tests, start, wait_until};

// Clients in the middle of a frame at the hand-over, and the deadline.
#[path = "handover/mid_frame.rs"]
mod mid_frame;

static SERIAL: Mutex<()> = Mutex::new(());
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Echoes; counts each connection's messages in its data; `!count` answers
/// the count, `!sub T` subscribes to T, `!pub M` publishes M on `news`.
/// Carries its data when `carry`.
#[derive(Clone, Copy)]
struct Counting {
    carry: bool,
}

impl Handler for Counting {
    type Data = u64;

    fn on_upgrade(&mut self, _: &UpgradeRequest<'_>, _: SocketAddr) -> Upgrade<u64> {
        Upgrade::accept(0)
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, u64>, message: Message<'_>) {
        *ws.data_mut() += 1;
        match message {
            Message::Text("!count") => {
                let count = ws.data().to_string();
                ws.send_text(&count);
            }
            Message::Text(text) if text.starts_with("!sub ") => {
                ws.subscribe(&text[5..]);
                ws.send_text("subscribed");
            }
            Message::Text(text) if text.starts_with("!pub ") => {
                ws.publish("news", Message::Text(&text[5..]));
            }
            other => {
                ws.send(other);
            }
        }
    }

    fn on_handover_out(&mut self, _: ConnId, data: &u64) -> Option<Vec<u8>> {
        self.carry.then(|| data.to_bytes())
    }

    fn on_handover_in(&mut self, _: ConnId, bytes: &[u8]) -> Option<u64> {
        u64::from_bytes(bytes)
    }
}

/// The control socket's name and the nonce file of one test.
struct Rendezvous {
    socket: String,
    nonce: PathBuf,
}

impl Rendezvous {
    fn new(secret: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let nonce = std::env::temp_dir().join(format!("ringws-handover-{pid}-{n}.nonce"));
        std::fs::write(&nonce, secret).unwrap();
        std::fs::set_permissions(&nonce, std::fs::Permissions::from_mode(0o600)).unwrap();
        Self {
            socket: format!("@ringws-handover-test-{pid}-{n}"),
            nonce,
        }
    }

    fn configure(&self, builder: Builder) -> Builder {
        builder
            .handover(&self.socket, &self.nonce)
            .handover_deadline(std::time::Duration::from_secs(10))
    }
}

impl Drop for Rendezvous {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.nonce);
    }
}

/// The counter `name` (`ringws_..._total`) as the server last published it.
fn metric(server: &ringws::ServerHandle, name: &str) -> u64 {
    let prefix = format!("{name}_total{{");
    server
        .metrics()
        .lines()
        .find_map(|line| {
            line.strip_prefix(&prefix)
                .and_then(|rest| rest.rsplit(' ').next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// What a client saw while it echoed: round trips, and how it ended.
#[derive(Debug, Default)]
struct Seen {
    rounds: AtomicUsize,
    /// The first thing that was not the echo of what was sent.
    failure: Mutex<Option<String>>,
    /// The close code it got, if the server closed it.
    closed: Mutex<Option<u16>>,
}

/// What every echoed message repeats (compressible by reference only).
const SAID_BEFORE: &str = "The quick brown fox jumps over the lazy dog; pack my box with \
    five dozen liquor jugs. Sphinx of black quartz, judge my vow! 0123456789 \
    How vexingly quick daft zebras jump; the five boxing wizards jump quickly.";

/// Echoes numbered messages (compressed ones with `deflate`) until `stop`,
/// each answer checked against what was sent; then hands the client back.
fn echo_loop(
    mut client: Client,
    id: usize,
    deflate: bool,
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
) -> Option<Client> {
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        // Long enough for the server to compress its echo, and most of it
        // what every message before said: with context takeover both sides
        // compress it to references into the earlier messages.
        let text = format!("client {id} message {seq} {SAID_BEFORE}");
        let sent = if deflate {
            client.send_compressed(true, text.as_bytes(), 1)
        } else {
            client.send_text(&text)
        };
        if let Err(e) = sent {
            *seen.failure.lock().unwrap() = Some(format!("send {seq}: {e}"));
            return None;
        }
        match client.recv() {
            Ok(Msg::Text(echo)) if echo == text => {
                seen.rounds.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Msg::Close(close)) => {
                let code = close.map(|(code, _)| code);
                *seen.closed.lock().unwrap() = code;
                let _ = client.close(code.unwrap_or(1000), "");
                return None;
            }
            other => {
                *seen.failure.lock().unwrap() = Some(format!("message {seq}: {other:?}"));
                return None;
            }
        }
    }
    Some(client)
}

/// The setups a case runs.
struct Case {
    deflate_server: DeflateMode,
    deflate_client: Option<DeflateConfig>,
    carry: bool,
    /// The connections survive (else each is closed with 1012).
    survive: bool,
}

fn run(backend: BackendKind, case: Case) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _ = env_logger::builder().is_test(true).try_init();
    let fds_before = open_fds();
    let meet = Rendezvous::new("the shared secret");
    let handler = Counting { carry: case.carry };
    let server = |meet: &Rendezvous| {
        let mode = case.deflate_server;
        start(
            backend,
            |b| meet.configure(b).deflate(mode).ping_interval(None),
            move || handler,
        )
    };
    let old = server(&meet);
    let addr = old.addr();
    let clients = 8;
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    let mut seens = Vec::new();
    for id in 0..clients {
        let options = ConnectOptions {
            deflate: case.deflate_client,
            ..ConnectOptions::default()
        };
        let mut client = Client::connect_opts(addr, &options).unwrap();
        client.send_text("!sub news").unwrap();
        client.expect_text("subscribed");
        let deflate = client.deflate().is_some();
        if matches!(case.deflate_server, DeflateMode::Dedicated { .. }) {
            let n = client.deflate().expect("permessage-deflate negotiated");
            assert!(
                !n.server_no_context_takeover && !n.client_no_context_takeover,
                "context takeover both ways: {n:?}"
            );
        }
        let (stop, seen) = (stop.clone(), Arc::new(Seen::default()));
        seens.push(seen.clone());
        let t = ringws_tests::transport::transport();
        loops.push(thread::spawn(move || {
            ringws_tests::with_transport(t, || echo_loop(client, id, deflate, stop, seen))
        }));
    }
    wait_until("every client echoing", || {
        seens.iter().all(|s| s.rounds.load(Ordering::Relaxed) >= 5)
    });
    // The new process: the same configuration, port 0 included.
    let new = server(&meet);
    assert_eq!(
        new.addr(),
        addr,
        "the new server took the listening sockets over"
    );
    // The old one exits once everything is handed over or closed.
    old.join();
    let handed = metric(&old, "ringws_handover_out");
    let refused = metric(&old, "ringws_handover_refused");
    if case.survive {
        assert_eq!((handed, refused), (clients as u64, 0));
        wait_until("the new server counts them", || {
            metric(&new, "ringws_handover_in") == clients as u64
        });
        // Echoing on, on the new server.
        let after: Vec<usize> = seens
            .iter()
            .map(|s| s.rounds.load(Ordering::Relaxed))
            .collect();
        wait_until("every client echoing on the new server", || {
            seens
                .iter()
                .zip(&after)
                .all(|(s, &a)| s.rounds.load(Ordering::Relaxed) >= a + 5)
        });
    } else {
        assert_eq!((handed, refused), (0, clients as u64));
        wait_until("every client closed", || {
            seens
                .iter()
                .all(|s| s.closed.lock().unwrap().is_some() || s.failure.lock().unwrap().is_some())
        });
    }
    stop.store(true, Ordering::Relaxed);
    let mut survivors = Vec::new();
    for (l, seen) in loops.into_iter().zip(&seens) {
        let client = l.join().unwrap();
        if case.survive {
            assert_eq!(
                *seen.failure.lock().unwrap(),
                None,
                "lost, duplicated or reordered"
            );
            assert_eq!(*seen.closed.lock().unwrap(), None, "closed");
            survivors.push((
                client.expect("still open"),
                seen.rounds.load(Ordering::Relaxed),
            ));
        } else {
            assert_eq!(
                *seen.closed.lock().unwrap(),
                Some(CloseCode::SERVICE_RESTART.0)
            );
        }
    }
    // Its data travelled (every message counted, "!sub" included), and its
    // subscription: a publish on the new server reaches it.
    for (client, rounds) in &mut survivors {
        client.send_text("!count").unwrap();
        client.expect_text(&(*rounds as u64 + 2).to_string());
    }
    if case.survive {
        new.publish("news", Message::Text("extra"));
        for (client, _) in &mut survivors {
            client.expect_text("extra");
        }
    }
    // New connections are served by the new process.
    let mut late = Client::connect(addr).unwrap();
    late.send_text("late").unwrap();
    late.expect_text("late");
    drop(late);
    drop(survivors);
    drop(old);
    drop(new);
    wait_until("every descriptor closed", || open_fds() <= fds_before);
}

/// Where connections are carried: both backends, plain and TLS.
fn carried(_backend: BackendKind) -> bool {
    true
}

fn live_connections_survive_a_hand_over(backend: BackendKind) {
    run(
        backend,
        Case {
            deflate_server: DeflateMode::Off,
            deflate_client: None,
            carry: true,
            survive: carried(backend),
        },
    );
}

fn permessage_deflate_without_context_takeover_is_carried(backend: BackendKind) {
    run(
        backend,
        Case {
            deflate_server: DeflateMode::Shared,
            deflate_client: Some(DeflateConfig::default()),
            carry: true,
            survive: carried(backend),
        },
    );
}

/// Context takeover both ways: the windows travel (a wrong one fails an echo).
fn permessage_deflate_with_context_takeover_is_carried(backend: BackendKind) {
    for (server_window, client_window) in [(15, 15), (10, 11)] {
        run(
            backend,
            Case {
                deflate_server: DeflateMode::Dedicated {
                    window_bits: server_window,
                },
                deflate_client: Some(DeflateConfig {
                    max_window_bits: client_window,
                    ..DeflateConfig::default()
                }),
                carry: true,
                survive: carried(backend),
            },
        );
    }
}

fn data_the_application_does_not_carry_is_closed_with_1012(backend: BackendKind) {
    run(
        backend,
        Case {
            deflate_server: DeflateMode::Off,
            deflate_client: None,
            carry: false,
            survive: false,
        },
    );
}

/// A new server without the nonce is refused: it starts beside the old one
/// (SO_REUSEPORT), and the old one keeps its connections.
fn a_wrong_nonce_is_refused(backend: BackendKind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let meet = Rendezvous::new("right");
    let handler = Counting { carry: true };
    let old = start(backend, |b| meet.configure(b), move || handler);
    let mut client = Client::connect(old.addr()).unwrap();
    let wrong = Rendezvous {
        socket: meet.socket.clone(),
        nonce: Rendezvous::new("wrong").nonce.clone(),
    };
    std::fs::write(&wrong.nonce, "wrong").unwrap();
    std::fs::set_permissions(&wrong.nonce, std::fs::Permissions::from_mode(0o600)).unwrap();
    let result = ringws::Server::builder()
        .bind("127.0.0.1:0")
        .backend(backend)
        .handover(&wrong.socket, &wrong.nonce)
        .build()
        .unwrap()
        .start(move || handler);
    // Refused, it binds its own (the control socket is the old one's: taken).
    assert!(
        result.is_err(),
        "the control socket is still the old server's"
    );
    client.send_text("still here").unwrap();
    client.expect_text("still here");
    assert_eq!(metric(&old, "ringws_handover_out"), 0);
    // A nonce file others may read is refused at start.
    std::fs::set_permissions(&wrong.nonce, std::fs::Permissions::from_mode(0o644)).unwrap();
    let result = ringws::Server::builder()
        .bind("127.0.0.1:0")
        .backend(backend)
        .handover("@ringws-handover-unused", &wrong.nonce)
        .build()
        .unwrap()
        .start(move || handler);
    assert!(matches!(result, Err(ringws::StartError::Handover(_))));
}

backend_tests! {
    live_connections_survive_a_hand_over,
    permessage_deflate_without_context_takeover_is_carried,
    permessage_deflate_with_context_takeover_is_carried,
    data_the_application_does_not_carry_is_closed_with_1012,
    a_wrong_nonce_is_refused,
    another_major_version_is_refused_and_the_old_one_closes_with_1001,
}

/// Connects to the control socket as a new process of protocol `major`
/// would and says hello: the socket and the first answer's bytes.
fn hello(socket: &str, nonce: &[u8], major: u16) -> (std::os::fd::OwnedFd, Vec<u8>) {
    use std::os::fd::{AsRawFd, FromRawFd};
    let name = socket.strip_prefix('@').expect("an abstract name");
    // SAFETY: a plain socket(2) call; the descriptor is owned below.
    let raw = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    assert!(raw >= 0);
    // SAFETY: `raw` is a new descriptor nothing else owns.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (slot, byte) in addr.sun_path[1..].iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    let connected = unsafe { libc::connect(raw, (&raw const addr).cast(), len as libc::socklen_t) };
    assert_eq!(connected, 0, "{}", std::io::Error::last_os_error());
    let mut hello = vec![1];
    hello.extend_from_slice(&major.to_le_bytes());
    hello.extend_from_slice(&[0, 0, 1]);
    hello.extend_from_slice(&(nonce.len() as u16).to_le_bytes());
    hello.extend_from_slice(nonce);
    send(&fd, &hello);
    let mut buf = [0u8; 4096];
    // SAFETY: `buf` is valid for its length. Descriptors that come with the
    // message (the listening sockets) find no room: the kernel closes them.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    assert!(n > 0, "an answer");
    (fd, buf[..n as usize].to_vec())
}

fn send(fd: &std::os::fd::OwnedFd, bytes: &[u8]) {
    use std::os::fd::AsRawFd;
    // SAFETY: `bytes` is valid for its length.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    assert_eq!(n, bytes.len() as isize);
}

/// Takes the listening sockets as a new process would, says it is ready and
/// stops reading: the old process's first batch fails as if the new process
/// had died.
fn dying_new_process(socket: &str, nonce: &[u8]) -> std::os::fd::OwnedFd {
    use std::os::fd::AsRawFd;
    let (fd, answer) = hello(socket, nonce, 1);
    assert_eq!(answer[0], 3, "the listeners came");
    // SAFETY: a plain shutdown(2) of the descriptor owned above.
    assert_eq!(unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RD) }, 0);
    send(&fd, &[4]);
    fd
}

/// A new process of another major protocol version is refused, and the old
/// one falls back to a plain restart: 1001 to every connection, then it ends.
fn another_major_version_is_refused_and_the_old_one_closes_with_1001(backend: BackendKind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let meet = Rendezvous::new("the shared secret");
    let handler = Counting { carry: true };
    let old = start(backend, |b| meet.configure(b), move || handler);
    let mut client = Client::connect(old.addr()).unwrap();
    let (_fd, answer) = hello(&meet.socket, b"the shared secret", 2);
    assert_eq!(answer[0], 2, "refused");
    let reason = String::from_utf8_lossy(&answer[3..]).into_owned();
    assert!(reason.starts_with("version:"), "{reason}");
    assert_eq!(client.expect_close(1001), "server shutdown");
    client.close(1001, "").unwrap();
    drop(client);
    old.join();
    assert_eq!(metric(&old, "ringws_handover_out"), 0);
}

/// A new process that goes away mid-way leaves the old one serving every
/// connection it had not sent yet; a later new process takes them all.
#[test]
fn a_new_process_that_dies_mid_way_leaves_the_old_one_serving() {
    let backend = BackendKind::Epoll;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _ = env_logger::builder().is_test(true).try_init();
    let meet = Rendezvous::new("the shared secret");
    let handler = Counting { carry: true };
    let old = start(backend, |b| meet.configure(b), move || handler);
    let addr = old.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let seens: Vec<Arc<Seen>> = (0..4).map(|_| Arc::new(Seen::default())).collect();
    let loops: Vec<_> = seens
        .iter()
        .enumerate()
        .map(|(id, seen)| {
            let client = Client::connect(addr).unwrap();
            let (stop, seen) = (stop.clone(), seen.clone());
            thread::spawn(move || echo_loop(client, id, false, stop, seen))
        })
        .collect();
    let rounds_at_least = |n: usize| seens.iter().all(|s| s.rounds.load(Ordering::Relaxed) >= n);
    wait_until("every client echoing", || rounds_at_least(5));
    let dying = dying_new_process(&meet.socket, b"the shared secret");
    // The connections let go went in a batch that failed: each was taken
    // back (those not let go yet stayed).
    wait_until("the connections taken back", || {
        let out = metric(&old, "ringws_handover_out");
        out > 0 && metric(&old, "ringws_handover_in") == out && old.stats().connections == 4
    });
    let now: usize = seens
        .iter()
        .map(|s| s.rounds.load(Ordering::Relaxed))
        .min()
        .unwrap();
    wait_until("echoing on, on the old server", || rounds_at_least(now + 5));
    drop(dying);
    // The next new process takes the listening sockets (kept for it) and
    // every connection.
    let new = start(backend, |b| meet.configure(b), move || handler);
    assert_eq!(new.addr(), addr);
    old.join();
    wait_until("the new server has them", || {
        metric(&new, "ringws_handover_in") == 4
    });
    let now: usize = seens
        .iter()
        .map(|s| s.rounds.load(Ordering::Relaxed))
        .min()
        .unwrap();
    wait_until("echoing on, on the new server", || rounds_at_least(now + 5));
    stop.store(true, Ordering::Relaxed);
    for (l, seen) in loops.into_iter().zip(&seens) {
        assert!(l.join().unwrap().is_some(), "{seen:?}");
        assert_eq!(*seen.failure.lock().unwrap(), None);
        assert_eq!(*seen.closed.lock().unwrap(), None);
    }
}

fn still_echoes(client: &mut Client, text: &str) {
    client.send_text(text).unwrap();
    client.expect_text(text);
}
