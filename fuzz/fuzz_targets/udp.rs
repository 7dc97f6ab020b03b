//! cargo-fuzz target `udp`: see `airlock::fuzz_api::udp` and docs/fuzzing.md.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| airlock::fuzz_api::udp(data));
