//! `sekisho-lab demo`: the lab, `sekishod run` on `configs/lab.toml`, `sekishoctl
//! status`, a scripted set of allowed and forbidden connections with real clients shown
//! as a table with the reason counter that moved (read through the control socket), and
//! a reload with commit-confirm that cuts a live connection and rolls back by itself.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::daemon::{Daemon, Delta, Stats};
use crate::lab::{addr, Lab, Ns, UpOptions};
use crate::probe::{Attempt, MailProbe};

/// The lab policy, used when `configs/lab.toml` is not found on disk.
const LAB_TOML: &str = include_str!("../../../configs/lab.toml");

/// The commit-confirm window of the demo's reload.
const CONFIRM_S: u32 = 6;

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

/// Finds the configuration: the given path, or beside the programs' workspace, or the
/// copy built into the program (written into the lab's state directory).
fn resolve_config(config: &Path, bin_dir: &Path, lab: &Lab) -> anyhow::Result<PathBuf> {
    if config.exists() {
        return Ok(config.to_path_buf());
    }
    // target/<profile>/ -> <workspace>/configs/lab.toml
    if let Some(ws) = bin_dir.parent().and_then(Path::parent) {
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

/// Runs `sekishoctl ARGS` against the daemon and prints its output, indented.
fn sekishoctl(lab: &Lab, daemon: &Daemon, args: &[&str]) -> anyhow::Result<()> {
    let mut c = std::process::Command::new(lab.bin("sekishoctl"));
    c.arg("--socket").arg(daemon.socket()).args(args);
    let out = crate::cmd::run(&mut c, None, Duration::from_secs(30))?;
    println!("$ sekishoctl {}", args.join(" "));
    for line in out.stdout_text().lines().chain(out.stderr_text().lines()) {
        println!("   | {line}");
    }
    if out.code != Some(0) {
        bail!("`sekishoctl {}` failed ({})", args.join(" "), out.summary());
    }
    Ok(())
}

/// The lab policy without its screen-transfer path: what the demo's reload tries.
fn without_screen_transfer(text: &str) -> anyhow::Result<String> {
    let start = text.find("[[path]]\n# 画面転送").context("the lab policy has no screen-transfer path")?;
    let end =
        text[start..].find("\n# ----").map(|i| start + i).context("the screen-transfer path has no end")?;
    Ok(format!("{}{}", &text[..start], &text[end..]))
}

struct Table {
    rows: Vec<Row>,
    before: Stats,
}

const WIDTH: usize = 86;

impl Table {
    /// Runs one check and prints its row.
    fn check(&mut self, lab: &Lab, daemon: &mut Daemon, c: Check) -> anyhow::Result<()> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        let attempt = (c.probe)(lab).with_context(|| format!("running check {:?}", c.connection))?;
        let after = daemon.stats()?;
        let delta = after.since(&self.before);
        self.before = after;
        let codes = delta.codes(attempt.passed);
        let ok = attempt.passed == c.expect_pass && delta.reason(c.reason) > 0;
        let reason = if codes.is_empty() { "-".to_string() } else { codes.join(",") };
        let mark = if ok { "" } else { "   <-- NOT AS EXPECTED" };
        let detail: String = attempt.detail.chars().take(40).collect();
        println!(
            "{:>2}  {:<WIDTH$}  {:<8}  {:<8}  {:<26}  {detail}{mark}",
            self.rows.len() + 1,
            c.connection,
            word(c.expect_pass),
            word(attempt.passed),
            reason
        );
        self.rows.push(Row {
            connection: c.connection,
            expected: word(c.expect_pass),
            observed: word(attempt.passed),
            reason,
            want: c.reason,
            ok,
            detail: attempt.detail,
            delta,
        });
        Ok(())
    }
}

/// The reload: a policy without the screen-transfer path, on trial for [`CONFIRM_S`]
/// seconds while an RDP session is open; it is cut, a new one is refused, nobody
/// confirms, the daemon rolls back by itself, RDP passes again.
fn reload_demo(lab: &Lab, daemon: &mut Daemon, table: &mut Table, config: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("cannot read {}", config.display()))?;
    let trial = lab.state_dir().join("lab-without-screen-transfer.toml");
    std::fs::write(&trial, without_screen_transfer(&text)?)?;
    // A live RDP session (lgwan terminal -> VDI host), held open during the reload.
    let mut session = lab.command(Ns::Lgwan, "socat");
    session.args(["-u", "EXEC:sleep 30", &format!("TCP:{}:3389,bind={}", addr::IN_VDI, addr::LG_TERMINAL)]);
    session.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut session = session.spawn().context("cannot start socat")?;
    std::thread::sleep(Duration::from_millis(500));
    println!();
    let confirm = CONFIRM_S.to_string();
    let trial_arg = trial.display().to_string();
    let shown = sekishoctl(lab, daemon, &["reload", "--confirm", &confirm, &trial_arg]);
    let _ = crate::cmd::stop_child(&mut session, Duration::from_secs(1));
    shown?;
    println!();
    table.check(
        lab,
        daemon,
        check(
            "(policy on trial, screen transfer removed) lgwan terminal -> VDI 203.0.113.50:3389",
            false,
            "deny:unsanitized-crossing",
            |l| l.rdp(Ns::Lgwan, addr::LG_TERMINAL, addr::IN_VDI),
        ),
    )?;
    println!("    ... nobody confirms; waiting for the automatic rollback ({CONFIRM_S} s)");
    let deadline = Instant::now() + Duration::from_secs(u64::from(CONFIRM_S) + 10);
    loop {
        let status = daemon.client()?.status()?;
        if status.last_rollback.as_ref().is_some_and(|r| r.automatic) && status.pending.is_none() {
            break;
        }
        if Instant::now() > deadline {
            bail!("the daemon did not roll back by itself within {} s", CONFIRM_S + 10);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!();
    sekishoctl(lab, daemon, &["status"])?;
    println!();
    table.check(
        lab,
        daemon,
        check("(rolled back by itself) lgwan terminal -> VDI 203.0.113.50:3389", true, "allow:path", |l| {
            l.rdp(Ns::Lgwan, addr::LG_TERMINAL, addr::IN_VDI)
        }),
    )
}

/// Runs the demo; true when every expected outcome was observed.
pub fn run(prefix: &str, config: &Path, bin_dir: &Path) -> anyhow::Result<bool> {
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
    for program in ["sekishod", "sekishoctl"] {
        if !bin_dir.join(program).is_file() {
            bail!(
                "{} is missing: build it beside sekisho-lab (cargo build --release -p sekishod -p sekishoctl -p sekisho-lab)",
                bin_dir.join(program).display()
            );
        }
    }
    println!("== sekisho lab demo: building the lab ({prefix}*)");
    let lab = Lab::up(&UpOptions {
        prefix: prefix.to_string(),
        bin_dir: bin_dir.to_path_buf(),
        services: true,
        offloads_off: false,
    })?;
    print!("{}", lab.describe());
    let config = resolve_config(config, bin_dir, &lab)?;
    println!("== starting `sekishod run -c {}` in {}", config.display(), lab.ns(Ns::Gateway));
    let mut daemon = Daemon::start(&lab, &config).context("starting the daemon")?;
    println!("   ready (pid {}, control socket {})", daemon.pid(), daemon.socket().display());
    println!();
    sekishoctl(&lab, &daemon, &["status"])?;
    println!();
    println!(" #  {:<WIDTH$}  {:<8}  {:<8}  {:<26}  detail", "connection", "expected", "observed", "reason");
    println!("{}", "-".repeat(WIDTH + 70));
    let before = daemon.stats()?;
    let mut table = Table { rows: Vec::new(), before };
    for c in checks() {
        table.check(&lab, &mut daemon, c)?;
    }
    reload_demo(&lab, &mut daemon, &mut table, &config)?;
    println!();
    let rows = table.rows;
    let failed: Vec<&Row> = rows.iter().filter(|r| !r.ok).collect();
    for r in &failed {
        println!(
            "NOT AS EXPECTED: {}\n  expected {} with {}; observed {} ({}); counters: {}",
            r.connection, r.expected, r.want, r.observed, r.detail, r.delta
        );
    }
    sekishoctl(&lab, &daemon, &["history", "--limit", "4"])?;
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
