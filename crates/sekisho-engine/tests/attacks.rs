//! The separation attacks, written as the frames an attacker in the internet or LGWAN
//! zone sends, with the verdict at every port each frame reaches (a frame dropped at one
//! port reaches no further). One test per class of leak found in review.

mod common;

use common::*;
use sekisho_engine::Action::{Drop, Forward};
use sekisho_engine::{Engine, Now};
use sekisho_policy::Timestamp;
use sekisho_testkit::flags::*;
use sekisho_testkit::*;

const MN_BATCH: &str = "198.18.10.5";
const LG_JUKI: &str = "198.18.20.30";
const LG_TERM: &str = "198.18.20.5";
const VDI: &str = "203.0.113.50";
const NET: &str = "203.0.113.7";
const ATTACKER: &str = "203.0.113.66";
const RELAY: &str = "198.18.40.10";

/// The first `n` bytes of the IP packet inside `frame`, as an ICMP error quotes it.
fn quote(frame: &[u8], n: usize) -> Vec<u8> {
    let p = ip_packet(frame);
    p[..n.min(p.len())].to_vec()
}

/// ICMP destination unreachable (port unreachable) from `src` to `dst` quoting `quoted`,
/// padded with `extra` bytes of data.
fn unreachable(src: &str, dst: &str, quoted: &[u8], extra: usize) -> Vec<u8> {
    let data = [quoted, &vec![0x41; extra][..]].concat();
    icmp(src, dst, 3, 3, [0; 4], &data, 64)
}

/// The juki-batch exception connection, open (its SSH banner sent): mynumber inside →
/// lgwan outside.
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
    crossing(
        e,
        now,
        &c.server(ACK | PSH, b"SSH-2.0-juki\r\n"),
        &[(inside("lgwan"), r), (outside("mynumber"), r)],
    );
    crossing(e, now, &c.client(ACK, b""), &[(inside("mynumber"), r), (outside("lgwan"), r)]);
    c
}

/// An lgwan terminal's screen-transfer connection to the internet VDI host.
fn vdi(e: &Engine) -> TcpConn {
    let mut c = TcpConn::new((LG_TERM, 50000), (VDI, 3389));
    let r = "allow:path:screen-transfer/1";
    crossing(e, NOW, &c.syn(), &[(inside("lgwan"), r), (outside("internet"), r)]);
    crossing(e, NOW, &c.syn_ack(), &[(inside("internet"), r), (outside("lgwan"), r)]);
    crossing(e, NOW, &c.client(ACK, b""), &[(inside("lgwan"), r), (outside("internet"), r)]);
    c
}

/// An internet client's mail connection to the relay (path leg 1).
fn mail(e: &Engine) -> TcpConn {
    let mut c = TcpConn::new((NET, 41000), (RELAY, 25));
    let r = "allow:path:mail-textify/1";
    crossing(e, NOW, &c.syn(), &[(inside("internet"), r), (outside("sanitization"), r)]);
    crossing(e, NOW, &c.syn_ack(), &[(inside("sanitization"), r), (outside("internet"), r)]);
    crossing(e, NOW, &c.client(ACK, b""), &[(inside("internet"), r), (outside("sanitization"), r)]);
    crossing(
        e,
        NOW,
        &c.server(ACK | PSH, b"220 relay\r\n"),
        &[(inside("sanitization"), r), (outside("internet"), r)],
    );
    c
}

