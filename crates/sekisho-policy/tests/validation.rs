//! One test per rejection class: the error names the item (and the invariant).

use sekisho_policy::{load_str, ConfigErrors};

/// A valid base: five zones, a few services. Tests append items to it.
const BASE: &str = r#"
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
prefixes = ["198.18.40.0/24"]

[[zone]]
name = "management"
kind = "management"
prefixes = ["198.18.50.0/24"]

[[zone]]
name = "internet"
kind = "internet"
prefixes = ["203.0.113.0/24", "0.0.0.0/0"]

[[service]]
name = "smtp"
proto = "tcp"
ports = [25]
app = "smtp"

[[service]]
name = "ssh"
proto = "tcp"
ports = [22]
app = "ssh"

[[service]]
name = "https"
proto = "tcp"
ports = [443]
app = "tls"

[[service]]
name = "rdp"
proto = "tcp"
ports = [3389]
app = "rdp"
"#;

fn errors(extra: &str) -> ConfigErrors {
    let text = format!("{BASE}\n{extra}");
    match load_str(&text, "test.toml") {
        Ok(_) => panic!("expected errors for:\n{extra}"),
        Err(e) => e,
    }
}

fn errors_with_prefix(prefix: &str, extra: &str) -> ConfigErrors {
    let text = format!("{prefix}{BASE}\n{extra}");
    match load_str(&text, "test.toml") {
        Ok(_) => panic!("expected errors for:\n{extra}"),
        Err(e) => e,
    }
}

fn loads(extra: &str) {
    let text = format!("{BASE}\n{extra}");
    if let Err(e) = load_str(&text, "test.toml") {
        panic!("{e}");
    }
}

/// Assert some error has exactly this item and a message containing every needle.
#[track_caller]
fn has(e: &ConfigErrors, item: &str, needles: &[&str]) {
    let ok = e.errors.iter().any(|x| x.item == item && needles.iter().all(|n| x.message.contains(n)));
    assert!(ok, "no error on {item} containing {needles:?}; got:\n{e}");
}

#[test]
fn base_loads() {
    loads("");
}

#[test]
fn display_is_one_line_per_error_with_origin() {
    let e = errors("[[rule]]\nname = \"x\"\nfrom = \"zone:nope\"\nto = \"zone:lgwan\"\nservice = \"nope\"\n");
    assert_eq!(e.origin, "test.toml");
    assert_eq!(e.errors.len(), 2);
    let text = e.to_string();
    assert_eq!(text.lines().count(), 2);
    for line in text.lines() {
        assert!(line.starts_with("test.toml: rule \"x\": "), "{line}");
    }
    let err: &dyn std::error::Error = &e;
    assert!(err.to_string().contains("zone \"nope\""));
}

#[test]
fn toml_syntax_error_is_one_line() {
    let e = load_str("[[zone]]\nname = \"a\"\nprefixes = [\"1\"\n", "bad.toml").unwrap_err();
    assert_eq!(e.errors.len(), 1);
    assert_eq!(e.errors[0].item, "TOML syntax");
    assert!(e.errors[0].message.contains("line 3"), "{e}");
    assert_eq!(e.to_string().lines().count(), 1, "{e}");
}

#[test]
fn unknown_keys_everywhere() {
    let e = errors_with_prefix(
        "zones = 1\n",
        r#"
[daemon]
mod = "enforce"
[flow]
capacty = 10
[link]
ethertypes = []
[alert]
targets = "udp://198.18.50.9"
[[zone]]
name = "extra"
kind = "management"
prefix = ["198.18.60.0/24"]
prefixes = ["198.18.61.0/24"]
colour = "red"
[[path]]
name = "p"
method = "mail-text"
  [[path.leg]]
  from = "zone:internet"
  to = "198.18.40.10"
  service = "smtp"
  [[path.leg]]
  from = "198.18.40.10"
  to = "198.18.20.25"
  service = "smtp"
  servce = "smtp"
[[exception]]
name = "e"
from = "198.18.10.5"
to = "198.18.20.30"
service = "ssh"
approval = "R8-1"
expire = "2027-03-31"
[[rule]]
name = "r"
from = "zone:management"
to = "zone:sanitization"
service = "ssh"
comment = "x"
[[service]]
name = "s"
proto = "tcp"
port = [1]
ports = [1]
[[port]]
name = "pt"
zone = "lgwan"
inside = "a0"
outside = "a1"
vlan = 3
"#,
    );
    has(&e, "top level", &["unknown section `zones`", "did you mean `zone`?", "daemon, flow"]);
    has(&e, "[daemon]", &["unknown key `mod`", "did you mean `mode`?", "mode, control_socket"]);
    has(&e, "[flow]", &["unknown key `capacty`", "`capacity`"]);
    has(&e, "[link]", &["unknown key `ethertypes`", "allow_ethertypes"]);
    has(&e, "[alert]", &["unknown key `targets`", "did you mean `target`?", "event_file, target"]);
    has(&e, "zone \"extra\"", &["unknown key `prefix`", "accepted keys: name, kind, prefixes"]);
    has(&e, "zone \"extra\"", &["unknown key `colour`"]);
    has(&e, "path \"p\" leg 2", &["unknown key `servce`", "did you mean `service`?"]);
    has(&e, "exception \"e\"", &["unknown key `expire`", "did you mean `expires`?"]);
    has(&e, "rule \"r\"", &["unknown key `comment`"]);
    has(&e, "service \"s\"", &["unknown key `port`"]);
    has(&e, "port \"pt\"", &["unknown key `vlan`"]);
    // nothing else: every other key of those items was fine (and a zone with
    // only unknown keys still takes part in the invariant checks)
    assert_eq!(e.errors.len(), 12, "{e}");
}

