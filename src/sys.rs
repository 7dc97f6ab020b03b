//! The system calls no safe wrapper offers, kept in one small place: every
//! `unsafe` block outside `sandbox` is here.
//!
//! The TCP translation keeps data the guest has not acknowledged in the host
//! socket itself (peeking with `SO_PEEK_OFF`, discarding with `MSG_TRUNC`
//! once acknowledged), as passt does. The link moves batches of frames with
//! `sendmmsg`/`recvmmsg`/`sendmsg` and opens tap devices with `ioctl`.
//!
//! #syscalls: recvmsg recvfrom setsockopt getsockopt

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Most messages one `sendmmsg`/`recvmmsg` call takes here (the link's
/// transmit queue holds at most this many frames).
pub const BATCH_MAX: usize = 128;

fn cvt(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Drop `n` bytes from the front of a TCP socket's receive queue without
/// copying them anywhere.
pub fn recv_discard(fd: BorrowedFd<'_>, n: usize) -> io::Result<usize> {
    // SAFETY: with MSG_TRUNC on a TCP socket the kernel copies nothing, so a
    // null buffer is never written.
    let r = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            n,
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    };
    cvt(r)
}

/// Peek at the socket's queue from its peek offset into several buffers at
/// once (one per outgoing segment), advancing the peek offset.
pub fn peek_into(fd: BorrowedFd<'_>, bufs: &mut [std::io::IoSliceMut<'_>]) -> io::Result<usize> {
    // SAFETY: msghdr is plain old data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = bufs.as_mut_ptr().cast();
    msg.msg_iovlen = bufs.len();
    // SAFETY: IoSliceMut is ABI-compatible with iovec; the buffers outlive the call.
    let r = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    cvt(r)
}

/// What a socket's queues hold and may hold (`SO_MEMINFO`: the figures
/// the kernel itself compares before taking more data), in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct SocketMemory {
    pub rmem_alloc: usize,
    pub rcvbuf: usize,
    pub sndbuf: usize,
    pub wmem_queued: usize,
}

pub fn socket_memory(fd: BorrowedFd<'_>) -> io::Result<SocketMemory> {
    // SK_MEMINFO_RMEM_ALLOC = 0, _RCVBUF = 1, _SNDBUF = 3, _WMEM_QUEUED = 5,
    // of 9 values.
    let mut v = [0u32; 9];
    let mut len = std::mem::size_of_val(&v) as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            v.as_mut_ptr().cast(),
            &mut len,
        )
    };
    cvt(r as isize).map(|_| SocketMemory {
        rmem_alloc: v[0] as usize,
        rcvbuf: v[1] as usize,
        sndbuf: v[3] as usize,
        wmem_queued: v[5] as usize,
    })
}

fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32, v: i32) -> io::Result<()> {
    // SAFETY: passes a pointer to one int of the right size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    cvt(r as isize).map(|_| ())
}

/// Set the offset `MSG_PEEK` reads from; -1 turns peeking offsets off.
pub fn set_peek_off(fd: BorrowedFd<'_>, off: i32) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, off)
}

/// `net.core.rmem_max`: the most `SO_RCVBUF` may ask for (the kernel
/// doubles it). Read once, at start-up before the sandbox (landlock keeps
/// `/proc/sys` out afterwards); the kernel's default, 208 KiB, if unreadable.
pub fn rmem_max() -> usize {
    static RMEM_MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *RMEM_MAX.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(212_992)
    })
}

/// Hold (`true`) or release (`false`) partial segments on a TCP socket: a
/// turn's worth of the guest's segments leaves as full-sized ones.
pub fn set_cork(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_CORK, on as i32)
}

/// `sendmmsg`: buffer `i` is message `i`. Returns how many went out.
pub fn send_each(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>], flags: i32) -> io::Result<usize> {
    let n = bufs.len().min(BATCH_MAX);
    // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
    let mut msgs: [libc::mmsghdr; BATCH_MAX] = unsafe { std::mem::zeroed() };
    for (m, b) in msgs.iter_mut().zip(&bufs[..n]) {
        // IoSlice is ABI-compatible with iovec; the kernel only reads it.
        m.msg_hdr.msg_iov = (b as *const IoSlice<'_>).cast_mut().cast();
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: msgs[..n] point at iovecs whose buffers outlive the call.
    let r = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), n as u32, flags) };
    cvt(r as isize)
}

