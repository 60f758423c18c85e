//! An attacker's review of the separation: attacks written as the frames an internet
//! host, a compromised LGWAN host or a host beyond the core router sends, with the verdict
//! at every port each frame reaches.
//!
//! - `finding_*` tests are ways around the rule that the review found in an earlier
//!   version; each doc comment says what broke and why, and the test holds the fix
//!   (docs/security.md lists them).
//! - `held_*` tests are attacks that were already refused but that no other test
//!   covered.

mod common;

use std::net::Ipv6Addr;

use common::*;
use sekisho_engine::Action::{Drop, Forward};
use sekisho_engine::{Engine, Ingress, Now};
use sekisho_policy::Timestamp;
use sekisho_testkit::flags::*;
use sekisho_testkit::*;

const MN_BATCH: &str = "198.18.10.5";
const LG_JUKI: &str = "198.18.20.30";
const LG_TERM: &str = "198.18.20.5";
const VDI: &str = "203.0.113.50";
const NET: &str = "203.0.113.7";
const RELAY: &str = "198.18.40.10";
const DNS: &str = "198.18.40.53";
const MGMT: &str = "198.18.50.1";
const SZ_HOST: &str = "198.18.40.7";

// ---- helpers ----------------------------------------------------------------------------

/// Sends `frame` through `path` in order and returns the reason at each interface it
/// reached: it stops after the first drop (a dropped frame reaches no further port).
fn hops(e: &Engine, now: Timestamp, frame: &[u8], path: &[Ingress]) -> Vec<String> {
    let mut out = Vec::new();
    for at in path {
        let v = e.process(Now::at(now), *at, frame);
        out.push(name(e, &v));
        if v.action == Drop {
            break;
        }
    }
    out
}

/// Asserts that `frame` is dropped at the first interface of `path` (any deny reason),
/// and shows every verdict it got on the way when it is not.
#[track_caller]
fn refused_at_first(e: &Engine, now: Timestamp, frame: &[u8], path: &[Ingress], what: &str) {
    let got = hops(e, now, frame, path);
    assert!(
        got.len() == 1 && got[0].starts_with("deny:"),
        "{what}: must be dropped at {:?}, but the verdicts along its way were {got:?}",
        path[0]
    );
}

/// Records in `leaks` (instead of panicking) when `frame` is not dropped at the first
/// interface of `path`, so that a test with several cases reports all of them.
fn note_if_not_refused(
    leaks: &mut Vec<String>,
    e: &Engine,
    now: Timestamp,
    frame: &[u8],
    path: &[Ingress],
    what: &str,
) {
    let got = hops(e, now, frame, path);
    if !(got.len() == 1 && got[0].starts_with("deny:")) {
        leaks.push(format!("{what}: {got:?}"));
    }
}

#[track_caller]
fn assert_no_leaks(leaks: &[String]) {
    assert!(leaks.is_empty(), "{} case(s) crossed:\n  {}", leaks.len(), leaks.join("\n  "));
}

/// The first `n` bytes of the IP packet inside `frame`, as an ICMP error quotes it.
fn quote(frame: &[u8], n: usize) -> Vec<u8> {
    let p = ip_packet(frame);
    p[..n.min(p.len())].to_vec()
}

/// ICMP destination unreachable (port unreachable) quoting `quoted`, padded with `extra`
/// bytes.
fn unreachable(src: &str, dst: &str, quoted: &[u8], extra: usize) -> Vec<u8> {
    let data = [quoted, &vec![0x41; extra][..]].concat();
    icmp(src, dst, 3, 3, [0; 4], &data, 64)
}

/// Four (sequence, acknowledgement) guesses, 2^31 apart in each number: whatever the two
/// ends' real sequence numbers are, one of the four lies in the half before each.
fn four_guesses() -> [(u32, u32); 4] {
    let (s, a) = (0x1234_5678u32, 0x9abc_def0u32);
    [(s, a), (s ^ 0x8000_0000, a), (s, a ^ 0x8000_0000), (s ^ 0x8000_0000, a ^ 0x8000_0000)]
}

/// The juki-batch exception connection (mynumber inside → lgwan outside), its SSH banner
/// sent (so its application is checked).
fn juki(e: &Engine, now: Timestamp) -> TcpConn {
    let mut c = TcpConn::new((MN_BATCH, 40000), (LG_JUKI, 22));
    let r = "allow:exception:juki-batch";
    crossing(e, now, &c.syn(), &[(inside("mynumber"), r), (outside("lgwan"), r)]);
    crossing(e, now, &c.syn_ack(), &[(inside("lgwan"), r), (outside("mynumber"), r)]);
    crossing(e, now, &c.client(ACK, b""), &[(inside("mynumber"), r), (outside("lgwan"), r)]);
    crossing(
        e,
        now,
        &c.client(ACK | PSH, b"SSH-2.0-batch\r\n"),
        &[(inside("mynumber"), r), (outside("lgwan"), r)],
    );
    c
}

/// An lgwan terminal's screen-transfer connection to the internet VDI host, handshake
/// only (no payload yet).
fn vdi(e: &Engine) -> TcpConn {
    let mut c = TcpConn::new((LG_TERM, 50000), (VDI, 3389));
    let r = "allow:path:screen-transfer/1";
    crossing(e, NOW, &c.syn(), &[(inside("lgwan"), r), (outside("internet"), r)]);
    crossing(e, NOW, &c.syn_ack(), &[(inside("internet"), r), (outside("lgwan"), r)]);
    crossing(e, NOW, &c.client(ACK, b""), &[(inside("lgwan"), r), (outside("internet"), r)]);
    c
}

/// A TCP handshake whose client frames cross `client_path` and server frames
/// `server_path`; `false` when any frame was dropped.
fn handshake_through(e: &Engine, c: &mut TcpConn, client_path: &[Ingress], server_path: &[Ingress]) -> bool {
    let ok = |frame: &[u8], path: &[Ingress]| {
        path.iter().all(|at| e.process(Now::at(NOW), *at, frame).action == Forward)
    };
    ok(&c.syn(), client_path) && ok(&c.syn_ack(), server_path) && ok(&c.client(ACK, b""), client_path)
}

/// The lab policy plus a second exception, over IPv6.
fn policy_with_v6_exception() -> String {
    format!(
        "{POLICY}\n[[exception]]\nname = \"juki-v6\"\nfrom = \"2001:db8:10::5\"\nto = \"2001:db8:20::30\"\n\
         service = \"sftp\"\napproval = \"R8-情政-013\"\n"
    )
}

/// The lab policy with the internet zone beyond the core router (`upstream = true`, no
/// port): the common deployment where the internet connection is a separate firewall.
/// Ports keep their indices for mynumber (0) and lgwan (1).
fn policy_with_upstream_internet() -> String {
    let port = "[[port]]\nname = \"internet-uplink\"\nzone = \"internet\"\ninside = \"in-in\"\noutside = \"in-out\"\nrouters = [\"203.0.113.1\", \"2001:db8:30::1\"]\n";
    let prefixes = "prefixes = [\"203.0.113.0/24\", \"198.51.100.0/24\", \"0.0.0.0/0\", \"2001:db8:30::/48\", \"::/0\"]\n";
    assert!(POLICY.contains(port) && POLICY.contains(prefixes));
    POLICY.replace(port, "").replace(prefixes, &format!("{prefixes}upstream = true\n"))
}

