//! The sekisho engine: decides, frame by frame, whether a frame may cross a port.
//!
//! Sans-IO: [`Engine::process`] takes the time, the ingress interface and the frame, and
//! returns a [`Verdict`]; it reads no clock, opens no socket and allocates nothing. The
//! data plane (or the offline replay) owns the I/O around it.
//!
//! The rule it enforces: in enforce mode every forwarded frame is either (a) link traffic
//! whose two ends are on that port's segment, or (b) a packet of a connection whose
//! initiator → responder the *current* policy allows, travelling in a direction that
//! connection permits — ICMP errors only from the connection's peer or a router of the
//! receiving segment, fragments only of such a packet.
//!
//! One frame's path, one module per stage:
//! 1. parse ([`sekisho_wire`]);
//! 2. [`ingress`]: VLAN tags the port admits, addresses a zone can hold;
//! 3. [`link`]: link traffic with both ends on the segment stays in its pair;
//! 4. [`resolve`] and [`track`]: the connection the packet belongs to — its own 5-tuple
//!    (each end bound to its side of the port, TCP sequence numbers followed), or the
//!    parent connection of a later fragment or an ICMP error;
//! 5. [`decide`]: the ingress contract and the policy for a new connection, or the cached
//!    verdict re-checked when the policy generation moved (reload, exception expiry);
//! 6. `inspect`: on flows whose service names an application, the bytes the endpoints
//!    will accept, in order, against that application (and, on the text leg of a mail
//!    path, the text check of each message);
//! 7. counters, and [`monitor`](Engine::drain_detections) detections of scans and floods
//!    from internet zones.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod counters;
mod decide;
mod ingress;
mod inspect;
mod link;
mod monitor;
mod reason;
mod resolve;
mod review;
mod track;

use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::cache::Cache;
use arc_swap::ArcSwap;
use sekisho_flow::{FlowTable, FragmentTable, Timeouts};
use sekisho_policy::{Mode, Policy, Port, PortId, Reason, Timestamp};
use sekisho_wire::{parse_ethernet, Ip, L3, L4};

pub use counters::{CounterSnapshot, LegStats, PortCounters, SideCounters};
pub use inspect::{Finding, FindingKind, InspectionStats, Seen};
pub use monitor::{Detection, DetectionKind, MonitorStats};
pub use review::Review;
pub use sekisho_flow::{FlowKey, FlowSnapshot, FlowState, TableStats};

/// Which interface of a port a frame arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Toward the segment's own hosts.
    Inside,
    /// Toward the core router.
    Outside,
}

impl Side {
    /// The other interface of the pair: where an allowed frame leaves.
    pub fn other(self) -> Side {
        match self {
            Side::Inside => Side::Outside,
            Side::Outside => Side::Inside,
        }
    }

    /// `"inside"` or `"outside"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Inside => "inside",
            Side::Outside => "outside",
        }
    }

    /// The side encoded in a flow's origin (`2 × port + side`).
    #[inline]
    pub fn of_origin(origin: u16) -> Side {
        if origin & 1 == 0 {
            Side::Inside
        } else {
            Side::Outside
        }
    }
}

impl Ingress {
    /// The origin code flows record: `2 × port + side` (also their table bucket).
    #[inline]
    pub fn origin(self) -> u16 {
        self.port.0.wrapping_mul(2) | self.side as u16
    }
}

/// The time, as the engine needs it: the monotonic clock for idle timeouts and the
/// reassembly time (a wall-clock step must neither freeze nor expire flows), the wall
/// clock for exceptions' expiry dates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Monotonic nanoseconds (any origin; only differences matter).
    pub mono: u64,
    /// The wall clock.
    pub wall: Timestamp,
}

impl Now {
    /// Both clocks at `wall` (offline replay, tests: one timeline).
    pub const fn at(wall: Timestamp) -> Now {
        Now { mono: wall.0, wall }
    }
}

