//! Stage 4, the packet's own connection: look it up (lock-free), bind each end to the side
//! of the port it arrived on, follow TCP sequence numbers, or open a new connection when
//! the packet may open one.

use sekisho_flow::tcp::Segment;
use sekisho_flow::{Endpoint, FlowEntry, FlowKey, FlowState, NewFlow, Observed, Pinned, Socket};
use sekisho_policy::Reason;
use sekisho_wire::{Ip, Tunnel, L4};

use crate::decide::{self, tunnel_class, Opening};
use crate::{inspect, Cx, Side};

/// What a packet can do to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A TCP SYN without ACK: the only TCP segment that opens a connection.
    Syn,
    /// Any other TCP segment.
    Tcp,
    /// A packet that may open a connection (UDP, an ICMP echo request, other protocols).
    Opens,
    /// An ICMP echo reply: it only ever answers.
    Answers,
}

/// Everything the connection logic needs from one packet.
pub(crate) struct Packet<'p> {
    pub key: FlowKey,
    pub sender: Endpoint,
    pub src: Socket,
    pub dst: Socket,
    pub protocol: u8,
    pub kind: Kind,
    pub seg: Option<Segment>,
    pub payload: &'p [u8],
    pub tunnel: Option<Tunnel>,
    pub len: usize,
    /// The parsed IP packet (for what only inspection reads: fragment, checksum).
    pub ip: &'p Ip<'p>,
}

impl Packet<'_> {
    /// The packet is an IP fragment (this one holds only part of the transport data).
    pub(crate) fn fragmented(&self) -> bool {
        self.ip.fragment.is_some()
    }

    /// Whether the transport checksum is right (the receiver would accept the packet).
    pub(crate) fn checksum_ok(&self) -> bool {
        let wire = match self.ip.l4 {
            L4::Tcp(t) => t.segment,
            L4::Udp(u) => u.datagram,
            _ => return true,
        };
        sekisho_wire::transport_checksum_ok(self.src.addr, self.dst.addr, self.protocol, wire)
    }

    fn opening(&self, side: Side) -> Opening {
        Opening {
            initiator: self.src,
            responder: self.dst,
            protocol: self.protocol,
            tunnel: self.tunnel,
            side,
        }
    }
}

/// The verdict on `p` as a packet of its own connection.
pub(crate) fn track(cx: &Cx<'_>, p: &Packet<'_>) -> Reason {
    let flows = cx.engine.flows.pin();
    if let Some(entry) = flows.get(&p.key, cx.now.mono) {
        let from_initiator = p.sender == entry.initiator();
        let reopens = p.kind == Kind::Syn
            && from_initiator
            && Side::of_origin(entry.origin()) == cx.ingress.side
            && matches!(entry.state(), FlowState::Closing | FlowState::Closed);
        if !reopens {
            return existing(cx, &flows, entry, p, from_initiator);
        }
        // A new connection on the 5-tuple of a closed one.
        flows.remove(&p.key);
    }
    open(cx, &flows, p)
}

/// Judges a packet that opens nothing and leaves no state: ICMP messages other than echo
/// and errors (each one is judged as if it opened a connection from its source).
pub(crate) fn stateless(cx: &Cx<'_>, p: &Packet<'_>) -> Reason {
    decide::decide(cx, &p.opening(cx.ingress.side)).reason
}

