//! `sekishoctl`: manage a running `sekishod` through its control socket
//! (docs/control-protocol.md). Tables for people; `--json` prints a reply's `data` for
//! scripts, exactly as the protocol carries it.
//!
//! Exit codes: 0 ok; 1 the answer is no (a deny from `explain`, problems from `check`, a
//! reload the daemon refused, nothing to confirm or roll back); 2 a usage, connection or
//! permission error.

mod show;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use sekisho_control::*;

/// Manage a running sekishod (関所) through its control socket.
#[derive(Parser)]
#[command(name = "sekishoctl", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// The daemon's control socket ([daemon] control_socket).
    #[arg(long, global = true, default_value = "/run/sekisho/control.sock", value_name = "PATH")]
    socket: PathBuf,
    /// Print the reply's data as JSON (for scripts) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for the daemon's answer.
    #[arg(long, global = true, default_value_t = 60, value_name = "SECONDS")]
    timeout: u64,
    #[command(subcommand)]
    command: Cmd,
}

const EXIT_CODES: &str = "Exit codes: 0 ok; 1 the answer is no (explain: deny; check: problems; \
reload refused; nothing to confirm or roll back); 2 usage, connection or permission error.";

#[derive(Subcommand)]
enum Cmd {
    /// Version, uptime, mode, policy generation and source, ports and their links.
    Status,
    /// Counters: per port side, per reason, per zone pair and path leg; the flow table.
    Stats,
    /// Live flows, filtered, largest first.
    Flows(FlowArgs),
    /// Act on flows: `flow kill` removes the flows the filters select.
    Flow {
        #[command(subcommand)]
        action: FlowAction,
    },
    /// One connection against the live policy, and whether a flow for it exists.
    Explain(ExplainCli),
    /// Validate a configuration against the running daemon without loading it.
    Check(CheckCli),
    /// Load a configuration (FILE, or the daemon's own file again); with --confirm,
    /// roll back by itself unless `confirm` follows in time.
    Reload(ReloadCli),
    /// Keep the policy a `reload --confirm` put on trial.
    Confirm,
    /// Go back to the policy before the last change (or end a trial now).
    Rollback,
    /// Switch between enforce and monitor.
    Mode {
        /// enforce or monitor.
        #[arg(value_parser = ["enforce", "monitor"])]
        mode: String,
    },
    /// Show the log filter, or set it (error, warn, info, debug, trace, or a filter).
    LogLevel {
        /// The new level or filter.
        level: Option<String>,
    },
    /// Verdict events and operator changes: recent ones, or follow new ones.
    Events(EventsCli),
    /// The change history kept on disk.
    History {
        /// How many of the latest changes.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum FlowAction {
    /// Remove the flows the filters select (at least one filter). A removed TCP
    /// connection is cut; UDP and ICMP may open a new flow, decided afresh.
    Kill(Filters),
}

/// Which flows (every given filter must hold).
#[derive(clap::Args, Clone)]
struct Filters {
    /// Either end in this zone.
    #[arg(long)]
    zone: Option<String>,
    /// Either end is this address or in this CIDR.
    #[arg(long)]
    addr: Option<String>,
    /// Opened through this gateway port (its name).
    #[arg(long)]
    port: Option<String>,
    /// The responder's transport port.
    #[arg(long)]
    dport: Option<u16>,
    /// tcp, udp, icmp, icmpv6 or a protocol number.
    #[arg(long)]
    proto: Option<String>,
    /// Allowed by this path (NAME) or leg (NAME/LEG).
    #[arg(long)]
    path: Option<String>,
    /// Whose reason starts with this (deny:, allow:rule:mgmt-ssh).
    #[arg(long)]
    reason: Option<String>,
}

impl Filters {
    fn query(self) -> FlowQuery {
        FlowQuery {
            zone: self.zone,
            addr: self.addr,
            port: self.port,
            dport: self.dport,
            proto: self.proto,
            path: self.path,
            reason: self.reason,
            sort: None,
            limit: None,
        }
    }
}

#[derive(clap::Args)]
struct FlowArgs {
    #[command(flatten)]
    filters: Filters,
    /// Order, largest first.
    #[arg(long, value_parser = ["bytes", "packets", "age", "idle"], default_value = "bytes")]
    sort: String,
    /// How many (at most 10,000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

#[derive(clap::Args)]
struct ExplainCli {
    /// tcp, udp, icmp, icmpv6, or an IP protocol number.
    #[arg(long)]
    proto: String,
    /// The initiator: ADDR or ADDR:PORT ([v6]:port for IPv6).
    #[arg(long)]
    src: String,
    /// The responder: ADDR:PORT (ADDR alone for protocols without ports).
    #[arg(long)]
    dst: String,
    /// Decide as of this time (a date or RFC 3339) instead of now.
    #[arg(long)]
    at: Option<String>,
}

#[derive(clap::Args)]
struct CheckCli {
    /// The configuration file (TOML).
    file: PathBuf,
    /// Refuse (exit 1) when there is any warning.
    #[arg(long)]
    strict: bool,
}

#[derive(clap::Args)]
struct ReloadCli {
    /// The configuration to load; without it the daemon reads its own file again.
    file: Option<PathBuf>,
    /// Roll back by itself unless `sekishoctl confirm` follows within SECONDS (1-3600).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..=3600))]
    confirm: Option<u32>,
}

#[derive(clap::Args)]
struct EventsCli {
    /// Stream new events until interrupted.
    #[arg(long)]
    follow: bool,
    /// Without --follow: how many recent events.
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

/// How a command ended.
enum Outcome {
    Yes,
    No,
}

fn read_policy(file: &Path) -> anyhow::Result<PolicyText> {
    let meta = std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    anyhow::ensure!(
        meta.len() <= MAX_POLICY_TEXT as u64,
        "{} is {} bytes; the daemon accepts at most {MAX_POLICY_TEXT}",
        file.display(),
        meta.len()
    );
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let origin = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf()).display().to_string();
    Ok(PolicyText { text, origin })
}

fn connect(cli: &Cli) -> anyhow::Result<Client> {
    let name = concat!("sekishoctl ", env!("CARGO_PKG_VERSION"));
    Ok(Client::connect(&cli.socket, name, Duration::from_secs(cli.timeout))?)
}

/// Prints `data` as JSON, or as `human` renders it.
fn print<T: serde::de::DeserializeOwned>(
    json: bool,
    data: serde_json::Value,
    human: impl FnOnce(&T) -> String,
) -> anyhow::Result<T> {
    let typed: T =
        serde_json::from_value(data.clone()).context("an answer this sekishoctl does not understand")?;
    let text = if json { format!("{data:#}\n") } else { human(&typed) };
    // A reader that went away (`| head`) is not an error.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(typed)
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let json = cli.json;
    let cmd = match &cli.command {
        Cmd::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "sekishoctl", &mut script);
            let _ = std::io::stdout().lock().write_all(&script);
            return Ok(Outcome::Yes);
        }
        Cmd::Status => Command::Status,
        Cmd::Stats => Command::Stats,
        Cmd::Flows(f) => {
            let sort = match f.sort.as_str() {
                "packets" => FlowSort::Packets,
                "age" => FlowSort::Age,
                "idle" => FlowSort::Idle,
                _ => FlowSort::Bytes,
            };
            let mut q = f.filters.clone().query();
            q.sort = Some(sort);
            q.limit = Some(f.limit);
            Command::Flows(q)
        }
        Cmd::Flow { action: FlowAction::Kill(f) } => Command::FlowKill(f.clone().query()),
        Cmd::Explain(e) => Command::Explain(ExplainArgs {
            proto: e.proto.clone(),
            src: e.src.clone(),
            dst: e.dst.clone(),
            at: e.at.clone(),
        }),
        Cmd::Check(c) => Command::Check(read_policy(&c.file)?),
        Cmd::Reload(r) => Command::Reload(ReloadArgs {
            policy: r.file.as_deref().map(read_policy).transpose()?,
            confirm_s: r.confirm,
        }),
        Cmd::Confirm => Command::Confirm,
        Cmd::Rollback => Command::Rollback,
        Cmd::Mode { mode } => Command::Mode(ModeArgs { mode: mode.clone() }),
        Cmd::LogLevel { level } => Command::LogLevel(LogLevelArgs { level: level.clone() }),
        Cmd::Events(e) => Command::Events(EventsArgs { follow: e.follow, limit: Some(e.limit) }),
        Cmd::History { limit } => Command::History(HistoryArgs { limit: Some(*limit) }),
    };
    let mut client = connect(&cli)?;
    if let Command::Events(EventsArgs { follow: true, .. }) = cmd {
        return follow(&mut client, cmd, json);
    }
    let data = match client.request(cmd.clone()) {
        Ok(d) => d,
        Err(ClientError::Refused(e)) => return refused(e, json),
        Err(e) => return Err(e.into()),
    };
    match &cli.command {
        Cmd::Status => print::<Status>(json, data, show::status).map(|_| Outcome::Yes),
        Cmd::Stats => print::<Stats>(json, data, show::stats).map(|_| Outcome::Yes),
        Cmd::Flows(_) => print::<Vec<Flow>>(json, data, |f| show::flows(f)).map(|_| Outcome::Yes),
        Cmd::Flow { .. } => {
            print::<Killed>(json, data, |k| format!("{} flows removed\n", k.killed)).map(|_| Outcome::Yes)
        }
        Cmd::Explain(_) => {
            let x = print::<Explanation>(json, data, sekisho_control::text::explanation)?;
            Ok(if x.allowed() { Outcome::Yes } else { Outcome::No })
        }
        Cmd::Check(c) => {
            let r = print::<CheckReport>(json, data, show::check)?;
            let ok = r.valid && r.restart_needed.is_none() && (!c.strict || r.warnings.is_empty());
            Ok(if ok { Outcome::Yes } else { Outcome::No })
        }
        Cmd::Reload(_) => print::<ReloadReport>(json, data, show::reload).map(|_| Outcome::Yes),
        Cmd::Confirm => {
            print::<Confirmed>(json, data, |c| format!("generation {} confirmed: it stays\n", c.generation))
                .map(|_| Outcome::Yes)
        }
        Cmd::Rollback => print::<RolledBack>(json, data, show::rolled_back).map(|_| Outcome::Yes),
        Cmd::Mode { .. } => print::<ModeReport>(json, data, show::mode).map(|_| Outcome::Yes),
        Cmd::LogLevel { .. } => {
            print::<LogLevel>(json, data, |l| format!("log filter: {}\n", l.level)).map(|_| Outcome::Yes)
        }
        Cmd::Events(_) => {
            print::<Vec<Event>>(json, data, |e| e.iter().map(show::event).collect()).map(|_| Outcome::Yes)
        }
        Cmd::History { .. } => print::<Vec<Change>>(json, data, |h| show::history(h)).map(|_| Outcome::Yes),
        Cmd::Completions { .. } => Ok(Outcome::Yes),
    }
}

