//! The TLS transport of one connection, sans-I/O. rustls (its unbuffered API)
//! runs the handshake; once it is done, rustls hands the traffic secrets over
//! and our own record layer ([`super::records`]) takes the session: records are
//! opened in place where the backend received them, the plaintext (mutable, in
//! that buffer) goes on to the upgrade or the frame decoder through `deliver`,
//! and the outbox's frames are sealed in place in the ciphertext queue
//! ([`Tls::wire`]) that the backend writes. A configuration whose secrets
//! cannot be exported (an application's `ServerConfig` with a suite outside
//! AES-GCM and ChaCha20-Poly1305) stays on rustls's record layer.
//!
//! An idle connection holds only its keys and sequence numbers (and, for TLS
//! 1.3, rustls's key schedule): no plaintext or record buffers. The one buffer
//! of its own, `stash`, exists only while a record is cut by the end of a read;
//! it is completed with just the bytes that record lacks, and the rest of the
//! read is again processed in place.

use std::io::IoSlice;
use std::sync::Arc;

use rustls::CipherSuite;
use rustls::server::{ServerConfig, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};

use super::outbox::{BufferPool, MAX_IOVECS, Outbox};
use super::records::{Fatal, HEADER, Input, RecordLayer, Sealer};
use crate::types::TlsError;

/// Most bytes held for a connection waiting for its handshake to start: a
/// ClientHello (a few hundred bytes; ~1.8 KiB with a post-quantum key share).
pub(crate) const HOLD_MAX: usize = 4 << 10;
/// Largest record body a peer may send (TLS 1.2 allows 2 KiB of expansion over
/// the 16 KiB of plaintext).
const MAX_BODY: usize = (16 << 10) + 2048;
/// Most bytes kept across reads: a handshake message may span records (rustls
/// joins them in the buffer), up to 64 KiB, plus one record.
const MAX_STASH: usize = (64 << 10) + HEADER + MAX_BODY;
/// Most plaintext encrypted per flush, so that a connection's ciphertext queue
/// stays small while its socket is slow (the rest waits in the outbox, where the
/// backpressure limit sees it).
const ENCRYPT_BUDGET: usize = 256 << 10;

/// The answer to a plain HTTP request on a TLS port.
const PLAIN_HTTP_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 42\r\nConnection: close\r\n\r\nThis port speaks TLS: use wss:// or https\n";

/// The peer's side of the TLS session after some input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// Open (or still handshaking): more may come.
    Open,
    /// The peer sent close_notify: nothing more comes, and rustls writes nothing
    /// more either.
    PeerClosed,
}

/// What the TLS layer hands its plaintext to (the worker: the upgrade or the
/// frame decoder of the connection), and where its buffers come from.
pub(crate) trait Upper {
    /// The worker's send buffers (the wire queue's come from there too).
    fn pool(&mut self) -> &mut BufferPool;
    /// Decrypted bytes, in order; `sealer` is our record layer once it has
    /// the session, for frames sent from the callbacks on them.
    fn deliver(&mut self, plain: &mut [u8], sealer: Option<Sealer<'_>>);
}

/// Who runs the session.
enum Session {
    /// Nothing received yet: rustls's connection is made when the handshake
    /// starts, so that a connection waiting for it holds only this pointer.
    Fresh(Arc<ServerConfig>),
    /// rustls: the handshake (and the whole session when its secrets cannot be
    /// exported). Boxed: it is large, and goes once the handshake is done.
    Rustls(Box<UnbufferedServerConnection>),
    /// Our record layer, after the handshake.
    Records(Box<RecordLayer>),
    /// Failed: nothing more is processed or sent.
    Over,
}

/// One connection's TLS state.
pub(crate) struct Tls {
    session: Session,
    /// Ciphertext waiting for the socket: handshake records, encrypted frames,
    /// alerts. What the backend writes for this connection.
    pub wire: Outbox,
    /// A record cut by the end of a read (and, during the handshake, records
    /// rustls has not released yet); empty and unallocated otherwise.
    stash: Vec<u8>,
    /// Nothing received yet: the first byte tells TLS from plain text.
    fresh: bool,
    /// The handshake is complete: application data flows.
    established: bool,
    /// Our close_notify is queued (or can never be sent).
    close_notified: bool,
    /// The configuration lets rustls export the traffic secrets, so our record
    /// layer takes over after the handshake.
    hand_over: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("wire", &self.wire.len())
            .field("stash", &self.stash.len())
            .field("established", &self.established)
            .field("own_records", &matches!(self.session, Session::Records(_)))
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// The state of a connection accepted on a TLS listener.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        let hand_over = config.enable_secret_extraction;
        Self {
            session: Session::Fresh(config),
            wire: Outbox::default(),
            stash: Vec::new(),
            fresh: true,
            established: false,
            close_notified: false,
            hand_over,
        }
    }

