//! ARP for Ethernet/IPv4 only (RFC 826): the only kind a guest NIC sends.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use zerocopy::byteorder::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{ethertype, header, header_mut, Error, Mac, Result};

pub const PACKET_LEN: usize = 28;
/// Hardware type: Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;

/// Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ArpHeader {
    pub htype: U16,
    pub ptype: U16,
    pub hlen: u8,
    pub plen: u8,
    pub op: U16,
    pub sender_mac: Mac,
    pub sender_ip: [u8; 4],
    pub target_mac: Mac,
    pub target_ip: [u8; 4],
}

const ZERO: ArpHeader = ArpHeader {
    htype: U16::ZERO,
    ptype: U16::ZERO,
    hlen: 0,
    plen: 0,
    op: U16::ZERO,
    sender_mac: [0; 6],
    sender_ip: [0; 4],
    target_mac: [0; 6],
    target_ip: [0; 4],
};

/// ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Request,
    Reply,
    Unknown(u16),
}

impl From<u16> for Operation {
    fn from(v: u16) -> Operation {
        match v {
            1 => Operation::Request,
            2 => Operation::Reply,
            v => Operation::Unknown(v),
        }
    }
}

impl From<Operation> for u16 {
    fn from(op: Operation) -> u16 {
        match op {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Unknown(v) => v,
        }
    }
}

/// A checked view of an ARP packet (28 bytes; trailing padding ignored).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        if buffer.as_ref().len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        Ok(Packet { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn hdr(&self) -> &ArpHeader {
        header(self.buffer.as_ref()).unwrap_or(&ZERO)
    }

    pub fn htype(&self) -> u16 {
        self.hdr().htype.get()
    }
    fn ptype(&self) -> u16 {
        self.hdr().ptype.get()
    }
    pub fn hlen(&self) -> u8 {
        self.hdr().hlen
    }
    fn plen(&self) -> u8 {
        self.hdr().plen
    }
    pub fn operation(&self) -> Operation {
        self.hdr().op.get().into()
    }
    pub fn sender_mac(&self) -> Mac {
        self.hdr().sender_mac
    }
    pub fn sender_ip(&self) -> Ipv4Addr {
        self.hdr().sender_ip.into()
    }
    pub fn target_mac(&self) -> Mac {
        self.hdr().target_mac
    }
    pub fn target_ip(&self) -> Ipv4Addr {
        self.hdr().target_ip.into()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {}

/// An Ethernet/IPv4 ARP packet, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub op: Operation,
    pub sender_mac: Mac,
    pub sender_ip: Ipv4Addr,
    pub target_mac: Mac,
    pub target_ip: Ipv4Addr,
}

impl Repr {
    /// Fails with `Unsupported` for anything but Ethernet/IPv4.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        if p.htype() != HTYPE_ETHERNET
            || p.ptype() != ethertype::IPV4
            || p.hlen() != 6
            || p.plen() != 4
        {
            return Err(Error::Unsupported);
        }
        Ok(Repr {
            op: p.operation(),
            sender_mac: p.sender_mac(),
            sender_ip: p.sender_ip(),
            target_mac: p.target_mac(),
            target_ip: p.target_ip(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the 28-byte packet at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let h: &mut ArpHeader = header_mut(buf).ok_or(Error::Truncated)?;
        *h = ArpHeader {
            htype: HTYPE_ETHERNET.into(),
            ptype: ethertype::IPV4.into(),
            hlen: 6,
            plen: 4,
            op: u16::from(self.op).into(),
            sender_mac: self.sender_mac,
            sender_ip: self.sender_ip.octets(),
            target_mac: self.target_mac,
            target_ip: self.target_ip.octets(),
        };
        Ok(PACKET_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{fuzz, hex};

    const GUEST: Mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const ROUTER: Mac = [0x52, 0x55, 0x0a, 0, 0x02, 0x02];

    fn request() -> Vec<u8> {
        // "Who has 10.0.2.2? Tell 10.0.2.15", plus Ethernet padding.
        hex("0001 0800 06 04 0001 525400123456 0a00020f 000000000000 0a000202 0000")
    }

    fn reply() -> Vec<u8> {
        hex("0001 0800 06 04 0002 52550a000202 0a000202 525400123456 0a00020f")
    }

    #[test]
    fn parse_request() {
        let g = request();
        let r = Repr::parse(&Packet::new_checked(&g[..]).unwrap()).unwrap();
        assert_eq!(
            r,
            Repr {
                op: Operation::Request,
                sender_mac: GUEST,
                sender_ip: Ipv4Addr::new(10, 0, 2, 15),
                target_mac: [0; 6],
                target_ip: Ipv4Addr::new(10, 0, 2, 2),
            }
        );
    }

    #[test]
    fn emit_reply() {
        let r = Repr {
            op: Operation::Reply,
            sender_mac: ROUTER,
            sender_ip: Ipv4Addr::new(10, 0, 2, 2),
            target_mac: GUEST,
            target_ip: Ipv4Addr::new(10, 0, 2, 15),
        };
        let mut out = [0u8; 28];
        assert_eq!(r.emit(&mut out), Ok(28));
        assert_eq!(out[..], reply()[..]);
        assert_eq!(Repr::parse(&Packet::new_checked(&out[..]).unwrap()), Ok(r));
        assert_eq!(r.emit(&mut out[..27]), Err(Error::Truncated));
    }

    #[test]
    fn unsupported_formats() {
        // (offset, value): ptype IPv6, hlen 8, htype 6.
        for (at, v) in [(2, 0x86), (4, 8), (1, 6)] {
            let mut g = request();
            g[at] = v;
            let p = Packet::new_checked(&g[..]).unwrap();
            assert_eq!(Repr::parse(&p), Err(Error::Unsupported), "byte {at} = {v}");
        }
    }

    #[test]
    fn no_panic_on_any_input() {
        fuzz(&[&request(), &reply()], 3000, 64, |b| {
            if let Ok(p) = Packet::new_checked(&*b) {
                if let Ok(r) = Repr::parse(&p) {
                    let mut out = [0u8; 28];
                    r.emit(&mut out).unwrap();
                    assert_eq!(out[..], b[..28]);
                }
            }
        });
    }
}
