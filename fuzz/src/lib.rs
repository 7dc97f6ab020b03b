//! Shared by the fuzz targets.

/// Move this process into a new, empty network namespace (only a loopback
/// that is down), so that even a bug that made the stack open a host
/// socket could not send a packet anywhere. The stack targets' own
/// configuration already refuses every destination; this is the second
/// wall. Needs CAP_SYS_ADMIN (CI and the dev machines run as root);
/// without it the fuzzer says so and relies on the configuration alone.
pub fn isolate_network() {
    use nix::sched::{unshare, CloneFlags};
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNET) {
        eprintln!("airlock-fuzz: unshare(CLONE_NEWNET) failed ({e}); relying on --restrict alone");
    }
}
