//! Pure, allocation-free parsing of the frames sekisho inspects.
//!
//! [`parse_ethernet`] takes an Ethernet II frame (up to two VLAN tags) and [`parse_ip`] a
//! raw IP packet; both return a [`Parsed`] summary that borrows payloads from the input,
//! or a [`ParseError`]. Every `ParseError` means "malformed": the caller drops the frame.
//!
//! Guarantees, in the style of smoltcp's `wire` module:
//! - no `unsafe`, no I/O, no allocation, no panics on any input: every length is checked
//!   before a field is read, and no loop runs unbounded (the IPv6 extension-header walk
//!   stops after [`MAX_EXT_HEADERS`]);
//! - lengths come from the headers, not the frame: Ethernet padding after the IP packet is
//!   ignored, an IP packet longer than the bytes present is an error;
//! - evasion-prone shapes are rejected: tiny first fragments (RFC 1858, RFC 7112), TCP
//!   fragments at offset 1, fragments reaching past 65535 bytes, IPv6 routing header type 0
//!   (RFC 5095), hop-by-hop options anywhere but first, jumbograms.
//!
//! Checksums (IPv4, TCP, UDP, ICMP) are **not** verified while parsing: checksum offload
//! makes them unreliable on a capture interface, and the routers and hosts on either side
//! drop packets whose checksums are wrong. The engine verifies the transport checksum of
//! the segments whose bytes it inspects ([`transport_checksum_ok`]): a segment the
//! receiver would drop must not be the one that is inspected. IPv4 options are walked only
//! to refuse source routing (loose or strict) and malformed option lengths.
//!
//! The parser reads the bytes itself rather than through `pnet_packet`'s views: those
//! could not return payloads borrowed from the input (`&'a [u8]`), hide the TCP NS/AE
//! bit, clamp lying length fields silently, and cost 38 ns per TCP frame against 16 ns
//! here. `pnet_packet` stays as the property tests' second opinion: for everything this
//! parser accepts, pnet must read the same fields.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Most IPv6 extension headers walked before the packet is rejected.
pub const MAX_EXT_HEADERS: usize = 8;

const ETH_HEADER_LEN: usize = 14;
/// The shortest Ethernet frame without its FCS: shorter ones are padded to it.
const MIN_FRAME_LEN: usize = 60;
const VLAN_TAG_LEN: usize = 4;
const IPV6_HEADER_LEN: usize = 40;
const ICMP_HEADER_LEN: usize = 8;
/// Ethernet/IPv4 ARP body.
const ARP_LEN: usize = 28;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;
const TPID_QINQ_LEGACY: u16 = 0x9100;

const PROTO_HOPOPT: u8 = 0;
const PROTO_ICMP: u8 = 1;
const PROTO_IPIP: u8 = 4;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_IPV6: u8 = 41;
const PROTO_ROUTING: u8 = 43;
const PROTO_FRAGMENT: u8 = 44;
const PROTO_GRE: u8 = 47;
const PROTO_AH: u8 = 51;
const PROTO_ICMPV6: u8 = 58;
const PROTO_DSTOPTS: u8 = 60;
const PROTO_MOBILITY: u8 = 135;

const PORT_VXLAN: u16 = 4789;
const PORT_VXLAN_LINUX: u16 = 8472;
const PORT_TEREDO: u16 = 3544;
const PORT_GENEVE: u16 = 6081;
/// GRE-in-UDP, MPLS-in-UDP, L2TP.
const PORTS_UDP_ENCAP: [u16; 3] = [4754, 6635, 1701];

/// A parsed frame: its VLAN tags and what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// VLAN tags of the frame ([`Vlan::NONE`] for raw IP and untagged frames).
    pub vlan: Vlan,
    /// Bytes before the network layer (Ethernet header and tags; 0 for raw IP).
    pub l2_len: usize,
    /// The network-layer content.
    pub l3: L3<'a>,
}

/// Up to two VLAN tags (802.1Q 0x8100; 802.1ad 0x88a8 and legacy 0x9100 as outer).
/// A single tag is reported as `outer`. Ids are the 12-bit VID (priority bits dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Vlan {
    /// VID of the first (outer) tag.
    pub outer: Option<u16>,
    /// VID of the second (inner, 802.1Q) tag.
    pub inner: Option<u16>,
    /// The outer tag is a service tag (TPID 0x88a8 or 0x9100), not an 802.1Q one.
    pub outer_is_service_tag: bool,
}

impl Vlan {
    /// No VLAN tag.
    pub const NONE: Vlan = Vlan { outer: None, inner: None, outer_is_service_tag: false };

    /// Both tags packed into 27 bits for a flow key (`outer << 13 | inner`, each 13 bits:
    /// a presence bit 0x1000 plus the VID, so "untagged" and "VID 0" differ; bit 26 says
    /// the outer tag is a service tag).
    #[inline]
    pub const fn key(&self) -> u32 {
        const fn part(vid: Option<u16>) -> u32 {
            match vid {
                Some(v) => 0x1000 | (v as u32 & 0x0fff),
                None => 0,
            }
        }
        (part(self.outer) << 13) | part(self.inner) | (self.outer_is_service_tag as u32) << 26
    }
}

