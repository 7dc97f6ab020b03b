//! The VMM stand-in: joins the guest's tap0 to one end of a socketpair, the
//! way QEMU joins a NIC to `-netdev socket,fd=` (DGRAM: one frame per
//! datagram) or `-netdev stream` (STREAM: 4-byte big-endian length, frame).
//! Also the guest-side packet socket used to inject and capture raw frames.
//!
//! Everything that must happen inside the guest namespace (opening the tap,
//! binding a packet socket) runs on a short-lived thread that `setns`es and
//! then ends: the file descriptors stay bound to the guest namespace.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How frames travel over the VMM socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// SOCK_DGRAM: one Ethernet frame per datagram (libvirt, `-netdev socket,fd=`).
    Dgram,
    /// SOCK_STREAM: 4-byte big-endian length before each frame (`-netdev stream`, passt).
    Stream,
}

/// Run `f` on a thread that has joined the network namespace `ns`.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let nsf = File::open(&path)?;
        nix::sched::setns(nsf.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
        // The thread ends after `f`, so it never has to switch back.
        f()
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))?
}

/// Attach to the tap device `ifname` in namespace `ns` (IFF_TAP | IFF_NO_PI).
pub fn open_tap(ns: &str, ifname: &str) -> io::Result<OwnedFd> {
    open_tap_flags(ns, ifname, 0)
}

/// [`open_tap`] with more `IFF_*` flags (`IFF_VNET_HDR` for a VMM-style
/// bridge that passes offloads).
pub fn open_tap_flags(ns: &str, ifname: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let name = ifname.to_owned();
    in_netns(ns, move || {
        let tun = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")?;
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        if name.len() >= ifr.ifr_name.len() {
            return Err(io::Error::other("interface name too long"));
        }
        for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | flags) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one struct ifreq, which `ifr` is
        // and which outlives the call; the fd is a valid open /dev/net/tun.
        let r = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF as _, &mut ifr) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from(tun))
    })
}

/// An AF_PACKET socket on an interface of the guest namespace. Sending
/// puts a frame on the wire from the guest's side (the tap's reader, i.e.
/// the helper, receives it); a capturing socket also sees every frame in
/// both directions.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl PacketSocket {
    /// Open on `ifname` in namespace `ns`; `capture` receives all frames,
    /// otherwise the socket only sends.
    pub fn open(ns: &str, ifname: &str, capture: bool) -> io::Result<PacketSocket> {
        let name = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
        in_netns(ns, move || {
            let proto = if capture {
                (libc::ETH_P_ALL as u16).to_be() as libc::c_int
            } else {
                0
            };
            // SAFETY: plain socket(2) call; the result is checked below.
            let raw = unsafe {
                libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto)
            };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a fresh descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: `name` is a NUL-terminated C string.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
            if ifindex == 0 {
                return Err(io::Error::last_os_error());
            }
            let sll = sockaddr_ll(ifindex, proto as u16);
            // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(PacketSocket { fd, ifindex })
        })
    }

    /// Put `frame` (a whole Ethernet frame) on the wire.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let sll = sockaddr_ll(self.ifindex, 0);
        // SAFETY: `frame` is valid for its length; `sll` is a valid
        // sockaddr_ll of the size passed.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next frame seen on the interface (either direction), or `None`
    /// at the deadline.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        let end = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return None,
            }
            match socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => return Some(buf[..n].to_vec()),
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Frames until one satisfies `pred`, or `None` at the deadline.
    pub fn recv_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&[u8]) -> bool,
    ) -> Option<Vec<u8>> {
        let end = Instant::now() + timeout;
        while let Some(f) = self.recv(end.saturating_duration_since(Instant::now())) {
            if pred(&f) {
                return Some(f);
            }
        }
        None
    }
}

fn sockaddr_ll(ifindex: i32, proto_be: u16) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto_be;
    sll.sll_ifindex = ifindex;
    sll
}

/// Frame counters of a running relay.
#[derive(Default, Debug)]
pub struct RelayStats {
    /// Frames read from tap0 and handed to the helper.
    pub to_helper: AtomicU64,
    /// Frames the helper sent that were written to tap0.
    pub to_guest: AtomicU64,
}

/// A running tap ↔ socket relay. Dropping it stops both threads.
pub struct Relay {
    framing: Framing,
    sock: Arc<OwnedFd>,
    write_lock: Arc<Mutex<()>>,
    stats: Arc<RelayStats>,
    stop_w: Option<OwnedFd>,
    threads: Vec<JoinHandle<()>>,
    /// Why the helper → guest direction stopped, if it did.
    ended: Arc<Mutex<Option<String>>>,
}

impl Relay {
    /// Attach to `tap0` of namespace `guest_ns` and start relaying; returns
    /// the relay and the helper's end of the socketpair (CLOEXEC: hand it to
    /// the child explicitly, see [`super::helper`]).
    pub fn start(guest_ns: &str, framing: Framing) -> io::Result<(Relay, OwnedFd)> {
        let tap = Arc::new(open_tap(guest_ns, "tap0")?);
        let ty = match framing {
            Framing::Dgram => SockType::Datagram,
            Framing::Stream => SockType::Stream,
        };
        let (ours, theirs) =
            socket::socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC)?;
        for fd in [&ours, &theirs] {
            let _ = socket::setsockopt(fd, socket::sockopt::SndBuf, &(4 << 20));
            let _ = socket::setsockopt(fd, socket::sockopt::RcvBuf, &(4 << 20));
        }
        let sock = Arc::new(ours);
        let (stop_r, stop_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let stop_r = Arc::new(stop_r);
        let write_lock = Arc::new(Mutex::new(()));
        let stats = Arc::new(RelayStats::default());
        let ended = Arc::new(Mutex::new(None));

        let up = {
            let (tap, sock, stop, lock, stats) = (
                tap.clone(),
                sock.clone(),
                stop_r.clone(),
                write_lock.clone(),
                stats.clone(),
            );
            thread::spawn(move || tap_to_sock(&tap, &sock, &stop, &lock, &stats, framing))
        };
        let down = {
            let (tap, sock, stop, stats, ended) = (
                tap.clone(),
                sock.clone(),
                stop_r.clone(),
                stats.clone(),
                ended.clone(),
            );
            thread::spawn(move || {
                let why = sock_to_tap(&tap, &sock, &stop, &stats, framing);
                *ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
            })
        };
        Ok((
            Relay {
                framing,
                sock,
                write_lock,
                stats,
                stop_w: Some(stop_w),
                threads: vec![up, down],
                ended,
            },
            theirs,
        ))
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }

