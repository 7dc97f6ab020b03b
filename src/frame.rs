//! Frames for the guest: Ethernet and IP headers around a transport payload.
//!
//! Services and flows write their transport header and payload in place,
//! behind the headers these functions write, so a frame is built once, in
//! the link's transmit queue, never copied.
#![forbid(unsafe_code)]

use crate::wire::{checksum, ethernet, ethertype, ip_proto, ipv4, ipv6, udp, Mac};
use std::net::{IpAddr, SocketAddr};

pub const ETH_LEN: usize = ethernet::HEADER_LEN;
pub const IPV4_LEN: usize = ipv4::HEADER_LEN;
pub const IPV6_LEN: usize = ipv6::HEADER_LEN;

/// Who is who on the virtual Ethernet.
#[derive(Clone, Copy, Debug)]
pub struct L2 {
    /// The guest's MAC, learned from its frames (broadcast until then).
    pub guest: Mac,
    /// The router's MAC for IPv4 frames (slirp: `52:55` + host address).
    pub router4: Mac,
    /// The router's MAC for IPv6 frames (slirp: `52:56` + host address).
    pub router6: Mac,
}

/// Offset of the transport header in a frame from `src`.
pub fn l4_offset(src: IpAddr) -> usize {
    ETH_LEN + if src.is_ipv6() { IPV6_LEN } else { IPV4_LEN }
}

/// Write Ethernet and IP headers for a transport message of `l4_len` bytes
/// from `src` to `dst`. Returns the offset of the transport header, or 0
/// if `buf` is too small or the families differ.
pub fn write_ip(
    buf: &mut [u8],
    l2: &L2,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    l4_len: usize,
    ttl: u8,
) -> usize {
    let off = l4_offset(src);
    if buf.len() < off + l4_len {
        return 0;
    }
    let Ok(len) = u16::try_from(l4_len) else {
        return 0;
    };
    let (router, ethertype, ip) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ip = ipv4::Repr {
                ttl,
                ..ipv4::Repr::new(s, d, proto, len)
            };
            (l2.router4, ethertype::IPV4, ip.emit(&mut buf[ETH_LEN..]))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let ip = ipv6::Repr {
                hop_limit: ttl,
                ..ipv6::Repr::new(s, d, proto, len)
            };
            (l2.router6, ethertype::IPV6, ip.emit(&mut buf[ETH_LEN..]))
        }
        _ => return 0,
    };
    if ip.is_err() || ethernet::emit_header(buf, l2.guest, router, ethertype).is_err() {
        return 0;
    }
    off
}

/// Write Ethernet, IP and UDP headers from `src` to `dst` in front of `n`
/// payload bytes already at `buf[l4_offset(src) + 8..]`; returns the
/// frame's length (0 if it does not fit or the families differ).
pub fn write_udp(buf: &mut [u8], l2: &L2, src: SocketAddr, dst: SocketAddr, n: usize) -> usize {
    write_udp_with(buf, l2, src, dst, n, checksum::Checksum::Full)
}

/// [`write_udp`]; with `Partial` the UDP checksum is left as the
/// pseudo-header sum for the guest's driver (see `link::Tx::checksum`).
pub fn write_udp_with(
    buf: &mut [u8],
    l2: &L2,
    src: SocketAddr,
    dst: SocketAddr,
    n: usize,
    csum: checksum::Checksum,
) -> usize {
    let repr = udp::Repr {
        src_port: src.port(),
        dst_port: dst.port(),
        payload_len: n,
    };
    let l4_len = repr.buffer_len();
    let off = write_ip(buf, l2, src.ip(), dst.ip(), ip_proto::UDP, l4_len, 64);
    let Some(p) = pseudo(src.ip(), dst.ip()).filter(|_| off != 0) else {
        return 0;
    };
    match repr.emit_with(&mut buf[off..], &p, csum) {
        Ok(len) => off + len,
        Err(_) => 0,
    }
}

/// The pseudo header for an upper-layer checksum between `src` and `dst`.
pub fn pseudo(src: IpAddr, dst: IpAddr) -> Option<checksum::PseudoHeader> {
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => Some(checksum::PseudoHeader::V4 { src, dst }),
        (IpAddr::V6(src), IpAddr::V6(dst)) => Some(checksum::PseudoHeader::V6 { src, dst }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_udp_frame_verifies() {
        let l2 = L2 {
            guest: [2, 0, 0, 0, 0, 1],
            router4: [0x52, 0x55, 10, 0, 2, 2],
            router6: [0x52, 0x56, 0, 0, 0, 2],
        };
        let mut buf = [0u8; 64];
        let (s, d) = ("10.0.2.2".parse().unwrap(), "10.0.2.15".parse().unwrap());
        let off = write_ip(&mut buf, &l2, s, d, 17, 12, 64);
        assert_eq!(off, 34);
        assert_eq!(&buf[0..6], &l2.guest);
        assert_eq!(&buf[6..12], &l2.router4);
        assert_eq!(checksum::checksum(&buf[14..34]), 0);
        buf[42..46].copy_from_slice(b"abcd");
        let udp = udp::Repr {
            src_port: 53,
            dst_port: 1024,
            payload_len: 4,
        };
        let p = pseudo(s, d).unwrap();
        assert_eq!(udp.emit(&mut buf[34..46], &p), Ok(12));
        assert!(p.verify(17, &buf[34..46]));
        assert_eq!(
            write_ip(&mut buf, &l2, s, "::1".parse().unwrap(), 17, 12, 64),
            0
        );
        assert_eq!(write_ip(&mut buf, &l2, s, d, 17, 40, 64), 0);
    }
}
