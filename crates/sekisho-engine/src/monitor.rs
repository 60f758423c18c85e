//! Internet-zone monitoring (③, 不正通信の監視機能の強化): port and host scans by one
//! source, SYN floods (half-open handshakes toward one destination) and ICMP floods, each
//! measured within a window (`[monitor]`), in two fixed tables of atomics (sources and
//! destinations, 4-way set associative, the oldest entry of a set replaced when it is
//! full) — bounded state, no lock, no allocation.
//!
//! Traffic is measured where it enters: on the `inside` of the port of an internet zone
//! (its sources are that zone's; each packet is counted once, at its first port).
//! Connection attempts (packets that find no flow: SYNs, new UDP, ICMP queries, stray
//! TCP) feed the scan measure; allowed SYNs and completed handshakes the SYN-flood measure;
//! ICMP messages the ICMP-flood measure. Distinct ports and hosts are counted in 256-bit sets with linear
//! counting.
//!
//! A measure that crosses its threshold is reported once per window and key as a
//! [`Detection`] in a bounded queue the data plane drains ([`crate::Engine::drain_detections`]);
//! the events past the threshold in that window are counted and reported as one summary
//! when the window ends (`suppressed`), at the next [`crate::Engine::sweep`]. With
//! `block_ttl_s` set, a detected scanner's new connections are refused for that long
//! (`deny:blocked-source`).

use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use crossbeam_queue::ArrayQueue;
use sekisho_flow::hash::KeyedState;
use sekisho_policy::{MonitorSettings, Policy, Port, ZoneKind};

use crate::Side;

/// Detections waiting to be drained, at most.
const QUEUE: usize = 1024;
/// Entries probed per key.
const WAYS: usize = 4;

/// What was detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DetectionKind {
    /// One source tried many destination ports within a window (`scan_ports`).
    PortScan,
    /// One source tried many destination hosts within a window (`scan_hosts`).
    HostScan,
    /// Many handshakes toward one destination were opened and not completed within a
    /// window (`syn_half_open`).
    SynFlood,
    /// Many ICMP messages toward one destination within a window (`icmp_flood`).
    IcmpFlood,
}

impl DetectionKind {
    /// A short stable name (`"port-scan"`, `"host-scan"`, `"syn-flood"`, `"icmp-flood"`).
    pub fn as_str(self) -> &'static str {
        match self {
            DetectionKind::PortScan => "port-scan",
            DetectionKind::HostScan => "host-scan",
            DetectionKind::SynFlood => "syn-flood",
            DetectionKind::IcmpFlood => "icmp-flood",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// One detection, for the alert pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detection {
    /// What.
    pub kind: DetectionKind,
    /// The scanning source, or the flooded destination.
    pub subject: IpAddr,
    /// The measure when reported: distinct ports or hosts, half-open handshakes, ICMP
    /// messages.
    pub count: u64,
    /// For the summary at the end of a window: the events past the threshold that were
    /// not reported one by one (0 in the report that crosses the threshold).
    pub suppressed: u64,
    /// True for the end-of-window summary.
    pub summary: bool,
    /// When the window began (monotonic clock, ns).
    pub window_start: u64,
    /// The source is now blocked for `block_ttl_s` (scans only, when enabled).
    pub blocked: bool,
}

/// The monitor's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonitorStats {
    /// Detections reported (summaries included).
    pub detections: u64,
    /// Detections lost because the queue was full.
    pub lost: u64,
    /// Table entries replaced while their window was still running.
    pub evicted: u64,
    /// New connections refused from blocked sources.
    pub blocked: u64,
}

/// One tracked source or destination.
#[derive(Default)]
struct Entry {
    /// A hash of the address (0: empty).
    key: AtomicU64,
    /// The address itself (IPv4 in the low bits; `family` says which).
    addr: [AtomicU64; 2],
    family: AtomicU8,
    /// The window index the counts belong to.
    window: AtomicU64,
    /// Source: the set of destination ports; destination: unused.
    ports: [AtomicU64; 4],
    /// Source: the set of destination hosts.
    hosts: [AtomicU64; 4],
    /// Destination: SYNs of new flows, completed handshakes, ICMP messages.
    syns: AtomicU32,
    established: AtomicU32,
    icmp: AtomicU32,
    /// Kinds reported in this window (bit per [`DetectionKind`]).
    reported: AtomicU8,
    /// Events past the threshold since the report, per kind.
    over: [AtomicU32; 4],
    /// Blocked until (monotonic ns; sources only).
    blocked_until: AtomicU64,
}

