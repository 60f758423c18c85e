//! Reading the daemon for the control protocol: counters, the flow table, links. Walks
//! the flow table where it must (stats by zone pair and leg, flow listings): O(flows),
//! on the control thread, never on a worker.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;

use sekisho_control::{
    AlertStats, ErrorBody, ErrorCode, EventStats, Flow, FlowQuery, FlowSort, FlowTableStats, InspectionStats,
    LegCounters, LegTraffic, MonitorStats, PortStats, SideStats, Stats, ZonePairTraffic,
};
use sekisho_dataplane::{DataPlane, IoCounters};
use sekisho_engine::{Engine, FlowKey, FlowSnapshot, Now, Seen, Side, SideCounters};
use sekisho_policy::ipnetwork::IpNetwork;
use sekisho_policy::{PathId, Policy, Reason, ZoneId};

use super::events::proto_name;

fn side(interface: &str, c: &SideCounters, io: Option<&IoCounters>) -> SideStats {
    let r = |f: fn(&IoCounters) -> &std::sync::atomic::AtomicU64| io.map_or(0, |io| f(io).load(Relaxed));
    SideStats {
        interface: interface.to_owned(),
        packets: c.packets,
        bytes: c.bytes,
        forwarded: c.forwarded,
        dropped: c.dropped,
        monitored: c.monitored,
        truncated: r(|io| &io.truncated),
        send_errors: r(|io| &io.send_errors),
        read_errors: r(|io| &io.read_errors),
        kernel_drops: r(|io| &io.kernel_drops),
        foreign: r(|io| &io.foreign),
    }
}

/// Counters per port side from the engine and the data plane.
pub(crate) fn port_stats(engine: &Engine, dp: &DataPlane) -> Vec<PortStats> {
    let loaded = engine.loaded();
    let counters = engine.counters();
    let io = |name: &str| dp.interfaces().iter().find(|x| x.name == name).map(|x| &x.counters);
    loaded
        .policy
        .ports()
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let c = counters.ports.get(i).copied().unwrap_or_default();
            PortStats {
                name: port.name.clone(),
                zone: loaded.policy.zone(port.zone).map_or_else(String::new, |z| z.name.clone()),
                inside: side(&port.inside, &c.inside, io(&port.inside)),
                outside: side(&port.outside, &c.outside, io(&port.outside)),
            }
        })
        .collect()
}

/// The whole of `stats`.
pub(crate) fn stats(engine: &Engine, dp: &DataPlane, events: EventStats, alerts: AlertStats) -> Stats {
    let loaded = engine.loaded();
    let policy = &loaded.policy;
    let counters = engine.counters();
    let reasons = Reason::CODES.iter().zip(counters.by_reason).map(|(c, n)| ((*c).to_owned(), n)).collect();
    let mut pairs: BTreeMap<(String, String), [u64; 3]> = BTreeMap::new();
    let mut legs: BTreeMap<(String, u16), [u64; 3]> = BTreeMap::new();
    engine.for_each_flow(|key, s, reason| {
        let (src, dst) = ends(key, s);
        let zone = |a: IpAddr| {
            policy.zone_of(a).and_then(|z| policy.zone(z)).map_or("-".to_owned(), |z| z.name.clone())
        };
        let add = |t: &mut [u64; 3]| {
            t[0] += 1;
            t[1] += s.packets;
            t[2] += s.bytes;
        };
        add(pairs.entry((zone(src.0), zone(dst.0))).or_default());
        if let Reason::Path { path, leg } = reason {
            let name =
                policy.paths().get(path.index()).map_or_else(|| format!("#{}", path.0), |p| p.name.clone());
            add(legs.entry((name, leg)).or_default());
        }
    });
    let f = engine.flow_stats();
    Stats {
        mode: policy.mode().as_str().to_owned(),
        generation: loaded.generation,
        ports: port_stats(engine, dp),
        reasons,
        zone_pairs: pairs
            .into_iter()
            .map(|((from, to), [flows, packets, bytes])| ZonePairTraffic { from, to, flows, packets, bytes })
            .collect(),
        legs: legs
            .into_iter()
            .map(|((path, leg), [flows, packets, bytes])| LegTraffic { path, leg, flows, packets, bytes })
            .collect(),
        flows: FlowTableStats {
            active: f.entries as u64,
            capacity: f.capacity as u64,
            inserted: f.inserted,
            evicted: f.evicted,
            expired: f.expired,
            refused: f.refused,
        },
        events,
        alerts,
        leg_counters: leg_counters(engine),
        inspection: inspection(engine),
        monitor: monitor(engine),
    }
}

