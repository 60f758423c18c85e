//! Every message of the protocol, defined once. Field names are the public interface
//! (scripts read `sekishoctl --json`, which prints a reply's `data`): extend, never rename.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

// ---- handshake --------------------------------------------------------------------

/// The first line a client sends: `{"hello":{"proto":"sekisho-control","version":1}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloLine {
    /// The greeting.
    pub hello: Hello,
}

/// What the client speaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Always [`PROTO`](crate::PROTO).
    pub proto: String,
    /// The protocol version the client speaks ([`VERSION`](crate::VERSION)).
    pub version: u32,
    /// The client program, for the daemon's log (`"sekishoctl 0.1.0"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

impl Hello {
    /// The hello of this crate's version, naming `client`.
    pub fn new(client: &str) -> Hello {
        Hello { proto: crate::PROTO.into(), version: crate::VERSION, client: Some(client.into()) }
    }
}

/// The daemon's answer to a hello (the `data` of a reply with `id` null).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Always [`PROTO`](crate::PROTO).
    pub proto: String,
    /// The protocol version the daemon speaks.
    pub version: u32,
    /// The daemon's version.
    pub daemon: String,
    /// What this connection may do.
    pub role: Role,
    /// The peer's uid, as the daemon read it from the socket.
    pub uid: u32,
    /// The daemon's process id.
    pub pid: u32,
}

/// What a peer may do, decided from its credentials when it connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// `[control] read_group`: look only.
    Read,
    /// root and `[control] admin_group`: look and change.
    Admin,
}

impl Role {
    /// `"read"` or `"admin"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

// ---- requests ---------------------------------------------------------------------

/// One request: `{"id":7,"cmd":"status"}`, `{"id":8,"cmd":{"flows":{"zone":"lgwan"}}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Chosen by the client; every reply to this request repeats it.
    pub id: u64,
    /// What to do.
    pub cmd: Command,
}

/// The commands. Those for which [`Command::changes`] is true need [`Role::Admin`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    /// Version, uptime, mode, policy generation and source, ports and links → [`Status`].
    Status,
    /// Counters → [`Stats`].
    Stats,
    /// Live flows, filtered, sorted, limited → `[`[`Flow`]`]`.
    Flows(FlowQuery),
    /// Removes the flows a filter selects (at least one filter) → [`Killed`].
    FlowKill(FlowQuery),
    /// One connection against the live policy, and its flows → [`Explanation`].
    Explain(ExplainArgs),
    /// Validates a policy text without loading it → [`CheckReport`].
    Check(PolicyText),
    /// Loads a policy (the text sent, or the daemon's configuration file again) →
    /// [`ReloadReport`].
    Reload(ReloadArgs),
    /// Keeps the policy a `reload` with `confirm_s` applied → [`Confirmed`].
    Confirm,
    /// Goes back to the policy before the last change → [`RolledBack`].
    Rollback,
    /// Switches between enforce and monitor → [`ModeReport`].
    Mode(ModeArgs),
    /// Reads or sets the log filter → [`LogLevel`].
    LogLevel(LogLevelArgs),
    /// Recent events, or (`follow`) one reply per new event until the client leaves →
    /// `[`[`Event`]`]` or [`Event`] per reply.
    Events(EventsArgs),
    /// The change history kept on disk, newest last → `[`[`Change`]`]`.
    History(HistoryArgs),
}

impl Command {
    /// Every command's name as it appears on the wire (and as `sekishoctl`'s subcommand).
    pub const NAMES: [&'static str; 13] = [
        "status",
        "stats",
        "flows",
        "flow-kill",
        "explain",
        "check",
        "reload",
        "confirm",
        "rollback",
        "mode",
        "log-level",
        "events",
        "history",
    ];

