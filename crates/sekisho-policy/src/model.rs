//! The validated policy model: zones, ports, services, paths, exceptions, rules.

use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::time::Timestamp;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u16);

        impl $name {
            /// The position of the item in its list (`Policy::zones()` etc.).
            pub fn index(self) -> usize {
                usize::from(self.0)
            }
        }
    };
}

id_type!(
    /// Index of a zone in [`Policy::zones`](crate::Policy::zones).
    ZoneId
);
id_type!(
    /// Index of a port in [`Policy::ports`](crate::Policy::ports).
    PortId
);
id_type!(
    /// Index of a service in [`Policy::services`](crate::Policy::services).
    ServiceId
);
id_type!(
    /// Index of a path in [`Policy::paths`](crate::Policy::paths).
    PathId
);
id_type!(
    /// Index of an exception in [`Policy::exceptions`](crate::Policy::exceptions).
    ExceptionId
);
id_type!(
    /// Index of a rule in [`Policy::rules`](crate::Policy::rules).
    RuleId
);

/// What the daemon does with a deny verdict.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Drop what the policy denies.
    Enforce,
    /// Forward everything, alert on what would have been dropped.
    Monitor,
}

impl Mode {
    /// Every mode, in the order error messages list them.
    pub const ALL: [Mode; 2] = [Mode::Enforce, Mode::Monitor];

    /// The configuration spelling (`"enforce"`, `"monitor"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        }
    }
}

/// Who may use the control socket (`[control]`): root always may do everything;
/// members of `admin_group` may change things, members of `read_group` may only look.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlSettings {
    /// The group whose members may reload, confirm, roll back, change the mode and
    /// kill flows (`admin_group`; none: only root).
    pub admin_group: Option<String>,
    /// The group whose members may look: status, stats, flows, explain, events
    /// (`read_group`; none: only root and `admin_group`).
    pub read_group: Option<String>,
}

/// How the data plane reads and writes frames (`[daemon] io`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Io {
    /// Raw AF_PACKET sockets with virtio-net headers (checksum-offloaded and GSO frames
    /// cross untouched), batched system calls, fan-out over workers. Linux; the default.
    AfPacket,
    /// pnet's datalink channel on the same kind of socket, one frame per system call,
    /// one thread per interface: the portable baseline.
    Pnet,
}

impl Io {
    /// Every backend, in the order error messages list them.
    pub const ALL: [Io; 2] = [Io::AfPacket, Io::Pnet];

    /// The configuration spelling (`"afpacket"`, `"pnet"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Io::AfPacket => "afpacket",
            Io::Pnet => "pnet",
        }
    }
}

/// Most data-plane worker threads (`[daemon] workers`).
pub const MAX_WORKERS: u16 = 64;

/// Flow-table sizing and idle timeouts (`[flow]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowSettings {
    /// Hard bound on tracked flows; beyond it new flows are refused.
    pub capacity: usize,
    /// Idle timeout of a TCP flow that has not completed its handshake.
    pub tcp_syn_timeout_s: u64,
    /// Idle timeout of an established TCP flow.
    pub tcp_established_timeout_s: u64,
    /// Idle timeout of a closing TCP flow (FIN or RST seen).
    pub tcp_closing_timeout_s: u64,
    /// Idle timeout of a UDP flow.
    pub udp_timeout_s: u64,
    /// Idle timeout of an ICMP flow.
    pub icmp_timeout_s: u64,
}

impl Default for FlowSettings {
    /// The defaults documented in docs/configuration.md.
    fn default() -> Self {
        FlowSettings {
            capacity: 1_000_000,
            tcp_syn_timeout_s: 30,
            tcp_established_timeout_s: 3600,
            tcp_closing_timeout_s: 30,
            udp_timeout_s: 60,
            icmp_timeout_s: 10,
        }
    }
}

