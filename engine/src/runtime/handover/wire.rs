//! A [`Snapshot`] as bytes: versioned, every length bounded, every value
//! checked on the way in. The new process reads what the old one wrote as
//! input it does not trust: a bad record is refused with the reason
//! ([`WireError`]), never a panic.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! u8 RECORD_VERSION
//! peer:    u8 4|6, 4|16 bytes address, u16 port
//! deflate: u8 0 off | 1 shared | 2 own, u8 window, u8 level
//! u8 flags (bit 0: stalled)
//! u32 silent_ms, u32 ping_ms (u32::MAX: no ping outstanding)
//! limiter: u8 0|1; then u8 flags (bit 0: close policy, bit 1: tripped),
//!          two buckets (messages, bytes): u8 0|1, then 3 x i64
//! topics:  u16 count, each u16 length + UTF-8
//! data:    u32 length + bytes
//! outbox:  u32 length + bytes
//! tls:     u8 0|1; then u8 1.3?, rx and tx directions, next rx and next tx
//!          (each u8 0|1, then a direction), u64 tx limit, 4 x u8 budgets,
//!          u32 length + ciphertext not yet written
//!          direction: u8 suite, u8 key length + key, 12 bytes IV, u64 seq
//! deflate context (only where deflate is 2, own codecs): u8 the peer's
//!          window (8..=15), u8 flags (bit 0: we reset after each message,
//!          bit 1: the peer does), u16 length + our compressor's window,
//!          u16 length + our decompressor's window (each at most 32 KiB,
//!          empty where that side resets)
//! read side: the decoder's state, bytes held, a cut TLS record
//!          (`partial`)
//! ```
//!
//! The whole record is at most [`MAX_RECORD`] bytes (one message of the
//! control socket): [`fits`] says so before the old process lets a
//! connection go.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::bytes::Reader;
pub(crate) use super::bytes::WireError;
use super::partial;
use super::state::{MAX_DATA, MAX_OUTBOX, MAX_RECORD, MAX_TOPIC_LEN, MAX_TOPICS, Snapshot};
use crate::proto::session::DeflateCarry;
use crate::runtime::ratelimit::CarriedLimiter;
use crate::transport::CarriedRecords;
use crate::transport::tls::records::CarriedDirection;

#[path = "wire_deflate.rs"]
mod deflate;

/// The record layout's version; a record of another is refused (its byte
/// stream's position is unknown, so the connection is aborted and counted).
pub(crate) const RECORD_VERSION: u8 = 1;

/// The bytes of `snapshot`.
pub(crate) fn encode(s: &Snapshot) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + s.outbox.len() + s.data.len());
    out.push(RECORD_VERSION);
    match s.peer.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&s.peer.port().to_le_bytes());
    let (kind, window, level) = match &s.deflate {
        DeflateCarry::Off => (0, 0, 0),
        DeflateCarry::Shared(window) => (1, *window, 0),
        DeflateCarry::Own { window, level, .. } => (2, *window, *level as u8),
    };
    out.extend_from_slice(&[kind, window, level, u8::from(s.stalled)]);
    out.extend_from_slice(&s.silent_ms.to_le_bytes());
    out.extend_from_slice(&s.ping_ms.unwrap_or(u32::MAX).to_le_bytes());
    match &s.limiter {
        None => out.push(0),
        Some(l) => {
            out.push(1);
            out.push(u8::from(l.close_policy) | u8::from(l.tripped) << 1);
            for bucket in [l.messages, l.bytes] {
                match bucket {
                    None => out.push(0),
                    Some(values) => {
                        out.push(1);
                        for v in values {
                            out.extend_from_slice(&v.to_le_bytes());
                        }
                    }
                }
            }
        }
    }
    out.extend_from_slice(&(s.topics.len() as u16).to_le_bytes());
    for topic in &s.topics {
        out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        out.extend_from_slice(topic.as_bytes());
    }
    for bytes in [&s.data, &s.outbox] {
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    match &s.tls {
        None => out.push(0),
        Some((records, wire)) => {
            out.push(1);
            out.push(u8::from(records.tls13));
            put_direction(&mut out, &records.rx);
            put_direction(&mut out, &records.tx);
            for next in [&records.next_rx, &records.next_tx] {
                match next {
                    None => out.push(0),
                    Some(d) => {
                        out.push(1);
                        put_direction(&mut out, d);
                    }
                }
            }
            out.extend_from_slice(&records.tx_limit.to_le_bytes());
            out.extend_from_slice(&records.allowances);
            out.extend_from_slice(&(wire.len() as u32).to_le_bytes());
            out.extend_from_slice(wire);
        }
    }
    if let DeflateCarry::Own { context, .. } = &s.deflate {
        deflate::put(&mut out, context);
    }
    partial::put(&mut out, &s.read);
    out
}

