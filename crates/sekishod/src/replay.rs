//! `sekishod replay`: captures through the engine, offline — the what-if tool an operator
//! runs before deploying a policy change, and the record an auditor reads.
//!
//! Each packet is judged at its capture time (or, with `--at`, at that time plus its
//! offset from the first packet), on the port interfaces it would cross. The report
//! lists connections first — denied ones grouped by reason, with zones, what decided
//! them and when they were seen — and packet counts second. The per-connection list is
//! bounded (`--max-flows`); what does not fit is counted, never silently dropped.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, TsResolution};
use sekisho_engine::{Action, Engine, Finding, FindingKind, FrameMeta, Ingress, Now, Side, Verdict};
use sekisho_policy::{Connection, ExceptionId, Mode, Policy, PortId, Reason, Timestamp};
use serde_json::json;

use crate::{load_policy, parse_at, wall_clock, Outcome, UsageError};

/// Arguments of `sekishod replay`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The configuration file (TOML).
    #[arg(short, long)]
    config: PathBuf,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    json: bool,
    /// Take every packet to arrive on this one interface (PORT:inside or PORT:outside)
    /// instead of the interfaces it would cross.
    #[arg(long, value_name = "PORT:SIDE")]
    ingress: Option<String>,
    /// Judge the capture as if its first packet arrived at this time (a date, an RFC 3339
    /// time, or `now`); later packets keep their spacing. Without it each packet is judged
    /// at its own capture time.
    #[arg(long)]
    at: Option<String>,
    /// The capture was taken on a host whose checksum offload left TCP/UDP checksums
    /// unfinished (tcpdump on the sending host shows them "incorrect"): do not verify them
    /// (as the data plane does for frames the sending kernel completes).
    #[arg(long)]
    checksums_offloaded: bool,
    /// List at most this many connections; packets of further connections are still
    /// judged and counted in the totals, and the report says how many were not listed.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    max_flows: usize,
    /// The captures (pcap or pcapng; Ethernet, raw IP, Linux cooked and BSD loopback).
    #[arg(required = true)]
    pcaps: Vec<PathBuf>,
}

/// When a packet is judged: `mono` (capture time in ns, never decreasing) runs flow
/// timeouts, `wall` (the capture time, or shifted to `--at`) decides exception expiry.
#[derive(Copy, Clone, Debug)]
struct PacketTime {
    mono: u64,
    wall: Timestamp,
}

/// One call into the engine.
enum Call<'f> {
    Process(Ingress, &'f [u8], FrameMeta),
    Sweep,
}

/// Every call replay makes into the engine with a time goes through here, so that the
/// engine's coming `Now { mono, wall }` argument is a one-line change.
fn call_engine(engine: &Engine, t: PacketTime, call: Call<'_>) -> Option<Verdict> {
    match call {
        Call::Process(ingress, frame, meta) => {
            Some(engine.process_meta(Now { mono: t.mono, wall: t.wall }, ingress, frame, meta))
        }
        Call::Sweep => {
            engine.sweep(t.mono);
            None
        }
    }
}

/// Turns capture timestamps into [`PacketTime`]s.
struct Clock {
    /// `--at`: the wall time of the first packet.
    at: Option<Timestamp>,
    first: Option<u64>,
    last_capture: u64,
    last_mono: u64,
}

impl Clock {
    fn time(&mut self, capture_ns: u64) -> PacketTime {
        let first = *self.first.get_or_insert(capture_ns);
        self.last_capture = capture_ns;
        self.last_mono = self.last_mono.max(capture_ns);
        let wall = match self.at {
            None => Timestamp(capture_ns),
            Some(at) => {
                let shifted = i128::from(at.0) + i128::from(capture_ns) - i128::from(first);
                Timestamp(u64::try_from(shifted.max(0)).unwrap_or(u64::MAX))
            }
        };
        PacketTime { mono: self.last_mono, wall }
    }
}

/// A connection's 5-tuple in canonical order, independent of direction.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
struct ConnKey {
    proto: u8,
    lo: (IpAddr, u16),
    hi: (IpAddr, u16),
}

impl ConnKey {
    /// The key, and whether `src` is its `lo` end.
    fn new(proto: u8, src: (IpAddr, u16), dst: (IpAddr, u16)) -> (ConnKey, bool) {
        if src <= dst {
            (ConnKey { proto, lo: src, hi: dst }, true)
        } else {
            (ConnKey { proto, lo: dst, hi: src }, false)
        }
    }
}

/// The first sender seen of each 5-tuple (its initiator), bounded: two generations of at
/// most `half` entries each; the older generation is forgotten when the newer fills.
struct Initiators {
    current: HashMap<ConnKey, bool>,
    previous: HashMap<ConnKey, bool>,
    half: usize,
    forgotten: u64,
}

/// Connections whose initiator replay remembers (for same-zone routing): 2 × 131 072.
const INITIATOR_GENERATION: usize = 131_072;

impl Initiators {
    fn new(half: usize) -> Initiators {
        Initiators { current: HashMap::new(), previous: HashMap::new(), half: half.max(1), forgotten: 0 }
    }

