//! `--vhost-user` (issue 18) against the real binary, driven by the test
//! front-end (`support::vhost_frontend`: rust-vmm's vhost-user front-end,
//! memfd guest memory, a virtio-net driver's side of the rings) bridged to
//! the guest namespace's tap0, so the guest is a real Linux stack: lease,
//! ping, DNS, a forward, 100 MB with SHA-256 each way, a front-end
//! reconnect; then hostile drivers, each answered with a device reset (the
//! rings' error eventfds fire) and never a crash. No QEMU can drive a
//! vhost-user-net backend on these machines (see tests/vmm.rs).
//!
//! Every server the guest reaches listens on the host namespace's
//! loopback; the resolver is this file's own. Meant for the release
//! binary: `cargo test --release --test vhost_user`.

mod support;

use serde_json::Value;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::process::Daemon;
use support::relay::in_netns;
use support::vhost_frontend::{
    RawDesc, VhostFrontend, DESC_NEXT, DESC_WRITE, RXQ, RX_BIG, RX_SMALL, TXQ, TX_BUF, VNET_HDR,
};
use support::{Helper, LinkMode, Topology, AIRLOCK};
use vhost::VhostBackend;

const TOOL: &str = include_str!("tcp_tool.py");
const MB100: u64 = 100 * 1000 * 1000;
const ANSWER: [u8; 4] = [192, 0, 2, 77];

/// airlock in the host namespace serving vhost-user on a socket.
struct Rig {
    a: Daemon,
    t: Topology,
    sock: PathBuf,
}

impl Rig {
    fn new(args: &[&str]) -> Rig {
        Rig::on(Topology::new(), args)
    }

    fn on(t: Topology, args: &[&str]) -> Rig {
        let sock = t.dir().join("vhost.sock");
        let s = sock.to_string_lossy().into_owned();
        let mut argv = vec![
            AIRLOCK,
            "--vhost-user",
            "--socket",
            &s,
            "--foreground",
            "--debug",
        ];
        argv.extend_from_slice(args);
        let log = t.dir().join("airlock.log");
        let a = Daemon::spawn("airlock", &mut t.host_cmd(&argv), &log);
        Rig { a, t, sock }
    }

    fn connect(&mut self) -> VhostFrontend {
        VhostFrontend::connect(&self.sock)
            .unwrap_or_else(|e| panic!("front-end: {e}\n{}", self.a.diagnose()))
    }

    /// Connect, bridge to tap0, lease an address.
    fn guest_up(&mut self) -> VhostFrontend {
        self.guest_up_with(RX_BIG)
    }

    /// [`Rig::guest_up`] with receive buffers of `rx_len` bytes.
    fn guest_up_with(&mut self, rx_len: u32) -> VhostFrontend {
        let mut fe = VhostFrontend::connect_with(&self.sock, rx_len)
            .unwrap_or_else(|e| panic!("front-end: {e}\n{}", self.a.diagnose()));
        fe.start_bridge(self.t.guest_ns()).expect("bridge");
        if let Err(e) = self.t.guest().dhcp() {
            panic!("{e}\n{}\n{}", fe.describe(), self.a.diagnose());
        }
        fe
    }

    fn tool(&self, side_guest: bool, args: &[&str], timeout: Duration) -> Value {
        run_tool(&self.t, side_guest, args, timeout)
    }

    fn spawn_tool(&self, side_guest: bool, name: &str, args: &[&str]) -> Daemon {
        spawn_tool(&self.t, side_guest, name, args)
    }

    /// SIGTERM; the `--debug` exit report.
    fn stop(&mut self) -> String {
        let st = self.a.stop(Duration::from_secs(5));
        assert!(st.is_some_and(|s| s.success()), "{}", self.a.diagnose());
        self.a.log()
    }
}

/// At least `min` frames from airlock had partial checksums, and every one
/// the front-end finished (the first `vhost_frontend::PARTIAL_CHECKED`)
/// was valid.
fn assert_partial_checksums(fe: &VhostFrontend, min: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let s = fe.stats();
    let (partial, bad) = (
        s.partial_from_airlock.load(Relaxed),
        s.bad_partial_from_airlock.load(Relaxed),
    );
    assert!(partial >= min, "{partial} partial: {}", fe.describe());
    assert_eq!(bad, 0, "{}", fe.describe());
}

