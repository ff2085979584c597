//! Target `tls_records`: a server [`Tls`](crate::transport::tls::session::Tls) just handed over to our record layer
//! (a real handshake with a rustls client, whose keys then go to the harness's
//! own client record layer, [`Peer`]), fed what the input makes of the
//! client's side: records sealed with the right keys (any content type, any
//! content, TLS 1.3 padding; the peer's keys follow the KeyUpdates it sends),
//! raw bytes and flipped bits, cut into reads anywhere; while the server sends
//! (flushes of the outbox, frames sealed from the delivery callback, its
//! close_notify), its ciphertext read back by the peer.
//!
//! Checked after every read, against a model of the record layer's rules
//! ([`Policy`]: RFC 8446 §5-6 and RFC 5246 §6-7 as `transport::tls::records` applies
//! them, with rustls's limits):
//! - no panic;
//! - the plaintext delivered is exactly the application data of the whole,
//!   untouched records read so far, in order, up to the first record the rules
//!   refuse (or a close_notify), and nothing more after an error;
//! - the server fails exactly where the rules (or a touched byte) say, and
//!   reports the peer's close_notify exactly when it reads one;
//! - memory held stays bounded: the stash at most one record, and the
//!   ciphertext written in answer to what was read no larger than it;
//! - everything the server writes opens with the peer's keys: the data sent,
//!   in order, its KeyUpdate for each one requested, its refusal of each
//!   renegotiation, one fatal alert at most and only after an error, nothing
//!   after its close_notify.

use std::collections::BTreeMap;
use std::sync::Arc;

use ring::hkdf;
use rustls::CipherSuite;

use super::peer::{ALERT, APPLICATION_DATA, HANDSHAKE, HEADER, LoggedSecrets, Peer};
use super::{Cert, Input, Server, Suite, client, handshake, pattern, pick_suite, size};
use crate::transport::tls::records::MAX_FRAGMENT;
use crate::transport::tls::session::Received;
use crate::transport::tls::session::adapter::MAX_RECORD_STASH;
use crate::types::TlsError;

/// Most operations of one input, and most bytes the peer sends: one input
/// stays within milliseconds whatever it holds.
const MAX_OPS: usize = 256;
const MAX_STREAM: usize = 1 << 20;
/// Most plaintext the server sends in one input.
const MAX_SENT: usize = 2 << 20;
/// Largest content the peer seals: past 16 KiB, and past the largest record
/// body a TLS 1.2 peer may send.
const MAX_CONTENT: usize = MAX_FRAGMENT + 4096;
/// Most the server may write in answer to what it reads beyond those bytes
/// themselves: its answers (a KeyUpdate, a refusal of renegotiation) are no
/// larger than the records that ask for them, but for one byte of the
/// refusal, and one fatal alert ends it all.
const ANSWER_SLACK: usize = 64;

/// The record layer's limits (`transport::tls::records`, as rustls sets them).
const WARNINGS_ALLOWED: u8 = 4;
const KEY_UPDATES_ALLOWED: u8 = 32;
const RENEGOTIATIONS_ALLOWED: u8 = 1;
/// Empty records of data in a row; an empty record refills no budget.
const EMPTY_RECORDS_ALLOWED: u8 = 32;
const TLS13_MAX_BODY: usize = MAX_FRAGMENT + 256;
const TLS12_MAX_BODY: usize = MAX_FRAGMENT + 2048;

const CLOSE_NOTIFY: u8 = 0;
const USER_CANCELED: u8 = 90;
const NO_RENEGOTIATION: u8 = 100;
const WARNING: u8 = 1;
const FATAL: u8 = 2;
const CLIENT_HELLO: u8 = 1;
const KEY_UPDATE: u8 = 24;

/// What the server must make of a record the peer sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    /// Application data: delivered; its content is `data[range]` of [`Run`]
    /// (of the record's content while [`Policy::judge`] answers).
    Data(std::ops::Range<usize>),
    /// Taken, nothing delivered: a warning alert, a KeyUpdate (with our own
    /// answered for `update_requested`), a renegotiation refused (answered).
    Taken { answers: bool, refuses: bool },
    /// close_notify: nothing after it is read.
    Close,
    /// The session fails on it, with an alert to the peer or (after the peer's
    /// own fatal alert) none; `early`: as soon as its header is read.
    Fail { early: bool, alert: bool },
}

