//! The sekisho engine: decides, frame by frame, whether a frame may cross a port.
//!
//! Sans-IO: [`Engine::process`] takes the time, the ingress interface and the frame, and
//! returns a [`Verdict`]; it reads no clock, opens no socket and allocates nothing. The
//! data plane (or the offline replay) owns the I/O around it.
//!
//! One packet's path: parse ([`sekisho_wire`]) → link traffic (ARP, ND/RA, DHCP) stays in
//! its pair → anti-spoofing on a port's `inside` → later fragments follow their first
//! fragment → ICMP errors follow the flow they quote → flow lookup (lock-free) → on a hit,
//! the cached decision (re-made after a policy reload or an exception's expiry) and the
//! application check of the first payload → on a miss, the policy's decision for
//! initiator → responder, the tunnel check, and a new flow entry.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod app;
mod counters;
mod reason;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;
use sekisho_flow::{tcp_flags, CachedDecision, Endpoint, FlowEntry, FlowKey, FlowTable, Socket, Timeouts};
use sekisho_policy::{App, Connection, Mode, Policy, PortId, Proto, Reason, Timestamp};
use sekisho_wire::{parse_ethernet, Icmp, Ip, Tunnel, L3, L4};

pub use counters::{CounterSnapshot, PortCounters, SideCounters};
pub use sekisho_flow::{FlowSnapshot, FlowState, TableStats};

/// Which interface of a port a frame arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Toward the segment's own hosts.
    Inside,
    /// Toward the core router.
    Outside,
}

impl Side {
    /// The other interface of the pair: where an allowed frame leaves.
    pub fn other(self) -> Side {
        match self {
            Side::Inside => Side::Outside,
            Side::Outside => Side::Inside,
        }
    }

    /// `"inside"` or `"outside"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Inside => "inside",
            Side::Outside => "outside",
        }
    }
}

/// Where a frame came in: a port and one of its two interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ingress {
    /// The port (index into the policy's ports).
    pub port: PortId,
    /// The interface of the pair.
    pub side: Side,
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send it, unchanged, out of the other interface of the pair.
    Forward,
    /// Drop it.
    Drop,
}

/// The addresses of an IP packet, for alerts and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    /// IP protocol number.
    pub protocol: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (ICMP echo: the identifier; otherwise 0 without ports).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// The engine's decision on one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Forward or drop.
    pub action: Action,
    /// Why: the stable reason code (and the path, exception or rule that allowed it).
    pub reason: Reason,
    /// True when `mode = "monitor"` forwarded a frame that enforce mode would drop.
    pub monitored: bool,
    /// The packet's addresses, when it was IP and parsed.
    pub packet: Option<PacketInfo>,
}

impl Verdict {
    fn new(reason: Reason, packet: Option<PacketInfo>) -> Verdict {
        let action = if reason.allowed() { Action::Forward } else { Action::Drop };
        Verdict { action, reason, monitored: false, packet }
    }

    /// True when this verdict should raise an alert: anything enforce mode drops.
    pub fn is_alert(&self) -> bool {
        !self.reason.allowed()
    }
}

/// A policy together with the generation number that flows cache their decisions under.
pub struct Loaded {
    /// The compiled policy.
    pub policy: Policy,
    /// Increases by one at every reload.
    pub generation: u32,
}

/// A reload was refused; the running policy stays in force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// Ports and interfaces are opened at start; changing them needs a restart.
    #[error("the [[port]] list changed ({0}); ports are opened at start: restart sekishod to apply it")]
    PortsChanged(String),
    /// The flow table is sized at start.
    #[error("the [flow] section changed; the flow table is sized at start: restart sekishod to apply it")]
    FlowChanged,
}

/// Fragments are remembered this long after their first fragment.
const FRAGMENT_TIMEOUT_S: u64 = 30;
/// At most this many fragmented datagrams are followed at once.
const FRAGMENT_CAPACITY: usize = 65_536;

/// The inspection word of a flow whose application has been checked (or needs none).
const INSPECTED: u8 = 0;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

