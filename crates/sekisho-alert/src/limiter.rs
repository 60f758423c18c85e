//! Flood control: one token bucket per (event kind, source address), in a fixed table
//! of atomics. Allocation-free and lock-free.
//!
//! The bucket is GCRA (the "generic cell rate algorithm", a token bucket kept as one
//! number): each slot stores the *theoretical arrival time* `tat`. An event at `now`
//! passes when `max(tat, now) + interval <= now + burst × interval`, and then
//! `tat` becomes `max(tat, now) + interval` (one compare-and-swap). A suppressed
//! event only reads `tat` and adds one to the slot's `suppressed` counter, so a flood
//! costs a hash, one load and one `fetch_add`.
//!
//! The table has `slots_per_kind` slots for every [`EventKind`]: a slot is chosen by
//! a keyed hash (per-process random seed, so outsiders cannot aim at a slot) of the
//! source address, inside the block of the event's kind. **Sources that collide share
//! a bucket** — and its suppressed count — but only sources of the same kind: a flood
//! of one kind can never suppress alerts of another. The slot remembers the hash of
//! the last source it let through; when a suppressed event comes from a different
//! source the slot is marked `mixed`, and its summary names no source.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use foldhash::fast::RandomState;

use crate::kind::EventKind;

/// One bucket, on its own cache line (workers flooding different keys do not share).
#[repr(align(64))]
#[derive(Default)]
struct Slot {
    /// GCRA theoretical arrival time, ns.
    tat: AtomicU64,
    /// Events suppressed since the last summary.
    suppressed: AtomicU64,
    /// Hash of the last source let through.
    tag: AtomicU64,
    /// A suppressed event came from another source than `tag`.
    mixed: AtomicBool,
}

/// What the limiter decided about one event.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Passed; the slot index.
    Pass(u32),
    /// Suppressed (counted in the slot).
    Suppressed,
}

/// One slot's suppressed events, taken by [`Limiter::take_suppressed`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Taken {
    pub slot: u32,
    pub kind: EventKind,
    pub count: u64,
    pub mixed: bool,
}

pub(crate) struct Limiter {
    slots: Box<[Slot]>,
    mask: usize,
    shift: u32,
    interval_ns: u64,
    /// `burst × interval`: how far `tat` may run ahead of `now`.
    limit_ns: u64,
    hasher: RandomState,
    /// Suppressed events already reported in summaries.
    reported: AtomicU64,
}

impl Limiter {
    /// `slots_per_kind` is rounded up to a power of two (at least 1); one event per
    /// `interval_ns` on average, bursts of `burst` (at least 1).
    pub fn new(slots_per_kind: usize, interval_ns: u64, burst: u32) -> Limiter {
        let per_kind = slots_per_kind.max(1).next_power_of_two();
        let n = per_kind * EventKind::ALL.len();
        let interval_ns = interval_ns.max(1);
        Limiter {
            slots: (0..n).map(|_| Slot::default()).collect(),
            mask: per_kind - 1,
            shift: per_kind.trailing_zeros(),
            interval_ns,
            limit_ns: interval_ns.saturating_mul(u64::from(burst.max(1))),
            hasher: RandomState::default(),
            reported: AtomicU64::new(0),
        }
    }