#[test]
fn empty_alert_table_is_accepted() {
    loads("[alert]\n");
}

#[test]
fn missing_keys_and_wrong_types() {
    let e = errors(
        r#"
[[zone]]
name = "nokind"
prefixes = ["198.18.60.0/24"]
[[zone]]
name = 5
kind = "management"
prefixes = ["198.18.61.0/24"]
[[zone]]
name = "strprefixes"
kind = "management"
prefixes = "198.18.62.0/24"
[[service]]
name = "strport"
proto = "tcp"
ports = [true]
[[rule]]
name = "noservice"
from = "zone:management"
to = "zone:sanitization"
[flow]
capacity = "1000"
[daemon]
mode = 1
[[port]]
name = "p"
"#,
    );
    has(&e, "zone \"nokind\"", &["missing required key `kind`"]);
    has(&e, "zone #7", &["key `name`", "expected a string in quotes"]);
    has(&e, "zone \"strprefixes\"", &["key `prefixes`", "sequence"]);
    has(&e, "service \"strport\"", &["ports[0]", "a port number"]);
    has(&e, "rule \"noservice\"", &["missing required key `service`"]);
    has(&e, "[flow]", &["key `capacity`", "an integer (without quotes)"]);
    has(&e, "[daemon]", &["key `mode`", "string"]);
    has(&e, "port \"p\"", &["missing required key"]);
}

#[test]
fn sections_of_the_wrong_shape() {
    let e = errors("[rule]\nname = \"x\"\n");
    has(&e, "[[rule]]", &["write each one as [[rule]]"]);
    let e = errors("[[flow]]\ncapacity = 5\n");
    has(&e, "[flow]", &["write [flow], not [[flow]]"]);
    let e = errors("[[path]]\nname = \"p\"\nmethod = \"mail-text\"\nleg = []\n");
    has(&e, "path \"p\"", &["has no legs", "[[path.leg]]"]);
}

#[test]
fn duplicate_names() {
    let e = errors(
        r#"
[[zone]]
name = "lgwan"
kind = "lgwan"
prefixes = ["198.18.21.0/24"]
[[service]]
name = "ssh"
proto = "tcp"
ports = [2222]
[[rule]]
name = "r"
from = "zone:management"
to = "zone:sanitization"
service = "ssh"
[[rule]]
name = "r"
from = "zone:management"
to = "zone:sanitization"
service = "https"
"#,
    );
    has(&e, "zone \"lgwan\"", &["another zone is already named \"lgwan\""]);
    has(&e, "service \"ssh\"", &["another service is already named \"ssh\""]);
    has(&e, "rule \"r\"", &["another rule is already named \"r\"", "unique"]);
    let e = errors("[[rule]]\nname = \"a b\"\nfrom = \"zone:management\"\nto = \"zone:sanitization\"\nservice = \"ssh\"\n");
    has(&e, "rule \"a b\"", &["name \"a b\" is not valid"]);
}

#[test]
fn unresolved_references() {
    let e = errors(
        r#"
[[port]]
name = "p"
zone = "lgwn"
inside = "a0"
outside = "a1"
[[rule]]
name = "r"
from = "zone:managment"
to = "zone:sanitization"
service = "sshh"
[[path]]
name = "p"
method = "mail-text"
  [[path.leg]]
  from = "zone:internet"
  to = "198.18.40.10"
  service = "smpt"
"#,
    );
    has(&e, "port \"p\"", &["`zone` names zone \"lgwn\", which is not defined", "did you mean `lgwan`?"]);
    has(&e, "rule \"r\"", &["`from` names zone \"managment\"", "did you mean `management`?"]);
    has(
        &e,
        "rule \"r\"",
        &[
            "service \"sshh\" is not defined",
            "did you mean `ssh`?",
            "defined services: https, rdp, smtp, ssh",
        ],
    );
    has(&e, "path \"p\" leg 1", &["service \"smpt\" is not defined"]);
}

#[test]
fn bad_prefixes_and_addresses() {
    let e = errors(
        r#"
[[zone]]
name = "z"
kind = "management"
prefixes = ["198.18.60.1/24", "198.18.61.0/33", "banana", "198.18.62.0/255.255.255.0"]
[[rule]]
name = "r"
from = "198.18.50.1/24"
to = "198.18.40.0/24x"
service = "ssh"
"#,
    );
    has(&e, "zone \"z\"", &["\"198.18.60.1/24\" has host bits set", "network address is 198.18.60.0/24"]);
    has(&e, "zone \"z\"", &["\"198.18.61.0/33\" has an invalid prefix length"]);
    has(&e, "zone \"z\"", &["\"banana\" is not an IPv4/IPv6 address or CIDR"]);
    has(&e, "zone \"z\"", &["netmasks like /255.255.255.0 are not accepted"]);
    has(
        &e,
        "rule \"r\"",
        &[
            "`from` \"198.18.50.1/24\" has host bits set",
            "198.18.50.0/24",
            "\"198.18.50.1\" for the single host",
        ],
    );
    has(&e, "rule \"r\"", &["`to` \"198.18.40.0/24x\" has an invalid prefix length"]);
}

#[test]
fn zone_prefix_conflicts_and_empty_zone() {
    let e = errors(
        r#"
[[zone]]
name = "dup"
kind = "management"
prefixes = ["198.18.20.0/24", "198.18.70.0/24", "198.18.70.0/24"]
[[zone]]
name = "empty"
kind = "management"
prefixes = []
[[rule]]
name = "r"
from = "zone:management"
to = "zone:sanitization"
service = "ssh"
"#,
    );
    has(&e, "zone \"dup\"", &["prefix 198.18.20.0/24 is also in zone \"lgwan\"", "exactly one zone"]);
    has(&e, "zone \"dup\"", &["prefix 198.18.70.0/24 is listed twice"]);
    has(&e, "zone \"empty\"", &["has no prefixes"]);
    // invariant checks are skipped (and said so) while zones are broken
    has(&e, "policy", &["invariants were not checked"]);
}