#[test]
fn class_1_icmp_errors_are_not_a_data_channel() {
    let e = engine();
    // Ten seconds before the exception expires.
    let now = Timestamp(EXPIRY.0 - 10 * SEC);
    let mut c = juki(&e, now);
    let segment = c.client(ACK | PSH, b"ls\n");
    crossing(
        &e,
        now,
        &segment,
        &[
            (inside("mynumber"), "allow:exception:juki-batch"),
            (outside("lgwan"), "allow:exception:juki-batch"),
        ],
    );
    // A different lgwan host sends a 1.2 KB "destination unreachable" quoting the
    // exception's segment to the mynumber host.
    let big = unreachable("198.18.20.31", MN_BATCH, &quote(&segment, 48), 1200);
    crossing(&e, now, &big, &[(inside("lgwan"), "deny:malformed")]);
    let small = unreachable("198.18.20.31", MN_BATCH, &quote(&segment, 48), 0);
    crossing(&e, now, &small, &[(inside("lgwan"), "deny:icmp-third-party")]);
    // Even arriving at the mynumber port directly, past the lgwan port.
    expect(&e, now, outside("mynumber"), &small, Drop, "deny:icmp-third-party");
    // Forged on the mynumber host's own side in the name of its peer: the wrong side.
    let forged_peer = unreachable(LG_JUKI, MN_BATCH, &quote(&segment, 48), 0);
    expect(&e, now, inside("mynumber"), &forged_peer, Drop, "deny:spoofed-source");
    // The peer itself may report a problem with the segment; its own router too.
    let from_peer = unreachable(LG_JUKI, MN_BATCH, &quote(&segment, 48), 0);
    crossing(
        &e,
        now,
        &from_peer,
        &[(inside("lgwan"), "allow:related"), (outside("mynumber"), "allow:related")],
    );
    let from_router = unreachable("198.18.10.1", MN_BATCH, &quote(&segment, 48), 0);
    crossing(&e, now, &from_router, &[(outside("mynumber"), "allow:related")]);
    // A quoted sequence number the sender never used is not the connection's.
    let forged = c.client_at(ACK, c.client_next().wrapping_add(5_000_000), 0, b"");
    let blind = unreachable(LG_JUKI, MN_BATCH, &quote(&forged, 48), 0);
    crossing(&e, now, &blind, &[(inside("lgwan"), "deny:out-of-window")]);
    // The error follows the connection's current verdict: after the exception expired,
    // even the peer's error is refused.
    let later = Timestamp(EXPIRY.0 + SEC);
    crossing(&e, later, &from_peer, &[(inside("lgwan"), "deny:mynumber-isolation")]);

    // The internet, to an lgwan screen-transfer user.
    let e = engine();
    let mut v = vdi(&e);
    let seg = v.client(ACK | PSH, &[3, 0, 0, 19, 14, 0xe0]);
    crossing(
        &e,
        NOW,
        &seg,
        &[
            (inside("lgwan"), "allow:path:screen-transfer/1"),
            (outside("internet"), "allow:path:screen-transfer/1"),
        ],
    );
    let err = unreachable(ATTACKER, LG_TERM, &quote(&seg, 48), 0);
    crossing(&e, NOW, &err, &[(inside("internet"), "deny:icmp-third-party")]);
    let err = unreachable(VDI, LG_TERM, &quote(&seg, 48), 0);
    crossing(&e, NOW, &err, &[(inside("internet"), "allow:related"), (outside("lgwan"), "allow:related")]);

    // A sanitiser, to an internet mail client.
    let e = engine();
    let mut m = mail(&e);
    let seg = m.client(ACK | PSH, b"EHLO client\r\n");
    let err = unreachable("198.18.40.20", NET, &quote(&seg, 48), 0);
    crossing(&e, NOW, &err, &[(inside("sanitization"), "deny:icmp-third-party")]);
    // After a reload that removes the mail path, even the relay's own error is refused.
    let leg_1 = "  from = \"zone:internet\"\n  to = \"198.18.40.10\"";
    let without_mail = POLICY.replace(leg_1, "  from = \"zone:internet\"\n  to = \"198.18.40.12\"");
    assert_ne!(without_mail, POLICY);
    e.reload(policy(&without_mail)).expect("reload");
    let err = unreachable(RELAY, NET, &quote(&seg, 48), 0);
    crossing(&e, NOW, &err, &[(inside("sanitization"), "deny:no-rule")]);
}

