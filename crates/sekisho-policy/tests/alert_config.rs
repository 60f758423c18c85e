//! `[alert]` and `[[alert.target]]`: parsed, defaulted, and every mistake named.

use sekisho_policy::{load_str, AlertTarget, ConfigErrors, Facility, Format, Policy, Severity, TargetUrl};

const ZONE: &str = r#"
[[zone]]
name = "lgwan"
kind = "lgwan"
prefixes = ["198.18.20.0/24"]
"#;

fn loads(extra: &str) -> Policy {
    match load_str(&format!("{ZONE}\n{extra}"), "test.toml") {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn errors(extra: &str) -> ConfigErrors {
    match load_str(&format!("{ZONE}\n{extra}"), "test.toml") {
        Ok(_) => panic!("expected errors for:\n{extra}"),
        Err(e) => e,
    }
}

/// Some error is about `item` and its message contains every needle.
fn has(e: &ConfigErrors, item: &str, needles: &[&str]) {
    let ok = e.errors.iter().any(|x| x.item == item && needles.iter().all(|n| x.message.contains(n)));
    assert!(ok, "no error on {item} containing {needles:?}:\n{e}");
}

#[test]
fn no_alert_section_means_no_targets() {
    let p = loads("");
    assert!(p.alert_targets().is_empty());
    assert_eq!(p.alert_event_file(), None);
}

#[test]
fn targets_parse_with_defaults() {
    let p = loads(
        r#"
[alert]
event_file = "/var/log/sekisho/events.jsonl"

[[alert.target]]
url = "udp://127.0.0.1:514"

[[alert.target]]
url = "tcp://[2001:db8::9]:6514"
format = "rfc3164"
facility = "local7"
min_severity = "crit"

[[alert.target]]
url = "unix:/dev/log"
facility = "auth"
min_severity = "debug"
"#,
    );
    assert_eq!(p.alert_event_file().unwrap().to_str(), Some("/var/log/sekisho/events.jsonl"));
    let t = p.alert_targets();
    assert_eq!(t.len(), 3);
    assert_eq!(t[0], AlertTarget::new(TargetUrl::Udp("127.0.0.1:514".parse().unwrap())));
    assert_eq!(t[0].format, Format::Rfc5424);
    assert_eq!(t[0].facility, Facility::Local4);
    assert_eq!(t[0].min_severity, Severity::Notice);
    assert_eq!(
        t[1],
        AlertTarget {
            url: TargetUrl::Tcp("[2001:db8::9]:6514".parse().unwrap()),
            format: Format::Rfc3164,
            facility: Facility::Local7,
            min_severity: Severity::Crit,
        }
    );
    assert_eq!(t[2].url, TargetUrl::Unix("/dev/log".into()));
    assert_eq!(t[2].facility, Facility::Auth);
    assert_eq!(t[2].min_severity, Severity::Debug);
}

#[test]
fn every_mistake_names_the_target() {
    let e = errors(
        r#"
[alert]
event_file = "events.jsonl"

[[alert.target]]
url = "udp://x"

[[alert.target]]
url = "udp://syslog.example.lg.jp:514"
format = "rfc5425"
facility = "local8"
min_severity = "warn"

[[alert.target]]
url = "tcp://127.0.0.1:601"
colour = "red"

[[alert.target]]
url = "tcp://127.0.0.1:601"

[[alert.target]]
format = "rfc3164"

[[alert.target]]
url = 514
"#,
    );
    has(&e, "[alert]", &["event_file \"events.jsonl\"", "absolute path"]);
    has(&e, "alert.target 1", &["url \"udp://x\"", "not an IP address", "udp://127.0.0.1:514"]);
    has(&e, "alert.target 2", &["url \"udp://syslog.example.lg.jp:514\"", "names are not resolved"]);
    has(&e, "alert.target 2", &["unknown format \"rfc5425\"", "did you mean `rfc5424`?"]);
    has(&e, "alert.target 2", &["unknown facility \"local8\"", "local7"]);
    has(&e, "alert.target 2", &["unknown min_severity \"warn\"", "warning"]);
    has(&e, "alert.target 3", &["unknown key `colour`", "url, format, facility, min_severity"]);
    has(&e, "alert.target 4", &["already alert.target 3"]);
    has(&e, "alert.target 5", &["missing required key `url`"]);
    has(&e, "alert.target 6", &["url", "a string"]);
    assert_eq!(e.errors.len(), 10, "{e}");
    // The display form prefixes the origin, the item, then the message.
    assert!(e.to_string().contains("test.toml: alert.target 1: url \"udp://x\": "), "{e}");
}

#[test]
fn alert_must_be_a_table_and_targets_bounded() {
    let e = errors("[[alert]]\n");
    has(&e, "[alert]", &["write [alert], not [[alert]]"]);
    let many: String =
        (0..17).map(|i| format!("[[alert.target]]\nurl = \"udp://127.0.0.1:{}\"\n", 1000 + i)).collect();
    let e = errors(&many);
    has(&e, "[alert]", &["17 [[alert.target]]", "at most 16"]);
}
