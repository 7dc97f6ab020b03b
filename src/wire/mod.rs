//! Wire formats: checked views over byte buffers and plain `Repr`s.
//!
//! # The no-panic promise
//!
//! Every byte handed to this module may come from a hostile guest. No input,
//! however short, long or garbled, makes any function here panic:
//!
//! * views (`Packet`, `Frame`) can only be built with
//!   `new_checked`, which validates every length an accessor later relies
//!   on, so getters and setters never reach past the buffer;
//! * even so, accessors go through checked helpers (`slice::get`,
//!   `zerocopy`'s `ref_from_prefix`) that fall back to zero/empty instead
//!   of indexing: the invariant is enforced twice, not trusted, so even a
//!   setter that breaks it (`set_header_len(60)`) cannot cause a panic;
//! * `Repr::parse` returns [`Error`], never panics; `Repr::emit` returns
//!   [`Error::Truncated`] when the output buffer is too small;
//! * `clippy::indexing_slicing` is denied for the whole module;
//! * there is no `unsafe`, no unchecked arithmetic on lengths taken from
//!   the wire (all such sums are done in `usize` from `u8`/`u16` fields,
//!   which cannot overflow), and no allocation in parse or emit.
//!
//! Each file carries a "no panic on any input" test that feeds every prefix
//! of its golden frames, bit-flipped variants and thousands of
//! pseudo-random buffers through every parser.
//!
//! # Layout
//!
//! One file per protocol, in the style of smoltcp's `wire`: a checked view
//! over a buffer (`T: AsRef<[u8]>`, setters for `T: AsMut<[u8]>`) and a plain
//! `Repr` with `parse`, `emit` and `buffer_len`. Fixed headers are
//! `#[repr(C)]` zerocopy structs with network-endian fields.
#![forbid(unsafe_code)]
// The no-panic promise, enforced: no `[]` indexing or slicing outside tests
// (fixed-size arrays with constant indices are exempt, being checked at
// compile time).
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use core::fmt;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub mod arp;
pub mod checksum;
pub mod dhcpv4;
pub mod dhcpv6;
pub mod domain;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod ndp;
pub mod netlink;
pub mod pcap;
pub mod tcp;
pub mod tftp;
pub mod udp;
pub mod virtio_net;

/// Why a buffer could not be parsed or emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the format (or a length field) requires.
    Truncated,
    /// A field holds a value the format forbids.
    Malformed,
    /// The checksum does not verify.
    Checksum,
    /// Well-formed, but a variant this implementation does not handle.
    Unsupported,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated packet",
            Error::Malformed => "malformed packet",
            Error::Checksum => "checksum mismatch",
            Error::Unsupported => "unsupported packet",
        })
    }
}

impl std::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;

/// An Ethernet (EUI-48) hardware address.
pub type Mac = [u8; 6];

/// The Ethernet broadcast address.
pub const MAC_BROADCAST: Mac = [0xff; 6];

/// EtherType values (IEEE 802 numbers) airlock looks at.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
}

/// IP protocol / IPv6 next-header numbers (IANA "Assigned Internet Protocol
/// Numbers").
pub mod ip_proto {
    pub const HOPOPT: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6_ROUTE: u8 = 43;
    pub const IPV6_FRAG: u8 = 44;
    pub const ICMPV6: u8 = 58;
    pub const IPV6_NONXT: u8 = 59;
    pub const IPV6_OPTS: u8 = 60;
}

/// Views the header struct at the start of `buf`, or `None` if `buf` is too
/// short. Used by the views' accessors; their `new_checked` already made
/// the `None` case unreachable.
#[inline(always)]
pub(crate) fn header<H: FromBytes + KnownLayout + Immutable>(buf: &[u8]) -> Option<&H> {
    H::ref_from_prefix(buf).ok().map(|(h, _)| h)
}

/// Mutable twin of [`header`].
#[inline(always)]
pub(crate) fn header_mut<H: FromBytes + IntoBytes + KnownLayout>(buf: &mut [u8]) -> Option<&mut H> {
    H::mut_from_prefix(buf).ok().map(|(h, _)| h)
}