/// Where a frame came in: a port and one of its two interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ingress {
    /// The port (index into the policy's ports).
    pub port: PortId,
    /// The interface of the pair.
    pub side: Side,
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send it, unchanged, out of the other interface of the pair.
    Forward,
    /// Drop it.
    Drop,
}

/// The addresses of an IP packet, for alerts and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    /// IP protocol number.
    pub protocol: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (ICMP echo: the identifier; otherwise 0 without ports).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// What the data plane knows about a frame besides its bytes: the offload work the
/// sending host left for whoever sends the frame on (the vnet header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameMeta {
    /// The frame's transport checksum is not computed yet (`VIRTIO_NET_HDR_F_NEEDS_CSUM`
    /// in the vnet header): whoever sends the frame on completes it over these bytes, or
    /// a receiver on the same host takes it as checked, so the receiver accepts exactly
    /// these bytes and the checksum is not verified. Who set the flag does not matter;
    /// where the checksum goes does ([`FrameMeta::checksum_at`]).
    pub checksum_partial: bool,
    /// Where the checksum will be computed from and written to (the vnet header's
    /// `csum_start`, from the frame's first byte, and `csum_offset`, from there), when the
    /// frame came with them. The frame is refused unless they name its TCP or UDP
    /// header's checksum: whoever completes the checksum writes two bytes there, and a
    /// sender that chose the place could change bytes the gate inspected. `None` only for
    /// a replay of a capture whose checksums were offloaded.
    pub checksum_at: Option<(u16, u16)>,
    /// The segmentation the sending host asked for (a GSO super-frame).
    pub gso: Gso,
}

impl FrameMeta {
    /// True when the sender left work for the egress (a checksum, a segmentation).
    #[inline]
    pub fn offloaded(&self) -> bool {
        self.checksum_partial || self.gso != Gso::None
    }
}

/// The segmentation a GSO super-frame asks for (`VIRTIO_NET_HDR_GSO_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Gso {
    /// Not a super-frame.
    #[default]
    None,
    /// TCP over IPv4.
    TcpV4,
    /// TCP over IPv6.
    TcpV6,
    /// UDP segmentation (`UDP_L4`).
    Udp,
    /// Anything else (the old UDP fragmentation offload, unknown kinds): refused.
    Other,
}

/// Whether the offload work `meta` describes fits the packet `l3` of `frame`: a checksum
/// left to complete is its own TCP or UDP checksum, at the place that protocol keeps it;
/// a super-frame is segmented by its own protocol and carries a partial checksum, as
/// every sending kernel leaves one. Anything else is `deny:malformed`.
fn offload_fits(meta: FrameMeta, frame: &[u8], l3: &L3<'_>) -> bool {
    let L3::Ip(ip) = l3 else { return false };
    if ip.fragment.is_some() {
        return false;
    }
    let v6 = ip.src.is_ipv6();
    let (header, checksum_at, gso_fits) = match ip.l4 {
        L4::Tcp(t) => (
            t.segment,
            16,
            matches!((meta.gso, v6), (Gso::None, _) | (Gso::TcpV4, false) | (Gso::TcpV6, true)),
        ),
        L4::Udp(u) => (u.datagram, 6, matches!(meta.gso, Gso::None | Gso::Udp)),
        _ => return false,
    };
    if !gso_fits || (meta.gso != Gso::None && !meta.checksum_partial) {
        return false;
    }
    match meta.checksum_at {
        Some((start, offset)) if meta.checksum_partial => {
            // The transport header's place in the frame: both are slices of `frame`.
            let at = (header.as_ptr() as usize).wrapping_sub(frame.as_ptr() as usize);
            usize::from(start) == at && offset == checksum_at
        }
        _ => true,
    }
}

/// The engine's decision on one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Forward or drop.
    pub action: Action,
    /// Why: the stable reason code (and the path, exception or rule that allowed it).
    pub reason: Reason,
    /// True when `mode = "monitor"` forwarded a frame that enforce mode would drop.
    pub monitored: bool,
    /// The packet's addresses, when it was IP and parsed.
    pub packet: Option<PacketInfo>,
    /// What application inspection concluded on this packet, if it concluded anything:
    /// the flow was identified, or cut (with the application expected and seen).
    pub finding: Option<Finding>,
    /// The policy generation the verdict was made under (alerts name zones, ports and
    /// paths in the policy of this generation).
    pub generation: u32,
}

