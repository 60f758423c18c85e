//! `sekishod`: the sekisho gateway daemon and its offline policy tools.
//!
//! Exit codes: 0 success; 1 when a check or a verdict says no; 2 on a usage or
//! configuration error.
#![deny(unsafe_code)]

mod alerts;
mod control;
mod explain;
mod notify;
mod replay;
mod run;
#[allow(unsafe_code)]
mod sys;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sekisho_policy::{Policy, Timestamp};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// sekisho (関所): inline enforcement of 三層分離 between municipal network zones.
#[derive(Parser)]
#[command(name = "sekishod", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load and validate a configuration; print every problem found, then the warnings.
    Check(CheckArgs),
    /// Show the decision for one connection, the zones involved, and what decided it.
    Explain(explain::Args),
    /// Run captures (pcap or pcapng) through the engine offline and report verdicts.
    Replay(replay::Args),
    /// Enforce the policy inline: bridge each port's two interfaces through the engine;
    /// managed through the control socket (sekishoctl).
    Run(run::Args),
}

/// Arguments of `sekishod check`.
#[derive(clap::Args)]
struct CheckArgs {
    /// The configuration file (TOML).
    #[arg(short, long)]
    config: PathBuf,
    /// Refuse the configuration (exit 1) when there is any warning.
    #[arg(long)]
    strict: bool,
    /// Judge exception expiry as of this time (a date or RFC 3339) instead of now.
    #[arg(long)]
    at: Option<String>,
}

/// `3 rules`, `1 rule`.
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `sekishod check`: errors exit 2 (printed by `main`); warnings are printed with the
/// summary and fail only with `--strict`.
fn check(args: CheckArgs) -> anyhow::Result<Outcome> {
    let policy = load_policy(&args.config)?;
    let now = match &args.at {
        Some(at) => parse_at(at)?,
        None => wall_clock(),
    };
    let origin = args.config.display();
    let warnings = policy.warnings(now);
    for w in &warnings {
        println!("{origin}: warning: {w}");
    }
    let summary = policy_summary(&policy);
    if warnings.is_empty() {
        println!("{origin}: ok — {summary}");
        return Ok(Outcome::Yes);
    }
    let n = count(warnings.len(), "warning");
    if args.strict {
        println!("{origin}: refused by --strict — {n}; {summary}");
        Ok(Outcome::No)
    } else {
        println!("{origin}: ok with {n} — {summary}");
        Ok(Outcome::Yes)
    }
}

/// `5 zones, 4 ports, 5 services, 3 paths, 1 exception, 1 rule; mode enforce`.
pub(crate) fn policy_summary(policy: &Policy) -> String {
    format!(
        "{}, {}, {}, {}, {}, {}; mode {}",
        count(policy.zones().len(), "zone"),
        count(policy.ports().len(), "port"),
        count(policy.services().len(), "service"),
        count(policy.paths().len(), "path"),
        count(policy.exceptions().len(), "exception"),
        count(policy.rules().len(), "rule"),
        policy.mode().as_str(),
    )
}

/// The outcome of a command that ran to the end.
pub(crate) enum Outcome {
    /// Everything allowed / valid.
    Yes,
    /// A check or verdict said no.
    No,
}

/// An error that is the user's to fix (usage or configuration): exit code 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Reads and validates the configuration at `path`.
pub(crate) fn load_policy(path: &Path) -> anyhow::Result<Policy> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read configuration {}: {e}", path.display())))?;
    sekisho_policy::load_str(&text, &path.display().to_string())
        .map_err(|errors| UsageError(errors.to_string()).into())
}

/// Parses `--at`: an RFC 3339 time, or a date (taken as 00:00 Japan time).
pub(crate) fn parse_at(text: &str) -> anyhow::Result<Timestamp> {
    use time::format_description::well_known::Rfc3339;
    let jst = time::macros::offset!(+9);
    let parsed = time::OffsetDateTime::parse(text, &Rfc3339).or_else(|_| {
        time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]"))
            .map(|d| d.midnight().assume_offset(jst))
    });
    let at = parsed.map_err(|_| {
        UsageError(format!("--at {text:?}: expected a date (2027-03-31) or an RFC 3339 time"))
    })?;
    let nanos = u64::try_from(at.unix_timestamp_nanos())
        .map_err(|_| UsageError(format!("--at {text:?}: before 1970")))?;
    Ok(Timestamp(nanos))
}

/// The current wall-clock time.
pub(crate) fn wall_clock() -> Timestamp {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// The log filter, changeable at run time (`sekishoctl log-level`).
struct Log {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl control::LogControl for Log {
    fn get(&self) -> String {
        self.handle.with_current(|f| f.to_string()).unwrap_or_else(|e| format!("? ({e})"))
    }

    fn set(&self, filter: &str) -> Result<String, String> {
        if filter.len() > 1024 {
            return Err("a log filter of at most 1024 characters".into());
        }
        let new = EnvFilter::try_new(filter)
            .map_err(|e| format!("{filter:?} is not a log filter ({e}); use error, warn, info, debug, trace or e.g. info,sekishod=debug"))?;
        self.handle.reload(new).map_err(|e| e.to_string())?;
        Ok(self.get())
    }
}

fn run(cli: Cli, log: Arc<Log>) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Check(args) => check(args),
        Command::Explain(args) => explain::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Run(args) => run::run(args, log),
    }
}

fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    let cli = Cli::parse();
    match run(cli, Arc::new(Log { handle })).context("sekishod") {
        Ok(Outcome::Yes) => ExitCode::SUCCESS,
        Ok(Outcome::No) => ExitCode::from(1),
        Err(e) => {
            if let Some(usage) = e.downcast_ref::<UsageError>() {
                eprintln!("{usage}");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(2)
        }
    }
}
