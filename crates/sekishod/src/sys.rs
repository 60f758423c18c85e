//! The only `unsafe` of the daemon: the peer's supplementary groups (`SO_PEERGROUPS`),
//! group lookup (`getgrnam_r`), POSIX ACLs on the control socket (`setxattr`), and
//! dropping capabilities in every thread (`capset` from a signal handler, the way
//! libcap's psx does it). Each block states the invariant it relies on.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// `SO_PEERGROUPS` (asm-generic/socket.h, Linux 4.13+).
const SO_PEERGROUPS: libc::c_int = 59;
/// `_LINUX_CAPABILITY_VERSION_3` (linux/capability.h).
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The supplementary groups of the process at the other end of a Unix socket, as they
/// were when it connected (the kernel keeps a copy).
pub(crate) fn peer_groups(fd: RawFd) -> io::Result<Vec<u32>> {
    let mut groups = vec![0 as libc::gid_t; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` is a live buffer of exactly `len` bytes that the kernel may
        // write; `len` is updated with the size written (or needed, with ERANGE). An
        // invalid `fd` yields EBADF.
        let ret = unsafe {
            libc::getsockopt(fd, libc::SOL_SOCKET, SO_PEERGROUPS, groups.as_mut_ptr().cast(), &mut len)
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if ret == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let e = io::Error::last_os_error();
        // NGROUPS_MAX is 65536: grow to what the kernel asks for, once or twice.
        if e.raw_os_error() == Some(libc::ERANGE) && n > groups.len() && n <= 65_536 {
            groups.resize(n, 0);
            continue;
        }
        return Err(e);
    }
}

/// The gid of the group called `name`, if it exists (NSS: /etc/group, LDAP, ...).
pub(crate) fn group_gid(name: &str) -> io::Result<Option<u32>> {
    let cname = CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    loop {
        // SAFETY: zeroed `group` is a valid value of this plain C struct.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer refers to a live local (`cname` NUL-terminated, `buf` of
        // the length passed); getgrnam_r writes only into `grp` and `buf`, and sets
        // `result` to `&grp` or null. Nothing points into `buf` after we return.
        let ret =
            unsafe { libc::getgrnam_r(cname.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
        if ret == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if ret != 0 {
            return Err(io::Error::from_raw_os_error(ret));
        }
        return Ok((!result.is_null()).then_some(grp.gr_gid));
    }
}

/// The name of user `uid`, for logs (None when it has none).
pub(crate) fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: zeroed `passwd` is a valid value of this plain C struct.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in `group_gid`: live locals, `buf` of the length passed; `pw_name`
    // points into `buf`, which outlives its use below.
    let ret = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) };
    if ret != 0 || result.is_null() || pw.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so `pw_name` is a NUL-terminated string in `buf`.
    Some(unsafe { CStr::from_ptr(pw.pw_name) }.to_string_lossy().into_owned())
}

/// The effective uid and gid of this process.
pub(crate) fn ids() -> (u32, u32) {
    // SAFETY: geteuid and getegid cannot fail and touch no memory.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Sets the POSIX access ACL of `path`: owner `owner` bits, owning group `group` bits,
/// each gid of `extra` the `extra_perm` bits, nothing for others (`perm`: r=4 w=2 x=1).
/// The mode's group bits then show the mask.
pub(crate) fn set_acl(path: &Path, owner: u16, group: u16, extra: &[u32], extra_perm: u16) -> io::Result<()> {
    const USER_OBJ: u16 = 0x01;
    const GROUP_OBJ: u16 = 0x04;
    const GROUP: u16 = 0x08;
    const MASK: u16 = 0x10;
    const OTHER: u16 = 0x20;
    const UNDEFINED: u32 = u32::MAX;
    let mut gids: Vec<u32> = extra.to_vec();
    gids.sort_unstable();
    gids.dedup();
    let mut entries = vec![(USER_OBJ, owner, UNDEFINED), (GROUP_OBJ, group, UNDEFINED)];
    entries.extend(gids.iter().map(|g| (GROUP, extra_perm, *g)));
    entries.push((MASK, group | if gids.is_empty() { 0 } else { extra_perm }, UNDEFINED));
    entries.push((OTHER, 0, UNDEFINED));
    let mut xattr = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        xattr.extend_from_slice(&tag.to_le_bytes());
        xattr.extend_from_slice(&perm.to_le_bytes());
        xattr.extend_from_slice(&id.to_le_bytes());
    }
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: both strings are NUL-terminated locals and `xattr` is a live buffer of the
    // length passed; the kernel only reads them.
    let ret = unsafe {
        libc::setxattr(
            cpath.as_ptr(),
            c"system.posix_acl_access".as_ptr(),
            xattr.as_ptr().cast(),
            xattr.len(),
            0,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Threads that have run [`drop_here`] during the current [`drop_capabilities`].
static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// Clears the calling thread's capability sets and ambient set, and sets no_new_privs.
/// Only raw system calls: safe to run in a signal handler.
fn drop_here() -> bool {
    let mut header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    let data = [CapData { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: `header` and `data` are live locals of the layout capset(2) expects for
    // version 3 (a header and two data words); pid 0 means the calling thread. The
    // prctl calls take integer arguments only.
    unsafe {
        let ok = libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) == 0;
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        ok
    }
}

extern "C" fn on_drop_signal(_: libc::c_int) {
    if drop_here() {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

/// The thread ids of this process.
fn threads() -> io::Result<Vec<libc::pid_t>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/task")? {
        if let Some(tid) = e?.file_name().to_str().and_then(|s| s.parse().ok()) {
            out.push(tid);
        }
    }
    Ok(out)
}

/// Whether any thread still holds a permitted or effective capability.
pub(crate) fn threads_with_capabilities() -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for tid in threads()? {
        let Ok(status) = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")) else { continue };
        for line in status.lines() {
            if let Some(v) = line.strip_prefix("CapPrm:").or_else(|| line.strip_prefix("CapEff:")) {
                if !v.trim().trim_start_matches('0').is_empty() {
                    out.push(format!("thread {tid}: {line}"));
                }
            }
        }
    }
    Ok(out)
}

/// Drops every capability in every thread of the process (capabilities are per thread:
/// the data-plane workers started with the ones the sockets needed). Each other thread is
/// signalled and clears its own sets in the handler; the caller's are cleared last.
/// Fails when a thread could not be reached or still holds one afterwards.
pub(crate) fn drop_capabilities() -> io::Result<()> {
    let signal = libc::SIGRTMIN() + 3;
    // SAFETY: a zeroed sigaction is valid; we set a handler that only makes raw system
    // calls and touches an atomic (async-signal-safe), with SA_RESTART so interrupted
    // system calls resume where they can.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_drop_signal as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    DROPPED.store(0, Ordering::SeqCst);
    // SAFETY: gettid and getpid cannot fail.
    let (me, pid) = unsafe { (libc::gettid(), libc::getpid()) };
    let others: Vec<libc::pid_t> = threads()?.into_iter().filter(|t| *t != me).collect();
    let mut sent = 0;
    for tid in &others {
        // SAFETY: tgkill only sends a signal; a thread that exited meanwhile gives ESRCH.
        if unsafe { libc::syscall(libc::SYS_tgkill, pid, *tid, signal) } == 0 {
            sent += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while DROPPED.load(Ordering::SeqCst) < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    if !drop_here() {
        return Err(io::Error::last_os_error());
    }
    let left = threads_with_capabilities()?;
    if left.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(format!("capabilities remain: {}", left.join("; "))))
    }
}