/// Network-layer content of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3<'a> {
    /// ARP (ethertype 0x0806) with at least the 28-byte Ethernet/IPv4 body present.
    Arp,
    /// IPv4 or IPv6.
    Ip(Ip<'a>),
    /// Any other ethertype (or 802.3 length field), not parsed further.
    Other {
        /// The ethertype after the VLAN tags.
        ethertype: u16,
    },
}

/// A parsed IPv4 or IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit.
    pub hop_limit: u8,
    /// Upper-layer protocol number (after the IPv6 extension chain; for a non-first IPv6
    /// fragment, the fragment header's next header).
    pub protocol: u8,
    /// Fragment information; `None` for unfragmented packets and IPv6 atomic fragments.
    pub fragment: Option<Fragment>,
    /// The transport layer.
    pub l4: L4<'a>,
    /// `Some` when this packet is recognised as a tunnel.
    pub tunnel: Option<Tunnel>,
    /// IP packet length from the header (the frame may carry Ethernet padding after it).
    pub total_len: usize,
}

impl Ip<'_> {
    /// Ports for a flow key: TCP/UDP ports; for ICMP echo the identifier on the
    /// requester's side — `(ident, 0)` for a request, `(0, ident)` for a reply — so that a
    /// request and its replies share a key and a request the other way does not; else
    /// `(0, 0)`. Consistent with [`Quoted::sport`] / [`Quoted::dport`].
    #[inline]
    pub fn ports(&self) -> (u16, u16) {
        match self.l4 {
            L4::Tcp(t) => (t.sport, t.dport),
            L4::Udp(u) => (u.sport, u.dport),
            L4::Icmp(i) => i.echo_ports(),
            L4::NotFirstFragment(_) | L4::Other => (0, 0),
        }
    }
}

/// Fragment header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// Identification (16 bits for IPv4, 32 for IPv6).
    pub id: u32,
    /// Fragment offset in 8-byte units.
    pub offset: u16,
    /// More-fragments flag.
    pub more: bool,
    /// The protocol that names the datagram in every fragment alike: the IPv4 protocol
    /// field, or the IPv6 fragment header's next header (which, for a first fragment,
    /// may be an extension header before the transport one).
    pub proto: u8,
}

/// Transport layer of an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4<'a> {
    /// TCP segment.
    Tcp(Tcp<'a>),
    /// UDP datagram.
    Udp(Udp<'a>),
    /// ICMP (IPv4) or ICMPv6 message.
    Icmp(Icmp),
    /// A non-first fragment: no transport header in this packet, only a piece of the
    /// datagram's data (these bytes).
    NotFirstFragment(&'a [u8]),
    /// Any other protocol (GRE, IP-in-IP, ESP, SCTP, no-next-header, ...): no ports.
    Other,
}

/// TCP header summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcp<'a> {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Flags, including NS/AE.
    pub flags: TcpFlags,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful when ACK is set).
    pub ack: u32,
    /// Advertised window, unscaled.
    pub window: u16,
    /// The window-scale option (RFC 7323) of a SYN segment, clamped to 14; `None` when
    /// absent or when the segment is not a SYN (the option is only valid there).
    pub wscale: Option<u8>,
    /// Segment data after the header and options, up to the IP length.
    pub payload: &'a [u8],
    /// The whole segment as on the wire (header, options and data), for the checksum.
    pub segment: &'a [u8],
}

/// TCP flags (the low 9 bits of header bytes 12–13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    /// FIN.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// PSH.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// ACK.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// URG.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECE.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// CWR.
    pub const CWR: TcpFlags = TcpFlags(0x80);
    /// NS (RFC 3540), reused as AE by accurate ECN.
    pub const NS: TcpFlags = TcpFlags(0x100);
    /// AE (accurate ECN), same bit as [`TcpFlags::NS`].
    pub const AE: TcpFlags = TcpFlags(0x100);

    /// True when every flag of `other` is set in `self`.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True for combinations that never start or continue a flow: SYN+FIN, SYN+RST,
    /// none of FIN/SYN/RST/PSH/ACK/URG (null scan), FIN+PSH+URG (xmas).
    #[inline]
    pub const fn is_invalid(self) -> bool {
        const SYN_FIN: u16 = 0x03;
        const SYN_RST: u16 = 0x06;
        const XMAS: u16 = 0x29;
        self.0 & 0x3f == 0
            || self.0 & SYN_FIN == SYN_FIN
            || self.0 & SYN_RST == SYN_RST
            || self.0 & XMAS == XMAS
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

/// UDP header summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Udp<'a> {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Datagram data per the UDP length (for a first fragment: what this fragment holds).
    pub payload: &'a [u8],
    /// The datagram as on the wire (header and data, per the UDP length), for the checksum.
    pub datagram: &'a [u8],
}

/// ICMP or ICMPv6 header summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmp {
    /// True for ICMPv6.
    pub v6: bool,
    /// Message type.
    pub ty: u8,
    /// Message code.
    pub code: u8,
    /// Echo identifier; 0 unless echo request/reply.
    pub ident: u16,
    /// For error messages, the header of the offending packet when it parses far enough.
    pub quoted: Option<Quoted>,
}

