//! The only `unsafe` of the data plane: AF_PACKET sockets (options, bind, batched
//! receive and send, statistics), `poll`, and the ethtool ioctls. Each block states the
//! invariant it relies on; everything outside this module uses the safe wrappers.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// linux/if_packet.h
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
/// Linux 4.20+: the socket does not see frames the host itself sends — including the
/// ones this daemon forwards.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_FANOUT_HASH: libc::c_int = 0;
const PACKET_OUTGOING: u8 = 4;

const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
/// Legacy ethtool flag bits (linux/ethtool.h).
const ETH_FLAG_RXVLAN: u32 = 1 << 8;
const ETH_FLAG_LRO: u32 = 1 << 15;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live reference for the duration of the call and the length
    // passed is exactly its size; the kernel only reads it. An invalid `fd` yields EBADF,
    // not undefined behaviour.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    check(ret).map(drop)
}

/// The index of interface `name` in this network namespace.
pub fn ifindex(name: &str) -> io::Result<i32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a NUL-terminated string that lives across the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::last_os_error());
    }
    i32::try_from(i).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// Options of a port socket.
#[derive(Clone, Copy, Debug)]
pub struct SocketOptions {
    /// Receive and send buffer, bytes (forced past the sysctl limits when root).
    pub buffer: usize,
    /// Put a virtio-net header before every frame read and written.
    pub vnet_hdr: bool,
    /// Send straight to the driver, past the queueing discipline.
    pub qdisc_bypass: bool,
    /// Reads and writes never block.
    pub nonblocking: bool,
}

/// An AF_PACKET raw socket for one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

/// A port socket that is not bound to an interface yet: it receives nothing.
#[derive(Debug)]
pub struct Unbound {
    fd: OwnedFd,
}

impl Unbound {
    /// A new AF_PACKET raw socket with options `o`.
    ///
    /// It is created with protocol 0, so it receives **nothing** until [`Unbound::bind`]
    /// gives it the interface and the protocol at once: a socket opened with `ETH_P_ALL`
    /// would queue frames from every interface of the namespace in the meantime, to be
    /// judged later as if they had arrived on the one it is bound to. The options are set
    /// here, before the bind (the virtio-net header must be, and before any ring).
    pub fn create(o: SocketOptions) -> io::Result<Unbound> {
        // SAFETY: plain syscall with constant arguments; on success it returns a new file
        // descriptor that nothing else owns, which `OwnedFd` then owns (and closes).
        let fd = unsafe { OwnedFd::from_raw_fd(check(libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0))?) };
        let raw = fd.as_raw_fd();
        setsockopt(raw, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &(1 as libc::c_int))?;
        let size = libc::c_int::try_from(o.buffer).unwrap_or(libc::c_int::MAX);
        for (force, plain) in
            [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)]
        {
            if setsockopt(raw, libc::SOL_SOCKET, force, &size).is_err() {
                setsockopt(raw, libc::SOL_SOCKET, plain, &size)?;
            }
        }
        if o.vnet_hdr {
            setsockopt(raw, libc::SOL_PACKET, PACKET_VNET_HDR, &(1 as libc::c_int))?;
        }
        if o.qdisc_bypass {
            setsockopt(raw, libc::SOL_PACKET, PACKET_QDISC_BYPASS, &(1 as libc::c_int))?;
        }
        if o.nonblocking {
            // SAFETY: fcntl on a descriptor this function owns; integer arguments only.
            let flags = check(unsafe { libc::fcntl(raw, libc::F_GETFL) })?;
            // SAFETY: as above.
            check(unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
        }
        Ok(Unbound { fd })
    }

    /// Binds the socket to interface `ifindex` for every ethertype, in promiscuous mode:
    /// from now on it receives that interface's frames, and only those.
    pub fn bind(self, ifindex: i32) -> io::Result<PacketSocket> {
        let raw = self.fd.as_raw_fd();
        // SAFETY: `sockaddr_ll` is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as libc::c_ushort;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: `sll` is a properly initialised `sockaddr_ll` living across the call, and
        // the length passed is its size.
        check(unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        let mreq = PacketMreq { ifindex, kind: PACKET_MR_PROMISC, alen: 0, address: [0; 8] };
        setsockopt(raw, libc::SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq)?;
        Ok(PacketSocket { fd: self.fd })
    }
}

