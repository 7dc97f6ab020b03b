//! cargo-fuzz target `sim_tcp`: the whole stack against a smoltcp guest and
//! simulated host sockets, the input choosing the scenario, the link faults
//! and the peers' behaviour. See `airlock::sim` and docs/fuzzing.md.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: airlock_fuzz::isolate_network(), |data: &[u8]| airlock::sim::fuzz_tcp(data));
