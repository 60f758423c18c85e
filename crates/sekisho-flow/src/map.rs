//! A bounded, lock-free map with per-bucket shares and eviction candidates: the generic
//! part of the flow table, with no knowledge of connections.
//!
//! - **Lookups** are lock-free (papaya) and hash with SipHash-1-3 under a random key
//!   drawn per table ([`KeyedState`]), so a remote sender cannot aim many keys at one
//!   probe sequence.
//! - **Hard capacity**: a global count, raised by compare-and-swap, never passes it.
//! - **Shares**: every value is charged to a *bucket* (the engine uses one per port and
//!   side on which a flow's initiator arrived). Each bucket is guaranteed
//!   `capacity / (2 × buckets)` entries; the other half of the table is shared. A bucket
//!   that has used its guarantee may take shared room only while that leaves every other
//!   bucket its unused guarantee. One flooding bucket therefore cannot starve another.
//! - **Eviction**: each bucket keeps a bounded ring of candidate keys (the caller pushes a
//!   key when its value becomes evictable: new and unanswered, closing, closed). When a
//!   bucket is out of room, an insertion pops candidates — first of its own bucket, then
//!   of the bucket furthest over its guarantee — and removes those whose value says
//!   [`Eviction::Now`]; a value that may become evictable later ([`Eviction::Later`])
//!   goes back into the ring. Values that say [`Eviction::Never`] (connections in use)
//!   are never removed to make room.
//!
//! Races between threads can let the shares overshoot by at most one entry per
//! concurrently inserting thread; the hard capacity never overshoots.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crossbeam_queue::ArrayQueue;
use papaya::{HashMap, HashMapRef, LocalGuard};

use crate::hash::KeyedState;

/// How many eviction candidates a bucket remembers, at most.
const CANDIDATES_MAX: usize = 1 << 12;
/// How many candidates one insertion examines per bucket before giving up.
const EVICTION_TRIES: usize = 8;

/// What the map needs to know about a value.
pub trait Slot: Send + Sync + 'static {
    /// Shared context for the predicates (e.g. the timeouts).
    type Ctx: Send + Sync;

    /// The bucket the value is charged to (taken modulo the number of buckets).
    fn bucket(&self) -> usize;

    /// True when the value has outlived its timeout at `now`: lookups treat it as absent
    /// and remove it.
    fn is_expired(&self, now: u64, ctx: &Self::Ctx) -> bool;

    /// Whether the value may be removed to make room for another at `now`.
    fn eviction(&self, now: u64, ctx: &Self::Ctx) -> Eviction;
}

/// Whether a value may be removed to make room for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// Now.
    Now,
    /// Not now, but it may become evictable while nothing touches it (its key stays a
    /// candidate).
    Later,
    /// Not unless it changes (its key stops being a candidate).
    Never,
}

/// The map was out of room and nothing could be evicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// The map's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapStats {
    /// Entries now.
    pub entries: usize,
    /// The hard bound.
    pub capacity: usize,
    /// Entries ever inserted.
    pub inserted: u64,
    /// Entries removed to make room.
    pub evicted: u64,
    /// Entries removed after their timeout.
    pub expired: u64,
    /// Insertions refused for want of room.
    pub refused: u64,
}

struct Bucket<K> {
    count: AtomicUsize,
    candidates: ArrayQueue<K>,
    refused: AtomicU64,
}

/// A concurrent map from `K` to `V` with a hard capacity, per-bucket shares and
/// eviction of candidates (see the module documentation).
pub struct BoundedMap<K, V: Slot> {
    map: HashMap<K, V, KeyedState>,
    capacity: usize,
    guaranteed: usize,
    count: AtomicUsize,
    buckets: Box<[Bucket<K>]>,
    ctx: V::Ctx,
    inserted: AtomicU64,
    evicted: AtomicU64,
    expired: AtomicU64,
    refused: AtomicU64,
}

type MapRef<'m, K, V> = HashMapRef<'m, K, V, KeyedState, LocalGuard<'m>>;

/// A map pinned for use by the current thread: lookups and insertions go through it.
/// Pinning is cheap; hold one for a packet or a batch of packets.
pub struct Pinned<'m, K, V: Slot> {
    owner: &'m BoundedMap<K, V>,
    map: MapRef<'m, K, V>,
}

