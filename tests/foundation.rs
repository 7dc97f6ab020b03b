//! The foundation (issue 2) against the real binary and a real Linux guest
//! stack: slirp's DHCP view for every launch over every link, echo from the
//! virtual addresses, slirp's router MACs, the MTU option, a barrage of
//! malformed frames, STREAM framing errors and bad option combinations.

mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use support::frames::{self, slirp_mac, Target};
use support::{Helper, Lease, LinkMode, Topology, AIRLOCK};

/// What the guest must see for one launch (issue 2, section 5).
#[derive(Clone, Copy, Debug)]
struct View {
    args: &'static [&'static str],
    guest: Ipv4Addr,
    prefix: u8,
    router: Ipv4Addr,
    dns: Ipv4Addr,
}

const DEFAULT: View = View {
    args: &[],
    guest: Ipv4Addr::new(10, 0, 2, 15),
    prefix: 24,
    router: Ipv4Addr::new(10, 0, 2, 2),
    dns: Ipv4Addr::new(10, 0, 2, 3),
};
const LINK_LOCAL_NET: View = View {
    args: &["--net=169.254.0.0/16"],
    guest: Ipv4Addr::new(169, 254, 2, 15),
    prefix: 16,
    router: Ipv4Addr::new(169, 254, 2, 2),
    dns: Ipv4Addr::new(169, 254, 2, 3),
};
const LINK_LOCAL_ADDR: View = View {
    args: &["--net=169.254.2.15/16"],
    ..LINK_LOCAL_NET
};
const NET_AND_MASK: View = View {
    args: &["--net=192.168.100.0", "--mask=255.255.255.0"],
    guest: Ipv4Addr::new(192, 168, 100, 15),
    prefix: 24,
    router: Ipv4Addr::new(192, 168, 100, 2),
    dns: Ipv4Addr::new(192, 168, 100, 3),
};
const EXACT_GUEST: View = View {
    args: &["--net=10.7.0.9/16"],
    guest: Ipv4Addr::new(10, 7, 0, 9),
    prefix: 16,
    router: Ipv4Addr::new(10, 7, 2, 2),
    dns: Ipv4Addr::new(10, 7, 2, 3),
};

fn mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0))
}

/// Start airlock and wait until it holds the guest's tap0.
fn start(t: &Topology, mode: LinkMode, args: &[&str]) -> Helper {
    let mut a = Helper::airlock(t, mode, args);
    if let Err(e) = a.wait_ready(t, Duration::from_secs(5)) {
        panic!("airlock {mode:?} {args:?} did not come up: {e}");
    }
    a
}

/// Lease, or fail with everything udhcpc and airlock said.
fn lease(t: &Topology, a: &mut Helper) -> Lease {
    t.guest()
        .dhcp()
        .unwrap_or_else(|e| panic!("{e}\n{}", a.diagnose()))
}

/// The lease says exactly the view: no more, no less.
fn assert_lease(l: &Lease, v: &View, mtu: Option<u32>) {
    assert_eq!(l.ip, v.guest, "leased address; {l:?}");
    assert_eq!(l.prefix, v.prefix, "prefix; {l:?}");
    assert_eq!(l.subnet, Some(mask(v.prefix)), "option 1; {l:?}");
    assert_eq!(l.routers, [v.router], "option 3; {l:?}");
    assert_eq!(l.dns, [v.dns], "option 6; {l:?}");
    assert_eq!(l.server_id, Some(v.router), "option 54; {l:?}");
    assert!(l.lease_secs.is_some_and(|s| s > 0), "option 51; {l:?}");
    assert_eq!(l.mtu, mtu, "option 26; {l:?}");
    if let Some(s) = l.vars.get("siaddr") {
        assert_eq!(s, &v.router.to_string(), "siaddr; {l:?}");
    }
    // Nothing beyond the view (udhcpc's own `interface`, the message type
    // and siaddr aside).
    let got: BTreeSet<&str> = l
        .vars
        .keys()
        .map(String::as_str)
        .filter(|k| !["interface", "opt53", "siaddr"].contains(k))
        .collect();
    let mut want: BTreeSet<&str> = ["ip", "mask", "subnet", "router", "dns", "serverid", "lease"]
        .into_iter()
        .collect();
    if mtu.is_some() {
        want.insert("mtu");
    }
    assert_eq!(got, want, "the lease's options; {l:?}");
}

