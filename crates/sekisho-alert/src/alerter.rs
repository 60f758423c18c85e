//! The alerter: the caller's side (flood control and a lock-free queue) and the
//! dispatcher thread (names, formats, summaries, event file, hand-off to targets).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_queue::ArrayQueue;
use sekisho_policy::{AlertTarget, Format, Policy, Timestamp};

use crate::event::{self, Event, NameSource};
use crate::event_file::EventFile;
use crate::format::{self, Message, APP_NAME};
use crate::kind::EventKind;
use crate::limiter::{Admit, Limiter};
use crate::record::{Notice, Record};
use crate::target::{Target, TransportSettings};

/// How many policy generations' names the dispatcher keeps (records queued under an
/// older generation are reported with ids instead of names).
const NAME_GENERATIONS: usize = 8;

/// Per kind and summary interval, at most this many `SUPPRESSED` summaries name one
/// source each; the rest of the kind is summarised in one message.
const MAX_SOURCE_SUMMARIES: usize = 16;

/// Records formatted per dispatcher round before it looks at notices and summaries
/// again.
const BATCH: usize = 1024;

/// Bounds and timings. The defaults suit a gateway; tests shorten them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Capacity of the data plane → dispatcher queue (records).
    pub queue_capacity: usize,
    /// Capacity of the control-plane notice queue.
    pub notice_capacity: usize,
    /// Flood-control slots per event kind (rounded up to a power of two).
    pub slots_per_kind: usize,
    /// One alert per (kind, source) per `interval` on average…
    pub interval: Duration,
    /// …after a burst of this many.
    pub burst: u32,
    /// How often suppressed and dropped counts become summary messages.
    pub summary_interval: Duration,
    /// How often the dispatcher looks at the queue when idle (the data plane never
    /// wakes it: that would be a system call per alert).
    pub poll_interval: Duration,
    /// Per target: messages buffered while a collector is slow or away.
    pub target_buffer_messages: usize,
    /// Per target: bytes buffered.
    pub target_buffer_bytes: usize,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Socket write timeout.
    pub write_timeout: Duration,
    /// First reconnect delay; doubles after each failure…
    pub backoff_initial: Duration,
    /// …up to this.
    pub backoff_max: Duration,
    /// Largest datagram (UDP, unix), bytes; the text is cut to fit. RFC 5426 asks
    /// receivers to take at least 480 (IPv4) and should take 2048.
    pub max_datagram: usize,
    /// Largest message on a TCP stream, bytes.
    pub max_stream_message: usize,
    /// How long a record of a policy generation newer than any registered with
    /// [`Alerter::set_names`] waits for its names (a worker may judge under a new
    /// generation a moment before the control plane registers it); after that it is
    /// reported with ids.
    pub names_wait: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            queue_capacity: 4096,
            notice_capacity: 256,
            slots_per_kind: 256,
            interval: Duration::from_secs(1),
            burst: 5,
            summary_interval: Duration::from_secs(10),
            poll_interval: Duration::from_millis(10),
            target_buffer_messages: 10_000,
            target_buffer_bytes: 8 << 20,
            connect_timeout: Duration::from_secs(3),
            write_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            max_datagram: 2048,
            max_stream_message: 8192,
            names_wait: Duration::from_millis(200),
        }
    }
}

/// Everything [`Alerter::start`] needs.
#[derive(Clone, Debug)]
pub struct AlerterConfig {
    /// The collectors (`[[alert.target]]`).
    pub targets: Vec<AlertTarget>,
    /// The local JSON-lines file (`[alert] event_file`).
    pub event_file: Option<PathBuf>,
    /// HOSTNAME of every message (default: the kernel's host name).
    pub hostname: String,
    /// PROCID of every message (default: this process's id).
    pub procid: String,
    /// Offset from UTC for timestamps, in seconds (e.g. 32400 for JST); 0 writes `Z`.
    pub utc_offset_s: i32,
    /// Bounds and timings.
    pub limits: Limits,
}

