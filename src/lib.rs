//! airlock: a sandboxed, out-of-process user-mode networking helper for
//! virtual machines. See `docs/architecture.md` for the path of a frame.

pub mod caps;
pub mod cli;
pub mod config;
pub mod counters;
#[cfg(feature = "dbus")]
pub mod ctl;
#[cfg(feature = "dbus")]
pub mod dbus;
pub mod engine;
pub mod flow;
pub mod frag;
pub mod frame;
#[cfg(feature = "fuzzing")]
pub mod fuzz_api;
pub mod hostif;
pub mod lifecycle;
pub mod link;
pub mod logging;
pub mod migrate;
pub mod outbound;
pub mod passt;
pub mod pcap;
pub mod poller;
pub mod rng;
pub mod sandbox;
pub mod services;
#[cfg(feature = "fuzzing")]
pub mod sim;
pub mod stack;
pub mod startup;
pub mod sys;
pub mod wire;
