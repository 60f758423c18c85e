//! Alerts in `sekishod run` (docs/alerts.md): what feeds `sekisho-alert`'s [`Alerter`].
//!
//! - [`Tap`] is the data plane's [`Observer`]: each dropped (or, in monitor mode,
//!   would-be dropped) frame goes to the verdict event ring and, as a [`Record`] of the
//!   policy generation it was judged under, to the alert [`Submitter`]. No lock, no
//!   allocation, never a wait: a slow or dead collector costs the workers nothing.
//! - [`Alerts`] is the control plane's side: notices (start and stop, policy loaded,
//!   reload failed, mode changed, exceptions expired or expiring), the names of every
//!   policy generation, evicted flows, reopening the event file, the counters.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sekisho_alert::{
    AlertCounters, AlertError, Alerter, AlerterConfig, EventKind, NameSource, Notice, Packet, Record,
    Submitter, What,
};
use sekisho_control::{AlertStats, AlertTargetStats};
use sekisho_dataplane::Observer;
use sekisho_engine::{Engine, Ingress, Now, Side, Verdict};
use sekisho_policy::{Mode, Policy, PortSide, Reason, Timestamp};

use crate::control::events::EventRing;

/// An exception is reported as expiring (`EXCEPTION_EXPIRING`) once it is this close
/// to its `expires`…
pub(crate) const EXPIRING_WITHIN: Duration = Duration::from_secs(7 * 24 * 3600);
/// …and again this often until it expires (or the policy drops or renews it).
pub(crate) const EXPIRING_REPEAT: Duration = Duration::from_secs(24 * 3600);
/// Flows evicted from the flow table are reported (`FLOW_EVICTED`) at most this often.
pub(crate) const EVICTIONS_EVERY: Duration = Duration::from_secs(10);
/// At stop, how long the collectors are given to take what is still queued.
pub(crate) const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);
/// Alert timestamps are written in Japan time, like every other time the daemon shows.
const JST_OFFSET_S: i32 = 9 * 3600;

/// The data plane's observer: the verdict event ring (`sekishoctl events`) and the
/// alert submitter.
pub(crate) struct Tap {
    ring: Arc<EventRing>,
    alerts: Submitter,
    /// The event kind of each reason code ([`Reason::index`]); none for allows.
    kinds: [Option<EventKind>; Reason::CODES.len()],
}

impl Tap {
    pub(crate) fn new(ring: Arc<EventRing>, alerts: Submitter) -> Tap {
        Tap { ring, alerts, kinds: Reason::CODES.map(EventKind::for_reason) }
    }
}

/// The alert for a verdict that drops (or would drop) a frame.
#[inline]
fn record(kind: EventKind, now: Now, ingress: Ingress, v: &Verdict) -> Record {
    let side = match ingress.side {
        Side::Inside => PortSide::Inside,
        Side::Outside => PortSide::Outside,
    };
    Record {
        kind,
        reason: Some(v.reason.code()),
        at: now.wall,
        mode: if v.monitored { Mode::Monitor } else { Mode::Enforce },
        generation: v.generation,
        packet: v.packet.map(|p| Packet {
            proto: p.protocol,
            src: p.src,
            dst: p.dst,
            sport: p.sport,
            dport: p.dport,
        }),
        port: Some((ingress.port, side)),
        flow: None,
        matched: None,
        count: None,
    }
}

impl Observer for Tap {
    #[inline]
    fn dropped(&self, now: Now, ingress: Ingress, verdict: &Verdict) {
        self.ring.dropped(now, ingress, verdict);
        if let Some(kind) = self.kinds.get(verdict.reason.index()).copied().flatten() {
            self.alerts.submit(&record(kind, now, ingress, verdict));
        }
    }
}

/// Which exceptions were reported as expiring or expired, so that each is reported
/// once (expiring: again every [`EXPIRING_REPEAT`]) — across reloads too, as long as
/// the exception keeps its name, approval and date.
#[derive(Default)]
struct ExpiryWatch {
    /// (name, approval, expires) → when `EXCEPTION_EXPIRING` was last sent (wall ns),
    /// and whether `EXCEPTION_EXPIRED` was.
    seen: HashMap<(String, String, u64), (Option<u64>, bool)>,
}

