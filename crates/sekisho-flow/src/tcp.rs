//! TCP sequence tracking per connection, so that forged segments cannot move a flow's
//! state: the handshake's acknowledgement numbers must match, and every later segment
//! must fall inside the window each end has announced (the window check of Guido van
//! Rooij's "Real Stateful TCP Packet Filtering in IP Filter", as Linux conntrack and
//! OpenBSD pf apply it), with RFC 5961 rules for RST.
//!
//! Per direction the tracker keeps, as relaxed atomics (each field has one writer: the
//! worker that receives that direction's frames):
//! - `end`: the highest sequence number sent plus the segment's length (SYN and FIN
//!   count one);
//! - `maxend`: the highest sequence number the *other* end has allowed this one to
//!   send (its acknowledgement plus its window);
//! - `maxwin`: the largest window this end has announced (scaled);
//! - `acked`: the highest acknowledgement number this end has sent;
//! - `isn`: the initial sequence number of its SYN (a retransmitted SYN or SYN+ACK must
//!   repeat it exactly);
//! - the window-scale shift this end announced in its SYN.
//!
//! A segment from S to O passes when (sequence numbers compared modulo 2^32):
//! 1. `seq ≤ S.maxend` — it starts inside what O allowed;
//! 2. `seq + len > S.end − O.maxwin` — it is not older than a window;
//! 3. `ack ≤ O.end` — it acknowledges nothing O has not sent;
//! 4. `ack > O.end − max(S.maxwin, 66000)` — its acknowledgement is not ancient.
//!
//! A RST closes the connection only when its sequence number is exactly what the other
//! end expects next (RFC 5961 section 3.2); an in-window RST that is not exact passes
//! (the endpoint answers it with a challenge ACK) but changes nothing.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering::Relaxed};

use crate::entry::FlowState;
use crate::tcp_flags::{ACK, FIN, RST, SYN};

/// The smallest acknowledgement window, as conntrack's `MAXACKWINCONST`.
const MIN_ACK_WINDOW: u32 = 66_000;

/// The TCP fields the tracker reads from one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Segment {
    /// Flags (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10).
    pub flags: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Window, unscaled as on the wire.
    pub window: u16,
    /// The window-scale option of a SYN.
    pub wscale: Option<u8>,
    /// Payload bytes (a GSO super-frame counts all of its payload).
    pub len: u32,
}

impl Segment {
    fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// Sequence space the segment occupies: payload, plus one for SYN and for FIN.
    fn span(&self) -> u32 {
        self.len.wrapping_add(u32::from(self.has(SYN))).wrapping_add(u32::from(self.has(FIN)))
    }
}

/// What the tracker made of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// In window; the flow is now in this state (possibly unchanged).
    Accept(FlowState),
    /// Outside the tracked window, or a handshake segment that does not match: drop it,
    /// state unchanged.
    OutOfWindow,
}

#[inline]
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[inline]
fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// One direction's sequence state.
#[derive(Debug, Default)]
struct Dir {
    end: AtomicU32,
    maxend: AtomicU32,
    maxwin: AtomicU32,
    acked: AtomicU32,
    isn: AtomicU32,
    /// Bit 0..4: the announced shift; bit 7: announced at all.
    scale: AtomicU8,
    /// Connection-wide bits, kept in the initiator's direction only (it fits in the
    /// padding: a tracker is 48 bytes): [`FIN_INITIATOR`], [`FIN_RESPONDER`], [`SCALED`].
    flags: AtomicU8,
}

const SCALE_SEEN: u8 = 0x80;
/// The initiator has sent FIN.
const FIN_INITIATOR: u8 = 1;
/// The responder has sent FIN.
const FIN_RESPONDER: u8 = 2;
/// Both SYNs carried the window-scale option.
const SCALED: u8 = 4;
/// The largest window-scale shift (RFC 7323).
const MAX_SHIFT: u8 = 14;

