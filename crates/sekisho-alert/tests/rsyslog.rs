//! A real rsyslog receives sekisho's alerts over UDP, TCP (octet counting) and a unix
//! socket, parses the RFC 5424 structured data with `mmpstrucdata`, and writes what it
//! understood; the test reads that back. A fourth input takes the RFC 3164 format.
//!
//! The test starts its own `rsyslogd -n` on loopback ports it chooses and a socket in
//! a temporary directory (no root needed, the system's syslog is not touched), and
//! stops that process — by its PID — at the end, even after a failure. Without
//! `rsyslogd` it prints `SKIPPED` and passes, unless `CI` is set: then it fails
//! (`deploy/install-lab-deps.sh` installs it).

mod common;

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use sekisho_alert::{AlertTarget, Format, Matched, Notice, Severity, TargetUrl, What};
use sekisho_policy::{ExceptionId, Mode};

/// The rsyslogd this test started; stopped by PID on drop.
struct Rsyslogd {
    child: Child,
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let stopped = wait_until(Duration::from_secs(5), || matches!(self.child.try_wait(), Ok(Some(_))));
        if !stopped {
            let _ = self.child.kill(); // SIGKILL, this PID only
            let _ = self.child.wait();
        }
    }
}

fn rsyslogd_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join("rsyslogd"))
        .find(|p| p.is_file())
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// rsyslog's configuration: three RFC 5424 inputs into one ruleset that parses the
/// structured data and writes one tab-separated line per message; an RFC 3164 input
/// into another.
fn conf(dir: &Path, udp: u16, tcp: u16, old: u16) -> String {
    let d = dir.display();
    format!(
        r#"
global(workDirectory="{d}" maxMessageSize="64k")
module(load="imudp")
module(load="imtcp")
module(load="imuxsock" SysSock.Use="off")
module(load="mmpstrucdata")
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="sk")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="sk")
input(type="imuxsock" Socket="{d}/log.sock" useSpecialParser="off" parseHostname="on" ruleset="sk")
input(type="imudp" address="127.0.0.1" port="{old}" ruleset="old")
template(name="sk" type="list") {{
  property(name="inputname") constant(value="\t")
  property(name="msgid") constant(value="\t")
  property(name="hostname") constant(value="\t")
  property(name="app-name") constant(value="\t")
  property(name="syslogfacility-text") constant(value="\t")
  property(name="syslogseverity-text") constant(value="\t")
  property(name="$!rfc5424-sd") constant(value="\t")
  property(name="$!rfc5424-sd!sekisho@32473!reason") constant(value="\t")
  property(name="msg") constant(value="\n")
}}
template(name="old" type="list") {{
  property(name="hostname") constant(value="\t")
  property(name="programname") constant(value="\t")
  property(name="syslogseverity-text") constant(value="\t")
  property(name="msg") constant(value="\n")
}}
ruleset(name="sk") {{
  action(type="mmpstrucdata")
  action(type="omfile" file="{d}/sd.log" template="sk")
}}
ruleset(name="old") {{
  action(type="omfile" file="{d}/old.log" template="old")
}}
"#
    )
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

