//! `sekishod replay`: captures through the engine, offline — the what-if tool an operator
//! runs before deploying a policy change.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, TsResolution};
use sekisho_engine::{Action, Engine, Ingress, Now, Side, Verdict};
use sekisho_flow::{FlowKey, Socket};
use sekisho_policy::{Policy, PortId, Reason, Timestamp};
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
    /// instead of crossing the inside of its source zone's port and the outside of its
    /// destination zone's port.
    #[arg(long, value_name = "PORT:SIDE")]
    ingress: Option<String>,
    /// Replay as if the first packet arrived at this time (a date or RFC 3339) instead of
    /// now; later packets keep their spacing. Exceptions expire by it.
    #[arg(long)]
    at: Option<String>,
    /// The captures (pcap or pcapng; Ethernet, raw IP, Linux cooked and BSD loopback).
    #[arg(required = true)]
    pcaps: Vec<PathBuf>,
}

/// One flow as the replay saw it.
struct FlowRecord {
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    packets: u64,
    forwarded: u64,
    dropped: u64,
    first_reason: Reason,
    drop_reason: Option<Reason>,
}

impl FlowRecord {
    fn reason(&self) -> Reason {
        self.drop_reason.unwrap_or(self.first_reason)
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
    forced: Option<Ingress>,
    base: Timestamp,
    first_ts: Option<Duration>,
    last_sweep: u64,
    packets: u64,
    forwarded: u64,
    dropped: u64,
    monitored: u64,
    reasons: HashMap<Reason, u64>,
    index: HashMap<FlowKey, usize>,
    flows: Vec<FlowRecord>,
    scratch: Vec<u8>,
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

/// The interfaces a packet from `src` to `dst` crosses, in order (DESIGN.md section 1: a
/// packet leaving segment A for segment B crosses port A and then port B): the inside of
/// the port of the source's zone, then the outside of the port of the destination's zone
/// when that is another port. With neither zone on a port: the first port's outside.
fn natural_path(policy: &Policy, addrs: Option<(IpAddr, IpAddr)>) -> [Option<Ingress>; 2] {
    let port_of = |a: IpAddr| {
        let zone = policy.zone_of(a)?;
        policy.ports().iter().position(|p| p.zone == zone).map(|i| PortId(i as u16))
    };
    let (src, dst) = match addrs {
        Some((s, d)) => (port_of(s), port_of(d)),
        None => (None, None),
    };
    let first = src.map(|port| Ingress { port, side: Side::Inside });
    let second = dst.filter(|d| Some(*d) != src).map(|port| Ingress { port, side: Side::Outside });
    match (first, second) {
        (None, None) => [Some(Ingress { port: PortId(0), side: Side::Outside }), None],
        pair => [pair.0, pair.1],
    }
}

impl Replay {
    fn packet(&mut self, linktype: DataLink, ts: Duration, data: &[u8], report: &mut FileReport) {
        let mut scratch = std::mem::take(&mut self.scratch);
        if let Some(frame) = to_ethernet(linktype, data, &mut scratch) {
            report.packets += 1;
            self.frame(ts, frame);
        } else {
            report.unsupported += 1;
        }
        self.scratch = scratch;
    }

    fn frame(&mut self, ts: Duration, frame: &[u8]) {
        let first = *self.first_ts.get_or_insert(ts);
        let offset = u64::try_from(ts.saturating_sub(first).as_nanos()).unwrap_or(u64::MAX);
        let now = Timestamp(self.base.0.saturating_add(offset));
        if now.0.saturating_sub(self.last_sweep) >= SWEEP_EVERY_NS {
            self.engine.sweep(now.0);
            self.last_sweep = now.0;
        }
        let path = match self.forced {
            Some(i) => [Some(i), None],
            None => {
                let addrs = match sekisho_wire::parse_ethernet(frame).map(|p| p.l3) {
                    Ok(sekisho_wire::L3::Ip(ip)) => Some((ip.src, ip.dst)),
                    _ => None,
                };
                natural_path(&self.engine.loaded().policy, addrs)
            }
        };
        // The packet passes when every port it crosses passes it; the first refusal is
        // the one reported.
        let mut verdict: Option<Verdict> = None;
        for ingress in path.into_iter().flatten() {
            let v = self.engine.process(Now::at(now), ingress, frame);
            let refused = !v.reason.allowed();
            if verdict.is_none() || refused {
                verdict = Some(v);
            }
            if refused {
                break;
            }
        }
        if let Some(v) = verdict {
            self.record(&v);
        }
    }

    fn record(&mut self, v: &Verdict) {
        self.packets += 1;
        *self.reasons.entry(v.reason).or_default() += 1;
        match v.action {
            Action::Forward => self.forwarded += 1,
            Action::Drop => self.dropped += 1,
        }
        self.monitored += u64::from(v.monitored);
        let Some(p) = v.packet else { return };
        let (key, _) = FlowKey::new(
            0,
            0,
            p.protocol,
            Socket { addr: p.src, port: p.sport },
            Socket { addr: p.dst, port: p.dport },
        );
        let next = self.flows.len();
        let i = *self.index.entry(key).or_insert(next);
        if i == next {
            self.flows.push(FlowRecord {
                proto: p.protocol,
                src: p.src,
                dst: p.dst,
                sport: p.sport,
                dport: p.dport,
                packets: 0,
                forwarded: 0,
                dropped: 0,
                first_reason: v.reason,
                drop_reason: None,
            });
        }
        let f = &mut self.flows[i];
        f.packets += 1;
        let denied = !v.reason.allowed();
        if denied && f.drop_reason.is_none() {
            f.drop_reason = Some(v.reason);
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
            // Link types by interface id, in the order the interface blocks appear.
            let mut linktypes: Vec<DataLink> = Vec::new();
            let unknown = DataLink::Unknown(u32::MAX);
            while let Some(block) = reader.next_block() {
                let block = block.with_context(|| format!("{}: bad pcapng block", path.display()))?;
                match block {
                    Block::SectionHeader(_) => linktypes.clear(),
                    Block::InterfaceDescription(idb) => linktypes.push(idb.linktype),
                    Block::EnhancedPacket(epb) => {
                        let linktype = linktypes.get(epb.interface_id as usize).copied().unwrap_or(unknown);
                        self.packet(linktype, epb.timestamp, &epb.data, report);
                    }
                    Block::SimplePacket(spb) => {
                        let linktype = linktypes.first().copied().unwrap_or(unknown);
                        let ts = self.first_ts.unwrap_or_default();
                        self.packet(linktype, ts, &spb.data, report);
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
                let ts = Duration::from_secs(u64::from(packet.ts_sec))
                    + Duration::from_nanos(u64::from(packet.ts_frac) * frac_ns);
                self.packet(header.datalink, ts, &packet.data, report);
            }
        }
        Ok(())
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
    let has_ports = matches!(proto, 6 | 17);
    match (addr, has_ports) {
        (IpAddr::V6(a), true) => format!("[{a}]:{port}"),
        (a, true) => format!("{a}:{port}"),
        (a, false) => a.to_string(),
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let policy = load_policy(&args.config)?;
    let forced = args.ingress.as_deref().map(|t| parse_ingress(&policy, t)).transpose()?;
    let base = match &args.at {
        Some(at) => parse_at(at)?,
        None => wall_clock(),
    };
    let mut replay = Replay {
        engine: Engine::new(policy),
        forced,
        base,
        first_ts: None,
        last_sweep: base.0,
        packets: 0,
        forwarded: 0,
        dropped: 0,
        monitored: 0,
        reasons: HashMap::new(),
        index: HashMap::new(),
        flows: Vec::new(),
        scratch: Vec::with_capacity(65_536 + 64),
    };
    let files: Vec<FileReport> = args.pcaps.iter().map(|p| replay.file(p)).collect();
    let loaded = replay.engine.loaded();
    let name = |r: Reason| loaded.policy.reason_name(r).to_string();
    let mut all_reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut drop_reasons: BTreeMap<String, u64> = BTreeMap::new();
    for (r, n) in &replay.reasons {
        *all_reasons.entry(name(*r)).or_default() += n;
        if !r.allowed() {
            *drop_reasons.entry(name(*r)).or_default() += n;
        }
    }
    let broken = files.iter().any(|f| f.error.is_some());
    if args.json {
        let flows: Vec<_> = replay
            .flows
            .iter()
            .map(|f| {
                json!({
                    "proto": proto_name(f.proto),
                    "src": f.src.to_string(),
                    "dst": f.dst.to_string(),
                    "sport": f.sport,
                    "dport": f.dport,
                    "packets": f.packets,
                    "forwarded": f.forwarded,
                    "dropped": f.dropped,
                    "verdict": if f.reason().allowed() { "allow" } else { "deny" },
                    "reason": name(f.reason()),
                })
            })
            .collect();
        let files_json: Vec<_> = files
            .iter()
            .map(|f| json!({ "file": f.path, "packets": f.packets, "unsupported_link_type": f.unsupported, "error": f.error }))
            .collect();
        let doc = json!({
            "mode": loaded.policy.mode().as_str(),
            "packets": replay.packets,
            "forwarded": replay.forwarded,
            "dropped": replay.dropped,
            "monitored": replay.monitored,
            "drop_reasons": drop_reasons,
            "reasons": all_reasons,
            "flows": flows,
            "files": files_json,
        });
        println!("{doc:#}");
    } else {
        println!(
            "{:<7} {:<46} {:<46} {:>7} {:>7}  {:<7} reason",
            "proto", "src", "dst", "fwd", "drop", "verdict"
        );
        for f in &replay.flows {
            println!(
                "{:<7} {:<46} {:<46} {:>7} {:>7}  {:<7} {}",
                proto_name(f.proto),
                endpoint(f.src, f.sport, f.proto),
                endpoint(f.dst, f.dport, f.proto),
                f.forwarded,
                f.dropped,
                if f.reason().allowed() { "allow" } else { "deny" },
                name(f.reason()),
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
}
