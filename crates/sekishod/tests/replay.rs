//! `sekishod replay` on captures these tests write themselves (every reason code), and on
//! the real captures in `../shared/pcaps`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use sekisho_testkit::flags::*;
use sekisho_testkit::*;
use serde_json::Value;

const LAB: &str = include_str!("../../../configs/lab.toml");

/// The lab policy plus a catch-all rule from management to sanitization (to show that a
/// tunnel needs a service that names it).
fn lab_with_mgmt_any() -> String {
    format!(
        "{LAB}\n[[service]]\nname = \"anything\"\nproto = \"any\"\n\n[[rule]]\nname = \"mgmt-any\"\n\
         from = \"zone:management\"\nto = \"zone:sanitization\"\nservice = \"anything\"\n"
    )
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("sekisho-replay-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
    fn pcap(&self, name: &str, linktype: LinkType, frames: &[Vec<u8>]) -> PathBuf {
        let p = self.0.join(name);
        let base = 1_795_316_400_000_000_000u64;
        let packets: Vec<(u64, Vec<u8>)> =
            frames.iter().enumerate().map(|(i, f)| (base + i as u64 * 1_000_000, f.clone())).collect();
        write_pcap(&p, linktype, &packets).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `sekishod replay --json` and returns (exit code, document).
fn replay(config: &Path, extra: &[&str], pcaps: &[&Path]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_sekishod"))
        .arg("replay")
        .arg("--json")
        .arg("-c")
        .arg(config)
        .args(extra)
        .args(pcaps)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), doc)
}

/// The reason recorded for the flow from `src` to `dst` (by address and destination port).
fn flow_reason(doc: &Value, src: &str, dst: &str, dport: u64) -> String {
    let flows = doc["flows"].as_array().unwrap();
    let f = flows
        .iter()
        .find(|f| f["src"] == src && f["dst"] == dst && f["dport"] == dport)
        .unwrap_or_else(|| panic!("no flow {src} -> {dst}:{dport} in {flows:#?}"));
    f["reason"].as_str().unwrap().to_owned()
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn every_reason_code_appears_in_a_generated_capture() {
    let dir = Scratch::new("reasons");
    let config = dir.file("lab.toml", &lab_with_mgmt_any());
    let query = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1];
    let quoted =
        ipv4(v4("198.18.20.5"), v4("198.18.20.6"), 17, V4Opts::default(), &udp_datagram(5000, 53, &query));
    let mut truncated = tcp("198.18.20.5", 1, "198.18.20.6", 22, SYN, b"");
    truncated.truncate(40);
    let orphan = eth(
        0x0800,
        &ipv4(
            v4("198.18.20.5"),
            v4("198.18.20.6"),
            17,
            V4Opts { id: 9, frag_offset: 5, ..V4Opts::default() },
            &[0; 16],
        ),
    );
    let gre = ip_frame("198.18.50.1", "198.18.40.7", 47, 64, &[0, 0, 0x08, 0x00]);
    let mut mail = TcpConn::new(("203.0.113.7", 41000), ("198.18.40.10", 25));
    let mut http = TcpConn::new(("203.0.113.8", 41001), ("198.18.40.10", 25));
    let frames = vec![
        udp("198.18.20.5", 5000, "198.18.20.6", 53, &query),
        icmp("198.18.20.6", "198.18.20.5", 3, 3, [0; 4], &quoted[..28], 64),
        mail.syn(),
        mail.syn_ack(),
        mail.client(ACK, b""),
        mail.server(ACK | PSH, b"220 relay ESMTP\r\n"),
        http.syn(),
        http.syn_ack(),
        http.client(ACK, b""),
        http.client(PSH | ACK, b"GET / HTTP/1.1\r\n"),
        tcp("198.18.10.5", 40000, "198.18.20.30", 22, SYN, b""),
        tcp("198.18.50.1", 40000, "198.18.40.7", 22, SYN, b""),
        arp(),
        tcp("198.18.10.9", 40000, "203.0.113.9", 443, SYN, b""),
        tcp("198.18.20.5", 40000, "203.0.113.9", 443, SYN, b""),
        tcp("203.0.113.9", 40000, "198.18.50.1", 22, SYN, b""),
        tcp("198.18.20.5", 40001, "198.18.20.6", 80, ACK, b"mid-stream"),
        truncated,
        orphan,
        gre,
        eth(0x88b5, &[0; 46]),
    ];
    let pcap = dir.pcap("reasons.pcap", LinkType::Ethernet, &frames);
    let (code, doc) = replay(&config, &["--at", "2026-12-01"], &[&pcap]);
    assert_eq!(code, 1, "drops make the exit code 1");
    assert_eq!(doc["packets"], frames.len());
    let expected_allows = [
        ("allow:intra-zone", 1),
        ("allow:related", 1),
        ("allow:path:mail-textify/1", 7),
        ("allow:exception:juki-batch", 1),
        ("allow:rule:mgmt-ssh", 1),
        ("allow:link", 1),
    ];
    for (reason, n) in expected_allows {
        assert_eq!(doc["reasons"][reason], n, "{reason} in {:#}", doc["reasons"]);
    }
    let expected_drops = [
        ("deny:app-mismatch", 1),
        ("deny:mynumber-isolation", 1),
        ("deny:unsanitized-crossing", 1),
        ("deny:no-rule", 1),
        ("deny:no-flow", 1),
        ("deny:malformed", 1),
        ("deny:fragment", 1),
        ("deny:tunnel", 1),
        ("deny:non-ip", 1),
    ];
    for (reason, n) in expected_drops {
        assert_eq!(doc["drop_reasons"][reason], n, "{reason} in {:#}", doc["drop_reasons"]);
    }
    assert_eq!(doc["dropped"], 9);
    assert_eq!(doc["forwarded"], frames.len() - 9);
    assert_eq!(flow_reason(&doc, "203.0.113.7", "198.18.40.10", 25), "allow:path:mail-textify/1");
    assert_eq!(flow_reason(&doc, "203.0.113.8", "198.18.40.10", 25), "deny:app-mismatch");
    assert_eq!(flow_reason(&doc, "198.18.20.5", "203.0.113.9", 443), "deny:unsanitized-crossing");
    let first = &doc["flows"][0];
    for key in ["proto", "src", "dst", "sport", "dport", "verdict", "reason"] {
        assert!(!first[key].is_null(), "flows[0].{key} missing: {first:#}");
    }
    assert_eq!(first["proto"], "udp");
    assert_eq!(first["verdict"], "allow");
}

#[test]
fn spoofed_sources_and_a_full_table() {
    let dir = Scratch::new("spoof");
    let config = dir.file("lab.toml", LAB);
    let pcap =
        dir.pcap("spoof.pcap", LinkType::Ethernet, &[tcp("203.0.113.7", 1, "198.18.20.6", 22, SYN, b"")]);
    let (code, doc) = replay(&config, &["--ingress", "lgwan-uplink:inside"], &[&pcap]);
    assert_eq!(code, 1);
    assert_eq!(doc["drop_reasons"]["deny:spoofed-source"], 1);

    let small = dir.file("small.toml", &LAB.replace("capacity = 1_000_000", "capacity = 1"));
    let mut first = TcpConn::new(("198.18.20.5", 1), ("198.18.20.6", 22));
    let frames = [
        first.syn(),
        first.syn_ack(),
        first.client(ACK, b""),
        tcp("198.18.20.5", 2, "198.18.20.6", 22, SYN, b""),
    ];
    let pcap = dir.pcap("full.pcap", LinkType::Ethernet, &frames);
    let (_, doc) = replay(&small, &[], &[&pcap]);
    assert_eq!(doc["drop_reasons"]["deny:flow-table-full"], 1, "{doc:#}");
    assert_eq!(doc["forwarded"], 3);
}

#[test]
fn expiry_monitor_mode_raw_ip_and_the_exit_code() {
    let dir = Scratch::new("modes");
    let config = dir.file("lab.toml", LAB);
    let frames = [tcp("198.18.10.5", 40000, "198.18.20.30", 22, SYN, b"")];
    let pcap = dir.pcap("juki.pcap", LinkType::Ethernet, &frames);
    let (code, doc) = replay(&config, &["--at", "2027-03-31T23:59:59+09:00"], &[&pcap]);
    assert_eq!((code, &doc["dropped"]), (0, &Value::from(0)));
    let (code, doc) = replay(&config, &["--at", "2027-04-01T00:00:00+09:00"], &[&pcap]);
    assert_eq!(code, 1);
    assert_eq!(doc["drop_reasons"]["deny:mynumber-isolation"], 1);

    let monitor = dir.file("monitor.toml", &LAB.replace("mode = \"enforce\"", "mode = \"monitor\""));
    let direct = [tcp("198.18.20.5", 40000, "203.0.113.9", 443, SYN, b"")];
    let pcap = dir.pcap("direct.pcap", LinkType::Ethernet, &direct);
    let (code, doc) = replay(&monitor, &[], &[&pcap]);
    assert_eq!(code, 0, "monitor mode forwards");
    assert_eq!((&doc["forwarded"], &doc["monitored"]), (&Value::from(1), &Value::from(1)));
    assert_eq!(doc["reasons"]["deny:unsanitized-crossing"], 1);

    let raw: Vec<Vec<u8>> = [
        udp("198.18.20.5", 5000, "198.18.20.6", 53, b"x"),
        udp("2001:db8:20::5", 5000, "2001:db8:30::9", 53, b"x"),
    ]
    .iter()
    .map(|f| ip_packet(f).to_vec())
    .collect();
    let pcap = dir.pcap("raw.pcap", LinkType::Raw, &raw);
    let (_, doc) = replay(&config, &[], &[&pcap]);
    assert_eq!(doc["reasons"]["allow:intra-zone"], 1, "{doc:#}");
    assert_eq!(doc["reasons"]["deny:unsanitized-crossing"], 1, "{doc:#}");
}

#[test]
fn the_text_report_names_flows_and_reasons() {
    let dir = Scratch::new("text");
    let config = dir.file("lab.toml", LAB);
    let pcap =
        dir.pcap("t.pcap", LinkType::Ethernet, &[tcp("198.18.20.5", 40000, "203.0.113.9", 443, SYN, b"")]);
    let out = Command::new(env!("CARGO_BIN_EXE_sekishod"))
        .args(["replay", "-c"])
        .arg(&config)
        .arg(&pcap)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("198.18.20.5:40000") && text.contains("deny:unsanitized-crossing"), "{text}");
    assert!(text.contains("packets 1  forwarded 0  dropped 1"), "{text}");
}