    /// Our record layer, once it has the session.
    #[cfg(test)]
    fn records(&mut self) -> Option<&mut RecordLayer> {
        match &mut self.session {
            Session::Records(records) => Some(records),
            _ => None,
        }
    }

    /// Part of a record is waiting for the rest (or, before the handshake
    /// starts, bytes wait in [`Self::hold`]).
    pub fn mid_record(&self) -> bool {
        !self.stash.is_empty()
    }

    /// The handshake runs: rustls has the session, has read from the peer and
    /// is not done. Its state is what [`crate::Config::max_tls_handshakes`]
    /// bounds.
    pub fn handshaking(&self) -> bool {
        !self.fresh && !self.established && matches!(self.session, Session::Rustls(_))
    }

    /// Nothing has been processed yet: the handshake has not started.
    pub fn unstarted(&self) -> bool {
        self.fresh
    }

    /// Keeps bytes that arrived before the handshake may start (the worker
    /// runs as many as it allows), for [`Self::take_held`]. False, keeping
    /// nothing, if they are not the start of a handshake (refused at once
    /// instead) or would take more than [`HOLD_MAX`] (started at once instead:
    /// a waiting connection costs less than a running handshake).
    pub fn hold(&mut self, data: &[u8]) -> bool {
        let first = self.stash.first().or(data.first());
        if first != Some(&super::records::HANDSHAKE) || self.stash.len() + data.len() > HOLD_MAX {
            return false;
        }
        self.stash.extend_from_slice(data);
        true
    }

    /// The bytes [`Self::hold`] kept, to be received now.
    pub fn take_held(&mut self) -> Vec<u8> {
        debug_assert!(self.fresh);
        std::mem::take(&mut self.stash)
    }

    /// Processes ciphertext received from the socket: handshake records are
    /// answered into [`Self::wire`]; each record of application data is
    /// decrypted in place and handed to `up` (during the handshake, rustls's
    /// unbuffered API hands out an immutable slice, copied into `plain`, the
    /// worker's scratch, as the decoder unmasks in place). On an error, the
    /// alert owed to the peer is queued.
    pub fn receive(
        &mut self,
        mut data: &mut [u8],
        plain: &mut Vec<u8>,
        up: &mut impl Upper,
    ) -> Result<Received, TlsError> {
        if data.is_empty() {
            return Ok(Received::Open);
        }
        if std::mem::take(&mut self.fresh) && data[0] != super::records::HANDSHAKE {
            if looks_like_http(data) {
                self.wire.push_copy(up.pool(), PLAIN_HTTP_REFUSAL, b"");
            }
            return Err(TlsError::NotTls);
        }
        if let Session::Fresh(config) = &self.session {
            match UnbufferedServerConnection::new(config.clone()) {
                Ok(conn) => self.session = Session::Rustls(Box::new(conn)),
                Err(e) => {
                    log::error!("ringws: cannot start a TLS connection: {e}");
                    self.session = Session::Over;
                    return Err(TlsError::Handshake);
                }
            }
        }
        while !self.stash.is_empty() {
            let (taken, ready) = top_up(&mut self.stash, data).map_err(|e| self.malformed(e))?;
            data = &mut data[taken..];
            if !ready {
                return Ok(Received::Open);
            }
            let mut stash = std::mem::take(&mut self.stash);
            let (used, received) = self.process(&mut stash, plain, up)?;
            if received == Received::PeerClosed {
                return Ok(received);
            }
            if used < stash.len() {
                stash.drain(..used);
                self.stash = stash;
            }
            // Else the stash is dropped: nothing is kept between records.
        }
        if data.is_empty() {
            return Ok(Received::Open);
        }
        let (used, received) = self.process(data, plain, up)?;
        if received == Received::Open && used < data.len() {
            let rest = &data[used..];
            if rest.len() > MAX_STASH {
                return Err(self.malformed(Malformed));
            }
            // Room for the whole cut record at once.
            let mut stash = Vec::with_capacity(rest.len().max(first_record_len(rest)));
            stash.extend_from_slice(rest);
            self.stash = stash;
            // A complete record that rustls did not take is held for the rest
            // of a handshake message; a lone partial header is checked now.
            walk(&self.stash).map_err(|e| self.malformed(e))?;
        }
        Ok(received)
    }

