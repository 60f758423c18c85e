//! Stage 5, the decision: for a new connection, the ingress contract and the policy's
//! verdict on initiator → responder (plus the tunnel rule); for a known one, the cached
//! verdict while its policy generation is current, else the same decision made again
//! and cached by compare-and-swap.

use sekisho_flow::{CachedDecision, FlowEntry, FlowKey, Socket};
use sekisho_policy::{App, Connection, Policy, Proto, Reason, Service, ZoneId};
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

/// Every tunnel, in the order of its flow class byte (class 0: none).
const TUNNELS: [Tunnel; 8] = [
    Tunnel::Gre,
    Tunnel::IpInIp,
    Tunnel::Ipv6InIp,
    Tunnel::Vxlan,
    Tunnel::Teredo,
    Tunnel::Geneve,
    Tunnel::UdpEncap,
    Tunnel::OtherIp,
];

/// The flow class byte for the tunnel a flow carries (0: none).
pub(crate) fn tunnel_class(t: Option<Tunnel>) -> u8 {
    t.and_then(|t| TUNNELS.iter().position(|x| *x == t)).map_or(0, |i| i as u8 + 1)
}

pub(crate) fn class_tunnel(class: u8) -> Option<Tunnel> {
    TUNNELS.get(usize::from(class).wrapping_sub(1)).copied()
}

/// True when a service of protocol `proto` and application `app` names tunnel `t`.
/// Geneve, the other UDP encapsulations and the other IP ones have no name: they never
/// cross zones.
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

/// A decision on a new connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decided {
    pub reason: Reason,
    /// The application the allowing service expects.
    pub app: App,
    /// The flow-table share of the initiator: its zone kind (0: no zone).
    pub share: u8,
}

/// The flow-table share of an initiator in zone `zone`.
fn share(policy: &Policy, zone: Option<ZoneId>) -> u8 {
    zone.and_then(|z| policy.zone(z)).map_or(0, |z| z.kind as u8 + 1)
}

/// The verdict on `o` under the policy in force.
pub(crate) fn decide(cx: &Cx<'_>, o: &Opening) -> Decided {
    let policy = &cx.loaded.policy;
    if let Err(reason) = ingress::opening(policy, cx.port, o.side, o.initiator.addr, o.responder.addr) {
        return Decided { reason, app: App::Any, share: 0 };
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
    Decided { reason, app, share: share(policy, decision.initiator_zone) }
}

/// The cached decision word for `reason` under the generation in force.
pub(crate) fn cached(cx: &Cx<'_>, reason: Reason) -> CachedDecision {
    CachedDecision { verdict: reason::encode(reason), generation: cx.loaded.generation }
}

/// The flow's verdict now: final once its application check failed (or its content was
/// not sanitised, or its inspection state was lost); the cached one while
/// its generation is current (a reload, or an exception's expiry, starts a new one);
/// otherwise decided again for its initiator → responder — ingress contract included —
/// and cached. `word`: the flow's inspection word, as the caller read it.
pub(crate) fn current(cx: &Cx<'_>, entry: &FlowEntry, key: &FlowKey, word: u8) -> Reason {
    if word != inspect::word::CHECKED {
        if let Some(cut) = inspect::word::cut(word) {
            return cut;
        }
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
    // What the flow was allowed under, when the policy of its decision is still known.
    let before = match &cx.loaded.previous {
        Some((generation, policy)) if *generation == d.generation => {
            Before::Known(policy, reason::decode(d.verdict))
        }
        _ => Before::Unknown,
    };
    let r = redecide(cx, &opening, word, before);
    if r == Reason::AppMismatch {
        entry.set_inspect_state(inspect::word::CUT);
        return r;
    }
    entry.update_decision(cached(cx, r));
    r
}

/// The decision on a live flow (inspection word `word`) under the policy in force: as
/// for a new connection, except that an allowed flow is `deny:app-mismatch` when its
/// service now asks for a check the flow did not get — another application (a reload
/// that adds or changes an `app`), or the same one with other settings (`sni_allow`,
/// `allow_connect`): its stream cannot be read again from the middle. `before`: the
/// policy and reason the flow was last allowed under.
pub(crate) fn redecide(cx: &Cx<'_>, opening: &Opening, word: u8, before: Before<'_>) -> Reason {
    let d = decide(cx, opening);
    if !d.reason.allowed() {
        return d.reason;
    }
    let checked_alike = inspect::word::covers(word, d.app)
        && (!inspect::word::inspected(word) || same_check(before, cx.loaded.policy.service_of(d.reason)));
    if checked_alike {
        d.reason
    } else {
        Reason::AppMismatch
    }
}

/// What a live flow was last allowed under, for [`redecide`].
#[derive(Clone, Copy)]
pub(crate) enum Before<'a> {
    /// The policy being decided under: its check is the one the flow got.
    Same,
    /// This policy, by this reason.
    Known(&'a Policy, Reason),
    /// No longer known (the flow idled through more than one new generation).
    Unknown,
}

/// Whether a flow checked under `before` passes the check the service `now` asks: none
/// at all, or the same application with settings no narrower (every `sni_allow` entry
/// still listed, `allow_connect` not taken away). When the service it was checked under
/// is no longer known, only settings that restrict nothing count.
fn same_check(before: Before<'_>, now: Option<&Service>) -> bool {
    let Some(now) = now.filter(|s| inspect::word::pending(s.app) != inspect::word::CHECKED) else {
        return true;
    };
    let unrestricted = now.sni_allow.is_empty() && (now.app != App::Http || now.allow_connect);
    match before {
        Before::Same => true,
        Before::Known(policy, reason) => policy.service_of(reason).is_some_and(|old| {
            let names_kept = if old.sni_allow.is_empty() {
                now.sni_allow.is_empty()
            } else {
                old.sni_allow.iter().all(|n| now.sni_allow.contains(n))
            };
            old.app == now.app && names_kept && (old.allow_connect <= now.allow_connect)
        }),
        Before::Unknown => unrestricted,
    }
}
