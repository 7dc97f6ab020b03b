//! cargo-fuzz target `tcp`: see `airlock::fuzz_api::tcp` and docs/fuzzing.md.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| airlock::fuzz_api::tcp(data));
