//! The engine, frame by frame, against a lab-shaped policy: one test per behaviour.

mod common;

use common::*;
use sekisho_engine::Action::{Drop, Forward};
use sekisho_engine::{Engine, Ingress};
use sekisho_policy::Timestamp;
use sekisho_testkit::flags::*;
use sekisho_testkit::*;

const LG: &str = "198.18.20.5";
const SZ_MAIL: &str = "198.18.40.10";
const NET: &str = "203.0.113.7";

/// A TCP handshake from `c` to `s` through one port: the client's frames arrive at `at`,
/// the server's replies at the other interface of the same port. Returns the connection,
/// ready for its next segments.
fn handshake(e: &Engine, c: (&str, u16), s: (&str, u16), at: Ingress, reason: &str) -> TcpConn {
    handshake_at(e, NOW, c, s, at, reason)
}

fn handshake_at(
    e: &Engine,
    now: Timestamp,
    c: (&str, u16),
    s: (&str, u16),
    at: Ingress,
    reason: &str,
) -> TcpConn {
    let back = Ingress { side: at.side.other(), ..at };
    let mut conn = TcpConn::new(c, s);
    expect(e, now, at, &conn.syn(), Forward, reason);
    expect(e, now, back, &conn.syn_ack(), Forward, reason);
    expect(e, now, at, &conn.client(ACK, b""), Forward, reason);
    conn
}

#[test]
fn intra_zone_traffic_passes() {
    let e = engine();
    handshake(&e, (LG, 40000), ("198.18.20.25", 22), inside("lgwan"), "allow:intra-zone");
    expect(
        &e,
        NOW,
        inside("lgwan"),
        &udp("2001:db8:20::5", 5000, "2001:db8:20::9", 6000, b"x"),
        Forward,
        "allow:intra-zone",
    );
}

#[test]
fn mail_path_both_legs_and_no_reverse() {
    let e = engine();
    // The internet host's frames enter the internet port on its inside, and the
    // sanitization port on its outside: both judge them the same way.
    let mut c = handshake(&e, (NET, 41000), (SZ_MAIL, 25), inside("internet"), "allow:path:mail-textify/1");
    let banner = c.server(ACK | PSH, b"220 relay ESMTP\r\n");
    expect(&e, NOW, outside("internet"), &banner, Forward, "allow:path:mail-textify/1");
    handshake(&e, (NET, 41000), (SZ_MAIL, 25), outside("sanitization"), "allow:path:mail-textify/1");
    // Leg 2: the relay delivers to the LGWAN mail host.
    handshake(
        &e,
        (SZ_MAIL, 42000),
        ("198.18.20.25", 25),
        inside("sanitization"),
        "allow:path:mail-textify/2",
    );
    // The responder may never open the reverse direction.
    expect(&e, NOW, inside("sanitization"), &tcp(SZ_MAIL, 43000, NET, 25, SYN, b""), Drop, "deny:no-rule");
    expect(
        &e,
        NOW,
        inside("lgwan"),
        &tcp("198.18.20.25", 43000, SZ_MAIL, 25, SYN, b""),
        Drop,
        "deny:no-rule",
    );
    // The LGWAN host may not skip the relay.
    expect(&e, NOW, inside("lgwan"), &tcp(LG, 43000, NET, 25, SYN, b""), Drop, "deny:unsanitized-crossing");
}

#[test]
fn a_responder_syn_on_an_existing_flow_needs_its_own_permission() {
    let e = engine();
    handshake(&e, (NET, 41000), (SZ_MAIL, 25), inside("internet"), "allow:path:mail-textify/1");
    expect(&e, NOW, outside("internet"), &tcp(SZ_MAIL, 25, NET, 41000, SYN, b""), Drop, "deny:no-rule");
}

#[test]
fn lgwan_and_internet_never_talk_directly() {
    let e = engine();
    expect(&e, NOW, inside("lgwan"), &tcp(LG, 40000, NET, 443, SYN, b""), Drop, "deny:unsanitized-crossing");
    expect(
        &e,
        NOW,
        inside("internet"),
        &tcp(NET, 40000, LG, 443, SYN, b""),
        Drop,
        "deny:unsanitized-crossing",
    );
    expect(
        &e,
        NOW,
        inside("lgwan"),
        &udp("2001:db8:20::5", 5000, "2001:db8:30::1", 53, b""),
        Drop,
        "deny:unsanitized-crossing",
    );
}

