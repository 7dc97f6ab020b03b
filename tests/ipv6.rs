//! IPv6 (issue 5) against the real binary and a real Linux guest stack: the
//! guest autoconfigures by SLAAC from airlock's router advertisements,
//! routes via the router's link-local address, resolves slirp's MAC, keeps
//! its duplicate address detection, leases by DHCPv6 (ISC `dhclient -6`:
//! stateful, rapid commit, stateless), pings the virtual addresses, and
//! carries TCP to the host's `::1`. `--disable-ipv6` and `--disable-ipv4`
//! each keep the other family silent on the wire.
//!
//! RA fields are read with a parser of this file's own, independent of
//! airlock's wire code.

mod support;

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, Instant};
use support::frames::{format_mac, ETH_ARP, ETH_IPV4, ETH_IPV6};
use support::process::Daemon;
use support::relay::PacketSocket;
use support::{Helper, LinkMode, Topology};

const ROUTER_MAC: &str = "52:56:00:00:00:02";
const HOST: Ipv6Addr = Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 2);
const DNS: Ipv6Addr = Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 3);
const GUEST_LEASE: Ipv6Addr = Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0x15);
const ROUTER_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

fn start(t: &Topology, args: &[&str]) -> Helper {
    let mut a = Helper::airlock(t, LinkMode::Netns, args);
    if let Err(e) = a.wait_ready(t, Duration::from_secs(5)) {
        panic!("airlock {args:?} did not come up: {e}");
    }
    a
}

/// One IPv6 address of tap0 with its flags (`ip -j -6 addr`).
#[derive(Debug, Clone)]
struct Addr6 {
    addr: Ipv6Addr,
    prefix: u8,
    tentative: bool,
    dadfailed: bool,
}

fn addrs6(t: &Topology) -> Vec<Addr6> {
    let o = t.guest_run(
        &["ip", "-j", "-6", "addr", "show", "dev", "tap0"],
        Duration::from_secs(10),
    );
    assert!(o.success(), "ip addr: {}", o.describe());
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("ip -j output");
    let mut out = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            let (Some(local), Some(p)) = (a["local"].as_str(), a["prefixlen"].as_u64()) else {
                continue;
            };
            let Ok(addr) = local.parse() else { continue };
            out.push(Addr6 {
                addr,
                prefix: p as u8,
                tentative: a["tentative"].as_bool().unwrap_or(false),
                dadfailed: a["dadfailed"].as_bool().unwrap_or(false),
            });
        }
    }
    out
}

fn in_fec0_64(a: Ipv6Addr) -> bool {
    a.segments()[..4] == [0xfec0, 0, 0, 0]
}

