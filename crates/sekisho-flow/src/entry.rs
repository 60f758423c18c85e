//! One connection's state: atomics only, so that the per-packet path updates it with
//! relaxed stores and no lock.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

use crate::key::Endpoint;
use crate::map::{Eviction, Slot};
use crate::tcp::{Segment, Step, Tracker};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// How many shares each origin's flows are split into (by [`NewFlow::share`]): the table
/// has `origins × SHARES` buckets.
pub const SHARES: usize = 8;

/// A flow that carried at most this many packets in all (a handshake and one more)…
const QUIET_PACKETS: u64 = 4;
/// …and has been idle this long may be evicted whatever its state: a completed handshake
/// costs a sender nothing, so it must not hold room for an hour.
const QUIET_IDLE: u64 = 10 * NANOS_PER_SEC;

/// Idle timeouts per protocol and TCP state, in nanoseconds of the monotonic clock (the
/// `[flow]` section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// A TCP flow that has not completed its handshake.
    pub tcp_syn: u64,
    /// An established TCP flow.
    pub tcp_established: u64,
    /// A TCP flow after FIN or RST.
    pub tcp_closing: u64,
    /// UDP and every protocol without its own timeout.
    pub udp: u64,
    /// ICMP and ICMPv6.
    pub icmp: u64,
}

impl Timeouts {
    /// Builds timeouts from whole seconds, as the configuration gives them.
    pub fn from_secs(tcp_syn: u64, tcp_established: u64, tcp_closing: u64, udp: u64, icmp: u64) -> Self {
        let ns = |s: u64| s.saturating_mul(NANOS_PER_SEC);
        Timeouts {
            tcp_syn: ns(tcp_syn),
            tcp_established: ns(tcp_established),
            tcp_closing: ns(tcp_closing),
            udp: ns(udp),
            icmp: ns(icmp),
        }
    }
}

impl Default for Timeouts {
    /// The defaults of the `[flow]` section.
    fn default() -> Self {
        Timeouts::from_secs(30, 3600, 30, 60, 10)
    }
}

/// The lifecycle state of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FlowState {
    /// Not TCP; only the initiator has sent so far.
    Unreplied = 0,
    /// Not TCP; both endpoints have sent.
    Replied = 1,
    /// TCP; the initiator's SYN has been seen.
    SynSent = 2,
    /// TCP; the responder's SYN+ACK (acknowledging the SYN) has been seen.
    SynReceived = 3,
    /// TCP; the handshake completed with the exact acknowledgements.
    Established = 4,
    /// TCP; one end has sent FIN.
    Closing = 5,
    /// TCP; an exact RST has been seen, or both ends' FINs.
    Closed = 6,
}

impl FlowState {
    #[inline]
    fn from_u8(v: u8) -> FlowState {
        match v {
            0 => FlowState::Unreplied,
            1 => FlowState::Replied,
            2 => FlowState::SynSent,
            3 => FlowState::SynReceived,
            4 => FlowState::Established,
            5 => FlowState::Closing,
            _ => FlowState::Closed,
        }
    }

    /// True while the flow has not been answered.
    #[inline]
    pub fn is_embryonic(self) -> bool {
        matches!(self, FlowState::Unreplied | FlowState::SynSent | FlowState::SynReceived)
    }

    /// True when the flow may be evicted to make room: not answered yet, closing, or
    /// closed. Established TCP and replied flows never are.
    #[inline]
    pub fn is_evictable(self) -> bool {
        !matches!(self, FlowState::Replied | FlowState::Established)
    }

    /// The short name used in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowState::Unreplied => "unreplied",
            FlowState::Replied => "replied",
            FlowState::SynSent => "syn-sent",
            FlowState::SynReceived => "syn-received",
            FlowState::Established => "established",
            FlowState::Closing => "closing",
            FlowState::Closed => "closed",
        }
    }
}