#[test]
fn screen_transfer_alpha_model() {
    let e = engine();
    let rdp = [0x03, 0x00, 0x00, 0x13, 0x0e, 0xe0];
    let mut c =
        handshake(&e, (LG, 50000), ("203.0.113.50", 3389), inside("lgwan"), "allow:path:screen-transfer/1");
    expect(&e, NOW, inside("lgwan"), &c.client(ACK | PSH, &rdp), Forward, "allow:path:screen-transfer/1");
    // The VDI host cannot open a connection back.
    expect(
        &e,
        NOW,
        inside("internet"),
        &tcp("203.0.113.50", 3389, LG, 50001, SYN, b""),
        Drop,
        "deny:unsanitized-crossing",
    );
    // Nor may another internet host be reached with RDP.
    expect(
        &e,
        NOW,
        inside("lgwan"),
        &tcp(LG, 50002, "203.0.113.51", 3389, SYN, b""),
        Drop,
        "deny:unsanitized-crossing",
    );
}

#[test]
fn mynumber_is_isolated_except_for_the_approved_exception() {
    let e = engine();
    for dst in [LG, SZ_MAIL, NET, "198.18.50.1"] {
        expect(
            &e,
            NOW,
            inside("mynumber"),
            &tcp("198.18.10.9", 40000, dst, 22, SYN, b""),
            Drop,
            "deny:mynumber-isolation",
        );
    }
    expect(&e, NOW, inside("mynumber"), &ping("198.18.10.9", NET, 1, false), Drop, "deny:mynumber-isolation");
    handshake(
        &e,
        ("198.18.10.5", 40000),
        ("198.18.20.30", 22),
        inside("mynumber"),
        "allow:exception:juki-batch",
    );
    // Only its host and service.
    expect(
        &e,
        NOW,
        inside("mynumber"),
        &tcp("198.18.10.6", 40000, "198.18.20.30", 22, SYN, b""),
        Drop,
        "deny:mynumber-isolation",
    );
    expect(
        &e,
        NOW,
        inside("mynumber"),
        &tcp("198.18.10.5", 40001, "198.18.20.30", 23, SYN, b""),
        Drop,
        "deny:mynumber-isolation",
    );
    expect(
        &e,
        NOW,
        inside("lgwan"),
        &tcp("198.18.20.30", 40000, "198.18.10.5", 22, SYN, b""),
        Drop,
        "deny:mynumber-isolation",
    );
}

#[test]
fn an_expired_exception_cuts_its_open_flow() {
    let e = engine();
    let before = Timestamp(EXPIRY.0 - 10 * SEC);
    let c = ("198.18.10.5", 40000);
    let s = ("198.18.20.30", 22);
    let mut conn = handshake_at(&e, before, c, s, inside("mynumber"), "allow:exception:juki-batch");
    expect(
        &e,
        EXPIRY,
        inside("mynumber"),
        &conn.client(ACK, b"SSH-2.0-x\r\n"),
        Drop,
        "deny:mynumber-isolation",
    );
}

#[test]
fn spoofed_sources_are_dropped_on_inside_only() {
    let e = engine();
    expect(&e, NOW, inside("lgwan"), &tcp(NET, 1, SZ_MAIL, 25, SYN, b""), Drop, "deny:spoofed-source");
    expect(
        &e,
        NOW,
        inside("lgwan"),
        &udp("198.18.10.5", 1, "198.18.20.30", 53, b""),
        Drop,
        "deny:spoofed-source",
    );
    // From the router side, any source may arrive (the source's own port checked it).
    expect(
        &e,
        NOW,
        outside("sanitization"),
        &tcp(NET, 1, SZ_MAIL, 25, SYN, b""),
        Forward,
        "allow:path:mail-textify/1",
    );
}

#[test]
fn tcp_must_start_with_a_syn_and_bad_flags_never_pass() {
    let e = engine();
    expect(&e, NOW, inside("lgwan"), &tcp(LG, 1, "198.18.20.9", 22, ACK, b"data"), Drop, "deny:no-flow");
    expect(&e, NOW, inside("lgwan"), &tcp(LG, 1, "198.18.20.9", 22, SYN | ACK, b""), Drop, "deny:no-flow");
    for bad in [SYN | FIN, SYN | RST, 0, FIN | PSH | URG] {
        expect(&e, NOW, inside("lgwan"), &tcp(LG, 1, "198.18.20.9", 22, bad, b""), Drop, "deny:malformed");
    }
    // Bad flags on an established flow are dropped too, without ending the flow.
    let mut c = handshake(&e, (LG, 2), ("198.18.20.9", 22), inside("lgwan"), "allow:intra-zone");
    expect(
        &e,
        NOW,
        inside("lgwan"),
        &c.client_at(SYN | FIN, c.client_next(), 0, b""),
        Drop,
        "deny:malformed",
    );
    expect(&e, NOW, inside("lgwan"), &c.client(ACK, b""), Forward, "allow:intra-zone");
}

