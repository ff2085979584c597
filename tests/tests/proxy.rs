//! The PROXY protocol on a listener, over real sockets: v1 and v2, IPv4 and
//! IPv6 client addresses, UNKNOWN and LOCAL, the optional and required modes,
//! untrusted sources, and abuse (truncated, oversized, garbage, slowloris),
//! each closing only its own connection.

use std::net::SocketAddr;
use std::time::Duration;

use ringws::{BackendKind, ProxyMode};
use ringws_tests::{
    Client, ConnectOptions, Echo, Events, ServerEvent, TestServer, events, is_disconnect,
    read_to_eof, start, tcp,
};

fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut out = ringws::proto::proxy::V2_SIGNATURE.to_vec();
    out.push(0x20 | command);
    out.push(family);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn v2_tcp4(source: [u8; 4], port: u16) -> Vec<u8> {
    let mut body = source.to_vec();
    body.extend_from_slice(&[127, 0, 0, 1]);
    body.extend_from_slice(&port.to_be_bytes());
    body.extend_from_slice(&80u16.to_be_bytes());
    v2(1, 0x11, &body)
}

fn v2_tcp6(source: std::net::Ipv6Addr, port: u16) -> Vec<u8> {
    let mut body = source.octets().to_vec();
    body.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    body.extend_from_slice(&port.to_be_bytes());
    body.extend_from_slice(&443u16.to_be_bytes());
    v2(1, 0x21, &body)
}

fn proxied(backend: BackendKind, mode: ProxyMode, trusted: &str) -> (TestServer, Events) {
    let (tx, events) = events();
    let trusted = trusted.to_owned();
    let server = start(
        backend,
        move |b| {
            b.proxy_protocol(mode, [trusted])
                .handshake_timeout(Duration::from_millis(500))
        },
        move || Echo::reporting(tx.clone()),
    );
    (server, events)
}

/// Connects with `preamble` before the request; the peer `on_open` saw.
fn connect_as(addr: SocketAddr, events: &Events, preamble: &[u8]) -> (Client, SocketAddr) {
    let mut client = Client::connect_opts(
        addr,
        &ConnectOptions {
            preamble: preamble.to_vec(),
            ..ConnectOptions::default()
        },
    )
    .unwrap();
    let peer = events.wait("on_open", |e| match e {
        ServerEvent::Open { peer, .. } => Some(*peer),
        _ => None,
    });
    client.send_text("echo").unwrap();
    client.expect_text("echo");
    (client, peer)
}

/// Sends `bytes` and expects the server to close without answering.
fn refused(addr: SocketAddr, bytes: &[u8]) {
    let stream = tcp(addr).unwrap();
    // The server may close before taking it all.
    let _ = std::io::Write::write_all(&mut &stream, bytes);
    match read_to_eof(&stream) {
        Ok(reply) => assert!(
            reply.is_empty(),
            "answered: {:?}",
            String::from_utf8_lossy(&reply)
        ),
        Err(e) => assert!(is_disconnect(&e), "{e}"),
    }
}

fn request() -> Vec<u8> {
    b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec()
}

fn required_v1_and_v2_give_the_client_address(backend: BackendKind) {
    let (server, events) = proxied(backend, ProxyMode::Required, "127.0.0.0/8");
    let addr = server.addr();
    let cases: Vec<(Vec<u8>, SocketAddr)> = vec![
        (
            b"PROXY TCP4 203.0.113.7 127.0.0.1 40001 80\r\n".to_vec(),
            "203.0.113.7:40001".parse().unwrap(),
        ),
        (
            b"PROXY TCP6 2001:db8::7 ::1 40002 443\r\n".to_vec(),
            "[2001:db8::7]:40002".parse().unwrap(),
        ),
        (
            v2_tcp4([198, 51, 100, 9], 40003),
            "198.51.100.9:40003".parse().unwrap(),
        ),
        (
            v2_tcp6("2001:db8::9".parse().unwrap(), 40004),
            "[2001:db8::9]:40004".parse().unwrap(),
        ),
    ];
    for (preamble, expected) in cases {
        let (mut client, peer) = connect_as(addr, &events, &preamble);
        assert_eq!(peer, expected);
        client.close_handshake(1000, "").unwrap();
    }
    // UNKNOWN and LOCAL keep the connection's own address.
    for preamble in [b"PROXY UNKNOWN\r\n".to_vec(), v2(0, 0x00, &[])] {
        let (client, peer) = connect_as(addr, &events, &preamble);
        assert_eq!(peer, client.stream().local_addr().unwrap());
    }
}

