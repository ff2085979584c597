//! The control protocol's messages, one per `SOCK_SEQPACKET` message,
//! versioned and checked on the way in (each side reads the other's bytes
//! as input it does not trust: bounded lengths, clear errors).
//!
//! ```text
//! new -> old  Hello     u8 1, u16 major, u16 minor, u8 flags (bit 0: it adopts
//!                       connections), u16 nonce length + nonce
//! old -> new  Refused   u8 2, u16 length + UTF-8 reason
//! old -> new  Listeners u8 3, u16 count, each: u8 tls, u16 address index;
//!                       the listening sockets ride along (SCM_RIGHTS), in order
//! new -> old  Ready     u8 4 (its workers serve the listeners)
//! old -> new  Batch     u8 5, u16 count, each: u32 length + a connection's
//!                       record (runtime::handover::wire); one socket each
//! old -> new  Done      u8 6, u64 handed over, u64 closed with 1012
//! ```
//!
//! A different major version is refused (the old process then shuts down as
//! a plain restart does: 1001 to every connection).

use thiserror::Error;

/// The protocol's major version: a new process of another major version is
/// refused. The minor version may differ.
pub(crate) const MAJOR: u16 = 1;
pub(crate) const MINOR: u16 = 0;

/// How a refusal for another major version begins (the new process then
/// starts beside the old one, which shuts down with 1001).
pub(crate) const VERSION_REFUSAL: &str = "version:";

/// The longest nonce read from the nonce file.
pub(crate) const MAX_NONCE: usize = 4096;