#[test]
fn a_closed_connection_can_be_reopened_with_a_new_syn() {
    let e = engine();
    let (c, s) = ((LG, 2), ("198.18.20.9", 22));
    let mut conn = handshake(&e, c, s, inside("lgwan"), "allow:intra-zone");
    expect(&e, NOW, inside("lgwan"), &conn.client(RST, b""), Forward, "allow:intra-zone");
    handshake(&e, c, s, inside("lgwan"), "allow:intra-zone");
}

#[test]
fn malformed_and_non_ip_frames() {
    let e = engine();
    expect(&e, NOW, inside("lgwan"), &[0u8; 5], Drop, "deny:malformed");
    let mut short = tcp(LG, 1, "198.18.20.9", 22, SYN, b"");
    short.truncate(14 + 20 + 10);
    expect(&e, NOW, inside("lgwan"), &short, Drop, "deny:malformed");
    expect(&e, NOW, inside("lgwan"), &eth(0x88cc, &[0; 40]), Drop, "deny:non-ip");
    expect(&e, NOW, inside("lgwan"), &arp(), Forward, "allow:link");
}

#[test]
fn listed_ethertypes_pass_as_link_traffic() {
    let text = POLICY.replace("[flow]", "[link]\nallow_ethertypes = [0x88cc]\n\n[flow]");
    let e = Engine::new(policy(&text));
    expect(&e, NOW, inside("lgwan"), &eth(0x88cc, &[0; 40]), Forward, "allow:link");
    expect(&e, NOW, inside("lgwan"), &eth(0x88b5, &[0; 40]), Drop, "deny:non-ip");
}

#[test]
fn neighbour_discovery_and_dhcp_stay_on_the_link() {
    let e = engine();
    // Router advertisement from a link-local router address to all-nodes.
    expect(
        &e,
        NOW,
        outside("lgwan"),
        &icmp("fe80::1", "ff02::1", 134, 0, [64, 0, 0, 0], &[0; 8], 255),
        Forward,
        "allow:link",
    );
    // Neighbour solicitation during duplicate address detection.
    expect(
        &e,
        NOW,
        inside("lgwan"),
        &icmp("::", "ff02::1:ff00:5", 135, 0, [0; 4], &[0; 16], 255),
        Forward,
        "allow:link",
    );
    // Not with a routed hop limit: then its link-local address is all that is left.
    expect(
        &e,
        NOW,
        inside("lgwan"),
        &icmp("fe80::5", "ff02::1", 133, 0, [0; 4], &[], 64),
        Drop,
        "deny:link-scope",
    );
    // DHCP discover from 0.0.0.0 to broadcast.
    expect(
        &e,
        NOW,
        inside("lgwan"),
        &udp("0.0.0.0", 68, "255.255.255.255", 67, &[1; 240]),
        Forward,
        "allow:link",
    );
}

