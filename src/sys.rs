//! The few socket calls no safe wrapper offers, kept in one small place.
//!
//! The TCP translation keeps data the guest has not acknowledged in the host
//! socket itself (peeking with `SO_PEEK_OFF`, discarding with `MSG_TRUNC`
//! once acknowledged), as passt does: these calls are that mechanism.
//!
//! #syscalls: recvmsg recvfrom ioctl(1=SIOCOUTQ) setsockopt

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

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

/// Bytes queued in the socket's send queue (not yet acknowledged by the peer).
pub fn outq(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut v: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ as _, &mut v) };
    cvt(r as isize).map(|_| v.max(0) as usize)
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
