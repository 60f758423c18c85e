//! Loading: TOML text → validated [`Policy`], collecting every problem.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use config::{Value, ValueKind};
use ipnetwork::IpNetwork;
use serde::de::DeserializeOwned;

use crate::compile::{touched, Compiled};
use crate::error::{ConfigError, ConfigErrors, ConfigWarning, ErrorCode, WarningCode};
use crate::model::{
    App, ControlSettings, Endpoint, Exception, FlowSettings, InspectSettings, Io, Leg, Method, Mode,
    MonitorSettings, Path, Port, PortRange, Proto, Rule, Service, ServiceId, SniPattern, Zone, ZoneId,
    ZoneKind, MAX_WORKERS,
};
use crate::raw::Flag;
use crate::raw::{
    describe, fields_of, one_line, str_key, type_name, Int, PortEntry, RawAlert, RawControl, RawDaemon,
    RawException, RawFlow, RawInspect, RawLeg, RawLink, RawMonitor, RawPath, RawPort, RawRule, RawService,
    RawZone, Text,
};
use crate::route;
use crate::time::parse_expires;
use crate::Policy;

/// The default control socket path.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/sekisho/control.sock";

/// The ethertypes `[link] allow_ethertypes` may list: protocols that stay on one link and
/// carry no IP packet.
pub(crate) const LINK_ETHERTYPES: [(u16, &str); 10] = [
    (0x88cc, "LLDP"),
    (0x8809, "LACP and other slow protocols"),
    (0x888e, "EAPOL (802.1X)"),
    (0x88f7, "PTP"),
    (0x8902, "CFM (802.1ag)"),
    (0x88e3, "MRP"),
    (0x8808, "MAC control (pause frames)"),
    (0x22ea, "MSRP"),
    (0x88f5, "MVRP"),
    (0x88f6, "MMRP"),
];

/// Largest accepted `[flow] capacity`.
pub const MAX_FLOW_CAPACITY: usize = 100_000_000;

/// Largest accepted flow timeout, in seconds (30 days).
pub const MAX_FLOW_TIMEOUT_S: u64 = 30 * 24 * 3600;

const SECTIONS: [&str; 13] = [
    "daemon",
    "flow",
    "inspect",
    "monitor",
    "link",
    "zone",
    "port",
    "service",
    "path",
    "exception",
    "rule",
    "alert",
    "control",
];

/// Smallest accepted `[inspect] depth` (bytes per direction).
pub const MIN_INSPECT_DEPTH: usize = 4096;
/// Largest accepted `[inspect] depth`.
pub const MAX_INSPECT_DEPTH: usize = 65_536;

const MAX_NAME_CHARS: usize = 64;
/// Legs per path: the engine caches a leg number in 8 bits of a flow's verdict word.
pub const MAX_LEGS: usize = 255;

/// Parse and validate TOML text (via the `config` crate); `origin` (e.g. the
/// file path) prefixes every error.
pub fn load_str(text: &str, origin: &str) -> Result<Policy, ConfigErrors> {
    let fail = |errors| ConfigErrors { origin: origin.to_owned(), errors };
    let root = match parse_root(text) {
        Ok(r) => r,
        Err((code, message)) => {
            return Err(fail(vec![ConfigError { code, item: "TOML syntax".to_owned(), message }]))
        }
    };
    let mut l = Loader::default();
    let policy = l.load(root);
    match policy {
        Some(p) if l.errors.is_empty() => Ok(p),
        _ => {
            if l.errors.is_empty() {
                // Unreachable by construction; never load a half-built policy.
                l.err(ErrorCode::Internal, "policy", "internal error: validation incomplete".to_owned());
            }
            Err(fail(l.errors))
        }
    }
}

fn parse_root(text: &str) -> Result<config::Map<String, Value>, (ErrorCode, String)> {
    let cfg = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| (ErrorCode::TomlSyntax, one_line(&e.to_string())))?;
    cfg.try_deserialize::<config::Map<String, Value>>().map_err(|e| describe(&e))
}

/// How a reference by name resolved.
enum Ref<T> {
    Found(T),
    /// The named item exists but has errors of its own (already reported).
    Broken,
    /// Reported as an error here.
    Missing,
}

#[derive(Default)]
pub(crate) struct Loader {
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigWarning>,
    zones: Vec<Zone>,
    zone_ids: HashMap<String, ZoneId>,
    broken_zones: HashSet<String>,
    /// False once any zone has an error: zone membership is then uncertain, so
    /// the invariant checks (which depend on it) are skipped.
    zones_ok: bool,
    invariants_skipped: bool,
    prefix_index: Vec<(IpNetwork, ZoneId)>,
    /// Every zone prefix seen so far (broken zones included) → its zone's name.
    seen_prefixes: HashMap<IpNetwork, String>,
    services: Vec<Service>,
    service_ids: HashMap<String, ServiceId>,
    broken_services: HashSet<String>,
}

/// What kind of item an invariant check is about.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Shape {
    Rule,
    Leg { method: Method },
    Exception,
}

impl Loader {
    pub(crate) fn err(&mut self, code: ErrorCode, item: &str, message: String) {
        self.errors.push(ConfigError { code, item: item.to_owned(), message });
    }

    fn warn(&mut self, code: WarningCode, item: &str, message: String) {
        self.warnings.push(ConfigWarning { code, item: item.to_owned(), message });
    }

    fn load(&mut self, mut root: config::Map<String, Value>) -> Option<Policy> {
        let mut unknown: Vec<String> =
            root.keys().filter(|k| !SECTIONS.contains(&k.as_str())).cloned().collect();
        unknown.sort();
        for k in unknown {
            root.remove(&k);
            let hint = suggest(&k, SECTIONS.iter().copied());
            self.err(
                ErrorCode::UnknownKey,
                "top level",
                format!("unknown section `{k}`{hint}; accepted sections: {}", SECTIONS.join(", ")),
            );
        }

        let daemon = self.table_section::<RawDaemon>(&mut root, "daemon");
        let (mode, control_socket, io, workers) = self.daemon(daemon);
        let control = self.table_section::<RawControl>(&mut root, "control");
        let control = self.control(control);
        let flow = self.table_section::<RawFlow>(&mut root, "flow");
        let flow = self.flow(flow);
        let inspect = self.table_section::<RawInspect>(&mut root, "inspect");
        let inspect = self.inspect(inspect);
        let monitor = self.table_section::<RawMonitor>(&mut root, "monitor");
        let monitor = self.monitor(monitor);
        let link = self.table_section::<RawLink>(&mut root, "link");
        let allow_ethertypes = self.link(link);

        self.zones_ok = true;
        for (i, v) in self.array_section(&mut root, "zone").into_iter().enumerate() {
            self.zone(i, v);
        }
        self.prefix_index = self
            .zones
            .iter()
            .enumerate()
            .flat_map(|(i, z)| z.prefixes.iter().map(move |p| (*p, ZoneId(i as u16))))
            .collect();

        let mut ports = Vec::new();
        let mut interfaces: HashMap<String, String> = HashMap::new();
        let mut port_names: HashMap<String, usize> = HashMap::new();
        for (i, v) in self.array_section(&mut root, "port").into_iter().enumerate() {
            if let Some(p) = self.port(i, v, &mut interfaces, &mut port_names) {
                ports.push(p);
            }
        }
        self.zones_and_ports(&ports);

        for (i, v) in self.array_section(&mut root, "service").into_iter().enumerate() {
            self.service(i, v);
        }

        let mut paths = Vec::new();
        let mut path_names = HashMap::new();
        for (i, v) in self.array_section(&mut root, "path").into_iter().enumerate() {
            if let Some(p) = self.path(i, v, &mut path_names) {
                paths.push(p);
            }
        }

        let mut exceptions = Vec::new();
        let mut exception_names = HashMap::new();
        for (i, v) in self.array_section(&mut root, "exception").into_iter().enumerate() {
            if let Some(e) = self.exception(i, v, &mut exception_names) {
                exceptions.push(e);
            }
        }

        let mut rules = Vec::new();
        let mut rule_names = HashMap::new();
        for (i, v) in self.array_section(&mut root, "rule").into_iter().enumerate() {
            if let Some(r) = self.rule(i, v, &mut rule_names) {
                rules.push(r);
            }
        }

        let raw_alert: Option<RawAlert> = self.table_section(&mut root, "alert");
        let alert = self.alert(raw_alert);

        if self.zones_ok {
            self.nested_prefixes(&ports, &paths, &exceptions, &rules);
            self.unused_services(&paths, &exceptions, &rules);
            let findings = route::analyse(&route::Input {
                zones: &self.zones,
                prefixes: &self.prefix_index,
                services: &self.services,
                paths: &paths,
                exceptions: &exceptions,
                rules: &rules,
            });
            self.errors.extend(findings.errors);
            self.warnings.extend(findings.warnings);
        }

        if self.invariants_skipped {
            self.err(
                ErrorCode::InvariantsSkipped,
                "policy",
                "the separation invariants were not checked because some [[zone]] has errors; \
                 fix those and load again"
                    .to_owned(),
            );
        }
        if !self.errors.is_empty() {
            return None;
        }
        let zones = std::mem::take(&mut self.zones);
        let services = std::mem::take(&mut self.services);
        let compiled = Compiled::build(&zones, &services, &paths, &exceptions, &rules);
        let mut leg_offsets = Vec::with_capacity(paths.len() + 1);
        leg_offsets.push(0);
        for p in &paths {
            leg_offsets.push(leg_offsets.last().copied().unwrap_or(0) + p.legs.len());
        }
        Some(Policy {
            mode,
            control_socket,
            control,
            io,
            workers,
            flow,
            inspect,
            monitor,
            leg_offsets,
            allow_ethertypes,
            zones,
            ports,
            services,
            paths,
            exceptions,
            rules,
            compiled,
            warnings: std::mem::take(&mut self.warnings),
            alert,
        })
    }