#[test]
fn fragments_follow_their_first_fragment() {
    let e = engine();
    // A service that names no application (a datagram under inspection is never
    // fragmented): management to a sanitiser.
    let (m, d) = ("198.18.50.7".parse().unwrap(), "198.18.40.53".parse().unwrap());
    let dns = udp_datagram(5353, 53, &dns_query(7, "a-name.of.some.length.lgwan.example", 1));
    let first = eth(
        0x0800,
        &ipv4(m, d, 17, V4Opts { id: 77, more_fragments: true, ..V4Opts::default() }, &dns[..40]),
    );
    let later =
        eth(0x0800, &ipv4(m, d, 17, V4Opts { id: 77, frag_offset: 5, ..V4Opts::default() }, &dns[40..]));
    let orphan =
        eth(0x0800, &ipv4(m, d, 17, V4Opts { id: 78, frag_offset: 5, ..V4Opts::default() }, &dns[40..]));
    expect(&e, NOW, inside("management"), &later, Drop, "deny:fragment");
    expect(&e, NOW, inside("management"), &first, Forward, "allow:rule:mgmt-any");
    expect(&e, NOW, inside("management"), &later, Forward, "allow:rule:mgmt-any");
    expect(&e, NOW, inside("management"), &orphan, Drop, "deny:fragment");
    let s = "198.18.20.5".parse().unwrap();
    // A first fragment that is denied does not open the door for the rest.
    let n: std::net::Ipv4Addr = "203.0.113.9".parse().unwrap();
    let f1 = eth(
        0x0800,
        &ipv4(s, n, 17, V4Opts { id: 79, more_fragments: true, ..V4Opts::default() }, &dns[..40]),
    );
    let f2 = eth(0x0800, &ipv4(s, n, 17, V4Opts { id: 79, frag_offset: 5, ..V4Opts::default() }, &dns[40..]));
    expect(&e, NOW, inside("lgwan"), &f1, Drop, "deny:unsanitized-crossing");
    expect(&e, NOW, inside("lgwan"), &f2, Drop, "deny:fragment");
}

#[test]
fn tunnels_across_zones_need_a_service_that_names_them() {
    let e = engine();
    let inner = ipv4(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        17,
        V4Opts::default(),
        &udp_datagram(1, 2, b""),
    );
    let mut gre = vec![0, 0, 0x08, 0x00];
    gre.extend_from_slice(&inner);
    // management → sanitization is allowed for "anything", but a GRE tunnel is not named.
    expect(
        &e,
        NOW,
        inside("management"),
        &ip_frame("198.18.50.1", "198.18.40.7", 47, 64, &gre),
        Drop,
        "deny:tunnel",
    );
    // Within a zone, tunnels are the zone's business.
    expect(
        &e,
        NOW,
        inside("sanitization"),
        &ip_frame("198.18.40.1", "198.18.40.7", 47, 64, &gre),
        Forward,
        "allow:intra-zone",
    );
    // 6in4 and a VXLAN datagram likewise.
    let v6 = ipv6("2001:db8:50::1".parse().unwrap(), "2001:db8:40::1".parse().unwrap(), 59, 64, &[]);
    expect(
        &e,
        NOW,
        inside("management"),
        &ip_frame("198.18.50.1", "198.18.40.7", 41, 64, &v6),
        Drop,
        "deny:tunnel",
    );
    let vxlan = [&[0x08, 0, 0, 0, 0, 0, 1, 0][..], &eth(0x0800, &inner)].concat();
    expect(
        &e,
        NOW,
        inside("management"),
        &udp("198.18.50.1", 40000, "198.18.40.7", 4789, &vxlan),
        Drop,
        "deny:tunnel",
    );
}

#[test]
fn a_service_that_names_the_tunnel_lets_it_cross() {
    let text = POLICY.replace(
        "[[service]]\nname = \"anything\"\nproto = \"any\"",
        "[[service]]\nname = \"anything\"\nproto = \"gre\"",
    );
    let e = Engine::new(policy(&text));
    let gre = [0u8, 0, 0x08, 0x00];
    expect(
        &e,
        NOW,
        inside("management"),
        &ip_frame("198.18.50.1", "198.18.40.7", 47, 64, &gre),
        Forward,
        "allow:rule:mgmt-any",
    );
}

#[test]
fn the_first_payload_must_be_the_declared_application() {
    let e = engine();
    let mut c = handshake(&e, (NET, 41000), (SZ_MAIL, 25), inside("internet"), "allow:path:mail-textify/1");
    expect(
        &e,
        NOW,
        inside("internet"),
        &c.client(ACK | PSH, b"GET / HTTP/1.1\r\n"),
        Drop,
        "deny:app-mismatch",
    );
    // The flow stays cut.
    expect(&e, NOW, outside("internet"), &c.server(ACK, b"220 hi\r\n"), Drop, "deny:app-mismatch");
    // DNS over the DNS rule must look like DNS.
    let query = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w', b'w', 0, 0, 1, 0, 1];
    expect(
        &e,
        NOW,
        inside("lgwan"),
        &udp(LG, 5000, "198.18.40.53", 53, &query),
        Forward,
        "allow:rule:lgwan-dns",
    );
    expect(
        &e,
        NOW,
        inside("lgwan"),
        &udp(LG, 5001, "198.18.40.53", 53, b"SSH-2.0-tunnel"),
        Drop,
        "deny:app-mismatch",
    );
}

