//! cargo-fuzz target `icmpv6`: see `airlock::fuzz_api::icmpv6` and docs/fuzzing.md.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| airlock::fuzz_api::icmpv6(data));
