//! IPv6 headers (RFC 8200) and a bounded walk over extension headers.
#![forbid(unsafe_code)]

use std::net::Ipv6Addr;

use zerocopy::byteorder::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{header, header_mut, ip_proto, put, Error, Result};

pub const HEADER_LEN: usize = 40;
/// Most extension headers [`walk_extensions`] follows before giving up.
pub const MAX_EXT_HEADERS: usize = 8;
pub const DEFAULT_HOP_LIMIT: u8 = 64;

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Ipv6Header {
    /// Version (4 bits), traffic class (8), flow label (20).
    pub ver_tc_flow: U32,
    pub payload_len: U16,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

const ZERO: Ipv6Header = Ipv6Header {
    ver_tc_flow: U32::ZERO,
    payload_len: U16::ZERO,
    next_header: 0,
    hop_limit: 0,
    src: [0; 16],
    dst: [0; 16],
};

/// A checked view of an IPv6 packet; `payload()` ends at the payload
/// length (Ethernet padding excluded). Jumbograms are not supported.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let b = buffer.as_ref();
        let h: &Ipv6Header = header(b).ok_or(Error::Truncated)?;
        if HEADER_LEN + usize::from(h.payload_len.get()) > b.len() {
            return Err(Error::Truncated);
        }
        Ok(Packet { buffer })
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn hdr(&self) -> &Ipv6Header {
        header(self.buffer.as_ref()).unwrap_or(&ZERO)
    }
    fn version(&self) -> u8 {
        (self.hdr().ver_tc_flow.get() >> 28) as u8
    }
    fn traffic_class(&self) -> u8 {
        (self.hdr().ver_tc_flow.get() >> 20) as u8
    }
    fn flow_label(&self) -> u32 {
        self.hdr().ver_tc_flow.get() & 0x000f_ffff
    }
    pub fn payload_len(&self) -> u16 {
        self.hdr().payload_len.get()
    }
    pub fn next_header(&self) -> u8 {
        self.hdr().next_header
    }
    pub fn hop_limit(&self) -> u8 {
        self.hdr().hop_limit
    }
    pub fn src(&self) -> Ipv6Addr {
        self.hdr().src.into()
    }
    pub fn dst(&self) -> Ipv6Addr {
        self.hdr().dst.into()
    }
    /// Everything after the fixed header, extension headers included.
    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        self.buffer.as_ref().get(HEADER_LEN..end).unwrap_or(&[])
    }
    /// Walks the extension headers of this packet.
    pub fn extensions(&self) -> Result<ExtHeaders> {
        walk_extensions(self.next_header(), self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..end)
            .unwrap_or(&mut [])
    }
}

/// The fields of a fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentInfo {
    /// In bytes.
    pub offset: u16,
    pub more: bool,
    pub ident: u32,
}

/// An 8-byte extension header to emit: what guests put between the IPv6
/// header and the upper layer (airlock itself sends none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtRepr {
    /// A fragment header.
    Fragment { next_header: u8, info: FragmentInfo },
    /// A hop-by-hop or destination-options header holding only a PadN.
    Padding { next_header: u8 },
}

impl ExtRepr {
    pub const LEN: usize = 8;

    /// Writes the header at the start of `buf`; returns [`ExtRepr::LEN`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let mut h = [0u8; Self::LEN];
        match *self {
            ExtRepr::Fragment { next_header, info } => {
                let off_flags = (info.offset & 0xfff8) | u16::from(info.more);
                h[0] = next_header;
                h[2..4].copy_from_slice(&off_flags.to_be_bytes());
                h[4..].copy_from_slice(&info.ident.to_be_bytes());
            }
            // Length 0 (8 bytes); option PadN (1) over the remaining four.
            ExtRepr::Padding { next_header } => h[..4].copy_from_slice(&[next_header, 0, 1, 4]),
        }
        put(buf, &h)?;
        Ok(Self::LEN)
    }
}

/// Where the upper-layer data starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtHeaders {
    /// Protocol of the data at `offset` (for a non-first fragment, the
    /// protocol of the fragmented payload, whose header is elsewhere).
    pub next_header: u8,
    /// Offset of that data within the IPv6 payload.
    pub offset: usize,
    pub fragment: Option<FragmentInfo>,
}