impl Dir {
    /// Raises `field` to `v` when `v` is later in sequence space.
    #[inline]
    fn raise(field: &AtomicU32, v: u32) {
        if after(v, field.load(Relaxed)) {
            field.store(v, Relaxed);
        }
    }

    fn start(&self, seg: &Segment) {
        let end = seg.seq.wrapping_add(seg.span());
        self.end.store(end, Relaxed);
        self.maxend.store(end, Relaxed);
        self.maxwin.store(u32::from(seg.window).max(1), Relaxed);
        self.acked.store(if seg.has(ACK) { seg.ack } else { 0 }, Relaxed);
        self.isn.store(seg.seq, Relaxed);
        self.scale.store(seg.wscale.map_or(0, |s| SCALE_SEEN | s.min(MAX_SHIFT)), Relaxed);
    }
}

/// Sequence tracking for both directions of one TCP connection (initiator, responder).
#[derive(Debug, Default)]
pub struct Tracker {
    dirs: [Dir; 2],
}

impl Tracker {
    /// A tracker for a connection opened by `syn` (the initiator's SYN).
    pub fn new(syn: &Segment) -> Tracker {
        let t = Tracker::default();
        t.dirs[0].start(syn);
        t
    }

    /// The highest sequence number (plus length) the initiator (`from_initiator`) or the
    /// responder has sent, and the largest window its peer announced: for checking the
    /// segment quoted by an ICMP error (RFC 5927).
    pub fn sent_window(&self, from_initiator: bool) -> (u32, u32) {
        let (s, o) = self.pair(from_initiator);
        (s.end.load(Relaxed), o.maxwin.load(Relaxed))
    }

    /// Whether `seq`, quoted by an ICMP error as sent by the initiator
    /// (`from_initiator`) or the responder, lies within the last window of data that end
    /// sent (RFC 5927 section 4.1 recommends this check).
    pub fn quoted_in_window(&self, from_initiator: bool, seq: u32) -> bool {
        let (end, win) = self.sent_window(from_initiator);
        !after(seq, end) && after(seq, end.wrapping_sub(win.max(MIN_ACK_WINDOW)).wrapping_sub(1))
    }

    /// Accounts `n` bytes of a later IP fragment of a segment the initiator
    /// (`from_initiator`) or the responder sent: its sequence space grows by them (the
    /// first fragment carried only the start of the segment).
    pub fn advance(&self, from_initiator: bool, n: u32) {
        let (s, _) = self.pair(from_initiator);
        let end = s.end.load(Relaxed).wrapping_add(n);
        // Never past what the receiver allowed: a lying fragment cannot widen the window.
        if !after(end, s.maxend.load(Relaxed)) {
            Dir::raise(&s.end, end);
        }
    }

    /// The highest sequence number (plus length) the initiator (`from_initiator`) or the
    /// responder has sent: before its first data, its initial sequence number plus one.
    pub fn end(&self, from_initiator: bool) -> u32 {
        self.pair(from_initiator).0.end.load(Relaxed)
    }

    /// The initial sequence number of the initiator's (`from_initiator`) or the
    /// responder's SYN: its first data byte is this plus one, whatever later segments
    /// without data (a bare ACK or a FIN with a sequence number ahead) did to [`Self::end`].
    pub fn isn(&self, from_initiator: bool) -> u32 {
        self.pair(from_initiator).0.isn.load(Relaxed)
    }

    /// The highest acknowledgement number the *receiver* of the initiator's
    /// (`from_initiator`) or the responder's data has sent: everything before it has
    /// arrived there. Before the receiver's first acknowledgement: the sender's initial
    /// sequence number.
    pub fn acked(&self, from_initiator: bool) -> u32 {
        self.pair(from_initiator).1.acked.load(Relaxed)
    }

    fn pair(&self, from_initiator: bool) -> (&Dir, &Dir) {
        let [i, r] = &self.dirs;
        if from_initiator {
            (i, r)
        } else {
            (r, i)
        }
    }

