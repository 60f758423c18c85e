//! The canonical, direction-independent flow key.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Identifies one flow as seen on one port: the two endpoints in a canonical order, so
/// that both directions of a connection map to the same key, plus the protocol, the
/// VLAN tags and the port that saw it.
///
/// The address family is part of the key: an IPv4 address is stored in the low 32 bits
/// of the 128-bit address with the family flag clear, so no IPv6 address — the IPv4-mapped
/// `::ffff:a.b.c.d` included — can ever share a key with an IPv4 flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    lo_addr: u128,
    hi_addr: u128,
    vlan: u32,
    lo_port: u16,
    hi_port: u16,
    port: u16,
    protocol: u8,
    v6: bool,
    tag: u8,
}

impl Hash for FlowKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As few 64-bit words as the key needs (the hash costs one round per word): both
        // IPv4 addresses fit in one. The family bit in the last word keeps the encodings
        // of the two families apart.
        if self.v6 {
            state.write_u128(self.lo_addr);
            state.write_u128(self.hi_addr);
        } else {
            state.write_u64((self.lo_addr as u64) << 32 | self.hi_addr as u64);
        }
        state.write_u64(
            u64::from(self.lo_port)
                | u64::from(self.hi_port) << 16
                | u64::from(self.port) << 32
                | u64::from(self.protocol) << 48
                | u64::from(self.v6) << 56
                | u64::from(self.tag) << 57,
        );
        state.write_u32(self.vlan);
    }
}

/// Which endpoint of a [`FlowKey`] sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The endpoint that sorts first (address, then port).
    Lo,
    /// The endpoint that sorts second.
    Hi,
}

/// One endpoint of a flow: an address and a port (0 for protocols without ports; the
/// echo identifier for ICMP echo).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Socket {
    /// The address.
    pub addr: IpAddr,
    /// The port, or 0.
    pub port: u16,
}

/// The address as 128 bits (IPv4 in the low 32; the family is kept beside it).
#[inline]
fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

fn from_bits(bits: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from_bits(bits))
    } else {
        IpAddr::V4(Ipv4Addr::from_bits(bits as u32))
    }
}

impl FlowKey {
    /// Builds the key for a packet from `src` to `dst` and says which endpoint `src` is.
    /// The family is `src`'s (a parsed packet's two addresses are of one family).
    #[inline]
    pub fn new(port: u16, vlan: u32, protocol: u8, src: Socket, dst: Socket) -> (FlowKey, Endpoint) {
        let s = (bits(src.addr), src.port);
        let d = (bits(dst.addr), dst.port);
        let (lo, hi, sender) = if s <= d { (s, d, Endpoint::Lo) } else { (d, s, Endpoint::Hi) };
        let v6 = src.addr.is_ipv6();
        let key = FlowKey {
            lo_addr: lo.0,
            hi_addr: hi.0,
            vlan,
            lo_port: lo.1,
            hi_port: hi.1,
            port,
            protocol,
            v6,
            tag: 0,
        };
        (key, sender)
    }

    /// The key with a caller's tag (0–127) that keeps apart flows the addresses and ports
    /// alone cannot: the engine tags an ICMP echo flow with which endpoint asked.
    #[inline]
    pub fn tagged(self, tag: u8) -> FlowKey {
        FlowKey { tag: tag & 0x7f, ..self }
    }

    /// The endpoint `which`.
    pub fn socket(&self, which: Endpoint) -> Socket {
        match which {
            Endpoint::Lo => Socket { addr: from_bits(self.lo_addr, self.v6), port: self.lo_port },
            Endpoint::Hi => Socket { addr: from_bits(self.hi_addr, self.v6), port: self.hi_port },
        }
    }