impl Verdict {
    fn new(reason: Reason, packet: Option<PacketInfo>) -> Verdict {
        let action = if reason.allowed() { Action::Forward } else { Action::Drop };
        Verdict { action, reason, monitored: false, packet, finding: None, generation: 0 }
    }

    /// True when this verdict should raise an alert: anything enforce mode drops.
    pub fn is_alert(&self) -> bool {
        !self.reason.allowed()
    }
}

/// A policy together with the generation number that flows cache their decisions under.
pub struct Loaded {
    /// The compiled policy.
    pub policy: Arc<Policy>,
    /// Increases at every reload and every time an exception expires, so that every
    /// flow's cached decision is made again at its next packet.
    pub generation: u32,
    /// The next exception expiry still ahead of this generation (wall clock, ns;
    /// `u64::MAX`: none).
    next_expiry: u64,
    /// The wall-clock time this generation began at when an exception's expiry began it
    /// (0 after a reload). Decisions under it never use an earlier time: a worker whose
    /// clock reading is a little behind another's must not decide "allow by exception"
    /// under the generation that exists because that exception expired.
    since: u64,
    /// The generation that loaded this policy (kept by the generations an expiry starts):
    /// what per-leg counters belong to.
    policy_id: u32,
    /// Each path's first flat leg index ([`Policy::leg_index`]), at hand for counting
    /// every packet of a path leg without going through the policy.
    leg_base: Arc<[u32]>,
    /// The generation before this one and its policy: what a flow decided then was
    /// checked under, when a re-decision asks whether its check still holds.
    previous: Option<(u32, Arc<Policy>)>,
}

/// Each path's first flat leg index in `policy`.
fn leg_base(policy: &Policy) -> Arc<[u32]> {
    let mut next = 0u32;
    policy
        .paths()
        .iter()
        .map(|p| {
            let first = next;
            next = next.saturating_add(u32::try_from(p.legs.len()).unwrap_or(u32::MAX));
            first
        })
        .collect()
}

/// The first exception expiry after `after` (wall clock, ns), or `u64::MAX`.
fn next_expiry(policy: &Policy, after: Option<u64>) -> u64 {
    policy
        .exceptions()
        .iter()
        .filter_map(|e| e.expires.map(|t| t.0))
        .filter(|t| after.is_none_or(|a| *t > a))
        .min()
        .unwrap_or(u64::MAX)
}

/// A reload was refused; the running policy stays in force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// Ports and interfaces are opened at start; changing them needs a restart.
    #[error("the [[port]] list changed ({0}); ports are opened at start: restart sekishod to apply it")]
    PortsChanged(String),
    /// The flow table is sized at start.
    #[error("the [flow] section changed; the flow table is sized at start: restart sekishod to apply it")]
    FlowChanged,
    /// The inspection table and the monitor's tables are sized at start.
    #[error("the [{0}] section changed; it is applied at start: restart sekishod to apply it")]
    SizedAtStart(&'static str),
}

/// The engine: one policy, one flow table, shared by every data-plane thread.
pub struct Engine {
    loaded: ArcSwap<Loaded>,
    next_generation: AtomicU32,
    flows: FlowTable,
    fragments: FragmentTable,
    inspections: inspect::Inspections,
    monitor: monitor::Monitor,
    /// The shard [`Engine::process`] counts into (any thread, `fetch_add`).
    counters: counters::Counters,
    /// Every [`Worker`]'s shard, for snapshots (locked only when a worker starts and when
    /// counters are read, never per frame).
    shards: Mutex<Vec<Arc<counters::Counters>>>,
}