#[test]
fn interfaces() {
    let e = errors(
        r#"
[[port]]
name = "a"
zone = "lgwan"
inside = "lg-in"
outside = "lg-in"
[[port]]
name = "b"
zone = "internet"
inside = "lg-in"
outside = "this-name-is-too-long"
[[port]]
name = "c"
zone = "internet"
inside = "in/1"
outside = "in 2"
[[port]]
name = "a"
zone = "internet"
inside = "x0"
outside = "x1"
"#,
    );
    has(&e, "port \"a\"", &["inside and outside are both \"lg-in\""]);
    has(&e, "port \"a\"", &["outside interface \"lg-in\" is already used by port \"a\""]);
    has(&e, "port \"b\"", &["inside interface \"lg-in\" is already used by port \"a\""]);
    has(&e, "port \"b\"", &["\"this-name-is-too-long\" is not valid", "1-15 bytes"]);
    has(&e, "port \"c\"", &["\"in/1\" is not valid"]);
    has(&e, "port \"c\"", &["\"in 2\" is not valid"]);
    has(&e, "port \"a\"", &["another port is already named \"a\""]);
}

#[test]
fn unknown_enum_values_list_the_accepted_ones() {
    let e = errors(
        r#"
[daemon]
mode = "enforcing"
[[zone]]
name = "z"
kind = "dmz"
prefixes = ["198.18.60.0/24"]
[[service]]
name = "s"
proto = "sctp"
app = "ftp"
[[path]]
name = "p"
method = "mail"
  [[path.leg]]
  from = "zone:internet"
  to = "198.18.40.10"
  service = "smtp"
"#,
    );
    has(&e, "[daemon]", &["unknown mode \"enforcing\"", "accepted values: enforce, monitor"]);
    has(&e, "zone \"z\"", &["unknown kind \"dmz\"", "mynumber, lgwan, internet, sanitization, management"]);
    has(&e, "service \"s\"", &["unknown proto \"sctp\"", "tcp, udp, icmp, any, gre, ipip, ipv6"]);
    has(
        &e,
        "service \"s\"",
        &["unknown app \"ftp\"", "any, smtp, rdp, tls, http, ica, ssh, dns, vnc, vxlan, teredo"],
    );
    has(
        &e,
        "path \"p\"",
        &["unknown method \"mail\"", "mail-text, file-sanitize, screen-transfer, web-isolation"],
    );
}

#[test]
fn service_ports_and_apps() {
    let e = errors(
        r#"
[[service]]
name = "noports"
proto = "tcp"
[[service]]
name = "ping"
proto = "icmp"
ports = [7]
[[service]]
name = "mail-udp"
proto = "udp"
ports = [25]
app = "smtp"
[[service]]
name = "vx"
proto = "tcp"
ports = [4789]
app = "vxlan"
[[service]]
name = "range"
proto = "tcp"
ports = ["9000-8000", 0, 70000, "x"]
"#,
    );
    has(&e, "service \"noports\"", &["a tcp service needs `ports`"]);
    has(&e, "service \"ping\"", &["`ports` only applies to tcp and udp"]);
    has(&e, "service \"mail-udp\"", &["app \"smtp\" runs over tcp, but proto is \"udp\""]);
    has(&e, "service \"vx\"", &["app \"vxlan\" runs over udp"]);
    has(&e, "service \"range\"", &["\"9000-8000\" is backwards"]);
    has(&e, "service \"range\"", &["port 0 is out of range"]);
    has(&e, "service \"range\"", &["port 70000 is out of range"]);
    has(&e, "service \"range\"", &["\"x\" is neither a port number nor a range"]);
    // the accepted shapes
    loads(
        r#"
[[service]]
name = "rdp-udp"
proto = "udp"
ports = [3389]
app = "rdp"
[[service]]
name = "dns-tcp"
proto = "tcp"
ports = [53]
app = "dns"
[[service]]
name = "vxlan"
proto = "udp"
ports = [4789]
app = "vxlan"
[[service]]
name = "gre"
proto = "gre"
[[service]]
name = "web"
proto = "tcp"
ports = [80, "8000-8080", "443"]
"#,
    );
}

#[test]
fn flow_limits() {
    let e = errors("[flow]\ncapacity = 0\ntcp_syn_timeout_s = 0\nudp_timeout_s = -5\n");
    has(&e, "[flow]", &["capacity = 0 is out of range", "between 1 and 100000000"]);
    has(&e, "[flow]", &["tcp_syn_timeout_s = 0 is out of range", "positive"]);
    has(&e, "[flow]", &["udp_timeout_s = -5 is out of range"]);
    let e = errors("[flow]\ncapacity = 100_000_001\n");
    has(&e, "[flow]", &["capacity = 100000001 is out of range"]);
    loads("[flow]\ncapacity = 100_000_000\nicmp_timeout_s = 1\n");
}