/// The lab policy plus the LGWAN backbone (other municipalities, LGWAN-ASP) as an
/// upstream lgwan zone beyond the core router.
fn policy_with_upstream_lgwan() -> String {
    format!(
        "{POLICY}\n[[zone]]\nname = \"lgwan-wan\"\nkind = \"lgwan\"\nprefixes = [\"198.18.21.0/24\", \"2001:db8:21::/48\"]\nupstream = true\n"
    )
}

// =========================================================================================
// Findings (each was a way across before its fix)
// =========================================================================================

/// Finding 1 — TCP: a segment with SYN+ACK from the responder is taken for a "retransmitted
/// SYN+ACK" whenever its sequence number lies anywhere *before* the responder's highest
/// sequence number and its acknowledgement anywhere not after the initiator's: half of
/// the sequence space each, payload of any length, no window check. A blind spoofer in the
/// responder's zone (here a compromised LGWAN host claiming 198.18.20.30) gets a frame with
/// 1.2 KB of its own data into the mynumber host with at most four guesses per client port.
#[test]
fn finding_a_forged_syn_ack_crosses_into_mynumber_with_four_blind_guesses() {
    let e = engine();
    let c = juki(&e, NOW);
    let payload = vec![0x58; 1200];
    let path = [inside("lgwan"), outside("mynumber")];
    // The same guesses as ordinary segments are refused, as they must be.
    for (seq, ack) in four_guesses() {
        let plain = c.server_at(ACK | PSH, seq, ack, &payload);
        assert_eq!(hops(&e, NOW, &plain, &path), ["deny:out-of-window"]);
    }
    // With SYN added: before the fix exactly one of the four crossed lg-in and mn-out.
    let mut leaks = Vec::new();
    for (seq, ack) in four_guesses() {
        let forged = c.server_at(SYN | ACK, seq, ack, &payload);
        note_if_not_refused(
            &mut leaks,
            &e,
            NOW,
            &forged,
            &path,
            &format!("forged SYN+ACK seq {seq:#x} ack {ack:#x}"),
        );
    }
    assert_no_leaks(&leaks);
}

/// Finding 1, second consequence (denial of service): the forged SYN+ACK's payload is
/// taken as the flow's first payload; RDP must come from the initiator first, so the
/// application check cuts the terminal's real screen-transfer connection for good.
#[test]
fn finding_a_forged_syn_ack_with_data_cuts_a_screen_transfer_before_its_first_payload() {
    let e = engine();
    let mut v = vdi(&e);
    // Any internet host, claiming the VDI's address, four guesses.
    for (seq, ack) in four_guesses() {
        let forged = v.server_at(SYN | ACK, seq, ack, b"not rdp");
        let _ = hops(&e, NOW, &forged, &[inside("internet"), outside("lgwan")]);
    }
    let first = v.client(ACK | PSH, &[3, 0, 0, 19, 14, 0xe0]);
    assert_eq!(
        hops(&e, NOW, &first, &[inside("lgwan"), outside("internet")]),
        ["allow:path:screen-transfer/1", "allow:path:screen-transfer/1"],
        "the terminal's own first RDP bytes"
    );
}

/// Finding 2 — ICMP: the RFC 5927 check runs only when the quote holds the TCP sequence
/// number. A quote of the IP header and the 4 port bytes has none, so the check is
/// skipped: a blind host of the peer's zone claiming the peer's address gets an error
/// through (IPv4: the quoted header's options; IPv6: a quoted extension header carries
/// ~1.1 KB of its data, next test).
#[test]
fn finding_an_icmp_error_quoting_only_the_ports_skips_the_sequence_check() {
    let e = engine();
    let mut c = juki(&e, NOW);
    let seg = c.client(ACK | PSH, b"ls\n");
    let r = "allow:exception:juki-batch";
    crossing(&e, NOW, &seg, &[(inside("mynumber"), r), (outside("lgwan"), r)]);
    // A segment the client never sent.
    let never = c.client_at(ACK, c.client_next().wrapping_add(5_000_000), 0, b"");
    // 8 bytes of TCP quoted: the check runs and refuses it (held).
    let full = unreachable(LG_JUKI, MN_BATCH, &quote(&never, 28), 0);
    assert_eq!(hops(&e, NOW, &full, &[inside("lgwan")]), ["deny:out-of-window"]);
    // 4 bytes: before the fix, allow:related at lg-in and mn-out.
    let short = unreachable(LG_JUKI, MN_BATCH, &quote(&never, 24), 0);
    refused_at_first(&e, NOW, &short, &[inside("lgwan"), outside("mynumber")], "4-byte TCP quote");
}

/// Finding 2 over IPv6: the quoted packet carries a 1184-byte Destination Options header
/// (attacker data) before 4 bytes of TCP; the whole error is 1276 bytes, within the
/// 1280-byte limit, and needs no knowledge of the connection but its ports.
#[test]
fn finding_an_icmpv6_error_carries_a_kilobyte_into_mynumber_without_the_sequence_number() {
    let e = Engine::new(policy(&policy_with_v6_exception()));
    let (mn, lg) = ("2001:db8:10::5", "2001:db8:20::30");
    let mut c = TcpConn::new((mn, 40000), (lg, 22));
    let r = "allow:exception:juki-v6";
    crossing(&e, NOW, &c.syn(), &[(inside("mynumber"), r), (outside("lgwan"), r)]);
    crossing(&e, NOW, &c.syn_ack(), &[(inside("lgwan"), r), (outside("mynumber"), r)]);
    crossing(&e, NOW, &c.client(ACK, b""), &[(inside("mynumber"), r), (outside("lgwan"), r)]);
    crossing(
        &e,
        NOW,
        &c.client(ACK | PSH, b"SSH-2.0-batch\r\n"),
        &[(inside("mynumber"), r), (outside("lgwan"), r)],
    );
    // Destination options: next header TCP, (147 + 1) × 8 = 1184 bytes, PadN options full
    // of the attacker's bytes.
    let mut opts = vec![6u8, 147];
    while opts.len() < 1184 {
        let n = (1184 - opts.len() - 2).min(255);
        opts.push(1);
        opts.push(n as u8);
        opts.extend(std::iter::repeat_n(b'S', n));
    }
    let ports = [&40000u16.to_be_bytes()[..], &22u16.to_be_bytes()[..]].concat();
    let q_src: Ipv6Addr = mn.parse().unwrap();
    let q_dst: Ipv6Addr = lg.parse().unwrap();
    let quoted = ipv6(q_src, q_dst, 60, 64, &[opts, ports].concat());
    let err = icmp(lg, mn, 1, 4, [0; 4], &quoted, 64);
    assert_eq!(err.len() - 14, 1276);
    refused_at_first(&e, NOW, &err, &[inside("lgwan"), outside("mynumber")], "1.2 KB ICMPv6 error");
}