/// One listening socket's place: which configured address (plain ones
/// first, then TLS ones) it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListenerSlot {
    pub tls: bool,
    pub index: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message {
    Hello {
        major: u16,
        minor: u16,
        adopts: bool,
        nonce: Vec<u8>,
    },
    Refused(String),
    Listeners(Vec<ListenerSlot>),
    Ready,
    Batch(Vec<Vec<u8>>),
    Done {
        handed: u64,
        refused: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum ProtoError {
    #[error("empty message: the other process went away")]
    Gone,
    #[error("unknown message type {0}")]
    Unknown(u8),
    #[error("message cut short")]
    Truncated,
    #[error("{0} too long")]
    TooLong(&'static str),
    #[error("invalid {0}")]
    Invalid(&'static str),
    #[error("{0} bytes after the message")]
    Trailing(usize),
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Message::Hello {
                major,
                minor,
                adopts,
                nonce,
            } => {
                out.push(1);
                out.extend_from_slice(&major.to_le_bytes());
                out.extend_from_slice(&minor.to_le_bytes());
                out.push(u8::from(*adopts));
                out.extend_from_slice(&(nonce.len() as u16).to_le_bytes());
                out.extend_from_slice(nonce);
            }
            Message::Refused(reason) => {
                out.push(2);
                let reason = &reason.as_bytes()[..reason.len().min(1024)];
                out.extend_from_slice(&(reason.len() as u16).to_le_bytes());
                out.extend_from_slice(reason);
            }
            Message::Listeners(slots) => {
                out.push(3);
                out.extend_from_slice(&(slots.len() as u16).to_le_bytes());
                for slot in slots {
                    out.push(u8::from(slot.tls));
                    out.extend_from_slice(&slot.index.to_le_bytes());
                }
            }
            Message::Ready => out.push(4),
            Message::Batch(records) => {
                out.push(5);
                out.extend_from_slice(&(records.len() as u16).to_le_bytes());
                for record in records {
                    out.extend_from_slice(&(record.len() as u32).to_le_bytes());
                    out.extend_from_slice(record);
                }
            }
            Message::Done { handed, refused } => {
                out.push(6);
                out.extend_from_slice(&handed.to_le_bytes());
                out.extend_from_slice(&refused.to_le_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader(bytes);
        let Some(&kind) = bytes.first() else {
            return Err(ProtoError::Gone);
        };
        r.take(1)?;
        let message = match kind {
            1 => {
                let major = r.u16()?;
                let minor = r.u16()?;
                let adopts = match r.take(1)?[0] {
                    0 => false,
                    1 => true,
                    _ => return Err(ProtoError::Invalid("hello flags")),
                };
                let len = usize::from(r.u16()?);
                if len > MAX_NONCE {
                    return Err(ProtoError::TooLong("nonce"));
                }
                Message::Hello {
                    major,
                    minor,
                    adopts,
                    nonce: r.take(len)?.to_vec(),
                }
            }
            2 => {
                let len = usize::from(r.u16()?);
                let reason = String::from_utf8_lossy(r.take(len)?).into_owned();
                Message::Refused(reason)
            }
            3 => {
                let count = usize::from(r.u16()?);
                if count > super::unix::MAX_FDS {
                    return Err(ProtoError::TooLong("listener list"));
                }
                let mut slots = Vec::with_capacity(count);
                for _ in 0..count {
                    let tls = match r.take(1)?[0] {
                        0 => false,
                        1 => true,
                        _ => return Err(ProtoError::Invalid("listener")),
                    };
                    slots.push(ListenerSlot {
                        tls,
                        index: r.u16()?,
                    });
                }
                Message::Listeners(slots)
            }
            4 => Message::Ready,
            5 => {
                let count = usize::from(r.u16()?);
                if count > super::unix::MAX_FDS {
                    return Err(ProtoError::TooLong("batch"));
                }
                let mut records = Vec::with_capacity(count);
                for _ in 0..count {
                    let len = r.u32()? as usize;
                    records.push(r.take(len)?.to_vec());
                }
                Message::Batch(records)
            }
            6 => Message::Done {
                handed: r.u64()?,
                refused: r.u64()?,
            },
            other => return Err(ProtoError::Unknown(other)),
        };
        if !r.0.is_empty() {
            return Err(ProtoError::Trailing(r.0.len()));
        }
        Ok(message)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if self.0.len() < n {
            return Err(ProtoError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, ProtoError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().unwrap_or_default(),
        ))
    }

    fn u32(&mut self) -> Result<u32, ProtoError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }

    fn u64(&mut self) -> Result<u64, ProtoError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
}

/// Compares two nonces in time that does not depend on where they differ.
pub(crate) fn same_nonce(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_survives_the_trip_and_every_cut_is_refused() {
        let messages = [
            Message::Hello {
                major: MAJOR,
                minor: MINOR,
                adopts: true,
                nonce: b"secret".to_vec(),
            },
            Message::Refused("protocol version 2".into()),
            Message::Listeners(vec![
                ListenerSlot {
                    tls: false,
                    index: 0,
                },
                ListenerSlot {
                    tls: true,
                    index: 1,
                },
            ]),
            Message::Ready,
            Message::Batch(vec![vec![1, 2, 3], vec![]]),
            Message::Done {
                handed: 7,
                refused: 1,
            },
        ];
        for message in messages {
            let bytes = message.encode();
            assert_eq!(Message::decode(&bytes), Ok(message.clone()));
            for cut in 1..bytes.len() {
                assert_eq!(
                    Message::decode(&bytes[..cut]),
                    Err(ProtoError::Truncated),
                    "{message:?} cut at {cut}"
                );
            }
        }
        assert_eq!(Message::decode(&[]), Err(ProtoError::Gone));
        assert_eq!(Message::decode(&[9]), Err(ProtoError::Unknown(9)));
        assert_eq!(Message::decode(&[4, 0]), Err(ProtoError::Trailing(1)));
        let mut long_nonce = vec![1, 1, 0, 0, 0, 0];
        long_nonce.extend_from_slice(&((MAX_NONCE + 1) as u16).to_le_bytes());
        assert_eq!(
            Message::decode(&long_nonce),
            Err(ProtoError::TooLong("nonce"))
        );
    }

    #[test]
    fn nonces_compare_whole() {
        assert!(same_nonce(b"abc", b"abc"));
        assert!(!same_nonce(b"abc", b"abd"));
        assert!(!same_nonce(b"abc", b"abcd"));
    }
}
