//! The sender side's view of an alert: names resolved, severity decided, parameters
//! in their fixed order, text written. Built on the dispatcher thread, so it may
//! allocate.

use std::fmt::Write as _;
use std::net::IpAddr;

use sekisho_policy::{
    ExceptionId, Mode, PathId, Policy, PortId, PortSide, RuleId, Severity, Timestamp, ZoneId, ZoneKind,
};

use crate::format::rfc3339;
use crate::kind::EventKind;
use crate::record::{Matched, Notice, Record, What};

/// Resolves the ids in a [`Record`] to names, for one policy generation. The daemon
/// registers one per generation with [`Alerter::set_names`](crate::Alerter::set_names);
/// [`Policy`] implements it.
pub trait NameSource: Send + Sync {
    /// The zone holding `addr` (longest prefix), if any.
    fn zone_of(&self, addr: IpAddr) -> Option<ZoneId>;
    /// A zone's name and kind.
    fn zone(&self, id: ZoneId) -> Option<(&str, ZoneKind)>;
    /// A port's name.
    fn port(&self, id: PortId) -> Option<&str>;
    /// A path's name.
    fn path(&self, id: PathId) -> Option<&str>;
    /// A rule's name.
    fn rule(&self, id: RuleId) -> Option<&str>;
    /// An exception's name and approval.
    fn exception(&self, id: ExceptionId) -> Option<(&str, &str)>;
}

impl NameSource for Policy {
    fn zone_of(&self, addr: IpAddr) -> Option<ZoneId> {
        Policy::zone_of(self, addr)
    }
    fn zone(&self, id: ZoneId) -> Option<(&str, ZoneKind)> {
        Policy::zone(self, id).map(|z| (z.name.as_str(), z.kind))
    }
    fn port(&self, id: PortId) -> Option<&str> {
        self.ports().get(id.index()).map(|p| p.name.as_str())
    }
    fn path(&self, id: PathId) -> Option<&str> {
        self.paths().get(id.index()).map(|p| p.name.as_str())
    }
    fn rule(&self, id: RuleId) -> Option<&str> {
        self.rules().get(id.index()).map(|r| r.name.as_str())
    }
    fn exception(&self, id: ExceptionId) -> Option<(&str, &str)> {
        self.exceptions().get(id.index()).map(|e| (e.name.as_str(), e.approval.as_str()))
    }
}

/// Every structured-data PARAM-NAME, in the order they appear in a message. A public
/// interface: never renamed.
pub const PARAM_NAMES: [&str; 20] = [
    "reason",
    "proto",
    "src",
    "dst",
    "sport",
    "dport",
    "src_zone",
    "dst_zone",
    "port",
    "side",
    "mode",
    "gen",
    "flow",
    "path",
    "leg",
    "rule",
    "exception",
    "approval",
    "count",
    "uid",
];

/// One structured-data parameter. `numeric` values are written as JSON numbers in
/// the event file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Param {
    pub name: &'static str,
    pub value: String,
    pub numeric: bool,
}

/// An alert ready to format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Event {
    pub kind: EventKind,
    pub severity: Severity,
    pub at: Timestamp,
    pub params: Vec<Param>,
    pub text: String,
}

impl Event {
    fn new(kind: EventKind, at: Timestamp) -> Event {
        Event { kind, severity: kind.base_severity(), at, params: Vec::new(), text: String::new() }
    }

    fn put(&mut self, name: &'static str, value: impl ToString) {
        self.params.push(Param { name, value: value.to_string(), numeric: false });
    }

    fn put_num(&mut self, name: &'static str, value: u64) {
        self.params.push(Param { name, value: value.to_string(), numeric: true });
    }

    /// Parameters in [`PARAM_NAMES`] order (they are pushed roughly in order; this
    /// makes it exact).
    fn finish(mut self) -> Event {
        self.params.sort_by_key(|p| PARAM_NAMES.iter().position(|n| *n == p.name).unwrap_or(usize::MAX));
        self
    }

