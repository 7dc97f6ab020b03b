//! UDP flows, ICMP echo, DNS forwarding, fragments, forwards, --restrict and
//! --disable-dns, against the real binary.
//!
//! Each test builds its own pair of network namespaces (guest with tap0,
//! "host" with loopback and a dead-end uplink, as /work/shared/rig/topo.sh)
//! and runs `airlock --netns` in the host namespace. Every server the guest
//! talks to (DNS resolver, UDP echo) listens on the host namespace's
//! loopback; nothing here touches the machine's own network or resolvers.
//! Guest-side clients are plain sockets created in the guest namespace.
//!
//! Needs root (namespaces, tap): fails otherwise, as every test on
//! `tests/support` does.

mod support;

/// airlock (`--netns`, `-d`) on the guest's tap in a [`Topology`], the
/// guest configured statically: 10.0.2.15/24 via 10.0.2.2, fec0::15/64
/// via fec0::2.
struct Topo {
    // Declared first: stopped before the namespaces go.
    a: Option<Helper>,
    t: Topology,
    g: String,
    h: String,
}

impl Topo {
    /// `ping`: the host namespace allows ICMP echo sockets.
    fn new(ping: bool) -> Topo {
        let t = Topology::with_ping_sockets(ping);
        Topo {
            a: None,
            g: t.guest_ns().to_string(),
            h: t.host_ns().to_string(),
            t,
        }
    }

    /// Start airlock with `args`, wait for the tap's carrier, then
    /// configure the guest statically.
    fn start(&mut self, args: &[&str], mtu: u32) {
        let mtu_s = mtu.to_string();
        let mut argv = vec!["-d", "--mtu", &mtu_s];
        argv.extend_from_slice(args);
        let mut a = Helper::airlock(&self.t, LinkMode::Netns, &argv);
        if let Err(e) = a.wait_ready(&self.t, Duration::from_secs(10)) {
            panic!("airlock {args:?} did not come up: {e}");
        }
        self.a = Some(a);
        let gw = std::net::Ipv4Addr::new(10, 0, 2, 2);
        self.t
            .guest()
            .configure_static("10.0.2.15".parse().unwrap(), 24, gw, mtu);
        // IPv6 statically too (NDP may not be answered yet).
        for argv in [
            &[
                "ip",
                "-6",
                "addr",
                "add",
                "fec0::15/64",
                "dev",
                "tap0",
                "nodad",
            ][..],
            &[
                "ip",
                "-6",
                "neigh",
                "replace",
                "fec0::2",
                "lladdr",
                "52:56:00:00:00:02",
                "dev",
                "tap0",
                "nud",
                "permanent",
            ],
            &[
                "ip", "-6", "route", "replace", "default", "via", "fec0::2", "dev", "tap0",
            ],
        ] {
            let o = self.t.guest_run(argv, Duration::from_secs(10));
            assert!(o.success(), "{argv:?}: {}", o.describe());
        }
    }

    fn airlock(&self) -> &Helper {
        self.a.as_ref().expect("airlock started")
    }

    fn alive(&mut self) -> bool {
        self.a.as_mut().is_some_and(|a| a.is_running())
    }

    fn stderr(&self) -> String {
        self.airlock().log()
    }

    /// A value from airlock's /proc/PID/status, in kB.
    fn status_kb(&self, field: &str) -> u64 {
        self.airlock().status_kb(field)
    }

    fn open_fds(&self) -> usize {
        self.airlock().open_fds()
    }

    /// Stop airlock (SIGTERM); its log, with the `--debug` counters.
    fn stop(&mut self) -> String {
        self.a.as_mut().expect("airlock started").stop_counters()
    }

    /// A command in the guest namespace.
    fn guest_cmd(&self, args: &[&str]) -> Outcome {
        self.t.guest_run(args, Duration::from_secs(120))
    }

    /// A shell command in the guest namespace.
    fn guest_sh(&self, cmd: &str) -> Outcome {
        self.guest_cmd(&["sh", "-c", cmd])
    }
}

/// Run `f` on a thread inside namespace `ns`: sockets it creates belong
/// to that namespace for good.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    in_netns(ns, move || Ok(f())).expect("join the namespace")
}

