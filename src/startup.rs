//! Startup, top to bottom, in the order the sandbox needs:
//!
//! 1. parse options (done by `main`), `--print-capabilities`;
//! 2. standard descriptors, daemonizing (`--socket` without `--foreground`),
//!    logging;
//! 3. configuration (resolv.conf is read here) — errors exit 2;
//! 4. open the link: `--fd`, the tap of `--netns`, or `--socket`'s listener,
//!    pid file, notify socket;
//! 5. raise the descriptor limit, bind the forwards, connect to the D-Bus
//!    bus (`--dbus-address`);
//! 6. drop privileges (root only), re-arm `--exit-with-parent`;
//! 7. block the exit signals (read through a signalfd); with
//!    `--dbus-incoming`, wait for the migrating state and bind the forwards
//!    it names;
//! 8. `PR_SET_NO_NEW_PRIVS`, not dumpable, landlock, seccomp;
//! 9. report readiness (daemon launcher, sd_notify) and run the event loop.
//!
//! Nothing after step 8 opens a file or binds a port.
//!
//! #syscalls: poll|ppoll accept4
//! #syscalls-startup: prlimit64|getrlimit|setrlimit

use crate::caps;
use crate::cli::Options;
use crate::config::Config;
use crate::engine::{self, Engine, Exit};
use crate::flow::forward;
use crate::lifecycle::{self, Daemon, Notifier, ParentWatch, PidFile, Remover};
use crate::link::{self, Link};
use crate::logging;
use crate::pcap::Pcap;
use crate::sandbox;
use nix::fcntl::{FcntlArg, FdFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;
use std::io::ErrorKind;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

pub use lifecycle::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE};

/// Where the VMM's frames come from.
enum Source {
    /// `--fd` or `--netns`: one link for the whole life of the process.
    Link(Box<Link>),
    /// `--socket`: a listener; each VMM connection is a fresh link.
    Listener(UnixListener),
}

/// A usage error found before the logger exists: one line, exit 2.
fn usage(msg: impl std::fmt::Display) -> i32 {
    eprintln!("airlock: error: {msg}");
    EXIT_USAGE
}

fn fail(code: i32, msg: impl std::fmt::Display) -> i32 {
    log::error!("{msg}");
    code
}

