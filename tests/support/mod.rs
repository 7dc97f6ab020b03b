//! Shared support for airlock's integration tests: the real binary against a
//! real Linux network stack, with no path off this machine.
//!
//! ```text
//!   guest netns (<prefix>-g)          host netns (<prefix>-h)
//!   tap0  kernel TCP/IP  ◄── link ──►  airlock (or passt)   lo 127.0.0.1
//!   (udhcpc, ping, ip)                 up0 192.0.2.2 → dead-end veth
//! ```
//!
//! The link is either airlock's own `--netns` tap, or a [`relay::Relay`] in
//! this process playing the VMM (`--fd` with a DGRAM or STREAM socketpair).
//! Use from a test file with `mod support;`.

// Each test binary uses a different subset of the support code.
#![allow(dead_code, unused_imports)]

pub mod frames;
pub mod guest;
pub mod helper;
pub mod package;
pub mod process;
pub mod qemu;
pub mod relay;
pub mod topo;
pub mod vhost_frontend;

pub use guest::{Guest, Lease};
pub use helper::{counter, Helper, LinkMode};
pub use topo::Topology;

/// The airlock binary cargo built for these tests.
pub const AIRLOCK: &str = env!("CARGO_BIN_EXE_airlock");

/// Namespaces, tap devices and veths need root: fail loudly, never skip.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "these tests need root (network namespaces, tap devices); \
             run them as root, e.g. `sudo -E cargo test`, after tests/setup.sh"
        );
    }
}
