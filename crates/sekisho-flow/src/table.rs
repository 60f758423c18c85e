//! The bounded, lock-free flow table.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crossbeam_queue::ArrayQueue;
use foldhash::fast::RandomState;
use papaya::{HashMap, HashMapRef, LocalGuard};

use crate::entry::{FlowEntry, Timeouts};
use crate::key::FlowKey;

/// How many recent embryonic flows are remembered as eviction candidates, at most.
const EVICTION_RING_MAX: usize = 1 << 16;
/// How many candidates one insertion examines before giving up.
const EVICTION_TRIES: usize = 8;

type Map = HashMap<FlowKey, FlowEntry, RandomState>;

/// A concurrent map from [`FlowKey`] to [`FlowEntry`] with a hard capacity.
///
/// Lookups are lock-free (papaya) and hash with a per-process random seed so that a
/// remote sender cannot aim at one bucket. When the table is full, a new flow may take
/// the place of an *embryonic* one (a TCP flow still in its handshake, or a flow that
/// has not been answered) — the oldest of the most recent `2^16` such flows first — but
/// never of an established one: then the insertion fails and the caller refuses the
/// flow (`deny:flow-table-full`).
pub struct FlowTable {
    map: Map,
    capacity: usize,
    count: AtomicUsize,
    embryonic: ArrayQueue<FlowKey>,
    timeouts: Timeouts,
    inserted: AtomicU64,
    evicted: AtomicU64,
    expired: AtomicU64,
    refused: AtomicU64,
}

/// The table's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Flows in the table now.
    pub flows: usize,
    /// The hard bound.
    pub capacity: usize,
    /// Flows ever inserted.
    pub inserted: u64,
    /// Embryonic flows evicted to make room.
    pub evicted: u64,
    /// Flows removed after their idle timeout.
    pub expired: u64,
    /// New flows refused because the table was full of established flows.
    pub refused: u64,
}

/// The table was full and nothing could be evicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

/// A table pinned for use by the current thread: lookups and insertions go through it.
/// Pinning is cheap; hold one for a packet or a batch of packets.
pub struct Pinned<'t> {
    table: &'t FlowTable,
    map: HashMapRef<'t, FlowKey, FlowEntry, RandomState, LocalGuard<'t>>,
}

