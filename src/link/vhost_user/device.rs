//! The virtio-net device behind the vhost-user protocol: what the
//! control requests set up (features, memory table, rings, eventfds) and
//! what the data path does with it (frames out of the transmit ring, into
//! the receive ring). rust-vmm's `vhost` crate parses and answers the
//! messages, `virtio-queue` keeps the rings, `vm-memory` maps the memfd
//! regions `MAP_SHARED` without `PROT_EXEC`.
//!
//! A driver that breaks the rules (a chain that loops or leaves guest
//! memory, rings outside it, a header too short) gets its device reset:
//! both rings stop, the error eventfds fire, and nothing of the chain is
//! used. The VMM brings the rings back by setting them up again.
//!
//! #syscalls: read write poll|ppoll mmap(2&PROT_EXEC=0) munmap newfstatat|fstat|statx close
#![forbid(unsafe_code)]

use super::virtq;
use crate::wire::virtio_net as vnet;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::Arc;
use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserSharedMsg, VhostUserSingleMemoryRegion, VhostUserVirtioFeatures,
    VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{
    Backend as BackendChannel, Error as VuError, GpuBackend, Result as VuResult,
    VhostUserBackendReqHandlerMut,
};
use vhost::VhostUserMemoryRegionBase;
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_net::*;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

use crate::link::{PartialCsum, RxMeta};
use virtq::Fault;

/// Receive queue (device to driver) and transmit queue.
pub const RXQ: usize = 0;
pub const TXQ: usize = 1;
/// Largest ring airlock accepts (QEMU's and Linux's maximum).
pub const MAX_QUEUE: u16 = 1024;
/// The MAC the device reports: QEMU's default for a first NIC.
pub const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// Memory regions accepted in one table (the protocol's baseline).
const MAX_REGIONS: usize = 8;
/// How long a flush waits for the driver to post receive buffers.
const RX_STALL_MS: u16 = 200;
/// Receive buffers one frame may span (MRG_RXBUF).
const MAX_MERGE: usize = 256;

/// Virtio features offered: VERSION_1, the ring features, the net device
/// fields, and the offloads that let the guest send and take 64 KiB TCP
/// segments at any MTU and leave TCP and UDP checksums partial both ways
/// (airlock ends those flows itself, so a partial checksum from the guest
/// is never computed, and one toward it is the guest's to finish).
pub const VIRTIO_FEATURES: u64 = 1 << VIRTIO_F_VERSION_1
    | 1 << VIRTIO_RING_F_EVENT_IDX
    | 1 << VIRTIO_NET_F_MRG_RXBUF
    | 1 << VIRTIO_NET_F_MAC
    | 1 << VIRTIO_NET_F_MTU
    | 1 << VIRTIO_NET_F_STATUS
    | 1 << VIRTIO_NET_F_CSUM
    | 1 << VIRTIO_NET_F_GUEST_CSUM
    | 1 << VIRTIO_NET_F_HOST_TSO4
    | 1 << VIRTIO_NET_F_HOST_TSO6
    | 1 << VIRTIO_NET_F_GUEST_TSO4
    | 1 << VIRTIO_NET_F_GUEST_TSO6
    | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();

/// Protocol features: acknowledged requests and the config space; one
/// queue pair, so no MQ.
pub fn protocol_features() -> VhostUserProtocolFeatures {
    VhostUserProtocolFeatures::REPLY_ACK | VhostUserProtocolFeatures::CONFIG
}

/// Counters for `--debug`.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Device resets for a driver that broke the rules.
    pub faults: u64,
    /// Requests answered with an error.
    pub bad_requests: u64,
    /// Guest frames longer than [`MAX_FRAME`].
    pub tx_oversize: u64,
    /// Frames to the guest dropped: rings not running, no buffers in time,
    /// or (without MRG_RXBUF) a buffer too small.
    pub rx_dropped: u64,
    pub calls: u64,
    /// Frames to the guest built in its receive buffers, and copied into
    /// them at a flush.
    pub rx_in_place: u64,
    pub rx_copied: u64,
}

/// Guest memory and where each region sits in the VMM's address space
/// (ring addresses arrive as VMM virtual addresses).
struct Memory {
    /// Shared with the receive buffers frames are being built in.
    guest: Arc<GuestMemoryMmap>,
    /// (VMM address, size, guest physical address)
    table: Vec<(u64, u64, u64)>,
}

impl Memory {
    fn to_guest(&self, vmm: u64) -> Option<GuestAddress> {
        self.table.iter().find_map(|&(va, size, gpa)| {
            let off = vmm.checked_sub(va)?;
            (off < size).then(|| GuestAddress(gpa + off))
        })
    }
}

struct Vring {
    queue: Queue,
    /// Descriptor table, available and used rings, as VMM addresses.
    addrs: Option<(u64, u64, u64)>,
    kick: Option<File>,
    call: Option<File>,
    err: Option<File>,
    enabled: bool,
    /// Reset after a fault; set up again by the VMM.
    broken: bool,
}

impl Vring {
    fn new() -> Vring {
        Vring {
            queue: Queue::new(MAX_QUEUE).expect("a power of two"),
            addrs: None,
            kick: None,
            call: None,
            err: None,
            enabled: false,
            broken: false,
        }
    }

