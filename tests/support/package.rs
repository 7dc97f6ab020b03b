//! The Debian package on this machine for one test (issue 19): built by
//! `tests/package.sh --no-build` from the binary under test, installed with
//! `dpkg -i`, purged when the guard drops (a failing test included), and
//! the machine's own `slirp-helper` set-up put back: a manually chosen
//! alternative, or a plain `/usr/bin/slirp-helper` moved aside meanwhile.
//! A lock file keeps two such tests (of any checkout on the machine) from
//! installing at once.

use super::process::{run, run_argv};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const HELPER: &str = "/usr/bin/slirp-helper";
const LOCK: &str = "/run/lock/airlock-package-test.lock";

fn ok(argv: &[&str]) -> String {
    let o = run_argv(argv, Duration::from_secs(300));
    assert!(o.success(), "{argv:?}: {}", o.describe());
    o.stdout
}

/// Build the package (`tests/package.sh --no-build`); its path.
pub fn build() -> String {
    let mut cmd = std::process::Command::new(format!("{ROOT}/tests/package.sh"));
    cmd.arg("--no-build").current_dir(ROOT);
    let o = run(&mut cmd, Duration::from_secs(300));
    assert!(o.success(), "tests/package.sh: {}", o.describe());
    let deb = o.stdout.lines().last().unwrap_or("").trim().to_string();
    let deb = if Path::new(&deb).is_absolute() {
        deb
    } else {
        format!("{ROOT}/{deb}")
    };
    assert!(
        deb.ends_with("_amd64.deb") && Path::new(&deb).exists(),
        "{deb}"
    );
    deb
}

/// What was at `/usr/bin/slirp-helper` before.
enum Saved {
    Nothing,
    /// An alternative chosen by hand (airlock's would not win): its value.
    Manual(PathBuf),
    /// A file no alternative manages, moved here.
    File(PathBuf),
}

/// The installed package; dropping it purges it and restores the rest.
pub struct Installed {
    was_installed: bool,
    saved: Saved,
    _lock: nix::fcntl::Flock<File>,
}

impl Installed {
    /// Install `deb` and make `/usr/bin/slirp-helper` airlock's.
    pub fn install(deb: &str) -> Installed {
        super::require_root();
        let f = File::create(LOCK).expect("create the package test lock");
        let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .expect("lock the package test lock");
        let status = run_argv(
            &["dpkg-query", "-W", "-f=${Status}", "airlock"],
            Duration::from_secs(30),
        );
        let was_installed = status.stdout.contains("install ok installed");
        let q = run_argv(
            &["update-alternatives", "--query", "slirp-helper"],
            Duration::from_secs(30),
        );
        let field = |k: &str| {
            q.stdout
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
        };
        let helper = Path::new(HELPER);
        let saved = if q.success() && field("Status:").as_deref() == Some("manual") {
            Saved::Manual(field("Value:").unwrap_or_default().into())
        } else if !q.success() && helper.symlink_metadata().is_ok() {
            let aside = PathBuf::from(format!("{HELPER}.airlock-test-saved"));
            std::fs::rename(helper, &aside).expect("move the old slirp-helper aside");
            Saved::File(aside)
        } else {
            Saved::Nothing
        };
        let guard = Installed {
            was_installed,
            saved,
            _lock: lock,
        };
        ok(&["dpkg", "-i", deb]);
        if let Saved::Manual(_) = guard.saved {
            ok(&[
                "update-alternatives",
                "--set",
                "slirp-helper",
                "/usr/bin/airlock",
            ]);
        }
        guard
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if !self.was_installed {
            let o = run_argv(&["dpkg", "--purge", "airlock"], Duration::from_secs(120));
            if !o.success() {
                eprintln!("dpkg --purge airlock: {}", o.describe());
            }
        }
        match &self.saved {
            Saved::Nothing => {}
            Saved::Manual(v) if v.exists() => {
                let v = v.to_string_lossy();
                let o = run_argv(
                    &["update-alternatives", "--set", "slirp-helper", &v],
                    Duration::from_secs(30),
                );
                if !o.success() {
                    eprintln!("restoring slirp-helper -> {v}: {}", o.describe());
                }
            }
            Saved::Manual(_) => {}
            Saved::File(aside) => {
                if let Err(e) = std::fs::rename(aside, HELPER) {
                    eprintln!("restoring {HELPER}: {e}");
                }
            }
        }
    }
}