    /// The command's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Status => "status",
            Command::Stats => "stats",
            Command::Flows(_) => "flows",
            Command::FlowKill(_) => "flow-kill",
            Command::Explain(_) => "explain",
            Command::Check(_) => "check",
            Command::Reload(_) => "reload",
            Command::Confirm => "confirm",
            Command::Rollback => "rollback",
            Command::Mode(_) => "mode",
            Command::LogLevel(_) => "log-level",
            Command::Events(_) => "events",
            Command::History(_) => "history",
        }
    }

    /// Whether the command changes something (and so needs [`Role::Admin`]). Reading the
    /// log level is a look; setting it is a change.
    pub fn changes(&self) -> bool {
        match self {
            Command::FlowKill(_)
            | Command::Reload(_)
            | Command::Confirm
            | Command::Rollback
            | Command::Mode(_) => true,
            Command::LogLevel(a) => a.level.is_some(),
            _ => false,
        }
    }
}

/// Which flows: every given filter must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowQuery {
    /// Either end in this zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Either end is this address, or in this CIDR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// Opened through this gateway port (its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// The responder's transport port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// `tcp`, `udp`, `icmp`, `icmpv6` or a protocol number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    /// Allowed by this path (`NAME`) or leg (`NAME/LEG`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Whose reason starts with this (`deny:`, `allow:rule:mgmt-ssh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Order (`flows` only; largest first, default bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<FlowSort>,
    /// How many to list (`flows` only; default 100, at most 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl FlowQuery {
    /// Whether no filter is given (`flow-kill` refuses that: it would cut everything).
    pub fn selects_all(&self) -> bool {
        self.zone.is_none()
            && self.addr.is_none()
            && self.port.is_none()
            && self.dport.is_none()
            && self.proto.is_none()
            && self.path.is_none()
            && self.reason.is_none()
    }
}

/// How `flows` orders its list: largest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlowSort {
    /// Bytes in both directions.
    #[default]
    Bytes,
    /// Packets in both directions.
    Packets,
    /// Oldest first.
    Age,
    /// Longest idle first.
    Idle,
}

/// `explain`: the same arguments as `sekishod explain`, without the file (the live
/// policy decides).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainArgs {
    /// `tcp`, `udp`, `icmp`, `icmpv6` or a protocol number.
    pub proto: String,
    /// The initiator: `ADDR` or `ADDR:PORT` (`[V6]:PORT`).
    pub src: String,
    /// The responder: `ADDR:PORT` (`ADDR` for protocols without ports).
    pub dst: String,
    /// Decide as of this time (a date or RFC 3339) instead of now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// A policy text to check, and where it came from (for messages).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyText {
    /// The TOML text (at most [`MAX_POLICY_TEXT`](crate::MAX_POLICY_TEXT) bytes).
    pub text: String,
    /// Its origin, e.g. the file's path on the client's side.
    pub origin: String,
}

/// `reload`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadArgs {
    /// The policy to load; none: the daemon reads its configuration file again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyText>,
    /// Commit-confirm: roll back by itself unless `confirm` arrives within this many
    /// seconds (1 – 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_s: Option<u32>,
}

/// `mode`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeArgs {
    /// `"enforce"` or `"monitor"`.
    pub mode: String,
}

/// `log-level`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLevelArgs {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`) or a filter
    /// (`info,sekishod=debug`); none: only read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
}

/// `events`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsArgs {
    /// Stream new events, one reply each, until the client disconnects.
    #[serde(default)]
    pub follow: bool,
    /// Without `follow`: how many recent events (default 100, at most 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `history`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryArgs {
    /// How many of the latest changes (default 100, at most 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

// ---- replies ----------------------------------------------------------------------

/// Every reply: `{"id":1,"ok":true,"data":{...}}` or
/// `{"id":1,"ok":false,"error":{"code":"permission-denied","message":"..."}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// The request's id; null for the hello and for errors about a line that had none.
    pub id: Option<u64>,
    /// Whether the request was carried out.
    pub ok: bool,
    /// The answer, when `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Why not, when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Reply {
    /// A successful reply carrying `data`.
    pub fn data(id: Option<u64>, data: impl Serialize) -> Reply {
        match serde_json::to_value(data) {
            Ok(v) => Reply { id, ok: true, data: Some(v), error: None },
            Err(e) => {
                Reply::error(id, ErrorBody::new(ErrorCode::Internal, format!("cannot encode the reply: {e}")))
            }
        }
    }

    /// A refusal.
    pub fn error(id: Option<u64>, error: ErrorBody) -> Reply {
        Reply { id, ok: false, data: None, error: Some(error) }
    }

    /// The reply as one line (without the newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"id":null,"ok":false,"error":{{"code":"internal","message":"cannot encode a reply: {e}"}}}}"#)
        })
    }
}