/// Follows hop-by-hop, routing, fragment and destination-options headers
/// (at most [`MAX_EXT_HEADERS`], else `Unsupported`). Hop-by-hop anywhere
/// but first is `Malformed` (RFC 8200 §4.1). Stops after a fragment header
/// with a non-zero offset: what follows is not a header.
pub fn walk_extensions(first: u8, payload: &[u8]) -> Result<ExtHeaders> {
    let mut nh = first;
    let mut offset = 0usize;
    let mut fragment = None;
    for i in 0..=MAX_EXT_HEADERS {
        match nh {
            ip_proto::HOPOPT | ip_proto::IPV6_ROUTE | ip_proto::IPV6_OPTS => {
                if nh == ip_proto::HOPOPT && i != 0 {
                    return Err(Error::Malformed);
                }
                let h = payload.get(offset..offset + 2).ok_or(Error::Truncated)?;
                let (next, len) = (h.first().copied(), h.get(1).copied());
                let len = (usize::from(len.unwrap_or(0)) + 1) * 8;
                if payload.len() < offset + len {
                    return Err(Error::Truncated);
                }
                nh = next.unwrap_or(ip_proto::IPV6_NONXT);
                offset += len;
            }
            ip_proto::IPV6_FRAG => {
                let h = payload.get(offset..offset + 8).ok_or(Error::Truncated)?;
                let b = |i: usize| h.get(i).copied().unwrap_or(0);
                let off_flags = u16::from_be_bytes([b(2), b(3)]);
                let info = FragmentInfo {
                    offset: off_flags & 0xfff8,
                    more: off_flags & 1 != 0,
                    ident: u32::from_be_bytes([b(4), b(5), b(6), b(7)]),
                };
                if fragment.is_some() {
                    return Err(Error::Malformed);
                }
                fragment = Some(info);
                nh = b(0);
                offset += 8;
                if info.offset != 0 {
                    break;
                }
            }
            _ => break,
        }
        if i == MAX_EXT_HEADERS {
            return Err(Error::Unsupported);
        }
    }
    Ok(ExtHeaders {
        next_header: nh,
        offset,
        fragment,
    })
}

/// An IPv6 header, decoded (extension headers are part of the payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub payload_len: u16,
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
}