impl AlerterConfig {
    /// The targets and event file of `[alert]`, this host's name and process id,
    /// UTC timestamps and default limits.
    pub fn from_policy(policy: &Policy) -> AlerterConfig {
        AlerterConfig::new(policy.alert_targets().to_vec(), policy.alert_event_file().map(PathBuf::from))
    }

    /// The given targets and event file, this host's name and process id, UTC
    /// timestamps and default limits.
    pub fn new(targets: Vec<AlertTarget>, event_file: Option<PathBuf>) -> AlerterConfig {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        AlerterConfig {
            targets,
            event_file,
            hostname,
            procid: std::process::id().to_string(),
            utc_offset_s: 0,
            limits: Limits::default(),
        }
    }
}

/// Starting the alerter failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    /// The event file could not be opened.
    #[error(
        "[alert] event_file {}: {source}; create its directory (owned by the daemon's user) \
         or change event_file",
        path.display()
    )]
    EventFile {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A thread could not be started.
    #[error("could not start the alert thread for {what}: {source}; the system is out of threads or memory")]
    Thread {
        /// Which thread.
        what: String,
        /// Why.
        source: io::Error,
    },
}

/// What [`Submitter::submit`] did with a record.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Submitted {
    /// Queued for the collectors.
    Queued,
    /// Held back by flood control; it will be counted in a summary.
    Suppressed,
    /// The queue was full; it is counted (`queue_dropped`, and an `ALERTS_DROPPED`
    /// summary).
    QueueFull,
    /// The alerter has shut down.
    Closed,
}

/// One collector's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetCounters {
    /// The target's URL.
    pub url: String,
    /// Messages written to the socket.
    pub sent: u64,
    /// Failed writes (UDP: the message is lost; TCP/unix: it is kept and resent).
    pub send_errors: u64,
    /// Messages lost: the buffer was full, or undelivered at shutdown.
    pub dropped: u64,
    /// Messages below the target's `min_severity`, not sent.
    pub filtered: u64,
    /// Connections made (TCP; unix/UDP: sockets opened).
    pub connects: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// Messages waiting in the buffer now.
    pub buffered: u64,
}

/// A snapshot of the alerter's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertCounters {
    /// Records that passed flood control and were queued.
    pub passed: u64,
    /// Records held back by flood control (reported in summaries or still pending).
    pub suppressed: u64,
    /// Records lost because the queue was full.
    pub queue_dropped: u64,
    /// Notices lost because their queue was full.
    pub notices_dropped: u64,
    /// Events the dispatcher produced (alerts, notices and summaries).
    pub events: u64,
    /// Of those, summaries (`SUPPRESSED`, `ALERTS_DROPPED`).
    pub summaries: u64,
    /// Lines written to the event file.
    pub event_file_written: u64,
    /// Failed event-file writes, flushes or reopens.
    pub event_file_errors: u64,
    /// Successful reopens of the event file.
    pub event_file_reopens: u64,
    /// Per target, in configuration order.
    pub targets: Vec<TargetCounters>,
}

#[derive(Copy, Clone)]
struct Queued {
    record: Record,
    slot: u32,
}

#[derive(Default)]
struct DispatchCounters {
    events: AtomicU64,
    summaries: AtomicU64,
    file_written: AtomicU64,
    file_errors: AtomicU64,
    file_reopens: AtomicU64,
}

struct Shared {
    limiter: Limiter,
    queue: ArrayQueue<Queued>,
    queue_dropped: [AtomicU64; EventKind::ALL.len()],
    queue_dropped_total: AtomicU64,
    passed: AtomicU64,
    notices: ArrayQueue<Notice>,
    notices_dropped: AtomicU64,
    names: Mutex<VecDeque<(u32, Arc<dyn NameSource>)>>,
    /// The newest generation registered with `set_names` (0: none yet).
    newest_names: AtomicU32,
    stop: AtomicBool,
    closed: AtomicBool,
    stop_timeout_ms: AtomicU64,
    reopen: AtomicBool,
    dispatcher: OnceLock<Thread>,
    counters: DispatchCounters,
    targets: Vec<Target>,
}

