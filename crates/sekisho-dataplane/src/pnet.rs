//! The `pnet` backend: pnet's datalink channel on the same port sockets (virtio-net
//! headers included), one thread per interface, one frame per system call — the portable
//! baseline the `afpacket` backend is measured against.

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::Duration;

use pnet_datalink::{Channel, Config, DataLinkReceiver, DataLinkSender, NetworkInterface};
use sekisho_engine::Action;

use crate::vnet::VnetHdr;
use crate::{open_socket, peer, Interface, Shared, StartError, MAX_FRAME, WAIT};

/// The two halves of a pnet channel.
type Halves = (Box<dyn DataLinkSender>, Box<dyn DataLinkReceiver>);

/// pnet's channel on an already bound port socket.
fn channel(iface: &Interface) -> Result<Halves, StartError> {
    let fail = |source| StartError::Socket { interface: iface.name.clone(), source };
    let socket = open_socket(iface, false)?;
    let config = Config {
        // One byte more than the largest frame: a frame that fills it was cut short.
        read_buffer_size: MAX_FRAME + 1,
        write_buffer_size: MAX_FRAME,
        read_timeout: Some(WAIT),
        write_timeout: Some(WAIT),
        promiscuous: true,
        // pnet binds the socket to the interface again (the same binding), adds the
        // promiscuous membership and owns (closes) the descriptor from here on.
        socket_fd: Some(socket.into_raw_fd()),
        ..Config::default()
    };
    let ni = NetworkInterface {
        name: iface.name.clone(),
        description: String::new(),
        index: iface.ifindex as u32,
        mac: None,
        ips: Vec::new(),
        flags: 0,
    };
    match pnet_datalink::channel(&ni, config).map_err(fail)? {
        Channel::Ethernet(tx, rx) => Ok((tx, rx)),
        _ => Err(fail(io::Error::other("pnet returned a non-Ethernet channel"))),
    }
}

/// Opens a channel per interface and starts one worker per interface.
pub(crate) fn start(shared: &Shared) -> Result<Vec<JoinHandle<()>>, StartError> {
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    for iface in shared.interfaces.iter() {
        let (tx, rx) = channel(iface)?;
        txs.push(Some(tx));
        rxs.push(rx);
    }
    let mut handles = Vec::new();
    for (me, rx) in rxs.into_iter().enumerate() {
        let tx = txs
            .get_mut(peer(me))
            .and_then(Option::take)
            .ok_or_else(|| StartError::Thread(io::Error::other("an interface without its pair")))?;
        let worker = Worker { shared: shared.clone(), me, rx, tx, read_buffer: MAX_FRAME + 1 };
        let handle = std::thread::Builder::new()
            .name(format!("rx-{}", shared.interfaces[me].name))
            .spawn(move || worker.run())
            .map_err(StartError::Thread)?;
        handles.push(handle);
    }
    Ok(handles)
}

/// One worker: reads `rx` (interface `me`), sends allowed frames with `tx` (the other
/// interface of the pair).
pub(crate) struct Worker {
    pub shared: Shared,
    pub me: usize,
    pub rx: Box<dyn DataLinkReceiver>,
    pub tx: Box<dyn DataLinkSender>,
    pub read_buffer: usize,
}

impl Worker {
    pub(crate) fn run(mut self) {
        let engine = self.shared.engine.clone();
        let mut judge = engine.worker();
        let iface = &self.shared.interfaces[self.me];
        let counters = &iface.counters;
        let ingress = iface.ingress();
        while !self.shared.stop.load(Relaxed) {
            let mono = self.shared.clock.now().mono;
            counters.heartbeat.store(mono, Relaxed);
            if let Some(h) = self.shared.heartbeats.get(self.me) {
                h.store(mono, Relaxed);
            }
            let data = match self.rx.next() {
                Ok(data) => data,
                Err(e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::Interrupted => {
                    continue
                }
                Err(e) => {
                    counters.read_errors.fetch_add(1, Relaxed);
                    tracing::debug!(interface = %iface.name, "read error: {e}");
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            };
            if data.len() >= self.read_buffer {
                counters.truncated.fetch_add(1, Relaxed);
                continue;
            }
            let Some((hdr, frame)) = VnetHdr::split(data) else {
                counters.truncated.fetch_add(1, Relaxed);
                continue;
            };
            let now = self.shared.clock.now();
            // A checksum the sending host's kernel completes is not verified by inspection.
            let meta = hdr.meta();
            let verdict = judge.process_meta(now, ingress, frame, meta);
            if verdict.is_alert() {
                self.shared.observer.dropped(now, ingress, &verdict);
            }
            // Header and frame leave together: the egress finishes checksums and splits
            // super-frames as the header says.
            if verdict.action == Action::Forward && !matches!(self.tx.send_to(data, None), Some(Ok(()))) {
                self.shared.interfaces[peer(self.me)].counters.send_errors.fetch_add(1, Relaxed);
            }
        }
    }
}