    /// W-ZONE-NESTED-PREFIX: a prefix of one zone inside a prefix of another (other than
    /// an internet zone's /0 catch-all) moves its addresses to the inner zone; name the
    /// hosts the policy writes there.
    fn nested_prefixes(&mut self, ports: &[Port], paths: &[Path], exceptions: &[Exception], rules: &[Rule]) {
        let mut named: Vec<(String, IpNetwork)> = Vec::new();
        let mut note = |what: String, e: &Endpoint| {
            if let Endpoint::Net(n) = e {
                named.push((what, *n));
            }
        };
        for p in paths {
            for (j, l) in p.legs.iter().enumerate() {
                note(format!("path {:?} leg {} `from`", p.name, j + 1), &l.from);
                note(format!("path {:?} leg {} `to`", p.name, j + 1), &l.to);
            }
        }
        for x in exceptions {
            note(format!("exception {:?} `from`", x.name), &x.from);
            note(format!("exception {:?} `to`", x.name), &x.to);
        }
        for r in rules {
            note(format!("rule {:?} `from`", r.name), &r.from);
            note(format!("rule {:?} `to`", r.name), &r.to);
        }
        for p in ports {
            for r in &p.routers {
                if let Ok(n) = IpNetwork::new(*r, if r.is_ipv4() { 32 } else { 128 }) {
                    named.push((format!("port {:?} `routers`", p.name), n));
                }
            }
        }
        let mut found = Vec::new();
        for &(outer, outer_zone) in &self.prefix_index {
            let catch_all = outer.prefix() == 0 && self.kind(outer_zone) == Some(ZoneKind::Internet);
            if catch_all {
                continue;
            }
            for &(inner, inner_zone) in &self.prefix_index {
                let nested = inner_zone != outer_zone
                    && inner.is_ipv4() == outer.is_ipv4()
                    && inner.prefix() > outer.prefix()
                    && outer.contains(inner.network());
                if !nested {
                    continue;
                }
                let moved: Vec<String> = named
                    .iter()
                    .filter(|(_, n)| n.prefix() >= inner.prefix() && inner.contains(n.network()))
                    .map(|(what, n)| {
                        let host = n.prefix() == if n.is_ipv4() { 32 } else { 128 };
                        if host {
                            format!("{what} {}", n.ip())
                        } else {
                            format!("{what} {n}")
                        }
                    })
                    .collect();
                let shown = moved.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
                let hosts = match moved.len() {
                    0 => "no host the policy names lies there".to_owned(),
                    n if n > 5 => format!("it moves {shown} and {} more", n - 5),
                    _ => format!("it moves {shown}"),
                };
                let name = |z: ZoneId| self.zones.get(z.index()).map_or("?", |z| z.name.as_str()).to_owned();
                found.push((
                    format!("zone {:?}", name(inner_zone)),
                    format!(
                        "prefix {inner} lies inside prefix {outer} of zone {:?}: its addresses belong \
                         to zone {:?} (the longest prefix wins), not to {:?}; {hosts}; if that is not \
                         meant, remove the prefix or move the hosts",
                        name(outer_zone),
                        name(inner_zone),
                        name(outer_zone)
                    ),
                ));
            }
        }
        for (item, message) in found {
            self.warn(WarningCode::NestedPrefix, &item, message);
        }
    }

    /// W-SERVICE-UNUSED: services no leg, exception or rule names.
    fn unused_services(&mut self, paths: &[Path], exceptions: &[Exception], rules: &[Rule]) {
        let mut used = vec![false; self.services.len()];
        let ids = paths
            .iter()
            .flat_map(|p| p.legs.iter().map(|l| l.service))
            .chain(exceptions.iter().map(|x| x.service))
            .chain(rules.iter().map(|r| r.service));
        for id in ids {
            if let Some(u) = used.get_mut(id.index()) {
                *u = true;
            }
        }
        let unused: Vec<String> =
            self.services.iter().zip(&used).filter(|(_, u)| !**u).map(|(s, _)| s.name.clone()).collect();
        for name in unused {
            self.warn(
                WarningCode::ServiceUnused,
                &format!("service {name:?}"),
                "no path leg, exception or rule uses it; remove it, or add the item that should \
                 use it"
                    .to_owned(),
            );
        }
    }

    // ---- generic item handling -------------------------------------------------

    /// Deserialise one table into `T`: every unknown key is reported (and
    /// dropped), then missing keys and wrong types are reported by serde.
    pub(crate) fn item<T: DeserializeOwned>(&mut self, item: &str, v: Value, what: &str) -> Option<T> {
        let ValueKind::Table(mut table) = v.kind else {
            let found = type_name(&v);
            self.err(ErrorCode::WrongType, item, format!("{what} must be a table of keys, found {found}"));
            return None;
        };
        let fields = fields_of::<T>();
        let mut unknown: Vec<String> =
            table.keys().filter(|k| !fields.contains(&k.as_str())).cloned().collect();
        unknown.sort();
        for k in unknown {
            table.remove(&k);
            let msg = if fields.is_empty() {
                format!("unknown key `{k}`: {what} takes no keys yet; remove it")
            } else {
                let hint = suggest(&k, fields.iter().copied());
                format!("unknown key `{k}`{hint}; accepted keys: {}", fields.join(", "))
            };
            self.err(ErrorCode::UnknownKey, item, msg);
        }
        // `from = ["a", "b"]` is a natural thing to try; say what to write instead of
        // serde's "expected a string".
        let mut lists = false;
        for key in ["from", "to"].into_iter().filter(|k| fields.contains(k)) {
            if let Some(ValueKind::Array(items)) = table.get(key).map(|v| &v.kind) {
                lists = true;
                let n = items.len();
                self.err(
                    ErrorCode::EndpointList,
                    item,
                    format!(
                        "`{key}` is a list of {n}, but it takes one endpoint (\"zone:NAME\", a CIDR \
                         or an address); write one item per endpoint, or one CIDR that holds them all"
                    ),
                );
            }
        }
        if lists {
            return None;
        }
        match T::deserialize(Value::new(None, ValueKind::Table(table))) {
            Ok(x) => Some(x),
            Err(e) => {
                let (code, message) = describe(&e);
                self.err(code, item, message);
                None
            }
        }
    }

    fn table_section<T: DeserializeOwned>(
        &mut self,
        root: &mut config::Map<String, Value>,
        key: &str,
    ) -> Option<T> {
        let item = format!("[{key}]");
        let v = root.remove(key)?;
        if let ValueKind::Array(_) = v.kind {
            self.err(
                ErrorCode::SectionShape,
                &item,
                format!("`{key}` must be a single table: write [{key}], not [[{key}]]"),
            );
            return None;
        }
        self.item(&item, v, &item)
    }

    fn array_section(&mut self, root: &mut config::Map<String, Value>, key: &str) -> Vec<Value> {
        let Some(v) = root.remove(key) else {
            return Vec::new();
        };
        match v.kind {
            ValueKind::Array(items) if items.len() > usize::from(u16::MAX) => {
                self.err(
                    ErrorCode::TooMany,
                    &format!("[[{key}]]"),
                    format!(
                        "too many [[{key}]] entries ({}); at most {} are supported",
                        items.len(),
                        u16::MAX
                    ),
                );
                Vec::new()
            }
            ValueKind::Array(items) => items,
            _ => {
                let found = type_name(&v);
                self.err(
                    ErrorCode::SectionShape,
                    &format!("[[{key}]]"),
                    format!("`{key}` must be a list of tables: write each one as [[{key}]], found {found}"),
                );
                Vec::new()
            }
        }
    }

    // ---- [daemon], [flow], [link] --------------------------------------------

