//! sekisho's zone policy: the TOML configuration contract of docs/configuration.md,
//! validated against the 三層分離 invariants — item by item and, by the route analysis,
//! as a whole — and compiled for fast decisions.
//!
//! Pure: no I/O and no clock. The caller reads the file ([`load_str`]) and passes
//! the time in ([`Policy::decide`], [`Policy::warnings`]).
//!
//! ```
//! use sekisho_policy::{load_str, Connection, Timestamp};
//! let policy = load_str(r#"
//!     [[zone]]
//!     name = "lgwan"
//!     kind = "lgwan"
//!     prefixes = ["198.18.20.0/24"]
//! "#, "example.toml").unwrap();
//! let conn = Connection {
//!     protocol: 6,
//!     initiator: "198.18.20.1".parse().unwrap(),
//!     responder: "198.18.20.2".parse().unwrap(),
//!     responder_port: 443,
//! };
//! let d = policy.decide(&conn, Timestamp::from_secs(0));
//! assert_eq!(policy.reason_name(d.reason).to_string(), "allow:intra-zone");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod alert;
mod compile;
mod error;
mod load;
mod model;
mod raw;
mod reason;
mod route;
mod time;

use std::fmt;
use std::net::IpAddr;

pub use ipnetwork;

pub use crate::alert::{AlertTarget, Facility, Format, Severity, TargetUrl, MAX_ALERT_TARGETS};
pub use crate::error::{ConfigError, ConfigErrors, ConfigWarning, ErrorCode, WarningCode};
pub use crate::load::{
    load_str, DEFAULT_CONTROL_SOCKET, MAX_EXCEPTION_HOSTS, MAX_FLOW_CAPACITY, MAX_FLOW_TIMEOUT_S,
    MAX_INSPECT_DEPTH, MIN_INSPECT_DEPTH,
};
pub use crate::model::{
    App, Connection, ControlSettings, Endpoint, Exception, ExceptionId, FlowSettings, InspectSettings, Io,
    Leg, Method, Mode, MonitorSettings, Path, PathId, Port, PortId, PortRange, PortSide, Proto, Rule, RuleId,
    Service, ServiceId, SniPattern, Zone, ZoneId, ZoneKind, MAX_WORKERS,
};
pub use crate::reason::{Decision, Reason, ReasonName};
pub use crate::time::Timestamp;

/// How long before an exception's expiry `sekishod check` starts warning: 30 days.
pub const EXPIRY_NOTICE: Timestamp = Timestamp::from_secs(30 * 86_400);

/// A validated, compiled policy. Build one with [`load_str`].
#[derive(Clone, Debug)]
pub struct Policy {
    mode: Mode,
    control_socket: String,
    control: ControlSettings,
    io: Io,
    workers: u16,
    flow: FlowSettings,
    inspect: InspectSettings,
    monitor: MonitorSettings,
    allow_ethertypes: Vec<u16>,
    zones: Vec<Zone>,
    ports: Vec<Port>,
    services: Vec<Service>,
    paths: Vec<Path>,
    exceptions: Vec<Exception>,
    rules: Vec<Rule>,
    compiled: compile::Compiled,
    /// Warnings that do not depend on the time (see [`Policy::warnings`]).
    warnings: Vec<ConfigWarning>,
    alert: alert::AlertSettings,
    /// The first flat leg index of each path (see [`Policy::leg_index`]), and the number
    /// of legs last.
    leg_offsets: Vec<usize>,
}

impl Policy {
    /// Enforce or monitor (`[daemon] mode`, default enforce).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The data-plane backend (`[daemon] io`, default `afpacket`).
    pub fn io(&self) -> Io {
        self.io
    }

    /// Data-plane worker threads (`[daemon] workers`, default 1).
    pub fn workers(&self) -> u16 {
        self.workers
    }

    /// The control socket path (`[daemon] control_socket`).
    pub fn control_socket(&self) -> &str {
        &self.control_socket
    }

    /// Who may use the control socket (`[control]`).
    pub fn control(&self) -> &ControlSettings {
        &self.control
    }

    /// The same policy in another mode (what `sekishoctl mode` swaps in).
    pub fn with_mode(&self, mode: Mode) -> Policy {
        Policy { mode, ..self.clone() }
    }

    /// Flow-table settings (`[flow]`).
    pub fn flow(&self) -> &FlowSettings {
        &self.flow
    }

    /// Application inspection settings (`[inspect]`).
    pub fn inspect(&self) -> &InspectSettings {
        &self.inspect
    }

    /// Internet-zone monitoring settings (`[monitor]`).
    pub fn monitor(&self) -> &MonitorSettings {
        &self.monitor
    }

