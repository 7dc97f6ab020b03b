//! The VMM link: bytes on the VMM's socket (or a tap device) in, Ethernet
//! frames out, and back. It knows nothing about protocols.
//!
//! Three framings share one receive path and one transmit queue:
//! - [`Kind::Dgram`] (`dgram.rs`): one frame per datagram (`-netdev
//!   socket,fd=`, libvirt's slirp-helper socketpair). Batched with
//!   `recvmmsg`/`sendmmsg`.
//! - [`Kind::Stream`] (`stream.rs`): 4-byte big-endian length, then the frame
//!   (`-netdev stream`, passt). Large reads that may hold many frames and end
//!   in the middle of one; `sendmsg` of many frames at once, never blocking.
//! - [`Kind::Tap`] (`tap.rs`): a tap device (`--netns`), one frame per
//!   read/write.
//! - [`Kind::VhostUser`] (`vhost_user/`): frames straight from and into
//!   guest memory (`--vhost-user`); the link's descriptor is the backend's
//!   own epoll set (control socket, transmit kick).
//!
//! Frames to the guest are queued in [`Tx`] (`tx.rs`) and leave in batches:
//! the engine flushes once per event-loop turn, or earlier when the queue
//! fills. The system calls themselves are wrapped in `sys`.
//!
//! #syscalls-startup: getsockopt fcntl dup
//! #syscalls: fcntl(1=F_DUPFD_CLOEXEC)

#![forbid(unsafe_code)]

mod dgram;
mod stream;
mod tap;
mod tx;
pub mod vhost_user;

pub use crate::sys::inherit_fd;
pub use crate::wire::checksum::PartialCsum;
pub use tap::open_tap_in_netns;
pub use tx::{Slots, Tx};

use std::io;
use std::os::fd::{AsFd, OwnedFd};

/// Largest Ethernet frame on any link: STREAM framing's limit, and what an
/// MTU of 65520 plus the Ethernet header needs.
pub const MAX_FRAME: usize = 65535;
/// Smallest frame worth looking at: an Ethernet header.
pub const MIN_FRAME: usize = 14;

/// The framing of the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dgram,
    Stream,
    Tap,
    VhostUser,
}

/// Why the link ended.
#[derive(Debug)]
pub enum Closed {
    /// The VMM went away (EOF, ECONNRESET, EPIPE, ECONNREFUSED).
    Hangup,
    /// The VMM sent a length that cannot be a frame (STREAM only).
    Framing(u32),
    /// Any other error.
    Error(io::Error),
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Hangup => write!(f, "the VMM closed the link"),
            Closed::Framing(n) => write!(
                f,
                "framing error: frame length {n} is outside {MIN_FRAME}..={MAX_FRAME}, closing the link"
            ),
            Closed::Error(e) => write!(f, "link error: {e}"),
        }
    }
}

impl Closed {
    /// A failed read or write: a hangup when the VMM went away.
    fn from_io(e: io::Error) -> Closed {
        if is_hangup(&e) {
            Closed::Hangup
        } else {
            Closed::Error(e)
        }
    }
}

/// What the link knows of a guest frame beyond its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RxMeta {
    /// The guest's driver left this checksum partial (vhost-user only: the
    /// tap link takes no virtio-net header, DGRAM and STREAM carry none).
    /// The stack decides whether it stands in for verification.
    pub partial: Option<PartialCsum>,
}

/// Per-link counters, printed at exit with `--debug`.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub rx_runt: u64,
    pub rx_oversize: u64,
    pub tx_dropped: u64,
    pub tx_flushes: u64,
}

fn is_hangup(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPIPE)
            | Some(libc::ECONNRESET)
            | Some(libc::ECONNREFUSED)
            | Some(libc::ENOTCONN)
    )
}

fn would_block(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR))
}

/// What one call to [`Link::recv`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Recv {
    /// Frames were delivered; there may be more.
    More,
    /// Nothing left to read now.
    Drained,
}

/// The link to the VMM: a receive side and the transmit queue [`Tx`].
pub struct Link {
    kind: Kind,
    fd: OwnedFd,
    rx: Vec<u8>,
    /// STREAM: a partial frame at `rx[carry_at..carry_at + carry]`, moved
    /// to the front only at the next read (the batch stays in place until
    /// then, see [`Link::recv_batched`]).
    carry: usize,
    carry_at: usize,
    rx_lens: [usize; dgram::RX_SLOTS],
    /// DGRAM: bytes per receive slot (see [`Link::sized_for`]).
    rx_slot: usize,
    /// VhostUser: the control channel and transmit ring.
    vhost: Option<Box<vhost_user::Backend>>,
    pub tx: Tx,
}