/// Application inspection (`[inspect]`): how deep each direction of an inspected flow is
/// checked, how many flows may be inspected at once, and the DNS tunnelling threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InspectSettings {
    /// Bytes of each direction checked before the verdict is kept (`depth`).
    pub depth: usize,
    /// Flows whose inspection is in progress at once, at most (`max_flows`).
    pub max_flows: usize,
    /// Suspicious DNS messages (long random labels, TXT/NULL queries) a flow may carry
    /// before it is cut (`dns_tunnel_threshold`).
    pub dns_tunnel_threshold: u8,
    /// An inspection idle this long is forgotten (and its flow cut at its next packet)
    /// (`idle_timeout_s`).
    pub idle_timeout_s: u64,
}

impl Default for InspectSettings {
    /// The defaults documented in docs/configuration.md.
    fn default() -> Self {
        InspectSettings { depth: 8192, max_flows: 4096, dns_tunnel_threshold: 8, idle_timeout_s: 3600 }
    }
}

/// Monitoring of traffic from internet zones (`[monitor]`): thresholds within one window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorSettings {
    /// Whether detection runs at all (`enabled`, default true).
    pub enabled: bool,
    /// The measuring window, seconds (`window_s`).
    pub window_s: u64,
    /// Distinct destination ports one source may try within a window (`scan_ports`).
    pub scan_ports: u32,
    /// Distinct destination hosts one source may try within a window (`scan_hosts`).
    pub scan_hosts: u32,
    /// Handshakes opened toward one destination and not completed within a window
    /// (`syn_half_open`).
    pub syn_half_open: u32,
    /// ICMP messages toward one destination within a window (`icmp_flood`).
    pub icmp_flood: u32,
    /// Sources and destinations tracked at once, at most (`tracked`).
    pub tracked: usize,
    /// Seconds a detected scanner's new connections are refused (`block_ttl_s`; 0: never).
    pub block_ttl_s: u64,
}

impl Default for MonitorSettings {
    /// The defaults documented in docs/configuration.md.
    fn default() -> Self {
        MonitorSettings {
            enabled: true,
            window_s: 10,
            scan_ports: 64,
            scan_hosts: 64,
            syn_half_open: 512,
            icmp_flood: 1000,
            tracked: 4096,
            block_ttl_s: 0,
        }
    }
}

/// The kind of a zone: which layer of 三層分離 it is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ZoneKind {
    /// マイナンバー利用事務系.
    Mynumber,
    /// LGWAN接続系.
    Lgwan,
    /// インターネット接続系.
    Internet,
    /// 無害化 zone: the approved sanitisers.
    Sanitization,
    /// 管理系: the appliance's admin network.
    Management,
}

impl ZoneKind {
    /// Every kind, in the order error messages list them.
    pub const ALL: [ZoneKind; 5] = [
        ZoneKind::Mynumber,
        ZoneKind::Lgwan,
        ZoneKind::Internet,
        ZoneKind::Sanitization,
        ZoneKind::Management,
    ];

    /// The configuration spelling (`"mynumber"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ZoneKind::Mynumber => "mynumber",
            ZoneKind::Lgwan => "lgwan",
            ZoneKind::Internet => "internet",
            ZoneKind::Sanitization => "sanitization",
            ZoneKind::Management => "management",
        }
    }

    /// The Japanese name used in the security policies.
    pub fn japanese(self) -> &'static str {
        match self {
            ZoneKind::Mynumber => "マイナンバー利用事務系",
            ZoneKind::Lgwan => "LGWAN接続系",
            ZoneKind::Internet => "インターネット接続系",
            ZoneKind::Sanitization => "無害化",
            ZoneKind::Management => "管理系",
        }
    }
}

/// A zone: a named set of address prefixes of one kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// Unique zone name.
    pub name: String,
    /// Which layer the zone is.
    pub kind: ZoneKind,
    /// The prefixes (network addresses, no host bits) that belong to the zone.
    pub prefixes: Vec<IpNetwork>,
    /// True when the zone has no [`Port`]: its hosts are reached only through the core
    /// router, so the gate cannot verify their source addresses (`upstream = true`).
    pub upstream: bool,
}