/// The guest applied the lease and reaches both virtual addresses, whose
/// MACs are slirp's.
fn assert_guest_view(t: &Topology, a: &mut Helper, v: &View, mtu: u32) {
    let g = t.guest();
    let addrs = g.addrs();
    assert!(
        addrs
            .iter()
            .any(|x| x.addr == IpAddr::V4(v.guest) && x.prefix == v.prefix),
        "ip addr: {addrs:?}"
    );
    assert_eq!(g.default_gateway4(), Some(IpAddr::V4(v.router)), "ip route");
    assert_eq!(g.mtu(), mtu, "tap0 MTU after the lease");
    for addr in [v.router, v.dns] {
        g.ping(addr)
            .unwrap_or_else(|e| panic!("{e}\n{}", a.diagnose()));
        assert_eq!(
            g.neighbor_mac(IpAddr::V4(addr)),
            Some(slirp_mac(addr)),
            "ip neigh for {addr}: {:?}",
            g.neighbors()
        );
    }
    assert!(a.is_running(), "{}", a.diagnose());
}

fn check_view(mode: LinkMode, v: View) {
    let t = Topology::new();
    let mut a = start(&t, mode, v.args);
    let l = lease(&t, &mut a);
    assert_lease(&l, &v, Some(65520));
    assert_guest_view(&t, &mut a, &v, 65520);
}