/// Every leg's counters since the policy in force was loaded.
fn leg_counters(engine: &Engine) -> Vec<LegCounters> {
    engine
        .leg_stats()
        .into_iter()
        .map(|l| LegCounters {
            method: l.method.map_or_else(String::new, |m| m.as_str().to_owned()),
            leg: l.leg,
            flows: l.flows,
            packets: l.packets,
            bytes: l.bytes,
            mismatches: l.mismatches,
            not_sanitized: l.not_sanitized,
            apps: Seen::ALL
                .iter()
                .zip(l.identified)
                .filter(|(_, n)| *n > 0)
                .map(|(s, n)| (s.as_str().to_owned(), n))
                .collect(),
            path: l.path,
        })
        .collect()
}

fn inspection(engine: &Engine) -> InspectionStats {
    let i = engine.inspection_stats();
    InspectionStats {
        active: i.active as u64,
        capacity: i.capacity as u64,
        started: i.started,
        released: i.released,
        table_full: i.table_full,
        lost: i.lost,
        busy: i.busy,
        ahead: i.ahead,
        window_full: i.window_full,
        bad_checksum: i.bad_checksum,
        fragments: i.fragments,
        retransmission_differs: i.retransmission_differs,
        identified: i.identified,
        mismatches: i.mismatches,
        not_sanitized: i.not_sanitized,
        dns_suspicious: i.dns_suspicious,
    }
}

fn monitor(engine: &Engine) -> MonitorStats {
    let m = engine.monitor_stats();
    MonitorStats { detections: m.detections, lost: m.lost, evicted: m.evicted, blocked: m.blocked }
}

/// The initiator's and responder's (address, port).
fn ends(key: &FlowKey, s: &FlowSnapshot) -> ((IpAddr, u16), (IpAddr, u16)) {
    let a = key.socket(s.initiator);
    let b = key.socket(s.initiator.other());
    ((a.addr, a.port), (b.addr, b.port))
}

/// A flow as the protocol lists it.
pub(crate) fn flow(policy: &Policy, now: Now, key: &FlowKey, s: &FlowSnapshot, reason: Reason) -> Flow {
    let ((src, sport), (dst, dport)) = ends(key, s);
    let zone = |a: IpAddr| policy.zone_of(a).and_then(|z| policy.zone(z)).map(|z| z.name.clone());
    let port = usize::from(s.origin / 2);
    let secs = |ns: u64| ns / 1_000_000_000;
    Flow {
        proto: proto_name(key.protocol()),
        src: src.to_string(),
        dst: dst.to_string(),
        sport,
        dport,
        state: s.state.as_str().to_owned(),
        reason: policy.reason_name(reason).to_string(),
        packets: s.packets,
        bytes: s.bytes,
        port: policy.ports().get(port).map_or_else(|| format!("#{port}"), |p| p.name.clone()),
        side: Side::of_origin(s.origin).as_str().to_owned(),
        src_zone: zone(src),
        dst_zone: zone(dst),
        age_s: secs(now.mono.saturating_sub(s.created)),
        idle_s: secs(now.mono.saturating_sub(s.last_seen)),
    }
}

/// A [`FlowQuery`] checked against the policy.
pub(crate) struct Filter {
    zone: Option<ZoneId>,
    net: Option<IpNetwork>,
    port: Option<u16>,
    dport: Option<u16>,
    proto: Option<u8>,
    path: Option<(PathId, Option<u16>)>,
    reason: Option<String>,
}

fn bad(message: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::BadArgument, message)
}