#[test]
fn daemon_and_link_settings() {
    let e = errors("[daemon]\ncontrol_socket = \"sekisho.sock\"\n[link]\nallow_ethertypes = [0x0800, 0x0806, 0x8100, 0x05dc, 0x88cc, 0x88cc, 70000]\n");
    has(&e, "[daemon]", &["control_socket \"sekisho.sock\" must be an absolute path"]);
    has(&e, "[link]", &["0x0800 is IPv4"]);
    has(&e, "[link]", &["0x0806 is ARP"]);
    has(&e, "[link]", &["0x8100 is a VLAN tag"]);
    has(&e, "[link]", &["0x05dc is an 802.3 length"]);
    has(&e, "[link]", &["0x88cc is listed twice"]);
    has(&e, "[link]", &["70000 is not an ethertype"]);
    // Ethertypes that carry IP (MPLS, PPPoE), hide it (MACsec, provider backbone
    // bridging) or mean anything (local experimental) are not link-only.
    let e = errors(
        "[link]\nallow_ethertypes = [0x8847, 0x8848, 0x8863, 0x8864, 0x88e5, 0x88e7, 0x88b5, 0x22f3]\n",
    );
    for t in ["0x8847", "0x8848", "0x8863", "0x8864", "0x88e5", "0x88e7", "0x88b5", "0x22f3"] {
        has(&e, "[link]", &[&format!("{t} is not a link-only protocol")]);
    }
    let text = format!("{BASE}\n[daemon]\nmode = \"monitor\"\ncontrol_socket = \"/tmp/s.sock\"\n[link]\nallow_ethertypes = [0x88cc, 0x8809, 0x888e, 0x88f7, 0x8902, 0x88e3, 0x8808, 0x22ea, 0x88f5, 0x88f6]\n");
    let p = load_str(&text, "t").unwrap();
    assert_eq!(p.mode(), sekisho_policy::Mode::Monitor);
    assert_eq!(p.control_socket(), "/tmp/s.sock");
    assert_eq!(
        p.allow_ethertypes(),
        [0x88cc, 0x8809, 0x888e, 0x88f7, 0x8902, 0x88e3, 0x8808, 0x22ea, 0x88f5, 0x88f6]
    );
}

#[test]
fn control_groups() {
    let e = errors("[control]\nadmin_group = \"Wheel Users\"\nread_group = \"\"\nreadgroup = \"x\"\n");
    has(&e, "[control]", &["admin_group \"Wheel Users\" is not a group name"]);
    has(&e, "[control]", &["read_group \"\" is not a group name"]);
    has(&e, "[control]", &["unknown key `readgroup`", "did you mean `read_group`?"]);
    let text =
        format!("{BASE}\n[control]\nadmin_group = \"sekisho-admin\"\nread_group = \"_sekisho_read\"\n");
    let p = load_str(&text, "t").unwrap();
    assert_eq!(p.control().admin_group.as_deref(), Some("sekisho-admin"));
    assert_eq!(p.control().read_group.as_deref(), Some("_sekisho_read"));
    let monitor = p.with_mode(sekisho_policy::Mode::Monitor);
    assert_eq!(monitor.mode(), sekisho_policy::Mode::Monitor);
    assert_eq!(monitor.rules(), p.rules());
    assert!(load_str(BASE, "t").unwrap().control().admin_group.is_none());
}

#[test]
fn mynumber_never_with_internet_or_sanitization() {
    let e = errors(
        r#"
[[rule]]
name = "mn-out"
from = "zone:mynumber"
to = "203.0.113.9"
service = "https"
[[path]]
name = "mn-mail"
method = "mail-text"
  [[path.leg]]
  from = "198.18.10.0/24"
  to = "198.18.40.10"
  service = "smtp"
[[exception]]
name = "mn-san"
from = "198.18.40.10"
to = "198.18.10.5"
service = "ssh"
approval = "R8-1"
[[rule]]
name = "too-wide"
from = "0.0.0.0/0"
to = "zone:sanitization"
service = "ssh"
"#,
    );
    let inv = "マイナンバー利用事務系 (mynumber) may never communicate with internet/sanitization";
    has(&e, "rule \"mn-out\"", &[inv, "`to` \"203.0.113.9\" reaches zone \"internet\" (internet)"]);
    has(&e, "path \"mn-mail\" leg 1", &[inv, "zone \"sanitization\" (sanitization)"]);
    has(&e, "exception \"mn-san\"", &[inv]);
    has(&e, "rule \"too-wide\"", &[inv, "`from` \"0.0.0.0/0\" reaches zone \"mynumber\""]);
    assert_eq!(e.errors.len(), 4, "{e}");
}

#[test]
fn rules_and_legs_never_leave_mynumber() {
    let e = errors(
        r#"
[[rule]]
name = "mn-lg"
from = "zone:mynumber"
to = "zone:lgwan"
service = "ssh"
[[rule]]
name = "mgmt-mn"
from = "zone:management"
to = "198.18.10.5"
service = "ssh"
[[path]]
name = "p"
method = "file-sanitize"
  [[path.leg]]
  from = "198.18.20.5"
  to = "2001:db8:10::5"
  service = "https"
"#,
    );
    for item in ["rule \"mn-lg\"", "rule \"mgmt-mn\""] {
        has(
            &e,
            item,
            &[
                "a rule may not connect マイナンバー利用事務系 (mynumber) with any other zone",
                "[[exception]] with an approval",
            ],
        );
    }
    has(
        &e,
        "path \"p\" leg 1",
        &["a path leg may not connect マイナンバー利用事務系 (mynumber)", "[[exception]]"],
    );
    assert_eq!(e.errors.len(), 3, "{e}");
}

#[test]
fn rules_never_cross_lgwan_internet() {
    let e = errors(
        r#"
[[rule]]
name = "web"
from = "zone:lgwan"
to = "zone:internet"
service = "https"
[[rule]]
name = "in"
from = "203.0.113.0/24"
to = "198.18.20.25"
service = "smtp"
"#,
    );
    for item in ["rule \"web\"", "rule \"in\""] {
        has(
            &e,
            item,
            &[
                "a rule may never cross LGWAN接続系 (lgwan) ↔ インターネット接続系 (internet)",
                "only a [[path]] leg through a sanitization host can",
            ],
        );
    }
}

