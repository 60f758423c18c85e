//! Route analysis: whether the policy as a whole opens a route that no single item shows.
//!
//! # The model
//!
//! Every `[[rule]]` and `[[exception]]` is an *edge*: it joins each address of its `from`
//! with each address of its `to`. Every zone joins all of its own addresses (intra-zone
//! reach is always allowed). Direction and service do not matter: a connection carries
//! data both ways, and a host with connections on two sides can relay anything between
//! them. Path legs are *not* edges: a `[[path]]` is where sanitisation (無害化通信) is
//! declared, whatever zone its hosts live in — a rule into a sanitisation host is not
//! sanitisation.
//!
//! # The rules
//!
//! - **E-ROUTE-UNSANITIZED.** No chain of edges joins an address of an `internet` zone
//!   with an address of an `lgwan` or `mynumber` zone (通信経路の分割).
//! - **E-ROUTE-MYNUMBER / W-ROUTE-MYNUMBER.** マイナンバー利用事務系 data enters LGWAN
//!   only at the lgwan end of an exception (its *landing host*); from there its reach
//!   inside the LGWAN zone is normal. A chain whose first edge is a rule holding a landing
//!   host, and whose later edges avoid every lgwan address, must not reach an address of a
//!   `sanitization` or `internet` zone. If that first rule names the landing host
//!   specifically (its address, or a CIDR that does not hold the whole zone), the policy
//!   is refused. If the first rule holds the whole lgwan zone (`zone:NAME`, or a CIDR
//!   holding every prefix of the zone in its address family), the landing host only does
//!   what every LGWAN host may do — which its intra-zone reach allows anyway — and
//!   `check` warns.
//! - **W-PATH-NO-CHAIN.** The legs of a path meet at their sanitisation hosts (legs whose
//!   sanitisation ends share an address form one group); a group whose other ends reach
//!   fewer than two zones has a sanitiser that receives but never delivers.
//!
//! # Exactness and cost
//!
//! Intra-zone reach makes every zone one connected piece, so connectivity is computed on
//! zones: a rule or exception joins every zone its `from` can reach with every zone its
//! `to` can reach (`compile::touched`). That is exact up to three over-approximations,
//! each on the safe side (never a missed route): an endpoint may be counted in a zone
//! whose prefixes inside it are all taken by more specific zones; a rule shadowed by a
//! path leg for the same connection still counts; an expired exception still counts (the
//! verdict of `check` must not change with the date).
//!
//! With R rules, E exceptions, P zone prefixes, Z zones and T = Σ |zones an endpoint
//! reaches| ≤ 2·(R+E)·Z: the zone sets cost O((R+E)·P); the E-ROUTE-UNSANITIZED search is
//! one breadth-first search over zones, O(Z + T) (each edge is expanded at most once per
//! side); the mynumber search is one such search per exception plus the first-hop test
//! against every rule, O(E·(R + Z + T)); the path check is O(L²) per path of L legs.

use std::collections::VecDeque;

use ipnetwork::IpNetwork;

use crate::compile::touched;
use crate::error::{ConfigError, ConfigWarning, ErrorCode, WarningCode};
use crate::model::{Endpoint, Exception, Path, Rule, Service, Zone, ZoneId, ZoneKind};

/// What the analysis found: refusals and warnings.
#[derive(Default)]
pub(crate) struct Findings {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigWarning>,
}

/// The items the analysis reads.
pub(crate) struct Input<'a> {
    pub zones: &'a [Zone],
    pub prefixes: &'a [(IpNetwork, ZoneId)],
    pub services: &'a [Service],
    pub paths: &'a [Path],
    pub exceptions: &'a [Exception],
    pub rules: &'a [Rule],
}

/// Which end of an edge.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum End {
    From,
    To,
}

impl End {
    fn other(self) -> End {
        match self {
            End::From => End::To,
            End::To => End::From,
        }
    }

    fn index(self) -> usize {
        match self {
            End::From => 0,
            End::To => 1,
        }
    }
}

