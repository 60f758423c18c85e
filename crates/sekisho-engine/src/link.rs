//! Stage 3, link traffic: the protocols without which hosts cannot reach their router —
//! IPv6 neighbour discovery and router advertisements, MLD, DHCPv4 and DHCPv6. They pass
//! without a rule (`allow:link`), within their pair only, and only when *both ends are on
//! the port's segment*: the destination is link-scoped (link-local, `ff02::/16`, the
//! limited broadcast) or of the port's zone; the source is an IPv6 link-local address, or,
//! on `inside`, the unspecified address or one of the port's zone, and on `outside` one
//! of the port's `routers` (the segment's own hosts are on `inside`; on `outside` only
//! the router speaks for the link). IPv4 link-local sources (169.254/16) never count:
//! routers forward them. ND needs hop limit 255 and MLD hop limit 1 (RFC 4861,
//! RFC 3810), so no router forwards either. Anything else with these shapes is judged
//! like any other packet (and a link-scoped address then means `deny:link-scope`).

use std::net::IpAddr;

use sekisho_policy::{Policy, Port};
use sekisho_wire::{Ip, L4};

use crate::ingress::{destination_scope, source_scope, Scope};
use crate::Side;

/// Whether `addr` may be the source of link traffic arriving on `side` of `port`.
fn on_segment_source(policy: &Policy, port: &Port, side: Side, addr: IpAddr) -> bool {
    if link_local_or_unspecified(addr) {
        return true;
    }
    match (side, addr) {
        (Side::Inside, IpAddr::V4(a)) if a.is_unspecified() => true,
        _ if source_scope(addr) != Scope::Global => false,
        (Side::Inside, _) => policy.zone_of(addr) == Some(port.zone),
        (Side::Outside, _) => port.is_router(addr),
    }
}

/// Whether `addr` is a destination on this segment.
fn on_segment_destination(policy: &Policy, port: &Port, addr: IpAddr) -> bool {
    match destination_scope(addr) {
        Scope::Link => true,
        Scope::Global => policy.zone_of(addr) == Some(port.zone),
        Scope::Bogon => false,
    }
}

fn link_local_or_unspecified(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V6(a) => a.is_unspecified() || a.segments()[0] & 0xffc0 == 0xfe80,
        IpAddr::V4(_) => false,
    }
}

/// True when `ip`, arriving on `side` of `port`, is link traffic between two ends on the
/// port's segment.
pub(crate) fn is_link_traffic(policy: &Policy, port: &Port, side: Side, ip: &Ip<'_>) -> bool {
    let ends_on_segment =
        || on_segment_source(policy, port, side, ip.src) && on_segment_destination(policy, port, ip.dst);
    match ip.l4 {
        L4::Icmp(i) if i.v6 && (133..=137).contains(&i.ty) => ip.hop_limit == 255 && ends_on_segment(),
        L4::Icmp(i) if i.v6 && matches!(i.ty, 130..=132 | 143) => {
            let multicast = matches!(ip.dst, IpAddr::V6(d) if d.is_multicast());
            ip.hop_limit == 1 && link_local_or_unspecified(ip.src) && multicast
        }
        L4::Udp(u) => {
            let dhcp = match ip.src {
                IpAddr::V4(_) => matches!((u.sport, u.dport), (68, 67) | (67, 68)),
                IpAddr::V6(_) => matches!((u.sport, u.dport), (546, 547) | (547, 546)),
            };
            dhcp && ip.fragment.is_none() && ends_on_segment()
        }
        _ => false,
    }
}
