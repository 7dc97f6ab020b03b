//! The sandbox: what airlock gives up before it reads the first guest byte.
//!
//! A guest that breaks a parser (libslirp's CVEs: IP reassembly, tcp_emu,
//! bootp, tftp, udp6) should find nothing to use. The startup order, which
//! `main` follows top to bottom (docs/security.md explains each step):
//!
//! 1. parse options;
//! 2. open the link, listening sockets, pid and log files; read resolv.conf;
//! 3. bind the forwards;
//! 4. [`drop_privileges`] (only when started as root);
//! 5. [`lock_down`]: `PR_SET_NO_NEW_PRIVS`, `PR_SET_DUMPABLE 0`, landlock,
//!    seccomp;
//! 6. the event loop. Nothing after step 5 opens a file or binds a port.
//!
//! Baseline: what Rust's runtime needs once the filter is in place, with
//! one line per reason. Everything else is annotated by the module using it.
//! - `exit_group`: leaving (`std::process::exit`, returning from `main`).
//! - `rt_sigreturn`: returning from a signal handler (SIGTERM, SIGINT).
//! - `write`: log lines to stderr or `--log-file`, panic messages.
//! - `brk`, `mmap`, `munmap`, `mremap`: glibc malloc (brk for the main
//!   arena, mmap above 128 KiB, mremap when such a block is reallocated).
//!   `mmap` never with `PROT_EXEC`, and there is no `mprotect`: nothing can
//!   map executable memory after lockdown.
//! - `sigaltstack`: std disables its stack-overflow alternate stack when
//!   `main` returns.
//! - `clock_gettime`: normally the vDSO, but it falls back to the syscall
//!   when the clocksource cannot be read from user space (some VMs).
//! - `getrandom`: std's `HashMap` seeds its hasher lazily on first use.
//! - `fcntl(F_GETFD)`: std checks a descriptor is open before closing it
//!   (debug builds), so every socket a flow drops needs it.
//!
//! Not needed: `futex` (single-threaded, so std's locks never contend),
//! `madvise`/`mprotect` (glibc uses them only for per-thread arenas).
//! #syscalls: exit_group rt_sigreturn write brk mmap(2&PROT_EXEC=0) munmap mremap
//! #syscalls: sigaltstack clock_gettime getrandom fcntl(1=F_GETFD)
//! #syscalls-startup: prctl

pub mod landlock;
pub mod privileges;
pub mod seccomp;

pub use privileges::{drop_privileges, Dropped};

use crate::cli::SandboxMode;
use std::fmt;

/// Why the sandbox could not be set up; airlock exits rather than run
/// without what it was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Resolving or becoming the `--runas` user failed.
    Privileges(String),
    /// `prctl` refused NO_NEW_PRIVS or DUMPABLE.
    Prctl(String),
    /// landlock failed (other than by being unavailable).
    Landlock(String),
    /// Installing the seccomp filter failed.
    Seccomp(String),
    /// `--sandbox=strict`: these layers cannot be enforced on this kernel.
    Missing(Vec<&'static str>),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Privileges(m) => write!(f, "dropping privileges: {m}"),
            Error::Prctl(m) => write!(f, "prctl: {m}"),
            Error::Landlock(m) => write!(f, "landlock: {m}"),
            Error::Seccomp(m) => write!(f, "seccomp: {m}"),
            Error::Missing(l) => write!(
                f,
                "--sandbox=strict, but this kernel cannot enforce: {}",
                l.join(", ")
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Every layer, in the order of the capability JSON.
pub const ALL_LAYERS: [&str; 4] = ["seccomp", "landlock", "landlock-net", "landlock-scope"];

/// What [`lock_down`] put in place; `Display` is the startup log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub mode: SandboxMode,
    pub no_new_privs: bool,
    /// `PR_SET_DUMPABLE 0` applied.
    pub not_dumpable: bool,
    pub landlock: landlock::Enforced,
    pub seccomp: seccomp::Installed,
}

impl Report {
    fn off(mode: SandboxMode) -> Report {
        Report {
            mode,
            no_new_privs: false,
            not_dumpable: false,
            landlock: landlock::Enforced::default(),
            seccomp: seccomp::Installed {
                mode: seccomp::Mode::Off,
                instructions: 0,
            },
        }
    }

    /// The enforced layers, named as in [`kernel_layers`].
    pub fn layers(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.seccomp.mode != seccomp::Mode::Off {
            v.push("seccomp");
        }
        v.extend(self.landlock.layers());
        v
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            SandboxMode::Strict => "strict",
            SandboxMode::Enforce => "enforce",
            SandboxMode::Log => "log",
            SandboxMode::Off => "off",
        };
        if self.mode == SandboxMode::Off {
            return write!(f, "sandbox off: no landlock, no seccomp");
        }
        write!(
            f,
            "sandbox {mode}: no_new_privs {}, dumpable {}, {}, {}",
            if self.no_new_privs { "on" } else { "off" },
            if self.not_dumpable { "off" } else { "on" },
            self.landlock,
            self.seccomp
        )
    }
}

