//! Seeing what airlock does, without letting it fill a disk (issue 19,
//! items 2 and 6): `--pcap` read back by tcpdump, `--pcap-size`,
//! `--log-size` under `--trace`, and the SIGUSR1 summary.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::process::Daemon;
use support::{Helper, LinkMode, Topology};

/// One TCP server on the host namespace's loopback: accepts, writes the
/// peer address it saw, echoes one message.
const SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
print("ready", flush=True)
c, peer = s.accept()
print("peer", peer[0], flush=True)
c.sendall(c.recv(100))
c.close()
"#;

const CLIENT: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"hello")
assert s.recv(100) == b"hello"
print("echoed", flush=True)
"#;

fn start(t: &Topology, args: &[&str]) -> Helper {
    let mut a = Helper::airlock(t, LinkMode::Netns, args);
    if let Err(e) = a.wait_ready(t, Duration::from_secs(5)) {
        panic!("airlock {args:?} did not come up: {e}");
    }
    a
}

fn script(t: &Topology, name: &str, text: &str) -> String {
    let p = t.dir().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// A server in the host namespace, once it listens.
pub fn host_server(t: &Topology, bind: &str, port: &str) -> Daemon {
    let srv = script(t, "server.py", SERVER);
    let log = t.dir().join(format!("server-{port}.log"));
    let mut d = Daemon::spawn(
        "server",
        &mut t.host_cmd(&["python3", &srv, bind, port]),
        &log,
    );
    let end = Instant::now() + Duration::from_secs(10);
    while !d.log().lines().any(|l| l == "ready") {
        assert!(
            d.is_running() && Instant::now() < end,
            "server: {}",
            d.diagnose()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    d
}

/// Connect from the guest and echo one message.
fn guest_echo(t: &Topology, a: &mut Helper, addr: &str, port: &str) {
    let cli = script(t, "client.py", CLIENT);
    let o = t.guest_run(&["python3", &cli, addr, port], Duration::from_secs(20));
    assert!(o.success(), "{}\n{}", o.describe(), a.diagnose());
}

fn tcpdump(file: &Path) -> String {
    let f = file.to_string_lossy();
    let o = support::process::run_argv(
        &["tcpdump", "-nn", "-tt", "-r", &f],
        Duration::from_secs(20),
    );
    assert!(o.success(), "tcpdump -r {f}: {}", o.describe());
    o.stdout
}

/// `count` echo requests back to back (-A: the next as soon as one is answered).
fn pings(t: &Topology, count: u32) {
    let c = count.to_string();
    let o = t.guest_run(
        &[
            "busybox", "ping", "-A", "-q", "-c", &c, "-W", "2", "10.0.2.2",
        ],
        Duration::from_secs(30),
    );
    assert!(o.success(), "{}", o.describe());
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn pcap_holds_dhcp_and_a_tcp_handshake() {
    let t = Topology::new();
    let cap: PathBuf = t.dir().join("cap.pcap");
    let c = cap.to_string_lossy().into_owned();
    let mut a = start(&t, &["--pcap", &c]);
    t.guest()
        .dhcp()
        .unwrap_or_else(|e| panic!("{e}\n{}", a.diagnose()));
    let mut srv = host_server(&t, "127.0.0.1", "7101");
    guest_echo(&t, &mut a, "10.0.2.2", "7101");
    assert!(srv.wait_exit(Duration::from_secs(10)).is_some());
    // The capture is written every loop turn: no need to stop airlock.
    let text = tcpdump(&cap);
    let has = |pat: &[&str]| text.lines().any(|l| pat.iter().all(|p| l.contains(p)));
    assert!(
        has(&["0.0.0.0.68 > 255.255.255.255.67", "BOOTP/DHCP, Request"]),
        "DHCP request from the guest:\n{text}"
    );
    assert!(
        has(&["10.0.2.2.67 >", "BOOTP/DHCP, Reply"]),
        "DHCP reply from airlock:\n{text}"
    );
    assert!(
        has(&["10.0.2.15.", "> 10.0.2.2.7101", "Flags [S]"]),
        "guest SYN:\n{text}"
    );
    assert!(
        has(&["10.0.2.2.7101 > 10.0.2.15.", "Flags [S.]"]),
        "airlock's SYN-ACK:\n{text}"
    );
    // Microsecond timestamps, increasing.
    let stamps: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(stamps.len() >= 8, "{text}");
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{text}");
    assert!(
        text.lines()
            .all(|l| l.split_whitespace().next().unwrap().len() == 17),
        "sec.usec stamps:\n{text}"
    );
}

#[test]
fn pcap_stops_at_its_size() {
    let t = Topology::new();
    let cap = t.dir().join("small.pcap");
    let c = cap.to_string_lossy().into_owned();
    let mut a = start(&t, &["--pcap", &c, "--pcap-size", "3000", "--debug"]);
    t.guest()
        .dhcp()
        .unwrap_or_else(|e| panic!("{e}\n{}", a.diagnose()));
    pings(&t, 20);
    let len = std::fs::metadata(&cap).unwrap().len();
    assert!(len <= 3000 && len > 24 + 300, "capture is {len} bytes");
    // What was written is whole: tcpdump reads every record.
    let text = tcpdump(&cap);
    assert!(text.contains("BOOTP/DHCP"), "{text}");
    a.stop(Duration::from_secs(2));
    assert!(a.log().contains("reached --pcap-size 3000"), "{}", a.log());
    assert!(a.log().contains("over --pcap-size"), "{}", a.log());
}

#[test]
fn log_file_stays_under_log_size_with_trace() {
    let t = Topology::new();
    let log = t.dir().join("airlock.log");
    let l = log.to_string_lossy().into_owned();
    let size = 16384u64;
    let mut a = start(&t, &["--log-file", &l, "--log-size", "16384", "--trace"]);
    t.guest()
        .dhcp()
        .unwrap_or_else(|e| panic!("{e}\n{}", a.diagnose()));
    let ino = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&log).unwrap().ino()
    };
    let mut max = 0;
    for _ in 0..10 {
        pings(&t, 20);
        max = max.max(std::fs::metadata(&log).unwrap().len());
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(max <= size, "log grew to {max} > {size}");
    assert!(text.len() as u64 > size / 2, "rotation keeps recent lines");
    // 200 pings at --trace write far more than 16 KiB: it rotated, in place.
    assert!(!text.contains("link up"), "the oldest lines went first");
    assert!(text.lines().filter(|l| l.contains("trace: ")).count() > 50);
    assert!(
        text.lines().all(|l| l.contains(" airlock[")),
        "whole lines only"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&log).unwrap().ino(), ino);
    assert!(a.is_running(), "{}", a.diagnose());
}

#[test]
fn sigusr1_logs_a_summary_and_keeps_running() {
    let t = Topology::new();
    let log = t.dir().join("stats.log");
    let l = log.to_string_lossy().into_owned();
    let mut a = start(&t, &["--log-file", &l]);
    t.guest()
        .dhcp()
        .unwrap_or_else(|e| panic!("{e}\n{}", a.diagnose()));
    let mut srv = host_server(&t, "127.0.0.1", "7102");
    guest_echo(&t, &mut a, "10.0.2.2", "7102");
    srv.wait_exit(Duration::from_secs(10));
    // A frame airlock drops and counts: an unknown EtherType.
    a.inject(&support::frames::ethernet(
        [0x52, 0x55, 10, 0, 2, 2],
        [0x02, 0, 0, 0, 0, 9],
        0x88b5,
        &[0; 46],
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = nix::unistd::Pid::from_raw(a.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).unwrap();
    wait_for("the stats lines", Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("stats: eth_unknown_type")
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let line = |p: &str| {
        text.lines()
            .find(|l| l.contains(p))
            .unwrap_or_else(|| panic!("no {p:?} in\n{text}"))
            .to_string()
    };
    let link = line("stats: link: rx ");
    let rx: u64 = link
        .split("rx ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(rx >= 8, "{link}");
    assert!(line("stats: flows: tcp ").contains("udp "), "{text}");
    assert!(line("stats: eth_unknown_type: ").ends_with(": 1"), "{text}");
    assert!(line("stats: flows_opened: ").len() > 20, "{text}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(a.is_running(), "SIGUSR1 must not end airlock");
}
