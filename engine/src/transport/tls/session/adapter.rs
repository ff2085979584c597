//! The shape the tests and the fuzz targets drive a session through: every
//! step of a read handed to a callback ([`Upper`]), as the worker's
//! `receive` does with its own loop. Not built into the engine.

use super::{Received, Step, Tls};
use crate::transport::outbox::BufferPool;
#[cfg(feature = "fuzzing")]
use crate::transport::tls::framing::MAX_BODY;
#[cfg(feature = "fuzzing")]
use crate::transport::tls::records::HEADER;
use crate::transport::tls::records::Sealer;
use crate::types::TlsError;

/// What the tests hand a read's plaintext to (the worker's dispatch does this
/// in production).
pub(crate) trait Upper {
    fn pool(&mut self) -> &mut BufferPool;
    fn deliver(&mut self, plain: &mut [u8], sealer: Option<Sealer<'_>>);
}

impl Tls {
    /// Every step of one read handed to `up`, as the worker does: whether the
    /// peer closed, or the error.
    pub(crate) fn receive(
        &mut self,
        data: &mut [u8],
        scratch: &mut Vec<u8>,
        up: &mut impl Upper,
    ) -> Result<Received, TlsError> {
        let mut runs = Vec::new();
        let mut pool = std::mem::take(up.pool());
        let mut reader = self.read(data, scratch, &mut runs);
        let result = loop {
            match reader.next(&mut pool) {
                Ok(Some(Step::Plaintext {
                    bytes,
                    runs,
                    mut sealer,
                    ..
                })) => {
                    for run in runs {
                        up.deliver(
                            &mut bytes[run.clone()],
                            sealer.as_mut().map(|s| s.reborrow()),
                        );
                    }
                }
                Ok(Some(Step::PeerClosed)) => break Ok(Received::PeerClosed),
                Ok(None) => break Ok(Received::Open),
                Err(error) => break Err(error),
            }
        };
        *up.pool() = pool;
        result
    }
}

/// The most a connection on our record layer keeps across reads: one record
/// cut by the end of a read (the largest a peer may send).
#[cfg(feature = "fuzzing")]
pub(crate) const MAX_RECORD_STASH: usize = HEADER + MAX_BODY;

#[cfg(feature = "fuzzing")]
impl Tls {
    /// Bytes allocated for the record cut by the end of a read.
    pub(crate) fn stash_capacity(&self) -> usize {
        self.stash.capacity()
    }

    /// Our record layer runs the session (rustls handed it over).
    pub(crate) fn on_own_records(&self) -> bool {
        matches!(self.session, super::Session::Records(_))
    }
}
