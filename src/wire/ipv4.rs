//! IPv4 headers (RFC 791), options carried opaquely.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use zerocopy::byteorder::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::checksum;
use super::{header, header_mut, Error, Result};

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Default TTL for packets airlock originates.
pub const DEFAULT_TTL: u8 = 64;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// The fixed 20-byte IPv4 header.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Ipv4Header {
    pub version_ihl: u8,
    pub tos: u8,
    pub total_len: U16,
    pub ident: U16,
    pub flags_frag: U16,
    pub ttl: u8,
    pub protocol: u8,
    pub checksum: U16,
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

const ZERO: Ipv4Header = Ipv4Header {
    version_ihl: 0,
    tos: 0,
    total_len: U16::ZERO,
    ident: U16::ZERO,
    flags_frag: U16::ZERO,
    ttl: 0,
    protocol: 0,
    checksum: U16::ZERO,
    src: [0; 4],
    dst: [0; 4],
};

/// A checked view of an IPv4 packet. The buffer may be longer than the
/// packet (Ethernet padding): `payload()` ends at the total length.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks IHL (>= 5, header within the buffer) and total length
    /// (>= header length, within the buffer). Does not check the version or
    /// checksum: [`Repr::parse`] does.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let b = buffer.as_ref();
        let h: &Ipv4Header = header(b).ok_or(Error::Truncated)?;
        let hl = usize::from(h.version_ihl & 0x0f) * 4;
        let tl = usize::from(h.total_len.get());
        if hl < HEADER_LEN || tl < hl {
            return Err(Error::Malformed);
        }
        if hl > b.len() || tl > b.len() {
            return Err(Error::Truncated);
        }
        Ok(Packet { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn hdr(&self) -> &Ipv4Header {
        header(self.buffer.as_ref()).unwrap_or(&ZERO)
    }

    fn version(&self) -> u8 {
        self.hdr().version_ihl >> 4
    }
    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.hdr().version_ihl & 0x0f) * 4
    }
    fn tos(&self) -> u8 {
        self.hdr().tos
    }
    pub fn dscp(&self) -> u8 {
        self.hdr().tos >> 2
    }
    pub fn ecn(&self) -> u8 {
        self.hdr().tos & 3
    }
    pub fn total_len(&self) -> u16 {
        self.hdr().total_len.get()
    }
    pub fn ident(&self) -> u16 {
        self.hdr().ident.get()
    }
    fn dont_frag(&self) -> bool {
        self.hdr().flags_frag.get() & FLAG_DF != 0
    }
    pub fn more_frags(&self) -> bool {
        self.hdr().flags_frag.get() & FLAG_MF != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.hdr().flags_frag.get() & FRAG_OFFSET_MASK) << 3
    }
    /// True for any fragment (first, middle or last).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }
    pub fn ttl(&self) -> u8 {
        self.hdr().ttl
    }
    pub fn protocol(&self) -> u8 {
        self.hdr().protocol
    }
    pub fn checksum(&self) -> u16 {
        self.hdr().checksum.get()
    }
    pub fn src(&self) -> Ipv4Addr {
        self.hdr().src.into()
    }
    pub fn dst(&self) -> Ipv4Addr {
        self.hdr().dst.into()
    }
    /// The whole header, options included.
    fn header_bytes(&self) -> &[u8] {
        self.buffer.as_ref().get(..self.header_len()).unwrap_or(&[])
    }
    /// Raw option bytes (may be empty).
    pub fn options(&self) -> &[u8] {
        self.header_bytes().get(HEADER_LEN..).unwrap_or(&[])
    }
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(checksum::sum(self.header_bytes()))
    }
    /// The payload, bounded by the total length (not by the buffer).
    pub fn payload(&self) -> &[u8] {
        let (hl, tl) = (self.header_len(), usize::from(self.total_len()));
        self.buffer.as_ref().get(hl..tl).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn with(&mut self, f: impl FnOnce(&mut Ipv4Header)) {
        if let Some(h) = header_mut(self.buffer.as_mut()) {
            f(h)
        }
    }
    /// Sets IHL from a length in bytes (a multiple of 4, 20..=60).
    pub fn set_header_len(&mut self, len: usize) {
        let ihl = ((len / 4) & 0x0f) as u8;
        self.with(|h| h.version_ihl = (h.version_ihl & 0xf0) | ihl)
    }
    pub fn set_checksum(&mut self, v: u16) {
        self.with(|h| h.checksum.set(v))
    }
    /// Recomputes the header checksum (options included).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header_bytes());
        self.set_checksum(c);
    }
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..hl)
            .unwrap_or(&mut [])
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len(), usize::from(self.total_len()));
        self.buffer.as_mut().get_mut(hl..tl).unwrap_or(&mut [])
    }
}

/// An IPv4 header, decoded (options dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub payload_len: u16,
    pub ttl: u8,
    pub tos: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// In bytes.
    pub frag_offset: u16,
}

impl Repr {
    /// A plain unfragmented header with DF set, as airlock sends.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload_len: u16) -> Repr {
        Repr {
            src,
            dst,
            protocol,
            payload_len,
            ttl: DEFAULT_TTL,
            tos: 0,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
    }

