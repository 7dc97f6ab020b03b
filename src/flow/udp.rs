//! UDP flows: the guest's datagrams over connected host UDP sockets.
//!
//! One flow per (guest address:port, remote address:port) as the guest
//! addressed it. Outbound, a flow owns a connected, non-blocking host
//! socket on an ephemeral port the kernel picks at `connect`, as any NAT
//! does: binding the guest's own port would squat it on the host
//! (0.0.0.0:51820, 4789, 5353 block the host's WireGuard, VXLAN, mDNS for as
//! long as the guest keeps sending), and an ephemeral port is never one a
//! forward holds. No guest port is kept: a protocol that needs a fixed
//! source port towards the host gets a forward instead. Forwarded flows (a datagram that arrived
//! on a `--hostfwd udp:` socket) own no socket: the guest's replies leave
//! through the forward's socket with `sendto` to the original peer.
//!
//! Host to guest, datagrams are received with `recvmmsg` straight into
//! frames in the link's transmit queue (the payload lands behind space left
//! for the headers, which are written afterwards), so nothing is copied or
//! allocated per datagram. Datagrams larger than the MTU allows are
//! dropped, as a link of that MTU would.
//!
//! Errors the host reports through `IP_RECVERR` (port and host unreachable,
//! TTL exceeded, fragmentation needed) become the matching ICMP error to the
//! guest, quoting a datagram rebuilt from the flow's addresses, so that a
//! closed-port probe or `traceroute` behaves as on a real network. The
//! guest's TTL is carried over to the host socket for the same reason.
//!
//! Idle flows expire after `--udp-timeout` (30 s) while only one side has
//! spoken, `--udp-stream-timeout` (120 s) once both have: the kernel's
//! conntrack defaults.
//!
//! Host sockets are plain UDP (protocol 0), made through `flow::host`'s
//! seam and connected with a whole `sockaddr_storage` (see flow::tcp);
//! `sendto` never carries an address (replies through a forward's socket
//! go out with `sendmsg`), so neither can reach a pathname socket.
//! #syscalls: connect(2=128) setsockopt sendto(5=0) sendmsg recvmmsg recvmsg close
#![forbid(unsafe_code)]

use super::dgram::{error_source, recv_frames, send_icmp_error, Quote, RxHeaders, Shape, BATCH};
use super::forward::Listener;
use super::host::{Dgram, DgramSocket, Host, Kernel};
use super::{nat, Ctx, Flow, Key, Table, Verdict};
use crate::config::Config;
use crate::counters::Counters;
use crate::frame::{self, L2};
use crate::wire::checksum::{Checksum, PartialCsum};
use crate::wire::{ip_proto, udp as udpw};
use nix::errno::Errno;
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{self as sock, MsgFlags, SockaddrStorage};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

/// Batches read per host event before other sockets get a turn (the epoll
/// registration is level-triggered: what is left wakes us again).
const BATCHES_PER_EVENT: usize = 4;
const UDP_HEADER: usize = 8;

/// Header bytes in front of a UDP payload in a frame to the guest.
pub fn frame_header(v6: bool) -> usize {
    frame::l4_offset(if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }) + UDP_HEADER
}

/// Largest UDP payload a frame of this MTU carries.
pub fn max_payload(mtu: u16, v6: bool) -> usize {
    (mtu as usize).saturating_sub(if v6 { 40 } else { 20 } + UDP_HEADER)
}

/// The frames toward the guest for `mtu`: their UDP checksum may be left
/// partial (see [`dgram::Shape`]).
fn shape(mtu: u16, v6: bool) -> Shape {
    let hdr = frame_header(v6);
    Shape {
        hdr,
        max: max_payload(mtu, v6),
        partial: Some(PartialCsum::udp(hdr - UDP_HEADER)),
    }
}