impl Shared {
    #[inline]
    fn submit(&self, r: &Record) -> Submitted {
        if self.closed.load(Relaxed) {
            return Submitted::Closed;
        }
        let src = r.packet.map(|p| p.src);
        match self.limiter.admit(r.kind, src, r.at.as_nanos()) {
            Admit::Suppressed => Submitted::Suppressed,
            Admit::Pass(slot) => match self.queue.push(Queued { record: *r, slot }) {
                Ok(()) => {
                    self.passed.fetch_add(1, Relaxed);
                    Submitted::Queued
                }
                Err(_) => {
                    if let Some(c) = self.queue_dropped.get(r.kind.index()) {
                        c.fetch_add(1, Relaxed);
                    }
                    self.queue_dropped_total.fetch_add(1, Relaxed);
                    Submitted::QueueFull
                }
            },
        }
    }

    fn wake(&self) {
        if let Some(t) = self.dispatcher.get() {
            t.unpark();
        }
    }

    fn names_for(&self, generation: u32) -> Option<Arc<dyn NameSource>> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.iter().rev().find(|(g, _)| *g == generation).map(|(_, n)| Arc::clone(n))
    }
}

/// The data plane's handle: [`Submitter::submit`] only. Cheap to clone; give one to
/// every worker thread.
#[derive(Clone)]
pub struct Submitter {
    shared: Arc<Shared>,
}

impl Submitter {
    /// Hand one alert in. Never allocates, never locks, never waits: a keyed hash, a
    /// few relaxed atomic operations on the flood-control slot, and (when the record
    /// passes) a push onto a bounded lock-free queue.
    #[inline]
    pub fn submit(&self, record: &Record) -> Submitted {
        self.shared.submit(record)
    }
}

/// The alerter: owns the dispatcher and sender threads. Start it once; hand
/// [`Submitter`]s to the data plane.
pub struct Alerter {
    shared: Arc<Shared>,
    /// How long past its deadline a sender thread may still be busy.
    grace: Duration,
    done: Option<mpsc::Receiver<()>>,
    dispatcher: Option<JoinHandle<()>>,
}

impl Alerter {
    /// Open the event file, start one sender thread per target and the dispatcher.
    /// Sockets are opened lazily by the sender threads: a collector that is down
    /// at start does not stop the daemon (its messages wait in its buffer).
    pub fn start(config: AlerterConfig) -> Result<Alerter, AlertError> {
        let l = config.limits;
        let file = match &config.event_file {
            Some(path) => Some(
                EventFile::open(path)
                    .map_err(|source| AlertError::EventFile { path: path.clone(), source })?,
            ),
            None => None,
        };
        let settings = TransportSettings {
            connect_timeout: l.connect_timeout,
            write_timeout: l.write_timeout,
            backoff_initial: l.backoff_initial,
            backoff_max: l.backoff_max,
            buffer_messages: l.target_buffer_messages.max(1),
            buffer_bytes: l.target_buffer_bytes.max(1),
        };
        let mut targets = Vec::new();
        for t in &config.targets {
            let target = Target::start(t.clone(), settings)
                .map_err(|source| AlertError::Thread { what: t.url.to_string(), source })?;
            targets.push(target);
        }
        let shared = Arc::new(Shared {
            limiter: Limiter::new(l.slots_per_kind, duration_ns(l.interval), l.burst),
            queue: ArrayQueue::new(l.queue_capacity.max(1)),
            queue_dropped: std::array::from_fn(|_| AtomicU64::new(0)),
            queue_dropped_total: AtomicU64::new(0),
            passed: AtomicU64::new(0),
            notices: ArrayQueue::new(l.notice_capacity.max(1)),
            notices_dropped: AtomicU64::new(0),
            names: Mutex::new(VecDeque::new()),
            newest_names: AtomicU32::new(0),
            stop: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            stop_timeout_ms: AtomicU64::new(0),
            reopen: AtomicBool::new(false),
            dispatcher: OnceLock::new(),
            counters: DispatchCounters::default(),
            targets,
        });
        let (tx, rx) = mpsc::channel();
        let d = Dispatcher {
            shared: Arc::clone(&shared),
            file,
            hostname: config.hostname,
            procid: config.procid,
            utc_offset_s: config.utc_offset_s,
            limits: l,
            last_rep: HashMap::new(),
            waiting: VecDeque::new(),
        };
        let handle = std::thread::Builder::new()
            .name("sekisho-alert".to_owned())
            .spawn(move || {
                d.run();
                let _ = tx.send(());
            })
            .map_err(|source| AlertError::Thread { what: "the dispatcher".to_owned(), source })?;
        let _ = shared.dispatcher.set(handle.thread().clone());
        let grace = l.connect_timeout.max(l.write_timeout) + Duration::from_secs(1);
        Ok(Alerter { shared, grace, done: Some(rx), dispatcher: Some(handle) })
    }

