//! What a new policy changes against the one in force, item by item and by name (ids
//! shift when items are added or moved, so each item is compared in the words of the
//! configuration: zone and service names, endpoints as written).

use std::collections::BTreeMap;

use sekisho_control::{Changes, ItemChanges, ModeChange};
use sekisho_policy::{Endpoint, Policy, ServiceId};

fn endpoint(p: &Policy, e: &Endpoint) -> String {
    p.endpoint_name(e).to_string()
}

fn service(p: &Policy, id: ServiceId) -> String {
    p.service(id).map_or_else(|| format!("#{}", id.0), |s| s.name.clone())
}

/// Each item of one kind as (name, canonical text).
type Items = BTreeMap<String, String>;

fn compare(old: &Items, new: &Items) -> ItemChanges {
    let mut c = ItemChanges::default();
    for (name, text) in new {
        match old.get(name) {
            None => c.added.push(name.clone()),
            Some(t) if t != text => c.changed.push(name.clone()),
            Some(_) => {}
        }
    }
    c.removed = old.keys().filter(|n| !new.contains_key(*n)).cloned().collect();
    c
}

fn zones(p: &Policy) -> Items {
    p.zones()
        .iter()
        .map(|z| (z.name.clone(), format!("{} {:?} upstream={}", z.kind.as_str(), z.prefixes, z.upstream)))
        .collect()
}

fn ports(p: &Policy) -> Items {
    p.ports()
        .iter()
        .map(|x| {
            let zone = p.zone(x.zone).map_or("?", |z| z.name.as_str());
            let text = format!(
                "{zone} {} {} vlans={:?} untagged={} routers={:?}",
                x.inside, x.outside, x.vlans, x.untagged, x.routers
            );
            (x.name.clone(), text)
        })
        .collect()
}

fn services(p: &Policy) -> Items {
    p.services()
        .iter()
        .map(|s| (s.name.clone(), format!("{} {:?} {}", s.proto.as_str(), s.ports, s.app.as_str())))
        .collect()
}

fn paths(p: &Policy) -> Items {
    p.paths().iter().map(|x| (x.name.clone(), x.method.as_str().to_owned())).collect()
}

fn legs(p: &Policy) -> Items {
    let mut out = Items::new();
    for x in p.paths() {
        for (i, l) in x.legs.iter().enumerate() {
            let text =
                format!("{} -> {} {}", endpoint(p, &l.from), endpoint(p, &l.to), service(p, l.service));
            out.insert(format!("{}/{}", x.name, i + 1), text);
        }
    }
    out
}

fn exceptions(p: &Policy) -> Items {
    p.exceptions()
        .iter()
        .map(|x| {
            let text = format!(
                "{} -> {} {} approval={} expires={:?}",
                endpoint(p, &x.from),
                endpoint(p, &x.to),
                service(p, x.service),
                x.approval,
                x.expires.map(|t| t.0)
            );
            (x.name.clone(), text)
        })
        .collect()
}

fn rules(p: &Policy) -> Items {
    p.rules()
        .iter()
        .map(|x| {
            let text =
                format!("{} -> {} {}", endpoint(p, &x.from), endpoint(p, &x.to), service(p, x.service));
            (x.name.clone(), text)
        })
        .collect()
}

/// What `new` changes against `old`.
pub(crate) fn changes(old: &Policy, new: &Policy) -> Changes {
    let mut sections = Vec::new();
    if old.control() != new.control() {
        sections.push("[control]".to_owned());
    }
    if old.allow_ethertypes() != new.allow_ethertypes() {
        sections.push("[link]".to_owned());
    }
    if old.alert_targets() != new.alert_targets() || old.alert_event_file() != new.alert_event_file() {
        sections.push("[alert]".to_owned());
    }
    Changes {
        mode: (old.mode() != new.mode())
            .then(|| ModeChange { from: old.mode().as_str().into(), to: new.mode().as_str().into() }),
        zones: compare(&zones(old), &zones(new)),
        ports: compare(&ports(old), &ports(new)),
        services: compare(&services(old), &services(new)),
        paths: compare(&paths(old), &paths(new)),
        legs: compare(&legs(old), &legs(new)),
        exceptions: compare(&exceptions(old), &exceptions(new)),
        rules: compare(&rules(old), &rules(new)),
        sections,
    }
}

