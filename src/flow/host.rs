//! The host-socket seam: everything a flow asks of the kernel, as traits:
//! [`Host`] makes sockets, [`TcpSocket`] and [`DgramSocket`] (UDP and ICMP
//! echo) are what flows do with them. Production uses [`Kernel`], whose
//! methods are the system calls the flows made directly before; flows are
//! generic over the [`Host`],
//! so the build is monomorphised (no dynamic dispatch on the hot path) and
//! the same syscalls come out. The simulator (`crate::sim`, `fuzzing`
//! feature) implements the traits with in-memory sockets and virtual time.
//!
//! Host TCP sockets are plain TCP (protocol 0: never MPTCP or raw), written
//! with no address. `connect` always passes a whole `sockaddr_storage` (128
//! bytes, as nix does for inet addresses): longer than any `sockaddr_un`
//! (110), so no UNIX socket can be connected at runtime.
//!
//! Datagram sockets are plain UDP (protocol 0) or ICMP echo sockets
//! (`SOCK_DGRAM`, never `SOCK_RAW`), connected the same way.
//! #syscalls: socket(0=AF_INET|AF_INET6,1&SOCK_TYPE_MASK=SOCK_STREAM,2=0)
//! #syscalls: connect(2=128) setsockopt getsockopt sendto(5=0) sendmsg shutdown close
//! #syscalls: socket(0=AF_INET|AF_INET6,1&SOCK_TYPE_MASK=SOCK_DGRAM,2=0)
//! #syscalls: socket(0=AF_INET,1&SOCK_TYPE_MASK=SOCK_DGRAM,2=IPPROTO_ICMP)
//! #syscalls: socket(0=AF_INET6,1&SOCK_TYPE_MASK=SOCK_DGRAM,2=IPPROTO_ICMPV6)

use super::dgram::{self, HostError, RxHeaders, Shape};
use super::seq::Seq;
use super::Key;
use crate::link::Tx;
use crate::outbound::Outbound;
use crate::poller::{Poller, Token};
use crate::sys;
use crate::wire::checksum::Checksum;
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{
    self as sock, sockopt, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrStorage,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Where flows get their host sockets.
pub trait Host {
    type Tcp: TcpSocket;
    type Dgram: DgramSocket;

    /// A tuned, non-blocking TCP socket connecting to `dst` (the connect
    /// completes with `EPOLLOUT` or fails with `EPOLLERR`), registered
    /// with `poller` under `token` for `events`.
    fn tcp_connect(
        &self,
        poller: &Poller,
        token: Token,
        events: EpollFlags,
        dst: SocketAddr,
        outbound: &Outbound,
    ) -> io::Result<Self::Tcp>;

    /// A connection a forward's listener accepted, tuned and registered.
    fn tcp_accepted(
        &self,
        poller: &Poller,
        token: Token,
        events: EpollFlags,
        fd: OwnedFd,
    ) -> io::Result<Self::Tcp>;

    /// The initial sequence number toward the guest for a new flow.
    fn isn(&self, key: &Key) -> Seq;

    /// A non-blocking datagram socket of `kind` connected to `dst` (port 0
    /// for echo), reporting ICMP errors through its error queue
    /// (`IP_RECVERR`), registered with `poller` under `token` for `EPOLLIN`.
    fn dgram_connect(
        &self,
        poller: &Poller,
        token: Token,
        kind: Dgram,
        dst: SocketAddr,
        outbound: &Outbound,
    ) -> io::Result<Self::Dgram>;
}

/// What a datagram flow's host socket carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dgram {
    /// UDP, from an ephemeral port.
    Udp,
    /// ICMP echo, asking for the guest's identifier (the host may give
    /// another one: replies are rewritten back).
    Ping { ident: u16 },
}

/// One connected host datagram socket, as a UDP or echo flow uses it.
pub trait DgramSocket {
    /// Send one datagram without blocking.
    fn send(&self, buf: &[u8]) -> io::Result<usize>;
    /// The TTL (hop limit) of what it sends from now on.
    fn set_ttl(&self, ttl: u8) -> io::Result<()>;
    /// Send `buf` as the guest sent it, with its TTL `ttl` (0: unknown,
    /// the socket's stays); `cur` is the socket's TTL, kept up to date.
    fn send_at_ttl(&self, buf: &[u8], ttl: u8, cur: &mut u8) -> io::Result<()> {
        if ttl != *cur && ttl != 0 && self.set_ttl(ttl).is_ok() {
            *cur = ttl;
        }
        self.send(buf).map(|_| ())
    }
    /// Receive a batch straight into frames in `tx` ([`dgram::recv_frames`]).
    fn recv_frames(
        &self,
        tx: &mut Tx,
        rx: &mut RxHeaders,
        shape: Shape,
        oversize: &mut u64,
        finish: impl FnMut(&mut [u8], usize, Option<SocketAddr>, Checksum) -> usize,
    ) -> usize;
    /// The next ICMP error from the error queue.
    fn next_error(&self) -> Option<HostError>;
}

