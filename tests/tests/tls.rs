//! What only TLS has: certificates (reload, SNI), versions and ALPN, one server
//! with plain and TLS listeners, and bad input at the TLS layer. Every other
//! integration test also runs over TLS (see `backend_tests!`).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use ringws::proto::frame::OpCode;
use ringws::rustls::{self, ClientConnection};
use ringws::{BackendKind, CloseCause, TlsConfig, TlsError};
use ringws_tests::{
    Client, ConnectOptions, Echo, HttpReply, Msg, Stream, TIMEOUT, backend_tests, events,
    masked_frame, pki, read_to_eof, start,
};

/// A plain TCP connection, for bytes that are not TLS (or not yet).
fn raw_tcp(addr: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Everything the server sends until it closes (a reset ends it too); panics
/// if the server keeps the connection past the read timeout.
#[track_caller]
fn read_until_closed(mut stream: &TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the server kept the connection open")
            }
            Err(_) => return out,
        }
    }
}

/// A wss client that echoes once, to show a bad connection harmed no other.
fn still_echoes(client: &mut Client, text: &str) {
    client.send_text(text).unwrap();
    client.expect_text(text);
}

fn reload_keeps_open_connections_and_new_ones_see_the_new_certificate(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let mut before = Client::connect(server.addr()).unwrap();
    assert_eq!(
        before.stream().peer_certificate().unwrap(),
        pki().server_cert.der
    );
    let renewed = pki().issue(&["localhost", "127.0.0.1"], "renewed");
    assert!(server.reload_tls(renewed.config()));
    // The open connection keeps its session.
    still_echoes(&mut before, "still here");
    // A new one gets the new certificate.
    let mut after = Client::connect(server.addr()).unwrap();
    assert_eq!(after.stream().peer_certificate().unwrap(), renewed.der);
    still_echoes(&mut after, "renewed");
    still_echoes(&mut before, "and still here");
}

fn sni_picks_the_certificate_by_name(backend: BackendKind) {
    let a = pki().issue(&["a.test"], "a");
    let b = pki().issue(&["b.test"], "b");
    let sni = TlsConfig::sni()
        .add_pem("a.test", a.cert_pem.as_bytes(), a.key_pem.as_bytes())
        .unwrap()
        .add_pem("B.test", b.cert_pem.as_bytes(), b.key_pem.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let server = start(backend, |builder| builder.tls(sni), Echo::new);
    let addr = server.addr();
    for (name, issued) in [("a.test", &a), ("b.test", &b)] {
        let stream = Stream::connect_tls(addr, pki().client.clone(), name).unwrap();
        assert_eq!(stream.peer_certificate().unwrap(), issued.der, "{name}");
        let mut client = Client::connect_over(stream, addr, &ConnectOptions::default()).unwrap();
        still_echoes(&mut client, name);
    }
    // No certificate for the name and no fallback: the handshake fails.
    assert!(Stream::connect_tls(addr, pki().client.clone(), "c.test").is_err());
    assert!(
        Client::connect(addr).is_err(),
        "localhost has no certificate here"
    );
}

fn tls_1_2_and_1_3_with_alpn_http_1_1(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let addr = server.addr();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let stream =
            Stream::connect_tls(addr, pki().client_with(Some(version)), "localhost").unwrap();
        assert_eq!(stream.protocol_version(), Some(version.version));
        assert_eq!(stream.alpn_protocol().as_deref(), Some(&b"http/1.1"[..]));
        let mut client = Client::connect_over(stream, addr, &ConnectOptions::default()).unwrap();
        still_echoes(&mut client, &format!("{:?}", version.version));
        client.send_binary(&vec![7; 100_000]).unwrap();
        assert_eq!(client.msg(), Msg::Binary(vec![7; 100_000]));
    }
}

