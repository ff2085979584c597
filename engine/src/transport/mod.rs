//! Transports: how a socket's bytes become a stream's bytes and back, below
//! the runtime. Sans-I/O byte transforms that never call up: the TLS session
//! ([`tls`]) takes ciphertext and returns what it opened, step by step
//! ([`tls::session::Step`]), and seals queued frames into its wire queue when asked;
//! the plain transport is the identity. HTTP/2 ([`h2`], carried by
//! [`mux::Mux`]) sits on either and carries many streams on one socket. The
//! send queue they all use is [`outbox`]. Nothing here knows about WebSocket,
//! connections or workers.

pub(crate) mod h2;
pub(crate) mod mux;
pub(crate) mod outbox;
pub(crate) mod tls;

use std::ops::Range;

use self::mux::Mux;
use self::outbox::{BufferPool, Outbox};
pub(crate) use self::tls::records::CarriedRecords;
use self::tls::records::Sealer;
pub(crate) use self::tls::session::NotNow;
use self::tls::session::{self, Tls};
use crate::types::TlsError;

/// A socket's transport: the bytes as they are, or a TLS session, either of
/// them carrying HTTP/2 ([`Mux`]); or, for a stream carried by an HTTP/2
/// socket, where it is carried. Everything above it reads and writes a
/// socket through the same calls.
#[derive(Debug)]
pub(crate) enum Transport {
    Plain,
    Tls(Box<Tls>),
    /// HTTP/2 over `Plain` or `Tls`: the socket carries streams.
    Mux(Box<Mux>),
    /// Not a socket: a stream carried by the HTTP/2 socket whose key is
    /// `socket`, as its stream `stream`. Its bytes go through that socket.
    Carried {
        socket: u32,
        stream: u32,
    },
}

/// What one read gave, step by step ([`Transport::read`]).
pub(crate) enum Step<'a> {
    /// Bytes for the stream: the ranges `runs` of `bytes`, in order, mutable
    /// where they lie (the frame decoder unmasks in place). `through` is where
    /// a frame sent from the callbacks on them may go without first being
    /// queued.
    Plaintext {
        bytes: &'a mut [u8],
        runs: &'a [Range<usize>],
        through: Through<'a>,
        /// The client chose HTTP/2 by ALPN: the bytes are an HTTP/2
        /// connection.
        http2: bool,
    },
    /// The peer ended its stream inside the transport (TLS close_notify):
    /// nothing more comes; we may still send until our own goodbye.
    PeerClosed,
}

/// Where a frame sent while received bytes are handed on may go at once.
pub(crate) enum Through<'a> {
    /// The socket itself: written from where the frame lies.
    Socket,
    /// The record layer: sealed from where it lies into the wire queue.
    Records(Sealer<'a>),
    /// Nowhere yet (a TLS handshake, a failing session): it is queued.
    Queue,
}

/// Whether a transport's bytes may go on now, or wait for a handshake slot
/// ([`Transport::admit`]).
pub(crate) enum Admission {
    /// Read them now.
    Read,
    /// Held until a slot frees: reading should pause.
    Held,
    /// Not held (too much, or not a handshake): what was held, with these
    /// bytes after it, is read now.
    ReadHeld(Vec<u8>),
}

/// What sealing the send queue into the wire gave ([`Transport::seal`]).
pub(crate) enum Sealed {
    /// The wire holds what there is to write.
    Ready,
    /// Nothing can be sent on this session any more: the queued frames never
    /// will be.
    Discard,
    /// The session failed; its alert is queued.
    Failed(TlsError),
    /// A TLS 1.2 key is near its record limit: the stream should close while
    /// the records kept for that remain.
    KeyLimit,
}