/// Write Ethernet, IP and UDP headers in front of `n` payload bytes already
/// at `buf[frame_header()..]`; returns the frame length (0 on a mismatch).
pub fn write_frame(
    buf: &mut [u8],
    l2: &L2,
    src: SocketAddr,
    dst: SocketAddr,
    n: usize,
    csum: Checksum,
) -> usize {
    frame::write_udp_with(buf, l2, src, dst, n, csum)
}

/// A datagram from the guest: to its flow, or the first of a new one.
/// Broadcast, multicast, unused virtual addresses, `--restrict` and
/// `--disable-dns` find no destination and are dropped.
#[allow(clippy::too_many_arguments)]
pub fn on_guest_datagram<H: Host>(
    table: &mut Table<H>,
    ctx: &mut Ctx<'_, H>,
    cfg: &Config,
    counters: &mut Counters,
    listeners: &[Listener],
    key: Key,
    payload: &[u8],
    ttl: u8,
) {
    let now = ctx.now;
    if let Some(i) = table.lookup(&key) {
        if let Some((_, Flow::Udp(c))) = table.at(i) {
            let fwd = c
                .forward()
                .and_then(|f| listeners.get(f as usize))
                .and_then(|l| l.as_fd());
            if c.on_guest(now, payload, ttl, fwd).is_err() {
                counters.udp_dropped += 1;
            }
        }
        return;
    }
    let Some(host_dst) = nat::outbound(cfg, key.remote) else {
        counters.udp_dropped += 1;
        if nat::refused(key.remote.ip()) {
            let len = (8 + payload.len()).min(u16::MAX as usize) as u16;
            // The quoted header as the guest sent it (checksum left 0).
            let mut head = [0u8; 8];
            let _ =
                crate::wire::udp::emit_header(&mut head, key.guest.port(), key.remote.port(), len);
            let (src, dst) = (key.guest.ip(), key.remote.ip());
            let quote = super::dgram::Quote::of(src, dst, ip_proto::UDP, ttl, &head);
            let quote = super::dgram::Quote {
                l4_len: len as usize,
                ..quote
            };
            super::dgram::send_refusal(ctx.tx, ctx.l2, &quote);
        }
        return;
    };
    let Ok(token) = table.vacant() else {
        counters.flows_full += 1;
        return;
    };
    match Conn::open(ctx, &cfg.outbound, token, key, host_dst) {
        Ok(mut c) => {
            if c.on_guest(now, payload, ttl, None).is_err() {
                counters.udp_dropped += 1;
            }
            table.insert(token, key, Flow::Udp(c));
            counters.flows_opened += 1;
        }
        Err(e) => {
            log::debug!("udp {} -> {host_dst}: {e}", key.guest);
            counters.udp_dropped += 1;
        }
    }
}

/// Datagrams on a UDP forward: each opens or refreshes a forwarded flow
/// and goes to the guest as from the peer's inbound address.
#[allow(clippy::too_many_arguments)]
pub fn on_forward_readable<H: Host>(
    table: &mut Table<H>,
    ctx: &mut Ctx<'_, H>,
    cfg: &Config,
    counters: &mut Counters,
    rx: &mut RxHeaders,
    listener: &Listener,
    i: u32,
    guest6: Option<Ipv6Addr>,
) {
    let (Some(guest), Some(fd)) = (listener.guest(cfg, guest6), listener.as_fd()) else {
        return;
    };
    let (now, l2) = (ctx.now, *ctx.l2);
    let v6 = guest.is_ipv6();
    let shape = shape(cfg.mtu, v6);
    let (mut oversize, mut full, mut opened) = (0, 0, 0);
    for _ in 0..4 {
        let n = recv_frames(
            ctx.tx,
            fd,
            rx,
            shape,
            &mut oversize,
            |f, len, peer, csum| {
                let Some(key) = peer.and_then(|p| listener.key(cfg, guest6, p)) else {
                    return 0;
                };
                let peer = peer.unwrap_or(key.remote);
                match table.lookup(&key).and_then(|s| table.at(s)) {
                    Some((_, Flow::Udp(c))) => c.on_forwarded(peer, now),
                    Some(_) => return 0,
                    None => {
                        let Ok(token) = table.vacant() else {
                            full += 1;
                            return 0;
                        };
                        let c = Conn::forwarded(key, i, peer, now);
                        table.insert(token, key, Flow::Udp(c));
                        opened += 1;
                    }
                }
                write_frame(f, &l2, key.remote, key.guest, len, csum)
            },
        );
        if n < BATCH {
            break;
        }
    }
    counters.udp_host_oversize += oversize;
    counters.flows_full += full;
    counters.flows_opened += opened;
}

