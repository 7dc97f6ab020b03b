//! airlock: a sandboxed, out-of-process user-mode networking helper for
//! virtual machines. See `docs/architecture.md` for the path of a frame.

pub mod caps;
pub mod cli;
pub mod config;
pub mod lifecycle;
pub mod logging;
pub mod wire;
