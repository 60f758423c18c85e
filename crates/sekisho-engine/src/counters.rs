//! Counters per reason code and per port side: relaxed atomics, read as snapshots.
//!
//! Each [`Worker`](crate::Worker) has a shard of its own, which only it writes (a load
//! and a store, no locked instruction, no cache line shared with another worker); the
//! engine's own shard serves [`Engine::process`](crate::Engine::process), which any thread
//! may call, with `fetch_add`. A snapshot sums the shards.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use sekisho_policy::{Method, Reason};

use crate::inspect::{Finding, FindingKind, Seen};
use crate::{Action, Ingress, Loaded, Side, Verdict};

/// Path legs counted per policy, at most (legs beyond are not counted).
pub(crate) const MAX_COUNTED_LEGS: usize = 1024;

/// One path leg's counters in one shard.
#[derive(Default)]
struct LegAtomics {
    flows: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
    mismatches: AtomicU64,
    not_sanitized: AtomicU64,
    identified: [AtomicU64; Seen::ALL.len()],
}

/// The counters of one path leg since its policy was loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LegStats {
    /// The path's name.
    pub path: String,
    /// The path's method.
    pub method: Option<Method>,
    /// The leg, numbered from 1.
    pub leg: u16,
    /// Connections opened.
    pub flows: u64,
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded.
    pub bytes: u64,
    /// Connections cut as another application (`deny:app-mismatch`).
    pub mismatches: u64,
    /// Connections cut as not sanitised (`deny:not-sanitized`).
    pub not_sanitized: u64,
    /// Connections by what inspection identified them as (the service's application when
    /// the check passed, what was seen when it did not), indexed like [`Seen::ALL`].
    pub identified: [u64; Seen::ALL.len()],
}

/// What happened on a leg.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LegEvent {
    Flow,
    /// A finding, and whether to count the application it names.
    Found(Finding, bool),
}

#[derive(Default)]
struct SideAtomics {
    packets: AtomicU64,
    bytes: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    monitored: AtomicU64,
}

/// One shard of counters.
pub(crate) struct Counters {
    by_reason: [AtomicU64; Reason::CODES.len()],
    ports: Box<[[SideAtomics; 2]]>,
    /// The policy load ([`Loaded::policy_id`]) the leg counters belong to.
    legs_of: AtomicU32,
    legs: Box<[LegAtomics]>,
}

/// Adds `n` to `a`: by `fetch_add` when other threads may write it too, by a load and a
/// store when this thread is its only writer.
#[inline(always)]
fn add(a: &AtomicU64, n: u64, exclusive: bool) {
    if exclusive {
        a.store(a.load(Relaxed).wrapping_add(n), Relaxed);
    } else {
        a.fetch_add(n, Relaxed);
    }
}

/// Frames that arrived on one interface and what became of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SideCounters {
    /// Frames received.
    pub packets: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Frames forwarded to the other interface.
    pub forwarded: u64,
    /// Frames dropped.
    pub dropped: u64,
    /// Frames forwarded in monitor mode that enforce mode would have dropped.
    pub monitored: u64,
}

/// The counters of one port, by the interface frames arrived on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames from the segment's hosts.
    pub inside: SideCounters,
    /// Frames from the core router.
    pub outside: SideCounters,
}

/// A copy of every counter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Frames per reason code, indexed like [`Reason::CODES`].
    pub by_reason: [u64; Reason::CODES.len()],
    /// Per port, indexed like the policy's ports.
    pub ports: Vec<PortCounters>,
}

impl CounterSnapshot {
    /// The count for a reason code such as `"deny:no-flow"` (0 for an unknown code).
    pub fn reason(&self, code: &str) -> u64 {
        Reason::CODES.iter().position(|c| *c == code).map_or(0, |i| self.by_reason[i])
    }
}

impl Counters {
    pub(crate) fn new(ports: usize) -> Self {
        Counters {
            by_reason: std::array::from_fn(|_| AtomicU64::new(0)),
            ports: (0..ports).map(|_| Default::default()).collect(),
            legs_of: AtomicU32::new(0),
            legs: (0..MAX_COUNTED_LEGS).map(|_| Default::default()).collect(),
        }
    }

    /// The counters of the leg `reason` names under `loaded`, reset first when they still
    /// belong to an earlier policy.
    #[inline]
    fn leg(&self, loaded: &Loaded, reason: &Reason) -> Option<&LegAtomics> {
        let &Reason::Path { path, leg } = reason else { return None };
        // The policy's legs are numbered from 1 within their path (0 wraps and misses).
        let first = *loaded.leg_base.get(path.index())? as usize;
        let l = self.legs.get(first + usize::from(leg).wrapping_sub(1))?;
        if self.legs_of.load(Relaxed) != loaded.policy_id {
            self.reset_legs(loaded.policy_id);
        }
        Some(l)
    }

