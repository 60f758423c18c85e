//! `sekishod replay` on captures these tests write themselves (every reason code, capture
//! time and expiry, pcapng timestamp units, monitor mode, the bounded connection list),
//! and on the real captures in `../shared/pcaps` when they are there.

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

/// Runs `sekishod replay` (text report) and returns (exit code, stdout).
fn replay_text(config: &Path, extra: &[&str], pcaps: &[&Path]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sekishod"))
        .arg("replay")
        .args(extra)
        .arg("-c")
        .arg(config)
        .args(pcaps)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
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

/// 2027-03-31T23:59:58+09:00 in nanoseconds: two seconds before the lab exception expires.
const BEFORE_EXPIRY_NS: u64 = 1_806_505_198_000_000_000;
const SEC: u64 = 1_000_000_000;

/// A juki-batch SFTP connection that starts before the exception expires and goes on
/// after it, then a new connection after it; `(capture time in ns, frame)`.
fn juki_across_expiry() -> Vec<(u64, Vec<u8>)> {
    let (c, s) = ("198.18.10.5", "198.18.20.30");
    let t = BEFORE_EXPIRY_NS;
    let mut conn = TcpConn::new((c, 40000), (s, 22));
    vec![
        (t, conn.syn()),
        (t + SEC / 4, conn.syn_ack()),
        (t + SEC / 2, conn.client(ACK, b"")),
        (t + SEC, conn.server(ACK | PSH, b"SSH-2.0-OpenSSH_9.6\r\n")),
        // 2027-04-01T00:00:00.5+09:00: the exception has expired
        (t + 5 * SEC / 2, conn.client(ACK | PSH, b"SSH-2.0-batch\r\n")),
        (t + 3 * SEC, tcp(c, 40001, s, 22, SYN, b"")),
    ]
}

fn flow(doc: &Value, sport: u64) -> &Value {
    doc["flows"].as_array().unwrap().iter().find(|f| f["sport"] == sport).unwrap_or_else(|| panic!("{doc:#}"))
}

#[test]
fn each_packet_is_judged_at_its_capture_time() {
    let dir = Scratch::new("capture-time");
    let config = dir.file("lab.toml", LAB);
    let pcap = dir.0.join("juki.pcap");
    write_pcap(&pcap, LinkType::Ethernet, &juki_across_expiry()).unwrap();
    let (code, doc) = replay(&config, &[], &[&pcap]);
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(doc["time"], "capture");
    assert_eq!((&doc["forwarded"], &doc["dropped"]), (&Value::from(4), &Value::from(2)), "{doc:#}");
    let first = flow(&doc, 40000);
    assert_eq!(first["first_reason"], "allow:exception:juki-batch");
    assert_eq!(first["reason"], "deny:mynumber-isolation");
    assert_eq!(first["decided_by"]["approval"], "R8-情政-012");
    assert_eq!(first["lapsed_exception"]["exception"], "juki-batch");
    assert_eq!(first["lapsed_exception"]["expired"], "2027-03-31");
    assert_eq!(first["first_seen"], "2027-03-31T23:59:58.000000+09:00");
    assert_eq!(first["last_seen"], "2027-04-01T00:00:00.500000+09:00");
    assert_eq!((&first["src_zone"], &first["dst_zone"]), (&Value::from("mynumber"), &Value::from("lgwan")));
    let second = flow(&doc, 40001);
    assert_eq!(second["first_reason"], "deny:mynumber-isolation");
    assert_eq!(second["lapsed_exception"]["exception"], "juki-batch");
    assert_eq!(doc["connections"]["denied"], 2);
    assert_eq!(doc["connections"]["denied_by_reason"]["deny:mynumber-isolation"], 2);

    // --at: the same capture as if it began on 2027-03-01 — nothing has expired
    let (code, doc) = replay(&config, &["--at", "2027-03-01"], &[&pcap]);
    assert_eq!((code, &doc["dropped"]), (0, &Value::from(0)), "{doc:#}");
    assert_eq!(flow(&doc, 40000)["first_seen"], "2027-03-01T00:00:00.000000+09:00");
    assert_eq!(flow(&doc, 40001)["reason"], "allow:exception:juki-batch");

    // the text report: connections first, grouped by reason, with what decided them
    let (_, text) = replay_text(&config, &[], &[&pcap]);
    assert!(
        text.starts_with("connections 2 — denied 2, allowed 0\ndeny:mynumber-isolation — 2 connections\n"),
        "{text}"
    );
    assert!(text.contains("mynumber -> lgwan"), "{text}");
    assert!(text.contains("2027-03-31T23:59:58.000000+09:00 .. 2027-04-01T00:00:00.500000+09:00"), "{text}");
    assert!(
        text.contains("exception juki-batch (approval R8-情政-012) expired 2027-03-31; allowed at first by exception juki-batch"),
        "{text}"
    );
    let packets_at = text.find("packets 6  forwarded 4  dropped 2").unwrap_or_else(|| panic!("{text}"));
    assert!(packets_at > text.find("deny:mynumber-isolation —").unwrap(), "packet counts come second");
}

#[test]
fn monitor_mode_flows_are_marked_would_drop() {
    let dir = Scratch::new("monitor-mark");
    let monitor = dir.file("monitor.toml", &LAB.replace("mode = \"enforce\"", "mode = \"monitor\""));
    let frames = [
        tcp("198.18.20.5", 40000, "203.0.113.9", 443, SYN, b""),
        tcp("203.0.113.7", 41000, "198.18.40.10", 25, SYN, b""),
    ];
    let pcap = dir.pcap("m.pcap", LinkType::Ethernet, &frames);
    let (code, doc) = replay(&monitor, &[], &[&pcap]);
    assert_eq!(code, 0, "monitor mode forwards");
    let denied = flow(&doc, 40000);
    assert_eq!((&denied["verdict"], &denied["would_drop"]), (&Value::from("deny"), &Value::from(true)));
    assert_eq!((&denied["forwarded"], &denied["monitored"]), (&Value::from(1), &Value::from(1)));
    let allowed = flow(&doc, 41000);
    assert_eq!((&allowed["would_drop"], &allowed["monitored"]), (&Value::from(false), &Value::from(0)));
    assert_eq!(doc["connections"]["would_drop"], 1);
    let (_, text) = replay_text(&monitor, &[], &[&pcap]);
    assert!(text.contains("; monitor mode: 1 would drop"), "{text}");
    let row = text.lines().find(|l| l.contains("198.18.20.5:40000")).unwrap();
    assert!(row.contains("would drop") && row.contains("lgwan -> internet"), "{row}");
    let row = text.lines().find(|l| l.contains("203.0.113.7:41000")).unwrap();
    assert!(row.contains(" allow ") && row.contains("path mail-textify leg 1"), "{row}");
}

/// Writes a pcapng file: one section, one Ethernet interface with `if_tsresol` =
/// `tsresol`, one enhanced packet block per frame with its timestamp in that unit.
fn write_pcapng(path: &Path, tsresol: u8, packets: &[(u64, Vec<u8>)]) {
    fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
        let len = (12 + body.len()) as u32;
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&len.to_le_bytes());
    }
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0a0d_0d0a, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&1u16.to_le_bytes()); // LINKTYPE_ETHERNET
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&0u32.to_le_bytes());
    idb.extend_from_slice(&9u16.to_le_bytes()); // if_tsresol
    idb.extend_from_slice(&1u16.to_le_bytes());
    idb.extend_from_slice(&[tsresol, 0, 0, 0]);
    idb.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
    block(&mut out, 1, &idb);
    for (ts, data) in packets {
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(*ts as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(data);
        epb.resize(epb.len().next_multiple_of(4), 0);
        block(&mut out, 6, &epb);
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn pcapng_timestamps_follow_if_tsresol() {
    let dir = Scratch::new("tsresol");
    let config = dir.file("lab.toml", LAB);
    let packets = juki_across_expiry();
    for (tsresol, per_second) in [(6u8, 1_000_000u64), (9, 1_000_000_000), (0x80 | 20, 1 << 20)] {
        let units: Vec<(u64, Vec<u8>)> = packets
            .iter()
            .map(|(ns, f)| ((u128::from(*ns) * u128::from(per_second) / 1_000_000_000) as u64, f.clone()))
            .collect();
        let pcap = dir.0.join(format!("juki-{tsresol}.pcapng"));
        write_pcapng(&pcap, tsresol, &units);
        let (code, doc) = replay(&config, &[], &[&pcap]);
        assert_eq!(code, 1, "if_tsresol {tsresol}: {doc:#}");
        let first = flow(&doc, 40000);
        assert_eq!(first["first_seen"], "2027-03-31T23:59:58.000000+09:00", "if_tsresol {tsresol}");
        assert_eq!(first["reason"], "deny:mynumber-isolation", "if_tsresol {tsresol}: the expiry fires");
        assert_eq!(flow(&doc, 40001)["reason"], "deny:mynumber-isolation", "if_tsresol {tsresol}");
    }
}

/// A real dumpcap pcapng (microsecond timestamps, no if_tsresol option) from
/// ../shared/pcaps: its first packet was captured at 2013-03-07T21:42:06.939084Z.
#[test]
fn a_real_pcapng_capture_has_real_timestamps() {
    let file = repo_root().join("../shared/pcaps/tcp-odd/tcp-midstream-nonstd-port-pcapng.pcapng");
    if !file.exists() {
        assert!(std::env::var_os("CI").is_none(), "CI is set but {} is missing", file.display());
        eprintln!("SKIPPED: {} not found (the shared captures live beside the repository)", file.display());
        return;
    }
    let (_, doc) = replay(&repo_root().join("configs/lab.toml"), &[], &[&file]);
    assert_eq!(doc["packets"], 13);
    let f = &doc["flows"][0];
    assert_eq!(f["first_seen"], "2013-03-08T06:42:06.939084+09:00", "{f:#}");
    assert_eq!(f["last_seen"], "2013-03-08T06:42:07.080972+09:00", "{f:#}");
}

#[test]
fn the_connection_list_is_bounded_and_says_what_it_cut() {
    let dir = Scratch::new("max-flows");
    let config = dir.file("lab.toml", LAB);
    // 2 000 distinct intra-zone UDP flows and 500 denied ones, one datagram each
    let mut frames: Vec<Vec<u8>> =
        (0..2000u16).map(|i| udp("198.18.20.5", 10_000 + i, "198.18.20.6", 53, b"q")).collect();
    frames.extend((0..500u16).map(|i| udp("198.18.20.5", 20_000 + i, "203.0.113.9", 53, b"q")));
    let pcap = dir.pcap("many.pcap", LinkType::Ethernet, &frames);
    let (code, doc) = replay(&config, &["--max-flows", "10"], &[&pcap]);
    assert_eq!(code, 1);
    assert_eq!(doc["packets"], 2500, "totals stay exact");
    assert_eq!(doc["reasons"]["allow:intra-zone"], 2000);
    assert_eq!(doc["drop_reasons"]["deny:unsanitized-crossing"], 500);
    assert_eq!(doc["flows"].as_array().unwrap().len(), 10);
    assert_eq!(doc["connections"]["listed"], 10);
    assert_eq!(doc["flows_omitted"]["max_flows"], 10);
    assert_eq!(doc["flows_omitted"]["packets"], 2490);
    assert_eq!(doc["flows_omitted"]["by_reason"]["allow:intra-zone"], 1990);
    assert_eq!(doc["flows_omitted"]["by_reason"]["deny:unsanitized-crossing"], 500);
    let (_, text) = replay_text(&config, &["--max-flows", "10"], &[&pcap]);
    assert!(
        text.contains("not listed: connections beyond --max-flows 10: 2490 packets (allow:intra-zone 1990, deny:unsanitized-crossing 500)"),
        "{text}"
    );
    // the default keeps them all
    let (_, doc) = replay(&config, &[], &[&pcap]);
    assert_eq!(doc["flows"].as_array().unwrap().len(), 2500);
    assert_eq!(doc["flows_omitted"]["packets"], 0);
}
