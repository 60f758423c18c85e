//! `sekishod run`: inline enforcement on the port interfaces until SIGTERM or SIGINT,
//! managed through the control socket; SIGHUP reloads the configuration like `reload`.
//!
//! Start-up order: load the policy, bind the control socket, open the ports and start the
//! workers (the data plane), drop every capability in every thread, start the control
//! server, tell systemd `READY=1`. The main thread then ticks the workers' clocks, sweeps
//! idle flows, handles SIGHUP, rolls back an unconfirmed trial when its time is up and
//! feeds systemd's watchdog from the workers' heartbeats.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sekisho_control::ReloadArgs;
use sekisho_dataplane::DataPlane;
use sekisho_engine::Engine;
use sekisho_policy::Reason;

use crate::control::auth::{self, Access};
use crate::control::events::EventRing;
use crate::control::journal::Journal;
use crate::control::server::Server;
use crate::control::{view, Controller, LogControl, Setup, Who};
use crate::notify::Notifier;
use crate::{sys, Outcome, UsageError};

/// Arguments of `sekishod run`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The configuration file (TOML).
    #[arg(short, long)]
    config: PathBuf,
    /// The control socket, instead of the configuration's `[daemon] control_socket`.
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// Where the change history is kept (history.jsonl).
    #[arg(long, default_value = "/var/lib/sekisho")]
    state_dir: PathBuf,
}

/// How often the workers' clock advances.
const TICK: Duration = Duration::from_millis(20);
/// How often idle flows are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// A worker whose heartbeat is older than this is stuck: no `WATCHDOG=1`.
const STUCK: Duration = Duration::from_secs(2);

/// The counters, printed when the daemon stops.
fn summary(engine: &Engine, dp: &DataPlane) {
    println!("sekishod stopped; counters:");
    for p in view::port_stats(engine, dp) {
        for (side, s) in [("inside", &p.inside), ("outside", &p.outside)] {
            println!(
                "  {:<22} {:<7} {:<10} packets {:>10}  forwarded {:>10}  dropped {:>10}  monitored {:>8}  truncated {:>6}  send errors {:>6}",
                p.name, side, s.interface, s.packets, s.forwarded, s.dropped, s.monitored, s.truncated, s.send_errors,
            );
        }
    }
    let counters = engine.counters();
    for (code, n) in Reason::CODES.iter().zip(counters.by_reason).filter(|(_, n)| *n > 0) {
        println!("  {code:<28} {n}");
    }
}

/// The interfaces whose worker has not gone round its loop for [`STUCK`].
fn stuck(dp: &DataPlane, mono: u64) -> Vec<String> {
    dp.interfaces()
        .iter()
        .filter(|i| {
            mono.saturating_sub(i.counters.heartbeat.load(Ordering::Relaxed)) > STUCK.as_nanos() as u64
        })
        .map(|i| i.name.clone())
        .collect()
}

pub(crate) fn run(mut args: Args, log: Arc<dyn LogControl>) -> anyhow::Result<Outcome> {
    // SIGHUP and `reload` read the file again: by its absolute path.
    args.config = std::fs::canonicalize(&args.config).unwrap_or(args.config);
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| UsageError(format!("cannot read configuration {}: {e}", args.config.display())))?;
    let policy = sekisho_policy::load_str(&text, &args.config.display().to_string())
        .map_err(|errors| UsageError(errors.to_string()))?;
    if policy.ports().is_empty() {
        return Err(UsageError(format!("{}: no [[port]] to enforce on", args.config.display())).into());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).context("cannot install the signal handler")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .context("cannot install the signal handler")?;
    let notifier = Notifier::from_env();
    let journal = Journal::open(&args.state_dir).map_err(|e| UsageError(format!("{e:#}")))?;
    let (access, notes) = Access::resolve(policy.control());
    let socket = args.control_socket.clone().unwrap_or_else(|| PathBuf::from(policy.control_socket()));
    let (listener, more) = auth::bind(&socket, &access).map_err(|e| UsageError(format!("{e:#}")))?;
    for n in notes.iter().chain(&more) {
        tracing::warn!("{n}");
    }
    let engine = Arc::new(Engine::new(policy));
    let ring = Arc::new(EventRing::new());
    let (dp, warnings) = match DataPlane::start(engine.clone(), ring.clone()) {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(UsageError(e.to_string()).into());
        }
    };
    for w in &warnings {
        tracing::warn!("{w}");
    }
    // The sockets are open: nothing from here on needs a capability.
    match sys::drop_capabilities() {
        Ok(()) => tracing::info!("every capability dropped, in every thread (sockets open)"),
        Err(e) => tracing::error!("could not drop every capability: {e}"),
    }
    let dp = Arc::new(dp);
    let ctl = Arc::new(Controller::new(Setup {
        engine: engine.clone(),
        dp: dp.clone(),
        ring,
        journal,
        config_path: args.config.clone(),
        config_text: text,
        socket: socket.clone(),
        access,
        log,
    }));
    ctl.set_now(dp.tick());
    let mode = engine.loaded().policy.mode().as_str();
    ctl.record(
        "start",
        Who::default(),
        true,
        format!(
            "sekishod {} enforcing {} (mode {mode}), control socket {}",
            env!("CARGO_PKG_VERSION"),
            args.config.display(),
            socket.display()
        ),
    );
    let server = Server::start(ctl.clone(), listener).context("cannot start the control server")?;
    tracing::info!(
        interfaces = dp.interfaces().len(),
        mode,
        "enforcing {}; control socket {}",
        args.config.display(),
        socket.display()
    );
    let mut status = ctl.status_line();
    notifier.send(&format!("READY=1\nSTATUS={status}"));
    let watchdog = notifier.watchdog_every();
    let (mut last_sweep, mut last_watchdog) = (Instant::now(), Instant::now());
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        let now = dp.tick();
        ctl.set_now(now);
        if hup.swap(false, Ordering::Relaxed) {
            notifier.send("RELOADING=1");
            if let Err(e) = ctl.reload(ReloadArgs::default(), Who::default(), "sighup") {
                tracing::error!("SIGHUP reload refused: {e}");
            }
        }
        ctl.tick();
        if last_sweep.elapsed() >= SWEEP_EVERY {
            engine.sweep(now.mono);
            last_sweep = Instant::now();
            let line = ctl.status_line();
            if line != status {
                status = line;
                notifier.send(&format!("READY=1\nSTATUS={status}"));
            }
        }
        if let Some(every) = watchdog {
            if last_watchdog.elapsed() >= every {
                last_watchdog = Instant::now();
                match stuck(&dp, now.mono).as_slice() {
                    [] => notifier.send("WATCHDOG=1"),
                    names => tracing::error!("workers stuck on {}: no watchdog ping", names.join(", ")),
                }
            }
        }
    }
    tracing::info!("stopping");
    notifier.send("STOPPING=1\nSTATUS=stopping");
    ctl.record("stop", Who::default(), true, "sekishod stopping (SIGTERM or SIGINT)".to_owned());
    server.stop();
    if let Err(e) = std::fs::remove_file(ctl.socket()) {
        tracing::warn!("cannot remove the control socket {}: {e}", ctl.socket().display());
    }
    summary(&engine, &dp);
    drop(ctl);
    match Arc::try_unwrap(dp) {
        Ok(dp) => dp.stop(),
        Err(_) => tracing::warn!("the data plane is still referenced; its workers end with the process"),
    }
    Ok(Outcome::Yes)
}