fn store_addr(e: &Entry, a: IpAddr) {
    let (hi, lo, fam) = match a {
        IpAddr::V4(v) => (0, u64::from(u32::from(v)), 4),
        IpAddr::V6(v) => {
            let b = u128::from(v);
            ((b >> 64) as u64, b as u64, 6)
        }
    };
    e.addr[0].store(hi, Relaxed);
    e.addr[1].store(lo, Relaxed);
    e.family.store(fam, Relaxed);
}

fn load_addr(e: &Entry) -> IpAddr {
    let (hi, lo) = (e.addr[0].load(Relaxed), e.addr[1].load(Relaxed));
    if e.family.load(Relaxed) == 6 {
        IpAddr::V6(((u128::from(hi) << 64) | u128::from(lo)).into())
    } else {
        IpAddr::V4((lo as u32).into())
    }
}

/// The number of distinct values a 256-bit set has seen (linear counting).
fn distinct(set: &[AtomicU64; 4]) -> u64 {
    let bits: u32 = set.iter().map(|w| w.load(Relaxed).count_ones()).sum();
    if bits >= 256 {
        return 1500;
    }
    (-256.0 * (1.0 - f64::from(bits) / 256.0).ln()).round() as u64
}

fn insert(set: &[AtomicU64; 4], h: u64) {
    let bit = (h & 0xff) as usize;
    set[bit / 64].fetch_or(1 << (bit % 64), Relaxed);
}

/// A fixed table of entries.
struct Table {
    entries: Box<[Entry]>,
    mask: usize,
}

impl Table {
    fn new(size: usize) -> Table {
        let n = size.max(WAYS).next_power_of_two();
        Table { entries: (0..n).map(|_| Entry::default()).collect(), mask: n - 1 }
    }

    /// The entry of `key` (`addr`), claimed if need be, and whether a running entry was
    /// replaced for it.
    fn entry(&self, key: u64, addr: IpAddr, window: u64) -> (&Entry, bool) {
        let set = (key as usize) & self.mask & !(WAYS - 1);
        let ways = &self.entries[set..set + WAYS];
        if let Some(e) = ways.iter().find(|e| e.key.load(Relaxed) == key) {
            return (e, false);
        }
        // An empty or stale way, else the one with the oldest window.
        let victim = ways
            .iter()
            .min_by_key(
                |e| if e.key.load(Relaxed) == 0 { 0 } else { e.window.load(Relaxed).saturating_add(1) },
            )
            .unwrap_or(&ways[0]);
        let old = victim.key.swap(key, Relaxed);
        let running = old != 0 && victim.window.load(Relaxed) == window;
        victim.window.store(u64::MAX, Relaxed);
        store_addr(victim, addr);
        victim.blocked_until.store(0, Relaxed);
        (victim, running)
    }
}

/// The monitor: settings, the two tables, the detection queue.
pub(crate) struct Monitor {
    settings: MonitorSettings,
    window_ns: u64,
    hasher: KeyedState,
    sources: Table,
    destinations: Table,
    queue: ArrayQueue<Detection>,
    detections: AtomicU64,
    lost: AtomicU64,
    evicted: AtomicU64,
    blocked: AtomicU64,
}

impl Monitor {
    pub(crate) fn new(settings: &MonitorSettings) -> Monitor {
        Monitor {
            settings: settings.clone(),
            window_ns: settings.window_s.max(1).saturating_mul(1_000_000_000),
            hasher: KeyedState::random(),
            sources: Table::new(settings.tracked),
            destinations: Table::new(settings.tracked),
            queue: ArrayQueue::new(QUEUE),
            detections: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
        }
    }

    fn hash<T: Hash>(&self, v: T) -> u64 {
        self.hasher.hash_one(v) | 1
    }

    /// Whether traffic arriving on `side` of `port` is measured: the inside of an internet
    /// zone's port.
    #[inline]
    pub(crate) fn watched(&self, policy: &Policy, port: &Port, side: Side) -> bool {
        self.settings.enabled
            && side == Side::Inside
            && policy.zone(port.zone).is_some_and(|z| z.kind == ZoneKind::Internet)
    }

    fn report(&self, d: Detection) {
        self.detections.fetch_add(1, Relaxed);
        if self.queue.push(d).is_err() {
            self.lost.fetch_add(1, Relaxed);
        }
    }

