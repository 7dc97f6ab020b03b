//! airlock's passt personality against passt itself (issue 15).
//!
//! For each launcher's argv, passt and airlock started as `passt` (a
//! symlink named so) run the same way in the same kind of dead-end host
//! namespace (up0 192.0.2.2/24, gateway 192.0.2.1, fd00::2/64; resolv.conf
//! naming 127.0.0.1), and the guest's view is compared field by field: the
//! DHCP lease, `ip addr`, `ip route`, the router's MAC in `ip neigh`, the
//! MTU, and a TCP forward reached from the host side; in IPv6 the router
//! advertisement answering a solicitation (flags, lifetimes, prefix, MTU,
//! RDNSS, DNSSL, source), the SLAAC address, the default route, the MTU,
//! the router's MAC, and the DHCPv6 Advertise and Information-request
//! replies (IA address and lifetimes, DNS, domain list, client FQDN).
//!
//! The launchers' link options (`--socket PATH --one-off`, `--fd 3`) are
//! replaced by `-f --fd N` so the harness relay can carry the frames to the
//! guest namespace; the launch itself is what tests/vmm.rs replays.
//!
//! passt is `$AIRLOCK_PASST` if set, else `/opt/passt-2026_07_16/passt`
//! when present, else Debian's `/usr/bin/passt` (CI). Debian's 2023_03
//! build has bugs of its own, listed in [`KNOWN_DEBIAN`]: a field listed
//! there may differ only against that build. Against 2026_07_16 every
//! field must match but the two in [`EXPLAINED`], passt's own departures
//! from the RFCs that no guest acts on.

mod support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;
use support::{Helper, LinkMode, Topology};

const CURRENT: &str = "/opt/passt-2026_07_16/passt";

fn passt_bin() -> String {
    std::env::var("AIRLOCK_PASST").unwrap_or_else(|_| {
        if std::path::Path::new(CURRENT).exists() {
            CURRENT.into()
        } else {
            "/usr/bin/passt".into()
        }
    })
}

fn is_debian_2023(bin: &str) -> bool {
    let out = std::process::Command::new(bin).arg("--version").output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).contains("unknown version"))
        .unwrap_or(false)
}

/// Fields where Debian 12's passt 2023_03 is known to differ from a
/// current passt (and so from airlock), by the launchers it differs for
/// (`*`: every one).
const KNOWN_DEBIAN: &[(&[&str], &str, &str)] = &[
    // `--netmask 16` with an off-subnet gateway becomes mask 128.0.0.0
    // (seed 001's /1), and the address with it.
    (IP16, "lease.mask", "--netmask 16 becomes /1"),
    (IP16, "lease.subnet", "--netmask 16 becomes 128.0.0.0"),
    (IP16, "addr.v4", "--netmask 16 becomes /1"),
    // No option 121 for a gateway outside the subnet (the /1 mask above
    // puts 192.0.2.1 inside it instead).
    (IP16, "lease.staticroutes", "no option 121"),
    (IP16, "route.gateway-host", "no option 121"),
    // Without --mac-addr its MAC is the host interface's (up0's random
    // veth MAC), not 9a:55:9a:55:9a:55; in IPv6 too, the router's MAC and
    // the RA's source link-layer address.
    (NO_MAC, "neigh.router", "the host interface's MAC"),
    (NO_MAC, "neigh6.router", "the host interface's MAC"),
    (NO_MAC, "ra.slla", "the host interface's MAC"),
    // Router lifetime 9000 s, from before passt took RFC 8319's 65535.
    (&["*"], "ra.lifetime", "router lifetime 9000"),
];

/// The launchers that pass `--netmask 16` with the gateway off the subnet.
const IP16: &[&str] = &["libvirt-9.x+ip", "libvirt-11.x+ip"];

/// The launchers that pass no `--mac-addr`.
const NO_MAC: &[&str] = &["libvirt-11.x", "libvirt-11.x+ip", "qemu-10.1", "kata"];