/// Finding 3 — link traffic judged on `outside`: DHCP-shaped UDP (67 → 68, 547 → 546)
/// counts as link traffic when its source is link-local (169.254/16, which routers
/// forward), unspecified or *any* address of the port's zone, and its destination of the
/// port's zone. On a port's outside that lets a host beyond the core router — here the
/// internet as an upstream zone — send 1.4 KB datagrams to any mynumber host: neither the
/// policy (`deny:mynumber-isolation`) nor the outside contract (`deny:spoofed-source`) is
/// consulted.
#[test]
fn finding_dhcp_shaped_datagrams_from_beyond_the_router_reach_mynumber_as_link_traffic() {
    let e = Engine::new(policy(&policy_with_upstream_internet()));
    let data = vec![0x42; 1400];
    // Held: the same datagram from an internet address, or a spoofed mynumber address on
    // other ports.
    expect(&e, NOW, outside("mynumber"), &udp(NET, 67, MN_BATCH, 68, &data), Drop, "deny:mynumber-isolation");
    expect(
        &e,
        NOW,
        outside("mynumber"),
        &udp("198.18.10.77", 5000, MN_BATCH, 5000, &data),
        Drop,
        "deny:spoofed-source",
    );
    // What must keep working: the router relaying DHCP to its segment.
    expect(
        &e,
        NOW,
        outside("mynumber"),
        &udp("198.18.10.1", 67, MN_BATCH, 68, &[2; 300]),
        Forward,
        "allow:link",
    );
    // The leaks.
    let mut leaks = Vec::new();
    for (frame, what) in [
        (udp("169.254.7.7", 67, MN_BATCH, 68, &data), "IPv4 link-local source → mynumber"),
        (udp("198.18.10.77", 67, MN_BATCH, 68, &data), "spoofed mynumber source → mynumber"),
        (udp("2001:db8:10::77", 547, "2001:db8:10::5", 546, &data), "spoofed mynumber DHCPv6 → mynumber"),
        (udp("169.254.7.7", 67, "198.18.20.5", 68, &data), "IPv4 link-local source → lgwan"),
    ] {
        let at = if what.ends_with("lgwan") { outside("lgwan") } else { outside("mynumber") };
        note_if_not_refused(&mut leaks, &e, NOW, &frame, &[at], what);
    }
    assert_no_leaks(&leaks);
}

/// Finding 4 — flow-table shares are per (port, side), and every zone whose connections
/// end on a port arrives on that port's `outside`: one origin. In the β model an internet
/// host completes handshakes with the LGWAN-side VDI (three frames each, established,
/// never evictable, an hour each) until lg-out's origin is full — then the mynumber
/// exception, which also arrives on lg-out, is refused. One host, no botnet.
#[test]
fn finding_internet_handshakes_to_an_lgwan_vdi_starve_the_mynumber_exception() {
    let beta = "\n[[path]]\nname = \"beta-vdi\"\nmethod = \"screen-transfer\"\n  [[path.leg]]\n  from = \"zone:internet\"\n  to = \"198.18.20.60\"\n  service = \"rdp\"\n";
    let text = format!("{}{beta}", POLICY.replace("capacity = 1000", "capacity = 2000"));
    let e = Engine::new(policy(&text));
    let mut refused = 0;
    for port in 1024..4024u16 {
        let mut c = TcpConn::new(("198.51.100.9", port), ("198.18.20.60", 3389));
        if !handshake_through(
            &e,
            &mut c,
            &[inside("internet"), outside("lgwan")],
            &[inside("lgwan"), outside("internet")],
        ) {
            refused += 1;
        }
    }
    assert!(refused > 0, "the flood filled what it could");
    let (held, _) = e.origin_stats(outside("lgwan"));
    let c = TcpConn::new((MN_BATCH, 40001), (LG_JUKI, 22));
    assert_eq!(
        hops(&e, NOW, &c.syn(), &[inside("mynumber"), outside("lgwan")]),
        ["allow:exception:juki-batch", "allow:exception:juki-batch"],
        "the mynumber exception after one internet host's handshakes ({held} established flows charged to lg-out, \
         {refused} of 3000 refused)"
    );
}

/// Finding 4 in the α lab policy: handshakes with the mail relay fill the sanitization
/// port's outside, which LGWAN's DNS (and, in real policies, file sanitisation and web
/// isolation) and management share with the internet.
#[test]
fn finding_internet_handshakes_to_the_relay_starve_lgwan_and_management_at_the_sanitizer() {
    let e = Engine::new(policy(&POLICY.replace("capacity = 1000", "capacity = 2000")));
    for port in 1024..4024u16 {
        let mut c = TcpConn::new(("198.51.100.9", port), (RELAY, 25));
        let _ = handshake_through(
            &e,
            &mut c,
            &[inside("internet"), outside("sanitization")],
            &[inside("sanitization"), outside("internet")],
        );
    }
    let (held, _) = e.origin_stats(outside("sanitization"));
    let mut starved = Vec::new();
    let query = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1];
    let dns =
        hops(&e, NOW, &udp(LG_TERM, 7000, DNS, 53, &query), &[inside("lgwan"), outside("sanitization")]);
    if dns != ["allow:rule:lgwan-dns", "allow:rule:lgwan-dns"] {
        starved.push(format!("LGWAN's DNS query to the sanitization zone: {dns:?}"));
    }
    let m = TcpConn::new((MGMT, 40000), (SZ_HOST, 22));
    let syn = hops(&e, NOW, &m.syn(), &[inside("management"), outside("sanitization")]);
    if syn != ["allow:rule:mgmt-any", "allow:rule:mgmt-any"] {
        starved.push(format!("management's SSH SYN to a sanitiser: {syn:?}"));
    }
    assert!(
        starved.is_empty(),
        "after one internet host's handshakes with the relay ({held} established flows charged to sz-out):\n  {}",
        starved.join("\n  ")
    );
}

/// Finding 5 — ICMP echo keys: a request is keyed `(ident, 0)`, a reply `(0, ident)`. With
/// identifier 0 both are `(0, 0)`, so the *responder's* echo request rides on the
/// requester's flow (class 8 says a request the other way is a connection of its own):
/// a sanitization host pings into the management zone, which no rule allows.
#[test]
fn finding_with_identifier_zero_the_responder_s_echo_request_rides_the_requester_s_flow() {
    let e = engine();
    let r = "allow:rule:mgmt-any";
    crossing(
        &e,
        NOW,
        &ping(MGMT, SZ_HOST, 0, false),
        &[(inside("management"), r), (outside("sanitization"), r)],
    );
    // Held: with any other identifier the responder's request is its own connection.
    crossing(
        &e,
        NOW,
        &ping(MGMT, SZ_HOST, 9, false),
        &[(inside("management"), r), (outside("sanitization"), r)],
    );
    crossing(&e, NOW, &ping(SZ_HOST, MGMT, 9, false), &[(inside("sanitization"), "deny:no-rule")]);
    // Identifier 0: before the fix, allow:rule:mgmt-any at sz-in and mg-out.
    let back = ping(SZ_HOST, MGMT, 0, false);
    refused_at_first(
        &e,
        NOW,
        &back,
        &[inside("sanitization"), outside("management")],
        "sanitiser's echo request, id 0",
    );
}