mod servers {
    //! A tiny DNS responder and a UDP echo server for the host namespace.

    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpListener, UdpSocket};

    /// The address every A query is answered with.
    pub const ANSWER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

    /// Answer a DNS query: A records get [`ANSWER`], anything else an empty
    /// NOERROR answer.
    pub fn answer(q: &[u8]) -> Option<Vec<u8>> {
        if q.len() < 12 {
            return None;
        }
        let mut i = 12;
        while *q.get(i)? != 0 {
            i += 1 + *q.get(i)? as usize;
        }
        let qend = i + 5;
        let qtype = u16::from_be_bytes([*q.get(i + 1)?, *q.get(i + 2)?]);
        let is_a = qtype == 1;
        let mut r = Vec::with_capacity(qend + 16);
        r.extend_from_slice(&q[0..2]);
        r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, is_a as u8, 0, 0, 0, 0]);
        r.extend_from_slice(q.get(12..qend)?);
        if is_a {
            r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(&ANSWER.octets());
        }
        Some(r)
    }

    /// A DNS query for `name`, type A.
    pub fn query(id: u16, name: &str) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    /// Start a resolver on 127.0.0.1 (UDP and TCP, same port) in namespace
    /// `ns`; returns the port.
    pub fn resolver(ns: &str) -> u16 {
        let (u, t) = super::in_ns(ns, || {
            let u = UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = u.local_addr().unwrap().port();
            let t = TcpListener::bind(("127.0.0.1", port)).unwrap();
            (u, t)
        });
        let port = u.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = u.recv_from(&mut buf) {
                if let Some(r) = answer(&buf[..n]) {
                    let _ = u.send_to(&r, peer);
                }
            }
        });
        std::thread::spawn(move || {
            for mut s in t.incoming().flatten() {
                let mut len = [0u8; 2];
                if s.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                if s.read_exact(&mut q).is_err() {
                    continue;
                }
                if let Some(r) = answer(&q) {
                    let mut out = (r.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&r);
                    let _ = s.write_all(&out);
                }
            }
        });
        port
    }

    /// A UDP server on 127.0.0.1 in `ns` that answers every datagram with
    /// "<sender port> <length> <first byte>"; returns its port.
    pub fn udp_echo(ns: &str) -> u16 {
        udp_echo_on(ns, "127.0.0.1:0")
    }

    /// [`udp_echo`] on a given address.
    pub fn udp_echo_on(ns: &str, addr: &'static str) -> u16 {
        let u = super::in_ns(ns, move || UdpSocket::bind(addr).unwrap());
        let port = u.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, peer)) = u.recv_from(&mut buf) {
                let sum: u64 = buf[..n].iter().map(|&b| b as u64).sum();
                let r = format!("{} {} {}", peer.port(), n, sum);
                let _ = u.send_to(r.as_bytes(), peer);
            }
        });
        port
    }
}

use servers::{query, ANSWER};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};
use support::process::Outcome;
use support::relay::in_netns;
use support::{counter, Helper, LinkMode, Topology};

/// A UDP socket in the guest namespace, with a receive timeout.
fn guest_udp(t: &Topo, timeout_ms: u64) -> UdpSocket {
    let s = in_ns(&t.g, || UdpSocket::bind("0.0.0.0:0").unwrap());
    s.set_read_timeout(Some(Duration::from_millis(timeout_ms)))
        .unwrap();
    s
}

/// Send `msg` to `to` from the guest and wait for an answer (a few tries:
/// the first datagram may wait for ARP).
fn udp_ask(s: &UdpSocket, to: &str, msg: &[u8]) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 65536];
    for _ in 0..3 {
        s.send_to(msg, to).unwrap();
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            return Some((buf[..n].to_vec(), from));
        }
    }
    None
}

fn dns_over_tcp(t: &Topo) -> std::io::Result<Vec<u8>> {
    let mut s = in_ns(&t.g, || {
        TcpStream::connect_timeout(&"10.0.2.3:53".parse().unwrap(), Duration::from_secs(3))
    })?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let q = query(0x4242, "tcp.airlock.test");
    let mut out = (q.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&q);
    s.write_all(&out)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut r)?;
    Ok(r)
}

