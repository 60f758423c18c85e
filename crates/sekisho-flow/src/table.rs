//! The connection table: the generic [`BoundedMap`](crate::map::BoundedMap) keyed by
//! [`FlowKey`] with [`FlowEntry`] values, charged per origin (port and side on which a
//! flow's initiator arrives) and share (the initiator's zone kind, for the engine).

use crate::entry::{FlowEntry, Timeouts, SHARES};
use crate::key::FlowKey;
use crate::map::{BoundedMap, Full, MapStats, Pinned as MapPinned};

/// The table was out of room for the flow's origin and nothing could be evicted.
pub type TableFull = Full;

/// The table's counters.
pub type TableStats = MapStats;

/// The bounded, lock-free connection table.
pub struct FlowTable {
    map: BoundedMap<FlowKey, FlowEntry>,
}

/// A table pinned for use by the current thread.
pub struct Pinned<'t> {
    map: MapPinned<'t, FlowKey, FlowEntry>,
}

impl FlowTable {
    /// A table for at most `capacity` flows whose origins are numbered below `origins`
    /// (each share of an origin is guaranteed `capacity / (2 × origins × SHARES)` of them).
    pub fn new(capacity: usize, origins: usize, timeouts: Timeouts) -> Self {
        FlowTable { map: BoundedMap::new(capacity, origins.max(1) * SHARES, timeouts) }
    }

    /// Pins the table for this thread.
    pub fn pin(&self) -> Pinned<'_> {
        Pinned { map: self.map.pin() }
    }

    /// The idle timeouts in force.
    pub fn timeouts(&self) -> &Timeouts {
        self.map.ctx()
    }

    /// Removes every flow idle past its timeout at `now`; returns how many went.
    pub fn sweep(&self, now: u64) -> usize {
        self.map.sweep(now)
    }

    /// Calls `f` for every flow.
    pub fn for_each(&self, f: impl FnMut(&FlowKey, &FlowEntry)) {
        self.map.for_each(f)
    }

    /// The table's counters.
    pub fn stats(&self) -> TableStats {
        self.map.stats()
    }

    /// Flows charged to `origin` now, and how many of its new flows were refused (all
    /// shares together).
    pub fn origin_stats(&self, origin: usize) -> (usize, u64) {
        let buckets = origin * SHARES..(origin + 1) * SHARES;
        buckets.fold((0, 0), |(n, r), b| (n + self.map.bucket_entries(b), r + self.map.bucket_refused(b)))
    }
}

impl Pinned<'_> {
    /// The live flow for `key` at `now`; an expired one is removed and reported absent.
    #[inline]
    pub fn get(&self, key: &FlowKey, now: u64) -> Option<&FlowEntry> {
        self.map.get(key, now)
    }

    /// Inserts a new flow (an eviction candidate of its bucket while it is evictable).
    /// If another thread inserted the same key first, its entry is returned instead.
    pub fn insert(&self, key: FlowKey, entry: FlowEntry, now: u64) -> Result<&FlowEntry, TableFull> {
        let candidate = entry.state().is_evictable();
        self.map.insert(key, entry, now, candidate)
    }

    /// Offers the flow `key` for eviction (it just became closing or closed).
    pub fn offer_for_eviction(&self, key: FlowKey, entry: &FlowEntry) {
        self.map.candidate(key, entry.bucket());
    }

    /// Removes the flow for `key`, if any.
    pub fn remove(&self, key: &FlowKey) -> bool {
        self.map.remove(key)
    }
}
