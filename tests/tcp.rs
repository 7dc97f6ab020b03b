//! TCP translation (issue 3) against the real binary and real Linux TCP
//! stacks on both sides: bulk transfers with SHA-256 both ways, forwards in
//! both syntaxes, 200 concurrent connections, half-close, refusal and
//! resets, iperf3, a SYN flood, and `--restrict`.
//!
//! Every endpoint is `tests/tcp_tool.py` (python3) run in the guest
//! namespace or in the host namespace, where servers listen on loopback and
//! the guest reaches them as 10.0.2.2; forwards are reached from the host
//! namespace at 127.0.0.1. Meant for the release binary:
//! `cargo test --release --test tcp`. Measured figures go to stderr
//! (`--nocapture` shows them).

mod support;

use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::process::Daemon;
use support::{counter, Helper, LinkMode, Topology, AIRLOCK};

const TOOL: &str = include_str!("tcp_tool.py");
const MB100: u64 = 100 * 1000 * 1000;

/// airlock on a fresh topology, with the guest configured by DHCP.
struct Rig {
    // Declared first: dropped (stopped) before the namespaces go.
    a: Helper,
    t: Topology,
    tool: String,
}

#[derive(Clone, Copy)]
enum Side {
    Guest,
    Host,
}

impl Rig {
    fn new(mode: LinkMode, args: &[&str]) -> Rig {
        let t = Topology::new();
        let tool = t.dir().join("tcp_tool.py");
        std::fs::write(&tool, TOOL).expect("write tcp_tool.py");
        let mut a = Helper::airlock(&t, mode, args);
        if let Err(e) = a.wait_ready(&t, Duration::from_secs(5)) {
            panic!("airlock {mode:?} {args:?} did not come up: {e}");
        }
        if let Err(e) = t.guest().dhcp() {
            panic!("{e}\n{}", a.diagnose());
        }
        Rig {
            a,
            t,
            tool: tool.to_string_lossy().into_owned(),
        }
    }

    fn argv<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["python3", self.tool.as_str()];
        v.extend_from_slice(args);
        v
    }

    /// Run a tool mode to completion; its JSON result.
    fn run(&mut self, side: Side, args: &[&str], timeout: Duration) -> Value {
        let argv = self.argv(args);
        let o = match side {
            Side::Guest => self.t.guest_run(&argv, timeout),
            Side::Host => self.t.host_run(&argv, timeout),
        };
        if !o.success() {
            panic!("{args:?}: {}\n{}", o.describe(), self.a.diagnose());
        }
        last_json(&o.stdout).unwrap_or_else(|| panic!("{args:?}: no result: {}", o.describe()))
    }

    /// Start a tool mode in the background; servers are waited for until
    /// they print "ready".
    fn spawn(&mut self, side: Side, name: &str, args: &[&str], server: bool) -> Daemon {
        let argv = self.argv(args);
        let mut cmd = match side {
            Side::Guest => self.t.guest_cmd(&argv),
            Side::Host => self.t.host_cmd(&argv),
        };
        let log = self.t.dir().join(format!("{name}.log"));
        let mut d = Daemon::spawn(name, &mut cmd, &log);
        if server {
            let end = Instant::now() + Duration::from_secs(10);
            while !d.log().lines().any(|l| l == "ready") {
                if !d.is_running() || Instant::now() > end {
                    panic!("server {name} {args:?} not ready: {}", d.diagnose());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        d
    }

    /// Wait for a background tool to finish; its JSON result.
    fn finish(&mut self, d: &mut Daemon, timeout: Duration) -> Value {
        match d.wait_exit(timeout) {
            Some(s) if s.success() => {}
            _ => panic!("{}\n{}", d.diagnose(), self.a.diagnose()),
        }
        last_json(&d.log()).unwrap_or_else(|| panic!("no result: {}", d.diagnose()))
    }
}

fn last_json(text: &str) -> Option<Value> {
    text.lines().rev().find_map(|l| {
        serde_json::from_str::<Value>(l)
            .ok()
            .filter(Value::is_object)
    })
}

/// One counter of `nstat -a` output (0 when absent, as nstat omits zeros).
fn nstat(text: &str, name: &str) -> u64 {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(name)).then(|| f.next()?.parse().ok())?
        })
        .next()
        .unwrap_or(0)
}

fn gbit(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs.max(1e-9) / 1e9
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(u64::MAX)
}