macro_rules! view_tests {
    ($($name:ident: $mode:expr, $view:expr;)*) => {
        $(#[test] fn $name() { check_view($mode, $view); })*
    };
}

view_tests! {
    lease_netns_default: LinkMode::Netns, DEFAULT;
    lease_netns_link_local_net: LinkMode::Netns, LINK_LOCAL_NET;
    lease_netns_link_local_addr: LinkMode::Netns, LINK_LOCAL_ADDR;
    lease_netns_net_and_mask: LinkMode::Netns, NET_AND_MASK;
    lease_netns_exact_guest: LinkMode::Netns, EXACT_GUEST;
    lease_dgram_default: LinkMode::Dgram, DEFAULT;
    lease_dgram_link_local_net: LinkMode::Dgram, LINK_LOCAL_NET;
    lease_dgram_link_local_addr: LinkMode::Dgram, LINK_LOCAL_ADDR;
    lease_dgram_net_and_mask: LinkMode::Dgram, NET_AND_MASK;
    lease_dgram_exact_guest: LinkMode::Dgram, EXACT_GUEST;
    lease_stream_default: LinkMode::Stream, DEFAULT;
    lease_stream_link_local_net: LinkMode::Stream, LINK_LOCAL_NET;
    lease_stream_link_local_addr: LinkMode::Stream, LINK_LOCAL_ADDR;
    lease_stream_net_and_mask: LinkMode::Stream, NET_AND_MASK;
    lease_stream_exact_guest: LinkMode::Stream, EXACT_GUEST;
}

/// ARP and echo on their own, for a guest configured by hand (no DHCP).
fn check_static(mode: LinkMode, v: View) {
    let t = Topology::new();
    let mut a = start(&t, mode, v.args);
    t.guest()
        .configure_static(v.guest, v.prefix, v.router, 1500);
    assert_guest_view(&t, &mut a, &v, 1500);
}

#[test]
fn static_guest_netns() {
    check_static(LinkMode::Netns, DEFAULT);
}

#[test]
fn static_guest_dgram() {
    check_static(LinkMode::Dgram, EXACT_GUEST);
}

#[test]
fn static_guest_stream() {
    check_static(LinkMode::Stream, NET_AND_MASK);
}

/// libvirt may also spell options `--opt value`.
#[test]
fn lease_netns_space_separated_options() {
    let v = View {
        args: &["--net", "192.168.100.0", "--mask", "255.255.255.0"],
        ..NET_AND_MASK
    };
    check_view(LinkMode::Netns, v);
}

/// With `--mtu 1500` the view is slirp's exactly: no option 26.
fn check_mtu_1500(mode: LinkMode) {
    let t = Topology::new();
    let mut a = start(&t, mode, &["--mtu", "1500"]);
    let l = lease(&t, &mut a);
    assert_lease(&l, &DEFAULT, None);
    assert_guest_view(&t, &mut a, &DEFAULT, 1500);
}

#[test]
fn mtu_1500_netns() {
    check_mtu_1500(LinkMode::Netns);
}

#[test]
fn mtu_1500_dgram() {
    check_mtu_1500(LinkMode::Dgram);
}

#[test]
fn mtu_1500_stream() {
    check_mtu_1500(LinkMode::Stream);
}

#[test]
fn mtu_9000_is_offered() {
    let t = Topology::new();
    let mut a = start(&t, LinkMode::Netns, &["--mtu=9000"]);
    let l = lease(&t, &mut a);
    assert_lease(&l, &DEFAULT, Some(9000));
    assert_guest_view(&t, &mut a, &DEFAULT, 9000);
}

/// Options 12, 15 and 119 carry `--hostname`, `--domainname`, `--dns-suffixes`.
#[test]
fn dhcp_offers_names() {
    let t = Topology::new();
    let mut a = start(
        &t,
        LinkMode::Netns,
        &[
            "--hostname=guest1",
            "--domainname=example.test",
            "--dns-suffixes=a.example.test,b.example.test",
        ],
    );
    let l = lease(&t, &mut a);
    assert_eq!(l.ip, DEFAULT.guest);
    assert_eq!(l.hostname.as_deref(), Some("guest1"), "{l:?}");
    assert_eq!(l.domain.as_deref(), Some("example.test"), "{l:?}");
    assert_eq!(l.search, ["a.example.test", "b.example.test"], "{l:?}");
}

/// A hostile guest's barrage: airlock stays up and DHCP and echo work
/// right after.
fn check_barrage(mode: LinkMode) {
    let t = Topology::new();
    let mut a = start(&t, mode, &["--debug"]);
    let g = t.guest();
    // A tap takes at most MTU 65521 (frames of 65535 bytes).
    g.configure_static(DEFAULT.guest, DEFAULT.prefix, DEFAULT.router, 65521);
    let target = Target {
        guest_mac: g.mac_bytes(),
        guest: DEFAULT.guest,
        router: DEFAULT.router,
        dns: DEFAULT.dns,
    };
    let mut recent: Vec<String> = Vec::new();
    let mut not_carried = Vec::new();
    let mut sent = 0;
    for (name, f) in frames::barrage(target) {
        if !mode.carries(f.len()) {
            // A tap cannot carry these; on STREAM they are framing errors
            // (tested below).
            not_carried.push(f.len());
            continue;
        }
        if let Err(e) = a.inject(&f) {
            panic!("injecting {name:?}: {e}\n{}", a.diagnose());
        }
        sent += 1;
        recent.push(name);
        if recent.len() > 16 {
            recent.remove(0);
        }
        if sent % 16 == 0 && !a.is_running() {
            panic!(
                "airlock died during the barrage, within these frames: {recent:?}\n{}",
                a.diagnose()
            );
        }
    }
    match mode {
        LinkMode::Dgram => assert!(not_carried.is_empty()),
        _ => {
            not_carried.sort();
            assert_eq!(not_carried, [0, 1, 13, 65536, 100_000]);
        }
    }
    assert!(sent > 300, "only {sent} frames sent");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        a.is_running(),
        "airlock died after the barrage; last frames {recent:?}\n{}",
        a.diagnose()
    );
    // ARP and echo still answer, then DHCP leases the same view.
    for addr in [DEFAULT.router, DEFAULT.dns] {
        g.ping(addr)
            .unwrap_or_else(|e| panic!("after the barrage: {e}\n{}", a.diagnose()));
    }
    let again = lease(&t, &mut a);
    assert_lease(&again, &DEFAULT, Some(65520));
    assert_guest_view(&t, &mut a, &DEFAULT, 65520);
    // Dropped frames were counted: --debug prints `reason: count` lines at exit.
    a.stop(Duration::from_secs(3));
    let log = a.log();
    let counted = log.lines().any(|l| {
        let l = l.trim();
        l.strip_prefix("airlock: ")
            .unwrap_or(l)
            .split_once(": ")
            .is_some_and(|(k, n)| {
                !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
                    && n.trim().parse::<u64>().is_ok_and(|n| n > 0)
            })
    });
    assert!(
        counted,
        "no drop counters (`reason: count`) at exit:\n{log}"
    );
}

#[test]
fn barrage_netns() {
    check_barrage(LinkMode::Netns);
}

#[test]
fn barrage_dgram() {
    check_barrage(LinkMode::Dgram);
}

#[test]
fn barrage_stream() {
    check_barrage(LinkMode::Stream);
}