/// The engine: one policy, one flow table, shared by every data-plane thread.
pub struct Engine {
    loaded: ArcSwap<Loaded>,
    next_generation: AtomicU32,
    flows: FlowTable,
    fragments: FlowTable,
    counters: counters::Counters,
}

fn timeouts(policy: &Policy) -> Timeouts {
    let f = policy.flow();
    Timeouts::from_secs(
        f.tcp_syn_timeout_s,
        f.tcp_established_timeout_s,
        f.tcp_closing_timeout_s,
        f.udp_timeout_s,
        f.icmp_timeout_s,
    )
}

/// The ports a flow key uses: TCP/UDP ports; for ICMP echo the identifier on both ends,
/// so that a request and its reply share a key.
fn l4_ports(l4: &L4<'_>) -> (u16, u16) {
    match l4 {
        L4::Tcp(t) => (t.sport, t.dport),
        L4::Udp(u) => (u.sport, u.dport),
        L4::Icmp(i) => (i.ident, i.ident),
        _ => (0, 0),
    }
}

/// ICMP echo replies (v4 type 0, v6 type 129) only ever answer a request.
fn is_echo_reply(icmp: &Icmp) -> bool {
    icmp.ty == if icmp.v6 { 129 } else { 0 }
}

fn is_link_local(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80 || a.is_unspecified(),
        IpAddr::V4(_) => false,
    }
}

fn is_link_multicast(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V6(a) if a.segments()[0] == 0xff02)
}

/// Traffic that never leaves the link (DESIGN.md section 1): IPv6 neighbour discovery and
/// router advertisements (ICMPv6 133–137, hop limit 255) and MLD (130–132, 143, hop limit
/// 1) in link scope, DHCPv4 broadcasts, and DHCPv6 in link scope. It stays in its pair.
fn is_link_traffic(ip: &Ip<'_>) -> bool {
    let link_scope = is_link_multicast(ip.dst) || is_link_local(ip.dst) || is_link_local(ip.src);
    match ip.l4 {
        L4::Icmp(i) if i.v6 => {
            let nd = (133..=137).contains(&i.ty) && ip.hop_limit == 255;
            let mld = matches!(i.ty, 130..=132 | 143) && ip.hop_limit == 1;
            (nd || mld) && link_scope
        }
        L4::Udp(u) => match (ip.src, ip.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                matches!((u.sport, u.dport), (68, 67) | (67, 68)) && (s.is_unspecified() || d.is_broadcast())
            }
            (IpAddr::V6(_), IpAddr::V6(_)) => {
                matches!((u.sport, u.dport), (546, 547) | (547, 546)) && link_scope
            }
            _ => false,
        },
        _ => false,
    }
}

/// True when a service of protocol `proto` and application `app` names tunnel `t`.
fn names_tunnel(proto: Proto, app: App, t: Tunnel) -> bool {
    matches!(
        (t, proto, app),
        (Tunnel::Gre, Proto::Gre, _)
            | (Tunnel::IpInIp, Proto::Ipip, _)
            | (Tunnel::Ipv6InIp, Proto::Ipv6, _)
            | (Tunnel::Vxlan, _, App::Vxlan)
            | (Tunnel::Teredo, _, App::Teredo)
    )
}

/// Everything the flow logic needs from one packet.
struct Packet<'p> {
    key: FlowKey,
    sender: Endpoint,
    src: Socket,
    dst: Socket,
    protocol: u8,
    flags: u16,
    payload: &'p [u8],
    tunnel: Option<Tunnel>,
    len: usize,
}

impl Engine {
    /// An engine enforcing `policy`, with a flow table sized by its `[flow]` section.
    pub fn new(policy: Policy) -> Engine {
        let flows = FlowTable::new(policy.flow().capacity, timeouts(&policy));
        let t = FRAGMENT_TIMEOUT_S;
        let fragments = FlowTable::new(FRAGMENT_CAPACITY, Timeouts::from_secs(t, t, t, t, t));
        let counters = counters::Counters::new(policy.ports().len());
        Engine {
            loaded: ArcSwap::from_pointee(Loaded { policy, generation: 1 }),
            next_generation: AtomicU32::new(2),
            flows,
            fragments,
            counters,
        }
    }