    fn running(&self) -> bool {
        self.queue.ready() && self.kick.is_some() && self.enabled && !self.broken
    }

    fn signal(&self, stats: &mut Stats) {
        if let Some(c) = &self.call {
            stats.calls += 1;
            let _ = (&*c).write(&1u64.to_ne_bytes());
        }
    }
}

/// The virtio-net device: what the control requests set up and the data
/// path uses.
pub struct Device {
    features: u64,
    protocol: u64,
    mtu: u16,
    mem: Option<Memory>,
    rings: [Vring; 2],
    /// The link's own epoll set: control socket and transmit kick.
    epoll: Arc<Epoll>,
    pub stats: Stats,
    /// Per-frame scratch: (head, bytes written) of the buffers one frame
    /// takes, kept to avoid an allocation per frame.
    heads: Vec<(u16, u32)>,
    /// How long a flush waits for receive buffers ([`RX_STALL_MS`]).
    stall_ms: u16,
}

/// A receive buffer taken to build one frame in place: its chain's head
/// and its first buffer's bytes (the header, then the frame).
pub struct Held {
    head: u16,
    buf: crate::sys::GuestBuf,
}

impl Held {
    /// Where the frame goes, after the header.
    pub fn frame(&mut self) -> &mut [u8] {
        &mut self.buf.bytes()[vnet::HEADER_LEN..]
    }
}

/// Tokens in the link's own epoll set.
pub(super) const TOKEN_SOCKET: u64 = 0;
const TOKEN_KICK: u64 = 1;

fn bad(msg: &'static str) -> VuError {
    VuError::InvalidOperation(msg)
}

impl Device {
    pub(super) fn new(mtu: u16, epoll: Arc<Epoll>) -> Device {
        Device {
            features: 0,
            protocol: 0,
            mtu,
            mem: None,
            rings: [Vring::new(), Vring::new()],
            epoll,
            stats: Stats::default(),
            heads: Vec::with_capacity(MAX_MERGE),
            stall_ms: RX_STALL_MS,
        }
    }

    /// The transmit ring's kick eventfd, drained when the link wakes.
    pub(super) fn tx_kick(&self) -> Option<&File> {
        self.rings[TXQ].kick.as_ref()
    }

    fn has(&self, bit: u32) -> bool {
        self.features & (1 << bit) != 0
    }

    fn ring(&mut self, index: u32) -> VuResult<&mut Vring> {
        self.rings
            .get_mut(index as usize)
            .ok_or(VuError::InvalidParam)
    }

    /// Point the queue at its rings, translated through the memory table;
    /// a ring outside guest memory leaves the queue stopped.
    fn apply_addrs(&mut self, index: usize) {
        let Some(mem) = &self.mem else {
            self.rings[index].queue.set_ready(false);
            return;
        };
        let r = &mut self.rings[index];
        let ok = r.addrs.is_some_and(|(d, a, u)| {
            match (mem.to_guest(d), mem.to_guest(a), mem.to_guest(u)) {
                (Some(d), Some(a), Some(u)) => {
                    r.queue.try_set_desc_table_address(d).is_ok()
                        && r.queue.try_set_avail_ring_address(a).is_ok()
                        && r.queue.try_set_used_ring_address(u).is_ok()
                }
                _ => false,
            }
        });
        r.queue.set_ready(ok);
        r.queue.set_ready(ok && r.queue.is_valid(&*mem.guest));
    }