    /// Whether the sender (`lo_sent`: the key's `lo` end sent it) started the connection.
    fn is_initiator(&mut self, key: ConnKey, lo_sent: bool) -> bool {
        if let Some(&lo) = self.current.get(&key) {
            return lo == lo_sent;
        }
        let lo = match self.previous.remove(&key) {
            Some(lo) => lo,
            None => lo_sent,
        };
        if self.current.len() >= self.half {
            self.forgotten += self.previous.len() as u64;
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, lo);
        lo == lo_sent
    }
}

/// Which interfaces a packet crosses.
struct Router {
    /// `--ingress`: every packet on this one interface.
    forced: Option<Ingress>,
    /// The port of each zone (by zone index), if it has one.
    zone_port: Vec<Option<PortId>>,
    /// The core router's addresses on each port's segment.
    routers: HashMap<IpAddr, PortId>,
    initiators: Initiators,
}

impl Router {
    fn new(policy: &Policy, forced: Option<Ingress>) -> Router {
        let mut zone_port = vec![None; policy.zones().len()];
        let mut routers = HashMap::new();
        for (i, p) in policy.ports().iter().enumerate() {
            let id = PortId(i as u16);
            if let Some(slot) = zone_port.get_mut(p.zone.index()) {
                *slot = Some(id);
            }
            for r in &p.routers {
                routers.insert(*r, id);
            }
        }
        Router { forced, zone_port, routers, initiators: Initiators::new(INITIATOR_GENERATION) }
    }

    /// The interfaces a frame crosses, in order, following the ingress contract: a packet
    /// between zones enters the inside of its source zone's port and then the outside of
    /// its destination zone's port (a zone without a port — `upstream` — adds none); within
    /// one zone, the connection's initiator sends on the port's inside and the other end
    /// on its outside; the core router's own packets come from the outside. A frame no port
    /// would see (non-IP, or no zone with a port at either end) is judged on the first
    /// port's outside, so that it is still reported.
    fn crossings(&mut self, policy: &Policy, frame: &[u8]) -> [Option<Ingress>; 2] {
        if let Some(i) = self.forced {
            return [Some(i), None];
        }
        let fallback = [Some(Ingress { port: PortId(0), side: Side::Outside }), None];
        let Ok(sekisho_wire::L3::Ip(ip)) = sekisho_wire::parse_ethernet(frame).map(|p| p.l3) else {
            return fallback;
        };
        let port_of =
            |a: IpAddr| policy.zone_of(a).and_then(|z| self.zone_port.get(z.index()).copied().flatten());
        let (src_port, dst_port) = (port_of(ip.src), port_of(ip.dst));
        let inside = |port| Ingress { port, side: Side::Inside };
        let outside = |port| Ingress { port, side: Side::Outside };
        if self.routers.contains_key(&ip.src) {
            return match dst_port {
                Some(p) => [Some(outside(p)), None],
                None => fallback,
            };
        }
        match (src_port, dst_port) {
            (Some(s), Some(d)) if s == d => {
                // An ICMP error travels as its quoted packet's receiver would send.
                let (key, lo_sent) = match ip.l4 {
                    sekisho_wire::L4::Icmp(sekisho_wire::Icmp { quoted: Some(q), .. }) => {
                        ConnKey::new(q.protocol, (q.dst, q.dport), (q.src, q.sport))
                    }
                    _ => {
                        let (sport, dport) = ip.ports();
                        ConnKey::new(ip.protocol, (ip.src, sport), (ip.dst, dport))
                    }
                };
                if self.initiators.is_initiator(key, lo_sent) {
                    [Some(inside(s)), None]
                } else {
                    [Some(outside(s)), None]
                }
            }
            (None, None) => fallback,
            (None, Some(d)) => [Some(outside(d)), None],
            (s, d) => [s.map(inside), d.map(outside)],
        }
    }
}

/// One connection as the replay saw it.
struct FlowRecord {
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    packets: u64,
    forwarded: u64,
    dropped: u64,
    monitored: u64,
    first_reason: Reason,
    drop_reason: Option<Reason>,
    /// The exception that allowed it until it expired, when it was denied for isolation.
    lapsed: Option<ExceptionId>,
    first_seen: Timestamp,
    last_seen: Timestamp,
    /// What application inspection concluded: a cut, or else the identification.
    finding: Option<Finding>,
}

impl FlowRecord {
    fn reason(&self) -> Reason {
        self.drop_reason.unwrap_or(self.first_reason)
    }

    /// `allow`, `deny`, or `would drop` (monitor mode forwarded what enforce would drop).
    fn verdict(&self) -> &'static str {
        match (self.reason().allowed(), self.monitored > 0) {
            (true, _) => "allow",
            (false, true) => "would drop",
            (false, false) => "deny",
        }
    }
}

/// Per-capture facts for the report.
struct FileReport {
    path: String,
    packets: u64,
    unsupported: u64,
    error: Option<String>,
}

struct Replay {
    engine: Engine,
    router: Router,
    clock: Clock,
    last_sweep: u64,
    packets: u64,
    forwarded: u64,
    dropped: u64,
    monitored: u64,
    reasons: HashMap<Reason, u64>,
    index: HashMap<ConnKey, usize>,
    flows: Vec<FlowRecord>,
    max_flows: usize,
    /// Packets of connections beyond `max_flows`, by reason.
    omitted: HashMap<Reason, u64>,
    scratch: Vec<u8>,
    meta: FrameMeta,
}

const SWEEP_EVERY_NS: u64 = 10_000_000_000;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];

