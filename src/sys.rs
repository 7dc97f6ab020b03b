//! The few socket calls no safe wrapper offers, kept in one small place.
//!
//! The TCP translation keeps data the guest has not acknowledged in the host
//! socket itself (peeking with `SO_PEEK_OFF`, discarding with `MSG_TRUNC`
//! once acknowledged), as passt does: these calls are that mechanism.
//!
//! #syscalls: recvmsg recvfrom setsockopt getsockopt

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

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

/// A socket's send buffer size and the memory its send queue takes now
/// (`SO_MEMINFO`: what the kernel itself compares before taking more data).
pub fn send_memory(fd: BorrowedFd<'_>) -> io::Result<(usize, usize)> {
    // SK_MEMINFO_SNDBUF = 3, SK_MEMINFO_WMEM_QUEUED = 5, of 9 values.
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
    cvt(r as isize).map(|_| (v[3] as usize, v[5] as usize))
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

/// Hold (`true`) or release (`false`) partial segments on a TCP socket: a
/// turn's worth of the guest's segments leaves as full-sized ones.
pub fn set_cork(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_CORK, on as i32)
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
