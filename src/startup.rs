//! Startup, top to bottom, in the order the sandbox needs: parse options →
//! open the link, listening sockets, pid and log files, read resolv.conf →
//! bind the forwards → drop privileges → NO_NEW_PRIVS, not dumpable →
//! landlock → seccomp → event loop. Nothing after the sandbox opens files
//! or binds ports.

use crate::cli::Options;
use crate::config::Config;
use crate::engine::{self, Engine, Exit};
use crate::link::{self, Link};

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

/// Run airlock; returns the process exit status.
pub fn run(opts: Options) -> i32 {
    let resolv = if opts.dns_upstream.is_empty() {
        std::fs::read_to_string("/etc/resolv.conf").ok()
    } else {
        None
    };
    let cfg = match Config::from_options(&opts, resolv.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("airlock: {e}");
            return EXIT_USAGE;
        }
    };
    let link = if let Some(n) = opts.fd {
        link::inherit_fd(n)
            .and_then(Link::from_socket)
            .map_err(|e| format!("--fd {n}: {e}"))
    } else if let Some(ns) = &opts.netns {
        link::open_tap_in_netns(ns, &opts.interface)
            .and_then(|fd| Link::new(fd, link::Kind::Tap))
            .map_err(|e| format!("--netns {}: {e}", ns.display()))
    } else {
        Err("one of --fd, --socket or --netns is required".to_string())
    };
    let link = match link {
        Ok(l) => l,
        Err(e) => {
            eprintln!("airlock: {e}");
            return EXIT_USAGE;
        }
    };
    let listeners = match crate::flow::forward::bind_forwards(&cfg) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("airlock: {e}");
            return EXIT_FAILURE;
        }
    };
    let signals = match engine::block_exit_signals() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("airlock: signals: {e}");
            return EXIT_FAILURE;
        }
    };
    let mut engine = match Engine::new(link, cfg, signals) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("airlock: {e}");
            return EXIT_FAILURE;
        }
    };
    if let Err(e) = engine.stack_mut().add_forwards(listeners) {
        eprintln!("airlock: forwards: {e}");
        return EXIT_FAILURE;
    }
    log::info!("link up");
    let exit = engine.run();
    if opts.debug {
        eprint!("{}", engine.report());
    }
    match exit {
        Exit::Signal(s) => {
            log::info!("{s}: exiting");
            EXIT_OK
        }
        Exit::Link(link::Closed::Hangup) => {
            log::info!("the VMM went away: exiting");
            EXIT_OK
        }
        Exit::Link(c) => {
            log::error!("{c}");
            eprintln!("airlock: {c}");
            EXIT_FAILURE
        }
    }
}
