//! `sekishod run` inside the lab's gateway namespace, read through its control socket.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sekisho_control::Client;

use crate::cmd;
use crate::lab::{Lab, Ns};

/// Per-interface counter names in the stats file.
pub const SIDE_COUNTERS: [&str; 7] =
    ["packets", "bytes", "forwarded", "dropped", "monitored", "truncated", "send_errors"];

/// Counters by reason code and by interface: a snapshot's values, or what moved
/// between two snapshots ([`Stats::since`]).
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Counter per reason code (`allow:path`, `deny:no-rule`, ...).
    pub reasons: BTreeMap<String, u64>,
    /// Counter per (interface, counter name), e.g. `("lg-in", "dropped")`.
    pub sides: BTreeMap<(String, String), u64>,
}

/// What moved between two snapshots (only the counters that moved).
pub type Delta = Counts;

/// One snapshot of the daemon's counters (`sekishoctl stats`).
#[derive(Debug, Clone)]
pub struct Stats {
    /// `mode`: "enforce" or "monitor".
    pub mode: String,
    /// The counters.
    pub counts: Counts,
    /// Everything `stats` answered.
    pub raw: sekisho_control::Stats,
}

impl std::ops::Deref for Stats {
    type Target = Counts;
    fn deref(&self) -> &Counts {
        &self.counts
    }
}

impl Stats {
    /// The counters of a `stats` reply.
    pub fn from_protocol(raw: sekisho_control::Stats) -> Stats {
        let mut sides = BTreeMap::new();
        for port in &raw.ports {
            for s in [&port.inside, &port.outside] {
                let values =
                    [s.packets, s.bytes, s.forwarded, s.dropped, s.monitored, s.truncated, s.send_errors];
                for (c, v) in SIDE_COUNTERS.iter().zip(values) {
                    sides.insert((s.interface.clone(), c.to_string()), v);
                }
            }
        }
        Stats { mode: raw.mode.clone(), counts: Counts { reasons: raw.reasons.clone(), sides }, raw }
    }

    /// What moved since `before`.
    pub fn since(&self, before: &Stats) -> Delta {
        let reasons = self
            .reasons
            .iter()
            .filter_map(|(k, &v)| {
                let d = v.saturating_sub(before.reason(k));
                (d > 0).then(|| (k.clone(), d))
            })
            .collect();
        let sides = self
            .sides
            .iter()
            .filter_map(|(k, &v)| {
                let d = v.saturating_sub(before.sides.get(k).copied().unwrap_or(0));
                (d > 0).then(|| (k.clone(), d))
            })
            .collect();
        Delta { reasons, sides }
    }
}

impl Counts {
    /// The counter (or growth) of reason `code`.
    pub fn reason(&self, code: &str) -> u64 {
        self.reasons.get(code).copied().unwrap_or(0)
    }

    /// A per-interface counter summed over every interface.
    pub fn total(&self, counter: &str) -> u64 {
        self.sides.iter().filter(|((_, c), _)| c == counter).map(|(_, v)| v).sum()
    }

    /// A per-interface counter on one interface.
    pub fn side(&self, interface: &str, counter: &str) -> u64 {
        self.sides.get(&(interface.to_string(), counter.to_string())).copied().unwrap_or(0)
    }

    /// The reason codes that moved, allows or denies, in counter order; `allow:link`
    /// (ARP, neighbour discovery: background chatter) left out.
    pub fn codes(&self, allow: bool) -> Vec<&str> {
        let prefix = if allow { "allow:" } else { "deny:" };
        self.reasons
            .keys()
            .map(String::as_str)
            .filter(|k| k.starts_with(prefix) && *k != "allow:link")
            .collect()
    }
}

impl std::fmt::Display for Delta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reasons: Vec<String> = self.reasons.iter().map(|(k, v)| format!("{k}+{v}")).collect();
        let sides: Vec<String> = self.sides.iter().map(|((i, c), v)| format!("{i}.{c}+{v}")).collect();
        write!(f, "reasons [{}] interfaces [{}]", reasons.join(" "), sides.join(" "))
    }
}

/// The name this crate's programs give in their hello.
const CLIENT: &str = concat!("sekisho-lab ", env!("CARGO_PKG_VERSION"));

/// `sekishod run` running in the lab's gateway namespace. Dropping it kills it.
pub struct Daemon {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
    out: PathBuf,
    pid: u32,
}

impl Daemon {
    /// The control socket of a daemon the lab starts.
    pub fn socket_of(lab: &Lab) -> PathBuf {
        lab.state_dir().join("control").join("control.sock")
    }