impl Link {
    /// Wrap a connected socket or tap fd. Reads never block (`MSG_DONTWAIT`
    /// or `O_NONBLOCK` on our own tap fd); the VMM's socket flags are left
    /// as they are because the file description may be shared.
    pub fn new(fd: OwnedFd, kind: Kind) -> io::Result<Link> {
        let txfd = fd.try_clone()?;
        if kind == Kind::Tap {
            crate::sys::set_nonblocking(fd.as_fd())?;
        }
        let rx = match kind {
            Kind::Dgram => vec![0; dgram::RX_BYTES],
            Kind::Stream => vec![0; stream::RX_BYTES],
            Kind::Tap => vec![0; tap::RX_BYTES],
            Kind::VhostUser => vec![0; vhost_user::RX_BYTES],
        };
        Ok(Link {
            kind,
            fd,
            rx,
            carry: 0,
            carry_at: 0,
            rx_lens: [0; dgram::RX_SLOTS],
            rx_slot: dgram::slot_for(MAX_FRAME),
            vhost: None,
            tx: Tx::new(txfd, kind),
        })
    }

    /// A connected UNIX socket inherited from the VMM: its type says the framing.
    pub fn from_socket(fd: OwnedFd) -> io::Result<Link> {
        let ty = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::SockType)
            .map_err(io::Error::from)?;
        let kind = match ty {
            nix::sys::socket::SockType::Datagram => Kind::Dgram,
            nix::sys::socket::SockType::Stream => Kind::Stream,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unsupported socket type {other:?}: need SOCK_DGRAM or SOCK_STREAM"),
                ))
            }
        };
        Link::new(fd, kind)
    }

    /// Size the receive batch for frames of `mtu`: a DGRAM link then reads
    /// more frames per `recvmmsg` at small MTUs, and drops (counts as
    /// oversized) a datagram longer than the MTU allows.
    pub fn sized_for(mut self, mtu: u16) -> Link {
        if self.kind == Kind::Dgram {
            self.rx_slot = dgram::slot_for(mtu as usize);
        }
        self
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Read one batch and hand every frame to `on_frame` with the transmit
    /// queue (services answer in place). Runts and oversized datagrams are
    /// counted and dropped here.
    pub fn recv(
        &mut self,
        mut on_frame: impl FnMut(&[u8], RxMeta, &mut Tx),
    ) -> Result<Recv, Closed> {
        match self.kind {
            Kind::Dgram => self.recv_dgram(&mut |f, _, tx| on_frame(f, RxMeta::default(), tx)),
            Kind::Stream => self.recv_stream(&mut |f, _, tx| on_frame(f, RxMeta::default(), tx)),
            Kind::Tap => self.recv_tap(&mut on_frame),
            Kind::VhostUser => self.recv_vhost(&mut |f, meta, _, tx| on_frame(f, meta, tx)),
        }
    }

    /// As [`Link::recv`], but each frame comes with the buffer it lies in
    /// for as long as the batch lasts (empty where frames are not kept in
    /// place: only DGRAM, STREAM and vhost-user links keep theirs). What was held of it
    /// must leave (see [`Link::batch`]) before the next read overwrites it.
    pub fn recv_batched(
        &mut self,
        mut on_frame: impl FnMut(&[u8], RxMeta, &[u8], &mut Tx),
    ) -> Result<Recv, Closed> {
        match self.kind {
            Kind::Dgram => {
                self.recv_dgram(&mut |f, batch, tx| on_frame(f, RxMeta::default(), batch, tx))
            }
            Kind::Stream => {
                self.recv_stream(&mut |f, batch, tx| on_frame(f, RxMeta::default(), batch, tx))
            }
            Kind::VhostUser => self.recv_vhost(&mut on_frame),
            Kind::Tap => self.recv(|f, meta, tx| on_frame(f, meta, &[], tx)),
        }
    }

    /// The last batch's buffer (as [`Link::recv_batched`] named it) and
    /// the transmit queue.
    pub fn batch(&mut self) -> (&[u8], &mut Tx) {
        let batch: &[u8] = match self.kind {
            Kind::Dgram | Kind::Stream | Kind::VhostUser => &self.rx,
            Kind::Tap => &[],
        };
        (batch, &mut self.tx)
    }

    fn deliver(
        tx: &mut Tx,
        frame: &[u8],
        meta: RxMeta,
        on_frame: &mut impl FnMut(&[u8], RxMeta, &mut Tx),
    ) {
        tx.stats.rx_frames += 1;
        tx.stats.rx_bytes += frame.len() as u64;
        if let Some(p) = tx.pcap.as_mut() {
            p.frame_partial(frame, meta.partial);
        }
        if frame.len() < MIN_FRAME {
            tx.stats.rx_runt += 1;
            return;
        }
        on_frame(frame, meta, tx);
    }
}

