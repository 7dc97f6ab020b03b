//! cargo-fuzz target `arp`: see `airlock::fuzz_api::arp` and docs/fuzzing.md.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| airlock::fuzz_api::arp(data));
