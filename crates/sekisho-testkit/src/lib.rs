//! Test support for sekisho: builders for the frames the engine judges, and a pcap
//! writer so that replay tests generate their own captures.
//!
//! Every builder returns a complete Ethernet frame (synthetic MAC addresses) with valid
//! IPv4 header checksums and, for unfragmented TCP and UDP, valid transport checksums (the
//! engine verifies those of the segments it inspects); [`corrupt_transport_checksum`]
//! breaks one on purpose.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// TCP flag bits.
pub mod flags {
    /// FIN.
    pub const FIN: u16 = 0x01;
    /// SYN.
    pub const SYN: u16 = 0x02;
    /// RST.
    pub const RST: u16 = 0x04;
    /// PSH.
    pub const PSH: u16 = 0x08;
    /// ACK.
    pub const ACK: u16 = 0x10;
    /// URG.
    pub const URG: u16 = 0x20;
}

/// An Ethernet II frame carrying `payload` with `ethertype`.
pub fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Inserts an 802.1Q tag (or an 802.1ad tag when `tpid` is 0x88a8) after the MAC addresses.
pub fn vlan(frame: &[u8], tpid: u16, vid: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&tpid.to_be_bytes());
    f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 =
        bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 header fields beyond the addresses.
#[derive(Clone, Copy, Debug)]
pub struct V4Opts {
    /// Time to live.
    pub ttl: u8,
    /// Identification.
    pub id: u16,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    /// More-fragments flag.
    pub more_fragments: bool,
}

impl Default for V4Opts {
    fn default() -> Self {
        V4Opts { ttl: 64, id: 1, frag_offset: 0, more_fragments: false }
    }
}

/// Fills in the TCP or UDP checksum of `segment` (a whole, unfragmented transport
/// segment from `src` to `dst`); other protocols and short segments are left alone.
fn fill_transport_checksum(src: IpAddr, dst: IpAddr, protocol: u8, segment: &mut [u8]) {
    let at = match protocol {
        6 if segment.len() >= 20 => 16,
        17 if segment.len() >= 8 => 6,
        _ => return,
    };
    segment[at..at + 2].copy_from_slice(&[0, 0]);
    let mut pseudo = Vec::with_capacity(40 + segment.len());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
        }
        _ => return,
    }
    pseudo.extend_from_slice(&(segment.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, protocol]);
    pseudo.extend_from_slice(segment);
    let mut c = checksum(&pseudo);
    if protocol == 17 && c == 0 {
        c = 0xffff;
    }
    segment[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// The frame with its TCP or UDP checksum made wrong (an Ethernet frame built here,
/// untagged, IPv4 without options or IPv6 without extension headers).
pub fn corrupt_transport_checksum(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    let (l4, protocol) = match f[12..14] {
        [0x08, 0x00] => (14 + 20, f[14 + 9]),
        _ => (14 + 40, f[14 + 6]),
    };
    let at = l4 + if protocol == 6 { 16 } else { 6 };
    f[at] ^= 0x5a;
    f
}

/// An IPv4 packet (no link header); an unfragmented TCP or UDP payload gets its checksum.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, opts: V4Opts, payload: &[u8]) -> Vec<u8> {
    let mut payload = payload.to_vec();
    if opts.frag_offset == 0 && !opts.more_fragments {
        fill_transport_checksum(IpAddr::V4(src), IpAddr::V4(dst), protocol, &mut payload);
    }
    let total = 20 + payload.len();
    let frag = (opts.frag_offset & 0x1fff) | if opts.more_fragments { 0x2000 } else { 0 };
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&opts.id.to_be_bytes());
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[opts.ttl, protocol, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(&payload);
    h
}

