//! TCP segments (RFC 9293) with MSS, window scale, SACK and timestamp
//! options (RFC 7323, RFC 2018).
//!
//! The data path keeps a prebuilt header per connection and rewrites
//! seq/ack/window/flags in place through [`Packet`]'s setters, then fills
//! the checksum, possibly from a payload sum computed while copying
//! ([`Packet::fill_checksum_with`]).
#![forbid(unsafe_code)]

use zerocopy::byteorder::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::checksum::{Checksum, PseudoHeader};
use super::{header, header_mut, ip_proto, put, Error, Result};

/// Header length without options.
pub const HEADER_LEN: usize = 20;
/// Longest header: data offset 15.
pub const MAX_HEADER_LEN: usize = 60;
/// Most option bytes a header can carry.
pub const MAX_OPTIONS_LEN: usize = MAX_HEADER_LEN - HEADER_LEN;
/// Offset of the checksum field in the header (virtio's `csum_offset`).
pub const CHECKSUM_AT: usize = 16;

impl super::checksum::PartialCsum {
    /// The checksum of a TCP segment `l4` bytes into the frame.
    pub fn tcp(l4: usize) -> Self {
        Self::at(l4, CHECKSUM_AT)
    }
}

/// Flag bits of the low 9 bits of the offset/flags word.
pub mod flags {
    pub const FIN: u16 = 0x001;
    pub const SYN: u16 = 0x002;
    pub const RST: u16 = 0x004;
    pub const PSH: u16 = 0x008;
    pub const ACK: u16 = 0x010;
    pub const URG: u16 = 0x020;
    pub const ECE: u16 = 0x040;
    pub const CWR: u16 = 0x080;
    /// Formerly NS (RFC 3540), now AE (accurate ECN).
    pub const AE: u16 = 0x100;
    pub const MASK: u16 = 0x1ff;
}