/// Run `tcp_tool.py` with `args` in the guest or the host namespace; its
/// last JSON line.
fn run_tool(t: &Topology, side_guest: bool, args: &[&str], timeout: Duration) -> Value {
    let tool = t.dir().join("tcp_tool.py");
    std::fs::write(&tool, TOOL).unwrap();
    let tool = tool.to_string_lossy().into_owned();
    let mut argv = vec!["python3", tool.as_str()];
    argv.extend_from_slice(args);
    let o = if side_guest {
        t.guest_run(&argv, timeout)
    } else {
        t.host_run(&argv, timeout)
    };
    assert!(o.success(), "{args:?}: {}", o.describe());
    last_json(&o.stdout).unwrap_or_else(|| panic!("{args:?}: {}", o.describe()))
}

/// Start `tcp_tool.py` (a server) and wait until it says it is ready.
fn spawn_tool(t: &Topology, side_guest: bool, name: &str, args: &[&str]) -> Daemon {
    let tool = t.dir().join("tcp_tool.py");
    std::fs::write(&tool, TOOL).unwrap();
    let tool = tool.to_string_lossy().into_owned();
    let mut argv = vec!["python3", tool.as_str()];
    argv.extend_from_slice(args);
    let mut cmd = if side_guest {
        t.guest_cmd(&argv)
    } else {
        t.host_cmd(&argv)
    };
    let mut d = Daemon::spawn(name, &mut cmd, &t.dir().join(format!("{name}.log")));
    wait_for_line(&mut d, |l| l == "ready");
    d
}