    fn update_kick_poll(&mut self, old: Option<&File>) {
        if let Some(f) = old {
            let _ = self.epoll.delete(f);
        }
        if let Some(f) = &self.rings[TXQ].kick {
            let _ = self
                .epoll
                .add(f, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_KICK));
        }
    }

    /// A driver broke the rules: stop both rings and tell the VMM.
    pub fn fault(&mut self, f: Fault) {
        self.stats.faults += 1;
        log::warn!("vhost-user: {f}: device reset");
        for r in &mut self.rings {
            r.broken = true;
            r.queue.set_ready(false);
            if let Some(e) = &r.err {
                let _ = (&*e).write(&1u64.to_ne_bytes());
            }
        }
    }

    fn reset(&mut self) {
        let old = self.rings[TXQ].kick.take();
        self.update_kick_poll(old.as_ref());
        self.rings = [Vring::new(), Vring::new()];
        self.features = 0;
        self.mem = None;
    }

    /// The config space (virtio 1.2 §5.1.4): mac, status, max pairs, mtu.
    fn config(&self) -> [u8; 12] {
        let mut c = [0u8; 12];
        c[..6].copy_from_slice(&GUEST_MAC);
        c[6..8].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes());
        c[10..12].copy_from_slice(&self.mtu.to_le_bytes());
        c
    }

    /// Take the next frame the driver sent into `buf` (virtio-net header,
    /// then the frame); `None` when the transmit ring is empty. Returns the
    /// range of `buf` that holds the frame, and its partial checksum.
    pub fn pop_tx(&mut self, buf: &mut [u8]) -> Result<Option<(usize, usize, RxMeta)>, Fault> {
        let Some(mem) = &self.mem else {
            return Ok(None);
        };
        let r = &mut self.rings[TXQ];
        if !r.running() {
            return Ok(None);
        }
        loop {
            let q = &mut r.queue;
            if pending(q, &mem.guest)? == 0 {
                // Ask for a kick, then look once more: a frame added in
                // between would otherwise wait for the next one.
                if q.enable_notification(&*mem.guest)
                    .map_err(|_| Fault::Ring)?
                {
                    continue;
                }
                return Ok(None);
            }
            let _ = q.disable_notification(&*mem.guest);
            let Some(chain) = q.pop_descriptor_chain(&*mem.guest) else {
                return Err(Fault::Ring);
            };
            let head = chain.head_index();
            let (n, total) = virtq::read_chain(
                &*mem.guest,
                GuestAddress(q.desc_table()),
                q.size(),
                head,
                buf,
            )?;
            q.add_used(&*mem.guest, head, 0).map_err(|_| Fault::Ring)?;
            if (total as usize) < vnet::HEADER_LEN {
                return Err(Fault::Short);
            }
            if total as usize > buf.len() {
                self.stats.tx_oversize += 1;
                continue;
            }
            let h = vnet::Repr::parse(&buf[..n]).map_err(|_| Fault::Short)?;
            // Offloaded checksum: passed on as the guest's claim, which the
            // stack checks against the frame (it may point anywhere).
            let partial = (h.flags & vnet::F_NEEDS_CSUM != 0).then_some(PartialCsum {
                start: h.csum_start,
                offset: h.csum_offset,
            });
            return Ok(Some((vnet::HEADER_LEN, n, RxMeta { partial })));
        }
    }

    /// Tell the driver about used transmit buffers, if it wants to know.
    pub fn notify_tx(&mut self) {
        let Some(mem) = &self.mem else { return };
        let r = &mut self.rings[TXQ];
        if r.running() && r.queue.needs_notification(&*mem.guest).unwrap_or(true) {
            r.signal(&mut self.stats);
        }
    }

    /// Whether frames can go to the guest at all.
    pub fn rx_running(&self) -> bool {
        self.mem.is_some() && self.rings[RXQ].running()
    }

    /// Place one frame in the guest's receive buffers. `Ok(false)`: no
    /// buffers came in time, or the frame does not fit; it is dropped.
    /// `partial`: its checksum is left for the guest (GUEST_CSUM only).
    pub fn push_rx(&mut self, frame: &[u8], partial: Option<PartialCsum>) -> Result<bool, Fault> {
        let merge = self.has(VIRTIO_NET_F_MRG_RXBUF);
        let mut hdr = [0u8; vnet::HEADER_LEN];
        self.rx_header_for(frame, partial)
            .emit(&mut hdr)
            .map_err(|_| Fault::Short)?;
        let Some(mem) = &self.mem else {
            return Ok(false);
        };
        let r = &mut self.rings[RXQ];
        let need = vnet::HEADER_LEN + frame.len();
        self.heads.clear();
        let mut placed = 0usize;
        while placed < need {
            let q = &mut r.queue;
            if pending(q, &mem.guest)? == 0 {
                if !wait_for_buffers(q, &mem.guest, r.kick.as_ref(), self.stall_ms)? {
                    for _ in 0..self.heads.len() {
                        q.go_to_previous_position();
                    }
                    return Ok(false);
                }
                continue;
            }
            let Some(chain) = q.pop_descriptor_chain(&*mem.guest) else {
                return Err(Fault::Ring);
            };
            let head = chain.head_index();
            let (table, size) = (GuestAddress(q.desc_table()), q.size());
            let n = if placed == 0 {
                virtq::write_chain(&*mem.guest, table, size, head, &[&hdr, frame])?
            } else {
                let rest = &frame[placed - vnet::HEADER_LEN..];
                virtq::write_chain(&*mem.guest, table, size, head, &[rest])?
            };
            if placed == 0 && n < vnet::HEADER_LEN {
                return Err(Fault::Short);
            }
            placed += n;
            self.heads.push((head, n as u32));
            let full = placed < need && (!merge || self.heads.len() == MAX_MERGE);
            if full {
                // One buffer must hold it all (no MRG_RXBUF), or it would
                // take more buffers than any real frame: drop, give back.
                for _ in 0..self.heads.len() {
                    q.go_to_previous_position();
                }
                return Ok(false);
            }
        }
        let (first, _) = self.heads[0];
        let q = &mut r.queue;
        if self.heads.len() > 1 {
            vnet::set_num_buffers(&mut hdr, self.heads.len() as u16).map_err(|_| Fault::Short)?;
            virtq::write_chain(
                &*mem.guest,
                GuestAddress(q.desc_table()),
                q.size(),
                first,
                &[&hdr],
            )?;
        }
        for &(head, len) in &self.heads {
            q.add_used(&*mem.guest, head, len)
                .map_err(|_| Fault::Ring)?;
        }
        self.stats.rx_copied += 1;
        Ok(true)
    }

    /// The header of a frame to the guest. With GUEST_CSUM, a checksum
    /// left partial is the guest's to finish (NEEDS_CSUM, as a tap or
    /// vhost-net backend hands over CHECKSUM_PARTIAL), and complete ones
    /// need no checking (DATA_VALID).
    fn rx_header(&self, partial: Option<PartialCsum>) -> vnet::Repr {
        let mut h = vnet::Repr::plain(1);
        if self.guest_csum() {
            h.flags = vnet::F_DATA_VALID;
            if let Some(p) = partial {
                h.flags = vnet::F_NEEDS_CSUM;
                h.csum_start = p.start;
                h.csum_offset = p.offset;
            }
        }
        h
    }

    /// Whether the guest takes partial checksums (GUEST_CSUM).
    pub fn guest_csum(&self) -> bool {
        self.has(VIRTIO_NET_F_GUEST_CSUM)
    }

    /// Whether the guest takes TCP segments of up to 64 KiB whatever its
    /// MTU: GUEST_TSO4 and GUEST_TSO6, which need GUEST_CSUM.
    pub fn guest_gso(&self) -> bool {
        self.has(VIRTIO_NET_F_GUEST_CSUM)
            && self.has(VIRTIO_NET_F_GUEST_TSO4)
            && self.has(VIRTIO_NET_F_GUEST_TSO6)
    }

    /// The header for `frame` toward the guest: a TCP frame longer than
    /// the MTU is a GSO segment (the guest takes it whole; `gso_size` is
    /// the MSS the MTU implies, for a guest that forwards it on).
    fn rx_header_for(&self, frame: &[u8], partial: Option<PartialCsum>) -> vnet::Repr {
        let mut h = self.rx_header(partial);
        let mtu = usize::from(self.mtu);
        if frame.len() <= ETHERNET_HEADER + mtu || !self.guest_gso() {
            return h;
        }
        if let Some((v6, headers)) = tcp_headers(frame).filter(|&(_, n)| n < mtu) {
            h.gso_type = if v6 { vnet::GSO_TCPV6 } else { vnet::GSO_TCPV4 };
            h.gso_size = (mtu - headers) as u16;
        }
        h
    }

    /// Take up to `max` receive buffers to build frames of up to
    /// `frame_len` bytes in, into `out`: chains whose first buffer holds
    /// the header and the whole frame. Stops at the first chain that does
    /// not (it stays for the copying path, [`Device::push_rx`]) and when
    /// the ring is empty; never waits. Returns whether a buffer was too
    /// small.
    pub fn hold_rx(
        &mut self,
        frame_len: usize,
        max: usize,
        out: &mut Vec<Held>,
    ) -> Result<bool, Fault> {
        let Some(mem) = &self.mem else {
            return Ok(false);
        };
        let r = &mut self.rings[RXQ];
        if !r.running() {
            return Ok(false);
        }
        let need = vnet::HEADER_LEN + frame_len;
        while out.len() < max {
            let q = &mut r.queue;
            if pending(q, &mem.guest)? == 0 {
                return Ok(false);
            }
            let Some(chain) = q.pop_descriptor_chain(&*mem.guest) else {
                return Err(Fault::Ring);
            };
            let head = chain.head_index();
            let mut first = None;
            virtq::walk(
                &*mem.guest,
                GuestAddress(q.desc_table()),
                q.size(),
                head,
                true,
                |s| {
                    first.get_or_insert(s);
                    Ok(())
                },
            )?;
            let buf = first
                .filter(|s| s.len as usize >= need)
                .and_then(|s| crate::sys::GuestBuf::new(&mem.guest, s.addr, need));
            let Some(buf) = buf else {
                q.go_to_previous_position();
                return Ok(true);
            };
            out.push(Held { head, buf });
        }
        Ok(false)
    }

    /// A held buffer now holds a frame of `len` bytes after its header,
    /// its checksum left `partial` for the guest (GUEST_CSUM only).
    pub fn place_held(
        &mut self,
        h: &mut Held,
        len: usize,
        partial: Option<PartialCsum>,
    ) -> Result<(), Fault> {
        let len = len.min(h.frame().len());
        let hdr = self.rx_header_for(&h.frame()[..len], partial);
        let Some(mem) = &self.mem else {
            return Err(Fault::Ring);
        };
        hdr.emit(h.buf.bytes()).map_err(|_| Fault::Short)?;
        self.stats.rx_in_place += u64::from(len > 0);
        self.rings[RXQ]
            .queue
            .add_used(&*mem.guest, h.head, (vnet::HEADER_LEN + len) as u32)
            .map_err(|_| Fault::Ring)
    }

    /// Give back the last `n` buffers taken, unused.
    pub fn release_held(&mut self, n: usize) {
        for _ in 0..n {
            self.rings[RXQ].queue.go_to_previous_position();
        }
    }

    /// Tell the driver about filled receive buffers, if it wants to know.
    pub fn notify_rx(&mut self) {
        let Some(mem) = &self.mem else { return };
        let r = &mut self.rings[RXQ];
        if r.running() && r.queue.needs_notification(&*mem.guest).unwrap_or(true) {
            r.signal(&mut self.stats);
        }
    }
}