/// Idle timeouts, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// While only one side has spoken.
    pub unreplied: Duration,
    /// Once both sides have.
    pub stream: Duration,
}

/// One UDP flow.
pub struct Conn<H: Host = Kernel> {
    /// The connected host socket; `None` for a forwarded flow.
    sock: Option<H::Dgram>,
    key: Key,
    /// The host side: the connected destination, or a forward's peer.
    host: SocketAddr,
    /// A forwarded flow: the index of the forward whose socket it uses.
    forward: Option<u32>,
    /// The TTL last set on the host socket.
    ttl: u8,
    /// Length of the guest's last datagram, for quoting in ICMP errors.
    last_len: u16,
    guest_spoke: bool,
    host_spoke: bool,
    last_seen: Instant,
}

/// The default TTL of host sockets (`net.ipv4.ip_default_ttl`), assumed.
const HOST_TTL: u8 = 64;

impl<H: Host> Conn<H> {
    /// A guest datagram for a new flow: open a host socket connected to
    /// `host_dst` from an ephemeral port.
    pub fn open(
        ctx: &mut Ctx<'_, H>,
        outbound: &crate::outbound::Outbound,
        token: super::Token,
        key: Key,
        host_dst: SocketAddr,
    ) -> io::Result<Self> {
        let sock = ctx
            .host
            .dgram_connect(ctx.poller, token, Dgram::Udp, host_dst, outbound)?;
        Ok(Conn {
            sock: Some(sock),
            key,
            host: host_dst,
            forward: None,
            ttl: HOST_TTL,
            last_len: 0,
            guest_spoke: false,
            host_spoke: false,
            last_seen: ctx.now,
        })
    }

    /// A datagram arrived on forward `index` from `peer`: a flow with no
    /// socket of its own.
    pub fn forwarded(key: Key, index: u32, peer: SocketAddr, now: Instant) -> Self {
        Conn {
            sock: None,
            key,
            host: peer,
            forward: Some(index),
            ttl: HOST_TTL,
            last_len: 0,
            guest_spoke: false,
            host_spoke: true,
            last_seen: now,
        }
    }

    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The host side: the connected destination, or a forward's peer.
    pub fn host(&self) -> SocketAddr {
        self.host
    }

    /// The forward this flow belongs to, if any.
    pub fn forward(&self) -> Option<u32> {
        self.forward
    }

    /// The forward's peer spoke again (it may have moved).
    pub fn on_forwarded(&mut self, peer: SocketAddr, now: Instant) {
        if self.forward.is_some() {
            self.host = peer;
        }
        self.host_spoke = true;
        self.last_seen = now;
    }