/// Why a request was not carried out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// The stable code.
    pub code: ErrorCode,
    /// What happened and what to do, for a person.
    pub message: String,
    /// More, for some codes: `config-invalid` carries `{"errors":[Problem...]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl ErrorBody {
    /// An error without details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody { code, message: message.into(), details: None }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.message, self.code.as_str())
    }
}

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// The stable error codes (docs/control-protocol.md explains each).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* #[serde(rename = $text)] $variant,)*
        }

        impl ErrorCode {
            /// Every code.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }
        }
    };
}

error_codes! {
    /// The line is not JSON.
    BadJson = "bad-json",
    /// JSON, but not a request this version knows (unknown command, missing or unknown
    /// field, wrong type); the message says which.
    BadRequest = "bad-request",
    /// An argument is wrong (an address that does not parse, an unknown zone...).
    BadArgument = "bad-argument",
    /// The line is longer than the limit; the connection is closed.
    LineTooLong = "line-too-long",
    /// The first line was not a hello.
    HelloRequired = "hello-required",
    /// The hello names another protocol or version.
    Version = "version",
    /// The peer may not do this (its uid and groups decided); logged with the uid.
    PermissionDenied = "permission-denied",
    /// Too many clients at once; try again.
    Busy = "busy",
    /// The client took too long to send a request (or to read a reply).
    Timeout = "timeout",
    /// The policy does not load; `details.errors` lists every problem.
    ConfigInvalid = "config-invalid",
    /// The policy changes something fixed at start (ports, `[flow]`, the socket).
    RestartNeeded = "restart-needed",
    /// A `reload --confirm` waits for `confirm` or `rollback` first.
    ConfirmPending = "confirm-pending",
    /// `confirm` with no `reload --confirm` waiting.
    NothingToConfirm = "nothing-to-confirm",
    /// `rollback` with no earlier policy to go back to.
    NothingToRollBack = "nothing-to-roll-back",
    /// The reply would be larger than the limit; ask for less.
    TooLarge = "too-large",
    /// The daemon cannot do it right now (it is stopping, a file is unreadable...).
    Unavailable = "unavailable",
    /// A defect of sekisho; the message says what; please report it.
    Internal = "internal",
}

/// [`Command::Status`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's version.
    pub version: String,
    /// Its process id.
    pub pid: u32,
    /// When it started (RFC 3339, Japan time).
    pub started: String,
    /// Seconds since it started.
    pub uptime_s: u64,
    /// `"enforce"` or `"monitor"`.
    pub mode: String,
    /// The policy generation in force.
    pub generation: u32,
    /// Every port forwards (the workers run).
    pub ready: bool,
    /// The policy in force and where it came from.
    pub config: ConfigInfo,
    /// A `reload --confirm` waiting for `confirm`.
    pub pending: Option<Pending>,
    /// The last rollback, automatic or asked for.
    pub last_rollback: Option<Rollback>,
    /// The ports, their interfaces and links.
    pub ports: Vec<PortStatus>,
    /// The control socket.
    pub control: ControlInfo,
}

/// The policy in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigInfo {
    /// The configuration file the daemon was started with (what `reload` without a
    /// policy and SIGHUP read).
    pub path: String,
    /// Where the policy in force came from (that file, or what `reload` sent).
    pub origin: String,
    /// SHA-256 of the policy text in force (hex).
    pub sha256: String,
    /// SHA-256 of the configuration file as it is on disk now (null: unreadable): when it
    /// differs from `sha256`, the file is not what runs.
    pub file_sha256: Option<String>,
    /// When the policy in force was loaded (RFC 3339, Japan time).
    pub loaded_at: String,
}

