//! Counters per reason code and per port side: relaxed atomics, read as snapshots.

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

pub(crate) struct Counters {
    by_reason: [AtomicU64; Reason::CODES.len()],
    ports: Box<[[SideAtomics; 2]]>,
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

    pub(crate) fn count(&self, ingress: Ingress, len: usize, v: &Verdict) {
        self.by_reason[v.reason.index()].fetch_add(1, Relaxed);
        let Some(port) = self.ports.get(usize::from(ingress.port.0)) else { return };
        let side = &port[ingress.side as usize];
        side.packets.fetch_add(1, Relaxed);
        side.bytes.fetch_add(len as u64, Relaxed);
        match v.action {
            Action::Forward => side.forwarded.fetch_add(1, Relaxed),
            Action::Drop => side.dropped.fetch_add(1, Relaxed),
        };
        if v.monitored {
            side.monitored.fetch_add(1, Relaxed);
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