/// The ethertype of a raw IP packet, from its version nibble.
fn ip_ethertype(packet: &[u8]) -> Option<[u8; 2]> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => Some(ETHERTYPE_IPV4),
        Some(6) => Some(ETHERTYPE_IPV6),
        _ => None,
    }
}

/// Rewrites a captured packet as an Ethernet frame (synthetic MAC addresses) into
/// `scratch`, or borrows it when it already is one. `None`: an unsupported link type.
fn to_ethernet<'a>(linktype: DataLink, data: &'a [u8], scratch: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    let (ethertype, payload) = match linktype {
        DataLink::ETHERNET => return Some(data),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => (ip_ethertype(data).unwrap_or([0, 0]), data),
        // Linux cooked v1: 16-byte header, protocol in the last two bytes.
        DataLink::LINUX_SLL => {
            (data.get(14..16).map_or([0, 0], |p| [p[0], p[1]]), data.get(16..).unwrap_or(&[]))
        }
        // Linux cooked v2: 20-byte header, protocol first.
        DataLink::LINUX_SLL2 => {
            (data.get(0..2).map_or([0, 0], |p| [p[0], p[1]]), data.get(20..).unwrap_or(&[]))
        }
        // BSD loopback: a 4-byte address family (host order for NULL, network for LOOP).
        DataLink::NULL | DataLink::LOOP => {
            let payload = data.get(4..).unwrap_or(&[]);
            (ip_ethertype(payload).unwrap_or([0, 0]), payload)
        }
        _ => return None,
    };
    scratch.clear();
    scratch.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01]);
    scratch.extend_from_slice(&ethertype);
    scratch.extend_from_slice(payload);
    Some(scratch)
}

/// Parses `PORT:inside` / `PORT:outside` against the policy's ports.
fn parse_ingress(policy: &Policy, text: &str) -> Result<Ingress, UsageError> {
    let (name, side) = text.rsplit_once(':').unwrap_or((text, ""));
    let side = match side {
        "inside" => Side::Inside,
        "outside" => Side::Outside,
        _ => return Err(UsageError(format!("--ingress {text:?}: expected PORT:inside or PORT:outside"))),
    };
    let port = policy.ports().iter().position(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = policy.ports().iter().map(|p| p.name.as_str()).collect();
        UsageError(format!("--ingress {text:?}: no port named {name:?} (ports: {})", names.join(", ")))
    })?;
    Ok(Ingress { port: PortId(port as u16), side })
}

/// A pcapng interface's timestamp unit and offset (`if_tsresol`, `if_tsoffset`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct TsUnit {
    /// `if_tsresol`: high bit clear, 10^-n seconds; set, 2^-n seconds. Default 6 (µs).
    resol: u8,
    /// `if_tsoffset`: seconds added to every timestamp.
    offset_s: i64,
}

impl Default for TsUnit {
    fn default() -> TsUnit {
        TsUnit { resol: 6, offset_s: 0 }
    }
}

impl TsUnit {
    fn from_options(options: &[InterfaceDescriptionOption<'_>]) -> TsUnit {
        let mut unit = TsUnit::default();
        for o in options {
            match o {
                InterfaceDescriptionOption::IfTsResol(r) => unit.resol = *r,
                InterfaceDescriptionOption::IfTsOffset(s) => unit.offset_s = *s as i64,
                _ => {}
            }
        }
        unit
    }

    /// Nanoseconds since the epoch for a raw timestamp in this unit (saturating).
    fn nanos(self, raw: u64) -> u64 {
        let n = u32::from(self.resol & 0x7f);
        let ns: u128 = if self.resol & 0x80 == 0 {
            if n <= 9 {
                u128::from(raw) * 10u128.pow(9 - n)
            } else {
                10u128.checked_pow(n - 9).map_or(0, |d| u128::from(raw) / d)
            }
        } else {
            (u128::from(raw) * 1_000_000_000) >> n.min(127)
        };
        let with_offset = i128::try_from(ns).unwrap_or(i128::MAX) + i128::from(self.offset_s) * 1_000_000_000;
        u64::try_from(with_offset.max(0)).unwrap_or(u64::MAX)
    }
}

impl Replay {
    fn packet(&mut self, linktype: DataLink, capture_ns: u64, data: &[u8], report: &mut FileReport) {
        let mut scratch = std::mem::take(&mut self.scratch);
        if let Some(frame) = to_ethernet(linktype, data, &mut scratch) {
            report.packets += 1;
            let t = self.clock.time(capture_ns);
            self.frame(t, frame);
        } else {
            report.unsupported += 1;
        }
        self.scratch = scratch;
    }

    fn frame(&mut self, t: PacketTime, frame: &[u8]) {
        if t.mono.saturating_sub(self.last_sweep) >= SWEEP_EVERY_NS {
            call_engine(&self.engine, t, Call::Sweep);
            self.last_sweep = t.mono;
        }
        let loaded = self.engine.loaded();
        let path = self.router.crossings(&loaded.policy, frame);
        // The packet passes when every port it crosses passes it; the first refusal is
        // the one reported.
        let mut verdict: Option<Verdict> = None;
        for ingress in path.into_iter().flatten() {
            let Some(v) = call_engine(&self.engine, t, Call::Process(ingress, frame, self.meta)) else {
                continue;
            };
            let refused = !v.reason.allowed();
            if verdict.is_none() || refused {
                verdict = Some(v);
            }
            if refused {
                break;
            }
        }
        if let Some(v) = verdict {
            self.record(&loaded.policy, t.wall, &v);
        }
    }

