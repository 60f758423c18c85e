//! `sekishod run` inside the lab's gateway namespace, and its stats file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use serde_json::Value;

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

/// One snapshot of the daemon's stats file.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// `mode`: "enforce" or "monitor".
    pub mode: String,
    /// The counters.
    pub counts: Counts,
    /// The whole document.
    pub raw: Value,
}

impl std::ops::Deref for Stats {
    type Target = Counts;
    fn deref(&self) -> &Counts {
        &self.counts
    }
}

impl Stats {
    /// Parses a stats document.
    pub fn parse(text: &str) -> anyhow::Result<Stats> {
        let raw: Value = serde_json::from_str(text).context("the stats file is not JSON")?;
        let mode = raw.get("mode").and_then(Value::as_str).unwrap_or_default().to_string();
        let reasons = raw
            .get("reasons")
            .and_then(Value::as_object)
            .context("the stats file has no \"reasons\" object")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
            .collect();
        let mut sides = BTreeMap::new();
        for port in raw.get("ports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
            for side in ["inside", "outside"] {
                let Some(s) = port.get(side) else { continue };
                let iface = s.get("interface").and_then(Value::as_str).unwrap_or(side).to_string();
                for c in SIDE_COUNTERS {
                    sides.insert(
                        (iface.clone(), c.to_string()),
                        s.get(c).and_then(Value::as_u64).unwrap_or(0),
                    );
                }
            }
        }
        Ok(Stats { mode, counts: Counts { reasons, sides }, raw })
    }

    /// Reads and parses the stats file at `path`.
    pub fn read(path: &Path) -> anyhow::Result<Stats> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Stats::parse(&text).with_context(|| format!("in {}", path.display()))
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

/// `sekishod run` running in the lab's gateway namespace. Dropping it kills it.
pub struct Daemon {
    child: Option<Child>,
    stats: PathBuf,
    log: PathBuf,
    out: PathBuf,
    interval: Duration,
    pid: u32,
}

impl Daemon {
    /// Starts `sekishod run -c config` in the gateway namespace and waits until it has
    /// written its stats file (every interface open). Fails with its error output when
    /// it exits or is not ready within 15 s.
    pub fn start(lab: &Lab, config: &Path, interval: Duration) -> anyhow::Result<Daemon> {
        let stats = lab.state_dir().join("stats.json");
        let log = lab.state_dir().join("sekishod-run.log");
        let out = lab.state_dir().join("sekishod-run.out");
        let _ = std::fs::remove_file(&stats);
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let stdout =
            std::fs::File::create(&out).with_context(|| format!("cannot create {}", out.display()))?;
        let mut c = lab.command(Ns::Gateway, lab.sekishod());
        c.arg("run").arg("-c").arg(config).arg("--stats-file").arg(&stats);
        c.arg("--stats-interval-ms").arg(interval.as_millis().to_string());
        c.stdin(Stdio::null()).stdout(stdout).stderr(stderr).env("NO_COLOR", "1");
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let child = c.spawn().with_context(|| format!("cannot start `{}`", cmd::describe(&c)))?;
        let pid = child.id();
        let mut daemon = Daemon { child: Some(child), stats, log, out, interval, pid };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = daemon.try_wait()? {
                bail!(
                    "`sekishod run` exited ({status}) before it was ready:\n{}",
                    daemon.log_text().trim_end()
                );
            }
            if daemon.stats.exists() && Stats::read(&daemon.stats).is_ok() {
                return Ok(daemon);
            }
            if Instant::now() > deadline {
                bail!("`sekishod run` wrote no stats file within 15 s:\n{}", daemon.log_text().trim_end());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The stats file.
    pub fn stats_path(&self) -> &Path {
        &self.stats
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

    /// The stats as last written.
    pub fn stats(&self) -> anyhow::Result<Stats> {
        Stats::read(&self.stats)
    }

    /// Stats written after this call: waits for the next write that began after now (so
    /// every packet handled before now is counted).
    pub fn fresh_stats(&mut self) -> anyhow::Result<Stats> {
        let since = SystemTime::now() + Duration::from_millis(20);
        let deadline = Instant::now() + self.interval * 4 + Duration::from_secs(2);
        loop {
            let modified = std::fs::metadata(&self.stats).and_then(|m| m.modified()).ok();
            if modified.is_some_and(|m| m >= since) {
                if let Ok(s) = self.stats() {
                    return Ok(s);
                }
            }
            if let Some(status) = self.try_wait()? {
                bail!("`sekishod run` exited ({status}):\n{}", self.log_text().trim_end());
            }
            if Instant::now() > deadline {
                bail!("`sekishod run` did not rewrite {} in time", self.stats.display());
            }
            std::thread::sleep(Duration::from_millis(10));
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
    fn stats_parse_and_delta() {
        let a = Stats::parse(
            r#"{"mode":"enforce","generation":1,"reasons":{"allow:path":3,"deny:no-rule":1},
            "ports":[{"name":"p","inside":{"interface":"lg-in","packets":5,"dropped":1},
            "outside":{"interface":"lg-out","packets":2}}],"flows":{"flows":0}}"#,
        )
        .expect("parse");
        let b = Stats::parse(
            r#"{"mode":"enforce","reasons":{"allow:path":5,"deny:no-rule":1,"allow:link":9},
            "ports":[{"name":"p","inside":{"interface":"lg-in","packets":9,"dropped":2},
            "outside":{"interface":"lg-out","packets":2}}]}"#,
        )
        .expect("parse");
        assert_eq!(a.side("lg-in", "packets"), 5);
        let d = b.since(&a);
        assert_eq!(d.reason("allow:path"), 2);
        assert_eq!(d.reason("deny:no-rule"), 0);
        assert_eq!(d.codes(true), vec!["allow:path"]);
        assert_eq!(d.total("dropped"), 1);
        assert!(Stats::parse("[]").is_err());
    }
}