impl ExpiryWatch {
    /// The notices due at `now` for the exceptions of `policy`.
    fn check(&mut self, policy: &Policy, now: Timestamp) -> Vec<What> {
        let within = EXPIRING_WITHIN.as_nanos() as u64;
        let repeat = EXPIRING_REPEAT.as_nanos() as u64;
        let mut due = Vec::new();
        let mut present = HashSet::new();
        for e in policy.exceptions() {
            let Some(expires) = e.expires else { continue };
            let key = (e.name.clone(), e.approval.clone(), expires.0);
            let (reminded, expired) = self.seen.entry(key.clone()).or_default();
            let (exception, approval) = (e.name.clone(), e.approval.clone());
            if now.0 >= expires.0 {
                if !*expired {
                    *expired = true;
                    due.push(What::ExceptionExpired { exception, approval });
                }
            } else if expires.0 - now.0 <= within
                && reminded.is_none_or(|t| now.0.saturating_sub(t) >= repeat)
            {
                *reminded = Some(now.0);
                due.push(What::ExceptionExpiring { exception, approval, expires });
            }
            present.insert(key);
        }
        self.seen.retain(|k, _| present.contains(k));
        due
    }
}

/// The alert pipeline of the running daemon.
pub(crate) struct Alerts {
    /// `None` once shut down.
    alerter: Mutex<Option<Alerter>>,
    submitter: Submitter,
    /// The newest policy generation whose names the alerter has.
    named: AtomicU32,
    expiry: Mutex<ExpiryWatch>,
    /// When flow evictions were last reported, and the table's count then.
    evictions: Mutex<(Instant, u64)>,
}

impl Alerts {
    /// Opens the event file and starts the alert threads for `[alert]` of `policy`
    /// (the collectors are connected by their threads, lazily: one that is down does
    /// not stop the daemon).
    pub(crate) fn start(policy: &Policy) -> Result<Alerts, AlertError> {
        let mut config = AlerterConfig::from_policy(policy);
        config.utc_offset_s = JST_OFFSET_S;
        let alerter = Alerter::start(config)?;
        let submitter = alerter.submitter();
        Ok(Alerts {
            alerter: Mutex::new(Some(alerter)),
            submitter,
            named: AtomicU32::new(0),
            expiry: Mutex::new(ExpiryWatch::default()),
            // The first tick looks at once; then every EVICTIONS_EVERY.
            evictions: Mutex::new((
                Instant::now().checked_sub(EVICTIONS_EVERY).unwrap_or_else(Instant::now),
                0,
            )),
        })
    }

    /// The data plane's observer: the event ring and this pipeline.
    pub(crate) fn tap(&self, ring: Arc<EventRing>) -> Tap {
        Tap::new(ring, self.submitter.clone())
    }

    fn with<T>(&self, f: impl FnOnce(&Alerter) -> T) -> Option<T> {
        let alerter = self.alerter.lock().unwrap_or_else(|e| e.into_inner());
        alerter.as_ref().map(f)
    }

    /// Registers the names of the generation in force, if it is new: after every swap
    /// (reload, rollback, mode) and from the main loop (an exception's expiry begins a
    /// generation on a worker).
    pub(crate) fn name(&self, engine: &Engine) {
        let loaded = engine.loaded();
        if self.named.swap(loaded.generation, Relaxed) != loaded.generation {
            let names: Arc<dyn NameSource> = loaded.policy.clone();
            self.with(|a| a.set_names(loaded.generation, names));
        }
    }

    /// Reports `what` under the generation and mode in force; `uid`: the operator.
    pub(crate) fn notice(&self, engine: &Engine, uid: Option<u32>, what: What) {
        let loaded = engine.loaded();
        let notice = Notice {
            at: crate::wall_clock(),
            mode: loaded.policy.mode(),
            generation: loaded.generation,
            uid,
            what,
        };
        self.with(|a| a.notice(notice));
    }

    /// A policy was loaded (`origin` says from where and how); `mode_from`: the mode
    /// before, when it changed.
    pub(crate) fn loaded(&self, engine: &Engine, uid: Option<u32>, origin: String, mode_from: Option<Mode>) {
        self.name(engine);
        self.notice(engine, uid, What::PolicyLoaded { origin });
        if let Some(from) = mode_from {
            self.notice(engine, uid, What::ModeChanged { from });
        }
    }

    /// Periodic work from the main loop: exceptions expired or expiring, evicted flows.
    pub(crate) fn tick(&self, engine: &Engine, now: Now) {
        self.name(engine);
        let policy = engine.loaded().policy.clone();
        let due = self.expiry.lock().map(|mut w| w.check(&policy, now.wall)).unwrap_or_default();
        for what in due {
            self.notice(engine, None, what);
        }
        let Ok(mut last) = self.evictions.lock() else { return };
        if last.0.elapsed() >= EVICTIONS_EVERY {
            let evicted = engine.flow_stats().evicted;
            let n = evicted.saturating_sub(last.1);
            *last = (Instant::now(), evicted);
            if n > 0 {
                let l = engine.loaded();
                self.submitter.submit(&Record::flows_evicted(now.wall, l.policy.mode(), l.generation, n));
            }
        }
    }

