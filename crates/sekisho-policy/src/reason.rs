//! Reason codes: why a connection or packet was allowed or denied.

use std::fmt;

use crate::model::{ExceptionId, PathId, RuleId, ServiceId, ZoneId};
use crate::time::Timestamp;
use crate::Policy;

/// The stable reason codes (docs/configuration.md): `Copy`, small, no strings.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `allow:intra-zone`: both ends in the same zone.
    IntraZone,
    /// `allow:path:<path>/<leg>`: a path leg matched.
    Path {
        /// The path.
        path: PathId,
        /// The leg, numbered from 1.
        leg: u16,
    },
    /// `allow:exception:<name>`: an unexpired exception matched.
    Exception(ExceptionId),
    /// `allow:rule:<name>`: a rule matched.
    Rule(RuleId),
    /// `allow:link`: link-local traffic kept within a port pair (ARP, ND, DHCP, ...).
    Link,
    /// `allow:related`: a packet of an already allowed flow (e.g. an ICMP error about it).
    Related,
    /// `deny:mynumber-isolation`: one end in a mynumber zone, the other elsewhere.
    MynumberIsolation,
    /// `deny:unsanitized-crossing`: lgwan ↔ internet outside a path.
    UnsanitizedCrossing,
    /// `deny:no-rule`: nothing allows it.
    NoRule,
    /// `deny:spoofed-source`: the source does not belong to the port's zone.
    SpoofedSource,
    /// `deny:no-flow`: TCP without a flow that began with SYN.
    NoFlow,
    /// `deny:malformed`: the frame did not parse.
    Malformed,
    /// `deny:fragment`: an IP fragment that cannot be judged.
    Fragment,
    /// `deny:tunnel`: a tunnel crossing zones that no service names.
    Tunnel,
    /// `deny:non-ip`: a non-IP ethertype not listed in `[link] allow_ethertypes`.
    NonIp,
    /// `deny:app-mismatch`: the application protocol is not the service's.
    AppMismatch,
    /// `deny:flow-table-full`: no room for a new flow.
    FlowTableFull,
    /// `deny:vlan`: a VLAN tag (or none, or two) the port does not admit.
    Vlan,
    /// `deny:bogon-address`: an address no zone can hold (IPv4-mapped, -compatible or
    /// -translated IPv6, loopback, unspecified, multicast or broadcast source).
    BogonAddress,
    /// `deny:link-scope`: a link-local or link-scoped address in traffic that is not
    /// one of the link protocols kept within a port pair.
    LinkScope,
    /// `deny:misdirected`: a frame on a port's `outside` whose destination is not in the
    /// port's zone, or that starts a connection from the port's own zone.
    Misdirected,
    /// `deny:icmp-third-party`: an ICMP error about a connection, sent by neither its
    /// peer nor a router of the receiving segment.
    IcmpThirdParty,
    /// `deny:out-of-window`: a TCP segment outside the sequence or acknowledgement
    /// window tracked for its connection.
    OutOfWindow,
    /// `deny:not-sanitized`: on the leg of a `mail-text` path that delivers into an lgwan
    /// zone, a message that is not text-ified (a part that is not text, an attachment, a
    /// base64 body) or a STARTTLS that would hide it; the connection is cut before the
    /// message completes.
    NotSanitized,
    /// `deny:blocked-source`: a new connection from a source that `[monitor]` detected
    /// scanning, while its temporary block (`block_ttl_s`) lasts.
    BlockedSource,
}

impl Reason {
    /// Every deny reason.
    pub const ALL_DENIES: [Reason; 19] = [
        Reason::MynumberIsolation,
        Reason::UnsanitizedCrossing,
        Reason::NoRule,
        Reason::SpoofedSource,
        Reason::NoFlow,
        Reason::Malformed,
        Reason::Fragment,
        Reason::Tunnel,
        Reason::NonIp,
        Reason::AppMismatch,
        Reason::FlowTableFull,
        Reason::Vlan,
        Reason::BogonAddress,
        Reason::LinkScope,
        Reason::Misdirected,
        Reason::IcmpThirdParty,
        Reason::OutOfWindow,
        Reason::NotSanitized,
        Reason::BlockedSource,
    ];

    /// Whether the reason lets the traffic pass.
    #[inline]
    pub fn allowed(self) -> bool {
        matches!(
            self,
            Reason::IntraZone
                | Reason::Path { .. }
                | Reason::Exception(_)
                | Reason::Rule(_)
                | Reason::Link
                | Reason::Related
        )
    }