fn ends_with_answer(r: &[u8]) -> bool {
    r.ends_with(&ANSWER.octets())
}

#[test]
fn dns_over_udp_and_tcp_reaches_the_test_resolver() {
    let mut t = Topo::new(false);
    let port = servers::resolver(&t.h);
    t.start(&["--dns-upstream", &format!("127.0.0.1:{port}")], 65520);

    let o = t.guest_sh("busybox nslookup name.airlock.test 10.0.2.3");
    let out = &o.stdout;
    assert!(out.contains(&ANSWER.to_string()), "nslookup: {out}");

    // The reply comes from the address the guest asked: 10.0.2.3:53.
    let s = guest_udp(&t, 1000);
    let (r, from) = udp_ask(&s, "10.0.2.3:53", &query(7, "udp.airlock.test")).unwrap();
    assert_eq!(from, "10.0.2.3:53".parse().unwrap());
    assert_eq!(&r[0..2], &[0, 7]);
    assert!(ends_with_answer(&r));

    let r = dns_over_tcp(&t).unwrap();
    assert_eq!(&r[0..2], &[0x42, 0x42]);
    assert!(ends_with_answer(&r));
    let c = t.stop();
    assert!(counter(&c, "flows_opened") >= 3, "{}", c);
}

#[test]
fn udp_echo_round_trip_and_forwards() {
    let mut t = Topo::new(false);
    let echo = servers::udp_echo(&t.h);
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (hu, ht) = (
        probe.local_addr().unwrap().port(),
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(),
    );
    drop(probe);
    let fu = format!("udp:127.0.0.1:{hu}-:5353");
    let ft = format!("tcp:127.0.0.1:{ht}-:8080");
    t.start(&["--hostfwd", &fu, "--hostfwd", &ft], 65520);

    // Guest -> 10.0.2.2 -> host loopback and back, from the address asked
    // (the host side uses an ephemeral port, see
    // guest_source_ports_are_not_squatted_on_the_host).
    let s = guest_udp(&t, 1000);
    let (r, from) = udp_ask(&s, &format!("10.0.2.2:{echo}"), b"hello").unwrap();
    assert_eq!(from, format!("10.0.2.2:{echo}").parse().unwrap());
    let r = String::from_utf8(r).unwrap();
    let sum = b"hello".iter().map(|&b| b as u64).sum::<u64>();
    assert!(r.ends_with(&format!(" 5 {sum}")), "{r}");

    // UDP forward: host client -> 127.0.0.1:hu -> guest server :5353.
    let gs = in_ns(&t.g, || UdpSocket::bind("0.0.0.0:5353").unwrap());
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let (n, peer) = gs.recv_from(&mut buf).unwrap();
        let mut r = b"pong:".to_vec();
        r.extend_from_slice(&buf[..n]);
        gs.send_to(&r, peer).unwrap();
        peer
    });
    let hc = in_ns(&t.h, || UdpSocket::bind("127.0.0.1:0").unwrap());
    hc.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    hc.send_to(b"ping", ("127.0.0.1", hu)).unwrap();
    let mut buf = [0u8; 100];
    let (n, from) = hc.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"pong:ping");
    assert_eq!(from.port(), hu);
    let seen = server.join().unwrap();
    // The guest saw the host peer as the virtual host, port kept.
    assert_eq!(
        seen,
        SocketAddr::new("10.0.2.2".parse().unwrap(), hc.local_addr().unwrap().port())
    );

    // TCP forward: host -> 127.0.0.1:ht -> guest :8080.
    let gl = in_ns(&t.g, || {
        std::net::TcpListener::bind("0.0.0.0:8080").unwrap()
    });
    let server = std::thread::spawn(move || {
        let (mut c, peer) = gl.accept().unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        c.write_all(&b).unwrap();
        peer
    });
    let mut c = in_ns(&t.h, move || TcpStream::connect(("127.0.0.1", ht)).unwrap());
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.write_all(b"abcde").unwrap();
    let mut b = [0u8; 5];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"abcde");
    assert_eq!(server.join().unwrap().ip().to_string(), "10.0.2.2");
    t.stop();
}