impl FlowTable {
    /// A table for at most `capacity` flows (at least 1), pre-sized so that it never
    /// grows on the packet path.
    pub fn new(capacity: usize, timeouts: Timeouts) -> Self {
        let capacity = capacity.max(1);
        FlowTable {
            map: HashMap::builder().hasher(RandomState::default()).capacity(capacity).build(),
            capacity,
            count: AtomicUsize::new(0),
            embryonic: ArrayQueue::new(capacity.min(EVICTION_RING_MAX)),
            timeouts,
            inserted: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Pins the table for this thread.
    pub fn pin(&self) -> Pinned<'_> {
        Pinned { table: self, map: self.map.pin() }
    }

    /// The idle timeouts in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Removes every flow idle past its timeout at `now`; returns how many went.
    pub fn sweep(&self, now: u64) -> usize {
        let map = self.map.pin();
        let mut removed = 0;
        for (key, entry) in map.iter() {
            if entry.is_expired(now, &self.timeouts)
                && self.remove_if(&map, key, |e| e.is_expired(now, &self.timeouts))
            {
                removed += 1;
            }
        }
        self.expired.fetch_add(removed as u64, Relaxed);
        removed
    }

    /// Calls `f` for every flow (a consistent view of each entry, not of the whole table).
    pub fn for_each(&self, mut f: impl FnMut(&FlowKey, &FlowEntry)) {
        for (k, e) in self.map.pin().iter() {
            f(k, e);
        }
    }

    /// The table's counters.
    pub fn stats(&self) -> TableStats {
        TableStats {
            flows: self.count.load(Relaxed),
            capacity: self.capacity,
            inserted: self.inserted.load(Relaxed),
            evicted: self.evicted.load(Relaxed),
            expired: self.expired.load(Relaxed),
            refused: self.refused.load(Relaxed),
        }
    }

    fn remove_if(
        &self,
        map: &HashMapRef<'_, FlowKey, FlowEntry, RandomState, LocalGuard<'_>>,
        key: &FlowKey,
        pred: impl Fn(&FlowEntry) -> bool,
    ) -> bool {
        match map.remove_if(key, |_, e| pred(e)) {
            Ok(Some(_)) => {
                self.count.fetch_sub(1, Relaxed);
                true
            }
            _ => false,
        }
    }

    /// Reserves room for one more flow, evicting an embryonic one if need be.
    fn reserve(
        &self,
        map: &HashMapRef<'_, FlowKey, FlowEntry, RandomState, LocalGuard<'_>>,
        now: u64,
    ) -> Result<(), TableFull> {
        let mut tries = 0;
        loop {
            let n = self.count.load(Relaxed);
            if n < self.capacity {
                if self.count.compare_exchange_weak(n, n + 1, Relaxed, Relaxed).is_ok() {
                    return Ok(());
                }
                continue;
            }
            if tries == EVICTION_TRIES {
                self.refused.fetch_add(1, Relaxed);
                return Err(TableFull);
            }
            tries += 1;
            let Some(victim) = self.embryonic.pop() else {
                self.refused.fetch_add(1, Relaxed);
                return Err(TableFull);
            };
            let timeouts = &self.timeouts;
            if self.remove_if(map, &victim, |e| e.state().is_embryonic() || e.is_expired(now, timeouts)) {
                self.evicted.fetch_add(1, Relaxed);
            }
        }
    }
}

impl<'t> Pinned<'t> {
    /// The live flow for `key` at `now`. An entry idle past its timeout is removed and
    /// reported as absent.
    #[inline]
    pub fn get(&self, key: &FlowKey, now: u64) -> Option<&FlowEntry> {
        let entry = self.map.get(key)?;
        if entry.is_expired(now, &self.table.timeouts) {
            let timeouts = &self.table.timeouts;
            if self.table.remove_if(&self.map, key, |e| e.is_expired(now, timeouts)) {
                self.table.expired.fetch_add(1, Relaxed);
            }
            return None;
        }
        Some(entry)
    }

    /// Inserts a new flow. If another thread inserted the same key first, its entry is
    /// returned instead. Fails only when the table is full and nothing can be evicted.
    pub fn insert(&self, key: FlowKey, entry: FlowEntry, now: u64) -> Result<&FlowEntry, TableFull> {
        let table = self.table;
        table.reserve(&self.map, now)?;
        let embryonic = entry.state().is_embryonic();
        match self.map.try_insert(key, entry) {
            Ok(inserted) => {
                table.inserted.fetch_add(1, Relaxed);
                if embryonic {
                    // The ring keeps the most recent embryonic flows; the oldest falls out.
                    let _ = table.embryonic.force_push(key);
                }
                Ok(inserted)
            }
            Err(occupied) => {
                table.count.fetch_sub(1, Relaxed);
                Ok(occupied.current)
            }
        }
    }

