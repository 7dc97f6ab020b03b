//! `--vhost-user`: the link is the vhost-user backend of a virtio-net
//! device. The VMM shares guest memory and the two virtqueues, so there is
//! no syscall per frame and no socket in between. Frames to the guest are
//! built in its receive buffers when one holds a whole frame ([`Rx`]), and
//! copied in, merged over several, when not. Frames from the guest are
//! copied once into the link's buffer: the stack's parser may read a field
//! twice, and memory the guest can rewrite meanwhile must not reach it.
//!
//! Everything runs on airlock's one thread: the control socket and the
//! transmit queue's kick eventfd sit in a small epoll set of their own
//! whose descriptor is the link's, so the engine sees one readable link as
//! with any other framing. The receive queue's kick is only read while a
//! flush waits for buffers (bounded, as a slow VMM's socket is).
//!
//! - `device.rs`: the device and its request handler;
//! - `virtq.rs`: the checked descriptor-chain walker.
//!
//! #syscalls: recvmsg sendmsg epoll_create1 epoll_wait|epoll_pwait|epoll_pwait2 epoll_ctl read write
//! #syscalls: setsockopt recvfrom nanosleep|clock_nanosleep
#![forbid(unsafe_code)]

mod device;
pub mod virtq;

pub use device::{protocol_features, Device, Held, Stats, GUEST_MAC, VIRTIO_FEATURES};
pub use virtq::Fault;

use super::{Closed, Kind, Link, PartialCsum, Recv, RxMeta, Tx, MAX_FRAME};
use device::TOKEN_SOCKET;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};
use vhost::vhost_user::{BackendReqHandler, Error as VuError};

/// Frames taken from the transmit ring per link wakeup.
const RX_BURST: usize = 32;
/// Room for one frame taken from the ring: its virtio-net header, the
/// largest frame and one byte more (to tell an oversized one).
const RX_SLOT: usize = crate::wire::virtio_net::HEADER_LEN + MAX_FRAME + 1;
/// The link's receive buffer: a burst's frames lie side by side in it
/// until the next burst, so that a flow's payloads leave in one `sendmsg`
/// (`flow::Held`). 16 of the largest frames; a burst stops when the next
/// might not fit.
pub(super) const RX_BYTES: usize = 16 * RX_SLOT;
/// How long a request begun may take to arrive whole, or a reply to go.
const CONTROL_WAIT_MS: u64 = 200;
/// The protocol's largest request body.
const MAX_MSG_SIZE: usize = 0x1000;

/// The link side of the device: the control channel and the epoll set the
/// engine polls as the link's descriptor.
pub(super) struct Backend {
    /// The control socket, to peek at requests before the handler reads.
    sock: UnixStream,
    peek: Vec<u8>,
    handler: BackendReqHandler<Mutex<Device>>,
    dev: Arc<Mutex<Device>>,
    epoll: Arc<Epoll>,
}

/// Lock the device; only airlock's one thread ever does.
pub fn lock(dev: &Mutex<Device>) -> MutexGuard<'_, Device> {
    dev.lock().unwrap_or_else(|p| p.into_inner())
}

