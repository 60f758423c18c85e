//! The alert configuration (`[alert]`, `[[alert.target]]`): where syslog alerts go.
//!
//! Pure like the rest of the crate: the text is parsed and validated here; sockets are
//! opened by `sekisho-alert`. Collector addresses are IP literals only — a gateway that
//! enforces network separation must not depend on DNS to report a violation.
//!
//! ```toml
//! [alert]
//! event_file = "/var/log/sekisho/events.jsonl"   # optional local JSON-lines copy
//!
//! [[alert.target]]
//! url = "udp://127.0.0.1:514"                     # udp://HOST:PORT | tcp://HOST:PORT | unix:/PATH
//! format = "rfc5424"                              # rfc5424 (default) | rfc3164
//! facility = "local4"                             # default local4
//! min_severity = "notice"                         # default notice
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use config::Value;
use serde::Deserialize;

use crate::error::ErrorCode;
use crate::load::{parse_choice, Loader};
use crate::raw::{RawAlert, Text};

/// At most this many `[[alert.target]]` tables.
pub const MAX_ALERT_TARGETS: usize = 16;

/// Longest accepted unix socket path, in bytes (`sun_path` holds 108 with the NUL).
const MAX_UNIX_PATH: usize = 107;

/// Longest accepted `event_file` path, in bytes.
const MAX_EVENT_FILE_PATH: usize = 4096;

/// Syslog severity (RFC 5424 section 6.2.1), most severe first.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// 0: system is unusable.
    Emerg = 0,
    /// 1: action must be taken immediately.
    Alert = 1,
    /// 2: critical conditions.
    Crit = 2,
    /// 3: error conditions.
    Err = 3,
    /// 4: warning conditions.
    Warning = 4,
    /// 5: normal but significant condition.
    Notice = 5,
    /// 6: informational messages.
    Info = 6,
    /// 7: debug-level messages.
    Debug = 7,
}

impl Severity {
    /// Every severity, most severe first.
    pub const ALL: [Severity; 8] = [
        Severity::Emerg,
        Severity::Alert,
        Severity::Crit,
        Severity::Err,
        Severity::Warning,
        Severity::Notice,
        Severity::Info,
        Severity::Debug,
    ];

    /// The configuration (and syslog) spelling: `"emerg"` … `"debug"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Emerg => "emerg",
            Severity::Alert => "alert",
            Severity::Crit => "crit",
            Severity::Err => "err",
            Severity::Warning => "warning",
            Severity::Notice => "notice",
            Severity::Info => "info",
            Severity::Debug => "debug",
        }
    }

    /// The numeric code, 0 (emerg) to 7 (debug).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Whether this severity is at least as severe as `min` (`crit` passes `notice`).
    pub fn at_least(self, min: Severity) -> bool {
        self.code() <= min.code()
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Syslog facility (RFC 5424 section 6.2.1), with the names rsyslog uses.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the variants are the syslog names, listed in `as_str`
pub enum Facility {
    Kern = 0,
    User = 1,
    Mail = 2,
    Daemon = 3,
    Auth = 4,
    Syslog = 5,
    Lpr = 6,
    News = 7,
    Uucp = 8,
    Cron = 9,
    Authpriv = 10,
    Ftp = 11,
    Ntp = 12,
    Security = 13,
    Console = 14,
    Clock = 15,
    Local0 = 16,
    Local1 = 17,
    Local2 = 18,
    Local3 = 19,
    Local4 = 20,
    Local5 = 21,
    Local6 = 22,
    Local7 = 23,
}

impl Facility {
    /// Every facility, by code.
    pub const ALL: [Facility; 24] = [
        Facility::Kern,
        Facility::User,
        Facility::Mail,
        Facility::Daemon,
        Facility::Auth,
        Facility::Syslog,
        Facility::Lpr,
        Facility::News,
        Facility::Uucp,
        Facility::Cron,
        Facility::Authpriv,
        Facility::Ftp,
        Facility::Ntp,
        Facility::Security,
        Facility::Console,
        Facility::Clock,
        Facility::Local0,
        Facility::Local1,
        Facility::Local2,
        Facility::Local3,
        Facility::Local4,
        Facility::Local5,
        Facility::Local6,
        Facility::Local7,
    ];

    /// The configuration spelling: `"kern"` … `"local7"`.
    pub fn as_str(self) -> &'static str {
        const NAMES: [&str; 24] = [
            "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
            "ftp", "ntp", "security", "console", "clock", "local0", "local1", "local2", "local3", "local4",
            "local5", "local6", "local7",
        ];
        NAMES[self.code() as usize]
    }

    /// The numeric code, 0 (kern) to 23 (local7).
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Facility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The message format a collector expects.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// RFC 5424 with structured data under `sekisho@32473` (the default).
    Rfc5424,
    /// The old BSD format (RFC 3164) for collectors that predate RFC 5424; the
    /// structured data becomes `key=value` pairs in the message.
    Rfc3164,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 2] = [Format::Rfc5424, Format::Rfc3164];

    /// The configuration spelling (`"rfc5424"`, `"rfc3164"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Rfc5424 => "rfc5424",
            Format::Rfc3164 => "rfc3164",
        }
    }
}