/// The driver has no receive buffers: ask for a kick and wait for it, at
/// most `stall_ms`. True when there may be buffers now.
fn wait_for_buffers(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    kick: Option<&File>,
    stall_ms: u16,
) -> Result<bool, Fault> {
    if q.enable_notification(mem).map_err(|_| Fault::Ring)? {
        return Ok(true);
    }
    let Some(kick) = kick else { return Ok(false) };
    let mut fds = [PollFd::new(kick.as_fd(), PollFlags::POLLIN)];
    let ready = matches!(poll(&mut fds, PollTimeout::from(stall_ms)), Ok(n) if n > 0);
    if ready {
        let mut b = [0u8; 8];
        let _ = (&*kick).read(&mut b);
    }
    Ok(ready)
}

#[cfg(any(test, feature = "fuzzing"))]
impl Device {
    /// A device on `guest` as a VMM would leave it set up: identity
    /// address map, ring `q` at `q * 0x3000` (descriptors, then avail at
    /// +0x1000, used at +0x2000) with `sizes[q]` entries, both enabled, no
    /// waiting for buffers. For `fuzz_api`.
    pub fn fuzz(guest: GuestMemoryMmap, sizes: [u16; 2], features: u64) -> Option<Device> {
        use vm_memory::GuestMemoryBackend;
        let epoll = Arc::new(Epoll::new(nix::sys::epoll::EpollCreateFlags::EPOLL_CLOEXEC).ok()?);
        let mut d = Device::new(65520, epoll);
        d.stall_ms = 0;
        let size = guest.last_addr().0 + 1;
        d.mem = Some(Memory {
            guest: Arc::new(guest),
            table: vec![(0, size, 0)],
        });
        d.set_features(features & VIRTIO_FEATURES).ok()?;
        for (q, &n) in sizes.iter().enumerate() {
            let base = q as u64 * 0x3000;
            let r = &mut d.rings[q];
            r.queue.try_set_size(n).ok()?;
            r.addrs = Some((base, base + 0x1000, base + 0x2000));
            r.enabled = true;
            let efd = nix::sys::eventfd::EventFd::from_value_and_flags(
                0,
                nix::sys::eventfd::EfdFlags::EFD_NONBLOCK,
            )
            .ok()?;
            r.kick = Some(File::from(std::os::fd::OwnedFd::from(efd)));
            d.apply_addrs(q);
        }
        Some(d)
    }
}