/// `recvmmsg`: message `i` lands in buffer `i` and its length in `lens[i]`
/// (`usize::MAX` when it did not fit). Returns how many arrived.
pub fn recv_each(
    fd: BorrowedFd<'_>,
    bufs: &mut [IoSliceMut<'_>],
    lens: &mut [usize],
    flags: i32,
) -> io::Result<usize> {
    let n = bufs.len().min(lens.len()).min(BATCH_MAX);
    // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
    let mut msgs: [libc::mmsghdr; BATCH_MAX] = unsafe { std::mem::zeroed() };
    for (m, b) in msgs.iter_mut().zip(bufs[..n].iter_mut()) {
        // IoSliceMut is ABI-compatible with iovec.
        m.msg_hdr.msg_iov = (b as *mut IoSliceMut<'_>).cast();
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: msgs[..n] point at iovecs over buffers that outlive the call.
    let r = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as u32,
            flags,
            std::ptr::null_mut(),
        )
    };
    let got = cvt(r as isize)?;
    for (len, m) in lens.iter_mut().zip(&msgs[..got]) {
        *len = if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            usize::MAX
        } else {
            m.msg_len as usize
        };
    }
    Ok(got)
}

/// `sendmsg` of several buffers as one run of bytes.
pub fn send_vectored(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>], flags: i32) -> io::Result<usize> {
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = bufs.as_ptr().cast_mut().cast();
    msg.msg_iovlen = bufs.len();
    // SAFETY: the iovecs (ABI-compatible IoSlices) and their buffers outlive
    // the call, which only reads them.
    let r = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags) };
    cvt(r)
}

/// `send` of one buffer.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8], flags: i32) -> io::Result<usize> {
    // SAFETY: the kernel reads at most buf.len() bytes from buf.
    let r = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) };
    cvt(r)
}

/// `recv` into one buffer.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8], flags: i32) -> io::Result<usize> {
    // SAFETY: the kernel writes at most buf.len() bytes into buf.
    let r = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    cvt(r)
}

/// `read` into one buffer.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most buf.len() bytes into buf.
    let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    cvt(r)
}

/// `write` of one buffer.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the kernel reads at most buf.len() bytes from buf.
    let r = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    cvt(r)
}

/// Wait until `fd` is writable, at most `ms` milliseconds.
pub fn wait_writable(fd: BorrowedFd<'_>, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack, count 1.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    r > 0 && p.revents & libc::POLLOUT != 0
}

/// Set `O_NONBLOCK` on a descriptor we own.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl with integer arguments on an open descriptor.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if fl < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Take ownership of descriptor `n` inherited from the VMM (`--fd N`),
/// Give `sig` its default action back: a launcher that started airlock
/// from a background shell leaves SIGINT and SIGQUIT ignored, and an
/// ignored signal is discarded before a signalfd could read it.
pub fn default_disposition(sig: nix::sys::signal::Signal) -> io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_DFL runs no handler code, so nothing can
    // observe a half-updated state.
    unsafe { sigaction(sig, &dfl) }
        .map(|_| ())
        .map_err(io::Error::from)
}

/// Ignore `sig`, as a background shell leaves SIGQUIT for its children.
#[cfg(test)]
pub fn ignore_signal(sig: nix::sys::signal::Signal) -> io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let ign = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_IGN runs no handler code.
    unsafe { sigaction(sig, &ign) }
        .map(|_| ())
        .map_err(io::Error::from)
}