/// 100 MB from the guest to a host server, then 100 MB from the host into
/// the guest through the forward `host_port` → guest 8080; SHA-256 on both
/// ends, each receiver reading to the sender's FIN.
fn bulk_both_ways(mode: LinkMode, fwd: &[&str], host_port: &str) -> Rig {
    let mut r = Rig::new(mode, fwd);
    let size = MB100.to_string();

    let mut up = r.spawn(Side::Host, "up", &["sink", "127.0.0.1", "9000", "0"], true);
    let c = r.run(
        Side::Guest,
        &["send", "10.0.2.2", "9000", &size],
        Duration::from_secs(120),
    );
    let srv = r.finish(&mut up, Duration::from_secs(10));
    assert_eq!(c["ok"], true, "guest→host: {c} / {srv}");
    assert_eq!(s(&srv, "sha"), s(&c, "sha"), "guest→host hash");
    assert_eq!(n(&srv, "n"), MB100);
    let up_secs = c["secs"].as_f64().unwrap_or(0.0);

    let mut down = r.spawn(Side::Guest, "down", &["sink", "0.0.0.0", "8080", "0"], true);
    let c = r.run(
        Side::Host,
        &["send", "127.0.0.1", host_port, &size],
        Duration::from_secs(120),
    );
    let srv = r.finish(&mut down, Duration::from_secs(10));
    assert_eq!(c["ok"], true, "host→guest: {c} / {srv}");
    assert_eq!(s(&srv, "sha"), s(&c, "sha"), "host→guest hash");
    assert_eq!(n(&srv, "n"), MB100);
    // A connection from the host's loopback shows as the virtual host.
    assert_eq!(s(&srv, "peer"), "10.0.2.2", "{srv}");
    let down_secs = c["secs"].as_f64().unwrap_or(0.0);

    eprintln!(
        "bulk {mode:?} {fwd:?}: guest→host 100 MB in {up_secs:.2} s ({:.2} Gbit/s), \
         host→guest {down_secs:.2} s ({:.2} Gbit/s)",
        gbit(MB100, up_secs),
        gbit(MB100, down_secs)
    );
    assert!(r.a.is_running(), "{}", r.a.diagnose());
    r
}

#[test]
fn bulk_100mb_netns_hostfwd() {
    bulk_both_ways(LinkMode::Netns, &["--hostfwd", "tcp::18080-:8080"], "18080");
}

#[test]
fn bulk_100mb_stream_passt_ports() {
    let mut r = bulk_both_ways(LinkMode::Stream, &["--debug", "-t", "18081:8080"], "18081");
    assert_batched(&r.a.stop_counters());
}

#[test]
fn bulk_100mb_dgram_hostfwd_addresses() {
    bulk_both_ways(
        LinkMode::Dgram,
        &["--hostfwd", "tcp:127.0.0.1:18082-10.0.2.15:8080"],
        "18082",
    );
}

/// At MTU 1500 a DGRAM batch holds 64 frames, and a flow's in-order
/// segments of a batch leave in one `sendmsg` (`flow::Held`): 100 MB each
/// way must arrive byte for byte (SHA-256) through that path, and the
/// segments must have left in batches.
#[test]
fn bulk_100mb_dgram_mtu_1500_held_segments() {
    let mut r = bulk_both_ways(
        LinkMode::Dgram,
        &["--debug", "--mtu", "1500", "--hostfwd", "tcp::18084-:8080"],
        "18084",
    );
    assert_batched(&r.a.stop_counters());
}

/// The guest's segments left in batches (`flow::Held`), not one `send`
/// each: `log` is the `--debug` report of a bulk run.
fn assert_batched(log: &str) {
    let (writes, segments) = (
        counter(log, "tcp_held_writes"),
        counter(log, "tcp_held_segments"),
    );
    eprintln!("held: {segments} segments in {writes} writes");
    assert!(writes > 0, "nothing was held: {log}");
    assert!(
        segments >= 2 * writes,
        "{segments} segments in {writes} writes"
    );
}

