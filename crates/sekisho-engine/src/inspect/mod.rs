//! Stage 6, application inspection: on a flow whose service names an `app`, the bytes the
//! endpoints will actually accept are checked against that application, in order, across
//! segment boundaries, up to `[inspect] depth` bytes per direction; then the verdict is
//! kept and the flow's packets take the fast path again.
//!
//! - **Which bytes.** TCP: only segments the tracker accepts (in window), whose checksum
//!   is right (unless the data plane says the sending host's kernel completes it), that
//!   are not IP fragments and not RSTs (whose data no receiver delivers). Each direction
//!   is read from its first data byte on; a segment beyond the next expected byte is
//!   dropped (`deny:out-of-window`: the sender sends it again in order), one that repeats
//!   inspected bytes must repeat them exactly or the flow is cut. Inspected bytes are kept
//!   until the receiver acknowledges them, so a decoy the receiver never got (a TTL that
//!   expires past the gate) cannot be replaced afterwards. UDP: every datagram alone.
//! - **State.** Only flows being inspected have any: a bounded table of inspection states
//!   (`[inspect] max_flows`), charged per origin and initiator's zone kind like the flow
//!   table (so internet initiators cannot take the room of LGWAN ones where both arrive),
//!   each state freed once its verdict is kept and everything inspected has been
//!   acknowledged. When the table is full, a segment that needs a new state is dropped
//!   (`deny:flow-table-full`, counted; the sender retries); a flow whose state was lost
//!   (evicted when idle, expired) is cut at its next data (fail closed).
//! - **Verdicts.** A mismatch cuts the flow for good: `deny:app-mismatch`, the expected
//!   and seen application in [`Finding`]; on the text leg of a mail path, content that is
//!   not text-ified cuts it with `deny:not-sanitized`.

mod dns;
mod http;
mod identify;
mod mime;
mod rdp;
mod smtp;
mod ssh;
mod stream;
mod tls;
mod validate;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, TryLockError};

use sekisho_flow::map::{BoundedMap, Eviction, Slot};
use sekisho_flow::{FlowEntry, FlowKey, FlowState, Pinned};
use sekisho_policy::{App, Method, Reason, ZoneKind};

use crate::track::{self, Packet};
use crate::Cx;
use stream::{Accept, Dir};
use validate::{side, Env, Outcome, Validator};

/// What a stream that failed its check looked like (a best guess), or what a flow was
/// identified as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Seen {
    /// SMTP.
    Smtp,
    /// RDP (TPKT / X.224, or the RDPEUDP SYN).
    Rdp,
    /// TLS.
    Tls,
    /// HTTP/1.x.
    Http,
    /// An HTTP CONNECT request: a tunnel.
    HttpConnect,
    /// Citrix ICA.
    Ica,
    /// SSH.
    Ssh,
    /// DNS.
    Dns,
    /// DNS that looks like a tunnel (long random labels, NULL/TXT floods).
    DnsTunnel,
    /// VNC / RFB.
    Vnc,
    /// Nothing recognised.
    Unknown,
}

impl Seen {
    /// Every value, in [`Seen::index`] order.
    pub const ALL: [Seen; 11] = [
        Seen::Smtp,
        Seen::Rdp,
        Seen::Tls,
        Seen::Http,
        Seen::HttpConnect,
        Seen::Ica,
        Seen::Ssh,
        Seen::Dns,
        Seen::DnsTunnel,
        Seen::Vnc,
        Seen::Unknown,
    ];

    /// The position in [`Seen::ALL`] (a counter index).
    pub fn index(self) -> usize {
        self as usize
    }

