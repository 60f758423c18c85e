//! The only `unsafe` of the data plane: creating the AF_PACKET socket that pnet then binds,
//! and the ethtool ioctls that switch off offloads which break inline forwarding.
//! Each block states the invariant it relies on.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `PACKET_IGNORE_OUTGOING` (linux/if_packet.h, Linux 4.20+): the socket does not see
/// frames the host itself sends — including the ones this daemon forwards.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

const ETHTOOL_GDRVINFO: u32 = 0x03;
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

fn setsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` lives across the call and the length passed is its exact size; the
    // kernel only reads it. An invalid `fd` yields EBADF, not undefined behaviour.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(ret).map(drop)
}

/// A new AF_PACKET raw socket that ignores outgoing frames and has `buffer` bytes of
/// receive and send buffer (forced past the sysctl limit when root).
///
/// It is created with protocol 0, so it receives **nothing** until it is bound to an
/// interface with a protocol (pnet's channel binds it to one interface with `ETH_P_ALL`).
/// A socket opened with `ETH_P_ALL` would queue frames from every interface of the
/// namespace in the meantime, and they would later be judged as if they had arrived on
/// the interface it is bound to.
pub fn packet_socket(buffer: usize) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments; on success it returns a new file
    // descriptor that nothing else owns, which `OwnedFd` then owns (and closes).
    let fd = unsafe { OwnedFd::from_raw_fd(check(libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0))?) };
    setsockopt_int(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)?;
    let size = libc::c_int::try_from(buffer).unwrap_or(libc::c_int::MAX);
    for (force, plain) in [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)] {
        if setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, force, size).is_err() {
            setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, plain, size)?;
        }
    }
    Ok(fd)
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

/// `struct ethtool_drvinfo`.
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    rest: [u8; 32 * 4 + 12 + 4 * 5],
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

/// The name of the driver behind `interface` (`"veth"`, `"ixgbe"`, ...).
pub fn driver(interface: &str) -> io::Result<String> {
    let mut info = EthtoolDrvinfo { cmd: ETHTOOL_GDRVINFO, driver: [0; 32], rest: [0; 32 * 4 + 12 + 4 * 5] };
    ethtool_ioctl(interface, &mut info)?;
    let end = info.driver.iter().position(|b| *b == 0).unwrap_or(info.driver.len());
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// What [`disable_offloads`] found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Offloads {
    /// GRO was on and has been switched off.
    pub gro_switched_off: bool,
    /// LRO or receive VLAN stripping was on and has been switched off.
    pub flags_switched_off: bool,
}

/// Switches off GRO, LRO and receive VLAN stripping on `interface`: each would hand the
/// daemon frames that differ from the ones on the wire (super-frames larger than the MTU,
/// or VLAN tags moved out of the frame). Errors mean the driver refused.
pub fn disable_offloads(interface: &str) -> io::Result<Offloads> {
    let mut done = Offloads::default();
    if ethtool(interface, ETHTOOL_GGRO, 0)? != 0 {
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
