//! The data plane's tests: the pnet worker loop against in-memory endpoints (what it
//! forwards, drops and counts), and — as root, in a private network namespace with veth
//! pairs — the port sockets themselves: nothing queued before the bind, and the afpacket
//! backend forwarding checksum-offloaded GSO super-frames with their metadata.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pnet_datalink::{DataLinkReceiver, DataLinkSender, NetworkInterface};
use sekisho_engine::{Engine, Side};
use sekisho_policy::PortId;
use sekisho_testkit::{flags, tcp, TcpConn};

use crate::sys::{Batch, PacketSocket, SocketOptions, Unbound};
use crate::vnet::{self, VnetHdr};
use crate::{pnet, Clock, DataPlane, Interface, IoCounters, NoObserver, Shared};

/// A frame as a vnet socket reads and writes it: a header (no offload) before it.
fn with_header(frame: &[u8]) -> Vec<u8> {
    [&[0u8; vnet::LEN][..], frame].concat()
}

/// Hands out `frames`, then stops the worker.
struct Script {
    frames: Vec<Vec<u8>>,
    current: Vec<u8>,
    stop: Arc<AtomicBool>,
}

impl DataLinkReceiver for Script {
    fn next(&mut self) -> io::Result<&[u8]> {
        if self.frames.is_empty() {
            self.stop.store(true, Relaxed);
            return Err(io::Error::new(io::ErrorKind::TimedOut, "done"));
        }
        self.current = self.frames.remove(0);
        Ok(&self.current)
    }
}

/// Records what is sent; fails every send when `fail`.
struct Wire {
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
    fail: bool,
}

impl DataLinkSender for Wire {
    fn build_and_send(&mut self, _: usize, _: usize, _: &mut dyn FnMut(&mut [u8])) -> Option<io::Result<()>> {
        None
    }

    fn send_to(&mut self, packet: &[u8], _: Option<NetworkInterface>) -> Option<io::Result<()>> {
        if self.fail {
            return Some(Err(io::Error::other("EMSGSIZE")));
        }
        self.sent.lock().ok()?.push(packet.to_vec());
        Some(Ok(()))
    }
}

const POLICY: &str = "[[zone]]\nname = \"lgwan\"\nkind = \"lgwan\"\nprefixes = [\"198.18.20.0/24\"]\n\n\
    [[zone]]\nname = \"internet\"\nkind = \"internet\"\nprefixes = [\"0.0.0.0/0\"]\nupstream = true\n\n\
    [[port]]\nname = \"lgwan-uplink\"\nzone = \"lgwan\"\ninside = \"lg-in\"\noutside = \"lg-out\"\n\
    routers = [\"198.18.20.1\"]\n";

fn interface(name: &str, side: Side) -> Interface {
    Interface {
        port: PortId(0),
        side,
        name: name.into(),
        ifindex: 0,
        mtu: 1500,
        counters: IoCounters::default(),
    }
}

/// Runs one pnet worker (reading lg-in) over `frames`; returns what it sent and the
/// interfaces' counters.
fn run(
    frames: Vec<Vec<u8>>,
    read_buffer: usize,
    fail: bool,
) -> (Vec<Vec<u8>>, Arc<Vec<Interface>>, Arc<Engine>) {
    let policy = sekisho_policy::load_str(POLICY, "test.toml").expect("test policy loads");
    let engine = Arc::new(Engine::new(policy));
    let stop = Arc::new(AtomicBool::new(false));
    let interfaces = Arc::new(vec![interface("lg-in", Side::Inside), interface("lg-out", Side::Outside)]);
    let clock = Arc::new(Clock::default());
    clock.tick();
    let shared = Shared {
        engine: engine.clone(),
        observer: Arc::new(NoObserver),
        interfaces: interfaces.clone(),
        clock,
        stop: stop.clone(),
        heartbeats: Arc::new(vec![AtomicU64::new(0), AtomicU64::new(0)]),
    };
    let sent = Arc::new(Mutex::new(Vec::new()));
    let worker = pnet::Worker {
        shared,
        me: 0,
        rx: Box::new(Script { frames, current: Vec::new(), stop }),
        tx: Box::new(Wire { sent: sent.clone(), fail }),
        read_buffer,
    };
    worker.run();
    let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
    (sent, interfaces, engine)
}

#[test]
fn allowed_frames_cross_unchanged_with_their_header_and_denied_ones_do_not() {
    let allowed = with_header(&tcp("198.18.20.5", 40000, "198.18.20.1", 22, flags::SYN, b""));
    let denied = with_header(&tcp("198.18.20.5", 40000, "203.0.113.9", 443, flags::SYN, b""));
    let (sent, io, engine) = run(vec![allowed.clone(), denied], 1523, false);
    assert_eq!(sent, vec![allowed]);
    assert_eq!(engine.counters().reason("deny:unsanitized-crossing"), 1);
    assert_eq!(io[0].counters.truncated.load(Relaxed), 0);
}

