//! What UDP and ICMP echo flows share: datagrams received in batches
//! straight into frames in the transmit queue, and the socket error queue
//! (`IP_RECVERR`) turned into ICMP errors to the guest.
//!
//! #syscalls: recvmmsg recvmsg
#![forbid(unsafe_code)]

use crate::frame::{self, L2};
use crate::link::{Slots, Tx, MAX_FRAME};
use crate::wire::checksum::{Checksum, PartialCsum};
use crate::wire::{icmpv4, icmpv6, ip_proto, ipv4, ipv6};
use nix::sys::socket::{self as sock, MsgFlags, MultiHeaders, SockaddrStorage};
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Datagrams per `recvmmsg`.
pub const BATCH: usize = 16;

/// The `recvmmsg` headers (with room for each sender's address), allocated
/// once and reused for every call.
pub struct RxHeaders(MultiHeaders<SockaddrStorage>);

impl Default for RxHeaders {
    fn default() -> Self {
        RxHeaders(MultiHeaders::preallocate(BATCH, None))
    }
}

/// Convert a socket address from the kernel.
pub fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// Slots in `tx` for a batch of frames of `hdr` bytes of headers and up to
/// `max` payload bytes, and the payload room each has (`max`, or less
/// where the frame would pass [`MAX_FRAME`]).
pub fn reserve_frames(tx: &mut Tx, hdr: usize, max: usize) -> (Slots<'_>, usize) {
    let frame_len = (hdr + max).min(MAX_FRAME);
    (tx.reserve(BATCH, frame_len), frame_len.saturating_sub(hdr))
}

/// The frames [`recv_frames`] builds: `hdr` bytes of headers before the
/// payload, room for `max` payload bytes, and where their L4 checksum lies
/// if it may be left partial for the guest's driver (UDP; `None`: always
/// finished, as ICMP's).
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub hdr: usize,
    pub max: usize,
    pub partial: Option<PartialCsum>,
}

impl Shape {
    /// How `finish` is to write the checksum over `tx`: partial only where
    /// the shape allows it and the link takes it.
    pub fn checksum(&self, tx: &Tx) -> Checksum {
        match self.partial {
            Some(_) => tx.checksum(),
            None => Checksum::Full,
        }
    }

    /// The mark to commit frames written with `csum`.
    pub fn mark(&self, csum: Checksum) -> Option<PartialCsum> {
        self.partial.filter(|_| csum == Checksum::Partial)
    }
}

/// Receive up to [`BATCH`] datagrams from `fd` straight into frames in the
/// transmit queue, framed as `shape` says; `finish(frame, len, sender,
/// checksum)` writes the headers around the `len` payload bytes at
/// `frame[hdr..]` (the checksum as told) and returns the frame's length (0
/// drops it). Datagrams longer than `max` are dropped and
/// counted in `oversize`. Returns how many datagrams were read: 0 when the
/// socket has nothing (or reports an error, which the error queue explains).
pub fn recv_frames(
    tx: &mut Tx,
    fd: BorrowedFd<'_>,
    rx: &mut RxHeaders,
    shape: Shape,
    oversize: &mut u64,
    mut finish: impl FnMut(&mut [u8], usize, Option<SocketAddr>, Checksum) -> usize,
) -> usize {
    let hdr = shape.hdr;
    let csum = shape.checksum(tx);
    let (mut slots, max) = reserve_frames(tx, hdr, shape.max);
    let k = slots.count().min(BATCH);
    let mut got = [(0usize, false, None::<SocketAddr>); BATCH];
    let n = {
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(&mut [])]);
        for (slot, frame) in iovs.iter_mut().zip(slots.iter_mut()).take(k) {
            if let Some(p) = frame.get_mut(hdr..hdr + max) {
                *slot = [IoSliceMut::new(p)];
            }
        }
        match sock::recvmmsg(
            fd.as_raw_fd(),
            &mut rx.0,
            iovs[..k].iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(msgs) => {
                let mut n = 0;
                for (slot, m) in got.iter_mut().zip(msgs) {
                    *slot = (
                        m.bytes,
                        m.flags.contains(MsgFlags::MSG_TRUNC),
                        m.address.as_ref().and_then(to_std),
                    );
                    n += 1;
                }
                n
            }
            Err(_) => 0,
        }
    };
    if n == 0 {
        return 0;
    }
    let mut lens = [0usize; BATCH];
    for ((len, frame), &(bytes, truncated, peer)) in lens
        .iter_mut()
        .zip(slots.iter_mut())
        .zip(got.iter())
        .take(n)
    {
        if truncated || bytes > max {
            *oversize += 1;
            continue;
        }
        *len = finish(frame, bytes, peer, csum);
    }
    slots.commit_with(&lens[..n], shape.mark(csum));
    n
}

