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

use super::relay::open_tap;
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
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap};
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
/// Receive buffers: 16 KiB each, so a large frame spans several
/// (MRG_RXBUF), as Linux's mergeable buffers make it.
pub const RX_BUF: u64 = 0x10000;
pub const RX_STRIDE: u64 = 16 * 1024;
/// Transmit buffers: room for the header and a 64 KiB frame.
pub const TX_BUF: u64 = 0x80_0000;
pub const TX_STRIDE: u64 = 0x11000;
pub const VNET_HDR: usize = 12;

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;

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
}

impl DriverRing {
    fn new(q: usize) -> DriverRing {
        DriverRing {
            q,
            avail_idx: 0,
            last_used: 0,
            free: (0..QSIZE).rev().collect(),
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
    pub fn take_used(&mut self, mem: &GuestMemoryMmap, out: &mut Vec<(u16, u32)>) {
        fence(Ordering::SeqCst);
        let idx: u16 = mem.read_obj(GuestAddress(used_addr(self.q) + 2)).unwrap();
        fence(Ordering::SeqCst);
        while self.last_used != u16::from_le(idx) {
            let slot = u64::from(self.last_used % QSIZE);
            let at = used_addr(self.q) + 4 + 8 * slot;
            let id: u32 = mem.read_obj(GuestAddress(at)).unwrap();
            let len: u32 = mem.read_obj(GuestAddress(at + 4)).unwrap();
            out.push((u32::from_le(id) as u16, u32::from_le(len)));
            self.last_used = self.last_used.wrapping_add(1);
        }
        // EVENT_IDX: interrupt me on the next used buffer.
        let ev = avail_addr(self.q) + 4 + 2 * u64::from(QSIZE);
        mem.write_obj(self.last_used.to_le(), GuestAddress(ev))
            .unwrap();
        fence(Ordering::SeqCst);
    }
}

/// Counters of the bridge, for failure messages and figures.
#[derive(Default)]
pub struct BridgeStats {
    pub to_airlock: AtomicU64,
    pub from_airlock: AtomicU64,
    pub bytes_to_airlock: AtomicU64,
    pub bytes_from_airlock: AtomicU64,
}

struct Shared {
    mem: GuestMemoryMmap,
    rings: Mutex<[DriverRing; 2]>,
    kick: [EventFd; 2],
    call: [EventFd; 2],
    err: [EventFd; 2],
    stats: BridgeStats,
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
        VhostFrontend::from_stream(stream)
    }

    /// Set the device up on a connected socket.
    pub fn from_stream(stream: UnixStream) -> io::Result<VhostFrontend> {
        let memfd = memfd(MEM_SIZE);
        let mem = GuestMemoryMmap::from_ranges_with_files([(
            GuestAddress(0),
            MEM_SIZE as usize,
            Some(FileOffset::new(memfd.try_clone()?, 0)),
        )])
        .map_err(io::Error::other)?;
        let shared = Arc::new(Shared {
            mem,
            rings: Mutex::new([DriverRing::new(RXQ), DriverRing::new(TXQ)]),
            kick: [eventfd(), eventfd()],
            call: [eventfd(), eventfd()],
            err: [eventfd(), eventfd()],
            stats: BridgeStats::default(),
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
        self.features = offered;
        self.fe.set_features(offered)?;
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
        self.shared.rings.lock().unwrap()[q] = DriverRing::new(q);
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
        let r = &mut rings[RXQ];
        let mem = &self.shared.mem;
        while let Some(i) = r.free.pop() {
            r.set_desc(
                mem,
                i,
                RX_BUF + u64::from(i) * RX_STRIDE,
                RX_STRIDE as u32,
                F_WRITE,
                0,
            );
            r.publish(mem, i);
        }
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
        let tap = open_tap(ns, "tap0")?;
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
            "front-end: {} frames / {} bytes to airlock, {} frames / {} bytes from airlock",
            s.to_airlock.load(Ordering::Relaxed),
            s.bytes_to_airlock.load(Ordering::Relaxed),
            s.from_airlock.load(Ordering::Relaxed),
            s.bytes_from_airlock.load(Ordering::Relaxed)
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
        let base = RX_BUF + u64::from(id) * RX_STRIDE;
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
                .read_slice(&mut more, GuestAddress(RX_BUF + u64::from(id2) * RX_STRIDE))
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

fn bridge(s: Arc<Shared>, tap: OwnedFd, stop: Arc<AtomicBool>) {
    let mut tap = File::from(tap);
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [
            PollFd::new(tap.as_fd(), PollFlags::POLLIN),
            PollFd::new(bfd(&s.call[RXQ]), PollFlags::POLLIN),
            PollFd::new(bfd(&s.call[TXQ]), PollFlags::POLLIN),
        ];
        let _ = poll(&mut fds, PollTimeout::from(10u16));
        let _ = s.call[RXQ].read();
        let _ = s.call[TXQ].read();
        // Airlock to the guest.
        let frames = {
            let mut rings = s.rings.lock().unwrap();
            let f = take_frames(&s, &mut rings[RXQ]);
            let r = &mut rings[RXQ];
            let mut posted = false;
            while let Some(i) = r.free.pop() {
                r.set_desc(
                    &s.mem,
                    i,
                    RX_BUF + u64::from(i) * RX_STRIDE,
                    RX_STRIDE as u32,
                    F_WRITE,
                    0,
                );
                r.publish(&s.mem, i);
                posted = true;
            }
            if posted {
                let _ = s.kick[RXQ].write(1);
            }
            f
        };
        for f in frames {
            let _ = tap.write(&f);
        }
        // The guest to airlock.
        let mut rings = s.rings.lock().unwrap();
        let mut sent = 0;
        while sent < 64 {
            if rings[TXQ].free.is_empty() {
                let r = &mut rings[TXQ];
                let mut used = Vec::new();
                r.take_used(&s.mem, &mut used);
                r.free.extend(used.iter().map(|&(id, _)| id));
                if r.free.is_empty() {
                    break;
                }
            }
            match tap.read(&mut buf) {
                Ok(n) if n > 0 => {
                    send_one(&s, &mut rings[TXQ], &buf[..n]);
                    sent += 1;
                }
                _ => break,
            }
        }
        if sent > 0 {
            let _ = s.kick[TXQ].write(1);
        }
    }
}

/// For tests that want to know the flag names.
pub const DESC_NEXT: u16 = F_NEXT;
pub const DESC_WRITE: u16 = F_WRITE;
