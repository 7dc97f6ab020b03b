//! Reassembly of fragmented IPv4 and IPv6 datagrams from the guest.
//!
//! The guest fragments what is larger than its MTU; the host socket wants
//! whole datagrams. Everything here is sized before the guest sends a byte:
//! at most [`MAX_IN_FLIGHT`] datagrams are reassembled at once, each in a
//! buffer of [`MAX_DATAGRAM`] bytes taken from a pool that grows lazily up to
//! that count and never beyond (16 × 64 KiB). Received ranges are tracked in
//! a bitmap of 8-byte blocks, so an overlap is seen at once and the whole
//! datagram is dropped (RFC 5722 for IPv6, and the only safe reading for
//! IPv4). A fragment that would end past [`MAX_DATAGRAM`], a non-final
//! fragment whose length is not a multiple of 8, a second "last" fragment
//! or an incomplete datagram older than [`TIMEOUT`] is dropped too. When
//! every slot is busy the oldest datagram gives way.
//!
//! libslirp 4.7 dies with SIGBUS on one 126-byte IPv4 fragment at offset
//! 65528; here that fragment is simply refused ([`Drop::Oversize`]).
#![forbid(unsafe_code)]

use crate::counters::Counters;
use crate::wire::{ipv4, ipv6};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Datagrams reassembled at the same time.
pub const MAX_IN_FLIGHT: usize = 16;
/// Largest reassembled payload (the IP payload, headers excluded).
pub const MAX_DATAGRAM: usize = 65535;
/// How long an incomplete datagram waits for its missing fragments.
pub const TIMEOUT: Duration = Duration::from_secs(5);

const BLOCKS: usize = MAX_DATAGRAM.div_ceil(8);
const WORDS: usize = BLOCKS.div_ceil(64);

/// What identifies the fragments of one datagram: RFC 791 (src, dst,
/// protocol, id) and RFC 8200 (src, dst, id; `proto` is the next header
/// after the fragment header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub id: u32,
}

/// One fragment, as the dispatcher parsed it.
#[derive(Clone, Copy, Debug)]
pub struct Fragment<'a> {
    /// Offset of `data` within the datagram's payload, in bytes.
    pub offset: usize,
    /// More fragments follow (IPv4 MF, IPv6 M).
    pub more: bool,
    /// Largest payload the reassembled datagram may have: 65535 minus the
    /// IPv4 header (IPv4's total length is 16 bits), or 65535 for IPv6.
    pub limit: usize,
    /// TTL / hop limit of the first fragment is what the datagram carries.
    pub ttl: u8,
    pub data: &'a [u8],
}

/// Why a fragment (and the datagram it belonged to) was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    /// It overlaps bytes already received, or repeats the final fragment.
    Overlap,
    /// It would end past the largest datagram, or past a known end.
    Oversize,
    /// A non-final fragment whose length is not a multiple of 8, or empty.
    Malformed,
    /// No buffer could be had (the pool was lent out and not given back).
    NoBuffer,
}

/// A reassembled datagram, lent out of the pool: hand it back with
/// [`Reassembler::give_back`] once dispatched.
pub struct Datagram {
    buf: Box<[u8]>,
    seen: Box<[u64; WORDS]>,
    len: usize,
    pub key: Key,
    pub ttl: u8,
}

impl Datagram {
    pub fn payload(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

type Buffers = (Box<[u8]>, Box<[u64; WORDS]>);

struct Slot {
    key: Key,
    started: Instant,
    buf: Box<[u8]>,
    /// One bit per 8-byte block received.
    seen: Box<[u64; WORDS]>,
    /// Bytes received so far.
    got: usize,
    /// The payload length, once the final fragment arrived.
    end: Option<usize>,
    ttl: u8,
}

/// The reassembly table.
pub struct Reassembler {
    slots: Vec<Slot>,
    /// Buffers not in use, allocated once and kept.
    free: Vec<Buffers>,
    /// Buffers ever allocated (at most [`MAX_IN_FLIGHT`]).
    allocated: usize,
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new()
    }
}

impl Reassembler {
    pub fn new() -> Reassembler {
        Reassembler {
            slots: Vec::with_capacity(MAX_IN_FLIGHT),
            free: Vec::with_capacity(MAX_IN_FLIGHT),
            allocated: 0,
        }
    }

    /// Datagrams waiting for more fragments.
    pub fn in_flight(&self) -> usize {
        self.slots.len()
    }