    /// A short name (`"smtp"`, `"http-connect"`, `"dns-tunnel"`, `"unknown"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Seen::Smtp => "smtp",
            Seen::Rdp => "rdp",
            Seen::Tls => "tls",
            Seen::Http => "http",
            Seen::HttpConnect => "http-connect",
            Seen::Ica => "ica",
            Seen::Ssh => "ssh",
            Seen::Dns => "dns",
            Seen::DnsTunnel => "dns-tunnel",
            Seen::Vnc => "vnc",
            Seen::Unknown => "unknown",
        }
    }

    /// What a flow of application `app` is identified as when its check passes.
    pub fn of(app: App) -> Seen {
        match app {
            App::Smtp => Seen::Smtp,
            App::Rdp => Seen::Rdp,
            App::Tls => Seen::Tls,
            App::Http => Seen::Http,
            App::Ica => Seen::Ica,
            App::Ssh => Seen::Ssh,
            App::Dns => Seen::Dns,
            App::Vnc => Seen::Vnc,
            _ => Seen::Unknown,
        }
    }
}

/// What inspection concluded on a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindingKind {
    /// The flow's check passed: it is the service's application (the verdict is kept).
    Identified,
    /// It is not: the flow is cut (`deny:app-mismatch`).
    Mismatch,
    /// Content on the text leg of a mail path that is not text-ified: the flow is cut
    /// (`deny:not-sanitized`).
    NotSanitized,
}

/// An inspection result for the alert and the counters: the application the service
/// expects, what was seen, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What happened.
    pub kind: FindingKind,
    /// The service's application.
    pub expected: App,
    /// What the flow was seen to carry.
    pub seen: Seen,
    /// Why, in a few words (`"CONNECT opens a tunnel the service does not allow"`,
    /// `"server name not in sni_allow"`, `"base64 body"`).
    pub detail: &'static str,
}

/// The per-flow inspection word ([`FlowEntry::inspect_state`]).
pub(crate) mod word {
    use sekisho_policy::{App, Reason};

    /// Nothing to check (the service names no application it inspects): the fast path.
    pub(crate) const CHECKED: u8 = 0;
    /// `| code`: checked as that application, the verdict kept: the fast path too.
    pub(crate) const CHECKED_AS: u8 = 0x80;
    /// `| code`: inspection has a state in the table.
    pub(crate) const STARTED: u8 = 0x10;
    /// `| count`: DNS over UDP, with the suspicious messages seen so far.
    pub(crate) const DNS_UDP: u8 = 0x20;
    /// `| count`: DNS over UDP that the responder has answered (identified).
    pub(crate) const DNS_UDP_ANSWERED: u8 = 0x40;

    /// Whether the word is one of the DNS-over-UDP states.
    #[inline]
    pub(crate) fn is_dns_udp(word: u8) -> bool {
        matches!(word & 0xe0, DNS_UDP | DNS_UDP_ANSWERED)
    }
    /// Cut: the inspection state was lost (`deny:flow-table-full`).
    pub(crate) const CUT_LOST: u8 = 0xfd;
    /// Cut: not sanitised (`deny:not-sanitized`).
    pub(crate) const CUT_NOT_SANITIZED: u8 = 0xfe;
    /// Cut: application mismatch (`deny:app-mismatch`).
    pub(crate) const CUT: u8 = 0xff;

    /// The applications inspected, in code order (code = index + 1).
    const APPS: [App; 8] = [App::Smtp, App::Rdp, App::Tls, App::Http, App::Ica, App::Ssh, App::Dns, App::Vnc];

    /// The word a new flow of `app` starts with ([`CHECKED`] when `app` is not inspected).
    pub(crate) fn pending(app: App) -> u8 {
        APPS.iter().position(|a| *a == app).map_or(CHECKED, |i| i as u8 + 1)
    }

    /// The word of a flow whose check as `app` is over, its verdict kept.
    pub(crate) fn checked(app: App) -> u8 {
        match pending(app) {
            CHECKED => CHECKED,
            code => CHECKED_AS | code,
        }
    }

    /// Whether a flow with `word` has been (or is being) checked as `app` — what a
    /// re-decision under a reloaded policy now asks of it. A flow opened while its service
    /// named no application, or another one, was never read as `app`, and its stream
    /// cannot be read from the middle.
    pub(crate) fn covers(word: u8, app: App) -> bool {
        let code = pending(app);
        if code == CHECKED {
            return true;
        }
        if is_dns_udp(word) {
            return app == App::Dns;
        }
        word != CHECKED && word & 0x0f == code
    }

