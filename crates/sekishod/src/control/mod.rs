//! The control plane: the [`Controller`] (the daemon's state as operators see and change
//! it: the policy in force and where it came from, the previous one, a commit-confirm on
//! trial) and the socket [`server`] that serves it.
//!
//! Every change goes through the controller under one lock (changes are rare and serial;
//! the data plane never takes it) and is recorded once, in the [`journal::Journal`].
//!
//! Reload: read → validate and compile (`load_str`) → refuse what needs a restart →
//! review the live flows against the candidate (`Engine::review`: what it will cut, by
//! reason) → swap it in (`Engine::reload`: one atomic store; each flow is re-decided at
//! its next packet) → record. With `confirm_s` the previous policy is kept as the
//! rollback target and swapped back by [`Controller::tick`] unless `confirm` comes in
//! time.

pub(crate) mod auth;
pub(crate) mod diff;
pub(crate) mod events;
pub(crate) mod journal;
pub(crate) mod server;
pub(crate) mod view;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use sekisho_alert::What;
use sekisho_control::*;
use sekisho_dataplane::DataPlane;
use sekisho_engine::{Engine, Now, Review};
use sekisho_policy::{Mode, Policy, Timestamp};
use serde_json::Value;
use sha2::Digest;

use self::auth::Access;
use self::events::{EventRing, Reader};
use self::journal::Journal;
use crate::alerts::{mode_named, Alerts};

/// Reading and setting the daemon's log filter (the binary owns the subscriber).
pub(crate) trait LogControl: Send + Sync {
    /// The filter in force.
    fn get(&self) -> String;
    /// Replaces the filter; returns it, or why it is not one.
    fn set(&self, filter: &str) -> Result<String, String>;
}

/// Who asked: the peer's credentials, or the daemon itself (a signal, a timer).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Who {
    pub uid: Option<u32>,
    pub pid: Option<u32>,
}

/// A policy and where it came from.
#[derive(Clone)]
struct Source {
    policy: Policy,
    origin: String,
    sha256: String,
    loaded_at: Timestamp,
    generation: u32,
}

struct Trial {
    deadline: Instant,
    deadline_wall: Timestamp,
    /// What runs again unless confirmed.
    rollback_to: Source,
    uid: u32,
}

struct State {
    current: Source,
    /// What `rollback` goes back to when no trial is pending.
    previous: Option<Source>,
    trial: Option<Trial>,
    last_rollback: Option<Rollback>,
}

/// What the controller is started with.
pub(crate) struct Setup {
    pub engine: Arc<Engine>,
    pub dp: Arc<DataPlane>,
    pub ring: Arc<EventRing>,
    pub journal: Journal,
    pub config_path: PathBuf,
    pub config_text: String,
    pub socket: PathBuf,
    pub access: Access,
    pub log: Arc<dyn LogControl>,
    pub alerts: Arc<Alerts>,
}

/// The daemon as operators see and change it.
pub(crate) struct Controller {
    pub(crate) engine: Arc<Engine>,
    pub(crate) dp: Arc<DataPlane>,
    pub(crate) journal: Journal,
    ring: Arc<EventRing>,
    reader: Mutex<Reader>,
    config_path: PathBuf,
    socket: PathBuf,
    started: Instant,
    started_wall: Timestamp,
    mono: AtomicU64,
    wall: AtomicU64,
    state: Mutex<State>,
    access: RwLock<Access>,
    /// Clients connected now.
    pub(crate) clients: AtomicU64,
    log: Arc<dyn LogControl>,
    pub(crate) alerts: Arc<Alerts>,
}

/// SHA-256 as lowercase hex.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn err(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, message)
}

fn cut(r: &Review) -> Cut {
    Cut { total: r.cut, by_reason: r.cut_by_code().map(|(c, n)| (c.to_owned(), n)).collect() }
}

