//! Helpers for the integration tests: real local collectors, fast limits, records.
#![allow(dead_code)]

use std::io::{BufReader, Read};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sekisho_alert::{AlertTarget, Alerter, AlerterConfig, Limits, Packet, Record, TargetUrl};
use sekisho_policy::{load_str, Mode, Policy, PortId, PortSide, Timestamp};

/// The lab policy's zones and ports, enough to resolve names.
pub const POLICY: &str = r#"
[[zone]]
name = "mynumber"
kind = "mynumber"
prefixes = ["198.18.10.0/24", "2001:db8:10::/48"]
[[zone]]
name = "lgwan"
kind = "lgwan"
prefixes = ["198.18.20.0/24"]
upstream = true
[[zone]]
name = "sanitization"
kind = "sanitization"
prefixes = ["198.18.40.0/24"]
upstream = true
[[zone]]
name = "internet"
kind = "internet"
prefixes = ["203.0.113.0/24", "0.0.0.0/0"]
[[port]]
name = "mn-uplink"
zone = "mynumber"
inside = "mn-in"
outside = "mn-out"
[[port]]
name = "in-uplink"
zone = "internet"
inside = "in-in"
outside = "in-out"
"#;

pub fn policy() -> Arc<Policy> {
    Arc::new(load_str(POLICY, "test.toml").unwrap())
}

