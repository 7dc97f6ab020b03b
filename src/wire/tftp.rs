//! TFTP (RFC 1350) with option negotiation (RFC 2347) and the blksize,
//! timeout and tsize options (RFC 2348, 2349): the packets a read-only
//! server parses and emits.
//!
//! Parsing borrows from the datagram (file names, messages) and allocates
//! nothing. A DATA payload is written in place by the caller, behind
//! [`emit_data_header`], so file blocks are read straight into the frame.
#![forbid(unsafe_code)]

use std::io::Write as _;

use super::{put, Error, Result};

pub mod opcode {
    pub const RRQ: u16 = 1;
    pub const WRQ: u16 = 2;
    pub const DATA: u16 = 3;
    pub const ACK: u16 = 4;
    pub const ERROR: u16 = 5;
    pub const OACK: u16 = 6;
}

pub mod error_code {
    pub const NOT_DEFINED: u16 = 0;
    pub const FILE_NOT_FOUND: u16 = 1;
    pub const ACCESS_VIOLATION: u16 = 2;
    pub const ILLEGAL_OPERATION: u16 = 4;
    pub const UNKNOWN_TID: u16 = 5;
    pub const OPTION_REFUSED: u16 = 8;
}

/// Opcode plus block number.
pub const DATA_HEADER_LEN: usize = 4;
/// RFC 2348's bounds on blksize.
pub const BLKSIZE_MIN: u16 = 8;
pub const BLKSIZE_MAX: u16 = 65464;

/// The options of a read request or an option acknowledgement; each
/// `None` when absent (or, in a request, out of range: ignored, as RFC
/// 2347 lets a server do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    pub blksize: Option<u16>,
    /// Seconds, 1..=255.
    pub timeout: Option<u8>,
    /// Transfer size in bytes (a request sends 0).
    pub tsize: Option<u64>,
}

impl Options {
    pub fn is_empty(&self) -> bool {
        *self == Options::default()
    }

    fn set(&mut self, name: &[u8], value: &[u8]) -> Result<()> {
        let known = [&b"blksize"[..], b"timeout", b"tsize"];
        if !known.iter().any(|k| name.eq_ignore_ascii_case(k)) {
            // Not acknowledged, so the client does without.
            return Ok(());
        }
        let v = std::str::from_utf8(value).map_err(|_| Error::Malformed)?;
        let n: u64 = v.parse().map_err(|_| Error::Malformed)?;
        if name.eq_ignore_ascii_case(b"blksize") {
            self.blksize = u16::try_from(n)
                .ok()
                .filter(|b| (BLKSIZE_MIN..=BLKSIZE_MAX).contains(b));
        } else if name.eq_ignore_ascii_case(b"timeout") {
            self.timeout = u8::try_from(n).ok().filter(|t| *t >= 1);
        } else if name.eq_ignore_ascii_case(b"tsize") {
            self.tsize = Some(n);
        }
        Ok(())
    }

    /// Bytes [`Options::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let digits = |mut n: u64| {
            let mut d = 1;
            while n >= 10 {
                n /= 10;
                d += 1;
            }
            d
        };
        self.blksize.map_or(0, |b| 9 + digits(b.into()))
            + self.timeout.map_or(0, |t| 9 + digits(t.into()))
            + self.tsize.map_or(0, |t| 7 + digits(t))
    }

    /// `name NUL value NUL` for each option present.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        let mut w = buf.get_mut(..len).ok_or(Error::Truncated)?;
        let r = (|| -> std::io::Result<()> {
            if let Some(b) = self.blksize {
                write!(w, "blksize\0{b}\0")?;
            }
            if let Some(t) = self.timeout {
                write!(w, "timeout\0{t}\0")?;
            }
            if let Some(t) = self.tsize {
                write!(w, "tsize\0{t}\0")?;
            }
            Ok(())
        })();
        r.map_err(|_| Error::Truncated)?;
        Ok(len)
    }
}

/// Transfer mode of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Octet,
    Netascii,
    /// "mail" or anything else.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr<'a> {
    Read {
        filename: &'a [u8],
        mode: Mode,
        options: Options,
    },
    Write {
        filename: &'a [u8],
    },
    Data {
        block: u16,
        data: &'a [u8],
    },
    Ack {
        block: u16,
    },
    Error {
        code: u16,
        message: &'a str,
    },
    OptionAck {
        options: Options,
    },
}

fn be16(buf: &[u8], at: usize) -> Result<u16> {
    let b: [u8; 2] = buf
        .get(at..at + 2)
        .and_then(|b| b.try_into().ok())
        .ok_or(Error::Truncated)?;
    Ok(u16::from_be_bytes(b))
}

