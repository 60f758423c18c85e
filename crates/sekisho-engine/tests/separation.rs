//! The separation property, checked against a reference model of who initiated what.
//!
//! In enforce mode, every frame the engine forwards must be either
//! (a) link traffic whose two ends are on that port's segment, or
//! (b) a packet of a connection whose initiator → responder the *current* policy allows,
//!     travelling in a direction that connection permits — including ICMP errors only
//!     from the connection's peer or a router of the receiving segment, and fragments of
//!     such a packet.
//!
//! The model below is written from that rule alone, not from the engine: it records a
//! connection when a packet that may open one arrives where its sender may be (the
//! ingress contract) and the policy in force allows it, and it judges every forwarded
//! frame against those records, the policy in force *now* and the clocks. Random
//! policies (a random subset of approved paths, exceptions that expire, rules), random
//! interleavings of ports, sides, protocols, VLAN tags, bogus addresses, forged TCP
//! segments, fragments, ICMP errors, reloads and clock steps (the wall clock also stepping
//! back) drive both. The model is permissive about liveness (it never forgets a
//! connection) and strict about direction and current policy.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use common::{NOW, SEC};
use proptest::prelude::*;
use sekisho_engine::{Action, Engine, Ingress, Now, Side};
use sekisho_policy::{Connection, Policy, PortId, Timestamp, ZoneId};
use sekisho_testkit::flags::*;
use sekisho_testkit::*;

// ---- the world: zones with ports, hosts, and a menu of policy items -------------------

const BASE: &str = r#"
[flow]
capacity = 400

[[zone]]
name = "mynumber"
kind = "mynumber"
prefixes = ["198.18.10.0/24", "2001:db8:10::/48"]
[[zone]]
name = "lgwan"
kind = "lgwan"
prefixes = ["198.18.20.0/24", "2001:db8:20::/48"]
[[zone]]
name = "sanitization"
kind = "sanitization"
prefixes = ["198.18.40.0/24", "2001:db8:40::/48"]
[[zone]]
name = "management"
kind = "management"
prefixes = ["198.18.50.0/24"]
[[zone]]
name = "internet"
kind = "internet"
prefixes = ["203.0.113.0/24", "0.0.0.0/0", "::/0"]

[[port]]
name = "mn"
zone = "mynumber"
inside = "mn-in"
outside = "mn-out"
routers = ["198.18.10.1", "2001:db8:10::1"]
[[port]]
name = "lg"
zone = "lgwan"
inside = "lg-in"
outside = "lg-out"
routers = ["198.18.20.1", "2001:db8:20::1"]
[[port]]
name = "in"
zone = "internet"
inside = "in-in"
outside = "in-out"
routers = ["203.0.113.1"]
[[port]]
name = "sz"
zone = "sanitization"
inside = "sz-in"
outside = "sz-out"
routers = ["198.18.40.1"]
[[port]]
name = "mg"
zone = "management"
inside = "mg-in"
outside = "mg-out"
routers = ["198.18.50.1"]

[[service]]
name = "smtp"
proto = "tcp"
ports = [25]
[[service]]
name = "ssh"
proto = "tcp"
ports = [22]
[[service]]
name = "https"
proto = "tcp"
ports = [443]
[[service]]
name = "rdp"
proto = "tcp"
ports = [3389]
app = "rdp"
[[service]]
name = "dns"
proto = "udp"
ports = [53]
[[service]]
name = "ping"
proto = "icmp"
[[service]]
name = "any"
proto = "any"
"#;