impl Transport {
    /// The transport of a socket accepted on a listener with `tls` (its
    /// current certificate configuration), or none.
    pub fn new(tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> Self {
        match tls {
            Some(config) => Transport::Tls(Box::new(Tls::new(config))),
            None => Transport::Plain,
        }
    }

    /// What a live hand-over carries of it: nothing for a plain socket; over
    /// TLS the record layer's state and the ciphertext not yet written (see
    /// `tls::session::carry`); an HTTP/2 socket or stream cannot go.
    pub fn hand_over(&mut self) -> Result<Option<(CarriedRecords, Vec<u8>)>, NotNow> {
        match self {
            Transport::Plain => Ok(None),
            Transport::Tls(tls) => tls.carry().map(Some),
            Transport::Mux(_) | Transport::Carried { .. } => {
                Err(NotNow::Refuse("a WebSocket over HTTP/2 (RFC 8441)"))
            }
        }
    }

    /// The transport a live hand-over carried over (see [`Self::hand_over`]).
    /// `partial` is the start of a TLS record cut by the end of a read
    /// (none on a plain socket).
    pub fn handed_over(
        tls: Option<(&CarriedRecords, &[u8])>,
        partial: &[u8],
        pool: &mut BufferPool,
    ) -> Result<Self, &'static str> {
        Ok(match tls {
            None if partial.is_empty() => Transport::Plain,
            None => return Err("a cut TLS record without TLS"),
            Some((records, wire)) => {
                Transport::Tls(Box::new(Tls::carried(records, wire, partial, pool)?))
            }
        })
    }

    /// The start of a TLS record cut by the end of a read (empty on a plain
    /// socket, or between records), for a live hand-over.
    pub fn partial_record(&self) -> &[u8] {
        match self {
            Transport::Tls(tls) => tls.partial_record(),
            _ => &[],
        }
    }

