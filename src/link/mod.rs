//! The VMM link: bytes on the VMM's socket (or a tap device) in, Ethernet
//! frames out, and back. It knows nothing about protocols.
//!
//! Three framings share one receive path and one transmit queue:
//! - [`Kind::Dgram`]: one frame per datagram (`-netdev socket,fd=`, libvirt's
//!   slirp-helper socketpair). Batched with `recvmmsg`/`sendmmsg`.
//! - [`Kind::Stream`]: 4-byte big-endian length, then the frame (`-netdev
//!   stream`, passt). Large reads that may hold many frames and end in the
//!   middle of one; `sendmsg` of many frames at once, never blocking.
//! - [`Kind::Tap`]: a tap device (`--netns`), one frame per read/write.
//!
//! Frames to the guest are queued in [`Tx`] and leave in batches: the engine
//! flushes once per event-loop turn, or earlier when the queue fills.
//!
//! #syscalls: recvmmsg recvfrom read write sendmsg sendto(5=0) sendmmsg poll|ppoll
//! #syscalls: fcntl(1=F_DUPFD_CLOEXEC)
//! #syscalls-startup: getsockopt fcntl dup

mod tap;

pub use tap::open_tap_in_netns;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Largest Ethernet frame on any link: STREAM framing's limit, and what an
/// MTU of 65520 plus the Ethernet header needs.
pub const MAX_FRAME: usize = 65535;
/// Smallest frame worth looking at: an Ethernet header.
pub const MIN_FRAME: usize = 14;

/// Datagrams read per `recvmmsg`.
const RX_SLOTS: usize = 8;
/// Bytes read per `read` on a STREAM link (plus room for a partial frame).
const RX_STREAM: usize = 256 * 1024;
/// Frames read from a tap device per wakeup before others get a turn.
const RX_TAP_BURST: usize = 32;
/// Transmit queue: bytes and frames held before a flush.
const TX_BYTES: usize = 1024 * 1024;
const TX_FRAMES: usize = 128;
/// How long a flush waits for a VMM that is slow to read before dropping
/// the rest of the batch (a paused VM must not stall the loop: TCP data
/// stays in the host socket and is sent again; timers and signals go on).
const TX_STALL_MS: i32 = 200;

/// The framing of the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dgram,
    Stream,
    Tap,
}

/// Why the link ended.
#[derive(Debug)]
pub enum Closed {
    /// The VMM went away (EOF, ECONNRESET, EPIPE, ECONNREFUSED).
    Hangup,
    /// The VMM sent a length that cannot be a frame (STREAM only).
    Framing(u32),
    /// Any other error.
    Error(io::Error),
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Hangup => write!(f, "the VMM closed the link"),
            Closed::Framing(n) => write!(
                f,
                "framing error: frame length {n} is outside {MIN_FRAME}..={MAX_FRAME}, closing the link"
            ),
            Closed::Error(e) => write!(f, "link error: {e}"),
        }
    }
}

/// Per-link counters, printed at exit with `--debug`.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub rx_runt: u64,
    pub rx_oversize: u64,
    pub tx_dropped: u64,
    pub tx_flushes: u64,
}

fn is_hangup(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPIPE)
            | Some(libc::ECONNRESET)
            | Some(libc::ECONNREFUSED)
            | Some(libc::ENOTCONN)
    )
}

fn would_block(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR))
}

/// Wait until `fd` is writable, at most `ms` milliseconds.
fn wait_writable(fd: RawFd, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack, count 1.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    r > 0 && p.revents & libc::POLLOUT != 0
}

/// The queue of frames on their way to the guest.
///
/// Frames sit in one buffer, each behind a 4-byte slot for the STREAM length
/// prefix, so that every framing flushes without copying.
pub struct Tx {
    fd: OwnedFd,
    kind: Kind,
    buf: Vec<u8>,
    /// (offset of the 4-byte prefix, frame length)
    frames: Vec<(usize, usize)>,
    used: usize,
    closed: Option<Closed>,
    /// STREAM: the unwritten tail of a frame the VMM stopped reading in
    /// the middle of; it goes first next time, so the framing never breaks.
    tail: Vec<u8>,
    pub stats: Stats,
}

