//! ICMPv4 (RFC 792): echo, destination unreachable, time exceeded.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use zerocopy::byteorder::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::checksum;
use super::{header, header_mut, ipv4, put, Error, Result};

pub const HEADER_LEN: usize = 8;

/// Message types.
pub mod msg_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
}

/// Destination-unreachable codes.
pub mod unreachable {
    pub const NET: u8 = 0;
    pub const HOST: u8 = 1;
    pub const PROTOCOL: u8 = 2;
    pub const PORT: u8 = 3;
    pub const FRAG_NEEDED: u8 = 4;
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// Type, code, checksum and the 4-byte "rest of header".
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Icmpv4Header {
    pub msg_type: u8,
    pub code: u8,
    pub checksum: U16,
    /// Echo: identifier; unreachable/frag-needed: unused.
    pub rest_hi: U16,
    /// Echo: sequence number; frag-needed: next-hop MTU.
    pub rest_lo: U16,
}

const ZERO: Icmpv4Header = Icmpv4Header {
    msg_type: 0,
    code: 0,
    checksum: U16::ZERO,
    rest_hi: U16::ZERO,
    rest_lo: U16::ZERO,
};

/// A checked view of an ICMPv4 message (the whole IPv4 payload).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Packet { buffer })
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn hdr(&self) -> &Icmpv4Header {
        header(self.buffer.as_ref()).unwrap_or(&ZERO)
    }
    pub fn msg_type(&self) -> u8 {
        self.hdr().msg_type
    }
    pub fn code(&self) -> u8 {
        self.hdr().code
    }
    pub fn checksum(&self) -> u16 {
        self.hdr().checksum.get()
    }
    fn echo_ident(&self) -> u16 {
        self.hdr().rest_hi.get()
    }
    fn echo_seq_no(&self) -> u16 {
        self.hdr().rest_lo.get()
    }
    pub fn next_hop_mtu(&self) -> u16 {
        self.hdr().rest_lo.get()
    }
    /// Echo data, or the quoted datagram of an error message.
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(checksum::sum(self.buffer.as_ref()))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn with(&mut self, f: impl FnOnce(&mut Icmpv4Header)) {
        if let Some(h) = header_mut(self.buffer.as_mut()) {
            f(h)
        }
    }
    pub fn set_msg_type(&mut self, v: u8) {
        self.with(|h| h.msg_type = v)
    }
    pub fn set_code(&mut self, v: u8) {
        self.with(|h| h.code = v)
    }
    pub fn set_checksum(&mut self, v: u16) {
        self.with(|h| h.checksum.set(v))
    }
    pub fn set_echo_ident(&mut self, v: u16) {
        self.with(|h| h.rest_hi.set(v))
    }
    /// The four bytes after the checksum, whatever the message type.
    pub fn set_rest_of_header(&mut self, v: u32) {
        self.with(|h| {
            h.rest_hi.set((v >> 16) as u16);
            h.rest_lo.set(v as u16);
        })
    }
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// An ICMPv4 message, decoded. Data and quoted datagrams borrow the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr<'a> {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    /// `next_hop_mtu` is meaningful for code `FRAG_NEEDED` (RFC 1191).
    DstUnreachable {
        code: u8,
        next_hop_mtu: u16,
        quoted: &'a [u8],
    },
    TimeExceeded {
        code: u8,
        quoted: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// Verifies the checksum; other message types are `Unsupported`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<Repr<'a>> {
        if !p.verify_checksum() {
            return Err(Error::Checksum);
        }
        let data = (*p.buffer).as_ref().get(HEADER_LEN..).unwrap_or(&[]);
        match (p.msg_type(), p.code()) {
            (msg_type::ECHO_REQUEST, 0) => Ok(Repr::EchoRequest {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
                data,
            }),
            (msg_type::ECHO_REPLY, 0) => Ok(Repr::EchoReply {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
                data,
            }),
            (msg_type::DST_UNREACHABLE, code) => Ok(Repr::DstUnreachable {
                code,
                next_hop_mtu: p.next_hop_mtu(),
                quoted: data,
            }),
            (msg_type::TIME_EXCEEDED, code) => Ok(Repr::TimeExceeded { code, quoted: data }),
            _ => Err(Error::Unsupported),
        }
    }

    fn parts(&self) -> (u8, u8, u16, u16, &'a [u8]) {
        match *self {
            Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => (msg_type::ECHO_REQUEST, 0, ident, seq_no, data),
            Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => (msg_type::ECHO_REPLY, 0, ident, seq_no, data),
            Repr::DstUnreachable {
                code,
                next_hop_mtu,
                quoted,
            } => (msg_type::DST_UNREACHABLE, code, 0, next_hop_mtu, quoted),
            Repr::TimeExceeded { code, quoted } => (msg_type::TIME_EXCEEDED, code, 0, 0, quoted),
        }
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.parts().4.len()
    }

    /// Writes header, data and checksum; returns `buffer_len()`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let (t, code, hi, lo, data) = self.parts();
        let msg = buf.get_mut(..self.buffer_len()).ok_or(Error::Truncated)?;
        let h: &mut Icmpv4Header = header_mut(msg).ok_or(Error::Truncated)?;
        *h = Icmpv4Header {
            msg_type: t,
            code,
            checksum: U16::ZERO,
            rest_hi: hi.into(),
            rest_lo: lo.into(),
        };
        put(msg.get_mut(HEADER_LEN..).ok_or(Error::Truncated)?, data)?;
        let c = checksum::checksum(msg);
        put(msg.get_mut(2..).ok_or(Error::Truncated)?, &c.to_be_bytes())?;
        Ok(msg.len())
    }
}