/// The rules the record layer applies to the records it opens, in order.
#[derive(Debug)]
struct Policy {
    tls13: bool,
    warnings: u8,
    key_updates: u8,
    renegotiations: u8,
    empty_records: u8,
}

/// A fate, and whether the peer's sending key changes after the record (an
/// accepted KeyUpdate).
struct Judged {
    fate: Fate,
    key_update: bool,
}

impl Policy {
    fn new(tls13: bool) -> Self {
        Self {
            tls13,
            warnings: WARNINGS_ALLOWED,
            key_updates: KEY_UPDATES_ALLOWED,
            renegotiations: RENEGOTIATIONS_ALLOWED,
            empty_records: EMPTY_RECORDS_ALLOWED,
        }
    }

    /// The fate of a record of type `typ` holding `content` (TLS 1.3: then
    /// `padding` zeros) whose body is `body` bytes long. Application data is
    /// given as the range of `content` the server must deliver.
    fn judge(&mut self, typ: u8, content: &[u8], padding: usize, body: usize) -> Judged {
        let fail = |early| Judged {
            fate: Fate::Fail { early, alert: true },
            key_update: false,
        };
        let taken = |answers, refuses| Judged {
            fate: Fate::Taken { answers, refuses },
            key_update: false,
        };
        let max_body = if self.tls13 {
            TLS13_MAX_BODY
        } else {
            TLS12_MAX_BODY
        };
        if body > max_body {
            return fail(true);
        }
        let (typ, content) = if self.tls13 {
            // The inner plaintext: content, type, padding (RFC 8446 §5.4); the
            // type is its last byte that is not zero.
            if content.len() + 1 + padding > MAX_FRAGMENT + 1 {
                return fail(false);
            }
            if typ != 0 {
                (typ, content)
            } else {
                match content.iter().rposition(|&b| b != 0) {
                    Some(end) => (content[end], &content[..end]),
                    None => return fail(false),
                }
            }
        } else {
            if !matches!(typ, ALERT | HANDSHAKE | APPLICATION_DATA) {
                return fail(false);
            }
            (typ, content)
        };
        if content.len() > MAX_FRAGMENT {
            return fail(false);
        }
        match typ {
            // An empty record of data is no data: it refills no budget, and
            // only so many come in a row.
            APPLICATION_DATA if content.is_empty() => match self.empty_records.checked_sub(1) {
                Some(left) => {
                    self.empty_records = left;
                    taken(false, false)
                }
                None => fail(false),
            },
            // RFC 8446 §5.1 (and RFC 5246 §6.2.1): no zero-length fragment
            // of any other type.
            _ if content.is_empty() => fail(false),
            APPLICATION_DATA => {
                self.key_updates = KEY_UPDATES_ALLOWED;
                self.empty_records = EMPTY_RECORDS_ALLOWED;
                Judged {
                    fate: Fate::Data(0..content.len()),
                    key_update: false,
                }
            }
            ALERT => {
                let &[level, description] = content else {
                    return fail(false);
                };
                if !matches!(level, WARNING | FATAL) {
                    return fail(false);
                }
                if description == CLOSE_NOTIFY {
                    return Judged {
                        fate: Fate::Close,
                        key_update: false,
                    };
                }
                if level == FATAL {
                    return Judged {
                        fate: Fate::Fail {
                            early: false,
                            alert: false,
                        },
                        key_update: false,
                    };
                }
                // TLS 1.3 outlaws warnings but user_canceled (RFC 8446 §6).
                if self.tls13 && description != USER_CANCELED {
                    return fail(false);
                }
                match self.warnings.checked_sub(1) {
                    Some(left) => self.warnings = left,
                    None => return fail(false),
                }
                taken(false, false)
            }
            HANDSHAKE if !self.tls13 => {
                if content.first() != Some(&CLIENT_HELLO) {
                    return fail(false);
                }
                match self.renegotiations.checked_sub(1) {
                    Some(left) => self.renegotiations = left,
                    None => return fail(false),
                }
                taken(false, true)
            }
            HANDSHAKE => match *content {
                [KEY_UPDATE, 0, 0, 1, request @ (0 | 1)] => {
                    match self.key_updates.checked_sub(1) {
                        Some(left) => self.key_updates = left,
                        None => return fail(false),
                    }
                    Judged {
                        fate: Fate::Taken {
                            answers: request == 1,
                            refuses: false,
                        },
                        key_update: true,
                    }
                }
                _ => fail(false),
            },
            _ => fail(false),
        }
    }
}