    fn record(&mut self, policy: &Policy, wall: Timestamp, v: &Verdict) {
        self.packets += 1;
        *self.reasons.entry(v.reason).or_default() += 1;
        match v.action {
            Action::Forward => self.forwarded += 1,
            Action::Drop => self.dropped += 1,
        }
        self.monitored += u64::from(v.monitored);
        let Some(p) = v.packet else { return };
        let (key, _) = ConnKey::new(p.protocol, (p.src, p.sport), (p.dst, p.dport));
        let i = match self.index.get(&key) {
            Some(i) => *i,
            None if self.flows.len() >= self.max_flows => {
                *self.omitted.entry(v.reason).or_default() += 1;
                return;
            }
            None => {
                let i = self.flows.len();
                self.index.insert(key, i);
                self.flows.push(FlowRecord {
                    proto: p.protocol,
                    src: p.src,
                    dst: p.dst,
                    sport: p.sport,
                    dport: p.dport,
                    packets: 0,
                    forwarded: 0,
                    dropped: 0,
                    monitored: 0,
                    first_reason: v.reason,
                    drop_reason: None,
                    lapsed: None,
                    first_seen: wall,
                    last_seen: wall,
                    finding: None,
                });
                i
            }
        };
        let Some(f) = self.flows.get_mut(i) else { return };
        f.packets += 1;
        f.last_seen = wall;
        if let Some(found) = v.finding {
            // A cut says more than an identification; the first cut stays.
            if f.finding.is_none_or(|old| old.kind == FindingKind::Identified) {
                f.finding = Some(found);
            }
        }
        f.monitored += u64::from(v.monitored);
        if !v.reason.allowed() && f.drop_reason.is_none() {
            f.drop_reason = Some(v.reason);
            if v.reason == Reason::MynumberIsolation {
                let conn = Connection {
                    protocol: f.proto,
                    initiator: f.src,
                    responder: f.dst,
                    responder_port: f.dport,
                };
                f.lapsed = policy.lapsed_exception(&conn, wall);
            }
        }
        if v.action == Action::Drop {
            f.dropped += 1;
        } else {
            f.forwarded += 1;
        }
    }

    fn file(&mut self, path: &Path) -> FileReport {
        let mut report =
            FileReport { path: path.display().to_string(), packets: 0, unsupported: 0, error: None };
        // The capture parser is a third-party crate: a panic on a hostile file is reported
        // as a broken capture, not a crash of the whole replay.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.read(path, &mut report)));
        report.error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some("the capture parser failed on this file (corrupt capture?)".into()),
        };
        report
    }

    fn read(&mut self, path: &Path, report: &mut FileReport) -> anyhow::Result<()> {
        let mut file =
            BufReader::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?);
        let mut magic = [0u8; 4];
        file.read_exact(&mut magic)
            .with_context(|| format!("{}: too short for a capture", path.display()))?;
        let file = std::io::Cursor::new(magic).chain(file);
        if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
            let mut reader =
                PcapNgReader::new(file).with_context(|| format!("{}: bad pcapng header", path.display()))?;
            // Link type and timestamp unit by interface id, in the order the interface
            // blocks appear in the section.
            let mut interfaces: Vec<(DataLink, TsUnit)> = Vec::new();
            let unknown = (DataLink::Unknown(u32::MAX), TsUnit::default());
            while let Some(block) = reader.next_block() {
                let block = block.with_context(|| format!("{}: bad pcapng block", path.display()))?;
                match block {
                    Block::SectionHeader(_) => interfaces.clear(),
                    Block::InterfaceDescription(idb) => {
                        interfaces.push((idb.linktype, TsUnit::from_options(&idb.options)));
                    }
                    Block::EnhancedPacket(epb) => {
                        let (linktype, unit) =
                            interfaces.get(epb.interface_id as usize).copied().unwrap_or(unknown);
                        // pcap-file reads the raw 64-bit timestamp into a Duration as if it
                        // counted nanoseconds: take the raw count back and apply the unit.
                        let raw = u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX);
                        self.packet(linktype, unit.nanos(raw), &epb.data, report);
                    }
                    Block::SimplePacket(spb) => {
                        let linktype = interfaces.first().map_or(unknown.0, |i| i.0);
                        // No timestamp: the time of the packet before it.
                        let at = self.clock.last_capture;
                        self.packet(linktype, at, &spb.data, report);
                    }
                    _ => {}
                }
            }
        } else {
            let mut reader = PcapReader::new(file)
                .with_context(|| format!("{}: not a pcap or pcapng file", path.display()))?;
            let header = reader.header();
            let frac_ns = match header.ts_resolution {
                TsResolution::MicroSecond => 1_000,
                TsResolution::NanoSecond => 1,
            };
            // Raw records: a packet whose original length exceeds the snap length (cut
            // on capture) is still judged on the bytes that were kept.
            while let Some(packet) = reader.next_raw_packet() {
                let packet = packet.with_context(|| format!("{}: bad pcap record", path.display()))?;
                let ns = u64::from(packet.ts_sec)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(u64::from(packet.ts_frac).saturating_mul(frac_ns));
                self.packet(header.datalink, ns, &packet.data, report);
            }
        }
        Ok(())
    }
}