/// Map one region the VMM sent; the file must hold all of it (a mapping
/// past the end of a memfd faults when touched).
fn map_region(r: &VhostUserMemoryRegion, file: File) -> VuResult<GuestRegionMmap> {
    let size = usize::try_from(r.memory_size).map_err(|_| VuError::InvalidParam)?;
    let end = r
        .mmap_offset
        .checked_add(r.memory_size)
        .ok_or(VuError::InvalidParam)?;
    let len = file.metadata().map_err(VuError::ReqHandlerError)?.len();
    if size == 0 || end > len || r.guest_phys_addr.checked_add(r.memory_size).is_none() {
        return Err(VuError::InvalidParam);
    }
    let region = MmapRegion::from_file(FileOffset::new(file, r.mmap_offset), size)
        .map_err(|_| VuError::InvalidParam)?;
    GuestRegionMmap::new(region, GuestAddress(r.guest_phys_addr)).ok_or(VuError::InvalidParam)
}

impl VhostUserBackendReqHandlerMut for Device {
    fn set_owner(&mut self) -> VuResult<()> {
        Ok(())
    }
    fn reset_owner(&mut self) -> VuResult<()> {
        self.reset();
        Ok(())
    }
    fn reset_device(&mut self) -> VuResult<()> {
        self.reset();
        Ok(())
    }
    fn get_features(&mut self) -> VuResult<u64> {
        Ok(VIRTIO_FEATURES)
    }
    fn set_features(&mut self, features: u64) -> VuResult<()> {
        if features & !VIRTIO_FEATURES != 0 {
            return Err(VuError::InvalidParam);
        }
        self.features = features;
        let event_idx = self.has(VIRTIO_RING_F_EVENT_IDX);
        for r in &mut self.rings {
            r.queue.set_event_idx(event_idx);
            // Without PROTOCOL_FEATURES a ring runs as soon as it is kicked.
            if features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() == 0 {
                r.enabled = true;
            }
        }
        Ok(())
    }
    fn set_mem_table(
        &mut self,
        ctx: &[VhostUserMemoryRegion],
        files: Vec<File>,
        _postcopy: Option<bool>,
    ) -> VuResult<Option<Vec<VhostUserMemoryRegionBase>>> {
        if ctx.is_empty() || ctx.len() > MAX_REGIONS || ctx.len() != files.len() {
            return Err(VuError::InvalidParam);
        }
        let mut regions = Vec::with_capacity(ctx.len());
        let mut table = Vec::with_capacity(ctx.len());
        for (r, f) in ctx.iter().zip(files) {
            regions.push(map_region(r, f)?);
            table.push((r.user_addr, r.memory_size, r.guest_phys_addr));
        }
        regions.sort_by_key(vm_memory::GuestMemoryRegion::start_addr);
        let guest = GuestMemoryMmap::from_regions(regions).map_err(|_| VuError::InvalidParam)?;
        // The old mappings go here; the rings are pointed at the new ones
        // (a table that no longer holds them stops them).
        self.mem = Some(Memory {
            guest: Arc::new(guest),
            table,
        });
        self.apply_addrs(RXQ);
        self.apply_addrs(TXQ);
        Ok(None)
    }
    fn set_vring_num(&mut self, index: u32, num: u32) -> VuResult<()> {
        let n = u16::try_from(num).map_err(|_| VuError::InvalidParam)?;
        self.ring(index)?
            .queue
            .try_set_size(n)
            .map_err(|_| VuError::InvalidParam)
    }
    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> VuResult<()> {
        let r = self.ring(index)?;
        r.addrs = Some((descriptor, available, used));
        r.broken = false;
        self.apply_addrs(index as usize);
        // Before a memory table the addresses wait for one; after, rings
        // outside guest memory are refused.
        if self.mem.is_none() || self.rings[index as usize].queue.ready() {
            Ok(())
        } else {
            Err(VuError::InvalidParam)
        }
    }
    fn set_vring_base(&mut self, index: u32, base: u32) -> VuResult<()> {
        let b = u16::try_from(base).map_err(|_| VuError::InvalidParam)?;
        let r = self.ring(index)?;
        r.queue.set_next_avail(b);
        r.queue.set_next_used(b);
        Ok(())
    }
    fn get_vring_base(&mut self, index: u32) -> VuResult<VhostUserVringState> {
        // GET_VRING_BASE stops the ring.
        let r = self.ring(index)?;
        let base = r.queue.next_avail();
        r.enabled = false;
        let old = r.kick.take();
        if index as usize == TXQ {
            self.update_kick_poll(old.as_ref());
        }
        Ok(VhostUserVringState::new(index, u32::from(base)))
    }
    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        let r = self.ring(u32::from(index))?;
        let old = std::mem::replace(&mut r.kick, fd);
        r.broken = false;
        if usize::from(index) == TXQ {
            self.update_kick_poll(old.as_ref());
        }
        self.apply_addrs(usize::from(index));
        Ok(())
    }
    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        self.ring(u32::from(index))?.call = fd;
        Ok(())
    }
    fn set_vring_err(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        self.ring(u32::from(index))?.err = fd;
        Ok(())
    }
    fn get_protocol_features(&mut self) -> VuResult<VhostUserProtocolFeatures> {
        Ok(protocol_features())
    }
    fn set_protocol_features(&mut self, features: u64) -> VuResult<()> {
        if features & !protocol_features().bits() != 0 {
            return Err(VuError::InvalidParam);
        }
        self.protocol = features;
        Ok(())
    }
    fn get_queue_num(&mut self) -> VuResult<u64> {
        Ok(2)
    }
    fn set_vring_enable(&mut self, index: u32, enable: bool) -> VuResult<()> {
        self.ring(index)?.enabled = enable;
        Ok(())
    }
    fn get_config(
        &mut self,
        offset: u32,
        size: u32,
        _flags: VhostUserConfigFlags,
    ) -> VuResult<Vec<u8>> {
        let c = self.config();
        let (o, s) = (offset as usize, size as usize);
        c.get(o..o.checked_add(s).ok_or(VuError::InvalidParam)?)
            .map(|b| b.to_vec())
            .ok_or(VuError::InvalidParam)
    }
    fn set_config(&mut self, _: u32, _: &[u8], _: VhostUserConfigFlags) -> VuResult<()> {
        Err(bad("the net config space is read-only"))
    }
    fn set_backend_req_fd(&mut self, _backend: BackendChannel) {}
    fn set_gpu_socket(&mut self, _: GpuBackend) -> VuResult<()> {
        Err(bad("not a GPU"))
    }
    fn get_shared_object(&mut self, _: VhostUserSharedMsg) -> VuResult<File> {
        Err(bad("no shared objects"))
    }
    fn get_inflight_fd(&mut self, _: &VhostUserInflight) -> VuResult<(VhostUserInflight, File)> {
        Err(bad("INFLIGHT_SHMFD not offered"))
    }
    fn set_inflight_fd(&mut self, _: &VhostUserInflight, _: File) -> VuResult<()> {
        Err(bad("INFLIGHT_SHMFD not offered"))
    }
    fn get_max_mem_slots(&mut self) -> VuResult<u64> {
        Err(bad("CONFIGURE_MEM_SLOTS not offered"))
    }
    fn add_mem_region(
        &mut self,
        _: &VhostUserSingleMemoryRegion,
        _: File,
        _: Option<bool>,
    ) -> VuResult<Option<VhostUserMemoryRegionBase>> {
        Err(bad("CONFIGURE_MEM_SLOTS not offered"))
    }
    fn remove_mem_region(&mut self, _: &VhostUserSingleMemoryRegion) -> VuResult<()> {
        Err(bad("CONFIGURE_MEM_SLOTS not offered"))
    }
    fn set_device_state_fd(
        &mut self,
        _: VhostTransferStateDirection,
        _: VhostTransferStatePhase,
        _: File,
    ) -> VuResult<Option<File>> {
        Err(bad("DEVICE_STATE not offered"))
    }
    fn check_device_state(&mut self) -> VuResult<()> {
        Err(bad("DEVICE_STATE not offered"))
    }
    fn get_shmem_config(&mut self) -> VuResult<VhostUserShMemConfig> {
        Err(bad("SHMEM not offered"))
    }
    fn set_log_base(&mut self, _: &VhostUserLog, _: File) -> VuResult<()> {
        Err(bad("LOG_SHMFD not offered"))
    }
}

