//! A private D-Bus daemon, as libvirt starts one per domain: its own config
//! file and socket in a scratch folder, run in the host namespace. Calls go
//! through `dbus-send` (Debian's `dbus-bin`), as a client outside airlock.

use super::process::{run, Daemon, Outcome};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Bus {
    pub address: String,
    daemon: Daemon,
    dir: PathBuf,
}

impl Bus {
    /// Start `dbus-daemon` inside network namespace `ns`, its socket in
    /// `dir`. Any user may connect (airlock runs as nobody by then).
    pub fn start(ns: &str, dir: &Path) -> Bus {
        use std::os::unix::fs::PermissionsExt;
        let dir = dir.join("bus");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sock = dir.join("socket");
        let conf = dir.join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                sock.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            ns,
            "dbus-daemon",
            "--nofork",
            "--nopidfile",
        ])
        .arg(format!("--config-file={}", conf.display()));
        let daemon = Daemon::spawn("dbus-daemon", &mut cmd, &dir.join("dbus-daemon.log"));
        let t0 = Instant::now();
        while !sock.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "dbus-daemon did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
        Bus {
            address: format!("unix:path={}", sock.display()),
            daemon,
            dir,
        }
    }

    /// `dbus-send --print-reply` to `dest`; `args` in dbus-send's syntax.
    pub fn call(&self, dest: &str, path: &str, method: &str, args: &[String]) -> Outcome {
        let mut cmd = Command::new("dbus-send");
        cmd.arg(format!("--bus={}", self.address))
            .args(["--print-reply", "--reply-timeout=5000"])
            .arg(format!("--dest={dest}"))
            .arg(path)
            .arg(method)
            .args(args);
        run(&mut cmd, Duration::from_secs(10))
    }

    /// The unique names queued for `name` (what QEMU's dbus-vmstate asks).
    pub fn queued_owners(&self, name: &str) -> Vec<String> {
        let out = self.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.ListQueuedOwners",
            &[format!("string:{name}")],
        );
        out.stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix("string \""))
            .map(|s| s.trim_end_matches('"').to_string())
            .collect()
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The bytes of dbus-send's `array of bytes [ 41 49 ... ]` (hex, possibly
/// over several lines), or of `array of bytes "text"` for printable data.
pub fn reply_bytes(stdout: &str) -> Option<Vec<u8>> {
    let start = stdout.find("array of bytes")?;
    let rest = &stdout[start + "array of bytes".len()..];
    let rest = rest.trim_start();
    if let Some(s) = rest.strip_prefix('"') {
        return Some(s.as_bytes()[..s.rfind('"')?].to_vec());
    }
    let body = rest.strip_prefix('[')?;
    let body = &body[..body.find(']')?];
    body.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).ok())
        .collect()
}

/// bytes as dbus-send's `array:byte:` argument.
pub fn byte_arg(bytes: &[u8]) -> String {
    let list: Vec<String> = bytes.iter().map(|b| b.to_string()).collect();
    format!("array:byte:{}", list.join(","))
}
