//! `--netns`: a tap device inside another network namespace is the link.
//!
//! airlock enters the namespace only long enough to open (or create) the
//! tap device, then returns to its own: the tap fd keeps working across
//! namespaces, and every host socket airlock opens later belongs to the
//! namespace it was started in.
//!
//! #syscalls-startup: openat setns ioctl(1=TUNSETIFF|SIOCGIFFLAGS|SIOCSIFFLAGS) socket close

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn ifreq(name: &str) -> io::Result<IfReq> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= libc::IFNAMSIZ || b.contains(&0) || b.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{name}' is not an interface name"),
        ));
    }
    let mut r = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    r.name[..b.len()].copy_from_slice(b);
    Ok(r)
}

fn enter(ns: &File) -> io::Result<()> {
    // SAFETY: setns on a valid namespace fd; affects only this thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Open (creating it if needed) tap device `name` in the network namespace
/// at `netns`, bring it up, and return its fd (close-on-exec).
pub fn open_tap_in_netns(netns: &Path, name: &str) -> io::Result<OwnedFd> {
    let mut req = ifreq(name)?;
    let home = File::open("/proc/self/ns/net")?;
    let target = File::open(netns)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", netns.display())))?;
    enter(&target)?;
    let result = open_and_up(&mut req);
    // Always come home, even when opening failed.
    enter(&home)?;
    result
}

fn open_and_up(req: &mut IfReq) -> io::Result<OwnedFd> {
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    req.flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq that we own.
    if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF as _, req as *mut IfReq) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // Bring the interface up, as slirp4netns and pasta do, so the guest
    // namespace only has to ask for an address.
    // SAFETY: plain socket(2) call; the fd is wrapped right away.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s >= 0 {
        // SAFETY: s is a fresh fd we own.
        let s = unsafe { OwnedFd::from_raw_fd(s) };
        let mut f = IfReq {
            name: req.name,
            flags: 0,
            _pad: [0; 22],
        };
        // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write one ifreq we own.
        unsafe {
            if libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut f as *mut IfReq) == 0 {
                f.flags |= libc::IFF_UP as libc::c_short;
                libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS as _, &mut f as *mut IfReq);
            }
        }
    }
    Ok(OwnedFd::from(tun))
}
