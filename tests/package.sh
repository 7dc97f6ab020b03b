#!/bin/bash
# tests/package.sh [--no-build] — build the Debian package into
# target/debian/ with `cargo deb` (metadata in Cargo.toml, maintainer
# scripts in debian/). Prints the path of the .deb on its last line.
# --no-build packages the target/release/airlock already there (what
# tests/package.rs does: cargo holds the build lock while tests run).
#
# cargo-deb rather than dpkg-buildpackage: the package is one binary and
# some files, all described next to the crate in Cargo.toml; no debhelper
# toolchain or debian/rules is needed, and the build reuses cargo's own
# target/ (offline, incremental) instead of a clean rebuild.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if ! command -v cargo-deb >/dev/null; then
  echo "tests/package.sh: cargo-deb missing (tests/setup.sh installs it)" >&2
  exit 1
fi
if [ "${1:-}" = --no-build ]; then
  shift
  [ -x target/release/airlock ] || { echo "tests/package.sh: no target/release/airlock" >&2; exit 1; }
else
  cargo build --release --locked
fi
mkdir -p target/debian-assets
gzip -9n <docs/airlock.1 >target/debian-assets/airlock.1.gz
# --no-build: the binary above is the one the tests ran against.
cargo deb --no-build --strip --locked --output target/debian/ "$@" | tail -n 1