    /// Bytes of buffer ever allocated (at most 16 × (64 KiB + 1 KiB)).
    pub fn allocated_bytes(&self) -> usize {
        self.allocated * (MAX_DATAGRAM + WORDS * 8)
    }

    fn take_buffers(&mut self) -> Option<Buffers> {
        if let Some(b) = self.free.pop() {
            return Some(b);
        }
        if self.allocated < MAX_IN_FLIGHT {
            self.allocated += 1;
            return Some((
                vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
                Box::new([0u64; WORDS]),
            ));
        }
        // Every buffer is busy: the oldest incomplete datagram gives way.
        let oldest = (0..self.slots.len()).min_by_key(|&i| self.slots[i].started)?;
        let s = self.slots.swap_remove(oldest);
        Some((s.buf, s.seen))
    }

    fn release(&mut self, i: usize) {
        if i < self.slots.len() {
            let s = self.slots.swap_remove(i);
            self.free.push((s.buf, s.seen));
        }
    }

    /// Drop the datagram slot `i` and report why.
    fn fail(&mut self, i: usize, why: Drop) -> Result<Option<Datagram>, Drop> {
        self.release(i);
        Err(why)
    }

    /// Add a fragment. `Ok(Some(_))` is the whole datagram, `Ok(None)`
    /// means more fragments are needed; an error drops the fragment and
    /// the datagram it belonged to.
    pub fn push(
        &mut self,
        key: Key,
        frag: Fragment<'_>,
        now: Instant,
    ) -> Result<Option<Datagram>, Drop> {
        let existing = self.slots.iter().position(|s| s.key == key);
        let len = frag.data.len();
        let end = frag.offset.saturating_add(len);
        let bad = if end > frag.limit.min(MAX_DATAGRAM) {
            Some(Drop::Oversize)
        } else if frag.offset % 8 != 0 || (frag.more && (len == 0 || len % 8 != 0)) {
            Some(Drop::Malformed)
        } else {
            None
        };
        if let Some(why) = bad {
            return match existing {
                Some(i) => self.fail(i, why),
                None => Err(why),
            };
        }
        let i = match existing {
            Some(i) => i,
            None => {
                let Some((buf, mut seen)) = self.take_buffers() else {
                    return Err(Drop::NoBuffer);
                };
                seen.fill(0);
                self.slots.push(Slot {
                    key,
                    started: now,
                    buf,
                    seen,
                    got: 0,
                    end: None,
                    ttl: frag.ttl,
                });
                self.slots.len() - 1
            }
        };
        let s = &mut self.slots[i];
        if !frag.more {
            // The final fragment fixes the end: nothing may lie past it,
            // and a second final fragment is a conflict.
            if s.end.is_some() {
                return self.fail(i, Drop::Overlap);
            }
            if end < highest_end(&s.seen) {
                return self.fail(i, Drop::Oversize);
            }
            s.end = Some(end);
        } else if s.end.is_some_and(|e| end > e) {
            return self.fail(i, Drop::Oversize);
        }
        let (b0, b1) = (frag.offset / 8, end.div_ceil(8));
        if any_set(&s.seen, b0, b1) {
            return self.fail(i, Drop::Overlap);
        }
        let Some(dst) = s.buf.get_mut(frag.offset..end) else {
            return self.fail(i, Drop::Oversize);
        };
        dst.copy_from_slice(frag.data);
        set_range(&mut s.seen, b0, b1);
        if frag.offset == 0 {
            s.ttl = frag.ttl;
        }
        s.got += len;
        match s.end {
            Some(e) if s.got == e => {
                let s = self.slots.swap_remove(i);
                Ok(Some(Datagram {
                    buf: s.buf,
                    seen: s.seen,
                    len: e,
                    key: s.key,
                    ttl: s.ttl,
                }))
            }
            _ => Ok(None),
        }
    }

    /// An IPv4 fragment whose header parsed as `repr`: once the datagram is
    /// whole, its header as if never fragmented, and its payload.
    pub fn push_v4(
        &mut self,
        repr: &ipv4::Repr,
        header_len: usize,
        data: &[u8],
        now: Instant,
        counters: &mut Counters,
    ) -> Option<(ipv4::Repr, Datagram)> {
        let key = Key {
            src: IpAddr::V4(repr.src),
            dst: IpAddr::V4(repr.dst),
            proto: repr.protocol,
            id: repr.ident as u32,
        };
        let f = Fragment {
            offset: repr.frag_offset as usize,
            more: repr.more_frags,
            limit: u16::MAX as usize - header_len,
            ttl: repr.ttl,
            data,
        };
        let d = self.push_counted(key, f, now, counters)?;
        let whole = ipv4::Repr {
            more_frags: false,
            frag_offset: 0,
            ttl: d.ttl,
            payload_len: d.payload().len() as u16,
            ..*repr
        };
        Some((whole, d))
    }

