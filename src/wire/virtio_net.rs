//! The virtio-net header (`struct virtio_net_hdr_v1`, virtio 1.2 §5.1.6)
//! that leads every frame in a vhost-user virtqueue: 12 bytes, little
//! endian, the same size with or without MRG_RXBUF under VERSION_1.
#![forbid(unsafe_code)]

use zerocopy::byteorder::little_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{header, header_mut, Error, Result};

pub const HEADER_LEN: usize = 12;

/// `flags`: the checksum from `csum_start` on is still to be computed.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was checked (device to driver).
pub const F_DATA_VALID: u8 = 2;
/// `gso_type`: not a segmentation offload.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: a TCP segment over IPv4 (IPv6) larger than the MTU, which
/// the receiver takes whole.
pub const GSO_TCPV4: u8 = 1;
pub const GSO_TCPV6: u8 = 4;
/// `gso_type`: ECN bit, on top of a GSO type.
pub const GSO_ECN: u8 = 0x80;

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct VirtioNetHeader {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: U16,
    pub gso_size: U16,
    pub csum_start: U16,
    pub csum_offset: U16,
    pub num_buffers: U16,
}

/// What airlock uses of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Repr {
    pub flags: u8,
    pub gso_type: u8,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    /// Receive buffers the frame spans (MRG_RXBUF); 1 otherwise.
    pub num_buffers: u16,
}

impl Repr {
    pub fn parse(buf: &[u8]) -> Result<Repr> {
        let h: &VirtioNetHeader = header(buf).ok_or(Error::Truncated)?;
        Ok(Repr {
            flags: h.flags,
            gso_type: h.gso_type,
            gso_size: h.gso_size.get(),
            csum_start: h.csum_start.get(),
            csum_offset: h.csum_offset.get(),
            num_buffers: h.num_buffers.get(),
        })
    }

    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let h: &mut VirtioNetHeader = header_mut(buf).ok_or(Error::Truncated)?;
        h.flags = self.flags;
        h.gso_type = self.gso_type;
        h.hdr_len = U16::ZERO;
        h.gso_size.set(self.gso_size);
        h.csum_start.set(self.csum_start);
        h.csum_offset.set(self.csum_offset);
        h.num_buffers.set(self.num_buffers);
        Ok(())
    }

    /// A header for a frame whose checksums are all complete.
    pub fn plain(num_buffers: u16) -> Repr {
        Repr {
            num_buffers,
            ..Repr::default()
        }
    }
}

/// Set only `num_buffers` of a header already emitted (MRG_RXBUF learns
/// the count after the frame is placed).
pub fn set_num_buffers(buf: &mut [u8], n: u16) -> Result<()> {
    let h: &mut VirtioNetHeader = header_mut(buf).ok_or(Error::Truncated)?;
    h.num_buffers.set(n);
    Ok(())
}

/// Complete a checksum the driver left partial (`F_NEEDS_CSUM`): the
/// 16-bit field at `csum_start + csum_offset` holds the pseudo-header sum,
/// and the result covers everything from `csum_start` to the frame's end.
/// `frame` starts at the Ethernet header (the virtio header removed).
pub fn complete_checksum(frame: &mut [u8], csum_start: u16, csum_offset: u16) -> Result<()> {
    let start = usize::from(csum_start);
    let at = start + usize::from(csum_offset);
    if at + 2 > frame.len() {
        return Err(Error::Malformed);
    }
    let c = super::checksum::checksum(frame.get(start..).ok_or(Error::Malformed)?);
    // UDP sends a zero sum as 0xffff (0 means "none"); for TCP the two are
    // the same one's complement zero.
    let c = if c == 0 { 0xffff } else { c };
    frame
        .get_mut(at..at + 2)
        .ok_or(Error::Malformed)?
        .copy_from_slice(&c.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_little_endian() {
        let r = Repr {
            flags: F_NEEDS_CSUM,
            gso_type: 1,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 3,
        };
        let mut b = [0u8; HEADER_LEN];
        r.emit(&mut b).unwrap();
        assert_eq!(b, [1, 1, 0, 0, 0xa8, 0x05, 34, 0, 16, 0, 3, 0]);
        assert_eq!(Repr::parse(&b).unwrap(), r);
        set_num_buffers(&mut b, 7).unwrap();
        assert_eq!(Repr::parse(&b).unwrap().num_buffers, 7);
        assert_eq!(Repr::parse(&b[..11]), Err(Error::Truncated));
        assert_eq!(Repr::plain(1).emit(&mut [0u8; 11]), Err(Error::Truncated));
    }

    #[test]
    fn completes_a_partial_checksum_and_rejects_bad_offsets() {
        // A UDP datagram over IPv4 whose checksum field holds the
        // pseudo-header sum, as Linux leaves it with CHECKSUM_PARTIAL.
        use crate::wire::checksum::{fold, pseudo_v4, sum};
        use std::net::Ipv4Addr;
        let (src, dst) = (Ipv4Addr::new(10, 0, 2, 15), Ipv4Addr::new(10, 0, 2, 2));
        let mut udp = vec![0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0, b'a', b'b', b'c', b'd'];
        let pseudo = fold(pseudo_v4(src, dst, 17, 12) as u64);
        udp[6..8].copy_from_slice(&pseudo.to_be_bytes());
        let mut frame = vec![0u8; 34];
        frame.extend_from_slice(&udp);
        complete_checksum(&mut frame, 34, 6).unwrap();
        let whole = pseudo_v4(src, dst, 17, 12) as u64 + sum(&frame[34..]) as u64;
        assert_eq!(fold(whole), 0xffff, "the completed checksum verifies");
        assert_eq!(complete_checksum(&mut frame, 40, 6), Err(Error::Malformed));
        assert_eq!(
            complete_checksum(&mut frame, u16::MAX, u16::MAX),
            Err(Error::Malformed)
        );
    }
}
