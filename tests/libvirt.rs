//! A real libvirtd (Debian 12's 9.0, installed by tests/setup.sh) runs
//! airlock as its slirp helper for `<interface type='user'>` (issues 15, 19):
//! libvirt probes `--print-capabilities`, starts airlock with `--fd=N`
//! (`--net=`/`--net6=` from `<ip>` elements) and `--exit-with-parent`, and
//! QEMU gets the other end as `-netdev socket,fd=N`. The guest kit
//! (tests/qemu/build-guest.sh) leases, pings the router, downloads a file
//! from the host namespace's loopback and resolves a name; `virsh destroy`
//! must leave no airlock behind, and libvirtd's log must show no `unknown
//! slirp feature` warning (libvirt warns for any `features` word it lacks).
//!
//! The daemon is private: it runs inside the dead-end "host" namespace of a
//! [`Topology`] and inside its own mount namespace, where a tmpfs covers
//! `/run` and this test's folders are bound over `/etc/libvirt`,
//! `/run/libvirt`, `/var/lib/libvirt`, `/var/cache/libvirt` and
//! `/var/log/libvirt`, so it reads our `qemu.conf` (`slirp_helper`, root,
//! no cgroups, no security driver, [`DBUS_DAEMON`] as `dbus_daemon`) and
//! `libvirtd.conf` (log file, no auth, its own host UUID), sees no
//! networks to autostart, and leaves nothing on the machine.
//! virsh reaches it through `qemu:///system?socket=<our run dir>`.
//!
//! With `dbus-address` and `migrate` advertised (issue 16), `virsh save` /
//! `virsh restore` and `virsh migrate --live` between two such daemons
//! carry airlock's state in QEMU's `dbus-vmstate` section: the guest keeps
//! its lease and a forward added at run time, its held TCP connection is
//! reset, and new connections work.
//!
//! The tests take one lock: each is a TCG boot.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use support::process::{must, run, Daemon};
use support::qemu::{guest_kit, kernel_cmdline, serial, GuestReport, Hold, KitHost};
use support::{Topology, AIRLOCK};

/// The words libvirt 9.0's `qemuSlirpNewForHelper` logs for an unknown
/// entry of `features`.
const UNKNOWN_FEATURE: &str = "unknown slirp feature";
/// libvirt's compiled-in `slirp_helper`.
const DEFAULT_HELPER: &str = "/usr/bin/slirp-helper";

/// The bus daemon libvirt runs for a domain (through [`DBUS_DAEMON`]).
const DBUS_DAEMON_BIN: &str = "/usr/bin/dbus-daemon";

/// qemu.conf's `dbus_daemon`: libvirt's per-domain bus daemon, its stderr
/// sent to a log file. libvirt 9.0's `qemuDBusStart` gives dbus-daemon a
/// pipe as stderr and closes its end as soon as the socket file exists;
/// dbus-daemon, as root without CAP_SYS_RESOURCE (libvirt clears every
/// capability) under a hard fd limit below 65536, writes "Failed to set fd
/// limit" right after `listen()` and before any connection has made libdbus
/// ignore SIGPIPE. When libvirt wins that race the daemon dies of SIGPIPE
/// and leaves a socket nobody listens on: QEMU's `dbus-vmstate` then fails
/// with "Connection refused" (1 start in 5 on a loaded machine).
const DBUS_DAEMON: &str = "#!/bin/sh\n\
exec /usr/bin/dbus-daemon \"$@\" 2>>/var/log/libvirt/dbus-daemon.log\n";

/// Mounts the private folders, then becomes libvirtd (`exec`, so the
/// daemon's pid is the spawned command's).
const START: &str = r#"set -e
d=$1
mount --make-rprivate /
mount -t tmpfs -o mode=0755 airlock-run /run
mkdir /run/libvirt
mount --bind "$d/run" /run/libvirt
mount --bind "$d/etc" /etc/libvirt
mount --bind "$d/lib" /var/lib/libvirt
mount --bind "$d/cache" /var/cache/libvirt
mount --bind "$d/log" /var/log/libvirt
exec libvirtd -f /etc/libvirt/libvirtd.conf
"#;

/// A private libvirtd in `topo`'s host namespace.
struct Libvirtd {
    daemon: Daemon,
    uri: String,
    log: PathBuf,
}

