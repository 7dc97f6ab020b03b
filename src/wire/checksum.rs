//! RFC 1071 internet checksum, fast enough for the 10+ Gbit/s data path.
//!
//! Partial sums are `u32` values in `0..=0xffff`: the ones'-complement sum of
//! the data read as big-endian 16-bit words (an odd trailing byte is padded
//! with a zero byte), already folded. They combine with [`combine`] and
//! [`combine_at`], and [`finish`] turns one into the final complemented
//! checksum, which is stored in the packet in big-endian order.
//!
//! # Speed and byte order
//!
//! [`sum`] reads 16 bytes at a time as a native-endian `u128` and adds its
//! two 64-bit halves into two wide accumulators (add-with-carry, no per-word
//! carry handling), then folds once at the end. This is legal because the
//! ones'-complement sum is byte-order independent (RFC 1071 §2(B)): summing
//! native-endian words gives the byte-swapped big-endian sum on a little-
//! endian machine, and the final `u16::from_be_bytes(v.to_ne_bytes())` swaps
//! it back (a no-op on big-endian machines). Lanes stay aligned because every
//! wide word starts at an even offset from the start of `data`; the buffer
//! itself may have any alignment (`from_ne_bytes` copies).
//!
//! Everything is a pure function on slices and integers, `#[inline]`, so a
//! micro-benchmark can call [`sum`] in a loop (see the ignored
//! `throughput` test: `cargo test --release --lib checksum -- --ignored
//! --nocapture`).
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

/// Sum of `data` as native-endian lanes, not yet folded.
#[inline]
fn sum_native(data: &[u8]) -> u64 {
    let mut lo: u128 = 0;
    let mut hi: u128 = 0;
    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        let w = u128::from_ne_bytes(block.try_into().unwrap_or([0; 16]));
        lo += u128::from(w as u64);
        hi += w >> 64;
    }
    let mut acc = lo + hi;
    let mut rest = blocks.remainder();
    if let Some((w, tail)) = rest.split_first_chunk::<8>() {
        acc += u128::from(u64::from_ne_bytes(*w));
        rest = tail;
    }
    if let Some((w, tail)) = rest.split_first_chunk::<4>() {
        acc += u128::from(u32::from_ne_bytes(*w));
        rest = tail;
    }
    if let Some((w, tail)) = rest.split_first_chunk::<2>() {
        acc += u128::from(u16::from_ne_bytes(*w));
        rest = tail;
    }
    if let Some(&b) = rest.first() {
        // The odd byte is the high half of a big-endian word: [b, 0].
        acc += u128::from(u16::from_ne_bytes([b, 0]));
    }
    // 2^64 ≡ 1 (mod 2^16 - 1): fold the carries out of the low 64 bits.
    let (s, c) = (acc as u64).overflowing_add((acc >> 64) as u64);
    s + u64::from(c)
}

/// End-around-carry fold of a 64-bit accumulator down to 16 bits.
#[inline]
pub(crate) fn fold(acc: u64) -> u16 {
    let (s, c) = (acc as u32).overflowing_add((acc >> 32) as u32);
    let acc = s + u32::from(c);
    let (s, c) = (acc as u16).overflowing_add((acc >> 16) as u16);
    s + u16::from(c)
}

/// Partial ones'-complement sum of `data` (big-endian words, folded).
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    let native = fold(sum_native(data));
    u32::from(u16::from_be_bytes(native.to_ne_bytes()))
}

/// Ones'-complement sum of two partial sums of byte runs that meet at an
/// even offset.
#[inline]
fn combine(a: u32, b: u32) -> u32 {
    u32::from(fold(u64::from(a) + u64::from(b)))
}

/// The checksum to store for a partial sum: its ones' complement.
#[inline]
pub fn finish(partial: u32) -> u16 {
    !fold(u64::from(partial))
}

/// `finish(sum(data))`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// True if a partial sum taken over data that includes its checksum field
/// verifies (folds to 0xffff, "negative zero").
#[inline]
pub fn verify(partial: u32) -> bool {
    finish(partial) == 0
}

/// Partial sum of the IPv4 pseudo header (RFC 793 §3.1, RFC 768).
#[inline]
pub(crate) fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    let acc = u64::from(s >> 16)
        + u64::from(s & 0xffff)
        + u64::from(d >> 16)
        + u64::from(d & 0xffff)
        + u64::from(protocol)
        + u64::from(len);
    u32::from(fold(acc))
}