    /// Every reason code, allows first, in the order of [`Reason::index`]. For paths,
    /// exceptions and rules only the prefix (`"allow:path"`).
    pub const CODES: [&'static str; 25] = [
        "allow:intra-zone",
        "allow:path",
        "allow:exception",
        "allow:rule",
        "allow:link",
        "allow:related",
        "deny:mynumber-isolation",
        "deny:unsanitized-crossing",
        "deny:no-rule",
        "deny:spoofed-source",
        "deny:no-flow",
        "deny:malformed",
        "deny:fragment",
        "deny:tunnel",
        "deny:non-ip",
        "deny:app-mismatch",
        "deny:flow-table-full",
        "deny:vlan",
        "deny:bogon-address",
        "deny:link-scope",
        "deny:misdirected",
        "deny:icmp-third-party",
        "deny:out-of-window",
        "deny:not-sanitized",
        "deny:blocked-source",
    ];

    /// The position of this reason's code in [`Reason::CODES`] (a counter index).
    #[inline]
    pub fn index(self) -> usize {
        match self {
            Reason::IntraZone => 0,
            Reason::Path { .. } => 1,
            Reason::Exception(_) => 2,
            Reason::Rule(_) => 3,
            Reason::Link => 4,
            Reason::Related => 5,
            Reason::MynumberIsolation => 6,
            Reason::UnsanitizedCrossing => 7,
            Reason::NoRule => 8,
            Reason::SpoofedSource => 9,
            Reason::NoFlow => 10,
            Reason::Malformed => 11,
            Reason::Fragment => 12,
            Reason::Tunnel => 13,
            Reason::NonIp => 14,
            Reason::AppMismatch => 15,
            Reason::FlowTableFull => 16,
            Reason::Vlan => 17,
            Reason::BogonAddress => 18,
            Reason::LinkScope => 19,
            Reason::Misdirected => 20,
            Reason::IcmpThirdParty => 21,
            Reason::OutOfWindow => 22,
            Reason::NotSanitized => 23,
            Reason::BlockedSource => 24,
        }
    }

    /// The stable code (`"deny:no-flow"`); for paths, exceptions and rules only the
    /// prefix (`"allow:path"`): use [`Policy::reason_name`] for the full name.
    pub fn code(self) -> &'static str {
        Reason::CODES[self.index()]
    }

    /// The deny reason with this code (`"deny:no-rule"` → `NoRule`), if any.
    pub fn deny_from_code(code: &str) -> Option<Reason> {
        Reason::ALL_DENIES.into_iter().find(|r| r.code() == code)
    }
}

/// The full name of a reason (`allow:path:mail-textify/1`), from [`Policy::reason_name`].
#[derive(Copy, Clone, Debug)]
pub struct ReasonName<'a> {
    pub(crate) policy: &'a Policy,
    pub(crate) reason: Reason,
}

impl fmt::Display for ReasonName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.policy;
        match self.reason {
            Reason::Path { path, leg } => match p.paths().get(path.index()) {
                Some(x) => write!(f, "allow:path:{}/{leg}", x.name),
                None => write!(f, "allow:path:#{}/{leg}", path.0),
            },
            Reason::Exception(id) => match p.exceptions().get(id.index()) {
                Some(x) => write!(f, "allow:exception:{}", x.name),
                None => write!(f, "allow:exception:#{}", id.0),
            },
            Reason::Rule(id) => match p.rules().get(id.index()) {
                Some(x) => write!(f, "allow:rule:{}", x.name),
                None => write!(f, "allow:rule:#{}", id.0),
            },
            other => f.write_str(other.code()),
        }
    }
}

/// The policy's verdict on a new connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    /// Why.
    pub reason: Reason,
    /// The initiator's zone, if it has one.
    pub initiator_zone: Option<ZoneId>,
    /// The responder's zone, if it has one.
    pub responder_zone: Option<ZoneId>,
    /// The service of the matching leg, exception or rule.
    pub service: Option<ServiceId>,
    /// When the allowing exception expires: the flow must be re-decided then.
    pub valid_until: Option<Timestamp>,
}

impl Decision {
    /// Whether the connection may pass.
    #[inline]
    pub fn allowed(&self) -> bool {
        self.reason.allowed()
    }
}