impl Repr {
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload_len: u16) -> Repr {
        Repr {
            src,
            dst,
            next_header,
            payload_len,
            hop_limit: DEFAULT_HOP_LIMIT,
            traffic_class: 0,
            flow_label: 0,
        }
    }

    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        if p.version() != 6 {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            src: p.src(),
            dst: p.dst(),
            next_header: p.next_header(),
            payload_len: p.payload_len(),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 40-byte header; the payload goes at `HEADER_LEN`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let h: &mut Ipv6Header = header_mut(buf).ok_or(Error::Truncated)?;
        *h = Ipv6Header {
            ver_tc_flow: ((6 << 28)
                | (u32::from(self.traffic_class) << 20)
                | (self.flow_label & 0x000f_ffff))
                .into(),
            payload_len: self.payload_len.into(),
            next_header: self.next_header,
            hop_limit: self.hop_limit,
            src: self.src.octets(),
            dst: self.dst.octets(),
        };
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{fuzz, hex, GUEST6, HOST6};

    /// ICMPv6 echo request guest -> host, plus Ethernet-style padding.
    fn echo() -> Vec<u8> {
        hex(
            "60000000 000c 3a 40 fec0000000000000505400fffe123456 fec00000000000000000000000000002
             800073d9abcd000170696e67 0000",
        )
    }
    /// Hop-by-hop (router alert) -> first fragment (MF) -> UDP.
    fn ext_chain() -> Vec<u8> {
        hex(
            "60000000 0020 00 40 fec0000000000000505400fffe123456 fec00000000000000000000000000002
             2c00050200000100 11000001deadbeef 9c40003500100000 0102030405060708",
        )
    }
    /// Second fragment, offset 1480.
    fn frag2() -> Vec<u8> {
        hex(
            "60000000 0010 2c 40 fec0000000000000505400fffe123456 fec00000000000000000000000000002
             110005c8deadbeef 4142434445464748",
        )
    }

    #[test]
    fn extension_headers_emit_what_the_walk_reads() {
        let info = FragmentInfo {
            offset: 1480,
            more: true,
            ident: 0xdead_beef,
        };
        let mut b = [0u8; 24];
        let hops = [
            ExtRepr::Padding {
                next_header: ip_proto::IPV6_OPTS,
            },
            ExtRepr::Padding {
                next_header: ip_proto::IPV6_FRAG,
            },
            ExtRepr::Fragment {
                next_header: ip_proto::UDP,
                info,
            },
        ];
        for (i, h) in hops.iter().enumerate() {
            assert_eq!(h.emit(&mut b[i * 8..]), Ok(8));
        }
        assert_eq!(&b[..4], &[60, 0, 1, 4]);
        let e = walk_extensions(ip_proto::HOPOPT, &b).unwrap();
        assert_eq!((e.next_header, e.offset), (ip_proto::UDP, 24));
        assert_eq!(e.fragment, Some(info));
        assert_eq!(hops[0].emit(&mut b[..7]), Err(Error::Truncated));
    }

    #[test]
    fn parse_and_emit_echo() {
        let g = echo();
        let p = Packet::new_checked(&g[..]).unwrap();
        assert_eq!(p.payload().len(), 12);
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r, Repr::new(GUEST6, HOST6, ip_proto::ICMPV6, 12));
        assert_eq!(
            p.extensions(),
            Ok(ExtHeaders {
                next_header: ip_proto::ICMPV6,
                offset: 0,
                fragment: None
            })
        );
        let mut out = [0u8; 40];
        assert_eq!(r.emit(&mut out), Ok(40));
        assert_eq!(out[..], g[..40]);
        assert_eq!(r.emit(&mut out[..39]), Err(Error::Truncated));
    }

    #[test]
    fn extension_walk() {
        let g = ext_chain();
        let p = Packet::new_checked(&g[..]).unwrap();
        let e = p.extensions().unwrap();
        assert_eq!(e.next_header, ip_proto::UDP);
        assert_eq!(e.offset, 16);
        assert_eq!(
            e.fragment,
            Some(FragmentInfo {
                offset: 0,
                more: true,
                ident: 0xdead_beef
            })
        );
        assert_eq!(&p.payload()[e.offset..e.offset + 2], &[0x9c, 0x40]);

        let g = frag2();
        let p = Packet::new_checked(&g[..]).unwrap();
        let e = p.extensions().unwrap();
        assert_eq!((e.next_header, e.offset), (ip_proto::UDP, 8));
        assert_eq!(e.fragment.map(|f| (f.offset, f.more)), Some((1480, false)));
    }

    #[test]
    fn extension_walk_rejects() {
        // Hop-by-hop after another header.
        let bad = hex("0000000000000000 0000000000000000");
        assert_eq!(
            walk_extensions(ip_proto::IPV6_OPTS, &bad),
            Err(Error::Malformed)
        );
        // Truncated option header.
        assert_eq!(
            walk_extensions(ip_proto::HOPOPT, &[6, 1, 0, 0]),
            Err(Error::Truncated)
        );
        // A long chain of destination options.
        let chain = [ip_proto::IPV6_OPTS, 0, 0, 0, 0, 0, 0, 0].repeat(12);
        assert_eq!(
            walk_extensions(ip_proto::IPV6_OPTS, &chain),
            Err(Error::Unsupported)
        );
        // Two fragment headers.
        let two = hex("2c00000100000001 1100000100000001");
        assert_eq!(
            walk_extensions(ip_proto::IPV6_FRAG, &two),
            Err(Error::Malformed)
        );
        // Just within the bound.
        let mut ok = [ip_proto::IPV6_OPTS, 0, 0, 0, 0, 0, 0, 0].repeat(7);
        ok.extend_from_slice(&[ip_proto::TCP, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            walk_extensions(ip_proto::IPV6_OPTS, &ok).map(|e| (e.next_header, e.offset)),
            Ok((ip_proto::TCP, 64))
        );
    }

    #[test]
    fn emit_all_fields_and_rejects() {
        let mut g = echo();
        let repr = Repr {
            traffic_class: 0xb8,
            flow_label: 0x12345,
            hop_limit: 255,
            ..Repr::new(HOST6, GUEST6, ip_proto::UDP, 12)
        };
        assert_eq!(repr.emit(&mut g), Ok(HEADER_LEN));
        let p = Packet::new_checked(&g[..]).unwrap();
        assert_eq!(Repr::parse(&p), Ok(repr));
        g[0] = 0x40; // version 4
        let p = Packet::new_checked(&g[..]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::Malformed));
        g[4..6].copy_from_slice(&15u16.to_be_bytes()); // payload past the end
        assert_eq!(Packet::new_checked(&g[..]).err(), Some(Error::Truncated));
        assert_eq!(Packet::new_checked(&g[..39]).err(), Some(Error::Truncated));
    }

    #[test]
    fn no_panic_on_any_input() {
        fuzz(&[&echo(), &ext_chain(), &frag2()], 5000, 120, |b| {
            for nh in [0u8, 43, 44, 60, 6] {
                let _ = walk_extensions(nh, b);
            }
            if let Ok(mut p) = Packet::new_checked(&mut *b) {
                let _ = Repr::parse(&p);
                if let Ok(e) = p.extensions() {
                    assert!(e.offset <= p.payload().len());
                }
                let _ = (p.payload().len(), p.payload_mut().len());
            }
        });
    }
}