/// A rule or exception as an edge between the zones its ends reach.
struct Edge<'a> {
    /// `rule "x"` / `exception "y"`.
    label: String,
    ends: [&'a Endpoint; 2],
    reach: [Vec<ZoneId>; 2],
    service: &'a str,
}

impl Edge<'_> {
    fn end(&self, e: End) -> &Endpoint {
        self.ends[e.index()]
    }

    fn reach(&self, e: End) -> &[ZoneId] {
        &self.reach[e.index()]
    }
}

/// How a zone was first reached in a search.
#[derive(Copy, Clone)]
enum Via {
    /// A starting zone.
    Start,
    /// Through `edge`, entered at its end `from_end` in zone `prev`.
    Edge { prev: ZoneId, edge: usize, from_end: End },
}

/// Runs every route check on a policy whose items are otherwise valid.
pub(crate) fn analyse(input: &Input<'_>) -> Findings {
    let mut a = Analysis::new(input);
    a.unsanitized();
    a.mynumber();
    a.paths();
    a.out
}

struct Analysis<'a> {
    input: &'a Input<'a>,
    edges: Vec<Edge<'a>>,
    /// Per zone: the edges one of whose ends reaches it, and which end.
    adjacent: Vec<Vec<(usize, End)>>,
    out: Findings,
}

