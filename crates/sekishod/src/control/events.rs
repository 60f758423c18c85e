//! The data plane's side of `events`: an [`Observer`] that records each dropped (or
//! monitored) frame in a fixed ring of atomics — one `fetch_add` to claim a sequence
//! number and a few relaxed stores, no lock, no allocation, never a wait — and the
//! control plane's reader, which drains it into the journal's event stream.
//!
//! Each slot is a seqlock: the writer marks its stamp odd (`2·seq+1`), stores the fields,
//! and publishes `2·seq+2`; the reader takes a slot only if its stamp is `2·seq+2` before
//! and after reading the fields. A reader that falls more than a ring behind counts what
//! it missed as lost.

use std::net::IpAddr;
use std::sync::atomic::{fence, AtomicU64, Ordering::*};

use sekisho_control::{EventBody, VerdictEvent};
use sekisho_dataplane::Observer;
use sekisho_engine::{Ingress, Now, Side, Verdict};
use sekisho_policy::{Policy, Reason, Timestamp};

/// Slots in the ring (a power of two).
pub(crate) const RING: usize = 1 << 14;
/// The most events one drain turns into stream events; beyond, they are counted lost
/// (drained every 20 ms: 100,000 events/s).
pub(crate) const DRAIN_MAX: u64 = 2_000;

#[derive(Default)]
struct Slot {
    stamp: AtomicU64,
    wall: AtomicU64,
    /// reason index (8 bits) | monitored (1) | side (1) | has packet (1) | proto (8) | port (16)
    meta: AtomicU64,
    src_hi: AtomicU64,
    src_lo: AtomicU64,
    dst_hi: AtomicU64,
    dst_lo: AtomicU64,
    /// sport << 16 | dport, and the address family (bit 32: IPv6)
    ports: AtomicU64,
}

/// The ring the workers write.
pub(crate) struct EventRing {
    slots: Box<[Slot]>,
    head: AtomicU64,
}

/// One event read back from the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Raw {
    pub wall: u64,
    pub reason: usize,
    pub monitored: bool,
    pub ingress: Ingress,
    pub packet: Option<(u8, IpAddr, IpAddr, u16, u16)>,
}

fn split(a: IpAddr) -> (u64, u64) {
    let v = match a {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    ((v >> 64) as u64, v as u64)
}

fn join(hi: u64, lo: u64, v6: bool) -> IpAddr {
    let v = (u128::from(hi) << 64) | u128::from(lo);
    if v6 {
        IpAddr::V6(v.into())
    } else {
        IpAddr::V4((v as u32).into())
    }
}

impl EventRing {
    pub(crate) fn new() -> EventRing {
        EventRing { slots: (0..RING).map(|_| Slot::default()).collect(), head: AtomicU64::new(0) }
    }

    /// Events recorded since start.
    pub(crate) fn recorded(&self) -> u64 {
        self.head.load(Relaxed)
    }

    fn write(&self, now: Now, ingress: Ingress, v: &Verdict) {
        let seq = self.head.fetch_add(1, Relaxed);
        let slot = &self.slots[seq as usize & (RING - 1)];
        slot.stamp.store(2 * seq + 1, Relaxed);
        fence(Release);
        let side = u64::from(ingress.side == Side::Outside);
        let mut meta = (v.reason.index() as u64) | u64::from(v.monitored) << 8 | side << 9;
        meta |= u64::from(ingress.port.0) << 32;
        if let Some(p) = v.packet {
            meta |= 1 << 10 | u64::from(p.protocol) << 16;
            let ((sh, sl), (dh, dl)) = (split(p.src), split(p.dst));
            slot.src_hi.store(sh, Relaxed);
            slot.src_lo.store(sl, Relaxed);
            slot.dst_hi.store(dh, Relaxed);
            slot.dst_lo.store(dl, Relaxed);
            let v6 = u64::from(p.src.is_ipv6());
            slot.ports.store(u64::from(p.sport) << 16 | u64::from(p.dport) | v6 << 32, Relaxed);
        }
        slot.wall.store(now.wall.0, Relaxed);
        slot.meta.store(meta, Relaxed);
        slot.stamp.store(2 * seq + 2, Release);
    }

    /// The event with sequence number `seq`: `Ok(Some)` when readable, `Ok(None)` when
    /// not written yet (or being written), `Err(())` when already overwritten.
    fn read(&self, seq: u64) -> Result<Option<Raw>, ()> {
        let slot = &self.slots[seq as usize & (RING - 1)];
        let want = 2 * seq + 2;
        let s1 = slot.stamp.load(Acquire);
        if s1 < want {
            return Ok(None);
        }
        if s1 > want {
            return Err(());
        }
        let (wall, meta) = (slot.wall.load(Relaxed), slot.meta.load(Relaxed));
        let addrs = [
            slot.src_hi.load(Relaxed),
            slot.src_lo.load(Relaxed),
            slot.dst_hi.load(Relaxed),
            slot.dst_lo.load(Relaxed),
        ];
        let ports = slot.ports.load(Relaxed);
        fence(Acquire);
        if slot.stamp.load(Relaxed) != s1 {
            return Err(());
        }
        let v6 = ports >> 32 & 1 == 1;
        let packet = (meta >> 10 & 1 == 1).then(|| {
            (
                (meta >> 16) as u8,
                join(addrs[0], addrs[1], v6),
                join(addrs[2], addrs[3], v6),
                (ports >> 16) as u16,
                ports as u16,
            )
        });
        Ok(Some(Raw {
            wall,
            reason: (meta & 0xff) as usize,
            monitored: meta >> 8 & 1 == 1,
            ingress: Ingress {
                port: sekisho_policy::PortId((meta >> 32) as u16),
                side: if meta >> 9 & 1 == 1 { Side::Outside } else { Side::Inside },
            },
            packet,
        }))
    }
}

impl Observer for EventRing {
    fn dropped(&self, now: Now, ingress: Ingress, verdict: &Verdict) {
        self.write(now, ingress, verdict);
    }
}

/// The control plane's position in the ring.
#[derive(Default)]
pub(crate) struct Reader {
    next: u64,
    /// Events missed so far (overwritten, or beyond a drain's budget).
    pub lost: u64,
}

impl Reader {
    /// Reads what was written since the last drain (at most [`DRAIN_MAX`]); calls `each`
    /// for every event read and returns how many were lost this time.
    pub(crate) fn drain(&mut self, ring: &EventRing, mut each: impl FnMut(Raw)) -> u64 {
        let head = ring.head.load(Acquire);
        let mut lost = 0;
        let oldest = head.saturating_sub(RING as u64);
        if self.next < oldest {
            lost += oldest - self.next;
            self.next = oldest;
        }
        if head - self.next > DRAIN_MAX {
            let skip = head - self.next - DRAIN_MAX;
            lost += skip;
            self.next += skip;
        }
        while self.next < head {
            match ring.read(self.next) {
                Ok(Some(raw)) => each(raw),
                Ok(None) => break, // a worker is still writing it: next time
                Err(()) => lost += 1,
            }
            self.next += 1;
        }
        self.lost += lost;
        lost
    }
}

/// `tcp`, `udp`, `icmp`, `icmpv6`, or the number.
pub(crate) fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        other => other.to_string(),
    }
}

