//! cargo-fuzz target `engine`: see `airlock::fuzz_api::engine` and docs/fuzzing.md.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: airlock_fuzz::isolate_network(), |data: &[u8]| airlock::fuzz_api::engine(data));