impl Libvirtd {
    /// `helper`: the `slirp_helper` line of qemu.conf (None: libvirt's
    /// default).
    fn start(topo: &Topology, dir: &Path, helper: Option<&str>) -> Libvirtd {
        for bin in ["libvirtd", "virsh", "unshare"] {
            assert!(
                run(
                    Command::new("sh").args(["-c", &format!("command -v {bin}")]),
                    Duration::from_secs(5)
                )
                .success(),
                "{bin} missing: run tests/setup.sh (installs libvirt-daemon-system, libvirt-clients)"
            );
        }
        for d in ["etc", "run", "lib", "cache", "log"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        // Each daemon its own host UUID: libvirt refuses a migration whose
        // two ends have the same one (qemuMigrationCookieXMLParse).
        static DAEMONS: AtomicU32 = AtomicU32::new(0);
        let n = DAEMONS.fetch_add(1, Ordering::Relaxed) + 1;
        let pid = std::process::id();
        std::fs::write(
            dir.join("etc/libvirtd.conf"),
            format!(
                "auth_unix_rw = \"none\"\n\
                 auth_unix_ro = \"none\"\n\
                 unix_sock_rw_perms = \"0700\"\n\
                 host_uuid = \"{pid:08x}-a1e0-4c0c-8000-{n:012x}\"\n\
                 log_level = 3\n\
                 log_filters = \"1:util.command 1:qemu.qemu_slirp 1:qemu.qemu_migration\"\n\
                 log_outputs = \"1:file:/var/log/libvirt/libvirtd.log\"\n"
            ),
        )
        .unwrap();
        let mut qemu = String::from(
            "user = \"root\"\n\
             group = \"root\"\n\
             dynamic_ownership = 0\n\
             remember_owner = 0\n\
             security_driver = \"none\"\n\
             cgroup_controllers = [ ]\n\
             namespaces = [ ]\n\
             stdio_handler = \"file\"\n",
        );
        if let Some(h) = helper {
            qemu.push_str(&format!("slirp_helper = \"{h}\"\n"));
        }
        let wrapper = dir.join("etc/dbus-daemon");
        std::fs::write(&wrapper, DBUS_DAEMON).unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        qemu.push_str("dbus_daemon = \"/etc/libvirt/dbus-daemon\"\n");
        std::fs::write(dir.join("etc/qemu.conf"), qemu).unwrap();

        let d = dir.to_str().unwrap();
        let mut cmd = topo.host_cmd(&["unshare", "-m", "sh", "-c", START, "start", d]);
        let daemon = Daemon::spawn("libvirtd", &mut cmd, &dir.join("libvirtd.out"));
        let lv = Libvirtd {
            daemon,
            uri: format!("qemu:///system?socket={d}/run/libvirt-sock"),
            log: dir.join("log/libvirtd.log"),
        };
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let o = lv.virsh_run(&["version"]);
            if o.success() {
                break;
            }
            assert!(
                Instant::now() < end,
                "libvirtd did not answer in 60 s: {}\n{}",
                o.describe(),
                lv.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        lv
    }

    fn virsh_run(&self, args: &[&str]) -> support::process::Outcome {
        run(
            Command::new("virsh")
                .args(["-q", "-c", &self.uri])
                .args(args),
            Duration::from_secs(120),
        )
    }

    fn virsh(&self, args: &[&str]) -> String {
        let o = self.virsh_run(args);
        assert!(
            o.success(),
            "virsh {args:?}: {}\n{}",
            o.describe(),
            self.log_text()
        );
        o.stdout
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        // libvirtd's own shutdown; Topology's drop then kills what is left.
        self.daemon.set_report_on_panic(false);
        self.daemon.stop(Duration::from_secs(10));
        if std::thread::panicking() {
            eprintln!("libvirtd's log:\n{}", self.log_text());
            let bus = self.log.with_file_name("dbus-daemon.log");
            let bus = std::fs::read_to_string(bus).unwrap_or_default();
            eprintln!("dbus-daemon's log:\n{bus}");
        }
    }
}

/// `(ipv4 net, ipv6 net)` for `<ip>` elements, as `addr/prefix`.
type Ips<'a> = Option<(&'a str, &'a str)>;

/// `more`: guest parameters after the kit's (`airlock.mode=...`).
fn domain_xml(name: &str, console: &Path, ips: Ips, more: &str) -> String {
    let g = guest_kit();
    let dns = match ips {
        Some((v4, _)) => v4.replace(".0/24", ".3"),
        None => "10.0.2.3".to_string(),
    };
    let ip = match ips {
        Some((v4, v6)) => {
            let (a4, p4) = v4.split_once('/').unwrap();
            let (a6, p6) = v6.split_once('/').unwrap();
            format!(
                "<ip family='ipv4' address='{a4}' prefix='{p4}'/>\
                 <ip family='ipv6' address='{a6}' prefix='{p6}'/>"
            )
        }
        None => String::new(),
    };
    // The console is appended to: a restored or migrated-in QEMU opens
    // it again (libvirt truncates it otherwise).
    // No ACPI: the guest's final poweroff halts it, so the domain is still
    // running (and airlock with it) when the test destroys it.
    format!(
        "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{k}</kernel>
    <initrd>{i}</initrd>
    <cmdline>{cmdline} {more}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='user'>
      <model type='virtio'/>
      {ip}
    </interface>
    <serial type='file'>
      <source path='{c}' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
",
        k = g.join("vmlinuz").display(),
        i = g.join("initrd.gz").display(),
        c = console.display(),
        cmdline = kernel_cmdline(&dns),
    )
}

/// Processes in the host namespace running `exe`, with their argv.
fn helpers_in(topo: &Topology, exe: &Path) -> Vec<(i32, Vec<String>)> {
    let pids = must(&["ip", "netns", "pids", topo.host_ns()]);
    pids.split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e.as_path() == exe)
        })
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let argv = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((pid, argv))
        })
        .collect()
}

