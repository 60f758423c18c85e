//! Tables and lines for people.

use std::fmt::Write as _;

use sekisho_control::*;

/// Left-aligned columns, two spaces apart; numbers right-aligned.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let numeric: Vec<bool> = (0..headers.len())
        .map(|i| !rows.is_empty() && rows.iter().all(|r| r.get(i).is_some_and(|c| c.parse::<u64>().is_ok())))
        .collect();
    let mut s = String::new();
    let line = |s: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut parts = Vec::new();
        for (i, c) in cells.enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            parts.push(if numeric.get(i) == Some(&true) { format!("{c:>w$}") } else { format!("{c:<w$}") });
        }
        let _ = writeln!(s, "{}", parts.join("  ").trim_end());
    };
    line(&mut s, &mut headers.iter().copied());
    for r in rows {
        line(&mut s, &mut r.iter().map(String::as_str));
    }
    s
}

fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

pub(crate) fn status(s: &Status) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "sekishod {} (pid {}), up {}, since {}",
        s.version,
        s.pid,
        duration(s.uptime_s),
        s.started
    );
    let _ = writeln!(o, "mode        {}", s.mode);
    let _ = writeln!(o, "generation  {}{}", s.generation, if s.ready { "" } else { " (not ready)" });
    let differs = match &s.config.file_sha256 {
        Some(f) if *f != s.config.sha256 => " — the file on disk differs from the policy in force",
        Some(_) => "",
        None => " — the file is unreadable now",
    };
    let _ = writeln!(o, "config      {} (sha256 {}){differs}", s.config.path, short(&s.config.sha256));
    if s.config.origin != s.config.path {
        let _ = writeln!(o, "in force    from {}, loaded {}", s.config.origin, s.config.loaded_at);
    } else {
        let _ = writeln!(o, "loaded      {}", s.config.loaded_at);
    }
    if let Some(p) = &s.pending {
        let _ = writeln!(
            o,
            "ON TRIAL    generation {} rolls back to generation {} at {} ({} s left) unless `sekishoctl confirm`",
            p.generation, p.rollback_to, p.deadline, p.remaining_s
        );
    }
    if let Some(r) = &s.last_rollback {
        let who = match (r.automatic, r.uid) {
            (true, _) => "automatic: not confirmed in time".to_owned(),
            (false, Some(uid)) => format!("asked by uid {uid}"),
            (false, None) => "asked".to_owned(),
        };
        let _ = writeln!(
            o,
            "rolled back {} from generation {} to {} ({who})",
            r.at, r.from_generation, r.generation
        );
    }
    let group = |g: &Option<String>| g.clone().unwrap_or_else(|| "-".into());
    let _ = writeln!(
        o,
        "control     {} (admin_group {}, read_group {}; {} connected)",
        s.control.socket,
        group(&s.control.admin_group),
        group(&s.control.read_group),
        s.control.clients
    );
    let _ = writeln!(o);
    let mut rows = Vec::new();
    for p in &s.ports {
        for (side, i) in [("inside", &p.inside), ("outside", &p.outside)] {
            rows.push(vec![
                p.name.clone(),
                p.zone.clone(),
                side.into(),
                i.interface.clone(),
                i.link.clone(),
                i.mtu.to_string(),
                format!("{} ms", i.heartbeat_age_ms),
            ]);
        }
    }
    o + &table(&["PORT", "ZONE", "SIDE", "INTERFACE", "LINK", "MTU", "HEARTBEAT"], &rows)
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