#[test]
fn class_2_ipv4_forms_inside_ipv6_never_alias_a_zone() {
    let e = engine();
    for (src, dst) in [
        ("::ffff:198.18.10.5", "::ffff:198.18.10.1"),
        ("::198.18.10.5", "::198.18.10.1"),
        ("::ffff:0:198.18.10.5", "::ffff:0:198.18.10.1"),
        ("2001:db8:30::7", "::ffff:198.18.10.5"),
    ] {
        let planted = udp(src, 4000, dst, 5000, b"plant");
        crossing(&e, NOW, &planted, &[(inside("internet"), "deny:bogon-address")]);
        expect(&e, NOW, outside("mynumber"), &planted, Drop, "deny:bogon-address");
    }
    assert_eq!(e.flow_stats().entries, 0, "nothing was planted");
    // The IPv4 frames that used to ride on the planted entry.
    let ride = udp("198.18.10.9", 5000, MN_BATCH, 4000, b"ride");
    crossing(&e, NOW, &ride, &[(inside("internet"), "deny:spoofed-source")]);
    expect(&e, NOW, outside("mynumber"), &ride, Drop, "deny:spoofed-source");
    // And a real IPv4 flow's key never matches an IPv6 packet spelling the same numbers.
    let mut c = juki(&e, NOW);
    let alias = TcpConn::new(("::ffff:198.18.10.5", 40000), ("::ffff:198.18.20.30", 22));
    expect(
        &e,
        NOW,
        outside("lgwan"),
        &alias.client_at(ACK, c.client_next(), 5001, b"x"),
        Drop,
        "deny:bogon-address",
    );
    crossing(
        &e,
        NOW,
        &c.client(ACK, b"ok"),
        &[
            (inside("mynumber"), "allow:exception:juki-batch"),
            (outside("lgwan"), "allow:exception:juki-batch"),
        ],
    );
}

#[test]
fn class_3_link_traffic_needs_both_ends_on_the_segment() {
    let e = engine();
    let ns = |src: &str, dst: &str| icmp(src, dst, 135, 0, [0; 4], &[0; 16], 255);
    let mld = |src: &str, dst: &str| icmp(src, dst, 131, 0, [0; 4], &[0; 16], 1);
    // From the internet port: ND, MLD, DHCPv4 and DHCPv6 aimed at global mynumber and
    // lgwan addresses, with a payload.
    let payload = vec![0x42; 650];
    let attacks = [
        (ns("fe80::1", "2001:db8:10::5"), "deny:link-scope"),
        (ns("::", "2001:db8:10::5"), "deny:bogon-address"),
        (mld("fe80::1", "2001:db8:10::5"), "deny:link-scope"),
        (udp("0.0.0.0", 68, MN_BATCH, 67, &payload), "deny:bogon-address"),
        (udp("fe80::1", 546, "2001:db8:20::5", 547, &payload), "deny:link-scope"),
        (udp("fe80::1", 547, "2001:db8:10::5", 546, &payload), "deny:link-scope"),
    ];
    for (frame, reason) in &attacks {
        crossing(&e, NOW, frame, &[(inside("internet"), reason)]);
    }
    // Routed hop limits are not neighbour discovery: such a message is judged like any
    // other packet between its two zones.
    let routed = icmp("2001:db8:30::7", "2001:db8:20::9", 135, 0, [0; 4], &[0; 16], 64);
    expect(&e, NOW, inside("internet"), &routed, Drop, "deny:unsanitized-crossing");
    // The real thing, within a segment, passes on either side of the pair.
    for frame in [
        ns("fe80::5", "ff02::1:ff00:1"),
        ns("::", "ff02::1:ff00:5"),
        ns("2001:db8:20::5", "2001:db8:20::1"),
        mld("fe80::5", "ff02::16"),
        udp("0.0.0.0", 68, "255.255.255.255", 67, &[1; 300]),
        udp("fe80::5", 546, "ff02::1:2", 547, &[1; 60]),
    ] {
        expect(&e, NOW, inside("lgwan"), &frame, Forward, "allow:link");
    }
    expect(
        &e,
        NOW,
        outside("lgwan"),
        &udp("198.18.20.1", 67, "198.18.20.5", 68, &[2; 300]),
        Forward,
        "allow:link",
    );
    expect(
        &e,
        NOW,
        outside("lgwan"),
        &icmp("fe80::1", "ff02::1", 134, 0, [64, 0, 0, 0], &[0; 8], 255),
        Forward,
        "allow:link",
    );
}