/// A `reload --confirm` waiting for `confirm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The generation on trial.
    pub generation: u32,
    /// The generation it rolls back to unless confirmed.
    pub rollback_to: u32,
    /// When it rolls back (RFC 3339, Japan time).
    pub deadline: String,
    /// Seconds left.
    pub remaining_s: u64,
    /// Who reloaded.
    pub uid: u32,
}

/// A rollback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    /// When (RFC 3339, Japan time).
    pub at: String,
    /// The generation rolled back from.
    pub from_generation: u32,
    /// The generation now in force (the previous policy, swapped in again).
    pub generation: u32,
    /// True when no `confirm` came in time; false when an operator asked.
    pub automatic: bool,
    /// Who asked (null when automatic).
    pub uid: Option<u32>,
}

/// One port in [`Status`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    /// The port's name.
    pub name: String,
    /// Its zone.
    pub zone: String,
    /// Toward the segment's hosts.
    pub inside: InterfaceStatus,
    /// Toward the core router.
    pub outside: InterfaceStatus,
}

/// One interface in [`PortStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    /// The interface name.
    pub interface: String,
    /// The kernel's operational state (`up`, `down`, `lowerlayerdown`, ...; `missing`).
    pub link: String,
    /// Its MTU.
    pub mtu: u64,
    /// Milliseconds since its worker last went round its loop (a stuck worker grows).
    pub heartbeat_age_ms: u64,
}

/// The control socket in [`Status`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlInfo {
    /// Its path.
    pub socket: String,
    /// `[control] admin_group`.
    pub admin_group: Option<String>,
    /// `[control] read_group`.
    pub read_group: Option<String>,
    /// Clients connected now.
    pub clients: u64,
}

/// [`Command::Stats`]. What each number counts is in docs/control-protocol.md.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// `"enforce"` or `"monitor"`.
    pub mode: String,
    /// The policy generation in force.
    pub generation: u32,
    /// Frames per port and the side they arrived on.
    pub ports: Vec<PortStats>,
    /// Frames per reason code (every code, also those still at 0).
    pub reasons: BTreeMap<String, u64>,
    /// Live flows by initiator zone → responder zone.
    pub zone_pairs: Vec<ZonePairTraffic>,
    /// Live flows allowed by each path leg.
    pub legs: Vec<LegTraffic>,
    /// The flow table.
    pub flows: FlowTableStats,
    /// The verdict event ring that feeds `events`.
    pub events: EventStats,
    /// Alerts to syslog and the event file (docs/alerts.md).
    #[serde(default)]
    pub alerts: AlertStats,
    /// Every path leg's counters since the policy in force was loaded: connections,
    /// what inspection identified, what it cut.
    #[serde(default)]
    pub leg_counters: Vec<LegCounters>,
    /// The application inspection stage.
    #[serde(default)]
    pub inspection: InspectionStats,
    /// The internet-zone monitor (scans and floods).
    #[serde(default)]
    pub monitor: MonitorStats,
}

/// One path leg's counters since the policy in force was loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegCounters {
    /// The path.
    pub path: String,
    /// Its method (`mail-text`, `local-breakout`, ...).
    pub method: String,
    /// The leg, numbered from 1.
    pub leg: u16,
    /// Connections opened.
    pub flows: u64,
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded.
    pub bytes: u64,
    /// Connections cut as another application (`deny:app-mismatch`).
    pub mismatches: u64,
    /// Connections cut as not sanitised (`deny:not-sanitized`).
    pub not_sanitized: u64,
    /// Connections by what inspection identified (`smtp`, `tls`, `http-connect`,
    /// `dns-tunnel`, `unknown`, ...); only the applications seen.
    pub apps: BTreeMap<String, u64>,
}

