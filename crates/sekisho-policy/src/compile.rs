//! The compiled form used per new flow: longest-prefix match per address
//! family and candidate lists indexed by the initiator's zone.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::net::IpAddr;
use std::ops::BitAnd;

use ipnetwork::IpNetwork;

use crate::model::{
    Connection, Endpoint, Exception, ExceptionId, Path, PathId, PortRange, Proto, Rule, RuleId, Service,
    ServiceId, Zone, ZoneId, ZoneKind,
};
use crate::reason::{Decision, Reason};
use crate::time::Timestamp;

/// A small multiplicative hasher for integer keys from the configuration
/// (the keys are operator-chosen, so no DoS-resistant hashing is needed).
#[derive(Default)]
pub(crate) struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    #[inline]
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        // Fold the well-mixed high bits into the low bits the table indexes by.
        self.0 ^ (self.0 >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.add(u64::from(v));
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }
    #[inline]
    fn write_u128(&mut self, v: u128) {
        self.add(v as u64);
        self.add((v >> 64) as u64);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Longest-prefix match over one address family: one hash map per prefix
/// length present, longest first.
#[derive(Clone, Debug, Default)]
pub(crate) struct Lpm<K> {
    levels: Vec<(K, FastMap<K, ZoneId>)>,
}

impl<K: Copy + Eq + Hash + BitAnd<Output = K>> Lpm<K> {
    fn build(mut entries: Vec<(u8, K, K, ZoneId)>) -> Self {
        // (prefix length, mask, network, zone), longest first.
        entries.sort_by_key(|e| std::cmp::Reverse(e.0));
        let mut levels: Vec<(u8, K, FastMap<K, ZoneId>)> = Vec::new();
        for (len, mask, net, zone) in entries {
            match levels.last_mut() {
                Some((l, _, map)) if *l == len => {
                    map.insert(net, zone);
                }
                _ => {
                    let mut map = FastMap::default();
                    map.insert(net, zone);
                    levels.push((len, mask, map));
                }
            }
        }
        Lpm { levels: levels.into_iter().map(|(_, m, map)| (m, map)).collect() }
    }

    #[inline]
    fn lookup(&self, key: K) -> Option<ZoneId> {
        for (mask, map) in &self.levels {
            if let Some(z) = map.get(&(key & *mask)) {
                return Some(*z);
            }
        }
        None
    }
}

fn mask4(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// An endpoint pre-resolved for matching.
#[derive(Copy, Clone, Debug)]
enum Matcher {
    Zone(ZoneId),
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl Matcher {
    fn new(e: &Endpoint) -> Matcher {
        match e {
            Endpoint::Zone(z) => Matcher::Zone(*z),
            Endpoint::Net(IpNetwork::V4(n)) => {
                let mask = mask4(n.prefix());
                Matcher::V4 { net: u32::from(n.network()) & mask, mask }
            }
            Endpoint::Net(IpNetwork::V6(n)) => {
                let mask = mask6(n.prefix());
                Matcher::V6 { net: u128::from(n.network()) & mask, mask }
            }
        }
    }

    #[inline]
    fn matches(&self, zone: ZoneId, addr: IpAddr) -> bool {
        match (self, addr) {
            (Matcher::Zone(z), _) => *z == zone,
            (Matcher::V4 { net, mask }, IpAddr::V4(a)) => u32::from(a) & mask == *net,
            (Matcher::V6 { net, mask }, IpAddr::V6(a)) => u128::from(a) & mask == *net,
            _ => false,
        }
    }
}

/// A leg, exception or rule, ready to match.
#[derive(Clone, Debug)]
struct Candidate {
    from: Matcher,
    to: Matcher,
    proto: Proto,
    ports: Box<[PortRange]>,
    service: ServiceId,
    reason: Reason,
    expires: Option<Timestamp>,
}

impl Candidate {
    #[inline]
    fn service_matches(&self, protocol: u8, port: u16) -> bool {
        self.proto.matches(protocol)
            && (!self.proto.has_ports() || self.ports.iter().any(|r| r.contains(port)))
    }
}

/// The zones an endpoint can touch: for `zone:NAME` that zone; for a network C,
/// the zone of the longest zone prefix containing all of C plus the zones of
/// every zone prefix strictly inside C. Sorted, without duplicates.
pub(crate) fn touched(endpoint: &Endpoint, prefixes: &[(IpNetwork, ZoneId)]) -> Vec<ZoneId> {
    let c = match endpoint {
        Endpoint::Zone(z) => return vec![*z],
        Endpoint::Net(n) => *n,
    };
    let mut out = Vec::new();
    let mut best: Option<(u8, ZoneId)> = None;
    for &(p, z) in prefixes {
        if p.is_ipv4() != c.is_ipv4() {
            continue;
        }
        if p.prefix() <= c.prefix() {
            if p.contains(c.network()) && best.is_none_or(|(len, _)| p.prefix() > len) {
                best = Some((p.prefix(), z));
            }
        } else if c.contains(p.network()) {
            out.push(z);
        }
    }
    if let Some((_, z)) = best {
        out.push(z);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Everything `decide` needs, laid out for speed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Compiled {
    lpm4: Lpm<u32>,
    lpm6: Lpm<u128>,
    kinds: Vec<ZoneKind>,
    candidates: Vec<Candidate>,
    /// Per initiator zone: indices into `candidates`, in evaluation order.
    by_initiator: Vec<Box<[u32]>>,
}

impl Compiled {
    pub(crate) fn build(
        zones: &[Zone],
        services: &[Service],
        paths: &[Path],
        exceptions: &[Exception],
        rules: &[Rule],
    ) -> Compiled {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut prefixes = Vec::new();
        for (i, z) in zones.iter().enumerate() {
            let id = ZoneId(i as u16);
            for p in &z.prefixes {
                prefixes.push((*p, id));
                match p {
                    IpNetwork::V4(n) => {
                        let m = mask4(n.prefix());
                        v4.push((n.prefix(), m, u32::from(n.network()) & m, id));
                    }
                    IpNetwork::V6(n) => {
                        let m = mask6(n.prefix());
                        v6.push((n.prefix(), m, u128::from(n.network()) & m, id));
                    }
                }
            }
        }

        let mut candidates = Vec::new();
        let mut by_initiator: Vec<Vec<u32>> = vec![Vec::new(); zones.len()];
        let mut add = |from: &Endpoint,
                       to: &Endpoint,
                       service: ServiceId,
                       reason: Reason,
                       expires: Option<Timestamp>| {
            let Some(svc) = services.get(service.index()) else {
                return;
            };
            let idx = candidates.len() as u32;
            candidates.push(Candidate {
                from: Matcher::new(from),
                to: Matcher::new(to),
                proto: svc.proto,
                ports: svc.ports.clone().into_boxed_slice(),
                service,
                reason,
                expires,
            });
            for z in touched(from, &prefixes) {
                if let Some(list) = by_initiator.get_mut(z.index()) {
                    list.push(idx);
                }
            }
        };
        for (p, path) in paths.iter().enumerate() {
            for (l, leg) in path.legs.iter().enumerate() {
                let reason = Reason::Path { path: PathId(p as u16), leg: (l + 1) as u16 };
                add(&leg.from, &leg.to, leg.service, reason, None);
            }
        }
        for (i, e) in exceptions.iter().enumerate() {
            let reason = Reason::Exception(ExceptionId(i as u16));
            add(&e.from, &e.to, e.service, reason, e.expires);
        }
        for (i, r) in rules.iter().enumerate() {
            add(&r.from, &r.to, r.service, Reason::Rule(RuleId(i as u16)), None);
        }

        Compiled {
            lpm4: Lpm::build(v4),
            lpm6: Lpm::build(v6),
            kinds: zones.iter().map(|z| z.kind).collect(),
            candidates,
            by_initiator: by_initiator.into_iter().map(Vec::into_boxed_slice).collect(),
        }
    }

    #[inline]
    pub(crate) fn zone_of(&self, addr: IpAddr) -> Option<ZoneId> {
        match addr {
            IpAddr::V4(a) => self.lpm4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.lpm6.lookup(u128::from(a)),
        }
    }

    pub(crate) fn decide(&self, conn: &Connection, now: Timestamp) -> Decision {
        let initiator_zone = self.zone_of(conn.initiator);
        let responder_zone = self.zone_of(conn.responder);
        let mut d = Decision {
            reason: Reason::NoRule,
            initiator_zone,
            responder_zone,
            service: None,
            valid_until: None,
        };
        let (Some(a), Some(b)) = (initiator_zone, responder_zone) else {
            return d;
        };
        if a == b {
            d.reason = Reason::IntraZone;
            return d;
        }
        if let Some(list) = self.by_initiator.get(a.index()) {
            for &i in list.iter() {
                let Some(c) = self.candidates.get(i as usize) else {
                    continue;
                };
                if c.from.matches(a, conn.initiator)
                    && c.to.matches(b, conn.responder)
                    && c.service_matches(conn.protocol, conn.responder_port)
                    && c.expires.is_none_or(|e| now < e)
                {
                    d.reason = c.reason;
                    d.service = Some(c.service);
                    d.valid_until = c.expires;
                    return d;
                }
            }
        }
        d.reason = self.deny_reason(a, b);
        d
    }

    fn deny_reason(&self, a: ZoneId, b: ZoneId) -> Reason {
        let ka = self.kinds.get(a.index()).copied();
        let kb = self.kinds.get(b.index()).copied();
        match (ka, kb) {
            (Some(ZoneKind::Mynumber), _) | (_, Some(ZoneKind::Mynumber)) => Reason::MynumberIsolation,
            (Some(ZoneKind::Lgwan), Some(ZoneKind::Internet))
            | (Some(ZoneKind::Internet), Some(ZoneKind::Lgwan)) => Reason::UnsanitizedCrossing,
            _ => Reason::NoRule,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn masks() {
        assert_eq!(mask4(0), 0);
        assert_eq!(mask4(24), 0xffff_ff00);
        assert_eq!(mask4(32), u32::MAX);
        assert_eq!(mask6(0), 0);
        assert_eq!(mask6(128), u128::MAX);
    }

    #[test]
    fn touched_sets() {
        let p = vec![
            (net("198.18.40.0/24"), ZoneId(0)),
            (net("0.0.0.0/0"), ZoneId(1)),
            (net("198.18.20.0/24"), ZoneId(2)),
        ];
        let host = Endpoint::Net(net("198.18.40.10/32"));
        assert_eq!(touched(&host, &p), vec![ZoneId(0)]);
        let wide = Endpoint::Net(net("198.18.0.0/16"));
        assert_eq!(touched(&wide, &p), vec![ZoneId(0), ZoneId(1), ZoneId(2)]);
        let v6 = Endpoint::Net(net("2001:db8::1/128"));
        assert!(touched(&v6, &p).is_empty());
    }
}
