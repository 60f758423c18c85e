//! The shipped configurations load without a warning, and the lab policy decides every
//! reason as docs/configuration.md says.

use std::net::IpAddr;

use sekisho_policy::{load_str, App, Connection, Decision, Mode, Policy, Proto, Reason, Timestamp, ZoneKind};

const LAB: &str = include_str!("../../../configs/lab.toml");
const ALPHA: &str = include_str!("../../../configs/examples/alpha-model.toml");
const BETA: &str = include_str!("../../../configs/examples/beta-model.toml");

/// 2026-01-01T00:00:00Z
const NOW: Timestamp = Timestamp::from_secs(1_767_225_600);

fn load(text: &str, origin: &str) -> Policy {
    match load_str(text, origin) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn lab() -> Policy {
    load(LAB, "configs/lab.toml")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn conn(protocol: u8, from: &str, to: &str, port: u16) -> Connection {
    Connection { protocol, initiator: ip(from), responder: ip(to), responder_port: port }
}

fn tcp(from: &str, to: &str, port: u16) -> Connection {
    conn(6, from, to, port)
}

/// Decide and return the full reason name.
fn name(p: &Policy, c: &Connection, now: Timestamp) -> String {
    p.reason_name(p.decide(c, now).reason).to_string()
}

fn zone_name(p: &Policy, d: Option<sekisho_policy::ZoneId>) -> &str {
    d.and_then(|z| p.zone(z)).map(|z| z.name.as_str()).unwrap_or("-")
}

#[test]
fn shipped_configs_load() {
    for (origin, text) in [
        ("configs/lab.toml", LAB),
        ("configs/examples/alpha-model.toml", ALPHA),
        ("configs/examples/beta-model.toml", BETA),
    ] {
        let p = load(text, origin);
        assert!(!p.zones().is_empty() && !p.paths().is_empty(), "{origin}");
    }
}

#[test]
fn lab_settings_and_inventory() {
    let p = lab();
    assert_eq!(p.mode(), Mode::Enforce);
    assert_eq!(p.control_socket(), "/run/sekisho/control.sock");
    assert_eq!(p.flow(), &sekisho_policy::FlowSettings::default());
    assert!(p.allow_ethertypes().is_empty());
    let zones: Vec<&str> = p.zones().iter().map(|z| z.name.as_str()).collect();
    assert_eq!(zones, ["mynumber", "lgwan", "sanitization", "management", "internet"]);
    assert_eq!(p.ports().len(), 4);
    assert_eq!(p.services().len(), 5);
    let svc = |n: &str| p.services().iter().find(|s| s.name == n).unwrap();
    assert_eq!(svc("sftp").proto, Proto::Tcp);
    assert_eq!(svc("rdp").app, App::Rdp);
    assert_eq!(p.paths().iter().map(|x| x.legs.len()).sum::<usize>(), 5);
    assert_eq!(p.exceptions()[0].approval, "R8-情政-012");
    assert_eq!(p.rules()[0].name, "mgmt-ssh");
    let (port, side) = p.port_by_interface("lg-out").unwrap();
    assert_eq!(p.ports()[port.index()].name, "lgwan-uplink");
    assert_eq!(side, sekisho_policy::PortSide::Outside);
    let leg = &p.paths()[0].legs[0];
    assert_eq!(p.endpoint_name(&leg.from).to_string(), "zone:internet");
    assert_eq!(p.endpoint_name(&leg.to).to_string(), "198.18.40.10");
}

#[test]
fn zone_of_longest_prefix_match() {
    let p = lab();
    let z = |a: &str| zone_name(&p, p.zone_of(ip(a))).to_owned();
    assert_eq!(z("198.18.10.5"), "mynumber");
    assert_eq!(z("198.18.20.255"), "lgwan");
    assert_eq!(z("198.18.40.10"), "sanitization");
    assert_eq!(z("198.18.50.1"), "management");
    assert_eq!(z("203.0.113.50"), "internet");
    assert_eq!(z("198.18.30.1"), "internet"); // only the 0.0.0.0/0 catch-all
    assert_eq!(z("2001:db8:10::1"), "mynumber");
    assert_eq!(z("2001:db8:20:ffff::1"), "lgwan");
    assert_eq!(z("2001:db8:40::10"), "sanitization");
    assert_eq!(z("2001:db8:30::1"), "internet");
    assert_eq!(z("2001:db8:99::1"), "internet"); // ::/0
}

#[test]
fn intra_zone() {
    let p = lab();
    let d = p.decide(&tcp("198.18.20.1", "198.18.20.2", 445), NOW);
    assert_eq!(d.reason, Reason::IntraZone);
    assert!(d.allowed());
    assert_eq!(zone_name(&p, d.initiator_zone), "lgwan");
    assert_eq!(zone_name(&p, d.responder_zone), "lgwan");
    assert_eq!(d.service, None);
    assert_eq!(p.reason_name(d.reason).to_string(), "allow:intra-zone");
}

#[test]
fn every_path_leg() {
    let p = lab();
    let cases = [
        (tcp("203.0.113.7", "198.18.40.10", 25), "allow:path:mail-textify/1", "smtp"),
        (tcp("198.51.100.9", "198.18.40.10", 25), "allow:path:mail-textify/1", "smtp"),
        (tcp("198.18.40.10", "198.18.20.25", 25), "allow:path:mail-textify/2", "smtp"),
        (tcp("198.18.20.77", "198.18.40.20", 443), "allow:path:file-sanitize/1", "https"),
        (tcp("203.0.113.7", "198.18.40.20", 443), "allow:path:file-sanitize/2", "https"),
        (tcp("198.18.20.77", "203.0.113.50", 3389), "allow:path:screen-transfer/1", "rdp"),
    ];
    for (c, want, svc) in cases {
        let d = p.decide(&c, NOW);
        assert_eq!(p.reason_name(d.reason).to_string(), want, "{c:?}");
        assert!(d.allowed());
        assert_eq!(p.service(d.service.unwrap()).unwrap().name, svc);
        assert_eq!(d.valid_until, None);
    }
    let d = p.decide(&tcp("198.18.40.10", "198.18.20.25", 25), NOW);
    let Reason::Path { path, leg } = d.reason else { panic!("{d:?}") };
    assert_eq!((p.paths()[path.index()].name.as_str(), leg), ("mail-textify", 2));
}

#[test]
fn reverse_direction_of_a_leg_is_denied() {
    let p = lab();
    // the LGWAN mail server may not open a connection to the relay ...
    assert_eq!(name(&p, &tcp("198.18.20.25", "198.18.40.10", 25), NOW), "deny:no-rule");
    // ... nor the relay to the internet ...
    assert_eq!(name(&p, &tcp("198.18.40.10", "203.0.113.7", 25), NOW), "deny:no-rule");
    // ... nor the internet-side VDI back into LGWAN.
    assert_eq!(name(&p, &tcp("203.0.113.50", "198.18.20.77", 3389), NOW), "deny:unsanitized-crossing");
}

#[test]
fn leg_requires_its_service() {
    let p = lab();
    // wrong port, wrong protocol, wrong host
    assert_eq!(name(&p, &tcp("203.0.113.7", "198.18.40.10", 587), NOW), "deny:no-rule");
    assert_eq!(name(&p, &conn(17, "203.0.113.7", "198.18.40.10", 25), NOW), "deny:no-rule");
    assert_eq!(name(&p, &tcp("203.0.113.7", "198.18.40.11", 25), NOW), "deny:no-rule");
    assert_eq!(name(&p, &tcp("198.18.20.77", "203.0.113.51", 3389), NOW), "deny:unsanitized-crossing");
}

#[test]
fn exception_and_its_expiry() {
    let p = lab();
    let c = tcp("198.18.10.5", "198.18.20.30", 22);
    let d = p.decide(&c, NOW);
    assert_eq!(p.reason_name(d.reason).to_string(), "allow:exception:juki-batch");
    assert!(matches!(d.reason, Reason::Exception(_)));
    // valid through the end of 2027-03-31 in Japan: until 2027-03-31T15:00:00Z
    let end = Timestamp::from_secs(1_806_505_200);
    assert_eq!(d.valid_until, Some(end));
    assert_eq!(p.service(d.service.unwrap()).unwrap().name, "sftp");

    let last_ns = Timestamp(end.0 - 1);
    assert_eq!(name(&p, &c, last_ns), "allow:exception:juki-batch");
    // expired: falls through to the rules, then deny
    let d = p.decide(&c, end);
    assert_eq!(d.reason, Reason::MynumberIsolation);
    assert_eq!(d.valid_until, None);
    assert_eq!(d.service, None);
    assert!(!p.exceptions()[0].is_active(end));
    // the exception is one-way and host-specific
    assert_eq!(name(&p, &tcp("198.18.20.30", "198.18.10.5", 22), NOW), "deny:mynumber-isolation");
    assert_eq!(name(&p, &tcp("198.18.10.6", "198.18.20.30", 22), NOW), "deny:mynumber-isolation");
}

#[test]
fn rule() {
    let p = lab();
    let d = p.decide(&tcp("198.18.50.3", "198.18.40.10", 22), NOW);
    assert_eq!(p.reason_name(d.reason).to_string(), "allow:rule:mgmt-ssh");
    assert_eq!(p.service(d.service.unwrap()).unwrap().name, "ssh");
    assert_eq!(name(&p, &tcp("198.18.40.10", "198.18.50.3", 22), NOW), "deny:no-rule");
}

#[test]
fn deny_reasons_name_the_invariant() {
    let p = lab();
    let cases = [
        (tcp("198.18.10.5", "203.0.113.7", 443), "deny:mynumber-isolation"),
        (tcp("198.18.10.5", "198.18.40.10", 25), "deny:mynumber-isolation"),
        (tcp("198.18.50.3", "198.18.10.5", 22), "deny:mynumber-isolation"),
        (tcp("198.18.20.1", "203.0.113.7", 443), "deny:unsanitized-crossing"),
        (tcp("203.0.113.7", "198.18.20.1", 443), "deny:unsanitized-crossing"),
        (tcp("198.18.50.3", "198.18.20.1", 22), "deny:no-rule"),
        (tcp("198.18.20.1", "198.18.50.3", 22), "deny:no-rule"),
    ];
    for (c, want) in cases {
        let d: Decision = p.decide(&c, NOW);
        assert!(!d.allowed());
        assert_eq!(p.reason_name(d.reason).to_string(), want, "{c:?}");
        assert!(d.initiator_zone.is_some() && d.responder_zone.is_some());
    }
}

#[test]
fn ipv6() {
    let p = lab();
    assert_eq!(name(&p, &tcp("2001:db8:20::5", "2001:db8:20::6", 443), NOW), "allow:intra-zone");
    assert_eq!(name(&p, &tcp("2001:db8:10::5", "2001:db8:20::6", 22), NOW), "deny:mynumber-isolation");
    assert_eq!(name(&p, &tcp("2001:db8:20::5", "2001:db8:30::6", 443), NOW), "deny:unsanitized-crossing");
    assert_eq!(name(&p, &conn(58, "2001:db8:99::1", "2001:db8:40::10", 0), NOW), "deny:no-rule");
    // an IPv4 leg endpoint never matches an IPv6 address
    assert_eq!(name(&p, &tcp("2001:db8:30::7", "2001:db8:40::10", 25), NOW), "deny:no-rule");
}

#[test]
fn ipv6_legs_and_icmp_services() {
    let p = load(
        r#"
        [[zone]]
        name = "lg"
        kind = "lgwan"
        prefixes = ["2001:db8:20::/48"]
        [[zone]]
        name = "sz"
        kind = "sanitization"
        prefixes = ["2001:db8:40::/48"]
        [[zone]]
        name = "mgmt"
        kind = "management"
        prefixes = ["198.18.50.0/24"]
        [[service]]
        name = "https"
        proto = "tcp"
        ports = [443, "8443-8445"]
        app = "tls"
        [[service]]
        name = "ping"
        proto = "icmp"
        [[service]]
        name = "all"
        proto = "any"
        [[path]]
        name = "files"
        method = "file-sanitize"
          [[path.leg]]
          from = "2001:db8:20::/64"
          to = "2001:db8:40::20"
          service = "https"
        [[rule]]
        name = "ping-sz"
        from = "zone:lg"
        to = "zone:sz"
        service = "ping"
        [[rule]]
        name = "mgmt-all"
        from = "zone:mgmt"
        to = "zone:sz"
        service = "all"
        "#,
        "inline",
    );
    assert_eq!(name(&p, &tcp("2001:db8:20::9", "2001:db8:40::20", 8444), NOW), "allow:path:files/1");
    assert_eq!(name(&p, &tcp("2001:db8:20:1::9", "2001:db8:40::20", 443), NOW), "deny:no-rule");
    assert_eq!(name(&p, &conn(58, "2001:db8:20:1::9", "2001:db8:40::1", 0), NOW), "allow:rule:ping-sz");
    assert_eq!(name(&p, &conn(1, "2001:db8:20:1::9", "2001:db8:40::1", 0), NOW), "allow:rule:ping-sz");
    // no zone on one end
    let d = p.decide(&tcp("203.0.113.1", "2001:db8:40::20", 443), NOW);
    assert_eq!(d.reason, Reason::NoRule);
    assert_eq!(d.initiator_zone, None);
    assert!(d.responder_zone.is_some());
    assert_eq!(p.zone_of(ip("198.18.50.9")), p.zone_by_name("mgmt"));
    // proto any: every protocol and port; zone endpoints match whatever the family
    assert_eq!(name(&p, &conn(132, "198.18.50.9", "2001:db8:40::1", 9), NOW), "allow:rule:mgmt-all");
    assert_eq!(name(&p, &conn(47, "198.18.50.9", "2001:db8:40::1", 0), NOW), "allow:rule:mgmt-all");
}

#[test]
fn reason_codes() {
    let p = lab();
    let denies: Vec<&str> = Reason::ALL_DENIES.iter().map(|r| r.code()).collect();
    assert_eq!(
        denies,
        [
            "deny:mynumber-isolation",
            "deny:unsanitized-crossing",
            "deny:no-rule",
            "deny:spoofed-source",
            "deny:no-flow",
            "deny:malformed",
            "deny:fragment",
            "deny:tunnel",
            "deny:non-ip",
            "deny:app-mismatch",
            "deny:flow-table-full",
            "deny:vlan",
            "deny:bogon-address",
            "deny:link-scope",
            "deny:misdirected",
            "deny:icmp-third-party",
            "deny:out-of-window",
            "deny:not-sanitized",
            "deny:blocked-source",
        ]
    );
    for r in Reason::ALL_DENIES {
        assert!(!r.allowed());
        assert_eq!(p.reason_name(r).to_string(), r.code());
        assert_eq!(Reason::deny_from_code(r.code()), Some(r));
    }
    assert_eq!(Reason::deny_from_code("allow:link"), None);
    for (r, code) in [
        (Reason::IntraZone, "allow:intra-zone"),
        (Reason::Link, "allow:link"),
        (Reason::Related, "allow:related"),
        (Reason::Rule(sekisho_policy::RuleId(0)), "allow:rule"),
        (Reason::Exception(sekisho_policy::ExceptionId(0)), "allow:exception"),
        (Reason::Path { path: sekisho_policy::PathId(0), leg: 1 }, "allow:path"),
    ] {
        assert!(r.allowed());
        assert_eq!(r.code(), code);
    }
    assert_eq!(p.reason_name(Reason::Rule(sekisho_policy::RuleId(0))).to_string(), "allow:rule:mgmt-ssh");
    assert_eq!(p.reason_name(Reason::Rule(sekisho_policy::RuleId(9))).to_string(), "allow:rule:#9");
}

#[test]
fn alpha_and_beta_models() {
    let a = load(ALPHA, "alpha");
    assert_eq!(name(&a, &tcp("198.18.20.5", "203.0.113.50", 3389), NOW), "allow:path:internet-vdi/1");
    assert_eq!(name(&a, &tcp("198.18.20.5", "198.18.40.30", 443), NOW), "allow:path:web-isolation/1");
    assert_eq!(name(&a, &tcp("198.18.40.30", "192.0.2.80", 80), NOW), "allow:path:web-isolation/2");
    assert_eq!(name(&a, &tcp("198.18.20.5", "192.0.2.80", 80), NOW), "deny:unsanitized-crossing");

    let b = load(BETA, "beta");
    let lgwan = b.zone_by_name("lgwan").unwrap();
    assert_eq!(b.zones()[lgwan.index()].kind, ZoneKind::Lgwan);
    assert_eq!(name(&b, &tcp("198.51.100.20", "198.18.20.100", 3389), NOW), "allow:path:lgwan-vdi/1");
    assert_eq!(name(&b, &tcp("198.18.20.100", "198.51.100.20", 3389), NOW), "deny:unsanitized-crossing");
    assert_eq!(name(&b, &tcp("198.51.100.20", "198.18.20.101", 3389), NOW), "deny:unsanitized-crossing");
}

#[test]
fn decide_is_fast_enough_for_a_smoke_check() {
    // Not a benchmark (see the engine's criterion benches); just a guard against
    // an accidental O(n^2) or allocation in the hot path, generous for debug builds.
    let p = lab();
    let conns = [
        tcp("203.0.113.7", "198.18.40.10", 25),
        tcp("198.18.10.5", "198.18.20.30", 22),
        tcp("198.18.20.1", "203.0.113.7", 443),
        tcp("2001:db8:20::5", "2001:db8:30::6", 443),
    ];
    let start = std::time::Instant::now();
    let mut allowed = 0u32;
    for i in 0..100_000 {
        allowed += u32::from(p.decide(&conns[i % 4], NOW).allowed());
    }
    assert_eq!(allowed, 50_000);
    assert!(start.elapsed().as_secs() < 5);
}
