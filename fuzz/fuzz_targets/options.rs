//! cargo-fuzz target `options`: see `airlock::fuzz_api::options` and docs/fuzzing.md.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| airlock::fuzz_api::options(data));
