//! The TLS record layer of an established connection, after rustls's handshake:
//! rustls hands over the traffic keys (`dangerous_into_kernel_connection`) and
//! keeps only its key schedule ([`KernelConnection`], for TLS 1.3 KeyUpdate);
//! records are opened in place where the backend received them (the plaintext
//! is mutable there, so the frame decoder unmasks it in place too) and sealed
//! in place in the send buffers (header reserved, tag appended).
//!
//! TLS 1.3 (RFC 8446 §5: inner content type, nonce = iv ⊕ sequence number) and
//! TLS 1.2 (RFC 5246 §6.2.3.3 and RFC 5288: AES-GCM with an explicit nonce;
//! RFC 7905: ChaCha20-Poly1305 with the 1.3-style nonce), the AEADs rustls can
//! export: AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305.
//!
//! This is the seam kTLS would use: the same secrets and sequence numbers go to
//! `setsockopt(SOL_TLS, TLS_RX/TLS_TX)` instead of into [`Direction`].

use std::ops::Range;

use ring::aead::{self, Aad, LessSafeKey, NONCE_LEN, Nonce};
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{ExtractedSecrets, ProtocolVersion, SupportedCipherSuite};

use crate::transport::outbox::{BufferPool, Outbox};

mod carry;
mod direction;
pub(crate) use carry::{CarriedDirection, CarriedRecords};
use direction::{Direction, KeyBytes};

/// A record header: content type, legacy version, length.
pub(crate) const HEADER: usize = 5;
/// Largest plaintext of one record.
pub(crate) const MAX_FRAGMENT: usize = 1 << 14;
/// Ciphertext expansion of one record at most: header, explicit nonce (TLS 1.2
/// AES-GCM), inner content type (TLS 1.3) and tag.
pub(crate) const MAX_OVERHEAD: usize = HEADER + EXPLICIT_NONCE + 1 + TAG;
const TAG: usize = 16;
const EXPLICIT_NONCE: usize = 8;

/// Content type of an alert record.
pub(crate) const ALERT: u8 = 21;
/// Content type of a handshake record (also the first byte a TLS client sends).
pub(crate) const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;

const CLIENT_HELLO: u8 = 1;
const KEY_UPDATE: u8 = 24;

/// Alert descriptions (RFC 8446 §6).
pub(crate) mod alert {
    pub const CLOSE_NOTIFY: u8 = 0;
    pub const UNEXPECTED_MESSAGE: u8 = 10;
    pub const BAD_RECORD_MAC: u8 = 20;
    pub const RECORD_OVERFLOW: u8 = 22;
    pub const ILLEGAL_PARAMETER: u8 = 47;
    pub const PROTOCOL_VERSION: u8 = 70;
    pub const DECODE_ERROR: u8 = 50;
    pub const INTERNAL_ERROR: u8 = 80;
    pub const USER_CANCELED: u8 = 90;
    pub const NO_RENEGOTIATION: u8 = 100;
}
const WARNING: u8 = 1;
const FATAL: u8 = 2;

/// As rustls allows: warning alerts, KeyUpdates between two records of data,
/// and renegotiation attempts (TLS 1.2, refused each time) before the
/// connection is failed.
const WARNINGS_ALLOWED: u8 = 4;
const KEY_UPDATES_ALLOWED: u8 = 32;
/// Empty records of data in a row, as OpenSSL allows: past it a peer is
/// spending our CPU on nothing (an empty record is no data, so it refills no
/// budget either).
const EMPTY_RECORDS_ALLOWED: u8 = 32;

/// Records of data up to this size are joined to the plaintext before them
/// (moved down in the buffer) and delivered with it.
const MERGE_MAX: usize = 4096;
const RENEGOTIATIONS_ALLOWED: u8 = 1;
/// Records before a TLS 1.2 key's limit at which the connection is asked to
/// close (1001): what is queued then (bounded by the backpressure limit, far
/// below a gibibyte), the close frame and close_notify still go out under the
/// key. A sliver of AES-GCM's 2^24.5 records.
pub(crate) const CLOSE_RESERVE: u64 = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Tls12,
    Tls13,
}