/// Why `new` cannot replace `old` without a restart, if it cannot: the ports'
/// names and interfaces, the `[flow]`, `[inspect]` and `[monitor]` sections, `[daemon]
/// io` and `workers`, the control socket and `[alert]` (collectors and event file) are
/// fixed at start.
pub(crate) fn restart_needed(old: &Policy, new: &Policy) -> Option<String> {
    let key = |p: &Policy| -> Vec<(String, String, String)> {
        p.ports().iter().map(|x| (x.name.clone(), x.inside.clone(), x.outside.clone())).collect()
    };
    if key(old) != key(new) {
        return Some(
            "the [[port]] list (names or interfaces) changed; ports are opened at start: restart sekishod \
             to apply it (systemctl restart sekishod)"
                .into(),
        );
    }
    if old.flow() != new.flow() {
        return Some(
            "the [flow] section changed; the flow table is sized at start: restart sekishod to apply it"
                .into(),
        );
    }
    for (section, changed) in
        [("inspect", old.inspect() != new.inspect()), ("monitor", old.monitor() != new.monitor())]
    {
        if changed {
            return Some(format!(
                "the [{section}] section changed; its tables are sized at start: restart sekishod to apply it"
            ));
        }
    }
    if old.io() != new.io() || old.workers() != new.workers() {
        return Some(format!(
            "[daemon] io or workers changed ({} with {} workers -> {} with {}); the data plane is built at \
             start: restart sekishod to apply it",
            old.io().as_str(),
            old.workers(),
            new.io().as_str(),
            new.workers()
        ));
    }
    if old.control_socket() != new.control_socket() {
        return Some(format!(
            "[daemon] control_socket changed ({} -> {}); the socket is opened at start: restart sekishod \
             to apply it",
            old.control_socket(),
            new.control_socket()
        ));
    }
    if old.alert_targets() != new.alert_targets() || old.alert_event_file() != new.alert_event_file() {
        return Some(
            "[alert] changed (its [[alert.target]] collectors or event_file); the alert threads and the \
             event file are opened at start: restart sekishod to apply it"
                .into(),
        );
    }
    None
}

/// One line per change, for logs and the history: `rules: +web -old ~mgmt; mode enforce -> monitor`.
pub(crate) fn summary(c: &Changes) -> String {
    let mut parts = Vec::new();
    if let Some(m) = &c.mode {
        parts.push(format!("mode {} -> {}", m.from, m.to));
    }
    for (kind, ch) in c.items() {
        if ch.is_empty() {
            continue;
        }
        let mut words = Vec::new();
        words.extend(ch.added.iter().map(|n| format!("+{n}")));
        words.extend(ch.removed.iter().map(|n| format!("-{n}")));
        words.extend(ch.changed.iter().map(|n| format!("~{n}")));
        parts.push(format!("{kind}: {}", words.join(" ")));
    }
    if !c.sections.is_empty() {
        parts.push(format!("sections: {}", c.sections.join(" ")));
    }
    if parts.is_empty() {
        "no change".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[[zone]]
name = "lgwan"
kind = "lgwan"
prefixes = ["198.18.20.0/24"]
[[zone]]
name = "sanitization"
kind = "sanitization"
prefixes = ["198.18.40.0/24"]
[[zone]]
name = "internet"
kind = "internet"
prefixes = ["0.0.0.0/0"]
upstream = true
[[port]]
name = "lg"
zone = "lgwan"
inside = "lg-in"
outside = "lg-out"
[[port]]
name = "sz"
zone = "sanitization"
inside = "sz-in"
outside = "sz-out"
[[service]]
name = "https"
proto = "tcp"
ports = [443]
app = "tls"
[[path]]
name = "files"
method = "file-sanitize"
  [[path.leg]]
  from = "zone:lgwan"
  to = "198.18.40.20"
  service = "https"
"#;

    fn load(text: &str) -> Policy {
        sekisho_policy::load_str(text, "t").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn changes_by_name() {
        let old = load(BASE);
        assert!(changes(&old, &old).is_empty());
        let new = load(&format!(
            "[daemon]\nmode = \"monitor\"\n{}\n  [[path.leg]]\n  from = \"zone:internet\"\n  to = \"198.18.40.20\"\n  service = \"https\"\n",
            BASE.replace("198.18.40.20\"\n  service", "198.18.40.21\"\n  service")
        ));
        let c = changes(&old, &new);
        assert_eq!(c.legs.changed, ["files/1"]);
        assert_eq!(c.legs.added, ["files/2"]);
        assert_eq!(c.mode.as_ref().map(|m| m.to.as_str()), Some("monitor"));
        assert!(c.rules.is_empty() && c.zones.is_empty());
        assert_eq!(summary(&c), "mode enforce -> monitor; legs: +files/2 ~files/1");
        assert!(restart_needed(&old, &new).is_none());
        let moved = load(&BASE.replace("\"lg-in\"", "\"lg-in2\""));
        assert!(restart_needed(&old, &moved).unwrap().contains("restart sekishod"));
        let flow = load(&format!("[flow]\ncapacity = 10\n{BASE}"));
        assert!(restart_needed(&old, &flow).unwrap().contains("[flow]"));
        let target = "[[alert.target]]\nurl = \"udp://127.0.0.1:514\"\n";
        let alert = load(&format!("{BASE}\n{target}"));
        assert!(restart_needed(&old, &alert).unwrap().contains("[alert] changed"));
        let severity = load(&format!("{BASE}\n{target}min_severity = \"crit\"\n"));
        assert!(restart_needed(&alert, &severity).unwrap().contains("restart sekishod"));
        assert!(restart_needed(&alert, &load(&format!("{BASE}\n{target}"))).is_none());
    }
}