    fn daemon(&mut self, raw: Option<RawDaemon>) -> (Mode, String, Io, u16) {
        let mut mode = Mode::Enforce;
        let mut socket = DEFAULT_CONTROL_SOCKET.to_owned();
        let (mut io, mut workers) = (Io::AfPacket, 1);
        let Some(raw) = raw else {
            return (mode, socket, io, workers);
        };
        if let Some(Text(x)) = raw.io {
            match parse_choice(&x, &Io::ALL, |x| x.as_str()) {
                Ok(x) => io = x,
                Err(e) => self.err(ErrorCode::UnknownValue, "[daemon]", format!("unknown io {e}")),
            }
        }
        if let Some(Int(n)) = raw.workers {
            match u16::try_from(n) {
                Ok(n) if (1..=MAX_WORKERS).contains(&n) => workers = n,
                _ => self.err(
                    ErrorCode::Workers,
                    "[daemon]",
                    format!(
                        "workers = {n} is out of range; give 1 to {MAX_WORKERS} data-plane threads \
                         (at most one per core serves best)"
                    ),
                ),
            }
        }
        if let Some(Text(m)) = raw.mode {
            match parse_choice(&m, &Mode::ALL, |x| x.as_str()) {
                Ok(x) => mode = x,
                Err(e) => self.err(ErrorCode::UnknownValue, "[daemon]", format!("unknown mode {e}")),
            }
        }
        if let Some(Text(s)) = raw.control_socket {
            if !s.starts_with('/') || s.len() > 107 || s.contains('\0') {
                self.err(
                    ErrorCode::ControlSocket,
                    "[daemon]",
                    format!(
                        "control_socket {s:?} must be an absolute path of at most 107 bytes \
                         (e.g. \"{DEFAULT_CONTROL_SOCKET}\")"
                    ),
                );
            } else {
                socket = s;
            }
        }
        (mode, socket, io, workers)
    }

    fn control(&mut self, raw: Option<RawControl>) -> ControlSettings {
        let mut out = ControlSettings::default();
        let Some(raw) = raw else {
            return out;
        };
        for (key, value, slot) in [
            ("admin_group", raw.admin_group, &mut out.admin_group),
            ("read_group", raw.read_group, &mut out.read_group),
        ] {
            let Some(Text(name)) = value else { continue };
            if is_group_name(&name) {
                *slot = Some(name);
            } else {
                self.err(
                    ErrorCode::ControlGroup,
                    "[control]",
                    format!(
                        "{key} {name:?} is not a group name: use 1 to 32 characters a-z 0-9 _ -, starting \
                         with a letter or _ (e.g. \"sekisho-admin\"); create the group with `groupadd`"
                    ),
                );
            }
        }
        out
    }

    fn flow(&mut self, raw: Option<RawFlow>) -> FlowSettings {
        let mut f = FlowSettings::default();
        let Some(raw) = raw else {
            return f;
        };
        if let Some(Int(c)) = raw.capacity {
            match usize::try_from(c) {
                Ok(c) if (1..=MAX_FLOW_CAPACITY).contains(&c) => f.capacity = c,
                _ => self.err(
                    ErrorCode::FlowRange,
                    "[flow]",
                    format!("capacity = {c} is out of range; it must be between 1 and {MAX_FLOW_CAPACITY}"),
                ),
            }
        }
        let timeouts = [
            ("tcp_syn_timeout_s", raw.tcp_syn_timeout_s, &mut f.tcp_syn_timeout_s),
            ("tcp_established_timeout_s", raw.tcp_established_timeout_s, &mut f.tcp_established_timeout_s),
            ("tcp_closing_timeout_s", raw.tcp_closing_timeout_s, &mut f.tcp_closing_timeout_s),
            ("udp_timeout_s", raw.udp_timeout_s, &mut f.udp_timeout_s),
            ("icmp_timeout_s", raw.icmp_timeout_s, &mut f.icmp_timeout_s),
        ];
        let mut errs = Vec::new();
        for (key, value, slot) in timeouts {
            if let Some(Int(v)) = value {
                match u64::try_from(v) {
                    Ok(v) if (1..=MAX_FLOW_TIMEOUT_S).contains(&v) => *slot = v,
                    _ => errs.push(format!(
                        "{key} = {v} is out of range; it must be a positive number of seconds, \
                         at most {MAX_FLOW_TIMEOUT_S} (30 days)"
                    )),
                }
            }
        }
        for e in errs {
            self.err(ErrorCode::FlowRange, "[flow]", e);
        }
        f
    }

    /// Reads integer keys of a section into their slots, each within its range; an out-of-range
    /// value is reported under `code` and leaves the default.
    fn numbers(&mut self, item: &str, code: ErrorCode, keys: Vec<(&str, Option<Int>, u64, u64, &mut u64)>) {
        for (key, value, min, max, slot) in keys {
            let Some(Int(v)) = value else { continue };
            match u64::try_from(v) {
                Ok(v) if (min..=max).contains(&v) => *slot = v,
                _ => self.err(
                    code,
                    item,
                    format!("{key} = {v} is out of range; it must be between {min} and {max}"),
                ),
            }
        }
    }

    fn inspect(&mut self, raw: Option<RawInspect>) -> InspectSettings {
        let d = InspectSettings::default();
        let Some(raw) = raw else { return d };
        let (mut depth, mut max_flows) = (d.depth as u64, d.max_flows as u64);
        let (mut dns, mut idle) = (u64::from(d.dns_tunnel_threshold), d.idle_timeout_s);
        self.numbers(
            "[inspect]",
            ErrorCode::InspectRange,
            vec![
                ("depth", raw.depth, MIN_INSPECT_DEPTH as u64, MAX_INSPECT_DEPTH as u64, &mut depth),
                ("max_flows", raw.max_flows, 1, 1_000_000, &mut max_flows),
                ("dns_tunnel_threshold", raw.dns_tunnel_threshold, 1, 31, &mut dns),
                ("idle_timeout_s", raw.idle_timeout_s, 1, MAX_FLOW_TIMEOUT_S, &mut idle),
            ],
        );
        InspectSettings {
            depth: depth as usize,
            max_flows: max_flows as usize,
            dns_tunnel_threshold: dns as u8,
            idle_timeout_s: idle,
        }
    }

    fn monitor(&mut self, raw: Option<RawMonitor>) -> MonitorSettings {
        let d = MonitorSettings::default();
        let Some(raw) = raw else { return d };
        let mut v = [
            d.window_s,
            u64::from(d.scan_ports),
            u64::from(d.scan_hosts),
            u64::from(d.syn_half_open),
            u64::from(d.icmp_flood),
            d.tracked as u64,
            d.block_ttl_s,
        ];
        let [window, ports, hosts, syn, icmp, tracked, block] = &mut v;
        self.numbers(
            "[monitor]",
            ErrorCode::MonitorRange,
            vec![
                ("window_s", raw.window_s, 1, 3600, window),
                ("scan_ports", raw.scan_ports, 2, 256, ports),
                ("scan_hosts", raw.scan_hosts, 2, 256, hosts),
                ("syn_half_open", raw.syn_half_open, 1, 10_000_000, syn),
                ("icmp_flood", raw.icmp_flood, 1, 10_000_000, icmp),
                ("tracked", raw.tracked, 16, 1_000_000, tracked),
                ("block_ttl_s", raw.block_ttl_s, 0, 86_400, block),
            ],
        );
        let [window_s, scan_ports, scan_hosts, syn_half_open, icmp_flood, tracked, block_ttl_s] = v;
        MonitorSettings {
            enabled: raw.enabled.is_none_or(|Flag(b)| b),
            window_s,
            scan_ports: scan_ports as u32,
            scan_hosts: scan_hosts as u32,
            syn_half_open: syn_half_open as u32,
            icmp_flood: icmp_flood as u32,
            tracked: tracked as usize,
            block_ttl_s,
        }
    }

    /// `[link] allow_ethertypes`: only link-only protocols, which carry no IP packet.
    fn link(&mut self, raw: Option<RawLink>) -> Vec<u16> {
        let mut out: Vec<u16> = Vec::new();
        let Some(list) = raw.and_then(|r| r.allow_ethertypes) else {
            return out;
        };
        for Int(v) in list {
            let Ok(t) = u16::try_from(v) else {
                self.err(
                    ErrorCode::Ethertype,
                    "[link]",
                    format!("allow_ethertypes: {v} is not an ethertype (0x0600-0xffff)"),
                );
                continue;
            };
            let why = match t {
                _ if LINK_ETHERTYPES.iter().any(|(e, _)| *e == t) => None,
                0..=0x05ff => Some("is an 802.3 length, not an ethertype (ethertypes are 0x0600-0xffff)"),
                0x0800 => Some("is IPv4, which the zone policy judges; remove it"),
                0x86dd => Some("is IPv6, which the zone policy judges; remove it"),
                0x0806 => Some("is ARP, which always passes within a port pair; remove it"),
                0x8100 | 0x88a8 | 0x9100 => Some("is a VLAN tag, which the engine parses through; remove it"),
                _ => Some(
                    "is not a link-only protocol: frames of other ethertypes (MPLS, PPPoE, MACsec, \
                     provider bridging, vendor ones) can carry IP past the zone policy. Only these may be \
                     listed: 0x88cc LLDP, 0x8809 LACP/slow protocols, 0x888e EAPOL, 0x88f7 PTP, 0x8902 \
                     CFM, 0x88e3 MRP, 0x8808 MAC control, 0x22ea MSRP, 0x88f5 MVRP, 0x88f6 MMRP",
                ),
            };
            if let Some(why) = why {
                self.err(ErrorCode::Ethertype, "[link]", format!("allow_ethertypes: {t:#06x} {why}"));
            } else if out.contains(&t) {
                self.err(
                    ErrorCode::Ethertype,
                    "[link]",
                    format!("allow_ethertypes: {t:#06x} is listed twice; remove one"),
                );
            } else {
                out.push(t);
            }
        }
        out
    }

