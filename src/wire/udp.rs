//! UDP datagrams (RFC 768; RFC 8200 §8.1 for the mandatory IPv6 checksum).
#![forbid(unsafe_code)]

use zerocopy::byteorder::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::checksum::{Checksum, PseudoHeader};
use super::{header, header_mut, ip_proto, Error, Result};

pub const HEADER_LEN: usize = 8;
/// Offset of the checksum field in the header (virtio's `csum_offset`).
pub const CHECKSUM_AT: usize = 6;

impl super::checksum::PartialCsum {
    /// The checksum of a UDP datagram `l4` bytes into the frame.
    pub fn udp(l4: usize) -> Self {
        Self::at(l4, CHECKSUM_AT)
    }
}

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct UdpHeader {
    pub src_port: U16,
    pub dst_port: U16,
    pub len: U16,
    pub checksum: U16,
}

const ZERO: UdpHeader = UdpHeader {
    src_port: U16::ZERO,
    dst_port: U16::ZERO,
    len: U16::ZERO,
    checksum: U16::ZERO,
};

/// A checked view of a UDP datagram; `payload()` ends at the length field.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks 8 <= length field <= buffer length.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let b = buffer.as_ref();
        let h: &UdpHeader = header(b).ok_or(Error::Truncated)?;
        let len = usize::from(h.len.get());
        if len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len > b.len() {
            return Err(Error::Truncated);
        }
        Ok(Packet { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn hdr(&self) -> &UdpHeader {
        header(self.buffer.as_ref()).unwrap_or(&ZERO)
    }

    pub fn src_port(&self) -> u16 {
        self.hdr().src_port.get()
    }
    pub fn dst_port(&self) -> u16 {
        self.hdr().dst_port.get()
    }
    pub fn len(&self) -> u16 {
        self.hdr().len.get()
    }
    pub fn is_empty(&self) -> bool {
        self.payload().is_empty()
    }
    pub fn checksum(&self) -> u16 {
        self.hdr().checksum.get()
    }
    /// Header and payload, without anything past the length field.
    pub fn datagram(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(..usize::from(self.len()))
            .unwrap_or(&[])
    }
    pub fn payload(&self) -> &[u8] {
        self.datagram().get(HEADER_LEN..).unwrap_or(&[])
    }
    /// A zero checksum means "none" over IPv4 and is invalid over IPv6.
    pub fn verify_checksum(&self, pseudo: &PseudoHeader) -> bool {
        match (pseudo, self.checksum()) {
            (PseudoHeader::V4 { .. }, 0) => true,
            (PseudoHeader::V6 { .. }, 0) => false,
            _ => pseudo.verify(ip_proto::UDP, self.datagram()),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn with(&mut self, f: impl FnOnce(&mut UdpHeader)) {
        if let Some(h) = header_mut(self.buffer.as_mut()) {
            f(h)
        }
    }
    pub fn set_src_port(&mut self, v: u16) {
        self.with(|h| h.src_port.set(v))
    }
    pub fn set_dst_port(&mut self, v: u16) {
        self.with(|h| h.dst_port.set(v))
    }
    pub fn set_len(&mut self, v: u16) {
        self.with(|h| h.len.set(v))
    }
    pub fn set_checksum(&mut self, v: u16) {
        self.with(|h| h.checksum.set(v))
    }
    /// Computes the checksum (a computed 0 is sent as 0xffff).
    pub fn fill_checksum(&mut self, pseudo: &PseudoHeader) {
        self.set_checksum(0);
        let c = pseudo.checksum(ip_proto::UDP, self.datagram());
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.len());
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..len)
            .unwrap_or(&mut [])
    }
}

/// A UDP header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl Repr {
    /// Verifies the checksum and rejects destination port 0.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>, pseudo: &PseudoHeader) -> Result<Repr> {
        Repr::parse_with(p, pseudo, Checksum::Full)
    }

    /// [`Repr::parse`], verifying the checksum only if it is `Full`.
    pub fn parse_with<T: AsRef<[u8]>>(
        p: &Packet<T>,
        pseudo: &PseudoHeader,
        csum: Checksum,
    ) -> Result<Repr> {
        if p.dst_port() == 0 {
            return Err(Error::Malformed);
        }
        if csum == Checksum::Full && !p.verify_checksum(pseudo) {
            return Err(Error::Checksum);
        }
        Ok(Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload_len: p.payload().len(),
        })
    }

    /// Header plus payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the header in front of a payload the caller has already
    /// placed at `buf[HEADER_LEN..]`, and checksums both. Returns
    /// `buffer_len()`.
    pub fn emit(&self, buf: &mut [u8], pseudo: &PseudoHeader) -> Result<usize> {
        self.emit_with(buf, pseudo, Checksum::Full)
    }

    /// [`Repr::emit`]; with `Partial` the checksum field gets only the
    /// pseudo-header sum and the payload is not read.
    pub fn emit_with(
        &self,
        buf: &mut [u8],
        pseudo: &PseudoHeader,
        csum: Checksum,
    ) -> Result<usize> {
        let total = self.buffer_len();
        let len = u16::try_from(total).map_err(|_| Error::Malformed)?;
        let dgram = buf.get_mut(..total).ok_or(Error::Truncated)?;
        let h: &mut UdpHeader = header_mut(dgram).ok_or(Error::Truncated)?;
        *h = UdpHeader {
            src_port: self.src_port.into(),
            dst_port: self.dst_port.into(),
            len: len.into(),
            checksum: U16::ZERO,
        };
        let c = match csum {
            Checksum::Full => pseudo.checksum(ip_proto::UDP, dgram),
            Checksum::Partial => pseudo.partial(ip_proto::UDP, total),
        };
        let c = if c == 0 { 0xffff } else { c };
        dgram
            .get_mut(CHECKSUM_AT..CHECKSUM_AT + 2)
            .ok_or(Error::Truncated)?
            .copy_from_slice(&c.to_be_bytes());
        Ok(total)
    }
}