    /// Why the helper → guest direction ended (`None` while it runs).
    pub fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Send `frame` to the helper as if the guest had sent it, framed for
    /// this link (any length: zero-length and oversized frames included).
    pub fn inject(&self, frame: &[u8]) -> io::Result<()> {
        match self.framing {
            Framing::Dgram => send_dgram(&self.sock, frame),
            Framing::Stream => {
                let len = u32::try_from(frame.len()).map_err(io::Error::other)?;
                let _g = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
                write_all(&self.sock, &len.to_be_bytes())?;
                write_all(&self.sock, frame)
            }
        }
    }

    /// Write raw bytes to the helper's socket with no framing added (on
    /// STREAM: forge headers, e.g. framing errors).
    pub fn inject_raw(&self, bytes: &[u8]) -> io::Result<()> {
        match self.framing {
            Framing::Dgram => send_dgram(&self.sock, bytes),
            Framing::Stream => {
                let _g = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
                write_all(&self.sock, bytes)
            }
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "relay ({:?}): {} frames guest→helper, {} frames helper→guest{}",
            self.framing,
            self.stats.to_helper.load(Ordering::Relaxed),
            self.stats.to_guest.load(Ordering::Relaxed),
            self.ended()
                .map(|w| format!("; helper side ended: {w}"))
                .unwrap_or_default()
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Closing the pipe's write end wakes both threads' poll.
        self.stop_w.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn send_dgram(sock: &OwnedFd, b: &[u8]) -> io::Result<()> {
    socket::send(sock.as_raw_fd(), b, MsgFlags::MSG_NOSIGNAL)
        .map(|_| ())
        .map_err(io::Error::from)
}

fn write_all(sock: &OwnedFd, mut b: &[u8]) -> io::Result<()> {
    while !b.is_empty() {
        match socket::send(sock.as_raw_fd(), b, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => b = &b[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Wait until `fd` is readable; false when told to stop.
fn readable(fd: &OwnedFd, stop: &OwnedFd) -> bool {
    loop {
        let mut fds = [
            PollFd::new(fd.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {
                let stop_ev = fds[1].revents().unwrap_or(PollFlags::empty());
                if !stop_ev.is_empty() {
                    return false;
                }
                if !fds[0].revents().unwrap_or(PollFlags::empty()).is_empty() {
                    return true;
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
}

fn tap_to_sock(
    tap: &OwnedFd,
    sock: &OwnedFd,
    stop: &OwnedFd,
    lock: &Mutex<()>,
    stats: &RelayStats,
    framing: Framing,
) {
    let mut buf = vec![0u8; 4 + 65536];
    while readable(tap, stop) {
        let n = match nix::unistd::read(tap, &mut buf[4..]) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => continue,
            Err(_) => return,
        };
        let r = match framing {
            Framing::Dgram => match send_dgram(sock, &buf[4..4 + n]) {
                // A full socket buffer drops the frame, like a NIC queue.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(()),
                r => r,
            },
            Framing::Stream => {
                buf[..4].copy_from_slice(&(n as u32).to_be_bytes());
                let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
                write_all(sock, &buf[..4 + n])
            }
        };
        if r.is_err() {
            return; // the helper went away
        }
        stats.to_helper.fetch_add(1, Ordering::Relaxed);
    }
}

fn sock_to_tap(
    tap: &OwnedFd,
    sock: &OwnedFd,
    stop: &OwnedFd,
    stats: &RelayStats,
    framing: Framing,
) -> String {
    let mut buf = vec![0u8; 256 * 1024];
    let mut have = 0usize;
    while readable(sock, stop) {
        let n = match socket::recv(sock.as_raw_fd(), &mut buf[have..], MsgFlags::MSG_DONTWAIT) {
            Ok(0) if framing == Framing::Stream => return "the helper closed the socket".into(),
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => continue,
            Err(e) => return format!("socket error: {e}"),
        };
        match framing {
            Framing::Dgram => {
                // The tap refuses what no NIC could carry; that is the guest's loss.
                let _ = nix::unistd::write(tap, &buf[..n]);
                stats.to_guest.fetch_add(1, Ordering::Relaxed);
            }
            Framing::Stream => {
                have += n;
                let mut at = 0;
                while have - at >= 4 {
                    let len = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
                        as usize;
                    if len > 65535 + 4 {
                        return format!("the helper sent a frame length of {len}");
                    }
                    if have - at < 4 + len {
                        break;
                    }
                    let _ = nix::unistd::write(tap, &buf[at + 4..at + 4 + len]);
                    stats.to_guest.fetch_add(1, Ordering::Relaxed);
                    at += 4 + len;
                }
                buf.copy_within(at..have, 0);
                have -= at;
            }
        }
    }
    "stopped".into()
}
