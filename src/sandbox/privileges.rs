//! Giving up root: `--runas USER[:GROUP]`, by default `nobody`.
//!
//! Runs once, after every socket and file airlock needs is open and before
//! the sandbox proper. Started as root, airlock clears its supplementary
//! groups, switches real, effective and saved ids, and then proves it cannot
//! switch back: continuing as root is impossible. Started unprivileged (as
//! libvirt's qemu user, say), there is nothing to drop and nothing changes.
//! Descriptors are left alone: airlock's own are opened close-on-exec, and
//! inherited ones (libvirt's locked pidfile) must stay open.
//!
//!
//! Capabilities go either way: a launcher may start airlock unprivileged
//! but with ambient or file capabilities (`CAP_NET_RAW` for ping, say), and
//! root keeps its bounding set across `setresuid`. Every set is cleared
//! (effective, permitted, inheritable, ambient) and the bounding set
//! emptied whenever `CAP_SETPCAP` allows it (always when started as root),
//! then checked with `capget`.
//!
//! The user and group lookups go through NSS, hence the file syscalls.
//! #syscalls-startup: capget capset prctl
//! #syscalls-startup: geteuid getuid getgid getresuid getresgid getgroups
//! #syscalls-startup: setgroups setresgid setresuid setuid setgid
//! #syscalls-startup: openat read close newfstatat|fstat lseek

use super::Error;
use nix::unistd::{self, Gid, Group, Uid, User};
use std::fmt;

/// Who airlock runs as after [`drop_privileges`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub uid: u32,
    pub gid: u32,
    /// Root was given up (false: started unprivileged, nothing changed).
    pub changed: bool,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.changed {
            "root dropped"
        } else {
            "not started as root"
        };
        write!(f, "uid {} gid {} ({how})", self.uid, self.gid)
    }
}

fn fail(message: impl Into<String>) -> Error {
    Error::Privileges(message.into())
}

/// The uid and primary gid of `user` (a name, or a number).
fn resolve_user(user: &str) -> Result<(Uid, Option<Gid>), Error> {
    let found = User::from_name(user).map_err(|e| fail(format!("looking up user {user}: {e}")))?;
    if let Some(u) = found {
        return Ok((u.uid, Some(u.gid)));
    }
    let uid = user
        .parse::<u32>()
        .map(Uid::from_raw)
        .map_err(|_| fail(format!("--runas: no user {user}")))?;
    let primary = User::from_uid(uid).ok().flatten().map(|u| u.gid);
    Ok((uid, primary))
}

/// The gid of `group` (a name, or a number).
fn resolve_group(group: &str) -> Result<Gid, Error> {
    let found =
        Group::from_name(group).map_err(|e| fail(format!("looking up group {group}: {e}")))?;
    match found {
        Some(g) => Ok(g.gid),
        None => group
            .parse::<u32>()
            .map(Gid::from_raw)
            .map_err(|_| fail(format!("--runas: no group {group}"))),
    }
}

/// Resolves `USER[:GROUP]` (default `nobody`; the group defaults to the
/// user's primary group, or `nogroup` when the user has no passwd entry).
/// Root, as user or group, is refused.
pub fn resolve(runas: Option<&str>) -> Result<(u32, u32), Error> {
    let spec = runas.unwrap_or("nobody");
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, primary) = resolve_user(user)?;
    let gid = match (group, primary) {
        (Some(g), _) => resolve_group(g)?,
        (None, Some(g)) => g,
        (None, None) => resolve_group("nogroup")?,
    };
    if uid.is_root() || gid.as_raw() == 0 {
        return Err(fail(format!(
            "--runas {spec} resolves to uid {uid} gid {gid}: refusing to run as root"
        )));
    }
    Ok((uid.as_raw(), gid.as_raw()))
}