pub(crate) fn stats(s: &Stats) -> String {
    let mut o = format!("mode {}, generation {}\n\n", s.mode, s.generation);
    let mut rows = Vec::new();
    for p in &s.ports {
        for (side, x) in [("inside", &p.inside), ("outside", &p.outside)] {
            rows.push(vec![
                p.name.clone(),
                side.into(),
                x.interface.clone(),
                x.packets.to_string(),
                x.bytes.to_string(),
                x.forwarded.to_string(),
                x.dropped.to_string(),
                x.monitored.to_string(),
                x.truncated.to_string(),
                x.send_errors.to_string(),
                x.kernel_drops.to_string(),
                x.foreign.to_string(),
            ]);
        }
    }
    o += &table(
        &[
            "PORT",
            "SIDE",
            "INTERFACE",
            "PACKETS",
            "BYTES",
            "FORWARDED",
            "DROPPED",
            "MONITORED",
            "TRUNCATED",
            "SEND-ERR",
            "KERNEL-DROP",
            "FOREIGN",
        ],
        &rows,
    );
    let reasons: Vec<Vec<String>> =
        s.reasons.iter().filter(|(_, n)| **n > 0).map(|(r, n)| vec![r.clone(), n.to_string()]).collect();
    o += "\n";
    o += &table(&["REASON", "PACKETS"], &reasons);
    if !s.zone_pairs.is_empty() {
        let rows: Vec<Vec<String>> = s
            .zone_pairs
            .iter()
            .map(|z| {
                vec![
                    z.from.clone(),
                    z.to.clone(),
                    z.flows.to_string(),
                    z.packets.to_string(),
                    z.bytes.to_string(),
                ]
            })
            .collect();
        o += "\nlive flows by zone pair (initiator -> responder)\n";
        o += &table(&["FROM", "TO", "FLOWS", "PACKETS", "BYTES"], &rows);
    }
    if !s.legs.is_empty() {
        let rows: Vec<Vec<String>> = s
            .legs
            .iter()
            .map(|l| {
                vec![
                    l.path.clone(),
                    l.leg.to_string(),
                    l.flows.to_string(),
                    l.packets.to_string(),
                    l.bytes.to_string(),
                ]
            })
            .collect();
        o += "\nlive flows by path leg\n";
        o += &table(&["PATH", "LEG", "FLOWS", "PACKETS", "BYTES"], &rows);
    }
    let counted: Vec<&sekisho_control::LegCounters> = s.leg_counters.iter().filter(|l| l.flows > 0).collect();
    if !counted.is_empty() {
        let rows: Vec<Vec<String>> = counted
            .iter()
            .map(|l| {
                let apps: Vec<String> = l.apps.iter().map(|(a, n)| format!("{a}:{n}")).collect();
                vec![
                    l.path.clone(),
                    l.leg.to_string(),
                    l.flows.to_string(),
                    l.bytes.to_string(),
                    l.mismatches.to_string(),
                    l.not_sanitized.to_string(),
                    if apps.is_empty() { "-".into() } else { apps.join(",") },
                ]
            })
            .collect();
        o += "\npath legs since the policy was loaded\n";
        o += &table(&["PATH", "LEG", "FLOWS", "BYTES", "MISMATCH", "NOT-SANITIZED", "APPS"], &rows);
    }
    let f = &s.flows;
    let _ = writeln!(
        o,
        "\nflow table  {} of {} (inserted {}, evicted {}, expired {}, refused {})",
        f.active, f.capacity, f.inserted, f.evicted, f.expired, f.refused
    );
    let i = &s.inspection;
    let _ = writeln!(
        o,
        "inspection  {} of {} (identified {}, mismatches {}, not sanitized {}, table full {}, lost {})",
        i.active, i.capacity, i.identified, i.mismatches, i.not_sanitized, i.table_full, i.lost
    );
    let m = &s.monitor;
    let _ = writeln!(o, "monitor     {} detections, {} lost, {} blocked", m.detections, m.lost, m.blocked);
    let _ = writeln!(o, "events      {} recorded, {} lost", s.events.recorded, s.events.lost);
    let a = &s.alerts;
    let _ = writeln!(
        o,
        "alerts      {} passed, {} suppressed, {} queue-dropped, {} notices dropped; {} events ({} summaries); \
         event file {} lines, {} errors, {} reopens",
        a.passed,
        a.suppressed,
        a.queue_dropped,
        a.notices_dropped,
        a.events,
        a.summaries,
        a.event_file_written,
        a.event_file_errors,
        a.event_file_reopens
    );
    if !a.targets.is_empty() {
        let rows: Vec<Vec<String>> = a
            .targets
            .iter()
            .map(|t| {
                let mut row = vec![t.url.clone()];
                row.extend(
                    [
                        t.sent,
                        t.send_errors,
                        t.dropped,
                        t.filtered,
                        t.connects,
                        t.connect_failures,
                        t.buffered,
                    ]
                    .map(|n| n.to_string()),
                );
                row
            })
            .collect();
        o += "\n";
        o += &table(
            &[
                "ALERT TARGET",
                "SENT",
                "SEND-ERR",
                "DROPPED",
                "FILTERED",
                "CONNECTS",
                "CONNECT-FAIL",
                "BUFFERED",
            ],
            &rows,
        );
    }
    o
}

pub(crate) fn flows(f: &[Flow]) -> String {
    let rows: Vec<Vec<String>> = f
        .iter()
        .map(|x| {
            vec![
                x.proto.clone(),
                x.src.clone(),
                x.sport.to_string(),
                x.dst.clone(),
                x.dport.to_string(),
                x.state.clone(),
                x.reason.clone(),
                x.packets.to_string(),
                x.bytes.to_string(),
                format!("{}/{}", x.port, x.side),
                x.age_s.to_string(),
                x.idle_s.to_string(),
            ]
        })
        .collect();
    let mut o = table(
        &[
            "PROTO", "SRC", "SPORT", "DST", "DPORT", "STATE", "REASON", "PACKETS", "BYTES", "PORT", "AGE-S",
            "IDLE-S",
        ],
        &rows,
    );
    let _ = writeln!(o, "{} flows", f.len());
    o
}