/// An IPv6 packet (no link header); `next_header` names the first header of `payload`. A
/// TCP or UDP payload right after the fixed header gets its checksum.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let mut payload = payload.to_vec();
    fill_transport_checksum(IpAddr::V6(src), IpAddr::V6(dst), next_header, &mut payload);
    let payload = &payload[..];
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next_header, hop_limit]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// An IPv6 fragment extension header (8 bytes) followed by `payload`.
pub fn ipv6_fragment_header(
    next_header: u8,
    offset_units: u16,
    more: bool,
    id: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut h = vec![next_header, 0];
    h.extend_from_slice(&((offset_units << 3) | u16::from(more)).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An Ethernet frame carrying an IP packet from `src` to `dst` (the family of `src`),
/// TTL / hop limit `hops`.
pub fn ip_frame(src: &str, dst: &str, protocol: u8, hops: u8, payload: &[u8]) -> Vec<u8> {
    match (addr(src), addr(dst)) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            eth(0x0800, &ipv4(s, d, protocol, V4Opts { ttl: hops, ..V4Opts::default() }, payload))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => eth(0x86dd, &ipv6(s, d, protocol, hops, payload)),
        _ => panic!("{src} and {dst} are of different families"),
    }
}

/// Parses an address, panicking with the text on error (test code).
pub fn addr(text: &str) -> IpAddr {
    text.parse().unwrap_or_else(|_| panic!("bad address {text:?}"))
}

/// A TCP segment (20-byte header, no options) with sequence number 1000 and, when ACK is
/// set, acknowledgement number 2000. For a connection whose numbers must fit together,
/// use [`TcpConn`].
pub fn tcp_segment(sport: u16, dport: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
    let ack = if flags & flags::ACK != 0 { 2000 } else { 0 };
    tcp_segment_seq(sport, dport, flags, 1000, ack, payload)
}

/// A TCP segment (20-byte header, no options, window 65535) with the given sequence and
/// acknowledgement numbers.
pub fn tcp_segment_seq(sport: u16, dport: u16, flags: u16, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(20 + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(&ack.to_be_bytes());
    s.extend_from_slice(&[0x50 | ((flags >> 8) as u8 & 0x01), flags as u8]);
    s.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    s.extend_from_slice(payload);
    s
}

/// One TCP connection whose frames carry sequence and acknowledgement numbers that fit
/// together, as a real client and server would send them (client ISN 1000, server ISN
/// 5000, window 65535, no options).
#[derive(Clone, Debug)]
pub struct TcpConn {
    client: (String, u16),
    server: (String, u16),
    client_next: u32,
    server_next: u32,
}

impl TcpConn {
    const CLIENT_ISN: u32 = 1000;
    const SERVER_ISN: u32 = 5000;

    /// A connection from `client` to `server` (address, port).
    pub fn new(client: (&str, u16), server: (&str, u16)) -> TcpConn {
        TcpConn {
            client: (client.0.to_owned(), client.1),
            server: (server.0.to_owned(), server.1),
            client_next: Self::CLIENT_ISN + 1,
            server_next: Self::SERVER_ISN + 1,
        }
    }

    fn frame(
        from: &(String, u16),
        to: &(String, u16),
        flags: u16,
        seq: u32,
        ack: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        ip_frame(&from.0, &to.0, 6, 64, &tcp_segment_seq(from.1, to.1, flags, seq, ack, payload))
    }

    /// The client's SYN.
    pub fn syn(&self) -> Vec<u8> {
        Self::frame(&self.client, &self.server, flags::SYN, Self::CLIENT_ISN, 0, b"")
    }

    /// The server's SYN+ACK.
    pub fn syn_ack(&self) -> Vec<u8> {
        Self::frame(
            &self.server,
            &self.client,
            flags::SYN | flags::ACK,
            Self::SERVER_ISN,
            Self::CLIENT_ISN + 1,
            b"",
        )
    }

    /// A segment from the client (acknowledging everything the server sent so far when
    /// `flags` has ACK); the client's sequence number advances past it.
    pub fn client(&mut self, flags: u16, payload: &[u8]) -> Vec<u8> {
        let ack = if flags & flags::ACK != 0 { self.server_next } else { 0 };
        let f = Self::frame(&self.client, &self.server, flags, self.client_next, ack, payload);
        self.client_next = self.client_next.wrapping_add(Self::span(flags, payload));
        f
    }

    /// A segment from the server; its sequence number advances past it.
    pub fn server(&mut self, flags: u16, payload: &[u8]) -> Vec<u8> {
        let ack = if flags & flags::ACK != 0 { self.client_next } else { 0 };
        let f = Self::frame(&self.server, &self.client, flags, self.server_next, ack, payload);
        self.server_next = self.server_next.wrapping_add(Self::span(flags, payload));
        f
    }

    /// A segment from the client with an explicit sequence number (for forgeries).
    pub fn client_at(&self, flags: u16, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        Self::frame(&self.client, &self.server, flags, seq, ack, payload)
    }

    /// A segment from the server with an explicit sequence number (for forgeries).
    pub fn server_at(&self, flags: u16, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        Self::frame(&self.server, &self.client, flags, seq, ack, payload)
    }

    /// The client's address and port.
    pub fn client_addr(&self) -> (String, u16) {
        self.client.clone()
    }

    /// The server's address and port.
    pub fn server_addr(&self) -> (String, u16) {
        self.server.clone()
    }

    /// The client's next sequence number (what the server acknowledges).
    pub fn client_next(&self) -> u32 {
        self.client_next
    }

    /// The server's next sequence number.
    pub fn server_next(&self) -> u32 {
        self.server_next
    }

    fn span(flags: u16, payload: &[u8]) -> u32 {
        payload.len() as u32 + u32::from(flags & flags::FIN != 0)
    }
}

/// A UDP datagram.
pub fn udp_datagram(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(8 + payload.len());
    d.extend_from_slice(&sport.to_be_bytes());
    d.extend_from_slice(&dport.to_be_bytes());
    d.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    d
}

/// A DNS query (RFC 1035) with identifier `id` for `name` (dot-separated labels), of
/// type `qtype`, class IN.
pub fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m
}

/// The answer to `query` (from [`dns_query`]): one A record, 192.0.2.1, its owner name
/// compressed.
pub fn dns_answer(query: &[u8]) -> Vec<u8> {
    let mut r = query.to_vec();
    r[2] = 0x81;
    r[3] = 0x80;
    r[7] = 1;
    r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
    r
}

/// A TCP frame from `src:sport` to `dst:dport`.
pub fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
    ip_frame(src, dst, 6, 64, &tcp_segment(sport, dport, flags, payload))
}