impl Icmp {
    /// An error message that quotes an offending packet: ICMP destination unreachable,
    /// time exceeded, parameter problem; ICMPv6 types 1–4.
    #[inline]
    pub fn is_error(&self) -> bool {
        if self.v6 {
            matches!(self.ty, 1..=4)
        } else {
            matches!(self.ty, 3 | 11 | 12)
        }
    }

    /// An echo request (ICMP 8, ICMPv6 128).
    #[inline]
    pub fn is_echo_request(&self) -> bool {
        self.ty == if self.v6 { 128 } else { 8 }
    }

    /// An echo reply (ICMP 0, ICMPv6 129).
    #[inline]
    pub fn is_echo_reply(&self) -> bool {
        self.ty == if self.v6 { 129 } else { 0 }
    }

    /// Flow-key ports: `(ident, 0)` for an echo request, `(0, ident)` for a reply,
    /// `(0, 0)` otherwise.
    #[inline]
    pub fn echo_ports(&self) -> (u16, u16) {
        if self.is_echo_request() {
            (self.ident, 0)
        } else if self.is_echo_reply() {
            (0, self.ident)
        } else {
            (0, 0)
        }
    }
}

/// The first header of the packet an ICMP/ICMPv6 error quotes (addresses as in that
/// packet, i.e. usually the reverse of the error's own direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quoted {
    /// Source address of the quoted packet.
    pub src: IpAddr,
    /// Destination address of the quoted packet.
    pub dst: IpAddr,
    /// Upper-layer protocol of the quoted packet.
    pub protocol: u8,
    /// TCP/UDP source port; for a quoted ICMP echo request the identifier; else 0.
    pub sport: u16,
    /// TCP/UDP destination port; for a quoted ICMP echo reply the identifier; else 0.
    pub dport: u16,
    /// The TCP sequence number of the quoted segment when present (RFC 5927 checks), else
    /// `None`.
    pub tcp_seq: Option<u32>,
    /// For a quoted ICMP echo: `Some(true)` for a request, `Some(false)` for a reply.
    pub echo_request: Option<bool>,
}

/// A recognised tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tunnel {
    /// GRE (IP protocol 47).
    Gre,
    /// IPv4 encapsulated in IP (protocol 4).
    IpInIp,
    /// IPv6 encapsulated in IP (protocol 41: 6in4, or v6-in-v6).
    Ipv6InIp,
    /// VXLAN: UDP to or from port 4789 (IANA) or 8472 (Linux's default).
    Vxlan,
    /// Teredo (UDP port 3544, or a UDP payload that is exactly one IPv6 packet).
    Teredo,
    /// Geneve (UDP port 6081).
    Geneve,
    /// Another encapsulation in UDP: GRE-in-UDP (4754), MPLS-in-UDP (6635), L2TP (1701).
    UdpEncap,
    /// Another encapsulation in IP: EtherIP (97), MPLS-in-IP (137), L2TPv3 (115), ENCAP
    /// (98), KA9Q IP-in-IP (94).
    OtherIp,
}

/// Why a frame was rejected. Every variant means "malformed".
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParseError {
    /// Fewer than 14 bytes.
    TruncatedEthernet,
    /// A VLAN tag or the ethertype after it is cut off.
    TruncatedVlan,
    /// A third VLAN tag.
    TooManyVlanTags,
    /// The inner tag uses an outer TPID (0x88a8 or 0x9100).
    BadInnerVlanTpid,
    /// ARP frame shorter than the 28-byte body.
    TruncatedArp,
    /// Bytes after the IP packet beyond the padding of a minimum-size frame: nothing
    /// legitimate puts them there, and they would cross unjudged.
    EthernetTrailer,
    /// Empty IP packet.
    EmptyIp,
    /// IP version nibble is neither 4 nor 6.
    UnknownIpVersion,
    /// IP version nibble disagrees with the ethertype.
    IpVersionMismatch,
    /// Fewer than 20 bytes of IPv4 header.
    TruncatedIpv4Header,
    /// IHL below 5.
    Ipv4HeaderLengthBelow20,
    /// IHL (options) reaches past the data.
    Ipv4HeaderExceedsData,
    /// An IPv4 loose or strict source-route option (the sender picks the path; RFC 7126
    /// recommends dropping it), or an option whose length runs past the header.
    Ipv4SourceRouteOrBadOption,
    /// Total length smaller than the header.
    Ipv4TotalLengthBelowHeader,
    /// Total length larger than the data.
    Ipv4TotalLengthExceedsData,
    /// Fewer than 40 bytes of IPv6 header.
    TruncatedIpv6Header,
    /// Payload length larger than the data.
    Ipv6PayloadLengthExceedsData,
    /// Payload length 0 with a hop-by-hop header (jumbogram).
    Ipv6Jumbogram,
    /// An extension header is cut off.
    TruncatedExtensionHeader,
    /// More than [`MAX_EXT_HEADERS`] extension headers.
    TooManyExtensionHeaders,
    /// Hop-by-hop options not directly after the IPv6 header.
    HopByHopNotFirst,
    /// Routing header type 0 (RFC 5095).
    RoutingHeaderType0,
    /// A routing header with segments left (segment routing and the like): the packet's
    /// destination is not where it is going.
    RoutingHeaderInUse,
    /// Two fragment headers.
    DuplicateFragmentHeader,
    /// First fragment without the whole header chain and transport header.
    TinyFirstFragment,
    /// TCP fragment at offset 1 (RFC 1858).
    TcpFragmentOffsetOne,
    /// Fragment reaching past the 65535-byte maximum packet.
    FragmentTooLarge,
    /// Fewer than 20 bytes of TCP header.
    TruncatedTcpHeader,
    /// TCP data offset below 5.
    TcpDataOffsetBelow5,
    /// TCP data offset (options) reaches past the data.
    TcpHeaderExceedsData,
    /// Fewer than 8 bytes of UDP header.
    TruncatedUdpHeader,
    /// UDP length field below 8.
    UdpLengthBelow8,
    /// UDP length field larger than the data.
    UdpLengthExceedsData,
    /// ICMP message shorter than 4 bytes (8 for echo).
    TruncatedIcmp,
}

