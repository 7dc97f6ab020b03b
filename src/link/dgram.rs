//! DGRAM framing: one frame per datagram, batched with `recvmmsg` and
//! `sendmmsg` (libvirt's slirp-helper socketpair, `-netdev socket,fd=`).
//!
//! #syscalls: recvmmsg sendmmsg

use super::tx::{TX_FRAMES, TX_STALL_MS};
use super::{would_block, Closed, Link, Recv, RxMeta, Tx, MAX_FRAME};
use crate::sys;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::AsFd;

/// Most datagrams read per `recvmmsg`.
pub(super) const RX_SLOTS: usize = 64;
/// The receive buffer: 8 slots of the largest frame, or more slots (up to
/// [`RX_SLOTS`]) of a smaller MTU's: at 1500, one call reads 64 frames.
pub(super) const RX_BYTES: usize = 8 * (MAX_FRAME + 1);

/// A slot for frames of `mtu`: one byte more than the largest frame, so an
/// oversized datagram shows as truncated (and is dropped as a real NIC
/// drops a frame longer than its MTU). 4 bytes spare for an 802.1Q tag.
pub(super) fn slot_for(mtu: usize) -> usize {
    (mtu + 14 + 4).min(MAX_FRAME) + 1
}

impl Link {
    /// One `recvmmsg`; each frame goes to `on_frame` with the buffer it
    /// lies in, which stays as it is until the next call.
    pub(super) fn recv_dgram(
        &mut self,
        on_frame: &mut impl FnMut(&[u8], &[u8], &mut Tx),
    ) -> Result<Recv, Closed> {
        let slot = self.rx_slot;
        let slots = (self.rx.len() / slot).min(RX_SLOTS);
        let r = {
            let mut chunks = self.rx.chunks_exact_mut(slot);
            let mut bufs: [IoSliceMut<'_>; RX_SLOTS] =
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
            sys::recv_each(
                self.fd.as_fd(),
                &mut bufs[..slots],
                &mut self.rx_lens[..slots],
                libc::MSG_DONTWAIT,
            )
        };
        let n = match r {
            Ok(n) => n,
            Err(e) if would_block(&e) => return Ok(Recv::Drained),
            Err(e) => return Err(Closed::from_io(e)),
        };
        for i in 0..n {
            let len = self.rx_lens[i];
            if len >= slot {
                self.tx.stats.rx_oversize += 1;
                continue;
            }
            let rx = &self.rx;
            let frame = &rx[i * slot..i * slot + len];
            let meta = RxMeta::default();
            Self::deliver(&mut self.tx, frame, meta, &mut |f, _, tx| {
                on_frame(f, rx, tx)
            });
        }
        Ok(if n == slots {
            Recv::More
        } else {
            Recv::Drained
        })
    }
}

impl Tx {
    pub(super) fn flush_dgram(&mut self) -> io::Result<()> {
        let mut done = 0;
        while done < self.frames.len() {
            let n = self.frames.len() - done;
            let r = {
                let mut bufs = [IoSlice::new(&[]); TX_FRAMES];
                for (b, &(off, len, _)) in bufs.iter_mut().zip(&self.frames[done..]) {
                    *b = IoSlice::new(&self.buf[off + 4..off + 4 + len]);
                }
                sys::send_each(
                    self.fd.as_fd(),
                    &bufs[..n],
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            let sent = match r {
                Ok(sent) => sent,
                Err(e) if would_block(&e) || e.raw_os_error() == Some(libc::ENOBUFS) => {
                    if !sys::wait_writable(self.fd.as_fd(), TX_STALL_MS) {
                        // The VMM stopped reading: drop this batch, keep going.
                        self.stats.tx_dropped += n as u64;
                        return Ok(());
                    }
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    self.stats.tx_dropped += 1;
                    done += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            for i in 0..sent {
                self.account(self.frames[done + i].1);
            }
            done += sent;
        }
        Ok(())
    }
}
