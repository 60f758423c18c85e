//! Path inspection on the real captures in `../shared/pcaps` (INDEX.tsv says what each
//! holds; LICENSES.md where each comes from): each capture is replayed with a policy whose
//! one path leg allows its server's port for a service of some application, and the
//! expected result per connection — identified as what it is, or refused as something
//! else — is written below.
//!
//! The captures are read where they are, never copied into the repository. Skipped with a
//! message where they are absent (a fresh clone); required when `CI` is set. The directory
//! is `$SEKISHO_PCAPS` when that is set, else `../shared/pcaps` beside the repository.
//!
//! Two captures use addresses the gate refuses before any inspection (a source in
//! 0.0.0.0/8, a server in 240.0.0.0/4): they are replayed from a rewritten copy in a
//! temporary directory, with those addresses moved to documentation ranges and the
//! checksums made right.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The captures' directory, or `None` (after saying so) when it is absent.
fn shared() -> Option<PathBuf> {
    let dir =
        std::env::var_os("SEKISHO_PCAPS").map_or_else(|| repo_root().join("../shared/pcaps"), PathBuf::from);
    if dir.join("INDEX.tsv").exists() {
        return Some(dir);
    }
    assert!(std::env::var_os("CI").is_none(), "CI is set but {} is missing", dir.display());
    eprintln!("SKIPPED: {} not found (the shared captures live beside the repository)", dir.display());
    None
}

/// A policy whose one leg allows `zone:internet` → `server` for a service of `app` on
/// `proto`/`port`, with extra service keys; the server sits in a sanitization zone of its
/// own, everything else in the internet zone.
fn policy(server: &str, proto: &str, port: u16, app: &str, extra: &str) -> String {
    let len = if server.contains(':') { 128 } else { 32 };
    format!(
        r#"
[[zone]]
name = "servers"
kind = "sanitization"
prefixes = ["{server}/{len}"]

[[zone]]
name = "internet"
kind = "internet"
prefixes = ["0.0.0.0/0", "::/0"]

[[port]]
name = "internet-uplink"
zone = "internet"
inside = "in-in"
outside = "in-out"

[[port]]
name = "servers-uplink"
zone = "servers"
inside = "sz-in"
outside = "sz-out"

[[service]]
name = "svc"
proto = "{proto}"
ports = [{port}]
app = "{app}"
{extra}

[[path]]
name = "leg"
method = "file-sanitize"
  [[path.leg]]
  from = "zone:internet"
  to = "{server}"
  service = "svc"
"#
    )
}

