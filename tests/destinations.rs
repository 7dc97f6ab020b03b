//! Destinations a guest may not address itself (issue 13, findings 1, 2):
//! crafted frames through the test VMM (the relay) to the host's loopback
//! and unspecified addresses, in IPv4, IPv6 and IPv4-mapped spellings. A
//! server on the host namespace's loopback must never see them, and the
//! guest must get an RST (TCP) or "administratively prohibited" (UDP, ICMP).

mod support;

use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::time::Duration;
use support::frames::{self, ETH_IPV4, ETH_IPV6};
use support::relay::{in_netns, PacketSocket};
use support::{Helper, LinkMode, Topology};

const GUEST4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const GUEST6: &str = "fec0::15";

fn router_mac() -> [u8; 6] {
    frames::parse_mac(&frames::slirp_mac(Ipv4Addr::new(10, 0, 2, 2))).unwrap()
}

/// The frame airlock sends the guest in answer to a packet to `dst`: the
/// ICMP error quoting it, or the TCP RST from it.
fn answer(cap: &PacketSocket, pred: impl Fn(&[u8]) -> bool) -> bool {
    cap.recv_until(Duration::from_secs(2), |f| pred(f))
        .is_some()
}

fn icmp4_prohibited(f: &[u8]) -> bool {
    frames::ipv4_payload(f, 1).is_some_and(|m| m.len() >= 8 && m[0] == 3 && m[1] == 13)
}

fn icmp6_prohibited(f: &[u8]) -> bool {
    f.len() > 55 && f[12..14] == ETH_IPV6.to_be_bytes() && f[20] == 58 && f[54] == 1 && f[55] == 1
}

fn tcp4_rst(f: &[u8]) -> bool {
    frames::ipv4_payload(f, 6).is_some_and(|t| t.len() >= 20 && t[13] & 0x04 != 0)
}

#[test]
fn host_internal_destinations_are_refused() {
    support::require_root();
    let t = Topology::new();
    for opts in [&[][..], &["--disable-host-loopback"][..]] {
        let a = Helper::airlock(&t, LinkMode::Dgram, opts);
        let cap = PacketSocket::open(t.guest_ns(), "tap0", true).expect("capture");
        let mac = t.guest().mac_bytes();
        // The services a hostile guest is after: on every loopback address.
        let v4 = in_netns(t.host_ns(), || UdpSocket::bind("0.0.0.0:5399")).unwrap();
        let v6 = in_netns(t.host_ns(), || UdpSocket::bind("[::]:5398")).unwrap();
        for s in [&v4, &v6] {
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
        }
        let tcp = in_netns(t.host_ns(), || std::net::TcpListener::bind("0.0.0.0:5397")).unwrap();
        tcp.set_nonblocking(true).unwrap();

        let mut failures = Vec::new();
        for dst in ["127.0.0.1", "127.0.0.53", "127.1.2.3", "0.0.0.0"] {
            let d: Ipv4Addr = dst.parse().unwrap();
            let udp = frames::udp4(GUEST4, 40000, d, 5399, b"probe");
            a.inject(&frames::ethernet(router_mac(), mac, ETH_IPV4, &udp))
                .unwrap();
            if !answer(&cap, icmp4_prohibited) {
                failures.push(format!("udp {dst}: no ICMP prohibited"));
            }
            let ping = frames::icmp4_echo(GUEST4, d, 77, 1, b"probe");
            a.inject(&frames::ethernet(router_mac(), mac, ETH_IPV4, &ping))
                .unwrap();
            if !answer(&cap, icmp4_prohibited) {
                failures.push(format!("ping {dst}: no ICMP prohibited"));
            }
            let syn = frames::syn4(GUEST4, 40001, d, 5397);
            a.inject(&frames::ethernet(router_mac(), mac, ETH_IPV4, &syn))
                .unwrap();
            if !answer(&cap, tcp4_rst) {
                failures.push(format!("tcp {dst}: no RST"));
            }
        }
        let g6: Ipv6Addr = GUEST6.parse().unwrap();
        for dst in ["::1", "::", "::ffff:127.0.0.1", "::ffff:0.0.0.0"] {
            let d: Ipv6Addr = dst.parse().unwrap();
            let udp = frames::udp6(g6, 40002, d, 5398, b"probe6");
            a.inject(&frames::ethernet(router_mac(), mac, ETH_IPV6, &udp))
                .unwrap();
            if !answer(&cap, icmp6_prohibited) {
                failures.push(format!("udp [{dst}]: no ICMPv6 prohibited"));
            }
            let udp = frames::udp6(g6, 40003, d, 5399, b"probe6");
            a.inject(&frames::ethernet(router_mac(), mac, ETH_IPV6, &udp))
                .unwrap();
            let _ = answer(&cap, icmp6_prohibited);
        }
        let mut buf = [0u8; 64];
        for (name, s) in [("v4", &v4), ("v6", &v6)] {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                failures.push(format!("{name} loopback server got {n} bytes from {from}"));
            }
        }
        if let Ok((_, from)) = tcp.accept() {
            failures.push(format!("loopback TCP server accepted {from}"));
        }
        assert!(failures.is_empty(), "{opts:?}:\n{}", failures.join("\n"));
        drop(a);
    }
}

/// A guest's UDP source port is not bound on the host (finding 8): the
/// host's own WireGuard or VXLAN can still bind 51820 or 4789 while the
/// guest sends from them, and the peer sees an ephemeral port.
#[test]
fn guest_source_ports_are_not_squatted_on_the_host() {
    support::require_root();
    let t = Topology::new();
    let a = Helper::airlock(&t, LinkMode::Dgram, &[]);
    let mac = t.guest().mac_bytes();
    let server = in_netns(t.host_ns(), || UdpSocket::bind("127.0.0.1:5396")).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let host = Ipv4Addr::new(10, 0, 2, 2);
    for port in [51820u16, 4789] {
        let udp = frames::udp4(GUEST4, port, host, 5396, b"squat?");
        a.inject(&frames::ethernet(router_mac(), mac, ETH_IPV4, &udp))
            .unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = server.recv_from(&mut buf).expect("datagram via 10.0.2.2");
        assert_eq!(&buf[..n], b"squat?");
        assert_ne!(from.port(), port, "guest port {port} used on the host");
        // The flow is alive; the host's own service can still have its port.
        let bound = in_netns(t.host_ns(), move || UdpSocket::bind(("0.0.0.0", port)));
        assert!(bound.is_ok(), "host cannot bind {port}: {bound:?}");
    }
}