/// The session failed: the alert owed to the peer (none after its own fatal
/// alert, or when nothing can be sealed any more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fatal(pub Option<u8>);

impl Fatal {
    fn alert(description: u8) -> Self {
        Self(Some(description))
    }
}

/// The peer's side after some input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// More may come.
    Open,
    /// close_notify: nothing more is read.
    Closed,
}

/// Where the next traffic keys of a KeyUpdate come from (TLS 1.3).
// Boxed whole where it is kept (`RecordLayer::schedule`): the layer pays a
// pointer either way.
#[allow(clippy::large_enum_variant)]
enum Schedule {
    /// rustls's key schedule.
    Rustls(KernelConnection<ServerConnectionData>),
    /// A session handed over by another process: the keys after one
    /// KeyUpdate each way, derived there (a second one ends the session).
    Carried {
        rx: Option<Direction>,
        tx: Option<Direction>,
    },
}

/// The additional data of a TLS 1.2 record: sequence number, type, version,
/// plaintext length.
fn tls12_aad(seq: u64, typ: u8, len: usize) -> [u8; 13] {
    let mut aad = [0; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = typ;
    aad[9..11].copy_from_slice(&[3, 3]);
    // `len` is at most a record's length, which fits 16 bits.
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}

/// The record layer of one established connection.
pub(crate) struct RecordLayer {
    version: Version,
    rx: Direction,
    tx: Direction,
    /// TLS 1.3: rustls's key schedule, which derives the next traffic keys of a
    /// KeyUpdate (`None` on TLS 1.2, which has no KeyUpdate).
    schedule: Option<Box<Schedule>>,
    /// RecordLayer sealed under one key before it is replaced (TLS 1.3) or the
    /// session closed (TLS 1.2): the suite's confidentiality limit.
    tx_limit: u64,
    warnings_allowed: u8,
    key_updates_allowed: u8,
    empty_records_allowed: u8,
    renegotiations_allowed: u8,
    /// The peer asked for our KeyUpdate (update_requested): it goes out before
    /// our next record of data, once however many requests came (RFC 8446
    /// §4.6.3), so a peer that asks and never reads cannot grow the wire.
    key_update_owed: bool,
    /// TLS 1.2 came within [`CLOSE_RESERVE`] records of its key's limit.
    exhausted: bool,
    /// The peer's close_notify came: nothing after it is read.
    peer_closed: bool,
    /// Our close_notify is sealed: nothing more is.
    closed: bool,
}

impl std::fmt::Debug for RecordLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordLayer")
            .field("version", &self.version)
            .field("rx_seq", &self.rx.seq)
            .field("tx_seq", &self.tx.seq)
            .finish_non_exhaustive()
    }
}

impl RecordLayer {
    /// The record layer for the secrets rustls exported at the end of the
    /// handshake.
    pub fn new(
        secrets: ExtractedSecrets,
        schedule: KernelConnection<ServerConnectionData>,
    ) -> Result<Self, Fatal> {
        let version = match schedule.protocol_version() {
            ProtocolVersion::TLSv1_3 => Version::Tls13,
            ProtocolVersion::TLSv1_2 => Version::Tls12,
            _ => return Err(Fatal::alert(alert::INTERNAL_ERROR)),
        };
        let tx_limit = match schedule.negotiated_cipher_suite() {
            SupportedCipherSuite::Tls13(suite) => suite.common.confidentiality_limit,
            SupportedCipherSuite::Tls12(suite) => suite.common.confidentiality_limit,
        };
        let ExtractedSecrets {
            tx: (tx_seq, tx),
            rx: (rx_seq, rx),
        } = secrets;
        Ok(Self {
            version,
            rx: Direction::new(version, rx, rx_seq)?,
            tx: Direction::new(version, tx, tx_seq)?,
            schedule: (version == Version::Tls13).then(|| Box::new(Schedule::Rustls(schedule))),
            tx_limit,
            warnings_allowed: WARNINGS_ALLOWED,
            key_updates_allowed: KEY_UPDATES_ALLOWED,
            empty_records_allowed: EMPTY_RECORDS_ALLOWED,
            renegotiations_allowed: RENEGOTIATIONS_ALLOWED,
            key_update_owed: false,
            exhausted: false,
            peer_closed: false,
            closed: false,
        })
    }

