//! End-to-end tests of the control plane against the daemon running in the lab: every
//! command through `sekishoctl` (and its exit codes), the permission matrix with real
//! users, reloads that cut denied connections while an allowed transfer keeps going,
//! broken reloads, commit-confirm, SIGHUP, and abusive clients while forwarding goes on.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use sekisho_control::Client;
use sekisho_e2e::{blocked, pass, visible, with_lab, Fixture, Mode, ADMIN_GROUP, READ_GROUP};
use sekisho_lab::cmd::{self, Output};
use sekisho_lab::{addr, Ns};
use serde_json::Value;

fn socket(fx: &mut Fixture) -> anyhow::Result<PathBuf> {
    Ok(fx.daemon()?.socket().to_path_buf())
}

fn sekishoctl(fx: &Fixture) -> PathBuf {
    fx.lab.bin("sekishoctl")
}

/// `sekishoctl --socket S ARGS` as root.
fn ctl(fx: &mut Fixture, args: &[&str]) -> anyhow::Result<Output> {
    let s = socket(fx)?;
    let mut c = Command::new(sekishoctl(fx));
    c.arg("--socket").arg(&s).args(args);
    cmd::run(&mut c, None, Duration::from_secs(60))
}

/// `sekishoctl --socket S --json ARGS`, which must exit `code`; its JSON output.
fn ctl_json(fx: &mut Fixture, args: &[&str], code: i32) -> anyhow::Result<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ctl(fx, &all)?;
    ensure!(
        out.code == Some(code),
        "sekishoctl {}: exit {:?}, expected {code}\n{}\n{}",
        args.join(" "),
        out.code,
        out.stdout_text(),
        out.stderr_text()
    );
    if out.stdout.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("not JSON: {}", out.stdout_text()))
}