impl AsFd for Link {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixDatagram;
    use std::os::unix::net::UnixStream;

    fn frame(n: usize, fill: u8) -> Vec<u8> {
        vec![fill; n]
    }

    #[test]
    fn stream_deframes_across_reads_and_rejects_bad_lengths() {
        let (mut vmm, ours) = UnixStream::pair().unwrap();
        let mut link = Link::from_socket(OwnedFd::from(ours)).unwrap();
        assert_eq!(link.kind(), Kind::Stream);
        let mut bytes = Vec::new();
        for (n, f) in [(60usize, 1u8), (1514, 2), (14, 3)] {
            bytes.extend_from_slice(&(n as u32).to_be_bytes());
            bytes.extend_from_slice(&frame(n, f));
        }
        // Split in the middle of the second frame's length prefix.
        let cut = 4 + 60 + 2;
        vmm.write_all(&bytes[..cut]).unwrap();
        let mut got = Vec::new();
        link.recv(|f, _, _| got.push((f.len(), f[0]))).unwrap();
        assert_eq!(got, vec![(60, 1)]);
        vmm.write_all(&bytes[cut..]).unwrap();
        link.recv(|f, _, _| got.push((f.len(), f[0]))).unwrap();
        assert_eq!(got, vec![(60, 1), (1514, 2), (14, 3)]);
        vmm.write_all(&13u32.to_be_bytes()).unwrap();
        assert!(matches!(link.recv(|_, _, _| {}), Err(Closed::Framing(13))));
    }

    /// A STREAM batch stays in place until the next read: every frame lies
    /// in the buffer `batch` names, which still holds it after `recv`
    /// returns, and a frame split over two reads arrives whole.
    #[test]
    fn stream_batch_stays_in_place_until_the_next_read() {
        let (mut vmm, ours) = UnixStream::pair().unwrap();
        let mut link = Link::from_socket(OwnedFd::from(ours)).unwrap();
        let mut bytes = Vec::new();
        for f in 1..=3u8 {
            bytes.extend_from_slice(&1000u32.to_be_bytes());
            bytes.extend_from_slice(&frame(1000, f));
        }
        let cut = 2 * 1004 + 500;
        vmm.write_all(&bytes[..cut]).unwrap();
        let mut at = Vec::new();
        link.recv_batched(|f, _, batch, _| {
            let off = f.as_ptr() as usize - batch.as_ptr() as usize;
            assert!(off + f.len() <= batch.len());
            at.push(off);
        })
        .unwrap();
        assert_eq!(at, vec![4, 1008]);
        let (batch, _) = link.batch();
        assert_eq!((batch[4], batch[1008]), (1, 2), "the batch was overwritten");
        vmm.write_all(&bytes[cut..]).unwrap();
        let mut got = Vec::new();
        link.recv_batched(|f, _, _, _| got.push((f.len(), f[0], f[999])))
            .unwrap();
        assert_eq!(got, vec![(1000, 3, 3)]);
    }

    #[test]
    fn stream_tx_prefixes_lengths_and_eof_is_hangup() {
        let (mut vmm, ours) = UnixStream::pair().unwrap();
        let mut link = Link::from_socket(OwnedFd::from(ours)).unwrap();
        link.tx.send(&frame(100, 7));
        link.tx.send_with(|b| {
            b[..20].fill(9);
            20
        });
        link.tx.flush();
        let mut buf = [0u8; 128];
        vmm.read_exact(&mut buf[..4 + 100 + 4 + 20]).unwrap();
        assert_eq!(&buf[..4], &100u32.to_be_bytes());
        assert_eq!(&buf[104..108], &20u32.to_be_bytes());
        assert_eq!(buf[108], 9);
        drop(vmm);
        assert!(matches!(link.recv(|_, _, _| {}), Err(Closed::Hangup)));
    }

