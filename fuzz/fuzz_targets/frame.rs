//! cargo-fuzz target `frame`: see `airlock::fuzz_api::frame` and docs/fuzzing.md.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: airlock_fuzz::isolate_network(), |data: &[u8]| airlock::fuzz_api::frame(data));