#[test]
fn a_frame_that_fills_the_read_buffer_is_dropped_and_counted() {
    let small = with_header(&tcp("198.18.20.5", 40000, "198.18.20.1", 22, flags::SYN, &[0; 50]));
    let big = with_header(&tcp("198.18.20.5", 40001, "198.18.20.1", 22, flags::SYN, &[0; 100]));
    // A buffer exactly the big frame's size: the socket may have cut it, so it is refused.
    let (sent, io, engine) = run(vec![small.clone(), big.clone(), vec![0; 4]], big.len(), false);
    assert_eq!(sent, vec![small], "only the frame that fits with room to spare crosses");
    assert_eq!(
        io[0].counters.truncated.load(Relaxed),
        2,
        "the cut frame and the one shorter than its header"
    );
    assert_eq!(engine.counters().ports[0].inside.packets, 1, "the cut frames never reached the engine");
}

#[test]
fn send_failures_are_counted_on_the_egress_not_fatal() {
    let frame = with_header(&tcp("198.18.20.5", 40000, "198.18.20.1", 22, flags::SYN, b""));
    let (sent, io, _) = run(vec![frame.clone(), frame], 1523, true);
    assert!(sent.is_empty());
    assert_eq!(io[1].counters.send_errors.load(Relaxed), 2);
}

// ---- as root, in a private network namespace -------------------------------------------

/// Runs `args` (e.g. `ip link ...`) in the calling thread's network namespace.
fn sh(args: &[&str]) {
    let ok = std::process::Command::new(args[0]).args(&args[1..]).status().is_ok_and(|s| s.success());
    assert!(ok, "{args:?} failed");
}

/// Runs `f` on a thread of its own in a new, empty network namespace with veth pairs
/// `pairs` up and IPv6 off (no stray neighbour discovery); `None` without root (outside
/// CI, where that is a failure).
#[allow(unsafe_code)] // geteuid and unshare, in tests only
fn in_namespace<T: Send + 'static>(
    name: &str,
    pairs: &'static [(&'static str, &'static str)],
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var_os("CI").is_none(), "{name}: needs root, and CI is set: a skip is a failure");
        eprintln!("SKIPPED: needs root ({name})");
        return None;
    }
    let t = std::thread::spawn(move || {
        // SAFETY: moves only this thread (and the threads and processes it starts) into a
        // new, empty network namespace; no memory is involved.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare(CLONE_NEWNET)");
        sh(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        sh(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        for (x, y) in pairs {
            sh(&["ip", "link", "add", x, "type", "veth", "peer", "name", y]);
            sh(&["ip", "link", "set", x, "up"]);
            sh(&["ip", "link", "set", y, "up"]);
        }
        f()
    });
    Some(t.join().expect("the namespace thread"))
}

fn options(vnet_hdr: bool) -> SocketOptions {
    SocketOptions { buffer: 1 << 20, vnet_hdr, qdisc_bypass: false, nonblocking: true }
}

fn ifindex(name: &str) -> i32 {
    crate::sys::ifindex(name).expect("interface exists")
}

/// Everything a socket receives within `wait`, one byte string per frame.
fn drain(socket: &PacketSocket, wait: Duration) -> Vec<Vec<u8>> {
    let mut batch = Batch::new(8, crate::MAX_FRAME);
    let mut out = Vec::new();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match socket.recv_batch(&mut batch) {
            Ok(0) => std::thread::sleep(Duration::from_millis(10)),
            Ok(n) => out.extend((0..n).filter_map(|k| batch.get(k).map(|r| r.data.to_vec()))),
            Err(e) => panic!("recv: {e}"),
        }
    }
    out
}

/// Sends `data` (header included when the socket has one) out of `socket`.
fn send(socket: &PacketSocket, data: &[u8]) {
    let n = write(socket.raw_fd(), data);
    assert_eq!(n, data.len(), "short write");
}

#[allow(unsafe_code)] // write(2), in tests only
fn write(fd: std::os::fd::RawFd, data: &[u8]) -> usize {
    // SAFETY: `data` is a live slice of the length passed; the kernel only reads it.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    usize::try_from(n).unwrap_or_else(|_| panic!("write: {}", io::Error::last_os_error()))
}

