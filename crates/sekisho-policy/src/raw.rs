//! The TOML shape, as serde structs (every one `deny_unknown_fields`), and the
//! per-item deserialisation that turns `config` errors into readable ones.

use std::fmt;

use config::{Value, ValueKind};
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::Deserialize;

use crate::error::ErrorCode;

/// A string that must be written as a TOML string (the `config` crate would
/// otherwise turn `name = 5` into `"5"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string in quotes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// An integer that must be written as a TOML integer (not `"25"`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Int(pub i128);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer (without quotes)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(i128::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                Ok(Int(i128::from(v)))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Int, E> {
                Ok(Int(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A boolean that must be written as a TOML boolean (not `"true"`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true or false (without quotes)")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// One entry of a service's `ports`: `25` or `"8000-8080"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PortEntry {
    Num(i128),
    Text(String),
}

impl<'de> Deserialize<'de> for PortEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number (25) or a range in quotes (\"8000-8080\")")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortEntry, E> {
                Ok(PortEntry::Num(i128::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortEntry, E> {
                Ok(PortEntry::Num(i128::from(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortEntry, E> {
                Ok(PortEntry::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[daemon]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDaemon {
    pub mode: Option<Text>,
    pub control_socket: Option<Text>,
    pub io: Option<Text>,
    pub workers: Option<Int>,
}

/// `[control]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawControl {
    pub admin_group: Option<Text>,
    pub read_group: Option<Text>,
}

/// `[flow]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFlow {
    pub capacity: Option<Int>,
    pub tcp_syn_timeout_s: Option<Int>,
    pub tcp_established_timeout_s: Option<Int>,
    pub tcp_closing_timeout_s: Option<Int>,
    pub udp_timeout_s: Option<Int>,
    pub icmp_timeout_s: Option<Int>,
}

/// `[inspect]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInspect {
    pub depth: Option<Int>,
    pub max_flows: Option<Int>,
    pub dns_tunnel_threshold: Option<Int>,
    pub idle_timeout_s: Option<Int>,
}

/// `[monitor]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMonitor {
    pub enabled: Option<Flag>,
    pub window_s: Option<Int>,
    pub scan_ports: Option<Int>,
    pub scan_hosts: Option<Int>,
    pub syn_half_open: Option<Int>,
    pub icmp_flood: Option<Int>,
    pub tracked: Option<Int>,
    pub block_ttl_s: Option<Int>,
}

/// `[link]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLink {
    pub allow_ethertypes: Option<Vec<Int>>,
}

/// `[alert]`; its targets are deserialised one by one (see `alert.rs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlert {
    pub event_file: Option<Text>,
    pub target: Option<Vec<Value>>,
}

/// `[[zone]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawZone {
    pub name: Text,
    pub kind: Text,
    pub prefixes: Vec<Text>,
    pub upstream: Option<Flag>,
}

/// `[[port]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPort {
    pub name: Text,
    pub zone: Text,
    pub inside: Text,
    pub outside: Text,
    pub vlans: Option<Vec<Int>>,
    pub untagged: Option<Flag>,
    pub routers: Option<Vec<Text>>,
}

/// `[[service]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub name: Text,
    pub proto: Text,
    pub ports: Option<Vec<PortEntry>>,
    pub app: Option<Text>,
    pub sni_allow: Option<Vec<Text>>,
    pub allow_connect: Option<Flag>,
}

/// `[[path]]`; its legs are deserialised one by one so each error names its leg.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPath {
    pub name: Text,
    pub method: Text,
    pub leg: Vec<Value>,
}

/// `[[path.leg]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLeg {
    pub from: Text,
    pub to: Text,
    pub service: Text,
}

/// `[[exception]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawException {
    pub name: Text,
    pub from: Text,
    pub to: Text,
    pub service: Text,
    pub approval: Text,
    pub expires: Option<Text>,
}

/// `[[rule]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub name: Text,
    pub from: Text,
    pub to: Text,
    pub service: Text,
}