fn wait_for_line(d: &mut Daemon, ready: impl Fn(&str) -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !d.log().lines().any(&ready) {
        assert!(d.is_running() && Instant::now() < end, "{}", d.diagnose());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (frames built in the guest's receive buffers, frames copied in) from
/// the `--debug` exit report.
fn rx_paths(log: &str) -> (u64, u64) {
    let field = |name: &str| {
        log.lines()
            .rev()
            .filter_map(|l| l.split_once(name))
            .filter_map(|(_, r)| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .next()
            .unwrap_or(0)
    };
    (field("rx in place "), field("rx copied "))
}

fn last_json(text: &str) -> Option<Value> {
    text.lines().rev().find_map(|l| {
        serde_json::from_str::<Value>(l)
            .ok()
            .filter(Value::is_object)
    })
}

/// A resolver on the host namespace's loopback answering every A query
/// with [`ANSWER`]; returns its port.
fn resolver(ns: &str) -> u16 {
    let u = in_netns(ns, || UdpSocket::bind("127.0.0.1:0")).unwrap();
    let port = u.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut b = [0u8; 1500];
        while let Ok((n, peer)) = u.recv_from(&mut b) {
            if n < 17 {
                continue;
            }
            let mut r = b[..n].to_vec();
            r[2] = 0x81;
            r[3] = 0x80;
            r[7] = 1; // one answer
            r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(&ANSWER);
            let _ = u.send_to(&r, peer);
        }
    });
    port
}

fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// An ARP request from the guest for the virtual host, as a raw frame.
fn arp_request() -> Vec<u8> {
    let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    let arp = support::frames::arp_request(
        mac,
        "10.0.2.15".parse().unwrap(),
        "10.0.2.2".parse().unwrap(),
    );
    support::frames::ethernet([0xff; 6], mac, 0x0806, &arp)
}

fn is_arp_reply(f: &[u8]) -> bool {
    f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2]
}

/// The device answers an ARP request through the rings: it is running.
fn arp_round_trip(fe: &VhostFrontend) -> bool {
    for _ in 0..3 {
        fe.send_frame(&arp_request());
        if fe
            .recv_frames(Duration::from_secs(1))
            .iter()
            .any(|f| is_arp_reply(f))
        {
            return true;
        }
    }
    false
}

#[test]
fn lease_ping_dns_forward_and_bulk_both_ways() {
    let t = Topology::new();
    let up = format!("127.0.0.1:{}", resolver(t.host_ns()));
    let mut r = Rig::on(t, &["--hostfwd", "tcp::18080-:8080", "--dns-upstream", &up]);

    let mut fe = r.connect();
    // What the device offers and reports.
    let f = fe.features;
    for bit in [32u32, 29, 15, 5, 3, 16, 0, 1, 11, 12, 7, 8] {
        assert!(f & (1 << bit) != 0, "feature bit {bit} not offered: {f:#x}");
    }
    assert_eq!(f & (1 << 22), 0, "MQ must stay off");
    let (mac, status, pairs, mtu) = fe.config().expect("GET_CONFIG");
    assert_eq!(
        (mac, status, pairs, mtu),
        ([0x52, 0x54, 0, 0x12, 0x34, 0x56], 1, 1, 65520)
    );
    fe.start_bridge(r.t.guest_ns()).expect("bridge");
    let lease =
        r.t.guest()
            .dhcp()
            .unwrap_or_else(|e| panic!("{e}\n{}\n{}", fe.describe(), r.a.diagnose()));
    assert_eq!(lease.ip.to_string(), "10.0.2.15", "{lease:?}");
    assert_eq!(r.t.guest().mtu(), 65520);
    r.t.guest().ping("10.0.2.2").unwrap();

    // DNS through the virtual resolver to this file's.
    let g = in_netns(r.t.guest_ns(), || UdpSocket::bind("0.0.0.0:0")).unwrap();
    g.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut answered = false;
    for _ in 0..3 {
        g.send_to(&dns_query(0x4242, "vhost.airlock.test"), "10.0.2.3:53")
            .unwrap();
        let mut b = [0u8; 512];
        if let Ok((n, _)) = g.recv_from(&mut b) {
            assert!(b[..n].ends_with(&ANSWER), "{:?}", &b[..n]);
            answered = true;
            break;
        }
    }
    assert!(answered, "no DNS answer\n{}", r.a.diagnose());

    // 100 MB each way, SHA-256 on both ends; host→guest over the forward.
    let size = MB100.to_string();
    let mut sink = r.spawn_tool(false, "up", &["sink", "127.0.0.1", "9000", "0"]);
    let c = r.tool(
        true,
        &["send", "10.0.2.2", "9000", &size],
        Duration::from_secs(180),
    );
    assert!(sink
        .wait_exit(Duration::from_secs(20))
        .is_some_and(|s| s.success()));
    let srv = last_json(&sink.log()).unwrap();
    assert_eq!(srv["sha"], c["sha"], "guest→host hash");
    assert_eq!(srv["n"].as_u64(), Some(MB100));
    let up_s = c["secs"].as_f64().unwrap_or(0.0);

    let mut sink = r.spawn_tool(true, "down", &["sink", "0.0.0.0", "8080", "0"]);
    let c = r.tool(
        false,
        &["send", "127.0.0.1", "18080", &size],
        Duration::from_secs(180),
    );
    assert!(sink
        .wait_exit(Duration::from_secs(20))
        .is_some_and(|s| s.success()));
    let srv = last_json(&sink.log()).unwrap();
    assert_eq!(srv["sha"], c["sha"], "host→guest hash");
    assert_eq!(srv["n"].as_u64(), Some(MB100));
    let down_s = c["secs"].as_f64().unwrap_or(0.0);
    eprintln!(
        "vhost-user: guest→host 100 MB in {up_s:.2} s ({:.2} Gbit/s), host→guest {down_s:.2} s ({:.2} Gbit/s); {}",
        MB100 as f64 * 8.0 / up_s.max(1e-9) / 1e9,
        MB100 as f64 * 8.0 / down_s.max(1e-9) / 1e9,
        fe.describe()
    );
    fe.stop_bridge();
    // The driver took GUEST_CSUM: the segments toward it left their
    // checksums partial (one pass over the payload fewer), and those
    // finished here were right.
    assert_partial_checksums(&fe, MB100 / 65536);
    // The DNS answer came through a UDP flow, its checksum left partial
    // too (and finished right).
    let udp = fe.stats().partial_udp_from_airlock.load(Ordering::Relaxed);
    assert!(udp >= 1, "{}", fe.describe());
    let log = r.stop();
    assert!(log.contains("vhost-user: device resets 0"), "{log}");
    // The 100 MB toward the guest were built in its receive buffers (64 KiB
    // each), not copied in: at least one frame per 64 KiB.
    let (in_place, _) = rx_paths(&log);
    assert!(in_place > MB100 / 65536, "{log}");
    // A burst's frames stay side by side in the link's buffer, so the
    // guest's segments of one flow left in shared writes.
    let held = |name| support::helper::counter(&log, name);
    let (writes, segments) = (held("tcp_held_writes"), held("tcp_held_segments"));
    eprintln!("held: {segments} segments in {writes} writes");
    assert!(writes > 0 && segments > writes, "{log}");
}

/// MTU 1500, as most guests run: the guest kernel still hands over 64 KiB
/// TSO segments with partial checksums (HOST_TSO4 + CSUM; the tap passes
/// them whole), and airlock takes them as they are; toward the guest,
/// airlock sends 64 KiB GSO segments (GUEST_TSO4), which the guest takes
/// whole too.
#[test]
fn tso_segments_at_mtu_1500_pass_whole() {
    let mut r = Rig::new(&["--mtu", "1500", "--hostfwd", "tcp::18080-:8080"]);
    let fe = r.guest_up();
    assert_eq!(r.t.guest().mtu(), 1500);
    let bytes = 20 * 1000 * 1000u64;
    let size = bytes.to_string();
    let mut sink = r.spawn_tool(false, "up", &["sink", "127.0.0.1", "9000", "0"]);
    let c = r.tool(
        true,
        &["send", "10.0.2.2", "9000", &size],
        Duration::from_secs(120),
    );
    assert!(sink
        .wait_exit(Duration::from_secs(20))
        .is_some_and(|s| s.success()));
    assert_eq!(last_json(&sink.log()).unwrap()["sha"], c["sha"]);
    // At 1448 bytes a segment that would be 13 800 frames; TSO segments
    // make it a few hundred.
    let frames = fe
        .stats()
        .to_airlock
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        frames < bytes / 1448 / 4,
        "{frames} frames: {}",
        fe.describe()
    );

    let mut sink = r.spawn_tool(true, "down", &["sink", "0.0.0.0", "8080", "0"]);
    let c = r.tool(
        false,
        &["send", "127.0.0.1", "18080", &size],
        Duration::from_secs(120),
    );
    assert!(sink
        .wait_exit(Duration::from_secs(20))
        .is_some_and(|s| s.success()));
    assert_eq!(last_json(&sink.log()).unwrap()["sha"], c["sha"]);
    let frames = fe
        .stats()
        .from_airlock
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        frames < bytes / 1448 / 4,
        "{frames} frames from airlock: {}",
        fe.describe()
    );
    // GSO segments carry partial checksums too (what a real backend sends).
    assert_partial_checksums(&fe, bytes / 65536);
    let log = r.stop();
    assert!(log.contains("vhost-user: device resets 0,"), "{log}");
}