    /// Runs the session over `buf` until it needs more input: returns the bytes
    /// it is done with (the front of `buf`) and whether the peer closed.
    fn process(
        &mut self,
        buf: &mut [u8],
        plain: &mut Vec<u8>,
        up: &mut impl Upper,
    ) -> Result<(usize, Received), TlsError> {
        let mut used = 0;
        if let Session::Rustls(_) = self.session {
            let (n, received, writable) = self.process_rustls(buf, plain, up)?;
            used = n;
            // The handshake is done and rustls holds nothing back (no complete
            // record left, as when it joins a handshake message across
            // records): our record layer takes over.
            if received == Received::PeerClosed
                || !writable
                || !self.hand_over
                || holds_a_record(&buf[used..])
            {
                return Ok((used, received));
            }
            self.take_over()?;
        }
        let Self { session, wire, .. } = self;
        let Session::Records(records) = session else {
            // Over: nothing more is read.
            return Ok((buf.len(), Received::Open));
        };
        match records.receive(&mut buf[used..], wire, up) {
            Ok((n, Input::Open)) => Ok((used + n, Received::Open)),
            Ok((n, Input::Closed)) => Ok((used + n, Received::PeerClosed)),
            Err(fatal) => Err(self.fail(fatal, up.pool())),
        }
    }

    /// Hands the session from rustls to our record layer.
    fn take_over(&mut self) -> Result<(), TlsError> {
        let Session::Rustls(conn) = std::mem::replace(&mut self.session, Session::Over) else {
            return Ok(());
        };
        if !conn
            .negotiated_cipher_suite()
            .is_some_and(|s| exportable(s.suite()))
        {
            // Not a suite whose keys rustls exports: it keeps the session.
            self.hand_over = false;
            self.session = Session::Rustls(conn);
            return Ok(());
        }
        let records = (*conn)
            .dangerous_into_kernel_connection()
            .map_err(|_| Fatal(None))
            .and_then(|(secrets, schedule)| RecordLayer::new(secrets, schedule));
        match records {
            Ok(records) => {
                self.session = Session::Records(Box::new(records));
                Ok(())
            }
            Err(_) => {
                self.close_notified = true;
                Err(TlsError::Handshake)
            }
        }
    }

    /// Our record layer failed: the alert it owes goes to the wire, and the
    /// session is over.
    fn fail(&mut self, fatal: Fatal, pool: &mut BufferPool) -> TlsError {
        self.close_notified = true;
        if let (Session::Records(records), Fatal(Some(alert))) = (&mut self.session, fatal) {
            records.fatal_alert(alert, &mut self.wire, pool);
        }
        self.session = Session::Over;
        TlsError::Record
    }

    /// Runs rustls over `buf` until it needs more input: returns the bytes it
    /// is done with (the front of `buf`), whether the peer closed, and whether
    /// rustls got to sending application data (the handshake is done).
    fn process_rustls(
        &mut self,
        buf: &mut [u8],
        plain: &mut Vec<u8>,
        up: &mut impl Upper,
    ) -> Result<(usize, Received, bool), TlsError> {
        let mut used = 0;
        loop {
            let Self {
                session,
                wire,
                established,
                ..
            } = self;
            let Session::Rustls(conn) = session else {
                return Ok((used, Received::Open, false));
            };
            let status = conn.process_tls_records(&mut buf[used..]);
            let mut discard = status.discard;
            let mut stop = None;
            let mut writable = false;
            match status.state {
                Err(_) => {
                    let kind = if *established {
                        TlsError::Record
                    } else {
                        TlsError::Handshake
                    };
                    used += discard;
                    self.queue_alert(&mut buf[used..], up.pool());
                    return Err(kind);
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    *established = true;
                    while let Some(record) = traffic.next_record() {
                        let Ok(record) = record else {
                            drop(traffic);
                            used += discard;
                            self.queue_alert(&mut buf[used..], up.pool());
                            return Err(TlsError::Record);
                        };
                        discard += record.discard;
                        plain.clear();
                        plain.extend_from_slice(record.payload);
                        up.deliver(plain, None);
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    seal_into(wire, up.pool(), 4096, |out| encode.encode(out), encode_room)
                        .map_err(|()| TlsError::Handshake)?;
                }
                // The records are in the wire queue, which goes out in order at
                // the end of the turn.
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                Ok(ConnectionState::WriteTraffic(_)) => {
                    *established = true;
                    writable = true;
                    stop = Some(Received::Open);
                }
                Ok(ConnectionState::BlockedHandshake) => stop = Some(Received::Open),
                // close_notify: nothing more comes; we may still send (a close
                // reply, say) until our own close_notify.
                Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                    stop = Some(Received::PeerClosed);
                }
                // 0-RTT is not enabled, so rustls rejects early data; nothing
                // else exists today.
                Ok(_) => stop = Some(Received::Open),
            }
            used += discard;
            if let Some(received) = stop {
                return Ok((used, received, writable));
            }
        }
    }