fn problems(errors: &sekisho_policy::ConfigErrors) -> Vec<Problem> {
    errors
        .errors
        .iter()
        .map(|e| Problem { code: e.code.as_str().into(), item: e.item.clone(), message: e.message.clone() })
        .collect()
}

fn warnings(policy: &Policy, now: Timestamp) -> Vec<Problem> {
    policy
        .warnings(now)
        .iter()
        .map(|w| Problem { code: w.code.as_str().into(), item: w.item.clone(), message: w.message.clone() })
        .collect()
}

fn cut_text(c: &Cut) -> String {
    if c.total == 0 {
        return "no live flow cut".into();
    }
    let by: Vec<String> = c.by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
    format!("{} live flows cut ({})", c.total, by.join(", "))
}

fn json<T: serde::Serialize>(v: T) -> Result<Value, ErrorBody> {
    serde_json::to_value(v).map_err(|e| err(ErrorCode::Internal, format!("cannot encode the reply: {e}")))
}

impl Controller {
    pub(crate) fn new(s: Setup) -> Controller {
        let loaded = s.engine.loaded();
        let now = crate::wall_clock();
        let current = Source {
            policy: (*loaded.policy).clone(),
            origin: s.config_path.display().to_string(),
            sha256: sha256(s.config_text.as_bytes()),
            loaded_at: now,
            generation: loaded.generation,
        };
        drop(loaded);
        Controller {
            engine: s.engine,
            dp: s.dp,
            journal: s.journal,
            ring: s.ring,
            reader: Mutex::new(Reader::default()),
            config_path: s.config_path,
            socket: s.socket,
            started: Instant::now(),
            started_wall: now,
            mono: AtomicU64::new(0),
            wall: AtomicU64::new(now.0),
            state: Mutex::new(State { current, previous: None, trial: None, last_rollback: None }),
            access: RwLock::new(s.access),
            clients: AtomicU64::new(0),
            log: s.log,
            alerts: s.alerts,
        }
    }

