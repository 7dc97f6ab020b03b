//! Ethernet II frames (no 802.1Q tag handling: a VLAN tag shows up as
//! `ethertype::VLAN`).
#![forbid(unsafe_code)]

use zerocopy::byteorder::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{header, header_mut, Error, Mac, Result};

pub const HEADER_LEN: usize = 14;

/// The fixed Ethernet II header.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct EthernetHeader {
    pub dst: Mac,
    pub src: Mac,
    pub ethertype: U16,
}

const ZERO: EthernetHeader = EthernetHeader {
    dst: [0; 6],
    src: [0; 6],
    ethertype: U16::ZERO,
};

/// A checked view of an Ethernet frame.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` after checking it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Frame { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn hdr(&self) -> &EthernetHeader {
        header(self.buffer.as_ref()).unwrap_or(&ZERO)
    }

    pub fn dst(&self) -> Mac {
        self.hdr().dst
    }

    pub fn src(&self) -> Mac {
        self.hdr().src
    }

    pub fn ethertype(&self) -> u16 {
        self.hdr().ethertype.get()
    }

    /// Everything after the header, Ethernet padding included.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or(&mut [])
    }
}

/// Writes an Ethernet header at the start of `buf`; returns `HEADER_LEN`.
pub fn emit_header(buf: &mut [u8], dst: Mac, src: Mac, ethertype: u16) -> Result<usize> {
    let h: &mut EthernetHeader = header_mut(buf).ok_or(Error::Truncated)?;
    h.dst = dst;
    h.src = src;
    h.ethertype.set(ethertype);
    Ok(HEADER_LEN)
}

/// An Ethernet header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub dst: Mac,
    pub src: Mac,
    pub ethertype: u16,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr> {
        Ok(Repr {
            dst: frame.dst(),
            src: frame.src(),
            ethertype: frame.ethertype(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header; the payload follows at `HEADER_LEN`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        emit_header(buf, self.dst, self.src, self.ethertype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethertype;
    use crate::wire::testutil::{fuzz, hex};

    // Broadcast ARP request from a QEMU guest (52:54:00:12:34:56), padded
    // to the 60-byte minimum.
    fn golden() -> Vec<u8> {
        hex("ffffffffffff 525400123456 0806
             0001 0800 06 04 0001 525400123456 0a00020f 000000000000 0a000202
             000000000000000000000000000000000000")
    }

    #[test]
    fn parse_golden() {
        let g = golden();
        let f = Frame::new_checked(&g[..]).unwrap();
        let r = Repr::parse(&f).unwrap();
        assert_eq!(
            r,
            Repr {
                dst: [0xff; 6],
                src: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
                ethertype: ethertype::ARP
            }
        );
        assert_eq!(f.payload().len(), 46);
        assert_eq!(f.payload()[..2], [0, 1]);
    }

    #[test]
    fn emit_golden() {
        let g = golden();
        let r = Repr::parse(&Frame::new_checked(&g[..]).unwrap()).unwrap();
        let mut out = [0u8; 14];
        assert_eq!(r.emit(&mut out), Ok(14));
        assert_eq!(out[..], g[..14]);
        assert_eq!(r.emit(&mut out[..13]), Err(Error::Truncated));
    }

    #[test]
    fn payload_mut_starts_past_the_header() {
        let mut g = golden();
        let head = g[..14].to_vec();
        let mut f = Frame::new_checked(&mut g[..]).unwrap();
        f.payload_mut()[0] = 0xaa;
        assert_eq!((&g[..14], g[14]), (&head[..], 0xaa));
    }

    #[test]
    fn no_panic_on_any_input() {
        fuzz(&[&golden()], 3000, 100, |b| {
            if let Ok(f) = Frame::new_checked(&mut *b) {
                let _ = Repr::parse(&f);
                let _ = f.payload();
            } else {
                assert!(b.len() < HEADER_LEN);
            }
        });
    }
}