    /// Encrypts queued plaintext from `plain` into [`Self::wire`] (at most
    /// [`ENCRYPT_BUDGET`] bytes of it per call). False if this connection can
    /// send no more application data (the handshake is not done, or the peer
    /// closed): the plaintext can then never go out.
    pub fn encrypt(&mut self, plain: &mut Outbox, pool: &mut BufferPool) -> Result<bool, TlsError> {
        let Self {
            session,
            wire,
            stash,
            ..
        } = self;
        let conn = match session {
            Session::Rustls(conn) => conn,
            Session::Records(records) => {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let count = plain.io_slices(&mut slices);
                let mut parts: [&[u8]; MAX_IOVECS] = [&[]; MAX_IOVECS];
                let mut total = 0;
                for (part, slice) in parts.iter_mut().zip(&slices[..count]) {
                    *part = slice;
                    total += slice.len();
                }
                let total = total.min(ENCRYPT_BUDGET);
                if total == 0 {
                    return Ok(true);
                }
                if let Err(fatal) = records.seal_data(&parts[..count], total, wire, pool) {
                    return Err(self.fail(fatal, pool));
                }
                plain.consume(pool, total);
                return Ok(true);
            }
            // Nothing was upgraded, so nothing can be queued.
            Session::Fresh(_) | Session::Over => return Ok(false),
        };
        for _ in 0..4 {
            // rustls is handed the input it has not discarded (the stash,
            // usually empty), as its unbuffered API requires of every call.
            let status = conn.process_tls_records(stash);
            if status.discard > 0 {
                return Err(TlsError::Record);
            }
            match status.state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                    let count = plain.io_slices(&mut slices);
                    let mut taken = 0;
                    for slice in &slices[..count] {
                        let chunk = &slice[..slice.len().min(ENCRYPT_BUDGET - taken)];
                        seal_into(
                            wire,
                            pool,
                            RecordLayer::sealed_len(chunk.len()),
                            |out| traffic.encrypt(chunk, out),
                            encrypt_room,
                        )
                        .map_err(|()| TlsError::Record)?;
                        taken += chunk.len();
                        if taken == ENCRYPT_BUDGET {
                            break;
                        }
                    }
                    plain.consume(pool, taken);
                    return Ok(true);
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    seal_into(wire, pool, 4096, |out| encode.encode(out), encode_room)
                        .map_err(|()| TlsError::Record)?;
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                Ok(_) => return Ok(false),
                Err(_) => return Err(TlsError::Record),
            }
        }
        Ok(false)
    }

    /// Queues our close_notify (once). True if it was queued now; false if it
    /// was before, or cannot be (no session yet, or the peer closed).
    pub fn close_notify(&mut self, pool: &mut BufferPool) -> bool {
        if std::mem::replace(&mut self.close_notified, true) || !self.established {
            return false;
        }
        let Self {
            session,
            wire,
            stash,
            ..
        } = self;
        let conn = match session {
            Session::Rustls(conn) => conn,
            Session::Records(records) => return records.close_notify(wire, pool).is_ok(),
            Session::Fresh(_) | Session::Over => return false,
        };
        let status = conn.process_tls_records(stash);
        if status.discard > 0 {
            return false;
        }
        match status.state {
            Ok(ConnectionState::WriteTraffic(mut traffic)) => seal_into(
                wire,
                pool,
                64,
                |out| traffic.queue_close_notify(out),
                encrypt_room,
            )
            .is_ok(),
            _ => false,
        }
    }

    /// After rustls failed on `rest` (the input it has not discarded), the
    /// alert it owes the peer, if any, goes to the wire.
    fn queue_alert(&mut self, rest: &mut [u8], pool: &mut BufferPool) {
        self.close_notified = true;
        let Self { session, wire, .. } = self;
        let Session::Rustls(conn) = session else {
            return;
        };
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = conn.process_tls_records(rest).state
        {
            let _ = seal_into(wire, pool, 4096, |out| encode.encode(out), encode_room);
        }
    }

    /// Bytes no TLS peer sends: the session is over, and rustls is not asked
    /// for anything more (not even close_notify).
    fn malformed(&mut self, _: Malformed) -> TlsError {
        self.close_notified = true;
        self.stash = Vec::new();
        if self.established {
            TlsError::Record
        } else {
            TlsError::Handshake
        }
    }
}