/// 200 connections open at once (each client waits at a barrier until all
/// are connected), each then downloading 256 KiB checked by SHA-256.
#[test]
fn two_hundred_concurrent_connections() {
    let mut r = Rig::new(LinkMode::Netns, &[]);
    let mut srv = r.spawn(Side::Host, "fanout", &["fanout", "127.0.0.1", "9001"], true);
    let c = r.run(
        Side::Guest,
        &["fanin", "10.0.2.2", "9001", "200", "262144"],
        Duration::from_secs(120),
    );
    assert_eq!(n(&c, "ok"), 200, "{c}\n{}", r.a.diagnose());
    // The server saw all 200 open at the same time.
    let end = Instant::now() + Duration::from_secs(5);
    let state = loop {
        let v = last_json(&srv.log());
        if v.as_ref().is_some_and(|v| n(v, "served") >= 200) || Instant::now() > end {
            break v;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let state = state.unwrap_or_else(|| panic!("{}", srv.diagnose()));
    assert_eq!(n(&state, "served"), 200, "{state}");
    // All 200 were connected at once (the clients' barrier); the server
    // may not have accepted the last before the first finished.
    eprintln!(
        "200 concurrent × 256 KiB: {:.2} s, server peak {} open",
        c["secs"].as_f64().unwrap_or(0.0),
        n(&state, "peak")
    );
    assert!(r.a.is_running(), "{}", r.a.diagnose());
}

#[test]
fn half_close_both_ways() {
    let mut r = Rig::new(LinkMode::Netns, &[]);
    // The guest sends its request and shuts down writing; the host server
    // reads to that FIN and only then sends a 4 MiB reply, all of which
    // the guest still reads.
    let mut srv = r.spawn(
        Side::Host,
        "sink",
        &["sink", "127.0.0.1", "9002", "4194304"],
        true,
    );
    let c = r.run(
        Side::Guest,
        &["send", "10.0.2.2", "9002", "1048576"],
        Duration::from_secs(30),
    );
    let v = r.finish(&mut srv, Duration::from_secs(10));
    assert_eq!(c["ok"], true, "{c} / {v}");
    assert_eq!(n(&c, "reply"), 4_194_304, "{c}");
    assert_eq!(s(&v, "sha"), s(&c, "sha"));

    // The reverse: the host server sends 4 MiB and shuts down writing
    // first; the guest reads to that FIN, then sends 1 MiB, which the
    // server still reads, then FIN.
    let mut srv = r.spawn(
        Side::Host,
        "greet",
        &["greet_first", "127.0.0.1", "9003", "4194304"],
        true,
    );
    let c = r.run(
        Side::Guest,
        &["after_greeting", "10.0.2.2", "9003", "4194304", "1048576"],
        Duration::from_secs(30),
    );
    let v = r.finish(&mut srv, Duration::from_secs(10));
    assert_eq!(c["greeting_ok"], true, "{c}");
    assert_eq!(n(&c, "tail"), 0, "nothing after the server's FIN: {c}");
    assert_eq!(n(&v, "n"), 1_048_576, "{v}");
    assert_eq!(s(&v, "sha"), s(&c, "sha"));
    assert!(r.a.is_running(), "{}", r.a.diagnose());
}

#[test]
fn refused_port_and_resets_both_ways() {
    let mut r = Rig::new(LinkMode::Netns, &[]);
    // Nothing listens on 9999 in the host namespace.
    for _ in 0..3 {
        let c = r.run(
            Side::Guest,
            &["refused", "10.0.2.2", "9999"],
            Duration::from_secs(15),
        );
        assert_eq!(s(&c, "err"), "ECONNREFUSED", "{c}");
        let secs = c["secs"].as_f64().unwrap_or(f64::MAX);
        assert!(secs < 1.0, "refusal took {secs} s");
        eprintln!("refused in {:.1} ms", secs * 1000.0);
    }
    // The host server aborts (SO_LINGER 0): the guest's recv fails with
    // ECONNRESET. Then the guest aborts: the host server's recv does.
    let mut srv = r.spawn(
        Side::Host,
        "reset",
        &["resetter", "127.0.0.1", "9004"],
        true,
    );
    let c = r.run(
        Side::Guest,
        &["reset_client", "10.0.2.2", "9004"],
        Duration::from_secs(30),
    );
    let v = r.finish(&mut srv, Duration::from_secs(15));
    assert_eq!(s(&c, "err"), "ECONNRESET", "host reset at the guest: {c}");
    assert_eq!(s(&v, "first"), "data", "{v}");
    assert_eq!(s(&v, "err"), "ECONNRESET", "guest reset at the host: {v}");
    assert!(r.a.is_running(), "{}", r.a.diagnose());
}

/// A host port already taken stops startup: exit status 2 and one line
/// naming the forward, for both syntaxes.
#[test]
fn forward_on_a_taken_port_fails_startup() {
    let t = Topology::new();
    let taken =
        support::relay::in_netns(t.host_ns(), || std::net::TcpListener::bind("0.0.0.0:18090"))
            .expect("take port 18090 in the host namespace");
    let netns = t.guest_netns_path().to_string_lossy().into_owned();
    for fwd in [
        &["--hostfwd", "tcp::18090-:80"][..],
        &["--hostfwd", "tcp:127.0.0.1:18090-10.0.2.15:80"],
        &["-t", "18090:80"],
        &["-t", "18089-18091:80-82"],
    ] {
        let mut argv = vec![AIRLOCK, "--netns", &netns];
        argv.extend_from_slice(fwd);
        let o = t.host_run(&argv, Duration::from_secs(5));
        let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            o.status.and_then(|s| s.code()),
            Some(2),
            "{fwd:?}: {}",
            o.describe()
        );
        assert_eq!(lines.len(), 1, "{fwd:?}: {}", o.describe());
        assert!(
            lines[0].contains("18090") && lines[0].contains("forward"),
            "{fwd:?}: {}",
            lines[0]
        );
        assert!(
            lines[0].to_lowercase().contains("in use"),
            "{fwd:?}: {}",
            lines[0]
        );
    }
    drop(taken);
}

/// iperf3's JSON: (bytes received, seconds, sender retransmissions).
fn iperf_numbers(v: &Value) -> (u64, f64, u64) {
    let end = &v["end"];
    (
        end["sum_received"]["bytes"].as_u64().unwrap_or(0),
        end["sum_received"]["seconds"].as_f64().unwrap_or(0.0),
        end["sum_sent"]["retransmits"].as_u64().unwrap_or(u64::MAX),
    )
}

fn iperf(r: &mut Rig, side: Side, args: &[&str]) -> Value {
    let mut argv = vec!["iperf3"];
    argv.extend_from_slice(args);
    let o = match side {
        Side::Guest => r.t.guest_run(&argv, Duration::from_secs(30)),
        Side::Host => r.t.host_run(&argv, Duration::from_secs(30)),
    };
    assert!(
        o.success(),
        "{argv:?}: {}\n{}",
        o.describe(),
        r.a.diagnose()
    );
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("iperf3 JSON: {e}: {}", o.stdout))
}