    fn key_hash(&self, kind: EventKind, src: Option<IpAddr>) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u8(kind.index() as u8);
        match src {
            Some(IpAddr::V4(a)) => h.write_u32(a.to_bits()),
            Some(IpAddr::V6(a)) => h.write_u128(a.to_bits()),
            None => h.write_u8(0),
        }
        h.finish()
    }

    /// Decide on one event at `now_ns`. Lock-free, allocation-free.
    #[inline]
    pub fn admit(&self, kind: EventKind, src: Option<IpAddr>, now_ns: u64) -> Admit {
        let hash = self.key_hash(kind, src);
        let index = (kind.index() << self.shift) | (hash as usize & self.mask);
        let Some(slot) = self.slots.get(index) else {
            return Admit::Suppressed; // unreachable: the table has a block per kind
        };
        let mut tat = slot.tat.load(Relaxed);
        loop {
            let next = tat.max(now_ns).saturating_add(self.interval_ns);
            if next.saturating_sub(now_ns) > self.limit_ns {
                slot.suppressed.fetch_add(1, Relaxed);
                if slot.tag.load(Relaxed) != hash && !slot.mixed.load(Relaxed) {
                    slot.mixed.store(true, Relaxed);
                }
                return Admit::Suppressed;
            }
            match slot.tat.compare_exchange_weak(tat, next, Relaxed, Relaxed) {
                Ok(_) => {
                    if slot.tag.load(Relaxed) != hash {
                        slot.tag.store(hash, Relaxed);
                    }
                    return Admit::Pass(index as u32);
                }
                Err(actual) => tat = actual,
            }
        }
    }

    /// Take (and reset) every slot's suppressed count; calls `f` for each non-zero.
    pub fn take_suppressed(&self, mut f: impl FnMut(Taken)) {
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.suppressed.load(Relaxed) == 0 {
                continue;
            }
            let count = slot.suppressed.swap(0, Relaxed);
            let mixed = slot.mixed.swap(false, Relaxed);
            let kind = EventKind::ALL.get(i >> self.shift).copied().unwrap_or(EventKind::OtherDeny);
            if count > 0 {
                f(Taken { slot: i as u32, kind, count, mixed });
            }
        }
    }

    /// Note `n` suppressed events as reported in a summary.
    pub fn add_reported(&self, n: u64) {
        self.reported.fetch_add(n, Relaxed);
    }

    /// Suppressed events reported in summaries so far.
    pub fn reported(&self) -> u64 {
        self.reported.load(Relaxed)
    }

    /// Suppressed events not yet taken by a summary.
    pub fn pending(&self) -> u64 {
        self.slots.iter().map(|s| s.suppressed.load(Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn burst_then_rate() {
        let l = Limiter::new(16, S, 3);
        let k = EventKind::NoRule;
        let a = ip("203.0.113.9");
        let passed = (0..10).filter(|_| matches!(l.admit(k, a, 100 * S), Admit::Pass(_))).count();
        assert_eq!(passed, 3);
        assert_eq!(l.pending(), 7);
        // One more token per second.
        assert!(matches!(l.admit(k, a, 101 * S), Admit::Pass(_)));
        assert_eq!(l.admit(k, a, 101 * S), Admit::Suppressed);
        // A long pause refills the whole burst, not more.
        let passed = (0..10).filter(|_| matches!(l.admit(k, a, 1000 * S), Admit::Pass(_))).count();
        assert_eq!(passed, 3);
    }

    #[test]
    fn kinds_and_sources_are_separate() {
        let l = Limiter::new(1024, S, 1);
        assert!(matches!(l.admit(EventKind::NoRule, ip("203.0.113.9"), S), Admit::Pass(_)));
        assert_eq!(l.admit(EventKind::NoRule, ip("203.0.113.9"), S), Admit::Suppressed);
        assert!(matches!(l.admit(EventKind::MynumberIsolation, ip("203.0.113.9"), S), Admit::Pass(_)));
        assert!(matches!(l.admit(EventKind::NoRule, ip("203.0.113.10"), S), Admit::Pass(_)));
    }

    #[test]
    fn one_slot_per_kind_collides_and_is_marked_mixed() {
        let l = Limiter::new(1, S, 1);
        assert!(matches!(l.admit(EventKind::NoRule, ip("203.0.113.9"), S), Admit::Pass(_)));
        assert_eq!(l.admit(EventKind::NoRule, ip("203.0.113.9"), S), Admit::Suppressed);
        let mut taken = Vec::new();
        l.take_suppressed(|t| taken.push(t));
        assert_eq!(taken.len(), 1);
        assert_eq!((taken[0].kind, taken[0].count, taken[0].mixed), (EventKind::NoRule, 1, false));
        assert_eq!(l.admit(EventKind::NoRule, ip("2001:db8::1"), S), Admit::Suppressed);
        l.take_suppressed(|t| taken.push(t));
        assert!(taken[1].mixed);
        assert_eq!(l.pending(), 0);
    }
}