#[test]
fn class_4_a_ports_outside_takes_only_traffic_for_its_own_zone() {
    let e = engine();
    for (frame, reason) in [
        (udp(NET, 5000, "239.1.1.1", 5000, b"x"), "deny:bogon-address"),
        (udp(NET, 5000, "255.255.255.255", 5000, b"x"), "deny:link-scope"),
        (udp("2001:db8:30::7", 5000, "ff0e::1", 5000, b"x"), "deny:bogon-address"),
        (udp(NET, 5000, "203.0.113.9", 5000, b"x"), "deny:misdirected"),
        (tcp(NET, 5000, "198.18.20.5", 22, SYN, b""), "deny:misdirected"),
    ] {
        expect(&e, NOW, outside("mynumber"), &frame, Drop, reason);
    }
    // An address of the port's own zone never starts a connection from the router's
    // side, except the router itself.
    expect(
        &e,
        NOW,
        outside("mynumber"),
        &tcp("198.18.10.9", 1, MN_BATCH, 22, SYN, b""),
        Drop,
        "deny:spoofed-source",
    );
    expect(
        &e,
        NOW,
        outside("mynumber"),
        &ping("198.18.10.1", MN_BATCH, 3, false),
        Forward,
        "allow:intra-zone",
    );
    // A host still reaches its router and hears the answer.
    let mut c = TcpConn::new((LG_TERM, 40000), ("198.18.20.1", 53));
    expect(&e, NOW, inside("lgwan"), &c.syn(), Forward, "allow:intra-zone");
    expect(&e, NOW, outside("lgwan"), &c.syn_ack(), Forward, "allow:intra-zone");
    expect(&e, NOW, inside("lgwan"), &c.client(ACK, b""), Forward, "allow:intra-zone");
    // The answer may not come from the host's own side of the port.
    expect(&e, NOW, inside("lgwan"), &c.server(ACK, b"x"), Drop, "deny:spoofed-source");
}

#[test]
fn class_5_vlan_tags_must_be_the_ports() {
    let e = engine();
    crossing(&e, NOW, &vlan(&arp(), 0x8100, 10), &[(inside("internet"), "deny:vlan")]);
    let syn = tcp(NET, 1, RELAY, 25, SYN, b"");
    crossing(&e, NOW, &vlan(&syn, 0x8100, 10), &[(inside("internet"), "deny:vlan")]);
    crossing(&e, NOW, &vlan(&vlan(&syn, 0x8100, 10), 0x88a8, 20), &[(inside("internet"), "deny:vlan")]);
    expect(&e, NOW, outside("sanitization"), &vlan(&syn, 0x8100, 0), Drop, "deny:vlan");
    crossing(
        &e,
        NOW,
        &syn,
        &[
            (inside("internet"), "allow:path:mail-textify/1"),
            (outside("sanitization"), "allow:path:mail-textify/1"),
        ],
    );
}