    /// An IPv6 fragment: `ext` is what the extension walk found (the
    /// fragment header and where `data`, the fragment's payload, begins).
    pub fn push_v6(
        &mut self,
        repr: &ipv6::Repr,
        ext: &ipv6::ExtHeaders,
        frag: &ipv6::FragmentInfo,
        data: &[u8],
        now: Instant,
        counters: &mut Counters,
    ) -> Option<Datagram> {
        let key = Key {
            src: IpAddr::V6(repr.src),
            dst: IpAddr::V6(repr.dst),
            proto: ext.next_header,
            id: frag.ident,
        };
        let f = Fragment {
            offset: frag.offset as usize,
            more: frag.more,
            // The unfragmentable part stays; the fragment header goes.
            limit: (u16::MAX as usize + 8).saturating_sub(ext.offset),
            ttl: repr.hop_limit,
            data,
        };
        self.push_counted(key, f, now, counters)
    }

    fn push_counted(
        &mut self,
        key: Key,
        f: Fragment<'_>,
        now: Instant,
        counters: &mut Counters,
    ) -> Option<Datagram> {
        match self.push(key, f, now) {
            Ok(None) => None,
            Ok(Some(d)) => {
                counters.frag_reassembled += 1;
                Some(d)
            }
            Err(_) => {
                counters.frag_dropped += 1;
                None
            }
        }
    }

    /// Return a datagram's buffers to the pool.
    pub fn give_back(&mut self, d: Datagram) {
        self.free.push((d.buf, d.seen));
    }

    /// Drop datagrams that waited too long; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.slots.len();
        let mut i = 0;
        while i < self.slots.len() {
            if now.saturating_duration_since(self.slots[i].started) > TIMEOUT {
                self.release(i);
            } else {
                i += 1;
            }
        }
        before - self.slots.len()
    }
}

fn any_set(bits: &[u64; WORDS], from: usize, to: usize) -> bool {
    (from..to.min(BLOCKS)).any(|b| bits[b / 64] & (1 << (b % 64)) != 0)
}

fn set_range(bits: &mut [u64; WORDS], from: usize, to: usize) {
    for b in from..to.min(BLOCKS) {
        bits[b / 64] |= 1 << (b % 64);
    }
}