fn iperf_server(r: &mut Rig, side: Side, name: &str, port: &str) -> Daemon {
    let argv = ["iperf3", "-s", "-1", "--forceflush", "-p", port];
    let mut cmd = match side {
        Side::Guest => r.t.guest_cmd(&argv),
        Side::Host => r.t.host_cmd(&argv),
    };
    let log = r.t.dir().join(format!("{name}.log"));
    let mut d = Daemon::spawn(name, &mut cmd, &log);
    let end = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("listening") {
        assert!(d.is_running() && Instant::now() < end, "{}", d.diagnose());
        std::thread::sleep(Duration::from_millis(20));
    }
    d
}

#[test]
fn iperf3_both_ways() {
    let mut r = Rig::new(LinkMode::Netns, &["--hostfwd", "tcp::15201-:5201"]);
    let _up = iperf_server(&mut r, Side::Host, "iperf-up", "5201");
    let v = iperf(
        &mut r,
        Side::Guest,
        &["-c", "10.0.2.2", "-p", "5201", "-t", "3", "-J"],
    );
    let (up_bytes, up_secs, up_retr) = iperf_numbers(&v);

    let _down = iperf_server(&mut r, Side::Guest, "iperf-down", "5201");
    let v = iperf(
        &mut r,
        Side::Host,
        &["-c", "127.0.0.1", "-p", "15201", "-t", "3", "-J"],
    );
    let (down_bytes, down_secs, down_retr) = iperf_numbers(&v);
    // The guest's own TCP counters (its namespace is fresh, so these are
    // this test's alone).
    let o =
        r.t.guest_run(&["nstat", "-a", "-s"], Duration::from_secs(5));
    let g_retrans = nstat(&o.stdout, "TcpRetransSegs");
    let g_ofo = nstat(&o.stdout, "TcpExtTCPOFOQueue");
    let g_dup = nstat(&o.stdout, "TcpExtDelayedACKLost");
    eprintln!(
        "iperf3 guest→host: {:.2} Gbit/s, {up_retr} retransmits; \
         host→guest (forward): {:.2} Gbit/s, {down_retr} retransmits; \
         guest kernel: {g_retrans} segments retransmitted, {g_ofo} out of order, {g_dup} duplicates",
        gbit(up_bytes, up_secs),
        gbit(down_bytes, down_secs)
    );
    assert!(
        up_bytes > 0 && up_secs > 2.0,
        "guest→host transferred nothing"
    );
    assert!(
        down_bytes > 0 && down_secs > 2.0,
        "host→guest transferred nothing"
    );
    // The guest's sender never loses a segment: airlock only offers the
    // window the host socket can take.
    assert_eq!(up_retr, 0, "guest→host retransmissions");
    // Host→guest, iperf3's sender is on the host and talks to airlock's
    // socket over loopback. Its retransmissions are not zero on this rig
    // (0 to a few hundred per 3 s run: loopback reordering and spurious
    // fast retransmits while airlock's receive queue sits at a zero window,
    // data being discarded only as the guest acknowledges it), so they are
    // reported, not asserted. What holds every time is the guest's view:
    // everything airlock sent it arrived in order and exactly once, i.e.
    // airlock never had to retransmit toward the guest.
    assert_eq!(g_ofo, 0, "segments the guest received out of order");
    assert_eq!(g_dup, 0, "duplicate segments the guest received");
    assert!(r.a.is_running(), "{}", r.a.diagnose());
}

