//! The `afpacket` backend: batched receive and send on raw AF_PACKET sockets with
//! virtio-net headers, every worker serving every interface.
//!
//! Each worker owns one socket per interface. With several workers, the sockets of one
//! interface form a fan-out group (hash mode): the kernel gives each flow's frames to one
//! of them, so a flow is judged in order by one worker while the flow table stays shared.
//! A worker waits with `poll` on all its sockets, reads up to [`BATCH`] frames from one
//! with `recvmmsg`, judges them, and sends the allowed ones with `sendmmsg` on its socket
//! of the pair's other interface — from the buffers they were received into, header and
//! all, so checksum-offload and GSO metadata cross unchanged.

use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::sys::{self, Batch, PacketSocket};
use crate::vnet::VnetHdr;
use crate::{open_socket, peer, Shared, StartError, MAX_FRAME, WAIT};

/// Frames per `recvmmsg`/`sendmmsg`.
pub(crate) const BATCH: usize = 32;
/// Batches read from one socket before the others get a turn.
const ROUNDS: usize = 8;
/// How often a worker reads the kernel's drop counters of its sockets.
const STATISTICS_EVERY: Duration = Duration::from_secs(1);

/// A fan-out group id for interface `i` of this process, unique among its interfaces.
fn fanout_group(i: usize) -> u16 {
    (std::process::id() as u16).wrapping_mul(64).wrapping_add(i as u16)
}

/// Opens every worker's sockets and starts the workers.
///
/// The kernel hands a flow to the fan-out member at index `hash mod workers`, in the order
/// the members joined, and the hash is the same for both directions and every interface.
/// Interface `i`'s group is therefore joined starting from worker `i mod workers`: the
/// two hops of one flow through the gate (a port's inside, the other port's outside) fall
/// on different workers, so even a single flow keeps more than one core busy.
pub(crate) fn start(shared: &Shared, workers: usize) -> Result<Vec<JoinHandle<()>>, StartError> {
    let mut all: Vec<Vec<Option<PacketSocket>>> =
        (0..workers).map(|_| (0..shared.interfaces.len()).map(|_| None).collect()).collect();
    for (i, iface) in shared.interfaces.iter().enumerate() {
        for k in 0..workers {
            let socket = open_socket(iface, true)?;
            if workers > 1 {
                socket
                    .join_fanout(fanout_group(i))
                    .map_err(|source| StartError::Socket { interface: iface.name.clone(), source })?;
            }
            all[(i + k) % workers][i] = Some(socket);
        }
    }
    let mut handles = Vec::new();
    for (id, sockets) in all.into_iter().enumerate() {
        let sockets: Vec<PacketSocket> = sockets.into_iter().flatten().collect();
        let worker = Worker { id, shared: shared.clone(), sockets, batch: Batch::new(BATCH, MAX_FRAME) };
        let handle = std::thread::Builder::new()
            .name(format!("dataplane-{id}"))
            .spawn(move || worker.run())
            .map_err(StartError::Thread)?;
        handles.push(handle);
    }
    Ok(handles)
}

struct Worker {
    id: usize,
    shared: Shared,
    /// One per interface, in the order of `shared.interfaces`.
    sockets: Vec<PacketSocket>,
    batch: Batch,
}

impl Worker {
    fn run(mut self) {
        let engine = self.shared.engine.clone();
        let mut judge = engine.worker();
        let mut fds: Vec<libc::pollfd> = self.sockets.iter().map(|s| sys::pollfd(s.raw_fd())).collect();
        let mut forward: Vec<u16> = Vec::with_capacity(BATCH);
        let mut last_statistics = 0;
        let wait = WAIT.as_millis() as i32;
        while !self.shared.stop.load(Relaxed) {
            let now = self.shared.clock.now();
            if let Some(h) = self.shared.heartbeats.get(self.id) {
                h.store(now.mono, Relaxed);
            }
            for iface in self.shared.interfaces.iter() {
                iface.counters.heartbeat.store(now.mono, Relaxed);
            }
            if now.mono.saturating_sub(last_statistics) >= STATISTICS_EVERY.as_nanos() as u64 {
                self.kernel_statistics();
                last_statistics = now.mono;
            }
            match sys::poll_readable(&mut fds, wait) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(worker = self.id, "poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            }
            for i in 0..self.sockets.len() {
                if fds.get(i).is_none_or(|p| p.revents == 0) {
                    continue;
                }
                for _ in 0..ROUNDS {
                    if self.batch_from(i, &mut judge, &mut forward) < BATCH {
                        break;
                    }
                }
            }
        }
    }

    /// Reads, judges and forwards one batch from interface `i`; returns how many frames
    /// were read.
    fn batch_from(
        &mut self,
        i: usize,
        judge: &mut sekisho_engine::Worker<'_>,
        forward: &mut Vec<u16>,
    ) -> usize {
        let iface = &self.shared.interfaces[i];
        let counters = &iface.counters;
        let n = match self.sockets[i].recv_batch(&mut self.batch) {
            Ok(n) => n,
            Err(e) => {
                counters.read_errors.fetch_add(1, Relaxed);
                tracing::debug!(interface = %iface.name, "read error: {e}");
                return 0;
            }
        };
        if n == 0 {
            return 0;
        }
        let now = self.shared.clock.now();
        let ingress = iface.ingress();
        forward.clear();
        for k in 0..n {
            let Some(r) = self.batch.get(k) else { continue };
            if r.truncated {
                counters.truncated.fetch_add(1, Relaxed);
                continue;
            }
            if r.ifindex != iface.ifindex || r.outgoing {
                counters.foreign.fetch_add(1, Relaxed);
                continue;
            }
            let Some((hdr, frame)) = VnetHdr::split(r.data) else {
                counters.truncated.fetch_add(1, Relaxed);
                continue;
            };
            // A checksum the sending host's kernel completes is not verified by inspection.
            let meta = hdr.meta();
            let verdict = judge.process_meta(now, ingress, frame, meta);
            if verdict.is_alert() {
                self.shared.observer.dropped(now, ingress, &verdict);
            }
            if verdict.action == sekisho_engine::Action::Forward {
                forward.push(k as u16);
            }
        }
        if !forward.is_empty() {
            let out = peer(i);
            let (_, failed) = self.sockets[out].send_batch(&mut self.batch, forward);
            if failed > 0 {
                self.shared.interfaces[out].counters.send_errors.fetch_add(failed as u64, Relaxed);
            }
        }
        n
    }

    /// Adds the kernel's receive-drop counts of this worker's sockets to the interfaces'.
    fn kernel_statistics(&self) {
        for (socket, iface) in self.sockets.iter().zip(self.shared.interfaces.iter()) {
            if let Ok((_, drops)) = socket.statistics() {
                if drops > 0 {
                    iface.counters.kernel_drops.fetch_add(u64::from(drops), Relaxed);
                }
            }
        }
    }
}