/// One domain through a private libvirtd whose qemu.conf names `helper`
/// (None: the default `/usr/bin/slirp-helper`), `exe` being the binary
/// that must run.
fn boot_and_destroy(helper: Option<&str>, exe: &Path, ips: Ips) {
    let _l = serial();
    let host = KitHost::new();
    let topo = &host.topo;
    let dir = topo.dir();
    let lv = Libvirtd::start(topo, dir, helper);

    let console = dir.join("console.log");
    let xml = dir.join("domain.xml");
    let name = format!("airlock-{}", topo.prefix());
    std::fs::write(&xml, domain_xml(&name, &console, ips, "")).unwrap();
    lv.virsh(&["create", xml.to_str().unwrap()]);

    // libvirt ran airlock, with the argv its <interface> implies.
    let found = helpers_in(topo, exe);
    let log = lv.log_text();
    assert_eq!(found.len(), 1, "airlock processes: {found:?}\n{log}");
    let (pid, argv) = &found[0];
    let mut want = vec!["--fd=".to_string()];
    if let Some((v4, v6)) = ips {
        want.push(format!("--net={v4}"));
        want.push(format!("--net6={v6}"));
    }
    // With dbus-address and migrate advertised, libvirt starts the
    // domain's bus and names it (the id is "slirp-" and the MAC).
    let dbus = cfg!(feature = "dbus");
    if dbus {
        want.push("--dbus-id=slirp-52:54:00:".to_string());
        want.push("--dbus-address=unix:path=/run/libvirt/qemu/dbus/".to_string());
    }
    want.push("--exit-with-parent".to_string());
    assert_eq!(argv.len(), want.len() + 1, "argv {argv:?}");
    assert!(argv[1].starts_with("--fd=") && argv[1][5..].parse::<u32>().is_ok());
    for (got, w) in argv[2..].iter().zip(&want[1..]) {
        let ok = if w.starts_with("--dbus-") {
            got.starts_with(w.as_str())
        } else {
            got == w
        };
        assert!(ok, "argv {argv:?}: {got:?} is not {w:?}");
    }
    let probe = format!("About to run {} --print-capabilities", argv[0]);
    assert!(
        log.contains(&probe),
        "no capability probe in the log:\n{log}"
    );

    // The guest's run.
    let end = Instant::now() + Duration::from_secs(240);
    let text = loop {
        let t = std::fs::read_to_string(&console).unwrap_or_default();
        if t.contains("AIRLOCK-GUEST done") || Instant::now() > end {
            break t;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let net = ips.map_or("10.0.2", |(v4, _)| v4.trim_end_matches(".0/24"));
    GuestReport::parse(text.as_bytes()).assert_network_as(
        &host.servers,
        &format!("ip={net}.15 mask=24 router={net}.2 dns={net}.3"),
        Some(&format!("{net}.2")),
    );

    // The domain's bus outlived its start (the SIGPIPE race above).
    if dbus {
        let buses = helpers_in(topo, Path::new(DBUS_DAEMON_BIN));
        assert_eq!(buses.len(), 1, "dbus-daemon: {buses:?}\n{}", lv.log_text());
    }

    // virsh destroy takes airlock down with the domain.
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "airlock ended while the guest ran\n{}",
        lv.log_text()
    );
    lv.virsh(&["destroy", &name]);
    let end = Instant::now() + Duration::from_secs(5);
    while !helpers_in(topo, exe).is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = helpers_in(topo, exe);
    assert!(left.is_empty(), "airlock left after destroy: {left:?}");

    let log = lv.log_text();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(UNKNOWN_FEATURE))
        .collect();
    assert!(bad.is_empty(), "libvirtd warned: {bad:#?}");
}

