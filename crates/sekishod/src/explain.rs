//! `sekishod explain`: the policy's decision for one connection, and why.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use sekisho_control::{ExceptionRef, Explanation, LapsedRef, ZoneRef};
use sekisho_policy::{Connection, Endpoint, Policy, Reason, ServiceId, Timestamp, ZoneId};

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

pub(crate) fn protocol_number(proto: &str) -> Result<u8, UsageError> {
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

/// The exception that allowed this connection until it expired.
fn lapsed(policy: &Policy, conn: &Connection, now: Timestamp) -> Option<LapsedRef> {
    let id = policy.lapsed_exception(conn, now)?;
    let x = policy.exceptions().get(id.index())?;
    let expired = x.expires.map(|t| t.expiry_text()).unwrap_or_default();
    Some(LapsedRef { name: x.name.clone(), approval: x.approval.clone(), expired })
}

/// A connection to explain, parsed from the command line's or the control request's
/// arguments (`--proto`, `--src`, `--dst`).
pub(crate) struct Query {
    pub proto: String,
    pub conn: Connection,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

/// Parses `--proto`, `--src`, `--dst` as `sekishod explain` takes them.
pub(crate) fn query(proto: &str, src: &str, dst: &str) -> Result<Query, UsageError> {
    let protocol = protocol_number(proto)?;
    let (src_addr, sport) = parse_socket(src, "--src")?;
    let (dst_addr, dport) = parse_socket(dst, "--dst")?;
    if matches!(protocol, 6 | 17) && dport.is_none() {
        return Err(UsageError(format!("--dst {dst:?}: {proto} needs a port (ADDR:PORT)")));
    }
    let conn =
        Connection { protocol, initiator: src_addr, responder: dst_addr, responder_port: dport.unwrap_or(0) };
    Ok(Query { proto: proto.to_ascii_lowercase(), conn, sport, dport })
}

/// The policy's decision on `q` at `now`, and what made it.
pub(crate) fn explain(policy: &Policy, q: &Query, now: Timestamp) -> Explanation {
    let decision = policy.decide(&q.conn, now);
    let zone = |z: Option<ZoneId>| {
        z.and_then(|z| policy.zone(z)).map(|z| ZoneRef {
            name: z.name.clone(),
            kind: z.kind.as_str().to_owned(),
            kind_ja: z.kind.japanese().to_owned(),
        })
    };
    let exception = match decision.reason {
        Reason::Exception(id) => policy.exceptions().get(id.index()).map(|x| ExceptionRef {
            name: x.name.clone(),
            approval: x.approval.clone(),
            expires: x.expires.map(|t| t.expiry_text()),
        }),
        _ => None,
    };
    Explanation {
        proto: q.proto.clone(),
        src: q.conn.initiator.to_string(),
        sport: q.sport,
        dst: q.conn.responder.to_string(),
        dport: q.dport,
        initiator_zone: zone(decision.initiator_zone),
        responder_zone: zone(decision.responder_zone),
        verdict: if decision.allowed() { "allow" } else { "deny" }.to_owned(),
        reason: policy.reason_name(decision.reason).to_string(),
        matched: matched_text(policy, decision.reason),
        valid_until_unix: decision.valid_until.map(|t| t.as_secs()),
        exception,
        lapsed_exception: if decision.allowed() { None } else { lapsed(policy, &q.conn, now) },
        at: now.to_jst(),
        flows: None,
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let policy = load_policy(&args.config)?;
    let q = query(&args.proto, &args.src, &args.dst)?;
    let now = match &args.at {
        Some(at) => parse_at(at)?,
        None => wall_clock(),
    };
    let x = explain(&policy, &q, now);
    if args.json {
        println!("{:#}", serde_json::to_value(&x)?);
    } else {
        print!("{}", sekisho_control::text::explanation(&x));
    }
    Ok(if x.allowed() { Outcome::Yes } else { Outcome::No })
}
