//! Stage 4, resolving a packet to the connection it belongs to: its own 5-tuple, or the
//! parent connection of a later fragment or of an ICMP error. Fragments and errors never
//! open anything; they follow their parent's *current* verdict.

use sekisho_flow::tcp::Segment;
use sekisho_flow::{Endpoint, FlowKey, FragmentKey, FragmentRecord, Socket};
use sekisho_policy::Reason;
use sekisho_wire::{Icmp, Ip, Quoted, L4};

use crate::track::{Kind, Packet};
use crate::{decide, Cx, Side};

/// Reassembly time of a fragmented datagram (Linux's `ipfrag_time`), ns.
pub(crate) const FRAGMENT_LIFETIME: u64 = 30_000_000_000;
/// Datagrams in flight at once, at most.
pub(crate) const FRAGMENT_CAPACITY: usize = 65_536;

/// Largest ICMP error accepted: RFC 1812 (IPv4: 576 bytes) and RFC 4443 (IPv6: the
/// minimum MTU, 1280 bytes) bound what a router or host sends. Larger ones carry data.
const MAX_ICMP_ERROR_V4: usize = 576;
const MAX_ICMP_ERROR_V6: usize = 1280;

const IPPROTO_TCP: u8 = 6;

/// The packet as a member of its own connection.
pub(crate) fn packet<'p>(cx: &Cx<'_>, vlan: u32, ip: &'p Ip<'p>, len: usize) -> Packet<'p> {
    let (sport, dport) = ip.ports();
    let (kind, seg, payload) = match ip.l4 {
        L4::Tcp(t) => {
            let bare_syn = t.flags.0 & 0x12 == 0x02;
            let seg = Segment {
                flags: t.flags.0,
                seq: t.seq,
                ack: t.ack,
                window: t.window,
                wscale: t.wscale,
                len: t.payload.len() as u32,
            };
            (if bare_syn { Kind::Syn } else { Kind::Tcp }, Some(seg), t.payload)
        }
        L4::Udp(u) => (Kind::Opens, None, u.payload),
        L4::Icmp(i) if i.is_echo_reply() => (Kind::Answers, None, &[][..]),
        _ => (Kind::Opens, None, &[][..]),
    };
    let src = Socket { addr: ip.src, port: sport };
    let dst = Socket { addr: ip.dst, port: dport };
    let (key, sender) = FlowKey::new(cx.ingress.port.0, vlan, ip.protocol, src, dst);
    let key = match ip.l4 {
        L4::Icmp(i) if i.is_echo_request() || i.is_echo_reply() => echo_key(key, sender, i.is_echo_request()),
        _ => key,
    };
    Packet { key, sender, src, dst, protocol: ip.protocol, kind, seg, payload, tunnel: ip.tunnel, len, ip }
}

/// Remembers the first fragment of an allowed datagram so that its later fragments can
/// follow the connection.
pub(crate) fn first_fragment(cx: &Cx<'_>, vlan: u32, ip: &Ip<'_>, p: &Packet<'_>) {
    let Some(frag) = ip.fragment else { return };
    let key = FragmentKey::new(cx.ingress.port.0, vlan, frag.proto, ip.src, ip.dst, frag.id);
    let record =
        FragmentRecord { parent: p.key, sender: p.sender, created: cx.now.mono, origin: cx.origin() };
    cx.engine.fragments.remember(key, record, cx.now.mono);
}