/// One data-plane thread's handle on the engine: the policy cached for it (a pointer
/// comparison per frame instead of an `ArcSwap` load) and counters only it writes. Make one
/// per thread with [`Engine::worker`].
pub struct Worker<'e> {
    engine: &'e Engine,
    policy: Cache<&'e ArcSwap<Loaded>, Arc<Loaded>>,
    counters: Arc<counters::Counters>,
    /// Where inspection leaves its finding on the frame being judged.
    finding: Cell<Option<Finding>>,
}

impl Worker<'_> {
    /// Decides what to do with `frame`, which arrived at `ingress` at `now` (as
    /// [`Engine::process`], cheaper). Its transport checksum is complete.
    #[inline]
    pub fn process(&mut self, now: Now, ingress: Ingress, frame: &[u8]) -> Verdict {
        self.process_meta(now, ingress, frame, FrameMeta::default())
    }

    /// [`Worker::process`] for a frame with what the data plane knows about it.
    #[inline]
    pub fn process_meta(&mut self, now: Now, ingress: Ingress, frame: &[u8], meta: FrameMeta) -> Verdict {
        let mut loaded = self.policy.load();
        if now.wall.0 >= loaded.next_expiry {
            self.engine.expire(now.wall);
            loaded = self.policy.load();
        }
        let shard = Shard { counters: &self.counters, exclusive: true, finding: &self.finding };
        let verdict = self.engine.judge_frame(loaded, now, ingress, frame, meta, shard);
        self.counters.count(loaded, ingress, frame.len(), &verdict, true);
        verdict
    }

    /// The engine this worker feeds.
    pub fn engine(&self) -> &Engine {
        self.engine
    }
}

/// The counter shard a frame is counted into, and whether the calling thread is its only
/// writer.
#[derive(Clone, Copy)]
pub(crate) struct Shard<'a> {
    counters: &'a counters::Counters,
    exclusive: bool,
    /// Where inspection leaves its finding on this frame: the caller's, not a local of
    /// the judgement (a borrowed local there costs a copy of every verdict).
    finding: &'a Cell<Option<Finding>>,
}

/// What every stage of one frame's judgement reads.
pub(crate) struct Cx<'a> {
    engine: &'a Engine,
    loaded: &'a Loaded,
    port: &'a Port,
    ingress: Ingress,
    now: Now,
    monitor: bool,
    meta: FrameMeta,
    shard: Shard<'a>,
}

impl Cx<'_> {
    fn origin(&self) -> u16 {
        self.ingress.origin()
    }

    /// Counts an inspection finding on the leg `reason` names (`app`: and the application
    /// it names).
    pub(crate) fn count_finding(&self, reason: Reason, f: &Finding, app: bool) {
        let event = counters::LegEvent::Found(*f, app);
        self.shard.counters.leg_event(self.loaded, reason, event, self.shard.exclusive);
    }

    /// Counts a new flow on the leg `reason` names.
    pub(crate) fn count_flow(&self, reason: Reason) {
        self.shard.counters.leg_event(self.loaded, reason, counters::LegEvent::Flow, self.shard.exclusive);
    }
}

fn timeouts(policy: &Policy) -> Timeouts {
    let f = policy.flow();
    Timeouts::from_secs(
        f.tcp_syn_timeout_s,
        f.tcp_established_timeout_s,
        f.tcp_closing_timeout_s,
        f.udp_timeout_s,
        f.icmp_timeout_s,
    )
}

impl Engine {
    /// An engine enforcing `policy`, with a flow table sized by its `[flow]` section and
    /// shared fairly between the port sides flows are opened from.
    pub fn new(policy: Policy) -> Engine {
        let origins = (2 * policy.ports().len()).max(1);
        let flows = FlowTable::new(policy.flow().capacity, origins, timeouts(&policy));
        let fragments = FragmentTable::new(resolve::FRAGMENT_CAPACITY, origins, resolve::FRAGMENT_LIFETIME);
        let counters = counters::Counters::new(policy.ports().len());
        let next_expiry = next_expiry(&policy, None);
        let inspections = inspect::Inspections::new(policy.inspect(), origins);
        let monitor = monitor::Monitor::new(policy.monitor());
        Engine {
            loaded: ArcSwap::from_pointee(Loaded {
                leg_base: leg_base(&policy),
                policy: Arc::new(policy),
                generation: 1,
                next_expiry,
                since: 0,
                policy_id: 1,
                previous: None,
            }),
            next_generation: AtomicU32::new(2),
            flows,
            fragments,
            inspections,
            monitor,
            counters,
            shards: Mutex::new(Vec::new()),
        }
    }

