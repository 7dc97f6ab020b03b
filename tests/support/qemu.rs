//! Real QEMU guests (tests/qemu/build-guest.sh: a Debian kernel and a
//! busybox initramfs) in a [`Topology`]'s host namespace: the kit, the
//! HTTP and DNS servers the guest talks to on that namespace's loopback,
//! the report the guest prints on its serial console, and the process
//! helpers the launch scenarios share (tests/vmm.rs, tests/libvirt.rs).

use super::process::run;
use super::topo::Topology;
use airlock::rng::Rng;
use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::Pid;

/// Where the guest downloads from (the host namespace's 127.0.0.1).
pub const HTTP_PORT: u16 = 8080;
/// The name the guest resolves, and what tests/qemu/dns.py answers.
pub const DNS_NAME: &str = "airlock.test";
pub const DNS_ADDR: &str = "192.0.2.77";

pub fn qemu_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/qemu")
}

/// One guest at a time: each is a TCG boot, and [`spawn_with_fds`] clears
/// close-on-exec for a moment, which must not race with another spawn.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The guest kernel and initramfs, built once per test run.
pub fn guest_kit() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cache = std::env::var_os("AIRLOCK_GUEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let target = std::env::var_os("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
                target.join("qemu-guest")
            });
        let o = run(
            Command::new("bash")
                .arg(qemu_dir().join("build-guest.sh"))
                .arg(&cache),
            Duration::from_secs(900),
        );
        assert!(o.success(), "build-guest.sh: {}", o.describe());
        let dir = PathBuf::from(o.stdout.trim());
        assert!(dir.join("vmlinuz").exists() && dir.join("initrd.gz").exists());
        dir
    })
}

/// The kernel command line that tells the guest what to check: download
/// `blob` from port [`HTTP_PORT`], resolve [`DNS_NAME`] through `dns`.
pub fn kernel_cmdline(dns: &str) -> String {
    format!(
        "console=ttyS0 quiet panic=-1 airlock.port={HTTP_PORT} airlock.file=blob airlock.name={DNS_NAME} airlock.dns={dns}"
    )
}

/// The HTTP server (a pseudo-random 300 kB `blob`, its sha256 kept) and
/// the DNS server on the host namespace's loopback; killed on drop.
pub struct Servers {
    children: Vec<Child>,
    pub blob_sha256: String,
}

impl Servers {
    /// Serve `topo.dir()/www`.
    pub fn start(topo: &Topology) -> Servers {
        let www = topo.dir().join("www");
        std::fs::create_dir_all(&www).unwrap();
        let blob = www.join("blob");
        let mut data = vec![0u8; 300_000];
        // Each host its own file: a test with two hosts can tell them apart.
        static HOSTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = HOSTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Rng::new(u64::from(std::process::id()) << 16 | 0x5eed ^ n << 8).fill(&mut data);
        std::fs::write(&blob, &data).unwrap();
        let sum = run(
            Command::new("sha256sum").arg(&blob),
            Duration::from_secs(20),
        );
        assert!(sum.success(), "sha256sum: {}", sum.describe());
        let mut s = Servers {
            children: Vec::new(),
            blob_sha256: sum.stdout[..64].to_string(),
        };
        let (web, dns) = (qemu_dir().join("web.py"), qemu_dir().join("dns.py"));
        let port = HTTP_PORT.to_string();
        s.spawn(
            topo,
            &[
                web.to_str().unwrap(),
                "127.0.0.1",
                &port,
                www.to_str().unwrap(),
            ],
        );
        let entry = format!("{DNS_NAME}={DNS_ADDR}");
        s.spawn(topo, &[dns.to_str().unwrap(), "127.0.0.1", "53", &entry]);
        s
    }

    /// A python3 server that prints `ready` once it listens.
    fn spawn(&mut self, topo: &Topology, argv: &[&str]) {
        let mut full = vec!["python3"];
        full.extend_from_slice(argv);
        self.children.push(spawn_ready(&mut topo.host_cmd(&full)));
    }
}

