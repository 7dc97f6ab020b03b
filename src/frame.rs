//! Frames for the guest: Ethernet and IP headers around a transport payload.
//!
//! Services and flows write their transport header and payload in place,
//! behind the headers these functions write, so a frame is built once, in
//! the link's transmit queue, never copied.
#![forbid(unsafe_code)]

use crate::wire::{checksum, ethernet, ethertype, Mac};
use std::net::IpAddr;

pub const ETH_LEN: usize = 14;
pub const IPV4_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;

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
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = IPV4_LEN + l4_len;
            if total > u16::MAX as usize {
                return 0;
            }
            let _ = ethernet::emit_header(buf, l2.guest, l2.router4, ethertype::IPV4);
            let h = &mut buf[ETH_LEN..ETH_LEN + IPV4_LEN];
            h[0] = 0x45;
            h[1] = 0;
            h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            h[4..6].copy_from_slice(&[0, 0]);
            h[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
            h[8] = ttl;
            h[9] = proto;
            h[10..12].copy_from_slice(&[0, 0]);
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let c = checksum::checksum(h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            if l4_len > u16::MAX as usize {
                return 0;
            }
            let _ = ethernet::emit_header(buf, l2.guest, l2.router6, ethertype::IPV6);
            let h = &mut buf[ETH_LEN..ETH_LEN + IPV6_LEN];
            h[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
            h[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            h[6] = proto;
            h[7] = ttl;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
        }
        _ => return 0,
    }
    off
}

/// The pseudo header for an upper-layer checksum between `src` and `dst`.
pub fn pseudo(src: IpAddr, dst: IpAddr) -> Option<checksum::PseudoHeader> {
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => Some(checksum::PseudoHeader::V4 { src, dst }),
        (IpAddr::V6(src), IpAddr::V6(dst)) => Some(checksum::PseudoHeader::V6 { src, dst }),
        _ => None,
    }
}

/// Fill the transport checksum at `csum_at` (offset within `l4`).
pub fn fill_l4_checksum(l4: &mut [u8], src: IpAddr, dst: IpAddr, proto: u8, csum_at: usize) {
    let Some(p) = pseudo(src, dst) else { return };
    if l4.len() < csum_at + 2 {
        return;
    }
    l4[csum_at..csum_at + 2].copy_from_slice(&[0, 0]);
    let mut c = p.checksum(proto, l4);
    if c == 0 && proto == 17 {
        c = 0xffff;
    }
    l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
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
        buf[34..46].copy_from_slice(&[0, 53, 4, 0, 0, 12, 0, 0, b'a', b'b', b'c', b'd']);
        fill_l4_checksum(&mut buf[34..46], s, d, 17, 6);
        assert!(pseudo(s, d).unwrap().verify(17, &buf[34..46]));
        assert_eq!(
            write_ip(&mut buf, &l2, s, "::1".parse().unwrap(), 17, 12, 64),
            0
        );
        assert_eq!(write_ip(&mut buf, &l2, s, d, 17, 40, 64), 0);
    }
}