    /// The next sequence numbers, received and sent.
    #[cfg(test)]
    pub fn seqs(&self) -> (u64, u64) {
        (self.rx.seq, self.tx.seq)
    }

    /// Lowers the confidentiality limit, to reach it in a test.
    #[cfg(test)]
    pub fn set_tx_limit(&mut self, limit: u64) {
        self.tx_limit = limit;
    }

    /// Moves the receive sequence number, to reach its end in a test.
    #[cfg(test)]
    pub fn set_rx_seq(&mut self, seq: u64) {
        self.rx.seq = seq;
    }

    /// Opens the whole records at the front of `buf` in place and answers
    /// control records into `wire`; the plaintext of the records of data is
    /// left where it lies (mutable there) and its ranges appended to `runs`,
    /// in order, for the caller to hand on (with [`Self::sealer`]). Returns
    /// the bytes of the whole records processed (what follows is a cut record)
    /// and whether the peer closed (then nothing after its close_notify is
    /// read). On an error, `runs` still holds the data opened before it, which
    /// came first.
    pub fn receive(
        &mut self,
        buf: &mut [u8],
        wire: &mut Outbox,
        pool: &mut BufferPool,
        runs: &mut Vec<Range<usize>>,
    ) -> Result<(usize, Input), Fatal> {
        if self.peer_closed {
            return Ok((buf.len(), Input::Closed));
        }
        let mut run = None;
        let result = self.open_records(buf, wire, pool, runs, &mut run);
        runs.extend(run);
        if result.is_ok() && wire.is_empty() {
            // Nothing waits for the socket: the KeyUpdate owed goes now.
            self.answer_key_update(wire, pool)?;
        }
        result
    }

    /// The peer asked for a KeyUpdate that is not sent yet.
    pub fn owes_key_update(&self) -> bool {
        self.key_update_owed
    }

    /// Whether each direction's key is expanded now: (receiving, sending).
    #[cfg(test)]
    pub fn keys_expanded(&self) -> (bool, bool) {
        (self.rx.expanded(), self.tx.expanded())
    }

    /// The timer sweep: each direction's expanded key goes if it was not
    /// used since the last sweep.
    pub fn release_idle(&mut self) {
        self.rx.release_idle();
        self.tx.release_idle();
    }

    /// TLS 1.2 is within [`CLOSE_RESERVE`] records of its key's limit: the
    /// connection should close (1001) while it still can say so.
    pub fn exhausted(&self) -> bool {
        self.exhausted
    }

    /// Sends the KeyUpdate owed, if any.
    pub fn answer_key_update(
        &mut self,
        wire: &mut Outbox,
        pool: &mut BufferPool,
    ) -> Result<(), Fatal> {
        if std::mem::take(&mut self.key_update_owed) && !self.closed {
            self.update_tx(wire, pool)?;
        }
        Ok(())
    }