fn finding_kind(k: FindingKind) -> &'static str {
    match k {
        FindingKind::Identified => "identified",
        FindingKind::Mismatch => "mismatch",
        FindingKind::NotSanitized => "not-sanitized",
    }
}

/// What inspection said, in words: `identified tls`, `seen http, expected smtp: ...`.
fn finding_text(f: &Finding) -> String {
    match f.kind {
        FindingKind::Identified => format!("identified {}", f.seen.as_str()),
        FindingKind::Mismatch => {
            format!("seen {}, expected {}: {}", f.seen.as_str(), f.expected.as_str(), f.detail)
        }
        FindingKind::NotSanitized => format!("not sanitised: {}", f.detail),
    }
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        other => other.to_string(),
    }
}

fn endpoint(addr: IpAddr, port: u16, proto: u8) -> String {
    sekisho_control::text::socket_text(&addr.to_string(), matches!(proto, 6 | 17).then_some(port))
}

/// What the report says about one connection besides its numbers.
struct Detail {
    src_zone: Option<String>,
    dst_zone: Option<String>,
    /// What allowed it (a path leg, an exception with its approval, a rule), in words.
    decided_by: String,
    decided_by_json: serde_json::Value,
    lapsed: Option<(String, serde_json::Value)>,
}

fn detail(policy: &Policy, f: &FlowRecord) -> Detail {
    let zone = |a: IpAddr| policy.zone_of(a).and_then(|z| policy.zone(z)).map(|z| z.name.clone());
    let allow = if f.reason().allowed() { f.reason() } else { f.first_reason };
    let (decided_by, decided_by_json) = match allow {
        Reason::Path { path, leg } => {
            let name = policy.paths().get(path.index()).map_or("?", |p| p.name.as_str());
            (format!("path {name} leg {leg}"), json!({ "kind": "path", "path": name, "leg": leg }))
        }
        Reason::Exception(id) => match policy.exceptions().get(id.index()) {
            Some(x) => {
                let expires = x.expires.map(|t| t.expiry_text());
                let until = expires.as_ref().map_or(String::new(), |e| format!(", valid through {e}"));
                (
                    format!("exception {} (approval {}{until})", x.name, x.approval),
                    json!({ "kind": "exception", "exception": x.name, "approval": x.approval, "expires": expires }),
                )
            }
            None => ("?".into(), serde_json::Value::Null),
        },
        Reason::Rule(id) => {
            let name = policy.rules().get(id.index()).map_or("?", |r| r.name.as_str());
            (format!("rule {name}"), json!({ "kind": "rule", "rule": name }))
        }
        Reason::IntraZone => ("same zone".into(), json!({ "kind": "intra-zone" })),
        Reason::Link => ("link traffic".into(), json!({ "kind": "link" })),
        Reason::Related => ("related to an allowed flow".into(), json!({ "kind": "related" })),
        _ => (String::new(), serde_json::Value::Null),
    };
    // An allowed start that was cut later: say what allowed it before.
    let decided_by = if !f.reason().allowed() && f.first_reason.allowed() {
        format!("allowed at first by {decided_by}")
    } else {
        decided_by
    };
    let lapsed = f.lapsed.and_then(|id| policy.exceptions().get(id.index())).map(|x| {
        let expired = x.expires.map(|t| t.expiry_text()).unwrap_or_default();
        (
            format!("exception {} (approval {}) expired {expired}", x.name, x.approval),
            json!({ "exception": x.name, "approval": x.approval, "expired": expired }),
        )
    });
    Detail { src_zone: zone(f.src), dst_zone: zone(f.dst), decided_by, decided_by_json, lapsed }
}

/// The `--json` document. Its keys are stable: scripts read them.
#[derive(serde::Serialize)]
struct JsonReport<'a> {
    mode: &'static str,
    time: String,
    packets: u64,
    forwarded: u64,
    dropped: u64,
    monitored: u64,
    drop_reasons: &'a BTreeMap<String, u64>,
    reasons: &'a BTreeMap<String, u64>,
    connections: serde_json::Value,
    flows_omitted: serde_json::Value,
    initiators_forgotten: u64,
    flows: FlowList<'a>,
    files: Vec<serde_json::Value>,
}

/// The connection list, serialised one connection at a time.
struct FlowList<'a> {
    policy: &'a Policy,
    flows: &'a [FlowRecord],
}

impl serde::Serialize for FlowList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.flows.len()))?;
        for f in self.flows {
            seq.serialize_element(&flow_json(self.policy, f))?;
        }
        seq.end()
    }
}

fn flow_json(policy: &Policy, f: &FlowRecord) -> serde_json::Value {
    let name = |r: Reason| policy.reason_name(r).to_string();
    let d = detail(policy, f);
    json!({
        "proto": proto_name(f.proto),
        "src": f.src.to_string(),
        "dst": f.dst.to_string(),
        "sport": f.sport,
        "dport": f.dport,
        "packets": f.packets,
        "forwarded": f.forwarded,
        "dropped": f.dropped,
        "monitored": f.monitored,
        "verdict": if f.reason().allowed() { "allow" } else { "deny" },
        "would_drop": f.verdict() == "would drop",
        "reason": name(f.reason()),
        "first_reason": name(f.first_reason),
        "src_zone": d.src_zone,
        "dst_zone": d.dst_zone,
        "decided_by": d.decided_by_json,
        "lapsed_exception": d.lapsed.map(|l| l.1),
        "inspection": f.finding.map(|x| json!({
            "result": finding_kind(x.kind),
            "expected": x.expected.as_str(),
            "seen": x.seen.as_str(),
            "detail": x.detail,
        })),
        "first_seen": f.first_seen.to_jst(),
        "last_seen": f.last_seen.to_jst(),
    })
}