/// Run airlock; returns the process exit status.
pub fn run(opts: Options, mut passt: Option<Box<crate::passt::Passt>>) -> i32 {
    // passt's personality and --vhost-user answer as a vhost-user `net`
    // backend; airlock's own mode as libvirt's slirp-helper.
    let vhost_caps = passt.as_ref().is_some_and(|p| p.print_capabilities)
        || (opts.print_capabilities && opts.vhost_user);
    if vhost_caps || opts.print_capabilities {
        let printed = if vhost_caps {
            caps::print_vhost_user_capabilities()
        } else {
            caps::print_capabilities(&sandbox::kernel_layers())
        };
        return match printed {
            Ok(()) => EXIT_OK,
            Err(e) => fail(EXIT_FAILURE, e),
        };
    }
    if let Err(e) = lifecycle::ensure_std_fds() {
        eprintln!("airlock: error: {e}");
        return EXIT_FAILURE;
    }
    // `--fd` is claimed before airlock opens anything of its own (the
    // logger, /dev/log, the daemon pipe), so it can never name one of them.
    let inherited = match opts.fd.map(link::inherit_fd).transpose() {
        Ok(fd) => fd,
        Err(e) => return usage(format!("--fd {}: {e}", opts.fd.unwrap_or(-1))),
    };
    lifecycle::ignore_sigpipe();
    let mut daemon = None;
    // passt daemonizes with --fd too: QEMU's -netdev passt waits for the
    // command to exit, then reads the pid file.
    let passt_fd = passt.is_some() && opts.fd.is_some();
    if (opts.socket.is_some() || passt_fd) && !opts.foreground {
        // The daemon is this program run again, and claims --fd itself: the
        // descriptor must survive that exec, and only that one.
        let link_cloexec = |on: bool| {
            if let Some(fd) = &inherited {
                let flags = if on {
                    FdFlag::FD_CLOEXEC
                } else {
                    FdFlag::empty()
                };
                let _ = nix::fcntl::fcntl(fd, FcntlArg::F_SETFD(flags));
            }
        };
        link_cloexec(false);
        match Daemon::start() {
            Ok(d) => daemon = Some(d),
            Err(e) => {
                eprintln!("airlock: {e}");
                return EXIT_FAILURE;
            }
        }
        link_cloexec(true);
    }
    if let Err(e) = logging::init(&opts, false) {
        return usage(e);
    }

    // 3. Configuration (passt's copies the host interface's addresses).
    if let Some(p) = passt.as_mut() {
        match crate::hostif::read(p.interface.as_deref()) {
            Ok(h) => p.host = h,
            Err(e) => return fail(EXIT_USAGE, e),
        }
        p.ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse().ok())
            .unwrap_or(crate::passt::EPHEMERAL_DEFAULT);
    }
    let resolv = if opts.dns_upstream.is_empty() && !opts.disable_dns {
        std::fs::read_to_string("/etc/resolv.conf").ok()
    } else {
        None
    };
    let resolved = match &passt {
        Some(p) => crate::passt::config(&opts, p, resolv.as_deref()),
        None => Config::from_options(&opts, resolv.as_deref()),
    };
    let mut cfg = match resolved {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    if let Err(e) = check_dbus_options(&opts) {
        return fail(EXIT_USAGE, e);
    }
    // The --tftp directory is part of the configuration: open it now.
    if let Some(dir) = &cfg.tftp {
        match crate::services::tftp::open_root(dir) {
            Ok(fd) => cfg.tftp_root = Some(std::sync::Arc::new(fd)),
            Err(e) => return fail(EXIT_USAGE, e),
        }
    }
    // Resolved now, so a bad name stops startup before the link is opened.
    let runas = if nix::unistd::geteuid().is_root() {
        match sandbox::privileges::resolve(opts.runas.as_deref()) {
            Ok(ids) => Some(ids),
            Err(e) => return fail(EXIT_USAGE, e),
        }
    } else {
        None
    };
    if cfg.dns_forward && cfg.dns_upstream.is_empty() {
        log::warn!("no DNS upstream (no --dns-upstream, nothing usable in /etc/resolv.conf): DNS to the virtual resolver will go unanswered");
    }
    let mut parent = if opts.exit_with_parent {
        match lifecycle::exit_with_parent() {
            Ok(p) => Some(p),
            Err(e) => return fail(EXIT_FAILURE, e),
        }
    } else {
        None
    };

    // 4. The link, and the files that go with --socket.
    // The files the remover deletes at exit, as absolute paths (the
    // daemon changes to `/`).
    let mut removable: Vec<PathBuf> = Vec::new();
    if opts.vhost_user && opts.netns.is_some() {
        return fail(
            EXIT_USAGE,
            "--vhost-user needs --socket or --fd, not --netns",
        );
    }
    let source = if let (Some(n), Some(fd)) = (opts.fd, inherited) {
        let opened = if opts.vhost_user {
            Link::vhost_user(std::os::unix::net::UnixStream::from(fd), cfg.mtu)
        } else {
            Link::from_socket(fd).map(|l| l.sized_for(cfg.mtu))
        };
        match opened {
            Ok(l) => Source::Link(Box::new(l)),
            Err(e) => return fail(EXIT_USAGE, format!("--fd {n}: {e}")),
        }
    } else if let Some(ns) = &opts.netns {
        match link::open_tap_in_netns(ns, &opts.interface)
            .and_then(|fd| Link::new(fd, link::Kind::Tap))
        {
            Ok(l) => Source::Link(Box::new(l)),
            Err(e) => {
                return fail(
                    EXIT_USAGE,
                    format!(
                        "--netns {} --interface {}: {e}",
                        ns.display(),
                        opts.interface
                    ),
                )
            }
        }
    } else if let Some(path) = &opts.socket {
        let l = match lifecycle::listen_unix(path) {
            Ok(l) => l,
            Err(e) => return fail(EXIT_USAGE, e),
        };
        removable.push(std::path::absolute(path).unwrap_or_else(|_| path.clone()));
        if let Err(e) = lifecycle::chown_to(path, runas) {
            return fail(EXIT_FAILURE, format!("--socket {e}"));
        }
        let line = if opts.vhost_user {
            lifecycle::qemu_vhost_user_line(path)
        } else {
            lifecycle::qemu_netdev_line(path)
        };
        if daemon.is_none() {
            println!("{line}");
        }
        log::info!("listening on {}: {line}", path.display());
        Source::Listener(UnixListener::from(l))
    } else {
        return fail(EXIT_USAGE, "one of --fd, --socket or --netns is required");
    };
    let _pidfile: Option<PidFile> = match &opts.pid {
        Some(p) => match PidFile::create(p) {
            Ok(f) => {
                removable.push(std::path::absolute(p).unwrap_or_else(|_| p.clone()));
                if let Err(e) = lifecycle::chown_to(p, runas) {
                    return fail(EXIT_FAILURE, format!("--pid {e}"));
                }
                Some(f)
            }
            Err(e) => return fail(EXIT_USAGE, e),
        },
        None => None,
    };
    let mut pcap = match &opts.pcap {
        Some(p) => match Pcap::create(p, opts.pcap_size) {
            Ok(c) => Some(c),
            Err(e) => return fail(EXIT_USAGE, e),
        },
        None => None,
    };
    let notifier = match Notifier::from_env() {
        Ok(n) => n,
        Err(e) => {
            log::warn!("NOTIFY_SOCKET: {e}");
            None
        }
    };

    // Every flow holds a descriptor: take all the hard limit allows.
    raise_nofile(cfg.max_flows);

    // 5. Forwards, bound while ports below 1024 still can be.
    let mut listeners = match forward::bind_forwards(&cfg) {
        Ok(l) => l,
        Err(e) => return fail(EXIT_USAGE, e),
    };

    // 5b. The bus, connected with the credentials libvirt started us
    // with: its per-domain daemon accepts only its own user.
    let mut bus = match connect_bus(&opts) {
        Ok(b) => b,
        Err(e) => return fail(EXIT_FAILURE, e),
    };

    // How far a flow's receive buffer can be locked (flow::tcp), read
    // while /proc/sys is still open to us.
    let _ = crate::sys::rmem_max();

    // 6. Privileges.
    match sandbox::drop_privileges(opts.runas.as_deref()) {
        Ok(d) if d.changed => log::info!("running as uid {} gid {}", d.uid, d.gid),
        Ok(_) => {}
        Err(e) => return fail(EXIT_FAILURE, e),
    }
    if let Some(p) = &parent {
        // A change of credentials clears the parent-death signal.
        if let Err(e) = p.rearm() {
            return fail(EXIT_FAILURE, e);
        }
    }

    if let Some(d) = daemon.as_mut() {
        if let Err(e) = d.detach() {
            return fail(EXIT_FAILURE, e);
        }
    }

    // Before the sandbox, which keeps no right to remove files.
    let _remover = if removable.is_empty() {
        None
    } else {
        match Remover::spawn(&removable) {
            Ok(r) => Some(r),
            Err(e) => return fail(EXIT_FAILURE, e),
        }
    };

    // 7. Signals, then 8. the sandbox.
    let mut signals = match engine::block_exit_signals() {
        Ok(s) => s,
        Err(e) => return fail(EXIT_FAILURE, format!("signals: {e}")),
    };
    // 7b. With --dbus-incoming, the state migrating in, and the forwards
    // it names, bound now.
    let link_fd = match &source {
        Source::Link(l) => l.as_fd(),
        Source::Listener(l) => l.as_fd(),
    };
    let mut incoming = match wait_for_state(&opts, &cfg, &mut bus, link_fd, &signals) {
        Ok(st) => st,
        Err(e) => return fail(EXIT_FAILURE, e),
    };
    if let Some(st) = &incoming {
        listeners.extend(bind_migrated_forwards(&cfg, st));
    }
    let grants = sandbox::Grants {
        readable_dirs: cfg.tftp.as_slice(),
        tcp_bind_port0: cfg.outbound.binds_tcp(),
    };
    if let Err(e) = sandbox::lock_down_with(opts.sandbox, &grants) {
        return fail(EXIT_FAILURE, format!("sandbox: {e}"));
    }

    // 9. Ready.
    if let Some(d) = daemon.as_mut() {
        d.ready();
    }
    let code = match source {
        Source::Link(l) => {
            if let Some(n) = &notifier {
                let _ = n.ready();
            }
            let carried = Carried {
                pcap: &mut pcap,
                bus: &mut bus,
                incoming: &mut incoming,
            };
            serve(*l, &cfg, &opts, signals, parent, listeners, carried).0
        }
        Source::Listener(listener) => {
            if let Some(n) = &notifier {
                let _ = n.ready();
            }
            loop {
                let conn = match accept_vmm(&listener, &signals, &mut parent) {
                    Ok(Some(c)) => c,
                    Ok(None) => break EXIT_OK,
                    Err(e) => break fail(EXIT_FAILURE, format!("accept: {e}")),
                };
                let link = if opts.vhost_user {
                    Link::vhost_user(std::os::unix::net::UnixStream::from(conn), cfg.mtu)
                } else {
                    Link::from_socket(conn).map(|l| l.sized_for(cfg.mtu))
                };
                let link = match link {
                    Ok(l) => l,
                    Err(e) => break fail(EXIT_FAILURE, format!("VMM connection: {e}")),
                };
                log::info!("VMM connected");
                let carried = Carried {
                    pcap: &mut pcap,
                    bus: &mut bus,
                    incoming: &mut incoming,
                };
                let (code, again, back) =
                    serve(link, &cfg, &opts, signals, parent, listeners, carried);
                (signals, listeners) = back;
                if !again || opts.one_off {
                    break code;
                }
            }
        }
    };
    code
}