/// Where a target's messages go.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TargetUrl {
    /// `udp://HOST:PORT`: one datagram per message (RFC 5426).
    Udp(SocketAddr),
    /// `tcp://HOST:PORT`: a stream with RFC 6587 octet counting.
    Tcp(SocketAddr),
    /// `unix:/PATH`: a unix datagram socket such as `/dev/log`.
    Unix(PathBuf),
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetUrl::Udp(a) => write!(f, "udp://{a}"),
            TargetUrl::Tcp(a) => write!(f, "tcp://{a}"),
            TargetUrl::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl TargetUrl {
    /// Parse `udp://HOST:PORT`, `tcp://HOST:PORT` or `unix:/PATH`. HOST is an IPv4
    /// address or an IPv6 address in brackets; names are not resolved. The error
    /// says what to write.
    pub fn parse(text: &str) -> Result<TargetUrl, String> {
        let example = "write udp://127.0.0.1:514, tcp://[2001:db8::1]:6514 or unix:/dev/log";
        if let Some(rest) = text.strip_prefix("unix:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(format!("the socket path must be absolute ({example})"));
            }
            if path.len() > MAX_UNIX_PATH || path.contains('\0') {
                return Err(format!("the socket path must be at most {MAX_UNIX_PATH} bytes without NUL"));
            }
            return Ok(TargetUrl::Unix(PathBuf::from(path)));
        }
        let (scheme, rest) = match text.split_once("://") {
            Some((s, r)) if s == "udp" || s == "tcp" => (s, r),
            Some((s, _)) => return Err(format!("unknown scheme `{s}`; {example}")),
            None => return Err(format!("not a target URL; {example}")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let addr: SocketAddr = match rest.parse() {
            Ok(a) => a,
            Err(_) => {
                if rest.parse::<std::net::Ipv6Addr>().is_ok() {
                    return Err(format!(
                        "write an IPv6 address in brackets, followed by the port, e.g. \
                         {scheme}://[2001:db8::1]:514"
                    ));
                }
                let host = match rest.rsplit_once(':') {
                    Some((h, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => h,
                    _ => {
                        if rest.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
                            return Err(format!(
                                "the port is missing; {scheme}://HOST:PORT, e.g. {scheme}://127.0.0.1:514"
                            ));
                        }
                        rest
                    }
                };
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                return Err(if bare.parse::<IpAddr>().is_ok() {
                    format!("the port must be a number from 1 to 65535; {example}")
                } else if bare.contains(':') && !host.starts_with('[') {
                    format!("write an IPv6 address in brackets, e.g. {scheme}://[2001:db8::1]:514")
                } else {
                    format!(
                        "HOST {host:?} is not an IP address; names are not resolved (alerts must \
                         not depend on DNS), so {example}"
                    )
                });
            }
        };
        if addr.port() == 0 {
            return Err(format!("the port must be a number from 1 to 65535; {example}"));
        }
        if addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return Err(format!("{} cannot receive syslog; name the collector's own address", addr.ip()));
        }
        Ok(if scheme == "udp" { TargetUrl::Udp(addr) } else { TargetUrl::Tcp(addr) })
    }
}

/// One `[[alert.target]]`: a collector, with its own format, facility and threshold.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AlertTarget {
    /// Where to send.
    pub url: TargetUrl,
    /// Which message format.
    pub format: Format,
    /// The facility in every message's PRI.
    pub facility: Facility,
    /// Messages less severe than this are not sent to this target.
    pub min_severity: Severity,
}

