//! Event kinds: one stable MSGID and a base severity each, and the mapping from the
//! engine's reason codes.

use sekisho_policy::Severity;

/// What an alert is about. Each kind has a stable MSGID ([`EventKind::msgid`]); the
/// MSGIDs are a public interface, like the reason codes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EventKind {
    /// `deny:mynumber-isolation`: traffic between a mynumber zone and another zone.
    MynumberIsolation,
    /// `deny:unsanitized-crossing`: lgwan ↔ internet outside an approved path.
    UnsanitizedCrossing,
    /// `deny:not-sanitized`: traffic on a path whose content was not sanitised.
    NotSanitized,
    /// `deny:no-rule`: nothing allows the connection.
    NoRule,
    /// `deny:spoofed-source`: a source address not of the port's zone on its inside.
    SpoofedSource,
    /// `deny:no-flow`: mid-stream TCP (or a reply) without a flow.
    NoFlow,
    /// `deny:app-mismatch`: another application protocol on an approved service.
    AppMismatch,
    /// `deny:tunnel`: a tunnel crossing zones that no service names.
    Tunnel,
    /// `deny:malformed`: a frame that did not parse, or invalid TCP flags.
    Malformed,
    /// `deny:fragment`: a fragment that cannot be judged.
    Fragment,
    /// `deny:non-ip`: a non-IP ethertype not allowed on the link.
    NonIp,
    /// `deny:vlan`: a VLAN tag not allowed on the port.
    Vlan,
    /// `deny:bogon-address`: an address no real host uses (IPv4-mapped IPv6,
    /// loopback, unspecified, multicast source, ...).
    BogonAddress,
    /// `deny:link-scope`: a link-scoped address in traffic that is not link traffic.
    LinkScope,
    /// `deny:misdirected`: a frame on the router side whose destination is not in the
    /// port's zone.
    Misdirected,
    /// `deny:icmp-third-party`: an ICMP error from neither the peer nor the router.
    IcmpThirdParty,
    /// `deny:out-of-window`: a TCP segment outside the tracked sequence window.
    OutOfWindow,
    /// `deny:flow-table-full`: no room for a new flow.
    FlowTableFull,
    /// `deny:blocked-source`: a new connection from a source `[monitor]` blocked for a while
    /// after detecting it scanning.
    BlockedSource,
    /// A deny code this version does not know yet (the reason code is in `reason`).
    OtherDeny,
    /// Embryonic flows were evicted to make room (`count` says how many).
    FlowEvicted,
    /// A policy was loaded (start or reload).
    PolicyLoaded,
    /// A reload was refused; the running policy stays.
    ReloadFailed,
    /// An exception expired: flows that relied on it are cut.
    ExceptionExpired,
    /// An exception expires soon.
    ExceptionExpiring,
    /// The mode changed (enforce ↔ monitor).
    ModeChanged,
    /// The daemon started.
    DaemonStart,
    /// The daemon is stopping (a stopped daemon passes nothing).
    DaemonStop,
    /// Flood control held back alerts: `count` similar alerts in the last interval.
    Suppressed,
    /// The alert queue was full: `count` alerts of one kind were lost.
    AlertsDropped,
}

impl EventKind {
    /// Every kind, in [`EventKind::index`] order.
    pub const ALL: [EventKind; 30] = [
        EventKind::MynumberIsolation,
        EventKind::UnsanitizedCrossing,
        EventKind::NotSanitized,
        EventKind::NoRule,
        EventKind::SpoofedSource,
        EventKind::NoFlow,
        EventKind::AppMismatch,
        EventKind::Tunnel,
        EventKind::Malformed,
        EventKind::Fragment,
        EventKind::NonIp,
        EventKind::Vlan,
        EventKind::BogonAddress,
        EventKind::LinkScope,
        EventKind::Misdirected,
        EventKind::IcmpThirdParty,
        EventKind::OutOfWindow,
        EventKind::FlowTableFull,
        EventKind::BlockedSource,
        EventKind::OtherDeny,
        EventKind::FlowEvicted,
        EventKind::PolicyLoaded,
        EventKind::ReloadFailed,
        EventKind::ExceptionExpired,
        EventKind::ExceptionExpiring,
        EventKind::ModeChanged,
        EventKind::DaemonStart,
        EventKind::DaemonStop,
        EventKind::Suppressed,
        EventKind::AlertsDropped,
    ];