    /// Removes the flow for `key`, if any.
    pub fn remove(&self, key: &FlowKey) -> bool {
        self.table.remove_if(&self.map, key, |_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{tcp_flags::*, CachedDecision};
    use crate::key::{Endpoint, Socket};
    use std::net::{IpAddr, Ipv4Addr};

    const D: CachedDecision = CachedDecision { verdict: 1, generation: 1 };
    const S: u64 = 1_000_000_000;

    fn key(n: u32, proto: u8) -> FlowKey {
        let a = Socket { addr: IpAddr::V4(Ipv4Addr::from(0xC612_1400 + n)), port: 40000 };
        let b = Socket { addr: IpAddr::V4(Ipv4Addr::new(198, 18, 40, 10)), port: 25 };
        FlowKey::new(0, 0, proto, a, b).0
    }

    fn tcp(now: u64) -> FlowEntry {
        FlowEntry::new(now, 6, Endpoint::Lo, D, u64::MAX)
    }

    fn establish(e: &FlowEntry, now: u64) {
        e.observe(now, Endpoint::Hi, 60, SYN | ACK);
        e.observe(now, Endpoint::Lo, 52, ACK);
    }

    #[test]
    fn insert_get_remove() {
        let t = FlowTable::new(10, Timeouts::default());
        let p = t.pin();
        assert!(p.get(&key(1, 6), 0).is_none());
        p.insert(key(1, 6), tcp(0), 0).unwrap();
        assert!(p.get(&key(1, 6), 0).is_some());
        assert_eq!(t.stats().flows, 1);
        assert!(p.remove(&key(1, 6)));
        assert_eq!(t.stats().flows, 0);
    }

    #[test]
    fn duplicate_insert_returns_the_first_entry() {
        let t = FlowTable::new(10, Timeouts::default());
        let p = t.pin();
        p.insert(key(1, 17), FlowEntry::new(0, 17, Endpoint::Lo, D, 5), 0).unwrap();
        let e = p.insert(key(1, 17), FlowEntry::new(0, 17, Endpoint::Hi, D, 9), 0).unwrap();
        assert_eq!(e.initiator(), Endpoint::Lo);
        assert_eq!(t.stats().flows, 1);
    }

    #[test]
    fn expired_flows_disappear_on_lookup_and_sweep() {
        let t = FlowTable::new(10, Timeouts::default());
        let p = t.pin();
        p.insert(key(1, 6), tcp(0), 0).unwrap();
        p.insert(key(2, 17), FlowEntry::new(0, 17, Endpoint::Lo, D, u64::MAX), 0).unwrap();
        let e = p.insert(key(3, 6), tcp(0), 0).unwrap();
        establish(e, 0);
        assert!(p.get(&key(1, 6), 31 * S).is_none(), "syn timeout is 30 s");
        assert_eq!(t.sweep(61 * S), 1, "udp timeout is 60 s; the established flow stays");
        assert!(p.get(&key(3, 6), 61 * S).is_some());
        let s = t.stats();
        assert_eq!((s.flows, s.expired), (1, 2));
    }

    #[test]
    fn full_table_evicts_embryonic_never_established() {
        let t = FlowTable::new(4, Timeouts::default());
        let p = t.pin();
        for n in 0..4 {
            let e = p.insert(key(n, 6), tcp(0), 0).unwrap();
            if n < 3 {
                establish(e, 0);
            }
        }
        // Flow 3 is the only embryonic one: it makes room for flow 10.
        p.insert(key(10, 6), tcp(1), 1).unwrap();
        assert!(p.get(&key(3, 6), 1).is_none());
        establish(p.get(&key(10, 6), 1).unwrap(), 1);
        // Now every flow is established: the next one is refused.
        assert_eq!(p.insert(key(11, 6), tcp(2), 2).unwrap_err(), TableFull);
        for n in 0..3 {
            assert!(p.get(&key(n, 6), 2).is_some(), "established flow {n} kept");
        }
        let s = t.stats();
        assert_eq!((s.flows, s.evicted, s.refused), (4, 1, 1));
    }

    #[test]
    fn syn_flood_keeps_turning_over_embryonic_flows() {
        let t = FlowTable::new(100, Timeouts::default());
        let p = t.pin();
        let e = p.insert(key(0, 6), tcp(0), 0).unwrap();
        establish(e, 0);
        for n in 1..10_000 {
            p.insert(key(n, 6), tcp(0), 0).expect("an embryonic flow can always be evicted");
        }
        assert!(p.get(&key(0, 6), 0).is_some());
        assert_eq!(t.stats().flows, 100);
    }

    #[test]
    fn concurrent_inserts_respect_capacity() {
        let t = FlowTable::new(1000, Timeouts::default());
        std::thread::scope(|s| {
            for th in 0..2u32 {
                let t = &t;
                s.spawn(move || {
                    let p = t.pin();
                    for n in 0..5000 {
                        if let Ok(e) = p.insert(key(th * 100_000 + n, 6), tcp(0), 0) {
                            establish(e, 0);
                        }
                    }
                });
            }
        });
        let mut seen = 0;
        t.for_each(|_, _| seen += 1);
        assert_eq!(seen, 1000);
        assert_eq!(t.stats().flows, 1000);
        assert_eq!(t.stats().refused, 9000);
    }
}