/// TCP flag bits as they appear in the header.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u16 = 0x01;
    /// SYN.
    pub const SYN: u16 = 0x02;
    /// RST.
    pub const RST: u16 = 0x04;
    /// ACK.
    pub const ACK: u16 = 0x10;
}

const IPPROTO_TCP: u8 = 6;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

/// The decision cached on a flow: an opaque verdict word chosen by the engine and the
/// policy generation that produced it. Both live in one atomic word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachedDecision {
    /// The engine's encoding of the verdict.
    pub verdict: u32,
    /// The policy generation the verdict was computed under.
    pub generation: u32,
}

/// What [`FlowEntry::observe`] made of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// Accounted; `now_evictable` when this packet made the flow closing or closed (the
    /// caller offers it for eviction then).
    Accepted {
        /// The flow just became evictable.
        now_evictable: bool,
        /// This packet completed the TCP handshake.
        now_established: bool,
    },
    /// A TCP segment outside the tracked window: nothing was changed.
    OutOfWindow,
}

/// What a new flow starts with (see [`FlowEntry::new`]).
#[derive(Clone, Copy, Debug)]
pub struct NewFlow<'s> {
    /// IP protocol number.
    pub protocol: u8,
    /// The endpoint that opened the flow.
    pub initiator: Endpoint,
    /// Where the initiator's packets arrive: the engine uses `2 × port + side`.
    pub origin: u16,
    /// Which share of its origin the flow is charged to (below [`SHARES`]; the engine
    /// uses the initiator's zone kind), so that initiators of one kind cannot fill the
    /// room of another arriving at the same place.
    pub share: u8,
    /// An immutable byte the engine classifies the flow by (the tunnel it carries).
    pub class: u8,
    /// The first decision.
    pub decision: CachedDecision,
    /// For TCP, the initiator's SYN.
    pub syn: Option<&'s Segment>,
}

/// One flow. Every mutable field is an atomic: lookups share the entry between threads.
#[derive(Debug)]
pub struct FlowEntry {
    initiator: Endpoint,
    protocol: u8,
    class: u8,
    share: u8,
    origin: u16,
    state: AtomicU8,
    inspect: AtomicU8,
    decision: AtomicU64,
    created: u64,
    last_seen: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
    /// TCP flows only (the tracker is kept inline for every flow: 96 bytes an entry).
    tcp: Tracker,
}

/// Counters and state of a flow, read out for listings and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSnapshot {
    /// Who opened the flow.
    pub initiator: Endpoint,
    /// Where the initiator's packets arrive (see [`FlowEntry::origin`]).
    pub origin: u16,
    /// The lifecycle state.
    pub state: FlowState,
    /// The cached decision.
    pub decision: CachedDecision,
    /// When the flow was created (monotonic clock, ns).
    pub created: u64,
    /// When the last accepted packet was seen (monotonic clock, ns).
    pub last_seen: u64,
    /// Packets in both directions.
    pub packets: u64,
    /// Bytes in both directions.
    pub bytes: u64,
}

impl FlowEntry {
    /// A new flow at `now` (monotonic clock). TCP flows start in
    /// [`FlowState::SynSent`] with the initiator's SYN tracked; others in
    /// [`FlowState::Unreplied`].
    pub fn new(now: u64, f: NewFlow<'_>) -> Self {
        let tcp = f.protocol == IPPROTO_TCP;
        FlowEntry {
            initiator: f.initiator,
            protocol: f.protocol,
            class: f.class,
            share: f.share % SHARES as u8,
            origin: f.origin,
            state: AtomicU8::new(if tcp { FlowState::SynSent } else { FlowState::Unreplied } as u8),
            inspect: AtomicU8::new(0),
            decision: AtomicU64::new(pack(f.decision)),
            created: now,
            last_seen: AtomicU64::new(now),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            tcp: if tcp { Tracker::new(&f.syn.copied().unwrap_or_default()) } else { Tracker::default() },
        }
    }

