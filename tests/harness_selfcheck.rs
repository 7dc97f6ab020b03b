//! The harness checked on its own, independent of airlock: the topology is
//! a dead end, the relay carries frames both ways in both framings, the
//! packet socket injects and captures, and a known-good helper (Debian's
//! passt, STREAM framing) leases, answers ping and survives the barrage
//! through it. If these fail, fix the harness before blaming airlock.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::time::Duration;
use support::frames::{self, Target};
use support::relay::{Framing, PacketSocket, Relay};
use support::{Helper, LinkMode, Topology};

const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);

fn passt(topo: &Topology, extra: &[&str]) -> Helper {
    let mut argv = vec![
        "passt",
        "-f",
        "-q",
        "--fd",
        "{fd}",
        "-a",
        "10.0.2.15",
        "-n",
        "24",
        "-g",
        "10.0.2.2",
        "-D",
        "10.0.2.3",
    ];
    argv.extend_from_slice(extra);
    // This passt sends the guest's echo requests to the gateway address
    // as they are (it maps only TCP and UDP to loopback): give the host
    // namespace that address so the echo path can be checked end to end.
    let o = t_host_addr(topo);
    assert!(o.success(), "{}", o.describe());
    let mut h = Helper::spawn(topo, "passt", LinkMode::Stream, &argv);
    h.wait_ready(topo, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    h
}

fn t_host_addr(topo: &Topology) -> support::process::Outcome {
    topo.host_run(
        &["ip", "addr", "add", "10.0.2.2/32", "dev", "lo"],
        Duration::from_secs(5),
    )
}

#[test]
fn topology_is_a_dead_end() {
    let t = Topology::new();
    // The guest has lo and tap0 and nothing else.
    let o = t.guest_run(&["ip", "-o", "link"], Duration::from_secs(5));
    let names: Vec<&str> = o
        .stdout
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(str::trim))
        .collect();
    assert_eq!(names, ["lo", "tap0"], "{}", o.stdout);
    // The host's only way out is the dead-end veth.
    let o = t.host_run(&["ip", "-4", "route"], Duration::from_secs(5));
    assert!(
        o.stdout.contains("default via 192.0.2.1 dev up0"),
        "{}",
        o.stdout
    );
    let o = t.host_run(&["ip", "-6", "route"], Duration::from_secs(5));
    assert!(
        o.stdout.contains("default via fd00::1 dev up0"),
        "{}",
        o.stdout
    );
    let o = t.host_run(
        &["busybox", "ping", "-c", "1", "-W", "1", "198.51.100.1"],
        Duration::from_secs(5),
    );
    assert!(!o.success(), "the dead end answered: {}", o.describe());
    let o = t.host_run(
        &["sysctl", "-n", "net.ipv4.ping_group_range"],
        Duration::from_secs(5),
    );
    assert_eq!(
        o.stdout.split_whitespace().collect::<Vec<_>>(),
        ["0", "2147483647"]
    );
    let o = t.host_run(&["cat", "/etc/resolv.conf"], Duration::from_secs(5));
    assert_eq!(o.stdout, "nameserver 127.0.0.1\n");
    let (g, h) = (t.guest_ns().to_string(), t.host_ns().to_string());
    drop(t);
    let o = support::process::run_argv(&["ip", "netns", "list"], Duration::from_secs(5));
    for ns in [g, h] {
        assert!(
            !o.stdout.contains(&ns),
            "{ns} survived teardown: {}",
            o.stdout
        );
    }
}

fn relay_round_trip(framing: Framing) {
    let t = Topology::new();
    let (relay, helper_end) = Relay::start(t.guest_ns(), framing).expect("relay");
    let inj = PacketSocket::open(t.guest_ns(), "tap0", false).expect("injector");
    let cap = PacketSocket::open(t.guest_ns(), "tap0", true).expect("capture");
    let mac = t.guest().mac_bytes();
    let peer = [0x52, 0x55, 1, 2, 3, 4];

    // Guest → helper: what the guest sends arrives framed on the helper's end.
    let out = frames::ethernet(peer, mac, 0x88b5, &[0xa5; 100]);
    inj.send(&out).expect("send from the guest");
    let fd = helper_end.as_raw_fd();
    // The guest kernel sends its own frames too (IPv6 router solicitations,
    // MLD reports): read frames until ours.
    let got = read_until_ours(fd, framing);
    assert_eq!(got, out);

    // Helper → guest: two frames in one write on STREAM, split correctly.
    let a = frames::ethernet(mac, peer, 0x88b5, &[1; 60]);
    let b = frames::ethernet(mac, peer, 0x88b5, &[2; 1400]);
    let mut wire = Vec::new();
    for f in [&a, &b] {
        match framing {
            Framing::Dgram => {
                nix::sys::socket::send(fd, f, nix::sys::socket::MsgFlags::empty()).unwrap();
            }
            Framing::Stream => {
                wire.extend_from_slice(&(f.len() as u32).to_be_bytes());
                wire.extend_from_slice(f);
            }
        }
    }
    if framing == Framing::Stream {
        nix::sys::socket::send(fd, &wire, nix::sys::socket::MsgFlags::empty()).unwrap();
    }
    for want in [&a, &b] {
        let f = cap
            .recv_until(Duration::from_secs(3), |f| {
                f[..6] == mac && f[12..14] == [0x88, 0xb5]
            })
            .unwrap_or_else(|| panic!("frame of {} bytes never reached tap0", want.len()));
        assert_eq!(&f, want);
    }

    // Injection through the relay reaches the helper's end too.
    relay.inject(&out).unwrap();
    assert_eq!(read_until_ours(fd, framing), out);
}