/// Reasons in report order: denies first, then by number of connections (most first),
/// then by name.
fn grouped<'a>(policy: &Policy, flows: &'a [FlowRecord]) -> Vec<(String, bool, Vec<&'a FlowRecord>)> {
    let mut groups: BTreeMap<String, (bool, Vec<&FlowRecord>)> = BTreeMap::new();
    for f in flows {
        let entry = groups
            .entry(policy.reason_name(f.reason()).to_string())
            .or_insert_with(|| (f.reason().allowed(), Vec::new()));
        entry.1.push(f);
    }
    let mut out: Vec<(String, bool, Vec<&FlowRecord>)> =
        groups.into_iter().map(|(name, (allowed, list))| (name, allowed, list)).collect();
    out.sort_by(|a, b| a.1.cmp(&b.1).then(b.2.len().cmp(&a.2.len())).then(a.0.cmp(&b.0)));
    out
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let policy = load_policy(&args.config)?;
    let forced = args.ingress.as_deref().map(|t| parse_ingress(&policy, t)).transpose()?;
    let at = match args.at.as_deref() {
        None => None,
        Some("now") => Some(wall_clock()),
        Some(text) => Some(parse_at(text)?),
    };
    let router = Router::new(&policy, forced);
    let mut replay = Replay {
        engine: Engine::new(policy),
        router,
        clock: Clock { at, first: None, last_capture: 0, last_mono: 0 },
        last_sweep: 0,
        packets: 0,
        forwarded: 0,
        dropped: 0,
        monitored: 0,
        reasons: HashMap::new(),
        index: HashMap::new(),
        flows: Vec::new(),
        max_flows: args.max_flows,
        omitted: HashMap::new(),
        scratch: Vec::with_capacity(65_536 + 64),
        meta: FrameMeta { checksum_partial: args.checksums_offloaded, ..FrameMeta::default() },
    };
    let files: Vec<FileReport> = args.pcaps.iter().map(|p| replay.file(p)).collect();
    let loaded = replay.engine.loaded();
    let policy = &loaded.policy;
    let name = |r: Reason| policy.reason_name(r).to_string();
    let mut all_reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut drop_reasons: BTreeMap<String, u64> = BTreeMap::new();
    for (r, n) in &replay.reasons {
        *all_reasons.entry(name(*r)).or_default() += n;
        if !r.allowed() {
            *drop_reasons.entry(name(*r)).or_default() += n;
        }
    }
    let mut omitted: BTreeMap<String, u64> = BTreeMap::new();
    for (r, n) in &replay.omitted {
        *omitted.entry(name(*r)).or_default() += n;
    }
    let omitted_packets: u64 = omitted.values().sum();
    let groups = grouped(policy, &replay.flows);
    let denied = replay.flows.iter().filter(|f| !f.reason().allowed()).count();
    let would_drop = replay.flows.iter().filter(|f| f.verdict() == "would drop").count();
    let monitor = policy.mode() == Mode::Monitor;
    let broken = files.iter().any(|f| f.error.is_some());
    if args.json {
        let mut denied_by_reason: BTreeMap<&str, usize> = BTreeMap::new();
        for (reason, allowed, list) in &groups {
            if !allowed {
                denied_by_reason.insert(reason, list.len());
            }
        }
        let files_json: Vec<_> = files
            .iter()
            .map(|f| json!({ "file": f.path, "packets": f.packets, "unsupported_link_type": f.unsupported, "error": f.error }))
            .collect();
        let report = JsonReport {
            mode: policy.mode().as_str(),
            time: match at {
                Some(t) => format!("shifted: first packet at {}", t.to_jst()),
                None => "capture".to_owned(),
            },
            packets: replay.packets,
            forwarded: replay.forwarded,
            dropped: replay.dropped,
            monitored: replay.monitored,
            drop_reasons: &drop_reasons,
            reasons: &all_reasons,
            connections: json!({
                "listed": replay.flows.len(),
                "allowed": replay.flows.len() - denied,
                "denied": denied,
                "would_drop": would_drop,
                "denied_by_reason": denied_by_reason,
            }),
            flows_omitted: json!({
                "max_flows": replay.max_flows,
                "packets": omitted_packets,
                "by_reason": omitted,
            }),
            initiators_forgotten: replay.router.initiators.forgotten,
            flows: FlowList { policy, flows: &replay.flows },
            files: files_json,
        };
        // Streamed: one connection's JSON at a time, never the whole list at once.
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        serde_json::to_writer_pretty(&mut out, &report).context("cannot write the report")?;
        writeln!(out).and_then(|()| out.flush()).context("cannot write the report")?;
    } else {
        print_connections(policy, &groups, replay.flows.len(), denied, would_drop, monitor);
        if omitted_packets > 0 {
            let by: Vec<String> = omitted.iter().map(|(r, n)| format!("{r} {n}")).collect();
            println!(
                "not listed: connections beyond --max-flows {}: {omitted_packets} packets ({}); the \
                 totals below count them",
                replay.max_flows,
                by.join(", ")
            );
        }
        println!();
        for f in &files {
            let extra = if f.unsupported > 0 {
                format!(", {} with an unsupported link type", f.unsupported)
            } else {
                String::new()
            };
            match &f.error {
                Some(e) => println!("{}: {} packets{extra}; stopped: {e}", f.path, f.packets),
                None => println!("{}: {} packets{extra}", f.path, f.packets),
            }
        }
        println!(
            "packets {}  forwarded {}  dropped {}{}",
            replay.packets,
            replay.forwarded,
            replay.dropped,
            if replay.monitored > 0 {
                format!("  (monitor mode: {} would have been dropped)", replay.monitored)
            } else {
                String::new()
            }
        );
        for (reason, n) in &all_reasons {
            println!("  {reason:<40} {n}");
        }
    }
    if broken {
        return Err(UsageError("some captures could not be read to the end (see above)".into()).into());
    }
    Ok(if replay.dropped > 0 { Outcome::No } else { Outcome::Yes })
}

