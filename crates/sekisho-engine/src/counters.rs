//! Counters per reason code and per port side: relaxed atomics, read as snapshots.
//!
//! Each [`Worker`](crate::Worker) has a shard of its own, which only it writes (a load
//! and a store, no locked instruction, no cache line shared with another worker); the
//! engine's own shard serves [`Engine::process`](crate::Engine::process), which any thread
//! may call, with `fetch_add`. A snapshot sums the shards.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use sekisho_policy::Reason;

use crate::{Action, Ingress, Side, Verdict};

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
        }
    }

    /// Counts one frame. `exclusive`: the calling thread is this shard's only writer.
    #[inline]
    pub(crate) fn count(&self, ingress: Ingress, len: usize, v: &Verdict, exclusive: bool) {
        add(&self.by_reason[v.reason.index()], 1, exclusive);
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
