//! Deterministic simulation of the whole stack (src/sim/): a smoltcp guest
//! on a faulty link, airlock's `Stack`, simulated host sockets.
//!
//! `scenarios` runs many seeds and prints `sim: N scenarios, 0 failures`;
//! a failure prints its seed and the command that replays it:
//! `AIRLOCK_SIM_SEED=<seed> cargo test --release --test sim -- replay --nocapture`.
//! AIRLOCK_SIM_SEEDS sets how many seeds `scenarios` runs (default 10000).

use airlock::sim::{self, Entropy, Scenario};
use std::time::{Duration, Instant};

const FIRST_SEED: u64 = 0x5eed_0000;

fn replay_line(seed: u64) -> String {
    format!("AIRLOCK_SIM_SEED={seed} cargo test --release --test sim -- replay --nocapture")
}

/// Per thread: scenarios run, failures (seed, what), virtual time.
type Outcome = (u64, Vec<(u64, String)>, Duration);

#[test]
fn scenarios() {
    let n: u64 = std::env::var("AIRLOCK_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let threads = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .min(2) as u64;
    let start = Instant::now();
    let results: Vec<Outcome> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut fails = Vec::new();
                    let mut vt = Duration::ZERO;
                    let mut count = 0;
                    let mut seed = FIRST_SEED + t;
                    while seed < FIRST_SEED + n {
                        match sim::run_seed(seed) {
                            Ok(r) => vt += r.virtual_time,
                            Err(f) => fails.push((seed, f.to_string())),
                        }
                        count += 1;
                        seed += threads;
                    }
                    (count, fails, vt)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("sim thread"))
            .collect()
    });
    let total: u64 = results.iter().map(|r| r.0).sum();
    let fails: Vec<_> = results.iter().flat_map(|r| r.1.iter()).collect();
    let vt: Duration = results.iter().map(|r| r.2).sum();
    for (seed, what) in fails.iter().take(10) {
        println!("sim: seed {seed} failed: {what}");
        println!("sim: replay with: {}", replay_line(*seed));
    }
    println!(
        "sim: {total} scenarios, {} failures ({:.1?} wall, {:.0?} virtual)",
        fails.len(),
        start.elapsed(),
        vt
    );
    assert_eq!(total, n);
    assert!(
        fails.is_empty(),
        "{} of {total} scenarios failed",
        fails.len()
    );
}

/// Replays `AIRLOCK_SIM_SEED` (the line a failure prints); without it, checks
/// that a run is deterministic: the same seed twice gives the same report.
#[test]
fn replay() {
    if let Some(seed) = std::env::var("AIRLOCK_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let (s, e) = sim::scenario_for_seed(seed);
        println!("sim: seed {seed}: {s:#?}");
        match sim::run(&s, e) {
            Ok(r) => println!("sim: seed {seed} passes: {r:?}"),
            Err(f) => panic!("sim: seed {seed} fails {f}"),
        }
        return;
    }
    // Whole corpora (coverage, docs/fuzzing.md): every file of each
    // TARGET:DIR pair through its fuzz target, e.g.
    // AIRLOCK_SIM_CORPUS=sim_tcp:fuzz/work/sim_tcp,sim_udp:fuzz/work/sim_udp
    if let Ok(list) = std::env::var("AIRLOCK_SIM_CORPUS") {
        let mut n = 0;
        for pair in list.split(',') {
            let (target, dir) = pair.split_once(':').expect("TARGET:DIR");
            let f: fn(&[u8]) = match target {
                "sim_tcp" => sim::fuzz_tcp,
                "sim_udp" => sim::fuzz_udp,
                t => panic!("no target {t}"),
            };
            for e in std::fs::read_dir(dir).expect("corpus directory") {
                f(&std::fs::read(e.expect("entry").path()).expect("input"));
                n += 1;
            }
        }
        println!("sim: {n} corpus inputs replayed");
        return;
    }
    // A fuzz input (fuzz/regressions/sim_*/FILE, a crash artifact).
    if let Some(path) = std::env::var_os("AIRLOCK_SIM_INPUT") {
        let data = std::fs::read(&path).expect("AIRLOCK_SIM_INPUT");
        let mut e = Entropy::bytes(&data);
        let s = Scenario::generate(&mut e);
        println!("sim: input {path:?}: {s:#?}");
        match sim::run(&s, e) {
            Ok(r) => println!("sim: input passes: {r:?}"),
            Err(f) => panic!("sim: input fails {f}"),
        }
        return;
    }
    for seed in [FIRST_SEED, FIRST_SEED + 7, FIRST_SEED + 1234] {
        let a = sim::run_seed(seed).expect("run");
        let b = sim::run_seed(seed).expect("run again");
        assert_eq!(
            format!("{a:?}"),
            format!("{b:?}"),
            "seed {seed} did not replay"
        );
        assert!(a.flows_opened > 0 || a.frames_to_guest > 0);
    }
}