    #[test]
    fn dgram_batches_and_drops_runts() {
        let (vmm, ours) = UnixDatagram::pair().unwrap();
        let mut link = Link::from_socket(OwnedFd::from(ours)).unwrap();
        assert_eq!(link.kind(), Kind::Dgram);
        vmm.send(&frame(60, 1)).unwrap();
        vmm.send(&[]).unwrap();
        vmm.send(&frame(5, 2)).unwrap();
        vmm.send(&frame(65535, 3)).unwrap();
        let mut got = Vec::new();
        while link.recv(|f, _, _| got.push(f.len())).unwrap() == Recv::More {}
        assert_eq!(got, vec![60, 65535]);
        assert_eq!(link.tx.stats.rx_runt, 2);
        for i in 0..200u8 {
            link.tx.send(&frame(60 + i as usize, i));
        }
        link.tx.flush();
        let mut buf = [0u8; 512];
        for i in 0..200u8 {
            let n = vmm.recv(&mut buf).unwrap();
            assert_eq!((n, buf[0]), (60 + i as usize, i));
        }
        drop(vmm);
        link.tx.send(&frame(60, 0));
        link.tx.flush();
        assert!(matches!(link.tx.closed(), Some(Closed::Hangup)));
    }

    #[test]
    fn dgram_sized_for_mtu_reads_more_per_call_and_drops_giants() {
        let (vmm, ours) = UnixDatagram::pair().unwrap();
        let mut link = Link::from_socket(OwnedFd::from(ours))
            .unwrap()
            .sized_for(1500);
        vmm.send(&frame(1514 + 4, 1)).unwrap();
        vmm.send(&frame(1514 + 5, 2)).unwrap();
        for _ in 0..70 {
            vmm.send(&frame(1514, 3)).unwrap();
        }
        let mut got = Vec::new();
        // One call: a whole batch of 64 (the default slots would read 8).
        assert_eq!(link.recv(|f, _, _| got.push(f.len())).unwrap(), Recv::More);
        assert_eq!(got.len(), 63);
        assert_eq!(got[0], 1518);
        assert_eq!(link.tx.stats.rx_oversize, 1);
        assert_eq!(
            link.recv(|f, _, _| got.push(f.len())).unwrap(),
            Recv::Drained
        );
        assert_eq!(got.len(), 71);
        assert!(got[1..].iter().all(|&n| n == 1514));
    }

    #[test]
    fn stream_vmm_that_stops_reading_costs_frames_not_framing() {
        let (mut vmm, ours) = UnixStream::pair().unwrap();
        let mut link = Link::from_socket(OwnedFd::from(ours)).unwrap();
        // Far more than the socket holds: flushes give up (200 ms each)
        // instead of blocking, keeping a half-written frame's tail.
        for round in 0..4u8 {
            for i in 0..16u8 {
                link.tx.send(&frame(60_000 + i as usize, round * 16 + i));
            }
            link.tx.flush();
        }
        assert!(link.tx.stats.tx_dropped > 0);
        assert!(link.tx.closed().is_none());
        // The VMM drains: whatever arrived is whole frames, in order.
        vmm.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut last = None;
        loop {
            match vmm.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => {
                    // Let the held tail out, then stop when nothing moves.
                    link.tx.flush();
                    if last == Some(got.len()) {
                        break;
                    }
                    last = Some(got.len());
                }
            }
        }
        let mut pos = 0;
        let mut prev = None;
        while pos + 4 <= got.len() {
            let len = u32::from_be_bytes(got[pos..pos + 4].try_into().unwrap()) as usize;
            assert!((60_000..60_016).contains(&len), "bad length {len} at {pos}");
            let f = &got[pos + 4..pos + 4 + len];
            assert!(f.iter().all(|&b| b == f[0]));
            assert!(prev.is_none_or(|p| f[0] > p), "frames out of order");
            prev = Some(f[0]);
            pos += 4 + len;
        }
        assert_eq!(pos, got.len(), "a torn frame at the end");
    }

    #[test]
    fn reserve_commit_batch() {
        let (vmm, ours) = UnixDatagram::pair().unwrap();
        let mut link = Link::from_socket(OwnedFd::from(ours)).unwrap();
        let mut slots = link.tx.reserve(3, 100);
        assert_eq!(slots.count(), 3);
        for (i, c) in slots.iter_mut().enumerate() {
            assert_eq!(c.len(), 100);
            c.fill(i as u8 + 1);
        }
        slots.commit(&[100, 50, 0]);
        link.tx.flush();
        let mut buf = [0u8; 200];
        assert_eq!(vmm.recv(&mut buf).unwrap(), 100);
        assert_eq!(buf[0], 1);
        assert_eq!(vmm.recv(&mut buf).unwrap(), 50);
        assert_eq!(buf[0], 2);
        vmm.set_nonblocking(true).unwrap();
        assert!(vmm.recv(&mut buf).is_err());
    }
}
