//! Stage 5, the decision: for a new connection, the ingress contract and the policy's
//! verdict on initiator → responder (plus the tunnel rule); for a known one, the cached
//! verdict while its policy generation is current, else the same decision made again
//! and cached by compare-and-swap.

use sekisho_flow::{CachedDecision, FlowEntry, FlowKey, Socket};
use sekisho_policy::{App, Connection, Proto, Reason};
use sekisho_wire::Tunnel;

use crate::{ingress, inspect, reason, Cx, Side};

/// A connection to decide: who opened it to whom, how, and where the opener's packets
/// arrive.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Opening {
    pub initiator: Socket,
    pub responder: Socket,
    pub protocol: u8,
    pub tunnel: Option<Tunnel>,
    pub side: Side,
}

/// The flow class byte for the tunnel a flow carries (0: none).
pub(crate) fn tunnel_class(t: Option<Tunnel>) -> u8 {
    match t {
        None => 0,
        Some(Tunnel::Gre) => 1,
        Some(Tunnel::IpInIp) => 2,
        Some(Tunnel::Ipv6InIp) => 3,
        Some(Tunnel::Vxlan) => 4,
        Some(Tunnel::Teredo) => 5,
    }
}

fn class_tunnel(class: u8) -> Option<Tunnel> {
    match class {
        1 => Some(Tunnel::Gre),
        2 => Some(Tunnel::IpInIp),
        3 => Some(Tunnel::Ipv6InIp),
        4 => Some(Tunnel::Vxlan),
        5 => Some(Tunnel::Teredo),
        _ => None,
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

/// The verdict on `o` under the policy in force, and the application its service expects.
pub(crate) fn decide(cx: &Cx<'_>, o: &Opening) -> (Reason, App) {
    let policy = &cx.loaded.policy;
    if let Err(r) = ingress::opening(policy, cx.port, o.side, o.initiator.addr, o.responder.addr) {
        return (r, App::Any);
    }
    let conn = Connection {
        protocol: o.protocol,
        initiator: o.initiator.addr,
        responder: o.responder.addr,
        responder_port: o.responder.port,
    };
    let decision = policy.decide(&conn, cx.now.wall);
    let service = decision.service.and_then(|id| policy.service(id));
    let app = service.map_or(App::Any, |s| s.app);
    let mut reason = decision.reason;
    if let Some(t) = o.tunnel {
        let named = service.is_some_and(|s| names_tunnel(s.proto, s.app, t));
        if reason.allowed() && reason != Reason::IntraZone && !named {
            reason = Reason::Tunnel;
        }
    }
    (reason, app)
}

/// The cached decision word for `reason` under the generation in force.
pub(crate) fn cached(cx: &Cx<'_>, reason: Reason) -> CachedDecision {
    CachedDecision { verdict: reason::encode(reason), generation: cx.loaded.generation }
}

/// The flow's verdict now: final once its application check failed (or its content was
/// not sanitised, or its inspection state was lost); the cached one while
/// its generation is current (a reload, or an exception's expiry, starts a new one);
/// otherwise decided again for its initiator → responder — ingress contract included —
/// and cached.
pub(crate) fn current(cx: &Cx<'_>, entry: &FlowEntry, key: &FlowKey) -> Reason {
    if let Some(cut) = inspect::word::cut(entry.inspect_state()) {
        return cut;
    }
    let d = entry.decision();
    if d.generation == cx.loaded.generation {
        return reason::decode(d.verdict);
    }
    let opening = Opening {
        initiator: key.socket(entry.initiator()),
        responder: key.socket(entry.initiator().other()),
        protocol: key.protocol(),
        tunnel: class_tunnel(entry.class()),
        side: Side::of_origin(entry.origin()),
    };
    let (r, _) = decide(cx, &opening);
    entry.update_decision(cached(cx, r));
    r
}
