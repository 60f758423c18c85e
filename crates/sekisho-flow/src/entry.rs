//! One flow's state: atomics only, so that the per-packet path updates it with relaxed
//! stores and no lock.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

use crate::key::Endpoint;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Idle timeouts per protocol and TCP state, in nanoseconds (the `[flow]` section).
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
    /// The defaults of DESIGN.md section 2.
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
    /// TCP; the responder's SYN+ACK has been seen.
    SynReceived = 3,
    /// TCP; the handshake completed.
    Established = 4,
    /// TCP; a FIN has been seen.
    Closing = 5,
    /// TCP; a RST has been seen, or both FINs.
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

    /// True while the flow has not been answered: these are evicted first when the table
    /// is full.
    #[inline]
    pub fn is_embryonic(self) -> bool {
        matches!(self, FlowState::Unreplied | FlowState::SynSent | FlowState::SynReceived)
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

/// The decision cached on a flow: an opaque verdict word chosen by the engine, the policy
/// generation that produced it, and the time at which it must be re-decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachedDecision {
    /// The engine's encoding of the verdict.
    pub verdict: u32,
    /// The policy generation the verdict was computed under.
    pub generation: u32,
}

/// One flow. Every mutable field is an atomic: lookups share the entry between threads.
#[derive(Debug)]
pub struct FlowEntry {
    initiator: Endpoint,
    protocol: u8,
    state: AtomicU8,
    inspect: AtomicU8,
    decision: AtomicU64,
    valid_until: AtomicU64,
    created: u64,
    last_seen: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
}

/// Counters and state of a flow, read out for listings and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSnapshot {
    /// Who opened the flow.
    pub initiator: Endpoint,
    /// The lifecycle state.
    pub state: FlowState,
    /// The cached decision.
    pub decision: CachedDecision,
    /// When the flow was created (caller's clock, ns).
    pub created: u64,
    /// When the last packet was seen (ns).
    pub last_seen: u64,
    /// Packets in both directions.
    pub packets: u64,
    /// Bytes in both directions.
    pub bytes: u64,
}