    fn state(&self) -> Result<MutexGuard<'_, State>, ErrorBody> {
        self.state
            .lock()
            .map_err(|_| err(ErrorCode::Internal, "the control state lock is poisoned; restart sekishod"))
    }

    /// The clocks as the main loop last read them.
    pub(crate) fn now(&self) -> Now {
        Now { mono: self.mono.load(Relaxed), wall: Timestamp(self.wall.load(Relaxed)) }
    }

    /// Called by the main loop after each tick of the data plane's clocks.
    pub(crate) fn set_now(&self, now: Now) {
        self.mono.store(now.mono, Relaxed);
        self.wall.store(now.wall.0, Relaxed);
    }

    /// The role of a peer.
    pub(crate) fn role(&self, uid: u32, gids: &[u32]) -> Option<Role> {
        self.access.read().ok().and_then(|a| a.role(uid, gids))
    }

    /// Records one change (ok or refused) in the journal.
    pub(crate) fn record(&self, action: &str, who: Who, ok: bool, detail: String) {
        let generation = self.engine.loaded().generation;
        self.journal.record(Change {
            at: crate::wall_clock().to_jst(),
            action: action.into(),
            uid: who.uid,
            pid: who.pid,
            ok,
            detail,
            generation,
        });
    }

    /// Carries out one request (not `events --follow`, which the server streams).
    pub(crate) fn handle(&self, cmd: Command, who: Who) -> Result<Value, ErrorBody> {
        match cmd {
            Command::Status => json(self.status()?),
            Command::Stats => json(self.stats()),
            Command::Flows(q) => json(view::flows(&self.engine, self.now(), &q)?),
            Command::FlowKill(q) => json(self.kill(&q, who)?),
            Command::Explain(a) => json(self.explain(&a)?),
            Command::Check(t) => json(self.check(&t)?),
            Command::Reload(a) => json(self.reload(a, who, "reload")?),
            Command::Confirm => json(self.confirm(who)?),
            Command::Rollback => json(self.rollback(who, false)?),
            Command::Mode(m) => json(self.set_mode(&m.mode, who)?),
            Command::LogLevel(l) => json(self.log_level(l.level.as_deref(), who)?),
            Command::Events(e) => {
                let limit = e.limit.unwrap_or(100).min(MAX_EVENTS) as usize;
                json(self.journal.recent(limit))
            }
            Command::History(h) => {
                let limit = h.limit.unwrap_or(100).min(MAX_EVENTS) as usize;
                let changes =
                    self.journal.history(limit).map_err(|e| err(ErrorCode::Unavailable, format!("{e:#}")))?;
                json(changes)
            }
        }
    }

    fn status(&self) -> Result<Status, ErrorBody> {
        let loaded = self.engine.loaded();
        let now = self.now();
        let st = self.state()?;
        let file_sha256 = read_policy_file(&self.config_path).ok().map(|t| sha256(t.as_bytes()));
        let io = self.dp.interfaces();
        let iface = |name: &str| {
            let i = io.iter().find(|x| x.name == name);
            InterfaceStatus {
                interface: name.to_owned(),
                link: view::link_state(name),
                mtu: i.map_or(0, |i| i.mtu as u64),
                heartbeat_age_ms: i.map_or(u64::MAX, |i| {
                    now.mono.saturating_sub(i.counters.heartbeat.load(Relaxed)) / 1_000_000
                }),
            }
        };
        let policy = &loaded.policy;
        let access = self.access.read().map(|a| a.clone()).unwrap_or_default();
        Ok(Status {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            started: self.started_wall.to_jst(),
            uptime_s: self.started.elapsed().as_secs(),
            mode: policy.mode().as_str().into(),
            generation: loaded.generation,
            ready: true,
            config: ConfigInfo {
                path: self.config_path.display().to_string(),
                origin: st.current.origin.clone(),
                sha256: st.current.sha256.clone(),
                file_sha256,
                loaded_at: st.current.loaded_at.to_jst(),
            },
            pending: st.trial.as_ref().map(|t| Pending {
                generation: st.current.generation,
                rollback_to: t.rollback_to.generation,
                deadline: t.deadline_wall.to_jst(),
                remaining_s: t.deadline.saturating_duration_since(Instant::now()).as_secs(),
                uid: t.uid,
            }),
            last_rollback: st.last_rollback.clone(),
            ports: policy
                .ports()
                .iter()
                .map(|p| PortStatus {
                    name: p.name.clone(),
                    zone: policy.zone(p.zone).map_or_else(String::new, |z| z.name.clone()),
                    inside: iface(&p.inside),
                    outside: iface(&p.outside),
                })
                .collect(),
            control: ControlInfo {
                socket: self.socket.display().to_string(),
                admin_group: access.admin.map(|g| g.name),
                read_group: access.read.map(|g| g.name),
                clients: self.clients.load(Relaxed),
            },
        })
    }

    fn stats(&self) -> Stats {
        let lost = self.reader.lock().map(|r| r.lost).unwrap_or(0);
        let events = EventStats { recorded: self.ring.recorded(), lost };
        view::stats(&self.engine, &self.dp, events, self.alerts.stats())
    }

    fn explain(&self, a: &ExplainArgs) -> Result<Explanation, ErrorBody> {
        let q =
            crate::explain::query(&a.proto, &a.src, &a.dst).map_err(|e| err(ErrorCode::BadArgument, e.0))?;
        let now = match &a.at {
            Some(at) => crate::parse_at(at).map_err(|e| err(ErrorCode::BadArgument, format!("{e:#}")))?,
            None => self.now().wall,
        };
        let loaded = self.engine.loaded();
        let mut x = crate::explain::explain(&loaded.policy, &q, now);
        let mut flows = Vec::new();
        let clock = self.now();
        self.engine.for_each_flow(|key, s, reason| {
            let (i, r) = (key.socket(s.initiator), key.socket(s.initiator.other()));
            let same = key.protocol() == q.conn.protocol
                && i.addr == q.conn.initiator
                && r.addr == q.conn.responder
                && q.sport.is_none_or(|p| p == i.port)
                && q.dport.is_none_or(|p| p == r.port);
            if same && flows.len() < 16 {
                flows.push(view::flow(&loaded.policy, clock, key, s, reason));
            }
        });
        x.flows = Some(flows);
        Ok(x)
    }

    fn check(&self, t: &PolicyText) -> Result<CheckReport, ErrorBody> {
        if t.text.len() > MAX_POLICY_TEXT {
            return Err(err(
                ErrorCode::BadArgument,
                format!("the policy is {} bytes; at most {MAX_POLICY_TEXT} are accepted", t.text.len()),
            ));
        }
        let policy = match sekisho_policy::load_str(&t.text, &t.origin) {
            Ok(p) => p,
            Err(e) => {
                return Ok(CheckReport {
                    origin: t.origin.clone(),
                    valid: false,
                    errors: problems(&e),
                    warnings: Vec::new(),
                    summary: None,
                    restart_needed: None,
                    changes: None,
                    cut: None,
                })
            }
        };
        let now = self.now();
        let current = self.engine.loaded();
        let restart = diff::restart_needed(&current.policy, &policy);
        let review = restart.is_none().then(|| cut(&self.engine.review(&policy, now)));
        Ok(CheckReport {
            origin: t.origin.clone(),
            valid: true,
            errors: Vec::new(),
            warnings: warnings(&policy, now.wall),
            summary: Some(crate::policy_summary(&policy)),
            changes: Some(diff::changes(&current.policy, &policy)),
            restart_needed: restart,
            cut: review,
        })
    }

    /// Swaps `new` in for the policy in force: refuses what needs a restart, reviews the
    /// live flows, reloads the engine. Returns what changed, what is cut, and the source
    /// that was in force.
    fn swap(&self, st: &mut State, mut new: Source) -> Result<(Changes, Cut, Source), ErrorBody> {
        let old = &st.current.policy;
        if let Some(why) = diff::restart_needed(old, &new.policy) {
            return Err(err(ErrorCode::RestartNeeded, format!("{why}; the running policy stays")));
        }
        let changes = diff::changes(old, &new.policy);
        let review = self.engine.review(&new.policy, self.now());
        new.generation = self
            .engine
            .reload(new.policy.clone())
            .map_err(|e| err(ErrorCode::RestartNeeded, format!("{e}; the running policy stays")))?;
        self.alerts.name(&self.engine);
        // The groups are looked up again at every change (`groupadd`, then `reload`).
        let (access, mut notes) = Access::resolve(new.policy.control());
        if self.access.read().is_ok_and(|a| *a != access) {
            notes.extend(auth::apply_acl(&self.socket, &access));
            if let Ok(mut a) = self.access.write() {
                *a = access;
            }
        }
        for n in notes {
            tracing::warn!("{n}");
        }
        let previous = std::mem::replace(&mut st.current, new);
        Ok((changes, cut(&review), previous))
    }

    /// `reload` (and SIGHUP, `action` "sighup").
    pub(crate) fn reload(&self, args: ReloadArgs, who: Who, action: &str) -> Result<ReloadReport, ErrorBody> {
        let origin =
            args.policy.as_ref().map_or_else(|| self.config_path.display().to_string(), |p| p.origin.clone());
        let result = self.reload_inner(args, who);
        match &result {
            Ok(r) => {
                let confirm = r
                    .confirm_by
                    .as_ref()
                    .map(|t| format!("; rolls back at {t} unless confirmed"))
                    .unwrap_or_default();
                let trial =
                    r.confirm_by.as_ref().map(|t| format!(" (on trial: rolls back at {t} unless confirmed)"));
                self.alerts.loaded(
                    &self.engine,
                    who.uid,
                    format!("{}{}", r.origin, trial.unwrap_or_default()),
                    r.changes.mode.as_ref().and_then(|m| mode_named(&m.from)),
                );
                self.record(
                    action,
                    who,
                    true,
                    format!(
                        "loaded {} (sha256 {}): {}; {}{confirm}",
                        r.origin,
                        &r.sha256[..12],
                        diff::summary(&r.changes),
                        cut_text(&r.cut)
                    ),
                )
            }
            Err(e) => {
                self.alerts.notice(
                    &self.engine,
                    who.uid,
                    What::ReloadFailed { origin, error: e.message.clone() },
                );
                self.record(action, who, false, format!("refused: {}", e.message))
            }
        }
        result
    }

    fn reload_inner(&self, args: ReloadArgs, who: Who) -> Result<ReloadReport, ErrorBody> {
        let confirm = match args.confirm_s {
            Some(s) if s == 0 || s > MAX_CONFIRM_S => {
                return Err(err(
                    ErrorCode::BadArgument,
                    format!("confirm {s} s: give 1 to {MAX_CONFIRM_S} seconds"),
                ))
            }
            other => other,
        };
        let (text, origin) = match args.policy {
            Some(p) if p.text.len() > MAX_POLICY_TEXT => {
                return Err(err(
                    ErrorCode::BadArgument,
                    format!("the policy is {} bytes; at most {MAX_POLICY_TEXT} are accepted", p.text.len()),
                ))
            }
            Some(p) => (p.text, p.origin),
            None => (
                read_policy_file(&self.config_path).map_err(|e| err(ErrorCode::Unavailable, e))?,
                self.config_path.display().to_string(),
            ),
        };
        let mut st = self.state()?;
        if st.trial.is_some() && confirm.is_none() {
            return Err(err(
                ErrorCode::ConfirmPending,
                "a reload --confirm is on trial: `sekishoctl confirm` to keep it or `sekishoctl rollback` first",
            ));
        }
        let policy = sekisho_policy::load_str(&text, &origin).map_err(|e| ErrorBody {
            code: ErrorCode::ConfigInvalid,
            message: format!(
                "{origin} does not load ({} problems, the first: {}); the running policy stays",
                e.errors.len(),
                e.errors.first().map(|x| x.to_string()).unwrap_or_default()
            ),
            details: serde_json::to_value(serde_json::json!({ "errors": problems(&e) })).ok(),
        })?;
        let now = crate::wall_clock();
        let new = Source {
            policy,
            origin: origin.clone(),
            sha256: sha256(text.as_bytes()),
            loaded_at: now,
            generation: 0,
        };
        let previous_generation = st.current.generation;
        let (changes, cut, previous) = self.swap(&mut st, new)?;
        let report_warnings = warnings(&st.current.policy, now);
        let mut confirm_by = None;
        if let Some(secs) = confirm {
            let window = Duration::from_secs(u64::from(secs));
            let deadline_wall = Timestamp(now.0.saturating_add(window.as_nanos() as u64));
            confirm_by = Some(deadline_wall.to_jst());
            // A second trial keeps the first one's rollback target: the last confirmed policy.
            let rollback_to = match st.trial.take() {
                Some(t) => t.rollback_to,
                None => previous,
            };
            st.trial = Some(Trial {
                deadline: Instant::now() + window,
                deadline_wall,
                rollback_to,
                uid: who.uid.unwrap_or(0),
            });
        } else {
            st.previous = Some(previous);
        }
        Ok(ReloadReport {
            generation: st.current.generation,
            previous_generation,
            origin,
            sha256: st.current.sha256.clone(),
            changes,
            cut,
            warnings: report_warnings,
            confirm_by,
        })
    }

    /// `confirm`.
    pub(crate) fn confirm(&self, who: Who) -> Result<Confirmed, ErrorBody> {
        let result: Result<Confirmed, ErrorBody> = (|| {
            let mut st = self.state()?;
            let trial = st.trial.take().ok_or_else(|| {
                err(ErrorCode::NothingToConfirm, "no reload --confirm is waiting; nothing to confirm")
            })?;
            st.previous = Some(trial.rollback_to);
            Ok(Confirmed { generation: st.current.generation })
        })();
        match &result {
            Ok(c) => self.record("confirm", who, true, format!("kept generation {}", c.generation)),
            Err(e) => self.record("confirm", who, false, format!("refused: {}", e.message)),
        }
        result
    }

    /// `rollback` (and the automatic one when a trial's time is up).
    pub(crate) fn rollback(&self, who: Who, automatic: bool) -> Result<RolledBack, ErrorBody> {
        let action = if automatic { "auto-rollback" } else { "rollback" };
        let result: Result<RolledBack, ErrorBody> = (|| {
            let mut st = self.state()?;
            let target = match st.trial.take() {
                Some(t) => t.rollback_to,
                None => st.previous.take().ok_or_else(|| {
                    err(
                        ErrorCode::NothingToRollBack,
                        "no earlier policy to go back to since start (or the last rollback)",
                    )
                })?,
            };
            let from_generation = st.current.generation;
            let back = Source { loaded_at: crate::wall_clock(), ..target };
            let (changes, cut, _) = self.swap(&mut st, back)?;
            st.previous = None;
            st.last_rollback = Some(Rollback {
                at: crate::wall_clock().to_jst(),
                from_generation,
                generation: st.current.generation,
                automatic,
                uid: who.uid,
            });
            Ok(RolledBack { generation: st.current.generation, from_generation, changes, cut })
        })();
        match &result {
            Ok(r) => {
                let why = if automatic { "not confirmed in time: " } else { "" };
                let origin = self.state().map(|s| s.current.origin.clone()).unwrap_or_default();
                let how = if automatic { "automatic rollback, not confirmed in time" } else { "rollback" };
                self.alerts.loaded(
                    &self.engine,
                    who.uid,
                    format!("{origin} ({how}, from generation {})", r.from_generation),
                    r.changes.mode.as_ref().and_then(|m| mode_named(&m.from)),
                );
                self.record(
                    action,
                    who,
                    true,
                    format!(
                        "{why}back from generation {} to {origin} as generation {}: {}; {}",
                        r.from_generation,
                        r.generation,
                        diff::summary(&r.changes),
                        cut_text(&r.cut)
                    ),
                )
            }
            Err(e) => self.record(action, who, false, format!("refused: {}", e.message)),
        }
        result
    }

    /// `mode`.
    pub(crate) fn set_mode(&self, mode: &str, who: Who) -> Result<ModeReport, ErrorBody> {
        let result = (|| {
            let mode = Mode::ALL.into_iter().find(|m| m.as_str() == mode).ok_or_else(|| {
                err(ErrorCode::BadArgument, format!("mode {mode:?}: use enforce or monitor"))
            })?;
            let mut st = self.state()?;
            if st.trial.is_some() {
                return Err(err(
                    ErrorCode::ConfirmPending,
                    "a reload --confirm is on trial: confirm or roll back first",
                ));
            }
            let previous_mode = st.current.policy.mode();
            let new = Source {
                policy: st.current.policy.with_mode(mode),
                loaded_at: crate::wall_clock(),
                ..st.current.clone()
            };
            let (_, cut, previous) = self.swap(&mut st, new)?;
            st.previous = Some(previous);
            Ok(ModeReport {
                mode: mode.as_str().into(),
                previous: previous_mode.as_str().into(),
                generation: st.current.generation,
                cut,
            })
        })();
        match &result {
            Ok(m) => {
                if let Some(from) = mode_named(&m.previous).filter(|_| m.previous != m.mode) {
                    self.alerts.notice(&self.engine, who.uid, What::ModeChanged { from });
                }
                self.record(
                    "mode",
                    who,
                    true,
                    format!("mode {} -> {}; {}", m.previous, m.mode, cut_text(&m.cut)),
                )
            }
            Err(e) => self.record("mode", who, false, format!("refused: {}", e.message)),
        }
        result
    }

    fn kill(&self, q: &FlowQuery, who: Who) -> Result<Killed, ErrorBody> {
        let result = (|| {
            if q.selects_all() {
                return Err(err(
                    ErrorCode::BadArgument,
                    "flow kill needs at least one filter (--zone, --addr, --port, --dport, --proto, --path, --reason)",
                ));
            }
            let loaded = self.engine.loaded();
            let filter = view::Filter::new(&loaded.policy, q)?;
            let killed = self.engine.kill_flows(|k, s, r| filter.matches(&loaded.policy, k, s, r));
            Ok(Killed { killed: killed as u64 })
        })();
        let what = serde_json::to_string(q).unwrap_or_default();
        match &result {
            Ok(k) => {
                self.record("flow-kill", who, true, format!("removed {} flows matching {what}", k.killed))
            }
            Err(e) => self.record("flow-kill", who, false, format!("refused ({what}): {}", e.message)),
        }
        result
    }

    fn log_level(&self, level: Option<&str>, who: Who) -> Result<LogLevel, ErrorBody> {
        let Some(level) = level else { return Ok(LogLevel { level: self.log.get() }) };
        match self.log.set(level) {
            Ok(l) => {
                self.record("log-level", who, true, format!("log filter now {l}"));
                Ok(LogLevel { level: l })
            }
            Err(e) => {
                self.record("log-level", who, false, format!("refused {level:?}: {e}"));
                Err(err(ErrorCode::BadArgument, e))
            }
        }
    }

    /// Periodic work, from the main loop: the automatic rollback of a trial whose time is
    /// up, and reading the verdict event ring.
    pub(crate) fn tick(&self) {
        let due =
            self.state.lock().is_ok_and(|st| st.trial.as_ref().is_some_and(|t| Instant::now() >= t.deadline));
        if due {
            if let Err(e) = self.rollback(Who::default(), true) {
                tracing::error!("automatic rollback failed: {e}");
            }
        }
        self.drain_events();
    }

    fn drain_events(&self) {
        let Ok(mut reader) = self.reader.lock() else { return };
        let wanted = self.journal.followers() > 0;
        let loaded = self.engine.loaded();
        let mut batch = Vec::new();
        let lost = reader.drain(&self.ring, |raw| batch.push(raw));
        drop(reader);
        if lost > 0 {
            self.journal.publish(crate::wall_clock().to_jst(), EventBody::Lost { count: lost });
        }
        // Build events only for followers, and always the last ones for the backlog.
        let keep = if wanted { batch.len() } else { batch.len().min(journal::BACKLOG) };
        for raw in &batch[batch.len() - keep..] {
            self.journal.publish(events::at(raw), events::body(&loaded.policy, raw));
        }
    }

    /// The control socket's path.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// A one-line status for systemd (`STATUS=`).
    pub(crate) fn status_line(&self) -> String {
        let loaded = self.engine.loaded();
        let trial = self.state.lock().ok().and_then(|st| {
            st.trial.as_ref().map(|t| {
                format!(", generation {} on trial until {}", st.current.generation, t.deadline_wall.to_jst())
            })
        });
        format!(
            "{} ports, {}, generation {}{}",
            loaded.policy.ports().len(),
            loaded.policy.mode().as_str(),
            loaded.generation,
            trial.unwrap_or_default()
        )
    }
}

/// Reads the configuration file, at most [`MAX_POLICY_TEXT`] bytes.
fn read_policy_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_POLICY_TEXT as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() > MAX_POLICY_TEXT {
        return Err(format!("{} is larger than {MAX_POLICY_TEXT} bytes", path.display()));
    }
    Ok(text)
}
