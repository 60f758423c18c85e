//! sekisho's data plane: each port's two interfaces opened as AF_PACKET sockets, worker
//! threads that hand every frame to the engine and send the allowed ones, unchanged, out
//! of the pair's other interface.
//!
//! Two backends (`[daemon] io`):
//! - **`afpacket`** (the default, [`afpacket`] module): raw sockets with virtio-net
//!   headers, so frames whose checksum the sending host left to offload and GSO
//!   super-frames (up to 64 KB) cross untouched with their metadata — one verdict per
//!   super-frame — and hosts keep their offloads; `recvmmsg`/`sendmmsg` in batches of 32
//!   that forward from the very buffers they received into; `PACKET_QDISC_BYPASS`; with
//!   `workers` > 1, each interface's frames spread over the workers by flow hash
//!   (`PACKET_FANOUT`), every worker serving every interface and sharing one flow table.
//! - **`pnet`** ([`pnet`] module): the same sockets (virtio-net headers included) through
//!   pnet's datalink channel, one frame per system call, one thread per interface: the
//!   portable baseline.
//!
//! Fail closed by construction: the kernel does not forward between the interfaces, so
//! when the daemon is not running nothing crosses.
//!
//! Hazards handled here: sockets are created with protocol 0 and bound to their
//! interface before they receive anything, and a frame reported from another interface is
//! dropped and counted (`foreign`); frames the host sends itself are ignored
//! (`PACKET_IGNORE_OUTGOING`), so forwarded frames are not read back; buffers hold the
//! largest IP packet plus link and virtio-net headers, and a frame the kernel had to cut is
//! dropped and counted (`truncated`), never forwarded; LRO and receive-VLAN stripping are
//! switched off on the port interfaces; send errors and frames the kernel dropped for want
//! of socket room are counted, never fatal.
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod afpacket;
mod pnet;
#[allow(unsafe_code)]
mod sys;
pub mod vnet;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sekisho_engine::{Engine, Ingress, Now, Side, Verdict};
use sekisho_policy::{Io, PortId, Timestamp};

/// The largest frame a port socket reads: an IP packet of 65,535 bytes (a GSO
/// super-frame), an Ethernet header with two VLAN tags, the virtio-net header.
pub const MAX_FRAME: usize = 65_535 + 14 + 8 + vnet::LEN;
/// How long a worker blocks waiting for frames before it looks at the stop flag.
const WAIT: Duration = Duration::from_millis(100);
/// Socket buffers: 16 MB took a per-frame forwarder from ≈1.3 to ≈2.4 Gbit/s here.
const SOCKET_BUFFER: usize = 16 << 20;

/// Why the data plane could not start. Every message names the interface and says what
/// to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// An interface of a port does not exist.
    #[error("port \"{port}\": interface {interface} does not exist in this network namespace (check `ip link`; run sekishod where the port interfaces are)")]
    Missing {
        /// The port.
        port: String,
        /// The interface.
        interface: String,
    },
    /// An interface is down.
    #[error("port \"{port}\": interface {interface} is down; bring it up with `ip link set {interface} up`")]
    Down {
        /// The port.
        port: String,
        /// The interface.
        interface: String,
    },
    /// The two sides of a pair have different MTUs.
    #[error("port \"{port}\": {inside} has MTU {inside_mtu} but {outside} has MTU {outside_mtu}; frames could not cross unchanged: set both to the same MTU (`ip link set DEV mtu N`)")]
    MtuMismatch {
        /// The port.
        port: String,
        /// Inside interface.
        inside: String,
        /// Its MTU.
        inside_mtu: usize,
        /// Outside interface.
        outside: String,
        /// Its MTU.
        outside_mtu: usize,
    },
    /// The interface's MTU could not be read.
    #[error("interface {interface}: cannot read its MTU: {source}")]
    Mtu {
        /// The interface.
        interface: String,
        /// Why.
        source: io::Error,
    },
    /// Opening the AF_PACKET socket failed.
    #[error("interface {interface}: cannot open an AF_PACKET socket: {source} (sekishod needs root or CAP_NET_RAW; PACKET_FANOUT and virtio-net headers need Linux 3.x or later)")]
    Socket {
        /// The interface.
        interface: String,
        /// Why.
        source: io::Error,
    },
    /// A worker thread could not be started.
    #[error("cannot start a worker thread: {0}")]
    Thread(io::Error),
}