    /// Whether the flow's bytes were (or are being) read by a check: checked as an
    /// application, or started.
    pub(crate) fn inspected(word: u8) -> bool {
        matches!(word & 0xf0, CHECKED_AS | STARTED)
    }

    /// The application of a pending or started word.
    pub(crate) fn app(word: u8) -> App {
        usize::from(word & 0x0f).checked_sub(1).and_then(|i| APPS.get(i)).copied().unwrap_or(App::Any)
    }

    /// The reason a cut flow is denied with, for good.
    #[inline]
    pub(crate) fn cut(word: u8) -> Option<Reason> {
        match word {
            CUT => Some(Reason::AppMismatch),
            CUT_NOT_SANITIZED => Some(Reason::NotSanitized),
            CUT_LOST => Some(Reason::FlowTableFull),
            _ => None,
        }
    }
}

/// Counters of the inspection stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InspectionStats {
    /// Flows with an inspection state now.
    pub active: usize,
    /// The bound on them (`[inspect] max_flows`).
    pub capacity: usize,
    /// States created.
    pub started: u64,
    /// States freed after their verdict was kept and delivered.
    pub released: u64,
    /// Segments dropped because no state could be made (table full).
    pub table_full: u64,
    /// Flows cut because their state was evicted or had expired.
    pub lost: u64,
    /// Segments dropped because another thread held the flow's state.
    pub busy: u64,
    /// Segments dropped because they started beyond the next expected byte.
    pub ahead: u64,
    /// Segments dropped on the text leg until the receiver acknowledges what was
    /// inspected.
    pub window_full: u64,
    /// Segments dropped for a wrong checksum.
    pub bad_checksum: u64,
    /// Fragments (TCP or UDP) of inspected flows refused.
    pub fragments: u64,
    /// Flows cut because a retransmission differed from what was inspected.
    pub retransmission_differs: u64,
    /// Flows whose check passed.
    pub identified: u64,
    /// Flows cut as another application.
    pub mismatches: u64,
    /// Flows cut as not sanitised.
    pub not_sanitized: u64,
    /// Suspicious DNS messages (tunnelling signs) seen.
    pub dns_suspicious: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    started: AtomicU64,
    released: AtomicU64,
    table_full: AtomicU64,
    lost: AtomicU64,
    busy: AtomicU64,
    ahead: AtomicU64,
    window_full: AtomicU64,
    bad_checksum: AtomicU64,
    fragments: AtomicU64,
    retransmission_differs: AtomicU64,
    identified: AtomicU64,
    mismatches: AtomicU64,
    not_sanitized: AtomicU64,
    dns_suspicious: AtomicU64,
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Relaxed);
}

/// Unacknowledged bytes the text leg of a mail path may have in flight (inspected, not
/// yet acknowledged by the receiver).
const TEXT_LEG_WINDOW: usize = 128 * 1024;
/// Attempts at a state another thread holds before the segment is dropped.
const LOCK_SPINS: u32 = 1 << 10;
/// An inspection idle this long may be evicted to make room for another.
const EVICTABLE_IDLE_NS: u64 = 5_000_000_000;

/// Everything inspection keeps about one flow.
struct Stream {
    app: App,
    text_leg: bool,
    validator: Validator,
    dirs: [Dir; 2],
    /// The check has passed (counted once).
    identified: bool,
}

/// One entry of the inspection table.
pub(crate) struct Inspection {
    /// The flow's table bucket: its origin and its initiator's zone kind (as in the flow
    /// table).
    bucket: usize,
    last: AtomicU64,
    stream: Mutex<Stream>,
}

/// Idle limits of the inspection table.
pub(crate) struct Idle {
    expire: u64,
}

impl Slot for Inspection {
    type Ctx = Idle;

    fn bucket(&self) -> usize {
        self.bucket
    }

    fn is_expired(&self, now: u64, ctx: &Idle) -> bool {
        now.saturating_sub(self.last.load(Relaxed)) > ctx.expire
    }