    // ---- zones ------------------------------------------------------------------

    fn zone(&mut self, i: usize, v: Value) {
        let label = label("zone", &v, i);
        let raw_name = str_key(&v, "name").map(str::to_owned);
        let Some(raw) = self.item::<RawZone>(&label, v, "a [[zone]]") else {
            self.zones_ok = false;
            if let Some(n) = raw_name {
                self.broken_zones.insert(n);
            }
            return;
        };
        // Unknown keys (already reported and dropped) do not make the zone's
        // content uncertain: count only the problems found from here on.
        let n_errors = self.errors.len();
        let name = raw.name.0;
        let name_ok = self.name_usable(&label, name_problem("zone", &name, &self.zone_ids));
        let kind = match parse_choice(&raw.kind.0, &ZoneKind::ALL, |k| k.as_str()) {
            Ok(k) => Some(k),
            Err(e) => {
                self.err(ErrorCode::UnknownValue, &label, format!("unknown kind {e}"));
                None
            }
        };
        if raw.prefixes.is_empty() {
            self.err(
                ErrorCode::ZoneEmpty,
                &label,
                "has no prefixes; list the zone's networks, e.g. prefixes = [\"198.18.20.0/24\"]".to_owned(),
            );
        }
        let mut prefixes: Vec<IpNetwork> = Vec::new();
        for Text(p) in &raw.prefixes {
            match parse_network(p, true) {
                Err((code, e)) => self.err(code, &label, format!("prefix {e}")),
                Ok(net) => {
                    if prefixes.contains(&net) {
                        self.err(
                            ErrorCode::PrefixTwice,
                            &label,
                            format!("prefix {net} is listed twice; remove one"),
                        );
                        continue;
                    }
                    if let Some(other) = self.seen_prefixes.get(&net).cloned() {
                        self.err(
                            ErrorCode::PrefixConflict,
                            &label,
                            format!(
                                "prefix {net} is also in zone {other:?}; an address must belong to \
                                 exactly one zone, so remove it from one of them"
                            ),
                        );
                        continue;
                    }
                    self.seen_prefixes.insert(net, name.clone());
                    prefixes.push(net);
                }
            }
        }
        if self.errors.len() != n_errors {
            self.zones_ok = false;
        }
        match (name_ok, kind) {
            (true, Some(kind)) if self.errors.len() == n_errors => {
                self.zone_ids.insert(name.clone(), ZoneId(self.zones.len() as u16));
                let upstream = raw.upstream.is_some_and(|Flag(b)| b);
                self.zones.push(Zone { name, kind, prefixes, upstream });
            }
            (true, _) => {
                self.broken_zones.insert(name);
            }
            _ => {}
        }
    }

    fn zone_ref(&mut self, item: &str, what: &str, name: &str) -> Ref<ZoneId> {
        if let Some(id) = self.zone_ids.get(name) {
            return Ref::Found(*id);
        }
        if self.broken_zones.contains(name) {
            return Ref::Broken;
        }
        let hint = suggest(name, self.zone_ids.keys().map(String::as_str));
        let mut defined: Vec<&str> = self.zone_ids.keys().map(String::as_str).collect();
        defined.sort();
        let msg = format!(
            "{what} names zone {name:?}, which is not defined{hint}; defined zones: {}",
            list_or_none(&defined)
        );
        self.err(ErrorCode::RefZone, item, msg);
        Ref::Missing
    }

    // ---- ports ------------------------------------------------------------------

    fn port(
        &mut self,
        i: usize,
        v: Value,
        interfaces: &mut HashMap<String, String>,
        names: &mut HashMap<String, usize>,
    ) -> Option<Port> {
        let label = label("port", &v, i);
        let n_errors = self.errors.len();
        let raw = self.item::<RawPort>(&label, v, "a [[port]]")?;
        let name = raw.name.0;
        let name_ok = self.name_usable(&label, name_problem("port", &name, names));
        if name_ok {
            names.insert(name.clone(), i);
        }
        let zone = self.zone_ref(&label, "`zone`", &raw.zone.0);
        let (inside, outside) = (raw.inside.0, raw.outside.0);
        let vlans = self.port_vlans(&label, raw.vlans.unwrap_or_default());
        let untagged = raw.untagged.is_none_or(|Flag(b)| b);
        if !untagged && vlans.is_empty() {
            self.err(
                ErrorCode::PortVlan,
                &label,
                "untagged = false and no `vlans`: no frame could cross; list the VLAN ids, e.g. \
                 vlans = [10, 20]"
                    .to_owned(),
            );
        }
        let routers = match &zone {
            Ref::Found(z) => self.port_routers(&label, *z, raw.routers.unwrap_or_default()),
            _ => Vec::new(),
        };
        for (key, iface) in [("inside", &inside), ("outside", &outside)] {
            if let Err(e) = check_interface(iface) {
                self.err(ErrorCode::PortInterface, &label, format!("{key} {e}"));
                continue;
            }
            if let Some(other) = interfaces.get(iface) {
                let msg = format!(
                    "{key} interface {iface:?} is already used by {other}; each interface \
                     belongs to exactly one port"
                );
                self.err(ErrorCode::PortInterface, &label, msg);
            } else {
                interfaces.insert(iface.clone(), label.clone());
            }
        }
        if inside == outside {
            self.err(
                ErrorCode::PortInterface,
                &label,
                format!(
                    "inside and outside are both {inside:?}; a port is a pair of two different \
                     interfaces (toward the hosts, toward the core router)"
                ),
            );
        }
        match zone {
            Ref::Found(zone) if self.errors.len() == n_errors => {
                Some(Port { name, zone, inside, outside, vlans, untagged, routers })
            }
            _ => None,
        }
    }

    fn port_vlans(&mut self, label: &str, raw: Vec<Int>) -> Vec<u16> {
        let mut vlans = Vec::new();
        for Int(v) in raw {
            match u16::try_from(v) {
                Ok(vid) if vid <= 4094 => {
                    if vlans.contains(&vid) {
                        self.err(
                            ErrorCode::PortVlan,
                            label,
                            format!("vlans: {vid} is listed twice; remove one"),
                        );
                    } else {
                        vlans.push(vid);
                    }
                }
                _ => self.err(
                    ErrorCode::PortVlan,
                    label,
                    format!(
                        "vlans: {v} is not a VLAN id; ids are 0-4094 (0 is a priority-tagged frame, \
                         4095 is reserved)"
                    ),
                ),
            }
        }
        vlans.sort_unstable();
        vlans
    }

    /// `routers`: single addresses of the port's own zone.
    fn port_routers(&mut self, label: &str, zone: ZoneId, raw: Vec<Text>) -> Vec<IpAddr> {
        let mut routers = Vec::new();
        let zone_name = self.zones.get(zone.index()).map(|z| z.name.clone()).unwrap_or_default();
        for Text(text) in raw {
            let addr = match text.trim().parse::<IpAddr>() {
                Ok(a) => a,
                Err(_) => {
                    self.err(
                        ErrorCode::PortRouter,
                        label,
                        format!(
                            "routers: {text:?} is not an address; list the core router's own \
                             addresses on this segment, e.g. routers = [\"198.18.20.1\"]"
                        ),
                    );
                    continue;
                }
            };
            if let Some(why) = bogon_reason(addr) {
                self.err(ErrorCode::PortRouter, label, format!("routers: {addr} {why}"));
                continue;
            }
            let home = zone_of_index(&self.prefix_index, addr);
            if home != Some(zone) {
                let actual = home
                    .and_then(|z| self.zones.get(z.index()))
                    .map_or("no zone".to_owned(), |z| format!("zone {:?}", z.name));
                self.err(
                    ErrorCode::PortRouter,
                    label,
                    format!(
                        "routers: {addr} lies in {actual}, not in the port's zone {zone_name:?}; a \
                         router of this segment has an address of the segment's own zone"
                    ),
                );
                continue;
            }
            if routers.contains(&addr) {
                self.err(
                    ErrorCode::PortRouter,
                    label,
                    format!("routers: {addr} is listed twice; remove one"),
                );
                continue;
            }
            routers.push(addr);
        }
        routers
    }