impl Tx {
    fn new(fd: OwnedFd, kind: Kind) -> Tx {
        Tx {
            fd,
            kind,
            buf: vec![0; TX_BYTES + MAX_FRAME + 4],
            frames: Vec::with_capacity(TX_FRAMES),
            used: 0,
            closed: None,
            tail: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Whether the link has failed on the way out; the engine then stops.
    pub fn closed(&mut self) -> Option<Closed> {
        self.closed.take()
    }

    /// Queue one frame built in place by `build`, which gets a buffer of
    /// [`MAX_FRAME`] bytes and returns the frame's length (0: no frame).
    pub fn send_with(&mut self, build: impl FnOnce(&mut [u8]) -> usize) {
        let region = self.reserve(1, MAX_FRAME);
        let len = build(&mut region[4..4 + MAX_FRAME]).min(MAX_FRAME);
        if len > 0 {
            self.commit(&[len], MAX_FRAME);
        }
    }

    /// Queue a frame already built elsewhere.
    pub fn send(&mut self, frame: &[u8]) {
        self.send_with(|b| {
            let n = frame.len().min(b.len());
            b[..n].copy_from_slice(&frame[..n]);
            n
        });
    }

    /// How many frames of up to `frame_len` bytes fit before the queue must
    /// be flushed.
    pub fn room(&self, frame_len: usize) -> usize {
        let stride = frame_len + 4;
        ((self.buf.len() - self.used) / stride).min(TX_FRAMES - self.frames.len())
    }

    /// A region for up to `count` frames of `frame_len` bytes each, flushing
    /// first if fewer than one fits. Frame `i` starts at `i * (frame_len + 4)
    /// + 4` within the region; the caller builds them, then calls
    /// [`Tx::commit`] with their real lengths. Returns at least room for one.
    pub fn reserve(&mut self, count: usize, frame_len: usize) -> &mut [u8] {
        let frame_len = frame_len.min(MAX_FRAME);
        if self.room(frame_len) == 0 {
            self.flush();
        }
        let n = count.clamp(1, self.room(frame_len).max(1));
        let stride = frame_len + 4;
        &mut self.buf[self.used..self.used + n * stride]
    }

    /// Commit frames built in the region [`Tx::reserve`] returned.
    pub fn commit(&mut self, lens: &[usize], frame_len: usize) {
        let stride = frame_len.min(MAX_FRAME) + 4;
        for (i, &len) in lens.iter().enumerate() {
            let off = self.used + i * stride;
            if len == 0 || len > stride - 4 || off + stride > self.buf.len() {
                continue;
            }
            self.buf[off..off + 4].copy_from_slice(&(len as u32).to_be_bytes());
            self.frames.push((off, len));
        }
        self.used += lens.len() * stride;
        if self.room(MAX_FRAME) == 0 {
            self.flush();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Send everything queued. Waits (bounded) for a VMM that is slow to
    /// read rather than dropping: the link is lossless and so is airlock.
    pub fn flush(&mut self) {
        if self.frames.is_empty() {
            self.used = 0;
            if !self.tail.is_empty() {
                if let Err(e) = self.flush_tail(self.fd.as_raw_fd()) {
                    self.closed.get_or_insert(Closed::Error(e));
                }
            }
            return;
        }
        self.stats.tx_flushes += 1;
        let r = match self.kind {
            Kind::Dgram => self.flush_dgram(),
            Kind::Stream => self.flush_stream(),
            Kind::Tap => self.flush_tap(),
        };
        if let Err(e) = r {
            if self.closed.is_none() {
                self.closed = Some(if is_hangup(&e) {
                    Closed::Hangup
                } else {
                    Closed::Error(e)
                });
            }
        }
        self.frames.clear();
        self.used = 0;
    }

    fn account(&mut self, len: usize) {
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += len as u64;
    }

    fn flush_dgram(&mut self) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        let mut done = 0;
        let mut iov: [libc::iovec; TX_FRAMES] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; TX_FRAMES];
        // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
        let mut msgs: [libc::mmsghdr; TX_FRAMES] = unsafe { std::mem::zeroed() };
        while done < self.frames.len() {
            let n = self.frames.len() - done;
            for i in 0..n {
                let (off, len) = self.frames[done + i];
                iov[i].iov_base = self.buf[off + 4..].as_mut_ptr().cast();
                iov[i].iov_len = len;
                msgs[i].msg_hdr.msg_iov = &mut iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: msgs[..n] point at iovecs into self.buf, which outlives the call.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs.as_mut_ptr(),
                    n as u32,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if would_block(&e) || e.raw_os_error() == Some(libc::ENOBUFS) {
                    if !wait_writable(fd, TX_STALL_MS) {
                        // The VMM stopped reading: drop this batch, keep going.
                        self.stats.tx_dropped += n as u64;
                        return Ok(());
                    }
                    continue;
                }
                if e.raw_os_error() == Some(libc::EMSGSIZE) {
                    self.stats.tx_dropped += 1;
                    done += 1;
                    continue;
                }
                return Err(e);
            }
            for i in 0..r as usize {
                self.account(self.frames[done + i].1);
            }
            done += r as usize;
        }
        Ok(())
    }

    /// Write the held tail of a half-written frame; false while the VMM
    /// still does not read (the queued frames are then dropped).
    fn flush_tail(&mut self, fd: RawFd) -> io::Result<bool> {
        while !self.tail.is_empty() {
            // SAFETY: sends from self.tail, of its length.
            let r = unsafe {
                libc::send(
                    fd,
                    self.tail.as_ptr().cast(),
                    self.tail.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if would_block(&e) {
                    if wait_writable(fd, TX_STALL_MS) {
                        continue;
                    }
                    return Ok(false);
                }
                return Err(e);
            }
            self.tail.drain(..r as usize);
        }
        Ok(true)
    }

    fn flush_stream(&mut self) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        if !self.flush_tail(fd)? {
            self.stats.tx_dropped += self.frames.len() as u64;
            return Ok(());
        }
        // Frames are written as (prefix + frame) ranges; a partial write
        // resumes at the exact byte so the framing never breaks.
        let mut idx = 0;
        let mut skip = 0usize; // bytes of frames[idx] already written
        const IOV_BATCH: usize = 64;
        while idx < self.frames.len() {
            let mut iov: [libc::iovec; IOV_BATCH] = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; IOV_BATCH];
            let n = (self.frames.len() - idx).min(IOV_BATCH);
            for (i, v) in iov.iter_mut().enumerate().take(n) {
                let (off, len) = self.frames[idx + i];
                let s = if i == 0 { skip } else { 0 };
                v.iov_base = self.buf[off + s..].as_mut_ptr().cast();
                v.iov_len = len + 4 - s;
            }
            // SAFETY: msghdr is plain old data; all-zero is a valid value.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = n;
            // The VMM's socket may be blocking (its flags are shared with
            // the VMM, so they are left alone): never wait inside the call.
            // SAFETY: iov[..n] point into self.buf, which outlives the call.
            let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if would_block(&e) {
                    if wait_writable(fd, TX_STALL_MS) {
                        continue;
                    }
                    // The VMM stopped reading: keep the rest of a frame we
                    // are in the middle of, drop the frames after it.
                    let mut dropped = self.frames.len() - idx;
                    if skip > 0 {
                        let (off, len) = self.frames[idx];
                        self.tail
                            .extend_from_slice(&self.buf[off + skip..off + 4 + len]);
                        dropped -= 1;
                    }
                    self.stats.tx_dropped += dropped as u64;
                    return Ok(());
                }
                return Err(e);
            }
            let mut w = r as usize;
            while w > 0 && idx < self.frames.len() {
                let left = self.frames[idx].1 + 4 - skip;
                if w >= left {
                    w -= left;
                    self.account(self.frames[idx].1);
                    idx += 1;
                    skip = 0;
                } else {
                    skip += w;
                    w = 0;
                }
            }
        }
        Ok(())
    }