#[test]
fn ping_through_ping_sockets() {
    let mut t = Topo::new(true);
    t.start(&[], 65520);
    let o = t.guest_sh("busybox ping -c3 -W2 10.0.2.2");
    assert!(o.success(), "{}", &o.stdout);
    // An address of the host namespace itself, on its dead-end uplink.
    let o = t.guest_sh("busybox ping -c2 -W2 192.0.2.2");
    assert!(o.success(), "{}", &o.stdout);
    // Nothing answers on the dead end.
    let o = t.guest_sh("busybox ping -c1 -W1 192.0.2.99");
    assert!(!o.success());
    let c = t.stop();
    // Two echo flows at least (10.0.2.2 went through a ping socket too).
    assert!(counter(&c, "flows_opened") >= 2, "{}", c);
    assert_eq!(counter(&c, "icmp_ping_denied"), 0, "{}", c);
}

#[test]
fn ping_without_ping_sockets_answers_virtual_addresses() {
    // ping_group_range left at its default ("1 0": nobody).
    let mut t = Topo::new(false);
    t.start(&[], 65520);
    let o = t.guest_sh("busybox ping -c2 -W2 10.0.2.2");
    assert!(o.success(), "{}", &o.stdout);
    let o = t.guest_sh("busybox ping -c1 -W1 192.0.2.2");
    assert!(!o.success());
    let c = t.stop();
    assert!(counter(&c, "icmp_ping_denied") >= 1, "{}", c);
    assert_eq!(counter(&c, "flows_opened"), 0, "{}", c);
}

#[test]
fn closed_port_and_dead_host_become_icmp_errors() {
    let mut t = Topo::new(false);
    t.start(&[], 65520);
    let port = 9; // nothing listens in the fresh host namespace
    let s = guest_udp(&t, 2000);
    s.connect(("10.0.2.2", port)).unwrap();
    s.send(b"anyone?").unwrap();
    let mut buf = [0u8; 64];
    let e = s.recv(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");

    // Nobody answers ARP on the dead end: the host reports "host
    // unreachable" after its neighbour timeout (~3 s), and so does airlock.
    // (A soft error: Linux reports it only to sockets with IP_RECVERR.)
    let s = guest_udp(&t, 8000);
    nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Ipv4RecvErr, &true).unwrap();
    s.connect("192.0.2.99:9").unwrap();
    s.send(b"hello?").unwrap();
    let e = s.recv(&mut buf).unwrap_err();
    let c = t.stop();
    assert_eq!(
        e.raw_os_error(),
        Some(nix::libc::EHOSTUNREACH),
        "{e}: {}",
        c
    );
    assert!(counter(&c, "icmp_errors_to_guest") >= 2, "{}", c);
}

