//! The end-to-end tests' shared fixture: one lab per test binary (prefix `ske2e-`),
//! shared by its tests behind a mutex (so they run one at a time), built by the first
//! test and torn down when the process exits (also after failures: an `atexit` hook; a
//! panicking build tears itself down). Other test processes wait on a lock file.
//!
//! The programs are `target/<profile>/{sekishod,sekishoctl,sekisho-lab}`, beside the test
//! executable's directory; `cargo test` at the workspace root builds them.
//!
//! The tests need root. Without it each prints "SKIPPED: needs root" and passes — unless
//! the environment variable `CI` is set, where a skip is a failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use sekisho_lab::{cmd, Attempt, Daemon, Delta, Lab, Stats, UpOptions};

/// The lab's namespace prefix, unless `SEKISHO_E2E_PREFIX` names another (two checkouts
/// running their end-to-end tests at once need different ones).
pub const PREFIX: &str = "ske2e-";

/// The prefix in use: `SEKISHO_E2E_PREFIX`, else [`PREFIX`].
pub fn prefix() -> String {
    std::env::var("SEKISHO_E2E_PREFIX").unwrap_or_else(|_| PREFIX.to_string())
}
/// The `[control]` groups of the tests' policy (created by the permission test).
pub const ADMIN_GROUP: &str = "ske2e-admin";
/// See [`ADMIN_GROUP`].
pub const READ_GROUP: &str = "ske2e-read";

/// What the tests add to configs/lab.toml: an iperf3 leg (lgwan → file sanitiser host,
/// TCP 5201, any application), a rule whose service is `any` toward an address with
/// no host, so that a tunnel can match an allowed connection and meet `deny:tunnel`, an
/// α' local-breakout leg (lgwan → 203.0.113.7:8443 by server name), and a temporary
/// block of scanning sources (the monitor's `block_ttl_s`, off by default).
pub const E2E_EXTRA: &str = r#"

# --- added by the end-to-end tests (tests/src/lib.rs) ---
[[service]]
name = "e2e-any"
proto = "any"

[[service]]
name = "e2e-iperf"
proto = "tcp"
ports = [5201]
app = "any"

[[path]]
name = "e2e-iperf"
method = "file-sanitize"
  [[path.leg]]
  from = "zone:lgwan"
  to = "198.18.40.20"
  service = "e2e-iperf"

[[rule]]
name = "e2e-tunnel-probe"
from = "198.18.20.5"
to = "198.18.40.30"
service = "e2e-any"

[[service]]
name = "e2e-cloud"
proto = "tcp"
ports = [8443]
app = "tls"
sni_allow = ["portal.example.lg.jp", "*.example.com"]

[[path]]
name = "e2e-alpha-prime"
method = "local-breakout"
  [[path.leg]]
  from = "zone:lgwan"
  to = "203.0.113.7"
  service = "e2e-cloud"

[monitor]
scan_ports = 32
block_ttl_s = 20
"#;

/// The daemon's mode for a test.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// `mode = "enforce"`.
    Enforce,
    /// `mode = "monitor"`.
    Monitor,
}

/// The shared lab and daemon.
pub struct Fixture {
    /// The daemon and the mode it was started in.
    pub daemon: Option<(Daemon, Mode)>,
    /// The enforce-mode policy file.
    pub enforce: PathBuf,
    /// The monitor-mode policy file.
    pub monitor: PathBuf,
    /// The policy text of [`Fixture::enforce`].
    pub enforce_text: String,
    /// Dropped after the daemon: stops the services and deletes the namespaces.
    pub lab: Lab,
    // Dropped last: other e2e processes (nextest runs one per test) wait for this lab.
    _lock: std::fs::File,
}

static FIXTURE: Mutex<Option<Fixture>> = Mutex::new(None);
static AT_EXIT: Once = Once::new();