fn one_server_with_plain_and_tls_listeners(backend: BackendKind) {
    let server = start(backend, |b| b.bind("127.0.0.1:0"), Echo::new);
    let plain = server.local_addrs()[0];
    let tls = server.tls_addrs()[0];
    assert_ne!(plain, tls);
    let mut ws = Client::connect(plain).unwrap();
    assert!(!ws.stream().is_tls());
    let mut wss = Client::connect(tls).unwrap();
    assert!(wss.stream().is_tls());
    still_echoes(&mut ws, "plain");
    still_echoes(&mut wss, "tls");
}

fn plain_http_and_plain_websocket_on_the_tls_port_get_400(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let mut bystander = Client::connect(server.addr()).unwrap();
    for request in [
        &b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    ] {
        let mut stream = raw_tcp(server.addr());
        stream.write_all(request).unwrap();
        let reply = HttpReply::parse(&read_until_closed(&stream));
        assert_eq!(reply.status, 400);
        assert!(reply.text().contains("TLS"), "{}", reply.text());
    }
    still_echoes(&mut bystander, "unharmed");
}

fn garbage_records_close_only_their_connection(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let mut bystander = Client::connect(server.addr()).unwrap();
    // A handshake record that is not a ClientHello; a header announcing a
    // record longer than TLS allows; bytes that are no record at all.
    for garbage in [
        &b"\x16\x03\x01\x00\x05hello"[..],
        b"\x16\x03\x01\xff\xff",
        b"\x00\x01\x02\x03\x04\x05",
    ] {
        let mut stream = raw_tcp(server.addr());
        stream.write_all(garbage).unwrap();
        let answer = read_until_closed(&stream);
        // Nothing but, perhaps, an alert record (content type 21).
        assert!(answer.is_empty() || answer[0] == 0x15, "{answer:?}");
    }
    // After the handshake: a record that fails to decrypt.
    let (tx, events) = events();
    let reporting = start(backend, |b| b, move || Echo::reporting(tx.clone()));
    let client = Client::connect(reporting.addr()).unwrap();
    let id = events.open();
    let mut record = client
        .stream()
        .seal(&masked_frame(true, OpCode::Text, b"x"));
    let last = record.len() - 1;
    record[last] ^= 0x40;
    client.stream().tcp().write_all(&record).unwrap();
    let (code, _, cause) = events.close_of(id);
    assert_eq!((code, cause), (1006, CloseCause::Tls(TlsError::Record)));
    still_echoes(&mut bystander, "unharmed");
}

fn unfinished_tls_handshakes_are_cut_by_the_handshake_timeout(backend: BackendKind) {
    let server = start(
        backend,
        |b| b.handshake_timeout(Duration::from_millis(300)),
        Echo::new,
    );
    let mut bystander = Client::connect(server.addr()).unwrap();
    // Half a ClientHello (a record cut in its middle), then silence.
    let mut client =
        ClientConnection::new(pki().client.clone(), "localhost".try_into().unwrap()).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    let half = raw_tcp(server.addr());
    (&half).write_all(&hello[..hello.len() / 2]).unwrap();
    // Nothing at all.
    let silent = raw_tcp(server.addr());
    // A whole ClientHello, and then no answer to the server's flight.
    let stalled = raw_tcp(server.addr());
    (&stalled).write_all(&hello).unwrap();
    for stream in [&half, &silent, &stalled] {
        read_until_closed(stream);
    }
    still_echoes(&mut bystander, "unharmed");
}

fn handshakes_past_the_limit_wait_their_turn_and_complete(backend: BackendKind) {
    // One handshake at a time per worker: sixteen clients at once queue, and
    // each still upgrades and echoes.
    let server = start(backend, |b| b.workers(1).max_tls_handshakes(1), Echo::new);
    let addr = server.addr();
    let clients: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr).unwrap();
                still_echoes(&mut client, &format!("client {i}"));
            })
        })
        .collect();
    for client in clients {
        client.join().expect("every queued handshake completes");
    }
}