    fn fin_bit(from_initiator: bool) -> u8 {
        if from_initiator {
            FIN_INITIATOR
        } else {
            FIN_RESPONDER
        }
    }

    fn flags(&self) -> &AtomicU8 {
        &self.dirs[0].flags
    }

    /// Judges `seg`, sent by the initiator (`from_initiator`) or the responder, against
    /// the connection in `state`, and updates the windows when it is accepted.
    pub fn step(&self, state: FlowState, from_initiator: bool, seg: &Segment) -> Step {
        let (s, o) = self.pair(from_initiator);
        let syn = seg.has(SYN);
        let ack = seg.has(ACK);
        match state {
            FlowState::SynSent => {
                if from_initiator {
                    if syn && !ack {
                        // A retransmitted SYN, or a new attempt with a new ISN on the
                        // same ports: start over from it.
                        s.start(seg);
                        return Step::Accept(FlowState::SynSent);
                    }
                    if seg.has(RST)
                        && (seg.seq == s.end.load(Relaxed) || seg.seq.wrapping_add(1) == s.end.load(Relaxed))
                    {
                        return Step::Accept(FlowState::Closed);
                    }
                    return Step::OutOfWindow;
                }
                // The responder: a SYN+ACK or a RST must acknowledge the SYN exactly.
                if !ack || seg.ack != o.end.load(Relaxed) {
                    return Step::OutOfWindow;
                }
                if seg.has(RST) {
                    return Step::Accept(FlowState::Closed);
                }
                if !syn {
                    return Step::OutOfWindow;
                }
                s.start(seg);
                // The initiator has acknowledged nothing yet: its first acknowledgement is
                // the SYN+ACK's sequence number plus one, later in sequence space than this.
                o.acked.store(seg.seq, Relaxed);
                let both = o.scale.load(Relaxed) & SCALE_SEEN != 0 && seg.wscale.is_some();
                if both {
                    self.flags().fetch_or(SCALED, Relaxed);
                } else {
                    self.flags().fetch_and(!SCALED, Relaxed);
                }
                // The initiator may now send up to the SYN+ACK's (never scaled) window.
                Dir::raise(&o.maxend, seg.ack.wrapping_add(u32::from(seg.window).max(1)));
                Step::Accept(FlowState::SynReceived)
            }
            // A retransmitted SYN: the same sequence number, nothing else.
            FlowState::SynReceived if syn && from_initiator => {
                if seg.seq == s.isn.load(Relaxed) && !ack && seg.len == 0 {
                    Step::Accept(state)
                } else {
                    Step::OutOfWindow
                }
            }
            // A retransmitted SYN+ACK (the handshake's last ACK was lost beyond the gate):
            // exactly the first one's sequence and acknowledgement numbers, and no data.
            // Anything looser lets a blind sender inject data with a few guesses.
            _ if syn && !from_initiator && ack => {
                let retransmit = seg.seq == s.isn.load(Relaxed)
                    && seg.ack == o.isn.load(Relaxed).wrapping_add(1)
                    && seg.len == 0
                    && !seg.has(RST | FIN);
                if retransmit && !matches!(state, FlowState::Closed) {
                    Step::Accept(state)
                } else {
                    Step::OutOfWindow
                }
            }
            _ if syn => Step::OutOfWindow,
            // The handshake completes only with the exact acknowledgement of the SYN+ACK.
            FlowState::SynReceived if from_initiator && ack && seg.ack != o.end.load(Relaxed) => {
                Step::OutOfWindow
            }
            _ => self.in_window(state, from_initiator, seg),
        }
    }