/// A bump-in-the-wire interface pair on one zone's uplink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// Unique port name.
    pub name: String,
    /// The zone whose hosts sit behind `inside`.
    pub zone: ZoneId,
    /// Interface toward the segment's hosts.
    pub inside: String,
    /// Interface toward the core router.
    pub outside: String,
    /// VLAN ids whose single 802.1Q tag may cross the port (`vlans`; 0 is a
    /// priority-tagged frame). Sorted, no duplicates.
    pub vlans: Vec<u16>,
    /// Whether untagged frames may cross (`untagged`, default true).
    pub untagged: bool,
    /// The core router's own addresses on this segment (`routers`): sources on the
    /// `outside` that belong to the port's zone, and that may send ICMP errors about
    /// the segment's connections.
    pub routers: Vec<IpAddr>,
}

impl Port {
    /// Whether a frame with these VLAN tags (outer, inner VID) may cross the port:
    /// untagged when `untagged`, a single tag when listed in `vlans`, never two tags.
    #[inline]
    pub fn admits_vlan(&self, outer: Option<u16>, inner: Option<u16>) -> bool {
        match (outer, inner) {
            (None, _) => self.untagged,
            (Some(vid), None) => self.vlans.binary_search(&vid).is_ok(),
            (Some(_), Some(_)) => false,
        }
    }

    /// Whether `addr` is one of the port's routers.
    #[inline]
    pub fn is_router(&self, addr: IpAddr) -> bool {
        self.routers.contains(&addr)
    }
}

/// Which interface of a [`Port`] a name refers to.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortSide {
    /// Toward the segment's hosts.
    Inside,
    /// Toward the core router.
    Outside,
}

/// Transport protocol a service names.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP or ICMPv6 (1, 58).
    Icmp,
    /// Every protocol and port.
    Any,
    /// GRE tunnel (47).
    Gre,
    /// IPv4-in-IP tunnel (4).
    Ipip,
    /// IPv6-in-IPv4 tunnel, 6in4 (41).
    Ipv6,
}

impl Proto {
    /// Every protocol, in the order error messages list them.
    pub const ALL: [Proto; 7] =
        [Proto::Tcp, Proto::Udp, Proto::Icmp, Proto::Any, Proto::Gre, Proto::Ipip, Proto::Ipv6];

    /// The configuration spelling (`"tcp"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Any => "any",
            Proto::Gre => "gre",
            Proto::Ipip => "ipip",
            Proto::Ipv6 => "ipv6",
        }
    }

    /// Whether connections of this protocol carry ports (`ports` is required).
    pub fn has_ports(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp)
    }

    /// Whether an IP protocol number is this protocol.
    #[inline]
    pub fn matches(self, protocol: u8) -> bool {
        match self {
            Proto::Tcp => protocol == 6,
            Proto::Udp => protocol == 17,
            Proto::Icmp => protocol == 1 || protocol == 58,
            Proto::Any => true,
            Proto::Gre => protocol == 47,
            Proto::Ipip => protocol == 4,
            Proto::Ipv6 => protocol == 41,
        }
    }
}

/// The application protocol a service is expected to carry.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum App {
    /// Not checked.
    Any,
    /// SMTP.
    Smtp,
    /// RDP (screen transfer).
    Rdp,
    /// TLS.
    Tls,
    /// Plain HTTP.
    Http,
    /// Citrix ICA (screen transfer).
    Ica,
    /// SSH (and SFTP).
    Ssh,
    /// DNS.
    Dns,
    /// VNC / RFB (screen transfer).
    Vnc,
    /// VXLAN tunnel.
    Vxlan,
    /// Teredo tunnel.
    Teredo,
}