#[test]
fn frontend_reconnects_to_the_same_airlock() {
    let mut r = Rig::new(&["--hostfwd", "tcp::18080-:8080"]);
    let fe = r.guest_up();
    r.t.guest().ping("10.0.2.2").unwrap();
    drop(fe);
    // The VMM went away: airlock waits for the next one.
    std::thread::sleep(Duration::from_millis(200));
    assert!(r.a.is_running(), "{}", r.a.diagnose());
    // This one offers Linux-sized receive buffers: every large frame is
    // merged over several (MRG_RXBUF, num_buffers), not built in place.
    let fe = r.guest_up_with(RX_SMALL);
    r.t.guest().ping("10.0.2.2").unwrap();
    let size = (10 * 1000 * 1000u64).to_string();
    let mut sink = r.spawn_tool(true, "down", &["sink", "0.0.0.0", "8080", "0"]);
    let c = r.tool(
        false,
        &["send", "127.0.0.1", "18080", &size],
        Duration::from_secs(120),
    );
    assert!(sink
        .wait_exit(Duration::from_secs(20))
        .is_some_and(|s| s.success()));
    assert_eq!(
        last_json(&sink.log()).unwrap()["sha"],
        c["sha"],
        "{}",
        fe.describe()
    );
    // Merged frames keep their partial checksums' place in the first buffer.
    assert_partial_checksums(&fe, 10 * 1000 * 1000 / 65536);
    let log = r.stop();
    assert_eq!(log.matches("VMM connected").count(), 2, "{log}");
    // Frames too large for one 4 KiB buffer took the copying path.
    let (_, copied) = rx_paths(&log);
    assert!(copied > 10_000_000 / 65536, "{log}");
}