/// Gives up root for `runas` (see [`resolve`]) when running as root; does
/// nothing otherwise. Returns who airlock runs as from now on.
pub fn drop_privileges(runas: Option<&str>) -> Result<Dropped, Error> {
    // While CAP_SETPCAP is still there (root loses it with the uid).
    drop_bounding_set()?;
    if !Uid::effective().is_root() {
        let (uid, gid) = (unistd::getuid().as_raw(), unistd::getgid().as_raw());
        if let Some(spec) = runas {
            log::warn!("--runas {spec} ignored: not started as root, running as uid {uid}");
        }
        clear_capabilities()?;
        return Ok(Dropped {
            uid,
            gid,
            changed: false,
        });
    }
    let (uid, gid) = resolve(runas)?;
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
    // Groups first: once the uid is gone, so is the right to change them.
    unistd::setgroups(&[]).map_err(|e| fail(format!("setgroups: {e}")))?;
    unistd::setresgid(g, g, g).map_err(|e| fail(format!("setresgid {gid}: {e}")))?;
    unistd::setresuid(u, u, u).map_err(|e| fail(format!("setresuid {uid}: {e}")))?;
    // setresuid clears them unless the launcher set SECBIT_KEEP_CAPS.
    clear_capabilities()?;
    verify(u, g)?;
    Ok(Dropped {
        uid,
        gid,
        changed: true,
    })
}

/// Checks that every id is the target one and that root cannot be regained.
fn verify(u: Uid, g: Gid) -> Result<(), Error> {
    let r = unistd::getresuid().map_err(|e| fail(format!("getresuid: {e}")))?;
    let rg = unistd::getresgid().map_err(|e| fail(format!("getresgid: {e}")))?;
    if [r.real, r.effective, r.saved] != [u; 3] || [rg.real, rg.effective, rg.saved] != [g; 3] {
        return Err(fail("ids did not all change"));
    }
    if !unistd::getgroups()
        .map_err(|e| fail(format!("getgroups: {e}")))?
        .is_empty()
    {
        return Err(fail("supplementary groups remain"));
    }
    if unistd::setuid(Uid::from_raw(0)).is_ok() || unistd::setgid(Gid::from_raw(0)).is_ok() {
        return Err(fail("root could be regained after dropping it"));
    }
    Ok(())
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAP_VERSION_3: u32 = 0x2008_0522;
const CAP_SETPCAP: u32 = 8;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn capget() -> Result<[CapData; 2], Error> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: a version-3 header and the two data words it asks for, both
    // valid and writable for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(fail(format!("capget: {}", nix::errno::Errno::last())));
    }
    Ok(data)
}

/// Empties the bounding set when `CAP_SETPCAP` is effective. Without it the
/// set cannot be changed, and need not be: with NO_NEW_PRIVS and no
/// `execve`, nothing can ever be gained from it.
fn drop_bounding_set() -> Result<(), Error> {
    if capget()?[0].effective & (1 << CAP_SETPCAP) == 0 {
        return Ok(());
    }
    for cap in 0..64 {
        // SAFETY: PR_CAPBSET_DROP takes integers only.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            // EINVAL: past the kernel's last capability.
            if nix::errno::Errno::last() == nix::errno::Errno::EINVAL && cap > 0 {
                return Ok(());
            }
            return Err(fail(format!(
                "PR_CAPBSET_DROP {cap}: {}",
                nix::errno::Errno::last()
            )));
        }
    }
    Ok(())
}

/// Clears the ambient set, then effective, permitted and inheritable, and
/// checks that nothing is left.
fn clear_capabilities() -> Result<(), Error> {
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes integers only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(fail(format!(
            "PR_CAP_AMBIENT_CLEAR_ALL: {}",
            nix::errno::Errno::last()
        )));
    }
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: a version-3 header and two data words, valid for the call;
    // the kernel only reads them.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(fail(format!("capset: {}", nix::errno::Errno::last())));
    }
    let left = capget()?;
    if left
        .iter()
        .any(|d| d.effective | d.permitted | d.inheritable != 0)
    {
        return Err(fail("capabilities remain after capset"));
    }
    Ok(())
}