    /// Opens the window `window` on `e`, summarising the one before.
    fn roll(&self, e: &Entry, window: u64, destination: bool) {
        let old = e.window.load(Relaxed);
        if old == window || e.window.compare_exchange(old, window, Relaxed, Relaxed).is_err() {
            return;
        }
        let reported = e.reported.swap(0, Relaxed);
        for kind in [
            DetectionKind::PortScan,
            DetectionKind::HostScan,
            DetectionKind::SynFlood,
            DetectionKind::IcmpFlood,
        ] {
            let over = u64::from(e.over[kind as usize].swap(0, Relaxed));
            if reported & kind.bit() != 0 && old != u64::MAX {
                self.report(Detection {
                    kind,
                    subject: load_addr(e),
                    count: 0,
                    suppressed: over,
                    summary: true,
                    window_start: old.saturating_mul(self.window_ns),
                    blocked: false,
                });
            }
        }
        if destination {
            for c in [&e.syns, &e.established, &e.icmp] {
                c.store(0, Relaxed);
            }
        } else {
            for w in e.ports.iter().chain(&e.hosts) {
                w.store(0, Relaxed);
            }
        }
    }

    /// Reports `kind` on `e` when `value` reached `threshold`: once per window, the rest
    /// counted as suppressed. Returns true on the report.
    fn over(
        &self,
        e: &Entry,
        kind: DetectionKind,
        value: u64,
        threshold: u64,
        window: u64,
        block: bool,
    ) -> bool {
        if value < threshold {
            return false;
        }
        if e.reported.fetch_or(kind.bit(), Relaxed) & kind.bit() != 0 {
            e.over[kind as usize].fetch_add(1, Relaxed);
            return false;
        }
        self.report(Detection {
            kind,
            subject: load_addr(e),
            count: value,
            suppressed: 0,
            summary: false,
            window_start: window.saturating_mul(self.window_ns),
            blocked: block,
        });
        true
    }

    /// A packet from watched source `src` that finds no flow (an attempt to open one)
    /// toward `dst`, port `dport`. Returns true when `src` is blocked: refuse it.
    pub(crate) fn attempt(&self, now: u64, src: IpAddr, dst: IpAddr, dport: u16) -> bool {
        let window = now / self.window_ns;
        let key = self.hash(src);
        let (e, replaced) = self.sources.entry(key, src, window);
        if replaced {
            self.evicted.fetch_add(1, Relaxed);
        }
        if e.blocked_until.load(Relaxed) > now {
            self.blocked.fetch_add(1, Relaxed);
            return true;
        }
        self.roll(e, window, false);
        insert(&e.ports, self.hash(dport));
        insert(&e.hosts, self.hash(dst));
        let block = self.settings.block_ttl_s > 0;
        let mut detected = false;
        let s = &self.settings;
        detected |=
            self.over(e, DetectionKind::PortScan, distinct(&e.ports), u64::from(s.scan_ports), window, block);
        detected |=
            self.over(e, DetectionKind::HostScan, distinct(&e.hosts), u64::from(s.scan_hosts), window, block);
        if detected && block {
            e.blocked_until.store(now.saturating_add(s.block_ttl_s.saturating_mul(1_000_000_000)), Relaxed);
        }
        false
    }

    fn destination(&self, now: u64, dst: IpAddr) -> (&Entry, u64) {
        let window = now / self.window_ns;
        let (e, replaced) = self.destinations.entry(self.hash(dst), dst, window);
        if replaced {
            self.evicted.fetch_add(1, Relaxed);
        }
        self.roll(e, window, true);
        (e, window)
    }

    /// A new TCP flow from a watched source toward `dst` (its SYN was allowed).
    pub(crate) fn syn(&self, now: u64, dst: IpAddr) {
        let (e, window) = self.destination(now, dst);
        let syns = u64::from(e.syns.fetch_add(1, Relaxed)) + 1;
        let half_open = syns.saturating_sub(u64::from(e.established.load(Relaxed)));
        self.over(
            e,
            DetectionKind::SynFlood,
            half_open,
            u64::from(self.settings.syn_half_open),
            window,
            false,
        );
    }

    /// A TCP flow from a watched source toward `dst` completed its handshake.
    pub(crate) fn established(&self, now: u64, dst: IpAddr) {
        let (e, _) = self.destination(now, dst);
        e.established.fetch_add(1, Relaxed);
    }

    /// An ICMP message from a watched source toward `dst`.
    pub(crate) fn icmp(&self, now: u64, dst: IpAddr) {
        let (e, window) = self.destination(now, dst);
        let n = u64::from(e.icmp.fetch_add(1, Relaxed)) + 1;
        self.over(e, DetectionKind::IcmpFlood, n, u64::from(self.settings.icmp_flood), window, false);
    }

