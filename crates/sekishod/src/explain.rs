//! `sekishod explain`: the policy's decision for one connection, and why.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use sekisho_policy::{Connection, Endpoint, Policy, Reason, ServiceId, ZoneId};
use serde_json::json;

use crate::{load_policy, parse_at, wall_clock, Outcome, UsageError};

/// Arguments of `sekishod explain`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The configuration file (TOML).
    #[arg(short, long)]
    config: PathBuf,
    /// tcp, udp, icmp, icmpv6, or an IP protocol number.
    #[arg(long)]
    proto: String,
    /// The initiator: ADDR or ADDR:PORT ([v6]:port for IPv6).
    #[arg(long)]
    src: String,
    /// The responder: ADDR:PORT (ADDR alone for protocols without ports).
    #[arg(long)]
    dst: String,
    /// Decide as of this time (a date or RFC 3339) instead of now: exceptions expire.
    #[arg(long)]
    at: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn protocol_number(proto: &str) -> Result<u8, UsageError> {
    match proto {
        "tcp" => Ok(6),
        "udp" => Ok(17),
        "icmp" => Ok(1),
        "icmpv6" => Ok(58),
        other => other.parse().map_err(|_| {
            UsageError(format!("--proto {other:?}: expected tcp, udp, icmp, icmpv6 or a protocol number"))
        }),
    }
}

/// Parses `ADDR`, `ADDR:PORT` or `[V6]:PORT`.
fn parse_socket(text: &str, flag: &str) -> Result<(IpAddr, Option<u16>), UsageError> {
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Ok((sa.ip(), Some(sa.port())));
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|a| (a, None))
        .map_err(|_| UsageError(format!("{flag} {text:?}: expected ADDR, ADDR:PORT or [IPV6]:PORT")))
}

fn service_text(policy: &Policy, id: ServiceId) -> String {
    let Some(s) = policy.service(id) else { return "?".into() };
    let ports: Vec<String> = s.ports.iter().map(|p| p.to_string()).collect();
    let ports = if ports.is_empty() { String::new() } else { format!(" {}", ports.join(",")) };
    format!("{} ({}{}, app {})", s.name, s.proto.as_str(), ports, s.app.as_str())
}

/// What decided: the matching item, or the invariant, in plain words.
fn matched_text(policy: &Policy, reason: Reason) -> String {
    let item = |from: &Endpoint, to: &Endpoint, service: ServiceId| {
        format!(
            "{} -> {} service {}",
            policy.endpoint_name(from),
            policy.endpoint_name(to),
            service_text(policy, service)
        )
    };
    let path = |id: sekisho_policy::PathId| policy.paths().get(usize::from(id.0));
    match reason {
        Reason::IntraZone => "both ends are in the same zone".into(),
        Reason::Path { path: id, leg } => {
            match path(id).and_then(|p| Some((p, p.legs.get(usize::from(leg).checked_sub(1)?)?))) {
                Some((p, l)) => format!(
                    "path \"{}\" ({}) leg {leg}: {}",
                    p.name,
                    p.method.as_str(),
                    item(&l.from, &l.to, l.service)
                ),
                None => "?".into(),
            }
        }
        Reason::Exception(id) => match policy.exceptions().get(usize::from(id.0)) {
            Some(e) => format!(
                "exception \"{}\" (approval {}{}): {}",
                e.name,
                e.approval,
                if e.expires.is_some() { ", expires" } else { "" },
                item(&e.from, &e.to, e.service)
            ),
            None => "?".into(),
        },
        Reason::Rule(id) => match policy.rules().get(usize::from(id.0)) {
            Some(r) => format!("rule \"{}\": {}", r.name, item(&r.from, &r.to, r.service)),
            None => "?".into(),
        },
        Reason::MynumberIsolation => {
            "invariant: マイナンバー利用事務系 (mynumber) does not communicate with other zones; \
             only an approved [[exception]] to lgwan crosses"
                .into()
        }
        Reason::UnsanitizedCrossing => "invariant: LGWAN接続系 and インターネット接続系 meet only through a \
             無害化通信 [[path]] leg; none matches"
            .into(),
        _ => "default deny: no path leg, exception or rule matches".into(),
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let policy = load_policy(&args.config)?;
    let protocol = protocol_number(&args.proto)?;
    let (src, _sport) = parse_socket(&args.src, "--src")?;
    let (dst, dport) = parse_socket(&args.dst, "--dst")?;
    let has_ports = matches!(protocol, 6 | 17);
    if has_ports && dport.is_none() {
        return Err(
            UsageError(format!("--dst {:?}: {} needs a port (ADDR:PORT)", args.dst, args.proto)).into()
        );
    }
    let now = match &args.at {
        Some(at) => parse_at(at)?,
        None => wall_clock(),
    };
    let conn = Connection { protocol, initiator: src, responder: dst, responder_port: dport.unwrap_or(0) };
    let decision = policy.decide(&conn, now);
    let zone = |z: Option<ZoneId>| {
        z.and_then(|z| policy.zone(z)).map(|z| (z.name.clone(), z.kind.as_str(), z.kind.japanese()))
    };
    let (iz, rz) = (zone(decision.initiator_zone), zone(decision.responder_zone));
    let reason = policy.reason_name(decision.reason).to_string();
    let verdict = if decision.allowed() { "allow" } else { "deny" };
    let matched = matched_text(&policy, decision.reason);
    if args.json {
        let zone_json = |z: &Option<(String, &str, &str)>| match z {
            Some((name, kind, _)) => json!({ "name": name, "kind": kind }),
            None => serde_json::Value::Null,
        };
        let doc = json!({
            "proto": args.proto,
            "src": src.to_string(),
            "dst": dst.to_string(),
            "dport": dport,
            "initiator_zone": zone_json(&iz),
            "responder_zone": zone_json(&rz),
            "verdict": verdict,
            "reason": reason,
            "matched": matched,
            "valid_until_unix": decision.valid_until.map(|t| t.as_secs()),
        });
        println!("{doc:#}");
    } else {
        let zone_line = |a: IpAddr, z: &Option<(String, &str, &str)>| match z {
            Some((name, kind, ja)) => format!("{a}  zone \"{name}\" ({kind}, {ja})"),
            None => format!("{a}  (no zone holds this address)"),
        };
        let port = dport.map_or(String::new(), |p| format!(":{p}"));
        println!("connection  {} {src} -> {dst}{port}", args.proto);
        println!("initiator   {}", zone_line(src, &iz));
        println!("responder   {}", zone_line(dst, &rz));
        println!("verdict     {verdict}");
        println!("reason      {reason}");
        println!("decided by  {matched}");
    }
    Ok(if decision.allowed() { Outcome::Yes } else { Outcome::No })
}
