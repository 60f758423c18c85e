//! What callers hand in: [`Record`] (data plane, `Copy`, no heap data) and
//! [`Notice`] (control plane, owned text).

use std::net::IpAddr;

use sekisho_policy::{ExceptionId, Mode, PathId, PortId, PortSide, RuleId, Timestamp};

use crate::kind::EventKind;

/// The addresses of the packet an alert is about.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Packet {
    /// IP protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6, ...).
    pub proto: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (0 when the protocol has none).
    pub sport: u16,
    /// Destination port (0 when the protocol has none).
    pub dport: u16,
}

/// The path leg, rule or exception that a flow was allowed by (when an alert is about
/// a flow that was allowed before, e.g. an application mismatch).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Matched {
    /// A path leg (numbered from 1).
    Path {
        /// The path.
        path: PathId,
        /// The leg, from 1.
        leg: u16,
    },
    /// A rule.
    Rule(RuleId),
    /// An exception (its approval is reported too).
    Exception(ExceptionId),
}

/// One data-plane alert: small, `Copy`, no heap data, so
/// [`Submitter::submit`](crate::Submitter::submit) can take it at line rate. Names (zones, ports,
/// paths, ...) are resolved later, on the sender thread, in the policy of
/// `generation`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// What happened.
    pub kind: EventKind,
    /// The reason code (`"deny:no-rule"`), when the alert is about a verdict.
    pub reason: Option<&'static str>,
    /// When (wall clock, nanoseconds since the epoch; the data plane's coarse clock is
    /// fine). Flood control measures rates in this time.
    pub at: Timestamp,
    /// The mode in force: in monitor mode the message says the packet *would* have
    /// been dropped.
    pub mode: Mode,
    /// The policy generation the verdict was made under.
    pub generation: u32,
    /// The packet, when it was IP and parsed.
    pub packet: Option<Packet>,
    /// The port and the interface of the pair the frame arrived on.
    pub port: Option<(PortId, PortSide)>,
    /// An identifier of the flow, if the engine has one.
    pub flow: Option<u64>,
    /// What had allowed the flow, when that matters to the alert.
    pub matched: Option<Matched>,
    /// A count the event carries (e.g. flows evicted).
    pub count: Option<u64>,
}

impl Record {
    /// The alert for a frame denied with reason `code` (e.g. `Reason::code()`), or
    /// `None` for an allow code. The kind comes from [`EventKind::for_reason`].
    #[inline]
    pub fn deny(
        code: &'static str,
        at: Timestamp,
        mode: Mode,
        generation: u32,
        port: (PortId, PortSide),
        packet: Option<Packet>,
    ) -> Option<Record> {
        let kind = EventKind::for_reason(code)?;
        Some(Record {
            kind,
            reason: Some(code),
            at,
            mode,
            generation,
            packet,
            port: Some(port),
            flow: None,
            matched: None,
            count: None,
        })
    }

    /// `count` embryonic flows were evicted to make room for new ones.
    pub fn flows_evicted(at: Timestamp, mode: Mode, generation: u32, count: u64) -> Record {
        Record {
            kind: EventKind::FlowEvicted,
            reason: None,
            at,
            mode,
            generation,
            packet: None,
            port: None,
            flow: None,
            matched: None,
            count: Some(count),
        }
    }

    /// The same record with a flow identifier.
    #[inline]
    pub fn with_flow(mut self, flow: u64) -> Record {
        self.flow = Some(flow);
        self
    }

    /// The same record naming what had allowed the flow.
    #[inline]
    pub fn with_matched(mut self, matched: Matched) -> Record {
        self.matched = Some(matched);
        self
    }
}

/// A control-plane event (start, stop, reload, expiry, mode change): rare, so it may
/// carry owned text; never rate limited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// When.
    pub at: Timestamp,
    /// The mode in force after the event.
    pub mode: Mode,
    /// The policy generation in force after the event.
    pub generation: u32,
    /// The operator who caused it (peer credentials of the control socket), if any.
    pub uid: Option<u32>,
    /// What happened.
    pub what: What,
}

/// What a [`Notice`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum What {
    /// The daemon started.
    DaemonStart {
        /// The daemon's version.
        version: String,
    },
    /// The daemon is stopping.
    DaemonStop {
        /// Why (e.g. `"SIGTERM"`).
        why: String,
    },
    /// A policy was loaded (at start or by a reload).
    PolicyLoaded {
        /// Where it came from (the file path).
        origin: String,
    },
    /// A reload was refused; the running policy (`generation`) stays.
    ReloadFailed {
        /// Where it came from (the file path).
        origin: String,
        /// The errors, as the loader printed them.
        error: String,
    },
    /// An exception stopped matching: flows that relied on it are cut.
    ExceptionExpired {
        /// The exception's name.
        exception: String,
        /// Its approval record.
        approval: String,
    },
    /// An exception will expire soon.
    ExceptionExpiring {
        /// The exception's name.
        exception: String,
        /// Its approval record.
        approval: String,
        /// When it expires.
        expires: Timestamp,
    },
    /// The mode changed to [`Notice::mode`].
    ModeChanged {
        /// The mode before.
        from: Mode,
    },
}

impl What {
    /// The event kind of this notice.
    pub fn kind(&self) -> EventKind {
        match self {
            What::DaemonStart { .. } => EventKind::DaemonStart,
            What::DaemonStop { .. } => EventKind::DaemonStop,
            What::PolicyLoaded { .. } => EventKind::PolicyLoaded,
            What::ReloadFailed { .. } => EventKind::ReloadFailed,
            What::ExceptionExpired { .. } => EventKind::ExceptionExpired,
            What::ExceptionExpiring { .. } => EventKind::ExceptionExpiring,
            What::ModeChanged { .. } => EventKind::ModeChanged,
        }
    }
}
