//! `sekishod lab demo`: the lab, `sekishod run` on `configs/lab.toml`, and a scripted
//! set of allowed and forbidden connections with real clients, shown as a table.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::daemon::{Daemon, Delta};
use crate::lab::{addr, Lab, Ns, UpOptions};
use crate::probe::{Attempt, MailProbe};

/// The lab policy, used when `configs/lab.toml` is not found on disk.
const LAB_TOML: &str = include_str!("../../../configs/lab.toml");

/// How often the daemon rewrites its stats file during the demo.
const STATS_INTERVAL: Duration = Duration::from_millis(200);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

type Probe = Box<dyn Fn(&Lab) -> anyhow::Result<Attempt>>;

/// One scripted connection.
pub struct Check {
    /// What it is, for people.
    pub connection: String,
    /// Whether it should get through.
    pub expect_pass: bool,
    /// The reason code whose counter must move.
    pub reason: &'static str,
    probe: Probe,
}

fn check(
    connection: impl Into<String>,
    expect_pass: bool,
    reason: &'static str,
    probe: impl Fn(&Lab) -> anyhow::Result<Attempt> + 'static,
) -> Check {
    Check { connection: connection.into(), expect_pass, reason, probe: Box::new(probe) }
}

/// The mail path: swaks to the relay, then the LGWAN mail host must hold a new,
/// text-ified message with the marker.
fn mail_path(lab: &Lab) -> anyhow::Result<Attempt> {
    let before = lab.mailbox().len();
    let marker = format!("demo-{}", std::process::id());
    let mut attempt = lab.swaks(
        Ns::Internet,
        addr::IN_SENDER,
        addr::SZ_RELAY,
        &MailProbe { marker: &marker, subject: "sekisho demo" },
    )?;
    if attempt.passed {
        let mailbox = lab.mailbox();
        match mailbox.get(before..).and_then(|new| new.iter().find(|(_, m)| m.contains(&marker))) {
            Some((_, m)) if m.contains("X-Sekisho-Sanitized: mail-text") && !m.contains("<script") => {
                attempt.detail = "delivered to 198.18.20.25, text-ified".into();
            }
            Some(_) => {
                attempt.passed = false;
                attempt.detail = "delivered but NOT text-ified".into();
            }
            None => {
                attempt.passed = false;
                attempt.detail = "accepted but not delivered".into();
            }
        }
    }
    Ok(attempt)
}

/// A spoofed source: a lgwan host sends from an internet address.
fn spoofed(lab: &Lab) -> anyhow::Result<Attempt> {
    let spoof = "203.0.113.99";
    lab.must(Ns::Lgwan, &["ip", "addr", "add", &format!("{spoof}/32"), "dev", "eth0"])?;
    let attempt = lab.https(Ns::Lgwan, spoof, &format!("https://{}/", addr::IN_SENDER), None);
    lab.must(Ns::Lgwan, &["ip", "addr", "del", &format!("{spoof}/32"), "dev", "eth0"])?;
    attempt
}