#[test]
fn ten_thousand_udp_flows_stay_bounded_and_expire() {
    let mut t = Topo::new(false);
    t.start(&["--max-flows", "20000", "--udp-timeout", "3"], 65520);
    let echo = servers::udp_echo(&t.h);
    let s = guest_udp(&t, 1000);
    assert!(udp_ask(&s, &format!("10.0.2.2:{echo}"), b"warm up").is_some());
    let base_rss = t.status_kb("VmRSS");
    let base_fds = t.open_fds();
    // 10 000 flows: one guest socket, 10 000 destination ports.
    const N: usize = 10_000;
    let t0 = Instant::now();
    while t.open_fds() < base_fds + N {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "only {} fds",
            t.open_fds()
        );
        for i in 0..N {
            s.send_to(b"x", ("10.0.2.2", 20000 + i as u16)).unwrap();
            if i % 200 == 199 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let rss = t.status_kb("VmRSS");
    let hwm = t.status_kb("VmHWM");
    eprintln!("10k flows: VmRSS {base_rss} -> {rss} kB, VmHWM {hwm} kB");
    // Stated bound: under 1 KiB of airlock memory per UDP flow (the data
    // waits in kernel socket buffers), so 10 000 flows cost < 10 MiB.
    assert!(rss < base_rss + 10 * 1024, "{base_rss} -> {rss} kB");
    // Reclaimed after the (shortened) idle timeout.
    let t1 = Instant::now();
    while t.open_fds() > base_fds + 10 {
        assert!(
            t1.elapsed() < Duration::from_secs(15),
            "{} fds left",
            t.open_fds()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Flows still work after the purge.
    assert!(udp_ask(&s, &format!("10.0.2.2:{echo}"), b"again").is_some());
    let c = t.stop();
    assert!(counter(&c, "flows_closed") >= N as u64, "{}", c);
}

#[test]
fn fragmented_datagram_arrives_whole() {
    let mut t = Topo::new(false);
    t.start(&[], 1500);
    let echo = servers::udp_echo(&t.h);
    let s = guest_udp(&t, 1000);
    let msg: Vec<u8> = (0..4000u32).map(|i| (i * 7) as u8).collect();
    let sum: u64 = msg.iter().map(|&b| b as u64).sum();
    let (r, _) = udp_ask(&s, &format!("10.0.2.2:{echo}"), &msg).unwrap();
    let r = String::from_utf8(r).unwrap();
    assert!(r.ends_with(&format!(" 4000 {sum}")), "{r}");
    let c = t.stop();
    assert!(counter(&c, "frag_reassembled") >= 1, "{}", c);
}

/// Raw Ethernet frames from the guest's tap: IPv4 fragments no kernel would
/// send. The first is the one that kills libslirp 4.7 (126 bytes at offset
/// 65528); then overlaps, oversize offsets, odd lengths and thousands of
/// fragments that are never completed.
const HOSTILE: &str = r#"
import socket, struct, random
mac = open('/sys/class/net/tap0/address').read().strip()
src = bytes.fromhex(mac.replace(':', ''))
dst = bytes.fromhex('52550a000202')
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('tap0', 0))
def csum(b):
    if len(b) % 2: b += b'\0'
    t = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while t >> 16: t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff
def frag(ident, off, more, data, proto=17):
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(data), ident,
                    (0x2000 if more else 0) | (off >> 3), 64, proto, 0,
                    socket.inet_aton('10.0.2.15'), socket.inet_aton('10.0.2.2'))
    h = h[:10] + struct.pack('!H', csum(h)) + h[12:]
    s.send(dst + src + b'\x08\x00' + h + data)
frag(1, 65528, False, b'\xaa' * 126)
frag(2, 65528, True, b'\xaa' * 120)
for i in range(3000):
    ident = 100 + i
    frag(ident, 0, True, b'\x01' * 1480)
    frag(ident, 8, True, b'\x02' * 1480)          # overlap
for i in range(20000):
    frag(random.randrange(4000, 65535), random.randrange(0, 8000) * 8,
         random.random() < 0.5, b'\x03' * random.choice([8, 64, 1480, 1475]))
print('sent')
"#;

#[test]
fn hostile_fragments_leave_memory_bounded_and_flows_working() {
    let mut t = Topo::new(false);
    t.start(&[], 1500);
    let echo = servers::udp_echo(&t.h);
    let s = guest_udp(&t, 1000);
    assert!(udp_ask(&s, &format!("10.0.2.2:{echo}"), b"before").is_some());
    let base = t.status_kb("VmRSS");
    let o = t.guest_cmd(&["python3", "-c", HOSTILE]);
    assert!(o.success(), "{}", &o.stderr);
    std::thread::sleep(Duration::from_millis(300));
    assert!(t.alive(), "airlock died: {}", t.stderr());
    let rss = t.status_kb("VmRSS");
    eprintln!("hostile fragments: VmRSS {base} -> {rss} kB");
    // The reassembly pool is at most 16 x 65 KiB.
    assert!(rss < base + 2 * 1024, "{base} -> {rss} kB");
    // Flows keep working, fragmented ones included.
    assert!(udp_ask(&s, &format!("10.0.2.2:{echo}"), b"after").is_some());
    let big = vec![9u8; 3000];
    let (r, _) = udp_ask(&s, &format!("10.0.2.2:{echo}"), &big).unwrap();
    assert!(String::from_utf8(r).unwrap().ends_with(" 3000 27000"));
    // Incomplete datagrams time out (5 s).
    std::thread::sleep(Duration::from_millis(5500));
    let c = t.stop();
    assert!(counter(&c, "frag_dropped") >= 3000, "{}", c);
    assert!(counter(&c, "frag_expired") >= 1, "{}", c);
}

#[test]
fn restrict_keeps_dns_and_forwards_only() {
    let mut t = Topo::new(true);
    let dns = servers::resolver(&t.h);
    let echo = servers::udp_echo(&t.h);
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    let hu = probe.local_addr().unwrap().port();
    drop(probe);
    let fu = format!("udp:127.0.0.1:{hu}-:5353");
    t.start(
        &[
            "--restrict",
            "--dns-upstream",
            &format!("127.0.0.1:{dns}"),
            "--hostfwd",
            &fu,
        ],
        65520,
    );
    let s = guest_udp(&t, 500);
    assert!(udp_ask(&s, &format!("10.0.2.2:{echo}"), b"out?").is_none());
    let o = t.guest_sh("busybox ping -c1 -W1 192.0.2.2");
    assert!(!o.success());
    let (r, _) = udp_ask(&s, "10.0.2.3:53", &query(9, "restricted.test")).unwrap();
    assert!(ends_with_answer(&r));
    assert!(ends_with_answer(&dns_over_tcp(&t).unwrap()));
    // The forward still reaches the guest, and its reply gets back.
    let gs = in_ns(&t.g, || UdpSocket::bind("0.0.0.0:5353").unwrap());
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 100];
        let (n, peer) = gs.recv_from(&mut buf).unwrap();
        gs.send_to(&buf[..n], peer).unwrap();
    });
    let hc = in_ns(&t.h, || UdpSocket::bind("127.0.0.1:0").unwrap());
    hc.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    hc.send_to(b"in", ("127.0.0.1", hu)).unwrap();
    let mut buf = [0u8; 10];
    assert_eq!(hc.recv(&mut buf).unwrap(), 2);
    server.join().unwrap();
    let c = t.stop();
    assert!(counter(&c, "udp_dropped") >= 1, "{}", c);
}