    /// A handle for one data-plane thread (see [`Worker`]).
    pub fn worker(&self) -> Worker<'_> {
        let ports = self.loaded.load().policy.ports().len();
        let shard = Arc::new(counters::Counters::new(ports));
        if let Ok(mut shards) = self.shards.lock() {
            shards.push(shard.clone());
        }
        Worker { engine: self, policy: Cache::new(&self.loaded), counters: shard, finding: Cell::new(None) }
    }

    /// The policy in force (cheap; lock-free).
    pub fn loaded(&self) -> arc_swap::Guard<Arc<Loaded>> {
        self.loaded.load()
    }

    /// Replaces the policy. Existing flows are re-decided at their next packet: a flow
    /// the new policy denies is cut then. Ports and the `[flow]` section cannot change
    /// without a restart. Returns the new generation.
    pub fn reload(&self, policy: Policy) -> Result<u32, ReloadError> {
        let current = self.loaded.load();
        let old = current.policy.ports();
        let new = policy.ports();
        if old.len() != new.len() {
            return Err(ReloadError::PortsChanged(format!("{} ports before, {} now", old.len(), new.len())));
        }
        for (a, b) in old.iter().zip(new) {
            if (&a.name, &a.inside, &a.outside) != (&b.name, &b.inside, &b.outside) {
                return Err(ReloadError::PortsChanged(format!("port \"{}\" differs", a.name)));
            }
        }
        if timeouts(&policy) != *self.flows.timeouts()
            || policy.flow().capacity != current.policy.flow().capacity
        {
            return Err(ReloadError::FlowChanged);
        }
        if policy.inspect() != current.policy.inspect() {
            return Err(ReloadError::SizedAtStart("inspect"));
        }
        if policy.monitor() != current.policy.monitor() {
            return Err(ReloadError::SizedAtStart("monitor"));
        }
        let generation = self.next_generation.fetch_add(1, Relaxed);
        let next_expiry = next_expiry(&policy, None);
        let policy_id = generation;
        self.loaded.store(Arc::new(Loaded {
            leg_base: leg_base(&policy),
            policy: Arc::new(policy),
            generation,
            next_expiry,
            since: 0,
            policy_id,
            previous: Some((current.generation, current.policy.clone())),
        }));
        Ok(generation)
    }

    /// An exception expired at or before `wall`: starts a new generation of the same policy
    /// (so that every flow is decided again), unless another thread did first.
    #[cold]
    fn expire(&self, wall: Timestamp) {
        let l = self.loaded.load();
        if wall.0 < l.next_expiry {
            return;
        }
        let next = Loaded {
            policy: l.policy.clone(),
            generation: self.next_generation.fetch_add(1, Relaxed),
            next_expiry: next_expiry(&l.policy, Some(wall.0)),
            since: l.next_expiry,
            policy_id: l.policy_id,
            leg_base: l.leg_base.clone(),
            previous: Some((l.generation, l.policy.clone())),
        };
        // If another thread moved first (expiry or reload), its policy stands.
        let _ = self.loaded.compare_and_swap(&l, Arc::new(next));
    }

    /// Decides what to do with `frame`, which arrived at `ingress` at `now`. Data-plane
    /// threads use a [`Worker`] instead: the same decision, cheaper. Its transport
    /// checksum is complete.
    pub fn process(&self, now: Now, ingress: Ingress, frame: &[u8]) -> Verdict {
        self.process_meta(now, ingress, frame, FrameMeta::default())
    }

    /// [`Engine::process`] for a frame with what the data plane knows about it.
    pub fn process_meta(&self, now: Now, ingress: Ingress, frame: &[u8], meta: FrameMeta) -> Verdict {
        let mut loaded = self.loaded.load();
        if now.wall.0 >= loaded.next_expiry {
            self.expire(now.wall);
            loaded = self.loaded.load();
        }
        let finding = Cell::new(None);
        let shard = Shard { counters: &self.counters, exclusive: false, finding: &finding };
        let verdict = self.judge_frame(&loaded, now, ingress, frame, meta, shard);
        self.counters.count(&loaded, ingress, frame.len(), &verdict, false);
        verdict
    }

    /// The verdict on one frame under `loaded`, monitor mode applied.
    #[inline]
    fn judge_frame(
        &self,
        loaded: &Loaded,
        now: Now,
        ingress: Ingress,
        frame: &[u8],
        meta: FrameMeta,
        shard: Shard<'_>,
    ) -> Verdict {
        // Under a generation an expiry began, no decision uses an earlier clock reading.
        let now = Now { wall: Timestamp(now.wall.0.max(loaded.since)), ..now };
        let monitor = loaded.policy.mode() == Mode::Monitor;
        let Some(port) = loaded.policy.ports().get(usize::from(ingress.port.0)) else {
            let mut verdict = Verdict::new(Reason::Misdirected, None);
            if monitor {
                verdict.action = Action::Forward;
                verdict.monitored = true;
            }
            verdict.generation = loaded.generation;
            return verdict;
        };
        let cx = Cx { engine: self, loaded, port, ingress, now, monitor, meta, shard };
        // One call whose result is returned as it is: the verdict is written in place.
        judge(&cx, frame)
    }

    /// Removes idle flows, expired fragment records and idle inspection states (`mono`:
    /// the monotonic clock), and ends the monitor's windows that are over (reporting their
    /// summaries); returns how many flows went. The daemon calls it about once a second.
    pub fn sweep(&self, mono: u64) -> usize {
        self.fragments.sweep(mono);
        self.inspections.sweep(mono);
        self.monitor.sweep(mono);
        self.flows.sweep(mono)
    }

    /// The inspection stage's counters.
    pub fn inspection_stats(&self) -> InspectionStats {
        self.inspections.stats()
    }

    /// The monitor's counters.
    pub fn monitor_stats(&self) -> MonitorStats {
        self.monitor.stats()
    }

    /// Takes the detections of scans and floods waiting since the last call (at most 1024
    /// wait; more are counted as lost in [`MonitorStats`]), oldest first, and calls `f`
    /// with each; returns how many. For the alert pipeline: never called on the packet
    /// path.
    pub fn drain_detections(&self, f: impl FnMut(Detection)) -> usize {
        self.monitor.drain(f)
    }

    /// Counters per path leg since the policy in force was loaded, summed over every
    /// worker, in the order of the policy's paths and legs.
    pub fn leg_stats(&self) -> Vec<LegStats> {
        let loaded = self.loaded.load();
        let mut out: Vec<LegStats> = loaded
            .policy
            .paths()
            .iter()
            .flat_map(|p| {
                (1..=p.legs.len()).map(|leg| LegStats {
                    path: p.name.clone(),
                    method: Some(p.method),
                    leg: leg as u16,
                    ..LegStats::default()
                })
            })
            .collect();
        self.counters.add_legs_to(&loaded, &mut out);
        if let Ok(shards) = self.shards.lock() {
            for s in shards.iter() {
                s.add_legs_to(&loaded, &mut out);
            }
        }
        out
    }

    /// Counters per reason code and per port, summed over every worker.
    pub fn counters(&self) -> CounterSnapshot {
        let mut total = self.counters.snapshot();
        if let Ok(shards) = self.shards.lock() {
            for s in shards.iter() {
                s.add_to(&mut total);
            }
        }
        total
    }

    /// The flow table's counters.
    pub fn flow_stats(&self) -> TableStats {
        self.flows.stats()
    }

    /// Flows opened from `ingress` now, and how many new ones it was refused for want of
    /// room.
    pub fn origin_stats(&self, ingress: Ingress) -> (usize, u64) {
        self.flows.origin_stats(usize::from(ingress.origin()))
    }

    /// Calls `f` for every flow with its key, a snapshot of its entry, and its reason.
    pub fn for_each_flow(&self, mut f: impl FnMut(&FlowKey, &FlowSnapshot, Reason)) {
        self.flows.for_each(|k, e| {
            let s = e.snapshot();
            let r =
                inspect::word::cut(e.inspect_state()).unwrap_or_else(|| reason::decode(s.decision.verdict));
            f(k, &s, r);
        });
    }
}