#[test]
fn legs_touch_a_sanitization_host() {
    let e = errors(
        r#"
[[path]]
name = "direct-mail"
method = "mail-text"
  [[path.leg]]
  from = "zone:internet"
  to = "198.18.20.25"
  service = "smtp"
[[path]]
name = "mgmt"
method = "file-sanitize"
  [[path.leg]]
  from = "zone:management"
  to = "zone:lgwan"
  service = "ssh"
[[path]]
name = "half"
method = "file-sanitize"
  [[path.leg]]
  from = "198.18.0.0/16"
  to = "198.18.50.5"
  service = "https"
[[path]]
name = "st-zone"
method = "screen-transfer"
  [[path.leg]]
  from = "zone:lgwan"
  to = "zone:internet"
  service = "rdp"
[[path]]
name = "st-cidr"
method = "screen-transfer"
  [[path.leg]]
  from = "zone:lgwan"
  to = "203.0.113.0/28"
  service = "rdp"
[[path]]
name = "st-app"
method = "screen-transfer"
  [[path.leg]]
  from = "zone:lgwan"
  to = "203.0.113.50"
  service = "https"
"#,
    );
    has(
        &e,
        "path \"direct-mail\" leg 1",
        &[
            "may not connect LGWAN接続系 (lgwan) and インターネット接続系 (internet) directly",
            "sanitization zone",
        ],
    );
    has(&e, "path \"mgmt\" leg 1", &["every path leg must touch a host of a 無害化 (sanitization) zone"]);
    has(&e, "path \"st-zone\" leg 1", &["must name a single host (the VDI/RDP server) as `to`"]);
    has(&e, "path \"st-cidr\" leg 1", &["must name a single host", "\"203.0.113.0/28\""]);
    has(&e, "path \"st-app\" leg 1", &["screen protocol", "service \"https\" has app \"tls\""]);
    // 198.18.0.0/16 also reaches mynumber: the isolation invariant is what is reported
    has(
        &e,
        "path \"half\" leg 1",
        &[
            "a path leg may not connect マイナンバー利用事務系 (mynumber) with any other zone",
            "`from` \"198.18.0.0/16\" reaches zone \"mynumber\"",
        ],
    );
}

#[test]
fn screen_transfer_both_directions_and_sanitizer_hosts() {
    loads(
        r#"
[[service]]
name = "ica"
proto = "tcp"
ports = [1494, 2598]
app = "ica"
[[service]]
name = "vnc"
proto = "tcp"
ports = ["5900-5910"]
app = "vnc"
[[path]]
name = "alpha"
method = "screen-transfer"
  [[path.leg]]
  from = "zone:lgwan"
  to = "203.0.113.50"
  service = "rdp"
  [[path.leg]]
  from = "198.18.20.0/25"
  to = "203.0.113.51/32"
  service = "ica"
[[path]]
name = "beta"
method = "screen-transfer"
  [[path.leg]]
  from = "zone:internet"
  to = "198.18.20.100"
  service = "vnc"
[[path]]
name = "mail"
method = "mail-text"
  [[path.leg]]
  # a single address inside both sanitization and the 0.0.0.0/0 catch-all
  # touches only sanitization
  from = "zone:internet"
  to = "198.18.40.10"
  service = "smtp"
"#,
    );
}

#[test]
fn exceptions_only_between_mynumber_and_lgwan_with_approval() {
    let e = errors(
        r#"
[[exception]]
name = "lg-mgmt"
from = "zone:lgwan"
to = "198.18.50.5"
service = "ssh"
approval = "R8-2"
[[exception]]
name = "no-approval"
from = "198.18.10.5"
to = "198.18.20.30"
service = "ssh"
approval = "  "
[[exception]]
name = "bad-date"
from = "198.18.10.5"
to = "198.18.20.30"
service = "ssh"
approval = "R8-3"
expires = "31/03/2027"
[[exception]]
name = "wide"
from = "198.18.0.0/17"
to = "198.18.20.30"
service = "ssh"
approval = "R8-4"
[[exception]]
name = "missing-approval"
from = "198.18.10.5"
to = "198.18.20.30"
service = "ssh"
"#,
    );
    has(
        &e,
        "exception \"lg-mgmt\"",
        &[
            "an exception may only connect マイナンバー利用事務系 (mynumber) with LGWAN接続系 (lgwan)",
            "zone \"management\" (management)",
        ],
    );
    has(&e, "exception \"no-approval\"", &["approval is empty"]);
    has(&e, "exception \"bad-date\"", &["`expires` \"31/03/2027\" is neither a date"]);
    has(&e, "exception \"wide\"", &["an exception may only connect"]);
    has(&e, "exception \"missing-approval\"", &["missing required key `approval`"]);
    loads(
        r#"
[[exception]]
name = "both-ways"
from = "198.18.20.16/28"
to = "2001:db8:10::5"
service = "ssh"
approval = "R8-5"
expires = 2027-03-31T18:00:00+09:00
"#,
    );
}

#[test]
fn endpoint_outside_every_zone() {
    let text = r#"
[[zone]]
name = "lg"
kind = "lgwan"
prefixes = ["198.18.20.0/24"]
[[zone]]
name = "sz"
kind = "sanitization"
prefixes = ["198.18.40.0/24"]
[[service]]
name = "https"
proto = "tcp"
ports = [443]
[[rule]]
name = "r"
from = "10.1.2.3"
to = "zone:sz"
service = "https"
"#;
    let e = load_str(text, "t").unwrap_err();
    has(&e, "rule \"r\"", &["`from` \"10.1.2.3\" lies in no zone"]);
}