impl<K, V> BoundedMap<K, V>
where
    K: Hash + Eq + Copy + Send + Sync + 'static,
    V: Slot,
{
    /// A map for at most `capacity` entries (at least 1) charged to `buckets` buckets (at
    /// least 1), pre-sized so that it never grows on the packet path.
    pub fn new(capacity: usize, buckets: usize, ctx: V::Ctx) -> Self {
        let capacity = capacity.max(1);
        let n = buckets.max(1);
        // Rings are allocated up front: a few thousand candidates per bucket keep a flood
        // evicting its own oldest entries without costing much per flow.
        let ring = (capacity / (8 * n)).clamp(16, CANDIDATES_MAX);
        BoundedMap {
            map: HashMap::builder().hasher(KeyedState::random()).capacity(capacity).build(),
            capacity,
            guaranteed: capacity / (2 * n),
            count: AtomicUsize::new(0),
            buckets: (0..n)
                .map(|_| Bucket {
                    count: AtomicUsize::new(0),
                    candidates: ArrayQueue::new(ring),
                    refused: AtomicU64::new(0),
                })
                .collect(),
            ctx,
            inserted: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Pins the map for this thread.
    pub fn pin(&self) -> Pinned<'_, K, V> {
        Pinned { owner: self, map: self.map.pin() }
    }

    /// The shared context.
    pub fn ctx(&self) -> &V::Ctx {
        &self.ctx
    }

    /// Entries each bucket is guaranteed.
    pub fn guaranteed(&self) -> usize {
        self.guaranteed
    }

    /// Entries charged to `bucket` now.
    pub fn bucket_entries(&self, bucket: usize) -> usize {
        self.bucket(bucket).count.load(Relaxed)
    }

    /// Insertions refused in `bucket`.
    pub fn bucket_refused(&self, bucket: usize) -> u64 {
        self.bucket(bucket).refused.load(Relaxed)
    }

    /// Removes every expired entry; returns how many went.
    pub fn sweep(&self, now: u64) -> usize {
        let map = self.map.pin();
        let mut removed = 0;
        for (key, value) in map.iter() {
            if value.is_expired(now, &self.ctx) && self.remove_if(&map, key, |v| v.is_expired(now, &self.ctx))
            {
                removed += 1;
            }
        }
        self.expired.fetch_add(removed as u64, Relaxed);
        removed
    }

    /// Calls `f` for every entry (a consistent view of each entry, not of the whole map).
    pub fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        for (k, v) in self.map.pin().iter() {
            f(k, v);
        }
    }

    /// The map's counters.
    pub fn stats(&self) -> MapStats {
        MapStats {
            entries: self.count.load(Relaxed),
            capacity: self.capacity,
            inserted: self.inserted.load(Relaxed),
            evicted: self.evicted.load(Relaxed),
            expired: self.expired.load(Relaxed),
            refused: self.refused.load(Relaxed),
        }
    }

    fn bucket(&self, b: usize) -> &Bucket<K> {
        &self.buckets[b % self.buckets.len()]
    }

    /// Removes `key` when `pred` holds for its value, and releases its room.
    fn remove_if(&self, map: &MapRef<'_, K, V>, key: &K, pred: impl Fn(&V) -> bool) -> bool {
        match map.remove_if(key, |_, v| pred(v)) {
            Ok(Some((_, v))) => {
                self.count.fetch_sub(1, Relaxed);
                self.bucket(v.bucket()).count.fetch_sub(1, Relaxed);
                true
            }
            _ => false,
        }
    }

    /// The guarantee `bucket` has not used yet, summed over every other bucket.
    fn others_unused(&self, bucket: usize) -> usize {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != bucket)
            .map(|(_, b)| self.guaranteed.saturating_sub(b.count.load(Relaxed)))
            .sum()
    }

    /// Takes room for one entry in `bucket`, or says why not.
    fn try_take(&self, bucket: usize) -> bool {
        let b = self.bucket(bucket);
        let within_guarantee = b.count.load(Relaxed) < self.guaranteed;
        let limit = if within_guarantee {
            self.capacity
        } else {
            self.capacity.saturating_sub(self.others_unused(bucket))
        };
        let mut n = self.count.load(Relaxed);
        loop {
            if n >= limit {
                return false;
            }
            match self.count.compare_exchange_weak(n, n + 1, Relaxed, Relaxed) {
                Ok(_) => {
                    b.count.fetch_add(1, Relaxed);
                    return true;
                }
                Err(actual) => n = actual,
            }
        }
    }

    /// Pops candidates of `victim` until one is evicted (at most [`EVICTION_TRIES`]).
    fn evict_from(&self, map: &MapRef<'_, K, V>, victim: usize, now: u64) -> bool {
        let ring = &self.bucket(victim).candidates;
        for _ in 0..EVICTION_TRIES {
            let Some(key) = ring.pop() else { return false };
            let ctx = &self.ctx;
            let removable = |v: &V| v.is_expired(now, ctx) || v.eviction(now, ctx) == Eviction::Now;
            if self.remove_if(map, &key, removable) {
                self.evicted.fetch_add(1, Relaxed);
                return true;
            }
            if map.get(&key).is_some_and(|v| v.eviction(now, ctx) == Eviction::Later) {
                let _ = ring.force_push(key);
            }
        }
        false
    }

    /// The bucket furthest over its guarantee, if any is over it.
    fn heaviest(&self) -> Option<usize> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, b)| (b.count.load(Relaxed).saturating_sub(self.guaranteed), i))
            .filter(|(over, _)| *over > 0)
            .max()
            .map(|(_, i)| i)
    }

    /// Reserves room for one entry of `bucket`, evicting if need be.
    fn reserve(&self, map: &MapRef<'_, K, V>, bucket: usize, now: u64) -> Result<(), Full> {
        if self.try_take(bucket) {
            return Ok(());
        }
        // Own candidates first, then those of the bucket furthest over its guarantee.
        let mut victims = [Some(bucket), self.heaviest().filter(|h| *h != bucket % self.buckets.len())];
        for victim in victims.iter_mut().filter_map(Option::take) {
            while self.evict_from(map, victim, now) {
                if self.try_take(bucket) {
                    return Ok(());
                }
            }
        }
        self.refused.fetch_add(1, Relaxed);
        self.bucket(bucket).refused.fetch_add(1, Relaxed);
        Err(Full)
    }
}

