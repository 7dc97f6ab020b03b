//! cargo-fuzz target `sim_udp`: the whole stack's UDP and ICMP echo flows
//! against a smoltcp guest and simulated datagram sockets, the input
//! choosing the scenario, the link faults and the peers' behaviour. See
//! `airlock::sim` and docs/fuzzing.md.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: airlock_fuzz::isolate_network(), |data: &[u8]| airlock::sim::fuzz_udp(data));