/// The application inspection stage's counters since start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectionStats {
    /// Flows being inspected now (each holds a state).
    pub active: u64,
    /// The bound on them (`[inspect] max_flows`).
    pub capacity: u64,
    /// States created.
    pub started: u64,
    /// States freed once their verdict was kept.
    pub released: u64,
    /// Segments dropped because the state table was full.
    pub table_full: u64,
    /// Flows cut because their state was lost.
    pub lost: u64,
    /// Segments dropped because another worker held the flow's state.
    pub busy: u64,
    /// Segments dropped because they began beyond the next expected byte.
    pub ahead: u64,
    /// Segments held back until the receiver acknowledged what was inspected.
    pub window_full: u64,
    /// Inspected segments dropped for a wrong checksum.
    pub bad_checksum: u64,
    /// Fragments (TCP or UDP) of inspected flows refused.
    pub fragments: u64,
    /// Flows cut because a retransmission differed from what was inspected.
    pub retransmission_differs: u64,
    /// Flows whose check passed.
    pub identified: u64,
    /// Flows cut as another application.
    pub mismatches: u64,
    /// Flows cut as not sanitised.
    pub not_sanitized: u64,
    /// DNS messages with tunnelling signs.
    pub dns_suspicious: u64,
}

/// The internet-zone monitor's counters since start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorStats {
    /// Scans and floods detected (end-of-window summaries included).
    pub detections: u64,
    /// Detections lost because nobody took them in time.
    pub lost: u64,
    /// Tracked sources or destinations replaced while their window was running.
    pub evicted: u64,
    /// New connections refused from temporarily blocked sources.
    pub blocked: u64,
}

/// Frames that arrived on the two interfaces of one port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStats {
    /// The port's name.
    pub name: String,
    /// Its zone.
    pub zone: String,
    /// Frames from the segment's hosts.
    pub inside: SideStats,
    /// Frames from the core router.
    pub outside: SideStats,
}

/// Frames that arrived on one interface and what became of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideStats {
    /// The interface.
    pub interface: String,
    /// Frames received.
    pub packets: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Frames forwarded to the other interface.
    pub forwarded: u64,
    /// Frames dropped.
    pub dropped: u64,
    /// Frames monitor mode forwarded that enforce mode would drop.
    pub monitored: u64,
    /// Frames cut short by the socket (dropped, never forwarded).
    pub truncated: u64,
    /// Allowed frames whose send failed.
    pub send_errors: u64,
    /// Read errors other than timeouts.
    pub read_errors: u64,
    /// Frames the kernel dropped because the socket's receive buffer was full.
    #[serde(default)]
    pub kernel_drops: u64,
    /// Frames read from the interface's socket that did not come from it: dropped,
    /// never judged.
    #[serde(default)]
    pub foreign: u64,
}

/// Live flows between two zones (initiator → responder; no zone: `"-"`), and their
/// packets and bytes so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZonePairTraffic {
    /// The initiator's zone.
    pub from: String,
    /// The responder's zone.
    pub to: String,
    /// Live flows (a connection that crosses two ports is two flows).
    pub flows: u64,
    /// Their packets, both directions.
    pub packets: u64,
    /// Their bytes, both directions.
    pub bytes: u64,
}

/// Live flows a path leg allowed, and their packets and bytes so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegTraffic {
    /// The path.
    pub path: String,
    /// The leg, numbered from 1.
    pub leg: u16,
    /// Live flows (a connection that crosses two ports is two flows).
    pub flows: u64,
    /// Their packets, both directions.
    pub packets: u64,
    /// Their bytes, both directions.
    pub bytes: u64,
}

/// The flow table's counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowTableStats {
    /// Flows in the table now.
    pub active: u64,
    /// Its hard bound (`[flow] capacity`).
    pub capacity: u64,
    /// Flows inserted since start.
    pub inserted: u64,
    /// Embryonic or closed flows evicted to make room.
    pub evicted: u64,
    /// Flows removed after their idle timeout.
    pub expired: u64,
    /// New flows refused for want of room (`deny:flow-table-full`).
    pub refused: u64,
}

/// The verdict event ring.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventStats {
    /// Dropped (or monitored) frames the workers recorded.
    pub recorded: u64,
    /// Of those, overwritten before the control plane read them.
    pub lost: u64,
}