/// The stream event for `raw`, with names from `policy`.
pub(crate) fn body(policy: &Policy, raw: &Raw) -> EventBody {
    let port = policy
        .ports()
        .get(usize::from(raw.ingress.port.0))
        .map_or_else(|| format!("#{}", raw.ingress.port.0), |p| p.name.clone());
    let (proto, src, dst, sport, dport) = match raw.packet {
        Some((p, s, d, sp, dp)) => {
            (Some(proto_name(p)), Some(s.to_string()), Some(d.to_string()), Some(sp), Some(dp))
        }
        None => (None, None, None, None, None),
    };
    EventBody::Verdict(VerdictEvent {
        reason: Reason::CODES.get(raw.reason).copied().unwrap_or("deny:malformed").to_owned(),
        monitored: raw.monitored,
        port,
        side: raw.ingress.side.as_str().to_owned(),
        proto,
        src,
        dst,
        sport,
        dport,
    })
}

/// When `raw` happened, as the stream says it.
pub(crate) fn at(raw: &Raw) -> String {
    Timestamp(raw.wall).to_jst()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sekisho_engine::{Action, PacketInfo};
    use sekisho_policy::PortId;

    fn verdict(sport: u16) -> Verdict {
        Verdict {
            action: Action::Drop,
            reason: Reason::SpoofedSource,
            monitored: false,
            packet: Some(PacketInfo {
                protocol: 6,
                src: "2001:db8:20::5".parse().unwrap(),
                dst: "2001:db8:30::7".parse().unwrap(),
                sport,
                dport: 443,
            }),
            finding: None,
            generation: 1,
        }
    }

    #[test]
    fn events_round_trip_and_a_slow_reader_counts_what_it_lost() {
        let ring = EventRing::new();
        let at = Ingress { port: PortId(3), side: Side::Outside };
        let now = Now { mono: 1, wall: Timestamp(42) };
        ring.dropped(now, at, &verdict(1));
        let mut r = Reader::default();
        let mut got = Vec::new();
        assert_eq!(r.drain(&ring, |e| got.push(e)), 0);
        assert_eq!(got.len(), 1);
        let e = got[0];
        assert_eq!(
            (e.wall, e.reason, e.ingress, e.monitored),
            (42, Reason::SpoofedSource.index(), at, false)
        );
        assert_eq!(e.packet.unwrap().1.to_string(), "2001:db8:20::5");
        assert_eq!(e.packet.unwrap().3, 1);
        // Three rings' worth while nobody reads: all but the last DRAIN_MAX are lost.
        let n = 3 * RING as u64;
        for i in 0..n {
            ring.dropped(now, at, &verdict(i as u16));
        }
        got.clear();
        let lost = r.drain(&ring, |e| got.push(e));
        assert_eq!((lost, got.len() as u64), (n - DRAIN_MAX, DRAIN_MAX));
        assert_eq!(got.last().unwrap().packet.unwrap().3, (n - 1) as u16, "the newest are kept");
        assert_eq!(ring.recorded(), n + 1);
    }

    #[test]
    fn concurrent_writers_never_yield_a_torn_event() {
        let ring = std::sync::Arc::new(EventRing::new());
        let at = Ingress { port: PortId(1), side: Side::Inside };
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let ring = ring.clone();
                std::thread::spawn(move || {
                    for i in 0..200_000u32 {
                        ring.dropped(Now { mono: 0, wall: Timestamp(u64::from(i)) }, at, &verdict(i as u16));
                    }
                })
            })
            .collect();
        let mut r = Reader::default();
        let mut seen = 0u64;
        while writers.iter().any(|w| !w.is_finished()) {
            r.drain(&ring, |e| {
                // Every field of one event came from the same write.
                assert_eq!(e.wall as u16, e.packet.unwrap().3);
                seen += 1;
            });
        }
        for w in writers {
            w.join().unwrap();
        }
        r.drain(&ring, |_| seen += 1);
        assert_eq!(seen + r.lost, 400_000);
    }
}