/// 100 000 SYNs from random guest ports to a host port whose server never
/// accepts: the host connects hang, the table (`--max-flows` 4096) fills
/// and the rest get RSTs. airlock stays up, its memory bounded, and a
/// download that was running before the flood completes intact.
#[test]
fn syn_flood_leaves_airlock_bounded_and_serving() {
    let mut r = Rig::new(LinkMode::Netns, &["--debug"]);
    let flag: PathBuf = r.t.dir().join("flood-done");
    let flag_s = flag.to_string_lossy().into_owned();
    let _hold = r.spawn(
        Side::Host,
        "hold",
        &["hold", "127.0.0.1", "9100", "1"],
        true,
    );
    let mut paced = r.spawn(
        Side::Host,
        "paced",
        &["paced", "127.0.0.1", "9101", &flag_s],
        true,
    );
    let mut drain = r.spawn(Side::Guest, "drain", &["drain", "10.0.2.2", "9101"], false);
    std::thread::sleep(Duration::from_millis(500));
    let (rss0, hwm0, fds0) = (
        r.a.status_kb("VmRSS"),
        r.a.status_kb("VmHWM"),
        r.a.open_fds(),
    );

    let f = r.run(
        Side::Guest,
        &["flood", "10.0.2.15", "10.0.2.2", "9100", "100000", "5"],
        Duration::from_secs(60),
    );
    assert_eq!(n(&f, "sent"), 100_000, "{f}");
    assert!(
        r.a.is_running(),
        "airlock died in the flood: {}",
        r.a.diagnose()
    );
    let (rss1, hwm1, fds1) = (
        r.a.status_kb("VmRSS"),
        r.a.status_kb("VmHWM"),
        r.a.open_fds(),
    );
    std::fs::write(&flag, b"").unwrap();

    let got = r.finish(&mut drain, Duration::from_secs(60));
    let sent = r.finish(&mut paced, Duration::from_secs(10));
    assert_eq!(s(&got, "sha"), s(&sent, "sha"), "{got} / {sent}");
    assert_eq!(n(&got, "n"), n(&sent, "n"));
    // airlock itself answers echo to the virtual host: still alive and
    // reading the link.
    r.t.guest()
        .ping("10.0.2.2")
        .unwrap_or_else(|e| panic!("{e}\n{}", r.a.diagnose()));

    let log = r.a.stop_counters();
    let (opened, full) = (counter(&log, "flows_opened"), counter(&log, "flows_full"));
    eprintln!(
        "SYN flood: {} SYNs in {:.1} s; flows opened {opened}, refused as full {full}; \
         VmRSS {rss0} -> {rss1} kB, VmHWM {hwm0} -> {hwm1} kB, fds {fds0} -> {fds1}; \
         transfer across it {} bytes in {:.1} s",
        n(&f, "sent"),
        f["secs"].as_f64().unwrap_or(0.0),
        n(&got, "n"),
        got["secs"].as_f64().unwrap_or(0.0)
    );
    // The table filled and the rest were refused, not queued.
    assert!((4000..=100_000).contains(&opened), "{log}");
    assert!(full > 0, "flows_full: {log}");
    assert!(fds1 <= 4096 + 64, "{fds1} fds");
    // Stated bound: 4096 flows cost airlock < 8 MiB (fixed-size records,
    // no data: what is in flight stays in kernel socket buffers).
    assert!(hwm1 < hwm0 + 8 * 1024, "VmHWM {hwm0} -> {hwm1} kB");
    assert!(hwm1 < 64 * 1024, "VmHWM {hwm1} kB");
}