/// A record in the peer's byte stream.
#[derive(Debug)]
struct Sent {
    start: usize,
    end: usize,
    fate: Fate,
}

/// Where the server must be after reading what it read.
#[derive(Debug, Default)]
struct View {
    /// The application data it must have delivered: `data[..delivered]`.
    delivered: usize,
    outcome: Outcome,
    /// The next record fails as soon as its header is read, and it is.
    may_fail_early: bool,
    /// KeyUpdates and refusals it must have written.
    answers: usize,
    refusals: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    #[default]
    Open,
    Closed,
    /// With the alert owed to the peer (`Some(false)`: none, after its own
    /// fatal alert; `None`: either).
    Failed {
        alert: Option<bool>,
    },
}

/// One input's session.
struct Run {
    tls13: bool,
    server: Server,
    peer: Peer,
    policy: Policy,
    /// Every byte the peer sent; the first `fed` went to the server.
    stream: Vec<u8>,
    fed: usize,
    records: Vec<Sent>,
    /// The application data the peer sealed, in order.
    data: Vec<u8>,
    /// Where the first raw bytes went into the stream, and the bits flipped
    /// in it (by offset; a bit flipped twice is whole again): from the first
    /// byte that is not the peer's sealing on, nothing is predicted.
    raw_from: usize,
    flipped: BTreeMap<usize, u8>,
    /// A read returned an error; one returned PeerClosed.
    failed: bool,
    closed: bool,
    /// Ciphertext the server wrote while reading, beyond the frames sealed
    /// from the callback.
    answered: usize,
    /// The session failed after our close_notify (nothing, not even the
    /// alert owed, is sealed after it).
    failed_after_close_notify: bool,
    /// The plaintext the server sent (flushed or sealed from the callback),
    /// and what the peer read of it.
    sent: Vec<u8>,
    read: Vec<u8>,
    /// The server's close_notify was asked for; the peer read it; the peer
    /// read a fatal alert.
    close_notify: bool,
    peer_saw_close_notify: bool,
    peer_saw_fatal: bool,
    answers_seen: usize,
    refusals_seen: usize,
}

/// Runs one input (see the module's documentation).
pub fn tls_records(data: &[u8]) {
    let mut input = Input(data);
    let (suite, cert) = pick_suite(&mut input);
    let mut run = Run::new(suite, cert);
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        run.step(&mut input);
    }
    run.finish();
}

impl Run {
    fn new(suite: &'static Suite, cert: Cert) -> Self {
        let logged = Arc::new(LoggedSecrets::default());
        let mut client = client(suite, cert, |config| {
            config.enable_secret_extraction = true;
            config.key_log = logged.clone();
        });
        let mut server = Server::new(cert);
        handshake(&mut server, &mut client);
        #[allow(deprecated)] // The buffered client has no kernel connection.
        let secrets = client
            .dangerous_extract_secrets()
            .expect("the client exports its keys");
        let hash = if suite.suite == CipherSuite::TLS13_AES_256_GCM_SHA384 {
            hkdf::HKDF_SHA384
        } else {
            hkdf::HKDF_SHA256
        };
        let tls13 = suite.tls13();
        Self {
            tls13,
            server,
            peer: Peer::new(secrets, tls13.then_some((&*logged, hash))),
            policy: Policy::new(tls13),
            stream: Vec::new(),
            fed: 0,
            records: Vec::new(),
            data: Vec::new(),
            raw_from: usize::MAX,
            flipped: BTreeMap::new(),
            failed: false,
            closed: false,
            answered: 0,
            failed_after_close_notify: false,
            sent: Vec::new(),
            read: Vec::new(),
            close_notify: false,
            peer_saw_close_notify: false,
            peer_saw_fatal: false,
            answers_seen: 0,
            refusals_seen: 0,
        }
    }

