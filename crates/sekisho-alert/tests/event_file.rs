//! The JSON-lines event file: one object per line with the SD fields plus time,
//! msgid, severity and message; reopened after logrotate moved it.

mod common;

use std::time::Duration;

use common::*;
use sekisho_alert::{Alerter, Notice, What};
use sekisho_policy::Mode;

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn events_are_json_lines_and_survive_logrotate() {
    let dir = TempDir::new("events");
    let path = dir.path().join("events.jsonl");
    let mut cfg = config(vec![]);
    cfg.event_file = Some(path.clone());
    cfg.utc_offset_s = 9 * 3600;
    let a = Alerter::start(cfg).unwrap();
    a.set_names(1, policy());
    a.notice(Notice {
        at: now(),
        mode: Mode::Enforce,
        generation: 1,
        uid: None,
        what: What::DaemonStart { version: "0.1.0".into() },
    });
    a.submit(&record("deny:mynumber-isolation", "198.18.10.5", "203.0.113.9", now()));
    assert!(wait_until(Duration::from_secs(5), || lines(&path).len() == 2));
    let l = lines(&path);
    assert_eq!(l[0]["msgid"], "DAEMON_START");
    assert_eq!(l[0]["severity"], "notice");
    let e = &l[1];
    assert_eq!(e["msgid"], "MYNUMBER_ISOLATION");
    assert_eq!(e["severity"], "alert");
    assert_eq!(e["reason"], "deny:mynumber-isolation");
    assert_eq!(e["src"], "198.18.10.5");
    assert_eq!(e["src_zone"], "mynumber");
    assert_eq!(e["dport"], 443);
    assert_eq!(e["gen"], 1);
    assert_eq!(e["mode"], "enforce");
    assert!(e["time"].as_str().unwrap().ends_with("+09:00"), "{e}");
    assert!(e["message"].as_str().unwrap().contains("dropped"), "{e}");

    // logrotate: move the file away, then SIGUSR1 → reopen().
    let rotated = dir.path().join("events.jsonl.1");
    std::fs::rename(&path, &rotated).unwrap();
    a.reopen();
    assert!(wait_until(Duration::from_secs(5), || a.counters().event_file_reopens == 1));
    a.submit(&record("deny:no-rule", "203.0.113.9", "198.18.20.5", now()));
    assert!(wait_until(Duration::from_secs(5), || lines(&path).len() == 1));
    assert_eq!(lines(&path)[0]["msgid"], "NO_RULE");
    assert_eq!(lines(&rotated).len(), 2);
    let c = a.shutdown(Duration::from_secs(2));
    assert_eq!((c.event_file_written, c.event_file_errors), (3, 0));
}

#[test]
fn missing_directory_is_a_clear_error() {
    let mut cfg = config(vec![]);
    cfg.event_file = Some("/nonexistent-sekisho-dir/events.jsonl".into());
    let e = Alerter::start(cfg).err().unwrap().to_string();
    assert!(e.contains("/nonexistent-sekisho-dir/events.jsonl") && e.contains("create its directory"), "{e}");
}
