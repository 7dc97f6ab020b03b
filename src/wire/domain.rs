//! Lists of uncompressed RFC 1035 domain names, as carried by DHCPv4
//! option 119 (RFC 3397), DHCPv6 option 24 (RFC 3646) and the NDP DNSSL
//! option (RFC 8106). Encoding writes straight into the caller's buffer;
//! decoding borrows from the packet.
#![forbid(unsafe_code)]

use super::{Error, Result};

/// Longest encoded name (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// Longest label.
pub const MAX_LABEL_LEN: usize = 63;

/// Feeds the encoding of `names` to `sink`, byte by byte. A trailing dot
/// is accepted; empty names and empty labels (`a..b`) are `Malformed`.
pub fn encode_each(names: &[&str], mut sink: impl FnMut(u8) -> Result<()>) -> Result<()> {
    for name in names {
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() {
            return Err(Error::Malformed);
        }
        let mut encoded = 1; // the root label
        for label in name.split('.') {
            let len = label.len();
            if len == 0 || len > MAX_LABEL_LEN {
                return Err(Error::Malformed);
            }
            encoded += 1 + len;
            if encoded > MAX_NAME_LEN {
                return Err(Error::Malformed);
            }
            sink(len as u8)?;
            for &b in label.as_bytes() {
                sink(b)?;
            }
        }
        sink(0)?;
    }
    Ok(())
}

/// Length of the encoding of `names`.
pub fn encoded_len(names: &[&str]) -> Result<usize> {
    let mut n = 0;
    encode_each(names, |_| {
        n += 1;
        Ok(())
    })?;
    Ok(n)
}

/// Writes the encoding of `names` at the start of `out`; returns its length.
pub fn encode(names: &[&str], out: &mut [u8]) -> Result<usize> {
    let mut pos = 0;
    encode_each(names, |b| {
        *out.get_mut(pos).ok_or(Error::Truncated)? = b;
        pos += 1;
        Ok(())
    })?;
    Ok(pos)
}

/// One encoded name inside a packet (labels with their length bytes and the
/// terminating zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name<'a>(&'a [u8]);

impl<'a> Name<'a> {
    /// The raw encoding.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The labels, without length bytes.
    fn labels(&self) -> impl Iterator<Item = &'a [u8]> {
        let mut rest = self.0;
        core::iter::from_fn(move || {
            let (&len, tail) = rest.split_first()?;
            let label = tail.get(..usize::from(len))?;
            if label.is_empty() {
                return None;
            }
            rest = tail.get(usize::from(len)..).unwrap_or(&[]);
            Some(label)
        })
    }

    /// Writes the dotted form ("example.org") into `out`; returns its length.
    pub fn write_dotted(&self, out: &mut [u8]) -> Result<usize> {
        let mut pos = 0;
        for (i, label) in self.labels().enumerate() {
            if i > 0 {
                *out.get_mut(pos).ok_or(Error::Truncated)? = b'.';
                pos += 1;
            }
            out.get_mut(pos..pos + label.len())
                .ok_or(Error::Truncated)?
                .copy_from_slice(label);
            pos += label.len();
        }
        Ok(pos)
    }

    /// Compares with a dotted name, ASCII case-insensitively.
    pub fn eq_dotted(&self, dotted: &str) -> bool {
        let dotted = dotted.strip_suffix('.').unwrap_or(dotted);
        let mut parts = dotted.split('.');
        for label in self.labels() {
            match parts.next() {
                Some(p) if p.as_bytes().eq_ignore_ascii_case(label) => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }
}

/// Iterates the names of an encoded list. Compression pointers are
/// `Unsupported`; a name running past the buffer is `Truncated`. After an
/// error the iterator ends. Trailing zero bytes (padding, as NDP uses) end
/// the list.
#[derive(Debug, Clone)]
pub struct NameIter<'a> {
    rest: &'a [u8],
}

impl<'a> NameIter<'a> {
    pub fn new(encoded: &'a [u8]) -> NameIter<'a> {
        NameIter { rest: encoded }
    }

    fn next_name(&mut self) -> Result<Option<Name<'a>>> {
        if self.rest.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let mut pos = 0;
        loop {
            let len = usize::from(*self.rest.get(pos).ok_or(Error::Truncated)?);
            if len & 0xc0 != 0 {
                return Err(Error::Unsupported);
            }
            pos += 1 + len;
            if pos > MAX_NAME_LEN {
                return Err(Error::Malformed);
            }
            if len == 0 {
                break;
            }
        }
        let (name, rest) = self.rest.split_at_checked(pos).ok_or(Error::Truncated)?;
        self.rest = rest;
        Ok(Some(Name(name)))
    }
}

impl<'a> Iterator for NameIter<'a> {
    type Item = Result<Name<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let r = self.next_name().transpose();
        if matches!(r, Some(Err(_)) | None) {
            self.rest = &[];
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{fuzz, hex};

    #[test]
    fn encode_golden() {
        let want = hex("076578616d706c65036f726700 04636f7270076578616d706c6503636f6d00");
        let mut out = [0u8; 64];
        let names = ["example.org", "corp.example.com."];
        assert_eq!(encode(&names, &mut out), Ok(want.len()));
        assert_eq!(out[..want.len()], want[..]);
        assert_eq!(encoded_len(&names), Ok(want.len()));
        assert_eq!(encode(&names, &mut out[..30]), Err(Error::Truncated));
        assert_eq!(encoded_len(&["a..b"]), Err(Error::Malformed));
        assert_eq!(encoded_len(&[""]), Err(Error::Malformed));
        let long = "a".repeat(64);
        assert_eq!(encoded_len(&[&long]), Err(Error::Malformed));
        let huge = ["a"; 128].join(".");
        assert_eq!(encoded_len(&[&huge]), Err(Error::Malformed));
    }

    #[test]
    fn decode_golden() {
        let mut enc = hex("076578616d706c65036f726700 04636f7270076578616d706c6503636f6d00");
        enc.extend_from_slice(&[0, 0, 0]); // NDP-style padding
        let names: Vec<_> = NameIter::new(&enc).collect();
        assert_eq!(names.len(), 2);
        let n1 = names[1].unwrap();
        let mut out = [0u8; 32];
        let len = n1.write_dotted(&mut out).unwrap();
        assert_eq!(&out[..len], b"corp.example.com");
        assert!(n1.eq_dotted("CORP.example.com."));
        assert!(!n1.eq_dotted("corp.example"));
        assert!(!n1.eq_dotted("corp.example.com.x"));
        assert_eq!(n1.write_dotted(&mut out[..5]), Err(Error::Truncated));
        assert_eq!(
            NameIter::new(&hex("03616263c00c")).collect::<Vec<_>>(),
            vec![Err(Error::Unsupported)]
        );
        assert_eq!(
            NameIter::new(&hex("0361")).collect::<Vec<_>>(),
            vec![Err(Error::Truncated)]
        );
    }

    #[test]
    fn no_panic_on_any_input() {
        let g = hex("076578616d706c65036f726700 04636f7270076578616d706c6503636f6d00");
        fuzz(&[&g], 4000, 300, |b| {
            for n in NameIter::new(b).flatten() {
                let mut out = [0u8; 300];
                let _ = n.write_dotted(&mut out);
                let _ = n.eq_dotted("a.b");
                assert_eq!(n.as_bytes().last(), Some(&0));
            }
        });
    }
}
