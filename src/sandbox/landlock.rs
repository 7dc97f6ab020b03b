//! landlock: no filesystem, no new TCP listeners, nothing outside the sandbox
//! to signal or to reach over abstract UNIX sockets.
//!
//! The ruleset handles every right and grants none (the rules are written
//! out in policy/landlock.md):
//! - every filesystem right of ABI 1..6: no path can be opened, created,
//!   executed, truncated or ioctl'd (descriptors opened earlier keep working);
//! - TCP bind (ABI 4): forwards are bound before the sandbox. TCP connect is
//!   *not* handled: airlock connects out on the guest's behalf;
//! - scopes (ABI 6): no abstract UNIX socket and no signal beyond the domain.
//!
//! Best effort: an older kernel enforces what it knows, and [`Enforced`]
//! says what that was.
//! #syscalls-startup: landlock_create_ruleset landlock_add_rule
//! #syscalls-startup: landlock_restrict_self prctl close

use super::Error;
use landlock::{
    Access, AccessFs, AccessNet, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use std::fmt;

/// `landlock_create_ruleset` flag: return the ABI version.
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

/// The ABI this ruleset is written for (filesystem rights and scopes).
const RULESET_ABI: ABI = ABI::V6;

/// What landlock enforces on this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enforced {
    /// The kernel's landlock ABI (0: none).
    pub abi: i32,
    /// All filesystem access denied.
    pub fs: bool,
    /// TCP bind denied.
    pub net: bool,
    /// Abstract UNIX sockets and signals scoped.
    pub scope: bool,
}

impl Enforced {
    /// Layer names, as in the capability JSON.
    pub fn layers(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.fs {
            v.push("landlock");
        }
        if self.net {
            v.push("landlock-net");
        }
        if self.scope {
            v.push("landlock-scope");
        }
        v
    }
}

impl fmt::Display for Enforced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.fs {
            return write!(f, "landlock off (kernel ABI {})", self.abi);
        }
        let mut what = vec!["no files"];
        if self.net {
            what.push("no tcp bind");
        }
        if self.scope {
            what.push("scoped signals and abstract sockets");
        }
        write!(f, "landlock ABI {}: {}", self.abi, what.join(", "))
    }
}

/// The landlock ABI version this kernel offers (0: landlock unavailable).
pub fn kernel_abi() -> i32 {
    // SAFETY: LANDLOCK_CREATE_RULESET_VERSION with a null attribute and size
    // 0 only queries the version; no memory is read or written.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(v).unwrap_or(0).max(0)
}

/// Applies the ruleset to the calling thread (airlock is single-threaded)
/// and its future children. The one right kept: removing files directly in
/// `removable_dirs` (the directories of airlock's own `--socket` and
/// `--pid` files, which it deletes on exit).
pub fn restrict(removable_dirs: &[std::path::PathBuf]) -> Result<Enforced, Error> {
    restrict_with(&super::Grants {
        removable_dirs,
        ..super::Grants::default()
    })
}

/// [`restrict`], keeping the [`super::Grants`] as well: reading beneath
/// `readable_dirs` (`--tftp`), and a TCP bind to port 0 (`--outbound-addr`).
pub fn restrict_with(grants: &super::Grants<'_>) -> Result<Enforced, Error> {
    let removable_dirs = grants.removable_dirs;
    let abi = kernel_abi();
    if abi < 1 {
        return Ok(Enforced {
            abi,
            ..Enforced::default()
        });
    }
    let err = |e: landlock::RulesetError| Error::Landlock(e.to_string());
    // A --tftp directory that cannot be opened now is an error: without
    // its rule every read would fail later.
    let readable = grants
        .readable_dirs
        .iter()
        .map(|d| {
            landlock::PathFd::new(d).map_err(|e| Error::Landlock(format!("{}: {e}", d.display())))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let status = landlock::Ruleset::default()
        .handle_access(AccessFs::from_all(RULESET_ABI))
        .map_err(err)?
        .handle_access(AccessNet::BindTcp)
        .map_err(err)?
        .scope(Scope::from_all(RULESET_ABI))
        .map_err(err)?
        .create()
        .map_err(err)?
        .add_rules(removable_dirs.iter().filter_map(|d| {
            // A directory that cannot be opened simply gets no rule.
            landlock::PathFd::new(d)
                .ok()
                .map(|fd| Ok(landlock::PathBeneath::new(fd, AccessFs::RemoveFile)))
        }))
        .map_err(err)?
        .add_rules(readable.into_iter().map(|fd| {
            Ok::<_, landlock::RulesetError>(landlock::PathBeneath::new(
                fd,
                AccessFs::from_read(RULESET_ABI),
            ))
        }))
        .map_err(err)?
        .add_rules(
            grants
                .tcp_bind_port0
                .then(|| Ok(landlock::NetPort::new(0, AccessNet::BindTcp))),
        )
        .map_err(err)?
        .restrict_self()
        .map_err(err)?;
    let on = status.ruleset != RulesetStatus::NotEnforced;
    Ok(Enforced {
        abi,
        fs: on,
        net: on && abi >= 4,
        scope: on && abi >= 6,
    })
}