#[test]
fn one_off_exits_when_the_frontend_leaves() {
    let mut r = Rig::new(&["--one-off"]);
    let fe = r.connect();
    assert!(arp_round_trip(&fe), "{}", r.a.diagnose());
    drop(fe);
    let st = r.a.wait_exit(Duration::from_secs(5));
    assert!(st.is_some_and(|s| s.success()), "{}", r.a.diagnose());
}

/// One hostile driver after another on the same airlock: each gets the
/// error eventfd (device reset); after setting the rings up again the
/// device answers ARP, and airlock never dies.
#[test]
fn hostile_chains_reset_the_device_never_crash() {
    let mut r = Rig::new(&[]);
    let mut fe = r.connect();
    assert!(arp_round_trip(&fe), "{}", r.a.diagnose());
    let hdr_and = |len: u32| VNET_HDR as u32 + len;
    let cases: Vec<(&str, Vec<RawDesc>)> = vec![
        (
            "loop",
            vec![(0, TX_BUF, 20, DESC_NEXT, 1), (1, TX_BUF, 20, DESC_NEXT, 0)],
        ),
        (
            "index past the table",
            vec![(0, TX_BUF, 20, DESC_NEXT, 999)],
        ),
        (
            "outside guest memory",
            vec![(0, 0x4000_0000, hdr_and(60), 0, 0)],
        ),
        (
            "straddles the end of memory",
            vec![(0, (32 << 20) - 30, 100, 0, 0)],
        ),
        (
            "device-writable in the transmit ring",
            vec![(0, TX_BUF, hdr_and(60), DESC_WRITE, 0)],
        ),
        ("indirect", vec![(0, TX_BUF, 16, 4, 0)]),
        ("shorter than the header", vec![(0, TX_BUF, 5, 0, 0)]),
    ];
    for (what, descs) in cases {
        fe.post_raw(TXQ, &descs, 0);
        assert!(
            fe.wait_err(TXQ, Duration::from_secs(3)),
            "{what}: no reset\n{}",
            r.a.diagnose()
        );
        assert!(r.a.is_running(), "{what}: {}", r.a.diagnose());
        fe.setup_ring(TXQ).unwrap();
        fe.setup_ring(RXQ).unwrap();
        assert!(arp_round_trip(&fe), "{what}: not back\n{}", r.a.diagnose());
    }

    // An avail index claiming more chains than the ring holds.
    fe.force_avail(TXQ, 1000);
    assert!(
        fe.wait_err(TXQ, Duration::from_secs(3)),
        "avail index: {}",
        r.a.diagnose()
    );
    fe.setup_ring(TXQ).unwrap();
    fe.setup_ring(RXQ).unwrap();
    assert!(arp_round_trip(&fe));

    // A receive buffer the device may not write, then one outside memory.
    for (what, d) in [
        (
            "read-only receive buffer",
            (0u16, 0x10000u64, 4096u32, 0u16, 0u16),
        ),
        (
            "receive buffer outside memory",
            (0, 0x8000_0000, 4096, DESC_WRITE, 0),
        ),
    ] {
        // The receive ring holds the bad buffer only.
        fe.setup_ring_bare(RXQ).unwrap();
        fe.post_raw(RXQ, &[d], 0);
        fe.send_frame(&arp_request());
        assert!(
            fe.wait_err(RXQ, Duration::from_secs(3)),
            "{what}: {}",
            r.a.diagnose()
        );
        fe.setup_ring(TXQ).unwrap();
        fe.setup_ring(RXQ).unwrap();
        assert!(arp_round_trip(&fe), "{what}: not back");
    }

    // Wrong sizes: a ring that is not a power of two, or too large, is
    // refused (REPLY_ACK carries the error) and nothing breaks.
    assert!(fe.fe.set_vring_num(TXQ, 300).is_err());
    assert!(fe.fe.set_vring_num(TXQ, 4096).is_err());
    fe.setup_ring(TXQ).unwrap();
    assert!(arp_round_trip(&fe), "{}", r.a.diagnose());
    assert!(r.a.is_running());
    let log = r.stop();
    assert!(!log.contains("vhost-user: device resets 0,"), "{log}");
}