    /// The service a reason's path leg, exception or rule names (`None` for other
    /// reasons).
    pub fn service_of(&self, reason: Reason) -> Option<&Service> {
        let id = match reason {
            Reason::Path { path, leg } => {
                self.paths.get(path.index())?.legs.get(usize::from(leg).checked_sub(1)?)?.service
            }
            Reason::Exception(id) => self.exceptions.get(id.index())?.service,
            Reason::Rule(id) => self.rules.get(id.index())?.service,
            _ => return None,
        };
        self.service(id)
    }

    /// Every path leg in order (paths in file order, their legs in order), numbered from
    /// 0: the position of `path`'s leg `leg` (numbered from 1), if it exists.
    #[inline]
    pub fn leg_index(&self, path: PathId, leg: u16) -> Option<usize> {
        let first = *self.leg_offsets.get(path.index())?;
        let end = *self.leg_offsets.get(path.index() + 1)?;
        let i = first + usize::from(leg).checked_sub(1)?;
        (i < end).then_some(i)
    }

    /// How many path legs the policy has, over all paths.
    #[inline]
    pub fn leg_count(&self) -> usize {
        self.leg_offsets.last().copied().unwrap_or(0)
    }

    /// Non-IP ethertypes other than ARP that may pass within a port pair
    /// (`[link] allow_ethertypes`, default empty).
    pub fn allow_ethertypes(&self) -> &[u16] {
        &self.allow_ethertypes
    }

    /// The syslog collectors (`[[alert.target]]`), in file order.
    pub fn alert_targets(&self) -> &[AlertTarget] {
        &self.alert.targets
    }

    /// The local JSON-lines event file (`[alert] event_file`), if any.
    pub fn alert_event_file(&self) -> Option<&std::path::Path> {
        self.alert.event_file.as_deref()
    }

    /// The zones, indexed by [`ZoneId`].
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The ports, indexed by [`PortId`].
    pub fn ports(&self) -> &[Port] {
        &self.ports
    }

    /// The services, indexed by [`ServiceId`].
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// The paths, indexed by [`PathId`].
    pub fn paths(&self) -> &[Path] {
        &self.paths
    }

    /// The exceptions, indexed by [`ExceptionId`].
    pub fn exceptions(&self) -> &[Exception] {
        &self.exceptions
    }

    /// The rules, indexed by [`RuleId`].
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The zone with this id.
    pub fn zone(&self, id: ZoneId) -> Option<&Zone> {
        self.zones.get(id.index())
    }

    /// The service with this id.
    pub fn service(&self, id: ServiceId) -> Option<&Service> {
        self.services.get(id.index())
    }

    /// The zone with this name.
    pub fn zone_by_name(&self, name: &str) -> Option<ZoneId> {
        self.zones.iter().position(|z| z.name == name).map(|i| ZoneId(i as u16))
    }

    /// The port an interface belongs to, and which side of it the interface is.
    pub fn port_by_interface(&self, interface: &str) -> Option<(PortId, PortSide)> {
        self.ports.iter().enumerate().find_map(|(i, p)| {
            let id = PortId(i as u16);
            if p.inside == interface {
                Some((id, PortSide::Inside))
            } else if p.outside == interface {
                Some((id, PortSide::Outside))
            } else {
                None
            }
        })
    }

    /// The zone of an address: longest-prefix match over all zones, IPv4 and IPv6.
    #[inline]
    pub fn zone_of(&self, addr: IpAddr) -> Option<ZoneId> {
        self.compiled.zone_of(addr)
    }

    /// Decide on a new connection (initiator → responder) at wall-clock time `now`:
    /// intra-zone, then path legs, then unexpired exceptions, then rules, else the
    /// deny reason naming the invariant. Allocation-free.
    #[inline]
    pub fn decide(&self, conn: &Connection, now: Timestamp) -> Decision {
        self.compiled.decide(conn, now)
    }

    /// What `sekishod check` warns about at wall-clock time `now` (the policy loads, but
    /// probably does not say what its author meant): nested zone prefixes, unused
    /// services, paths that never chain, zone-wide routes from an exception's landing
    /// host, and exceptions that have expired or expire within [`EXPIRY_NOTICE`].
    pub fn warnings(&self, now: Timestamp) -> Vec<ConfigWarning> {
        let mut out = self.warnings.clone();
        for x in &self.exceptions {
            let Some(end) = x.expires else { continue };
            let item = format!("exception {:?}", x.name);
            let when = end.expiry_text();
            if now >= end {
                out.push(ConfigWarning {
                    code: WarningCode::ExceptionExpired,
                    item,
                    message: format!(
                        "expired ({when}, approval {}): it matches nothing any more and connections \
                         that relied on it are refused; remove it, or renew the approval and its date",
                        x.approval
                    ),
                });
            } else if end.0 - now.0 <= EXPIRY_NOTICE.0 {
                let days = (end.0 - now.0).div_ceil(86_400 * 1_000_000_000);
                let unit = if days == 1 { "day" } else { "days" };
                out.push(ConfigWarning {
                    code: WarningCode::ExceptionExpiring,
                    item,
                    message: format!(
                        "expires {when} (within {days} {unit}, approval {}): connections that rely on \
                         it are cut then; renew the approval (年度末!) or plan the cut-over",
                        x.approval
                    ),
                });
            }
        }
        out
    }