    /// A datagram from the guest. `forward_fd` is the forward's socket for
    /// a forwarded flow. Errors are the host's (the datagram is dropped).
    pub fn on_guest(
        &mut self,
        now: Instant,
        payload: &[u8],
        ttl: u8,
        forward_fd: Option<BorrowedFd<'_>>,
    ) -> io::Result<()> {
        self.last_seen = now;
        self.guest_spoke = true;
        self.last_len = (payload.len() + UDP_HEADER).min(u16::MAX as usize) as u16;
        if let Some(s) = &self.sock {
            return s.send_at_ttl(payload, ttl, &mut self.ttl);
        }
        let Some(fwd) = forward_fd else {
            return Err(Errno::EBADF.into());
        };
        // sendmsg, not sendto: seccomp allows sendto only without an
        // address.
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        let iov = [std::io::IoSlice::new(payload)];
        let to = SockaddrStorage::from(self.host);
        sock::sendmsg(fwd.as_raw_fd(), &iov, &[], flags, Some(&to))
            .map(|_| ())
            .map_err(Into::into)
    }

    /// Readiness on the flow's own socket.
    pub fn on_host_event(
        &mut self,
        ctx: &mut Ctx<'_, H>,
        ev: EpollFlags,
        rx: &mut RxHeaders,
        counters: &mut Counters,
    ) -> Verdict {
        let Some(sock) = self.sock.as_ref() else {
            return Verdict::Keep;
        };
        if ev.contains(EpollFlags::EPOLLERR) {
            while let Some(e) = sock.next_error() {
                let from = error_source(e.offender, self.key.remote.ip(), self.host.ip());
                // The quoted UDP header as the guest sent it (checksum 0).
                let mut head = [0u8; udpw::HEADER_LEN];
                let _ = udpw::emit_header(
                    &mut head,
                    self.key.guest.port(),
                    self.key.remote.port(),
                    self.last_len.max(udpw::HEADER_LEN as u16),
                );
                let quote = Quote {
                    src: self.key.guest.ip(),
                    dst: self.key.remote.ip(),
                    proto: ip_proto::UDP,
                    ttl: self.ttl,
                    l4_len: self.last_len.max(8) as usize,
                    l4_head: head,
                };
                if send_icmp_error(ctx.tx, ctx.l2, from, &e, &quote) {
                    counters.icmp_errors_to_guest += 1;
                }
            }
        }
        if ev.contains(EpollFlags::EPOLLIN) {
            let v6 = self.key.guest.is_ipv6();
            let shape = shape(ctx.mtu, v6);
            let (src, dst, l2) = (self.key.remote, self.key.guest, *ctx.l2);
            for _ in 0..BATCHES_PER_EVENT {
                let n = sock.recv_frames(
                    ctx.tx,
                    rx,
                    shape,
                    &mut counters.udp_host_oversize,
                    |f, len, _, csum| write_frame(f, &l2, src, dst, len, csum),
                );
                if n == 0 {
                    break;
                }
                self.host_spoke = true;
                self.last_seen = ctx.now;
                if n < BATCH {
                    break;
                }
            }
        }
        Verdict::Keep
    }

