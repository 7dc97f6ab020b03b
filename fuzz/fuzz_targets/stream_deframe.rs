//! cargo-fuzz target `stream_deframe`: see `airlock::fuzz_api::stream_deframe` and docs/fuzzing.md.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: airlock_fuzz::isolate_network(), |data: &[u8]| airlock::fuzz_api::stream_deframe(data));