/// One error from a socket's error queue (`IP_RECVERR`).
#[derive(Debug, Clone, Copy)]
pub struct HostError {
    /// ICMP or ICMPv6 type and code as the host received them.
    pub icmp_type: u8,
    pub code: u8,
    /// The next-hop MTU for "fragmentation needed" / "packet too big".
    pub info: u32,
    /// Who sent the ICMP error, if known.
    pub offender: Option<IpAddr>,
    /// The first bytes of the offending datagram's payload as sent (for a
    /// ping socket: the echo request header).
    pub head: [u8; 8],
}

const SO_EE_ORIGIN_ICMP: u8 = 2;
const SO_EE_ORIGIN_ICMP6: u8 = 3;

/// Take the next ICMP-originated error from `fd`'s error queue. Errors of
/// other origins (local ones) are consumed and skipped. `None` when empty.
pub fn next_host_error(fd: BorrowedFd<'_>) -> Option<HostError> {
    for _ in 0..64 {
        let mut head = [0u8; 8];
        let mut cmsg = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
        let found = {
            let mut iov = [IoSliceMut::new(&mut head)];
            let msg = sock::recvmsg::<SockaddrStorage>(
                fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
            )
            .ok()?;
            let mut found = None;
            for c in msg.cmsgs().into_iter().flatten() {
                match c {
                    sock::ControlMessageOwned::Ipv4RecvErr(e, off)
                        if e.ee_origin == SO_EE_ORIGIN_ICMP =>
                    {
                        let ip = off
                            .map(|s| IpAddr::V4(Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr))));
                        found = Some((e, ip));
                    }
                    sock::ControlMessageOwned::Ipv6RecvErr(e, off)
                        if e.ee_origin == SO_EE_ORIGIN_ICMP6 =>
                    {
                        let ip = off.map(|s| IpAddr::V6(Ipv6Addr::from(s.sin6_addr.s6_addr)));
                        found = Some((e, ip));
                    }
                    _ => {}
                }
            }
            found
        };
        if let Some((e, offender)) = found {
            return Some(HostError {
                icmp_type: e.ee_type,
                code: e.ee_code,
                info: e.ee_info,
                offender: offender.filter(|a| !a.is_unspecified()),
                head,
            });
        }
    }
    None
}

/// How the guest should see the sender of an ICMP error about a flow to
/// `remote` (as the guest addressed it) that the host sent to `host_dst`.
pub fn error_source(offender: Option<IpAddr>, remote: IpAddr, host_dst: IpAddr) -> IpAddr {
    match offender {
        Some(o) if o == host_dst || o.is_loopback() => remote,
        Some(o) if o.is_ipv4() == remote.is_ipv4() => o,
        _ => remote,
    }
}

/// The datagram an ICMP error quotes, rebuilt from a flow's addresses.
#[derive(Debug, Clone, Copy)]
pub struct Quote {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub ttl: u8,
    /// Length of the original transport message (header included).
    pub l4_len: usize,
    /// Its first 8 bytes (ports, or the echo header).
    pub l4_head: [u8; 8],
}

