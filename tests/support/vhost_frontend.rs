//! The VMM stand-in for `--vhost-user`: rust-vmm's vhost-user front-end
//! (the code Cloud Hypervisor drives backends with), guest memory in a
//! memfd shared with the backend, and a virtio-net driver's side of the two
//! split virtqueues, bridged to the guest namespace's tap0 so the guest is
//! a real Linux stack.
//!
//! Negotiation follows QEMU's order: features, protocol features, owner,
//! memory table, then per ring num, base, addresses, kick, call, error,
//! enable. Ring addresses are sent as VMM virtual addresses that differ
//! from the guest-physical ones ([`VA_BASE`]), as QEMU's do, so the
//! backend's translation is exercised. The hostile helpers write raw
//! descriptors and tables for the device-reset tests.
//!
//! The bridge is what a VMM's tap backend is: tap0 opened with
//! `IFF_VNET_HDR` and `TUNSETOFFLOAD`, so the guest kernel's TSO segments
//! and partial checksums pass as 64 KiB frames behind their virtio-net
//! header, and frames from the backend go to the tap with theirs. It reads
//! straight into the transmit buffers in guest memory and writes straight
//! from the receive buffers (a gather copy only for a frame merged over
//! several buffers), so the bridge costs one read or write per frame.

use super::relay::open_tap_flags;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vhost::vhost_user::message::{VhostUserConfigFlags, VhostUserHeaderFlag};
use vhost::vhost_user::{Frontend, VhostUserFrontend, VhostUserProtocolFeatures};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, ReadVolatile,
    WriteVolatile,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub const RXQ: usize = 0;
pub const TXQ: usize = 1;
/// Ring size, QEMU's default.
pub const QSIZE: u16 = 256;
/// Guest memory: rings, 256 receive buffers, 256 transmit buffers.
pub const MEM_SIZE: u64 = 32 << 20;
/// Where the VMM "maps" guest memory (only ever sent, never used here).
pub const VA_BASE: u64 = 0x7f00_0000_0000;
const RING_BASE: [u64; 2] = [0x0000, 0x4000];
/// Receive buffers, from here up to the transmit buffers.
pub const RX_BUF: u64 = 0x10000;
/// The default receive buffer: the header and a 64 KiB frame whole in one
/// contiguous buffer (as a DPDK guest posts them), so the backend can build
/// frames in place.
pub const RX_BIG: u32 = 0x10100;
/// Linux's mergeable-buffer size: a large frame spans many (MRG_RXBUF).
pub const RX_SMALL: u32 = 4096;
/// Transmit buffers: room for the header and a 64 KiB frame.
pub const TX_BUF: u64 = 0x80_0000;
pub const TX_STRIDE: u64 = 0x11000;
pub const VNET_HDR: usize = 12;

const F_EVENT_IDX: u64 = 1 << 29;
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;

/// Virtio-net features this driver takes when offered, as QEMU's
/// vhost-user net client and Linux's driver do: no INDIRECT_DESC (never
/// used here), no MQ (one pair), no ECN/UFO/USO (not passed to the tap).
pub const DRIVER_FEATURES: u64 = 1 << 32 // VERSION_1
    | 1 << 29 // EVENT_IDX
    | 1 << 30 // PROTOCOL_FEATURES
    | 1 << 15 // MRG_RXBUF
    | 1 << 5 // MAC
    | 1 << 3 // MTU
    | 1 << 16 // STATUS
    | 1 << 0 // CSUM
    | 1 << 1 // GUEST_CSUM
    | 1 << 7 // GUEST_TSO4
    | 1 << 8 // GUEST_TSO6
    | 1 << 11 // HOST_TSO4
    | 1 << 12; // HOST_TSO6

fn desc_addr(q: usize) -> u64 {
    RING_BASE[q]
}
fn avail_addr(q: usize) -> u64 {
    RING_BASE[q] + 0x1000
}
fn used_addr(q: usize) -> u64 {
    RING_BASE[q] + 0x2000
}

/// A raw descriptor: (index, addr, len, flags, next).
pub type RawDesc = (u16, u64, u32, u16, u16);

/// The driver's side of one split ring.
pub struct DriverRing {
    q: usize,
    avail_idx: u16,
    last_used: u16,
    free: Vec<u16>,
    /// Bytes of each transmit buffer offered and not yet used, and their
    /// sum (the bridge's transmit budget).
    sizes: Vec<u32>,
    inflight: u64,
}

