//! cargo-fuzz target `ndp`: see `airlock::fuzz_api::ndp` and docs/fuzzing.md.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| airlock::fuzz_api::ndp(data));
