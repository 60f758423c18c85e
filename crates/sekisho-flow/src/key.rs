//! The canonical, direction-independent flow key.

use std::net::IpAddr;

/// Identifies one flow as seen on one port: the two endpoints in a canonical order, so
/// that both directions of a connection map to the same key, plus the protocol, the
/// VLAN tags and the port that saw it.
///
/// IPv4 addresses are stored IPv4-mapped so that one fixed-size key serves both families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    lo_addr: u128,
    hi_addr: u128,
    vlan: u32,
    lo_port: u16,
    hi_port: u16,
    port: u16,
    protocol: u8,
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

/// The address as 128 bits, IPv4 mapped into `::ffff:0:0/96`.
#[inline]
fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => (0xffff << 32) | u128::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

fn from_bits(bits: u128) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from_bits(bits);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

impl FlowKey {
    /// Builds the key for a packet from `src` to `dst` and says which endpoint `src` is.
    #[inline]
    pub fn new(port: u16, vlan: u32, protocol: u8, src: Socket, dst: Socket) -> (FlowKey, Endpoint) {
        let s = (bits(src.addr), src.port);
        let d = (bits(dst.addr), dst.port);
        let (lo, hi, sender) = if s <= d { (s, d, Endpoint::Lo) } else { (d, s, Endpoint::Hi) };
        let key =
            FlowKey { lo_addr: lo.0, hi_addr: hi.0, vlan, lo_port: lo.1, hi_port: hi.1, port, protocol };
        (key, sender)
    }

    /// The endpoint `which`.
    pub fn socket(&self, which: Endpoint) -> Socket {
        match which {
            Endpoint::Lo => Socket { addr: from_bits(self.lo_addr), port: self.lo_port },
            Endpoint::Hi => Socket { addr: from_bits(self.hi_addr), port: self.hi_port },
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
    fn same_address_orders_by_port() {
        let (k, e) = FlowKey::new(0, 0, 17, sock("203.0.113.1", 53), sock("203.0.113.1", 5353));
        assert_eq!(e, Endpoint::Lo);
        assert_eq!(k.socket(Endpoint::Hi).port, 5353);
    }
}
