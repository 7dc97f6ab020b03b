//! The classic pcap file format (libpcap's `savefile`, as `tcpdump -r`
//! reads it): a 24-byte file header, then each frame behind a 16-byte
//! record header. Written little-endian with microsecond timestamps
//! (magic `0xa1b2c3d4`), link type Ethernet.
#![forbid(unsafe_code)]

use zerocopy::byteorder::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{header, put, Error, Result};

pub const FILE_HEADER_LEN: usize = 24;
pub const RECORD_HEADER_LEN: usize = 16;
/// Microsecond timestamps (the nanosecond variant is `0xa1b23c4d`).
pub const MAGIC_USEC: u32 = 0xa1b2_c3d4;
/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct FileHeader {
    magic: U32,
    version_major: U16,
    version_minor: U16,
    thiszone: U32,
    sigfigs: U32,
    snaplen: U32,
    linktype: U32,
}

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RecordHeader {
    ts_sec: U32,
    ts_usec: U32,
    incl_len: U32,
    orig_len: U32,
}

/// The file header: format 2.4, no time zone offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRepr {
    pub snaplen: u32,
    pub linktype: u32,
}

impl FileRepr {
    /// Only what this module writes: little-endian, microseconds, 2.4.
    pub fn parse(buf: &[u8]) -> Result<FileRepr> {
        let h: &FileHeader = header(buf).ok_or(Error::Truncated)?;
        if h.magic.get() != MAGIC_USEC {
            return Err(Error::Unsupported);
        }
        if (h.version_major.get(), h.version_minor.get()) != (2, 4) {
            return Err(Error::Unsupported);
        }
        Ok(FileRepr {
            snaplen: h.snaplen.get(),
            linktype: h.linktype.get(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        FILE_HEADER_LEN
    }

    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let h = FileHeader {
            magic: U32::new(MAGIC_USEC),
            version_major: U16::new(2),
            version_minor: U16::new(4),
            thiszone: U32::ZERO,
            sigfigs: U32::ZERO,
            snaplen: U32::new(self.snaplen),
            linktype: U32::new(self.linktype),
        };
        put(buf, h.as_bytes())?;
        Ok(FILE_HEADER_LEN)
    }
}

/// One record's header; `incl_len` bytes of the frame follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRepr {
    pub ts_sec: u32,
    pub ts_usec: u32,
    /// Bytes captured (at most the snap length).
    pub incl_len: u32,
    /// The frame's length on the wire.
    pub orig_len: u32,
}

impl RecordRepr {
    /// The header, checked against the buffer holding the frame after it.
    pub fn parse(buf: &[u8]) -> Result<RecordRepr> {
        let h: &RecordHeader = header(buf).ok_or(Error::Truncated)?;
        let r = RecordRepr {
            ts_sec: h.ts_sec.get(),
            ts_usec: h.ts_usec.get(),
            incl_len: h.incl_len.get(),
            orig_len: h.orig_len.get(),
        };
        if r.ts_usec >= 1_000_000 || r.incl_len > r.orig_len {
            return Err(Error::Malformed);
        }
        if buf.len() - RECORD_HEADER_LEN < r.incl_len as usize {
            return Err(Error::Truncated);
        }
        Ok(r)
    }

    pub const fn buffer_len(&self) -> usize {
        RECORD_HEADER_LEN
    }

    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let h = RecordHeader {
            ts_sec: U32::new(self.ts_sec),
            ts_usec: U32::new(self.ts_usec),
            incl_len: U32::new(self.incl_len),
            orig_len: U32::new(self.orig_len),
        };
        put(buf, h.as_bytes())?;
        Ok(RECORD_HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{fuzz, hex};

    #[test]
    fn file_header_golden() {
        let r = FileRepr {
            snaplen: 65535,
            linktype: LINKTYPE_ETHERNET,
        };
        let mut b = [0u8; FILE_HEADER_LEN];
        assert_eq!(r.emit(&mut b), Ok(FILE_HEADER_LEN));
        assert_eq!(
            b.to_vec(),
            hex("d4c3b2a1 0200 0400 00000000 00000000 ffff0000 01000000")
        );
        assert_eq!(FileRepr::parse(&b), Ok(r));
        assert_eq!(r.emit(&mut b[..23]), Err(Error::Truncated));
    }

    #[test]
    fn record_round_trip_and_checks() {
        let r = RecordRepr {
            ts_sec: 1_800_000_000,
            ts_usec: 999_999,
            incl_len: 4,
            orig_len: 60,
        };
        let mut b = [0u8; RECORD_HEADER_LEN + 4];
        r.emit(&mut b).unwrap();
        assert_eq!(RecordRepr::parse(&b), Ok(r));
        assert_eq!(RecordRepr::parse(&b[..19]), Err(Error::Truncated));
        let mut bad = r;
        bad.incl_len = 61;
        bad.emit(&mut b).unwrap();
        assert_eq!(RecordRepr::parse(&b), Err(Error::Malformed));
    }

    #[test]
    fn no_panic_on_any_input() {
        let mut g = [0u8; FILE_HEADER_LEN + RECORD_HEADER_LEN];
        FileRepr {
            snaplen: 65535,
            linktype: 1,
        }
        .emit(&mut g)
        .unwrap();
        fuzz(&[&g], 2000, 64, |b| {
            let _ = FileRepr::parse(b);
            let _ = RecordRepr::parse(b);
        });
    }
}