extern "C" fn teardown_at_exit() {
    let fixture = match FIXTURE.lock() {
        Ok(mut f) => f.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    drop(fixture);
}

/// Writes to the real stderr, past the test harness's capture.
pub fn visible(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// `target/<profile>`: where cargo put the programs.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the test executable")?;
    // target/<profile>/deps/e2e-<hash> -> target/<profile>
    let dir = exe.parent().and_then(Path::parent).context("unexpected test executable location")?;
    for program in ["sekishod", "sekishoctl", "sekisho-lab"] {
        let bin = dir.join(program);
        if !bin.is_file() {
            bail!(
                "{} is missing: build the programs first (`cargo build --workspace --bins`; \
                 deploy/test.sh does)",
                bin.display()
            );
        }
        warn_if_stale(&bin);
    }
    Ok(dir.to_path_buf())
}

/// `cargo test -p sekisho-e2e` alone does not rebuild the programs: say so when a source
/// file is newer than one.
fn warn_if_stale(bin: &Path) {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else { return };
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let mut stack = vec![crates];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs")
                && e.metadata().and_then(|m| m.modified()).is_ok_and(|m| m > built)
            {
                visible(&format!(
                    "WARNING: {} is newer than {}: run `cargo build` (or `cargo test` at the workspace root) \
                     to test the current programs",
                    path.display(),
                    bin.display()
                ));
                return;
            }
        }
    }
}

/// Opens `path` and takes an exclusive lock on it, waiting for other holders.
fn exclusive(path: &str) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {path}"))?;
    // SAFETY: flock(2) on a descriptor this function owns; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    ensure!(rc == 0, "cannot lock {path}: {}", std::io::Error::last_os_error());
    Ok(file)
}

impl Fixture {
    fn new() -> anyhow::Result<Fixture> {
        let bin_dir = bin_dir()?;
        let lock = exclusive("/run/sekisho-e2e.lock")?;
        let offloads_off = std::env::var("SEKISHO_E2E_OFFLOADS").is_ok_and(|v| v == "off");
        visible(&format!(
            "e2e lab: io {}, workers {}, hosts' offloads {}",
            std::env::var("SEKISHO_E2E_IO").unwrap_or_else(|_| "afpacket (default)".into()),
            std::env::var("SEKISHO_E2E_WORKERS").unwrap_or_else(|_| "1 (default)".into()),
            if offloads_off { "off" } else { "at their defaults" }
        ));
        let lab = Lab::up(&UpOptions { prefix: prefix(), bin_dir, services: true, offloads_off })?;
        let base_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/lab.toml");
        let base = std::fs::read_to_string(&base_path)
            .with_context(|| format!("cannot read {}", base_path.display()))?;
        // The backend under test: SEKISHO_E2E_IO=pnet|afpacket, SEKISHO_E2E_WORKERS=N.
        let mut daemon = String::from("mode = \"enforce\"");
        for (var, key, quote) in [("SEKISHO_E2E_IO", "io", true), ("SEKISHO_E2E_WORKERS", "workers", false)] {
            if let Ok(v) = std::env::var(var) {
                let v = if quote { format!("{v:?}") } else { v };
                daemon.push_str(&format!("\n{key} = {v}"));
            }
        }
        let base = base.replacen("mode = \"enforce\"", &daemon, 1);
        let enforce_text = format!("{base}{E2E_EXTRA}")
            .replace("\"sekisho-admin\"", &format!("\"{ADMIN_GROUP}\""))
            .replace("\"sekisho-read\"", &format!("\"{READ_GROUP}\""));
        ensure!(
            enforce_text.contains("mode = \"enforce\"") && enforce_text.contains(ADMIN_GROUP),
            "configs/lab.toml no longer says mode = \"enforce\" and [control] admin_group = \"sekisho-admin\""
        );
        let monitor_text = enforce_text.replacen("mode = \"enforce\"", "mode = \"monitor\"", 1);
        let enforce = lab.state_dir().join("e2e-enforce.toml");
        let monitor = lab.state_dir().join("e2e-monitor.toml");
        std::fs::write(&enforce, &enforce_text)?;
        std::fs::write(&monitor, monitor_text)?;
        Ok(Fixture { daemon: None, enforce, monitor, enforce_text, lab, _lock: lock })
    }