/// Splits NUL-terminated strings; the last must be terminated too.
fn strings(buf: &[u8]) -> Result<impl Iterator<Item = &[u8]>> {
    let (body, n) = match buf.split_last() {
        None => (buf, 0),
        Some((0, body)) => (body, usize::MAX),
        Some(_) => return Err(Error::Malformed),
    };
    Ok(body.split(|&b| b == 0).take(n))
}

impl<'a> Repr<'a> {
    pub fn parse(buf: &'a [u8]) -> Result<Repr<'a>> {
        let op = be16(buf, 0)?;
        let rest = buf.get(2..).unwrap_or(&[]);
        match op {
            opcode::RRQ | opcode::WRQ | opcode::OACK => {
                let mut s = strings(rest)?;
                if op == opcode::OACK {
                    return Ok(Repr::OptionAck {
                        options: options(&mut s)?,
                    });
                }
                let filename = s.next().ok_or(Error::Truncated)?;
                let mode = s.next().ok_or(Error::Truncated)?;
                if filename.is_empty() {
                    return Err(Error::Malformed);
                }
                if op == opcode::WRQ {
                    return Ok(Repr::Write { filename });
                }
                let mode = if mode.eq_ignore_ascii_case(b"octet") {
                    Mode::Octet
                } else if mode.eq_ignore_ascii_case(b"netascii") {
                    Mode::Netascii
                } else {
                    Mode::Other
                };
                Ok(Repr::Read {
                    filename,
                    mode,
                    options: options(&mut s)?,
                })
            }
            opcode::DATA => Ok(Repr::Data {
                block: be16(buf, 2)?,
                data: buf.get(DATA_HEADER_LEN..).unwrap_or(&[]),
            }),
            opcode::ACK => Ok(Repr::Ack {
                block: be16(buf, 2)?,
            }),
            opcode::ERROR => {
                let code = be16(buf, 2)?;
                let mut s = strings(buf.get(4..).unwrap_or(&[]))?;
                let message = s.next().ok_or(Error::Truncated)?;
                let message = std::str::from_utf8(message).map_err(|_| Error::Malformed)?;
                Ok(Repr::Error { code, message })
            }
            _ => Err(Error::Unsupported),
        }
    }

    pub fn buffer_len(&self) -> usize {
        match self {
            Repr::Read {
                filename, options, ..
            } => 2 + filename.len() + 1 + 6 + options.buffer_len(),
            Repr::Write { filename } => 2 + filename.len() + 1 + 6,
            Repr::Data { data, .. } => DATA_HEADER_LEN + data.len(),
            Repr::Ack { .. } => 4,
            Repr::Error { message, .. } => 4 + message.len() + 1,
            Repr::OptionAck { options } => 2 + options.buffer_len(),
        }
    }

    /// Requests are emitted in octet mode.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        let out = buf.get_mut(..len).ok_or(Error::Truncated)?;
        let op = |o: u16| o.to_be_bytes();
        match self {
            Repr::Read {
                filename, options, ..
            } => {
                let at = request(out, opcode::RRQ, filename)?;
                options.emit(out.get_mut(at..).ok_or(Error::Truncated)?)?;
            }
            Repr::Write { filename } => {
                request(out, opcode::WRQ, filename)?;
            }
            Repr::Data { block, data } => {
                emit_data_header(out, *block)?;
                put(
                    out.get_mut(DATA_HEADER_LEN..).ok_or(Error::Truncated)?,
                    data,
                )?;
            }
            Repr::Ack { block } => {
                put(out, &op(opcode::ACK))?;
                put(
                    out.get_mut(2..).ok_or(Error::Truncated)?,
                    &block.to_be_bytes(),
                )?;
            }
            Repr::Error { code, message } => {
                put(out, &op(opcode::ERROR))?;
                put(
                    out.get_mut(2..).ok_or(Error::Truncated)?,
                    &code.to_be_bytes(),
                )?;
                put(
                    out.get_mut(4..).ok_or(Error::Truncated)?,
                    message.as_bytes(),
                )?;
                put(
                    out.get_mut(4 + message.len()..).ok_or(Error::Truncated)?,
                    &[0],
                )?;
            }
            Repr::OptionAck { options } => {
                put(out, &op(opcode::OACK))?;
                options.emit(out.get_mut(2..).ok_or(Error::Truncated)?)?;
            }
        }
        Ok(len)
    }
}