#[test]
fn a_broken_capture_is_an_error_not_a_crash() {
    let dir = Scratch::new("broken");
    let config = dir.file("lab.toml", LAB);
    let bad = dir.file("bad.pcap", "this is not a capture at all");
    let out = Command::new(env!("CARGO_BIN_EXE_sekishod"))
        .args(["replay", "-c"])
        .arg(&config)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("bad.pcap"));
}

/// Every real capture in ../shared/pcaps replays under configs/lab.toml without a panic
/// and to its end. Skipped with a message where ../shared is absent (a fresh clone);
/// required when CI is set.
#[test]
fn the_shared_captures_replay_under_the_lab_policy() {
    let shared = repo_root().join("../shared/pcaps");
    let index = shared.join("INDEX.tsv");
    if !index.exists() {
        assert!(std::env::var_os("CI").is_none(), "CI is set but {} is missing", index.display());
        eprintln!("SKIPPED: {} not found (the shared captures live beside the repository)", index.display());
        return;
    }
    let text = std::fs::read_to_string(&index).unwrap();
    let files: Vec<PathBuf> =
        text.lines().skip(1).filter_map(|l| l.split('\t').nth(1)).map(|f| shared.join(f)).collect();
    assert!(files.len() >= 50, "INDEX.tsv lists {} captures", files.len());
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (code, doc) = replay(&repo_root().join("configs/lab.toml"), &[], &refs);
    assert!(code == 0 || code == 1, "exit code {code}");
    let reports = doc["files"].as_array().unwrap();
    assert_eq!(reports.len(), files.len());
    for f in reports {
        assert!(f["error"].is_null(), "{f:#}");
        assert!(f["packets"].as_u64().unwrap() > 0, "{f:#}");
    }
    let total: u64 = text.lines().skip(1).filter_map(|l| l.split('\t').nth(7)?.parse::<u64>().ok()).sum();
    assert_eq!(doc["packets"], total, "every packet INDEX.tsv counts was judged");
}