    fn step(&mut self, input: &mut Input<'_>) {
        match input.byte() % 14 {
            0 | 1 => {
                let len = size(input, MAX_CONTENT);
                let content = pattern(len, input.byte());
                let padding = self.padding(input, len);
                self.seal(APPLICATION_DATA, &content, padding);
            }
            2 => {
                let typ = input.byte();
                let len = usize::from(input.byte() % 48);
                let content = input.take(len).to_vec();
                let padding = self.padding(input, len);
                self.seal(typ, &content, padding);
            }
            3 => {
                let level = input.byte() % 4;
                let description = match input.byte() {
                    b @ 0..128 => {
                        [CLOSE_NOTIFY, USER_CANCELED, 42, 10, 20, 100][usize::from(b) % 6]
                    }
                    b => b,
                };
                let padding = self.padding(input, 2);
                self.seal(ALERT, &[level, description], padding);
            }
            4 => {
                let message = if self.tls13 {
                    [KEY_UPDATE, 0, 0, 1, input.byte() % 3].to_vec()
                } else {
                    [CLIENT_HELLO, 0, 0, input.byte() % 4].to_vec()
                };
                let padding = self.padding(input, message.len());
                self.seal(HANDSHAKE, &message, padding);
            }
            5 => {
                let len = usize::from(input.byte() % 32);
                let raw = input.take(len);
                if !raw.is_empty() && self.stream.len() + raw.len() <= MAX_STREAM {
                    self.raw_from = self.raw_from.min(self.stream.len());
                    self.stream.extend_from_slice(raw);
                }
            }
            6 => {
                let at = usize::from(input.u16());
                let bit = input.byte() % 8;
                let pending = self.stream.len() - self.fed;
                if pending > 0 {
                    let at = self.fed + at % pending;
                    self.stream[at] ^= 1 << bit;
                    let mask = self.flipped.entry(at).or_default();
                    *mask ^= 1 << bit;
                    if *mask == 0 {
                        self.flipped.remove(&at);
                    }
                }
            }
            7..=9 => {
                let pending = self.stream.len() - self.fed;
                let n = match input.byte() {
                    0 => pending,
                    b @ 1..64 => usize::from(b),
                    b => usize::from(b - 63) * 150,
                };
                self.feed(n.min(pending));
            }
            10 => {
                let len = size(input, usize::MAX);
                let seed = input.byte();
                let split = usize::from(input.byte());
                self.send(&pattern(len, seed), split);
            }
            11 => {
                // What a handler answers to each delivery, sealed from the
                // callback; none after our close_notify (the worker has ended
                // the connection by then).
                let len = size(input, MAX_CONTENT);
                self.server.up.reply = (len > 0 && !self.close_notify).then(|| pattern(len, 0x5a));
            }
            12 => self.close_notify(),
            _ => self.drain(),
        }
    }

    /// TLS 1.3 padding after `len` bytes of content: mostly none, some, or
    /// just up to (or one past) the largest inner plaintext.
    fn padding(&self, input: &mut Input<'_>, len: usize) -> usize {
        if !self.tls13 {
            return 0;
        }
        let limit = MAX_FRAGMENT + 1;
        match input.byte() {
            0..160 => 0,
            b @ 160..252 => usize::from(b - 159),
            252 => 256,
            253 => 4096,
            254 => limit.saturating_sub(len + 1),
            _ => (limit + 1).saturating_sub(len + 1),
        }
    }