    fn in_window(&self, state: FlowState, from_initiator: bool, seg: &Segment) -> Step {
        let (s, o) = self.pair(from_initiator);
        let scaled = self.flags().load(Relaxed) & SCALED != 0;
        let shift = if scaled { u32::from(s.scale.load(Relaxed) & 0x0f) } else { 0 };
        let win = u32::from(seg.window) << shift;
        let o_end = o.end.load(Relaxed);
        let ack = if seg.has(ACK) { seg.ack } else { o_end };
        let end = seg.seq.wrapping_add(seg.span());
        let s_end = s.end.load(Relaxed);
        let ok = !after(seg.seq, s.maxend.load(Relaxed))
            && after(end, s_end.wrapping_sub(o.maxwin.load(Relaxed)).wrapping_sub(1))
            && !after(ack, o_end)
            && after(ack, o_end.wrapping_sub(s.maxwin.load(Relaxed).max(MIN_ACK_WINDOW)).wrapping_sub(1));
        if !ok {
            return Step::OutOfWindow;
        }
        if seg.has(RST) {
            // RFC 5961: only the exact next sequence number resets; the rest of the
            // window passes so that the endpoint can send its challenge ACK.
            let exact = seg.seq == o.acked.load(Relaxed) || seg.seq == s_end;
            return Step::Accept(if exact { FlowState::Closed } else { state });
        }
        Dir::raise(&s.end, end);
        if win > s.maxwin.load(Relaxed) {
            s.maxwin.store(win, Relaxed);
        }
        if seg.has(ACK) {
            Dir::raise(&s.acked, ack);
            Dir::raise(&o.maxend, ack.wrapping_add(win.max(1)));
        }
        let next = match state {
            FlowState::SynReceived if from_initiator && seg.has(ACK) && ack == o_end => {
                FlowState::Established
            }
            // The responder may send data before the handshake's last ACK is seen.
            FlowState::SynReceived => FlowState::SynReceived,
            other => other,
        };
        if seg.has(FIN) {
            let bit = Self::fin_bit(from_initiator);
            let fins = (self.flags().fetch_or(bit, Relaxed) | bit) & (FIN_INITIATOR | FIN_RESPONDER);
            let both = fins == FIN_INITIATOR | FIN_RESPONDER;
            return Step::Accept(if both { FlowState::Closed } else { FlowState::Closing });
        }
        Step::Accept(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(flags: u16, seq: u32, ack: u32, window: u16, len: u32) -> Segment {
        Segment { flags, seq, ack, window, wscale: None, len }
    }

    /// A connection through its handshake: client ISN 1000, server ISN 5000.
    fn established() -> Tracker {
        let t = Tracker::new(&seg(SYN, 1000, 0, 64240, 0));
        assert_eq!(
            t.step(FlowState::SynSent, false, &seg(SYN | ACK, 5000, 1001, 65160, 0)),
            Step::Accept(FlowState::SynReceived)
        );
        assert_eq!(
            t.step(FlowState::SynReceived, true, &seg(ACK, 1001, 5001, 502, 0)),
            Step::Accept(FlowState::Established)
        );
        t
    }

    #[test]
    fn handshake_needs_matching_acknowledgements() {
        let t = Tracker::new(&seg(SYN, 1000, 0, 64240, 0));
        // A SYN+ACK that does not acknowledge the SYN, or a bare ACK, does not advance.
        assert_eq!(t.step(FlowState::SynSent, false, &seg(SYN | ACK, 5000, 999, 100, 0)), Step::OutOfWindow);
        assert_eq!(t.step(FlowState::SynSent, false, &seg(ACK, 5000, 1001, 100, 0)), Step::OutOfWindow);
        assert_eq!(t.step(FlowState::SynSent, true, &seg(ACK, 1001, 1, 100, 0)), Step::OutOfWindow);
        assert_eq!(
            t.step(FlowState::SynSent, false, &seg(SYN | ACK, 5000, 1001, 100, 0)),
            Step::Accept(FlowState::SynReceived)
        );
        // The handshake's ACK must acknowledge the SYN+ACK exactly.
        assert_eq!(t.step(FlowState::SynReceived, true, &seg(ACK, 1001, 4000, 100, 0)), Step::OutOfWindow);
        assert_eq!(
            t.step(FlowState::SynReceived, true, &seg(ACK, 1001, 5001, 100, 0)),
            Step::Accept(FlowState::Established)
        );
    }

    #[test]
    fn data_inside_the_window_passes_and_moves_it() {
        let t = established();
        assert_eq!(
            t.step(FlowState::Established, true, &seg(ACK, 1001, 5001, 502, 1400)),
            Step::Accept(FlowState::Established)
        );
        assert_eq!(
            t.step(FlowState::Established, false, &seg(ACK, 5001, 2401, 500, 100)),
            Step::Accept(FlowState::Established)
        );
        // A retransmission of old data passes; data far ahead of the window does not.
        assert_eq!(
            t.step(FlowState::Established, true, &seg(ACK, 1001, 5101, 502, 1400)),
            Step::Accept(FlowState::Established)
        );
        assert_eq!(
            t.step(FlowState::Established, true, &seg(ACK, 1001 + 200_000, 5101, 502, 10)),
            Step::OutOfWindow
        );
        // Acknowledging data the server never sent, or far in the past, does not pass.
        assert_eq!(t.step(FlowState::Established, true, &seg(ACK, 2401, 9000, 502, 0)), Step::OutOfWindow);
        assert_eq!(
            t.step(FlowState::Established, true, &seg(ACK, 2401, 5101u32.wrapping_sub(100_000), 502, 0)),
            Step::OutOfWindow
        );
    }

    #[test]
    fn window_scaling_is_honoured_only_when_both_ends_announce_it() {
        let syn = Segment { wscale: Some(7), ..seg(SYN, 1000, 0, 64240, 0) };
        let t = Tracker::new(&syn);
        let synack = Segment { wscale: Some(7), ..seg(SYN | ACK, 5000, 1001, 65160, 0) };
        t.step(FlowState::SynSent, false, &synack);
        t.step(FlowState::SynReceived, true, &seg(ACK, 1001, 5001, 502, 0));
        // The server announces 1000 << 7 = 128000 bytes: the client may send 100 kB ahead.
        t.step(FlowState::Established, false, &seg(ACK, 5001, 1001, 1000, 0));
        assert_eq!(
            t.step(FlowState::Established, true, &seg(ACK, 1001 + 100_000, 5001, 502, 1000)),
            Step::Accept(FlowState::Established)
        );
        // Without scaling on both sides the same segment would be far out of window.
        let t = Tracker::new(&syn);
        t.step(FlowState::SynSent, false, &seg(SYN | ACK, 5000, 1001, 65160, 0));
        t.step(FlowState::SynReceived, true, &seg(ACK, 1001, 5001, 502, 0));
        t.step(FlowState::Established, false, &seg(ACK, 5001, 1001, 1000, 0));
        assert_eq!(
            t.step(FlowState::Established, true, &seg(ACK, 1001 + 100_000, 5001, 502, 1000)),
            Step::OutOfWindow
        );
    }

    #[test]
    fn rst_closes_only_when_exact_rfc5961() {
        let t = established();
        let far = seg(RST, 1001 + 1_000_000, 0, 0, 0);
        assert_eq!(t.step(FlowState::Established, true, &far), Step::OutOfWindow);
        let in_window = seg(RST, 1001 + 100, 0, 0, 0);
        assert_eq!(t.step(FlowState::Established, true, &in_window), Step::Accept(FlowState::Established));
        assert_eq!(
            t.step(FlowState::Established, true, &seg(RST, 1001, 0, 0, 0)),
            Step::Accept(FlowState::Closed)
        );
    }

    #[test]
    fn refused_connection_and_aborted_connect() {
        let t = Tracker::new(&seg(SYN, 1000, 0, 64240, 0));
        assert_eq!(t.step(FlowState::SynSent, false, &seg(RST | ACK, 0, 77, 0, 0)), Step::OutOfWindow);
        assert_eq!(
            t.step(FlowState::SynSent, false, &seg(RST, 0, 1001, 0, 0)),
            Step::OutOfWindow,
            "RST without ACK"
        );
        assert_eq!(
            t.step(FlowState::SynSent, false, &seg(RST | ACK, 0, 1001, 0, 0)),
            Step::Accept(FlowState::Closed)
        );
        assert_eq!(
            t.step(FlowState::SynSent, true, &seg(RST, 1001, 0, 0, 0)),
            Step::Accept(FlowState::Closed)
        );
    }

    #[test]
    fn fins_from_both_ends_close() {
        let t = established();
        assert_eq!(
            t.step(FlowState::Established, true, &seg(FIN | ACK, 1001, 5001, 502, 0)),
            Step::Accept(FlowState::Closing)
        );
        // A second FIN from the same end (retransmission) does not close.
        assert_eq!(
            t.step(FlowState::Closing, true, &seg(FIN | ACK, 1001, 5001, 502, 0)),
            Step::Accept(FlowState::Closing)
        );
        assert_eq!(
            t.step(FlowState::Closing, false, &seg(FIN | ACK, 5001, 1002, 500, 0)),
            Step::Accept(FlowState::Closed)
        );
        assert_eq!(
            t.step(FlowState::Closed, true, &seg(ACK, 1002, 5002, 502, 0)),
            Step::Accept(FlowState::Closed)
        );
    }

    #[test]
    fn sequence_numbers_wrap() {
        let t = Tracker::new(&seg(SYN, u32::MAX - 10, 0, 64240, 0));
        t.step(FlowState::SynSent, false, &seg(SYN | ACK, 5000, u32::MAX - 9, 65160, 0));
        t.step(FlowState::SynReceived, true, &seg(ACK, u32::MAX - 9, 5001, 502, 0));
        assert_eq!(
            t.step(FlowState::Established, true, &seg(ACK, u32::MAX - 9, 5001, 502, 1000)),
            Step::Accept(FlowState::Established)
        );
        assert_eq!(
            t.step(FlowState::Established, false, &seg(ACK, 5001, 990, 500, 0)),
            Step::Accept(FlowState::Established)
        );
    }

    #[test]
    fn acknowledgements_are_followed_from_any_initial_sequence_number() {
        for server_isn in [5000u32, 0x9000_0000, u32::MAX] {
            let t = Tracker::new(&seg(SYN, 1000, 0, 64240, 0));
            let first = server_isn.wrapping_add(1);
            t.step(FlowState::SynSent, false, &seg(SYN | ACK, server_isn, 1001, 65160, 0));
            assert_eq!(t.acked(false), server_isn, "nothing acknowledged yet");
            t.step(FlowState::SynReceived, true, &seg(ACK, 1001, first, 502, 0));
            t.step(FlowState::Established, false, &seg(ACK, first, 1001, 500, 100));
            assert_eq!((t.end(false), t.acked(false)), (first.wrapping_add(100), first));
            t.step(FlowState::Established, true, &seg(ACK, 1001, first.wrapping_add(100), 502, 10));
            assert_eq!(t.acked(false), first.wrapping_add(100));
            assert_eq!((t.end(true), t.acked(true)), (1011, 1001));
        }
    }

    #[test]
    fn quoted_sequence_numbers_must_be_recent() {
        let t = established();
        t.step(FlowState::Established, true, &seg(ACK, 1001, 5001, 502, 1400));
        assert!(t.quoted_in_window(true, 1001));
        assert!(t.quoted_in_window(true, 2401));
        assert!(!t.quoted_in_window(true, 2402 + 10));
        assert!(!t.quoted_in_window(true, 1001u32.wrapping_sub(200_000)));
        assert!(t.quoted_in_window(false, 5001));
    }
}