    /// A handle for a data-plane worker.
    pub fn submitter(&self) -> Submitter {
        Submitter { shared: Arc::clone(&self.shared) }
    }

    /// Same as [`Submitter::submit`].
    #[inline]
    pub fn submit(&self, record: &Record) -> Submitted {
        self.shared.submit(record)
    }

    /// Report a control-plane event (never rate limited; a full notice queue drops it,
    /// counted). Wakes the dispatcher.
    pub fn notice(&self, notice: Notice) {
        if self.shared.notices.push(notice).is_err() {
            self.shared.notices_dropped.fetch_add(1, Relaxed);
        }
        self.shared.wake();
    }

    /// Register the names of policy generation `generation` (at start and after every
    /// reload, as soon as the generation exists). The last few generations are kept,
    /// for records still queued. A record of a generation newer than every registered
    /// one waits up to [`Limits::names_wait`] for its names.
    pub fn set_names(&self, generation: u32, names: Arc<dyn NameSource>) {
        let mut n = self.shared.names.lock().unwrap_or_else(|e| e.into_inner());
        n.retain(|(g, _)| *g != generation);
        n.push_back((generation, names));
        while n.len() > NAME_GENERATIONS {
            n.pop_front();
        }
        self.shared.newest_names.fetch_max(generation, SeqCst);
    }

    /// Close and reopen the event file (after logrotate moved it; SIGUSR1). Done by
    /// the dispatcher shortly after; `event_file_reopens` counts it.
    pub fn reopen(&self) {
        self.shared.reopen.store(true, SeqCst);
        self.shared.wake();
    }

    /// A snapshot of every counter.
    pub fn counters(&self) -> AlertCounters {
        let s = &self.shared;
        let c = &s.counters;
        AlertCounters {
            passed: s.passed.load(Relaxed),
            suppressed: s.limiter.reported() + s.limiter.pending(),
            queue_dropped: s.queue_dropped_total.load(Relaxed),
            notices_dropped: s.notices_dropped.load(Relaxed),
            events: c.events.load(Relaxed),
            summaries: c.summaries.load(Relaxed),
            event_file_written: c.file_written.load(Relaxed),
            event_file_errors: c.file_errors.load(Relaxed),
            event_file_reopens: c.file_reopens.load(Relaxed),
            targets: s.targets.iter().map(Target::counters).collect(),
        }
    }

    /// Deliver what is queued (with final summaries), give the collectors until
    /// `timeout` to take it, stop every thread and return the final counters. Waits
    /// at most `timeout` plus one connect or write timeout; threads still busy then
    /// are left to end by themselves.
    pub fn shutdown(mut self, timeout: Duration) -> AlertCounters {
        let started = Instant::now();
        self.stop(timeout);
        let grace = timeout + self.grace;
        if let Some(rx) = self.done.take() {
            if rx.recv_timeout(grace.saturating_sub(started.elapsed())).is_ok() {
                if let Some(h) = self.dispatcher.take() {
                    let _ = h.join();
                }
            }
        }
        self.counters()
    }

    fn stop(&self, timeout: Duration) {
        self.shared.stop_timeout_ms.store(timeout.as_millis().try_into().unwrap_or(u64::MAX), SeqCst);
        self.shared.stop.store(true, SeqCst);
        self.shared.wake();
    }
}