/// One step of an option walk: `next` is the option at the start of
/// `*rest` and what follows it, `None` where a header or length runs past
/// the end. That yields `Truncated` once and empties `*rest`, so the walk
/// stops after the error.
pub(crate) fn walk_step<'a, O>(rest: &mut &'a [u8], next: Option<(O, &'a [u8])>) -> Result<O> {
    let Some((option, tail)) = next else {
        *rest = &[];
        return Err(Error::Truncated);
    };
    *rest = tail;
    Ok(option)
}

/// Copies `src` to the start of `dst`, or fails with `Truncated`.
#[inline]
pub(crate) fn put(dst: &mut [u8], src: &[u8]) -> Result<()> {
    dst.get_mut(..src.len())
        .ok_or(Error::Truncated)?
        .copy_from_slice(src);
    Ok(())
}

/// Deterministic test inputs shared by every file's no-panic test.
#[cfg(test)]
pub(crate) mod testutil {
    pub use crate::rng::Rng;
    use std::net::Ipv6Addr;

    /// The golden captures' IPv6 guest (SLAAC from 52:54:00:12:34:56) and
    /// host (the router, fec0::2).
    pub const GUEST6: Ipv6Addr = Ipv6Addr::new(0xfec0, 0, 0, 0, 0x5054, 0xff, 0xfe12, 0x3456);
    pub const HOST6: Ipv6Addr = Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 2);
    /// The golden captures' guest MAC and slirp's IPv6 router MAC.
    pub const GUEST_MAC: super::Mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    pub const ROUTER_MAC: super::Mac = [0x52, 0x56, 0, 0, 0, 2];

    pub fn ip6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// Feeds `f` every prefix of every golden buffer, every golden buffer
    /// with random bytes overwritten, and `random` pseudo-random buffers of
    /// up to `max_len` bytes. `f` must not panic on any of them.
    pub fn fuzz(goldens: &[&[u8]], random: usize, max_len: usize, mut f: impl FnMut(&mut [u8])) {
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut buf = vec![0u8; max_len.max(goldens.iter().map(|g| g.len()).max().unwrap_or(0))];
        for g in goldens {
            for n in 0..=g.len() {
                buf[..n].copy_from_slice(&g[..n]);
                f(&mut buf[..n]);
            }
            for _ in 0..200 {
                buf[..g.len()].copy_from_slice(g);
                for _ in 0..=rng.below(4) {
                    let i = rng.below(g.len());
                    if let Some(b) = buf.get_mut(i) {
                        *b = rng.next_u64() as u8;
                    }
                }
                let n = g.len() - rng.below(g.len().min(8) + 1);
                f(&mut buf[..n]);
            }
        }
        for _ in 0..random {
            let n = rng.below(max_len + 1);
            rng.fill(&mut buf[..n]);
            f(&mut buf[..n]);
        }
    }

    /// Parses a hex dump, ignoring whitespace.
    pub fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s
            .bytes()
            .filter(|b| b.is_ascii_hexdigit())
            .map(|b| (b as char).to_digit(16).unwrap() as u8)
            .collect();
        assert!(digits.len() % 2 == 0, "odd hex digit count");
        digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_checks_length() {
        let mut b = [0u8; 3];
        assert_eq!(put(&mut b, &[1, 2, 3, 4]), Err(Error::Truncated));
        assert_eq!(put(&mut b, &[1, 2]), Ok(()));
        assert_eq!(b, [1, 2, 0]);
    }

    #[test]
    fn header_view_is_checked() {
        #[derive(FromBytes, IntoBytes, KnownLayout, Immutable, zerocopy::Unaligned)]
        #[repr(C)]
        struct H {
            a: zerocopy::byteorder::network_endian::U16,
        }
        assert!(header::<H>(&[1]).is_none());
        assert_eq!(header::<H>(&[1, 2, 3]).map(|h| h.a.get()), Some(0x0102));
    }
}