    /// Closes and reopens the event file (SIGUSR1, after logrotate moved it).
    pub(crate) fn reopen(&self) {
        self.with(Alerter::reopen);
    }

    /// The counters now (zero after shutdown).
    pub(crate) fn stats(&self) -> AlertStats {
        self.with(|a| stats(&a.counters())).unwrap_or_default()
    }

    /// Delivers what is queued, with final summaries (the collectors get
    /// [`SHUTDOWN_WAIT`]), stops the alert threads; the final counters.
    pub(crate) fn shutdown(&self) -> Option<AlertStats> {
        let alerter = self.alerter.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        Some(stats(&alerter.shutdown(SHUTDOWN_WAIT)))
    }
}

/// The protocol's form of the alerter's counters.
fn stats(c: &AlertCounters) -> AlertStats {
    AlertStats {
        passed: c.passed,
        suppressed: c.suppressed,
        queue_dropped: c.queue_dropped,
        notices_dropped: c.notices_dropped,
        events: c.events,
        summaries: c.summaries,
        event_file_written: c.event_file_written,
        event_file_errors: c.event_file_errors,
        event_file_reopens: c.event_file_reopens,
        targets: c
            .targets
            .iter()
            .map(|t| AlertTargetStats {
                url: t.url.clone(),
                sent: t.sent,
                send_errors: t.send_errors,
                dropped: t.dropped,
                filtered: t.filtered,
                connects: t.connects,
                connect_failures: t.connect_failures,
                buffered: t.buffered,
            })
            .collect(),
    }
}