/// Option kinds.
pub mod kind {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct TcpHeader {
    pub src_port: U16,
    pub dst_port: U16,
    pub seq: U32,
    pub ack: U32,
    /// Data offset (4 bits), reserved (3 bits), flags (9 bits).
    pub offset_flags: U16,
    pub window: U16,
    pub checksum: U16,
    pub urgent: U16,
}

const ZERO: TcpHeader = TcpHeader {
    src_port: U16::ZERO,
    dst_port: U16::ZERO,
    seq: U32::ZERO,
    ack: U32::ZERO,
    offset_flags: U16::ZERO,
    window: U16::ZERO,
    checksum: U16::ZERO,
    urgent: U16::ZERO,
};

/// A checked view of a TCP segment. The buffer must be exactly the IP
/// payload: everything after the header is payload.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks data offset >= 5 and header within the buffer.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let b = buffer.as_ref();
        let h: &TcpHeader = header(b).ok_or(Error::Truncated)?;
        let hl = usize::from(h.offset_flags.get() >> 12) * 4;
        if hl < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if hl > b.len() {
            return Err(Error::Truncated);
        }
        Ok(Packet { buffer })
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn hdr(&self) -> &TcpHeader {
        header(self.buffer.as_ref()).unwrap_or(&ZERO)
    }
    pub fn src_port(&self) -> u16 {
        self.hdr().src_port.get()
    }
    pub fn dst_port(&self) -> u16 {
        self.hdr().dst_port.get()
    }
    fn seq_number(&self) -> u32 {
        self.hdr().seq.get()
    }
    fn ack_number(&self) -> u32 {
        self.hdr().ack.get()
    }
    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.hdr().offset_flags.get() >> 12) * 4
    }
    pub fn flags(&self) -> u16 {
        self.hdr().offset_flags.get() & flags::MASK
    }
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }
    fn window_len(&self) -> u16 {
        self.hdr().window.get()
    }
    pub fn checksum(&self) -> u16 {
        self.hdr().checksum.get()
    }
    fn urgent_at(&self) -> u16 {
        self.hdr().urgent.get()
    }
    pub fn options(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(HEADER_LEN..self.header_len())
            .unwrap_or(&[])
    }
    pub fn options_iter(&self) -> OptionsIter<'_> {
        OptionsIter::new(self.options())
    }
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }
    pub fn verify_checksum(&self, pseudo: &PseudoHeader) -> bool {
        pseudo.verify(ip_proto::TCP, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn with(&mut self, f: impl FnOnce(&mut TcpHeader)) {
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
    pub fn set_seq_number(&mut self, v: u32) {
        self.with(|h| h.seq.set(v))
    }
    pub fn set_ack_number(&mut self, v: u32) {
        self.with(|h| h.ack.set(v))
    }
    /// Sets the data offset from a length in bytes (multiple of 4, 20..=60).
    pub fn set_header_len(&mut self, len: usize) {
        let off = ((len / 4) & 0x0f) as u16;
        self.with(|h| {
            h.offset_flags
                .set((h.offset_flags.get() & 0x0fff) | (off << 12))
        })
    }
    /// Replaces all nine flag bits (keeps the data offset).
    pub fn set_flags(&mut self, f: u16) {
        self.with(|h| {
            let v = (h.offset_flags.get() & !flags::MASK) | (f & flags::MASK);
            h.offset_flags.set(v)
        })
    }
    pub fn set_window_len(&mut self, v: u16) {
        self.with(|h| h.window.set(v))
    }
    pub fn set_checksum(&mut self, v: u16) {
        self.with(|h| h.checksum.set(v))
    }
    pub fn set_urgent_at(&mut self, v: u16) {
        self.with(|h| h.urgent.set(v))
    }
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..hl)
            .unwrap_or(&mut [])
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        self.buffer.as_mut().get_mut(hl..).unwrap_or(&mut [])
    }
    /// Checksums the whole buffer (header and payload).
    pub fn fill_checksum(&mut self, pseudo: &PseudoHeader) {
        self.set_checksum(0);
        let c = pseudo.checksum(ip_proto::TCP, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    NoOperation,
    MaxSegmentSize(u16),
    WindowScale(u8),
    SackPermitted,
    /// Up to four (left, right) blocks; unused slots are `None`.
    SackRange([Option<(u32, u32)>; 4]),
    Timestamp {
        tsval: u32,
        tsecr: u32,
    },
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

/// Iterates options: stops at EOL or the end; yields one
/// `Err(Malformed)` and stops on a bad length (shorter than 2, running
/// past the header, or wrong for a known kind).
#[derive(Debug, Clone)]
pub struct OptionsIter<'a> {
    rest: &'a [u8],
}

impl<'a> OptionsIter<'a> {
    pub fn new(options: &'a [u8]) -> OptionsIter<'a> {
        OptionsIter { rest: options }
    }

    fn parse_one(&mut self) -> Result<Option<TcpOption<'a>>> {
        let Some((&k, after_kind)) = self.rest.split_first() else {
            return Ok(None);
        };
        match k {
            kind::EOL => return Ok(None),
            kind::NOP => {
                self.rest = after_kind;
                return Ok(Some(TcpOption::NoOperation));
            }
            _ => {}
        }
        let len = usize::from(*after_kind.first().ok_or(Error::Truncated)?);
        let opt = self.rest.get(..len).ok_or(Error::Truncated)?;
        let data = opt.get(2..).ok_or(Error::Malformed)?;
        let u32_at = |i: usize| {
            data.get(i..i + 4)
                .and_then(|s| s.try_into().ok())
                .map(u32::from_be_bytes)
        };
        let o = match (k, len) {
            (kind::MSS, 4) => TcpOption::MaxSegmentSize(u16::from_be_bytes([
                *data.first().ok_or(Error::Malformed)?,
                *data.get(1).ok_or(Error::Malformed)?,
            ])),
            (kind::WINDOW_SCALE, 3) => {
                TcpOption::WindowScale(*data.first().ok_or(Error::Malformed)?)
            }
            (kind::SACK_PERMITTED, 2) => TcpOption::SackPermitted,
            (kind::TIMESTAMP, 10) => TcpOption::Timestamp {
                tsval: u32_at(0).ok_or(Error::Malformed)?,
                tsecr: u32_at(4).ok_or(Error::Malformed)?,
            },
            (kind::SACK, 10 | 18 | 26 | 34) => {
                let mut blocks = [None; 4];
                for (i, slot) in blocks.iter_mut().enumerate() {
                    if let (Some(l), Some(r)) = (u32_at(i * 8), u32_at(i * 8 + 4)) {
                        *slot = Some((l, r));
                    }
                }
                TcpOption::SackRange(blocks)
            }
            (kind::MSS | kind::WINDOW_SCALE | kind::SACK_PERMITTED | kind::TIMESTAMP, _)
            | (kind::SACK, _) => return Err(Error::Malformed),
            _ => TcpOption::Unknown { kind: k, data },
        };
        self.rest = self.rest.get(len..).unwrap_or(&[]);
        Ok(Some(o))
    }
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.parse_one() {
            Ok(o) => {
                if o.is_none() {
                    self.rest = &[];
                }
                o.map(Ok)
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// Writes options into at most [`MAX_OPTIONS_LEN`] bytes of `buf`.
#[derive(Debug)]
pub struct OptionWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> OptionWriter<'a> {
    pub fn new(buf: &'a mut [u8]) -> OptionWriter<'a> {
        OptionWriter { buf, len: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn raw_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        if self.len + bytes.len() > MAX_OPTIONS_LEN {
            return Err(Error::Truncated);
        }
        put(self.buf.get_mut(self.len..).ok_or(Error::Truncated)?, bytes)?;
        self.len += bytes.len();
        Ok(())
    }

    pub fn nop(&mut self) -> Result<()> {
        self.raw_bytes(&[kind::NOP])
    }
    pub fn mss(&mut self, mss: u16) -> Result<()> {
        let [a, b] = mss.to_be_bytes();
        self.raw_bytes(&[kind::MSS, 4, a, b])
    }
    pub fn window_scale(&mut self, shift: u8) -> Result<()> {
        self.raw_bytes(&[kind::WINDOW_SCALE, 3, shift])
    }
    fn sack_permitted(&mut self) -> Result<()> {
        self.raw_bytes(&[kind::SACK_PERMITTED, 2])
    }
    pub fn timestamp(&mut self, tsval: u32, tsecr: u32) -> Result<()> {
        let mut o = [kind::TIMESTAMP, 10, 0, 0, 0, 0, 0, 0, 0, 0];
        put(
            o.get_mut(2..).ok_or(Error::Truncated)?,
            &tsval.to_be_bytes(),
        )?;
        put(
            o.get_mut(6..).ok_or(Error::Truncated)?,
            &tsecr.to_be_bytes(),
        )?;
        self.raw_bytes(&o)
    }
    /// SACK blocks (1 to 4).
    fn sack(&mut self, blocks: &[(u32, u32)]) -> Result<()> {
        if blocks.is_empty() || blocks.len() > 4 {
            return Err(Error::Malformed);
        }
        let len = 2 + 8 * blocks.len();
        if self.len + len > MAX_OPTIONS_LEN {
            return Err(Error::Truncated);
        }
        self.raw_bytes(&[kind::SACK, len as u8])?;
        for &(l, r) in blocks {
            self.raw_bytes(&l.to_be_bytes())?;
            self.raw_bytes(&r.to_be_bytes())?;
        }
        Ok(())
    }
    /// Any other option (`data` without kind and length bytes).
    pub fn raw(&mut self, k: u8, data: &[u8]) -> Result<()> {
        let len = u8::try_from(data.len() + 2).map_err(|_| Error::Malformed)?;
        if self.len + usize::from(len) > MAX_OPTIONS_LEN {
            return Err(Error::Truncated);
        }
        self.raw_bytes(&[k, len])?;
        self.raw_bytes(data)
    }
    /// Pads with EOL (zero) bytes to a multiple of 4; returns the length.
    pub fn finish(mut self) -> Result<usize> {
        while self.len % 4 != 0 {
            self.raw_bytes(&[kind::EOL])?;
        }
        Ok(self.len)
    }
}

/// A TCP header, decoded, with the options airlock uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    /// Meaningful when `flags` has ACK.
    pub ack: u32,
    pub flags: u16,
    pub window: u16,
    pub urgent: u16,
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    pub timestamp: Option<(u32, u32)>,
    pub sack_ranges: [Option<(u32, u32)>; 4],
    pub payload_len: usize,
}

impl Repr {
    /// Verifies the checksum and rejects port 0. Options are read
    /// leniently, like Linux: parsing stops at the first malformed option
    /// and keeps what came before; unknown options are skipped.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>, pseudo: &PseudoHeader) -> Result<Repr> {
        Repr::parse_with(p, pseudo, Checksum::Full)
    }

    /// [`Repr::parse`], verifying the checksum only if it is `Full`.
    pub fn parse_with<T: AsRef<[u8]>>(
        p: &Packet<T>,
        pseudo: &PseudoHeader,
        csum: Checksum,
    ) -> Result<Repr> {
        if p.src_port() == 0 || p.dst_port() == 0 {
            return Err(Error::Malformed);
        }
        if csum == Checksum::Full && !p.verify_checksum(pseudo) {
            return Err(Error::Checksum);
        }
        let mut r = Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq: p.seq_number(),
            ack: p.ack_number(),
            flags: p.flags(),
            window: p.window_len(),
            urgent: p.urgent_at(),
            payload_len: p.payload().len(),
            ..Repr::default()
        };
        for o in p.options_iter() {
            match o {
                Ok(TcpOption::MaxSegmentSize(m)) => r.mss = Some(m),
                Ok(TcpOption::WindowScale(w)) => r.window_scale = Some(w),
                Ok(TcpOption::SackPermitted) => r.sack_permitted = true,
                Ok(TcpOption::Timestamp { tsval, tsecr }) => r.timestamp = Some((tsval, tsecr)),
                Ok(TcpOption::SackRange(b)) => r.sack_ranges = b,
                Ok(TcpOption::NoOperation | TcpOption::Unknown { .. }) => {}
                Err(_) => break,
            }
        }
        Ok(r)
    }

    /// Writes the options in Linux's layout (so templates match what a
    /// Linux peer sends): MSS; SACK-permitted folded into the timestamp's
    /// NOP padding; NOP + window scale; NOP NOP + SACK blocks.
    pub fn emit_options(&self, buf: &mut [u8]) -> Result<usize> {
        let only_ts = self.mss.is_none()
            && self.window_scale.is_none()
            && !self.sack_permitted
            && self.sack_ranges[0].is_none();
        if only_ts {
            // Every data segment: no options, or NOP NOP timestamps, in one
            // write (the per-segment path).
            let Some((v, e)) = self.timestamp else {
                return Ok(0);
            };
            let ([v0, v1, v2, v3], [e0, e1, e2, e3]) = (v.to_be_bytes(), e.to_be_bytes());
            let o = [
                kind::NOP,
                kind::NOP,
                kind::TIMESTAMP,
                10,
                v0,
                v1,
                v2,
                v3,
                e0,
                e1,
                e2,
                e3,
            ];
            put(buf, &o)?;
            return Ok(o.len());
        }
        let mut w = OptionWriter::new(buf);
        if let Some(m) = self.mss {
            w.mss(m)?;
        }
        match (self.sack_permitted, self.timestamp) {
            (true, Some((v, e))) => {
                w.sack_permitted()?;
                w.timestamp(v, e)?;
            }
            (false, Some((v, e))) => {
                w.nop()?;
                w.nop()?;
                w.timestamp(v, e)?;
            }
            (true, None) => {
                w.nop()?;
                w.nop()?;
                w.sack_permitted()?;
            }
            (false, None) => {}
        }
        if let Some(s) = self.window_scale {
            w.nop()?;
            w.window_scale(s)?;
        }
        let mut blocks = [(0, 0); 4];
        let mut n = 0;
        for b in self.sack_ranges.iter().flatten() {
            if let Some(slot) = blocks.get_mut(n) {
                *slot = *b;
                n += 1;
            }
        }
        if n > 0 {
            w.nop()?;
            w.nop()?;
            w.sack(blocks.get(..n).unwrap_or(&[]))?;
        }
        w.finish()
    }

    /// Header length `emit` writes, options included.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.emit_options(&mut [0u8; MAX_OPTIONS_LEN]).unwrap_or(0)
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Writes header and options in front of a payload the caller has
    /// already placed at `buf[self.header_len()..]`, then the checksum.
    /// Returns `buffer_len()`. Fails with `Truncated` if the options do not
    /// fit in 40 bytes or `buf` is short.
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
        let opts = self.emit_options(buf.get_mut(HEADER_LEN..).ok_or(Error::Truncated)?)?;
        let hl = HEADER_LEN + opts;
        let total = hl + self.payload_len;
        let seg = buf.get_mut(..total).ok_or(Error::Truncated)?;
        let h: &mut TcpHeader = header_mut(seg).ok_or(Error::Truncated)?;
        *h = TcpHeader {
            src_port: self.src_port.into(),
            dst_port: self.dst_port.into(),
            seq: self.seq.into(),
            ack: self.ack.into(),
            offset_flags: (((hl as u16 / 4) << 12) | (self.flags & flags::MASK)).into(),
            window: self.window.into(),
            checksum: U16::ZERO,
            urgent: self.urgent.into(),
        };
        let c = match csum {
            Checksum::Full => pseudo.checksum(ip_proto::TCP, seg),
            Checksum::Partial => pseudo.partial(ip_proto::TCP, total),
        };
        put(
            seg.get_mut(CHECKSUM_AT..).ok_or(Error::Truncated)?,
            &c.to_be_bytes(),
        )?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{fuzz, hex, Rng};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4() -> PseudoHeader {
        PseudoHeader::V4 {
            src: Ipv4Addr::new(10, 0, 2, 15),
            dst: Ipv4Addr::new(10, 0, 2, 2),
        }
    }
    fn v6() -> PseudoHeader {
        PseudoHeader::V6 {
            src: "fec0::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap(),
            dst: "fec0::2".parse().unwrap(),
        }
    }

    /// A Linux SYN 10.0.2.15:43210 -> 10.0.2.2:8080: MSS 1460,
    /// SACK-permitted, timestamps, window scale 7.
    fn syn() -> Vec<u8> {
        hex("a8ca 1f90 12345678 00000000 a002 faf0 21b6 0000
             020405b4 0402080a 0001e240 00000000 01030307")
    }

    fn syn_repr() -> Repr {
        Repr {
            src_port: 43210,
            dst_port: 8080,
            seq: 0x1234_5678,
            flags: flags::SYN,
            window: 64240,
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: Some((0x1e240, 0)),
            ..Repr::default()
        }
    }

    /// ACK|PSH with timestamps and an HTTP request, over IPv6.
    fn data6() -> Vec<u8> {
        hex("a8ca 1f90 12345679 0badcafe 8018 01f6 b129 0000
             0101080a 0001e241 9abcdef0
             474554202f20485454502f312e300d0a0d0a")
    }

    #[test]
    fn parse_syn() {
        let g = syn();
        let p = Packet::new_checked(&g[..]).unwrap();
        assert_eq!(p.header_len(), 40);
        assert!(p.flags() & flags::SYN != 0 && !p.ack());
        assert_eq!(Repr::parse(&p, &v4()), Ok(syn_repr()));
        assert_eq!(
            p.options_iter().collect::<Vec<_>>(),
            vec![
                Ok(TcpOption::MaxSegmentSize(1460)),
                Ok(TcpOption::SackPermitted),
                Ok(TcpOption::Timestamp {
                    tsval: 0x1e240,
                    tsecr: 0
                }),
                Ok(TcpOption::NoOperation),
                Ok(TcpOption::WindowScale(7)),
            ]
        );
    }

    #[test]
    fn emit_syn() {
        let r = syn_repr();
        assert_eq!(r.header_len(), 40);
        let mut out = [0u8; 64];
        assert_eq!(r.emit(&mut out, &v4()), Ok(40));
        assert_eq!(out[..40], syn()[..]);
        assert_eq!(r.emit(&mut out[..39], &v4()), Err(Error::Truncated));
    }

    #[test]
    fn data_segment_v6_round_trip() {
        let g = data6();
        let p = Packet::new_checked(&g[..]).unwrap();
        assert_eq!(p.payload(), b"GET / HTTP/1.0\r\n\r\n");
        let r = Repr::parse(&p, &v6()).unwrap();
        assert_eq!(r.flags, flags::ACK | flags::PSH);
        assert_eq!((r.seq, r.ack, r.window), (0x1234_5679, 0x0bad_cafe, 502));
        assert_eq!(r.timestamp, Some((0x1e241, 0x9abc_def0)));
        assert_eq!(r.payload_len, 18);
        let mut out = vec![0u8; g.len()];
        out[32..].copy_from_slice(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(r.emit(&mut out, &v6()), Ok(g.len()));
        assert_eq!(out, g);
        // Wrong pseudo header: checksum fails.
        assert_eq!(Repr::parse(&p, &v4()), Err(Error::Checksum));
    }

    #[test]
    fn partial_checksum_is_the_pseudo_header_sum_and_completes() {
        let g = data6();
        let r = Repr::parse(&Packet::new_checked(&g[..]).unwrap(), &v6()).unwrap();
        let mut out = vec![0u8; g.len()];
        out[32..].copy_from_slice(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(r.emit_with(&mut out, &v6(), Checksum::Partial), Ok(g.len()));
        let field = u16::from_be_bytes([out[CHECKSUM_AT], out[CHECKSUM_AT + 1]]);
        assert_eq!(field, v6().partial(ip_proto::TCP, g.len()));
        // Only the checksum differs; what the guest's device completes
        // is the full checksum.
        assert_eq!((&out[..16], &out[18..]), (&g[..16], &g[18..]));
        let p = Packet::new_checked(&out[..]).unwrap();
        assert_eq!(Repr::parse(&p, &v6()), Err(Error::Checksum));
        assert_eq!(Repr::parse_with(&p, &v6(), Checksum::Partial), Ok(r));
        let done = crate::wire::checksum::checksum(&out);
        out[CHECKSUM_AT..CHECKSUM_AT + 2].copy_from_slice(&done.to_be_bytes());
        assert_eq!(out, g);
    }

    #[test]
    fn options_edge_cases() {
        fn parse(o: &[u8]) -> Vec<Result<TcpOption<'_>>> {
            OptionsIter::new(o).collect()
        }
        // EOL stops; bytes after it are ignored.
        assert_eq!(parse(&[0, 2, 4, 5, 0xb4]), vec![]);
        // Unknown option skipped safely, then MSS.
        assert_eq!(
            parse(&[30, 4, 0xaa, 0xbb, 2, 4, 1, 0]),
            vec![
                Ok(TcpOption::Unknown {
                    kind: 30,
                    data: &[0xaa, 0xbb]
                }),
                Ok(TcpOption::MaxSegmentSize(256))
            ]
        );
        // Length 0/1, overrun, and wrong known length are errors that end
        // iteration.
        assert_eq!(parse(&[30, 0, 1]), vec![Err(Error::Malformed)]);
        assert_eq!(parse(&[30, 1]), vec![Err(Error::Malformed)]);
        assert_eq!(parse(&[30, 9, 1]), vec![Err(Error::Truncated)]);
        assert_eq!(parse(&[30]), vec![Err(Error::Truncated)]);
        assert_eq!(parse(&[2, 3, 1, 1]), vec![Err(Error::Malformed)]);
        // SACK blocks.
        let mut buf = [0u8; 40];
        let mut w = OptionWriter::new(&mut buf);
        w.sack(&[(1, 2), (3, 4)]).unwrap();
        assert_eq!(w.finish(), Ok(20));
        let mut blocks = [None; 4];
        blocks[0] = Some((1, 2));
        blocks[1] = Some((3, 4));
        assert_eq!(parse(&buf[..20]), vec![Ok(TcpOption::SackRange(blocks))]);
        // The writer refuses to exceed 40 bytes.
        let mut w = OptionWriter::new(&mut buf);
        w.timestamp(1, 2).unwrap();
        assert_eq!(w.sack(&[(0, 0); 4]), Err(Error::Truncated));
        w.sack(&[(0, 0); 3]).unwrap();
        assert_eq!(w.len(), 36);
        assert_eq!(w.raw(99, &[1, 2, 3]), Err(Error::Truncated));
        assert_eq!(w.finish(), Ok(36));
        let mut small = [0u8; 3];
        assert_eq!(OptionWriter::new(&mut small).mss(1), Err(Error::Truncated));
    }

    #[test]
    fn sack_round_trip_and_header_checks() {
        let r = Repr {
            flags: flags::ACK,
            ack: 5,
            timestamp: Some((1, 2)),
            sack_ranges: [Some((10, 20)), Some((30, 40)), None, None],
            ..syn_repr()
        };
        let r = Repr {
            mss: None,
            window_scale: None,
            sack_permitted: false,
            ..r
        };
        let mut out = [0u8; 60];
        let n = r.emit(&mut out, &v4()).unwrap();
        assert_eq!(n, 20 + 12 + 20);
        let p = Packet::new_checked(&out[..n]).unwrap();
        assert_eq!(Repr::parse(&p, &v4()), Ok(r));
        let mut g = syn();
        g[12] = 0x40;
        assert_eq!(Packet::new_checked(&g[..]).err(), Some(Error::Malformed));
        g[12] = 0xf0;
        assert_eq!(Packet::new_checked(&g[..]).err(), Some(Error::Truncated));
        let mut g = syn();
        g[0] = 0;
        g[1] = 0;
        let p = Packet::new_checked(&g[..]).unwrap();
        assert_eq!(Repr::parse(&p, &v4()), Err(Error::Malformed));
    }

    #[test]
    fn no_panic_on_any_input() {
        let mut rng = Rng::new(5);
        fuzz(&[&syn(), &data6()], 5000, 80, |b| {
            // Random options behind a valid fixed header, too.
            let _ = OptionsIter::new(b).count();
            if let Ok(mut p) = Packet::new_checked(&mut *b) {
                let _ = p.options_iter().count();
                let _ = Repr::parse(&p, &v4());
                if let Ok(r) = Repr::parse(&p, &v6()) {
                    let mut out = [0u8; 140];
                    let _ = r.emit(&mut out, &v6());
                }
                p.set_header_len(rng.below(64));
                let _ = (p.payload_mut().len(), p.options_mut().len());
                p.fill_checksum(&v4());
            }
        });
    }
}