/// Wait for the VMM to connect; `None` when a signal asks to exit first.
fn accept_vmm(
    listener: &UnixListener,
    signals: &SignalFd,
    parent: &mut Option<ParentWatch>,
) -> std::io::Result<Option<OwnedFd>> {
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if fds[1].any().unwrap_or(false) {
            while let Ok(Some(s)) = signals.read_signal() {
                if s.ssi_signo == engine::STATS_SIGNAL as u32 {
                    log::info!("stats: waiting for the VMM to connect");
                    continue;
                }
                if s.ssi_signo == lifecycle::PARENT_DEATH_SIGNAL as u32
                    && !parent.as_mut().is_some_and(|p| p.parent_gone())
                {
                    continue;
                }
                log::info!("signal {}: exiting", s.ssi_signo);
                return Ok(None);
            }
        }
        if fds[0].any().unwrap_or(false) {
            match listener.accept() {
                Ok((conn, _)) => return Ok(Some(OwnedFd::from(conn))),
                Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::WouldBlock) => {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
    }
}

type Kept = (SignalFd, Vec<forward::Listener>);

#[cfg(feature = "dbus")]
type Bus = crate::dbus::Bus;
/// Without D-Bus support there is never a bus.
#[cfg(not(feature = "dbus"))]
type Bus = std::convert::Infallible;

/// What outlives one VMM connection besides the forwards: `--pcap`'s
/// writer, the bus, and a migrated state not yet taken over.
struct Carried<'a> {
    pcap: &'a mut Option<Pcap>,
    bus: &'a mut Option<Bus>,
    incoming: &'a mut Option<crate::migrate::State>,
}