impl FlowEntry {
    /// A new flow opened by `initiator` at `now` with the engine's `decision`. TCP flows
    /// start in [`FlowState::SynSent`], others in [`FlowState::Unreplied`].
    /// `valid_until` is the time at which the decision must be re-made (`u64::MAX`: never).
    pub fn new(
        now: u64,
        protocol: u8,
        initiator: Endpoint,
        decision: CachedDecision,
        valid_until: u64,
    ) -> Self {
        let state = if protocol == IPPROTO_TCP { FlowState::SynSent } else { FlowState::Unreplied };
        FlowEntry {
            initiator,
            protocol,
            state: AtomicU8::new(state as u8),
            inspect: AtomicU8::new(0),
            decision: AtomicU64::new(pack(decision)),
            valid_until: AtomicU64::new(valid_until),
            created: now,
            last_seen: AtomicU64::new(now),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// The endpoint that opened the flow.
    #[inline]
    pub fn initiator(&self) -> Endpoint {
        self.initiator
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

    /// The time at which the cached decision must be re-made.
    #[inline]
    pub fn valid_until(&self) -> u64 {
        self.valid_until.load(Relaxed)
    }

    /// Replaces the cached decision (after a policy reload or an expiry).
    pub fn set_decision(&self, decision: CachedDecision, valid_until: u64) {
        self.decision.store(pack(decision), Relaxed);
        self.valid_until.store(valid_until, Relaxed);
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

    /// Accounts one packet of `len` bytes sent by `from` at `now`, and advances the state
    /// machine with the packet's TCP flags (ignored for other protocols).
    #[inline]
    pub fn observe(&self, now: u64, from: Endpoint, len: usize, tcp_flags: u16) {
        self.last_seen.store(now, Relaxed);
        self.packets.fetch_add(1, Relaxed);
        self.bytes.fetch_add(len as u64, Relaxed);
        let from_initiator = from == self.initiator;
        let current = self.state.load(Relaxed);
        let next = if self.protocol == IPPROTO_TCP {
            tcp_next(FlowState::from_u8(current), from_initiator, tcp_flags)
        } else if !from_initiator && current == FlowState::Unreplied as u8 {
            FlowState::Replied
        } else {
            return;
        };
        if next as u8 != current {
            // A lost race means another packet advanced the state first; either result is
            // a state the flow really passed through, so the loser does not retry.
            let _ = self.state.compare_exchange(current, next as u8, Relaxed, Relaxed);
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
            state: self.state(),
            decision: self.decision(),
            created: self.created,
            last_seen: self.last_seen.load(Relaxed),
            packets: self.packets.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
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

/// The TCP state after a packet with `flags`; invalid flag combinations are refused by the
/// engine before they get here.
#[inline]
fn tcp_next(state: FlowState, from_initiator: bool, flags: u16) -> FlowState {
    use tcp_flags::*;
    if flags & RST != 0 {
        return FlowState::Closed;
    }
    if flags & FIN != 0 {
        return if state == FlowState::Closing { FlowState::Closed } else { FlowState::Closing };
    }
    let syn = flags & SYN != 0;
    let ack = flags & ACK != 0;
    match state {
        FlowState::SynSent if !from_initiator && syn && ack => FlowState::SynReceived,
        FlowState::SynReceived if from_initiator && ack && !syn => FlowState::Established,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::tcp_flags::*;
    use super::*;

    const D: CachedDecision = CachedDecision { verdict: 7, generation: 3 };

    #[test]
    fn tcp_handshake_and_teardown() {
        let e = FlowEntry::new(0, 6, Endpoint::Lo, D, u64::MAX);
        assert_eq!(e.state(), FlowState::SynSent);
        assert!(e.state().is_embryonic());
        e.observe(1, Endpoint::Hi, 60, SYN | ACK);
        assert_eq!(e.state(), FlowState::SynReceived);
        e.observe(2, Endpoint::Lo, 52, ACK);
        assert_eq!(e.state(), FlowState::Established);
        assert!(!e.state().is_embryonic());
        e.observe(3, Endpoint::Lo, 52, FIN | ACK);
        assert_eq!(e.state(), FlowState::Closing);
        e.observe(4, Endpoint::Hi, 52, FIN | ACK);
        assert_eq!(e.state(), FlowState::Closed);
        let s = e.snapshot();
        assert_eq!((s.packets, s.bytes, s.last_seen), (4, 216, 4));
    }

    #[test]
    fn a_synack_from_the_initiator_does_not_advance() {
        let e = FlowEntry::new(0, 6, Endpoint::Lo, D, u64::MAX);
        e.observe(1, Endpoint::Lo, 60, SYN | ACK);
        assert_eq!(e.state(), FlowState::SynSent);
        e.observe(1, Endpoint::Hi, 60, RST);
        assert_eq!(e.state(), FlowState::Closed);
    }

    #[test]
    fn udp_becomes_replied_only_when_the_responder_sends() {
        let e = FlowEntry::new(0, 17, Endpoint::Hi, D, u64::MAX);
        e.observe(1, Endpoint::Hi, 100, 0);
        assert_eq!(e.state(), FlowState::Unreplied);
        e.observe(2, Endpoint::Lo, 100, 0);
        assert_eq!(e.state(), FlowState::Replied);
    }

    #[test]
    fn timeouts_follow_the_state() {
        let t = Timeouts::from_secs(30, 3600, 30, 60, 10);
        let s = NANOS_PER_SEC;
        let tcp = FlowEntry::new(0, 6, Endpoint::Lo, D, u64::MAX);
        assert!(!tcp.is_expired(30 * s, &t));
        assert!(tcp.is_expired(31 * s, &t));
        tcp.observe(0, Endpoint::Hi, 1, SYN | ACK);
        tcp.observe(0, Endpoint::Lo, 1, ACK);
        assert!(!tcp.is_expired(3000 * s, &t));
        let icmp = FlowEntry::new(0, 58, Endpoint::Lo, D, u64::MAX);
        assert!(icmp.is_expired(11 * s, &t));
        let udp = FlowEntry::new(0, 17, Endpoint::Lo, D, u64::MAX);
        assert!(!udp.is_expired(59 * s, &t));
    }

    #[test]
    fn decision_round_trips() {
        let e = FlowEntry::new(0, 17, Endpoint::Lo, D, 99);
        assert_eq!(e.decision(), D);
        assert_eq!(e.valid_until(), 99);
        let d2 = CachedDecision { verdict: u32::MAX, generation: u32::MAX };
        e.set_decision(d2, u64::MAX);
        assert_eq!(e.decision(), d2);
    }
}