/// One host TCP socket, as a flow uses it: non-blocking, peeked at an
/// offset, data dropped from the front once the guest acknowledged it.
pub trait TcpSocket {
    /// The pending socket error (`SO_ERROR`), 0 if none; reading clears it.
    fn take_error(&self) -> i32;
    /// Write without blocking; may take part of `buf` (`EAGAIN`: none).
    fn send(&self, buf: &[u8]) -> io::Result<usize>;
    /// Write `bufs` in order as one write; may take part (`EAGAIN`: none).
    fn send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut sent = 0;
        for b in bufs {
            match self.send(b) {
                Ok(n) => {
                    sent += n;
                    if n < b.len() {
                        break;
                    }
                }
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(sent)
    }
    /// Copy queued data from the peek offset into `bufs`, advancing the
    /// offset; `Ok(0)` is EOF.
    fn peek(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize>;
    /// Drop `n` bytes from the front of the receive queue (the peek offset
    /// moves back with them).
    fn discard(&self, n: usize) -> io::Result<usize>;
    fn set_peek_off(&self, off: i32) -> io::Result<()>;
    /// `TCP_CORK`: hold partial segments until uncorked.
    fn set_cork(&self, on: bool) -> io::Result<()>;
    /// What the socket's queues hold and may hold (`SO_MEMINFO`).
    fn memory(&self) -> io::Result<sys::SocketMemory>;
    /// Fix the receive buffer (`SO_RCVBUF`), ending its autotuning.
    fn set_rcvbuf(&self, bytes: usize);
    /// Our FIN to the host peer (the guest's arrived).
    fn shutdown_write(&self);
    /// Make closing send an RST (the guest reset).
    fn abort(&self);
    /// Register again so that readiness is looked at now: the kernel arms
    /// an `EPOLLOUT` edge only for a socket it has seen full.
    fn rearm(&self, poller: &Poller, token: Token, events: EpollFlags);
}

/// The real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct Kernel;

/// A kernel TCP socket.
pub struct KernelTcp(OwnedFd);

fn tune(fd: &OwnedFd) {
    // Latency: the guest already coalesces; a second Nagle delay would add
    // up. Keepalive finds dead host peers. Buffers stay autotuned (a fixed
    // SO_RCVBUF turns autotuning off and rmem_max cuts it to 208 KiB on a
    // stock host): `tcp::Conn` bounds them through the window it offers and
    // `TcpSocket::set_rcvbuf` once the receive queue outgrows its share.
    let _ = sock::setsockopt(fd, sockopt::TcpNoDelay, &true);
    let _ = sock::setsockopt(fd, sockopt::KeepAlive, &true);
    let _ = sys::set_peek_off(fd.as_fd(), 0);
}

/// A kernel datagram socket and its family.
pub struct KernelDgram {
    fd: OwnedFd,
    v6: bool,
}

impl Host for Kernel {
    type Tcp = KernelTcp;
    type Dgram = KernelDgram;

    fn dgram_connect(
        &self,
        poller: &Poller,
        token: Token,
        kind: Dgram,
        dst: SocketAddr,
        outbound: &Outbound,
    ) -> io::Result<KernelDgram> {
        let v6 = dst.is_ipv6();
        let fam = if v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        let (proto, port) = match kind {
            Dgram::Udp => (None, 0),
            Dgram::Ping { ident } if v6 => (Some(SockProtocol::IcmpV6), ident),
            Dgram::Ping { ident } => (Some(SockProtocol::Icmp), ident),
        };
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        let fd = sock::socket(fam, SockType::Datagram, flags, proto)?;
        if v6 {
            sock::setsockopt(&fd, sockopt::Ipv6RecvErr, &true)?;
        } else {
            sock::setsockopt(&fd, sockopt::Ipv4RecvErr, &true)?;
        }
        // UDP from an ephemeral port, never the guest's: it could squat a
        // host service. Echo asks for the guest's identifier.
        outbound.prepare_dgram(&fd, &dst, port)?;
        sock::connect(fd.as_raw_fd(), &SockaddrStorage::from(dst))?;
        poller.add(fd.as_fd(), token, EpollFlags::EPOLLIN)?;
        Ok(KernelDgram { fd, v6 })
    }

    fn tcp_connect(
        &self,
        poller: &Poller,
        token: Token,
        events: EpollFlags,
        dst: SocketAddr,
        outbound: &Outbound,
    ) -> io::Result<KernelTcp> {
        let fam = if dst.is_ipv6() {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        let fd = sock::socket(fam, SockType::Stream, flags, None)?;
        tune(&fd);
        outbound.prepare_tcp(&fd, &dst)?;
        match sock::connect(fd.as_raw_fd(), &SockaddrStorage::from(dst)) {
            Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
            Err(e) => return Err(e.into()),
        }
        poller.add(fd.as_fd(), token, events)?;
        Ok(KernelTcp(fd))
    }

    fn tcp_accepted(
        &self,
        poller: &Poller,
        token: Token,
        events: EpollFlags,
        fd: OwnedFd,
    ) -> io::Result<KernelTcp> {
        tune(&fd);
        poller.add(fd.as_fd(), token, events)?;
        Ok(KernelTcp(fd))
    }

    /// RFC 6528: a 4 µs clock plus a keyed hash of the flow, the key drawn
    /// once per process, so the guest cannot predict another flow's numbers.
    fn isn(&self, key: &Key) -> Seq {
        use std::hash::{BuildHasher, RandomState};
        static SECRET: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
        let f = SECRET.get_or_init(RandomState::new).hash_one(key);
        let m = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| (d.as_micros() / 4) as u32);
        Seq(m.wrapping_add(f as u32))
    }
}

impl TcpSocket for KernelTcp {
    fn take_error(&self) -> i32 {
        sock::getsockopt(&self.0, sockopt::SocketError).unwrap_or(nix::libc::EIO)
    }

    #[inline]
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let flags = sock::MsgFlags::MSG_DONTWAIT | sock::MsgFlags::MSG_NOSIGNAL;
        Ok(sock::send(self.0.as_raw_fd(), buf, flags)?)
    }

    fn send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let flags = sock::MsgFlags::MSG_DONTWAIT | sock::MsgFlags::MSG_NOSIGNAL;
        Ok(sock::sendmsg::<()>(
            self.0.as_raw_fd(),
            bufs,
            &[],
            flags,
            None,
        )?)
    }