    /// Which endpoint `socket` is, if it is one of the two.
    pub fn endpoint_of(&self, socket: Socket) -> Option<Endpoint> {
        if socket.addr.is_ipv6() != self.v6 {
            return None;
        }
        let b = (bits(socket.addr), socket.port);
        if b == (self.lo_addr, self.lo_port) {
            Some(Endpoint::Lo)
        } else if b == (self.hi_addr, self.hi_port) {
            Some(Endpoint::Hi)
        } else {
            None
        }
    }

    /// The IP protocol number.
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// The index of the port (interface pair) that saw the flow.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The packed VLAN tags.
    pub fn vlan(&self) -> u32 {
        self.vlan
    }
}

impl Endpoint {
    /// The other endpoint.
    pub fn other(self) -> Endpoint {
        match self {
            Endpoint::Lo => Endpoint::Hi,
            Endpoint::Hi => Endpoint::Lo,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(a: &str, port: u16) -> Socket {
        Socket { addr: a.parse().unwrap(), port }
    }

    #[test]
    fn both_directions_share_a_key() {
        let (k1, e1) = FlowKey::new(1, 0, 6, sock("198.18.20.5", 40000), sock("198.18.40.10", 25));
        let (k2, e2) = FlowKey::new(1, 0, 6, sock("198.18.40.10", 25), sock("198.18.20.5", 40000));
        assert_eq!(k1, k2);
        assert_eq!(e1, e2.other());
        assert_eq!(k1.socket(e1), sock("198.18.20.5", 40000));
        assert_eq!(k1.socket(e1.other()), sock("198.18.40.10", 25));
    }

    #[test]
    fn port_vlan_and_protocol_separate_flows() {
        let a = sock("2001:db8:20::5", 1);
        let b = sock("2001:db8:40::10", 2);
        let base = FlowKey::new(1, 0, 17, a, b).0;
        assert_ne!(base, FlowKey::new(2, 0, 17, a, b).0);
        assert_ne!(base, FlowKey::new(1, 7, 17, a, b).0);
        assert_ne!(base, FlowKey::new(1, 0, 6, a, b).0);
        assert_eq!(base.socket(Endpoint::Lo).addr, a.addr);
    }

    #[test]
    fn ipv4_and_ipv4_mapped_ipv6_never_share_a_key() {
        let v4 = FlowKey::new(0, 0, 6, sock("198.18.10.5", 1), sock("198.18.10.1", 2)).0;
        let mapped = FlowKey::new(0, 0, 6, sock("::ffff:198.18.10.5", 1), sock("::ffff:198.18.10.1", 2)).0;
        let compat = FlowKey::new(0, 0, 6, sock("::198.18.10.5", 1), sock("::198.18.10.1", 2)).0;
        assert_ne!(v4, mapped);
        assert_ne!(v4, compat);
        assert_eq!(v4.socket(Endpoint::Hi).addr, "198.18.10.5".parse::<IpAddr>().unwrap());
        assert_eq!(compat.socket(Endpoint::Hi).addr, "::198.18.10.5".parse::<IpAddr>().unwrap());
        assert_eq!(v4.endpoint_of(sock("198.18.10.1", 2)), Some(Endpoint::Lo));
        assert_eq!(v4.endpoint_of(sock("::198.18.10.1", 2)), None);
        assert_eq!(v4.endpoint_of(sock("198.18.10.1", 3)), None);
    }

    #[test]
    fn a_tag_separates_keys() {
        let k = FlowKey::new(0, 0, 1, sock("198.18.50.1", 0), sock("198.18.40.7", 0)).0;
        assert_ne!(k, k.tagged(1));
        assert_ne!(k.tagged(1), k.tagged(2));
        assert_eq!(k.tagged(1), k.tagged(1));
    }

    #[test]
    fn same_address_orders_by_port() {
        let (k, e) = FlowKey::new(0, 0, 17, sock("203.0.113.1", 53), sock("203.0.113.1", 5353));
        assert_eq!(e, Endpoint::Lo);
        assert_eq!(k.socket(Endpoint::Hi).port, 5353);
    }
}