impl App {
    /// Every application protocol, in the order error messages list them.
    pub const ALL: [App; 11] = [
        App::Any,
        App::Smtp,
        App::Rdp,
        App::Tls,
        App::Http,
        App::Ica,
        App::Ssh,
        App::Dns,
        App::Vnc,
        App::Vxlan,
        App::Teredo,
    ];

    /// The configuration spelling (`"smtp"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            App::Any => "any",
            App::Smtp => "smtp",
            App::Rdp => "rdp",
            App::Tls => "tls",
            App::Http => "http",
            App::Ica => "ica",
            App::Ssh => "ssh",
            App::Dns => "dns",
            App::Vnc => "vnc",
            App::Vxlan => "vxlan",
            App::Teredo => "teredo",
        }
    }

    /// Whether this is a screen-transfer protocol (rdp, ica, vnc).
    pub fn is_screen(self) -> bool {
        matches!(self, App::Rdp | App::Ica | App::Vnc)
    }

    /// The protocols this application can run over (`None`: any protocol).
    pub fn allowed_protos(self) -> Option<&'static [Proto]> {
        match self {
            App::Any => None,
            App::Smtp | App::Tls | App::Http | App::Ica | App::Ssh | App::Vnc => Some(&[Proto::Tcp]),
            App::Rdp | App::Dns => Some(&[Proto::Tcp, Proto::Udp]),
            App::Vxlan | App::Teredo => Some(&[Proto::Udp]),
        }
    }

    /// Whether this application can run over `proto`.
    pub fn fits(self, proto: Proto) -> bool {
        self.allowed_protos().is_none_or(|p| p.contains(&proto))
    }
}

/// An inclusive range of TCP/UDP ports.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port of the range.
    pub first: u16,
    /// Last port of the range (inclusive).
    pub last: u16,
}

impl PortRange {
    /// Whether `port` lies in the range.
    #[inline]
    pub fn contains(self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// A named protocol + ports + expected application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Unique service name.
    pub name: String,
    /// The transport protocol.
    pub proto: Proto,
    /// Responder ports (non-empty for tcp/udp, empty otherwise).
    pub ports: Vec<PortRange>,
    /// The application protocol expected on it.
    pub app: App,
    /// For `app = "tls"`: the server names (SNI) a ClientHello may ask for
    /// (`sni_allow`); empty: any (or none).
    pub sni_allow: Vec<SniPattern>,
    /// For `app = "http"`: whether a `CONNECT` request (an opaque tunnel) may pass
    /// (`allow_connect`, default false).
    pub allow_connect: bool,
}

/// One entry of a service's `sni_allow`: an exact name, or `*.suffix` for every name
/// that ends in `.suffix`. Stored in lower case.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SniPattern {
    /// Exactly this name.
    Exact(String),
    /// Any name ending in `.` + this suffix (one label or more before it).
    Suffix(String),
}

impl SniPattern {
    /// Whether `name` (any case, no trailing dot) matches.
    pub fn matches(&self, name: &[u8]) -> bool {
        match self {
            SniPattern::Exact(e) => name.eq_ignore_ascii_case(e.as_bytes()),
            SniPattern::Suffix(s) => {
                let s = s.as_bytes();
                name.len() > s.len() + 1
                    && name[name.len() - s.len() - 1] == b'.'
                    && name[name.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

impl fmt::Display for SniPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SniPattern::Exact(e) => f.write_str(e),
            SniPattern::Suffix(s) => write!(f, "*.{s}"),
        }
    }
}

impl Service {
    /// Whether a TLS server name passes the service's `sni_allow` (true when the list is
    /// empty).
    pub fn sni_allowed(&self, name: &[u8]) -> bool {
        self.sni_allow.is_empty() || self.sni_allow.iter().any(|p| p.matches(name))
    }
}

impl Service {
    /// Whether a connection's protocol and responder port fall under this service.
    #[inline]
    pub fn matches(&self, protocol: u8, responder_port: u16) -> bool {
        if !self.proto.matches(protocol) {
            return false;
        }
        if self.proto.has_ports() {
            self.ports.iter().any(|r| r.contains(responder_port))
        } else {
            true
        }
    }
}

/// One end of a leg, exception or rule.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// Every address whose zone (longest-prefix match) is this zone (`"zone:NAME"`).
    Zone(ZoneId),
    /// Every address inside this network (a CIDR, or a single address as /32 or /128).
    Net(IpNetwork),
}

impl Endpoint {
    /// Whether the endpoint is one host address (a /32 or /128 network).
    pub fn is_single_host(&self) -> bool {
        match self {
            Endpoint::Zone(_) => false,
            Endpoint::Net(IpNetwork::V4(n)) => n.prefix() == 32,
            Endpoint::Net(IpNetwork::V6(n)) => n.prefix() == 128,
        }
    }