    #[inline]
    fn peek(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        sys::peek_into(self.0.as_fd(), bufs)
    }

    #[inline]
    fn discard(&self, n: usize) -> io::Result<usize> {
        sys::recv_discard(self.0.as_fd(), n)
    }

    fn set_peek_off(&self, off: i32) -> io::Result<()> {
        sys::set_peek_off(self.0.as_fd(), off)
    }

    #[inline]
    fn set_cork(&self, on: bool) -> io::Result<()> {
        sys::set_cork(self.0.as_fd(), on)
    }

    #[inline]
    fn memory(&self) -> io::Result<sys::SocketMemory> {
        sys::socket_memory(self.0.as_fd())
    }

    fn set_rcvbuf(&self, bytes: usize) {
        let _ = sock::setsockopt(&self.0, sockopt::RcvBuf, &bytes);
    }

    fn shutdown_write(&self) {
        let _ = sock::shutdown(self.0.as_raw_fd(), sock::Shutdown::Write);
    }

    fn abort(&self) {
        let linger = nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        let _ = sock::setsockopt(&self.0, sockopt::Linger, &linger);
    }

    fn rearm(&self, poller: &Poller, token: Token, events: EpollFlags) {
        let _ = poller.modify(self.0.as_fd(), token, events);
    }
}

impl DgramSocket for KernelDgram {
    #[inline]
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let flags = sock::MsgFlags::MSG_DONTWAIT | sock::MsgFlags::MSG_NOSIGNAL;
        Ok(sock::send(self.fd.as_raw_fd(), buf, flags)?)
    }

    fn set_ttl(&self, ttl: u8) -> io::Result<()> {
        let ttl = i32::from(ttl);
        if self.v6 {
            sock::setsockopt(&self.fd, sockopt::Ipv6Ttl, &ttl)?;
        } else {
            sock::setsockopt(&self.fd, sockopt::Ipv4Ttl, &ttl)?;
        }
        Ok(())
    }

    #[inline]
    fn recv_frames(
        &self,
        tx: &mut Tx,
        rx: &mut RxHeaders,
        shape: Shape,
        oversize: &mut u64,
        finish: impl FnMut(&mut [u8], usize, Option<SocketAddr>, Checksum) -> usize,
    ) -> usize {
        dgram::recv_frames(tx, self.fd.as_fd(), rx, shape, oversize, finish)
    }

    fn next_error(&self) -> Option<HostError> {
        dgram::next_host_error(self.fd.as_fd())
    }
}