/// The alerts' counters since start ([`Stats::alerts`]; docs/alerts.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertStats {
    /// Alerts that passed flood control and were queued.
    pub passed: u64,
    /// Alerts flood control held back (reported in `SUPPRESSED` summaries, or about to be).
    pub suppressed: u64,
    /// Alerts lost because the alert queue was full (reported as `ALERTS_DROPPED`).
    pub queue_dropped: u64,
    /// Notices (start, reload, ...) lost because their queue was full.
    pub notices_dropped: u64,
    /// Events produced: alerts, notices and summaries.
    pub events: u64,
    /// Of those, summaries (`SUPPRESSED`, `ALERTS_DROPPED`).
    pub summaries: u64,
    /// Lines written to `[alert] event_file`.
    pub event_file_written: u64,
    /// Failed writes, flushes or reopens of the event file.
    pub event_file_errors: u64,
    /// Reopens of the event file (SIGUSR1).
    pub event_file_reopens: u64,
    /// Per `[[alert.target]]`, in the file's order.
    pub targets: Vec<AlertTargetStats>,
}

/// One syslog collector's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertTargetStats {
    /// Its `url`.
    pub url: String,
    /// Messages written to the socket.
    pub sent: u64,
    /// Failed writes (UDP: the message is lost; TCP and unix: it is kept and sent again).
    pub send_errors: u64,
    /// Messages lost: the target's buffer was full, or still unsent at shutdown.
    pub dropped: u64,
    /// Messages below the target's `min_severity`, not sent.
    pub filtered: u64,
    /// Connections made (UDP and unix: sockets opened).
    pub connects: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// Messages waiting in its buffer now.
    pub buffered: u64,
}

/// One live flow ([`Command::Flows`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// `tcp`, `udp`, `icmp`, `icmpv6`, or the protocol number.
    pub proto: String,
    /// The initiator's address.
    pub src: String,
    /// The responder's address.
    pub dst: String,
    /// The initiator's port (ICMP echo: the identifier).
    pub sport: u16,
    /// The responder's port.
    pub dport: u16,
    /// `syn-sent`, `established`, `replied`, ...
    pub state: String,
    /// The reason of its cached verdict (`allow:path:mail-textify/1`, ...).
    pub reason: String,
    /// Packets, both directions.
    pub packets: u64,
    /// Bytes, both directions.
    pub bytes: u64,
    /// The gateway port it crosses.
    pub port: String,
    /// The side its first packet arrived on.
    pub side: String,
    /// The initiator's zone.
    pub src_zone: Option<String>,
    /// The responder's zone.
    pub dst_zone: Option<String>,
    /// Seconds since its first packet.
    pub age_s: u64,
    /// Seconds since its last packet.
    pub idle_s: u64,
}

/// [`Command::FlowKill`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Killed {
    /// Flows removed.
    pub killed: u64,
}

/// A zone in an [`Explanation`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneRef {
    /// Its name.
    pub name: String,
    /// Its kind (`lgwan`, ...).
    pub kind: String,
    /// The kind's Japanese name (`LGWAN接続系`).
    pub kind_ja: String,
}

/// An exception in an [`Explanation`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionRef {
    /// Its name.
    pub name: String,
    /// Its approval record.
    pub approval: String,
    /// Its expiry as written (`2027-03-31`), if any.
    pub expires: Option<String>,
}

/// An exception that allowed the connection until it expired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LapsedRef {
    /// Its name.
    pub name: String,
    /// Its approval record.
    pub approval: String,
    /// When it expired (`2027-03-31`).
    pub expired: String,
}

/// The decision for one connection (`sekishod explain --json` and [`Command::Explain`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The protocol as asked.
    pub proto: String,
    /// The initiator's address.
    pub src: String,
    /// The initiator's port, when given.
    #[serde(default)]
    pub sport: Option<u16>,
    /// The responder's address.
    pub dst: String,
    /// The responder's port, when the protocol has ports.
    pub dport: Option<u16>,
    /// The initiator's zone.
    pub initiator_zone: Option<ZoneRef>,
    /// The responder's zone.
    pub responder_zone: Option<ZoneRef>,
    /// `"allow"` or `"deny"`.
    pub verdict: String,
    /// The full reason (`allow:path:mail-textify/1`, `deny:unsanitized-crossing`).
    pub reason: String,
    /// What decided, in plain words.
    pub matched: String,
    /// When the allowing exception stops matching (Unix seconds).
    pub valid_until_unix: Option<u64>,
    /// The exception that allows it.
    pub exception: Option<ExceptionRef>,
    /// The exception that allowed it until it expired.
    pub lapsed_exception: Option<LapsedRef>,
    /// The time decided at (RFC 3339, Japan time).
    pub at: String,
    /// Live flows of this connection (one per port it crosses); only from the daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<Vec<Flow>>,
}