/// after checking that it is open. It becomes close-on-exec: it is ours now.
pub fn inherit_fd(n: RawFd) -> io::Result<OwnedFd> {
    if n < 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a VMM socket: 0, 1 and 2 are the standard streams",
        ));
    }
    // SAFETY: F_GETFD only queries the descriptor table.
    let flags = unsafe { libc::fcntl(n, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above; sets the close-on-exec flag of an open descriptor.
    unsafe { libc::fcntl(n, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    // SAFETY: the descriptor is open (checked above) and, by the --fd
    // contract, handed to airlock alone; nothing else in airlock owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// A close-on-exec duplicate of descriptor `n`, which a library owns (the
/// D-Bus connection's socket): ours to register with epoll for as long as
/// we keep it, whatever the library does with the original.
pub fn dup_raw(n: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC with integer arguments; a closed `n` is EBADF.
    let d = unsafe { libc::fcntl(n, libc::F_DUPFD_CLOEXEC, 3) };
    if d < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `d` was just created by fcntl and nothing else refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(d) })
}

/// Move this thread into the network namespace `ns` refers to.
pub fn enter_netns(ns: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns on a valid namespace fd; affects only this thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An interface name as the kernel takes it: 1..IFNAMSIZ bytes, no NUL, no '/'.
pub fn if_name(name: &str) -> io::Result<[u8; libc::IFNAMSIZ]> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= libc::IFNAMSIZ || b.contains(&0) || b.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{name}' is not an interface name"),
        ));
    }
    let mut n = [0; libc::IFNAMSIZ];
    n[..b.len()].copy_from_slice(b);
    Ok(n)
}

/// Attach `/dev/net/tun` (opened as `tun`) to tap device `name`, without
/// packet information headers, creating the device if needed.
pub fn tun_attach_tap(tun: BorrowedFd<'_>, name: [u8; libc::IFNAMSIZ]) -> io::Result<()> {
    let mut req = IfReq {
        name,
        flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    // SAFETY: TUNSETIFF reads and writes one ifreq that we own.
    if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Bring interface `name` up (best effort, as slirp4netns and pasta do).
pub fn set_if_up(name: [u8; libc::IFNAMSIZ]) {
    // SAFETY: plain socket(2) call; the fd is wrapped right away.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return;
    }
    // SAFETY: s is a fresh fd we own.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    let mut f = IfReq {
        name,
        flags: 0,
        _pad: [0; 22],
    };
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write one ifreq we own.
    unsafe {
        if libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut f as *mut IfReq) == 0 {
            f.flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS as _, &mut f as *mut IfReq);
        }
    }
}

/// Open `name` read-only beneath the directory `dir`: `openat2(2)` with
/// `RESOLVE_BENEATH` (no absolute path, no `..` or symlink that leaves
/// `dir`) and `RESOLVE_NO_MAGICLINKS` (no `/proc/self/fd` tricks).
/// `O_NONBLOCK`, so a FIFO or device cannot block the open.
pub fn open_beneath(dir: BorrowedFd<'_>, name: &std::ffi::CStr) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain old data; all-zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `name` is NUL-terminated and `how` is a valid open_how of the
    // size passed; both outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Bytes of guest memory (vhost-user, mapped `MAP_SHARED`) that a frame to
/// the guest is built in: the receive buffer itself, so the host socket's
/// data is peeked straight into it.
pub struct GuestBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    /// Keeps the mapping alive as long as the buffer is.
    _map: std::sync::Arc<vm_memory::GuestMemoryMmap>,
}

impl GuestBuf {
    /// `len` bytes at `addr`, which must lie in one region of `mem`.
    pub fn new(
        mem: &std::sync::Arc<vm_memory::GuestMemoryMmap>,
        addr: vm_memory::GuestAddress,
        len: usize,
    ) -> Option<GuestBuf> {
        use vm_memory::GuestMemoryBackend;
        let s = mem.get_slice(addr, len).ok()?;
        let ptr = std::ptr::NonNull::new(s.ptr_guard_mut().as_ptr())?;
        Some(GuestBuf {
            ptr,
            len: s.len(),
            _map: mem.clone(),
        })
    }

    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr..ptr+len` was checked by vm-memory to lie in one
        // region, mapped read-write and kept mapped by `_map`. The driver
        // handed the buffer to the device and does not touch it until it is
        // used; a driver that does anyway only corrupts its own frame (the
        // bytes are plain `u8`, any value is valid, and airlock only writes).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}