    /// Each zone has at most one port; a zone without a port must say `upstream = true`
    /// (when the policy has ports at all), and a zone with one must not.
    fn zones_and_ports(&mut self, ports: &[Port]) {
        if ports.is_empty() {
            return;
        }
        let mut owner: HashMap<ZoneId, &str> = HashMap::new();
        let mut problems = Vec::new();
        for p in ports {
            if let Some(first) = owner.insert(p.zone, &p.name) {
                owner.insert(p.zone, first);
                let zone = self.zones.get(p.zone.index()).map_or("?", |z| z.name.as_str());
                problems.push((
                    ErrorCode::PortZoneTwice,
                    format!("port {:?}", p.name),
                    format!(
                        "zone {zone:?} already has port {first:?}; a zone has one port, because the \
                         gate decides which side of a port an address lives on from its zone: give \
                         the second segment its own [[zone]] (the same kind is fine)"
                    ),
                ));
            }
        }
        for (i, z) in self.zones.iter().enumerate() {
            let has_port = owner.contains_key(&ZoneId(i as u16));
            if !has_port && !z.upstream {
                problems.push((
                    ErrorCode::ZoneNoPort,
                    format!("zone {:?}", z.name),
                    "has no [[port]], so the gate cannot verify that its hosts' addresses are \
                     not forged; give it a port, or declare `upstream = true` if its hosts are \
                     reached only through the core router (any host beyond the router can then \
                     claim its addresses)"
                        .to_owned(),
                ));
            } else if has_port && z.upstream {
                problems.push((
                    ErrorCode::ZoneUpstreamPort,
                    format!("zone {:?}", z.name),
                    "says `upstream = true` but has a [[port]]; remove one of them".to_owned(),
                ));
            }
        }
        for (code, item, message) in problems {
            self.err(code, &item, message);
        }
    }

    // ---- services -------------------------------------------------------------

    fn service(&mut self, i: usize, v: Value) {
        let label = label("service", &v, i);
        let raw_name = str_key(&v, "name").map(str::to_owned);
        let Some(raw) = self.item::<RawService>(&label, v, "a [[service]]") else {
            if let Some(n) = raw_name {
                self.broken_services.insert(n);
            }
            return;
        };
        let n_errors = self.errors.len();
        let name = raw.name.0;
        let name_ok = self.name_usable(&label, name_problem("service", &name, &self.service_ids));
        let proto = match parse_choice(&raw.proto.0, &Proto::ALL, |p| p.as_str()) {
            Ok(p) => Some(p),
            Err(e) => {
                self.err(ErrorCode::UnknownValue, &label, format!("unknown proto {e}"));
                None
            }
        };
        let app = match raw.app {
            None => Some(App::Any),
            Some(Text(a)) => match parse_choice(&a, &App::ALL, |a| a.as_str()) {
                Ok(a) => Some(a),
                Err(e) => {
                    self.err(ErrorCode::UnknownValue, &label, format!("unknown app {e}"));
                    None
                }
            },
        };
        let mut ports = Vec::new();
        let entries = raw.ports.unwrap_or_default();
        for e in &entries {
            match parse_port_entry(e) {
                Ok(r) => ports.push(r),
                Err(msg) => self.err(ErrorCode::ServicePorts, &label, msg),
            }
        }
        if let Some(proto) = proto {
            if proto.has_ports() && entries.is_empty() {
                self.err(
                    ErrorCode::ServicePorts,
                    &label,
                    format!(
                        "a {} service needs `ports`, e.g. ports = [25] or ports = [\"8000-8080\"]",
                        proto.as_str()
                    ),
                );
            } else if !proto.has_ports() && !entries.is_empty() {
                self.err(
                    ErrorCode::ServicePorts,
                    &label,
                    format!(
                        "`ports` only applies to tcp and udp; remove it (a {} service has no ports)",
                        proto.as_str()
                    ),
                );
            }
            if let Some(app) = app {
                if let Some(allowed) = app.allowed_protos().filter(|_| !app.fits(proto)) {
                    let names: Vec<&str> = allowed.iter().map(|p| p.as_str()).collect();
                    self.err(
                        ErrorCode::ServiceApp,
                        &label,
                        format!(
                            "app {:?} runs over {}, but proto is {:?}; fix proto or app",
                            app.as_str(),
                            names.join(" or "),
                            proto.as_str()
                        ),
                    );
                }
            }
        }
        let sni_allow = self.sni_allow(&label, app, raw.sni_allow);
        let allow_connect = raw.allow_connect.is_some_and(|Flag(b)| b);
        if raw.allow_connect.is_some() && app.is_some_and(|a| a != App::Http) {
            self.err(
                ErrorCode::ServiceConnect,
                &label,
                "`allow_connect` only applies to app \"http\" (it lets HTTP CONNECT tunnels pass); remove it"
                    .to_owned(),
            );
        }
        match (name_ok, proto, app) {
            (true, Some(proto), Some(app)) if self.errors.len() == n_errors => {
                self.service_ids.insert(name.clone(), ServiceId(self.services.len() as u16));
                self.services.push(Service { name, proto, ports, app, sni_allow, allow_connect });
            }
            (true, _, _) => {
                self.broken_services.insert(name);
            }
            _ => {}
        }
    }

    /// `sni_allow`: exact host names and `*.suffix` patterns, for app tls only.
    fn sni_allow(&mut self, label: &str, app: Option<App>, raw: Option<Vec<Text>>) -> Vec<SniPattern> {
        let Some(list) = raw else { return Vec::new() };
        if app.is_some_and(|a| a != App::Tls) {
            self.err(
                ErrorCode::ServiceSni,
                label,
                "`sni_allow` only applies to app \"tls\" (it lists the server names a TLS ClientHello \
                 may ask for); set app = \"tls\" or remove it"
                    .to_owned(),
            );
            return Vec::new();
        }
        if list.is_empty() {
            self.err(
                ErrorCode::ServiceSni,
                label,
                "`sni_allow` is empty, so no connection could pass; list the names, e.g. \
                 sni_allow = [\"portal.example.lg.jp\", \"*.example.com\"], or remove the key"
                    .to_owned(),
            );
        }
        let mut out: Vec<SniPattern> = Vec::new();
        for Text(text) in list {
            match parse_sni_pattern(&text) {
                Ok(p) if out.contains(&p) => self.err(
                    ErrorCode::ServiceSni,
                    label,
                    format!("sni_allow: {text:?} is listed twice; remove one"),
                ),
                Ok(p) => out.push(p),
                Err(why) => self.err(ErrorCode::ServiceSni, label, format!("sni_allow: {text:?} {why}")),
            }
        }
        out
    }

    fn service_ref(&mut self, item: &str, name: &str) -> Ref<ServiceId> {
        if let Some(id) = self.service_ids.get(name) {
            return Ref::Found(*id);
        }
        if self.broken_services.contains(name) {
            return Ref::Broken;
        }
        let hint = suggest(name, self.service_ids.keys().map(String::as_str));
        let mut defined: Vec<&str> = self.service_ids.keys().map(String::as_str).collect();
        defined.sort();
        let msg =
            format!("service {name:?} is not defined{hint}; defined services: {}", list_or_none(&defined));
        self.err(ErrorCode::RefService, item, msg);
        Ref::Missing
    }

    // ---- endpoints ------------------------------------------------------------

    fn endpoint(&mut self, item: &str, key: &str, text: &str) -> Ref<Endpoint> {
        if let Some(zone) = text.strip_prefix("zone:") {
            return match self.zone_ref(item, &format!("`{key}`"), zone.trim()) {
                Ref::Found(z) => Ref::Found(Endpoint::Zone(z)),
                Ref::Broken => Ref::Broken,
                Ref::Missing => Ref::Missing,
            };
        }
        match parse_network(text, false) {
            Ok(n) => Ref::Found(Endpoint::Net(n)),
            Err((code, e)) => {
                self.err(code, item, format!("`{key}` {e}"));
                Ref::Missing
            }
        }
    }

    fn describe_zones(&self, set: &[ZoneId]) -> String {
        let shown: Vec<String> = set
            .iter()
            .take(4)
            .filter_map(|z| self.zones.get(z.index()))
            .map(|z| format!("{:?} ({})", z.name, z.kind.as_str()))
            .collect();
        let more = if set.len() > 4 { format!(" and {} more", set.len() - 4) } else { String::new() };
        let noun = if set.len() == 1 { "zone" } else { "zones" };
        format!("{noun} {}{more}", shown.join(", "))
    }

    fn kind(&self, z: ZoneId) -> Option<ZoneKind> {
        self.zones.get(z.index()).map(|z| z.kind)
    }

    fn all_kind(&self, set: &[ZoneId], kind: ZoneKind) -> bool {
        !set.is_empty() && set.iter().all(|z| self.kind(*z) == Some(kind))
    }