#[test]
fn icmp_echo_and_related_errors() {
    let e = engine();
    expect(
        &e,
        NOW,
        inside("management"),
        &ping("198.18.50.1", "198.18.40.7", 9, false),
        Forward,
        "allow:rule:mgmt-any",
    );
    expect(
        &e,
        NOW,
        outside("management"),
        &ping("198.18.40.7", "198.18.50.1", 9, true),
        Forward,
        "allow:rule:mgmt-any",
    );
    // A reply nobody asked for.
    expect(
        &e,
        NOW,
        outside("management"),
        &ping("198.18.40.7", "198.18.50.1", 10, true),
        Drop,
        "deny:no-flow",
    );
    // An ICMP error about an allowed flow goes back to its sender.
    let query = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1];
    expect(
        &e,
        NOW,
        inside("lgwan"),
        &udp(LG, 7000, "198.18.40.53", 53, &query),
        Forward,
        "allow:rule:lgwan-dns",
    );
    let (l, d) = (LG.parse().unwrap(), "198.18.40.53".parse().unwrap());
    let quoted = ipv4(l, d, 17, V4Opts::default(), &udp_datagram(7000, 53, &query));
    let unreachable = |src: &str, dst: &str, q: &[u8]| icmp(src, dst, 3, 3, [0; 4], &q[..28], 64);
    expect(&e, NOW, outside("lgwan"), &unreachable("198.18.40.53", LG, &quoted), Forward, "allow:related");
    // Not to another host, and not about a flow that does not exist.
    expect(
        &e,
        NOW,
        outside("lgwan"),
        &unreachable("198.18.40.53", "198.18.20.6", &quoted),
        Drop,
        "deny:no-flow",
    );
    let other = ipv4(l, d, 17, V4Opts::default(), &udp_datagram(7001, 53, &query));
    expect(&e, NOW, outside("lgwan"), &unreachable("198.18.40.53", LG, &other), Drop, "deny:no-flow");
}

#[test]
fn a_full_table_refuses_new_flows_but_keeps_established_ones() {
    let e = Engine::new(policy(&POLICY.replace("capacity = 1000", "capacity = 2")));
    let mut first = handshake(&e, (LG, 1), ("198.18.20.9", 22), inside("lgwan"), "allow:intra-zone");
    handshake(&e, (LG, 2), ("198.18.20.9", 22), inside("lgwan"), "allow:intra-zone");
    expect(&e, NOW, inside("lgwan"), &tcp(LG, 3, "198.18.20.9", 22, SYN, b""), Drop, "deny:flow-table-full");
    expect(&e, NOW, inside("lgwan"), &first.client(ACK, b"x"), Forward, "allow:intra-zone");
    assert_eq!(e.flow_stats().refused, 1);
}

#[test]
fn monitor_mode_forwards_what_enforce_drops_and_records_it() {
    let e = Engine::new(policy(&POLICY.replace("mode = \"enforce\"", "mode = \"monitor\"")));
    let v = expect(
        &e,
        NOW,
        inside("lgwan"),
        &tcp(LG, 40000, NET, 443, SYN, b""),
        Forward,
        "deny:unsanitized-crossing",
    );
    assert!(v.monitored && v.is_alert());
    // The flow is remembered with its would-be verdict, so its replies say the same.
    let v = expect(
        &e,
        NOW,
        outside("lgwan"),
        &tcp(NET, 443, LG, 40000, SYN | ACK, b""),
        Forward,
        "deny:unsanitized-crossing",
    );
    assert!(v.monitored);
    let v = expect(
        &e,
        NOW,
        inside("lgwan"),
        &tcp(LG, 1, "198.18.20.9", 22, SYN, b""),
        Forward,
        "allow:intra-zone",
    );
    assert!(!v.monitored);
    let c = e.counters();
    assert_eq!(c.reason("deny:unsanitized-crossing"), 2);
    let lg = c.ports[1];
    assert_eq!((lg.inside.monitored, lg.outside.monitored), (1, 1));
    assert_eq!(lg.inside.dropped + lg.outside.dropped, 0);
}

