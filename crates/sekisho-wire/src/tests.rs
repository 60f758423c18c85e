use super::*;
use proptest::collection::vec;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};
use ParseError as E;

const SRC4: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 1);
const DST4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const MF: u16 = 0x2000;

fn eth(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    for (tpid, tci) in tags {
        f.extend(tpid.to_be_bytes());
        f.extend(tci.to_be_bytes());
    }
    f.extend(ethertype.to_be_bytes());
    f.extend(payload);
    f
}

fn ipv4_full(proto: u8, frag: u16, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    let hlen = 20 + opts.len();
    let mut p = vec![0x40 | (hlen / 4) as u8, 0];
    p.extend(((hlen + payload.len()) as u16).to_be_bytes());
    p.extend([0x12, 0x34]);
    p.extend(frag.to_be_bytes());
    p.extend([64, proto, 0, 0]);
    p.extend(SRC4.octets());
    p.extend(DST4.octets());
    p.extend(opts);
    p.extend(payload);
    p
}

fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_full(proto, 0, &[], payload)
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend((payload.len() as u16).to_be_bytes());
    p.extend([next, 64]);
    p.extend(SRC6.octets());
    p.extend(DST6.octets());
    p.extend(payload);
    p
}

fn tcp(sport: u16, dport: u16, flags: u16, opt_words: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend(sport.to_be_bytes());
    t.extend(dport.to_be_bytes());
    t.extend([0, 0, 0, 1, 0, 0, 0, 0]);
    t.push(((5 + opt_words) << 4) | (flags >> 8) as u8);
    t.push(flags as u8);
    t.extend([0xff, 0xff, 0, 0, 0, 0]);
    t.extend(vec![1; usize::from(opt_words) * 4]);
    t.extend(payload);
    t
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend(sport.to_be_bytes());
    u.extend(dport.to_be_bytes());
    u.extend(((8 + payload.len()) as u16).to_be_bytes());
    u.extend([0, 0]);
    u.extend(payload);
    u
}

fn icmp(ty: u8, code: u8, rest: &[u8]) -> Vec<u8> {
    [&[ty, code, 0, 0][..], rest].concat()
}

/// Generic extension header (hop-by-hop, destination options, mobility) of (units+1)*8 bytes.
fn ext(next: u8, units: u8) -> Vec<u8> {
    let mut h = vec![0; (usize::from(units) + 1) * 8];
    h[0] = next;
    h[1] = units;
    h
}

fn routing(next: u8, ty: u8) -> Vec<u8> {
    vec![next, 0, ty, 0, 0, 0, 0, 0]
}

fn frag6(next: u8, offset: u16, more: bool, id: u32) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend(((offset << 3) | u16::from(more)).to_be_bytes());
    h.extend(id.to_be_bytes());
    h
}

fn ip_of(r: Result<Parsed<'_>, ParseError>) -> Ip<'_> {
    match r.expect("parses").l3 {
        L3::Ip(ip) => ip,
        other => panic!("not ip: {other:?}"),
    }
}

/// Parses an Ethernet frame; the bytes are leaked so results can outlive temporaries.
fn pe(f: Vec<u8>) -> Result<Parsed<'static>, ParseError> {
    parse_ethernet(Vec::leak(f))
}

/// Parses a raw IP packet; the bytes are leaked so results can outlive temporaries.
fn raw(f: &[u8]) -> Ip<'static> {
    ip_of(parse_ip(Vec::leak(f.to_vec())))
}

fn err(f: &[u8]) -> ParseError {
    parse_ip(f).expect_err("must fail")
}

