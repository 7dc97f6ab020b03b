//! The queue of frames on their way to the guest.
//!
//! Frames sit in one buffer, each behind a 4-byte slot for the STREAM length
//! prefix, so that every framing flushes without copying. Over vhost-user
//! the slots are the guest's receive buffers themselves when they hold a
//! whole frame (`vhost_user::Rx::hold`): the frame is built, and host data
//! peeked, straight into guest memory. A guest that negotiated GUEST_CSUM
//! takes TCP and UDP checksums partial ([`Tx::checksum`]): frames committed
//! with [`Slots::commit_with`] carry the mark to the virtio-net header.
//!
//! #syscalls: poll|ppoll

use super::{Closed, Kind, PartialCsum, Stats, MAX_FRAME};
use crate::wire::checksum::Checksum;
use std::os::fd::OwnedFd;

/// Transmit queue: bytes and frames held before a flush.
const TX_BYTES: usize = 1024 * 1024;
pub(super) const TX_FRAMES: usize = 128;
/// How long a flush waits for a VMM that is slow to read before dropping
/// the rest of the batch (a paused VM must not stall the loop: TCP data
/// stays in the host socket and is sent again; timers and signals go on).
pub(super) const TX_STALL_MS: i32 = 200;

/// The queue of frames on their way to the guest.
pub struct Tx {
    pub(super) fd: OwnedFd,
    kind: Kind,
    pub(super) buf: Vec<u8>,
    /// (offset of the 4-byte prefix, frame length, checksum left partial)
    pub(super) frames: Vec<(usize, usize, Option<PartialCsum>)>,
    used: usize,
    closed: Option<Closed>,
    /// STREAM: the unwritten tail of a frame the VMM stopped reading in
    /// the middle of; it goes first next time, so the framing never breaks.
    pub(super) tail: Vec<u8>,
    /// VhostUser: the device whose receive ring a flush fills.
    pub(super) vhost: Option<super::vhost_user::Rx>,
    pub stats: Stats,
    /// `--pcap`: sees every frame received and flushed.
    pub pcap: Option<crate::pcap::Pcap>,
    /// The simulator's link (`fuzzing` only): flushes append the frames,
    /// each behind its 4-byte length, here instead of writing to `fd`.
    #[cfg(feature = "fuzzing")]
    memory: Option<Vec<u8>>,
}

impl Tx {
    pub(super) fn new(fd: OwnedFd, kind: Kind) -> Tx {
        Tx {
            fd,
            kind,
            buf: vec![0; TX_BYTES + MAX_FRAME + 4],
            frames: Vec::with_capacity(TX_FRAMES),
            used: 0,
            closed: None,
            tail: Vec::new(),
            vhost: None,
            stats: Stats::default(),
            pcap: None,
            #[cfg(feature = "fuzzing")]
            memory: None,
        }
    }

    /// A queue whose flushes go to memory (the simulator's link); `fd` is
    /// never written.
    #[cfg(feature = "fuzzing")]
    pub fn in_memory(fd: OwnedFd) -> Tx {
        let mut tx = Tx::new(fd, Kind::Stream);
        tx.memory = Some(Vec::new());
        tx
    }

    /// The frames flushed to memory since the last call, length-prefixed.
    #[cfg(feature = "fuzzing")]
    pub fn take_memory(&mut self, out: &mut Vec<u8>) {
        out.clear();
        if let Some(m) = self.memory.as_mut() {
            std::mem::swap(m, out);
        }
    }

    /// Whether the link has failed on the way out; the engine then stops.
    pub fn closed(&mut self) -> Option<Closed> {
        self.closed.take()
    }

    /// Queue one frame built in place by `build`, which gets a buffer of
    /// [`MAX_FRAME`] bytes and returns the frame's length (0: no frame).
    pub fn send_with(&mut self, build: impl FnOnce(&mut [u8]) -> usize) {
        let mut slots = self.reserve(1, MAX_FRAME);
        let len = slots.iter_mut().next().map_or(0, build).min(MAX_FRAME);
        slots.commit(&[len]);
    }