/// Fields where a current passt differs from airlock-as-passt on purpose,
/// for every launcher: passt's own departures from the RFCs, which a guest
/// ignores (the view around them is the same).
const EXPLAINED: &[(&str, &str)] = &[
    // passt's reply template always holds its IA_NA; RFC 8415 §18.3.6
    // gives an Information-request's reply none, and a stateless client
    // ignores it.
    (
        "dhcp6.info.ia_na",
        "IA_NA in passt's Information-request reply",
    ),
    // passt leaves the host bits in the RA's prefix (fd00::2/64); RFC 4861
    // §4.6.2 has them zero and the receiver ignore them: the guest's
    // SLAAC address (addr.v6) is the same.
    ("ra.prefix", "host bits in passt's prefix field"),
];

/// Launcher rows Debian's 2023_03 cannot run at all.
const SKIP_DEBIAN: &[(&str, &str)] = &[("qemu-10.1+props", "no --fqdn option in 2023_03")];

/// libvirt's options for `<ip address='169.254.2.15' prefix='16'/>` and a
/// `<portForward>` of TCP 2222 to the guest's 22.
const LIBVIRT_IP: &[&str] = &[
    "--address",
    "169.254.2.15",
    "--netmask",
    "16",
    "--tcp-ports",
    "2222:22",
];

/// The launchers' addressing and forwarding options, as they emit them.
fn launchers() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        // libvirt 9.x qemuPasstStart: --mac-addr is the *guest's* MAC.
        ("libvirt-9.x", vec!["--mac-addr", "52:54:00:41:2c:49"]),
        (
            "libvirt-9.x+ip",
            [
                &["--mac-addr", "52:54:00:41:2c:49", "--mtu", "1500"],
                LIBVIRT_IP,
            ]
            .concat(),
        ),
        // libvirt 11.x: no --mac-addr; <ip>, <portForward>, <mtu>.
        ("libvirt-11.x", vec![]),
        (
            "libvirt-11.x+ip",
            [LIBVIRT_IP, &["--udp-ports", "127.0.0.1/5353:53"]].concat(),
        ),
        // QEMU 10.1 net/passt.c: --quiet --fd 3 --pid FILE, no addressing.
        ("qemu-10.1", vec!["--quiet"]),
        // ... and with netdev properties (hostname=, fqdn=, dns-search=,
        // mac=, mtu=), in getopt's short forms and clusters.
        (
            "qemu-10.1+props",
            vec![
                "-q",
                "-Hvm1",
                "--fqdn",
                "vm1.example.test",
                "-S",
                "example.test",
                "-M",
                "52:56:00:00:00:02",
                "-m1500",
            ],
        ),
        // Kata's passt endpoint: `-P FILE -s PATH`, nothing else.
        ("kata", vec![]),
        // libguestfs's direct backend: slirp's view, set by hand.
        (
            "libguestfs",
            vec![
                "--quiet",
                "--address",
                "169.254.2.15",
                "--netmask",
                "16",
                "--mac-addr",
                "52:56:00:00:00:02",
                "--gateway",
                "169.254.2.2",
            ],
        ),
    ]
}

type View = BTreeMap<String, String>;