fn tcp_of(ip: Ip<'_>) -> Tcp<'_> {
    match ip.l4 {
        L4::Tcp(t) => t,
        other => panic!("not tcp: {other:?}"),
    }
}

fn udp_of(ip: Ip<'_>) -> Udp<'_> {
    match ip.l4 {
        L4::Udp(u) => u,
        other => panic!("not udp: {other:?}"),
    }
}

fn icmp_of(ip: Ip<'_>) -> Icmp {
    match ip.l4 {
        L4::Icmp(i) => i,
        other => panic!("not icmp: {other:?}"),
    }
}

#[test]
fn tcp_over_ipv4_with_padding() {
    let pkt = ipv4(6, &tcp(40000, 443, 0x12, 0, b"hi"));
    let mut frame = eth(&[], 0x0800, &pkt);
    frame.resize(61, 0);
    assert_eq!(parse_ethernet(&frame), Err(E::EthernetTrailer), "padding beyond 60 bytes");
    frame.truncate(60); // ethernet padding to the minimum frame
    let p = parse_ethernet(&frame).unwrap();
    assert_eq!(p.vlan, Vlan::NONE);
    let ip = ip_of(Ok(p));
    assert_eq!((ip.src, ip.dst), (IpAddr::V4(SRC4), IpAddr::V4(DST4)));
    assert_eq!((ip.hop_limit, ip.protocol, ip.total_len), (64, 6, pkt.len()));
    assert_eq!((ip.fragment, ip.tunnel), (None, None));
    let t = tcp_of(ip);
    assert_eq!((t.sport, t.dport, t.payload), (40000, 443, &b"hi"[..]));
    assert_eq!(t.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(ip.ports(), (40000, 443));
}

#[test]
fn ipv4_options_and_tcp_options() {
    let ip = raw(&ipv4_full(6, 0, &[1, 1, 1, 0], &tcp(1, 2, 0x10, 3, b"xyz")));
    assert_eq!(tcp_of(ip).payload, b"xyz");
    // Record route (7) and a timestamp option (68) are harmless and pass.
    let rr = [7, 7, 4, 0, 0, 0, 0, 1];
    assert_eq!(tcp_of(raw(&ipv4_full(6, 0, &rr, &tcp(1, 2, 0x10, 0, b"")))).sport, 1);
}

#[test]
fn tcp_sequence_window_and_window_scale() {
    let mut seg = tcp(1, 2, 0x02, 2, b"");
    seg[4..8].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    seg[8..12].copy_from_slice(&7u32.to_be_bytes());
    seg[14..16].copy_from_slice(&29200u16.to_be_bytes());
    // options: NOP, window scale 7, NOP NOP NOP, end
    seg[20..28].copy_from_slice(&[1, 3, 3, 7, 1, 1, 1, 0]);
    let t = tcp_of(raw(&ipv4(6, &seg)));
    assert_eq!((t.seq, t.ack, t.window, t.wscale), (0xdead_beef, 7, 29200, Some(7)));
    // A shift above 14 is clamped (RFC 7323 section 2.3).
    seg[23] = 200;
    assert_eq!(tcp_of(raw(&ipv4(6, &seg))).wscale, Some(14));
    // Only a SYN carries the option; on other segments it is ignored.
    seg[13] = 0x10;
    assert_eq!(tcp_of(raw(&ipv4(6, &seg))).wscale, None);
    // Malformed option lists give no scale but still parse.
    seg[13] = 0x02;
    seg[20..28].copy_from_slice(&[2, 1, 3, 3, 7, 0, 0, 0]);
    assert_eq!(tcp_of(raw(&ipv4(6, &seg))).wscale, None);
    seg[20..28].copy_from_slice(&[1, 1, 1, 1, 1, 3, 9, 7]);
    assert_eq!(tcp_of(raw(&ipv4(6, &seg))).wscale, None, "length 9 runs past the options");
}

#[test]
fn ipv4_source_routing_and_bad_options_are_refused() {
    let seg = tcp(1, 2, 0x02, 0, b"");
    let lsrr = [1, 131, 7, 4, 198, 18, 20, 1];
    let ssrr = [137, 7, 4, 198, 18, 20, 1, 0];
    let bad_len = [68, 1, 0, 0];
    let past_end = [68, 12, 0, 0];
    for opts in [&lsrr[..], &ssrr[..], &bad_len[..], &past_end[..]] {
        assert_eq!(err(&ipv4_full(6, 0, opts, &seg)), E::Ipv4SourceRouteOrBadOption, "{opts:?}");
    }
}

#[test]
fn ipv4_errors() {
    let good = ipv4(6, &tcp(1, 2, 0x10, 0, b""));
    assert_eq!(err(&good[..19]), E::TruncatedIpv4Header);
    let mut p = good.clone();
    p[0] = 0x44;
    assert_eq!(err(&p), E::Ipv4HeaderLengthBelow20);
    p[0] = 0x4f;
    assert_eq!(err(&p[..40]), E::Ipv4HeaderExceedsData);
    let mut p = good.clone();
    p[2..4].copy_from_slice(&19u16.to_be_bytes());
    assert_eq!(err(&p), E::Ipv4TotalLengthBelowHeader);
    p[2..4].copy_from_slice(&41u16.to_be_bytes());
    assert_eq!(err(&p), E::Ipv4TotalLengthExceedsData);
    assert_eq!(err(&[]), E::EmptyIp);
    assert_eq!(err(&[0x50; 40]), E::UnknownIpVersion);
}

#[test]
fn ethernet_errors_and_version_mismatch() {
    assert_eq!(parse_ethernet(&[0; 13]), Err(E::TruncatedEthernet));
    let v6 = ipv6(59, &[]);
    let v4p = ipv4(59, &[]);
    assert_eq!(pe(eth(&[], 0x0800, &v6)), Err(E::IpVersionMismatch));
    assert_eq!(pe(eth(&[], 0x86dd, &[v4p.clone(), vec![0; 20]].concat())), Err(E::IpVersionMismatch));
    let other = pe(eth(&[], 0x88cc, &[1, 2])).unwrap();
    assert_eq!(other.l3, L3::Other { ethertype: 0x88cc });
}

#[test]
fn arp() {
    assert_eq!(pe(eth(&[], 0x0806, &[0; 28])).unwrap().l3, L3::Arp);
    assert_eq!(pe(eth(&[], 0x0806, &[0; 27])), Err(E::TruncatedArp));
}

#[test]
fn vlan_tags() {
    let pkt = ipv4(17, &udp(68, 67, b""));
    let one = pe(eth(&[(0x8100, 0xe00a)], 0x0800, &pkt)).unwrap();
    assert_eq!(one.vlan, Vlan { outer: Some(10), inner: None, outer_is_service_tag: false });
    assert!(matches!(one.l3, L3::Ip(_)));
    for tpid in [0x88a8, 0x9100] {
        let two = pe(eth(&[(tpid, 100), (0x8100, 0x2014)], 0x0800, &pkt)).unwrap();
        assert_eq!(two.vlan, Vlan { outer: Some(100), inner: Some(20), outer_is_service_tag: true });
    }
    let three = eth(&[(0x88a8, 1), (0x8100, 2), (0x8100, 3)], 0x0800, &pkt);
    assert_eq!(parse_ethernet(&three), Err(E::TooManyVlanTags));
    let bad_inner = eth(&[(0x8100, 1), (0x88a8, 2)], 0x0800, &pkt);
    assert_eq!(parse_ethernet(&bad_inner), Err(E::BadInnerVlanTpid));
    let f = eth(&[(0x8100, 1)], 0x0800, &[]);
    assert_eq!(parse_ethernet(&f[..16]), Err(E::TruncatedVlan));
    let f = eth(&[(0x88a8, 1), (0x8100, 2)], 0x0800, &[]);
    assert_eq!(parse_ethernet(&f[..20]), Err(E::TruncatedVlan));
    // keys distinguish untagged, VID 0, and tag position
    let keys = [
        Vlan::NONE.key(),
        Vlan { outer: Some(0), inner: None, outer_is_service_tag: false }.key(),
        Vlan { outer: None, inner: Some(0), outer_is_service_tag: false }.key(),
        Vlan { outer: Some(5), inner: Some(6), outer_is_service_tag: false }.key(),
        Vlan { outer: Some(6), inner: Some(5), outer_is_service_tag: false }.key(),
        Vlan { outer: Some(5), inner: None, outer_is_service_tag: true }.key(),
        Vlan { outer: Some(5), inner: None, outer_is_service_tag: false }.key(),
    ];
    for (i, a) in keys.iter().enumerate() {
        assert!(keys[i + 1..].iter().all(|b| a != b));
    }
}

#[test]
fn tcp_errors() {
    assert_eq!(err(&ipv4(6, &[0; 19])), E::TruncatedTcpHeader);
    let mut t = tcp(1, 2, 0x10, 0, b"");
    t[12] = 0x40;
    assert_eq!(err(&ipv4(6, &t)), E::TcpDataOffsetBelow5);
    t[12] = 0x60;
    assert_eq!(err(&ipv4(6, &t)), E::TcpHeaderExceedsData);
}

#[test]
fn tcp_flags() {
    use TcpFlags as F;
    for bad in [F::SYN | F::FIN, F::SYN | F::RST, F(0), F::ECE | F::CWR, F::FIN | F::PSH | F::URG, F(0x1ff)] {
        assert!(bad.is_invalid(), "{bad:?}");
    }
    for good in [F::SYN, F::SYN | F::ACK, F::ACK | F::PSH, F::FIN | F::ACK, F::RST, F::SYN | F::ECE | F::CWR]
    {
        assert!(!good.is_invalid(), "{good:?}");
    }
    assert!((F::SYN | F::ACK).contains(F::SYN) && !F::SYN.contains(F::SYN | F::ACK));
    let t = tcp_of(raw(&ipv4(6, &tcp(1, 2, 0x1d2, 0, b""))));
    assert_eq!(t.flags, F::AE | F::CWR | F::ACK | F::SYN | F::ECE);
}

#[test]
fn udp_lengths() {
    let mut u = udp(5353, 5353, b"abcdef");
    u[4..6].copy_from_slice(&10u16.to_be_bytes()); // UDP length shorter than IP: trust UDP
    assert_eq!(udp_of(raw(&ipv4(17, &u))).payload, b"ab");
    u[4..6].copy_from_slice(&7u16.to_be_bytes());
    assert_eq!(err(&ipv4(17, &u)), E::UdpLengthBelow8);
    u[4..6].copy_from_slice(&15u16.to_be_bytes());
    assert_eq!(err(&ipv4(17, &u)), E::UdpLengthExceedsData);
    assert_eq!(err(&ipv4(17, &u[..7])), E::TruncatedUdpHeader);
}

#[test]
fn ipv4_fragments() {
    let seg = tcp(1, 80, 0x02, 0, &[7; 16]);
    let first = raw(&ipv4_full(6, MF, &[], &seg));
    assert_eq!(first.fragment, Some(Fragment { id: 0x1234, offset: 0, more: true, proto: 6 }));
    assert_eq!(tcp_of(first).payload.len(), 16);
    // tiny first fragments
    assert_eq!(err(&ipv4_full(6, MF, &[], &seg[..16])), E::TinyFirstFragment);
    let opts = tcp(1, 80, 0x02, 2, b"");
    assert_eq!(err(&ipv4_full(6, MF, &[], &opts[..24])), E::TinyFirstFragment);
    assert_eq!(err(&ipv4_full(17, MF, &[], &[0; 7])), E::TinyFirstFragment);
    assert_eq!(err(&ipv4_full(1, MF, &[], &icmp(3, 0, &[0; 3]))), E::TinyFirstFragment);
    // first UDP fragment: UDP length covers the whole datagram
    let mut u = udp(53, 53, &[9; 16]);
    u[4..6].copy_from_slice(&3000u16.to_be_bytes());
    assert_eq!(udp_of(raw(&ipv4_full(17, MF, &[], &u))).payload, &[9; 16]);
    // later fragments
    let mid = raw(&ipv4_full(6, MF | 185, &[], &[0; 8]));
    assert_eq!((mid.l4, mid.fragment.map(|f| f.offset)), (L4::NotFirstFragment(&[0; 8][..]), Some(185)));
    let last = raw(&ipv4_full(17, 3, &[], &[0; 3]));
    assert_eq!(last.fragment, Some(Fragment { id: 0x1234, offset: 3, more: false, proto: 17 }));
    assert_eq!(last.ports(), (0, 0));
    assert_eq!(err(&ipv4_full(6, 1, &[], &[0; 8])), E::TcpFragmentOffsetOne);
    assert!(parse_ip(&ipv4_full(17, 1, &[], &[0; 8])).is_ok());
    assert_eq!(err(&ipv4_full(17, 0x1fff, &[], &[0; 100])), E::FragmentTooLarge);
    // DF alone is not a fragment
    assert_eq!(raw(&ipv4_full(6, 0x4000, &[], &seg)).fragment, None);
}

#[test]
fn icmpv4() {
    let echo = icmp_of(raw(&ipv4(1, &icmp(8, 0, &[0xbe, 0xef, 0, 1]))));
    assert_eq!((echo.v6, echo.ty, echo.code, echo.ident, echo.quoted), (false, 8, 0, 0xbeef, None));
    assert_eq!(raw(&ipv4(1, &icmp(0, 0, &[0xbe, 0xef, 0, 1]))).ports(), (0, 0xbeef));
    assert_eq!(raw(&ipv4(1, &icmp(8, 0, &[0xbe, 0xef, 0, 1]))).ports(), (0xbeef, 0));
    assert_eq!(
        raw(&ipv4(1, &icmp(5, 0, &[0xbe, 0xef, 0, 1]))).ports(),
        (0, 0),
        "a redirect has no identifier"
    );
    assert_eq!(err(&ipv4(1, &[3, 0, 0])), E::TruncatedIcmp);
    assert_eq!(err(&ipv4(1, &icmp(8, 0, &[0, 1]))), E::TruncatedIcmp);
    assert!(parse_ip(&ipv4(1, &icmp(3, 1, &[]))).is_ok());
    // destination unreachable quoting a TCP SYN (only the first 8 bytes of TCP)
    let orig = ipv4(6, &tcp(40000, 25, 0x02, 0, b""));
    let unreach = icmp_of(raw(&ipv4(1, &icmp(3, 3, &[&[0; 4][..], &orig[..28]].concat()))));
    let q = unreach.quoted.unwrap();
    assert_eq!(
        (q.src, q.dst, q.protocol, q.sport, q.dport, q.tcp_seq),
        (IpAddr::V4(SRC4), IpAddr::V4(DST4), 6, 40000, 25, Some(1))
    );
    assert_eq!(unreach.ident, 0);
    // time exceeded quoting UDP; quoted echo
    let orig = ipv4(17, &udp(33434, 53, b""));
    assert_eq!(
        icmp_of(raw(&ipv4(1, &icmp(11, 0, &[&[0; 4][..], &orig].concat())))).quoted.map(|q| q.sport),
        Some(33434)
    );
    let orig = ipv4(1, &icmp(8, 0, &[0x12, 0x34, 0, 9]));
    let q = icmp_of(raw(&ipv4(1, &icmp(12, 0, &[&[0; 4][..], &orig].concat())))).quoted.unwrap();
    assert_eq!((q.protocol, q.sport, q.dport), (1, 0x1234, 0));
    let reply = ipv4(1, &icmp(0, 0, &[0x12, 0x34, 0, 9]));
    let q = icmp_of(raw(&ipv4(1, &icmp(3, 1, &[&[0; 4][..], &reply].concat())))).quoted.unwrap();
    assert_eq!((q.protocol, q.sport, q.dport), (1, 0, 0x1234), "a quoted reply keeps the requester's side");
    // short quote: outer still parses
    let short = icmp_of(raw(&ipv4(1, &icmp(3, 3, &[&[0; 4][..], &orig[..22]].concat()))));
    assert_eq!((short.ty, short.quoted), (3, None));
    // echo reply is not an error: nothing quoted even if bytes look like an IP header
    assert_eq!(icmp_of(raw(&ipv4(1, &icmp(0, 0, &[&[0; 4][..], &orig].concat())))).quoted, None);
}

#[test]
fn ipv6_basic_and_errors() {
    let pkt = ipv6(6, &tcp(5000, 22, 0x02, 0, b"ssh"));
    let mut frame = eth(&[], 0x86dd, &pkt);
    frame.extend([0; 6]);
    assert_eq!(parse_ethernet(&frame), Err(E::EthernetTrailer), "bytes after the packet");
    frame.truncate(frame.len() - 6);
    let ip = ip_of(parse_ethernet(&frame));
    assert_eq!(
        (ip.src, ip.dst, ip.hop_limit, ip.total_len),
        (IpAddr::V6(SRC6), IpAddr::V6(DST6), 64, pkt.len())
    );
    assert_eq!(tcp_of(ip).payload, b"ssh");
    assert_eq!(err(&pkt[..39]), E::TruncatedIpv6Header);
    assert_eq!(err(&pkt[..pkt.len() - 1]), E::Ipv6PayloadLengthExceedsData);
    assert_eq!(err(&ipv6(0, &[])), E::Ipv6Jumbogram);
    let none = raw(&ipv6(59, &[]));
    assert_eq!((none.protocol, none.l4), (59, L4::Other));
}

#[test]
fn ipv6_extension_chain() {
    let t = tcp(1, 2, 0x10, 0, b"p");
    let chain = [
        ext(43, 0),
        routing(60, 2),
        ext(51, 1),
        vec![135, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ext(6, 0),
        t.clone(),
    ]
    .concat();
    let ip = raw(&ipv6(0, &chain));
    assert_eq!((ip.protocol, ip.fragment), (6, None));
    assert_eq!(tcp_of(ip).payload, b"p");
    assert_eq!(err(&ipv6(60, &[ext(0, 0), t.clone()].concat())), E::HopByHopNotFirst);
    assert_eq!(err(&ipv6(43, &[routing(6, 0), t.clone()].concat())), E::RoutingHeaderType0);
    let mut srh = routing(6, 4);
    srh[3] = 1; // segments left
    assert_eq!(err(&ipv6(43, &[srh, t.clone()].concat())), E::RoutingHeaderInUse);
    assert_eq!(err(&ipv6(60, &ext(6, 1)[..12])), E::TruncatedExtensionHeader);
    assert_eq!(err(&ipv6(60, &[6])), E::TruncatedExtensionHeader);
    let eight: Vec<u8> = (0..8).flat_map(|i| ext(if i == 7 { 59 } else { 60 }, 0)).collect();
    assert_eq!(raw(&ipv6(60, &eight)).l4, L4::Other);
    let nine: Vec<u8> = (0..9).flat_map(|i| ext(if i == 8 { 59 } else { 60 }, 0)).collect();
    assert_eq!(err(&ipv6(60, &nine)), E::TooManyExtensionHeaders);
    // ESP stops the walk
    assert_eq!(raw(&ipv6(60, &[ext(50, 0), vec![0; 16]].concat())).protocol, 50);
}

#[test]
fn ipv6_fragments() {
    let t = tcp(1, 2, 0x02, 0, b"data");
    let atomic = raw(&ipv6(44, &[frag6(6, 0, false, 9), t.clone()].concat()));
    assert_eq!(atomic.fragment, None);
    assert!(matches!(atomic.l4, L4::Tcp(_)));
    let first = raw(&ipv6(60, &[ext(44, 0), frag6(6, 0, true, 0xdead_beef), t.clone()].concat()));
    assert_eq!(first.fragment, Some(Fragment { id: 0xdead_beef, offset: 0, more: true, proto: 6 }));
    assert!(matches!(first.l4, L4::Tcp(_)));
    // RFC 7112: the whole chain and the transport header in the first fragment
    assert_eq!(err(&ipv6(44, &[frag6(6, 0, true, 1), t[..12].to_vec()].concat())), E::TinyFirstFragment);
    assert_eq!(
        err(&ipv6(44, &[frag6(60, 0, true, 1), ext(6, 2)[..16].to_vec()].concat())),
        E::TinyFirstFragment
    );
    assert_eq!(err(&ipv6(44, &[frag6(58, 0, true, 1), icmp(128, 0, &[])].concat())), E::TinyFirstFragment);
    let later = raw(&ipv6(44, &[frag6(17, 100, true, 5), vec![0; 8]].concat()));
    assert_eq!((later.protocol, later.l4), (17, L4::NotFirstFragment(&[0; 8][..])));
    assert_eq!(later.fragment, Some(Fragment { id: 5, offset: 100, more: true, proto: 17 }));
    assert_eq!(err(&ipv6(44, &[frag6(6, 1, false, 5), vec![0; 8]].concat())), E::TcpFragmentOffsetOne);
    assert_eq!(
        err(&ipv6(44, &[frag6(44, 0, true, 5), frag6(6, 0, false, 5), t].concat())),
        E::DuplicateFragmentHeader
    );
    assert_eq!(
        err(&ipv6(44, &[frag6(44, 0, false, 5), frag6(6, 0, false, 5), tcp(1, 2, 0x02, 0, b"")].concat())),
        E::DuplicateFragmentHeader
    );
    assert_eq!(err(&ipv6(44, &[frag6(17, 0x1fff, false, 5), vec![0; 64]].concat())), E::FragmentTooLarge);
}

#[test]
fn icmpv6() {
    let echo = icmp_of(raw(&ipv6(58, &icmp(128, 0, &[0, 7, 0, 1]))));
    assert_eq!((echo.v6, echo.ty, echo.ident), (true, 128, 7));
    let ra = icmp_of(raw(&ipv6(58, &icmp(134, 0, &[0; 12]))));
    assert_eq!((ra.ty, ra.ident, ra.quoted), (134, 0, None));
    // packet too big quoting UDP behind a destination-options header
    let orig = ipv6(60, &[ext(17, 0), udp(4500, 500, &[0; 64])].concat());
    let ptb = icmp_of(raw(&ipv6(58, &icmp(2, 0, &[&[0, 0, 5, 0xdc][..], &orig[..60]].concat()))));
    let q = ptb.quoted.unwrap();
    assert_eq!((q.src, q.protocol, q.sport, q.dport), (IpAddr::V6(SRC6), 17, 4500, 500));
    // ICMPv4 inside IPv6 and ICMPv6 inside IPv4 are just "other"
    assert_eq!(raw(&ipv6(1, &icmp(8, 0, &[0; 4]))).l4, L4::Other);
    assert_eq!(raw(&ipv4(58, &icmp(128, 0, &[0; 4]))).l4, L4::Other);
}

#[test]
fn tunnels() {
    let inner6 = ipv6(59, &[0; 8]);
    assert_eq!(raw(&ipv4(47, &[0; 4])).tunnel, Some(Tunnel::Gre));
    assert_eq!(raw(&ipv4(4, &ipv4(6, &[]))).tunnel, Some(Tunnel::IpInIp));
    let sixin4 = raw(&ipv4(41, &inner6));
    assert_eq!((sixin4.tunnel, sixin4.l4), (Some(Tunnel::Ipv6InIp), L4::Other));
    assert_eq!(raw(&ipv6(4, &ipv4(59, &[]))).tunnel, Some(Tunnel::IpInIp));
    assert_eq!(raw(&ipv4_full(47, 10, &[], &[0; 8])).tunnel, Some(Tunnel::Gre));
    let vx = [&[0x08, 0, 0, 0, 0, 0, 0x2a, 0][..], &[0; 14]].concat();
    let ip = raw(&ipv4(17, &udp(51000, 4789, &vx)));
    assert_eq!((ip.tunnel, udp_of(ip).dport), (Some(Tunnel::Vxlan), 4789));
    // A receiver on a tunnel port decapsulates whatever the header's flags say.
    assert_eq!(raw(&ipv4(17, &udp(51000, 4789, &[0; 16]))).tunnel, Some(Tunnel::Vxlan));
    assert_eq!(raw(&ipv4(17, &udp(8472, 51000, &vx))).tunnel, Some(Tunnel::Vxlan));
    assert_eq!(raw(&ipv4(17, &udp(51000, 6081, &[0; 16]))).tunnel, Some(Tunnel::Geneve));
    for port in [4754, 6635, 1701] {
        assert_eq!(raw(&ipv4(17, &udp(51000, port, &[0; 16]))).tunnel, Some(Tunnel::UdpEncap), "{port}");
    }
    for proto in [94, 97, 98, 115, 137] {
        assert_eq!(raw(&ipv4(proto, &[0; 16])).tunnel, Some(Tunnel::OtherIp), "{proto}");
    }
    // A first fragment that ends right after the UDP header hides what it carries.
    assert_eq!(err(&ipv4_full(17, MF, &[], &udp(51000, 4789, &[0; 7]))), E::TinyFirstFragment);
    assert_eq!(raw(&ipv4(17, &udp(3544, 40000, b"x"))).tunnel, Some(Tunnel::Teredo));
    assert_eq!(raw(&ipv4(17, &udp(50000, 40000, &inner6))).tunnel, Some(Tunnel::Teredo));
    let origin = [&[0, 0, 1, 2, 3, 4, 5, 6][..], &inner6].concat();
    assert_eq!(raw(&ipv4(17, &udp(50000, 40000, &origin))).tunnel, Some(Tunnel::Teredo));
    let auth = [&[0, 1, 1, 2, 9, 9, 9][..], &[0; 9], &origin].concat();
    assert_eq!(raw(&ipv4(17, &udp(50000, 40000, &auth))).tunnel, Some(Tunnel::Teredo));
    assert_eq!(raw(&ipv4(17, &udp(50000, 40000, &inner6[..47]))).tunnel, None);
    assert_eq!(raw(&ipv6(17, &udp(50000, 40000, &[0; 48]))).tunnel, None);
}

#[test]
fn error_display() {
    assert_eq!(E::TinyFirstFragment.to_string(), "tiny first fragment");
    assert_eq!(E::Ipv4HeaderLengthBelow20.as_str(), "ipv4 header length below 20");
}

fn templates() -> Vec<Vec<u8>> {
    let orig4 = ipv4(6, &tcp(40000, 25, 0x02, 0, b""));
    let orig6 = ipv6(60, &[ext(17, 0), udp(4500, 500, &[0; 16])].concat());
    let inner6 = ipv6(17, &udp(1, 2, b"teredo"));
    vec![
        eth(&[], 0x0800, &ipv4_full(6, 0, &[1, 1, 1, 0], &tcp(1234, 80, 0x18, 2, b"GET / HTTP/1.1\r\n"))),
        eth(&[(0x88a8, 10), (0x8100, 20)], 0x0800, &ipv4(17, &udp(53, 53, b"\x12\x34query"))),
        eth(&[], 0x0800, &ipv4_full(6, MF, &[], &tcp(1, 2, 0x02, 1, b"frag"))),
        eth(&[], 0x0800, &ipv4(1, &icmp(3, 3, &[&[0; 4][..], &orig4].concat()))),
        eth(&[], 0x0800, &ipv4(17, &udp(9, 4789, &[8, 0, 0, 0, 0, 0, 1, 0, 1, 2, 3]))),
        eth(&[], 0x0800, &ipv4(17, &udp(9, 10, &[&[0, 0, 1, 2, 3, 4, 5, 6][..], &inner6].concat()))),
        eth(
            &[(0x8100, 5)],
            0x86dd,
            &ipv6(0, &[ext(43, 0), routing(44, 2), frag6(6, 0, true, 7), tcp(1, 2, 0x11, 1, b"x")].concat()),
        ),
        eth(&[], 0x86dd, &ipv6(58, &icmp(1, 0, &[&[0; 4][..], &orig6].concat()))),
        eth(&[], 0x86dd, &ipv6(44, &[frag6(17, 3, false, 1), vec![0; 16]].concat())),
        eth(&[], 0x0806, &[0; 28]),
    ]
}

/// Differential oracle: whatever parse_ip accepts, pnet's views read the same fields.
fn pnet_agrees(bytes: &[u8], ip: &Ip<'_>) {
    use pnet_packet::{ipv4::Ipv4Packet, ipv6::Ipv6Packet, tcp::TcpPacket, udp::UdpPacket};
    let l4 = match (ip.src, Ipv4Packet::new(bytes), Ipv6Packet::new(bytes)) {
        (IpAddr::V4(_), Some(p), _) => {
            assert_eq!((ip.src, ip.dst), (IpAddr::V4(p.get_source()), IpAddr::V4(p.get_destination())));
            assert_eq!((ip.hop_limit, ip.protocol), (p.get_ttl(), p.get_next_level_protocol().0));
            assert_eq!(ip.total_len, usize::from(p.get_total_length()));
            assert_eq!(ip.fragment.map_or(0, |f| f.offset), p.get_fragment_offset());
            &bytes[usize::from(p.get_header_length()) * 4..]
        }
        (IpAddr::V6(_), _, Some(p)) => {
            assert_eq!((ip.src, ip.dst), (IpAddr::V6(p.get_source()), IpAddr::V6(p.get_destination())));
            assert_eq!(ip.hop_limit, p.get_hop_limit());
            assert_eq!(ip.total_len, 40 + usize::from(p.get_payload_length()));
            return; // extension headers: pnet has no chain walker
        }
        _ => panic!("accepted a packet pnet cannot view"),
    };
    match ip.l4 {
        L4::Tcp(t) => {
            let p = TcpPacket::new(l4).expect("tcp header");
            assert_eq!(
                (t.sport, t.dport, t.flags.0 & 0xff),
                (p.get_source(), p.get_destination(), u16::from(p.get_flags()))
            );
            assert_eq!((t.seq, t.ack, t.window), (p.get_sequence(), p.get_acknowledgement(), p.get_window()));
        }
        L4::Udp(u) => {
            let p = UdpPacket::new(l4).expect("udp header");
            assert_eq!((u.sport, u.dport), (p.get_source(), p.get_destination()));
        }
        _ => {}
    }
}

fn check_any(bytes: &[u8]) {
    // Exercise every reachable accessor and check lengths stay within the input.
    let raw_ip = bytes.get(14..).unwrap_or(&[]);
    for (r, input) in
        [(parse_ethernet(bytes), None), (parse_ip(bytes), Some(bytes)), (parse_ip(raw_ip), Some(raw_ip))]
    {
        if let Ok(Parsed { l3: L3::Ip(ip), .. }) = r {
            assert!(ip.total_len <= bytes.len());
            let _ = ip.ports();
            match ip.l4 {
                L4::Tcp(t) => {
                    let _ = t.flags.is_invalid();
                    assert!(t.payload.len() + 20 <= ip.total_len);
                }
                L4::Udp(u) => assert!(u.payload.len() + 8 <= ip.total_len),
                _ => {}
            }
            if let Some(input) = input {
                pnet_agrees(input, &ip);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..2000)) {
        check_any(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic(
        which in any::<prop::sample::Index>(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let templates = templates();
        let mut f = which.get(&templates).clone();
        for (at, x) in flips {
            let i = at.index(f.len());
            f[i] ^= x;
        }
        if let Some(c) = cut {
            f.truncate(c.index(f.len() + 1));
        }
        check_any(&f);
    }

    #[test]
    fn valid_frames_report_what_was_written(
        src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), ttl in any::<u8>(),
        sport in 1u16..1700, dport in 1u16..1700, flags in 0u16..0x200, is_udp in any::<bool>(),
        payload in vec(0u8..0x60, 0..64), pad in 0usize..24,
        outer in proptest::option::of(0u16..4096), inner in proptest::option::of(0u16..4096),
    ) {
        let l4 = if is_udp { udp(sport, dport, &payload) } else { tcp(sport, dport, flags, 0, &payload) };
        let mut pkt = ipv4(if is_udp { 17 } else { 6 }, &l4);
        pkt[8] = ttl;
        pkt[12..16].copy_from_slice(&src);
        pkt[16..20].copy_from_slice(&dst);
        let tags: Vec<(u16, u16)> = match (outer, inner) {
            (Some(o), Some(i)) => vec![(0x88a8, o | 0xe000), (0x8100, i)],
            (Some(o), None) => vec![(0x8100, o)],
            _ => vec![],
        };
        let mut frame = eth(&tags, 0x0800, &pkt);
        let unpadded = frame.len();
        frame.extend(vec![0; pad]);
        // Padding up to a minimum-size frame is normal; more is a trailer.
        if frame.len() > unpadded.max(60 + 4 * tags.len()) {
            prop_assert_eq!(parse_ethernet(&frame), Err(E::EthernetTrailer));
            frame.truncate(unpadded);
        }
        let p = parse_ethernet(&frame).unwrap();
        prop_assert_eq!(p.vlan, Vlan { outer, inner: outer.and(inner), outer_is_service_tag: inner.is_some() && outer.is_some() });
        prop_assert_eq!(p.l2_len, 14 + 4 * tags.len());
        let ip = ip_of(Ok(p));
        prop_assert_eq!((ip.src, ip.dst, ip.hop_limit), (IpAddr::from(src), IpAddr::from(dst), ttl));
        prop_assert_eq!((ip.total_len, ip.fragment, ip.tunnel), (pkt.len(), None, None));
        prop_assert_eq!(ip.ports(), (sport, dport));
        match ip.l4 {
            L4::Udp(u) => prop_assert!(is_udp && u.payload == &payload[..]),
            L4::Tcp(t) => prop_assert!(!is_udp && t.payload == &payload[..] && t.flags == TcpFlags(flags)),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn valid_ipv6_reports_what_was_written(
        src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), hops in any::<u8>(),
        sport in 1u16..1700, dport in 1u16..1700, n_opts in 0usize..8,
        payload in vec(0u8..0x60, 0..64),
    ) {
        let mut chain: Vec<u8> = (0..n_opts).flat_map(|i| ext(if i + 1 == n_opts { 17 } else { 60 }, (i % 3) as u8)).collect();
        chain.extend(udp(sport, dport, &payload));
        let mut pkt = ipv6(if n_opts == 0 { 17 } else { 60 }, &chain);
        pkt[7] = hops;
        pkt[8..24].copy_from_slice(&src);
        pkt[24..40].copy_from_slice(&dst);
        let ip = raw(&pkt);
        prop_assert_eq!((ip.src, ip.dst, ip.hop_limit, ip.protocol), (IpAddr::from(src), IpAddr::from(dst), hops, 17));
        prop_assert_eq!(ip.total_len, pkt.len());
        let u = udp_of(ip);
        prop_assert_eq!((u.sport, u.dport, u.payload), (sport, dport, &payload[..]));
    }
}

/// The RFC 1071 checksum, the slow way: the reference for [`transport_checksum_ok`].
fn reference_checksum(src: IpAddr, dst: IpAddr, protocol: u8, segment: &[u8]) -> u16 {
    let mut bytes = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            bytes.extend(s.octets());
            bytes.extend(d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            bytes.extend(s.octets());
            bytes.extend(d.octets());
        }
        _ => unreachable!(),
    }
    bytes.extend((segment.len() as u32).to_be_bytes());
    bytes.extend([0, 0, 0, protocol]);
    bytes.extend(segment);
    let mut sum: u32 =
        bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn with_checksum(src: IpAddr, dst: IpAddr, protocol: u8, mut segment: Vec<u8>) -> Vec<u8> {
    let at = if protocol == PROTO_TCP { 16 } else { 6 };
    segment[at..at + 2].copy_from_slice(&[0, 0]);
    let c = reference_checksum(src, dst, protocol, &segment);
    segment[at..at + 2].copy_from_slice(&c.to_be_bytes());
    segment
}

proptest! {
    #[test]
    fn transport_checksums_agree_with_rfc_1071(data in vec(any::<u8>(), 20..3000), v6 in any::<bool>(), tcp in any::<bool>(), flip in any::<usize>()) {
        let (src, dst) = if v6 { (IpAddr::V6(SRC6), IpAddr::V6(DST6)) } else { (IpAddr::V4(SRC4), IpAddr::V4(DST4)) };
        let protocol = if tcp { PROTO_TCP } else { PROTO_UDP };
        let seg = with_checksum(src, dst, protocol, data);
        if !(protocol == PROTO_UDP && seg[6..8] == [0, 0]) {
            prop_assert!(transport_checksum_ok(src, dst, protocol, &seg));
            let mut bad = seg.clone();
            let i = flip % bad.len();
            bad[i] ^= 0x01;
            prop_assert!(!transport_checksum_ok(src, dst, protocol, &bad));
            prop_assert!(!transport_checksum_ok(dst, src, protocol ^ 1, &seg) || protocol == PROTO_UDP);
        }
    }
}

#[test]
fn udp_without_a_checksum_passes_over_ipv4_only() {
    let seg = [0x13, 0x88, 0, 53, 0, 9, 0, 0, 0x41];
    assert!(transport_checksum_ok(IpAddr::V4(SRC4), IpAddr::V4(DST4), PROTO_UDP, &seg));
    assert!(!transport_checksum_ok(IpAddr::V6(SRC6), IpAddr::V6(DST6), PROTO_UDP, &seg));
    let f = eth(
        &[],
        0x0800,
        &ipv4(PROTO_TCP, &with_checksum(IpAddr::V4(SRC4), IpAddr::V4(DST4), PROTO_TCP, vec![0x50; 40])),
    );
    let Ok(Parsed { l3: L3::Ip(Ip { l4: L4::Tcp(t), src, dst, .. }), .. }) = parse_ethernet(&f) else {
        panic!()
    };
    assert_eq!(t.segment.len(), 40);
    assert!(transport_checksum_ok(src, dst, PROTO_TCP, t.segment));
}