    /// The position of this kind in [`EventKind::ALL`] (a table index).
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The stable MSGID (at most 32 printable ASCII characters).
    pub fn msgid(self) -> &'static str {
        use EventKind::*;
        match self {
            MynumberIsolation => "MYNUMBER_ISOLATION",
            UnsanitizedCrossing => "UNSANITIZED_CROSSING",
            NotSanitized => "NOT_SANITIZED",
            NoRule => "NO_RULE",
            SpoofedSource => "SPOOFED_SOURCE",
            NoFlow => "NO_FLOW",
            AppMismatch => "APP_MISMATCH",
            Tunnel => "TUNNEL",
            Malformed => "MALFORMED",
            Fragment => "FRAGMENT",
            NonIp => "NON_IP",
            Vlan => "VLAN",
            BogonAddress => "BOGON_ADDRESS",
            LinkScope => "LINK_SCOPE",
            Misdirected => "MISDIRECTED",
            IcmpThirdParty => "ICMP_THIRD_PARTY",
            OutOfWindow => "OUT_OF_WINDOW",
            FlowTableFull => "FLOW_TABLE_FULL",
            BlockedSource => "BLOCKED_SOURCE",
            OtherDeny => "DENY",
            FlowEvicted => "FLOW_EVICTED",
            PolicyLoaded => "POLICY_LOADED",
            ReloadFailed => "RELOAD_FAILED",
            ExceptionExpired => "EXCEPTION_EXPIRED",
            ExceptionExpiring => "EXCEPTION_EXPIRING",
            ModeChanged => "MODE_CHANGED",
            DaemonStart => "DAEMON_START",
            DaemonStop => "DAEMON_STOP",
            Suppressed => "SUPPRESSED",
            AlertsDropped => "ALERTS_DROPPED",
        }
    }

    /// The severity before the policy raises it: traffic that touches a mynumber zone
    /// is raised to at least `crit`, a change to monitor mode is `alert`, and
    /// summaries take the severity of the alerts they summarise (see `docs/alerts.md`).
    pub fn base_severity(self) -> Severity {
        use EventKind::*;
        match self {
            MynumberIsolation => Severity::Alert,
            UnsanitizedCrossing | NotSanitized => Severity::Crit,
            SpoofedSource | AppMismatch | Tunnel | FlowTableFull | ReloadFailed => Severity::Err,
            NoRule | Vlan | BogonAddress | LinkScope | Misdirected | BlockedSource | OtherDeny
            | FlowEvicted | ExceptionExpired | DaemonStop | Suppressed | AlertsDropped => Severity::Warning,
            NoFlow | Malformed | Fragment | NonIp | IcmpThirdParty | OutOfWindow | PolicyLoaded
            | ExceptionExpiring | ModeChanged | DaemonStart => Severity::Notice,
        }
    }

    /// The deny reason code this kind stands for (`None` for kinds that are not
    /// about a dropped packet, and for [`EventKind::OtherDeny`]).
    pub fn reason_code(self) -> Option<&'static str> {
        use EventKind::*;
        Some(match self {
            MynumberIsolation => "deny:mynumber-isolation",
            UnsanitizedCrossing => "deny:unsanitized-crossing",
            NotSanitized => "deny:not-sanitized",
            NoRule => "deny:no-rule",
            SpoofedSource => "deny:spoofed-source",
            NoFlow => "deny:no-flow",
            AppMismatch => "deny:app-mismatch",
            Tunnel => "deny:tunnel",
            Malformed => "deny:malformed",
            Fragment => "deny:fragment",
            NonIp => "deny:non-ip",
            Vlan => "deny:vlan",
            BogonAddress => "deny:bogon-address",
            LinkScope => "deny:link-scope",
            Misdirected => "deny:misdirected",
            IcmpThirdParty => "deny:icmp-third-party",
            OutOfWindow => "deny:out-of-window",
            FlowTableFull => "deny:flow-table-full",
            BlockedSource => "deny:blocked-source",
            _ => return None,
        })
    }

    /// The kind for a reason code: `None` for allow codes (`allow:…`, which raise no
    /// alert); a specific kind for every known deny code; [`EventKind::OtherDeny`]
    /// for anything else (fail closed: an unknown code still alerts).
    pub fn for_reason(code: &str) -> Option<EventKind> {
        use EventKind::*;
        if code.starts_with("allow:") {
            return None;
        }
        Some(match code {
            "deny:mynumber-isolation" => MynumberIsolation,
            "deny:unsanitized-crossing" => UnsanitizedCrossing,
            "deny:not-sanitized" => NotSanitized,
            "deny:no-rule" => NoRule,
            "deny:spoofed-source" => SpoofedSource,
            "deny:no-flow" => NoFlow,
            "deny:app-mismatch" => AppMismatch,
            "deny:tunnel" => Tunnel,
            "deny:malformed" => Malformed,
            "deny:fragment" => Fragment,
            "deny:non-ip" => NonIp,
            "deny:vlan" => Vlan,
            "deny:bogon-address" => BogonAddress,
            "deny:link-scope" => LinkScope,
            "deny:misdirected" => Misdirected,
            "deny:icmp-third-party" => IcmpThirdParty,
            "deny:out-of-window" => OutOfWindow,
            "deny:flow-table-full" => FlowTableFull,
            "deny:blocked-source" => BlockedSource,
            _ => OtherDeny,
        })
    }

    /// Whether the kind is about a dropped (or, in monitor mode, would-be dropped)
    /// packet: these go through flood control.
    pub fn is_traffic(self) -> bool {
        self.index() <= EventKind::OtherDeny.index()
    }

    /// A short description, English and Japanese, that starts each message.
    pub fn title(self) -> &'static str {
        use EventKind::*;
        match self {
            MynumberIsolation => "mynumber isolation violation (マイナンバー利用事務系の分離違反)",
            UnsanitizedCrossing => "unsanitised lgwan-internet crossing (無害化されていないLGWAN接続系とインターネット接続系の通信)",
            NotSanitized => "content not sanitised on a sanitisation path (無害化されていない通信)",
            NoRule => "no rule allows this connection (許可ルールなし)",
            SpoofedSource => "spoofed source address (送信元詐称)",
            NoFlow => "packet without a connection (セッションなしのパケット)",
            AppMismatch => "application protocol does not match the service (アプリケーション不一致)",
            Tunnel => "tunnel across zones (領域をまたぐトンネル)",
            Malformed => "malformed packet (不正な形式のパケット)",
            Fragment => "fragment that cannot be judged (判定できないフラグメント)",
            NonIp => "non-IP frame (IP以外のフレーム)",
            Vlan => "VLAN tag not allowed on this port (許可されていないVLANタグ)",
            BogonAddress => "bogus address (不正なアドレス)",
            LinkScope => "link-scoped address outside link traffic (リンクスコープアドレスの不正使用)",
            Misdirected => "destination not in this port's zone (宛先が領域外)",
            IcmpThirdParty => "ICMP error from a third party (第三者からのICMPエラー)",
            OutOfWindow => "TCP segment outside the window (ウィンドウ外のTCPセグメント)",
            FlowTableFull => "flow table full (フローテーブル満杯)",
            BlockedSource => "connection from a temporarily blocked scanner (スキャン元の一時遮断)",
            OtherDeny => "packet denied (パケット拒否)",
            FlowEvicted => "embryonic flows evicted (未確立フローの追い出し)",
            PolicyLoaded => "policy loaded (ポリシー読み込み)",
            ReloadFailed => "policy reload refused (ポリシー再読み込み失敗)",
            ExceptionExpired => "exception expired (例外の期限切れ)",
            ExceptionExpiring => "exception expires soon (例外の期限が近い)",
            ModeChanged => "mode changed (動作モード変更)",
            DaemonStart => "sekishod started (起動)",
            DaemonStop => "sekishod stopping (停止)",
            Suppressed => "similar alerts suppressed (類似警告の抑制)",
            AlertsDropped => "alerts lost: alert queue full (警告キュー溢れ)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_all() {
        for (i, k) in EventKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }

    #[test]
    fn msgids_are_unique_and_valid() {
        let mut seen = std::collections::HashSet::new();
        for k in EventKind::ALL {
            let m = k.msgid();
            assert!(!m.is_empty() && m.len() <= 32 && m.bytes().all(|b| (33..=126).contains(&b)), "{m}");
            assert!(seen.insert(m), "duplicate {m}");
        }
    }

    #[test]
    fn reason_codes_round_trip() {
        for k in EventKind::ALL {
            if let Some(code) = k.reason_code() {
                assert_eq!(EventKind::for_reason(code), Some(k));
                assert!(k.is_traffic());
            }
        }
        assert_eq!(EventKind::for_reason("allow:path:mail/1"), None);
        assert_eq!(EventKind::for_reason("allow:intra-zone"), None);
        assert_eq!(EventKind::for_reason("deny:something-new"), Some(EventKind::OtherDeny));
        assert!(!EventKind::PolicyLoaded.is_traffic());
        assert!(EventKind::OtherDeny.is_traffic());
    }
}