    /// Idle expiry.
    pub fn on_tick(&self, now: Instant, t: &Timeouts) -> Verdict {
        let limit = if self.guest_spoke && self.host_spoke {
            t.stream
        } else {
            t.unreplied
        };
        Verdict::unless_idle(self.last_seen, now, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::dgram::HostError;
    use crate::wire::{checksum, icmpv4, ipv4};
    use nix::sys::socket::{AddressFamily, SockFlag, SockType};
    use std::os::fd::OwnedFd;

    /// A DGRAM link whose frames can be read back from the other end.
    pub(crate) fn test_link() -> (crate::link::Link, OwnedFd) {
        let (a, b) = sock::socketpair(
            AddressFamily::Unix,
            SockType::Datagram,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        (
            crate::link::Link::new(a, crate::link::Kind::Dgram).unwrap(),
            b,
        )
    }

    pub(crate) fn recv_frame(fd: &OwnedFd) -> Vec<u8> {
        let mut buf = vec![0u8; 70000];
        let n = sock::recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).unwrap();
        buf.truncate(n);
        buf
    }

    fn l2() -> L2 {
        L2 {
            guest: [2, 0, 0, 0, 0, 1],
            router4: [0x52, 0x55, 10, 0, 2, 2],
            router6: [0x52, 0x56, 0, 0, 0, 2],
        }
    }

    #[test]
    fn frame_round_trips_through_the_parsers() {
        let (s, d): (SocketAddr, SocketAddr) = (
            "10.0.2.3:53".parse().unwrap(),
            "10.0.2.15:40000".parse().unwrap(),
        );
        let mut buf = vec![0u8; 200];
        let hdr = frame_header(false);
        buf[hdr..hdr + 5].copy_from_slice(b"hello");
        let n = write_frame(&mut buf, &l2(), s, d, 5, Checksum::Full);
        assert_eq!(n, 14 + 20 + 8 + 5);
        let ip = ipv4::Packet::new_checked(&buf[14..n]).unwrap();
        let r = ipv4::Repr::parse(&ip).unwrap();
        assert_eq!(
            (r.src.to_string(), r.dst.to_string()),
            ("10.0.2.3".into(), "10.0.2.15".into())
        );
        let u = udpw::Packet::new_checked(ip.payload()).unwrap();
        let pseudo = frame::pseudo(s.ip(), d.ip()).unwrap();
        let ur = udpw::Repr::parse(&u, &pseudo).unwrap();
        assert_eq!((ur.src_port, ur.dst_port), (53, 40000));
        assert_eq!(u.payload(), b"hello");
        // A v6 source toward a v4 guest is refused, not garbled.
        assert_eq!(
            write_frame(
                &mut buf,
                &l2(),
                "[::1]:5".parse().unwrap(),
                d,
                5,
                Checksum::Full
            ),
            0
        );
    }

    #[test]
    fn port_unreachable_quotes_the_guest_datagram() {
        let (mut link, peer) = test_link();
        let tx = &mut link.tx;
        let e = HostError {
            icmp_type: 3,
            code: 3,
            info: 0,
            offender: Some("127.0.0.1".parse().unwrap()),
            head: [0; 8],
        };
        let from = error_source(
            e.offender,
            "10.0.2.2".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
        );
        assert_eq!(from.to_string(), "10.0.2.2");
        let q = Quote {
            src: "10.0.2.15".parse().unwrap(),
            dst: "10.0.2.2".parse().unwrap(),
            proto: 17,
            ttl: 64,
            l4_len: 12,
            l4_head: [0x9c, 0x40, 0x13, 0x88, 0, 12, 0, 0],
        };
        assert!(send_icmp_error(tx, &l2(), from, &e, &q));
        tx.flush();
        let f = recv_frame(&peer);
        let ip = ipv4::Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.src().to_string(), "10.0.2.2");
        let p = icmpv4::Packet::new_checked(ip.payload()).unwrap();
        match icmpv4::Repr::parse(&p).unwrap() {
            icmpv4::Repr::DstUnreachable { code, quoted, .. } => {
                assert_eq!(code, 3);
                let q = icmpv4::Quoted::parse(quoted).unwrap();
                assert_eq!(q.src.to_string(), "10.0.2.15");
                assert_eq!(q.dst.to_string(), "10.0.2.2");
                assert_eq!(q.protocol, 17);
                assert_eq!(&q.payload[..4], &[0x9c, 0x40, 0x13, 0x88]);
                assert_eq!(q.header.len(), 20);
                assert_eq!(checksum::checksum(q.header), 0);
            }
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn error_sources() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let (remote, host) = (ip("10.0.2.2"), ip("127.0.0.1"));
        assert_eq!(error_source(None, remote, host), remote);
        assert_eq!(error_source(Some(ip("127.0.0.1")), remote, host), remote);
        assert_eq!(
            error_source(Some(ip("192.0.2.1")), remote, host),
            ip("192.0.2.1")
        );
        assert_eq!(error_source(Some(ip("::1")), remote, host), remote);
        let r = ip("198.51.100.1");
        assert_eq!(error_source(Some(r), r, r), r);
    }
}