impl DriverRing {
    /// A ring whose first `n` descriptors have buffers.
    fn new(q: usize, n: u16) -> DriverRing {
        DriverRing {
            q,
            avail_idx: 0,
            last_used: 0,
            free: (0..n.min(QSIZE)).rev().collect(),
            sizes: vec![0; usize::from(QSIZE)],
            inflight: 0,
        }
    }

    /// Write descriptor `i`.
    pub fn set_desc(
        &self,
        mem: &GuestMemoryMmap,
        i: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        mem.write_slice(&d, GuestAddress(desc_addr(self.q) + 16 * u64::from(i)))
            .unwrap();
    }

    /// Offer the chain at `head` (descriptors already written).
    pub fn publish(&mut self, mem: &GuestMemoryMmap, head: u16) {
        let slot = u64::from(self.avail_idx % QSIZE);
        mem.write_obj(
            head.to_le(),
            GuestAddress(avail_addr(self.q) + 4 + 2 * slot),
        )
        .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        fence(Ordering::SeqCst);
        mem.write_obj(self.avail_idx.to_le(), GuestAddress(avail_addr(self.q) + 2))
            .unwrap();
        fence(Ordering::SeqCst);
    }

    /// Set the avail index directly (hostile: claim more than was added).
    pub fn force_avail_idx(&mut self, mem: &GuestMemoryMmap, idx: u16) {
        self.avail_idx = idx;
        mem.write_obj(idx.to_le(), GuestAddress(avail_addr(self.q) + 2))
            .unwrap();
    }

    /// Used entries not yet seen: (descriptor id, length).
    ///
    /// With EVENT_IDX this also asks for an interrupt on the next used
    /// buffer (`used_event`), then looks at the used index once more, as
    /// Linux's `virtqueue_enable_cb` does: a buffer the device used between
    /// the first look and the write of `used_event` may have been used
    /// without an interrupt (the device compared against the old event),
    /// and would otherwise wait for the next poll timeout.
    pub fn take_used(&mut self, mem: &GuestMemoryMmap, out: &mut Vec<(u16, u32)>) {
        loop {
            fence(Ordering::SeqCst);
            let idx = u16::from_le(mem.read_obj(GuestAddress(used_addr(self.q) + 2)).unwrap());
            fence(Ordering::SeqCst);
            while self.last_used != idx {
                let slot = u64::from(self.last_used % QSIZE);
                let at = used_addr(self.q) + 4 + 8 * slot;
                let id: u32 = mem.read_obj(GuestAddress(at)).unwrap();
                let len: u32 = mem.read_obj(GuestAddress(at + 4)).unwrap();
                let id = u32::from_le(id) as u16;
                out.push((id, u32::from_le(len)));
                if let Some(b) = self.sizes.get_mut(usize::from(id)) {
                    self.inflight = self.inflight.saturating_sub(u64::from(*b));
                    *b = 0;
                }
                self.last_used = self.last_used.wrapping_add(1);
            }
            // EVENT_IDX: interrupt me on the next used buffer.
            let ev = avail_addr(self.q) + 4 + 2 * u64::from(QSIZE);
            mem.write_obj(self.last_used.to_le(), GuestAddress(ev))
                .unwrap();
            fence(Ordering::SeqCst);
            let again = u16::from_le(mem.read_obj(GuestAddress(used_addr(self.q) + 2)).unwrap());
            if again == self.last_used {
                return;
            }
        }
    }

    /// Whether the device wants a kick for what was published since the
    /// avail index was `old`: with EVENT_IDX, when the new entries pass
    /// its `avail_event` (the spec's `vring_need_event`); without, unless
    /// it set `VRING_USED_F_NO_NOTIFY`. What Linux's
    /// `virtqueue_kick_prepare` decides.
    fn needs_kick(&self, mem: &GuestMemoryMmap, old: u16, event_idx: bool) -> bool {
        fence(Ordering::SeqCst);
        let new = self.avail_idx;
        if event_idx {
            let at = used_addr(self.q) + 4 + 8 * u64::from(QSIZE);
            let ev = u16::from_le(mem.read_obj(GuestAddress(at)).unwrap());
            new.wrapping_sub(ev).wrapping_sub(1) < new.wrapping_sub(old)
        } else {
            let flags = u16::from_le(mem.read_obj(GuestAddress(used_addr(self.q))).unwrap());
            flags & 1 == 0
        }
    }
}

/// Counters of the bridge, for failure messages and figures.
#[derive(Default)]
pub struct BridgeStats {
    pub to_airlock: AtomicU64,
    pub from_airlock: AtomicU64,
    pub bytes_to_airlock: AtomicU64,
    pub bytes_from_airlock: AtomicU64,
    /// Frames from airlock with a partial checksum (NEEDS_CSUM), and how
    /// many of the first [`PARTIAL_CHECKED`] did not finish to a valid one
    /// (the guest's stack takes them unchecked, so this is the check).
    pub partial_from_airlock: AtomicU64,
    pub bad_partial_from_airlock: AtomicU64,
    /// Of the checked ones, the valid UDP datagrams.
    pub partial_udp_from_airlock: AtomicU64,
}