/// A UDP frame from `src:sport` to `dst:dport`.
pub fn udp(src: &str, sport: u16, dst: &str, dport: u16, payload: &[u8]) -> Vec<u8> {
    ip_frame(src, dst, 17, 64, &udp_datagram(sport, dport, payload))
}

/// An ICMP (IPv4) or ICMPv6 message: type, code, the 4 rest-of-header bytes, and data.
pub fn icmp(src: &str, dst: &str, ty: u8, code: u8, rest: [u8; 4], data: &[u8], hops: u8) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(data);
    let protocol = if addr(src).is_ipv4() { 1 } else { 58 };
    ip_frame(src, dst, protocol, hops, &m)
}

/// An ICMP echo request (or reply) with identifier `ident`.
pub fn ping(src: &str, dst: &str, ident: u16, reply: bool) -> Vec<u8> {
    let v6 = addr(src).is_ipv6();
    let ty = match (v6, reply) {
        (false, false) => 8,
        (false, true) => 0,
        (true, false) => 128,
        (true, true) => 129,
    };
    let id = ident.to_be_bytes();
    icmp(src, dst, ty, 0, [id[0], id[1], 0, 1], b"sekisho-ping", 64)
}

/// An ARP request frame.
pub fn arp() -> Vec<u8> {
    let mut body = vec![0, 1, 8, 0, 6, 4, 0, 1];
    body.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 198, 18, 20, 5]);
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 198, 18, 20, 1]);
    eth(0x0806, &body)
}

/// Strips the Ethernet header from a frame built here (14 bytes, no VLAN tag).
pub fn ip_packet(frame: &[u8]) -> &[u8] {
    &frame[14..]
}

/// Link types [`write_pcap`] can declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet = 1,
    /// LINKTYPE_RAW (101): packets start with the IP header.
    Raw = 101,
}