    /// Queue a frame already built elsewhere.
    pub fn send(&mut self, frame: &[u8]) {
        self.send_with(|b| {
            let n = frame.len().min(b.len());
            b[..n].copy_from_slice(&frame[..n]);
            n
        });
    }

    /// How many frames of up to `frame_len` bytes fit before the queue must
    /// be flushed.
    pub fn room(&self, frame_len: usize) -> usize {
        let stride = frame_len + 4;
        ((self.buf.len() - self.used) / stride).min(TX_FRAMES - self.frames.len())
    }

    /// Slots for up to `count` frames of up to `frame_len` bytes each,
    /// flushing first if none fits; at least one. The caller builds frames
    /// in them and hands their lengths to [`Slots::commit`].
    pub fn reserve(&mut self, count: usize, frame_len: usize) -> Slots<'_> {
        let frame_len = frame_len.min(MAX_FRAME);
        if let Some(n) = self.hold_in_place(count, frame_len) {
            return Slots {
                tx: self,
                frame_len,
                count: n,
                in_place: true,
            };
        }
        if self.room(frame_len) == 0 {
            self.flush();
        }
        let count = count.clamp(1, self.room(frame_len).max(1));
        Slots {
            tx: self,
            frame_len,
            count,
            in_place: false,
        }
    }

    /// vhost-user: take guest receive buffers as the slots; how many.
    fn hold_in_place(&mut self, count: usize, frame_len: usize) -> Option<usize> {
        if !self.vhost.as_ref()?.may_fit() {
            return None;
        }
        if !self.frames.is_empty() {
            // Frames queued for copying go first: the guest sees used
            // buffers in the order they are handed back.
            self.flush();
        }
        let n = self.vhost.as_mut()?.hold(count, frame_len);
        (n > 0).then_some(n)
    }

    /// The TCP payload to put in one frame toward the guest: `mss`, or as
    /// much as a 64 KiB frame holds when the guest takes GSO segments
    /// whatever its MTU (vhost-user with GUEST_TSO4/6) and one carries at
    /// least two MSS (at MTU 65520 a frame is already 64 KiB).
    pub fn tcp_segment(&self, mss: usize, hdr: usize) -> usize {
        let gso = MAX_FRAME.saturating_sub(hdr);
        match &self.vhost {
            Some(rx) if gso >= 2 * mss && rx.guest_gso() => gso,
            _ => mss,
        }
    }

    /// How TCP and UDP frames toward the guest may carry their checksum:
    /// `Partial` over vhost-user when the driver negotiated GUEST_CSUM (it
    /// finishes or trusts them, as a NIC's driver does), `Full` on every
    /// other link. Such frames are committed with [`Slots::commit_with`].
    pub fn checksum(&self) -> Checksum {
        match &self.vhost {
            Some(rx) if rx.guest_csum() => Checksum::Partial,
            _ => Checksum::Full,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Send everything queued. Waits (bounded) for a VMM that is slow to
    /// read rather than dropping: the link is lossless and so is airlock.
    pub fn flush(&mut self) {
        if let Some(rx) = self.vhost.as_mut() {
            rx.notify();
        }
        self.capture();
        if self.frames.is_empty() {
            self.used = 0;
            if !self.tail.is_empty() {
                if let Err(e) = self.flush_tail() {
                    self.closed.get_or_insert(Closed::Error(e));
                }
            }
            return;
        }
        self.stats.tx_flushes += 1;
        #[cfg(feature = "fuzzing")]
        if let Some(m) = self.memory.as_mut() {
            for &(off, len, _) in &self.frames {
                m.extend_from_slice(&self.buf[off..off + 4 + len]);
            }
            self.frames.clear();
            self.used = 0;
            return;
        }
        let r = match self.kind {
            Kind::Dgram => self.flush_dgram(),
            Kind::Stream => self.flush_stream(),
            Kind::Tap => self.flush_tap(),
            Kind::VhostUser => {
                self.flush_vhost();
                Ok(())
            }
        };
        if let Err(e) = r {
            self.closed.get_or_insert(Closed::from_io(e));
        }
        self.frames.clear();
        self.used = 0;
    }

    /// `--pcap`: record the queued frames, then write the capture.
    fn capture(&mut self) {
        let Some(p) = self.pcap.as_mut() else { return };
        for &(off, len, partial) in &self.frames {
            if let Some(f) = self.buf.get(off + 4..off + 4 + len) {
                p.frame_partial(f, partial);
            }
        }
        p.flush();
    }

    pub(super) fn account(&mut self, len: usize) {
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += len as u64;
    }
}

/// Room for a batch of frames in the transmit queue, from [`Tx::reserve`].
/// Nothing is queued until [`Slots::commit`].
pub struct Slots<'a> {
    tx: &'a mut Tx,
    frame_len: usize,
    count: usize,
    /// The slots are guest receive buffers (vhost-user).
    in_place: bool,
}