/// A record header no TLS peer sends (a length past the limit).
#[derive(Debug, Clone, Copy)]
struct Malformed;

/// How the bytes of `buf` split into records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Records {
    /// They end on a record boundary.
    Whole,
    /// The last record lacks this many bytes (of its header, or of its body
    /// once the header is complete).
    Partial(usize),
}

fn walk(buf: &[u8]) -> Result<Records, Malformed> {
    let mut pos = 0;
    while pos < buf.len() {
        let rest = buf.len() - pos;
        if rest < HEADER {
            return Ok(Records::Partial(HEADER - rest));
        }
        let body = usize::from(u16::from_be_bytes([buf[pos + 3], buf[pos + 4]]));
        if body > MAX_BODY {
            return Err(Malformed);
        }
        if rest < HEADER + body {
            return Ok(Records::Partial(HEADER + body - rest));
        }
        pos += HEADER + body;
    }
    Ok(Records::Whole)
}

/// Appends to `stash` from `data` until the stash ends on a record boundary
/// with at least one more record: the bytes taken, and whether it got there
/// (false: `data` ran out first).
fn top_up(stash: &mut Vec<u8>, data: &[u8]) -> Result<(usize, bool), Malformed> {
    let mut taken = 0;
    loop {
        let missing = match walk(stash)? {
            Records::Whole if taken > 0 => return Ok((taken, true)),
            // Every record of the stash is complete but rustls wants more (a
            // handshake message spanning records): take the next record.
            Records::Whole => HEADER,
            Records::Partial(missing) => missing,
        };
        let take = missing.min(data.len() - taken);
        stash.extend_from_slice(&data[taken..taken + take]);
        taken += take;
        if stash.len() > MAX_STASH {
            return Err(Malformed);
        }
        if take < missing {
            return Ok((taken, false));
        }
    }
}

/// The length of the record `buf` starts with, header included, once its
/// header is there (0 before).
fn first_record_len(buf: &[u8]) -> usize {
    match buf {
        [_, _, _, a, b, ..] => HEADER + usize::from(u16::from_be_bytes([*a, *b])).min(MAX_BODY),
        _ => 0,
    }
}

/// Whether `buf` holds at least one complete record.
fn holds_a_record(buf: &[u8]) -> bool {
    buf.len() >= HEADER && buf.len() >= HEADER + usize::from(u16::from_be_bytes([buf[3], buf[4]]))
}

/// The suites whose traffic keys rustls exports (the AEADs of
/// `rustls::ConnectionTrafficSecrets`).
fn exportable(suite: CipherSuite) -> bool {
    matches!(
        suite,
        CipherSuite::TLS13_AES_128_GCM_SHA256
            | CipherSuite::TLS13_AES_256_GCM_SHA384
            | CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
            | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
    )
}

/// Lets rustls write records into the wire queue, `room` bytes first, growing
/// it once if rustls asks for more (`required` reads how much from its error).
fn seal_into<E>(
    wire: &mut Outbox,
    pool: &mut BufferPool,
    mut room: usize,
    mut seal: impl FnMut(&mut [u8]) -> Result<usize, E>,
    required: fn(&E) -> Option<usize>,
) -> Result<(), ()> {
    for _ in 0..2 {
        match wire.fill_with(pool, room, &mut seal) {
            Ok(_) => return Ok(()),
            Err(e) => room = required(&e).ok_or(())?,
        }
    }
    Err(())
}

fn encode_room(error: &EncodeError) -> Option<usize> {
    match error {
        EncodeError::InsufficientSize(size) => Some(size.required_size),
        _ => None,
    }
}

fn encrypt_room(error: &EncryptError) -> Option<usize> {
    match error {
        EncryptError::InsufficientSize(size) => Some(size.required_size),
        _ => None,
    }
}

/// Whether `data` starts like an HTTP request line (`GET /`, `POST /`, ...).
fn looks_like_http(data: &[u8]) -> bool {
    let method = data.iter().take_while(|b| b.is_ascii_uppercase()).count();
    method > 0 && data.get(method) == Some(&b' ')
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