#[test]
fn collects_every_problem_at_once() {
    let e = errors(
        r#"
[flow]
capacity = 0
[[zone]]
name = "bad"
kind = "nope"
prefixes = ["198.18.60.0/24"]
[[rule]]
name = "r1"
from = "zone:nope"
to = "zone:lgwan"
service = "ssh"
[[rule]]
name = "r2"
from = "zone:management"
to = "zone:sanitization"
service = "nope"
"#,
    );
    assert!(e.errors.len() >= 4, "{e}");
    has(&e, "[flow]", &["capacity"]);
    has(&e, "zone \"bad\"", &["unknown kind"]);
    has(&e, "rule \"r1\"", &["zone \"nope\""]);
    has(&e, "rule \"r2\"", &["service \"nope\""]);
}

#[test]
fn broken_items_do_not_cascade() {
    // the zone and service exist but are broken: references to them are not
    // reported again as undefined
    let e = errors(
        r#"
[[zone]]
name = "z"
kind = "management"
prefixes = [1]
[[service]]
name = "s"
proto = "tcp"
ports = ["x"]
[[port]]
name = "p"
zone = "z"
inside = "z0"
outside = "z1"
[[rule]]
name = "r"
from = "zone:z"
to = "zone:sanitization"
service = "s"
"#,
    );
    assert!(!e.mentions("not defined"), "{e}");
    has(&e, "zone \"z\"", &["prefixes[0]"]);
    has(&e, "service \"s\"", &["\"x\""]);
}

/// Every zone of BASE with a port, so that only the item under test is wrong.
const ALL_PORTS: &str = r#"
[[port]]
name = "mn"
zone = "mynumber"
inside = "mn-in"
outside = "mn-out"
[[port]]
name = "lg"
zone = "lgwan"
inside = "lg-in"
outside = "lg-out"
routers = ["198.18.20.1", "2001:db8:20::1"]
[[port]]
name = "sz"
zone = "sanitization"
inside = "sz-in"
outside = "sz-out"
[[port]]
name = "mg"
zone = "management"
inside = "mg-in"
outside = "mg-out"
"#;

#[test]
fn zones_without_a_port_must_say_upstream() {
    // Without any port the policy is for offline analysis only: no complaint.
    loads("");
    let e = errors(ALL_PORTS);
    has(&e, "zone \"internet\"", &["has no [[port]]", "upstream = true"]);
    loads(&format!(
        "{ALL_PORTS}[[port]]\nname = \"in\"\nzone = \"internet\"\ninside = \"in-in\"\noutside = \"in-out\"\n"
    ));
    let upstream = BASE.replace(
        "prefixes = [\"203.0.113.0/24\", \"0.0.0.0/0\"]",
        "prefixes = [\"203.0.113.0/24\", \"0.0.0.0/0\"]\nupstream = true",
    );
    assert!(load_str(&format!("{upstream}\n{ALL_PORTS}"), "t.toml").is_ok());
    let contradiction = upstream
        .replace("name = \"lgwan\"\nkind = \"lgwan\"", "name = \"lgwan\"\nkind = \"lgwan\"\nupstream = true");
    let e = load_str(&format!("{contradiction}\n{ALL_PORTS}"), "t.toml").unwrap_err();
    has(&e, "zone \"lgwan\"", &["says `upstream = true` but has a [[port]]"]);
    let e = load_str(&upstream.replace("upstream = true", "upstream = \"yes\""), "t.toml").unwrap_err();
    assert!(e.mentions("true or false"), "{e}");
}

#[test]
fn one_port_per_zone() {
    let e = errors(&format!(
        "{ALL_PORTS}\n[[port]]\nname = \"lg2\"\nzone = \"lgwan\"\ninside = \"lg2-in\"\noutside = \"lg2-out\"\n"
    ));
    has(&e, "port \"lg2\"", &["zone \"lgwan\" already has port \"lg\"", "its own [[zone]]"]);
}