/// Finding 7 — tunnel detection: VXLAN is recognised only on UDP 4789 with its header in
/// the same packet. Linux's own VXLAN default port (8472), or a first fragment that ends
/// with the UDP header, carries an inner frame (here a SYN aimed at mynumber) across
/// zones on a rule that does not name a tunnel.
#[test]
fn finding_vxlan_on_the_linux_port_or_split_after_the_udp_header_is_not_a_tunnel() {
    let e = engine();
    let inner = tcp("198.18.40.99", 1, MN_BATCH, 22, SYN, b"");
    let vxlan = [&[0x08, 0, 0, 0, 0, 0, 1, 0][..], &inner].concat();
    // Held: on 4789, in one packet.
    expect(&e, NOW, inside("management"), &udp(MGMT, 40000, SZ_HOST, 4789, &vxlan), Drop, "deny:tunnel");
    // The Linux default port.
    let mut leaks = Vec::new();
    let linux = udp(MGMT, 40000, SZ_HOST, 8472, &vxlan);
    note_if_not_refused(
        &mut leaks,
        &e,
        NOW,
        &linux,
        &[inside("management"), outside("sanitization")],
        "VXLAN on 8472",
    );
    // Split after the UDP header.
    let datagram = udp_datagram(40001, 4789, &vxlan);
    let (s, d) = (MGMT.parse().unwrap(), SZ_HOST.parse().unwrap());
    let first = eth(
        0x0800,
        &ipv4(s, d, 17, V4Opts { id: 4242, more_fragments: true, ..V4Opts::default() }, &datagram[..8]),
    );
    let later = eth(
        0x0800,
        &ipv4(s, d, 17, V4Opts { id: 4242, frag_offset: 1, ..V4Opts::default() }, &datagram[8..]),
    );
    let a = hops(&e, NOW, &first, &[inside("management")]);
    let b = hops(&e, NOW, &later, &[inside("management")]);
    if !(a[0].starts_with("deny:") || b[0].starts_with("deny:")) {
        leaks.push(format!("VXLAN split after its UDP header: first fragment {a:?}, later fragment {b:?}"));
    }
    assert_no_leaks(&leaks);
}

/// Finding 8 — IPv6 routing headers other than type 0 are accepted and the packet is
/// judged by its *current* destination. A segment routing header (type 4) addressed to
/// the core router's internet address is intra-zone at the internet port; a router that
/// processes it forwards the packet to the next segment — here the LGWAN backbone, an
/// upstream zone with no port to judge it again.
#[test]
fn finding_a_segment_routing_header_sends_internet_traffic_past_the_gate_via_the_router() {
    let e = Engine::new(policy(&policy_with_upstream_lgwan()));
    let (src, router, wan) = ("2001:db8:30::7", "2001:db8:30::1", "2001:db8:21::25");
    // Held: directly, it is an unsanitised crossing.
    expect(&e, NOW, inside("internet"), &udp(src, 5000, wan, 25, b"x"), Drop, "deny:unsanitized-crossing");
    // Via a segment list [wan, router], segments left 1.
    let wan_a: Ipv6Addr = wan.parse().unwrap();
    let router_a: Ipv6Addr = router.parse().unwrap();
    let mut srh = vec![17, 4, 4, 1, 1, 0, 0, 0];
    srh.extend_from_slice(&wan_a.octets());
    srh.extend_from_slice(&router_a.octets());
    let payload = [srh, udp_datagram(5000, 25, b"x")].concat();
    let frame = eth(0x86dd, &ipv6(src.parse().unwrap(), router_a, 43, 64, &payload));
    refused_at_first(&e, NOW, &frame, &[inside("internet")], "SRH via the core router to the LGWAN backbone");
}

/// Finding 9 — IPv6 spellings of IPv4 addresses other than mapped/compatible/translated:
/// the NAT64 well-known prefix (64:ff9b::/96, RFC 6052) and 6to4 (2002::/16, RFC 3056)
/// name IPv4 hosts, but fall to the internet catch-all `::/0`: an internet host's packet
/// to 64:ff9b::198.18.10.5 is `allow:intra-zone`. A NAT64 on the core router that
/// sources from its own addresses (Jool's default pool4) then delivers it from
/// 198.18.10.1 — the mynumber port's router, intra-zone there too.
#[test]
fn finding_nat64_and_6to4_spellings_of_mynumber_hosts_are_internet_addresses() {
    let e = engine();
    let mut leaks = Vec::new();
    for dst in ["64:ff9b::198.18.10.5", "64:ff9b::c612:1405", "2002:c612:a05::1"] {
        let frame = udp("2001:db8:30::7", 5000, dst, 22, b"x");
        note_if_not_refused(&mut leaks, &e, NOW, &frame, &[inside("internet")], dst);
    }
    assert_no_leaks(&leaks);
    // What the router's translation then looks like on mn-out: the gate cannot tell.
    expect(
        &e,
        NOW,
        outside("mynumber"),
        &udp("198.18.10.1", 5000, MN_BATCH, 22, b"x"),
        Forward,
        "allow:intra-zone",
    );
}

/// Finding 10 — VLAN: `vlans` admits a *single 802.1Q* tag, but a single 802.1ad (0x88a8)
/// or 0x9100 tag with the same VID is admitted too, and shares the 802.1Q flow key. The
/// switch beyond the port reads an S-tag as a different (service) VLAN.
/// Finding 6 — the application check looks at the first payload *seen*, not the first
/// bytes of the stream: an out-of-order segment (in window, 100 bytes ahead) saying EHLO
/// marks the flow checked, then the stream's real first bytes — HTTP here — fill the gap.
/// The relay reassembles a stream that starts with `GET`.
#[test]
fn finding_an_out_of_order_segment_satisfies_the_application_check() {
    let e = engine();
    let mut c = TcpConn::new((NET, 41000), (RELAY, 25));
    let r = "allow:path:mail-textify/1";
    let there = [inside("internet"), outside("sanitization")];
    crossing(&e, NOW, &c.syn(), &[(there[0], r), (there[1], r)]);
    crossing(&e, NOW, &c.syn_ack(), &[(inside("sanitization"), r), (outside("internet"), r)]);
    crossing(&e, NOW, &c.client(ACK, b""), &[(there[0], r), (there[1], r)]);
    let start = c.client_next();
    let http = b"GET /exfil HTTP/1.1\r\nHost: x\r\nX-Pad: .............................................................\r\n";
    assert_eq!(http.len(), 100);
    let ehlo = c.client_at(ACK | PSH, start.wrapping_add(100), 5001, b"EHLO client\r\n");
    let _ = hops(&e, NOW, &ehlo, &there);
    let stream_start = c.client_at(ACK | PSH, start, 5001, http);
    refused_at_first(&e, NOW, &stream_start, &there, "HTTP as the first bytes of an SMTP stream");
}