impl Explanation {
    /// Whether the verdict is allow.
    pub fn allowed(&self) -> bool {
        self.verdict == "allow"
    }
}

/// One problem found in a policy (an `E-…` error or a `W-…` warning).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The stable code (`E-RULE-CROSSING`, `W-SERVICE-UNUSED`).
    pub code: String,
    /// The item (`rule "web"`).
    pub item: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} [{}]", self.item, self.message, self.code)
    }
}

/// [`Command::Check`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The origin sent.
    pub origin: String,
    /// Whether it loads.
    pub valid: bool,
    /// Every error (empty when it loads).
    pub errors: Vec<Problem>,
    /// Warnings of a policy that loads.
    pub warnings: Vec<Problem>,
    /// `5 zones, 4 ports, ...` when it loads.
    pub summary: Option<String>,
    /// Why `reload` would refuse it although it loads (ports, `[flow]` or the socket
    /// changed: a restart is needed).
    pub restart_needed: Option<String>,
    /// What it would change against the policy in force.
    pub changes: Option<Changes>,
    /// Live flows it would cut now.
    pub cut: Option<Cut>,
}

/// Live flows a change cut (or would cut), by the reason that drops them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    /// Flows cut.
    pub total: u64,
    /// By reason code.
    pub by_reason: BTreeMap<String, u64>,
}

/// [`Command::Reload`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// The generation now in force.
    pub generation: u32,
    /// The generation before.
    pub previous_generation: u32,
    /// Where the policy came from.
    pub origin: String,
    /// SHA-256 of its text (hex).
    pub sha256: String,
    /// What changed.
    pub changes: Changes,
    /// Live flows the new policy cuts (at their next packet), by reason.
    pub cut: Cut,
    /// Its warnings (it loaded regardless).
    pub warnings: Vec<Problem>,
    /// With `confirm_s`: when it rolls back unless confirmed (RFC 3339, Japan time).
    pub confirm_by: Option<String>,
}

/// What a new policy changes, by kind of item, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// `[daemon] mode`, when it changes.
    pub mode: Option<ModeChange>,
    /// Zones.
    pub zones: ItemChanges,
    /// Ports (name, zone, interfaces fixed; VLANs and routers may change).
    pub ports: ItemChanges,
    /// Services.
    pub services: ItemChanges,
    /// Paths (method).
    pub paths: ItemChanges,
    /// Path legs, as `PATH/LEG`.
    pub legs: ItemChanges,
    /// Exceptions.
    pub exceptions: ItemChanges,
    /// Rules.
    pub rules: ItemChanges,
    /// Other sections that changed (`[control]`, `[link]`, `[alert]`).
    pub sections: Vec<String>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.mode.is_none() && self.sections.is_empty() && self.items().iter().all(|(_, c)| c.is_empty())
    }

    /// The item kinds with their changes, in a fixed order.
    pub fn items(&self) -> [(&'static str, &ItemChanges); 7] {
        [
            ("zones", &self.zones),
            ("ports", &self.ports),
            ("services", &self.services),
            ("paths", &self.paths),
            ("legs", &self.legs),
            ("exceptions", &self.exceptions),
            ("rules", &self.rules),
        ]
    }
}

/// A mode change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeChange {
    /// Before.
    pub from: String,
    /// After.
    pub to: String,
}

/// Names of items added, removed and changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemChanges {
    /// New.
    pub added: Vec<String>,
    /// Gone.
    pub removed: Vec<String>,
    /// Same name, different content.
    pub changed: Vec<String>,
}

impl ItemChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// [`Command::Confirm`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmed {
    /// The generation kept.
    pub generation: u32,
}