impl<'a> Analysis<'a> {
    fn new(input: &'a Input<'a>) -> Analysis<'a> {
        let edge =
            |label: String, from: &'a Endpoint, to: &'a Endpoint, service: crate::model::ServiceId| Edge {
                label,
                ends: [from, to],
                reach: [touched(from, input.prefixes), touched(to, input.prefixes)],
                service: input.services.get(service.index()).map_or("?", |s| s.name.as_str()),
            };
        // Rules first, then exceptions: `mynumber` relies on this order.
        let edges: Vec<Edge<'a>> = input
            .rules
            .iter()
            .map(|r| edge(format!("rule {:?}", r.name), &r.from, &r.to, r.service))
            .chain(
                input
                    .exceptions
                    .iter()
                    .map(|x| edge(format!("exception {:?}", x.name), &x.from, &x.to, x.service)),
            )
            .collect();
        let mut adjacent = vec![Vec::new(); input.zones.len()];
        for (i, e) in edges.iter().enumerate() {
            for end in [End::From, End::To] {
                for z in e.reach(end) {
                    if let Some(list) = adjacent.get_mut(z.index()) {
                        list.push((i, end));
                    }
                }
            }
        }
        Analysis { input, edges, adjacent, out: Findings::default() }
    }

    fn kind(&self, z: ZoneId) -> Option<ZoneKind> {
        self.input.zones.get(z.index()).map(|z| z.kind)
    }

    fn zone_name(&self, z: ZoneId) -> &str {
        self.input.zones.get(z.index()).map_or("?", |z| z.name.as_str())
    }

    fn zone_text(&self, z: ZoneId) -> String {
        match self.input.zones.get(z.index()) {
            Some(zone) => format!("zone {:?} ({}, {})", zone.name, zone.kind.as_str(), zone.kind.japanese()),
            None => "zone ?".to_owned(),
        }
    }

    /// An endpoint as written (`zone:lgwan`, `198.18.50.10`, `198.18.40.0/28`).
    fn endpoint_text(&self, e: &Endpoint) -> String {
        match e {
            Endpoint::Zone(z) => format!("zone:{}", self.zone_name(*z)),
            Endpoint::Net(n) if n.prefix() == if n.is_ipv4() { 32 } else { 128 } => n.ip().to_string(),
            Endpoint::Net(n) => n.to_string(),
        }
    }

    /// `rule "x" (zone:internet → 198.18.50.10, service rdp)`.
    fn edge_text(&self, i: usize) -> String {
        match self.edges.get(i) {
            Some(e) => format!(
                "{} ({} → {}, service {})",
                e.label,
                self.endpoint_text(e.end(End::From)),
                self.endpoint_text(e.end(End::To)),
                e.service
            ),
            None => "?".to_owned(),
        }
    }

    /// The part of endpoint `e` that lies in zone `z`, in words.
    fn part_text(&self, e: &Endpoint, z: ZoneId) -> String {
        match e {
            Endpoint::Zone(y) if *y == z => format!("any host of zone {:?}", self.zone_name(z)),
            other => format!("{} in zone {:?}", self.endpoint_text(other), self.zone_name(z)),
        }
    }

    /// Breadth-first search over zones from `seeds`, never entering a zone for which
    /// `blocked` holds, expanding each edge end at most once. Returns how each visited
    /// zone was reached and the visiting order.
    fn search(
        &self,
        seeds: &[(ZoneId, Via)],
        blocked: impl Fn(ZoneId) -> bool,
    ) -> (Vec<Option<Via>>, Vec<ZoneId>) {
        let mut via: Vec<Option<Via>> = vec![None; self.input.zones.len()];
        let mut expanded = vec![[false; 2]; self.edges.len()];
        let mut order = Vec::new();
        let mut queue = VecDeque::new();
        for &(z, v) in seeds {
            if let Some(slot @ None) = via.get_mut(z.index()) {
                if !blocked(z) {
                    *slot = Some(v);
                    order.push(z);
                    queue.push_back(z);
                }
            }
        }
        while let Some(u) = queue.pop_front() {
            let Some(list) = self.adjacent.get(u.index()) else { continue };
            for &(edge, end) in list {
                let far = end.other();
                let Some(done) = expanded.get_mut(edge).map(|x| &mut x[far.index()]) else { continue };
                if *done {
                    continue;
                }
                *done = true;
                let Some(e) = self.edges.get(edge) else { continue };
                for &v in e.reach(far) {
                    if let Some(slot @ None) = via.get_mut(v.index()) {
                        if !blocked(v) {
                            *slot = Some(Via::Edge { prev: u, edge, from_end: end });
                            order.push(v);
                            queue.push_back(v);
                        }
                    }
                }
            }
        }
        (via, order)
    }

    /// The hops (edge, end it was entered at, zone before, zone after) leading to `target`.
    fn hops(&self, via: &[Option<Via>], target: ZoneId) -> Vec<(usize, End, ZoneId, ZoneId)> {
        let mut hops = Vec::new();
        let mut at = target;
        // A chain is at most as long as the number of zones.
        for _ in 0..=self.input.zones.len() {
            match via.get(at.index()).copied().flatten() {
                Some(Via::Edge { prev, edge, from_end }) => {
                    hops.push((edge, from_end, prev, at));
                    at = prev;
                }
                _ => break,
            }
        }
        hops.reverse();
        hops
    }

    /// `A ⇄ rule "x" (…) ⇄ relay B ⇄ rule "y" (…) ⇄ C`, starting with `start` when given.
    fn chain_text(&self, start: Option<String>, hops: &[(usize, End, ZoneId, ZoneId)]) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(s) = start {
            parts.push(s);
        }
        for (k, &(edge, end, before, after)) in hops.iter().enumerate() {
            let Some(e) = self.edges.get(edge) else { continue };
            if k == 0 && parts.is_empty() {
                parts.push(self.part_text(e.end(end), before));
            }
            parts.push(self.edge_text(edge));
            let arrive = e.end(end.other());
            match hops.get(k + 1) {
                Some(&(next, next_end, _, _)) => {
                    let leave = self.edges.get(next).map(|n| n.end(next_end));
                    // The relay: one host both edges hold when there is one, otherwise the
                    // arriving end reaching the leaving one inside the zone.
                    let relay = match leave {
                        Some(l) if covers(l, arrive, after) => {
                            format!("relay {}", self.part_text(arrive, after))
                        }
                        Some(l) if covers(arrive, l, after) => format!("relay {}", self.part_text(l, after)),
                        Some(l) => format!(
                            "relay {}, which reaches {} (intra-zone)",
                            self.part_text(arrive, after),
                            self.endpoint_text(l)
                        ),
                        None => format!("relay {}", self.part_text(arrive, after)),
                    };
                    parts.push(relay);
                }
                None => parts.push(self.part_text(arrive, after)),
            }
        }
        parts.join(" ⇄ ")
    }

    /// E-ROUTE-UNSANITIZED: one error per connected group of zones that holds an internet
    /// zone and an lgwan or mynumber zone, with the shortest chain to the nearest of them.
    fn unsanitized(&mut self) {
        let n = self.input.zones.len();
        let mut seen = vec![false; n];
        let mut errors = Vec::new();
        for s in 0..n {
            let s = ZoneId(s as u16);
            if seen[s.index()] || self.kind(s) != Some(ZoneKind::Internet) {
                continue;
            }
            let (via, order) = self.search(&[(s, Via::Start)], |_| false);
            for z in &order {
                if let Some(x) = seen.get_mut(z.index()) {
                    *x = true;
                }
            }
            let targets: Vec<ZoneId> = order
                .iter()
                .copied()
                .filter(|z| matches!(self.kind(*z), Some(ZoneKind::Lgwan | ZoneKind::Mynumber)))
                .collect();
            let Some(&target) = targets.first() else { continue };
            let hops = self.hops(&via, target);
            let chain = self.chain_text(None, &hops);
            let also: Vec<String> =
                targets.iter().skip(1).map(|z| format!("{:?}", self.zone_name(*z))).collect();
            let also = if also.is_empty() {
                String::new()
            } else {
                format!(" (it joins zone {} as well)", also.join(", "))
            };
            let start = hops.first().map_or(s, |h| h.2);
            errors.push(ConfigError {
                code: ErrorCode::RouteUnsanitized,
                item: format!("route {:?} ⇄ {:?}", self.zone_name(start), self.zone_name(target)),
                message: format!(
                    "{} reaches {} outside every [[path]]: {chain}{also}; a host with connections \
                     on two sides can relay anything, so 通信経路の分割 is broken: carry this \
                     traffic on a [[path]] (無害化通信) or narrow or remove one of these items",
                    self.zone_text(start),
                    self.zone_text(target)
                ),
            });
        }
        self.out.errors.extend(errors);
    }

    /// E-ROUTE-MYNUMBER / W-ROUTE-MYNUMBER, one finding per exception at most.
    fn mynumber(&mut self) {
        let lgwan = |a: &Analysis<'_>, z: ZoneId| a.kind(z) == Some(ZoneKind::Lgwan);
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for x in self.input.rules.len()..self.edges.len() {
            let Some(exception) = self.edges.get(x) else { continue };
            // The landing end: the one that reaches only lgwan zones.
            let Some(land) = [End::To, End::From].into_iter().find(|e| {
                !exception.reach(*e).is_empty() && exception.reach(*e).iter().all(|z| lgwan(self, *z))
            }) else {
                continue;
            };
            let (land_ep, land_reach) = (exception.end(land), exception.reach(land));
            // First hops: rules with an end that holds the landing host.
            let mut narrow: Vec<(ZoneId, Via)> = Vec::new();
            let mut wide: Vec<(ZoneId, Via)> = Vec::new();
            for r in 0..self.input.rules.len() {
                let Some(rule) = self.edges.get(r) else { continue };
                for end in [End::From, End::To] {
                    let ep = rule.end(end);
                    if !intersects(ep, rule.reach(end), land_ep, land_reach) {
                        continue;
                    }
                    let whole = land_reach.iter().all(|z| self.holds_whole_zone(ep, *z));
                    let first = land_reach.first().copied().unwrap_or(ZoneId(0));
                    let seeds = if whole { &mut wide } else { &mut narrow };
                    for &z in rule.reach(end.other()) {
                        seeds.push((z, Via::Edge { prev: first, edge: r, from_end: end }));
                    }
                }
            }
            let landing = self.part_text(land_ep, land_reach.first().copied().unwrap_or(ZoneId(0)));
            let mut found = false;
            for (seeds, tier) in [(narrow, true), (wide, false)] {
                if found || seeds.is_empty() {
                    continue;
                }
                let (via, order) = self.search(&seeds, |z| lgwan(self, z));
                let target = order
                    .iter()
                    .copied()
                    .find(|z| matches!(self.kind(*z), Some(ZoneKind::Sanitization | ZoneKind::Internet)));
                let Some(target) = target else { continue };
                found = true;
                let hops = self.hops(&via, target);
                let chain = self.chain_text(Some(format!("landing host {landing}")), &hops);
                let first_rule =
                    hops.first().and_then(|h| self.edges.get(h.0)).map_or("?", |e| e.label.as_str());
                let item = format!("route from {}", exception.label);
                if tier {
                    errors.push(ConfigError {
                        code: ErrorCode::RouteMynumber,
                        item,
                        message: format!(
                            "{} brings マイナンバー利用事務系 data to {landing}, and a chain of rules \
                             that names that host leads on to {}: {chain}; narrow {first_rule} so \
                             that it no longer holds the landing host, or remove it",
                            exception.label,
                            self.zone_text(target)
                        ),
                    });
                } else {
                    warnings.push(ConfigWarning {
                        code: WarningCode::RouteMynumber,
                        item,
                        message: format!(
                            "{} brings マイナンバー利用事務系 data to {landing}, which {first_rule} \
                             (written for the whole LGWAN zone) takes on to {}: {chain}; consider \
                             keeping the landing host out of {first_rule}",
                            exception.label,
                            self.zone_text(target)
                        ),
                    });
                }
            }
        }
        self.out.errors.extend(errors);
        self.out.warnings.extend(warnings);
    }

    /// Whether endpoint `e` holds every address of zone `z` in its family (a CIDR) or is
    /// the zone itself.
    fn holds_whole_zone(&self, e: &Endpoint, z: ZoneId) -> bool {
        match e {
            Endpoint::Zone(y) => *y == z,
            Endpoint::Net(n) => {
                let Some(zone) = self.input.zones.get(z.index()) else { return false };
                let mut same_family = zone.prefixes.iter().filter(|p| p.is_ipv4() == n.is_ipv4()).peekable();
                same_family.peek().is_some()
                    && same_family.all(|p| n.prefix() <= p.prefix() && n.contains(p.network()))
            }
        }
    }

    /// W-PATH-NO-CHAIN: per path, legs grouped by shared sanitisation hosts; a group
    /// whose other ends reach fewer than two zones never delivers.
    fn paths(&mut self) {
        let sanitization = |a: &Analysis<'_>, set: &[ZoneId]| {
            !set.is_empty() && set.iter().all(|z| a.kind(*z) == Some(ZoneKind::Sanitization))
        };
        let mut warnings = Vec::new();
        for path in self.input.paths {
            // Per leg: (sanitiser ends, zones the other ends reach).
            let legs: Vec<(Vec<&Endpoint>, Vec<ZoneId>)> = path
                .legs
                .iter()
                .map(|leg| {
                    let f = touched(&leg.from, self.input.prefixes);
                    let t = touched(&leg.to, self.input.prefixes);
                    let (fs, ts) = (sanitization(self, &f), sanitization(self, &t));
                    let mut sanitisers = Vec::new();
                    let mut far = Vec::new();
                    if fs {
                        sanitisers.push(&leg.from);
                    } else {
                        far.extend(f);
                    }
                    if ts {
                        sanitisers.push(&leg.to);
                    } else {
                        far.extend(t);
                    }
                    (sanitisers, far)
                })
                .collect();
            let mut group: Vec<usize> = (0..legs.len()).collect();
            let find = |g: &Vec<usize>, mut i: usize| {
                while g[i] != i {
                    i = g[i];
                }
                i
            };
            for i in 0..legs.len() {
                for j in i + 1..legs.len() {
                    let shared = legs[i].0.iter().any(|a| {
                        legs[j].0.iter().any(|b| {
                            intersects(
                                a,
                                &touched(a, self.input.prefixes),
                                b,
                                &touched(b, self.input.prefixes),
                            )
                        })
                    });
                    if shared {
                        let (ri, rj) = (find(&group, i), find(&group, j));
                        group[ri.max(rj)] = ri.min(rj);
                    }
                }
            }
            for root in 0..legs.len() {
                let members: Vec<usize> =
                    (0..legs.len()).filter(|i| find(&group, *i) == root && !legs[*i].0.is_empty()).collect();
                let Some(&first) = members.first() else { continue };
                let mut far: Vec<ZoneId> = members.iter().flat_map(|i| legs[*i].1.iter().copied()).collect();
                far.sort_unstable();
                far.dedup();
                if far.len() >= 2 {
                    continue;
                }
                let numbers: Vec<String> = members.iter().map(|i| (i + 1).to_string()).collect();
                let sanitiser =
                    legs[first].0.first().map_or_else(|| "?".to_owned(), |e| self.endpoint_text(e));
                let from = match far.first() {
                    Some(z) => format!("only zone {:?}", self.zone_name(*z)),
                    None => "no other zone".to_owned(),
                };
                let (noun, verb) = if members.len() == 1 { ("leg", "meets") } else { ("legs", "meet") };
                warnings.push(ConfigWarning {
                    code: WarningCode::PathNoChain,
                    item: format!("path {:?}", path.name),
                    message: format!(
                        "{noun} {} {verb} sanitiser {sanitiser}, whose other ends reach {from}: it \
                         receives but never delivers to another zone, so these legs can never \
                         chain; add the leg that carries the sanitised data on, or remove them",
                        numbers.join(", ")
                    ),
                });
            }
        }
        self.out.warnings.extend(warnings);
    }
}