/// What the workers report besides forwarding: every frame enforce mode drops, or that
/// monitor mode forwards but would have dropped (`verdict.is_alert()`). Called on the
/// worker's thread for each such frame: an implementation must not block, lock or
/// allocate (the alert pipeline's submitter and a bounded event ring qualify).
pub trait Observer: Send + Sync + 'static {
    /// One frame that enforce mode drops (or would drop).
    fn dropped(&self, now: Now, ingress: Ingress, verdict: &Verdict);
}

/// An [`Observer`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn dropped(&self, _: Now, _: Ingress, _: &Verdict) {}
}

/// Counters the data plane keeps per interface, beside the engine's. They count rare
/// events (written with `fetch_add` by whichever worker meets them), not every frame.
#[derive(Debug, Default)]
pub struct IoCounters {
    /// Frames the kernel had to cut to fit the read buffer: dropped, never forwarded.
    pub truncated: AtomicU64,
    /// Frames the engine allowed whose send failed (the kernel refused or had no room).
    pub send_errors: AtomicU64,
    /// Read errors other than "nothing waiting".
    pub read_errors: AtomicU64,
    /// Frames the kernel dropped because the socket's receive buffer was full.
    pub kernel_drops: AtomicU64,
    /// Frames that did not come from this interface (another interface, or sent by this
    /// host) although they were read from its socket: dropped, never judged.
    pub foreign: AtomicU64,
    /// The monotonic clock (ns, as [`Clock::now`]) when a worker serving the interface
    /// last went round its loop; it does at least every 100 ms.
    pub heartbeat: AtomicU64,
}

/// One interface of one port, as the data plane opened it.
#[derive(Debug)]
pub struct Interface {
    /// The port it belongs to.
    pub port: PortId,
    /// Its side of the pair.
    pub side: Side,
    /// The interface name.
    pub name: String,
    /// Its index in the network namespace.
    pub ifindex: i32,
    /// Its MTU.
    pub mtu: usize,
    /// Its counters.
    pub counters: IoCounters,
}

impl Interface {
    /// Where frames read from this interface arrive, for the engine.
    pub fn ingress(&self) -> Ingress {
        Ingress { port: self.port, side: self.side }
    }
}

/// A warning found at start that does not stop the daemon.
pub type Warning = String;

/// The coarse clocks the workers read, advanced by the caller (see [`DataPlane::tick`])
/// so that the per-packet path reads two relaxed atomics instead of calling the clock:
/// the monotonic clock (flow timeouts: a stepped wall clock must neither freeze nor
/// expire flows) and the wall clock (exceptions' expiry dates).
#[derive(Debug)]
pub struct Clock {
    start: Instant,
    mono: AtomicU64,
    wall: AtomicU64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock { start: Instant::now(), mono: AtomicU64::new(0), wall: AtomicU64::new(0) }
    }
}