// ---- tcp::Conn, one behaviour at a time, through the simulator ----

use airlock::sim::host::{Connect, Peer};
use airlock::sim::{FlowPlan, LinkFaults, Report};

fn flow(g2h: u64, h2g: u64) -> FlowPlan {
    FlowPlan {
        start: Duration::from_millis(1),
        g2h,
        peer: Peer {
            connect: Connect::Accept(Duration::from_millis(2)),
            h2g,
            rate: 65536,
            read_stall: None,
            reset_at: None,
            sndbuf: 1 << 20,
            rcvbuf: 1 << 20,
        },
        guest_abort: None,
        guest_read_stall: None,
        forward: false,
    }
}

fn scenario(flows: Vec<FlowPlan>) -> Scenario {
    Scenario {
        name: "unit",
        flows,
        dgrams: Vec::new(),
        max_flows: 16,
        mtu: 1500,
        guest_buf: 256 * 1024,
        timestamps: true,
        to_guest: LinkFaults::default(),
        to_airlock: LinkFaults::default(),
        guest_gone: None,
    }
}

fn run(s: &Scenario) -> Report {
    sim::run(s, Entropy::seed(1)).unwrap_or_else(|f| panic!("{f}"))
}

#[test]
fn conn_handshake_data_both_ways_and_fins() {
    for (ws, ts) in [(true, true), (false, false), (true, false)] {
        let mut s = scenario(vec![flow(300_000, 200_000)]);
        s.guest_buf = if ws { 256 * 1024 } else { 16 * 1024 };
        s.timestamps = ts;
        let r = run(&s);
        assert_eq!((r.bytes_g2h, r.bytes_h2g), (300_000, 200_000), "{ws} {ts}");
        assert_eq!(r.flows_opened, 1);
    }
}

#[test]
fn conn_resets_either_way() {
    let mut guest = flow(1 << 20, 1 << 20);
    guest.guest_abort = Some(Duration::from_millis(8));
    let mut host = flow(1 << 20, 1 << 20);
    host.peer.reset_at = Some(Duration::from_millis(8));
    for f in [guest, host] {
        // The run fails unless the flow ends and the table empties.
        let r = run(&scenario(vec![f]));
        assert!(r.bytes_h2g < 1 << 20, "a reset flow carried everything");
        assert!(
            r.virtual_time < Duration::from_secs(5),
            "{:?}",
            r.virtual_time
        );
    }
}

#[test]
fn conn_refused_and_silent_connects_end_in_rst() {
    let mut refused = flow(100, 100);
    refused.peer.connect = Connect::Refuse(Duration::from_millis(3));
    let mut silent = flow(100, 100);
    silent.peer.connect = Connect::Silent;
    let r = run(&scenario(vec![refused]));
    assert_eq!((r.bytes_g2h, r.bytes_h2g), (0, 0));
    assert!(r.virtual_time < Duration::from_secs(1));
    // airlock's connect timeout (30 s) answers the guest with an RST.
    let r = run(&scenario(vec![silent]));
    assert_eq!((r.bytes_g2h, r.bytes_h2g), (0, 0));
    assert!(
        r.virtual_time >= Duration::from_secs(30),
        "{:?}",
        r.virtual_time
    );
}