    /// Check the separation invariants (docs/configuration.md) for one rule, leg
    /// or exception.
    fn check_invariants(
        &mut self,
        item: &str,
        shape: Shape,
        from: (&str, &Endpoint),
        to: (&str, &Endpoint),
        service: Option<&Service>,
    ) {
        if !self.zones_ok {
            self.invariants_skipped = true;
            return;
        }
        let f = touched(from.1, &self.prefix_index);
        let t = touched(to.1, &self.prefix_index);
        let mut empty = false;
        for (key, (text, _), set) in [("from", from, &f), ("to", to, &t)] {
            if set.is_empty() {
                empty = true;
                self.err(
                    ErrorCode::EndpointNoZone,
                    item,
                    format!(
                        "`{key}` {text:?} lies in no zone, so it can never match; add its \
                         network to a [[zone]]'s prefixes or correct the address"
                    ),
                );
            }
        }
        if empty {
            return;
        }

        // (first offending pair, number of offending pairs) per invariant
        let mut isolation: Option<((ZoneId, ZoneId), usize)> = None;
        let mut mynumber_other: Option<((ZoneId, ZoneId), usize)> = None;
        let mut crossing: Option<((ZoneId, ZoneId), usize)> = None;
        let note = |slot: &mut Option<((ZoneId, ZoneId), usize)>, pair| match slot {
            Some((_, n)) => *n += 1,
            None => *slot = Some((pair, 1)),
        };
        for &a in &f {
            for &b in &t {
                if a == b {
                    continue;
                }
                let (Some(ka), Some(kb)) = (self.kind(a), self.kind(b)) else {
                    continue;
                };
                let mn = ka == ZoneKind::Mynumber || kb == ZoneKind::Mynumber;
                let other = if ka == ZoneKind::Mynumber { kb } else { ka };
                if mn && matches!(other, ZoneKind::Internet | ZoneKind::Sanitization) {
                    note(&mut isolation, (a, b));
                } else if mn && shape != Shape::Exception {
                    note(&mut mynumber_other, (a, b));
                } else if shape == Shape::Rule
                    && matches!(
                        (ka, kb),
                        (ZoneKind::Lgwan, ZoneKind::Internet) | (ZoneKind::Internet, ZoneKind::Lgwan)
                    )
                {
                    note(&mut crossing, (a, b));
                }
            }
        }
        let pair_text = |l: &Loader, ((a, b), n): ((ZoneId, ZoneId), usize)| {
            let more = if n > 1 { format!(" (and {} more zone pairs)", n - 1) } else { String::new() };
            format!(
                "`from` {:?} reaches {} and `to` {:?} reaches {}{more}",
                from.0,
                l.describe_zones(&[a]),
                to.0,
                l.describe_zones(&[b])
            )
        };
        if let Some(p) = isolation {
            let msg = format!(
                "マイナンバー利用事務系 (mynumber) may never communicate with internet/sanitization \
                 (インターネット接続系・無害化): {}; narrow the endpoints or remove this item",
                pair_text(self, p)
            );
            self.err(ErrorCode::MynumberIsolation, item, msg);
        }
        if let Some(p) = mynumber_other {
            let what = if shape == Shape::Rule { "a rule" } else { "a path leg" };
            let msg = format!(
                "{what} may not connect マイナンバー利用事務系 (mynumber) with any other zone: {}; \
                 the only way across mynumber ↔ lgwan is an [[exception]] with an approval",
                pair_text(self, p)
            );
            self.err(ErrorCode::MynumberRule, item, msg);
        }
        if let Some(p) = crossing {
            let msg = format!(
                "a rule may never cross LGWAN接続系 (lgwan) ↔ インターネット接続系 (internet): {}; \
                 only a [[path]] leg through a sanitization host can",
                pair_text(self, p)
            );
            self.err(ErrorCode::RuleCrossing, item, msg);
        }
        if isolation.is_some() || mynumber_other.is_some() {
            return;
        }

        match shape {
            Shape::Rule => {}
            Shape::Exception => {
                let ok = (self.all_kind(&f, ZoneKind::Mynumber) && self.all_kind(&t, ZoneKind::Lgwan))
                    || (self.all_kind(&f, ZoneKind::Lgwan) && self.all_kind(&t, ZoneKind::Mynumber));
                if !ok {
                    let msg = format!(
                        "an exception may only connect マイナンバー利用事務系 (mynumber) with \
                         LGWAN接続系 (lgwan): one end must lie only in mynumber zones and the other \
                         only in lgwan zones, but `from` {:?} reaches {} and `to` {:?} reaches {}; \
                         for other traffic use a [[rule]] or a [[path]]",
                        from.0,
                        self.describe_zones(&f),
                        to.0,
                        self.describe_zones(&t)
                    );
                    self.err(ErrorCode::ExceptionZones, item, msg);
                }
            }
            Shape::Leg { method: Method::LocalBreakout } => {
                if !(self.all_kind(&f, ZoneKind::Lgwan) && self.all_kind(&t, ZoneKind::Internet)) {
                    self.err(
                        ErrorCode::BreakoutZones,
                        item,
                        format!(
                            "a local-breakout (α') leg goes from LGWAN接続系 (lgwan) terminals to \
                             internet services: `from` must lie only in lgwan zones and `to` only in \
                             internet zones, but `from` {:?} reaches {} and `to` {:?} reaches {}",
                            from.0,
                            self.describe_zones(&f),
                            to.0,
                            self.describe_zones(&t)
                        ),
                    );
                }
                if let Some(svc) = service.filter(|s| s.app != App::Tls || s.sni_allow.is_empty()) {
                    self.err(
                        ErrorCode::BreakoutService,
                        item,
                        format!(
                            "a local-breakout (α') leg passes only TLS to listed server names: its \
                             service must have app = \"tls\" and an `sni_allow` list, but service {:?} \
                             has app {:?}{}",
                            svc.name,
                            svc.app.as_str(),
                            if svc.app == App::Tls { " and no sni_allow" } else { "" }
                        ),
                    );
                }
            }
            Shape::Leg { method } => {
                if self.all_kind(&f, ZoneKind::Sanitization) || self.all_kind(&t, ZoneKind::Sanitization) {
                    return;
                }
                let lgwan_internet = (self.all_kind(&f, ZoneKind::Lgwan)
                    && self.all_kind(&t, ZoneKind::Internet))
                    || (self.all_kind(&f, ZoneKind::Internet) && self.all_kind(&t, ZoneKind::Lgwan));
                let reach = format!(
                    "`from` {:?} reaches {} and `to` {:?} reaches {}",
                    from.0,
                    self.describe_zones(&f),
                    to.0,
                    self.describe_zones(&t)
                );
                if lgwan_internet && method == Method::ScreenTransfer {
                    if !to.1.is_single_host() {
                        self.err(
                            ErrorCode::ScreenHost,
                            item,
                            format!(
                                "a screen-transfer leg between lgwan and internet must name a single \
                                 host (the VDI/RDP server) as `to`, not a zone or a CIDR: `to` is {:?}",
                                to.0
                            ),
                        );
                    }
                    if let Some(svc) = service.filter(|s| !s.app.is_screen()) {
                        self.err(
                            ErrorCode::ScreenApp,
                            item,
                            format!(
                                "a screen-transfer leg between lgwan and internet must use a screen \
                                 protocol (a service with app rdp, ica or vnc), but service {:?} has \
                                 app {:?}",
                                svc.name,
                                svc.app.as_str()
                            ),
                        );
                    }
                } else if lgwan_internet {
                    self.err(
                        ErrorCode::LegCrossing,
                        item,
                        format!(
                            "a leg may not connect LGWAN接続系 (lgwan) and インターネット接続系 (internet) \
                             directly ({reach}); route it through a host of a sanitization zone; for a \
                             screen-transfer path, name a single VDI/RDP host as `to`; for α' \
                             local breakout to listed TLS services, use method \"local-breakout\""
                        ),
                    );
                } else {
                    self.err(
                        ErrorCode::LegNoSanitizer,
                        item,
                        format!(
                            "every path leg must touch a host of a 無害化 (sanitization) zone: `from` \
                             or `to` must lie entirely in sanitization zones, but {reach}"
                        ),
                    );
                }
            }
        }
    }

    // ---- paths, exceptions, rules -----------------------------------------------

    fn path(&mut self, i: usize, v: Value, names: &mut HashMap<String, usize>) -> Option<Path> {
        let label = label("path", &v, i);
        let n_errors = self.errors.len();
        let raw = self.item::<RawPath>(&label, v, "a [[path]]")?;
        let name = raw.name.0;
        if self.name_usable(&label, name_problem("path", &name, names)) {
            names.insert(name.clone(), i);
        }
        let method = match parse_choice(&raw.method.0, &Method::ALL, |m| m.as_str()) {
            Ok(m) => Some(m),
            Err(e) => {
                self.err(ErrorCode::UnknownValue, &label, format!("unknown method {e}"));
                None
            }
        };
        if raw.leg.is_empty() {
            self.err(
                ErrorCode::PathNoLegs,
                &label,
                "has no legs; add at least one [[path.leg]] with from, to and service".to_owned(),
            );
        }
        if raw.leg.len() > MAX_LEGS {
            self.err(
                ErrorCode::PathTooManyLegs,
                &label,
                format!(
                    "has {} legs; a path has at most {MAX_LEGS} (split it into several paths)",
                    raw.leg.len()
                ),
            );
            return None;
        }
        let mut legs = Vec::new();
        for (j, lv) in raw.leg.into_iter().enumerate() {
            let leg_label = format!("{label} leg {}", j + 1);
            let Some(raw_leg) = self.item::<RawLeg>(&leg_label, lv, "a [[path.leg]]") else {
                continue;
            };
            let from = self.endpoint(&leg_label, "from", &raw_leg.from.0);
            let to = self.endpoint(&leg_label, "to", &raw_leg.to.0);
            let service = self.service_ref(&leg_label, &raw_leg.service.0);
            if let (Ref::Found(from), Ref::Found(to), Some(method)) = (&from, &to, method) {
                let svc = match service {
                    Ref::Found(s) => self.services.get(s.index()).cloned(),
                    _ => None,
                };
                self.check_invariants(
                    &leg_label,
                    Shape::Leg { method },
                    (&raw_leg.from.0, from),
                    (&raw_leg.to.0, to),
                    svc.as_ref(),
                );
            }
            if let (Ref::Found(from), Ref::Found(to), Ref::Found(service)) = (from, to, service) {
                legs.push(Leg { from, to, service });
            }
        }
        match method {
            Some(method) if self.errors.len() == n_errors => Some(Path { name, method, legs }),
            _ => None,
        }
    }

