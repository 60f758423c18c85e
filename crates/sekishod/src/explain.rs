//! `sekishod explain`: the policy's decision for one connection, and why.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use sekisho_policy::{Connection, Endpoint, Policy, Reason, ServiceId, Timestamp, ZoneId};
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
    match proto.to_ascii_lowercase().as_str() {
        "tcp" => Ok(6),
        "udp" => Ok(17),
        "icmp" => Ok(1),
        "icmpv6" => Ok(58),
        _ => proto.parse().map_err(|_| {
            UsageError(format!("--proto {proto:?}: expected tcp, udp, icmp, icmpv6 or a protocol number"))
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
                "exception \"{}\" (approval {}, {}): {}",
                e.name,
                e.approval,
                match e.expires {
                    Some(t) => format!("valid through {}", t.expiry_text()),
                    None => "no expiry".to_owned(),
                },
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

/// `ADDR`, `ADDR:PORT`, or `[V6]:PORT`.
pub(crate) fn socket_text(addr: IpAddr, port: Option<u16>) -> String {
    match (addr, port) {
        (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    }
}

/// The exception that allowed this connection until it expired, in words and as JSON.
fn lapsed(policy: &Policy, conn: &Connection, now: Timestamp) -> Option<(String, serde_json::Value)> {
    let id = policy.lapsed_exception(conn, now)?;
    let x = policy.exceptions().get(id.index())?;
    let expired = x.expires.map(|t| t.expiry_text()).unwrap_or_default();
    let text = format!(
        "exception \"{}\" (approval {}) allowed this connection until it expired ({expired})",
        x.name, x.approval
    );
    let doc = json!({ "name": x.name, "approval": x.approval, "expired": expired });
    Some((text, doc))
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let policy = load_policy(&args.config)?;
    let protocol = protocol_number(&args.proto)?;
    let (src, sport) = parse_socket(&args.src, "--src")?;
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
    let lapsed = if decision.allowed() { None } else { lapsed(&policy, &conn, now) };
    let exception = match decision.reason {
        Reason::Exception(id) => policy.exceptions().get(id.index()).map(|x| {
            json!({
                "name": x.name,
                "approval": x.approval,
                "expires": x.expires.map(|t| t.expiry_text()),
            })
        }),
        _ => None,
    };
    if args.json {
        let zone_json = |z: &Option<(String, &str, &str)>| match z {
            Some((name, kind, _)) => json!({ "name": name, "kind": kind }),
            None => serde_json::Value::Null,
        };
        let doc = json!({
            "proto": args.proto.to_ascii_lowercase(),
            "src": src.to_string(),
            "dst": dst.to_string(),
            "dport": dport,
            "initiator_zone": zone_json(&iz),
            "responder_zone": zone_json(&rz),
            "verdict": verdict,
            "reason": reason,
            "matched": matched,
            "valid_until_unix": decision.valid_until.map(|t| t.as_secs()),
            "exception": exception,
            "lapsed_exception": lapsed.as_ref().map(|l| &l.1),
            "at": now.to_jst(),
        });
        println!("{doc:#}");
    } else {
        let zone_line = |a: IpAddr, z: &Option<(String, &str, &str)>| match z {
            Some((name, kind, ja)) => format!("{a}  zone \"{name}\" ({kind}, {ja})"),
            None => format!("{a}  (no zone holds this address)"),
        };
        println!(
            "connection  {} {} -> {}",
            args.proto.to_ascii_lowercase(),
            socket_text(src, sport),
            socket_text(dst, dport)
        );
        println!("initiator   {}", zone_line(src, &iz));
        println!("responder   {}", zone_line(dst, &rz));
        println!("verdict     {verdict}");
        println!("reason      {reason}");
        println!("decided by  {matched}");
        if let Some((text, _)) = &lapsed {
            println!("lapsed      {text}");
        }
    }
    Ok(if decision.allowed() { Outcome::Yes } else { Outcome::No })
}
