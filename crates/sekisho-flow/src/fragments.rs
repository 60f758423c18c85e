//! Fragments of allowed packets: each later fragment follows its datagram's parent
//! connection, looked up by a directional key, for a fixed reassembly time.

use std::net::IpAddr;

use crate::key::{Endpoint, FlowKey, Socket};
use crate::map::{BoundedMap, Eviction, MapStats, Slot};

/// One fragmented datagram, as its first fragment travelled: port, VLAN tags, protocol,
/// source → destination (directional) and identification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    key: FlowKey,
    forward: bool,
}

impl FragmentKey {
    /// The key of the datagram `id` from `src` to `dst`.
    #[inline]
    pub fn new(port: u16, vlan: u32, protocol: u8, src: IpAddr, dst: IpAddr, id: u32) -> FragmentKey {
        let (key, sender) = FlowKey::new(
            port,
            vlan,
            protocol,
            Socket { addr: src, port: (id >> 16) as u16 },
            Socket { addr: dst, port: id as u16 },
        );
        FragmentKey { key, forward: sender == Endpoint::Lo }
    }
}

/// What a first fragment left for the later ones.
#[derive(Debug)]
pub struct FragmentRecord {
    /// The connection the datagram belongs to.
    pub parent: FlowKey,
    /// The parent's endpoint that sent the datagram.
    pub sender: Endpoint,
    /// When the first fragment passed (monotonic clock, ns).
    pub created: u64,
    /// Where it arrived (the engine's `2 × port + side`).
    pub origin: u16,
}

impl Slot for FragmentRecord {
    /// The reassembly time, ns.
    type Ctx = u64;

    fn bucket(&self) -> usize {
        usize::from(self.origin)
    }

    /// Fixed from the first fragment: later fragments do not extend it.
    fn is_expired(&self, now: u64, lifetime: &u64) -> bool {
        now.saturating_sub(self.created) > *lifetime
    }

    fn eviction(&self, _: u64, _: &u64) -> Eviction {
        Eviction::Now
    }
}

/// The bounded table of fragmented datagrams in flight.
pub struct FragmentTable {
    map: BoundedMap<FragmentKey, FragmentRecord>,
}

impl FragmentTable {
    /// A table for at most `capacity` datagrams, each remembered `lifetime` ns after its
    /// first fragment; `origins` as for the flow table.
    pub fn new(capacity: usize, origins: usize, lifetime: u64) -> Self {
        FragmentTable { map: BoundedMap::new(capacity, origins, lifetime) }
    }

    /// Remembers a first fragment that passed. A full table (nothing to evict) only means
    /// that the datagram's later fragments will be dropped.
    pub fn remember(&self, key: FragmentKey, record: FragmentRecord, now: u64) {
        let _ = self.map.pin().insert(key, record, now, true);
    }

    /// Calls `f` with the record of `key`, if it is still within its reassembly time.
    #[inline]
    pub fn with<R>(&self, key: &FragmentKey, now: u64, f: impl FnOnce(&FragmentRecord) -> R) -> Option<R> {
        self.map.pin().get(key, now).map(f)
    }

    /// Removes records past their reassembly time.
    pub fn sweep(&self, now: u64) -> usize {
        self.map.sweep(now)
    }

    /// The table's counters.
    pub fn stats(&self) -> MapStats {
        self.map.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn keys_are_directional_and_records_do_not_outlive_their_time() {
        let a = FragmentKey::new(1, 0, 17, ip("198.18.20.5"), ip("198.18.40.53"), 77);
        let back = FragmentKey::new(1, 0, 17, ip("198.18.40.53"), ip("198.18.20.5"), 77);
        assert_ne!(a, back);
        let parent = FlowKey::new(
            1,
            0,
            17,
            Socket { addr: ip("198.18.20.5"), port: 5353 },
            Socket { addr: ip("198.18.40.53"), port: 53 },
        )
        .0;
        let t = FragmentTable::new(16, 2, 30);
        t.remember(a, FragmentRecord { parent, sender: Endpoint::Lo, created: 0, origin: 0 }, 0);
        assert_eq!(t.with(&a, 30, |r| r.parent), Some(parent));
        assert_eq!(t.with(&back, 1, |r| r.parent), None);
        assert_eq!(t.with(&a, 31, |r| r.parent), None, "30 ns after the first fragment, gone");
    }
}