/// Partial checksums from airlock finished and verified here: enough to
/// cover a connection's start in every test, few enough to cost a bulk
/// transfer nothing.
pub const PARTIAL_CHECKED: u64 = 512;

struct Shared {
    mem: GuestMemoryMmap,
    /// Each receive buffer's size, and how many fit below the transmit ones.
    rx_len: u32,
    rx_count: u16,
    rings: Mutex<[DriverRing; 2]>,
    kick: [EventFd; 2],
    call: [EventFd; 2],
    err: [EventFd; 2],
    stats: BridgeStats,
    /// VIRTIO_RING_F_EVENT_IDX was negotiated.
    event_idx: AtomicBool,
}

/// A connected front-end with its guest memory and rings.
pub struct VhostFrontend {
    pub fe: Frontend,
    shared: Arc<Shared>,
    memfd: File,
    pub features: u64,
    pub protocol: VhostUserProtocolFeatures,
    bridge: Option<(JoinHandle<()>, Arc<AtomicBool>)>,
}

/// vmm-sys-util's EventFd predates `AsFd`.
fn bfd(e: &EventFd) -> std::os::fd::BorrowedFd<'_> {
    // SAFETY: the descriptor is owned by `e`, which outlives the borrow.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(e.as_raw_fd()) }
}

fn eventfd() -> EventFd {
    EventFd::new(EFD_NONBLOCK).expect("eventfd")
}