    /// Seals one record from the peer, judged by the rules on the way.
    fn seal(&mut self, typ: u8, content: &[u8], padding: usize) {
        let len = self.peer.sealed_len(content.len(), padding);
        if len - HEADER > usize::from(u16::MAX) || self.stream.len() + len > MAX_STREAM {
            return;
        }
        let judged = self.policy.judge(typ, content, padding, len - HEADER);
        let fate = match judged.fate {
            Fate::Data(range) => {
                let at = self.data.len();
                self.data.extend_from_slice(&content[range]);
                Fate::Data(at..self.data.len())
            }
            fate => fate,
        };
        let record = self.peer.seal(typ, content, padding);
        if judged.key_update {
            self.peer.update_tx();
        }
        let start = self.stream.len();
        self.stream.extend_from_slice(&record);
        self.records.push(Sent {
            start,
            end: self.stream.len(),
            fate,
        });
    }

    /// The first byte of the stream that is not as the peer sealed it.
    fn dirty_from(&self) -> usize {
        let flipped = self.flipped.keys().next().copied();
        self.raw_from.min(flipped.unwrap_or(usize::MAX))
    }

    /// One read of the next `n` bytes of the stream.
    fn feed(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let wire_before = self.server.tls.wire.len();
        self.server.up.sealed_wire = 0;
        let bytes = self.stream[self.fed..self.fed + n].to_vec();
        let result = self.server.receive(&bytes);
        self.fed += n;
        match result {
            Ok(Received::Open) => {}
            Ok(Received::PeerClosed) => self.closed = true,
            Err(TlsError::Record) => {
                self.failed = true;
                self.failed_after_close_notify = self.close_notify;
            }
            Err(other) => panic!("after the handshake only record errors: {other:?}"),
        }
        let sealed = std::mem::take(&mut self.server.up.sealed);
        self.sent.extend_from_slice(&sealed);
        let written = self.server.tls.wire.len().saturating_sub(wire_before);
        self.answered += written.saturating_sub(self.server.up.sealed_wire);
        self.check();
    }

    /// The model's view of what the server read: the whole records before
    /// the first touched byte, up to the first that ends the session.
    fn view(&self) -> View {
        let limit = self.fed.min(self.dirty_from());
        let mut view = View::default();
        for record in &self.records {
            if record.end > limit {
                view.may_fail_early = matches!(record.fate, Fate::Fail { early: true, .. })
                    && record.start + HEADER <= limit;
                break;
            }
            match record.fate {
                Fate::Data(ref range) => view.delivered = range.end,
                Fate::Taken { answers, refuses } => {
                    view.answers += usize::from(answers);
                    view.refusals += usize::from(refuses);
                }
                Fate::Close => {
                    view.outcome = Outcome::Closed;
                    break;
                }
                Fate::Fail { early, alert } => {
                    // Whether an alert goes out when the header gives the
                    // failure away depends on how the reads cut it.
                    view.outcome = Outcome::Failed {
                        alert: (!early).then_some(alert),
                    };
                    break;
                }
            }
        }
        view
    }

    fn check(&self) {
        let view = self.view();
        let delivered = &self.server.up.delivered;
        assert!(
            delivered[..] == self.data[..view.delivered],
            "delivered {} bytes, the whole untouched records hold {} (fed {}, touched from {}, \
             failed {}, closed {})",
            delivered.len(),
            view.delivered,
            self.fed,
            self.dirty_from(),
            self.failed,
            self.closed
        );
        match view.outcome {
            Outcome::Closed => assert!(
                self.closed && !self.failed,
                "a close_notify was read: closed {}, failed {}",
                self.closed,
                self.failed
            ),
            Outcome::Failed { .. } => assert!(
                self.failed && !self.closed,
                "a record the rules refuse was read: failed {}, closed {}",
                self.failed,
                self.closed
            ),
            Outcome::Open => {
                assert!(!self.closed, "PeerClosed without a close_notify");
                if self.fed <= self.dirty_from() {
                    assert!(
                        !self.failed || view.may_fail_early,
                        "failed on records the rules accept (fed {})",
                        self.fed
                    );
                }
            }
        }
        let stash = self.server.tls.stash_capacity();
        assert!(
            stash <= MAX_RECORD_STASH,
            "the stash holds {stash} bytes, more than one record"
        );
        assert!(
            self.answered <= self.fed + ANSWER_SLACK,
            "wrote {} bytes in answer to {} read",
            self.answered,
            self.fed
        );
    }