/// Stages 1–2 (parse, VLAN, non-IP), then the IP stages; monitor mode applied.
fn judge(cx: &Cx<'_>, frame: &[u8]) -> Verdict {
    let parsed = match parse_ethernet(frame) {
        Ok(p) => p,
        Err(_) => return monitored(cx, Verdict::new(Reason::Malformed, None)),
    };
    if let Err(r) = ingress::vlan(cx.port, parsed.vlan) {
        return monitored(cx, Verdict::new(r, None));
    }
    if cx.meta.offloaded() && !offload_fits(cx.meta, frame, &parsed.l3) {
        return monitored(cx, Verdict::new(Reason::Malformed, None));
    }
    let ip = match &parsed.l3 {
        L3::Ip(ip) => ip,
        L3::Arp => return monitored(cx, Verdict::new(Reason::Link, None)),
        &L3::Other { ethertype } => {
            let listed = cx.loaded.policy.allow_ethertypes().contains(&ethertype);
            return monitored(cx, Verdict::new(if listed { Reason::Link } else { Reason::NonIp }, None));
        }
    };
    let (sport, dport) = ip.ports();
    let info = PacketInfo { protocol: ip.protocol, src: ip.src, dst: ip.dst, sport, dport };
    let mut v = Verdict::new(judge_ip(cx, parsed.vlan.key(), ip, frame.len()), Some(info));
    v.finding = cx.shard.finding.take();
    monitored(cx, v)
}

