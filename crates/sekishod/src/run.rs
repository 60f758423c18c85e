//! `sekishod run`: inline enforcement on the port interfaces until SIGTERM or SIGINT;
//! SIGHUP reloads the configuration.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sekisho_dataplane::DataPlane;
use sekisho_engine::{Engine, SideCounters};
use sekisho_policy::Reason;
use serde_json::{json, Value};

use crate::{load_policy, Outcome, UsageError};

/// Arguments of `sekishod run`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The configuration file (TOML).
    #[arg(short, long)]
    config: PathBuf,
    /// Write counters as JSON to this file: first when every interface is open (so its
    /// appearance means "ready"), then every --stats-interval-ms, and at exit.
    #[arg(long)]
    stats_file: Option<PathBuf>,
    /// How often the stats file is rewritten, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(50..=3_600_000))]
    stats_interval_ms: u64,
}

/// How often the workers' clock advances.
const TICK: Duration = Duration::from_millis(20);
/// How often idle flows are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

fn side_json(interface: &str, c: &SideCounters, io: &sekisho_dataplane::IoCounters) -> Value {
    let r = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    json!({
        "interface": interface,
        "packets": c.packets,
        "bytes": c.bytes,
        "forwarded": c.forwarded,
        "dropped": c.dropped,
        "monitored": c.monitored,
        "truncated": r(&io.truncated),
        "send_errors": r(&io.send_errors),
        "read_errors": r(&io.read_errors),
    })
}

/// The stats document (the contract the lab and the tests read).
fn stats(dp: &DataPlane) -> Value {
    let engine: &Engine = dp.engine();
    let loaded = engine.loaded();
    let counters = engine.counters();
    let reasons: serde_json::Map<String, Value> = Reason::CODES
        .iter()
        .zip(counters.by_reason)
        .map(|(code, n)| ((*code).to_owned(), json!(n)))
        .collect();
    let interfaces = dp.interfaces();
    let ports: Vec<Value> = loaded
        .policy
        .ports()
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let c = counters.ports.get(i).copied().unwrap_or_default();
            let io = |name: &str| interfaces.iter().find(|x| x.name == name).map(|x| &x.counters);
            let none = sekisho_dataplane::IoCounters::default();
            json!({
                "name": port.name,
                "inside": side_json(&port.inside, &c.inside, io(&port.inside).unwrap_or(&none)),
                "outside": side_json(&port.outside, &c.outside, io(&port.outside).unwrap_or(&none)),
            })
        })
        .collect();
    let f = engine.flow_stats();
    json!({
        "mode": loaded.policy.mode().as_str(),
        "generation": loaded.generation,
        "reasons": reasons,
        "ports": ports,
        "flows": {
            "flows": f.entries, "capacity": f.capacity, "inserted": f.inserted,
            "evicted": f.evicted, "expired": f.expired, "refused": f.refused,
        },
    })
}

/// Writes `doc` to `path` atomically (a temporary file renamed over it).
fn write_stats(path: &Path, doc: &Value) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{doc:#}\n")).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

fn summary(doc: &Value) {
    println!("sekishod stopped; counters:");
    if let Some(ports) = doc["ports"].as_array() {
        for p in ports {
            for side in ["inside", "outside"] {
                let s = &p[side];
                println!(
                    "  {:<22} {:<7} {:<10} packets {:>10}  forwarded {:>10}  dropped {:>10}  monitored {:>8}  truncated {:>6}  send errors {:>6}",
                    p["name"].as_str().unwrap_or("?"),
                    side,
                    s["interface"].as_str().unwrap_or("?"),
                    s["packets"], s["forwarded"], s["dropped"], s["monitored"], s["truncated"], s["send_errors"],
                );
            }
        }
    }
    if let Some(reasons) = doc["reasons"].as_object() {
        for (code, n) in reasons.iter().filter(|(_, n)| n.as_u64().unwrap_or(0) > 0) {
            println!("  {code:<28} {n}");
        }
    }
}

/// SIGHUP: load the configuration again and swap it in. A configuration that does not
/// load, or that changes ports or `[flow]`, is refused and the running policy stays.
fn reload_policy(dp: &DataPlane, config: &Path) {
    match load_policy(config).map(|p| dp.engine().reload(p)) {
        Ok(Ok(generation)) => {
            tracing::info!(generation, "reloaded {}; existing flows are re-decided", config.display())
        }
        Ok(Err(e)) => tracing::error!("reload refused: {e}; the running policy stays"),
        Err(e) => tracing::error!("reload refused: {e:#}; the running policy stays"),
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let policy = load_policy(&args.config)?;
    if policy.ports().is_empty() {
        return Err(UsageError(format!("{}: no [[port]] to enforce on", args.config.display())).into());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).context("cannot install the signal handler")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .context("cannot install the signal handler")?;
    let engine = Arc::new(Engine::new(policy));
    let (dp, warnings) = DataPlane::start(engine, Arc::new(sekisho_dataplane::NoObserver))
        .map_err(|e| UsageError(e.to_string()))?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(
        interfaces = dp.interfaces().len(),
        mode = dp.engine().loaded().policy.mode().as_str(),
        "enforcing {}",
        args.config.display()
    );
    if let Some(path) = &args.stats_file {
        write_stats(path, &stats(&dp))?;
    }
    let interval = Duration::from_millis(args.stats_interval_ms);
    let (mut last_stats, mut last_sweep) = (Instant::now(), Instant::now());
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        let now = dp.tick();
        if reload.swap(false, Ordering::Relaxed) {
            reload_policy(&dp, &args.config);
        }
        if last_sweep.elapsed() >= SWEEP_EVERY {
            dp.engine().sweep(now.mono);
            last_sweep = Instant::now();
        }
        if let Some(path) = &args.stats_file {
            if last_stats.elapsed() >= interval {
                if let Err(e) = write_stats(path, &stats(&dp)) {
                    tracing::warn!("{e:#}");
                }
                last_stats = Instant::now();
            }
        }
    }
    tracing::info!("stopping");
    let doc = stats(&dp);
    dp.stop();
    if let Some(path) = &args.stats_file {
        write_stats(path, &doc)?;
    }
    summary(&doc);
    Ok(Outcome::Yes)
}