/// The memory table changes while buffers are in flight: a table that
/// no longer holds the transmit buffers makes the next chain a fault
/// (device reset), one that drops the rings stops them; the full table
/// brings everything back.
#[test]
fn memory_table_changed_mid_flight() {
    let mut r = Rig::new(&[]);
    let mut fe = r.connect();
    assert!(arp_round_trip(&fe), "{}", r.a.diagnose());
    // Rings and receive buffers stay, transmit buffers (at 8 MiB) go.
    fe.set_mem_table(0, 8 << 20).unwrap();
    fe.send_frame(&arp_request());
    assert!(
        fe.wait_err(TXQ, Duration::from_secs(3)),
        "{}",
        r.a.diagnose()
    );
    // A table without the rings: they stop, nothing is read.
    fe.set_mem_table(16 << 20, 16 << 20).unwrap();
    fe.setup_ring(TXQ).unwrap_err();
    fe.send_frame(&arp_request());
    assert!(fe.recv_frames(Duration::from_millis(500)).is_empty());
    assert!(r.a.is_running(), "{}", r.a.diagnose());
    // Everything back.
    fe.set_mem_table(0, 32 << 20).unwrap();
    fe.setup_ring(TXQ).unwrap();
    fe.setup_ring(RXQ).unwrap();
    assert!(arp_round_trip(&fe), "{}", r.a.diagnose());
    // A region larger than its memfd is refused (touching it would fault).
    assert!(fe.set_mem_table(0, 64 << 20).is_err());
    assert!(arp_round_trip(&fe));
    r.stop();
}

#[test]
fn print_capabilities_says_net_and_the_other_modes_list_vhost_user() {
    let o = std::process::Command::new(AIRLOCK)
        .args(["--vhost-user", "--print-capabilities"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"type": "net"}));
    let o = std::process::Command::new(AIRLOCK)
        .arg("--print-capabilities")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["type"], "slirp-helper");
    assert!(
        v["airlock-features"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "vhost-user"),
        "{v}"
    );
    // --vhost-user with a tap is a usage error.
    let o = std::process::Command::new(AIRLOCK)
        .args(["--vhost-user", "--netns", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat, counted after the ")" of the name.
    (tick(11) + tick(12)) / 100.0
}

/// The transfer tool of [`bench_vhost_user`] (`AIRLOCK_BENCH_TOOL`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tool {
    /// `tcp_tool.py`, SHA-256 on both ends: checks the bytes, but Python
    /// and the hash bound it near 2 Gbit/s.
    Sha,
    /// iperf3 (tests/setup.sh installs it): the backend is the bottleneck.
    Iperf3,
}

/// One direction of one backend: Gbit/s, the backend's CPU s/GB, and the
/// VMM stand-in's (this process: the relay or the front-end's bridge),
/// which says whether it, rather than the backend, bounds the throughput.
#[derive(Clone, Copy, Default)]
struct Leg {
    gbit: f64,
    cpu_per_gb: f64,
    vmm_per_gb: f64,
}

