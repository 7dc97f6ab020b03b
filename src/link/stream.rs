//! STREAM framing: a 4-byte big-endian length before each frame (`-netdev
//! stream`, passt). One large read may hold many frames and end inside one;
//! many frames leave in one `sendmsg`, resuming at the exact byte after a
//! partial write.
//!
//! #syscalls: recvfrom sendmsg sendto(5=0)

use super::tx::TX_STALL_MS;
use super::{would_block, Closed, Link, Recv, RxMeta, Tx, MAX_FRAME, MIN_FRAME};
use crate::sys;
use std::io::{self, IoSlice};
use std::os::fd::AsFd;

/// Bytes read per `recv` on a STREAM link.
const RX_STREAM: usize = 256 * 1024;
/// Plus room for a partial frame carried over.
pub(super) const RX_BYTES: usize = RX_STREAM + MAX_FRAME + 4;
/// Frames per `sendmsg`.
const IOV_BATCH: usize = 64;

impl Link {
    pub(super) fn recv_stream(
        &mut self,
        on_frame: &mut impl FnMut(&[u8], &[u8], &mut Tx),
    ) -> Result<Recv, Closed> {
        // The last batch is written out: its partial frame goes first now.
        self.rx
            .copy_within(self.carry_at..self.carry_at + self.carry, 0);
        self.carry_at = 0;
        let start = self.carry;
        let room = self.rx.len() - start;
        let r = match sys::recv(self.fd.as_fd(), &mut self.rx[start..], libc::MSG_DONTWAIT) {
            Ok(0) => return Err(Closed::Hangup),
            Ok(r) => r,
            Err(e) if would_block(&e) => return Ok(Recv::Drained),
            Err(e) => return Err(Closed::from_io(e)),
        };
        let end = start + r;
        let mut pos = 0;
        while end - pos >= 4 {
            let len = u32::from_be_bytes([
                self.rx[pos],
                self.rx[pos + 1],
                self.rx[pos + 2],
                self.rx[pos + 3],
            ]);
            if (len as usize) < MIN_FRAME || len as usize > MAX_FRAME {
                return Err(Closed::Framing(len));
            }
            let len = len as usize;
            if end - pos - 4 < len {
                break;
            }
            let frame = &self.rx[pos + 4..pos + 4 + len];
            let (batch, meta) = (&self.rx[..end], RxMeta::default());
            Self::deliver(&mut self.tx, frame, meta, &mut |f, _, tx| {
                on_frame(f, batch, tx)
            });
            pos += 4 + len;
        }
        // Keep the partial frame (at most 4 + MAX_FRAME bytes) for next time.
        self.carry_at = pos;
        self.carry = end - pos;
        Ok(if r == room { Recv::More } else { Recv::Drained })
    }
}

impl Tx {
    /// Write the held tail of a half-written frame; false while the VMM
    /// still does not read (the queued frames are then dropped).
    pub(super) fn flush_tail(&mut self) -> io::Result<bool> {
        while !self.tail.is_empty() {
            match sys::send(
                self.fd.as_fd(),
                &self.tail,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            ) {
                Ok(n) => {
                    self.tail.drain(..n);
                }
                Err(e) if would_block(&e) => {
                    if !sys::wait_writable(self.fd.as_fd(), TX_STALL_MS) {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    pub(super) fn flush_stream(&mut self) -> io::Result<()> {
        if !self.flush_tail()? {
            self.stats.tx_dropped += self.frames.len() as u64;
            return Ok(());
        }
        // Frames are written as (prefix + frame) ranges; a partial write
        // resumes at the exact byte so the framing never breaks.
        let mut idx = 0;
        let mut skip = 0usize; // bytes of frames[idx] already written
        while idx < self.frames.len() {
            let n = (self.frames.len() - idx).min(IOV_BATCH);
            // The VMM's socket may be blocking (its flags are shared with
            // the VMM, so they are left alone): never wait inside the call.
            let r = {
                let mut iov = [IoSlice::new(&[]); IOV_BATCH];
                for (i, v) in iov.iter_mut().enumerate().take(n) {
                    let (off, len, _) = self.frames[idx + i];
                    let s = if i == 0 { skip } else { 0 };
                    *v = IoSlice::new(&self.buf[off + s..off + 4 + len]);
                }
                sys::send_vectored(
                    self.fd.as_fd(),
                    &iov[..n],
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            let mut w = match r {
                Ok(w) => w,
                Err(e) if would_block(&e) => {
                    if sys::wait_writable(self.fd.as_fd(), TX_STALL_MS) {
                        continue;
                    }
                    // The VMM stopped reading: keep the rest of a frame we
                    // are in the middle of, drop the frames after it.
                    let mut dropped = self.frames.len() - idx;
                    if skip > 0 {
                        let (off, len, _) = self.frames[idx];
                        self.tail
                            .extend_from_slice(&self.buf[off + skip..off + 4 + len]);
                        dropped -= 1;
                    }
                    self.stats.tx_dropped += dropped as u64;
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            while w > 0 && idx < self.frames.len() {
                let left = self.frames[idx].1 + 4 - skip;
                if w >= left {
                    w -= left;
                    self.account(self.frames[idx].1);
                    idx += 1;
                    skip = 0;
                } else {
                    skip += w;
                    w = 0;
                }
            }
        }
        Ok(())
    }
}