    fn exception(&mut self, i: usize, v: Value, names: &mut HashMap<String, usize>) -> Option<Exception> {
        let label = label("exception", &v, i);
        let n_errors = self.errors.len();
        let raw = self.item::<RawException>(&label, v, "an [[exception]]")?;
        let name = raw.name.0;
        if self.name_usable(&label, name_problem("exception", &name, names)) {
            names.insert(name.clone(), i);
        }
        let from = self.endpoint(&label, "from", &raw.from.0);
        let to = self.endpoint(&label, "to", &raw.to.0);
        let service = self.service_ref(&label, &raw.service.0);
        for (key, text, end) in [("from", &raw.from.0, &from), ("to", &raw.to.0, &to)] {
            if let Ref::Found(e) = end {
                if let Some(why) = exception_too_wide(e) {
                    self.err(
                        ErrorCode::ExceptionWide,
                        &label,
                        format!(
                            "`{key}` {text:?} {why}: an exception would switch マイナンバー利用事務系 \
                             isolation off for all of it; name the host (\"198.18.10.5\") or a \
                             CIDR of at most {MAX_EXCEPTION_HOSTS} addresses (IPv4 /28, IPv6 /124), \
                             one exception per approved system"
                        ),
                    );
                }
            }
        }
        let approval = raw.approval.0.trim().to_owned();
        if approval.is_empty() {
            self.err(
                ErrorCode::ExceptionApproval,
                &label,
                "approval is empty; record the approval that authorises this exception \
                 (e.g. approval = \"R8-情政-012\")"
                    .to_owned(),
            );
        } else if approval.chars().any(char::is_control) {
            self.err(
                ErrorCode::ExceptionApproval,
                &label,
                "approval contains control characters; write it on one line".to_owned(),
            );
        }
        let expires = match raw.expires {
            None => None,
            Some(Text(e)) => match parse_expires(&e) {
                Ok(t) => Some(t),
                Err(msg) => {
                    self.err(ErrorCode::ExceptionExpires, &label, msg);
                    None
                }
            },
        };
        if let (Ref::Found(f), Ref::Found(t)) = (&from, &to) {
            let svc = match service {
                Ref::Found(s) => self.services.get(s.index()).cloned(),
                _ => None,
            };
            self.check_invariants(&label, Shape::Exception, (&raw.from.0, f), (&raw.to.0, t), svc.as_ref());
        }
        match (from, to, service) {
            (Ref::Found(from), Ref::Found(to), Ref::Found(service)) if self.errors.len() == n_errors => {
                Some(Exception { name, from, to, service, approval, expires })
            }
            _ => None,
        }
    }

    fn rule(&mut self, i: usize, v: Value, names: &mut HashMap<String, usize>) -> Option<Rule> {
        let label = label("rule", &v, i);
        let n_errors = self.errors.len();
        let raw = self.item::<RawRule>(&label, v, "a [[rule]]")?;
        let name = raw.name.0;
        if self.name_usable(&label, name_problem("rule", &name, names)) {
            names.insert(name.clone(), i);
        }
        let from = self.endpoint(&label, "from", &raw.from.0);
        let to = self.endpoint(&label, "to", &raw.to.0);
        let service = self.service_ref(&label, &raw.service.0);
        if let (Ref::Found(f), Ref::Found(t)) = (&from, &to) {
            self.check_invariants(&label, Shape::Rule, (&raw.from.0, f), (&raw.to.0, t), None);
        }
        match (from, to, service) {
            (Ref::Found(from), Ref::Found(to), Ref::Found(service)) if self.errors.len() == n_errors => {
                Some(Rule { name, from, to, service })
            }
            _ => None,
        }
    }

    /// Report a name problem, if any; true when the name is usable.
    fn name_usable(&mut self, item: &str, problem: Option<(ErrorCode, String)>) -> bool {
        match problem {
            Some((code, p)) => {
                self.err(code, item, p);
                false
            }
            None => true,
        }
    }
}

// ---- free helpers -------------------------------------------------------------

/// What is wrong with a name (invalid, or already in `taken`), if anything.
fn name_problem<V>(kind: &str, name: &str, taken: &HashMap<String, V>) -> Option<(ErrorCode, String)> {
    let valid = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Some((
            ErrorCode::NameInvalid,
            format!(
                "name {name:?} is not valid: use 1-{MAX_NAME_CHARS} letters, digits, '-', '_' or '.' \
                 (names appear in reason codes such as allow:{kind}:NAME)"
            ),
        ));
    }
    if taken.contains_key(name) {
        return Some((
            ErrorCode::NameDuplicate,
            format!("another {kind} is already named {name:?}; {kind} names must be unique"),
        ));
    }
    None
}

/// An `sni_allow` entry: a host name (letters, digits, hyphens; labels of 1-63; at most
/// 253 characters) or `*.` followed by one, in any case; not an IP address.
fn parse_sni_pattern(text: &str) -> Result<SniPattern, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (wild, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.parse::<IpAddr>().is_ok() {
        return Err("is an IP address; TLS server names are host names (a ClientHello to an IP \
                    literal is always refused)"
            .to_owned());
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err("is not a host name: write an exact name (\"portal.example.lg.jp\") or `*.` \
                    and a suffix (\"*.example.com\"); labels are letters, digits and hyphens"
            .to_owned());
    }
    if wild && !name.contains('.') {
        return Err(format!(
            "would allow every name under the top-level domain {name:?}; name a longer suffix"
        ));
    }
    Ok(if wild { SniPattern::Suffix(name.to_owned()) } else { SniPattern::Exact(name.to_owned()) })
}

/// The most addresses an exception's `from` or `to` may hold.
pub const MAX_EXCEPTION_HOSTS: u32 = 16;

/// Why an exception endpoint is too wide (a zone, or a CIDR of more than
/// [`MAX_EXCEPTION_HOSTS`] addresses), or `None`.
fn exception_too_wide(e: &Endpoint) -> Option<String> {
    let host_bits = |n: &IpNetwork| u32::from(if n.is_ipv4() { 32 } else { 128 } - n.prefix());
    match e {
        Endpoint::Zone(_) => Some("is a whole zone".to_owned()),
        Endpoint::Net(n) if host_bits(n) > MAX_EXCEPTION_HOSTS.ilog2() => {
            let count = match host_bits(n) {
                b if b < 64 => format!("{} addresses", 1u64 << b),
                b => format!("2^{b} addresses"),
            };
            Some(format!("holds {count}"))
        }
        Endpoint::Net(_) => None,
    }
}

/// `zone "lgwan"`, or `zone #3` (1-based) when the item has no usable name.
fn label(kind: &str, v: &Value, i: usize) -> String {
    match str_key(v, "name") {
        Some(n) if !n.is_empty() => format!("{kind} {n:?}"),
        _ => format!("{kind} #{}", i + 1),
    }
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

/// Match `text` against the spellings of `all`; on failure a message fragment
/// quoting the value and listing the accepted ones.
pub(crate) fn parse_choice<T: Copy>(
    text: &str,
    all: &[T],
    name: impl Fn(T) -> &'static str,
) -> Result<T, String> {
    if let Some(x) = all.iter().copied().find(|x| name(*x) == text) {
        return Ok(x);
    }
    let names: Vec<&str> = all.iter().map(|x| name(*x)).collect();
    let hint = suggest(text, names.iter().copied());
    Err(format!("{text:?}{hint}; accepted values: {}", names.join(", ")))
}

/// ` (did you mean `x`?)` when some candidate is within a small edit distance.
fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Parse a CIDR or a single address. Host bits set is an error naming the
/// network address. A zone prefix (`zone_prefix`) must say its length: a bare
/// address there is refused with the CIDR to write.
pub(crate) fn parse_network(text: &str, zone_prefix: bool) -> Result<IpNetwork, (ErrorCode, String)> {
    let t = text.trim();
    let (addr_text, len_text) = match t.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (t, None),
    };
    let addr: IpAddr = addr_text.parse().map_err(|_| {
        let hint = if zone_prefix { "" } else { "; an endpoint is \"zone:NAME\", a CIDR or an address" };
        (ErrorCode::Address, format!("{text:?} is not an IPv4/IPv6 address or CIDR{hint}"))
    })?;
    let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len_text {
        None if zone_prefix => return Err((ErrorCode::ZoneBareAddress, bare_address_hint(text, addr))),
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max && l.chars().all(|c| c.is_ascii_digit()) => n,
            _ => {
                return Err((
                    ErrorCode::Address,
                    format!(
                        "{text:?} has an invalid prefix length; write a number from 0 to {max} \
                         after the '/' (netmasks like /255.255.255.0 are not accepted)"
                    ),
                ))
            }
        },
    };
    let net = IpNetwork::new(addr, len)
        .map_err(|_| (ErrorCode::Address, format!("{text:?} is not a valid CIDR")))?;
    if let (IpAddr::V6(v6), true) = (addr, len >= 96) {
        if let Some(why) = bogon_reason(IpAddr::V6(v6)) {
            return Err((ErrorCode::BogonAddress, format!("{text:?} {why}")));
        }
    }
    if let IpAddr::V6(v6) = addr {
        if let Some((plen, what)) = translated_range(v6).filter(|(plen, _)| len >= *plen) {
            return Err((
                ErrorCode::BogonAddress,
                format!("{text:?} lies in the {what} range (/{plen}): its addresses name IPv4 hosts, never a host of a zone"),
            ));
        }
    }
    if net.network() != addr {
        let network = IpNetwork::new(net.network(), len).map(|n| n.to_string()).unwrap_or_default();
        let alt = if zone_prefix { String::new() } else { format!(", or \"{addr}\" for the single host") };
        return Err((
            ErrorCode::HostBits,
            format!("{text:?} has host bits set: its network address is {network}; write \"{network}\"{alt}"),
        ));
    }
    Ok(net)
}