impl AlertTarget {
    /// The default format (`rfc5424`).
    pub const DEFAULT_FORMAT: Format = Format::Rfc5424;
    /// The default facility (`local4`).
    pub const DEFAULT_FACILITY: Facility = Facility::Local4;
    /// The default threshold (`notice`).
    pub const DEFAULT_MIN_SEVERITY: Severity = Severity::Notice;

    /// A target with the default format, facility and threshold.
    pub fn new(url: TargetUrl) -> AlertTarget {
        AlertTarget {
            url,
            format: Self::DEFAULT_FORMAT,
            facility: Self::DEFAULT_FACILITY,
            min_severity: Self::DEFAULT_MIN_SEVERITY,
        }
    }
}

/// The validated `[alert]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AlertSettings {
    pub targets: Vec<AlertTarget>,
    pub event_file: Option<PathBuf>,
}

/// `[[alert.target]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    pub url: Text,
    pub format: Option<Text>,
    pub facility: Option<Text>,
    pub min_severity: Option<Text>,
}

impl Loader {
    /// Validate `[alert]`; problems go to the loader's error list.
    pub(crate) fn alert(&mut self, raw: Option<RawAlert>) -> AlertSettings {
        let mut out = AlertSettings::default();
        let Some(raw) = raw else {
            return out;
        };
        if let Some(Text(path)) = raw.event_file {
            match check_event_file(&path) {
                Ok(p) => out.event_file = Some(p),
                Err(e) => self.err(ErrorCode::AlertEventFile, "[alert]", format!("event_file {path:?}: {e}")),
            }
        }
        let targets: Vec<Value> = raw.target.unwrap_or_default();
        if targets.len() > MAX_ALERT_TARGETS {
            self.err(
                ErrorCode::TooMany,
                "[alert]",
                format!(
                    "{} [[alert.target]] tables; at most {MAX_ALERT_TARGETS} are supported (a local \
                     relay such as rsyslog can fan out further)",
                    targets.len()
                ),
            );
            return out;
        }
        let mut numbers = Vec::new();
        for (i, v) in targets.into_iter().enumerate() {
            let label = format!("alert.target {}", i + 1);
            if let Some(t) = self.alert_target(&label, v) {
                if let Some(j) = out.targets.iter().position(|o| o.url == t.url) {
                    let first = numbers[j];
                    self.err(
                        ErrorCode::AlertTargetTwice,
                        &label,
                        format!(
                            "url \"{}\" is already alert.target {first}; list each collector once",
                            t.url
                        ),
                    );
                } else {
                    out.targets.push(t);
                    numbers.push(i + 1);
                }
            }
        }
        out
    }