fn recv(fd: i32, buf: &mut [u8]) -> usize {
    nix::sys::socket::recv(fd, buf, nix::sys::socket::MsgFlags::empty()).expect("helper end reads")
}

/// Frames from the helper's end of the socket until one of ethertype 0x88b5.
fn read_until_ours(fd: i32, framing: Framing) -> Vec<u8> {
    let mut buf = vec![0u8; 70000];
    let mut have = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        assert!(std::time::Instant::now() < deadline, "our frame never came");
        let frame = match framing {
            Framing::Dgram => {
                let n = recv(fd, &mut buf);
                buf[..n].to_vec()
            }
            Framing::Stream => {
                let len = if have >= 4 {
                    u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize
                } else {
                    usize::MAX
                };
                if len == usize::MAX || have < 4 + len {
                    have += recv(fd, &mut buf[have..]);
                    continue;
                }
                let f = buf[4..4 + len].to_vec();
                buf.copy_within(4 + len..have, 0);
                have -= 4 + len;
                f
            }
        };
        if frame.len() >= 14 && frame[12..14] == [0x88, 0xb5] {
            return frame;
        }
    }
}

#[test]
fn relay_round_trip_dgram() {
    relay_round_trip(Framing::Dgram);
}

#[test]
fn relay_round_trip_stream() {
    relay_round_trip(Framing::Stream);
}

#[test]
fn passt_leases_and_answers_ping() {
    let t = Topology::new();
    let mut p = passt(&t, &[]);
    let g = t.guest();
    let lease = g.dhcp().unwrap_or_else(|e| panic!("{e}\n{}", p.diagnose()));
    eprintln!("passt's lease: {:?}", lease.vars);
    assert_eq!(lease.ip, GUEST);
    assert_eq!(lease.prefix, 24);
    assert_eq!(lease.subnet, Some(Ipv4Addr::new(255, 255, 255, 0)));
    assert_eq!(lease.routers, [ROUTER]);
    assert_eq!(lease.dns, [DNS]);
    assert_eq!(lease.mtu, Some(65520));
    assert!(lease.lease_secs.is_some_and(|s| s > 0), "{lease:?}");
    // The hook applied it like a guest OS.
    assert!(g
        .addrs()
        .iter()
        .any(|a| a.addr == IpAddr::V4(GUEST) && a.prefix == 24));
    assert_eq!(g.default_gateway4(), Some(IpAddr::V4(ROUTER)));
    assert_eq!(g.mtu(), 65520);
    g.ping(ROUTER)
        .unwrap_or_else(|e| panic!("{e}\n{}", p.diagnose()));
    let mac = g
        .neighbor_mac(IpAddr::V4(ROUTER))
        .expect("router in ip neigh");
    assert_ne!(mac, g.mac());
    assert!(p.is_running());
}

#[test]
fn packet_socket_injects_and_captures_dhcp() {
    let t = Topology::new();
    let _p = passt(&t, &[]);
    let cap = PacketSocket::open(t.guest_ns(), "tap0", true).expect("capture");
    let inj = PacketSocket::open(t.guest_ns(), "tap0", false).expect("injector");
    // A different client than the guest: passt offers to whoever asks.
    let mac = [0x02, 0, 0, 0, 0, 0x42];
    let xid = 0x1234_5678;
    inj.send(&frames::dhcp_discover(mac, xid)).unwrap();
    let offer = cap
        .recv_until(Duration::from_secs(5), |f| {
            frames::parse_dhcp_reply(f).is_some_and(|r| r.xid == xid)
        })
        .expect("passt answered our hand-built DHCPDISCOVER");
    let r = frames::parse_dhcp_reply(&offer).unwrap();
    assert_eq!(
        r.msg_type,
        Some(airlock::wire::dhcpv4::MessageType::Offer.into())
    );
    assert_eq!(r.yiaddr, GUEST);
    // (passt does not put option 53 first, so its order is not checked.)
    assert!(r
        .options
        .iter()
        .any(|(c, v)| *c == 54 && v[..] == ROUTER.octets()));
}

#[test]
fn passt_survives_the_barrage_over_stream() {
    let t = Topology::new();
    let mut p = passt(&t, &[]);
    let g = t.guest();
    let target = Target {
        guest_mac: g.mac_bytes(),
        guest: GUEST,
        router: ROUTER,
        dns: DNS,
    };
    let mut sent = 0;
    for (name, f) in frames::barrage(target) {
        if !LinkMode::Stream.carries(f.len()) {
            continue; // framing errors, not frames, on STREAM
        }
        p.inject(&f)
            .unwrap_or_else(|e| panic!("inject {name}: {e}\n{}", p.diagnose()));
        sent += 1;
    }
    assert!(sent > 300, "only {sent} frames");
    let lease = g.dhcp().unwrap_or_else(|e| panic!("{e}\n{}", p.diagnose()));
    assert_eq!(lease.ip, GUEST);
    g.ping(ROUTER)
        .unwrap_or_else(|e| panic!("{e}\n{}", p.diagnose()));
    assert!(p.is_running(), "{}", p.diagnose());
}