    /// The loop of [`Self::receive`]. Consecutive records of data are
    /// delivered as one run of plaintext where the later ones are small (the
    /// tail of a frame cut by the client's 16 KiB records, or small messages):
    /// their plaintext is moved down over the tag and header between, so that
    /// the decoder gets the frame whole, in place, rather than gathering it in
    /// its own buffer. `run` is what is opened and not yet appended to `runs`.
    fn open_records(
        &mut self,
        buf: &mut [u8],
        wire: &mut Outbox,
        pool: &mut BufferPool,
        runs: &mut Vec<Range<usize>>,
        run: &mut Option<Range<usize>>,
    ) -> Result<(usize, Input), Fatal> {
        let mut pos = 0;
        // Taken at the first whole record, anew after a KeyUpdate; kept for
        // the next read at the end.
        let mut key = None;
        while buf.len() - pos >= HEADER {
            let header = <[u8; HEADER]>::try_from(&buf[pos..pos + HEADER])
                .map_err(|_| Fatal::alert(alert::INTERNAL_ERROR))?;
            let body = usize::from(u16::from_be_bytes([header[3], header[4]]));
            if body > self.max_body() {
                return Err(Fatal::alert(alert::RECORD_OVERFLOW));
            }
            // TLS 1.3 ignores the legacy version but for its major number;
            // TLS 1.2 records carry the version negotiated (RFC 5246 §6.2.1).
            if header[1] != 3 {
                return Err(Fatal::alert(alert::DECODE_ERROR));
            }
            if self.version == Version::Tls12 && header[2] != 3 {
                return Err(Fatal::alert(alert::PROTOCOL_VERSION));
            }
            let end = pos + HEADER + body;
            if end > buf.len() {
                break;
            }
            let rx_key = match &mut key {
                Some(rx_key) => rx_key,
                None => key.insert(self.rx.take_key()?),
            };
            let (typ, plain) = self.open(rx_key, header, &mut buf[pos + HEADER..end])?;
            let plain = pos + HEADER + plain.start..pos + HEADER + plain.end;
            pos = end;
            if typ == APPLICATION_DATA {
                if plain.is_empty() {
                    self.empty_records_allowed = self
                        .empty_records_allowed
                        .checked_sub(1)
                        .ok_or(Fatal::alert(alert::UNEXPECTED_MESSAGE))?;
                    continue;
                }
                self.key_updates_allowed = KEY_UPDATES_ALLOWED;
                self.empty_records_allowed = EMPTY_RECORDS_ALLOWED;
                match run {
                    Some(open) if plain.len() <= MERGE_MAX => {
                        let len = plain.len();
                        buf.copy_within(plain, open.end);
                        open.end += len;
                    }
                    _ => {
                        runs.extend(run.replace(plain));
                    }
                }
                continue;
            }
            // A control record ends the run before it (runs are handed on in
            // order once the read is done; the data came first).
            runs.extend(run.take());
            // RFC 8446 §5.1 (and RFC 5246 §6.2.1): no zero-length fragments
            // of any other type.
            if plain.is_empty() {
                return Err(Fatal::alert(alert::UNEXPECTED_MESSAGE));
            }
            match typ {
                ALERT => {
                    if self.alert(&buf[plain])? == Input::Closed {
                        self.peer_closed = true;
                        return Ok((buf.len(), Input::Closed));
                    }
                }
                HANDSHAKE => {
                    self.handshake(&buf[plain], wire, pool)?;
                    // The rx key may have changed.
                    key = None;
                }
                _ => return Err(Fatal::alert(alert::UNEXPECTED_MESSAGE)),
            }
        }
        if let Some(key) = key {
            self.rx.keep_key(key);
        }
        Ok((pos, Input::Open))
    }

    fn max_body(&self) -> usize {
        match self.version {
            Version::Tls13 => MAX_FRAGMENT + 256,
            Version::Tls12 => MAX_FRAGMENT + 2048,
        }
    }