impl<'m, K, V> Pinned<'m, K, V>
where
    K: Hash + Eq + Copy + Send + Sync + 'static,
    V: Slot,
{
    /// The live entry for `key` at `now`; an expired one is removed and reported absent.
    #[inline]
    pub fn get(&self, key: &K, now: u64) -> Option<&V> {
        let value = self.map.get(key)?;
        if value.is_expired(now, &self.owner.ctx) {
            let owner = self.owner;
            if owner.remove_if(&self.map, key, |v| v.is_expired(now, &owner.ctx)) {
                owner.expired.fetch_add(1, Relaxed);
            }
            return None;
        }
        Some(value)
    }

    /// Inserts a new entry. If another thread inserted the same key first, its entry is
    /// returned instead. Fails only when the value's bucket is out of room and nothing
    /// can be evicted. When `candidate`, the key is also remembered as an eviction
    /// candidate of its bucket.
    pub fn insert(&self, key: K, value: V, now: u64, candidate: bool) -> Result<&V, Full> {
        let owner = self.owner;
        let bucket = value.bucket();
        owner.reserve(&self.map, bucket, now)?;
        match self.map.try_insert(key, value) {
            Ok(inserted) => {
                owner.inserted.fetch_add(1, Relaxed);
                if candidate {
                    self.candidate(key, bucket);
                }
                Ok(inserted)
            }
            Err(occupied) => {
                owner.count.fetch_sub(1, Relaxed);
                owner.bucket(bucket).count.fetch_sub(1, Relaxed);
                Ok(occupied.current)
            }
        }
    }

    /// Remembers `key` as an eviction candidate of `bucket` (the oldest candidate falls
    /// out when the ring is full; it then goes only by its timeout).
    pub fn candidate(&self, key: K, bucket: usize) {
        let _ = self.owner.bucket(bucket).candidates.force_push(key);
    }

    /// Removes the entry for `key`, if any.
    pub fn remove(&self, key: &K) -> bool {
        self.owner.remove_if(&self.map, key, |_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A value with a bucket, an "evictable" flag and an expiry time; with `later`, a value
    /// that is not evictable says [`Eviction::Later`].
    struct V {
        bucket: usize,
        evictable: AtomicBool,
        later: bool,
        expires: u64,
    }

    impl Slot for V {
        type Ctx = ();
        fn bucket(&self) -> usize {
            self.bucket
        }
        fn is_expired(&self, now: u64, _: &()) -> bool {
            now > self.expires
        }
        fn eviction(&self, _: u64, _: &()) -> Eviction {
            match (self.evictable.load(Relaxed), self.later) {
                (true, _) => Eviction::Now,
                (false, true) => Eviction::Later,
                (false, false) => Eviction::Never,
            }
        }
    }

    fn v(bucket: usize, evictable: bool) -> V {
        V { bucket, evictable: AtomicBool::new(evictable), later: false, expires: u64::MAX }
    }

    #[test]
    fn insert_get_remove_and_duplicates() {
        let m: BoundedMap<u32, V> = BoundedMap::new(10, 1, ());
        let p = m.pin();
        assert!(p.get(&1, 0).is_none());
        p.insert(1, v(0, false), 0, false).unwrap();
        let again = p.insert(1, v(0, true), 0, false).unwrap();
        assert!(!again.evictable.load(Relaxed), "the first entry stays");
        assert_eq!((m.stats().entries, m.bucket_entries(0)), (1, 1));
        assert!(p.remove(&1));
        assert_eq!((m.stats().entries, m.bucket_entries(0)), (0, 0));
    }

    #[test]
    fn expired_entries_go_on_lookup_and_sweep() {
        let m: BoundedMap<u32, V> = BoundedMap::new(10, 1, ());
        let p = m.pin();
        for k in 0..3 {
            p.insert(
                k,
                V { bucket: 0, evictable: AtomicBool::new(false), later: false, expires: 10 * u64::from(k) },
                0,
                false,
            )
            .unwrap();
        }
        assert!(p.get(&0, 1).is_none());
        assert_eq!(m.sweep(15), 1);
        assert!(p.get(&2, 15).is_some());
        assert_eq!((m.stats().entries, m.stats().expired), (1, 2));
    }

    #[test]
    fn a_full_bucket_evicts_its_own_candidates_never_the_others() {
        let m: BoundedMap<u32, V> = BoundedMap::new(8, 2, ());
        let p = m.pin();
        assert_eq!(m.guaranteed(), 2);
        // Bucket 1 holds two entries that may not be evicted.
        for k in 100..102 {
            p.insert(k, v(1, false), 0, true).unwrap();
        }
        // Bucket 0 floods with evictable entries: it gets the shared half and its own two.
        for k in 0..1000 {
            p.insert(k, v(0, true), 0, true).expect("an evictable entry can always make room");
        }
        assert_eq!(m.bucket_entries(0), 6);
        assert_eq!(m.bucket_entries(1), 2);
        assert!(p.get(&100, 0).is_some() && p.get(&101, 0).is_some());
        assert!(p.get(&999, 0).is_some(), "the newest flood entry is in");
    }

    #[test]
    fn a_flood_of_unevictable_entries_leaves_other_buckets_their_guarantee() {
        let m: BoundedMap<u32, V> = BoundedMap::new(100, 4, ());
        let p = m.pin();
        assert_eq!(m.guaranteed(), 12);
        let mut taken = 0;
        for k in 0..1000 {
            if p.insert(k, v(0, false), 0, true).is_ok() {
                taken += 1;
            }
        }
        assert_eq!(taken, 100 - 3 * 12, "bucket 0 takes everything but the others' guarantee");
        for b in 1..4 {
            for k in 0..12 {
                p.insert(10_000 * b + k, v(b as usize, false), 0, false)
                    .unwrap_or_else(|_| panic!("bucket {b} entry {k} refused"));
            }
            assert!(p.insert(10_000 * b + 99, v(b as usize, false), 0, false).is_err());
        }
        assert_eq!(m.stats().entries, 100);
        assert!(m.bucket_refused(0) > 0);
    }

    #[test]
    fn a_bucket_over_its_guarantee_gives_room_back_by_eviction() {
        let m: BoundedMap<u32, V> = BoundedMap::new(8, 2, ());
        let p = m.pin();
        for k in 0..6 {
            p.insert(k, v(0, true), 0, true).unwrap();
        }
        // Bucket 1 has its guarantee of 2: both fit without eviction.
        p.insert(100, v(1, false), 0, false).unwrap();
        p.insert(101, v(1, false), 0, false).unwrap();
        // A third one is beyond its guarantee, but bucket 0 is over its own: evict there.
        p.insert(102, v(1, false), 0, false).unwrap();
        assert_eq!((m.bucket_entries(0), m.bucket_entries(1)), (5, 3));
        assert_eq!(m.stats().evicted, 1);
    }

    #[test]
    fn a_candidate_that_may_become_evictable_stays_one() {
        let m: BoundedMap<u32, V> = BoundedMap::new(2, 1, ());
        let p = m.pin();
        for k in 0..2 {
            p.insert(
                k,
                V { bucket: 0, evictable: AtomicBool::new(false), later: true, expires: u64::MAX },
                0,
                true,
            )
            .unwrap();
        }
        assert!(p.insert(9, v(0, false), 0, false).is_err(), "nothing is evictable yet");
        p.get(&1, 0).unwrap().evictable.store(true, Relaxed);
        p.insert(9, v(0, false), 0, false).expect("the candidate kept in the ring makes room");
        assert!(p.get(&1, 0).is_none() && p.get(&0, 0).is_some());
    }

    #[test]
    fn concurrent_inserts_respect_capacity() {
        let m: BoundedMap<u32, V> = BoundedMap::new(1000, 2, ());
        std::thread::scope(|s| {
            for th in 0..2u32 {
                let m = &m;
                s.spawn(move || {
                    let p = m.pin();
                    for n in 0..5000 {
                        let _ = p.insert(th * 100_000 + n, v(th as usize, false), 0, false);
                    }
                });
            }
        });
        let mut seen = 0;
        m.for_each(|_, _| seen += 1);
        assert_eq!(seen, 1000);
        assert_eq!(m.stats().entries, 1000);
        assert_eq!(m.bucket_entries(0) + m.bucket_entries(1), 1000);
        assert_eq!(m.stats().refused, 9000);
    }
}