/// The start of the datagram an ICMP error quotes: its IPv4 header and
/// whatever part of its payload fits (at least 8 bytes per RFC 792, so the
/// ports of TCP/UDP). Parsed leniently: the quote is usually cut short, so
/// the total length is not required to fit and the checksum is not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    /// The quoted IPv4 header, options included.
    pub header: &'a [u8],
    /// The quoted upper-layer bytes (possibly truncated).
    pub payload: &'a [u8],
}

impl<'a> Quoted<'a> {
    pub fn parse(quoted: &'a [u8]) -> Result<Quoted<'a>> {
        let h: &ipv4::Ipv4Header = header(quoted).ok_or(Error::Truncated)?;
        if h.version_ihl >> 4 != 4 {
            return Err(Error::Malformed);
        }
        let hl = usize::from(h.version_ihl & 0x0f) * 4;
        if hl < ipv4::HEADER_LEN {
            return Err(Error::Malformed);
        }
        let end = usize::from(h.total_len.get()).min(quoted.len());
        Ok(Quoted {
            src: h.src.into(),
            dst: h.dst.into(),
            protocol: h.protocol,
            header: quoted.get(..hl).ok_or(Error::Truncated)?,
            payload: quoted.get(hl..end).unwrap_or(&[]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip_proto;
    use crate::wire::testutil::{fuzz, hex};

    fn echo_request() -> Vec<u8> {
        hex("0800 5435 1234 0001 6162636465666768")
    }
    fn echo_reply() -> Vec<u8> {
        hex("0000 5c35 1234 0001 6162636465666768")
    }
    /// IPv4 header and first 8 bytes of a UDP DNS query 10.0.2.15 ->
    /// 10.0.2.3.
    const QUOTE: &str = "4500003d000140004011229e0a00020f0a000203 9c4000350025bcbf";
    fn port_unreachable() -> Vec<u8> {
        hex(&format!("0303 a3a2 00000000 {QUOTE}"))
    }
    fn frag_needed() -> Vec<u8> {
        hex(&format!("0304 9dc5 000005dc {QUOTE}"))
    }
    fn ttl_exceeded() -> Vec<u8> {
        hex(&format!("0b00 9ba5 00000000 {QUOTE}"))
    }

    #[test]
    fn echo_round_trip() {
        let g = echo_request();
        let p = Packet::new_checked(&g[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data: b"abcdefgh"
            }
        );
        let reply = Repr::EchoReply {
            ident: 0x1234,
            seq_no: 1,
            data: b"abcdefgh",
        };
        let mut out = [0u8; 16];
        assert_eq!(reply.emit(&mut out), Ok(16));
        assert_eq!(out[..], echo_reply()[..]);
        assert_eq!(reply.emit(&mut out[..15]), Err(Error::Truncated));

        // In place: turn the request into the reply with an RFC 1624 update.
        let mut g = echo_request();
        let mut p = Packet::new_checked(&mut g[..]).unwrap();
        let c = checksum::update16(p.checksum(), 0x0800, 0x0000);
        p.set_msg_type(msg_type::ECHO_REPLY);
        p.set_checksum(c);
        assert_eq!(g, echo_reply());
    }

    #[test]
    fn errors_with_quotes() {
        let q = hex(QUOTE);
        for (g, want) in [
            (
                port_unreachable(),
                Repr::DstUnreachable {
                    code: unreachable::PORT,
                    next_hop_mtu: 0,
                    quoted: &q,
                },
            ),
            (
                frag_needed(),
                Repr::DstUnreachable {
                    code: unreachable::FRAG_NEEDED,
                    next_hop_mtu: 1500,
                    quoted: &q,
                },
            ),
            (
                ttl_exceeded(),
                Repr::TimeExceeded {
                    code: 0,
                    quoted: &q,
                },
            ),
        ] {
            let p = Packet::new_checked(&g[..]).unwrap();
            assert_eq!(Repr::parse(&p), Ok(want));
            let mut out = vec![0u8; want.buffer_len()];
            want.emit(&mut out).unwrap();
            assert_eq!(out, g);
        }
        let quoted = Quoted::parse(&q).unwrap();
        assert_eq!(quoted.src, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(quoted.dst, Ipv4Addr::new(10, 0, 2, 3));
        assert_eq!(quoted.protocol, ip_proto::UDP);
        assert_eq!(quoted.header.len(), 20);
        assert_eq!(quoted.payload, &hex("9c4000350025bcbf")[..]);
    }

    #[test]
    fn rejects() {
        let mut g = echo_request();
        g[9] ^= 0xff;
        let p = Packet::new_checked(&g[..]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::Checksum));
        let mut g = echo_request();
        let mut p = Packet::new_checked(&mut g[..]).unwrap();
        p.set_msg_type(13); // timestamp
        p.fill_checksum();
        let p = Packet::new_checked(&g[..]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::Unsupported));
        assert_eq!(Packet::new_checked(&g[..7]).err(), Some(Error::Truncated));
        assert_eq!(Quoted::parse(&hex("45000000")), Err(Error::Truncated));
        assert_eq!(Quoted::parse(&[0x65; 20]), Err(Error::Malformed));
    }

    #[test]
    fn no_panic_on_any_input() {
        let goldens = [
            echo_request(),
            echo_reply(),
            port_unreachable(),
            frag_needed(),
            ttl_exceeded(),
        ];
        let refs: Vec<&[u8]> = goldens.iter().map(|g| &g[..]).collect();
        fuzz(&refs, 4000, 80, |b| {
            let _ = Quoted::parse(b);
            if let Ok(p) = Packet::new_checked(&*b) {
                if let Ok(r) = Repr::parse(&p) {
                    let mut out = [0u8; 96];
                    assert_eq!(r.emit(&mut out), Ok(b.len()));
                    assert_eq!(&out[..b.len()], &b[..]);
                }
            }
        });
    }
}
