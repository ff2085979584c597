//! One read of a TLS connection, taken step by step ([`Tls::read`]): segment
//! by segment (the stash while a record cut by an earlier read is completed,
//! then the read itself), each first through rustls while it has the session,
//! then through our record layer; what each opened comes back as a [`Step`]
//! for the caller to hand on. Nothing here calls up.

use std::ops::Range;

use super::{Received, Session, Tls};
use crate::transport::outbox::BufferPool;
use crate::transport::tls::framing::{MAX_STASH, top_up};
use crate::transport::tls::records::{Sealer, alert};
use crate::types::TlsError;

impl Tls {
    /// Reads ciphertext received from the socket: handshake records are
    /// answered into [`Self::wire`], and what the peer's records held comes
    /// back from [`Reader::next`], step by step, for the caller to hand on
    /// (nothing here calls up). Records of data are opened in place in `data`
    /// (or in the stash, for a record cut by the end of an earlier read);
    /// during the handshake rustls's unbuffered API hands out immutable
    /// slices, copied into `scratch` (the decoder unmasks in place). On an
    /// error, the alert owed to the peer is queued.
    pub fn read<'a>(
        &'a mut self,
        data: &'a mut [u8],
        scratch: &'a mut Vec<u8>,
        runs: &'a mut Vec<Range<usize>>,
    ) -> Reader<'a> {
        Reader {
            tls: self,
            data,
            scratch,
            runs,
            stage: Stage::Start,
            segment: Vec::new(),
            in_stash: false,
            fed: 0,
            used: 0,
            received: Received::Open,
            failed: None,
        }
    }
}

/// What one read of a TLS connection gave, step by step ([`Tls::read`]).
pub(crate) enum Step<'a> {
    /// Plaintext: the ranges `runs` of `bytes`, in order (mutable where they
    /// lie: the frame decoder unmasks in place). `sealer` is our record layer
    /// once it has the session, lent for frames sent from the callbacks on
    /// this plaintext (none during the handshake, or when the session is
    /// failing: what was opened before the failure still came first).
    Plaintext {
        bytes: &'a mut [u8],
        runs: &'a [Range<usize>],
        sealer: Option<Sealer<'a>>,
        /// The client chose HTTP/2 by ALPN: the plaintext is HTTP/2.
        h2: bool,
    },
    /// close_notify: nothing more comes; we may still send (a close reply,
    /// say) until our own close_notify.
    PeerClosed,
}

/// Where a read stands: segment by segment (the stash while a record cut by an
/// earlier read is completed, then the read itself), each first through
/// rustls while it has the session, then through our record layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Start,
    NextSegment,
    Records,
    EndSegment,
    Done,
}

/// One read of a TLS connection, taken step by step ([`Tls::read`]).
pub(crate) struct Reader<'a> {
    tls: &'a mut Tls,
    /// The read not yet taken into a segment.
    data: &'a mut [u8],
    scratch: &'a mut Vec<u8>,
    runs: &'a mut Vec<Range<usize>>,
    stage: Stage,
    /// The stash, taken out while it is the segment.
    segment: Vec<u8>,
    in_stash: bool,
    fed: usize,
    /// How far the session is in the segment.
    used: usize,
    received: Received,
    /// A failure that comes after the plaintext opened before it.
    failed: Option<TlsError>,
}