/// The daemon said no: print why (with every configuration problem), exit 1 or 2.
fn refused(e: ErrorBody, json: bool) -> anyhow::Result<Outcome> {
    let answer_is_no = matches!(
        e.code,
        ErrorCode::ConfigInvalid
            | ErrorCode::RestartNeeded
            | ErrorCode::ConfirmPending
            | ErrorCode::NothingToConfirm
            | ErrorCode::NothingToRollBack
    );
    if json {
        let doc = serde_json::json!({ "error": e });
        eprintln!("{doc:#}");
    } else {
        eprintln!("sekishoctl: {e}");
        if let Some(errors) = e.details.as_ref().and_then(|d| d.get("errors")).and_then(|x| x.as_array()) {
            for p in errors.iter().filter_map(|p| serde_json::from_value::<Problem>(p.clone()).ok()) {
                eprintln!("  {p}");
            }
        }
    }
    if answer_is_no {
        Ok(Outcome::No)
    } else {
        Err(anyhow::anyhow!("the daemon refused the request [{}]", e.code.as_str()))
    }
}

fn follow(client: &mut Client, cmd: Command, json: bool) -> anyhow::Result<Outcome> {
    client.set_read_timeout(None)?;
    let id = client.send(cmd)?;
    let mut out = std::io::stdout().lock();
    let mut started = false;
    loop {
        let reply = client.next_reply()?;
        if let Some(e) = reply.error {
            return refused(e, json);
        }
        if reply.id != Some(id) {
            continue;
        }
        let data = reply.data.unwrap_or_default();
        if !started {
            started = true;
            continue; // {"following": true}
        }
        let line = if json {
            format!("{data}\n")
        } else {
            match serde_json::from_value::<Event>(data) {
                Ok(e) => show::event(&e),
                Err(e) => format!("(an event this sekishoctl does not understand: {e})\n"),
            }
        };
        if out.write_all(line.as_bytes()).and_then(|()| out.flush()).is_err() {
            return Ok(Outcome::Yes); // the reader (e.g. `head`) went away
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(Outcome::Yes) => ExitCode::SUCCESS,
        Ok(Outcome::No) => ExitCode::from(1),
        Err(e) => {
            eprintln!("sekishoctl: {e:#}");
            ExitCode::from(2)
        }
    }
}