/// Opcode, file name and mode; returns where the options go.
fn request(out: &mut [u8], op: u16, filename: &[u8]) -> Result<usize> {
    put(out, &op.to_be_bytes())?;
    put(out.get_mut(2..).ok_or(Error::Truncated)?, filename)?;
    let at = 2 + filename.len();
    put(out.get_mut(at..).ok_or(Error::Truncated)?, b"\0octet\0")?;
    Ok(at + 7)
}

/// `name NUL value NUL` pairs; a name without its value is malformed.
fn options<'b>(s: &mut impl Iterator<Item = &'b [u8]>) -> Result<Options> {
    let mut o = Options::default();
    while let Some(name) = s.next() {
        let value = s.next().ok_or(Error::Malformed)?;
        o.set(name, value)?;
    }
    Ok(o)
}

/// The DATA header for a payload the caller writes at
/// `buf[DATA_HEADER_LEN..]`.
pub fn emit_data_header(buf: &mut [u8], block: u16) -> Result<usize> {
    put(buf, &opcode::DATA.to_be_bytes())?;
    put(
        buf.get_mut(2..).ok_or(Error::Truncated)?,
        &block.to_be_bytes(),
    )?;
    Ok(DATA_HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::fuzz;

    #[test]
    fn read_request_with_options() {
        let b = b"\x00\x01pxelinux.0\x00OCTET\x00blksize\x001432\x00tsize\x000\x00Timeout\x003\x00x\x00y\x00";
        let r = Repr::parse(b).unwrap();
        assert_eq!(
            r,
            Repr::Read {
                filename: b"pxelinux.0",
                mode: Mode::Octet,
                options: Options {
                    blksize: Some(1432),
                    timeout: Some(3),
                    tsize: Some(0)
                }
            }
        );
    }

    #[test]
    fn out_of_range_options_are_ignored_and_bad_ones_refused() {
        let r = Repr::parse(b"\x00\x01f\x00octet\x00blksize\x004\x00timeout\x00999\x00").unwrap();
        assert!(matches!(r, Repr::Read { options, .. } if options.is_empty()));
        assert_eq!(
            Repr::parse(b"\x00\x01f\x00octet\x00blksize\x00lots\x00"),
            Err(Error::Malformed)
        );
        assert_eq!(
            Repr::parse(b"\x00\x01f\x00octet\x00blksize\x00"),
            Err(Error::Malformed)
        );
        assert_eq!(Repr::parse(b"\x00\x01f\x00octet"), Err(Error::Malformed));
        assert_eq!(Repr::parse(b"\x00\x01\x00octet\x00"), Err(Error::Malformed));
        assert_eq!(Repr::parse(b"\x00\x09"), Err(Error::Unsupported));
    }

    #[test]
    fn emit_and_parse_agree() {
        let mut buf = [0u8; 128];
        let all = [
            Repr::Read {
                filename: b"a/b",
                mode: Mode::Octet,
                options: Options {
                    blksize: Some(512),
                    timeout: None,
                    tsize: Some(0),
                },
            },
            Repr::Write { filename: b"w" },
            Repr::Data {
                block: 7,
                data: b"hello",
            },
            Repr::Ack { block: 65535 },
            Repr::Error {
                code: error_code::FILE_NOT_FOUND,
                message: "no such file",
            },
            Repr::OptionAck {
                options: Options {
                    blksize: Some(65464),
                    timeout: Some(255),
                    tsize: Some(1 << 40),
                },
            },
        ];
        for r in all {
            let n = r.emit(&mut buf).unwrap();
            assert_eq!(n, r.buffer_len());
            assert_eq!(Repr::parse(&buf[..n]), Ok(r), "{r:?}");
            assert_eq!(r.emit(&mut buf[..n - 1]), Err(Error::Truncated));
        }
        let n = Repr::OptionAck {
            options: Options {
                blksize: Some(1432),
                timeout: None,
                tsize: Some(123),
            },
        }
        .emit(&mut buf)
        .unwrap();
        assert_eq!(&buf[..n], b"\x00\x06blksize\x001432\x00tsize\x00123\x00");
    }

    #[test]
    fn no_panic_on_any_input() {
        let g: &[&[u8]] = &[
            b"\x00\x01file\x00octet\x00blksize\x001432\x00tsize\x000\x00",
            b"\x00\x04\x00\x01",
            b"\x00\x05\x00\x01nope\x00",
            b"\x00\x03\x00\x01data",
            b"\x00\x06tsize\x0012\x00",
        ];
        fuzz(g, 3000, 80, |b| {
            if let Ok(r) = Repr::parse(b) {
                let mut out = [0u8; 200];
                let _ = r.emit(&mut out);
            }
        });
    }
}