impl PacketSocket {
    /// A socket with options `o` bound to interface `ifindex` ([`Unbound::create`], then
    /// [`Unbound::bind`]).
    pub fn open(ifindex: i32, o: SocketOptions) -> io::Result<PacketSocket> {
        Unbound::create(o)?.bind(ifindex)
    }

    /// Joins fan-out group `group` (hash mode): the interface's frames are spread over the
    /// group's sockets by flow hash. Every socket of one interface joins the same group;
    /// groups must differ between interfaces.
    pub fn join_fanout(&self, group: u16) -> io::Result<()> {
        let arg: libc::c_int = libc::c_int::from(group) | (PACKET_FANOUT_HASH << 16);
        setsockopt(self.fd.as_raw_fd(), libc::SOL_PACKET, PACKET_FANOUT, &arg)
    }

    /// The descriptor (for `poll`).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Gives up the descriptor to a new owner (pnet's channel, which closes it).
    pub fn into_raw_fd(self) -> RawFd {
        std::os::fd::IntoRawFd::into_raw_fd(self.fd)
    }

    /// Frames the kernel queued for this socket and frames it dropped for want of room
    /// since the last call (the counters reset when read).
    pub fn statistics(&self) -> io::Result<(u32, u32)> {
        let mut st = TpacketStats { packets: 0, drops: 0 };
        let mut len = std::mem::size_of::<TpacketStats>() as libc::socklen_t;
        // SAFETY: `st` and `len` live across the call; `len` holds `st`'s size and the
        // kernel writes at most that many bytes into `st`.
        check(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_STATISTICS,
                (&mut st as *mut TpacketStats).cast(),
                &mut len,
            )
        })?;
        Ok((st.packets, st.drops))
    }

    /// Receives up to `batch.capacity()` frames without blocking; returns how many.
    /// `Ok(0)` when none was waiting.
    pub fn recv_batch(&self, batch: &mut Batch) -> io::Result<usize> {
        batch.prepare_recv();
        // SAFETY: `prepare_recv` pointed every header at this batch's own buffers, iovecs
        // and address slots, whose sizes the headers state, and the batch is borrowed
        // mutably for the call, so they stay valid and unaliased; `vlen` is at most the
        // number of headers.
        let n = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                batch.headers.as_mut_ptr(),
                batch.headers.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        match check(n) {
            Ok(n) => {
                batch.received = n as usize;
                Ok(n as usize)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                batch.received = 0;
                Ok(0)
            }
            Err(e) => {
                batch.received = 0;
                Err(e)
            }
        }
    }

    /// Sends the frames `which` (indices of received frames in `batch`) unchanged,
    /// without blocking. Returns how many were sent; a frame the kernel refused is counted
    /// in the second number and skipped (the rest are still sent).
    pub fn send_batch(&self, batch: &mut Batch, which: &[u16]) -> (usize, usize) {
        let (mut sent, mut failed) = (0, 0);
        let mut start = 0;
        while start < which.len() {
            let n = batch.prepare_send(&which[start..]);
            // SAFETY: `prepare_send` pointed the first `n` send headers at received frames
            // of this batch (their received lengths), which stay valid while the batch is
            // borrowed; no address is given (the socket is bound).
            let ret = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    batch.send_headers.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            match usize::try_from(ret) {
                Ok(done) if done > 0 => {
                    sent += done;
                    start += done;
                }
                // The next frame failed (sendmmsg stops at the first failure): skip it.
                _ => {
                    failed += 1;
                    start += 1;
                }
            }
        }
        (sent, failed)
    }
}

/// `struct packet_mreq`.
#[repr(C)]
struct PacketMreq {
    ifindex: libc::c_int,
    kind: libc::c_ushort,
    alen: libc::c_ushort,
    address: [u8; 8],
}

/// `struct tpacket_stats`.
#[repr(C)]
struct TpacketStats {
    packets: libc::c_uint,
    drops: libc::c_uint,
}

