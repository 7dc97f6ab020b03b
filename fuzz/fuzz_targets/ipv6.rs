//! cargo-fuzz target `ipv6`: see `airlock::fuzz_api::ipv6` and docs/fuzzing.md.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| airlock::fuzz_api::ipv6(data));