impl Reader<'_> {
    /// The next step, `None` once the read is used up (what is left of it is
    /// kept for the next); an error ends the session, its alert queued.
    pub fn next(&mut self, pool: &mut BufferPool) -> Result<Option<Step<'_>>, TlsError> {
        loop {
            match self.stage {
                Stage::Done => return Ok(None),
                Stage::Start => {
                    if self.data.is_empty() {
                        self.stage = Stage::Done;
                        continue;
                    }
                    self.stage = Stage::Done;
                    self.tls.start(self.data, pool)?;
                    self.stage = Stage::NextSegment;
                }
                Stage::NextSegment => {
                    if let Some(error) = self.failed.take() {
                        self.stage = Stage::Done;
                        return Err(error);
                    }
                    if !self.tls.stash.is_empty() {
                        let fed = self.tls.fed as usize;
                        let (taken, ready) = top_up(&mut self.tls.stash, fed, self.data);
                        self.data = &mut std::mem::take(&mut self.data)[taken..];
                        if self.tls.stash.len() > MAX_STASH {
                            // A handshake message that never ends (or is too
                            // long to be one), in records of any size.
                            self.stage = Stage::Done;
                            return Err(self.tls.malformed(alert::DECODE_ERROR, pool));
                        }
                        if !ready {
                            self.stage = Stage::Done;
                            continue;
                        }
                        self.segment = std::mem::take(&mut self.tls.stash);
                        self.in_stash = true;
                        self.fed = fed;
                    } else if !self.data.is_empty() {
                        self.in_stash = false;
                        self.fed = 0;
                    } else {
                        self.stage = Stage::Done;
                        continue;
                    }
                    self.scratch.clear();
                    self.runs.clear();
                    let Self {
                        tls,
                        data,
                        scratch,
                        runs,
                        segment,
                        ..
                    } = self;
                    let buf: &mut [u8] = if self.in_stash { segment } else { data };
                    let begun = tls.begin_segment(buf, self.fed, scratch, runs, pool);
                    let (used, received) = match begun {
                        Ok(begun) => begun,
                        Err(error) if self.runs.is_empty() => {
                            self.stage = Stage::Done;
                            return Err(error);
                        }
                        Err(error) => {
                            self.failed = Some(error);
                            (0, Received::Open)
                        }
                    };
                    self.used = used;
                    self.received = received;
                    self.stage = if self.failed.is_some() {
                        Stage::NextSegment
                    } else {
                        Stage::Records
                    };
                    if !self.runs.is_empty() {
                        return Ok(Some(Step::Plaintext {
                            bytes: &mut self.scratch[..],
                            runs: &self.runs[..],
                            sealer: None,
                            h2: self.tls.h2(),
                        }));
                    }
                }
                Stage::Records => {
                    self.stage = Stage::EndSegment;
                    if self.received == Received::PeerClosed {
                        continue;
                    }
                    self.runs.clear();
                    let Self {
                        tls,
                        data,
                        runs,
                        segment,
                        ..
                    } = self;
                    let buf: &mut [u8] = if self.in_stash { segment } else { data };
                    let used = self.used;
                    match tls.records_segment(&mut buf[used..], runs, pool) {
                        Ok((n, received)) => {
                            self.used += n;
                            self.received = received;
                        }
                        Err(error) => self.failed = Some(error),
                    }
                    if self.failed.is_some() {
                        self.stage = Stage::NextSegment;
                    }
                    if !self.runs.is_empty() {
                        let Self {
                            tls,
                            data,
                            runs,
                            segment,
                            failed,
                            ..
                        } = self;
                        let buf: &mut [u8] = if self.in_stash { segment } else { data };
                        let h2 = tls.h2;
                        let sealer = match (&mut tls.session, failed.is_none()) {
                            (Session::Records(records), true) => records.sealer(&mut tls.wire),
                            _ => None,
                        };
                        // The runs are relative to where the record layer began.
                        for run in runs.iter_mut() {
                            *run = run.start + used..run.end + used;
                        }
                        return Ok(Some(Step::Plaintext {
                            bytes: buf,
                            runs: &runs[..],
                            sealer,
                            h2,
                        }));
                    }
                }
                Stage::EndSegment => {
                    if self.received == Received::PeerClosed {
                        self.stage = Stage::Done;
                        return Ok(Some(Step::PeerClosed));
                    }
                    let segment = self.in_stash.then(|| std::mem::take(&mut self.segment));
                    let was_stash = segment.is_some();
                    if let Err(error) = self.tls.end_segment(segment, self.data, self.used, pool) {
                        self.stage = Stage::Done;
                        return Err(error);
                    }
                    if was_stash {
                        self.stage = Stage::NextSegment;
                    } else {
                        // The read is used up (what is left, stashed).
                        self.data = &mut [];
                        self.stage = Stage::Done;
                    }
                }
            }
        }
    }
}