#[test]
fn class_6_one_internet_host_cannot_exhaust_the_flow_table() {
    let e = Engine::new(policy(&POLICY.replace("capacity = 1000", "capacity = 2000")));
    let mut mail_session = mail(&e);
    // 10 000 fake request/reply pairs: the attacker plays both ends from its own side.
    for i in 0..10_000u32 {
        let (a, b) = (format!("203.0.113.{}", i % 250 + 1), format!("198.51.100.{}", i / 250 % 250 + 1));
        let port = (i % 60_000) as u16 + 1024;
        let _ = e.process(Now::at(NOW), inside("internet"), &udp(&a, port, &b, 53, b"q"));
        let reply = e.process(Now::at(NOW), inside("internet"), &udp(&b, 53, &a, port, b"r"));
        assert_eq!(name(&e, &reply), "deny:spoofed-source", "a reply from the requester's side");
        let mut t = TcpConn::new((&a, port), (&b, 443));
        let _ = e.process(Now::at(NOW), inside("internet"), &t.syn());
        let synack = e.process(Now::at(NOW), inside("internet"), &t.syn_ack());
        assert_eq!(name(&e, &synack), "deny:spoofed-source");
        let _ = t.client(ACK, b"");
    }
    // The next lgwan → VDI screen-transfer SYN and the mynumber exception still open.
    vdi(&e);
    juki(&e, NOW);
    // 50 minutes later, after a 30 000-packet burst of SYNs to the relay, still so.
    let later = Timestamp(NOW.0 + 50 * 60 * SEC);
    for i in 0..30_000u32 {
        let src = format!("198.51.100.{}", i % 250 + 1);
        let _ = e.process(
            Now::at(later),
            inside("internet"),
            &tcp(&src, (i % 60_000) as u16 + 1024, RELAY, 25, SYN, b""),
        );
    }
    let c = TcpConn::new((MN_BATCH, 40001), (LG_JUKI, 22));
    crossing(
        &e,
        later,
        &c.syn(),
        &[
            (inside("mynumber"), "allow:exception:juki-batch"),
            (outside("lgwan"), "allow:exception:juki-batch"),
        ],
    );
    // A spoofed out-of-window RST, a SYN, and a SYN flood do not cut a live mail session.
    let rst = mail_session.client_at(RST, mail_session.client_next().wrapping_add(3_000_000), 0, b"");
    expect(&e, later, inside("internet"), &rst, Drop, "deny:out-of-window");
    expect(
        &e,
        later,
        inside("internet"),
        &mail_session.client_at(SYN, 77, 0, b""),
        Drop,
        "deny:out-of-window",
    );
    for i in 0..5_000u32 {
        let src = format!("203.0.113.{}", i % 250 + 1);
        let _ = e.process(
            Now::at(later),
            inside("internet"),
            &tcp(&src, (i % 60_000) as u16 + 1024, RELAY, 25, SYN, b""),
        );
    }
    let data = mail_session.client(ACK | PSH, b"EHLO client\r\n");
    crossing(
        &e,
        later,
        &data,
        &[
            (inside("internet"), "allow:path:mail-textify/1"),
            (outside("sanitization"), "allow:path:mail-textify/1"),
        ],
    );
    let (mn, refused) = e.origin_stats(inside("mynumber"));
    assert!(mn >= 2 && refused == 0, "the mynumber side kept its share: {mn} flows, {refused} refused");
}

#[test]
fn class_6_established_connections_from_one_zone_leave_the_others_their_share() {
    // A botnet of real internet hosts completes handshakes with the mail relay until the
    // table is full: established flows, which are never evicted.
    let e = Engine::new(policy(&POLICY.replace("capacity = 1000", "capacity = 2000")));
    let mut refused = 0;
    for i in 0..3000u32 {
        let client = format!("198.51.100.{}", i % 250 + 1);
        let mut c = TcpConn::new((&client, (i / 250) as u16 + 1024), (RELAY, 25));
        let hops = [(inside("internet"), c.syn()), (outside("sanitization"), c.syn())];
        if hops.iter().any(|(at, f)| e.process(Now::at(NOW), *at, f).action == Drop) {
            refused += 1;
            continue;
        }
        let _ = e.process(Now::at(NOW), inside("sanitization"), &c.syn_ack());
        let _ = e.process(Now::at(NOW), outside("internet"), &c.syn_ack());
        let ack = c.client(ACK, b"");
        let _ = e.process(Now::at(NOW), inside("internet"), &ack);
        let _ = e.process(Now::at(NOW), outside("sanitization"), &ack);
    }
    assert!(refused > 1000, "the flood filled its share ({refused} refused)");
    // LGWAN's screen transfer and the mynumber exception still open: their origins are
    // guaranteed their share of the table.
    vdi(&e);
    juki(&e, NOW);
}

