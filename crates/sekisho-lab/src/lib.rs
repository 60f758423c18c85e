//! The sekisho lab: the deployment topology in network namespaces, with real sanitiser
//! relays, so that anyone (a user, the end-to-end tests, the benchmark) can watch
//! `sekishod run` enforce 三層分離 with real traffic. Its own program, `sekisho-lab`: the
//! daemon does not link it; the lab drives `sekishod` and reads it through its control
//! socket (`sekisho-control`).
//!
//! - `sekisho-lab up [--prefix sk-]`: builds the namespaces `<prefix>gw` (the eight port
//!   interfaces of `configs/lab.toml`, no addresses, no forwarding: nothing crosses until
//!   `sekishod run` runs there), `<prefix>core` (the core router) and one host namespace
//!   per zone (`<prefix>mn`, `<prefix>lg`, `<prefix>in`, `<prefix>sz`); starts the lab
//!   services; prints what it made. State (pids, logs, mail, certificates) lives in
//!   `/run/sekisho-lab-<prefix>/`.
//! - `sekisho-lab down [--prefix sk-]`: stops the services and deletes the namespaces.
//! - `sekisho-lab demo`: up, `sekishod run -c configs/lab.toml` in the gateway,
//!   `sekishoctl status`, a table of allowed and forbidden connections made with real
//!   clients, a reload with commit-confirm that rolls back by itself, down. Exit 0 only
//!   when every expected outcome was observed.
//!
//! Services: the mail text-ification relay on 198.18.40.10:25 (delivers to the LGWAN
//! mail host 198.18.20.25:25, which stores each message as a file), the file sanitiser
//! on 198.18.40.20:443 (HTTPS), an internet web server on 203.0.113.7:443 (HTTPS), RDP
//! stand-ins on 203.0.113.50:3389 (VDI host) and 198.18.20.5:3389 (they answer an X.224
//! connection request with a confirm), and an SSH stand-in on 198.18.20.30:22 (the juki
//! server).

#![warn(missing_docs)]

pub mod cmd;
pub mod daemon;
pub mod demo;
pub mod echo;
pub mod lab;
pub mod probe;
pub mod smtp;
pub mod textify;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

pub use daemon::{Counts, Daemon, Delta, Stats};
pub use lab::{addr, Lab, Ns, UpOptions, DEFAULT_PREFIX};
pub use probe::{Attempt, MailProbe};

/// `sekisho-lab ...` arguments.
#[derive(clap::Parser)]
#[command(
    name = "sekisho-lab",
    version,
    about = "The sekisho lab: network namespaces, sanitiser relays, the demo"
)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Build the lab (network namespaces, port interfaces, core router, hosts) and start
    /// its services. A previous or half-built lab with the same prefix is torn down first.
    Up {
        /// Namespace-name prefix.
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
        /// Build the topology only; start no services.
        #[arg(long)]
        no_services: bool,
        /// Switch the hosts' and the router's transmit offloads off (checksum, TSO), as
        /// older data planes needed; by default they stay as the kernel sets them, as
        /// virtual machines and containers behind a gateway have them.
        #[arg(long)]
        offloads_off: bool,
    },
    /// Stop the lab's services and delete its namespaces.
    Down {
        /// Namespace-name prefix.
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
    },
    /// Lab up, `sekishod run` on the lab policy, `sekishoctl status`, allowed and
    /// forbidden connections with real clients in a table, a reload with commit-confirm,
    /// lab down. Exit 0 only if every expected outcome is seen.
    Demo {
        /// Namespace-name prefix.
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
        /// The policy to enforce.
        #[arg(short, long, default_value = "configs/lab.toml")]
        config: PathBuf,
    },
    /// (lab service) SMTP relay that text-ifies each message and delivers it onward.
    #[command(hide = true)]
    SmtpRelay {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        deliver: SocketAddr,
        #[arg(long)]
        source: Option<IpAddr>,
        #[arg(long, default_value = "mail-relay.sanitization.lab")]
        hostname: String,
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// (lab service) SMTP server that stores each message as a file.
    #[command(hide = true)]
    SmtpSink {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "mail.lgwan.lab")]
        hostname: String,
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// (lab service) TCP echo with an optional banner.
    #[command(hide = true)]
    TcpEcho {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        banner: Option<String>,
        /// Answer an RDP connection request with a connection confirm.
        #[arg(long)]
        rdp: bool,
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
}

/// Creates the ready file (the service is listening).
fn ready(file: Option<PathBuf>) -> impl FnOnce() -> anyhow::Result<()> {
    move || match file {
        Some(f) => std::fs::write(&f, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write {}", f.display())),
        None => Ok(()),
    }
}

/// Runs a lab command; `bin_dir` holds `sekishod`, `sekishoctl` and `sekisho-lab`.
/// Returns false when a check said no (the demo saw an unexpected outcome).
pub fn run(args: Args, bin_dir: &Path) -> anyhow::Result<bool> {
    match args.command {
        Command::Up { prefix, no_services, offloads_off } => {
            let lab = Lab::up(&UpOptions {
                prefix: prefix.clone(),
                bin_dir: bin_dir.to_path_buf(),
                services: !no_services,
                offloads_off,
            })?;
            print!("{}", lab.describe());
            let socket = Daemon::socket_of(&lab);
            println!(
                "next: ip netns exec {} {} run -c configs/lab.toml --control-socket {} --state-dir {}/sekishod",
                lab.ns(Ns::Gateway),
                lab.bin("sekishod").display(),
                socket.display(),
                lab.state_dir().display()
            );
            println!("      then: {} --socket {} status", lab.bin("sekishoctl").display(), socket.display());
            println!("      (until then nothing crosses between zones); `sekisho-lab down --prefix {prefix}` removes it");
            lab.detach();
            Ok(true)
        }
        Command::Down { prefix } => {
            lab::validate_prefix(&prefix)?;
            if !cmd::is_root() {
                anyhow::bail!("the lab needs root (network namespaces): run it with sudo");
            }
            if !lab::exists(&prefix)? {
                println!("no lab with prefix {prefix:?}");
                return Ok(true);
            }
            for line in lab::teardown(&prefix)? {
                println!("{line}");
            }
            Ok(true)
        }
        Command::Demo { prefix, config } => demo::run(&prefix, &config, bin_dir),
        Command::SmtpRelay { listen, deliver, source, hostname, ready_file } => {
            let relay =
                smtp::Relay { deliver, source, hostname: hostname.clone(), timeout: Duration::from_secs(10) };
            smtp::serve(listen, &hostname, Arc::new(relay), smtp::Limits::default(), ready(ready_file))?;
            Ok(true)
        }
        Command::SmtpSink { listen, dir, hostname, ready_file } => {
            let sink = smtp::Sink::new(dir)?;
            smtp::serve(listen, &hostname, Arc::new(sink), smtp::Limits::default(), ready(ready_file))?;
            Ok(true)
        }
        Command::TcpEcho { listen, banner, rdp, ready_file } => {
            echo::serve(listen, banner.unwrap_or_default().as_bytes(), rdp, ready(ready_file))?;
            Ok(true)
        }
    }
}