fn memfd(size: u64) -> File {
    let fd = nix::sys::memfd::memfd_create(c"vhost-guest", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .expect("memfd_create");
    let f = File::from(fd);
    f.set_len(size).expect("ftruncate");
    f
}

impl VhostFrontend {
    /// Connect to a backend listening on `path` (retrying for up to 5 s
    /// while it starts) and set the device up.
    pub fn connect(path: &Path) -> io::Result<VhostFrontend> {
        let end = Instant::now() + Duration::from_secs(5);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() < end => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        };
        VhostFrontend::from_stream(stream, RX_BIG)
    }

    /// [`VhostFrontend::connect`] offering receive buffers of `rx_len`
    /// bytes ([`RX_SMALL`]: Linux-sized, frames merged over several).
    pub fn connect_with(path: &Path, rx_len: u32) -> io::Result<VhostFrontend> {
        let mut f = VhostFrontend::connect(path)?;
        let s = Arc::get_mut(&mut f.shared).expect("no bridge yet");
        s.rx_len = rx_len;
        s.rx_count = rx_count(rx_len);
        f.setup_ring(RXQ).map_err(io::Error::other)?;
        Ok(f)
    }

    /// Set the device up on a connected socket.
    pub fn from_stream(stream: UnixStream, rx_len: u32) -> io::Result<VhostFrontend> {
        let memfd = memfd(MEM_SIZE);
        let mem = GuestMemoryMmap::from_ranges_with_files([(
            GuestAddress(0),
            MEM_SIZE as usize,
            Some(FileOffset::new(memfd.try_clone()?, 0)),
        )])
        .map_err(io::Error::other)?;
        let rx_count = rx_count(rx_len);
        let shared = Arc::new(Shared {
            mem,
            rx_len,
            rx_count,
            rings: Mutex::new([DriverRing::new(RXQ, rx_count), DriverRing::new(TXQ, QSIZE)]),
            kick: [eventfd(), eventfd()],
            call: [eventfd(), eventfd()],
            err: [eventfd(), eventfd()],
            stats: BridgeStats::default(),
            event_idx: AtomicBool::new(false),
        });
        let fe = Frontend::from_stream(stream, 2);
        let mut f = VhostFrontend {
            fe,
            shared,
            memfd,
            features: 0,
            protocol: VhostUserProtocolFeatures::empty(),
            bridge: None,
        };
        f.negotiate().map_err(io::Error::other)?;
        Ok(f)
    }

    fn negotiate(&mut self) -> vhost::Result<()> {
        let offered = self.fe.get_features()?;
        self.features = offered & DRIVER_FEATURES;
        self.fe.set_features(self.features)?;
        self.shared
            .event_idx
            .store(self.features & F_EVENT_IDX != 0, Ordering::SeqCst);
        let p = self.fe.get_protocol_features()?;
        self.protocol = p;
        self.fe.set_protocol_features(p)?;
        if p.contains(VhostUserProtocolFeatures::REPLY_ACK) {
            // As QEMU does: every request is acknowledged, so a refusal
            // surfaces as an error here.
            self.fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }
        self.fe.set_owner()?;
        self.set_mem_table(0, MEM_SIZE)?;
        for q in [RXQ, TXQ] {
            self.setup_ring(q)?;
        }
        Ok(())
    }

    /// Send a memory table of one region: `[offset, offset+size)` of the
    /// memfd at guest address `offset`.
    pub fn set_mem_table(&mut self, offset: u64, size: u64) -> vhost::Result<()> {
        let r = VhostUserMemoryRegionInfo {
            guest_phys_addr: offset,
            memory_size: size,
            userspace_addr: VA_BASE + offset,
            mmap_offset: offset,
            mmap_handle: self.memfd.as_raw_fd(),
        };
        self.fe.set_mem_table(&[r]).map(|_| ())
    }

    /// (Re)start ring `q` from index 0 with fresh driver state.
    pub fn setup_ring(&mut self, q: usize) -> vhost::Result<()> {
        self.setup_ring_sized(q, QSIZE)
    }

    /// [`VhostFrontend::setup_ring`] without offering receive buffers.
    pub fn setup_ring_bare(&mut self, q: usize) -> vhost::Result<()> {
        self.setup_ring_inner(q, QSIZE, false)
    }

    pub fn setup_ring_sized(&mut self, q: usize, size: u16) -> vhost::Result<()> {
        self.setup_ring_inner(q, size, true)
    }

    fn setup_ring_inner(&mut self, q: usize, size: u16, post: bool) -> vhost::Result<()> {
        // Stop the ring first, as a VMM does, so the device never reads it
        // half rewritten (the first time there is nothing to stop).
        let _ = self.fe.get_vring_base(q);
        let mem = &self.shared.mem;
        // Clear the rings' indices in guest memory.
        mem.write_slice(&[0u8; 0x3000], GuestAddress(RING_BASE[q]))
            .unwrap();
        let n = if q == RXQ {
            self.shared.rx_count
        } else {
            QSIZE
        };
        self.shared.rings.lock().unwrap()[q] = DriverRing::new(q, n);
        // Forget resets already reported.
        let _ = self.shared.err[q].read();
        self.fe.set_vring_num(q, size)?;
        self.fe.set_vring_base(q, 0)?;
        let c = VringConfigData {
            queue_max_size: QSIZE,
            queue_size: size,
            flags: 0,
            desc_table_addr: VA_BASE + desc_addr(q),
            used_ring_addr: VA_BASE + used_addr(q),
            avail_ring_addr: VA_BASE + avail_addr(q),
            log_addr: None,
        };
        self.fe.set_vring_addr(q, &c)?;
        self.fe.set_vring_kick(q, &self.shared.kick[q])?;
        self.fe.set_vring_call(q, &self.shared.call[q])?;
        self.fe.set_vring_err(q, &self.shared.err[q])?;
        self.fe.set_vring_enable(q, true)?;
        if q == RXQ && post {
            self.post_rx_buffers();
        }
        Ok(())
    }

    /// Offer every receive buffer.
    pub fn post_rx_buffers(&self) {
        let mut rings = self.shared.rings.lock().unwrap();
        repost_rx(&self.shared, &mut rings[RXQ]);
        let _ = self.shared.kick[RXQ].write(1);
    }

    /// The device's config space: (mac, status, max pairs, mtu).
    pub fn config(&mut self) -> vhost::Result<([u8; 6], u16, u16, u16)> {
        let (_, c) = self
            .fe
            .get_config(0, 12, VhostUserConfigFlags::WRITABLE, &[0u8; 12])?;
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&c[..6]);
        let le = |i: usize| u16::from_le_bytes([c[i], c[i + 1]]);
        Ok((mac, le(6), le(8), le(10)))
    }

    pub fn mem(&self) -> &GuestMemoryMmap {
        &self.shared.mem
    }

    /// Send one frame on the transmit ring (a single descriptor holding
    /// the virtio-net header and the frame).
    pub fn send_frame(&self, frame: &[u8]) {
        let mut rings = self.shared.rings.lock().unwrap();
        send_one(&self.shared, &mut rings[TXQ], frame);
        let _ = self.shared.kick[TXQ].write(1);
    }

    /// Write raw descriptors `(index, addr, len, flags, next)` on ring `q`
    /// and offer `head`, then kick.
    pub fn post_raw(&self, q: usize, descs: &[RawDesc], head: u16) {
        let mut rings = self.shared.rings.lock().unwrap();
        let r = &mut rings[q];
        for &(i, a, l, f, n) in descs {
            r.set_desc(&self.shared.mem, i, a, l, f, n);
        }
        r.publish(&self.shared.mem, head);
        let _ = self.shared.kick[q].write(1);
    }

    /// Claim `idx` as ring `q`'s avail index, and kick.
    pub fn force_avail(&self, q: usize, idx: u16) {
        let mut rings = self.shared.rings.lock().unwrap();
        rings[q].force_avail_idx(&self.shared.mem, idx);
        let _ = self.shared.kick[q].write(1);
    }

    /// Frames received, waiting up to `timeout` for at least one.
    pub fn recv_frames(&self, timeout: Duration) -> Vec<Vec<u8>> {
        let end = Instant::now() + timeout;
        loop {
            let mut rings = self.shared.rings.lock().unwrap();
            let got = take_frames(&self.shared, &mut rings[RXQ]);
            drop(rings);
            if !got.is_empty() || Instant::now() >= end {
                self.post_rx_buffers();
                return got;
            }
            let mut fds = [PollFd::new(bfd(&self.shared.call[RXQ]), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(20u16));
            let _ = self.shared.call[RXQ].read();
        }
    }

    /// Whether ring `q`'s error eventfd fired within `timeout`.
    pub fn wait_err(&self, q: usize, timeout: Duration) -> bool {
        let mut fds = [PollFd::new(bfd(&self.shared.err[q]), PollFlags::POLLIN)];
        let ms = timeout.as_millis().min(60_000) as u16;
        let fired = matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0);
        if fired {
            let _ = self.shared.err[q].read();
        }
        fired
    }

    /// Bridge the rings to tap0 of namespace `ns` on a thread, until
    /// [`VhostFrontend::stop_bridge`] or drop.
    pub fn start_bridge(&mut self, ns: &str) -> io::Result<()> {
        let tap = open_tap_flags(ns, "tap0", libc::IFF_VNET_HDR)?;
        set_tap_offloads(&tap, self.features)?;
        set_nonblocking(&tap)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (self.shared.clone(), stop.clone());
        let h = std::thread::spawn(move || bridge(s, tap, st));
        self.bridge = Some((h, stop));
        Ok(())
    }

    pub fn stop_bridge(&mut self) {
        if let Some((h, stop)) = self.bridge.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = h.join();
        }
    }

    pub fn stats(&self) -> &BridgeStats {
        &self.shared.stats
    }

    pub fn describe(&self) -> String {
        let s = &self.shared.stats;
        format!(
            "front-end: {} frames / {} bytes to airlock, {} frames / {} bytes from airlock \
             ({} with partial checksums, {} of those checked bad)",
            s.to_airlock.load(Ordering::Relaxed),
            s.bytes_to_airlock.load(Ordering::Relaxed),
            s.from_airlock.load(Ordering::Relaxed),
            s.bytes_from_airlock.load(Ordering::Relaxed),
            s.partial_from_airlock.load(Ordering::Relaxed),
            s.bad_partial_from_airlock.load(Ordering::Relaxed)
        )
    }
}