fn put_direction(out: &mut Vec<u8>, d: &CarriedDirection) {
    out.push(d.suite);
    out.push(d.key.len() as u8);
    out.extend_from_slice(&d.key);
    out.extend_from_slice(&d.iv);
    out.extend_from_slice(&d.seq.to_le_bytes());
}

fn direction(r: &mut Reader<'_>) -> Result<CarriedDirection, WireError> {
    let suite = r.u8()?;
    if !(1..=3).contains(&suite) {
        return Err(WireError::Invalid("cipher suite"));
    }
    let len = usize::from(r.u8()?);
    if len > 32 {
        return Err(WireError::TooLong("key"));
    }
    let key = r.take(len)?.to_vec();
    let iv = r.array::<12>()?;
    let seq = u64::from_le_bytes(r.array()?);
    Ok(CarriedDirection {
        suite,
        key,
        iv,
        seq,
    })
}

/// Whether `snapshot` fits the bounds [`decode`] checks (the old process
/// asks before it lets a connection go).
pub(crate) fn fits(s: &Snapshot) -> Result<(), WireError> {
    if s.topics.len() > MAX_TOPICS {
        return Err(WireError::TooLong("topic list"));
    }
    if s.topics.iter().any(|t| t.len() > MAX_TOPIC_LEN) {
        return Err(WireError::TooLong("topic name"));
    }
    if s.data.len() > MAX_DATA {
        return Err(WireError::TooLong("application data"));
    }
    if s.outbox.len() > MAX_OUTBOX {
        return Err(WireError::TooLong("send queue"));
    }
    if s.tls
        .as_ref()
        .is_some_and(|(_, wire)| wire.len() > MAX_OUTBOX)
    {
        return Err(WireError::TooLong("TLS send queue"));
    }
    if let DeflateCarry::Own { context, .. } = &s.deflate {
        deflate::fits(context)?;
    }
    partial::fits(&s.read)
}

/// Whether the bytes of a record fit one message of the control socket;
/// a connection whose record does not waits for its send queues to drain.
pub(crate) fn fits_whole(record: &[u8]) -> Result<(), WireError> {
    if record.len() > MAX_RECORD {
        return Err(WireError::TooLong("record"));
    }
    Ok(())
}