/// [`Command::Rollback`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledBack {
    /// The generation now in force (the previous policy, swapped in again).
    pub generation: u32,
    /// The generation rolled back from.
    pub from_generation: u32,
    /// What going back changed.
    pub changes: Changes,
    /// Live flows going back cuts.
    pub cut: Cut,
}

/// [`Command::Mode`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeReport {
    /// The mode now.
    pub mode: String,
    /// The mode before.
    pub previous: String,
    /// The generation now in force.
    pub generation: u32,
    /// Live flows the switch to enforce cuts.
    pub cut: Cut,
}

/// [`Command::LogLevel`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLevel {
    /// The log filter in force.
    pub level: String,
}

/// One event of [`Command::Events`]: a verdict on a dropped (or monitored) frame, an
/// operator's change, or a note that events were lost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Increases by one per event the daemon published; a gap is announced by a `lost`
    /// event.
    pub seq: u64,
    /// When (RFC 3339, Japan time).
    pub at: String,
    /// What.
    #[serde(flatten)]
    pub body: EventBody,
}

/// What an [`Event`] reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EventBody {
    /// A frame enforce mode dropped (or monitor mode forwarded but would drop).
    Verdict(VerdictEvent),
    /// An operator's change (also in `history`).
    Change {
        /// The change.
        change: Change,
    },
    /// Events this reader did not get (the daemon never waits for a reader).
    Lost {
        /// How many.
        count: u64,
    },
}

/// A verdict on one frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictEvent {
    /// The reason code (`deny:spoofed-source`).
    pub reason: String,
    /// True when monitor mode forwarded it.
    pub monitored: bool,
    /// The port it arrived on.
    pub port: String,
    /// The side it arrived on.
    pub side: String,
    /// IP protocol (null for non-IP frames).
    pub proto: Option<String>,
    /// Source address.
    pub src: Option<String>,
    /// Destination address.
    pub dst: Option<String>,
    /// Source port.
    pub sport: Option<u16>,
    /// Destination port.
    pub dport: Option<u16>,
}

/// One change by an operator (or by the daemon itself: an automatic rollback), as the
/// history on disk keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// When (RFC 3339, Japan time).
    pub at: String,
    /// `reload`, `confirm`, `rollback`, `mode`, `flow-kill`, `log-level`, `sighup`,
    /// `auto-rollback`, `start`.
    pub action: String,
    /// Who (null: the daemon itself, or a signal).
    pub uid: Option<u32>,
    /// Their process id.
    pub pid: Option<u32>,
    /// Whether it was carried out.
    pub ok: bool,
    /// What changed, or why not.
    pub detail: String,
    /// The generation in force after it.
    pub generation: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms() {
        let r: Request = serde_json::from_str(r#"{"id":1,"cmd":"status"}"#).unwrap();
        assert_eq!(r.cmd, Command::Status);
        let r: Request =
            serde_json::from_str(r#"{"id":2,"cmd":{"flows":{"zone":"lgwan","limit":5}}}"#).unwrap();
        assert_eq!(r.cmd.name(), "flows");
        assert!(serde_json::from_str::<Request>(r#"{"id":2,"cmd":{"flows":{"zoen":"lgwan"}}}"#).is_err());
        let line = serde_json::to_string(&Request { id: 3, cmd: Command::Confirm }).unwrap();
        assert_eq!(line, r#"{"id":3,"cmd":"confirm"}"#);
        let e = Event { seq: 4, at: "t".into(), body: EventBody::Lost { count: 9 } };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, r#"{"seq":4,"at":"t","kind":"lost","count":9}"#);
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e);
        for (i, n) in Command::NAMES.iter().enumerate() {
            assert!(Command::NAMES[..i].iter().all(|m| m != n), "{n} twice");
        }
    }

    #[test]
    fn error_codes_are_kebab_case_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(c.as_str().chars().all(|x| x.is_ascii_lowercase() || x == '-'));
            assert!(seen.insert(c.as_str()));
            assert_eq!(serde_json::to_string(c).unwrap(), format!("\"{}\"", c.as_str()));
        }
    }
}