    /// The policy in force (cheap; lock-free).
    pub fn loaded(&self) -> arc_swap::Guard<Arc<Loaded>> {
        self.loaded.load()
    }

    /// Replaces the policy. Existing flows are re-decided at their next packet: a flow
    /// the new policy denies is cut then. Ports and the `[flow]` section cannot change
    /// without a restart. Returns the new generation.
    pub fn reload(&self, policy: Policy) -> Result<u32, ReloadError> {
        let current = self.loaded.load();
        let old = current.policy.ports();
        let new = policy.ports();
        if old.len() != new.len() {
            return Err(ReloadError::PortsChanged(format!("{} ports before, {} now", old.len(), new.len())));
        }
        for (a, b) in old.iter().zip(new) {
            if (&a.name, &a.inside, &a.outside) != (&b.name, &b.inside, &b.outside) {
                return Err(ReloadError::PortsChanged(format!("port \"{}\" differs", a.name)));
            }
        }
        if timeouts(&policy) != *self.flows.timeouts()
            || policy.flow().capacity != current.policy.flow().capacity
        {
            return Err(ReloadError::FlowChanged);
        }
        let generation = self.next_generation.fetch_add(1, Relaxed);
        self.loaded.store(Arc::new(Loaded { policy, generation }));
        Ok(generation)
    }

    /// Decides what to do with `frame`, which arrived at `ingress` at `now`.
    pub fn process(&self, now: Timestamp, ingress: Ingress, frame: &[u8]) -> Verdict {
        let loaded = self.loaded.load();
        let monitor = loaded.policy.mode() == Mode::Monitor;
        let mut verdict = self.judge(&loaded, monitor, now, ingress, frame);
        if monitor && verdict.action == Action::Drop {
            verdict.action = Action::Forward;
            verdict.monitored = true;
        }
        self.counters.count(ingress, frame.len(), &verdict);
        verdict
    }

    /// Removes idle flows and fragment records; returns how many flows went.
    pub fn sweep(&self, now: Timestamp) -> usize {
        self.fragments.sweep(now.0);
        self.flows.sweep(now.0)
    }

    /// Counters per reason code and per port.
    pub fn counters(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }

    /// The flow table's counters.
    pub fn flow_stats(&self) -> TableStats {
        self.flows.stats()
    }

    /// Calls `f` for every flow with its key, a snapshot of its entry, and its reason.
    pub fn for_each_flow(&self, mut f: impl FnMut(&FlowKey, &FlowSnapshot, Reason)) {
        self.flows.for_each(|k, e| {
            let s = e.snapshot();
            f(k, &s, reason::decode(s.decision.verdict));
        });
    }

