//! The Debian package (issue 19, item 1): `tests/package.sh` builds it,
//! lintian finds no error, it installs on this machine (purged again at
//! the end), `/usr/bin/airlock` and the `/usr/bin/slirp-helper`
//! alternative run from it, and a libvirt-style launch
//! (`tests/qemu/libvirt-launch.py`, libvirt 9.0's contract) through the
//! stock helper path `/usr/bin/slirp-helper` serves a guest.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};
use support::process::run_argv;
use support::{Helper, LinkMode, Topology};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn ok(argv: &[&str]) -> String {
    let o = run_argv(argv, Duration::from_secs(120));
    assert!(o.success(), "{argv:?}: {}", o.describe());
    o.stdout
}

#[test]
fn package_builds_lints_installs_and_is_the_slirp_helper() {
    let deb = support::package::build();

    let files = ok(&["dpkg-deb", "-c", &deb]);
    for f in [
        "./usr/bin/airlock",
        "./usr/share/man/man1/airlock.1.gz",
        "./etc/apparmor.d/usr.bin.airlock",
        "./usr/share/doc/airlock/copyright",
        "./usr/share/doc/airlock/changelog.Debian.gz",
        "./usr/share/doc/airlock/security.md",
    ] {
        assert!(
            files.lines().any(|l| l.ends_with(f)),
            "{f} not in the package:\n{files}"
        );
    }
    let lint = run_argv(
        &["lintian", "--fail-on", "error", &deb],
        Duration::from_secs(300),
    );
    assert!(lint.success(), "lintian: {}", lint.describe());
    assert!(
        !lint.stdout.lines().any(|l| l.starts_with("E:")),
        "{}",
        lint.stdout
    );

    let _purge = support::package::Installed::install(&deb);
    let v = ok(&["/usr/bin/airlock", "--version"]);
    assert_eq!(v.trim(), format!("airlock {}", env!("CARGO_PKG_VERSION")));
    assert_eq!(
        std::fs::canonicalize("/usr/bin/slirp-helper").unwrap(),
        Path::new("/usr/bin/airlock"),
        "the slirp-helper alternative"
    );
    let caps: serde_json::Value =
        serde_json::from_str(&ok(&["/usr/bin/slirp-helper", "--print-capabilities"])).unwrap();
    assert_eq!(caps["type"], "slirp-helper");
    assert!(caps["features"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "tftp"));
    assert!(Path::new("/usr/share/man/man1/slirp-helper.1.gz").exists());
    let man = ok(&["man", "-w", "airlock"]);
    assert!(man.contains("/usr/share/man/man1/airlock.1.gz"), "{man}");

    // libvirt 9.0's launch, with its default slirp_helper path.
    let t = Topology::new();
    let pidfile = t.dir().join("slirp.pid");
    let pf = pidfile.to_string_lossy().into_owned();
    let launch = format!("{ROOT}/tests/qemu/libvirt-launch.py");
    let mut h = Helper::spawn(
        &t,
        "libvirt",
        LinkMode::Dgram,
        &[
            "python3",
            &launch,
            "{fd}",
            &pf,
            "/usr/bin/slirp-helper",
            "--fd=32",
            "--net=10.0.2.0/24",
            "--exit-with-parent",
        ],
    );
    let end = Instant::now() + Duration::from_secs(20);
    let pid: i32 = loop {
        if let Some(p) = h.log().lines().find_map(|l| l.trim().parse().ok()) {
            break p;
        }
        assert!(
            Instant::now() < end,
            "the launcher printed no pid: {}",
            h.diagnose()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(
        exe,
        Path::new("/usr/bin/airlock"),
        "libvirt's helper is the packaged airlock"
    );
    t.guest()
        .dhcp()
        .unwrap_or_else(|e| panic!("{e}\n{}", h.diagnose()));
    t.guest()
        .ping("10.0.2.2")
        .unwrap_or_else(|e| panic!("{e}\n{}", h.diagnose()));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    drop(h);
    drop(t);
    drop(_purge);
    assert!(
        !Path::new("/usr/bin/slirp-helper").exists(),
        "purge withdraws the alternative"
    );
    assert!(!Path::new("/usr/bin/airlock").exists());
}
