//! The split-virtqueue descriptor walker: every chain the driver offers is
//! checked here before a byte of it is read or written.
//!
//! `virtio-queue` keeps the rings (available index, used ring, EVENT_IDX
//! suppression); this file walks one chain from its head through the
//! descriptor table. Its own iterator ends silently on a bad descriptor,
//! which cannot tell a short chain from a hostile one, so the walk is done
//! here with an error for each way a driver can lie: an index past the
//! table, a loop, an indirect table (not negotiated), a buffer of the wrong
//! direction, a length past 4 GiB, or an address outside guest memory.
#![forbid(unsafe_code)]

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;

/// How a chain broke the rules; the device is reset for any of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A descriptor index at or past the queue size.
    Index(u16),
    /// More descriptors than the queue holds: the chain loops.
    Loop,
    /// An indirect descriptor (VIRTIO_F_INDIRECT_DESC is not offered).
    Indirect,
    /// A device-writable buffer in a chain to read, or the reverse.
    Direction,
    /// The chain adds up to more than 4 GiB.
    TooLong,
    /// A descriptor, or the buffer it names, lies outside guest memory.
    Memory(u64),
    /// The rings themselves could not be read or written.
    Ring,
    /// A chain too short for the virtio-net header.
    Short,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Index(i) => write!(f, "descriptor index {i} is past the queue"),
            Fault::Loop => write!(f, "descriptor chain loops"),
            Fault::Indirect => write!(f, "indirect descriptor without INDIRECT_DESC"),
            Fault::Direction => write!(f, "buffer of the wrong direction"),
            Fault::TooLong => write!(f, "descriptor chain longer than 4 GiB"),
            Fault::Memory(a) => write!(f, "address {a:#x} outside guest memory"),
            Fault::Ring => write!(f, "virtqueue rings outside guest memory"),
            Fault::Short => write!(f, "descriptor chain shorter than the virtio-net header"),
        }
    }
}

/// One buffer of a chain: guest address and length, already checked to lie
/// inside guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
}

/// Walk the chain at `head` of a table of `size` descriptors at `table`,
/// calling `each` for every buffer in order. `writable` says which
/// direction every buffer must have (device-writable for the receive
/// queue). Returns the chain's total length.
pub fn walk<M: GuestMemoryBackend>(
    mem: &M,
    table: GuestAddress,
    size: u16,
    head: u16,
    writable: bool,
    mut each: impl FnMut(Segment) -> Result<(), Fault>,
) -> Result<u32, Fault> {
    let mut idx = head;
    let mut total: u32 = 0;
    for n in 0..=size {
        if idx >= size {
            return Err(Fault::Index(idx));
        }
        if n == size {
            break;
        }
        let at = table
            .checked_add(u64::from(idx) * 16)
            .ok_or(Fault::Memory(table.raw_value()))?;
        let d: Descriptor = mem
            .read_obj(at)
            .map_err(|_| Fault::Memory(at.raw_value()))?;
        let flags = d.flags();
        if flags & F_INDIRECT != 0 {
            return Err(Fault::Indirect);
        }
        if (flags & F_WRITE != 0) != writable {
            return Err(Fault::Direction);
        }
        total = total.checked_add(d.len()).ok_or(Fault::TooLong)?;
        if d.len() > 0 {
            let last = d
                .addr()
                .checked_add(u64::from(d.len()) - 1)
                .ok_or(Fault::Memory(d.addr().raw_value()))?;
            // Both ends in memory and in one region: a buffer is one slice.
            match (mem.find_region(d.addr()), mem.find_region(last)) {
                (Some(a), Some(b)) if std::ptr::eq(a, b) => {}
                _ => return Err(Fault::Memory(d.addr().raw_value())),
            }
        }
        each(Segment {
            addr: d.addr(),
            len: d.len(),
        })?;
        if flags & F_NEXT == 0 {
            return Ok(total);
        }
        idx = d.next();
    }
    Err(Fault::Loop)
}

/// Copy a chain of device-readable buffers into `out` (the virtio-net
/// header first, then the frame). Returns the bytes copied; a chain longer
/// than `out` is cut (the caller counts it as oversize).
pub fn read_chain<M: GuestMemoryBackend>(
    mem: &M,
    table: GuestAddress,
    size: u16,
    head: u16,
    out: &mut [u8],
) -> Result<(usize, u32), Fault> {
    let mut n = 0usize;
    let total = walk(mem, table, size, head, false, |s| {
        let room = out.len() - n;
        let take = (s.len as usize).min(room);
        if take > 0 {
            mem.read_slice(&mut out[n..n + take], s.addr)
                .map_err(|_| Fault::Memory(s.addr.raw_value()))?;
            n += take;
        }
        Ok(())
    })?;
    Ok((n, total))
}