#[test]
fn finding_a_single_service_tag_is_taken_for_the_ports_802_1q_vlan() {
    let text = POLICY.replace(
        "outside = \"in-out\"\nrouters = [\"203.0.113.1\", \"2001:db8:30::1\"]\n",
        "outside = \"in-out\"\nrouters = [\"203.0.113.1\", \"2001:db8:30::1\"]\nvlans = [10]\n",
    );
    assert_ne!(text, POLICY);
    let e = Engine::new(policy(&text));
    let syn = tcp(NET, 1, RELAY, 25, SYN, b"");
    expect(&e, NOW, inside("internet"), &vlan(&syn, 0x8100, 10), Forward, "allow:path:mail-textify/1");
    let mut leaks = Vec::new();
    for tpid in [0x88a8u16, 0x9100] {
        let frame = vlan(&syn, tpid, 10);
        note_if_not_refused(
            &mut leaks,
            &e,
            NOW,
            &frame,
            &[inside("internet")],
            &format!("single tag TPID {tpid:#06x} VID 10"),
        );
    }
    assert_no_leaks(&leaks);
}

/// Finding 11 — configuration: `[link] allow_ethertypes` refuses IPv4, IPv6, ARP and VLAN
/// tags but accepts ethertypes that carry IP themselves (MPLS 0x8847/0x8848, PPPoE
/// session 0x8864). Listed, an internet host's MPLS-labelled IPv4 packet to mynumber is
/// `allow:link` and reaches the core router unjudged.
#[test]
fn finding_ethertypes_that_carry_ip_can_be_listed_as_link_traffic() {
    let mut leaks = Vec::new();
    for t in ["0x8847", "0x8848", "0x8864"] {
        let text = format!("{POLICY}\n[link]\nallow_ethertypes = [{t}]\n");
        let loaded = sekisho_policy::load_str(&text, "test.toml");
        if let Ok(p) = loaded {
            let e = Engine::new(p);
            let inner = ip_packet(&tcp(NET, 1, MN_BATCH, 22, SYN, b"")).to_vec();
            let mpls = eth(
                u16::from_str_radix(&t[2..], 16).unwrap(),
                &[&[0, 0x01, 0x01, 0x40][..], &inner].concat(),
            );
            let v = e.process(Now::at(NOW), inside("internet"), &mpls);
            leaks.push(format!(
                "allow_ethertypes = [{t}] loads; a frame of it carrying IPv4 to mynumber is {}",
                name(&e, &v)
            ));
        }
    }
    assert_no_leaks(&leaks);
}

// =========================================================================================
// Attacks that held (these pass)
// =========================================================================================

/// ICMP errors that are fragments, too large, of the other family, nested, or from a
/// router of another segment.
#[test]
fn held_icmp_errors_fragmented_oversized_cross_family_nested_or_from_another_router() {
    let e = engine();
    let mut c = juki(&e, NOW);
    let seg = c.client(ACK | PSH, b"ls\n");
    let r = "allow:exception:juki-batch";
    crossing(&e, NOW, &seg, &[(inside("mynumber"), r), (outside("lgwan"), r)]);
    let q = quote(&seg, 48);
    // Size: 576 bytes from the peer is related, 577 malformed.
    let at_limit = unreachable(LG_JUKI, MN_BATCH, &q, 576 - 20 - 8 - q.len());
    assert_eq!(at_limit.len() - 14, 576);
    assert_eq!(
        hops(&e, NOW, &at_limit, &[inside("lgwan"), outside("mynumber")]),
        ["allow:related", "allow:related"]
    );
    let over = unreachable(LG_JUKI, MN_BATCH, &q, 577 - 20 - 8 - q.len());
    assert_eq!(hops(&e, NOW, &over, &[inside("lgwan")]), ["deny:malformed"]);
    // An error that is itself a first fragment, and its later fragment.
    let body = ip_packet(&unreachable(LG_JUKI, MN_BATCH, &q, 0))[20..].to_vec();
    let (s, d) = (LG_JUKI.parse().unwrap(), MN_BATCH.parse().unwrap());
    let f1 = eth(
        0x0800,
        &ipv4(s, d, 1, V4Opts { id: 55, more_fragments: true, ..V4Opts::default() }, &body[..32]),
    );
    let f2 = eth(0x0800, &ipv4(s, d, 1, V4Opts { id: 55, frag_offset: 4, ..V4Opts::default() }, &body[32..]));
    assert_eq!(hops(&e, NOW, &f1, &[inside("lgwan")]), ["deny:fragment"]);
    assert_eq!(hops(&e, NOW, &f2, &[inside("lgwan")]), ["deny:fragment"]);
    // An ICMPv6 error quoting the IPv4 segment.
    let v6 = icmp("2001:db8:20::30", "2001:db8:10::5", 1, 4, [0; 4], &q, 64);
    assert_eq!(hops(&e, NOW, &v6, &[inside("lgwan")]), ["deny:no-flow"]);
    // An error quoting an error that quotes the segment.
    let inner = quote(&unreachable(MN_BATCH, LG_JUKI, &q, 0), 76);
    let nested = unreachable(LG_JUKI, MN_BATCH, &inner, 0);
    assert_eq!(hops(&e, NOW, &nested, &[inside("lgwan")]), ["deny:no-flow"]);
    // The LGWAN segment's router, arriving on the mynumber port: not this segment's router.
    let wrong_router = unreachable("198.18.20.1", MN_BATCH, &q, 0);
    assert_eq!(hops(&e, NOW, &wrong_router, &[outside("mynumber")]), ["deny:icmp-third-party"]);
    // The mynumber router's address, but arriving on the inside: routers count only on
    // the outside.
    let inside_router = unreachable("198.18.10.1", LG_JUKI, &quote(&c.server(ACK, b""), 48), 0);
    assert_eq!(hops(&e, NOW, &inside_router, &[inside("mynumber")]), ["deny:icmp-third-party"]);
}