#[test]
fn class_7_fragments_follow_their_parent_and_expire() {
    let e = engine();
    let before = Timestamp(EXPIRY.0 - 5 * SEC);
    let mut c = juki(&e, before);
    // A fragmented segment of the exception connection: the first fragment carries the
    // TCP header, the later one only data.
    let whole = c.client(ACK | PSH, &[0x55; 64]);
    let seg = &ip_packet(&whole)[20..];
    let (s, d) = (MN_BATCH.parse().unwrap(), LG_JUKI.parse().unwrap());
    let first = eth(
        0x0800,
        &ipv4(s, d, 6, V4Opts { id: 900, more_fragments: true, ..V4Opts::default() }, &seg[..40]),
    );
    let later = |n: u16| {
        eth(
            0x0800,
            &ipv4(
                s,
                d,
                6,
                V4Opts { id: 900, frag_offset: 5, more_fragments: n == 0, ..V4Opts::default() },
                &seg[40..],
            ),
        )
    };
    let r = "allow:exception:juki-batch";
    crossing(&e, before, &first, &[(inside("mynumber"), r), (outside("lgwan"), r)]);
    crossing(&e, before, &later(0), &[(inside("mynumber"), r), (outside("lgwan"), r)]);
    // The exception expires: the later fragments follow the connection's current verdict.
    let after = Timestamp(EXPIRY.0 + SEC);
    crossing(&e, after, &later(1), &[(inside("mynumber"), "deny:mynumber-isolation")]);
    // Fragments are directional: the same id the other way has no first fragment.
    let back =
        eth(0x0800, &ipv4(d, s, 6, V4Opts { id: 900, frag_offset: 5, ..V4Opts::default() }, &seg[40..]));
    expect(&e, before, inside("lgwan"), &back, Drop, "deny:fragment");

    // Later fragments do not extend the reassembly time (30 s from the first fragment).
    let e = engine();
    // (A service that names no application: a datagram under inspection is never
    // fragmented, class 40.)
    let (l, dns) = ("198.18.50.7".parse().unwrap(), "198.18.40.53".parse().unwrap());
    let datagram = udp_datagram(5353, 53, &dns_query(7, "a-name.of.some.length.lgwan.example", 1));
    let f1 = eth(
        0x0800,
        &ipv4(l, dns, 17, V4Opts { id: 7, more_fragments: true, ..V4Opts::default() }, &datagram[..40]),
    );
    let f2 = eth(
        0x0800,
        &ipv4(l, dns, 17, V4Opts { id: 7, frag_offset: 5, ..V4Opts::default() }, &datagram[40..]),
    );
    expect(&e, NOW, inside("management"), &f1, Forward, "allow:rule:mgmt-any");
    for s in [10, 20, 29] {
        expect(&e, Timestamp(NOW.0 + s * SEC), inside("management"), &f2, Forward, "allow:rule:mgmt-any");
    }
    expect(&e, Timestamp(NOW.0 + 31 * SEC), inside("management"), &f2, Drop, "deny:fragment");
    // And they must arrive where the first one did.
    let e = engine();
    expect(&e, NOW, inside("management"), &f1, Forward, "allow:rule:mgmt-any");
    expect(&e, NOW, outside("management"), &f2, Drop, "deny:spoofed-source");
}

#[test]
fn class_8_icmp_queries_are_keyed_by_requester_and_type() {
    let e = engine();
    let (m, z) = ("198.18.50.1", "198.18.40.7");
    expect(&e, NOW, inside("management"), &ping(m, z, 9, false), Forward, "allow:rule:mgmt-any");
    expect(&e, NOW, outside("management"), &ping(z, m, 9, true), Forward, "allow:rule:mgmt-any");
    // The responder's own echo request with the same identifier opens nothing.
    expect(&e, NOW, outside("management"), &ping(z, m, 9, false), Drop, "deny:no-rule");
    // After a ping with identifier 0, an ICMP redirect (or any other query) from the
    // responder is judged as its own: the policy does not let it in.
    expect(&e, NOW, inside("management"), &ping(m, z, 0, false), Forward, "allow:rule:mgmt-any");
    let redirect = icmp(z, m, 5, 1, [198, 18, 40, 66], &quote(&ping(m, z, 0, false), 28), 64);
    expect(&e, NOW, outside("management"), &redirect, Drop, "deny:no-rule");
    let timestamp = icmp(z, m, 13, 0, [0, 0, 0, 1], &[0; 12], 64);
    expect(&e, NOW, outside("management"), &timestamp, Drop, "deny:no-rule");
    // An echo reply nobody asked for, or one from the requester's side.
    expect(&e, NOW, outside("management"), &ping(z, m, 10, true), Drop, "deny:no-flow");
    expect(&e, NOW, inside("management"), &ping(z, m, 9, true), Drop, "deny:spoofed-source");
}

