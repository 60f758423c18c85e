//! Stage 2, the ingress contract: what may arrive on which interface of a port, checked
//! before any flow logic.
//!
//! - The frame's VLAN tags must be admitted by the port (`vlans`, `untagged`): one
//!   802.1Q tag, never a service tag (802.1ad) alone, never two.
//! - No address that cannot belong to a host of a zone: IPv4 forms inside IPv6
//!   (mapped, compatible, translated, NAT64, 6to4, Teredo), loopback, unspecified,
//!   multicast or broadcast *sources*, multicast destinations beyond the link. Link-local and link-scoped
//!   addresses belong only to link traffic (stage 3), which stays in its pair.
//! - A connection opened on a port's `inside` comes from the port's zone; one opened on
//!   its `outside` goes to the port's zone and does not come from it (unless from one of
//!   the port's `routers`). Later packets of a connection are bound to the side their
//!   end arrived on (stage 4), so the rule holds for every packet, not only the first.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sekisho_policy::{Policy, Port, Reason};
use sekisho_wire::Vlan;

use crate::Side;

/// Whether `vlan` may cross `port`.
#[inline]
pub(crate) fn vlan(port: &Port, vlan: Vlan) -> Result<(), Reason> {
    // A service tag (0x88a8, 0x9100) names a different VLAN to the switch beyond.
    if !vlan.outer_is_service_tag && port.admits_vlan(vlan.outer, vlan.inner) {
        Ok(())
    } else {
        Err(Reason::Vlan)
    }
}

/// How an address may be used outside link traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// An ordinary unicast address: judged by its zone.
    Global,
    /// Meaningful on one link only (link-local unicast, link-local multicast, limited
    /// broadcast): never routed, so only link traffic may carry it.
    Link,
    /// Never a host of a zone.
    Bogon,
}

/// IPv6 spellings of an IPv4 address, which a host, a router or a translator may take for
/// that IPv4 address and so for another zone: IPv4-mapped `::ffff:0:0/96`,
/// IPv4-compatible `::/96`, IPv4-translated `::ffff:0:0:0/96`, NAT64 `64:ff9b::/96`
/// (RFC 6052) and `64:ff9b:1::/48` (RFC 8215), 6to4 `2002::/16` (RFC 3056) and Teredo
/// `2001::/32` (RFC 4380).
#[inline]
pub(crate) fn embeds_ipv4(a: Ipv6Addr) -> bool {
    let bits = a.to_bits();
    // The upper 96 bits: 0 (compatible), 0xffff (mapped), 0xffff_0000 (translated).
    let in_v6_0 = matches!(bits >> 32, 0 | 0xffff | 0xffff_0000) && !a.is_unspecified() && !a.is_loopback();
    let nat64 = bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 || bits >> 80 == 0x0064_ff9b_0001;
    let s0 = a.segments()[0];
    let tunnelled = s0 == 0x2002 || (s0 == 0x2001 && a.segments()[1] == 0);
    in_v6_0 || nat64 || tunnelled
}

#[inline]
fn source_v4(a: Ipv4Addr) -> Scope {
    let o = a.octets();
    if o[0] == 0 || o[0] == 127 || o[0] >= 224 {
        Scope::Bogon
    } else if o[0] == 169 && o[1] == 254 {
        Scope::Link
    } else {
        Scope::Global
    }
}

#[inline]
fn destination_v4(a: Ipv4Addr) -> Scope {
    let o = a.octets();
    if a.is_broadcast() || (o[0] == 224 && o[1] == 0 && o[2] == 0) || (o[0] == 169 && o[1] == 254) {
        Scope::Link
    } else if o[0] == 0 || o[0] == 127 || o[0] >= 224 {
        Scope::Bogon
    } else {
        Scope::Global
    }
}

#[inline]
fn source_v6(a: Ipv6Addr) -> Scope {
    let s0 = a.segments()[0];
    if a.is_unspecified() || a.is_loopback() || s0 >> 8 == 0xff || embeds_ipv4(a) {
        Scope::Bogon
    } else if s0 & 0xffc0 == 0xfe80 {
        Scope::Link
    } else {
        Scope::Global
    }
}

#[inline]
fn destination_v6(a: Ipv6Addr) -> Scope {
    let s0 = a.segments()[0];
    if s0 & 0xffc0 == 0xfe80 || s0 == 0xff01 || s0 == 0xff02 {
        Scope::Link
    } else if a.is_unspecified() || a.is_loopback() || s0 >> 8 == 0xff || embeds_ipv4(a) {
        Scope::Bogon
    } else {
        Scope::Global
    }
}

