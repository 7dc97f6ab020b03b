#!/bin/bash
# tests/check.sh — the whole test suite, as CI runs it (root, Debian 12):
# installs what is missing, then formatting, lints, and every test
# (unit tests, the harness self-check against passt, and the integration
# tests that drive the release binary from a real guest network stack).
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo fmt --check
cargo clippy --all-targets -- -D warnings
# Each test makes its own namespaces; two at a time keeps a small machine responsive.
cargo test --release -- --test-threads=2
# Every fuzz target builds and runs a few seconds on stable (inputs that
# ever crashed are replayed by `cargo test` above, from fuzz/regressions/).
FUZZ_SMOKE_SECS=${FUZZ_SMOKE_SECS:-5} fuzz/smoke.sh