fn write(fx: &Fixture, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = fx.lab.state_dir().join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The tests' policy without item `[[kind]]` named `name` (up to the next comment rule).
fn without(text: &str, header: &str) -> anyhow::Result<String> {
    let start = text.find(header).with_context(|| format!("no {header:?} in the policy"))?;
    let end = text[start..].find("\n# ----").map(|i| start + i).context("no end")?;
    Ok(format!("{}{}", &text[..start], &text[end..]))
}

fn without_screen_transfer(fx: &Fixture) -> anyhow::Result<String> {
    without(&fx.enforce_text, "[[path]]\n# 画面転送")
}

fn without_exception(fx: &Fixture) -> anyhow::Result<String> {
    without(&fx.enforce_text, "[[exception]]\n# 住基")
}

#[test]
fn every_command_answers_with_the_documented_keys_and_exit_codes() {
    with_lab("every_command_answers_with_the_documented_keys_and_exit_codes", Mode::Enforce, |fx| {
        let status = ctl_json(fx, &["status"], 0)?;
        for key in ["version", "mode", "generation", "uptime_s", "ports"] {
            ensure!(!status[key].is_null(), "status has no {key}: {status}");
        }
        ensure!(status["ports"].as_array().is_some_and(|p| p.len() == 4), "{status}");
        ensure!(status["ports"][1]["inside"]["link"] == "up", "{status}");
        let generation = status["generation"].as_u64().context("generation")?;
        // A flow to list: an HTTPS download through the file-sanitize path.
        pass(
            fx.lab.https(Ns::Lgwan, addr::LG_TERMINAL, &format!("https://{}/", addr::SZ_CDR), None),
            "https",
        )?;
        let stats = ctl_json(fx, &["stats"], 0)?;
        ensure!(
            stats["flows"]["active"].as_u64() > Some(0) && stats["flows"]["capacity"].as_u64() > Some(0),
            "{stats}"
        );
        ensure!(stats["reasons"]["allow:path"].as_u64() > Some(0), "{stats}");
        ensure!(
            stats["legs"].as_array().is_some_and(|l| l.iter().any(|x| x["path"] == "file-sanitize")),
            "{stats}"
        );
        ensure!(
            stats["zone_pairs"].as_array().is_some_and(|z| z.iter().any(|x| x["to"] == "sanitization")),
            "{stats}"
        );
        let flows = ctl_json(fx, &["flows", "--zone", "sanitization", "--dport", "443"], 0)?;
        let first = flows.as_array().and_then(|f| f.first()).context("no flow listed")?;
        for key in ["proto", "src", "dst", "sport", "dport", "state", "reason", "packets", "bytes"] {
            ensure!(!first[key].is_null(), "flow has no {key}: {first}");
        }
        ensure!(
            first["reason"] == "allow:path:file-sanitize/1" && first["src"] == addr::LG_TERMINAL,
            "{first}"
        );
        let none = ctl_json(fx, &["flows", "--path", "mail-textify"], 0)?;
        ensure!(none.as_array().is_some_and(|f| f.is_empty()), "{none}");
        ensure!(
            ctl(fx, &["flows", "--zone", "nowhere"])?.code == Some(2),
            "an unknown zone is a usage error"
        );
        // explain: allow with its live flows (exit 0), deny (exit 1).
        let x = ctl_json(
            fx,
            &["explain", "--proto", "tcp", "--src", addr::LG_TERMINAL, "--dst", "198.18.40.20:443"],
            0,
        )?;
        ensure!(x["verdict"] == "allow" && x["reason"] == "allow:path:file-sanitize/1", "{x}");
        ensure!(x["flows"].as_array().is_some_and(|f| !f.is_empty()), "explain found no live flow: {x}");
        let x = ctl_json(
            fx,
            &["explain", "--proto", "tcp", "--src", addr::LG_TERMINAL, "--dst", "203.0.113.7:443"],
            1,
        )?;
        ensure!(x["verdict"] == "deny" && x["reason"] == "deny:unsanitized-crossing", "{x}");
        // check: valid (0), broken (1).
        let file = write(fx, "check-ok.toml", &fx.enforce_text)?;
        let c = ctl_json(fx, &["check", &file.display().to_string()], 0)?;
        ensure!(c["valid"] == true && c["cut"]["total"] == 0, "{c}");
        let broken =
            write(fx, "check-broken.toml", &fx.enforce_text.replace("kind = \"lgwan\"", "kind = \"lgwn\""))?;
        let c = ctl_json(fx, &["check", &broken.display().to_string()], 1)?;
        ensure!(c["valid"] == false && c["errors"][0]["code"] == "E-VALUE-UNKNOWN", "{c}");
        // reload (the daemon's own file), confirm with nothing pending (1), mode, rollback.
        let r = ctl_json(fx, &["reload"], 0)?;
        ensure!(r["generation"].as_u64() > Some(generation) && r["cut"]["total"] == 0, "{r}");
        ensure!(!r["changes"].is_null(), "{r}");
        ctl_json(fx, &["confirm"], 1)?;
        let m = ctl_json(fx, &["mode", "monitor"], 0)?;
        ensure!(m["mode"] == "monitor" && m["previous"] == "enforce", "{m}");
        ensure!(ctl_json(fx, &["status"], 0)?["mode"] == "monitor", "the mode did not change");
        let back = ctl_json(fx, &["rollback"], 0)?;
        ensure!(back["changes"]["mode"]["to"] == "enforce", "{back}");
        ctl_json(fx, &["rollback"], 1)?;
        // log-level: read, set, refuse nonsense.
        let l = ctl_json(fx, &["log-level", "debug"], 0)?;
        ensure!(l["level"] == "debug", "{l}");
        ensure!(ctl(fx, &["log-level", "no=such=filter=["])?.code == Some(2), "a bad filter is refused");
        ctl_json(fx, &["log-level", "info"], 0)?;
        // events: a follower sees a verdict event and an operator change, numbered.
        let s = socket(fx)?;
        let mut follower = Command::new(sekishoctl(fx));
        follower.arg("--socket").arg(&s).args(["--json", "events", "--follow"]).stdout(Stdio::piped());
        let mut follower = follower.spawn()?;
        std::thread::sleep(Duration::from_millis(500));
        blocked(
            fx.lab.https(Ns::Lgwan, addr::LG_TERMINAL, "https://203.0.113.7/", None),
            "lgwan -> internet",
        )?;
        ctl_json(fx, &["mode", "enforce"], 0)?;
        std::thread::sleep(Duration::from_millis(500));
        cmd::signal(follower.id(), libc::SIGTERM);
        let mut text = String::new();
        follower.stdout.take().context("stdout")?.read_to_string(&mut text)?;
        let _ = follower.wait();
        let events: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        ensure!(
            events.iter().any(|e| e["kind"] == "verdict" && e["reason"] == "deny:unsanitized-crossing"),
            "no verdict event:\n{text}"
        );
        ensure!(
            events.iter().any(|e| e["kind"] == "change" && e["change"]["action"] == "mode"),
            "no change event:\n{text}"
        );
        let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
        ensure!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "sequence numbers with gaps: {seqs:?}");
        let recent = ctl_json(fx, &["events", "--limit", "3"], 0)?;
        ensure!(recent.as_array().is_some_and(|e| e.len() == 3), "{recent}");
        // flow kill: the file-sanitize flows go.
        let k = ctl_json(fx, &["flow", "kill", "--path", "file-sanitize"], 0)?;
        ensure!(k["killed"].as_u64() > Some(0), "{k}");
        ensure!(ctl(fx, &["flow", "kill"])?.code == Some(2), "flow kill without a filter is refused");
        let history = ctl_json(fx, &["history", "--limit", "50"], 0)?;
        let actions: Vec<&str> =
            history.as_array().context("history")?.iter().filter_map(|c| c["action"].as_str()).collect();
        for a in ["reload", "mode", "rollback", "log-level", "flow-kill"] {
            ensure!(actions.contains(&a), "no {a} in the history: {actions:?}");
        }
        // The human forms and completions work too.
        let out = ctl(fx, &["status"])?;
        ensure!(out.success() && out.stdout_text().contains("lgwan-uplink"), "{}", out.stdout_text());
        let out = ctl(fx, &["completions", "bash"])?;
        ensure!(out.success() && out.stdout_text().contains("sekishoctl"), "no completion script");
        Ok(())
    });
}

