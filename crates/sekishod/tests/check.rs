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

#[test]
fn every_shipped_config_passes() {
    let mut configs = vec![repo_root().join("configs/lab.toml")];
    for entry in std::fs::read_dir(repo_root().join("configs/examples")).unwrap() {
        configs.push(entry.unwrap().path());
    }
    assert!(configs.len() >= 3, "lab.toml and at least the α and β examples");
    for c in configs {
        let out = check(&c);
        assert_eq!(out.status.code(), Some(0), "{}: {}", c.display(), String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
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
        ("duplicate names", Replace("name = \"https\"", "name = \"http\""), &["service \"http\""]),
        ("bad CIDR", Replace("\"198.18.50.0/24\"", "\"198.18.50.1/24\""), &["zone \"management\"", "198.18.50.0/24"]),
        ("interface used twice", Replace("inside = \"lg-in\"", "inside = \"mn-in\""), &["mn-in"]),
        ("port zone missing", Replace("zone = \"lgwan\"\ninside", "zone = \"lgwna\"\ninside"), &["port \"lgwan-uplink\"", "lgwna"]),
        ("unknown app", Replace("app = \"rdp\"", "app = \"rpd\""), &["service \"rdp\"", "rpd"]),
        ("unknown method", Replace("method = \"mail-text\"", "method = \"mail-txt\""), &["path \"mail-textify\"", "mail-txt"]),
        ("unknown key", Replace("approval = \"R8-", "aproval = \"R8-"), &["aproval"]),
        ("unknown top-level key", Append("[deamon]\nmode = \"enforce\"\n"), &["deamon"]),
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

#[test]
fn explain_answers_with_exit_codes_and_json() {
    let lab = repo_root().join("configs/lab.toml");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sekishod"))
            .arg("explain")
            .arg("-c")
            .arg(&lab)
            .args(args)
            .output()
            .unwrap()
    };
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
