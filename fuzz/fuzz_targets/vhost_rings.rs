//! cargo-fuzz target `vhost_rings`: see `airlock::fuzz_api::vhost_rings`
//! and docs/fuzzing.md.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| airlock::fuzz_api::vhost_rings(data));