    /// Starts `sekishod run -c config` in the gateway namespace (control socket
    /// `<state>/control/control.sock`, history in `<state>/sekishod`) and waits until it
    /// answers `status` as ready. Fails with its error output when it exits or is not
    /// ready within 15 s.
    pub fn start(lab: &Lab, config: &Path) -> anyhow::Result<Daemon> {
        let socket = Daemon::socket_of(lab);
        let log = lab.state_dir().join("sekishod-run.log");
        let out = lab.state_dir().join("sekishod-run.out");
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let stdout =
            std::fs::File::create(&out).with_context(|| format!("cannot create {}", out.display()))?;
        let mut c = lab.command(Ns::Gateway, lab.bin("sekishod"));
        c.arg("run").arg("-c").arg(config).arg("--control-socket").arg(&socket);
        c.arg("--state-dir").arg(lab.state_dir().join("sekishod"));
        c.stdin(Stdio::null()).stdout(stdout).stderr(stderr).env("NO_COLOR", "1");
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let child = c.spawn().with_context(|| format!("cannot start `{}`", cmd::describe(&c)))?;
        let pid = child.id();
        let mut daemon = Daemon { child: Some(child), socket, log, out, pid };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = daemon.try_wait()? {
                bail!(
                    "`sekishod run` exited ({status}) before it was ready:\n{}",
                    daemon.log_text().trim_end()
                );
            }
            if daemon.client().and_then(|mut c| Ok(c.status()?)).is_ok_and(|s| s.ready && s.pid == pid) {
                return Ok(daemon);
            }
            if Instant::now() > deadline {
                bail!(
                    "`sekishod run` did not answer on {} within 15 s:\n{}",
                    daemon.socket.display(),
                    daemon.log_text().trim_end()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A new control connection (as the calling user).
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(&self.socket, CLIENT, Duration::from_secs(30))?)
    }

    /// Everything the daemon printed on standard error so far (its log).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Everything the daemon printed on standard output so far (its summary).
    pub fn output_text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(c) => Ok(c.try_wait()?),
            None => Ok(None),
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None)) && self.child.is_some()
    }

    /// The counters now (every frame handled before this call is in them).
    pub fn stats(&mut self) -> anyhow::Result<Stats> {
        match self.client().and_then(|mut c| Ok(c.stats()?)) {
            Ok(s) => Ok(Stats::from_protocol(s)),
            Err(e) => match self.try_wait()? {
                Some(status) => bail!("`sekishod run` exited ({status}):\n{}", self.log_text().trim_end()),
                None => Err(e.context("cannot read the daemon's stats")),
            },
        }
    }

    /// Stops it with SIGTERM and waits (up to 10 s); returns the exit status and what it
    /// printed on standard output (the summary).
    pub fn stop(mut self) -> anyhow::Result<(ExitStatus, String)> {
        let Some(mut child) = self.child.take() else { bail!("the daemon is not running") };
        cmd::signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok((status, self.output_text()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("`sekishod run` did not stop within 10 s of SIGTERM:\n{}", self.log_text().trim_end());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills it with SIGKILL (no clean stop: what a crash looks like).
    pub fn kill(mut self) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else { bail!("the daemon is not running") };
        child.kill()?;
        Ok(child.wait()?)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = cmd::stop_child(&mut child, Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_delta() {
        let raw: sekisho_control::Stats = serde_json::from_str(
            r#"{"mode":"enforce","generation":1,"reasons":{"allow:path":3,"deny:no-rule":1},
            "ports":[{"name":"p","zone":"lgwan",
              "inside":{"interface":"lg-in","packets":5,"bytes":0,"forwarded":4,"dropped":1,"monitored":0,"truncated":0,"send_errors":0,"read_errors":0},
              "outside":{"interface":"lg-out","packets":2,"bytes":0,"forwarded":2,"dropped":0,"monitored":0,"truncated":0,"send_errors":0,"read_errors":0}}],
            "zone_pairs":[],"legs":[],
            "flows":{"active":0,"capacity":10,"inserted":0,"evicted":0,"expired":0,"refused":0},
            "events":{"recorded":0,"lost":0}}"#,
        )
        .expect("parse");
        let a = Stats::from_protocol(raw.clone());
        let mut more = raw;
        more.reasons.insert("allow:path".into(), 5);
        more.reasons.insert("allow:link".into(), 9);
        more.ports[0].inside.packets = 9;
        more.ports[0].inside.dropped = 2;
        let b = Stats::from_protocol(more);
        assert_eq!(a.side("lg-in", "packets"), 5);
        let d = b.since(&a);
        assert_eq!(d.reason("allow:path"), 2);
        assert_eq!(d.reason("deny:no-rule"), 0);
        assert_eq!(d.codes(true), vec!["allow:path"]);
        assert_eq!(d.total("dropped"), 1);
    }
}