    /// The value of a parameter (tests and summaries).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|p| p.name == name).map(|p| p.value.as_str())
    }
}

/// `tcp`, `udp`, `icmp`, `icmpv6`, ... or the number.
pub(crate) fn proto_name(proto: u8) -> String {
    match proto {
        1 => "icmp".to_owned(),
        4 => "ipip".to_owned(),
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        41 => "ipv6".to_owned(),
        47 => "gre".to_owned(),
        50 => "esp".to_owned(),
        58 => "icmpv6".to_owned(),
        132 => "sctp".to_owned(),
        n => n.to_string(),
    }
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132 | 136)
}

fn endpoint(addr: IpAddr, port: Option<u16>) -> String {
    match (addr, port) {
        (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    }
}

fn mode_name(m: Mode) -> &'static str {
    m.as_str()
}

fn side_name(s: PortSide) -> &'static str {
    match s {
        PortSide::Inside => "inside",
        PortSide::Outside => "outside",
    }
}

/// Raise traffic that touches a mynumber zone to at least `crit`.
fn raise(severity: Severity, touches_mynumber: bool) -> Severity {
    if touches_mynumber {
        severity.min(Severity::Crit)
    } else {
        severity
    }
}

/// A data-plane record, resolved with the names of its generation (if still known).
pub(crate) fn from_record(r: &Record, names: Option<&dyn NameSource>) -> Event {
    let mut e = Event::new(r.kind, r.at);
    if let Some(code) = r.reason {
        e.put("reason", code);
    }
    let mut mynumber = false;
    let mut what = String::new();
    if let Some(p) = r.packet {
        let ports = has_ports(p.proto);
        e.put("proto", proto_name(p.proto));
        e.put("src", p.src);
        e.put("dst", p.dst);
        if ports {
            e.put_num("sport", u64::from(p.sport));
            e.put_num("dport", u64::from(p.dport));
        }
        let _ = write!(
            what,
            "{} {} -> {}",
            proto_name(p.proto),
            endpoint(p.src, ports.then_some(p.sport)),
            endpoint(p.dst, ports.then_some(p.dport))
        );
        if let Some(n) = names {
            let zone = |a| n.zone_of(a).and_then(|z| n.zone(z));
            let (sz, dz) = (zone(p.src), zone(p.dst));
            if let Some((name, kind)) = sz {
                e.put("src_zone", name);
                mynumber |= kind == ZoneKind::Mynumber;
            }
            if let Some((name, kind)) = dz {
                e.put("dst_zone", name);
                mynumber |= kind == ZoneKind::Mynumber;
            }
            if sz.is_some() || dz.is_some() {
                let show = |z: Option<(&str, ZoneKind)>| match z {
                    Some((name, kind)) => format!("{name} ({})", kind.japanese()),
                    None => "no zone".to_owned(),
                };
                let _ = write!(what, ", zone {} -> {}", show(sz), show(dz));
            }
        }
    }
    if let Some((port, side)) = r.port {
        match names.and_then(|n| n.port(port)) {
            Some(name) => {
                e.put("port", name);
                let _ = write!(what, ", port {name} {}", side_name(side));
            }
            None => e.put("port", format!("#{}", port.0)),
        }
        e.put("side", side_name(side));
    }
    e.put("mode", mode_name(r.mode));
    e.put_num("gen", u64::from(r.generation));
    if let Some(f) = r.flow {
        e.put("flow", format!("{f:016x}"));
    }
    match r.matched {
        Some(Matched::Path { path, leg }) => {
            e.put(
                "path",
                names.and_then(|n| n.path(path)).map_or_else(|| format!("#{}", path.0), str::to_owned),
            );
            e.put_num("leg", u64::from(leg));
        }
        Some(Matched::Rule(id)) => {
            e.put("rule", names.and_then(|n| n.rule(id)).map_or_else(|| format!("#{}", id.0), str::to_owned));
        }
        Some(Matched::Exception(id)) => match names.and_then(|n| n.exception(id)) {
            Some((name, approval)) => {
                e.put("exception", name);
                e.put("approval", approval);
            }
            None => e.put("exception", format!("#{}", id.0)),
        },
        None => {}
    }
    if let Some(c) = r.count {
        e.put_num("count", c);
    }
    if r.kind.is_traffic() {
        e.severity = raise(e.severity, mynumber);
        let verdict = match r.mode {
            Mode::Enforce => "dropped",
            Mode::Monitor => "would have been dropped (monitor mode: forwarded)",
        };
        e.text = if what.is_empty() {
            format!("{}: {verdict}", r.kind.title())
        } else {
            format!("{}: {what}; {verdict}", r.kind.title())
        };
    } else {
        e.text = match r.count {
            Some(c) => format!("{}: {c}", r.kind.title()),
            None => r.kind.title().to_owned(),
        };
    }
    e.finish()
}