impl Filter {
    /// Checks every filter of `q` against `policy` (unknown names are errors, with the
    /// names that exist).
    pub(crate) fn new(policy: &Policy, q: &FlowQuery) -> Result<Filter, ErrorBody> {
        let names = |it: &mut dyn Iterator<Item = &str>| it.collect::<Vec<_>>().join(", ");
        let zone = match &q.zone {
            Some(z) => Some(policy.zone_by_name(z).ok_or_else(|| {
                bad(format!(
                    "no zone {z:?}; zones: {}",
                    names(&mut policy.zones().iter().map(|z| z.name.as_str()))
                ))
            })?),
            None => None,
        };
        let net =
            match &q.addr {
                Some(a) => Some(a.parse::<IpNetwork>().map_err(|_| {
                    bad(format!("addr {a:?}: expected an address or a CIDR (198.18.20.0/24)"))
                })?),
                None => None,
            };
        let port = match &q.port {
            Some(p) => {
                Some(policy.ports().iter().position(|x| x.name == *p).map(|i| i as u16).ok_or_else(|| {
                    bad(format!(
                        "no port {p:?}; ports: {}",
                        names(&mut policy.ports().iter().map(|x| x.name.as_str()))
                    ))
                })?)
            }
            None => None,
        };
        let proto = match &q.proto {
            Some(p) => Some(crate::explain::protocol_number(p).map_err(|e| bad(e.0))?),
            None => None,
        };
        let path = match &q.path {
            Some(p) => {
                let (name, leg) =
                    match p.split_once('/') {
                        Some((n, l)) => (
                            n,
                            Some(l.parse::<u16>().map_err(|_| {
                                bad(format!("path {p:?}: the leg is a number (mail-textify/2)"))
                            })?),
                        ),
                        None => (p.as_str(), None),
                    };
                let id = policy.paths().iter().position(|x| x.name == name).ok_or_else(|| {
                    bad(format!(
                        "no path {name:?}; paths: {}",
                        names(&mut policy.paths().iter().map(|x| x.name.as_str()))
                    ))
                })?;
                Some((PathId(id as u16), leg))
            }
            None => None,
        };
        Ok(Filter { zone, net, port, dport: q.dport, proto, path, reason: q.reason.clone() })
    }

    /// Whether a flow passes every filter.
    pub(crate) fn matches(&self, policy: &Policy, key: &FlowKey, s: &FlowSnapshot, reason: Reason) -> bool {
        let ((src, _), (dst, dport)) = ends(key, s);
        if self.proto.is_some_and(|p| p != key.protocol())
            || self.port.is_some_and(|p| p != s.origin / 2)
            || self.dport.is_some_and(|p| p != dport)
        {
            return false;
        }
        if let Some(n) = self.net {
            if !n.contains(src) && !n.contains(dst) {
                return false;
            }
        }
        if let Some(z) = self.zone {
            if policy.zone_of(src) != Some(z) && policy.zone_of(dst) != Some(z) {
                return false;
            }
        }
        if let Some((path, leg)) = self.path {
            match reason {
                Reason::Path { path: p, leg: l } if p == path && leg.is_none_or(|x| x == l) => {}
                _ => return false,
            }
        }
        if let Some(prefix) = &self.reason {
            if !policy.reason_name(reason).to_string().starts_with(prefix.as_str()) {
                return false;
            }
        }
        true
    }
}

/// `flows`: the flows `q` selects, largest first by its sort, at most its limit.
pub(crate) fn flows(engine: &Engine, now: Now, q: &FlowQuery) -> Result<Vec<Flow>, ErrorBody> {
    let loaded = engine.loaded();
    let policy = &loaded.policy;
    let filter = Filter::new(policy, q)?;
    let limit = q.limit.unwrap_or(sekisho_control::DEFAULT_FLOWS).min(sekisho_control::MAX_FLOWS) as usize;
    let sort = q.sort.unwrap_or_default();
    // A min-heap of the `limit` largest: O(flows · log limit), memory O(limit).
    let mut heap: BinaryHeap<Reverse<(u64, u64, Entry)>> = BinaryHeap::with_capacity(limit + 1);
    let mut n = 0u64;
    engine.for_each_flow(|key, s, reason| {
        if limit == 0 || !filter.matches(policy, key, s, reason) {
            return;
        }
        let rank = match sort {
            FlowSort::Bytes => s.bytes,
            FlowSort::Packets => s.packets,
            FlowSort::Age => u64::MAX - s.created,
            FlowSort::Idle => u64::MAX - s.last_seen,
        };
        n += 1;
        heap.push(Reverse((rank, u64::MAX - n, Entry(*key, *s, reason))));
        if heap.len() > limit {
            heap.pop();
        }
    });
    let mut picked: Vec<(u64, u64, Entry)> = heap.into_iter().map(|Reverse(x)| x).collect();
    picked.sort_by_key(|x| Reverse((x.0, x.1)));
    Ok(picked.into_iter().map(|(_, _, Entry(k, s, r))| flow(policy, now, &k, &s, r)).collect())
}

/// A flow in the heap (ordered only by the rank beside it).
struct Entry(FlowKey, FlowSnapshot, Reason);

impl PartialEq for Entry {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// The kernel's operational state of `interface` (`missing` when it does not exist).
pub(crate) fn link_state(interface: &str) -> String {
    std::fs::read_to_string(format!("/sys/class/net/{interface}/operstate"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "missing".to_owned())
}