    fn eviction(&self, now: u64, _: &Idle) -> Eviction {
        if now.saturating_sub(self.last.load(Relaxed)) > EVICTABLE_IDLE_NS {
            Eviction::Now
        } else {
            Eviction::Later
        }
    }
}

/// The inspection table and its counters.
pub(crate) struct Inspections {
    map: BoundedMap<FlowKey, Inspection>,
    depth: usize,
    dns_threshold: u8,
    counters: Counters,
}

impl Inspections {
    pub(crate) fn new(settings: &sekisho_policy::InspectSettings, origins: usize) -> Inspections {
        let expire = settings.idle_timeout_s.saturating_mul(1_000_000_000);
        Inspections {
            map: BoundedMap::new(settings.max_flows, origins * sekisho_flow::SHARES, Idle { expire }),
            depth: settings.depth,
            dns_threshold: settings.dns_tunnel_threshold,
            counters: Counters::default(),
        }
    }

    pub(crate) fn sweep(&self, now: u64) -> usize {
        self.map.sweep(now)
    }

    pub(crate) fn stats(&self) -> InspectionStats {
        let c = &self.counters;
        let m = self.map.stats();
        InspectionStats {
            active: m.entries,
            capacity: m.capacity,
            started: c.started.load(Relaxed),
            released: c.released.load(Relaxed),
            table_full: c.table_full.load(Relaxed),
            lost: c.lost.load(Relaxed),
            busy: c.busy.load(Relaxed),
            ahead: c.ahead.load(Relaxed),
            window_full: c.window_full.load(Relaxed),
            bad_checksum: c.bad_checksum.load(Relaxed),
            fragments: c.fragments.load(Relaxed),
            retransmission_differs: c.retransmission_differs.load(Relaxed),
            identified: c.identified.load(Relaxed),
            mismatches: c.mismatches.load(Relaxed),
            not_sanitized: c.not_sanitized.load(Relaxed),
            dns_suspicious: c.dns_suspicious.load(Relaxed),
        }
    }
}

/// Whether a packet of an allowed flow with inspection word `word` goes through this
/// stage.
#[inline]
pub(crate) fn involved(word: u8, p: &Packet<'_>) -> bool {
    match word {
        word::CHECKED => false,
        w if w & 0xf0 == word::CHECKED_AS => false,
        w if w & 0xf0 == word::STARTED => true,
        // A TCP fragment (its data may all be in later fragments) or an urgent pointer
        // (it marks a byte, here or later, that the receiver takes out of the stream)
        // needs this stage even without data of its own.
        _ => !p.payload.is_empty() || p.seg.is_some_and(|s| p.fragmented() || s.flags & URG != 0),
    }
}

/// Whether a data segment of a flow whose check is over (its state freed) carries bytes of
/// the checked beginning of its direction — the first `[inspect] depth` bytes — that the
/// receiver has acknowledged. Those bytes were compared against retransmissions only
/// while the state lived; once it is freed, a "retransmission" there could carry other
/// bytes, and the acknowledgement that freed it may have been forged by a host that
/// claims the receiver's address (the decoy it acknowledged never arrived). A real
/// receiver has these bytes already: refusing a repeat costs nothing, and the
/// application exchanges that are checked answer each step, which acknowledges it again.
#[inline]
pub(crate) fn repeats_checked_bytes(
    cx: &Cx<'_>,
    entry: &FlowEntry,
    p: &Packet<'_>,
    from_initiator: bool,
) -> bool {
    let (Some(seg), Some(tracker)) = (p.seg, entry.tcp()) else { return false };
    if p.payload.is_empty() {
        return false;
    }
    // Offsets from the first data byte, signed: a segment may start before it (at the
    // SYN's own number, or a window back) and still carry the checked beginning — the
    // receiver takes its bytes from its first data byte on. Before the receiver's first
    // acknowledgement, `acked` is one byte before the stream (nothing acknowledged).
    let first = tracker.isn(from_initiator).wrapping_add(1);
    let start = i64::from(seg.seq.wrapping_sub(first) as i32);
    let end = start + p.payload.len() as i64;
    let acked = i64::from(tracker.acked(from_initiator).wrapping_sub(first) as i32);
    let checked = acked.min(cx.engine.inspections.depth as i64);
    start < checked && end > 0
}