/// `--restrict`: guest connections out get a prompt refusal, the forward
/// still carries a transfer into the guest.
#[test]
fn restrict_blocks_guest_connections_not_forwards() {
    let mut r = Rig::new(LinkMode::Netns, &["--restrict", "-t", "18083:8080"]);
    // A server the guest could reach without --restrict.
    let _srv = r.spawn(
        Side::Host,
        "sink",
        &["sink", "127.0.0.1", "9005", "0"],
        true,
    );
    for dst in ["10.0.2.2", "192.0.2.77"] {
        let c = r.run(
            Side::Guest,
            &["refused", dst, "9005"],
            Duration::from_secs(15),
        );
        assert_eq!(s(&c, "err"), "ECONNREFUSED", "{dst}: {c}");
        assert!(c["secs"].as_f64().unwrap_or(f64::MAX) < 1.0, "{c}");
    }
    let mut down = r.spawn(
        Side::Guest,
        "down",
        &["sink", "0.0.0.0", "8080", "4096"],
        true,
    );
    let c = r.run(
        Side::Host,
        &["send", "127.0.0.1", "18083", "10000000"],
        Duration::from_secs(60),
    );
    let v = r.finish(&mut down, Duration::from_secs(10));
    assert_eq!(c["ok"], true, "{c} / {v}");
    assert_eq!(s(&v, "sha"), s(&c, "sha"));
    assert!(r.a.is_running(), "{}", r.a.diagnose());
}

/// A guest that never opens its window pins only a capped host buffer
/// (finding 7 of issue 13): the host socket's receive buffer is locked
/// within the flow's share (4 MiB) instead of autotuning to tcp_rmem's
/// maximum, while the host server keeps sending.
#[test]
fn zero_window_guest_pins_a_capped_host_buffer() {
    let r = Rig::new(LinkMode::Netns, &[]);
    let port = "9077";
    let server = format!(
        "import socket,time\n\
         s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('127.0.0.1',{port})); s.listen(1); c,_=s.accept(); c.setblocking(False)\n\
         t=time.time()\n\
         while time.time()-t<8:\n\
         \x20 try: c.send(b'x'*65536)\n\
         \x20 except BlockingIOError: time.sleep(0.01)\n"
    );
    let mut srv = r.t.host_cmd(&["python3", "-c", &server]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let client = format!(
        "import socket,time\n\
         s=socket.socket(); s.connect(('10.0.2.2',{port})); t=time.time()\n\
         while time.time()-t<2: s.recv(1<<20)\n\
         time.sleep(9)\n"
    );
    let mut cli = r.t.guest_cmd(&["python3", "-c", &client]).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let ss = r.t.host_run(
        &["ss", "-tnmH", "dst", &format!("127.0.0.1:{port}")],
        Duration::from_secs(5),
    );
    let _ = cli.kill();
    let _ = srv.kill();
    let _ = cli.wait();
    let _ = srv.wait();
    // skmem:(r<queued>,rb<rcvbuf>,...)
    let field = |name: &str| -> Option<u64> {
        let at = ss.stdout.find(&format!(",{name}"))? + name.len() + 1;
        let digits: String = ss.stdout[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().ok()
    };
    let rb = field("rb").unwrap_or_else(|| panic!("no skmem in ss output: {}", ss.describe()));
    let queued = ss
        .stdout
        .split("skmem:(r")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        queued > 64 * 1024,
        "the guest's window never filled: {}",
        ss.stdout
    );
    // One flow's share of the guest's budget: 4 MiB (src/flow/tcp.rs
    // FLOW_MEMORY_MAX), where autotuning alone reached 32 MiB.
    assert!(
        rb <= 4 * 1024 * 1024 + 64 * 1024,
        "host receive buffer {rb} grew past the flow's share: {}",
        ss.stdout
    );
    assert!(queued <= rb + 64 * 1024, "{}", ss.stdout);
}
