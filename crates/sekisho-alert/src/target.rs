//! Transports: one sender thread per `[[alert.target]]`.
//!
//! Why plain std threads and blocking std sockets rather than a tokio runtime: there
//! are a handful of targets, each a sequential writer; a thread each isolates them
//! (a stalled TCP collector cannot delay `/dev/log`), reconnecting with backoff is a
//! loop with a timed wait, and nothing here needs a reactor. It also keeps an async
//! runtime out of the data-plane process's alert path and out of this crate's
//! dependencies. The data plane never talks to these threads: it only pushes to the
//! lock-free queue that the dispatcher drains (see `alerter.rs`).
//!
//! Each target has a bounded buffer of framed messages (count and bytes). The
//! dispatcher offers every message; a full buffer drops the new message and counts
//! it. UDP is fire-and-forget (a failed send is counted and the message is gone).
//! TCP and unix sockets are reliable up to the kernel: a message stays in the buffer
//! until a write of it succeeded; when the connection fails, the unsent messages
//! stay and are sent after reconnecting, with exponential backoff between attempts.
//! What the kernel had accepted on a TCP connection that then broke can still be
//! lost (TCP has no application acknowledgement; RELP would be the cure); a
//! collector that closed the connection is noticed before the next write.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sekisho_policy::{AlertTarget, TargetUrl};

use crate::TargetCounters;

/// Timing and bounds of the transports (from [`Limits`](crate::Limits)).
#[derive(Copy, Clone, Debug)]
pub(crate) struct TransportSettings {
    pub connect_timeout: Duration,
    pub write_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub buffer_messages: usize,
    pub buffer_bytes: usize,
}

#[derive(Default)]
struct Atomics {
    sent: AtomicU64,
    send_errors: AtomicU64,
    dropped: AtomicU64,
    filtered: AtomicU64,
    connects: AtomicU64,
    connect_failures: AtomicU64,
}

struct Buf {
    queue: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Set at shutdown: deliver what can be delivered until then.
    stop: Option<Instant>,
}

