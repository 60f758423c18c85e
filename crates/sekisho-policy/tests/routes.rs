//! The route analysis and the checks added with it: one test per refused class, each
//! asserting that the message names the items and the route; one per warning.

use sekisho_policy::{load_str, ConfigErrors, ConfigWarning, ErrorCode, Policy, Timestamp, WarningCode};

const LAB: &str = include_str!("../../../configs/lab.toml");
const SHIPPED: [(&str, &str); 4] = [
    ("configs/lab.toml", LAB),
    ("configs/examples/alpha-model.toml", include_str!("../../../configs/examples/alpha-model.toml")),
    ("configs/examples/beta-model.toml", include_str!("../../../configs/examples/beta-model.toml")),
    (
        "configs/examples/beta-prime-model.toml",
        include_str!("../../../configs/examples/beta-prime-model.toml"),
    ),
];

/// 2026-12-01T00:00:00+09:00: before the lab exception's 30-day notice.
const DEC_2026: Timestamp = Timestamp::from_secs(1_796_050_800);

const ANY: &str = "[[service]]\nname = \"all\"\nproto = \"any\"\n";

fn rule(name: &str, from: &str, to: &str, service: &str) -> String {
    format!("[[rule]]\nname = {name:?}\nfrom = {from:?}\nto = {to:?}\nservice = {service:?}\n")
}

fn refused(extra: &str) -> ConfigErrors {
    match load_str(&format!("{LAB}\n{extra}"), "lab.toml") {
        Ok(_) => panic!("accepted:\n{extra}"),
        Err(e) => e,
    }
}