/// The mail-text path's leg into LGWAN: `client` (the relay, sanitization) → `server`
/// (the LGWAN mail host), SMTP.
fn text_leg_policy(client: &str, server: &str) -> String {
    format!(
        r#"
[[zone]]
name = "sanitization"
kind = "sanitization"
prefixes = ["{client}/32"]

[[zone]]
name = "lgwan"
kind = "lgwan"
prefixes = ["{server}/32"]

[[zone]]
name = "internet"
kind = "internet"
prefixes = ["0.0.0.0/0", "::/0"]

[[port]]
name = "internet-uplink"
zone = "internet"
inside = "in-in"
outside = "in-out"

[[port]]
name = "sanitization-uplink"
zone = "sanitization"
inside = "sz-in"
outside = "sz-out"

[[port]]
name = "lgwan-uplink"
zone = "lgwan"
inside = "lg-in"
outside = "lg-out"

[[service]]
name = "smtp"
proto = "tcp"
ports = [25]
app = "smtp"

[[path]]
name = "mail-textify"
method = "mail-text"
  [[path.leg]]
  from = "{client}"
  to = "{server}"
  service = "smtp"
"#
    )
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("sekisho-captures-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Replays `capture` under `config`; returns the connections to `server` port `port` (as
/// JSON).
fn replay(config: &str, capture: &Path, offloaded: bool, server: &str, port: u64) -> Vec<Value> {
    let dir = Scratch::new(&format!("{port}"));
    let path = dir.0.join("policy.toml");
    std::fs::write(&path, config).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_sekishod"));
    c.args(["replay", "--json", "-c"]).arg(&path);
    if offloaded {
        c.arg("--checksums-offloaded");
    }
    let out = c.arg(capture).output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    doc["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["dst"] == server && f["dport"] == port)
        .cloned()
        .collect()
}

/// What is expected of one connection: its source port, its reason, and what inspection
/// said (`"identified tls"`, `"mismatch ssh"`, `"not-sanitized smtp"`, or `"-"` for
/// nothing).
type Expect = (u64, &'static str, &'static str);

#[track_caller]
fn check(what: &str, flows: &[Value], expected: &[Expect]) {
    assert_eq!(flows.len(), expected.len(), "{what}: connections {flows:#?}");
    for (sport, reason, inspection) in expected {
        let f = flows
            .iter()
            .find(|f| f["sport"] == *sport)
            .unwrap_or_else(|| panic!("{what}: no connection from port {sport} in {flows:#?}"));
        let got = match &f["inspection"] {
            Value::Null => "-".to_owned(),
            i => format!("{} {}", i["result"].as_str().unwrap(), i["seen"].as_str().unwrap()),
        };
        assert_eq!(
            (f["reason"].as_str().unwrap(), got.as_str()),
            (*reason, *inspection),
            "{what}: connection from port {sport}: {f:#}"
        );
    }
}

/// One capture replayed for one service.
struct Case {
    capture: &'static str,
    server: &'static str,
    proto: &'static str,
    port: u16,
    app: &'static str,
    extra: &'static str,
    /// Captured on the sending host: its checksum offload left the checksums unfinished.
    offloaded: bool,
    expected: &'static [Expect],
}

const ALLOW: &str = "allow:path:leg/1";
const MISMATCH: &str = "deny:app-mismatch";

/// Every capture of an application, identified as what it is on a service of that
/// application.
const IDENTIFIED: &[Case] = &[
    Case {
        capture: "mail/smtp-plain-attachments.pcap",
        server: "74.53.140.153",
        proto: "tcp",
        port: 25,
        app: "smtp",
        extra: "",
        offloaded: false,
        expected: &[(1470, ALLOW, "identified smtp")],
    },
    Case {
        capture: "mail/smtp-plain-attachments.pcap",
        server: "192.168.133.102",
        proto: "tcp",
        port: 25,
        app: "smtp",
        extra: "",
        offloaded: false,
        expected: &[(49648, ALLOW, "identified smtp")],
    },
    Case {
        capture: "mail/smtp-starttls.pcap",
        server: "74.125.142.26",
        proto: "tcp",
        port: 25,
        app: "smtp",
        extra: "",
        offloaded: true,
        expected: &[(54170, ALLOW, "identified smtp")],
    },
    Case {
        capture: "remote-access/rdp-standard-security.pcap",
        server: "10.226.29.74",
        proto: "tcp",
        port: 3389,
        app: "rdp",
        extra: "",
        offloaded: false,
        expected: &[(13178, ALLOW, "identified rdp")],
    },
    Case {
        capture: "remote-access/rdp-x224-to-tls.pcap",
        server: "192.168.1.150",
        proto: "tcp",
        port: 3389,
        app: "rdp",
        extra: "",
        offloaded: false,
        expected: &[(49206, ALLOW, "identified rdp"), (49207, ALLOW, "identified rdp")],
    },
    Case {
        capture: "remote-access/vnc-rfb.pcap",
        server: "192.168.2.125",
        proto: "tcp",
        port: 5901,
        app: "vnc",
        extra: "",
        offloaded: true,
        expected: &[
            (49251, ALLOW, "-"),
            (49256, ALLOW, "identified vnc"),
            (49257, ALLOW, "identified vnc"),
            (49259, ALLOW, "identified vnc"),
        ],
    },
    Case {
        capture: "tls/tls12-handshake.pcap",
        server: "68.233.76.12",
        proto: "tcp",
        port: 443,
        app: "tls",
        extra: "",
        offloaded: false,
        expected: &[(56637, ALLOW, "identified tls")],
    },
    Case {
        capture: "tls/tls13-ech.pcap",
        server: "162.159.138.85",
        proto: "tcp",
        port: 443,
        app: "tls",
        extra: "",
        offloaded: false,
        expected: &[
            (51053, "deny:no-flow", "-"),
            (51066, ALLOW, "identified tls"),
            (51071, ALLOW, "identified tls"),
        ],
    },
    Case {
        capture: "tls/tls-clienthello-mtu300.pcap",
        server: "142.251.111.105",
        proto: "tcp",
        port: 443,
        app: "tls",
        extra: "",
        offloaded: true,
        expected: &[(38576, ALLOW, "identified tls")],
    },
    Case {
        capture: "tls/sslv2-hello.pcap",
        server: "91.227.4.92",
        proto: "tcp",
        port: 443,
        app: "tls",
        extra: "",
        offloaded: true,
        expected: &[(59062, ALLOW, "identified tls")],
    },
    Case {
        capture: "http/http-te-cl-smuggling.pcap",
        server: "192.168.1.200",
        proto: "tcp",
        port: 80,
        app: "http",
        extra: "",
        offloaded: false,
        expected: &[(40004, ALLOW, "identified http")],
    },
    Case {
        capture: "http/http-connect-tls-proxy.pcap",
        server: "192.168.1.146",
        proto: "tcp",
        port: 8080,
        app: "http",
        extra: "allow_connect = true",
        offloaded: true,
        expected: &[(1714, ALLOW, "identified http")],
    },
    Case {
        capture: "ssh/ssh2-curve25519.pcap",
        server: "192.168.1.32",
        proto: "tcp",
        port: 22,
        app: "ssh",
        extra: "",
        offloaded: false,
        expected: &[(60906, ALLOW, "identified ssh")],
    },
    Case {
        capture: "dns/dns-udp.pcap",
        server: "209.87.249.18",
        proto: "udp",
        port: 53,
        app: "dns",
        extra: "",
        offloaded: false,
        expected: &[(43966, ALLOW, "identified dns")],
    },
    Case {
        capture: "dns/dns-tcp.pcap",
        server: "209.87.249.18",
        proto: "tcp",
        port: 53,
        app: "dns",
        extra: "",
        offloaded: false,
        expected: &[(33779, ALLOW, "identified dns")],
    },
];

/// The tunnelling captures, refused on a path that does not allow them.
const REFUSED: &[Case] = &[
    // CONNECT carrying SMTP (after the rewrite below) and CONNECT carrying TLS.
    Case {
        capture: "http/http-connect-tls-proxy.pcap",
        server: "192.168.1.146",
        proto: "tcp",
        port: 8080,
        app: "http",
        extra: "",
        offloaded: true,
        expected: &[(1714, MISMATCH, "mismatch http-connect")],
    },
    // SSH and TLS on one port (sslh): the TLS connection passes, the SSH one does not.
    Case {
        capture: "ssh/sslh-ssh-and-tls-same-port.pcap",
        server: "192.168.2.230",
        proto: "tcp",
        port: 443,
        app: "tls",
        extra: "",
        offloaded: false,
        expected: &[(49641, MISMATCH, "mismatch ssh"), (49643, ALLOW, "identified tls")],
    },
    // DNS tunnels: iodine (NULL queries), dnscat2 (hex labels in MX/CNAME/TXT queries).
    Case {
        capture: "dns/dns-tunnel-iodine.pcap",
        server: "10.0.2.20",
        proto: "udp",
        port: 53,
        app: "dns",
        extra: "",
        offloaded: false,
        expected: &[(44639, MISMATCH, "mismatch dns-tunnel")],
    },
    Case {
        capture: "dns/dns-tunnel-dnscat2.pcap",
        server: "192.168.203.167",
        proto: "udp",
        port: 53,
        app: "dns",
        extra: "",
        offloaded: true,
        expected: &[(56373, MISMATCH, "mismatch dns-tunnel")],
    },
    // HTTP on a port the policy says carries something else: RDP on 80, SMTP on 80 (the
    // request rides on the SYN: the SYN itself is refused).
    Case {
        capture: "http/http-te-cl-smuggling.pcap",
        server: "192.168.1.200",
        proto: "tcp",
        port: 80,
        app: "rdp",
        extra: "",
        offloaded: false,
        expected: &[(40004, MISMATCH, "mismatch http")],
    },
    Case {
        capture: "tcp-odd/tcp-syn-with-data.pcap",
        server: "192.168.0.2",
        proto: "tcp",
        port: 80,
        app: "smtp",
        extra: "",
        offloaded: false,
        expected: &[(80, MISMATCH, "mismatch http")],
    },
    // An SSH server where the policy expects SMTP (server-first: its banner is checked).
    Case {
        capture: "ssh/ssh2-curve25519.pcap",
        server: "192.168.1.32",
        proto: "tcp",
        port: 22,
        app: "smtp",
        extra: "",
        offloaded: false,
        expected: &[(60906, MISMATCH, "mismatch ssh")],
    },
];

fn run_cases(dir: &Path, cases: &[Case]) {
    for c in cases {
        let flows = replay(
            &policy(c.server, c.proto, c.port, c.app, c.extra),
            &dir.join(c.capture),
            c.offloaded,
            c.server,
            u64::from(c.port),
        );
        check(&format!("{} as {}", c.capture, c.app), &flows, c.expected);
    }
}

#[test]
fn the_application_captures_are_identified_as_what_they_are() {
    let Some(dir) = shared() else { return };
    run_cases(&dir, IDENTIFIED);
    // The Citrix capture keeps each frame's 4-byte FCS after the IP packet, which the gate
    // refuses (an Ethernet trailer): replayed from a copy without them.
    let tmp = Scratch::new("ica");
    let ica = tmp.0.join("citrix-ica.pcap");
    rewrite(&dir.join("remote-access/citrix-ica.pcap"), &ica, &[]);
    let flows = replay(&policy("22.0.0.7", "tcp", 1494, "ica", ""), &ica, false, "22.0.0.7", 1494);
    check("citrix-ica as ica", &flows, &[(45225, ALLOW, "identified ica")]);
}

#[test]
fn the_tunnelling_captures_are_refused_on_a_path_that_does_not_allow_them() {
    let Some(dir) = shared() else { return };
    run_cases(&dir, REFUSED);
    // CONNECT to a mail server, then SMTP in the tunnel (the proxy's address moved out of
    // 240.0.0.0/4, which the gate refuses before any inspection).
    let tmp = Scratch::new("connect");
    let moved = tmp.0.join("connect-smtp.pcap");
    rewrite(&dir.join("http/http-connect-smtp-tunnel.pcap"), &moved, &[("254.228.86.79", "203.0.113.79")]);
    let flows = replay(&policy("203.0.113.79", "tcp", 8240, "http", ""), &moved, false, "203.0.113.79", 8240);
    check("CONNECT carrying SMTP", &flows, &[(3378, MISMATCH, "mismatch http-connect")]);
    // ... and on the mail port's own service, the proxy's HTTP is not SMTP.
    let flows = replay(&policy("203.0.113.79", "tcp", 8240, "smtp", ""), &moved, false, "203.0.113.79", 8240);
    check("CONNECT on an SMTP service", &flows, &[(3378, MISMATCH, "mismatch http-connect")]);
}

#[test]
fn a_post_quantum_client_hello_over_several_segments_and_alpha_prime_server_names() {
    let Some(dir) = shared() else { return };
    // Chrome's ClientHello with an X25519Kyber768 key share spans several segments (its
    // source, 0.0.51.217, is moved to a documentation address; the capture's checksums,
    // left to the offload, are completed). It also carries Chrome's GREASE ECH extension,
    // which cannot be told from a real one: under an `sni_allow` list it is refused even
    // for an allowed name (α' terminals need ECH switched off).
    let tmp = Scratch::new("kyber");
    let kyber = tmp.0.join("kyber.pcap");
    rewrite(&dir.join("tls/tls13-chrome-kyber-large-ch.pcap"), &kyber, &[("0.0.51.217", "198.51.100.217")]);
    let cases: [(&str, &str, bool, &Path, u64, Expect); 6] = [
        ("142.250.200.14", "", false, &kyber, 13783, (13783, ALLOW, "identified tls")),
        (
            "142.250.200.14",
            "sni_allow = [\"*.google.com\"]",
            false,
            &kyber,
            13783,
            (13783, MISMATCH, "mismatch tls"),
        ),
        (
            "142.250.200.14",
            "sni_allow = [\"portal.example.lg.jp\"]",
            false,
            &kyber,
            13783,
            (13783, MISMATCH, "mismatch tls"),
        ),
        (
            "142.251.111.105",
            "sni_allow = [\"www.google.com\"]",
            true,
            &dir.join("tls/tls-clienthello-mtu300.pcap"),
            38576,
            (38576, ALLOW, "identified tls"),
        ),
        (
            "142.251.111.105",
            "sni_allow = [\"*.example.com\"]",
            true,
            &dir.join("tls/tls-clienthello-mtu300.pcap"),
            38576,
            (38576, MISMATCH, "mismatch tls"),
        ),
        // ECH: the outer name is allowed, but the real one is hidden.
        (
            "162.159.138.85",
            "sni_allow = [\"cloudflare-ech.com\"]",
            false,
            &dir.join("tls/tls13-ech.pcap"),
            51066,
            (51066, MISMATCH, "mismatch tls"),
        ),
    ];
    for (server, extra, offloaded, capture, sport, expected) in cases {
        let flows = replay(&policy(server, "tcp", 443, "tls", extra), capture, offloaded, server, 443);
        let flows: Vec<Value> = flows.into_iter().filter(|f| f["sport"] == sport).collect();
        check(&format!("{} with {extra:?}", capture.display()), &flows, &[expected]);
    }
}

#[test]
fn an_attachment_on_the_text_leg_is_cut_before_the_end_of_its_data() {
    let Some(dir) = shared() else { return };
    // The relay (10.10.1.4) delivering into LGWAN (74.53.140.153): a MIME message with an
    // HTML alternative and an attachment. Cut at its first part that is not text, so the
    // end of data (".") never reaches the server.
    let capture = dir.join("mail/smtp-plain-attachments.pcap");
    let flows = replay(&text_leg_policy("10.10.1.4", "74.53.140.153"), &capture, false, "74.53.140.153", 25);
    check("the text leg", &flows, &[(1470, "deny:not-sanitized", "not-sanitized smtp")]);
    assert_eq!(flows[0]["inspection"]["detail"], "part is not text/plain");
    assert!(flows[0]["dropped"].as_u64().unwrap() > 0 && flows[0]["forwarded"].as_u64().unwrap() > 0);
}

/// Copies a pcap, replacing IPv4 addresses (in Ethernet frames), dropping what follows the
/// IP packet beyond the minimum frame (a captured FCS), and making the IPv4 header and
/// TCP/UDP checksums right.
fn rewrite(from: &Path, to: &Path, map: &[(&str, &str)]) {
    use pcap_file::pcap::{PcapReader, PcapWriter};
    let map: Vec<([u8; 4], [u8; 4])> = map
        .iter()
        .map(|(a, b)| (a.parse::<Ipv4Addr>().unwrap().octets(), b.parse::<Ipv4Addr>().unwrap().octets()))
        .collect();
    let mut reader = PcapReader::new(std::fs::File::open(from).unwrap()).unwrap();
    let mut writer = PcapWriter::with_header(std::fs::File::create(to).unwrap(), reader.header()).unwrap();
    while let Some(p) = reader.next_packet() {
        let mut p = p.unwrap().into_owned();
        let mut data = p.data.to_vec();
        if data.len() >= 34 && data[12..14] == [0x08, 0x00] {
            for at in [26, 30] {
                if let Some((_, to)) = map.iter().find(|(a, _)| data[at..at + 4] == *a) {
                    data[at..at + 4].copy_from_slice(to);
                }
            }
            fix_checksums(&mut data);
            let total = usize::from(u16::from_be_bytes([data[16], data[17]]));
            data.truncate((14 + total).max(60).min(data.len()));
        }
        p.orig_len = data.len() as u32;
        p.data = data.into();
        writer.write_packet(&p).unwrap();
    }
}

fn sum(bytes: &[u8]) -> u32 {
    bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn fix_checksums(frame: &mut [u8]) {
    let ip = 14;
    let hlen = usize::from(frame[ip] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([frame[ip + 2], frame[ip + 3]]));
    frame[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
    let c = fold(sum(&frame[ip..ip + hlen]));
    frame[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    let proto = frame[ip + 9];
    let fragment = u16::from_be_bytes([frame[ip + 6], frame[ip + 7]]) & 0x3fff != 0;
    let at = match proto {
        6 => 16,
        17 => 6,
        _ => return,
    };
    let (l4, end) = (ip + hlen, ip + total);
    if fragment || end > frame.len() || end < l4 + at + 2 {
        return;
    }
    frame[l4 + at..l4 + at + 2].copy_from_slice(&[0, 0]);
    let len = (end - l4) as u32;
    let pseudo = sum(&frame[ip + 12..ip + 20]) + u32::from(proto) + len;
    let c = fold(pseudo + sum(&frame[l4..end]));
    frame[l4 + at..l4 + at + 2].copy_from_slice(&c.to_be_bytes());
}