/// Whether endpoint `outer` holds every address of `inner` that lies in zone `z`.
fn covers(outer: &Endpoint, inner: &Endpoint, z: ZoneId) -> bool {
    match (outer, inner) {
        (Endpoint::Zone(y), _) => *y == z,
        (Endpoint::Net(_), Endpoint::Zone(_)) => false,
        (Endpoint::Net(o), Endpoint::Net(i)) => o.prefix() <= i.prefix() && o.contains(i.network()),
    }
}

/// Whether two endpoints (with the zones they reach) may share an address.
fn intersects(a: &Endpoint, a_reach: &[ZoneId], b: &Endpoint, b_reach: &[ZoneId]) -> bool {
    match (a, b) {
        (Endpoint::Zone(x), Endpoint::Zone(y)) => x == y,
        (Endpoint::Zone(x), Endpoint::Net(_)) => b_reach.contains(x),
        (Endpoint::Net(_), Endpoint::Zone(y)) => a_reach.contains(y),
        (Endpoint::Net(m), Endpoint::Net(n)) => m.contains(n.network()) || n.contains(m.network()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Endpoint {
        Endpoint::Net(s.parse().unwrap())
    }

    #[test]
    fn intersection_of_endpoints() {
        assert!(intersects(&net("198.18.20.0/24"), &[], &net("198.18.20.30/32"), &[]));
        assert!(intersects(&net("198.18.20.30/32"), &[], &net("198.18.20.0/24"), &[]));
        assert!(!intersects(&net("198.18.20.0/25"), &[], &net("198.18.20.130/32"), &[]));
        assert!(!intersects(&net("198.18.20.0/24"), &[], &net("2001:db8::/32"), &[]));
        assert!(intersects(&Endpoint::Zone(ZoneId(1)), &[ZoneId(1)], &net("198.18.20.30/32"), &[ZoneId(1)]));
        assert!(!intersects(&Endpoint::Zone(ZoneId(2)), &[ZoneId(2)], &net("198.18.20.30/32"), &[ZoneId(1)]));
    }
}
