//! A WebSocket's TCP connection (TLS over it for `wss://`): opened
//! non-blocking, spread over source addresses, read and written.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};

use mio::net::TcpStream;
use ringws::rustls::ClientConnection;
use socket2::{Domain, Protocol, Socket as RawSocket, Type};

/// A TCP connection, with TLS over it for `wss://`.
pub(super) struct Sock {
    pub(super) stream: TcpStream,
    /// `wss://`: the TLS session over `stream`; what is written and read is
    /// plaintext.
    pub(super) tls: Option<Box<ClientConnection>>,
    /// The TLS handshake is done (and timed).
    pub(super) tls_done: bool,
}

impl Sock {
    pub(super) fn new(stream: TcpStream, tls: Option<Box<ClientConnection>>) -> Self {
        Self {
            stream,
            tls,
            tls_done: false,
        }
    }

    /// Reads plaintext; `Ok(0)` is the end of the stream.
    pub(super) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls.as_deref_mut() {
            Some(tls) => crate::tls::read(tls, &mut self.stream, buf),
            None => self.stream.read(buf),
        }
    }

    /// Whether the TLS handshake has just finished (once).
    pub(super) fn tls_finished(&mut self) -> bool {
        if !self.tls_done && self.tls.as_ref().is_some_and(|tls| !tls.is_handshaking()) {
            self.tls_done = true;
            return true;
        }
        false
    }

    /// Writes `out[*pos..]` as far as the socket takes it (TLS takes all).
    pub(super) fn write(&mut self, out: &mut Vec<u8>, pos: &mut usize) -> io::Result<()> {
        if let Some(tls) = self.tls.as_deref_mut() {
            // rustls takes all of it; its ciphertext goes out as the socket allows.
            if *pos < out.len() {
                crate::tls::write(tls, &mut self.stream, &out[*pos..])?;
            } else {
                crate::tls::flush(tls, &mut self.stream)?;
            }
            out.clear();
            *pos = 0;
            return Ok(());
        }
        while *pos < out.len() {
            match self.stream.write(&out[*pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => *pos += n,
                // The writable event when it drains tells to flush again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        out.clear();
        *pos = 0;
        Ok(())
    }

    /// The non-blocking connect's outcome, on its socket's first readiness
    /// event (a connecting TCP socket raises none until the connect is done).
    /// A connect that failed raises an error event (EPOLLERR: the socket's
    /// error stays set until read), and only then is the error read
    /// (getsockopt SO_ERROR) to tell why. Otherwise it is connected: no
    /// system call to confirm it (getpeername), the first write's result
    /// says if not.
    pub(super) fn connect_error(&mut self, error_event: bool) -> Option<io::Error> {
        if !error_event {
            return None;
        }
        match self.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => None,
        }
    }
}

pub(super) fn open_socket(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    // Non-blocking from the start: no fcntl calls after.
    let socket = RawSocket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        // Spread over source addresses: each has its own ~28k ephemeral ports.
        // The port is picked by connect, not by bind: bind would search the
        // address's whole port space for one free for any destination, for
        // every connection.
        bind_address_no_port(&socket);
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// IP_BIND_ADDRESS_NO_PORT (Linux 4.2): a bind to port 0 leaves the port to
/// connect. Where it is refused, bind picks the port as before.
fn bind_address_no_port(socket: &RawSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `&on`, a live
    // c_int, on a socket this function borrows.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Says once that TLS failed.
pub(super) fn tls_failed(e: &io::Error) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| eprintln!("loadgen: TLS failed: {e}"));
}