    fn alert_target(&mut self, label: &str, v: Value) -> Option<AlertTarget> {
        let raw = self.item::<RawTarget>(label, v, "an [[alert.target]]")?;
        let mut problems = Vec::new();
        let url =
            TargetUrl::parse(&raw.url.0).map_err(|e| problems.push(format!("url {:?}: {e}", raw.url.0)));
        let p = &mut problems;
        let format =
            choose(p, raw.format, "format", &Format::ALL, Format::as_str, AlertTarget::DEFAULT_FORMAT);
        let facility = choose(
            p,
            raw.facility,
            "facility",
            &Facility::ALL,
            Facility::as_str,
            AlertTarget::DEFAULT_FACILITY,
        );
        let min_severity = choose(
            p,
            raw.min_severity,
            "min_severity",
            &Severity::ALL,
            Severity::as_str,
            AlertTarget::DEFAULT_MIN_SEVERITY,
        );
        for msg in &problems {
            self.err(ErrorCode::AlertTarget, label, msg.clone());
        }
        match url {
            Ok(url) if problems.is_empty() => Some(AlertTarget { url, format, facility, min_severity }),
            _ => None,
        }
    }
}

/// The value of an optional choice key, or its default; a problem is noted.
fn choose<T: Copy>(
    problems: &mut Vec<String>,
    text: Option<Text>,
    key: &str,
    all: &[T],
    name: fn(T) -> &'static str,
    default: T,
) -> T {
    match text {
        None => default,
        Some(Text(t)) => parse_choice(&t, all, name).unwrap_or_else(|e| {
            problems.push(format!("unknown {key} {e}"));
            default
        }),
    }
}

fn check_event_file(path: &str) -> Result<PathBuf, String> {
    if !path.starts_with('/') {
        return Err("must be an absolute path, e.g. \"/var/log/sekisho/events.jsonl\"".to_owned());
    }
    if path.ends_with('/') {
        return Err("names a directory; name the file, e.g. \"/var/log/sekisho/events.jsonl\"".to_owned());
    }
    if path.len() > MAX_EVENT_FILE_PATH || path.chars().any(char::is_control) {
        return Err(format!("must be at most {MAX_EVENT_FILE_PATH} bytes without control characters"));
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            TargetUrl::parse("udp://127.0.0.1:514").unwrap(),
            TargetUrl::Udp("127.0.0.1:514".parse().unwrap())
        );
        assert_eq!(
            TargetUrl::parse("tcp://[::1]:6514").unwrap(),
            TargetUrl::Tcp("[::1]:6514".parse().unwrap())
        );
        assert_eq!(TargetUrl::parse("unix:/dev/log").unwrap(), TargetUrl::Unix("/dev/log".into()));
        assert_eq!(TargetUrl::parse("unix:///dev/log").unwrap(), TargetUrl::Unix("/dev/log".into()));
        for (bad, needle) in [
            ("udp://localhost:514", "not an IP address"),
            ("udp://127.0.0.1", "port is missing"),
            ("udp://[::1]", "port is missing"),
            ("udp://127.0.0.1:0", "1 to 65535"),
            ("udp://127.0.0.1:70000", "1 to 65535"),
            ("udp://::1:514", "brackets"),
            ("http://127.0.0.1:514", "unknown scheme `http`"),
            ("127.0.0.1:514", "not a target URL"),
            ("unix:dev/log", "absolute"),
            ("udp://0.0.0.0:514", "cannot receive"),
        ] {
            let e = TargetUrl::parse(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        for u in ["udp://127.0.0.1:514", "tcp://[2001:db8::1]:6514", "unix:/run/x.sock"] {
            assert_eq!(TargetUrl::parse(u).unwrap().to_string(), u);
        }
    }

    #[test]
    fn names_and_codes() {
        for (i, s) in Severity::ALL.iter().enumerate() {
            assert_eq!(s.code() as usize, i);
        }
        for (i, f) in Facility::ALL.iter().enumerate() {
            assert_eq!(f.code() as usize, i);
        }
        assert_eq!(Facility::Local4.as_str(), "local4");
        assert!(Severity::Crit.at_least(Severity::Notice));
        assert!(!Severity::Info.at_least(Severity::Notice));
        assert!(Severity::Notice.at_least(Severity::Notice));
    }
}