/// Approved items; a policy is BASE plus a subset of them.
const MENU: [&str; 9] = [
    "[[path]]\nname = \"mail\"\nmethod = \"mail-text\"\n  [[path.leg]]\n  from = \"zone:internet\"\n  to = \"198.18.40.10\"\n  service = \"smtp\"\n  [[path.leg]]\n  from = \"198.18.40.10\"\n  to = \"198.18.20.25\"\n  service = \"smtp\"\n",
    "[[path]]\nname = \"cdr\"\nmethod = \"file-sanitize\"\n  [[path.leg]]\n  from = \"zone:lgwan\"\n  to = \"198.18.40.20\"\n  service = \"https\"\n  [[path.leg]]\n  from = \"zone:internet\"\n  to = \"198.18.40.20\"\n  service = \"https\"\n",
    "[[path]]\nname = \"vdi\"\nmethod = \"screen-transfer\"\n  [[path.leg]]\n  from = \"zone:lgwan\"\n  to = \"203.0.113.50\"\n  service = \"rdp\"\n",
    "[[exception]]\nname = \"juki\"\nfrom = \"198.18.10.5\"\nto = \"198.18.20.30\"\nservice = \"ssh\"\napproval = \"A-1\"\n",
    "[[exception]]\nname = \"juki-expiring\"\nfrom = \"198.18.10.5\"\nto = \"198.18.20.30\"\nservice = \"ssh\"\napproval = \"A-2\"\nexpires = \"2026-11-22T12:01:00+09:00\"\n",
    "[[rule]]\nname = \"mgmt-any\"\nfrom = \"zone:management\"\nto = \"zone:sanitization\"\nservice = \"any\"\n",
    "[[rule]]\nname = \"lgwan-dns\"\nfrom = \"zone:lgwan\"\nto = \"198.18.40.53\"\nservice = \"dns\"\n",
    "[[rule]]\nname = \"mgmt-ping\"\nfrom = \"zone:management\"\nto = \"zone:lgwan\"\nservice = \"ping\"\n",
    "[[exception]]\nname = \"juki-ping\"\nfrom = \"2001:db8:10::5\"\nto = \"2001:db8:20::30\"\nservice = \"ping\"\napproval = \"A-3\"\n",
];

fn policy_text(mask: u16) -> String {
    let mut text = BASE.to_owned();
    for (i, item) in MENU.iter().enumerate() {
        if mask & (1 << i) != 0 {
            text.push_str(item);
        }
    }
    text
}