/// The keys a serde struct accepts, read from its derived `Deserialize` impl
/// (so the list can never drift from the struct).
pub(crate) fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    #[derive(Debug)]
    struct Stop;
    impl fmt::Display for Stop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("introspection")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<T: fmt::Display>(_: T) -> Self {
            Stop
        }
    }
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// The TOML type of a value, in words.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v.kind {
        ValueKind::Nil => "nothing",
        ValueKind::Boolean(_) => "a boolean",
        ValueKind::I64(_) | ValueKind::I128(_) | ValueKind::U64(_) | ValueKind::U128(_) => "an integer",
        ValueKind::Float(_) => "a float",
        ValueKind::String(_) => "a string",
        ValueKind::Table(_) => "a table",
        ValueKind::Array(_) => "an array",
    }
}

/// The string under `key` of a table value, if it is one (to name broken items).
pub(crate) fn str_key<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    match &v.kind {
        ValueKind::Table(t) => match t.get(key).map(|x| &x.kind) {
            Some(ValueKind::String(s)) => Some(s.as_str()),
            _ => None,
        },
        _ => None,
    }
}

/// Render a `config` deserialisation error as one readable line naming the key, with
/// the code of its class (missing key or wrong type).
pub(crate) fn describe(e: &config::ConfigError) -> (ErrorCode, String) {
    match e {
        config::ConfigError::NotFound(key) => {
            (ErrorCode::MissingKey, format!("missing required key `{}`", last_segment(key)))
        }
        config::ConfigError::Type { unexpected, expected, key, .. } => match key {
            Some(k) => (ErrorCode::WrongType, format!("key `{k}`: expected {expected}, found {unexpected}")),
            None => (ErrorCode::WrongType, format!("expected {expected}, found {unexpected}")),
        },
        config::ConfigError::At { error, key, .. } => {
            let (code, inner) = describe(error);
            match key {
                Some(k) => (code, format!("key `{k}`: {inner}")),
                None => (code, inner),
            }
        }
        other => (ErrorCode::WrongType, one_line(&other.to_string())),
    }
}

fn last_segment(key: &str) -> &str {
    // `config` prefixes nested keys without a separator after an index: "zone[0]name".
    match key.rfind([']', '.']) {
        Some(i) => &key[i + 1..],
        None => key,
    }
}

/// Squash a multi-line message (e.g. a TOML syntax error with a source snippet)
/// into one line: the location line and the explanation.
pub(crate) fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let is_snippet = |l: &str| {
        let t = l.trim_start();
        t.is_empty()
            || t.starts_with('|')
            || t.split_once('|').is_some_and(|(a, _)| a.trim().chars().all(|c| c.is_ascii_digit()))
    };
    let mut parts: Vec<&str> = Vec::new();
    for l in lines {
        if !is_snippet(l) && !parts.contains(&l.trim()) {
            parts.push(l.trim());
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn introspection_sees_every_field() {
        assert_eq!(fields_of::<RawZone>(), ["name", "kind", "prefixes", "upstream"]);
        assert_eq!(fields_of::<RawAlert>(), ["event_file", "target"]);
        assert_eq!(fields_of::<RawException>(), ["name", "from", "to", "service", "approval", "expires"]);
    }

    #[test]
    fn config_crate_propagates_deny_unknown_fields() {
        // Belt and braces: the loader strips unknown keys itself, but the serde
        // structs reject them too, and the `config` crate passes that on.
        let text = "name = \"a\"\nkind = \"lgwan\"\nprefixes = []\nprefix = 1\n";
        let c = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .unwrap();
        let e = c.try_deserialize::<RawZone>().unwrap_err().to_string();
        assert!(e.contains("unknown field `prefix`"), "{e}");
    }

    #[test]
    fn one_line_squashes_snippets() {
        let t = "TOML parse error at line 4, column 14\n  |\n4 | prefixes=['1'\n  |              ^\nunclosed array, expected `]`\n";
        assert_eq!(one_line(t), "TOML parse error at line 4, column 14: unclosed array, expected `]`");
    }
}
