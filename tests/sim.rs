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
        let mut e = Entropy::seed(seed);
        let s = Scenario::generate(&mut e);
        println!("sim: seed {seed}: {s:#?}");
        match sim::run(&s, e) {
            Ok(r) => println!("sim: seed {seed} passes: {r:?}"),
            Err(f) => panic!("sim: seed {seed} fails {f}"),
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