    fn flush_tap(&mut self) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        let mut i = 0;
        while i < self.frames.len() {
            let (off, len) = self.frames[i];
            // SAFETY: the range lies within self.buf.
            let r = unsafe { libc::write(fd, self.buf[off + 4..].as_ptr().cast(), len) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if would_block(&e) {
                    if !wait_writable(fd, TX_STALL_MS) {
                        self.stats.tx_dropped += (self.frames.len() - i) as u64;
                        return Ok(());
                    }
                    continue;
                }
                // EIO: the tap is down; EINVAL: a frame it refuses.
                self.stats.tx_dropped += 1;
                if e.raw_os_error() != Some(libc::EIO) && e.raw_os_error() != Some(libc::EINVAL) {
                    return Err(e);
                }
            } else {
                self.account(len);
            }
            i += 1;
        }
        Ok(())
    }
}

/// What one call to [`Link::recv`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Recv {
    /// Frames were delivered; there may be more.
    More,
    /// Nothing left to read now.
    Drained,
}

/// The link to the VMM: a receive side and the transmit queue [`Tx`].
pub struct Link {
    kind: Kind,
    fd: OwnedFd,
    rx: Vec<u8>,
    /// STREAM: bytes of a partial frame carried at the start of `rx`.
    carry: usize,
    rx_lens: [usize; RX_SLOTS],
    pub tx: Tx,
}

