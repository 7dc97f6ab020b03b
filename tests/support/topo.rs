//! Two network namespaces with no path off this machine (the shape of
//! `shared/rig/topo.sh`):
//!
//! - `<prefix>-g`, the guest: `lo` and `tap0` (the VMM's side of the NIC).
//! - `<prefix>-h`, the host the helper runs in: `lo`, and an uplink `up0`
//!   (192.0.2.2/24, fd00::2/64) whose default routes lead into a veth peer
//!   that answers nothing, so traffic that escapes the helper's mappings
//!   dies there. `/etc/netns/<prefix>-h/resolv.conf` names 127.0.0.1, which
//!   `ip netns exec` mounts over `/etc/resolv.conf`.
//!
//! Names are unique per process and test (pid + counter), so tests run in
//! parallel. Drop kills every process left in either namespace and deletes
//! both; namespaces left behind by a killed test run are swept on first use.

use super::process::{must, run, run_argv, Outcome};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::Duration;

const NAME_STEM: &str = "alt";
static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// A guest namespace with `tap0` and a dead-end host namespace.
pub struct Topology {
    prefix: String,
    guest: String,
    host: String,
    dir: PathBuf,
}

impl Topology {
    /// Make both namespaces; panics (with the failing command's output) if
    /// the machine cannot, e.g. when not root. The host namespace lets
    /// every group open ICMP echo sockets.
    pub fn new() -> Topology {
        Topology::with_ping_sockets(true)
    }

    /// [`Topology::new`], with `net.ipv4.ping_group_range` left at the
    /// kernel's default ("1 0": nobody) unless `ping`.
    pub fn with_ping_sockets(ping: bool) -> Topology {
        super::require_root();
        SWEEP.call_once(sweep_stale);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("{NAME_STEM}{}x{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("airlock-test-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test's scratch folder");
        let t = Topology {
            guest: format!("{prefix}-g"),
            host: format!("{prefix}-h"),
            prefix,
            dir,
        };
        // From here on Drop cleans up whatever was made.
        must(&["ip", "netns", "add", &t.guest]);
        must(&["ip", "netns", "add", &t.host]);
        batch(
            &t.guest,
            "link set lo up\n\
             tuntap add tap0 mode tap\n\
             link set tap0 txqueuelen 20000 up\n",
        );
        batch(
            &t.host,
            "link set lo up\n\
             link add up0 type veth peer name up0-sink\n\
             link set up0-sink up\n\
             link set up0 up\n\
             addr add 192.0.2.2/24 dev up0\n\
             addr add fd00::2/64 dev up0 nodad\n\
             route add default via 192.0.2.1\n\
             route add default via fd00::1\n",
        );
        if ping {
            must(&[
                "ip",
                "netns",
                "exec",
                &t.host,
                "sysctl",
                "-qw",
                "net.ipv4.ping_group_range=0 2147483647",
            ]);
        }
        let etc = PathBuf::from("/etc/netns").join(&t.host);
        std::fs::create_dir_all(&etc).expect("create /etc/netns/<host>");
        std::fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.1\n")
            .expect("write the host namespace's resolv.conf");
        t
    }

    /// The unique stem of both namespace names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Name of the guest namespace (`ip netns` name).
    pub fn guest_ns(&self) -> &str {
        &self.guest
    }

    /// Name of the host namespace, where helpers and servers run.
    pub fn host_ns(&self) -> &str {
        &self.host
    }

    /// `/run/netns/<guest>`: what `airlock --netns` takes.
    pub fn guest_netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.guest)
    }

    /// A scratch folder private to this topology (logs, scripts, leases).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A command that runs `argv` in the guest namespace.
    pub fn guest_cmd(&self, argv: &[&str]) -> Command {
        ns_cmd(&self.guest, argv)
    }

    /// A command that runs `argv` in the host namespace.
    pub fn host_cmd(&self, argv: &[&str]) -> Command {
        ns_cmd(&self.host, argv)
    }

    /// Run `argv` in the guest namespace and capture its output.
    pub fn guest_run(&self, argv: &[&str], timeout: Duration) -> Outcome {
        run(&mut self.guest_cmd(argv), timeout)
    }

    /// Run `argv` in the host namespace and capture its output.
    pub fn host_run(&self, argv: &[&str], timeout: Duration) -> Outcome {
        run(&mut self.host_cmd(argv), timeout)
    }

    /// The guest side: DHCP client, ping, `ip` views.
    pub fn guest(&self) -> super::guest::Guest<'_> {
        super::guest::Guest::new(self)
    }
}

impl Default for Topology {
    fn default() -> Self {
        Topology::new()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        teardown(&self.guest, &self.host);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn ns_cmd(ns: &str, argv: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(argv);
    c
}

fn batch(ns: &str, script: &str) {
    let path = std::env::temp_dir().join(format!(
        "airlock-batch-{}-{}",
        ns,
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, script).expect("write ip batch");
    let p = path.to_string_lossy().into_owned();
    let o = run_argv(&["ip", "-n", ns, "-batch", &p], Duration::from_secs(20));
    let _ = std::fs::remove_file(&path);
    if !o.success() {
        panic!("ip -n {ns} -batch failed on\n{script}{}", o.describe());
    }
}

/// Kill every process in the namespaces, then delete them.
fn teardown(guest: &str, host: &str) {
    for ns in [guest, host] {
        kill_all_in(ns);
        let _ = run_argv(&["ip", "netns", "del", ns], Duration::from_secs(10));
    }
    let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(host));
}

fn kill_all_in(ns: &str) {
    let o = run_argv(&["ip", "netns", "pids", ns], Duration::from_secs(5));
    for pid in o
        .stdout
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Delete namespaces of earlier test processes that died without Drop.
fn sweep_stale() {
    let Ok(rd) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NAME_STEM) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('x') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            kill_all_in(&name);
            let _ = run_argv(&["ip", "netns", "del", &name], Duration::from_secs(10));
            if let Some(stem) = name.strip_suffix("-h") {
                let _ =
                    std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(format!("{stem}-h")));
            }
        }
    }
}