/// The demo's scripted connections, on `configs/lab.toml`.
pub fn checks() -> Vec<Check> {
    let web = format!("https://{}/", addr::IN_SENDER);
    let cdr = format!("https://{}/", addr::SZ_CDR);
    let web2 = web.clone();
    let cdr2 = cdr.clone();
    let cdr3 = cdr.clone();
    vec![
        check("lgwan terminal 198.18.20.5 -> its router 198.18.20.1 (ping)", true, "allow:intra-zone", |l| {
            l.ping(Ns::Lgwan, addr::LG_TERMINAL, addr::LG_ROUTER)
        }),
        check("lgwan terminal 2001:db8:20::5 -> its router (ping, IPv6)", true, "allow:intra-zone", |l| {
            l.ping(Ns::Lgwan, addr::LG_TERMINAL6, addr::LG_ROUTER6)
        }),
        check(
            "internet 203.0.113.7 -> mail relay 198.18.40.10:25 -> LGWAN mail 198.18.20.25 (swaks)",
            true,
            "allow:path",
            mail_path,
        ),
        check(
            "internet 203.0.113.7 -> file sanitiser 198.18.40.20:443 (upload, curl)",
            true,
            "allow:path",
            |l| {
                l.https(
                    Ns::Internet,
                    addr::IN_SENDER,
                    &format!("https://{}/files/demo.html", addr::SZ_CDR),
                    Some(b"<p>report</p><script>x()</script>"),
                )
            },
        ),
        check(
            "lgwan terminal -> file sanitiser 198.18.40.20:443 (download, curl)",
            true,
            "allow:path",
            |l| {
                l.https(
                    Ns::Lgwan,
                    addr::LG_TERMINAL,
                    &format!("https://{}/files/demo.html", addr::SZ_CDR),
                    None,
                )
            },
        ),
        check(
            "lgwan terminal -> VDI host 203.0.113.50:3389 (RDP, screen transfer)",
            true,
            "allow:path",
            |l| l.rdp(Ns::Lgwan, addr::LG_TERMINAL, addr::IN_VDI),
        ),
        check(
            "VDI host 203.0.113.50 -> lgwan terminal 198.18.20.5:3389 (reverse)",
            false,
            "deny:unsanitized-crossing",
            |l| l.rdp(Ns::Internet, addr::IN_VDI, addr::LG_TERMINAL),
        ),
        check(
            "lgwan terminal -> internet web 203.0.113.7:443 (direct, curl)",
            false,
            "deny:unsanitized-crossing",
            move |l| l.https(Ns::Lgwan, addr::LG_TERMINAL, &web, None),
        ),
        check(
            "internet 203.0.113.7 -> LGWAN mail 198.18.20.25:25 (bypassing the relay)",
            false,
            "deny:unsanitized-crossing",
            |l| {
                l.swaks(
                    Ns::Internet,
                    addr::IN_SENDER,
                    addr::LG_MAIL,
                    &MailProbe { marker: "direct", subject: "direct" },
                )
            },
        ),
        check(
            "juki batch 198.18.10.5 -> juki server 198.18.20.30:22 (SSH, exception)",
            true,
            "allow:exception",
            |l| l.ssh(Ns::Mynumber, addr::MN_BATCH, addr::LG_JUKI),
        ),
        check(
            "mynumber 198.18.10.9 -> juki server 198.18.20.30:22 (not the exception's host)",
            false,
            "deny:mynumber-isolation",
            |l| l.ssh(Ns::Mynumber, addr::MN_OTHER, addr::LG_JUKI),
        ),
        check(
            "juki batch 198.18.10.5 -> juki server 198.18.20.30 (ping: not its service)",
            false,
            "deny:mynumber-isolation",
            |l| l.ping(Ns::Mynumber, addr::MN_BATCH, addr::LG_JUKI),
        ),
        check(
            "mynumber 198.18.10.9 -> internet web 203.0.113.7:443",
            false,
            "deny:mynumber-isolation",
            move |l| l.https(Ns::Mynumber, addr::MN_OTHER, &web2, None),
        ),
        check(
            "mynumber 198.18.10.9 -> file sanitiser 198.18.40.20:443",
            false,
            "deny:mynumber-isolation",
            move |l| l.https(Ns::Mynumber, addr::MN_OTHER, &cdr2, None),
        ),
        check(
            "mynumber 2001:db8:10::5 -> lgwan 2001:db8:20::5 (ping, IPv6)",
            false,
            "deny:mynumber-isolation",
            |l| l.ping(Ns::Mynumber, addr::MN_BATCH6, addr::LG_TERMINAL6),
        ),
        check(
            "mail relay 198.18.40.10 -> internet web 203.0.113.7:443 (no rule)",
            false,
            "deny:no-rule",
            move |l| {
                l.https(Ns::Sanitization, addr::SZ_RELAY, &format!("https://{}/", addr::IN_SENDER), None)
            },
        ),
        check(
            "lgwan host spoofing 203.0.113.99 -> internet web 203.0.113.7:443",
            false,
            "deny:spoofed-source",
            spoofed,
        ),
        check(
            "lgwan terminal -> file sanitiser :443 without TLS (plain HTTP)",
            false,
            "deny:app-mismatch",
            move |l| l.plaintext_http(Ns::Lgwan, addr::LG_TERMINAL, &format!("http://{}:443/", addr::SZ_CDR)),
        ),
        check(
            "internet 203.0.113.7 -> file sanitiser 198.18.40.20:443 (GET /)",
            true,
            "allow:path",
            move |l| l.https(Ns::Internet, addr::IN_SENDER, &cdr3, None),
        ),
    ]
}

/// One row of the result table.
pub struct Row {
    /// The check.
    pub connection: String,
    /// "pass" or "blocked".
    pub expected: &'static str,
    /// "pass" or "blocked".
    pub observed: &'static str,
    /// The reason codes that moved (of the observed kind).
    pub reason: String,
    /// The reason code that had to move.
    pub want: &'static str,
    /// Whether the observed outcome and reason are the expected ones.
    pub ok: bool,
    /// What the client saw.
    pub detail: String,
    /// Every counter that moved.
    pub delta: Delta,
}