    /// Zeroes the leg counters for the policy load `policy_id` (once per reload).
    #[cold]
    fn reset_legs(&self, policy_id: u32) {
        let tag = self.legs_of.load(Relaxed);
        if tag == policy_id || self.legs_of.compare_exchange(tag, policy_id, Relaxed, Relaxed).is_err() {
            return;
        }
        for l in self.legs.iter() {
            for a in [&l.flows, &l.packets, &l.bytes, &l.mismatches, &l.not_sanitized]
                .into_iter()
                .chain(&l.identified)
            {
                a.store(0, Relaxed);
            }
        }
    }

    /// Counts an event of the leg `reason` names.
    pub(crate) fn leg_event(&self, loaded: &Loaded, reason: Reason, event: LegEvent, exclusive: bool) {
        let Some(l) = self.leg(loaded, &reason) else { return };
        match event {
            LegEvent::Flow => add(&l.flows, 1, exclusive),
            LegEvent::Found(f, app) => {
                match f.kind {
                    FindingKind::Identified => {}
                    FindingKind::Mismatch => add(&l.mismatches, 1, exclusive),
                    FindingKind::NotSanitized => add(&l.not_sanitized, 1, exclusive),
                }
                if app {
                    add(&l.identified[f.seen.index()], 1, exclusive);
                }
            }
        }
    }

    /// Adds this shard's leg counters into `total` (one entry per leg of `loaded`).
    pub(crate) fn add_legs_to(&self, loaded: &Loaded, total: &mut [LegStats]) {
        if self.legs_of.load(Relaxed) != loaded.policy_id {
            return;
        }
        for (t, l) in total.iter_mut().zip(self.legs.iter()) {
            t.flows += l.flows.load(Relaxed);
            t.packets += l.packets.load(Relaxed);
            t.bytes += l.bytes.load(Relaxed);
            t.mismatches += l.mismatches.load(Relaxed);
            t.not_sanitized += l.not_sanitized.load(Relaxed);
            for (t, a) in t.identified.iter_mut().zip(&l.identified) {
                *t += a.load(Relaxed);
            }
        }
    }

    /// Counts one frame. `exclusive`: the calling thread is this shard's only writer.
    #[inline]
    pub(crate) fn count(&self, loaded: &Loaded, ingress: Ingress, len: usize, v: &Verdict, exclusive: bool) {
        add(&self.by_reason[v.reason.index()], 1, exclusive);
        if let Some(l) = self.leg(loaded, &v.reason) {
            add(&l.packets, 1, exclusive);
            add(&l.bytes, len as u64, exclusive);
        }
        let Some(port) = self.ports.get(usize::from(ingress.port.0)) else { return };
        let side = &port[ingress.side as usize];
        add(&side.packets, 1, exclusive);
        add(&side.bytes, len as u64, exclusive);
        match v.action {
            Action::Forward => add(&side.forwarded, 1, exclusive),
            Action::Drop => add(&side.dropped, 1, exclusive),
        }
        if v.monitored {
            add(&side.monitored, 1, exclusive);
        }
    }

    /// Adds this shard's counts into `total`.
    pub(crate) fn add_to(&self, total: &mut CounterSnapshot) {
        let s = self.snapshot();
        for (t, n) in total.by_reason.iter_mut().zip(s.by_reason) {
            *t += n;
        }
        if total.ports.len() < s.ports.len() {
            total.ports.resize(s.ports.len(), PortCounters::default());
        }
        for (t, p) in total.ports.iter_mut().zip(&s.ports) {
            for (t, p) in [(&mut t.inside, &p.inside), (&mut t.outside, &p.outside)] {
                t.packets += p.packets;
                t.bytes += p.bytes;
                t.forwarded += p.forwarded;
                t.dropped += p.dropped;
                t.monitored += p.monitored;
            }
        }
    }

    pub(crate) fn snapshot(&self) -> CounterSnapshot {
        let read = |s: &SideAtomics| SideCounters {
            packets: s.packets.load(Relaxed),
            bytes: s.bytes.load(Relaxed),
            forwarded: s.forwarded.load(Relaxed),
            dropped: s.dropped.load(Relaxed),
            monitored: s.monitored.load(Relaxed),
        };
        CounterSnapshot {
            by_reason: std::array::from_fn(|i| self.by_reason[i].load(Relaxed)),
            ports: self
                .ports
                .iter()
                .map(|p| PortCounters {
                    inside: read(&p[Side::Inside as usize]),
                    outside: read(&p[Side::Outside as usize]),
                })
                .collect(),
        }
    }
}