const ETHERNET_HEADER: usize = 14;

/// (IPv6, IP + TCP header bytes) of a TCP frame; `None` for anything else.
fn tcp_headers(frame: &[u8]) -> Option<(bool, usize)> {
    use crate::wire::{ethernet, ethertype, ip_proto, ipv4, ipv6, tcp};
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    let (v6, l3, l4) = match eth.ethertype() {
        ethertype::IPV4 => {
            let ip = ipv4::Packet::new_checked(eth.payload()).ok()?;
            if ip.protocol() != ip_proto::TCP {
                return None;
            }
            (
                false,
                ip.header_len(),
                tcp::Packet::new_checked(ip.payload()).ok()?.header_len(),
            )
        }
        ethertype::IPV6 => {
            let ip = ipv6::Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != ip_proto::TCP {
                return None;
            }
            (
                true,
                ipv6::HEADER_LEN,
                tcp::Packet::new_checked(ip.payload()).ok()?.header_len(),
            )
        }
        _ => return None,
    };
    Some((v6, l3 + l4))
}

/// Buffers the driver made available that the device has not taken yet; a
/// driver index more than a ring ahead is a lie, and a fault.
fn pending(q: &Queue, mem: &GuestMemoryMmap) -> Result<u16, Fault> {
    let avail = q
        .avail_idx(mem, std::sync::atomic::Ordering::Acquire)
        .map_err(|_| Fault::Ring)?;
    let pending = (avail - std::num::Wrapping(q.next_avail())).0;
    if pending > q.size() {
        return Err(Fault::Ring);
    }
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::Checksum;
    use vm_memory::{Bytes, GuestMemoryMmap};

    /// A device whose receive ring (8 entries, as [`Device::fuzz`] lays it
    /// out) offers eight 4 KiB buffers at 0x10000.
    fn device(features: u64) -> (Device, GuestMemoryMmap) {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x20000)]).unwrap();
        for i in 0..8u16 {
            let d = virtio_queue::desc::split::Descriptor::new(
                0x10000 + u64::from(i) * 0x1000,
                0x1000,
                2,
                0,
            );
            mem.write_obj(d, GuestAddress(16 * u64::from(i))).unwrap();
            mem.write_obj(i, GuestAddress(0x1004 + 2 * u64::from(i)))
                .unwrap();
        }
        mem.write_obj(8u16, GuestAddress(0x1002)).unwrap();
        let d = Device::fuzz(mem.clone(), [8, 8], features).unwrap();
        (d, mem)
    }

    #[test]
    fn frames_are_built_in_held_buffers_and_the_rest_go_back() {
        let guest_csum = 1 << VIRTIO_NET_F_GUEST_CSUM;
        let (mut d, mem) = device(1 << VIRTIO_F_VERSION_1 | guest_csum);
        let mut held = Vec::new();
        assert_eq!(d.hold_rx(1000, 4, &mut held), Ok(false));
        assert_eq!(held.len(), 4);
        held[0].frame()[..3].copy_from_slice(b"abc");
        assert!(held.iter_mut().all(|h| h.frame().len() >= 1000));
        let mut first = held.remove(0);
        d.place_held(&mut first, 100, None).unwrap();
        d.release_held(held.len());
        held.clear();
        // Used ring: one entry, buffer 0, header + 100 bytes.
        let used_idx: u16 = mem.read_obj(GuestAddress(0x2002)).unwrap();
        let id: u32 = mem.read_obj(GuestAddress(0x2004)).unwrap();
        let len: u32 = mem.read_obj(GuestAddress(0x2008)).unwrap();
        assert_eq!((used_idx, id, len), (1, 0, 112));
        // The header in guest memory: DATA_VALID, one buffer; the frame after it.
        let mut got = [0u8; 15];
        mem.read_slice(&mut got, GuestAddress(0x10000)).unwrap();
        let h = vnet::Repr::parse(&got).unwrap();
        assert_eq!((h.flags, h.num_buffers), (vnet::F_DATA_VALID, 1));
        assert_eq!(&got[12..], b"abc");
        // The three given back come again, in order.
        assert_eq!(d.hold_rx(1000, 8, &mut held), Ok(false));
        assert_eq!(held.len(), 7);
        d.release_held(7);
        held.clear();
        // A frame no buffer holds whole: nothing taken, the copying path's.
        assert_eq!(d.hold_rx(5000, 8, &mut held), Ok(true));
        assert!(held.is_empty());
        assert_eq!(d.stats.rx_in_place, 1);
    }

    /// A transmit queue over [`device`], as `Link::vhost_user` sets it up.
    fn tx_on(features: u64) -> (crate::link::Tx, GuestMemoryMmap) {
        let (d, mem) = device(features);
        let fd = std::os::fd::OwnedFd::from(File::open("/dev/null").unwrap());
        let mut tx = crate::link::tx::Tx::new(fd, crate::link::Kind::VhostUser);
        tx.vhost = Some(super::super::Rx::new(Arc::new(std::sync::Mutex::new(d))));
        (tx, mem)
    }

    /// A TCP segment 10.0.2.2:80 -> 10.0.2.15:40000 with `payload` bytes of
    /// 0x5a, built as the flows build them; its length.
    fn segment(buf: &mut [u8], payload: usize, csum: Checksum) -> usize {
        let l2 = crate::frame::L2 {
            guest: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            router4: [0x52, 0x55, 10, 0, 2, 2],
            router6: [0; 6],
        };
        let (src, dst) = ("10.0.2.2".parse().unwrap(), "10.0.2.15".parse().unwrap());
        let repr = crate::wire::tcp::Repr {
            src_port: 80,
            dst_port: 40000,
            seq: 7,
            ack: 9,
            flags: crate::wire::tcp::flags::ACK,
            window: 512,
            payload_len: payload,
            ..Default::default()
        };
        let tcp = repr.buffer_len();
        let off = crate::frame::write_ip(buf, &l2, src, dst, crate::wire::ip_proto::TCP, tcp, 64);
        buf[off + 20..off + tcp].fill(0x5a);
        let p = crate::frame::pseudo(src, dst).unwrap();
        off + repr.emit_with(&mut buf[off..], &p, csum).unwrap()
    }

    fn pseudo() -> crate::wire::checksum::PseudoHeader {
        crate::wire::checksum::PseudoHeader::V4 {
            src: "10.0.2.2".parse().unwrap(),
            dst: "10.0.2.15".parse().unwrap(),
        }
    }

    /// The header and frame in receive buffer `id` (frames that fit one).
    fn placed(mem: &GuestMemoryMmap, id: u64, len: usize) -> (vnet::Repr, Vec<u8>) {
        let mut b = vec![0u8; vnet::HEADER_LEN + len];
        mem.read_slice(&mut b, GuestAddress(0x10000 + id * 0x1000))
            .unwrap();
        (
            vnet::Repr::parse(&b).unwrap(),
            b.split_off(vnet::HEADER_LEN),
        )
    }

    #[test]
    fn with_guest_csum_tcp_goes_partial_both_in_place_and_copied() {
        use crate::link::PartialCsum;
        use crate::wire::tcp::CHECKSUM_AT;
        let f =
            1 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_NET_F_GUEST_CSUM | 1 << VIRTIO_NET_F_MRG_RXBUF;
        let (mut tx, mem) = tx_on(f);
        let csum = tx.checksum();
        assert_eq!(csum, Checksum::Partial);
        // In place: one 4 KiB buffer holds a 1000-byte segment.
        let mut slots = tx.reserve(1, 1100);
        let f0 = slots.iter_mut().next().unwrap();
        let len = segment(f0, 1000, csum);
        slots.commit_with(&[len], Some(PartialCsum::tcp(34)));
        // Copied: a 6000-byte segment merged over two buffers.
        let mut slots = tx.reserve(1, 6100);
        let f1 = slots.iter_mut().next().unwrap();
        let big = segment(f1, 6000, csum);
        slots.commit_with(&[big], Some(PartialCsum::tcp(34)));
        tx.flush();
        let (h, frame) = placed(&mem, 0, len);
        assert_eq!(
            (h.flags, h.csum_start, h.csum_offset, h.num_buffers),
            (vnet::F_NEEDS_CSUM, 34, 16, 1)
        );
        let field = |f: &[u8]| u16::from_be_bytes([f[34 + CHECKSUM_AT], f[35 + CHECKSUM_AT]]);
        let tcp = crate::wire::ip_proto::TCP;
        assert_eq!(field(&frame), pseudo().partial(tcp, len - 34));
        // What the guest's stack finishes is the segment's checksum.
        let mut done = frame.clone();
        vnet::complete_checksum(&mut done, 34, 16).unwrap();
        assert!(pseudo().verify(tcp, &done[34..]));
        let (h, head) = placed(&mem, 1, 4096 - vnet::HEADER_LEN);
        assert_eq!(
            (h.flags, h.csum_start, h.csum_offset, h.num_buffers),
            (vnet::F_NEEDS_CSUM, 34, 16, 2)
        );
        assert_eq!(field(&head), pseudo().partial(tcp, big - 34));
        assert_eq!(
            (tx.stats.tx_frames, tx.stats.tx_dropped),
            (2, 0),
            "{:?}",
            tx.stats
        );
    }

    #[test]
    fn without_guest_csum_checksums_stay_whole() {
        use crate::link::PartialCsum;
        let (mut tx, mem) = tx_on(1 << VIRTIO_F_VERSION_1);
        assert_eq!(tx.checksum(), Checksum::Full);
        // A caller that left one partial anyway gets it finished.
        let mut slots = tx.reserve(1, 300);
        let f0 = slots.iter_mut().next().unwrap();
        let len = segment(f0, 200, Checksum::Partial);
        slots.commit_with(&[len], Some(PartialCsum::tcp(34)));
        tx.flush();
        let (h, frame) = placed(&mem, 0, len);
        assert_eq!((h.flags, h.csum_start, h.csum_offset), (0, 0, 0));
        assert!(pseudo().verify(crate::wire::ip_proto::TCP, &frame[34..]));
    }

    #[test]
    fn a_hostile_chain_taken_in_place_is_a_fault() {
        let (mut d, mem) = device(1 << VIRTIO_F_VERSION_1);
        // Buffer 0 now points past the end of guest memory.
        let bad = virtio_queue::desc::split::Descriptor::new(0x1f800, 0x1000, 2, 0);
        mem.write_obj(bad, GuestAddress(0)).unwrap();
        let mut held = Vec::new();
        assert!(matches!(
            d.hold_rx(100, 4, &mut held),
            Err(Fault::Memory(_))
        ));
        assert!(held.is_empty());
    }
}