/// IPv6 errors: the quoted packet's extension headers are walked (a full quote behind a
/// Destination Options header is related), and 1281 bytes is too many.
#[test]
fn held_icmpv6_errors_quote_through_extension_headers_and_stop_at_1280_bytes() {
    let e = Engine::new(policy(&policy_with_v6_exception()));
    let (mn, lg) = ("2001:db8:10::5", "2001:db8:20::30");
    let mut c = TcpConn::new((mn, 40000), (lg, 22));
    let r = "allow:exception:juki-v6";
    crossing(&e, NOW, &c.syn(), &[(inside("mynumber"), r), (outside("lgwan"), r)]);
    crossing(&e, NOW, &c.syn_ack(), &[(inside("lgwan"), r), (outside("mynumber"), r)]);
    crossing(&e, NOW, &c.client(ACK, b""), &[(inside("mynumber"), r), (outside("lgwan"), r)]);
    let seg = c.client(ACK | PSH, b"SSH-2.0-batch\r\n");
    crossing(&e, NOW, &seg, &[(inside("mynumber"), r), (outside("lgwan"), r)]);
    let tcp_part = &ip_packet(&seg)[40..];
    let opts = [6u8, 0, 1, 4, 0, 0, 0, 0];
    let quoted =
        ipv6(mn.parse().unwrap(), lg.parse().unwrap(), 60, 64, &[&opts[..], &tcp_part[..20]].concat());
    let err = icmp(lg, mn, 1, 4, [0; 4], &quoted, 64);
    assert_eq!(
        hops(&e, NOW, &err, &[inside("lgwan"), outside("mynumber")]),
        ["allow:related", "allow:related"]
    );
    // The same quote with a sequence number never sent.
    let mut bad = tcp_part[..20].to_vec();
    bad[4..8].copy_from_slice(&c.client_next().wrapping_add(9_000_000).to_be_bytes());
    let quoted = ipv6(mn.parse().unwrap(), lg.parse().unwrap(), 60, 64, &[&opts[..], &bad[..]].concat());
    let err = icmp(lg, mn, 1, 4, [0; 4], &quoted, 64);
    assert_eq!(hops(&e, NOW, &err, &[inside("lgwan")]), ["deny:out-of-window"]);
    // 1281 bytes.
    let big = icmp(
        lg,
        mn,
        1,
        4,
        [0; 4],
        &[ip_packet(&seg), &vec![0u8; 1281 - 40 - 8 - ip_packet(&seg).len()][..]].concat(),
        64,
    );
    assert_eq!(big.len() - 14, 1281);
    assert_eq!(hops(&e, NOW, &big, &[inside("lgwan")]), ["deny:malformed"]);
}

/// Later fragments with another datagram's identifier, another destination, at another
/// port, or the other way; IPv6 atomic fragments of a forbidden flow.
#[test]
fn held_fragments_do_not_borrow_another_datagrams_record() {
    let e = engine();
    // Management to a sanitiser: a service that names no application (a datagram under
    // inspection is never fragmented).
    let (s, d) = (MGMT.parse().unwrap(), DNS.parse().unwrap());
    let dns = udp_datagram(5353, 53, &dns_query(300, "a-name.of.some.length.lgwan.example", 1));
    let first = eth(
        0x0800,
        &ipv4(s, d, 17, V4Opts { id: 300, more_fragments: true, ..V4Opts::default() }, &dns[..40]),
    );
    assert_eq!(hops(&e, NOW, &first, &[inside("management")]), ["allow:rule:mgmt-any"]);
    let later = |src, dst, id| {
        eth(0x0800, &ipv4(src, dst, 17, V4Opts { id, frag_offset: 5, ..V4Opts::default() }, &dns[40..]))
    };
    let other_sz = "198.18.40.54".parse().unwrap();
    let internet = NET.parse().unwrap();
    assert_eq!(hops(&e, NOW, &later(s, d, 301), &[inside("management")]), ["deny:fragment"]);
    assert_eq!(hops(&e, NOW, &later(s, other_sz, 300), &[inside("management")]), ["deny:fragment"]);
    assert_eq!(hops(&e, NOW, &later(s, internet, 300), &[inside("management")]), ["deny:fragment"]);
    // The first fragment crossed only mg-in: sz-out has no record of it.
    assert_eq!(hops(&e, NOW, &later(s, d, 300), &[outside("sanitization")]), ["deny:fragment"]);
    // The same identifier the other way, and TCP at offset 1.
    assert_eq!(hops(&e, NOW, &later(d, s, 300), &[outside("management")]), ["deny:fragment"]);
    let tcp_off1 =
        eth(0x0800, &ipv4(s, d, 6, V4Opts { id: 300, frag_offset: 1, ..V4Opts::default() }, &[0; 16]));
    assert_eq!(hops(&e, NOW, &tcp_off1, &[inside("management")]), ["deny:malformed"]);
    // An IPv6 atomic fragment (offset 0, M = 0) is judged as the packet it is.
    let atomic = ipv6_fragment_header(17, 0, false, 7, &udp_datagram(5000, 53, b"x"));
    let frame = eth(
        0x86dd,
        &ipv6("2001:db8:20::5".parse().unwrap(), "2001:db8:30::7".parse().unwrap(), 44, 64, &atomic),
    );
    assert_eq!(hops(&e, NOW, &frame, &[inside("lgwan")]), ["deny:unsanitized-crossing"]);
    // A first fragment that stops inside the extension chain.
    let tiny = ipv6_fragment_header(60, 0, true, 8, &[17, 0, 1, 4, 0, 0]);
    let frame = eth(
        0x86dd,
        &ipv6("2001:db8:20::5".parse().unwrap(), "2001:db8:40::53".parse().unwrap(), 44, 64, &tiny),
    );
    assert_eq!(hops(&e, NOW, &frame, &[inside("lgwan")]), ["deny:malformed"]);
}