/// Writes a classic pcap file (microsecond timestamps) holding `packets`, each a time in
/// nanoseconds since the Unix epoch and the bytes for `linktype`.
pub fn write_pcap(path: &Path, linktype: LinkType, packets: &[(u64, Vec<u8>)]) -> std::io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&262_144u32.to_le_bytes());
    out.extend_from_slice(&(linktype as u32).to_le_bytes());
    for (ts, data) in packets {
        out.extend_from_slice(&((ts / 1_000_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((ts % 1_000_000_000 / 1000) as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    std::fs::File::create(path)?.write_all(&out)
}

/// Policy text to append to a test policy whose zones are the lab's: an α' local-breakout
/// path (`zone:lgwan` → 203.0.113.80:443, `app = "tls"` with an `sni_allow` list of
/// `portal.example.lg.jp` and `*.example.com`) and a web-isolation leg to an HTTP proxy
/// (`zone:lgwan` → 198.18.40.30:8080, `app = proxy_app`).
pub fn breakout_and_proxy(proxy_app: &str) -> String {
    format!(
        r#"
[[service]]
name = "cloud"
proto = "tcp"
ports = [443]
app = "tls"
sni_allow = ["portal.example.lg.jp", "*.example.com"]

[[service]]
name = "proxy"
proto = "tcp"
ports = [8080]
app = "{proxy_app}"

[[path]]
name = "alpha-prime"
method = "local-breakout"
  [[path.leg]]
  from = "zone:lgwan"
  to = "203.0.113.80"
  service = "cloud"

[[path]]
name = "web"
method = "web-isolation"
  [[path.leg]]
  from = "zone:lgwan"
  to = "198.18.40.30"
  service = "proxy"
"#
    )
}

/// TLS records as clients and servers send them, for the inspection tests.
pub mod tls {
    /// One handshake message of type `ty` with `body`, in one record of version `record`.
    fn record(record: [u8; 2], ty: u8, body: &[u8]) -> Vec<u8> {
        let mut hs = vec![ty];
        hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        let mut rec = vec![0x16, record[0], record[1]];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    /// A ClientHello record (TLS 1.3 cipher suite, random 0x11 bytes) with these
    /// extensions (type, data).
    pub fn client_hello(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend([0x11; 32]);
        body.push(0);
        body.extend([0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
        let mut ext = Vec::new();
        for (ty, data) in extensions {
            ext.extend(ty.to_be_bytes());
            ext.extend((data.len() as u16).to_be_bytes());
            ext.extend(data);
        }
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
        record([0x03, 0x01], 1, &body)
    }

    /// A server_name extension holding these names (type 0 each).
    pub fn sni_names(names: &[&[u8]]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for n in names {
            list.push(0);
            list.extend((n.len() as u16).to_be_bytes());
            list.extend(*n);
        }
        let mut d = (list.len() as u16).to_be_bytes().to_vec();
        d.extend(list);
        (0, d)
    }

    /// A server_name extension for one host name.
    pub fn sni(name: &str) -> (u16, Vec<u8>) {
        sni_names(&[name.as_bytes()])
    }

    /// A ServerHello's first 43 bytes, to its random (not a retry).
    pub fn server_hello_start() -> Vec<u8> {
        let mut sh = vec![0x16, 0x03, 0x03, 0x00, 0x7a, 0x02, 0x00, 0x00, 0x76, 0x03, 0x03];
        sh.extend([0x11; 32]);
        sh
    }

    /// The random of a HelloRetryRequest (RFC 8446 section 4.1.3).
    pub const HRR_RANDOM: [u8; 32] = [
        0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2,
        0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
    ];

    /// A HelloRetryRequest record: a ServerHello with [`HRR_RANDOM`].
    pub fn hello_retry_request() -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend(HRR_RANDOM);
        body.extend([0, 0x13, 0x01, 0, 0, 6, 0, 0x2b, 0, 2, 3, 4]);
        record([0x03, 0x03], 2, &body)
    }

    /// A change-cipher-spec record (TLS 1.3 middlebox compatibility).
    pub const CCS: [u8; 6] = [0x14, 0x03, 0x03, 0x00, 0x01, 0x01];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies() {
        let p =
            ipv4(Ipv4Addr::new(198, 18, 20, 5), Ipv4Addr::new(198, 18, 40, 10), 6, V4Opts::default(), &[]);
        assert_eq!(checksum(&p[..20]), 0);
    }

    #[test]
    fn frames_have_the_expected_shape() {
        let f = tcp("198.18.20.5", 40000, "198.18.40.10", 25, flags::SYN, b"");
        assert_eq!(f.len(), 14 + 20 + 20);
        assert_eq!(f[14 + 9], 6);
        let f = udp("2001:db8:20::5", 5353, "2001:db8:40::10", 53, b"x");
        assert_eq!(f.len(), 14 + 40 + 8 + 1);
        let t = vlan(&f, 0x8100, 20);
        assert_eq!(&t[12..16], &[0x81, 0x00, 0x00, 20]);
    }
}