/// Write `parts` (concatenated) into a chain of device-writable buffers,
/// starting `skip` bytes into the chain. Returns how many bytes of `parts`
/// went in (less than all when the chain is shorter).
pub fn write_chain<M: GuestMemoryBackend>(
    mem: &M,
    table: GuestAddress,
    size: u16,
    head: u16,
    parts: &[&[u8]],
) -> Result<usize, Fault> {
    let mut part = 0usize;
    let mut off = 0usize;
    let mut done = 0usize;
    walk(mem, table, size, head, true, |s| {
        let mut addr = s.addr;
        let mut room = s.len as usize;
        while room > 0 && part < parts.len() {
            let src = &parts[part][off..];
            let take = src.len().min(room);
            mem.write_slice(&src[..take], addr)
                .map_err(|_| Fault::Memory(addr.raw_value()))?;
            addr = addr.unchecked_add(take as u64);
            room -= take;
            off += take;
            done += take;
            if off == parts[part].len() {
                part += 1;
                off = 0;
            }
        }
        Ok(())
    })?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    const TABLE: u64 = 0x1000;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
    }

    fn put(m: &GuestMemoryMmap, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        m.write_obj(
            Descriptor::new(addr, len, flags, next),
            GuestAddress(TABLE + 16 * u64::from(i)),
        )
        .unwrap();
    }

    #[test]
    fn reads_and_writes_a_chain_across_buffers() {
        let m = mem();
        m.write_slice(b"hello ", GuestAddress(0x4000)).unwrap();
        m.write_slice(b"world", GuestAddress(0x5000)).unwrap();
        put(&m, 0, 0x4000, 6, F_NEXT, 3);
        put(&m, 3, 0x5000, 5, 0, 0);
        let mut out = [0u8; 32];
        assert_eq!(
            read_chain(&m, GuestAddress(TABLE), 8, 0, &mut out),
            Ok((11, 11))
        );
        assert_eq!(&out[..11], b"hello world");
        // Cut to the buffer, total still reported.
        assert_eq!(
            read_chain(&m, GuestAddress(TABLE), 8, 0, &mut out[..4]),
            Ok((4, 11))
        );

        put(&m, 1, 0x6000, 4, F_NEXT | F_WRITE, 2);
        put(&m, 2, 0x7000, 100, F_WRITE, 0);
        let n = write_chain(&m, GuestAddress(TABLE), 8, 1, &[b"ab", b"cdefg"]).unwrap();
        assert_eq!(n, 7);
        let mut got = [0u8; 4];
        m.read_slice(&mut got, GuestAddress(0x6000)).unwrap();
        assert_eq!(&got, b"abcd");
        m.read_slice(&mut got[..3], GuestAddress(0x7000)).unwrap();
        assert_eq!(&got[..3], b"efg");
    }

    #[test]
    fn every_hostile_chain_is_an_error() {
        let m = mem();
        let t = GuestAddress(TABLE);
        let mut none = |_| Ok(());
        // A loop: 0 -> 1 -> 0.
        put(&m, 0, 0x4000, 10, F_NEXT, 1);
        put(&m, 1, 0x4000, 10, F_NEXT, 0);
        assert_eq!(walk(&m, t, 8, 0, false, &mut none), Err(Fault::Loop));
        // A self-loop in a one-descriptor queue.
        assert_eq!(walk(&m, t, 1, 0, false, &mut none), Err(Fault::Index(1)));
        // next past the table.
        put(&m, 0, 0x4000, 10, F_NEXT, 9);
        assert_eq!(walk(&m, t, 8, 0, false, &mut none), Err(Fault::Index(9)));
        assert_eq!(walk(&m, t, 8, 8, false, &mut none), Err(Fault::Index(8)));
        // Indirect, wrong direction both ways.
        put(&m, 0, 0x4000, 16, F_INDIRECT, 0);
        assert_eq!(walk(&m, t, 8, 0, false, &mut none), Err(Fault::Indirect));
        put(&m, 0, 0x4000, 10, F_WRITE, 0);
        assert_eq!(walk(&m, t, 8, 0, false, &mut none), Err(Fault::Direction));
        put(&m, 0, 0x4000, 10, 0, 0);
        assert_eq!(walk(&m, t, 8, 0, true, &mut none), Err(Fault::Direction));
        // Outside memory, straddling its end, wrapping the address space.
        put(&m, 0, 0x20000, 10, 0, 0);
        assert_eq!(
            walk(&m, t, 8, 0, false, &mut none),
            Err(Fault::Memory(0x20000))
        );
        put(&m, 0, 0xfff0, 0x20, 0, 0);
        assert!(matches!(
            walk(&m, t, 8, 0, false, &mut none),
            Err(Fault::Memory(_))
        ));
        put(&m, 0, u64::MAX - 4, 10, 0, 0);
        assert!(matches!(
            walk(&m, t, 8, 0, false, &mut none),
            Err(Fault::Memory(_))
        ));
        // More than 4 GiB in total.
        put(&m, 0, 0x4000, u32::MAX, F_NEXT, 1);
        put(&m, 1, 0x4000, 2, 0, 0);
        assert!(walk(&m, t, 8, 0, false, &mut none).is_err());
        // The table itself outside memory.
        assert!(matches!(
            walk(&m, GuestAddress(0xfff8), 8, 0, false, &mut none),
            Err(Fault::Memory(_))
        ));
    }
}