fn loaded(extra: &str) -> Policy {
    load_str(&format!("{LAB}\n{extra}"), "lab.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// The one error with `code`, checked to contain every needle.
#[track_caller]
fn error_with(e: &ConfigErrors, code: ErrorCode, item: &str, needles: &[&str]) {
    let found: Vec<_> = e.errors.iter().filter(|x| x.code == code).collect();
    assert_eq!(found.len(), 1, "expected one {code} in:\n{e}");
    let x = found[0];
    assert_eq!(x.item, item, "{e}");
    for n in needles {
        assert!(x.message.contains(n), "{n:?} not in: {}", x.message);
    }
}

#[track_caller]
fn warning_with(w: &[ConfigWarning], code: WarningCode, item: &str, needles: &[&str]) {
    let found: Vec<_> = w.iter().filter(|x| x.code == code && x.item == item).collect();
    assert_eq!(found.len(), 1, "expected one {code} on {item} in:\n{w:#?}");
    for n in needles {
        assert!(found[0].message.contains(n), "{n:?} not in: {}", found[0].message);
    }
}

#[test]
fn shipped_configs_have_no_route_finding_and_no_warning() {
    for (origin, text) in SHIPPED {
        let p = load_str(text, origin).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.warnings(DEC_2026), [], "{origin}");
    }
}

#[test]
fn a_management_host_relaying_internet_to_lgwan_is_refused() {
    // vendor remote support into a management host, and that host administering LGWAN
    let e = refused(&format!(
        "{ANY}{}{}",
        rule("vendor-rdp", "zone:internet", "198.18.50.10", "rdp"),
        rule("admin-any", "198.18.50.10", "zone:lgwan", "all"),
    ));
    error_with(
        &e,
        ErrorCode::RouteUnsanitized,
        "route \"internet\" ⇄ \"lgwan\"",
        &[
            "zone \"internet\" (internet, インターネット接続系) reaches zone \"lgwan\" (lgwan, LGWAN接続系) outside every [[path]]",
            "any host of zone \"internet\" ⇄ rule \"vendor-rdp\" (zone:internet → 198.18.50.10, service rdp)",
            "⇄ relay 198.18.50.10 in zone \"management\" ⇄",
            "rule \"admin-any\" (198.18.50.10 → zone:lgwan, service all) ⇄ any host of zone \"lgwan\"",
            // through the juki-batch exception the same group holds mynumber
            "it joins zone \"mynumber\" as well",
            "通信経路の分割",
        ],
    );
    assert_eq!(e.errors.len(), 1, "{e}");
    assert!(e.to_string().starts_with("lab.toml: route \"internet\" ⇄ \"lgwan\": "), "{e}");
    assert!(e.to_string().ends_with("[E-ROUTE-UNSANITIZED]"), "{e}");
}

#[test]
fn a_sanitization_host_outside_a_path_is_no_sanitiser() {
    let e = refused(&format!(
        "{ANY}{}{}",
        rule("in-99", "zone:internet", "198.18.40.99", "all"),
        rule("99-lg", "198.18.40.99", "zone:lgwan", "all"),
    ));
    error_with(
        &e,
        ErrorCode::RouteUnsanitized,
        "route \"internet\" ⇄ \"lgwan\"",
        &[
            "rule \"in-99\" (zone:internet → 198.18.40.99, service all)",
            "relay 198.18.40.99 in zone \"sanitization\"",
            "rule \"99-lg\" (198.18.40.99 → zone:lgwan, service all)",
        ],
    );
}

#[test]
fn intra_zone_reach_relays_too() {
    // two different management hosts: they reach each other inside their zone
    let e = refused(&format!(
        "{}{}",
        rule("vendor-rdp", "zone:internet", "198.18.50.10", "rdp"),
        rule("admin-ssh", "198.18.50.11", "198.18.20.0/25", "ssh"),
    ));
    error_with(
        &e,
        ErrorCode::RouteUnsanitized,
        "route \"internet\" ⇄ \"lgwan\"",
        &[
            "relay 198.18.50.10 in zone \"management\", which reaches 198.18.50.11 (intra-zone)",
            "rule \"admin-ssh\" (198.18.50.11 → 198.18.20.0/25, service ssh) ⇄ 198.18.20.0/25 in zone \"lgwan\"",
        ],
    );
}

#[test]
fn a_longer_chain_through_two_zones_is_found() {
    // internet → management (rule), management → sanitization (the lab's mgmt-ssh),
    // sanitization → lgwan (rule): three rules, two relays
    let e = refused(&format!(
        "{}{}",
        rule("vendor", "203.0.113.80", "198.18.50.10", "ssh"),
        rule("sz-lg", "198.18.40.10", "198.18.20.25", "ssh"),
    ));
    error_with(
        &e,
        ErrorCode::RouteUnsanitized,
        "route \"internet\" ⇄ \"lgwan\"",
        &[
            "203.0.113.80 in zone \"internet\" ⇄ rule \"vendor\"",
            "⇄ relay 198.18.50.10 in zone \"management\" ⇄",
            "rule \"mgmt-ssh\" (zone:management → zone:sanitization, service ssh)",
            "⇄ relay 198.18.40.10 in zone \"sanitization\" ⇄",
            "rule \"sz-lg\"",
        ],
    );
}

#[test]
fn path_legs_are_not_edges() {
    // the lab's own paths join internet, sanitization and lgwan hosts: that is what a
    // path declares; and a management rule beside them changes nothing
    let p = loaded(&rule("mgmt-relay", "zone:management", "198.18.40.10", "smtp"));
    assert!(p.warnings(DEC_2026).is_empty(), "{:?}", p.warnings(DEC_2026));
}

#[test]
fn a_rule_naming_the_exception_landing_host_is_refused() {
    let e = refused(&rule("juki-out", "198.18.20.30", "198.18.40.10", "smtp"));
    error_with(
        &e,
        ErrorCode::RouteMynumber,
        "route from exception \"juki-batch\"",
        &[
            "exception \"juki-batch\" brings マイナンバー利用事務系 data to 198.18.20.30 in zone \"lgwan\"",
            "leads on to zone \"sanitization\"",
            "landing host 198.18.20.30 in zone \"lgwan\" ⇄ rule \"juki-out\" (198.18.20.30 → 198.18.40.10, service smtp) ⇄ 198.18.40.10 in zone \"sanitization\"",
            "narrow rule \"juki-out\"",
        ],
    );
    // ... also through other zones: management administers the landing host and, by
    // the lab's mgmt-ssh, the sanitisers
    let e = refused(&rule("admin-juki", "zone:management", "198.18.20.16/28", "ssh"));
    error_with(
        &e,
        ErrorCode::RouteMynumber,
        "route from exception \"juki-batch\"",
        &[
            "rule \"admin-juki\" (zone:management → 198.18.20.16/28, service ssh)",
            "relay any host of zone \"management\"",
            "rule \"mgmt-ssh\"",
            "zone \"sanitization\"",
        ],
    );
}

#[test]
fn a_zone_wide_rule_from_lgwan_only_warns() {
    let p = loaded(&format!(
        "[[service]]\nname = \"dns\"\nproto = \"udp\"\nports = [53]\napp = \"dns\"\n{}",
        rule("lgwan-dns", "zone:lgwan", "198.18.40.53", "dns")
    ));
    warning_with(
        &p.warnings(DEC_2026),
        WarningCode::RouteMynumber,
        "route from exception \"juki-batch\"",
        &["rule \"lgwan-dns\" (written for the whole LGWAN zone)", "198.18.40.53 in zone \"sanitization\""],
    );
    // a CIDR holding the whole zone in its family counts as zone-wide
    let p = loaded(&format!(
        "[[service]]\nname = \"dns\"\nproto = \"udp\"\nports = [53]\napp = \"dns\"\n{}",
        rule("lgwan-dns", "198.18.20.0/24", "198.18.40.53", "dns")
    ));
    assert!(p.warnings(DEC_2026).iter().any(|w| w.code == WarningCode::RouteMynumber));
}

#[test]
fn a_bare_address_as_a_zone_prefix_is_refused_with_the_cidr_to_write() {
    let text = LAB.replace("prefixes = [\"198.18.50.0/24\"]", "prefixes = [\"198.18.50.0\"]");
    let e = load_str(&text, "lab.toml").unwrap_err();
    let x = e.errors.iter().find(|x| x.code == ErrorCode::ZoneBareAddress).unwrap_or_else(|| panic!("{e}"));
    assert_eq!(x.item, "zone \"management\"");
    assert!(x.message.contains("is the single host 198.18.50.0/32"), "{}", x.message);
    assert!(x.message.contains("write \"198.18.50.0/24\" for the network"), "{}", x.message);
}

#[test]
fn a_nested_prefix_warns_with_the_hosts_it_moves() {
    let p = loaded(&format!(
        "[[zone]]\nname = \"admins\"\nkind = \"management\"\nprefixes = [\"198.18.20.128/25\"]\nupstream = true\n{}",
        rule("admins-sz", "198.18.20.130", "zone:sanitization", "ssh")
    ));
    warning_with(
        &p.warnings(DEC_2026),
        WarningCode::NestedPrefix,
        "zone \"admins\"",
        &[
            "prefix 198.18.20.128/25 lies inside prefix 198.18.20.0/24 of zone \"lgwan\"",
            "belong to zone \"admins\"",
            "it moves rule \"admins-sz\" `from` 198.18.20.130",
        ],
    );
    // the internet zone's 0.0.0.0/0 catch-all is what longest-prefix match is for
    assert!(loaded("").warnings(DEC_2026).is_empty());
}

#[test]
fn an_exception_over_a_zone_or_a_wide_cidr_is_refused() {
    let e = refused(
        "[[exception]]\nname = \"wide\"\nfrom = \"zone:mynumber\"\nto = \"198.18.20.0/24\"\nservice = \"sftp\"\napproval = \"X-1\"\n",
    );
    let wide: Vec<_> = e.errors.iter().filter(|x| x.code == ErrorCode::ExceptionWide).collect();
    assert_eq!(wide.len(), 2, "{e}");
    assert!(wide.iter().all(|x| x.item == "exception \"wide\""));
    assert!(wide[0].message.contains("`from` \"zone:mynumber\" is a whole zone"), "{e}");
    assert!(wide[1].message.contains("`to` \"198.18.20.0/24\" holds 256 addresses"), "{e}");
    // a /28 is the widest accepted
    loaded("[[exception]]\nname = \"narrow\"\nfrom = \"198.18.10.16/28\"\nto = \"198.18.20.30\"\nservice = \"sftp\"\napproval = \"X-2\"\n");
    let e = refused(
        "[[exception]]\nname = \"v6\"\nfrom = \"2001:db8:10::/120\"\nto = \"198.18.20.30\"\nservice = \"sftp\"\napproval = \"X-3\"\n",
    );
    error_with(&e, ErrorCode::ExceptionWide, "exception \"v6\"", &["holds 256 addresses", "IPv6 /124"]);
}

#[test]
fn a_list_as_an_endpoint_gets_a_hint() {
    let e = refused("[[rule]]\nname = \"two\"\nfrom = [\"198.18.50.1\", \"198.18.50.2\"]\nto = \"zone:sanitization\"\nservice = \"ssh\"\n");
    error_with(&e, ErrorCode::EndpointList, "rule \"two\"", &["`from` is a list of 2", "takes one endpoint"]);
    assert_eq!(e.errors.len(), 1, "no serde type error on top: {e}");
}

#[test]
fn unused_services_and_paths_that_never_chain_warn() {
    let p = loaded(
        "[[service]]\nname = \"ntp\"\nproto = \"udp\"\nports = [123]\n\
         [[path]]\nname = \"half-mail\"\nmethod = \"mail-text\"\n  [[path.leg]]\n  from = \"zone:internet\"\n  to = \"198.18.40.11\"\n  service = \"smtp\"\n",
    );
    let w = p.warnings(DEC_2026);
    warning_with(
        &w,
        WarningCode::ServiceUnused,
        "service \"ntp\"",
        &["no path leg, exception or rule uses it"],
    );
    warning_with(
        &w,
        WarningCode::PathNoChain,
        "path \"half-mail\"",
        &["leg 1 meets sanitiser 198.18.40.11", "only zone \"internet\"", "receives but never delivers"],
    );
    assert_eq!(w.len(), 2, "{w:#?}");
}

#[test]
fn exceptions_warn_before_and_after_they_expire() {
    let p = loaded("");
    // 2027-03-15T00:00:00+09:00: 17 days before the end of 2027-03-31
    let w = p.warnings(Timestamp::from_secs(1_805_036_400));
    warning_with(
        &w,
        WarningCode::ExceptionExpiring,
        "exception \"juki-batch\"",
        &["expires 2027-03-31 (within 17 days, approval R8-情政-012)"],
    );
    // the last instant of the notice period and the first after it
    let end = Timestamp::from_secs(1_806_505_200);
    assert_eq!(p.warnings(Timestamp(end.0 - 30 * 86_400 * 1_000_000_000)).len(), 1);
    assert!(p.warnings(Timestamp(end.0 - 30 * 86_400 * 1_000_000_000 - 1)).is_empty());
    let w = p.warnings(end);
    warning_with(&w, WarningCode::ExceptionExpired, "exception \"juki-batch\"", &["expired (2027-03-31"]);
}

#[test]
fn the_codes_of_some_classic_mistakes() {
    let e = refused(&rule("web", "zone:lgwan", "zone:internet", "https"));
    assert!(e.has(ErrorCode::RuleCrossing), "{e}");
    let e = refused(&rule("r", "zone:nowhere", "zone:lgwan", "nothing"));
    assert!(e.has(ErrorCode::RefZone) && e.has(ErrorCode::RefService), "{e}");
    let e = load_str("[[zone]\n", "t").unwrap_err();
    assert!(e.has(ErrorCode::TomlSyntax), "{e}");
}

#[test]
fn a_thousand_rules_check_quickly() {
    // 1 000 rules among 20 management and sanitization zones, all on the LGWAN side of
    // the separation (no route), plus the lab: the analysis is linear in the rules.
    let mut text = String::from(LAB);
    for z in 0..20 {
        let kind = if z % 2 == 0 { "management" } else { "sanitization" };
        text += &format!(
            "[[zone]]\nname = \"z{z}\"\nkind = \"{kind}\"\nprefixes = [\"198.19.{z}.0/24\"]\nupstream = true\n"
        );
    }
    for i in 0..1000 {
        let (a, b) = (i % 20, (i * 7 + 1) % 20);
        let b = if a == b { (b + 1) % 20 } else { b };
        text += &rule(&format!("r{i}"), &format!("198.19.{a}.{}", i % 250 + 1), &format!("zone:z{b}"), "ssh");
    }
    let start = std::time::Instant::now();
    let p = load_str(&text, "big.toml").unwrap_or_else(|e| panic!("{e}"));
    let took = start.elapsed();
    assert_eq!(p.rules().len(), 1001);
    // Generous for unoptimised test builds on a shared machine; see docs/performance.md
    // for the measured release figure.
    assert!(took.as_secs_f64() < 5.0, "{took:?}");
}