/// The start-up window: a port socket must not queue frames of other interfaces (or of
/// its own) before it is bound to its interface, or they would be judged later as if they
/// had arrived there.
#[test]
fn a_port_socket_sees_no_frame_from_before_its_bind() {
    let Some(seen) = in_namespace(
        "a_port_socket_sees_no_frame_from_before_its_bind",
        &[("a0", "a1"), ("b0", "b1")],
        || {
            let frame = |marker: &[u8]| sekisho_testkit::eth(0x88b5, &[marker, &[0u8; 46][..]].concat());
            let to_a0 = PacketSocket::open(ifindex("a1"), options(false)).expect("a1");
            let to_b0 = PacketSocket::open(ifindex("b1"), options(false)).expect("b1");
            let unbound = Unbound::create(options(false)).expect("socket");
            send(&to_b0, &frame(b"before-bind-on-b"));
            send(&to_a0, &frame(b"before-bind-on-a"));
            std::thread::sleep(Duration::from_millis(100));
            let socket = unbound.bind(ifindex("a0")).expect("bind a0");
            send(&to_b0, &frame(b"after-bind-on-b"));
            send(&to_a0, &frame(b"after-bind-on-a"));
            drain(&socket, Duration::from_millis(300))
                .iter()
                .map(|f| {
                    String::from_utf8_lossy(f.get(14..30).unwrap_or_default())
                        .trim_end_matches('\0')
                        .to_owned()
                })
                .collect::<Vec<String>>()
        },
    ) else {
        return;
    };
    assert!(seen.iter().any(|m| m == "after-bind-on-a"), "the bound socket missed its own frame: {seen:?}");
    for stray in ["before-bind-on-b", "before-bind-on-a", "after-bind-on-b"] {
        assert!(!seen.iter().any(|m| m == stray), "{stray} was queued on a0's socket: {seen:?}");
    }
}

/// A virtio-net header: checksum left for offload at `csum_start`/`csum_offset`, and, for
/// a super-frame, TCP over IPv4 in segments of `gso_size`.
fn header(gso_size: u16, csum_start: u16, csum_offset: u16) -> Vec<u8> {
    let mut h = vec![vnet::F_NEEDS_CSUM, if gso_size > 0 { 1 } else { 0 }];
    for v in [if gso_size > 0 { 54 } else { 0 }, gso_size, csum_start, csum_offset] {
        h.extend_from_slice(&v.to_ne_bytes());
    }
    h
}

/// The afpacket backend forwards what hosts with their offloads on send: frames whose
/// checksum is left to offload and GSO super-frames, one verdict each, with the metadata.
#[test]
fn afpacket_forwards_offloaded_and_gso_frames_with_their_metadata() {
    let pairs: &'static [(&str, &str)] = &[("host", "lg-in"), ("lg-out", "router")];
    let Some(result) =
        in_namespace("afpacket_forwards_offloaded_and_gso_frames_with_their_metadata", pairs, || {
            let text = POLICY.replace(
                "[[zone]]\nname = \"lgwan\"",
                "[daemon]\nio = \"afpacket\"\n\n[[zone]]\nname = \"lgwan\"",
            );
            let engine = Arc::new(Engine::new(sekisho_policy::load_str(&text, "t.toml").expect("policy")));
            let (dp, _) = DataPlane::start(engine.clone(), Arc::new(NoObserver)).expect("data plane starts");
            let host = PacketSocket::open(ifindex("host"), options(true)).expect("host");
            let router = PacketSocket::open(ifindex("router"), options(true)).expect("router");
            // A connection to the router (intra-zone: this policy has no path to elsewhere).
            let mut c = TcpConn::new(("198.18.20.5", 40000), ("198.18.20.1", 443));
            let csum = |f: Vec<u8>| [header(0, 34, 16), f].concat();
            send(&host, &csum(c.syn()));
            let syn_seen = drain(&router, Duration::from_millis(300));
            send(&router, &csum(c.syn_ack()));
            let synack_seen = drain(&host, Duration::from_millis(300));
            send(&host, &csum(c.client(flags::ACK, b"")));
            let _ = drain(&router, Duration::from_millis(200));
            // A 4000-byte super-frame to be cut into 1000-byte segments on the way out.
            let big = c.client(flags::ACK | flags::PSH, &[0x5a; 4000]);
            send(&host, &[header(1000, 34, 16), big.clone()].concat());
            let big_seen = drain(&router, Duration::from_millis(300));
            dp.stop();
            (syn_seen, synack_seen, big_seen, big, engine.counters())
        })
    else {
        return;
    };
    let (syn_seen, synack_seen, big_seen, big, counters) = result;
    assert_eq!(syn_seen.len(), 1, "the SYN crossed once: {} frames", syn_seen.len());
    let (h, _) = VnetHdr::split(&syn_seen[0]).expect("header");
    assert!(h.checksum_partial(), "the checksum is still left to offload: {h:?}");
    assert_eq!(synack_seen.len(), 1, "the SYN+ACK crossed back");
    assert_eq!(big_seen.len(), 1, "one super-frame crossed as one frame: {}", big_seen.len());
    let (h, frame) = VnetHdr::split(&big_seen[0]).expect("header");
    assert!(h.is_gso() && h.gso_size == 1000, "GSO metadata kept: {h:?}");
    assert_eq!(frame, &big[..], "the frame crossed unchanged");
    assert_eq!(counters.reason("allow:intra-zone"), 4, "four verdicts: SYN, SYN+ACK, ACK, one super-frame");
}