/// The connection table: one block per reason, denied ones first.
fn print_connections(
    policy: &Policy,
    groups: &[(String, bool, Vec<&FlowRecord>)],
    listed: usize,
    denied: usize,
    would_drop: usize,
    monitor: bool,
) {
    let monitor_note =
        if monitor { format!("; monitor mode: {would_drop} would drop") } else { String::new() };
    println!("connections {listed} — denied {denied}, allowed {}{monitor_note}", listed - denied);
    let cells = |f: &FlowRecord| -> [String; 10] {
        let d = detail(policy, f);
        let zones = format!(
            "{} -> {}",
            d.src_zone.as_deref().unwrap_or("(no zone)"),
            d.dst_zone.as_deref().unwrap_or("(no zone)")
        );
        let mut what = d.decided_by;
        if let Some((l, _)) = d.lapsed {
            what = if what.is_empty() { l } else { format!("{l}; {what}") };
        }
        if let Some(found) = &f.finding {
            what = format!("{what}; {}", finding_text(found));
        }
        [
            proto_name(f.proto),
            endpoint(f.src, f.sport, f.proto),
            endpoint(f.dst, f.dport, f.proto),
            zones,
            f.verdict().to_owned(),
            f.first_seen.to_jst(),
            f.last_seen.to_jst(),
            format!("fwd {}", f.forwarded),
            format!("drop {}", f.dropped),
            what,
        ]
    };
    // Two passes (column widths, then lines) so that no table is held in memory.
    let mut widths = [0usize; 10];
    for f in groups.iter().flat_map(|(_, _, list)| list.iter()) {
        for (w, c) in widths.iter_mut().zip(cells(f).iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    for (reason, _, list) in groups {
        let noun = if list.len() == 1 { "connection" } else { "connections" };
        println!("{reason} — {} {noun}", list.len());
        for f in list {
            let cells = cells(f);
            let mut line = String::from("  ");
            for (c, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if c + 1 == cells.len() {
                    line += cell;
                } else if c == 1 {
                    line += &format!("{cell:<w$} -> ");
                } else if c == 5 {
                    line += &format!("{cell} .. ");
                } else {
                    line += &format!("{cell:<w$}  ");
                }
            }
            println!("{}", line.trim_end());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_types_become_ethernet_frames() {
        let ip = [0x45u8, 0, 0, 20];
        let mut scratch = Vec::new();
        let f = to_ethernet(DataLink::RAW, &ip, &mut scratch).unwrap();
        assert_eq!(&f[12..14], &ETHERTYPE_IPV4);
        assert_eq!(&f[14..], &ip);
        let null = [2u8, 0, 0, 0, 0x60, 0, 0, 0];
        let f = to_ethernet(DataLink::NULL, &null, &mut scratch).unwrap();
        assert_eq!(&f[12..14], &ETHERTYPE_IPV6);
        let mut sll = vec![0u8; 16];
        sll[14..16].copy_from_slice(&[0x08, 0x06]);
        let f = to_ethernet(DataLink::LINUX_SLL, &sll, &mut scratch).unwrap();
        assert_eq!(f.len(), 14);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert!(to_ethernet(DataLink::IEEE802_11, &ip, &mut scratch).is_none());
        assert_eq!(to_ethernet(DataLink::LINUX_SLL2, &[1], &mut scratch).map(<[u8]>::len), Some(14));
    }

    #[test]
    fn pcapng_timestamp_units() {
        let us = TsUnit::default();
        assert_eq!(us.nanos(1_362_692_526_939_084), 1_362_692_526_939_084_000);
        let ns = TsUnit { resol: 9, offset_s: 0 };
        assert_eq!(ns.nanos(1_362_692_526_939_084_123), 1_362_692_526_939_084_123);
        let ms = TsUnit { resol: 3, offset_s: 0 };
        assert_eq!(ms.nanos(1_500), 1_500_000_000);
        let ps = TsUnit { resol: 12, offset_s: 0 };
        assert_eq!(ps.nanos(1_000_000_000_000), 1_000_000_000);
        // 2^-10 s: 1024 units are one second
        let bin = TsUnit { resol: 0x80 | 10, offset_s: 0 };
        assert_eq!(bin.nanos(3 * 1024 + 512), 3_500_000_000);
        let shifted = TsUnit { resol: 6, offset_s: 100 };
        assert_eq!(shifted.nanos(1_000_000), 101_000_000_000);
        let absurd = TsUnit { resol: 127, offset_s: 0 };
        assert_eq!(absurd.nanos(u64::MAX), 0);
        assert_eq!(TsUnit { resol: 0, offset_s: 0 }.nanos(u64::MAX), u64::MAX);
    }

    #[test]
    fn initiators_stay_bounded_and_remember_recent_connections() {
        let mut m = Initiators::new(2);
        let a: IpAddr = "198.18.20.5".parse().unwrap();
        let key = |port: u16| ConnKey::new(6, (a, port), (a, 9)).0;
        assert!(m.is_initiator(key(1), true));
        assert!(!m.is_initiator(key(1), false));
        assert!(m.is_initiator(key(2), false));
        // a third connection moves the first two to the older generation; they are
        // still known, and a lookup brings them back
        assert!(m.is_initiator(key(3), true));
        assert!(!m.is_initiator(key(1), false));
        assert!(m.current.len() + m.previous.len() <= 4);
        for port in 10..100 {
            m.is_initiator(key(port), true);
            assert!(m.current.len() <= 2 && m.previous.len() <= 2);
        }
        assert!(m.forgotten > 0);
    }

    #[test]
    fn packets_cross_the_interfaces_of_the_ingress_contract() {
        use sekisho_testkit::flags::{ACK, SYN};
        use sekisho_testkit::{arp, icmp, tcp, udp};
        let policy = sekisho_policy::load_str(include_str!("../../../configs/lab.toml"), "lab.toml").unwrap();
        let port = |name: &str| PortId(policy.ports().iter().position(|p| p.name == name).unwrap() as u16);
        let inside = |name: &str| Some(Ingress { port: port(name), side: Side::Inside });
        let outside = |name: &str| Some(Ingress { port: port(name), side: Side::Outside });
        let mut r = Router::new(&policy, None);
        let mut at = |frame: Vec<u8>| r.crossings(&policy, &frame);
        // between zones: the source zone's inside, then the destination zone's outside
        let out = tcp("198.18.20.5", 40000, "203.0.113.9", 443, SYN, b"");
        assert_eq!(at(out), [inside("lgwan-uplink"), outside("internet-uplink")]);
        let back = tcp("203.0.113.9", 443, "198.18.20.5", 40000, SYN | ACK, b"");
        assert_eq!(at(back), [inside("internet-uplink"), outside("lgwan-uplink")]);
        // within one zone: the initiator (first sender) on inside, the other end on outside
        assert_eq!(at(tcp("198.18.20.5", 1, "198.18.20.6", 22, SYN, b"")), [inside("lgwan-uplink"), None]);
        assert_eq!(
            at(tcp("198.18.20.6", 22, "198.18.20.5", 1, SYN | ACK, b"")),
            [outside("lgwan-uplink"), None]
        );
        assert_eq!(at(tcp("198.18.20.5", 1, "198.18.20.6", 22, ACK, b"")), [inside("lgwan-uplink"), None]);
        // the other end opening its own connection is an initiator too
        assert_eq!(at(udp("198.18.20.6", 5353, "198.18.20.5", 53, b"q")), [inside("lgwan-uplink"), None]);
        // the core router's own packets come from the outside
        assert_eq!(
            at(icmp("198.18.20.1", "198.18.20.5", 3, 4, [0; 4], &[0; 28], 64)),
            [outside("lgwan-uplink"), None]
        );
        // an upstream zone (management) has no port: only the other end's port sees it
        assert_eq!(
            at(tcp("198.18.50.3", 1, "198.18.40.10", 22, SYN, b"")),
            [outside("sanitization-uplink"), None]
        );
        assert_eq!(
            at(tcp("198.18.40.10", 22, "198.18.50.3", 1, SYN | ACK, b"")),
            [inside("sanitization-uplink"), None]
        );
        // what no port would see is judged on the first port's outside
        let first = Some(Ingress { port: PortId(0), side: Side::Outside });
        assert_eq!(at(arp()), [first, None]);
        let mut forced = Router::new(&policy, inside("internet-uplink"));
        assert_eq!(
            forced.crossings(&policy, &tcp("198.18.20.5", 1, "198.18.20.6", 2, SYN, b"")),
            [inside("internet-uplink"), None]
        );
    }

    #[test]
    fn the_clock_shifts_to_at_and_never_runs_back() {
        let mut c = Clock { at: None, first: None, last_capture: 0, last_mono: 0 };
        assert_eq!(c.time(5_000).wall, Timestamp(5_000));
        let t = c.time(4_000);
        assert_eq!((t.mono, t.wall), (5_000, Timestamp(4_000)));
        let mut c = Clock { at: Some(Timestamp(1_000_000)), first: None, last_capture: 0, last_mono: 0 };
        assert_eq!(c.time(5_000).wall, Timestamp(1_000_000));
        assert_eq!(c.time(7_000).wall, Timestamp(1_002_000));
        assert_eq!(c.time(4_000).wall, Timestamp(999_000));
    }
}
