//! The PROXY protocol (HAProxy's, versions 1 and 2), receiving side: the header
//! a load balancer sends before the client's bytes, telling the client's
//! address. Sans-I/O like the rest of `proto`: bytes in, the header or an error
//! out. Only TCP over IPv4 and IPv6 is taken as an address; `UNKNOWN` (v1),
//! `LOCAL` and the unspecified family (v2) keep the connection's own address.
//! v2 TLVs are skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature, the first 12 bytes of a v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest v1 header, CRLF included (the specification's bound).
pub const V1_MAX: usize = 107;

/// The longest v2 header accepted: its 16-byte preamble and up to this much of
/// addresses and TLVs (the specification allows 65535; load balancers send a
/// few hundred at most).
pub const V2_MAX: usize = 16 + 2048;

/// What a header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A proxied TCP connection from `source` to `destination`.
    Proxied {
        /// The client's address.
        source: SocketAddr,
        /// The address the client connected to.
        destination: SocketAddr,
    },
    /// The proxy's own connection (a health check: v2 `LOCAL`) or one whose
    /// addresses it does not know (v1 `UNKNOWN`, v2 unspecified family): the
    /// connection's address stands.
    Local,
}

/// Why a header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The bytes are no PROXY header.
    #[error("not a PROXY protocol header")]
    Missing,
    /// Longer than [`V1_MAX`] or [`V2_MAX`].
    #[error("PROXY header too long")]
    TooLong,
    /// A malformed header; the text says which part.
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
}

/// How the first bytes of a connection look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Like a header (v1 or v2).
    Header,
    /// Like no header.
    Other,
    /// Too few bytes to tell.
    Unknown,
}

/// Whether `buf`, the first bytes of a connection, starts like a header.
pub fn start(buf: &[u8]) -> Start {
    const V1: &[u8] = b"PROXY ";
    for prefix in [V1, &V2_SIGNATURE[..]] {
        let n = buf.len().min(prefix.len());
        if buf[..n] == prefix[..n] {
            return if n == prefix.len() {
                Start::Header
            } else {
                Start::Unknown
            };
        }
    }
    Start::Other
}