/// The TCP URG flag.
const URG: u16 = 0x20;

/// What the checks need to know about the flow: its service, and whether it is the leg
/// of a mail-text path that delivers into an lgwan zone.
fn env<'a>(cx: &'a Cx<'_>, entry: &FlowEntry, key: &FlowKey, reason: Reason) -> Env<'a> {
    let policy = &cx.loaded.policy;
    let text_leg = match reason {
        Reason::Path { path, .. } => {
            let mail = policy.paths().get(path.index()).is_some_and(|p| p.method == Method::MailText);
            let responder = key.socket(entry.initiator().other()).addr;
            let into_lgwan = policy
                .zone_of(responder)
                .and_then(|z| policy.zone(z))
                .is_some_and(|z| z.kind == ZoneKind::Lgwan);
            mail && into_lgwan
        }
        _ => false,
    };
    Env { service: policy.service_of(reason), text_leg, dns_threshold: cx.engine.inspections.dns_threshold }
}

/// Records a finding: on the verdict, in the counters (`app_counted`: the flow was
/// identified before, so its application is not counted again).
fn found(cx: &Cx<'_>, reason: Reason, f: Finding, app_counted: bool) {
    let c = &cx.engine.inspections.counters;
    match f.kind {
        FindingKind::Identified => bump(&c.identified),
        FindingKind::Mismatch => bump(&c.mismatches),
        FindingKind::NotSanitized => bump(&c.not_sanitized),
    }
    cx.count_finding(reason, &f, !app_counted);
    cx.shard.finding.set(Some(f));
}

/// Cuts the flow for good and says why (`app_counted`: as for [`found`]).
fn cut(cx: &Cx<'_>, entry: &FlowEntry, reason: Reason, f: Finding, app_counted: bool) -> Reason {
    let (w, r) = match f.kind {
        FindingKind::NotSanitized => (word::CUT_NOT_SANITIZED, Reason::NotSanitized),
        _ => (word::CUT, Reason::AppMismatch),
    };
    entry.set_inspect_state(w);
    found(cx, reason, f, app_counted);
    r
}

fn lock(m: &Mutex<Stream>) -> Option<MutexGuard<'_, Stream>> {
    for _ in 0..LOCK_SPINS {
        match m.try_lock() {
            Ok(g) => return Some(g),
            Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => std::hint::spin_loop(),
        }
    }
    None
}

/// A TCP or UDP packet of an allowed flow that this stage is [`involved`] in: checks it,
/// accounts it with the tracker, and returns the verdict (`reason`, or why not).
pub(crate) fn packet(
    cx: &Cx<'_>,
    flows: &Pinned<'_>,
    entry: &FlowEntry,
    p: &Packet<'_>,
    from_initiator: bool,
    reason: Reason,
) -> Reason {
    let c = &cx.engine.inspections.counters;
    let tcp = p.seg.is_some();
    let rst = p.seg.is_some_and(|s| s.flags & sekisho_flow::tcp_flags::RST != 0);
    // A RST's data is never delivered: nothing to inspect.
    let data = if rst { &[][..] } else { p.payload };
    if p.fragmented() || (!tcp && cx.meta.gso != crate::Gso::None) {
        // Also a first fragment that ends with the TCP header, or a datagram's first
        // piece that reads as a whole message: the data in the later fragments would
        // follow the flow unread. A UDP super-datagram likewise: it is split after the
        // gate into datagrams of its own, each a message the check never read as one.
        bump(&c.fragments);
        return Reason::Fragment;
    }
    if p.seg.is_some_and(|s| s.flags & URG != 0) {
        // Urgent data: a receiver without SO_OOBINLINE (the default) takes the urgent
        // byte out of the stream, so the bytes it delivers are not the bytes inspected.
        return Reason::Malformed;
    }
    if !data.is_empty() && !cx.meta.checksum_partial && !p.checksum_ok() {
        bump(&c.bad_checksum);
        return Reason::Malformed;
    }
    if !tcp {
        if !track::observe(cx, flows, entry, p, from_initiator) {
            return Reason::OutOfWindow;
        }
        return datagram(cx, entry, p, from_initiator, reason);
    }
    segment(cx, flows, entry, p, from_initiator, reason, data)
}