struct Shared {
    buf: Mutex<Buf>,
    cv: Condvar,
    counters: Atomics,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Buf> {
        // A panic on another thread while holding the lock leaves a consistent
        // VecDeque; keep going rather than poisoning the alert path.
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One collector and its sender thread.
pub(crate) struct Target {
    pub config: AlertTarget,
    shared: Arc<Shared>,
    settings: TransportSettings,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Target {
    /// Start the sender thread (it connects lazily, on the first message).
    pub fn start(config: AlertTarget, settings: TransportSettings) -> io::Result<Target> {
        let shared = Arc::new(Shared {
            buf: Mutex::new(Buf { queue: VecDeque::new(), bytes: 0, stop: None }),
            cv: Condvar::new(),
            counters: Atomics::default(),
        });
        let (s, url) = (Arc::clone(&shared), config.url.clone());
        let thread = std::thread::Builder::new()
            .name("sekisho-alert-tx".to_owned())
            .spawn(move || run(&s, &url, settings))?;
        Ok(Target { config, shared, settings, thread: Mutex::new(Some(thread)) })
    }

    /// Whether this target frames with octet counting.
    pub fn is_stream(&self) -> bool {
        matches!(self.config.url, TargetUrl::Tcp(_))
    }

    /// Queue one framed message; a full buffer drops it (counted).
    pub fn offer(&self, msg: Vec<u8>) {
        let s = &self.shared;
        let mut b = s.lock();
        if b.stop.is_some()
            || b.queue.len() >= self.settings.buffer_messages
            || b.bytes + msg.len() > self.settings.buffer_bytes
        {
            s.counters.dropped.fetch_add(1, Relaxed);
            return;
        }
        b.bytes += msg.len();
        b.queue.push_back(msg);
        drop(b);
        s.cv.notify_one();
    }

    /// Count a message below this target's `min_severity`.
    pub fn filtered(&self) {
        self.shared.counters.filtered.fetch_add(1, Relaxed);
    }

    /// Ask the thread to deliver what it can until `deadline`, then stop.
    pub fn stop(&self, deadline: Instant) {
        self.shared.lock().stop = Some(deadline);
        self.shared.cv.notify_one();
    }

    /// Wait for the thread (after [`Target::stop`]); it ends by its deadline plus at
    /// most one connect or write timeout.
    pub fn join(&self) {
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = handle {
            let _ = t.join();
        }
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> TargetCounters {
        let c = &self.shared.counters;
        TargetCounters {
            url: self.config.url.to_string(),
            sent: c.sent.load(Relaxed),
            send_errors: c.send_errors.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            filtered: c.filtered.load(Relaxed),
            connects: c.connects.load(Relaxed),
            connect_failures: c.connect_failures.load(Relaxed),
            buffered: self.shared.lock().queue.len() as u64,
        }
    }
}

enum Conn {
    Udp(UdpSocket),
    Unix(UnixDatagram),
    Tcp(TcpStream),
}

impl Conn {
    fn open(url: &TargetUrl, s: &TransportSettings) -> io::Result<Conn> {
        match url {
            TargetUrl::Udp(addr) => {
                let local: SocketAddr =
                    if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
                let sock = UdpSocket::bind(local)?;
                sock.connect(addr)?;
                sock.set_write_timeout(Some(s.write_timeout))?;
                Ok(Conn::Udp(sock))
            }
            TargetUrl::Unix(path) => {
                let sock = UnixDatagram::unbound()?;
                sock.connect(path)?;
                sock.set_write_timeout(Some(s.write_timeout))?;
                Ok(Conn::Unix(sock))
            }
            TargetUrl::Tcp(addr) => {
                let sock = TcpStream::connect_timeout(addr, s.connect_timeout)?;
                sock.set_write_timeout(Some(s.write_timeout))?;
                sock.set_nodelay(true)?;
                Ok(Conn::Tcp(sock))
            }
        }
    }

    /// Send one message (already framed for TCP).
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        match self {
            Conn::Udp(s) => s.send(msg).map(drop),
            Conn::Unix(s) => s.send(msg).map(drop),
            Conn::Tcp(s) => s.write_all(msg),
        }
    }

    /// A syslog collector never writes to us: a readable socket means it closed the
    /// connection (or sent junk, which is read and ignored, a bounded amount).
    fn peer_closed(&mut self) -> bool {
        let Conn::Tcp(s) = self else {
            return false;
        };
        if s.set_nonblocking(true).is_err() {
            return true;
        }
        let mut junk = [0u8; 512];
        let mut closed = false;
        for _ in 0..16 {
            match s.read(&mut junk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        closed || s.set_nonblocking(false).is_err()
    }
}

/// The sender loop of one target.
fn run(shared: &Shared, url: &TargetUrl, s: TransportSettings) {
    let c = &shared.counters;
    let reliable = !matches!(url, TargetUrl::Udp(_));
    let mut conn: Option<Conn> = None;
    let mut backoff = s.backoff_initial;
    let mut next_attempt = Instant::now();
    loop {
        // Wait for messages we may send now; at the stop deadline, give up.
        let batch: Vec<Vec<u8>> = {
            let mut b = shared.lock();
            loop {
                let now = Instant::now();
                if let Some(deadline) = b.stop {
                    if b.queue.is_empty() || now >= deadline {
                        c.dropped.fetch_add(b.queue.len() as u64, Relaxed);
                        b.queue.clear();
                        b.bytes = 0;
                        return;
                    }
                }
                if !b.queue.is_empty() && (conn.is_some() || now >= next_attempt) {
                    break;
                }
                let mut wait = if b.queue.is_empty() { Duration::from_secs(1) } else { next_attempt - now };
                if let Some(deadline) = b.stop {
                    wait = wait.min(deadline.saturating_duration_since(now));
                }
                b = shared
                    .cv
                    .wait_timeout(b, wait.max(Duration::from_millis(1)))
                    .map_or_else(|e| e.into_inner().0, |r| r.0);
            }
            b.bytes = 0;
            b.queue.drain(..).collect()
        };

        if conn.as_mut().is_some_and(Conn::peer_closed) {
            conn = None;
        }
        if conn.is_none() {
            match Conn::open(url, &s) {
                Ok(new) => {
                    conn = Some(new);
                    c.connects.fetch_add(1, Relaxed);
                    backoff = s.backoff_initial;
                }
                Err(_) => {
                    c.connect_failures.fetch_add(1, Relaxed);
                    next_attempt = Instant::now() + backoff;
                    backoff = (backoff * 2).min(s.backoff_max);
                    put_back(shared, &s, batch, 0);
                    continue;
                }
            }
        }
        let Some(live) = conn.as_mut() else { continue };
        let mut unsent = None;
        for (i, msg) in batch.iter().enumerate() {
            match live.send(msg) {
                Ok(()) => {
                    c.sent.fetch_add(1, Relaxed);
                }
                Err(_) if !reliable => {
                    // UDP: the datagram is gone (often the ICMP error of an earlier
                    // one); count it and carry on.
                    c.send_errors.fetch_add(1, Relaxed);
                }
                Err(_) => {
                    c.send_errors.fetch_add(1, Relaxed);
                    unsent = Some(i);
                    break;
                }
            }
        }
        if let Some(i) = unsent {
            conn = None;
            next_attempt = Instant::now() + backoff;
            backoff = (backoff * 2).min(s.backoff_max);
            put_back(shared, &s, batch, i);
        }
    }
}

/// Return `batch[from..]` to the front of the buffer (they are older than anything
/// queued since), then trim the newest messages beyond the bounds (counted).
fn put_back(shared: &Shared, s: &TransportSettings, batch: Vec<Vec<u8>>, from: usize) {
    let mut b = shared.lock();
    for msg in batch.into_iter().skip(from).rev() {
        b.bytes += msg.len();
        b.queue.push_front(msg);
    }
    while b.queue.len() > s.buffer_messages || b.bytes > s.buffer_bytes {
        match b.queue.pop_back() {
            Some(m) => {
                b.bytes -= m.len();
                shared.counters.dropped.fetch_add(1, Relaxed);
            }
            None => break,
        }
    }
}