/// Monitor mode forwards what enforce mode drops, and says so; the verdict names its
/// policy generation.
#[inline]
fn monitored(cx: &Cx<'_>, mut v: Verdict) -> Verdict {
    if cx.monitor && v.action == Action::Drop {
        v.action = Action::Forward;
        v.monitored = true;
    }
    v.generation = cx.loaded.generation;
    v
}

/// Stages 2–6 for an IP packet.
fn judge_ip(cx: &Cx<'_>, vlan: u32, ip: &Ip<'_>, len: usize) -> Reason {
    if link::is_link_traffic(&cx.loaded.policy, cx.port, cx.ingress.side, ip) {
        return Reason::Link;
    }
    if let Err(r) = ingress::addresses(&ip.src, &ip.dst) {
        return r;
    }
    if let L4::Icmp(_) = ip.l4 {
        if cx.engine.monitor.watched(&cx.loaded.policy, cx.port, cx.ingress.side) {
            cx.engine.monitor.icmp(cx.now.mono, ip.dst);
        }
    }
    match ip.l4 {
        L4::NotFirstFragment(data) => return resolve::later_fragment(cx, vlan, ip, data),
        L4::Icmp(i) if i.is_error() => return resolve::icmp_error(cx, vlan, ip, &i),
        L4::Tcp(t) if t.flags.is_invalid() => return Reason::Malformed,
        _ => {}
    }
    let p = resolve::packet(cx, vlan, ip, len);
    let reason = match ip.l4 {
        L4::Icmp(i) if !i.is_echo_request() && !i.is_echo_reply() => track::stateless(cx, &p),
        _ => track::track(cx, &p),
    };
    if ip.fragment.is_some() && (reason.allowed() || cx.monitor) {
        resolve::first_fragment(cx, vlan, ip, &p);
    }
    reason
}
