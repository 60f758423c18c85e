//! `sekishod check`: every shipped configuration passes; each class of mistake is
//! refused with exit code 2 and a message that names the file and the item.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const LAB: &str = include_str!("../../../configs/lab.toml");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn check(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sekishod")).args(["check", "-c"]).arg(path).output().unwrap()
}

/// 2026-12-01: a fixed "now" for expiry warnings (the lab exception expires 2027-03-31).
const AT: &str = "2026-12-01";

#[test]
fn every_shipped_config_passes() {
    let mut configs = vec![repo_root().join("configs/lab.toml")];
    for entry in std::fs::read_dir(repo_root().join("configs/examples")).unwrap() {
        configs.push(entry.unwrap().path());
    }
    assert!(configs.len() >= 4, "lab.toml and at least the α, β and β' examples");
    for c in configs {
        let out = Command::new(env!("CARGO_BIN_EXE_sekishod"))
            .args(["check", "--strict", "--at", AT, "-c"])
            .arg(&c)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}{stdout}",
            c.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(": ok — ") && !stdout.contains("warning"), "{stdout}");
    }
}

/// Appends `extra` to the lab policy, or replaces `from` with `to` in it.
enum Change {
    Append(&'static str),
    Replace(&'static str, &'static str),
}

#[test]
fn each_class_of_mistake_is_refused_naming_the_item() {
    use Change::*;
    let cases: &[(&str, Change, &[&str])] = &[
        ("rule mynumber to internet", Append("[[rule]]\nname = \"mn-out\"\nfrom = \"zone:mynumber\"\nto = \"zone:internet\"\nservice = \"https\"\n"), &["rule \"mn-out\"", "mynumber"]),
        ("leg mynumber to sanitization", Append("[[path]]\nname = \"bad-path\"\nmethod = \"file-sanitize\"\n[[path.leg]]\nfrom = \"198.18.10.5\"\nto = \"198.18.40.20\"\nservice = \"https\"\n"), &["path \"bad-path\" leg 1", "mynumber"]),
        ("exception mynumber to internet", Append("[[exception]]\nname = \"bad-ex\"\nfrom = \"198.18.10.5\"\nto = \"203.0.113.9\"\nservice = \"https\"\napproval = \"X-1\"\n"), &["exception \"bad-ex\""]),
        ("rule lgwan to internet", Append("[[rule]]\nname = \"web\"\nfrom = \"zone:lgwan\"\nto = \"zone:internet\"\nservice = \"https\"\n"), &["rule \"web\"", "path"]),
        ("leg without a sanitization host", Append("[[path]]\nname = \"direct\"\nmethod = \"mail-text\"\n[[path.leg]]\nfrom = \"zone:internet\"\nto = \"198.18.20.25\"\nservice = \"smtp\"\n"), &["path \"direct\" leg 1", "sanitization"]),
        ("screen transfer to a zone", Append("[[path]]\nname = \"vdi-any\"\nmethod = \"screen-transfer\"\n[[path.leg]]\nfrom = \"zone:lgwan\"\nto = \"zone:internet\"\nservice = \"rdp\"\n"), &["path \"vdi-any\" leg 1"]),
        ("exception outside mynumber-lgwan", Append("[[exception]]\nname = \"lg-sz\"\nfrom = \"zone:lgwan\"\nto = \"198.18.40.20\"\nservice = \"https\"\napproval = \"X-2\"\n"), &["exception \"lg-sz\""]),
        ("exception without approval", Replace("approval = \"R8-情政-012\"\n", ""), &["exception \"juki-batch\"", "approval"]),
        ("same prefix in two zones", Replace("prefixes = [\"198.18.50.0/24\"]", "prefixes = [\"198.18.20.0/24\"]"), &["198.18.20.0/24"]),
        ("unknown zone reference", Replace("from = \"zone:management\"", "from = \"zone:managment\""), &["rule \"mgmt-ssh\"", "managment"]),
        ("unknown service reference", Replace("service = \"ssh\"\n", "service = \"shh\"\n"), &["rule \"mgmt-ssh\"", "shh"]),
        ("duplicate names", Replace("name = \"sftp\"", "name = \"ssh\""), &["service \"ssh\"", "[E-NAME-DUPLICATE]"]),
        ("bad CIDR", Replace("\"198.18.50.0/24\"", "\"198.18.50.1/24\""), &["zone \"management\"", "198.18.50.0/24"]),
        ("interface used twice", Replace("inside = \"lg-in\"", "inside = \"mn-in\""), &["mn-in"]),
        ("port zone missing", Replace("zone = \"lgwan\"\ninside", "zone = \"lgwna\"\ninside"), &["port \"lgwan-uplink\"", "lgwna"]),
        ("unknown app", Replace("app = \"rdp\"", "app = \"rpd\""), &["service \"rdp\"", "rpd"]),
        ("unknown method", Replace("method = \"mail-text\"", "method = \"mail-txt\""), &["path \"mail-textify\"", "mail-txt"]),
        ("unknown key", Replace("approval = \"R8-", "aproval = \"R8-"), &["aproval"]),
        ("unknown top-level key", Append("[deamon]\nmode = \"enforce\"\n"), &["deamon", "[E-KEY-UNKNOWN]"]),
        // the route analysis and the checks that came with it
        ("route through a management host", Append("[[service]]\nname = \"all\"\nproto = \"any\"\n[[rule]]\nname = \"vendor-rdp\"\nfrom = \"zone:internet\"\nto = \"198.18.50.10\"\nservice = \"rdp\"\n[[rule]]\nname = \"admin-any\"\nfrom = \"198.18.50.10\"\nto = \"zone:lgwan\"\nservice = \"all\"\n"), &["route \"internet\" ⇄ \"lgwan\"", "rule \"vendor-rdp\"", "relay 198.18.50.10 in zone \"management\"", "rule \"admin-any\"", "service rdp", "[E-ROUTE-UNSANITIZED]"]),
        ("route through a sanitization host outside a path", Append("[[service]]\nname = \"all\"\nproto = \"any\"\n[[rule]]\nname = \"in-99\"\nfrom = \"zone:internet\"\nto = \"198.18.40.99\"\nservice = \"all\"\n[[rule]]\nname = \"99-lg\"\nfrom = \"198.18.40.99\"\nto = \"zone:lgwan\"\nservice = \"all\"\n"), &["rule \"in-99\"", "relay 198.18.40.99 in zone \"sanitization\"", "rule \"99-lg\"", "[E-ROUTE-UNSANITIZED]"]),
        ("route from the exception's landing host", Append("[[rule]]\nname = \"juki-out\"\nfrom = \"198.18.20.30\"\nto = \"198.18.40.10\"\nservice = \"smtp\"\n"), &["route from exception \"juki-batch\"", "landing host 198.18.20.30", "rule \"juki-out\"", "[E-ROUTE-MYNUMBER]"]),
        ("bare address as a zone prefix", Replace("prefixes = [\"198.18.50.0/24\"]", "prefixes = [\"198.18.50.0\"]"), &["zone \"management\"", "write \"198.18.50.0/24\" for the network", "[E-ZONE-BARE-ADDRESS]"]),
        ("exception over a zone", Replace("from = \"198.18.10.5\"", "from = \"zone:mynumber\""), &["exception \"juki-batch\"", "is a whole zone", "[E-EXCEPTION-WIDE]"]),
        ("a list as an endpoint", Replace("to = \"198.18.20.30\"", "to = [\"198.18.20.30\", \"198.18.20.31\"]"), &["exception \"juki-batch\"", "`to` is a list of 2", "[E-ENDPOINT-LIST]"]),
        ("zone without a port", Replace("upstream = true\n", ""), &["zone \"management\"", "has no [[port]]", "[E-ZONE-NO-PORT]"]),
    ];
    let dir = std::env::temp_dir().join(format!("sekisho-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (what, change, needles)) in cases.iter().enumerate() {
        let text = match change {
            Append(extra) => format!("{LAB}\n{extra}"),
            Replace(from, to) => {
                assert!(LAB.contains(from), "{what}: lab.toml lacks {from:?}");
                LAB.replacen(from, to, 1)
            }
        };
        let path = dir.join(format!("case-{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = check(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: accepted\n{stderr}");
        assert!(stderr.contains(&format!("case-{i}.toml")), "{what}: the file is not named\n{stderr}");
        for needle in *needles {
            assert!(stderr.contains(needle), "{what}: {needle:?} not in\n{stderr}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_problem_is_printed_not_just_the_first() {
    let dir = std::env::temp_dir().join(format!("sekisho-check-many-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = LAB.replacen("app = \"rdp\"", "app = \"rpd\"", 1).replacen(
        "method = \"mail-text\"",
        "method = \"x\"",
        1,
    );
    let path = dir.join("two.toml");
    std::fs::write(&path, text).unwrap();
    let out = check(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rpd") && stderr.contains("\"x\""), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_sekishod"))
        .args(["check", "-c", "/nonexistent/sekisho.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/sekisho.toml"));
    let out = Command::new(env!("CARGO_BIN_EXE_sekishod")).args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Runs `sekishod explain -c configs/lab.toml ARGS`.
fn explain_lab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sekishod"))
        .arg("explain")
        .arg("-c")
        .arg(repo_root().join("configs/lab.toml"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn explain_answers_with_exit_codes_and_json() {
    let run = |args: &[&str]| explain_lab(args);
    let out = run(&["--proto", "tcp", "--src", "198.18.20.5", "--dst", "198.18.40.20:443", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["reason"], "allow:path:file-sanitize/1");
    assert_eq!(doc["initiator_zone"]["kind"], "lgwan");
    assert_eq!(doc["responder_zone"]["name"], "sanitization");
    let out =
        run(&["--proto", "tcp", "--src", "198.18.10.5", "--dst", "198.18.20.30:22", "--at", "2027-03-31"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("allow:exception:juki-batch"));
    let out =
        run(&["--proto", "tcp", "--src", "198.18.10.5", "--dst", "198.18.20.30:22", "--at", "2027-04-01"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("deny:mynumber-isolation"));
    let out = run(&["--proto", "tcp", "--src", "[2001:db8:20::5]:40000", "--dst", "[2001:db8:30::9]:443"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("deny:unsanitized-crossing"));
    let out = run(&["--proto", "tcp", "--src", "198.18.20.5", "--dst", "198.18.40.20"]);
    assert_eq!(out.status.code(), Some(2), "tcp without a port is a usage error");
}

fn check_args(args: &[&str], path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sekishod")).arg("check").args(args).arg("-c").arg(path).output().unwrap()
}

#[test]
fn warnings_print_with_their_codes_and_strict_refuses_them() {
    let dir = std::env::temp_dir().join(format!("sekisho-check-warn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("warn.toml");
    std::fs::write(&path, format!("{LAB}\n[[service]]\nname = \"ntp\"\nproto = \"udp\"\nports = [123]\n"))
        .unwrap();
    let out = check_args(&["--at", AT], &path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("warn.toml: warning: service \"ntp\": no path leg, exception or rule uses it"),
        "{stdout}"
    );
    assert!(stdout.contains("[W-SERVICE-UNUSED]"), "{stdout}");
    assert!(
        stdout.contains("ok with 1 warning — 5 zones, 4 ports, 6 services, 3 paths, 1 exception, 1 rule"),
        "{stdout}"
    );
    let out = check_args(&["--at", AT, "--strict"], &path);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("refused by --strict — 1 warning"));

    // 年度末: the lab exception expires 2027-03-31; from 2027-03-01 check says so
    let lab = repo_root().join("configs/lab.toml");
    let out = check_args(&["--at", "2027-03-15", "--strict"], &lab);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("exception \"juki-batch\": expires 2027-03-31 (within 17 days"), "{stdout}");
    assert!(stdout.contains("[W-EXCEPTION-EXPIRING]"), "{stdout}");
    let out = check_args(&["--at", "2027-04-01"], &lab);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("exception \"juki-batch\": expired (2027-03-31")
            && stdout.contains("[W-EXCEPTION-EXPIRED]"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explain_shows_expiry_and_the_exception_that_lapsed() {
    let run = |args: &[&str]| explain_lab(args);
    let out =
        run(&["--proto", "TCP", "--src", "198.18.10.5", "--dst", "198.18.20.30:22", "--at", "2027-03-31"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("exception \"juki-batch\" (approval R8-情政-012, valid through 2027-03-31)"),
        "{text}"
    );
    let out =
        run(&["--proto", "tcp", "--src", "198.18.10.5", "--dst", "198.18.20.30:22", "--at", "2027-04-01"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("reason      deny:mynumber-isolation"), "{text}");
    assert!(
        text.contains("lapsed      exception \"juki-batch\" (approval R8-情政-012) allowed this connection until it expired (2027-03-31)"),
        "{text}"
    );
    let juki_json = |at: &str| {
        let out = run(&[
            "--proto",
            "tcp",
            "--src",
            "198.18.10.5",
            "--dst",
            "198.18.20.30:22",
            "--at",
            at,
            "--json",
        ]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let doc = juki_json("2027-04-01");
    assert_eq!(doc["lapsed_exception"]["name"], "juki-batch");
    assert_eq!(doc["lapsed_exception"]["expired"], "2027-03-31");
    let doc = juki_json("2027-03-01");
    assert_eq!(doc["exception"]["expires"], "2027-03-31");
    assert!(doc["lapsed_exception"].is_null());
    // IPv6 endpoints are bracketed with their ports
    let out = run(&["--proto", "tcp", "--src", "[2001:db8:20::5]:40000", "--dst", "[2001:db8:30::9]:443"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("connection  tcp [2001:db8:20::5]:40000 -> [2001:db8:30::9]:443"), "{text}");
}

#[test]
fn the_summary_counts_read_right() {
    let dir = std::env::temp_dir().join(format!("sekisho-check-one-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("one.toml");
    std::fs::write(&path, "[[zone]]\nname = \"lgwan\"\nkind = \"lgwan\"\nprefixes = [\"198.18.20.0/24\"]\n")
        .unwrap();
    let out = check(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok — 1 zone, 0 ports, 0 services, 0 paths, 0 exceptions, 0 rules; mode enforce"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