fn a_client_hello_in_one_byte_records_completes_the_handshake(backend: BackendKind) {
    // One handshake at a time, and one already waiting: the fragmented hello
    // is held (compacted) and then answered like any other.
    let server = start(backend, |b| b.workers(1), Echo::new);
    for per_record in [1usize, 20, 256] {
        let tcp = raw_tcp(server.addr());
        let mut conn =
            ClientConnection::new(pki().client_with(None), "localhost".try_into().unwrap())
                .unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        let message = &hello[5..];
        let mut records = Vec::new();
        for chunk in message.chunks(per_record) {
            records.extend_from_slice(&[22, 3, 1]);
            records.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            records.extend_from_slice(chunk);
        }
        (&tcp).write_all(&records).unwrap();
        // The rest of the handshake as usual, then a WebSocket over it.
        let stream = Stream::from_tls_parts(tcp, conn).unwrap();
        let mut client = Client::connect_over(stream, server.addr(), &ConnectOptions::default())
            .unwrap_or_else(|e| panic!("records of {per_record}: {e}"));
        still_echoes(&mut client, &format!("records of {per_record}"));
    }
}

fn a_close_notify_is_answered_with_close_notify(backend: BackendKind) {
    let server = start(backend, |b| b, Echo::new);
    let mut client = Client::connect(server.addr()).unwrap();
    still_echoes(&mut client, "before");
    client.stream().close_notify().unwrap();
    let _ = read_to_eof(client.stream());
    assert!(
        client.stream().received_close_notify(),
        "the server's close_notify came before its FIN"
    );
    let mut bystander = Client::connect(server.addr()).unwrap();
    still_echoes(&mut bystander, "unharmed");
}

fn close_notify_mid_message_and_cut_records_have_their_causes(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(backend, |b| b, move || Echo::reporting(tx.clone()));
    let addr = server.addr();
    // close_notify in the middle of a fragmented message: the stream ended
    // without a close frame, as an EOF ends it.
    let mut client = Client::connect(addr).unwrap();
    let id = events.open();
    client
        .send_frame(false, OpCode::Text, b"first half")
        .unwrap();
    client.stream().close_notify().unwrap();
    assert_eq!(events.close_of(id).2, CloseCause::Reset);
    // A TCP reset in the middle of a record.
    let client = Client::connect(addr).unwrap();
    let id = events.open();
    let record = client
        .stream()
        .seal(&masked_frame(true, OpCode::Text, b"cut"));
    client
        .stream()
        .tcp()
        .write_all(&record[..record.len() / 2])
        .unwrap();
    client.reset();
    assert_eq!(events.close_of(id).2, CloseCause::Reset);
    // The stream ends (FIN) in the middle of a record.
    let client = Client::connect(addr).unwrap();
    let id = events.open();
    let record = client
        .stream()
        .seal(&masked_frame(true, OpCode::Text, b"cut"));
    client
        .stream()
        .tcp()
        .write_all(&record[..record.len() / 2])
        .unwrap();
    client.stream().shutdown(Shutdown::Write).unwrap();
    let (code, reason, cause) = events.close_of(id);
    assert_eq!(
        (code, reason.as_str(), cause),
        (
            1006,
            "stream ended inside a TLS record",
            CloseCause::Tls(TlsError::Truncated)
        )
    );
    let _ = read_to_eof(client.stream());
}

backend_tests! {
    tls:
    reload_keeps_open_connections_and_new_ones_see_the_new_certificate,
    sni_picks_the_certificate_by_name,
    tls_1_2_and_1_3_with_alpn_http_1_1,
    one_server_with_plain_and_tls_listeners,
    plain_http_and_plain_websocket_on_the_tls_port_get_400,
    garbage_records_close_only_their_connection,
    unfinished_tls_handshakes_are_cut_by_the_handshake_timeout,
    handshakes_past_the_limit_wait_their_turn_and_complete,
    close_notify_mid_message_and_cut_records_have_their_causes,
    a_close_notify_is_answered_with_close_notify,
    a_client_hello_in_one_byte_records_completes_the_handshake,
}
