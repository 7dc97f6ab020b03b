//! cargo-fuzz target `migrate_state`: see `airlock::fuzz_api::migrate_state` and docs/fuzzing.md.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| airlock::fuzz_api::migrate_state(data));