/// Starts `cmd`, one of tests/qemu's servers, and returns once it has
/// printed `ready` (it listens).
pub fn spawn_ready(cmd: &mut Command) -> Child {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.trim() != "ready" {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not start: {line:?}");
    }
    child
}

/// tests/qemu/hold.py on the host namespace's 127.0.0.1:9000 (the port a
/// guest in migrate mode holds a connection to); killed on drop.
pub struct Hold(Child);

impl Hold {
    pub fn start(host: &KitHost) -> Hold {
        let mut c = host.cmd("python3");
        c.arg(qemu_dir().join("hold.py"))
            .args(["127.0.0.1", "9000"]);
        Hold(spawn_ready(&mut c))
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A host namespace that serves the guest kit: the [`Topology`] (whose
/// guest namespace these scenarios leave unused: the guest is QEMU's) and
/// its [`Servers`].
pub struct KitHost {
    pub servers: Servers,
    pub topo: Topology,
}

impl KitHost {
    pub fn new() -> KitHost {
        let topo = Topology::new();
        KitHost {
            servers: Servers::start(&topo),
            topo,
        }
    }

    /// A command run inside the host namespace (`ip netns exec` execs it:
    /// the child's pid is the command's).
    pub fn cmd(&self, prog: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.topo.host_ns()]).arg(prog);
        c
    }

    /// A fresh folder in the topology's scratch space, world-writable and
    /// not sticky: a helper running as nobody must be able to create its
    /// socket there (passt binds after dropping to nobody) and to remove
    /// a socket or pid file it created as root before dropping privileges.
    pub fn scratch(&self, tag: &str) -> PathBuf {
        let p = self.topo.dir().join(tag);
        std::fs::create_dir_all(&p).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        p
    }

    /// QEMU with the guest kit and one virtio-net device on `netdev`
    /// (`-netdev` value without the id), serial console on stdout, the
    /// guest asking `dns` for the test name.
    pub fn qemu(&self, netdev: &str, dns: &str) -> Command {
        self.qemu_append(netdev, dns, "")
    }

    /// [`KitHost::qemu`] with more guest parameters (`airlock.mode=...`).
    pub fn qemu_append(&self, netdev: &str, dns: &str, more: &str) -> Command {
        let g = guest_kit();
        let mut c = self.qemu_bare(180);
        c.args(["-kernel"])
            .arg(g.join("vmlinuz"))
            .arg("-initrd")
            .arg(g.join("initrd.gz"))
            .arg("-append")
            .arg(format!("{} {more}", kernel_cmdline(dns)))
            .args(["-device", "virtio-net-pci,netdev=n0", "-netdev"])
            .arg(format!("{netdev},id=n0"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// QEMU under `timeout SECS` (TCG, 256 MiB, no default devices, serial
    /// console on stdio, no reboot), before its boot and network options.
    pub fn qemu_bare(&self, secs: u32) -> Command {
        let mut c = self.cmd("timeout");
        c.arg(secs.to_string())
            .args(["qemu-system-x86_64", "-accel", "tcg", "-m", "256"])
            .args(["-nodefaults", "-no-user-config", "-nographic"])
            .args(["-serial", "stdio", "-monitor", "none", "-no-reboot"]);
        c
    }

    /// [`KitHost::qemu`] with the default virtual DNS address.
    pub fn qemu_default(&self, netdev: &str) -> Command {
        self.qemu(netdev, "10.0.2.3")
    }
}

impl Default for KitHost {
    fn default() -> Self {
        KitHost::new()
    }
}

/// What the guest printed, by `AIRLOCK-GUEST` marker.
#[derive(Debug, Default)]
pub struct GuestReport {
    pub lease: Option<String>,
    pub ping: Option<String>,
    pub sha256: Option<String>,
    pub dns: Option<String>,
    pub done: bool,
    pub console: String,
}

impl GuestReport {
    pub fn parse(console: &[u8]) -> GuestReport {
        let text = String::from_utf8_lossy(console).to_string();
        let mut r = GuestReport::default();
        for line in text.lines() {
            let Some(i) = line.find("AIRLOCK-GUEST ") else {
                continue;
            };
            let rest = line[i + 14..].trim().to_string();
            let (key, val) = rest.split_once(' ').unwrap_or((&rest, ""));
            let val = Some(val.to_string());
            match key {
                "lease" => r.lease = val,
                "ping" => r.ping = val,
                "sha256" => r.sha256 = val,
                "dns" => r.dns = val,
                "done" => r.done = true,
                _ => {}
            }
        }
        r.console = text;
        r
    }

    /// The checks every scenario on libvirt's default network makes.
    pub fn assert_network(&self, servers: &Servers, expect_ping: bool) {
        self.assert_network_as(
            servers,
            "ip=10.0.2.15 mask=24 router=10.0.2.2 dns=10.0.2.3",
            expect_ping.then_some("10.0.2.2"),
        )
    }

    /// The lease starts with `want`; `ping` (if any) answered; the
    /// download's sha256 and the resolved name are right; the guest ran to
    /// the end.
    pub fn assert_network_as(&self, servers: &Servers, want: &str, ping: Option<&str>) {
        let ctx = &self.console;
        let lease = self.lease.as_deref().unwrap_or("");
        assert!(lease.starts_with(want), "lease: {lease:?}\n{ctx}");
        if let Some(r) = ping {
            assert_eq!(
                self.ping.as_deref(),
                Some(format!("ok {r}").as_str()),
                "\n{ctx}"
            );
        }
        assert_eq!(
            self.sha256.as_deref(),
            Some(servers.blob_sha256.as_str()),
            "\n{ctx}"
        );
        assert_eq!(
            self.dns.as_deref(),
            Some(format!("{DNS_NAME} {DNS_ADDR}").as_str()),
            "\n{ctx}"
        );
        assert!(self.done, "guest did not finish\n{ctx}");
    }
}

/// Spawn `cmd` with `fds` inherited under their current numbers: their
/// close-on-exec flag is cleared only for the spawn (callers hold
/// [`serial`], so no other child can catch them).
pub fn spawn_with_fds(cmd: &mut Command, fds: &[&OwnedFd]) -> Child {
    for fd in fds {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    }
    let child = cmd.spawn();
    for fd in fds {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).unwrap();
    }
    child.unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// A close-on-exec socketpair: the VMM's end and the helper's.
pub fn pair(ty: SockType) -> (OwnedFd, OwnedFd) {
    socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC).unwrap()
}

/// Whether `pid` runs (a zombie, not reaped yet, has exited).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Wait until `pid` has exited; the time it took, or None after `limit`.
pub fn wait_gone(pid: i32, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if !alive(pid) {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Wait for a child of ours; its exit status and how long it took.
pub fn wait_child(child: &mut Child, limit: Duration) -> Option<(ExitStatus, Duration)> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Some(st) = child.try_wait().unwrap() {
            return Some((st, t.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

pub fn ppid_of(pid: i32) -> i32 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Kills a pid we started but do not wait for (it is not our child).
pub struct KillOnDrop(pub i32);

/// The daemon a launcher left behind: `out` is the launcher's, which must
/// have succeeded after writing the daemon's pid to `pidfile`.
pub fn daemon_from_pidfile(out: &Output, pidfile: &Path) -> KillOnDrop {
    assert!(out.status.success(), "{out:?}");
    let pid = std::fs::read_to_string(pidfile)
        .expect("pid file written before the command exits")
        .trim()
        .parse()
        .unwrap();
    KillOnDrop(pid)
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
        }
    }
}