fn load(mask: u16) -> Policy {
    sekisho_policy::load_str(&policy_text(mask), "menu.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// Host addresses: per zone a few hosts and the routers, and addresses no zone may hold.
const HOSTS: [&str; 30] = [
    "198.18.10.5",
    "198.18.10.9",
    "198.18.10.1",
    "2001:db8:10::5", // mynumber 0..4
    "198.18.20.5",
    "198.18.20.25",
    "198.18.20.30",
    "198.18.20.1",
    "2001:db8:20::30", // lgwan 4..9
    "198.18.40.10",
    "198.18.40.20",
    "198.18.40.53",
    "198.18.40.1", // sanitization 9..13
    "198.18.50.7",
    "198.18.50.1", // management 13..15
    "203.0.113.7",
    "203.0.113.50",
    "203.0.113.1",
    "198.51.100.9",
    "2001:db8:30::7", // internet 15..20
    "::ffff:198.18.10.5",
    "::198.18.20.30",
    "fe80::1",
    "fe80::5",
    "ff02::1",
    "::", // bogus 20..26
    "239.1.1.1",
    "255.255.255.255",
    "0.0.0.0",
    "169.254.3.3", // bogus v4 26..30
];

fn host(i: usize) -> IpAddr {
    HOSTS[i % HOSTS.len()].parse().unwrap()
}

/// Client/server pairs for TCP connections: mostly ones some policy item allows.
const PAIRS: [(usize, u16, usize, u16); 10] = [
    (15, 41000, 9, 25),   // internet → relay
    (9, 42000, 5, 25),    // relay → lgwan mail
    (4, 43000, 10, 443),  // lgwan → cdr
    (4, 44000, 16, 3389), // lgwan → vdi
    (0, 45000, 6, 22),    // mynumber batch → juki
    (13, 46000, 12, 22),  // mgmt → sanitization router
    (16, 3389, 4, 44001), // vdi → lgwan (reverse, never allowed)
    (6, 22, 0, 45001),    // juki → batch (reverse)
    (15, 47000, 5, 25),   // internet → lgwan mail (unsanitised)
    (4, 48000, 7, 53),    // lgwan → its router
];

// ---- events ------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum TcpStep {
    Syn,
    SynAck,
    Ack,
    ClientData,
    ServerData,
    Rst { from_client: bool },
    Fin { from_client: bool },
    Forged { from_client: bool, flags: u16, seq_off: u32 },
}

#[derive(Clone, Debug)]
enum Spec {
    Tcp {
        pair: usize,
        step: TcpStep,
    },
    Udp {
        src: usize,
        sport: u16,
        dst: usize,
        dport: u16,
    },
    Echo {
        src: usize,
        dst: usize,
        ident: u16,
        reply: bool,
    },
    Query {
        src: usize,
        dst: usize,
        ty: u8,
    },
    /// An ICMP error about an earlier frame: from its receiver (the peer), a router, or
    /// any host; to its sender or any host.
    Error {
        from: ErrorFrom,
        to_sender: bool,
        dst: usize,
        quote: usize,
        big: bool,
    },
    FragFirst {
        src: usize,
        dst: usize,
        id: u16,
    },
    FragLater {
        src: usize,
        dst: usize,
        id: u16,
    },
    Nd {
        src: usize,
        dst: usize,
        hop: u8,
    },
    Dhcp {
        src: usize,
        dst: usize,
        to_server: bool,
    },
}

#[derive(Clone, Copy, Debug)]
enum ErrorFrom {
    Peer,
    Router(usize),
    Host(usize),
}

#[derive(Clone, Debug)]
enum Event {
    Frame { spec: Spec, at: Option<(u16, bool)>, vlan: Option<u16> },
    Reload(u16),
    Clock { mono_s: u64, wall_s: i64 },
}

/// The routers of the ports, as hosts.
const ROUTERS: [usize; 5] = [2, 7, 12, 14, 17];

/// Ends for fragmented datagrams: mostly ones a menu rule allows, either way round.
fn frag_ends() -> impl Strategy<Value = (usize, usize)> {
    let h = 0..HOSTS.len();
    prop_oneof![
        2 => Just((4, 11)),  // lgwan → dns (lgwan-dns)
        2 => Just((13, 12)), // mgmt → sanitization (mgmt-any)
        1 => Just((11, 4)),
        1 => (h.clone(), h),
    ]
}

/// Ends for echo requests and replies: mostly ones a menu item allows, either way round.
fn echo_ends() -> impl Strategy<Value = (usize, usize)> {
    let h = 0..HOSTS.len();
    prop_oneof![
        2 => Just((13, 4)), // mgmt → lgwan (mgmt-ping)
        2 => Just((4, 13)),
        1 => Just((3, 8)),  // mynumber → lgwan, IPv6 (juki-ping)
        1 => Just((8, 3)),
        2 => (h.clone(), h),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    let h = 0..HOSTS.len();
    let step = prop_oneof![
        3 => Just(TcpStep::Syn),
        3 => Just(TcpStep::SynAck),
        3 => Just(TcpStep::Ack),
        3 => Just(TcpStep::ClientData),
        3 => Just(TcpStep::ServerData),
        1 => any::<bool>().prop_map(|from_client| TcpStep::Rst { from_client }),
        1 => any::<bool>().prop_map(|from_client| TcpStep::Fin { from_client }),
        2 => (any::<bool>(), prop::sample::select(vec![SYN, SYN | ACK, ACK, RST, FIN | ACK, ACK | PSH]), any::<u32>())
            .prop_map(|(from_client, flags, seq_off)| TcpStep::Forged { from_client, flags, seq_off }),
    ];
    prop_oneof![
        8 => (0..PAIRS.len(), step).prop_map(|(pair, step)| Spec::Tcp { pair, step }),
        2 => (h.clone(), prop::sample::select(vec![53u16, 5000]), h.clone(), prop::sample::select(vec![53u16, 5000]))
            .prop_map(|(src, sport, dst, dport)| Spec::Udp { src, sport, dst, dport }),
        3 => (echo_ends(), 0..3u16, any::<bool>()).prop_map(|((src, dst), ident, reply)| Spec::Echo { src, dst, ident, reply }),
        1 => (h.clone(), h.clone(), prop::sample::select(vec![5u8, 13, 17])).prop_map(|(src, dst, ty)| Spec::Query { src, dst, ty }),
        4 => (
            prop_oneof![3 => Just(ErrorFrom::Peer), 1 => (0..ROUTERS.len()).prop_map(ErrorFrom::Router), 1 => h.clone().prop_map(ErrorFrom::Host)],
            prop::bool::weighted(0.8),
            h.clone(),
            0..64usize,
            prop::bool::weighted(0.1),
        )
            .prop_map(|(from, to_sender, dst, quote, big)| Spec::Error { from, to_sender, dst, quote, big }),
        2 => (frag_ends(), 0..3u16).prop_map(|((src, dst), id)| Spec::FragFirst { src, dst, id }),
        3 => (frag_ends(), 0..3u16).prop_map(|((src, dst), id)| Spec::FragLater { src, dst, id }),
        1 => (h.clone(), h.clone(), prop::sample::select(vec![255u8, 64, 1])).prop_map(|(src, dst, hop)| Spec::Nd { src, dst, hop }),
        1 => (h.clone(), h, any::<bool>()).prop_map(|(src, dst, to_server)| Spec::Dhcp { src, dst, to_server }),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        30 => (spec(), prop::option::weighted(0.3, (0..5u16, any::<bool>())), prop::option::weighted(0.05, 0..3u16))
            .prop_map(|(spec, at, vlan)| Event::Frame { spec, at, vlan }),
        2 => (0..(1u16 << MENU.len())).prop_map(Event::Reload),
        2 => (prop::sample::select(vec![0u64, 1, 20, 40, 4000]), prop::sample::select(vec![0i64, 1, 40, -3600, 86_400]))
            .prop_map(|(mono_s, wall_s)| Event::Clock { mono_s, wall_s }),
    ]
}

// ---- frames built from specs ---------------------------------------------------------

/// What the model needs to know about a frame besides its bytes.
#[derive(Clone, Debug)]
struct Meta {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// May open a connection (bare SYN, UDP, echo request, first fragment).
    Opens,
    /// Only continues one (other TCP, echo reply).
    Continues,
    /// ICMP query other than echo: judged alone.
    Query,
    /// ICMP error quoting `Meta` of an earlier frame; `big` past the size limit.
    Error { big: bool },
    /// Later fragment of datagram `id`.
    Later { id: u16 },
    /// Neighbour discovery (type 135) with this hop limit.
    Nd { hop: u8 },
    /// DHCP.
    Dhcp,
}

struct Builder {
    conns: Vec<TcpConn>,
    history: Vec<(Vec<u8>, Meta)>,
}

impl Builder {
    fn new() -> Builder {
        let conns =
            PAIRS.iter().map(|&(c, cp, s, sp)| TcpConn::new((HOSTS[c], cp), (HOSTS[s], sp))).collect();
        Builder { conns, history: Vec::new() }
    }

    fn build(&mut self, spec: &Spec) -> Option<(Vec<u8>, Meta, Option<Meta>)> {
        let same_family = |a: usize, b: usize| host(a).is_ipv4() == host(b).is_ipv4();
        let meta = |src: usize, dst: usize, proto, sport, dport, kind| Meta {
            src: host(src),
            dst: host(dst),
            proto,
            sport,
            dport,
            kind,
        };
        Some(match *spec {
            Spec::Tcp { pair, step } => {
                let (c, cp, s, sp) = PAIRS[pair];
                let conn = &mut self.conns[pair];
                let (frame, from_client, opens) = match step {
                    TcpStep::Syn => (conn.syn(), true, true),
                    TcpStep::SynAck => (conn.syn_ack(), false, false),
                    TcpStep::Ack => (conn.client(ACK, b""), true, false),
                    TcpStep::ClientData => (conn.client(ACK | PSH, b"SSH-2.0-x\r\n"), true, false),
                    TcpStep::ServerData => (conn.server(ACK | PSH, b"220 x\r\n"), false, false),
                    TcpStep::Rst { from_client: true } => (conn.client(RST | ACK, b""), true, false),
                    TcpStep::Rst { from_client: false } => (conn.server(RST | ACK, b""), false, false),
                    TcpStep::Fin { from_client: true } => (conn.client(FIN | ACK, b""), true, false),
                    TcpStep::Fin { from_client: false } => (conn.server(FIN | ACK, b""), false, false),
                    TcpStep::Forged { from_client, flags, seq_off } => {
                        let opens = flags == SYN;
                        let f = if from_client {
                            conn.client_at(
                                flags,
                                conn.client_next().wrapping_add(seq_off),
                                conn.server_next(),
                                b"",
                            )
                        } else {
                            conn.server_at(
                                flags,
                                conn.server_next().wrapping_add(seq_off),
                                conn.client_next(),
                                b"",
                            )
                        };
                        (f, from_client, opens)
                    }
                };
                let kind = if opens { Kind::Opens } else { Kind::Continues };
                let m = if from_client { meta(c, s, 6, cp, sp, kind) } else { meta(s, c, 6, sp, cp, kind) };
                (frame, m, None)
            }
            Spec::Udp { src, sport, dst, dport } if same_family(src, dst) => {
                // Well-formed DNS toward and from port 53 (the DNS rule's flows are inspected).
                let query = dns_query(0x1234, "host.zone.example", 1);
                let payload = if sport == 53 && dport != 53 { dns_answer(&query) } else { query };
                let f = udp(HOSTS[src], sport, HOSTS[dst], dport, &payload);
                (f, meta(src, dst, 17, sport, dport, Kind::Opens), None)
            }
            Spec::Echo { src, dst, ident, reply } if same_family(src, dst) => {
                let kind = if reply { Kind::Continues } else { Kind::Opens };
                let proto = if host(src).is_ipv4() { 1 } else { 58 };
                (
                    ping(HOSTS[src], HOSTS[dst], ident, reply),
                    meta(src, dst, proto, ident, u16::from(reply), kind),
                    None,
                )
            }
            Spec::Query { src, dst, ty } if same_family(src, dst) && host(src).is_ipv4() => (
                icmp(HOSTS[src], HOSTS[dst], ty, 0, [0; 4], &[0; 20], 64),
                meta(src, dst, 1, 0, 0, Kind::Query),
                None,
            ),
            Spec::Error { from, to_sender, dst, quote, big } if !self.history.is_empty() => {
                let (qframe, qmeta) = self.history[quote % self.history.len()].clone();
                let src = match from {
                    ErrorFrom::Peer => qmeta.dst,
                    ErrorFrom::Router(r) => host(ROUTERS[r]),
                    ErrorFrom::Host(h) => host(h),
                };
                let dst = if to_sender { qmeta.src } else { host(dst) };
                if src.is_ipv4() != qmeta.src.is_ipv4()
                    || dst.is_ipv4() != src.is_ipv4()
                    || qframe.len() < 14 + 28
                {
                    return None;
                }
                let q = ip_packet(&qframe);
                let take = q.len().min(if src.is_ipv4() { 48 } else { 68 });
                let data = [&q[..take], &vec![0u8; if big { 1300 } else { 0 }][..]].concat();
                let (ty, proto) = if src.is_ipv4() { (3, 1) } else { (1, 58) };
                let f = icmp(&src.to_string(), &dst.to_string(), ty, 3, [0; 4], &data, 64);
                let m = Meta { src, dst, proto, sport: 0, dport: 0, kind: Kind::Error { big } };
                (f, m, Some(qmeta))
            }
            Spec::FragFirst { src, dst, id } if host(src).is_ipv4() && host(dst).is_ipv4() => {
                let (s, d) = (as_v4(src), as_v4(dst));
                let dgram = udp_datagram(5353, 53, &dns_query(7, "a-name.of.some.length.zone.example", 1));
                let opts = V4Opts { id, more_fragments: true, ..V4Opts::default() };
                (
                    eth(0x0800, &ipv4(s, d, 17, opts, &dgram[..40])),
                    meta(src, dst, 17, 5353, 53, Kind::Opens),
                    None,
                )
            }
            Spec::FragLater { src, dst, id } if host(src).is_ipv4() && host(dst).is_ipv4() => {
                let (s, d) = (as_v4(src), as_v4(dst));
                let opts = V4Opts { id, frag_offset: 5, ..V4Opts::default() };
                (
                    eth(0x0800, &ipv4(s, d, 17, opts, &[0u8; 32])),
                    meta(src, dst, 17, 0, 0, Kind::Later { id }),
                    None,
                )
            }
            Spec::Nd { src, dst, hop } if host(src).is_ipv6() && host(dst).is_ipv6() => {
                let f = icmp(HOSTS[src], HOSTS[dst], 135, 0, [0; 4], &[0; 16], hop);
                (f, meta(src, dst, 58, 0, 0, Kind::Nd { hop }), None)
            }
            Spec::Dhcp { src, dst, to_server } if same_family(src, dst) => {
                let v4 = host(src).is_ipv4();
                let (sp, dp) = match (v4, to_server) {
                    (true, true) => (68, 67),
                    (true, false) => (67, 68),
                    (false, true) => (546, 547),
                    (false, false) => (547, 546),
                };
                (udp(HOSTS[src], sp, HOSTS[dst], dp, &[1; 64]), meta(src, dst, 17, sp, dp, Kind::Dhcp), None)
            }
            _ => return None,
        })
    }
}

fn as_v4(i: usize) -> std::net::Ipv4Addr {
    match host(i) {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!("checked by the caller"),
    }
}

// ---- the reference model ---------------------------------------------------------------

/// An ordinary unicast address a zone can hold (no link-local, multicast, broadcast,
/// unspecified, loopback, IPv4 forms inside IPv6).
fn global(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => {
            let o = v.octets();
            !(o[0] == 0 || o[0] == 127 || o[0] >= 224 || (o[0] == 169 && o[1] == 254))
        }
        IpAddr::V6(v) => {
            let s = v.segments();
            !(v.is_unspecified()
                || v.is_loopback()
                || s[0] >> 8 == 0xff
                || s[0] & 0xffc0 == 0xfe80
                || s[..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff)
                || s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0)
        }
    }
}

/// Link-local unicast (RFC 4291 fe80::/10, RFC 3927 169.254/16): never routed.
fn link_local(a: IpAddr) -> bool {
    match a {
        IpAddr::V6(v) => v.segments()[0] & 0xffc0 == 0xfe80,
        IpAddr::V4(v) => v.octets()[..2] == [169, 254],
    }
}

fn unspecified(a: IpAddr) -> bool {
    a.is_unspecified()
}

fn link_multicast(a: IpAddr) -> bool {
    match a {
        IpAddr::V6(v) => v.segments()[0] == 0xff02,
        IpAddr::V4(v) => v.is_broadcast(),
    }
}

/// (port, canonical ends) of a connection: (address, port) pairs in a fixed order.
type ConnKey = (u16, u8, (IpAddr, u16), (IpAddr, u16));

fn conn_key(port: u16, proto: u8, a: (IpAddr, u16), b: (IpAddr, u16)) -> ConnKey {
    if (a.0.to_string(), a.1) <= (b.0.to_string(), b.1) {
        (port, proto, a, b)
    } else {
        (port, proto, b, a)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Opened {
    initiator: (IpAddr, u16),
    responder: (IpAddr, u16),
    side: Side,
}

/// A forwarded first fragment: (port, side, source, destination, identification).
type FirstKey = (u16, Side, IpAddr, IpAddr, u16);

struct Model {
    policy: Policy,
    conns: HashMap<ConnKey, HashSet<Opened>>,
    /// Forwarded first fragments: (port, side, src, dst, id) → (parent key, mono).
    firsts: HashMap<FirstKey, (ConnKey, Opened, u64)>,
}

impl Model {
    fn zone(&self, a: IpAddr) -> Option<ZoneId> {
        self.policy.zone_of(a)
    }

    /// The ingress contract for a connection opened at `side` of `port`.
    fn contract(&self, port: u16, side: Side, initiator: IpAddr, responder: IpAddr) -> bool {
        let p = &self.policy.ports()[usize::from(port)];
        match side {
            Side::Inside => self.zone(initiator) == Some(p.zone),
            Side::Outside => {
                self.zone(responder) == Some(p.zone)
                    && (self.zone(initiator) != Some(p.zone) || p.routers.contains(&initiator))
            }
        }
    }

    /// Whether the policy in force allows `o` now (contract included).
    fn allows(&self, port: u16, proto: u8, o: &Opened, wall: Timestamp) -> bool {
        if !global(o.initiator.0)
            || !global(o.responder.0)
            || !self.contract(port, o.side, o.initiator.0, o.responder.0)
        {
            return false;
        }
        let conn = Connection {
            protocol: proto,
            initiator: o.initiator.0,
            responder: o.responder.0,
            responder_port: o.responder.1,
        };
        self.policy.decide(&conn, wall).allowed()
    }

    fn ports_of(m: &Meta) -> ((IpAddr, u16), (IpAddr, u16)) {
        match m.proto {
            // Echo: the requester's identifier names the exchange, whichever way it goes.
            1 | 58 if m.dport == 1 => ((m.src, 0), (m.dst, m.sport)),
            1 | 58 => ((m.src, m.sport), (m.dst, 0)),
            _ => ((m.src, m.sport), (m.dst, m.dport)),
        }
    }

    /// Records `m` when it legitimately opens a connection at (`port`, `side`).
    fn observe(&mut self, port: u16, side: Side, m: &Meta, wall: Timestamp) {
        // DHCP that is not link traffic is ordinary UDP, which opens.
        if !matches!(m.kind, Kind::Opens | Kind::Dhcp) {
            return;
        }
        let (a, b) = Self::ports_of(m);
        let o = Opened { initiator: a, responder: b, side };
        if self.allows(port, m.proto, &o, wall) {
            self.conns.entry(conn_key(port, m.proto, a, b)).or_default().insert(o);
        }
    }

    /// Whether a packet from `a` to `b` arriving at `side` belongs to a recorded
    /// connection the policy allows now, in a permitted direction.
    fn member(
        &self,
        port: u16,
        side: Side,
        proto: u8,
        a: (IpAddr, u16),
        b: (IpAddr, u16),
        wall: Timestamp,
    ) -> Option<Opened> {
        let set = self.conns.get(&conn_key(port, proto, a, b))?;
        set.iter()
            .find(|o| {
                let direction =
                    if o.initiator == a { side == o.side } else { o.responder == a && side != o.side };
                direction && self.allows(port, proto, o, wall)
            })
            .copied()
    }

    /// Why forwarding `m` at (`port`, `side`) breaks the rule, if it does.
    fn check(
        &mut self,
        port: u16,
        side: Side,
        vlan: bool,
        m: &Meta,
        quoted: Option<&Meta>,
        now: Now,
    ) -> Result<(), String> {
        if vlan {
            return Err("a tagged frame crossed a port that admits no tags".into());
        }
        let p = &self.policy.ports()[usize::from(port)];
        let on_segment = |a: IpAddr| self.zone(a) == Some(p.zone) && global(a);
        let link = match m.kind {
            Kind::Nd { hop: 255 } => {
                (link_local(m.src) || unspecified(m.src) || on_segment(m.src))
                    && (link_local(m.dst) || link_multicast(m.dst) || on_segment(m.dst))
            }
            Kind::Dhcp => {
                let src_ok = unspecified(m.src) || link_local(m.src) || on_segment(m.src);
                let dst_ok = link_multicast(m.dst) || link_local(m.dst) || on_segment(m.dst);
                src_ok && dst_ok && m.src.is_ipv4() == m.dst.is_ipv4()
            }
            _ => false,
        };
        if link {
            return Ok(());
        }
        let (a, b) = Self::ports_of(m);
        match m.kind {
            Kind::Query | Kind::Nd { .. } => {
                let o = Opened { initiator: a, responder: b, side };
                if self.allows(port, m.proto, &o, now.wall) {
                    return Ok(());
                }
                Err("a stateless ICMP message the policy does not allow crossed".into())
            }
            Kind::Error { big } => {
                let q = quoted.ok_or("an error without a quote")?;
                if big {
                    return Err("an oversized ICMP error crossed".into());
                }
                if m.dst != q.src {
                    return Err("an ICMP error to someone other than the quoted sender crossed".into());
                }
                let (qa, qb) = Self::ports_of(q);
                // The quoted packet went the other way: it arrived on the other side.
                let parent = self
                    .member(port, side.other(), q.proto, qa, qb, now.wall)
                    .ok_or("an ICMP error about no allowed connection crossed")?;
                let from_router = side == Side::Outside && p.routers.contains(&m.src);
                if m.src != q.dst && !from_router {
                    return Err(format!("an ICMP error from a third party crossed (parent {parent:?})"));
                }
                Ok(())
            }
            Kind::Later { id } => {
                let (key, o, at) = *self
                    .firsts
                    .get(&(port, side, m.src, m.dst, id))
                    .ok_or("a later fragment without a forwarded first fragment crossed")?;
                if now.mono.saturating_sub(at) > 30 * SEC {
                    return Err("a later fragment crossed after the reassembly time".into());
                }
                if !self.conns.get(&key).is_some_and(|s| s.contains(&o))
                    || !self.allows(port, key.1, &o, now.wall)
                {
                    return Err("a later fragment of a connection no longer allowed crossed".into());
                }
                Ok(())
            }
            Kind::Opens | Kind::Continues | Kind::Dhcp => {
                let o = self.member(port, side, m.proto, a, b, now.wall).ok_or_else(|| {
                    format!("a packet of no allowed connection, or the wrong way, crossed: {m:?}")
                })?;
                if m.proto == 17 && m.sport == 5353 {
                    // A first fragment: remember where it went.
                    let key = conn_key(port, m.proto, a, b);
                    for id in 0..3 {
                        self.firsts.insert((port, side, m.src, m.dst, id), (key, o, now.mono));
                    }
                }
                Ok(())
            }
        }
    }
}

fn natural(model: &Model, m: &Meta) -> Vec<(u16, Side)> {
    let port_of = |a: IpAddr| {
        model.zone(a).and_then(|z| model.policy.ports().iter().position(|p| p.zone == z)).map(|i| i as u16)
    };
    let mut hops = Vec::new();
    if let Some(p) = port_of(m.src) {
        hops.push((p, Side::Inside));
    }
    if let Some(q) = port_of(m.dst) {
        if hops.first().is_none_or(|(p, _)| *p != q) {
            hops.push((q, Side::Outside));
        }
    }
    if hops.is_empty() {
        hops.push((2, Side::Inside));
    }
    hops
}

fn run(mask: u16, events: &[Event]) -> Result<(), TestCaseError> {
    let mut model = Model { policy: load(mask), conns: HashMap::new(), firsts: HashMap::new() };
    let engine = Engine::new(load(mask));
    let mut builder = Builder::new();
    let mut now = Now::at(NOW);
    for (i, ev) in events.iter().enumerate() {
        match ev {
            Event::Reload(mask) => {
                engine.reload(load(*mask)).map_err(|e| TestCaseError::fail(e.to_string()))?;
                model.policy = load(*mask);
            }
            Event::Clock { mono_s, wall_s } => {
                now.mono += mono_s * SEC;
                now.wall = Timestamp(now.wall.0.saturating_add_signed(wall_s * SEC as i64));
            }
            Event::Frame { spec, at, vlan } => {
                let Some((frame, meta, quoted)) = builder.build(spec) else { continue };
                builder.history.push((frame.clone(), meta.clone()));
                let frame = match vlan {
                    Some(v) => sekisho_testkit::vlan(&frame, 0x8100, *v),
                    None => frame,
                };
                let hops = match at {
                    Some((p, inside)) => vec![(*p, if *inside { Side::Inside } else { Side::Outside })],
                    None => natural(&model, &meta),
                };
                for (port, side) in hops {
                    model.observe(port, side, &meta, now.wall);
                    let v = engine.process(now, Ingress { port: PortId(port), side }, &frame);
                    if v.action != Action::Forward {
                        break;
                    }
                    if let Err(why) = model.check(port, side, vlan.is_some(), &meta, quoted.as_ref(), now) {
                        let reason = engine.loaded().policy.reason_name(v.reason).to_string();
                        return Err(TestCaseError::fail(format!(
                            "event {i}: {why}\n  forwarded at port {port} {side:?} as {reason}\n  {ev:?}"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, max_shrink_iters: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn every_forwarded_frame_traces_back_to_an_allowed_connection(
        mask in 0..(1u16 << MENU.len()),
        events in prop::collection::vec(event(), 1..300),
    ) {
        run(mask, &events)?;
    }
}

/// The menu's policies all load (so the property never skips a case).
#[test]
fn every_menu_policy_loads() {
    for mask in 0..(1u16 << MENU.len()) {
        load(mask);
    }
}

/// The model is not vacuous: on a plain session it records and accepts what passes.
#[test]
fn the_model_accepts_an_ordinary_session() {
    let events: Vec<Event> =
        [TcpStep::Syn, TcpStep::SynAck, TcpStep::Ack, TcpStep::ClientData, TcpStep::ServerData]
            .into_iter()
            .map(|step| Event::Frame { spec: Spec::Tcp { pair: 0, step }, at: None, vlan: None })
            .collect();
    let mask = 1; // the mail path
    run(mask, &events).unwrap();
    let engine = Engine::new(load(mask));
    let mut b = Builder::new();
    let mut forwarded = 0;
    for ev in &events {
        let Event::Frame { spec, .. } = ev else { continue };
        let (frame, meta, _) = b.build(spec).unwrap();
        let model = Model { policy: load(mask), conns: HashMap::new(), firsts: HashMap::new() };
        for (port, side) in natural(&model, &meta) {
            let v = engine.process(Now::at(NOW), Ingress { port: PortId(port), side }, &frame);
            forwarded += usize::from(v.action == Action::Forward);
        }
    }
    assert_eq!(forwarded, 10, "every frame of the session crossed both ports");
}