/// Wait for `pred` over tap0's IPv6 addresses; the error lists them.
fn wait_addrs(
    t: &Topology,
    a: &mut Helper,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&[Addr6]) -> bool,
) -> Vec<Addr6> {
    let end = Instant::now() + timeout;
    loop {
        let now = addrs6(t);
        if pred(&now) {
            return now;
        }
        if Instant::now() >= end {
            panic!("{what}: tap0 has {now:?}\n{}", a.diagnose());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The guest's SLAAC address in fec0::/64, once DAD has passed.
fn wait_slaac(t: &Topology, a: &mut Helper) -> Ipv6Addr {
    let ok = |x: &Addr6| in_fec0_64(x.addr) && x.addr != GUEST_LEASE && x.prefix == 64;
    let got = wait_addrs(t, a, Duration::from_secs(15), "no SLAAC address", |v| {
        v.iter().any(|x| ok(x) && !x.tentative) && v.iter().all(|x| !x.tentative && !x.dadfailed)
    });
    got.iter()
        .find(|x| ok(x))
        .map(|x| x.addr)
        .expect("found above")
}

fn ping6(t: &Topology, addr: &str) -> Result<(), String> {
    let o = t.guest_run(
        &["busybox", "ping", "-6", "-c", "1", "-W", "3", addr],
        Duration::from_secs(10),
    );
    if o.success() {
        Ok(())
    } else {
        Err(format!("ping -6 {addr}: {}", o.describe()))
    }
}

#[test]
fn slaac_default_route_neighbour_echo_and_dad() {
    let t = Topology::new();
    t.guest().accept_ra(true);
    let mut a = start(&t, &[]);
    let g = t.guest();
    let mine = wait_slaac(&t, &mut a);
    // The guest's own (EUI-64) address passed DAD: airlock left it alone.
    let mac = g.mac_bytes();
    let eui = Ipv6Addr::new(
        0xfec0,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 2, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    );
    assert_eq!(mine, eui, "SLAAC from fec0::/64 and tap0's MAC");

    // Default route via the router's link-local address.
    let routes = g.routes6();
    let default = routes
        .iter()
        .find(|r| r.dst == "default")
        .unwrap_or_else(|| panic!("no IPv6 default route: {routes:?}\n{}", a.diagnose()));
    assert_eq!(default.gateway, Some(IpAddr::V6(ROUTER_LL)), "{routes:?}");
    assert_eq!(default.dev.as_deref(), Some("tap0"));
    assert!(
        routes.iter().any(|r| r.dst == "fec0::/64"),
        "on-link prefix route: {routes:?}"
    );

    // Echo from the virtual addresses, and slirp's MAC in the neighbour table.
    for addr in ["fec0::2", "fec0::3", "fe80::2%tap0"] {
        ping6(&t, addr).unwrap_or_else(|e| panic!("{e}\n{}", a.diagnose()));
    }
    assert_eq!(
        g.neighbor_mac(IpAddr::V6(HOST)).as_deref(),
        Some(ROUTER_MAC),
        "{:?}",
        g.neighbors()
    );
    assert_eq!(
        g.neighbor_mac(IpAddr::V6(DNS)).as_deref(),
        Some("52:56:00:00:00:03")
    );
    // Nothing answers for addresses that are not virtual.
    assert!(
        ping6(&t, "fd00::1").is_err(),
        "echo off the virtual network"
    );

    // DAD: the DHCPv6 address stays the guest's; the host's is defended.
    for (addr, conflict) in [("fec0::15/64", false), ("fec0::2/64", true)] {
        let o = g.run(
            &["ip", "-6", "addr", "add", addr, "dev", "tap0"],
            Duration::from_secs(10),
        );
        assert!(o.success(), "{}", o.describe());
        let ip: Ipv6Addr = addr.split('/').next().unwrap().parse().unwrap();
        let got = wait_addrs(&t, &mut a, Duration::from_secs(10), "DAD", |v| {
            v.iter()
                .any(|x| x.addr == ip && (x.dadfailed || !x.tentative))
        });
        let x = got.iter().find(|x| x.addr == ip).unwrap();
        assert_eq!(x.dadfailed, conflict, "DAD of {addr}: {got:?}");
    }
    assert!(a.is_running(), "{}", a.diagnose());
}

/// A parsed router advertisement (this file's own parser).
#[derive(Debug, Default)]
struct Ra {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Option<Ipv6Addr>,
    dst: Option<Ipv6Addr>,
    ip_hop_limit: u8,
    cur_hop_limit: u8,
    flags: u8,
    lifetime: u16,
    slla: Option<[u8; 6]>,
    mtu: Option<u32>,
    prefix: Option<(Ipv6Addr, u8, u8, u32, u32)>,
    rdnss: Vec<Ipv6Addr>,
    dnssl: Vec<String>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn addr_at(b: &[u8], at: usize) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(&b[at..at + 16]).unwrap())
}

/// An RA without extension headers, or `None`.
fn parse_ra(f: &[u8]) -> Option<Ra> {
    if f.len() < 14 + 40 + 16 || be16(f, 12) != ETH_IPV6 || f[14 + 6] != 58 || f[54] != 134 {
        return None;
    }
    let plen = usize::from(be16(f, 18));
    let icmp = f.get(54..54 + plen)?;
    let mut ra = Ra {
        dst_mac: f[0..6].try_into().unwrap(),
        src_mac: f[6..12].try_into().unwrap(),
        src: Some(addr_at(f, 22)),
        dst: Some(addr_at(f, 38)),
        ip_hop_limit: f[21],
        cur_hop_limit: icmp[4],
        flags: icmp[5],
        lifetime: be16(icmp, 6),
        ..Ra::default()
    };
    let mut o = &icmp[16..];
    while o.len() >= 8 {
        let len = usize::from(o[1]) * 8;
        if len == 0 || len > o.len() {
            return None;
        }
        let opt = &o[..len];
        match opt[0] {
            1 => ra.slla = Some(opt[2..8].try_into().unwrap()),
            3 => ra.prefix = Some((addr_at(opt, 16), opt[2], opt[3], be32(opt, 4), be32(opt, 8))),
            5 => ra.mtu = Some(be32(opt, 4)),
            25 => ra.rdnss = opt[8..].chunks(16).map(|c| addr_at(c, 0)).collect(),
            31 => {
                let mut rest = &opt[8..];
                let mut name = Vec::new();
                while let Some((&n, tail)) = rest.split_first() {
                    if n == 0 {
                        if !name.is_empty() {
                            ra.dnssl.push(name.join("."));
                        }
                        name.clear();
                        rest = tail;
                        continue;
                    }
                    let n = usize::from(n);
                    name.push(String::from_utf8_lossy(&tail[..n]).into_owned());
                    rest = &tail[n..];
                }
            }
            _ => {}
        }
        o = &o[len..];
    }
    Some(ra)
}

/// A router solicitation from the guest's link-local address, sent through
/// the guest kernel (python3, raw ICMPv6 socket, hop limit 255).
fn send_router_solicit(t: &Topology) {
    let py = "import socket\n\
        i=socket.if_nametoindex('tap0')\n\
        s=socket.socket(socket.AF_INET6,socket.SOCK_RAW,socket.IPPROTO_ICMPV6)\n\
        s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_MULTICAST_HOPS,255)\n\
        s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_MULTICAST_IF,i)\n\
        s.sendto(bytes([133,0,0,0,0,0,0,0]),('ff02::2',0,0,i))\n";
    let o = t.guest_run(&["python3", "-c", py], Duration::from_secs(10));
    assert!(o.success(), "{}", o.describe());
}

/// The next RA on `cap` that `pred` accepts, with when it came.
fn next_ra(
    cap: &PacketSocket,
    until: Instant,
    mut pred: impl FnMut(&Ra) -> bool,
) -> Option<(Instant, Ra)> {
    while let Some(f) = cap.recv(until.saturating_duration_since(Instant::now())) {
        if let Some(ra) = parse_ra(&f).filter(|ra| pred(ra)) {
            return Some((Instant::now(), ra));
        }
    }
    None
}

#[test]
fn router_advertisements_carry_options_and_repeat() {
    let t = Topology::new();
    t.guest().accept_ra(true);
    let cap = PacketSocket::open(t.guest_ns(), "tap0", true).expect("capture on tap0");
    let mut a = start(&t, &["--mtu", "1400", "--dns-suffixes", "example.org,test"]);
    let started = Instant::now();
    let multicast = |ra: &Ra| ra.dst_mac == ALL_NODES_MAC;
    // The RA at start.
    let (first_at, first) = next_ra(&cap, started + Duration::from_secs(3), multicast)
        .unwrap_or_else(|| panic!("no RA at start\n{}", a.diagnose()));
    // A solicitation with a source gets a unicast answer.
    wait_slaac(&t, &mut a);
    let mac = t.guest().mac_bytes();
    // A loaded machine may lose the capture's first look: ask up to 3 times.
    let solicited = (0..3)
        .find_map(|_| {
            send_router_solicit(&t);
            next_ra(&cap, Instant::now() + Duration::from_secs(2), |ra| {
                ra.dst_mac == mac
            })
        })
        .map(|(_, ra)| ra)
        .unwrap_or_else(|| panic!("no RA in answer to an RS\n{}", a.diagnose()));
    assert!(
        solicited.dst.is_some_and(|d| d.segments()[0] == 0xfe80),
        "{solicited:?}"
    );
    // The second unsolicited RA, MAX_INITIAL_RTR_ADVERT_INTERVAL (16 s) on.
    let (second_at, second) = next_ra(&cap, first_at + Duration::from_secs(20), multicast)
        .unwrap_or_else(|| panic!("no second unsolicited RA\n{}", a.diagnose()));
    let gap = second_at - first_at;
    assert!(
        (Duration::from_secs(15)..=Duration::from_secs(17)).contains(&gap),
        "second RA after {gap:?}"
    );
    for ra in [&first, &second, &solicited] {
        assert_eq!(format_mac(&ra.src_mac), ROUTER_MAC);
        assert_eq!(ra.src, Some(ROUTER_LL));
        assert_eq!(ra.ip_hop_limit, 255);
        assert_eq!(ra.cur_hop_limit, 64);
        assert_eq!(ra.flags & 0xc0, 0xc0, "M and O");
        assert_eq!(ra.lifetime, 1800);
        assert_eq!(ra.slla.map(|m| format_mac(&m)).as_deref(), Some(ROUTER_MAC));
        assert_eq!(ra.mtu, Some(1400));
        let (p, len, flags, valid, preferred) = ra.prefix.expect("prefix information");
        assert_eq!((p, len), ("fec0::".parse().unwrap(), 64));
        assert_eq!(flags & 0xc0, 0xc0, "on-link and autonomous");
        assert!(valid >= preferred && preferred > 0);
        assert_eq!(ra.rdnss, [DNS]);
        assert_eq!(ra.dnssl, ["example.org", "test"]);
    }
    assert_eq!(first.dst, Some("ff02::1".parse().unwrap()));
    // The guest took the MTU.
    let o = t.guest_run(
        &["cat", "/proc/sys/net/ipv6/conf/tap0/mtu"],
        Duration::from_secs(5),
    );
    assert_eq!(o.stdout.trim(), "1400", "{}", o.describe());
    assert!(a.is_running(), "{}", a.diagnose());
}

/// Writes a dhclient script that records each event's variables.
fn dhclient_files(dir: &Path) -> (String, String) {
    std::fs::create_dir_all(dir).unwrap();
    let script = dir.join("script");
    std::fs::write(
        &script,
        "#!/bin/sh\nenv | grep -E '^(reason|new_)' | sort > \"$OUT_DIR/$reason\"\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let conf = dir.join("rapid.conf");
    std::fs::write(&conf, "send dhcp6.rapid-commit;\n").unwrap();
    (
        script.to_string_lossy().into_owned(),
        conf.to_string_lossy().into_owned(),
    )
}

/// Runs `dhclient -6 -1 -v` with `extra` options; returns its log and the
/// variables its script saw for `reason`.
fn dhclient(
    t: &Topology,
    a: &mut Helper,
    name: &str,
    extra: &[&str],
    reason: &str,
) -> (String, String) {
    if std::process::Command::new("dhclient")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("the DHCPv6 tests need ISC dhclient: apt-get install isc-dhcp-client");
    }
    let dir = t.dir().join(name);
    let (script, _) = dhclient_files(&dir);
    let d = dir.to_string_lossy().into_owned();
    let (lf, pf, out) = (
        format!("{d}/leases"),
        format!("{d}/pid"),
        format!("OUT_DIR={d}"),
    );
    let mut argv = vec!["dhclient", "-6", "-1", "-v", "-e", &out, "-sf", &script];
    argv.extend_from_slice(extra);
    argv.extend(["-lf", &lf, "-pf", &pf, "tap0"]);
    let o = t.guest_run(&argv, Duration::from_secs(30));
    // dhclient forks into the background once bound: stop it.
    if let Ok(pid) = std::fs::read_to_string(&pf) {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    let vars = std::fs::read_to_string(dir.join(reason)).unwrap_or_else(|_| {
        panic!(
            "dhclient {extra:?}: no {reason} event: {}\n{}",
            o.describe(),
            a.diagnose()
        )
    });
    (format!("{}{}", o.stdout, o.stderr), vars)
}

#[test]
fn dhcpv6_stateful_rapid_commit_and_stateless() {
    let t = Topology::new();
    t.guest().accept_ra(true);
    let mut a = start(&t, &["--dns-suffixes", "example.org"]);
    wait_slaac(&t, &mut a);
    let server_id = "new_dhcp6_server_id=0:3:0:1:52:56:0:0:0:2";

    // Stateful: Solicit, Advertise, Request, Reply.
    let (log, vars) = dhclient(&t, &mut a, "stateful", &[], "BOUND6");
    assert!(
        vars.contains(&format!("new_ip6_address={GUEST_LEASE}\n")),
        "{vars}"
    );
    assert!(vars.contains("new_dhcp6_name_servers=fec0::3\n"), "{vars}");
    assert!(
        vars.contains("new_dhcp6_domain_search=example.org.\n"),
        "{vars}"
    );
    assert!(vars.contains(server_id), "{vars}");
    assert!(vars.contains("new_max_life=86400\n"), "{vars}");
    assert!(
        log.contains("RCV: Advertise message") && log.contains("XMT: Request"),
        "{log}"
    );

    // Rapid commit: Solicit, Reply.
    let conf = t.dir().join("rapid").join("rapid.conf");
    let conf = conf.to_string_lossy().into_owned();
    let (log, vars) = dhclient(&t, &mut a, "rapid", &["-cf", &conf], "BOUND6");
    assert!(
        vars.contains(&format!("new_ip6_address={GUEST_LEASE}\n")),
        "{vars}"
    );
    assert!(log.contains("RCV: Reply message"), "{log}");
    assert!(
        !log.contains("Advertise") && !log.contains("XMT: Request"),
        "rapid commit skips Advertise/Request: {log}"
    );

    // Stateless: Information-Request, Reply with DNS and search list.
    let (_, vars) = dhclient(&t, &mut a, "stateless", &["-S"], "RENEW6");
    assert!(vars.contains("new_dhcp6_name_servers=fec0::3\n"), "{vars}");
    assert!(
        vars.contains("new_dhcp6_domain_search=example.org.\n"),
        "{vars}"
    );
    assert!(!vars.contains("new_ip6_address"), "{vars}");
    assert!(a.is_running(), "{}", a.diagnose());
}

fn sha256(path: &Path) -> String {
    let o = support::process::run_argv(
        &["sha256sum", &path.to_string_lossy()],
        Duration::from_secs(30),
    );
    assert!(o.success(), "{}", o.describe());
    o.stdout.split_whitespace().next().unwrap_or("").to_string()
}

#[test]
fn tcp_over_ipv6_reaches_host_loopback() {
    let t = Topology::new();
    t.guest().accept_ra(true);
    let mut a = start(&t, &["--hostfwd", "tcp:[::1]:18126-:8127"]);
    wait_slaac(&t, &mut a);
    let www = t.dir().join("www");
    std::fs::create_dir_all(&www).unwrap();
    // 3 MiB of varied bytes, so any reordering or loss shows in the hash.
    let mut data = vec![0u8; 3 << 20];
    airlock::rng::Rng::new(0x243f_6a88_85a3_08d3).fill(&mut data);
    std::fs::write(www.join("file"), &data).unwrap();
    let port = "8126";
    let dir = www.to_string_lossy().into_owned();
    let mut server = t.host_cmd(&[
        "python3",
        "-m",
        "http.server",
        "--bind",
        "::1",
        port,
        "--directory",
        &dir,
    ]);
    let _server = Daemon::spawn("http6", &mut server, &t.dir().join("http6.log"));
    let got = t.dir().join("got");
    let url = format!("http://[{HOST}]:{port}/file");
    let g = got.to_string_lossy().into_owned();
    let mut last = None;
    for _ in 0..50 {
        let _ = std::fs::remove_file(&got);
        let o = t.guest_run(
            &["busybox", "wget", "-q", "-O", &g, &url],
            Duration::from_secs(30),
        );
        if o.success() {
            last = None;
            break;
        }
        last = Some(o.describe());
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Some(e) = last {
        panic!("wget {url}: {e}\n{}", a.diagnose());
    }
    assert_eq!(sha256(&got), sha256(&www.join("file")));

    // An IPv6 forward: host [::1]:18126 reaches the guest's port 8127 on the
    // address it autoconfigured, and the guest sees the virtual host.
    let mut guest_server = t.guest_cmd(&[
        "python3",
        "-c",
        "import socket\n\
         s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('::', 8127)); s.listen(1); s.settimeout(20)\n\
         c, a = s.accept(); c.sendall(('peer ' + a[0] + '\\n').encode()); c.close()",
    ]);
    let _gs = Daemon::spawn("guest6", &mut guest_server, &t.dir().join("guest6.log"));
    let mut reply = String::new();
    for _ in 0..50 {
        let o = t.host_run(
            &[
                "python3",
                "-c",
                "import socket; print(socket.create_connection(('::1', 18126), timeout=5).recv(100).decode(), end='')",
            ],
            Duration::from_secs(10),
        );
        if o.success() && o.stdout.starts_with("peer") {
            reply = o.stdout.clone();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(reply.trim(), format!("peer {HOST}"), "{}", a.diagnose());
    assert!(a.is_running(), "{}", a.diagnose());
}

/// Frames on tap0 not sent by the guest itself, for `window`.
fn frames_from_airlock(cap: &PacketSocket, guest_mac: [u8; 6], window: Duration) -> Vec<Vec<u8>> {
    let end = Instant::now() + window;
    let mut out = Vec::new();
    while let Some(f) = cap.recv(end.saturating_duration_since(Instant::now())) {
        if f.len() >= 14 && f[6..12] != guest_mac {
            out.push(f);
        }
    }
    out
}

fn ethertype(f: &[u8]) -> u16 {
    be16(f, 12)
}

/// A DHCPv6 Information-Request from the guest's link-local address, over
/// the guest kernel's UDP (python3, port 546 to ff02::1:2).
fn send_info_request(t: &Topology) {
    let py = "import socket\n\
        s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n\
        s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_MULTICAST_IF,socket.if_nametoindex('tap0'))\n\
        s.sendto(bytes.fromhex('0b123456 0001000a00030001525400123456'.replace(' ','')),('ff02::1:2',547,0,socket.if_nametoindex('tap0')))\n";
    let o = t.guest_run(&["python3", "-c", py], Duration::from_secs(10));
    assert!(o.success(), "{}", o.describe());
}

#[test]
fn disable_ipv6_keeps_ipv6_silent() {
    let t = Topology::new();
    t.guest().accept_ra(true);
    let cap = PacketSocket::open(t.guest_ns(), "tap0", true).expect("capture on tap0");
    let mut a = start(&t, &["--disable-ipv6"]);
    let g = t.guest();
    let mac = g.mac_bytes();
    // Everything that would draw an IPv6 answer: the kernel's RS and DAD,
    // echo (and so NS) to the virtual addresses, DHCPv6.
    std::thread::sleep(Duration::from_secs(2));
    let _ = ping6(&t, "fe80::2%tap0");
    let _ = g.run(
        &["ip", "-6", "addr", "add", "fec0::9/64", "dev", "tap0"],
        Duration::from_secs(5),
    );
    std::thread::sleep(Duration::from_secs(2));
    let _ = ping6(&t, "fec0::2");
    send_info_request(&t);
    // IPv4 still works, so airlock is alive and talking.
    g.dhcp().unwrap_or_else(|e| panic!("{e}\n{}", a.diagnose()));
    let seen = frames_from_airlock(&cap, mac, Duration::from_secs(1));
    let v6: Vec<_> = seen.iter().filter(|f| ethertype(f) == ETH_IPV6).collect();
    assert!(
        v6.is_empty(),
        "IPv6 from airlock with --disable-ipv6: {v6:02x?}"
    );
    assert!(
        seen.iter().any(|f| ethertype(f) == ETH_IPV4),
        "no IPv4 either: is the capture working?"
    );
    assert!(
        !addrs6(&t)
            .iter()
            .any(|x| in_fec0_64(x.addr) && x.addr.segments()[7] != 9),
        "no SLAAC without RAs"
    );
    assert!(a.is_running(), "{}", a.diagnose());
}

#[test]
fn disable_ipv4_keeps_ipv4_silent() {
    let t = Topology::new();
    t.guest().accept_ra(true);
    let cap = PacketSocket::open(t.guest_ns(), "tap0", true).expect("capture on tap0");
    let mut a = start(&t, &["--disable-ipv4"]);
    let g = t.guest();
    let mac = g.mac_bytes();
    // DHCP, ARP, echo: nothing answers.
    let o = g.dhcp_with(&support::guest::Udhcpc {
        tries: 2,
        interval_s: 1,
        timeout: Duration::from_secs(8),
        ..Default::default()
    });
    assert!(o.is_err(), "a DHCPv4 lease with --disable-ipv4: {o:?}");
    g.configure_static(
        "10.0.2.15".parse().unwrap(),
        24,
        "10.0.2.2".parse().unwrap(),
        1500,
    );
    assert!(g.ping_n("10.0.2.2", 2, 1).is_err(), "IPv4 echo answered");
    // IPv6 works, so airlock is alive and talking.
    wait_slaac(&t, &mut a);
    ping6(&t, "fec0::2").unwrap_or_else(|e| panic!("{e}\n{}", a.diagnose()));
    let seen = frames_from_airlock(&cap, mac, Duration::from_secs(1));
    let v4: Vec<_> = seen
        .iter()
        .filter(|f| matches!(ethertype(f), ETH_IPV4 | ETH_ARP))
        .collect();
    assert!(
        v4.is_empty(),
        "IPv4/ARP from airlock with --disable-ipv4: {v4:02x?}"
    );
    assert!(
        seen.iter().any(|f| ethertype(f) == ETH_IPV6),
        "no IPv6 either: is the capture working?"
    );
    assert!(a.is_running(), "{}", a.diagnose());
}