impl Drop for Alerter {
    fn drop(&mut self) {
        if !self.shared.stop.load(SeqCst) {
            self.stop(Duration::from_millis(500));
        }
    }
}

fn duration_ns(d: Duration) -> u64 {
    d.as_nanos().try_into().unwrap_or(u64::MAX)
}

fn wall_now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, duration_ns))
}

/// The dispatcher thread's state.
struct Dispatcher {
    shared: Arc<Shared>,
    file: Option<EventFile>,
    hostname: String,
    procid: String,
    utc_offset_s: i32,
    limits: Limits,
    /// The last record each flood-control slot let through: the summary's example.
    last_rep: HashMap<u32, Record>,
    /// Records of a generation whose names are not registered yet, oldest first, with
    /// the time they were taken from the queue (at most a queue's worth).
    waiting: VecDeque<(Instant, Record)>,
}

impl Dispatcher {
    fn run(mut self) {
        let mut last_summary = Instant::now();
        let mut last_reopen_try = Instant::now();
        let mut events: Vec<Event> = Vec::new();
        loop {
            let stopping = self.shared.stop.load(SeqCst);
            // Reopen on request (logrotate), or retry a failed reopen once a second.
            let requested = self.shared.reopen.swap(false, SeqCst);
            let retry = self.file.as_ref().is_some_and(|f| !f.is_open())
                && last_reopen_try.elapsed() >= Duration::from_secs(1);
            if requested || retry {
                self.reopen();
                last_reopen_try = Instant::now();
            }

            while let Some(n) = self.shared.notices.pop() {
                events.push(event::from_notice(&n));
            }
            let mut taken = 0;
            while taken < BATCH {
                let Some(q) = self.shared.queue.pop() else { break };
                taken += 1;
                self.last_rep.insert(q.slot, q.record);
                let newest = self.shared.newest_names.load(SeqCst);
                let early = newest > 0 && q.record.generation > newest;
                if (early || !self.waiting.is_empty()) && self.waiting.len() < self.limits.queue_capacity {
                    // Keep the order: once one waits, later ones queue behind it.
                    self.waiting.push_back((Instant::now(), q.record));
                } else {
                    let names = self.shared.names_for(q.record.generation);
                    events.push(event::from_record(&q.record, names.as_deref()));
                }
            }
            let drained = self.shared.queue.is_empty() && self.shared.notices.is_empty();
            let final_round = stopping && drained;
            self.release_waiting(final_round, &mut events);
            if final_round || last_summary.elapsed() >= self.limits.summary_interval {
                let window = last_summary.elapsed();
                last_summary = Instant::now();
                self.summaries(window, &mut events);
            }
            for e in events.drain(..) {
                self.deliver(&e);
            }
            if let Some(f) = self.file.as_mut() {
                if f.flush().is_err() {
                    self.shared.counters.file_errors.fetch_add(1, Relaxed);
                }
            }
            if final_round {
                break;
            }
            if drained {
                std::thread::park_timeout(self.limits.poll_interval);
            }
        }
        self.shared.closed.store(true, SeqCst);
        let timeout = Duration::from_millis(self.shared.stop_timeout_ms.load(SeqCst));
        let deadline = Instant::now() + timeout;
        for t in &self.shared.targets {
            t.stop(deadline);
        }
        for t in &self.shared.targets {
            t.join();
        }
    }

    /// Turns waiting records into events, in order: those whose names are registered
    /// now, or that waited [`Limits::names_wait`] (or all, at the end).
    fn release_waiting(&mut self, all: bool, events: &mut Vec<Event>) {
        while let Some((since, r)) = self.waiting.front().copied() {
            let names = self.shared.names_for(r.generation);
            if names.is_none() && !all && since.elapsed() < self.limits.names_wait {
                break;
            }
            self.waiting.pop_front();
            events.push(event::from_record(&r, names.as_deref()));
        }
    }

    fn reopen(&mut self) {
        if let Some(f) = self.file.as_mut() {
            match f.reopen() {
                Ok(()) => self.shared.counters.file_reopens.fetch_add(1, Relaxed),
                Err(_) => self.shared.counters.file_errors.fetch_add(1, Relaxed),
            };
        }
    }