impl Backend {
    /// Serve the VMM on `stream`, a connected vhost-user socket.
    pub fn new(stream: UnixStream, mtu: u16) -> std::io::Result<Backend> {
        // A VMM that stops reading replies must not hold the loop either.
        stream.set_write_timeout(Some(std::time::Duration::from_millis(CONTROL_WAIT_MS)))?;
        let epoll = Arc::new(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?);
        epoll.add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_SOCKET))?;
        let dev = Arc::new(Mutex::new(Device::new(mtu, epoll.clone())));
        let sock = stream.try_clone()?;
        let handler = BackendReqHandler::from_stream(stream, dev.clone());
        Ok(Backend {
            sock,
            peek: vec![0; 12 + MAX_MSG_SIZE],
            handler,
            dev,
            epoll,
        })
    }

    /// The device, shared with the transmit queue.
    pub fn device(&self) -> Arc<Mutex<Device>> {
        self.dev.clone()
    }

    /// A descriptor for the engine's epoll set: readable when the VMM sent
    /// a request or kicked the transmit ring.
    pub fn poll_fd(&self) -> std::io::Result<OwnedFd> {
        self.epoll.0.try_clone()
    }

    /// Answer the VMM's pending requests and consume a transmit kick.
    /// Call once per link wakeup, before taking frames.
    pub fn service(&mut self) -> Result<(), Closed> {
        let mut events = [EpollEvent::empty(); 2];
        let n = self
            .epoll
            .wait(&mut events, EpollTimeout::ZERO)
            .unwrap_or(0);
        let mut control = false;
        for ev in &events[..n] {
            if ev.data() == TOKEN_SOCKET {
                control = true;
            } else {
                let d = lock(&self.dev);
                if let Some(k) = d.tx_kick() {
                    let mut b = [0u8; 8];
                    let _ = (&*k).read(&mut b);
                }
            }
        }
        if control && self.request_ready()? {
            match self.handler.handle_request() {
                Ok(()) => {}
                Err(
                    VuError::Disconnected
                    | VuError::PartialMessage
                    | VuError::SocketBroken(_)
                    | VuError::SocketError(_),
                ) => return Err(Closed::Hangup),
                Err(e @ (VuError::InvalidMessage | VuError::OversizedMsg)) => {
                    // A header that cannot be trusted: the channel is out of step.
                    log::warn!("vhost-user: {e}: closing the connection");
                    return Err(Closed::Hangup);
                }
                Err(e) => {
                    // The whole message was read: the channel stays in step.
                    let mut d = lock(&self.dev);
                    d.stats.bad_requests += 1;
                    log::warn!("vhost-user request refused: {e}");
                }
            }
        }
        Ok(())
    }

    /// Whether a whole request is waiting. The `vhost` crate reads a
    /// request with blocking calls and retries forever on a short read, so
    /// it is only called once the header and body are all there: a VMM that
    /// stops in the middle of one is waited for [`CONTROL_WAIT_MS`] at
    /// most, then taken for gone.
    fn request_ready(&mut self) -> Result<bool, Closed> {
        use nix::sys::socket::{recv, MsgFlags};
        use std::os::fd::AsRawFd;
        const HDR: usize = 12;
        for _ in 0..CONTROL_WAIT_MS {
            let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
            let n = match recv(self.sock.as_raw_fd(), &mut self.peek, flags) {
                Ok(0) => return Err(Closed::Hangup),
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return Ok(false),
                Err(_) => return Err(Closed::Hangup),
            };
            if let Some(h) = self.peek.get(8..HDR).filter(|_| n >= HDR) {
                let size = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
                // An oversized request is left to the handler to refuse.
                if size > MAX_MSG_SIZE || n >= HDR + size {
                    return Ok(true);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        log::warn!("vhost-user: a request stopped half-way for {CONTROL_WAIT_MS} ms: closing the connection");
        Err(Closed::Hangup)
    }

    /// The next guest frame into `buf`, as a range of it, with what its
    /// header said; `None` when the ring is empty. A fault resets the
    /// device and ends the batch.
    pub fn next_frame(&mut self, buf: &mut [u8]) -> Option<(usize, usize, RxMeta)> {
        let mut d = lock(&self.dev);
        match d.pop_tx(buf) {
            Ok(f) => f,
            Err(f) => {
                d.fault(f);
                None
            }
        }
    }

    /// Make the transmit kick readable again: frames are left in the ring
    /// for the next wakeup.
    pub fn rekick(&mut self) {
        let d = lock(&self.dev);
        if let Some(k) = d.tx_kick() {
            let _ = (&*k).write(&1u64.to_ne_bytes());
        }
    }

    pub fn end_batch(&mut self) {
        lock(&self.dev).notify_tx();
    }

    pub fn stats(&self) -> Stats {
        lock(&self.dev).stats.clone()
    }
}

impl AsFd for Backend {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }
}

/// Frames to the guest. Built in place in the guest's receive buffers
/// when its buffers hold a whole frame (the transmit queue's slots are
/// those buffers: [`Rx::hold`]); otherwise built in the queue and copied
/// in at the flush ([`Rx::push`]), merged over several buffers.
pub(super) struct Rx {
    dev: Arc<Mutex<Device>>,
    /// Buffers taken for the slots being filled; empty between batches.
    held: Vec<Held>,
    /// Frames placed in place since the driver was last told.
    placed: bool,
    /// The last buffer looked at was too small: stop trying until the
    /// next flush (the copying path serves such a driver).
    too_small: bool,
}

impl Rx {
    pub fn new(dev: Arc<Mutex<Device>>) -> Rx {
        Rx {
            dev,
            held: Vec::with_capacity(super::tx::TX_FRAMES),
            placed: false,
            too_small: false,
        }
    }

    /// Take up to `count` of the guest's receive buffers for frames of
    /// `frame_len` bytes; how many (0: build them in the queue instead).
    pub fn hold(&mut self, count: usize, frame_len: usize) -> usize {
        if self.too_small {
            return 0;
        }
        let mut d = lock(&self.dev);
        let max = count.clamp(1, self.held.capacity());
        match d.hold_rx(frame_len, max, &mut self.held) {
            Ok(small) => self.too_small = small && self.held.is_empty(),
            Err(f) => {
                // The buffers taken are void with the reset.
                self.held.clear();
                d.fault(f);
            }
        }
        self.held.len()
    }

    /// The held buffers' frame bytes, `frame_len` each, in order.
    pub fn held_mut(&mut self, frame_len: usize) -> impl Iterator<Item = &mut [u8]> {
        self.held
            .iter_mut()
            .map(move |h| &mut h.frame()[..frame_len])
    }

    /// Hand the first `lens.len()` held buffers to the guest with frames of
    /// these lengths (0: an empty buffer, which the driver drops), their
    /// checksums left `partial`; give the rest back. Returns (frames, bytes).
    pub fn commit(
        &mut self,
        lens: &[usize],
        partial: Option<PartialCsum>,
        mut pcap: Option<&mut crate::pcap::Pcap>,
    ) -> (u64, u64) {
        let mut d = lock(&self.dev);
        let n = lens.len().min(self.held.len());
        let (mut frames, mut bytes) = (0u64, 0u64);
        for (h, &len) in self.held.iter_mut().zip(&lens[..n]) {
            // A length past the slot is no frame (as in the queue).
            let len = if len > h.frame().len() { 0 } else { len };
            if let Some(p) = pcap.as_deref_mut().filter(|_| len > 0) {
                p.frame_partial(&h.frame()[..len], partial);
            }
            if let Err(f) = d.place_held(h, len, partial) {
                d.fault(f);
                self.held.clear();
                return (frames, bytes);
            }
            if len > 0 {
                frames += 1;
                bytes += len as u64;
            }
        }
        d.release_held(self.held.len() - n);
        self.held.clear();
        self.placed |= n > 0;
        (frames, bytes)
    }

    /// Whether the guest takes partial checksums (GUEST_CSUM).
    pub fn guest_csum(&self) -> bool {
        lock(&self.dev).guest_csum()
    }

    /// Whether the guest takes TCP segments larger than its MTU.
    pub fn guest_gso(&self) -> bool {
        lock(&self.dev).guest_gso()
    }

    /// Whether the guest's buffers may hold whole frames (none looked at
    /// since the last flush was too small).
    pub fn may_fit(&self) -> bool {
        !self.too_small
    }

    /// Give back every held buffer (slots dropped without a commit).
    pub fn release(&mut self) {
        if !self.held.is_empty() {
            lock(&self.dev).release_held(self.held.len());
            self.held.clear();
        }
    }

    /// Tell the driver about frames placed in place; look at its buffers
    /// afresh from here on.
    pub fn notify(&mut self) {
        self.too_small = false;
        if std::mem::take(&mut self.placed) {
            lock(&self.dev).notify_rx();
        }
    }

    /// Place every frame, each with its checksum left partial or not;
    /// returns (frames placed, frames dropped).
    pub fn push<'a>(
        &mut self,
        frames: impl Iterator<Item = (&'a [u8], Option<PartialCsum>)>,
    ) -> (u64, u64) {
        let mut d = lock(&self.dev);
        let (mut sent, mut dropped) = (0u64, 0u64);
        let mut running = d.rx_running();
        for (f, partial) in frames {
            if !running || f.len() > MAX_FRAME {
                dropped += 1;
                continue;
            }
            match d.push_rx(f, partial) {
                Ok(true) => sent += 1,
                Ok(false) => {
                    // No buffers in time: the rest would wait as long.
                    dropped += 1;
                    running = false;
                }
                Err(fault) => {
                    d.fault(fault);
                    dropped += 1;
                    running = false;
                }
            }
        }
        if sent > 0 {
            d.notify_rx();
        }
        d.stats.rx_dropped += dropped;
        (sent, dropped)
    }
}

impl Link {
    /// `--vhost-user`: be the virtio-net backend on a connected vhost-user
    /// socket, offering `mtu` in the device's config space.
    pub fn vhost_user(stream: UnixStream, mtu: u16) -> std::io::Result<Link> {
        let backend = Backend::new(stream, mtu)?;
        let mut link = Link::new(backend.poll_fd()?, Kind::VhostUser)?;
        link.tx.vhost = Some(Rx::new(backend.device()));
        link.vhost = Some(Box::new(backend));
        Ok(link)
    }

    /// The vhost-user device's counters, for `--debug`.
    pub fn vhost_stats(&self) -> Option<Stats> {
        self.vhost.as_ref().map(|b| b.stats())
    }

    /// Take a burst of frames from the transmit ring; each goes to
    /// `on_frame` with the buffer it lies in, which stays as it is until
    /// the next call (each frame is copied in after the last).
    pub(super) fn recv_vhost(
        &mut self,
        on_frame: &mut impl FnMut(&[u8], RxMeta, &[u8], &mut Tx),
    ) -> Result<Recv, Closed> {
        let Some(backend) = self.vhost.as_mut() else {
            return Ok(Recv::Drained);
        };
        backend.service()?;
        let (mut n, mut at) = (0, 0);
        let mut full = true;
        while n < RX_BURST && at + RX_SLOT <= self.rx.len() {
            let Some((start, end, meta)) = backend.next_frame(&mut self.rx[at..at + RX_SLOT])
            else {
                full = false;
                break;
            };
            n += 1;
            let (start, end) = (at + start, at + end);
            // The next frame starts cache-line aligned, after this one.
            at = end.next_multiple_of(64);
            if end - start > MAX_FRAME {
                self.tx.stats.rx_oversize += 1;
                continue;
            }
            let rx = &self.rx;
            Self::deliver(&mut self.tx, &rx[start..end], meta, &mut |f, m, tx| {
                on_frame(f, m, rx, tx)
            });
        }
        backend.end_batch();
        if full {
            // Frames may be left, and the driver kicks only once after
            // notifications were turned off (or its event index passed):
            // kick ourselves so the link stays readable.
            backend.rekick();
            return Ok(Recv::More);
        }
        Ok(Recv::Drained)
    }
}

impl Tx {
    pub(super) fn flush_vhost(&mut self) {
        let Some(rx) = self.vhost.as_mut() else {
            return;
        };
        if !rx.guest_csum() {
            // The driver renegotiated since these were built.
            for (off, len, partial) in &mut self.frames {
                super::tx::complete(&mut self.buf[*off + 4..*off + 4 + *len], partial.take());
            }
        }
        let buf = &self.buf;
        let frames = self
            .frames
            .iter()
            .map(|&(off, len, partial)| (&buf[off + 4..off + 4 + len], partial));
        let (sent, dropped) = rx.push(frames);
        self.stats.tx_frames += sent;
        self.stats.tx_dropped += dropped;
        self.stats.tx_bytes += self
            .frames
            .iter()
            .take(sent as usize)
            .map(|&(_, l, _)| l as u64)
            .sum::<u64>();
    }
}