fn segment(
    cx: &Cx<'_>,
    flows: &Pinned<'_>,
    entry: &FlowEntry,
    p: &Packet<'_>,
    from_initiator: bool,
    reason: Reason,
    data: &[u8],
) -> Reason {
    let ins = &cx.engine.inspections;
    let c = &ins.counters;
    let now = cx.now.mono;
    let word = entry.inspect_state();
    let started = word & 0xf0 == word::STARTED;
    let table = ins.map.pin();
    let slot = match table.get(&p.key, now) {
        Some(s) => s,
        None if started => {
            if data.is_empty() {
                return if track::observe(cx, flows, entry, p, from_initiator) {
                    reason
                } else {
                    Reason::OutOfWindow
                };
            }
            bump(&c.lost);
            entry.set_inspect_state(word::CUT_LOST);
            return Reason::FlowTableFull;
        }
        None => {
            let app = word::app(word);
            let env = env(cx, entry, &p.key, reason);
            let Some(validator) = Validator::new(app, &env) else {
                entry.set_inspect_state(word::checked(app));
                return if track::observe(cx, flows, entry, p, from_initiator) {
                    reason
                } else {
                    Reason::OutOfWindow
                };
            };
            let (cap, limit) = (ins.depth, ins.depth as u64);
            let client =
                if env.text_leg { Dir::new(TEXT_LEG_WINDOW, u64::MAX) } else { Dir::new(cap, limit) };
            let server = if env.text_leg { Dir::new(cap, u64::MAX) } else { Dir::new(cap, limit) };
            let stream =
                Stream { app, text_leg: env.text_leg, validator, dirs: [client, server], identified: false };
            let value =
                Inspection { bucket: entry.bucket(), last: AtomicU64::new(now), stream: Mutex::new(stream) };
            match table.insert(p.key, value, now, true) {
                Ok(s) => {
                    bump(&c.started);
                    entry.set_inspect_state(word::STARTED | (word & 0x0f));
                    s
                }
                Err(_) => {
                    bump(&c.table_full);
                    return Reason::FlowTableFull;
                }
            }
        }
    };
    let Some(mut stream) = lock(&slot.stream) else {
        bump(&c.busy);
        return Reason::OutOfWindow;
    };
    let Some(tracker) = entry.tcp() else { return Reason::OutOfWindow };
    let seg = p.seg.unwrap_or_default();
    let syn = seg.flags & sekisho_flow::tcp_flags::SYN != 0;
    let d = side(from_initiator);
    let bare_syn = syn && seg.flags & sekisho_flow::tcp_flags::ACK == 0;
    if bare_syn && from_initiator && stream.dirs[d].started && seg.seq != tracker.isn(true) {
        // A new SYN with another initial sequence number would restart the tracker under
        // a stream read from the old one: the new stream's bytes would all lie "before"
        // what was inspected and pass unread. A real client that sent data on its SYN
        // does not start over with another number on the same ports.
        let f = Finding {
            kind: FindingKind::Mismatch,
            expected: stream.app,
            seen: Seen::Unknown,
            detail: "a new SYN after data was inspected",
        };
        let identified = stream.identified;
        let r = cut(cx, entry, reason, f, identified);
        drop(stream);
        if table.remove(&p.key) {
            bump(&c.released);
        }
        return r;
    }
    if !data.is_empty() && !stream.dirs[d].started {
        // The first data byte: right after this end's SYN. Not where the tracker says the
        // end is now: a bare ACK or a FIN ahead of the data moves that without any data,
        // and the bytes between would never be read.
        let first = if syn { seg.seq.wrapping_add(1) } else { tracker.isn(from_initiator).wrapping_add(1) };
        stream.dirs[d].start(first);
    }
    if !track::observe(cx, flows, entry, p, from_initiator) {
        return Reason::OutOfWindow;
    }
    slot.last.store(now, Relaxed);
    let mut verdict = reason;
    if !data.is_empty() {
        let env = env(cx, entry, &p.key, reason);
        let seq = if syn { seg.seq.wrapping_add(1) } else { seg.seq };
        verdict = inspect(
            cx,
            entry,
            &mut stream,
            &env,
            from_initiator,
            seq,
            data,
            tracker.acked(from_initiator),
            reason,
        );
    }
    let done =
        stream.dirs.iter().enumerate().all(|(i, dir)| dir.done && dir.delivered(tracker.acked(i == 0)));
    let closed = entry.state() == FlowState::Closed;
    let cut = word::cut(entry.inspect_state()).is_some();
    if closed && !cut {
        identify(cx, &mut stream, reason, true);
    }
    if done || closed || cut {
        let app = stream.app;
        drop(stream);
        if table.remove(&p.key) {
            bump(&c.released);
        }
        if done && !cut {
            entry.set_inspect_state(word::checked(app));
        }
    }
    verdict
}

