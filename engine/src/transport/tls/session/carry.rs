//! One connection's TLS as another process takes it over (a live
//! hand-over): our record layer's state ([`CarriedRecords`]) and the
//! ciphertext not yet written. Only an established session on our record
//! layer, between records (nothing cut, nothing held), goes.

use super::*;
use crate::transport::tls::records::CarriedRecords;

/// Why a TLS session cannot go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotNow {
    /// In the middle of something (a record cut by the end of a read): look
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
        if !self.stash.is_empty() || self.fed != 0 {
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

    /// The session another process carried over, its ciphertext `wire`
    /// queued first.
    pub fn carried(
        records: &CarriedRecords,
        wire: &[u8],
        pool: &mut BufferPool,
    ) -> Result<Self, &'static str> {
        let layer = RecordLayer::carried(records)?;
        let mut queue = Outbox::default();
        if !wire.is_empty() {
            queue.push_copy(pool, &[], wire);
        }
        Ok(Self {
            session: Session::Records(Box::new(layer)),
            wire: queue,
            stash: Vec::new(),
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
