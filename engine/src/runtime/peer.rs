//! A peer's address, kept small: what a connection stores of the socket
//! address it was accepted from (or a PROXY header gave).

use std::net::SocketAddr;

/// A socket address in 24 bytes (a `SocketAddr` takes 32): the IPv4 address
/// mapped into IPv6 form, the port and the scope; the flow label, which a
/// server never uses, is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerAddr {
    ip: [u8; 16],
    scope_id: u32,
    port: u16,
    v6: bool,
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(v4) => Self {
                ip: v4.ip().to_ipv6_mapped().octets(),
                scope_id: 0,
                port: v4.port(),
                v6: false,
            },
            SocketAddr::V6(v6) => Self {
                ip: v6.ip().octets(),
                scope_id: v6.scope_id(),
                port: v6.port(),
                v6: true,
            },
        }
    }
}

impl From<PeerAddr> for SocketAddr {
    fn from(peer: PeerAddr) -> Self {
        let ip = std::net::Ipv6Addr::from(peer.ip);
        match ip.to_ipv4_mapped() {
            Some(v4) if !peer.v6 => SocketAddr::new(v4.into(), peer.port),
            _ => std::net::SocketAddrV6::new(ip, peer.port, 0, peer.scope_id).into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addresses_survive_the_compact_form() {
        for addr in [
            "127.0.0.1:40000",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[::1]:9001",
            "[::ffff:10.0.0.1]:80",
            "[2001:db8::7]:443",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(SocketAddr::from(PeerAddr::from(addr)), addr, "{addr}");
        }
        let scoped = SocketAddr::V6(std::net::SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            8080,
            0,
            3,
        ));
        assert_eq!(SocketAddr::from(PeerAddr::from(scoped)), scoped);
        assert_eq!(std::mem::size_of::<PeerAddr>(), 24);
    }
}