/// The data of one accepted segment: reassembled in order, then checked.
#[allow(clippy::too_many_arguments)]
fn inspect(
    cx: &Cx<'_>,
    entry: &FlowEntry,
    stream: &mut Stream,
    env: &Env<'_>,
    from_initiator: bool,
    seq: u32,
    data: &[u8],
    acked: u32,
    reason: Reason,
) -> Reason {
    let c = &cx.engine.inspections.counters;
    let d = side(from_initiator);
    let expected = stream.app;
    let finding = |kind, seen, detail| Finding { kind, expected, seen, detail };
    match stream.dirs[d].accept(seq, data, acked) {
        Accept::Nothing => return reason,
        Accept::Ahead => {
            bump(&c.ahead);
            return Reason::OutOfWindow;
        }
        Accept::WindowFull => {
            bump(&c.window_full);
            return Reason::OutOfWindow;
        }
        // Bytes inspected and dropped as acknowledged (class 41, while the check lives).
        Accept::Acknowledged => return Reason::OutOfWindow,
        Accept::Differs => {
            bump(&c.retransmission_differs);
            let f = finding(
                FindingKind::Mismatch,
                Seen::Unknown,
                "a retransmission differs from the inspected bytes",
            );
            return if stream.text_leg {
                cut(cx, entry, reason, Finding { kind: FindingKind::NotSanitized, ..f }, stream.identified)
            } else {
                cut(cx, entry, reason, f, stream.identified)
            };
        }
        Accept::New => {}
    }
    loop {
        let unread = stream.dirs[d].unread();
        if unread.is_empty() {
            break;
        }
        let step = stream.validator.feed(env, from_initiator, unread);
        stream.dirs[d].consumed += step.consumed;
        match step.outcome {
            Outcome::More if step.consumed > 0 => {}
            Outcome::More | Outcome::Done => break,
            Outcome::Mismatch(seen, why) => {
                return cut(cx, entry, reason, finding(FindingKind::Mismatch, seen, why), stream.identified)
            }
            Outcome::NotSanitized(why) => {
                return cut(
                    cx,
                    entry,
                    reason,
                    finding(FindingKind::NotSanitized, Seen::Smtp, why),
                    stream.identified,
                )
            }
        }
    }
    for (i, dir) in stream.dirs.iter_mut().enumerate() {
        if stream.validator.finished(i == 0) {
            dir.done = true;
        }
    }
    if !stream.dirs[d].done && stream.dirs[d].at_limit() {
        match stream.validator.at_depth(env, from_initiator) {
            Outcome::Mismatch(seen, why) => {
                return cut(cx, entry, reason, finding(FindingKind::Mismatch, seen, why), stream.identified)
            }
            _ => stream.dirs[d].done = true,
        }
    }
    identify(cx, stream, reason, false);
    reason
}

