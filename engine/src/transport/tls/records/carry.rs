//! The record layer as another process takes it over (a live hand-over):
//! each direction's suite, key, IV and next sequence number, the limits and
//! budgets left, and for TLS 1.3 the keys after one KeyUpdate each way,
//! derived here from rustls's key schedule (which cannot travel: the new
//! process answers one KeyUpdate per direction; a second ends the session
//! with an alert, `docs/HANDOVER.md`).

use super::*;

/// One direction's keys, as bytes.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct CarriedDirection {
    /// 1: AES-128-GCM, 2: AES-256-GCM, 3: ChaCha20-Poly1305.
    pub suite: u8,
    pub key: Vec<u8>,
    pub iv: [u8; NONCE_LEN],
    pub seq: u64,
}

impl std::fmt::Debug for CarriedDirection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("CarriedDirection")
            .field("suite", &self.suite)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// A whole record layer, as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CarriedRecords {
    pub tls13: bool,
    pub rx: CarriedDirection,
    pub tx: CarriedDirection,
    /// TLS 1.3: the keys after the next KeyUpdate, each way.
    pub next_rx: Option<CarriedDirection>,
    pub next_tx: Option<CarriedDirection>,
    pub tx_limit: u64,
    /// Warnings, KeyUpdates, empty records and renegotiations still allowed.
    pub allowances: [u8; 4],
}

impl Direction {
    fn carry(&self) -> CarriedDirection {
        let suite = if self.algorithm == &aead::AES_128_GCM {
            1
        } else if self.algorithm == &aead::AES_256_GCM {
            2
        } else {
            3
        };
        CarriedDirection {
            suite,
            key: self.key.bytes().to_vec(),
            iv: self.iv,
            seq: self.seq,
        }
    }

    fn carried(version: Version, c: &CarriedDirection) -> Result<Self, &'static str> {
        let (algorithm, gcm) = match c.suite {
            1 => (&aead::AES_128_GCM, true),
            2 => (&aead::AES_256_GCM, true),
            3 => (&aead::CHACHA20_POLY1305, false),
            _ => return Err("unknown cipher suite"),
        };
        if c.key.len() != algorithm.key_len() {
            return Err("key of the wrong length");
        }
        Ok(Self::from_parts(
            algorithm,
            KeyBytes::new(&c.key),
            c.iv,
            gcm && version == Version::Tls12,
            c.seq,
        ))
    }
}

impl RecordLayer {
    /// Its state for another process, or why it cannot go (closing, a
    /// KeyUpdate owed, a TLS 1.2 key near its end). For TLS 1.3 the next
    /// keys are derived now and kept here too, so that this layer stays
    /// usable if the connection stays.
    pub fn carry(&mut self) -> Result<CarriedRecords, &'static str> {
        if self.closed || self.peer_closed {
            return Err("its TLS session is closing");
        }
        if self.key_update_owed {
            return Err("a TLS KeyUpdate is owed");
        }
        if self.exhausted {
            return Err("its TLS 1.2 key is near its limit");
        }
        if let Some(Schedule::Rustls(_)) = self.schedule.as_deref() {
            let rx = self.next_rx().map_err(|_| "TLS key schedule")?;
            let tx = self.next_tx().map_err(|_| "TLS key schedule")?;
            self.schedule = Some(Box::new(Schedule::Carried {
                rx: Some(rx),
                tx: Some(tx),
            }));
        }
        let (next_rx, next_tx) = match self.schedule.as_deref() {
            Some(Schedule::Carried { rx, tx }) => (
                rx.as_ref().map(Direction::carry),
                tx.as_ref().map(Direction::carry),
            ),
            _ => (None, None),
        };
        Ok(CarriedRecords {
            tls13: self.version == Version::Tls13,
            rx: self.rx.carry(),
            tx: self.tx.carry(),
            next_rx,
            next_tx,
            tx_limit: self.tx_limit,
            allowances: [
                self.warnings_allowed,
                self.key_updates_allowed,
                self.empty_records_allowed,
                self.renegotiations_allowed,
            ],
        })
    }

    /// The record layer another process carried over.
    pub fn carried(c: &CarriedRecords) -> Result<Self, &'static str> {
        let version = if c.tls13 {
            Version::Tls13
        } else {
            Version::Tls12
        };
        let next = |d: &Option<CarriedDirection>| {
            d.as_ref()
                .map(|d| Direction::carried(version, d))
                .transpose()
        };
        let schedule = match version {
            Version::Tls13 => Some(Box::new(Schedule::Carried {
                rx: next(&c.next_rx)?,
                tx: next(&c.next_tx)?,
            })),
            Version::Tls12 => None,
        };
        let [warnings, key_updates, empty, renegotiations] = c.allowances;
        Ok(Self {
            version,
            rx: Direction::carried(version, &c.rx)?,
            tx: Direction::carried(version, &c.tx)?,
            schedule,
            tx_limit: c.tx_limit,
            warnings_allowed: warnings.min(WARNINGS_ALLOWED),
            key_updates_allowed: key_updates.min(KEY_UPDATES_ALLOWED),
            empty_records_allowed: empty.min(EMPTY_RECORDS_ALLOWED),
            renegotiations_allowed: renegotiations.min(RENEGOTIATIONS_ALLOWED),
            key_update_owed: false,
            exhausted: false,
            peer_closed: false,
            closed: false,
        })
    }
}