/// The mode named `name` (`"monitor"`).
pub(crate) fn mode_named(name: &str) -> Option<Mode> {
    Mode::ALL.into_iter().find(|m| m.as_str() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600 * 1_000_000_000;

    fn policy(expires: &str) -> Policy {
        sekisho_policy::load_str(&text(expires), "t.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn text(expires: &str) -> String {
        format!(
            r#"
[[zone]]
name = "mynumber"
kind = "mynumber"
prefixes = ["198.18.10.0/24"]
[[zone]]
name = "lgwan"
kind = "lgwan"
prefixes = ["198.18.20.0/24"]
[[service]]
name = "sftp"
proto = "tcp"
ports = [22]
app = "ssh"
[[exception]]
name = "juki-batch"
from = "198.18.10.5"
to = "198.18.20.30"
service = "sftp"
approval = "R8-情政-012"
expires = "{expires}"
"#
        )
    }

    fn kinds(due: &[What]) -> Vec<EventKind> {
        due.iter().map(What::kind).collect()
    }

    #[test]
    fn expiring_once_a_day_within_seven_days_then_expired_once() {
        let p = policy("2027-03-31T12:00:00+09:00");
        let expires = p.exceptions()[0].expires.unwrap().0;
        let mut w = ExpiryWatch::default();
        let at = |t: u64| Timestamp(t);
        assert!(w.check(&p, at(expires - 8 * DAY)).is_empty(), "8 days before: nothing yet");
        let due = w.check(&p, at(expires - 7 * DAY));
        assert_eq!(kinds(&due), [EventKind::ExceptionExpiring]);
        assert!(matches!(&due[0], What::ExceptionExpiring { exception, approval, expires: e }
            if exception == "juki-batch" && approval == "R8-情政-012" && e.0 == expires));
        assert!(w.check(&p, at(expires - 7 * DAY + 3600 * 1_000_000_000)).is_empty(), "not twice a day");
        assert_eq!(kinds(&w.check(&p, at(expires - 6 * DAY))), [EventKind::ExceptionExpiring]);
        assert_eq!(kinds(&w.check(&p, at(expires))), [EventKind::ExceptionExpired]);
        assert!(w.check(&p, at(expires + DAY)).is_empty(), "expired is said once");
        // The same exception in a reloaded policy is the same exception; renewed, it
        // is a new one.
        assert!(w.check(&policy("2027-03-31T12:00:00+09:00"), at(expires + DAY)).is_empty());
        let renewed = policy("2027-04-02T12:00:00+09:00");
        assert_eq!(kinds(&w.check(&renewed, at(expires + DAY))), [EventKind::ExceptionExpiring]);
        assert_eq!(w.seen.len(), 1, "the old date is forgotten");
    }

    /// The data plane's side allocates nothing, takes no lock and never waits — for
    /// alerts that are queued, suppressed or refused by a full queue — while the
    /// dispatcher and a sender thread run against a real (if silent) UDP collector.
    #[test]
    fn the_tap_allocates_nothing() {
        let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = format!("[[alert.target]]\nurl = \"udp://{}\"\n", collector.local_addr().unwrap());
        let text = format!("{}\n{target}", text("2027-03-31"));
        let policy = sekisho_policy::load_str(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let alerts = Alerts::start(&policy).unwrap();
        let tap = alerts.tap(Arc::new(EventRing::new()));
        let ingress = Ingress { port: sekisho_policy::PortId(0), side: Side::Inside };
        let verdict = |i: u32, reason: Reason| Verdict {
            action: sekisho_engine::Action::Drop,
            reason,
            monitored: false,
            packet: Some(sekisho_engine::PacketInfo {
                protocol: 6,
                src: std::net::Ipv4Addr::from(0xc612_1400 + (i & 0xff)).into(),
                dst: "203.0.113.9".parse().unwrap(),
                sport: 40000,
                dport: 443,
            }),
            finding: None,
            generation: 1,
        };
        let now = Now { mono: 1, wall: crate::wall_clock() };
        tap.dropped(now, ingress, &verdict(0, Reason::NoRule)); // warm-up
        let allocations = no_alloc::count(|| {
            for i in 0..20_000u32 {
                tap.dropped(now, ingress, &verdict(i, Reason::UnsanitizedCrossing));
                tap.dropped(now, ingress, &verdict(7, Reason::SpoofedSource));
            }
        });
        let c = alerts.shutdown().unwrap();
        assert_eq!(allocations, 0);
        assert!(c.passed > 0 && c.suppressed > 0, "{c:?}");
        assert_eq!(c.passed + c.suppressed + c.queue_dropped, 40_001, "every alert accounted for: {c:?}");
    }

    /// Flows evicted from a full table are reported with their count, to a real (UDP)
    /// collector.
    #[test]
    fn evicted_flows_are_reported_with_their_count() {
        use sekisho_testkit::{flags::SYN, tcp};
        let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        collector.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let text = format!(
            "[flow]\ncapacity = 8\n{}\n[[port]]\nname = \"lg\"\nzone = \"lgwan\"\ninside = \"lg-in\"\n\
             outside = \"lg-out\"\n[[port]]\nname = \"mn\"\nzone = \"mynumber\"\ninside = \"mn-in\"\n\
             outside = \"mn-out\"\n[[alert.target]]\nurl = \"udp://{}\"\n",
            text("2027-03-31"),
            collector.local_addr().unwrap()
        );
        let policy = sekisho_policy::load_str(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let alerts = Alerts::start(&policy).unwrap();
        let engine = Engine::new(policy);
        alerts.name(&engine);
        let now = Now { mono: 1, wall: crate::wall_clock() };
        let inside = Ingress { port: sekisho_policy::PortId(0), side: Side::Inside };
        for i in 0..40 {
            // Handshakes that never complete, within lgwan: embryonic flows, evictable.
            engine.process(
                now,
                inside,
                &tcp(&format!("198.18.20.{}", 10 + i), 40000, "198.18.20.200", 22, SYN, b""),
            );
        }
        let evicted = engine.flow_stats().evicted;
        assert!(evicted > 0, "nothing was evicted");
        alerts.tick(&engine, now);
        let mut buf = [0u8; 4096];
        let message = loop {
            let n = collector.recv(&mut buf).expect("no FLOW_EVICTED within 5 s");
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.contains(" FLOW_EVICTED ") {
                break m;
            }
        };
        assert!(message.contains(&format!("count=\"{evicted}\"")), "{message}");
        alerts.tick(&engine, now);
        let c = alerts.shutdown().unwrap();
        assert_eq!(c.passed, 1, "reported once per {EVICTIONS_EVERY:?}: {c:?}");
    }

    #[test]
    fn every_deny_code_has_a_kind_and_no_allow_has_one() {
        let tap_kinds = Reason::CODES.map(EventKind::for_reason);
        for (code, kind) in Reason::CODES.iter().zip(tap_kinds) {
            assert_eq!(kind.is_some(), code.starts_with("deny:"), "{code}");
            assert_ne!(kind, Some(EventKind::OtherDeny), "{code} has no MSGID of its own");
        }
    }
}

/// A counting global allocator for the test above (this test binary only): counts the
/// allocations of the calling thread while it measures.
#[cfg(test)]
#[allow(unsafe_code)]
mod no_alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Counting;

    thread_local! {
        static COUNTING: Cell<bool> = const { Cell::new(false) };
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    fn note() {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
    }

    // SAFETY: every call is forwarded unchanged to the system allocator; the
    // thread-locals are const-initialised `Cell`s, which never allocate.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note();
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note();
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// Allocations made by this thread during `f`.
    pub(super) fn count(f: impl FnOnce()) -> u64 {
        ALLOCATIONS.with(|a| a.set(0));
        COUNTING.with(|c| c.set(true));
        f();
        COUNTING.with(|c| c.set(false));
        ALLOCATIONS.with(Cell::get)
    }
}
