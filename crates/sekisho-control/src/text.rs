//! Text for people that both the daemon's offline tools and `sekishoctl` print.

use std::fmt::Write as _;

use crate::proto::{Explanation, ZoneRef};

/// `ADDR`, `ADDR:PORT`, or `[V6]:PORT`.
pub fn socket_text(addr: &str, port: Option<u16>) -> String {
    match port {
        Some(p) if addr.contains(':') => format!("[{addr}]:{p}"),
        Some(p) => format!("{addr}:{p}"),
        None => addr.to_owned(),
    }
}

fn zone_line(addr: &str, zone: &Option<ZoneRef>) -> String {
    match zone {
        Some(z) => format!("{addr}  zone \"{}\" ({}, {})", z.name, z.kind, z.kind_ja),
        None => format!("{addr}  (no zone holds this address)"),
    }
}

/// The explanation as `sekishod explain` and `sekishoctl explain` print it.
pub fn explanation(x: &Explanation) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "connection  {} {} -> {}",
        x.proto,
        socket_text(&x.src, x.sport),
        socket_text(&x.dst, x.dport)
    );
    let _ = writeln!(s, "initiator   {}", zone_line(&x.src, &x.initiator_zone));
    let _ = writeln!(s, "responder   {}", zone_line(&x.dst, &x.responder_zone));
    let _ = writeln!(s, "verdict     {}", x.verdict);
    let _ = writeln!(s, "reason      {}", x.reason);
    let _ = writeln!(s, "decided by  {}", x.matched);
    if let Some(l) = &x.lapsed_exception {
        let _ = writeln!(
            s,
            "lapsed      exception \"{}\" (approval {}) allowed this connection until it expired ({})",
            l.name, l.approval, l.expired
        );
    }
    if let Some(flows) = &x.flows {
        if flows.is_empty() {
            let _ = writeln!(s, "flows       none live");
        }
        for f in flows {
            let _ = writeln!(
                s,
                "flow        port {} ({}) {}:{} -> {}:{} {} {} packets {} bytes, {}",
                f.port, f.side, f.src, f.sport, f.dst, f.dport, f.state, f.packets, f.bytes, f.reason
            );
        }
    }
    s
}
