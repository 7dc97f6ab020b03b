//! `--outbound-addr` and `--outbound-if4` (issue 19, item 4) with a real
//! host listener that reports the peer address it sees.
//!
//! The address test stays in the host namespace: a second address on its
//! dead-end uplink, and a server on the first. The interface test adds a
//! third namespace, `<prefix>-p`, joined to the host by two veth pairs (and
//! to nothing else): the route to the server goes through the first, so
//! the peer address says which interface the connection left by.

mod support;

use std::time::{Duration, Instant};
use support::process::{must, run_argv, Daemon};
use support::{Helper, LinkMode, Topology};

const TCP_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
c, peer = s.accept()
print("tcp peer", peer[0], flush=True)
c.sendall(c.recv(100))
c.close()
data, peer = u.recvfrom(100)
print("udp peer", peer[0], flush=True)
u.sendto(data, peer)
"#;

const CLIENT: &str = r#"
import socket, sys
dst = (sys.argv[1], int(sys.argv[2]))
s = socket.create_connection(dst, timeout=10)
s.sendall(b"hello")
assert s.recv(100) == b"hello"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(10)
u.sendto(b"ping", dst)
assert u.recv(100) == b"ping"
print("done", flush=True)
"#;

/// Peers (TCP, UDP) a server saw for one guest connection and datagram.
fn peers_seen(
    t: &Topology,
    a: &mut Helper,
    server_ns: &str,
    addr: &str,
    port: &str,
) -> (String, String) {
    let dir = t.dir();
    std::fs::write(dir.join("srv.py"), TCP_SERVER).unwrap();
    std::fs::write(dir.join("cli.py"), CLIENT).unwrap();
    let srv = dir.join("srv.py").to_string_lossy().into_owned();
    let cli = dir.join("cli.py").to_string_lossy().into_owned();
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", server_ns, "python3", &srv, addr, port]);
    let mut d = Daemon::spawn("server", &mut cmd, &dir.join(format!("srv-{port}.log")));
    let end = Instant::now() + Duration::from_secs(10);
    while !d.log().lines().any(|l| l == "ready") {
        assert!(d.is_running() && Instant::now() < end, "{}", d.diagnose());
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = t.guest_run(&["python3", &cli, addr, port], Duration::from_secs(30));
    assert!(
        o.success(),
        "{}\n{}\n{}",
        o.describe(),
        d.diagnose(),
        a.diagnose()
    );
    assert!(
        d.wait_exit(Duration::from_secs(10)).is_some(),
        "{}",
        d.diagnose()
    );
    let log = d.log();
    let peer = |proto: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(&format!("{proto} peer ")))
            .unwrap_or_else(|| panic!("no {proto} peer in {log}"))
            .to_string()
    };
    (peer("tcp"), peer("udp"))
}

fn start(t: &Topology, args: &[&str]) -> Helper {
    let mut a = Helper::airlock(t, LinkMode::Netns, args);
    if let Err(e) = a.wait_ready(t, Duration::from_secs(5)) {
        panic!("airlock {args:?}: {e}");
    }
    t.guest()
        .dhcp()
        .unwrap_or_else(|e| panic!("{e}\n{}", a.diagnose()));
    a
}

#[test]
fn outbound_addr_is_the_source_the_host_sees() {
    let t = Topology::new();
    must(&[
        "ip",
        "-n",
        t.host_ns(),
        "addr",
        "add",
        "192.0.2.3/24",
        "dev",
        "up0",
    ]);
    {
        let mut a = start(&t, &[]);
        let seen = peers_seen(&t, &mut a, t.host_ns(), "192.0.2.2", "7201");
        assert_eq!(
            seen,
            ("192.0.2.2".into(), "192.0.2.2".into()),
            "control: the default source"
        );
    }
    let mut a = start(&t, &["--outbound-addr", "192.0.2.3", "--sandbox", "strict"]);
    let seen = peers_seen(&t, &mut a, t.host_ns(), "192.0.2.2", "7202");
    assert_eq!(seen, ("192.0.2.3".into(), "192.0.2.3".into()));
    // The sandbox kept refusing to listen: landlock's port-0 rule is all
    // that changed, as the startup line says.
    assert!(a.log().contains("no tcp bind"), "{}", a.log());
}

/// The peer namespace, deleted (with whatever runs in it) on drop.
struct Peer(String);

impl Drop for Peer {
    fn drop(&mut self) {
        let pids = run_argv(&["ip", "netns", "pids", &self.0], Duration::from_secs(5));
        for p in pids.stdout.split_whitespace() {
            let _ = run_argv(&["kill", "-9", p], Duration::from_secs(5));
        }
        let _ = run_argv(&["ip", "netns", "del", &self.0], Duration::from_secs(10));
    }
}

#[test]
fn outbound_if4_is_the_interface_it_leaves_by() {
    let t = Topology::new();
    let peer = Peer(format!("{}-p", t.prefix()));
    let (h, p) = (t.host_ns(), peer.0.as_str());
    must(&["ip", "netns", "add", p]);
    for (hd, pd, hnet, pnet) in [
        ("o1", "p1", "198.51.100.1/24", "198.51.100.2/24"),
        ("o2", "p2", "203.0.113.1/24", "203.0.113.2/24"),
    ] {
        must(&[
            "ip", "-n", h, "link", "add", hd, "type", "veth", "peer", "name", pd, "netns", p,
        ]);
        must(&["ip", "-n", h, "addr", "add", hnet, "dev", hd]);
        must(&["ip", "-n", p, "addr", "add", pnet, "dev", pd]);
        must(&["ip", "-n", h, "link", "set", hd, "up"]);
        must(&["ip", "-n", p, "link", "set", pd, "up"]);
    }
    must(&["ip", "-n", p, "link", "set", "lo", "up"]);
    // Replies to 203.0.113.1 come back on o2 from an address routed via o1.
    for ns in [h, p] {
        for k in ["all", "default", "o2", "p2"] {
            let _ = run_argv(
                &[
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.conf.{k}.rp_filter=0"),
                ],
                Duration::from_secs(5),
            );
        }
    }
    {
        let mut a = start(&t, &[]);
        let seen = peers_seen(&t, &mut a, p, "198.51.100.2", "7301");
        assert_eq!(seen.0, "198.51.100.1", "control: the routed interface");
    }
    let mut a = start(&t, &["--outbound-if4", "o2"]);
    let seen = peers_seen(&t, &mut a, p, "198.51.100.2", "7302");
    assert_eq!(seen, ("203.0.113.1".into(), "203.0.113.1".into()));
}

#[test]
fn bad_outbound_options_exit_2() {
    for args in [
        &[
            "--outbound-addr",
            "192.0.2.9",
            "--outbound-addr",
            "192.0.2.10",
        ][..],
        &["--outbound-addr", "not-an-address"][..],
        &["--outbound-if4", "a/b"][..],
    ] {
        // A link that would fail later: the options must be refused first
        // (--fd is claimed before anything else, so it cannot be a bad one).
        let mut argv = vec![
            support::AIRLOCK,
            "--foreground",
            "--socket",
            "/nonexistent/airlock.sock",
        ];
        argv.extend_from_slice(args);
        let o = run_argv(&argv, Duration::from_secs(10));
        assert_eq!(
            o.status.and_then(|s| s.code()),
            Some(2),
            "{args:?}: {}",
            o.describe()
        );
        assert!(
            o.stderr.contains("--outbound"),
            "{args:?}: {}",
            o.describe()
        );
    }
}