#[test]
fn disable_dns_turns_off_the_resolver_address() {
    let mut t = Topo::new(false);
    let dns = servers::resolver(&t.h);
    let echo = servers::udp_echo(&t.h);
    t.start(
        &[
            "--disable-dns",
            "--dns-upstream",
            &format!("127.0.0.1:{dns}"),
        ],
        65520,
    );
    let s = guest_udp(&t, 500);
    assert!(udp_ask(&s, "10.0.2.3:53", &query(3, "off.test")).is_none());
    assert!(dns_over_tcp(&t).is_err());
    // Everything else still flows.
    assert!(udp_ask(&s, &format!("10.0.2.2:{echo}"), b"still here").is_some());
    t.stop();
}

#[test]
fn ipv6_fragmented_datagram_and_ping() {
    let mut t = Topo::new(true);
    t.start(&[], 1500);
    let echo = servers::udp_echo_on(&t.h, "[::1]:0");
    let s = in_ns(&t.g, || UdpSocket::bind("[::]:0").unwrap());
    s.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    let to = format!("[fec0::2]:{echo}");
    let (r, from) = udp_ask(&s, &to, b"six").unwrap();
    assert_eq!(from, to.parse().unwrap());
    assert!(String::from_utf8(r).unwrap().ends_with(" 3 340"));
    // 4000 bytes at MTU 1500: fragmented by the guest, whole on the host.
    let msg: Vec<u8> = (0..4000u32).map(|i| (i * 13) as u8).collect();
    let sum: u64 = msg.iter().map(|&b| b as u64).sum();
    let (r, _) = udp_ask(&s, &to, &msg).unwrap();
    let r = String::from_utf8(r).unwrap();
    assert!(r.ends_with(&format!(" 4000 {sum}")), "{r}");
    let o = t.guest_sh("busybox ping -6 -c2 -W2 fec0::2");
    assert!(o.success(), "{}", &o.stdout);
    let c = t.stop();
    assert!(counter(&c, "frag_reassembled") >= 1, "{}", c);
}