/// Limits that make tests quick: short polls, summaries and backoff.
pub fn fast_limits() -> Limits {
    Limits {
        poll_interval: Duration::from_millis(2),
        summary_interval: Duration::from_millis(200),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

pub fn config(targets: Vec<AlertTarget>) -> AlerterConfig {
    let mut c = AlerterConfig::new(targets, None);
    c.hostname = "gw1".to_owned();
    c.limits = fast_limits();
    c
}

pub fn start(targets: Vec<AlertTarget>) -> Alerter {
    let a = Alerter::start(config(targets)).unwrap();
    a.set_names(1, policy());
    a
}

pub fn now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64)
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A denied TCP packet from `src` to `dst`, arriving on port 0's inside.
pub fn record(code: &'static str, src: &str, dst: &str, at: Timestamp) -> Record {
    let p = Packet { proto: 6, src: ip(src), dst: ip(dst), sport: 40000, dport: 443 };
    Record::deny(code, at, Mode::Enforce, 1, (PortId(0), PortSide::Inside), Some(p)).unwrap()
}

/// The i-th distinct internet source address.
pub fn internet_src(i: u32) -> String {
    format!("203.0.{}.{}", 113 + (i >> 8) % 100, i & 0xff)
}

pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("sekisho-alert-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A UDP collector on 127.0.0.1.
pub struct UdpCollector {
    pub sock: UdpSocket,
}

impl UdpCollector {
    pub fn new() -> UdpCollector {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        UdpCollector { sock }
    }

    pub fn url(&self) -> TargetUrl {
        TargetUrl::Udp(self.sock.local_addr().unwrap())
    }

    /// Datagrams until `n` arrived or `timeout` passed.
    pub fn recv(&self, n: usize, timeout: Duration) -> Vec<String> {
        let end = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while out.len() < n && Instant::now() < end {
            if let Ok(len) = self.sock.recv(&mut buf) {
                out.push(String::from_utf8(buf[..len].to_vec()).unwrap());
            }
        }
        out
    }
}

/// A unix datagram collector in a temporary directory.
pub struct UnixCollector {
    pub sock: UnixDatagram,
    pub path: PathBuf,
    _dir: TempDir,
}

impl UnixCollector {
    pub fn new() -> UnixCollector {
        let dir = TempDir::new("unix");
        let path = dir.path().join("log.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        UnixCollector { sock, path, _dir: dir }
    }

    pub fn url(&self) -> TargetUrl {
        TargetUrl::Unix(self.path.clone())
    }

    pub fn recv(&self, n: usize, timeout: Duration) -> Vec<String> {
        let end = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while out.len() < n && Instant::now() < end {
            if let Ok(len) = self.sock.recv(&mut buf) {
                out.push(String::from_utf8(buf[..len].to_vec()).unwrap());
            }
        }
        out
    }
}

/// Read one RFC 6587 octet-counted frame; `Ok(None)` at a clean end of stream.
/// Checks the framing strictly: digits without a leading zero, one space, exactly
/// that many bytes.
pub fn read_frame(r: &mut impl Read) -> Result<Option<String>, String> {
    let mut len: usize = 0;
    let mut digits = 0;
    loop {
        let mut b = [0u8; 1];
        match r.read(&mut b) {
            Ok(0) if digits == 0 => return Ok(None),
            Ok(0) => return Err("stream ended inside a length".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        match b[0] {
            b'0'..=b'9' => {
                if digits == 0 && b[0] == b'0' {
                    return Err("length with a leading zero".into());
                }
                digits += 1;
                if digits > 9 {
                    return Err("length too long".into());
                }
                len = len * 10 + usize::from(b[0] - b'0');
            }
            b' ' if digits > 0 => break,
            other => return Err(format!("unexpected byte {other:#04x} in the frame length")),
        }
    }
    let mut msg = vec![0u8; len];
    r.read_exact(&mut msg).map_err(|e| format!("short frame: {e}"))?;
    String::from_utf8(msg).map(Some).map_err(|e| e.to_string())
}

/// A TCP collector on 127.0.0.1 that checks octet counting: it accepts connections
/// one after another and stores every frame. After `close_after` frames on a
/// connection it closes that connection and stops listening.
pub struct TcpCollector {
    pub addr: SocketAddr,
    pub frames: Arc<Mutex<Vec<String>>>,
    pub errors: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl TcpCollector {
    pub fn new() -> TcpCollector {
        TcpCollector::bind("127.0.0.1:0".parse().unwrap(), None)
    }

    pub fn bind(addr: SocketAddr, close_after: Option<usize>) -> TcpCollector {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (f, e) = (Arc::clone(&frames), Arc::clone(&errors));
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let mut r = BufReader::new(conn);
                let mut n = 0;
                loop {
                    match read_frame(&mut r) {
                        Ok(Some(m)) => {
                            f.lock().unwrap().push(m);
                            n += 1;
                            if close_after == Some(n) {
                                return; // drops the connection and the listener
                            }
                        }
                        Ok(None) => break,
                        Err(x) => {
                            e.lock().unwrap().push(x);
                            break;
                        }
                    }
                }
            }
        });
        TcpCollector { addr, frames, errors, thread: Some(thread) }
    }

    pub fn url(&self) -> TargetUrl {
        TargetUrl::Tcp(self.addr)
    }

    pub fn count(&self) -> usize {
        self.frames.lock().unwrap().len()
    }

    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        wait_until(timeout, || self.count() >= n);
        self.frames.lock().unwrap().clone()
    }

    /// Wait for the collector thread (only ends with `close_after`).
    pub fn join(mut self) -> Vec<String> {
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.frames.lock().unwrap().clone()
    }
}

/// A TCP "collector" that accepts into its backlog but never reads: writes stall.
pub fn stalled_tcp() -> (TcpListener, TargetUrl) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = TargetUrl::Tcp(l.local_addr().unwrap());
    (l, url)
}

/// Connect a plain client (to check a listener is up).
pub fn can_connect(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Parse with the independent RFC 5424 parser and return (msgid, SD params).
pub fn parse5424(m: &str) -> syslog_rfc5424::SyslogMessage {
    match syslog_rfc5424::parse_message(m) {
        Ok(x) => x,
        Err(e) => panic!("not RFC 5424 ({e}): {m:?}"),
    }
}

pub fn sd<'a>(m: &'a syslog_rfc5424::SyslogMessage, name: &str) -> Option<&'a str> {
    m.sd.find_tuple("sekisho@32473", name).map(String::as_str)
}
