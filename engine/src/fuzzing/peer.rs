//! The harness's own client record layer, written apart from the one under
//! test (RFC 8446 §5.2-5.4 and §7.1-7.3; RFC 5246 §6.2.3.3 with RFC 5288 §3
//! and RFC 7905 §2), on the keys the rustls client exports at the end of the
//! handshake. For TLS 1.3 it derives the keys after a KeyUpdate itself, from
//! the traffic secrets rustls logs (the labels of SSLKEYLOGFILE), so that the
//! server's KeyUpdate (through rustls's key schedule) is checked against an
//! independent derivation.

use std::sync::Mutex;

use ring::aead::{self, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets, KeyLog};

const TAG: usize = 16;
const EXPLICIT_NONCE: usize = 8;
pub(super) const HEADER: usize = 5;

/// The secrets rustls logs for one connection (its [`KeyLog`]).
#[derive(Debug, Default)]
pub(super) struct LoggedSecrets(Mutex<Vec<(String, Vec<u8>)>>);

impl KeyLog for LoggedSecrets {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((label.to_owned(), secret.to_vec()));
    }
}

impl LoggedSecrets {
    fn get(&self, label: &str) -> Vec<u8> {
        let logged = self.0.lock().unwrap_or_else(|p| p.into_inner());
        logged
            .iter()
            .rev()
            .find(|(l, _)| l == label)
            .map(|(_, secret)| secret.clone())
            .unwrap_or_else(|| panic!("rustls logged no {label}"))
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(hash: hkdf::Algorithm, secret: &[u8], label: &[u8], len: usize) -> Vec<u8> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let full_label = [b"tls13 ", label].concat();
    let info: [&[u8]; 4] = [
        &(len as u16).to_be_bytes(),
        &[full_label.len() as u8],
        &full_label,
        &[0],
    ];
    let mut out = vec![0; len];
    hkdf::Prk::new_less_safe(hash, secret)
        .expand(&info, Len(len))
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF-Expand-Label of a valid length");
    out
}

/// One direction: its key, nonce base, sequence number and, for TLS 1.3, the
/// traffic secret the next key is derived from.
struct Direction {
    algorithm: &'static aead::Algorithm,
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
    /// TLS 1.2 AES-GCM: 8 bytes of the nonce travel in each record.
    explicit: bool,
    secret: Option<(hkdf::Algorithm, Vec<u8>)>,
}

impl Direction {
    fn new(
        (seq, secrets): (u64, ConnectionTrafficSecrets),
        tls13: bool,
        secret: Option<(hkdf::Algorithm, Vec<u8>)>,
    ) -> Self {
        let (algorithm, key, iv, gcm) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv, true),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv, true),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv, false)
            }
            _ => panic!("not a suite our record layer runs"),
        };
        let mut direction = Self {
            algorithm,
            key: LessSafeKey::new(
                UnboundKey::new(algorithm, key.as_ref()).expect("a key of the right length"),
            ),
            iv: iv.as_ref().try_into().expect("a 12-byte iv"),
            seq,
            explicit: gcm && !tls13,
            secret: None,
        };
        if let Some((hash, secret)) = secret {
            // Our derivation from the logged secret gives the keys rustls
            // exported: the KeyUpdates that follow are derived the same way.
            let (derived_key, derived_iv) = direction.derive(hash, &secret);
            assert_eq!(
                derived_key,
                key.as_ref(),
                "traffic key from the logged secret"
            );
            assert_eq!(derived_iv, direction.iv, "iv from the logged secret");
            direction.secret = Some((hash, secret));
        }
        direction
    }

    fn derive(&self, hash: hkdf::Algorithm, secret: &[u8]) -> (Vec<u8>, [u8; NONCE_LEN]) {
        let key = expand_label(hash, secret, b"key", self.algorithm.key_len());
        let iv = expand_label(hash, secret, b"iv", NONCE_LEN);
        (key, iv.try_into().expect("12 bytes"))
    }

    /// TLS 1.3 KeyUpdate (RFC 8446 §7.2): the next traffic secret, its key and
    /// iv, from sequence number 0.
    fn update(&mut self) {
        let (hash, secret) = self.secret.take().expect("TLS 1.3 keeps its secret");
        let hash_len = hkdf::KeyType::len(&hash);
        let next = expand_label(hash, &secret, b"traffic upd", hash_len);
        let (key, iv) = self.derive(hash, &next);
        self.key = LessSafeKey::new(UnboundKey::new(self.algorithm, &key).expect("a key"));
        self.iv = iv;
        self.seq = 0;
        self.secret = Some((hash, next));
    }

    fn nonce(&self) -> [u8; NONCE_LEN] {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }
}

/// TLS 1.2's additional data: sequence number, type, version, length.
fn tls12_aad(seq: u64, typ: u8, version: [u8; 2], len: usize) -> Vec<u8> {
    let mut aad = seq.to_be_bytes().to_vec();
    aad.push(typ);
    aad.extend_from_slice(&version);
    aad.extend_from_slice(&(len as u16).to_be_bytes());
    aad
}