/// Buffers for one batched receive and the sends that forward from it. The frames stay
/// where they were received: forwarding sends them from the same memory.
pub struct Batch {
    frame_size: usize,
    buffers: Box<[u8]>,
    iovecs: Box<[libc::iovec]>,
    addresses: Box<[libc::sockaddr_ll]>,
    headers: Box<[libc::mmsghdr]>,
    send_iovecs: Box<[libc::iovec]>,
    send_headers: Box<[libc::mmsghdr]>,
    received: usize,
}

// SAFETY: the raw pointers inside the headers point only into this batch's own boxes and
// are rebuilt before every use; moving the batch to another thread moves those boxes too.
unsafe impl Send for Batch {}

/// One received frame.
#[derive(Debug)]
pub struct Received<'b> {
    /// The bytes received (with the virtio-net header when the socket has one).
    pub data: &'b [u8],
    /// The kernel had more bytes than the buffer held: the frame is cut short.
    pub truncated: bool,
    /// The interface it arrived on.
    pub ifindex: i32,
    /// The kernel's packet type says the host itself sent it.
    pub outgoing: bool,
}

impl Batch {
    /// Room for `count` frames of at most `frame_size` bytes each.
    pub fn new(count: usize, frame_size: usize) -> Batch {
        let count = count.max(1);
        // SAFETY: these are plain-old-data C structs; all-zero is a valid value for each.
        let zero_iov: libc::iovec = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Batch {
            frame_size,
            buffers: vec![0u8; count * frame_size].into_boxed_slice(),
            iovecs: vec![zero_iov; count].into_boxed_slice(),
            addresses: vec![zero_sll; count].into_boxed_slice(),
            headers: vec![zero_hdr; count].into_boxed_slice(),
            send_iovecs: vec![zero_iov; count].into_boxed_slice(),
            send_headers: vec![zero_hdr; count].into_boxed_slice(),
            received: 0,
        }
    }

    fn prepare_recv(&mut self) {
        let base = self.buffers.as_mut_ptr();
        for i in 0..self.headers.len() {
            // `i * frame_size` is inside `buffers` (its length is count × frame_size).
            self.iovecs[i] = libc::iovec {
                iov_base: base.wrapping_add(i * self.frame_size).cast(),
                iov_len: self.frame_size,
            };
            let h = &mut self.headers[i];
            h.msg_hdr.msg_name = (&mut self.addresses[i] as *mut libc::sockaddr_ll).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
    }

    /// Points the send headers at received frames `which` (as many as fit); returns how
    /// many.
    fn prepare_send(&mut self, which: &[u16]) -> usize {
        let n = which.len().min(self.send_headers.len());
        let base = self.buffers.as_mut_ptr();
        for (slot, &i) in which[..n].iter().enumerate() {
            let i = usize::from(i).min(self.received.saturating_sub(1));
            let len = (self.headers[i].msg_len as usize).min(self.frame_size);
            self.send_iovecs[slot] =
                libc::iovec { iov_base: base.wrapping_add(i * self.frame_size).cast(), iov_len: len };
            let h = &mut self.send_headers[slot];
            h.msg_hdr.msg_name = std::ptr::null_mut();
            h.msg_hdr.msg_namelen = 0;
            h.msg_hdr.msg_iov = &mut self.send_iovecs[slot];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        n
    }

    /// The `i`-th frame received by the last `recv_batch`.
    pub fn get(&self, i: usize) -> Option<Received<'_>> {
        if i >= self.received {
            return None;
        }
        let h = self.headers.get(i)?;
        let len = (h.msg_len as usize).min(self.frame_size);
        let start = i * self.frame_size;
        let data = self.buffers.get(start..start + len)?;
        let sll = self.addresses.get(i)?;
        Some(Received {
            data,
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || h.msg_len as usize > self.frame_size,
            ifindex: sll.sll_ifindex,
            outgoing: sll.sll_pkttype == PACKET_OUTGOING,
        })
    }
}

/// Waits up to `timeout_ms` for any of `fds` to become readable; returns which did.
pub fn poll_readable(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    for p in fds.iter_mut() {
        p.events = libc::POLLIN;
        p.revents = 0;
    }
    // SAFETY: `fds` is a valid, exclusively borrowed slice of `pollfd` of the length
    // passed; the kernel writes only `revents` fields.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    match check(n) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// A `pollfd` for `fd`.
pub fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd { fd, events: libc::POLLIN, revents: 0 }
}

/// `struct ifreq` with an integer member of its union (`ifr_flags`, `ifr_mtu`).
#[repr(C)]
struct IfreqInt {
    name: [libc::c_char; libc::IFNAMSIZ],
    value: libc::c_int,
    _pad: [u8; 20],
}

/// Runs an interface ioctl whose answer is an integer (`SIOCGIFFLAGS`, `SIOCGIFMTU`) on
/// `interface`, in the calling thread's network namespace.
fn ifreq_int(interface: &str, request: libc::c_ulong) -> io::Result<libc::c_int> {
    let bytes = interface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"));
    }
    let mut req = IfreqInt { name: [0; libc::IFNAMSIZ], value: 0, _pad: [0; 20] };
    for (dst, src) in req.name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: a plain datagram socket used only for the ioctl; owned and closed by OwnedFd.
    let sock = unsafe { OwnedFd::from_raw_fd(check(libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0))?) };
    // SAFETY: `req` is a NUL-terminated `ifreq` as large as the kernel's (40 bytes) living
    // across the call; for these requests the kernel reads the name and writes one int.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), request, &mut req as *mut IfreqInt) })?;
    Ok(req.value)
}