    /// Takes bytes received from the socket and returns what they gave, step
    /// by step ([`Reading::next`]). A TLS session answers handshake records
    /// into its wire queue; `scratch` and `runs` are the worker's buffers.
    pub fn read<'a>(
        &'a mut self,
        data: &'a mut [u8],
        scratch: &'a mut Vec<u8>,
        runs: &'a mut Vec<Range<usize>>,
    ) -> Reading<'a> {
        match self {
            Transport::Plain => {
                runs.clear();
                runs.push(0..data.len());
                Reading::Plain(Some((data, runs)))
            }
            Transport::Tls(tls) => Reading::Tls(tls.read(data, scratch, runs)),
            Transport::Mux(mux) => mux.below.read(data, scratch, runs),
            // Nothing is read from a carried stream: its socket reads.
            Transport::Carried { .. } => Reading::Plain(None),
        }
    }

    /// A transport with a handshake not yet started may have to wait for one
    /// of the worker's handshake slots (`slot_free` says whether one is):
    /// while it waits its bytes are held here.
    pub fn admit(&mut self, data: &[u8], slot_free: bool) -> Admission {
        let Transport::Tls(tls) = self else {
            return Admission::Read;
        };
        if !tls.unstarted() || (!tls.mid_record() && slot_free) {
            return Admission::Read;
        }
        if tls.hold(data) {
            return Admission::Held;
        }
        let mut held = tls.take_held();
        if held.is_empty() {
            return Admission::Read;
        }
        held.extend_from_slice(data);
        Admission::ReadHeld(held)
    }

    /// What [`Self::admit`] held, once a slot is free: to be read now.
    pub fn take_held(&mut self) -> Option<Vec<u8>> {
        match self {
            Transport::Tls(tls) if tls.unstarted() => Some(tls.take_held()),
            _ => None,
        }
    }

    /// A handshake is running (it holds one of the worker's slots).
    pub fn handshaking(&self) -> bool {
        matches!(self, Transport::Tls(tls) if tls.handshaking())
    }

    /// The peer's stream stopped inside a record: a truncation attack, or a
    /// broken peer, not an orderly end.
    pub fn cut_short(&self) -> bool {
        match self {
            Transport::Tls(tls) => tls.mid_record() && !tls.unstarted(),
            Transport::Mux(mux) => mux.below.cut_short(),
            _ => false,
        }
    }

    /// The HTTP/2 socket carried by this transport, if it is one.
    pub fn mux(&mut self) -> Option<&mut Mux> {
        match self {
            Transport::Mux(mux) => Some(mux),
            _ => None,
        }
    }

    /// The timer sweep: memory kept only while the socket is busy (a TLS
    /// session's expanded keys) goes if it was not used since the last sweep.
    pub fn release_idle(&mut self) {
        match self {
            Transport::Tls(tls) => tls.release_idle(),
            Transport::Mux(mux) => mux.below.release_idle(),
            _ => {}
        }
    }

    /// An HTTP/2 socket with streams open on it.
    pub fn carries_streams(&self) -> bool {
        matches!(self, Transport::Mux(mux) if mux.carried() > 0)
    }

    /// Where a carried stream is carried: its socket's key and its stream id.
    pub fn carrier(&self) -> Option<(usize, u32)> {
        match *self {
            Transport::Carried { socket, stream } => Some((socket as usize, stream)),
            _ => None,
        }
    }

    /// The socket now speaks HTTP/2 over what it spoke: `h2` (the codec, its
    /// preface queued by the caller) carries its streams from here on.
    pub fn carry(&mut self, h2: h2::H2) {
        let below = std::mem::replace(self, Transport::Plain);
        *self = Transport::Mux(Box::new(Mux::new(below, h2)));
    }

    /// Moves what `queue` holds towards the wire: over TLS, sealed into
    /// records once the last ones are out (while the socket is slow, frames
    /// wait in the queue under its limit); plain, the queue is the wire.
    pub fn seal(&mut self, queue: &mut Outbox, pool: &mut BufferPool) -> Sealed {
        let tls = match self {
            Transport::Tls(tls) => tls,
            Transport::Mux(mux) => return mux.below.seal(queue, pool),
            Transport::Plain | Transport::Carried { .. } => return Sealed::Ready,
        };
        if tls.wire.is_empty() && (!queue.is_empty() || tls.owes_key_update()) {
            match tls.encrypt(queue, pool) {
                Ok(true) => {}
                Ok(false) => return Sealed::Discard,
                Err(error) => return Sealed::Failed(error),
            }
        }
        if tls.exhausted() {
            return Sealed::KeyLimit;
        }
        Sealed::Ready
    }

    /// The bytes the socket writes: `queue` itself, or the TLS wire queue.
    pub fn wire<'a>(&'a mut self, queue: &'a mut Outbox) -> &'a mut Outbox {
        match self {
            Transport::Plain | Transport::Carried { .. } => queue,
            Transport::Tls(tls) => &mut tls.wire,
            Transport::Mux(mux) => mux.below.wire(queue),
        }
    }

    /// Bytes wait below the send queue (ciphertext not yet written).
    pub fn pending(&self) -> bool {
        match self {
            Transport::Tls(tls) => !tls.wire.is_empty(),
            Transport::Mux(mux) => mux.below.pending(),
            _ => false,
        }
    }

    /// Queues the transport's own goodbye before a graceful end (TLS
    /// close_notify, once); true if there is one to write first.
    pub fn goodbye(&mut self, pool: &mut BufferPool) -> bool {
        match self {
            Transport::Plain | Transport::Carried { .. } => false,
            Transport::Tls(tls) => tls.close_notify(pool),
            Transport::Mux(mux) => mux.below.goodbye(pool),
        }
    }

    /// The TLS session, if it is one.
    #[cfg(test)]
    pub fn tls(&self) -> Option<&Tls> {
        match self {
            Transport::Tls(tls) => Some(tls),
            _ => None,
        }
    }

    /// The TLS session, if it is one.
    #[cfg(test)]
    pub fn tls_mut(&mut self) -> Option<&mut Tls> {
        match self {
            Transport::Tls(tls) => Some(tls),
            _ => None,
        }
    }

    /// Where a frame sent outside a read may go at once: plain sockets write
    /// from where it lies; over TLS it is queued (the record layer lends
    /// itself only with the plaintext it opened); a carried stream's frames
    /// always go into DATA frames through its socket.
    pub fn direct(&self) -> bool {
        matches!(self, Transport::Plain)
    }
}

/// One read of a transport, step by step ([`Transport::read`]).
pub(crate) enum Reading<'a> {
    /// The bytes themselves, once.
    Plain(Option<(&'a mut [u8], &'a mut Vec<Range<usize>>)>),
    Tls(session::Reader<'a>),
}

impl Reading<'_> {
    /// The next step, or `None` when the read is used up. An error ends the
    /// read; over TLS its alert is queued.
    pub fn next(&mut self, pool: &mut BufferPool) -> Result<Option<Step<'_>>, TlsError> {
        match self {
            Reading::Plain(once) => Ok(once.take().map(|(bytes, runs)| Step::Plaintext {
                bytes,
                runs: runs.as_slice(),
                through: Through::Socket,
                http2: false,
            })),
            Reading::Tls(reader) => Ok(reader.next(pool)?.map(|step| match step {
                session::Step::Plaintext {
                    bytes,
                    runs,
                    sealer,
                    h2,
                } => Step::Plaintext {
                    bytes,
                    runs,
                    through: sealer.map_or(Through::Queue, Through::Records),
                    http2: h2,
                },
                session::Step::PeerClosed => Step::PeerClosed,
            })),
        }
    }
}