#[test]
fn real_rsyslog_parses_msgid_and_structured_data() {
    let Some(rsyslogd) = rsyslogd_path() else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "rsyslogd is not installed; deploy/install-lab-deps.sh installs it (Debian package rsyslog)"
            );
        }
        eprintln!("SKIPPED: rsyslogd not installed (apt-get install rsyslog, or deploy/install-lab-deps.sh)");
        return;
    };
    let dir = TempDir::new("rsyslog");
    let (udp, tcp, old) = (free_udp_port(), free_tcp_port(), free_udp_port());
    let conf_path = dir.path().join("rsyslog.conf");
    std::fs::write(&conf_path, conf(dir.path(), udp, tcp, old)).unwrap();
    let child = Command::new(&rsyslogd)
        .arg("-n")
        .arg("-f")
        .arg(&conf_path)
        .arg("-i")
        .arg(dir.path().join("rsyslogd.pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Dropped before `dir` (declared later), so rsyslogd stops before its files go.
    let guard = Rsyslogd { child };
    let sock = dir.path().join("log.sock");
    let ready = wait_until(Duration::from_secs(10), || {
        sock.exists() && can_connect(format!("127.0.0.1:{tcp}").parse().unwrap())
    });
    assert!(ready, "rsyslogd did not come up (config: {})", conf_path.display());

    let targets = vec![
        AlertTarget::new(TargetUrl::Udp(format!("127.0.0.1:{udp}").parse().unwrap())),
        AlertTarget::new(TargetUrl::Tcp(format!("127.0.0.1:{tcp}").parse().unwrap())),
        AlertTarget::new(TargetUrl::Unix(sock.clone())),
        AlertTarget {
            format: Format::Rfc3164,
            min_severity: Severity::Debug,
            ..AlertTarget::new(TargetUrl::Udp(format!("127.0.0.1:{old}").parse().unwrap()))
        },
    ];
    let a = sekisho_alert::Alerter::start(config(targets)).unwrap();
    let policy = sekisho_policy::load_str(
        &format!(
            "{POLICY}\n{}",
            r#"
[[zone]]
name = "lg2"
kind = "lgwan"
prefixes = ["198.18.21.0/24"]
upstream = true
[[service]]
name = "sftp"
proto = "tcp"
ports = [22]
[[exception]]
name = "juki-batch"
from = "198.18.10.5"
to = "198.18.21.30"
service = "sftp"
approval = "R8-情政-012 \"特\\例\" [a]"
"#
        ),
        "rsyslog-test.toml",
    )
    .unwrap();
    a.set_names(1, std::sync::Arc::new(policy));
    a.submit(
        &record("deny:app-mismatch", "198.18.10.5", "198.18.21.30", now())
            .with_matched(Matched::Exception(ExceptionId(0)))
            .with_flow(0x1234),
    );
    a.notice(Notice {
        at: now(),
        mode: Mode::Monitor,
        generation: 2,
        uid: Some(1000),
        what: What::ModeChanged { from: Mode::Enforce },
    });
    let counters = a.shutdown(Duration::from_secs(5));
    for t in &counters.targets {
        assert_eq!((t.sent, t.dropped, t.send_errors), (2, 0, 0), "{t:?}");
    }

    let sd_log = dir.path().join("sd.log");
    let old_log = dir.path().join("old.log");
    assert!(
        wait_until(Duration::from_secs(10), || read_lines(&sd_log).len() >= 6
            && read_lines(&old_log).len() >= 2),
        "rsyslog wrote {:?} and {:?}",
        read_lines(&sd_log),
        read_lines(&old_log)
    );
    drop(guard); // stop rsyslogd before reading everything (it flushes on exit)
    let lines = read_lines(&sd_log);
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let mut inputs = Vec::new();
    for line in &lines {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 9, "{line}");
        let (input, msgid, host, app, facility, severity, sd, reason, msg) =
            (f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]);
        inputs.push(input.to_owned());
        assert_eq!((host, app, facility), ("gw1", "sekishod", "local4"), "{line}");
        let sd: serde_json::Value = serde_json::from_str(sd).unwrap_or_else(|e| panic!("{e}: {sd}"));
        let p = &sd["sekisho@32473"];
        match msgid {
            "APP_MISMATCH" => {
                assert_eq!(severity, "crit", "app mismatch touching mynumber is raised: {line}");
                assert_eq!(reason, "deny:app-mismatch", "one SD value by path, as docs/alerts.md shows");
                assert_eq!(p["reason"], "deny:app-mismatch");
                assert_eq!(p["src"], "198.18.10.5");
                assert_eq!(p["dst"], "198.18.21.30");
                assert_eq!(p["sport"], "40000");
                assert_eq!(p["dport"], "443");
                assert_eq!(p["src_zone"], "mynumber");
                assert_eq!(p["dst_zone"], "lg2");
                assert_eq!(p["port"], "mn-uplink");
                assert_eq!(p["side"], "inside");
                assert_eq!(p["mode"], "enforce");
                assert_eq!(p["gen"], "1");
                assert_eq!(p["flow"], "0000000000001234");
                assert_eq!(p["exception"], "juki-batch");
                assert_eq!(p["approval"], "R8-情政-012 \"特\\例\" [a]", "escaping survives rsyslog");
                assert!(msg.contains("アプリケーション不一致"), "{msg}");
            }
            "MODE_CHANGED" => {
                assert_eq!(severity, "alert");
                assert_eq!(p["mode"], "monitor");
                assert_eq!(p["uid"], "1000");
                assert_eq!(p["gen"], "2");
            }
            other => panic!("unexpected MSGID {other:?}: {line}"),
        }
    }
    inputs.sort();
    assert_eq!(inputs, ["imtcp", "imtcp", "imudp", "imudp", "imuxsock", "imuxsock"]);

    let old_lines = read_lines(&old_log);
    assert_eq!(old_lines.len(), 2, "{old_lines:#?}");
    let l = old_lines.iter().find(|l| l.contains("APP_MISMATCH")).unwrap();
    let f: Vec<&str> = l.split('\t').collect();
    assert_eq!((f[0], f[1], f[2]), ("gw1", "sekishod", "crit"), "{l}");
    assert!(f[3].contains("reason=deny:app-mismatch") && f[3].contains("src_zone=mynumber"), "{l}");
}