impl Slots<'_> {
    /// How many frames fit.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The frames' buffers, `frame_len` bytes each, in order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut [u8]> {
        let stride = self.frame_len + 4;
        let start = self.tx.used;
        let copied = if self.in_place { 0 } else { self.count };
        let frame_len = self.frame_len;
        self.tx.buf[start..start + copied * stride]
            .chunks_exact_mut(stride)
            .map(|c| &mut c[4..])
            .chain(
                self.tx
                    .vhost
                    .iter_mut()
                    .flat_map(move |rx| rx.held_mut(frame_len)),
            )
    }

    /// Queue the first `lens.len()` frames with these lengths (0 skips one).
    pub fn commit(self, lens: &[usize]) {
        self.commit_with(lens, None);
    }

    /// [`Slots::commit`]; `partial`: the frames' checksums were emitted
    /// partial (as [`Tx::checksum`] allowed), all at that place.
    pub fn commit_with(mut self, lens: &[usize], mut partial: Option<PartialCsum>) {
        let lens = &lens[..lens.len().min(self.count)];
        if partial.is_some() && self.tx.checksum() == Checksum::Full {
            // No device would finish them: finish them here.
            for (f, &len) in self.iter_mut().zip(lens) {
                complete(f.get_mut(..len).unwrap_or(&mut []), partial);
            }
            partial = None;
        }
        let tx = &mut *self.tx;
        if self.in_place {
            if let Some(rx) = tx.vhost.as_mut() {
                let (frames, bytes) = rx.commit(lens, partial, tx.pcap.as_mut());
                tx.stats.tx_frames += frames;
                tx.stats.tx_bytes += bytes;
            }
            return;
        }
        let stride = self.frame_len + 4;
        for (i, &len) in lens.iter().enumerate() {
            let off = tx.used + i * stride;
            if len == 0 || len > self.frame_len {
                continue;
            }
            tx.buf[off..off + 4].copy_from_slice(&(len as u32).to_be_bytes());
            tx.frames.push((off, len, partial));
        }
        tx.used += lens.len() * stride;
        if tx.room(MAX_FRAME) == 0 {
            tx.flush();
        }
    }
}

impl Drop for Slots<'_> {
    /// Guest buffers taken and not committed go back to the ring.
    fn drop(&mut self) {
        if let Some(rx) = self.tx.vhost.as_mut() {
            rx.release();
        }
    }
}

/// Finish a checksum left partial; a mark outside the frame (a caller's
/// bug, never the guest's) leaves it as it is.
pub(super) fn complete(frame: &mut [u8], partial: Option<PartialCsum>) {
    if let Some(p) = partial {
        let _ = crate::wire::virtio_net::complete_checksum(frame, p.start, p.offset);
    }
}