impl Quote {
    /// The guest's own datagram `l4` (transport header and payload).
    pub fn of(src: IpAddr, dst: IpAddr, proto: u8, ttl: u8, l4: &[u8]) -> Quote {
        let mut l4_head = [0u8; 8];
        let n = l4.len().min(8);
        l4_head[..n].copy_from_slice(&l4[..n]);
        Quote {
            src,
            dst,
            proto,
            ttl,
            l4_len: l4.len(),
            l4_head,
        }
    }
}

/// Answer a guest datagram to a [`super::nat::refused`] destination with
/// "communication administratively prohibited" (ICMP 3/13, ICMPv6 1/1),
/// from the address it was sent to.
pub fn send_refusal(tx: &mut Tx, l2: &L2, quote: &Quote) -> bool {
    let (icmp_type, code) = if quote.src.is_ipv6() { (1, 1) } else { (3, 13) };
    let err = HostError {
        icmp_type,
        code,
        info: 0,
        offender: None,
        head: [0; 8],
    };
    send_icmp_error(tx, l2, quote.dst, &err, quote)
}

/// Send the guest an ICMP (or ICMPv6) error from `from` about the datagram
/// in `quote`. Returns false if the families do not match.
pub fn send_icmp_error(tx: &mut Tx, l2: &L2, from: IpAddr, err: &HostError, quote: &Quote) -> bool {
    let v6 = quote.src.is_ipv6();
    if from.is_ipv6() != v6 || quote.dst.is_ipv6() != v6 {
        return false;
    }
    let ip_len = if v6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::HEADER_LEN
    };
    let msg_len = icmpv4::HEADER_LEN + ip_len + quote.l4_head.len();
    let proto = if v6 { ip_proto::ICMPV6 } else { ip_proto::ICMP };
    // Next-hop MTU (RFC 1191: low 16 bits; RFC 4443: all 32), else 0.
    let info = if v6 && err.icmp_type == icmpv6::msg_type::PACKET_TOO_BIG {
        err.info
    } else if !v6
        && err.icmp_type == icmpv4::msg_type::DST_UNREACHABLE
        && err.code == icmpv4::unreachable::FRAG_NEEDED
    {
        err.info & 0xffff
    } else {
        0
    };
    let mut ok = false;
    tx.send_with(|buf| {
        let off = frame::write_ip(buf, l2, from, quote.src, proto, msg_len, 64);
        let Some(m) = buf.get_mut(off..off + msg_len).filter(|_| off != 0) else {
            return 0;
        };
        // The quoted datagram: its IP header, then its first 8 bytes.
        let q = &mut m[icmpv4::HEADER_LEN..];
        let quoted = match (quote.src, quote.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let plen = quote.l4_len.min(u16::MAX as usize - ipv4::HEADER_LEN) as u16;
                let ip = ipv4::Repr {
                    ttl: quote.ttl,
                    ..ipv4::Repr::new(s, d, quote.proto, plen)
                };
                ip.emit(q)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let plen = quote.l4_len.min(u16::MAX as usize) as u16;
                let ip = ipv6::Repr {
                    hop_limit: quote.ttl,
                    ..ipv6::Repr::new(s, d, quote.proto, plen)
                };
                ip.emit(q)
            }
            _ => return 0,
        };
        if quoted.is_err() {
            return 0;
        }
        q[ip_len..].copy_from_slice(&quote.l4_head);
        match (from, quote.src) {
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let Ok(mut p) = icmpv6::Packet::new_checked(&mut *m) else {
                    return 0;
                };
                p.set_msg_type(err.icmp_type);
                p.set_code(err.code);
                p.set_word(info);
                p.fill_checksum(s, d);
            }
            _ => {
                let Ok(mut p) = icmpv4::Packet::new_checked(&mut *m) else {
                    return 0;
                };
                p.set_msg_type(err.icmp_type);
                p.set_code(err.code);
                p.set_rest_of_header(info);
                p.fill_checksum();
            }
        }
        ok = true;
        off + msg_len
    });
    ok
}