#[test]
fn class_10_flow_timeouts_use_the_monotonic_clock_and_expiry_the_wall_clock() {
    let e = engine();
    let mono = 1_000 * SEC;
    let at = |mono: u64, wall: Timestamp| Now { mono, wall };
    let q = dns_query(0x1234, "juki.lgwan.example", 1);
    let query = udp(LG_TERM, 7000, "198.18.40.53", 53, &q);
    let answer = udp("198.18.40.53", 53, LG_TERM, 7000, &dns_answer(&q));
    assert_eq!(name(&e, &e.process(at(mono, NOW), inside("lgwan"), &query)), "allow:rule:lgwan-dns");
    // NTP steps the wall clock back a day, then forward a year: the flow neither lives
    // forever nor dies early — its 60 s idle timeout runs on the monotonic clock.
    let day_back = Timestamp(NOW.0 - 86_400 * SEC);
    assert_eq!(
        name(&e, &e.process(at(mono + 30 * SEC, day_back), outside("lgwan"), &answer)),
        "allow:rule:lgwan-dns"
    );
    let year_on = Timestamp(NOW.0 + 365 * 86_400 * SEC);
    assert_eq!(
        name(&e, &e.process(at(mono + 60 * SEC, year_on), outside("lgwan"), &answer)),
        "allow:rule:lgwan-dns"
    );
    assert_eq!(e.sweep(mono + 119 * SEC), 0);
    assert_eq!(e.sweep(mono + 121 * SEC), 1);
    // The exception's expiry is a date: it follows the wall clock whatever the monotonic
    // clock says.
    let e = engine();
    let mut c = juki(&e, NOW);
    let data = c.client(ACK, b"x");
    assert_eq!(name(&e, &e.process(at(1, EXPIRY), inside("mynumber"), &data)), "deny:mynumber-isolation");
}

#[test]
fn class_10_a_worker_whose_clock_lags_cannot_revive_an_expired_exception() {
    let e = engine();
    let before = Timestamp(EXPIRY.0 - 1);
    let mut c = juki(&e, before);
    // Another worker's frame, read at the expiry, starts the generation in which the
    // exception no longer exists.
    expect(&e, EXPIRY, inside("lgwan"), &arp(), Forward, "allow:link");
    // This worker's clock still says one nanosecond before: it decides under the new
    // generation, so it must decide as of the expiry, not as of its own reading.
    let data = c.client(ACK, b"x");
    expect(&e, before, inside("mynumber"), &data, Drop, "deny:mynumber-isolation");
    expect(&e, Timestamp(EXPIRY.0 + 1), inside("mynumber"), &data, Drop, "deny:mynumber-isolation");
}

#[test]
fn class_10_concurrent_re_decisions_across_an_expiry_leave_no_exception_behind() {
    // A race: repeat it to give it every chance to go wrong.
    for _ in 0..50 {
        let e = engine();
        let before = Timestamp(EXPIRY.0 - 1);
        let mut c = juki(&e, before);
        let data = c.client(ACK, b"x");
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (e, data) = (&e, &data);
                s.spawn(move || {
                    for i in 0..500u64 {
                        // Half the threads still live just before the expiry.
                        let wall = if (t + i) % 2 == 0 { before } else { EXPIRY };
                        let _ = e.process(Now::at(wall), inside("mynumber"), data);
                    }
                });
            }
        });
        let after = Timestamp(EXPIRY.0 + 1);
        assert_eq!(
            name(&e, &e.process(Now::at(after), inside("mynumber"), &data)),
            "deny:mynumber-isolation"
        );
        let mut allowed = 0;
        e.for_each_flow(|_, _, r| allowed += usize::from(r.allowed()));
        assert!(allowed <= 1, "at most the lgwan port's copy, not yet re-decided, may still say allow");
    }
}