/// A control-plane notice.
pub(crate) fn from_notice(n: &Notice) -> Event {
    let kind = n.what.kind();
    let mut e = Event::new(kind, n.at);
    e.put("mode", mode_name(n.mode));
    e.put_num("gen", u64::from(n.generation));
    if let Some(uid) = n.uid {
        e.put_num("uid", u64::from(uid));
    }
    let title = kind.title();
    let mode = n.mode.as_str();
    let gen = n.generation;
    e.text = match &n.what {
        What::DaemonStart { version } => {
            format!("{title}: version {version}, {mode} mode, policy generation {gen}")
        }
        What::DaemonStop { why } => {
            format!("{title} ({why}): nothing passes the ports until it runs again (fail closed)")
        }
        What::PolicyLoaded { origin } => format!("{title}: {origin}, generation {gen}, {mode} mode"),
        What::ReloadFailed { origin, error } => {
            format!("{title}: {origin}; generation {gen} stays in force: {error}")
        }
        What::ExceptionExpired { exception, approval } => {
            e.put("exception", exception);
            e.put("approval", approval);
            format!("{title}: exception {exception} (approval {approval}) no longer matches; flows that relied on it are cut")
        }
        What::ExceptionExpiring { exception, approval, expires } => {
            e.put("exception", exception);
            e.put("approval", approval);
            format!(
                "{title}: exception {exception} (approval {approval}) expires at {}",
                rfc3339(*expires, 0)
            )
        }
        What::ModeChanged { from } => {
            if n.mode == Mode::Monitor {
                e.severity = Severity::Alert;
                format!(
                    "{title}: {} -> monitor; denied traffic is now forwarded and only reported (監視モード: 遮断しません)",
                    from.as_str()
                )
            } else {
                format!("{title}: {} -> {mode}; denied traffic is dropped", from.as_str())
            }
        }
    };
    e.finish()
}

/// "N similar alerts suppressed in the last T s", for one flood-control slot. `rep`
/// is the last alert the slot let through (its source is named when every
/// suppressed alert came from that one source).
pub(crate) fn suppressed(
    kind: EventKind,
    count: u64,
    window_s: u64,
    one_source: bool,
    rep: Option<(&Record, Option<&dyn NameSource>)>,
    at: Timestamp,
) -> Event {
    let mut e = Event::new(EventKind::Suppressed, at);
    let mut from = "several sources".to_owned();
    match rep {
        Some((r, names)) => {
            let full = from_record(r, names);
            e.severity = full.severity;
            for name in ["reason", "mode", "gen"] {
                if let Some(v) = full.param(name) {
                    e.put(name, v);
                }
            }
            if let (true, Some(p)) = (one_source, r.packet) {
                e.put("src", p.src);
                if let Some(z) = full.param("src_zone") {
                    e.put("src_zone", z);
                }
                from = p.src.to_string();
            }
        }
        None => {
            e.severity = kind.base_severity();
            if let Some(code) = kind.reason_code() {
                e.put("reason", code);
            }
        }
    }
    e.put_num("count", count);
    e.text = format!(
        "{count} similar alerts suppressed in the last {window_s} s: {} ({}) from {from}",
        kind.title(),
        kind.msgid()
    );
    e.finish()
}