/// The D-Bus options go together, and only with D-Bus support built in.
fn check_dbus_options(opts: &Options) -> Result<(), String> {
    // No released libvirt passes --dbus-p2p (9.0 knows the word and only
    // acts on dbus-address), and QEMU's dbus-vmstate needs a message bus
    // (Hello, ListQueuedOwners): a helper listening on its own socket
    // could never be reached by it. docs/integration.md says more.
    if opts.dbus_p2p.is_some() {
        return Err(
            "--dbus-p2p: not supported: QEMU's dbus-vmstate needs a bus daemon, not a peer-to-peer socket; use --dbus-address (libvirt's dbus-address)"
                .into(),
        );
    }
    let any = opts.dbus_id.is_some() || opts.dbus_address.is_some() || opts.dbus_incoming;
    if !any {
        return Ok(());
    }
    if !cfg!(feature = "dbus") {
        return Err("--dbus-address: this airlock is built without D-Bus support".into());
    }
    match (&opts.dbus_address, &opts.dbus_id) {
        (Some(_), Some(id)) if !id.is_empty() => Ok(()),
        (Some(_), _) => Err("--dbus-address needs --dbus-id".into()),
        (None, _) => Err("--dbus-id and --dbus-incoming need --dbus-address".into()),
    }
}

/// Connect to `--dbus-address` (before privileges are dropped).
#[cfg(feature = "dbus")]
fn connect_bus(opts: &Options) -> Result<Option<Bus>, String> {
    match (&opts.dbus_address, &opts.dbus_id) {
        (Some(addr), Some(id)) => crate::dbus::Bus::connect(addr, id).map(Some),
        _ => Ok(None),
    }
}

#[cfg(not(feature = "dbus"))]
fn connect_bus(_: &Options) -> Result<Option<Bus>, String> {
    Ok(None)
}

/// `--dbus-incoming`: wait for the state (`Load`), before the sandbox.
#[cfg(feature = "dbus")]
fn wait_for_state(
    opts: &Options,
    cfg: &Config,
    bus: &mut Option<Bus>,
    link: std::os::fd::BorrowedFd<'_>,
    signals: &SignalFd,
) -> Result<Option<crate::migrate::State>, String> {
    let Some(b) = bus.as_mut().filter(|_| opts.dbus_incoming) else {
        return Ok(None);
    };
    log::info!("--dbus-incoming: waiting for the migrating state");
    match crate::dbus::wait_for_load(b, cfg, link, signals.as_fd()) {
        Ok(Some(st)) => Ok(Some(st)),
        Ok(None) => {
            log::warn!("--dbus-incoming: the guest runs (or a signal came) before any state: starting without one");
            Ok(None)
        }
        Err(crate::dbus::Gone) => {
            Err("--dbus-incoming: the bus hung up before the state came".into())
        }
    }
}