    /// Decrypts one record's body in place: its content type and where its
    /// plaintext is in `body`.
    fn open(
        &mut self,
        key: &LessSafeKey,
        header: [u8; HEADER],
        body: &mut [u8],
    ) -> Result<(u8, std::ops::Range<usize>), Fatal> {
        let bad_mac = Fatal::alert(alert::BAD_RECORD_MAC);
        let (typ, plain) = match self.version {
            Version::Tls13 => {
                // After the handshake every record is application data on the
                // outside (a ChangeCipherSpec is no longer allowed either).
                if header[0] != APPLICATION_DATA {
                    return Err(Fatal::alert(alert::UNEXPECTED_MESSAGE));
                }
                if body.len() < TAG + 1 {
                    return Err(bad_mac);
                }
                let nonce = Nonce::assume_unique_for_key(self.rx.nonce());
                let plain = key
                    .open_in_place(nonce, Aad::from(header), body)
                    .map_err(|_| bad_mac)?;
                self.rx.next_seq()?;
                // Content, type and padding: at most 2^14 + 1 bytes.
                if plain.len() > MAX_FRAGMENT + 1 {
                    return Err(Fatal::alert(alert::RECORD_OVERFLOW));
                }
                // The content type is the last byte that is not padding.
                let Some(end) = plain.iter().rposition(|&b| b != 0) else {
                    return Err(Fatal::alert(alert::UNEXPECTED_MESSAGE));
                };
                let typ = plain[end];
                // ring opens in place from the start of `body`.
                (typ, 0..end)
            }
            Version::Tls12 => {
                let typ = header[0];
                // A ChangeCipherSpec, too, is over with the handshake.
                if !matches!(typ, ALERT | HANDSHAKE | APPLICATION_DATA) {
                    return Err(Fatal::alert(alert::UNEXPECTED_MESSAGE));
                }
                let explicit = if self.rx.explicit_nonce {
                    EXPLICIT_NONCE
                } else {
                    0
                };
                if body.len() < explicit + TAG {
                    return Err(bad_mac);
                }
                let seq = self.rx.seq;
                let nonce = if self.rx.explicit_nonce {
                    let mut nonce = self.rx.iv;
                    nonce[4..].copy_from_slice(&body[..EXPLICIT_NONCE]);
                    nonce
                } else {
                    self.rx.nonce()
                };
                let aad = tls12_aad(seq, typ, body.len() - explicit - TAG);
                let plain = key
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        &mut body[explicit..],
                    )
                    .map_err(|_| bad_mac)?;
                self.rx.next_seq()?;
                (typ, explicit..explicit + plain.len())
            }
        };
        if plain.len() > MAX_FRAGMENT {
            return Err(Fatal::alert(alert::RECORD_OVERFLOW));
        }
        Ok((typ, plain))
    }

    /// An alert from the peer.
    fn alert(&mut self, plain: &[u8]) -> Result<Input, Fatal> {
        // One alert per record, whole (RFC 8446 §5.1); a record of another
        // length holds no alert we can decode (§6: decode_error).
        let &[level, description] = plain else {
            return Err(Fatal::alert(alert::DECODE_ERROR));
        };
        if !matches!(level, WARNING | FATAL) {
            return Err(Fatal::alert(alert::ILLEGAL_PARAMETER));
        }
        if description == alert::CLOSE_NOTIFY {
            return Ok(Input::Closed);
        }
        if level == FATAL {
            // The session is over; nothing is owed in return.
            return Err(Fatal(None));
        }
        // Warnings: harmless in TLS 1.2, outlawed in 1.3 but for user_canceled.
        if self.version == Version::Tls13 && description != alert::USER_CANCELED {
            return Err(Fatal::alert(alert::DECODE_ERROR));
        }
        self.warnings_allowed = self
            .warnings_allowed
            .checked_sub(1)
            .ok_or(Fatal::alert(alert::UNEXPECTED_MESSAGE))?;
        Ok(Input::Open)
    }

    /// A handshake record after the handshake: a KeyUpdate (TLS 1.3), or a
    /// renegotiation attempt (TLS 1.2, refused).
    fn handshake(
        &mut self,
        plain: &[u8],
        wire: &mut Outbox,
        pool: &mut BufferPool,
    ) -> Result<(), Fatal> {
        if self.version == Version::Tls12 {
            if plain.first() != Some(&CLIENT_HELLO) {
                return Err(Fatal::alert(alert::UNEXPECTED_MESSAGE));
            }
            self.renegotiations_allowed = self
                .renegotiations_allowed
                .checked_sub(1)
                .ok_or(Fatal::alert(alert::UNEXPECTED_MESSAGE))?;
            if self.closed {
                // Nothing is sealed after our close_notify, a refusal neither.
                return Ok(());
            }
            return self.seal(ALERT, &[WARNING, alert::NO_RENEGOTIATION], wire, pool);
        }
        let mut rest = plain;
        while !rest.is_empty() {
            let &[typ, a, b, c, ref after @ ..] = rest else {
                return Err(Fatal::alert(alert::DECODE_ERROR));
            };
            let len = u32::from_be_bytes([0, a, b, c]) as usize;
            // A message continued in the next record is not expected after
            // the handshake: a KeyUpdate is 5 bytes and must end its record.
            if after.len() < len || typ != KEY_UPDATE {
                return Err(Fatal::alert(alert::UNEXPECTED_MESSAGE));
            }
            let &[request] = &after[..len] else {
                return Err(Fatal::alert(alert::DECODE_ERROR));
            };
            if request > 1 {
                return Err(Fatal::alert(alert::ILLEGAL_PARAMETER));
            }
            rest = &after[len..];
            if !rest.is_empty() {
                // A key change must fall on a record boundary (RFC 8446 §5.1).
                return Err(Fatal::alert(alert::UNEXPECTED_MESSAGE));
            }
            self.key_updates_allowed = self
                .key_updates_allowed
                .checked_sub(1)
                .ok_or(Fatal::alert(alert::UNEXPECTED_MESSAGE))?;
            self.rx = self.next_rx()?;
            // update_requested: ours goes out before any more data (once
            // for many requests).
            self.key_update_owed |= request == 1;
        }
        Ok(())
    }

    /// Sends a KeyUpdate (update_not_requested) under the current key, then
    /// switches to the next one.
    fn update_tx(&mut self, wire: &mut Outbox, pool: &mut BufferPool) -> Result<(), Fatal> {
        self.seal_one(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0], wire, pool)?;
        self.tx = self.next_tx()?;
        Ok(())
    }

    /// The receiving keys after a KeyUpdate (TLS 1.3 only).
    fn next_rx(&mut self) -> Result<Direction, Fatal> {
        let version = self.version;
        match self.schedule.as_deref_mut() {
            Some(Schedule::Rustls(schedule)) => {
                let (seq, secrets) = schedule
                    .update_rx_secret()
                    .map_err(|_| Fatal::alert(alert::INTERNAL_ERROR))?;
                Direction::new(version, secrets, seq)
            }
            Some(Schedule::Carried { rx, .. }) => {
                rx.take().ok_or(Fatal::alert(alert::INTERNAL_ERROR))
            }
            None => Err(Fatal::alert(alert::INTERNAL_ERROR)),
        }
    }

    /// The sending keys after a KeyUpdate (TLS 1.3 only).
    fn next_tx(&mut self) -> Result<Direction, Fatal> {
        let version = self.version;
        match self.schedule.as_deref_mut() {
            Some(Schedule::Rustls(schedule)) => {
                let (seq, secrets) = schedule
                    .update_tx_secret()
                    .map_err(|_| Fatal::alert(alert::INTERNAL_ERROR))?;
                Direction::new(version, secrets, seq)
            }
            Some(Schedule::Carried { tx, .. }) => {
                tx.take().ok_or(Fatal::alert(alert::INTERNAL_ERROR))
            }
            None => Err(Fatal::alert(alert::INTERNAL_ERROR)),
        }
    }

    /// Lends the sending half with the plaintext it opened (see [`Sealer`]),
    /// unless nothing more may be sealed (our close_notify is out).
    pub fn sealer<'a>(&'a mut self, wire: &'a mut Outbox) -> Option<Sealer<'a>> {
        (!self.closed).then_some(Sealer {
            records: self,
            wire,
        })
    }

    /// Before sealing a record: at the confidentiality limit, TLS 1.3 moves to
    /// the next key; TLS 1.2 cannot, and the session ends.
    /// True if the key changed.
    fn before_seal(&mut self, wire: &mut Outbox, pool: &mut BufferPool) -> Result<bool, Fatal> {
        if self.tx.seq < self.tx_limit {
            return Ok(false);
        }
        match self.version {
            Version::Tls13 => self.update_tx(wire, pool).map(|()| true),
            Version::Tls12 => Err(Fatal(None)),
        }
    }

    /// Ciphertext size of `n` bytes of plaintext, at most.
    pub fn sealed_len(n: usize) -> usize {
        n + n.div_ceil(MAX_FRAGMENT).max(1) * MAX_OVERHEAD
    }

    /// Seals `plain` (any length: cut into records of at most 16 KiB) as
    /// records of type `typ` into `wire`.
    fn seal(
        &mut self,
        typ: u8,
        plain: &[u8],
        wire: &mut Outbox,
        pool: &mut BufferPool,
    ) -> Result<(), Fatal> {
        self.seal_slices(typ, &[plain], plain.len(), wire, pool)
    }

    /// One record, at the current key whatever its count (a KeyUpdate).
    fn seal_one(
        &mut self,
        typ: u8,
        plain: &[u8],
        wire: &mut Outbox,
        pool: &mut BufferPool,
    ) -> Result<(), Fatal> {
        let key = self.tx.take_key()?;
        let mut result = Ok(());
        wire.append_with(pool, Self::sealed_len(plain.len()), |out| {
            result = self.seal_record(&key, typ, &[plain], 0, plain.len(), out);
        });
        self.tx.keep_key(key);
        result
    }

    /// Seals the first `total` bytes of `slices`, in order, as records of type
    /// `typ` of at most 16 KiB each, appended to `wire`: each record's
    /// plaintext is copied once, into the send buffer, and encrypted there.
    fn seal_slices(
        &mut self,
        typ: u8,
        slices: &[&[u8]],
        total: usize,
        wire: &mut Outbox,
        pool: &mut BufferPool,
    ) -> Result<(), Fatal> {
        let mut done = 0;
        let mut key = None;
        loop {
            if self.before_seal(wire, pool)? {
                key = None;
            }
            let sealing = match &mut key {
                Some(key) => key,
                None => key.insert(self.tx.take_key()?),
            };
            let n = (total - done).min(MAX_FRAGMENT);
            let mut result = Ok(());
            wire.append_with(pool, Self::sealed_len(total - done), |out| {
                // Room for the rest of this flush at once: no regrowth.
                out.reserve(Self::sealed_len(total - done));
                result = self.seal_record(sealing, typ, slices, done, n, out);
            });
            result?;
            done += n;
            if done >= total {
                if let Some(key) = key {
                    self.tx.keep_key(key);
                }
                return Ok(());
            }
        }
    }

    /// Appends one record to `out`: the header, the plaintext (`n` bytes of
    /// `slices` from byte `skip` on), then encrypts it in place and appends the
    /// tag. On an error `out` is left as it was.
    fn seal_record(
        &mut self,
        key: &LessSafeKey,
        typ: u8,
        slices: &[&[u8]],
        skip: usize,
        n: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), Fatal> {
        let start = out.len();
        let seq = self.tx.seq;
        let (outer, explicit, inner) = match self.version {
            Version::Tls13 => (APPLICATION_DATA, 0, 1),
            Version::Tls12 if self.tx.explicit_nonce => (typ, EXPLICIT_NONCE, 0),
            Version::Tls12 => (typ, 0, 0),
        };
        let body = explicit + n + inner + TAG;
        // `body` is at most 16 KiB + 25, which fits 16 bits.
        let len = (body as u16).to_be_bytes();
        let header = [outer, 3, 3, len[0], len[1]];
        let nonce = self.tx.nonce();
        out.extend_from_slice(&header);
        if explicit > 0 {
            out.extend_from_slice(&nonce[4..]);
        }
        let mut skip = skip;
        let mut left = n;
        for slice in slices {
            if left == 0 {
                break;
            }
            if skip >= slice.len() {
                skip -= slice.len();
                continue;
            }
            let take = (slice.len() - skip).min(left);
            out.extend_from_slice(&slice[skip..skip + take]);
            skip = 0;
            left -= take;
        }
        if inner > 0 {
            out.push(typ);
        }
        let mut aad = [0; 13];
        let aad_len = if self.version == Version::Tls13 {
            aad[..HEADER].copy_from_slice(&header);
            HEADER
        } else {
            aad = tls12_aad(seq, typ, n);
            aad.len()
        };
        let payload = start + HEADER + explicit;
        let tag = key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad[..aad_len]),
            &mut out[payload..],
        );
        match (tag, self.tx.next_seq()) {
            (Ok(tag), Ok(_)) => {
                out.extend_from_slice(tag.as_ref());
                debug_assert_eq!(out.len() - start, HEADER + body);
                Ok(())
            }
            _ => {
                out.truncate(start);
                Err(Fatal(None))
            }
        }
    }

    /// Seals the first `total` bytes of `slices` as application data, after
    /// the KeyUpdate owed, if any. Within [`CLOSE_RESERVE`] records of a TLS
    /// 1.2 key's limit, [`Self::exhausted`] asks for the close. Nothing is
    /// sealed after our close_notify.
    pub fn seal_data(
        &mut self,
        slices: &[&[u8]],
        total: usize,
        wire: &mut Outbox,
        pool: &mut BufferPool,
    ) -> Result<(), Fatal> {
        if self.closed {
            return Err(Fatal(None));
        }
        self.answer_key_update(wire, pool)?;
        self.seal_slices(APPLICATION_DATA, slices, total, wire, pool)?;
        if self.version == Version::Tls12 {
            self.exhausted |= self.tx.seq >= self.tx_limit.saturating_sub(CLOSE_RESERVE);
        }
        Ok(())
    }

    /// Seals our close_notify; nothing is sealed after it.
    pub fn close_notify(&mut self, wire: &mut Outbox, pool: &mut BufferPool) -> Result<(), Fatal> {
        if std::mem::replace(&mut self.closed, true) {
            return Ok(());
        }
        self.seal(ALERT, &[WARNING, alert::CLOSE_NOTIFY], wire, pool)
    }

    /// Seals a fatal alert (best effort: the session is over either way).
    pub fn fatal_alert(&mut self, description: u8, wire: &mut Outbox, pool: &mut BufferPool) {
        if !std::mem::replace(&mut self.closed, true) {
            let _ = self.seal_one(ALERT, &[FATAL, description], wire, pool);
        }
    }
}