    /// The server sends `plain` (in two parts, cut at `split`, the second one
    /// shared), flushed to the wire.
    fn send(&mut self, plain: &[u8], split: usize) {
        // The worker sends nothing after its close_notify.
        if self.close_notify || self.sent.len() + plain.len() > MAX_SENT {
            return;
        }
        let (a, b) = plain.split_at((split * 97).min(plain.len()));
        let wire_before = self.server.tls.wire.len();
        let result = self.server.send(&[(a, false), (b, true)]);
        if self.failed {
            assert_eq!(result, Ok(false), "sent after the session failed");
            assert_eq!(self.server.tls.wire.len(), wire_before);
        } else {
            // On our record layer even after the peer's close_notify.
            assert_eq!(result, Ok(true), "a flush of {} bytes", plain.len());
            self.sent.extend_from_slice(plain);
        }
    }

    fn close_notify(&mut self) {
        let queued = self.server.close_notify();
        let expected = !self.close_notify && !self.failed;
        assert_eq!(queued, expected, "close_notify queued");
        self.close_notify = true;
        self.server.up.reply = None;
    }

    /// The server's ciphertext to the peer, record by record.
    fn drain(&mut self) {
        let wire = self.server.take_wire();
        let mut rest = &wire[..];
        while let Some((typ, content, len)) = self.peer.open(rest) {
            rest = &rest[len..];
            assert!(!self.peer_saw_fatal, "a record after a fatal alert");
            match (typ, &content[..]) {
                (APPLICATION_DATA, _) => {
                    assert!(!self.peer_saw_close_notify, "data after close_notify");
                    self.read.extend_from_slice(&content);
                }
                (ALERT, [FATAL, _]) => {
                    assert!(self.failed, "a fatal alert without an error");
                    self.peer_saw_fatal = true;
                }
                (ALERT, [WARNING, CLOSE_NOTIFY]) => {
                    assert!(self.close_notify && !self.peer_saw_close_notify);
                    self.peer_saw_close_notify = true;
                }
                (ALERT, [WARNING, NO_RENEGOTIATION]) if !self.tls13 => self.refusals_seen += 1,
                (HANDSHAKE, [KEY_UPDATE, 0, 0, 1, 0]) if self.tls13 => {
                    self.peer.update_rx();
                    self.answers_seen += 1;
                }
                other => panic!("the server sent {other:?}"),
            }
        }
        assert!(rest.is_empty(), "the wire ends inside a record");
        assert!(
            self.read == self.sent,
            "the peer read {} bytes of the {} sent",
            self.read.len(),
            self.sent.len()
        );
        let view = self.view();
        // One KeyUpdate answers any number of requests (RFC 8446 §4.6.3): it
        // goes out when the wire is empty or before the next record of data,
        // so never more answers than requests; one missing before data shows
        // as a record the peer cannot open, above.
        assert!(
            self.answers_seen <= view.answers,
            "{} KeyUpdates answered to {} requests",
            self.answers_seen,
            view.answers
        );
        // Nothing is sealed after our close_notify, a refusal neither.
        if self.close_notify {
            assert!(
                self.refusals_seen <= view.refusals,
                "{} renegotiations refused of {}",
                self.refusals_seen,
                view.refusals
            );
        } else {
            assert_eq!(self.refusals_seen, view.refusals, "renegotiations refused");
        }
        if let Outcome::Failed { alert: Some(owed) } = view.outcome {
            // Nothing is sealed after our close_notify, not even an alert.
            assert_eq!(
                self.peer_saw_fatal,
                owed && !self.failed_after_close_notify,
                "the alert owed after a refused record"
            );
        }
    }

    /// The rest of the stream in one read; what the server wrote read back;
    /// then, if the session is still up, its close_notify.
    fn finish(mut self) {
        self.feed(self.stream.len() - self.fed);
        self.drain();
        if !self.close_notify {
            self.close_notify();
            self.drain();
            assert_eq!(self.peer_saw_close_notify, !self.failed);
        }
    }
}