impl ParseError {
    /// Short description.
    pub const fn as_str(&self) -> &'static str {
        use ParseError::*;
        match self {
            TruncatedEthernet => "truncated ethernet header",
            TruncatedVlan => "truncated vlan tag",
            TooManyVlanTags => "more than two vlan tags",
            BadInnerVlanTpid => "inner vlan tag with an outer tpid",
            TruncatedArp => "truncated arp body",
            EthernetTrailer => "bytes after the ip packet",
            EmptyIp => "empty ip packet",
            UnknownIpVersion => "unknown ip version",
            IpVersionMismatch => "ip version disagrees with ethertype",
            TruncatedIpv4Header => "truncated ipv4 header",
            Ipv4HeaderLengthBelow20 => "ipv4 header length below 20",
            Ipv4HeaderExceedsData => "ipv4 header length exceeds packet",
            Ipv4SourceRouteOrBadOption => "ipv4 source-route option or malformed option",
            Ipv4TotalLengthBelowHeader => "ipv4 total length below header length",
            Ipv4TotalLengthExceedsData => "ipv4 total length exceeds packet",
            TruncatedIpv6Header => "truncated ipv6 header",
            Ipv6PayloadLengthExceedsData => "ipv6 payload length exceeds packet",
            Ipv6Jumbogram => "ipv6 jumbogram",
            TruncatedExtensionHeader => "truncated ipv6 extension header",
            TooManyExtensionHeaders => "too many ipv6 extension headers",
            HopByHopNotFirst => "ipv6 hop-by-hop header not first",
            RoutingHeaderType0 => "ipv6 routing header type 0",
            RoutingHeaderInUse => "ipv6 routing header with segments left",
            DuplicateFragmentHeader => "duplicate ipv6 fragment header",
            TinyFirstFragment => "tiny first fragment",
            TcpFragmentOffsetOne => "tcp fragment at offset 1",
            FragmentTooLarge => "fragment past 65535 bytes",
            TruncatedTcpHeader => "truncated tcp header",
            TcpDataOffsetBelow5 => "tcp data offset below 5",
            TcpHeaderExceedsData => "tcp data offset exceeds packet",
            TruncatedUdpHeader => "truncated udp header",
            UdpLengthBelow8 => "udp length below 8",
            UdpLengthExceedsData => "udp length exceeds packet",
            TruncatedIcmp => "truncated icmp header",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ParseError {}

// Fixed-size headers are taken as `&[u8; N]` with `split_first_chunk`, so constant
// indexing into them is checked by the compiler (`unconditional_panic`); variable parts
// are read with `get`.

#[inline(always)]
const fn be16(hi: u8, lo: u8) -> u16 {
    u16::from_be_bytes([hi, lo])
}

#[inline]
fn be16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..)?.first_chunk::<2>()?;
    Some(u16::from_be_bytes(*s))
}

#[inline]
fn ipv6_at(b: &[u8], off: usize) -> Option<Ipv6Addr> {
    let s = b.get(off..)?.first_chunk::<16>()?;
    Some(Ipv6Addr::from(*s))
}

#[inline]
fn is_tpid(ethertype: u16) -> bool {
    matches!(ethertype, TPID_8021Q | TPID_8021AD | TPID_QINQ_LEGACY)
}

/// Reads one VLAN tag: (VID, next ethertype, rest).
#[inline(always)]
fn vlan_tag(b: &[u8]) -> Result<(u16, u16, &[u8]), ParseError> {
    let (tag, rest) = b.split_first_chunk::<VLAN_TAG_LEN>().ok_or(ParseError::TruncatedVlan)?;
    Ok((be16(tag[0], tag[1]) & 0x0fff, be16(tag[2], tag[3]), rest))
}