#[test]
fn conn_zero_window_then_resumes() {
    let mut f = flow(1000, 400_000);
    f.guest_read_stall = Some((Duration::from_millis(5), Duration::from_secs(3)));
    let mut s = scenario(vec![f]);
    s.guest_buf = 16 * 1024;
    let r = run(&s);
    assert_eq!(r.bytes_h2g, 400_000);
    assert!(r.virtual_time >= Duration::from_secs(3));
}

#[test]
fn conn_slow_host_reader_backpressures_the_guest() {
    let mut f = flow(500_000, 10);
    f.peer.rate = 100; // bytes per ms
    f.peer.sndbuf = 128 * 1024;
    let r = run(&scenario(vec![f]));
    assert_eq!(r.bytes_g2h, 500_000);
    // The guest cannot finish before the reader took all but one buffer:
    // (500 000 - 131 072) / 100 B/ms = 3.7 s.
    assert!(
        r.virtual_time >= Duration::from_millis(3600),
        "{:?}",
        r.virtual_time
    );
}

#[test]
fn conn_forward_and_full_table() {
    let mut fwd = flow(50_000, 50_000);
    fwd.forward = true;
    let r = run(&scenario(vec![fwd]));
    assert_eq!((r.bytes_g2h, r.bytes_h2g), (50_000, 50_000));
    let mut s = scenario(vec![flow(1000, 1000), flow(1000, 1000), flow(1000, 1000)]);
    s.max_flows = 1;
    s.flows[0].peer.rate = 1; // holds its slot while the others try
    let r = run(&s);
    assert!(r.bytes_g2h < 3000, "all three flows fit a table of one");
}

#[test]
fn conn_retransmits_to_a_lossy_guest() {
    let mut s = scenario(vec![flow(100_000, 300_000)]);
    s.to_guest = LinkFaults {
        drop: 100,
        duplicate: 30,
        reorder: 50,
        delay_ms: 10,
        truncate: 20,
    };
    let r = run(&s);
    assert_eq!((r.bytes_g2h, r.bytes_h2g), (100_000, 300_000));
}

#[test]
fn conn_half_closed_flow_outlives_the_closing_timeout() {
    // The guest's FIN goes out at once; the host's stream takes 70 s
    // (fuzz/regressions/sim_tcp/half-closed-slow-host-cut-at-60s): neither
    // airlock's closing timeout nor the guest's FIN-WAIT-2 may cut it.
    let mut f = flow(0, 70_000);
    f.peer.rate = 1;
    let r = run(&scenario(vec![f]));
    assert_eq!(r.bytes_h2g, 70_000);
    assert!(
        r.virtual_time >= Duration::from_secs(70),
        "{:?}",
        r.virtual_time
    );
}

// ---- datagram flows (UDP, ICMP echo) through the simulator ----

use airlock::sim::dgram::DgramPeer;
use airlock::sim::DgramPlan;

fn dgram(echo: bool, count: u16, peer: DgramPeer, pause: Option<(u16, Duration)>) -> DgramPlan {
    DgramPlan {
        start: Duration::from_millis(2),
        echo,
        count,
        gap: Duration::from_millis(3),
        size: 300,
        peer,
        pause,
    }
}

#[test]
fn dgram_flows_both_ways_errors_and_idle_timeouts() {
    let answer = |copies| DgramPeer::Echo {
        delay: Duration::from_millis(5),
        copies,
    };
    let mut s = scenario(Vec::new());
    s.dgrams = vec![
        // Quiet past the 120 s stream timeout: a second host socket.
        dgram(false, 6, answer(2), Some((3, Duration::from_secs(125)))),
        // Quiet within echo's 60 s: the same ping socket.
        dgram(true, 6, answer(1), Some((3, Duration::from_secs(55)))),
        dgram(false, 3, DgramPeer::Unreachable, None),
        dgram(true, 2, DgramPeer::Unreachable, None),
    ];
    // The run checks each socket closed one idle timeout after its last
    // use, the socket counts, and the ICMP errors' quotes.
    let r = run(&s);
    assert_eq!(r.datagram_replies, 6 * 2 + 6);
    assert_eq!(r.flows_opened, 5, "the UDP flow reopens once");
    assert!(r.virtual_time >= Duration::from_secs(125 + 120));
}