/// `bytes` guest→host to `peer` (the host's loopback behind it) and
/// host→guest over the backend's forward 127.0.0.1:18080 → guest:8080,
/// with `tool`; `pid` is the backend whose CPU is counted.
fn measure(t: &Topology, pid: u32, peer: &str, tool: Tool, bytes: u64) -> (Leg, Leg) {
    let leg = |side_guest: bool| -> Leg {
        let (dst, port) = if side_guest {
            (peer, "9000")
        } else {
            ("127.0.0.1", "18080")
        };
        let size = bytes.to_string();
        let (mut server, c0) = match tool {
            Tool::Sha => {
                let (host, port) = if side_guest {
                    ("127.0.0.1", "9000")
                } else {
                    ("0.0.0.0", "8080")
                };
                let d = spawn_tool(t, !side_guest, "sink", &["sink", host, port, "0"]);
                (d, (cpu_secs(pid), cpu_secs(std::process::id())))
            }
            Tool::Iperf3 => {
                let port = if side_guest { "9000" } else { "8080" };
                let argv = ["iperf3", "-s", "-1", "-p", port, "--forceflush"];
                let mut cmd = if side_guest {
                    t.host_cmd(&argv)
                } else {
                    t.guest_cmd(&argv)
                };
                let mut d = Daemon::spawn("iperf3", &mut cmd, &t.dir().join("iperf3.log"));
                wait_for_line(&mut d, |l| l.contains("Server listening"));
                (d, (cpu_secs(pid), cpu_secs(std::process::id())))
            }
        };
        let gbit = match tool {
            Tool::Sha => {
                let c = run_tool(
                    t,
                    side_guest,
                    &["send", dst, port, &size],
                    Duration::from_secs(900),
                );
                assert!(server
                    .wait_exit(Duration::from_secs(30))
                    .is_some_and(|s| s.success()));
                assert_eq!(last_json(&server.log()).unwrap()["sha"], c["sha"]);
                bytes as f64 * 8.0 / c["secs"].as_f64().unwrap_or(0.0).max(1e-9) / 1e9
            }
            Tool::Iperf3 => {
                let argv = ["iperf3", "-c", dst, "-p", port, "-n", &size, "-J"];
                let timeout = Duration::from_secs(900);
                let o = if side_guest {
                    t.guest_run(&argv, timeout)
                } else {
                    t.host_run(&argv, timeout)
                };
                assert!(o.success(), "iperf3: {}", o.describe());
                let j: Value = serde_json::from_str(&o.stdout).expect("iperf3 -J output");
                // The receiver's count stops with the sender's clock, a
                // little short of everything sent.
                let sent = j["end"]["sum_sent"]["bytes"].as_u64().unwrap_or(0);
                let got = j["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
                assert!(
                    sent >= bytes && got >= bytes / 100 * 95,
                    "iperf3 sent {sent}, received {got} of {bytes}"
                );
                let _ = server.wait_exit(Duration::from_secs(10));
                j["end"]["sum_received"]["bits_per_second"]
                    .as_f64()
                    .unwrap_or(0.0)
                    / 1e9
            }
        };
        let gb = bytes as f64 / 1e9;
        Leg {
            gbit,
            cpu_per_gb: (cpu_secs(pid) - c0.0) / gb,
            vmm_per_gb: (cpu_secs(std::process::id()) - c0.1) / gb,
        }
    };
    (leg(true), leg(false))
}

/// The lead's benchmark (ignored by default, run on a quiet machine): in
/// one topology and with one transfer tool, `AIRLOCK_BENCH_MB` (default
/// 1000) each way through, in turn,
/// - airlock over a STREAM socket link (the harness's tap ↔ socket relay,
///   as a VMM's `-netdev stream`, guest MTU 65520: compare.sh's link),
/// - airlock over vhost-user (the test front-end, GUEST_CSUM and TSO on),
/// - passt `--vhost-user` behind the same front-end, when
///   `AIRLOCK_BENCH_PASST` names a passt binary;
///
/// then Gbit/s and the backend's CPU s/GB for each, and the ratio of
/// vhost-user's CPU per GB to STREAM's (issue 18's target: at most 0.5).
/// `AIRLOCK_BENCH_TOOL=iperf3` moves the bytes with iperf3 instead of the
/// SHA-256 tool, so that the backend, not Python, is the bottleneck.
///
/// `AIRLOCK_BENCH_TOOL=iperf3 cargo test --release --test vhost_user bench_vhost_user -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_vhost_user() {
    let mb: u64 = std::env::var("AIRLOCK_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let bytes = mb * 1000 * 1000;
    let tool = match std::env::var("AIRLOCK_BENCH_TOOL").as_deref() {
        Ok("iperf3") => Tool::Iperf3,
        Ok("sha") | Err(_) => Tool::Sha,
        Ok(other) => panic!("AIRLOCK_BENCH_TOOL={other}: sha or iperf3"),
    };
    let passt = std::env::var("AIRLOCK_BENCH_PASST").ok();
    // One topology for all: STREAM first, as its relay takes tap0 without
    // the offloads the vhost-user front-ends then set on it.
    let t = Topology::new();
    let mut results: Vec<(&str, Leg, Leg)> = Vec::new();
    let fwd = ["--hostfwd", "tcp::18080-:8080"];

    let mut h = Helper::airlock(&t, LinkMode::Stream, &fwd);
    h.wait_ready(&t, Duration::from_secs(10)).unwrap();
    t.guest()
        .dhcp()
        .unwrap_or_else(|e| panic!("{e}\n{}", h.diagnose()));
    assert_eq!(t.guest().mtu(), 65520);
    let (g2h, h2g) = measure(&t, h.pid(), "10.0.2.2", tool, bytes);
    results.push(("airlock STREAM", g2h, h2g));
    drop(h);

    let sock = t.dir().join("vhost.sock");
    let s = sock.to_string_lossy().into_owned();
    let mut backends: Vec<(&str, Vec<&str>, &str)> = vec![(
        "airlock vhost-user",
        vec![
            AIRLOCK,
            "--vhost-user",
            "--socket",
            &s,
            "--foreground",
            fwd[0],
            fwd[1],
        ],
        "10.0.2.2",
    )];
    if let Some(p) = &passt {
        // passt's guest takes the host's address; its gateway is the
        // host's loopback.
        let argv = vec![
            p.as_str(),
            "--vhost-user",
            "--socket",
            &s,
            "-f",
            "-q",
            "-4",
            "-t",
            "18080:8080",
        ];
        backends.push(("passt vhost-user", argv, "192.0.2.1"));
    }
    for (name, argv, peer) in backends {
        let _ = std::fs::remove_file(&sock);
        let log = t.dir().join(format!("{}.log", name.replace(' ', "-")));
        let mut a = Daemon::spawn(name, &mut t.host_cmd(&argv), &log);
        let end = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(a.is_running() && Instant::now() < end, "{}", a.diagnose());
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut fe =
            VhostFrontend::connect(&sock).unwrap_or_else(|e| panic!("{e}\n{}", a.diagnose()));
        fe.start_bridge(t.guest_ns()).expect("bridge");
        t.guest()
            .dhcp()
            .unwrap_or_else(|e| panic!("{e}\n{}", a.diagnose()));
        let (g2h, h2g) = measure(&t, a.pid(), peer, tool, bytes);
        results.push((name, g2h, h2g));
        fe.stop_bridge();
        drop(fe);
        a.stop(Duration::from_secs(5));
    }

    let tool_name = if tool == Tool::Iperf3 {
        "iperf3"
    } else {
        "sha256"
    };
    eprintln!("bench_vhost_user: {mb} MB each way with {tool_name}, one topology");
    for (name, g2h, h2g) in &results {
        eprintln!(
            "  {name:<20} g2h {:6.2} Gbit/s {:5.2} CPU s/GB (VMM side {:4.2})   \
             h2g {:6.2} Gbit/s {:5.2} CPU s/GB (VMM side {:4.2})",
            g2h.gbit, g2h.cpu_per_gb, g2h.vmm_per_gb, h2g.gbit, h2g.cpu_per_gb, h2g.vmm_per_gb
        );
    }
    let (_, sg, sh) = results[0];
    let (_, vg, vh) = results[1];
    eprintln!(
        "  vhost-user / STREAM CPU per GB: g2h {:.2}, h2g {:.2} (target <= 0.50)",
        vg.cpu_per_gb / sg.cpu_per_gb.max(1e-9),
        vh.cpu_per_gb / sh.cpu_per_gb.max(1e-9)
    );
}

/// A VMM that stops in the middle of a request is taken for gone after
/// 200 ms: airlock does not hang on it and serves the next one.
#[test]
fn a_stalled_request_costs_the_connection_not_the_loop() {
    use std::io::Write;
    let mut r = Rig::new(&[]);
    let end = Instant::now() + Duration::from_secs(5);
    let mut s = loop {
        match std::os::unix::net::UnixStream::connect(&r.sock) {
            Ok(s) => break s,
            Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("{e}"),
        }
    };
    // Half of a GET_FEATURES header, then silence.
    s.write_all(&[1, 0, 0, 0, 1, 0]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(r.a.is_running(), "{}", r.a.diagnose());
    let fe = r.connect();
    assert!(arp_round_trip(&fe), "{}", r.a.diagnose());
    drop(s);
    let log = r.stop();
    assert_eq!(log.matches("VMM connected").count(), 2, "{log}");
}