    /// Checks the version and header checksum; fragments are returned as
    /// such (the caller decides what to do with them).
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        if p.version() != 4 {
            return Err(Error::Malformed);
        }
        if !p.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Repr {
            src: p.src(),
            dst: p.dst(),
            protocol: p.protocol(),
            payload_len: p.payload().len() as u16,
            ttl: p.ttl(),
            tos: p.tos(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            more_frags: p.more_frags(),
            frag_offset: p.frag_offset(),
        })
    }

    /// Length of the header `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with its checksum; the payload goes at
    /// `HEADER_LEN`. Fails with `Malformed` if the total length would
    /// exceed 65535.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let total = self
            .payload_len
            .checked_add(HEADER_LEN as u16)
            .ok_or(Error::Malformed)?;
        let h: &mut Ipv4Header = header_mut(buf).ok_or(Error::Truncated)?;
        let mut ff = (self.frag_offset >> 3) & FRAG_OFFSET_MASK;
        if self.dont_frag {
            ff |= FLAG_DF;
        }
        if self.more_frags {
            ff |= FLAG_MF;
        }
        *h = Ipv4Header {
            version_ihl: 0x45,
            tos: self.tos,
            total_len: total.into(),
            ident: self.ident.into(),
            flags_frag: ff.into(),
            ttl: self.ttl,
            protocol: self.protocol,
            checksum: U16::ZERO,
            src: self.src.octets(),
            dst: self.dst.octets(),
        };
        let c = checksum::checksum(h.as_bytes());
        h.checksum.set(c);
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip_proto;
    use crate::wire::testutil::{fuzz, hex};

    const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
    const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

    /// ICMP echo request 10.0.2.15 -> 10.0.2.2 plus 6 bytes of Ethernet
    /// padding; both checksums computed independently.
    fn ping() -> Vec<u8> {
        hex("4500 0024 abcd 4000 4001 76fb 0a00020f 0a000202
             0800 5435 1234 0001 6162636465666768
             000000000000")
    }

    /// IGMP-style packet with a Router Alert option (IHL 6).
    fn with_options() -> Vec<u8> {
        hex("46c0 0020 0000 4000 0102 f807 0a00020f e0000001 94040000
             1600 09fe e0000001")
    }

    /// Middle fragment: MF set, offset 1480.
    fn fragment() -> Vec<u8> {
        hex("4500 001c abce 20b9 4011 9639 0a00020f 0a000202 0102030405060708")
    }

    #[test]
    fn parse_ping_ignores_padding() {
        let g = ping();
        let p = Packet::new_checked(&g[..]).unwrap();
        assert_eq!(p.payload().len(), 16);
        assert_eq!(&p.payload()[..2], &[8, 0]);
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Repr {
                ident: 0xabcd,
                ..Repr::new(GUEST, HOST, ip_proto::ICMP, 16)
            }
        );
        let mut out = [0u8; 20];
        assert_eq!(r.emit(&mut out), Ok(20));
        assert_eq!(out[..], g[..20]);
    }

    #[test]
    fn parse_options() {
        let g = with_options();
        let p = Packet::new_checked(&g[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 4, 0, 0]);
        assert_eq!(p.dscp(), 0x30);
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.protocol, 2);
        assert_eq!(r.ttl, 1);
        assert_eq!(r.tos, 0xc0);
        assert_eq!(r.payload_len, 8);
        assert_eq!(r.dst, Ipv4Addr::new(224, 0, 0, 1));
    }

    #[test]
    fn fragment_fields() {
        let g = fragment();
        let p = Packet::new_checked(&g[..]).unwrap();
        assert!(p.more_frags() && !p.dont_frag() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        let r = Repr::parse(&p).unwrap();
        assert_eq!((r.ident, r.more_frags, r.frag_offset), (0xabce, true, 1480));
        let mut out = [0u8; 20];
        r.emit(&mut out).unwrap();
        assert_eq!(out[..], g[..20]);
    }

    #[test]
    fn fill_checksum_covers_the_header() {
        let mut g = ping();
        g[8] = 1; // TTL
        let mut p = Packet::new_checked(&mut g[..]).unwrap();
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.ttl(), 1);
    }

    #[test]
    fn rejects_bad_lengths_and_checksum() {
        let mut g = ping();
        assert_eq!(Packet::new_checked(&g[..19]).err(), Some(Error::Truncated));
        assert_eq!(Packet::new_checked(&g[..35]).err(), Some(Error::Truncated));
        g[0] = 0x44; // IHL 4
        assert_eq!(Packet::new_checked(&g[..]).err(), Some(Error::Malformed));
        g[0] = 0x4f; // IHL 15 = 60 bytes > total length 36
        assert_eq!(Packet::new_checked(&g[..]).err(), Some(Error::Malformed));
        let mut g = ping();
        g[2..4].copy_from_slice(&[0, 19]);
        assert_eq!(Packet::new_checked(&g[..]).err(), Some(Error::Malformed));
        let mut g = ping();
        g[0] = 0x65;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&g[..]).unwrap()),
            Err(Error::Malformed)
        );
        let mut g = ping();
        g[8] = 0x3f;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&g[..]).unwrap()),
            Err(Error::Checksum)
        );
        let big = Repr::new(GUEST, HOST, 6, 65520);
        assert_eq!(big.emit(&mut [0u8; 20]), Err(Error::Malformed));
        assert_eq!(
            Repr::new(GUEST, HOST, 6, 0).emit(&mut [0u8; 19]),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn no_panic_on_any_input() {
        fuzz(&[&ping(), &with_options(), &fragment()], 5000, 80, |b| {
            if let Ok(mut p) = Packet::new_checked(&mut *b) {
                assert!(p.payload().len() + p.header_len() <= usize::from(p.total_len()));
                if let Ok(r) = Repr::parse(&p) {
                    assert_eq!(usize::from(r.payload_len), p.payload().len());
                }
                // Setters that break the invariants still cannot panic.
                p.set_header_len(60);
                let _ = (p.options().len(), p.payload().len(), p.payload_mut().len());
                p.fill_checksum();
            }
        });
    }
}