/// Reports the flow identified, once: when both directions passed their checks (DNS:
/// once a message went each way), or when it closes with what it carried checked.
fn identify(cx: &Cx<'_>, stream: &mut Stream, reason: Reason, closing: bool) {
    let done = |d: &Dir| d.done;
    let passed = stream.validator.identified([done(&stream.dirs[0]), done(&stream.dirs[1])])
        || closing && stream.dirs.iter().any(done) && stream.dirs.iter().all(|d| d.done || !d.started);
    if !stream.identified && passed {
        stream.identified = true;
        let f = Finding {
            kind: FindingKind::Identified,
            expected: stream.app,
            seen: Seen::of(stream.app),
            detail: "",
        };
        found(cx, reason, f, false);
    }
}

/// A UDP datagram of an inspected flow: DNS messages one by one (and the tunnelling
/// count), the RDPEUDP SYN.
fn datagram(cx: &Cx<'_>, entry: &FlowEntry, p: &Packet<'_>, from_initiator: bool, reason: Reason) -> Reason {
    let word = entry.inspect_state();
    let app = if word::is_dns_udp(word) { App::Dns } else { word::app(word) };
    let finding = |kind, seen, detail| Finding { kind, expected: app, seen, detail };
    match app {
        App::Dns => match dns::check(p.payload, from_initiator, p.fragmented()) {
            Err(why) => cut(
                cx,
                entry,
                reason,
                finding(FindingKind::Mismatch, identify::guess(p.payload, from_initiator), why),
                word & 0xe0 == word::DNS_UDP_ANSWERED,
            ),
            Ok(signs) => {
                let threshold = cx.engine.inspections.dns_threshold;
                let mut count = if word::is_dns_udp(word) { word & 0x1f } else { 0 };
                if signs.suspicious {
                    bump(&cx.engine.inspections.counters.dns_suspicious);
                    count = (count + 1).min(0x1f);
                }
                if count >= threshold {
                    let why = "DNS tunnelling: too many long-label or NULL/TXT queries";
                    let counted = word & 0xe0 == word::DNS_UDP_ANSWERED;
                    return cut(
                        cx,
                        entry,
                        reason,
                        finding(FindingKind::Mismatch, Seen::DnsTunnel, why),
                        counted,
                    );
                }
                // The first answer identifies the flow as DNS (it is checked on all the same).
                let answered = word & 0xe0 == word::DNS_UDP_ANSWERED || !from_initiator;
                if answered && word & 0xe0 != word::DNS_UDP_ANSWERED {
                    found(cx, reason, finding(FindingKind::Identified, Seen::Dns, ""), false);
                }
                // Concurrent datagrams may both count: the later store wins, never above
                // the true count.
                entry
                    .set_inspect_state(if answered { word::DNS_UDP_ANSWERED } else { word::DNS_UDP } | count);
                reason
            }
        },
        App::Rdp => {
            // MS-RDPEUDP: the client's SYN datagram (snSourceAck -1, the SYN flag).
            let syn = from_initiator
                && p.payload.starts_with(&[0xff, 0xff, 0xff, 0xff])
                && p.payload.get(6..8).is_some_and(|f| u16::from_be_bytes([f[0], f[1]]) & 0x0001 != 0);
            if syn {
                entry.set_inspect_state(word::checked(App::Rdp));
                found(cx, reason, finding(FindingKind::Identified, Seen::Rdp, ""), false);
                reason
            } else {
                cut(
                    cx,
                    entry,
                    reason,
                    finding(
                        FindingKind::Mismatch,
                        identify::guess(p.payload, from_initiator),
                        "no RDPEUDP SYN",
                    ),
                    false,
                )
            }
        }
        _ => {
            entry.set_inspect_state(word::checked(app));
            reason
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one inspection state costs besides its two buffers (docs/configuration.md says
    /// "about 16.5 KiB" with the default depth).
    #[test]
    fn a_state_is_its_buffers_and_little_more() {
        let fixed = std::mem::size_of::<Inspection>() + std::mem::size_of::<FlowKey>();
        assert!(fixed < 512, "{fixed} bytes");
        assert!(std::mem::size_of::<mime::Mime>() < 3 * 1024);
    }
}