/// The message for a zone prefix written without a length: the CIDR its trailing zero
/// bytes (IPv4) or groups (IPv6) suggest, and the single-host form.
fn bare_address_hint(text: &str, addr: IpAddr) -> String {
    let (zero_bits, max, unit) = match addr {
        IpAddr::V4(a) => (a.to_bits().trailing_zeros(), 32u32, 8u32),
        IpAddr::V6(a) => (a.to_bits().trailing_zeros(), 128u32, 16u32),
    };
    let suggested = max - zero_bits / unit * unit;
    let host = format!("{addr}/{max}");
    if suggested < max {
        format!(
            "{text:?} has no prefix length, so it is the single host {host}, not a network (its \
             other addresses would fall to another zone, e.g. the internet catch-all); write \
             \"{addr}/{suggested}\" for the network, or \"{host}\" if you mean that one host"
        )
    } else {
        format!(
            "{text:?} has no prefix length, so it is the single host {host}, not a network; \
             write \"{host}\" for that one host, or the network it belongs to with its length"
        )
    }
}

/// The IPv6 range, if any, whose addresses are spellings of IPv4 addresses for a
/// translator or tunnel (NAT64, 6to4, Teredo): its prefix length and name.
fn translated_range(a: std::net::Ipv6Addr) -> Option<(u8, &'static str)> {
    const RANGES: [(u128, u8, &str); 4] = [
        (0x0064_ff9b << 96, 96, "NAT64 well-known prefix 64:ff9b::/96"),
        (0x0064_ff9b_0001 << 80, 48, "NAT64 local-use prefix 64:ff9b:1::/48"),
        (0x2002 << 112, 16, "6to4 2002::/16"),
        (0x2001_0000 << 96, 32, "Teredo 2001::/32"),
    ];
    let bits = a.to_bits();
    RANGES
        .iter()
        .find(|(net, len, _)| bits >> (128 - u32::from(*len)) == net >> (128 - u32::from(*len)))
        .map(|(_, len, what)| (*len, *what))
}

/// Why `addr` can never be a zone's address (IPv4 forms inside IPv6, loopback,
/// multicast, unspecified), or `None`. The engine refuses such addresses on the wire.
pub(crate) fn bogon_reason(addr: IpAddr) -> Option<String> {
    match addr {
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return Some(format!("is an IPv4-mapped IPv6 address; write the IPv4 form {v4}"));
            }
            let s = a.segments();
            if s[..6] == [0; 6] && !a.is_unspecified() && !a.is_loopback() {
                let v4 = std::net::Ipv4Addr::from(a.to_bits() as u32);
                return Some(format!("is an IPv4-compatible IPv6 address; write the IPv4 form {v4}"));
            }
            if s[..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0 {
                let v4 = std::net::Ipv4Addr::from(a.to_bits() as u32);
                return Some(format!("is an IPv4-translated IPv6 address; write the IPv4 form {v4}"));
            }
            if a.is_loopback() || a.is_unspecified() || a.is_multicast() {
                return Some(
                    "is a loopback, unspecified or multicast address, never a host of a zone".to_owned(),
                );
            }
            translated_range(a).map(|(_, what)| {
                format!("is a {what} address: it names an IPv4 host, never a host of a zone")
            })
        }
        IpAddr::V4(a) => {
            if a.is_loopback() || a.is_unspecified() || a.is_multicast() || a.is_broadcast() {
                return Some(
                    "is a loopback, unspecified, multicast or broadcast address, never a host of a zone"
                        .to_owned(),
                );
            }
            None
        }
    }
}

/// The zone of `addr` by longest-prefix match over `index` (load-time; the compiled
/// policy has the fast version).
fn zone_of_index(index: &[(IpNetwork, ZoneId)], addr: IpAddr) -> Option<ZoneId> {
    index.iter().filter(|(n, _)| n.contains(addr)).max_by_key(|(n, _)| n.prefix()).map(|(_, z)| *z)
}

/// Linux interface name rules: 1-15 bytes, no '/', ':' or whitespace, not "." or "..".
/// A portable system group name (the shadow-utils rule, without the trailing `$`).
fn is_group_name(name: &str) -> bool {
    let mut chars = name.chars();
    (1..=32).contains(&name.len())
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn check_interface(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "interface name {name:?} is not valid: Linux interface names are 1-15 bytes without \
             '/', ':' or whitespace"
        ));
    }
    Ok(())
}

fn parse_port_entry(e: &PortEntry) -> Result<PortRange, String> {
    let port = |v: i128, shown: &str| -> Result<u16, String> {
        match u16::try_from(v) {
            Ok(p) if p >= 1 => Ok(p),
            _ => Err(format!("port {shown} is out of range; ports are 1-65535")),
        }
    };
    match e {
        PortEntry::Num(n) => {
            let p = port(*n, &n.to_string())?;
            Ok(PortRange { first: p, last: p })
        }
        PortEntry::Text(s) => {
            let bad = || format!("port entry {s:?} is neither a port number nor a range like \"8000-8080\"");
            let (a, b) = match s.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (s.trim(), s.trim()),
            };
            let a_num: i128 = a.parse().map_err(|_| bad())?;
            let b_num: i128 = b.parse().map_err(|_| bad())?;
            let first = port(a_num, a)?;
            let last = port(b_num, b)?;
            if first > last {
                return Err(format!("port range {s:?} is backwards; write \"{last}-{first}\""));
            }
            Ok(PortRange { first, last })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        assert!(parse_network("198.18.20.0/24", true).is_ok());
        let (code, e) = parse_network("198.18.20.1/24", true).unwrap_err();
        assert_eq!(code, ErrorCode::HostBits);
        assert!(e.contains("network address is 198.18.20.0/24"), "{e}");
        assert!(parse_network("198.18.20.0/255.255.255.0", true).is_err());
        assert!(parse_network("198.18.20.0/33", true).is_err());
        assert!(parse_network("2001:db8:20::/48", true).is_ok());
        assert_eq!(parse_network("2001:db8::5", false).unwrap().prefix(), 128);
        assert!(parse_network("fe80::1%eth0", false).is_err());
        let (code, e) = parse_network("198.18.50.0", true).unwrap_err();
        assert_eq!(code, ErrorCode::ZoneBareAddress);
        assert!(e.contains("\"198.18.50.0/24\" for the network") && e.contains("\"198.18.50.0/32\""), "{e}");
        let (_, e) = parse_network("10.0.0.0", true).unwrap_err();
        assert!(e.contains("\"10.0.0.0/8\""), "{e}");
        let (_, e) = parse_network("2001:db8:20::", true).unwrap_err();
        assert!(e.contains("\"2001:db8:20::/48\""), "{e}");
        let (_, e) = parse_network("198.18.50.7", true).unwrap_err();
        assert!(e.contains("\"198.18.50.7/32\" for that one host"), "{e}");
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("lgwn", ["lgwan", "internet"].into_iter()), " (did you mean `lgwan`?)");
        assert_eq!(suggest("zzzzzz", ["lgwan"].into_iter()), "");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn ports() {
        assert_eq!(
            parse_port_entry(&PortEntry::Text("8000-8080".into())).unwrap(),
            PortRange { first: 8000, last: 8080 }
        );
        assert!(parse_port_entry(&PortEntry::Num(0)).is_err());
        assert!(parse_port_entry(&PortEntry::Num(65536)).is_err());
        assert!(parse_port_entry(&PortEntry::Text("90-80".into())).is_err());
        assert!(parse_port_entry(&PortEntry::Text("http".into())).is_err());
    }
}
