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
use std::ops::Range;
use std::sync::Arc;

use rustls::CipherSuite;
use rustls::server::{ServerConfig, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};

use super::framing::{
    MAX_STASH, compact_handshake, first_record_len, next_limit, oversized, starts_like_a_handshake,
};
use super::records::{Fatal, HEADER, Input, RecordLayer, alert};

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod adapter;
mod carry;
mod reader;

use crate::transport::outbox::{BufferPool, MAX_IOVECS, Outbox};
use crate::types::TlsError;
pub(crate) use carry::NotNow;
pub(crate) use reader::{Reader, Step};

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
    /// The front of `stash` rustls has seen and not released: it joins a
    /// handshake message cut across records in place, so those bytes are no
    /// longer records; the records after them are read from the wire.
    fed: u32,
    /// Nothing received yet: the first byte tells TLS from plain text.
    fresh: bool,
    /// rustls has written handshake records: from then on only it may write
    /// an alert (TLS 1.3 encrypts them after the ServerHello).
    spoke: bool,
    /// The handshake is complete: application data flows.
    established: bool,
    /// Our close_notify is queued (or can never be sent).
    close_notified: bool,
    /// The configuration lets rustls export the traffic secrets, so our record
    /// layer takes over after the handshake.
    hand_over: bool,
    /// The client chose HTTP/2 by ALPN (`h2`): the plaintext is an HTTP/2
    /// connection (known once the handshake is over).
    h2: bool,
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
            fed: 0,
            fresh: true,
            spoke: false,
            established: false,
            close_notified: false,
            hand_over,
            h2: false,
        }
    }

    /// The client chose HTTP/2 by ALPN (known once the handshake is over and
    /// our record layer has the session).
    pub fn h2(&self) -> bool {
        self.h2
    }

    /// Our record layer, once it has the session.
    #[cfg(test)]
    pub fn records(&mut self) -> Option<&mut RecordLayer> {
        match &mut self.session {
            Session::Records(records) => Some(records),
            _ => None,
        }
    }

    /// The timer sweep: the record layer's expanded keys go if they were not
    /// used since the last sweep.
    pub fn release_idle(&mut self) {
        if let Session::Records(records) = &mut self.session {
            records.release_idle();
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

    /// A TLS 1.2 session is near its key's record limit: the connection should
    /// close (1001) while the records kept for that remain (TLS 1.3 moves to a
    /// new key instead).
    pub fn exhausted(&self) -> bool {
        matches!(&self.session, Session::Records(records) if records.exhausted())
    }

    /// The peer asked for a KeyUpdate that waits for the wire to empty: a
    /// flush with nothing else to send still calls [`Self::encrypt`].
    pub fn owes_key_update(&self) -> bool {
        matches!(&self.session, Session::Records(records) if records.owes_key_update())
    }

    /// Nothing has been processed yet: the handshake has not started.
    pub fn unstarted(&self) -> bool {
        self.fresh
    }

    /// Keeps bytes that arrived before the handshake may start (the worker
    /// runs as many as it allows), for [`Self::take_held`]. False, keeping
    /// nothing new, if they are not handshake records (refused when received
    /// instead) or their messages would take more than [`super::framing::HOLD_MAX`] (started
    /// at once instead: a waiting connection costs less than a running
    /// handshake).
    ///
    /// What is held is compacted as it comes: the payloads of whole records
    /// joined into one record (a handshake message may be cut into records of
    /// any size, down to one byte: RFC 8446 §5.1), so a ClientHello sent in
    /// tiny records costs what it says, not six times more, and waits its turn
    /// like any other.
    pub fn hold(&mut self, data: &[u8]) -> bool {
        let mut held = Vec::with_capacity(self.stash.len() + data.len());
        held.extend_from_slice(&self.stash);
        held.extend_from_slice(data);
        match compact_handshake(&held) {
            Some(compacted) => {
                self.stash = compacted;
                true
            }
            None => false,
        }
    }

    /// The bytes [`Self::hold`] kept, to be received now.
    pub fn take_held(&mut self) -> Vec<u8> {
        debug_assert!(self.fresh);
        std::mem::take(&mut self.stash)
    }

    /// Checks the first bytes of a connection and starts rustls.
    fn start(&mut self, data: &[u8], pool: &mut BufferPool) -> Result<(), TlsError> {
        if std::mem::take(&mut self.fresh) && !starts_like_a_handshake(data) {
            if looks_like_http(data) {
                self.wire.push_copy(pool, PLAIN_HTTP_REFUSAL, b"");
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
        Ok(())
    }

    /// Runs rustls over a segment (`buf`, whose first `fed` bytes it has seen)
    /// and hands the session to our record layer when the handshake is done:
    /// the bytes rustls is done with, and whether the peer closed. rustls's
    /// plaintext is appended to `scratch`, its ranges to `runs`. Sets
    /// [`Self::fed`] for what rustls keeps.
    fn begin_segment(
        &mut self,
        buf: &mut [u8],
        fed: usize,
        scratch: &mut Vec<u8>,
        runs: &mut Vec<Range<usize>>,
        pool: &mut BufferPool,
    ) -> Result<(usize, Received), TlsError> {
        self.fed = 0;
        let Session::Rustls(_) = self.session else {
            return Ok((0, Received::Open));
        };
        let (used, limit, received, writable) =
            self.process_rustls(buf, fed, scratch, runs, pool)?;
        // rustls keeps what it has not released; the rest is records.
        self.fed = u32::try_from(limit - used).unwrap_or(u32::MAX);
        // The handshake is done and rustls holds nothing back (as when it
        // joins a handshake message across records): our record layer takes
        // over, from the record after the client's Finished.
        if received == Received::PeerClosed || !writable || !self.hand_over || limit > used {
            return Ok((used, received));
        }
        self.take_over(pool)?;
        if let Session::Rustls(_) = self.session {
            // rustls keeps the session (a suite whose keys it does not
            // export): it reads the rest as well.
            let rest = &mut buf[used..];
            let (n, limit, received, _) = self.process_rustls(rest, 0, scratch, runs, pool)?;
            self.fed = u32::try_from(limit - n).unwrap_or(u32::MAX);
            return Ok((used + n, received));
        }
        Ok((used, received))
    }

    /// Our record layer over the rest of a segment: the bytes it is done with
    /// and whether the peer closed; the data it opened is in `runs`. On an
    /// error `runs` holds what was opened before it.
    fn records_segment(
        &mut self,
        buf: &mut [u8],
        runs: &mut Vec<Range<usize>>,
        pool: &mut BufferPool,
    ) -> Result<(usize, Received), TlsError> {
        let Self { session, wire, .. } = self;
        let records = match session {
            Session::Records(records) => records,
            // Still rustls's: it has taken what it can.
            Session::Fresh(_) | Session::Rustls(_) => return Ok((0, Received::Open)),
            // Over: nothing more is read.
            Session::Over => return Ok((buf.len(), Received::Open)),
        };
        match records.receive(buf, wire, pool, runs) {
            Ok((n, Input::Open)) => Ok((n, Received::Open)),
            Ok((n, Input::Closed)) => Ok((n, Received::PeerClosed)),
            Err(fatal) => Err(self.fail(fatal, pool)),
        }
    }

    /// After a segment: what the session did not take is kept for the next
    /// read (a cut record, or records rustls holds).
    fn end_segment(
        &mut self,
        segment: Option<Vec<u8>>,
        data: &[u8],
        used: usize,
        pool: &mut BufferPool,
    ) -> Result<(), TlsError> {
        match segment {
            Some(mut stash) => {
                if used < stash.len() {
                    stash.drain(..used);
                    self.stash = stash;
                    if oversized(&self.stash[self.fed as usize..]) {
                        // The session saw the header and did not refuse it.
                        return Err(self.malformed(alert::RECORD_OVERFLOW, pool));
                    }
                } else {
                    // Nothing is kept between records.
                    self.fed = 0;
                }
            }
            None if used < data.len() => {
                let rest = &data[used..];
                if rest.len() > MAX_STASH {
                    return Err(self.malformed(alert::DECODE_ERROR, pool));
                }
                let fed = self.fed as usize;
                if oversized(&rest[fed..]) {
                    return Err(self.malformed(alert::RECORD_OVERFLOW, pool));
                }
                // Room for the whole cut record at once.
                let cut = first_record_len(&rest[fed..]);
                let mut stash = Vec::with_capacity(rest.len().max(fed + cut));
                stash.extend_from_slice(rest);
                self.stash = stash;
            }
            None => self.fed = 0,
        }
        Ok(())
    }

    /// Hands the session from rustls to our record layer.
    fn take_over(&mut self, pool: &mut BufferPool) -> Result<(), TlsError> {
        if let Session::Rustls(conn) = &mut self.session {
            // Whatever rustls still owes the wire goes first (its
            // NewSessionTickets are out by now; this is belt and braces for
            // any record it queued without asking).
            if let Ok(ConnectionState::EncodeTlsData(mut encode)) =
                conn.process_tls_records(&mut []).state
            {
                seal_into(
                    &mut self.wire,
                    pool,
                    4096,
                    |out| encode.encode(out),
                    encode_room,
                )
                .map_err(|()| TlsError::Handshake)?;
            }
        }
        let Session::Rustls(conn) = std::mem::replace(&mut self.session, Session::Over) else {
            return Ok(());
        };
        self.h2 = conn.alpn_protocol() == Some(b"h2");
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
    /// is done with (the front of `buf`), how far it has read (it keeps the
    /// bytes between), whether the peer closed, and whether rustls got to
    /// sending application data (the handshake is done).
    ///
    /// While our record layer is to take the session over, rustls is given
    /// one whole record more at a time: it would otherwise go on past the
    /// client's Finished and act on what follows itself (a KeyUpdate it
    /// answers into a queue that the hand-over drops, and then every later
    /// record of ours fails at the client). `buf[..fed]` is rustls's already.
    fn process_rustls(
        &mut self,
        buf: &mut [u8],
        fed: usize,
        scratch: &mut Vec<u8>,
        runs: &mut Vec<Range<usize>>,
        pool: &mut BufferPool,
    ) -> Result<(usize, usize, Received, bool), TlsError> {
        let mut used = 0;
        let one_at_a_time = self.hand_over && !self.established;
        let mut limit = next_limit(buf, fed, one_at_a_time);
        loop {
            let Self {
                session,
                wire,
                established,
                spoke,
                ..
            } = self;
            let Session::Rustls(conn) = session else {
                return Ok((used, limit, Received::Open, false));
            };
            let status = conn.process_tls_records(&mut buf[used..limit]);
            let mut discard = status.discard;
            let mut stop = None;
            let mut writable = false;
            match status.state {
                Err(error) => {
                    let kind = if *established {
                        TlsError::Record
                    } else {
                        TlsError::Handshake
                    };
                    used += discard;
                    self.queue_alert(&mut buf[used..limit], &error, pool);
                    return Err(kind);
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    *established = true;
                    while let Some(record) = traffic.next_record() {
                        let record = match record {
                            Ok(record) => record,
                            Err(error) => {
                                drop(traffic);
                                used += discard;
                                self.queue_alert(&mut buf[used..limit], &error, pool);
                                return Err(TlsError::Record);
                            }
                        };
                        discard += record.discard;
                        let start = scratch.len();
                        scratch.extend_from_slice(record.payload);
                        runs.push(start..scratch.len());
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    *spoke = true;
                    seal_into(wire, pool, 4096, |out| encode.encode(out), encode_room)
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
                Ok(ConnectionState::BlockedHandshake) => {
                    let more = next_limit(buf, limit, one_at_a_time);
                    if more > limit {
                        // The next record, for the rest of a message.
                        limit = more;
                    } else if oversized(&buf[limit..]) {
                        // Shown rustls, which refuses it with its alert.
                        limit = buf.len().min(limit + HEADER);
                    } else {
                        stop = Some(Received::Open);
                    }
                }
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
                return Ok((used, limit, received, writable));
            }
        }
    }

    /// Encrypts queued plaintext from `plain` into [`Self::wire`] (at most
    /// [`ENCRYPT_BUDGET`] bytes of it per call). False if this connection can
    /// send no more application data (the handshake is not done, or the peer
    /// closed): the plaintext can then never go out.
    pub fn encrypt(&mut self, plain: &mut Outbox, pool: &mut BufferPool) -> Result<bool, TlsError> {
        if self.close_notified {
            // Nothing goes out after our close_notify (or an alert).
            return Ok(false);
        }
        let Self {
            session,
            wire,
            stash,
            fed,
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
                let sealed = if total == 0 {
                    records.answer_key_update(wire, pool)
                } else {
                    records.seal_data(&parts[..count], total, wire, pool)
                };
                if let Err(fatal) = sealed {
                    return Err(self.fail(fatal, pool));
                }
                plain.consume(pool, total);
                return Ok(true);
            }
            // Nothing was upgraded, so nothing can be queued.
            Session::Fresh(_) | Session::Over => return Ok(false),
        };
        for _ in 0..4 {
            // rustls is handed the input it has not discarded (the front of
            // the stash, usually empty), as its unbuffered API requires of
            // every call.
            let status = conn.process_tls_records(&mut stash[..*fed as usize]);
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
            fed,
            ..
        } = self;
        let conn = match session {
            Session::Rustls(conn) => conn,
            Session::Records(records) => return records.close_notify(wire, pool).is_ok(),
            Session::Fresh(_) | Session::Over => return false,
        };
        let status = conn.process_tls_records(&mut stash[..*fed as usize]);
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
    fn queue_alert(&mut self, rest: &mut [u8], error: &rustls::Error, pool: &mut BufferPool) {
        self.close_notified = true;
        let Self { session, wire, .. } = self;
        let Session::Rustls(conn) = session else {
            return;
        };
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = conn.process_tls_records(rest).state
        {
            let _ = seal_into(wire, pool, 4096, |out| encode.encode(out), encode_room);
            return;
        }
        // Some failures rustls leaves without an alert (a handshake message
        // too long for it, say): before it has written anything, the alert
        // goes in the clear, so that the peer learns why rather than waiting.
        if !self.spoke {
            let description = match error {
                rustls::Error::InvalidMessage(_) => alert::DECODE_ERROR,
                _ => alert::UNEXPECTED_MESSAGE,
            };
            plain_alert(wire, description, pool);
        }
    }

    /// Bytes no TLS peer sends (a record longer than any may be, a
    /// handshake message that never ends): the session is over, with the
    /// alert `description` where one can still be sent: by our record layer,
    /// or in the clear while rustls has written nothing (after its ServerHello
    /// only rustls could, and it is not asked for anything more).
    fn malformed(&mut self, description: u8, pool: &mut BufferPool) -> TlsError {
        let already = std::mem::replace(&mut self.close_notified, true);
        self.stash = Vec::new();
        self.fed = 0;
        if !already {
            match &mut self.session {
                Session::Records(records) => records.fatal_alert(description, &mut self.wire, pool),
                Session::Fresh(_) | Session::Rustls(_) if !self.spoke => {
                    plain_alert(&mut self.wire, description, pool);
                }
                _ => {}
            }
        }
        self.session = Session::Over;
        if self.established {
            TlsError::Record
        } else {
            TlsError::Handshake
        }
    }
}

/// Queues a fatal alert in the clear, as only a handshake that has not sent
/// its first flight may.
fn plain_alert(wire: &mut Outbox, description: u8, pool: &mut BufferPool) {
    let record = [super::records::ALERT, 3, 3, 0, 2, 2, description];
    wire.push_copy(pool, &record, b"");
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
mod tests;

#[cfg(test)]
mod conformance_tests;