    /// Ends the windows that are over (their summaries are reported).
    pub(crate) fn sweep(&self, now: u64) {
        let window = now / self.window_ns;
        for (table, destination) in [(&self.sources, false), (&self.destinations, true)] {
            for e in table.entries.iter() {
                let w = e.window.load(Relaxed);
                if e.key.load(Relaxed) != 0 && w != window && w != u64::MAX && e.reported.load(Relaxed) != 0 {
                    self.roll(e, window, destination);
                }
            }
        }
    }

    /// Takes the waiting detections, oldest first.
    pub(crate) fn drain(&self, mut f: impl FnMut(Detection)) -> usize {
        let mut n = 0;
        while let Some(d) = self.queue.pop() {
            f(d);
            n += 1;
        }
        n
    }

    pub(crate) fn stats(&self) -> MonitorStats {
        MonitorStats {
            detections: self.detections.load(Relaxed),
            lost: self.lost.load(Relaxed),
            evicted: self.evicted.load(Relaxed),
            blocked: self.blocked.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> MonitorSettings {
        MonitorSettings {
            scan_ports: 20,
            scan_hosts: 20,
            syn_half_open: 50,
            icmp_flood: 100,
            ..Default::default()
        }
    }

    fn drain(m: &Monitor) -> Vec<Detection> {
        let mut v = Vec::new();
        m.drain(|d| v.push(d));
        v
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_port_scan_is_reported_once_per_window_then_summarised() {
        let m = Monitor::new(&settings());
        let (src, dst): (IpAddr, IpAddr) = ("203.0.113.66".parse().unwrap(), "198.18.40.10".parse().unwrap());
        for port in 1..=15u16 {
            m.attempt(SEC, src, dst, port);
        }
        assert!(drain(&m).is_empty(), "15 ports: below the threshold");
        for port in 16..=200u16 {
            assert!(!m.attempt(2 * SEC, src, dst, port), "blocking is off by default");
        }
        let d = drain(&m);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].kind, d[0].subject, d[0].summary), (DetectionKind::PortScan, src, false));
        assert!((20..=25).contains(&d[0].count), "{}", d[0].count);
        m.sweep(11 * SEC);
        let d = drain(&m);
        assert_eq!(d.len(), 1);
        assert!(d[0].summary && d[0].suppressed >= 170, "{d:?}");
        // Different hosts, one port each: a host scan.
        for h in 0..100u8 {
            m.attempt(12 * SEC, src, IpAddr::from([198, 18, 40, h]), 22);
        }
        assert_eq!(drain(&m).iter().map(|d| d.kind).collect::<Vec<_>>(), [DetectionKind::HostScan]);
    }

    #[test]
    fn syn_and_icmp_floods_per_destination() {
        let m = Monitor::new(&settings());
        let dst: IpAddr = "198.18.40.10".parse().unwrap();
        for i in 0..40 {
            m.syn(SEC, dst);
            if i % 2 == 0 {
                m.established(SEC, dst);
            }
        }
        assert!(drain(&m).is_empty(), "20 half-open");
        for _ in 0..100 {
            m.syn(SEC, dst);
        }
        let d = drain(&m);
        assert_eq!((d.len(), d[0].kind, d[0].subject, d[0].count), (1, DetectionKind::SynFlood, dst, 50));
        for _ in 0..150 {
            m.icmp(SEC, dst);
        }
        assert_eq!(
            drain(&m).iter().map(|d| (d.kind, d.count)).collect::<Vec<_>>(),
            [(DetectionKind::IcmpFlood, 100)]
        );
    }

    #[test]
    fn blocking_and_bounded_state() {
        let m = Monitor::new(&MonitorSettings { block_ttl_s: 60, tracked: 16, ..settings() });
        let src: IpAddr = "203.0.113.66".parse().unwrap();
        let dst: IpAddr = "198.18.40.10".parse().unwrap();
        let mut blocked_at = None;
        for port in 1..=100u16 {
            if m.attempt(SEC, src, dst, port) {
                blocked_at.get_or_insert(port);
            }
        }
        assert!(blocked_at.is_some_and(|p| p > 15), "{blocked_at:?}");
        assert!(drain(&m)[0].blocked);
        assert!(m.attempt(50 * SEC, src, dst, 1), "still blocked");
        assert!(!m.attempt(62 * SEC, src, dst, 1), "the block expired");
        // Many sources: the table stays at its size, the oldest are replaced.
        for i in 0..10_000u32 {
            m.attempt(70 * SEC + u64::from(i), IpAddr::from(i.to_be_bytes()), dst, 80);
        }
        assert_eq!(m.sources.entries.len(), 16);
        assert!(m.stats().evicted > 0);
    }
}
