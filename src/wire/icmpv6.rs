//! ICMPv6 (RFC 4443): the common view, echo and error messages. Neighbour
//! discovery messages (types 133-137) are decoded by [`super::ndp`].
#![forbid(unsafe_code)]

use std::net::Ipv6Addr;

use zerocopy::byteorder::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::checksum::PseudoHeader;
use super::{header, header_mut, ip_proto, put, Error, Result};

/// Type, code, checksum and the first 4-byte word of the body.
pub const HEADER_LEN: usize = 8;

pub mod msg_type {
    pub const DST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const REDIRECT: u8 = 137;
}

/// Destination-unreachable codes.
pub mod unreachable {
    pub const NO_ROUTE: u8 = 0;
    pub const ADMIN_PROHIBITED: u8 = 1;
    pub const ADDRESS: u8 = 3;
    pub const PORT: u8 = 4;
}

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Icmpv6Header {
    pub msg_type: u8,
    pub code: u8,
    pub checksum: U16,
    /// Echo: identifier and sequence; too-big: MTU; others: flags/reserved.
    pub word: U32,
}

const ZERO: Icmpv6Header = Icmpv6Header {
    msg_type: 0,
    code: 0,
    checksum: U16::ZERO,
    word: U32::ZERO,
};

/// A checked view of an ICMPv6 message (the whole upper-layer payload).
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
    fn hdr(&self) -> &Icmpv6Header {
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
    /// The 32-bit word after the checksum.
    pub fn word(&self) -> u32 {
        self.hdr().word.get()
    }
    fn echo_ident(&self) -> u16 {
        (self.word() >> 16) as u16
    }
    fn echo_seq_no(&self) -> u16 {
        self.word() as u16
    }
    pub fn mtu(&self) -> u32 {
        self.word()
    }
    /// Everything after the first 8 bytes.
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }
    /// The whole message.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        PseudoHeader::V6 { src, dst }.verify(ip_proto::ICMPV6, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn with(&mut self, f: impl FnOnce(&mut Icmpv6Header)) {
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
    pub fn set_word(&mut self, v: u32) {
        self.with(|h| h.word.set(v))
    }
    pub fn set_echo_ident(&mut self, v: u16) {
        let w = (self.word() & 0xffff) | (u32::from(v) << 16);
        self.set_word(w)
    }
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let c = PseudoHeader::V6 { src, dst }.checksum(ip_proto::ICMPV6, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// Echo and error messages, decoded.
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
    DstUnreachable {
        code: u8,
        quoted: &'a [u8],
    },
    PacketTooBig {
        mtu: u32,
        quoted: &'a [u8],
    },
    TimeExceeded {
        code: u8,
        quoted: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// Verifies the checksum; NDP and other types are `Unsupported`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        p: &Packet<&'a T>,
        src: Ipv6Addr,
        dst: Ipv6Addr,
    ) -> Result<Repr<'a>> {
        if !p.verify_checksum(src, dst) {
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
            (msg_type::DST_UNREACHABLE, code) => Ok(Repr::DstUnreachable { code, quoted: data }),
            (msg_type::PACKET_TOO_BIG, 0) => Ok(Repr::PacketTooBig {
                mtu: p.mtu(),
                quoted: data,
            }),
            (msg_type::TIME_EXCEEDED, code) => Ok(Repr::TimeExceeded { code, quoted: data }),
            _ => Err(Error::Unsupported),
        }
    }

    fn parts(&self) -> (u8, u8, u32, &'a [u8]) {
        match *self {
            Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => (
                msg_type::ECHO_REQUEST,
                0,
                (u32::from(ident) << 16) | u32::from(seq_no),
                data,
            ),
            Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => (
                msg_type::ECHO_REPLY,
                0,
                (u32::from(ident) << 16) | u32::from(seq_no),
                data,
            ),
            Repr::DstUnreachable { code, quoted } => (msg_type::DST_UNREACHABLE, code, 0, quoted),
            Repr::PacketTooBig { mtu, quoted } => (msg_type::PACKET_TOO_BIG, 0, mtu, quoted),
            Repr::TimeExceeded { code, quoted } => (msg_type::TIME_EXCEEDED, code, 0, quoted),
        }
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.parts().3.len()
    }

    /// Writes the message with its checksum; returns `buffer_len()`.
    /// Callers quoting a datagram trim it so the error fits the minimum
    /// MTU (RFC 4443 §2.4(c)).
    pub fn emit(&self, buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) -> Result<usize> {
        let (t, code, word, data) = self.parts();
        let msg = buf.get_mut(..self.buffer_len()).ok_or(Error::Truncated)?;
        let h: &mut Icmpv6Header = header_mut(msg).ok_or(Error::Truncated)?;
        *h = Icmpv6Header {
            msg_type: t,
            code,
            checksum: U16::ZERO,
            word: word.into(),
        };
        put(msg.get_mut(HEADER_LEN..).ok_or(Error::Truncated)?, data)?;
        let mut p = Packet { buffer: msg };
        p.fill_checksum(src, dst);
        Ok(self.buffer_len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{fuzz, hex, GUEST6, HOST6};

    fn echo() -> Vec<u8> {
        hex("8000 73d9 abcd 0001 70696e67")
    }

    #[test]
    fn echo_golden() {
        let g = echo();
        let p = Packet::new_checked(&g[..]).unwrap();
        let r = Repr::parse(&p, GUEST6, HOST6).unwrap();
        let want = Repr::EchoRequest {
            ident: 0xabcd,
            seq_no: 1,
            data: b"ping",
        };
        assert_eq!(r, want);
        let mut out = [0u8; 12];
        assert_eq!(want.emit(&mut out, GUEST6, HOST6), Ok(12));
        assert_eq!(out[..], g[..]);
        assert_eq!(
            want.emit(&mut out[..11], GUEST6, HOST6),
            Err(Error::Truncated)
        );
        // Another destination: checksum fails. (Swapping source and
        // destination would not: the sum is commutative.)
        let other: Ipv6Addr = "fec0::3".parse().unwrap();
        assert_eq!(Repr::parse(&p, GUEST6, other), Err(Error::Checksum));
    }

    #[test]
    fn reply_and_errors_round_trip() {
        let quoted = hex("60000000000c3a40");
        for r in [
            Repr::EchoReply {
                ident: 7,
                seq_no: 9,
                data: b"pong",
            },
            Repr::DstUnreachable {
                code: unreachable::PORT,
                quoted: &quoted,
            },
            Repr::PacketTooBig {
                mtu: 1280,
                quoted: &quoted,
            },
            Repr::TimeExceeded {
                code: 0,
                quoted: &quoted,
            },
        ] {
            let mut out = [0u8; 64];
            let n = r.emit(&mut out, HOST6, GUEST6).unwrap();
            let p = Packet::new_checked(&out[..n]).unwrap();
            assert!(p.verify_checksum(HOST6, GUEST6));
            assert_eq!(Repr::parse(&p, HOST6, GUEST6), Ok(r));
        }
    }

    #[test]
    fn setters_and_unsupported() {
        let mut g = echo();
        let mut p = Packet::new_checked(&mut g[..]).unwrap();
        p.set_msg_type(msg_type::ECHO_REPLY);
        p.set_echo_ident(0x1111);
        p.set_word(0x1111_2222);
        p.fill_checksum(HOST6, GUEST6);
        let p = Packet::new_checked(&g[..]).unwrap();
        assert_eq!(
            Repr::parse(&p, HOST6, GUEST6),
            Ok(Repr::EchoReply {
                ident: 0x1111,
                seq_no: 0x2222,
                data: b"ping"
            })
        );
        let mut g = echo();
        let mut p = Packet::new_checked(&mut g[..]).unwrap();
        p.set_msg_type(msg_type::ROUTER_SOLICIT);
        p.set_code(0);
        p.fill_checksum(GUEST6, HOST6);
        let p = Packet::new_checked(&g[..]).unwrap();
        assert_eq!(Repr::parse(&p, GUEST6, HOST6), Err(Error::Unsupported));
        assert_eq!(Packet::new_checked(&g[..7]).err(), Some(Error::Truncated));
    }

    #[test]
    fn no_panic_on_any_input() {
        fuzz(&[&echo()], 4000, 80, |b| {
            if let Ok(p) = Packet::new_checked(&*b) {
                if let Ok(r) = Repr::parse(&p, GUEST6, HOST6) {
                    let mut out = [0u8; 96];
                    assert_eq!(r.emit(&mut out, GUEST6, HOST6), Ok(b.len()));
                    assert_eq!(&out[..b.len()], &b[..]);
                }
            }
        });
    }
}