    /// Makes sure the daemon runs in `mode` (restarting it if needed).
    pub fn ensure(&mut self, mode: Mode) -> anyhow::Result<()> {
        if let Some((d, m)) = &mut self.daemon {
            if *m == mode && d.running() {
                return Ok(());
            }
        }
        if let Some((d, _)) = self.daemon.take() {
            drop(d);
        }
        // The policy files may have been rewritten by a test: start from the real ones.
        let config = if mode == Mode::Enforce { &self.enforce } else { &self.monitor };
        if mode == Mode::Enforce {
            std::fs::write(&self.enforce, &self.enforce_text)?;
        }
        let daemon = Daemon::start(&self.lab, config)?;
        self.daemon = Some((daemon, mode));
        Ok(())
    }

    /// The running daemon.
    pub fn daemon(&mut self) -> anyhow::Result<&mut Daemon> {
        self.daemon.as_mut().map(|(d, _)| d).context("the daemon is not running")
    }

    /// Counters as of now (every packet handled before this call is in them).
    pub fn snapshot(&mut self) -> anyhow::Result<Stats> {
        self.daemon()?.stats()
    }

    /// Waits (up to 3 s) until reason `code` has moved since `before`; returns the delta.
    pub fn moved(&mut self, before: &Stats, code: &str) -> anyhow::Result<Delta> {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let delta = self.snapshot()?.since(before);
            if delta.reason(code) > 0 {
                return Ok(delta);
            }
            if Instant::now() > deadline {
                bail!("reason counter {code} did not move; what moved: {delta}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs one test body against the shared lab with the daemon in `mode`.
pub fn with_lab(name: &str, mode: Mode, body: impl FnOnce(&mut Fixture) -> anyhow::Result<()>) {
    if !cmd::is_root() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{name}: SKIPPED: needs root — and CI is set, where a skipped end-to-end test is a failure"
            );
        }
        visible(&format!("SKIPPED: needs root ({name}: end-to-end tests use network namespaces)"));
        return;
    }
    let mut guard = FIXTURE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if guard.is_none() {
        AT_EXIT.call_once(|| {
            // SAFETY: registers a plain `extern "C" fn()` that lives for the whole program.
            unsafe {
                libc::atexit(teardown_at_exit);
            }
        });
        match Fixture::new() {
            Ok(f) => *guard = Some(f),
            Err(e) => panic!("{name}: cannot build the lab: {e:#}"),
        }
    }
    let Some(fixture) = guard.as_mut() else { unreachable!("the fixture was just built") };
    let started = Instant::now();
    let result = fixture.ensure(mode).and_then(|()| body(fixture));
    if let Err(e) = result {
        let log = fixture.daemon.as_ref().map(|(d, _)| d.log_text()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(25).collect::<Vec<_>>().into_iter().rev().collect();
        panic!("{name}: {e:#}\n--- sekishod log (last lines) ---\n{}", tail.join("\n"));
    }
    visible(&format!("e2e {name}: ok ({:.1} s)", started.elapsed().as_secs_f64()));
}

/// The attempt passed.
pub fn pass(attempt: anyhow::Result<Attempt>, what: &str) -> anyhow::Result<Attempt> {
    let a = attempt?;
    ensure!(a.passed, "{what}: expected to pass, but {} ({})", a.detail, a.output.summary());
    Ok(a)
}

/// The attempt was blocked: no answer at all (no RST, no reset).
pub fn blocked(attempt: anyhow::Result<Attempt>, what: &str) -> anyhow::Result<Attempt> {
    let a = attempt?;
    ensure!(!a.passed, "{what}: expected to be blocked, but it passed ({})", a.detail);
    ensure!(
        !a.detail.contains("refused") && !a.detail.contains("reset"),
        "{what}: blocked, but something answered: {}",
        a.detail
    );
    Ok(a)
}