/// Writes a bare header with checksum 0 ("none" for IPv4), as an ICMP
/// error quotes the datagram it is about.
pub fn emit_header(buf: &mut [u8], src_port: u16, dst_port: u16, len: u16) -> Result<usize> {
    let h: &mut UdpHeader = header_mut(buf).ok_or(Error::Truncated)?;
    *h = UdpHeader {
        src_port: src_port.into(),
        dst_port: dst_port.into(),
        len: len.into(),
        checksum: U16::ZERO,
    };
    Ok(HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{fuzz, hex};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4() -> PseudoHeader {
        PseudoHeader::V4 {
            src: Ipv4Addr::new(10, 0, 2, 15),
            dst: Ipv4Addr::new(10, 0, 2, 3),
        }
    }
    fn v6() -> PseudoHeader {
        PseudoHeader::V6 {
            src: "fec0::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap(),
            dst: "fec0::3".parse().unwrap(),
        }
    }

    const QUERY: &str = "beef 0100 0001 0000 0000 0000 076578616d706c6503636f6d00 0001 0001";

    /// DNS query "example.com A" 10.0.2.15:40000 -> 10.0.2.3:53.
    fn dns4() -> Vec<u8> {
        hex(&format!("9c40 0035 0025 bcbf {QUERY}"))
    }
    /// The same query over IPv6.
    fn dns6() -> Vec<u8> {
        hex(&format!("9c40 0035 0025 5390 {QUERY}"))
    }

    #[test]
    fn parse_golden() {
        for (g, ph) in [(dns4(), v4()), (dns6(), v6())] {
            let mut padded = g.clone();
            padded.extend_from_slice(&[0, 0, 0]);
            let p = Packet::new_checked(&padded[..]).unwrap();
            assert_eq!(p.payload(), &hex(QUERY)[..]);
            let r = Repr::parse(&p, &ph).unwrap();
            assert_eq!(
                r,
                Repr {
                    src_port: 40000,
                    dst_port: 53,
                    payload_len: 29
                }
            );
        }
    }

    #[test]
    fn emit_golden() {
        for (g, ph) in [(dns4(), v4()), (dns6(), v6())] {
            let mut out = vec![0u8; 40];
            out[8..37].copy_from_slice(&hex(QUERY));
            let r = Repr {
                src_port: 40000,
                dst_port: 53,
                payload_len: 29,
            };
            assert_eq!(r.emit(&mut out, &ph), Ok(37));
            assert_eq!(out[..37], g[..]);
            assert_eq!(r.emit(&mut out[..36], &ph), Err(Error::Truncated));
        }
    }

    #[test]
    fn partial_checksum_is_the_pseudo_header_sum_and_completes() {
        for (g, ph) in [(dns4(), v4()), (dns6(), v6())] {
            let mut out = vec![0u8; 37];
            out[8..].copy_from_slice(&hex(QUERY));
            let r = Repr {
                src_port: 40000,
                dst_port: 53,
                payload_len: 29,
            };
            assert_eq!(r.emit_with(&mut out, &ph, Checksum::Partial), Ok(37));
            let field = u16::from_be_bytes([out[CHECKSUM_AT], out[CHECKSUM_AT + 1]]);
            assert_eq!(field, ph.partial(ip_proto::UDP, 37));
            let p = Packet::new_checked(&out[..]).unwrap();
            assert_eq!(Repr::parse(&p, &ph), Err(Error::Checksum));
            assert_eq!(Repr::parse_with(&p, &ph, Checksum::Partial), Ok(r));
            let done = crate::wire::checksum::checksum(&out);
            out[CHECKSUM_AT..CHECKSUM_AT + 2].copy_from_slice(&done.to_be_bytes());
            assert_eq!(out, g);
        }
    }

    #[test]
    fn checksum_rules() {
        let mut g = dns4();
        g[20] ^= 1;
        let p = Packet::new_checked(&g[..]).unwrap();
        assert_eq!(Repr::parse(&p, &v4()), Err(Error::Checksum));
        let mut p = Packet::new_checked(&mut g[..]).unwrap();
        p.set_checksum(0);
        assert!(Repr::parse(&p, &v4()).is_ok());
        assert_eq!(Repr::parse(&p, &v6()), Err(Error::Checksum));
        p.fill_checksum(&v6());
        assert!(Repr::parse(&p, &v6()).is_ok());
        p.set_dst_port(0);
        p.fill_checksum(&v6());
        assert_eq!(Repr::parse(&p, &v6()), Err(Error::Malformed));
        p.set_len(7);
        assert_eq!(Packet::new_checked(&g[..]).err(), Some(Error::Malformed));
        assert_eq!(
            Packet::new_checked(&dns4()[..36]).err(),
            Some(Error::Truncated)
        );
    }

    #[test]
    fn no_panic_on_any_input() {
        fuzz(&[&dns4(), &dns6()], 4000, 64, |b| {
            if let Ok(mut p) = Packet::new_checked(&mut *b) {
                let _ = Repr::parse(&p, &v4());
                if let Ok(r) = Repr::parse(&p, &v6()) {
                    assert_eq!(r.payload_len + 8, usize::from(p.len()));
                }
                p.set_len(0xffff);
                let _ = (p.payload().len(), p.payload_mut().len());
                p.fill_checksum(&v4());
            }
        });
    }
}