fn required_refuses_missing_and_abusive_headers_only(backend: BackendKind) {
    let (server, events) = proxied(backend, ProxyMode::Required, "127.0.0.0/8");
    let addr = server.addr();
    // A healthy connection stays up through all of it.
    let (mut healthy, _) = connect_as(addr, &events, b"PROXY UNKNOWN\r\n");
    let mut oversized = v2(1, 0x11, &[0; 12]);
    oversized[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    let garbage: Vec<u8> = (0..200u8).map(|i| i.wrapping_mul(37)).collect();
    let mut long_v1 = b"PROXY UNKNOWN ".to_vec();
    long_v1.extend(std::iter::repeat_n(b'x', 200));
    for (case, bytes) in [
        request(),                                          // no header
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n".to_vec(), // bad port
        b"PROXY TCP9 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),     // bad protocol
        long_v1,                                            // oversized v1
        oversized,                                          // oversized v2
        v2(1, 0x21, &[0; 20]),                              // truncated v2 addresses
        garbage,
    ]
    .into_iter()
    .enumerate()
    {
        refused(addr, &bytes);
        healthy.send_text(&format!("still here {case}")).unwrap();
        healthy.expect_text(&format!("still here {case}"));
    }
    // Slowloris: a header cut short is dropped at the handshake timeout.
    let stream = tcp(addr).unwrap();
    std::io::Write::write_all(&mut &stream, b"PROXY TCP4 1.2").unwrap();
    match read_to_eof(&stream) {
        Ok(reply) => assert!(reply.is_empty()),
        Err(e) => assert!(is_disconnect(&e), "{e}"),
    }
    healthy.send_text("after").unwrap();
    healthy.expect_text("after");
}

fn untrusted_sources(backend: BackendKind) {
    // Required, and 127.0.0.1 is not trusted: nothing is served.
    let (server, _events) = proxied(backend, ProxyMode::Required, "10.0.0.0/8");
    let mut with_header = b"PROXY UNKNOWN\r\n".to_vec();
    with_header.extend(request());
    refused(server.addr(), &with_header);
    // Optional and untrusted: a plain connection is served, a header refused.
    let (server, events) = proxied(backend, ProxyMode::Optional, "10.0.0.0/8");
    let (client, peer) = connect_as(server.addr(), &events, b"");
    assert_eq!(peer, client.stream().local_addr().unwrap());
    refused(server.addr(), &with_header);
}

fn optional_trusted_takes_both(backend: BackendKind) {
    let (server, events) = proxied(backend, ProxyMode::Optional, "127.0.0.1/32");
    let (client, peer) = connect_as(server.addr(), &events, b"");
    assert_eq!(peer, client.stream().local_addr().unwrap());
    let (_, peer) = connect_as(server.addr(), &events, &v2_tcp4([192, 0, 2, 1], 7));
    assert_eq!(peer, "192.0.2.1:7".parse().unwrap());
}

// The PROXY protocol is read on plain listeners (`bind`); a TLS listener
// (`bind_tls`) takes none, so these run over plain TCP only.
ringws_tests::backend_tests! {
    plain:
    required_v1_and_v2_give_the_client_address,
    required_refuses_missing_and_abusive_headers_only,
    untrusted_sources,
    optional_trusted_takes_both,
    behind_nginx,
}

/// nginx, or where `scripts/test.sh` installs it.
fn nginx() -> std::path::PathBuf {
    for path in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] {
        if std::path::Path::new(path).exists() {
            return path.into();
        }
    }
    panic!("nginx is not installed (scripts/test.sh installs Debian's nginx package)");
}

/// nginx in front of the server, as in production: a stream block with
/// `proxy_protocol on`, its config in a temporary directory, stopped by PID.
struct Nginx {
    child: std::process::Child,
    dir: std::path::PathBuf,
    addr: SocketAddr,
}

impl Nginx {
    fn start(upstream: SocketAddr) -> Nginx {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("ringws-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let modules =
            if std::path::Path::new("/usr/lib/nginx/modules/ngx_stream_module.so").exists() {
                "load_module /usr/lib/nginx/modules/ngx_stream_module.so;"
            } else {
                ""
            };
        let config = format!(
            "{modules}\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\nevents {{ worker_connections 64; }}\n\
             stream {{ server {{ listen 127.0.0.1:{port}; proxy_pass {upstream}; proxy_protocol on; }} }}\n"
        );
        std::fs::write(dir.join("nginx.conf"), config).unwrap();
        let child = std::process::Command::new(nginx())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("start nginx");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = std::time::Instant::now() + ringws_tests::TIMEOUT;
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nginx did not listen: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { child, dir, addr }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Our own child, by PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn behind_nginx(backend: BackendKind) {
    let (server, events) = proxied(backend, ProxyMode::Required, "127.0.0.1/32");
    let nginx = Nginx::start(server.addr());
    // The readiness probe in Nginx::start opened no WebSocket.
    let _ = events.take_all();
    for _ in 0..3 {
        let (mut client, peer) = connect_as(nginx.addr, &events, b"");
        // The server sees the client's own address and port, not nginx's.
        assert_eq!(peer, client.stream().local_addr().unwrap());
        client.close_handshake(1000, "").unwrap();
    }
}