#[test]
fn a_reload_re_decides_existing_flows() {
    let e = engine();
    let mgmt = ("198.18.50.1", 40000);
    let sz = ("198.18.40.7", 22);
    let mut conn = handshake(&e, mgmt, sz, inside("management"), "allow:rule:mgmt-any");
    let without_rule = POLICY.replace("[[rule]]\nname = \"mgmt-any\"\nfrom = \"zone:management\"\nto = \"zone:sanitization\"\nservice = \"anything\"\n", "");
    assert_ne!(without_rule, POLICY);
    let generation = e.reload(policy(&without_rule)).unwrap();
    assert_eq!(generation, 2);
    expect(&e, NOW, inside("management"), &conn.client(ACK, b"SSH-2.0-x\r\n"), Drop, "deny:no-rule");
    // Ports cannot change without a restart.
    let renamed = POLICY.replace("inside = \"lg-in\"", "inside = \"lg-in2\"");
    assert!(e.reload(policy(&renamed)).is_err());
}

#[test]
fn vlan_tags_are_part_of_the_flow() {
    let text = POLICY.replace("outside = \"lg-out\"\n", "outside = \"lg-out\"\nvlans = [20, 21]\n");
    let e = Engine::new(policy(&text));
    let c = TcpConn::new((LG, 1), ("198.18.20.9", 22));
    expect(&e, NOW, inside("lgwan"), &vlan(&c.syn(), 0x8100, 20), Forward, "allow:intra-zone");
    // The reply on another VLAN is not the same flow.
    expect(&e, NOW, outside("lgwan"), &vlan(&c.syn_ack(), 0x8100, 21), Drop, "deny:no-flow");
    expect(&e, NOW, outside("lgwan"), &vlan(&c.syn_ack(), 0x8100, 20), Forward, "allow:intra-zone");
    // Tags the port does not list, and two tags, never cross.
    expect(&e, NOW, inside("lgwan"), &vlan(&c.syn(), 0x8100, 22), Drop, "deny:vlan");
    let qinq = vlan(&vlan(&c.syn(), 0x8100, 20), 0x88a8, 100);
    expect(&e, NOW, inside("lgwan"), &qinq, Drop, "deny:vlan");
    // Untagged frames still pass (untagged defaults to true); other ports take no tags.
    expect(&e, NOW, inside("lgwan"), &c.syn(), Forward, "allow:intra-zone");
    expect(&e, NOW, inside("internet"), &vlan(&tcp(NET, 1, NET, 2, SYN, b""), 0x8100, 20), Drop, "deny:vlan");
}

#[test]
fn idle_flows_expire() {
    let e = engine();
    let query = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1];
    expect(
        &e,
        NOW,
        inside("lgwan"),
        &udp(LG, 7000, "198.18.40.53", 53, &query),
        Forward,
        "allow:rule:lgwan-dns",
    );
    assert_eq!(e.flow_stats().entries, 1);
    assert_eq!(e.sweep(NOW.0 + 61 * SEC), 1);
    assert_eq!(e.flow_stats().entries, 0);
}

#[test]
fn counters_follow_verdicts() {
    let e = engine();
    expect(&e, NOW, inside("lgwan"), &tcp(LG, 40000, NET, 443, SYN, b""), Drop, "deny:unsanitized-crossing");
    expect(&e, NOW, inside("lgwan"), &arp(), Forward, "allow:link");
    let c = e.counters();
    assert_eq!(c.reason("deny:unsanitized-crossing"), 1);
    assert_eq!(c.reason("allow:link"), 1);
    let lg = c.ports[1].inside;
    assert_eq!((lg.packets, lg.forwarded, lg.dropped), (2, 1, 1));
}

#[test]
fn an_icmp_error_about_an_echo_request_is_related() {
    let e = engine();
    expect(
        &e,
        NOW,
        inside("management"),
        &ping("198.18.50.1", "198.18.40.7", 9, false),
        Forward,
        "allow:rule:mgmt-any",
    );
    let request = ip_packet(&ping("198.18.50.1", "198.18.40.7", 9, false)).to_vec();
    // From the management segment's own router: related.
    let exceeded = icmp("198.18.50.254", "198.18.50.1", 11, 0, [0; 4], &request[..28], 64);
    expect(&e, NOW, outside("management"), &exceeded, Forward, "allow:related");
    // From a router elsewhere: a third party, whatever it quotes.
    let exceeded = icmp("198.18.40.1", "198.18.50.1", 11, 0, [0; 4], &request[..28], 64);
    expect(&e, NOW, outside("management"), &exceeded, Drop, "deny:icmp-third-party");
}