fn airlock_exe() -> PathBuf {
    std::fs::canonicalize(AIRLOCK).unwrap()
}

/// `<interface type='user'>` with no `<ip>`: libvirt's 10.0.2.0/24.
#[test]
fn libvirtd_user_interface() {
    boot_and_destroy(Some(AIRLOCK), &airlock_exe(), None);
}

/// `<ip>` elements become `--net=` and `--net6=`; the guest leases there.
#[test]
fn libvirtd_user_interface_ip() {
    boot_and_destroy(
        Some(AIRLOCK),
        &airlock_exe(),
        Some(("10.0.5.0/24", "fd00:5::/64")),
    );
}

/// libvirt's default `slirp_helper` (issue 19): the package (built from
/// the binary under test) installed on this machine, qemu.conf naming no
/// helper, so stock libvirt runs `/usr/bin/slirp-helper`, the package's
/// alternative; purged afterwards, pass or fail. The other tests here name
/// target/release/airlock and never see the package.
#[test]
fn libvirtd_default_slirp_helper() {
    let deb = support::package::build();
    let _installed = support::package::Installed::install(&deb);
    let target = std::fs::canonicalize(DEFAULT_HELPER).unwrap();
    assert_eq!(target, Path::new("/usr/bin/airlock"), "{DEFAULT_HELPER}");
    boot_and_destroy(None, &target, None);
}

/// The guest's `airlock.mode=migrate` (tests/qemu/guest-init.sh): after the
/// lease it holds a TCP connection to the router's port 9000, serves
/// "fwd-ok" on TCP 8000, prints "ready", and once the held connection ends
/// (the reset airlock sends when it loads a state) pings, downloads and
/// resolves.
const MIGRATE_MODE: &str = "airlock.mode=migrate airlock.hold=9000";
/// Where `airlock ctl` binds the runtime forward (host side).
const FWD: &str = "127.0.0.1:18000";