fn word(pass: bool) -> &'static str {
    if pass {
        "pass"
    } else {
        "blocked"
    }
}

/// Finds the configuration: the given path, or beside the binary's workspace, or the
/// copy built into the binary (written into the lab's state directory).
fn resolve_config(config: &Path, sekishod: &Path, lab: &Lab) -> anyhow::Result<PathBuf> {
    if config.exists() {
        return Ok(config.to_path_buf());
    }
    // target/<profile>/sekishod -> <workspace>/configs/lab.toml
    if let Some(ws) = sekishod.parent().and_then(Path::parent).and_then(Path::parent) {
        let candidate = ws.join(config);
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    if config == Path::new("configs/lab.toml") {
        let path = lab.state_dir().join("lab.toml");
        std::fs::write(&path, LAB_TOML)?;
        return Ok(path);
    }
    bail!("configuration {} not found", config.display())
}

/// Runs the demo; true when every expected outcome was observed.
pub fn run(prefix: &str, config: &Path, sekishod: &Path) -> anyhow::Result<bool> {
    let start = Instant::now();
    // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    for tool in ["ping", "curl", "swaks", "socat"] {
        if !crate::cmd::have(tool) {
            bail!("the demo needs {tool} (apt-get install iputils-ping curl swaks socat)");
        }
    }
    println!("== sekisho lab demo: building the lab ({prefix}*)");
    let lab = Lab::up(&UpOptions {
        prefix: prefix.to_string(),
        sekishod: sekishod.to_path_buf(),
        services: true,
        offloads_off: false,
    })?;
    print!("{}", lab.describe());
    let config = resolve_config(config, sekishod, &lab)?;
    println!("== starting `sekishod run -c {}` in {}", config.display(), lab.ns(Ns::Gateway));
    let mut daemon = Daemon::start(&lab, &config, STATS_INTERVAL).context("starting the daemon")?;
    println!("   ready (pid {}, stats in {})", daemon.pid(), daemon.stats_path().display());
    println!();
    let width = 86;
    println!(" #  {:<width$}  {:<8}  {:<8}  {:<26}  detail", "connection", "expected", "observed", "reason");
    println!("{}", "-".repeat(width + 70));
    let mut rows = Vec::new();
    let mut before = daemon.fresh_stats()?;
    for (i, c) in checks().into_iter().enumerate() {
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        let attempt = (c.probe)(&lab).with_context(|| format!("running check {:?}", c.connection))?;
        let after = daemon.fresh_stats()?;
        let delta = after.since(&before);
        before = after;
        let codes = delta.codes(attempt.passed);
        let ok = attempt.passed == c.expect_pass && delta.reason(c.reason) > 0;
        let reason = if codes.is_empty() { "-".to_string() } else { codes.join(",") };
        let mark = if ok { "" } else { "   <-- NOT AS EXPECTED" };
        let detail: String = attempt.detail.chars().take(40).collect();
        println!(
            "{:>2}  {:<width$}  {:<8}  {:<8}  {:<26}  {detail}{mark}",
            i + 1,
            c.connection,
            word(c.expect_pass),
            word(attempt.passed),
            reason
        );
        rows.push(Row {
            connection: c.connection,
            expected: word(c.expect_pass),
            observed: word(attempt.passed),
            reason,
            want: c.reason,
            ok,
            detail: attempt.detail,
            delta,
        });
    }
    println!();
    let failed: Vec<&Row> = rows.iter().filter(|r| !r.ok).collect();
    for r in &failed {
        println!(
            "NOT AS EXPECTED: {}\n  expected {} with {}; observed {} ({}); counters: {}",
            r.connection, r.expected, r.want, r.observed, r.detail, r.delta
        );
    }
    println!("== stopping sekishod (SIGTERM)");
    let (status, summary) = daemon.stop()?;
    for line in summary.lines().take(60) {
        println!("   | {line}");
    }
    if !status.success() {
        println!("   sekishod exited with {status}");
    }
    println!("== tearing down the lab");
    lab.down()?;
    let passed = rows.len() - failed.len();
    println!(
        "== {passed} of {} expected outcomes observed ({:.1} s){}",
        rows.len(),
        start.elapsed().as_secs_f64(),
        if failed.is_empty() && status.success() { "" } else { " — FAILED" }
    );
    Ok(failed.is_empty() && status.success())
}
