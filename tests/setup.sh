#!/bin/bash
# tests/setup.sh — install what airlock's tests and demo need, idempotently,
# on Debian 12 as root: the guest tools (busybox udhcpc/ping, iproute2), the
# reference helper for the harness self-check (passt), benchmark tools, a C
# toolchain for linking (libdbus-1-dev and pkg-config: the D-Bus feature;
# dbus: the migration tests' bus daemon), the man page linters (mandoc, groff), QEMU's iPXE
# ROMs (the PXE test), lintian and cargo-deb (the package test), libvirt
# (tests/libvirt.rs runs a private libvirtd), and Rust (rustup, only if
# cargo is missing).
# `apt-get update` runs only if a package is missing.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "tests/setup.sh: run as root (namespaces, tap devices, apt-get)" >&2
  exit 1
fi

pkgs="busybox-static iproute2 procps iperf3 passt python3 gcc libc6-dev pkg-config libdbus-1-dev dbus ca-certificates curl qemu-system-x86 isc-dhcp-client tcpdump man-db mandoc groff-base ipxe-qemu lintian libvirt-daemon-system libvirt-clients"
need=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
  echo "tests/setup.sh: installing$need" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

# libvirt's package autostarts a "default" NAT network for the system
# daemon; the tests run their own private libvirtd and want no host bridge.
rm -f /etc/libvirt/qemu/networks/autostart/default.xml

# The tap devices live behind /dev/net/tun (missing in some containers).
if [ ! -c /dev/net/tun ]; then
  modprobe tun 2>/dev/null || true
  mkdir -p /dev/net
  [ -c /dev/net/tun ] || mknod /dev/net/tun c 10 200
fi

# Rust: Debian 12's rustc is too old for the crate; use rustup's stable.
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if ! command -v cargo >/dev/null; then
  echo "tests/setup.sh: installing Rust (rustup, stable)" >&2
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
    sh -s -- -y -q --profile minimal -c clippy -c rustfmt
  . "$HOME/.cargo/env"
fi
if command -v rustup >/dev/null; then
  for c in clippy rustfmt; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi
# cargo-deb builds the Debian package (tests/package.sh).
if ! command -v cargo-deb >/dev/null; then
  echo "tests/setup.sh: installing cargo-deb" >&2
  cargo install --locked -q cargo-deb
fi
exit 0