/// The snapshot in `bytes`, checked.
pub(crate) fn decode(bytes: &[u8]) -> Result<Snapshot, WireError> {
    let mut r = Reader(bytes);
    let version = r.u8()?;
    if version != RECORD_VERSION {
        return Err(WireError::Version(version));
    }
    let ip = match r.u8()? {
        4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
        6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
        _ => return Err(WireError::Invalid("address family")),
    };
    let peer = SocketAddr::new(ip, r.u16()?);
    let [kind, window, level, flags] = r.array::<4>()?;
    let mut deflate = match kind {
        0 => DeflateCarry::Off,
        1 if (9..=15).contains(&window) => DeflateCarry::Shared(window),
        2 if (9..=15).contains(&window) && level <= 9 => DeflateCarry::Own {
            window,
            level: u32::from(level),
            // Read at the end of the record.
            context: Default::default(),
        },
        _ => return Err(WireError::Invalid("permessage-deflate parameters")),
    };
    if flags > 1 {
        return Err(WireError::Invalid("flags"));
    }
    let silent_ms = r.u32()?;
    let ping_ms = match r.u32()? {
        u32::MAX => None,
        ms => Some(ms),
    };
    let limiter = if r.flag("limiter")? {
        let flags = r.u8()?;
        if flags > 3 {
            return Err(WireError::Invalid("limiter flags"));
        }
        let mut buckets = [None; 2];
        for bucket in &mut buckets {
            if r.flag("bucket")? {
                *bucket = Some([r.i64()?, r.i64()?, r.i64()?]);
            }
        }
        Some(CarriedLimiter {
            messages: buckets[0],
            bytes: buckets[1],
            close_policy: flags & 1 != 0,
            tripped: flags & 2 != 0,
        })
    } else {
        None
    };
    let count = usize::from(r.u16()?);
    if count > MAX_TOPICS {
        return Err(WireError::TooLong("topic list"));
    }
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let len = usize::from(r.u16()?);
        if len > MAX_TOPIC_LEN {
            return Err(WireError::TooLong("topic name"));
        }
        let name = std::str::from_utf8(r.take(len)?).map_err(|_| WireError::Invalid("topic"))?;
        topics.push(name.to_owned());
    }
    let data = r.bytes(MAX_DATA, "application data")?;
    let outbox = r.bytes(MAX_OUTBOX, "send queue")?;
    let tls = if r.flag("tls")? {
        let tls13 = r.flag("TLS version")?;
        let rx = direction(&mut r)?;
        let tx = direction(&mut r)?;
        let mut next = [None, None];
        for slot in &mut next {
            if r.flag("next keys")? {
                *slot = Some(direction(&mut r)?);
            }
        }
        let [next_rx, next_tx] = next;
        let tx_limit = u64::from_le_bytes(r.array()?);
        let allowances = r.array::<4>()?;
        let wire = r.bytes(MAX_OUTBOX, "TLS send queue")?;
        Some((
            CarriedRecords {
                tls13,
                rx,
                tx,
                next_rx,
                next_tx,
                tx_limit,
                allowances,
            },
            wire,
        ))
    } else {
        None
    };
    if let DeflateCarry::Own { context, .. } = &mut deflate {
        *context = deflate::get(&mut r)?;
    }
    let read = partial::get(&mut r)?;
    if !r.0.is_empty() {
        return Err(WireError::Trailing(r.0.len()));
    }
    Ok(Snapshot {
        peer,
        deflate,
        outbox,
        stalled: flags == 1,
        silent_ms,
        ping_ms,
        limiter,
        topics,
        data,
        tls,
        read,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::message::carry::{CarriedDecoder, CarriedFrame};
    use crate::proto::session::DeflateContext;
    use crate::runtime::handover::partial::MAX_CUT_RECORD;
    use crate::runtime::handover::state::MAX_RECORD;
    use crate::runtime::handover::state::{MAX_HELD, MAX_PARTIAL, ReadSide};

    /// A connection in the middle of everything: a fragmented text message
    /// with a ping cut inside it, bytes held, a TLS record cut.
    fn mid_frame() -> ReadSide {
        ReadSide {
            decoder: Some(CarriedDecoder {
                header: vec![],
                frame: Some(CarriedFrame {
                    opcode: 9,
                    fin: true,
                    mask: Some([1, 2, 3, 4]),
                    remaining: 3,
                    offset: 2,
                }),
                fragmented: 1,
                budget: 70_000,
                compressed: false,
                message: vec![b'a'; 60_000],
                control: b"pi".to_vec(),
            }),
            held: vec![0x80, 0x85],
            record: vec![23, 3, 3, 0x40],
        }
    }

    fn sample() -> Snapshot {
        Snapshot {
            peer: "[::1]:4242".parse().unwrap(),
            deflate: DeflateCarry::Own {
                window: 12,
                level: 3,
                context: DeflateContext {
                    peer_window: 9,
                    resets: false,
                    peer_resets: true,
                    sent: b"history".to_vec(),
                    received: vec![],
                },
            },
            outbox: vec![0x81, 2, b'h', b'i'],
            stalled: true,
            silent_ms: 1500,
            ping_ms: Some(20),
            limiter: Some(CarriedLimiter {
                messages: Some([10, 3000, -5]),
                bytes: None,
                close_policy: true,
                tripped: false,
            }),
            topics: vec!["news".into(), "ünï".into()],
            data: b"user 7".to_vec(),
            tls: Some((
                CarriedRecords {
                    tls13: true,
                    rx: CarriedDirection {
                        suite: 1,
                        key: vec![7; 16],
                        iv: [1; 12],
                        seq: 9,
                    },
                    tx: CarriedDirection {
                        suite: 1,
                        key: vec![8; 16],
                        iv: [2; 12],
                        seq: 11,
                    },
                    next_rx: None,
                    next_tx: Some(CarriedDirection {
                        suite: 1,
                        key: vec![9; 16],
                        iv: [3; 12],
                        seq: 0,
                    }),
                    tx_limit: 1 << 20,
                    allowances: [4, 32, 32, 1],
                },
                vec![23, 3, 3, 0, 1, 0],
            )),
            read: mid_frame(),
        }
    }

    #[test]
    fn a_snapshot_survives_the_trip() {
        let s = sample();
        assert_eq!(decode(&encode(&s)), Ok(s.clone()));
        let plain = Snapshot {
            peer: "10.0.0.1:80".parse().unwrap(),
            deflate: DeflateCarry::Off,
            limiter: None,
            ping_ms: None,
            stalled: false,
            topics: vec![],
            tls: None,
            read: ReadSide::default(),
            ..s
        };
        assert_eq!(decode(&encode(&plain)), Ok(plain.clone()));
        // A cut header alone, an unmasked frame, the largest of each.
        let mut cut = plain.clone();
        cut.read = ReadSide {
            decoder: Some(CarriedDecoder {
                header: vec![0x82, 0xfe, 1],
                ..CarriedDecoder::default()
            }),
            held: vec![7; MAX_HELD],
            record: vec![23; MAX_CUT_RECORD],
        };
        assert_eq!(decode(&encode(&cut)), Ok(cut.clone()));
        let mut largest = plain;
        largest.read = mid_frame();
        if let Some(d) = &mut largest.read.decoder {
            d.message = vec![0; MAX_PARTIAL];
            d.control = vec![0; 125];
            d.frame.as_mut().unwrap().mask = None;
        }
        assert_eq!(fits(&largest), Ok(()));
        assert_eq!(decode(&encode(&largest)), Ok(largest));
    }

    #[test]
    fn every_cut_is_refused_without_a_panic() {
        let bytes = encode(&sample());
        for cut in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..cut]),
                Err(WireError::Truncated),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(WireError::Trailing(1)));
    }

    #[test]
    fn every_bound_but_the_queues_leaves_room_for_a_full_queue() {
        let mut s = sample();
        s.topics = (0..MAX_TOPICS)
            .map(|i| format!("{i:0>width$}", width = MAX_TOPIC_LEN))
            .collect();
        s.data = vec![1; MAX_DATA];
        s.outbox = vec![];
        if let Some((_, wire)) = &mut s.tls {
            wire.clear();
        }
        let window = crate::proto::deflate::MAX_WINDOW;
        s.deflate = DeflateCarry::Own {
            window: 15,
            level: 1,
            context: DeflateContext {
                peer_window: 15,
                resets: false,
                peer_resets: false,
                sent: vec![2; window],
                received: vec![3; window],
            },
        };
        assert_eq!(fits(&s), Ok(()));
        let len = encode(&s).len();
        assert!(len + MAX_OUTBOX <= MAX_RECORD, "{len}");
    }

    #[test]
    fn bad_values_are_refused() {
        let bytes = encode(&sample());
        let mut other = bytes.clone();
        other[0] = 2;
        assert_eq!(decode(&other), Err(WireError::Version(2)));
        let mut family = bytes.clone();
        family[1] = 5;
        assert_eq!(decode(&family), Err(WireError::Invalid("address family")));
        // The deflate window right after the 16-byte address and the port.
        let mut window = bytes.clone();
        window[1 + 1 + 16 + 2 + 1] = 30;
        assert_eq!(
            decode(&window),
            Err(WireError::Invalid("permessage-deflate parameters"))
        );
        // A length past the bound is refused before anything is allocated.
        let mut s = sample();
        s.outbox = vec![0; MAX_OUTBOX + 1];
        assert_eq!(fits(&s), Err(WireError::TooLong("send queue")));
        assert_eq!(decode(&encode(&s)), Err(WireError::TooLong("send queue")));
    }

    /// How a case makes the read side too large.
    type Grow = fn(&mut ReadSide);

    /// Each buffer of the read side past its bound is refused on both sides,
    /// and a record with every bound reached still fits one message.
    #[test]
    fn an_oversized_read_side_is_refused() {
        let cases: [(&str, Grow); 5] = [
            ("message in progress", |r| {
                r.decoder.as_mut().unwrap().message = vec![0; MAX_PARTIAL + 1]
            }),
            ("cut frame header", |r| {
                r.decoder.as_mut().unwrap().header = vec![0x82; 14]
            }),
            ("control frame in progress", |r| {
                r.decoder.as_mut().unwrap().control = vec![0; 126]
            }),
            ("bytes held", |r| r.held = vec![0; MAX_HELD + 1]),
            ("cut TLS record", |r| r.record = vec![0; MAX_CUT_RECORD + 1]),
        ];
        for (what, grow) in cases {
            let mut s = sample();
            grow(&mut s.read);
            assert_eq!(fits(&s), Err(WireError::TooLong(what)));
            assert_eq!(decode(&encode(&s)), Err(WireError::TooLong(what)));
        }
        let mut frame = encode(&sample());
        // The frame flags byte sits after the decoder flag, the header length
        // (0) and the frame flag, right after the TLS section.
        let at = frame.len() - mid_frame_len();
        frame[at + 4] = 4;
        assert_eq!(decode(&frame), Err(WireError::Invalid("frame flags")));
        // Everything at its bound, the queues empty: one message holds it.
        let mut full = sample();
        full.outbox.clear();
        full.tls.as_mut().unwrap().1.clear();
        full.data = vec![0; MAX_DATA];
        full.topics = (0..MAX_TOPICS).map(|i| format!("{i:0>256}")).collect();
        full.read.held = vec![0; MAX_HELD];
        full.read.record = vec![0; MAX_CUT_RECORD];
        full.read.decoder.as_mut().unwrap().message = vec![0; MAX_PARTIAL];
        let bytes = encode(&full);
        assert_eq!(fits_whole(&bytes), Ok(()));
        full.outbox = vec![0; MAX_OUTBOX];
        assert!(fits_whole(&encode(&full)).is_err());
    }

    /// The bytes [`partial::put`] writes for [`mid_frame`].
    fn mid_frame_len() -> usize {
        let mut out = Vec::new();
        partial::put(&mut out, &mid_frame());
        out.len()
    }
}