/// Whether `interface` is up, and its MTU.
pub fn link(interface: &str) -> io::Result<(bool, usize)> {
    let flags = ifreq_int(interface, libc::SIOCGIFFLAGS)?;
    let mtu = ifreq_int(interface, libc::SIOCGIFMTU)?;
    Ok((flags & libc::IFF_UP != 0, usize::try_from(mtu).unwrap_or(0)))
}

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with the `ifr_data` member of its union.
#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// Runs the SIOCETHTOOL ioctl on `interface` with `command`, a `#[repr(C)]` ethtool
/// command structure that begins with its `cmd` word.
fn ethtool_ioctl<T>(interface: &str, command: &mut T) -> io::Result<()> {
    let bytes = interface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"));
    }
    let mut req = IfreqData { name: [0; libc::IFNAMSIZ], data: std::ptr::null_mut(), _pad: [0; 16] };
    for (dst, src) in req.name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    req.data = (command as *mut T).cast();
    // SAFETY: a plain datagram socket used only for the ioctl; owned and closed by OwnedFd.
    let sock = unsafe { OwnedFd::from_raw_fd(check(libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0))?) };
    // SAFETY: `req` is a properly laid out, NUL-terminated `ifreq` whose data pointer
    // points at `command`, which outlives the call and is the full structure the kernel
    // reads and writes for its `cmd` (callers pass only the matching struct).
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req as *mut IfreqData) })?;
    Ok(())
}

fn ethtool(interface: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let mut value = EthtoolValue { cmd, data };
    ethtool_ioctl(interface, &mut value)?;
    Ok(value.data)
}

/// What [`prepare_offloads`] found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Offloads {
    /// GRO was on and has been switched off.
    pub gro_switched_off: bool,
    /// LRO or receive VLAN stripping was on and has been switched off.
    pub flags_switched_off: bool,
}

/// Switches off on `interface` the receive offloads that would hand the daemon frames
/// different from the ones on the wire: LRO (merged frames without the metadata to split
/// them again) and receive VLAN stripping (tags moved out of the frame). GRO is switched
/// off too unless `keep_gro`: with virtio-net headers its merged frames carry their GSO
/// metadata and cross as the kernel would forward them. Errors mean the driver refused.
pub fn prepare_offloads(interface: &str, keep_gro: bool) -> io::Result<Offloads> {
    let mut done = Offloads::default();
    if !keep_gro && ethtool(interface, ETHTOOL_GGRO, 0)? != 0 {
        ethtool(interface, ETHTOOL_SGRO, 0)?;
        done.gro_switched_off = true;
    }
    let flags = ethtool(interface, ETHTOOL_GFLAGS, 0)?;
    let unwanted = ETH_FLAG_LRO | ETH_FLAG_RXVLAN;
    if flags & unwanted != 0 {
        ethtool(interface, ETHTOOL_SFLAGS, flags & !unwanted)?;
        done.flags_switched_off = true;
    }
    Ok(done)
}