/// The record layer lent to the callbacks on the plaintext it just opened: a
/// large frame sent from there is sealed straight into the ciphertext queue
/// from where it lies (the echoed message in the receive buffer, the handler's
/// own slice), skipping the copy into the connection's send queue.
pub(crate) struct Sealer<'a> {
    records: &'a mut RecordLayer,
    wire: &'a mut Outbox,
}

impl Sealer<'_> {
    /// No ciphertext is waiting for the socket: what is sealed now goes out
    /// next, in order.
    pub fn idle(&self) -> bool {
        self.wire.is_empty()
    }

    /// Seals `parts` (a frame's header and payload), in order, as records of
    /// application data. False if the session cannot seal any more (a TLS 1.2
    /// key at its limit): the frame is then queued as any other, and the
    /// flush, meeting the same error, ends the session.
    pub fn seal(&mut self, parts: &[&[u8]], pool: &mut BufferPool) -> bool {
        let total = parts.iter().map(|part| part.len()).sum();
        self.records
            .seal_data(parts, total, self.wire, pool)
            .is_ok()
    }

    /// Reborrowed for one callback, leaving it for the next.
    pub fn reborrow(&mut self) -> Sealer<'_> {
        Sealer {
            records: self.records,
            wire: self.wire,
        }
    }
}