    fn summaries(&mut self, window: Duration, events: &mut Vec<Event>) {
        let at = wall_now();
        let window_s = window.as_secs() + u64::from(window.subsec_nanos() > 0);
        let shared = Arc::clone(&self.shared);
        let mut taken = Vec::new();
        shared.limiter.take_suppressed(|t| taken.push(t));
        // Per kind: the slots with one known source, largest first, get a summary
        // each (at most MAX_SOURCE_SUMMARIES); the rest of the kind one together.
        taken.sort_by_key(|t| {
            let single = !t.mixed && self.last_rep.contains_key(&t.slot);
            (t.kind, !single, std::cmp::Reverse(t.count))
        });
        let mut i = 0;
        while i < taken.len() {
            let kind = taken[i].kind;
            let end = i + taken[i..].iter().take_while(|t| t.kind == kind).count();
            let mut named = 0;
            let mut rest: Option<(u64, u32)> = None; // (count, slot of the largest)
            for t in &taken[i..end] {
                let rep = self.last_rep.get(&t.slot).copied();
                if !t.mixed && rep.is_some() && named < MAX_SOURCE_SUMMARIES {
                    named += 1;
                    let names = rep.and_then(|r| shared.names_for(r.generation));
                    let rep = rep.as_ref().map(|r| (r, names.as_deref()));
                    events.push(event::suppressed(t.kind, t.count, window_s, true, rep, at));
                    shared.counters.summaries.fetch_add(1, Relaxed);
                } else {
                    let r = rest.get_or_insert((0, t.slot));
                    r.0 += t.count;
                }
                shared.limiter.add_reported(t.count);
            }
            if let Some((count, slot)) = rest {
                let rep = self.last_rep.get(&slot).copied();
                let names = rep.and_then(|r| shared.names_for(r.generation));
                let rep = rep.as_ref().map(|r| (r, names.as_deref()));
                events.push(event::suppressed(kind, count, window_s, false, rep, at));
                shared.counters.summaries.fetch_add(1, Relaxed);
            }
            i = end;
        }
        for kind in EventKind::ALL {
            let n = shared.queue_dropped.get(kind.index()).map_or(0, |c| c.swap(0, Relaxed));
            if n > 0 {
                events.push(event::dropped(kind, n, window_s, at));
                shared.counters.summaries.fetch_add(1, Relaxed);
            }
        }
    }

    fn deliver(&mut self, e: &Event) {
        let c = &self.shared.counters;
        c.events.fetch_add(1, Relaxed);
        if let Some(f) = self.file.as_mut() {
            match f.write(e, self.utc_offset_s) {
                Ok(()) => c.file_written.fetch_add(1, Relaxed),
                Err(_) => c.file_errors.fetch_add(1, Relaxed),
            };
        }
        if self.shared.targets.is_empty() {
            return;
        }
        let pairs: Vec<(&str, &str)> = e.params.iter().map(|p| (p.name, p.value.as_str())).collect();
        for t in &self.shared.targets {
            if !e.severity.at_least(t.config.min_severity) {
                t.filtered();
                continue;
            }
            let m = Message {
                facility: t.config.facility,
                severity: e.severity,
                time: e.at,
                utc_offset_s: self.utc_offset_s,
                hostname: &self.hostname,
                app_name: APP_NAME,
                procid: &self.procid,
                msgid: e.kind.msgid(),
                params: &pairs,
                text: &e.text,
            };
            let max = if t.is_stream() { self.limits.max_stream_message } else { self.limits.max_datagram };
            let mut text = String::with_capacity(512);
            match t.config.format {
                Format::Rfc5424 => format::rfc5424(&m, max, &mut text),
                Format::Rfc3164 => format::rfc3164(&m, max, &mut text),
            }
            let bytes = if t.is_stream() {
                let mut framed = Vec::with_capacity(text.len() + 8);
                format::octet_frame(text.as_bytes(), &mut framed);
                framed
            } else {
                text.into_bytes()
            };
            t.offer(bytes);
        }
    }
}