/// Partial sum of the IPv6 pseudo header (RFC 8200 §8.1).
#[inline]
fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u32 {
    // Fold each address first: two unfolded sums may overflow a u64.
    let addrs =
        u64::from(fold(sum_native(&src.octets()))) + u64::from(fold(sum_native(&dst.octets())));
    let addrs = u64::from(u16::from_be_bytes(fold(addrs).to_ne_bytes()));
    let acc = addrs + u64::from(len >> 16) + u64::from(len & 0xffff) + u64::from(next_header);
    u32::from(fold(acc))
}

/// Who finishes a TCP or UDP checksum, per frame (smoltcp's
/// `ChecksumCapabilities`, for the one peer that offloads: a virtio-net
/// guest over vhost-user).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checksum {
    /// Emit: compute it whole. Parse: verify it.
    #[default]
    Full,
    /// The field holds only the pseudo-header sum; the other end's device
    /// covers the rest (virtio `NEEDS_CSUM`). Emit: toward a guest that
    /// negotiated `GUEST_CSUM`, which takes it as a real NIC's driver does.
    /// Parse: a guest frame marked so, which no wire ever carried, so
    /// there is nothing to verify.
    Partial,
}

/// An L4 checksum left for a device to finish (virtio's `NEEDS_CSUM`):
/// the 16-bit field at `start + offset` of the frame holds the
/// pseudo-header sum, and the checksum covers `start..` to the frame's end.
/// Each protocol names its own field (`PartialCsum::tcp`, `PartialCsum::udp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialCsum {
    pub start: u16,
    pub offset: u16,
}

impl PartialCsum {
    /// The checksum field `field` bytes into an L4 header `l4` bytes into
    /// the frame (offsets past a frame's largest size are clamped).
    pub(crate) fn at(l4: usize, field: usize) -> PartialCsum {
        PartialCsum {
            start: l4.min(u16::MAX as usize) as u16,
            offset: field as u16,
        }
    }
}

/// The addresses of the IP header an upper-layer checksum covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PseudoHeader {
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

impl PseudoHeader {
    /// Partial sum of the pseudo header for `protocol` and an upper-layer
    /// length of `len` bytes. IPv4 lengths never exceed a `u16` (they come
    /// from a 16-bit total length); larger values are truncated.
    #[inline]
    pub fn sum(&self, protocol: u8, len: usize) -> u32 {
        match *self {
            PseudoHeader::V4 { src, dst } => pseudo_v4(src, dst, protocol, len as u16),
            PseudoHeader::V6 { src, dst } => pseudo_v6(src, dst, protocol, len as u32),
        }
    }

    /// The checksum of an upper-layer message `data` (with a zeroed
    /// checksum field) under this pseudo header.
    #[inline]
    pub fn checksum(&self, protocol: u8, data: &[u8]) -> u16 {
        finish(combine(self.sum(protocol, data.len()), sum(data)))
    }

    /// What a partial checksum's field holds ([`Checksum::Partial`]): the
    /// pseudo-header sum, folded and not complemented, as Linux leaves it
    /// for `CHECKSUM_PARTIAL`.
    #[inline]
    pub fn partial(&self, protocol: u8, len: usize) -> u16 {
        fold(u64::from(self.sum(protocol, len)))
    }

    /// True if `data` (checksum field included) verifies.
    #[inline]
    pub fn verify(&self, protocol: u8, data: &[u8]) -> bool {
        verify(combine(self.sum(protocol, data.len()), sum(data)))
    }
}