fn changes(c: &Changes) -> String {
    let mut o = String::new();
    if let Some(m) = &c.mode {
        let _ = writeln!(o, "  mode        {} -> {}", m.from, m.to);
    }
    for (kind, ch) in c.items() {
        for (mark, names) in [("+", &ch.added), ("-", &ch.removed), ("~", &ch.changed)] {
            if !names.is_empty() {
                let _ = writeln!(o, "  {kind:<11} {mark} {}", names.join(", "));
            }
        }
    }
    if !c.sections.is_empty() {
        let _ = writeln!(o, "  sections    ~ {}", c.sections.join(", "));
    }
    if o.is_empty() {
        o = "  (nothing)\n".into();
    }
    o
}

fn cut(c: &Cut) -> String {
    if c.total == 0 {
        return "no live flow".into();
    }
    let by: Vec<String> = c.by_reason.iter().map(|(r, n)| format!("{n} {r}")).collect();
    format!("{} live flows ({})", c.total, by.join(", "))
}

pub(crate) fn check(r: &CheckReport) -> String {
    let mut o = String::new();
    for e in &r.errors {
        let _ = writeln!(o, "{}: {e}", r.origin);
    }
    for w in &r.warnings {
        let _ = writeln!(o, "{}: warning: {w}", r.origin);
    }
    if !r.valid {
        let _ = writeln!(o, "{}: does not load — {} problems", r.origin, r.errors.len());
        return o;
    }
    let _ = writeln!(o, "{}: loads — {}", r.origin, r.summary.clone().unwrap_or_default());
    if let Some(why) = &r.restart_needed {
        let _ = writeln!(o, "reload would be refused: {why}");
    }
    if let Some(c) = &r.changes {
        let _ = write!(o, "against the policy in force:\n{}", changes(c));
    }
    if let Some(c) = &r.cut {
        let _ = writeln!(o, "would cut   {}", cut(c));
    }
    o
}

pub(crate) fn reload(r: &ReloadReport) -> String {
    let mut o = format!(
        "generation {} (was {}) from {} (sha256 {})\nchanges:\n{}cut         {} (at their next packet)\n",
        r.generation,
        r.previous_generation,
        r.origin,
        short(&r.sha256),
        changes(&r.changes),
        cut(&r.cut)
    );
    for w in &r.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    if let Some(t) = &r.confirm_by {
        let _ = writeln!(o, "ON TRIAL: rolls back by itself at {t} unless `sekishoctl confirm`");
    }
    o
}

pub(crate) fn rolled_back(r: &RolledBack) -> String {
    format!(
        "rolled back from generation {} to the previous policy, now generation {}\nchanges:\n{}cut         {}\n",
        r.from_generation,
        r.generation,
        changes(&r.changes),
        cut(&r.cut)
    )
}

pub(crate) fn mode(m: &ModeReport) -> String {
    format!("mode {} (was {}), generation {}; cut {}\n", m.mode, m.previous, m.generation, cut(&m.cut))
}

pub(crate) fn event(e: &Event) -> String {
    match &e.body {
        EventBody::Verdict(v) => {
            let what = match (&v.proto, &v.src, &v.dst) {
                (Some(p), Some(s), Some(d)) => {
                    format!("{p} {s}:{} -> {d}:{}", v.sport.unwrap_or(0), v.dport.unwrap_or(0))
                }
                _ => "non-IP frame".into(),
            };
            let verb = if v.monitored { "would drop" } else { "dropped" };
            format!("{:>8} {} {verb} {what} at {}/{}: {}\n", e.seq, e.at, v.port, v.side, v.reason)
        }
        EventBody::Change { change: c } => format!("{:>8} {} {}\n", e.seq, e.at, history_line(c)),
        EventBody::Lost { count } => {
            format!("{:>8} {} lost {count} events (the reader was too slow)\n", e.seq, e.at)
        }
    }
}

fn history_line(c: &Change) -> String {
    let who = match (c.uid, c.pid) {
        (Some(u), Some(p)) => format!("uid {u} pid {p}"),
        (Some(u), None) => format!("uid {u}"),
        _ => "sekishod".into(),
    };
    let result = if c.ok { "" } else { " REFUSED" };
    format!("{}{result} by {who} (generation {}): {}", c.action, c.generation, c.detail)
}

pub(crate) fn history(h: &[Change]) -> String {
    h.iter().map(|c| format!("{} {}\n", c.at, history_line(c))).collect()
}