/// The client's side of the session, once rustls handed its keys over.
pub(super) struct Peer {
    tls13: bool,
    tx: Direction,
    rx: Direction,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("tls13", &self.tls13)
            .field("tx_seq", &self.tx.seq)
            .field("rx_seq", &self.rx.seq)
            .finish_non_exhaustive()
    }
}

/// Content type of an alert, a handshake message, application data.
pub(super) const ALERT: u8 = 21;
pub(super) const HANDSHAKE: u8 = 22;
pub(super) const APPLICATION_DATA: u8 = 23;

impl Peer {
    /// From the rustls client's exported keys; for TLS 1.3, with the traffic
    /// secrets it logged (`hash`: the suite's HKDF hash).
    pub fn new(
        secrets: ExtractedSecrets,
        logged: Option<(&LoggedSecrets, hkdf::Algorithm)>,
    ) -> Self {
        let tls13 = logged.is_some();
        let secret = |label: &str| logged.map(|(log, hash)| (hash, log.get(label)));
        Self {
            tls13,
            tx: Direction::new(secrets.tx, tls13, secret("CLIENT_TRAFFIC_SECRET_0")),
            rx: Direction::new(secrets.rx, tls13, secret("SERVER_TRAFFIC_SECRET_0")),
        }
    }

    /// The length of the record [`Self::seal`] makes of `content` and
    /// `padding`, header included.
    pub fn sealed_len(&self, content: usize, padding: usize) -> usize {
        if self.tls13 {
            HEADER + content + 1 + padding + TAG
        } else if self.tx.explicit {
            HEADER + EXPLICIT_NONCE + content + TAG
        } else {
            HEADER + content + TAG
        }
    }

    /// One record of type `typ` holding `content` (TLS 1.3: the inner type,
    /// then `padding` zeros, under the outer type application_data). The
    /// record must fit the header's 16-bit length.
    pub fn seal(&mut self, typ: u8, content: &[u8], padding: usize) -> Vec<u8> {
        let len = self.sealed_len(content.len(), padding) - HEADER;
        let len = u16::try_from(len).expect("a record length fits 16 bits");
        let d = &mut self.tx;
        let nonce = d.nonce();
        let mut body = content.to_vec();
        let (outer, aad) = if self.tls13 {
            body.push(typ);
            body.resize(body.len() + padding, 0);
            let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
            (APPLICATION_DATA, header.to_vec())
        } else {
            (typ, tls12_aad(d.seq, typ, [3, 3], content.len()))
        };
        let tag = d
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut body,
            )
            .expect("sealing within the AEAD's limits");
        d.seq += 1;
        let mut record = vec![outer, 3, 3, (len >> 8) as u8, len as u8];
        if d.explicit {
            record.extend_from_slice(&nonce[4..]);
        }
        record.extend_from_slice(&body);
        record.extend_from_slice(tag.as_ref());
        record
    }

    /// After sending a KeyUpdate (TLS 1.3).
    pub fn update_tx(&mut self) {
        self.tx.update();
    }

    /// After receiving a KeyUpdate (TLS 1.3).
    pub fn update_rx(&mut self) {
        self.rx.update();
    }

    /// Opens the next of the server's records in `bytes`: its content type
    /// and content, and the bytes it took; `None` once `bytes` holds no whole
    /// record. Panics if the record does not open: the server only ever sends
    /// records its peer can read.
    pub fn open(&mut self, bytes: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
        let header: [u8; HEADER] = bytes.get(..HEADER)?.try_into().ok()?;
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let record = bytes.get(..HEADER + len)?;
        let d = &mut self.rx;
        let mut body = record[HEADER..].to_vec();
        let (nonce, aad, skip) = if self.tls13 {
            assert_eq!(header[0], APPLICATION_DATA, "TLS 1.3 outer type");
            (d.nonce(), header.to_vec(), 0)
        } else if d.explicit {
            assert!(len >= EXPLICIT_NONCE + TAG, "record too short: {len}");
            let mut nonce = d.iv;
            nonce[4..].copy_from_slice(&body[..EXPLICIT_NONCE]);
            let aad = tls12_aad(d.seq, header[0], [header[1], header[2]], len - 24);
            (nonce, aad, EXPLICIT_NONCE)
        } else {
            assert!(len >= TAG, "record too short: {len}");
            let aad = tls12_aad(d.seq, header[0], [header[1], header[2]], len - TAG);
            (d.nonce(), aad, 0)
        };
        assert_eq!(header[1..3], [3, 3], "record version");
        let plain = d
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut body[skip..],
            )
            .unwrap_or_else(|_| panic!("the server's record {} opens", d.seq))
            .to_vec();
        d.seq += 1;
        assert!(plain.len() <= (16 << 10) + 1, "record overflow");
        if !self.tls13 {
            return Some((header[0], plain, record.len()));
        }
        let end = plain
            .iter()
            .rposition(|&b| b != 0)
            .expect("the server's TLS 1.3 record has a content type");
        Some((plain[end], plain[..end].to_vec(), record.len()))
    }
}