    /// The exception that would allow `conn` but has expired at `now` (the first one in
    /// file order), to say why a connection that used to pass is now refused.
    pub fn lapsed_exception(&self, conn: &Connection, now: Timestamp) -> Option<ExceptionId> {
        let zi = self.zone_of(conn.initiator);
        let zr = self.zone_of(conn.responder);
        self.exceptions
            .iter()
            .position(|x| {
                !x.is_active(now)
                    && x.from.matches(zi, conn.initiator)
                    && x.to.matches(zr, conn.responder)
                    && self.service(x.service).is_some_and(|s| s.matches(conn.protocol, conn.responder_port))
            })
            .map(|i| ExceptionId(i as u16))
    }

    /// The full reason name: `allow:path:mail-textify/1`, `deny:no-rule`, ...
    pub fn reason_name(&self, reason: Reason) -> ReasonName<'_> {
        ReasonName { policy: self, reason }
    }

    /// An endpoint as written in the configuration (`zone:lgwan`, `198.18.40.10`).
    pub fn endpoint_name<'a>(&'a self, endpoint: &'a Endpoint) -> EndpointName<'a> {
        EndpointName { policy: self, endpoint }
    }
}

/// An endpoint in configuration syntax, from [`Policy::endpoint_name`].
#[derive(Copy, Clone, Debug)]
pub struct EndpointName<'a> {
    policy: &'a Policy,
    endpoint: &'a Endpoint,
}

impl fmt::Display for EndpointName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.endpoint {
            Endpoint::Zone(z) => match self.policy.zone(*z) {
                Some(zone) => write!(f, "zone:{}", zone.name),
                None => write!(f, "zone:#{}", z.0),
            },
            Endpoint::Net(n) if self.endpoint.is_single_host() => write!(f, "{}", n.ip()),
            Endpoint::Net(n) => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod docs {
    //! The configuration documents name every key, code and reason sekisho knows.

    use crate::raw::{
        fields_of, RawControl, RawDaemon, RawException, RawFlow, RawInspect, RawLeg, RawLink, RawMonitor,
        RawPath, RawPort, RawRule, RawService, RawZone,
    };
    use crate::{ErrorCode, Reason, WarningCode};

    const DOCS: [(&str, &str); 2] = [
        ("docs/configuration.md", include_str!("../../../docs/configuration.md")),
        ("docs/ja/設定.md", include_str!("../../../docs/ja/設定.md")),
    ];

    #[test]
    fn every_key_code_and_reason_is_documented() {
        let keys = [
            fields_of::<RawDaemon>(),
            fields_of::<RawControl>(),
            fields_of::<RawFlow>(),
            fields_of::<RawInspect>(),
            fields_of::<RawMonitor>(),
            fields_of::<RawLink>(),
            fields_of::<RawZone>(),
            fields_of::<RawPort>(),
            fields_of::<RawService>(),
            fields_of::<RawPath>(),
            fields_of::<RawLeg>(),
            fields_of::<RawException>(),
            fields_of::<RawRule>(),
        ];
        for (doc, text) in DOCS {
            for key in keys.iter().flat_map(|k| k.iter()) {
                let written = if *key == "leg" { "[[path.leg]]".to_owned() } else { format!("`{key}`") };
                assert!(text.contains(&written), "{doc} does not document key {written}");
            }
            for c in ErrorCode::ALL {
                assert!(text.contains(c.as_str()), "{doc} does not explain {c}");
            }
            for c in WarningCode::ALL {
                assert!(text.contains(c.as_str()), "{doc} does not explain {c}");
            }
            for r in Reason::CODES {
                assert!(text.contains(&format!("`{r}")), "{doc} does not list reason {r}");
            }
            for m in crate::Method::ALL {
                assert!(
                    text.contains(&format!("`{}`", m.as_str())),
                    "{doc} does not explain method {}",
                    m.as_str()
                );
            }
            for banned in ["DESIGN.md", "../shared", "issue"] {
                assert!(!text.contains(banned), "{doc} mentions {banned:?}: the repository must stand alone");
            }
        }
    }
}
