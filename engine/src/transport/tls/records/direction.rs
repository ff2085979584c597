//! One direction of the record layer: its traffic key (kept as bytes,
//! zeroed when dropped), nonce base and sequence number.

use ring::aead::{self, LessSafeKey, NONCE_LEN, UnboundKey};
use rustls::ConnectionTrafficSecrets;

use super::{Fatal, Version, alert};

/// One direction's key, nonce base and sequence number. The key is kept as
/// the bytes rustls exported (zeroed when dropped), and expanded into an AEAD
/// key (AES round keys and GHASH tables, 544 bytes) only while the direction
/// is busy: made at its first use, kept from read to read and flush to flush,
/// and dropped by the worker's timer sweep once a whole tick passed without
/// one ([`Self::release_idle`]). An idle connection holds 32 bytes of key; a
/// busy one does not expand its keys twice per echoed message (at 100 x 20 B
/// over wss that was about 15% of the server's user-space time).
pub(super) struct Direction {
    pub(super) algorithm: &'static aead::Algorithm,
    pub(super) key: KeyBytes,
    pub(super) iv: [u8; NONCE_LEN],
    /// TLS 1.2 AES-GCM: the nonce is the iv's first 4 bytes (the salt) and 8
    /// explicit bytes, sent in each record.
    pub(super) explicit_nonce: bool,
    pub(super) seq: u64,
    /// The expanded key while the direction is busy.
    expanded: Option<Box<LessSafeKey>>,
    /// Used since the last sweep.
    used: bool,
}

impl Direction {
    pub(super) fn new(
        version: Version,
        secrets: ConnectionTrafficSecrets,
        seq: u64,
    ) -> Result<Self, Fatal> {
        let (algorithm, key, iv, gcm) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv, true),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv, true),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv, false)
            }
            _ => return Err(Fatal::alert(alert::INTERNAL_ERROR)),
        };
        if key.as_ref().len() != algorithm.key_len() {
            return Err(Fatal::alert(alert::INTERNAL_ERROR));
        }
        let iv = <[u8; NONCE_LEN]>::try_from(iv.as_ref())
            .map_err(|_| Fatal::alert(alert::INTERNAL_ERROR))?;
        Ok(Self::from_parts(
            algorithm,
            KeyBytes::new(key.as_ref()),
            iv,
            gcm && version == Version::Tls12,
            seq,
        ))
    }

    /// A direction from its parts, its key not yet expanded.
    pub(super) fn from_parts(
        algorithm: &'static aead::Algorithm,
        key: KeyBytes,
        iv: [u8; NONCE_LEN],
        explicit_nonce: bool,
        seq: u64,
    ) -> Self {
        Self {
            algorithm,
            key,
            iv,
            explicit_nonce,
            seq,
            expanded: None,
            used: false,
        }
    }

    /// The expanded AEAD key, lent out while records are opened or sealed
    /// with it (the record layer is borrowed mutably meanwhile); give it back
    /// with [`Self::keep_key`]. A key taken before a KeyUpdate is dropped,
    /// not given back: the new direction expands its own.
    pub(super) fn take_key(&mut self) -> Result<Box<LessSafeKey>, Fatal> {
        self.used = true;
        match self.expanded.take() {
            Some(key) => Ok(key),
            None => self.expand().map(Box::new),
        }
    }

    /// Keeps the key [`Self::take_key`] lent, for the next read or flush.
    pub(super) fn keep_key(&mut self, key: Box<LessSafeKey>) {
        self.expanded = Some(key);
    }

    #[cfg(test)]
    pub(super) fn expanded(&self) -> bool {
        self.expanded.is_some()
    }

    /// The timer sweep: the expanded key goes if it was not used since the
    /// last sweep.
    pub(super) fn release_idle(&mut self) {
        if !std::mem::take(&mut self.used) {
            self.expanded = None;
        }
    }

    /// The key expanded anew.
    fn expand(&self) -> Result<LessSafeKey, Fatal> {
        UnboundKey::new(self.algorithm, self.key.bytes())
            .map(LessSafeKey::new)
            .map_err(|_| Fatal::alert(alert::INTERNAL_ERROR))
    }

    /// The nonce of record `seq`: iv ⊕ seq (TLS 1.3, TLS 1.2 ChaCha20, and the
    /// explicit part we choose for TLS 1.2 AES-GCM, as rustls does).
    pub(super) fn nonce(&self) -> [u8; NONCE_LEN] {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }

    /// The sequence number of the next record, advanced. The last one is never
    /// used, so the count cannot wrap.
    pub(super) fn next_seq(&mut self) -> Result<u64, Fatal> {
        let seq = self.seq;
        if seq == u64::MAX {
            return Err(Fatal(None));
        }
        self.seq += 1;
        Ok(seq)
    }
}

/// A traffic key's bytes (at most 32), zeroed when dropped.
pub(super) struct KeyBytes {
    bytes: [u8; 32],
    len: u8,
}

impl KeyBytes {
    pub(super) fn new(key: &[u8]) -> Self {
        let mut bytes = [0; 32];
        let len = key.len().min(32);
        bytes[..len].copy_from_slice(&key[..len]);
        Self {
            bytes,
            len: len as u8,
        }
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl Drop for KeyBytes {
    fn drop(&mut self) {
        for byte in &mut self.bytes {
            // SAFETY: a write through a valid, aligned reference to a byte
            // this struct owns; volatile so that the zeroing is not elided.
            unsafe { std::ptr::write_volatile(byte, 0) };
        }
    }
}