/// Parses an Ethernet II frame (without FCS).
#[inline]
pub fn parse_ethernet(frame: &[u8]) -> Result<Parsed<'_>, ParseError> {
    let (eth, mut rest) = frame.split_first_chunk::<ETH_HEADER_LEN>().ok_or(ParseError::TruncatedEthernet)?;
    let mut ethertype = be16(eth[12], eth[13]);
    let mut vlan = Vlan::NONE;
    if is_tpid(ethertype) {
        vlan.outer_is_service_tag = ethertype != TPID_8021Q;
        let (vid, next, r) = vlan_tag(rest)?;
        (vlan.outer, ethertype, rest) = (Some(vid), next, r);
        if is_tpid(ethertype) {
            if ethertype != TPID_8021Q {
                return Err(ParseError::BadInnerVlanTpid);
            }
            let (vid, next, r) = vlan_tag(rest)?;
            (vlan.inner, ethertype, rest) = (Some(vid), next, r);
            if is_tpid(ethertype) {
                return Err(ParseError::TooManyVlanTags);
            }
        }
    }
    let l2_len = frame.len() - rest.len();
    let l3 = match ethertype {
        ETHERTYPE_ARP if rest.len() < ARP_LEN => return Err(ParseError::TruncatedArp),
        ETHERTYPE_ARP => L3::Arp,
        ETHERTYPE_IPV4 => L3::Ip(parse_ipv4(rest)?),
        ETHERTYPE_IPV6 => L3::Ip(parse_ipv6(rest)?),
        other => L3::Other { ethertype: other },
    };
    if let L3::Ip(ip) = &l3 {
        // A sender pads a short frame to 60 bytes (plus its tags); nothing else may follow.
        let padded = MIN_FRAME_LEN + (l2_len - ETH_HEADER_LEN);
        if frame.len() > padded.max(l2_len + ip.total_len) {
            return Err(ParseError::EthernetTrailer);
        }
    }
    Ok(Parsed { vlan, l2_len, l3 })
}

/// Parses a raw IP packet (no link header); the version comes from the first nibble.
/// `vlan` is [`Vlan::NONE`].
pub fn parse_ip(packet: &[u8]) -> Result<Parsed<'_>, ParseError> {
    let ip = match packet.first().ok_or(ParseError::EmptyIp)? >> 4 {
        4 => parse_ipv4(packet)?,
        6 => parse_ipv6(packet)?,
        _ => return Err(ParseError::UnknownIpVersion),
    };
    Ok(Parsed { vlan: Vlan::NONE, l2_len: 0, l3: L3::Ip(ip) })
}

#[inline(always)]
/// Walks the (at most 40 bytes of) IPv4 options: false for a loose (131) or strict (137)
/// source route, and for an option whose length is below 2 or runs past the header.
fn ipv4_options_acceptable(mut options: &[u8]) -> bool {
    while let Some((&kind, rest)) = options.split_first() {
        match kind {
            0 => return true,
            1 => options = rest,
            131 | 137 => return false,
            _ => {
                let len = usize::from(rest.first().copied().unwrap_or(0));
                match options.get(len..) {
                    Some(next) if len >= 2 => options = next,
                    _ => return false,
                }
            }
        }
    }
    true
}

#[inline(always)]
fn parse_ipv4(packet: &[u8]) -> Result<Ip<'_>, ParseError> {
    let (h, _) = packet.split_first_chunk::<20>().ok_or(ParseError::TruncatedIpv4Header)?;
    if h[0] >> 4 != 4 {
        return Err(ParseError::IpVersionMismatch);
    }
    let hlen = usize::from(h[0] & 0x0f) * 4;
    if hlen < 20 {
        return Err(ParseError::Ipv4HeaderLengthBelow20);
    }
    if hlen > packet.len() {
        return Err(ParseError::Ipv4HeaderExceedsData);
    }
    if hlen > 20 && !ipv4_options_acceptable(packet.get(20..hlen).unwrap_or_default()) {
        return Err(ParseError::Ipv4SourceRouteOrBadOption);
    }
    let total_len = usize::from(be16(h[2], h[3]));
    if total_len < hlen {
        return Err(ParseError::Ipv4TotalLengthBelowHeader);
    }
    let data = packet.get(hlen..total_len).ok_or(ParseError::Ipv4TotalLengthExceedsData)?;
    let protocol = h[9];
    let flags_offset = be16(h[6], h[7]);
    let (offset, more) = (flags_offset & 0x1fff, flags_offset & 0x2000 != 0);
    let id = u32::from(be16(h[4], h[5]));
    let fragment = (more || offset != 0).then_some(Fragment { id, offset, more, proto: protocol });
    if hlen + usize::from(offset) * 8 + data.len() > usize::from(u16::MAX) {
        return Err(ParseError::FragmentTooLarge);
    }
    let (l4, tunnel) = transport(protocol, false, data, offset, more)?;
    Ok(Ip {
        src: IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
        dst: IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
        hop_limit: h[8],
        protocol,
        fragment,
        l4,
        tunnel,
        total_len,
    })
}