/// "N alerts lost: alert queue full", for one kind.
pub(crate) fn dropped(kind: EventKind, count: u64, window_s: u64, at: Timestamp) -> Event {
    let mut e = Event::new(EventKind::AlertsDropped, at);
    e.severity = kind.base_severity();
    if let Some(code) = kind.reason_code() {
        e.put("reason", code);
    }
    e.put_num("count", count);
    e.text = format!(
        "{count} alerts lost in the last {window_s} s because the alert queue was full: {} ({})",
        kind.title(),
        kind.msgid()
    );
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Packet;

    fn policy() -> Policy {
        sekisho_policy::load_str(
            r#"
[[zone]]
name = "mn"
kind = "mynumber"
prefixes = ["198.18.10.0/24"]
[[zone]]
name = "inet"
kind = "internet"
prefixes = ["0.0.0.0/0"]
upstream = true
[[port]]
name = "mn-uplink"
zone = "mn"
inside = "mn-in"
outside = "mn-out"
"#,
            "t.toml",
        )
        .unwrap()
    }

    fn record(code: &'static str, mode: Mode) -> Record {
        let packet = Packet {
            proto: 6,
            src: "198.18.10.5".parse().unwrap(),
            dst: "203.0.113.9".parse().unwrap(),
            sport: 51000,
            dport: 443,
        };
        Record::deny(code, Timestamp::from_secs(1), mode, 3, (PortId(0), PortSide::Inside), Some(packet))
            .unwrap()
    }

    #[test]
    fn traffic_event_has_params_in_order() {
        let p = policy();
        let e = from_record(&record("deny:mynumber-isolation", Mode::Enforce).with_flow(0xabc), Some(&p));
        let names: Vec<_> = e.params.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "reason", "proto", "src", "dst", "sport", "dport", "src_zone", "dst_zone", "port", "side",
                "mode", "gen", "flow"
            ]
        );
        assert_eq!(e.param("src_zone"), Some("mn"));
        assert_eq!(e.param("flow"), Some("0000000000000abc"));
        assert_eq!(e.severity, Severity::Alert);
        assert!(e.text.contains("198.18.10.5:51000 -> 203.0.113.9:443"), "{}", e.text);
        assert!(e.text.ends_with("; dropped"), "{}", e.text);
    }

    #[test]
    fn mynumber_raises_and_monitor_says_would() {
        let p = policy();
        let e = from_record(&record("deny:no-flow", Mode::Monitor), Some(&p));
        assert_eq!(e.severity, Severity::Crit, "no-flow touching mynumber is raised");
        assert!(e.text.contains("would have been dropped"), "{}", e.text);
        // Without names nothing is raised, nothing is invented.
        let e = from_record(&record("deny:no-flow", Mode::Enforce), None);
        assert_eq!(e.severity, Severity::Notice);
        assert_eq!(e.param("src_zone"), None);
        assert_eq!(e.param("port"), Some("#0"));
    }

    #[test]
    fn icmp_has_no_ports() {
        let mut r = record("deny:no-rule", Mode::Enforce);
        r.packet = r.packet.map(|p| Packet { proto: 1, ..p });
        let e = from_record(&r, None);
        assert_eq!(e.param("sport"), None);
        assert_eq!(e.param("proto"), Some("icmp"));
    }

    #[test]
    fn mode_change_to_monitor_is_an_alert() {
        let n = Notice {
            at: Timestamp::from_secs(1),
            mode: Mode::Monitor,
            generation: 2,
            uid: Some(1000),
            what: What::ModeChanged { from: Mode::Enforce },
        };
        let e = from_notice(&n);
        assert_eq!(e.severity, Severity::Alert);
        assert_eq!(e.param("uid"), Some("1000"));
        assert_eq!(e.kind.msgid(), "MODE_CHANGED");
    }
}