/// A later fragment: it follows the current verdict of its datagram's connection, for
/// the reassembly time counted from the first fragment, arriving where the first did.
pub(crate) fn later_fragment(cx: &Cx<'_>, vlan: u32, ip: &Ip<'_>, data: &[u8]) -> Reason {
    let Some(frag) = ip.fragment else { return Reason::Fragment };
    let key = FragmentKey::new(cx.ingress.port.0, vlan, frag.proto, ip.src, ip.dst, frag.id);
    let Some((parent, sender, origin)) =
        cx.engine.fragments.with(&key, cx.now.mono, |r| (r.parent, r.sender, r.origin))
    else {
        return Reason::Fragment;
    };
    if origin != cx.origin() {
        return Reason::SpoofedSource;
    }
    let flows = cx.engine.flows.pin();
    let Some(entry) = flows.get(&parent, cx.now.mono) else { return Reason::Fragment };
    let reason = decide::current(cx, entry, &parent, entry.inspect_state());
    if reason.allowed() {
        if let Some(t) = entry.tcp() {
            t.advance(sender == entry.initiator(), data.len() as u32);
        }
    }
    reason
}

/// An echo flow's key tagged with which endpoint asked (the one whose identifier it
/// carries): with identifier 0 the ports alone cannot tell A's echo to B from B's to A.
fn echo_key(key: FlowKey, sender: Endpoint, request: bool) -> FlowKey {
    let requester = if request { sender } else { sender.other() };
    key.tagged(match requester {
        Endpoint::Lo => 1,
        Endpoint::Hi => 2,
    })
}

/// The flow key of the connection a quoted packet belonged to on this port, and which of
/// its endpoints sent it.
fn quoted_key(cx: &Cx<'_>, vlan: u32, q: &Quoted) -> (FlowKey, Endpoint) {
    let (key, sender) = FlowKey::new(
        cx.ingress.port.0,
        vlan,
        q.protocol,
        Socket { addr: q.src, port: q.sport },
        Socket { addr: q.dst, port: q.dport },
    );
    match q.echo_request {
        Some(request) => (echo_key(key, sender, request), sender),
        None => (key, sender),
    }
}

/// An ICMP or ICMPv6 error: it belongs to the connection it quotes and follows that
/// connection's current verdict. It must travel back to the quoted packet's sender,
/// arrive on the side the connection's other end sends from, and come from that other
/// end itself or from one of this port's routers; it must be no larger than an error
/// may be, and a quoted TCP segment must show a sequence number the sender really sent.
pub(crate) fn icmp_error(cx: &Cx<'_>, vlan: u32, ip: &Ip<'_>, icmp: &Icmp) -> Reason {
    let max = if icmp.v6 { MAX_ICMP_ERROR_V6 } else { MAX_ICMP_ERROR_V4 };
    if ip.total_len > max {
        return Reason::Malformed;
    }
    if ip.fragment.is_some() {
        return Reason::Fragment;
    }
    let Some(q) = icmp.quoted else { return Reason::NoFlow };
    if ip.dst != q.src {
        return Reason::NoFlow;
    }
    let (key, quoted_sender) = quoted_key(cx, vlan, &q);
    let flows = cx.engine.flows.pin();
    let Some(entry) = flows.get(&key, cx.now.mono) else { return Reason::NoFlow };
    let quoted_from_initiator = quoted_sender == entry.initiator();
    let initiator_side = Side::of_origin(entry.origin());
    let peer_side = if quoted_from_initiator { initiator_side.other() } else { initiator_side };
    if cx.ingress.side != peer_side {
        return Reason::SpoofedSource;
    }
    let from_router = cx.ingress.side == Side::Outside && cx.port.is_router(ip.src);
    if ip.src != q.dst && !from_router {
        return Reason::IcmpThirdParty;
    }
    if let (Some(t), IPPROTO_TCP) = (entry.tcp(), q.protocol) {
        // RFC 792 and RFC 4443 quote at least 8 bytes of the transport header: an error
        // without the sequence number cannot be checked, and real ones always have it.
        let Some(seq) = q.tcp_seq else { return Reason::Malformed };
        if !t.quoted_in_window(quoted_from_initiator, seq) {
            return Reason::OutOfWindow;
        }
    }
    let reason = decide::current(cx, entry, &key, entry.inspect_state());
    if reason.allowed() {
        Reason::Related
    } else {
        reason
    }
}