    fn judge(&self, l: &Loaded, monitor: bool, now: Timestamp, ingress: Ingress, frame: &[u8]) -> Verdict {
        let parsed = match parse_ethernet(frame) {
            Ok(p) => p,
            Err(_) => return Verdict::new(Reason::Malformed, None),
        };
        let ip = match &parsed.l3 {
            L3::Ip(ip) => ip,
            L3::Arp => return Verdict::new(Reason::Link, None),
            &L3::Other { ethertype } => {
                let listed = l.policy.allow_ethertypes().contains(&ethertype);
                return Verdict::new(if listed { Reason::Link } else { Reason::NonIp }, None);
            }
        };
        let (sport, dport) = l4_ports(&ip.l4);
        let reason =
            self.judge_ip(l, monitor, now, ingress, parsed.vlan.key(), ip, (sport, dport), frame.len());
        Verdict::new(
            reason,
            Some(PacketInfo { protocol: ip.protocol, src: ip.src, dst: ip.dst, sport, dport }),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn judge_ip(
        &self,
        l: &Loaded,
        monitor: bool,
        now: Timestamp,
        ingress: Ingress,
        vlan: u32,
        ip: &Ip<'_>,
        (sport, dport): (u16, u16),
        len: usize,
    ) -> Reason {
        if is_link_traffic(ip) {
            return Reason::Link;
        }
        if ingress.side == Side::Inside {
            let port_zone = l.policy.ports().get(usize::from(ingress.port.0)).map(|p| p.zone);
            if port_zone.is_none() || l.policy.zone_of(ip.src) != port_zone {
                return Reason::SpoofedSource;
            }
        }
        let port = ingress.port.0;
        let (flags, payload) = match ip.l4 {
            L4::Tcp(t) if t.flags.is_invalid() => return Reason::Malformed,
            L4::Tcp(t) => (t.flags.0, t.payload),
            L4::Udp(u) => (0, u.payload),
            L4::Icmp(Icmp { quoted: Some(q), .. }) => {
                // An ICMP error belongs to the flow it quotes and must go back to the
                // endpoint that sent the quoted packet.
                // Echo flows are keyed with the identifier on both ends (see `l4_ports`).
                let dport =
                    if matches!(q.protocol, IPPROTO_ICMP | IPPROTO_ICMPV6) { q.sport } else { q.dport };
                let (key, _) = FlowKey::new(
                    port,
                    vlan,
                    q.protocol,
                    Socket { addr: q.src, port: q.sport },
                    Socket { addr: q.dst, port: dport },
                );
                let flows = self.flows.pin();
                let related = q.src == ip.dst
                    && flows.get(&key, now.0).is_some_and(|e| reason::decode(e.decision().verdict).allowed());
                return if related { Reason::Related } else { Reason::NoFlow };
            }
            L4::NotFirstFragment => return self.later_fragment(port, vlan, ip, now, len),
            _ => (0, &[][..]),
        };
        let src = Socket { addr: ip.src, port: sport };
        let dst = Socket { addr: ip.dst, port: dport };
        let (key, sender) = FlowKey::new(port, vlan, ip.protocol, src, dst);
        let packet =
            Packet { key, sender, src, dst, protocol: ip.protocol, flags, payload, tunnel: ip.tunnel, len };
        let reason = match ip.l4 {
            L4::Icmp(i) => self.flow(l, monitor, now, &packet, is_echo_reply(&i)),
            _ => self.flow(l, monitor, now, &packet, false),
        };
        if let Some(frag) = ip.fragment {
            if reason.allowed() {
                self.first_fragment(port, vlan, ip, frag.id, reason, now);
            }
        }
        reason
    }

    fn fragment_key(port: u16, vlan: u32, ip: &Ip<'_>, id: u32) -> FlowKey {
        let src = Socket { addr: ip.src, port: (id >> 16) as u16 };
        let dst = Socket { addr: ip.dst, port: id as u16 };
        FlowKey::new(port, vlan, ip.protocol, src, dst).0
    }

    fn first_fragment(&self, port: u16, vlan: u32, ip: &Ip<'_>, id: u32, reason: Reason, now: Timestamp) {
        let key = Self::fragment_key(port, vlan, ip, id);
        let decision = CachedDecision { verdict: reason::encode(reason), generation: 0 };
        let entry = FlowEntry::new(now.0, ip.protocol, Endpoint::Lo, decision, u64::MAX);
        // A full fragment table only means later fragments of this datagram are dropped.
        let _ = self.fragments.pin().insert(key, entry, now.0);
    }

    fn later_fragment(&self, port: u16, vlan: u32, ip: &Ip<'_>, now: Timestamp, len: usize) -> Reason {
        let Some(frag) = ip.fragment else { return Reason::Fragment };
        let key = Self::fragment_key(port, vlan, ip, frag.id);
        let fragments = self.fragments.pin();
        match fragments.get(&key, now.0) {
            Some(e) => {
                e.observe(now.0, Endpoint::Lo, len, 0);
                reason::decode(e.decision().verdict)
            }
            None => Reason::Fragment,
        }
    }

    /// Decides a new flow of `p` (its sender as initiator), including the tunnel rule.
    fn decide(
        &self,
        l: &Loaded,
        now: Timestamp,
        initiator: Socket,
        responder: Socket,
        p: &Packet<'_>,
    ) -> (Reason, App, u64) {
        let conn = Connection {
            protocol: p.protocol,
            initiator: initiator.addr,
            responder: responder.addr,
            responder_port: responder.port,
        };
        let decision = l.policy.decide(&conn, now);
        let service = decision.service.and_then(|id| l.policy.services().get(usize::from(id.0)));
        let app = service.map_or(App::Any, |s| s.app);
        let mut reason = decision.reason;
        if let Some(t) = p.tunnel {
            let named = service.is_some_and(|s| names_tunnel(s.proto, s.app, t));
            if reason.allowed() && reason != Reason::IntraZone && !named {
                reason = Reason::Tunnel;
            }
        }
        (reason, app, decision.valid_until.map_or(u64::MAX, |t| t.0))
    }

    fn flow(&self, l: &Loaded, monitor: bool, now: Timestamp, p: &Packet<'_>, reply_only: bool) -> Reason {
        let flows = self.flows.pin();
        let tcp = p.protocol == IPPROTO_TCP;
        let bare_syn = tcp && p.flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
        if let Some(entry) = flows.get(&p.key, now.0) {
            let from_initiator = p.sender == entry.initiator();
            if bare_syn && !from_initiator {
                // The responder asks to open the reverse direction: that needs its own
                // permission (a path leg never grants it).
                let (reason, _, _) = self.decide(l, now, p.src, p.dst, p);
                if !reason.allowed() {
                    return reason;
                }
            }
            let closed = matches!(entry.state(), FlowState::Closing | FlowState::Closed);
            if !(bare_syn && from_initiator && closed) {
                let reason = self.cached(l, now, entry, p);
                if reason.allowed() || monitor {
                    entry.observe(now.0, p.sender, p.len, p.flags);
                }
                return if reason.allowed() {
                    self.inspect(entry, reason, from_initiator, tcp, p.payload)
                } else {
                    reason
                };
            }
            // A new connection on the 5-tuple of a closed one.
            flows.remove(&p.key);
        }
        if (tcp && !bare_syn) || reply_only {
            return Reason::NoFlow;
        }
        let (reason, app, valid_until) = self.decide(l, now, p.src, p.dst, p);
        if !reason.allowed() && !monitor {
            return reason;
        }
        let decision = CachedDecision { verdict: reason::encode(reason), generation: l.generation };
        let entry = FlowEntry::new(now.0, p.protocol, p.sender, decision, valid_until);
        entry.set_inspect_state(if reason.allowed() { app::to_u8(app) } else { INSPECTED });
        let Ok(entry) = flows.insert(p.key, entry, now.0) else { return Reason::FlowTableFull };
        entry.observe(now.0, p.sender, p.len, p.flags);
        if reason.allowed() {
            self.inspect(entry, reason, true, tcp, p.payload)
        } else {
            reason
        }
    }

    /// The flow's cached reason, re-decided when the policy changed or an exception it
    /// relied on expired. An application mismatch is final.
    fn cached(&self, l: &Loaded, now: Timestamp, entry: &FlowEntry, p: &Packet<'_>) -> Reason {
        let d = entry.decision();
        let cached = reason::decode(d.verdict);
        if (d.generation == l.generation && now.0 < entry.valid_until()) || cached == Reason::AppMismatch {
            return cached;
        }
        let initiator = p.key.socket(entry.initiator());
        let responder = p.key.socket(entry.initiator().other());
        let (reason, _, valid_until) = self.decide(l, now, initiator, responder, p);
        entry.set_decision(
            CachedDecision { verdict: reason::encode(reason), generation: l.generation },
            valid_until,
        );
        reason
    }

    /// Checks the first payload of a flow whose service declares an application.
    fn inspect(
        &self,
        entry: &FlowEntry,
        reason: Reason,
        from_initiator: bool,
        tcp: bool,
        payload: &[u8],
    ) -> Reason {
        let state = entry.inspect_state();
        if state == INSPECTED || payload.is_empty() {
            return reason;
        }
        let app = app::from_u8(state);
        entry.set_inspect_state(INSPECTED);
        match app::check(app, from_initiator, tcp, payload) {
            app::Check::Match => reason,
            app::Check::Mismatch => {
                let d = entry.decision();
                entry.set_decision(
                    CachedDecision { verdict: reason::encode(Reason::AppMismatch), generation: d.generation },
                    u64::MAX,
                );
                Reason::AppMismatch
            }
        }
    }
}
