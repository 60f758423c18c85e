//! Configuration errors and warnings: every problem found, each naming the item and
//! carrying a stable code (`E-…` refuses the file, `W-…` only warns).

use std::fmt;

/// Defines a code enum with its stable spelling, and the list of every code.
macro_rules! codes {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Every code, in the order the configuration documents list them.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The stable spelling (`"E-ROUTE-UNSANITIZED"`); public, never renamed.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

codes! {
    /// Why a configuration was refused: one stable code per class of problem
    /// (docs/configuration.md lists them, docs/ja/設定.md explains each).
    ErrorCode {
        /// The text is not valid TOML.
        TomlSyntax = "E-TOML-SYNTAX",
        /// A section or key that sekisho does not know (a typo must not pass silently).
        UnknownKey = "E-KEY-UNKNOWN",
        /// A required key is missing.
        MissingKey = "E-KEY-MISSING",
        /// A key has the wrong TOML type (a string where a number belongs, ...).
        WrongType = "E-KEY-TYPE",
        /// `[x]` written where `[[x]]` belongs, or the reverse.
        SectionShape = "E-SECTION-SHAPE",
        /// More entries in a section than sekisho supports.
        TooMany = "E-SECTION-TOO-MANY",
        /// A value outside its list (mode, kind, proto, app, method).
        UnknownValue = "E-VALUE-UNKNOWN",
        /// `[daemon] control_socket` is not a usable socket path.
        ControlSocket = "E-DAEMON-SOCKET",
        /// A `[control]` group name that is not a valid system group name.
        ControlGroup = "E-CONTROL-GROUP",
        /// `[daemon] workers` out of range.
        Workers = "E-DAEMON-WORKERS",
        /// A `[flow]` number out of range.
        FlowRange = "E-FLOW-RANGE",
        /// An `[inspect]` number out of range.
        InspectRange = "E-INSPECT-RANGE",
        /// A `[monitor]` number out of range.
        MonitorRange = "E-MONITOR-RANGE",
        /// A `[link] allow_ethertypes` entry that is not an ethertype sekisho may list.
        Ethertype = "E-LINK-ETHERTYPE",
        /// A name that is empty, too long or has characters reason codes cannot carry.
        NameInvalid = "E-NAME-INVALID",
        /// Two items of one kind with the same name.
        NameDuplicate = "E-NAME-DUPLICATE",
        /// Not an IPv4/IPv6 address or CIDR, or an invalid prefix length.
        Address = "E-ADDR-SYNTAX",
        /// A CIDR with host bits set.
        HostBits = "E-ADDR-HOST-BITS",
        /// An address no zone can hold: an IPv4 form inside IPv6, loopback, multicast, ...
        BogonAddress = "E-ADDR-BOGON",
        /// A zone without prefixes.
        ZoneEmpty = "E-ZONE-EMPTY",
        /// A zone prefix written without `/length`.
        ZoneBareAddress = "E-ZONE-BARE-ADDRESS",
        /// The same prefix listed twice in one zone.
        PrefixTwice = "E-ZONE-PREFIX-TWICE",
        /// The same prefix in two zones.
        PrefixConflict = "E-ZONE-PREFIX-CONFLICT",
        /// A zone without a `[[port]]` that does not say `upstream = true`.
        ZoneNoPort = "E-ZONE-NO-PORT",
        /// A zone with a `[[port]]` that says `upstream = true`.
        ZoneUpstreamPort = "E-ZONE-UPSTREAM-PORT",
        /// A reference to a zone that is not defined.
        RefZone = "E-REF-ZONE",
        /// A reference to a service that is not defined.
        RefService = "E-REF-SERVICE",
        /// An interface name that is invalid, used twice, or both sides of one port.
        PortInterface = "E-PORT-INTERFACE",
        /// A second port for one zone.
        PortZoneTwice = "E-PORT-ZONE-TWICE",
        /// A `vlans` / `untagged` problem.
        PortVlan = "E-PORT-VLAN",
        /// A `routers` entry that is not a single address of the port's zone.
        PortRouter = "E-PORT-ROUTER",
        /// A service's `ports` missing, out of range or not applicable.
        ServicePorts = "E-SERVICE-PORTS",
        /// A service's `app` that cannot run over its `proto`.
        ServiceApp = "E-SERVICE-APP",
        /// A service's `sni_allow` that is empty, names no valid host, or is given for an
        /// app other than tls.
        ServiceSni = "E-SERVICE-SNI",
        /// A service's `allow_connect` given for an app other than http.
        ServiceConnect = "E-SERVICE-CONNECT",
        /// A path without legs.
        PathNoLegs = "E-PATH-NO-LEGS",
        /// A path with more legs than a reason code can number.
        PathTooManyLegs = "E-PATH-TOO-MANY-LEGS",
        /// A list given as `from` or `to`, which take one endpoint.
        EndpointList = "E-ENDPOINT-LIST",
        /// An endpoint that lies in no zone, so it can never match.
        EndpointNoZone = "E-ENDPOINT-NO-ZONE",
        /// An exception without a usable `approval`.
        ExceptionApproval = "E-EXCEPTION-APPROVAL",
        /// An exception's `expires` that is not a date or an RFC 3339 time.
        ExceptionExpires = "E-EXCEPTION-EXPIRES",
        /// An exception that is not between mynumber and lgwan.
        ExceptionZones = "E-EXCEPTION-ZONES",
        /// An exception whose `from` or `to` is a zone or a wide CIDR.
        ExceptionWide = "E-EXCEPTION-WIDE",
        /// Anything connecting mynumber with internet or sanitization.
        MynumberIsolation = "E-MYNUMBER-ISOLATION",
        /// A rule or leg touching mynumber (only exceptions may).
        MynumberRule = "E-MYNUMBER-RULE",
        /// A rule between lgwan and internet.
        RuleCrossing = "E-RULE-CROSSING",
        /// A leg that touches no sanitization host.
        LegNoSanitizer = "E-LEG-NO-SANITIZER",
        /// A leg between lgwan and internet that is not a screen transfer.
        LegCrossing = "E-LEG-CROSSING",
        /// A screen-transfer leg between lgwan and internet whose `to` is not one host.
        ScreenHost = "E-LEG-SCREEN-HOST",
        /// A screen-transfer leg between lgwan and internet without a screen protocol.
        ScreenApp = "E-LEG-SCREEN-APP",
        /// A local-breakout leg that does not go from lgwan zones to internet zones.
        BreakoutZones = "E-BREAKOUT-ZONES",
        /// A local-breakout leg whose service is not tls with an `sni_allow` list.
        BreakoutService = "E-BREAKOUT-SERVICE",
        /// A chain of rules, exceptions and intra-zone reach joins internet with lgwan or
        /// mynumber outside every path.
        RouteUnsanitized = "E-ROUTE-UNSANITIZED",
        /// A chain from an exception's lgwan host, through a rule naming that host, reaches
        /// sanitization or internet.
        RouteMynumber = "E-ROUTE-MYNUMBER",
        /// `[alert] event_file` is not an absolute path in an existing directory.
        AlertEventFile = "E-ALERT-EVENT-FILE",
        /// An `[[alert.target]]` whose url, format, facility or min_severity is wrong.
        AlertTarget = "E-ALERT-TARGET",
        /// The same collector url in two `[[alert.target]]` tables.
        AlertTargetTwice = "E-ALERT-TARGET-TWICE",
        /// The separation invariants could not be checked because zones have errors.
        InvariantsSkipped = "E-INVARIANTS-SKIPPED",
        /// A defect of sekisho itself; please report it.
        Internal = "E-INTERNAL",
    }
}

codes! {
    /// What `sekishod check` warns about (`check --strict` refuses it): a policy that
    /// loads but probably does not say what its author meant.
    WarningCode {
        /// An exception whose `expires` has passed.
        ExceptionExpired = "W-EXCEPTION-EXPIRED",
        /// An exception that expires within 30 days.
        ExceptionExpiring = "W-EXCEPTION-EXPIRING",
        /// A zone prefix inside another zone's prefix (other than an internet catch-all).
        NestedPrefix = "W-ZONE-NESTED-PREFIX",
        /// A service no leg, exception or rule uses.
        ServiceUnused = "W-SERVICE-UNUSED",
        /// A path whose sanitiser receives but never delivers to another zone.
        PathNoChain = "W-PATH-NO-CHAIN",
        /// A zone-wide rule takes an exception's lgwan host on to sanitization or internet.
        RouteMynumber = "W-ROUTE-MYNUMBER",
    }
}

/// One problem in a configuration: which item, what is wrong, and its stable code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{item}: {message} [{code}]")]
pub struct ConfigError {
    /// The stable code of the class of problem.
    pub code: ErrorCode,
    /// The item, e.g. `path "mail-textify" leg 2`, `zone "lgwan"`, `[flow]`.
    pub item: String,
    /// What is wrong and what to do, in one line.
    pub message: String,
}

/// Every problem found in one configuration; it did not load.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", Lines(self))]
pub struct ConfigErrors {
    /// Where the text came from (e.g. the file path); prefixes every line.
    pub origin: String,
    /// The problems, in configuration order (never empty).
    pub errors: Vec<ConfigError>,
}

struct Lines<'a>(&'a ConfigErrors);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}: {e}", self.0.origin)?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// Whether some error's item or message contains `needle` (handy in tests).
    pub fn mentions(&self, needle: &str) -> bool {
        self.errors.iter().any(|e| e.item.contains(needle) || e.message.contains(needle))
    }

    /// Whether some error has this code.
    pub fn has(&self, code: ErrorCode) -> bool {
        self.errors.iter().any(|e| e.code == code)
    }
}

/// Something in a loaded policy that is probably not what its author meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The stable code of the class of warning.
    pub code: WarningCode,
    /// The item, e.g. `exception "juki-batch"`.
    pub item: String,
    /// What is odd and what to do, in one line.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} [{}]", self.item, self.message, self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(
                c.as_str().starts_with("E-")
                    && c.as_str().chars().all(|x| x.is_ascii_uppercase() || x == '-')
            );
            assert!(seen.insert(c.as_str()), "{c} twice");
        }
        for c in WarningCode::ALL {
            assert!(c.as_str().starts_with("W-"));
            assert!(seen.insert(c.as_str()), "{c} twice");
        }
    }

    #[test]
    fn lines_carry_origin_item_message_and_code() {
        let e = ConfigErrors {
            origin: "t.toml".into(),
            errors: vec![ConfigError {
                code: ErrorCode::RefZone,
                item: "rule \"r\"".into(),
                message: "m".into(),
            }],
        };
        assert_eq!(e.to_string(), "t.toml: rule \"r\": m [E-REF-ZONE]");
        assert!(e.has(ErrorCode::RefZone) && !e.has(ErrorCode::Internal));
    }
}