#[inline(always)]
fn parse_ipv6(packet: &[u8]) -> Result<Ip<'_>, ParseError> {
    let (h, _) = packet.split_first_chunk::<IPV6_HEADER_LEN>().ok_or(ParseError::TruncatedIpv6Header)?;
    if h[0] >> 4 != 6 {
        return Err(ParseError::IpVersionMismatch);
    }
    let next_header = h[6];
    let payload_len = usize::from(be16(h[4], h[5]));
    if payload_len == 0 && next_header == PROTO_HOPOPT {
        return Err(ParseError::Ipv6Jumbogram);
    }
    let total_len = IPV6_HEADER_LEN + payload_len;
    let packet = packet.get(..total_len).ok_or(ParseError::Ipv6PayloadLengthExceedsData)?;
    let (src, dst) = match (ipv6_at(h, 8), ipv6_at(h, 24)) {
        (Some(src), Some(dst)) => (src, dst),
        _ => return Err(ParseError::TruncatedIpv6Header),
    };
    let chain = walk_ext_chain(packet, next_header)?;
    let data = packet.get(chain.l4_offset..).ok_or(ParseError::TruncatedExtensionHeader)?;
    if usize::from(chain.frag_offset) * 8 + data.len() > usize::from(u16::MAX) {
        return Err(ParseError::FragmentTooLarge);
    }
    let (l4, tunnel) = transport(chain.protocol, true, data, chain.frag_offset, chain.first_fragment)?;
    Ok(Ip {
        src: IpAddr::V6(src),
        dst: IpAddr::V6(dst),
        hop_limit: h[7],
        protocol: chain.protocol,
        fragment: chain.fragment,
        l4,
        tunnel,
        total_len,
    })
}

/// Result of walking an IPv6 extension-header chain.
struct ExtChain {
    /// Upper-layer protocol (or the fragment header's next header for non-first fragments).
    protocol: u8,
    /// Where the upper-layer header (or the fragment data) starts.
    l4_offset: usize,
    fragment: Option<Fragment>,
    frag_offset: u16,
    /// A fragment header with offset 0 and M set was seen.
    first_fragment: bool,
}

/// Walks the extension headers of `packet` (starting with the IPv6 fixed header).
fn walk_ext_chain(packet: &[u8], mut next: u8) -> Result<ExtChain, ParseError> {
    let mut off = IPV6_HEADER_LEN;
    let mut count = 0;
    let mut fragment = None;
    let mut seen_fragment = false;
    let mut first_fragment = false;
    while matches!(
        next,
        PROTO_HOPOPT | PROTO_ROUTING | PROTO_FRAGMENT | PROTO_DSTOPTS | PROTO_AH | PROTO_MOBILITY
    ) {
        count += 1;
        if count > MAX_EXT_HEADERS {
            return Err(ParseError::TooManyExtensionHeaders);
        }
        if next == PROTO_HOPOPT && count != 1 {
            return Err(ParseError::HopByHopNotFirst);
        }
        let truncated =
            if first_fragment { ParseError::TinyFirstFragment } else { ParseError::TruncatedExtensionHeader };
        let rest = packet.get(off..).ok_or(truncated)?;
        let (hdr_next, len_field) = match rest {
            [a, b, ..] => (*a, usize::from(*b)),
            _ => return Err(truncated),
        };
        let len = match next {
            PROTO_FRAGMENT => 8,
            PROTO_AH => (len_field + 2) * 4,
            _ => (len_field + 1) * 8,
        };
        let hdr = rest.get(..len).ok_or(truncated)?;
        match (next, hdr.first_chunk::<8>()) {
            (PROTO_ROUTING, Some([_, _, 0, ..])) => return Err(ParseError::RoutingHeaderType0),
            // Segments still to visit: a router would send the packet on to an address the
            // gate never judged.
            (PROTO_ROUTING, Some([_, _, _, left, ..])) if *left > 0 => {
                return Err(ParseError::RoutingHeaderInUse)
            }
            (PROTO_FRAGMENT, Some(f)) => {
                if seen_fragment {
                    return Err(ParseError::DuplicateFragmentHeader);
                }
                seen_fragment = true;
                let frag_offset = be16(f[2], f[3]) >> 3;
                let more = f[3] & 1 != 0;
                first_fragment = more;
                if frag_offset != 0 || more {
                    let id = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
                    fragment = Some(Fragment { id, offset: frag_offset, more, proto: hdr_next });
                }
                if frag_offset != 0 {
                    let l4_offset = off + len;
                    return Ok(ExtChain {
                        protocol: hdr_next,
                        l4_offset,
                        fragment,
                        frag_offset,
                        first_fragment,
                    });
                }
            }
            _ => {}
        }
        next = hdr_next;
        off += len;
    }
    Ok(ExtChain { protocol: next, l4_offset: off, fragment, frag_offset: 0, first_fragment })
}