/// The layers this kernel can enforce, for `--print-capabilities`.
pub fn kernel_layers() -> Vec<&'static str> {
    let mut v = Vec::new();
    if seccomp::available(seccomp::Mode::Enforce) {
        v.push("seccomp");
    }
    let abi = landlock::kernel_abi();
    for (layer, since) in [("landlock", 1), ("landlock-net", 4), ("landlock-scope", 6)] {
        if abi >= since {
            v.push(layer);
        }
    }
    v
}

fn missing(have: &[&'static str]) -> Vec<&'static str> {
    ALL_LAYERS
        .iter()
        .copied()
        .filter(|l| !have.contains(l))
        .collect()
}

/// The rights the landlock ruleset keeps, beyond none.
#[derive(Clone, Copy, Debug, Default)]
pub struct Grants<'a> {
    /// Remove files directly in these (airlock's own `--socket`, `--pid`).
    pub removable_dirs: &'a [std::path::PathBuf],
    /// Read files and list directories beneath these (`--tftp DIR`).
    pub readable_dirs: &'a [std::path::PathBuf],
    /// Bind TCP to port 0 (`--outbound-addr`: the address without a port,
    /// `IP_BIND_ADDRESS_NO_PORT`); every other port stays refused.
    pub tcp_bind_port0: bool,
}

/// [`lock_down_with`] keeping only the right to remove files in
/// `removable_dirs`.
pub fn lock_down(
    mode: SandboxMode,
    removable_dirs: &[std::path::PathBuf],
) -> Result<Report, Error> {
    lock_down_with(
        mode,
        &Grants {
            removable_dirs,
            ..Grants::default()
        },
    )
}

/// Locks the calling process down: `PR_SET_NO_NEW_PRIVS`,
/// `PR_SET_DUMPABLE 0`, landlock, seccomp, in that order. Call it once,
/// single-threaded, after [`drop_privileges`] and before the event loop.
///
/// `Enforce` applies what the kernel supports; `Strict` fails (before
/// changing anything) when a layer is missing; `Log` is `Enforce` with a
/// seccomp filter that logs instead of killing; `Off` only warns.
/// Logs the [`Report`] as one line.
pub fn lock_down_with(mode: SandboxMode, grants: &Grants<'_>) -> Result<Report, Error> {
    if mode == SandboxMode::Off {
        log::warn!("--sandbox=off: no landlock, no seccomp; a compromised airlock keeps every right of uid {}", nix::unistd::getuid());
        return Ok(Report::off(mode));
    }
    if mode == SandboxMode::Strict {
        let absent = missing(&kernel_layers());
        if !absent.is_empty() {
            return Err(Error::Missing(absent));
        }
    }
    let filter_mode = match mode {
        SandboxMode::Log => seccomp::Mode::Log,
        _ => seccomp::Mode::Enforce,
    };

    nix::sys::prctl::set_no_new_privs()
        .map_err(|e| Error::Prctl(format!("PR_SET_NO_NEW_PRIVS: {e}")))?;
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| Error::Prctl(format!("PR_SET_DUMPABLE: {e}")))?;
    let landlock = landlock::restrict_with(grants)?;
    let seccomp = if seccomp::available(filter_mode) {
        seccomp::install(filter_mode)?
    } else {
        seccomp::Installed {
            mode: seccomp::Mode::Off,
            instructions: 0,
        }
    };

    let report = Report {
        mode,
        no_new_privs: true,
        not_dumpable: true,
        landlock,
        seccomp,
    };
    if mode == SandboxMode::Strict {
        let absent = missing(&report.layers());
        if !absent.is_empty() {
            return Err(Error::Missing(absent));
        }
    }
    let absent = missing(&report.layers());
    if absent.is_empty() {
        log::info!("{report}");
    } else {
        log::warn!("{report} (kernel lacks: {})", absent.join(", "));
    }
    Ok(report)
}