impl Link {
    /// Wrap a connected socket or tap fd. Reads never block (`MSG_DONTWAIT`
    /// or `O_NONBLOCK` on our own tap fd); the VMM's socket flags are left
    /// as they are because the file description may be shared.
    pub fn new(fd: OwnedFd, kind: Kind) -> io::Result<Link> {
        let txfd = fd.try_clone()?;
        if kind == Kind::Tap {
            set_nonblocking(fd.as_raw_fd())?;
        }
        let rx = match kind {
            Kind::Dgram => vec![0; RX_SLOTS * (MAX_FRAME + 1)],
            Kind::Stream => vec![0; RX_STREAM + MAX_FRAME + 4],
            Kind::Tap => vec![0; MAX_FRAME + 1],
        };
        Ok(Link {
            kind,
            fd,
            rx,
            carry: 0,
            rx_lens: [0; RX_SLOTS],
            tx: Tx::new(txfd, kind),
        })
    }

    /// A connected UNIX socket inherited from the VMM: its type says the framing.
    pub fn from_socket(fd: OwnedFd) -> io::Result<Link> {
        let ty = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::SockType)
            .map_err(io::Error::from)?;
        let kind = match ty {
            nix::sys::socket::SockType::Datagram => Kind::Dgram,
            nix::sys::socket::SockType::Stream => Kind::Stream,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unsupported socket type {other:?}: need SOCK_DGRAM or SOCK_STREAM"),
                ))
            }
        };
        Link::new(fd, kind)
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Read one batch and hand every frame to `on_frame` with the transmit
    /// queue (services answer in place). Runts and oversized datagrams are
    /// counted and dropped here.
    pub fn recv(&mut self, mut on_frame: impl FnMut(&[u8], &mut Tx)) -> Result<Recv, Closed> {
        match self.kind {
            Kind::Dgram => self.recv_dgram(&mut on_frame),
            Kind::Stream => self.recv_stream(&mut on_frame),
            Kind::Tap => self.recv_tap(&mut on_frame),
        }
    }

    fn deliver(tx: &mut Tx, frame: &[u8], on_frame: &mut impl FnMut(&[u8], &mut Tx)) {
        tx.stats.rx_frames += 1;
        tx.stats.rx_bytes += frame.len() as u64;
        if frame.len() < MIN_FRAME {
            tx.stats.rx_runt += 1;
            return;
        }
        on_frame(frame, tx);
    }

    fn recv_dgram(&mut self, on_frame: &mut impl FnMut(&[u8], &mut Tx)) -> Result<Recv, Closed> {
        const SLOT: usize = MAX_FRAME + 1;
        let mut iov: [libc::iovec; RX_SLOTS] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; RX_SLOTS];
        // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
        let mut msgs: [libc::mmsghdr; RX_SLOTS] = unsafe { std::mem::zeroed() };
        for (i, chunk) in self.rx.chunks_exact_mut(SLOT).enumerate().take(RX_SLOTS) {
            iov[i].iov_base = chunk.as_mut_ptr().cast();
            iov[i].iov_len = SLOT;
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: msgs point at iovecs covering self.rx, which outlives the call.
        let r = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                RX_SLOTS as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if would_block(&e) {
                return Ok(Recv::Drained);
            }
            return Err(if is_hangup(&e) {
                Closed::Hangup
            } else {
                Closed::Error(e)
            });
        }
        let n = r as usize;
        for (i, m) in msgs.iter().enumerate().take(n) {
            self.rx_lens[i] = m.msg_len as usize;
            if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.rx_lens[i] = usize::MAX;
            }
        }
        for i in 0..n {
            let len = self.rx_lens[i];
            if len > MAX_FRAME {
                self.tx.stats.rx_oversize += 1;
                continue;
            }
            let frame = &self.rx[i * SLOT..i * SLOT + len];
            Self::deliver(&mut self.tx, frame, on_frame);
        }
        Ok(if n == RX_SLOTS {
            Recv::More
        } else {
            Recv::Drained
        })
    }

    fn recv_stream(&mut self, on_frame: &mut impl FnMut(&[u8], &mut Tx)) -> Result<Recv, Closed> {
        let start = self.carry;
        let room = self.rx.len() - start;
        // SAFETY: reading into the unused tail of self.rx.
        let r = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.rx[start..].as_mut_ptr().cast(),
                room,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if would_block(&e) {
                return Ok(Recv::Drained);
            }
            return Err(if is_hangup(&e) {
                Closed::Hangup
            } else {
                Closed::Error(e)
            });
        }
        if r == 0 {
            return Err(Closed::Hangup);
        }
        let end = start + r as usize;
        let mut pos = 0;
        while end - pos >= 4 {
            let len = u32::from_be_bytes([
                self.rx[pos],
                self.rx[pos + 1],
                self.rx[pos + 2],
                self.rx[pos + 3],
            ]);
            if (len as usize) < MIN_FRAME || len as usize > MAX_FRAME {
                return Err(Closed::Framing(len));
            }
            let len = len as usize;
            if end - pos - 4 < len {
                break;
            }
            let frame = &self.rx[pos + 4..pos + 4 + len];
            Self::deliver(&mut self.tx, frame, on_frame);
            pos += 4 + len;
        }
        // Keep the partial frame (at most 4 + MAX_FRAME bytes) for next time.
        self.rx.copy_within(pos..end, 0);
        self.carry = end - pos;
        Ok(if r as usize == room {
            Recv::More
        } else {
            Recv::Drained
        })
    }

    fn recv_tap(&mut self, on_frame: &mut impl FnMut(&[u8], &mut Tx)) -> Result<Recv, Closed> {
        for _ in 0..RX_TAP_BURST {
            // SAFETY: reading into self.rx, of the given length.
            let r = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    self.rx.as_mut_ptr().cast(),
                    self.rx.len(),
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if would_block(&e) {
                    return Ok(Recv::Drained);
                }
                return Err(Closed::Error(e));
            }
            let len = r as usize;
            if len > MAX_FRAME {
                self.tx.stats.rx_oversize += 1;
                continue;
            }
            let frame = &self.rx[..len];
            Self::deliver(&mut self.tx, frame, on_frame);
        }
        Ok(Recv::More)
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own, with integer arguments.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if fl < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl std::os::fd::AsFd for Link {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Take ownership of descriptor `n` inherited from the VMM (`--fd N`),
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
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(n) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixDatagram;
    use std::os::unix::net::UnixStream;

    fn frame(n: usize, fill: u8) -> Vec<u8> {
        vec![fill; n]
    }

    #[test]
    fn stream_deframes_across_reads_and_rejects_bad_lengths() {
        let (mut vmm, ours) = UnixStream::pair().unwrap();
        let mut link = Link::from_socket(OwnedFd::from(ours)).unwrap();
        assert_eq!(link.kind(), Kind::Stream);
        let mut bytes = Vec::new();
        for (n, f) in [(60usize, 1u8), (1514, 2), (14, 3)] {
            bytes.extend_from_slice(&(n as u32).to_be_bytes());
            bytes.extend_from_slice(&frame(n, f));
        }
        // Split in the middle of the second frame's length prefix.
        let cut = 4 + 60 + 2;
        vmm.write_all(&bytes[..cut]).unwrap();
        let mut got = Vec::new();
        link.recv(|f, _| got.push((f.len(), f[0]))).unwrap();
        assert_eq!(got, vec![(60, 1)]);
        vmm.write_all(&bytes[cut..]).unwrap();
        link.recv(|f, _| got.push((f.len(), f[0]))).unwrap();
        assert_eq!(got, vec![(60, 1), (1514, 2), (14, 3)]);
        vmm.write_all(&13u32.to_be_bytes()).unwrap();
        assert!(matches!(link.recv(|_, _| {}), Err(Closed::Framing(13))));
    }

    #[test]
    fn stream_tx_prefixes_lengths_and_eof_is_hangup() {
        let (mut vmm, ours) = UnixStream::pair().unwrap();
        let mut link = Link::from_socket(OwnedFd::from(ours)).unwrap();
        link.tx.send(&frame(100, 7));
        link.tx.send_with(|b| {
            b[..20].fill(9);
            20
        });
        link.tx.flush();
        let mut buf = [0u8; 128];
        vmm.read_exact(&mut buf[..4 + 100 + 4 + 20]).unwrap();
        assert_eq!(&buf[..4], &100u32.to_be_bytes());
        assert_eq!(&buf[104..108], &20u32.to_be_bytes());
        assert_eq!(buf[108], 9);
        drop(vmm);
        assert!(matches!(link.recv(|_, _| {}), Err(Closed::Hangup)));
    }

    #[test]
    fn dgram_batches_and_drops_runts() {
        let (vmm, ours) = UnixDatagram::pair().unwrap();
        let mut link = Link::from_socket(OwnedFd::from(ours)).unwrap();
        assert_eq!(link.kind(), Kind::Dgram);
        vmm.send(&frame(60, 1)).unwrap();
        vmm.send(&[]).unwrap();
        vmm.send(&frame(5, 2)).unwrap();
        vmm.send(&frame(65535, 3)).unwrap();
        let mut got = Vec::new();
        while link.recv(|f, _| got.push(f.len())).unwrap() == Recv::More {}
        assert_eq!(got, vec![60, 65535]);
        assert_eq!(link.tx.stats.rx_runt, 2);
        for i in 0..200u8 {
            link.tx.send(&frame(60 + i as usize, i));
        }
        link.tx.flush();
        let mut buf = [0u8; 512];
        for i in 0..200u8 {
            let n = vmm.recv(&mut buf).unwrap();
            assert_eq!((n, buf[0]), (60 + i as usize, i));
        }
        drop(vmm);
        link.tx.send(&frame(60, 0));
        link.tx.flush();
        assert!(matches!(link.tx.closed(), Some(Closed::Hangup)));
    }

    #[test]
    fn stream_vmm_that_stops_reading_costs_frames_not_framing() {
        let (mut vmm, ours) = UnixStream::pair().unwrap();
        let mut link = Link::from_socket(OwnedFd::from(ours)).unwrap();
        // Far more than the socket holds: flushes give up (200 ms each)
        // instead of blocking, keeping a half-written frame's tail.
        for round in 0..4u8 {
            for i in 0..16u8 {
                link.tx.send(&frame(60_000 + i as usize, round * 16 + i));
            }
            link.tx.flush();
        }
        assert!(link.tx.stats.tx_dropped > 0);
        assert!(link.tx.closed().is_none());
        // The VMM drains: whatever arrived is whole frames, in order.
        vmm.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut last = None;
        loop {
            match vmm.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => {
                    // Let the held tail out, then stop when nothing moves.
                    link.tx.flush();
                    if last == Some(got.len()) {
                        break;
                    }
                    last = Some(got.len());
                }
            }
        }
        let mut pos = 0;
        let mut prev = None;
        while pos + 4 <= got.len() {
            let len = u32::from_be_bytes(got[pos..pos + 4].try_into().unwrap()) as usize;
            assert!((60_000..60_016).contains(&len), "bad length {len} at {pos}");
            let f = &got[pos + 4..pos + 4 + len];
            assert!(f.iter().all(|&b| b == f[0]));
            assert!(prev.is_none_or(|p| f[0] > p), "frames out of order");
            prev = Some(f[0]);
            pos += 4 + len;
        }
        assert_eq!(pos, got.len(), "a torn frame at the end");
    }

    #[test]
    fn reserve_commit_batch() {
        let (vmm, ours) = UnixDatagram::pair().unwrap();
        let mut link = Link::from_socket(OwnedFd::from(ours)).unwrap();
        let region = link.tx.reserve(3, 100);
        assert!(region.len() >= 3 * 104);
        for (i, c) in region.chunks_mut(104).enumerate() {
            c[4..104].fill(i as u8 + 1);
        }
        link.tx.commit(&[100, 50, 0], 100);
        link.tx.flush();
        let mut buf = [0u8; 200];
        assert_eq!(vmm.recv(&mut buf).unwrap(), 100);
        assert_eq!(buf[0], 1);
        assert_eq!(vmm.recv(&mut buf).unwrap(), 50);
        assert_eq!(buf[0], 2);
        vmm.set_nonblocking(true).unwrap();
        assert!(vmm.recv(&mut buf).is_err());
    }
}