#[cfg(not(feature = "dbus"))]
fn wait_for_state(
    _: &Options,
    _: &Config,
    _: &mut Option<Bus>,
    _: std::os::fd::BorrowedFd<'_>,
    _: &SignalFd,
) -> Result<Option<crate::migrate::State>, String> {
    Ok(None)
}

/// Forwards the migrated state names that this command line does not
/// (added at run time on the source): bound here, before the sandbox. One
/// that cannot be bound is skipped with a warning; the guest keeps the rest.
fn bind_migrated_forwards(cfg: &Config, st: &crate::migrate::State) -> Vec<forward::Listener> {
    let mut extra = cfg.clone();
    extra.forwards = st
        .forwards
        .iter()
        .filter(|f| {
            !cfg.forwards
                .iter()
                .any(|c| c.proto == f.proto && c.bind == f.bind)
        })
        .map(|f| crate::config::Forward {
            proto: f.proto,
            bind: f.bind,
            guest_addr: f.guest_addr,
            guest_port: f.guest_port,
            device: None,
            best_effort: false,
        })
        .collect();
    let mut out = Vec::new();
    for one in extra.forwards.clone() {
        extra.forwards = vec![one];
        match forward::bind_forwards(&extra) {
            Ok(mut l) => out.append(&mut l),
            Err(e) => log::warn!("migration: {e}: not carried over"),
        }
    }
    out
}

/// Run one link to its end. Returns the exit code, whether another VMM may
/// follow (the link ended because the VMM left), and what outlives a link:
/// the signalfd and the forwards' sockets (and `--pcap`'s writer, taken
/// from and put back into `pcap`).
fn serve(
    mut link: Link,
    cfg: &Config,
    opts: &Options,
    signals: SignalFd,
    parent: Option<ParentWatch>,
    listeners: Vec<forward::Listener>,
    carried: Carried<'_>,
) -> (i32, bool, Kept) {
    let Carried {
        pcap,
        bus,
        incoming,
    } = carried;
    link.tx.pcap = pcap.take();
    let mut engine = match Engine::new(link, cfg.clone(), signals, parent) {
        Ok(e) => e,
        Err((e, signals)) => return (fail(EXIT_FAILURE, e), false, (signals, listeners)),
    };
    if let Err(e) = engine.stack_mut().add_forwards(listeners) {
        let (mut stack, signals) = engine.into_parts();
        let back = (signals, stack.take_forwards());
        return (fail(EXIT_FAILURE, format!("forwards: {e}")), false, back);
    }
    if let Some(st) = incoming.take() {
        engine.import(&st);
    }
    #[cfg(feature = "dbus")]
    if let Some(b) = bus.take() {
        if let Err(e) = engine.set_bus(b) {
            log::warn!("D-Bus: {e}: going on without the bus");
        }
    }
    #[cfg(not(feature = "dbus"))]
    let _ = bus;
    log::info!("link up");
    let exit = engine.run();
    #[cfg(feature = "dbus")]
    {
        *bus = engine.take_bus();
    }
    if opts.debug {
        for line in engine.report().lines() {
            log::info!("{line}");
        }
    }
    *pcap = engine.take_pcap();
    let (mut stack, signals) = engine.into_parts();
    let back = (signals, stack.take_forwards());
    match exit {
        Exit::Signal(s) => {
            log::info!("{s}: exiting");
            (EXIT_OK, false, back)
        }
        Exit::ParentGone => {
            log::info!("parent process exited: exiting (--exit-with-parent)");
            (EXIT_OK, false, back)
        }
        Exit::Link(link::Closed::Hangup) => {
            log::info!("the VMM went away");
            (EXIT_OK, true, back)
        }
        Exit::Link(c) => {
            log::error!("{c}");
            (EXIT_FAILURE, true, back)
        }
    }
}

/// Raise the soft descriptor limit to the hard one (flows, forwards and the
/// link all need descriptors); warn when `--max-flows` cannot fit.
fn raise_nofile(max_flows: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let limit = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    if (limit as usize) < max_flows + 64 {
        log::warn!(
            "descriptor limit {limit} is below --max-flows {max_flows}: new flows will fail before the table fills"
        );
    }
}
