//! A policy shaped like the lab's, and helpers to drive the engine through it.
#![allow(dead_code)]

use sekisho_engine::{Action, Engine, Ingress, Now, Side, Verdict};
use sekisho_policy::{PortId, Timestamp};

/// 2026-11-22 12:00 JST, in nanoseconds.
pub const NOW: Timestamp = Timestamp(1_795_316_400 * 1_000_000_000);
/// 2027-04-01 00:00 JST: the juki-batch exception stops matching.
pub const EXPIRY: Timestamp = Timestamp(1_806_505_200 * 1_000_000_000);
/// One second in nanoseconds.
pub const SEC: u64 = 1_000_000_000;

pub const POLICY: &str = r#"
[daemon]
mode = "enforce"

[flow]
capacity = 1000

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
prefixes = ["203.0.113.0/24", "198.51.100.0/24", "0.0.0.0/0", "2001:db8:30::/48", "::/0"]

[[port]]
name = "mynumber-uplink"
zone = "mynumber"
inside = "mn-in"
outside = "mn-out"
routers = ["198.18.10.1", "2001:db8:10::1"]

[[port]]
name = "lgwan-uplink"
zone = "lgwan"
inside = "lg-in"
outside = "lg-out"
routers = ["198.18.20.1", "2001:db8:20::1"]

[[port]]
name = "internet-uplink"
zone = "internet"
inside = "in-in"
outside = "in-out"
routers = ["203.0.113.1", "2001:db8:30::1"]

[[port]]
name = "sanitization-uplink"
zone = "sanitization"
inside = "sz-in"
outside = "sz-out"
routers = ["198.18.40.1", "2001:db8:40::1"]

[[port]]
name = "management-uplink"
zone = "management"
inside = "mg-in"
outside = "mg-out"
routers = ["198.18.50.254"]

[[service]]
name = "smtp"
proto = "tcp"
ports = [25]
app = "smtp"

[[service]]
name = "sftp"
proto = "tcp"
ports = [22]
app = "ssh"

[[service]]
name = "rdp"
proto = "tcp"
ports = [3389]
app = "rdp"

[[service]]
name = "dns"
proto = "udp"
ports = [53]
app = "dns"

[[service]]
name = "anything"
proto = "any"

[[path]]
name = "mail-textify"
method = "mail-text"
  [[path.leg]]
  from = "zone:internet"
  to = "198.18.40.10"
  service = "smtp"
  [[path.leg]]
  from = "198.18.40.10"
  to = "198.18.20.25"
  service = "smtp"

[[path]]
name = "screen-transfer"
method = "screen-transfer"
  [[path.leg]]
  from = "zone:lgwan"
  to = "203.0.113.50"
  service = "rdp"

[[exception]]
name = "juki-batch"
from = "198.18.10.5"
to = "198.18.20.30"
service = "sftp"
approval = "R8-情政-012"
expires = "2027-03-31"

[[rule]]
name = "mgmt-any"
from = "zone:management"
to = "zone:sanitization"
service = "anything"

[[rule]]
name = "lgwan-dns"
from = "zone:lgwan"
to = "198.18.40.53"
service = "dns"
"#;

pub fn policy(text: &str) -> sekisho_policy::Policy {
    sekisho_policy::load_str(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

pub fn engine() -> Engine {
    Engine::new(policy(POLICY))
}

/// The port index of each zone's uplink in [`POLICY`].
pub fn port_of(zone: &str) -> PortId {
    PortId(match zone {
        "mynumber" => 0,
        "lgwan" => 1,
        "internet" => 2,
        "sanitization" => 3,
        "management" => 4,
        other => panic!("no port for {other}"),
    })
}

pub fn inside(zone: &str) -> Ingress {
    Ingress { port: port_of(zone), side: Side::Inside }
}

pub fn outside(zone: &str) -> Ingress {
    Ingress { port: port_of(zone), side: Side::Outside }
}

/// The reason's full name under the engine's policy.
pub fn name(e: &Engine, v: &Verdict) -> String {
    e.loaded().policy.reason_name(v.reason).to_string()
}

/// Processes `frame` and asserts the verdict's action and reason name.
#[track_caller]
pub fn expect(
    e: &Engine,
    now: Timestamp,
    at: Ingress,
    frame: &[u8],
    action: Action,
    reason: &str,
) -> Verdict {
    let v = e.process(Now::at(now), at, frame);
    assert_eq!((v.action, name(e, &v).as_str()), (action, reason), "frame at {at:?}");
    v
}

/// Sends `frame` through the interfaces it would cross, in order, asserting the verdict
/// at each; `hops` ends where the frame is dropped (it reaches no further port).
#[track_caller]
pub fn crossing(e: &Engine, now: Timestamp, frame: &[u8], hops: &[(Ingress, &str)]) {
    for (i, (at, reason)) in hops.iter().enumerate() {
        let last = i + 1 == hops.len();
        let v = e.process(Now::at(now), *at, frame);
        let got = name(e, &v);
        assert_eq!(got, *reason, "hop {} at {at:?}", i + 1);
        if !last {
            assert_eq!(v.action, Action::Forward, "hop {} at {at:?} dropped the frame early ({got})", i + 1);
        }
    }
}