/// The scope of a source address.
#[inline]
pub(crate) fn source_scope(a: IpAddr) -> Scope {
    match a {
        IpAddr::V4(a) => source_v4(a),
        IpAddr::V6(a) => source_v6(a),
    }
}

/// The scope of a destination address.
#[inline]
pub(crate) fn destination_scope(a: IpAddr) -> Scope {
    match a {
        IpAddr::V4(a) => destination_v4(a),
        IpAddr::V6(a) => destination_v6(a),
    }
}

/// The address check for everything that is not link traffic: both ends must be
/// ordinary unicast addresses that a zone can hold.
#[inline]
pub(crate) fn addresses(src: &IpAddr, dst: &IpAddr) -> Result<(), Reason> {
    // By reference, matched in place: a by-value copy of the parsed addresses costs a
    // stalled wide load on the per-packet path (the parser wrote them in narrow stores).
    let source = match src {
        IpAddr::V4(a) => source_v4(*a),
        IpAddr::V6(a) => source_v6(*a),
    };
    let destination = match dst {
        IpAddr::V4(a) => destination_v4(*a),
        IpAddr::V6(a) => destination_v6(*a),
    };
    match (source, destination) {
        (Scope::Global, Scope::Global) => Ok(()),
        (Scope::Bogon, _) | (_, Scope::Bogon) => Err(Reason::BogonAddress),
        _ => Err(Reason::LinkScope),
    }
}

/// The contract for a connection `initiator` → `responder` whose initiator's packets
/// arrive on `side` of `port`.
#[inline]
pub(crate) fn opening(
    policy: &Policy,
    port: &Port,
    side: Side,
    initiator: IpAddr,
    responder: IpAddr,
) -> Result<(), Reason> {
    match side {
        Side::Inside if policy.zone_of(initiator) != Some(port.zone) => Err(Reason::SpoofedSource),
        Side::Inside => Ok(()),
        Side::Outside if policy.zone_of(responder) != Some(port.zone) => Err(Reason::Misdirected),
        Side::Outside if policy.zone_of(initiator) == Some(port.zone) && !port.is_router(initiator) => {
            Err(Reason::SpoofedSource)
        }
        Side::Outside => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(a: &str) -> Scope {
        source_scope(a.parse().unwrap())
    }

    fn dst(a: &str) -> Scope {
        destination_scope(a.parse().unwrap())
    }

    #[test]
    fn ipv4_inside_ipv6_is_recognised_in_every_spelling() {
        for a in [
            "::ffff:198.18.10.5",
            "::198.18.10.5",
            "::ffff:0:198.18.10.5",
            "::ffff:0:0",
            "64:ff9b::c612:a05",
            "64:ff9b:1:ffff::c612:a05",
            "2002:c612:a05::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ] {
            assert!(embeds_ipv4(a.parse().unwrap()), "{a}");
            assert_eq!(src(a), Scope::Bogon, "{a}");
            assert_eq!(dst(a), Scope::Bogon, "{a}");
        }
        for a in
            ["::", "::1", "2001:db8::ffff:c612:a05", "64:ff9b:2::c612:a05", "1::198.18.10.5", "2001:1::1"]
        {
            assert!(!embeds_ipv4(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn scopes() {
        assert_eq!(src("198.18.20.5"), Scope::Global);
        assert_eq!(src("0.0.0.0"), Scope::Bogon);
        assert_eq!(src("127.0.0.1"), Scope::Bogon);
        assert_eq!(src("224.0.0.251"), Scope::Bogon);
        assert_eq!(src("255.255.255.255"), Scope::Bogon);
        assert_eq!(src("169.254.1.1"), Scope::Link);
        assert_eq!(dst("255.255.255.255"), Scope::Link);
        assert_eq!(dst("224.0.0.251"), Scope::Link);
        assert_eq!(dst("239.1.1.1"), Scope::Bogon);
        assert_eq!(dst("240.0.0.1"), Scope::Bogon);
        assert_eq!(src("fe80::1"), Scope::Link);
        assert_eq!(src("::"), Scope::Bogon);
        assert_eq!(src("ff02::1"), Scope::Bogon);
        assert_eq!(dst("ff02::1:2"), Scope::Link);
        assert_eq!(dst("ff0e::1"), Scope::Bogon);
        assert_eq!(dst("2001:db8:20::5"), Scope::Global);
        assert_eq!(
            addresses(&"198.18.20.5".parse().unwrap(), &"239.1.1.1".parse().unwrap()),
            Err(Reason::BogonAddress)
        );
        assert_eq!(
            addresses(&"fe80::1".parse().unwrap(), &"2001:db8::1".parse().unwrap()),
            Err(Reason::LinkScope)
        );
    }
}