impl Drop for VhostFrontend {
    fn drop(&mut self) {
        self.stop_bridge();
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let fl = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Put one frame on the transmit ring (reclaiming used buffers first);
/// false when every buffer is in flight.
fn send_one(s: &Shared, r: &mut DriverRing, frame: &[u8]) -> bool {
    if r.free.is_empty() {
        let mut used = Vec::new();
        r.take_used(&s.mem, &mut used);
        r.free.extend(used.iter().map(|&(id, _)| id));
    }
    let Some(i) = r.free.pop() else {
        return false;
    };
    let at = TX_BUF + u64::from(i) * TX_STRIDE;
    s.mem
        .write_slice(&[0u8; VNET_HDR], GuestAddress(at))
        .unwrap();
    s.mem
        .write_slice(frame, GuestAddress(at + VNET_HDR as u64))
        .unwrap();
    r.set_desc(&s.mem, i, at, (VNET_HDR + frame.len()) as u32, 0, 0);
    r.publish(&s.mem, i);
    s.stats.to_airlock.fetch_add(1, Ordering::Relaxed);
    s.stats
        .bytes_to_airlock
        .fetch_add(frame.len() as u64, Ordering::Relaxed);
    true
}

/// Every complete frame on the receive ring (MRG_RXBUF: a frame's
/// buffers are consecutive used entries, counted by `num_buffers`).
fn take_frames(s: &Shared, r: &mut DriverRing) -> Vec<Vec<u8>> {
    let mut used = Vec::new();
    r.take_used(&s.mem, &mut used);
    let mut frames = Vec::new();
    let mut i = 0;
    while i < used.len() {
        let (id, len) = used[i];
        let base = rx_addr(s, id);
        let mut hdr = [0u8; VNET_HDR];
        s.mem.read_slice(&mut hdr, GuestAddress(base)).unwrap();
        let n = u16::from_le_bytes([hdr[10], hdr[11]]).max(1) as usize;
        let mut f = vec![0u8; len as usize - VNET_HDR.min(len as usize)];
        s.mem
            .read_slice(&mut f, GuestAddress(base + VNET_HDR as u64))
            .unwrap();
        r.free.push(id);
        for &(id2, len2) in used.iter().skip(i + 1).take(n - 1) {
            let mut more = vec![0u8; len2 as usize];
            s.mem
                .read_slice(&mut more, GuestAddress(rx_addr(s, id2)))
                .unwrap();
            f.extend_from_slice(&more);
            r.free.push(id2);
        }
        i += n;
        frames.push(f);
    }
    s.stats
        .from_airlock
        .fetch_add(frames.len() as u64, Ordering::Relaxed);
    s.stats.bytes_from_airlock.fetch_add(
        frames.iter().map(|f| f.len() as u64).sum(),
        Ordering::Relaxed,
    );
    frames
}

/// Where receive buffer `id` lies.
fn rx_addr(s: &Shared, id: u16) -> u64 {
    RX_BUF + u64::from(id) * u64::from(s.rx_len)
}

/// How many receive buffers of `len` bytes fit below the transmit ones.
fn rx_count(len: u32) -> u16 {
    ((TX_BUF - RX_BUF) / u64::from(len.max(1))).min(u64::from(QSIZE)) as u16
}

/// Offer every free receive buffer again; true if any was.
fn repost_rx(s: &Shared, r: &mut DriverRing) -> bool {
    let mut posted = false;
    while let Some(i) = r.free.pop() {
        r.set_desc(&s.mem, i, rx_addr(s, i), s.rx_len, F_WRITE, 0);
        r.publish(&s.mem, i);
        posted = true;
    }
    posted
}

/// The tap's reader (this bridge, for the backend's transmit queue) takes
/// what the backend accepts: partial checksums with CSUM, TSO segments
/// with HOST_TSO4/6. A 12-byte header, as virtio 1.x has it.
fn set_tap_offloads(tap: &OwnedFd, features: u64) -> io::Result<()> {
    let mut off: libc::c_uint = 0;
    if features & 1 != 0 {
        off |= libc::TUN_F_CSUM;
        if features & (1 << 11) != 0 {
            off |= libc::TUN_F_TSO4;
        }
        if features & (1 << 12) != 0 {
            off |= libc::TUN_F_TSO6;
        }
    }
    let hdr: libc::c_int = VNET_HDR as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one int, which `hdr` is and which
    // outlives the call; the fd is an open tap.
    if unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETVNETHDRSZ as _, &hdr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: TUNSETOFFLOAD takes its argument by value; the fd is an open tap.
    if unsafe {
        libc::ioctl(
            tap.as_raw_fd(),
            libc::TUNSETOFFLOAD as _,
            off as libc::c_ulong,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Write every frame the backend placed to the tap, header and all;
/// returns (frames, bytes of frames).
fn frames_to_tap(
    s: &Shared,
    r: &mut DriverRing,
    tap: &mut File,
    gather: &mut Vec<u8>,
) -> (u64, u64) {
    let mut used = Vec::new();
    r.take_used(&s.mem, &mut used);
    let (mut frames, mut bytes) = (0u64, 0u64);
    let mut i = 0;
    while i < used.len() {
        let (id, len) = used[i];
        let mut head = [0u8; VNET_HDR + 64];
        let k = head.len().min(len as usize);
        s.mem
            .read_slice(&mut head[..k], GuestAddress(rx_addr(s, id)))
            .unwrap();
        let n = usize::from(u16::from_le_bytes([head[10], head[11]]).max(1));
        if let Some(h) = data_valid_as_partial(&head[..k]) {
            s.mem.write_slice(&h, GuestAddress(rx_addr(s, id))).unwrap();
        }
        let parts = &used[i..(i + n).min(used.len())];
        let total: u64 = parts.iter().map(|&(_, l)| u64::from(l)).sum();
        let check = head[0] & NEEDS_CSUM != 0
            && s.stats.partial_from_airlock.fetch_add(1, Ordering::Relaxed) < PARTIAL_CHECKED;
        if n == 1 {
            let slice = s
                .mem
                .get_slice(GuestAddress(rx_addr(s, id)), len as usize)
                .unwrap();
            let _ = tap.write_volatile(&slice);
            if check {
                gather.resize(len as usize, 0);
                s.mem
                    .read_slice(gather, GuestAddress(rx_addr(s, id)))
                    .unwrap();
            }
        } else {
            // Merged over several buffers: one gather copy, test-side only.
            gather.clear();
            for &(id, len) in parts {
                let at = gather.len();
                gather.resize(at + len as usize, 0);
                s.mem
                    .read_slice(&mut gather[at..], GuestAddress(rx_addr(s, id)))
                    .unwrap();
            }
            let _ = tap.write(gather);
        }
        if check {
            let counter = match partial_finishes(gather) {
                Some(17) => Some(&s.stats.partial_udp_from_airlock),
                Some(_) => None,
                None => Some(&s.stats.bad_partial_from_airlock),
            };
            if let Some(c) = counter {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        r.free.extend(parts.iter().map(|&(id, _)| id));
        frames += 1;
        bytes += total.saturating_sub(VNET_HDR as u64);
        i += n;
    }
    (frames, bytes)
}

const NEEDS_CSUM: u8 = 1;

/// The L4 protocol of a frame behind its virtio-net header, its checksum
/// left partial, if it finishes (as the guest's stack would) to a valid
/// TCP or UDP checksum.
fn partial_finishes(b: &[u8]) -> Option<u8> {
    use airlock::wire::checksum::PseudoHeader;
    use airlock::wire::{ethernet, ethertype, ipv4, ipv6, virtio_net as vnet};
    let Ok(h) = vnet::Repr::parse(b) else {
        return None;
    };
    let mut f = b[VNET_HDR..].to_vec();
    if vnet::complete_checksum(&mut f, h.csum_start, h.csum_offset).is_err() {
        return None;
    }
    let Ok(eth) = ethernet::Frame::new_checked(&f[..]) else {
        return None;
    };
    let (pseudo, proto) = match eth.ethertype() {
        ethertype::IPV4 => match ipv4::Packet::new_checked(eth.payload()) {
            Ok(p) => (
                PseudoHeader::V4 {
                    src: p.src(),
                    dst: p.dst(),
                },
                p.protocol(),
            ),
            Err(_) => return None,
        },
        ethertype::IPV6 => match ipv6::Packet::new_checked(eth.payload()) {
            Ok(p) => (
                PseudoHeader::V6 {
                    src: p.src(),
                    dst: p.dst(),
                },
                p.next_header(),
            ),
            Err(_) => return None,
        },
        _ => return None,
    };
    pseudo
        .verify(proto, &f[usize::from(h.csum_start)..])
        .then_some(proto)
}

/// A guest's virtio-net driver takes `DATA_VALID` as "checksum already
/// checked" (CHECKSUM_UNNECESSARY); tun ignores the flag on write. So a
/// TCP or UDP frame with it goes to the tap as a partial checksum, which
/// the receiving stack also accepts unchecked. `head` is the header and
/// the start of the frame; returns the header to write, if it changes.
fn data_valid_as_partial(head: &[u8]) -> Option<[u8; VNET_HDR]> {
    const DATA_VALID: u8 = 2;
    let (hdr, f) = head.split_at_checked(VNET_HDR)?;
    if hdr[0] & (DATA_VALID | NEEDS_CSUM) != DATA_VALID || f.len() < 14 {
        return None;
    }
    let (l4, proto) = match [f[12], f[13]] {
        [0x08, 0x00] => (14 + usize::from(f.get(14)? & 0xf) * 4, *f.get(23)?),
        [0x86, 0xdd] => (14 + 40, *f.get(20)?),
        _ => return None,
    };
    let field = match proto {
        6 => 16u16,
        17 => 6,
        _ => return None,
    };
    let mut h = [0u8; VNET_HDR];
    h.copy_from_slice(hdr);
    h[0] = NEEDS_CSUM;
    h[6..8].copy_from_slice(&(l4 as u16).to_le_bytes());
    h[8..10].copy_from_slice(&field.to_le_bytes());
    Some(h)
}

/// Bytes the bridge keeps offered on the transmit ring and not yet used.
///
/// A Linux guest's TCP cannot run further ahead of a virtio-net device
/// than this: its skbs stay charged to the socket until the device marks
/// them used (TCP small queues: about a millisecond at the pacing rate,
/// `tcp_limit_output_bytes` at most), and byte queue limits hold the ring
/// to what one completion round drains. tun frees an skb as soon as it is
/// queued, so without a budget here the guest's whole congestion window
/// would land on the ring in one go: up to 256 frames of 64 KiB, 16 MB,
/// in one kick, which a backend that writes a batch to its socket in one
/// `sendmsg` (passt) cannot always place, and what it cannot place the
/// guest only sends again after a retransmission timeout.
/// `AIRLOCK_FE_TX_INFLIGHT` (bytes) overrides it, for experiments.
pub const TX_INFLIGHT: u64 = 1 << 20;

fn bridge(s: Arc<Shared>, tap: OwnedFd, stop: Arc<AtomicBool>) {
    let mut tap = File::from(tap);
    let mut gather = Vec::with_capacity(VNET_HDR + 65536);
    let event_idx = s.event_idx.load(Ordering::SeqCst);
    let budget = std::env::var("AIRLOCK_FE_TX_INFLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TX_INFLIGHT);
    // The transmit ring is at its budget: wait for the backend's call,
    // not for the tap (which stays readable), as a stopped queue does.
    let mut tx_stopped = false;
    while !stop.load(Ordering::SeqCst) {
        {
            let mut fds = vec![
                PollFd::new(bfd(&s.call[RXQ]), PollFlags::POLLIN),
                PollFd::new(bfd(&s.call[TXQ]), PollFlags::POLLIN),
            ];
            if !tx_stopped {
                fds.push(PollFd::new(tap.as_fd(), PollFlags::POLLIN));
            }
            // The timeout only bounds how late `stop` is seen: every wait
            // here has its wake-up (tap, or an interrupt asked for).
            let _ = poll(&mut fds, PollTimeout::from(50u16));
        }
        let _ = s.call[RXQ].read();
        let _ = s.call[TXQ].read();
        let mut rings = s.rings.lock().unwrap();
        // The backend to the guest: every placed frame, then the buffers
        // back, one kick for the batch.
        let (n, bytes) = frames_to_tap(&s, &mut rings[RXQ], &mut tap, &mut gather);
        s.stats.from_airlock.fetch_add(n, Ordering::Relaxed);
        s.stats
            .bytes_from_airlock
            .fetch_add(bytes, Ordering::Relaxed);
        let old = rings[RXQ].avail_idx;
        if repost_rx(&s, &mut rings[RXQ]) && rings[RXQ].needs_kick(&s.mem, old, event_idx) {
            let _ = s.kick[RXQ].write(1);
        }
        // The guest to the backend: reclaim what the backend used (as
        // Linux's start_xmit does first), then each read lands in a
        // transmit buffer, header first, while the budget lasts; one kick
        // for the batch, if the backend asked for one.
        let r = &mut rings[TXQ];
        let mut used = Vec::new();
        r.take_used(&s.mem, &mut used);
        r.free.extend(used.iter().map(|&(id, _)| id));
        let old = r.avail_idx;
        let mut sent = 0;
        tx_stopped = false;
        while sent < 64 {
            if r.inflight >= budget || r.free.is_empty() {
                tx_stopped = true;
                break;
            }
            let Some(&i) = r.free.last() else { break };
            let at = TX_BUF + u64::from(i) * TX_STRIDE;
            let mut slice = s
                .mem
                .get_slice(GuestAddress(at), TX_STRIDE as usize)
                .unwrap();
            match tap.read_volatile(&mut slice) {
                Ok(n) if n > VNET_HDR => {
                    r.free.pop();
                    r.set_desc(&s.mem, i, at, n as u32, 0, 0);
                    r.sizes[usize::from(i)] = n as u32;
                    r.inflight += n as u64;
                    r.publish(&s.mem, i);
                    s.stats.to_airlock.fetch_add(1, Ordering::Relaxed);
                    s.stats
                        .bytes_to_airlock
                        .fetch_add((n - VNET_HDR) as u64, Ordering::Relaxed);
                    sent += 1;
                }
                _ => break,
            }
        }
        if sent > 0 && r.needs_kick(&s.mem, old, event_idx) {
            let _ = s.kick[TXQ].write(1);
        }
        if tx_stopped {
            // The interrupt is asked for (take_used set used_event, and
            // interrupts are never suppressed here); look once more for
            // what was used meanwhile, so the wait is not for nothing.
            let mut used = Vec::new();
            r.take_used(&s.mem, &mut used);
            if !used.is_empty() {
                r.free.extend(used.iter().map(|&(id, _)| id));
                let _ = s.call[TXQ].write(1);
            }
        }
        drop(rings);
    }
}

/// For tests that want to know the flag names.
pub const DESC_NEXT: u16 = F_NEXT;
pub const DESC_WRITE: u16 = F_WRITE;