    /// Whether `addr`, whose zone is `zone`, is covered by the endpoint.
    pub fn matches(&self, zone: Option<ZoneId>, addr: IpAddr) -> bool {
        match self {
            Endpoint::Zone(z) => zone == Some(*z),
            Endpoint::Net(n) => n.contains(addr),
        }
    }
}

/// The 無害化 method a path implements.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// Mail text-ification (メール無害化).
    MailText,
    /// File sanitisation, CDR (ファイル無害化).
    FileSanitize,
    /// Screen transfer, VDI/RDP (画面転送).
    ScreenTransfer,
    /// Web isolation (Web分離).
    WebIsolation,
    /// α' local breakout (ローカルブレイクアウト): LGWAN terminals to listed internet
    /// services, by TLS server name only.
    LocalBreakout,
}

impl Method {
    /// Every method, in the order error messages list them.
    pub const ALL: [Method; 5] = [
        Method::MailText,
        Method::FileSanitize,
        Method::ScreenTransfer,
        Method::WebIsolation,
        Method::LocalBreakout,
    ];

    /// The configuration spelling (`"mail-text"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::MailText => "mail-text",
            Method::FileSanitize => "file-sanitize",
            Method::ScreenTransfer => "screen-transfer",
            Method::WebIsolation => "web-isolation",
            Method::LocalBreakout => "local-breakout",
        }
    }
}

/// One leg of a path: who may open a connection to whom, for which service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leg {
    /// The initiator side.
    pub from: Endpoint,
    /// The responder side.
    pub to: Endpoint,
    /// The service the connection must match.
    pub service: ServiceId,
}

/// An approved 無害化通信 path, made of legs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    /// Unique path name.
    pub name: String,
    /// The sanitisation method.
    pub method: Method,
    /// The legs, in configuration order (reason codes number them from 1).
    pub legs: Vec<Leg>,
}

/// An approved mynumber ↔ lgwan exception.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    /// Unique exception name.
    pub name: String,
    /// The initiator side.
    pub from: Endpoint,
    /// The responder side.
    pub to: Endpoint,
    /// The service the connection must match.
    pub service: ServiceId,
    /// The approval record that authorises it.
    pub approval: String,
    /// The moment the exception stops matching, if it expires.
    pub expires: Option<Timestamp>,
}

impl Exception {
    /// Whether the exception still matches at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.expires.is_none_or(|e| now < e)
    }
}

/// Any other allowed communication (never across the invariants).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Unique rule name.
    pub name: String,
    /// The initiator side.
    pub from: Endpoint,
    /// The responder side.
    pub to: Endpoint,
    /// The service the connection must match.
    pub service: ServiceId,
}

/// A new connection to decide on: protocol, initiator → responder.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Connection {
    /// IP protocol number: 6 tcp, 17 udp, 1 icmp, 58 icmpv6, ...
    pub protocol: u8,
    /// The address that opened the connection.
    pub initiator: IpAddr,
    /// The address it was opened to.
    pub responder: IpAddr,
    /// The responder's port (0 when the protocol has no ports).
    pub responder_port: u16,
}