/// Parses the transport layer. `first_fragment`: offset 0 with more fragments to come, so
/// the whole transport header must be present and the UDP length covers later fragments.
#[inline(always)]
fn transport(
    protocol: u8,
    v6: bool,
    data: &[u8],
    frag_offset: u16,
    first_fragment: bool,
) -> Result<(L4<'_>, Option<Tunnel>), ParseError> {
    let tunnel = match protocol {
        PROTO_GRE => Some(Tunnel::Gre),
        PROTO_IPIP => Some(Tunnel::IpInIp),
        PROTO_IPV6 => Some(Tunnel::Ipv6InIp),
        94 | 97 | 98 | 115 | 137 => Some(Tunnel::OtherIp),
        _ => None,
    };
    if frag_offset != 0 {
        if protocol == PROTO_TCP && frag_offset == 1 {
            return Err(ParseError::TcpFragmentOffsetOne);
        }
        return Ok((L4::NotFirstFragment(data), tunnel));
    }
    let short = |e| if first_fragment { ParseError::TinyFirstFragment } else { e };
    Ok(match protocol {
        PROTO_TCP => {
            let (h, _) = data.split_first_chunk::<20>().ok_or(short(ParseError::TruncatedTcpHeader))?;
            let data_offset = usize::from(h[12] >> 4) * 4;
            if data_offset < 20 {
                return Err(ParseError::TcpDataOffsetBelow5);
            }
            let payload = data.get(data_offset..).ok_or(short(ParseError::TcpHeaderExceedsData))?;
            let flags = TcpFlags(be16(h[12], h[13]) & 0x01ff);
            let wscale = if flags.contains(TcpFlags::SYN) {
                tcp_window_scale(data.get(20..data_offset).unwrap_or_default())
            } else {
                None
            };
            let tcp = Tcp {
                sport: be16(h[0], h[1]),
                dport: be16(h[2], h[3]),
                flags,
                seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
                window: be16(h[14], h[15]),
                wscale,
                payload,
                segment: data,
            };
            (L4::Tcp(tcp), tunnel)
        }
        PROTO_UDP => {
            let (h, _) = data.split_first_chunk::<8>().ok_or(short(ParseError::TruncatedUdpHeader))?;
            let len = usize::from(be16(h[4], h[5]));
            if len < 8 {
                return Err(ParseError::UdpLengthBelow8);
            }
            let end = if first_fragment {
                len.min(data.len())
            } else if len > data.len() {
                return Err(ParseError::UdpLengthExceedsData);
            } else {
                len
            };
            let payload = data.get(8..end).ok_or(ParseError::TruncatedUdpHeader)?;
            // A first fragment must carry enough of the payload to classify it (a tunnel
            // header is 8 bytes); real fragmentation sends far more.
            if first_fragment && payload.len() < 8 {
                return Err(ParseError::TinyFirstFragment);
            }
            let datagram = data.get(..end).ok_or(ParseError::TruncatedUdpHeader)?;
            let udp = Udp { sport: be16(h[0], h[1]), dport: be16(h[2], h[3]), payload, datagram };
            (L4::Udp(udp), udp_tunnel(&udp))
        }
        PROTO_ICMP if !v6 => (L4::Icmp(parse_icmp(data, false, first_fragment)?), tunnel),
        PROTO_ICMPV6 if v6 => (L4::Icmp(parse_icmp(data, true, first_fragment)?), tunnel),
        _ => (L4::Other, tunnel),
    })
}