/// Real users for the permission matrix; deleted when dropped.
struct Users;

const ADMIN_USER: &str = "ske2e-adm";
const READ_USER: &str = "ske2e-rd";
const OTHER_USER: &str = "ske2e-other";

fn run_quiet(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

fn must(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    ensure!(out.status.success(), "{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    Ok(())
}

impl Users {
    fn create() -> anyhow::Result<Users> {
        Users::remove();
        must(&["groupadd", ADMIN_GROUP])?;
        must(&["groupadd", READ_GROUP])?;
        must(&["useradd", "--no-create-home", "--user-group", "--groups", ADMIN_GROUP, ADMIN_USER])?;
        must(&["useradd", "--no-create-home", "--user-group", "--groups", READ_GROUP, READ_USER])?;
        must(&["useradd", "--no-create-home", "--user-group", OTHER_USER])?;
        Ok(Users)
    }

    fn remove() {
        for u in [ADMIN_USER, READ_USER, OTHER_USER] {
            run_quiet(&["userdel", u]);
        }
        for g in [ADMIN_GROUP, READ_GROUP, ADMIN_USER, READ_USER, OTHER_USER] {
            run_quiet(&["groupdel", g]);
        }
    }

    fn uid(user: &str) -> anyhow::Result<String> {
        let out = Command::new("id").args(["-u", user]).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        Users::remove();
    }
}

/// `sekishoctl` as `user` (with that user's groups).
fn ctl_as(fx: &mut Fixture, user: &str, args: &[&str]) -> anyhow::Result<Output> {
    let s = socket(fx)?;
    let mut c = Command::new("setpriv");
    c.args(["--reuid", user, "--regid", user, "--init-groups", "--"]);
    c.arg(sekishoctl(fx)).arg("--socket").arg(&s).args(args);
    cmd::run(&mut c, None, Duration::from_secs(30))
}

#[test]
fn permission_matrix_with_real_users() {
    with_lab("permission_matrix_with_real_users", Mode::Enforce, |fx| {
        if !cmd::have("useradd") || !cmd::have("setpriv") {
            bail!("this test needs useradd and setpriv (apt-get install passwd util-linux)");
        }
        let _users = Users::create()?;
        // The groups exist now: a reload makes the daemon look them up again.
        ctl_json(fx, &["reload"], 0)?;
        let code = |o: &Output| o.code;
        // root: look and change.
        ensure!(ctl(fx, &["status"])?.success(), "root cannot look");
        // The admin group: look and change.
        let o = ctl_as(fx, ADMIN_USER, &["--json", "status"])?;
        ensure!(o.success(), "admin cannot look: {}", o.stderr_text());
        let o = ctl_as(fx, ADMIN_USER, &["mode", "enforce"])?;
        ensure!(o.success(), "admin cannot change the mode: {}", o.stderr_text());
        // The read group: look, not change (refused by the daemon, logged with the uid).
        let o = ctl_as(fx, READ_USER, &["--json", "stats"])?;
        ensure!(o.success(), "read cannot look: {}", o.stderr_text());
        let o = ctl_as(
            fx,
            READ_USER,
            &["explain", "--proto", "tcp", "--src", "198.18.20.5", "--dst", "198.18.40.20:443"],
        )?;
        ensure!(o.success(), "read cannot explain: {}", o.stderr_text());
        for change in [
            &["reload"][..],
            &["mode", "monitor"],
            &["rollback"],
            &["confirm"],
            &["flow", "kill", "--zone", "lgwan"],
            &["log-level", "debug"],
        ] {
            let o = ctl_as(fx, READ_USER, change)?;
            ensure!(
                code(&o) == Some(2) && o.stderr_text().contains("permission-denied"),
                "read user could {change:?}: exit {:?} {}",
                o.code,
                o.stderr_text()
            );
        }
        let read_uid = Users::uid(READ_USER)?;
        let history = ctl_json(fx, &["history", "--limit", "20"], 0)?;
        ensure!(
            history.as_array().is_some_and(|h| h.iter().any(|c| c["ok"] == false
                && c["uid"].as_u64().is_some_and(|u| u.to_string() == read_uid)
                && c["action"] == "mode")),
            "the refusal of uid {read_uid} is not in the history: {history}"
        );
        ensure!(ctl_json(fx, &["status"], 0)?["mode"] == "enforce", "a refused mode change happened");
        // Anyone else: the socket file does not let them in at all...
        let o = ctl_as(fx, OTHER_USER, &["status"])?;
        ensure!(
            code(&o) == Some(2) && o.stderr_text().contains("ermission denied"),
            "other: {}",
            o.stderr_text()
        );
        // ... and should the file be opened wider, the daemon refuses them and logs the uid.
        let s = socket(fx)?;
        let dir = s.parent().context("dir")?.to_path_buf();
        must(&["chmod", "0755", &dir.display().to_string()])?;
        must(&["chmod", "0666", &s.display().to_string()])?;
        let o = ctl_as(fx, OTHER_USER, &["status"]);
        must(&["chmod", "0750", &dir.display().to_string()])?;
        must(&["chmod", "0660", &s.display().to_string()])?;
        let o = o?;
        ensure!(
            code(&o) == Some(2) && o.stderr_text().contains("permission-denied"),
            "other (wide open): {}",
            o.stderr_text()
        );
        let other_uid = Users::uid(OTHER_USER)?;
        let log = fx.daemon()?.log_text();
        ensure!(
            log.contains(&format!("control connection refused: uid {other_uid}")),
            "the refusal of uid {other_uid} is not logged:\n{log}"
        );
        visible(&format!(
            "e2e permissions: root and {ADMIN_GROUP} change, {READ_GROUP} looks, uid {other_uid} refused"
        ));
        Ok(())
    });
}

/// An interactive TCP client in a namespace (socat), for a connection held open.
struct Session {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Session {
    fn open(fx: &Fixture, ns: Ns, bind: &str, to: &str) -> anyhow::Result<Session> {
        let mut c = fx.lab.command(ns, "socat");
        c.args(["-", &format!("TCP:{to},bind={bind}")]);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = c.spawn().context("socat")?;
        let out = child.stdout.take().context("stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Session { child, lines })
    }

    fn line(&self, wait: Duration) -> Option<String> {
        self.lines.recv_timeout(wait).ok()
    }

    /// Sends `text` and waits for it to come back (the lab's servers echo).
    fn echoes(&mut self, text: &str, wait: Duration) -> anyhow::Result<bool> {
        let stdin = self.child.stdin.as_mut().context("stdin")?;
        stdin.write_all(format!("{text}\n").as_bytes())?;
        stdin.flush()?;
        let deadline = Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.line(left) {
                Some(l) if l.contains(text) => return Ok(true),
                Some(_) => continue,
                None => return Ok(false),
            }
        }
        Ok(false)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = cmd::stop_child(&mut self.child, Duration::from_secs(1));
    }
}

#[test]
fn reloads_cut_a_now_denied_connection_while_an_allowed_transfer_keeps_going() {
    with_lab(
        "reloads_cut_a_now_denied_connection_while_an_allowed_transfer_keeps_going",
        Mode::Enforce,
        |fx| {
            let full = write(fx, "reload-full.toml", &fx.enforce_text)?;
            let no_exception = write(fx, "reload-no-exception.toml", &without_exception(fx)?)?;
            // The juki batch session (mynumber -> lgwan, the exception): banner, then echo.
            let mut juki = Session::open(fx, Ns::Mynumber, addr::MN_BATCH, &format!("{}:22", addr::LG_JUKI))?;
            ensure!(
                juki.line(Duration::from_secs(5)).is_some_and(|l| l.starts_with("SSH-2.0")),
                "no SSH banner"
            );
            ensure!(
                juki.echoes("SSH-2.0-e2e-before", Duration::from_secs(3))?,
                "the juki session does not echo"
            );
            // A long allowed transfer: iperf3 through the e2e-iperf leg.
            let mut server = fx.lab.command(Ns::Sanitization, "iperf3");
            server
                .args(["-s", "-1", "-B", addr::SZ_CDR, "-p", "5201"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut server = server.spawn().context("iperf3 -s")?;
            std::thread::sleep(Duration::from_millis(300));
            let mut client = fx.lab.command(Ns::Lgwan, "iperf3");
            client.args([
                "-c",
                addr::SZ_CDR,
                "-B",
                addr::LG_TERMINAL,
                "-p",
                "5201",
                "-t",
                "10",
                "-f",
                "m",
                "--json",
            ]);
            client.stdout(Stdio::piped()).stderr(Stdio::piped());
            let client = client.spawn().context("iperf3 -c")?;
            std::thread::sleep(Duration::from_secs(1));
            // Reload 1: the exception goes; its live session is cut.
            let r = ctl_json(fx, &["reload", &no_exception.display().to_string()], 0)?;
            ensure!(r["changes"]["exceptions"]["removed"][0] == "juki-batch", "{r}");
            ensure!(r["cut"]["by_reason"]["deny:mynumber-isolation"].as_u64() >= Some(1), "nothing cut: {r}");
            ensure!(
                !juki.echoes("SSH-2.0-e2e-after", Duration::from_secs(3))?,
                "the cut session still echoes"
            );
            // Nine more reloads while the transfer goes on.
            for i in 2..=10 {
                let file = if i % 2 == 0 { &full } else { &no_exception };
                ctl_json(fx, &["reload", &file.display().to_string()], 0)?;
                std::thread::sleep(Duration::from_millis(600));
            }
            let out = client.wait_with_output()?;
            let _ = cmd::stop_child(&mut server, Duration::from_secs(1));
            ensure!(
                out.status.success(),
                "iperf3 failed across the reloads: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let report: Value = serde_json::from_slice(&out.stdout).context("iperf3 --json")?;
            let received = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
            let secs = report["end"]["sum_received"]["seconds"].as_f64().unwrap_or(0.0);
            let retransmits = report["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
            ensure!(received > 0 && secs > 9.0, "the transfer stopped: {received} bytes in {secs} s");
            visible(&format!(
            "e2e iperf3 across 10 reloads (debug build): {:.0} Mbit/s over {secs:.1} s, {retransmits} retransmits",
            received as f64 * 8.0 / secs / 1e6
        ));
            let status = ctl_json(fx, &["status"], 0)?;
            ensure!(
                status["config"]["origin"].as_str().is_some_and(|o| o.ends_with("reload-full.toml")),
                "{status}"
            );
            Ok(())
        },
    );
}

#[test]
fn a_broken_reload_or_sighup_leaves_the_old_policy_in_force() {
    with_lab("a_broken_reload_or_sighup_leaves_the_old_policy_in_force", Mode::Enforce, |fx| {
        let before = ctl_json(fx, &["status"], 0)?;
        let text = fx.enforce_text.replace("kind = \"lgwan\"", "kind = \"lgwn\"").replace(
            "to = \"198.18.40.20\"\n  service = \"e2e-iperf\"",
            "to = \"198.18.40.20\"\n  service = \"e2e-iperff\"",
        );
        let broken = write(fx, "broken.toml", &text)?;
        let out = ctl(fx, &["reload", &broken.display().to_string()])?;
        let err = out.stderr_text();
        ensure!(out.code == Some(1), "exit {:?}: {err}", out.code);
        for needle in ["config-invalid", "E-VALUE-UNKNOWN", "E-REF-SERVICE", "the running policy stays"] {
            ensure!(err.contains(needle), "the refusal does not say {needle:?}:\n{err}");
        }
        let out = ctl(fx, &["--json", "reload", &broken.display().to_string()])?;
        let doc: Value = serde_json::from_slice(&out.stderr)?;
        ensure!(doc["error"]["details"]["errors"].as_array().is_some_and(|e| e.len() >= 2), "{doc}");
        let after = ctl_json(fx, &["status"], 0)?;
        ensure!(
            after["generation"] == before["generation"]
                && after["config"]["sha256"] == before["config"]["sha256"],
            "{after}"
        );
        pass(
            fx.lab.https(Ns::Lgwan, addr::LG_TERMINAL, &format!("https://{}/", addr::SZ_CDR), None),
            "allowed traffic",
        )?;
        // A restart-only change is refused with a message saying so.
        let moved =
            write(fx, "moved.toml", &fx.enforce_text.replace("inside = \"lg-in\"", "inside = \"lg-in2\""))?;
        let out = ctl(fx, &["reload", &moved.display().to_string()])?;
        ensure!(
            out.code == Some(1) && out.stderr_text().contains("restart sekishod"),
            "{}",
            out.stderr_text()
        );
        // SIGHUP re-reads the daemon's own file: broken, it changes nothing; fixed, it loads.
        let own = fx.enforce.clone();
        std::fs::write(&own, &text)?;
        let pid = fx.daemon()?.pid();
        cmd::signal(pid, libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(500));
        ensure!(
            ctl_json(fx, &["status"], 0)?["generation"] == before["generation"],
            "a broken SIGHUP reload loaded"
        );
        std::fs::write(&own, without_screen_transfer(fx)?)?;
        cmd::signal(pid, libc::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(3);
        while ctl_json(fx, &["status"], 0)?["generation"] == before["generation"] {
            ensure!(Instant::now() < deadline, "SIGHUP did not reload");
            std::thread::sleep(Duration::from_millis(100));
        }
        blocked(
            fx.lab.rdp(Ns::Lgwan, addr::LG_TERMINAL, addr::IN_VDI),
            "screen transfer after the SIGHUP reload",
        )?;
        std::fs::write(&own, &fx.enforce_text)?;
        cmd::signal(pid, libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(500));
        pass(fx.lab.rdp(Ns::Lgwan, addr::LG_TERMINAL, addr::IN_VDI), "screen transfer back")?;
        let history = ctl_json(fx, &["history", "--limit", "10"], 0)?;
        ensure!(
            history.as_array().is_some_and(|h| h.iter().any(|c| c["action"] == "sighup" && c["ok"] == false)),
            "{history}"
        );
        Ok(())
    });
}

fn wait_for(
    fx: &mut Fixture,
    what: &str,
    limit: Duration,
    ok: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let s = ctl_json(fx, &["status"], 0)?;
        if ok(&s) {
            return Ok(s);
        }
        ensure!(Instant::now() < deadline, "{what}: not within {limit:?}: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn commit_confirm_rolls_back_by_itself_unless_confirmed() {
    with_lab("commit_confirm_rolls_back_by_itself_unless_confirmed", Mode::Enforce, |fx| {
        let trial = write(fx, "trial.toml", &without_screen_transfer(fx)?)?;
        let trial = trial.display().to_string();
        pass(fx.lab.rdp(Ns::Lgwan, addr::LG_TERMINAL, addr::IN_VDI), "screen transfer before")?;
        // Not confirmed: it rolls back by itself.
        let started = Instant::now();
        let r = ctl_json(fx, &["reload", "--confirm", "3", &trial], 0)?;
        ensure!(
            r["changes"]["paths"]["removed"][0] == "screen-transfer" && !r["confirm_by"].is_null(),
            "{r}"
        );
        let s = ctl_json(fx, &["status"], 0)?;
        ensure!(s["pending"]["generation"] == r["generation"], "no trial in status: {s}");
        blocked(fx.lab.rdp(Ns::Lgwan, addr::LG_TERMINAL, addr::IN_VDI), "screen transfer on trial")?;
        ensure!(ctl(fx, &["reload", &trial])?.code == Some(1), "a plain reload during a trial is refused");
        let s = wait_for(fx, "automatic rollback", Duration::from_secs(8), |s| {
            s["last_rollback"]["automatic"] == true
        })?;
        let took = started.elapsed();
        ensure!(s["pending"].is_null() && took >= Duration::from_secs(3), "{s} after {took:?}");
        pass(fx.lab.rdp(Ns::Lgwan, addr::LG_TERMINAL, addr::IN_VDI), "screen transfer after the rollback")?;
        let history = ctl_json(fx, &["history", "--limit", "5"], 0)?;
        ensure!(
            history.as_array().is_some_and(|h| h.iter().any(|c| c["action"] == "auto-rollback")),
            "{history}"
        );
        // Confirmed: it stays after its window.
        let r = ctl_json(fx, &["reload", "--confirm", "2", &trial], 0)?;
        ctl_json(fx, &["confirm"], 0)?;
        std::thread::sleep(Duration::from_secs(3));
        let s = ctl_json(fx, &["status"], 0)?;
        ensure!(
            s["generation"] == r["generation"] && s["pending"].is_null(),
            "the confirmed policy went: {s}"
        );
        blocked(
            fx.lab.rdp(Ns::Lgwan, addr::LG_TERMINAL, addr::IN_VDI),
            "screen transfer, confirmed removal",
        )?;
        // And a plain rollback goes back to the policy before it.
        let b = ctl_json(fx, &["rollback"], 0)?;
        ensure!(b["changes"]["paths"]["added"][0] == "screen-transfer", "{b}");
        pass(fx.lab.rdp(Ns::Lgwan, addr::LG_TERMINAL, addr::IN_VDI), "screen transfer after rollback")?;
        Ok(())
    });
}

/// Opens a raw control connection as root.
fn raw(fx: &mut Fixture) -> anyhow::Result<(UnixStream, BufReader<UnixStream>)> {
    let s = UnixStream::connect(socket(fx)?)?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    let r = BufReader::new(s.try_clone()?);
    Ok((s, r))
}

fn reply(r: &mut BufReader<UnixStream>) -> anyhow::Result<Value> {
    let mut line = String::new();
    ensure!(r.read_line(&mut line)? > 0, "the daemon closed the connection");
    Ok(serde_json::from_str(&line)?)
}

const HELLO: &[u8] = b"{\"hello\":{\"proto\":\"sekisho-control\",\"version\":1}}\n";

#[test]
fn abusive_clients_get_an_error_or_a_closed_connection_while_forwarding_goes_on() {
    with_lab(
        "abusive_clients_get_an_error_or_a_closed_connection_while_forwarding_goes_on",
        Mode::Enforce,
        |fx| {
            // Forwarding all along: a ping every 200 ms from the lgwan terminal to its router.
            let mut pinger = fx.lab.command(Ns::Lgwan, "ping");
            pinger
                .args(["-i", "0.2", "-W", "1", addr::LG_ROUTER])
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            let pinger = pinger.spawn()?;
            // Garbage before the hello, and a wrong version.
            let (mut w, mut r) = raw(fx)?;
            w.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let e = reply(&mut r)?;
            ensure!(e["ok"] == false && e["error"]["code"] == "bad-json", "{e}");
            let (mut w, mut r) = raw(fx)?;
            w.write_all(b"{\"hello\":{\"proto\":\"sekisho-control\",\"version\":99}}\n")?;
            ensure!(reply(&mut r)?["error"]["code"] == "version", "a wrong version is refused");
            // Garbage after the hello: an error each, then the connection is closed.
            let (mut w, mut r) = raw(fx)?;
            w.write_all(HELLO)?;
            ensure!(reply(&mut r)?["data"]["role"] == "admin", "root is admin");
            w.write_all(b"{\"id\":5,\"cmd\":\"stauts\"}\n")?;
            let e = reply(&mut r)?;
            ensure!(e["id"] == 5 && e["error"]["code"] == "bad-request", "{e}");
            for _ in 0..8 {
                // The daemon may close before the last one arrives: that is the point.
                let _ = w.write_all(b"\x00\xff{{{\n");
            }
            let mut closed = false;
            for _ in 0..9 {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    closed = true;
                    break;
                }
            }
            ensure!(closed, "eight bad lines in a row did not close the connection");
            // An over-long line: an error, then closed.
            let (mut w, mut r) = raw(fx)?;
            w.write_all(HELLO)?;
            reply(&mut r)?;
            let big = vec![b'x'; 2 << 20];
            let _ = w.write_all(&big);
            let e = reply(&mut r)?;
            ensure!(e["error"]["code"] == "line-too-long", "{e}");
            ensure!(reply(&mut r).is_err(), "the connection stays open after an over-long line");
            // A client that never reads: requests pile up, the daemon drops it; others are
            // served meanwhile.
            let (mut hog, _hog_r) = raw(fx)?;
            hog.write_all(HELLO)?;
            hog.set_write_timeout(Some(Duration::from_secs(2)))?;
            let request = b"{\"id\":1,\"cmd\":{\"flows\":{\"limit\":10000}}}\n{\"id\":2,\"cmd\":\"stats\"}\n"
                .repeat(200);
            let _ = hog.write_all(&request);
            let t = Instant::now();
            ensure!(ctl(fx, &["status"])?.success(), "status while a client does not read");
            ensure!(
                t.elapsed() < Duration::from_secs(5),
                "status took {:?} while a client does not read",
                t.elapsed()
            );
            // 200 clients at once: each gets a welcome or `busy`, or is closed.
            let s = socket(fx)?;
            let mut clients = Vec::new();
            for _ in 0..200 {
                let c = UnixStream::connect(&s)?;
                c.set_read_timeout(Some(Duration::from_secs(10)))?;
                let _ = (&c).write_all(HELLO);
                clients.push(c);
            }
            let (mut welcomed, mut busy, mut closed) = (0, 0, 0);
            for c in &clients {
                let mut line = String::new();
                match BufReader::new(c).read_line(&mut line) {
                    Ok(0) | Err(_) => closed += 1,
                    Ok(_) => {
                        let v: Value = serde_json::from_str(&line)?;
                        if v["ok"] == true {
                            welcomed += 1;
                        } else if v["error"]["code"] == "busy" {
                            busy += 1;
                        } else {
                            bail!("unexpected answer: {v}");
                        }
                    }
                }
            }
            ensure!(
                welcomed + busy + closed == 200 && busy > 0 && welcomed >= 1,
                "{welcomed} welcomed, {busy} busy, {closed} closed"
            );
            drop(clients);
            visible(&format!("e2e 200 clients: {welcomed} welcomed, {busy} busy, {closed} closed"));
            // The hog is dropped by the daemon once a reply waits longer than its write
            // timeout (10 s): then only the asking client is connected.
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                // The 200 may still be leaving: `busy` for a moment is fine.
                let status = Client::connect(&s, "e2e", Duration::from_secs(10)).and_then(|mut c| c.status());
                if status.as_ref().is_ok_and(|s| s.control.clients == 1) {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "the client that never reads is still connected: {status:?}"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            drop(hog);
            cmd::signal(pinger.id(), libc::SIGINT);
            let out = pinger.wait_with_output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let summary =
                text.lines().find(|l| l.contains("packets transmitted")).unwrap_or_default().to_owned();
            ensure!(summary.contains(" 0% packet loss"), "forwarding suffered during the abuse: {summary}");
            visible(&format!("e2e forwarding during the abuse: {summary}"));
            Ok(())
        },
    );
}

#[test]
fn the_daemon_holds_no_capability_and_its_socket_is_0660_in_a_0750_directory() {
    with_lab(
        "the_daemon_holds_no_capability_and_its_socket_is_0660_in_a_0750_directory",
        Mode::Enforce,
        |fx| {
            use std::os::unix::fs::PermissionsExt;
            let pid = fx.daemon()?.pid();
            let mut threads = 0;
            for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
                let status = std::fs::read_to_string(task?.path().join("status"))?;
                threads += 1;
                for line in status.lines().filter(|l| l.starts_with("CapEff:") || l.starts_with("CapPrm:")) {
                    ensure!(line.ends_with("0000000000000000"), "a thread of sekishod holds {line}");
                }
            }
            ensure!(threads >= 3, "only {threads} threads: main, a worker and the control thread at least");
            let s = socket(fx)?;
            let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
            ensure!(
                mode(&s)? == 0o660 && mode(s.parent().context("dir")?)? == 0o750,
                "modes {:o} {:o}",
                mode(&s)?,
                mode(s.parent().context("dir")?)?
            );
            Ok(())
        },
    );
}

/// Removes the service user when dropped.
struct ServiceUser;

const SERVICE_USER: &str = "ske2e-svc";

impl Drop for ServiceUser {
    fn drop(&mut self) {
        run_quiet(&["userdel", SERVICE_USER]);
        run_quiet(&["groupdel", SERVICE_USER]);
    }
}

#[test]
fn runs_as_the_systemd_unit_does_notify_watchdog_no_capabilities() {
    with_lab("runs_as_the_systemd_unit_does_notify_watchdog_no_capabilities", Mode::Enforce, |fx| {
        use std::os::unix::net::UnixDatagram;
        // The unit's model: its own user, CAP_NET_RAW and CAP_NET_ADMIN as ambient
        // capabilities, a runtime and a state directory it owns, $NOTIFY_SOCKET.
        drop(fx.daemon.take());
        run_quiet(&["userdel", SERVICE_USER]);
        run_quiet(&["groupdel", SERVICE_USER]);
        must(&["useradd", "--system", "--no-create-home", "--user-group", SERVICE_USER])?;
        let _user = ServiceUser;
        let base = fx.lab.state_dir().join("svc");
        let (run_dir, state_dir) = (base.join("run"), base.join("state"));
        for d in [&run_dir, &state_dir] {
            std::fs::create_dir_all(d)?;
            must(&["chown", &format!("{SERVICE_USER}:{SERVICE_USER}"), &d.display().to_string()])?;
        }
        must(&["chmod", "0711", &base.display().to_string()])?;
        let notify_path = base.join("notify.sock");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path)?;
        must(&["chmod", "0666", &notify_path.display().to_string()])?;
        notify.set_read_timeout(Some(Duration::from_secs(15)))?;
        let socket = run_dir.join("control.sock");
        let mut c = fx.lab.command(Ns::Gateway, "setpriv");
        c.args(["--reuid", SERVICE_USER, "--regid", SERVICE_USER, "--init-groups"]);
        c.args(["--inh-caps", "+net_raw,+net_admin", "--ambient-caps", "+net_raw,+net_admin", "--"]);
        c.arg(fx.lab.bin("sekishod")).arg("run").arg("-c").arg(&fx.enforce);
        c.arg("--control-socket").arg(&socket).arg("--state-dir").arg(&state_dir);
        c.env("NOTIFY_SOCKET", &notify_path).env("WATCHDOG_USEC", "400000");
        let log = fx.lab.state_dir().join("svc.log");
        c.stdout(Stdio::null()).stderr(std::fs::File::create(&log)?);
        let mut daemon = c.spawn().context("setpriv sekishod")?;
        let pid = daemon.id();
        let mut messages = Vec::new();
        let mut buf = [0u8; 1024];
        let deadline = Instant::now() + Duration::from_secs(15);
        while !messages.iter().any(|m: &String| m.contains("WATCHDOG=1")) {
            if Instant::now() > deadline {
                let _ = cmd::stop_child(&mut daemon, Duration::from_secs(2));
                bail!(
                    "no READY and WATCHDOG from sekishod: {messages:?}\n{}",
                    std::fs::read_to_string(&log)?
                );
            }
            if let Ok(n) = notify.recv(&mut buf) {
                messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        ensure!(messages[0].starts_with("READY=1\nSTATUS=4 ports, enforce"), "{messages:?}");
        // The real daemon pid: setpriv execs it.
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let uid = Users::uid(SERVICE_USER)?;
        ensure!(
            status.lines().any(|l| l.starts_with("Uid:") && l.contains(&uid)),
            "not running as {SERVICE_USER}"
        );
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let s = std::fs::read_to_string(task?.path().join("status"))?;
            for l in s
                .lines()
                .filter(|l| l.starts_with("CapEff:") || l.starts_with("CapPrm:") || l.starts_with("CapAmb:"))
            {
                ensure!(l.ends_with("0000000000000000"), "a thread still holds {l}");
            }
        }
        // It forwards and answers on its socket.
        pass(
            fx.lab.https(Ns::Lgwan, addr::LG_TERMINAL, &format!("https://{}/", addr::SZ_CDR), None),
            "forwarding as the service user",
        )?;
        let mut client = Client::connect(&socket, "e2e", Duration::from_secs(10))?;
        ensure!(client.status()?.ready, "not ready");
        let r = client.reload(Default::default())?;
        ensure!(r.generation == 2, "a reload as the service user: {r:?}");
        drop(client);
        cmd::signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !messages.iter().any(|m| m.starts_with("STOPPING=1")) && Instant::now() < deadline {
            if let Ok(n) = notify.recv(&mut buf) {
                messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        let exit = daemon.wait()?;
        ensure!(
            exit.success() && messages.iter().any(|m| m.starts_with("STOPPING=1")),
            "{exit}: {messages:?}"
        );
        ensure!(!socket.exists(), "the control socket was not removed");
        visible(&format!(
            "e2e as {SERVICE_USER} with ambient capabilities: {} notifications, capabilities dropped",
            messages.len()
        ));
        Ok(())
    });
}