    /// The engine's classification byte, fixed at creation.
    #[inline]
    pub fn class(&self) -> u8 {
        self.class
    }

    /// The endpoint that opened the flow.
    #[inline]
    pub fn initiator(&self) -> Endpoint {
        self.initiator
    }

    /// Where the initiator's packets arrive (the engine's `2 × port + side`).
    #[inline]
    pub fn origin(&self) -> u16 {
        self.origin
    }

    /// The table bucket the flow is charged to: its origin's share.
    #[inline]
    pub fn bucket(&self) -> usize {
        usize::from(self.origin) * SHARES + usize::from(self.share)
    }

    /// The current lifecycle state.
    #[inline]
    pub fn state(&self) -> FlowState {
        FlowState::from_u8(self.state.load(Relaxed))
    }

    /// The cached decision.
    #[inline]
    pub fn decision(&self) -> CachedDecision {
        unpack(self.decision.load(Relaxed))
    }

    /// Caches `d` unless the flow already holds a decision of a later generation (one
    /// compare-and-swap on the single decision word: concurrent re-decisions cannot leave
    /// an older verdict in place of a newer one). Returns the decision in force after.
    pub fn update_decision(&self, d: CachedDecision) -> CachedDecision {
        let new = pack(d);
        match self
            .decision
            .fetch_update(Relaxed, Relaxed, |cur| (unpack(cur).generation <= d.generation).then_some(new))
        {
            Ok(_) => d,
            Err(cur) => unpack(cur),
        }
    }

    /// A small state word the engine uses for application-protocol inspection.
    #[inline]
    pub fn inspect_state(&self) -> u8 {
        self.inspect.load(Relaxed)
    }

    /// Sets the inspection state word.
    pub fn set_inspect_state(&self, v: u8) {
        self.inspect.store(v, Relaxed);
    }

    /// The TCP sequence tracker (TCP flows only).
    pub fn tcp(&self) -> Option<&Tracker> {
        (self.protocol == IPPROTO_TCP).then_some(&self.tcp)
    }

    /// Accounts one packet of `len` bytes at `now`, sent by the initiator
    /// (`from_initiator`) or the responder. For TCP, `seg` is checked against the
    /// tracked windows first: a segment outside them changes nothing, not even the idle
    /// timer.
    #[inline]
    pub fn observe(&self, now: u64, from_initiator: bool, len: usize, seg: Option<&Segment>) -> Observed {
        let current = self.state();
        let next = match (self.tcp(), seg) {
            (Some(t), Some(seg)) => match t.step(current, from_initiator, seg) {
                Step::Accept(next) => next,
                Step::OutOfWindow => return Observed::OutOfWindow,
            },
            (Some(_), None) => return Observed::OutOfWindow,
            (None, _) if !from_initiator && current == FlowState::Unreplied => FlowState::Replied,
            (None, _) => current,
        };
        self.last_seen.store(now, Relaxed);
        self.packets.fetch_add(1, Relaxed);
        self.bytes.fetch_add(len as u64, Relaxed);
        if next == current {
            return Observed::Accepted { now_evictable: false, now_established: false };
        }
        // A lost race means another packet moved the state first; both results are states
        // the flow really passed through, so the loser does not retry.
        let won = self.state.compare_exchange(current as u8, next as u8, Relaxed, Relaxed).is_ok();
        Observed::Accepted {
            now_evictable: won && next.is_evictable() && !current.is_evictable(),
            now_established: won && next == FlowState::Established,
        }
    }

    /// True when the flow has been idle longer than its state allows at `now`.
    #[inline]
    pub fn is_expired(&self, now: u64, timeouts: &Timeouts) -> bool {
        let idle = now.saturating_sub(self.last_seen.load(Relaxed));
        idle > self.timeout(timeouts)
    }