/// Reads a header at the start of `buf`: `Ok(None)` if more bytes are needed,
/// else the header and its length.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    match start(buf) {
        Start::Unknown => Ok(None),
        Start::Other => Err(ProxyError::Missing),
        Start::Header if buf.starts_with(b"PROXY ") => parse_v1(buf),
        Start::Header => parse_v2(buf),
    }
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError::TooLong)
        } else {
            Ok(None)
        };
    };
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Err(ProxyError::Malformed("v1 line must end with CRLF"));
    }
    let line = std::str::from_utf8(&buf[..lf - 1])
        .map_err(|_| ProxyError::Malformed("v1 line is not ASCII"))?;
    let mut fields = line.split(' ');
    fields.next(); // "PROXY"
    let header = match fields.next() {
        // Whatever follows UNKNOWN is to be ignored.
        Some("UNKNOWN") => ProxyHeader::Local,
        Some(family @ ("TCP4" | "TCP6")) => {
            let v6 = family == "TCP6";
            let mut next = || {
                fields
                    .next()
                    .ok_or(ProxyError::Malformed("v1 field missing"))
            };
            let (src, dst, sport, dport) = (next()?, next()?, next()?, next()?);
            if fields.next().is_some() {
                return Err(ProxyError::Malformed("v1 has extra fields"));
            }
            ProxyHeader::Proxied {
                source: SocketAddr::new(ip(src, v6)?, port(sport)?),
                destination: SocketAddr::new(ip(dst, v6)?, port(dport)?),
            }
        }
        _ => {
            return Err(ProxyError::Malformed(
                "v1 protocol must be TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    Ok(Some((header, lf + 1)))
}

fn ip(text: &str, v6: bool) -> Result<IpAddr, ProxyError> {
    let bad = ProxyError::Malformed("v1 address");
    if v6 {
        text.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| bad)
    } else {
        text.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| bad)
    }
}

fn port(text: &str) -> Result<u16, ProxyError> {
    let bad = ProxyError::Malformed("v1 port");
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    text.parse().map_err(|_| bad)
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let version_command = buf[12];
    if version_command >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version must be 2"));
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::Malformed("v2 command must be LOCAL or PROXY")),
    };
    let family = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let total = 16 + len;
    if total > V2_MAX {
        return Err(ProxyError::TooLong);
    }
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[16..total];
    if local {
        return Ok(Some((ProxyHeader::Local, total)));
    }
    let header = match family {
        // Unspecified: the proxy does not know the addresses.
        0x00 => ProxyHeader::Local,
        // TCP over IPv4.
        0x11 => {
            let a = body
                .get(..12)
                .ok_or(ProxyError::Malformed("v2 IPv4 addresses cut short"))?;
            let src = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let dst = Ipv4Addr::new(a[4], a[5], a[6], a[7]);
            ProxyHeader::Proxied {
                source: SocketAddr::new(src.into(), u16::from_be_bytes([a[8], a[9]])),
                destination: SocketAddr::new(dst.into(), u16::from_be_bytes([a[10], a[11]])),
            }
        }
        // TCP over IPv6.
        0x21 => {
            let a = body
                .get(..36)
                .ok_or(ProxyError::Malformed("v2 IPv6 addresses cut short"))?;
            let src: [u8; 16] = a[..16].try_into().expect("16 bytes");
            let dst: [u8; 16] = a[16..32].try_into().expect("16 bytes");
            ProxyHeader::Proxied {
                source: SocketAddr::new(
                    Ipv6Addr::from(src).into(),
                    u16::from_be_bytes([a[32], a[33]]),
                ),
                destination: SocketAddr::new(
                    Ipv6Addr::from(dst).into(),
                    u16::from_be_bytes([a[34], a[35]]),
                ),
            }
        }
        _ => {
            return Err(ProxyError::Malformed(
                "v2 family must be TCP over IPv4 or IPv6, or unspecified",
            ));
        }
    };
    Ok(Some((header, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let wire = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /";
        assert_eq!(
            parse(wire),
            Ok(Some((
                ProxyHeader::Proxied {
                    source: "192.0.2.1:56324".parse().unwrap(),
                    destination: "198.51.100.2:443".parse().unwrap(),
                },
                wire.len() - 5
            )))
        );
        let wire = b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n";
        assert_eq!(
            parse(wire).unwrap().unwrap().0,
            ProxyHeader::Proxied {
                source: "[2001:db8::1]:1".parse().unwrap(),
                destination: "[::1]:65535".parse().unwrap(),
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN ffff::1 whatever\r\n"),
            Ok(Some((ProxyHeader::Local, 32)))
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Ok(Some((ProxyHeader::Local, 15)))
        );
    }

    #[test]
    fn v1_cut_anywhere_needs_more() {
        let wire = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
        for cut in 0..wire.len() {
            assert_eq!(parse(&wire[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn v1_abuse() {
        let bad = |wire: &[u8]| parse(wire).unwrap_err();
        assert_eq!(bad(b"GET / HTTP/1.1\r\n"), ProxyError::Missing);
        assert_eq!(
            bad(&[b'P', b'R', b'O', b'X', b'Y', b' ', b'A'].repeat(20)),
            ProxyError::TooLong
        );
        let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(100));
        assert_eq!(bad(long.as_bytes()), ProxyError::TooLong);
        for wire in [
            &b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n"[..],
            b"PROXY TCP4 ::1 198.51.100.2 1 2\r\n",
            b"PROXY TCP6 192.0.2.1 ::1 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 +1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n",
            b"PROXY TCP4  192.0.2.1 198.51.100.2 1 2\r\n",
            b"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 \xff\r\n",
        ] {
            assert!(
                matches!(bad(wire), ProxyError::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn v2_ipv4_ipv6_local_unspec_and_tlvs() {
        let mut body = vec![192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x01, 0xbb];
        body.extend_from_slice(&[0x04, 0x00, 0x01, 0x00]); // a NOOP TLV, skipped
        let wire = v2(1, 0x11, &body);
        assert_eq!(
            parse(&wire),
            Ok(Some((
                ProxyHeader::Proxied {
                    source: "192.0.2.1:56324".parse().unwrap(),
                    destination: "198.51.100.2:443".parse().unwrap(),
                },
                wire.len()
            )))
        );
        let mut body = Ipv6Addr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 7])
            .octets()
            .to_vec();
        body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&[0, 80, 1, 0]);
        assert_eq!(
            parse(&v2(1, 0x21, &body)).unwrap().unwrap().0,
            ProxyHeader::Proxied {
                source: "[2001:db8::7]:80".parse().unwrap(),
                destination: "[::1]:256".parse().unwrap(),
            }
        );
        // LOCAL ignores whatever addresses it carries; UNSPEC has none.
        assert_eq!(
            parse(&v2(0, 0x11, &[0; 12])),
            Ok(Some((ProxyHeader::Local, 28)))
        );
        assert_eq!(parse(&v2(1, 0x00, &[])), Ok(Some((ProxyHeader::Local, 16))));
        // Cut anywhere: more is needed.
        let wire = v2(1, 0x21, &body);
        for cut in 0..wire.len() {
            assert_eq!(parse(&wire[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn v2_abuse() {
        let bad = |wire: &[u8]| parse(wire).unwrap_err();
        let mut wrong_version = v2(1, 0x11, &[0; 12]);
        wrong_version[12] = 0x11;
        assert!(matches!(bad(&wrong_version), ProxyError::Malformed(_)));
        assert!(matches!(
            bad(&v2(2, 0x11, &[0; 12])),
            ProxyError::Malformed(_)
        ));
        assert!(matches!(
            bad(&v2(1, 0x11, &[0; 11])),
            ProxyError::Malformed(_)
        ));
        assert!(matches!(
            bad(&v2(1, 0x21, &[0; 35])),
            ProxyError::Malformed(_)
        ));
        assert!(
            matches!(bad(&v2(1, 0x12, &[0; 12])), ProxyError::Malformed(_)),
            "UDP"
        );
        assert!(
            matches!(bad(&v2(1, 0x31, &[0; 216])), ProxyError::Malformed(_)),
            "UNIX"
        );
        // Oversized: refused from the length field alone, before the body.
        let mut huge = v2(1, 0x11, &[]);
        huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(bad(&huge), ProxyError::TooLong);
        assert_eq!(bad(b"\r\n\r\n\0\r\nQUIX\n"), ProxyError::Missing);
    }

    #[test]
    fn the_start_decides_early() {
        assert_eq!(start(b""), Start::Unknown);
        assert_eq!(start(b"PRO"), Start::Unknown);
        assert_eq!(start(b"\r\n"), Start::Unknown);
        assert_eq!(start(b"G"), Start::Other);
        assert_eq!(start(b"PROXY "), Start::Header);
        assert_eq!(start(&V2_SIGNATURE), Start::Header);
    }
}