fn open(cx: &Cx<'_>, flows: &Pinned<'_>, p: &Packet<'_>) -> Reason {
    // An attempt to open a connection: the monitor measures scans from internet zones.
    let watched = cx.engine.monitor.watched(&cx.loaded.policy, cx.port, cx.ingress.side);
    if watched && cx.engine.monitor.attempt(cx.now.mono, p.src.addr, p.dst.addr, p.dst.port) {
        return Reason::BlockedSource;
    }
    if matches!(p.kind, Kind::Tcp | Kind::Answers) {
        return Reason::NoFlow;
    }
    let decided = decide::decide(cx, &p.opening(cx.ingress.side));
    let reason = decided.reason;
    if !reason.allowed() && !cx.monitor {
        return reason;
    }
    if watched && p.kind == Kind::Syn && reason.allowed() {
        cx.engine.monitor.syn(cx.now.mono, p.dst.addr);
    }
    let entry = FlowEntry::new(
        cx.now.mono,
        NewFlow {
            protocol: p.protocol,
            initiator: p.sender,
            origin: cx.origin(),
            share: decided.share,
            class: tunnel_class(p.tunnel),
            decision: decide::cached(cx, reason),
            syn: p.seg.as_ref(),
        },
    );
    entry.set_inspect_state(if reason.allowed() {
        inspect::word::pending(decided.app)
    } else {
        inspect::word::CHECKED
    });
    match flows.insert(p.key, entry, cx.now.mono) {
        // Our entry, or one another thread inserted first: either way, judge the packet on it.
        Ok(entry) => {
            if reason.allowed() {
                cx.count_flow(reason);
            }
            existing(cx, flows, entry, p, p.sender == entry.initiator())
        }
        Err(_) => Reason::FlowTableFull,
    }
}

/// Accounts `p` on its flow (TCP: checked against the tracked windows first); false when
/// it was outside them and changed nothing.
#[inline]
pub(crate) fn observe(
    cx: &Cx<'_>,
    flows: &Pinned<'_>,
    entry: &FlowEntry,
    p: &Packet<'_>,
    from_initiator: bool,
) -> bool {
    match entry.observe(cx.now.mono, from_initiator, p.len, p.seg.as_ref()) {
        Observed::OutOfWindow => false,
        Observed::Accepted { now_evictable, now_established } => {
            if now_evictable {
                flows.offer_for_eviction(p.key, entry);
            }
            if now_established {
                let side = Side::of_origin(entry.origin());
                if cx.engine.monitor.watched(&cx.loaded.policy, cx.port, side) {
                    cx.engine.monitor.established(cx.now.mono, p.key.socket(entry.initiator().other()).addr);
                }
            }
            true
        }
    }
}

fn existing(
    cx: &Cx<'_>,
    flows: &Pinned<'_>,
    entry: &FlowEntry,
    p: &Packet<'_>,
    from_initiator: bool,
) -> Reason {
    // Each end of a connection sits on one side of the port: the initiator's packets arrive
    // where its first one did, the responder's on the other interface.
    let initiator_side = Side::of_origin(entry.origin());
    let expected = if from_initiator { initiator_side } else { initiator_side.other() };
    if cx.ingress.side != expected {
        return Reason::SpoofedSource;
    }
    if p.kind == Kind::Syn && !from_initiator {
        // The responder asks to open the reverse direction: that needs its own permission
        // (a path leg never grants it), and even then this flow's tracking refuses it.
        let r = decide::decide(cx, &p.opening(cx.ingress.side)).reason;
        if !r.allowed() {
            return r;
        }
    }
    let word = entry.inspect_state();
    let mut reason = decide::current(cx, entry, &p.key, word);
    if reason.allowed() && p.tunnel.is_some() && tunnel_class(p.tunnel) != entry.class() {
        // A flow that began as something else now carries a tunnel: the tunnel is judged.
        let initiator = p.key.socket(entry.initiator());
        let responder = p.key.socket(entry.initiator().other());
        let o =
            Opening { initiator, responder, protocol: p.protocol, tunnel: p.tunnel, side: initiator_side };
        let r = decide::decide(cx, &o).reason;
        if !r.allowed() {
            reason = r;
        }
    }
    if !reason.allowed() && !cx.monitor {
        return reason;
    }
    if reason.allowed() && inspect::involved(word, p) {
        return inspect::packet(cx, flows, entry, p, from_initiator, reason);
    }
    if word & 0xf0 == inspect::word::CHECKED_AS
        && inspect::repeats_checked_bytes(cx, entry, p, from_initiator)
    {
        return Reason::OutOfWindow;
    }
    match observe(cx, flows, entry, p, from_initiator) {
        false if reason.allowed() => Reason::OutOfWindow,
        _ => reason,
    }
}