    #[inline]
    fn timeout(&self, t: &Timeouts) -> u64 {
        match self.protocol {
            IPPROTO_TCP => match self.state() {
                FlowState::Established => t.tcp_established,
                FlowState::Closing | FlowState::Closed => t.tcp_closing,
                _ => t.tcp_syn,
            },
            IPPROTO_ICMP | IPPROTO_ICMPV6 => t.icmp,
            _ => t.udp,
        }
    }

    /// Reads the flow's counters and state.
    pub fn snapshot(&self) -> FlowSnapshot {
        FlowSnapshot {
            initiator: self.initiator,
            origin: self.origin,
            state: self.state(),
            decision: self.decision(),
            created: self.created,
            last_seen: self.last_seen.load(Relaxed),
            packets: self.packets.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
        }
    }
}

impl Slot for FlowEntry {
    type Ctx = Timeouts;

    fn bucket(&self) -> usize {
        FlowEntry::bucket(self)
    }

    fn is_expired(&self, now: u64, t: &Timeouts) -> bool {
        FlowEntry::is_expired(self, now, t)
    }

    fn eviction(&self, now: u64, _: &Timeouts) -> Eviction {
        if self.state().is_evictable() {
            return Eviction::Now;
        }
        if self.packets.load(Relaxed) > QUIET_PACKETS {
            return Eviction::Never;
        }
        let idle = now.saturating_sub(self.last_seen.load(Relaxed));
        if idle >= QUIET_IDLE {
            Eviction::Now
        } else {
            Eviction::Later
        }
    }
}

#[inline]
fn pack(d: CachedDecision) -> u64 {
    (u64::from(d.generation) << 32) | u64::from(d.verdict)
}

#[inline]
fn unpack(v: u64) -> CachedDecision {
    CachedDecision { verdict: v as u32, generation: (v >> 32) as u32 }
}

#[cfg(test)]
mod tests {
    use super::tcp_flags::*;
    use super::*;

    const D: CachedDecision = CachedDecision { verdict: 7, generation: 3 };

    fn seg(flags: u16, seq: u32, ack: u32) -> Segment {
        Segment { flags, seq, ack, window: 1000, wscale: None, len: 0 }
    }

    fn flow(now: u64, protocol: u8, initiator: Endpoint, origin: u16, syn: Option<&Segment>) -> FlowEntry {
        FlowEntry::new(now, NewFlow { protocol, initiator, origin, share: 0, class: 0, decision: D, syn })
    }

    fn tcp_flow(now: u64) -> FlowEntry {
        flow(now, 6, Endpoint::Lo, 0, Some(&seg(SYN, 100, 0)))
    }

    fn establish(e: &FlowEntry, now: u64) {
        assert_eq!(
            e.observe(now, false, 60, Some(&seg(SYN | ACK, 500, 101))),
            Observed::Accepted { now_evictable: false, now_established: false }
        );
        assert_eq!(
            e.observe(now, true, 52, Some(&seg(ACK, 101, 501))),
            Observed::Accepted { now_evictable: false, now_established: true }
        );
    }

    #[test]
    fn tcp_handshake_and_teardown() {
        let e = tcp_flow(0);
        assert_eq!(e.state(), FlowState::SynSent);
        assert!(e.state().is_embryonic() && e.state().is_evictable());
        establish(&e, 1);
        assert_eq!(e.state(), FlowState::Established);
        assert!(!e.state().is_evictable());
        assert_eq!(
            e.observe(3, true, 52, Some(&seg(FIN | ACK, 101, 501))),
            Observed::Accepted { now_evictable: true, now_established: false }
        );
        assert_eq!(e.state(), FlowState::Closing);
        e.observe(4, false, 52, Some(&seg(FIN | ACK, 501, 102)));
        assert_eq!(e.state(), FlowState::Closed);
        let s = e.snapshot();
        assert_eq!((s.packets, s.bytes, s.last_seen), (4, 216, 4));
    }