/// RFC 1624 incremental update (eqn. 3: `HC' = ~(~HC + ~m + m')`) of a
/// stored checksum when one 16-bit word changes from `old` to `new`.
/// Note for UDP: the result may be 0x0000 only if the full recomputation
/// would be, and UDP callers must still map 0 to 0xffff.
#[inline]
pub fn update16(old_csum: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!old_csum) + u64::from(!old) + u64::from(new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{hex, Rng};

    /// RFC 1071 straight from the text: big-endian words, 32-bit
    /// accumulator, fold at the end.
    fn naive(data: &[u8]) -> u32 {
        let mut acc: u64 = 0;
        for pair in data.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            let lo = pair.get(1).copied().map_or(0, u64::from);
            acc += hi | lo;
        }
        while acc >> 16 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u32
    }

    #[test]
    fn matches_naive_over_odd_lengths_and_offsets() {
        let mut rng = Rng::new(7);
        let mut buf = vec![0u8; 4096];
        rng.fill(&mut buf);
        for len in (0..300).chain([1023, 1500, 1501, 4000]) {
            for off in 0..17 {
                if off + len > buf.len() {
                    continue;
                }
                let d = &buf[off..off + len];
                assert_eq!(sum(d), naive(d), "len {len} off {off}");
            }
        }
        // Saturating inputs: all 0xff exercises every carry path.
        let ones = vec![0xffu8; 70_001];
        assert_eq!(sum(&ones), naive(&ones));
        assert_eq!(sum(&[]), 0);
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        assert_eq!(
            sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn ipv4_header_golden() {
        // The classic 192.168.0.1 -> 192.168.0.199 UDP header; checksum b861.
        let mut h = hex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7");
        assert!(verify(sum(&h)));
        h[10] = 0;
        h[11] = 0;
        assert_eq!(checksum(&h), 0xb861);
    }

    #[test]
    fn pseudo_headers_match_naive_layout() {
        let src = Ipv4Addr::new(10, 0, 2, 15);
        let dst = Ipv4Addr::new(10, 0, 2, 2);
        let mut ph = Vec::new();
        ph.extend_from_slice(&src.octets());
        ph.extend_from_slice(&dst.octets());
        ph.extend_from_slice(&[0, 6, 0x05, 0xdc]);
        assert_eq!(pseudo_v4(src, dst, 6, 1500), naive(&ph));

        let s6: Ipv6Addr = "fe80::5055:55ff:fe12:3456".parse().unwrap();
        let d6: Ipv6Addr = "ff02::1:ffff:2".parse().unwrap();
        let mut ph = Vec::new();
        ph.extend_from_slice(&s6.octets());
        ph.extend_from_slice(&d6.octets());
        ph.extend_from_slice(&[0, 1, 0x23, 0x45, 0, 0, 0, 58]);
        assert_eq!(pseudo_v6(s6, d6, 58, 0x12345), naive(&ph));
    }

    #[test]
    fn udp_golden_with_pseudo_header() {
        // UDP 10.0.2.15:68 -> 10.0.2.2:1234, payload "hi!"; checksum
        // computed independently (python) as 0x5948.
        let p = PseudoHeader::V4 {
            src: Ipv4Addr::new(10, 0, 2, 15),
            dst: Ipv4Addr::new(10, 0, 2, 2),
        };
        let mut udp = hex("0044 04d2 000b 0000 6869 21");
        assert_eq!(p.checksum(17, &udp), 0x5948);
        udp[6] = 0x59;
        udp[7] = 0x48;
        assert!(p.verify(17, &udp));
        udp[9] ^= 1;
        assert!(!p.verify(17, &udp));
    }

    #[test]
    fn incremental_update_matches_recompute() {
        let mut rng = Rng::new(3);
        for _ in 0..2000 {
            let mut d = [0u8; 40];
            rng.fill(&mut d);
            d[16] = 0;
            d[17] = 0;
            let c = checksum(&d);
            // A 16-bit field at 4.
            let old16 = u16::from_be_bytes([d[4], d[5]]);
            let new16 = rng.next_u64() as u16;
            d[4..6].copy_from_slice(&new16.to_be_bytes());
            let c1 = update16(c, old16, new16);
            assert_eq!(fold(u64::from(c1)), fold(u64::from(checksum(&d))));
        }
    }

    #[test]
    #[ignore = "micro-benchmark; run with --release --ignored --nocapture"]
    fn throughput() {
        let buf = vec![0xa5u8; 65536];
        let start = std::time::Instant::now();
        let mut acc = 0u32;
        let rounds = 20_000;
        for _ in 0..rounds {
            acc = combine(acc, sum(std::hint::black_box(&buf)));
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "checksum: {:.2} GB/s ({acc:#x})",
            (buf.len() * rounds) as f64 / secs / 1e9
        );
    }
}