/// Start `bin` with `args` and collect the guest's view.
fn view(bin: &str, args: &[&str], forward_port: Option<u16>) -> View {
    let t = Topology::new();
    t.guest().accept_ra(false);
    // airlock must be started as `passt`, as a launcher would find it.
    let program = if bin == support::AIRLOCK {
        let link = t.dir().join("passt");
        std::os::unix::fs::symlink(support::AIRLOCK, &link).unwrap();
        link.to_string_lossy().into_owned()
    } else {
        bin.to_owned()
    };
    let mut argv = vec![program.as_str(), "-f", "--fd", "{fd}"];
    argv.extend_from_slice(args);
    let mut h = Helper::spawn(&t, "helper", LinkMode::Stream, &argv);
    h.wait_ready(&t, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{bin} {args:?}: {e}"));
    let g = t.guest();
    let lease = g
        .dhcp()
        .unwrap_or_else(|e| panic!("{bin} {args:?}: {e}\n{}", h.log()));
    let mut v = View::new();
    for k in [
        "ip",
        "mask",
        "subnet",
        "router",
        "dns",
        "serverid",
        "mtu",
        "broadcast",
        "staticroutes",
        "hostname",
        "domain",
        "search",
    ] {
        v.insert(
            format!("lease.{k}"),
            lease.vars.get(k).cloned().unwrap_or_default(),
        );
    }
    let router = lease.routers.first().copied();
    // Apply option 121 as a guest's DHCP client would (the harness hook
    // applies only option 3).
    if let (Some(r), Some(_)) = (router, lease.vars.get("staticroutes")) {
        let r = r.to_string();
        let _ = t.guest_run(
            &["ip", "route", "replace", &format!("{r}/32"), "dev", "tap0"],
            Duration::from_secs(5),
        );
        let _ = t.guest_run(
            &[
                "ip", "route", "replace", "default", "via", &r, "dev", "tap0",
            ],
            Duration::from_secs(5),
        );
    }
    let addrs: Vec<String> = g
        .addrs()
        .into_iter()
        .filter(|a| matches!(a.addr, IpAddr::V4(_)))
        .map(|a| format!("{}/{}", a.addr, a.prefix))
        .collect();
    v.insert("addr.v4".into(), addrs.join(" "));
    let routes = g.routes4();
    let default = routes
        .iter()
        .find(|r| r.dst == "default")
        .and_then(|r| r.gateway)
        .map(|a| a.to_string())
        .unwrap_or_default();
    v.insert("route.default".into(), default);
    let host_route = router.is_some_and(|r| routes.iter().any(|x| x.dst == r.to_string()));
    v.insert("route.gateway-host".into(), host_route.to_string());
    v.insert("mtu".into(), g.mtu().to_string());
    if let Some(r) = router {
        // A TCP connection makes the guest resolve the router's MAC
        // (ICMP echo is answered differently by Debian's passt).
        let _ = t.guest_run(
            &["busybox", "nc", "-w", "1", &r.to_string(), "9"],
            Duration::from_secs(5),
        );
        let _ = g.ping(r);
        v.insert(
            "neigh.router".into(),
            g.neighbor_mac(IpAddr::V4(r)).unwrap_or_default(),
        );
    }
    view6(&t, &mut v);
    if let Some(port) = forward_port {
        // A server in the guest; the host side connects to the forward.
        let guest_ip = lease.ip.to_string();
        let mut server = t
            .guest_cmd(&["sh", "-c", "echo hello-from-guest | busybox nc -l -p 22"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let o = t.host_run(
            &["busybox", "nc", "-w", "3", "127.0.0.1", &port.to_string()],
            Duration::from_secs(10),
        );
        let _ = server.kill();
        let _ = server.wait();
        v.insert("forward.tcp".into(), o.stdout.trim().to_string());
        let _ = guest_ip;
    }
    v
}

fn compare(name: &str, args: &[&str], passt: &str, debian: bool) -> Vec<String> {
    let fwd = args.contains(&"2222:22").then_some(2222);
    let theirs = view(passt, args, fwd);
    let ours = view(support::AIRLOCK, args, fwd);
    eprintln!("{name}: passt {theirs:?}\n{name}: airlock {ours:?}");
    let mut bad = Vec::new();
    for (k, t) in &theirs {
        let o = ours.get(k).cloned().unwrap_or_default();
        if &o == t {
            continue;
        }
        let known = debian
            && KNOWN_DEBIAN
                .iter()
                .any(|(ls, f, _)| ls.iter().any(|l| *l == name || *l == "*") && f == k);
        let explained = EXPLAINED.iter().find(|(f, _)| f == k);
        if let Some((_, why)) = explained {
            eprintln!("{name}: {k}: passt {t:?}, airlock {o:?} (explained: {why})");
        } else if known {
            eprintln!("{name}: {k}: passt {t:?}, airlock {o:?} (known Debian 2023_03 difference)");
        } else {
            bad.push(format!("{name}: {k}: passt {t:?}, airlock {o:?}"));
        }
    }
    bad
}

/// Every launcher's argv: passt and airlock-as-passt give the guest the
/// same view (see the table in docs/integration.md).
#[test]
fn differential_against_passt() {
    let passt = passt_bin();
    let debian = is_debian_2023(&passt);
    eprintln!("comparing against {passt} (Debian 2023_03: {debian})");
    let mut bad = Vec::new();
    for (name, args) in launchers() {
        if let Some((_, why)) = SKIP_DEBIAN.iter().find(|(l, _)| debian && *l == name) {
            eprintln!("{name}: not run against Debian's passt: {why}");
            continue;
        }
        bad.extend(compare(name, &args, &passt, debian));
    }
    assert!(bad.is_empty(), "differences:\n{}", bad.join("\n"));
}

/// The seed-001 case from the issue, against airlock alone: `--address
/// 169.254.2.15 --netmask 16` gives 169.254.2.15/16, router and DNS the
/// host's gateway 192.0.2.1, MAC 9a:55:9a:55:9a:55; no `--address` gives
/// the host's own 192.0.2.2/24.
#[test]
fn passt_addressing_as_measured() {
    let v = view(
        support::AIRLOCK,
        &["--address", "169.254.2.15", "--netmask", "16"],
        None,
    );
    assert_eq!(v["addr.v4"], "169.254.2.15/16");
    assert_eq!(v["lease.router"], "192.0.2.1");
    assert_eq!(v["lease.dns"], "192.0.2.1");
    assert_eq!(v["route.default"], "192.0.2.1");
    assert_eq!(v["neigh.router"], "9a:55:9a:55:9a:55");
    let v = view(support::AIRLOCK, &[], None);
    assert_eq!(v["addr.v4"], "192.0.2.2/24");
    assert_eq!(v["lease.router"], "192.0.2.1");
    assert_eq!(v["mtu"], "65520");
}

/// Options passt has and airlock does not implement are refused with one
/// line naming them, exit 2; `--version`, `--help` and
/// `--print-capabilities` answer as passt's.
#[test]
fn refusals_and_answers() {
    let dir = std::env::temp_dir().join(format!("airlock-passt-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let link = dir.join("passt");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(support::AIRLOCK, &link).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(&link)
            .args(args)
            .output()
            .unwrap()
    };
    for (args, named) in [
        (&["-f", "--freebind"][..], "--freebind"),
        (&["-f", "--repair-path", "/run/r.sock"], "--repair-path"),
        (&["-f", "--map-guest-addr", "127.0.0.1"], "--map-guest-addr"),
        (&["-f", "--no-tcp", "-t", "22"], "--tcp-ports"),
        (&["-fx"], "-x"),
        (&["--netns", "/run/netns/x"], "--netns"),
    ] {
        let o = run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err}");
    }
    let o = run(&["--print-capabilities"]);
    assert!(o.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc, serde_json::json!({"type": "net"}));
    // The same binary as airlock answers libvirt's slirp-helper probe.
    let o = std::process::Command::new(support::AIRLOCK)
        .arg("--print-capabilities")
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["type"], "slirp-helper");
    assert!(run(&["--version"]).status.success());
    let o = std::process::Command::new(support::AIRLOCK)
        .args(["--compat=passt", "--stats", "5"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--stats"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// airlock started as `passt -f --fd N ARGS` on `t`'s guest link.
fn start_as_passt(t: &Topology, args: &[&str]) -> Helper {
    let link = t.dir().join("passt");
    if !link.exists() {
        std::os::unix::fs::symlink(support::AIRLOCK, &link).unwrap();
    }
    let program = link.to_string_lossy().into_owned();
    let mut argv = vec![program.as_str(), "-f", "--fd", "{fd}"];
    argv.extend_from_slice(args);
    let mut h = Helper::spawn(t, "passt", LinkMode::Stream, &argv);
    h.wait_ready(t, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    h
}

/// Host-side servers for the `--no-*` and `--map-guest-addr` tests: each
/// `tcp:ADDR:PORT` answers `tcp-ok PEER`, each `udp:ADDR:PORT` answers
/// `udp-ok`; the script ends by itself after 60 s.
const SERVERS: &str = "\
import socket, sys, threading, time
def tcp(a, p):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a, p)); s.listen(8)
    while True:
        c, peer = s.accept(); c.sendall(('tcp-ok %s\\n' % peer[0]).encode()); c.close()
def udp(a, p):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((a, p))
    while True:
        d, peer = s.recvfrom(2048); s.sendto(b'udp-ok', peer)
for spec in sys.argv[1:]:
    kind, a, p = spec.split(':')
    threading.Thread(target=tcp if kind == 'tcp' else udp, args=(a, int(p)), daemon=True).start()
print('ready', flush=True)
time.sleep(60)
";

struct Servers(std::process::Child);

impl Servers {
    fn start(t: &Topology, specs: &[&str]) -> Servers {
        use std::io::BufRead;
        let mut argv = vec!["python3", "-c", SERVERS];
        argv.extend_from_slice(specs);
        let mut c = t
            .host_cmd(&argv)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let out = c.stdout.take().unwrap();
        std::io::BufReader::new(out).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "host servers did not start");
        Servers(c)
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the guest gets over TCP from `addr:port` (empty: nothing).
fn guest_tcp(t: &Topology, addr: &str, port: u16) -> String {
    let o = t.guest_run(
        &["busybox", "nc", "-w", "2", addr, &port.to_string()],
        Duration::from_secs(10),
    );
    o.stdout.trim().to_string()
}

/// The answer to one UDP datagram from the guest (empty: none in 2 s).
fn guest_udp(t: &Topology, addr: &str, port: u16) -> String {
    let py = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\n\
         s.sendto(b'x',('{addr}',{port}))\nprint(s.recv(64).decode())\n"
    );
    let o = t.guest_run(&["python3", "-c", &py], Duration::from_secs(10));
    o.stdout.trim().to_string()
}

/// `--no-tcp`, `--no-udp`, `--no-icmp` (passt's meaning): the guest's
/// messages of that protocol are dropped, silently, and only those. The
/// gateway 192.0.2.1 reaches the host's loopback, where the servers are.
#[test]
fn no_tcp_udp_icmp_drop_only_their_protocol() {
    for off in [None, Some("--no-tcp"), Some("--no-udp"), Some("--no-icmp")] {
        let t = Topology::new();
        let _s = Servers::start(&t, &["tcp:127.0.0.1:7001", "udp:127.0.0.1:7002"]);
        let mut h = start_as_passt(&t, off.as_slice());
        t.guest()
            .dhcp()
            .unwrap_or_else(|e| panic!("{off:?}: {e}\n{}", h.log()));
        let tcp = guest_tcp(&t, "192.0.2.1", 7001);
        let udp = guest_udp(&t, "192.0.2.1", 7002);
        let icmp = t.guest().ping("192.0.2.1").is_ok();
        let want = |o: &str| off != Some(o);
        assert_eq!(
            tcp.starts_with("tcp-ok"),
            want("--no-tcp"),
            "{off:?}: tcp {tcp:?}"
        );
        assert_eq!(udp == "udp-ok", want("--no-udp"), "{off:?}: udp {udp:?}");
        assert_eq!(icmp, want("--no-icmp"), "{off:?}: icmp");
        assert!(h.is_running(), "{off:?}: {}", h.diagnose());
    }
}

/// `--no-dhcp`: no DHCP answer at all; the guest configured by hand still
/// has its network.
#[test]
fn no_dhcp_offers_no_lease() {
    let t = Topology::new();
    let _s = Servers::start(&t, &["tcp:127.0.0.1:7001"]);
    let _h = start_as_passt(&t, &["--no-dhcp"]);
    let g = t.guest();
    let o = support::guest::Udhcpc {
        tries: 2,
        ..Default::default()
    };
    assert!(g.dhcp_with(&o).is_err(), "a lease with --no-dhcp");
    g.configure_static(
        "192.0.2.2".parse().unwrap(),
        24,
        "192.0.2.1".parse().unwrap(),
        65520,
    );
    assert!(guest_tcp(&t, "192.0.2.1", 7001).starts_with("tcp-ok"));
}

/// `--map-guest-addr ADDR`: the guest reaches the host's own address (its
/// own address too, so it cannot name it) as ADDR; without the option ADDR
/// is just another address out there (here: the dead end).
#[test]
fn map_guest_addr_reaches_the_hosts_own_address() {
    for map in [false, true] {
        let t = Topology::new();
        let _s = Servers::start(&t, &["tcp:192.0.2.2:7003"]);
        let args: &[&str] = if map {
            &["--map-guest-addr", "192.0.2.99"]
        } else {
            &[]
        };
        let mut h = start_as_passt(&t, args);
        t.guest()
            .dhcp()
            .unwrap_or_else(|e| panic!("{args:?}: {e}\n{}", h.log()));
        let got = guest_tcp(&t, "192.0.2.99", 7003);
        if map {
            assert!(got.starts_with("tcp-ok"), "{got:?}\n{}", h.diagnose());
        } else {
            assert_eq!(got, "", "unmapped 192.0.2.99 answered");
        }
    }
}

/// The guest's global IPv6 addresses on tap0 (`ip -j`), as ADDR/LEN.
fn global6(t: &Topology) -> Vec<String> {
    let o = t.guest_run(
        &[
            "ip", "-j", "-6", "addr", "show", "dev", "tap0", "scope", "global",
        ],
        Duration::from_secs(10),
    );
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_default();
    let mut out = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if let (Some(l), Some(p)) = (a["local"].as_str(), a["prefixlen"].as_u64()) {
                out.push(format!("{l}/{p}"));
            }
        }
    }
    out.sort();
    out
}

/// Waits up to `limit` for a SLAAC address (one not given by hand).
fn wait_slaac(t: &Topology, limit: Duration) -> Option<String> {
    let end = std::time::Instant::now() + limit;
    loop {
        let a = global6(t).into_iter().find(|a| a.ends_with("/64"));
        if a.is_some() || std::time::Instant::now() >= end {
            return a;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A DHCPv6 exchange from the guest's link-local address (python3, a UDP
/// socket on port 546): `msg_type` 11 (Information-request, ORO 23 24 39)
/// or 1 (Solicit, ORO 23 24 39, an IA_NA). Prints the reply's options as `CODE=HEX` lines
/// after `reply`, or nothing if none came (five tries, 2 s apart).
const DHCP6_CLIENT: &str = "\
import socket, sys
t = int(sys.argv[1])
i = socket.if_nametoindex('tap0')
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('::', 546))
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, i)
s.settimeout(2)
mac = bytes.fromhex(open('/sys/class/net/tap0/address').read().strip().replace(':', ''))
def opt(c, d): return c.to_bytes(2, 'big') + len(d).to_bytes(2, 'big') + d
m = bytes([t, 1, 2, 3]) + opt(1, bytes([0, 3, 0, 1]) + mac) + opt(6, bytes([0, 23, 0, 24, 0, 39]))
if t == 1:
    m += opt(3, bytes([0, 0, 0, 1]) + bytes(8))
for _ in range(5):
    try:
        s.sendto(m, ('ff02::1:2', 547, 0, i))
        d = s.recv(4096)
    except OSError:
        continue
    print('reply', d[0])
    o = d[4:]
    while len(o) >= 4:
        c, n = int.from_bytes(o[0:2], 'big'), int.from_bytes(o[2:4], 'big')
        print('%d=%s' % (c, o[4:4 + n].hex()))
        o = o[4 + n:]
    break
";

/// The reply's options (code -> hex), or `None` if nothing answered.
fn dhcp6(t: &Topology, msg_type: u8) -> Option<BTreeMap<u16, String>> {
    let o = t.guest_run(
        &["python3", "-c", DHCP6_CLIENT, &msg_type.to_string()],
        Duration::from_secs(15),
    );
    let mut lines = o.stdout.lines();
    lines.next()?.starts_with("reply").then_some(())?;
    Some(
        lines
            .filter_map(|l| l.split_once('='))
            .filter_map(|(c, h)| Some((c.parse().ok()?, h.to_string())))
            .collect(),
    )
}

/// `--no-ra` (NDP answered, no router advertisement), `--no-ndp` (no
/// neighbour or router advertisement), `--no-dhcpv6` (no DHCPv6 reply),
/// each against the default, in a guest that autoconfigures.
#[test]
fn no_ndp_no_ra_no_dhcpv6() {
    for off in [None, Some("--no-ra"), Some("--no-ndp"), Some("--no-dhcpv6")] {
        let t = Topology::new();
        t.guest().accept_ra(false);
        let mut h = start_as_passt(&t, off.as_slice());
        let ra = !matches!(off, Some("--no-ra" | "--no-ndp"));
        let wait = if ra { 15 } else { 4 };
        let slaac = wait_slaac(&t, Duration::from_secs(wait));
        assert_eq!(slaac.is_some(), ra, "{off:?}: SLAAC {slaac:?}");
        let o = t.guest_run(
            &[
                "ip",
                "-6",
                "addr",
                "add",
                "fd00::5/64",
                "dev",
                "tap0",
                "nodad",
            ],
            Duration::from_secs(5),
        );
        assert!(o.success(), "{}", o.describe());
        let o = t.guest_run(
            &["busybox", "ping", "-6", "-c", "1", "-W", "2", "fd00::1"],
            Duration::from_secs(10),
        );
        assert_eq!(
            o.success(),
            off != Some("--no-ndp"),
            "{off:?}: ping -6 fd00::1"
        );
        let reply = dhcp6(&t, 11);
        assert_eq!(
            reply.is_some(),
            off != Some("--no-dhcpv6"),
            "{off:?}: {reply:?}"
        );
        assert!(h.is_running(), "{off:?}: {}", h.diagnose());
    }
}

/// A router solicitation from the guest (python3, raw ICMPv6 socket) and
/// the advertisement that answers it, as `KEY=VALUE` lines: `src`,
/// `flags`, `lifetime`, `hop` (cur hop limit), then per option `slla`,
/// `prefix` (ADDR/LEN L/A flags, valid, preferred), `mtu`, `rdnss`,
/// `dnssl`. Nothing if no RA came (five tries, 2 s apart).
const RA_CLIENT: &str = "\
import socket, sys
i = socket.if_nametoindex('tap0')
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, i)
s.settimeout(2)
def be(b): return int.from_bytes(b, 'big')
def a6(b): return socket.inet_ntop(socket.AF_INET6, b)
for _ in range(5):
    s.sendto(bytes([133, 0, 0, 0, 0, 0, 0, 0]), ('ff02::2', 0, 0, i))
    try:
        while True:
            d, src = s.recvfrom(4096)
            if d[0] == 134:
                break
    except OSError:
        continue
    print('src=%s' % src[0].split('%')[0])
    print('hop=%d' % d[4]); print('flags=%02x' % d[5]); print('lifetime=%d' % be(d[6:8]))
    o = d[16:]
    while len(o) >= 8 and o[1]:
        n = o[1] * 8; x = o[:n]; o = o[n:]
        if x[0] == 1: print('slla=%s' % ':'.join('%02x' % b for b in x[2:8]))
        if x[0] == 3: print('prefix=%s/%d %02x %d %d' % (a6(x[16:32]), x[2], x[3], be(x[4:8]), be(x[8:12])))
        if x[0] == 5: print('mtu=%d' % be(x[4:8]))
        if x[0] == 25: print('rdnss=%s' % ' '.join(a6(x[k:k + 16]) for k in range(8, n, 16)))
        if x[0] == 31:
            names, cur, k = [], [], 8
            while k < n:
                l = x[k]; k += 1
                if l == 0:
                    if cur: names.append('.'.join(cur))
                    cur = []
                    continue
                cur.append(x[k:k + l].decode()); k += l
            print('dnssl=%s' % ' '.join(names))
    break
";

/// The guest's IPv6 view: the RA answering its solicitation, its SLAAC
/// address (the interface identifier shown as `EUI64` when it is tap0's
/// own, which differs per run), the default route, the MTU the RA set,
/// the router's MAC, and the DHCPv6 answers (Advertise's IA address and
/// lifetimes, DNS, domain list, client FQDN; Information-request's).
fn view6(t: &Topology, v: &mut View) {
    let g = t.guest();
    let mac = g.mac_bytes();
    let eui = {
        let mut b = [0u8; 8];
        b[..3].copy_from_slice(&mac[..3]);
        b[3..5].copy_from_slice(&[0xff, 0xfe]);
        b[5..].copy_from_slice(&mac[3..]);
        b[0] ^= 2;
        u64::from_be_bytes(b)
    };
    let shown = |a: &str| {
        let (addr, len) = a.split_once('/').unwrap_or((a, ""));
        match addr.parse::<std::net::Ipv6Addr>() {
            Ok(x) if u128::from(x) as u64 == eui => {
                let p = std::net::Ipv6Addr::from(u128::from(x) & !(u64::MAX as u128));
                format!("{p}+EUI64/{len}")
            }
            _ => a.to_string(),
        }
    };
    // The host interface's link-local address differs per run (a random
    // veth MAC): shown as `up0-ll` where the guest sees it.
    let o = t.host_run(
        &[
            "ip", "-6", "-o", "addr", "show", "dev", "up0", "scope", "link",
        ],
        Duration::from_secs(5),
    );
    let up0_ll = o
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or("-")
        .to_string();
    let ll = |a: String| if a == up0_ll { "up0-ll".to_string() } else { a };
    wait_slaac(t, Duration::from_secs(10));
    let o = t.guest_run(&["python3", "-c", RA_CLIENT], Duration::from_secs(15));
    for l in o.stdout.lines() {
        if let Some((k, val)) = l.split_once('=') {
            v.insert(format!("ra.{k}"), ll(val.to_string()));
        }
    }
    let addrs: Vec<String> = global6(t).iter().map(|a| shown(a)).collect();
    v.insert("addr.v6".into(), addrs.join(" "));
    let default = g
        .routes6()
        .into_iter()
        .find(|r| r.dst == "default")
        .and_then(|r| r.gateway);
    v.insert(
        "route6.default".into(),
        ll(default.map(|a| a.to_string()).unwrap_or_default()),
    );
    let o = t.guest_run(
        &["cat", "/proc/sys/net/ipv6/conf/tap0/mtu"],
        Duration::from_secs(5),
    );
    v.insert("mtu6".into(), o.stdout.trim().to_string());
    if let Some(gw) = default {
        let _ = t.guest_run(
            &[
                "busybox",
                "ping",
                "-6",
                "-c",
                "1",
                "-W",
                "2",
                &format!("{gw}%tap0"),
            ],
            Duration::from_secs(10),
        );
        v.insert(
            "neigh6.router".into(),
            g.neighbor_mac(gw).unwrap_or_default(),
        );
    }
    for (name, msg_type) in [("dhcp6.solicit", 1), ("dhcp6.info", 11)] {
        let Some(opts) = dhcp6(t, msg_type) else {
            v.insert(name.into(), "no reply".into());
            continue;
        };
        for (code, hex) in &opts {
            let key = match code {
                // IA_NA: IAID, T1, T2, then IA addresses (and status).
                3 => {
                    let b: Vec<u8> = (0..hex.len() / 2)
                        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                        .collect();
                    let mut shown_ia = format!(
                        "t1={} t2={}",
                        u32::from_be_bytes(b[4..8].try_into().unwrap()),
                        u32::from_be_bytes(b[8..12].try_into().unwrap())
                    );
                    let mut o = &b[12..];
                    while o.len() >= 4 {
                        let (c, n) = (
                            u16::from_be_bytes([o[0], o[1]]),
                            usize::from(u16::from_be_bytes([o[2], o[3]])),
                        );
                        let d = &o[4..(4 + n).min(o.len())];
                        if c == 5 && d.len() >= 24 {
                            let a =
                                std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&d[..16]).unwrap());
                            shown_ia += &format!(
                                " addr={a} pref={} valid={}",
                                u32::from_be_bytes(d[16..20].try_into().unwrap()),
                                u32::from_be_bytes(d[20..24].try_into().unwrap())
                            );
                        } else {
                            shown_ia += &format!(" opt{c}");
                        }
                        o = &o[(4 + n).min(o.len())..];
                    }
                    v.insert(format!("{name}.ia_na"), shown_ia);
                    continue;
                }
                // The server's DUID is its MAC; the client's is echoed.
                1 | 2 => continue,
                c => format!("{name}.opt{c}"),
            };
            v.insert(key, hex.clone());
        }
    }
}