    #[test]
    fn forged_segments_change_nothing() {
        let e = tcp_flow(0);
        // A SYN+ACK that does not acknowledge the SYN, from either end.
        assert_eq!(e.observe(5, false, 60, Some(&seg(SYN | ACK, 500, 7))), Observed::OutOfWindow);
        assert_eq!(e.observe(5, true, 60, Some(&seg(SYN | ACK, 500, 101))), Observed::OutOfWindow);
        establish(&e, 1);
        // An out-of-window RST neither closes the flow nor refreshes its timer.
        assert_eq!(e.observe(9, false, 40, Some(&seg(RST, 500 + 10_000_000, 0))), Observed::OutOfWindow);
        let s = e.snapshot();
        assert_eq!((s.state, s.last_seen, s.packets), (FlowState::Established, 1, 2));
        assert_eq!(e.observe(9, true, 40, None), Observed::OutOfWindow, "TCP without a segment");
    }

    #[test]
    fn udp_becomes_replied_only_when_the_responder_sends() {
        let e = flow(0, 17, Endpoint::Hi, 3, None);
        e.observe(1, true, 100, None);
        assert_eq!(e.state(), FlowState::Unreplied);
        e.observe(2, false, 100, None);
        assert_eq!(e.state(), FlowState::Replied);
        assert_eq!(Slot::bucket(&e), 3 * SHARES);
    }

    #[test]
    fn an_entry_is_96_bytes() {
        assert_eq!(std::mem::size_of::<Tracker>(), 48);
        assert_eq!(std::mem::size_of::<FlowEntry>(), 96);
    }

    #[test]
    fn a_quiet_established_flow_becomes_evictable() {
        let t = Timeouts::default();
        let s = NANOS_PER_SEC;
        let e = tcp_flow(0);
        assert_eq!(e.eviction(0, &t), Eviction::Now, "a SYN alone");
        establish(&e, 0);
        assert_eq!(e.eviction(9 * s, &t), Eviction::Later, "a handshake, idle 9 s");
        assert_eq!(e.eviction(10 * s, &t), Eviction::Now, "a handshake, idle 10 s");
        for n in 0..3 {
            e.observe(n, true, 52, Some(&seg(ACK, 101, 501)));
        }
        assert_eq!(e.eviction(100 * s, &t), Eviction::Never, "a flow that carried something");
        let shared = FlowEntry::new(
            0,
            NewFlow {
                protocol: 17,
                initiator: Endpoint::Lo,
                origin: 3,
                share: 5,
                class: 0,
                decision: D,
                syn: None,
            },
        );
        assert_eq!(shared.bucket(), 3 * SHARES + 5);
    }

    #[test]
    fn timeouts_follow_the_state() {
        let t = Timeouts::from_secs(30, 3600, 30, 60, 10);
        let s = NANOS_PER_SEC;
        let tcp = tcp_flow(0);
        assert!(!tcp.is_expired(30 * s, &t));
        assert!(tcp.is_expired(31 * s, &t));
        establish(&tcp, 0);
        assert!(!tcp.is_expired(3000 * s, &t));
        let icmp = flow(0, 58, Endpoint::Lo, 0, None);
        assert!(icmp.is_expired(11 * s, &t));
        let udp = flow(0, 17, Endpoint::Lo, 0, None);
        assert!(!udp.is_expired(59 * s, &t));
    }

    #[test]
    fn a_decision_of_a_later_generation_is_never_overwritten_by_an_earlier_one() {
        let e = flow(0, 17, Endpoint::Lo, 0, None);
        let newer = CachedDecision { verdict: 9, generation: 5 };
        assert_eq!(e.update_decision(newer), newer);
        let stale = CachedDecision { verdict: 1, generation: 4 };
        assert_eq!(e.update_decision(stale), newer, "a stale re-decision loses");
        assert_eq!(e.decision(), newer);
        let same = CachedDecision { verdict: 2, generation: 5 };
        assert_eq!(e.update_decision(same), same);
        let max = CachedDecision { verdict: u32::MAX, generation: u32::MAX };
        assert_eq!(e.update_decision(max), max);
    }
}
