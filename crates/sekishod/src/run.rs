//! `sekishod run`: inline enforcement on the port interfaces until SIGTERM or SIGINT,
//! managed through the control socket; SIGHUP reloads the configuration like `reload`,
//! SIGUSR1 reopens the alert event file.
//!
//! Start-up order: load the policy, start the alert threads, bind the control socket,
//! open the ports and start the workers (the data plane), drop every capability in every
//! thread, start the control server, tell systemd `READY=1`. The main thread then ticks
//! the workers' clocks, sweeps idle flows, handles signals, rolls back an unconfirmed
//! trial when its time is up, reports exceptions that expire and flows evicted, and feeds
//! systemd's watchdog from the workers' heartbeats.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sekisho_alert::What;
use sekisho_control::AlertStats;
use sekisho_control::ReloadArgs;
use sekisho_dataplane::DataPlane;
use sekisho_engine::Engine;
use sekisho_policy::Reason;

use crate::alerts::Alerts;
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

/// The data plane's counters, printed when the daemon stops.
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

/// The alerts' counters, printed when the daemon stops.
fn alert_summary(a: &AlertStats) {
    println!(
        "  alerts: passed {}, suppressed {}, queue dropped {}, notices dropped {}, events {} ({} summaries), \
         event file lines {} (errors {}, reopens {})",
        a.passed,
        a.suppressed,
        a.queue_dropped,
        a.notices_dropped,
        a.events,
        a.summaries,
        a.event_file_written,
        a.event_file_errors,
        a.event_file_reopens
    );
    for t in &a.targets {
        println!(
            "  alert target {}: sent {}, send errors {}, dropped {}, filtered {}, connects {}, connect failures {}",
            t.url, t.sent, t.send_errors, t.dropped, t.filtered, t.connects, t.connect_failures
        );
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
    let [term, int, hup, usr1] = [(); 4].map(|()| Arc::new(AtomicBool::new(false)));
    for (signal, flag) in [
        (signal_hook::consts::SIGTERM, &term),
        (signal_hook::consts::SIGINT, &int),
        (signal_hook::consts::SIGHUP, &hup),
        (signal_hook::consts::SIGUSR1, &usr1),
    ] {
        signal_hook::flag::register(signal, flag.clone()).context("cannot install the signal handler")?;
    }
    // Collectors are connected lazily by the alert threads: one that is down does not
    // stop the daemon; an event file that cannot be opened does (exit 2).
    let alerts = Alerts::start(&policy).map_err(|e| UsageError(format!("{}: {e}", args.config.display())))?;
    let notifier = Notifier::from_env();
    let journal = Journal::open(&args.state_dir).map_err(|e| UsageError(format!("{e:#}")))?;
    let (access, notes) = Access::resolve(policy.control());
    let socket = args.control_socket.clone().unwrap_or_else(|| PathBuf::from(policy.control_socket()));
    let (listener, more) = auth::bind(&socket, &access).map_err(|e| UsageError(format!("{e:#}")))?;
    for n in notes.iter().chain(&more) {
        tracing::warn!("{n}");
    }
    let engine = Arc::new(Engine::new(policy));
    let alerts = Arc::new(alerts);
    alerts.name(&engine);
    let ring = Arc::new(EventRing::new());
    let (dp, warnings) = match DataPlane::start(engine.clone(), Arc::new(alerts.tap(ring.clone()))) {
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
        alerts: alerts.clone(),
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
    alerts.notice(&engine, None, What::DaemonStart { version: env!("CARGO_PKG_VERSION").to_owned() });
    alerts.loaded(&engine, None, args.config.display().to_string(), None);
    alerts.tick(&engine, dp.tick());
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
    while !term.load(Ordering::Relaxed) && !int.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        let now = dp.tick();
        ctl.set_now(now);
        alerts.name(&engine);
        if usr1.swap(false, Ordering::Relaxed) {
            tracing::info!("SIGUSR1: reopening the alert event file");
            alerts.reopen();
        }
        if hup.swap(false, Ordering::Relaxed) {
            notifier.send("RELOADING=1");
            if let Err(e) = ctl.reload(ReloadArgs::default(), Who::default(), "sighup") {
                tracing::error!("SIGHUP reload refused: {e}");
            }
        }
        ctl.tick();
        if last_sweep.elapsed() >= SWEEP_EVERY {
            engine.sweep(now.mono);
            alerts.tick(&engine, now);
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
    let why = if term.load(Ordering::Relaxed) { "SIGTERM" } else { "SIGINT" };
    tracing::info!("stopping ({why})");
    notifier.send("STOPPING=1\nSTATUS=stopping");
    alerts.notice(&engine, None, What::DaemonStop { why: why.to_owned() });
    ctl.record("stop", Who::default(), true, format!("sekishod stopping ({why})"));
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
    // After the workers: the last frames' suppressed counts go out in final summaries.
    if let Some(a) = alerts.shutdown() {
        alert_summary(&a);
    }
    Ok(Outcome::Yes)
}
