//! `--netns`: a tap device inside another network namespace is the link,
//! one frame per `read`/`write`.
//!
//! airlock enters the namespace only long enough to open (or create) the
//! tap device, then returns to its own: the tap fd keeps working across
//! namespaces, and every host socket airlock opens later belongs to the
//! namespace it was started in.
//!
//! #syscalls: read write
//! #syscalls-startup: openat setns ioctl(1=TUNSETIFF|SIOCGIFFLAGS|SIOCSIFFLAGS) socket close

use super::tx::TX_STALL_MS;
use super::{would_block, Closed, Link, Recv, RxMeta, Tx, MAX_FRAME};
use crate::sys;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// One byte more than a frame, so an oversized one shows.
pub(super) const RX_BYTES: usize = MAX_FRAME + 1;
/// Frames read from a tap device per wakeup before others get a turn.
const RX_TAP_BURST: usize = 32;

/// Open (creating it if needed) tap device `name` in the network namespace
/// at `netns`, bring it up, and return its fd (close-on-exec).
pub fn open_tap_in_netns(netns: &Path, name: &str) -> io::Result<OwnedFd> {
    let name = sys::if_name(name)?;
    let home = File::open("/proc/self/ns/net")?;
    let target = File::open(netns)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", netns.display())))?;
    sys::enter_netns(target.as_fd())?;
    let result = open_and_up(name);
    // Always come home, even when opening failed.
    sys::enter_netns(home.as_fd())?;
    result
}

fn open_and_up(name: [u8; libc::IFNAMSIZ]) -> io::Result<OwnedFd> {
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    sys::tun_attach_tap(tun.as_fd(), name)?;
    // Bring the interface up, as slirp4netns and pasta do, so the guest
    // namespace only has to ask for an address.
    sys::set_if_up(name);
    Ok(OwnedFd::from(tun))
}

impl Link {
    pub(super) fn recv_tap(
        &mut self,
        on_frame: &mut impl FnMut(&[u8], RxMeta, &mut Tx),
    ) -> Result<Recv, Closed> {
        for _ in 0..RX_TAP_BURST {
            let len = match sys::read(self.fd.as_fd(), &mut self.rx) {
                Ok(len) => len,
                Err(e) if would_block(&e) => return Ok(Recv::Drained),
                Err(e) => return Err(Closed::Error(e)),
            };
            if len > MAX_FRAME {
                self.tx.stats.rx_oversize += 1;
                continue;
            }
            let frame = &self.rx[..len];
            Self::deliver(&mut self.tx, frame, RxMeta::default(), on_frame);
        }
        Ok(Recv::More)
    }
}

impl Tx {
    pub(super) fn flush_tap(&mut self) -> io::Result<()> {
        let mut i = 0;
        while i < self.frames.len() {
            let (off, len, _) = self.frames[i];
            match sys::write(self.fd.as_fd(), &self.buf[off + 4..off + 4 + len]) {
                Ok(_) => self.account(len),
                Err(e) if would_block(&e) => {
                    if !sys::wait_writable(self.fd.as_fd(), TX_STALL_MS) {
                        self.stats.tx_dropped += (self.frames.len() - i) as u64;
                        return Ok(());
                    }
                    continue;
                }
                // EIO: the tap is down; EINVAL: a frame it refuses.
                Err(e) => {
                    self.stats.tx_dropped += 1;
                    if e.raw_os_error() != Some(libc::EIO) && e.raw_os_error() != Some(libc::EINVAL)
                    {
                        return Err(e);
                    }
                }
            }
            i += 1;
        }
        Ok(())
    }
}