/// The ones'-complement sum of `bytes` (odd lengths padded with a zero byte), folded to
/// 16 bits, added to `sum`.
fn ones_complement_sum(mut sum: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Add the two 32-bit halves: no carry is lost in 64 bits for any packet length.
        sum += (w >> 32) + (w & 0xffff_ffff);
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks(2);
    for p in &mut pairs {
        sum += u64::from(be16(p[0], p.get(1).copied().unwrap_or(0)));
    }
    sum
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Whether the TCP or UDP checksum of `segment` (the transport header and data, as
/// [`Tcp::segment`] and [`Udp::datagram`] give them) is right for a packet from `src` to
/// `dst` of IP protocol `protocol` (6 or 17): the receiver accepts it. A UDP datagram over
/// IPv4 with checksum 0 carries none and is accepted; over IPv6 it is not (RFC 8200).
/// Only for whole segments: a fragment's checksum covers data this packet does not hold.
pub fn transport_checksum_ok(src: IpAddr, dst: IpAddr, protocol: u8, segment: &[u8]) -> bool {
    if protocol == PROTO_UDP && segment.get(6..8) == Some(&[0, 0]) {
        return src.is_ipv4();
    }
    let len = segment.len() as u64;
    let mut sum = u64::from(protocol) + (len & 0xffff) + (len >> 16);
    for a in [src, dst] {
        sum = match a {
            IpAddr::V4(a) => ones_complement_sum(sum, &a.octets()),
            IpAddr::V6(a) => ones_complement_sum(sum, &a.octets()),
        };
    }
    fold(ones_complement_sum(sum, segment)) == 0xffff
}

/// The window-scale option (kind 3, length 3) among TCP `options`, clamped to 14 as RFC
/// 7323 says; `None` when absent or when the options are malformed.
fn tcp_window_scale(mut options: &[u8]) -> Option<u8> {
    while let Some((&kind, rest)) = options.split_first() {
        match kind {
            0 => return None,
            1 => options = rest,
            _ => {
                let len = usize::from(*rest.first()?);
                let body = options.get(2..len)?;
                if kind == 3 {
                    return body.first().filter(|_| len == 3).map(|shift| (*shift).min(14));
                }
                options = options.get(len.max(2)..)?;
            }
        }
    }
    None
}

#[inline]
fn is_echo(v6: bool, ty: u8) -> bool {
    if v6 {
        matches!(ty, 128 | 129)
    } else {
        matches!(ty, 0 | 8)
    }
}

fn parse_icmp(data: &[u8], v6: bool, first_fragment: bool) -> Result<Icmp, ParseError> {
    let (ty, code) = match data {
        [ty, code, _, _, ..] => (*ty, *code),
        _ if first_fragment => return Err(ParseError::TinyFirstFragment),
        _ => return Err(ParseError::TruncatedIcmp),
    };
    let full = data.first_chunk::<ICMP_HEADER_LEN>();
    if first_fragment && full.is_none() {
        return Err(ParseError::TinyFirstFragment);
    }
    let ident = match (is_echo(v6, ty), full) {
        (true, Some(h)) => be16(h[4], h[5]),
        (true, None) => return Err(ParseError::TruncatedIcmp),
        (false, _) => 0,
    };
    let mut icmp = Icmp { v6, ty, code, ident, quoted: None };
    if icmp.is_error() {
        icmp.quoted = data.get(ICMP_HEADER_LEN..).and_then(parse_quoted);
    }
    Ok(icmp)
}

/// Parses the (usually truncated) packet quoted by an ICMP error; `None` when it stops
/// before the protocol and, for TCP/UDP/echo, the ports or identifier.
fn parse_quoted(q: &[u8]) -> Option<Quoted> {
    let (src, dst, protocol, v6, l4, non_first) = match q.first()? >> 4 {
        4 => {
            let h = q.first_chunk::<20>()?;
            let hlen = usize::from(h[0] & 0x0f) * 4;
            if hlen < 20 {
                return None;
            }
            let src = IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15]));
            let dst = IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19]));
            let non_first = be16(h[6], h[7]) & 0x1fff != 0;
            (src, dst, h[9], false, q.get(hlen..)?, non_first)
        }
        6 => {
            let h = q.first_chunk::<IPV6_HEADER_LEN>()?;
            let (src, dst) = (IpAddr::V6(ipv6_at(h, 8)?), IpAddr::V6(ipv6_at(h, 24)?));
            let chain = walk_ext_chain(q, h[6]).ok()?;
            (src, dst, chain.protocol, true, q.get(chain.l4_offset..)?, chain.frag_offset != 0)
        }
        _ => return None,
    };
    let tcp_seq = match (protocol, non_first) {
        (PROTO_TCP, false) => l4.get(4..8).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]])),
        _ => None,
    };
    let mut echo_request = None;
    let (sport, dport) = match protocol {
        _ if non_first => (0, 0),
        PROTO_TCP | PROTO_UDP => (be16_at(l4, 0)?, be16_at(l4, 2)?),
        PROTO_ICMP | PROTO_ICMPV6 if v6 == (protocol == PROTO_ICMPV6) => {
            let ty = *l4.first()?;
            let request = ty == if v6 { 128 } else { 8 };
            if is_echo(v6, ty) {
                echo_request = Some(request);
            }
            match (is_echo(v6, ty), request) {
                (true, true) => (be16_at(l4, 4)?, 0),
                (true, false) => (0, be16_at(l4, 4)?),
                (false, _) => (0, 0),
            }
        }
        _ => (0, 0),
    };
    Some(Quoted { src, dst, protocol, sport, dport, tcp_seq, echo_request })
}

/// UDP tunnels by their well-known ports (whatever the header says: a receiver on such a
/// port decapsulates), and Teredo also by a payload that is one IPv6 packet.
#[inline]
fn udp_tunnel(udp: &Udp<'_>) -> Option<Tunnel> {
    let port = |p| udp.sport == p || udp.dport == p;
    if port(PORT_VXLAN) || port(PORT_VXLAN_LINUX) {
        Some(Tunnel::Vxlan)
    } else if port(PORT_GENEVE) {
        Some(Tunnel::Geneve)
    } else if PORTS_UDP_ENCAP.iter().any(|p| port(*p)) {
        Some(Tunnel::UdpEncap)
    } else if port(PORT_TEREDO) || looks_like_teredo(udp.payload) {
        Some(Tunnel::Teredo)
    } else {
        None
    }
}

/// True when `p` is an IPv6 packet whose payload length matches exactly, optionally after
/// a Teredo authentication header (0x0001 ...) and/or an origin indication (0x0000 + 6).
#[inline]
fn looks_like_teredo(mut p: &[u8]) -> bool {
    if let [0, 1, id_len, au_len, ..] = *p {
        // indicator 2, lengths 2, client id, auth value, nonce 8, confirmation 1
        match p.get(13 + usize::from(id_len) + usize::from(au_len)..) {
            Some(rest) => p = rest,
            None => return false,
        }
    }
    if let [0, 0, ..] = *p {
        match p.get(8..) {
            Some(rest) => p = rest,
            None => return false,
        }
    }
    match p.first_chunk::<IPV6_HEADER_LEN>() {
        Some(h) => h[0] >> 4 == 6 && usize::from(be16(h[4], h[5])) == p.len() - IPV6_HEADER_LEN,
        None => false,
    }
}

#[cfg(test)]
mod tests;