/// A STREAM length outside 14..=65535 closes the link: airlock exits and
/// says why, naming the length.
fn check_framing_error(len: u32) {
    let t = Topology::new();
    let mut a = start(&t, LinkMode::Stream, &[]);
    let g = t.guest();
    g.configure_static(DEFAULT.guest, DEFAULT.prefix, DEFAULT.router, 1500);
    g.ping(DEFAULT.router)
        .unwrap_or_else(|e| panic!("the link works before the error: {e}\n{}", a.diagnose()));
    let mut bytes = len.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0x5a; 64]);
    a.inject_raw(&bytes).expect("write the forged header");
    if a.wait_exit(Duration::from_secs(5)).is_none() {
        panic!(
            "airlock still runs after a frame length of {len}\n{}",
            a.diagnose()
        );
    }
    let log = a.log();
    let line = log.lines().find(|l| {
        let l = l.to_ascii_lowercase();
        (l.contains("fram") || l.contains("length")) && l.contains(&len.to_string())
    });
    assert!(
        line.is_some(),
        "no log line names the framing error and the length {len}:\n{log}"
    );
}

#[test]
fn stream_framing_error_short() {
    check_framing_error(5);
}

#[test]
fn stream_framing_error_long() {
    check_framing_error(70000);
}

/// Bad combinations stop startup: exit status 2, one line naming the option.
#[test]
fn bad_options_exit_2_naming_the_option() {
    let t = Topology::new();
    let netns = t.guest_netns_path().to_string_lossy().into_owned();
    let cases: &[(&[&str], &[&str])] = &[
        (&["--net=10.0.2.0/31"], &["--net"]),
        (&["--net=banana/24"], &["--net"]),
        (&["--net=10.0.2.0/abc"], &["--net"]),
        (&["--net=10.0.2.0/24", "--mask=255.255.255.0"], &["--mask"]),
        (&["--mask=255.255.255.0"], &["--mask"]),
        (&["--net=10.0.2.0", "--mask=255.0.255.0"], &["--mask"]),
        (&["--host=10.0.3.2"], &["--host"]),
        (&["--host=10.0.2.0"], &["--host"]),
        (&["--dns=192.168.1.1"], &["--dns"]),
        (&["--dhcp-start=10.0.2.2"], &["--dhcp-start"]),
        (&["--dhcp-start=10.0.2.3"], &["--dhcp-start"]),
        (&["--dhcp-start=10.0.9.15"], &["--dhcp-start"]),
        (&["--host=10.0.2.15"], &["--host", "--dhcp-start"]),
        (&["--dns=10.0.2.15"], &["--dns", "--dhcp-start"]),
        (&["--mtu", "575"], &["--mtu"]),
        (&["--mtu=65521"], &["--mtu"]),
    ];
    let mut failures = Vec::new();
    for (args, names) in cases {
        let mut argv = vec![AIRLOCK, "--netns", &netns];
        argv.extend_from_slice(args);
        let o = t.host_run(&argv, Duration::from_secs(5));
        let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let ok = o.status.and_then(|s| s.code()) == Some(2)
            && lines.len() == 1
            && names.iter().any(|n| lines[0].contains(n));
        if !ok {
            failures.push(format!("{args:?} (want {names:?}): {}", o.describe()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `--fd`, `--runas`, `--log-file` and negative numbers are usage errors
/// found before the link opens: exit 2, one `error:` line naming the option.
/// (`--fd 3` used to claim the logger's own descriptor and exit silently.)
#[test]
fn lifecycle_options_exit_2_naming_the_option() {
    let t = Topology::new();
    let netns = t.guest_netns_path().to_string_lossy().into_owned();
    let with_netns = format!("{AIRLOCK} --netns {netns}");
    let cases: Vec<(String, &str)> = vec![
        (format!("{AIRLOCK} --fd 1"), "--fd 1"),
        (format!("{AIRLOCK} --fd 0 </dev/null"), "--fd 0"),
        (format!("exec 3<&-; {AIRLOCK} --fd 3"), "--fd 3"),
        (format!("{AIRLOCK} --fd 7 7</dev/null"), "--fd 7"),
        (format!("{with_netns} --udp-timeout -1"), "--udp-timeout"),
        (
            format!("{with_netns} --log-file /nonexistent/x"),
            "--log-file",
        ),
        (format!("{with_netns} --runas no-such-user-here"), "--runas"),
    ];
    let mut failures = Vec::new();
    for (script, name) in &cases {
        let o = t.host_run(&["sh", "-c", script], Duration::from_secs(5));
        let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let ok = o.status.and_then(|s| s.code()) == Some(2)
            && lines.len() == 1
            && lines[0].starts_with("airlock: error: ")
            && lines[0].contains(name)
            && !lines[0].contains("dropping privileges: dropping privileges");
        if !ok {
            failures.push(format!("{script} (want {name}): {}", o.describe()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
