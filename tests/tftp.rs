//! `--tftp DIR` against a real client, busybox tftp in the guest (issue
//! 19, item 3): whole files with and without blksize, and every way out of
//! DIR refused: `..`, absolute names, symlinks that leave DIR. (The PXE
//! boot by QEMU's iPXE ROM is `tests/vmm.rs::pxe_boot_over_tftp`.)

mod support;

use std::path::Path;
use std::time::Duration;
use support::{Helper, LinkMode, Topology};

fn get(
    t: &Topology,
    remote: &str,
    local: &Path,
    blksize: Option<&str>,
) -> support::process::Outcome {
    let l = local.to_string_lossy();
    let mut argv = vec!["busybox", "tftp", "-g", "-r", remote, "-l", &l];
    if let Some(b) = blksize {
        argv.extend(["-b", b]);
    }
    argv.push("10.0.2.2");
    t.guest_run(&argv, Duration::from_secs(30))
}

#[test]
fn files_come_whole_and_nothing_leaves_the_directory() {
    let t = Topology::new();
    let root = t.dir().join("tftp");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    // 100 000 bytes: 196 blocks of 512, 72 of 1400, the last one short.
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(root.join("hello.bin"), &data).unwrap();
    std::fs::write(root.join("sub/inner.txt"), b"inner\n").unwrap();
    // Exactly one block: the transfer ends with an empty DATA.
    std::fs::write(root.join("block.bin"), [9u8; 512]).unwrap();
    std::fs::write(t.dir().join("secret"), b"outside\n").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../secret", root.join("up-link")).unwrap();
    std::os::unix::fs::symlink("hello.bin", root.join("in-link")).unwrap();
    let r = root.to_string_lossy().into_owned();
    let mut a = Helper::airlock(&t, LinkMode::Netns, &["--tftp", &r, "--debug"]);
    a.wait_ready(&t, Duration::from_secs(5)).unwrap();
    t.guest()
        .dhcp()
        .unwrap_or_else(|e| panic!("{e}\n{}", a.diagnose()));

    let out = t.dir().join("got");
    for (remote, blksize, want) in [
        ("hello.bin", None, &data[..]),
        ("hello.bin", Some("1400"), &data[..]),
        ("in-link", Some("64"), &data[..]),
        ("sub/inner.txt", None, &b"inner\n"[..]),
        ("block.bin", None, &[9u8; 512][..]),
    ] {
        let _ = std::fs::remove_file(&out);
        let o = get(&t, remote, &out, blksize);
        assert!(
            o.success(),
            "{remote} {blksize:?}: {}\n{}",
            o.describe(),
            a.diagnose()
        );
        assert!(
            std::fs::read(&out).unwrap() == want,
            "{remote} {blksize:?}: content differs"
        );
    }
    for (remote, why) in [
        ("../secret", "access violation"),
        ("sub/../../secret", "access violation"),
        ("/etc/hostname", "access violation"),
        ("abs-link", "access violation"),
        ("up-link", "access violation"),
        ("missing", "file not found"),
        ("sub", "not a regular file"),
    ] {
        let _ = std::fs::remove_file(&out);
        let o = get(&t, remote, &out, None);
        assert!(!o.success(), "{remote} was served: {}", o.describe());
        assert!(
            o.stderr.contains(why),
            "{remote}: want {why:?}: {}",
            o.describe()
        );
        let got = std::fs::read(&out).unwrap_or_default();
        assert!(!got.starts_with(b"outside"), "{remote} leaked the secret");
    }
    // Writing is refused.
    std::fs::write(&out, b"upload").unwrap();
    let l = out.to_string_lossy().into_owned();
    let o = t.guest_run(
        &[
            "busybox", "tftp", "-p", "-l", &l, "-r", "new.bin", "10.0.2.2",
        ],
        Duration::from_secs(20),
    );
    assert!(
        !o.success() && o.stderr.contains("read-only"),
        "{}",
        o.describe()
    );
    assert!(!root.join("new.bin").exists());
    a.stop(Duration::from_secs(2));
    let log = a.log();
    assert!(log.contains("tftp_transfers_done: 5"), "{log}");
    assert!(log.contains("tftp_errors: 8"), "{log}");
}

#[test]
fn tftp_needs_a_directory() {
    let o = support::process::run_argv(
        &[
            support::AIRLOCK,
            "--foreground",
            "--socket",
            "/nonexistent/airlock.sock",
            "--tftp",
            "/nonexistent/dir",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(o.status.and_then(|s| s.code()), Some(2), "{}", o.describe());
    assert!(
        o.stderr.contains("--tftp /nonexistent/dir"),
        "{}",
        o.describe()
    );
}
