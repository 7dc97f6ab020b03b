//! DGRAM framing: one frame per datagram, batched with `recvmmsg` and
//! `sendmmsg` (libvirt's slirp-helper socketpair, `-netdev socket,fd=`).
//!
//! #syscalls: recvmmsg sendmmsg

use super::tx::{TX_FRAMES, TX_STALL_MS};
use super::{would_block, Closed, Link, Recv, Tx, MAX_FRAME};
use crate::sys;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::AsFd;

/// Datagrams read per `recvmmsg`.
pub(super) const RX_SLOTS: usize = 8;
/// One byte more than a frame, so an oversized datagram shows as truncated.
const SLOT: usize = MAX_FRAME + 1;
pub(super) const RX_BYTES: usize = RX_SLOTS * SLOT;

impl Link {
    pub(super) fn recv_dgram(
        &mut self,
        on_frame: &mut impl FnMut(&[u8], &mut Tx),
    ) -> Result<Recv, Closed> {
        let r = {
            let mut chunks = self.rx.chunks_exact_mut(SLOT);
            let mut bufs: [IoSliceMut<'_>; RX_SLOTS] =
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
            sys::recv_each(
                self.fd.as_fd(),
                &mut bufs,
                &mut self.rx_lens,
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
            if len > MAX_FRAME {
                self.tx.stats.rx_oversize += 1;
                continue;
            }
            let frame = &self.rx[i * SLOT..i * SLOT + len];
            Self::deliver(&mut self.tx, frame, on_frame);
        }
        Ok(if n == RX_SLOTS {
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
                for (b, &(off, len)) in bufs.iter_mut().zip(&self.frames[done..]) {
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