#[test]
fn vlans_and_routers() {
    let port = |extra: &str| {
        format!(
            "[[port]]\nname = \"x\"\nzone = \"internet\"\ninside = \"x-in\"\noutside = \"x-out\"\n{extra}\n"
        )
    };
    let e = errors(&port("vlans = [10, 4095, 10, -1]\nrouters = [\"198.18.20.1\", \"203.0.113.1/32\", \"::ffff:203.0.113.1\", \"203.0.113.1\", \"203.0.113.1\", \"224.0.0.1\"]"));
    has(&e, "port \"x\"", &["vlans: 4095 is not a VLAN id"]);
    has(&e, "port \"x\"", &["vlans: -1 is not a VLAN id"]);
    has(&e, "port \"x\"", &["vlans: 10 is listed twice"]);
    has(
        &e,
        "port \"x\"",
        &["routers: 198.18.20.1 lies in zone \"lgwan\", not in the port's zone \"internet\""],
    );
    has(&e, "port \"x\"", &["routers: \"203.0.113.1/32\" is not an address"]);
    has(&e, "port \"x\"", &["routers: ::ffff:203.0.113.1 is an IPv4-mapped IPv6 address", "203.0.113.1"]);
    has(&e, "port \"x\"", &["routers: 203.0.113.1 is listed twice"]);
    has(&e, "port \"x\"", &["routers: 224.0.0.1 is a loopback, unspecified, multicast"]);
    let e = errors(&port("untagged = false"));
    has(&e, "port \"x\"", &["untagged = false and no `vlans`"]);
    let text = format!(
        "{BASE}\n{ALL_PORTS}\n{}",
        port("vlans = [20, 0, 10]\nuntagged = false\nrouters = [\"203.0.113.1\"]")
    );
    let p = load_str(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let x = p.ports().iter().find(|p| p.name == "x").unwrap();
    assert_eq!(x.vlans, [0, 10, 20]);
    assert!(!x.admits_vlan(None, None));
    assert!(x.admits_vlan(Some(10), None) && x.admits_vlan(Some(0), None));
    assert!(!x.admits_vlan(Some(11), None));
    assert!(!x.admits_vlan(Some(10), Some(20)), "two tags never");
    assert!(x.is_router("203.0.113.1".parse().unwrap()));
    let lg = p.ports().iter().find(|p| p.name == "lg").unwrap();
    assert!(
        lg.untagged && lg.vlans.is_empty() && lg.admits_vlan(None, None) && !lg.admits_vlan(Some(1), None)
    );
}

#[test]
fn ipv4_forms_inside_ipv6_are_refused() {
    let e = errors_with_prefix(
        "[[zone]]\nname = \"mapped\"\nkind = \"lgwan\"\nprefixes = [\"::ffff:198.18.30.0/120\", \"::198.18.31.0/120\", \"::ffff:0:198.18.32.0/120\"]\n",
        "[[rule]]\nname = \"r\"\nfrom = \"::ffff:198.18.50.1\"\nto = \"zone:sanitization\"\nservice = \"ssh\"\n",
    );
    has(&e, "zone \"mapped\"", &["IPv4-mapped IPv6", "198.18.30.0"]);
    has(&e, "zone \"mapped\"", &["IPv4-compatible IPv6", "198.18.31.0"]);
    has(&e, "zone \"mapped\"", &["IPv4-translated IPv6", "198.18.32.0"]);
    has(&e, "rule \"r\"", &["IPv4-mapped IPv6", "write the IPv4 form 198.18.50.1"]);
    // Translator and tunnel spellings (NAT64, 6to4, Teredo) too, whole or in part.
    let e = errors_with_prefix(
        "[[zone]]\nname = \"translated\"\nkind = \"lgwan\"\nprefixes = [\"64:ff9b::/96\", \"64:ff9b:1:2::/64\", \"2002:c612:1400::/40\", \"2001::/32\"]\n",
        "[[rule]]\nname = \"r\"\nfrom = \"64:ff9b::c612:3201\"\nto = \"zone:sanitization\"\nservice = \"ssh\"\n",
    );
    has(&e, "zone \"translated\"", &["64:ff9b::/96", "NAT64 well-known prefix"]);
    has(&e, "zone \"translated\"", &["64:ff9b:1:2::/64", "NAT64 local-use prefix"]);
    has(&e, "zone \"translated\"", &["2002:c612:1400::/40", "6to4"]);
    has(&e, "zone \"translated\"", &["2001::/32", "Teredo"]);
    has(&e, "rule \"r\"", &["NAT64", "names an IPv4 host"]);
}

const BREAKOUT_SERVICE: &str = r#"
[[service]]
name = "cloud"
proto = "tcp"
ports = [443]
app = "tls"
sni_allow = ["Portal.Example.LG.JP", "*.example.com"]
"#;

#[test]
fn local_breakout_goes_from_lgwan_to_internet_by_server_name() {
    loads(&format!(
        "{BREAKOUT_SERVICE}\n[[path]]\nname = \"alpha-prime\"\nmethod = \"local-breakout\"\n  [[path.leg]]\n  \
         from = \"zone:lgwan\"\n  to = \"203.0.113.0/24\"\n  service = \"cloud\"\n"
    ));
    let text = format!(
        "{BASE}\n{BREAKOUT_SERVICE}\n[[path]]\nname = \"a\"\nmethod = \"local-breakout\"\n  [[path.leg]]\n  \
         from = \"zone:lgwan\"\n  to = \"zone:internet\"\n  service = \"cloud\"\n"
    );
    let p = load_str(&text, "t.toml").unwrap();
    let svc = p.services().iter().find(|s| s.name == "cloud").unwrap();
    assert!(svc.sni_allowed(b"portal.example.lg.jp") && svc.sni_allowed(b"PORTAL.example.lg.jp"));
    assert!(svc.sni_allowed(b"a.example.com") && svc.sni_allowed(b"b.a.example.com"));
    assert!(!svc.sni_allowed(b"example.com") && !svc.sni_allowed(b"evil-example.com"));
    assert!(!svc.sni_allowed(b"portal.example.lg.jp.evil.net"));
    assert_eq!(p.leg_index(sekisho_policy::PathId(0), 1), Some(0));
    assert_eq!(p.leg_index(sekisho_policy::PathId(0), 2), None);

    // Without an allow list, for another app, the wrong way round, or touching mynumber.
    let e = errors(
        "[[path]]\nname = \"no-list\"\nmethod = \"local-breakout\"\n  [[path.leg]]\n  from = \"zone:lgwan\"\n  \
         to = \"zone:internet\"\n  service = \"https\"\n",
    );
    has(&e, "path \"no-list\" leg 1", &["app = \"tls\" and an `sni_allow` list", "no sni_allow"]);
    assert!(e.has(sekisho_policy::ErrorCode::BreakoutService));
    let e = errors(
        "[[path]]\nname = \"smtp\"\nmethod = \"local-breakout\"\n  [[path.leg]]\n  from = \"zone:lgwan\"\n  \
         to = \"zone:internet\"\n  service = \"smtp\"\n",
    );
    has(&e, "path \"smtp\" leg 1", &["service \"smtp\" has app \"smtp\""]);
    let e = errors(&format!(
        "{BREAKOUT_SERVICE}\n[[path]]\nname = \"back\"\nmethod = \"local-breakout\"\n  [[path.leg]]\n  \
         from = \"zone:internet\"\n  to = \"198.18.20.5\"\n  service = \"cloud\"\n"
    ));
    has(&e, "path \"back\" leg 1", &["`from` must lie only in lgwan zones"]);
    assert!(e.has(sekisho_policy::ErrorCode::BreakoutZones));
    let e = errors(&format!(
        "{BREAKOUT_SERVICE}\n[[path]]\nname = \"sz\"\nmethod = \"local-breakout\"\n  [[path.leg]]\n  \
         from = \"zone:lgwan\"\n  to = \"198.18.40.10\"\n  service = \"cloud\"\n"
    ));
    has(&e, "path \"sz\" leg 1", &["`to` only in internet zones"]);
    let e = errors(&format!(
        "{BREAKOUT_SERVICE}\n[[path]]\nname = \"mn\"\nmethod = \"local-breakout\"\n  [[path.leg]]\n  \
         from = \"zone:mynumber\"\n  to = \"zone:internet\"\n  service = \"cloud\"\n"
    ));
    assert!(e.has(sekisho_policy::ErrorCode::MynumberIsolation), "{e}");
    // Any other method still may not cross lgwan -> internet directly.
    let e = errors(&format!(
        "{BREAKOUT_SERVICE}\n[[path]]\nname = \"web\"\nmethod = \"web-isolation\"\n  [[path.leg]]\n  \
         from = \"zone:lgwan\"\n  to = \"zone:internet\"\n  service = \"cloud\"\n"
    ));
    has(&e, "path \"web\" leg 1", &["local-breakout"]);
}

#[test]
fn sni_allow_and_allow_connect_are_checked() {
    let svc = |extra: &str| format!("[[service]]\nname = \"s\"\nproto = \"tcp\"\nports = [443]\n{extra}\n");
    let e = errors(&svc("app = \"tls\"\nsni_allow = []"));
    has(&e, "service \"s\"", &["`sni_allow` is empty"]);
    let e = errors(&svc("app = \"smtp\"\nsni_allow = [\"a.example\"]"));
    has(&e, "service \"s\"", &["only applies to app \"tls\""]);
    for (bad, why) in [
        ("192.0.2.1", "is an IP address"),
        ("2001:db8::1", "is an IP address"),
        ("*.com", "top-level domain"),
        ("a..example", "is not a host name"),
        ("-a.example", "is not a host name"),
        ("a_b.example", "is not a host name"),
        ("*", "is not a host name"),
    ] {
        let e = errors(&svc(&format!("app = \"tls\"\nsni_allow = [\"{bad}\"]")));
        has(&e, "service \"s\"", &[why]);
        assert!(e.has(sekisho_policy::ErrorCode::ServiceSni));
    }
    let e = errors(&svc("app = \"tls\"\nsni_allow = [\"a.example\", \"A.example\"]"));
    has(&e, "service \"s\"", &["listed twice"]);
    let e = errors(&svc("app = \"tls\"\nallow_connect = true"));
    has(&e, "service \"s\"", &["`allow_connect` only applies to app \"http\""]);
    assert!(e.has(sekisho_policy::ErrorCode::ServiceConnect));
    loads(&svc("app = \"http\"\nallow_connect = true"));
}

#[test]
fn inspect_and_monitor_settings() {
    let text = format!(
        "[inspect]\ndepth = 16384\nmax_flows = 100\ndns_tunnel_threshold = 3\nidle_timeout_s = 60\n\
         [monitor]\nenabled = false\nwindow_s = 5\nscan_ports = 10\nscan_hosts = 20\nsyn_half_open = 30\n\
         icmp_flood = 40\ntracked = 64\nblock_ttl_s = 600\n{BASE}"
    );
    let p = load_str(&text, "t.toml").unwrap();
    assert_eq!(
        (
            p.inspect().depth,
            p.inspect().max_flows,
            p.inspect().dns_tunnel_threshold,
            p.inspect().idle_timeout_s
        ),
        (16384, 100, 3, 60)
    );
    let m = p.monitor();
    assert_eq!(
        (
            m.enabled,
            m.window_s,
            m.scan_ports,
            m.scan_hosts,
            m.syn_half_open,
            m.icmp_flood,
            m.tracked,
            m.block_ttl_s
        ),
        (false, 5, 10, 20, 30, 40, 64, 600)
    );
    let p = load_str(BASE, "t.toml").unwrap();
    assert_eq!(p.inspect(), &sekisho_policy::InspectSettings::default());
    assert_eq!(p.monitor().block_ttl_s, 0, "the temporary block is off by default");
    let e = errors_with_prefix("[inspect]\ndepth = 1024\ndns_tunnel_threshold = 40\n", "");
    has(&e, "[inspect]", &["depth = 1024 is out of range", "between 4096 and 65536"]);
    has(&e, "[inspect]", &["dns_tunnel_threshold = 40 is out of range"]);
    assert!(e.has(sekisho_policy::ErrorCode::InspectRange));
    let e = errors_with_prefix("[monitor]\nscan_ports = 1\ntracked = 0\nbogus = 1\n", "");
    has(&e, "[monitor]", &["scan_ports = 1 is out of range"]);
    has(&e, "[monitor]", &["tracked = 0 is out of range"]);
    has(&e, "[monitor]", &["unknown key `bogus`"]);
    assert!(e.has(sekisho_policy::ErrorCode::MonitorRange));
}