/// End (in bytes) of the highest block received, 0 if none.
fn highest_end(bits: &[u64; WORDS]) -> usize {
    for (w, &v) in bits.iter().enumerate().rev() {
        if v != 0 {
            return (w * 64 + 63 - v.leading_zeros() as usize + 1) * 8;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> Key {
        Key {
            src: "10.0.2.15".parse().unwrap(),
            dst: "10.0.2.2".parse().unwrap(),
            proto: 17,
            id,
        }
    }

    fn frag(offset: usize, more: bool, data: &[u8]) -> Fragment<'_> {
        Fragment {
            offset,
            more,
            limit: 65535 - 20,
            ttl: 64,
            data,
        }
    }

    #[test]
    fn reassembles_out_of_order() {
        let mut r = Reassembler::new();
        let now = Instant::now();
        let data: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
        assert!(r
            .push(key(1), frag(2960, false, &data[2960..]), now)
            .unwrap()
            .is_none());
        assert!(r
            .push(key(1), frag(0, true, &data[..1480]), now)
            .unwrap()
            .is_none());
        let d = r
            .push(key(1), frag(1480, true, &data[1480..2960]), now)
            .unwrap()
            .unwrap();
        assert_eq!(d.payload(), &data[..]);
        assert_eq!(d.key, key(1));
        r.give_back(d);
        assert_eq!(r.in_flight(), 0);
    }

    #[test]
    fn slirp_sigbus_fragment_is_refused() {
        // One 126-byte fragment at offset 65528: libslirp 4.7 dies on it.
        let mut r = Reassembler::new();
        let data = [0xaau8; 126];
        assert_eq!(
            r.push(key(7), frag(65528, false, &data), Instant::now())
                .err(),
            Some(Drop::Oversize)
        );
        assert_eq!(r.in_flight(), 0);
        assert_eq!(r.allocated_bytes(), 0);
        // Also as a middle fragment, and at the IPv6 limit.
        let mut f = frag(65528, true, &data[..120]);
        assert_eq!(
            r.push(key(7), f, Instant::now()).err(),
            Some(Drop::Oversize)
        );
        f.limit = 65535;
        assert_eq!(
            r.push(key(7), f, Instant::now()).err(),
            Some(Drop::Oversize)
        );
    }

    #[test]
    fn overlap_drops_the_datagram() {
        let mut r = Reassembler::new();
        let now = Instant::now();
        let a = [1u8; 16];
        assert!(r.push(key(2), frag(0, true, &a), now).unwrap().is_none());
        assert_eq!(
            r.push(key(2), frag(8, true, &a), now).err(),
            Some(Drop::Overlap)
        );
        assert_eq!(r.in_flight(), 0);
        // A later fragment starts afresh; the first half is gone.
        assert!(r.push(key(2), frag(16, false, &a), now).unwrap().is_none());
        assert_eq!(r.in_flight(), 1);
        // Duplicate final fragment.
        assert_eq!(
            r.push(key(2), frag(16, false, &a), now).err(),
            Some(Drop::Overlap)
        );
    }

    #[test]
    fn data_past_the_end_is_refused() {
        let mut r = Reassembler::new();
        let now = Instant::now();
        let a = [1u8; 16];
        assert!(r.push(key(3), frag(32, true, &a), now).unwrap().is_none());
        // Final fragment ending before data already received.
        assert_eq!(
            r.push(key(3), frag(0, false, &a), now).err(),
            Some(Drop::Oversize)
        );
        assert!(r.push(key(3), frag(16, false, &a), now).unwrap().is_none());
        assert_eq!(
            r.push(key(3), frag(32, true, &a), now).err(),
            Some(Drop::Oversize)
        );
        assert_eq!(r.in_flight(), 0);
    }

    #[test]
    fn malformed_lengths() {
        let mut r = Reassembler::new();
        let now = Instant::now();
        assert_eq!(
            r.push(key(4), frag(0, true, &[1; 10]), now).err(),
            Some(Drop::Malformed)
        );
        assert_eq!(
            r.push(key(4), frag(0, true, &[]), now).err(),
            Some(Drop::Malformed)
        );
        assert_eq!(
            r.push(key(4), frag(3, false, &[1; 8]), now).err(),
            Some(Drop::Malformed)
        );
        assert_eq!(r.in_flight(), 0);
    }

    #[test]
    fn flood_stays_bounded_and_expires() {
        let mut r = Reassembler::new();
        let t0 = Instant::now();
        let a = [9u8; 1480];
        for id in 0..10_000 {
            let _ = r.push(key(id), frag((id as usize % 40) * 1480, true, &a), t0);
            assert!(r.in_flight() <= MAX_IN_FLIGHT);
        }
        assert!(r.allocated_bytes() <= MAX_IN_FLIGHT * (MAX_DATAGRAM + 1024));
        assert_eq!(r.in_flight(), MAX_IN_FLIGHT);
        assert_eq!(r.expire(t0 + TIMEOUT / 2), 0);
        assert_eq!(
            r.expire(t0 + TIMEOUT + Duration::from_millis(1)),
            MAX_IN_FLIGHT
        );
        // The pool is reused, not grown, and still works.
        let d = r
            .push(key(1), frag(0, false, &a[..100]), t0)
            .unwrap()
            .unwrap();
        assert_eq!(d.payload(), &a[..100]);
        r.give_back(d);
        assert_eq!(
            r.allocated_bytes(),
            MAX_IN_FLIGHT * (MAX_DATAGRAM + WORDS * 8)
        );
    }

    #[test]
    fn random_fragments_never_panic() {
        let mut r = Reassembler::new();
        let now = Instant::now();
        let mut rng = crate::rng::Rng::new(0x1234_5678_9abc_def0);
        let buf = [5u8; 2048];
        for _ in 0..50_000 {
            let x = rng.next_u64();
            let off = (x as usize % 70_000) & !7;
            let len = (x >> 20) as usize % 2048;
            let more = x & (1 << 40) != 0;
            if let Ok(Some(d)) =
                r.push(key((x >> 50) as u32 % 4), frag(off, more, &buf[..len]), now)
            {
                assert!(d.payload().len() <= MAX_DATAGRAM);
                r.give_back(d);
            }
            assert!(r.in_flight() <= MAX_IN_FLIGHT);
        }
    }
}