impl Clock {
    /// Sets both clocks to now.
    pub fn tick(&self) {
        let mono = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.mono.store(mono, Relaxed);
        self.wall.store(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// The time at the last tick.
    pub fn now(&self) -> Now {
        Now { mono: self.mono.load(Relaxed), wall: Timestamp(self.wall.load(Relaxed)) }
    }
}

/// What every worker shares.
pub(crate) struct Shared {
    pub engine: Arc<Engine>,
    pub observer: Arc<dyn Observer>,
    pub interfaces: Arc<Vec<Interface>>,
    pub clock: Arc<Clock>,
    pub stop: Arc<AtomicBool>,
    /// Per worker: the monotonic clock when it last went round its loop.
    pub heartbeats: Arc<Vec<AtomicU64>>,
}

impl Clone for Shared {
    fn clone(&self) -> Self {
        Shared {
            engine: self.engine.clone(),
            observer: self.observer.clone(),
            interfaces: self.interfaces.clone(),
            clock: self.clock.clone(),
            stop: self.stop.clone(),
            heartbeats: self.heartbeats.clone(),
        }
    }
}

/// The running data plane.
pub struct DataPlane {
    shared: Shared,
    io: Io,
    workers: Vec<JoinHandle<()>>,
}

/// Checks every port's interfaces (they exist, are up, pairs have equal MTUs) and
/// prepares their offloads; the interfaces in port order, (inside, outside) per port.
fn check_interfaces(engine: &Engine, warnings: &mut Vec<Warning>) -> Result<Vec<Interface>, StartError> {
    let ports = engine.loaded().policy.ports().to_vec();
    let mut interfaces = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let mut mtus = Vec::new();
        for (name, side) in [(&port.inside, Side::Inside), (&port.outside, Side::Outside)] {
            let ifindex = sys::ifindex(name)
                .map_err(|_| StartError::Missing { port: port.name.clone(), interface: name.clone() })?;
            let (up, mtu) =
                sys::link(name).map_err(|source| StartError::Mtu { interface: name.clone(), source })?;
            if !up {
                return Err(StartError::Down { port: port.name.clone(), interface: name.clone() });
            }
            mtus.push(mtu);
            match sys::prepare_offloads(name, true) {
                Ok(done) if done != sys::Offloads::default() => {
                    tracing::info!(interface = %name, ?done, "switched off offloads that would change frames");
                }
                Ok(_) => {}
                Err(e) => warnings.push(format!(
                    "interface {name}: cannot switch off LRO and VLAN stripping ({e}); run \
                     `ethtool -K {name} lro off rxvlan off`"
                )),
            }
            interfaces.push(Interface {
                port: PortId(i as u16),
                side,
                name: name.clone(),
                ifindex,
                mtu,
                counters: IoCounters::default(),
            });
        }
        if mtus[0] != mtus[1] {
            return Err(StartError::MtuMismatch {
                port: port.name.clone(),
                inside: port.inside.clone(),
                inside_mtu: mtus[0],
                outside: port.outside.clone(),
                outside_mtu: mtus[1],
            });
        }
    }
    Ok(interfaces)
}

impl DataPlane {
    /// Checks every port's interfaces, prepares their offloads, opens the sockets and
    /// starts the workers of the backend the policy names (`[daemon] io`, `workers`).
    /// Returns the running data plane and the warnings found (offloads that could not be
    /// changed).
    pub fn start(
        engine: Arc<Engine>,
        observer: Arc<dyn Observer>,
    ) -> Result<(DataPlane, Vec<Warning>), StartError> {
        let (io, workers) = {
            let l = engine.loaded();
            (l.policy.io(), usize::from(l.policy.workers()))
        };
        let mut warnings = Vec::new();
        let interfaces = Arc::new(check_interfaces(&engine, &mut warnings)?);
        let clock = Arc::new(Clock::default());
        clock.tick();
        let threads = match io {
            Io::AfPacket => workers,
            Io::Pnet => interfaces.len(),
        };
        let shared = Shared {
            engine,
            observer,
            interfaces,
            clock,
            stop: Arc::new(AtomicBool::new(false)),
            heartbeats: Arc::new((0..threads).map(|_| AtomicU64::new(0)).collect()),
        };
        let handles = match io {
            Io::AfPacket => afpacket::start(&shared, workers)?,
            Io::Pnet => pnet::start(&shared)?,
        };
        Ok((DataPlane { shared, io, workers: handles }, warnings))
    }

    /// The interfaces and their data-plane counters.
    pub fn interfaces(&self) -> &[Interface] {
        &self.shared.interfaces
    }

    /// The engine the workers feed.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// The backend in use.
    pub fn io(&self) -> Io {
        self.io
    }

    /// Per worker thread, the monotonic clock (ns) when it last went round its loop: a
    /// value more than a few hundred milliseconds old means a stuck worker.
    pub fn heartbeats(&self) -> Vec<u64> {
        self.shared.heartbeats.iter().map(|h| h.load(Relaxed)).collect()
    }

    /// Advances the workers' clocks to now and returns them. Call it often (every few
    /// tens of milliseconds): flow timeouts and exception expiry are measured by it.
    pub fn tick(&self) -> Now {
        self.shared.clock.tick();
        self.shared.clock.now()
    }

    /// Asks the workers to stop and waits for them (at most one wait each).
    pub fn stop(self) {
        self.shared.stop.store(true, Relaxed);
        for w in self.workers {
            let _ = w.join();
        }
    }
}

/// Opens the port socket of `iface` with the options every backend uses.
pub(crate) fn open_socket(iface: &Interface, nonblocking: bool) -> Result<sys::PacketSocket, StartError> {
    let options =
        sys::SocketOptions { buffer: SOCKET_BUFFER, vnet_hdr: true, qdisc_bypass: true, nonblocking };
    sys::PacketSocket::open(iface.ifindex, options)
        .map_err(|source| StartError::Socket { interface: iface.name.clone(), source })
}

/// The interface a frame read from interface `me` leaves by: the other one of its pair.
pub(crate) fn peer(me: usize) -> usize {
    me ^ 1
}

#[cfg(test)]
mod tests;
