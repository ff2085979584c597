//! One connection's TLS as another process takes it over (a live
//! hand-over): our record layer's state ([`CarriedRecords`]) and the
//! ciphertext not yet written, and the start of a record cut by the end of
//! a read ([`Tls::partial_record`]: its sequence number is the record
//! layer's next, carried with the keys). Only an established session on
//! our record layer (rustls holding nothing back) goes.

use super::*;
use crate::transport::tls::framing::{MAX_BODY, Records, walk};
use crate::transport::tls::records::CarriedRecords;

/// Why a TLS session cannot go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotNow {
    /// In the middle of something (rustls still holds records back): look
    /// again later.
    Wait,
    /// Never: the reason.
    Refuse(&'static str),
}

impl Tls {
    /// Its state and its ciphertext not yet written, for another process.
    pub fn carry(&mut self) -> Result<(CarriedRecords, Vec<u8>), NotNow> {
        if !self.established || self.h2 {
            return Err(NotNow::Refuse("TLS not established, or HTTP/2"));
        }
        if self.close_notified {
            return Err(NotNow::Refuse("its TLS session is closing"));
        }
        // After the handshake the stash is at most one cut record, which
        // travels ([`Self::partial_record`]); `fed` is rustls's, and it has
        // no more to do with an established session on our record layer.
        if self.fed != 0 {
            return Err(NotNow::Wait);
        }
        let records = match &mut self.session {
            Session::Records(records) => records.carry().map_err(NotNow::Refuse)?,
            _ => {
                return Err(NotNow::Refuse(
                    "rustls keeps its session (secret extraction is off)",
                ));
            }
        };
        let mut wire = Vec::with_capacity(self.wire.len());
        self.wire.copy_front(self.wire.len(), &mut wire);
        Ok((records, wire))
    }

    /// The start of a record cut by the end of a read (empty between
    /// records): it travels with the keys, and the new process's first read
    /// completes it.
    pub fn partial_record(&self) -> &[u8] {
        &self.stash
    }

    /// The session another process carried over, its ciphertext `wire`
    /// queued first and the cut record `partial` waiting for its rest.
    pub fn carried(
        records: &CarriedRecords,
        wire: &[u8],
        partial: &[u8],
        pool: &mut BufferPool,
    ) -> Result<Self, &'static str> {
        // Only one record, cut: what a read of ours could have left (a
        // whole record would have been opened; a longer header refused).
        if !partial.is_empty()
            && (partial.len() > HEADER + MAX_BODY || !matches!(walk(partial), Records::Partial(_)))
        {
            return Err("a cut TLS record that is not one");
        }
        let layer = RecordLayer::carried(records)?;
        let mut queue = Outbox::default();
        if !wire.is_empty() {
            queue.push_copy(pool, &[], wire);
        }
        Ok(Self {
            session: Session::Records(Box::new(layer)),
            wire: queue,
            stash: partial.to_vec(),
            fed: 0,
            fresh: false,
            spoke: true,
            established: true,
            close_notified: false,
            hand_over: true,
            h2: false,
        })
    }
}