/// The console from byte `from` on, once it has the `AIRLOCK-GUEST`
/// marker `marker`.
fn wait_marker(
    console: &Path,
    from: usize,
    marker: &str,
    limit: Duration,
    lv: &Libvirtd,
) -> String {
    let end = Instant::now() + limit;
    let want = format!("AIRLOCK-GUEST {marker}");
    loop {
        let t = std::fs::read(console).unwrap_or_default();
        let t = String::from_utf8_lossy(t.get(from..).unwrap_or_default()).into_owned();
        if t.contains(&want) {
            return t;
        }
        assert!(
            Instant::now() < end,
            "no {want:?} in {limit:?}:\n{t}\n{}",
            lv.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The one airlock in `topo`'s host namespace, with its argv.
fn the_airlock(topo: &Topology, lv: &Libvirtd) -> (i32, Vec<String>) {
    let mut found = helpers_in(topo, &airlock_exe());
    assert_eq!(
        found.len(),
        1,
        "airlock processes: {found:?}\n{}",
        lv.log_text()
    );
    found.pop().unwrap()
}

fn arg_value<'a>(argv: &'a [String], name: &str) -> &'a str {
    let pre = format!("{name}=");
    argv.iter()
        .find_map(|a| a.strip_prefix(pre.as_str()))
        .unwrap_or_else(|| panic!("no {name} in {argv:?}"))
}

/// `airlock ctl` on the domain's bus, from the host namespace. libvirt's
/// `/run/libvirt` is `dir/run` outside its mount namespace.
fn ctl(host: &KitHost, argv: &[String], args: &[&str]) -> support::process::Outcome {
    let addr = arg_value(argv, "--dbus-address").replace(
        "unix:path=/run/libvirt/",
        &format!("unix:path={}/run/", host.topo.dir().display()),
    );
    let mut c = host.cmd(AIRLOCK);
    c.args(["ctl", "--dbus-address", &addr, "--dbus-id"])
        .arg(arg_value(argv, "--dbus-id"))
        .args(args);
    run(&mut c, Duration::from_secs(15))
}

/// What the host side reads from `port` on its loopback (the guest's
/// "fwd-ok" through the forward), or "" if nothing answers.
fn forward_answer(host: &KitHost, port: &str) -> String {
    let prog = format!(
        "import socket\ns=socket.create_connection(('127.0.0.1',{}),5)\ns.settimeout(5)\nprint(s.recv(100).decode().strip())",
        port.rsplit(':').next().unwrap()
    );
    let out = host.cmd("python3").args(["-c", &prog]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Start `name` on `lv` in `airlock.mode=migrate`, wait for "ready", and
/// add the runtime forward [`FWD`] -> guest port 8000 with `airlock ctl`:
/// a forward only the migrated state knows (libvirt's command line has
/// none). Returns airlock's argv.
fn start_held_domain(host: &KitHost, lv: &Libvirtd, name: &str, console: &Path) -> Vec<String> {
    let xml = host.topo.dir().join("domain.xml");
    std::fs::write(&xml, domain_xml(name, console, None, MIGRATE_MODE)).unwrap();
    lv.virsh(&["create", xml.to_str().unwrap()]);
    let text = wait_marker(console, 0, "ready", Duration::from_secs(240), lv);
    let r = GuestReport::parse(text.as_bytes());
    let lease = r.lease.unwrap_or_default();
    assert!(lease.starts_with("ip=10.0.2.15 "), "{text}");
    assert!(text.contains("AIRLOCK-GUEST held hello"), "{text}");
    let (_, argv) = the_airlock(&host.topo, lv);
    assert!(!argv.iter().any(|a| a == "--dbus-incoming"), "{argv:?}");
    let add = ctl(host, &argv, &["add", "tcp", FWD, ":8000"]);
    assert!(add.success(), "airlock ctl add: {}", add.describe());
    assert_eq!(forward_answer(host, FWD), "fwd-ok");
    argv
}

/// After the state came in (`--dbus-incoming` on `argv`'s airlock): the
/// held connection ends (airlock reset it toward the guest: the state had
/// it), the guest does not lease again, and ping, a download of `host`'s
/// file and DNS work; the runtime forward answers on `host`.
fn assert_resumed(host: &KitHost, lv: &Libvirtd, console: &Path, from: usize, src: &[String]) {
    let (_, argv) = the_airlock(&host.topo, lv);
    assert!(argv.iter().any(|a| a == "--dbus-incoming"), "{argv:?}");
    assert_eq!(arg_value(&argv, "--dbus-id"), arg_value(src, "--dbus-id"));
    let text = wait_marker(console, from, "done", Duration::from_secs(120), lv);
    assert!(text.contains("AIRLOCK-GUEST tcp-old closed"), "{text}");
    let r = GuestReport::parse(text.as_bytes());
    assert!(r.lease.is_none(), "the guest leased again:\n{text}");
    assert_eq!(r.ping.as_deref(), Some("ok 10.0.2.2"), "\n{text}");
    assert_eq!(
        r.sha256.as_deref(),
        Some(host.servers.blob_sha256.as_str()),
        "\n{text}"
    );
    assert_eq!(
        r.dns.as_deref(),
        Some(format!("{} {}", support::qemu::DNS_NAME, support::qemu::DNS_ADDR).as_str()),
        "\n{text}"
    );
    // Bound again from the state before airlock's sandbox.
    assert_eq!(forward_answer(host, FWD), "fwd-ok");
    let list = ctl(host, &argv, &["list"]);
    assert!(
        list.success() && list.stdout.contains(FWD),
        "{}",
        list.describe()
    );
}

fn wait_no_airlock(topo: &Topology, lv: &Libvirtd) {
    let end = Instant::now() + Duration::from_secs(10);
    while !helpers_in(topo, &airlock_exe()).is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = helpers_in(topo, &airlock_exe());
    assert!(left.is_empty(), "airlock left: {left:?}\n{}", lv.log_text());
}

/// `virsh save` and `virsh restore` (issue 16 item 2): libvirt saves
/// QEMU's state with the `dbus-vmstate` section (airlock's `Save`), stops
/// the domain and its airlock; `restore` starts airlock with
/// `--dbus-incoming`, QEMU `Load`s the state into it, and the guest goes
/// on with its lease, its forward and new connections.
#[test]
#[cfg(feature = "dbus")]
fn libvirtd_save_restore() {
    let _l = serial();
    let host = KitHost::new();
    let _hold = Hold::start(&host);
    let dir = host.topo.dir();
    let lv = Libvirtd::start(&host.topo, dir, Some(AIRLOCK));
    let name = format!("airlock-{}", host.topo.prefix());
    let console = dir.join("console.log");
    let src = start_held_domain(&host, &lv, &name, &console);

    let image = dir.join("saved.img");
    let t = Instant::now();
    lv.virsh(&["save", &name, image.to_str().unwrap()]);
    eprintln!("libvirtd_save_restore: virsh save took {:?}", t.elapsed());
    wait_no_airlock(&host.topo, &lv);
    let from = std::fs::metadata(&console).unwrap().len() as usize;

    let t = Instant::now();
    lv.virsh(&["restore", image.to_str().unwrap()]);
    eprintln!(
        "libvirtd_save_restore: virsh restore took {:?}",
        t.elapsed()
    );
    assert_resumed(&host, &lv, &console, from, &src);
    lv.virsh(&["destroy", &name]);
    wait_no_airlock(&host.topo, &lv);
}

/// `virsh migrate --live` between two libvirtd on this machine (issue 16
/// item 3): two "hosts" (network namespaces, each with its own servers and
/// its own libvirtd, host UUID and per-domain bus); the migration stream
/// goes over a UNIX socket, the one path between the two namespaces.
/// libvirt accepts the domain (airlock advertises `migrate`), starts the
/// destination's airlock with `--dbus-incoming`, and the guest resumes on
/// the destination host.
#[test]
#[cfg(feature = "dbus")]
fn libvirtd_migrate_live() {
    let _l = serial();
    let (a, b) = (KitHost::new(), KitHost::new());
    let _hold = Hold::start(&a);
    let lv_a = Libvirtd::start(&a.topo, a.topo.dir(), Some(AIRLOCK));
    let lv_b = Libvirtd::start(&b.topo, b.topo.dir(), Some(AIRLOCK));
    let name = format!("airlock-{}", a.topo.prefix());
    let console = a.topo.dir().join("console.log");
    let src = start_held_domain(&a, &lv_a, &name, &console);

    let from = std::fs::metadata(&console).unwrap().len() as usize;
    let stream = format!("unix://{}/migration.sock", a.topo.dir().display());
    let t = Instant::now();
    let o = lv_a.virsh_run(&[
        "migrate",
        "--live",
        &name,
        &lv_b.uri,
        "--migrateuri",
        &stream,
    ]);
    assert!(
        o.success(),
        "virsh migrate: {}\nsource:\n{}\ndestination:\n{}",
        o.describe(),
        lv_a.log_text(),
        lv_b.log_text()
    );
    eprintln!(
        "libvirtd_migrate_live: virsh migrate took {:?}",
        t.elapsed()
    );
    assert!(!lv_a
        .log_text()
        .contains("a slirp-helper cannot be migrated"));
    wait_no_airlock(&a.topo, &lv_a);
    assert_resumed(&b, &lv_b, &console, from, &src);
    lv_b.virsh(&["destroy", &name]);
    wait_no_airlock(&b.topo, &lv_b);
}