/// TCP state: the responder cannot reopen a closed connection from its side, an in-window
/// RST that is not exact does not close it, data in a SYN is application-checked, and a
/// simultaneous open from the responder's side is refused.
#[test]
fn held_tcp_reopen_rst_fast_open_and_simultaneous_open() {
    let e = engine();
    let mut c = juki(&e, NOW);
    let r = "allow:exception:juki-batch";
    // An RST 100 bytes into the window passes (challenge ACK) but does not close.
    let rst = c.client_at(RST, c.client_next().wrapping_add(100), 0, b"");
    crossing(&e, NOW, &rst, &[(inside("mynumber"), r), (outside("lgwan"), r)]);
    crossing(&e, NOW, &c.client(ACK, b"x"), &[(inside("mynumber"), r), (outside("lgwan"), r)]);
    // The exact RST closes; the lgwan end cannot open the reverse on the closed 5-tuple.
    let exact = c.client_at(RST, c.client_next(), 0, b"");
    crossing(&e, NOW, &exact, &[(inside("mynumber"), r), (outside("lgwan"), r)]);
    let reverse = tcp(LG_JUKI, 22, MN_BATCH, 40000, SYN, b"");
    assert_eq!(hops(&e, NOW, &reverse, &[inside("lgwan")]), ["deny:mynumber-isolation"]);
    // Data in the SYN (TCP fast open) is the first payload: HTTP is not SMTP.
    let tfo = tcp(NET, 42000, RELAY, 25, SYN, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(hops(&e, NOW, &tfo, &[inside("internet")]), ["deny:app-mismatch"]);
    // Simultaneous open: the VDI's own SYN back to a terminal that sent one.
    let t = TcpConn::new((LG_TERM, 50001), (VDI, 3389));
    let p = "allow:path:screen-transfer/1";
    crossing(&e, NOW, &t.syn(), &[(inside("lgwan"), p), (outside("internet"), p)]);
    let back = tcp(VDI, 3389, LG_TERM, 50001, SYN, b"");
    assert_eq!(hops(&e, NOW, &back, &[inside("internet")]), ["deny:unsanitized-crossing"]);
}

/// Hairpins and router sides: a host reaching its own segment through the router; the
/// internet router's error about a mail flow is trusted on the internet port, another
/// segment's router is not.
#[test]
fn held_hairpins_and_routers_of_other_segments() {
    let e = engine();
    let c = TcpConn::new((LG_TERM, 40000), ("198.18.20.9", 22));
    assert_eq!(
        hops(&e, NOW, &c.syn(), &[inside("lgwan"), outside("lgwan")]),
        ["allow:intra-zone", "deny:spoofed-source"]
    );
    let mut m = TcpConn::new((NET, 41000), (RELAY, 25));
    assert!(handshake_through(
        &e,
        &mut m,
        &[inside("internet"), outside("sanitization")],
        &[inside("sanitization"), outside("internet")]
    ));
    let seg = m.client(ACK | PSH, b"EHLO x\r\n");
    let _ = hops(&e, NOW, &seg, &[inside("internet"), outside("sanitization")]);
    let q = quote(&seg, 48);
    assert_eq!(
        hops(&e, NOW, &unreachable("203.0.113.1", NET, &q, 0), &[outside("internet")]),
        ["allow:related"]
    );
    assert_eq!(
        hops(&e, NOW, &unreachable("198.18.40.1", NET, &q, 0), &[outside("internet")]),
        ["deny:icmp-third-party"]
    );
    // The same error arriving on the inside (an internet host claiming the router's
    // address) is on the wrong side of the port.
    assert_eq!(
        hops(&e, NOW, &unreachable("203.0.113.1", NET, &q, 0), &[inside("internet")]),
        ["deny:spoofed-source"]
    );
}

/// Link traffic: ND with a source of another zone, a routed hop limit on the outside,
/// fragmented DHCP, and DHCP aimed across zones from the inside.
#[test]
fn held_link_protocols_from_the_wrong_place() {
    let e = engine();
    let ra = |src: &str, dst: &str, hops: u8| icmp(src, dst, 134, 0, [64, 0, 0, 0], &[0; 8], hops);
    // An internet global source to all-nodes, on the LGWAN port.
    assert_eq!(
        hops(&e, NOW, &ra("2001:db8:30::7", "ff02::1", 255), &[outside("lgwan")]),
        ["deny:link-scope"]
    );
    // A router advertisement that was routed (hop limit 254) to a global LGWAN address.
    assert_eq!(
        hops(&e, NOW, &ra("2001:db8:20::1", "2001:db8:20::5", 254), &[outside("lgwan")]),
        ["allow:intra-zone"]
    );
    assert_eq!(
        hops(&e, NOW, &ra("2001:db8:30::1", "2001:db8:20::5", 254), &[outside("lgwan")]),
        ["deny:unsanitized-crossing"]
    );
    // DHCP from an LGWAN host to a mynumber address, and a fragmented DHCP discover.
    let d = udp(LG_TERM, 68, MN_BATCH, 67, &[1; 300]);
    assert_eq!(hops(&e, NOW, &d, &[inside("lgwan")]), ["deny:mynumber-isolation"]);
    let disc = udp_datagram(68, 67, &[1; 300]);
    let frag = eth(
        0x0800,
        &ipv4(
            LG_TERM.parse().unwrap(),
            "198.18.20.99".parse().unwrap(),
            17,
            V4Opts { id: 9, more_fragments: true, ..V4Opts::default() },
            &disc[..64],
        ),
    );
    assert_eq!(hops(&e, NOW, &frag, &[inside("lgwan")]), ["allow:intra-zone"]);
    let frag_x = eth(
        0x0800,
        &ipv4(
            LG_TERM.parse().unwrap(),
            MN_BATCH.parse().unwrap(),
            17,
            V4Opts { id: 9, more_fragments: true, ..V4Opts::default() },
            &disc[..64],
        ),
    );
    assert_eq!(hops(&e, NOW, &frag_x, &[inside("lgwan")]), ["deny:mynumber-isolation"]);
}

/// A flow that starts as plain UDP and then carries a Teredo-shaped payload is judged as
/// a tunnel at that packet; a TCP SYN behind hop-by-hop, destination options and AH
/// headers is still TCP; a routing header type 0 is malformed.
#[test]
fn held_tunnels_mid_flow_and_extension_header_chains() {
    let e = engine();
    let r = "allow:rule:mgmt-any";
    assert_eq!(hops(&e, NOW, &udp(MGMT, 40000, SZ_HOST, 5000, b"hello"), &[inside("management")]), [r]);
    let v6 = ipv6("2001:db8:30::7".parse().unwrap(), "2001:db8:10::5".parse().unwrap(), 59, 64, &[]);
    assert_eq!(
        hops(&e, NOW, &udp(MGMT, 40000, SZ_HOST, 5000, &v6), &[inside("management")]),
        ["deny:tunnel"]
    );
    // TCP behind extension headers to a forbidden destination.
    let mut chain = vec![60u8, 0, 1, 4, 0, 0, 0, 0]; // hop-by-hop → dstopts
    chain.extend_from_slice(&[51, 0, 1, 4, 0, 0, 0, 0]); // dstopts → AH
    chain.extend_from_slice(&[6, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]); // AH (12 bytes) → TCP
    chain.extend_from_slice(&tcp_segment(1000, 22, SYN, b""));
    let f = eth(
        0x86dd,
        &ipv6("2001:db8:30::7".parse().unwrap(), "2001:db8:10::5".parse().unwrap(), 0, 64, &chain),
    );
    assert_eq!(hops(&e, NOW, &f, &[inside("internet")]), ["deny:mynumber-isolation"]);
    let rh0 = [&[17u8, 2, 0, 1, 0, 0, 0, 0][..], &[0u8; 16], &udp_datagram(1, 2, b"")].concat();
    let f = eth(
        0x86dd,
        &ipv6("2001:db8:30::7".parse().unwrap(), "2001:db8:30::8".parse().unwrap(), 43, 64, &rh0),
    );
    assert_eq!(hops(&e, NOW, &f, &[inside("internet")]), ["deny:malformed"]);
}

/// A reload that moves a responder into another zone cuts its connection, its ICMP errors
/// and its later fragments at their next packet.
#[test]
fn held_a_reload_moving_an_address_to_another_zone_cuts_flows_errors_and_fragments() {
    let e = engine();
    let peer = "198.18.20.77";
    let mut c = TcpConn::new((LG_TERM, 40000), (peer, 22));
    assert!(handshake_through(&e, &mut c, &[inside("lgwan")], &[outside("lgwan")]));
    let seg = c.client(ACK | PSH, b"SSH-2.0-x\r\n");
    assert_eq!(hops(&e, NOW, &seg, &[inside("lgwan")]), ["allow:intra-zone"]);
    let whole = c.client(ACK | PSH, &[0x55; 64]);
    let body = &ip_packet(&whole)[20..];
    let (s, d) = (LG_TERM.parse().unwrap(), peer.parse().unwrap());
    let f1 = eth(
        0x0800,
        &ipv4(s, d, 6, V4Opts { id: 61, more_fragments: true, ..V4Opts::default() }, &body[..40]),
    );
    let f2 = eth(0x0800, &ipv4(s, d, 6, V4Opts { id: 61, frag_offset: 5, ..V4Opts::default() }, &body[40..]));
    assert_eq!(hops(&e, NOW, &f1, &[inside("lgwan")]), ["allow:intra-zone"]);
    // 198.18.20.64/26 leaves the lgwan zone (it falls to the internet catch-all).
    let moved = POLICY.replace(
        "prefixes = [\"198.18.20.0/24\", \"2001:db8:20::/48\"]",
        "prefixes = [\"198.18.20.0/26\", \"198.18.20.128/25\", \"2001:db8:20::/48\"]",
    );
    assert_ne!(moved, POLICY);
    e.reload(policy(&moved)).expect("reload");
    assert_eq!(hops(&e, NOW, &f2, &[inside("lgwan")]), ["deny:unsanitized-crossing"]);
    assert_eq!(hops(&e, NOW, &c.client(ACK, b"more"), &[inside("lgwan")]), ["deny:unsanitized-crossing"]);
    let err = unreachable(peer, LG_TERM, &quote(&seg, 48), 0);
    assert_eq!(hops(&e, NOW, &err, &[outside("lgwan")]), ["deny:unsanitized-crossing"]);
}

// =========================================================================================
// What the fixes must leave working
// =========================================================================================

/// A retransmitted SYN+ACK (the client's ACK was lost beyond the gate) repeats the first
/// one exactly and passes; a SYN retransmitted by the client too. One bit off, or data
/// added, and it is refused.
#[test]
fn fixes_keep_exact_handshake_retransmissions() {
    let e = engine();
    let mut c = TcpConn::new((MN_BATCH, 40010), (LG_JUKI, 22));
    let r = "allow:exception:juki-batch";
    let there = [(inside("mynumber"), r), (outside("lgwan"), r)];
    let back = [(inside("lgwan"), r), (outside("mynumber"), r)];
    crossing(&e, NOW, &c.syn(), &there);
    crossing(&e, NOW, &c.syn(), &there);
    crossing(&e, NOW, &c.syn_ack(), &back);
    crossing(&e, NOW, &c.syn(), &there);
    crossing(&e, NOW, &c.syn_ack(), &back);
    crossing(&e, NOW, &c.client(ACK, b""), &there);
    crossing(&e, NOW, &c.syn_ack(), &back);
    let path = [inside("lgwan")];
    for (seq, ack, data) in [(5001, 1001, &b""[..]), (5000, 1002, b""), (5000, 1001, b"x")] {
        let odd = c.server_at(SYN | ACK, seq, ack, data);
        assert_eq!(hops(&e, NOW, &odd, &path), ["deny:out-of-window"], "seq {seq} ack {ack} {data:?}");
    }
    crossing(&e, NOW, &c.client(ACK | PSH, b"SSH-2.0-batch\r\n"), &there);
}

/// A first fragment must show enough of its UDP payload to be classified: split right
/// after the UDP header, a Teredo packet (an IPv6 packet as the payload, recognised by its
/// shape) on LGWAN's DNS rule would cross in its later fragment.
#[test]
fn fixes_refuse_udp_first_fragments_that_end_with_the_header() {
    let e = engine();
    let inner = ip_packet(&tcp("2001:db8:30::7", 1, "2001:db8:10::5", 22, SYN, b"")).to_vec();
    let datagram = udp_datagram(7001, 53, &inner);
    let (s, d) = (LG_TERM.parse().unwrap(), DNS.parse().unwrap());
    let first = eth(
        0x0800,
        &ipv4(s, d, 17, V4Opts { id: 4243, more_fragments: true, ..V4Opts::default() }, &datagram[..8]),
    );
    assert_eq!(hops(&e, NOW, &first, &[inside("lgwan")]), ["deny:malformed"]);
    // Whole, the datagram is seen for the tunnel it is.
    let whole = udp(LG_TERM, 7001, DNS, 53, &inner);
    assert_eq!(hops(&e, NOW, &whole, &[inside("lgwan")]), ["deny:tunnel"]);
}

/// Padding a short frame to 60 bytes is normal; bytes after the IP packet beyond that are
/// refused, whatever the packet.
#[test]
fn fixes_refuse_ethernet_trailers_but_not_padding() {
    let e = engine();
    let mut syn = tcp(NET, 43000, RELAY, 25, SYN, b"");
    assert!(syn.len() < 60);
    syn.resize(60, 0);
    expect(&e, NOW, inside("internet"), &syn, Forward, "allow:path:mail-textify/1");
    let mut trailer = tcp(NET, 43001, RELAY, 25, SYN, b"");
    trailer.extend_from_slice(&[0x41; 64]);
    expect(&e, NOW, inside("internet"), &trailer, Drop, "deny:malformed");
}

/// An IPv6 datagram whose fragment header is followed by a destination options header:
/// its later fragments name the same datagram (the fragment header's next header) and
/// follow it.
#[test]
fn fixes_keep_ipv6_fragments_with_options_after_the_fragment_header() {
    let e = engine();
    let datagram = udp_datagram(40020, 5000, &[0x55; 64]);
    let dstopts = [&[17u8, 0, 1, 4, 0, 0, 0, 0][..], &datagram].concat();
    let (s, d): (Ipv6Addr, Ipv6Addr) = ("2001:db8:40::7".parse().unwrap(), "2001:db8:40::8".parse().unwrap());
    let first = eth(0x86dd, &ipv6(s, d, 44, 64, &ipv6_fragment_header(60, 0, true, 78, &dstopts[..48])));
    let later = eth(0x86dd, &ipv6(s, d, 44, 64, &ipv6_fragment_header(60, 6, false, 78, &dstopts[48..])));
    expect(&e, NOW, inside("sanitization"), &first, Forward, "allow:intra-zone");
    expect(&e, NOW, inside("sanitization"), &later, Forward, "allow:intra-zone");
}

/// Completed handshakes that carry nothing and then fall quiet for 10 s give their room
/// back: after one host's flood, others of its zone get in again.
#[test]
fn fixes_let_quiet_handshakes_be_evicted_after_ten_seconds() {
    let e = Engine::new(policy(&POLICY.replace("capacity = 1000", "capacity = 2000")));
    let there = [inside("internet"), outside("sanitization")];
    let back = [inside("sanitization"), outside("internet")];
    for port in 1024..4024u16 {
        let mut c = TcpConn::new(("198.51.100.9", port), (RELAY, 25));
        let _ = handshake_through(&e, &mut c, &there, &back);
    }
    let late = TcpConn::new(("198.51.100.77", 5000), (RELAY, 25));
    assert_eq!(hops(&e, NOW, &late.syn(), &there)[0], "deny:flow-table-full", "the flood filled the share");
    let later = Timestamp(NOW.0 + 11 * SEC);
    let got = e.process(Now::at(later), there[0], &late.syn());
    assert_eq!(name(&e, &got), "allow:path:mail-textify/1", "a quiet handshake made room");
}
