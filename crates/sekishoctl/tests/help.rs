//! `sekishoctl --help`, docs/control-protocol.md and the protocol agree: every
//! subcommand is a protocol command (or `completions`) and has its row in the document,
//! with every option its `--help` lists.

use std::process::Command;

const DOC: &str = include_str!("../../../docs/control-protocol.md");

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sekishoctl")).args(args).arg("--help").output().unwrap();
    assert!(out.status.success(), "sekishoctl {args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help text lists under `Commands:`.
fn subcommands(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect()
}

/// The `--long` options a help text lists (global ones included).
fn options(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.starts_with("Options:"))
        .filter(|l| l.trim_start().starts_with('-'))
        .flat_map(|l| l.split_whitespace().take(2))
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| w.trim_end_matches([',', '<', '>']).split(['=', '<']).next().unwrap_or_default().to_owned())
        .filter(|w| !w.is_empty() && !["help", "version", "socket", "json", "timeout"].contains(&w.as_str()))
        .collect()
}

/// The document's table row for `sekishoctl WORDS`.
fn row(words: &str) -> &'static str {
    DOC.lines()
        .find(|l| l.starts_with(&format!("| `sekishoctl {words}")))
        .unwrap_or_else(|| panic!("docs/control-protocol.md has no row for `sekishoctl {words}`"))
}

#[test]
fn help_the_protocol_and_the_document_agree() {
    let top = help(&[]);
    for global in ["--socket", "--json", "--timeout"] {
        assert!(top.contains(global) && DOC.contains(global), "{global}");
    }
    let mut commands = Vec::new();
    for sub in subcommands(&top) {
        if sub == "flow" {
            for action in subcommands(&help(&["flow"])) {
                commands.push(format!("flow {action}"));
            }
        } else {
            commands.push(sub);
        }
    }
    for c in &commands {
        let line = row(c);
        let words: Vec<&str> = c.split(' ').collect();
        for opt in options(&help(&words)) {
            let opt = format!("--{opt}");
            // flow kill takes the filters of flows, written once in the flows row.
            let documented = line.contains(&opt) || (c == "flow kill" && row("flows").contains(&opt));
            assert!(documented, "`sekishoctl {c}` has {opt}, its row does not: {line}");
        }
        let wire = c.replace(' ', "-");
        assert!(
            c == "completions" || sekisho_control::Command::NAMES.contains(&wire.as_str()),
            "`sekishoctl {c}` is not a protocol command"
        );
    }
    for name in sekisho_control::Command::NAMES {
        assert!(
            commands.iter().any(|c| c.replace(' ', "-") == name),
            "no sekishoctl subcommand for `{name}`"
        );
    }
}

#[test]
fn usage_and_connection_errors_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_sekishoctl"))
        .args(["--socket", "/nonexistent/s.sock", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is sekishod running?"));
    let out = Command::new(env!("CARGO_BIN_EXE_sekishoctl")).args(["mode", "off"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
